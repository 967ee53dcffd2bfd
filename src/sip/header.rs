//! Header lines of a SIP message: splitting the header section into lines (folding and
//! `\n`-only line ends included) and recognising the names routing cares about, long or
//! compact, in any case. Values stay raw; other modules parse them.
#![forbid(unsafe_code)]

use super::bytemask::{LineFeeds, name_run16, skip_token};
use super::lex::{Pattern, is_token, trim};

/// The headers sipdispatch looks at; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    CallId,
    From,
    To,
    Via,
    CSeq,
    MaxForwards,
    ContentLength,
    Route,
    RecordRoute,
    Contact,
    Authorization,
    ProxyAuthorization,
    ProxyRequire,
    Other,
}

impl Name {
    /// Classifies a header name (RFC 3261 §7.3.3 compact forms included). One comparison at
    /// most: candidates are told apart by length and first letter.
    #[inline]
    pub fn classify(n: &[u8]) -> Self {
        let Some(&first) = n.first() else {
            return Self::Other;
        };
        let (full, kind): (&[u8], Name) = match (n.len(), first | 0x20) {
            (1, b'i') => return Self::CallId,
            (1, b'f') => return Self::From,
            (1, b't') => return Self::To,
            (1, b'v') => return Self::Via,
            (1, b'l') => return Self::ContentLength,
            (1, b'm') => return Self::Contact,
            (2, b't') => (b"To", Self::To),
            (3, b'v') => (b"Via", Self::Via),
            (4, b'f') => (b"From", Self::From),
            (4, b'c') => (b"CSeq", Self::CSeq),
            (5, b'r') => (b"Route", Self::Route),
            (7, b'c') if n[2] | 0x20 == b'l' => (b"Call-ID", Self::CallId),
            (7, b'c') => (b"Contact", Self::Contact),
            (12, b'm') => (b"Max-Forwards", Self::MaxForwards),
            (12, b'r') => (b"Record-Route", Self::RecordRoute),
            (13, b'a') => (b"Authorization", Self::Authorization),
            (13, b'p') => (b"Proxy-Require", Self::ProxyRequire),
            (14, b'c') => (b"Content-Length", Self::ContentLength),
            (19, b'p') => (b"Proxy-Authorization", Self::ProxyAuthorization),
            _ => return Self::Other,
        };
        // Names are tokens, for which OR-ing 0x20 folds case without false matches.
        let same =
            full.len() == n.len() && full.iter().zip(n).all(|(a, b)| (a | 0x20) == (b | 0x20));
        if same { kind } else { Self::Other }
    }
}

/// One header line as offsets: the name, the trimmed value (continuation lines included), and
/// the whole line from the name to just past its line end; and what the name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub name: (usize, usize),
    pub value: (usize, usize),
    pub line: (usize, usize),
    pub kind: Name,
}

/// Why a header line could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    /// No colon on the line.
    NoColon,
    /// The name is empty or not a token.
    BadName,
}

/// What comes next in the header section at a given offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Header(Line),
    /// The empty line that ends the headers; `body` is the offset just past it. A datagram that
    /// ends right after a header line (no empty line) is treated the same way, with an empty body.
    End {
        body: usize,
    },
}

/// Reads the header line starting at `pos`.
#[inline(never)]
pub fn next(buf: &[u8], pos: usize) -> Result<Next, LineError> {
    match plain_line(buf, pos, &mut LineFeeds::new(buf, pos)) {
        Some(line) => Ok(Next::Header(line)),
        None => any_line(buf, pos),
    }
}

/// The header lines from `pos` on, up to the end of the headers or the first malformed line.
pub fn lines(buf: &[u8], mut pos: usize) -> impl Iterator<Item = Line> + '_ {
    let mut lfs = LineFeeds::new(buf, pos);
    std::iter::from_fn(move || {
        let line = match plain_line(buf, pos, &mut lfs) {
            Some(line) => line,
            None => match any_line(buf, pos) {
                Ok(Next::Header(line)) => line,
                _ => return None,
            },
        };
        pos = line.line.1;
        Some(line)
    })
}

