//! Byte searches many bytes a step: where a byte occurs in a 64-byte window (the scanner finds
//! the line ends of a whole window at once instead of line by line), where a token run ends,
//! where a value stops at one of a few bytes. SSE2 (part of every x86-64) through `safe_arch`,
//! byte loops or whole words elsewhere. Bytes past the end of the datagram never match.
//! Nothing here knows SIP.
#![forbid(unsafe_code)]

/// Bytes per window.
pub(crate) const WINDOW: usize = 64;

/// The offsets in `buf[at..at + 64]` that hold `byte`.
#[inline(always)]
pub(crate) fn mask64(buf: &[u8], at: usize, byte: u8) -> u64 {
    match buf.get(at..at.saturating_add(WINDOW)) {
        Some(w) => window_mask(w.try_into().unwrap_or(&[0; WINDOW]), byte),
        // The datagram's last window, read as the 64 bytes that end the datagram and shifted
        // down to start at `at` (no copy into a padded window).
        None if at < buf.len() && buf.len() >= WINDOW => {
            let w = &buf[buf.len() - WINDOW..];
            window_mask(w.try_into().unwrap_or(&[0; WINDOW]), byte) >> (at + WINDOW - buf.len())
        }
        None => {
            // A datagram shorter than a window, padded; the padding's bits are cleared.
            let mut w = [0u8; WINDOW];
            let tail = buf.get(at..).unwrap_or_default();
            w[..tail.len()].copy_from_slice(tail);
            window_mask(&w, byte) & ((1u64 << tail.len()) - 1)
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn window_mask(w: &[u8; WINDOW], byte: u8) -> u64 {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let needle = set_splat_i8_m128i(byte as i8);
    let part = |k: usize| {
        let chunk: &[u8; 16] = w[k * 16..k * 16 + 16].try_into().unwrap_or(&[0; 16]);
        let eq = cmp_eq_mask_i8_m128i(load_unaligned_m128i(chunk), needle);
        u64::from(move_mask_i8_m128i(eq) as u16) << (k * 16)
    };
    part(0) | part(1) | part(2) | part(3)
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn window_mask(w: &[u8; WINDOW], byte: u8) -> u64 {
    words_mask(w, byte)
}

/// [`window_mask`] eight bytes at a time, for targets without SSE2 (and as its test oracle).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn words_mask(w: &[u8; WINDOW], byte: u8) -> u64 {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut m = 0;
    for (k, c) in w.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(c.try_into().unwrap_or_default())
            ^ (0x0101_0101_0101_0101 * u64::from(byte));
        // 0x80 exactly on the zero bytes of `x` (no borrow between bytes).
        let zero = !(((x & LO7) + LO7) | x | LO7);
        // Gather the eight flags into eight bits.
        let bits = ((zero >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
        m |= bits << (k * 8);
    }
    m
}

/// Bit `i` set where `a[i] == b[i]`, for 48 bytes: sixteen a step with SSE2.
#[inline(always)]
pub(crate) fn equal48(a: &[u8; 48], b: &[u8; 48]) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use safe_arch::{cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i};
        let part = |k: usize| {
            let x: &[u8; 16] = a[k * 16..k * 16 + 16].try_into().unwrap_or(&[0; 16]);
            let y: &[u8; 16] = b[k * 16..k * 16 + 16].try_into().unwrap_or(&[0; 16]);
            let eq = cmp_eq_mask_i8_m128i(load_unaligned_m128i(x), load_unaligned_m128i(y));
            u64::from(move_mask_i8_m128i(eq) as u16) << (k * 16)
        };
        part(0) | part(1) | part(2)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        a.iter()
            .zip(b)
            .enumerate()
            .fold(0, |m, (i, (x, y))| m | u64::from(x == y) << i)
    }
}

/// Offset of the first byte in `s[from..end]` that is a space or a control byte (≤ 0x20) or
/// one of `set`, or `end`: where a plain value stops. Sixteen bytes a step.
#[inline(always)]
pub(crate) fn find_stop<const N: usize>(s: &[u8], from: usize, end: usize, set: [u8; N]) -> usize {
    first_of::<N, true>(s, from, end, set)
}

/// Offset of the first byte in `s[from..end]` that is one of `set`, or `end`.
#[inline(always)]
pub(crate) fn find_any<const N: usize>(s: &[u8], from: usize, end: usize, set: [u8; N]) -> usize {
    first_of::<N, false>(s, from, end, set)
}

#[inline(always)]
fn first_of<const N: usize, const CONTROL: bool>(
    s: &[u8],
    from: usize,
    end: usize,
    set: [u8; N],
) -> usize {
    let end = end.min(s.len());
    let mut i = from;
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use safe_arch::{
            cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i,
            set_splat_i8_m128i, zeroed_m128i,
        };
        let space = set_splat_i8_m128i(0x20);
        while i < end
            && let Some(chunk) = s.get(i..i + 16)
        {
            let x = load_unaligned_m128i(chunk.try_into().unwrap_or(&[0; 16]));
            let mut hit = if CONTROL {
                cmp_eq_mask_i8_m128i(min_u8_m128i(x, space), x)
            } else {
                zeroed_m128i()
            };
            for b in set {
                hit |= cmp_eq_mask_i8_m128i(x, set_splat_i8_m128i(b as i8));
            }
            let m = move_mask_i8_m128i(hit);
            if m != 0 {
                return (i + m.trailing_zeros() as usize).min(end);
            }
            i += 16;
        }
    }
    while i < end && !(CONTROL && s[i] <= b' ') && !set.contains(&s[i]) {
        i += 1;
    }
    i.min(end)
}

/// Offset of the first byte in `s[from..end]` that is not an RFC 3261 token byte, or `end`.
/// Sixteen bytes a step where sixteen are readable.
#[inline(always)]
pub(crate) fn skip_token(s: &[u8], from: usize, end: usize) -> usize {
    let end = end.min(s.len());
    let mut i = from;
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // Names, hosts, transports and branches are letters, digits, `-` and `.`: a class
        // three compares find; the full token class runs only past another byte.
        let mut full = false;
        while i < end
            && let Some(chunk) = s.get(i..i + 16)
        {
            let chunk: &[u8; 16] = chunk.try_into().unwrap_or(&[0; 16]);
            let other = !if full {
                token_mask16(chunk)
            } else {
                name_mask16(chunk)
            };
            if other != 0 {
                let at = i + other.trailing_zeros() as usize;
                if full || at >= end || !super::lex::is_token(s[at]) {
                    return at.min(end);
                }
                full = true;
                i = at;
                continue;
            }
            i += 16;
        }
    }
    while i < end && super::lex::is_token(s[i]) {
        i += 1;
    }
    i.min(end)
}

