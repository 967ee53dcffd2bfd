//! One call's state (where it is in the scenario, what it last received and sent, its
//! timers, variables and route set) and how `[keyword]`s read from it.

use std::cell::OnceCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use sipdispatch::sip::Message;

use super::actions::Render;
use super::inject::InjectFile;
use super::template::{Keyword, Template, Values};
use super::vars::{Space, Var, View};
use super::wire::{HeaderIndex, ip_text, last_header};
use std::io::Write as _;

/// `-default_behaviors`: SIPp's `bye`, `abortunexp` and `pingreply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Behaviors {
    /// Send a BYE or CANCEL when aborting a UAC call.
    pub bye: bool,
    /// An unexpected message fails the call (else it is ignored and the call goes on).
    pub abort_unexpected: bool,
    /// Answer an unexpected PING with 200.
    pub ping_reply: bool,
}

impl Behaviors {
    pub const ALL: Behaviors = Behaviors {
        bye: true,
        abort_unexpected: true,
        ping_reply: true,
    };
    pub const NONE: Behaviors = Behaviors {
        bye: false,
        abort_unexpected: false,
        ping_reply: false,
    };

    /// `all`, `none`, or a list such as `all,-bye` or `abortunexp,pingreply`.
    pub fn parse(v: &str) -> Result<Self, String> {
        let mut b = Behaviors::NONE;
        for item in v.split(',').map(str::trim) {
            let (on, name) = match item.strip_prefix('-') {
                Some(n) => (false, n),
                None => (true, item),
            };
            match name {
                "all" => b = if on { Behaviors::ALL } else { Behaviors::NONE },
                "none" => b = Behaviors::NONE,
                "bye" => b.bye = on,
                "abortunexp" => b.abort_unexpected = on,
                "pingreply" => b.ping_reply = on,
                _ => return Err(format!("-default_behaviors: unknown behavior `{item}`")),
            }
        }
        Ok(b)
    }
}

/// Run-wide values for keywords and timers.
#[derive(Clone, Debug)]
pub struct Env {
    pub service: String,
    pub remote: SocketAddr,
    /// Where a UAC's calls are sent: `-rsa` (an outbound proxy), else `remote`.
    pub send_to: Option<SocketAddr>,
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
    pub behaviors: Behaviors,
    pub deadcall_wait: Duration,
    /// `-users`, for `[users]`.
    pub users: Option<u64>,
    /// `[local_ip]` and `[remote_ip]` as written (IPv6 bracketed), made once.
    pub local_text: String,
    pub remote_text: String,
    /// `-lost`: percent of messages dropped on purpose where a step sets no `lost`.
    pub lost: f64,
    /// When the run started, for `[clock_tick]`.
    pub started: Instant,
    /// `-inf` files, for `[fieldN]`.
    pub inject: std::sync::Arc<Vec<InjectFile>>,
}

impl Env {
    /// Fills the texts derived from the addresses.
    pub fn with_texts(mut self) -> Self {
        self.local_text = ip_text(self.local);
        self.remote_text = ip_text(self.remote);
        self
    }

