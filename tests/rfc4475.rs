//! RFC 4475 torture messages (read from ../shared/reference/rfc4475): every valid one scans with
//! the right fields and forwards; every invalid one is refused or handled as the RFC says a
//! proxy should (see that directory's INDEX.tsv for the classification of each file).

use std::path::PathBuf;

use sipdispatch::sip::proxy::{Identity, ResponseDrop, write_request, write_response};
use sipdispatch::sip::reply::write_reply;
use sipdispatch::sip::verdict::{DropReason, Verdict, judge};
use sipdispatch::sip::{Scanned, scan};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/rfc4475")
}

fn load(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The proxy the messages are sent to. Not 192.0.2.1: several messages were sent *by*
/// 192.0.2.1 (their top Via), which to a proxy of that address would be a loop (482).
fn me() -> Identity {
    Identity::new("192.0.2.254", 5060, &[])
}

/// What a proxy does with each file; decided from the RFC section (INDEX.tsv notes).
#[derive(Debug, PartialEq)]
enum Want {
    Forward,
    Response,
    Reply(u16),
    Drop,
}

fn expectation(file: &str, class: &str) -> Want {
    match (file, class) {
        ("unreason.dat" | "noreason.dat", _) => Want::Response,
        ("bcast.dat", _) => Want::Response,
        // Malformed responses are dropped; test.dat has no Via or CSeq to answer to.
        ("scalarlg.dat" | "bigcode.dat" | "test.dat", _) => Want::Drop,
        ("badvers.dat", _) => Want::Reply(505),
        ("unkscm.dat" | "novelsc.dat", _) => Want::Reply(416),
        ("bext01.dat", _) => Want::Reply(420),
        ("zeromf.dat", _) => Want::Reply(483),
        // A proxy that does not use Date forwards it; RFC 2543 syntax and a cookie-only branch
        // are accepted (our branch then comes from the RFC 2543 fields); a stateless proxy
        // does not interpret Contact, so regbadct passes through unchanged.
        ("baddate.dat" | "inv2543.dat" | "badbranch.dat" | "regbadct.dat", _) => Want::Forward,
        (_, "valid") => Want::Forward,
        // Every other see-notes, invalid and semantically-wrong request: 400.
        _ => Want::Reply(400),
    }
}

#[test]
fn every_torture_message_gets_the_rfc_treatment() {
    let index = std::fs::read_to_string(dir().join("INDEX.tsv")).unwrap();
    let mut seen = 0;
    for row in index.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (file, class) = (cols[0], cols[3]);
        let buf = load(file);
        let want = expectation(file, class);
        let src = "192.0.2.200:5060".parse().unwrap();
        let got = match judge(&buf, &me()) {
            Verdict::Request(m, f) => {
                // Forwarded bytes scan again: same Call-ID, one more Via.
                let mut out = vec![0u8; 70_000];
                let n = write_request(&m, &f, true, &me(), src, &mut out).unwrap();
                let Ok(Scanned::Message(again)) = scan(&out[..n]) else {
                    panic!("{file}: forwarded bytes do not scan")
                };
                assert_eq!(again.call_id(), m.call_id(), "{file}");
                assert_eq!(again.via_count, m.via_count + 1, "{file}");
                Want::Forward
            }
            Verdict::Response(_) => Want::Response,
            Verdict::Reply(r) => {
                let mut out = vec![0u8; 70_000];
                // No reply can be formed without a Via and a CSeq: then it is dropped.
                match write_reply(&buf, r.code, r.reason, r.extra, src, &mut out) {
                    Some(Ok(_)) => Want::Reply(r.code),
                    None => Want::Drop,
                    Some(Err(e)) => panic!("{file}: {e}"),
                }
            }
            Verdict::Drop(DropReason::Malformed(_)) => Want::Drop,
            other => panic!("{file}: {other:?}"),
        };
        assert_eq!(got, want, "{file} ({class})");
        seen += 1;
    }
    assert_eq!(seen, 50);
}

#[test]
fn valid_messages_scan_with_the_right_fields() {
    let get = |f: &str| load(f);
    let b = get("wsinv.dat");
    let Ok(Scanned::Message(m)) = scan(&b) else {
        panic!()
    };
    assert_eq!(m.call_id(), b"wsinv.ndaksdj@192.0.2.1");
    assert_eq!(m.to().unwrap().tag.unwrap().of(&b), b"1918181833n");
    assert_eq!(m.from().unwrap().tag.unwrap().of(&b), b"98asjd8");
    assert_eq!(m.max_forwards.unwrap().0, 68);
    assert_eq!(m.cseq, 9);
    assert_eq!(m.via_count, 3);
    assert_eq!(m.via.host.of(&b), b"192.0.2.2");
    assert_eq!(m.via.branch.unwrap().of(&b), b"390skdjuw");
    assert_eq!(m.routes.count, 1);
    assert_eq!(m.body.len(), 150);

    let b = get("longreq.dat");
    let Ok(Scanned::Message(m)) = scan(&b) else {
        panic!()
    };
    assert_eq!(m.via_count, 34);

    let b = get("dblreq.dat");
    let Ok(Scanned::Message(m)) = scan(&b) else {
        panic!()
    };
    assert!(m.body.is_empty());
    assert!(
        m.wire().len() < b.len(),
        "the trailing INVITE is not part of the message"
    );

    let b = get("semiuri.dat");
    let Ok(Scanned::Message(m)) = scan(&b) else {
        panic!()
    };
    let uri = m.request_uri().unwrap();
    assert_eq!(uri.user.unwrap().of(&b), b"user;par=u%40example.net");

    let b = get("transports.dat");
    let Ok(Scanned::Message(m)) = scan(&b) else {
        panic!()
    };
    assert_eq!(m.via_count, 5);

    let b = get("mpart01.dat");
    let Ok(Scanned::Message(m)) = scan(&b) else {
        panic!()
    };
    assert_eq!(Some(m.body.len() as u32), m.content_length);

    let b = get("regaut01.dat");
    let Ok(Scanned::Message(m)) = scan(&b) else {
        panic!()
    };
    assert!(m.auth_user.is_none(), "not a Digest scheme");
}

#[test]
fn broadcast_next_hop_is_dropped() {
    let b = load("bcast.dat");
    let Ok(Scanned::Message(m)) = scan(&b) else {
        panic!()
    };
    let me = Identity::new("192.0.2.198", 5060, &[]);
    let mut out = vec![0u8; 4096];
    assert_eq!(
        write_response(&m, &me, &mut out),
        Err(ResponseDrop::BadNextHop)
    );
}
