//! Flood protection, as Kamailio's `pike` does it from a script: a per-source-address rate
//! limit over a sliding window, with a block time. A source above `rate` requests per second is
//! blocked for `block`, with a log line when it is blocked and when it is released. The table is
//! a fixed array (two-way set-associative, least active entry replaced), so a flood of spoofed
//! sources cannot grow it: memory is `table` × 32 bytes whatever arrives. It runs on the shard
//! that receives a datagram, before it is handed to the shard owning its Call-ID.

use std::net::IpAddr;

use serde::Deserialize;

use super::trust::Cidr;
use crate::health::settings::Period;

/// The `[flood]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloodConfig {
    /// Datagrams per second one source may send; 0 turns the limiter off.
    pub rate: u32,
    /// Length of the sliding window the rate is measured over.
    pub window: Period,
    /// How long a source above the rate is blocked.
    pub block: Period,
    /// Sources tracked at most, per shard (rounded up to a power of two).
    pub table: usize,
    /// Networks never limited (the SBC in front, the media servers).
    pub exempt: Vec<String>,
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self {
            rate: 0,
            window: Period(std::time::Duration::from_secs(1)),
            block: Period(std::time::Duration::from_secs(30)),
            table: 65_536,
            exempt: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    key: u64,
    window_start: u64,
    cur: u32,
    prev: u32,
    blocked_until: u64,
}

/// What the limiter says about one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Pass,
    /// From a blocked source.
    Drop,
    /// This datagram took its source over the rate: it is blocked from now on.
    Blocked,
}

/// One shard's limiter.
pub struct Limiter {
    slots: Box<[Slot]>,
    mask: usize,
    rate: u64,
    window_ms: u64,
    block_ms: u64,
    exempt: Vec<Cidr>,
    sweep: usize,
}

fn key(ip: IpAddr) -> u64 {
    let bytes = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6) ^ (1 << 127),
    };
    let h = ((bytes as u64) ^ ((bytes >> 64) as u64).rotate_left(29))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h ^ (h >> 31)).max(1)
}

impl FloodConfig {
    /// A limiter, or `None` when the limiter is off; on error, the key at fault and why.
    pub fn limiter(&self) -> Result<Option<Limiter>, (&'static str, String)> {
        let exempt = self
            .exempt
            .iter()
            .map(|n| Cidr::parse(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("exempt", format!("flood.exempt: {e}")))?;
        if self.window.0.is_zero() {
            return Err(("window", "flood.window: must be more than 0".into()));
        }
        if self.rate == 0 {
            return Ok(None);
        }
        let n = self.table.clamp(2, 1 << 24).next_power_of_two();
        Ok(Some(Limiter {
            slots: vec![Slot::default(); n].into_boxed_slice(),
            mask: n - 1,
            rate: u64::from(self.rate),
            window_ms: self.window.0.as_millis() as u64,
            block_ms: self.block.0.as_millis() as u64,
            exempt,
            sweep: 0,
        }))
    }
}

impl Limiter {
    /// Memory the table takes, in bytes.
    pub fn memory(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
    }

    /// Counts one datagram from `ip` at `now_ms`.
    pub fn admit(&mut self, now_ms: u64, ip: IpAddr) -> Admit {
        if self.exempt.iter().any(|n| n.contains(ip)) {
            return Admit::Pass;
        }
        let k = key(ip);
        let i = self.slot_for(k, now_ms);
        let (rate, window, block) = (self.rate, self.window_ms, self.block_ms);
        let s = &mut self.slots[i];
        if s.key != k {
            *s = Slot {
                key: k,
                window_start: now_ms,
                ..Slot::default()
            };
        }
        if s.blocked_until > now_ms {
            return Admit::Drop;
        }
        let elapsed = now_ms.saturating_sub(s.window_start);
        if elapsed >= window {
            s.prev = if elapsed < 2 * window { s.cur } else { 0 };
            s.cur = 0;
            s.window_start = now_ms - elapsed % window;
        }
        s.cur = s.cur.saturating_add(1);
        // The previous window counts for the part of it still inside the sliding window.
        let into = now_ms - s.window_start;
        let estimate = u64::from(s.prev) * (window - into) / window + u64::from(s.cur);
        if estimate * 1000 > rate * window {
            s.blocked_until = now_ms + block;
            s.cur = 0;
            s.prev = 0;
            return Admit::Blocked;
        }
        Admit::Pass
    }

    /// The slot for key `k`: its own, else an empty one, else the least active unblocked one of
    /// its pair (a blocked source is kept over an active one while its block lasts).
    fn slot_for(&self, k: u64, now_ms: u64) -> usize {
        let a = (k as usize) & self.mask & !1;
        let b = a | 1;
        for i in [a, b] {
            if self.slots[i].key == k {
                return i;
            }
        }
        let score = |s: &Slot| {
            if s.key == 0 {
                0
            } else if s.blocked_until > now_ms {
                u64::MAX
            } else {
                1 + u64::from(s.cur) + u64::from(s.prev)
            }
        };
        if score(&self.slots[a]) <= score(&self.slots[b]) {
            a
        } else {
            b
        }
    }

    /// Sources whose block ended since the last sweep, looking at up to `max_work` slots; their
    /// entries are cleared so each release is reported once.
    pub fn released(&mut self, now_ms: u64, max_work: usize, mut f: impl FnMut(u64)) {
        for _ in 0..max_work.min(self.slots.len()) {
            let s = &mut self.slots[self.sweep];
            if s.blocked_until != 0 && s.blocked_until <= now_ms {
                f(s.key);
                *s = Slot::default();
            }
            self.sweep = (self.sweep + 1) & self.mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: u32, table: usize) -> Limiter {
        FloodConfig {
            rate,
            table,
            block: Period(std::time::Duration::from_secs(10)),
            exempt: vec!["10.0.0.0/8".into()],
            ..FloodConfig::default()
        }
        .limiter()
        .unwrap()
        .unwrap()
    }

    #[test]
    fn a_source_over_the_rate_is_blocked_then_released() {
        let mut l = limiter(100, 64);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        // 100 in a second pass; the 101st blocks.
        for i in 0..100 {
            assert_eq!(l.admit(i * 10, ip), Admit::Pass, "{i}");
        }
        assert_eq!(l.admit(999, ip), Admit::Blocked);
        assert_eq!(l.admit(5_000, ip), Admit::Drop);
        let mut released = 0;
        l.released(10_998, 64, |_| released += 1);
        assert_eq!(released, 0);
        l.released(11_000, 64, |_| released += 1);
        assert_eq!(released, 1);
        assert_eq!(l.admit(11_001, ip), Admit::Pass);
        // A steady 50/s never blocks, across windows.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!((0..500).all(|i| l.admit(20_000 + i * 20, other) == Admit::Pass));
        // Exempt networks are never limited.
        let sbc: IpAddr = "10.1.2.3".parse().unwrap();
        assert!((0..10_000).all(|_| l.admit(30_000, sbc) == Admit::Pass));
    }

    #[test]
    fn spoofed_sources_cannot_grow_the_table_nor_evict_a_blocked_one() {
        let mut l = limiter(10, 1024);
        let before = l.memory();
        let bad: IpAddr = "198.51.100.66".parse().unwrap();
        while l.admit(0, bad) != Admit::Blocked {}
        for n in 0..200_000u32 {
            let ip = IpAddr::from(n.wrapping_mul(2_654_435_761).to_be_bytes());
            l.admit(1, ip);
        }
        assert_eq!(l.memory(), before);
        assert_eq!(l.admit(2, bad), Admit::Drop, "still blocked");
    }
}
