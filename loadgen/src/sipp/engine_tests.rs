//! Engine behaviour without sockets: actions that fail a call but let it run, conditional
//! `next`, `optional="global"`, `-aa`, `exec int_cmd`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::engine::{Engine, Env, Net};
use super::scenario::parse;
use super::stats;

#[derive(Default)]
struct Sent(Vec<Vec<u8>>);

impl Net for Sent {
    fn send(&mut self, _: SocketAddr, data: &[u8]) {
        self.0.push(data.to_vec());
    }
}

impl Sent {
    fn first_lines(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|m| {
                let s = String::from_utf8_lossy(m);
                s.lines().next().unwrap_or_default().to_owned()
            })
            .collect()
    }
}

fn env() -> Env {
    let a: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    Env {
        service: "service".into(),
        remote: a,
        remote_host: "127.0.0.1".into(),
        local: a,
        media_ip: "127.0.0.1".into(),
        media_port: 6000,
        pid: 42,
        cid_str: "%u-%p@%s".into(),
        base_cseq: 1,
        pause_default: Duration::ZERO,
        recv_timeout: None,
        retrans: true,
        max_invite_retrans: 5,
        max_non_invite_retrans: 9,
        t2: Duration::from_secs(4),
        behaviors: super::call::Behaviors::ALL,
        deadcall_wait: Duration::from_secs(33),
        users: None,
        local_text: String::new(),
        remote_text: String::new(),
        inject: Default::default(),
        started: Instant::now(),
        lost: 0.0,
        send_to: None,
    }
    .with_texts()
}

fn engine(xml: &str) -> Engine {
    let sc = parse(xml, "t.xml", &HashMap::new(), &[]).unwrap();
    Engine::new(sc, env(), None)
}

