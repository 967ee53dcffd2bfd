//! Keepalives end to end, with real SIPp as the media servers: a backend that dies is marked
//! inactive within `ping_interval × probing_threshold + ping_timeout` (as the dispatcher's log
//! reports it), calls keep succeeding on the other one, and it is back in service after
//! `inactive_threshold` good replies once restarted; with one backend answering keepalives
//! slowly, the latency algorithm (13) sends most calls to the other.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Dispatcher, Sipp, free_port, scratch};

/// What a SIPp backend does with calls; every kind answers keepalives.
#[derive(Clone, Copy)]
enum Backend {
    /// Answers calls like a media server, and keepalives after a delay.
    Media { keepalive_delay_ms: u32 },
    /// Answers every INVITE with 503.
    Busy,
    /// Never answers an INVITE.
    Silent,
}

/// Writes the scenario of a SIPp uas that behaves as `kind`.
fn scenario(dir: &Path, name: &str, kind: Backend) -> PathBuf {
    let reply = |first: &str, extra: &str| {
        format!(
            "<![CDATA[\n{first}\n[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]SIPpTag01[call_number]\n\
             [last_Call-ID:]\n[last_CSeq:]\nContact: <sip:[local_ip]:[local_port];transport=[transport]>\n{extra}\n]]>"
        )
    };
    let sdp = "Content-Type: application/sdp\nContent-Length: [len]\n\nv=0\no=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]\n\
               s=-\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] RTP/AVP 0\na=rtpmap:0 PCMU/8000\n";
    let ok = reply("SIP/2.0 200 OK", "Content-Length: 0\n");
    let (calls, delay) = match kind {
        Backend::Media { keepalive_delay_ms } => (
            format!(
                "<send>{}</send>\n<send retrans=\"500\">{}</send>\n<recv request=\"ACK\" crlf=\"true\"/>\n\
                 <recv request=\"BYE\"/>\n<send next=\"end\">{ok}</send>",
                reply("SIP/2.0 180 Ringing", "Content-Length: 0\n"),
                reply("SIP/2.0 200 OK", sdp),
            ),
            keepalive_delay_ms,
        ),
        Backend::Busy => (
            format!(
                "<send>{}</send>\n<recv request=\"ACK\" next=\"end\"/>",
                reply("SIP/2.0 503 Service Unavailable", "Content-Length: 0\n")
            ),
            0,
        ),
        Backend::Silent => ("<pause milliseconds=\"4000\" next=\"end\"/>".into(), 0),
    };
    let pause = if delay > 0 {
        format!("<pause milliseconds=\"{delay}\"/>")
    } else {
        String::new()
    };
    let xml = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="{name}">
  <recv request="OPTIONS" optional="true" next="keepalive"/>
  <recv request="INVITE" crlf="true"/>
  {calls}
  <label id="keepalive"/>
  {pause}
  <send>{ok}</send>
  <label id="end"/>
</scenario>
"#
    );
    let path = dir.join(format!("{name}.xml"));
    std::fs::write(&path, xml).unwrap();
    path
}

const MEDIA: Backend = Backend::Media {
    keepalive_delay_ms: 0,
};

fn config(port: u16, uas: &[u16], algorithm: &str, route: &str, health: &str) -> String {
    let dests: String = uas
        .iter()
        // Algorithm 13 weighs latency against priority (Kamailio's score, priority − latency /
        // priority), so equal priorities above 0 make latency decide.
        .map(|p| format!("  {{ uri = \"sip:127.0.0.1:{p}\", priority = 10 }},\n"))
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
algorithm = "{algorithm}"
{route}
[runtime]
shards = 2
[log]
summary_interval = 0
[health]
{health}
"#
    )
}

/// Waits until the dispatcher's log has `needle` (at most `limit`); returns when it appeared.
fn wait_log(d: &Dispatcher, needle: &str, limit: Duration) -> Option<Instant> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if d.log_text().contains(needle) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Two SIPp media servers `a` and `b`, and a free port for the dispatcher.
fn two_media_servers(dir: &Path) -> (PathBuf, [u16; 2], [Sipp; 2], u16, SocketAddr) {
    let sf = scenario(dir, "media", MEDIA);
    let ports = [free_port(), free_port()];
    let a = Sipp::uas(dir, "a", ports[0], Some(&sf));
    let b = Sipp::uas(dir, "b", ports[1], Some(&sf));
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    (sf, ports, [a, b], port, addr)
}

