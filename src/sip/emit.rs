//! Writing outgoing datagrams into a buffer the caller owns: bytes, decimal numbers, hex, and
//! IP addresses, with no allocation. Running out of room is an error, never a panic.
#![forbid(unsafe_code)]

use std::net::IpAddr;

/// The output buffer was too small for the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("outgoing datagram does not fit the send buffer")]
pub struct Overflow;

/// A cursor over a caller-owned buffer.
pub struct Out<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Out<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn len(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    pub fn written(&self) -> &[u8] {
        &self.buf[..self.pos]
    }

    #[inline]
    pub fn put(&mut self, b: &[u8]) -> Result<(), Overflow> {
        let dst = self
            .buf
            .get_mut(self.pos..self.pos + b.len())
            .ok_or(Overflow)?;
        dst.copy_from_slice(b);
        self.pos += b.len();
        Ok(())
    }

    pub fn put_u32(&mut self, mut n: u32) -> Result<(), Overflow> {
        let mut tmp = [0u8; 10];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&tmp[i..])
    }

    /// A decimal byte (a Max-Forwards value, written into every forwarded request). Where four
    /// bytes are free, one word store writes it; the bytes past its digits are scratch that the
    /// next write covers or that lies beyond the datagram. The digits come from a table: working
    /// them out cost ~30 instructions a request.
    #[inline]
    pub fn put_u8(&mut self, n: u8) -> Result<(), Overflow> {
        let (digits, len) = OCTETS[usize::from(n)];
        let len = usize::from(len);
        let Some(dst) = self.buf.get_mut(self.pos..self.pos + 4) else {
            return self.put(&digits[..len]);
        };
        dst.copy_from_slice(&[digits[0], digits[1], digits[2], 0]);
        self.pos += len;
        Ok(())
    }

    /// 16 lowercase hex digits. Every forwarded request's branch is written with it, so all
    /// digits are made at once in two words rather than one table lookup each.
    pub fn put_hex64(&mut self, n: u64) -> Result<(), Overflow> {
        let mut tmp = [0u8; 16];
        tmp[..8].copy_from_slice(&hex8((n >> 32) as u32).to_be_bytes());
        tmp[8..].copy_from_slice(&hex8(n as u32).to_be_bytes());
        self.put(&tmp)
    }

    /// An IP address as it appears in a Via `received` parameter (IPv6 without brackets,
    /// RFC 5118 §4.5).
    pub fn put_ip(&mut self, ip: IpAddr) -> Result<(), Overflow> {
        self.put(IpText::new(ip).as_bytes())
    }
}

/// The eight hex digits of `x` as ASCII, the last digit in the lowest byte.
fn hex8(x: u32) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Spread the nibbles one per byte, nibble k in byte k.
    let mut v = u64::from(x);
    v = (v | v << 16) & 0x0000_ffff_0000_ffff;
    v = (v | v << 8) & 0x00ff_00ff_00ff_00ff;
    v = (v | v << 4) & 0x0f0f_0f0f_0f0f_0f0f;
    // A nibble of 10 or more carries into bit 4 when 6 is added: those bytes get `a`–`f`.
    let letters = ((v + 6 * ONES) >> 4) & ONES;
    v + b'0' as u64 * ONES + letters * u64::from(b'a' - b'0' - 10)
}

/// Each octet's decimal digits (left-aligned) and how many there are: `received` and the
/// source check text an address for every forwarded request.
const OCTETS: [([u8; 3], u8); 256] = {
    let mut t = [([0u8; 3], 0u8); 256];
    let mut v = 0;
    while v < 256 {
        let d = [
            b'0' + (v / 100) as u8,
            b'0' + (v / 10 % 10) as u8,
            b'0' + (v % 10) as u8,
        ];
        t[v] = if v >= 100 {
            (d, 3)
        } else if v >= 10 {
            ([d[1], d[2], 0], 2)
        } else {
            ([d[2], 0, 0], 1)
        };
        v += 1;
    }
    t
};

