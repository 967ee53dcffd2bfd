//! Steady state allocates nothing: the built-in uac and uas engines talk to each other in
//! memory (time is simulated), and once warmed up thousands more calls (INVITE, 180, 200,
//! ACK, BYE, 200, timers, dead-call memory) run without one heap allocation on this thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::builtin;
use super::engine::{Engine, Env, Net};
use super::scenario::parse;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting only touches
// const-initialised thread-locals, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's layout, passed through.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System.alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: as for `dealloc`, and `n` is the caller's new size.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Datagrams in flight, in buffers allocated once.
struct Wire {
    bufs: Vec<Vec<u8>>,
    n: usize,
    from: SocketAddr,
}

impl Wire {
    fn new(from: SocketAddr) -> Self {
        Self {
            bufs: (0..4096).map(|_| Vec::with_capacity(2048)).collect(),
            n: 0,
            from,
        }
    }
}

impl Net for Wire {
    fn send(&mut self, _: SocketAddr, data: &[u8]) {
        let b = &mut self.bufs[self.n];
        b.clear();
        b.extend_from_slice(data);
        self.n += 1;
    }
}

fn env(local: SocketAddr, remote: SocketAddr) -> Env {
    Env {
        service: "service".into(),
        remote,
        remote_host: remote.to_string(),
        local,
        media_ip: "127.0.0.1".into(),
        media_port: 6000,
        pid: 4242,
        cid_str: "%u-%p@%s".into(),
        base_cseq: 1,
        pause_default: Duration::ZERO,
        recv_timeout: None,
        retrans: true,
        max_invite_retrans: 5,
        max_non_invite_retrans: 9,
        t2: Duration::from_secs(4),
        behaviors: super::call::Behaviors::ALL,
        deadcall_wait: Duration::from_secs(2),
        users: None,
        local_text: String::new(),
        remote_text: String::new(),
        inject: Default::default(),
        started: Instant::now(),
        lost: 0.0,
        send_to: None,
    }
    .with_texts()
}

/// Delivers everything in flight, both ways, until the wires are quiet.
fn shuttle(now: Instant, uac: &mut Engine, uas: &mut Engine, a: &mut Wire, b: &mut Wire) {
    while a.n > 0 || b.n > 0 {
        for i in 0..std::mem::take(&mut a.n) {
            let data = std::mem::take(&mut a.bufs[i]);
            uas.on_datagram(now, a.from, &data, b);
            a.bufs[i] = data;
        }
        for i in 0..std::mem::take(&mut b.n) {
            let data = std::mem::take(&mut b.bufs[i]);
            uac.on_datagram(now, b.from, &data, a);
            b.bufs[i] = data;
        }
    }
}

#[test]
fn calls_in_steady_state_allocate_nothing() {
    let (ua, sa): (SocketAddr, SocketAddr) = (
        "127.0.0.1:5070".parse().unwrap(),
        "127.0.0.1:5071".parse().unwrap(),
    );
    let keys = HashMap::new();
    let mut uac = Engine::new(
        parse(builtin::UAC, "uac", &keys, &[]).unwrap(),
        env(ua, sa),
        None,
    );
    let mut uas = Engine::new(
        parse(builtin::UAS, "uas", &keys, &[]).unwrap(),
        env(sa, ua),
        None,
    );
    let (mut a, mut b) = (Wire::new(ua), Wire::new(sa));
    // The counter sees this thread's allocations.
    COUNTING.with(|c| c.set(true));
    let probe = std::hint::black_box(Box::new(7u64));
    COUNTING.with(|c| c.set(false));
    drop(probe);
    assert_eq!(COUNT.with(|c| c.replace(0)), 1);
    let t0 = Instant::now();
    // One call per simulated millisecond: 4 s of timewait and 2 s of dead-call memory fill up
    // in the first 6 s; count over the next 3 s.
    let mut measured = 0;
    for ms in 0..9_000u64 {
        let now = t0 + Duration::from_millis(ms);
        if ms == 6_000 {
            COUNTING.with(|c| c.set(true));
        }
        uac.on_timers(now, &mut a);
        uas.on_timers(now, &mut b);
        uac.start_call(now, &mut a);
        shuttle(now, &mut uac, &mut uas, &mut a, &mut b);
        if ms >= 6_000 {
            measured += 1;
        }
    }
    COUNTING.with(|c| c.set(false));
    let allocations = COUNT.with(Cell::get);
    assert_eq!(uac.stats.total.failed + uas.stats.total.failed, 0);
    assert!(
        uac.stats.total.success >= 8_999,
        "{}",
        uac.stats.total.success
    );
    assert_eq!(measured, 3_000);
    assert_eq!(
        allocations, 0,
        "allocations during {measured} calls in steady state"
    );
}
