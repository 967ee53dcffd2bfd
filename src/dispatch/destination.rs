//! One destination: its URI, Kamailio flag bits, priority and attributes as loaded, and the
//! runtime state that outlives a reload (flags as health changes them, call load, latency,
//! overload control), shared through an `Arc` and mutated with atomics only.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

use serde::Deserialize;

/// Kamailio's destination flag bits (`dispatch.h`).
pub mod flags {
    pub const INACTIVE: u8 = 1;
    pub const TRYING: u8 = 2;
    pub const DISABLED: u8 = 4;
    pub const PROBING: u8 = 8;
    pub const NODNSARES: u8 = 16;
    pub const NOPING: u8 = 32;
}

/// A stable id per destination record (Kamailio's IUID): the same across reloads while the
/// record (set, URI, duid) exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestId(pub u32);

/// Attributes from the list file's attrs token (`k=v;k=v`) or a TOML table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    /// The attrs token as written, for display.
    pub body: String,
    pub duid: Option<String>,
    pub maxload: u32,
    /// 1–100 (percent for algorithm 9, weight for 15); outside → 0, as Kamailio.
    pub weight: u32,
    /// 1–100 relative weight for algorithm 11; outside → 0.
    pub rweight: u32,
    pub cc: bool,
    /// Latency seed in ms.
    pub latency: Option<u32>,
    pub socket: Option<String>,
    pub sockname: Option<String>,
    pub ping_socket: Option<String>,
    pub ping_from: Option<String>,
    pub obproxy: Option<String>,
    pub ocmin: u32,
    pub ocmax: u32,
    pub ocrate: u32,
    /// sipdispatch's own caps (Kamailio has none): new calls per second, and calls at once;
    /// 0 = no cap. A destination at a cap is skipped like an inactive one.
    pub maxcps: u32,
    pub maxcalls: u32,
    /// Keys sipdispatch does not interpret, in order.
    pub other: Vec<(String, String)>,
}

impl Attrs {
    /// Parses `k=v;k=v`. Numbers that don't parse are errors; unknown keys are kept.
    pub fn parse(body: &str) -> Result<Self, String> {
        let mut a = Attrs {
            body: body.to_owned(),
            ocmax: 100,
            ..Attrs::default()
        };
        for item in body.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            let (k, v) = (k.trim(), v.trim());
            let num = |what: &str| -> Result<u32, String> {
                v.parse()
                    .map_err(|_| format!("attribute {what}: `{v}` is not a number"))
            };
            match k {
                "duid" => a.duid = Some(v.to_owned()),
                "maxload" => a.maxload = num(k)?,
                "weight" => a.weight = Some(num(k)?).filter(|w| (1..=100).contains(w)).unwrap_or(0),
                "rweight" => {
                    a.rweight = Some(num(k)?).filter(|w| (1..=100).contains(w)).unwrap_or(0)
                }
                "cc" => a.cc = num(k)? == 1,
                "latency" => a.latency = Some(num(k)?),
                "socket" => a.socket = Some(v.to_owned()),
                "sockname" => a.sockname = Some(v.to_owned()),
                "ping_socket" => a.ping_socket = Some(v.to_owned()),
                "ping_from" => a.ping_from = Some(v.to_owned()),
                "obproxy" => {
                    a.obproxy =
                        Some(normalise_uri(v).map_err(|e| format!("attribute obproxy: {e}"))?)
                }
                "ocmin" => a.ocmin = num(k)?.min(100),
                "ocmax" => a.ocmax = num(k)?.min(100),
                "ocrate" => a.ocrate = num(k)?.min(100),
                "maxcps" => a.maxcps = num(k)?,
                "maxcalls" => a.maxcalls = num(k)?,
                _ => a.other.push((k.to_owned(), v.to_owned())),
            }
        }
        Ok(a)
    }
}

/// A destination as configured (from a list-file line or a TOML entry), before the table is
/// built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestSpec {
    pub set: u32,
    /// With `sip:` added when the list file had no scheme.
    pub uri: String,
    pub flags: u8,
    pub priority: i32,
    pub attrs: Attrs,
    /// Where it came from, e.g. `dispatcher.list:12`, for error messages.
    pub origin: String,
}

/// Attrs in TOML: Kamailio's string form or a table.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum AttrsSpec {
    Text(String),
    Table(toml::Table),
}

/// An inline destination in the TOML config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    pub uri: String,
    #[serde(default)]
    pub flags: u8,
    #[serde(default)]
    pub priority: i32,
    pub attrs: Option<AttrsSpec>,
    /// The 1-based line of the config file it is written on (0 = unknown), filled in by the
    /// config parser so errors and `check-config` can point at it.
    #[serde(skip)]
    pub line: usize,
}

