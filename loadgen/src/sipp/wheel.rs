//! A hashed timing wheel with 1 ms slots for a shard's retransmissions, pauses, receive
//! timeouts and timewaits: O(1) to arm, O(due) to expire. A timer further away than one turn
//! of the wheel waits in its slot for the turn it is due. Timers are never cancelled: an entry
//! carries the call's generation, and a stale one is ignored by the caller. Nothing allocates
//! once the slots have grown to the load.

use std::time::{Duration, Instant};

const SLOTS: usize = 4096;
const TICK: Duration = Duration::from_millis(1);

/// One armed timer: the call's slot and generation, and the tick it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tick: u64,
    slot: usize,
    generation: u32,
}

pub struct Wheel {
    start: Instant,
    /// The next tick to expire.
    next: u64,
    slots: Vec<Vec<Entry>>,
    spare: Vec<Entry>,
    /// Armed timers, stale ones included.
    len: usize,
}

impl Wheel {
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            next: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            spare: Vec::new(),
            len: 0,
        }
    }

    /// The tick a deadline falls in, rounded up so that a timer never fires early.
    fn tick_of(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.start);
        let t = d.as_nanos().div_ceil(TICK.as_nanos());
        u64::try_from(t).unwrap_or(u64::MAX).max(self.next)
    }

    pub fn insert(&mut self, at: Instant, slot: usize, generation: u32) {
        let tick = self.tick_of(at);
        self.slots[(tick % SLOTS as u64) as usize].push(Entry {
            tick,
            slot,
            generation,
        });
        self.len += 1;
    }

    /// Appends `(slot, generation)` of every timer due at `now` to `due`.
    pub fn expire(&mut self, now: Instant, due: &mut Vec<(usize, u32)>) {
        let now_tick =
            u64::try_from(now.saturating_duration_since(self.start).as_nanos() / TICK.as_nanos())
                .unwrap_or(u64::MAX);
        // After a long idle spell one turn visits every slot.
        let last = now_tick.min(self.next + SLOTS as u64 - 1);
        while self.next <= last {
            let i = (self.next % SLOTS as u64) as usize;
            if !self.slots[i].is_empty() {
                std::mem::swap(&mut self.slots[i], &mut self.spare);
                for e in self.spare.drain(..) {
                    if e.tick <= now_tick {
                        due.push((e.slot, e.generation));
                        self.len -= 1;
                    } else {
                        self.slots[i].push(e);
                    }
                }
            }
            self.next += 1;
        }
        if now_tick > last {
            self.next = now_tick + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_at_or_after_the_deadline_never_before() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.insert(t0 + ms(500), 1, 7);
        w.insert(t0 + ms(500) + Duration::from_micros(10), 2, 7);
        w.insert(t0 + ms(3), 3, 1);
        let mut due = Vec::new();
        w.expire(t0 + ms(2), &mut due);
        assert!(due.is_empty());
        w.expire(t0 + ms(3), &mut due);
        assert_eq!(due, [(3, 1)]);
        due.clear();
        w.expire(t0 + ms(500), &mut due);
        assert_eq!(due, [(1, 7)], "the 500.01 ms timer waits for the next tick");
        due.clear();
        w.expire(t0 + ms(501), &mut due);
        assert_eq!((due.as_slice(), w.len), (&[(2, 7)][..], 0));
    }

    #[test]
    fn long_timers_wait_for_their_turn_and_idle_gaps_catch_up() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        // 33 s: eight turns of the wheel away.
        w.insert(t0 + ms(33_000), 9, 0);
        w.insert(t0 + ms(10), 8, 0);
        let mut due = Vec::new();
        // Nothing ran for 20 s: the 10 ms timer is due, the 33 s one is not.
        w.expire(t0 + ms(20_000), &mut due);
        assert_eq!(due, [(8, 0)]);
        due.clear();
        for s in 20..34 {
            w.expire(t0 + ms(s * 1000 + 999), &mut due);
        }
        assert_eq!(due, [(9, 0)]);
        // A deadline already past fires at the next expiry.
        w.insert(t0, 5, 2);
        due.clear();
        w.expire(t0 + ms(34_000), &mut due);
        assert_eq!(due, [(5, 2)]);
    }
}
