use std::sync::atomic::Ordering::Relaxed;

use super::*;
use crate::dispatch::list::parse;
use crate::dispatch::table::Table;
use crate::dispatch::{HeaderLookup, Keys, UriKey, flags};

struct NoHeaders;
impl HeaderLookup for NoHeaders {
    fn header(&self, _: &[u8]) -> Option<&[u8]> {
        None
    }
}

pub(super) fn table(lines: &str) -> Table {
    Table::build(parse(lines, "t.list").unwrap(), None).unwrap()
}

pub(super) fn set_of(n: usize, attrs: impl Fn(usize) -> String) -> Table {
    let text: String = (0..n)
        .map(|i| format!("1 sip:10.0.0.{}:5060 0 0 {}\n", i + 1, attrs(i)))
        .collect();
    table(&text)
}

pub(super) fn sel(algorithm: Algorithm) -> Selector {
    Selector {
        algorithm,
        hash: HashMode::Kamailio,
        user_only: false,
        key: None,
        limit: 0,
    }
}

pub(super) fn keys<'a>(call_id: &'a [u8], user: &'a [u8]) -> Keys<'a> {
    let u = UriKey {
        secure: false,
        user,
        host: b"example.com",
        port: None,
    };
    Keys {
        method: b"INVITE",
        call_id,
        from_uri: Some(u),
        to_uri: Some(u),
        ruri: Some(u),
        auth_user: Some(user),
        headers: &NoHeaders,
    }
}

/// Picks per destination over `n` synthetic calls.
pub(super) fn spread(t: &Table, s: &Selector, n: usize) -> Vec<usize> {
    let set = t.set(1).unwrap();
    let mut counts = vec![0; set.dests.len()];
    let mut c = Candidates::default();
    let mut rng = Rng::new(42);
    for i in 0..n {
        let cid = format!("{i:08x}-{}@192.0.2.1", i * 7919);
        let user = format!("user{i}");
        select(
            set,
            s,
            &keys(cid.as_bytes(), user.as_bytes()),
            &mut rng,
            0,
            &mut c,
        )
        .unwrap();
        counts[c.first().unwrap()] += 1;
    }
    counts
}

pub(super) fn within(counts: &[usize], shares: &[f64], tol: f64) {
    let total: usize = counts.iter().sum();
    for (c, s) in counts.iter().zip(shares) {
        let got = *c as f64 / total as f64;
        assert!(
            (got - s).abs() <= s * tol,
            "{counts:?} vs shares {shares:?}"
        );
    }
}

#[test]
fn hash_algorithms_spread_evenly() {
    let t = set_of(4, |_| String::new());
    for a in [
        Algorithm::HashCallId,
        Algorithm::HashFrom,
        Algorithm::HashTo,
        Algorithm::HashRuri,
        Algorithm::HashAuth,
        Algorithm::Random,
    ] {
        within(&spread(&t, &sel(a), 100_000), &[0.25; 4], 0.05);
    }
    let mut s = sel(Algorithm::HashKey);
    s.key = Some(KeyTemplate::parse("{from.user}@{callid}").unwrap());
    within(&spread(&t, &s, 100_000), &[0.25; 4], 0.05);
    let mut s = sel(Algorithm::HashCallId);
    s.hash = HashMode::Rendezvous;
    within(&spread(&t, &s, 100_000), &[0.25; 4], 0.05);
}

#[test]
fn round_robin_is_exact_and_serial_takes_the_first() {
    let t = set_of(3, |_| String::new());
    assert_eq!(
        spread(&t, &sel(Algorithm::RoundRobin), 30_000),
        vec![10_000; 3]
    );
    assert_eq!(
        spread(&t, &sel(Algorithm::Serial), 1_000),
        vec![1_000, 0, 0]
    );
    // 14: equal priorities above 0 → round-robin, else serial.
    let rr = table("1 sip:a 0 5\n1 sip:b 0 5\n");
    assert_eq!(
        spread(&rr, &sel(Algorithm::RrOrSerial), 1_000),
        vec![500, 500]
    );
    let serial = table("1 sip:a 0 5\n1 sip:b 0 4\n");
    assert_eq!(
        spread(&serial, &sel(Algorithm::RrOrSerial), 1_000),
        vec![1_000, 0]
    );
}