/// An inline set in the TOML config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSpec {
    pub id: u32,
    pub destinations: Vec<toml::Spanned<DestinationSpec>>,
}

impl SetSpec {
    /// Records, for each destination, the line of `text` (the config it was parsed from) where
    /// it starts.
    pub fn locate(&mut self, text: &str) {
        for d in &mut self.destinations {
            let start = d.span().start.min(text.len());
            d.get_mut().line = 1 + text.as_bytes()[..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
        }
    }

    /// The set's destinations as [`DestSpec`]s; `file` names the config in origins and errors
    /// (`file:line`, with the lines [`SetSpec::locate`] recorded).
    pub fn dest_specs(&self, file: &str) -> Result<Vec<DestSpec>, super::list::LoadError> {
        self.destinations
            .iter()
            .map(|d| d.get_ref())
            .enumerate()
            .map(|(i, d)| {
                let body = match &d.attrs {
                    None => String::new(),
                    Some(AttrsSpec::Text(s)) => s.clone(),
                    Some(AttrsSpec::Table(t)) => t
                        .iter()
                        .map(|(k, v)| match v {
                            toml::Value::String(s) => format!("{k}={s}"),
                            other => format!("{k}={other}"),
                        })
                        .collect::<Vec<_>>()
                        .join(";"),
                };
                let err = |reason: String| super::list::LoadError {
                    file: file.to_owned(),
                    line: d.line,
                    reason: format!("set {} destination {}: {reason}", self.id, i + 1),
                };
                let origin = if d.line > 0 {
                    format!("{file}:{}", d.line)
                } else {
                    format!("{file}: set {} destination {}", self.id, i + 1)
                };
                let uri = normalise_uri(&d.uri).map_err(err)?;
                let attrs = Attrs::parse(&body).map_err(err)?;
                Ok(DestSpec {
                    set: self.id,
                    uri,
                    flags: d.flags,
                    priority: d.priority,
                    attrs,
                    origin,
                })
            })
            .collect()
    }
}

/// Adds `sip:` to a URI without a scheme and checks that it has a host.
pub fn normalise_uri(uri: &str) -> Result<String, String> {
    let uri = uri.trim();
    let lower = uri.get(..5).unwrap_or(uri).to_ascii_lowercase();
    let full = if lower.starts_with("sip:") || lower.starts_with("sips:") {
        uri.to_owned()
    } else {
        format!("sip:{uri}")
    };
    let b = full.as_bytes();
    crate::sip::uri::parse_uri(b, 0, b.len())
        .ok_or_else(|| format!("`{uri}` is not a valid SIP URI"))?;
    Ok(full)
}

/// The parts of a destination URI the data plane needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub secure: bool,
    pub user: String,
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<String>,
}

impl Target {
    pub fn parse(uri: &str) -> Option<Self> {
        let b = uri.as_bytes();
        let u = crate::sip::uri::parse_uri(b, 0, b.len())?;
        let text = |s: crate::sip::Span| String::from_utf8_lossy(s.of(b)).into_owned();
        let mut transport = None;
        for p in text(u.params).split(';') {
            if let Some(v) = p.strip_prefix("transport=") {
                transport = Some(v.to_ascii_lowercase());
            }
        }
        Some(Self {
            secure: u.scheme == crate::sip::uri::Scheme::Sips,
            user: u.user.map(text).unwrap_or_default(),
            host: String::from_utf8_lossy(u.host_bare(b)).into_owned(),
            port: u.port,
            transport,
        })
    }

    /// The socket address when the host is an IP literal.
    pub fn literal_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(
            ip,
            self.port.unwrap_or(if self.secure { 5061 } else { 5060 }),
        ))
    }
}

/// Runtime state of a destination; survives reloads while the record exists.
#[derive(Debug, Default)]
pub struct DestState {
    pub flags: AtomicU8,
    /// Calls counted by algorithm 10 (never below zero).
    pub active_calls: AtomicU32,
    /// Latency estimate (EWMA) and average, µs; 0 = no samples yet.
    pub latency_est_us: AtomicU64,
    pub latency_avg_us: AtomicU64,
    /// Overload control (algorithm 64): drop rate in percent, valid until `oc_until_ms`.
    pub oc_rate: AtomicU8,
    pub oc_until_ms: AtomicU64,
    pub oc_seq: AtomicI64,
    pub oc_idx: AtomicU32,
    /// Requests sent to this destination.
    pub requests: AtomicU64,
    /// The relative weight algorithm 11 uses: the `rweight` attribute, lowered by congestion
    /// control (`cc=1`) as keepalive latency rises.
    pub rweight: AtomicU32,
    /// Responses received from this destination, by class (1xx … 6xx).
    pub replies: [AtomicU64; 6],
    /// Keepalive figures as the prober last published them, for reporting.
    pub latency: LatencyView,
    /// The caps of the destination's attributes, and where it stands against them.
    pub caps: Caps,
}

