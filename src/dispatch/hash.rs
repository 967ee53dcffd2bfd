//! Kamailio's dispatcher hash (`ds_get_hash`), bit-exact, and its URI key rule, so that a call
//! hashes to the same slot in sipdispatch as in Kamailio; plus the 64-bit mixing used by
//! rendezvous hashing. Pure functions over bytes.
#![forbid(unsafe_code)]

use super::UriKey;

/// Hashes one key the way `ds_get_hash` does: big-endian 4-byte chunks with bytes as signed
/// `char` (sign-extended on x86), then the tail bytes, each chunk added as `v ^ (v >> 3)`.
fn add_key(mut h: u32, s: &[u8]) -> u32 {
    let sx = |b: u8| i32::from(b as i8) as u32;
    let mut chunks = s.chunks_exact(4);
    for c in &mut chunks {
        let v = (sx(c[0]) << 24)
            .wrapping_add(sx(c[1]) << 16)
            .wrapping_add(sx(c[2]) << 8)
            .wrapping_add(sx(c[3]));
        h = h.wrapping_add(v ^ (v >> 3));
    }
    // The tail loop runs even when nothing is left (adding 0 ^ 0), as in Kamailio.
    let mut v: u32 = 0;
    for &b in chunks.remainder() {
        v = (v << 8).wrapping_add(sx(b));
    }
    h.wrapping_add(v ^ (v >> 3))
}

/// `ds_get_hash(x, y)`: never 0.
pub fn kamailio_hash(x: &[u8], y: Option<&[u8]>) -> u32 {
    let mut h = add_key(0, x);
    if let Some(y) = y {
        h = add_key(h, y);
    }
    h = h
        .wrapping_add(h >> 11)
        .wrapping_add((h >> 13).wrapping_add(h >> 23));
    if h == 0 { 1 } else { h }
}

/// Kamailio's URI hash (algorithms 1–3): user, then host with `:port` only when the port is
/// not the scheme's default (5060 for sip, 5061 for sips); the user alone with `user_only`.
pub fn uri_hash(uri: &UriKey<'_>, user_only: bool) -> u32 {
    if user_only {
        return kamailio_hash(uri.user, Some(b""));
    }
    let default = if uri.secure { 5061 } else { 5060 };
    match uri.port.filter(|&p| p != default) {
        None => kamailio_hash(uri.user, Some(uri.host)),
        Some(p) => {
            // host:port in a stack buffer; hosts longer than the buffer keep only the host.
            let mut buf = [0u8; 272];
            let n = uri.host.len();
            if n + 6 > buf.len() {
                return kamailio_hash(uri.user, Some(uri.host));
            }
            buf[..n].copy_from_slice(uri.host);
            buf[n] = b':';
            let mut digits = [0u8; 5];
            let mut i = digits.len();
            let mut v = p;
            loop {
                i -= 1;
                digits[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            let d = &digits[i..];
            buf[n + 1..n + 1 + d.len()].copy_from_slice(d);
            kamailio_hash(uri.user, Some(&buf[..n + 1 + d.len()]))
        }
    }
}

/// Up to eight bytes as a little-endian word, zero above them: the last, short chunk of a
/// word-at-a-time hash. A copy into a zeroed word did the same through a `memcpy` call (~25
/// instructions), once per Call-ID hash and per address lookup; this reads at most two
/// overlapping loads.
#[inline(always)]
pub fn le_word(b: &[u8]) -> u64 {
    let n = b.len();
    let u32_at = |i: usize| {
        let w: [u8; 4] = b
            .get(i..i + 4)
            .and_then(|w| w.try_into().ok())
            .unwrap_or([0; 4]);
        u64::from(u32::from_le_bytes(w))
    };
    match n {
        0 => 0,
        // Byte 0, the middle one and the last cover one to three bytes; overlaps OR the same
        // byte into the same place.
        1..=3 => {
            u64::from(b[0])
                | u64::from(b[n / 2]) << (8 * (n / 2))
                | u64::from(b[n - 1]) << (8 * (n - 1))
        }
        4..=7 => u32_at(0) | u32_at(n - 4) << (8 * (n - 4)),
        _ => u64::from_le_bytes(b.get(..8).and_then(|w| w.try_into().ok()).unwrap_or([0; 8])),
    }
}

/// A 64-bit mix (splitmix64 finaliser) for rendezvous scores.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Every line of the vectors Kamailio 5.6.3's `dispatcher.hash` RPC produced.
    #[test]
    fn le_word_is_the_zero_padded_copy() {
        let bytes = *b"\x01\x82\x03\xf4\x05\x06\x07\xa8\x09";
        for n in 0..=8 {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(le_word(&bytes[..n]), u64::from_le_bytes(w), "{n} bytes");
            assert_eq!(le_word(&bytes[1..1 + n]), {
                let mut w = [0u8; 8];
                w[..n].copy_from_slice(&bytes[1..1 + n]);
                u64::from_le_bytes(w)
            });
        }
    }

    #[test]
    fn matches_every_kamailio_vector() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/reference/kamailio-hash-vectors.tsv"
        );
        let text = std::fs::read_to_string(path).expect("hash vectors");
        let mut n = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split('\t').collect();
            let nslots: u32 = f[0].parse().unwrap();
            let x = unhex(f[1]);
            let y = (f[2] != "-").then(|| unhex(f[2]));
            let want_hash: u32 = f[3].parse().unwrap();
            let want_slot: u32 = f[4].parse().unwrap();
            let h = kamailio_hash(&x, y.as_deref());
            assert_eq!(h, want_hash, "{line}");
            assert_eq!(h % nslots, want_slot, "{line}");
            n += 1;
        }
        let data_lines = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        assert_eq!(n, data_lines);
        assert!(n >= 20, "only {n} vectors read");
    }

    #[test]
    fn zero_maps_to_one_and_the_tail_loop_always_runs() {
        // Nothing to hash: the sum is 0, and Kamailio returns 1 for it.
        assert_eq!(kamailio_hash(b"", None), 1);
        assert_eq!(kamailio_hash(b"", Some(b"")), 1);
        // A key of whole chunks hashes the same with an empty second key.
        assert_eq!(
            kamailio_hash(b"abcd", None),
            kamailio_hash(b"abcd", Some(b""))
        );
        // Bytes >= 0x80 are sign-extended: 0xff is -1, not 255.
        // (-1 << 24) + (-1 << 16) + (-1 << 8) + -1 in 32 bits, where unsigned bytes give 0xffffffff.
        let v = 0xfefe_feffu32;
        let h = v ^ (v >> 3);
        let mixed = h
            .wrapping_add(h >> 11)
            .wrapping_add((h >> 13).wrapping_add(h >> 23));
        assert_eq!(kamailio_hash(&[0xff; 4], None), mixed);
    }

    #[test]
    fn uri_key_rule() {
        let u = |port| UriKey {
            secure: false,
            user: b"alice",
            host: b"example.com",
            port,
        };
        assert_eq!(uri_hash(&u(None), false), uri_hash(&u(Some(5060)), false));
        assert_ne!(uri_hash(&u(None), false), uri_hash(&u(Some(5070)), false));
        assert_eq!(
            uri_hash(&u(Some(5070)), false),
            kamailio_hash(b"alice", Some(b"example.com:5070"))
        );
        assert_eq!(
            uri_hash(&u(Some(5070)), true),
            kamailio_hash(b"alice", None)
        );
        let s = UriKey {
            secure: true,
            ..u(Some(5061))
        };
        assert_eq!(
            uri_hash(&s, false),
            kamailio_hash(b"alice", Some(b"example.com"))
        );
    }
}
