//! The configuration file (TOML): listen addresses, what the proxy advertises, where the
//! destinations come from, the routes, the answer when nothing is available, and the runtime
//! (shards, pinning, I/O backend). Parsing is pure (`Config::parse` over a string); unknown
//! keys and bad values are errors that name the file, line and reason. It does not build the
//! destination table or open sockets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::dispatch::list::LoadError;
use crate::dispatch::{Algorithm, DestSpec, HashMode, KeyTemplate, Numbering, Selector, SetSpec};
use crate::engine::failover::{FailoverSpec, Policy};

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// The TOML parser's message already carries the line and column.
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    /// A value the parser accepted but sipdispatch cannot use; `line` is where its key is.
    #[error("{file}{}: {message}", line.map_or_else(String::new, |l| format!(":{l}")))]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Listen,
    pub destinations: Destinations,
    #[serde(default, rename = "routes")]
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub no_destination: NoDestination,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub tracker: TrackerConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub health: crate::health::HealthConfig,
    /// Who may send through sipdispatch (default: loopback only).
    #[serde(default)]
    pub trust: crate::engine::trust::TrustConfig,
    /// Per-source rate limit (off unless `rate` is set).
    #[serde(default)]
    pub flood: crate::engine::flood::FloodConfig,
    /// The management endpoint (JSON-RPC and metrics); none when absent.
    pub control: Option<crate::control::ControlConfig>,
    /// The file it was read from (for error messages and destination origins).
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// UDP addresses to listen on (IPv4 and IPv6; several allowed).
    pub udp: Vec<SocketAddr>,
    /// `host[:port]` written into Via and Record-Route; default: the first listen address.
    pub advertise: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destinations {
    /// A Kamailio `dispatcher.list`, relative to the config file's directory.
    pub list_file: Option<PathBuf>,
    /// Sets written inline.
    #[serde(default)]
    pub sets: Vec<SetSpec>,
}

/// Which requests a route takes; all given conditions must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub name: Option<String>,
    /// Methods (case-sensitive, as on the wire); empty = any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Request-URI user must start with this.
    pub ruri_user_prefix: Option<String>,
    /// A header's value must equal this (header name in any form/case).
    pub header: Option<HeaderMatch>,
    pub set: u32,
    pub algorithm: AlgorithmName,
    /// Failover-list limit (0 = unlimited, as Kamailio).
    #[serde(default)]
    pub limit: usize,
    #[serde(default)]
    pub record_route: bool,
    #[serde(default)]
    pub hash: HashMode,
    #[serde(default)]
    pub numbering: Numbering,
    /// Key template for algorithm 7, e.g. `{from.user}@{to.host}`.
    pub key: Option<String>,
    /// Hash only the URI user part (Kamailio's `flags=1`).
    #[serde(default)]
    pub user_only: bool,
    /// Retry an initial INVITE on the next candidate (see docs/health-and-failover.md).
    pub failover: Option<FailoverSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    pub value: String,
}

