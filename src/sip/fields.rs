//! The readers of single headers that the scan loop calls: Via lines (the top value parsed,
//! the second located, all counted), Route and Record-Route entries, CSeq, the digest
//! username, and the From/To and URI readers chosen by the scan's `PLAIN` switch. They return
//! byte ranges of the datagram and know nothing about the rest of the message.
#![forbid(unsafe_code)]

use super::Span;
use super::bytemask::{find_any, skip_token};
use super::echo::Echo;
use super::header;
use super::lex::{find_unquoted, is_lws, is_token, trim};
use super::scan::{Entries, HeaderPos, Method, ScanError};
use super::uri::{Party, Uri, general_party, general_uri, parse_uri, plain_party};
use super::via::{Via, ViaHead, general_via, parse_via, plain_via};

// The From/To, Request-URI and CSeq readers are inlined into the scan loop: each has one or
// two call sites there, and a call cost more than their plain paths' setup (callgrind).
#[inline(always)]
pub(super) fn party<const PLAIN: bool>(buf: &[u8], start: usize, end: usize) -> Option<Party> {
    // Header values and list elements reach here trimmed already.
    if PLAIN {
        plain_party(buf, start, end).or_else(|| general_party(buf, start, end))
    } else {
        general_party(buf, start, end)
    }
}

#[inline(always)]
pub(super) fn uri<const PLAIN: bool>(buf: &[u8], start: usize, end: usize) -> Option<Uri> {
    if PLAIN {
        parse_uri(buf, start, end)
    } else {
        general_uri(buf, start, end)
    }
}

/// A Route or Record-Route entry: a name-addr (`<uri>`, RFC 3261 §20.34) with a valid URI.
pub(super) fn route_entry<const PLAIN: bool>(buf: &[u8], start: usize, end: usize) -> bool {
    buf[start..end].contains(&b'<')
        && party::<PLAIN>(buf, start, end)
            .is_some_and(|p| uri::<PLAIN>(buf, p.uri.start(), p.uri.end()).is_some())
}

/// A Via line read by the plain-shape paths: its top value (if it is the message's first
/// Via), or a later line holding one value, or a second value joined on the top Via's line
/// (as SIPp's uas sends them). `None` when the line is done; otherwise the part the general
/// reader must still read, as [`via_elements`] takes it.
#[inline(always)]
pub(super) fn plain_via_line(
    buf: &[u8],
    hp: HeaderPos,
    via: &mut Option<(Via, HeaderPos, Option<usize>)>,
    via_second: &mut Option<Span>,
    via_count: &mut u16,
    head: Option<&mut ViaHead>,
) -> Option<(usize, usize, u16)> {
    let (start, end) = (hp.value.start(), hp.value.end());
    let one_value = |s: usize, e: usize| s < e && find_any(buf, s, e, *b",\"<") == e;
    if via.is_some() {
        if !one_value(start, end) {
            return Some((start, end, 0));
        }
        via_second.get_or_insert(hp.value);
        *via_count = via_count.saturating_add(1);
        return None;
    }
    let Some((v, stop)) = plain_via(buf, start, end, head) else {
        return Some((start, end, 0));
    };
    *via = Some((v, hp, None));
    *via_count = via_count.saturating_add(1);
    if stop == end {
        return None;
    }
    let (s, e) = trim(buf, stop + 1, end);
    if !one_value(s, e) {
        return Some((stop + 1, end, 1));
    }
    if let Some((_, _, next)) = via.as_mut() {
        *next = Some(s);
    }
    *via_second = Some(Span::new(s, e));
    *via_count = via_count.saturating_add(1);
    None
}

/// The Via values of one header from `rest.0` to `rest.1`, `rest.2` of them already read: the
/// top one parsed (if not yet seen), the second one located, all counted.
pub(super) fn via_elements<const PLAIN: bool>(
    buf: &[u8],
    hp: HeaderPos,
    rest: (usize, usize, u16),
    via: &mut Option<(Via, HeaderPos, Option<usize>)>,
    via_second: &mut Option<Span>,
    via_count: &mut u16,
) -> Result<(), ScanError> {
    let mut in_header = rest.2;
    let mut bad = false;
    let ok = header::for_each_element(buf, (rest.0, rest.1), |s, e| {
        if via.is_none() {
            let v = if PLAIN {
                parse_via(buf, s, e)
            } else {
                general_via(buf, s, e)
            };
            match v {
                Some(v) => *via = Some((v, hp, None)),
                None => bad = true,
            }
        } else {
            if in_header == 1
                && let Some((_, vh, next)) = via.as_mut()
                && vh.line == hp.line
            {
                *next = Some(s);
            }
            if via_second.is_none() {
                *via_second = Some(Span::new(s, e));
            }
        }
        in_header += 1;
        *via_count = via_count.saturating_add(1);
    });
    if !ok || bad {
        return Err(ScanError::BadHeader("Via"));
    }
    Ok(())
}

