//! The scanner's contract as one executable check, shared by the property test
//! (`tests/scan_props.rs`) and the fuzz targets (`fuzz/`): for any input, nothing panics, every
//! range a scanned message holds lies inside the datagram, a local 400 built from anything
//! scans as a response, and a message that scans, once rewritten, scans again with the same
//! Call-ID and one more (request) or one fewer (response) Via; every fast reader of a plain
//! shape (header line, Via, From/To, SIP URI) agrees with the general reader wherever it
//! answers; and the data plane's scan accepts all that the full scan accepts, with the same
//! fields. Not used on the message path.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use super::bytemask::LineFeeds;
use super::echo::Echo;
use super::fields::route_entries;
use super::header::{Name, Next, any_line, call_id, lines, plain_line, skim};
use super::lex::{find_unquoted, trim};
use super::proxy::{Identity, RequestPlan, plan_request, write_request, write_response};
use super::reply::{Extra, write_reply};
use super::scan::scan_general;
use super::scan::{Entries, HeaderPos, ScanMemory};
use super::uri::{general_party, general_uri, plain_party, plain_tag, plain_uri};
use super::verdict::judge;
use super::via::{ViaHead, general_via, plain_via};
use super::{Message, Scanned, Span, StartLine, scan, scan_forwarding};

fn ensure(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_owned()) }
}

