//! End to end with real SIPp on loopback: SIPp uac → sipdispatch → two or three SIPp uas, for
//! algorithms 0, 4 and 10, one and two shards, both I/O backends. Every call must succeed,
//! with no unexpected message on either side (so ACK and BYE reached the uas that got the
//! INVITE), and each uas must get the calls the algorithm implies: exactly half each for
//! round-robin, exactly what Kamailio's hash of SIPp's Call-IDs gives for hash-callid, within a
//! few calls of each other for call-load.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Dispatcher, Sipp, backends, free_port, scratch};
use sipdispatch::dispatch::hash::kamailio_hash;

struct Setup {
    algorithm: &'static str,
    shards: usize,
    io: &'static str,
    uas: usize,
    /// The uas runs bench/sipp/rr_uas.xml (the caller passes rr_uac.xml to the uac): the
    /// call honours Record-Route, and a call fails unless the 200 was record-routed and the
    /// ACK and BYE arrive without our Route.
    record_route_scenarios: bool,
}

/// One of the SIPp scenarios in bench/sipp/.
fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench/sipp")
        .join(name)
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

/// Runs `calls` calls through sipdispatch and returns the calls each uas completed and the
/// uac's process id (SIPp's Call-IDs are `<call number>-<pid>@<local ip>`).
fn run(s: &Setup, calls: u32, rate: u32, uac_args: &[&str]) -> (Vec<u64>, u32) {
    let dir = scratch(&format!("e2e-{}-{}-{}", s.algorithm, s.shards, s.io));
    let uas_ports: Vec<u16> = (0..s.uas).map(|_| free_port()).collect();
    let uas: Vec<Sipp> = uas_ports
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let sf = s.record_route_scenarios.then(|| scenario("rr_uas.xml"));
            Sipp::uas(&dir, &format!("uas{i}"), p, sf.as_deref())
        })
        .collect();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Dispatcher::start(
        &dir,
        addr,
        &config(port, &uas_ports, s.algorithm, s.shards, s.io, ""),
    );
    let uac = Sipp::uac(&dir, "uac", addr, calls, rate, uac_args);
    let pid = uac.proc.child.id();
    let (code, stats) = uac.finish(Duration::from_secs(90));
    let uas_stats = Sipp::stop_all(uas);
    let per_uas: Vec<u64> = uas_stats.iter().map(|u| u.successful()).collect();
    let log = d.log_text();
    // A uas that got an ACK or BYE of a call whose INVITE went elsewhere counts it as an
    // unexpected message and a failed call: none may.
    for (i, u) in uas_stats.iter().enumerate() {
        assert_eq!(
            (u.failed(), u.unexpected()),
            (0, 0),
            "uas{i}: failed calls or unexpected messages; sipdispatch log:\n{log}"
        );
    }
    assert_eq!(stats.failed(), 0, "failed calls; sipdispatch log:\n{log}");
    assert_eq!(stats.unexpected(), 0, "unexpected messages");
    assert_eq!(stats.successful(), u64::from(calls), "log:\n{log}");
    assert_eq!(code, Some(0));
    assert_eq!(per_uas.iter().sum::<u64>(), u64::from(calls), "{per_uas:?}");
    (per_uas, pid)
}

#[test]
fn round_robin_spreads_exactly() {
    require_sipp!();
    for io in backends() {
        for shards in [1, 2] {
            let (got, _) = run(
                &Setup {
                    algorithm: "round-robin",
                    shards,
                    io,
                    uas: 2,
                    record_route_scenarios: false,
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
            let (got, pid) = run(
                &Setup {
                    algorithm: "hash-callid",
                    shards,
                    io,
                    uas: 3,
                    record_route_scenarios: false,
                },
                300,
                150,
                &[],
            );
            // Exactly the calls Kamailio's hash of each Call-ID puts on each uas.
            let mut want = vec![0u64; 3];
            for n in 1..=300 {
                let cid = format!("{n}-{pid}@127.0.0.1");
                want[kamailio_hash(cid.as_bytes(), None) as usize % 3] += 1;
            }
            assert_eq!(got, want, "{io} {shards} shard(s)");
        }
    }
}

#[test]
fn call_load_balances_concurrent_calls() {
    require_sipp!();
    call_load_over_two(false);
}

/// Call-load as it is deployed: the INVITE route record-routes, so the ACK and the BYE come
/// back through sipdispatch with its Route on top, which it removes (RFC 3261 §16.4) before
/// sending them to the uas that got the INVITE. SIPp's built-in scenarios ignore
/// Record-Route; bench/sipp/'s fail a call whose 200 was not record-routed or whose ACK or BYE
/// still carries a Route.
#[test]
fn record_routed_calls_come_back_through_the_proxy() {
    require_sipp!();
    call_load_over_two(true);
}

/// Call-load over two uas, one and two shards, both backends, with SIPp's built-in scenarios
/// or the record-routing ones.
fn call_load_over_two(record_route_scenarios: bool) {
    let uac = scenario("rr_uac.xml");
    let uac = uac.to_str().unwrap();
    let args: &[&str] = if record_route_scenarios {
        &["-sf", uac, "-d", "1000"]
    } else {
        &["-d", "1000"]
    };
    for io in backends() {
        for shards in [1, 2] {
            // Calls last 1 s, so about a hundred are up at once: the least-loaded destination
            // alternates and the two stay within a few calls of each other.
            let (got, _) = run(
                &Setup {
                    algorithm: "call-load",
                    shards,
                    io,
                    uas: 2,
                    record_route_scenarios,
                },
                200,
                100,
                args,
            );
            assert!(
                got.iter().all(|&n| (90..=110).contains(&n)),
                "{io} {shards}: {got:?}"
            );
        }
    }
}
