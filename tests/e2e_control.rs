//! The management API end to end: a running sipdispatch with real SIPp traffic, driven the way
//! an operator drives it — `sipdispatch ctl` for every method, plain HTTP for the rest — and
//! each call's effect on the traffic checked: a destination set inactive gets no new calls, an
//! added one gets its share, a removed one none, and a reload of an edited list file under load
//! loses no call and keeps the call-load counters. Also: the token, the loopback rule, and
//! `/metrics` parsed as Prometheus text with counters that match the traffic.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Dispatcher, Sipp, free_port, scratch};
use serde_json::Value;

fn config(port: u16, http: u16, algorithm: &str, control: &str) -> String {
    format!(
        r#"
[listen]
udp = ["127.0.0.1:{port}"]
[destinations]
list_file = "dispatcher.list"
[[routes]]
set = 1
algorithm = "{algorithm}"
[log]
summary_interval = 0
[control]
listen = "127.0.0.1:{http}"
{control}
"#
    )
}

fn list_file(dir: &Path, ports: &[u16]) {
    let text: String = ports
        .iter()
        .map(|p| format!("1 sip:127.0.0.1:{p}\n"))
        .collect();
    std::fs::write(dir.join("dispatcher.list"), text).unwrap();
}

/// `sipdispatch ctl --json METHOD ARGS…` against `http`; the parsed result, or the error text.
fn ctl(http: u16, token: Option<&str>, method: &str, args: &[&str]) -> Result<Value, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipdispatch"));
    cmd.args(["ctl", "--json", "--endpoint", &format!("127.0.0.1:{http}")]);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let out = cmd.arg(method).args(args).output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Requests the dispatcher has sent each destination, by port, from `dispatcher.list`.
fn requests(http: u16) -> Vec<(u16, u64)> {
    let v = ctl(http, None, "dispatcher.list", &[]).unwrap();
    let mut out = Vec::new();
    for r in v["RECORDS"].as_array().unwrap() {
        for t in r["SET"]["TARGETS"].as_array().unwrap() {
            let d = &t["DEST"];
            let port = d["URI"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            out.push((port, d["COUNTERS"]["REQUESTS"].as_u64().unwrap()));
        }
    }
    out
}

fn sent_to(before: &[(u16, u64)], after: &[(u16, u64)], port: u16) -> u64 {
    let get = |v: &[(u16, u64)]| v.iter().find(|(p, _)| *p == port).map_or(0, |x| x.1);
    get(after) - get(before)
}

const GET_METRICS: &str = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

fn http(port: u16, req: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
    (code, body)
}

fn uac(
    dir: &Path,
    name: &str,
    addr: SocketAddr,
    calls: u32,
    rate: u32,
    extra: &[&str],
) -> (Option<i32>, u64, u64) {
    let (code, s) = Sipp::uac(dir, name, addr, calls, rate, extra).finish(Duration::from_secs(90));
    (code, s.successful(), s.failed())
}

/// A running test setup: SIPp uas backends (the first `listed` of them in the list file) and a
/// dispatcher with its management endpoint.
struct Setup {
    dir: std::path::PathBuf,
    ports: Vec<u16>,
    uas: Vec<Sipp>,
    addr: SocketAddr,
    hport: u16,
    d: Dispatcher,
}

fn setup(name: &str, backends: usize, listed: usize, algorithm: &str, control: &str) -> Setup {
    let dir = scratch(name);
    let ports: Vec<u16> = (0..backends).map(|_| free_port()).collect();
    let uas = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| Sipp::uas(&dir, &format!("uas{i}"), p, None))
        .collect();
    list_file(&dir, &ports[..listed]);
    let (port, hport) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Dispatcher::start(&dir, addr, &config(port, hport, algorithm, control));
    Setup {
        dir,
        ports,
        uas,
        addr,
        hport,
        d,
    }
}