#[test]
fn a_dead_backend_is_taken_out_and_put_back() {
    require_sipp!();
    let dir = scratch("health-dead");
    let (sf, ports, [a, b], port, addr) = two_media_servers(&dir);
    // interval 0.5 s × threshold 2 + timeout 0.5 s: down within 1.5 s (plus one round's phase).
    let hooks = dir.join("hooks.log");
    let health = format!(
        "ping_interval = \"500ms\"\nping_timeout = \"500ms\"\nprobing_mode = 1\n\
         probing_threshold = 2\ninactive_threshold = 2\n\
         on_down = 'echo \"$SIPDISPATCH_EVENT $SIPDISPATCH_URI $SIPDISPATCH_CODE\" >> {0}'\n\
         on_up = 'echo \"$SIPDISPATCH_EVENT $SIPDISPATCH_URI $SIPDISPATCH_STATE\" >> {0}'\n",
        hooks.display()
    );
    let d = Dispatcher::start(
        &dir,
        addr,
        &config(port, &ports, "round-robin", "", &health),
    );
    let b_uri = format!("sip:127.0.0.1:{}", ports[1]);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        !d.log_text().contains("-> I"),
        "both up at first:\n{}",
        d.log_text()
    );

    let killed = Instant::now();
    b.proc.signal("KILL");
    let down = format!("destination {b_uri} (set 1): TP -> IP (no reply, code 408)");
    let at = wait_log(&d, &down, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("never marked down:\n{}", d.log_text()));
    let bound = Duration::from_millis(500 * 2 + 500 + 500 + 300);
    assert!(at - killed <= bound, "down after {:?}", at - killed);

    // Every call now goes to the live backend, and none fails.
    let (code, stats) = Sipp::uac(&dir, "uac", addr, 100, 100, &[]).finish(Duration::from_secs(60));
    assert_eq!(
        (code, stats.failed(), stats.successful()),
        (Some(0), 0, 100)
    );

    // Restarted, it needs two good replies in a row, so two keepalive rounds, to come back.
    let restarted = Instant::now();
    let b = Sipp::uas(&dir, "b2", ports[1], Some(&sf));
    let up = format!("destination {b_uri} (set 1): IP -> AP (reply, code 200)");
    let at = wait_log(&d, &up, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("never back:\n{}", d.log_text()));
    assert!(
        at - restarted >= Duration::from_millis(400),
        "back after {:?}",
        at - restarted
    );
    let (code, stats) =
        Sipp::uac(&dir, "uac2", addr, 100, 100, &[]).finish(Duration::from_secs(60));
    assert_eq!((code, stats.failed()), (Some(0), 0));
    Sipp::stop_all(vec![a, b]);
    let (exit, log) = d.stop();
    assert_eq!(exit, Some(0));
    assert!(!log.contains("panicked"), "{log}");
    let hooks = std::fs::read_to_string(&hooks).unwrap_or_default();
    assert_eq!(
        hooks.lines().collect::<Vec<_>>(),
        vec![
            format!("dst-down {b_uri} 408"),
            format!("dst-up {b_uri} AP")
        ],
        "the hooks ran once each"
    );
}

#[test]
fn slow_keepalive_replies_steer_the_latency_algorithm() {
    require_sipp!();
    let dir = scratch("health-latency");
    let ports = [free_port(), free_port()];
    let slow_kind = Backend::Media {
        keepalive_delay_ms: 150,
    };
    let fast = Sipp::uas(&dir, "fast", ports[0], Some(&scenario(&dir, "fast", MEDIA)));
    let slow = Sipp::uas(
        &dir,
        "slow",
        ports[1],
        Some(&scenario(&dir, "slow", slow_kind)),
    );
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let health = "ping_interval = \"200ms\"\nping_timeout = \"1s\"\nprobing_mode = 1\n";
    let d = Dispatcher::start(&dir, addr, &config(port, &ports, "latency", "", health));
    // A few rounds of keepalives give both an estimate.
    std::thread::sleep(Duration::from_millis(1500));
    let (code, stats) = Sipp::uac(&dir, "uac", addr, 200, 100, &[]).finish(Duration::from_secs(60));
    assert_eq!((code, stats.failed()), (Some(0), 0));
    let got = Sipp::stop_all(vec![fast, slow]);
    // A SIPp uas counts each keepalive it answers as a call, and both got the same rounds of
    // keepalives (± the one in flight at the end), so the difference is the difference in
    // INVITEs: "most calls" (≥ 80 % of 200) to the fast one means a difference of ≥ 120.
    let calls = |s: &common::Stats| s.get("SuccessfulCall(C)");
    let (f, s) = (calls(&got[0]), calls(&got[1]));
    assert!(f >= s + 118, "fast answered {f}, slow {s}");
    d.stop();
}

/// Starts a dispatcher with failover on a round-robin route over `kinds` of SIPp backends,
/// runs `calls` SIPp uac calls through it, and returns the uac's exit code and stats with the
/// backends' stats.
fn through(
    name: &str,
    kinds: &[Backend],
    calls: u32,
    health: &str,
) -> (Option<i32>, common::Stats, Vec<common::Stats>, String) {
    let dir = scratch(name);
    let ports: Vec<u16> = kinds.iter().map(|_| free_port()).collect();
    let uas: Vec<Sipp> = kinds
        .iter()
        .zip(&ports)
        .enumerate()
        .map(|(i, (&k, &p))| {
            let n = format!("uas{i}");
            Sipp::uas(&dir, &n, p, Some(&scenario(&dir, &n, k)))
        })
        .collect();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let failover = "failover = { codes = [\"5xx\"], timeout = \"1s\", max_tries = 3 }";
    let d = Dispatcher::start(
        &dir,
        addr,
        &config(port, &ports, "round-robin", failover, health),
    );
    let (code, stats) =
        Sipp::uac(&dir, "uac", addr, calls, 20, &[]).finish(Duration::from_secs(90));
    let backends = Sipp::stop_all(uas);
    let (_, log) = d.stop();
    (code, stats, backends, log)
}

