//! RFC 5118 IPv6 torture messages (read from ../shared/reference/rfc5118). The archive's bytes
//! are not wire bytes (see that directory's README): lines are converted to CRLF, a missing
//! empty line after the headers is added and Content-Length is set to the body, because these
//! tests are about IPv6 handling, not framing. Then: §4.2 is answered 400, every other message
//! is forwarded with its IPv6 references read correctly, and the forwarded bytes scan again.

use std::path::PathBuf;

use sipdispatch::sip::proxy::{Identity, write_request};
use sipdispatch::sip::reply::write_reply;
use sipdispatch::sip::verdict::{Verdict, judge};
use sipdispatch::sip::{Message, Scanned, scan};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/rfc5118")
}

/// The archived message as it would be on the wire.
fn wire(file: &str) -> Vec<u8> {
    let raw = std::fs::read(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let text = String::from_utf8(raw).expect("ASCII");
    let (head, body) = text.split_once("\n\n").unwrap_or((text.trim_end(), ""));
    let body = body.replace('\n', "\r\n");
    let mut out = String::new();
    for line in head.lines() {
        let line = match line.split_once(':') {
            Some((name, _)) if name.eq_ignore_ascii_case("content-length") || name == "l" => {
                format!("Content-Length: {}", body.len())
            }
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

fn me() -> Identity {
    Identity::new("192.0.2.1", 5060, &[])
}

fn ruri<'a>(m: &Message<'a>) -> (&'a [u8], Option<u16>) {
    let uri = m.request_uri().expect("a request");
    (uri.host.of(m.buf), uri.port)
}

#[test]
fn every_ipv6_message_gets_the_rfc_treatment() {
    let index = std::fs::read_to_string(dir().join("INDEX.tsv")).unwrap();
    let src = "[2001:db8::77]:5099".parse().unwrap();
    let mut forwarded = 0;
    for row in index.lines().skip(1) {
        let file = row.split('\t').next().unwrap();
        let buf = wire(file);
        match judge(&buf, &me()) {
            Verdict::Request(m, f) => {
                assert_ne!(
                    file, "ipv6-bad",
                    "an unbracketed IPv6 Request-URI must be refused"
                );
                let mut out = vec![0u8; 70_000];
                let n = write_request(&m, &f, true, &me(), src, &mut out).unwrap();
                let Ok(Scanned::Message(again)) = scan(&out[..n]) else {
                    panic!("{file}: forwarded bytes do not scan")
                };
                assert_eq!(again.call_id(), m.call_id(), "{file}");
                assert_eq!(again.via_count, m.via_count + 1, "{file}");
                // The received top Via now names the IPv6 source, whatever `received` it had.
                let old_top = again.via_second.unwrap().of(again.buf);
                assert!(
                    old_top
                        .windows(b";received=2001:db8::77".len())
                        .any(|w| w == b";received=2001:db8::77"),
                    "{file}: {}",
                    String::from_utf8_lossy(old_top)
                );
                assert!(!old_top.windows(12).any(|w| w == b"=[2001:db8::"), "{file}");
                forwarded += 1;
            }
            Verdict::Reply(r) => {
                assert_eq!(file, "ipv6-bad", "{file} answered {}", r.code);
                assert_eq!(r.code, 400);
                let mut out = vec![0u8; 70_000];
                let Some(Ok((n, _))) = write_reply(&buf, r.code, r.reason, r.extra, src, &mut out)
                else {
                    panic!("no 400 could be formed")
                };
                assert!(out[..n].starts_with(b"SIP/2.0 400 "));
            }
            other => panic!("{file}: {other:?}"),
        }
    }
    assert_eq!(forwarded, 11, "every message but §4.2 is forwarded");
}

fn scanned(file: &str, f: impl FnOnce(&Message<'_>)) {
    let buf = wire(file);
    match scan(&buf) {
        Ok(Scanned::Message(m)) => f(&m),
        other => panic!("{file}: {other:?}"),
    }
}

#[test]
fn ipv6_references_are_read_with_their_brackets() {
    scanned("ipv6-good", |m| {
        assert_eq!(ruri(m), (&b"[2001:db8::10]"[..], None));
        assert_eq!(m.via.host.of(m.buf), b"[2001:db8::9:1]");
        assert_eq!(m.via.host_bare(m.buf), b"2001:db8::9:1");
    });
    // §4.3: parses, as an address whose last group is 5070 and no port.
    scanned("port-ambiguous", |m| {
        assert_eq!(ruri(m), (&b"[2001:db8::10:5070]"[..], None))
    });
    scanned("port-unambiguous", |m| {
        assert_eq!(ruri(m), (&b"[2001:db8::10]"[..], Some(5070)))
    });
    // §4.10: the three-colon form is tolerated like the correct one.
    scanned("ipv6-bug-abnf-3-colons", |m| {
        assert_eq!(ruri(m).0, b"[2001:db8:::192.0.2.1]")
    });
    scanned("ipv6-correct-abnf-2-colons", |m| {
        assert_eq!(ruri(m).0, b"[2001:db8::192.0.2.1]")
    });
}

#[test]
fn received_is_accepted_with_and_without_brackets() {
    scanned("via-received-param-with-delim", |m| {
        assert_eq!(m.via.received.unwrap().of(m.buf), b"[2001:db8::9:255]")
    });
    scanned("via-received-param-no-delim", |m| {
        assert_eq!(m.via.received.unwrap().of(m.buf), b"2001:db8::9:255")
    });
}

#[test]
fn mixed_address_families_in_vias() {
    scanned("mult-ip-in-header", |m| {
        assert_eq!(m.via_count, 3);
        assert_eq!(m.via.host_bare(m.buf), b"2001:db8::9:1");
        assert_eq!(m.via.port, Some(6050));
        assert_eq!(
            m.via_second.unwrap().of(m.buf),
            b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144"
        );
    });
    scanned("ipv4-mapped-ipv6", |m| {
        assert_eq!(m.via.host_bare(m.buf), b"::ffff:192.0.2.10");
        assert_eq!(m.via.port, Some(19823));
        assert_eq!(m.via_count, 2);
    });
}
