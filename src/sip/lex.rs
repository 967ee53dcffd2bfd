//! Byte-level lexing shared by the scanner modules: whitespace, tokens, numbers, and splitting
//! header values at commas and parameters at semicolons while respecting quotes and `<…>`.
//! Everything works on `&[u8]` and returns offsets; nothing here knows header semantics.
#![forbid(unsafe_code)]

use super::bytemask::{name_run16, skip_token};

/// Byte classes, looked up in one table instead of chains of comparisons on the hot path.
pub(crate) const TOKEN: u8 = 1;
pub(crate) const LWS: u8 = 2;
/// Bytes that end or split a URI: `@ ? ; : [ ] < >` and whitespace.
pub(crate) const URI_SPECIAL: u8 = 4;
/// Bytes of a parameter value in its plain shape: token bytes and `: [ ] /` (addresses).
pub(crate) const PLAIN_VALUE: u8 = 8;
/// Bytes of a plain display name: token bytes and the space.
pub(crate) const DISPLAY: u8 = 16;

pub(crate) static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            t[b] |= TOKEN | PLAIN_VALUE | DISPLAY;
        }
        if c == b' ' {
            t[b] |= DISPLAY;
        }
        if matches!(c, b':' | b'[' | b']' | b'/') {
            t[b] |= PLAIN_VALUE;
        }
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            t[b] |= LWS | URI_SPECIAL;
        }
        if matches!(c, b'@' | b'?' | b';' | b':' | b'[' | b']' | b'<' | b'>') {
            t[b] |= URI_SPECIAL;
        }
        b += 1;
    }
    t
};

/// SP, HTAB, CR or LF. Inside a header value (continuation lines included) CR and LF only
/// appear as part of folding, so they count as linear whitespace there.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    CLASS[usize::from(b)] & LWS != 0
}

/// RFC 3261 `token` characters.
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    CLASS[usize::from(b)] & TOKEN != 0
}

/// The range `[start, end)` of `s` with linear whitespace removed on both sides.
#[inline(always)]
pub(crate) fn trim(s: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    end = end.min(s.len());
    while start < end && is_lws(s[start]) {
        start += 1;
    }
    while end > start && is_lws(s[end - 1]) {
        end -= 1;
    }
    (start, end)
}

/// The eight bytes at `s[i..]` as a little-endian word, if there are eight.
#[inline(always)]
pub(crate) fn word_at(s: &[u8], i: usize) -> Option<u64> {
    let b: [u8; 8] = s.get(i..i.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// Whether two short byte strings (hosts, addresses, a Via's head) are equal, in two
/// overlapping word compares where they are 4 to 32 bytes long; a slice compare calls `memcmp`
/// (~25 instructions), and the proxy compares a host or address two or three times per message.
#[inline(always)]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        4..=7 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        17..=32 => {
            word::<16>(a, 0) == word::<16>(b, 0) && word::<16>(a, n - 16) == word::<16>(b, n - 16)
        }
        _ => a == b,
    }
}

/// `N` bytes of `s` from `i` as one load (the callers check `i + N <= s.len()`).
#[inline(always)]
fn word<const N: usize>(s: &[u8], i: usize) -> [u8; N] {
    s.get(i..i + N)
        .and_then(|w| w.try_into().ok())
        .unwrap_or([0; N])
}

/// Up to eight bytes of a case-insensitive pattern, compared against a word in one step.
#[derive(Clone, Copy)]
pub(crate) struct Chunk {
    word: u64,
    /// 0x20 on the pattern's letters: OR-ing it folds case there and nowhere else, so `-` or
    /// `:` never match a control byte that differs from them by that bit.
    fold: u64,
    mask: u64,
}

/// A lowercase pattern of `N * 8` bytes or fewer, cut into chunks at compile time.
pub(crate) struct Pattern<const N: usize> {
    chunks: [Chunk; N],
    pub len: usize,
}

