//! SIP URIs and name-addr values (From, To, Route, Record-Route), parsed into byte ranges of
//! the datagram. Only what routing needs: scheme, user, host, port, parameters, and the tag of
//! a From/To. Escapes are left as they are on the wire; nothing is decoded or copied.
#![forbid(unsafe_code)]

use super::Span;
use super::bytemask::{find_stop, skip_token, words_run16};
use super::lex::{
    CLASS, DISPLAY, Pattern, URI_SPECIAL, for_each_param, is_lws, parse_u32, plain_params,
    plain_port, quoted_end, trim,
};

/// URI scheme. Schemes other than these are kept opaque (RFC 4475 `unksm2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    Other,
}

impl Scheme {
    /// The scheme a URI's bytes before its colon name; `None` unless they start with a letter.
    pub(crate) fn named(name: &[u8]) -> Option<Self> {
        if !name.first()?.is_ascii_alphabetic() {
            return None;
        }
        Some(if name.eq_ignore_ascii_case(b"sip") {
            Self::Sip
        } else if name.eq_ignore_ascii_case(b"sips") {
            Self::Sips
        } else if name.eq_ignore_ascii_case(b"tel") {
            Self::Tel
        } else {
            Self::Other
        })
    }
}

/// A parsed URI. For `Scheme::Other` only `whole` is meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uri {
    pub scheme: Scheme,
    pub whole: Span,
    /// The user part (may contain `;`, RFC 4475 `semiuri`), without `:password`.
    pub user: Option<Span>,
    /// The host; an IPv6 reference keeps its brackets.
    pub host: Span,
    pub port: Option<u16>,
    /// Everything from the first `;` after the host up to `?` or the end, without the `;`.
    pub params: Span,
    /// True if the URI carries a `?headers` part.
    pub has_headers: bool,
}

impl Uri {
    /// Whether the URI has parameter `name` (e.g. `lr`), in any case.
    pub fn has_param(&self, buf: &[u8], name: &[u8]) -> bool {
        self.params.of(buf).split(|&b| b == b';').any(|p| {
            let n = p.split(|&b| b == b'=').next().unwrap_or_default();
            n.trim_ascii().eq_ignore_ascii_case(name)
        })
    }

    /// The host without IPv6 brackets.
    pub fn host_bare<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        super::lex::unbracket(self.host.of(buf))
    }
}

/// Reads `buf[start..end]` when it is a SIP URI of the plain shape, `sip:[user@]host[:port]
/// [;params]` with a token user and host and no `?`, `@` or whitespace after the host. `None`
/// for anything else, which [`parse_uri`] reads; on what this accepts the two agree (a
/// property test checks).
#[inline(always)]
pub fn plain_uri(buf: &[u8], start: usize, end: usize) -> Option<Uri> {
    const SIP: Pattern<1> = Pattern::new(b"sip:");
    if !SIP.at(buf, start) {
        return None;
    }
    let rest = start + 4;
    let mut hs = rest;
    let mut user = None;
    let first = skip_token(buf, rest, end);
    if first < end && buf[first] == b'@' {
        if first == rest {
            return None;
        }
        user = Some(Span::new(rest, first));
        hs = first + 1;
    }
    let he = if user.is_some() {
        skip_token(buf, hs, end)
    } else {
        first
    };
    if he == hs {
        return None;
    }
    let mut uri = Uri {
        scheme: Scheme::Sip,
        whole: Span::new(start, end),
        user,
        host: Span::new(hs, he),
        port: None,
        params: Span::new(end, end),
        has_headers: false,
    };
    let mut i = he;
    if i < end && buf[i] == b':' {
        let (port, pe) = plain_port(buf, i + 1, end)?;
        uri.port = Some(port);
        i = pe;
    }
    if i < end {
        if buf[i] != b';' {
            return None;
        }
        // Parameters: anything but the bytes that would change how the URI splits.
        if find_stop(buf, i + 1, end, *b"@?[]<>") != end {
            return None;
        }
        uri.params = Span::new(i + 1, end);
    }
    Some(uri)
}

/// Parses `buf[start..end]` as a URI. `None` if it is malformed.
#[inline]
pub fn parse_uri(buf: &[u8], start: usize, end: usize) -> Option<Uri> {
    plain_uri(buf, start, end).or_else(|| general_uri(buf, start, end))
}

