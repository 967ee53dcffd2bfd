use super::*;
use crate::dispatch::{flags, list};
use crate::engine::VecOutbox;
use crate::health::state::ProbingMode;
use crate::sip::{Scanned, scan};

fn settings(mode: ProbingMode, fail: u32, ok: u32) -> ProbeSettings {
    ProbeSettings {
        interval_ms: 1000,
        timeout_ms: 300,
        method: "OPTIONS".into(),
        from: "sip:dispatcher@localhost".into(),
        machine: Machine {
            mode,
            probing_threshold: fail,
            inactive_threshold: ok,
        },
        accept: AcceptCodes::default(),
        latency_stats: true,
        alpha: 0.1,
    }
}

/// Two records with the same URI (kamailio#4330) and a disabled one.
fn table() -> Table {
    let text =
        "1 sip:127.0.0.1:7001 8\n2 sip:127.0.0.1:7001 8 0 latency=20\n1 sip:127.0.0.1:7003 12\n";
    Table::build(list::parse(text, "t.list").unwrap(), None).unwrap()
}

fn me() -> Identity {
    Identity::new("127.0.0.1", 5060, &["127.0.0.1:5060".parse().unwrap()])
}

/// The reply a destination would send to keepalive `ping`.
fn answer(ping: &[u8], code: u16) -> Vec<u8> {
    let Ok(Scanned::Message(m)) = scan(ping) else {
        panic!("a keepalive that does not scan")
    };
    let hdr = |name: &[u8]| String::from_utf8_lossy(m.header(name).unwrap()).into_owned();
    format!(
        "SIP/2.0 {code} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=b\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        hdr(b"Via"),
        hdr(b"From"),
        hdr(b"To"),
        hdr(b"Call-ID"),
        hdr(b"CSeq")
    )
    .into_bytes()
}

fn reply(p: &mut Prober, now: u64, t: &Table, bytes: &[u8]) -> bool {
    let Ok(Scanned::Message(m)) = scan(bytes) else {
        panic!()
    };
    p.on_reply(now, &m, t)
}

#[test]
fn pings_flagged_destinations_once_per_round_and_never_disabled_ones() {
    let t = table();
    let mut p = Prober::new(settings(ProbingMode::All, 1, 1), 0, 1);
    p.adopt(&t, false);
    let mut out = VecOutbox::new();
    p.poll(0, &t, &me(), &mut out);
    assert_eq!(out.sent.len(), 2, "the disabled record is not pinged");
    let text = String::from_utf8_lossy(&out.sent[0].1).into_owned();
    assert!(
        text.starts_with("OPTIONS sip:127.0.0.1:7001 SIP/2.0\r\n"),
        "{text}"
    );
    assert!(
        text.contains("From: <sip:dispatcher@localhost>;tag="),
        "{text}"
    );
    // A destination's ping_from attribute replaces the From URI of its keepalives.
    let t2 = Table::build(
        list::parse(
            "1 sip:127.0.0.1:7001 8 0 ping_from=sip:lb@example.net\n",
            "l",
        )
        .unwrap(),
        None,
    )
    .unwrap();
    let mut p2 = Prober::new(settings(ProbingMode::All, 1, 1), 0, 1);
    p2.adopt(&t2, false);
    let mut out2 = VecOutbox::new();
    p2.poll(0, &t2, &me(), &mut out2);
    assert!(String::from_utf8_lossy(&out2.sent[0].1).contains("From: <sip:lb@example.net>;tag="));
    // Nothing more until the next round, nor while a keepalive is outstanding.
    p.poll(200, &t, &me(), &mut out);
    assert_eq!(out.sent.len(), 2);
    assert_eq!(p.take_changes(), vec![]);
}

#[test]
fn timeouts_take_a_destination_down_and_replies_bring_it_back() {
    let t = table();
    let mut p = Prober::new(settings(ProbingMode::All, 2, 2), 0, 1);
    p.adopt(&t, false);
    let mut out = VecOutbox::new();
    let first = t.destinations().next().unwrap();
    let mut now = 0;
    // Two rounds without replies: trying, then inactive.
    for _ in 0..2 {
        p.poll(now, &t, &me(), &mut out);
        now += 1000;
    }
    p.poll(now, &t, &me(), &mut out);
    assert_eq!(
        first.state.flags() & (flags::INACTIVE | flags::TRYING),
        flags::INACTIVE
    );
    let ch = p.take_changes();
    let down: Vec<_> = ch.iter().filter(|c| c.up == Some(false)).collect();
    assert_eq!(down.len(), 2, "both pinged records went down: {ch:?}");
    assert!(down.iter().all(|c| c.code == 408));
    assert_eq!(p.health(first.id).unwrap().stats.timeouts, 2);
    // Two good replies in a row are needed to come back.
    for round in 0..2 {
        let n = out.sent.len();
        let pings: Vec<_> = out.sent[n - 2..].to_vec();
        for (_, ping) in &pings {
            assert!(reply(&mut p, now + 40, &t, &answer(ping, 200)));
        }
        assert_eq!(first.state.is_usable(), round == 1);
        now += 1000;
        p.poll(now, &t, &me(), &mut out);
    }
    let up: Vec<_> = p
        .take_changes()
        .into_iter()
        .filter(|c| c.up == Some(true))
        .collect();
    assert_eq!(up.len(), 2);
    assert_eq!(p.health(first.id).unwrap().stats.avg, 40.0);
}