/// An algorithm by Kamailio number or by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AlgorithmName {
    Number(u32),
    Name(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoDestination {
    pub code: u16,
    pub reason: String,
    /// Seconds for a Retry-After header; none by default.
    pub retry_after: Option<u32>,
}

impl Default for NoDestination {
    fn default() -> Self {
        Self {
            code: 503,
            reason: "Service Unavailable".into(),
            retry_after: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    Uring,
    Mmsg,
    #[default]
    Auto,
}

impl std::fmt::Display for IoBackend {
    /// As the config file spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Uring => "uring",
            Self::Mmsg => "mmsg",
            Self::Auto => "auto",
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Shard threads; default: one per CPU in `cpus`, else one per available core.
    pub shards: Option<usize>,
    /// The CPU each shard is pinned to, by shard index.
    #[serde(default)]
    pub cpus: Vec<usize>,
    #[serde(default)]
    pub io: IoBackend,
    #[serde(default = "default_batch")]
    pub batch: usize,
    pub rcvbuf: Option<usize>,
    pub sndbuf: Option<usize>,
}

fn default_batch() -> usize {
    64
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            shards: None,
            cpus: Vec::new(),
            io: IoBackend::Auto,
            batch: default_batch(),
            rcvbuf: None,
            sndbuf: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerConfig {
    /// Calls tracked at most (over all shards).
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Seconds an unconfirmed call (no 2xx yet) is kept (Kamailio `ds_hash_initexpire`).
    #[serde(default = "default_expire")]
    pub init_expire: u64,
    /// Seconds a confirmed call is kept (Kamailio `ds_hash_expire`).
    #[serde(default = "default_expire")]
    pub expire: u64,
    /// INVITE transactions under failover at once (over all shards), and the largest request
    /// a record can copy; larger ones are forwarded without failover.
    #[serde(default = "default_failover_records")]
    pub failover_records: usize,
    #[serde(default = "default_failover_slot")]
    pub failover_slot: usize,
}

fn default_failover_records() -> usize {
    8192
}

fn default_failover_slot() -> usize {
    4096
}

fn default_capacity() -> usize {
    1 << 20
}

fn default_expire() -> u64 {
    7200
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            capacity: default_capacity(),
            init_expire: default_expire(),
            expire: default_expire(),
            failover_records: default_failover_records(),
            failover_slot: default_failover_slot(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Seconds between the per-shard summary lines (0 = off).
    #[serde(default = "default_summary")]
    pub summary_interval: u64,
}

fn default_summary() -> u64 {
    10
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            summary_interval: default_summary(),
        }
    }
}

/// A route with its algorithm resolved.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub methods: Vec<Vec<u8>>,
    pub ruri_user_prefix: Option<Vec<u8>>,
    pub header: Option<(Vec<u8>, Vec<u8>)>,
    pub set: u32,
    pub selector: Selector,
    pub record_route: bool,
    pub failover: Option<Policy>,
}

/// The 1-based line of `key` in the `nth` table named `table` (`[table]` or `[[table]]`), or
/// of that table's header when the key is not written there; `None` when neither is.
fn line_of(text: &str, table: &str, nth: usize, key: Option<&str>) -> Option<usize> {
    let mut seen = 0;
    let mut header = None;
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            if header.is_some() {
                break;
            }
            if l.trim_matches(['[', ']']).trim() == table {
                if seen == nth {
                    header = Some(n + 1);
                }
                seen += 1;
            }
            continue;
        }
        if header.is_some()
            && let Some(k) = key
            && l.strip_prefix(k)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(n + 1);
        }
    }
    header
}

