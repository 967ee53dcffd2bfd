//! The send batch with UDP GSO: datagrams queue back to back in one buffer; at the flush,
//! each run of consecutive datagrams to the same destination with the same size (the last
//! one may be shorter) leaves as one `UDP_SEGMENT` message, and the runs of a batch go out in
//! one `sendmmsg`. Before the runs are cut, the batch is regrouped across calls: the k-th
//! datagram of each call (by Call-ID) in the batch goes in layer k, layers leave in order, and
//! within a layer the datagrams are ordered by destination and size (ascending), so that a uas's 180s go
//! out as one run and its 200s as another. Every call's messages keep their order; a batch
//! holding a datagram without a Call-ID is not regrouped. The kernel splits the runs back into
//! the same datagrams (or, with `UDP_GRO` on the receiving socket, delivers a run at once);
//! when it refuses GSO (`EIO`, `EINVAL`: a device without it), the batch is sent datagram by
//! datagram from then on.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use sipdispatch::io::sys;

/// Datagrams per batch, and most segments in one GSO message (the kernel's limit is 64 on
/// older kernels).
const BATCH: usize = 64;
/// Largest payload of one GSO message (a UDP datagram's limit, with room for headers).
const GSO_BYTES: usize = 65_000;
/// Room for one `cmsghdr` carrying a u16, 8-byte aligned.
const CMSG_WORDS: usize = 4;

pub struct GsoTx {
    fd: RawFd,
    buf: Vec<u8>,
    /// Queued datagrams: (offset in `buf`, length, destination).
    items: Vec<(usize, usize, SocketAddr)>,
    /// Per queued datagram: a hash of its Call-ID (`None`: no Call-ID found).
    keys: Vec<Option<u64>>,
    /// The send order of the queued datagrams (indexes into `items`), and a sort key each.
    order: Vec<usize>,
    layer: Vec<usize>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
    gso: bool,
    /// The runs of the batch being flushed (reused).
    runs: Vec<(usize, usize, usize)>,
    /// Sends (syscalls) and GSO messages of more than one datagram, for the summary.
    pub syscalls: u64,
    pub gso_messages: u64,
}

// SAFETY: the raw pointers in the headers are rebuilt from this struct's own buffers before
// each send; a GsoTx is used by one thread at a time.
unsafe impl Send for GsoTx {}

impl GsoTx {
    pub fn new(fd: RawFd, gso: bool) -> Self {
        Self {
            fd,
            buf: Vec::with_capacity(BATCH * 2048),
            items: Vec::with_capacity(BATCH),
            keys: Vec::with_capacity(BATCH),
            order: Vec::with_capacity(BATCH),
            layer: Vec::with_capacity(BATCH),
            // SAFETY: plain C structs for which all zero bytes is a valid value.
            hdrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            // SAFETY: as above.
            addrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            cmsgs: vec![[0; CMSG_WORDS]; BATCH],
            gso,
            runs: Vec::with_capacity(BATCH),
            syscalls: 0,
            gso_messages: 0,
        }
    }

    pub fn send(&mut self, to: SocketAddr, data: &[u8]) {
        if self.items.len() == BATCH || self.buf.len() + data.len() > self.buf.capacity() {
            self.flush();
        }
        self.items.push((self.buf.len(), data.len(), to));
        self.keys.push(if self.gso { call_key(data) } else { None });
        self.buf.extend_from_slice(data);
    }

    /// The send order: the batch's order, or, when every datagram has a Call-ID, by layer (the
    /// k-th datagram of a call is in layer k), then destination, then size (smallest first: a run ends at a larger
    /// datagram, which starts the next),
    /// then the batch's order.
    fn regroup(&mut self) {
        let n = self.items.len();
        self.order.clear();
        self.order.extend(0..n);
        if !self.gso || n < 3 || self.keys.iter().any(Option::is_none) {
            return;
        }
        self.layer.clear();
        for k in 0..n {
            let key = self.keys[k];
            let l = self.keys[..k].iter().filter(|&&j| j == key).count();
            self.layer.push(l);
        }
        let (items, layer) = (&self.items, &self.layer);
        self.order.sort_unstable_by(|&a, &b| {
            (layer[a], items[a].2, items[a].1, a).cmp(&(layer[b], items[b].2, items[b].1, b))
        });
    }

