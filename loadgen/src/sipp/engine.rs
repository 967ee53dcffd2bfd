//! The scenario engine, sans I/O: calls keyed by Call-ID, each walking the scenario's steps
//! (see [`super::flow`]); messages matched to steps as SIPp matches them (response code plus
//! CSeq method, optional steps skipped forward and looked up backward, `optional="global"`),
//! UDP retransmissions with SIPp's timers, pauses, receive timeouts, `-aa`, and SIPp's default
//! behaviours on unexpected messages. Time is an argument; sends go out through [`Net`].

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sipdispatch::sip::{Message, Scanned, StartLine, scan};

use super::abort::AbortMessages;
use super::actions::unit;
pub use super::call::Env;
use super::call::{Call, CallValues, Wake, store_route_set};
use super::flow::After;
use super::pace::Quota;
use super::scenario::{Kind, Scenario};
use super::stats::Stats;
use super::vars::{Var, View};
use super::wheel::Wheel;
use super::wire::{simple_reply, top_branch};

/// Where the engine's messages go.
pub trait Net {
    fn send(&mut self, to: SocketAddr, data: &[u8]);
}

/// Requests `-aa` answers with a 200 when they are not part of the scenario.
const AUTO_ANSWERED: [&[u8]; 4] = [b"INFO", b"NOTIFY", b"OPTIONS", b"UPDATE"];

/// All calls of one run.
/// What a message is rendered with for `call`: the environment, its variables, the globals.
/// Free-standing (not a method) because the caller holds `call` out of `Engine::calls`.
pub(super) fn values<'a>(
    env: &'a Env,
    globals: &'a [Var],
    sc: &'a Scenario,
    call: &'a Call,
) -> CallValues<'a> {
    CallValues {
        env,
        call,
        vars: View {
            local: &call.vars,
            global: globals,
            is_global: &sc.var_global,
        },
        last: OnceCell::new(),
    }
}

pub struct Engine {
    pub sc: Scenario,
    pub env: Env,
    pub stats: Stats,
    pub(super) calls: Vec<Option<Call>>,
    pub(super) gens: Vec<u32>,
    free: Vec<usize>,
    /// Live calls by a hash of their Call-ID (checked against the call's own).
    by_id: HashMap<u64, usize, Keyed>,
    pub(super) dead: HashSet<u64, Keyed>,
    pub(super) dead_order: VecDeque<(Instant, u64)>,
    spare: Vec<Call>,
    pub(super) timers: Wheel,
    pub(super) due: Vec<(usize, u32)>,
    created: u64,
    /// UAS: no new calls once this many were created (`-m`) ...
    pub max_calls: Option<u64>,
    /// ... or, with several workers, once their shared quota is used up.
    pub quota: Option<Arc<Quota>>,
    /// Calls are numbered `offset + 1`, then every `step`: unique across workers.
    number_offset: u64,
    number_step: u64,
    /// No new calls at all (quitting).
    pub closed: bool,
    /// Error-log lines (`-trace_err`) for the caller to write, when enabled.
    pub errors: Option<Vec<String>>,
    /// `<log>` lines (`-trace_logs`) for the caller to write, when enabled.
    pub logs: Option<Vec<String>>,
    /// `exec int_cmd="stop_now"` ran: the run ends at once (exit 97).
    pub stop_now: bool,
    /// An `<error>` action ran: SIPp's fatal error, the run ends (exit 255).
    pub fatal: Option<String>,
    /// `-aa`: answer INFO, NOTIFY, OPTIONS and UPDATE outside the scenario with 200.
    pub auto_answer: bool,
    /// `-users`: users free to start a call, taken from the back, returned to the front.
    free_users: VecDeque<u64>,
    /// `-trace_rtt`: each response time measured (when, how long, which RTD).
    pub rtt: Option<Vec<(Instant, std::time::Duration, usize)>>,
    pub(super) aborts: AbortMessages,
    pub(super) globals: Vec<Var>,
    pub(super) rng: u64,
    pub(super) scratch: Vec<u8>,
    /// Processing a message `_unexp.main` queued (it cannot be sent there again).
    pub(super) replaying: bool,
    /// `<User>` variables of each `-users` user between its calls.
    pub(super) user_vars: Vec<Vec<Var>>,
}

