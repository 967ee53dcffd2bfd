//! Call statistics and SIPp's `-trace_stat` CSV: the exact header, column order, delimiter
//! and value formats, so tools that read SIPp's CSV read sipload's. Periodic `(P)` columns
//! cover the time since the previous row, cumulative `(C)` columns the whole run.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// Why a call failed: SIPp's `Failed*` columns, in header order.
pub const FAILURES: [&str; 17] = [
    "FailedCannotSendMessage",
    "FailedMaxUDPRetrans",
    "FailedTcpConnect",
    "FailedTcpClosed",
    "FailedUnexpectedMessage",
    "FailedCallRejected",
    "FailedCmdNotSent",
    "FailedRegexpDoesntMatch",
    "FailedRegexpShouldntMatch",
    "FailedRegexpHdrNotFound",
    "FailedOutboundCongestion",
    "FailedTimeoutOnRecv",
    "FailedTimeoutOnSend",
    "FailedTestDoesntMatch",
    "FailedTestShouldntMatch",
    "FailedStrcmpDoesntMatch",
    "FailedStrcmpShouldntMatch",
];

pub const MAX_UDP_RETRANS: usize = 1;
pub const UNEXPECTED: usize = 4;
pub const CALL_REJECTED: usize = 5;
pub const REGEXP_DOESNT_MATCH: usize = 7;
pub const REGEXP_SHOULDNT_MATCH: usize = 8;
pub const REGEXP_HDR_NOT_FOUND: usize = 9;
pub const TIMEOUT_ON_RECV: usize = 11;
pub const TEST_DOESNT_MATCH: usize = 13;
pub const TEST_SHOULDNT_MATCH: usize = 14;
pub const STRCMP_DOESNT_MATCH: usize = 15;
pub const STRCMP_SHOULDNT_MATCH: usize = 16;

/// Mean and standard deviation of durations, in ms as SIPp keeps them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    pub n: u64,
    pub sum: f64,
    pub sumsq: f64,
}

impl Timing {
    fn merge(&mut self, o: &Timing) {
        self.n += o.n;
        self.sum += o.sum;
        self.sumsq += o.sumsq;
    }

    fn minus(&self, o: &Timing) -> Timing {
        Timing {
            n: self.n.saturating_sub(o.n),
            sum: self.sum - o.sum,
            sumsq: self.sumsq - o.sumsq,
        }
    }

    pub fn add(&mut self, ms: f64) {
        self.n += 1;
        self.sum += ms;
        self.sumsq += ms * ms;
    }

    fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.n as f64
        }
    }

    fn stdev(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let m = self.mean();
        (self.sumsq / self.n as f64 - m * m).max(0.0).sqrt()
    }
}

/// The counters of one period, or of the whole run.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub incoming: u64,
    pub outgoing: u64,
    pub success: u64,
    pub failed: u64,
    pub failures: [u64; FAILURES.len()],
    pub out_of_call: u64,
    pub dead_call: u64,
    pub retransmissions: u64,
    pub auto_answered: u64,
    pub warnings: u64,
    pub rtd: Vec<Timing>,
    pub call_length: Timing,
    pub counters: Vec<u64>,
}

impl Counts {
    fn merge(&mut self, o: &Counts) {
        self.incoming += o.incoming;
        self.outgoing += o.outgoing;
        self.success += o.success;
        self.failed += o.failed;
        for (a, b) in self.failures.iter_mut().zip(&o.failures) {
            *a += b;
        }
        self.out_of_call += o.out_of_call;
        self.dead_call += o.dead_call;
        self.retransmissions += o.retransmissions;
        self.auto_answered += o.auto_answered;
        self.warnings += o.warnings;
        for (a, b) in self.rtd.iter_mut().zip(&o.rtd) {
            a.merge(b);
        }
        self.call_length.merge(&o.call_length);
        for (a, b) in self.counters.iter_mut().zip(&o.counters) {
            *a += b;
        }
    }

