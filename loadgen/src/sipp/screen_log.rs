//! `-trace_screen`: the screens SIPp 3.6.1 writes to `<scenario>_<pid>_screen.log` at exit
//! (or to `-screen_file`), in its layout: the scenario screen (one row per step with its
//! messages, retransmissions, timeouts and unexpected messages), the statistics screen and the
//! repartition screen, each closed by the "Waiting for active calls to end" line SIPp prints
//! while it quits. As in SIPp, the dump follows a periodic reset, so every "periodic" value is
//! zero, and SIPp's screen shows the periodic value of a duration in both columns (its
//! formatter returns one static buffer); 3.6.1 also prints the sockets line twice.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::actions::Dist;
use super::scenario::{Kind, Pause, Scenario};
use super::stats::{Stats, StepCount, timestamp};

/// What the screens show besides the counters.
pub struct ScreenRun<'a> {
    pub uac: bool,
    pub local_port: u16,
    /// `ip:port` of the remote host (UAC).
    pub remote: String,
    pub rate: f64,
    pub rate_period: Duration,
    /// `-d` in ms.
    pub duration_ms: u128,
    pub users: Option<u64>,
    pub elapsed: Duration,
    /// `-m` (SIPp's `stop_after`; none: unlimited).
    pub max_calls: Option<u64>,
    /// `-l`, or SIPp's default (3 × rate × call length).
    pub limit: u64,
    pub open_calls: u64,
    pub peak_calls: u64,
    pub peak_after: Duration,
    pub auto_answer: bool,
    pub lost: bool,
    pub start: SystemTime,
    pub now: SystemTime,
    pub rtd_names: &'a [String],
}

const BOTTOM: &str =
    "------- Waiting for active calls to end. Press [q] again to force exit. -------";

/// The three screens, as SIPp writes them to its screen file.
pub fn screens(sc: &Scenario, s: &Stats, r: &ScreenRun<'_>) -> String {
    let mut o = String::new();
    scenario_screen(&mut o, sc, s, r);
    o.push_str(BOTTOM);
    o.push('\n');
    stats_screen(&mut o, sc, s, r);
    o.push_str(BOTTOM);
    o.push('\n');
    repartition_screen(&mut o, s, r);
    o.push_str(BOTTOM);
    o.push('\n');
    o
}

fn line(o: &mut String, l: std::fmt::Arguments<'_>) {
    let _ = o.write_fmt(l);
    o.push('\n');
}

fn scenario_screen(o: &mut String, sc: &Scenario, s: &Stats, r: &ScreenRun<'_>) {
    o.push_str("------------------------------ Scenario Screen -------- [1-9]: Change Screen --\n");
    let total = s.total.incoming + s.total.outgoing;
    let ms = r.elapsed.as_millis();
    let (secs, cs) = (ms / 1000, (ms % 1000) / 10);
    if !r.uac {
        o.push_str("  Port   Total-time  Total-calls  Transport\n");
        line(
            o,
            format_args!(
                "  {:<5} {secs:>6}.{cs:02} s     {total:>8}  UDP",
                r.local_port
            ),
        );
    } else if let Some(u) = r.users {
        o.push_str("  Users (length)   Port   Total-time  Total-calls  Remote-host\n");
        line(
            o,
            format_args!(
                "  {u} ({} ms)   {:<5} {secs:>6}.{cs:02} s     {total:>8}  {}(UDP)",
                r.duration_ms,
                r.local_port,
                trunc_host(&r.remote)
            ),
        );
    } else {
        o.push_str("  Call rate (length)   Port   Total-time  Total-calls  Remote-host\n");
        line(
            o,
            format_args!(
                "  {:3.1}({} ms)/{:5.3}s   {:<5} {secs:>6}.{cs:02} s     {total:>8}  {}(UDP)",
                r.rate,
                r.duration_ms,
                r.rate_period.as_secs_f64(),
                r.local_port,
                trunc_host(&r.remote)
            ),
        );
    }
    o.push('\n');
    // The periodic values: zero right after the reset the exit dump follows.
    let left = match r.max_calls {
        Some(m) if total >= m => format!("Call limit {m} hit, 0.0 s period "),
        _ => "0 new calls during 0.000 s period".to_owned(),
    };
    line(
        o,
        format_args!("  {left:<38.38}  {:<37.37}", "0 ms scheduler resolution"),
    );
    let calls = if r.uac {
        format!("{} calls (limit {})", r.open_calls, r.limit)
    } else {
        format!("{} calls", r.open_calls)
    };
    line(
        o,
        format_args!(
            "  {calls:<38}  Peak was {} calls, after {} s",
            r.peak_calls,
            r.peak_after.as_secs()
        ),
    );
    line(
        o,
        format_args!("  0 Running, {} Paused, 0 Woken up", r.open_calls),
    );
    let dead = format!("{} dead call msg (discarded)", s.total.dead_call);
    if r.uac {
        line(
            o,
            format_args!(
                "  {dead:<38}  {} out-of-call msg (discarded)",
                s.total.out_of_call
            ),
        );
    } else {
        line(o, format_args!("  {dead:<38}"));
    }
    if r.auto_answer {
        line(
            o,
            format_args!("  {} requests auto-answered", s.total.auto_answered),
        );
    }
    for _ in 0..2 {
        line(
            o,
            format_args!(
                "  {:<38}  0/0/0 UDP errors (send/recv/cong)",
                "0 open sockets"
            ),
        );
    }
    o.push('\n');
    if r.lost {
        o.push_str(
            "                                 Messages  Retrans   Timeout   Unexp.    Lost\n",
        );
    } else {
        o.push_str(
            "                                 Messages  Retrans   Timeout   Unexpected-Msg\n",
        );
    }
    for (i, step) in sc.steps.iter().enumerate() {
        if step.hide {
            continue;
        }
        let c = s.steps.get(i).copied().unwrap_or_default();
        step_row(o, step, &c, r, sc);
        if step.crlf {
            o.push('\n');
        }
    }
}

