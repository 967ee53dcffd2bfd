//! Wiring a running sipdispatch together from a [`Config`]: the destination table (list file
//! and inline sets, host names resolved once here), the shared state the shards read, the
//! shard handlers on the I/O layer, and the periodic summary line.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::{Config, IoBackend};
use crate::dispatch::Table;
use crate::dispatch::destination::Target;
use crate::engine::{Counters, Shard, Shared, Snapshot, owner};
use crate::health::{Cause, Change, HealthConfig, Prober};
use crate::io::{self, Backend, Handler, IoConfig, Tx};
use crate::sip::proxy::Identity;

/// Why sipdispatch could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Load(#[from] crate::dispatch::list::LoadError),
    #[error("{0}")]
    Table(String),
    #[error("route `{route}` uses set {set}, which has no destinations")]
    UnknownSet { route: String, set: u32 },
    #[error(transparent)]
    Io(#[from] io::IoError),
}

/// Every address a destination host resolves to, at load time (never per message).
pub fn resolve_all(t: &Target) -> Vec<SocketAddr> {
    let port = t.port.unwrap_or(if t.secure { 5061 } else { 5060 });
    (t.host.as_str(), port)
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default()
}

/// Resolves what a freshly built table names: each destination's address (the first its host
/// resolves to), every other address of its host, and its keepalive proxy (its `obproxy`, else
/// `default_proxy`). What does not resolve is logged; it is never retried per message.
pub fn resolve_names(
    table: &mut Table,
    default_proxy: Option<&str>,
    all: fn(&Target) -> Vec<SocketAddr>,
) {
    // One lookup per host and port, however many destinations and proxies name it.
    let mut seen: HashMap<(String, Option<u16>, bool), Vec<SocketAddr>> = HashMap::new();
    let mut lookup = |t: &Target| {
        seen.entry((t.host.clone(), t.port, t.secure))
            .or_insert_with(|| all(t))
            .clone()
    };
    table.resolve_with(|t| lookup(t).into_iter().next());
    // A host name may stand for several servers: each of its addresses may send in-dialog
    // requests and responses (Kamailio's `ds_dns_match_all`).
    table.add_resolved(&mut lookup);
    for d in table.destinations().filter(|d| d.addr.is_none()) {
        tracing::warn!(
            "{}: cannot resolve {}; it will not receive traffic",
            d.origin,
            d.uri
        );
    }
    let unresolved = table.resolve_ping_proxies(default_proxy, |uri| {
        lookup(&Target::parse(uri)?).into_iter().next()
    });
    for (d, proxy) in unresolved {
        tracing::warn!(
            "{}: cannot resolve keepalive proxy {proxy} of {}; it gets no keepalives",
            d.origin,
            d.uri
        );
    }
}

/// Builds the destination table a config describes, keeping the runtime state of
/// `previous`'s surviving destinations.
pub fn build_table(cfg: &Config, previous: Option<&Table>) -> Result<Table, StartError> {
    let mut table = Table::build(cfg.dest_specs()?, previous).map_err(StartError::Table)?;
    // Checked when the config was loaded; a bad value here means no default proxy.
    let default_proxy = cfg.health.outbound_proxy().ok().flatten();
    resolve_names(&mut table, default_proxy.as_deref(), resolve_all);
    for r in cfg.routes() {
        if table.set(r.set).is_none() {
            return Err(StartError::UnknownSet {
                route: r.name,
                set: r.set,
            });
        }
    }
    Ok(table)
}

/// The state shared by all shards.
pub fn shared(cfg: &Config, table: Table) -> Result<Shared, StartError> {
    let (host, port) = cfg.advertise();
    let (init, exp) = cfg.tracker_expiry();
    let trust = cfg
        .trust
        .resolve(&cfg.listen.udp)
        .map_err(|(_, m)| StartError::Table(m))?;
    Ok(Shared {
        identity: Identity::new(&host, port, &cfg.listen.udp),
        routes: cfg.routes(),
        table: ArcSwap::from_pointee(table),
        no_destination: cfg.no_destination.clone(),
        init_expire_ms: init.as_millis() as u64,
        expire_ms: exp.as_millis() as u64,
        retain_latency_stats: cfg.health.retain_latency_stats,
        trust,
        flood: cfg.flood.clone(),
        failover_records: cfg.tracker.failover_records.div_ceil(cfg.shards()),
        failover_slot: cfg.tracker.failover_slot,
        epoch: Instant::now(),
    })
}

impl Handler for Shard {
    fn admit(&mut self, now: Instant, src: SocketAddr) -> bool {
        Shard::admit(self, now, src)
    }

    fn steer(&mut self, data: &[u8], nshards: usize) -> usize {
        owner(data, nshards)
    }

    fn on_datagram(&mut self, now: Instant, src: SocketAddr, data: &[u8], tx: &mut Tx) {
        self.handle(now, tx.current, src, data, tx);
    }

    fn on_tick(&mut self, now: Instant, tx: &mut Tx) {
        tx.current = self.ping_socket;
        self.tick(now, tx);
    }
}

/// The I/O settings a config asks for.
pub fn io_config(cfg: &Config) -> IoConfig {
    let shards = cfg.shards();
    IoConfig {
        listen: cfg.listen.udp.clone(),
        shards,
        cpus: (0..shards)
            .map(|i| cfg.runtime.cpus.get(i).copied())
            .collect(),
        backend: match cfg.runtime.io {
            IoBackend::Uring => Backend::Uring,
            IoBackend::Mmsg => Backend::Mmsg,
            IoBackend::Auto => Backend::Auto,
        },
        batch: cfg.runtime.batch,
        rcvbuf: cfg.runtime.rcvbuf.or(Some(4 << 20)),
        sndbuf: cfg.runtime.sndbuf.or(Some(4 << 20)),
        ..IoConfig::default()
    }
}

