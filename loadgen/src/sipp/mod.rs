//! SIPp-compatible mode: `sipload [SIPp options] remote_host[:port]`. Loads the scenario
//! (built-in `-sn uac|uas` or `-sf FILE`), opens the UDP socket, goes to the background for
//! `-bg`, paces new calls ([`pace`]), feeds datagrams and timers to the [`engine`], and writes
//! SIPp's files ([`outputs`]). Exit codes are SIPp's.

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
pub mod kernel;
pub mod outputs;
pub mod pace;
pub mod report;
pub mod scenario;
#[cfg(test)]
mod scenario_tests;
pub mod socket;
pub mod stats;
pub mod template;
pub mod vars;
pub mod wheel;
pub mod wire;

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use args::{Options, Parsed};
use engine::{Engine, Env};
use outputs::Outputs;
use pace::{PaceOptions, Pacer};
use sipdispatch::io::counters::IoCounters;
use sipdispatch::io::sys::{self, RecvBatch};
use sipdispatch::io::tx::Tx;
use socket::UdpNet;

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
        Some(h) => Some(socket::resolve(h)?),
        None if sc.uac => return Err(start_err("a UAC scenario needs remote_host[:port]")),
        None => None,
    };
    let sock = socket::bind(o, remote)?;
    let local = sock.local_addr().map_err(|e| start_err(e.to_string()))?;
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
        users: o.users,
        local_text: String::new(),
        remote_text: String::new(),
    }
    .with_texts();
    let uac = sc.uac;
    let call_span = scenario_span(&sc).max(o.pause_default);
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
    let sc_for_outputs = sc.clone();
    let mut engine = Engine::new(sc, env, if uac { None } else { o.max_calls });
    for (k, v) in &o.set {
        engine.set_global(k, v);
    }
    engine.auto_answer = o.auto_answer;
    let mut out = Outputs::open(o, &sc_for_outputs, &file_stem, pid, &mut engine)?;
    drop(sc_for_outputs);

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    // SIGUSR1: SIPp's soft quit (no new calls, the open ones finish).
    let soft_quit = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&soft_quit));

    let start = out.start;
    let rcvbuf_at_start = kernel::rcvbuf_errors();
    // SAFETY: isatty only inspects file descriptor 1.
    let live = !o.background && unsafe { libc::isatty(1) } == 1;
    let mut last_screen = start;
    let rtd_names = engine.sc.rtds.clone();
    let mut last_created = 0u64;
    let run_info =
        |open_calls: usize, now: Instant, target: f64, recent_rate: f64| report::RunInfo {
            scenario: &name,
            rtd_names: &rtd_names,
            elapsed: now - start,
            target_rate: target,
            open_calls,
            recent_rate,
            socket_drops: kernel::socket_drops(local),
            rcvbuf_errors: kernel::rcvbuf_errors()
                .zip(rcvbuf_at_start)
                .map(|(a, b)| a.saturating_sub(b)),
        };
    let mut pacer = Pacer::new(
        PaceOptions {
            rate: o.rate,
            period: o.rate_period,
            limit: o.limit,
            call_span,
            increase: o.rate_increase,
            interval: o.rate_interval.unwrap_or(o.stat_period),
            max: o.rate_max,
            quit_at_max: !o.no_rate_quit,
            users: o.users,
        },
        start,
    );
    out.row(&mut engine, start, target(&pacer, uac));
    let mut timed_out = false;
    let mut rx = RecvBatch::new(BATCH, 65_536);
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if soft_quit.load(Ordering::Relaxed) {
            engine.closed = true;
        }
        if let Some(t) = o.timeout
            && now - start >= t
            && !timed_out
        {
            timed_out = true;
            engine.closed = true;
        }
        if uac && pacer.tick(now) {
            engine.closed = true;
        }
        let done_creating = engine.closed || o.max_calls.is_some_and(|m| engine.created() >= m);
        if uac && !done_creating {
            let n = pacer.due(
                now,
                engine.open_calls() as u64,
                engine.created(),
                o.max_calls,
            );
            for _ in 0..n {
                engine.start_call(now, &mut net);
            }
        }
        if done_creating
            && engine.open_calls() == 0
            && (uac || o.max_calls.is_some() || engine.closed)
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
            net.log_received(data);
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
        out.drain(&mut engine)?;
        if engine.stop_now || engine.fatal.is_some() {
            break;
        }
        if live && now - last_screen >= o.screen_period {
            let recent = (engine.created() - last_created) as f64
                / (now - last_screen).as_secs_f64().max(1e-9);
            (last_screen, last_created) = (now, engine.created());
            let info = run_info(engine.open_calls(), now, target(&pacer, uac), recent);
            print!("{}", report::screen(&engine.stats, &info));
        }
        if out.row_due(now, o.stat_period) {
            out.row(&mut engine, now, target(&pacer, uac));
        }
    }
    let end = Instant::now();
    let info = run_info(engine.open_calls(), end, target(&pacer, uac), 0.0);
    if live {
        print!("{}", report::screen(&engine.stats, &info));
    }
    if let Some(path) = &o.summary {
        std::fs::write(path, report::summary_json(&engine.stats, &info) + "\n")
            .map_err(|e| Fatal(255, format!("{path}: {e}")))?;
    }
    out.finish(&mut engine, end, target(&pacer, uac));
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

/// SIPp's `TargetRate`: the rate (or `-users`) of a UAC, a UAS's default rate.
fn target(p: &Pacer, uac: bool) -> f64 {
    if uac { p.target() } else { 10.0 }
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
