//! One Via header value: `SIP/2.0/UDP host:port;branch=…;received=…;rport`, with the linear
//! whitespace RFC 3261 allows anywhere between its parts (RFC 4475 `wsinv`).
#![forbid(unsafe_code)]

use super::Span;
use super::bytemask::{find_stop, skip_token};
use super::lex::{Param, Pattern, for_each_param, is_lws, is_token, parse_u32, plain_port, trim};

/// The parts of a Via value routing needs, as ranges of the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via {
    /// The whole value (`SIP/2.0/UDP …;branch=…`), trimmed.
    pub value: Span,
    pub transport: Span,
    /// The sent-by host; an IPv6 reference keeps its brackets.
    pub host: Span,
    pub port: Option<u16>,
    pub branch: Option<Span>,
    pub received: Option<Span>,
    /// `Some(None)` for a bare `;rport`, `Some(Some(p))` for `;rport=p`.
    pub rport: Option<Option<u16>>,
    /// Where the `rport` parameter (name and any value) sits, to fill in its value.
    pub rport_param: Option<Span>,
}

impl Via {
    /// Keeps `p` if it is a parameter routing reads (branch, received, rport); `false` for an
    /// rport value that is not a port.
    fn take_param(&mut self, buf: &[u8], p: Param) -> bool {
        let name = &buf[p.name.0..p.name.1];
        let value = p.value.map(|(a, b)| Span::new(a, b));
        if name.eq_ignore_ascii_case(b"branch") {
            self.branch = value;
        } else if name.eq_ignore_ascii_case(b"received") {
            self.received = value;
        } else if name.eq_ignore_ascii_case(b"rport") {
            self.rport_param = Some(Span::new(p.name.0, p.value.map_or(p.name.1, |v| v.1)));
            self.rport = match value.map(|v| parse_u32(v.of(buf)).filter(|&p| p <= 65535)) {
                None => Some(None),
                Some(Some(port)) => Some(Some(port as u16)),
                Some(None) => return false,
            };
        }
        true
    }

    /// The sent-by host without IPv6 brackets.
    pub fn host_bare<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        super::lex::unbracket(self.host.of(buf))
    }
}

fn skip_lws(s: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && is_lws(s[i]) {
        i += 1;
    }
    i
}

fn token_at(s: &[u8], i: usize, end: usize) -> usize {
    s[i..end]
        .iter()
        .position(|&b| !is_token(b))
        .map_or(end, |p| i + p)
}

/// Reads the first Via value of a header value `buf[start..end]` (trimmed) when it has the plain
/// shape, `SIP/2.0/UDP host[:port];name=value…` with no whitespace inside and no quotes:
/// the Via and where it ends (`end`, or the `,` before the next value). `None` for anything
/// else, which the general path (split at commas, then [`parse_via`]) reads; on what this
/// accepts the two agree (a property test checks).
#[inline(always)]
pub fn plain_via(buf: &[u8], start: usize, end: usize) -> Option<(Via, usize)> {
    const SIP_2_0: Pattern<1> = Pattern::new(b"sip/2.0/");
    // Said so the compiler drops the bounds checks of the reads below `end`.
    if end > buf.len() || !SIP_2_0.at(buf, start) {
        return None;
    }
    const UDP: Pattern<1> = Pattern::new(b"udp ");
    let ts = start + 8;
    // Nearly every Via says UDP: its four bytes in one compare, not a token search.
    let te = if UDP.within(buf, ts, end) {
        ts + 3
    } else {
        skip_token(buf, ts, end)
    };
    if te == ts || te >= end || buf[te] != b' ' {
        return None;
    }
    let hs = te + 1;
    let he = skip_token(buf, hs, end);
    if he == hs {
        return None;
    }
    let mut via = Via {
        value: Span::new(start, end),
        transport: Span::new(ts, te),
        host: Span::new(hs, he),
        port: None,
        branch: None,
        received: None,
        rport: None,
        rport_param: None,
    };
    let mut i = he;
    if i < end && buf[i] == b':' {
        let (port, pe) = plain_port(buf, i + 1, end)?;
        via.port = Some(port);
        i = pe;
    }
    let stop = plain_via_params(buf, i, end, &mut via)?;
    via.value = Span::new(start, stop);
    Some((via, stop))
}

