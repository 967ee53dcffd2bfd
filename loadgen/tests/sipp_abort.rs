//! Aborted calls and unexpected messages against real SIPp: what sipload's uac sends when it
//! aborts a call (a receive timeout, an unexpected message) is what SIPp's sends, byte for
//! byte once ids and ports are masked, and a scenario's `_unexp.main` handler and `<User>`
//! variables behave as in SIPp. The peers are SIPp uas scenarios; every run is bounded by
//! `-m` and `-timeout`.

mod common;

use common::*;

const SCEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios/");

/// Runs `uac_sf` with `exe` against SIPp running `uas_args` (one call); returns the uac's exit
/// code, the messages it sent (masked) and its `<log>` lines.
fn run_against_sipp(
    exe: &str,
    case: &str,
    uac_sf: &str,
    uas_args: &[&str],
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let dir = tmpdir(&format!(
        "{case}-{}",
        if exe == "sipp" { "sipp" } else { "sipload" }
    ));
    let (up, cp) = (port().to_string(), port().to_string());
    let calls = extra
        .iter()
        .position(|a| *a == "-m")
        .map_or("1", |i| extra[i + 1]);
    let mut a: Vec<&str> = uas_args.to_vec();
    a.extend([
        "-i",
        "127.0.0.1",
        "-p",
        &up,
        "-m",
        calls,
        "-nostdin",
        "-timeout",
        "10",
    ]);
    let uas = spawn("sipp", &dir, &a);
    wait_bound(&up);
    let target = format!("127.0.0.1:{up}");
    let sf = format!("{SCEN}{uac_sf}.xml");
    let mut args = vec![
        "-sf",
        &sf,
        &target,
        "-i",
        "127.0.0.1",
        "-p",
        &cp,
        "-nostdin",
        "-timeout",
        "10",
        "-trace_msg",
        "-trace_logs",
    ];
    args.extend_from_slice(extra);
    if !extra.contains(&"-m") {
        args.extend(["-m", "1"]);
    }
    let uac = spawn(exe, &dir, &args);
    let pid = uac.id();
    let out = uac.wait_with_output().unwrap();
    let _ = uas.wait_with_output();
    let log = masked_log(&dir, uac_sf, pid, [&up, &cp]);
    // The peer's pid, in the branch of its Via that an answer to its request echoes.
    let peer_via = "RPORT;branch=z9hG4bK-";
    let log: String = log
        .lines()
        .map(|l| match l.find(peer_via) {
            Some(i) => {
                let rest = &l[i + peer_via.len()..];
                let pid_len = rest.find('-').unwrap_or(0);
                format!("{}PEER{}\n", &l[..i + peer_via.len()], &rest[pid_len..])
            }
            None => format!("{l}\n"),
        })
        .collect();
    let sent: Vec<&str> = log
        .split("----\n")
        .filter(|e| e.starts_with("UDP message sent"))
        .collect();
    let logs =
        std::fs::read_to_string(dir.join(format!("{uac_sf}_{pid}_logs.log"))).unwrap_or_default();
    (out.status.code(), sent.concat(), logs)
}

/// A call the uac aborts: on a receive timeout after the 200 and the ACK SIPp sends a BYE,
/// while only ringing a CANCEL, after a 200 not yet ACKed an ACK and a BYE; on an unexpected
/// provisional answer a CANCEL, on an unexpected error answer its ACK, on an unexpected
/// request once the dialog exists a BYE built from that request. sipload sends the same
/// messages, byte for byte.
#[test]
fn aborted_calls_send_what_sipp_sends() {
    let ring = format!("{SCEN}ring_uas.xml");
    let progress = format!("{SCEN}progress_uas.xml");
    let busy = format!("{SCEN}busy_uas.xml");
    let options = format!("{SCEN}options_uas.xml");
    for (case, uac_sf, uas_args, expect) in [
        (
            "timeout-bye",
            "abort_uac",
            vec!["-sn", "uas"],
            vec!["BYE sip:"],
        ),
        (
            "timeout-cancel",
            "abort_uac",
            vec!["-sf", ring.as_str()],
            vec!["CANCEL sip:"],
        ),
        (
            "timeout-ack-bye",
            "abort_before_ack_uac",
            vec!["-sn", "uas"],
            vec!["ACK sip:", "Subject: Performance Test", "BYE sip:"],
        ),
        (
            "unexpected-cancel",
            "abort_uac",
            vec!["-sf", progress.as_str()],
            vec!["CANCEL sip:"],
        ),
        (
            "unexpected-ack",
            "abort_uac",
            vec!["-sf", busy.as_str()],
            vec!["ACK sip:", "Subject: Performance Test"],
        ),
        (
            "unexpected-bye",
            "abort_uac",
            vec!["-sf", options.as_str()],
            vec!["BYE sip:sipp@127.0.0.1 SIP/2.0"],
        ),
    ] {
        let mut sent = Vec::new();
        for exe in ["sipp", SIPLOAD] {
            let (code, s, _) = run_against_sipp(exe, case, uac_sf, &uas_args, &[]);
            assert_eq!(code, Some(1), "{case} {exe}: the aborted call failed");
            sent.push(s);
        }
        for e in expect {
            assert!(
                sent[0].contains(e),
                "{case}: SIPp sent no `{e}`:\n{}",
                sent[0]
            );
        }
        assert_eq!(sent[0], sent[1], "{case}");
    }
}

/// `_unexp.main`: an OPTIONS the scenario does not expect sends the call to the handler,
/// which answers it (the queued message is taken by the handler's `<recv>`) and ends the call
/// with a BYE; `$_unexp.retaddr` holds the step the call was at. Same messages and log line
/// as SIPp, and the call succeeds on both sides.
#[test]
fn unexpected_message_handler_runs_as_in_sipp() {
    let options = format!("{SCEN}options_uas.xml");
    let mut runs = Vec::new();
    for exe in ["sipp", SIPLOAD] {
        let (code, sent, logs) =
            run_against_sipp(exe, "unexp-main", "unexp_main_uac", &["-sf", &options], &[]);
        assert_eq!(code, Some(0), "{exe}: {sent}");
        runs.push((sent, logs));
    }
    assert!(runs[0].0.contains("CSeq: 1 OPTIONS"), "{}", runs[0].0);
    assert_eq!(runs[0].1.trim(), "unexpected while at step 5.000000");
    assert_eq!(runs[0], runs[1]);
}

/// `<User variables="n">`: with `-users 2`, each user's calls see the value its previous call
/// left (1, 2, 3 for each of the two users over six calls), as in SIPp.
#[test]
fn user_variables_persist_per_user_as_in_sipp() {
    let mut all = Vec::new();
    for exe in ["sipp", SIPLOAD] {
        let (code, _, logs) = run_against_sipp(
            exe,
            "user-vars",
            "user_vars_uac",
            &["-sn", "uas"],
            &["-users", "2", "-m", "6"],
        );
        assert_eq!(code, Some(0), "{exe}");
        let mut lines: Vec<String> = logs.lines().map(str::to_owned).collect();
        lines.sort();
        all.push(lines);
    }
    assert_eq!(all[0].len(), 6, "{:?}", all[0]);
    assert_eq!(all[0][5], "user 2 call 3.000000");
    assert_eq!(all[0], all[1]);
}
