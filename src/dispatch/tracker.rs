//! The Call-ID tracker: a bounded table from a call's Call-ID to the destination its INVITE
//! went to, so CANCEL, ACK, retransmissions and in-dialog requests follow it whatever the
//! algorithm, and so call-load (algorithm 10) counts each call exactly once.
//!
//! Each shard owns the Call-IDs that hash to it (the data plane hands messages to the owner),
//! so a tracker has one owner: plain `&mut self`, no locks, no atomics. It is an open-addressing
//! table with linear probing and backward-shift deletion (no tombstones), allocated once.
//!
//! Keys are a 64-bit hash of the Call-ID ([`call_key`]); two live calls share a key with odds
//! of about n²/2⁶⁵ (3·10⁻⁸ at a million calls), which is accepted and documented. Call-IDs
//! come from the network, so the hash starts from a secret drawn once per process: a sender
//! cannot aim Call-IDs at one run of slots (or at one shard).
//!
//! Contract for load counters (kept by the caller, per destination): every counted call
//! that `begin` starts ([`Begin::New`] or [`Begin::Replaced`]) is given back exactly once: by a
//! `Some` from [`Tracker::release`], a report from [`Tracker::expire`], or a [`Begin::Replaced`]. A released call lingers (uncounted) for affinity only,
//! so the ACK of a failed INVITE or a retransmitted BYE still reaches the same destination.
//!
//! Memory: one 32-byte slot per `capacity × 4/3` rounded up to a power of two — 64 MiB for a
//! million calls. Time is milliseconds on the caller's clock.
#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use super::DestId;
use super::hash::le_word;

/// Where a tracked call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallState {
    /// INVITE sent, no 2xx yet; expires after `init_expire`.
    Init,
    /// 2xx seen; expires after `expire`.
    Confirmed,
    /// Load already given back (BYE, CANCEL, negative final reply); kept for affinity only.
    Released,
}

/// What the tracker knows about one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub set: u32,
    pub dest: DestId,
    pub state: CallState,
    /// Whether this call counts in its destination's load (algorithm 10).
    pub counted: bool,
    /// Which try of the INVITE the destination got (0 unless failover moved the call), so
    /// its CANCEL and non-2xx ACK leave with that try's branch.
    pub fork: u8,
}

/// The result of [`Tracker::begin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Begin {
    /// A new call; if `counted`, the caller adds one to the destination's load.
    New,
    /// The call is already tracked (a retransmitted INVITE): nothing is counted again.
    Existing(Entry),
    /// A new call that took the place of an expired one the sweep had not reached yet: the
    /// caller gives back the old call's load (if it counted) and counts the new one.
    Replaced(Entry),
    /// The table is full; the call is routed but not tracked.
    Full,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: u64,
    expires: u64,
    set: u32,
    dest: u32,
    state: CallState,
    counted: bool,
    fork: u8,
}

const EMPTY: Slot = Slot {
    key: 0,
    expires: 0,
    set: 0,
    dest: 0,
    state: CallState::Init,
    counted: false,
    fork: 0,
};

impl Slot {
    fn entry(&self) -> Entry {
        Entry {
            set: self.set,
            dest: DestId(self.dest),
            state: self.state,
            counted: self.counted,
            fork: self.fork,
        }
    }
}

/// A 64-bit hash of a Call-ID, never 0 (0 marks an empty slot), keyed by [`seed`].
pub fn call_key(call_id: &[u8]) -> u64 {
    let mut h: u64 = seed() ^ (call_id.len() as u64);
    let mut chunks = call_id.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 31;
    }
    h = (h ^ le_word(chunks.remainder())).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 32;
    h.max(1)
}

/// The process's secret for [`call_key`]: one for all shards, so they agree on who owns a call.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        // std's SipHash keys come from the OS's random source.
        RandomState::new().build_hasher().finish() | 1
    })
}

/// The shard that owns a Call-ID (of `nshards`): where every message of the call is handled,
/// so its tracker entry, failover record or keepalive lives there.
pub fn shard_of(call_id: &[u8], nshards: usize) -> usize {
    if nshards <= 1 {
        return 0;
    }
    ((call_key(call_id) >> 32) % nshards as u64) as usize
}

/// The bounded Call-ID table of one shard.
pub struct Tracker {
    slots: Box<[Slot]>,
    mask: usize,
    len: usize,
    capacity: usize,
    init_expire: u64,
    expire: u64,
    sweep: usize,
}