/// The shape nearly every line has, `Name: value\r\n` with nothing folded and nothing to trim
/// after the value, read with word-wide compares and the window-wide line-feed search of `lfs`
/// (a cursor the caller keeps across the lines of one message). `None` for anything else,
/// which [`any_line`] then reads; on the lines this accepts, the two agree (a property test
/// checks).
#[inline(always)]
pub(crate) fn plain_line(buf: &[u8], pos: usize, lfs: &mut LineFeeds) -> Option<Line> {
    let skim = skim(buf, pos, lfs)?;
    Some(Line {
        name: (pos, skim.colon),
        value: plain_value(buf, &skim)?,
        line: (pos, skim.lf + 1),
        kind: skim.kind,
    })
}

/// A header line in its plain shape, before its value is looked at: what the name is, where
/// its colon and its line feed are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Skim {
    pub kind: Name,
    pub colon: usize,
    pub lf: usize,
}

/// The first half of [`plain_line`]: a token name right before the colon, and a line end that
/// no continuation line follows. Enough for a header the scan ignores: for those, [`any_line`]
/// would give the same name and the same line end whatever the value holds.
#[inline(always)]
pub(crate) fn skim(buf: &[u8], pos: usize, lfs: &mut LineFeeds) -> Option<Skim> {
    skim_line(buf, pos, lfs).filter(|s| !matches!(buf.get(s.lf + 1), Some(b' ' | b'\t')))
}

/// [`skim`] without looking past the line end for a continuation line. For the scan, which
/// meets a continuation line as the next line, a malformed header (it starts with a blank),
/// and then scans the message again with the general readers: folding is rare, and checking
/// for it after every line cost ~7 instructions a line.
#[inline(always)]
pub(crate) fn skim_line(buf: &[u8], pos: usize, lfs: &mut LineFeeds) -> Option<Skim> {
    let (kind, colon) = match known_name(buf, pos) {
        Some(k) => k,
        None => other_name(buf, pos)?,
    };
    let lf = lfs.next(buf, colon + 1)?;
    Some(Skim { kind, colon, lf })
}

/// The second half of [`plain_line`]: the value after the blanks that follow the colon, unless
/// the line ends in a bare LF or the value is empty or has other blanks to trim (the general
/// reader's cases).
#[inline(always)]
pub(crate) fn plain_value(buf: &[u8], skim: &Skim) -> Option<(usize, usize)> {
    // Never true; said so the compiler drops the bounds checks of the reads below.
    if skim.lf >= buf.len() || skim.colon >= skim.lf {
        return None;
    }
    // `lf` is the first line feed after the colon, so no byte between them is a LF. Blanks
    // are skipped (SIPp pads Content-Length to five places: `Content-Length:     0`).
    let ve = skim.lf - 1;
    let mut vs = skim.colon + 1 + usize::from(buf[skim.colon + 1] == b' ');
    while vs < ve && matches!(buf[vs], b' ' | b'\t') {
        vs += 1;
    }
    // A CR not followed by a LF is linear whitespace to the general reader's trim.
    if vs >= ve
        || buf[ve] != b'\r'
        || buf[vs] == b'\r'
        || matches!(buf[ve - 1], b' ' | b'\t' | b'\r')
    {
        return None;
    }
    Some((vs, ve))
}

/// A name [`known_name`] does not know, and its colon right after it. Most are fewer than 16
/// letters, digits, `-` and `.`, which one 16-byte compare finds; the token search reads the rest.
#[inline(always)]
fn other_name(buf: &[u8], pos: usize) -> Option<(Name, usize)> {
    // The empty line that ends the headers lands here once a message: no name starts with a
    // line end.
    if matches!(buf.get(pos), Some(b'\r' | b'\n')) {
        return None;
    }
    // `known_name` misses a name it knows only where its patterns cannot read enough.
    let complete = pos + KNOWN_NAME_READS <= buf.len();
    if complete && let Some(chunk) = buf.get(pos..pos + 16) {
        let len = name_run16(chunk.try_into().ok()?);
        if len > 0 && len < 16 && chunk[len] == b':' {
            return Some((Name::Other, pos + len));
        }
    }
    let e = skip_token(buf, pos, buf.len());
    if e == pos || buf.get(e) != Some(&b':') {
        return None;
    }
    let kind = if complete {
        Name::Other
    } else {
        Name::classify(&buf[pos..e])
    };
    Some((kind, e))
}

/// Bytes from a line's start that [`known_name`]'s longest pattern reads.
const KNOWN_NAME_READS: usize = 24;

