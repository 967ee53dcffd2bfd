//! Bytes the data plane's readers remember from one message to the next, to know the same
//! bytes again in a few word compares instead of reading them: a Via's head (an upstream
//! repeats its own, every response carries ours), a Route entry (a record-routing proxy gets
//! its own back on every in-dialog request). What the bytes were read as stays with the
//! reader that keeps them; this only says "the same bytes".
#![forbid(unsafe_code)]

use super::bytemask;

/// How many bytes an [`Echo`] keeps at most.
pub const ECHO_MAX: usize = 48;

/// Up to [`ECHO_MAX`] bytes (zeros past the kept ones), compared sixteen at a time
/// ([`bytemask::equal48`]).
#[derive(Clone, Copy, Debug)]
pub struct Echo {
    bytes: [u8; ECHO_MAX],
    /// 0 while nothing is kept.
    len: u8,
}

impl Default for Echo {
    fn default() -> Self {
        Self {
            bytes: [0; ECHO_MAX],
            len: 0,
        }
    }
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
        let kept = (1u64 << self.len) - 1;
        let equal = match buf.get(start..).and_then(|s| s.first_chunk::<ECHO_MAX>()) {
            Some(window) => bytemask::equal48(window, &self.bytes),
            None => bytemask::equal48(&padded(buf, start), &self.bytes),
        };
        equal & kept == kept
    }

    /// Keeps `buf[start..start + n]`; whether it could (1 to [`ECHO_MAX`] bytes within `buf`).
    #[inline(always)]
    pub fn keep(&mut self, buf: &[u8], start: usize, n: usize) -> bool {
        let Some(kept) = buf.get(start..).and_then(|s| s.get(..n)) else {
            return false;
        };
        if n == 0 || n > ECHO_MAX {
            return false;
        }
        self.bytes = [0; ECHO_MAX];
        self.bytes[..n].copy_from_slice(kept);
        self.len = n as u8;
        true
    }
}

/// The [`ECHO_MAX`] bytes of `buf` from `start`, zeros past its end (within 48 bytes of the
/// datagram's end: rare, out of line).
#[cold]
#[inline(never)]
fn padded(buf: &[u8], start: usize) -> [u8; ECHO_MAX] {
    let mut padded = [0; ECHO_MAX];
    let tail = buf.get(start..).unwrap_or_default();
    let n = tail.len().min(ECHO_MAX);
    padded[..n].copy_from_slice(&tail[..n]);
    padded
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
