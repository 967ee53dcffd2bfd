//! The io_uring shard loop: per socket a multishot `RecvMsgMulti` over a provided buffer ring
//! (Linux ≥ 6.0; buffer rings ≥ 5.19), a multishot poll on the shard's wake-up eventfd, and
//! the send batch pushed as `SendMsg` entries submitted together with the re-arms in one
//! `io_uring_enter`. The send batch's memory is reused only after all its sends completed.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Instant;

use io_uring::types::{BufRingEntry, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, types};

use super::sys::from_sockaddr;
use super::{Handler, IoCounters, ShardIo, Tx};

/// Buffers per socket's ring and their size: room for the recvmsg header, a socket address and
/// a datagram of up to ~8 KB (larger ones are counted as truncated).
const RING_ENTRIES: u16 = 512;
const BUF_SIZE: usize = 8192;

const KIND_RECV: u64 = 1 << 32;
const KIND_SEND: u64 = 2 << 32;
const KIND_WAKE: u64 = 3 << 32;
const KIND_CANCEL: u64 = 4 << 32;
const KIND_MASK: u64 = 0xffff_ffff << 32;

/// Whether the kernel has what this backend needs: io_uring enabled, and the 6.0 opcodes
/// (multishot recvmsg shares its opcode with recvmsg, so zero-copy send, also 6.0, stands in).
pub(crate) fn probe() -> io::Result<()> {
    if std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").is_ok_and(|s| s.trim() != "0")
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "kernel.io_uring_disabled is set",
        ));
    }
    let ring = IoUring::new(8)?;
    let mut p = io_uring::Probe::new();
    ring.submitter().register_probe(&mut p)?;
    if !p.is_supported(opcode::SendZc::CODE) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "kernel older than 6.0 (no multishot recvmsg)",
        ));
    }
    Ok(())
}

