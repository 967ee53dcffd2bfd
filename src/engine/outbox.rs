//! Where a shard writes the datagrams it sends: a batch of caller-owned buffers. The I/O layer
//! implements it over its send batch; tests implement it over vectors.

use std::net::SocketAddr;

/// A batch of outgoing datagrams.
pub trait Outbox {
    /// A buffer to write the next datagram into; `None` when the batch is full.
    fn buffer(&mut self) -> Option<&mut [u8]>;
    /// Sends the first `len` bytes of the buffer last returned by [`Outbox::buffer`] to `to`.
    fn commit(&mut self, len: usize, to: SocketAddr);
}

/// An outbox that keeps what was sent, for tests and tools.
#[derive(Default)]
pub struct VecOutbox {
    scratch: Vec<u8>,
    pub sent: Vec<(SocketAddr, Vec<u8>)>,
    /// Datagrams accepted before reporting "full" (`usize::MAX` = never full).
    pub capacity: usize,
}

impl VecOutbox {
    pub fn new() -> Self {
        Self {
            scratch: vec![0; 65_536],
            sent: Vec::new(),
            capacity: usize::MAX,
        }
    }
}

impl Outbox for VecOutbox {
    fn buffer(&mut self) -> Option<&mut [u8]> {
        (self.sent.len() < self.capacity).then_some(&mut self.scratch[..])
    }

    fn commit(&mut self, len: usize, to: SocketAddr) {
        self.sent.push((to, self.scratch[..len].to_vec()));
    }
}
