use super::*;
use crate::sip::uri::Scheme;

fn msg(s: &[u8]) -> Message<'_> {
    match scan(s) {
        Ok(Scanned::Message(m)) => m,
        other => panic!("{other:?}"),
    }
}

const INVITE: &[u8] = b"INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag001\r\n\
To: sut <sip:service@127.0.0.1:5060>\r\n\
Call-ID: 1-12345@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

#[test]
fn invite_fields() {
    let m = msg(INVITE);
    let b = m.buf;
    let StartLine::Request { method, .. } = m.start else {
        panic!()
    };
    let uri = m.request_uri().unwrap();
    assert_eq!(method, Method::Invite);
    assert_eq!(uri.user.unwrap().of(b), b"service");
    assert_eq!(uri.port, Some(5060));
    assert_eq!(m.call_id(), b"1-12345@127.0.0.1");
    let from = m.from().unwrap();
    assert_eq!(from.tag.unwrap().of(b), b"1SIPpTag001");
    assert_eq!(from.parse_uri(b).unwrap().user.unwrap().of(b), b"sipp");
    assert!(m.to().unwrap().tag.is_none());
    assert_eq!(m.cseq, 1);
    assert_eq!(m.cseq_method(), Method::Invite);
    assert_eq!(m.via.branch.unwrap().of(b), b"z9hG4bK-1-0");
    assert_eq!(m.via.port, Some(5061));
    assert_eq!(m.via_count, 1);
    assert_eq!(m.max_forwards.map(|(n, _)| n), Some(70));
    assert_eq!(m.content_length, Some(4));
    assert_eq!(m.body.of(b), b"v=0\n");
    assert_eq!(m.wire(), INVITE);
    assert_eq!(m.header(b"subject"), Some(&b"Performance Test"[..]));
    assert_eq!(m.header(b"l"), Some(&b"4"[..]));
}

#[test]
fn compact_forms_and_comma_joined_vias() {
    let s = b"SIP/2.0 180 Ringing\r\n\
v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;received=10.0.0.9;rport=5070, SIP/2.0/UDP [2001:db8::1]:5061;branch=z9hG4bKb\r\n\
v: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bKc\r\n\
f: <sip:a@x>;tag=1\r\nt: <sip:b@y>;tag=2\r\ni: abc\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";
    let m = msg(s);
    assert_eq!(
        m.start,
        StartLine::Response {
            code: 180,
            reason: Span::new(12, 19)
        }
    );
    assert_eq!(m.via_count, 3);
    assert_eq!(m.via.rport, Some(Some(5070)));
    assert_eq!(m.via.received.unwrap().of(s), b"10.0.0.9");
    let second = m.via_second.unwrap().of(s);
    assert!(second.starts_with(b"SIP/2.0/UDP [2001:db8::1]:5061"));
    assert_eq!(m.via_header_next, Some(m.via_second.unwrap().start()));
    assert_eq!(m.call_id(), b"abc");
}

#[test]
fn routes_record_routes_and_auth() {
    let s = b"BYE sip:b@10.0.0.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
Route: <sip:10.0.0.1;lr>, <sip:p2.example.com;lr>\r\n\
Route: <sip:p3.example.com;lr>\r\n\
Record-Route: <sip:rr1;lr>\r\n\
Proxy-Authorization: Digest realm=\"x\", username=\"alice\", nonce=\"n\"\r\n\
Authorization: Digest username=\"bob\"\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n";
    let m = msg(s);
    assert_eq!(m.routes.count, 3);
    assert_eq!(m.routes.in_first_header, 2);
    assert_eq!(m.routes.as_slice()[1].of(s), b"<sip:p2.example.com;lr>");
    assert_eq!(m.record_routes.unwrap().count, 1);
    assert_eq!(m.auth_user.unwrap().of(s), b"alice");
    assert_eq!(m.max_forwards, None);
    // No Content-Length: the body runs to the end of the datagram (here: empty).
    assert!(m.body.is_empty());
}

#[test]
fn keepalives_and_trailing_bytes() {
    assert!(matches!(scan(b"\r\n\r\n"), Ok(Scanned::Keepalive)));
    assert!(matches!(scan(b"\r\n"), Ok(Scanned::Keepalive)));
    let mut s = INVITE.to_vec();
    s.extend_from_slice(b"garbage after the body");
    let m = msg(&s);
    assert_eq!(m.wire(), INVITE);
}

