use proptest::prelude::*;

use super::*;

const S: u64 = 1000;

fn t() -> Tracker {
    Tracker::new(16, 10 * S, 100 * S)
}

#[test]
fn begin_lookup_release() {
    let mut t = t();
    let k = call_key(b"call-1@host");
    assert_eq!(t.begin(k, 1, DestId(7), true, 0), Begin::New);
    let e = t.lookup(k, 1).unwrap();
    assert_eq!(
        (e.set, e.dest, e.state, e.counted),
        (1, DestId(7), CallState::Init, true)
    );
    // A retransmitted INVITE finds the call and counts nothing.
    assert!(matches!(t.begin(k, 1, DestId(9), true, 2), Begin::Existing(e) if e.dest == DestId(7)));
    assert!(t.confirm(k, 3));
    assert_eq!(t.lookup(k, 4).unwrap().state, CallState::Confirmed);
    let r = t.release(k, 5, 32 * S).unwrap();
    assert!(r.counted);
    // Released once only, but still routable for the linger time.
    assert_eq!(t.release(k, 6, 32 * S), None);
    let e = t.lookup(k, 7).unwrap();
    assert_eq!(
        (e.dest, e.state, e.counted),
        (DestId(7), CallState::Released, false)
    );
    assert_eq!(t.lookup(k, 5 + 32 * S), None);
}

#[test]
fn expiry_with_a_virtual_clock() {
    let mut t = t();
    let a = call_key(b"a");
    let b = call_key(b"b");
    t.begin(a, 1, DestId(1), true, 0);
    t.begin(b, 1, DestId(2), true, 0);
    t.confirm(b, 5 * S);
    let mut expired = Vec::new();
    t.expire_all(10 * S - 1, |e| expired.push(e.dest));
    assert!(expired.is_empty());
    // Unconfirmed: gone after init_expire; confirmed: after expire from its 2xx.
    t.expire_all(10 * S, |e| expired.push(e.dest));
    assert_eq!(expired, vec![DestId(1)]);
    assert_eq!(t.len(), 1);
    assert_eq!(
        t.release(a, 10 * S, 0),
        None,
        "release after expiry gives nothing back"
    );
    t.expire_all(105 * S, |e| expired.push(e.dest));
    assert_eq!(expired, vec![DestId(1), DestId(2)]);
    assert!(t.is_empty());
}

#[test]
fn full_table_refuses_and_expired_slot_is_settled() {
    let mut t = Tracker::new(4, 10 * S, 10 * S);
    for i in 0..4u32 {
        assert_eq!(
            t.begin(call_key(&i.to_le_bytes()), 1, DestId(i), true, 0),
            Begin::New
        );
    }
    assert_eq!(t.begin(call_key(b"x"), 1, DestId(9), true, 0), Begin::Full);
    // The same Call-ID after expiry, before the sweep: its old load is handed back.
    let k = call_key(&0u32.to_le_bytes());
    assert!(
        matches!(t.begin(k, 1, DestId(5), true, 20 * S), Begin::Replaced(e) if e.dest == DestId(0))
    );
    assert_eq!(t.lookup(k, 20 * S).unwrap().dest, DestId(5));
}

#[test]
fn deletion_keeps_colliding_runs_reachable() {
    // Keys chosen to share a home slot: their low bits are equal.
    let mut t = Tracker::new(64, 10 * S, 10 * S);
    let mask = 127u64;
    let keys: Vec<u64> = (1..=20u64).map(|i| (i << 20) | 5).collect();
    assert!(keys.iter().all(|k| k & mask == 5));
    for (i, &k) in keys.iter().enumerate() {
        assert_eq!(t.begin(k, 0, DestId(i as u32), false, 0), Begin::New);
    }
    // Remove every other one through expiry of released entries.
    for &k in keys.iter().step_by(2) {
        t.release(k, 0, 0);
    }
    t.expire_all(1, |_| {});
    for (i, &k) in keys.iter().enumerate() {
        assert_eq!(t.lookup(k, 1).is_some(), i % 2 == 1, "key {i}");
    }
    assert_eq!(t.len(), 10);
}

#[test]
fn call_keys_spread() {
    let mut seen = std::collections::HashSet::new();
    for i in 0..100_000u32 {
        assert!(seen.insert(call_key(format!("{i}-12345@192.0.2.1").as_bytes())));
    }
    assert_ne!(call_key(b""), 0);
}

#[test]
fn a_million_calls_fit_in_256_mib() {
    let t = Tracker::new(1_000_000, 1, 1);
    assert!(t.memory() <= 256 << 20, "{} bytes", t.memory());
    assert_eq!(std::mem::size_of::<Slot>(), 32);
}

#[derive(Debug, Clone)]
enum Op {
    Begin(u8, bool),
    Confirm(u8),
    Release(u8),
    Tick(u16),
    Sweep(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..24, any::<bool>()).prop_map(|(k, c)| Op::Begin(k, c)),
        (0u8..24).prop_map(Op::Confirm),
        (0u8..24).prop_map(Op::Release),
        (0u16..3000).prop_map(Op::Tick),
        (1u8..40).prop_map(Op::Sweep),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Load never leaks and never goes negative: every counted call is given back exactly once.
    #[test]
    fn load_accounting_matches_a_model(ops in proptest::collection::vec(op(), 1..300)) {
        let mut t = Tracker::new(16, 2000, 5000);
        let mut now = 0u64;
        let mut load: i64 = 0;
        for o in ops {
            match o {
                Op::Begin(k, c) => {
                    let key = call_key(&[k]);
                    match t.begin(key, 1, DestId(u32::from(k)), c, now) {
                        Begin::New => { if c { load += 1; } }
                        Begin::Replaced(old) => {
                            if old.counted { load -= 1; }
                            if c { load += 1; }
                        }
                        Begin::Existing(e) => prop_assert_eq!(t.lookup(key, now), Some(e)),
                        Begin::Full => prop_assert!(t.len() == 16),
                    }
                }
                Op::Confirm(k) => { t.confirm(call_key(&[k]), now); }
                Op::Release(k) => {
                    if let Some(e) = t.release(call_key(&[k]), now, 500) && e.counted { load -= 1; }
                }
                Op::Tick(d) => now += u64::from(d),
                Op::Sweep(n) => t.expire(now, usize::from(n), |e| { if e.counted { load -= 1; } }),
            }
            prop_assert!(load >= 0);
            prop_assert!(t.len() <= 16);
        }
        // Everything still counted is in the table; after a full sweep far ahead, nothing is.
        t.expire_all(u64::MAX / 2, |e| { if e.counted { load -= 1; } });
        prop_assert_eq!(load, 0);
        prop_assert!(t.is_empty());
    }
}
