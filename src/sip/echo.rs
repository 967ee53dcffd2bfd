//! Bytes the data plane's readers remember from one message to the next, to know the same
//! bytes again in a few word compares instead of reading them: a Via's head (an upstream
//! repeats its own, every response carries ours), a Route entry (a record-routing proxy gets
//! its own back on every in-dialog request). What the bytes were read as stays with the
//! reader that keeps them; this only says "the same bytes".
#![forbid(unsafe_code)]

/// How many bytes an [`Echo`] keeps at most: three 16-byte words.
pub const ECHO_MAX: usize = 16 * WORDS;
const WORDS: usize = 3;

/// Up to [`ECHO_MAX`] bytes, as three 16-byte words and the masks of the bytes that count.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo {
    words: [u128; WORDS],
    masks: [u128; WORDS],
    /// 0 while nothing is kept.
    len: u8,
}

impl Echo {
    /// How many bytes are kept (0: none).
    #[inline(always)]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `buf` holds the kept bytes from `start` (false while nothing is kept).
    #[inline(always)]
    pub fn at(&self, buf: &[u8], start: usize) -> bool {
        if self.len == 0 || start + self.len() > buf.len() {
            return false;
        }
        let [w0, w1, w2] = words_at(buf, start);
        let [k0, k1, k2] = self.words;
        let [m0, m1, m2] = self.masks;
        ((w0 ^ k0) & m0) | ((w1 ^ k1) & m1) | ((w2 ^ k2) & m2) == 0
    }

    /// Keeps `buf[start..start + n]`; whether it could (1 to [`ECHO_MAX`] bytes within `buf`).
    #[inline(always)]
    pub fn keep(&mut self, buf: &[u8], start: usize, n: usize) -> bool {
        if n == 0 || n > ECHO_MAX || start + n > buf.len() {
            return false;
        }
        // Which bytes of the word that starts at byte `lo` are kept.
        let mask = |lo: usize| match n.saturating_sub(lo) {
            0 => 0,
            k if k >= 16 => u128::MAX,
            k => (1u128 << (8 * k)) - 1,
        };
        let masks = [mask(0), mask(16), mask(32)];
        let [w0, w1, w2] = words_at(buf, start);
        *self = Self {
            words: [w0 & masks[0], w1 & masks[1], w2 & masks[2]],
            masks,
            len: n as u8,
        };
        true
    }
}

/// The three 16-byte words of `buf` from `start`; past the end of `buf`, zeros.
#[inline(always)]
fn words_at(buf: &[u8], start: usize) -> [u128; WORDS] {
    match buf.get(start..start + ECHO_MAX) {
        Some(s) => words(s.try_into().unwrap_or(&[0; ECHO_MAX])),
        None => padded_words(buf, start),
    }
}

/// [`words_at`] within 48 bytes of the datagram's end (rare: out of line).
#[cold]
#[inline(never)]
fn padded_words(buf: &[u8], start: usize) -> [u128; WORDS] {
    let mut padded = [0; ECHO_MAX];
    let tail = buf.get(start..).unwrap_or_default();
    padded[..tail.len()].copy_from_slice(tail);
    words(&padded)
}

#[inline(always)]
fn words(s: &[u8; ECHO_MAX]) -> [u128; WORDS] {
    let word = |k: usize| {
        let w: [u8; 16] = s[16 * k..16 * k + 16].try_into().unwrap_or_default();
        u128::from_le_bytes(w)
    };
    [word(0), word(1), word(2)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept bytes are found again wherever they are, and only where every kept byte is equal,
    /// at every length, near the end of the buffer included.
    #[test]
    fn kept_bytes_are_known_again_and_nothing_else() {
        let text = b"<sip:192.0.2.1:5060;lr;some-longer-parameter=value-xx>";
        for n in 1..=ECHO_MAX {
            let mut e = Echo::default();
            assert!(!e.at(text, 0), "nothing kept yet");
            assert!(e.keep(text, 0, n));
            assert_eq!(e.len(), n);
            // Elsewhere, followed by anything, or at the very end of a buffer.
            let mut moved = b"xx".to_vec();
            moved.extend_from_slice(&text[..n]);
            assert!(e.at(&moved, 2), "{n}");
            moved.push(b'!');
            assert!(e.at(&moved, 2), "{n}");
            for i in 0..n {
                let mut other = moved.clone();
                other[2 + i] ^= 0x20;
                assert!(!e.at(&other, 2), "{n}: byte {i} differs");
            }
            // Cut short by the end of the buffer.
            assert!(!e.at(&moved[..n + 1], 2), "{n}");
        }
        let mut e = Echo::default();
        assert!(!e.keep(text, 0, 0));
        assert!(!e.keep(text, 0, ECHO_MAX + 1));
        assert!(!e.keep(text, text.len() - 3, 4));
    }
}
