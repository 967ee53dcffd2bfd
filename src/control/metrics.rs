//! Prometheus metrics in the text exposition format: per shard and in total, datagrams
//! received, forwarded, dropped by reason and local replies by code; per destination, requests
//! sent, replies by class, state, active calls and a keepalive latency histogram; for the
//! process, reloads and the table generation. Names follow Prometheus conventions:
//! `sipdispatch_` prefix, `_total` counters, seconds.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::Control;
use crate::dispatch::Destination;
use crate::dispatch::destination::LATENCY_BUCKETS_US;
use crate::engine::counters::{Counters, Dropped, REPLY_CODES, Snapshot};

/// One metric family being written: its header once, then samples.
struct Family<'o> {
    out: &'o mut String,
    name: &'static str,
}

impl<'o> Family<'o> {
    fn new(out: &'o mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Self { out, name }
    }

    fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.out, "{}{suffix}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric.
pub fn render(ctl: &Control) -> String {
    let mut out = String::with_capacity(8192);
    let snaps: Vec<Snapshot> = ctl.counters.iter().map(|c| c.snapshot()).collect();
    let total = snaps.iter().fold(Snapshot::default(), |a, s| a.plus(s));
    let shards: Vec<String> = (0..snaps.len()).map(|i| i.to_string()).collect();

    type Get = fn(&Snapshot) -> u64;
    let simple: [(&'static str, &str, Get); 5] = [
        (
            "sipdispatch_received_datagrams_total",
            "Datagrams received.",
            |s| s.received,
        ),
        (
            "sipdispatch_forwarded_requests_total",
            "Requests forwarded.",
            |s| s.requests_forwarded,
        ),
        (
            "sipdispatch_forwarded_responses_total",
            "Responses forwarded.",
            |s| s.responses_forwarded,
        ),
        (
            "sipdispatch_keepalives_sent_total",
            "Keepalive requests sent to destinations.",
            |s| s.keepalives_sent,
        ),
        (
            "sipdispatch_failovers_total",
            "INVITE tries sent to a next candidate.",
            |s| s.failovers,
        ),
    ];
    for (name, help, get) in simple {
        Family::new(&mut out, name, "counter", help).sample("", &[], get(&total));
    }
    let per_shard: [(&'static str, &str, Get); 3] = [
        (
            "sipdispatch_shard_received_datagrams_total",
            "Datagrams received, per shard.",
            |s| s.received,
        ),
        (
            "sipdispatch_shard_forwarded_requests_total",
            "Requests forwarded, per shard.",
            |s| s.requests_forwarded,
        ),
        (
            "sipdispatch_shard_forwarded_responses_total",
            "Responses forwarded, per shard.",
            |s| s.responses_forwarded,
        ),
    ];
    for (name, help, get) in per_shard {
        let mut f = Family::new(&mut out, name, "counter", help);
        for (i, s) in snaps.iter().enumerate() {
            f.sample("", &[("shard", &shards[i])], get(s));
        }
    }
    let mut f = Family::new(
        &mut out,
        "sipdispatch_dropped_total",
        "counter",
        "Datagrams dropped, by reason.",
    );
    for d in Dropped::ALL {
        f.sample("", &[("reason", d.name())], total.dropped(d));
    }
    // Drops the I/O layer makes before a datagram reaches a shard's core.
    let io: Vec<_> = ctl.io.iter().map(|c| c.snapshot()).collect();
    f.sample(
        "",
        &[("reason", "truncated")],
        io.iter().map(|s| s.truncated).sum::<u64>(),
    );
    f.sample(
        "",
        &[("reason", "handoff_full")],
        io.iter().map(|s| s.handoff_full).sum::<u64>(),
    );
    let mut f = Family::new(
        &mut out,
        "sipdispatch_shard_dropped_total",
        "counter",
        "Datagrams dropped, per shard and reason.",
    );
    for (i, s) in snaps.iter().enumerate() {
        for d in Dropped::ALL {
            f.sample(
                "",
                &[("shard", &shards[i]), ("reason", d.name())],
                s.dropped(d),
            );
        }
    }
    let codes: Vec<String> = REPLY_CODES
        .iter()
        .map(|c| c.to_string())
        .chain(["other".into()])
        .collect();
    let mut f = Family::new(
        &mut out,
        "sipdispatch_local_replies_total",
        "counter",
        "Replies sipdispatch sent itself, by code.",
    );
    for (i, code) in codes.iter().enumerate() {
        f.sample("", &[("code", code)], total.replies[i]);
    }
    let mut f = Family::new(
        &mut out,
        "sipdispatch_shard_local_replies_total",
        "counter",
        "Local replies, per shard and code.",
    );
    for (n, s) in snaps.iter().enumerate() {
        for (i, code) in codes.iter().enumerate() {
            f.sample("", &[("shard", &shards[n]), ("code", code)], s.replies[i]);
        }
    }
    Family::new(
        &mut out,
        "sipdispatch_send_errors_total",
        "counter",
        "Datagrams the kernel refused to send.",
    )
    .sample("", &[], io.iter().map(|s| s.tx_errors).sum::<u64>());
    let mut f = Family::new(
        &mut out,
        "sipdispatch_shard_handoffs_total",
        "counter",
        "Datagrams handed to the shard that owns their Call-ID.",
    );
    for (i, io) in ctl.io.iter().enumerate() {
        f.sample("", &[("shard", &shards[i])], io.snapshot().handoff_out);
    }
    type Gauge = fn(&Counters) -> u64;
    let gauges: [(&'static str, &str, Gauge); 2] = [
        (
            "sipdispatch_shard_tracked_calls",
            "Calls in the shard's Call-ID tracker (live and lingering).",
            |c| c.tracked_calls.load(Relaxed),
        ),
        (
            "sipdispatch_shard_failover_records",
            "INVITE transactions under failover.",
            |c| c.failover_records.load(Relaxed),
        ),
    ];
    for (name, help, get) in gauges {
        let mut f = Family::new(&mut out, name, "gauge", help);
        for (i, c) in ctl.counters.iter().enumerate() {
            f.sample("", &[("shard", &shards[i])], get(c));
        }
    }
    destinations(ctl, &mut out);
    Family::new(
        &mut out,
        "sipdispatch_reloads_total",
        "counter",
        "Successful table reloads.",
    )
    .sample("", &[], ctl.reloads.load(Relaxed));
    Family::new(
        &mut out,
        "sipdispatch_reload_failures_total",
        "counter",
        "Reloads refused (the running table stayed).",
    )
    .sample("", &[], ctl.reload_failures.load(Relaxed));
    Family::new(
        &mut out,
        "sipdispatch_config_generation",
        "gauge",
        "Generation of the destination table (bumped by every change).",
    )
    .sample("", &[], ctl.generation.load(Relaxed));
    out
}

fn destinations(ctl: &Control, out: &mut String) {
    let table = ctl.shared.table.load();
    let dests: Vec<&Destination> = table.destinations().collect();
    let ids: Vec<(String, &str)> = dests
        .iter()
        .map(|d| (d.set.to_string(), d.uri.as_str()))
        .collect();
    let labels = |i: usize| [("set", ids[i].0.as_str()), ("uri", ids[i].1)];
    let mut f = Family::new(
        out,
        "sipdispatch_destination_requests_total",
        "counter",
        "Requests sent to the destination.",
    );
    for (i, d) in dests.iter().enumerate() {
        f.sample("", &labels(i), d.state.requests.load(Relaxed));
    }
    let mut f = Family::new(
        out,
        "sipdispatch_destination_replies_total",
        "counter",
        "Responses from the destination, by class.",
    );
    for (i, d) in dests.iter().enumerate() {
        for (c, n) in d.state.replies.iter().enumerate() {
            let class = format!("{}xx", c + 1);
            let [a, b] = labels(i);
            f.sample("", &[a, b, ("class", &class)], n.load(Relaxed));
        }
    }
    let mut f = Family::new(
        out,
        "sipdispatch_destination_up",
        "gauge",
        "1 if the destination is selectable (not inactive, not disabled).",
    );
    for (i, d) in dests.iter().enumerate() {
        f.sample("", &labels(i), u8::from(d.state.is_up()));
    }
    let mut f = Family::new(
        out,
        "sipdispatch_destination_flags",
        "gauge",
        "Kamailio's flag bits of the destination (1 inactive, 2 trying, 4 disabled, 8 probing).",
    );
    for (i, d) in dests.iter().enumerate() {
        let [a, b] = labels(i);
        let letters = d.state.letters();
        f.sample("", &[a, b, ("state", &letters)], d.state.flags());
    }
    let mut f = Family::new(
        out,
        "sipdispatch_destination_cap_skips_total",
        "counter",
        "Selections that skipped the destination at its maxcps or maxcalls cap.",
    );
    for (i, d) in dests.iter().enumerate() {
        f.sample("", &labels(i), d.state.caps.skipped.load(Relaxed));
    }
    let mut f = Family::new(
        out,
        "sipdispatch_destination_active_calls",
        "gauge",
        "Calls counted in the destination's load (algorithm 10, or a maxcalls cap).",
    );
    for (i, d) in dests.iter().enumerate() {
        f.sample("", &labels(i), d.state.load());
    }
    let mut f = Family::new(
        out,
        "sipdispatch_destination_keepalive_latency_seconds",
        "histogram",
        "Round-trip time of keepalives answered by the destination.",
    );
    let bounds: Vec<String> = LATENCY_BUCKETS_US
        .iter()
        .map(|us| format!("{}", *us as f64 / 1e6))
        .collect();
    for (i, d) in dests.iter().enumerate() {
        let v = &d.state.latency;
        let [a, b] = labels(i);
        let mut cum = 0;
        for (k, bound) in bounds.iter().enumerate() {
            cum += v.buckets[k].load(Relaxed);
            f.sample("_bucket", &[a, b, ("le", bound)], cum);
        }
        cum += v.buckets[LATENCY_BUCKETS_US.len()].load(Relaxed);
        f.sample("_bucket", &[a, b, ("le", "+Inf")], cum);
        f.sample("_sum", &[a, b], v.sum_us.load(Relaxed) as f64 / 1e6);
        f.sample("_count", &[a, b], v.count.load(Relaxed));
    }
}
