//! Small pieces of a shard's message path: the cached table handle, the lookups routing keys
//! are read through, what the shard remembers between messages (the last source's text, the
//! last replier), local answers (refusals, STUN, replies), and the outbox wrapper that counts
//! keepalives.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Ctx, Shared};
use crate::dispatch::{Destination, HeaderLookup, Table, UriKey};
use crate::engine::counters::{Counters, Dropped};
use crate::engine::outbox::{Outbox, Unsent};
use crate::engine::trust::Refusal;
use crate::sip::Message;
use crate::sip::emit::IpText;
use crate::sip::reply::{Extra, write_reply};
use crate::sip::stun::binding_response;
use crate::sip::uri::{Scheme, Uri};

/// The shared table as a shard reads it: through a cache, so a load is one pointer compare
/// (`ArcSwap::load` cost ~100 instructions, two or three times per request). A reload is still
/// seen at the next message or tick.
pub(super) struct TableOf(pub(super) Arc<Shared>);

impl std::ops::Deref for TableOf {
    type Target = ArcSwap<Table>;

    fn deref(&self) -> &ArcSwap<Table> {
        &self.0.table
    }
}

/// The message's headers by name, for key templates and header-matching algorithms.
pub(super) struct Headers<'m, 'a>(pub(super) &'m Message<'a>);

impl HeaderLookup for Headers<'_, '_> {
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.0.header(name)
    }
}

/// A URI's parts as the hashing algorithms read them.
pub(super) fn uri_key<'a>(buf: &'a [u8], u: &Uri) -> UriKey<'a> {
    UriKey {
        secure: u.scheme == Scheme::Sips,
        user: u.user.map_or(&[][..], |s| s.of(buf)),
        host: u.host.of(buf),
        port: u.port,
    }
}

/// The address of a Route URI whose host is an IP literal.
pub(super) fn route_addr(buf: &[u8], u: &Uri) -> Option<SocketAddr> {
    let ip: IpAddr = std::str::from_utf8(u.host_bare(buf)).ok()?.parse().ok()?;
    let default = if u.scheme == Scheme::Sips { 5061 } else { 5060 };
    Some(SocketAddr::new(ip, u.port.unwrap_or(default)))
}

/// The text of the address the last forwarded request came from, for its `received`: requests
/// come from a few upstreams, mostly one after another from the same, and making the text cost
/// ~70 instructions a request. Behind a `RefCell` because the message path borrows its shard
/// shared.
pub(super) struct SourceText(RefCell<(IpAddr, IpText)>);

impl SourceText {
    pub(super) fn new() -> Self {
        let ip = IpAddr::from([0, 0, 0, 0]);
        Self(RefCell::new((ip, IpText::new(ip))))
    }

    /// `f` on the text of `ip`, made only when `ip` is not the last one asked for.
    pub(super) fn with<R>(&self, ip: IpAddr, f: impl FnOnce(&IpText) -> R) -> R {
        let mut last = self.0.borrow_mut();
        if last.0 != ip {
            *last = (ip, IpText::new(ip));
        }
        f(&last.1)
    }
}

/// The destination a response's source is, as last looked up: responses come from a few
/// destinations, mostly one after another from the same, and the table's hash lookup cost ~90
/// instructions a response. Holds the table it looked in, so a reload (another table) is
/// noticed and an old table's places are never read in a new one; an old table stays alive
/// until the next response, no longer.
pub(super) struct Replier {
    table: Option<Arc<Table>>,
    src: SocketAddr,
    place: Option<(usize, usize)>,
}

impl Replier {
    pub(super) fn new() -> Self {
        Self {
            table: None,
            src: SocketAddr::from(([0, 0, 0, 0], 0)),
            place: None,
        }
    }