#[test]
fn bare_lf_line_ends() {
    let s = b"OPTIONS sip:x@y SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@y>\nCall-ID: c\nCSeq: 2 OPTIONS\n\n";
    let m = msg(s);
    assert_eq!(m.call_id(), b"c");
    assert_eq!(m.headers_start, 24);
}

#[test]
fn errors_name_the_reason() {
    let cases: &[(&[u8], ScanError)] = &[
        (b"", ScanError::Empty),
        (b"INVITE sip:x SIP/2.0", ScanError::BadStartLine),
        (b"INVITE sip:x SIP/3.0\r\n\r\n", ScanError::BadVersion),
        (b"SIP/2.0 1000 Big\r\n\r\n", ScanError::BadStatusCode),
        (b"INVITE <sip:x> SIP/2.0\r\n\r\n", ScanError::BadRequestUri),
        (
            b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",
            ScanError::MissingHeader("CSeq"),
        ),
        (
            b"OPTIONS sip:x@y SIP/2.0\r\nl: 5\r\nl: 5\r\n\r\n",
            ScanError::DuplicateHeader("Content-Length"),
        ),
        (
            b"OPTIONS sip:x@y SIP/2.0\r\nFoo\r\n\r\n",
            ScanError::HeaderWithoutColon,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            scan(input).err(),
            Some(*want),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    let mut long = INVITE.to_vec();
    long.truncate(INVITE.len() - 2);
    assert_eq!(scan(&long).err(), Some(ScanError::ContentLengthTooLarge));
}

#[test]
fn the_cseq_method_is_the_request_method() {
    let request = |method: &str, cseq: &str| {
        format!(
            "{method} sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 {cseq}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    // Known methods are compared by kind, others by their bytes; both scans agree.
    let cases = [
        ("INVITE", "INVITE", Some(Method::Invite)),
        ("ACK", "ACK", Some(Method::Ack)),
        ("FOO", "FOO", Some(Method::Other)),
        ("INVITE", "ACK", None),
        ("FOO", "BAR", None),
        ("INVITE", "INVITEX", None),
        ("INVITEX", "INVITE", None),
        ("invite", "INVITE", None),
    ];
    for (method, cseq, want) in cases {
        let m = request(method, cseq);
        let mut memory = ScanMemory::default();
        for got in [scan(&m), scan_forwarding(&m, &mut memory)] {
            match (got, want) {
                (Ok(Scanned::Message(m)), Some(kind)) => assert_eq!(m.cseq_method(), kind),
                (Err(e), None) => assert_eq!(e, ScanError::CSeqMethodMismatch),
                (got, _) => panic!("{method} / {cseq}: {got:?}"),
            }
        }
    }
    let response =
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:x@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(msg(response).cseq_method(), Method::Bye);
}

#[test]
fn forwarding_scan_reads_a_response_header_only_when_asked() {
    let s = b"SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK2\r\n\
Record-Route: <sip:10.0.0.1;lr>\r\n\
From: \"A\" <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
    let Ok(Scanned::Message(m)) = scan_forwarding(s, &mut ScanMemory::default()) else {
        panic!()
    };
    let unread = PartyRead::Nothing;
    assert_eq!((m.from_header.read, m.to_header.read), (unread, unread));
    assert_eq!(m.record_routes, None);
    let full = msg(s);
    assert_eq!((m.from(), m.to()), (full.from(), full.to()));
    assert_eq!(m.to().unwrap().tag.unwrap().of(s), b"2");
    assert_eq!(full.record_routes.unwrap().count, 1);
}

#[test]
fn forwarding_scan_passes_on_what_forwarding_does_not_read() {
    // RFC 3261 §16.3: a proxy ignores the components it does not use and forwards them
    // unchanged. The full scan refuses these; the data plane's relays them.
    let response = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: \"unbalanced <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
    let request = b"BYE sip:b@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: \"unbalanced <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n";
    for s in [&response[..], &request[..]] {
        assert_eq!(scan(s), Err(ScanError::BadHeader("From")));
        let Ok(Scanned::Message(m)) = scan_forwarding(s, &mut ScanMemory::default()) else {
            panic!()
        };
        assert_eq!(m.from(), None);
    }
    // A request's To is not read either: its tag, which tells an initial request apart, is
    // read when asked (the tag alone where the display name is short, the whole value
    // otherwise), the same tag either way; a malformed value is refused then (RFC 4475 baddn:
    // an unquoted comma), with the error the full scan gives.
    let bye_to = |to: &[u8]| {
        [
            &b"BYE sip:b@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a@x>;tag=1\r\nTo: "[..],
            to,
            b"\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n",
        ]
        .concat()
    };
    for (to, tag) in [
        (&b"<sip:b@y>;tag=2"[..], Some(&b"2"[..])),
        (b"Bob <sip:b@y>;tag=2", Some(b"2")),
        (b"A display name of some length <sip:b@y>;tag=2", Some(b"2")),
        (b"\"Bob\" <sip:b@y>;tag=2", Some(b"2")),
        (b"\"Bob\" <sip:b@y>", None),
        (b"<sip:b@y>;x=1;TAG=3", Some(b"3")),
    ] {
        let s = bye_to(to);
        let Ok(Scanned::Message(m)) = scan_forwarding(&s, &mut ScanMemory::default()) else {
            panic!("{}", String::from_utf8_lossy(to))
        };
        assert_eq!(m.to_header.read, PartyRead::Bounds);
        assert_eq!(m.to_tag().map(|t| t.of(&s)), tag);
        assert_eq!(m.is_initial(), Ok(tag.is_none()));
        assert_eq!(m.to_tag(), msg(&s).to_tag());
    }
    for to in [
        &b"Watson, Thomas <sip:t@y>"[..],
        b"<b@y>;tag=2",
        b"\"unbalanced <sip:b@y>",
    ] {
        let s = bye_to(to);
        assert_eq!(scan(&s), Err(ScanError::BadHeader("To")));
        let Ok(Scanned::Message(m)) = scan_forwarding(&s, &mut ScanMemory::default()) else {
            panic!("{}", String::from_utf8_lossy(to))
        };
        assert_eq!(m.is_initial(), Err(ScanError::BadHeader("To")));
        assert_eq!(m.to_tag(), None);
    }
    // The Request-URI: its scheme is read, the rest when asked. A headers part (RFC 4475
    // escruri), a blank, an unbracketed IPv6 address (RFC 5118 §4.2) and the like are the
    // full scan's refusals, and the answer of `request_uri` for the data plane.
    let bye_uri = |uri: &str| {
        format!(
            "BYE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n"
        )
        .into_bytes()
    };
    for (uri, scheme) in [
        (
            "sip:user@example.com?Route=%3Csip:example.com%3E",
            Scheme::Sip,
        ),
        ("sip:a b@y", Scheme::Sip),
        ("SIPS:2001:db8::10", Scheme::Sips),
        ("sip:a@[::1", Scheme::Sip),
    ] {
        let s = bye_uri(uri);
        assert_eq!(scan(&s), Err(ScanError::BadRequestUri), "{uri}");
        let Ok(Scanned::Message(m)) = scan_forwarding(&s, &mut ScanMemory::default()) else {
            panic!("{uri}")
        };
        let StartLine::Request { uri: r, .. } = m.start else {
            panic!()
        };
        assert_eq!((r.whole.of(&s), r.scheme), (uri.as_bytes(), scheme));
        assert_eq!(m.request_uri(), None, "{uri}");
    }
    // What has no scheme is refused by both.
    for uri in ["<sip:b@y>", "b@y", ":b"] {
        let s = bye_uri(uri);
        assert_eq!(scan(&s), Err(ScanError::BadRequestUri), "{uri}");
        let fwd = scan_forwarding(&s, &mut ScanMemory::default());
        assert_eq!(fwd, Err(ScanError::BadRequestUri), "{uri}");
    }
    // Duplicates and missing headers are refused as before.
    let twice = b"BYE sip:b@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a@x>;tag=1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n";
    assert_eq!(
        scan_forwarding(twice, &mut ScanMemory::default()),
        Err(ScanError::DuplicateHeader("From"))
    );
}

#[test]
fn folded_lines_are_read_by_the_general_readers() {
    // Folding after a header the scan reads and after one it skims, with a space and a tab:
    // the plain loop meets the continuation as a malformed line and the scan starts over.
    let s = b"BYE sip:a@b SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060\r\n ;branch=z9hG4bKf\r\n\
Subject: one\r\n\ttwo\r\n\
From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2\r\n BYE\r\n\
Content-Length: 0\r\n\r\n";
    for m in [scan(s), scan_forwarding(s, &mut ScanMemory::default())] {
        let Ok(Scanned::Message(m)) = m else {
            panic!("{m:?}")
        };
        assert_eq!(m.via.branch.map(|b| b.of(s)), Some(&b"z9hG4bKf"[..]));
        assert_eq!((m.cseq, m.cseq_method()), (2, Method::Bye));
        assert_eq!(m.header(b"Subject"), Some(&b"one\r\n\ttwo"[..]));
    }
    assert_eq!(scan(s), scan_general(s));
    // A line that starts with a blank right after the start line folds into nothing: refused
    // by both paths alike.
    let bad = b"BYE sip:a@b SIP/2.0\r\n Via: SIP/2.0/UDP h\r\n\r\n";
    assert_eq!(scan(bad), scan_general(bad));
    assert!(scan(bad).is_err());
}

/// The Route value a scan read as one plain entry is known again by its bytes in the next
/// message; a value of the same length that differs is read, and refused if malformed; the
/// answer is the fresh scan's either way.
#[test]
fn a_route_seen_before_is_known_by_its_bytes() {
    let bye = |route: &str| {
        format!(
            "BYE sip:b@y SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\r\n\
Route: {route}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n"
        )
        .into_bytes()
    };
    let mut memory = ScanMemory::default();
    for route in [
        "<sip:127.0.0.1:7300;lr>",
        "<sip:127.0.0.1:7300;lr>",
        "<sip:127.0.0.1:7301;lr>",
        "<sip:127.0.0.1:7300;lr<",
        "<sip:127.0.0.1:7300;lr>",
        "<sip:127.0.0.1:7300;lr>, <sip:10.0.0.7;lr>",
        "<sip:127.0.0.1:7300;lr>",
    ] {
        let s = bye(route);
        let fresh = scan_forwarding(&s, &mut ScanMemory::default());
        assert_eq!(scan_forwarding(&s, &mut memory), fresh, "{route}");
        match fresh {
            Ok(Scanned::Message(m)) => {
                assert_eq!(m.routes.first_header.value.of(&s), route.as_bytes())
            }
            other => assert!(route.ends_with('<'), "{route}: {other:?}"),
        }
    }
}

/// A route set on one line is split at its commas by the plain readers where it has no
/// quotes, into the entries the general reader finds; anything else is the general reader's.
#[test]
fn route_sets_split_as_the_general_reader_splits() {
    for route in [
        "<sip:127.0.0.1:7300;lr>, <sip:10.1.1.1:5060;lr>",
        "<sip:10.0.0.1;lr>,<sip:10.0.0.2;lr> ,\t<sip:10.0.0.3;lr>",
        "\"A, B\" <sip:10.0.0.1;lr>, <sip:10.0.0.2;lr>",
        "<sip:10.0.0.1;lr>, sip:10.0.0.2;lr",
        "<sip:10.0.0.1;lr>, , <sip:10.0.0.2;lr>",
        "<sip:10.0.0.1;lr>,",
    ] {
        let s = format!(
            "BYE sip:b@y SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\r\n\
Route: {route}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n"
        );
        let general = scan_general(s.as_bytes());
        assert_eq!(scan(s.as_bytes()), general, "{route}");
        let fwd = scan_forwarding(s.as_bytes(), &mut ScanMemory::default());
        match (&fwd, &general) {
            (Ok(Scanned::Message(f)), Ok(Scanned::Message(g))) => {
                assert_eq!(f.routes, g.routes, "{route}")
            }
            _ => assert_eq!(
                fwd.is_err(),
                general.is_err(),
                "{route}: {fwd:?} vs {general:?}"
            ),
        }
    }
}