/// How many bytes at the start of `chunk` are letters, digits, `-`, `.` or spaces (16 when all
/// are): a display name in its usual spelling, which the other token bytes seldom join.
#[inline(always)]
pub(crate) fn words_run16(chunk: &[u8; 16]) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use safe_arch::{cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i};
        let space = cmp_eq_mask_i8_m128i(
            load_unaligned_m128i(chunk),
            safe_arch::set_splat_i8_m128i(b' ' as i8),
        );
        let words = name_mask16(chunk) | move_mask_i8_m128i(space) as u16;
        (!words).trailing_zeros() as usize
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        chunk
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b' ')))
            .unwrap_or(16)
    }
}

/// How many bytes at the start of `chunk` are letters, digits, `-` or `.` (16 when all are):
/// the length of a header name there, in the shape nearly every name has.
#[inline(always)]
pub(crate) fn name_run16(chunk: &[u8; 16]) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        (!name_mask16(chunk)).trailing_zeros() as usize
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        chunk
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
            .unwrap_or(16)
    }
}

/// Bit `i` set where `chunk[i]` is a letter, a digit, `-` or `.`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn name_mask16(chunk: &[u8; 16]) -> u16 {
    use safe_arch::{
        add_i8_m128i, cmp_eq_mask_i8_m128i, cmp_lt_mask_i8_m128i, load_unaligned_m128i,
        move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let x = load_unaligned_m128i(chunk);
    let letter = {
        let folded = x | set_splat_i8_m128i(0x20);
        let shifted = add_i8_m128i(folded, set_splat_i8_m128i(0x80u8.wrapping_sub(b'a') as i8));
        cmp_lt_mask_i8_m128i(shifted, set_splat_i8_m128i((0x80u8 + 26) as i8))
    };
    // `-`, `.` and the digits are 0x2d..=0x39 but for `/`.
    let digit_dot_dash = {
        let shifted = add_i8_m128i(x, set_splat_i8_m128i(0x80u8.wrapping_sub(b'-') as i8));
        cmp_lt_mask_i8_m128i(shifted, set_splat_i8_m128i((0x80u8 + 13) as i8))
    };
    let slash = cmp_eq_mask_i8_m128i(x, set_splat_i8_m128i(b'/' as i8));
    move_mask_i8_m128i(safe_arch::bitandnot_m128i(slash, letter | digit_dot_dash)) as u16
}