impl<const N: usize> Pattern<N> {
    pub const fn new(p: &[u8]) -> Self {
        assert!(p.len() <= N * 8 && p.len() > (N - 1) * 8);
        let mut chunks = [Chunk {
            word: 0,
            fold: 0,
            mask: 0,
        }; N];
        let mut i = 0;
        while i < p.len() {
            let c = &mut chunks[i / 8];
            let shift = (i % 8) * 8;
            c.word |= (p[i] as u64) << shift;
            c.mask |= 0xff << shift;
            if p[i].is_ascii_lowercase() {
                c.fold |= 0x20 << shift;
            }
            i += 1;
        }
        Self {
            chunks,
            len: p.len(),
        }
    }

    /// Whether `s[at..]` starts with the pattern, letters in any case. Needs eight readable
    /// bytes per chunk, so near the end of `s` it answers `false` (callers then take the
    /// general path).
    #[inline]
    pub fn at(&self, s: &[u8], at: usize) -> bool {
        let mut i = 0;
        while i < N {
            let c = self.chunks[i];
            match word_at(s, at + i * 8) {
                Some(w) if (w | c.fold) & c.mask == c.word => {}
                _ => return false,
            }
            i += 1;
        }
        true
    }

    /// [`Pattern::at`], and the pattern ends at or before `end`.
    #[inline]
    pub fn within(&self, s: &[u8], at: usize, end: usize) -> bool {
        at + self.len <= end && self.at(s, at)
    }
}

/// Offset of the first byte at or after `i` (before `end`) outside byte class `class`, which
/// holds the letters, the digits, `-` and `.` (a value's class: branches, tags, addresses).
#[inline(always)]
pub(crate) fn skip_class(s: &[u8], mut i: usize, end: usize, class: u8) -> usize {
    let end = end.min(s.len());
    // Those bytes sixteen a step (a branch or tag is mostly them), the rest by the table.
    while i < end
        && let Some(chunk) = s.get(i..i + 16)
    {
        let n = name_run16(chunk.try_into().unwrap_or(&[0; 16]));
        i += n;
        if n < 16 {
            break;
        }
    }
    i = i.min(end);
    let c = |b: u8| CLASS[usize::from(b)];
    // Four bytes a step while they all belong: runs are short but rarely shorter than four.
    while i + 4 <= end {
        if c(s[i]) & c(s[i + 1]) & c(s[i + 2]) & c(s[i + 3]) & class == 0 {
            break;
        }
        i += 4;
    }
    while i < end && c(s[i]) & class != 0 {
        i += 1;
    }
    i
}

/// The port in `s[from..end]` (after a `:`) in its plain shape, five digits at most, and where
/// it ends. `None` for no digits, or a value over 65535; a sixth digit is left where the port
/// ends, for the caller to refuse (then the general reader, which accepts leading zeros,
/// judges).
#[inline(always)]
pub(crate) fn plain_port(s: &[u8], from: usize, end: usize) -> Option<(u16, usize)> {
    let stop = end.min(s.len()).min(from + 5);
    let mut i = from;
    let mut port: u32 = 0;
    while i < stop {
        let d = s[i].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        port = port * 10 + u32::from(d);
        i += 1;
    }
    if i == from || port > 65535 {
        return None;
    }
    Some((port as u16, i))
}

/// Reads `;name[=value]` parameters from `i` (at a `;`) while they have the plain shape: a
/// token name, a value of [`PLAIN_VALUE`] bytes, nothing quoted, no whitespace. Calls `f`
/// with each and returns where it stopped: `end`, or a byte that does not continue a plain
/// parameter (a Via's `,`, or something the general splitter must judge). `None` for an empty
/// name, which the general splitter refuses too.
// Always inlined: the tag read of a From or To (`uri::plain_tag`) calls it with its own closure.
#[inline(always)]
pub(crate) fn plain_params(
    s: &[u8],
    mut i: usize,
    end: usize,
    mut f: impl FnMut(Param),
) -> Option<usize> {
    while i < end && s[i] == b';' {
        let ns = i + 1;
        let ne = skip_token(s, ns, end);
        if ne == ns {
            return None;
        }
        i = ne;
        let value = if i < end && s[i] == b'=' {
            let vs = i + 1;
            i = skip_class(s, vs, end, PLAIN_VALUE);
            Some((vs, i))
        } else {
            None
        };
        f(Param {
            name: (ns, ne),
            value,
        });
    }
    Some(i)
}