impl Engine {
    pub fn new(sc: Scenario, env: Env, max_calls: Option<u64>) -> Self {
        let stats = Stats::new(
            sc.rtds.len(),
            sc.counters.len(),
            sc.rt_repartition.clone(),
            sc.cl_repartition.clone(),
        );
        let globals = vec![Var::Unset; sc.vars.len()];
        let free_users = (1..=env.users.unwrap_or(0)).rev().collect();
        let rng = u64::from(env.pid) << 20 | 0x9E37_79B9;
        Self {
            sc,
            env,
            stats,
            calls: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::default(),
            dead: HashSet::default(),
            dead_order: VecDeque::new(),
            spare: Vec::new(),
            timers: Wheel::new(Instant::now()),
            due: Vec::new(),
            created: 0,
            max_calls,
            quota: None,
            number_offset: 0,
            number_step: 1,
            closed: false,
            errors: None,
            logs: None,
            stop_now: false,
            fatal: None,
            auto_answer: false,
            free_users,
            rtt: None,
            aborts: AbortMessages::default(),
            globals,
            rng,
            scratch: Vec::with_capacity(4096),
            replaying: false,
            user_vars: Vec::new(),
        }
    }

    /// Worker `k` of `n`: call numbers `k+1, k+1+n, ...` and, with `-users`, the users of the
    /// same stripe.
    pub fn stripe(&mut self, k: u64, n: u64) {
        self.number_offset = k;
        self.number_step = n.max(1);
        self.free_users = (1..=self.env.users.unwrap_or(0))
            .filter(|u| (u - 1) % self.number_step == k)
            .rev()
            .collect();
    }

    /// Users this worker runs (`-users`).
    pub fn users(&self) -> u64 {
        self.free_users.len() as u64
    }

    /// `-set name value`: a run-wide string variable.
    pub fn set_global(&mut self, name: &str, value: &str) {
        if let Some(i) = self.sc.vars.iter().position(|v| v == name) {
            self.globals[i] = Var::Str(value.as_bytes().to_vec());
        }
    }

    pub fn open_calls(&self) -> usize {
        self.by_id.len()
    }

    pub fn created(&self) -> u64 {
        self.created
    }