/// [`parse_uri`] for every shape the grammar allows.
pub(crate) fn general_uri(buf: &[u8], start: usize, end: usize) -> Option<Uri> {
    let s = &buf[..end];
    // One pass: where the scheme ends, the first `@` after it, and no whitespace or `<>`.
    let (mut colon, mut at) = (None, None);
    for (j, &b) in s[start..].iter().enumerate() {
        if CLASS[usize::from(b)] & URI_SPECIAL != 0 {
            match b {
                b':' if colon.is_none() => colon = Some(start + j),
                b'@' if at.is_none() && colon.is_some() => at = Some(start + j),
                b'<' | b'>' | b' ' | b'\t' | b'\r' | b'\n' => return None,
                _ => {}
            }
        }
    }
    let colon = colon?;
    let scheme = Scheme::named(&s[start..colon])?;
    let whole = Span::new(start, end);
    let rest = colon + 1;
    // The user part may hold `?` and `;` (RFC 4475 intmeth, semiuri), so headers are looked
    // for only after the `@`, when there is one.
    let hstart = at.map_or(rest, |a| a + 1);
    let qmark = s[hstart..end]
        .iter()
        .position(|&b| b == b'?')
        .map(|p| hstart + p);
    let body_end = qmark.unwrap_or(end);
    let mut uri = Uri {
        scheme,
        whole,
        user: None,
        host: Span::new(rest, body_end),
        port: None,
        params: Span::new(body_end, body_end),
        has_headers: qmark.is_some(),
    };
    match scheme {
        Scheme::Other => return Some(uri),
        Scheme::Tel => {
            // tel:number;params — the number plays the part of the user for hashing.
            let semi = s[rest..body_end]
                .iter()
                .position(|&b| b == b';')
                .map(|p| rest + p);
            let num_end = semi.unwrap_or(body_end);
            if num_end == rest {
                return None;
            }
            uri.user = Some(Span::new(rest, num_end));
            uri.host = Span::new(num_end, num_end);
            if let Some(p) = semi {
                uri.params = Span::new(p + 1, body_end);
            }
            return Some(uri);
        }
        Scheme::Sip | Scheme::Sips => {}
    }
    let host_start = match at {
        Some(at) => {
            let user_end = s[rest..at]
                .iter()
                .position(|&b| b == b':')
                .map_or(at, |q| rest + q);
            if user_end == rest {
                return None;
            }
            uri.user = Some(Span::new(rest, user_end));
            at + 1
        }
        None => rest,
    };
    let (host_end, after_host) = if s.get(host_start) == Some(&b'[') {
        let close = host_start + s[host_start..body_end].iter().position(|&b| b == b']')?;
        (close + 1, close + 1)
    } else {
        let stop = s[host_start..body_end]
            .iter()
            .position(|&b| b == b':' || b == b';')
            .map_or(body_end, |p| host_start + p);
        (stop, stop)
    };
    if host_end == host_start {
        return None;
    }
    uri.host = Span::new(host_start, host_end);
    let mut i = after_host;
    if s.get(i) == Some(&b':') && i < body_end {
        let pstart = i + 1;
        let pend = s[pstart..body_end]
            .iter()
            .position(|&b| b == b';')
            .map_or(body_end, |p| pstart + p);
        let port = parse_u32(&s[pstart..pend]).filter(|&p| p <= 65535)?;
        uri.port = Some(port as u16);
        i = pend;
    }
    if i < body_end {
        if s[i] != b';' {
            return None;
        }
        uri.params = Span::new(i + 1, body_end);
    }
    Some(uri)
}

/// A name-addr or addr-spec header value: `"Name" <uri>;params` or `uri;params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr {
    pub uri: Uri,
    /// Header parameters after the URI, without the leading `;`.
    pub params: Span,
    pub tag: Option<Span>,
}

/// A From or To value as the scanner keeps it: where the URI is and the tag. The URI itself is
/// parsed only when something needs its parts (hashing on From or To).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Party {
    pub uri: Span,
    /// Header parameters after the URI, without the leading `;`.
    pub params: Span,
    pub tag: Option<Span>,
}

impl Party {
    /// The URI's parts; `None` if it is not a well-formed URI.
    pub fn parse_uri(&self, buf: &[u8]) -> Option<Uri> {
        parse_uri(buf, self.uri.start(), self.uri.end())
    }
}

/// Parses one name-addr/addr-spec value in `buf[start..end]`, URI included.
pub fn parse_name_addr(buf: &[u8], start: usize, end: usize) -> Option<NameAddr> {
    let p = parse_party(buf, start, end)?;
    Some(NameAddr {
        uri: p.parse_uri(buf)?,
        params: p.params,
        tag: p.tag,
    })
}

