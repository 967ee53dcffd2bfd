//! STUN on the SIP port (RFC 5389 Binding, used as a keepalive by RFC 5626 §4.4.2 and by NAT'd
//! clients): recognising a Binding request among SIP datagrams and writing its success response
//! with the sender's reflexive address. Nothing else of STUN.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};

const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const BINDING_SUCCESS: [u8; 2] = [0x01, 0x01];
const XOR_MAPPED_ADDRESS: [u8; 2] = [0x00, 0x20];

/// Whether `d` looks like a STUN message at all (its first two bits are 0 and it carries the
/// magic cookie), which no SIP message does: SIP starts with a letter.
pub fn is_stun(d: &[u8]) -> bool {
    d.len() >= 20
        && d[0] & 0xc0 == 0
        && d[4..8] == MAGIC
        && usize::from(u16::from_be_bytes([d[2], d[3]])) + 20 == d.len()
}

/// Writes the Binding success response to the Binding request `req` from `src` into `out`;
/// `None` for any other STUN message, or if `out` is too small.
pub fn binding_response(req: &[u8], src: SocketAddr, out: &mut [u8]) -> Option<usize> {
    if !is_stun(req) || req[0..2] != BINDING_REQUEST {
        return None;
    }
    let txid = &req[8..20];
    let (family, addr): (u8, Vec<u8>) = match src.ip() {
        IpAddr::V4(v4) => (
            1,
            v4.octets().iter().zip(MAGIC).map(|(a, m)| a ^ m).collect(),
        ),
        IpAddr::V6(v6) => {
            let key: Vec<u8> = MAGIC.iter().chain(txid).copied().collect();
            (2, v6.octets().iter().zip(key).map(|(a, k)| a ^ k).collect())
        }
    };
    let attr_len = 4 + addr.len();
    let len = 20 + 4 + attr_len;
    let out = out.get_mut(..len)?;
    out[0..2].copy_from_slice(&BINDING_SUCCESS);
    out[2..4].copy_from_slice(&((4 + attr_len) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC);
    out[8..20].copy_from_slice(txid);
    out[20..22].copy_from_slice(&XOR_MAPPED_ADDRESS);
    out[22..24].copy_from_slice(&(attr_len as u16).to_be_bytes());
    out[24] = 0;
    out[25] = family;
    out[26..28].copy_from_slice(&(src.port() ^ 0x2112).to_be_bytes());
    out[28..].copy_from_slice(&addr);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Vec<u8> {
        let mut r = vec![0x00, 0x01, 0x00, 0x00];
        r.extend_from_slice(&MAGIC);
        r.extend_from_slice(b"abcdefghijkl");
        r
    }

    #[test]
    fn binding_success_with_the_reflexive_address() {
        let mut out = [0u8; 64];
        let n = binding_response(&request(), "192.0.2.1:32853".parse().unwrap(), &mut out).unwrap();
        assert_eq!(n, 32);
        assert_eq!(&out[0..4], &[0x01, 0x01, 0x00, 0x0c]);
        assert_eq!(&out[8..20], b"abcdefghijkl");
        // RFC 5769 §2.2's reflexive address 192.0.2.1:32853 XOR-ed with the cookie.
        assert_eq!(
            &out[24..32],
            &[0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]
        );
        let n6 =
            binding_response(&request(), "[2001:db8::1]:5060".parse().unwrap(), &mut out).unwrap();
        assert_eq!(n6, 44);
        assert!(!is_stun(b"OPTIONS sip:x SIP/2.0\r\n\r\n"));
        let mut indication = request();
        indication[1] = 0x11;
        assert!(
            is_stun(&indication)
                && binding_response(&indication, "127.0.0.1:1".parse().unwrap(), &mut out)
                    .is_none()
        );
    }
}
