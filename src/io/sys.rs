//! The raw system calls of the I/O layer and the address conversions they need: sockets with
//! `SO_REUSEPORT`, `recvmmsg`/`sendmmsg` over preallocated headers, `poll`, and an eventfd
//! for waking a shard. Every `unsafe` block of the mmsg path is here.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// A non-blocking UDP socket bound with `SO_REUSEPORT`, with the buffer sizes asked for
/// (forced past `rmem_max`/`wmem_max` when the process may).
pub fn udp_socket(
    addr: SocketAddr,
    rcvbuf: Option<usize>,
    sndbuf: Option<usize>,
) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    if let Some(n) = rcvbuf
        && force_buffer(&s, libc::SO_RCVBUFFORCE, n).is_err()
    {
        s.set_recv_buffer_size(n)?;
    }
    if let Some(n) = sndbuf
        && force_buffer(&s, libc::SO_SNDBUFFORCE, n).is_err()
    {
        s.set_send_buffer_size(n)?;
    }
    s.bind(&addr.into())?;
    Ok(s)
}

fn force_buffer(s: &Socket, opt: libc::c_int, n: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket fd and a pointer to an int that lives across the call, with its
    // exact size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Converts a kernel socket address to a `SocketAddr`.
pub fn from_sockaddr(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `ss` and returns the length to pass to the kernel.
pub fn to_sockaddr(addr: SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // IPv4, nearly every datagram sent, is written in place: going through `SockAddr` zeroed
    // and copied a whole sockaddr_storage per datagram.
    if let SocketAddr::V4(a) = addr {
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_storage is larger than sockaddr_in and aligned for any sockaddr, so
        // its start may be written as one.
        unsafe { std::ptr::write((ss as *mut libc::sockaddr_storage).cast(), sin) };
        return size_of::<libc::sockaddr_in>() as libc::socklen_t;
    }
    let sa: socket2::SockAddr = addr.into();
    let len = sa.len();
    // SAFETY: `SockAddr` holds a valid sockaddr of `len` bytes, and sockaddr_storage is large
    // enough for any of them; the regions don't overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            (ss as *mut libc::sockaddr_storage).cast::<u8>(),
            len as usize,
        );
    }
    len
}

/// An eventfd used to wake a shard blocked in `poll` (or in its ring).
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is checked and owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh, valid descriptor nobody else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own; a failure (counter
        // full) still leaves the fd readable, which is all a wake needs.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from an eventfd we own (non-blocking).
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes. Returns the revents per fd.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    let timeout = libc::timespec {
        tv_sec: libc::time_t::from(timeout_ms / 1000),
        tv_nsec: libc::c_long::from(timeout_ms % 1000) * 1_000_000,
    };
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the given length, and
    // `timeout` a live timespec; no signal mask is passed. A raw system call, not glibc's
    // cancellable wrapper (~20 instructions a call): shard threads are never cancelled.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &timeout as *const libc::timespec,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(r as usize)
}

/// Preallocated headers for one `recvmmsg` batch into caller buffers.
pub struct RecvBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    bufs: Vec<u8>,
    size: usize,
    /// Headers the last `recv` may have let the kernel write into: only these need resetting.
    /// Rebuilding the whole batch on every call cost more than the rest of the receive path
    /// (the loop mostly wakes for one or two datagrams).
    filled: usize,
}

// SAFETY: the raw pointers inside the headers point into this struct's own heap buffers,
// which move with it; nothing is shared with another thread.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(batch: usize, size: usize) -> Self {
        let mut b = Self {
            // SAFETY: mmsghdr, iovec and sockaddr_storage are plain C structs for which all
            // zero bytes is a valid value.
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
            bufs: vec![0; batch * size],
            size,
            filled: 0,
        };
        for i in 0..batch {
            b.iovs[i] = libc::iovec {
                // SAFETY: `i * size` is within `bufs` (batch × size bytes).
                iov_base: unsafe { b.bufs.as_mut_ptr().add(i * size) }.cast(),
                iov_len: size,
            };
            // The pointers go into the vectors' heap buffers, which never move or grow, so
            // they are set once here.
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut b.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
        }
        b.filled = batch;
        b
    }

    /// The buffer the datagrams are received into; each `recv` overwrites it.
    pub fn region(&self) -> &[u8] {
        &self.bufs
    }

    /// Receives up to a batch without blocking; returns how many arrived.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // The kernel writes only the lengths and flags of the entries it fills.
        for hdr in &mut self.hdrs[..self.filled] {
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        // SAFETY: every header points at live, exclusively owned buffers of the stated sizes
        // (set in `new`, reset above where the kernel may have written); the kernel writes at
        // most `hdrs.len()` entries.
        // A raw system call, as for `poll`.
        let n = unsafe {
            libc::syscall(
                libc::SYS_recvmmsg,
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut::<libc::timespec>(),
            )
        };
        if n < 0 {
            // Whatever an error left behind is reset before the next call.
            self.filled = self.hdrs.len();
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.filled = n as usize;
        Ok(n as usize)
    }

    /// Datagram `i` of the last `recv`: source, payload, and whether it was truncated.
    pub fn get(&self, i: usize) -> (Option<SocketAddr>, &[u8], bool) {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.size);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let src = from_sockaddr(&self.addrs[i], h.msg_hdr.msg_namelen);
        (
            src,
            &self.bufs[i * self.size..i * self.size + len],
            truncated,
        )
    }
}

/// Sends prepared messages with `sendmmsg`, going on after a partial send. A datagram the
/// kernel refuses (e.g. no route) is skipped, not retried. Returns how many were sent.
pub fn sendmmsg_all(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> usize {
    let (mut next, mut ok) = (0, 0);
    while next < hdrs.len() {
        // SAFETY: the headers (and the buffers and addresses they point to) are live and
        // valid for the duration of the call. A raw system call, as for `poll`.
        let r = unsafe {
            libc::syscall(
                libc::SYS_sendmmsg,
                fd,
                hdrs[next..].as_mut_ptr(),
                (hdrs.len() - next) as libc::c_uint,
                0,
            )
        };
        if r > 0 {
            next += r as usize;
            ok += r as usize;
        } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            next += 1;
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip_and_v4_matches_socket2() {
        for a in [
            "192.0.2.7:5060",
            "127.0.0.1:1",
            "[2001:db8::1]:5070",
            "[::1]:65535",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            // SAFETY: all zero bytes is a valid sockaddr_storage.
            let mut ss: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
            let len = to_sockaddr(a, &mut ss);
            assert_eq!(from_sockaddr(&ss, len), Some(a));
            let sa: socket2::SockAddr = a.into();
            assert_eq!(len, sa.len());
            assert_eq!(sa.as_socket(), Some(a));
        }
    }
}
