//! The scanner: one pass over one datagram that frames the message (start line, headers, body
//! by Content-Length) and extracts, as byte ranges, every field dispatching and stateless
//! forwarding need. It copies nothing, allocates nothing, and refuses malformed input with a
//! [`ScanError`] naming the reason. It knows nothing about destinations or rewriting.
//! [`scan`] reads every field; [`scan_forwarding`], the data plane's, leaves unread the ones
//! no forwarding decision uses.
#![forbid(unsafe_code)]

use super::Span;
use super::bytemask::LineFeeds;
use super::echo::Echo;
use super::fields::{
    cseq_value, digest_username, party, plain_via_line, route_entries, via_elements,
};
use super::header::{self, Line, LineError, Name, Next};
use super::lex::parse_u32;
use super::start_line::start_line;
pub use super::start_line::{Method, RequestUri, StartLine};
use super::uri::{Party, Uri, plain_tag};
use super::via::{Via, ViaHead};

/// Largest datagram the scanner accepts: offsets are stored as `u16`.
pub const MAX_DATAGRAM: usize = u16::MAX as usize;
/// Route and Record-Route entries kept per message; more are counted but not stored.
pub const MAX_ROUTES: usize = 16;

/// Why a datagram is not a usable SIP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("empty datagram")]
    Empty,
    #[error("datagram larger than {MAX_DATAGRAM} bytes")]
    TooLarge,
    #[error("malformed start line")]
    BadStartLine,
    #[error("malformed Request-URI")]
    BadRequestUri,
    #[error("unsupported SIP version")]
    BadVersion,
    #[error("status code out of range")]
    BadStatusCode,
    #[error("header line without a colon")]
    HeaderWithoutColon,
    #[error("malformed header name")]
    BadHeaderName,
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("Content-Length larger than the datagram")]
    ContentLengthTooLarge,
    #[error("CSeq method differs from the request method")]
    CSeqMethodMismatch,
}

/// A header line's position, for rewriting: the whole line and its value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderPos {
    pub line: Span,
    pub value: Span,
}

/// Route or Record-Route entries, in order across all headers of that name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entries {
    stored: [Span; MAX_ROUTES],
    /// Entries seen, stored or not.
    pub count: u16,
    /// The first header line of that name, and how many entries it holds.
    pub first_header: HeaderPos,
    pub in_first_header: u16,
}

impl Entries {
    /// The stored entries (at most [`MAX_ROUTES`]).
    pub fn as_slice(&self) -> &[Span] {
        &self.stored[..usize::from(self.count).min(MAX_ROUTES)]
    }

    pub(super) fn push(&mut self, s: Span) {
        if let Some(slot) = self.stored.get_mut(usize::from(self.count)) {
            *slot = s;
        }
        self.count = self.count.saturating_add(1);
    }
}

/// What the forwarding scan remembers from one message to the next (a shard keeps one): the
/// head of the last top Via of a request and of a response ([`ViaHead`]), and the last Route
/// value read as one plain entry (a record-routing proxy gets its own Route back on every
/// in-dialog request). The answer is the same with any memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanMemory {
    request_via: ViaHead,
    response_via: ViaHead,
    route: Echo,
}

/// A scanned SIP message: the datagram plus the ranges of everything routing needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub buf: &'a [u8],
    pub start: StartLine,
    /// Offset just past the start line's line end: where new headers are inserted.
    pub headers_start: usize,
    /// Offset of the empty line that ends the headers (or the end of the last header line).
    pub headers_end: usize,
    /// The body, by Content-Length (or to the end of the datagram when it is absent). Bytes
    /// after it are not part of the message and are never forwarded.
    pub body: Span,
    pub call_id: Span,
    /// Read through [`Message::from`] and [`Message::to`].
    pub from_header: PartyHeader,
    pub to_header: PartyHeader,
    pub cseq: u32,
    pub cseq_method: Span,
    /// What `cseq_method` names ([`Message::cseq_method`]), read once by the scan.
    pub cseq_kind: Method,
    /// The top Via value, parsed.
    pub via: Via,
    /// The header line holding the top Via, and the offset where its second value starts if
    /// that line holds more than one (comma-joined Vias, as SIPp's uas sends them).
    pub via_header: HeaderPos,
    pub via_header_next: Option<usize>,
    /// The second Via value, wherever it is (a response is sent to it).
    pub via_second: Option<Span>,
    pub via_count: u16,
    pub max_forwards: Option<(u8, Span)>,
    pub content_length: Option<u32>,
    pub routes: Entries,
    /// `None` when the scan did not read them ([`scan_forwarding`]).
    pub record_routes: Option<Entries>,
    /// Digest `username` of Proxy-Authorization, else of Authorization.
    pub auth_user: Option<Span>,
    pub proxy_require: Option<Span>,
}

