//! The keepalive prober: every `ping_interval` it writes a keepalive request (OPTIONS by
//! default) to each destination the probing mode selects, matches replies to the exact
//! destination record by an id in the Via branch, counts a missing reply after `ping_timeout`
//! as a failure, and applies the state machine and latency statistics. Sans I/O: it writes into
//! an [`Outbox`], is fed replies the data path recognises as its own, and is driven by a
//! millisecond clock. It lives on one shard, and chooses Call-IDs that shard owns so the
//! replies come back to it.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::latency::LatencyStats;
use super::state::{AcceptCodes, Machine, should_ping};
use crate::dispatch::tracker::shard_of;
use crate::dispatch::{DestId, DestState, Destination, Table};
use crate::engine::Outbox;
use crate::sip::proxy::Identity;
use crate::sip::{Message, StartLine};

/// What every keepalive branch starts with; the slot and sequence number follow.
const BRANCH_PREFIX: &[u8] = b"z9hG4bK-sdping-";

/// How the prober behaves (the `[health]` section of the config).
#[derive(Clone, Debug)]
pub struct ProbeSettings {
    /// Milliseconds between keepalive rounds; 0 turns keepalives off.
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub method: String,
    /// From URI of keepalives; a destination's `ping_from` attribute overrides it.
    pub from: String,
    pub machine: Machine,
    pub accept: AcceptCodes,
    /// Whether replies feed latency statistics.
    pub latency_stats: bool,
    /// EWMA weight of a new sample in the estimate (Kamailio's alpha / 1000).
    pub alpha: f64,
}

/// A destination's state changed because of a keepalive result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub dest: DestId,
    pub set: u32,
    pub uri: String,
    pub old: u8,
    pub new: u8,
    /// The reply code, or 408 for a keepalive that got none in time.
    pub code: u16,
    /// Whether the destination stopped (`Some(false)`) or started (`Some(true)`) being
    /// selectable; `None` when only the trying/probing bits moved.
    pub up: Option<bool>,
    pub cause: Cause,
}

/// What changed a destination's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Keepalive,
    /// A try of a call failed and the route's failover policy marks its destination.
    Failover,
}

impl Change {
    pub fn new(d: &Destination, old: u8, new: u8, code: u16, cause: Cause) -> Self {
        let usable = DestState::up_flags;
        Self {
            dest: d.id,
            set: d.set,
            uri: d.uri.clone(),
            old,
            new,
            code,
            up: (usable(old) != usable(new)).then_some(usable(new)),
            cause,
        }
    }
}

/// What the prober remembers per destination record.
#[derive(Clone, Debug, Default)]
pub struct DestHealth {
    pub count: u32,
    pub stats: LatencyStats,
    pub last_code: u16,
    pending: Option<usize>,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    dest: DestId,
    seq: u32,
    sent_ms: u64,
}

/// The keepalive prober of one shard.
pub struct Prober {
    settings: ProbeSettings,
    /// Global keepalive switch (Kamailio's `dispatcher.ping_active`).
    pub active: Arc<AtomicBool>,
    shard: usize,
    nshards: usize,
    next_round_ms: u64,
    seq: u32,
    slots: Vec<Option<Pending>>,
    health: HashMap<DestId, DestHealth>,
    changes: Vec<Change>,
    scratch: Vec<u8>,
}

impl Prober {
    /// A prober running on `shard` of `nshards`.
    pub fn new(settings: ProbeSettings, shard: usize, nshards: usize) -> Self {
        Self {
            settings,
            active: Arc::new(AtomicBool::new(true)),
            shard,
            nshards: nshards.max(1),
            next_round_ms: 0,
            seq: 0,
            slots: Vec::new(),
            health: HashMap::new(),
            changes: Vec::new(),
            scratch: Vec::with_capacity(1024),
        }
    }

    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    /// What the prober knows of a destination.
    pub fn health(&self, id: DestId) -> Option<&DestHealth> {
        self.health.get(&id)
    }