/// Bit `i` set where `chunk[i]` is a token byte: printable ASCII but for
/// `"#$&(),/:;<=>?@[\]^{|}`, as ranges and single bytes compared sixteen at a time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn token_mask16(chunk: &[u8; 16]) -> u16 {
    use safe_arch::{
        add_i8_m128i, bitandnot_m128i, cmp_eq_mask_i8_m128i, cmp_lt_mask_i8_m128i,
        load_unaligned_m128i, m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let x = load_unaligned_m128i(chunk);
    // `lo..=hi` by one wrapping add and one signed compare.
    let within = |lo: u8, hi: u8| -> m128i {
        let shifted = add_i8_m128i(x, set_splat_i8_m128i(0x80u8.wrapping_sub(lo) as i8));
        cmp_lt_mask_i8_m128i(
            shifted,
            set_splat_i8_m128i(0x80u8.wrapping_add(hi - lo + 1) as i8),
        )
    };
    let is = |b: u8| cmp_eq_mask_i8_m128i(x, set_splat_i8_m128i(b as i8));
    let other = within(b'"', b'$')
        | within(b'(', b')')
        | within(b':', b'@')
        | within(b'[', b'^')
        | within(b'{', b'}')
        | is(b'&')
        | is(b',')
        | is(b'/');
    move_mask_i8_m128i(bitandnot_m128i(other, within(0x21, 0x7e))) as u16
}

/// The line feeds of a datagram, found a window at a time as the scan moves forward.
pub(crate) struct LineFeeds {
    base: usize,
    mask: u64,
}

impl LineFeeds {
    /// A cursor whose first window starts at `from`.
    #[inline(always)]
    pub fn new(buf: &[u8], from: usize) -> Self {
        Self {
            base: from,
            mask: mask64(buf, from, b'\n'),
        }
    }

