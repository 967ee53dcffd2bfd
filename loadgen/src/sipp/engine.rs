//! The scenario engine, sans I/O: calls keyed by Call-ID, each walking the scenario's steps;
//! messages matched to steps as SIPp matches them (response code plus CSeq method, optional
//! steps skipped forward and looked up backward), UDP retransmissions with SIPp's timers,
//! pauses, receive timeouts, and SIPp's default behaviours on unexpected messages. Time is an
//! argument; sends go out through [`Net`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipdispatch::sip::header::{self, Next};
use sipdispatch::sip::{Message, Scanned, StartLine, scan};

use super::scenario::{Kind, Scenario};
use super::stats::{self, Stats};
use super::template::{Keyword, Values};

/// Where the engine's messages go.
pub trait Net {
    fn send(&mut self, to: SocketAddr, data: &[u8]);
}

/// Run-wide values for keywords and timers.
#[derive(Clone, Debug)]
pub struct Env {
    pub service: String,
    pub remote: SocketAddr,
    pub remote_host: String,
    pub local: SocketAddr,
    pub media_ip: String,
    pub media_port: u16,
    pub pid: u32,
    pub cid_str: String,
    pub base_cseq: u32,
    pub pause_default: Duration,
    pub recv_timeout: Option<Duration>,
    pub retrans: bool,
    pub max_invite_retrans: u32,
    pub max_non_invite_retrans: u32,
    pub t2: Duration,
    pub default_behaviors: bool,
    pub deadcall_wait: Duration,
}

