//! SIPp's load-shaping and process flags as a user sees them, with real SIPp as the peer:
//! `-users` (closed loop, `[userid]`), `-rate_increase`/`-rate_interval`/`-rate_max` with and
//! without `-no_rate_quit`, and `-bg` (the parent prints the child's pid and exits 99; the
//! child runs until SIGUSR1 asks it to finish). Every run is bounded by `-m` and `-timeout`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A SIPp uas on a free port, killed when dropped.
struct SippUas(std::process::Child, String);

impl SippUas {
    fn start(dir: &Path) -> Self {
        let p = port().to_string();
        let child = spawn(
            "sipp",
            dir,
            &[
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                &p,
                "-nostdin",
                "-timeout",
                "30",
            ],
        );
        wait_bound(&p);
        Self(child, p)
    }
}

impl Drop for SippUas {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn uac(dir: &Path, uas: &SippUas, args: &str) -> std::process::Output {
    let mut a: Vec<String> = if args.contains("-sf ") {
        Vec::new()
    } else {
        vec!["-sn".into(), "uac".into()]
    };
    a.extend([
        format!("127.0.0.1:{}", uas.1),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port().to_string(),
        "-nostdin".into(),
        "-timeout".into(),
        "20".into(),
        "-trace_stat".into(),
        "-fd".into(),
        "1".into(),
        "-stf".into(),
        "uac.csv".into(),
    ]);
    a.extend(args.split_whitespace().map(str::to_owned));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    run(SIPLOAD, dir, &a)
}

#[test]
fn users_run_a_closed_loop_and_number_the_calls_users() {
    let dir = tmpdir("users");
    let uas = SippUas::start(&dir);
    let sf = dir.join("users.xml");
    // The built-in uac's flow with the user in a header, to see [userid] on the wire.
    std::fs::write(
        &sf,
        r#"<scenario name="users">
<send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: u<sip:u@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
X-User: [userid] of [users]
Content-Length: 0
]]></send>
<recv response="100" optional="true"/>
<recv response="180" optional="true"/>
<recv response="200"/>
<send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: u<sip:u@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Content-Length: 0
]]></send>
<pause milliseconds="100"/>
<send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: u<sip:u@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Content-Length: 0
]]></send>
<recv response="200"/>
</scenario>"#,
    )
    .unwrap();
    // -r 1 would take 12 s for 12 calls; with -users the rate does not apply.
    let out = uac(
        &dir,
        &uas,
        &format!("-sf {} -users 3 -m 12 -r 1 -trace_msg", sf.display()),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = dir.join("uac.csv");
    assert_eq!(last(&csv, "TargetRate"), "3");
    assert_eq!(last(&csv, "SuccessfulCall(C)"), "12");
    let log = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with("_messages.log"))
        .unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    let users: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("X-User: "))
        .collect();
    assert_eq!(users.len(), 12);
    assert_eq!(&users[..3], ["1 of 3", "2 of 3", "3 of 3"]);
    assert!(
        users
            .iter()
            .all(|u| matches!(*u, "1 of 3" | "2 of 3" | "3 of 3"))
    );
    let out = run(
        SIPLOAD,
        &dir,
        &["-sn", "uac", "x", "-users", "3", "-l", "4"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("-users cannot be combined with -l"));
}