    pub(super) fn new_call(
        &mut self,
        now: Instant,
        call_id: Option<&[u8]>,
        peer: SocketAddr,
    ) -> usize {
        self.created += 1;
        let number = self.number_offset + 1 + self.number_step * (self.created - 1);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.calls.push(None);
            self.gens.push(0);
            self.calls.len() - 1
        });
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        let user = if self.sc.uac {
            self.free_users.pop_back().unwrap_or(0)
        } else {
            0
        };
        // An ended call's buffers are reused: a call allocates nothing in steady state.
        let mut call = self.spare.pop().unwrap_or_else(|| Call::blank(now, peer));
        call.reset(now, peer, number, user, self.env.base_cseq);
        match call_id {
            Some(id) => {
                call.call_id.clear();
                call.call_id.extend_from_slice(id);
            }
            None => self.env.call_id(number, &mut call.call_id),
        }
        let rtds = self.sc.rtds.len();
        call.rtd_start.resize(rtds, now);
        call.rtd_start.fill(now);
        call.rtd_done.resize(rtds, false);
        call.rtd_done.fill(false);
        call.txn_branch.resize_with(self.sc.txns.len(), Vec::new);
        for b in &mut call.txn_branch {
            b.clear();
        }
        call.lines.clear();
        for f in self.env.inject.iter() {
            call.lines.push(f.take_line(user, &mut self.rng));
        }
        call.vars.resize(self.sc.vars.len(), Var::Unset);
        call.vars.fill(Var::Unset);
        self.swap_user_vars(user, &mut call.vars);
        if self.by_id.insert(cid_key(&call.call_id), slot).is_some() {
            // Two live Call-IDs with the same 64-bit hash: the older call is orphaned.
            self.stats.count(|c| c.warnings += 1);
        }
        self.calls[slot] = Some(call);
        self.stats.current_calls += 1;
        if self.sc.uac {
            self.stats.count(|c| c.outgoing += 1);
        } else {
            self.stats.count(|c| c.incoming += 1);
        }
        slot
    }

    pub(super) fn end_call(&mut self, slot: usize, now: Instant, failure: Option<usize>) {
        let Some(mut call) = self.calls[slot].take() else {
            return;
        };
        self.swap_user_vars(call.user, &mut call.vars);
        let key = cid_key(&call.call_id);
        self.by_id.remove(&key);
        self.free.push(slot);
        if call.user != 0 {
            self.free_users.push_front(call.user);
        }
        self.stats.call_ended(now - call.created, failure);
        self.dead.insert(key);
        self.dead_order
            .push_back((now + self.env.deadcall_wait, key));
        self.spare.push(call);
    }

    /// `<User>` variables: a call of user `user` (1..) takes the values its user's last call
    /// left, and gives them back when it ends (one call per user at a time, so swapping is
    /// enough). Without `-users` (user 0) they are the call's own.
    fn swap_user_vars(&mut self, user: u64, vars: &mut [Var]) {
        if user == 0 || !self.sc.var_user.contains(&true) {
            return;
        }
        let u = user as usize - 1;
        if self.user_vars.len() <= u {
            self.user_vars.resize(u + 1, Vec::new());
        }
        let saved = &mut self.user_vars[u];
        saved.resize(vars.len(), Var::Unset);
        for (i, v) in vars.iter_mut().enumerate() {
            if self.sc.var_user[i] {
                std::mem::swap(v, &mut saved[i]);
            }
        }
    }

    /// Whether a UAS may take one more call (`-m`).
    fn admits(&self) -> bool {
        match &self.quota {
            Some(q) => q.take(),
            None => self.max_calls.is_none_or(|max| self.created < max),
        }
    }

    /// The live call with this Call-ID.
    fn lookup(&self, cid: &[u8]) -> Option<usize> {
        let &slot = self.by_id.get(&cid_key(cid))?;
        self.calls[slot]
            .as_ref()
            .is_some_and(|c| c.call_id == cid)
            .then_some(slot)
    }

    pub(super) fn arm(&mut self, slot: usize, at: Instant) {
        self.timers.insert(at, slot, self.gens[slot]);
    }

    /// Handles one received datagram.
    pub fn on_datagram(&mut self, now: Instant, src: SocketAddr, data: &[u8], net: &mut impl Net) {
        let Ok(Scanned::Message(m)) = scan(data) else {
            self.stats.count(|c| c.warnings += 1);
            return;
        };
        let cid = m.call_id();
        let slot = match self.lookup(cid) {
            Some(s) => s,
            None if self.dead.contains(&cid_key(cid)) => {
                self.stats.count(|c| c.dead_call += 1);
                return;
            }
            None if !self.sc.uac && !self.closed && self.admits() => {
                self.new_call(now, Some(cid), src)
            }
            None if self.sc.uac
                && ((self.auto_answer && auto_answered(&m))
                    || (self.env.behaviors.ping_reply && ping(&m))) =>
            {
                net.send(src, &simple_reply(&m));
                self.stats.count(|c| c.auto_answered += 1);
                return;
            }
            None => {
                self.stats.count(|c| c.out_of_call += 1);
                return;
            }
        };
        let hash = msg_hash(data);
        let Some(call) = self.calls[slot].as_mut() else {
            return;
        };
        if hash == call.last_hash && !call.last_msg.is_empty() {
            self.stats.count(|c| c.retransmissions += 1);
            // Counted on the receive step the original matched: the last one before the
            // call's current step.
            if let Some(i) = (0..call.idx.min(self.sc.steps.len()))
                .rev()
                .find(|&i| matches!(self.sc.steps[i].kind, Kind::Recv { .. }))
            {
                self.stats.step(i).retrans += 1;
            }
            if !call.reply_to_last.is_empty() {
                net.send(call.peer, &call.reply_to_last);
            }
            return;
        }
        if matches!(m.start, StartLine::Request { .. }) && m.method_bytes() == b"ACK" {
            call.established = true;
        }
        let steps = &self.sc.steps;
        let mut found = None;
        let mut j = call.idx;
        while let Some(s) = steps.get(j) {
            match &s.kind {
                Kind::Recv { optional, .. } => {
                    if matches(&s.kind, &m, j, &call.txn_branch) {
                        found = Some(j);
                        break;
                    }
                    if !optional {
                        break;
                    }
                }
                _ => break,
            }
            j += 1;
        }
        if found.is_none() {
            // Earlier steps: a contiguous run of optional ones just passed (a 180 after the
            // 200), or any `optional="global"` one.
            let mut contig = true;
            let mut j = call.idx;
            while j > 0 {
                j -= 1;
                let Kind::Recv {
                    optional, global, ..
                } = &steps[j].kind
                else {
                    contig = false;
                    continue;
                };
                contig &= *optional;
                if !matches(&steps[j].kind, &m, j, &call.txn_branch) {
                    continue;
                }
                if contig || *global {
                    found = Some(j);
                    break;
                }
                // A late response to a transaction already answered: a provisional one is
                // ignored, a final one to an INVITE gets its ACK again.
                let txn = match &steps[j].kind {
                    Kind::Recv { txn, .. } => *txn,
                    _ => None,
                };
                let StartLine::Response { code, .. } = m.start else {
                    continue;
                };
                let ack = match txn {
                    Some(_) if code < 200 => return,
                    Some(t) => self.sc.txn_ack[t],
                    None if m.cseq_method.of(data) == b"INVITE" => Some(j + 1),
                    None => None,
                };
                if let Some(a) = ack
                    && let Some(Kind::Send { msg, .. }) = steps.get(a).map(|s| &s.kind)
                    && msg.method.as_deref() == Some("ACK")
                {
                    let mut buf = std::mem::take(&mut self.scratch);
                    call.msg_index = a;
                    msg.render(&values(&self.env, &self.globals, &self.sc, call), &mut buf);
                    net.send(call.peer, &buf);
                    self.scratch = buf;
                    return;
                }
                if txn.is_some() {
                    return;
                }
            }
        }
        let Some(j) = found else {
            // With `_unexp.main` every unexpected message goes to the handler (SIPp answers
            // nothing by itself then).
            if self.sc.unexp_main.is_none()
                && ((self.auto_answer && auto_answered(&m))
                    || (self.env.behaviors.ping_reply && ping(&m)))
            {
                net.send(call.peer, &simple_reply(&m));
                self.stats.count(|c| c.auto_answered += 1);
                return;
            }
            let at = call.idx;
            self.stats.step(at).unexpected += 1;
            self.unexpected(slot, now, src, &m, net);
            return;
        };
        let step = &steps[j];
        // `lost`: this message is dropped on purpose, as if it never arrived.
        let lost = step.lost.unwrap_or(self.env.lost);
        if lost > 0.0 && unit(&mut self.rng) * 100.0 < lost {
            return;
        }
        let (optional, rrs) = match step.kind {
            Kind::Recv { optional, rrs, .. } => (optional, rrs),
            _ => (false, false),
        };
        let mut rearm = None;
        match m.start {
            StartLine::Response { code, .. } => {
                call.ack_pending |= code == 200;
                if let Some(t) = m.to_tag() {
                    call.peer_tag.clear();
                    call.peer_tag.extend_from_slice(t.of(data));
                }
                // SIPp stops retransmitting on a response to what it sent last; a provisional
                // response to a non-INVITE only slows retransmissions down to T2.
                if call.last_send_idx.is_none_or(|s| j > s) {
                    if code >= 200 || m.cseq_method.of(data) == b"INVITE" {
                        call.retrans = None;
                    } else if let Some(r) = call.retrans.as_mut() {
                        r.interval = self.env.t2;
                        r.at = now + self.env.t2;
                        rearm = Some(r.at);
                    }
                }
            }
            StartLine::Request { .. } => {
                call.cseq = call.cseq.max(m.cseq);
                if !self.sc.uac {
                    call.peer = src;
                }
                if call.last_send_idx.is_none_or(|s| j > s)
                    && matches!(m.method_bytes(), b"ACK" | b"CANCEL" | b"BYE" | b"PRACK")
                {
                    call.retrans = None;
                }
            }
        }
        if rrs {
            store_route_set(call, &m, self.sc.uac);
        }
        if let Some(at) = rearm {
            self.arm(slot, at);
        }
        let After::Go(jump) = self.run_actions(slot, j, Some(data), now) else {
            return;
        };
        let Some(call) = self.calls[slot].as_mut() else {
            return;
        };
        call.last_msg.clear();
        call.last_msg.extend_from_slice(data);
        call.last_hash = hash;
        call.reply_to_last.clear();
        call.last_cseq_number = m.cseq;
        let take_next = {
            let step = &self.sc.steps[j];
            let vars = View {
                local: &call.vars,
                global: &self.globals,
                is_global: &self.sc.var_global,
            };
            step.next.is_some() && step.test.is_none_or(|t| vars.get(t).is_set())
        };
        self.step_done(slot, j, now);
        // An optional message without a `next` to take leaves the call where it was; as in
        // SIPp, the receive timeouts of the steps after it now apply.
        if !optional || take_next || jump.is_some() {
            if let Some(call) = self.calls[slot].as_mut() {
                call.wake = None;
            }
            self.go_to(slot, j, jump);
            self.advance(slot, now, net);
        } else {
            let t = self.sc.steps[j + 1..]
                .iter()
                .take_while(|s| matches!(s.kind, Kind::Recv { .. }))
                .filter_map(|s| match s.kind {
                    Kind::Recv { timeout, .. } => timeout
                        .map(std::time::Duration::from_millis)
                        .or(self.env.recv_timeout),
                    _ => None,
                })
                .min();
            if let Some(t) = t
                && let Some(call) = self.calls[slot].as_mut()
            {
                let at = now + t;
                if call.wake.is_none_or(|(w, _)| at < w) {
                    call.wake = Some((at, Wake::RecvTimeout));
                    self.arm(slot, at);
                }
            }
        }
    }
}

