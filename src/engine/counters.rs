//! Per-shard message counters: received, forwarded, local replies by code, drops by reason.
//! One writer (the shard) and any number of readers (the summary line, later the metrics
//! endpoint); plain relaxed atomics on a cache-line-aligned struct, never shared between
//! writers.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Dropped {
    /// The scanner refused it and no reply could or may be sent (responses, ACKs, no Via).
    Malformed,
    /// An ACK the rules would have answered.
    AckNotAnswered,
    /// A response whose top Via is not ours.
    ResponseNotOurs,
    /// A response whose next Via is malformed, not an IP address, or a broadcast address.
    ResponseUnroutable,
    /// The outgoing datagram did not fit the send buffer.
    Overflow,
    /// The send batch was full.
    TxFull,
    /// A request whose Route names a host that is not an IP address.
    RouteUnresolvable,
    /// The destination has no resolved address.
    DestinationUnresolved,
    /// From a source that is neither an allowed upstream nor a destination.
    Untrusted,
    /// An initial request from a destination (only allowed upstreams may start calls).
    UntrustedInitial,
    /// From a source the flood limiter has blocked.
    Flood,
}

impl Dropped {
    pub const ALL: [Dropped; 11] = [
        Dropped::Malformed,
        Dropped::AckNotAnswered,
        Dropped::ResponseNotOurs,
        Dropped::ResponseUnroutable,
        Dropped::Overflow,
        Dropped::TxFull,
        Dropped::RouteUnresolvable,
        Dropped::DestinationUnresolved,
        Dropped::Untrusted,
        Dropped::UntrustedInitial,
        Dropped::Flood,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::AckNotAnswered => "ack_not_answered",
            Dropped::ResponseNotOurs => "response_not_ours",
            Dropped::ResponseUnroutable => "response_unroutable",
            Dropped::Overflow => "overflow",
            Dropped::TxFull => "tx_full",
            Dropped::RouteUnresolvable => "route_unresolvable",
            Dropped::DestinationUnresolved => "destination_unresolved",
            Dropped::Untrusted => "untrusted",
            Dropped::UntrustedInitial => "untrusted_initial",
            Dropped::Flood => "flood",
        }
    }
}

/// Reply codes counted individually; anything else counts as `other`.
pub const REPLY_CODES: [u16; 12] = [200, 400, 403, 404, 408, 416, 420, 482, 483, 500, 503, 505];

/// The counters of one shard.
#[repr(align(64))]
#[derive(Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub keepalives: AtomicU64,
    pub requests_forwarded: AtomicU64,
    pub responses_forwarded: AtomicU64,
    /// Responses addressed to the proxy itself (e.g. keepalive replies), consumed.
    pub responses_consumed: AtomicU64,
    /// Initial INVITEs that could not be tracked because the tracker was full.
    pub tracker_full: AtomicU64,
    /// Keepalives this shard's prober sent, and the destination state changes they caused.
    pub keepalives_sent: AtomicU64,
    pub health_changes: AtomicU64,
    /// Tries sent to a next candidate, and INVITEs that could not get a failover record.
    pub failovers: AtomicU64,
    pub failover_untracked: AtomicU64,
    /// Sources the flood limiter blocked.
    pub flood_blocks: AtomicU64,
    /// Gauges the shard refreshes every tick: calls in its tracker, failover records open.
    pub tracked_calls: AtomicU64,
    pub failover_records: AtomicU64,
    replies: [AtomicU64; REPLY_CODES.len() + 1],
    dropped: [AtomicU64; Dropped::ALL.len()],
}

impl Counters {
    #[inline]
    pub fn inc(c: &AtomicU64) {
        // Single writer: a load and a store are enough and cheaper than a locked add.
        c.store(c.load(Relaxed) + 1, Relaxed);
    }

    #[inline]
    pub fn reply(&self, code: u16) {
        let i = REPLY_CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(REPLY_CODES.len());
        Self::inc(&self.replies[i]);
    }

    #[inline]
    pub fn dropped(&self, why: Dropped) {
        Self::inc(&self.dropped[why as usize]);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            received: self.received.load(Relaxed),
            keepalives: self.keepalives.load(Relaxed),
            requests_forwarded: self.requests_forwarded.load(Relaxed),
            responses_forwarded: self.responses_forwarded.load(Relaxed),
            responses_consumed: self.responses_consumed.load(Relaxed),
            tracker_full: self.tracker_full.load(Relaxed),
            keepalives_sent: self.keepalives_sent.load(Relaxed),
            health_changes: self.health_changes.load(Relaxed),
            failovers: self.failovers.load(Relaxed),
            failover_untracked: self.failover_untracked.load(Relaxed),
            flood_blocks: self.flood_blocks.load(Relaxed),
            replies: std::array::from_fn(|i| self.replies[i].load(Relaxed)),
            dropped: std::array::from_fn(|i| self.dropped[i].load(Relaxed)),
        }
    }
}

