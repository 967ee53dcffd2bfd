//! Where a shard writes the datagrams it sends: a batch of caller-owned buffers. The I/O layer
//! implements it over its send batch; tests implement it over vectors.

use std::net::SocketAddr;

/// A batch of outgoing datagrams.
pub trait Outbox {
    /// A buffer to write the next datagram into; `None` when the batch is full.
    fn buffer(&mut self) -> Option<&mut [u8]>;
    /// Sends the first `len` bytes of the buffer last returned by [`Outbox::buffer`] to `to`.
    fn commit(&mut self, len: usize, to: SocketAddr);

    /// Sends `input` without its bytes `cut.0..cut.1` (a response without this proxy's Via)
    /// to `to`. This copies them into a buffer; the I/O layer's batch sends the received bytes
    /// where they lie instead, when `input` is the datagram it received.
    fn send_cut(
        &mut self,
        input: &[u8],
        cut: (usize, usize),
        to: SocketAddr,
    ) -> Result<(), Unsent> {
        copy_cut(self, input, cut, to)
    }
}

/// [`Outbox::send_cut`] by copying into [`Outbox::buffer`].
pub fn copy_cut(
    out: &mut (impl Outbox + ?Sized),
    input: &[u8],
    cut: (usize, usize),
    to: SocketAddr,
) -> Result<(), Unsent> {
    let (Some(head), Some(tail)) = (input.get(..cut.0), input.get(cut.1..)) else {
        return Err(Unsent::Overflow);
    };
    let buf = out.buffer().ok_or(Unsent::Full)?;
    let n = head.len() + tail.len();
    let dst = buf.get_mut(..n).ok_or(Unsent::Overflow)?;
    dst[..head.len()].copy_from_slice(head);
    dst[head.len()..].copy_from_slice(tail);
    out.commit(n, to);
    Ok(())
}

/// Why [`Outbox::send_cut`] sent nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsent {
    /// No buffer free.
    Full,
    /// The datagram does not fit a buffer, or the cut is not within it.
    Overflow,
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