    /// `table.dest_at(src)`, remembered for the next call.
    pub(super) fn dest<'t>(
        &mut self,
        table: &'t Arc<Table>,
        src: SocketAddr,
    ) -> Option<&'t Destination> {
        let known = self.src == src && self.table.as_ref().is_some_and(|t| Arc::ptr_eq(t, table));
        if !known {
            self.place = table.place_of(src);
            self.src = src;
            self.table = Some(Arc::clone(table));
        }
        table.dest_in(self.place?)
    }
}

/// Local answers: refusals, STUN keepalives, replies the rules or routing ask for.
impl Ctx<'_> {
    /// A datagram the trust rules refuse: counted, and answered 403 if so configured (requests
    /// only, never ACKs).
    pub(super) fn refuse(&self, data: &[u8], why: Dropped, src: SocketAddr, out: &mut impl Outbox) {
        self.counters.dropped(why);
        if self.shared.trust.refuse == Refusal::Forbidden {
            self.reply(data, 403, "Forbidden", Extra::None, src, out);
        }
    }

    /// A STUN Binding request on the SIP port (a keepalive): answered with the sender's
    /// reflexive address; other STUN messages are dropped.
    pub(super) fn stun(&self, data: &[u8], src: SocketAddr, out: &mut impl Outbox) {
        Counters::inc(&self.counters.keepalives);
        let Some(buf) = out.buffer() else {
            return self.counters.dropped(Dropped::TxFull);
        };
        if let Some(n) = binding_response(data, src, buf) {
            out.commit(n, src);
        }
    }

    pub(super) fn reply(
        &self,
        data: &[u8],
        code: u16,
        reason: &str,
        extra: Extra<'_>,
        src: SocketAddr,
        out: &mut impl Outbox,
    ) {
        let Some(buf) = out.buffer() else {
            return self.counters.dropped(Dropped::TxFull);
        };
        match write_reply(data, code, reason, extra, src, buf) {
            Some(Ok((n, to))) => {
                out.commit(n, to);
                self.counters.reply(code);
            }
            Some(Err(_)) => self.counters.dropped(Dropped::Overflow),
            None => self.counters.dropped(Dropped::Malformed),
        }
    }
}

/// Counts what the prober sends.
pub(super) struct CountingOutbox<'o, O> {
    pub(super) out: &'o mut O,
    pub(super) sent: u64,
}

impl<O: Outbox> Outbox for CountingOutbox<'_, O> {
    fn buffer(&mut self) -> Option<&mut [u8]> {
        self.out.buffer()
    }

    fn commit(&mut self, len: usize, to: SocketAddr) {
        self.sent += 1;
        self.out.commit(len, to);
    }

    fn send_cut(
        &mut self,
        input: &[u8],
        cut: (usize, usize),
        to: SocketAddr,
    ) -> Result<(), Unsent> {
        self.out.send_cut(input, cut, to)?;
        self.sent += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::list;

    /// The remembered answer is the table's, through repeats, other sources and a new table.
    #[test]
    fn replier_answers_as_the_table_does() {
        let table_of =
            |text: &str| Arc::new(Table::build(list::parse(text, "l").unwrap(), None).unwrap());
        let one = table_of("1 sip:198.51.100.7:5070\n1 sip:198.51.100.8:5070\n");
        let two = table_of("1 sip:198.51.100.8:5070\n2 sip:198.51.100.7:5070\n");
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mut r = Replier::new();
        for (table, src) in [
            (&one, "198.51.100.7:5070"),
            (&one, "198.51.100.7:5070"),
            (&one, "198.51.100.8:5070"),
            (&one, "192.0.2.1:5060"),
            (&one, "192.0.2.1:5060"),
            (&one, "198.51.100.7:5070"),
            (&two, "198.51.100.7:5070"),
            (&two, "198.51.100.7:5070"),
            (&two, "198.51.100.8:5070"),
            (&one, "198.51.100.8:5070"),
            (&one, "0.0.0.0:0"),
        ] {
            let want = table.dest_at(at(src)).map(|d| (d.id, &d.uri));
            assert_eq!(
                r.dest(table, at(src)).map(|d| (d.id, &d.uri)),
                want,
                "{src}"
            );
        }
    }
}