#[test]
fn weighted_algorithms_hit_their_share() {
    let t = set_of(3, |i| {
        format!("weight={};rweight={}", [50, 30, 20][i], [10, 30, 60][i])
    });
    within(
        &spread(&t, &sel(Algorithm::Weight), 100_000),
        &[0.5, 0.3, 0.2],
        0.02,
    );
    within(
        &spread(&t, &sel(Algorithm::RelativeWeight), 100_000),
        &[0.1, 0.3, 0.6],
        0.02,
    );
    within(
        &spread(&t, &sel(Algorithm::WeightedRoundRobin), 100_000),
        &[0.5, 0.3, 0.2],
        0.02,
    );
    within(
        &spread(&t, &sel(Algorithm::WeightedRandom), 100_000),
        &[0.5, 0.3, 0.2],
        0.02,
    );
    // 26 destinations: no 100-slot rounding (kamailio#2698).
    let t = set_of(26, |_| "rweight=1".into());
    within(
        &spread(&t, &sel(Algorithm::RelativeWeight), 26_000),
        &[1.0 / 26.0; 26],
        0.02,
    );
    // 11 over the active ones only.
    let t = set_of(3, |_| "rweight=50".into());
    t.set(1).unwrap().dests[0]
        .state
        .flags
        .store(flags::INACTIVE, Relaxed);
    within(
        &spread(&t, &sel(Algorithm::RelativeWeight), 10_000)[1..],
        &[0.5, 0.5],
        0.02,
    );
}

#[test]
fn priority_weight_prefers_the_lowest_priority_value() {
    let t = table("1 sip:a 0 1 weight=25\n1 sip:b 0 1 weight=75\n1 sip:c 0 9 weight=100\n");
    // Array order: c (9), a, b; a and b share priority 1, the best for SRV-style order.
    within(
        &spread(&t, &sel(Algorithm::PriorityWeight), 100_000)[1..],
        &[0.25, 0.75],
        0.02,
    );
    let set = t.set(1).unwrap();
    set.dests[1].state.flags.store(flags::INACTIVE, Relaxed);
    set.dests[2].state.flags.store(flags::INACTIVE, Relaxed);
    assert_eq!(
        spread(&t, &sel(Algorithm::PriorityWeight), 100),
        vec![100, 0, 0]
    );
}

#[test]
fn failover_lists_follow_kamailio_order_and_skip_inactive() {
    let t = set_of(5, |_| String::new());
    let set = t.set(1).unwrap();
    set.dests[3].state.flags.store(flags::INACTIVE, Relaxed);
    set.dests[1].state.flags.store(flags::DISABLED, Relaxed);
    set.dests[0].state.flags.store(flags::TRYING, Relaxed); // still selectable
    let mut c = Candidates::default();
    // Find a Call-ID hashing to slot 3 (inactive): the pick walks to 4, then 0, 2.
    let cid = (0..)
        .map(|i| format!("call-{i}"))
        .find(|c| crate::dispatch::hash::kamailio_hash(c.as_bytes(), None) % 5 == 3)
        .unwrap();
    select(
        set,
        &sel(Algorithm::HashCallId),
        &keys(cid.as_bytes(), b"u"),
        &mut Rng::new(1),
        0,
        &mut c,
    )
    .unwrap();
    assert_eq!(c.as_slice(), &[4, 0, 2]);
    let mut s = sel(Algorithm::HashCallId);
    s.limit = 2;
    select(
        set,
        &s,
        &keys(cid.as_bytes(), b"u"),
        &mut Rng::new(1),
        0,
        &mut c,
    )
    .unwrap();
    assert_eq!(c.as_slice(), &[4, 0]);
    for i in [0, 2, 4] {
        set.dests[i].state.flags.store(flags::INACTIVE, Relaxed);
    }
    assert_eq!(
        select(
            set,
            &sel(Algorithm::RoundRobin),
            &keys(b"x", b"u"),
            &mut Rng::new(1),
            0,
            &mut c
        ),
        Err(NoDestination)
    );
}

#[test]
fn round_robin_skips_inactive_without_doubling_a_neighbour() {
    let t = set_of(3, |_| String::new());
    t.set(1).unwrap().dests[1]
        .state
        .flags
        .store(flags::INACTIVE, Relaxed);
    assert_eq!(
        spread(&t, &sel(Algorithm::RoundRobin), 1_000),
        vec![500, 0, 500]
    );
}

