//! The send batch of one shard: preallocated slots the engine writes datagrams into, flushed
//! with one `sendmmsg` per socket (or handed to the ring). It flushes itself when full, so the
//! engine never loses a datagram to a full batch.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use super::counters::IoCounters;
use super::sys;
use crate::engine::Outbox;

/// Outgoing datagrams of one shard.
pub struct Tx {
    bufs: Vec<u8>,
    size: usize,
    lens: Vec<usize>,
    dests: Vec<SocketAddr>,
    socks: Vec<u8>,
    n: usize,
    /// The listen socket the datagram being handled came in on; replies leave through it.
    pub(crate) current: usize,
    fds: Vec<RawFd>,
    v6: Vec<bool>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    counters: std::sync::Arc<IoCounters>,
}

// SAFETY: the raw pointers in the send headers point into this struct's own heap buffers,
// which move with it (the headers' own pointers are set in `new`, the buffer pointers before
// each use); a Tx is used by one thread at a time.
unsafe impl Send for Tx {}

impl Tx {
    /// `batch` slots of `size` bytes, sending through `fds` (one per listen address).
    pub fn new(
        batch: usize,
        size: usize,
        fds: Vec<RawFd>,
        v6: Vec<bool>,
        counters: std::sync::Arc<IoCounters>,
    ) -> Self {
        let mut tx = Self {
            bufs: vec![0; batch * size],
            size,
            lens: vec![0; batch],
            dests: vec![SocketAddr::from(([0, 0, 0, 0], 0)); batch],
            socks: vec![0; batch],
            n: 0,
            current: 0,
            fds,
            v6,
            // SAFETY: plain C structs for which all zero bytes is a valid value.
            hdrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; batch],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                batch
            ],
            // SAFETY: as above.
            addrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; batch],
            counters,
        };
        // The header of slot k always points at address k and iovec k, in the vectors' heap
        // buffers, which never move or grow: set once here, not for every datagram sent.
        for k in 0..batch {
            let h = &mut tx.hdrs[k].msg_hdr;
            h.msg_name = (&mut tx.addrs[k] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut tx.iovs[k];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
        }
        tx
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The socket to send to `to` from: the current one, or the first of the right family.
    fn socket_for(&self, to: SocketAddr) -> usize {
        if self.v6.get(self.current) == Some(&to.is_ipv6()) {
            return self.current;
        }
        self.v6
            .iter()
            .position(|&v| v == to.is_ipv6())
            .unwrap_or(self.current)
    }

    /// The datagrams queued so far, for the ring backend: (socket index, destination, bytes).
    pub(crate) fn pending(&self) -> impl Iterator<Item = (usize, SocketAddr, &[u8])> {
        (0..self.n).map(|i| {
            let s = i * self.size;
            (
                usize::from(self.socks[i]),
                self.dests[i],
                &self.bufs[s..s + self.lens[i]],
            )
        })
    }

    pub(crate) fn clear(&mut self) {
        self.n = 0;
    }

    /// Sends everything queued, one `sendmmsg` per socket.
    pub fn flush(&mut self) {
        if self.n == 0 {
            return;
        }
        for sock in 0..self.fds.len() {
            let mut k = 0;
            for i in 0..self.n {
                if usize::from(self.socks[i]) != sock {
                    continue;
                }
                let len = sys::to_sockaddr(self.dests[i], &mut self.addrs[k]);
                self.iovs[k] = libc::iovec {
                    // SAFETY: slot `i` lies within `bufs` (batch × size bytes).
                    iov_base: unsafe { self.bufs.as_mut_ptr().add(i * self.size) }.cast(),
                    iov_len: self.lens[i],
                };
                let h = &mut self.hdrs[k].msg_hdr;
                h.msg_namelen = len;
                h.msg_flags = 0;
                k += 1;
            }
            if k > 0 {
                let ok = sys::sendmmsg_all(self.fds[sock], &mut self.hdrs[..k]);
                self.counters.add_tx(ok as u64, (k - ok) as u64);
            }
        }
        self.n = 0;
    }
}

impl Outbox for Tx {
    // Inlined into the message path: each forwarded datagram asks once for each.
    #[inline]
    fn buffer(&mut self) -> Option<&mut [u8]> {
        if self.n == self.lens.len() {
            self.flush();
        }
        let s = self.n * self.size;
        Some(&mut self.bufs[s..s + self.size])
    }

    #[inline]
    fn commit(&mut self, len: usize, to: SocketAddr) {
        let i = self.n;
        self.lens[i] = len.min(self.size);
        self.dests[i] = to;
        self.socks[i] = self.socket_for(to) as u8;
        self.n += 1;
    }
}