fn req(method: &str, cseq: u32, extra: &str) -> Vec<u8> {
    format!(
        "{method} sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{method}{cseq}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: c1\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

const OK: &str = "<send><![CDATA[SIP/2.0 200 OK\n[last_Via:]\n[last_Call-ID:]\n[last_CSeq:]\nContent-Length: 0\n]]></send>";

fn peer() -> SocketAddr {
    "127.0.0.1:5070".parse().unwrap()
}

#[test]
fn a_failed_check_lets_the_call_finish_then_counts_it_failed() {
    let mut e = engine(&format!(
        r#"<scenario>
<recv request="INVITE"><action>
  <ereg regexp="(.*)" search_in="hdr" header="X-Missing:" check_it="true" assign_to="v"/>
  <assign assign_to="never" value="1"/>
</action></recv>
{OK}
<nop><action><log message="[$v][$never]"/></action></nop>
</scenario>"#
    ));
    e.logs = Some(Vec::new());
    let mut net = Sent::default();
    e.on_datagram(Instant::now(), peer(), &req("INVITE", 1, ""), &mut net);
    assert_eq!(net.first_lines(), ["SIP/2.0 200 OK"], "the call went on");
    let c = &e.stats.total;
    assert_eq!((c.success, c.failed), (0, 1));
    assert_eq!(c.failures[stats::REGEXP_HDR_NOT_FOUND], 1);
    assert_eq!(c.warnings, 1);
    assert_eq!(
        e.logs.as_deref(),
        Some(&[String::new()][..]),
        "nothing was assigned"
    );
}

#[test]
fn next_is_taken_only_when_its_test_variable_is_set() {
    for (header, expect) in [("X-Go: yes\r\n", "BYE"), ("", "INFO")] {
        let mut e = engine(
            r#"<scenario>
<recv request="INVITE" test="go" next="bye"><action>
  <ereg regexp="yes" search_in="hdr" header="X-Go:" assign_to="go"/>
</action></recv>
<send><![CDATA[INFO sip:x SIP/2.0
Call-ID: [call_id]
]]></send>
<label id="bye"/>
<send><![CDATA[BYE sip:x SIP/2.0
Call-ID: [call_id]
]]></send>
</scenario>"#,
        );
        let mut net = Sent::default();
        e.on_datagram(Instant::now(), peer(), &req("INVITE", 1, header), &mut net);
        assert_eq!(net.first_lines()[0], format!("{expect} sip:x SIP/2.0"));
        assert_eq!(e.stats.total.success, 1);
    }
}

#[test]
fn a_global_optional_step_catches_a_message_from_later_in_the_call() {
    let mut e = engine(&format!(
        r#"<scenario>
<recv request="INVITE"/>
{OK}
<recv request="BYE" optional="global" next="bye"/>
<recv request="ACK"/>
<recv request="INFO"/>
{OK}
<label id="bye"/>
{OK}
</scenario>"#
    ));
    let mut net = Sent::default();
    let now = Instant::now();
    e.on_datagram(now, peer(), &req("INVITE", 1, ""), &mut net);
    e.on_datagram(now, peer(), &req("ACK", 1, ""), &mut net);
    assert_eq!(e.open_calls(), 1, "waiting for the INFO");
    e.on_datagram(now, peer(), &req("BYE", 2, ""), &mut net);
    assert_eq!(e.stats.total.success, 1, "{:?}", net.first_lines());
    assert!(String::from_utf8_lossy(&net.0[1]).contains("CSeq: 2 BYE"));
}

#[test]
fn auto_answer_replies_200_and_the_call_goes_on() {
    let xml = format!(
        "<scenario>\n<recv request=\"INVITE\"/>\n{OK}\n<recv request=\"BYE\"/>\n{OK}\n</scenario>"
    );
    for aa in [true, false] {
        let mut e = engine(&xml);
        e.auto_answer = aa;
        let mut net = Sent::default();
        let now = Instant::now();
        e.on_datagram(now, peer(), &req("INVITE", 1, ""), &mut net);
        e.on_datagram(now, peer(), &req("OPTIONS", 2, ""), &mut net);
        e.on_datagram(now, peer(), &req("BYE", 3, ""), &mut net);
        let c = &e.stats.total;
        if aa {
            assert_eq!((c.auto_answered, c.success, c.failed), (1, 1, 0));
            assert!(String::from_utf8_lossy(&net.0[1]).contains("CSeq: 2 OPTIONS"));
        } else {
            assert_eq!((c.auto_answered, c.failed), (0, 1));
            assert_eq!(c.failures[stats::UNEXPECTED], 1);
        }
    }
}

#[test]
fn exec_int_cmd_stops_the_call_or_the_run() {
    let mut e = engine(
        r#"<scenario>
<recv request="INVITE"><action><exec int_cmd="stop_call"/></action></recv>
<nop/>
</scenario>"#,
    );
    e.on_datagram(
        Instant::now(),
        peer(),
        &req("INVITE", 1, ""),
        &mut Sent::default(),
    );
    assert_eq!(e.stats.total.failures[stats::CALL_REJECTED], 1);
    let mut e = engine(
        r#"<scenario>
<recv request="INVITE"/>
<nop><action><exec int_cmd="stop_now"/><jump value="0"/></action></nop>
</scenario>"#,
    );
    e.on_datagram(
        Instant::now(),
        peer(),
        &req("INVITE", 1, ""),
        &mut Sent::default(),
    );
    assert!(e.stop_now);
}

#[test]
fn jump_and_counters_loop_a_call() {
    // A nop loop: n counts to 3, then the call leaves through the test.
    let mut e = engine(
        r#"<scenario>
<recv request="INVITE"/>
<nop><action><add assign_to="n" value="1"/><test assign_to="done" variable="n" compare="greater_than_equal" value="3"/></action></nop>
<nop test="done" next="out"/>
<nop><action><jump value="1"/></action></nop>
<label id="out"/>
<send><![CDATA[SIP/2.0 200 OK
X-N: [$n]
]]></send>
</scenario>"#,
    );
    let mut net = Sent::default();
    e.on_datagram(Instant::now(), peer(), &req("INVITE", 1, ""), &mut net);
    assert!(String::from_utf8_lossy(&net.0[0]).contains("X-N: 3.000000"));
    assert_eq!(e.stats.total.success, 1);
}

#[test]
fn invite_retransmissions_double_then_the_call_fails() {
    let mut e = Engine::new(
        parse(super::builtin::UAC, "uac", &HashMap::new(), &[]).unwrap(),
        env(),
        None,
    );
    let t0 = Instant::now();
    let mut net = Sent::default();
    e.start_call(t0, &mut net);
    let mut sent_at = vec![0u64];
    for ms in 1..40_000u64 {
        let before = net.0.len();
        e.on_timers(t0 + Duration::from_millis(ms), &mut net);
        if net.0.len() > before {
            sent_at.push(ms);
        }
    }
    // T1 doubling from 500 ms; the 1 ms timer wheel may add up to a tick to each interval.
    let gaps: Vec<u64> = sent_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps.len(), 5, "{sent_at:?}");
    for (g, want) in gaps.iter().zip([500, 1000, 2000, 4000, 8000]) {
        assert!((want..=want + 1).contains(g), "{sent_at:?}");
    }
    assert_eq!(e.stats.total.retransmissions, 5);
    assert_eq!(e.stats.total.failures[stats::MAX_UDP_RETRANS], 1);
    assert_eq!(e.open_calls(), 0);
}

#[test]
fn response_txn_matches_by_the_branch_of_its_start_txn() {
    let xml = r#"<scenario>
<send start_txn="a"><![CDATA[INVITE sip:x SIP/2.0
Via: SIP/2.0/UDP h;branch=[branch]
Call-ID: [call_id]
CSeq: 1 INVITE
]]></send>
<send start_txn="b"><![CDATA[OPTIONS sip:x SIP/2.0
Via: SIP/2.0/UDP h;branch=[branch]
Call-ID: [call_id]
CSeq: 2 OPTIONS
]]></send>
<recv response="200" response_txn="b"/>
</scenario>"#;
    for (branch, ok) in [("z9hG4bK-42-1-1", true), ("z9hG4bK-42-1-0", false)] {
        let mut e = engine(xml);
        let mut net = Sent::default();
        let now = Instant::now();
        e.start_call(now, &mut net);
        let ok200 = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch={branch}, SIP/2.0/UDP x;branch=other\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: 1-42@127.0.0.1\r\nCSeq: 2 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        e.on_datagram(now, peer(), ok200.as_bytes(), &mut net);
        let c = &e.stats.total;
        assert_eq!(
            (c.success, c.failed),
            (u64::from(ok), u64::from(!ok)),
            "{branch}"
        );
    }
    let bad = |x: &str| {
        parse(x, "t.xml", &HashMap::new(), &[])
            .unwrap_err()
            .to_string()
    };
    assert!(
        bad("<scenario>\n<recv response=\"200\" response_txn=\"z\"/>\n</scenario>")
            .contains("transaction `z`")
    );
    assert!(
        bad("<scenario>\n<send start_txn=\"a\"><![CDATA[INVITE x SIP/2.0\n]]></send>\n<send ack_txn=\"a\"><![CDATA[BYE x SIP/2.0\n]]></send>\n</scenario>")
            .contains("t.xml:4: ack_txn is allowed only on an ACK")
    );
}

#[test]
fn regexp_match_and_lost_messages() {
    let xml = format!(
        "<scenario>\n<recv request=\"MESSAGE|PUBLISH\" regexp_match=\"true\"/>\n{OK}\n<recv request=\"BYE\" lost=\"100\"/>\n</scenario>"
    );
    let mut e = engine(&xml);
    let mut net = Sent::default();
    let now = Instant::now();
    e.on_datagram(now, peer(), &req("PUBLISH", 1, ""), &mut net);
    assert_eq!(net.first_lines(), ["SIP/2.0 200 OK"]);
    // Every BYE is "lost": the call keeps waiting for one.
    e.on_datagram(now, peer(), &req("BYE", 2, ""), &mut net);
    assert_eq!((e.open_calls(), e.stats.total.failed), (1, 0));
}

#[test]
fn init_sets_globals_once_before_the_calls() {
    let mut e = engine(
        r#"<scenario>
<Global variables="base"/>
<init>
  <nop><action><assign assign_to="base" value="40"/><assign assign_to="scratch" value="1"/></action></nop>
</init>
<recv request="INVITE"><action><add assign_to="base" value="1"/></action></recv>
<send><![CDATA[SIP/2.0 200 OK
[last_Via:]
[last_Call-ID:]
[last_CSeq:]
X-Base: [$base] [$scratch]
Content-Length: 0
]]></send>
</scenario>"#,
    );
    e.run_init(Instant::now());
    let mut net = Sent::default();
    e.on_datagram(Instant::now(), peer(), &req("INVITE", 1, ""), &mut net);
    let reply = String::from_utf8_lossy(&net.0[0]).into_owned();
    assert!(reply.contains("X-Base: 41.000000 \r\n"), "{reply}");
    assert!(parse("<scenario>\n<init>\n<send><![CDATA[OPTIONS x SIP/2.0\n]]></send>\n</init>\n</scenario>", "t.xml", &HashMap::new(), &[]).unwrap_err().to_string().contains("only <nop>"));
}

#[test]
fn without_abortunexp_an_unexpected_message_is_ignored_and_pingreply_answers() {
    use super::call::Behaviors;
    let xml = format!(
        "<scenario>\n<recv request=\"INVITE\"/>\n{OK}\n<recv request=\"BYE\"/>\n{OK}\n</scenario>"
    );
    let mut e = engine(&xml);
    e.env.behaviors = Behaviors::parse("all,-abortunexp").unwrap();
    assert_eq!(
        e.env.behaviors,
        Behaviors {
            bye: true,
            abort_unexpected: false,
            ping_reply: true
        }
    );
    let mut net = Sent::default();
    let now = Instant::now();
    e.on_datagram(now, peer(), &req("INVITE", 1, ""), &mut net);
    e.on_datagram(now, peer(), &req("INFO", 2, ""), &mut net);
    e.on_datagram(now, peer(), &req("PING", 3, ""), &mut net);
    e.on_datagram(now, peer(), &req("BYE", 4, ""), &mut net);
    let c = &e.stats.total;
    assert_eq!((c.success, c.failed, c.auto_answered), (1, 0, 1));
    assert!(String::from_utf8_lossy(&net.0[1]).contains("CSeq: 3 PING"));
    assert!(
        Behaviors::parse("bye,nonsense")
            .unwrap_err()
            .contains("`nonsense`")
    );
    assert_eq!(Behaviors::parse("none").unwrap(), Behaviors::NONE);
}

/// The retransmission hash tells apart messages differing in one byte anywhere (a word or
/// the tail), and of different lengths; the same bytes hash the same.
#[test]
fn message_hash_separates_one_byte_changes() {
    let m = b"SIP/2.0 200 OK\r\nCall-ID: 1-2@h\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\nxyz"
        .to_vec();
    let h = super::engine::msg_hash(&m);
    assert_eq!(h, super::engine::msg_hash(&m.clone()));
    for i in 0..m.len() {
        let mut n = m.clone();
        n[i] ^= 1;
        assert_ne!(h, super::engine::msg_hash(&n), "byte {i}");
    }
    assert_ne!(h, super::engine::msg_hash(&m[..m.len() - 1]));
}
