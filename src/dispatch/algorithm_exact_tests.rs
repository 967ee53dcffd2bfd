//! Selection checked the way a Kamailio user would compare it: spreads over other set sizes,
//! exact weighted shares, the failover list of every algorithm, algorithm 13 on the admin
//! guide's own example, weighted rendezvous key by key, and OpenSIPS numbering.

use std::sync::atomic::Ordering::Relaxed;

use super::tests::{keys, sel, set_of, spread, table, within};
use super::*;
use crate::dispatch::table::Set;
use crate::dispatch::{HeaderLookup, Keys, UriKey, flags};

fn first_of(set: &Set, s: &Selector, k: &Keys<'_>) -> (usize, Vec<u16>) {
    let mut c = Candidates::default();
    select(set, s, k, &mut Rng::new(9), 0, &mut c).unwrap();
    (c.first().unwrap(), c.as_slice().to_vec())
}

#[test]
fn hash_algorithms_spread_evenly_over_2_3_and_10() {
    for n in [2, 3, 10] {
        let t = set_of(n, |_| String::new());
        let even = vec![1.0 / n as f64; n];
        for a in [
            Algorithm::HashCallId,
            Algorithm::HashFrom,
            Algorithm::HashTo,
            Algorithm::HashRuri,
            Algorithm::HashAuth,
        ] {
            within(&spread(&t, &sel(a), 100_000), &even, 0.05);
        }
        let mut s = sel(Algorithm::HashKey);
        s.key = Some(KeyTemplate::parse("{callid}").unwrap());
        within(&spread(&t, &s, 100_000), &even, 0.05);
        let mut s = sel(Algorithm::HashCallId);
        s.hash = HashMode::Rendezvous;
        within(&spread(&t, &s, 100_000), &even, 0.05);
    }
}

#[test]
fn hash_auth_without_a_username_is_round_robin() {
    let t = set_of(3, |_| String::new());
    let set = t.set(1).unwrap();
    let mut picks = Vec::new();
    for i in 0..9 {
        let cid = format!("c{i}");
        let mut k = keys(cid.as_bytes(), b"u");
        k.auth_user = None;
        picks.push(first_of(set, &sel(Algorithm::HashAuth), &k).0);
    }
    assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
}

/// Kamailio's list: the chosen index, then the following ones in array order, wrapping,
/// without unusable destinations, cut at the limit.
fn kamailio_order(first: usize, n: usize, usable: &[bool]) -> Vec<u16> {
    (0..n)
        .map(|k| (first + k) % n)
        .filter(|&i| usable[i])
        .map(|i| i as u16)
        .collect()
}

#[test]
fn every_algorithm_builds_kamailios_failover_list() {
    let t = set_of(6, |i| format!("duid=d{i};weight=15;rweight={}", 10 + i));
    let set = t.set(1).unwrap();
    set.dests[1].state.flags.store(flags::INACTIVE, Relaxed);
    set.dests[4].state.flags.store(flags::DISABLED, Relaxed);
    set.dests[2].state.flags.store(flags::TRYING, Relaxed);
    let usable = [true, false, true, true, false, true];
    let mut key = sel(Algorithm::HashKey);
    key.key = Some(KeyTemplate::parse("{from.user}").unwrap());
    let mut selectors: Vec<Selector> = [
        Algorithm::HashCallId,
        Algorithm::HashFrom,
        Algorithm::HashTo,
        Algorithm::HashRuri,
        Algorithm::HashAuth,
        Algorithm::RoundRobin,
        Algorithm::Random,
        Algorithm::Serial,
        Algorithm::Weight,
        Algorithm::CallLoad,
        Algorithm::RelativeWeight,
        Algorithm::Latency,
        Algorithm::RrOrSerial,
        Algorithm::PriorityWeight,
        Algorithm::RoundRobinOc,
        Algorithm::WeightedRoundRobin,
        Algorithm::WeightedRandom,
    ]
    .into_iter()
    .map(sel)
    .collect();
    selectors.push(key);
    let mut o = sel(Algorithm::HashCallId);
    o.hash = HashMode::Opensips;
    selectors.push(o);
    for s in &selectors {
        for limit in [0, 1, 3] {
            let mut s = s.clone();
            s.limit = limit;
            for i in 0..200 {
                let cid = format!("{i}-4242@192.0.2.7");
                let user = format!("u{i}");
                let (first, list) = first_of(set, &s, &keys(cid.as_bytes(), user.as_bytes()));
                let mut want = kamailio_order(first, 6, &usable);
                if limit > 0 {
                    want.truncate(limit);
                }
                assert_eq!(list, want, "{:?} limit {limit}", s.algorithm);
            }
        }
    }
    // Parallel: every usable destination, whatever the limit.
    let mut p = sel(Algorithm::Parallel);
    p.limit = 1;
    assert_eq!(first_of(set, &p, &keys(b"c", b"u")).1, [0, 2, 3, 5]);
}