    /// A Call-ID from `-cid_str` (`%u` call number, `%p` pid, `%s` local IP), into `out`.
    pub fn call_id(&self, number: u64, out: &mut Vec<u8>) {
        out.clear();
        let mut it = self.cid_str.split('%');
        out.extend_from_slice(it.next().unwrap_or_default().as_bytes());
        for part in it {
            let mut chars = part.chars();
            let _ = match chars.next() {
                Some('u') => write!(out, "{number}"),
                Some('p') => write!(out, "{}", self.pid),
                Some('s') => out.write_all(self.local_text.trim_matches(['[', ']']).as_bytes()),
                Some(c) => write!(out, "%{c}"),
                None => out.write_all(b"%"),
            };
            out.extend_from_slice(chars.as_str().as_bytes());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    Pause,
    Timewait,
    RecvTimeout,
}

pub struct Retrans {
    pub at: Instant,
    pub interval: Duration,
    pub count: u32,
    pub invite: bool,
}

pub struct Call {
    pub number: u64,
    pub call_id: Vec<u8>,
    pub peer: SocketAddr,
    pub idx: usize,
    pub created: Instant,
    pub rtd_start: Vec<Instant>,
    pub rtd_done: Vec<bool>,
    pub cseq: u32,
    pub last_cseq_number: u32,
    pub peer_tag: Vec<u8>,
    pub last_msg: Vec<u8>,
    pub last_hash: u64,
    /// The first message sent after the last one received: re-sent when that one is
    /// retransmitted.
    pub reply_to_last: Vec<u8>,
    pub last_sent: Vec<u8>,
    /// Index of the last step sent: responses to it (or later) stop its retransmissions.
    pub last_send_idx: Option<usize>,
    pub retrans: Option<Retrans>,
    pub wake: Option<(Instant, Wake)>,
    pub routes: Vec<u8>,
    pub next_url: Vec<u8>,
    pub msg_index: usize,
    /// Variables of this call (run-wide ones live in the engine).
    pub vars: Vec<Var>,
    /// `-users`: the user this call runs as (0 without `-users`).
    pub user: u64,
    /// A failed action check: the call runs on and ends as failed with this reason.
    pub action_failure: Option<usize>,
    /// The line of each `-inf` file this call reads.
    pub lines: Vec<Option<usize>>,
    /// The branch each transaction (`start_txn`) was sent with.
    pub txn_branch: Vec<Vec<u8>>,
    /// A 200 was received: an abort while the INVITE is the last request sent ACKs and BYEs
    /// rather than CANCELs (SIPp's `ack_is_pending`).
    pub ack_pending: bool,
    /// An ACK was received (SIPp's `call_established`).
    pub established: bool,
    /// An unexpected message sent to `_unexp.main`, processed at the next `<recv>`, and
    /// where it came from.
    pub queued: Vec<u8>,
    pub queued_from: Option<SocketAddr>,
}

impl Call {
    pub fn blank(now: Instant, peer: SocketAddr) -> Self {
        Self {
            number: 0,
            call_id: Vec::new(),
            peer,
            idx: 0,
            created: now,
            rtd_start: Vec::new(),
            rtd_done: Vec::new(),
            cseq: 0,
            last_cseq_number: 0,
            peer_tag: Vec::new(),
            last_msg: Vec::new(),
            last_hash: 0,
            reply_to_last: Vec::new(),
            last_sent: Vec::new(),
            last_send_idx: None,
            retrans: None,
            wake: None,
            routes: Vec::new(),
            next_url: Vec::new(),
            msg_index: 0,
            vars: Vec::new(),
            user: 0,
            action_failure: None,
            lines: Vec::new(),
            txn_branch: Vec::new(),
            ack_pending: false,
            established: false,
            queued: Vec::new(),
            queued_from: None,
        }
    }

    /// A new call in this (possibly used) call's buffers.
    pub fn reset(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        number: u64,
        user: u64,
        base_cseq: u32,
    ) {
        self.number = number;
        self.peer = peer;
        self.idx = 0;
        self.created = now;
        self.cseq = base_cseq.wrapping_sub(1);
        self.last_cseq_number = 0;
        self.peer_tag.clear();
        self.last_msg.clear();
        self.last_hash = 0;
        self.reply_to_last.clear();
        self.last_sent.clear();
        self.last_send_idx = None;
        self.retrans = None;
        self.wake = None;
        self.routes.clear();
        self.next_url.clear();
        self.msg_index = 0;
        self.user = user;
        self.action_failure = None;
        self.ack_pending = false;
        self.established = false;
        self.queued.clear();
        self.queued_from = None;
    }
}

/// `rrs="true"`: the Record-Route set (reversed for a UAC) for `[routes]`, the Contact URI
/// for `[next_url]`.
pub fn store_route_set(call: &mut Call, m: &Message<'_>, uac: bool) {
    let mut rr: Vec<&[u8]> = m
        .record_routes
        .as_ref()
        .map_or(&[][..], |r| r.as_slice())
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

/// Keyword values of one call; variables come from `vars` (the call's own may be on loan
/// to running actions).
pub struct CallValues<'a> {
    pub env: &'a Env,
    pub call: &'a Call,
    pub vars: View<'a>,
    /// The headers of `call.last_msg`, read at the first `[last_*]` of a render.
    pub last: OnceCell<HeaderIndex>,
}

impl Render for CallValues<'_> {
    fn render(&self, t: &Template, space: &Space<'_>, out: &mut Vec<u8>) {
        let v = CallValues {
            env: self.env,
            call: self.call,
            vars: View {
                local: space.local,
                global: space.global,
                is_global: space.is_global,
            },
            last: OnceCell::new(),
        };
        t.render(&v, out);
    }
}

impl Values for CallValues<'_> {
    fn put(&self, kw: &Keyword, off: i64, out: &mut Vec<u8>) {
        let (env, call) = (self.env, self.call);
        // Written in place: rendering a message allocates nothing once `out` has grown.
        let num = |out: &mut Vec<u8>, n: i64| {
            let _ = write!(out, "{}", n + off);
        };
        let v6 = |a: &str| {
            if a.starts_with('[') || a.contains(':') {
                "6"
            } else {
                "4"
            }
        };
        match kw {
            Keyword::Service => out.extend_from_slice(env.service.as_bytes()),
            Keyword::RemoteIp => out.extend_from_slice(env.remote_text.as_bytes()),
            Keyword::RemoteHost => out.extend_from_slice(env.remote_host.as_bytes()),
            Keyword::RemotePort => num(out, i64::from(env.remote.port())),
            Keyword::LocalIp => out.extend_from_slice(env.local_text.as_bytes()),
            Keyword::LocalIpType => out.extend_from_slice(v6(&env.local_text).as_bytes()),
            Keyword::LocalPort => num(out, i64::from(env.local.port())),
            Keyword::Transport => out.extend_from_slice(b"UDP"),
            Keyword::MediaIp => out.extend_from_slice(env.media_ip.as_bytes()),
            Keyword::MediaIpType => out.extend_from_slice(v6(&env.media_ip).as_bytes()),
            Keyword::MediaPort => num(out, i64::from(env.media_port)),
            Keyword::CallNumber => num(out, call.number as i64),
            Keyword::CallId => out.extend_from_slice(&call.call_id),
            Keyword::Cseq => num(out, i64::from(call.cseq)),
            Keyword::LastCseqNumber => num(out, i64::from(call.last_cseq_number)),
            Keyword::Branch => {
                let _ = write!(
                    out,
                    "z9hG4bK-{}-{}-{}",
                    env.pid,
                    call.number,
                    call.msg_index as i64 + off
                );
            }
            Keyword::MsgIndex => num(out, call.msg_index as i64),
            Keyword::Pid => {
                let _ = write!(out, "{}", env.pid);
            }
            Keyword::Len => {}
            Keyword::PeerTagParam => {
                if !call.peer_tag.is_empty() {
                    out.extend_from_slice(b";tag=");
                    out.extend_from_slice(&call.peer_tag);
                }
            }
            Keyword::LastHeader(h) => self
                .last
                .get_or_init(|| HeaderIndex::new(&call.last_msg))
                .last_header(&call.last_msg, h, out),
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
            Keyword::Var(i) => self.vars.get(*i).render(out),
            Keyword::Users => match env.users {
                Some(u) => num(out, u as i64),
                None => out.extend_from_slice(b"-1"),
            },
            Keyword::UserId => num(out, call.user as i64),
            Keyword::AutoMediaPort => num(
                out,
                i64::from(env.media_port) + (4 * (call.number as i64 - 1)) % 10_000,
            ),
            Keyword::ServerIp => out.extend_from_slice(env.local_text.as_bytes()),
            Keyword::Date => {
                out.extend_from_slice(super::stats::rfc2822(SystemTime::now()).as_bytes())
            }
            Keyword::Timestamp => {
                out.extend_from_slice(super::stats::timestamp(SystemTime::now()).as_bytes())
            }
            Keyword::ClockTick => num(out, env.started.elapsed().as_millis() as i64),
            Keyword::Version => out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes()),
            Keyword::Field { n, file, line } => {
                let i = match file {
                    Some(name) => env.inject.iter().position(|f| f.name == *name),
                    None => (!env.inject.is_empty()).then_some(0),
                };
                if let Some(i) = i
                    && let Some(l) = line.or_else(|| call.lines.get(i).copied().flatten())
                {
                    env.inject[i].field(l, *n, out);
                }
            }
        }
    }
}
