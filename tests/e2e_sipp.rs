//! End to end with real SIPp on loopback: SIPp uac → sipdispatch → two or three SIPp uas, for
//! algorithms 0, 4 and 10, one and two shards, both I/O backends. Every call must succeed,
//! with no unexpected message, and each uas must get the calls the algorithm implies.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Dispatcher, Sipp, free_port, scratch};

struct Setup {
    algorithm: &'static str,
    shards: usize,
    io: &'static str,
    uas: usize,
}

fn config(port: u16, uas: &[u16], algorithm: &str, shards: usize, io: &str, extra: &str) -> String {
    let dests: String = uas
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!("  {{ uri = \"sip:127.0.0.1:{p}\", attrs = \"duid=u{i};maxload=10000\" }},\n")
        })
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
methods = ["INVITE"]
set = 1
algorithm = "{algorithm}"
record_route = true
[[routes]]
set = 1
algorithm = "{algorithm}"
[runtime]
shards = {shards}
io = "{io}"
[log]
summary_interval = 1
{extra}
"#
    )
}

/// Runs `calls` calls through sipdispatch and returns the calls each uas completed.
fn run(s: &Setup, calls: u32, rate: u32, uac_args: &[&str]) -> Vec<u64> {
    let dir = scratch(&format!("e2e-{}-{}-{}", s.algorithm, s.shards, s.io));
    let uas_ports: Vec<u16> = (0..s.uas).map(|_| free_port()).collect();
    let uas: Vec<Sipp> = uas_ports
        .iter()
        .enumerate()
        .map(|(i, &p)| Sipp::uas(&dir, &format!("uas{i}"), p, None))
        .collect();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Dispatcher::start(
        &dir,
        addr,
        &config(port, &uas_ports, s.algorithm, s.shards, s.io, ""),
    );
    let (code, stats) =
        Sipp::uac(&dir, "uac", addr, calls, rate, uac_args).finish(Duration::from_secs(90));
    let per_uas: Vec<u64> = Sipp::stop_all(uas).iter().map(|u| u.successful()).collect();
    let log = d.log_text();
    assert_eq!(stats.failed(), 0, "failed calls; sipdispatch log:\n{log}");
    assert_eq!(stats.unexpected(), 0, "unexpected messages");
    assert_eq!(stats.successful(), u64::from(calls), "log:\n{log}");
    assert_eq!(code, Some(0));
    assert_eq!(per_uas.iter().sum::<u64>(), u64::from(calls), "{per_uas:?}");
    per_uas
}

fn backends() -> Vec<&'static str> {
    let mut b = vec!["mmsg"];
    if sipdispatch::io::uring_available().is_ok() {
        b.push("uring");
    } else if std::env::var_os("CI").is_none() {
        eprintln!("io_uring unavailable here: testing mmsg only");
    }
    b
}

#[test]
fn round_robin_spreads_exactly() {
    require_sipp!();
    for io in backends() {
        for shards in [1, 2] {
            let got = run(
                &Setup {
                    algorithm: "round-robin",
                    shards,
                    io,
                    uas: 2,
                },
                200,
                100,
                &[],
            );
            // Each shard keeps its own rotation over the shared counter: exact in total.
            assert_eq!(got, vec![100, 100], "{io} {shards} shard(s)");
        }
    }
}

#[test]
fn hash_callid_spreads_over_three() {
    require_sipp!();
    for io in backends() {
        for shards in [1, 2] {
            let got = run(
                &Setup {
                    algorithm: "hash-callid",
                    shards,
                    io,
                    uas: 3,
                },
                300,
                150,
                &[],
            );
            assert!(got.iter().all(|&n| n > 40), "{io} {shards}: {got:?}");
        }
    }
}

#[test]
fn call_load_balances_concurrent_calls() {
    require_sipp!();
    for io in backends() {
        for shards in [1, 2] {
            // Calls last 1 s, so about a hundred are up at once: the least-loaded destination
            // alternates and the two stay within a few calls of each other.
            let got = run(
                &Setup {
                    algorithm: "call-load",
                    shards,
                    io,
                    uas: 2,
                },
                200,
                100,
                &["-d", "1000"],
            );
            assert!(
                got.iter().all(|&n| (90..=110).contains(&n)),
                "{io} {shards}: {got:?}"
            );
        }
    }
}