/// Every name [`Name::classify`] knows, and a few frequent ones it does not (`Other`), in
/// their usual spelling (any case) with the colon right after it: the name and where it ends.
/// `None` for any other name, and near the end of the datagram (fewer than
/// [`KNOWN_NAME_READS`] bytes) possibly for a known one.
#[inline(always)]
fn known_name(buf: &[u8], pos: usize) -> Option<(Name, usize)> {
    let rest = buf.get(pos..)?;
    let (name, len) = match rest.first_chunk::<KNOWN_NAME_READS>() {
        // Read from a head of fixed size, the patterns' compares need no bounds checks.
        Some(head) => name_at(head)?,
        None => name_at(rest)?,
    };
    Some((name, pos + len))
}

/// [`known_name`] on the bytes from the line's start: the name and its length.
#[inline(always)]
fn name_at(s: &[u8]) -> Option<(Name, usize)> {
    const VIA: Pattern<1> = Pattern::new(b"via:");
    const FROM: Pattern<1> = Pattern::new(b"from:");
    const TO: Pattern<1> = Pattern::new(b"to:");
    const CALL_ID: Pattern<1> = Pattern::new(b"call-id:");
    const CSEQ: Pattern<1> = Pattern::new(b"cseq:");
    const CONTACT: Pattern<1> = Pattern::new(b"contact:");
    const CONTENT_LENGTH: Pattern<2> = Pattern::new(b"content-length:");
    const MAX_FORWARDS: Pattern<2> = Pattern::new(b"max-forwards:");
    const ROUTE: Pattern<1> = Pattern::new(b"route:");
    const RECORD_ROUTE: Pattern<2> = Pattern::new(b"record-route:");
    const AUTHORIZATION: Pattern<2> = Pattern::new(b"authorization:");
    const PROXY_AUTHORIZATION: Pattern<3> = Pattern::new(b"proxy-authorization:");
    const PROXY_REQUIRE: Pattern<2> = Pattern::new(b"proxy-require:");
    // Frequent names the scan does not read (SBCs and SIPp send them), known here so that they
    // need no search for their colon.
    const CONTENT_TYPE: Pattern<2> = Pattern::new(b"content-type:");
    const SUBJECT: Pattern<1> = Pattern::new(b"subject:");
    const SUPPORTED: Pattern<2> = Pattern::new(b"supported:");
    const ALLOW: Pattern<1> = Pattern::new(b"allow:");
    const USER_AGENT: Pattern<2> = Pattern::new(b"user-agent:");
    const P_ASSERTED_IDENTITY: Pattern<3> = Pattern::new(b"p-asserted-identity:");
    const SESSION_EXPIRES: Pattern<2> = Pattern::new(b"session-expires:");
    let b = *s.first()?;
    let (name, len) = match b | 0x20 {
        b'v' if VIA.at(s, 0) => (Name::Via, VIA.len),
        b'f' if FROM.at(s, 0) => (Name::From, FROM.len),
        b't' if TO.at(s, 0) => (Name::To, TO.len),
        b'c' if CALL_ID.at(s, 0) => (Name::CallId, CALL_ID.len),
        b'c' if CSEQ.at(s, 0) => (Name::CSeq, CSEQ.len),
        b'c' if CONTACT.at(s, 0) => (Name::Contact, CONTACT.len),
        b'c' if CONTENT_LENGTH.at(s, 0) => (Name::ContentLength, CONTENT_LENGTH.len),
        b'm' if MAX_FORWARDS.at(s, 0) => (Name::MaxForwards, MAX_FORWARDS.len),
        b'r' if ROUTE.at(s, 0) => (Name::Route, ROUTE.len),
        b'r' if RECORD_ROUTE.at(s, 0) => (Name::RecordRoute, RECORD_ROUTE.len),
        b'a' if AUTHORIZATION.at(s, 0) => (Name::Authorization, AUTHORIZATION.len),
        b'p' if PROXY_AUTHORIZATION.at(s, 0) => (Name::ProxyAuthorization, PROXY_AUTHORIZATION.len),
        b'p' if PROXY_REQUIRE.at(s, 0) => (Name::ProxyRequire, PROXY_REQUIRE.len),
        b'c' if CONTENT_TYPE.at(s, 0) => (Name::Other, CONTENT_TYPE.len),
        b's' if SUBJECT.at(s, 0) => (Name::Other, SUBJECT.len),
        b's' if SUPPORTED.at(s, 0) => (Name::Other, SUPPORTED.len),
        b'a' if ALLOW.at(s, 0) => (Name::Other, ALLOW.len),
        b'u' if USER_AGENT.at(s, 0) => (Name::Other, USER_AGENT.len),
        b'p' if P_ASSERTED_IDENTITY.at(s, 0) => (Name::Other, P_ASSERTED_IDENTITY.len),
        b's' if SESSION_EXPIRES.at(s, 0) => (Name::Other, SESSION_EXPIRES.len),
        // Compact forms, and other one-letter names: looked for only where no long name
        // matched, which is rare.
        _ if s.get(1) == Some(&b':') => {
            return is_token(b).then(|| (Name::classify(&s[..1]), 1));
        }
        _ => return None,
    };
    // The patterns end with the colon.
    Some((name, len - 1))
}