/// A copy of one shard's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub received: u64,
    pub keepalives: u64,
    pub requests_forwarded: u64,
    pub responses_forwarded: u64,
    pub responses_consumed: u64,
    pub tracker_full: u64,
    pub keepalives_sent: u64,
    pub health_changes: u64,
    pub failovers: u64,
    pub failover_untracked: u64,
    pub flood_blocks: u64,
    /// By [`REPLY_CODES`] index, then `other`.
    pub replies: [u64; REPLY_CODES.len() + 1],
    /// By [`Drop`] discriminant.
    pub dropped: [u64; Dropped::ALL.len()],
}

impl Snapshot {
    pub fn forwarded(&self) -> u64 {
        self.requests_forwarded + self.responses_forwarded
    }

    pub fn replies_total(&self) -> u64 {
        self.replies.iter().sum()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn dropped(&self, why: Dropped) -> u64 {
        self.dropped[why as usize]
    }

    pub fn replies_with(&self, code: u16) -> u64 {
        let i = REPLY_CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(REPLY_CODES.len());
        self.replies[i]
    }

    /// Field-wise sum (for totals over shards).
    pub fn plus(&self, o: &Snapshot) -> Snapshot {
        Snapshot {
            received: self.received + o.received,
            keepalives: self.keepalives + o.keepalives,
            requests_forwarded: self.requests_forwarded + o.requests_forwarded,
            responses_forwarded: self.responses_forwarded + o.responses_forwarded,
            responses_consumed: self.responses_consumed + o.responses_consumed,
            tracker_full: self.tracker_full + o.tracker_full,
            keepalives_sent: self.keepalives_sent + o.keepalives_sent,
            health_changes: self.health_changes + o.health_changes,
            failovers: self.failovers + o.failovers,
            failover_untracked: self.failover_untracked + o.failover_untracked,
            flood_blocks: self.flood_blocks + o.flood_blocks,
            replies: std::array::from_fn(|i| self.replies[i] + o.replies[i]),
            dropped: std::array::from_fn(|i| self.dropped[i] + o.dropped[i]),
        }
    }

    /// Field-wise difference (for per-interval rates).
    pub fn since(&self, before: &Snapshot) -> Snapshot {
        Snapshot {
            received: self.received - before.received,
            keepalives: self.keepalives - before.keepalives,
            requests_forwarded: self.requests_forwarded - before.requests_forwarded,
            responses_forwarded: self.responses_forwarded - before.responses_forwarded,
            responses_consumed: self.responses_consumed - before.responses_consumed,
            tracker_full: self.tracker_full - before.tracker_full,
            keepalives_sent: self.keepalives_sent - before.keepalives_sent,
            health_changes: self.health_changes - before.health_changes,
            failovers: self.failovers - before.failovers,
            failover_untracked: self.failover_untracked - before.failover_untracked,
            flood_blocks: self.flood_blocks - before.flood_blocks,
            replies: std::array::from_fn(|i| self.replies[i] - before.replies[i]),
            dropped: std::array::from_fn(|i| self.dropped[i] - before.dropped[i]),
        }
    }
}

/// The summary line: totals, then non-zero replies and drops by name.
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx={} fwd_req={} fwd_resp={} keepalive={} replies={} dropped={}",
            self.received,
            self.requests_forwarded,
            self.responses_forwarded,
            self.keepalives,
            self.replies_total(),
            self.dropped_total()
        )?;
        for (i, n) in self.replies.iter().enumerate().filter(|(_, n)| **n > 0) {
            match REPLY_CODES.get(i) {
                Some(code) => write!(f, " reply_{code}={n}")?,
                None => write!(f, " reply_other={n}")?,
            }
        }
        if self.keepalives_sent > 0 {
            write!(
                f,
                " pings={} health_changes={}",
                self.keepalives_sent, self.health_changes
            )?;
        }
        if self.failovers + self.failover_untracked > 0 {
            write!(
                f,
                " failovers={} failover_untracked={}",
                self.failovers, self.failover_untracked
            )?;
        }
        for d in Dropped::ALL {
            let n = self.dropped(d);
            if n > 0 {
                write!(f, " drop_{}={n}", d.name())?;
            }
        }
        if self.responses_consumed > 0 {
            write!(f, " resp_consumed={}", self.responses_consumed)?;
        }
        if self.tracker_full > 0 {
            write!(f, " tracker_full={}", self.tracker_full)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_formats() {
        let c = Counters::default();
        Counters::inc(&c.received);
        Counters::inc(&c.received);
        c.reply(503);
        c.reply(299);
        c.dropped(Dropped::TxFull);
        let s = c.snapshot();
        assert_eq!(s.received, 2);
        assert_eq!(s.replies_with(503), 1);
        assert_eq!(s.replies_total(), 2);
        assert_eq!(s.dropped(Dropped::TxFull), 1);
        let line = s.to_string();
        assert!(
            line.contains("rx=2") && line.contains("reply_503=1") && line.contains("reply_other=1")
        );
        assert!(line.contains("drop_tx_full=1"), "{line}");
        assert!(!line.contains("tracker_full"), "{line}");
        Counters::inc(&c.tracker_full);
        assert!(c.snapshot().to_string().contains(" tracker_full=1"));
        assert_eq!(s.since(&s), Snapshot::default());
    }
}
