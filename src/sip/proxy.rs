//! The stateless-proxy rules of RFC 3261 §16.3–16.7 and §16.11 as pure functions: validate an
//! incoming request, decide what the rules alone dictate (reply locally, pop our Route, follow
//! the next Route), and produce the bytes to forward — Max-Forwards decremented, our Via on top
//! with a deterministic branch, `received`/`rport` filled in (RFC 3581), Record-Route added —
//! or, for a response, strip our Via and find the next hop. Choosing a destination is not done
//! here; that is `dispatch`'s job.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use super::Span;
use super::emit::{IpText, Out, Overflow, hash64};
use super::lex::{same_bytes, unbracket};
use super::scan::{Message, Method, StartLine};
use super::uri::{Scheme, Uri, parse_name_addr};

use super::next_hop::response_target_with;
pub use super::next_hop::{LastHop, response_target};

/// RFC 3261's magic cookie: a branch starting with it is unique per transaction.
pub const COOKIE: &[u8] = b"z9hG4bK";
/// Max-Forwards added to a request that has none (RFC 3261 §16.6 step 3).
pub const DEFAULT_MAX_FORWARDS: u8 = 70;

/// Who this proxy is: what it writes into Via and Record-Route, and which addresses are its own
/// (for loose routing and for checking that a response's top Via is ours).
#[derive(Clone, Debug)]
pub struct Identity {
    /// Host as written in Via/Record-Route: `192.0.2.1`, `[2001:db8::1]` or a name.
    pub host: String,
    pub port: u16,
    /// Every (host, port) that means "this proxy": listen addresses and the advertised one.
    /// Hosts are stored without IPv6 brackets, lowercase.
    pub own: Vec<(String, u16)>,
    /// Our Via up to its branch value, and our Record-Route line: written into every forwarded
    /// request, so made once, not per message from host and port.
    via_prefix: String,
    record_route: String,
}

impl Identity {
    pub fn new(host: &str, port: u16, listen: &[SocketAddr]) -> Self {
        let bare = |h: &str| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        };
        let mut own = vec![(bare(host), port)];
        for a in listen {
            own.push((a.ip().to_string().to_ascii_lowercase(), a.port()));
        }
        Self {
            host: host.to_owned(),
            port,
            own,
            via_prefix: format!("Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK"),
            record_route: format!("Record-Route: <sip:{host}:{port};lr>\r\n"),
        }
    }

    /// True if `host` (without brackets) and `port` (default 5060) name this proxy.
    // Inlined: every message asks (a request's top Via for loops, a response's for being
    // ours), and the call cost more than the compare.
    #[inline(always)]
    pub fn is_own(&self, host: &[u8], port: Option<u16>) -> bool {
        let port = port.unwrap_or(5060);
        // Every response's top Via is ours, and hosts are nearly always written as we write
        // them: the exact compare answers those, far cheaper than folding case byte by byte.
        for (h, p) in &self.own {
            if *p == port && (same_bytes(h.as_bytes(), host) || same_folded(h, host)) {
                return true;
            }
        }
        false
    }

    /// The Route entry our Record-Route becomes, `<sip:host:port;lr>`.
    fn route_entry(&self) -> &[u8] {
        let rr = self.record_route.as_bytes();
        rr.get("Record-Route: ".len()..rr.len() - 2)
            .unwrap_or_default()
    }

    fn is_own_uri(&self, buf: &[u8], uri: &Uri) -> bool {
        matches!(uri.scheme, Scheme::Sip | Scheme::Sips)
            && self.is_own(uri.host_bare(buf), uri.port)
    }
}

/// A reply the rules require instead of forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalReply {
    /// 200 to an OPTIONS addressed to the proxy itself.
    Options200,
    /// 416: the Request-URI scheme is not one a SIP proxy can route (RFC 4475 unkscm).
    UnsupportedScheme,
    /// 420 listing the Proxy-Require option tags (the proxy supports no extensions).
    BadExtension(Span),
    /// 483: Max-Forwards reached 0.
    TooManyHops,
    /// 482: the request carries our own Via on top, so we sent it to ourselves.
    LoopDetected,
}

