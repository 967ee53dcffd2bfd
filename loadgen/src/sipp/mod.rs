//! SIPp-compatible mode: `sipload [SIPp options] remote_host[:port]`. Loads the scenario
//! (built-in `-sn uac|uas` or `-sf FILE`), opens the UDP socket, paces new calls at `-r`/`-rp`,
//! feeds datagrams and timers to the [`engine`], and writes SIPp's statistics CSV. Exit codes
//! are SIPp's.

pub mod action_xml;
pub mod actions;
#[cfg(test)]
mod actions_tests;
pub mod args;
pub mod builtin;
pub mod call;
pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod flow;
pub mod scenario;
#[cfg(test)]
mod scenario_tests;
pub mod stats;
pub mod template;
pub mod vars;
pub mod wire;

use std::fs::File;
use std::io::{ErrorKind, Write as _};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use args::{Options, Parsed};
use engine::{Engine, Env, Net};
use sipdispatch::engine::Outbox;
use sipdispatch::io::counters::IoCounters;
use sipdispatch::io::sys::{self, RecvBatch};
use sipdispatch::io::tx::Tx;
use stats::RowTimes;

/// Runs SIPp mode with `args` (without the program name); returns SIPp's exit code.
pub fn main(args: &[String]) -> ExitCode {
    let o = match args::parse(args) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Info(text)) => {
            println!("{text}");
            return ExitCode::from(99);
        }
        Err(e) => {
            eprintln!("sipload: {e}");
            return ExitCode::from(1);
        }
    };
    match run(&o) {
        Ok(code) => ExitCode::from(code),
        Err(Fatal(code, msg)) => {
            eprintln!("sipload: {msg}");
            ExitCode::from(code)
        }
    }
}

struct Fatal(u8, String);

fn start_err(msg: impl Into<String>) -> Fatal {
    Fatal(1, msg.into())
}

fn resolve(host: &str) -> Result<SocketAddr, Fatal> {
    let with_port = if host.rsplit_once(':').is_some_and(|(h, p)| {
        p.chars().all(|c| c.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']'))
    }) {
        host.to_owned()
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:5060")
    } else {
        format!("{host}:5060")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| start_err(format!("cannot resolve remote host `{host}`")))
}

/// Sends queue into the data plane's `sendmmsg` batch, flushed once per loop turn.
struct UdpNet {
    tx: Tx,
    log: Option<File>,
}

impl Net for UdpNet {
    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        if let Some(b) = self.tx.buffer()
            && let Some(dst) = b.get_mut(..data.len())
        {
            dst.copy_from_slice(data);
            self.tx.commit(data.len(), to);
        }
        if let Some(f) = self.log.as_mut() {
            let _ = write!(
                f,
                "----------------------------------------------- {}\nUDP message sent ({} bytes):\n\n{}\n",
                stats::log_time(SystemTime::now()),
                data.len(),
                String::from_utf8_lossy(data)
            );
        }
    }
}