    /// Offset of the first `\n` at or after `from`. Calls must not go backwards by more than
    /// the current window (they would then start a new window there, which is correct but
    /// slower).
    #[inline(always)]
    pub fn next(&mut self, buf: &[u8], mut from: usize) -> Option<usize> {
        loop {
            let off = from.wrapping_sub(self.base);
            if off < WINDOW {
                let m = self.mask >> off;
                if m != 0 {
                    return Some(from + m.trailing_zeros() as usize);
                }
                // Nothing in the rest of this window: go on at the next one.
                self.base += WINDOW;
                from = self.base;
            } else {
                self.base = from;
            }
            if self.base >= buf.len() {
                return None;
            }
            self.mask = mask64(buf, self.base, b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_a_plain_search() {
        let mut buf: Vec<u8> = (0..200u32).map(|i| (i * 37 % 256) as u8).collect();
        buf[5] = b'\n';
        buf[63] = b'\n';
        buf[64] = b'\n';
        buf[150] = b'\n';
        for at in [0, 1, 7, 63, 64, 100, 150, 190, 199, 200, 250] {
            for byte in [b'\n', b':', 0x80, 0xff, 0] {
                let want = (0..WINDOW).fold(0u64, |m, i| {
                    m | u64::from(buf.get(at + i) == Some(&byte)) << i
                });
                assert_eq!(mask64(&buf, at, byte), want, "at {at} byte {byte}");
                if let Some(w) = buf.get(at..at + WINDOW) {
                    assert_eq!(words_mask(w.try_into().unwrap(), byte), want);
                }
            }
        }
    }

    #[test]
    fn equal_bytes_match_a_plain_compare() {
        let a: [u8; 48] = std::array::from_fn(|i| (i * 7) as u8);
        for flip in [0, 1, 15, 16, 31, 32, 47] {
            let mut b = a;
            b[flip] ^= 0x80;
            b[(flip + 5) % 48] = 0;
            let want = (0..48).fold(0u64, |m, i| m | u64::from(a[i] == b[i]) << i);
            assert_eq!(equal48(&a, &b), want, "{flip}");
        }
        assert_eq!(equal48(&a, &a), (1 << 48) - 1);
    }

    #[test]
    fn stops_match_a_plain_search() {
        let s = b"tag=1928301774;x=\"q\" <sip:a@b>\tz\x7f\xff,\r\n0123456789abcdefghij";
        for from in 0..s.len() {
            for end in from..=s.len() {
                let want = s[from..end]
                    .iter()
                    .position(|&b| b <= b' ' || b";\"<>".contains(&b))
                    .map_or(end, |p| from + p);
                assert_eq!(find_stop(s, from, end, *b";\"<>"), want, "{from}..{end}");
                let want = s[from..end]
                    .iter()
                    .position(|&b| b";\"<>".contains(&b))
                    .map_or(end, |p| from + p);
                assert_eq!(find_any(s, from, end, *b";\"<>"), want, "{from}..{end}");
            }
        }
    }

    #[test]
    fn name_runs_match_the_byte_class() {
        for b in 0..=255u8 {
            let name = b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
            for at in [0, 1, 7, 8, 15] {
                let mut s = [b'a'; 16];
                s[at] = b;
                assert_eq!(name_run16(&s), if name { 16 } else { at }, "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn word_runs_match_the_byte_class() {
        for b in 0..=255u8 {
            let word = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b' ');
            for at in [0, 1, 7, 8, 15] {
                let mut s = *b"Alice Hara-Smith";
                s[at] = b;
                assert_eq!(
                    words_run16(&s),
                    if word { 16 } else { at },
                    "{b:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn token_runs_match_the_byte_class() {
        for b in 0..=255u8 {
            let mut s = [b'a'; 40];
            for at in [0, 5, 15, 16, 17, 31, 39] {
                s[at] = b;
                let want = if super::super::lex::is_token(b) {
                    40
                } else {
                    at
                };
                assert_eq!(skip_token(&s, 0, 40), want, "byte {b:#x} at {at}");
                assert_eq!(skip_token(&s, 0, 3), want.min(3));
                s[at] = b'a';
            }
        }
    }

    #[test]
    fn line_feeds_in_order_and_out_of_order() {
        let mut buf = vec![b'a'; 300];
        let lfs = [0, 3, 63, 64, 65, 127, 200, 299];
        for &p in &lfs {
            buf[p] = b'\n';
        }
        let mut c = LineFeeds::new(&buf, 0);
        let mut got = Vec::new();
        let mut from = 0;
        while let Some(p) = c.next(&buf, from) {
            got.push(p);
            from = p + 1;
        }
        assert_eq!(got, lfs);
        let mut c = LineFeeds::new(&buf, 100);
        assert_eq!(c.next(&buf, 100), Some(127));
        assert_eq!(c.next(&buf, 5), Some(63), "going back starts over there");
        assert_eq!(c.next(&buf, 300), None);
        assert_eq!(LineFeeds::new(&buf, 400).next(&buf, 400), None);
    }
}
