//! SIPp-compatible mode: `sipload [SIPp options] remote_host[:port]`. Loads the scenario
//! (built-in `-sn uac|uas` or `-sf FILE`), opens the UDP socket, goes to the background for
//! `-bg`, paces new calls ([`pace`]), feeds datagrams and timers to the [`engine`], and writes
//! SIPp's files ([`outputs`]). Exit codes are SIPp's.

pub mod abort;
pub mod action_xml;
pub mod actions;
#[cfg(test)]
mod actions_tests;
#[cfg(test)]
mod alloc_tests;
pub mod args;
pub mod builtin;
pub mod call;
pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod flow;
pub mod gro;
pub mod gso;
pub mod inject;
pub mod kernel;
pub mod outputs;
pub mod pace;
pub mod report;
pub mod scenario;
#[cfg(test)]
mod scenario_tests;
pub mod screen_log;
pub mod socket;
pub mod stats;
pub mod step_attrs;
pub mod template;
pub mod timers;
pub mod vars;
pub mod wheel;
pub mod wire;
pub mod worker;

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use args::{Options, Parsed};
use engine::{Engine, Env};
use gso::GsoTx;
use outputs::Outputs;
use pace::{PaceOptions, Pacer, Quota};
use socket::UdpNet;
use stats::Stats;
use worker::{Slot, Worker};

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

pub struct Fatal(pub u8, pub String);

pub fn start_err(msg: impl Into<String>) -> Fatal {
    Fatal(1, msg.into())
}