#[test]
fn call_load_failover_leaves_out_full_destinations() {
    let t = set_of(4, |i| format!("duid=d{i};maxload={}", [1, 0, 1, 5][i]));
    let set = t.set(1).unwrap();
    set.dests[0].state.inc_load(); // full
    set.dests[1].state.inc_load();
    set.dests[1].state.inc_load(); // unlimited, two calls
    set.dests[3].state.inc_load(); // one call of five
    // Least loaded under maxload: 2 (0 calls); then 3, (0 full), 1, in array order from 2.
    assert_eq!(
        first_of(set, &sel(Algorithm::CallLoad), &keys(b"x", b"u")).1,
        [2, 3, 1]
    );
}

#[test]
fn rendezvous_failover_is_by_score_and_stable() {
    let t = set_of(5, |_| String::new());
    let set = t.set(1).unwrap();
    let mut s = sel(Algorithm::HashCallId);
    s.hash = HashMode::Rendezvous;
    for i in 0..2_000 {
        let cid = format!("call-{i}");
        let (_, full) = first_of(set, &s, &keys(cid.as_bytes(), b"u"));
        assert_eq!(full.len(), 5);
        // The list after the first is what the key picks when the first is down.
        let d = usize::from(full[0]);
        set.dests[d].state.flags.store(flags::INACTIVE, Relaxed);
        let (_, without) = first_of(set, &s, &keys(cid.as_bytes(), b"u"));
        set.dests[d].state.flags.store(0, Relaxed);
        assert_eq!(without, full[1..], "key {cid}");
    }
}

#[test]
fn weights_are_exact_over_every_cycle() {
    // Three equal weights: Kamailio's 100-slot table gives 34/33/33; here exactly a third.
    let t = set_of(3, |_| "weight=33".into());
    assert_eq!(spread(&t, &sel(Algorithm::Weight), 99_000), [33_000; 3]);
    // The admin guide's rweight 1/2/1 example: 25/50/25, then 33/67/0 with the third down.
    let t = set_of(3, |i| format!("rweight={}", [1, 2, 1][i]));
    assert_eq!(
        spread(&t, &sel(Algorithm::RelativeWeight), 100_000),
        [25_000, 50_000, 25_000]
    );
    t.set(1).unwrap().dests[2]
        .state
        .flags
        .store(flags::INACTIVE, Relaxed);
    assert_eq!(
        spread(&t, &sel(Algorithm::RelativeWeight), 99_999),
        [33_333, 66_666, 0]
    );
    // More than 25 destinations (kamailio#2698): every one gets its exact share.
    let t = set_of(30, |i| format!("rweight={}", 1 + i % 3));
    let counts = spread(&t, &sel(Algorithm::RelativeWeight), 60_000);
    for (i, c) in counts.iter().enumerate() {
        assert_eq!(*c, 1_000 * (1 + i % 3), "destination {i}");
    }
    // 15: exact among the best priority (lowest value).
    let t = table("1 sip:a 0 2 weight=70\n1 sip:b 0 1 weight=10\n1 sip:c 0 1 weight=30\n");
    assert_eq!(
        spread(&t, &sel(Algorithm::PriorityWeight), 40_000),
        [0, 10_000, 30_000]
    );
    // 9 uses the weights only when the first destination has one, as Kamailio.
    let t = table("1 sip:a 0 0\n1 sip:b 0 0 weight=50\n");
    assert_eq!(spread(&t, &sel(Algorithm::Weight), 100), [100, 0]);
}

