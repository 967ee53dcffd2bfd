//! The data plane's I/O: one thread per shard, pinned to its CPU, each with its own
//! `SO_REUSEPORT` socket per listen address and its own receive/send machinery — io_uring
//! (multishot `RecvMsgMulti` over a provided buffer ring; Linux ≥ 6.0, buffer rings ≥ 5.19) or
//! `recvmmsg`/`sendmmsg` — behind one loop. It moves datagrams between sockets and a
//! [`Handler`]; it never interprets SIP. All of the project's `unsafe` lives here.
//!
//! The kernel puts everything from one upstream 4-tuple on one socket, so the receiving shard
//! asks the handler which shard owns each datagram and hands it over when it is another one;
//! the owner handles its queue in order, so a call's messages keep their order.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod counters;
pub mod handoff;
mod mmsg;
pub mod sys;
pub mod tx;
mod uring;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use counters::{IoCounters, IoSnapshot};
pub use tx::Tx;

use handoff::Handoff;

/// Which receive/send machinery a shard runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Mmsg,
    /// io_uring when the kernel allows it, else mmsg (said in the log).
    Auto,
}

/// What the I/O layer needs to know.
#[derive(Clone, Debug)]
pub struct IoConfig {
    pub listen: Vec<SocketAddr>,
    pub shards: usize,
    /// The CPU of each shard (by index); missing or `None` = not pinned.
    pub cpus: Vec<Option<usize>>,
    pub backend: Backend,
    /// Datagrams per receive and send batch.
    pub batch: usize,
    pub rcvbuf: Option<usize>,
    pub sndbuf: Option<usize>,
    /// Largest datagram received whole; larger ones are counted as truncated and dropped.
    pub max_datagram: usize,
    /// How often `on_tick` runs at least.
    pub tick: Duration,
}

impl Default for IoConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            shards: 1,
            cpus: Vec::new(),
            backend: Backend::Auto,
            batch: 64,
            rcvbuf: Some(4 << 20),
            sndbuf: Some(4 << 20),
            max_datagram: 65_535,
            tick: Duration::from_millis(50),
        }
    }
}

/// The per-shard logic the I/O layer drives.
pub trait Handler: Send + 'static {
    /// Whether a datagram from `src` may be handled at all (flood protection); called on the
    /// receiving shard first. A refused datagram is dropped here.
    fn admit(&mut self, _now: Instant, _src: SocketAddr) -> bool {
        true
    }
    /// Which shard owns this datagram (e.g. by Call-ID hash); called on the receiving shard.
    fn steer(&mut self, data: &[u8], nshards: usize) -> usize;
    /// Handles one datagram on its owning shard, writing whatever it sends to `tx`.
    fn on_datagram(&mut self, now: Instant, src: SocketAddr, data: &[u8], tx: &mut Tx);
    /// Periodic work, at least every `tick`.
    fn on_tick(&mut self, now: Instant, tx: &mut Tx);
}

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("cannot open UDP socket on {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("io_uring is not available: {0}")]
    Uring(std::io::Error),
    #[error("cannot set up shard hand-off: {0}")]
    Handoff(std::io::Error),
    #[error("cannot start shard thread: {0}")]
    Thread(std::io::Error),
    #[error("runtime.cpus: CPU {cpu} is not one this process may run on (it may use {usable:?})")]
    NoSuchCpu { cpu: usize, usable: Vec<usize> },
}

/// A running data plane.
pub struct Running {
    threads: Vec<JoinHandle<()>>,
    /// The backend each shard actually runs.
    pub backends: Vec<Backend>,
    pub counters: Vec<Arc<IoCounters>>,
}