/// A destination's call caps (`maxcps`, `maxcalls`) and the state they are judged on.
#[derive(Debug, Default)]
pub struct Caps {
    pub maxcps: AtomicU32,
    pub maxcalls: AtomicU32,
    /// The second (of the shards' clock) the call count is for, and the count.
    sec: AtomicU64,
    count: AtomicU32,
    /// Set when this second's count reached `maxcps`; cleared when the second is over.
    cps_full: std::sync::atomic::AtomicBool,
    /// Selections that skipped the destination because it was at a cap.
    pub skipped: AtomicU64,
}

impl Caps {
    /// Counts a new call sent at `now_ms`.
    pub fn call(&self, now_ms: u64) {
        let cap = self.maxcps.load(Relaxed);
        if cap == 0 {
            return;
        }
        let sec = now_ms / 1000;
        if self.sec.swap(sec, Relaxed) != sec {
            self.count.store(0, Relaxed);
            self.cps_full.store(false, Relaxed);
        }
        if self.count.fetch_add(1, Relaxed) + 1 >= cap {
            self.cps_full.store(true, Relaxed);
        }
    }

    /// Opens the next second's calls (the shards call it from their periodic tick).
    pub fn tick(&self, now_ms: u64) {
        if self.cps_full.load(Relaxed) && self.sec.load(Relaxed) < now_ms / 1000 {
            self.cps_full.store(false, Relaxed);
        }
    }
}

/// Upper bounds (µs) of the keepalive latency histogram's buckets; the last is +Inf.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000,
    5_000_000,
];

/// Keepalive latency of one destination as reports show it: Kamailio's figures (µs) and a
/// cumulative histogram of every sample.
#[derive(Debug, Default)]
pub struct LatencyView {
    pub std_us: AtomicU64,
    pub max_us: AtomicU64,
    pub timeouts: AtomicU64,
    /// Samples per bucket of [`LATENCY_BUCKETS_US`] (not cumulative), then above the last.
    pub buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    pub sum_us: AtomicU64,
    pub count: AtomicU64,
}