fn ip_text(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => v.ip().to_string(),
        SocketAddr::V6(v) => format!("[{}]", v.ip()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    Pause,
    Timewait,
    RecvTimeout,
}

struct Retrans {
    at: Instant,
    interval: Duration,
    count: u32,
    invite: bool,
}

struct Call {
    number: u64,
    call_id: Vec<u8>,
    peer: SocketAddr,
    idx: usize,
    created: Instant,
    rtd_start: Vec<Instant>,
    rtd_done: Vec<bool>,
    cseq: u32,
    last_cseq_number: u32,
    peer_tag: Vec<u8>,
    last_msg: Vec<u8>,
    last_hash: u64,
    /// The first message sent after the last one received: re-sent when that one is
    /// retransmitted.
    reply_to_last: Vec<u8>,
    last_sent: Vec<u8>,
    retrans: Option<Retrans>,
    wake: Option<(Instant, Wake)>,
    routes: Vec<u8>,
    next_url: Vec<u8>,
    msg_index: usize,
}

/// All calls of one run.
pub struct Engine {
    pub sc: Scenario,
    pub env: Env,
    pub stats: Stats,
    calls: Vec<Option<Call>>,
    gens: Vec<u32>,
    free: Vec<usize>,
    by_id: HashMap<Vec<u8>, usize>,
    dead: HashSet<Vec<u8>>,
    dead_order: VecDeque<(Instant, Vec<u8>)>,
    timers: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    created: u64,
    /// UAS: no new calls once this many were created (`-m`).
    pub max_calls: Option<u64>,
    /// No new calls at all (quitting).
    pub closed: bool,
    /// Error-log lines (`-trace_err`) for the caller to write, when enabled.
    pub errors: Option<Vec<String>>,
    scratch: Vec<u8>,
}

impl Engine {
    pub fn new(sc: Scenario, env: Env, max_calls: Option<u64>) -> Self {
        let stats = Stats::new(
            sc.rtds.len(),
            sc.counters.len(),
            sc.rt_repartition.clone(),
            sc.cl_repartition.clone(),
        );
        Self {
            sc,
            env,
            stats,
            calls: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            dead: HashSet::new(),
            dead_order: VecDeque::new(),
            timers: BinaryHeap::new(),
            created: 0,
            max_calls,
            closed: false,
            errors: None,
            scratch: Vec::with_capacity(4096),
        }
    }

    pub fn open_calls(&self) -> usize {
        self.by_id.len()
    }

    pub fn created(&self) -> u64 {
        self.created
    }

    fn new_call(&mut self, now: Instant, call_id: Option<Vec<u8>>, peer: SocketAddr) -> usize {
        self.created += 1;
        let number = self.created;
        let call_id = call_id.unwrap_or_else(|| {
            let ip = ip_text(self.env.local);
            let ip = ip.trim_matches(['[', ']']);
            self.env
                .cid_str
                .replace("%u", &number.to_string())
                .replace("%p", &self.env.pid.to_string())
                .replace("%s", ip)
                .into_bytes()
        });
        let slot = self.free.pop().unwrap_or_else(|| {
            self.calls.push(None);
            self.gens.push(0);
            self.calls.len() - 1
        });
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        let rtds = self.sc.rtds.len();
        self.by_id.insert(call_id.clone(), slot);
        self.calls[slot] = Some(Call {
            number,
            call_id,
            peer,
            idx: 0,
            created: now,
            rtd_start: vec![now; rtds],
            rtd_done: vec![false; rtds],
            cseq: self.env.base_cseq.wrapping_sub(1),
            last_cseq_number: 0,
            peer_tag: Vec::new(),
            last_msg: Vec::new(),
            last_hash: 0,
            reply_to_last: Vec::new(),
            last_sent: Vec::new(),
            retrans: None,
            wake: None,
            routes: Vec::new(),
            next_url: Vec::new(),
            msg_index: 0,
        });
        self.stats.current_calls += 1;
        if self.sc.uac {
            self.stats.count(|c| c.outgoing += 1);
        } else {
            self.stats.count(|c| c.incoming += 1);
        }
        slot
    }

    /// UAC: starts one call now.
    pub fn start_call(&mut self, now: Instant, net: &mut impl Net) {
        let remote = self.env.remote;
        let slot = self.new_call(now, None, remote);
        self.advance(slot, now, net);
    }

    fn end_call(&mut self, slot: usize, now: Instant, failure: Option<usize>) {
        let Some(call) = self.calls[slot].take() else {
            return;
        };
        self.by_id.remove(&call.call_id);
        self.free.push(slot);
        self.stats.call_ended(now - call.created, failure);
        self.dead.insert(call.call_id.clone());
        self.dead_order
            .push_back((now + self.env.deadcall_wait, call.call_id));
    }

    fn arm(&mut self, slot: usize, at: Instant) {
        self.timers.push(Reverse((at, slot, self.gens[slot])));
    }

    /// Runs the call's steps from its current index until it must wait.
    fn advance(&mut self, slot: usize, now: Instant, net: &mut impl Net) {
        loop {
            let Some(call) = self.calls[slot].as_mut() else {
                return;
            };
            let idx = call.idx;
            let Some(step) = self.sc.steps.get(idx) else {
                self.end_call(slot, now, None);
                return;
            };
            if let Some(r) = step.start_rtd {
                call.rtd_start[r] = now;
            }
            let next = step.next.unwrap_or(idx + 1);
            match &step.kind {
                Kind::Send { msg, retrans } => {
                    if let Some(m) = &msg.method
                        && m != "ACK"
                        && m != "CANCEL"
                    {
                        call.cseq = call.cseq.wrapping_add(1);
                    }
                    call.msg_index = idx;
                    let mut buf = std::mem::take(&mut self.scratch);
                    msg.render(
                        &CallValues {
                            env: &self.env,
                            call,
                        },
                        &mut buf,
                    );
                    net.send(call.peer, &buf);
                    if call.reply_to_last.is_empty() && !call.last_msg.is_empty() {
                        call.reply_to_last.clone_from(&buf);
                    }
                    call.last_sent.clone_from(&buf);
                    self.scratch = buf;
                    call.retrans = match retrans {
                        Some(t1) if self.env.retrans => {
                            let t1 = Duration::from_millis(*t1);
                            let invite = msg.method.as_deref() == Some("INVITE")
                                || (msg.code.is_some() && cseq_is_invite(&call.last_msg));
                            Some(Retrans {
                                at: now + t1,
                                interval: t1,
                                count: 0,
                                invite,
                            })
                        }
                        _ => None,
                    };
                    let at = call.retrans.as_ref().map(|r| r.at);
                    call.idx = next;
                    self.step_done(slot, idx, now);
                    if let Some(at) = at {
                        self.arm(slot, at);
                    }
                }
                Kind::Pause(ms) => {
                    let d = ms.map_or(self.env.pause_default, Duration::from_millis);
                    if d.is_zero() {
                        call.idx = next;
                        self.step_done(slot, idx, now);
                        continue;
                    }
                    call.wake = Some((now + d, Wake::Pause));
                    self.arm(slot, now + d);
                    return;
                }
                Kind::Timewait(ms) => {
                    let at = now + Duration::from_millis(*ms);
                    call.wake = Some((at, Wake::Timewait));
                    self.arm(slot, at);
                    return;
                }
                Kind::Nop => {
                    call.idx = next;
                    self.step_done(slot, idx, now);
                }
                Kind::Recv { timeout, .. } => {
                    let t = timeout.map(Duration::from_millis).or(self.env.recv_timeout);
                    if let Some(t) = t {
                        call.wake = Some((now + t, Wake::RecvTimeout));
                        self.arm(slot, now + t);
                    }
                    return;
                }
            }
        }
    }

    /// Counters and response times of a step that just completed.
    fn step_done(&mut self, slot: usize, idx: usize, now: Instant) {
        let step = &self.sc.steps[idx];
        let Some(call) = self.calls[slot].as_mut() else {
            return;
        };
        if let Some(r) = step.rtd
            && (!call.rtd_done[r] || step.repeat_rtd)
        {
            call.rtd_done[r] = true;
            let d = now - call.rtd_start[r];
            self.stats.rtd(r, d);
        }
        if let Some(c) = step.counter {
            self.stats.count(|s| s.counters[c] += 1);
        }
    }

    /// Handles one received datagram.
    pub fn on_datagram(&mut self, now: Instant, src: SocketAddr, data: &[u8], net: &mut impl Net) {
        let Ok(Scanned::Message(m)) = scan(data) else {
            self.stats.count(|c| c.warnings += 1);
            return;
        };
        let cid = m.call_id();
        let slot = match self.by_id.get(cid) {
            Some(&s) => s,
            None if self.dead.contains(cid) => {
                self.stats.count(|c| c.dead_call += 1);
                return;
            }
            None if !self.sc.uac
                && !self.closed
                && self.max_calls.is_none_or(|max| self.created < max) =>
            {
                self.new_call(now, Some(cid.to_vec()), src)
            }
            None => {
                self.stats.count(|c| c.out_of_call += 1);
                return;
            }
        };
        let hash = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            data.hash(&mut h);
            h.finish()
        };
        let Some(call) = self.calls[slot].as_mut() else {
            return;
        };
        if hash == call.last_hash && !call.last_msg.is_empty() {
            self.stats.count(|c| c.retransmissions += 1);
            if !call.reply_to_last.is_empty() {
                net.send(call.peer, &call.reply_to_last);
            }
            return;
        }
        let steps = &self.sc.steps;
        let mut found = None;
        let mut j = call.idx;
        while let Some(s) = steps.get(j) {
            match &s.kind {
                Kind::Recv { optional, .. } => {
                    if matches(&s.kind, &m, j) {
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
            // A late copy of an optional message already passed (a 180 after the 200, ...).
            let mut j = call.idx;
            while j > 0 {
                j -= 1;
                match &steps[j].kind {
                    Kind::Recv { optional: true, .. } if matches(&steps[j].kind, &m, j) => return,
                    Kind::Recv { optional: true, .. } => {}
                    _ => break,
                }
            }
            self.unexpected(slot, now, &m, net);
            return;
        }
        let j = found.unwrap_or_default();
        call.retrans = None;
        call.wake = None;
        call.last_msg.clear();
        call.last_msg.extend_from_slice(data);
        call.last_hash = hash;
        call.reply_to_last.clear();
        call.last_cseq_number = m.cseq;
        match m.start {
            StartLine::Response { .. } => {
                if let Some(t) = m.to.tag {
                    call.peer_tag.clear();
                    call.peer_tag.extend_from_slice(t.of(data));
                }
            }
            StartLine::Request { .. } => {
                call.cseq = call.cseq.max(m.cseq);
                if !self.sc.uac {
                    call.peer = src;
                }
            }
        }
        if let Kind::Recv { rrs: true, .. } = steps[j].kind {
            store_route_set(call, &m, self.sc.uac);
        }
        call.idx = steps[j].next.unwrap_or(j + 1);
        self.step_done(slot, j, now);
        self.advance(slot, now, net);
    }

    /// SIPp's default behaviours: answer an unexpected BYE or CANCEL with 200, ACK a final
    /// error response; the call fails as `FailedUnexpectedMessage`.
    fn unexpected(&mut self, slot: usize, now: Instant, m: &Message<'_>, net: &mut impl Net) {
        if let (Some(log), Some(call)) = (self.errors.as_mut(), self.calls[slot].as_ref()) {
            let first = m.buf.split(|&b| b == b'\r').next().unwrap_or_default();
            log.push(format!(
                "Aborting call on unexpected message for Call-Id '{}': while expecting step {} (line {}), received '{}'",
                String::from_utf8_lossy(&call.call_id),
                call.idx,
                self.sc.steps.get(call.idx).map_or(0, |s| s.line),
                String::from_utf8_lossy(first)
            ));
        }
        if self.env.default_behaviors
            && let Some(call) = self.calls[slot].as_ref()
        {
            let reply = match m.start {
                StartLine::Request { .. } if matches!(m.method_bytes(), b"BYE" | b"CANCEL") => {
                    Some(simple_reply(m))
                }
                StartLine::Response { code, .. }
                    if code >= 300 && m.cseq_method.of(m.buf) == b"INVITE" =>
                {
                    Some(ack_for(m, &self.env))
                }
                _ => None,
            };
            if let Some(r) = reply {
                net.send(call.peer, &r);
            }
        }
        self.end_call(slot, now, Some(stats::UNEXPECTED));
    }

    /// Fires due timers: retransmissions, pauses, timewaits, receive timeouts; drops expired
    /// dead-call memories.
    pub fn on_timers(&mut self, now: Instant, net: &mut impl Net) {
        while let Some(Reverse((at, slot, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.gens[slot] != generation {
                continue;
            }
            let Some(call) = self.calls[slot].as_mut() else {
                continue;
            };
            if let Some(r) = call.retrans.as_mut()
                && r.at <= now
            {
                let max = if r.invite {
                    self.env.max_invite_retrans
                } else {
                    self.env.max_non_invite_retrans
                };
                if r.count >= max {
                    self.end_call(slot, now, Some(stats::MAX_UDP_RETRANS));
                    continue;
                }
                r.count += 1;
                r.interval *= 2;
                if !r.invite {
                    r.interval = r.interval.min(self.env.t2);
                }
                r.at = now + r.interval;
                let at = r.at;
                net.send(call.peer, &call.last_sent);
                self.stats.count(|c| c.retransmissions += 1);
                self.arm(slot, at);
            }
            let Some(call) = self.calls[slot].as_mut() else {
                continue;
            };
            if let Some((t, kind)) = call.wake
                && t <= now
            {
                call.wake = None;
                match kind {
                    Wake::Pause => {
                        let idx = call.idx;
                        call.idx = self.sc.steps[idx].next.unwrap_or(idx + 1);
                        self.step_done(slot, idx, now);
                        self.advance(slot, now, net);
                    }
                    Wake::Timewait => self.end_call(slot, now, None),
                    Wake::RecvTimeout => {
                        let ontimeout = match &self.sc.steps[call.idx].kind {
                            Kind::Recv { ontimeout, .. } => *ontimeout,
                            _ => None,
                        };
                        match ontimeout {
                            Some(label) => {
                                call.idx = label;
                                self.advance(slot, now, net);
                            }
                            None => self.end_call(slot, now, Some(stats::TIMEOUT_ON_RECV)),
                        }
                    }
                }
            }
        }
        while let Some((t, _)) = self.dead_order.front() {
            if *t > now {
                break;
            }
            if let Some((_, id)) = self.dead_order.pop_front() {
                self.dead.remove(&id);
            }
        }
    }
}

fn cseq_is_invite(msg: &[u8]) -> bool {
    matches!(scan(msg), Ok(Scanned::Message(m)) if m.cseq_method.of(msg) == b"INVITE")
}

/// Whether a received message is what `recv` step `kind` (at index `idx`) waits for.
fn matches(kind: &Kind, m: &Message<'_>, idx: usize) -> bool {
    let Kind::Recv {
        response,
        request,
        sent_methods,
        ..
    } = kind
    else {
        return false;
    };
    match (m.start, response, request) {
        (StartLine::Response { code, .. }, Some(want), _) => {
            code == *want
                && (idx == 0
                    || sent_methods
                        .iter()
                        .any(|s| s.as_bytes() == m.cseq_method.of(m.buf)))
        }
        (StartLine::Request { .. }, _, Some(want)) => m.method_bytes() == want.as_bytes(),
        _ => false,
    }
}

/// `rrs="true"`: the Record-Route set (reversed for a UAC) for `[routes]`, the Contact URI
/// for `[next_url]`.
fn store_route_set(call: &mut Call, m: &Message<'_>, uac: bool) {
    let mut rr: Vec<&[u8]> = m
        .record_routes
        .as_slice()
        .iter()
        .map(|s| s.of(m.buf))
        .collect();
    if uac {
        rr.reverse();
    }
    call.routes = rr.join(&b", "[..]);
    call.next_url.clear();
    if let Some(c) = m.header(b"Contact") {
        let uri = match (
            c.iter().position(|&b| b == b'<'),
            c.iter().position(|&b| b == b'>'),
        ) {
            (Some(a), Some(b)) if a < b => &c[a + 1..b],
            _ => c,
        };
        call.next_url.extend_from_slice(uri);
    }
}

/// Every line of header `name` in `msg`, joined into one line with `", "` as SIPp does;
/// compact-form lines count only when there is no full-form one.
fn last_header(msg: &[u8], name: &str, out: &mut Vec<u8>) {
    const COMPACT: [(&str, &str); 8] = [
        ("call-id", "i"),
        ("contact", "m"),
        ("content-encoding", "e"),
        ("content-length", "l"),
        ("content-type", "c"),
        ("from", "f"),
        ("to", "t"),
        ("via", "v"),
    ];
    let Some(mut pos) = msg.iter().position(|&b| b == b'\n').map(|p| p + 1) else {
        return;
    };
    let lower = name.to_ascii_lowercase();
    let compact = COMPACT.iter().find(|(l, _)| *l == lower).map(|(_, c)| *c);
    let mut full: Vec<header::Line> = Vec::new();
    let mut short: Vec<header::Line> = Vec::new();
    while let Ok(Next::Header(h)) = header::next(msg, pos) {
        let n = &msg[h.name.0..h.name.1];
        if n.eq_ignore_ascii_case(name.as_bytes()) {
            full.push(h);
        } else if compact.is_some_and(|c| n.eq_ignore_ascii_case(c.as_bytes())) {
            short.push(h);
        }
        pos = h.line.1;
    }
    let lines = if full.is_empty() { short } else { full };
    for (i, h) in lines.iter().enumerate() {
        if i == 0 {
            out.extend_from_slice(&msg[h.name.0..h.value.1]);
        } else {
            out.extend_from_slice(b", ");
            out.extend_from_slice(&msg[h.value.0..h.value.1]);
        }
    }
}

/// A 200 OK to an unexpected BYE or CANCEL.
fn simple_reply(m: &Message<'_>) -> Vec<u8> {
    let mut out = b"SIP/2.0 200 OK\r\n".to_vec();
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        last_header(m.buf, h, &mut out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}

/// The ACK a UAC owes a final error response to its INVITE.
fn ack_for(m: &Message<'_>, env: &Env) -> Vec<u8> {
    let mut out = format!(
        "ACK sip:{}@{}:{} SIP/2.0\r\n",
        env.service,
        ip_text(env.remote),
        env.remote.port()
    )
    .into_bytes();
    for h in ["Via", "From", "To", "Call-ID"] {
        last_header(m.buf, h, &mut out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("CSeq: {} ACK\r\nContent-Length: 0\r\n\r\n", m.cseq).as_bytes());
    out
}

struct CallValues<'a> {
    env: &'a Env,
    call: &'a Call,
}

impl Values for CallValues<'_> {
    fn put(&self, kw: &Keyword, off: i64, out: &mut Vec<u8>) {
        let (env, call) = (self.env, self.call);
        let num =
            |out: &mut Vec<u8>, n: i64| out.extend_from_slice((n + off).to_string().as_bytes());
        let v6 = |a: &str| {
            if a.starts_with('[') || a.contains(':') {
                "6"
            } else {
                "4"
            }
        };
        match kw {
            Keyword::Service => out.extend_from_slice(env.service.as_bytes()),
            Keyword::RemoteIp => out.extend_from_slice(ip_text(env.remote).as_bytes()),
            Keyword::RemoteHost => out.extend_from_slice(env.remote_host.as_bytes()),
            Keyword::RemotePort => num(out, i64::from(env.remote.port())),
            Keyword::LocalIp => out.extend_from_slice(ip_text(env.local).as_bytes()),
            Keyword::LocalIpType => out.extend_from_slice(v6(&ip_text(env.local)).as_bytes()),
            Keyword::LocalPort => num(out, i64::from(env.local.port())),
            Keyword::Transport => out.extend_from_slice(b"UDP"),
            Keyword::MediaIp => out.extend_from_slice(env.media_ip.as_bytes()),
            Keyword::MediaIpType => out.extend_from_slice(v6(&env.media_ip).as_bytes()),
            Keyword::MediaPort => num(out, i64::from(env.media_port)),
            Keyword::CallNumber => num(out, call.number as i64),
            Keyword::CallId => out.extend_from_slice(&call.call_id),
            Keyword::Cseq => num(out, i64::from(call.cseq)),
            Keyword::LastCseqNumber => num(out, i64::from(call.last_cseq_number)),
            Keyword::Branch => out.extend_from_slice(
                format!(
                    "z9hG4bK-{}-{}-{}",
                    env.pid,
                    call.number,
                    call.msg_index as i64 + off
                )
                .as_bytes(),
            ),
            Keyword::MsgIndex => num(out, call.msg_index as i64),
            Keyword::Pid => out.extend_from_slice(env.pid.to_string().as_bytes()),
            Keyword::Len => {}
            Keyword::PeerTagParam => {
                if !call.peer_tag.is_empty() {
                    out.extend_from_slice(b";tag=");
                    out.extend_from_slice(&call.peer_tag);
                }
            }
            Keyword::LastHeader(h) => last_header(&call.last_msg, h, out),
            Keyword::LastRequestUri => {
                let mut to = Vec::new();
                last_header(&call.last_msg, "To", &mut to);
                if let (Some(a), Some(b)) = (
                    to.iter().position(|&c| c == b'<'),
                    to.iter().position(|&c| c == b'>'),
                ) && a < b
                {
                    out.extend_from_slice(&to[a + 1..b]);
                }
            }
            Keyword::LastMessage => out.extend_from_slice(&call.last_msg),
            Keyword::Routes => {
                if !call.routes.is_empty() {
                    out.extend_from_slice(b"Route: ");
                    out.extend_from_slice(&call.routes);
                }
            }
            Keyword::NextUrl => out.extend_from_slice(&call.next_url),
        }
    }
}