    /// The runs of the queued datagrams in the send order: (first position in `order`, count,
    /// segment size).
    fn runs(&self, gso: bool, out: &mut Vec<(usize, usize, usize)>) {
        out.clear();
        let mut i = 0;
        while i < self.order.len() {
            let (_, seg, to) = self.items[self.order[i]];
            let mut n = 1;
            let mut bytes = seg;
            while gso && i + n < self.order.len() && n < BATCH {
                let (_, len, dest) = self.items[self.order[i + n]];
                if dest != to || len > seg || bytes + len > GSO_BYTES {
                    break;
                }
                n += 1;
                bytes += len;
                if len < seg {
                    break; // a shorter datagram can only end a run
                }
            }
            out.push((i, n, seg));
            i += n;
        }
    }

    /// Sends everything queued.
    pub fn flush(&mut self) {
        if self.items.is_empty() {
            return;
        }
        let mut runs = std::mem::take(&mut self.runs);
        self.regroup();
        self.runs(self.gso, &mut runs);
        if !self.send_runs(&runs) {
            // GSO refused: this socket sends datagram by datagram (in the batch's order) from
            // now on.
            self.gso = false;
            self.regroup();
            self.runs(false, &mut runs);
            self.send_runs(&runs);
        }
        self.runs = runs;
        self.items.clear();
        self.keys.clear();
        self.buf.clear();
    }

    /// One `sendmmsg` per up to `BATCH` runs; false when the kernel refused GSO before anything
    /// of a GSO message was sent.
    fn send_runs(&mut self, runs: &[(usize, usize, usize)]) -> bool {
        for (k, &(first, n, seg)) in runs.iter().enumerate() {
            let to = self.items[self.order[first]].2;
            for p in first..first + n {
                let (off, len, _) = self.items[self.order[p]];
                self.iovs[p] = libc::iovec {
                    // SAFETY: `off..off + len` lies within `buf`.
                    iov_base: unsafe { self.buf.as_mut_ptr().add(off) }.cast(),
                    iov_len: len,
                };
            }
            let alen = sys::to_sockaddr(to, &mut self.addrs[k]);
            let h = &mut self.hdrs[k].msg_hdr;
            h.msg_name = (&mut self.addrs[k] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = alen;
            // SAFETY: `first` < BATCH = `iovs.len()`.
            h.msg_iov = unsafe { self.iovs.as_mut_ptr().add(first) };
            h.msg_iovlen = n as _;
            h.msg_flags = 0;
            if n > 1 {
                let space = cmsg_space();
                let c = self.cmsgs[k].as_mut_ptr().cast::<u8>();
                // SAFETY: `c` points at CMSG_WORDS × 8 bytes, 8-aligned, which hold one cmsghdr
                // and a u16 (checked by `cmsg_space`); the header is written through a
                // correctly aligned pointer and the data through an unaligned write.
                unsafe {
                    let ch = c.cast::<libc::cmsghdr>();
                    (*ch).cmsg_level = libc::SOL_UDP;
                    (*ch).cmsg_type = libc::UDP_SEGMENT;
                    (*ch).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(ch).cast::<u16>(), seg as u16);
                }
                h.msg_control = c.cast();
                h.msg_controllen = space as _;
                self.gso_messages += 1;
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
            self.hdrs[k].msg_len = 0;
        }
        let total = runs.len();
        let mut next = 0;
        while next < total {
            // SAFETY: the headers and the buffers, addresses and control data they point to are
            // live and valid for the duration of the call.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd,
                    self.hdrs[next..total].as_mut_ptr(),
                    (total - next) as libc::c_uint,
                    0,
                )
            };
            self.syscalls += 1;
            if r > 0 {
                next += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EIO | libc::EINVAL) if runs[next].1 > 1 && next == 0 => return false,
                // A datagram the kernel refuses (no route, full buffer) is skipped.
                _ => next += 1,
            }
        }
        true
    }
}