    /// What happened since `earlier` (a copy of these counters taken then).
    pub fn minus(&self, earlier: &Counts) -> Counts {
        let mut failures = self.failures;
        for (a, b) in failures.iter_mut().zip(&earlier.failures) {
            *a = a.saturating_sub(*b);
        }
        Counts {
            incoming: self.incoming.saturating_sub(earlier.incoming),
            outgoing: self.outgoing.saturating_sub(earlier.outgoing),
            success: self.success.saturating_sub(earlier.success),
            failed: self.failed.saturating_sub(earlier.failed),
            failures,
            out_of_call: self.out_of_call.saturating_sub(earlier.out_of_call),
            dead_call: self.dead_call.saturating_sub(earlier.dead_call),
            retransmissions: self.retransmissions.saturating_sub(earlier.retransmissions),
            auto_answered: self.auto_answered.saturating_sub(earlier.auto_answered),
            warnings: self.warnings.saturating_sub(earlier.warnings),
            rtd: self
                .rtd
                .iter()
                .zip(&earlier.rtd)
                .map(|(a, b)| a.minus(b))
                .collect(),
            call_length: self.call_length.minus(&earlier.call_length),
            counters: self
                .counters
                .iter()
                .zip(&earlier.counters)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }
}

/// Cumulative counters, the current period's, and the repartition tables.
#[derive(Clone, Debug)]
pub struct Stats {
    pub total: Counts,
    pub period: Counts,
    pub current_calls: u64,
    pub rt_borders: Vec<u64>,
    pub cl_borders: Vec<u64>,
    pub rt_buckets: Vec<Vec<u64>>,
    pub cl_buckets: Vec<u64>,
    /// Microsecond histograms of each RTD and of call lengths, for percentiles (never in the
    /// SIPp CSV).
    pub rt_hist: Vec<Histogram<u64>>,
    pub cl_hist: Histogram<u64>,
    /// Per scenario step, cumulative (the `-trace_screen` scenario screen).
    pub steps: Vec<StepCount>,
}

/// What happened at one scenario step, as SIPp's scenario screen counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepCount {
    /// Messages sent or received (a pause: calls that went through it).
    pub msgs: u64,
    pub retrans: u64,
    pub timeouts: u64,
    pub unexpected: u64,
}

/// 1 µs to 1 h at three significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn bucket(borders: &[u64], ms: f64) -> usize {
    borders
        .iter()
        .position(|&b| ms < b as f64)
        .unwrap_or(borders.len())
}

impl Stats {
    pub fn new(rtds: usize, counters: usize, rt_borders: Vec<u64>, cl_borders: Vec<u64>) -> Self {
        let counts = Counts {
            rtd: vec![Timing::default(); rtds],
            counters: vec![0; counters],
            ..Counts::default()
        };
        Self {
            total: counts.clone(),
            period: counts,
            current_calls: 0,
            rt_buckets: vec![vec![0; rt_borders.len() + 1]; rtds],
            rt_hist: (0..rtds).map(|_| histogram()).collect(),
            cl_hist: histogram(),
            cl_buckets: vec![0; cl_borders.len() + 1],
            rt_borders,
            cl_borders,
            steps: Vec::new(),
        }
    }

    /// Step `i`'s counters (the table grows on first use).
    pub fn step(&mut self, i: usize) -> &mut StepCount {
        if i >= self.steps.len() {
            self.steps.resize(i + 1, StepCount::default());
        }
        &mut self.steps[i]
    }

    /// Adds another worker's cumulative counters, tables and histograms to these.
    pub fn merge(&mut self, o: &Stats) {
        self.total.merge(&o.total);
        self.current_calls += o.current_calls;
        for (a, b) in self.rt_buckets.iter_mut().zip(&o.rt_buckets) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        for (x, y) in self.cl_buckets.iter_mut().zip(&o.cl_buckets) {
            *x += y;
        }
        for (a, b) in self.rt_hist.iter_mut().zip(&o.rt_hist) {
            let _ = a.add(b);
        }
        let _ = self.cl_hist.add(&o.cl_hist);
        for (i, b) in o.steps.iter().enumerate() {
            let a = self.step(i);
            a.msgs += b.msgs;
            a.retrans += b.retrans;
            a.timeouts += b.timeouts;
            a.unexpected += b.unexpected;
        }
    }

    /// Applies `f` to both the period and the cumulative counters.
    pub fn count(&mut self, f: impl Fn(&mut Counts)) {
        f(&mut self.total);
        f(&mut self.period);
    }

    pub fn rtd(&mut self, i: usize, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        self.count(|c| c.rtd[i].add(ms));
        let b = bucket(&self.rt_borders, ms);
        self.rt_buckets[i][b] += 1;
        self.rt_hist[i].saturating_record(micros(d));
    }

    pub fn call_ended(&mut self, length: Duration, failure: Option<usize>) {
        let ms = length.as_secs_f64() * 1000.0;
        self.current_calls = self.current_calls.saturating_sub(1);
        self.count(|c| {
            c.call_length.add(ms);
            match failure {
                None => c.success += 1,
                Some(f) => {
                    c.failed += 1;
                    c.failures[f] += 1;
                }
            }
        });
        let b = bucket(&self.cl_borders, ms);
        self.cl_buckets[b] += 1;
        self.cl_hist.saturating_record(micros(length));
    }
}

