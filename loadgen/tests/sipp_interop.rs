//! sipload against real SIPp (Debian's `sip-tester`) on loopback, both ways: sipload's uac
//! calling SIPp's uas, and SIPp's uac calling sipload's uas, each with zero failed calls on
//! both sides; the `-trace_stat` CSV headers of both tools byte-identical for the same
//! scenario; an unsupported scenario refused with its line. Every run is bounded by `-m` and
//! `-timeout`.

mod common;

use std::path::Path;

use common::*;

const CALLS: &str = "200";

fn check_clean(csv: &Path) {
    assert_eq!(last(csv, "TotalCallCreated"), CALLS, "{}", csv.display());
    assert_eq!(last(csv, "SuccessfulCall(C)"), CALLS, "{}", csv.display());
    assert_eq!(last(csv, "FailedCall(C)"), "0", "{}", csv.display());
}

#[test]
fn sipload_uac_calls_sipp_uas() {
    let dir = tmpdir("uac");
    let p = call_pair(&dir, "sipp", SIPLOAD, CALLS, "x", &["-summary", "sum.json"]);
    assert_eq!(
        p.uac.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&p.uac.stderr)
    );
    assert_eq!(p.uas.status.code(), Some(0), "SIPp uas failed");
    check_clean(&dir.join("x-uac.csv"));
    check_clean(&dir.join("x-uas.csv"));
    // Not a terminal: no live screen, only the closing summary line.
    let stdout = String::from_utf8_lossy(&p.uac.stdout);
    assert!(!stdout.contains("\x1b[2J"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    // Percentiles go to the separate summary, never into the CSV.
    let sum = std::fs::read_to_string(dir.join("sum.json")).unwrap();
    assert!(
        sum.contains(&format!("\"successful\":{CALLS},\"failed\":0")),
        "{sum}"
    );
    assert!(
        sum.contains(&format!(
            "\"response_time_us\":{{\"1\":{{\"count\":{CALLS},"
        )),
        "{sum}"
    );
    assert!(
        sum.contains("\"p99_9\":") && sum.contains("\"socket_drops\":0"),
        "{sum}"
    );
}

#[test]
fn sipp_uac_calls_sipload_uas() {
    let dir = tmpdir("uas");
    let p = call_pair(&dir, SIPLOAD, "sipp", CALLS, "x", &[]);
    assert_eq!(p.uac.status.code(), Some(0), "SIPp uac failed");
    assert_eq!(
        p.uas.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&p.uas.stderr)
    );
    check_clean(&dir.join("x-uac.csv"));
    check_clean(&dir.join("x-uas.csv"));
}