#[test]
fn calls_refused_with_503_are_retried_on_a_good_backend() {
    require_sipp!();
    let (code, uac, uas, log) = through("failover-503", &[Backend::Busy, MEDIA], 60, "");
    assert_eq!(
        (code, uac.failed(), uac.successful()),
        (Some(0), 0, 60),
        "{log}"
    );
    // Half the calls tried the busy one first; each of its 503s was ACKed by sipdispatch,
    // which completes the busy uas's scenario.
    assert!(
        uas[0].successful() >= 25,
        "busy uas: {}",
        uas[0].successful()
    );
    assert_eq!(uas[0].failed(), 0, "every 503 was ACKed");
    assert_eq!(uas[1].successful(), 60);
    assert!(log.contains("failovers="), "{log}");
}

#[test]
fn calls_to_a_silent_backend_move_on_after_the_timeout() {
    require_sipp!();
    let (code, uac, uas, log) = through("failover-silent", &[Backend::Silent, MEDIA], 20, "");
    assert_eq!(
        (code, uac.failed(), uac.successful()),
        (Some(0), 0, 20),
        "{log}"
    );
    assert_eq!(uas[1].successful(), 20);
}

#[test]
fn a_backend_killed_mid_load_and_restarted_costs_no_call() {
    require_sipp!();
    let dir = scratch("failover-kill");
    let (sf, ports, [a, b], port, addr) = two_media_servers(&dir);
    let failover = "failover = { codes = [\"5xx\"], timeout = \"1s\", mark = \"inactive\" }";
    let health = "ping_interval = \"500ms\"\nping_timeout = \"500ms\"\nprobing_mode = 1\n";
    let d = Dispatcher::start(
        &dir,
        addr,
        &config(port, &ports, "round-robin", failover, health),
    );
    let uac = Sipp::uac(&dir, "uac", addr, 300, 50, &[]);
    std::thread::sleep(Duration::from_secs(2));
    b.proc.signal("KILL");
    std::thread::sleep(Duration::from_secs(2));
    // The restarted server also answers the BYEs the uac retransmits for calls it had taken.
    let b = Sipp::uas(&dir, "b2", ports[1], Some(&sf));
    let (code, stats) = uac.finish(Duration::from_secs(90));
    Sipp::stop_all(vec![a, b]);
    let (_, log) = d.stop();
    assert_eq!(
        (code, stats.failed(), stats.successful()),
        (Some(0), 0, 300),
        "{log}"
    );
    let b_uri = format!("sip:127.0.0.1:{}", ports[1]);
    let down = log.find(&format!("destination {b_uri} (set 1): AP -> IP"));
    let up = log.find(&format!("destination {b_uri} (set 1): IP -> AP"));
    assert!(
        matches!((down, up), (Some(d), Some(u)) if d < u),
        "taken out, then back: {log}"
    );
}

#[test]
fn keepalives_through_an_outbound_proxy_judge_the_destination_by_the_proxy() {
    require_sipp!();
    let dir = scratch("health-obproxy");
    let sf = scenario(&dir, "proxy", MEDIA);
    let proxy_port = free_port();
    let proxy = Sipp::uas(&dir, "proxy", proxy_port, Some(&sf));
    // Nothing listens at the destination itself: only the proxy can answer its keepalives.
    let dead = free_port();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let text = config(port, &[], "round-robin", "", "")
        .replace(
            "destinations = [\n]",
            &format!(
                "destinations = [\n  {{ uri = \"sip:127.0.0.1:{dead}\", attrs = \"obproxy=sip:127.0.0.1:{proxy_port}\" }},\n]"
            ),
        )
        .replace(
            "[health]\n",
            "[health]\nping_interval = \"300ms\"\nping_timeout = \"300ms\"\nprobing_mode = 1\n\
             probing_threshold = 2\n",
        );
    let d = Dispatcher::start(&dir, addr, &text);
    // Six rounds: sent to the destination, every one would have timed out.
    std::thread::sleep(Duration::from_millis(1800));
    assert!(
        !d.log_text().contains("-> I") && !d.log_text().contains("-> T"),
        "the proxy answered every keepalive:\n{}",
        d.log_text()
    );
    proxy.proc.signal("KILL");
    let down = format!("destination sip:127.0.0.1:{dead} (set 1): TP -> IP (no reply, code 408)");
    assert!(
        wait_log(&d, &down, Duration::from_secs(10)).is_some(),
        "down once the proxy is gone:\n{}",
        d.log_text()
    );
    let (exit, log) = d.stop();
    assert_eq!(exit, Some(0));
    assert!(!log.contains("panicked"), "{log}");
}