/// Every range a scanned message holds.
pub fn spans(m: &Message<'_>) -> Vec<Span> {
    let mut v = vec![
        m.call_id,
        m.from_header.value(m.buf),
        m.to_header.value(m.buf),
        m.cseq_method,
        m.body,
        m.via.value,
        m.via.transport,
        m.via.host,
        m.via_header.line,
        m.via_header.value,
        m.routes.first_header.line,
    ];
    for p in [m.from(), m.to()].into_iter().flatten() {
        v.extend([p.uri, p.params]);
        v.extend(p.tag);
    }
    v.extend(
        [
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
    if let Some(rr) = m.record_routes {
        v.push(rr.first_header.line);
        v.extend(rr.as_slice().iter().copied());
    }
    match m.start {
        StartLine::Request {
            method_span, uri, ..
        } => {
            v.extend([method_span, uri.whole]);
            if let Some(u) = m.request_uri() {
                v.extend([u.whole, u.host, u.params]);
                v.extend(u.user);
            }
        }
        StartLine::Response { reason, .. } => v.push(reason),
    }
    v
}

/// The fast readers against the general ones, on every line of `data` and every value on it.
fn plain_readers_agree(data: &[u8]) -> Result<(), String> {
    // One Via head across the lines, as a shard keeps one across messages: each Via is read
    // fresh, then through the head the line before left, then through its own.
    let mut head = ViaHead::default();
    // One Route memory across the lines too.
    let mut route = Echo::default();
    let starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', data).map(|p| p + 1));
    for pos in starts {
        let general = any_line(data, pos);
        if let Some(line) = plain_line(data, pos, &mut LineFeeds::new(data, pos))
            && general != Ok(Next::Header(line))
        {
            return Err(format!("line at {pos}: {line:?} vs {general:?}"));
        }
        // What the scan keeps of a line it skims: the kind and the line end.
        if let Some(sk) = skim(data, pos, &mut LineFeeds::new(data, pos))
            && !matches!(general, Ok(Next::Header(l)) if l.kind == sk.kind && l.line.1 == sk.lf + 1)
        {
            return Err(format!("skimmed line at {pos}: {sk:?} vs {general:?}"));
        }
        let Ok(Next::Header(line)) = general else {
            continue;
        };
        let (vs, ve) = line.value;
        let fresh = plain_via(data, vs, ve, None);
        let recalled = [(); 2].map(|_| plain_via(data, vs, ve, Some(&mut head)));
        if recalled.iter().any(|r| *r != fresh) {
            return Err(format!(
                "Via at {vs}: {recalled:?} through a head vs {fresh:?}"
            ));
        }
        if let Some((via, stop)) = fresh {
            let comma = find_unquoted(data, vs, ve, b',');
            let (s, e) = trim(data, vs, comma.unwrap_or(ve));
            let want = general_via(data, s, e);
            if comma != Some(stop) || want != Some(via) {
                return Err(format!(
                    "Via at {vs}: {via:?} to {stop} vs {want:?} to {comma:?}"
                ));
            }
        }
        // The line as Route entries: through the memory, as read fresh, as the general reader
        // splits them.
        let hp = HeaderPos {
            line: Span::new(line.line.0, line.line.1),
            value: Span::new(vs, ve),
        };
        let entries = |plain: bool, echo: Option<&mut Echo>| {
            let mut e = Entries::default();
            let r = if plain {
                route_entries::<true>(data, hp, &mut e, "Route", echo)
            } else {
                route_entries::<false>(data, hp, &mut e, "Route", None)
            };
            r.map(|()| e)
        };
        let fresh = entries(true, None);
        let recalled = [(); 2].map(|_| entries(true, Some(&mut route)));
        let general = entries(false, None);
        if recalled.iter().any(|r| *r != fresh) || (fresh.is_ok() && fresh != general) {
            return Err(format!(
                "Route at {vs}: {recalled:?} through a memory, {fresh:?} fresh, {general:?}"
            ));
        }
        if let Some(p) = plain_party(data, vs, ve) {
            let want = general_party(data, vs, ve);
            ensure(
                want == Some(p),
                &format!("party at {vs}: {p:?} vs {want:?}"),
            )?;
        }
        if let Some(tag) = plain_tag(data, vs, ve) {
            let want = plain_party(data, vs, ve).map(|p| p.tag);
            ensure(
                want == Some(tag),
                &format!("tag at {vs}: {tag:?} vs {want:?}"),
            )?;
        }
        // Every `sip:` on the line, to each place a URI could end.
        for (i, _) in data[vs..ve]
            .windows(4)
            .enumerate()
            .filter(|(_, w)| w.eq_ignore_ascii_case(b"sip:"))
        {
            let at = vs + i;
            for end in (at + 4..=ve)
                .filter(|&e| e == ve || matches!(data[e], b' ' | b'>' | b';' | b',' | b'?' | b'@'))
            {
                if let Some(u) = plain_uri(data, at, end) {
                    let want = general_uri(data, at, end);
                    ensure(
                        want == Some(u),
                        &format!("URI {at}..{end}: {u:?} vs {want:?}"),
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// [`scan_forwarding`] against [`scan`]: it may accept more (it leaves fields unread), never
/// less, and what it reads, or reads when asked, is what the full scan read.
fn forwarding_scan_agrees(
    data: &[u8],
    full: &Result<Scanned<'_>, super::ScanError>,
) -> Result<(), String> {
    // Scanned twice with one memory: the second scan recalls what the first read.
    let mut heads = ScanMemory::default();
    let fwd = scan_forwarding(data, &mut heads);
    let again = scan_forwarding(data, &mut heads);
    ensure(
        again == fwd,
        &format!("forwarding scan differs with its memory: {again:?} vs {fwd:?}"),
    )?;
    match (full, &fwd) {
        (Ok(Scanned::Message(a)), Ok(Scanned::Message(b))) => {
            let unread_aside = Message {
                from_header: a.from_header,
                to_header: a.to_header,
                record_routes: a.record_routes,
                ..*b
            };
            ensure(
                unread_aside == *a
                    && b.from_header.value(data) == a.from_header.value(data)
                    && b.to_header.value(data) == a.to_header.value(data)
                    && b.from() == a.from()
                    && b.to() == a.to()
                    && b.to_tag() == a.to_tag()
                    && b.record_routes.is_none(),
                &format!("forwarding scan differs: {b:?} vs {a:?}"),
            )
        }
        (Ok(a), b) => ensure(
            Ok(a) == b.as_ref(),
            &format!("forwarding scan gave {b:?} where the scan gave {a:?}"),
        ),
        (Err(_), _) => Ok(()),
    }
}

/// Runs every rule above on `data`; the error says which one broke.
pub fn check(data: &[u8]) -> Result<(), String> {
    plain_readers_agree(data)?;
    let (fast, general) = (scan(data), scan_general(data));
    ensure(
        fast == general,
        &format!("scan differs from the general scan: {fast:?} vs {general:?}"),
    )?;
    forwarding_scan_agrees(data, &fast)?;
    // The Call-ID a datagram is steered by is the one the scan reads, wherever it reads one.
    let steered = call_id(data);
    let general_id = memchr::memchr(b'\n', data).and_then(|pos| {
        lines(data, pos + 1)
            .find(|h| h.kind == Name::CallId)
            .map(|h| &data[h.value.0..h.value.1])
    });
    ensure(
        steered == general_id,
        &format!("steering Call-ID {steered:?} vs {general_id:?}"),
    )?;
    if let Ok(Scanned::Message(m)) = &fast {
        ensure(
            steered == Some(m.call_id()),
            &format!("steering Call-ID {steered:?} vs the scan's"),
        )?;
    }
    let src: SocketAddr = "192.0.2.77:5099".parse().unwrap();
    let mut out = vec![0u8; 140_000];
    let _ = judge(data, &Identity::new("192.0.2.1", 5060, &[]));
    let reply = write_reply(data, 400, "Bad Request", Extra::Warning("x"), src, &mut out);
    let reply_len = match reply {
        Some(Ok((n, _))) => {
            ensure(
                out[..n].starts_with(b"SIP/2.0 400 Bad Request\r\n"),
                "reply start line",
            )?;
            ensure(
                out[..n].ends_with(b"Content-Length: 0\r\n\r\n"),
                "reply ending",
            )?;
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
                ensure(!r.is_request(), "reply scans as a request")?;
                ensure(r.call_id() == m.call_id(), "reply Call-ID differs")?;
            }
            other => {
                return Err(format!("reply does not scan: {other:?}"));
            }
        }
    }
    for s in spans(&m) {
        if !(s.start <= s.end && s.end() <= data.len()) {
            return Err(format!("span {s:?} outside {} bytes", data.len()));
        }
    }
    if m.is_request() {
        let me = Identity::new("192.0.2.1", 5060, &[]);
        if let RequestPlan::Forward(f) = plan_request(&m, &me) {
            let n = write_request(&m, &f, true, &me, src, &mut out).unwrap();
            let Ok(Scanned::Message(again)) = scan(&out[..n]) else {
                return Err("forwarded request does not scan".into());
            };
            ensure(again.call_id() == m.call_id(), "forwarded Call-ID differs")?;
            ensure(
                again.via_count == m.via_count + 1,
                "forwarded request lacks one Via",
            )?;
        }
    } else {
        // Pretend the top Via is ours, as a response coming back through the proxy.
        let host = String::from_utf8_lossy(m.via.host.of(data)).into_owned();
        let me = Identity::new(&host, m.via.port.unwrap_or(5060), &[]);
        if let Ok((n, _)) = write_response(&m, &me, &mut out) {
            let Ok(Scanned::Message(again)) = scan(&out[..n]) else {
                return Err("forwarded response does not scan".into());
            };
            ensure(again.call_id() == m.call_id(), "forwarded Call-ID differs")?;
            ensure(
                again.via_count + 1 == m.via_count,
                "forwarded response kept its Via",
            )?;
        }
    }
    Ok(())
}
