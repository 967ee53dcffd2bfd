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

// The same SIPp messages the scanner's benchmarks use, numbered per call here.
#[allow(dead_code)]
#[path = "../bench/messages.rs"]
mod messages;
use messages::{sipp_request, sipp_response};

const CONFIG: &str = r#"
[listen]
udp = ["127.0.0.1:7300"]
[destinations]
[[destinations.sets]]
id = 1
destinations = [ { uri = "sip:127.0.0.1:7301" } ]
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

/// The Vias of the forwarded request `fwd`, joined on one line as SIPp's uas answers with them.
fn vias(fwd: &[u8]) -> String {
    let text = std::str::from_utf8(fwd).unwrap();
    let vias: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Via: "))
        .collect();
    vias.join(", ")
}

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
    let uac: SocketAddr = "127.0.0.1:7302".parse().unwrap();
    let uas: SocketAddr = "127.0.0.1:7301".parse().unwrap();
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
            let invite = sipp_request("INVITE", c, 1, 0, false);
            let ack = sipp_request("ACK", c, 1, 5, true);
            let bye = sipp_request("BYE", c, 2, 7, true);
            let vi = vias(&forwarded(&mut scratch, &invite));
            let vb = vias(&forwarded(&mut scratch, &bye));
            [
                (uac, invite),
                (uas, sipp_response(&vi, "180 Ringing", "INVITE", 1, c)),
                (uas, sipp_response(&vi, "200 OK", "INVITE", 1, c)),
                (uac, ack),
                (uac, bye),
                (uas, sipp_response(&vb, "200 OK", "BYE", 2, c)),
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
