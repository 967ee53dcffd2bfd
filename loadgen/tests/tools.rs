//! blast → relay → sink on loopback: everything sent arrives, through the relay, and each tool
//! reports it. Bounded in count and time.

use std::process::{Command, Stdio};
use std::time::Duration;

fn port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn json_field(line: &str, key: &str) -> u64 {
    let k = format!("\"{key}\":");
    let rest = &line[line.find(&k).unwrap_or_else(|| panic!("{key} in {line}")) + k.len()..];
    rest.split([',', '}'])
        .next()
        .unwrap()
        .parse::<f64>()
        .unwrap() as u64
}

#[test]
fn blast_through_relay_reaches_sink() {
    let exe = env!("CARGO_BIN_EXE_sipload");
    let (sink_port, relay_port) = (port(), port());
    let sink = Command::new(exe)
        .args([
            "sink",
            "--listen",
            &format!("127.0.0.1:{sink_port}"),
            "--expect",
            "5000",
        ])
        .args(["--duration", "20", "--idle", "3", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let relay = Command::new(exe)
        .args([
            "relay",
            "--listen",
            &format!("127.0.0.1:{relay_port}"),
            "--to",
            &format!("127.0.0.1:{sink_port}"),
        ])
        .args(["--duration", "20", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let blast = Command::new(exe)
        .args([
            "blast",
            "--target",
            &format!("127.0.0.1:{relay_port}"),
            "--rate",
            "20000",
            "--count",
            "5000",
        ])
        .args(["--duration", "10", "--json"])
        .output()
        .unwrap();
    let b = String::from_utf8(blast.stdout).unwrap();
    assert_eq!(json_field(&b, "count"), 5000, "{b}");
    assert!(json_field(&b, "bytes") > 800);
    let s = String::from_utf8(sink.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(json_field(&s, "count"), 5000, "{s}");
    let r = String::from_utf8(relay.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(json_field(&r, "count"), 5000, "{r}");
}
