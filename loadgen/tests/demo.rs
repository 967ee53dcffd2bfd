//! The README's demo, `bench/demo.sh`, run briefly: two sipload uas backends, sipdispatch on
//! the example config and a sipload uac through it. Both backends must receive calls and no
//! call may fail, on any side. It binds the example's fixed ports (127.0.0.1:5060, 5070-5072
//! and the control port 8060), so it is the only test in this file.
//!
//! `SIPLOAD_DEMO_SECS` (default 2) and `SIPLOAD_DEMO_RATE` (default 200 calls/s) size the run.

use std::path::Path;
use std::process::Command;

/// The numbers of one row of the demo's table: calls, successful, failed.
fn row(out: &str, label: &str) -> (u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` row in the demo's output:\n{out}"));
    let n: Vec<u64> = line[label.len()..]
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad row `{line}`")))
        .collect();
    (n[0], n[1], n[2])
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn demo_spreads_calls_over_both_backends_without_failures() {
    let secs = env_or("SIPLOAD_DEMO_SECS", 2);
    let rate = env_or("SIPLOAD_DEMO_RATE", 200);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // sipload is this package's binary; sipdispatch is the root package's, built here so that
    // the demo never runs a stale one (a no-op under `cargo test --workspace`).
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sipload")).parent().unwrap();
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(root)
        .args(["build", "-q", "-p", "sipdispatch", "--bin", "sipdispatch"])
        .arg("--target-dir")
        .arg(bin_dir.parent().unwrap());
    if bin_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success(), "cargo build sipdispatch");
    assert!(bin_dir.join("sipdispatch").exists());

    let out = Command::new("bash")
        .current_dir(root)
        .arg("bench/demo.sh")
        .args([secs.to_string(), rate.to_string(), "200".into()])
        .env("BIN_DIR", bin_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo.sh exited {:?}:\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, a_ok, a_failed) = row(&text, "backend 127.0.0.1:5071");
    let (b, b_ok, b_failed) = row(&text, "backend 127.0.0.1:5072");
    let (uac, uac_ok, uac_failed) = row(&text, "uac (via sipdispatch)");
    assert!(a > 0 && b > 0, "both backends get calls:\n{text}");
    assert_eq!((a_failed, b_failed, uac_failed), (0, 0, 0), "{text}");
    assert_eq!((a_ok, b_ok), (a, b), "{text}");
    assert_eq!(uac, secs * rate, "{text}");
    assert_eq!(uac_ok, uac, "{text}");
    assert_eq!(a + b, uac, "every call reached one backend:\n{text}");
}
