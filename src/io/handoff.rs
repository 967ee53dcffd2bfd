//! Hand-off between shards: a datagram received on one shard for a Call-ID another shard owns
//! is copied into a pooled buffer and queued to the owner, which is woken through its eventfd.
//! Queues are bounded and the pool is preallocated: a full queue is a counted drop, never a
//! block and never an allocation.

use std::net::SocketAddr;

use crossbeam_queue::ArrayQueue;

use super::sys::EventFd;

/// Largest datagram that can be handed off; larger ones are handled where they arrive.
pub const HANDOFF_SIZE: usize = 9216;

/// One handed-off datagram.
pub struct Parcel {
    pub src: SocketAddr,
    /// Index of the listen socket it arrived on (the same on every shard).
    pub sock: usize,
    pub len: usize,
    pub data: Box<[u8; HANDOFF_SIZE]>,
}

/// The queues and wake-ups of all shards, plus the shared buffer pool.
pub struct Handoff {
    queues: Vec<ArrayQueue<Box<Parcel>>>,
    pool: ArrayQueue<Box<Parcel>>,
    pub wakers: Vec<EventFd>,
}

impl Handoff {
    /// `per_shard` parcels of queue room and pooled buffers for each of `n` shards.
    pub fn new(n: usize, per_shard: usize) -> std::io::Result<Self> {
        let pool = ArrayQueue::new(n * per_shard);
        for _ in 0..n * per_shard {
            let _ = pool.push(Box::new(Parcel {
                src: SocketAddr::from(([0, 0, 0, 0], 0)),
                sock: 0,
                len: 0,
                data: Box::new([0; HANDOFF_SIZE]),
            }));
        }
        Ok(Self {
            queues: (0..n).map(|_| ArrayQueue::new(per_shard)).collect(),
            pool,
            wakers: (0..n).map(|_| EventFd::new()).collect::<Result<_, _>>()?,
        })
    }

    /// Queues a copy of `data` for shard `to`; false if it does not fit or nothing is free.
    pub fn send(&self, to: usize, src: SocketAddr, sock: usize, data: &[u8]) -> bool {
        if data.len() > HANDOFF_SIZE {
            return false;
        }
        let Some(mut p) = self.pool.pop() else {
            return false;
        };
        p.src = src;
        p.sock = sock;
        p.len = data.len();
        p.data[..data.len()].copy_from_slice(data);
        match self.queues[to].push(p) {
            Ok(()) => true,
            Err(p) => {
                let _ = self.pool.push(p);
                false
            }
        }
    }

    /// The next parcel queued for shard `me`.
    pub fn recv(&self, me: usize) -> Option<Box<Parcel>> {
        self.queues[me].pop()
    }

    /// Returns a parcel's buffer to the pool.
    pub fn recycle(&self, p: Box<Parcel>) {
        let _ = self.pool.push(p);
    }
}
