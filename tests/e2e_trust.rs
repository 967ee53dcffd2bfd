//! Trust and robustness end to end: a running sipdispatch refuses sources outside its
//! allow-list (silently or with 403), blocks a flooding source and releases it while real SIPp
//! calls from the trusted upstream keep succeeding, answers STUN keepalives on the SIP port,
//! answers 482 to a request that loops back to it, and counts oversized junk and responses to
//! branches that are not its own — all visible in `/metrics` by reason.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::{Dispatcher, Sipp, free_port, invite, options, scratch};

fn config(port: u16, http: u16, dests: &[u16], extra: &str) -> String {
    let dests: String = dests
        .iter()
        .map(|p| format!("  {{ uri = \"sip:127.0.0.1:{p}\" }},\n"))
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
[log]
summary_interval = 0
[control]
listen = "127.0.0.1:{http}"
{extra}
"#
    )
}

/// `sipdispatch_dropped_total{reason=…}` and friends, from `/metrics`.
fn metric(http: u16, name: &str, label: Option<(&str, &str)>) -> f64 {
    let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn socket(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind(format!("{ip}:0")).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

fn recv(s: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4096];
    s.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
}

#[test]
fn strangers_are_refused_and_counted() {
    let dir = scratch("trust-strangers");
    let (port, http, uas) = (free_port(), free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Dispatcher::start(
        &dir,
        addr,
        &config(
            port,
            http,
            &[uas],
            "[trust]\nupstreams = [\"127.0.0.1/32\"]",
        ),
    );
    let stranger = socket("127.0.0.2");
    let me = stranger.local_addr().unwrap();
    stranger.send_to(&invite(addr, me, "s1", ""), addr).unwrap();
    stranger.send_to(b"junk from nowhere", addr).unwrap();
    assert!(
        recv(&stranger).is_none(),
        "nothing goes back to an untrusted source"
    );
    let sbc = socket("127.0.0.1");
    let me = sbc.local_addr().unwrap();
    sbc.send_to(b"junk from the upstream", addr).unwrap();
    assert!(
        recv(&sbc).is_none(),
        "junk that is not a request gets no answer"
    );
    assert_eq!(
        metric(
            http,
            "sipdispatch_dropped_total",
            Some(("reason", "untrusted"))
        ),
        2.0
    );
    assert_eq!(
        metric(
            http,
            "sipdispatch_dropped_total",
            Some(("reason", "malformed"))
        ),
        1.0
    );
    // The upstream's requests go through.
    sbc.send_to(&invite(addr, me, "u1", ""), addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        metric(http, "sipdispatch_forwarded_requests_total", None),
        1.0
    );
    d.stop();

    // With `refuse = "forbidden"`, requests get a 403 instead.
    let (port, http) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Dispatcher::start(
        &dir,
        addr,
        &config(
            port,
            http,
            &[uas],
            "[trust]\nupstreams = [\"127.0.0.1/32\"]\nrefuse = \"forbidden\"",
        ),
    );
    let me = stranger.local_addr().unwrap();
    stranger.send_to(&invite(addr, me, "s2", ""), addr).unwrap();
    let r = recv(&stranger).expect("a 403");
    assert!(r.starts_with(b"SIP/2.0 403 Forbidden\r\n"));
    assert_eq!(
        metric(
            http,
            "sipdispatch_local_replies_total",
            Some(("code", "403"))
        ),
        1.0
    );
    d.stop();
}

#[test]
fn a_flooding_source_is_blocked_and_released_while_calls_go_on() {
    require_sipp!();
    let dir = scratch("trust-flood");
    let ports = [free_port(), free_port()];
    let uas: Vec<Sipp> = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| Sipp::uas(&dir, &format!("uas{i}"), p, None))
        .collect();
    let (port, http) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let flood = "[flood]\nrate = 50\nblock = \"1s\"\nexempt = [\"127.0.0.1/32\"]";
    let d = Dispatcher::start(&dir, addr, &config(port, http, &ports, flood));
    let calls = Sipp::uac(&dir, "uac", addr, 200, 100, &[]);
    let attacker = socket("127.0.0.9");
    let me = attacker.local_addr().unwrap();
    // OPTIONS to sipdispatch itself, so the flood costs the backends nothing.
    let ping = options(addr, me);
    for _ in 0..2000 {
        let _ = attacker.send_to(&ping, addr);
    }
    let (code, stats) = calls.finish(Duration::from_secs(60));
    assert_eq!(
        (code, stats.failed(), stats.successful()),
        (Some(0), 0, 200)
    );
    let dropped = metric(http, "sipdispatch_dropped_total", Some(("reason", "flood")));
    assert!(dropped >= 1900.0, "flood drops: {dropped}");
    std::thread::sleep(Duration::from_millis(1500));
    Sipp::stop_all(uas);
    let (_, log) = d.stop();
    assert!(log.contains("flood: 127.0.0.9 blocked"), "{log}");
    assert!(log.contains("blocked source(s) released"), "{log}");
}

#[test]
fn stun_loops_oversized_junk_and_stray_responses() {
    let dir = scratch("trust-robust");
    let (port, http) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The only destination is sipdispatch itself: whatever it forwards comes straight back.
    let d = Dispatcher::start(&dir, addr, &config(port, http, &[port], ""));
    let s = socket("127.0.0.1");
    let me = s.local_addr().unwrap();
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(b"txid-0123456");
    s.send_to(&stun, addr).unwrap();
    let r = recv(&s).expect("a Binding success response");
    assert_eq!(&r[0..2], &[0x01, 0x01]);
    assert_eq!(&r[8..20], b"txid-0123456");
    s.send_to(&invite(addr, me, "loop-1", ""), addr).unwrap();
    let r = recv(&s).expect("482");
    assert!(
        r.starts_with(b"SIP/2.0 482 Loop Detected"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    s.send_to(&vec![b'x'; 60_000], addr).unwrap();
    let stray = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bKnotours\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK1\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(stray.as_bytes(), addr).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        metric(
            http,
            "sipdispatch_local_replies_total",
            Some(("code", "482"))
        ),
        1.0
    );
    // Too big for io_uring's receive buffers (counted as truncated) or refused by the scanner.
    let junk = metric(
        http,
        "sipdispatch_dropped_total",
        Some(("reason", "malformed")),
    ) + metric(
        http,
        "sipdispatch_dropped_total",
        Some(("reason", "truncated")),
    );
    assert_eq!(junk, 1.0);
    assert_eq!(
        metric(
            http,
            "sipdispatch_dropped_total",
            Some(("reason", "response_not_ours"))
        ),
        1.0
    );
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
}