impl Running {
    /// Waits for every shard to stop (after the stop flag is set).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Everything one shard thread owns.
pub(crate) struct ShardIo<H> {
    pub idx: usize,
    pub nshards: usize,
    pub sockets: Vec<socket2::Socket>,
    pub handler: H,
    pub handoff: Arc<Handoff>,
    pub counters: Arc<IoCounters>,
    pub stop: Arc<AtomicBool>,
    pub cfg: IoConfig,
}

/// Whether this kernel lets us set up an io_uring with the features the ring backend needs.
pub fn uring_available() -> Result<(), std::io::Error> {
    uring::probe()
}

/// Opens every shard's sockets, then starts one shard thread per handler.
pub fn start<H: Handler>(
    cfg: IoConfig,
    handlers: Vec<H>,
    stop: Arc<AtomicBool>,
) -> Result<Running, IoError> {
    let n = handlers.len().max(1);
    // A pin that cannot hold is refused before anything opens, not warned about per thread.
    if cfg.cpus.iter().any(Option::is_some) {
        let usable: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .iter()
            .map(|c| c.id)
            .collect();
        if let Some(cpu) = cfg.cpus.iter().flatten().find(|c| !usable.contains(c)) {
            return Err(IoError::NoSuchCpu { cpu: *cpu, usable });
        }
    }
    let backend = match cfg.backend {
        Backend::Mmsg => Backend::Mmsg,
        Backend::Uring => {
            uring::probe().map_err(IoError::Uring)?;
            Backend::Uring
        }
        Backend::Auto => match uring::probe() {
            Ok(()) => Backend::Uring,
            Err(e) => {
                tracing::info!("io_uring unavailable ({e}); using recvmmsg/sendmmsg");
                Backend::Mmsg
            }
        },
    };
    let handoff = Arc::new(Handoff::new(n, 1024).map_err(IoError::Handoff)?);
    let mut shards = Vec::with_capacity(n);
    for (idx, handler) in handlers.into_iter().enumerate() {
        let sockets = cfg
            .listen
            .iter()
            .map(|&addr| {
                sys::udp_socket(addr, cfg.rcvbuf, cfg.sndbuf)
                    .map_err(|source| IoError::Socket { addr, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        shards.push(ShardIo {
            idx,
            nshards: n,
            sockets,
            handler,
            handoff: Arc::clone(&handoff),
            counters: Arc::new(IoCounters::default()),
            stop: Arc::clone(&stop),
            cfg: cfg.clone(),
        });
    }
    let counters = shards.iter().map(|s| Arc::clone(&s.counters)).collect();
    let mut threads = Vec::with_capacity(n);
    for s in shards {
        let cpu = cfg.cpus.get(s.idx).copied().flatten();
        let t = std::thread::Builder::new()
            .name(format!("shard-{}", s.idx))
            .spawn(move || {
                if let Some(cpu) = cpu
                    && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
                {
                    tracing::warn!("shard {}: could not pin to CPU {cpu}", s.idx);
                }
                match backend {
                    Backend::Uring => uring::run(s),
                    _ => mmsg::run(s),
                }
            })
            .map_err(IoError::Thread)?;
        threads.push(t);
    }
    tracing::info!("{n} shard(s) on {:?}, backend {backend:?}", cfg.listen);
    Ok(Running {
        threads,
        backends: vec![backend; n],
        counters,
    })
}

impl<H: Handler> ShardIo<H> {
    /// Routes one received datagram: handles it here or hands it to its owner. Returns the
    /// owner when a hand-off happened (so the caller wakes it once per batch).
    // Out of line: bench/instructions.sh reads "the handling of a datagram" as this
    // function's inclusive count, which inlining into the receive loop would hide.
    #[inline(never)]
    pub(crate) fn dispatch(
        &mut self,
        now: Instant,
        sock: usize,
        src: SocketAddr,
        data: &[u8],
        tx: &mut Tx,
    ) -> Option<usize> {
        IoCounters::inc(&self.counters.rx);
        if !self.handler.admit(now, src) {
            return None;
        }
        let owner = if self.nshards > 1 {
            self.handler.steer(data, self.nshards)
        } else {
            self.idx
        };
        if owner == self.idx || owner >= self.nshards {
            tx.current = sock;
            self.handler.on_datagram(now, src, data, tx);
            return None;
        }
        if self.handoff.send(owner, src, sock, data) {
            IoCounters::inc(&self.counters.handoff_out);
            Some(owner)
        } else if data.len() > handoff::HANDOFF_SIZE {
            // Too big to hand off: handled here (order across shards is not guaranteed for it).
            tx.current = sock;
            self.handler.on_datagram(now, src, data, tx);
            None
        } else {
            IoCounters::inc(&self.counters.handoff_full);
            None
        }
    }

    /// Handles what other shards handed to this one, in order.
    #[inline]
    pub(crate) fn drain_handoff(&mut self, now: Instant, tx: &mut Tx) {
        // A lone shard is never handed anything: skip the queue on every wake-up.
        if self.nshards > 1 {
            self.drain_handoff_queue(now, tx);
        }
    }

    fn drain_handoff_queue(&mut self, now: Instant, tx: &mut Tx) {
        while let Some(p) = self.handoff.recv(self.idx) {
            IoCounters::inc(&self.counters.handoff_in);
            tx.current = p.sock;
            self.handler.on_datagram(now, p.src, &p.data[..p.len], tx);
            self.handoff.recycle(p);
        }
    }
}
