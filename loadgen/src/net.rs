//! Sockets, batched sends to one target, CPU time and kernel drop counters for the three
//! benchmark tools. Receiving reuses sipdispatch's `recvmmsg` batch.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use sipdispatch::io::sys;

pub use sipdispatch::io::sys::RecvBatch;
pub use sipdispatch::tune::udp_rcvbuf_errors;

/// A bound UDP socket with large buffers (non-blocking).
pub fn socket(addr: SocketAddr, buf: usize) -> std::io::Result<socket2::Socket> {
    sys::udp_socket(addr, Some(buf), Some(buf))
}

/// A batch of datagrams to send to one destination, built once and patched in place.
pub struct SendBatch {
    pub bufs: Vec<Vec<u8>>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addr: Box<libc::sockaddr_storage>,
    addr_len: libc::socklen_t,
}

impl SendBatch {
    pub fn new(n: usize, template: &[u8], to: SocketAddr) -> Self {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut addr =
            Box::new(unsafe { MaybeUninit::<libc::sockaddr_storage>::zeroed().assume_init() });
        let addr_len = sys::to_sockaddr(to, &mut addr);
        Self {
            bufs: vec![template.to_vec(); n],
            // SAFETY: plain C struct; all-zero is valid.
            hdrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; n],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                n
            ],
            addr,
            addr_len,
        }
    }

    /// Sends the first `n` buffers; returns how many the kernel took.
    pub fn send(&mut self, sock: &socket2::Socket, n: usize) -> usize {
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.bufs[i].len(),
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut *self.addr as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.addr_len;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
        }
        sys::sendmmsg_all(sock.as_raw_fd(), &mut self.hdrs[..n])
    }
}

/// User + system CPU time of this process.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage fills a zeroed rusage we own.
    let mut ru: libc::rusage = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Pins this thread to `cpu` if given.
pub fn pin(cpu: Option<usize>) {
    if let Some(id) = cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id })
    {
        eprintln!("sipload: could not pin to CPU {id}");
    }
}

/// Waits until the socket is readable or `ms` pass.
pub fn wait_readable(sock: &socket2::Socket, ms: i32) {
    let mut p = [libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let _ = sys::poll(&mut p, ms);
}
