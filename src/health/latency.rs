//! Keepalive latency statistics per destination, as Kamailio's `ds_ping_latency_stats`
//! computes them: a Welford running mean and deviation (AVG, STD), an estimator that follows the
//! mean for ten samples and then an EWMA (EST), the maximum, and the count of timeouts. The
//! prober feeds it; algorithm 13 and congestion control read what it publishes.
#![forbid(unsafe_code)]

/// Samples after which the count stops growing and the deviation slowly forgets (2²¹).
const COUNT_CAP: u64 = 1 << 21;
/// Kamailio treats a seeded or very stable estimator as trained with this many samples.
const TRAINED: u64 = 10_000;

/// One destination's latency figures, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencyStats {
    pub count: u64,
    pub avg: f64,
    m2: f64,
    pub est: f64,
    pub max: f64,
    pub min: f64,
    pub timeouts: u64,
}

impl LatencyStats {
    /// Stats seeded from the `latency` attribute: as if long trained on that value.
    pub fn seeded(ms: u32) -> Self {
        let v = f64::from(ms);
        Self {
            count: TRAINED,
            avg: v,
            est: v,
            max: v,
            min: v,
            ..Self::default()
        }
    }

    /// The standard deviation of the samples.
    pub fn std(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).sqrt()
        }
    }

    /// Adds one round-trip time; `alpha` is the EWMA weight of the new sample.
    pub fn add(&mut self, ms: f64, alpha: f64) {
        if self.count < COUNT_CAP {
            self.count += 1;
        } else {
            self.m2 -= self.m2 / self.count as f64;
        }
        let delta = ms - self.avg;
        self.avg += delta / self.count as f64;
        self.m2 += delta * (ms - self.avg);
        if self.count == 1 || ms > self.max {
            self.max = ms;
        }
        if self.count == 1 || ms < self.min {
            self.min = ms;
        }
        self.est = if self.count <= 10 {
            self.avg
        } else {
            alpha * ms + (1.0 - alpha) * self.est
        };
        if self.count > 10 && self.count < TRAINED && self.std() < 0.5 {
            self.count = TRAINED;
        }
    }

    /// A keepalive that timed out: counted, not added to the figures.
    pub fn timeout(&mut self) {
        self.timeouts += 1;
    }

    /// How far the estimate runs above the mean, in whole ms: Kamailio's congestion measure.
    pub fn congestion_ms(&self) -> u32 {
        (self.est - self.avg).max(0.0) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_deviation_estimate() {
        let mut s = LatencyStats::default();
        for v in [10.0, 20.0, 30.0] {
            s.add(v, 0.1);
        }
        assert_eq!(
            (s.count, s.avg, s.est, s.max, s.min),
            (3, 20.0, 20.0, 30.0, 10.0)
        );
        assert!((s.std() - 10.0).abs() < 1e-9);
        // Once trained, the estimate moves by alpha per sample while the mean barely does.
        let mut s = LatencyStats::default();
        for _ in 0..11 {
            s.add(10.0, 0.1);
        }
        s.add(110.0, 0.1);
        assert!((s.est - 20.0).abs() < 1e-9, "{}", s.est);
        assert_eq!(s.congestion_ms(), 9);
    }

    #[test]
    fn seeded_and_timeouts() {
        let mut s = LatencyStats::seeded(40);
        s.timeout();
        assert_eq!(
            (s.avg, s.est, s.timeouts, s.count),
            (40.0, 40.0, 1, TRAINED)
        );
        s.add(140.0, 0.5);
        assert!((s.est - 90.0).abs() < 1e-9);
        assert_eq!(s.max, 140.0);
    }

    #[test]
    fn stable_samples_train_the_estimator() {
        let mut s = LatencyStats::default();
        for _ in 0..11 {
            s.add(5.0, 0.1);
        }
        assert_eq!(s.count, TRAINED);
    }
}
