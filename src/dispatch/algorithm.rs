//! The selection algorithms: Kamailio's 0–15 and 64 with Kamailio's semantics (and OpenSIPS's
//! numbering as an option), each filling the chosen destination and the ordered failover list
//! into a caller-owned [`Candidates`]. Shared counters are atomics in the [`Set`]; nothing here
//! locks or allocates. See `docs/algorithms.md` for where this matches Kamailio and where it
//! deliberately differs.
#![forbid(unsafe_code)]

use serde::Deserialize;

use super::Keys;
use super::hash::{kamailio_hash, mix64, uri_hash};
use super::key::{KeyTemplate, MAX_KEY};
use super::table::Set;
use super::weights::{pick_weighted, rendezvous};

/// Kamailio's algorithms by meaning; OpenSIPS-only behaviours get their own variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    HashCallId,
    HashFrom,
    HashTo,
    HashRuri,
    RoundRobin,
    HashAuth,
    Random,
    HashKey,
    Serial,
    Weight,
    CallLoad,
    RelativeWeight,
    Parallel,
    Latency,
    RrOrSerial,
    PriorityWeight,
    RoundRobinOc,
    /// OpenSIPS 4: stay on a destination for `weight` picks, then move on.
    WeightedRoundRobin,
    /// OpenSIPS 6: random, proportional to `weight`.
    WeightedRandom,
}

/// How algorithm numbers are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Numbering {
    #[default]
    Kamailio,
    Opensips,
}

/// How hash algorithms map a hash to a destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashMode {
    /// `hash % n`, walking to the next active one (Kamailio, bit-exact).
    #[default]
    Kamailio,
    /// Weighted highest-random-weight: only a failed destination's calls move.
    Rendezvous,
    /// OpenSIPS: weighted by running sums, re-hashed over the active weights when the pick is
    /// down (the default with `numbering = "opensips"`).
    Opensips,
}

impl HashMode {
    /// The name a config file gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kamailio => "kamailio",
            Self::Rendezvous => "rendezvous",
            Self::Opensips => "opensips",
        }
    }
}

/// An algorithm number or name the configuration used that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmError {
    #[error("unknown algorithm {0}")]
    UnknownNumber(u32),
    #[error("unknown algorithm `{0}`")]
    UnknownName(String),
    #[error("OpenSIPS algorithm {0} ({1}) needs OpenSIPS's script engine and is not supported")]
    Unsupported(u32, &'static str),
}

const NAMES: [(&str, Algorithm); 17] = [
    ("hash-callid", Algorithm::HashCallId),
    ("hash-from", Algorithm::HashFrom),
    ("hash-to", Algorithm::HashTo),
    ("hash-ruri", Algorithm::HashRuri),
    ("round-robin", Algorithm::RoundRobin),
    ("hash-auth", Algorithm::HashAuth),
    ("random", Algorithm::Random),
    ("hash-key", Algorithm::HashKey),
    ("serial", Algorithm::Serial),
    ("weight", Algorithm::Weight),
    ("call-load", Algorithm::CallLoad),
    ("relative-weight", Algorithm::RelativeWeight),
    ("parallel", Algorithm::Parallel),
    ("latency", Algorithm::Latency),
    ("rr-or-serial", Algorithm::RrOrSerial),
    ("priority-weight", Algorithm::PriorityWeight),
    ("round-robin-oc", Algorithm::RoundRobinOc),
];

impl Algorithm {
    pub fn from_number(n: u32, numbering: Numbering) -> Result<Self, AlgorithmError> {
        use Algorithm::*;
        if numbering == Numbering::Opensips {
            return match n {
                0 => Ok(HashCallId),
                1 => Ok(HashFrom),
                2 => Ok(HashTo),
                3 => Ok(HashRuri),
                4 => Ok(WeightedRoundRobin),
                5 => Ok(HashAuth),
                6 => Ok(WeightedRandom),
                7 => Ok(HashKey),
                8 => Ok(Serial),
                9 => Err(AlgorithmError::Unsupported(9, "PVAR load")),
                10 => Err(AlgorithmError::Unsupported(10, "algo_route")),
                _ => Err(AlgorithmError::UnknownNumber(n)),
            };
        }
        Ok(match n {
            0 => HashCallId,
            1 => HashFrom,
            2 => HashTo,
            3 => HashRuri,
            4 => RoundRobin,
            5 => HashAuth,
            6 => Random,
            7 => HashKey,
            8 => Serial,
            9 => Weight,
            10 => CallLoad,
            11 => RelativeWeight,
            12 => Parallel,
            13 => Latency,
            14 => RrOrSerial,
            15 => PriorityWeight,
            64 => RoundRobinOc,
            _ => return Err(AlgorithmError::UnknownNumber(n)),
        })
    }

