//! sipload's own reports, beside SIPp's files: the live screen (redrawn every `-f` on a
//! terminal) and the end-of-run JSON summary (`-summary FILE`), both with microsecond
//! response-time and call-length percentiles from the HDR histograms, the kernel's drops, and
//! the counters a user watches.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::stats::{FAILURES, Stats};

/// Values of the run that are not in [`Stats`].
pub struct RunInfo<'a> {
    pub scenario: &'a str,
    pub rtd_names: &'a [String],
    pub elapsed: Duration,
    pub target_rate: f64,
    pub open_calls: usize,
    /// Calls created per second since the previous screen.
    pub recent_rate: f64,
    pub socket_drops: Option<u64>,
    pub rcvbuf_errors: Option<u64>,
}

const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9)];

fn hist_json(h: &Histogram<u64>) -> String {
    let mut s = format!("{{\"count\":{}", h.len());
    if !h.is_empty() {
        let _ = write!(s, ",\"min\":{},\"mean\":{:.1}", h.min(), h.mean());
        for (name, q) in PERCENTILES {
            let _ = write!(s, ",\"{name}\":{}", h.value_at_percentile(q));
        }
        let _ = write!(s, ",\"max\":{}", h.max());
    }
    s.push('}');
    s
}

fn json_str(v: &str) -> String {
    let mut s = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn opt(v: Option<u64>) -> String {
    v.map_or("null".into(), |n| n.to_string())
}

/// The `-summary` file: one JSON object.
pub fn summary_json(s: &Stats, r: &RunInfo<'_>) -> String {
    let c = &s.total;
    let created = c.incoming + c.outgoing;
    let secs = r.elapsed.as_secs_f64();
    let mut out = format!(
        "{{\"scenario\":{},\"elapsed_s\":{secs:.3},\"target_rate\":{},\"calls\":{{\"created\":{created},\"successful\":{},\"failed\":{},\"rate_per_s\":{:.1}}}",
        json_str(r.scenario),
        r.target_rate,
        c.success,
        c.failed,
        if secs > 0.0 {
            created as f64 / secs
        } else {
            0.0
        }
    );
    let failures: Vec<String> = c
        .failures
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| format!("{}:{n}", json_str(FAILURES[i])))
        .collect();
    let _ = write!(
        out,
        ",\"failures\":{{{}}},\"retransmissions\":{},\"out_of_call\":{},\"dead_call\":{},\"auto_answered\":{},\"warnings\":{}",
        failures.join(","),
        c.retransmissions,
        c.out_of_call,
        c.dead_call,
        c.auto_answered,
        c.warnings
    );
    let rtds: Vec<String> = r
        .rtd_names
        .iter()
        .zip(&s.rt_hist)
        .map(|(n, h)| format!("{}:{}", json_str(n), hist_json(h)))
        .collect();
    let _ = write!(
        out,
        ",\"response_time_us\":{{{}}},\"call_length_us\":{},\"kernel\":{{\"socket_drops\":{},\"rcvbuf_errors\":{}}}}}",
        rtds.join(","),
        hist_json(&s.cl_hist),
        opt(r.socket_drops),
        opt(r.rcvbuf_errors)
    );
    out
}

fn us(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "-".into()
    } else {
        format!("{}", h.value_at_percentile(q))
    }
}

/// The live screen: one page, drawn from the top of the terminal.
pub fn screen(s: &Stats, r: &RunInfo<'_>) -> String {
    let c = &s.total;
    let created = c.incoming + c.outgoing;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let mut o = String::from("\x1b[H\x1b[2J");
    let _ = writeln!(
        o,
        "sipload  {}  {:.1} s   target {} calls/s   now {:.1} calls/s   average {:.1} calls/s",
        r.scenario,
        secs,
        super::stats::g(r.target_rate),
        r.recent_rate,
        created as f64 / secs
    );
    let _ = writeln!(
        o,
        "calls    created {created}   open {}   successful {}   failed {}",
        r.open_calls, c.success, c.failed
    );
    let _ = writeln!(
        o,
        "messages retransmissions {}   out-of-call {}   dead-call {}   warnings {}",
        c.retransmissions, c.out_of_call, c.dead_call, c.warnings
    );
    for (i, n) in c.failures.iter().enumerate().filter(|(_, n)| **n > 0) {
        let _ = writeln!(o, "         {} {n}", FAILURES[i]);
    }
    let _ = writeln!(
        o,
        "latency (us)        p50      p90      p99    p99.9      max"
    );
    let mut row = |name: &str, h: &Histogram<u64>| {
        let _ = writeln!(
            o,
            "  {name:<14} {:>8} {:>8} {:>8} {:>8} {:>8}",
            us(h, 50.0),
            us(h, 90.0),
            us(h, 99.0),
            us(h, 99.9),
            if h.is_empty() {
                "-".into()
            } else {
                h.max().to_string()
            }
        );
    };
    for (n, h) in r.rtd_names.iter().zip(&s.rt_hist) {
        row(&format!("rtd {n}"), h);
    }
    row("call length", &s.cl_hist);
    let _ = writeln!(
        o,
        "kernel   socket drops {}   host RcvbufErrors since start {}",
        opt(r.socket_drops),
        opt(r.rcvbuf_errors)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_microseconds() {
        let mut s = Stats::new(1, 0, vec![10], vec![10]);
        for ms in 1..=100 {
            s.rtd(0, Duration::from_micros(ms * 100));
        }
        s.call_ended(Duration::from_millis(3), None);
        let names = ["1".to_owned()];
        let r = RunInfo {
            scenario: "uac \"x\"",
            rtd_names: &names,
            elapsed: Duration::from_secs(2),
            target_rate: 10.0,
            open_calls: 0,
            recent_rate: 0.0,
            socket_drops: Some(0),
            rcvbuf_errors: None,
        };
        let j = summary_json(&s, &r);
        assert!(
            j.starts_with("{\"scenario\":\"uac \\\"x\\\"\",\"elapsed_s\":2.000"),
            "{j}"
        );
        assert!(j.contains("\"1\":{\"count\":100,\"min\":100,"), "{j}");
        assert!(j.contains("\"p50\":5003,\"p90\":9007,\"p99\":9903,"), "{j}");
        assert!(
            j.contains("\"call_length_us\":{\"count\":1,\"min\":3000,"),
            "{j}"
        );
        assert!(
            j.ends_with("\"kernel\":{\"socket_drops\":0,\"rcvbuf_errors\":null}}"),
            "{j}"
        );
        let sc = screen(&s, &r);
        assert!(sc.contains("rtd 1"), "{sc}");
        assert!(sc.contains("    5003     9007     9903"), "{sc}");
    }
}
