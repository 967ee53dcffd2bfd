//! Small pieces of a shard's message path: the cached table handle, the lookups routing keys
//! are read through, what the shard remembers between messages (the last source's text, the
//! trust class and destination of a few senders), local answers (refusals, STUN, replies),
//! and the outbox wrapper that counts keepalives.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Ctx, Shared};
use crate::dispatch::{Destination, HeaderLookup, Table, UriKey};
use crate::engine::counters::{Counters, Dropped};
use crate::engine::outbox::{Outbox, Unsent};
use crate::engine::trust::{Refusal, Source, Trust};
use crate::sip::emit::IpText;
use crate::sip::reply::{Extra, write_reply};
use crate::sip::stun::binding_response;
use crate::sip::uri::{Scheme, Uri};
use crate::sip::verdict::{Verdict, malformed};
use crate::sip::{Message, ScanError};

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

/// What the shard last worked out about each of a few senders: its trust class
/// ([`Trust::source`]) and the destination at its address ([`Table::place_of`]). Datagrams come
/// from a few senders (an SBC, a farm of media servers), and working both out for each one cost
/// ~60 instructions, ~150 for a destination outside the upstream networks (a hash lookup for
/// each). One slot per sender hash; the table the answers were worked out in is held, so a
/// reload (another table) clears them and an old table's places are never read in a new one
/// (an old table stays alive until the next datagram, no longer).
pub(super) struct Senders {
    table: Option<Arc<Table>>,
    slots: [Option<Sender>; SENDER_SLOTS],
}

const SENDER_SLOTS: usize = 16;

#[derive(Clone, Copy)]
struct Sender {
    sock: usize,
    src: SocketAddr,
    source: Source,
    place: Option<(usize, usize)>,
}

impl Senders {
    pub(super) fn new() -> Self {
        Self {
            table: None,
            slots: [None; SENDER_SLOTS],
        }
    }

    /// `trust.source(sock, src, table)` and `table.dest_at(src)`, remembered for the next
    /// datagrams from `src` on `sock`.
    #[inline]
    pub(super) fn of<'t>(
        &mut self,
        trust: &Trust,
        table: &'t Arc<Table>,
        sock: usize,
        src: SocketAddr,
    ) -> (Source, Option<&'t Destination>) {
        if !self.table.as_ref().is_some_and(|t| Arc::ptr_eq(t, table)) {
            self.slots = [None; SENDER_SLOTS];
            self.table = Some(Arc::clone(table));
        }
        let slot = &mut self.slots[slot_of(src)];
        let sender = match slot {
            Some(s) if s.src == src && s.sock == sock => *s,
            _ => *slot.insert(Sender {
                sock,
                src,
                source: trust.source(sock, src, table),
                place: table.place_of(src),
            }),
        };
        (sender.source, sender.place.and_then(|p| table.dest_in(p)))
    }
}

/// A sender's slot: its address's last bits and port, mixed.
fn slot_of(src: SocketAddr) -> usize {
    let low = match src.ip() {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => u128::from(a) as u32,
    };
    let h = (low ^ u32::from(src.port()).rotate_left(16)).wrapping_mul(0x9e37_79b9);
    (h >> 28) as usize % SENDER_SLOTS
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

    /// A request refused for what a decision read after the scan (which left it unread), as
    /// the scan's refusal would have been: a 400 (an ACK is dropped).
    pub(super) fn malformed(
        &self,
        data: &[u8],
        e: ScanError,
        src: SocketAddr,
        out: &mut impl Outbox,
    ) {
        match malformed::<()>(data, e) {
            Verdict::Reply(r) => self.reply(data, r.code, r.reason, r.extra, src, out),
            _ => self.counters.dropped(Dropped::Malformed),
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
    use crate::engine::trust::TrustConfig;

    /// The remembered answers are the trust rules' and the table's, through repeats, senders
    /// sharing a slot, another socket and a new table.
    #[test]
    fn senders_answer_as_the_trust_rules_and_the_table_do() {
        let table_of =
            |text: &str| Arc::new(Table::build(list::parse(text, "l").unwrap(), None).unwrap());
        let one = table_of("1 sip:198.51.100.7:5070\n1 sip:198.51.100.8:5070\n");
        let two = table_of("1 sip:198.51.100.8:5070\n2 sip:198.51.100.7:5070\n");
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let listen = [at("192.0.2.100:5060"), at("[2001:db8::100]:5060")];
        let trust = TrustConfig {
            upstreams: vec!["192.0.2.0/28".into(), "2001:db8::/64".into()],
            ..TrustConfig::default()
        }
        .resolve(&listen)
        .unwrap();
        let mut senders = Senders::new();
        let mut srcs = vec![
            "198.51.100.7:5070",
            "198.51.100.7:5070",
            "198.51.100.8:5070",
            "192.0.2.1:5060",
            "192.0.2.1:5060",
            "203.0.113.9:5060",
            "[2001:db8::1]:5060",
            "[::ffff:198.51.100.7]:5070",
            "198.51.100.7:5070",
            "0.0.0.0:0",
        ];
        // Enough senders that some share a slot.
        let many: Vec<String> = (0..40)
            .map(|i| format!("192.0.2.{i}:{}", 5060 + i))
            .collect();
        srcs.extend(many.iter().map(String::as_str));
        srcs.extend(["198.51.100.7:5070", "198.51.100.8:5070"]);
        for table in [&one, &two, &one] {
            for sock in [0, 1, 0] {
                for &src in &srcs {
                    let want = (
                        trust.source(sock, at(src), table),
                        table.dest_at(at(src)).map(|d| (d.id, &d.uri)),
                    );
                    let (source, dest) = senders.of(&trust, table, sock, at(src));
                    assert_eq!(
                        (source, dest.map(|d| (d.id, &d.uri))),
                        want,
                        "{src} on {sock}"
                    );
                }
            }
        }
    }
}
