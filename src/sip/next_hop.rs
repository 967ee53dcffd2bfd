//! Where a response goes next: the second Via's `received` (or sent-by host) and its `rport`
//! value (or sent-by port, or 5060) — RFC 3261 §18.2.2, RFC 3581 §5. Every relayed response
//! reads it, so the plain shape (`SIP/2.0/UDP 192.0.2.1:5060;branch=…`, a dotted-quad
//! address, token parameters) is read in one pass that keeps only what the next hop needs;
//! anything else goes through the general Via reader.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::Span;
use super::lex::same_bytes;
use super::proxy::ResponseDrop;
use super::scan::Message;
use super::via::{SentBy, ViaHead, parse_via, plain_sent_by, plain_via_after};

/// Where a response goes: the second Via's `received` (or sent-by host) and its `rport` value
/// (or sent-by port, or 5060) — RFC 3261 §18.2.2, RFC 3581 §5.
pub fn response_target(msg: &Message<'_>) -> Result<SocketAddr, ResponseDrop> {
    response_target_with(msg, &mut LastHop::default())
}

/// [`response_target`] remembering the last address it read in `last`.
pub(super) fn response_target_with(
    msg: &Message<'_>,
    last: &mut LastHop,
) -> Result<SocketAddr, ResponseDrop> {
    let second = msg.via_second.ok_or(ResponseDrop::ForUs)?;
    let (ip, port) = match plain_next_hop(msg.buf, second, last) {
        Some((ip, port)) => (IpAddr::V4(ip), port),
        None => general_next_hop(msg.buf, second)?,
    };
    let bad = match ip {
        IpAddr::V4(a) => a.is_broadcast() || a.is_unspecified() || a.is_multicast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    };
    if bad {
        return Err(ResponseDrop::BadNextHop);
    }
    Ok(SocketAddr::new(ip, port))
}

/// The next hop of any Via value the grammar allows, through the full Via reader.
fn general_next_hop(buf: &[u8], via: Span) -> Result<(IpAddr, u16), ResponseDrop> {
    let v = parse_via(buf, via.start(), via.end()).ok_or(ResponseDrop::BadNextVia)?;
    let host = match v.received {
        Some(r) => r.of(buf),
        None => v.host_bare(buf),
    };
    let ip = parse_ip(host).ok_or(ResponseDrop::Unresolvable)?;
    let port = match v.rport {
        Some(Some(p)) => p,
        _ => v.port.unwrap_or(5060),
    };
    Ok((ip, port))
}

/// The next hop of a Via value in the plain shape whose target is a dotted-quad address: the
/// head [`plain_sent_by`] reads (the scan's reader of a top Via), then `;name[=value]`
/// parameters, read as the scan reads a top Via's ([`plain_via_after`]). `None` for anything
/// else, including what the general reader refuses; where this answers, the general reader
/// gives the same address (a unit test checks, with one `last` across all cases). The Via's
/// head up to the end of its sent-by is not read again when it is the last one's
/// ([`ViaHead`]).
pub(super) fn plain_next_hop(buf: &[u8], via: Span, last: &mut LastHop) -> Option<(Ipv4Addr, u16)> {
    let (start, end) = (via.start(), via.end());
    if end > buf.len() {
        return None;
    }
    // The sent-by of the last response's Via, with its address, when this one starts with the
    // same bytes.
    let (sent_by, known) = match last.same_sent_by(buf, start, end) {
        Some((sent_by, ip)) => (sent_by, Some(ip)),
        None => (plain_sent_by(buf, start, end)?, None),
    };
    // Where the address is written, if not in the sent-by: `received`; the port: `rport`.
    // The parameters are read as the scan reads a top Via.
    let (via, stop) = plain_via_after(buf, start, end, &sent_by)?;
    if stop != end {
        return None;
    }
    let port = via.rport.flatten().or(sent_by.port).unwrap_or(5060);
    let ip = match (via.received, known) {
        (Some(received), _) => last.address(received.of(buf))?,
        (None, Some(ip)) => ip,
        (None, None) => {
            let ip = last.address(sent_by.host.of(buf))?;
            if last.head.remember(buf, start, &sent_by) {
                last.head_ip = Some(ip);
            }
            ip
        }
    };
    Some((ip, port))
}

