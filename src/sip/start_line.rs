//! The start line of a SIP message: a request line (method, Request-URI, version) or a status
//! line (code, reason), read with word-wide compares where it has its usual shape and by the
//! grammar otherwise. It knows nothing about headers.
#![forbid(unsafe_code)]

use super::Span;
use super::bytemask::{find_any, skip_token};
use super::fields::uri;
use super::lex::{Pattern, parse_u32, word_at};
use super::scan::ScanError;
use super::uri::{Scheme, Uri, parse_uri};

/// Request methods sipdispatch treats specially; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Other,
}

impl Method {
    /// Method names are case-sensitive (RFC 3261 §7.1).
    // By length, then as one integer compare (a match on byte strings calls `bcmp`).
    #[inline(always)]
    pub fn from_bytes(m: &[u8]) -> Self {
        fn is<const N: usize>(m: &[u8], name: &[u8; N]) -> bool {
            <[u8; N]>::try_from(m).is_ok_and(|a| a == *name)
        }
        match m.len() {
            3 if is(m, b"ACK") => Self::Ack,
            3 if is(m, b"BYE") => Self::Bye,
            6 if is(m, b"INVITE") => Self::Invite,
            6 if is(m, b"CANCEL") => Self::Cancel,
            7 if is(m, b"OPTIONS") => Self::Options,
            8 if is(m, b"REGISTER") => Self::Register,
            _ => Self::Other,
        }
    }
}

/// The first line of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        method_span: Span,
        uri: RequestUri,
    },
    Response {
        code: u16,
        reason: Span,
    },
}

/// The Request-URI: where it is, and its scheme (RFC 3261 §16.3 step 2). The full scan has
/// checked the rest of it; the data plane's scan leaves the rest unread, and the data plane
/// reads it ([`RequestUri::parse`]) for a request of no call it knows, not for the in-dialog
/// requests of a call, which go where the call went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestUri {
    pub whole: Span,
    pub scheme: Scheme,
}

impl RequestUri {
    /// The URI's parts; `None` if it is malformed (which only the data plane's scan lets by),
    /// a headers part included (RFC 3261 §19.1.1; RFC 4475 escruri).
    pub fn parse(&self, buf: &[u8]) -> Option<Uri> {
        parse_uri(buf, self.whole.start(), self.whole.end()).filter(|u| !u.has_headers)
    }
}

/// The scheme of the URI at `buf[start..end]`. Where [`parse_uri`] reads the URI, the same
/// scheme.
#[inline(always)]
fn scheme_of(buf: &[u8], start: usize, end: usize) -> Option<Scheme> {
    const SIP: Pattern<1> = Pattern::new(b"sip:");
    if SIP.within(buf, start, end) {
        return Some(Scheme::Sip);
    }
    let colon = start + memchr::memchr(b':', &buf[start..end])?;
    Scheme::named(&buf[start..colon])
}

/// The start line; `ALL` reads the whole Request-URI (else its scheme only, [`RequestUri`]).
#[inline(always)]
pub(super) fn start_line<const PLAIN: bool, const ALL: bool>(
    buf: &[u8],
    end: usize,
) -> Result<StartLine, ScanError> {
    let line = &buf[..end];
    // `SIP/2.0 NNN reason`, nearly every status line: the version in one word compare.
    if PLAIN
        && let (Some(w), Some([a, b, c, b' '])) = (word_at(line, 0), line.get(8..12))
        && w == u64::from_le_bytes(*b"SIP/2.0 ")
        && (b'1'..=b'6').contains(a)
        && b.is_ascii_digit()
        && c.is_ascii_digit()
    {
        let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
        return Ok(StartLine::Response {
            code,
            reason: Span::new(12, end),
        });
    }
    // A method sipdispatch knows ends at the first space of the line's first nine bytes; one
    // it knows is a token, so the general search and token check are not needed for it.
    if PLAIN && let Some((sp1, method)) = known_method(line) {
        return request_line::<PLAIN, ALL>(buf, line, sp1, Some(method));
    }
    let sp1 = find_any(line, 0, end, *b" ");
    if sp1 == end {
        return Err(ScanError::BadStartLine);
    }
    if line.starts_with(b"SIP/") {
        if &line[..sp1] != b"SIP/2.0" {
            return Err(ScanError::BadVersion);
        }
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (which may be empty).
        let code_end = line[sp1 + 1..]
            .iter()
            .position(|&b| b == b' ')
            .map_or(end, |p| sp1 + 1 + p);
        let code = parse_u32(&line[sp1 + 1..code_end]).ok_or(ScanError::BadStatusCode)?;
        if !(100..=699).contains(&code) || code_end - sp1 - 1 != 3 {
            return Err(ScanError::BadStatusCode);
        }
        if code_end == end {
            return Err(ScanError::BadStartLine);
        }
        return Ok(StartLine::Response {
            code: code as u16,
            reason: Span::new(code_end + 1, end),
        });
    }
    request_line::<PLAIN, ALL>(buf, line, sp1, None)
}

