//! Weighted and scored choices shared by the algorithms: exact weighted selection from a shared
//! cursor (no 100-slot table, so no rounding error — kamailio#2698), weighted rendezvous
//! hashing (only a failed destination's keys move — kamailio#2361, #3916), and the
//! latency-ordered list of algorithm 13. Lock-free and allocation-free.
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering::Relaxed;

use super::algorithm::Candidates;
use super::hash::mix64;
use super::table::{Destination, Set};

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The destination for position `cursor` of a weighted sequence: over every `Σw` consecutive
/// positions each destination gets exactly its weight. With `interleave`, positions are
/// permuted by a stride coprime to `Σw` (near the golden ratio) so picks alternate instead of
/// coming in blocks; without it, each destination takes its weight in a row (OpenSIPS's
/// weighted round-robin). `None` when every weight is 0.
pub fn pick_weighted(
    set: &Set,
    cursor: u64,
    interleave: bool,
    weight: impl Fn(&Destination) -> u32,
) -> Option<usize> {
    let total: u64 = set.dests.iter().map(|d| u64::from(weight(d))).sum();
    if total == 0 {
        return None;
    }
    let mut pos = cursor % total;
    if interleave && total > 2 {
        let mut stride = (total * 618 / 1000).max(1);
        while gcd(stride, total) != 1 {
            stride += 1;
        }
        pos = (pos * stride) % total;
    }
    for (i, d) in set.dests.iter().enumerate() {
        let w = u64::from(weight(d));
        if pos < w {
            return Some(i);
        }
        pos -= w;
    }
    None
}

/// The weight rendezvous hashing gives a destination: `rweight`, else `weight`, else 1.
pub(crate) fn hrw_weight(d: &Destination) -> u32 {
    [d.attrs.rweight, d.attrs.weight, 1]
        .into_iter()
        .find(|&w| w > 0)
        .unwrap_or(1)
}

/// Weighted highest-random-weight: each usable destination scores `w / -ln(u)` with `u` drawn
/// from the key and the destination's stable seed; the best first, then the rest by score.
pub fn rendezvous(set: &Set, key: u64, limit: usize, out: &mut Candidates) {
    // The score array lives on the stack; small sets do not pay for zeroing a large one.
    if set.dests.len() <= 16 {
        rendezvous_in::<16>(set, key, limit, out)
    } else {
        rendezvous_in::<{ super::algorithm::MAX_CANDIDATES }>(set, key, limit, out)
    }
}

fn rendezvous_in<const N: usize>(set: &Set, key: u64, limit: usize, out: &mut Candidates) {
    let mut scores = [0f64; N];
    for (i, d) in set.dests.iter().enumerate().take(N) {
        if !d.state.is_usable() {
            continue;
        }
        let x = mix64(key ^ d.seed);
        let score = if set.hrw_equal {
            x as f64
        } else {
            // 24 random bits are plenty for a ranking, and `f32::ln` costs half of `f64::ln`.
            let u = ((x >> 40) as f32 + 0.5) / (1u32 << 24) as f32;
            f64::from(hrw_weight(d) as f32 / -u.ln())
        };
        scores[i] = score;
        // Insertion into the descending list, kept no longer than `limit`.
        let at = out
            .as_slice()
            .iter()
            .position(|&j| scores[usize::from(j)] < score)
            .unwrap_or(out.len());
        if at < limit {
            out.insert(at, i);
            out.truncate(limit);
        }
    }
}

/// Algorithm 13: from the rotation point `start`, each usable destination scores its priority
/// lowered by its latency estimate (Kamailio: `prio - lat/prio` when `lat > prio`, at least 1;
/// with `cc=1` the latency is EST−AVG); ties keep rotation order, so equals take turns.
pub fn latency(set: &Set, start: usize, limit: usize, out: &mut Candidates) {
    let n = set.dests.len();
    let mut scores = [0i64; super::algorithm::MAX_CANDIDATES];
    for k in 0..n.min(scores.len()) {
        let i = (start + k) % n;
        let d = &set.dests[i];
        if !d.state.is_usable() {
            continue;
        }
        let est = d.state.latency_est_us.load(Relaxed) / 1000;
        let lat = if d.attrs.cc {
            est.saturating_sub(d.state.latency_avg_us.load(Relaxed) / 1000)
        } else {
            est
        } as i64;
        let prio = i64::from(d.priority);
        let score = if prio > 0 && lat > prio {
            (prio - lat / prio).max(1)
        } else {
            prio
        };
        scores[i] = score;
        let at = out
            .as_slice()
            .iter()
            .position(|&j| scores[usize::from(j)] < score)
            .unwrap_or(out.len());
        if at < limit {
            out.insert(at, i);
            out.truncate(limit);
        }
    }
}
