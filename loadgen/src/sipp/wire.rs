//! Messages sipload builds by itself (a 200 to an unexpected BYE or CANCEL, the ACK of a
//! final error response) and the header helpers they and `[last_*]` share.

use std::net::SocketAddr;

use sipdispatch::sip::header::{self, Next};
use sipdispatch::sip::{Message, Scanned, scan};

pub fn ip_text(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => v.ip().to_string(),
        SocketAddr::V6(v) => format!("[{}]", v.ip()),
    }
}

pub fn cseq_is_invite(msg: &[u8]) -> bool {
    matches!(scan(msg), Ok(Scanned::Message(m)) if m.cseq_method.of(msg) == b"INVITE")
}

/// Every line of header `name` in `msg`, joined into one line with `", "` as SIPp does;
/// compact-form lines count only when there is no full-form one.
pub fn last_header(msg: &[u8], name: &str, out: &mut Vec<u8>) {
    const COMPACT: [(&str, &str); 8] = [
        ("call-id", "i"),
        ("contact", "m"),
        ("content-encoding", "e"),
        ("content-length", "l"),
        ("content-type", "c"),
        ("from", "f"),
        ("to", "t"),
        ("via", "v"),
    ];
    let Some(first) = msg.iter().position(|&b| b == b'\n').map(|p| p + 1) else {
        return;
    };
    let compact = COMPACT
        .iter()
        .find(|(l, _)| l.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c);
    // Two passes over the headers rather than a list of them: no allocation per message.
    let each = |f: &mut dyn FnMut(header::Line, bool)| {
        let mut pos = first;
        while let Ok(Next::Header(h)) = header::next(msg, pos) {
            let n = &msg[h.name.0..h.name.1];
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                f(h, true);
            } else if compact.is_some_and(|c| n.eq_ignore_ascii_case(c.as_bytes())) {
                f(h, false);
            }
            pos = h.line.1;
        }
    };
    let mut any_full = false;
    each(&mut |_, full| any_full |= full);
    let mut first_line = true;
    each(&mut |h, full| {
        if full != any_full {
            return;
        }
        if first_line {
            out.extend_from_slice(&msg[h.name.0..h.value.1]);
            first_line = false;
        } else {
            out.extend_from_slice(b", ");
            out.extend_from_slice(&msg[h.value.0..h.value.1]);
        }
    });
}

/// The `branch` parameter of a message's top Via.
pub fn top_branch(msg: &[u8]) -> Option<&[u8]> {
    let mut pos = msg.iter().position(|&b| b == b'\n')? + 1;
    while let Ok(Next::Header(h)) = header::next(msg, pos) {
        let n = &msg[h.name.0..h.name.1];
        if n.eq_ignore_ascii_case(b"Via") || n.eq_ignore_ascii_case(b"v") {
            let v = &msg[h.value.0..h.value.1];
            let first = v.split(|&b| b == b',').next()?;
            let at = first
                .windows(7)
                .position(|w| w.eq_ignore_ascii_case(b"branch="))?
                + 7;
            let rest = &first[at..];
            let end = rest
                .iter()
                .position(|&b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(rest.len());
            return Some(&rest[..end]);
        }
        pos = h.line.1;
    }
    None
}

/// A 200 OK to an unexpected BYE or CANCEL.
pub fn simple_reply(m: &Message<'_>) -> Vec<u8> {
    let mut out = b"SIP/2.0 200 OK\r\n".to_vec();
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        last_header(m.buf, h, &mut out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}