/// What the shard remembers of the responses it relayed: the last dotted-quad address text a
/// next hop was read from, and the address; and the head of the last Via whose sent-by was
/// such an address (`SIP/2.0/UDP 192.0.2.1:5060`, a [`ViaHead`]), with that address.
/// Responses go back to a few upstreams, mostly one after another to the same: reading the
/// address cost ~115 instructions a response, the sent-by ~110, comparing the text ~10.
#[derive(Clone, Copy, Debug, Default)]
pub struct LastHop {
    text: [u8; 15],
    len: u8,
    ip: Option<Ipv4Addr>,
    head: ViaHead,
    /// The address `head`'s host says.
    head_ip: Option<Ipv4Addr>,
}

impl LastHop {
    /// The dotted-quad address `text` is exactly, or `None`.
    fn address(&mut self, text: &[u8]) -> Option<Ipv4Addr> {
        let len = usize::from(self.len);
        if self.ip.is_some() && same_bytes(text, &self.text[..len]) {
            return self.ip;
        }
        let ip = dotted_quad_prefix(text)
            .filter(|&(_, n)| n == text.len())?
            .0;
        // A dotted quad is at most 15 bytes.
        self.text[..text.len()].copy_from_slice(text);
        self.len = text.len() as u8;
        self.ip = Some(ip);
        Some(ip)
    }

    /// The remembered Via head and its address, if `buf[start..end]` starts with it.
    #[inline(always)]
    fn same_sent_by(&self, buf: &[u8], start: usize, end: usize) -> Option<(SentBy, Ipv4Addr)> {
        Some((self.head.recall(buf, start, end)?, self.head_ip?))
    }
}

/// An IP address as a Via writes it (`[…]` around IPv6 allowed). Dotted-quad IPv4, what
/// nearly every Via holds, is read by hand: the standard parser (with its UTF-8 check) cost
/// ~300 instructions a response. The hand reader accepts only what the standard one accepts
/// (four decimal octets ≤ 255, no leading zeros) and leaves everything else to it.
pub(super) fn parse_ip(host: &[u8]) -> Option<IpAddr> {
    if let Some((v4, n)) = dotted_quad_prefix(host)
        && n == host.len()
    {
        return Some(IpAddr::V4(v4));
    }
    std::str::from_utf8(host)
        .ok()
        .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
}

/// Four decimal octets ≤ 255 without leading zeros at the start of `s`, and where they end:
/// at the end of `s` or at a byte that is neither a digit nor a dot after the fourth.
// Digit by digit with the octet's shape unrolled: a general loop with a digit count cost
// ~150 instructions an address, more than the rest of the next-hop read.
fn dotted_quad_prefix(s: &[u8]) -> Option<(Ipv4Addr, usize)> {
    // A byte's value as a digit; 10 or more for anything else, past the end included.
    let digit = |i: usize| s.get(i).map_or(10, |b| b.wrapping_sub(b'0'));
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let first = digit(i);
        if first > 9 {
            return None;
        }
        let mut v = u32::from(first);
        i += 1;
        let d = digit(i);
        if d <= 9 {
            if first == 0 {
                return None;
            }
            v = v * 10 + u32::from(d);
            i += 1;
            let d = digit(i);
            if d <= 9 {
                v = v * 10 + u32::from(d);
                i += 1;
                if v > 255 || digit(i) <= 9 {
                    return None;
                }
            }
        }
        *octet = v as u8;
    }
    Some((Ipv4Addr::from(octets), i))
}

#[cfg(test)]
#[path = "next_hop_tests.rs"]
mod tests;
