//! Helpers shared by the end-to-end tests: free ports, scratch directories, processes, the
//! last row of a SIPp-format CSV, and a uas/uac pair run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const SIPLOAD: &str = env!("CARGO_BIN_EXE_sipload");

pub fn port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (ten seconds at most) until a process has bound UDP `port`, as the kernel lists it:
/// a peer that is still starting on a loaded machine would drop the first request, and the
/// retransmission would change what the test sees. Looked up, not probed by binding, so the
/// peer can never find its port taken.
pub fn wait_bound(port: &str) {
    let port: u16 = port.parse().expect("a port number");
    let needle = format!(":{port:04X} ");
    for _ in 0..500 {
        let bound = ["/proc/net/udp", "/proc/net/udp6"].iter().any(|table| {
            std::fs::read_to_string(table).is_ok_and(|t| {
                // Each row: `sl local_address rem_address ...`, the local port in hex.
                t.lines()
                    .filter_map(|l| l.split_whitespace().nth(1))
                    .any(|local| format!("{local} ").ends_with(&needle))
            })
        });
        if bound {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("nothing bound UDP port {port} within ten seconds");
}

pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sipload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn spawn(exe: &str, dir: &Path, args: &[&str]) -> Child {
    Command::new(exe)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{exe}: {e} (is SIPp installed? apt-get install sip-tester)"))
}

pub fn run(exe: &str, dir: &Path, args: &[&str]) -> Output {
    spawn(exe, dir, args).wait_with_output().unwrap()
}

/// A column of the last row of a SIPp-format CSV, by name.
pub fn last(csv: &Path, column: &str) -> String {
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

pub fn first_line(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

/// One run: a uas (`-m calls`) started first, then a uac calling it, each writing its
/// statistics to `<tag>-uas.csv` / `<tag>-uac.csv` in `dir`. Returns both outputs, the uac's
/// pid and the two ports.
pub struct Pair {
    pub uac: Output,
    pub uas: Output,
    pub uac_pid: u32,
    pub ports: [String; 2],
}

pub fn call_pair(
    dir: &Path,
    uas_exe: &str,
    uac_exe: &str,
    calls: &str,
    tag: &str,
    extra: &[&str],
) -> Pair {
    let (up, cp) = (port().to_string(), port().to_string());
    let uas_cmd = format!(
        "-sn uas -i 127.0.0.1 -p {up} -m {calls} -nostdin -timeout 60 -trace_stat -fd 1 -stf {tag}-uas.csv"
    );
    let scenario = if extra.contains(&"-sf") {
        ""
    } else {
        "-sn uac"
    };
    let uac_cmd = format!(
        "{scenario} 127.0.0.1:{up} -i 127.0.0.1 -p {cp} -r 200 -m {calls} -nostdin -timeout 60 -trace_stat -fd 1 -stf {tag}-uac.csv"
    );
    let uas = spawn(
        uas_exe,
        dir,
        &uas_cmd.split_whitespace().collect::<Vec<_>>(),
    );
    wait_bound(&up);
    let mut args: Vec<&str> = uac_cmd.split_whitespace().collect();
    args.extend_from_slice(extra);
    let uac = spawn(uac_exe, dir, &args);
    let uac_pid = uac.id();
    Pair {
        uac: uac.wait_with_output().unwrap(),
        uas: uas.wait_with_output().unwrap(),
        uac_pid,
        ports: [up, cp],
    }
}

/// One call's `-trace_msg` log with what legitimately differs between two runs masked: the
/// process ids (in Call-IDs, tags and branches), the ports, the log's timestamps, and the
/// media port (SIPp binds RTP sockets and advertises the port it got; sipload opens none).
pub fn masked_log(dir: &Path, stem: &str, uac_pid: u32, ports: [&str; 2]) -> String {
    let log = std::fs::read_to_string(dir.join(format!("{stem}_{uac_pid}_messages.log"))).unwrap();
    let mut out = String::new();
    for line in log.lines() {
        let mut l = if line.starts_with("-----------") {
            "----".to_owned()
        } else if line.starts_with("m=audio ") {
            "m=audio MEDIA".to_owned()
        } else {
            // Only where SIPp puts its pid: a bare replace would also hit a port or an SDP
            // number that happens to contain the same digits.
            line.replace(&format!("-{uac_pid}@"), "-PID@")
                .replace(&format!("{uac_pid}SIPpTag"), "PIDSIPpTag")
                .replace(&format!("z9hG4bK-{uac_pid}-"), "z9hG4bK-PID-")
        };
        l = l
            .replace(&format!("127.0.0.1:{}", ports[0]), "127.0.0.1:RPORT")
            .replace(&format!("127.0.0.1:{}", ports[1]), "127.0.0.1:LPORT");
        // The answering SIPp's pid, in its To-tag.
        if let Some(p) = l.find(";tag=")
            && let Some(t) = l[p + 5..].find("SIPpTag01")
        {
            l.replace_range(p + 5..p + 5 + t, "PEER");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}