#[test]
fn every_method_changes_the_traffic_as_it_says() {
    require_sipp!();
    let Setup {
        dir,
        ports,
        uas,
        addr,
        hport,
        d,
    } = setup("control-methods", 3, 2, "round-robin", "");
    let b = format!("sip:127.0.0.1:{}", ports[1]);

    // set_state i: the destination gets no new calls.
    let v = ctl(hport, None, "dispatcher.set_state", &["i", "1", &b]).unwrap();
    assert_eq!(v["updated"], 1);
    let r0 = requests(hport);
    assert_eq!(uac(&dir, "uac1", addr, 40, 100, &[]), (Some(0), 40, 0));
    let r1 = requests(hport);
    assert_eq!(
        (sent_to(&r0, &r1, ports[0]), sent_to(&r0, &r1, ports[1])),
        (40, 0)
    );

    // add: calls reach the new destination.
    let c = format!("sip:127.0.0.1:{}", ports[2]);
    ctl(hport, None, "dispatcher.add", &["1", &c]).unwrap();
    assert_eq!(uac(&dir, "uac2", addr, 40, 100, &[]), (Some(0), 40, 0));
    let r2 = requests(hport);
    assert_eq!(
        sent_to(&r1, &r2, ports[2]),
        20,
        "round-robin over the two active ones"
    );

    // remove: it gets none again; set_state a brings the other back.
    ctl(hport, None, "dispatcher.remove", &["1", &c]).unwrap();
    ctl(hport, None, "dispatcher.set_state", &["a", "1", &b]).unwrap();
    let v = ctl(hport, None, "dispatcher.set_duid_state", &["a", "1", "all"]).unwrap();
    assert_eq!(v["updated"], 2);
    assert_eq!(uac(&dir, "uac3", addr, 40, 100, &[]), (Some(0), 40, 0));
    let r3 = requests(hport);
    assert!(r3.iter().all(|(p, _)| *p != ports[2]), "removed: {r3:?}");
    assert_eq!(sent_to(&r2, &r3, ports[1]), 20);

    // The rest of the methods answer as Kamailio's do.
    assert_eq!(
        ctl(hport, None, "dispatcher.ping_active", &["0"]).unwrap()["OldPingState"],
        1
    );
    assert_eq!(
        ctl(hport, None, "dispatcher.hash", &["3", "abc"]).unwrap()["slot"],
        0
    );
    let oc = ctl(hport, None, "dispatcher.oc_set", &["1", &b, "25", "30"]).unwrap();
    assert_eq!(oc["ocrate"], 25);
    assert_eq!(
        ctl(hport, None, "dispatcher.oclist", &["1"]).unwrap()[1]["ocrate"],
        25
    );
    assert_eq!(
        ctl(hport, None, "ds_list", &["short"]).unwrap()["NRSETS"],
        1
    );
    let e = ctl(hport, None, "dispatcher.set_state", &["q", "1", &b]).unwrap_err();
    assert!(e.contains("expected a, i, d or t"), "{e}");
    // And the human form, as an operator reads it.
    let out = Command::new(env!("CARGO_BIN_EXE_sipdispatch"))
        .args([
            "ctl",
            "--endpoint",
            &format!("127.0.0.1:{hport}"),
            "dispatcher.list",
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("SET  URI") && table.contains(&b),
        "{table}"
    );

    let got = Sipp::stop_all(uas);
    assert_eq!(got.iter().map(|s| s.successful()).sum::<u64>(), 120);
    assert_eq!(got[2].successful(), 20);
    d.stop();
}

#[test]
fn a_reload_under_load_loses_no_call_and_keeps_call_load() {
    require_sipp!();
    let Setup {
        dir,
        ports,
        uas,
        addr,
        hport,
        d,
    } = setup("control-reload", 3, 2, "call-load", "");
    let load = || -> u64 {
        let v = ctl(hport, None, "dispatcher.list", &[]).unwrap();
        v["RECORDS"][0]["SET"]["TARGETS"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["DEST"]["RUNTIME"]["DLGLOAD"].as_u64().unwrap())
            .sum()
    };
    // 300 calls/s of 1-second calls: about 300 in progress at any time.
    let run = Sipp::uac(&dir, "uac", addr, 1500, 300, &["-d", "1000", "-l", "1000"]);
    std::thread::sleep(Duration::from_millis(2500));
    let before = load();
    list_file(&dir, &ports);
    ctl(hport, None, "dispatcher.reload", &[]).unwrap();
    let after = load();
    let (code, stats) = run.finish(Duration::from_secs(90));
    assert_eq!(
        (code, stats.failed(), stats.successful()),
        (Some(0), 0, 1500)
    );
    assert!(
        before > 100,
        "calls in progress before the reload: {before}"
    );
    assert!(
        after * 2 > before,
        "call load kept over the reload: {before} then {after}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(load(), 0, "every call given back, none below zero");
    let got = Sipp::stop_all(uas);
    assert!(got[2].successful() > 0, "the added destination took calls");
    let (_, log) = d.stop();
    assert!(log.contains("generation 2"), "{log}");
}

#[test]
fn the_endpoint_needs_its_token_and_loopback_without_one() {
    let dir = scratch("control-token");
    list_file(&dir, &[free_port()]);
    let (port, hport) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Dispatcher::start(
        &dir,
        addr,
        &config(port, hport, "round-robin", "token = \"s3cret\""),
    );
    let e = ctl(hport, Some("wrong"), "dispatcher.list", &[]).unwrap_err();
    assert!(e.contains("401"), "{e}");
    let (code, _) = http(hport, GET_METRICS);
    assert_eq!(code, 401);
    assert_eq!(
        ctl(hport, Some("s3cret"), "dispatcher.list", &[]).unwrap()["NRSETS"],
        1
    );
    d.stop();

    // Any address but loopback without a token is refused, naming the key's line.
    let text = config(port, hport, "round-robin", "")
        .replace("listen = \"127.0.0.1:", "listen = \"0.0.0.0:");
    let path = dir.join("open.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sipdispatch"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("open.toml:") && err.contains("control.token"),
        "{err}"
    );
}

#[test]
fn metrics_count_the_traffic_that_was_sent() {
    require_sipp!();
    let Setup {
        dir,
        uas,
        addr,
        hport,
        d,
        ..
    } = setup("control-metrics", 2, 2, "round-robin", "");
    assert_eq!(uac(&dir, "uac", addr, 100, 100, &[]), (Some(0), 100, 0));
    Sipp::stop_all(uas);
    let (code, body) = http(hport, GET_METRICS);
    assert_eq!(code, 200);
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    // Each call: INVITE, ACK, BYE forwarded; 180, 200 and the BYE's 200 relayed.
    assert_eq!(value("sipdispatch_forwarded_requests_total", None), 300.0);
    assert_eq!(value("sipdispatch_forwarded_responses_total", None), 300.0);
    assert_eq!(
        value("sipdispatch_shard_forwarded_requests_total", None),
        300.0
    );
    assert_eq!(
        value("sipdispatch_destination_requests_total", None),
        100.0,
        "INVITEs dispatched"
    );
    assert_eq!(
        value(
            "sipdispatch_destination_replies_total",
            Some(("class", "1xx"))
        ),
        100.0
    );
    assert_eq!(
        value(
            "sipdispatch_destination_replies_total",
            Some(("class", "2xx"))
        ),
        200.0
    );
    assert_eq!(value("sipdispatch_destination_up", None), 2.0);
    assert_eq!(value("sipdispatch_dropped_total", None), 0.0);
    assert_eq!(value("sipdispatch_config_generation", None), 1.0);
    d.stop();
}

#[test]
fn sighup_and_a_watched_list_file_reload() {
    let dir = scratch("control-hup");
    let ports = [free_port(), free_port(), free_port()];
    list_file(&dir, &ports[..1]);
    let (port, hport) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Dispatcher::start(
        &dir,
        addr,
        &config(port, hport, "round-robin", "watch_list_file = true"),
    );
    let nr = || {
        ctl(hport, None, "dispatcher.list", &[]).unwrap()["RECORDS"][0]["SET"]["TARGETS"]
            .as_array()
            .unwrap()
            .len()
    };
    let generation = || {
        let (_, body) = http(hport, GET_METRICS);
        body.lines()
            .find_map(|l| l.strip_prefix("sipdispatch_config_generation "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(nr(), 1);
    // The watcher notices an edited file within a couple of seconds.
    std::thread::sleep(Duration::from_millis(1100));
    list_file(&dir, &ports[..2]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while nr() != 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(nr(), 2, "{}", d.log_text());
    // SIGHUP reloads too.
    let g = generation();
    d.proc.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while generation() == g && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(generation(), g + 1);
    assert!(d.log_text().contains("SIGHUP: reloading"));
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
}