/// Reads a From/To value `buf[start..end]` (trimmed) when it has the plain shape: an optional
/// display name (one quoted string, or tokens and spaces), `<sip:…>` with nothing unusual in
/// it, then plain parameters. `None` for anything else, which [`parse_party`] reads; on what
/// this accepts the two agree (a property test checks).
// Kept out of line: inlined into the scan loop it cost the INVITE ~50 instructions (callgrind).
#[inline(never)]
pub fn plain_party(buf: &[u8], start: usize, end: usize) -> Option<Party> {
    let mut i = start;
    if buf.get(i) == Some(&b'"') {
        i = quoted_end(buf, i, end)?;
    }
    // Tokens and spaces up to `<`; a `:` (an addr-spec) or anything else is left to the
    // general reader.
    i += buf
        .get(i..end)?
        .iter()
        .position(|&b| CLASS[usize::from(b)] & DISPLAY == 0)?;
    let (us, ue) = plain_angle_uri(buf, i, end)?;
    let mut p = Party {
        uri: Span::new(us, ue),
        params: Span::new(end, end),
        tag: None,
    };
    let ps = ue + 1;
    if ps == end {
        return Some(p);
    }
    p.params = Span::new(ps + 1, end);
    p.tag = plain_tag_param(buf, ps, end)?;
    Some(p)
}

/// The tag of a From or To value in the shape [`plain_party`] reads, without noting where its
/// URI and parameters are: `Some(None)` when it has no tag, `None` where `plain_party` would
/// not answer, or would and the display name is fifteen bytes or longer or has token bytes
/// other than letters, digits, `-`, `.` (the full readers' then). Where this answers,
/// `plain_party` gives the same tag (`sip::invariants` checks), so the scan accepts and
/// refuses exactly what it did when it read the whole value.
// Out of line: inlined, it cost each response's scan ~20 instructions it never runs.
#[inline(never)]
pub(crate) fn plain_tag(buf: &[u8], start: usize, end: usize) -> Option<Option<Span>> {
    // Words and spaces up to `<`, sixteen bytes at once; a quoted name is the full readers'.
    let head: &[u8; 16] = buf.get(start..start + 16)?.try_into().ok()?;
    let la = start + words_run16(head);
    if la >= end.min(start + 15) {
        return None;
    }
    let (_, ue) = plain_angle_uri(buf, la, end)?;
    if ue + 1 == end {
        return Some(None);
    }
    plain_tag_param(buf, ue + 1, end)
}

/// The `<sip:…>` of a plain name-addr, `<` at `la`: the URI's range (without the brackets). The
/// URI holds no blank, control byte or angle bracket.
#[inline(always)]
fn plain_angle_uri(buf: &[u8], la: usize, end: usize) -> Option<(usize, usize)> {
    const SIP: Pattern<1> = Pattern::new(b"sip:");
    if buf.get(la) != Some(&b'<') || !SIP.at(buf, la + 1) {
        return None;
    }
    let us = la + 1;
    let ue = find_stop(buf, us + 4, end, *b"<>");
    (ue < end && buf[ue] == b'>').then_some((us, ue))
}

/// The `tag` among the header parameters at `buf[ps..end]` (from their first `;`), if all are
/// plain; `Some(None)` when none is a tag.
#[inline(always)]
fn plain_tag_param(buf: &[u8], ps: usize, end: usize) -> Option<Option<Span>> {
    const TAG: Pattern<1> = Pattern::new(b";tag=");
    // Nearly always `;tag=…` and nothing else.
    if TAG.at(buf, ps) {
        let vs = ps + TAG.len;
        if find_stop(buf, vs, end, *b";\"<>") == end && vs < end {
            return Some(Some(Span::new(vs, end)));
        }
    }
    let mut tag = None;
    let stop = plain_params(buf, ps, end, |q| {
        if buf[q.name.0..q.name.1].eq_ignore_ascii_case(b"tag") {
            tag = q.value.map(|v| Span::new(v.0, v.1));
        }
    })?;
    (stop == end).then_some(tag)
}

/// Parses one name-addr/addr-spec value in `buf[start..end]`, leaving the URI unparsed (it
/// must have a scheme and no whitespace or angle brackets in it).
#[inline]
pub fn parse_party(buf: &[u8], start: usize, end: usize) -> Option<Party> {
    let (start, end) = trim(buf, start, end);
    plain_party(buf, start, end).or_else(|| general_party(buf, start, end))
}

