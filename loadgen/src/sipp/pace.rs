//! When a UAC opens calls, as SIPp decides it: `-r` calls per `-rp` counted from the last rate
//! change (`-rate_increase` every `-rate_interval`, capped by `-rate_max`, which ends the run
//! unless `-no_rate_quit`), or `-users`: a closed loop keeping that many calls open. Calls due
//! while `-l` calls are open are skipped, not queued, as SIPp skips them. Time is an argument.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `-m` shared by the workers: each call created takes one.
#[derive(Debug)]
pub struct Quota {
    max: u64,
    used: AtomicU64,
}

impl Quota {
    pub fn new(max: u64) -> Self {
        Self {
            max,
            used: AtomicU64::new(0),
        }
    }

    /// Takes one call from the quota; false once it is used up.
    pub fn take(&self) -> bool {
        self.used.fetch_add(1, Ordering::Relaxed) < self.max
    }

    pub fn exhausted(&self) -> bool {
        self.used.load(Ordering::Relaxed) >= self.max
    }
}

/// Call pacing settings from the command line.
#[derive(Clone, Debug)]
pub struct PaceOptions {
    pub rate: f64,
    pub period: Duration,
    /// `-l`, when given.
    pub limit: Option<u64>,
    /// The longest of the scenario's own duration and `-d`: SIPp's default `-l` is three
    /// times the calls opened over it (at least over 1 s).
    pub call_span: Duration,
    pub increase: f64,
    pub interval: Duration,
    /// 0: no maximum.
    pub max: f64,
    pub quit_at_max: bool,
    pub users: Option<u64>,
}

pub struct Pacer {
    o: PaceOptions,
    rate: f64,
    limit: u64,
    since_change: u64,
    last_change: Instant,
    last_increase: Instant,
}

impl Pacer {
    pub fn new(o: PaceOptions, now: Instant) -> Self {
        let mut p = Self {
            rate: o.rate,
            limit: 0,
            since_change: 0,
            last_change: now,
            last_increase: now,
            o,
        };
        p.set_rate(p.rate, now);
        p
    }

    /// The rate now (SIPp's `TargetRate` column; the user count with `-users`).
    pub fn target(&self) -> f64 {
        match self.o.users {
            Some(u) => u as f64,
            None => self.rate,
        }
    }

    fn set_rate(&mut self, rate: f64, now: Instant) {
        self.rate = rate.max(0.0);
        self.last_change = now;
        self.since_change = 0;
        self.limit = match (self.o.users, self.o.limit) {
            (Some(u), _) => u,
            (None, Some(l)) => l,
            (None, None) => {
                let span = self.o.call_span.max(Duration::from_secs(1)).as_secs_f64();
                ((3.0 * self.rate * span / self.o.period.as_secs_f64()) as u64).max(1)
            }
        };
    }

    /// Applies `-rate_increase` when its interval has passed; true when `-rate_max` was
    /// reached and the run should stop opening calls.
    pub fn tick(&mut self, now: Instant) -> bool {
        if self.o.increase == 0.0 || self.o.users.is_some() {
            return false;
        }
        if now - self.last_increase < self.o.interval {
            return false;
        }
        self.last_increase = now;
        let mut rate = self.rate + self.o.increase;
        let mut quit = false;
        if self.o.max > 0.0 && rate > self.o.max {
            rate = self.o.max;
            quit = self.o.quit_at_max;
        }
        self.set_rate(rate, now);
        quit
    }

    /// How many calls to open now, given the calls open and created so far and `-m`.
    pub fn due(&mut self, now: Instant, open: u64, created: u64, max_calls: Option<u64>) -> u64 {
        let mut n = match self.o.users {
            Some(u) => u.saturating_sub(open),
            None => {
                let elapsed = (now - self.last_change).as_secs_f64();
                let expected = (elapsed * self.rate / self.o.period.as_secs_f64()) as u64;
                expected.saturating_sub(self.since_change)
            }
        };
        if let Some(m) = max_calls {
            n = n.min(m.saturating_sub(created));
        }
        // Counted before the cap, so calls skipped at the cap are not made up later.
        self.since_change += n;
        n.min(self.limit.saturating_sub(open))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> PaceOptions {
        PaceOptions {
            rate: 10.0,
            period: Duration::from_secs(1),
            limit: None,
            call_span: Duration::ZERO,
            increase: 0.0,
            interval: Duration::from_secs(1),
            max: 0.0,
            quit_at_max: true,
            users: None,
        }
    }

    #[test]
    fn rate_over_period_and_default_limit() {
        let t0 = Instant::now();
        let mut p = Pacer::new(opts(), t0);
        assert_eq!(p.limit, 30, "3 x 10 calls/s x 1 s");
        assert_eq!(p.due(t0 + Duration::from_millis(450), 0, 0, None), 4);
        assert_eq!(p.due(t0 + Duration::from_millis(1000), 4, 4, None), 6);
        assert_eq!(p.due(t0 + Duration::from_secs(3), 10, 10, Some(15)), 5);
    }

    #[test]
    fn calls_due_at_the_limit_are_skipped() {
        let t0 = Instant::now();
        let mut p = Pacer::new(
            PaceOptions {
                limit: Some(2),
                ..opts()
            },
            t0,
        );
        assert_eq!(p.due(t0 + Duration::from_secs(1), 0, 0, None), 2);
        // Ten were due, two opened; the other eight are gone.
        assert_eq!(p.due(t0 + Duration::from_millis(1100), 0, 2, None), 1);
    }

    #[test]
    fn rate_increases_until_the_max_then_quits_or_holds() {
        for quit in [true, false] {
            let t0 = Instant::now();
            let mut p = Pacer::new(
                PaceOptions {
                    increase: 10.0,
                    interval: Duration::from_secs(2),
                    max: 25.0,
                    quit_at_max: quit,
                    ..opts()
                },
                t0,
            );
            assert!(!p.tick(t0 + Duration::from_secs(1)));
            assert_eq!(p.target(), 10.0);
            assert!(!p.tick(t0 + Duration::from_secs(2)));
            assert_eq!((p.target(), p.limit), (20.0, 60));
            assert_eq!(p.tick(t0 + Duration::from_secs(4)), quit);
            assert_eq!(p.target(), 25.0);
            // Pacing restarts from the change: 25 calls/s from t0 + 4 s.
            assert_eq!(p.due(t0 + Duration::from_secs(5), 0, 0, None), 25);
        }
    }

    #[test]
    fn the_quota_is_shared_exactly() {
        let q = std::sync::Arc::new(Quota::new(1000));
        let taken: u64 = (0..4)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || (0..600).filter(|_| q.take()).count() as u64)
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(taken, 1000);
        assert!(q.exhausted());
    }

    #[test]
    fn users_keep_that_many_calls_open() {
        let t0 = Instant::now();
        let mut p = Pacer::new(
            PaceOptions {
                users: Some(5),
                ..opts()
            },
            t0,
        );
        assert_eq!(p.target(), 5.0);
        assert_eq!(p.due(t0, 0, 0, None), 5);
        assert_eq!(p.due(t0, 3, 5, None), 2);
        assert_eq!(p.due(t0, 0, 7, Some(8)), 1);
    }
}