/// A From or To header: where it is, and what the scan read of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartyHeader {
    /// The value; the whole line where the scan read nothing of it.
    at: Span,
    read: PartyRead,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum PartyRead {
    /// Not even where the value starts and ends (the data plane's scan leaves From and To at
    /// their line).
    #[default]
    Nothing,
    /// The value's bounds alone.
    Bounds,
    All(Party),
}

impl PartyHeader {
    /// The value, trimmed.
    pub fn value(&self, buf: &[u8]) -> Span {
        match self.read {
            PartyRead::Nothing => match header::next(buf, self.at.start()) {
                Ok(Next::Header(l)) => Span::new(l.value.0, l.value.1),
                _ => Span::default(),
            },
            _ => self.at,
        }
    }

    /// The header's parts, as the scan read them or read now (`None` if malformed).
    pub fn get(&self, buf: &[u8]) -> Option<Party> {
        match self.read {
            PartyRead::All(p) => Some(p),
            _ => {
                let v = self.value(buf);
                party::<true>(buf, v.start(), v.end())
            }
        }
    }

    /// The tag, as the scan read it or read now: the tag alone where the value has the plain
    /// shape, else the whole value. `None` if the value is malformed.
    fn tag(&self, buf: &[u8]) -> Option<Option<Span>> {
        if let PartyRead::All(p) = self.read {
            return Some(p.tag);
        }
        let v = self.value(buf);
        plain_tag(buf, v.start(), v.end())
            .or_else(|| party::<true>(buf, v.start(), v.end()).map(|p| p.tag))
    }
}

/// The result of scanning one datagram.
// Boxing the message would allocate per datagram; it lives on the stack instead.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scanned<'a> {
    /// A CRLF keepalive (`\r\n\r\n` or `\r\n`, RFC 5626 §4.4.1): not an error, nothing to do.
    Keepalive,
    Message(Message<'a>),
}

impl<'a> Message<'a> {
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// A request's Request-URI, parsed now (`None` for a response, or where it is malformed,
    /// which only the data plane's scan lets by).
    pub fn request_uri(&self) -> Option<Uri> {
        match self.start {
            StartLine::Request { uri, .. } => uri.parse(self.buf),
            StartLine::Response { .. } => None,
        }
    }

    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The request method as on the wire (empty for a response).
    pub fn method_bytes(&self) -> &'a [u8] {
        match self.start {
            StartLine::Request { method_span, .. } => method_span.of(self.buf),
            StartLine::Response { .. } => &[],
        }
    }

    /// The CSeq method (of the request a response answers, too).
    pub fn cseq_method(&self) -> Method {
        self.cseq_kind
    }

    pub fn call_id(&self) -> &'a [u8] {
        self.call_id.of(self.buf)
    }

    /// The From header's parts (`None` only if the scan left a malformed one unread).
    pub fn from(&self) -> Option<Party> {
        self.from_header.get(self.buf)
    }

    /// The To header's parts (`None` only if the scan left a malformed one unread).
    pub fn to(&self) -> Option<Party> {
        self.to_header.get(self.buf)
    }

    /// `None` also where the From is malformed.
    pub fn from_tag(&self) -> Option<Span> {
        self.from_header.tag(self.buf).flatten()
    }

    /// `None` for an initial request, and where the To is malformed.
    pub fn to_tag(&self) -> Option<Span> {
        self.to_header.tag(self.buf).flatten()
    }

    /// Whether a request starts a dialog (its To has no tag). The data plane's scan leaves the
    /// To unread, so this reads it, and answers the error the full scan would have where it is
    /// malformed.
    pub fn is_initial(&self) -> Result<bool, ScanError> {
        match self.to_header.tag(self.buf) {
            Some(tag) => Ok(tag.is_none()),
            None => Err(ScanError::BadHeader("To")),
        }
    }

    /// The message as it must be forwarded: everything up to the end of the body.
    pub fn wire(&self) -> &'a [u8] {
        &self.buf[..usize::from(self.body.end)]
    }

    /// The first value of any header, by name (slow path, for configurable hash keys).
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        header::find(self.buf, self.headers_start, name)
    }
}

