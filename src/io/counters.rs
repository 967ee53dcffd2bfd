//! Per-shard I/O counters: datagrams received and sent, hand-offs between shards, and what the
//! I/O layer itself dropped. Single writer (the shard thread), relaxed atomics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[repr(align(64))]
#[derive(Default, Debug)]
pub struct IoCounters {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    pub tx_errors: AtomicU64,
    /// Datagrams this shard received for another shard and handed over.
    pub handoff_out: AtomicU64,
    /// Datagrams other shards handed to this one.
    pub handoff_in: AtomicU64,
    /// Datagrams larger than the receive buffer.
    pub truncated: AtomicU64,
    /// Hand-offs dropped because the owner's queue or the buffer pool was exhausted.
    pub handoff_full: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed) + n, Relaxed);
}

impl IoCounters {
    pub fn add_tx(&self, ok: u64, failed: u64) {
        add(&self.tx, ok);
        add(&self.tx_errors, failed);
    }

    pub(crate) fn inc(c: &AtomicU64) {
        add(c, 1);
    }

    pub fn snapshot(&self) -> IoSnapshot {
        IoSnapshot {
            rx: self.rx.load(Relaxed),
            tx: self.tx.load(Relaxed),
            tx_errors: self.tx_errors.load(Relaxed),
            handoff_out: self.handoff_out.load(Relaxed),
            handoff_in: self.handoff_in.load(Relaxed),
            truncated: self.truncated.load(Relaxed),
            handoff_full: self.handoff_full.load(Relaxed),
        }
    }
}

/// A copy of one shard's I/O counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoSnapshot {
    pub rx: u64,
    pub tx: u64,
    pub tx_errors: u64,
    pub handoff_out: u64,
    pub handoff_in: u64,
    pub truncated: u64,
    pub handoff_full: u64,
}
