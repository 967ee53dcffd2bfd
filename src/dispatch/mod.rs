//! Dispatching: destination sets (from Kamailio's `dispatcher.list` or the TOML config), the
//! selection algorithms with Kamailio's semantics, and the Call-ID tracker. Pure code over the
//! fields the scanner extracted: it never parses SIP and never touches a socket.
#![forbid(unsafe_code)]

pub mod algorithm;
pub mod destination;
pub mod hash;
pub mod key;
pub mod list;
pub mod table;
pub mod tracker;
pub mod weights;

pub use algorithm::{
    Algorithm, AlgorithmError, Candidates, HashMode, NoDestination, Numbering, Rng, Selector,
    select,
};
pub use destination::{Attrs, DestId, DestSpec, DestState, SetSpec, flags};
pub use key::KeyTemplate;
pub use table::{Destination, Set, Table};

/// The parts of a SIP URI that hashing reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriKey<'a> {
    /// `sips:` (default port 5061) rather than `sip:` (5060).
    pub secure: bool,
    pub user: &'a [u8],
    pub host: &'a [u8],
    pub port: Option<u16>,
}

/// A header's raw value by name, for key templates.
pub trait HeaderLookup {
    fn header(&self, name: &[u8]) -> Option<&[u8]>;
}

/// The fields of one request the algorithms read.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub method: &'a [u8],
    pub call_id: &'a [u8],
    pub from_uri: Option<UriKey<'a>>,
    pub to_uri: Option<UriKey<'a>>,
    pub ruri: Option<UriKey<'a>>,
    /// Digest username of Proxy-Authorization, else Authorization.
    pub auth_user: Option<&'a [u8]>,
    pub headers: &'a dyn HeaderLookup,
}