/// `%.20s:%d`: SIPp shows at most 20 characters of the remote IP.
fn trunc_host(remote: &str) -> String {
    match remote.rsplit_once(':') {
        Some((ip, port)) => format!("{}:{port}", ip.chars().take(20).collect::<String>()),
        None => remote.to_owned(),
    }
}

fn rtd_mark(step: &super::scenario::Step) -> String {
    match (step.start_rtd, step.rtd) {
        (Some(r), _) => format!(" B-RTD{} ", r + 1),
        (None, Some(r)) => format!(" E-RTD{} ", r + 1),
        _ => "        ".to_owned(),
    }
}

fn step_row(
    o: &mut String,
    step: &super::scenario::Step,
    c: &StepCount,
    r: &ScreenRun<'_>,
    sc: &Scenario,
) {
    let (server, pause_default) = (!r.uac, r.duration_ms);
    match &step.kind {
        Kind::Send { msg, retrans, .. } => {
            let what = match (msg.code, &msg.method) {
                (Some(code), _) => code.to_string(),
                (None, Some(m)) => m.clone(),
                (None, None) => String::new(),
            };
            let mut b = if server {
                format!("  <---------- {what:<10} ")
            } else {
                format!("  {what:>10} ----------> ")
            };
            b.push_str(&rtd_mark(step));
            if retrans.is_some() {
                let _ = write!(
                    b,
                    "{:<9} {:<9} {:<9} {:<9} {:<9}",
                    c.msgs, c.retrans, c.timeouts, "", ""
                );
            } else {
                let _ = write!(
                    b,
                    "{:<9} {:<9} {:<9} {:<9} {:<9}",
                    c.msgs, c.retrans, "", "", ""
                );
            }
            line(o, format_args!("{}", cut(&b)));
        }
        Kind::Recv {
            response, request, ..
        } => {
            let what = match (response, request) {
                (Some(code), _) => code.to_string(),
                (None, Some(m)) => m.clone(),
                (None, None) => String::new(),
            };
            let mut b = if server {
                format!("  ----------> {what:<10} ")
            } else {
                format!("  {what:>10} <---------- ")
            };
            b.push_str(&rtd_mark(step));
            let _ = write!(
                b,
                "{:<9} {:<9} {:<9} {:<9} {:<9}",
                c.msgs, c.retrans, c.timeouts, c.unexpected, ""
            );
            line(o, format_args!("{}", cut(&b)));
        }
        Kind::Pause(_) | Kind::Timewait(_) => {
            let desc = match &step.kind {
                Kind::Timewait(ms) | Kind::Pause(Pause::Ms(ms)) => format!("{ms}ms"),
                Kind::Pause(Pause::Var(v)) => {
                    format!("${}", sc.vars.get(*v).map_or("", String::as_str))
                }
                Kind::Pause(Pause::Default) => format!("{}ms", pause_default),
                Kind::Pause(Pause::Dist(Dist::Fixed(ms))) => format!("{ms:.0}ms"),
                Kind::Pause(Pause::Dist(Dist::Uniform { min, max })) => {
                    format!("U({min:.0},{max:.0})")
                }
                _ => String::new(),
            };
            let len = desc.len().max(9);
            let left = if server {
                format!(
                    "  [{desc:>9}] Pause{}",
                    " ".repeat(23usize.saturating_sub(len))
                )
            } else {
                format!(
                    "       Pause [{desc:>9}]{}",
                    " ".repeat(18usize.saturating_sub(len))
                )
            };
            let left: String = left.chars().take(39).collect();
            line(
                o,
                format_args!(
                    "{}",
                    cut(&format!(
                        "{left}{:<9}                     {:<9}",
                        c.msgs, c.unexpected
                    ))
                ),
            );
        }
        Kind::Nop => match &step.display {
            Some(d) => line(o, format_args!("{}", cut(&format!(" {d}")))),
            None => o.push_str("              [ NOP ]              \n"),
        },
    }
}