/// A hash of the message's Call-ID value (`Call-ID:` or `i:`, any case, in the headers).
fn call_key(data: &[u8]) -> Option<u64> {
    let mut line = data;
    loop {
        let end = line.iter().position(|&b| b == b'\n')?;
        let l = &line[..end];
        if l.is_empty() || l == b"\r" {
            return None; // end of the headers
        }
        let value = if l.len() > 8 && l[..8].eq_ignore_ascii_case(b"call-id:") {
            Some(&l[8..])
        } else if l.len() > 2 && l[..2].eq_ignore_ascii_case(b"i:") {
            Some(&l[2..])
        } else {
            None
        };
        if let Some(v) = value {
            // FNV-1a; two calls colliding only keep their relative order too.
            let h = v
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
            return Some(h);
        }
        line = &line[end + 1..];
    }
}

fn cmsg_space() -> usize {
    // SAFETY: CMSG_SPACE is a pure computation.
    let s = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
    assert!(s <= CMSG_WORDS * 8);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// Runs keep the order: equal sizes to one destination group, a shorter datagram closes a
    /// run, another size or destination starts one; the receiver gets every datagram, in order.
    #[test]
    fn runs_group_equal_sizes_and_the_receiver_gets_every_datagram_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, b) = (rx.local_addr().unwrap(), rx2.local_addr().unwrap());
        let mut g = GsoTx::new(tx.as_raw_fd(), true);
        let sizes = [300, 300, 300, 200, 300, 300, 250, 250];
        let mut sent = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let d = vec![b'a' + i as u8; n];
            g.send(a, &d);
            sent.push(d);
        }
        g.send(b, b"other");
        let mut runs = Vec::new();
        g.regroup();
        g.runs(true, &mut runs);
        let shape: Vec<(usize, usize)> = runs.iter().map(|r| (r.1, r.2)).collect();
        assert_eq!(shape, [(4, 300), (3, 300), (1, 250), (1, 5)]);
        g.flush();
        assert_eq!(g.syscalls, 1);
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        for d in &sent {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], d.as_slice());
        }
        let n = rx2.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"other");
    }

    fn msg(call: u8, code: u16, len: usize) -> Vec<u8> {
        let mut m = format!("SIP/2.0 {code} X\r\nCall-ID: {call}-1@h\r\nVia: x\r\n").into_bytes();
        m.resize(len - 4, b'x');
        m.extend_from_slice(b"\r\n\r\n");
        m
    }

    /// Replies of several calls are regrouped into one run per kind (the k-th message of each
    /// call in layer k); each call's messages keep their order, and a batch with a message
    /// without a Call-ID keeps the batch's order.
    #[test]
    fn replies_of_several_calls_are_grouped_by_layer_and_size_keeping_each_calls_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = rx.local_addr().unwrap();
        let mut g = GsoTx::new(tx.as_raw_fd(), true);
        let mut sent = Vec::new();
        for call in 0..3 {
            for (code, len) in [(180, 300), (200, 420)] {
                let m = msg(call, code, len);
                g.send(a, &m);
                sent.push(m);
            }
        }
        // A fourth call's 200 alone: layer 0, larger, so it ends that layer and starts the run
        // of the next.
        let m = msg(3, 200, 420);
        g.send(a, &m);
        sent.push(m);
        g.regroup();
        assert_eq!(g.order, [0, 2, 4, 6, 1, 3, 5]);
        let mut runs = Vec::new();
        g.runs(true, &mut runs);
        let shape: Vec<(usize, usize)> = runs.iter().map(|r| (r.1, r.2)).collect();
        assert_eq!(shape, [(3, 300), (4, 420)]);
        g.flush();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        for &i in &[0, 2, 4, 6, 1, 3, 5] {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], sent[i].as_slice());
        }
        // Without a Call-ID somewhere, the batch's order stays.
        for call in 0..2 {
            g.send(a, &msg(call, 180, 300));
            g.send(a, &msg(call, 200, 420));
        }
        g.send(a, b"no call-id");
        g.regroup();
        assert_eq!(g.order, [0, 1, 2, 3, 4]);
        g.flush();
        assert_eq!(
            call_key(b"X\r\ni: abc\r\n\r\n"),
            call_key(b"Y\r\nCall-Id:abc\r\n\r\n")
        );
    }
}
