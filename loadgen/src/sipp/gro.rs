//! The receive batch with UDP GRO: the socket asks for `UDP_GRO`, so a GSO sender's run (one
//! `UDP_SEGMENT` message of equal-size datagrams, as [`super::gso::GsoTx`] sends them) is
//! queued and received as one buffer, with its segment size in a `UDP_GRO` control message.
//! [`GroRx::get`] splits such a buffer back into the sender's datagrams, in order; a buffer
//! without the control message is one datagram. A kernel that refuses the option delivers
//! datagrams one by one, which this reads the same way.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use sipdispatch::io::sys;

/// `UDP_GRO` (linux/udp.h); not in every libc target's constants.
const UDP_GRO: libc::c_int = 104;
/// Largest buffer one receive can hold (a coalesced run stays below 64 KiB).
const BUF: usize = 65_536;
/// Room for the control messages of one receive (the `UDP_GRO` int), 8-byte aligned.
const CMSG_WORDS: usize = 8;

/// Turns on `UDP_GRO` for `fd`; false when the kernel refuses it.
pub fn enable(fd: RawFd) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to an int that lives across the call, with its
    // exact size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            UDP_GRO,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

pub struct GroRx {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
    bufs: Vec<u8>,
    /// Per received buffer: its segment size (0: one datagram).
    segs: Vec<usize>,
    /// Receives that held more than one datagram, for comparisons.
    pub coalesced: u64,
}

// SAFETY: the raw pointers inside the headers point into this struct's own heap buffers,
// which move with it; nothing is shared with another thread.
unsafe impl Send for GroRx {}

impl GroRx {
    pub fn new(batch: usize) -> Self {
        let mut b = Self {
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
            cmsgs: vec![[0; CMSG_WORDS]; batch],
            bufs: vec![0; batch * BUF],
            segs: vec![0; batch],
            coalesced: 0,
        };
        for i in 0..batch {
            b.iovs[i] = libc::iovec {
                // SAFETY: `i * BUF` is within `bufs` (batch × BUF bytes).
                iov_base: unsafe { b.bufs.as_mut_ptr().add(i * BUF) }.cast(),
                iov_len: BUF,
            };
        }
        b
    }

    /// Receives up to a batch of buffers without blocking; returns how many arrived.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..self.hdrs.len() {
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = (CMSG_WORDS * 8) as _;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live, exclusively owned buffers of the stated sizes;
        // the kernel writes at most `hdrs.len()` entries.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            self.segs[i] = self.segment_size(i);
            if self.segs[i] != 0 && (self.hdrs[i].msg_len as usize) > self.segs[i] {
                self.coalesced += 1;
            }
        }
        Ok(n)
    }

    /// The `UDP_GRO` segment size of buffer `i`, 0 without one.
    fn segment_size(&mut self, i: usize) -> usize {
        let h = &mut self.hdrs[i].msg_hdr;
        // SAFETY: the kernel filled `msg_control` (within the buffer it was given) and set
        // `msg_controllen`; the CMSG macros walk only within it, and the data is read
        // unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    return usize::try_from(v).unwrap_or(0);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        0
    }

    /// Buffer `i` of the last `recv`: source, the datagrams it holds (split by the segment
    /// size), and whether it was truncated.
    pub fn get(&self, i: usize) -> (Option<SocketAddr>, Segments<'_>, bool) {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(BUF);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let src = sys::from_sockaddr(&self.addrs[i], h.msg_hdr.msg_namelen);
        let data = &self.bufs[i * BUF..i * BUF + len];
        let seg = match self.segs[i] {
            0 => len.max(1),
            s => s,
        };
        (src, Segments { data, seg }, truncated)
    }
}

/// The datagrams of one received buffer.
pub struct Segments<'a> {
    data: &'a [u8],
    seg: usize,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.data.is_empty() {
            return None;
        }
        let (d, rest) = self.data.split_at(self.seg.min(self.data.len()));
        self.data = rest;
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sipp::gso::GsoTx;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// A GSO run arrives as one buffer and is split back into the sender's datagrams, in
    /// order; a lone datagram stays one.
    #[test]
    fn a_gso_run_is_received_at_once_and_split_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gro = enable(rx.as_raw_fd());
        let to = rx.local_addr().unwrap();
        let mut g = GsoTx::new(tx.as_raw_fd(), true);
        let mut sent = Vec::new();
        for (i, n) in [400, 400, 400, 350, 90].into_iter().enumerate() {
            let d = vec![b'a' + i as u8; n];
            g.send(to, &d);
            sent.push(d);
        }
        g.flush();
        let mut r = GroRx::new(8);
        let mut got = Vec::new();
        let mut buffers = 0;
        for _ in 0..200 {
            let n = r.recv(rx.as_raw_fd()).unwrap();
            for i in 0..n {
                let (src, segs, trunc) = r.get(i);
                assert_eq!(src, Some(tx.local_addr().unwrap()));
                assert!(!trunc);
                buffers += 1;
                got.extend(segs.map(<[u8]>::to_vec));
            }
            if got.len() == sent.len() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, sent);
        if gro {
            // 400×3 + 350 as one run, 90 alone.
            assert_eq!(buffers, 2);
            assert_eq!(r.coalesced, 1);
        }
    }
}