/// FNV-1a over the Call-ID: cheap, and collisions are checked on lookup.
/// The tables keyed by [`cid_key`] (already a hash): the key is mixed once rather than
/// hashed again with SipHash.
type Keyed = BuildHasherDefault<KeyHasher>;

#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = (k ^ (k >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A received message's hash, for spotting retransmissions: eight bytes a step, each step a
/// bijection of the state, so two messages of one length differing in one word never collide.
pub(super) fn msg_hash(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ data.len() as u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h ^ v).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 32)
}

fn cid_key(cid: &[u8]) -> u64 {
    cid.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `pingreply` answers a PING outside the scenario with 200.
fn ping(m: &Message<'_>) -> bool {
    matches!(m.start, StartLine::Request { .. }) && m.method_bytes() == b"PING"
}

fn auto_answered(m: &Message<'_>) -> bool {
    matches!(m.start, StartLine::Request { .. }) && AUTO_ANSWERED.contains(&m.method_bytes())
}

/// Whether a received message is what `recv` step `kind` (at index `idx`) waits for, given
/// the branches of the call's transactions.
fn matches(kind: &Kind, m: &Message<'_>, idx: usize, txn_branch: &[Vec<u8>]) -> bool {
    let Kind::Recv {
        response,
        request,
        sent_methods,
        txn,
        request_re,
        ..
    } = kind
    else {
        return false;
    };
    match (m.start, response, request) {
        (StartLine::Response { code, .. }, Some(want), _) if txn.is_some() => {
            let b = txn.and_then(|t| txn_branch.get(t)).map(Vec::as_slice);
            code == *want && b.is_some_and(|b| !b.is_empty() && top_branch(m.buf) == Some(b))
        }
        (StartLine::Response { code, .. }, Some(want), _) => {
            code == *want
                && (idx == 0
                    || sent_methods
                        .iter()
                        .any(|s| s.as_bytes() == m.cseq_method.of(m.buf)))
        }
        (StartLine::Request { .. }, _, Some(want)) => match request_re {
            Some(re) => std::str::from_utf8(m.method_bytes()).is_ok_and(|s| re.is_match(s)),
            None => m.method_bytes() == want.as_bytes(),
        },
        _ => false,
    }
}
