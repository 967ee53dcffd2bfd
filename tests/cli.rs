//! The `sipdispatch` command as a user drives it: `--help`, `check-config` on the bundled
//! example and on broken files, `tune-check`, and a run that listens on IPv4 and IPv6, logs its
//! periodic summary line and stops cleanly on SIGINT.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Dispatcher, final_counters, free_port, options, scratch};

fn sipdispatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sipdispatch"))
        .args(args)
        .output()
        .expect("run sipdispatch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_explains_every_option_and_command() {
    let out = sipdispatch(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for want in [
        "--config <FILE>",
        "check-config",
        "tune-check",
        "--version",
        "SIGINT",
        "SIGTERM",
        "summary_interval",
        "RUST_LOG",
        "Exit status",
    ] {
        assert!(help.contains(want), "--help lacks `{want}`:\n{help}");
    }
    let out = sipdispatch(&["check-config", "--help"]);
    assert!(text(&out.stdout).contains("<FILE>"));
    let out = sipdispatch(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--config"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_config_prints_the_bundled_examples_sets_and_routes() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sipdispatch.toml");
    let out = sipdispatch(&["check-config", example]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", text(&out.stderr));
    for want in [
        "sipdispatch.toml: ok",
        "set 1:",
        "sip:127.0.0.1:5071",
        "sip:127.0.0.1:5072",
        "duid=ms1;maxload=1000;weight=50",
        "set 2:",
        "sip:127.0.0.1:5073",
        "route calls: methods=INVITE -> set 1 algorithm=call-load",
        "limit=3 record_route=true",
        "route register: methods=REGISTER -> set 2 algorithm=hash-callid",
        "route everything-else: methods=any -> set 1 algorithm=hash-callid",
        "shards: 2, io: auto",
    ] {
        assert!(
            stdout.contains(want),
            "check-config lacks `{want}`:\n{stdout}"
        );
    }
}

#[test]
fn check_config_shows_flags_priorities_and_unknown_attributes() {
    let dir = scratch("check-config");
    std::fs::write(
        dir.join("dispatcher.list"),
        "# gateways\n1 sip:127.0.0.1:7070 0 0 duid=abc;socket=udp:127.0.0.1:5060;my=xyz\n\
1 sip:127.0.0.1:7072 0x9 10\n1 127.0.0.1:7074 4 5 prefix=49\n",
    )
    .unwrap();
    let cfg = dir.join("sipdispatch.toml");
    std::fs::write(
        &cfg,
        "[listen]\nudp = [\"127.0.0.1:5060\"]\n[destinations]\nlist_file = \"dispatcher.list\"\n\
[[routes]]\nset = 1\nalgorithm = 4\nhash = \"rendezvous\"\n",
    )
    .unwrap();
    let out = sipdispatch(&["check-config", cfg.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("sip:127")).collect();
    // Priority order, highest first; Kamailio's flag letters; attrs as written.
    assert!(lines[0].contains("7072") && lines[0].contains("IP") && lines[0].contains("prio=10"));
    assert!(lines[1].contains("7074") && lines[1].contains("DX") && lines[1].contains("prefix=49"));
    assert!(lines[2].contains("7070") && lines[2].contains("AX") && lines[2].contains("my=xyz"));
    assert!(stdout.contains("hash=rendezvous"), "{stdout}");
}

#[test]
fn check_config_refuses_bad_files_naming_file_line_and_reason() {
    let dir = scratch("check-config-bad");
    let list = dir.join("dispatcher.list");
    std::fs::write(
        &list,
        "1 sip:127.0.0.1:7070\n\n1 sip:127.0.0.1:7072 0 high\n",
    )
    .unwrap();
    let cfg = dir.join("sipdispatch.toml");
    let good = "[listen]\nudp = [\"127.0.0.1:5060\"]\n[destinations]\nlist_file = \"dispatcher.list\"\n\
[[routes]]\nset = 1\nalgorithm = 4\n";
    std::fs::write(&cfg, good).unwrap();
    let out = sipdispatch(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:3: priority `high`", list.display())),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing is printed as loaded");

    std::fs::write(
        &cfg,
        good.replace("algorithm = 4", "algorithm = 4\nlimt = 2"),
    )
    .unwrap();
    let out = sipdispatch(&["check-config", cfg.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains(&cfg.display().to_string()) && err.contains("line 8") && err.contains("limt"),
        "{err}"
    );

    std::fs::write(&cfg, good.replace("set = 1", "set = 9")).unwrap();
    std::fs::write(&list, "1 sip:127.0.0.1:7070\n").unwrap();
    let out = sipdispatch(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("set 9"), "{}", text(&out.stderr));

    let out = sipdispatch(&["check-config", dir.join("missing.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.toml"));
}

/// A pin to a CPU the machine does not have stops the start with the reason, instead of a
/// shard that silently runs unpinned.
#[test]
fn a_shard_pinned_to_a_missing_cpu_is_refused_at_start() {
    let dir = scratch("missing-cpu");
    let cfg = dir.join("sipdispatch.toml");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!(
            "[listen]\nudp = [\"127.0.0.1:{port}\"]\n[destinations]\n[[destinations.sets]]\nid = 1\n\
destinations = [{{ uri = \"sip:127.0.0.1:7070\" }}]\n[[routes]]\nset = 1\nalgorithm = 4\n[runtime]\ncpus = [4095]\n"
        ),
    )
    .unwrap();
    let out = sipdispatch(&["--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("CPU 4095 is not one this process may run on"),
        "{err}"
    );
}

#[test]
fn tune_check_compares_every_recommended_setting() {
    let out = sipdispatch(&["tune-check"]);
    assert!(out.status.success());
    let report = text(&out.stdout);
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/sysctl.conf"))
            .unwrap();
    for (key, value) in shipped
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter_map(|l| l.split_once('='))
    {
        let line = report
            .lines()
            .find(|l| l.starts_with(key.trim()))
            .unwrap_or_else(|| panic!("tune-check lacks {key}:\n{report}"));
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(line.contains(&value), "{line}");
        assert!(
            ["ok", "LOW", "differs", "unreadable"]
                .iter()
                .any(|s| line.ends_with(s)),
            "{line}"
        );
    }
    assert!(report.contains("io_uring:") && report.contains("tuning/README.md"));
}

/// Sends an OPTIONS to `to` from a socket of the same family and waits for its 200.
fn options_answered(to: SocketAddr) -> bool {
    let bind = if to.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let sock = UdpSocket::bind(bind).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&options(to, sock.local_addr().unwrap()), to)
        .unwrap();
    let mut buf = [0u8; 4096];
    matches!(sock.recv_from(&mut buf), Ok((n, _)) if buf[..n].starts_with(b"SIP/2.0 200 OK"))
}

#[test]
fn runs_on_ipv4_and_ipv6_logs_its_summary_and_stops_on_sigint() {
    let dir = scratch("run");
    let (p4, p6) = (free_port(), free_port());
    let v4: SocketAddr = format!("127.0.0.1:{p4}").parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{p6}").parse().unwrap();
    let config = format!(
        "[listen]\nudp = [\"{v4}\", \"{v6}\"]\n[destinations]\n[[destinations.sets]]\nid = 1\n\
destinations = [{{ uri = \"sip:127.0.0.1:{}\" }}]\n[[routes]]\nset = 1\nalgorithm = 4\n\
[runtime]\nshards = 2\n[log]\nsummary_interval = 1\n",
        free_port()
    );
    let mut d = Dispatcher::start(&dir, v4, &config);
    assert!(options_answered(v4), "IPv4 listen address");
    assert!(options_answered(v6), "IPv6 listen address");
    // The periodic summary: one line per shard, at least twice, within a bounded wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && d.log_text()
            .lines()
            .filter(|l| l.contains("shard 1: rx="))
            .count()
            < 2
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = d.log_text();
    for shard in ["shard 0: rx=", "shard 1: rx="] {
        let line = log.lines().find(|l| l.contains(shard)).unwrap_or_else(|| {
            panic!("no periodic `{shard}` line:\n{log}");
        });
        assert!(
            line.contains(" INFO ") && line.contains("| last 1s:"),
            "{line}"
        );
        // What the I/O layer dropped is in it too, by reason.
        for io in ["tx_errors=", "truncated=", "handoff_full="] {
            assert!(line.contains(io), "{line}");
        }
    }
    d.proc.signal("INT");
    let code = d.proc.wait_for(Duration::from_secs(10));
    let log = d.log_text();
    assert_eq!(code, Some(0), "clean exit on SIGINT:\n{log}");
    assert!(log.contains("stopping"), "{log}");
    let finals = final_counters(&log);
    assert_eq!(finals.len(), 2, "{log}");
    // Which shard answers an OPTIONS goes by its Call-ID's keyed hash: count over both.
    let replies: u64 = finals
        .iter()
        .map(|c| c.get("reply_200").copied().unwrap_or(0))
        .sum();
    assert!(
        replies >= 3,
        "the readiness probe and both OPTIONS were answered: {log}"
    );
    // Its sockets are closed: the ports can be bound again without SO_REUSEPORT.
    UdpSocket::bind(v4).expect("IPv4 port released");
    UdpSocket::bind(v6).expect("IPv6 port released");
}