#[test]
fn csv_headers_are_byte_identical_to_sipp() {
    // Each side of a call writes the header of its own scenario: run sipload uac against
    // SIPp uas and SIPp uac against sipload uas, then compare uac with uac, uas with uas, and
    // the two uacs' -trace_rtt files.
    let dir = tmpdir("csv");
    let a = call_pair(
        &dir,
        "sipp",
        SIPLOAD,
        "20",
        "a",
        &["-trace_rtt", "-rtt_freq", "5"],
    );
    let b = call_pair(
        &dir,
        SIPLOAD,
        "sipp",
        "20",
        "b",
        &["-trace_rtt", "-rtt_freq", "5"],
    );
    assert_eq!(
        first_line(&dir.join("a-uac.csv")),
        first_line(&dir.join("b-uac.csv"))
    );
    assert_eq!(
        first_line(&dir.join("a-uas.csv")),
        first_line(&dir.join("b-uas.csv"))
    );
    let rtt = |p: &Pair| dir.join(format!("uac_{}_rtt.csv", p.uac_pid));
    assert_eq!(first_line(&rtt(&a)), first_line(&rtt(&b)));
    let ours = std::fs::read_to_string(rtt(&a)).unwrap();
    let rows: Vec<&str> = ours.lines().skip(1).collect();
    assert_eq!(rows.len(), 20, "one row per call's RTD 1: {ours}");
    for r in rows {
        let f: Vec<&str> = r.split(';').collect();
        assert_eq!(f.len(), 3, "{r}");
        assert!(
            f[0].parse::<f64>().is_ok() && f[1].parse::<f64>().is_ok(),
            "{r}"
        );
        assert_eq!(f[2], "1", "{r}");
    }
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
        err.contains("media.xml:5:") && err.contains("play_pcap_audio") && err.contains("media"),
        "{err}"
    );
    // [fieldN] without the -inf file it reads is refused with the message's line.
    let sf = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios/ereg_uac.xml");
    let out = run(SIPLOAD, &dir, &["-sf", sf, "127.0.0.1:9", "-nostdin"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ereg_uac.xml:3:") && err.contains("[fieldN]"),
        "{err}"
    );
    let out = run(SIPLOAD, &dir, &["-3pcc", "x.xml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("-3pcc"));
}

#[test]
fn builtin_uac_puts_the_same_messages_on_the_wire_as_sipp() {
    let mut logs = Vec::new();
    for (exe, name) in [("sipp", "wire-sipp"), (SIPLOAD, "wire-sipload")] {
        let dir = tmpdir(name);
        let p = call_pair(&dir, "sipp", exe, "1", "x", &["-trace_msg"]);
        assert_eq!(p.uac.status.code(), Some(0), "{exe}");
        logs.push(masked_log(
            &dir,
            "uac",
            p.uac_pid,
            [&p.ports[0], &p.ports[1]],
        ));
    }
    assert!(logs[0].contains("UDP message sent"), "{}", logs[0]);
    assert_eq!(logs[0], logs[1]);
}

/// A scenario of ours using `ereg` (on a header and on the whole message), string and double
/// variables, `test`, `strcmp`, `log`, `[$var]` (an empty one dropping its line), `[fieldN]`
/// from an `-inf` file and a `nop` whose `next` is conditional on a variable: SIPp and sipload running it against the
/// same SIPp uas put the same messages on the wire and write the same `<log>` lines.
#[test]
fn custom_scenario_with_actions_puts_the_same_messages_on_the_wire_as_sipp() {
    let sf = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios/ereg_uac.xml");
    let (mut wires, mut logs) = (Vec::new(), Vec::new());
    for (exe, name) in [("sipp", "ereg-sipp"), (SIPLOAD, "ereg-sipload")] {
        let dir = tmpdir(name);
        std::fs::write(
            dir.join("users.csv"),
            "SEQUENTIAL\n# user;domain\nalice;example.com\nbob;example.org\n",
        )
        .unwrap();
        let p = call_pair(
            &dir,
            "sipp",
            exe,
            "1",
            "x",
            &["-sf", sf, "-trace_msg", "-trace_logs", "-inf", "users.csv"],
        );
        assert_eq!(
            p.uac.status.code(),
            Some(0),
            "{exe}: {}",
            String::from_utf8_lossy(&p.uac.stderr)
        );
        assert_eq!(last(&dir.join("x-uac.csv"), "SuccessfulCall(C)"), "1");
        wires.push(masked_log(
            &dir,
            "ereg_uac",
            p.uac_pid,
            [&p.ports[0], &p.ports[1]],
        ));
        let log = dir.join(format!("ereg_uac_{}_logs.log", p.uac_pid));
        let text =
            std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        logs.push(text.replace(&format!("127.0.0.1:{}", p.ports[0]), "127.0.0.1:RPORT"));
    }
    assert!(wires[0].contains("X-N: 12.000000"), "{}", wires[0]);
    assert!(
        wires[0].contains("X-User: alice example.com bob"),
        "{}",
        wires[0]
    );
    assert!(wires[0].contains("X-Label: call-1-INVITE"), "{}", wires[0]);
    assert!(
        !wires[0].contains("INFO sip:"),
        "the nop's next skips the INFO"
    );
    assert_eq!(wires[0], wires[1]);
    assert_eq!(logs[0], logs[1]);
    assert!(logs[0].starts_with("got 127.0.0.1:"), "{}", logs[0]);
}

#[test]
fn unexpected_bye_is_answered_counted_and_logged() {
    let dir = tmpdir("unexpected");
    let up = port().to_string();
    let uas = spawn(
        SIPLOAD,
        &dir,
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &up,
            "-nostdin",
            "-timeout",
            "2",
            "-trace_err",
            "-trace_stat",
            "-stf",
            "uas.csv",
        ],
    );
    wait_bound(&up);
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let me = s.local_addr().unwrap();
    let bye = format!(
        "BYE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: stray-1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(bye.as_bytes(), format!("127.0.0.1:{up}"))
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = s.recv_from(&mut buf).expect("a 200 to the stray BYE");
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"));
    let out = uas.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed call makes the exit code 1"
    );
    assert_eq!(
        last(&dir.join("uas.csv"), "FailedUnexpectedMessage(C)"),
        "1"
    );
    let log = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .expect("uas_<pid>_errors.log");
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        text.contains("unexpected message for Call-Id 'stray-1'"),
        "{text}"
    );
}

