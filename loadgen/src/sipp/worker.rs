//! One worker thread: its own socket, engine (calls, timer wheel, counters) and pacer share,
//! looping over batched receive, timers and new calls without touching anything shared on the
//! hot path. Every few tens of milliseconds it publishes a copy of its counters and the log
//! lines it produced to its [`Slot`], which the reporting thread merges; a shared quota stands
//! for `-m` and shared flags for quitting.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sipdispatch::io::sys;

use super::engine::Engine;
use super::gro::{self, GroRx};
use super::kernel;
use super::pace::{Pacer, Quota};
use super::socket::UdpNet;
use super::stats::Stats;

const BATCH: usize = 64;
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// Run-wide flags and the `-m` quota.
#[derive(Default)]
pub struct Shared {
    /// Stop now (a signal, `exec int_cmd="stop_now"`, an `<error>` action).
    pub stop: AtomicBool,
    /// Open no more calls; finish the open ones (`-timeout`, SIGUSR1, `stop_gracefully`).
    pub closed: AtomicBool,
    pub quota: Option<Arc<Quota>>,
}

/// What a worker last published.
#[derive(Default)]
pub struct Slot {
    pub stats: Option<Stats>,
    pub open: usize,
    pub target: f64,
    pub done: bool,
    pub stop_now: bool,
    pub fatal: Option<String>,
    pub errors: Vec<String>,
    pub logs: Vec<String>,
    pub rtt: Vec<(Instant, Duration, usize)>,
    /// The kernel's drop counter of the worker's socket.
    pub socket_drops: Option<u64>,
}

pub struct Worker {
    pub engine: Engine,
    pub net: UdpNet,
    pub sock: OwnedFd,
    /// UAC only.
    pub pacer: Option<Pacer>,
}

impl Worker {
    fn publish(&mut self, slot: &Mutex<Slot>, done: bool) {
        let Ok(mut s) = slot.lock() else {
            return;
        };
        let e = &mut self.engine;
        match s.stats.as_mut() {
            Some(st) => st.clone_from(&e.stats),
            None => s.stats = Some(e.stats.clone()),
        }
        s.open = e.open_calls();
        s.socket_drops = kernel::socket_drops(self.sock.as_raw_fd(), e.env.local);
        s.target = self.pacer.as_ref().map_or(0.0, Pacer::target);
        s.done = done;
        s.stop_now |= e.stop_now;
        if s.fatal.is_none() {
            s.fatal = e.fatal.clone();
        }
        if let Some(v) = e.errors.as_mut() {
            s.errors.append(v);
        }
        if let Some(v) = e.logs.as_mut() {
            s.logs.append(v);
        }
        if let Some(v) = e.rtt.as_mut() {
            s.rtt.append(v);
        }
    }

    /// Runs until the scenario's calls are done or a stop; `slot` receives the counters.
    pub fn run(mut self, shared: &Shared, slot: &Mutex<Slot>) {
        let fd = self.sock.as_raw_fd();
        let uac = self.engine.sc.uac;
        let quota = shared.quota.clone();
        // SIPLOAD_GRO=0 receives datagram by datagram (for comparisons).
        if std::env::var("SIPLOAD_GRO").map_or(true, |v| v != "0") {
            gro::enable(fd);
        }
        let mut rx = GroRx::new(BATCH);
        let mut last_publish = Instant::now();
        loop {
            let now = Instant::now();
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            if shared.closed.load(Ordering::Relaxed) {
                self.engine.closed = true;
            }
            let net = &mut self.net;
            if let Some(p) = self.pacer.as_mut() {
                if p.tick(now) {
                    self.engine.closed = true;
                }
                let quota_done = quota.as_ref().is_some_and(|q| q.exhausted());
                if !self.engine.closed && !quota_done {
                    let n = p.due(
                        now,
                        self.engine.open_calls() as u64,
                        self.engine.created(),
                        None,
                    );
                    for _ in 0..n {
                        if quota.as_ref().is_some_and(|q| !q.take()) {
                            break;
                        }
                        self.engine.start_call(now, net);
                    }
                }
            }
            let done_creating = self.engine.closed || quota.as_ref().is_some_and(|q| q.exhausted());
            if done_creating
                && self.engine.open_calls() == 0
                && (uac || quota.is_some() || self.engine.closed)
            {
                break;
            }
            self.engine.on_timers(now, net);
            net.tx.flush();
            let n = rx.recv(fd).unwrap_or(0);
            for i in 0..n {
                let (Some(src), datagrams, false) = rx.get(i) else {
                    continue;
                };
                for data in datagrams {
                    net.log_received(data);
                    self.engine.on_datagram(Instant::now(), src, data, net);
                }
            }
            net.tx.flush();
            if n == 0 {
                // Idle: sleep until a datagram arrives or the next millisecond's work is due.
                let mut p = [libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                }];
                let _ = sys::poll(&mut p, 1);
            }
            if self.engine.stop_now || self.engine.fatal.is_some() {
                shared.stop.store(true, Ordering::Relaxed);
                break;
            }
            if self.engine.closed {
                // `stop_gracefully` in one worker quits them all.
                shared.closed.store(true, Ordering::Relaxed);
            }
            if now - last_publish >= PUBLISH_EVERY {
                last_publish = now;
                self.publish(slot, false);
            }
        }
        self.publish(slot, true);
    }
}