#[test]
fn call_load_picks_the_least_loaded_under_maxload() {
    let t = set_of(3, |i| format!("duid=d{i};maxload={}", [2, 0, 1][i]));
    let set = t.set(1).unwrap();
    let mut c = Candidates::default();
    let mut picks = Vec::new();
    for i in 0..6 {
        let cid = format!("c{i}");
        select(
            set,
            &sel(Algorithm::CallLoad),
            &keys(cid.as_bytes(), b"u"),
            &mut Rng::new(1),
            0,
            &mut c,
        )
        .unwrap();
        let p = c.first().unwrap();
        set.dests[p].state.inc_load();
        picks.push(p);
    }
    // Fewest calls first, ties to the lowest index; 0 stops at 2 calls, 2 at 1, 1 is unlimited.
    assert_eq!(picks, vec![0, 1, 2, 0, 1, 1]);
    // The failover list leaves out destinations at maxload.
    select(
        set,
        &sel(Algorithm::CallLoad),
        &keys(b"n", b"u"),
        &mut Rng::new(1),
        0,
        &mut c,
    )
    .unwrap();
    assert_eq!(c.as_slice(), &[1]);
    // Other methods are hashed by Call-ID.
    let mut k = keys(b"n", b"u");
    k.method = b"OPTIONS";
    select(
        set,
        &sel(Algorithm::CallLoad),
        &k,
        &mut Rng::new(1),
        0,
        &mut c,
    )
    .unwrap();
    assert_eq!(c.len(), 3);
}

#[test]
fn rendezvous_moves_only_the_failed_destinations_keys() {
    let t = set_of(5, |_| String::new());
    let set = t.set(1).unwrap();
    let mut s = sel(Algorithm::HashCallId);
    s.hash = HashMode::Rendezvous;
    let mut c = Candidates::default();
    let mut rng = Rng::new(1);
    let mut pick = |cid: &str| {
        select(set, &s, &keys(cid.as_bytes(), b"u"), &mut rng, 0, &mut c).unwrap();
        c.first().unwrap()
    };
    let ids: Vec<String> = (0..20_000).map(|i| format!("call-{i}@h")).collect();
    let before: Vec<usize> = ids.iter().map(|i| pick(i)).collect();
    set.dests[2].state.flags.store(flags::INACTIVE, Relaxed);
    let during: Vec<usize> = ids.iter().map(|i| pick(i)).collect();
    let mut moved_to = [0usize; 5];
    for (b, d) in before.iter().zip(&during) {
        if *b == 2 {
            moved_to[*d] += 1;
        } else {
            assert_eq!(b, d, "a key of a healthy destination moved");
        }
    }
    assert_eq!(moved_to[2], 0);
    let moved: usize = moved_to.iter().sum();
    for (i, m) in moved_to.iter().enumerate().filter(|(i, _)| *i != 2) {
        let share = *m as f64 / moved as f64;
        assert!(
            (share - 0.25).abs() < 0.05,
            "dest {i} got {share} of the failed share"
        );
    }
    set.dests[2].state.flags.store(0, Relaxed);
    let after: Vec<usize> = ids.iter().map(|i| pick(i)).collect();
    assert_eq!(before, after, "keys come back when the destination returns");

    // Kamailio's mode hands the whole share to the next index (kamailio#2361).
    let mut k = sel(Algorithm::HashCallId);
    k.limit = 1;
    set.dests[2].state.flags.store(flags::INACTIVE, Relaxed);
    let mut c = Candidates::default();
    let mut to3 = 0;
    for id in &ids {
        select(
            set,
            &k,
            &keys(id.as_bytes(), b"u"),
            &mut Rng::new(1),
            0,
            &mut c,
        )
        .unwrap();
        to3 += usize::from(c.first() == Some(3));
    }
    assert!(to3 as f64 > 0.35 * ids.len() as f64);
}

#[test]
fn opensips_hash_rehashes_over_active_weights() {
    let t = set_of(4, |_| String::new());
    let set = t.set(1).unwrap();
    set.dests[1].state.flags.store(flags::INACTIVE, Relaxed);
    let mut s = sel(Algorithm::HashCallId);
    s.hash = HashMode::Opensips;
    let counts = spread(&t, &s, 60_000);
    assert_eq!(counts[1], 0);
    // 0, 2, 3 keep their own quarter and share the dead one's: about a third each.
    within(&[counts[0], counts[2], counts[3]], &[1.0 / 3.0; 3], 0.05);
}