    /// By name (see `NAMES`), or a number written as text.
    pub fn from_name(s: &str, numbering: Numbering) -> Result<Self, AlgorithmError> {
        if let Ok(n) = s.parse() {
            return Self::from_number(n, numbering);
        }
        match (s, numbering) {
            ("weighted-round-robin", _) => return Ok(Algorithm::WeightedRoundRobin),
            ("weighted-random", _) => return Ok(Algorithm::WeightedRandom),
            _ => {}
        }
        NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, a)| *a)
            .ok_or_else(|| AlgorithmError::UnknownName(s.to_owned()))
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::WeightedRoundRobin => "weighted-round-robin",
            Algorithm::WeightedRandom => "weighted-random",
            a => NAMES.iter().find(|(_, x)| *x == a).map_or("?", |(n, _)| n),
        }
    }
}

/// Most destinations a candidate list holds (the failover list is cut there).
pub const MAX_CANDIDATES: usize = 256;

/// The chosen destination (first) and the failover list after it, as indexes into the set.
#[derive(Clone, Debug)]
pub struct Candidates {
    idx: [u16; MAX_CANDIDATES],
    len: usize,
}

impl Default for Candidates {
    fn default() -> Self {
        Self {
            idx: [0; MAX_CANDIDATES],
            len: 0,
        }
    }
}

impl Candidates {
    pub fn as_slice(&self) -> &[u16] {
        &self.idx[..self.len]
    }

    pub fn first(&self) -> Option<usize> {
        self.as_slice().first().map(|&i| usize::from(i))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Adds `i` unless full; returns false when full.
    pub(crate) fn push(&mut self, i: usize) -> bool {
        if self.len == MAX_CANDIDATES {
            return false;
        }
        self.idx[self.len] = i as u16;
        self.len += 1;
        true
    }

    pub(crate) fn insert(&mut self, at: usize, i: usize) {
        if at >= MAX_CANDIDATES {
            return;
        }
        let end = self.len.min(MAX_CANDIDATES - 1);
        // A plain loop: lists are short, and `copy_within` would call memmove.
        let mut k = end;
        while k > at {
            self.idx[k] = self.idx[k - 1];
            k -= 1;
        }
        self.idx[at] = i as u16;
        self.len = end + 1;
    }

    pub(crate) fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }
}

/// No destination of the set can be selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no destination available")]
pub struct NoDestination;

/// Everything a route says about selection.
#[derive(Clone, Debug)]
pub struct Selector {
    pub algorithm: Algorithm,
    pub hash: HashMode,
    /// Hash only the URI user (Kamailio's `flags=1`), algorithms 1–3.
    pub user_only: bool,
    pub key: Option<KeyTemplate>,
    /// Failover-list length; 0 = unlimited.
    pub limit: usize,
}

