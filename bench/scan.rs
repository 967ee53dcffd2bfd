//! Scanner and rewrite speed on a realistic message set, with the `rsip` crate parsing the same
//! messages in the same run for a ratio. `cargo bench --bench scan`.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipdispatch::sip::proxy::{Identity, RequestPlan, plan_request, write_request, write_response};
use sipdispatch::sip::{Scanned, scan, scan_forwarding};

#[path = "messages.rs"]
mod messages;

fn touch(m: &sipdispatch::sip::Message<'_>) -> usize {
    // Reads every extracted field so nothing is optimised away.
    m.call_id().len()
        + m.from_tag().map_or(0, |t| t.len())
        + m.to_tag().map_or(0, |t| t.len())
        + m.via.branch.map_or(0, |b| b.len())
        + usize::from(m.via_count)
        + m.routes.as_slice().len()
        + m.record_routes.map_or(0, |r| r.as_slice().len())
        + m.cseq as usize
        + m.body.len()
        + m.auth_user.map_or(0, |a| a.len())
        + m.max_forwards.map_or(0, |(n, _)| usize::from(n))
}

fn benches(c: &mut Criterion) {
    let me = Identity::new("192.0.2.1", 5060, &[]);
    let src: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let mut out = vec![0u8; 65_536];
    for (name, msg) in messages::all() {
        let mut g = c.benchmark_group(format!("scan/{name}"));
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function("sipdispatch", |b| {
            b.iter(|| match scan(black_box(&msg)) {
                Ok(Scanned::Message(m)) => touch(&m),
                _ => 0,
            })
        });
        g.bench_function("rsip", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(&msg[..])).is_ok())
        });
        g.finish();
        let Ok(Scanned::Message(m)) = scan(&msg) else {
            panic!("{name}")
        };
        let mut g = c.benchmark_group(format!("rewrite/{name}"));
        g.throughput(Throughput::Bytes(msg.len() as u64));
        if m.is_request() {
            let RequestPlan::Forward(f) = plan_request(&m, &me) else {
                panic!("{name}")
            };
            g.bench_function("add-via", |b| {
                b.iter(|| write_request(black_box(&m), &f, true, &me, src, &mut out).unwrap())
            });
        } else {
            g.bench_function("remove-via", |b| {
                b.iter(|| write_response(black_box(&m), &me, &mut out).unwrap())
            });
        }
        g.finish();
    }
    // The data plane's scan on a SIPp call, as sipdispatch forwards it.
    for (name, msg) in messages::sipp_call() {
        let mut g = c.benchmark_group(format!("scan-forwarding/{name}"));
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function("sipdispatch", |b| {
            b.iter(|| match scan_forwarding(black_box(&msg)) {
                Ok(Scanned::Message(m)) => m.call_id().len() + usize::from(m.via_count),
                _ => 0,
            })
        });
        g.finish();
    }
}

criterion_group!(scan_benches, benches);
criterion_main!(scan_benches);