    /// State changes since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Seeds latency figures from `latency` attributes for destinations seen for the first
    /// time; with `keep_stats` false, also forgets the figures of every other one (a reload
    /// that does not retain them).
    pub fn adopt(&mut self, table: &Table, keep_stats: bool) {
        self.health.retain(|id, _| table.dest(*id).is_some());
        for d in table.destinations() {
            let h = self.health.entry(d.id).or_default();
            if !keep_stats || h.stats.count == 0 {
                h.stats = d
                    .attrs
                    .latency
                    .map_or_else(LatencyStats::default, LatencyStats::seeded);
                publish(d, &h.stats);
            }
        }
        let want = (table.destinations().count() * 2).max(16);
        if self.slots.len() < want {
            self.slots.resize(want, None);
        }
    }

    /// Periodic work: time out keepalives that got no reply and, when a round is due, send one
    /// to every destination the probing mode selects that has none outstanding.
    pub fn poll(&mut self, now_ms: u64, table: &Table, me: &Identity, out: &mut impl Outbox) {
        if self.settings.interval_ms == 0 {
            return;
        }
        for slot in 0..self.slots.len() {
            if let Some(p) = self.slots[slot]
                && now_ms >= p.sent_ms + self.settings.timeout_ms
            {
                self.slots[slot] = None;
                if let Some(d) = table.dest(p.dest) {
                    self.result(table, d, 408, None);
                }
            }
        }
        if now_ms < self.next_round_ms || !self.active.load(Relaxed) {
            return;
        }
        self.next_round_ms = now_ms + self.settings.interval_ms;
        for d in table.destinations() {
            let Some(to) = d.keepalive_to() else {
                continue;
            };
            let pending = self.health.get(&d.id).is_some_and(|h| h.pending.is_some());
            if pending || !should_ping(d.state.flags(), self.settings.machine.mode) {
                continue;
            }
            let Some(slot) = self.slots.iter().position(Option::is_none) else {
                break;
            };
            self.seq = self.seq.wrapping_add(1);
            let p = Pending {
                dest: d.id,
                seq: self.seq,
                sent_ms: now_ms,
            };
            let nonce = self.owned(d, p.seq, &me.host);
            if !write_ping(&mut self.scratch, &self.settings, d, me, slot, p.seq, nonce) {
                continue;
            }
            let Some(buf) = out.buffer() else { break };
            if buf.len() < self.scratch.len() {
                continue;
            }
            buf[..self.scratch.len()].copy_from_slice(&self.scratch);
            out.commit(self.scratch.len(), to);
            self.slots[slot] = Some(p);
            self.health.entry(d.id).or_default().pending = Some(slot);
        }
    }

    /// A Call-ID nonce that makes this shard the owner of the keepalive's Call-ID.
    fn owned(&self, d: &Destination, seq: u32, host: &str) -> u32 {
        (0..)
            .find(|&nonce| {
                let id = format!("{}@{host}", call_id(d, seq, nonce));
                shard_of(id.as_bytes(), self.nshards) == self.shard
            })
            .unwrap_or(0)
    }

    /// Offers a response addressed to this proxy; `true` if it answered one of our
    /// keepalives (it is then consumed here).
    pub fn on_reply(&mut self, now_ms: u64, msg: &Message<'_>, table: &Table) -> bool {
        let StartLine::Response { code, .. } = msg.start else {
            return false;
        };
        let Some((slot, seq)) = msg.via.branch.and_then(|b| parse_branch(b.of(msg.buf))) else {
            return false;
        };
        if code < 200 {
            return true;
        }
        let Some(p) = self
            .slots
            .get(slot)
            .copied()
            .flatten()
            .filter(|p| p.seq == seq)
        else {
            // A late reply to a keepalive already counted as timed out.
            return true;
        };
        self.slots[slot] = None;
        if let Some(d) = table.dest(p.dest) {
            let rtt = now_ms.saturating_sub(p.sent_ms) as f64;
            self.result(table, d, code, Some(rtt));
        }
        true
    }

