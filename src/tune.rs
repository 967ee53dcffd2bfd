//! `sipdispatch tune-check`: compares the running kernel's settings with `tuning/sysctl.conf`
//! (compiled into the binary) and reports a few facts that matter for the data plane. Reads
//! `/proc` only; changes nothing.

use std::fmt::Write as _;

/// The recommendations, as shipped in `tuning/sysctl.conf`.
pub const RECOMMENDED: &str = include_str!("../tuning/sysctl.conf");

/// How a current value compares with the recommendation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Lower than recommended (for limits and sizes, more is fine).
    Low,
    /// Different from a setting that should match exactly (e.g. busy polling off).
    Differs,
    Unreadable,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub key: String,
    pub current: Option<String>,
    pub recommended: String,
    pub status: Status,
}

/// Parses `key = value` lines (`#` comments) of a sysctl file.
pub fn parse_sysctl(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_owned(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

/// Compares one value: numbers (or vectors of numbers) must be at least the recommendation,
/// except busy-polling knobs, which must match (0 means "off, on purpose").
pub fn compare(key: &str, current: &str, recommended: &str) -> Status {
    let nums =
        |s: &str| -> Option<Vec<u64>> { s.split_whitespace().map(|x| x.parse().ok()).collect() };
    let exact = key.contains("busy_");
    match (nums(current), nums(recommended)) {
        (Some(c), Some(r)) if c.len() == r.len() => {
            if exact {
                if c == r { Status::Ok } else { Status::Differs }
            } else if c.iter().zip(&r).all(|(c, r)| c >= r) {
                Status::Ok
            } else {
                Status::Low
            }
        }
        _ if current == recommended => Status::Ok,
        _ => Status::Differs,
    }
}

/// Reads the running kernel's value of every recommended setting.
pub fn check() -> Vec<Check> {
    parse_sysctl(RECOMMENDED)
        .into_iter()
        .map(|(key, recommended)| {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            let current = std::fs::read_to_string(path)
                .ok()
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "));
            let status = current
                .as_deref()
                .map_or(Status::Unreadable, |c| compare(&key, c, &recommended));
            Check {
                key,
                current,
                recommended,
                status,
            }
        })
        .collect()
}

/// The report `tune-check` prints.
pub fn report() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:>28} {:>28}  status",
        "setting", "current", "recommended"
    );
    for c in check() {
        let _ = writeln!(
            out,
            "{:<28} {:>28} {:>28}  {}",
            c.key,
            c.current.as_deref().unwrap_or("-"),
            c.recommended,
            match c.status {
                Status::Ok => "ok",
                Status::Low => "LOW",
                Status::Differs => "differs",
                Status::Unreadable => "unreadable",
            }
        );
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(out, "\ncpus available: {cpus}");
    let uring = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| match s.trim() {
            "0" => "enabled".to_owned(),
            v => format!("disabled ({v}): the mmsg backend will be used"),
        })
        .unwrap_or_else(|_| "unknown (no /proc/sys/kernel/io_uring_disabled)".into());
    let _ = writeln!(out, "io_uring: {uring}");
    if let Some(e) = udp_rcvbuf_errors() {
        let _ = writeln!(out, "UDP RcvbufErrors since boot: {e}");
    }
    let _ = writeln!(out, "see tuning/README.md for pinning shards and NIC IRQs");
    out
}

/// `RcvbufErrors` from the `Udp:` lines of /proc/net/snmp.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let idx = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_parses() {
        let kv = parse_sysctl(RECOMMENDED);
        assert!(kv.iter().any(|(k, _)| k == "net.core.rmem_max"));
        assert!(
            kv.iter()
                .any(|(k, v)| k == "net.ipv4.udp_mem" && v.split(' ').count() == 3)
        );
    }

    #[test]
    fn comparisons() {
        assert_eq!(
            compare("net.core.rmem_max", "212992", "16777216"),
            Status::Low
        );
        assert_eq!(
            compare("net.core.rmem_max", "33554432", "16777216"),
            Status::Ok
        );
        assert_eq!(compare("net.core.busy_poll", "50", "0"), Status::Differs);
        assert_eq!(
            compare("net.ipv4.udp_mem", "1 2 3", "1048576 1572864 2097152"),
            Status::Low
        );
    }

    #[test]
    fn report_lists_every_setting() {
        let r = report();
        for (k, _) in parse_sysctl(RECOMMENDED) {
            assert!(r.contains(&k), "{k}");
        }
    }
}