#[test]
fn rate_increases_to_its_max_then_quits_or_holds() {
    let dir = tmpdir("rate");
    let uas = SippUas::start(&dir);
    // 50 calls/s, +50 every second, capped at 100: past the cap SIPp stops opening calls.
    let out = uac(
        &dir,
        &uas,
        "-r 50 -rate_increase 50 -rate_interval 1 -rate_max 100 -m 5000",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = dir.join("uac.csv");
    assert_eq!(last(&csv, "TargetRate"), "100");
    let created: u64 = last(&csv, "TotalCallCreated").parse().unwrap();
    assert!((50..5000).contains(&created), "{created}");
    assert_eq!(last(&csv, "SuccessfulCall(C)"), created.to_string());
    // With -no_rate_quit it holds the cap until -m.
    let out = uac(
        &dir,
        &uas,
        "-r 50 -rate_increase 50 -rate_interval 1 -rate_max 100 -no_rate_quit -m 300",
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(last(&csv, "TargetRate"), "100");
    assert_eq!(last(&csv, "SuccessfulCall(C)"), "300");
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by init) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn background_mode_forks_and_sigusr1_ends_the_child() {
    let dir = tmpdir("bg");
    let p = port().to_string();
    let mut parent = Command::new(SIPLOAD)
        .current_dir(&dir)
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &p,
            "-bg",
            "-timeout",
            "20",
            "-trace_stat",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The child keeps the pipe open: read the parent's line, not to EOF.
    let mut line = String::new();
    let stdout = parent.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(
        parent.wait().unwrap().code(),
        Some(99),
        "the parent exits 99"
    );
    let pid: u32 = line
        .trim()
        .strip_prefix("Background mode - PID=[")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    assert!(alive(pid), "the child runs on");
    // Its files carry its own pid.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dir.join(format!("uas_{pid}_.csv")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dir.join(format!("uas_{pid}_.csv")).exists());
    sigusr1(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "SIGUSR1 ends the background child");
}

/// SIGUSR1 through the `kill` command, to keep the test free of a libc dependency.
fn sigusr1(pid: u32) {
    let s = Command::new("kill")
        .args(["-USR1", &pid.to_string()])
        .status()
        .unwrap();
    assert!(s.success());
}

#[test]
fn a_terminal_gets_the_live_screen() {
    let dir = tmpdir("screen");
    let uas = SippUas::start(&dir);
    // `script` gives sipload a pseudo-terminal as its stdout.
    let cmd = format!(
        "{SIPLOAD} -sn uac 127.0.0.1:{} -i 127.0.0.1 -p {} -r 20 -m 30 -f 0.2 -nostdin -timeout 20",
        uas.1,
        port()
    );
    let out = Command::new("script")
        .current_dir(&dir)
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.matches("\x1b[2J").count() >= 2, "redrawn: {text}");
    assert!(
        text.contains("latency (us)") && text.contains("rtd 1"),
        "{text}"
    );
    assert!(text.contains("successful 30"), "{text}");
}

#[test]
fn workers_stripe_the_calls_and_share_the_call_quota() {
    let dir = tmpdir("workers");
    let uas = SippUas::start(&dir);
    let out = uac(&dir, &uas, "-workers 2 -r 300 -m 101 -trace_msg");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = dir.join("uac.csv");
    assert_eq!(
        last(&csv, "TotalCallCreated"),
        "101",
        "-m is exact across workers"
    );
    assert_eq!(last(&csv, "SuccessfulCall(C)"), "101");
    assert_eq!(last(&csv, "TargetRate"), "300");
    let log = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with("_messages.log"))
        .unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    // Each sent INVITE: its Via's port and its Call-ID (retransmissions repeat both).
    let mut invites: Vec<(&str, &str)> = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.starts_with("INVITE ") {
            let via = lines.next().unwrap();
            let port = via.rsplit(':').next().unwrap().split(';').next().unwrap();
            let cid = lines.find(|l| l.starts_with("Call-ID: ")).unwrap();
            invites.push((port, cid));
        }
    }
    let mut ids: Vec<&str> = invites.iter().map(|i| i.1).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 101, "Call-IDs are unique across workers");
    let mut ports: Vec<&str> = invites.iter().map(|i| i.0).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(
        ports.len(),
        2,
        "each worker sends from its own port: {ports:?}"
    );
}

#[test]
fn a_uas_with_workers_answers_sipp() {
    let dir = tmpdir("uas-workers");
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
            "-m",
            "40",
            "-workers",
            "2",
            "-nostdin",
            "-timeout",
            "30",
            "-trace_stat",
            "-stf",
            "u.csv",
        ],
    );
    wait_bound(&up);
    let target = format!("127.0.0.1:{up}");
    let out = run(
        "sipp",
        &dir,
        &[
            "-sn",
            "uac",
            &target,
            "-i",
            "127.0.0.1",
            "-p",
            &port().to_string(),
            "-r",
            "100",
            "-m",
            "40",
            "-nostdin",
            "-timeout",
            "30",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "SIPp uac");
    let uas = uas.wait_with_output().unwrap();
    assert_eq!(
        uas.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&uas.stderr)
    );
    assert_eq!(last(&dir.join("u.csv"), "SuccessfulCall(C)"), "40");
    assert_eq!(last(&dir.join("u.csv"), "IncomingCall(C)"), "40");
}