/// Scans one datagram.
// Out of line, as the data plane calls it: a benchmark loop that inlined it would measure
// other code than the shards run.
#[inline(never)]
pub fn scan(buf: &[u8]) -> Result<Scanned<'_>, ScanError> {
    scan_with::<true, true>(buf, None)
}

/// [`scan`] as stateless forwarding needs it: From, To, the Request-URI (but for its scheme)
/// and the Record-Route entries are located but not read (a proxy checks only the components
/// it uses and forwards the rest unchanged, RFC 3261 §16.3); [`Message::from`],
/// [`Message::to`], [`Message::is_initial`] and [`Message::request_uri`] read them when asked.
/// `memory` carries what the last scans read from one message to the next (a shard keeps
/// one); the answer is the same with any.
#[inline(never)]
pub fn scan_forwarding<'a>(
    buf: &'a [u8],
    memory: &mut ScanMemory,
) -> Result<Scanned<'a>, ScanError> {
    scan_with::<true, false>(buf, Some(memory))
}

/// [`scan`] with the general readers only, never the plain-shape fast paths: the reference the
/// fast paths are checked against (`sip::invariants`). Not for the message path.
#[doc(hidden)]
pub fn scan_general(buf: &[u8]) -> Result<Scanned<'_>, ScanError> {
    scan_with::<false, true>(buf, None)
}

/// The scan; `PLAIN` selects the plain-shape fast paths (with the general readers behind them),
/// `ALL` reads every field (else only those forwarding uses).
#[inline(always)]
fn scan_with<'a, const PLAIN: bool, const ALL: bool>(
    buf: &'a [u8],
    memory: Option<&mut ScanMemory>,
) -> Result<Scanned<'a>, ScanError> {
    if buf.is_empty() {
        return Err(ScanError::Empty);
    }
    if buf == b"\r\n\r\n" || buf == b"\r\n" {
        return Ok(Scanned::Keepalive);
    }
    if buf.len() > MAX_DATAGRAM {
        return Err(ScanError::TooLarge);
    }
    // One line-feed cursor for the whole message, start line included.
    let mut lfs = LineFeeds::new(buf, 0);
    let line_end = lfs.next(buf, 0).ok_or(ScanError::BadStartLine)?;
    let text_end = if line_end > 0 && buf[line_end - 1] == b'\r' {
        line_end - 1
    } else {
        line_end
    };
    let start = start_line::<PLAIN, ALL>(buf, text_end)?;
    let memory = memory.map(|m| {
        let via = match start {
            StartLine::Request { .. } => &mut m.request_via,
            StartLine::Response { .. } => &mut m.response_via,
        };
        (via, &mut m.route)
    });
    match headers::<PLAIN, ALL>(buf, start, line_end + 1, lfs, memory) {
        Ok(m) => Ok(Scanned::Message(m)),
        // The plain readers leave folded lines (and anything malformed) to the general ones,
        // which read the message again and give the answer.
        Err(_) if PLAIN => scan_with::<false, ALL>(buf, None),
        Err(e) => Err(e),
    }
}

/// Fields seen once; a second occurrence of a single-valued header is an error (RFC 4475
/// multi01, mcl01).
fn once<T>(slot: &mut Option<T>, v: T, name: &'static str) -> Result<(), ScanError> {
    if slot.is_some() {
        return Err(ScanError::DuplicateHeader(name));
    }
    *slot = Some(v);
    Ok(())
}