/// The text of an IP address in a stack buffer, to write or compare without allocating.
pub struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    pub fn new(ip: IpAddr) -> Self {
        let mut buf = [0u8; 48];
        let len = match ip {
            // Written by hand: this runs for every forwarded request (`received`), and the
            // formatting machinery costs several hundred instructions per address.
            IpAddr::V4(v4) => {
                let mut len = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        buf[len] = b'.';
                        len += 1;
                    }
                    // All three table bytes are written and the cursor moves by the digits:
                    // fewer branches than choosing how many to write, and the buffer has room.
                    let (digits, n) = OCTETS[usize::from(octet)];
                    buf[len..len + 3].copy_from_slice(&digits);
                    len += usize::from(n);
                }
                len
            }
            IpAddr::V6(_) => {
                use std::io::Write;
                let mut cur = std::io::Cursor::new(&mut buf[..]);
                // 48 bytes hold any address text (IPv6 is at most 45 bytes): cannot fail.
                let _ = write!(cur, "{ip}");
                cur.position() as usize
            }
        };
        Self { buf, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A 64-bit hash over several byte strings, eight bytes a step, for branch ids and To-tags:
/// deterministic, so a retransmission produces the same value. Every forwarded request hashes
/// its top Via branch with it, so it works in words rather than bytes.
pub fn hash64(parts: &[&[u8]]) -> u64 {
    const K1: u64 = 0x9e37_79b9_7f4a_7c15;
    const K2: u64 = 0xbf58_476d_1ce4_e5b9;
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or_default());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        let mut chunks = p.chunks_exact(8);
        for c in &mut chunks {
            h = (h ^ word(c)).wrapping_mul(K1);
            h ^= h >> 32;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The last eight bytes, overlapping the words before when there are any.
            let tail = match p.len().checked_sub(8) {
                Some(at) => word(&p[at..]),
                None => rest.iter().rev().fold(0, |w, &b| w << 8 | u64::from(b)),
            };
            h = (h ^ tail).wrapping_mul(K1);
            h ^= h >> 32;
        }
        // The length ends each part, so ("ab", "c") and ("a", "bc") differ.
        h = (h ^ p.len() as u64).wrapping_mul(K2);
        h ^= h >> 29;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "192.0.2.10",
            "10.100.9.255",
            "255.255.255.255",
            "::1",
            "2001:db8::9:1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
        for v in 0..=255u8 {
            for ip in [
                [v, 0, 9, 255],
                [1, v, 10, 100],
                [99, 100, v, 7],
                [255, 254, 0, v],
            ] {
                let ip = IpAddr::from(ip);
                assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
            }
        }
    }

    #[test]
    fn writes_and_overflows() {
        let mut buf = [0u8; 12];
        let mut o = Out::new(&mut buf);
        o.put(b"MF ").unwrap();
        o.put_u32(69).unwrap();
        o.put_u32(0).unwrap();
        assert_eq!(o.written(), b"MF 690");
        assert_eq!(o.put(b"1234567"), Err(Overflow));
        let mut buf = [0u8; 64];
        let mut o = Out::new(&mut buf);
        o.put_hex64(0x0123_4567_89ab_cdef).unwrap();
        o.put_ip("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(o.written(), b"0123456789abcdef2001:db8::1");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in [0, u64::MAX, 0xa0b1_c2d3_e4f5_0617]
            .into_iter()
            .chain((0..200).map(|_| {
                x = x.wrapping_mul(0x5851_f42d_4c95_7f2d).wrapping_add(1);
                x
            }))
        {
            let mut buf = [0u8; 16];
            let mut o = Out::new(&mut buf);
            o.put_hex64(n).unwrap();
            assert_eq!(o.written(), format!("{n:016x}").as_bytes());
        }
    }

    #[test]
    fn decimal_bytes_with_and_without_room_for_a_word() {
        for n in 0..=255u8 {
            let text = n.to_string();
            // Exactly the digits' room and one more (byte copies), and room for the word store.
            for size in [text.len(), text.len() + 1, 8] {
                let mut buf = vec![b'#'; size];
                let mut o = Out::new(&mut buf);
                o.put_u8(n).unwrap();
                assert_eq!(o.written(), text.as_bytes(), "{n} in {size}");
                if size > text.len() {
                    o.put(b";").unwrap();
                    assert_eq!(o.written(), format!("{text};").as_bytes());
                }
            }
            assert_eq!(
                Out::new(&mut vec![0u8; text.len() - 1]).put_u8(n),
                Err(Overflow)
            );
        }
    }

    #[test]
    fn hash_separates_parts() {
        assert_ne!(hash64(&[b"ab", b"c"]), hash64(&[b"a", b"bc"]));
        assert_eq!(hash64(&[b"x"]), hash64(&[b"x"]));
        assert_ne!(
            hash64(&[b"a"]),
            hash64(&[b"a\0"]),
            "a zero byte is not padding"
        );
        // Every one-byte change of a branch-sized input, at every place and every length,
        // gives a new value.
        let base = *b"z9hG4bK776asdhds-4711-abcdefgh";
        let mut seen = std::collections::HashSet::new();
        for len in 0..=base.len() {
            assert!(seen.insert(hash64(&[&base[..len]])), "length {len}");
            for at in 0..len {
                let mut v = base;
                v[at] ^= 0x01;
                assert!(seen.insert(hash64(&[&v[..len]])), "length {len}, byte {at}");
            }
        }
    }
}