#[test]
fn a_second_sigusr1_stops_a_run_whose_call_never_ends() {
    // As with SIPp, a soft quit waits for the open calls; a call whose BYE never comes keeps
    // the run alive until a second SIGUSR1.
    let dir = tmpdir("usr1");
    let up = port().to_string();
    let mut uas = spawn(
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
            "30",
        ],
    );
    wait_bound(&up);
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = s.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: stuck-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let to = format!("127.0.0.1:{up}");
    s.send_to(invite.as_bytes(), &to).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = s.recv_from(&mut buf).expect("the uas answers");
        if buf[..n].starts_with(b"SIP/2.0 200") {
            break;
        }
    }
    let ack = invite
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK");
    s.send_to(ack.as_bytes(), &to).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sigusr1(uas.id());
    std::thread::sleep(Duration::from_millis(500));
    assert!(uas.try_wait().unwrap().is_none(), "waits for the open call");
    sigusr1(uas.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    while uas.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        uas.try_wait().unwrap().is_some(),
        "the second SIGUSR1 stops it"
    );
}

#[test]
fn timeout_error_makes_the_timeout_fatal() {
    let dir = tmpdir("timeout-error");
    let p = port().to_string();
    let args = [
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-p",
        &p,
        "-nostdin",
        "-timeout",
        "1",
    ];
    assert_eq!(
        run(SIPLOAD, &dir, &args).status.code(),
        Some(97),
        "no call: 97"
    );
    let mut with_error = args.to_vec();
    with_error.push("-timeout_error");
    let out = run(SIPLOAD, &dir, &with_error);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-timeout"));
}

#[test]
fn rsa_sends_to_an_outbound_proxy_keeping_the_remote_in_the_messages() {
    let dir = tmpdir("rsa");
    let uas = SippUas::start(&dir);
    let p = port().to_string();
    let rsa = format!("127.0.0.1:{}", uas.1);
    let out = run(
        SIPLOAD,
        &dir,
        &[
            "-sn",
            "uac",
            "127.0.0.2:5999",
            "-rsa",
            &rsa,
            "-i",
            "127.0.0.1",
            "-p",
            &p,
            "-m",
            "3",
            "-r",
            "50",
            "-nostdin",
            "-timeout",
            "20",
            "-trace_msg",
            "-trace_stat",
            "-stf",
            "uac.csv",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last(&dir.join("uac.csv"), "SuccessfulCall(C)"), "3");
    let log = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with("_messages.log"))
        .unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        text.contains("INVITE sip:service@127.0.0.2:5999 SIP/2.0"),
        "{text}"
    );
    assert!(
        text.contains("BYE sip:service@127.0.0.2:5999 SIP/2.0"),
        "{text}"
    );
}

#[test]
fn without_i_a_uas_listens_on_every_address_and_bind_local_narrows_it() {
    let dir = tmpdir("bind");
    for (extra, answers) in [(None, true), (Some("-bind_local"), false)] {
        let p = port().to_string();
        let mut args = vec!["-sn", "uas", "-p", &p, "-nostdin", "-timeout", "3"];
        args.extend(extra);
        let mut uas = spawn(SIPLOAD, &dir, &args);
        wait_bound(&p);
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let me = s.local_addr().unwrap();
        let invite = format!(
            "INVITE sip:x@127.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: bind-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        // 127.0.0.2 is loopback too, but not the uas's [local_ip] (127.0.0.1).
        s.send_to(invite.as_bytes(), format!("127.0.0.2:{p}"))
            .unwrap();
        let mut buf = [0u8; 2048];
        assert_eq!(s.recv_from(&mut buf).is_ok(), answers, "{extra:?}");
        let _ = uas.kill();
        let _ = uas.wait();
    }
}