/// The CSV header for a scenario's RTD names, counters and repartition borders.
pub fn header(rtds: &[String], counters: &[String], rt: &[u64], cl: &[u64], d: &str) -> String {
    let mut cols: Vec<String> = [
        "StartTime",
        "LastResetTime",
        "CurrentTime",
        "ElapsedTime(P)",
        "ElapsedTime(C)",
        "TargetRate",
        "CallRate(P)",
        "CallRate(C)",
        "IncomingCall(P)",
        "IncomingCall(C)",
        "OutgoingCall(P)",
        "OutgoingCall(C)",
        "TotalCallCreated",
        "CurrentCall",
        "SuccessfulCall(P)",
        "SuccessfulCall(C)",
        "FailedCall(P)",
        "FailedCall(C)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let pair = |cols: &mut Vec<String>, n: &str| {
        cols.push(format!("{n}(P)"));
        cols.push(format!("{n}(C)"));
    };
    for f in FAILURES {
        pair(&mut cols, f);
    }
    for n in [
        "OutOfCallMsgs",
        "DeadCallMsgs",
        "Retransmissions",
        "AutoAnswered",
        "Warnings",
        "FatalErrors",
        "WatchdogMajor",
        "WatchdogMinor",
    ] {
        pair(&mut cols, n);
    }
    for r in rtds {
        pair(&mut cols, &format!("ResponseTime{r}"));
        pair(&mut cols, &format!("ResponseTime{r}StDev"));
    }
    pair(&mut cols, "CallLength");
    pair(&mut cols, "CallLengthStDev");
    for c in counters {
        pair(&mut cols, c);
    }
    for r in rtds {
        repartition_cols(&mut cols, &format!("ResponseTimeRepartition{r}"), rt);
    }
    repartition_cols(&mut cols, "CallLengthRepartition", cl);
    let mut s = String::new();
    for c in cols {
        s.push_str(&c);
        s.push_str(d);
    }
    s
}

fn repartition_cols(cols: &mut Vec<String>, name: &str, borders: &[u64]) {
    cols.push(name.to_owned());
    for b in borders {
        cols.push(format!("{name}_<{b}"));
    }
    if let Some(last) = borders.last() {
        cols.push(format!("{name}_>={last}"));
    }
}

/// `YYYY-MM-DD\tHH:MM:SS.uuuuuu\tEPOCH.uuuuuu` in local time, as SIPp writes its time columns.
pub fn timestamp(t: SystemTime) -> String {
    let (date, time, epoch) = local(t);
    format!("{date}\t{time}\t{epoch}")
}

/// `YYYY-MM-DD HH:MM:SS.uuuuuu`, as SIPp heads each entry of its message log.
pub fn log_time(t: SystemTime) -> String {
    let (date, time, _) = local(t);
    format!("{date} {time}")
}

/// RFC 2822 in GMT, as SIPp's `[date]`: `Mon, 25 Oct 2021 07:20:55 GMT`.
pub fn rfc2822(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn local(t: SystemTime) -> (String, String, String) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as libc::time_t;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: `localtime_r` only writes the `tm` we own; `secs` is a valid time_t.
    unsafe { libc::localtime_r(&secs, &mut tm) };
    let us = d.subsec_micros();
    (
        format!(
            "{:04}-{:02}-{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday
        ),
        format!(
            "{:02}:{:02}:{:02}.{us:06}",
            tm.tm_hour, tm.tm_min, tm.tm_sec
        ),
        format!("{}.{us:06}", d.as_secs()),
    )
}

fn hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `HH:MM:SS:uuuuuu` for a mean or deviation in ms.
fn hmsu(ms: f64) -> String {
    let us = (ms * 1000.0).round() as u64;
    let s = us / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}:{:06}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        us % 1_000_000
    )
}

