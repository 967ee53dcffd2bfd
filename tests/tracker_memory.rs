//! The Call-ID tracker's memory, measured: track one million calls under a counting global
//! allocator and check the heap it took (peak and live) and the resident-set growth stay
//! within 256 MB, and that tracking them allocates nothing after the table is built. Only the
//! test's own thread is counted: the test harness's threads allocate when they please (CI once
//! saw 900 bytes more than the table).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use sipdispatch::dispatch::DestId;
use sipdispatch::dispatch::tracker::{Begin, Tracker, call_key};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MEASURED: Cell<bool> = const { Cell::new(false) };
}

/// Whether the allocating thread is the one under measurement (never while its thread-locals
/// are torn down).
fn measured() -> bool {
    MEASURED.try_with(Cell::get).unwrap_or(false)
}

fn grew(n: usize) {
    if !measured() {
        return;
    }
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
    ALLOCS.fetch_add(1, Relaxed);
}

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grew(l.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        grew(l.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if measured() {
            LIVE.fetch_sub(l.size(), Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if measured() {
            LIVE.fetch_sub(l.size(), Relaxed);
        }
        grew(n);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

const BUDGET: usize = 256 * 1000 * 1000;
const CALLS: u32 = 1_000_000;

#[test]
fn a_million_tracked_calls_fit_in_256_mb() {
    MEASURED.with(|m| m.set(true));
    let mut call_id = String::with_capacity(64);
    let (live0, rss0) = (LIVE.load(Relaxed), rss());
    PEAK.store(live0, Relaxed);
    let mut t = Tracker::new(CALLS as usize, 7_200_000, 7_200_000);
    let allocs = ALLOCS.load(Relaxed);
    for i in 0..CALLS {
        call_id.clear();
        let _ = write!(call_id, "{i}-{}@192.0.2.{}", i.wrapping_mul(7919), i % 254);
        let key = call_key(call_id.as_bytes());
        assert_eq!(t.begin(key, 1, DestId(i % 16), true, 0), Begin::New);
    }
    assert_eq!(ALLOCS.load(Relaxed), allocs, "tracking a call allocated");
    assert_eq!(t.len(), CALLS as usize);
    // Every call is still there.
    for i in (0..CALLS).step_by(997) {
        call_id.clear();
        let _ = write!(call_id, "{i}-{}@192.0.2.{}", i.wrapping_mul(7919), i % 254);
        let e = t.lookup(call_key(call_id.as_bytes()), 1).expect("tracked");
        assert_eq!(e.dest, DestId(i % 16));
    }
    let heap_peak = PEAK.load(Relaxed) - live0;
    let heap_live = LIVE.load(Relaxed) - live0;
    let rss_growth = rss().saturating_sub(rss0);
    eprintln!(
        "1M calls: heap peak {heap_peak} B, live {heap_live} B ({} B per call), RSS +{rss_growth} B",
        heap_live / CALLS as usize
    );
    assert_eq!(heap_live, t.memory(), "the table is all the tracker holds");
    assert!(heap_peak <= BUDGET, "heap peak {heap_peak} B");
    assert!(rss_growth <= BUDGET, "resident set grew by {rss_growth} B");
    // The documented fixed cost: 32-byte slots, `capacity × 4/3` rounded up to a power of two.
    assert_eq!(t.memory(), 32 << 21);
}