/// A small PRNG (xorshift64*) each shard owns: no OS call and no shared state per selection.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Selects from `set` for the request described by `keys` into `out`.
pub fn select(
    set: &Set,
    sel: &Selector,
    keys: &Keys<'_>,
    rng: &mut Rng,
    now_ms: u64,
    out: &mut Candidates,
) -> Result<(), NoDestination> {
    use Algorithm::*;
    out.clear();
    let n = set.dests.len();
    if n == 0 {
        return Err(NoDestination);
    }
    let limit = if sel.limit == 0 {
        MAX_CANDIDATES
    } else {
        sel.limit
    };
    let hash = |h: u32, rng: &mut Rng, out: &mut Candidates| match sel.hash {
        HashMode::Kamailio => walk(set, h as usize % n, limit, out, |_| true),
        HashMode::Rendezvous => rendezvous(set, mix64(u64::from(h)), limit, out),
        HashMode::Opensips => opensips_hash(set, h, limit, out, rng),
    };
    match sel.algorithm {
        HashCallId => hash(kamailio_hash(keys.call_id, None), rng, out),
        HashFrom => hash(
            keys.from_uri.map_or(0, |u| uri_hash(&u, sel.user_only)),
            rng,
            out,
        ),
        HashTo => hash(
            keys.to_uri.map_or(0, |u| uri_hash(&u, sel.user_only)),
            rng,
            out,
        ),
        HashRuri => hash(
            keys.ruri.map_or(0, |u| uri_hash(&u, sel.user_only)),
            rng,
            out,
        ),
        HashAuth => match keys.auth_user {
            Some(u) => hash(kamailio_hash(u, None), rng, out),
            None => round_robin(set, limit, out),
        },
        HashKey => {
            let mut buf = [0u8; MAX_KEY];
            let k = sel.key.as_ref().map_or(&[][..], |t| t.eval(keys, &mut buf));
            if k.is_empty() {
                return Err(NoDestination);
            }
            hash(kamailio_hash(k, None), rng, out)
        }
        RoundRobin => round_robin(set, limit, out),
        RrOrSerial if set.rr_serial => round_robin(set, limit, out),
        Serial | RrOrSerial => walk(set, 0, limit, out, |_| true),
        Random => walk(set, rng.below(n as u64) as usize, limit, out, |_| true),
        Weight => {
            // Kamailio uses weights only when the first destination has one.
            let start = if set.dests[0].attrs.weight == 0 {
                0
            } else {
                let c = set
                    .wcursor
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                pick_weighted(set, c, true, |d| d.attrs.weight).unwrap_or(0)
            };
            walk(set, start, limit, out, |_| true)
        }
        RelativeWeight => {
            let c = set
                .wcursor
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let start = pick_weighted(set, c, true, |d| {
                if d.state.is_usable() {
                    d.state.rweight.load(std::sync::atomic::Ordering::Relaxed)
                } else {
                    0
                }
            });
            walk(set, start.unwrap_or(0), limit, out, |_| true)
        }
        PriorityWeight => priority_weight(set, limit, out),
        CallLoad if keys.method == b"INVITE" => call_load(set, limit, out),
        CallLoad => hash(kamailio_hash(keys.call_id, None), rng, out),
        Parallel => walk(set, 0, MAX_CANDIDATES, out, |_| true),
        Latency => {
            // As Kamailio: start at the rotation point, then move it past the chosen one, so
            // the best destinations take turns exactly (not by how many worse ones precede them).
            let start = set.rr.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as usize % n;
            super::weights::latency(set, start, limit, out);
            if let Some(c) = out.first() {
                advance_rr(set, start, c);
            }
        }
        RoundRobinOc => {
            let start = set.rr.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as usize % n;
            walk(set, start, limit, out, |i| !overloaded(set, i, now_ms, rng));
            if let Some(c) = out.first() {
                advance_rr(set, start, c);
            }
        }
        WeightedRoundRobin => {
            let c = set
                .wcursor
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let start = pick_weighted(set, c, false, |d| d.attrs.weight.max(1)).unwrap_or(0);
            walk(set, start, limit, out, |_| true)
        }
        WeightedRandom => {
            let c = rng.next_u64();
            let start = pick_weighted(set, c, false, |d| d.attrs.weight.max(1)).unwrap_or(0);
            walk(set, start, limit, out, |_| true)
        }
    }
    if out.is_empty() {
        Err(NoDestination)
    } else {
        Ok(())
    }
}

/// The chosen destination is the first usable one from `start` (cyclically); the failover list
/// follows in array order, wrapping (Kamailio's `h, h+1 … n-1, 0 … h-1`), skipping unusable
/// ones and those `extra` refuses.
pub(crate) fn walk(
    set: &Set,
    start: usize,
    limit: usize,
    out: &mut Candidates,
    mut extra: impl FnMut(usize) -> bool,
) {
    let n = set.dests.len();
    for k in 0..n {
        if out.len() >= limit {
            break;
        }
        let i = (start + k) % n;
        if set.dests[i].state.is_usable() && extra(i) && !out.push(i) {
            break;
        }
    }
}

fn round_robin(set: &Set, limit: usize, out: &mut Candidates) {
    let n = set.dests.len();
    let start = set.rr.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as usize % n;
    walk(set, start, limit, out, |_| true);
    if let Some(c) = out.first() {
        advance_rr(set, start, c);
    }
}