/// Reads any header line: folding, blanks before the colon, `\n`-only ends, empty values.
#[inline(never)]
pub(crate) fn any_line(buf: &[u8], pos: usize) -> Result<Next, LineError> {
    match buf.get(pos..) {
        None | Some([]) => return Ok(Next::End { body: buf.len() }),
        Some([b'\r', b'\n', ..]) => return Ok(Next::End { body: pos + 2 }),
        Some([b'\n', ..]) => return Ok(Next::End { body: pos + 1 }),
        Some(_) => {}
    }
    // The name: token bytes up to optional blanks and the colon, all on the first line.
    let mut i = pos;
    while i < buf.len() && is_token(buf[i]) {
        i += 1;
    }
    let name_end = i;
    while i < buf.len() && matches!(buf[i], b' ' | b'\t') {
        i += 1;
    }
    match buf.get(i) {
        Some(b':') if name_end > pos => {}
        Some(b':') => return Err(LineError::BadName),
        // A line with no colon before its end, or a name with other bytes in it.
        _ => {
            let lf = memchr::memchr(b'\n', &buf[pos..]).map_or(buf.len(), |p| pos + p);
            return Err(match memchr::memchr(b':', &buf[pos..lf]) {
                Some(_) => LineError::BadName,
                None => LineError::NoColon,
            });
        }
    }
    let colon = i;
    // The line ends at a LF that is not followed by SP/HT (which would fold the next line in).
    let mut search = colon + 1;
    let line_end = loop {
        match memchr::memchr(b'\n', &buf[search..]) {
            Some(p) => {
                let lf = search + p;
                if matches!(buf.get(lf + 1), Some(b' ' | b'\t')) {
                    search = lf + 1;
                } else {
                    break lf + 1;
                }
            }
            None => break buf.len(),
        }
    };
    let value = trim(buf, colon + 1, line_end);
    Ok(Next::Header(Line {
        name: (pos, name_end),
        value,
        line: (pos, line_end),
        kind: Name::classify(&buf[pos..name_end]),
    }))
}

/// Splits a header value at top-level commas (outside quotes and `<…>`), calling `f` with each
/// trimmed element. Returns `false` on an empty element or an unterminated quote.
pub fn for_each_element(
    buf: &[u8],
    value: (usize, usize),
    mut f: impl FnMut(usize, usize),
) -> bool {
    let (mut i, end) = value;
    if i == end {
        return false;
    }
    loop {
        let Some(comma) = super::lex::find_unquoted(buf, i, end, b',') else {
            return false;
        };
        let (s, e) = trim(buf, i, comma);
        if s == e {
            return false;
        }
        f(s, e);
        if comma >= end {
            return true;
        }
        i = comma + 1;
    }
}

/// Looks a header up by name (long or compact form, any case) and returns its first value.
/// A slow path for configurable keys; the scanner's own fields don't use it.
pub fn find<'a>(buf: &'a [u8], headers_start: usize, name: &[u8]) -> Option<&'a [u8]> {
    let wanted = Name::classify(name);
    lines(buf, headers_start)
        .find(|h| {
            if wanted == Name::Other {
                buf[h.name.0..h.name.1].eq_ignore_ascii_case(name)
            } else {
                h.kind == wanted
            }
        })
        .map(|h| &buf[h.value.0..h.value.1])
}

