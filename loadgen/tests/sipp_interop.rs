//! sipload against real SIPp (Debian's `sip-tester`) on loopback, both ways: sipload's uac
//! calling SIPp's uas, and SIPp's uac calling sipload's uas, each with zero failed calls on
//! both sides; the `-trace_stat` CSV headers of both tools byte-identical for the same
//! scenario; an unsupported scenario refused with its line. Every run is bounded by `-m` and
//! `-timeout`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const CALLS: &str = "200";

fn port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sipload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn spawn(exe: &str, dir: &Path, args: &[&str]) -> Child {
    Command::new(exe)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{exe}: {e} (is SIPp installed? apt-get install sip-tester)"))
}

fn run(exe: &str, dir: &Path, args: &[&str]) -> Output {
    spawn(exe, dir, args).wait_with_output().unwrap()
}

/// A column of the last row of a SIPp-format CSV, by name.
fn last(csv: &Path, column: &str) -> String {
    let text = std::fs::read_to_string(csv).unwrap_or_else(|e| panic!("{}: {e}", csv.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(';').collect();
    let row: Vec<&str> = lines.last().unwrap().split(';').collect();
    let i = header
        .iter()
        .position(|h| *h == column)
        .unwrap_or_else(|| panic!("{column} not in {}", csv.display()));
    row[i].to_owned()
}

fn first_line(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

fn uas_args<'a>(p: &'a str, stf: &'a str, calls: &'a str) -> Vec<&'a str> {
    vec![
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-p",
        p,
        "-m",
        calls,
        "-nostdin",
        "-timeout",
        "60",
        "-trace_stat",
        "-fd",
        "1",
        "-stf",
        stf,
    ]
}

fn uac_args<'a>(target: &'a str, p: &'a str, stf: &'a str, calls: &'a str) -> Vec<&'a str> {
    vec![
        "-sn",
        "uac",
        target,
        "-i",
        "127.0.0.1",
        "-p",
        p,
        "-r",
        "200",
        "-m",
        calls,
        "-nostdin",
        "-timeout",
        "60",
        "-trace_stat",
        "-fd",
        "1",
        "-stf",
        stf,
    ]
}

fn check_clean(csv: &Path) {
    assert_eq!(last(csv, "TotalCallCreated"), CALLS, "{}", csv.display());
    assert_eq!(last(csv, "SuccessfulCall(C)"), CALLS, "{}", csv.display());
    assert_eq!(last(csv, "FailedCall(C)"), "0", "{}", csv.display());
}

#[test]
fn sipload_uac_calls_sipp_uas() {
    let dir = tmpdir("uac");
    let (up, cp) = (port().to_string(), port().to_string());
    let uas = spawn("sipp", &dir, &uas_args(&up, "sipp-uas.csv", CALLS));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let target = format!("127.0.0.1:{up}");
    let out = run(
        env!("CARGO_BIN_EXE_sipload"),
        &dir,
        &uac_args(&target, &cp, "sipload-uac.csv", CALLS),
    );
    let uas = uas.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(uas.status.code(), Some(0), "SIPp uas failed");
    check_clean(&dir.join("sipload-uac.csv"));
    check_clean(&dir.join("sipp-uas.csv"));
}

#[test]
fn sipp_uac_calls_sipload_uas() {
    let dir = tmpdir("uas");
    let (up, cp) = (port().to_string(), port().to_string());
    let uas = spawn(
        env!("CARGO_BIN_EXE_sipload"),
        &dir,
        &uas_args(&up, "sipload-uas.csv", CALLS),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let target = format!("127.0.0.1:{up}");
    let out = run("sipp", &dir, &uac_args(&target, &cp, "sipp-uac.csv", CALLS));
    let uas = uas.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "SIPp uac failed");
    assert_eq!(
        uas.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&uas.stderr)
    );
    check_clean(&dir.join("sipp-uac.csv"));
    check_clean(&dir.join("sipload-uas.csv"));
}

#[test]
fn csv_headers_are_byte_identical_to_sipp() {
    // Each side of a call writes the header of its own scenario: run sipload uac against
    // SIPp uas and SIPp uac against sipload uas, then compare uac with uac, uas with uas.
    let dir = tmpdir("csv");
    for (uas_exe, uac_exe, tag) in [
        ("sipp", env!("CARGO_BIN_EXE_sipload"), "a"),
        (env!("CARGO_BIN_EXE_sipload"), "sipp", "b"),
    ] {
        let (up, cp) = (port().to_string(), port().to_string());
        let target = format!("127.0.0.1:{up}");
        let (us, cs) = (format!("uas-{tag}.csv"), format!("uac-{tag}.csv"));
        let uas = spawn(uas_exe, &dir, &uas_args(&up, &us, "20"));
        std::thread::sleep(std::time::Duration::from_millis(300));
        run(uac_exe, &dir, &uac_args(&target, &cp, &cs, "20"));
        uas.wait_with_output().unwrap();
    }
    assert_eq!(
        first_line(&dir.join("uac-a.csv")),
        first_line(&dir.join("uac-b.csv"))
    );
    assert_eq!(
        first_line(&dir.join("uas-a.csv")),
        first_line(&dir.join("uas-b.csv"))
    );
}

#[test]
fn unsupported_scenario_is_refused_with_its_line() {
    let dir = tmpdir("refuse");
    let sf = dir.join("media.xml");
    std::fs::write(
        &sf,
        "<scenario name=\"media\">\n<recv request=\"INVITE\"/>\n<nop>\n  <action>\n    <exec play_pcap_audio=\"g711a.pcap\"/>\n  </action>\n</nop>\n</scenario>\n",
    )
    .unwrap();
    let out = run(
        env!("CARGO_BIN_EXE_sipload"),
        &dir,
        &[
            "-sf",
            sf.to_str().unwrap(),
            "-p",
            &port().to_string(),
            "-nostdin",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("media.xml:4:") && err.contains("<action>"),
        "{err}"
    );
    let out = run(env!("CARGO_BIN_EXE_sipload"), &dir, &["-3pcc", "x.xml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("-3pcc"));
}
