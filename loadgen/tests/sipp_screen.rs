//! `-trace_screen` against real SIPp: the same uac → uas run (20 calls) by SIPp and by
//! sipload writes `<scenario>_<pid>_screen.log` on both sides, and the files are the same once
//! every number is masked (times, ports, rates, SIPp's scheduler figures and the peak), with
//! the counts sipload wrote checked exactly. Every run is bounded by `-m` and `-timeout`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Runs a uas and a uac of `exe` with `-trace_screen`; returns (uac file, uas file).
fn screens(exe: &str, dir: &Path) -> (String, String) {
    let (up, cp) = (port().to_string(), port().to_string());
    let uas = spawn(
        exe,
        dir,
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &up,
            "-m",
            "20",
            "-nostdin",
            "-timeout",
            "30",
            "-trace_screen",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let remote = format!("127.0.0.1:{up}");
    let uac = spawn(
        exe,
        dir,
        &[
            "-sn",
            "uac",
            &remote,
            "-i",
            "127.0.0.1",
            "-p",
            &cp,
            "-r",
            "100",
            "-m",
            "20",
            "-nostdin",
            "-timeout",
            "30",
            "-trace_screen",
        ],
    );
    let (uac_pid, uas_pid) = (uac.id(), uas.id());
    let out = uac.wait_with_output().unwrap();
    assert!(out.status.success(), "{exe} uac: {out:?}");
    let out = uas.wait_with_output().unwrap();
    assert!(out.status.success(), "{exe} uas: {out:?}");
    let read = |stem: &str, pid: u32| {
        let p = dir.join(format!("{stem}_{pid}_screen.log"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    (read("uac", uac_pid), read("uas", uas_pid))
}

fn masked(s: &str) -> String {
    let mut out = String::new();
    let mut digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !digits {
                out.push('N');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    out
}

#[test]
fn trace_screen_writes_sipps_three_screens_at_exit() {
    let dir = tmpdir("screen");
    let (sipp_uac, sipp_uas) = screens("sipp", &dir);
    let (uac, uas) = screens(SIPLOAD, &dir);
    assert_eq!(masked(&uac), masked(&sipp_uac), "uac screens:\n{uac}");
    assert_eq!(masked(&uas), masked(&sipp_uas), "uas screens:\n{uas}");
    for l in [
        "  Call limit 20 hit, 0.0 s period         0 ms scheduler resolution            ",
        "      INVITE ---------->         20        0         0                         ",
        "         200 <----------  E-RTD1 20        0         0         0               ",
        "       Pause [      0ms]         20                            0        ",
        "  Outgoing calls created |        0                  |       20                 ",
        "  Successful call        |        0                  |       20                 ",
        "             0 ms <= n <         10 ms :         20",
    ] {
        assert!(uac.lines().any(|x| x == l), "uac: no line {l:?} in\n{uac}");
    }
    for l in [
        "  ----------> INVITE             20        0         0         0               ",
        "  <---------- 180                20        0                                   ",
        "  [   4000ms] Pause              20                            0        ",
        "  Incoming calls created |        0                  |       20                 ",
    ] {
        assert!(uas.lines().any(|x| x == l), "uas: no line {l:?} in\n{uas}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