fn run(o: &Options) -> Result<u8, Fatal> {
    let (xml, file_stem) = match (&o.sn, &o.sf, &o.sd) {
        (_, _, Some(name)) => {
            let xml = match name.as_str() {
                "uac" => builtin::UAC,
                "uas" => builtin::UAS,
                n => {
                    return Err(start_err(format!(
                        "built-in scenario `{n}` is not supported by sipload (uac, uas)"
                    )));
                }
            };
            println!("{xml}");
            return Ok(99);
        }
        (_, Some(f), _) => {
            let xml = std::fs::read_to_string(f).map_err(|e| start_err(format!("{f}: {e}")))?;
            let stem = Path::new(f)
                .file_stem()
                .map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
            (xml, stem)
        }
        (sn, None, None) => match sn.as_deref().unwrap_or("uac") {
            "uac" => (builtin::UAC.to_owned(), "uac".to_owned()),
            "uas" => (builtin::UAS.to_owned(), "uas".to_owned()),
            n => {
                return Err(start_err(format!(
                    "built-in scenario `{n}` is not supported by sipload (uac, uas)"
                )));
            }
        },
    };
    let name = o.sf.clone().unwrap_or_else(|| format!("-sn {file_stem}"));
    let set_names: Vec<String> = o.set.iter().map(|(k, _)| k.clone()).collect();
    let sc =
        scenario::parse(&xml, &name, &o.keys, &set_names).map_err(|e| start_err(e.to_string()))?;
    let remote = match &o.remote {
        Some(h) => Some(resolve(h)?),
        None if sc.uac => return Err(start_err("a UAC scenario needs remote_host[:port]")),
        None => None,
    };
    let sock = bind(o, remote)?;
    let local = sock.local_addr().map_err(|e| start_err(e.to_string()))?;
    let pid = std::process::id();
    let env = Env {
        service: o.service.clone(),
        remote: remote.unwrap_or(local),
        remote_host: o.remote.clone().unwrap_or_default(),
        local,
        media_ip: o.media_ip.clone().unwrap_or_else(|| match local {
            SocketAddr::V4(v) => v.ip().to_string(),
            SocketAddr::V6(v) => format!("[{}]", v.ip()),
        }),
        media_port: o.media_port,
        pid,
        cid_str: o.cid_str.clone(),
        base_cseq: o.base_cseq,
        pause_default: o.pause_default,
        recv_timeout: o.recv_timeout,
        retrans: !o.no_retrans,
        max_invite_retrans: o.max_invite_retrans,
        max_non_invite_retrans: o.max_non_invite_retrans,
        t2: o.t2,
        default_behaviors: o.default_behaviors,
        deadcall_wait: Duration::from_secs(33),
    };
    let uac = sc.uac;
    let mut csv = None;
    if o.trace_stat {
        let path = o
            .stat_file
            .clone()
            .unwrap_or_else(|| format!("{file_stem}_{pid}_.csv"));
        let mut f = File::create(&path).map_err(|e| Fatal(255, format!("{path}: {e}")))?;
        let h = stats::header(
            &sc.rtds,
            &sc.counters,
            &sc.rt_repartition,
            &sc.cl_repartition,
            &o.stat_delimiter,
        );
        writeln!(f, "{h}").map_err(|e| Fatal(255, format!("{path}: {e}")))?;
        csv = Some(f);
    }
    let log = if o.trace_msg {
        let path = format!("{file_stem}_{pid}_messages.log");
        Some(File::create(&path).map_err(|e| Fatal(255, format!("{path}: {e}")))?)
    } else {
        None
    };
    const BATCH: usize = 64;
    let fd = sock.as_raw_fd();
    let mut net = UdpNet {
        tx: Tx::new(
            BATCH,
            65_536,
            vec![fd],
            vec![local.is_ipv6()],
            Arc::new(IoCounters::default()),
        ),
        log,
    };
    let mut engine = Engine::new(sc, env, if uac { None } else { o.max_calls });
    let err_path = format!("{file_stem}_{pid}_errors.log");
    let mut err_log: Option<File> = None;
    if o.trace_err {
        engine.errors = Some(Vec::new());
    }
    for (k, v) in &o.set {
        engine.set_global(k, v);
    }
    engine.auto_answer = o.auto_answer;
    let logs_path = format!("{file_stem}_{pid}_logs.log");
    let mut logs_file = if o.trace_logs {
        engine.logs = Some(Vec::new());
        Some(File::create(&logs_path).map_err(|e| Fatal(255, format!("{logs_path}: {e}")))?)
    } else {
        None
    };
    let limit = o.limit.unwrap_or_else(|| {
        let span = o.pause_default.max(Duration::from_secs(1)).as_secs_f64();
        ((3.0 * o.rate * span / o.rate_period.as_secs_f64()).ceil() as u64).max(1)
    });

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }

    let start = Instant::now();
    let wall_start = SystemTime::now();
    let mut last_row = (start, wall_start);
    let write_row = |engine: &mut Engine,
                     csv: &mut Option<File>,
                     last: &mut (Instant, SystemTime),
                     now: Instant| {
        if let Some(f) = csv.as_mut() {
            let t = RowTimes {
                start: wall_start,
                last_reset: last.1,
                now: SystemTime::now(),
                period: now - last.0,
                elapsed: now - start,
                target_rate: o.rate,
            };
            let _ = writeln!(f, "{}", stats::row(&engine.stats, &t, &o.stat_delimiter));
        }
        engine.stats.period = stats::Counts {
            rtd: vec![Default::default(); engine.stats.total.rtd.len()],
            counters: vec![0; engine.stats.total.counters.len()],
            ..Default::default()
        };
        *last = (now, SystemTime::now());
    };
    write_row(&mut engine, &mut csv, &mut last_row, start);
    let mut started: u64 = 0;
    let mut timed_out = false;
    let mut rx = RecvBatch::new(BATCH, 65_536);
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(t) = o.timeout
            && now - start >= t
            && !timed_out
        {
            timed_out = true;
            engine.closed = true;
        }
        let done_creating = engine.closed || o.max_calls.is_some_and(|m| engine.created() >= m);
        if uac && !done_creating {
            let due = ((now - start).as_secs_f64() * o.rate / o.rate_period.as_secs_f64()) as u64;
            while started < due && o.max_calls.is_none_or(|m| engine.created() < m) {
                started += 1;
                // SIPp skips (does not queue) the calls due while at the limit.
                if (engine.open_calls() as u64) < limit {
                    engine.start_call(now, &mut net);
                }
            }
        }
        if done_creating && engine.open_calls() == 0 && (uac || o.max_calls.is_some() || timed_out)
        {
            break;
        }
        engine.on_timers(now, &mut net);
        net.tx.flush();
        let n = rx.recv(fd).unwrap_or(0);
        for i in 0..n {
            let (Some(src), data, false) = rx.get(i) else {
                continue;
            };
            if let Some(f) = net.log.as_mut() {
                let _ = write!(
                    f,
                    "----------------------------------------------- {}\nUDP message received [{}] bytes :\n\n{}\n",
                    stats::log_time(SystemTime::now()),
                    data.len(),
                    String::from_utf8_lossy(data)
                );
            }
            engine.on_datagram(Instant::now(), src, data, &mut net);
        }
        net.tx.flush();
        if n == 0 {
            // Idle: sleep until a datagram arrives or the next millisecond's work is due.
            let mut p = [libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            }];
            let _ = sys::poll(&mut p, 1);
        }
        if let Some(lines) = engine.errors.as_mut()
            && !lines.is_empty()
        {
            // Created at the first event, as SIPp does.
            if err_log.is_none() {
                err_log = Some(
                    File::create(&err_path).map_err(|e| Fatal(255, format!("{err_path}: {e}")))?,
                );
            }
            if let Some(f) = err_log.as_mut() {
                for l in lines.drain(..) {
                    let _ = writeln!(f, "{}      {l}", stats::log_time(SystemTime::now()));
                }
            }
        }
        if let (Some(lines), Some(f)) = (engine.logs.as_mut(), logs_file.as_mut()) {
            for l in lines.drain(..) {
                let _ = writeln!(f, "{l}");
            }
        }
        if engine.stop_now || engine.fatal.is_some() {
            break;
        }
        if now - last_row.0 >= o.stat_period {
            write_row(&mut engine, &mut csv, &mut last_row, now);
        }
    }
    let end = Instant::now();
    write_row(&mut engine, &mut csv, &mut last_row, end);
    println!("{}", stats::summary(&engine.stats, end - start));
    if let Some(f) = engine.fatal.take() {
        return Err(Fatal(255, f));
    }
    let c = &engine.stats.total;
    Ok(if engine.stop_now {
        97
    } else if c.failed > 0 {
        1
    } else if timed_out && c.success == 0 {
        97
    } else {
        0
    })
}