impl Config {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The sections of `new` that differ from this (running) config among those a reload does
    /// not apply: all but the destinations and the keepalives' outbound proxy.
    pub fn start_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (self.start_only_sections(), new.start_only_sections());
        a.iter()
            .zip(&b)
            .filter(|(x, y)| x.1 != y.1)
            .map(|(x, _)| x.0)
            .collect()
    }

    /// Each start-only section by name, as text to compare.
    fn start_only_sections(&self) -> [(&'static str, String); 10] {
        let mut health = self.health.clone();
        health.outbound_proxy = None;
        [
            ("listen", format!("{:?}", self.listen)),
            ("routes", format!("{:?}", self.routes)),
            ("no_destination", format!("{:?}", self.no_destination)),
            ("runtime", format!("{:?}", self.runtime)),
            ("tracker", format!("{:?}", self.tracker)),
            ("log", format!("{:?}", self.log)),
            ("health", format!("{health:?}")),
            ("trust", format!("{:?}", self.trust)),
            ("flood", format!("{:?}", self.flood)),
            ("control", format!("{:?}", self.control)),
        ]
    }

    /// Parses config text; `file` is used in error messages and to resolve relative paths.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        // `at` = (table, which one of an array of tables, key).
        let invalid = |at: (&str, usize, Option<&str>), message: String| ConfigError::Invalid {
            file: file.to_owned(),
            line: line_of(text, at.0, at.1, at.2),
            message,
        };
        if cfg.listen.udp.is_empty() {
            return Err(invalid(
                ("listen", 0, Some("udp")),
                "listen.udp: at least one address is needed".into(),
            ));
        }
        if let Some(a) = cfg.listen.advertise.as_deref()
            && !valid_advertise(a)
        {
            return Err(invalid(
                ("listen", 0, Some("advertise")),
                format!(
                    "listen.advertise: `{a}` is not host[:port] (a name, an IPv4 address or a bracketed IPv6 address, port 1-65535)"
                ),
            ));
        }
        if let Some(p) = cfg.destinations.list_file.as_mut()
            && p.is_relative()
        {
            *p = file.parent().unwrap_or(Path::new(".")).join(&*p);
        }
        cfg.file = file.to_owned();
        for set in &mut cfg.destinations.sets {
            set.locate(text);
        }
        // Inline destinations are checked here, so a bad one is refused with its line.
        for set in &cfg.destinations.sets {
            set.dest_specs(&file.display().to_string())
                .map_err(|e| ConfigError::Invalid {
                    file: file.to_owned(),
                    line: Some(e.line).filter(|&l| l > 0),
                    message: format!("destinations.sets: {}", e.reason),
                })?;
        }
        if cfg.destinations.list_file.is_none() && cfg.destinations.sets.is_empty() {
            return Err(invalid(
                ("destinations", 0, None),
                "destinations: give a list_file or at least one inline set".into(),
            ));
        }
        if cfg.routes.is_empty() {
            return Err(invalid(
                ("", 0, None),
                "routes: at least one [[routes]] is needed".into(),
            ));
        }
        if !(300..=699).contains(&cfg.no_destination.code) {
            return Err(invalid(
                ("no_destination", 0, Some("code")),
                format!(
                    "no_destination.code: {} is not a final error code (300-699)",
                    cfg.no_destination.code
                ),
            ));
        }
        if cfg.runtime.batch == 0 || cfg.runtime.batch > 1024 {
            return Err(invalid(
                ("runtime", 0, Some("batch")),
                "runtime.batch: must be 1..=1024".into(),
            ));
        }
        if cfg.runtime.shards == Some(0) {
            return Err(invalid(
                ("runtime", 0, Some("shards")),
                "runtime.shards: must be at least 1".into(),
            ));
        }
        let cpus = &cfg.runtime.cpus;
        if let Some((i, c)) = cpus
            .iter()
            .enumerate()
            .find(|(i, c)| cpus[..*i].contains(c))
        {
            return Err(invalid(
                ("runtime", 0, Some("cpus")),
                format!(
                    "runtime.cpus: CPU {c} is listed twice (shards {i} and another would share it)"
                ),
            ));
        }
        if let Some(n) = cfg.runtime.shards
            && !cpus.is_empty()
            && n != cpus.len()
        {
            return Err(invalid(
                ("runtime", 0, Some("shards")),
                format!(
                    "runtime.shards is {n} but runtime.cpus names {} CPUs: one CPU per shard, or leave either out",
                    cpus.len()
                ),
            ));
        }
        if cfg.tracker.capacity == 0 {
            return Err(invalid(
                ("tracker", 0, Some("capacity")),
                "tracker.capacity: must be at least 1".into(),
            ));
        }
        cfg.flood
            .limiter()
            .map_err(|(key, m)| invalid(("flood", 0, Some(key)), m))?;
        cfg.trust
            .resolve(&cfg.listen.udp)
            .map_err(|(key, m)| invalid(("trust", 0, Some(key)), m))?;
        if let Some(c) = &cfg.control {
            c.validate()
                .map_err(|m| invalid(("control", 0, Some("listen")), m))?;
        }
        cfg.health
            .probe_settings()
            .map_err(|(key, m)| invalid(("health", 0, Some(key)), m))?;
        if let Some(a) = cfg.health.ping_socket
            && !cfg.listen.udp.contains(&a)
        {
            return Err(invalid(
                ("health", 0, Some("ping_socket")),
                format!("health.ping_socket: {a} is not one of listen.udp"),
            ));
        }
        for (i, r) in cfg.routes.iter().enumerate() {
            cfg.route(i, r).map_err(|(key, m)| {
                invalid(("routes", i, Some(key)), format!("routes[{i}]: {m}"))
            })?;
        }
        Ok(cfg)
    }

    /// The route; on error, the key at fault and why.
    fn route(&self, i: usize, r: &RouteSpec) -> Result<Route, (&'static str, String)> {
        let algorithm = match &r.algorithm {
            AlgorithmName::Number(n) => Algorithm::from_number(*n, r.numbering),
            AlgorithmName::Name(s) => Algorithm::from_name(s, r.numbering),
        }
        .map_err(|e| ("algorithm", e.to_string()))?;
        let key = r
            .key
            .as_deref()
            .map(KeyTemplate::parse)
            .transpose()
            .map_err(|e| ("key", format!("key: {e}")))?;
        if algorithm == Algorithm::HashKey && key.is_none() {
            return Err((
                "algorithm",
                "algorithm 7 (hash-key) needs a `key` template".into(),
            ));
        }
        Ok(Route {
            name: r.name.clone().unwrap_or_else(|| format!("route{i}")),
            methods: r.methods.iter().map(|m| m.as_bytes().to_vec()).collect(),
            ruri_user_prefix: r.ruri_user_prefix.as_ref().map(|p| p.as_bytes().to_vec()),
            header: r
                .header
                .as_ref()
                .map(|h| (h.name.as_bytes().to_vec(), h.value.as_bytes().to_vec())),
            set: r.set,
            selector: Selector {
                algorithm,
                // OpenSIPS numbering hashes the OpenSIPS way unless told otherwise.
                hash: match (r.numbering, r.hash) {
                    (Numbering::Opensips, HashMode::Kamailio) => HashMode::Opensips,
                    (_, h) => h,
                },
                user_only: r.user_only,
                key,
                limit: r.limit,
            },
            record_route: r.record_route,
            failover: r
                .failover
                .as_ref()
                .map(FailoverSpec::policy)
                .transpose()
                .map_err(|e| ("failover", e))?,
        })
    }

    /// The routes, in order, with algorithms resolved (validated by `parse`).
    pub fn routes(&self) -> Vec<Route> {
        self.routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.route(i, r).ok())
            .collect()
    }

    /// Every destination: the list file's, then the inline sets'.
    pub fn dest_specs(&self) -> Result<Vec<DestSpec>, LoadError> {
        let mut specs = match &self.destinations.list_file {
            Some(p) => crate::dispatch::list::load(p)?,
            None => Vec::new(),
        };
        let file = self.file.display().to_string();
        for set in &self.destinations.sets {
            specs.extend(set.dest_specs(&file)?);
        }
        Ok(specs)
    }

    /// The `host` and `port` to advertise.
    pub fn advertise(&self) -> (String, u16) {
        let first = self.listen.udp[0];
        match self.listen.advertise.as_deref() {
            Some(a) => split_hostport(a).unwrap_or((a.to_owned(), first.port())),
            None => (host_text(first), first.port()),
        }
    }

    /// Shard count: explicit, else one per pinned CPU, else one per available core.
    pub fn shards(&self) -> usize {
        self.runtime
            .shards
            .unwrap_or(if self.runtime.cpus.is_empty() {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                self.runtime.cpus.len()
            })
    }

    pub fn tracker_expiry(&self) -> (Duration, Duration) {
        (
            Duration::from_secs(self.tracker.init_expire),
            Duration::from_secs(self.tracker.expire),
        )
    }
}

fn host_text(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => v.ip().to_string(),
        SocketAddr::V6(v) => format!("[{}]", v.ip()),
    }
}

/// Whether an `advertise` value can be written into Via and Record-Route as it is.
fn valid_advertise(a: &str) -> bool {
    let Some((host, port)) = split_hostport(a) else {
        return false;
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }
    };
    host_ok && port != 0
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]`.
fn split_hostport(s: &str) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 5060,
            None => return None,
        };
        return Some((format!("[{h}]"), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_owned(), p.parse().ok()?)),
        _ => Some((s.to_owned(), 5060)),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