/// What to do with a request that passed the scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestPlan {
    Forward(Forward),
    Reply(LocalReply),
    /// The rules ask for a reply but the request is an ACK, which is never answered.
    DropAck,
    /// The message is a response; nothing to plan.
    NotARequest,
}

/// How to forward a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The top Route is ours: remove it.
    pub pop_route: bool,
    /// After popping, a Route entry names the next hop (RFC 3261 §16.6 step 7); the router
    /// must send there instead of dispatching.
    pub route_target: Option<Uri>,
    /// Max-Forwards to write (already decremented, or the default for a request without one).
    pub max_forwards: u8,
    /// Whether the request had a Max-Forwards header to rewrite.
    pub has_max_forwards: bool,
    /// 0 normally; 1, 2, … for each copy of a request forked in parallel, so every branch
    /// gets its own Via branch.
    pub fork: u8,
}

/// Applies RFC 3261 §16.3 (validation) and §16.4 (route preprocessing) to a request.
// Inlined into the verdict, which builds its plan in place rather than copying it back.
#[inline]
pub fn plan_request(msg: &Message<'_>, me: &Identity) -> RequestPlan {
    let StartLine::Request { method, uri, .. } = msg.start else {
        return RequestPlan::NotARequest;
    };
    let reply = |r| {
        if method == Method::Ack {
            RequestPlan::DropAck
        } else {
            RequestPlan::Reply(r)
        }
    };
    if !matches!(uri.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel) {
        return reply(LocalReply::UnsupportedScheme);
    }
    let buf = msg.buf;
    let routes = msg.routes.as_slice();
    let pop_route = routes.first().is_some_and(|r| {
        // In-dialog requests come back with the entry our Record-Route wrote, spelled as we
        // wrote it: ours without parsing it (a parse and a host compare cost ~250).
        same_bytes(r.of(buf), me.route_entry())
            || parse_name_addr(buf, r.start(), r.end())
                .is_some_and(|na| me.is_own_uri(buf, &na.uri))
    });
    let next_route = if pop_route {
        routes.get(1)
    } else {
        routes.first()
    };
    let route_target = next_route
        .and_then(|r| parse_name_addr(buf, r.start(), r.end()))
        .map(|na| na.uri);
    // An OPTIONS to this proxy itself (a keepalive) is answered; its Request-URI is parsed
    // only for that.
    if method == Method::Options
        && route_target.is_none()
        && msg
            .request_uri()
            .is_some_and(|u| u.user.is_none() && me.is_own_uri(buf, &u))
    {
        return reply(LocalReply::Options200);
    }
    // RFC 3261 §16.3 step 4, for the loop a stateless proxy can see: a request whose top Via is
    // ours came straight back (a destination that is this proxy). Longer loops through other
    // proxies end at Max-Forwards (483).
    if me.is_own(msg.via.host_bare(buf), msg.via.port) {
        return reply(LocalReply::LoopDetected);
    }
    let (max_forwards, has_max_forwards) = match msg.max_forwards {
        Some((0, _)) => return reply(LocalReply::TooManyHops),
        Some((n, _)) => (n - 1, true),
        None => (DEFAULT_MAX_FORWARDS, false),
    };
    if let Some(tags) = msg.proxy_require {
        return reply(LocalReply::BadExtension(tags));
    }
    RequestPlan::Forward(Forward {
        pop_route,
        route_target,
        max_forwards,
        has_max_forwards,
        fork: 0,
    })
}

/// The branch of our Via: a hash of the incoming top Via branch when it carries the magic
/// cookie, else of the RFC 2543 transaction fields (RFC 3261 §16.11). Retransmissions, and a
/// CANCEL or non-2xx ACK of an INVITE, get the same branch as the INVITE.
pub fn branch_hash(msg: &Message<'_>) -> u64 {
    let buf = msg.buf;
    match msg.via.branch.map(|b| b.of(buf)) {
        Some(b) if b.len() > COOKIE.len() && b.starts_with(COOKIE) => hash64(&[b]),
        _ => {
            let ruri = match msg.start {
                StartLine::Request { uri, .. } => uri.whole.of(buf),
                StartLine::Response { .. } => &[],
            };
            let from_tag = msg.from_tag().map_or(&[][..], |t| t.of(buf));
            let mut cseq = [0u8; 10];
            let mut o = Out::new(&mut cseq);
            let _ = o.put_u32(msg.cseq);
            let n = o.len();
            hash64(&[
                msg.call_id(),
                from_tag,
                ruri,
                msg.via.host.of(buf),
                &cseq[..n],
            ])
        }
    }
}

