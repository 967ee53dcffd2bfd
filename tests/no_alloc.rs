//! The data plane forwards without a heap allocation per message: run it in-process under a
//! counting global allocator, warm it up, then forward thousands of INVITEs and their 200s
//! through two shards (with Call-ID hand-off between them) and check the count did not move.
//! The test's own client and server code in the measured window only uses preallocated
//! buffers, so any allocation counted there is the data plane's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `calls` INVITEs (prebuilt) and answers each forwarded one with a 200 built in a
/// preallocated buffer; returns how many 200s came back to the client.
fn traffic(client: &UdpSocket, uas: &UdpSocket, to: SocketAddr, invites: &[Vec<u8>]) -> usize {
    let mut buf = [0u8; 4096];
    let mut resp = [0u8; 4096];
    let mut back = 0;
    for chunk in invites.chunks(50) {
        for m in chunk {
            client.send_to(m, to).unwrap();
        }
        for _ in 0..chunk.len() {
            let Ok((n, from)) = uas.recv_from(&mut buf) else {
                break;
            };
            // 200 OK = status line + the forwarded request's headers (all Vias included).
            let first = buf[..n].iter().position(|&b| b == b'\n').unwrap() + 1;
            let head = b"SIP/2.0 200 OK\r\n";
            resp[..head.len()].copy_from_slice(head);
            resp[head.len()..head.len() + n - first].copy_from_slice(&buf[first..n]);
            uas.send_to(&resp[..head.len() + n - first], from).unwrap();
        }
        for _ in 0..chunk.len() {
            if client.recv_from(&mut buf).is_ok() {
                back += 1;
            }
        }
    }
    back
}

/// Runs the check on backend `io`, with `route` added to the route (e.g. a failover policy).
fn run(io: &str, route: &str) {
    let uas = UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&uas, &client] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let (uas_addr, client_addr) = (uas.local_addr().unwrap(), client.local_addr().unwrap());
    let p = port();
    let text = format!(
        r#"
[listen]
udp = ["127.0.0.1:{p}"]
[destinations]
[[destinations.sets]]
id = 1
destinations = [ {{ uri = "sip:{uas_addr}" }} ]
[[routes]]
set = 1
algorithm = "call-load"
record_route = true
{route}
[runtime]
shards = 2
io = "{io}"
[tracker]
capacity = 100000
"#
    );
    let cfg = sipdispatch::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let inst = sipdispatch::runtime::start(&cfg, Arc::clone(&stop)).unwrap();
    let to: SocketAddr = format!("127.0.0.1:{p}").parse().unwrap();
    let invites: Vec<Vec<u8>> = (0..6000)
        .map(|i| {
            format!(
                "INVITE sip:service@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {client_addr};branch=z9hG4bK-{io}-{i}\r\n\
From: <sip:a@{client_addr}>;tag={i}\r\nTo: <sip:service@{to}>\r\nCall-ID: {io}-{i}@noalloc\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
        })
        .collect();
    let started = Instant::now();
    // The warm-up only has to bring every buffer into use; a datagram the kernel drops while
    // the shards start (seen in CI: 28 of 1000 once) must not fail the check that follows.
    let warm = traffic(&client, &uas, to, &invites[..1000]);
    assert!(warm >= 900, "warm-up: {warm} of 1000 answered");
    let before = ALLOCS.load(Relaxed);
    let back = traffic(&client, &uas, to, &invites[1000..]);
    let after = ALLOCS.load(Relaxed);
    let io_counters = inst.io.counters.clone();
    stop.store(true, Relaxed);
    inst.io.join();
    assert_eq!(back, 5000, "every call answered");
    let fwd: u64 = inst.counters.iter().map(|c| c.snapshot().forwarded()).sum();
    // Two forwards per answered call; a warm-up datagram lost before the proxy is not forwarded.
    let answered = 2 * (warm + back) as u64;
    assert!(
        (answered..=12_000).contains(&fwd),
        "{fwd} forwarded, {answered} answered"
    );
    let handed: u64 = io_counters.iter().map(|c| c.snapshot().handoff_in).sum();
    assert!(handed > 0, "both shards worked through the hand-off");
    assert_eq!(
        after - before,
        0,
        "{io}: allocations while forwarding 10 000 messages"
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn forwarding_does_not_allocate() {
    run("mmsg", "");
    if sipdispatch::io::uring_available().is_ok() {
        run("uring", "");
    }
    // Under a failover policy every INVITE gets a transaction record (copied into a slot,
    // indexed, removed at its 200): still nothing allocated per message. (One test, not two:
    // the allocation counter is global to the process.)
    run("mmsg", "failover = { codes = [\"5xx\"], timeout = \"5s\" }");
}