fn run(o: &Options) -> Result<u8, Fatal> {
    let (xml, file_stem) = match (&o.sn, &o.sf, &o.sd) {
        (_, _, Some(name)) => {
            let xml = match name.as_str() {
                "uac" => builtin::UAC,
                "uas" => builtin::UAS,
                n => {
                    return Err(start_err(format!(
                        "built-in scenario `{n}` is not supported by sipload (uac, uas); SIPp's own runs with `sipp -sd {n} > {n}.xml` and `-sf {n}.xml`"
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
                    "built-in scenario `{n}` is not supported by sipload (uac, uas); SIPp's own runs with `sipp -sd {n} > {n}.xml` and `-sf {n}.xml`"
                )));
            }
        },
    };
    let name = o.sf.clone().unwrap_or_else(|| format!("-sn {file_stem}"));
    let set_names: Vec<String> = o.set.iter().map(|(k, _)| k.clone()).collect();
    let sc =
        scenario::parse(&xml, &name, &o.keys, &set_names).map_err(|e| start_err(e.to_string()))?;
    let mut files = Vec::new();
    for f in &o.inf {
        let text = std::fs::read_to_string(f).map_err(|e| start_err(format!("-inf {f}: {e}")))?;
        files.push(inject::InjectFile::parse(f, &text).map_err(start_err)?);
    }
    for s in &sc.steps {
        if let scenario::Kind::Send { msg, .. } = &s.kind {
            for file in msg.field_files() {
                let known = match file {
                    Some(name) => files.iter().any(|f| f.name == name),
                    None => !files.is_empty(),
                };
                if !known {
                    return Err(start_err(format!(
                        "{name}:{}: [fieldN] reads {} but no such -inf file was given",
                        s.line,
                        file.unwrap_or("an injection file")
                    )));
                }
            }
        }
    }
    let inject = Arc::new(files);
    let remote = match &o.remote {
        Some(h) => Some(socket::resolve(h)?),
        None if sc.uac => return Err(start_err("a UAC scenario needs remote_host[:port]")),
        None => None,
    };
    let rsa = match &o.rsa {
        Some(h) => Some(socket::resolve(h)?),
        None => None,
    };
    let (sock, local_ip) = socket::bind(o, rsa.or(remote))?;
    let local = sock.local_addr().map_err(|e| start_err(e.to_string()))?;
    let n = o.workers.max(1);
    // Worker k > 0: a UAC on the next ports (its replies come back to the socket that sent),
    // a UAS on the same port (SO_REUSEPORT spreads peers over the workers).
    let mut socks = vec![sock];
    for k in 1..n {
        let addr = if sc.uac {
            SocketAddr::new(local.ip(), local.port().wrapping_add(k as u16))
        } else {
            local
        };
        socks.push(socket::bind_exact(addr, o.buff_size, o.rcvbuf)?);
    }
    if o.background {
        // SAFETY: no thread has been started yet, so the child gets a consistent copy of the
        // process; both sides only continue with ordinary Rust code.
        match unsafe { libc::fork() } {
            -1 => return Err(Fatal(255, "-bg: fork failed".into())),
            0 => {}
            child => {
                println!("Background mode - PID=[{child}]");
                return Ok(99);
            }
        }
    }
    let pid = std::process::id();
    let uac = sc.uac;
    let call_span = scenario_span(&sc).max(o.pause_default);
    let msg_log = if o.trace_msg {
        let path = format!("{file_stem}_{pid}_messages.log");
        File::create(&path).map_err(|e| Fatal(255, format!("{path}: {e}")))?;
        Some(path)
    } else {
        None
    };
    let mut out = Outputs::open(o, &sc, &file_stem, pid)?;
    let start = out.start;
    let wall_start = SystemTime::now();
    let shared = Arc::new(worker::Shared {
        quota: o.max_calls.map(|m| Arc::new(Quota::new(m))),
        ..Default::default()
    });
    let slots: Arc<Vec<Mutex<Slot>>> = Arc::new((0..n).map(|_| Mutex::default()).collect());
    let cpus = o.cpus.clone();
    let mut handles = Vec::new();
    for (k, sock) in socks.into_iter().enumerate() {
        let bound = sock.local_addr().map_err(|e| start_err(e.to_string()))?;
        // `[local_ip]` is the chosen IP even when the socket listens on every address.
        let local = SocketAddr::new(local_ip, bound.port());
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
            behaviors: o.behaviors,
            deadcall_wait: o.deadcall_wait,
            users: o.users,
            local_text: String::new(),
            remote_text: String::new(),
            inject: Arc::clone(&inject),
            lost: o.lost,
            send_to: rsa,
            started: start,
        }
        .with_texts();
        let mut engine = Engine::new(sc.clone(), env, None);
        engine.quota = shared.quota.clone();
        engine.stripe(k as u64, n as u64);
        for (name, v) in &o.set {
            engine.set_global(name, v);
        }
        engine.auto_answer = o.auto_answer;
        engine.errors = o.trace_err.then(Vec::new);
        engine.logs = o.trace_logs.then(Vec::new);
        engine.rtt = o.trace_rtt.then(Vec::new);
        engine.run_init(start);
        // This worker's share of the rate, the limit and the users.
        let share = |x: f64| x / n as f64;
        let pacer = uac.then(|| {
            Pacer::new(
                PaceOptions {
                    rate: share(o.rate),
                    period: o.rate_period,
                    limit: o.limit.map(|l| (l / n as u64).max(1)),
                    call_span,
                    increase: share(o.rate_increase),
                    interval: o.rate_interval.unwrap_or(o.stat_period),
                    max: share(o.rate_max),
                    quit_at_max: !o.no_rate_quit,
                    users: o.users.map(|_| engine.users()),
                },
                start,
            )
        });
        let fd = sock.as_raw_fd();
        let log = match &msg_log {
            Some(p) => Some(
                File::options()
                    .append(true)
                    .open(p)
                    .map_err(|e| Fatal(255, format!("{p}: {e}")))?,
            ),
            None => None,
        };
        let net = UdpNet {
            // SIPLOAD_GSO=0 sends datagram by datagram (for comparisons).
            tx: GsoTx::new(fd, std::env::var("SIPLOAD_GSO").map_or(true, |v| v != "0")),
            log,
            entry: Vec::new(),
        };
        let w = Worker {
            engine,
            net,
            sock: sock.into(),
            pacer,
        };
        let (shared, slots) = (Arc::clone(&shared), Arc::clone(&slots));
        let cpu = cpus.get(k).copied();
        handles.push(
            std::thread::Builder::new()
                .name(format!("sipload-{k}"))
                .spawn(move || {
                    if let Some(c) = cpu {
                        core_affinity::set_for_current(core_affinity::CoreId { id: c });
                    }
                    w.run(&shared, &slots[k]);
                })
                .map_err(|e| Fatal(255, format!("worker thread: {e}")))?,
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    // SIGUSR1: SIPp's soft quit (no new calls, the open ones finish); a second one stops now.
    let usr1 = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    if let Ok(mut sigs) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1]) {
        let usr1 = Arc::clone(&usr1);
        std::thread::spawn(move || {
            for _ in sigs.forever() {
                usr1.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let rcvbuf_at_start = kernel::rcvbuf_errors();
    // SAFETY: isatty only inspects file descriptor 1.
    let live = !o.background && unsafe { libc::isatty(1) } == 1;
    let run_info = |open_calls: usize,
                    now: Instant,
                    target: f64,
                    recent_rate: f64,
                    socket_drops: Option<u64>| report::RunInfo {
        scenario: &name,
        rtd_names: &sc.rtds,
        elapsed: now - start,
        target_rate: target,
        open_calls,
        recent_rate,
        socket_drops,
        rcvbuf_errors: kernel::rcvbuf_errors()
            .zip(rcvbuf_at_start)
            .map(|(a, b)| a.saturating_sub(b)),
    };
    let fresh = || {
        Stats::new(
            sc.rtds.len(),
            sc.counters.len(),
            sc.rt_repartition.clone(),
            sc.cl_repartition.clone(),
        )
    };
    // Merges the workers' last copies; writes their queued log lines.
    let gather = |out: &mut Outputs| -> Result<(Stats, usize, f64, Option<u64>), Fatal> {
        let mut s = fresh();
        let (mut open, mut target, mut drops) = (0, 0.0, Some(0));
        for slot in slots.iter() {
            let Ok(mut g) = slot.lock() else { continue };
            out.drain(&mut g)?;
            if let Some(st) = &g.stats {
                s.merge(st);
            }
            open += g.open;
            target += g.target;
            drops = drops.zip(g.socket_drops).map(|(a, b)| a + b);
        }
        Ok((s, open, if uac { target } else { 10.0 }, drops))
    };
    let (mut merged, _, t, _) = gather(&mut out)?;
    out.row(
        &mut merged,
        start,
        match (uac, o.users) {
            (true, Some(u)) => u as f64,
            (true, None) => o.rate,
            (false, _) => t,
        },
    );
    let mut timed_out = false;
    let (mut last_screen, mut last_created) = (start, 0u64);
    // The most calls open at once and when (SIPp's "Peak was N calls, after T s").
    let mut peak = (0u64, Duration::ZERO);
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) {
            shared.stop.store(true, Ordering::Relaxed);
        }
        match usr1.load(Ordering::Relaxed) {
            0 => {}
            1 => shared.closed.store(true, Ordering::Relaxed),
            _ => shared.stop.store(true, Ordering::Relaxed),
        }
        if let Some(t) = o.timeout
            && now - start >= t
            && !timed_out
        {
            timed_out = true;
            shared.closed.store(true, Ordering::Relaxed);
            if o.timeout_error {
                shared.stop.store(true, Ordering::Relaxed);
            }
        }
        let finished = handles.iter().all(|h| h.is_finished());
        if o.trace_screen {
            let open: usize = slots
                .iter()
                .filter_map(|s| s.lock().ok().map(|g| g.open))
                .sum();
            if open as u64 > peak.0 {
                peak = (open as u64, now - start);
            }
        }
        let screen_due = live && now - last_screen >= o.screen_period;
        let row_due = out.row_due(now, o.stat_period);
        if finished || screen_due || row_due {
            let (mut s, open, target, drops) = gather(&mut out)?;
            let created = s.total.incoming + s.total.outgoing;
            if screen_due {
                let recent =
                    (created - last_created) as f64 / (now - last_screen).as_secs_f64().max(1e-9);
                (last_screen, last_created) = (now, created);
                print!(
                    "{}",
                    report::screen(&s, &run_info(open, now, target, recent, drops))
                );
            }
            if row_due && !finished {
                out.row(&mut s, now, target);
            }
        }
        if finished {
            break;
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let end = Instant::now();
    let (mut merged, open, target, drops) = gather(&mut out)?;
    let (mut stop_now, mut fatal) = (false, None);
    for slot in slots.iter() {
        if let Ok(mut g) = slot.lock() {
            stop_now |= g.stop_now;
            fatal = fatal.or(g.fatal.take());
        }
    }
    let info = run_info(open, end, target, 0.0, drops);
    if live {
        print!("{}", report::screen(&merged, &info));
    }
    if let Some(path) = &o.summary {
        std::fs::write(path, report::summary_json(&merged, &info) + "\n")
            .map_err(|e| Fatal(255, format!("{path}: {e}")))?;
    }
    out.finish(&mut merged, end, target);
    if o.trace_screen {
        let path = o
            .screen_file
            .clone()
            .unwrap_or_else(|| format!("{file_stem}_{pid}_screen.log"));
        let span = call_span.max(Duration::from_secs(1)).as_secs_f64();
        let run = screen_log::ScreenRun {
            uac,
            local_port: local.port(),
            remote: remote.map_or_else(String::new, |r| {
                format!("{}:{}", wire::ip_text(r), r.port())
            }),
            rate: o.rate,
            rate_period: o.rate_period,
            duration_ms: o.pause_default.as_millis(),
            users: o.users,
            elapsed: end - start,
            max_calls: o.max_calls,
            limit: o.users.or(o.limit).unwrap_or_else(|| {
                ((3.0 * o.rate * span / o.rate_period.as_secs_f64()) as u64).max(1)
            }),
            open_calls: open as u64,
            peak_calls: peak.0,
            peak_after: peak.1,
            auto_answer: o.auto_answer,
            lost: o.lost > 0.0 || sc.steps.iter().any(|st| st.lost.is_some()),
            start: wall_start,
            now: SystemTime::now(),
            rtd_names: &sc.rtds,
        };
        std::fs::write(&path, screen_log::screens(&sc, &merged, &run))
            .map_err(|e| Fatal(255, format!("{path}: {e}")))?;
    }
    println!("{}", stats::summary(&merged, end - start));
    if let Some(f) = fatal {
        return Err(Fatal(255, f));
    }
    if timed_out && o.timeout_error {
        return Err(Fatal(255, "-timeout reached (-timeout_error)".into()));
    }
    let c = &merged.total;
    Ok(if stop_now {
        97
    } else if c.failed > 0 {
        1
    } else if timed_out && c.success == 0 {
        97
    } else {
        0
    })
}

/// How long the scenario itself keeps a call: its fixed pauses and timewait.
fn scenario_span(sc: &scenario::Scenario) -> Duration {
    let ms: u64 = sc
        .steps
        .iter()
        .map(|s| match s.kind {
            scenario::Kind::Pause(scenario::Pause::Ms(ms)) | scenario::Kind::Timewait(ms) => ms,
            _ => 0,
        })
        .sum();
    Duration::from_millis(ms)
}