#[test]
fn a_reply_reaches_its_own_record_even_when_two_share_a_uri() {
    let t = table();
    let mut p = Prober::new(settings(ProbingMode::All, 1, 1), 0, 1);
    p.adopt(&t, false);
    let mut out = VecOutbox::new();
    p.poll(0, &t, &me(), &mut out);
    let (a, b) = {
        let mut it = t
            .destinations()
            .filter(|d| d.state.flags() & flags::DISABLED == 0);
        (it.next().unwrap(), it.next().unwrap())
    };
    assert_eq!(a.uri, b.uri);
    // Only the second record's keepalive is answered, with a 503.
    let second = out
        .sent
        .iter()
        .find(|(_, m)| String::from_utf8_lossy(m).contains(&format!("tag={}-", b.id.0)))
        .unwrap();
    assert!(reply(&mut p, 10, &t, &answer(&second.1, 503)));
    assert!(a.state.is_usable(), "the other record is untouched");
    assert!(!b.state.is_usable());
    assert_eq!(p.health(b.id).unwrap().last_code, 503);
    // b was seeded with latency=20 and a 503 is still a sample of the round trip.
    assert_eq!(p.health(b.id).unwrap().stats.count, 10_001);
    // Someone else's response is not ours.
    let stray = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    assert!(!reply(&mut p, 10, &t, stray));
}

#[test]
fn accepted_codes_and_the_global_switch() {
    let t = table();
    let mut s = settings(ProbingMode::All, 1, 1);
    s.accept = AcceptCodes::parse("code=404").unwrap();
    let mut p = Prober::new(s, 0, 1);
    p.adopt(&t, false);
    let mut out = VecOutbox::new();
    p.poll(0, &t, &me(), &mut out);
    for (_, ping) in out.sent.clone() {
        reply(&mut p, 5, &t, &answer(&ping, 404));
    }
    assert!(
        t.destinations()
            .filter(|d| d.state.flags() & flags::DISABLED == 0)
            .all(|d| d.state.is_usable())
    );
    p.active.store(false, Relaxed);
    p.poll(5000, &t, &me(), &mut out);
    assert_eq!(out.sent.len(), 2, "no keepalives while pinging is off");
}

#[test]
fn call_ids_belong_to_the_probing_shard() {
    let t = table();
    let mut p = Prober::new(settings(ProbingMode::All, 1, 1), 1, 2);
    p.adopt(&t, false);
    let mut out = VecOutbox::new();
    for round in 0..5 {
        p.poll(round * 1000, &t, &me(), &mut out);
    }
    assert!(out.sent.len() >= 2);
    for (_, ping) in &out.sent {
        assert_eq!(crate::engine::owner(ping, 2), 1);
    }
}

#[test]
fn congestion_control_lowers_the_relative_weight() {
    let text = "1 sip:127.0.0.1:7001 8 0 weight=50;rweight=50;cc=1\n1 sip:127.0.0.1:7002 8 0 weight=50;rweight=50;cc=1\n";
    let t = Table::build(list::parse(text, "t.list").unwrap(), None).unwrap();
    let mut p = Prober::new(settings(ProbingMode::All, 1, 1), 0, 1);
    p.adopt(&t, false);
    let mut out = VecOutbox::new();
    let dests: Vec<_> = t.destinations().collect();
    // Round trips in ms per destination, one round at a time.
    let mut round = |now: u64, rtt: [u64; 2]| {
        let before = out.sent.len();
        p.poll(now, &t, &me(), &mut out);
        for (_, ping) in &out.sent[before..] {
            let text = String::from_utf8_lossy(ping).into_owned();
            let i = usize::from(!text.starts_with("OPTIONS sip:127.0.0.1:7001 "));
            assert!(reply(&mut p, now + rtt[i], &t, &answer(ping, 200)));
        }
    };
    for n in 0..12 {
        round(n * 1000, [10, 10]);
    }
    let rw = |i: usize| dests[i].state.rweight.load(Relaxed);
    assert_eq!((rw(0), rw(1)), (50, 50), "trained, not congested");
    // One slow reply: EST 20 ms over an AVG of ~10 ms, so 9 ms of congestion.
    round(12_000, [110, 10]);
    assert_eq!((rw(0), rw(1)), (41, 50));
    // Both congested (18 and 9 ms): weights inversely proportional, Σ·16 / own.
    round(13_000, [110, 110]);
    assert_eq!((rw(0), rw(1)), (27 * 16 / 18, 27 * 16 / 9));
}