    fn result(&mut self, table: &Table, d: &Destination, code: u16, rtt_ms: Option<f64>) {
        let s = &self.settings;
        let h = self.health.entry(d.id).or_default();
        h.pending = None;
        h.last_code = code;
        if s.latency_stats {
            match rtt_ms {
                Some(ms) if code != 408 => {
                    h.stats.add(ms, s.alpha);
                    d.state.latency.observe((ms * 1000.0) as u64);
                }
                _ => h.stats.timeout(),
            }
            publish(d, &h.stats);
            if d.attrs.cc {
                self.congestion(table, d);
            }
        }
        let s = &self.settings;
        let h = self.health.entry(d.id).or_default();
        let ok = s.accept.accepts(code);
        let old = d.state.flags();
        let Some(next) = s.machine.on_result(old, h.count, ok) else {
            return;
        };
        h.count = next.count;
        if next.flags == old {
            return;
        }
        // Another writer (the management API) may have changed the flags meanwhile; theirs wins.
        if d.state
            .flags
            .compare_exchange(old, next.flags, Relaxed, Relaxed)
            .is_err()
        {
            return;
        }
        self.changes
            .push(Change::new(d, old, next.flags, code, Cause::Keepalive));
    }
}

impl Prober {
    /// Kamailio's congestion control (`cc=1`): the destination's relative weight becomes its
    /// `weight` less how many ms its latency estimate runs above its mean; when every
    /// destination of the set is under congestion control and all are congested, each gets a
    /// weight inversely proportional to its congestion instead.
    fn congestion(&self, table: &Table, d: &Destination) {
        let congestion = |e: &Destination| {
            self.health
                .get(&e.id)
                .map_or(0, |h| h.stats.congestion_ms())
        };
        let Some(set) = table.set(d.set).filter(|_| d.attrs.weight > 0) else {
            return;
        };
        let all_cc = set.dests.iter().all(|e| e.attrs.cc && e.attrs.weight > 0);
        let total: u64 = set.dests.iter().map(|e| u64::from(congestion(e))).sum();
        if all_cc && set.dests.iter().all(|e| congestion(e) > 0) {
            for e in &set.dests {
                let w = (total << 4) / u64::from(congestion(e)).max(1);
                e.state
                    .rweight
                    .store(w.min(u64::from(u32::MAX)) as u32, Relaxed);
            }
        } else {
            let w = d.attrs.weight.saturating_sub(congestion(d));
            d.state.rweight.store(w, Relaxed);
        }
    }
}

/// Makes the latency figures visible to the algorithms (µs, as the destination state keeps
/// them).
fn publish(d: &Destination, s: &LatencyStats) {
    let us = |ms: f64| (ms * 1000.0) as u64;
    d.state.latency_est_us.store(us(s.est), Relaxed);
    d.state.latency_avg_us.store(us(s.avg), Relaxed);
    let v = &d.state.latency;
    v.std_us.store(us(s.std()), Relaxed);
    v.max_us.store(us(s.max), Relaxed);
    v.timeouts.store(s.timeouts, Relaxed);
}

fn call_id(d: &Destination, seq: u32, nonce: u32) -> String {
    format!("sdping-{}-{seq}-{nonce}", d.id.0)
}

/// The slot and sequence number of one of our keepalive branches.
fn parse_branch(b: &[u8]) -> Option<(usize, u32)> {
    let rest = std::str::from_utf8(b.strip_prefix(BRANCH_PREFIX)?).ok()?;
    let (slot, seq) = rest.split_once('-')?;
    Some((slot.parse().ok()?, seq.parse().ok()?))
}

/// Writes one keepalive request into `buf`. The From tag carries the destination's id too, so
/// a reply names its record even to someone reading a trace.
fn write_ping(
    buf: &mut Vec<u8>,
    s: &ProbeSettings,
    d: &Destination,
    me: &Identity,
    slot: usize,
    seq: u32,
    nonce: u32,
) -> bool {
    buf.clear();
    let from = d.attrs.ping_from.as_deref().unwrap_or(&s.from);
    let host = &me.host;
    let m = &s.method;
    let uri = &d.uri;
    let prefix = std::str::from_utf8(BRANCH_PREFIX).unwrap_or_default();
    write!(
        buf,
        "{m} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch={prefix}{slot}-{seq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <{from}>;tag={id}-{seq}\r\nTo: <{uri}>\r\n\
         Call-ID: {call_id}@{host}\r\nCSeq: {seq} {m}\r\nContent-Length: 0\r\n\r\n",
        port = me.port,
        id = d.id.0,
        call_id = call_id(d, seq, nonce),
    )
    .is_ok()
}

#[cfg(test)]
#[path = "prober_tests.rs"]
mod tests;
