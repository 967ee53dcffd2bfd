//! The send batch of one shard: preallocated slots the engine writes datagrams into, flushed
//! with one `sendmmsg` per socket (or handed to the ring). It flushes itself when full, so the
//! engine never loses a datagram to a full batch. A relayed response can instead be sent
//! straight from the receive buffer, as two ranges around the removed Via, where the receive
//! loop lends that buffer until the next flush (the `recvmmsg` loop does).

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use super::counters::IoCounters;
use super::sys;
use crate::engine::outbox::{Outbox, Unsent, copy_cut};

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
    /// Two per slot: a gathered slot sends two received ranges.
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    counters: std::sync::Arc<IoCounters>,
    /// The receive buffer lent by the loop (address, length): see [`Tx::lend`].
    lent: Option<(usize, usize)>,
    /// Per slot: the two ranges of the lent buffer it sends instead of its own bytes.
    gathered: Vec<Option<[(usize, usize); 2]>>,
    any_gathered: bool,
}

// SAFETY: the raw pointers in the send headers point into this struct's own heap buffers,
// which move with it (the headers' own pointers are set in `new`, the buffer pointers before
// each use), or into the receive buffer lent by the loop that owns both on one thread; a Tx
// is used by one thread at a time.
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
                2 * batch
            ],
            // SAFETY: as above.
            addrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; batch],
            counters,
            lent: None,
            gathered: vec![None; batch],
            any_gathered: false,
        };
        // The header of slot k always points at address k and iovecs 2k and 2k + 1, in the
        // vectors' heap buffers, which never move or grow: set once here, not for every
        // datagram sent.
        for k in 0..batch {
            let h = &mut tx.hdrs[k].msg_hdr;
            h.msg_name = (&mut tx.addrs[k] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut tx.iovs[2 * k];
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
        debug_assert!(
            !self.any_gathered,
            "the ring backend lends no receive buffer"
        );
        self.n = 0;
    }

    /// Lets [`Outbox::send_cut`] send datagrams that lie in `region` from there, until the
    /// next [`Tx::settle`] or flush, instead of copying them.
    ///
    /// # Safety
    /// The bytes of `region` must stay alive and unchanged until the caller has called
    /// [`Tx::settle`] (or the batch was flushed) after the last datagram from there was
    /// handled, and before they change: the batch holds their addresses until it sends.
    pub(crate) unsafe fn lend(&mut self, region: &[u8]) {
        self.lent = Some((region.as_ptr() as usize, region.len()));
    }

    /// Sends whatever still lies in the lent buffer, so that the loop may reuse it.
    pub(crate) fn settle(&mut self) {
        if self.any_gathered {
            self.flush();
        }
    }

    /// Takes the next slot for `len` bytes to `to`; its index. The caller made room.
    #[inline]
    fn queue(&mut self, len: usize, to: SocketAddr) -> usize {
        let i = self.n;
        self.lens[i] = len;
        self.dests[i] = to;
        self.socks[i] = self.socket_for(to) as u8;
        self.n += 1;
        i
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
                let parts = match self.gathered[i] {
                    Some(ranges) => {
                        for (j, (at, n)) in ranges.into_iter().enumerate() {
                            self.iovs[2 * k + j] = libc::iovec {
                                iov_base: at as *mut libc::c_void,
                                iov_len: n,
                            };
                        }
                        2
                    }
                    None => {
                        self.iovs[2 * k] = libc::iovec {
                            // SAFETY: slot `i` lies within `bufs` (batch × size bytes).
                            iov_base: unsafe { self.bufs.as_mut_ptr().add(i * self.size) }.cast(),
                            iov_len: self.lens[i],
                        };
                        1
                    }
                };
                let h = &mut self.hdrs[k].msg_hdr;
                h.msg_iovlen = parts;
                h.msg_namelen = len;
                h.msg_flags = 0;
                k += 1;
            }
            if k > 0 {
                let ok = sys::sendmmsg_all(self.fds[sock], &mut self.hdrs[..k]);
                self.counters.add_tx(ok as u64, (k - ok) as u64);
            }
        }
        if self.any_gathered {
            self.gathered[..self.n].fill(None);
            self.any_gathered = false;
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
        self.queue(len.min(self.size), to);
    }

    /// From the lent receive buffer where `input` lies in it (no copy: the two ranges around
    /// the cut go out as they are); copied otherwise.
    fn send_cut(
        &mut self,
        input: &[u8],
        cut: (usize, usize),
        to: SocketAddr,
    ) -> Result<(), Unsent> {
        let (at, len) = (input.as_ptr() as usize, input.len());
        let lent = self
            .lent
            .is_some_and(|(start, n)| at >= start && at + len <= start + n);
        if !lent || cut.0 > cut.1 || cut.1 > len {
            return copy_cut(self, input, cut, to);
        }
        if self.n == self.lens.len() {
            self.flush();
        }
        let i = self.queue(len - (cut.1 - cut.0), to);
        self.gathered[i] = Some([(at, cut.0), (at + cut.1, len - cut.1)]);
        self.any_gathered = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use super::*;

    /// A response relayed from a lent receive buffer leaves as its two ranges around the cut;
    /// one from elsewhere is copied; both arrive as the bytes without the cut, in order, mixed
    /// with ordinary slots, across a batch that fills and flushes itself.
    #[test]
    fn cut_datagrams_leave_from_the_lent_buffer_or_as_copies() {
        let tx_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx_sock
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let to = rx_sock.local_addr().unwrap();
        let mut tx = Tx::new(
            3,
            1500,
            vec![tx_sock.as_raw_fd()],
            vec![false],
            Default::default(),
        );
        let received = b"SIP/2.0 200 OK\r\nVia: ours\r\nVia: theirs\r\n\r\n".repeat(2);
        let elsewhere = received.clone();
        let cut = (16, 27);
        // SAFETY: `received` lives, unchanged, until after the last flush below.
        unsafe { tx.lend(&received) };
        let half = received.len() / 2;
        let mut want = Vec::new();
        for (i, input) in [
            &received[..half],
            &elsewhere[..half],
            &received[half..],
            &received[..half],
        ]
        .into_iter()
        .enumerate()
        {
            tx.send_cut(input, cut, to).unwrap();
            let lent = !std::ptr::eq(input.as_ptr(), elsewhere.as_ptr());
            assert_eq!(tx.gathered[tx.len() - 1].is_some(), lent, "datagram {i}");
            want.push([&input[..cut.0], &input[cut.1..]].concat());
            if i == 1 {
                let buf = tx.buffer().unwrap();
                buf[..5].copy_from_slice(b"plain");
                tx.commit(5, to);
                want.push(b"plain".to_vec());
            }
        }
        assert_eq!(tx.len(), 2, "the batch of three flushed itself once");
        tx.settle();
        assert!(tx.is_empty());
        for w in want {
            let mut got = [0u8; 1500];
            let n = rx_sock.recv(&mut got).unwrap();
            assert_eq!(&got[..n], &w[..], "{}", String::from_utf8_lossy(&w));
        }
    }
}
