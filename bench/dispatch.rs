//! Selection cost per algorithm on sets of 2, 10 and 100 destinations, and Call-ID tracker
//! operations with a million calls resident. `cargo bench --bench dispatch`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sipdispatch::dispatch::list::parse;
use sipdispatch::dispatch::tracker::{Tracker, call_key};
use sipdispatch::dispatch::{
    Algorithm, Candidates, DestId, HashMode, HeaderLookup, KeyTemplate, Keys, Rng, Selector, Table,
    UriKey, select,
};

struct NoHeaders;
impl HeaderLookup for NoHeaders {
    fn header(&self, _: &[u8]) -> Option<&[u8]> {
        None
    }
}

fn table(n: usize) -> Table {
    let text: String = (0..n)
        .map(|i| {
            format!(
                "1 sip:10.0.{}.{}:5060 0 {} duid=d{i};weight={};rweight={}\n",
                i / 250,
                i % 250 + 1,
                i % 3,
                1 + i % 100,
                1 + i % 100
            )
        })
        .collect();
    Table::build(parse(&text, "bench").unwrap(), None).unwrap()
}

fn selection(c: &mut Criterion) {
    let uri = UriKey {
        secure: false,
        user: b"alice",
        host: b"example.com",
        port: None,
    };
    let keys = Keys {
        method: b"INVITE",
        call_id: b"a84b4c76e66710@pc33.example.com",
        from_uri: Some(uri),
        to_uri: Some(uri),
        ruri: Some(uri),
        auth_user: Some(b"alice"),
        headers: &NoHeaders,
    };
    let mut algs: Vec<(String, Selector)> =
        [0u32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 64]
            .iter()
            .map(|&n| {
                let algorithm = Algorithm::from_number(n, Default::default()).unwrap();
                let key = (n == 7).then(|| KeyTemplate::parse("{from.user}@{to.host}").unwrap());
                (
                    format!("{n}-{}", algorithm.name()),
                    Selector {
                        algorithm,
                        hash: HashMode::Kamailio,
                        user_only: false,
                        key,
                        limit: 0,
                    },
                )
            })
            .collect();
    algs.push((
        "0-rendezvous".into(),
        Selector {
            algorithm: Algorithm::HashCallId,
            hash: HashMode::Rendezvous,
            user_only: false,
            key: None,
            limit: 0,
        },
    ));
    for n in [2, 10, 100] {
        let t = table(n);
        let set = t.set(1).unwrap();
        let mut g = c.benchmark_group(format!("select/{n}"));
        for (name, sel) in &algs {
            let mut cands = Candidates::default();
            let mut rng = Rng::new(7);
            // A failover list of 3, as a route with `limit = 3` builds it.
            let sel = Selector {
                limit: 3,
                ..sel.clone()
            };
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| select(set, &sel, black_box(&keys), &mut rng, 0, &mut cands))
            });
        }
        g.finish();
    }
}

fn tracker(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let mut t = Tracker::new(N + 1000, 7_200_000, 7_200_000);
    let keys: Vec<u64> = (0..N)
        .map(|i| call_key(format!("{i}-4711@192.0.2.1").as_bytes()))
        .collect();
    for (i, &k) in keys.iter().enumerate() {
        t.begin(k, 1, DestId(i as u32 % 10), true, 0);
    }
    let mut g = c.benchmark_group("tracker/1M");
    let mut i = 0usize;
    g.bench_function("lookup-hit", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            t.lookup(black_box(keys[i]), 1)
        })
    });
    g.bench_function("lookup-miss", |b| {
        b.iter(|| {
            i += 1;
            t.lookup(black_box(call_key(&i.to_le_bytes())), 1)
        })
    });
    g.bench_function("call-key", |b| {
        b.iter(|| call_key(black_box(b"a84b4c76e66710@pc33.example.com")))
    });
    // Insert then release a call (the table stays at a million).
    let mut n = 0u64;
    g.bench_function("begin+release", |b| {
        b.iter(|| {
            n += 1;
            let k = call_key(&n.to_be_bytes());
            t.begin(k, 1, DestId(1), true, 1);
            t.release(k, 1, 0)
        })
    });
    g.finish();
    println!(
        "tracker memory for {} calls: {} MiB",
        t.capacity(),
        t.memory() >> 20
    );
}

criterion_group!(dispatch_benches, selection, tracker);
criterion_main!(dispatch_benches);