/// Kamailio moves the rotation past a destination chosen after skipping inactive ones, so the
/// skipped one's turn is not handed to the same neighbour twice. Best effort under concurrency.
fn advance_rr(set: &Set, start: usize, chosen: usize) {
    use std::sync::atomic::Ordering::Relaxed;
    if chosen != start {
        let n = set.dests.len();
        let cur = set.rr.load(Relaxed);
        if cur as usize % n == (start + 1) % n {
            let skip = ((chosen + n - start) % n) as u32;
            let _ = set
                .rr
                .compare_exchange(cur, cur.wrapping_add(skip), Relaxed, Relaxed);
        }
    }
}

fn call_load(set: &Set, limit: usize, out: &mut Candidates) {
    let under = |i: usize| {
        let d = &set.dests[i];
        d.attrs.maxload == 0 || d.state.load() < d.attrs.maxload
    };
    let best = (0..set.dests.len())
        .filter(|&i| set.dests[i].state.is_usable() && under(i))
        .min_by_key(|&i| (set.dests[i].state.load(), i));
    if let Some(b) = best {
        walk(set, b, limit, out, under);
    }
}

fn priority_weight(set: &Set, limit: usize, out: &mut Candidates) {
    // SRV-style: the lowest priority value among usable destinations wins.
    let Some(best) = set
        .dests
        .iter()
        .filter(|d| d.state.is_usable())
        .map(|d| d.priority)
        .min()
    else {
        return;
    };
    let all_zero = set
        .dests
        .iter()
        .filter(|d| d.state.is_usable() && d.priority == best)
        .all(|d| d.attrs.weight == 0);
    let c = set
        .wcursor
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = pick_weighted(set, c, true, |d| {
        if !d.state.is_usable() || d.priority != best {
            0
        } else if all_zero {
            1
        } else {
            d.attrs.weight
        }
    });
    walk(set, start.unwrap_or(0), limit, out, |_| true);
}

fn opensips_hash(set: &Set, h: u32, limit: usize, out: &mut Candidates, _rng: &mut Rng) {
    let w = |d: &super::table::Destination| d.attrs.weight.max(1);
    let total: u64 = set.dests.iter().map(|d| u64::from(w(d))).sum();
    let mut slot = u64::from(h) % total;
    let mut pick = 0;
    for (i, d) in set.dests.iter().enumerate() {
        if slot < u64::from(w(d)) {
            pick = i;
            break;
        }
        slot -= u64::from(w(d));
    }
    if !set.dests[pick].state.is_usable() {
        // Re-hash over the active weights only, so a dead destination's keys spread out.
        let active: u64 = set
            .dests
            .iter()
            .filter(|d| d.state.is_usable())
            .map(|d| u64::from(w(d)))
            .sum();
        if active == 0 {
            return;
        }
        let mut slot = u64::from(h) % active;
        for (i, d) in set
            .dests
            .iter()
            .enumerate()
            .filter(|(_, d)| d.state.is_usable())
        {
            if slot < u64::from(w(d)) {
                pick = i;
                break;
            }
            slot -= u64::from(w(d));
        }
    }
    walk(set, pick, limit, out, |_| true);
}

fn overloaded(set: &Set, i: usize, now_ms: u64, rng: &mut Rng) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &set.dests[i].state;
    let rate = u64::from(s.oc_rate.load(Relaxed));
    rate > 0 && now_ms < s.oc_until_ms.load(Relaxed) && rng.below(100) < rate
}

/// Arms overload control on a destination (Kamailio's `ds_oc_set_attrs`): for `validity_ms`
/// from `now_ms`, algorithm 64 skips it with probability `rate` %, clamped to its
/// `ocmin`..`ocmax`. An update whose `seq` is not newer than the last one is refused.
pub fn oc_set(
    d: &super::table::Destination,
    rate: u32,
    validity_ms: u64,
    seq: i64,
    now_ms: u64,
) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &d.state;
    let prev = s.oc_seq.load(Relaxed);
    if seq <= prev
        || s.oc_seq
            .compare_exchange(prev, seq, Relaxed, Relaxed)
            .is_err()
    {
        return false;
    }
    let rate = rate.clamp(d.attrs.ocmin, d.attrs.ocmax.max(d.attrs.ocmin));
    s.oc_rate.store(rate as u8, Relaxed);
    s.oc_until_ms.store(now_ms + validity_ms, Relaxed);
    true
}

#[cfg(test)]
#[path = "algorithm_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "algorithm_exact_tests.rs"]
mod exact_tests;