/// An IPv6 reference without its brackets; anything else as it is.
pub(crate) fn unbracket(h: &[u8]) -> &[u8] {
    match h {
        [b'[', inner @ .., b']'] => inner,
        _ => h,
    }
}

/// Parses a run of ASCII digits as `u32`; `None` on empty input, a non-digit or overflow
/// (RFC 4475 `bigcode`, `scalar02`: overlarge values must not wrap).
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    // A byte's value as a digit; 10 or more for anything else.
    let d = |b: u8| u32::from(b.wrapping_sub(b'0'));
    // Most numbers a SIP message carries (Max-Forwards, Content-Length, CSeq) have one to
    // three digits: read without the loop's overflow checks.
    match *s {
        [] => return None,
        [a] => return (d(a) < 10).then(|| d(a)),
        [a, b] => return (d(a) < 10 && d(b) < 10).then(|| d(a) * 10 + d(b)),
        [a, b, c] => {
            return (d(a) < 10 && d(b) < 10 && d(c) < 10).then(|| d(a) * 100 + d(b) * 10 + d(c));
        }
        _ => {}
    }
    let mut v: u32 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some(v)
}

/// Finds the end of a quoted string starting at `s[start] == b'"'`: the offset just past the
/// closing quote, honouring `\` quoted-pairs. `None` if it never closes.
pub(crate) fn quoted_end(s: &[u8], start: usize, end: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < end {
        i = super::bytemask::find_any(s, i, end, *b"\"\\");
        match s.get(i) {
            Some(b'\\') if i < end => i += 2,
            Some(b'"') if i < end => return Some(i + 1),
            _ => return None,
        }
    }
    None
}

/// Offset of the first `sep` in `s[start..end]` that is outside quotes and `<…>`, or `end`.
/// `None` if a quoted string is left open, which makes the value malformed.
pub(crate) fn find_unquoted(s: &[u8], start: usize, end: usize, sep: u8) -> Option<usize> {
    let mut i = start;
    let mut in_angle = false;
    while i < end {
        // Jump to the next byte that matters.
        let Some(p) = memchr::memchr3(sep, b'"', if in_angle { b'>' } else { b'<' }, &s[i..end])
        else {
            return Some(end);
        };
        i += p;
        match s[i] {
            b'"' => i = quoted_end(s, i, end)?,
            b'<' if !in_angle => {
                in_angle = true;
                i += 1;
            }
            b'>' if in_angle => {
                in_angle = false;
                i += 1;
            }
            b if b == sep && !in_angle => return Some(i),
            _ => i += 1,
        }
    }
    Some(end)
}

/// One `name[=value]` parameter, as trimmed offsets into the buffer it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Param {
    pub name: (usize, usize),
    pub value: Option<(usize, usize)>,
}

