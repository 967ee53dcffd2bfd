//! One shard's message path, sans I/O: judge the datagram, route it (Route header, Call-ID
//! affinity, or the matching route's algorithm), rewrite it, and write it to an [`Outbox`].
//! Owns the shard's Call-ID tracker and counters; reads the shared destination table. No
//! allocation and no lock per message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Sender;
use std::time::Instant;

use arc_swap::ArcSwap;
use arc_swap::cache::Cache;

use super::counters::{Counters, Dropped};
use super::outbox::{Outbox, Unsent};
use super::route::match_route;
use crate::config::{NoDestination, Route};
use crate::dispatch::tracker::{Begin, CallState, Tracker, call_key, shard_of};
use crate::dispatch::{Algorithm, Candidates, Destination, Keys, Rng, Table, select};
use crate::engine::failover::Failover;
use crate::engine::flood::{Admit, FloodConfig, Limiter};
use crate::engine::trust::{Source, Trust};
use crate::health::{Change, Prober};
use crate::sip::proxy::{
    Forward, Identity, LastHop, ResponseDrop, response_cut, write_request_from,
};
use crate::sip::reply::Extra;
use crate::sip::stun::is_stun;
use crate::sip::verdict::{DropReason, Verdict, judge_scanned, new_request_parts};
use crate::sip::{Message, Method, ScanError, ScanMemory, StartLine, scan_forwarding};

/// How long a finished call stays routable for its last messages (RFC 3261 timer H, 64·T1).
const LINGER_MS: u64 = 32_000;
/// Tracker slots examined for expiry per tick.
const SWEEP_PER_TICK: usize = 256;
/// The expiry sweep goes round the whole tracker this often, so the table holds live calls and
/// ones lingering for their last messages, not calls long over.
const SWEEP_ROUND_MS: u64 = 8_000;

/// What every shard reads: who we are, the routes, and the destination table (swapped whole
/// on reload).
pub struct Shared {
    pub identity: Identity,
    pub routes: Vec<Route>,
    pub table: ArcSwap<Table>,
    pub no_destination: NoDestination,
    pub init_expire_ms: u64,
    pub expire_ms: u64,
    /// Whether keepalive latency figures survive a reload.
    pub retain_latency_stats: bool,
    /// Who may send initial requests, in-dialog requests and responses.
    pub trust: Trust,
    /// Flood protection settings (each shard builds its own limiter from them).
    pub flood: FloodConfig,
    /// Failover records per shard, and the largest request one can copy.
    pub failover_records: usize,
    pub failover_slot: usize,
    /// The clock's zero for millisecond timestamps.
    pub epoch: Instant,
}

/// The shard owning a datagram: by Call-ID hash, so a call's messages meet on one shard in
/// the order they arrived. Datagrams without a Call-ID go to shard 0.
pub fn owner(data: &[u8], nshards: usize) -> usize {
    crate::sip::header::call_id(data).map_or(0, |id| shard_of(id, nshards))
}

/// One shard's state.
pub struct Shard {
    shared: Arc<Shared>,
    table: Cache<TableOf, Arc<Table>>,
    tracker: Tracker,
    cands: Candidates,
    rng: Rng,
    pub counters: Arc<Counters>,
    /// The keepalive prober, on the one shard that runs it, with the table it last adopted.
    prober: Option<(Prober, Arc<Table>)>,
    /// Where destination state changes are reported (logging and hooks live outside).
    changes: Option<Sender<Change>>,
    /// The listen socket (by index) keepalives leave from; the I/O layer reads it.
    pub ping_socket: usize,
    /// INVITE transactions under failover.
    failover: Failover,
    /// The per-source rate limit, when configured.
    flood: Option<Limiter>,
    /// Block log lines this shard may still write in the current tick.
    flood_log_budget: u32,
    /// When the tracker's expiry sweep last ran.
    last_sweep_ms: u64,
    /// The last `now` seen and its milliseconds since the epoch: the I/O layer passes one
    /// `now` for a whole batch, and converting it cost ~45 instructions a datagram.
    clock: (Instant, u64),
    source_text: SourceText,
    senders: Senders,
    /// The last next-hop address a response was sent to, as read from its Via.
    last_hop: LastHop,
    /// What the forwarding scan remembers from one datagram to the next.
    scan_memory: ScanMemory,
}

