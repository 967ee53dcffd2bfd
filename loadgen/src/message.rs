//! The INVITE `blast` sends: built once like SIPp's uac INVITE (~900 bytes with its SDP), with
//! a fixed-width counter in the Call-ID, the branch and the From-tag that is patched in place
//! per message, so every datagram is unique without rebuilding it.

use std::net::SocketAddr;

/// Digits of the per-message counter.
pub const COUNTER_WIDTH: usize = 12;

/// A prebuilt message and where its counter fields are.
pub struct Template {
    pub bytes: Vec<u8>,
    slots: Vec<usize>,
}

impl Template {
    /// An INVITE from `local` to `target` with a padded SDP body.
    pub fn invite(local: SocketAddr, target: SocketAddr, pad: usize) -> Self {
        let marker = "#".repeat(COUNTER_WIDTH);
        let mut sdp = format!(
            "v=0\r\no=user1 53655765 2353687637 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0 8 18 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
            ip = local.ip()
        );
        // Four attribute lines bring the INVITE to ~900 bytes, a typical SBC-sized INVITE.
        for i in 0..pad + 4 {
            sdp.push_str(&format!("a=x-pad{i}:{}\r\n", "p".repeat(40)));
        }
        let text = format!(
            "INVITE sip:service@{target} SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK-{marker}\r\n\
From: sipload <sip:sipload@{local}>;tag={marker}\r\n\
To: service <sip:service@{target}>\r\n\
Call-ID: {marker}-blast@{ip}\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipload@{local}\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
User-Agent: sipload\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {len}\r\n\r\n{sdp}",
            ip = local.ip(),
            len = sdp.len()
        );
        let bytes = text.into_bytes();
        let slots = bytes
            .windows(COUNTER_WIDTH)
            .enumerate()
            .filter(|(_, w)| w.iter().all(|&b| b == b'#'))
            .map(|(i, _)| i)
            .filter({
                let mut last = None::<usize>;
                move |&i| {
                    let fresh = last.is_none_or(|l| i >= l + COUNTER_WIDTH);
                    if fresh {
                        last = Some(i);
                    }
                    fresh
                }
            })
            .collect();
        Self { bytes, slots }
    }

    /// Writes the message with counter `n` into `out` (which holds a copy of the template).
    pub fn patch(&self, out: &mut [u8], mut n: u64) {
        let mut digits = [b'0'; COUNTER_WIDTH];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        for &s in &self.slots {
            out[s..s + COUNTER_WIDTH].copy_from_slice(&digits);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipdispatch::sip::{Scanned, scan};

    #[test]
    fn invite_scans_and_counters_are_unique() {
        let t = Template::invite(
            "127.0.0.1:6000".parse().unwrap(),
            "127.0.0.1:5060".parse().unwrap(),
            0,
        );
        assert_eq!(t.slots.len(), 3);
        assert!((800..1000).contains(&t.bytes.len()), "{}", t.bytes.len());
        let mut a = t.bytes.clone();
        let mut b = t.bytes.clone();
        t.patch(&mut a, 1);
        t.patch(&mut b, 2);
        let (Ok(Scanned::Message(ma)), Ok(Scanned::Message(mb))) = (scan(&a), scan(&b)) else {
            panic!("blast INVITE does not scan")
        };
        assert_ne!(ma.call_id(), mb.call_id());
        assert_ne!(ma.via.branch.unwrap().of(&a), mb.via.branch.unwrap().of(&b));
        assert_eq!(ma.content_length.unwrap() as usize, ma.body.len());
        assert_eq!(ma.wire().len(), a.len());
    }
}
