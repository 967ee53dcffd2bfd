//! Local replies built from a request (RFC 3261 §8.2.6 and §16.11): status line, the Vias,
//! From, To (with a To-tag added when absent), Call-ID and CSeq copied, and a few extras
//! (Retry-After, Unsupported, Warning). Works from a scanned message, or leniently from a
//! datagram the scanner refused, so that a malformed request can still get its 400. Never
//! replies to an ACK or to a response.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use super::Span;
use super::emit::{Out, Overflow, hash64};
use super::header::{self, Name, Next};
use super::uri::parse_name_addr;
use super::via::parse_via;

/// Via values copied into a reply at most; a request with more gets no reply.
const MAX_VIAS: usize = 64;

/// A header beyond the mandatory ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra<'a> {
    None,
    RetryAfter(u32),
    /// `Unsupported:` with these option tags (a 420's answer to Proxy-Require).
    Unsupported(&'a [u8]),
    /// `Warning: 399 sipdispatch "…"`: why a request was refused.
    Warning(&'a str),
}

/// The header values a reply copies, found by a lenient pass over the request.
struct Parts {
    vias: [Span; MAX_VIAS],
    nvias: usize,
    from: Span,
    to: Span,
    call_id: Span,
    cseq: Span,
}

fn collect(buf: &[u8], headers_start: usize) -> Option<Parts> {
    let mut p = Parts {
        vias: [Span::default(); MAX_VIAS],
        nvias: 0,
        from: Span::default(),
        to: Span::default(),
        call_id: Span::default(),
        cseq: Span::default(),
    };
    let mut pos = headers_start;
    loop {
        let h = match header::next(buf, pos) {
            Ok(Next::Header(h)) => h,
            Ok(Next::End { .. }) => break,
            // Skip what cannot be read: this path answers requests the scanner refused.
            Err(_) => {
                pos += memchr::memchr(b'\n', &buf[pos..])? + 1;
                continue;
            }
        };
        pos = h.line.1;
        let v = Span::new(h.value.0, h.value.1);
        let first = |s: &mut Span| {
            if s.is_empty() {
                *s = v;
            }
        };
        match Name::classify(&buf[h.name.0..h.name.1]) {
            Name::Via => {
                *p.vias.get_mut(p.nvias)? = v;
                p.nvias += 1;
            }
            Name::From => first(&mut p.from),
            Name::To => first(&mut p.to),
            Name::CallId => first(&mut p.call_id),
            Name::CSeq => first(&mut p.cseq),
            _ => {}
        }
    }
    // Without a Via there is nowhere to match the reply; without a CSeq no transaction. A
    // missing From, To or Call-ID is left out: the 400 still tells the sender (RFC 4475 insuf).
    (p.nvias > 0 && !p.cseq.is_empty()).then_some(p)
}

/// Where a reply to a request from `src` goes (RFC 3261 §18.2.2, RFC 3581 §4): the source
/// address, with the source port when the top Via asked for `rport`, else its sent-by port.
fn target(buf: &[u8], top_via: Span, src: SocketAddr) -> SocketAddr {
    match parse_via(buf, top_via.start(), top_via.end()) {
        Some(v) if v.rport.is_none() => SocketAddr::new(src.ip(), v.port.unwrap_or(5060)),
        _ => src,
    }
}

/// Writes a reply to the request in `buf` (which may be one the scanner refused). Returns its
/// length and where to send it, or `None` when no reply may or can be formed: the datagram is
/// a response or an ACK, or lacks a Via or a CSeq.
pub fn write_reply(
    buf: &[u8],
    code: u16,
    reason: &str,
    extra: Extra<'_>,
    src: SocketAddr,
    out: &mut [u8],
) -> Option<Result<(usize, SocketAddr), Overflow>> {
    let line_end = memchr::memchr(b'\n', buf)?;
    let method_end = memchr::memchr(b' ', &buf[..line_end])?;
    let method = &buf[..method_end];
    if method.is_empty() || method == b"ACK" || method.starts_with(b"SIP/") {
        return None;
    }
    let p = collect(buf, line_end + 1)?;
    let to = target(buf, p.vias[0], src);
    Some(write_parts(buf, &p, code, reason, extra, src, out).map(|n| (n, to)))
}

fn write_parts(
    buf: &[u8],
    p: &Parts,
    code: u16,
    reason: &str,
    extra: Extra<'_>,
    src: SocketAddr,
    out: &mut [u8],
) -> Result<usize, Overflow> {
    let mut o = Out::new(out);
    o.put(b"SIP/2.0 ")?;
    o.put_u32(u32::from(code))?;
    o.put(b" ")?;
    o.put(reason.as_bytes())?;
    o.put(b"\r\n")?;
    for (i, v) in p.vias[..p.nvias].iter().enumerate() {
        o.put(b"Via: ")?;
        if i == 0 {
            put_top_via(&mut o, buf, *v, src)?;
        } else {
            o.put(v.of(buf))?;
        }
        o.put(b"\r\n")?;
    }
    if !p.from.is_empty() {
        o.put(b"From: ")?;
        o.put(p.from.of(buf))?;
        o.put(b"\r\n")?;
    }
    if !p.to.is_empty() {
        o.put(b"To: ")?;
        o.put(p.to.of(buf))?;
        if parse_name_addr(buf, p.to.start(), p.to.end()).is_some_and(|na| na.tag.is_none()) {
            // Deterministic, so a retransmitted request gets the same tag.
            o.put(b";tag=sd")?;
            o.put_hex64(hash64(&[
                p.call_id.of(buf),
                p.from.of(buf),
                p.vias[0].of(buf),
            ]))?;
        }
        o.put(b"\r\n")?;
    }
    if !p.call_id.is_empty() {
        o.put(b"Call-ID: ")?;
        o.put(p.call_id.of(buf))?;
        o.put(b"\r\n")?;
    }
    o.put(b"CSeq: ")?;
    o.put(p.cseq.of(buf))?;
    o.put(b"\r\n")?;
    match extra {
        Extra::None => {}
        Extra::RetryAfter(s) => {
            o.put(b"Retry-After: ")?;
            o.put_u32(s)?;
            o.put(b"\r\n")?;
        }
        Extra::Unsupported(tags) => {
            o.put(b"Unsupported: ")?;
            o.put(tags)?;
            o.put(b"\r\n")?;
        }
        Extra::Warning(w) => {
            o.put(b"Warning: 399 sipdispatch \"")?;
            o.put(w.as_bytes())?;
            o.put(b"\"\r\n")?;
        }
    }
    o.put(b"Server: sipdispatch\r\nContent-Length: 0\r\n\r\n")?;
    Ok(o.len())
}

/// The top Via (only its first value if comma-joined), with `received`/`rport` as the server
/// transport adds them (RFC 3261 §18.2.1, RFC 3581 §4).
fn put_top_via(o: &mut Out<'_>, buf: &[u8], v: Span, src: SocketAddr) -> Result<(), Overflow> {
    let first_end = super::lex::find_unquoted(buf, v.start(), v.end(), b',').unwrap_or(v.end());
    let Some(via) = parse_via(buf, v.start(), first_end) else {
        return o.put(v.of(buf));
    };
    let (mut pos, end) = (via.value.start(), via.value.end());
    if let (Some(None), Some(param)) = (via.rport, via.rport_param) {
        o.put(&buf[pos..param.end()])?;
        o.put(b"=")?;
        o.put_u32(u32::from(src.port()))?;
        pos = param.end();
    }
    o.put(&buf[pos..end])?;
    if via.received.is_none() {
        o.put(b";received=")?;
        o.put_ip(src.ip())?;
    }
    // The rest of a comma-joined header value.
    o.put(&buf[end..v.end()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Scanned, scan};

    const SRC: &str = "192.0.2.7:5071";

    fn reply(
        req: &[u8],
        code: u16,
        reason: &str,
        extra: Extra<'_>,
    ) -> Option<(String, SocketAddr)> {
        let mut out = [0u8; 2048];
        let (n, to) =
            write_reply(req, code, reason, extra, SRC.parse().unwrap(), &mut out)?.unwrap();
        Some((String::from_utf8(out[..n].to_vec()).unwrap(), to))
    }

    const REQ: &[u8] = b"OPTIONS sip:u@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK0\r\n\
v: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bKx\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:u@example.com>\r\nCall-ID: c1\r\nCSeq: 7 OPTIONS\r\nMax-Forwards: 0\r\n\r\n";

    #[test]
    fn copies_headers_adds_tag_and_received() {
        let (r, to) = reply(REQ, 483, "Too Many Hops", Extra::None).unwrap();
        assert!(r.starts_with("SIP/2.0 483 Too Many Hops\r\n"), "{r}");
        assert!(r.contains(
            "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport=5071;received=192.0.2.7, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK0\r\n"
        ), "{r}");
        assert!(r.contains("Via: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bKx\r\n"));
        assert!(r.contains("To: <sip:u@example.com>;tag=sd"));
        assert!(r.contains("Call-ID: c1\r\nCSeq: 7 OPTIONS\r\n"));
        assert!(r.ends_with("Content-Length: 0\r\n\r\n"));
        // rport: back to the source port.
        assert_eq!(to, SRC.parse().unwrap());
        // Same request, same To-tag.
        assert_eq!(reply(REQ, 483, "Too Many Hops", Extra::None).unwrap().0, r);
        let Ok(Scanned::Message(m)) = scan(r.as_bytes()) else {
            panic!("{r}")
        };
        assert_eq!(m.via_count, 3);
    }

    #[test]
    fn extras_and_target_without_rport() {
        let req = b"INVITE sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:u@h>;tag=9\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let (r, to) = reply(req, 503, "Service Unavailable", Extra::RetryAfter(30)).unwrap();
        assert!(r.contains("Retry-After: 30\r\n"));
        assert!(r.contains("To: <sip:u@h>;tag=9\r\n"), "{r}");
        assert_eq!(to, "192.0.2.7:5070".parse().unwrap());
        let (r, _) = reply(
            req,
            400,
            "Bad Request",
            Extra::Warning("malformed Via header"),
        )
        .unwrap();
        assert!(r.contains("Warning: 399 sipdispatch \"malformed Via header\"\r\n"));
    }

    #[test]
    fn never_replies_to_ack_responses_or_requests_without_cseq() {
        let ack = b"ACK sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:u@h>\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n";
        assert!(reply(ack, 400, "Bad Request", Extra::None).is_none());
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n";
        assert!(reply(resp, 400, "Bad Request", Extra::None).is_none());
        let no_cseq =
            b"INVITE sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: c\r\n\r\n";
        assert!(reply(no_cseq, 400, "Bad Request", Extra::None).is_none());
    }
}
