//! Messages sipload builds by itself (a 200 to an unexpected BYE or CANCEL, the ACK of a
//! final error response) and the header helpers they and `[last_*]` share.

use std::net::SocketAddr;

use sipdispatch::sip::header;
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

fn compact_of(name: &str) -> Option<&'static str> {
    COMPACT
        .iter()
        .find(|(l, _)| l.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
}

/// Every line of header `name` in `msg`, joined into one line with `", "` as SIPp does;
/// compact-form lines count only when there is no full-form one.
pub fn last_header(msg: &[u8], name: &str, out: &mut Vec<u8>) {
    let Some(first) = msg.iter().position(|&b| b == b'\n').map(|p| p + 1) else {
        return;
    };
    let compact = compact_of(name);
    // Two passes over the headers rather than a list of them: no allocation per message.
    let each = |f: &mut dyn FnMut(header::Line, bool)| {
        for h in header::lines(msg, first) {
            let n = &msg[h.name.0..h.name.1];
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                f(h, true);
            } else if compact.is_some_and(|c| n.eq_ignore_ascii_case(c.as_bytes())) {
                f(h, false);
            }
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

/// Most header lines a [`HeaderIndex`] holds; a message with more is read by [`last_header`].
const INDEXED: usize = 64;

/// The header lines of one message (name and value ranges), read once so that the several
/// `[last_*]` keywords of a message rendered from it search a short table rather than the
/// message each time. Lives on the stack: no allocation.
pub struct HeaderIndex {
    lines: [(u32, u32, u32, u32); INDEXED],
    n: usize,
    /// More lines than the table holds (or a message over 4 GiB): read the message instead.
    overflow: bool,
}

impl HeaderIndex {
    pub fn new(msg: &[u8]) -> Self {
        let mut ix = Self {
            lines: [(0, 0, 0, 0); INDEXED],
            n: 0,
            overflow: msg.len() > u32::MAX as usize,
        };
        let Some(first) = msg.iter().position(|&b| b == b'\n').map(|p| p + 1) else {
            return ix;
        };
        for h in header::lines(msg, first) {
            if ix.overflow || ix.n == INDEXED {
                ix.overflow = true;
                break;
            }
            ix.lines[ix.n] = (
                h.name.0 as u32,
                h.name.1 as u32,
                h.value.0 as u32,
                h.value.1 as u32,
            );
            ix.n += 1;
        }
        ix
    }

    /// [`last_header`] of the indexed `msg`.
    pub fn last_header(&self, msg: &[u8], name: &str, out: &mut Vec<u8>) {
        if self.overflow {
            return last_header(msg, name, out);
        }
        let compact = compact_of(name);
        let lines = &self.lines[..self.n];
        let is = |l: &(u32, u32, u32, u32), n: &str| {
            msg[l.0 as usize..l.1 as usize].eq_ignore_ascii_case(n.as_bytes())
        };
        let any_full = lines.iter().any(|l| is(l, name));
        let mut first_line = true;
        for l in lines {
            let m = if any_full {
                is(l, name)
            } else {
                compact.is_some_and(|c| is(l, c))
            };
            if !m {
                continue;
            }
            if first_line {
                out.extend_from_slice(&msg[l.0 as usize..l.3 as usize]);
                first_line = false;
            } else {
                out.extend_from_slice(b", ");
                out.extend_from_slice(&msg[l.2 as usize..l.3 as usize]);
            }
        }
    }
}

/// The `branch` parameter of a message's top Via.
pub fn top_branch(msg: &[u8]) -> Option<&[u8]> {
    let first = msg.iter().position(|&b| b == b'\n')? + 1;
    for h in header::lines(msg, first) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The index answers as the message does: joined lines, compact forms only without a full
    /// one, any case, absent headers empty, and a message with more lines than it holds.
    #[test]
    fn the_header_index_answers_as_last_header() {
        let mut many = b"SIP/2.0 200 OK\r\n".to_vec();
        for i in 0..70 {
            many.extend_from_slice(format!("X-{i}: {i}\r\nVia: v{i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let msgs: [&[u8]; 4] = [
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=1\r\nv: SIP/2.0/UDP c\r\nVIA: SIP/2.0/UDP b\r\nf: <sip:x>;tag=1\r\nTo: <sip:y>\r\ni: 1-2@h\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            b"SIP/2.0 180 Ringing\r\nv: a\r\nv: b\r\nt: <sip:y>;tag=2\r\n\r\nbody: x\r\n",
            b"garbage",
            &many,
        ];
        for m in msgs {
            let ix = HeaderIndex::new(m);
            for name in [
                "Via", "From", "To", "Call-ID", "CSeq", "Contact", "X-69", "x-3", "Nope",
            ] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                last_header(m, name, &mut a);
                ix.last_header(m, name, &mut b);
                assert_eq!(
                    String::from_utf8_lossy(&a),
                    String::from_utf8_lossy(&b),
                    "{name}"
                );
            }
        }
        assert!(HeaderIndex::new(&many).overflow);
    }
}
