//! The ACK a proxy sends itself for a non-2xx final reply it absorbs instead of relaying (a
//! failed try under failover), built as RFC 3261 §17.1.1.3 asks: the INVITE's Request-URI and
//! Route set, one Via with the INVITE's branch, From, Call-ID and CSeq number of the INVITE,
//! and the To of the reply (with its tag).
#![forbid(unsafe_code)]

use super::emit::{Out, Overflow};
use super::proxy::Identity;
use super::scan::{Message, StartLine};

/// Writes into `out` the ACK for `reply`, a final non-2xx response to `invite` as we sent it
/// (with its first `popped` Route entries removed). Returns its length; `None` if the messages
/// lack what an ACK needs.
pub fn write_ack(
    invite: &Message<'_>,
    popped: usize,
    reply: &Message<'_>,
    me: &Identity,
    out: &mut [u8],
) -> Option<Result<usize, Overflow>> {
    let StartLine::Request { uri, .. } = invite.start else {
        return None;
    };
    let branch = reply.via.branch?.of(reply.buf);
    let from = reply.header(b"From")?;
    let to = reply.header(b"To")?;
    let mut o = Out::new(out);
    let mut put = || -> Result<usize, Overflow> {
        o.put(b"ACK ")?;
        o.put(uri.whole.of(invite.buf))?;
        o.put(b" SIP/2.0\r\nVia: SIP/2.0/UDP ")?;
        o.put(me.host.as_bytes())?;
        o.put(b":")?;
        o.put_u32(u32::from(me.port))?;
        o.put(b";branch=")?;
        o.put(branch)?;
        let routes = invite.routes.as_slice();
        for (i, r) in routes.iter().skip(popped).enumerate() {
            o.put(if i == 0 { b"\r\nRoute: " } else { b", " })?;
            o.put(r.of(invite.buf))?;
        }
        o.put(b"\r\nMax-Forwards: 70\r\nFrom: ")?;
        o.put(from)?;
        o.put(b"\r\nTo: ")?;
        o.put(to)?;
        o.put(b"\r\nCall-ID: ")?;
        o.put(invite.call_id())?;
        o.put(b"\r\nCSeq: ")?;
        o.put_u32(invite.cseq)?;
        o.put(b" ACK\r\nContent-Length: 0\r\n\r\n")?;
        Ok(o.len())
    };
    Some(put())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Scanned, scan};

    fn msg(b: &[u8]) -> Message<'_> {
        match scan(b) {
            Ok(Scanned::Message(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ack_for_an_absorbed_503() {
        let invite = b"INVITE sip:svc@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKup\r\n\
Route: <sip:10.0.0.9;lr>, <sip:10.0.0.7;lr>\r\nFrom: <sip:a@x>;tag=f1\r\nTo: <sip:svc@y>\r\nCall-ID: c1@x\r\n\
CSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";
        let reply = b"SIP/2.0 503 Busy\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK00ff;received=192.0.2.1\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKup\r\nFrom: <sip:a@x>;tag=f1\r\nTo: <sip:svc@y>;tag=t9\r\n\
Call-ID: c1@x\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";
        let me = Identity::new("192.0.2.1", 5060, &[]);
        let mut out = [0u8; 1024];
        let n = write_ack(&msg(invite), 1, &msg(reply), &me, &mut out)
            .unwrap()
            .unwrap();
        let ack = std::str::from_utf8(&out[..n]).unwrap();
        assert_eq!(
            ack,
            "ACK sip:svc@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK00ff\r\n\
Route: <sip:10.0.0.7;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:a@x>;tag=f1\r\nTo: <sip:svc@y>;tag=t9\r\n\
Call-ID: c1@x\r\nCSeq: 7 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        let Ok(Scanned::Message(m)) = scan(&out[..n]) else {
            panic!()
        };
        assert_eq!(m.cseq_method(), crate::sip::Method::Ack);
    }
}