#[inline(always)]
pub(super) fn cseq_value(
    buf: &[u8],
    value: (usize, usize),
) -> Result<(u32, Span, Method), ScanError> {
    const BAD: ScanError = ScanError::BadHeader("CSeq");
    // The value is trimmed: digits, linear whitespace, a token method. Ten digits cannot
    // overflow a u64; an eleventh is refused by the whitespace check that follows.
    let v = buf.get(value.0..value.1).ok_or(BAD)?;
    let mut n: u64 = 0;
    let mut k = 0;
    for &b in v.iter().take(10) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        n = n * 10 + u64::from(d);
        k += 1;
    }
    let digits = k;
    while v.get(k).is_some_and(|&b| is_lws(b)) {
        k += 1;
    }
    let n = u32::try_from(n).map_err(|_| BAD)?;
    if digits == 0 || k == digits || k == v.len() {
        return Err(BAD);
    }
    // A method sipdispatch knows is a token: only another needs the token search.
    let method = Method::from_bytes(&v[k..]);
    if method == Method::Other && skip_token(buf, value.0 + k, value.1) != value.1 {
        return Err(BAD);
    }
    Ok((n, Span::new(value.0 + k, value.1), method))
}

/// The entries of one Route or Record-Route header. `echo` holds the last value read as one
/// plain entry: the same bytes again are that entry, not read again.
pub(super) fn route_entries<const PLAIN: bool>(
    buf: &[u8],
    hp: HeaderPos,
    entries: &mut Entries,
    name: &'static str,
    echo: Option<&mut Echo>,
) -> Result<(), ScanError> {
    let first = entries.count == 0;
    if first {
        entries.first_header = hp;
    }
    let (start, end) = (hp.value.start(), hp.value.end());
    if PLAIN {
        let known = echo
            .as_deref()
            .is_some_and(|e| e.len() == end - start && e.at(buf, start));
        // A comma starts another entry, and a quote changes where the general splitter sees
        // commas: with neither, the whole value is one entry.
        let stop = if known {
            end
        } else {
            find_any(buf, start, end, *b",\"")
        };
        let one = known
            || stop == end
                && plain_party(buf, start, end)
                    .is_some_and(|p| parse_uri(buf, p.uri.start(), p.uri.end()).is_some());
        if one {
            if !known && let Some(e) = echo {
                e.keep(buf, start, end - start);
            }
            entries.push(hp.value);
            if first {
                entries.in_first_header = 1;
            }
            return Ok(());
        }
        if buf.get(stop) == Some(&b',') && plain_entries(buf, (start, end), entries, first) {
            return Ok(());
        }
    }
    let mut bad = false;
    let ok = header::for_each_element(buf, (hp.value.start(), hp.value.end()), |s, e| {
        if !route_entry::<PLAIN>(buf, s, e) {
            bad = true;
        }
        entries.push(Span::new(s, e));
        if first {
            entries.in_first_header += 1;
        }
    });
    if !ok || bad {
        return Err(ScanError::BadHeader(name));
    }
    Ok(())
}

/// Several entries in their plain shape, split at commas, as a route set comes back in a BYE
/// from the callee's side (`<sip:us;lr>, <sip:sbc;lr>`): pushed, or `false` with `entries`
/// untouched for the general splitter to judge. With no quote in the value, it splits at every
/// comma too.
fn plain_entries(
    buf: &[u8],
    (start, end): (usize, usize),
    entries: &mut Entries,
    first: bool,
) -> bool {
    if memchr::memchr(b'"', &buf[start..end]).is_some() {
        return false;
    }
    let before = *entries;
    let mut i = start;
    loop {
        let comma = memchr::memchr(b',', &buf[i..end]).map_or(end, |k| i + k);
        let (s, e) = trim(buf, i, comma);
        let plain = s < e
            && plain_party(buf, s, e)
                .is_some_and(|p| parse_uri(buf, p.uri.start(), p.uri.end()).is_some());
        if !plain {
            *entries = before;
            return false;
        }
        entries.push(Span::new(s, e));
        if first {
            entries.in_first_header += 1;
        }
        if comma == end {
            return true;
        }
        i = comma + 1;
    }
}

/// The `username` auth-param of a Digest credentials value, without quotes. Other schemes
/// (RFC 4475 regaut01) yield `None`.
pub(super) fn digest_username(buf: &[u8], value: (usize, usize)) -> Option<Span> {
    let v = &buf[value.0..value.1];
    let scheme_end = v.iter().position(|&b| !is_token(b))?;
    if !v[..scheme_end].eq_ignore_ascii_case(b"Digest") {
        return None;
    }
    let mut i = value.0 + scheme_end;
    while i < value.1 {
        let comma = find_unquoted(buf, i, value.1, b',')?;
        let eq = buf[i..comma].iter().position(|&b| b == b'=').map(|p| i + p);
        if let Some(eq) = eq {
            let (ns, ne) = trim(buf, i, eq);
            if buf[ns..ne].eq_ignore_ascii_case(b"username") {
                let (mut vs, mut ve) = trim(buf, eq + 1, comma);
                if ve - vs >= 2 && buf[vs] == b'"' && buf[ve - 1] == b'"' {
                    vs += 1;
                    ve -= 1;
                }
                return Some(Span::new(vs, ve));
            }
        }
        i = comma + 1;
    }
    None
}
