//! Scanner and rewrite speed on a realistic message set, with the `rsip` crate parsing the same
//! messages in the same run for a ratio. `cargo bench --bench scan`.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipdispatch::sip::proxy::{Identity, RequestPlan, plan_request, write_request, write_response};
use sipdispatch::sip::{ScanMemory, Scanned, scan, scan_forwarding};

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

/// rsip doing the scan's work: the parse, then every field the scan extracts, read through
/// rsip's typed headers (its parse alone splits the headers but reads no value: no tag,
/// branch, sent-by or CSeq number). Only the typed parses allocate; the fields are borrowed.
fn rsip_fields(msg: &[u8]) -> Result<usize, rsip::Error> {
    use rsip::common::uri::{HostWithPort, Param};
    use rsip::headers::{Header, ToTypedHeader, UntypedHeader};
    use rsip::message::HasHeaders;
    fn host_port(h: &HostWithPort) -> usize {
        let host = match &h.host {
            rsip::Host::Domain(d) => d.value().len(),
            rsip::Host::IpAddr(a) => usize::from(a.is_ipv4()),
        };
        host + h.port.map_or(0, |p| usize::from(*p.value()))
    }
    let m = rsip::SipMessage::try_from(msg)?;
    let mut n = m.body().len();
    if let rsip::SipMessage::Request(r) = &m {
        n += host_port(&r.uri.host_with_port) + r.uri.params.len();
        n += r.uri.auth.as_ref().map_or(0, |a| a.user.len());
    }
    let mut vias = 0;
    for h in m.headers().iter() {
        n += match h {
            Header::Via(v) => {
                vias += 1;
                if vias > 1 {
                    continue;
                }
                let v = v.typed()?;
                let rport = v.params.iter().any(
                    |p| matches!(p, Param::Other(name, _) if name.value().eq_ignore_ascii_case("rport")),
                );
                v.branch().map_or(0, |b| b.value().len())
                    + v.received().ok().flatten().map_or(0, |_| 1)
                    + usize::from(rport)
                    + host_port(&v.uri.host_with_port)
            }
            Header::From(f) => f.typed()?.tag().map_or(0, |t| t.value().len()),
            Header::To(t) => t.typed()?.tag().map_or(0, |t| t.value().len()),
            Header::CallId(c) => c.value().len(),
            Header::CSeq(c) => c.typed()?.seq as usize,
            Header::MaxForwards(m) => m.num()? as usize,
            Header::ContentLength(c) => c.length()? as usize,
            Header::Route(r) => r.typed()?.uris().len(),
            Header::RecordRoute(r) => r.typed()?.uris().len(),
            Header::Authorization(a) => a.typed()?.username.len(),
            _ => 0,
        };
    }
    Ok(n + vias)
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
        if let Err(e) = rsip_fields(&msg) {
            panic!("{name}: rsip does not read every field: {e}");
        }
        g.bench_function("rsip+fields", |b| b.iter(|| rsip_fields(black_box(&msg))));
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
        // One memory across the iterations, as a shard keeps one across messages.
        let mut heads = ScanMemory::default();
        g.bench_function("sipdispatch", |b| {
            b.iter(|| match scan_forwarding(black_box(&msg), &mut heads) {
                Ok(Scanned::Message(m)) => m.call_id().len() + usize::from(m.via_count),
                _ => 0,
            })
        });
        g.finish();
    }
}

criterion_group!(scan_benches, benches);
criterion_main!(scan_benches);