impl Shard {
    /// A shard with a tracker for `tracker_capacity` calls.
    pub fn new(shared: Arc<Shared>, index: usize, tracker_capacity: usize) -> Self {
        let tracker = Tracker::new(tracker_capacity, shared.init_expire_ms, shared.expire_ms);
        let flood = shared.flood.limiter().ok().flatten();
        let failover = if shared.routes.iter().any(|r| r.failover.is_some()) {
            Failover::new(shared.failover_records, shared.failover_slot)
        } else {
            Failover::new(1, 0)
        };
        let seed = (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ shared.epoch.elapsed().as_nanos() as u64;
        let epoch = shared.epoch;
        Self {
            table: Cache::new(TableOf(Arc::clone(&shared))),
            shared,
            tracker,
            cands: Candidates::default(),
            rng: Rng::new(seed),
            counters: Arc::new(Counters::default()),
            prober: None,
            changes: None,
            ping_socket: 0,
            failover,
            flood,
            flood_log_budget: 1,
            last_sweep_ms: 0,
            clock: (epoch, 0),
            source_text: SourceText::new(),
            senders: Senders::new(),
            last_hop: LastHop::default(),
            scan_memory: ScanMemory::default(),
        }
    }

    /// Makes this shard run `prober`, reporting state changes to `changes`.
    pub fn with_prober(mut self, mut prober: Prober, changes: Option<Sender<Change>>) -> Self {
        let table = Arc::clone(self.table.load());
        prober.adopt(&table, false);
        self.prober = Some((prober, table));
        self.changes = changes;
        self
    }

    /// Flood protection for a datagram that just arrived on this shard: `false` drops it.
    pub fn admit(&mut self, now: Instant, src: SocketAddr) -> bool {
        let now_ms = self.now_ms(now);
        let Some(limiter) = self.flood.as_mut() else {
            return true;
        };
        match limiter.admit(now_ms, src.ip()) {
            Admit::Pass => true,
            Admit::Drop => {
                self.counters.dropped(Dropped::Flood);
                false
            }
            Admit::Blocked => {
                self.counters.dropped(Dropped::Flood);
                Counters::inc(&self.counters.flood_blocks);
                if self.flood_log_budget > 0 {
                    self.flood_log_budget -= 1;
                    tracing::warn!(
                        "flood: {} blocked for {:?} (more than {} datagrams/s)",
                        src.ip(),
                        self.shared.flood.block.0,
                        self.shared.flood.rate
                    );
                }
                false
            }
        }
    }

    /// Reports destination state changes this shard makes (failover marks) to `changes`.
    pub fn report_to(mut self, changes: Sender<Change>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// INVITE transactions under failover right now.
    pub fn failover_records(&self) -> usize {
        self.failover.len()
    }

    /// The prober, if this shard runs it.
    pub fn prober(&self) -> Option<&Prober> {
        self.prober.as_ref().map(|(p, _)| p)
    }

    fn now_ms(&mut self, now: Instant) -> u64 {
        if now != self.clock.0 {
            let ms = now.saturating_duration_since(self.shared.epoch).as_millis() as u64;
            self.clock = (now, ms);
        }
        self.clock.1
    }

    /// Calls tracked right now.
    pub fn tracked(&self) -> usize {
        self.tracker.len()
    }

    /// Periodic work: expire tracked calls, giving back the load of those that counted, and
    /// run the keepalive prober, whose requests go to `out`.
    pub fn tick(&mut self, now: Instant, out: &mut impl Outbox) {
        let now_ms = self.now_ms(now);
        let table = Arc::clone(self.table.load());
        let since = now_ms.saturating_sub(self.last_sweep_ms);
        self.last_sweep_ms = now_ms;
        let slots = self.tracker.slots();
        let work = ((slots as u64 * since / SWEEP_ROUND_MS) as usize).min(slots);
        self.tracker.expire(now_ms, work.max(SWEEP_PER_TICK), |e| {
            if let Some(d) = table.dest(e.dest) {
                d.state.dec_load();
            }
        });
        self.counters
            .tracked_calls
            .store(self.tracker.len() as u64, Relaxed);
        self.counters
            .failover_records
            .store(self.failover.len() as u64, Relaxed);
        for set in table.sets.iter().filter(|s| s.has_caps) {
            for d in &set.dests {
                d.state.caps.tick(now_ms);
            }
        }
        if let Some(l) = self.flood.as_mut() {
            self.flood_log_budget = 1;
            let mut n = 0;
            l.released(now_ms, SWEEP_PER_TICK * 4, |_| n += 1);
            if n > 0 {
                tracing::info!("flood: {n} blocked source(s) released");
            }
        }
        let ctx = Ctx {
            shared: &self.shared,
            counters: &self.counters,
            table: &table,
            now_ms,
            source_text: &self.source_text,
        };
        let mut fo = FailoverState {
            records: &mut self.failover,
            changes: self.changes.as_ref(),
        };
        if !fo.records.is_empty() {
            ctx.failover_timeouts(&mut fo, &mut self.tracker, out);
        }
        let Some((prober, adopted)) = self.prober.as_mut() else {
            return;
        };
        if !Arc::ptr_eq(adopted, &table) {
            // A reload swapped the table: carry the prober over to its destinations.
            *adopted = table;
            prober.adopt(adopted, self.shared.retain_latency_stats);
        }
        let mut counted = CountingOutbox { out, sent: 0 };
        prober.poll(now_ms, adopted, &self.shared.identity, &mut counted);
        let sent = counted.sent;
        self.counters.keepalives_sent.fetch_add(sent, Relaxed);
        for c in prober.take_changes() {
            Counters::inc(&self.counters.health_changes);
            if let Some(tx) = &self.changes {
                let _ = tx.send(c);
            }
        }
    }

    /// Handles one datagram that arrived from `src` on listen socket `sock`.
    pub fn handle(
        &mut self,
        now: Instant,
        sock: usize,
        src: SocketAddr,
        data: &[u8],
        out: &mut impl Outbox,
    ) {
        let now_ms = self.now_ms(now);
        let Self {
            shared,
            table,
            tracker,
            cands,
            rng,
            counters,
            prober,
            changes,
            failover,
            source_text,
            senders,
            last_hop,
            scan_memory,
            ..
        } = self;
        let mut fo = FailoverState {
            records: failover,
            changes: changes.as_ref(),
        };
        let table_arc = table.load();
        let table: &Table = table_arc;
        let ctx = Ctx {
            shared,
            counters,
            table,
            now_ms,
            source_text,
        };
        Counters::inc(&counters.received);
        let (source, sender) = senders.of(&shared.trust, table_arc, sock, src);
        if source == Source::Unknown {
            return ctx.refuse(data, Dropped::Untrusted, src, out);
        }
        if is_stun(data) {
            return ctx.stun(data, src, out);
        }
        // The scan stays in this frame; the verdict refers to it (no copy of the message).
        let scanned = scan_forwarding(data, scan_memory);
        match judge_scanned(data, &scanned, &shared.identity) {
            Verdict::Keepalive => Counters::inc(&counters.keepalives),
            Verdict::Drop(DropReason::Malformed(_)) => counters.dropped(Dropped::Malformed),
            Verdict::Drop(DropReason::AckNotAnswered) => counters.dropped(Dropped::AckNotAnswered),
            Verdict::Reply(r) => ctx.reply(data, r.code, r.reason, r.extra, src, out),
            Verdict::Response(m) => {
                if let StartLine::Response { code, .. } = m.start
                    && let Some(d) = sender
                {
                    d.state.replied(code);
                }
                ctx.response(tracker, &mut fo, prober, last_hop, m, out)
            }
            Verdict::Request(..) if source == Source::PingProxy => {
                ctx.refuse(data, Dropped::Untrusted, src, out)
            }
            // A malformed To is no proof of a dialog either.
            Verdict::Request(m, _) if source != Source::Upstream && m.is_initial() != Ok(false) => {
                ctx.refuse(data, Dropped::UntrustedInitial, src, out)
            }
            Verdict::Request(m, f) => ctx.request(tracker, &mut fo, cands, rng, src, m, &f, out),
        }
    }
}

/// What one datagram's handling borrows from its shard.
struct Ctx<'s> {
    shared: &'s Shared,
    counters: &'s Counters,
    /// The table as this datagram (or tick) found it, loaded once.
    table: &'s Table,
    now_ms: u64,
    source_text: &'s SourceText,
}

impl Ctx<'_> {
    fn response(
        &self,
        tracker: &mut Tracker,
        fo: &mut FailoverState<'_>,
        prober: &mut Option<(Prober, Arc<Table>)>,
        last_hop: &mut LastHop,
        m: &Message<'_>,
        out: &mut impl Outbox,
    ) {
        // Read once: the CSeq method is looked up by name, and both checks below need it.
        let invite = m.cseq_method() == Method::Invite;
        if let StartLine::Response { code, .. } = m.start
            && invite
            && !fo.records.is_empty()
            && self.failover_reply(fo, tracker, m, code, out)
        {
            return Counters::inc(&self.counters.responses_consumed);
        }
        // The received bytes but our Via: the send batch sends them where they lie.
        match response_cut(m, &self.shared.identity, last_hop) {
            Ok((cut, to)) => match out.send_cut(m.wire(), cut, to) {
                Ok(()) => Counters::inc(&self.counters.responses_forwarded),
                Err(Unsent::Full) => return self.counters.dropped(Dropped::TxFull),
                Err(Unsent::Overflow) => return self.counters.dropped(Dropped::Overflow),
            },
            Err(ResponseDrop::ForUs) => {
                if let Some((p, table)) = prober.as_mut() {
                    p.on_reply(self.now_ms, m, table);
                }
                return Counters::inc(&self.counters.responses_consumed);
            }
            Err(ResponseDrop::NotOurVia) => return self.counters.dropped(Dropped::ResponseNotOurs),
            Err(_) => return self.counters.dropped(Dropped::ResponseUnroutable),
        }
        // Call-load bookkeeping on final replies to the initial INVITE.
        let StartLine::Response { code, .. } = m.start else {
            return;
        };
        if !invite || code < 200 {
            return;
        }
        let key = call_key(m.call_id());
        if code < 300 {
            tracker.confirm(key, self.now_ms);
        } else if tracker
            .lookup(key, self.now_ms)
            .is_some_and(|e| e.state == CallState::Init)
        {
            // A failed initial INVITE; a failed re-INVITE leaves its confirmed call alone.
            self.release(tracker, key);
        }
    }