/// Splits `s[start..end]` (the text after a leading `;`) into parameters. Calls `f` for each;
/// returns `false` if a parameter has an empty name (RFC 4475 `badinv01`) or a quote never
/// closes.
pub(crate) fn for_each_param(s: &[u8], start: usize, end: usize, mut f: impl FnMut(Param)) -> bool {
    let mut i = start;
    loop {
        let Some(stop) = find_unquoted(s, i, end, b';') else {
            return false;
        };
        let eq = s[i..stop].iter().position(|&b| b == b'=').map(|p| i + p);
        // Every `;` must be followed by a parameter name (RFC 4475 badinv01).
        let (ns, ne) = trim(s, i, eq.unwrap_or(stop));
        if ns == ne || !s[ns..ne].iter().all(|&b| is_token(b)) {
            return false;
        }
        let value = eq.map(|e| trim(s, e + 1, stop));
        f(Param {
            name: (ns, ne),
            value,
        });
        if stop >= end {
            return true;
        }
        i = stop + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_the_standard_parser_reads_digit_runs() {
        let bytes = [b'0', b'1', b'5', b'9', b' ', b'/', b':', b'+', b'-', b'a'];
        let mut cases: Vec<Vec<u8>> = vec![vec![]];
        for len in 1..=4 {
            let mut next = Vec::new();
            for c in cases.iter().filter(|c| c.len() == len - 1) {
                for b in bytes {
                    next.push([&c[..], &[b]].concat());
                }
            }
            cases.extend(next);
        }
        cases.extend(
            [
                "4294967295",
                "4294967296",
                "0004294967295",
                "99999999999",
                "12345",
            ]
            .map(|s| s.into()),
        );
        for c in cases {
            let text = std::str::from_utf8(&c).unwrap();
            let want = text
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| text.parse::<u32>().ok())
                .flatten();
            assert_eq!(parse_u32(&c), want, "{text:?}");
        }
    }

    #[test]
    fn class_runs_match_the_table() {
        for b in 0..=255u8 {
            for at in [0, 1, 5, 15, 16, 17, 30, 33] {
                let mut s = [b'x'; 40];
                s[at] = b;
                s[3] = b'-';
                for end in [0, at, at + 1, 16, 20, 40] {
                    let want = (0..end)
                        .find(|&k| CLASS[usize::from(s[k])] & PLAIN_VALUE == 0)
                        .unwrap_or(end);
                    assert_eq!(
                        skip_class(&s, 0, end, PLAIN_VALUE),
                        want,
                        "{b:#x} at {at} to {end}"
                    );
                }
            }
        }
    }

    #[test]
    fn short_compare_agrees_with_slice_equality() {
        let base = b"SIP/2.0/UDP 192.168.100.200:5060;branch=z9hG4bK-1";
        for n in 0..=base.len() {
            let a = &base[..n];
            assert!(same_bytes(a, a));
            assert!(!same_bytes(a, &base[..n.saturating_sub(1)]) || n == 0);
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_bytes(a, &b), "{n} bytes, byte {at}");
            }
        }
    }

    #[test]
    fn patterns_fold_letters_only() {
        const P: Pattern<1> = Pattern::new(b"call-id:");
        assert!(P.at(b"CALL-ID: x\r\n", 0));
        assert!(P.at(b"xCall-Id:abcdefgh", 1));
        assert!(!P.at(b"call\rid: x\r\n", 0));
        assert!(!P.at(b"call-id\x1a x\r\n", 0));
        assert!(P.at(b"call-id:", 0));
        const V: Pattern<1> = Pattern::new(b"via:");
        assert!(V.at(b"VIA: h\r\n\r\n", 0));
        assert!(!V.at(b"via: h", 0), "fewer than eight bytes readable");
        const Q: Pattern<2> = Pattern::new(b"content-length:");
        assert!(Q.at(b"Content-LENGTH: 12\r\n", 0));
        assert!(!Q.at(b"Content-Lengths: 12\r\n", 0));
    }

    #[test]
    fn numbers_refuse_overflow_and_junk() {
        assert_eq!(parse_u32(b"0068"), Some(68));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b""), None);
    }

    #[test]
    fn unquoted_search_skips_quotes_and_angles() {
        let s = br#""a,b" <sip:x;y,z>, next"#;
        let at = find_unquoted(s, 0, s.len(), b',').unwrap();
        assert_eq!(&s[at..], b", next");
        assert_eq!(find_unquoted(b"\"open", 0, 5, b','), None);
        assert_eq!(find_unquoted(br#""a\"b",c"#, 0, 8, b','), Some(6));
    }

    #[test]
    fn params_trim_and_reject_empty_names() {
        let s = b"  tag    = 19n ; lr;x=\"a;b\"";
        let mut got = Vec::new();
        assert!(for_each_param(s, 0, s.len(), |p| got
            .push((&s[p.name.0..p.name.1], p.value.map(|v| &s[v.0..v.1])))));
        assert_eq!(
            got,
            vec![
                (&b"tag"[..], Some(&b"19n"[..])),
                (&b"lr"[..], None),
                (&b"x"[..], Some(&b"\"a;b\""[..]))
            ]
        );
        assert!(!for_each_param(b";;", 0, 2, |_| {}));
    }
}
