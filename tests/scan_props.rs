//! Property test on stable Rust: real messages (the RFC 4475 set and the benchmark's call
//! flow) mutated by truncation, byte flips, insertions, deletions and duplicated lines. Nothing
//! may panic, every range the scanner returns must lie inside the datagram, and a message that
//! scans, once rewritten, must scan again with the same Call-ID and one more (request) or one
//! fewer (response) Via. Replies built from anything must scan as responses.

use std::net::SocketAddr;

use proptest::prelude::*;
use sipdispatch::sip::proxy::{Identity, RequestPlan, plan_request, write_request, write_response};
use sipdispatch::sip::reply::{Extra, write_reply};
use sipdispatch::sip::verdict::judge;
use sipdispatch::sip::{Message, Scanned, Span, StartLine, scan};

#[path = "../bench/messages.rs"]
mod messages;

fn corpus() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/reference/rfc4475");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("RFC 4475 messages")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    v.extend(messages::all().into_iter().map(|(_, m)| m));
    v.sort();
    v
}

fn in_bounds(s: Span, len: usize) -> bool {
    s.start <= s.end && s.end() <= len
}

fn spans(m: &Message<'_>) -> Vec<Span> {
    let mut v = vec![
        m.call_id,
        m.from.uri,
        m.from.params,
        m.to.uri,
        m.to.params,
        m.cseq_method,
        m.body,
        m.via.value,
        m.via.transport,
        m.via.host,
        m.via_header.line,
        m.via_header.value,
        m.routes.first_header.line,
        m.record_routes.first_header.line,
    ];
    v.extend(
        [
            m.from.tag,
            m.to.tag,
            m.via.branch,
            m.via.received,
            m.via.rport_param,
            m.via_second,
            m.auth_user,
            m.proxy_require,
        ]
        .into_iter()
        .flatten(),
    );
    v.extend(m.max_forwards.map(|(_, s)| s));
    v.extend(m.routes.as_slice().iter().copied());
    v.extend(m.record_routes.as_slice().iter().copied());
    match m.start {
        StartLine::Request {
            method_span, uri, ..
        } => {
            v.extend([method_span, uri.whole, uri.host, uri.params]);
            v.extend(uri.user);
        }
        StartLine::Response { reason, .. } => v.push(reason),
    }
    v
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    DuplicateLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![
                    Just(b'\r'),
                    Just(b'\n'),
                    Just(b';'),
                    Just(b','),
                    Just(b'"'),
                    Just(b'<'),
                    Just(b':'),
                    Just(b' '),
                    any::<u8>()
                ],
                1..8
            )
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
    ]
}

fn apply(mut m: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for x in muts {
        let len = m.len().max(1);
        match x {
            Mutation::Truncate(i) => m.truncate(i % len),
            Mutation::Flip(i, b) => {
                if !m.is_empty() {
                    m[i % len] ^= b | 1;
                }
            }
            Mutation::Insert(i, b) => {
                let at = i % (m.len() + 1);
                m.splice(at..at, b.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(m.len());
                if at < end {
                    m.drain(at..end);
                }
            }
            Mutation::DuplicateLine(i) => {
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(
                        m.iter()
                            .enumerate()
                            .filter(|(_, b)| **b == b'\n')
                            .map(|(i, _)| i + 1),
                    )
                    .collect();
                let s = starts[i % starts.len()];
                let e = m[s..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(m.len(), |p| s + p + 1);
                let line = m[s..e].to_vec();
                m.splice(e..e, line);
            }
        }
    }
    m
}

fn check(data: &[u8]) -> Result<(), TestCaseError> {
    let src: SocketAddr = "192.0.2.77:5099".parse().unwrap();
    let mut out = vec![0u8; 140_000];
    let _ = judge(data, &Identity::new("192.0.2.1", 5060, &[]));
    let reply = write_reply(data, 400, "Bad Request", Extra::Warning("x"), src, &mut out);
    let reply_len = match reply {
        Some(Ok((n, _))) => {
            prop_assert!(out[..n].starts_with(b"SIP/2.0 400 Bad Request\r\n"));
            prop_assert!(out[..n].ends_with(b"Content-Length: 0\r\n\r\n"));
            Some(n)
        }
        _ => None,
    };
    let Ok(Scanned::Message(m)) = scan(data) else {
        return Ok(());
    };
    // A reply to a well-formed request scans as a response with the same Call-ID (one to a
    // malformed request copies its defects, as RFC 3261 §8.2.6 asks, and may not).
    if let Some(n) = reply_len {
        match scan(&out[..n]) {
            Ok(Scanned::Message(r)) => {
                prop_assert!(!r.is_request());
                prop_assert_eq!(r.call_id(), m.call_id());
            }
            other => {
                return Err(TestCaseError::fail(format!(
                    "reply does not scan: {other:?}"
                )));
            }
        }
    }
    for s in spans(&m) {
        prop_assert!(
            in_bounds(s, data.len()),
            "span {s:?} outside {} bytes",
            data.len()
        );
    }
    if m.is_request() {
        let me = Identity::new("192.0.2.1", 5060, &[]);
        if let RequestPlan::Forward(f) = plan_request(&m, &me) {
            let n = write_request(&m, &f, true, &me, src, &mut out).unwrap();
            let Ok(Scanned::Message(again)) = scan(&out[..n]) else {
                return Err(TestCaseError::fail("forwarded request does not scan"));
            };
            prop_assert_eq!(again.call_id(), m.call_id());
            prop_assert_eq!(again.via_count, m.via_count + 1);
        }
    } else {
        // Pretend the top Via is ours, as a response coming back through the proxy.
        let host = String::from_utf8_lossy(m.via.host.of(data)).into_owned();
        let me = Identity::new(&host, m.via.port.unwrap_or(5060), &[]);
        if let Ok((n, _)) = write_response(&m, &me, &mut out) {
            let Ok(Scanned::Message(again)) = scan(&out[..n]) else {
                return Err(TestCaseError::fail("forwarded response does not scan"));
            };
            prop_assert_eq!(again.call_id(), m.call_id());
            prop_assert_eq!(again.via_count + 1, m.via_count);
        }
    }
    Ok(())
}

#[test]
fn every_unmutated_message_passes() {
    for m in corpus() {
        check(&m).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_messages_never_break_the_rules(
        pick in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let corpus = corpus();
        let base = corpus[pick.index(corpus.len())].clone();
        check(&apply(base, &muts))?;
    }
}
