//! The `[health]` section of the config file: keepalive timing, method and From, Kamailio's
//! probing mode and thresholds, accepted reply codes, latency statistics, and the commands
//! run when a destination goes down or comes back. Deserialised and checked here; turned into
//! the prober's [`ProbeSettings`].
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::prober::ProbeSettings;
use super::state::{AcceptCodes, Machine, ProbingMode};

/// A duration written as seconds (`2`, `0.5`) or with a unit (`"500ms"`, `"2s"`, `"1m"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "DurationText")]
pub struct Period(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationText {
    Int(u64),
    Float(f64),
    Text(String),
}

impl TryFrom<DurationText> for Period {
    type Error = String;
    fn try_from(t: DurationText) -> Result<Self, String> {
        let secs = |f: f64| {
            Duration::try_from_secs_f64(f)
                .map(Period)
                .map_err(|_| format!("{f}: not a duration"))
        };
        match t {
            DurationText::Int(n) => Ok(Period(Duration::from_secs(n))),
            DurationText::Float(f) => secs(f),
            DurationText::Text(s) => {
                let s = s.trim();
                let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
                    (n, 0.001)
                } else if let Some(n) = s.strip_suffix('s') {
                    (n, 1.0)
                } else if let Some(n) = s.strip_suffix('m') {
                    (n, 60.0)
                } else {
                    (s, 1.0)
                };
                let n: f64 = num.trim().parse().map_err(|_| {
                    format!("`{s}`: expected a duration such as \"500ms\" or \"2s\"")
                })?;
                secs(n * scale)
            }
        }
    }
}

/// The `[health]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Time between keepalive rounds; 0 = no keepalives (Kamailio `ds_ping_interval`).
    pub ping_interval: Period,
    /// How long a keepalive waits for its reply (Kamailio `ds_ping_fr_timeout`, but 2 s
    /// rather than tm's 30 s).
    pub ping_timeout: Period,
    pub ping_method: String,
    pub ping_from: String,
    /// The listen address keepalives leave from; default: the first of the destination's
    /// address family.
    pub ping_socket: Option<SocketAddr>,
    /// SIP URI of the outbound proxy keepalives are sent through (Kamailio
    /// `ds_outbound_proxy`); a destination's `obproxy` attribute overrides it.
    pub outbound_proxy: Option<String>,
    /// Kamailio `ds_probing_mode`, 0–3.
    pub probing_mode: ProbingMode,
    pub probing_threshold: u32,
    pub inactive_threshold: u32,
    /// Extra replies that count as success, `code=NNN;class=N;…`.
    pub ping_reply_codes: String,
    /// Global keepalive switch at start (`dispatcher.ping_active`).
    pub pinging: bool,
    pub latency_stats: bool,
    /// EWMA weight of a new latency sample (Kamailio's `ds_latency_estimator_alpha` / 1000).
    pub latency_alpha: f64,
    /// Keep latency statistics across reloads (Kamailio `ds_retain_latency_stats`).
    pub retain_latency_stats: bool,
    /// Shell commands run when a destination stops or starts being selectable, with
    /// `SIPDISPATCH_URI`, `SIPDISPATCH_SET`, `SIPDISPATCH_STATE`, `SIPDISPATCH_CODE` set.
    pub on_down: Option<String>,
    pub on_up: Option<String>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            ping_interval: Period(Duration::ZERO),
            ping_timeout: Period(Duration::from_secs(2)),
            ping_method: "OPTIONS".into(),
            ping_from: "sip:dispatcher@localhost".into(),
            ping_socket: None,
            outbound_proxy: None,
            probing_mode: ProbingMode::Flagged,
            probing_threshold: 1,
            inactive_threshold: 1,
            ping_reply_codes: String::new(),
            pinging: true,
            latency_stats: true,
            latency_alpha: 0.1,
            retain_latency_stats: false,
            on_down: None,
            on_up: None,
        }
    }
}

impl HealthConfig {
    /// The prober's settings; on error, the key at fault and why.
    pub fn probe_settings(&self) -> Result<ProbeSettings, (&'static str, String)> {
        let accept = AcceptCodes::parse(&self.ping_reply_codes)
            .map_err(|e| ("ping_reply_codes", format!("health.ping_reply_codes: {e}")))?;
        if self.probing_threshold == 0 || self.inactive_threshold == 0 {
            return Err((
                if self.probing_threshold == 0 {
                    "probing_threshold"
                } else {
                    "inactive_threshold"
                },
                "health: thresholds must be at least 1".into(),
            ));
        }
        if !(self.latency_alpha > 0.0 && self.latency_alpha <= 1.0) {
            return Err((
                "latency_alpha",
                "health.latency_alpha: must be in (0, 1]".into(),
            ));
        }
        let method = self.ping_method.trim();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err((
                "ping_method",
                format!("health.ping_method: `{method}` is not a method"),
            ));
        }
        let from = crate::dispatch::destination::normalise_uri(&self.ping_from)
            .map_err(|e| ("ping_from", format!("health.ping_from: {e}")))?;
        self.outbound_proxy()
            .map_err(|e| ("outbound_proxy", format!("health.outbound_proxy: {e}")))?;
        if !self.ping_interval.0.is_zero() && self.ping_timeout.0.is_zero() {
            return Err((
                "ping_timeout",
                "health.ping_timeout: must be more than 0".into(),
            ));
        }
        Ok(ProbeSettings {
            interval_ms: self.ping_interval.0.as_millis() as u64,
            timeout_ms: self.ping_timeout.0.as_millis() as u64,
            method: method.to_owned(),
            from,
            machine: Machine {
                mode: self.probing_mode,
                probing_threshold: self.probing_threshold,
                inactive_threshold: self.inactive_threshold,
            },
            accept,
            latency_stats: self.latency_stats,
            alpha: self.latency_alpha,
        })
    }

    /// The outbound proxy for keepalives, with `sip:` added if it had no scheme.
    pub fn outbound_proxy(&self) -> Result<Option<String>, String> {
        self.outbound_proxy
            .as_deref()
            .map(crate::dispatch::destination::normalise_uri)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let p = |s: &str| toml::from_str::<HealthConfig>(s).map(|h| h.ping_interval.0);
        assert_eq!(p("ping_interval = 3").unwrap(), Duration::from_secs(3));
        assert_eq!(
            p("ping_interval = 0.25").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            p("ping_interval = \"500ms\"").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(p("ping_interval = \"2s\"").unwrap(), Duration::from_secs(2));
        assert!(p("ping_interval = \"soon\"").is_err());
        assert!(p("ping_intervall = 1").is_err());
        assert!(p("probing_mode = 4").is_err());
    }

    #[test]
    fn settings_are_checked() {
        let s = |t: &str| toml::from_str::<HealthConfig>(t).unwrap().probe_settings();
        assert_eq!(
            s("ping_reply_codes = \"code=99\"").unwrap_err().0,
            "ping_reply_codes"
        );
        assert_eq!(
            s("probing_threshold = 0").unwrap_err().0,
            "probing_threshold"
        );
        assert_eq!(
            s("ping_method = \"OP TIONS\"").unwrap_err().0,
            "ping_method"
        );
        assert_eq!(
            s("outbound_proxy = \"sip:\"").unwrap_err().0,
            "outbound_proxy"
        );
        let ok = s("ping_interval = 1\nprobing_mode = 1\nping_from = \"lb@example.net\"").unwrap();
        assert_eq!((ok.interval_ms, ok.timeout_ms), (1000, 2000));
        assert_eq!(ok.from, "sip:lb@example.net");
        assert_eq!(ok.machine.mode, ProbingMode::All);
    }
}
