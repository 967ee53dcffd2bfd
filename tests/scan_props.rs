//! Property test on stable Rust: real messages (the RFC 4475 set and the benchmark's call
//! flow) mutated by truncation, byte flips, insertions, deletions and duplicated lines, each
//! checked against the scanner's contract in `sipdispatch::sip::invariants` (no panic, ranges
//! in bounds, rewrites that scan again with one Via more or fewer, replies that scan).

use proptest::prelude::*;
use sipdispatch::sip::invariants;

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
    v.extend(messages::sipp_call().into_iter().map(|(_, m)| m));
    v.sort();
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

#[test]
fn every_unmutated_message_passes() {
    for m in corpus() {
        invariants::check(&m).unwrap();
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
        invariants::check(&apply(base, &muts)).map_err(TestCaseError::fail)?;
    }
}