/// SIPp 3.6.1 builds each row in an 80-byte buffer: at most 79 characters.
fn cut(s: &str) -> &str {
    match s.char_indices().nth(79) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `HH:MM:SS:uuuuuu` of a duration in ms, SIPp's `msToHHMMSSus` (which keeps whole ms).
fn hhmmssus(ms: u64) -> String {
    let (sec, rest) = (ms / 1000, ms % 1000);
    format!(
        "{:02}:{:02}:{:02}:{:06}",
        sec / 3600,
        (sec % 3600) / 60,
        sec % 60,
        rest * 1000
    )
}

fn stats_screen(o: &mut String, sc: &Scenario, s: &Stats, r: &ScreenRun<'_>) {
    const CROSS: &str =
        "-------------------------+---------------------------+--------------------------\n";
    o.push_str("----------------------------- Statistics Screen ------- [1-9]: Change Screen --\n");
    let txt = |o: &mut String, name: &str, v: &str| {
        line(o, format_args!("  {name:<22.22} | {v:<52.52} "));
    };
    txt(o, "Start Time  ", &timestamp(r.start));
    txt(o, "Last Reset Time", &timestamp(r.now));
    txt(o, "Current Time", &timestamp(r.now));
    o.push_str(CROSS);
    o.push_str("  Counter Name           | Periodic value            | Cumulative value\n");
    o.push_str(CROSS);
    let col = |o: &mut String, name: &str, a: &str, b: &str| {
        line(
            o,
            format_args!("  {name:<22.22} | {a:<25.25} | {b:<24.24} "),
        );
    };
    let zero = hhmmssus(0);
    col(o, "Elapsed Time", &zero, &zero);
    let c = &s.total;
    let created = c.incoming + c.outgoing;
    let ms = r.elapsed.as_millis() as f64;
    let avg = if ms > 0.0 {
        1000.0 * created as f64 / ms
    } else {
        0.0
    };
    line(
        o,
        format_args!(
            "  {:<22.22} | {:8.3} cps              | {avg:8.3} cps             ",
            "Call Rate", 0.0
        ),
    );
    o.push_str(CROSS);
    let two = |o: &mut String, name: &str, v: u64| {
        line(
            o,
            format_args!(
                "  {name:<22.22} | {:>8}                  | {v:>8}                 ",
                0
            ),
        );
    };
    two(o, "Incoming calls created", c.incoming);
    two(o, "Outgoing calls created", c.outgoing);
    line(
        o,
        format_args!(
            "  {:<22.22} |                           | {created:>8}                 ",
            "Total Calls created"
        ),
    );
    line(
        o,
        format_args!(
            "  {:<22.22} | {:>8}                  |                          ",
            "Current Calls", r.open_calls
        ),
    );
    if !c.counters.is_empty() {
        o.push_str(CROSS);
    }
    for (name, v) in sc.counters.iter().zip(&c.counters) {
        two(o, &format!("Counter {name}"), *v);
    }
    o.push_str(CROSS);
    two(o, "Successful call", c.success);
    two(o, "Failed call", c.failed);
    o.push_str(CROSS);
    for name in r.rtd_names {
        col(o, &format!("Response Time {name}"), &zero, &zero);
    }
    col(o, "Call Length", &zero, &zero);
}

fn repartition_screen(o: &mut String, s: &Stats, r: &ScreenRun<'_>) {
    o.push_str("---------------------------- Repartition Screen ------- [1-9]: Change Screen --\n");
    let info = |o: &mut String, t: &str| line(o, format_args!("  {t:<77.77}"));
    let table = |o: &mut String, borders: &[u64], counts: &[u64]| {
        if borders.is_empty() {
            return;
        }
        let mut lo = 0;
        for (i, &b) in borders.iter().enumerate() {
            let n = counts.get(i).copied().unwrap_or(0);
            line(
                o,
                format_args!("    {lo:>10} ms <= n < {b:>10} ms : {n:>10}"),
            );
            lo = b;
        }
        let n = counts.get(borders.len()).copied().unwrap_or(0);
        line(
            o,
            format_args!("    {:>14.14} n >= {lo:>10} ms : {n:>10}", ""),
        );
    };
    match r.rtd_names.first() {
        None => info(o, "  <No repartion defined>"),
        Some(name) => {
            info(o, &format!("Average Response Time Repartition {name}"));
            table(
                o,
                &s.rt_borders,
                s.rt_buckets.first().map_or(&[][..], Vec::as_slice),
            );
            info(o, "Average Call Length Repartition");
            table(o, &s.cl_borders, &s.cl_buckets);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_sipp_formats_them() {
        assert_eq!(hhmmssus(0), "00:00:00:000000");
        assert_eq!(hhmmssus(3_723_004), "01:02:03:004000");
    }
}
