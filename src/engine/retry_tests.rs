use std::time::Duration;

use super::super::tests::{ME, UAC, req, resp, run, shard_from};
use super::*;
use crate::engine::VecOutbox;

fn config(mark: &str) -> String {
    format!(
        r#"
[listen]
udp = ["{ME}"]
[destinations]
[[destinations.sets]]
id = 1
destinations = [{{ uri = "sip:127.0.0.1:7001" }}, {{ uri = "sip:127.0.0.1:7002" }}]
[[routes]]
set = 1
algorithm = "round-robin"
failover = {{ codes = ["5xx"], timeout = "1s", max_tries = 2, mark = "{mark}" }}
"#
    )
}

fn branch(msg: &[u8]) -> String {
    let Ok(Scanned::Message(m)) = scan(msg) else {
        panic!()
    };
    String::from_utf8_lossy(m.via.branch.unwrap().of(msg)).into_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_503_is_absorbed_acked_and_the_call_moves_on() {
    let mut s = shard_from(&config("inactive"));
    let sent = run(&mut s, UAC, &req("INVITE", 1, false, ""));
    let (a, first) = sent[0].clone();
    assert_eq!(a.port(), 7001);
    let (from, r503) = resp(&first, 503, a);
    let sent = run(&mut s, &from.to_string(), &r503);
    assert_eq!(
        sent.len(),
        2,
        "an ACK to the failed try and the INVITE to the next"
    );
    let (to, ack) = &sent[0];
    assert_eq!(*to, a);
    assert!(
        text(ack).starts_with("ACK sip:service@127.0.0.1:5060 SIP/2.0\r\n"),
        "{}",
        text(ack)
    );
    assert_eq!(
        branch(ack),
        branch(&first),
        "the ACK matches the failed try"
    );
    let (b, second) = sent[1].clone();
    assert_eq!(b.port(), 7002);
    assert!(text(&second).starts_with("INVITE "));
    assert_ne!(
        branch(&second),
        branch(&first),
        "a new try gets a new branch"
    );
    let table = s.shared.table.load_full();
    let dests = &table.set(1).unwrap().dests;
    assert_eq!(
        dests[0].state.letters(),
        "IP",
        "marked inactive and probing"
    );
    // The upstream sees the second try's replies only; ACK and BYE follow the call.
    for code in [180, 200] {
        let (from, r) = resp(&second, code, b);
        let back = run(&mut s, &from.to_string(), &r);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].0, UAC.parse().unwrap());
    }
    assert_eq!(s.failover_records(), 0, "a 2xx ends the record");
    for m in ["ACK", "BYE"] {
        assert_eq!(run(&mut s, UAC, &req(m, 1, true, ""))[0].0, b, "{m}");
    }
    assert_eq!(s.counters.snapshot().failovers, 1);
}

#[test]
fn no_provisional_in_time_moves_the_call_and_cancel_follows() {
    let mut s = shard_from(&config("none"));
    let sent = run(&mut s, UAC, &req("INVITE", 2, false, ""));
    let (a, first) = sent[0].clone();
    let mut out = VecOutbox::new();
    s.tick(Instant::now() + Duration::from_millis(900), &mut out);
    assert!(out.sent.is_empty(), "not yet");
    s.tick(Instant::now() + Duration::from_millis(1100), &mut out);
    assert_eq!(out.sent.len(), 1);
    let (b, second) = out.sent[0].clone();
    assert_ne!(a, b);
    // A retransmission and a CANCEL from upstream reach the current try, with its branch.
    let invite = text(&req("INVITE", 2, false, ""));
    let cancel = invite
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    for (m, bytes) in [("INVITE", invite), ("CANCEL", cancel)] {
        let sent = run(&mut s, UAC, bytes.as_bytes());
        assert_eq!(sent[0].0, b, "{m}");
        assert_eq!(branch(&sent[0].1), branch(&second), "{m}");
    }
    // A cancelled call does not fail over: the 487 goes upstream.
    let (from, r) = resp(&second, 487, b);
    let back = run(&mut s, &from.to_string(), &r);
    assert_eq!(back[0].0, UAC.parse().unwrap());
    // The first try answering late with an error is ACKed and dropped.
    let (from, late) = resp(&first, 500, a);
    assert!(
        s.failover_records() == 0 || {
            let back = run(&mut s, &from.to_string(), &late);
            back.len() == 1 && back[0].0 == a
        }
    );
}

#[test]
fn when_every_try_failed_the_upstream_gets_the_outcome() {
    let mut s = shard_from(&config("none"));
    let sent = run(&mut s, UAC, &req("INVITE", 3, false, ""));
    let (a, first) = sent[0].clone();
    let (from, r) = resp(&first, 503, a);
    let sent = run(&mut s, &from.to_string(), &r);
    let (b, second) = sent[1].clone();
    // max_tries = 2: the second 503 is relayed.
    let (from, r) = resp(&second, 503, b);
    let back = run(&mut s, &from.to_string(), &r);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, UAC.parse().unwrap());
    assert!(back[0].1.starts_with(b"SIP/2.0 503"));
    // And when the last try never answers, the upstream gets a 408.
    let sent = run(&mut s, UAC, &req("INVITE", 4, false, ""));
    assert_eq!(sent.len(), 1);
    let mut out = VecOutbox::new();
    s.tick(Instant::now() + Duration::from_millis(1100), &mut out);
    s.tick(Instant::now() + Duration::from_millis(2300), &mut out);
    let replies: Vec<_> = out
        .sent
        .iter()
        .filter(|(to, _)| *to == UAC.parse().unwrap())
        .collect();
    assert_eq!(
        replies.len(),
        1,
        "{:?}",
        out.sent
            .iter()
            .map(|(t, m)| (t, text(m)))
            .collect::<Vec<_>>()
    );
    assert!(replies[0].1.starts_with(b"SIP/2.0 408 Request Timeout"));
    assert_eq!(s.failover_records(), 0);
}
