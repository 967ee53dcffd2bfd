//! Stopping the data plane in-process, over both I/O backends: what it received is answered
//! before the shards exit, and every shard's socket is closed afterwards.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

fn options(to: SocketAddr, from: SocketAddr, n: usize) -> Vec<u8> {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-stop-{n}\r\n\
From: <sip:probe@{from}>;tag=p{n}\r\nTo: <sip:{to}>\r\nCall-ID: stop-{n}@test\r\n\
CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn run(io: &str) {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let text = format!(
        "[listen]\nudp = [\"{addr}\"]\n[destinations]\n[[destinations.sets]]\nid = 1\n\
destinations = [{{ uri = \"sip:127.0.0.1:9\" }}]\n[[routes]]\nset = 1\nalgorithm = 4\n\
[runtime]\nshards = 2\nio = \"{io}\"\n"
    );
    let cfg = sipdispatch::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let inst = sipdispatch::runtime::start(&cfg, Arc::clone(&stop)).unwrap();
    // A client buffer big enough for every reply at once: the test counts the dispatcher's
    // losses, not its own.
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    client.set_recv_buffer_size(4 << 20).unwrap();
    client
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let client: UdpSocket = client.into();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let me = client.local_addr().unwrap();
    const N: usize = 300;
    // Replies are read as they come, so the client's own buffer never drops one.
    let reader = {
        let client = client.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut answered = 0;
            while let Ok((n, _)) = client.recv_from(&mut buf) {
                assert!(buf[..n].starts_with(b"SIP/2.0 200 OK"));
                answered += 1;
                if answered == N {
                    break;
                }
            }
            answered
        })
    };
    for n in 0..N {
        client.send_to(&options(addr, me, n), addr).unwrap();
    }
    // Stop as soon as every request has been received (some replies may still be queued).
    let deadline = Instant::now() + Duration::from_secs(10);
    while inst
        .counters
        .iter()
        .map(|c| c.snapshot().received)
        .sum::<u64>()
        < N as u64
    {
        assert!(Instant::now() < deadline, "{io}: requests not received");
        std::thread::yield_now();
    }
    stop.store(true, Relaxed);
    let counters = inst.counters.clone();
    let io_counters = inst.io.counters.clone();
    inst.io.join();
    let answered = reader.join().unwrap();
    assert_eq!(
        answered, N,
        "{io}: every request received before the stop is answered"
    );
    let replied: u64 = counters
        .iter()
        .map(|c| c.snapshot().replies_with(200))
        .sum();
    assert_eq!(replied, N as u64);
    let tx_errors: u64 = io_counters.iter().map(|c| c.snapshot().tx_errors).sum();
    assert_eq!(tx_errors, 0, "{io}");
    // Both shards' SO_REUSEPORT sockets are gone: a plain socket can take the port.
    UdpSocket::bind(addr).unwrap_or_else(|e| panic!("{io}: port still held after stop: {e}"));
}

#[test]
fn stopping_answers_what_was_received_and_closes_the_sockets() {
    run("mmsg");
    if sipdispatch::io::uring_available().is_ok() {
        run("uring");
    } else if std::env::var_os("CI").is_some() {
        panic!("io_uring unavailable in CI");
    }
}
