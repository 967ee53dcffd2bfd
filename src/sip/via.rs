//! One Via header value: `SIP/2.0/UDP host:port;branch=…;received=…;rport`, with the linear
//! whitespace RFC 3261 allows anywhere between its parts (RFC 4475 `wsinv`).
#![forbid(unsafe_code)]

use super::Span;
use super::bytemask::{find_stop, skip_token};
use super::echo::Echo;
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
/// accepts the two agree (a property test checks). With `head`, a Via that starts as the last
/// one read through it is not read again up to the end of its sent-by.
#[inline(always)]
pub fn plain_via(
    buf: &[u8],
    start: usize,
    end: usize,
    head: Option<&mut ViaHead>,
) -> Option<(Via, usize)> {
    // Said so the compiler drops the bounds checks of the reads below `end`.
    if end > buf.len() {
        return None;
    }
    let recalled = head.as_deref().and_then(|h| h.recall(buf, start, end));
    let sent_by = match recalled {
        Some(sent_by) => sent_by,
        None => plain_sent_by(buf, start, end)?,
    };
    let (via, stop) = plain_via_after(buf, start, end, &sent_by)?;
    if recalled.is_none()
        && let Some(h) = head
    {
        h.remember(buf, start, &sent_by);
    }
    Some((via, stop))
}

/// A plain Via's head, `SIP/2.0/transport host[:port]`: its parts, and where it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SentBy {
    pub transport: Span,
    pub host: Span,
    pub port: Option<u16>,
    /// Just past the port, or the host where no port is written.
    pub end: usize,
}

