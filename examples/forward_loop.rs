//! Runs N SIPp-style calls (INVITE, 180, 200, ACK, BYE, 200, as SIPp's uac and uas write them)
//! through one shard, in process: the workload `bench/forward_instructions.sh` counts the
//! shard's instructions over (callgrind), without sockets, polls or SIPp's timing.
//!   cargo run --release --example forward_loop -- 1000

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sipdispatch::config::Config;
use sipdispatch::engine::{Outbox, Shard};
use sipdispatch::runtime::{build_table, shared};

const CONFIG: &str = r#"
[listen]
udp = ["127.0.0.1:7410"]
[destinations]
[[destinations.sets]]
id = 1
destinations = [ { uri = "sip:127.0.0.1:7411" } ]
[[routes]]
methods = ["INVITE"]
set = 1
algorithm = "call-load"
[[routes]]
set = 1
algorithm = "hash-callid"
"#;

/// Keeps the last datagram only: the loop measures the shard, not a collection of outputs.
struct LastOut {
    buf: Vec<u8>,
    len: usize,
    to: Option<SocketAddr>,
}

impl Outbox for LastOut {
    fn buffer(&mut self) -> Option<&mut [u8]> {
        Some(&mut self.buf[..])
    }

    fn commit(&mut self, len: usize, to: SocketAddr) {
        self.len = len;
        self.to = Some(to);
    }
}

fn request(method: &str, call: usize, cseq: u32, branch: u32, to_tag: bool) -> Vec<u8> {
    let tag = if to_tag { ";tag=7062SIPpTag011" } else { "" };
    let (body, ctype) = if method == "INVITE" {
        (SDP, "Content-Type: application/sdp\r\n")
    } else {
        ("", "")
    };
    format!(
        "{method} sip:service@127.0.0.1:7410 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:7412;branch=z9hG4bK-7068-{call}-{branch}\r\n\
From: sipp <sip:sipp@127.0.0.1:7412>;tag=7068SIPpTag00{call}\r\n\
To: service <sip:service@127.0.0.1:7410>{tag}\r\n\
Call-ID: {call}-7068@127.0.0.1\r\nCSeq: {cseq} {method}\r\n\
Contact: sip:sipp@127.0.0.1:7412\r\nMax-Forwards: 70\r\nSubject: Performance Test\r\n\
{ctype}Content-Length: {:5}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// SIPp's uas answer to the forwarded request `fwd`: its Vias joined on one line.
fn response(fwd: &[u8], status: &str, method: &str, cseq: u32, call: usize) -> Vec<u8> {
    let text = std::str::from_utf8(fwd).unwrap();
    let vias: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Via: "))
        .collect();
    let body = if status == "200 OK" && method == "INVITE" {
        SDP
    } else {
        ""
    };
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\n\
From: sipp <sip:sipp@127.0.0.1:7412>;tag=7068SIPpTag00{call}\r\n\
To: service <sip:service@127.0.0.1:7410>;tag=7062SIPpTag011\r\n\
Call-ID: {call}-7068@127.0.0.1\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:127.0.0.1:7411;transport=UDP>\r\n{ctype}Content-Length: {:5}\r\n\r\n{body}",
        vias.join(", "),
        body.len()
    )
    .into_bytes()
}

const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// The measured part: every datagram of `calls` through the shard, in call order.
#[inline(never)]
fn run(shard: &mut Shard, calls: &[[(SocketAddr, Vec<u8>); 6]], out: &mut LastOut) -> usize {
    let now = Instant::now();
    let mut sent = 0;
    for call in calls {
        for (src, data) in call {
            out.to = None;
            shard.handle(now, 0, *src, std::hint::black_box(data), out);
            sent += usize::from(out.to.is_some());
        }
    }
    sent
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let cfg = Config::parse(CONFIG, Path::new("forward_loop.toml")).unwrap();
    let table = build_table(&cfg, None).unwrap();
    let mut shard = Shard::new(Arc::new(shared(&cfg, table).unwrap()), 0, 1 << 16);
    let uac: SocketAddr = "127.0.0.1:7412".parse().unwrap();
    let uas: SocketAddr = "127.0.0.1:7411".parse().unwrap();
    let mut out = LastOut {
        buf: vec![0; 65_536],
        len: 0,
        to: None,
    };
    // Each response is built from the request as forwarded, as the uas would see it.
    let mut forwarded = |shard: &mut Shard, data: &[u8]| {
        shard.handle(Instant::now(), 0, uac, data, &mut out);
        out.buf[..out.len].to_vec()
    };
    let mut scratch = Shard::new(
        Arc::new(shared(&cfg, build_table(&cfg, None).unwrap()).unwrap()),
        0,
        1 << 16,
    );
    let calls: Vec<_> = (1..=n)
        .map(|c| {
            let invite = request("INVITE", c, 1, 0, false);
            let ack = request("ACK", c, 1, 5, true);
            let bye = request("BYE", c, 2, 7, true);
            let fi = forwarded(&mut scratch, &invite);
            let fb = forwarded(&mut scratch, &bye);
            [
                (uac, invite),
                (uas, response(&fi, "180 Ringing", "INVITE", 1, c)),
                (uas, response(&fi, "200 OK", "INVITE", 1, c)),
                (uac, ack),
                (uac, bye),
                (uas, response(&fb, "200 OK", "BYE", 2, c)),
            ]
        })
        .collect();
    let mut out = LastOut {
        buf: vec![0; 65_536],
        len: 0,
        to: None,
    };
    let sent = run(&mut shard, &calls, &mut out);
    assert_eq!(sent, 6 * n, "every datagram is forwarded");
    println!("{sent}");
}