impl LatencyView {
    /// Adds one sample to the histogram.
    pub fn observe(&self, us: u64) {
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

impl DestState {
    pub fn new(flags: u8, attrs: &Attrs) -> Self {
        let s = DestState {
            flags: AtomicU8::new(flags),
            rweight: AtomicU32::new(attrs.rweight),
            ..DestState::default()
        };
        s.caps.maxcps.store(attrs.maxcps, Relaxed);
        s.caps.maxcalls.store(attrs.maxcalls, Relaxed);
        if let Some(ms) = attrs.latency {
            s.latency_est_us.store(u64::from(ms) * 1000, Relaxed);
            s.latency_avg_us.store(u64::from(ms) * 1000, Relaxed);
        }
        s
    }

    pub fn flags(&self) -> u8 {
        self.flags.load(Relaxed)
    }

    /// Whether selection may choose it: up (Kamailio's `ds_skip_dst` says neither inactive nor
    /// disabled; trying is still selectable) and not at one of its caps.
    pub fn is_usable(&self) -> bool {
        self.is_up() && !self.at_cap()
    }

    /// Neither inactive nor disabled.
    pub fn is_up(&self) -> bool {
        Self::up_flags(self.flags())
    }

    /// Whether flag bits `f` say up (neither inactive nor disabled).
    pub fn up_flags(f: u8) -> bool {
        f & (flags::INACTIVE | flags::DISABLED) == 0
    }

    /// At its calls-per-second or concurrent-calls cap.
    pub fn at_cap(&self) -> bool {
        let maxcalls = self.caps.maxcalls.load(Relaxed);
        self.caps.cps_full.load(Relaxed) || (maxcalls > 0 && self.load() >= maxcalls)
    }

    pub fn inc_load(&self) {
        self.active_calls.fetch_add(1, Relaxed);
    }

    /// Gives back one call; saturates at zero (a counter must never wrap below it).
    pub fn dec_load(&self) {
        let _ = self
            .active_calls
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }

    pub fn load(&self) -> u32 {
        self.active_calls.load(Relaxed)
    }

    /// Counts a response from this destination.
    pub fn replied(&self, code: u16) {
        if let Some(c) = self.replies.get(usize::from(code / 100).wrapping_sub(1)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Kamailio's flag letters: `A`/`I`/`D`/`T`, then `P`/`N`/`X`.
    pub fn letters(&self) -> String {
        Self::letters_of(self.flags())
    }

    /// The letters of flag bits `f`.
    pub fn letters_of(f: u8) -> String {
        let first = if f & flags::INACTIVE != 0 {
            'I'
        } else if f & flags::DISABLED != 0 {
            'D'
        } else if f & flags::TRYING != 0 {
            'T'
        } else {
            'A'
        };
        let second = if f & flags::PROBING != 0 {
            'P'
        } else if f & flags::NOPING != 0 {
            'N'
        } else {
            'X'
        };
        format!("{first}{second}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_known_unknown_and_ranges() {
        let a = Attrs::parse("duid=xyz;maxload=20;weight=150;rweight=30;cc=1;foo=bar;latency=12")
            .unwrap();
        assert_eq!(a.duid.as_deref(), Some("xyz"));
        assert_eq!((a.maxload, a.weight, a.rweight, a.cc), (20, 0, 30, true));
        assert_eq!(a.other, vec![("foo".into(), "bar".into())]);
        assert_eq!(a.latency, Some(12));
        assert_eq!(a.ocmax, 100);
        assert!(Attrs::parse("maxload=lots").is_err());
    }

    #[test]
    fn every_kamailio_attribute_is_read() {
        let a = Attrs::parse(
            "duid=gw1;maxload=30;weight=40;rweight=60;cc=1;latency=25;socket=udp:10.0.0.1:5060;\
sockname=s1;ping_socket=udp:10.0.0.1:5062;ping_from=sip:ping@example.com;\
obproxy=sip:10.0.0.9;ocmin=10;ocmax=80;ocrate=20;pipe=p10",
        )
        .unwrap();
        assert_eq!(a.duid.as_deref(), Some("gw1"));
        assert_eq!((a.maxload, a.weight, a.rweight, a.cc), (30, 40, 60, true));
        assert_eq!(a.latency, Some(25));
        assert_eq!(a.socket.as_deref(), Some("udp:10.0.0.1:5060"));
        assert_eq!(a.sockname.as_deref(), Some("s1"));
        assert_eq!(a.ping_socket.as_deref(), Some("udp:10.0.0.1:5062"));
        assert_eq!(a.ping_from.as_deref(), Some("sip:ping@example.com"));
        assert_eq!(a.obproxy.as_deref(), Some("sip:10.0.0.9"));
        let bare = Attrs::parse("obproxy=10.0.0.9:5070").unwrap();
        assert_eq!(bare.obproxy.as_deref(), Some("sip:10.0.0.9:5070"));
        assert!(
            Attrs::parse("obproxy=sip:")
                .unwrap_err()
                .contains("obproxy")
        );
        assert_eq!((a.ocmin, a.ocmax, a.ocrate), (10, 80, 20));
        assert_eq!(a.other, [("pipe".to_owned(), "p10".to_owned())]);
        // Kamailio's code defaults, and its clamps: oc values at 100, weights outside 1-100 at 0.
        let d = Attrs::parse("").unwrap();
        assert_eq!((d.ocmin, d.ocmax, d.ocrate, d.maxload), (0, 100, 0, 0));
        let c = Attrs::parse("ocmax=250;weight=0;rweight=101;cc=0").unwrap();
        assert_eq!((c.ocmax, c.weight, c.rweight, c.cc), (100, 0, 0, false));
        // A bare key and a value containing `=` are kept as written.
        let k = Attrs::parse("flag;x=a=b").unwrap();
        assert_eq!(
            k.other,
            [
                ("flag".to_owned(), String::new()),
                ("x".to_owned(), "a=b".to_owned())
            ]
        );
    }

    #[test]
    fn uris_get_a_scheme_and_targets_parse() {
        assert_eq!(
            normalise_uri("127.0.0.1:5070").unwrap(),
            "sip:127.0.0.1:5070"
        );
        assert_eq!(normalise_uri("[::1]:5070").unwrap(), "sip:[::1]:5070");
        assert_eq!(
            normalise_uri("sips:a.example.com").unwrap(),
            "sips:a.example.com"
        );
        assert!(normalise_uri("http:x").is_err());
        let t = Target::parse("sip:10.0.0.1:5070;transport=udp").unwrap();
        assert_eq!(t.literal_addr(), Some("10.0.0.1:5070".parse().unwrap()));
        assert_eq!(t.transport.as_deref(), Some("udp"));
        let t = Target::parse("sip:[2001:db8::1]").unwrap();
        assert_eq!(
            t.literal_addr(),
            Some("[2001:db8::1]:5060".parse().unwrap())
        );
        assert_eq!(
            Target::parse("sip:media.example.com")
                .unwrap()
                .literal_addr(),
            None
        );
    }

    #[test]
    fn load_never_goes_below_zero_and_letters() {
        let s = DestState::new(flags::INACTIVE | flags::PROBING, &Attrs::default());
        s.dec_load();
        assert_eq!(s.load(), 0);
        s.inc_load();
        s.dec_load();
        s.dec_load();
        assert_eq!(s.load(), 0);
        assert_eq!(s.letters(), "IP");
        assert!(!s.is_usable());
    }
}