#[test]
fn latency_figures_survive_a_reload_only_when_retained() {
    let t = table();
    let mut p = Prober::new(settings(ProbingMode::All, 1, 1), 0, 1);
    p.adopt(&t, false);
    let mut out = VecOutbox::new();
    p.poll(0, &t, &me(), &mut out);
    for (_, ping) in out.sent.clone() {
        reply(&mut p, 30, &t, &answer(&ping, 200));
    }
    let first = t.destinations().next().unwrap().id;
    assert_eq!(p.health(first).unwrap().stats.avg, 30.0);
    let text =
        "1 sip:127.0.0.1:7001 8\n2 sip:127.0.0.1:7001 8 0 latency=20\n1 sip:127.0.0.1:7003 12\n";
    let reloaded = Table::build(list::parse(text, "t.list").unwrap(), Some(&t)).unwrap();
    p.adopt(&reloaded, true);
    assert_eq!(p.health(first).unwrap().stats.avg, 30.0, "kept");
    p.adopt(&reloaded, false);
    assert_eq!(p.health(first).unwrap().stats.count, 0, "forgotten");
}

#[test]
fn keepalives_go_through_the_outbound_proxy_and_still_name_the_destination() {
    let text = "1 sip:127.0.0.1:7001 8 0 obproxy=sip:127.0.0.9:5070\n\
                1 sip:127.0.0.1:7002 8\n1 sip:127.0.0.1:7003 8 0 obproxy=sip:proxy.invalid\n";
    let mut t = Table::build(list::parse(text, "t.list").unwrap(), None).unwrap();
    // The `[health]` default applies to the destination without an `obproxy` attribute.
    let resolve = |uri: &str| match uri {
        "sip:127.0.0.9:5070" => Some("127.0.0.9:5070".parse().unwrap()),
        "sip:127.0.0.8" => Some("127.0.0.8:5060".parse().unwrap()),
        _ => None,
    };
    let unresolved: Vec<_> = t
        .resolve_ping_proxies(Some("sip:127.0.0.8"), resolve)
        .into_iter()
        .map(|(d, proxy)| (d.uri.clone(), proxy))
        .collect();
    assert_eq!(
        unresolved,
        vec![("sip:127.0.0.1:7003".into(), "sip:proxy.invalid".into())]
    );
    let mut p = Prober::new(settings(ProbingMode::All, 1, 1), 0, 1);
    p.adopt(&t, false);
    let mut out = VecOutbox::new();
    p.poll(0, &t, &me(), &mut out);
    let sent: Vec<(String, String)> = out
        .sent
        .iter()
        .map(|(to, b)| {
            let text = String::from_utf8_lossy(b);
            (to.to_string(), text.lines().next().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            (
                "127.0.0.9:5070".into(),
                "OPTIONS sip:127.0.0.1:7001 SIP/2.0".into()
            ),
            (
                "127.0.0.8:5060".into(),
                "OPTIONS sip:127.0.0.1:7002 SIP/2.0".into()
            ),
        ],
        "the destination whose proxy did not resolve gets none"
    );
    // The proxy's replies count for the destination they name.
    let (_, ping) = &out.sent[0];
    assert!(reply(&mut p, 30, &t, &answer(ping, 200)));
    let first = t.destinations().next().unwrap();
    assert_eq!(p.health(first.id).unwrap().last_code, 200);
    // Only responses are let in from a proxy, matched by address (or IP alone).
    assert!(t.is_ping_proxy("127.0.0.9:5070".parse().unwrap(), true));
    assert!(!t.is_ping_proxy("127.0.0.9:5071".parse().unwrap(), true));
    assert!(t.is_ping_proxy("127.0.0.9:5071".parse().unwrap(), false));
    assert!(!t.is_ping_proxy("127.0.0.1:7001".parse().unwrap(), false));
}