/// The `;name[=value]` parameters of a plain Via from `i` on: the three routing reads found by
/// their spelling, others by a token run; a value runs to the next `;` or `,`. Where they stop
/// (`end` or a `,`); `None` at anything the general reader must judge (blanks, quotes, angle
/// brackets, an empty name, an rport that is not a port).
#[inline(always)]
fn plain_via_params(buf: &[u8], mut i: usize, end: usize, via: &mut Via) -> Option<usize> {
    const BRANCH: Pattern<1> = Pattern::new(b";branch=");
    const RECEIVED: Pattern<2> = Pattern::new(b";received=");
    const RPORT: Pattern<1> = Pattern::new(b";rport");
    let value_end = |vs: usize| find_stop(buf, vs, end, *b";,\"<>");
    while i < end {
        if buf[i] != b';' {
            return (buf[i] == b',').then_some(i);
        }
        if BRANCH.within(buf, i, end) {
            let vs = i + BRANCH.len;
            i = value_end(vs);
            via.branch = Some(Span::new(vs, i));
        } else if RECEIVED.within(buf, i, end) {
            let vs = i + RECEIVED.len;
            i = value_end(vs);
            via.received = Some(Span::new(vs, i));
        } else if RPORT.within(buf, i, end)
            && (i + RPORT.len == end || matches!(buf[i + RPORT.len], b'=' | b';' | b','))
        {
            let mut e = i + RPORT.len;
            via.rport = Some(None);
            if e < end && buf[e] == b'=' {
                let (port, pe) = plain_port(buf, e + 1, end)?;
                via.rport = Some(Some(port));
                e = pe;
            }
            via.rport_param = Some(Span::new(i + 1, e));
            i = e;
        } else {
            let ns = i + 1;
            let ne = skip_token(buf, ns, end);
            if ne == ns {
                return None;
            }
            let value = (ne < end && buf[ne] == b'=').then(|| (ne + 1, value_end(ne + 1)));
            // The three routing reads land here too where a pattern could not look (the end
            // of the datagram): the general reader's own rule keeps them.
            if !via.take_param(
                buf,
                Param {
                    name: (ns, ne),
                    value,
                },
            ) {
                return None;
            }
            i = value.map_or(ne, |v| v.1);
        }
    }
    Some(i)
}

/// Parses one Via value in `buf[start..end]` (already split at commas). `None` if malformed.
#[inline]
pub fn parse_via(buf: &[u8], start: usize, end: usize) -> Option<Via> {
    let (start, end) = trim(buf, start, end);
    match plain_via(buf, start, end) {
        Some((via, stop)) if stop == end => Some(via),
        _ => general_via(buf, start, end),
    }
}

/// [`parse_via`] for every shape the grammar allows, on a trimmed value.
pub(crate) fn general_via(buf: &[u8], start: usize, end: usize) -> Option<Via> {
    let s = buf;
    // sent-protocol: name / version / transport, LWS allowed around each slash.
    let mut i = start;
    let mut parts = [(0usize, 0usize); 3];
    for (n, part) in parts.iter_mut().enumerate() {
        if n > 0 {
            i = skip_lws(s, i, end);
            if s.get(i) != Some(&b'/') || i >= end {
                return None;
            }
            i = skip_lws(s, i + 1, end);
        }
        let e = token_at(s, i, end);
        if e == i {
            return None;
        }
        *part = (i, e);
        i = e;
    }
    if !s[parts[0].0..parts[0].1].eq_ignore_ascii_case(b"SIP") {
        return None;
    }
    let after_proto = i;
    i = skip_lws(s, i, end);
    if i == after_proto || i >= end {
        return None;
    }
    // sent-by: host[:port]
    let host_start = i;
    let host_end = if s[i] == b'[' {
        i + s[i..end].iter().position(|&b| b == b']')? + 1
    } else {
        s[i..end]
            .iter()
            .position(|&b| b == b':' || b == b';' || is_lws(b))
            .map_or(end, |p| i + p)
    };
    if host_end == host_start {
        return None;
    }
    let mut via = Via {
        value: Span::new(start, end),
        transport: Span::new(parts[2].0, parts[2].1),
        host: Span::new(host_start, host_end),
        port: None,
        branch: None,
        received: None,
        rport: None,
        rport_param: None,
    };
    i = skip_lws(s, host_end, end);
    if i < end && s[i] == b':' {
        let ps = skip_lws(s, i + 1, end);
        let pe = s[ps..end]
            .iter()
            .position(|&b| !b.is_ascii_digit())
            .map_or(end, |p| ps + p);
        via.port = Some(parse_u32(&s[ps..pe]).filter(|&p| p <= 65535)? as u16);
        i = skip_lws(s, pe, end);
    }
    if i < end {
        if s[i] != b';' {
            return None;
        }
        let mut bad = false;
        let ok = for_each_param(buf, i + 1, end, |p| bad |= !via.take_param(buf, p));
        if !ok || bad {
            return None;
        }
    }
    Some(via)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_via_with_lws_everywhere() {
        let s = b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw";
        let v = parse_via(s, 0, s.len()).unwrap();
        assert_eq!(v.transport.of(s), b"UDP");
        assert_eq!(v.host.of(s), b"192.0.2.2");
        assert_eq!(v.branch.unwrap().of(s), b"390skdjuw");
        assert_eq!(v.port, None);
    }

    #[test]
    fn ipv6_port_rport_received() {
        let s =
            b"SIP/2.0/UDP [2001:db8::9:1]:5070;received=2001:db8::9:255;branch=z9hG4bKas3;rport";
        let v = parse_via(s, 0, s.len()).unwrap();
        assert_eq!(v.host_bare(s), b"2001:db8::9:1");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.received.unwrap().of(s), b"2001:db8::9:255");
        assert_eq!(v.rport, Some(None));
        let s = b"SIP/2.0/UDP h ; rport=7000";
        assert_eq!(parse_via(s, 0, s.len()).unwrap().rport, Some(Some(7000)));
    }

    #[test]
    fn malformed_vias() {
        for s in [
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "HTTP/1.1/TCP host",
            "SIP/2.0/UDP host;;",
            // Found by the property test: a trailing `;` hid a malformed second Via.
            "SIP/2.0/UDP host:5060;",
            "SIP/2.0/UDP h;branch=z9hG4bK1;",
            "SIP/2.0/UDP host:70000",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDPhost",
        ] {
            assert!(parse_via(s.as_bytes(), 0, s.len()).is_none(), "{s}");
        }
    }
}
