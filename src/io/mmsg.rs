//! The `recvmmsg`/`sendmmsg` shard loop: `poll` on the shard's sockets and its wake-up
//! eventfd, drain each readable socket in batches, handle or hand off each datagram, send the
//! batch, then the periodic tick.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::sys::{self, RecvBatch};
use super::{Handler, IoCounters, ShardIo, Tx};

/// Receive batches taken from one socket before the others get a turn.
const BATCHES_PER_TURN: usize = 4;

pub(crate) fn run<H: Handler>(mut s: ShardIo<H>) {
    let fds: Vec<_> = s.sockets.iter().map(|k| k.as_raw_fd()).collect();
    let v6 = s.cfg.listen.iter().map(|a| a.is_ipv6()).collect();
    let mut tx = Tx::new(
        s.cfg.batch,
        s.cfg.max_datagram,
        fds.clone(),
        v6,
        s.counters.clone(),
    );
    let mut rx = RecvBatch::new(s.cfg.batch, s.cfg.max_datagram);
    // SAFETY: `rx` outlives every flush of `tx` below (the last one is before the function
    // returns), and its buffer changes only in `rx.recv`, before each of which `tx.settle()`
    // sends what still points into it. The buffer never moves (a Vec that never grows).
    unsafe { tx.lend(rx.region()) };
    let wake_fd = s.handoff.wakers[s.idx].fd();
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .chain(std::iter::once(&wake_fd))
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let tick_ms = s.cfg.tick.as_millis().clamp(1, 1000) as i32;
    let mut wake = vec![false; s.nshards];
    // Compared, not subtracted, on every wake-up: a subtraction of two `Instant`s cost ~30
    // instructions.
    let mut next_tick = Instant::now() + s.cfg.tick;

    while !s.stop.load(Relaxed) {
        if let Err(e) = sys::poll(&mut pfds, tick_ms) {
            tracing::error!("shard {}: poll failed: {e}", s.idx);
            break;
        }
        let now = Instant::now();
        if pfds[fds.len()].revents != 0 {
            s.handoff.wakers[s.idx].clear();
        }
        s.drain_handoff(now, &mut tx);
        for (sock, &fd) in fds.iter().enumerate() {
            if pfds[sock].revents == 0 {
                continue;
            }
            for _ in 0..BATCHES_PER_TURN {
                tx.settle();
                let n = match rx.recv(fd) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!("shard {}: recvmmsg: {e}", s.idx);
                        0
                    }
                };
                for i in 0..n {
                    let (src, data, truncated) = rx.get(i);
                    match src {
                        Some(src) if !truncated => {
                            if let Some(o) = s.dispatch(now, sock, src, data, &mut tx) {
                                wake[o] = true;
                            }
                        }
                        _ => IoCounters::inc(&s.counters.truncated),
                    }
                }
                if n < s.cfg.batch {
                    break;
                }
            }
        }
        tx.flush();
        for (o, w) in wake.iter_mut().enumerate() {
            if std::mem::take(w) {
                s.handoff.wakers[o].wake();
            }
        }
        if now >= next_tick {
            next_tick = now + s.cfg.tick;
            s.handler.on_tick(now, &mut tx);
            tx.flush();
        }
    }
    // Shutdown: what was handed to us is handled and the last batch leaves.
    s.drain_handoff(Instant::now(), &mut tx);
    tx.flush();
}