/// [`parse_party`] for every shape the grammar allows, on a trimmed value.
pub(crate) fn general_party(buf: &[u8], start: usize, end: usize) -> Option<Party> {
    if start == end {
        return None;
    }
    let (uri_start, uri_end, after) = match find_laquot(buf, start, end)? {
        Some(lt) => {
            let gt = lt + memchr::memchr(b'>', &buf[lt..end])?;
            (lt + 1, gt, gt + 1)
        }
        None => {
            // addr-spec: the URI runs to the first `;` (what follows are header params, RFC
            // 3261 §20.10) or to whitespace.
            let stop = buf[start..end]
                .iter()
                .position(|&b| b == b';' || is_lws(b))
                .map_or(end, |p| start + p);
            (start, stop, stop)
        }
    };
    let uri = &buf[uri_start..uri_end];
    if memchr::memchr(b':', uri).is_none_or(|c| c == 0)
        || memchr::memchr3(b' ', b'\t', b'<', uri).is_some()
        || memchr::memchr2(b'\r', b'\n', uri).is_some()
    {
        return None;
    }
    let (ps, pe) = trim(buf, after, end);
    let mut p = Party {
        uri: Span::new(uri_start, uri_end),
        params: Span::new(pe, pe),
        tag: None,
    };
    if ps < pe {
        if buf[ps] != b';' {
            return None;
        }
        p.params = Span::new(ps + 1, pe);
        let mut tag = None;
        if !for_each_param(buf, ps + 1, pe, |q| {
            if buf[q.name.0..q.name.1].eq_ignore_ascii_case(b"tag") {
                tag = q.value.map(|v| Span::new(v.0, v.1));
            }
        }) {
            return None;
        }
        p.tag = tag;
    }
    Some(p)
}

/// Checks the display name before `<` and returns where `<` is: `Ok(None)` when the value is an
/// addr-spec. The display name must be a quoted string or tokens separated by whitespace
/// (RFC 4475 `baddn`, `quotbal`, `lwsdisp`). The outer `None` means malformed.
fn find_laquot(buf: &[u8], start: usize, end: usize) -> Option<Option<usize>> {
    let mut i = start;
    let mut saw_display = false;
    while i < end {
        match buf[i] {
            b'<' => return Some(Some(i)),
            b'"' => {
                i = quoted_end(buf, i, end)?;
                saw_display = true;
            }
            b if is_lws(b) => i += 1,
            b if super::lex::is_token(b) => {
                // A token may turn out to be the start of an addr-spec (`sip:…`).
                let tok_end = buf[i..end]
                    .iter()
                    .position(|&c| !super::lex::is_token(c))
                    .map_or(end, |p| i + p);
                if tok_end < end && buf[tok_end] == b':' && !saw_display {
                    return Some(None);
                }
                saw_display = true;
                i = tok_end;
            }
            _ => return None,
        }
    }
    if saw_display { None } else { Some(None) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Option<Uri> {
        parse_uri(s.as_bytes(), 0, s.len())
    }

    #[test]
    fn sip_uri_parts() {
        let s = "sip:alice:secret@[2001:db8::10]:5070;transport=udp;lr?Subject=x";
        let u = uri(s).unwrap();
        let b = s.as_bytes();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.unwrap().of(b), b"alice");
        assert_eq!(u.host.of(b), b"[2001:db8::10]");
        assert_eq!(u.host_bare(b), b"2001:db8::10");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.params.of(b), b"transport=udp;lr");
        assert!(u.has_param(b, b"lr") && u.has_headers);
    }

    #[test]
    fn user_may_hold_semicolons() {
        let s = "sip:user;par=u%40example.net@example.com";
        let u = uri(s).unwrap();
        assert_eq!(
            u.user.unwrap().of(s.as_bytes()),
            b"user;par=u%40example.net"
        );
        assert_eq!(u.host.of(s.as_bytes()), b"example.com");
    }

    #[test]
    fn bad_uris() {
        for s in [
            "sip:",
            "sip:@host",
            "sip:h:99999",
            "sip:h:x",
            "sip:a b@h",
            "nocolon",
            "sip:[::1",
        ] {
            assert!(uri(s).is_none(), "{s}");
        }
        assert_eq!(uri("isbn:2983792873").unwrap().scheme, Scheme::Other);
        let t = uri("tel:+15551234;phone-context=x").unwrap();
        assert_eq!(
            t.user.unwrap().of(b"tel:+15551234;phone-context=x"),
            b"+15551234"
        );
    }

    #[test]
    fn name_addr_forms() {
        let s = br#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#;
        let na = parse_name_addr(s, 0, s.len()).unwrap();
        assert_eq!(na.uri.host.of(s), b"example.com");
        assert_eq!(na.tag.unwrap().of(s), b"98asjd8");

        let s = b" sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n";
        let na = parse_name_addr(s, 0, s.len()).unwrap();
        assert_eq!(na.uri.user.unwrap().of(s), b"vivekg");
        assert_eq!(na.tag.unwrap().of(s), b"1918181833n");

        let s = b"caller<sip:caller@example.com>;tag=323";
        assert!(parse_name_addr(s, 0, s.len()).is_some());
    }

    #[test]
    fn malformed_name_addrs() {
        for s in [
            "Bell, Alexander <sip:a.g.bell@example.com>",
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson\" < sip:t.watson@example.org >",
            "<sip:a@b>;;",
            "Name only",
        ] {
            assert!(parse_name_addr(s.as_bytes(), 0, s.len()).is_none(), "{s}");
        }
    }
}
