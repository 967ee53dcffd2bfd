//! SIP wire handling without I/O: the scanner that finds what routing needs in one datagram, and
//! the stateless-proxy rules that turn a scanned message into the bytes to send.
#![forbid(unsafe_code)]

pub mod ack;
mod bytemask;
pub mod echo;
pub mod emit;
mod fields;
pub mod header;
pub mod invariants;
pub(crate) mod lex;
mod next_hop;
pub mod proxy;
pub mod reply;
pub mod scan;
mod start_line;
pub mod stun;
pub mod uri;
pub mod verdict;
pub mod via;

pub use scan::{
    Message, Method, RequestUri, ScanError, ScanMemory, Scanned, StartLine, scan, scan_forwarding,
};

/// A range of a datagram. Offsets are `u16` because the scanner refuses datagrams over 64 KiB,
/// which keeps scanned messages small enough to live on the stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u16,
    pub end: u16,
}

impl Span {
    /// Builds a span; callers only pass offsets of a datagram the scanner accepted (≤ 64 KiB).
    #[inline]
    pub fn new(start: usize, end: usize) -> Self {
        Self {
            start: start as u16,
            end: end as u16,
        }
    }

    #[inline]
    pub fn start(self) -> usize {
        usize::from(self.start)
    }

    #[inline]
    pub fn end(self) -> usize {
        usize::from(self.end)
    }

    #[inline]
    pub fn len(self) -> usize {
        self.end().saturating_sub(self.start())
    }

    #[inline]
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The bytes of `buf` this span covers; empty if it does not fit (never panics).
    #[inline]
    pub fn of(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start()..self.end()).unwrap_or(&[])
    }
}