/// One change to the incoming bytes: at `at`, drop `del` bytes and write `ins`.
#[derive(Clone, Copy)]
enum Ins {
    None,
    Headers,
    RportValue,
    Received,
    ReceivedValue,
    MaxForwards,
}

/// Writes the request to forward into `out` and returns its length.
pub fn write_request(
    msg: &Message<'_>,
    fwd: &Forward,
    record_route: bool,
    me: &Identity,
    src: SocketAddr,
    out: &mut [u8],
) -> Result<usize, Overflow> {
    write_request_from(msg, fwd, record_route, me, src, &IpText::new(src.ip()), out)
}

/// [`write_request`] with the text of `src`'s address made already (`IpText::new(src.ip())`):
/// a shard keeps the last one, as requests mostly come from the same few upstreams.
pub fn write_request_from(
    msg: &Message<'_>,
    fwd: &Forward,
    record_route: bool,
    me: &Identity,
    src: SocketAddr,
    src_ip: &IpText,
    out: &mut [u8],
) -> Result<usize, Overflow> {
    let buf = msg.buf;
    let via = &msg.via;
    // RFC 3581 §4: fill a bare rport and then always add received; RFC 3261 §18.2.1: add
    // received when the sent-by host is not the source address. A `received` already there
    // that names another address is corrected (with or without brackets, RFC 5118 §4.5).
    let src_differs = !same_bytes(via.host_bare(buf), src_ip.as_bytes());
    let bare_rport = matches!(via.rport, Some(None));
    let received = match via.received {
        _ if !(bare_rport || src_differs) => None,
        None => Some((via.value.end(), 0, Ins::Received)),
        Some(r) if !same_bytes(unbracket(r.of(buf)), src_ip.as_bytes()) => {
            Some((r.start(), r.len(), Ins::ReceivedValue))
        }
        Some(_) => None,
    };
    let max_forwards = match msg.max_forwards {
        Some((_, span)) if fwd.has_max_forwards => Some(span),
        _ => None,
    };
    let end = usize::from(msg.body.end);
    let mut o = Out::new(out);
    // The usual request (its Via kept as it is, its Max-Forwards decremented, no Route of ours
    // to pop) in one pass, without the general list of edits below.
    if !bare_rport
        && received.is_none()
        && !fwd.pop_route
        && let Some(mf) = max_forwards
        && mf.start() >= msg.headers_start
    {
        o.put(&buf[..msg.headers_start])?;
        put_headers(&mut o, msg, fwd, record_route, me)?;
        o.put(&buf[msg.headers_start..mf.start()])?;
        o.put_u8(fwd.max_forwards)?;
        o.put(&buf[mf.end()..end])?;
        return Ok(o.len());
    }
    let mut edits: [(usize, usize, Ins); 5] = [(usize::MAX, 0, Ins::None); 5];
    let mut n = 0;
    // Kept in order as they are added: they nearly always come in order already (our Via
    // first, the top Via's parameters, then Max-Forwards), so each costs one compare, not a
    // sort call.
    let mut edit = |at: usize, del: usize, ins: Ins| {
        let mut i = n;
        while i > 0 && edits[i - 1].0 > at {
            edits[i] = edits[i - 1];
            i -= 1;
        }
        edits[i] = (at, del, ins);
        n += 1;
    };
    edit(msg.headers_start, 0, Ins::Headers);
    if let (true, Some(p)) = (bare_rport, via.rport_param) {
        edit(p.end(), 0, Ins::RportValue);
    }
    if let Some((at, del, ins)) = received {
        edit(at, del, ins);
    }
    if let Some(span) = max_forwards {
        edit(span.start(), span.len(), Ins::MaxForwards);
    }
    if fwd.pop_route {
        let r = &msg.routes;
        let (at, del) = if r.in_first_header > 1 {
            let s = r.as_slice();
            (s[0].start(), s[1].start() - s[0].start())
        } else {
            (r.first_header.line.start(), r.first_header.line.len())
        };
        edit(at, del, Ins::None);
    }
    let edits = &edits[..n];

    let mut pos = 0;
    for &(at, del, ins) in edits.iter() {
        o.put(&buf[pos..at])?;
        match ins {
            Ins::None => {}
            Ins::Headers => put_headers(&mut o, msg, fwd, record_route, me)?,
            Ins::RportValue => {
                o.put(b"=")?;
                o.put_u32(u32::from(src.port()))?;
            }
            Ins::Received => {
                o.put(b";received=")?;
                o.put(src_ip.as_bytes())?;
            }
            Ins::ReceivedValue => o.put(src_ip.as_bytes())?,
            Ins::MaxForwards => o.put_u8(fwd.max_forwards)?,
        }
        pos = at + del;
    }
    o.put(&buf[pos..end])?;
    Ok(o.len())
}