    fn release(&self, tracker: &mut Tracker, key: u64) {
        if let Some(e) = tracker.release(key, self.now_ms, LINGER_MS)
            && e.counted
            && let Some(d) = self.table.dest(e.dest)
        {
            d.state.dec_load();
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        tracker: &mut Tracker,
        fo: &mut FailoverState<'_>,
        cands: &mut Candidates,
        rng: &mut Rng,
        src: SocketAddr,
        m: &Message<'_>,
        f: &Forward,
        out: &mut impl Outbox,
    ) {
        let buf = m.buf;
        // A Route after ours names the next hop (RFC 3261 §16.6 step 7).
        if let Some(u) = f.route_target {
            return match route_addr(buf, &u) {
                Some(to) => self.forward(m, f, false, src, to, out),
                None => self.counters.dropped(Dropped::RouteUnresolvable),
            };
        }
        let shared = self.shared;
        let table = self.table;
        let key = call_key(m.call_id());
        let method = m.method().unwrap_or(Method::Other);

        // Affinity: everything of a tracked call goes where its INVITE went.
        if let Some(e) = tracker.lookup(key, self.now_ms) {
            // Record-routed again where it starts a dialog (a retransmitted INVITE, a CANCEL).
            // The To is read only if some route record-routes, and the Request-URI (a route may
            // match its user) only for a request that starts a dialog: the in-dialog requests
            // of a call need neither, or their To alone.
            let rr = shared.routes.iter().any(|r| r.record_route)
                && match m.is_initial() {
                    Ok(false) => false,
                    Ok(true) => match m.request_uri() {
                        Some(uri) => match_route(&shared.routes, m, &uri)
                            .is_some_and(|(_, r)| r.record_route),
                        None => return self.malformed(buf, ScanError::BadRequestUri, src, out),
                    },
                    Err(e) => return self.malformed(buf, e, src, out),
                };
            if matches!(method, Method::Bye | Method::Cancel) {
                self.release(tracker, key);
            }
            if method == Method::Cancel
                && let Some(r) = fo.records.get_mut(key)
            {
                r.cancelled = true;
            }
            // The try the destination got, so a CANCEL or non-2xx ACK matches its INVITE.
            let f = &Forward { fork: e.fork, ..*f };
            return match table.dest(e.dest).and_then(|d| d.addr) {
                Some(to) => self.forward(m, f, rr, src, to, out),
                None => self.counters.dropped(Dropped::DestinationUnresolved),
            };
        }

        // A request of no call the shard knows is read whole: what the scan left unread (its
        // Request-URI, whether it starts a dialog) is read now, and refused as the full scan
        // refuses it where malformed.
        let (uri, initial) = match new_request_parts(m) {
            Ok(parts) => parts,
            Err(e) => return self.malformed(buf, e, src, out),
        };
        let Some((route_idx, route)) = match_route(&shared.routes, m, &uri) else {
            let why = Extra::Warning("no route matches");
            return self.reply(buf, 404, "Not Found", why, src, out);
        };
        // From and To URIs are parsed only for the algorithms that hash them.
        let uris = matches!(
            route.selector.algorithm,
            Algorithm::HashFrom | Algorithm::HashTo | Algorithm::HashKey
        );
        let key_of = |p: Option<crate::sip::uri::Party>| {
            p.and_then(|p| p.parse_uri(buf)).map(|u| uri_key(buf, &u))
        };
        let keys = Keys {
            method: m.method_bytes(),
            call_id: m.call_id(),
            from_uri: uris.then(|| key_of(m.from())).flatten(),
            to_uri: uris.then(|| key_of(m.to())).flatten(),
            ruri: Some(uri_key(buf, &uri)),
            auth_user: m.auth_user.map(|s| s.of(buf)),
            headers: &Headers(m),
        };
        let set = table.set(route.set);
        let selected = set.map(|set| select(set, &route.selector, &keys, rng, self.now_ms, cands));
        let (Some(set), Some(Ok(()))) = (set, selected) else {
            let nd = &shared.no_destination;
            let extra = nd.retry_after.map_or(Extra::None, Extra::RetryAfter);
            return self.reply(buf, nd.code, &nd.reason, extra, src, out);
        };
        let record_route = route.record_route && initial;
        if route.selector.algorithm == Algorithm::Parallel {
            for (i, &d) in cands.as_slice().iter().enumerate() {
                let fork = Forward {
                    fork: (i + 1).min(255) as u8,
                    ..*f
                };
                self.send_to(m, &fork, record_route, src, &set.dests[usize::from(d)], out);
            }
            return;
        }
        let Some(dest) = cands.first().map(|i| &set.dests[i]) else {
            return;
        };
        if method == Method::Invite && initial {
            if set.has_caps {
                for d in set
                    .dests
                    .iter()
                    .filter(|d| d.state.is_up() && d.state.at_cap())
                {
                    d.state.caps.skipped.fetch_add(1, Relaxed);
                }
            }
            dest.state.caps.call(self.now_ms);
            // A concurrent-calls cap needs the call counted, whatever the algorithm.
            let counted = route.selector.algorithm == Algorithm::CallLoad
                || dest.state.caps.maxcalls.load(Relaxed) > 0;
            match tracker.begin(key, set.id, dest.id, counted, self.now_ms) {
                Begin::New if counted => dest.state.inc_load(),
                Begin::Replaced(old) => {
                    if old.counted
                        && let Some(d) = table.dest(old.dest)
                    {
                        d.state.dec_load();
                    }
                    if counted {
                        dest.state.inc_load();
                    }
                }
                Begin::Full => Counters::inc(&self.counters.tracker_full),
                Begin::New | Begin::Existing(_) => {}
            }
            if let Some(policy) = &route.failover {
                self.start_failover(
                    fo.records,
                    route_idx,
                    policy,
                    set,
                    cands,
                    m,
                    src,
                    record_route,
                );
            }
        }
        self.send_to(m, f, record_route, src, dest, out);
    }

    fn send_to(
        &self,
        m: &Message<'_>,
        f: &Forward,
        rr: bool,
        src: SocketAddr,
        dest: &Destination,
        out: &mut impl Outbox,
    ) {
        match dest.addr {
            Some(to) => {
                dest.state.requests.fetch_add(1, Relaxed);
                self.forward(m, f, rr, src, to, out);
            }
            None => self.counters.dropped(Dropped::DestinationUnresolved),
        }
    }

    fn forward(
        &self,
        m: &Message<'_>,
        f: &Forward,
        rr: bool,
        src: SocketAddr,
        to: SocketAddr,
        out: &mut impl Outbox,
    ) {
        let Some(buf) = out.buffer() else {
            return self.counters.dropped(Dropped::TxFull);
        };
        let me = &self.shared.identity;
        let written = self.source_text.with(src.ip(), |text| {
            write_request_from(m, f, rr, me, src, text, buf)
        });
        match written {
            Ok(n) => {
                out.commit(n, to);
                Counters::inc(&self.counters.requests_forwarded);
            }
            Err(_) => self.counters.dropped(Dropped::Overflow),
        }
    }
}

#[path = "shard_parts.rs"]
mod parts;
use parts::{CountingOutbox, Headers, Senders, SourceText, TableOf, route_addr, uri_key};

#[path = "retry.rs"]
mod retry;
use retry::FailoverState;

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