/// A From or To value, read whole if `ALL` (and refused if malformed), else only located.
#[inline(always)]
fn party_header<const PLAIN: bool, const ALL: bool>(
    buf: &[u8],
    value: (usize, usize),
    name: &'static str,
) -> Result<PartyHeader, ScanError> {
    let read = if ALL {
        PartyRead::All(party::<PLAIN>(buf, value.0, value.1).ok_or(ScanError::BadHeader(name))?)
    } else {
        PartyRead::Bounds
    };
    Ok(PartyHeader {
        at: Span::new(value.0, value.1),
        read,
    })
}

#[inline(always)]
fn headers<'a, const PLAIN: bool, const ALL: bool>(
    buf: &'a [u8],
    start: StartLine,
    headers_start: usize,
    mut lfs: LineFeeds,
    memory: Option<(&mut ViaHead, &mut Echo)>,
) -> Result<Message<'a>, ScanError> {
    let (mut head, mut route_echo) = memory.unzip();
    let mut call_id = None;
    let mut from = None;
    let mut to = None;
    let mut cseq = None;
    let mut max_forwards = None;
    let mut content_length = None;
    let mut via: Option<(Via, HeaderPos, Option<usize>)> = None;
    let mut via_second = None;
    let mut via_count: u16 = 0;
    let mut routes = Entries::default();
    let mut record_routes = Entries::default();
    let mut auth = None;
    let mut proxy_auth = None;
    let mut proxy_require = None;

    let request = matches!(start, StartLine::Request { .. });
    // What is read of a header line, by its name: expanded where the plain readers know the
    // name (a constant there, so a line takes one jump on its name, not two) and once for the
    // general reader's lines.
    macro_rules! read {
        ($h:expr) => {{
            let h: Line = $h;
            let value = h.value;
            let hp = HeaderPos {
                line: Span::new(h.line.0, h.line.1),
                value: Span::new(value.0, value.1),
            };
            match h.kind {
                Name::CallId => {
                    if value.0 == value.1 {
                        return Err(ScanError::BadHeader("Call-ID"));
                    }
                    once(&mut call_id, Span::new(value.0, value.1), "Call-ID")?;
                }
                Name::From => once(
                    &mut from,
                    party_header::<PLAIN, ALL>(buf, value, "From")?,
                    "From",
                )?,
                Name::To => once(&mut to, party_header::<PLAIN, ALL>(buf, value, "To")?, "To")?,
                Name::CSeq => once(&mut cseq, cseq_value(buf, value)?, "CSeq")?,
                Name::MaxForwards => {
                    let n = parse_u32(&buf[value.0..value.1])
                        .filter(|&n| n <= 255)
                        .ok_or(ScanError::BadHeader("Max-Forwards"))?;
                    once(&mut max_forwards, (n as u8, hp.value), "Max-Forwards")?;
                }
                Name::ContentLength => {
                    let n = parse_u32(&buf[value.0..value.1])
                        .ok_or(ScanError::BadHeader("Content-Length"))?;
                    once(&mut content_length, n, "Content-Length")?;
                }
                Name::Via => {
                    let all = (value.0, value.1, 0);
                    let rest = if PLAIN {
                        plain_via_line(
                            buf,
                            hp,
                            &mut via,
                            &mut via_second,
                            &mut via_count,
                            head.as_deref_mut(),
                        )
                    } else {
                        Some(all)
                    };
                    if let Some(rest) = rest {
                        via_elements::<PLAIN>(
                            buf,
                            hp,
                            rest,
                            &mut via,
                            &mut via_second,
                            &mut via_count,
                        )?;
                    }
                }
                Name::Route => route_entries::<PLAIN>(
                    buf,
                    hp,
                    &mut routes,
                    "Route",
                    route_echo.as_deref_mut(),
                )?,
                Name::RecordRoute if ALL => {
                    route_entries::<PLAIN>(buf, hp, &mut record_routes, "Record-Route", None)?
                }
                Name::Authorization if auth.is_none() => auth = Some(value),
                Name::ProxyAuthorization if proxy_auth.is_none() => proxy_auth = Some(value),
                Name::ProxyRequire if proxy_require.is_none() => proxy_require = Some(hp.value),
                _ => {}
            }
        }};
    }
    let mut pos = headers_start;
    let (headers_end, body_start) = loop {
        if PLAIN && let Some(s) = header::skim_line(buf, pos, &mut lfs) {
            // A line of the plain shape, its value (where read) plain too.
            let line = (pos, s.lf + 1);
            macro_rules! plain {
                ($kind:expr) => {
                    if let Some(value) = header::plain_value(buf, &s) {
                        pos = s.lf + 1;
                        read!(Line {
                            name: (line.0, s.colon),
                            value,
                            line,
                            kind: $kind,
                        });
                        continue;
                    }
                };
            }
            match s.kind {
                // A header the scan ignores (Contact has a name, but no field is read from
                // it): only where it ends matters.
                Name::Other | Name::Contact => {
                    pos = s.lf + 1;
                    continue;
                }
                Name::RecordRoute if !ALL => {
                    pos = s.lf + 1;
                    continue;
                }
                // A From or To the scan reads nothing of: its line is kept (and counted, as a
                // second one is an error), its value found only if asked for. A request's To
                // is located ([`Message::is_initial`] may ask for its tag) but not read.
                Name::From | Name::To if !ALL && (s.kind == Name::From || !request) => {
                    let h = PartyHeader {
                        at: Span::new(line.0, line.1),
                        read: PartyRead::Nothing,
                    };
                    match s.kind {
                        Name::From => once(&mut from, h, "From")?,
                        _ => once(&mut to, h, "To")?,
                    }
                    pos = s.lf + 1;
                    continue;
                }
                Name::CallId => plain!(Name::CallId),
                Name::From => plain!(Name::From),
                Name::To => plain!(Name::To),
                Name::Via => plain!(Name::Via),
                Name::CSeq => plain!(Name::CSeq),
                Name::MaxForwards => plain!(Name::MaxForwards),
                Name::ContentLength => plain!(Name::ContentLength),
                Name::Route => plain!(Name::Route),
                Name::RecordRoute => plain!(Name::RecordRoute),
                Name::Authorization => plain!(Name::Authorization),
                Name::ProxyAuthorization => plain!(Name::ProxyAuthorization),
                Name::ProxyRequire => plain!(Name::ProxyRequire),
            }
        }
        if PLAIN && buf.get(pos..pos + 2) == Some(b"\r\n") {
            break (pos, pos + 2);
        }
        let h = match header::any_line(buf, pos) {
            Ok(Next::Header(h)) => h,
            Ok(Next::End { body }) => break (pos, body),
            Err(LineError::NoColon) => return Err(ScanError::HeaderWithoutColon),
            Err(LineError::BadName) => return Err(ScanError::BadHeaderName),
        };
        pos = h.line.1;
        read!(h);
    };

    let body_len = buf.len() - body_start;
    let body = match content_length {
        Some(n) if n as usize > body_len => return Err(ScanError::ContentLengthTooLarge),
        Some(n) => Span::new(body_start, body_start + n as usize),
        None => Span::new(body_start, buf.len()),
    };
    let (via, via_header, via_header_next) = via.ok_or(ScanError::MissingHeader("Via"))?;
    let (cseq, cseq_method, cseq_kind) = cseq.ok_or(ScanError::MissingHeader("CSeq"))?;
    // Known methods are told apart by their kind; only others by their bytes.
    if let StartLine::Request {
        method,
        method_span,
        ..
    } = start
        && (method != cseq_kind
            || (method == Method::Other && method_span.of(buf) != cseq_method.of(buf)))
    {
        return Err(ScanError::CSeqMethodMismatch);
    }
    let auth_user = proxy_auth.or(auth).and_then(|v| digest_username(buf, v));
    Ok(Message {
        buf,
        start,
        headers_start,
        headers_end,
        body,
        call_id: call_id.ok_or(ScanError::MissingHeader("Call-ID"))?,
        from_header: from.ok_or(ScanError::MissingHeader("From"))?,
        to_header: to.ok_or(ScanError::MissingHeader("To"))?,
        cseq,
        cseq_method,
        cseq_kind,
        via,
        via_header,
        via_header_next,
        via_second,
        via_count,
        max_forwards,
        content_length,
        routes,
        record_routes: ALL.then_some(record_routes),
        auth_user,
        proxy_require,
    })
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