#[test]
fn latency_prefers_the_faster_destination_and_rotates_equals() {
    let t = table("1 sip:a 0 10\n1 sip:b 0 10\n");
    assert_eq!(spread(&t, &sel(Algorithm::Latency), 1_000), vec![500, 500]);
    let set = t.set(1).unwrap();
    set.dests[0].state.latency_est_us.store(80_000, Relaxed); // 80 ms: 10 - 80/10 = 2
    set.dests[1].state.latency_est_us.store(5_000, Relaxed); // 5 ms ≤ 10: stays 10
    assert_eq!(spread(&t, &sel(Algorithm::Latency), 1_000), vec![0, 1_000]);
}

#[test]
fn overload_control_skips_at_its_rate() {
    let t = set_of(2, |_| "ocmax=100".into());
    let set = t.set(1).unwrap();
    assert!(oc_set(&set.dests[0], 100, 500, 1, 1_000));
    assert!(
        !oc_set(&set.dests[0], 50, 500, 1, 1_000),
        "old sequence refused"
    );
    let mut c = Candidates::default();
    let mut rng = Rng::new(3);
    let mut n0 = 0;
    for _ in 0..1_000 {
        select(
            set,
            &sel(Algorithm::RoundRobinOc),
            &keys(b"c", b"u"),
            &mut rng,
            1_200,
            &mut c,
        )
        .unwrap();
        n0 += usize::from(c.first() == Some(0));
    }
    assert_eq!(n0, 0);
    // After the validity window, plain round-robin again.
    let counts = {
        let mut n = [0; 2];
        for _ in 0..1_000 {
            select(
                set,
                &sel(Algorithm::RoundRobinOc),
                &keys(b"c", b"u"),
                &mut rng,
                2_000,
                &mut c,
            )
            .unwrap();
            n[c.first().unwrap()] += 1;
        }
        n
    };
    assert_eq!(counts, [500, 500]);
}

#[test]
fn parallel_returns_every_usable_destination() {
    let t = set_of(4, |_| String::new());
    t.set(1).unwrap().dests[2]
        .state
        .flags
        .store(flags::DISABLED, Relaxed);
    let mut c = Candidates::default();
    select(
        t.set(1).unwrap(),
        &sel(Algorithm::Parallel),
        &keys(b"c", b"u"),
        &mut Rng::new(1),
        0,
        &mut c,
    )
    .unwrap();
    assert_eq!(c.as_slice(), &[0, 1, 3]);
}

#[test]
fn concurrent_round_robin_is_exact_in_total() {
    let t = set_of(4, |_| String::new());
    let set = t.set(1).unwrap();
    let totals: Vec<Vec<usize>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut counts = vec![0usize; 4];
                    let mut c = Candidates::default();
                    let mut rng = Rng::new(7);
                    for _ in 0..25_000 {
                        select(
                            set,
                            &sel(Algorithm::RoundRobin),
                            &keys(b"c", b"u"),
                            &mut rng,
                            0,
                            &mut c,
                        )
                        .unwrap();
                        counts[c.first().unwrap()] += 1;
                    }
                    counts
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sum: Vec<usize> = (0..4).map(|i| totals.iter().map(|t| t[i]).sum()).collect();
    assert_eq!(sum, vec![25_000; 4]);
}

#[test]
fn names_and_numbers() {
    assert_eq!(
        Algorithm::from_number(10, Numbering::Kamailio),
        Ok(Algorithm::CallLoad)
    );
    assert_eq!(
        Algorithm::from_number(4, Numbering::Opensips),
        Ok(Algorithm::WeightedRoundRobin)
    );
    assert!(Algorithm::from_number(9, Numbering::Opensips).is_err());
    assert!(Algorithm::from_number(16, Numbering::Kamailio).is_err());
    assert_eq!(
        Algorithm::from_name("round-robin-oc", Numbering::Kamailio),
        Ok(Algorithm::RoundRobinOc)
    );
    assert_eq!(
        Algorithm::from_name("64", Numbering::Kamailio),
        Ok(Algorithm::RoundRobinOc)
    );
    for n in (0..=15).chain([64]) {
        let a = Algorithm::from_number(n, Numbering::Kamailio).unwrap();
        assert_eq!(Algorithm::from_name(a.name(), Numbering::Kamailio), Ok(a));
    }
}

#[test]
fn hash_modes_print_as_configs_spell_them() {
    #[derive(serde::Deserialize)]
    struct H {
        hash: HashMode,
    }
    for mode in [HashMode::Kamailio, HashMode::Rendezvous, HashMode::Opensips] {
        let h: H = toml::from_str(&format!("hash = \"{}\"", mode.name())).unwrap();
        assert_eq!(h.hash, mode);
    }
}
