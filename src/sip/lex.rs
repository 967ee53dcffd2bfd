//! Byte-level lexing shared by the scanner modules: whitespace, tokens, numbers, and splitting
//! header values at commas and parameters at semicolons while respecting quotes and `<…>`.
//! Everything works on `&[u8]` and returns offsets; nothing here knows header semantics.
#![forbid(unsafe_code)]

/// Byte classes, looked up in one table instead of chains of comparisons on the hot path.
pub(crate) const TOKEN: u8 = 1;
pub(crate) const LWS: u8 = 2;
/// Bytes that end or split a URI: `@ ? ; : [ ] < >` and whitespace.
pub(crate) const URI_SPECIAL: u8 = 4;

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
            t[b] |= TOKEN;
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
#[inline]
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
    if s.is_empty() {
        return None;
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
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
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