/// A provided-buffer ring: the kernel picks a buffer per datagram; we give it back after use.
struct BufRing {
    base: *mut BufRingEntry,
    map_len: usize,
    bufs: Vec<u8>,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring, bgid: u16) -> io::Result<Self> {
        let map_len =
            (usize::from(RING_ENTRIES) * size_of::<BufRingEntry>()).next_multiple_of(4096);
        // SAFETY: an anonymous private mapping; the result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut r = Self {
            base: base.cast(),
            map_len,
            bufs: vec![0; usize::from(RING_ENTRIES) * BUF_SIZE],
            tail: 0,
        };
        // SAFETY: the mapping is page-aligned, zeroed, holds RING_ENTRIES entries and lives
        // until Drop, after the ring that uses it is gone (the ring is dropped first).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(r.base as u64, RING_ENTRIES, bgid, 0)?
        };
        for bid in 0..RING_ENTRIES {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    fn buf(&self, bid: u16) -> &[u8] {
        let s = usize::from(bid) * BUF_SIZE;
        &self.bufs[s..s + BUF_SIZE]
    }

    /// Stages buffer `bid` for the kernel (visible after `publish`).
    fn push(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (RING_ENTRIES - 1));
        // SAFETY: `idx` < RING_ENTRIES, inside the mapping; the kernel does not read entries
        // past the published tail, so writing this one races with nothing.
        let e = unsafe { &mut *self.base.add(idx) };
        // SAFETY: `bid` < RING_ENTRIES, so the offset is inside `bufs`.
        e.set_addr(unsafe { self.bufs.as_ptr().add(usize::from(bid) * BUF_SIZE) } as u64);
        e.set_len(BUF_SIZE as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of our mapping and is 2-byte
        // aligned; the kernel reads it, so the store must be atomic with Release ordering.
        let tail = unsafe { &*BufRingEntry::tail(self.base).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

pub(crate) fn run<H: Handler>(s: ShardIo<H>) {
    if let Err(e) = run_ring(s) {
        tracing::error!("io_uring shard stopped: {e}");
    }
}

fn run_ring<H: Handler>(mut s: ShardIo<H>) -> io::Result<()> {
    let nsock = s.sockets.len();
    let cq =
        (u32::from(RING_ENTRIES) * nsock as u32 * 2 + 2 * s.cfg.batch as u32).next_power_of_two();
    let mut ring = IoUring::builder()
        .setup_cqsize(cq)
        .build(256.max(s.cfg.batch as u32 * 2))?;
    let fds: Vec<_> = s.sockets.iter().map(|k| k.as_raw_fd()).collect();
    let v6 = s.cfg.listen.iter().map(|a| a.is_ipv6()).collect();
    let mut tx = Tx::new(
        s.cfg.batch,
        s.cfg.max_datagram,
        fds.clone(),
        v6,
        s.counters.clone(),
    );
    let mut rings: Vec<BufRing> = (0..nsock)
        .map(|i| BufRing::new(&ring, i as u16))
        .collect::<Result<_, _>>()?;
    // SAFETY: msghdr is a plain C struct; all-zero is valid.
    let mut msgs: Vec<Box<libc::msghdr>> = (0..nsock)
        .map(|_| Box::new(unsafe { MaybeUninit::zeroed().assume_init() }))
        .collect();
    for m in &mut msgs {
        m.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    }
    let wake_fd = s.handoff.wakers[s.idx].fd();
    let mut rearm: Vec<bool> = vec![true; nsock];
    let mut rearm_wake = true;
    let mut stash: Vec<(u64, i32, u32)> = Vec::with_capacity(cq as usize);
    // Completions that arrived while a send batch was being waited for: handled next round.
    let mut later: Vec<(u64, i32, u32)> = Vec::with_capacity(cq as usize);
    let mut wake = vec![false; s.nshards];
    let ts = Timespec::new().nsec(s.cfg.tick.as_nanos().min(999_999_999) as u32);
    // Compared, not subtracted, on every wake-up: a subtraction of two `Instant`s cost ~30
    // instructions.
    let mut next_tick = Instant::now() + s.cfg.tick;

    while !s.stop.load(Ordering::Relaxed) {
        for (i, r) in rearm.iter_mut().enumerate() {
            if std::mem::take(r) {
                let e = opcode::RecvMsgMulti::new(types::Fd(fds[i]), &*msgs[i], i as u16)
                    .build()
                    .user_data(KIND_RECV | i as u64);
                // SAFETY: the msghdr is boxed and outlives the ring; the buffer group is ours.
                push(&mut ring, &e)?;
            }
        }
        if std::mem::take(&mut rearm_wake) {
            let e = opcode::PollAdd::new(types::Fd(wake_fd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(KIND_WAKE);
            push(&mut ring, &e)?;
        }
        let args = SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        stash.clear();
        stash.append(&mut later);
        stash.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let now = Instant::now();
        for &(ud, res, flags) in &stash {
            let i = (ud & !KIND_MASK) as usize;
            match ud & KIND_MASK {
                KIND_RECV => {
                    if !cqueue::more(flags) {
                        rearm[i] = true;
                    }
                    if res < 0 {
                        if res != -libc::ENOBUFS {
                            tracing::warn!(
                                "shard {}: recvmsg: {}",
                                s.idx,
                                io::Error::from_raw_os_error(-res)
                            );
                        }
                        continue;
                    }
                    let Some(bid) = cqueue::buffer_select(flags) else {
                        continue;
                    };
                    let data = &rings[i].buf(bid)[..res as usize];
                    match RecvMsgOut::parse(data, &msgs[i]) {
                        Ok(out) if !out.is_payload_truncated() => {
                            match name_to_addr(out.name_data()) {
                                Some(src) => {
                                    if let Some(o) =
                                        s.dispatch(now, i, src, out.payload_data(), &mut tx)
                                    {
                                        wake[o] = true;
                                    }
                                }
                                None => IoCounters::inc(&s.counters.truncated),
                            }
                        }
                        _ => IoCounters::inc(&s.counters.truncated),
                    }
                    rings[i].push(bid);
                }
                KIND_WAKE => {
                    s.handoff.wakers[s.idx].clear();
                    if !cqueue::more(flags) {
                        rearm_wake = true;
                    }
                }
                _ => {}
            }
        }
        for r in &rings {
            r.publish();
        }
        s.drain_handoff(now, &mut tx);
        if now >= next_tick {
            next_tick = now + s.cfg.tick;
            s.handler.on_tick(now, &mut tx);
        }
        send_batch(&mut ring, &mut tx, &fds, &mut later, &s.counters)?;
        for (o, w) in wake.iter_mut().enumerate() {
            if std::mem::take(w) {
                s.handoff.wakers[o].wake();
            }
        }
    }
    s.drain_handoff(Instant::now(), &mut tx);
    tx.flush();
    cancel_all(&mut ring)?;
    drop(ring);
    drop(rings);
    Ok(())
}

/// Cancels every request still armed (the multishot receives, the wake-up poll) and waits
/// until the kernel has finished them. Without this the ring's teardown after `drop` is
/// asynchronous and keeps the sockets open, and their ports bound, for a while after the shard
/// has stopped.
fn cancel_all(ring: &mut IoUring) -> io::Result<()> {
    let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
        .build()
        .user_data(KIND_CANCEL);
    push(ring, &e)?;
    loop {
        ring.submit_and_wait(1)?;
        if ring.completion().any(|c| c.user_data() == KIND_CANCEL) {
            return Ok(());
        }
    }
}

fn push(ring: &mut IoUring, e: &io_uring::squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every entry pushed refers to memory that outlives its completion (boxed
        // msghdrs, buffer rings, the send batch's headers, which are waited for).
        if unsafe { ring.submission().push(e) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

fn name_to_addr(name: &[u8]) -> Option<std::net::SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let n = name.len().min(size_of::<libc::sockaddr_storage>());
    // SAFETY: copies at most the storage's size from a byte slice into it.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
            n,
        )
    };
    from_sockaddr(&ss, n as libc::socklen_t)
}

/// Sends the batch through the ring and waits until every send completed, so the batch's
/// memory can be reused.
fn send_batch(
    ring: &mut IoUring,
    tx: &mut Tx,
    fds: &[i32],
    later: &mut Vec<(u64, i32, u32)>,
    counters: &IoCounters,
) -> io::Result<()> {
    let mut n = 0;
    for (sock, hdr) in tx.pending() {
        let e = opcode::SendMsg::new(types::Fd(fds[sock]), hdr)
            .build()
            .user_data(KIND_SEND | n as u64);
        push(ring, &e)?;
        n += 1;
    }
    if n == 0 {
        return Ok(());
    }
    let (mut done, mut ok) = (0, 0u64);
    while done < n {
        ring.submit_and_wait(1)?;
        for c in ring.completion() {
            if c.user_data() & KIND_MASK == KIND_SEND {
                done += 1;
                ok += u64::from(c.result() >= 0);
            } else {
                // A receive (its buffer still ours) or a wake-up: handled next round.
                later.push((c.user_data(), c.result(), c.flags()));
            }
        }
    }
    counters.add_tx(ok, n as u64 - ok);
    tx.clear();
    Ok(())
}
