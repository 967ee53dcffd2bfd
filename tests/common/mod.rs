//! Helpers for end-to-end tests: free loopback ports, a running `sipdispatch` with a config
//! written for the test, and real SIPp processes (`sipp` from Debian's `sip-tester`) whose
//! `-trace_stat` CSV is read for the result. Every process is bounded by a timeout and killed
//! when its handle drops.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A number not returned before in this process.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A fresh directory under the target dir for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        unique()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether `sipp` is installed (CI installs it; a developer machine may not have it).
pub fn have_sipp() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Skips the calling test with a message when SIPp is missing, unless running in CI,
/// where a missing SIPp is a failure.
#[macro_export]
macro_rules! require_sipp {
    () => {
        if !common::have_sipp() {
            if std::env::var_os("CI").is_some() {
                panic!("sipp is not installed (CI must install sip-tester)");
            }
            eprintln!("skipping: sipp is not installed");
            return;
        }
    };
}

/// The I/O backends to test: mmsg always, io_uring when the kernel allows it.
pub fn backends() -> Vec<&'static str> {
    let mut b = vec!["mmsg"];
    if sipdispatch::io::uring_available().is_ok() {
        b.push("uring");
    } else {
        eprintln!("io_uring unavailable here: testing mmsg only");
    }
    b
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Sends a signal (e.g. `libc::SIGUSR1`, SIGTERM) to the process.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status();
    }

    /// Waits for exit up to `limit`; kills it after that. Returns the exit code (None if killed).
    pub fn wait_for(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                eprintln!("{}: killed after {limit:?}", self.name);
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The last row of a SIPp `-trace_stat` CSV, by column name.
pub struct Stats {
    cols: Vec<String>,
    vals: Vec<String>,
}

impl Stats {
    pub fn read(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = lines.next()?;
        let last = lines.next_back()?;
        Some(Self {
            cols: header.split(';').map(str::to_owned).collect(),
            vals: last.split(';').map(str::to_owned).collect(),
        })
    }

    pub fn get(&self, col: &str) -> u64 {
        let i = self
            .cols
            .iter()
            .position(|c| c == col)
            .unwrap_or_else(|| panic!("no column {col}"));
        self.vals[i].trim().parse().unwrap_or(0)
    }

    pub fn successful(&self) -> u64 {
        self.get("SuccessfulCall(C)")
    }

    pub fn failed(&self) -> u64 {
        self.get("FailedCall(C)")
    }

    pub fn unexpected(&self) -> u64 {
        self.get("FailedUnexpectedMessage(C)") + self.get("OutOfCallMsgs(C)")
    }
}

/// A SIPp instance with its stat file.
pub struct Sipp {
    pub proc: Proc,
    pub stat: PathBuf,
    pub port: u16,
}

impl Sipp {
    /// `sipp -sn uas` (or `-sf scenario`) on 127.0.0.1:`port`, running until stopped.
    pub fn uas(dir: &Path, name: &str, port: u16, scenario: Option<&Path>) -> Self {
        let stat = dir.join(format!("{name}.csv"));
        let mut cmd = Command::new("sipp");
        match scenario {
            Some(sf) => cmd.arg("-sf").arg(sf),
            None => cmd.args(["-sn", "uas"]),
        };
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-nostdin",
                "-trace_stat",
                "-fd",
                "1",
                "-buff_size",
                "4194304",
            ])
            .arg("-stf")
            .arg(&stat)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn sipp uas");
        Self {
            proc: Proc {
                child,
                name: name.into(),
            },
            stat,
            port,
        }
    }

    /// `sipp -sn uac` (or the `-sf` scenario in `extra`) sending `calls` calls at `rate`/s to
    /// `target`; runs to completion.
    pub fn uac(
        dir: &Path,
        name: &str,
        target: SocketAddr,
        calls: u32,
        rate: u32,
        extra: &[&str],
    ) -> Self {
        let port = free_port();
        let stat = dir.join(format!("{name}.csv"));
        let builtin: &[&str] = if extra.contains(&"-sf") {
            &[]
        } else {
            &["-sn", "uac"]
        };
        let child = Command::new("sipp")
            .args(builtin)
            .arg(target.to_string())
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
            .args([
                "-nostdin",
                "-trace_stat",
                "-fd",
                "1",
                "-buff_size",
                "4194304",
            ])
            .args(["-timeout", "60s", "-recv_timeout", "10000"])
            .args(extra)
            .arg("-stf")
            .arg(&stat)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipp uac");
        Self {
            proc: Proc {
                child,
                name: name.into(),
            },
            stat,
            port,
        }
    }

    /// Waits for a uac to finish; returns its exit code and final stats.
    pub fn finish(mut self, limit: Duration) -> (Option<i32>, Stats) {
        let code = self.proc.wait_for(limit);
        let stats = Stats::read(&self.stat).expect("sipp wrote its stat file");
        (code, stats)
    }

    /// Stops uas instances: a soft quit (SIGUSR1) lets calls in their timewait finish as
    /// successful; all are signalled first, then each is waited for. Returns their final stats.
    pub fn stop_all(all: Vec<Sipp>) -> Vec<Stats> {
        for s in &all {
            s.proc.signal("USR1");
        }
        all.into_iter()
            .map(|mut s| {
                s.proc.wait_for(Duration::from_secs(15));
                Stats::read(&s.stat).expect("sipp wrote its stat file")
            })
            .collect()
    }
}