/// The Call-ID value, found by reading header names only: cheap enough to decide which shard
/// owns a datagram before the full scan runs there. Lines before it are skimmed (their name
/// and their end); from the first line the skim cannot read (or a Call-ID whose value it
/// cannot), the general reader takes over, so the value is the one the scan reads.
pub fn call_id(buf: &[u8]) -> Option<&[u8]> {
    let mut pos = memchr::memchr(b'\n', buf)? + 1;
    let mut lfs = LineFeeds::new(buf, pos);
    while let Some(s) = skim(buf, pos, &mut lfs) {
        if s.kind == Name::CallId {
            if let Some((vs, ve)) = plain_value(buf, &s) {
                return Some(&buf[vs..ve]);
            }
            break;
        }
        pos = s.lf + 1;
    }
    lines(buf, pos)
        .find(|h| h.kind == Name::CallId)
        .map(|h| &buf[h.value.0..h.value.1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_long_compact_any_case() {
        assert_eq!(Name::classify(b"MaX-fOrWaRdS"), Name::MaxForwards);
        assert_eq!(Name::classify(b"v"), Name::Via);
        assert_eq!(Name::classify(b"I"), Name::CallId);
        assert_eq!(Name::classify(b"l"), Name::ContentLength);
        assert_eq!(Name::classify(b"record-route"), Name::RecordRoute);
        assert_eq!(Name::classify(b"C%6Fntact"), Name::Other);
        assert_eq!(Name::classify(b"s"), Name::Other);
    }

    #[test]
    fn folded_lines_and_bare_lf() {
        let m = b"Via  : a\r\n b\r\nX: y\nZ:\r\n\r\nbody";
        let Next::Header(h) = next(m, 0).unwrap() else {
            panic!()
        };
        assert_eq!(&m[h.name.0..h.name.1], b"Via");
        assert_eq!(&m[h.value.0..h.value.1], b"a\r\n b");
        let Next::Header(h2) = next(m, h.line.1).unwrap() else {
            panic!()
        };
        assert_eq!(&m[h2.value.0..h2.value.1], b"y");
        let Next::Header(h3) = next(m, h2.line.1).unwrap() else {
            panic!()
        };
        assert_eq!(h3.value.0, h3.value.1);
        assert_eq!(next(m, h3.line.1).unwrap(), Next::End { body: m.len() - 4 });
        assert_eq!(next(b"Foobar roobar\r\n", 0), Err(LineError::NoColon));
        assert_eq!(next(b"Bad Name: x\r\n", 0), Err(LineError::BadName));
    }

    #[test]
    fn skimmed_names_agree_with_the_general_reader() {
        let names = [
            "Allow",
            "X_Y",
            "A.b-9",
            "abcdefghijklmno",
            "abcdefghijklmnop",
            "P-Asserted-Identity",
            "CONTENT-TYPE",
            "Content-Length",
            "cOnTaCt",
            "To",
            "t",
            "Via",
            "Proxy-Require",
            "Min-SE",
            "X~",
            "Record-Route",
            "Max-Forwards",
            "Authorization",
        ];
        for name in names {
            // Far from the end of the datagram, and with the line as its last bytes.
            for tail in ["\r\nX: 1\r\n\r\n0123456789012345678901234567890", "\r\n"] {
                let m = format!("{name}: v{tail}");
                let m = m.as_bytes();
                let Ok(Next::Header(h)) = any_line(m, 0) else {
                    panic!("{name}")
                };
                let sk = skim(m, 0, &mut LineFeeds::new(m, 0)).expect(name);
                assert_eq!((sk.kind, sk.colon, sk.lf + 1), (h.kind, h.name.1, h.line.1));
            }
        }
    }

    #[test]
    fn call_id_without_a_full_scan() {
        let m = b"BYE sip:a@b SIP/2.0\r\nVia: x\r\ni: abc@h\r\n\r\n";
        assert_eq!(call_id(m), Some(&b"abc@h"[..]));
        assert_eq!(call_id(b"junk"), None);
    }

    #[test]
    fn elements_split_at_top_level_commas() {
        let v = br#"<sip:a;x=1,2>, "b,c" <sip:b> ,sip:c"#;
        let mut got = Vec::new();
        assert!(for_each_element(v, (0, v.len()), |s, e| got.push(&v[s..e])));
        assert_eq!(
            got,
            vec![&b"<sip:a;x=1,2>"[..], br#""b,c" <sip:b>"#, b"sip:c"]
        );
        assert!(!for_each_element(b"a,,b", (0, 4), |_, _| {}));
    }
}