/// Reads a plain Via's head (any case, a token transport, one space, a token host, a port of
/// up to five digits) from `start`.
#[inline(always)]
pub(super) fn plain_sent_by(buf: &[u8], start: usize, end: usize) -> Option<SentBy> {
    const SIP_2_0: Pattern<1> = Pattern::new(b"sip/2.0/");
    if !SIP_2_0.at(buf, start) {
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
    let (port, end) = if he < end && buf[he] == b':' {
        let (port, pe) = plain_port(buf, he + 1, end)?;
        (Some(port), pe)
    } else {
        (None, he)
    };
    Some(SentBy {
        transport: Span::new(ts, te),
        host: Span::new(hs, he),
        port,
        end,
    })
}

/// The head of the last plain Via read through it, `SIP/2.0/UDP host:port` (its bytes up to
/// the end of the sent-by, 17 to 48 of them: `SIP/2.0/UDP 10.0.0.1:5060` is 25), and where its
/// parts are. One upstream's Vias repeat their head byte for byte, and every response this
/// proxy forwards carries its own Via on top. The scan keeps one for the top Via
/// ([`super::ScanMemory`]), the next hop one for a response's second Via.
#[derive(Clone, Copy, Debug, Default)]
pub struct ViaHead {
    head: Echo,
    /// Offsets from the head's start.
    transport: (u8, u8),
    host: (u8, u8),
    port: Option<u16>,
}

impl ViaHead {
    /// The remembered head, placed at `start`, when `buf[start..end]` (`end` within `buf`)
    /// starts with the same bytes followed by a parameter, another value or the end: then a
    /// fresh read of those bytes stops where the remembered one did and finds the same parts.
    #[inline(always)]
    pub(super) fn recall(&self, buf: &[u8], start: usize, end: usize) -> Option<SentBy> {
        let after = start + self.head.len();
        if after > end
            || (after < end && !matches!(buf.get(after), Some(b';' | b',')))
            || !self.head.at(buf, start)
        {
            return None;
        }
        let at = |(s, e): (u8, u8)| Span::new(start + usize::from(s), start + usize::from(e));
        Some(SentBy {
            transport: at(self.transport),
            host: at(self.host),
            port: self.port,
            end: after,
        })
    }

    /// Keeps the head `sent_by` read at `start`, if its length suits the compare; whether it
    /// did.
    #[inline(always)]
    pub(super) fn remember(&mut self, buf: &[u8], start: usize, sent_by: &SentBy) -> bool {
        // Shorter heads are rare (`SIP/2.0/UDP a:1`), and reading them costs little.
        let n = sent_by.end - start;
        if n <= 16 || !self.head.keep(buf, start, n) {
            return false;
        }
        let off = |s: Span| ((s.start() - start) as u8, (s.end() - start) as u8);
        self.transport = off(sent_by.transport);
        self.host = off(sent_by.host);
        self.port = sent_by.port;
        true
    }
}

/// The plain Via at `buf[start..end]` whose head `sent_by` has read: its parameters read, and
/// where they stop (`end` or a `,`).
#[inline(always)]
pub(super) fn plain_via_after(
    buf: &[u8],
    start: usize,
    end: usize,
    sent_by: &SentBy,
) -> Option<(Via, usize)> {
    let mut via = Via {
        value: Span::new(start, end),
        transport: sent_by.transport,
        host: sent_by.host,
        port: sent_by.port,
        branch: None,
        received: None,
        rport: None,
        rport_param: None,
    };
    let stop = plain_via_params(buf, sent_by.end, end, &mut via)?;
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
    match plain_via(buf, start, end, None) {
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

    #[test]
    fn a_remembered_head_is_recalled_only_for_the_same_bytes() {
        // Each Via as the value of a header line, with the rest of a message after it.
        let vias = [
            "SIP/2.0/UDP 127.0.0.1:7202;branch=z9hG4bK-1-1-0",
            "SIP/2.0/UDP 127.0.0.1:7202;branch=z9hG4bK-1-2-0;rport",
            "SIP/2.0/UDP 127.0.0.1:7202,SIP/2.0/UDP 10.0.0.1",
            "SIP/2.0/UDP 127.0.0.1:7202",
            "SIP/2.0/UDP 127.0.0.1:72021;branch=z9hG4bK-1",
            "SIP/2.0/UDP 127.0.0.1:7203;branch=z9hG4bK-1",
            "SIP/2.0/UDP 127.0.0.2:7202;branch=z9hG4bK-1",
            "SIP/2.0/TCP 127.0.0.1:7202;branch=z9hG4bK-1",
            "sip/2.0/udp 127.0.0.1:7202;branch=z9hG4bK-1",
            "SIP/2.0/UDP 127.0.0.1:7202 ;branch=z9hG4bK-1",
            "SIP/2.0/UDP 127.0.0.1:7202;branch=z9hG4bK-1",
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-1",
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-2",
            "SIP/2.0/UDP proxy-7.edge.example.net:5060;branch=z9hG4bK-1",
            "SIP/2.0/UDP proxy-7.edge.example.net:5060;branch=z9hG4bK-2",
            "SIP/2.0/UDP a-very-long-host-name.edge.example.net:5060;branch=z9hG4bK-1",
            "SIP/2.0/UDP a-very-long-host-name.edge.example.net:5060;branch=z9hG4bK-2",
            "SIP/2.0/UDP h:5;branch=1",
        ];
        let mut head = ViaHead::default();
        let mut recalled = Vec::new();
        for v in vias {
            let buf = format!(
                "Via: {v}\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
            );
            let buf = buf.as_bytes();
            let (start, end) = (5, 5 + v.len());
            if head.recall(buf, start, end).is_some() {
                recalled.push(v);
            }
            let fresh = plain_via(buf, start, end, None);
            assert_eq!(plain_via(buf, start, end, Some(&mut head)), fresh, "{v}");
        }
        assert_eq!(
            recalled,
            [
                "SIP/2.0/UDP 127.0.0.1:7202;branch=z9hG4bK-1-2-0;rport",
                "SIP/2.0/UDP 127.0.0.1:7202,SIP/2.0/UDP 10.0.0.1",
                "SIP/2.0/UDP 127.0.0.1:7202",
                "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-2",
                "SIP/2.0/UDP proxy-7.edge.example.net:5060;branch=z9hG4bK-2",
            ]
        );
    }
}