#[test]
fn concurrent_weighted_selection_is_exact_in_total() {
    let t = set_of(3, |i| format!("weight={}", [50, 30, 20][i]));
    let set = t.set(1).unwrap();
    let totals: Vec<[usize; 3]> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| {
                    let mut n = [0usize; 3];
                    for _ in 0..25_000 {
                        n[first_of(set, &sel(Algorithm::Weight), &keys(b"c", b"u")).0] += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sum: Vec<usize> = (0..3).map(|i| totals.iter().map(|t| t[i]).sum()).collect();
    assert_eq!(sum, [50_000, 30_000, 20_000]);
}

/// The admin guide's table for algorithm 13: seven gateways of priority 30 whose estimated
/// latencies give adjusted priorities 30, 27, 28, 30, 29, 30, 24 and a third of the load each
/// for gateways 1, 4 and 6.
#[test]
fn latency_matches_the_admin_guide_example() {
    let text: String = (0..7)
        .map(|i| format!("1 sip:10.0.0.{}:5060 0 30\n", i + 1))
        .collect();
    let t = table(&text);
    let set = t.set(1).unwrap();
    for (d, ms) in set.dests.iter().zip([21u64, 91, 61, 19, 32, 0, 201]) {
        d.state.latency_est_us.store(ms * 1000, Relaxed);
    }
    let counts = spread(&t, &sel(Algorithm::Latency), 3_000);
    assert_eq!(counts, [1_000, 0, 0, 1_000, 0, 1_000, 0]);
    // The failover list is the adjusted order: the 30s (rotation order), 29, 28, 27, 24.
    let (first, list) = first_of(set, &sel(Algorithm::Latency), &keys(b"c", b"u"));
    assert!([0, 3, 5].contains(&first));
    assert_eq!(&list[3..], [4, 2, 1, 6]);
    // With cc=1 the latency that counts is EST-AVG.
    let t = table("1 sip:a 0 10 cc=1\n1 sip:b 0 10\n");
    let set = t.set(1).unwrap();
    for d in &set.dests {
        d.state.latency_est_us.store(50_000, Relaxed);
        d.state.latency_avg_us.store(45_000, Relaxed);
    }
    // a: 50-45 = 5 ms ≤ 10 → 10; b: 50 ms → 10 - 5 = 5.
    assert_eq!(spread(&t, &sel(Algorithm::Latency), 100), [100, 0]);
}

#[test]
fn weighted_rendezvous_moves_only_the_failed_share_key_by_key() {
    let weights = [10.0, 20.0, 30.0, 40.0];
    let t = set_of(4, |i| format!("rweight={}", [10, 20, 30, 40][i]));
    let set = t.set(1).unwrap();
    let mut s = sel(Algorithm::HashCallId);
    s.hash = HashMode::Rendezvous;
    let ids: Vec<String> = (0..100_000)
        .map(|i| format!("{i}-31337@192.0.2.9"))
        .collect();
    let pick_all = || -> Vec<usize> {
        ids.iter()
            .map(|i| first_of(set, &s, &keys(i.as_bytes(), b"u")).0)
            .collect()
    };
    let before = pick_all();
    let mut counts = [0usize; 4];
    for &b in &before {
        counts[b] += 1;
    }
    within(&counts, &weights.map(|w| w / 100.0), 0.02);
    set.dests[3].state.flags.store(flags::INACTIVE, Relaxed);
    let during = pick_all();
    let mut moved_to = [0usize; 4];
    for (b, d) in before.iter().zip(&during) {
        if *b == 3 {
            moved_to[*d] += 1;
        } else {
            assert_eq!(b, d, "a key of a healthy destination moved");
        }
    }
    // The failed destination's keys spread in proportion to the others' weights.
    within(
        &moved_to[..3],
        &[10.0 / 60.0, 20.0 / 60.0, 30.0 / 60.0],
        0.05,
    );
    set.dests[3].state.flags.store(0, Relaxed);
    assert_eq!(
        pick_all(),
        before,
        "keys come back when the destination returns"
    );
}

#[test]
fn opensips_weighted_round_robin_takes_each_weight_in_a_row() {
    let t = set_of(3, |i| format!("weight={}", [3, 2, 1][i]));
    let mut s = sel(Algorithm::from_number(4, Numbering::Opensips).unwrap());
    s.limit = 1;
    let set = t.set(1).unwrap();
    let picks: Vec<usize> = (0..12)
        .map(|_| first_of(set, &s, &keys(b"c", b"u")).0)
        .collect();
    assert_eq!(picks, [0, 0, 0, 1, 1, 2, 0, 0, 0, 1, 1, 2]);
    // A destination that is down passes its turns to the next one.
    set.dests[1].state.flags.store(flags::INACTIVE, Relaxed);
    let picks: Vec<usize> = (0..6)
        .map(|_| first_of(set, &s, &keys(b"c", b"u")).0)
        .collect();
    assert_eq!(picks, [0, 0, 0, 2, 2, 2]);
    assert_eq!(
        Algorithm::from_number(6, Numbering::Opensips),
        Ok(Algorithm::WeightedRandom)
    );
}

#[test]
fn opensips_hashing_follows_the_weights_and_rehashes_over_the_active_ones() {
    let t = set_of(4, |i| format!("weight={}", [10, 20, 30, 40][i]));
    let mut s = sel(Algorithm::HashCallId);
    s.hash = HashMode::Opensips;
    within(&spread(&t, &s, 100_000), &[0.1, 0.2, 0.3, 0.4], 0.05);
    t.set(1).unwrap().dests[3]
        .state
        .flags
        .store(flags::INACTIVE, Relaxed);
    let c = spread(&t, &s, 100_000);
    assert_eq!(c[3], 0);
    // Re-hashed over 10+20+30: shares 1/6, 2/6, 3/6 (not the next index taking it all).
    within(&c[..3], &[1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0], 0.05);
}

struct Hdr;
impl HeaderLookup for Hdr {
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        name.eq_ignore_ascii_case(b"x-account")
            .then_some(b"acme-42")
    }
}

#[test]
fn hash_key_is_kamailios_hash_of_the_printed_template() {
    // `{from.user}@{to.host}` is Kamailio's `$fU@$td`; an algorithm-7 pick is the Kamailio
    // hash of the printed string, mod n, as `dispatcher.hash` would report it.
    let t = set_of(7, |_| String::new());
    let set = t.set(1).unwrap();
    let from = UriKey {
        secure: false,
        user: b"alice",
        host: b"a.example",
        port: None,
    };
    let to = UriKey {
        secure: false,
        user: b"bob",
        host: b"b.example",
        port: Some(5080),
    };
    let k = Keys {
        method: b"INVITE",
        call_id: b"1-1@h",
        from_uri: Some(from),
        to_uri: Some(to),
        ruri: Some(to),
        auth_user: None,
        headers: &Hdr,
    };
    for (tpl, text) in [
        ("{from.user}@{to.host}", &b"alice@b.example"[..]),
        ("{hdr.X-Account}", b"acme-42"),
        ("acct {hdr.x-account} {callid}", b"acct acme-42 1-1@h"),
    ] {
        let mut s = sel(Algorithm::HashKey);
        s.key = Some(KeyTemplate::parse(tpl).unwrap());
        let want = crate::dispatch::hash::kamailio_hash(text, None) as usize % 7;
        assert_eq!(first_of(set, &s, &k).0, want, "{tpl}");
    }
    // A key that prints empty selects nothing, as Kamailio's "empty hash_pvar" error.
    let mut s = sel(Algorithm::HashKey);
    s.key = Some(KeyTemplate::parse("{hdr.X-Missing}").unwrap());
    let mut c = Candidates::default();
    assert_eq!(
        select(set, &s, &k, &mut Rng::new(1), 0, &mut c),
        Err(NoDestination)
    );
}

#[test]
fn uri_hashes_use_kamailios_uri_key() {
    // hash-from of sip:alice@atlanta.com:5080 is ds_get_hash("alice", "atlanta.com:5080").
    let t = set_of(5, |_| String::new());
    let set = t.set(1).unwrap();
    let u = UriKey {
        secure: false,
        user: b"alice",
        host: b"atlanta.com",
        port: Some(5080),
    };
    let mut k = keys(b"c", b"u");
    k.from_uri = Some(u);
    k.to_uri = Some(u);
    k.ruri = Some(u);
    let want = crate::dispatch::hash::kamailio_hash(b"alice", Some(b"atlanta.com:5080")) % 5;
    // Kamailio's `dispatcher.hash 5 alice atlanta.com:5080` answers slot 1 (hash vectors).
    assert_eq!(want, 1);
    for a in [Algorithm::HashFrom, Algorithm::HashTo, Algorithm::HashRuri] {
        assert_eq!(first_of(set, &sel(a), &k).0, want as usize);
    }
    let mut s = sel(Algorithm::HashFrom);
    s.user_only = true;
    let want = crate::dispatch::hash::kamailio_hash(b"alice", None) % 5;
    assert_eq!(first_of(set, &s, &k).0, want as usize);
}
