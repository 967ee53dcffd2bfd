//! End-to-end behaviour of a running sipdispatch on loopback, with real SIPp where a SIP peer
//! is needed: one upstream spread over both shards, local replies (483, the configured 503),
//! malformed datagrams during a call load, and a clean stop on SIGTERM; the SIPp ones over both
//! I/O backends.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{Dispatcher, Sipp, backends, exchange, final_counters, free_port, invite, scratch};

fn config(port: u16, uas: &[u16], shards: usize, io: &str, flags: u8, extra: &str) -> String {
    let dests: String = uas
        .iter()
        .map(|p| format!("  {{ uri = \"sip:127.0.0.1:{p}\", flags = {flags} }},\n"))
        .collect();
    format!(
        r#"
[listen]
udp = ["127.0.0.1:{port}"]
[destinations]
[[destinations.sets]]
id = 1
destinations = [
{dests}]
[[routes]]
set = 1
algorithm = "round-robin"
record_route = true
[runtime]
shards = {shards}
io = "{io}"
[log]
summary_interval = 0
{extra}
"#
    )
}

#[test]
fn one_upstream_is_spread_over_both_shards_and_stops_cleanly() {
    require_sipp!();
    for io in backends() {
        spread_over_both_shards(io);
    }
}

fn spread_over_both_shards(io: &str) {
    let dir = scratch(&format!("spread-{io}"));
    let ports = [free_port(), free_port()];
    let uas: Vec<Sipp> = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| Sipp::uas(&dir, &format!("uas{i}"), p, None))
        .collect();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Dispatcher::start(&dir, addr, &config(port, &ports, 2, io, 0, ""));
    let (code, stats) = Sipp::uac(&dir, "uac", addr, 400, 200, &[]).finish(Duration::from_secs(60));
    for (i, u) in Sipp::stop_all(uas).iter().enumerate() {
        assert_eq!((u.failed(), u.unexpected()), (0, 0), "{io}: uas{i}");
    }
    assert_eq!(
        (code, stats.failed(), stats.successful()),
        (Some(0), 0, 400)
    );
    let (exit, log) = d.stop();
    assert_eq!(exit, Some(0), "clean exit on SIGTERM; log:\n{log}");
    let shards = final_counters(&log);
    assert_eq!(shards.len(), 2, "{log}");
    let rx: Vec<u64> = shards.iter().map(|s| s["rx"]).collect();
    let total: u64 = rx.iter().sum();
    // The uac is one 5-tuple, so one socket receives it all; the Call-ID hand-off shares it.
    assert!(
        rx.iter().all(|&n| n * 10 > total * 3),
        "{io}: unbalanced shards: {rx:?}"
    );
    let fwd: Vec<u64> = shards
        .iter()
        .map(|s| s["fwd_req"] + s["fwd_resp"])
        .collect();
    assert!(
        fwd.iter().all(|&n| n * 10 > fwd.iter().sum::<u64>() * 3),
        "{io}: unbalanced forwarding: {fwd:?}"
    );
}

#[test]
fn max_forwards_zero_gets_483_and_no_destination_gets_the_configured_503() {
    let dir = scratch("replies");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Every destination inactive (flag 1), a custom answer.
    let extra = "[no_destination]\ncode = 503\nreason = \"No Media Server\"\nretry_after = 7\n";
    let d = Dispatcher::start(
        &dir,
        addr,
        &config(port, &[free_port()], 1, "auto", 1, extra),
    );
    let r = exchange(addr, |me| invite(addr, me, "mf0", "Max-Forwards: 0\r\n")).expect("a reply");
    assert!(
        r.starts_with(b"SIP/2.0 483 Too Many Hops\r\n"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let r = exchange(addr, |me| {
        invite(addr, me, "nodest", "Max-Forwards: 70\r\n")
    })
    .expect("a reply");
    let text = String::from_utf8_lossy(&r);
    assert!(
        text.starts_with("SIP/2.0 503 No Media Server\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Retry-After: 7\r\n") && text.contains("Call-ID: nodest@test\r\n"),
        "{text}"
    );
    let (_, log) = d.stop();
    let c = &final_counters(&log)[0];
    assert_eq!((c["reply_483"], c["reply_503"]), (1, 1), "{log}");
}

#[test]
fn malformed_datagrams_during_a_call_load_are_counted_and_dropped() {
    require_sipp!();
    for io in backends() {
        malformed_during_load(io);
    }
}

fn malformed_during_load(io: &str) {
    let dir = scratch(&format!("malformed-{io}"));
    let ports = [free_port(), free_port()];
    let uas: Vec<Sipp> = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| Sipp::uas(&dir, &format!("uas{i}"), p, None))
        .collect();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Dispatcher::start(&dir, addr, &config(port, &ports, 2, io, 0, ""));
    let uac = Sipp::uac(&dir, "uac", addr, 300, 100, &[]);
    // Garbage, a truncated INVITE, a response with a broken status line, a request with a
    // malformed Via, interleaved with the calls.
    let junk: [&[u8]; 4] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage",
        b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK1\r\nContent-Le",
        b"SIP/2.0 2000 Weird\r\n\r\n",
        b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;;,;,,\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: j\r\nCSeq: 1 OPTIONS\r\n\r\n",
    ];
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..2000 {
        sock.send_to(junk[i % junk.len()], addr).unwrap();
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (code, stats) = uac.finish(Duration::from_secs(60));
    for (i, u) in Sipp::stop_all(uas).iter().enumerate() {
        assert_eq!((u.failed(), u.unexpected()), (0, 0), "{io}: uas{i}");
    }
    assert_eq!(
        (code, stats.failed(), stats.successful()),
        (Some(0), 0, 300)
    );
    let (_, log) = d.stop();
    let shards = final_counters(&log);
    let sum = |k: &str| {
        shards
            .iter()
            .map(|s| s.get(k).copied().unwrap_or(0))
            .sum::<u64>()
    };
    // The request with a bad Via gets its 400; the rest are dropped as malformed.
    assert_eq!(sum("reply_400"), 500, "{log}");
    assert_eq!(sum("drop_malformed"), 1500, "{log}");
}