/// What a forwarded request gets at the start of its headers: our Via (with its branch), our
/// Record-Route, a Max-Forwards where it had none.
#[inline(always)]
fn put_headers(
    o: &mut Out<'_>,
    msg: &Message<'_>,
    fwd: &Forward,
    record_route: bool,
    me: &Identity,
) -> Result<(), Overflow> {
    o.put(me.via_prefix.as_bytes())?;
    o.put_hex64(branch_hash(msg) ^ u64::from(fwd.fork).wrapping_mul(0x9e37_79b9_7f4a_7c15))?;
    o.put(b"\r\n")?;
    if record_route {
        o.put(me.record_route.as_bytes())?;
    }
    if !fwd.has_max_forwards {
        o.put(b"Max-Forwards: ")?;
        o.put_u32(u32::from(fwd.max_forwards))?;
        o.put(b"\r\n")?;
    }
    Ok(())
}

/// `host` is our host `h` in another case (rare: out of line).
#[inline(never)]
fn same_folded(h: &str, host: &[u8]) -> bool {
    h.as_bytes().eq_ignore_ascii_case(host)
}

/// Why a response is not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseDrop {
    #[error("top Via is not ours")]
    NotOurVia,
    #[error("no Via left after ours (the response was for us)")]
    ForUs,
    #[error("next Via is malformed")]
    BadNextVia,
    #[error("next Via host is not an IP address")]
    Unresolvable,
    #[error("next hop is a broadcast, multicast or unspecified address")]
    BadNextHop,
    #[error(transparent)]
    Overflow(#[from] Overflow),
}

/// Checks that the top Via is ours, removes it, and writes the response into `out`. Returns
/// the length and where to send it. (The data plane sends the received bytes around our Via
/// instead: [`response_cut`].)
pub fn write_response(
    msg: &Message<'_>,
    me: &Identity,
    out: &mut [u8],
) -> Result<(usize, SocketAddr), ResponseDrop> {
    let ((cut_start, cut_end), target) = response_cut(msg, me, &mut LastHop::default())?;
    let buf = msg.wire();
    let mut o = Out::new(out);
    o.put(&buf[..cut_start])?;
    o.put(&buf[cut_end..])?;
    Ok((o.len(), target))
}

/// What relaying a response takes: the bytes of [`Message::wire`] to leave out (our Via, with
/// its line if it has one to itself), and where to send the rest. Checks that the top Via is
/// ours.
pub fn response_cut(
    msg: &Message<'_>,
    me: &Identity,
    last: &mut LastHop,
) -> Result<((usize, usize), SocketAddr), ResponseDrop> {
    if !me.is_own(msg.via.host_bare(msg.buf), msg.via.port) {
        return Err(ResponseDrop::NotOurVia);
    }
    let target = response_target_with(msg, last)?;
    let cut = match msg.via_header_next {
        Some(next) => (msg.via.value.start(), next),
        None => (msg.via_header.line.start(), msg.via_header.line.end()),
    };
    Ok((cut, target))
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