/// A running sipdispatch on a config written for the test.
pub struct Dispatcher {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Dispatcher {
    /// Writes `config` (TOML) to `dir` and starts `sipdispatch --config` on it, waiting until it
    /// answers an OPTIONS on `addr`.
    pub fn start(dir: &Path, addr: SocketAddr, config: &str) -> Self {
        let path = dir.join("sipdispatch.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("sipdispatch.log");
        let child = Command::new(env!("CARGO_BIN_EXE_sipdispatch"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn sipdispatch");
        let d = Self {
            proc: Proc {
                child,
                name: "sipdispatch".into(),
            },
            addr,
            config: path,
            log,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let _ = sock.send_to(&options(self.addr, sock.local_addr().unwrap()), self.addr);
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && buf[..n].starts_with(b"SIP/2.0 200")
            {
                return;
            }
        }
        panic!(
            "sipdispatch did not come up; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Stops it with SIGTERM (as an operator would) and returns its exit code and whole log.
    pub fn stop(mut self) -> (Option<i32>, String) {
        self.proc.signal("TERM");
        let code = self.proc.wait_for(Duration::from_secs(10));
        (code, self.log_text())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An OPTIONS addressed to the dispatcher itself (it answers 200).
pub fn options(to: SocketAddr, from: SocketAddr) -> Vec<u8> {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-ready-{n}\r\n\
From: <sip:probe@{from}>;tag=probe\r\nTo: <sip:{to}>\r\nCall-ID: ready-{n}@test\r\n\
CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        n = unique()
    )
    .into_bytes()
}

/// The `key=value` counters of the "shard N final:" lines sipdispatch logs when it stops.
pub fn final_counters(log: &str) -> Vec<std::collections::HashMap<String, u64>> {
    let mut shards = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.split_once(" final: ").map(|(_, r)| r) else {
            continue;
        };
        let map = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| {
                Some((
                    k.to_owned(),
                    v.trim_end_matches(|c: char| !c.is_ascii_digit())
                        .parse()
                        .ok()?,
                ))
            })
            .collect();
        shards.push(map);
    }
    shards
}

/// Sends the request `req` builds for the sending socket's address, from a fresh socket, to
/// `to`; returns the first reply (within 2 s).
pub fn exchange(to: SocketAddr, req: impl FnOnce(SocketAddr) -> Vec<u8>) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    sock.send_to(&req(sock.local_addr().ok()?), to).ok()?;
    let mut buf = vec![0u8; 65_536];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// An INVITE as a SIPp uac would send it, from `from` (Via/Contact) to `to`.
pub fn invite(to: SocketAddr, from: SocketAddr, call: &str, extra: &str) -> Vec<u8> {
    format!(
        "INVITE sip:service@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-{call}\r\n\
From: sipp <sip:sipp@{from}>;tag={call}\r\nTo: sut <sip:service@{to}>\r\nCall-ID: {call}@test\r\n\
CSeq: 1 INVITE\r\nContact: sip:sipp@{from}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}