impl Tracker {
    /// A tracker for at most `capacity` calls; expiry times in milliseconds.
    pub fn new(capacity: usize, init_expire_ms: u64, expire_ms: u64) -> Self {
        let capacity = capacity.max(1);
        let nslots = (capacity + capacity / 3 + 1).next_power_of_two();
        Self {
            slots: vec![EMPTY; nslots].into_boxed_slice(),
            mask: nslots - 1,
            len: 0,
            capacity,
            init_expire: init_expire_ms,
            expire: expire_ms,
            sweep: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots in the table (the sweep's whole round).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Bytes the table occupies.
    pub fn memory(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    fn find(&self, key: u64) -> Option<usize> {
        let mut i = key as usize & self.mask;
        loop {
            let k = self.slots[i].key;
            if k == key {
                return Some(i);
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The call's entry, if tracked and not expired.
    pub fn lookup(&self, key: u64, now: u64) -> Option<Entry> {
        let i = self.find(key)?;
        let s = &self.slots[i];
        (s.expires > now).then(|| s.entry())
    }

    /// Starts tracking a call at its INVITE.
    pub fn begin(&mut self, key: u64, set: u32, dest: DestId, counted: bool, now: u64) -> Begin {
        let fresh = Slot {
            key,
            expires: now + self.init_expire,
            set,
            dest: dest.0,
            state: CallState::Init,
            counted,
            fork: 0,
        };
        if let Some(i) = self.find(key) {
            let old = self.slots[i];
            if old.expires > now {
                return Begin::Existing(old.entry());
            }
            // Expired but not swept yet: reuse the slot in place (the probe run stays intact).
            self.slots[i] = fresh;
            return if old.counted && old.state != CallState::Released {
                Begin::Replaced(old.entry())
            } else {
                Begin::New
            };
        }
        if self.len >= self.capacity {
            return Begin::Full;
        }
        let mut i = key as usize & self.mask;
        while self.slots[i].key != 0 {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = fresh;
        self.len += 1;
        Begin::New
    }

    /// A 2xx to the INVITE: the call is confirmed and now lives `expire` from this moment.
    pub fn confirm(&mut self, key: u64, now: u64) -> bool {
        match self.find(key) {
            Some(i) if self.slots[i].state == CallState::Init && self.slots[i].expires > now => {
                self.slots[i].state = CallState::Confirmed;
                self.slots[i].expires = now + self.expire;
                true
            }
            _ => false,
        }
    }

    /// The call ends (BYE, CANCEL, negative final reply). Returns the entry the first time so
    /// the caller can give back its load; the call then lingers for `linger_ms`, uncounted, so
    /// its last messages still find their destination (`0`: removed at once).
    pub fn release(&mut self, key: u64, now: u64, linger_ms: u64) -> Option<Entry> {
        let i = self.find(key)?;
        let s = &mut self.slots[i];
        if s.state == CallState::Released || s.expires <= now {
            return None;
        }
        let e = s.entry();
        if linger_ms == 0 {
            self.remove_at(i);
            return Some(e);
        }
        s.state = CallState::Released;
        s.counted = false;
        s.expires = now + linger_ms;
        Some(e)
    }

    /// Moves a call to another destination and try (failover), keeping its state.
    pub fn retarget(&mut self, key: u64, dest: DestId, fork: u8) -> bool {
        self.find(key)
            .map(|i| {
                self.slots[i].dest = dest.0;
                self.slots[i].fork = fork;
            })
            .is_some()
    }

    /// Removes expired calls, looking at no more than `max_work` slots (so a shard can call it
    /// on every loop). Calls that still counted load are reported to `on_expired`.
    pub fn expire(&mut self, now: u64, max_work: usize, mut on_expired: impl FnMut(Entry)) {
        // Work counts slots passed; removals are bounded by the table size on top of it.
        let budget = max_work.min(self.slots.len());
        let mut work = 0;
        let mut i = self.sweep;
        while work < budget {
            // Most of the table is empty, and the sweep goes round all of it every few seconds
            // whatever the traffic: runs of empty slots get the key test alone.
            let run = (budget - work).min(self.slots.len() - i);
            let empty = self.slots[i..i + run]
                .iter()
                .take_while(|s| s.key == 0)
                .count();
            work += empty;
            i = (i + empty) & self.mask;
            if empty == run {
                continue;
            }
            let s = &self.slots[i];
            if s.expires <= now {
                if s.counted && s.state != CallState::Released {
                    on_expired(s.entry());
                }
                // Backward shift may move a later entry into `i`: look at `i` again.
                self.remove_at(i);
            } else {
                i = (i + 1) & self.mask;
                work += 1;
            }
        }
        self.sweep = i;
    }

    /// Sweeps the whole table once.
    pub fn expire_all(&mut self, now: u64, on_expired: impl FnMut(Entry)) {
        self.sweep = 0;
        self.expire(now, self.slots.len(), on_expired);
    }

    /// Backward-shift deletion: later entries of the probe run move up so lookups never see a
    /// hole before their key.
    fn remove_at(&mut self, mut hole: usize) {
        self.slots[hole] = EMPTY;
        self.len -= 1;
        let mut j = (hole + 1) & self.mask;
        while self.slots[j].key != 0 {
            let home = self.slots[j].key as usize & self.mask;
            // Move j into the hole unless its home lies cyclically in (hole, j].
            let dist_home = j.wrapping_sub(home) & self.mask;
            let dist_hole = j.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.slots[hole] = self.slots[j];
                self.slots[j] = EMPTY;
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
