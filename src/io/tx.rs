//! The send batch of one shard: preallocated slots the engine writes datagrams into, each with
//! its send header filled as it is queued, flushed with one `sendmmsg` per run of datagrams
//! that leave through the same socket (or handed to the ring). It flushes itself when full, so
//! the engine never loses a datagram to a full batch. A relayed response can instead be sent
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
    /// Whether a queued slot sends two ranges of the lent buffer instead of its own bytes.
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

    /// The datagrams queued so far, for the ring backend: (socket index, send header). The
    /// headers point into this batch, which must stay as it is until they were sent.
    pub(crate) fn pending(&self) -> impl Iterator<Item = (usize, &libc::msghdr)> {
        (0..self.n).map(|i| (usize::from(self.socks[i]), &self.hdrs[i].msg_hdr))
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

    /// Takes the next slot for its own first `len` bytes to `to`, its send header filled;
    /// its index. The caller made room.
    #[inline]
    fn queue(&mut self, len: usize, to: SocketAddr) -> usize {
        let i = self.n;
        self.socks[i] = self.socket_for(to) as u8;
        let namelen = sys::to_sockaddr(to, &mut self.addrs[i]);
        self.iovs[2 * i] = libc::iovec {
            iov_base: self.bufs[i * self.size..].as_mut_ptr().cast(),
            iov_len: len,
        };
        let h = &mut self.hdrs[i].msg_hdr;
        h.msg_namelen = namelen;
        h.msg_iovlen = 1;
        self.n += 1;
        i
    }

    /// Sends everything queued, in order: one `sendmmsg` per run of slots that leave through
    /// the same socket (nearly always one run).
    pub fn flush(&mut self) {
        let mut start = 0;
        while start < self.n {
            let sock = self.socks[start];
            let end = self.socks[start..self.n]
                .iter()
                .position(|&s| s != sock)
                .map_or(self.n, |k| start + k);
            let ok = sys::sendmmsg_all(self.fds[usize::from(sock)], &mut self.hdrs[start..end]);
            self.counters.add_tx(ok as u64, (end - start - ok) as u64);
            start = end;
        }
        self.any_gathered = false;
        self.n = 0;
    }
}

impl Outbox for Tx {
    // Inlined into the message path: each forwarded datagram asks once for each.
    #[inline]
    fn buffer(&mut self) -> Option<&mut [u8]> {
        if self.n == self.socks.len() {
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
        if self.n == self.socks.len() {
            self.flush();
        }
        let i = self.queue(len - (cut.1 - cut.0), to);
        for (j, (from, n)) in [(at, cut.0), (at + cut.1, len - cut.1)]
            .into_iter()
            .enumerate()
        {
            self.iovs[2 * i + j] = libc::iovec {
                iov_base: from as *mut libc::c_void,
                iov_len: n,
            };
        }
        self.hdrs[i].msg_hdr.msg_iovlen = 2;
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

    /// Datagrams leaving through two sockets, interleaved, arrive in the order they were
    /// queued, each from its socket.
    #[test]
    fn a_batch_over_two_sockets_leaves_in_order() {
        let socks = [
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        ];
        let rx_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx_sock
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let to = rx_sock.local_addr().unwrap();
        let fds = socks.iter().map(|s| s.as_raw_fd()).collect();
        let mut tx = Tx::new(8, 1500, fds, vec![false, false], Default::default());
        let order = [0, 1, 1, 0, 1];
        for (k, &sock) in order.iter().enumerate() {
            tx.current = sock;
            let buf = tx.buffer().unwrap();
            buf[0] = b'0' + k as u8;
            tx.commit(1, to);
        }
        tx.flush();
        for (k, &sock) in order.iter().enumerate() {
            let mut got = [0u8; 16];
            let (n, from) = rx_sock.recv_from(&mut got).unwrap();
            assert_eq!(&got[..n], &[b'0' + k as u8], "datagram {k}");
            assert_eq!(from, socks[sock].local_addr().unwrap(), "datagram {k}");
        }
    }

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
            let gathered = tx.hdrs[tx.len() - 1].msg_hdr.msg_iovlen == 2;
            assert_eq!(gathered, lent, "datagram {i}");
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