/// The SIP socket: `-i`/`-p` as SIPp binds them (5060…5119 tried first without `-p`).
fn bind(o: &Options, remote: Option<SocketAddr>) -> Result<UdpSocket, Fatal> {
    let ip: std::net::IpAddr = match (&o.local_ip, remote) {
        (Some(i), _) => i
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| start_err(format!("-i {i} is not an IP address")))?,
        (None, Some(r)) => UdpSocket::bind(if r.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
            .and_then(|s| s.connect(r).and_then(|_| s.local_addr()))
            .map(|a| a.ip())
            .unwrap_or_else(|_| "127.0.0.1".parse().expect("literal")),
        (None, None) => "127.0.0.1".parse().expect("literal"),
    };
    let ports: Vec<u16> = match o.local_port {
        Some(p) => vec![p],
        None => (5060..5120).chain([0]).collect(),
    };
    let mut last = None;
    for p in ports {
        match new_socket(SocketAddr::new(ip, p), o.buff_size) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let e = last.expect("at least one port tried");
    if e.kind() == ErrorKind::AddrInUse {
        Err(Fatal(254, format!("cannot bind {ip}: {e}")))
    } else {
        Err(start_err(format!("cannot bind {ip}: {e}")))
    }
}

fn new_socket(addr: SocketAddr, buf: usize) -> std::io::Result<UdpSocket> {
    Ok(sys::udp_socket(addr, Some(buf), Some(buf))?.into())
}