/// A float as C++'s default `ostream` prints it (`%g`, six significant digits).
pub fn g(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    if !(-5..6).contains(&exp) {
        let s = format!("{v:.5e}");
        return s;
    }
    let decimals = (5 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Everything one CSV row needs besides the counters.
pub struct RowTimes {
    pub start: SystemTime,
    pub last_reset: SystemTime,
    pub now: SystemTime,
    pub period: Duration,
    pub elapsed: Duration,
    pub target_rate: f64,
}

/// One CSV row; the caller resets `stats.period` afterwards.
pub fn row(s: &Stats, t: &RowTimes, d: &str) -> String {
    let (p, c) = (&s.period, &s.total);
    let mut out = String::new();
    let mut put = |v: String| {
        out.push_str(&v);
        out.push_str(d);
    };
    put(timestamp(t.start));
    put(timestamp(t.last_reset));
    put(timestamp(t.now));
    put(hms(t.period));
    put(hms(t.elapsed));
    put(g(t.target_rate));
    let rate = |n: u64, d: Duration| {
        let secs = d.as_secs_f64();
        if secs > 0.0 { n as f64 / secs } else { 0.0 }
    };
    put(g(rate(p.incoming + p.outgoing, t.period)));
    put(g(rate(c.incoming + c.outgoing, t.elapsed)));
    for (a, b) in [(p.incoming, c.incoming), (p.outgoing, c.outgoing)] {
        put(a.to_string());
        put(b.to_string());
    }
    put((c.incoming + c.outgoing).to_string());
    put(s.current_calls.to_string());
    for (a, b) in [(p.success, c.success), (p.failed, c.failed)] {
        put(a.to_string());
        put(b.to_string());
    }
    for (a, b) in p.failures.iter().zip(&c.failures) {
        put(a.to_string());
        put(b.to_string());
    }
    for (a, b) in [
        (p.out_of_call, c.out_of_call),
        (p.dead_call, c.dead_call),
        (p.retransmissions, c.retransmissions),
        (p.auto_answered, c.auto_answered),
        (p.warnings, c.warnings),
        (0, 0),
        (0, 0),
        (0, 0),
    ] {
        put(a.to_string());
        put(b.to_string());
    }
    for (a, b) in p.rtd.iter().zip(&c.rtd) {
        put(hmsu(a.mean()));
        put(hmsu(b.mean()));
        put(hmsu(a.stdev()));
        put(hmsu(b.stdev()));
    }
    put(hmsu(p.call_length.mean()));
    put(hmsu(c.call_length.mean()));
    put(hmsu(p.call_length.stdev()));
    put(hmsu(c.call_length.stdev()));
    for (a, b) in p.counters.iter().zip(&c.counters) {
        put(a.to_string());
        put(b.to_string());
    }
    for buckets in &s.rt_buckets {
        put(String::new());
        for n in buckets {
            put(n.to_string());
        }
    }
    put(String::new());
    for n in &s.cl_buckets {
        put(n.to_string());
    }
    out
}

/// A one-line summary for the end of a run.
pub fn summary(s: &Stats, elapsed: Duration) -> String {
    let c = &s.total;
    let mut out = String::new();
    let _ = write!(
        out,
        "calls: created {} successful {} failed {} | retransmissions {} out-of-call {} | {:.1} calls/s over {:.1} s",
        c.incoming + c.outgoing,
        c.success,
        c.failed,
        c.retransmissions,
        c.out_of_call,
        (c.incoming + c.outgoing) as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed.as_secs_f64()
    );
    for (i, n) in c.failures.iter().enumerate().filter(|(_, n)| **n > 0) {
        let _ = write!(out, " | {} {n}", FAILURES[i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipp_uac_header_shape() {
        let h = header(
            &["1".into()],
            &[],
            &[10, 20, 30, 40, 50, 100, 150, 200],
            &[10, 50, 100, 500, 1000, 5000, 10000],
            ";",
        );
        assert_eq!(h.matches(';').count(), 95);
        assert!(h.starts_with("StartTime;LastResetTime;CurrentTime;ElapsedTime(P);"));
        assert!(h.contains(
            ";WatchdogMinor(C);ResponseTime1(P);ResponseTime1(C);ResponseTime1StDev(P);"
        ));
        assert!(h.ends_with(";CallLengthRepartition_<10000;CallLengthRepartition_>=10000;"));
        let s = Stats::new(1, 0, vec![10], vec![10]);
        let t = RowTimes {
            start: UNIX_EPOCH,
            last_reset: UNIX_EPOCH,
            now: UNIX_EPOCH,
            period: Duration::ZERO,
            elapsed: Duration::ZERO,
            target_rate: 10.0,
        };
        let header_cols = header(&["1".into()], &[], &[10], &[10], ";")
            .matches(';')
            .count();
        assert_eq!(row(&s, &t, ";").matches(';').count(), header_cols);
    }

    #[test]
    fn rfc2822_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_635_146_455);
        assert_eq!(rfc2822(t), "Mon, 25 Oct 2021 07:20:55 GMT");
        assert_eq!(rfc2822(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc2822(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn formats() {
        assert_eq!(g(98.60561), "98.6056");
        assert_eq!(g(100.0), "100");
        assert_eq!(g(0.0), "0");
        assert_eq!(hmsu(6.0), "00:00:00:006000");
        assert_eq!(hms(Duration::from_secs(3725)), "01:02:05");
    }
}
