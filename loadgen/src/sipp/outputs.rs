//! The files a run writes, with SIPp's names and shapes: the `-trace_stat` CSV (one row at
//! start, every `-fd`, at exit), `-trace_err` (created at the first event), `-trace_logs`
//! (`<log>` actions) and `-trace_rtt` (`Date_ms;response_time_ms;rtd_no`, flushed every
//! `-rtt_freq` rows). Response times in the rtt file keep microseconds, which SIPp's coarse
//! clock cannot.

use std::fs::File;
use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime};

use super::Fatal;
use super::args::Options;
use super::scenario::Scenario;
use super::stats::{self, Counts, RowTimes, Stats};
use super::worker::Slot;

fn create(path: &str) -> Result<File, Fatal> {
    File::create(path).map_err(|e| Fatal(255, format!("{path}: {e}")))
}

pub struct Outputs {
    csv: Option<File>,
    delimiter: String,
    err_path: String,
    err_log: Option<File>,
    logs: Option<File>,
    rtt: Option<File>,
    rtt_freq: usize,
    rtt_rows: String,
    rtt_pending: usize,
    rtd_names: Vec<String>,
    pub start: Instant,
    wall_start: SystemTime,
    last_row: (Instant, SystemTime),
    /// The cumulative counters at the last row: the next row's `(P)` columns are the
    /// difference.
    at_last_row: Option<Counts>,
}

impl Outputs {
    /// Opens the files asked for; `stem` and `pid` make SIPp's default names.
    pub fn open(o: &Options, sc: &Scenario, stem: &str, pid: u32) -> Result<Self, Fatal> {
        let mut csv = None;
        if o.trace_stat {
            let path = o
                .stat_file
                .clone()
                .unwrap_or_else(|| format!("{stem}_{pid}_.csv"));
            let mut f = create(&path)?;
            let h = stats::header(
                &sc.rtds,
                &sc.counters,
                &sc.rt_repartition,
                &sc.cl_repartition,
                &o.stat_delimiter,
            );
            writeln!(f, "{h}").map_err(|e| Fatal(255, format!("{path}: {e}")))?;
            csv = Some(f);
        }
        let logs = if o.trace_logs {
            Some(create(&format!("{stem}_{pid}_logs.log"))?)
        } else {
            None
        };
        let rtt = if o.trace_rtt {
            let mut f = create(&format!("{stem}_{pid}_rtt.csv"))?;
            let _ = writeln!(f, "Date_ms;response_time_ms;rtd_no");
            Some(f)
        } else {
            None
        };
        let now = Instant::now();
        let wall = SystemTime::now();
        Ok(Self {
            csv,
            delimiter: o.stat_delimiter.clone(),
            err_path: format!("{stem}_{pid}_errors.log"),
            err_log: None,
            logs,
            rtt,
            rtt_freq: o.rtt_freq.max(1),
            rtt_rows: String::new(),
            rtt_pending: 0,
            rtd_names: sc.rtds.clone(),
            start: now,
            wall_start: wall,
            last_row: (now, wall),
            at_last_row: None,
        })
    }

    /// Writes what a worker queued since the last turn: error-log entries, `<log>` lines,
    /// response times.
    pub fn drain(&mut self, slot: &mut Slot) -> Result<(), Fatal> {
        let lines = &mut slot.errors;
        if !lines.is_empty() {
            if self.err_log.is_none() {
                let mut f = create(&self.err_path)?;
                let _ = writeln!(f, "The following events occurred:");
                self.err_log = Some(f);
            }
            if let Some(f) = self.err_log.as_mut() {
                for l in lines.drain(..) {
                    let _ = writeln!(f, "{}      {l}", stats::log_time(SystemTime::now()));
                }
            }
        }
        if let Some(f) = self.logs.as_mut() {
            for l in slot.logs.drain(..) {
                let _ = writeln!(f, "{l}");
            }
        }
        if self.rtt.is_some() {
            for (at, d, r) in slot.rtt.drain(..) {
                let date = (at - self.start).as_secs_f64() * 1000.0;
                let name = self.rtd_names.get(r).map_or("", String::as_str);
                self.rtt_rows.push_str(&format!(
                    "{};{};{name}\n",
                    stats::g(date),
                    stats::g(d.as_secs_f64() * 1000.0)
                ));
                self.rtt_pending += 1;
            }
            if self.rtt_pending >= self.rtt_freq {
                self.flush_rtt();
            }
        }
        Ok(())
    }

    fn flush_rtt(&mut self) {
        if let Some(f) = self.rtt.as_mut() {
            let _ = f.write_all(self.rtt_rows.as_bytes());
        }
        self.rtt_rows.clear();
        self.rtt_pending = 0;
    }

    /// Time for the next `-fd` row?
    pub fn row_due(&self, now: Instant, period: Duration) -> bool {
        now - self.last_row.0 >= period
    }

    /// One CSV row of the merged counters `s` (whose `period` is filled in here).
    pub fn row(&mut self, s: &mut Stats, now: Instant, target_rate: f64) {
        s.period = match &self.at_last_row {
            Some(earlier) => s.total.minus(earlier),
            None => s.total.clone(),
        };
        if let Some(f) = self.csv.as_mut() {
            let t = RowTimes {
                start: self.wall_start,
                last_reset: self.last_row.1,
                now: SystemTime::now(),
                period: now - self.last_row.0,
                elapsed: now - self.start,
                target_rate,
            };
            let _ = writeln!(f, "{}", stats::row(s, &t, &self.delimiter));
        }
        self.at_last_row = Some(s.total.clone());
        self.last_row = (now, SystemTime::now());
    }

    /// The last row and the rest of the rtt file.
    pub fn finish(&mut self, s: &mut Stats, now: Instant, target_rate: f64) {
        self.row(s, now, target_rate);
        self.flush_rtt();
    }
}