/// A running instance: its shards' counters and the data plane.
pub struct Instance {
    pub shared: Arc<Shared>,
    pub counters: Vec<Arc<Counters>>,
    pub io: io::Running,
    /// The keepalive switch the prober reads.
    pub ping_active: Arc<AtomicBool>,
}

/// Starts the data plane for `cfg`; it runs until `stop` is set.
pub fn start(cfg: &Config, stop: Arc<AtomicBool>) -> Result<Instance, StartError> {
    let table = build_table(cfg, None)?;
    let shared = Arc::new(shared(cfg, table)?);
    let io_cfg = io_config(cfg);
    let per_shard = cfg.tracker.capacity.div_ceil(io_cfg.shards.max(1));
    // State changes (keepalives, failover marks) from every shard go to one logging thread.
    let (changes, rx) = std::sync::mpsc::channel();
    health_events(rx, cfg.health.clone());
    let mut shards: Vec<Shard> = (0..io_cfg.shards)
        .map(|i| Shard::new(Arc::clone(&shared), i, per_shard).report_to(changes.clone()))
        .collect();
    let settings = cfg
        .health
        .probe_settings()
        .map_err(|(_, m)| StartError::Table(m))?;
    let ping_active = Arc::new(AtomicBool::new(cfg.health.pinging));
    if settings.interval_ms > 0 {
        // One shard probes; its keepalives' Call-IDs make the replies come back to it.
        let mut prober = Prober::new(settings, 0, shards.len());
        prober.active = Arc::clone(&ping_active);
        let first = shards.remove(0);
        shards.insert(0, first.with_prober(prober, Some(changes.clone())));
    }
    let ping_socket = cfg
        .health
        .ping_socket
        .and_then(|a| cfg.listen.udp.iter().position(|&l| l == a))
        .unwrap_or(0);
    for s in &mut shards {
        s.ping_socket = ping_socket;
    }
    for (i, a) in cfg.listen.udp.iter().enumerate() {
        tracing::info!(
            "trust: initial requests on {a} only from {} (and in-dialog ones from destinations too)",
            shared.trust.describe(i)
        );
    }
    let counters: Vec<_> = shards.iter().map(|s| Arc::clone(&s.counters)).collect();
    let io = io::start(io_cfg, shards, stop)?;
    Ok(Instance {
        shared,
        counters,
        io,
        ping_active,
    })
}

/// Logs one summary line per shard every `every`, until `stop`, calling `each` every 100 ms
/// (for work of the main thread, such as a reload asked for by a signal).
pub fn summaries(inst: &Instance, every: Duration, stop: &AtomicBool, mut each: impl FnMut()) {
    let mut last: Vec<Snapshot> = inst.counters.iter().map(|c| c.snapshot()).collect();
    let mut next = Instant::now() + every;
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        each();
        if every.is_zero() || Instant::now() < next {
            continue;
        }
        next += every;
        for (i, c) in inst.counters.iter().enumerate() {
            let now = c.snapshot();
            let io = inst.io.counters[i].snapshot();
            tracing::info!(
                "shard {i}: {} | last {}s: rx={} fwd={} | io rx={} tx={} tx_errors={} truncated={} handoff_out={} handoff_in={} handoff_full={}",
                now,
                every.as_secs(),
                now.since(&last[i]).received,
                now.since(&last[i]).forwarded(),
                io.rx,
                io.tx,
                io.tx_errors,
                io.truncated,
                io.handoff_out,
                io.handoff_in,
                io.handoff_full
            );
            last[i] = now;
        }
    }
}

/// Logs every destination state change the prober reports and runs the configured hook when
/// a destination stops or starts being selectable, on a thread of its own so that a slow hook
/// never holds up a shard.
fn health_events(rx: Receiver<Change>, cfg: HealthConfig) {
    let spawned = std::thread::Builder::new()
        .name("health-events".into())
        .spawn(move || {
            for c in rx {
                let old = crate::dispatch::DestState::letters_of(c.old);
                let new = crate::dispatch::DestState::letters_of(c.new);
                let why = match c.cause {
                    Cause::Failover => "failover",
                    Cause::Keepalive if c.code == 408 => "no reply",
                    Cause::Keepalive => "reply",
                };
                tracing::info!(
                    "destination {} (set {}): {old} -> {new} ({why}, code {})",
                    c.uri,
                    c.set,
                    c.code
                );
                let hook = match c.up {
                    Some(true) => cfg.on_up.as_deref(),
                    Some(false) => cfg.on_down.as_deref(),
                    None => None,
                };
                if let Some(cmd) = hook {
                    run_hook(cmd, &c, &new);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the health event thread: {e}");
    }
}

fn run_hook(cmd: &str, c: &Change, state: &str) {
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("SIPDISPATCH_URI", &c.uri)
        .env("SIPDISPATCH_SET", c.set.to_string())
        .env("SIPDISPATCH_STATE", state)
        .env("SIPDISPATCH_CODE", c.code.to_string())
        .env(
            "SIPDISPATCH_EVENT",
            if c.up == Some(true) {
                "dst-up"
            } else {
                "dst-down"
            },
        )
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => tracing::warn!("hook `{cmd}` for {}: {s}", c.uri),
        Err(e) => tracing::warn!("hook `{cmd}` for {}: {e}", c.uri),
    }
}