/// A method [`Method::from_bytes`] knows, and where it ends (its space), found in the first
/// word.
#[inline(always)]
fn known_method(line: &[u8]) -> Option<(usize, Method)> {
    const SPACES: u64 = u64::from_le_bytes([b' '; 8]);
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word_at(line, 0)? ^ SPACES;
    // 0x80 on the bytes of the word that are spaces (no borrow between bytes).
    let spaces = !(((x & LO7) + LO7) | x | LO7);
    let sp1 = if spaces == 0 {
        8
    } else {
        spaces.trailing_zeros() as usize / 8
    };
    if line.get(sp1) != Some(&b' ') {
        return None;
    }
    let method = Method::from_bytes(&line[..sp1]);
    (method != Method::Other).then_some((sp1, method))
}

/// The rest of a request line whose method ends at `sp1` (`known`: the method, where already
/// told, a token then).
#[inline(always)]
fn request_line<const PLAIN: bool, const ALL: bool>(
    buf: &[u8],
    line: &[u8],
    sp1: usize,
    known: Option<Method>,
) -> Result<StartLine, ScanError> {
    let end = line.len();
    // Request-Line = Method SP Request-URI SP SIP-Version, single spaces, no LWS in the URI
    // (RFC 4475 lwsstart, lwsruri, trws).
    // The last space: where the version starts, nearly always eight bytes from the end.
    const VERSION: Pattern<1> = Pattern::new(b" sip/2.0");
    let sp2 = match end.checked_sub(8) {
        Some(at) if VERSION.at(line, at) => at,
        _ => {
            let sp2 = memchr::memrchr(b' ', line).ok_or(ScanError::BadStartLine)?;
            let version = &line[sp2 + 1..];
            if !version.eq_ignore_ascii_case(b"SIP/2.0") {
                return Err(
                    if version.len() > 4 && version[..4].eq_ignore_ascii_case(b"SIP/") {
                        ScanError::BadVersion
                    } else {
                        ScanError::BadStartLine
                    },
                );
            }
            sp2
        }
    };
    if sp2 == sp1 || sp1 == 0 || (known.is_none() && skip_token(line, 0, sp1) != sp1) {
        return Err(ScanError::BadStartLine);
    }
    let (us, ue) = (sp1 + 1, sp2);
    let scheme = if ALL {
        // The Request-URI must not carry a headers part (RFC 3261 §19.1.1; RFC 4475 escruri).
        uri::<PLAIN>(buf, us, ue)
            .filter(|u| !u.has_headers)
            .ok_or(ScanError::BadRequestUri)?
            .scheme
    } else {
        scheme_of(buf, us, ue).ok_or(ScanError::BadRequestUri)?
    };
    let uri = RequestUri {
        whole: Span::new(us, ue),
        scheme,
    };
    Ok(StartLine::Request {
        method: known.unwrap_or_else(|| Method::from_bytes(&line[..sp1])),
        method_span: Span::new(0, sp1),
        uri,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_by_their_exact_names() {
        use Method::*;
        let known = [
            (&b"INVITE"[..], Invite),
            (b"ACK", Ack),
            (b"BYE", Bye),
            (b"CANCEL", Cancel),
            (b"OPTIONS", Options),
            (b"REGISTER", Register),
        ];
        for (name, m) in known {
            assert_eq!(Method::from_bytes(name), m);
            // Case-sensitive (RFC 3261 §7.1), and a prefix or a longer name is another method.
            assert_eq!(Method::from_bytes(&name.to_ascii_lowercase()), Other);
            assert_eq!(Method::from_bytes(&name[1..]), Other);
            assert_eq!(Method::from_bytes(&[name, b"X"].concat()), Other);
        }
        for other in [&b""[..], b"INFO", b"ACX", b"INVITF", b"NOTIFY", b"REGISTEr"] {
            assert_eq!(Method::from_bytes(other), Other);
        }
    }
}