/// SIPp's own `regexp`, `branchc` and `branchs` built-ins (ereg captures printed back into
/// messages, labels, `next` conditional on `test`), printed by `sipp -sd` at run time, run
/// unchanged by sipload with SIPp as the peer: zero failed calls on both sides, and for
/// `regexp` the same messages on the wire as SIPp's.
#[test]
fn sipps_own_builtin_scenarios_run_unchanged() {
    let dir = tmpdir("sipp-builtins");
    for name in ["regexp", "branchc", "branchs"] {
        let out = run("sipp", &dir, &["-sd", name]);
        std::fs::write(dir.join(format!("{name}.xml")), &out.stdout).unwrap();
    }
    let sf = |n: &str| dir.join(format!("{n}.xml")).display().to_string();
    // (uas tool, uas scenario, uac tool, uac scenario)
    let pairs = [
        ("sipp", vec!["-sn", "uas"], SIPLOAD, sf("regexp")),
        ("sipp", vec!["-sn", "branchs"], SIPLOAD, sf("branchc")),
    ];
    for (k, (uas_exe, uas_scen, uac_exe, uac_sf)) in pairs.iter().enumerate() {
        let (up, cp) = (port().to_string(), port().to_string());
        let mut a: Vec<&str> = uas_scen.clone();
        let stf = format!("{k}-uas.csv");
        a.extend([
            "-i",
            "127.0.0.1",
            "-p",
            &up,
            "-m",
            "3",
            "-nostdin",
            "-timeout",
            "30",
        ]);
        a.extend(["-trace_stat", "-stf", &stf]);
        let uas = spawn(uas_exe, &dir, &a);
        wait_bound(&up);
        let target = format!("127.0.0.1:{up}");
        let stf = format!("{k}-uac.csv");
        let uac = run(
            uac_exe,
            &dir,
            &[
                "-sf",
                uac_sf,
                &target,
                "-i",
                "127.0.0.1",
                "-p",
                &cp,
                "-m",
                "3",
                "-r",
                "10",
                "-nostdin",
                "-timeout",
                "30",
                "-trace_stat",
                "-stf",
                &stf,
            ],
        );
        assert_eq!(
            uac.status.code(),
            Some(0),
            "{uac_sf}: {}",
            String::from_utf8_lossy(&uac.stderr)
        );
        assert_eq!(
            uas.wait_with_output().unwrap().status.code(),
            Some(0),
            "{uas_exe} uas"
        );
        for side in ["uac", "uas"] {
            let csv = dir.join(format!("{k}-{side}.csv"));
            assert_eq!(last(&csv, "SuccessfulCall(C)"), "3", "{}", csv.display());
            assert_eq!(last(&csv, "FailedCall(C)"), "0", "{}", csv.display());
        }
    }
    // sipload as the branching server, SIPp's branchc calling it.
    let up = port().to_string();
    let branchs = sf("branchs");
    let uas = spawn(
        SIPLOAD,
        &dir,
        &[
            "-sf",
            &branchs,
            "-i",
            "127.0.0.1",
            "-p",
            &up,
            "-m",
            "3",
            "-nostdin",
            "-timeout",
            "30",
            "-trace_stat",
            "-stf",
            "s-uas.csv",
        ],
    );
    wait_bound(&up);
    let target = format!("127.0.0.1:{up}");
    let uac = run(
        "sipp",
        &dir,
        &[
            "-sn",
            "branchc",
            &target,
            "-i",
            "127.0.0.1",
            "-p",
            &port().to_string(),
            "-m",
            "3",
            "-r",
            "10",
            "-nostdin",
            "-timeout",
            "30",
        ],
    );
    assert_eq!(uac.status.code(), Some(0), "SIPp branchc");
    let uas = uas.wait_with_output().unwrap();
    assert_eq!(
        uas.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&uas.stderr)
    );
    assert_eq!(last(&dir.join("s-uas.csv"), "SuccessfulCall(C)"), "3");
    // regexp's messages, SIPp's and sipload's.
    let regexp = sf("regexp");
    let mut logs = Vec::new();
    for (exe, name) in [("sipp", "regexp-sipp"), (SIPLOAD, "regexp-sipload")] {
        let d = tmpdir(name);
        let p = call_pair(&d, "sipp", exe, "1", "x", &["-sf", &regexp, "-trace_msg"]);
        assert_eq!(p.uac.status.code(), Some(0), "{exe}");
        logs.push(masked_log(
            &d,
            "regexp",
            p.uac_pid,
            [&p.ports[0], &p.ports[1]],
        ));
    }
    assert!(logs[0].contains("UDP message sent"), "{}", logs[0]);
    assert_eq!(logs[0], logs[1]);
}
