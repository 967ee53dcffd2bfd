//! The proxy's first judgement of one datagram: a keepalive to ignore, a request the rules let
//! through (to be routed), a response (to be relayed), a local reply the rules require, or a
//! drop with its reason. Scanning errors map to the reply RFC 3261 asks for (400, or 505 for
//! another SIP version) when the datagram is a request, and to a silent drop otherwise.
#![forbid(unsafe_code)]

use super::proxy::{Forward, Identity, LocalReply, RequestPlan, plan_request};
use super::reply::Extra;
use super::scan::ScanMemory;
use super::scan::{Message, ScanError, Scanned, scan_forwarding};
use super::uri::Uri;

/// Why a datagram is dropped without a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A response, or an ACK, that the scanner refused: responses are never answered.
    Malformed(ScanError),
    /// An ACK that the rules would have answered (ACKs never get replies).
    AckNotAnswered,
}

/// A reply the proxy sends itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject<'a> {
    pub code: u16,
    pub reason: &'static str,
    pub extra: Extra<'a>,
}

/// What to do with one datagram; `M` is the scanned message, by value from [`judge`] or by
/// reference from [`judge_scanned`].
#[derive(Clone, Copy, Debug)]
pub enum Verdict<'a, M = Message<'a>> {
    Keepalive,
    /// A request to route and forward as `Forward` says.
    Request(M, Forward),
    /// A response to relay (its top Via is checked when it is written).
    Response(M),
    /// Answer locally ([`super::reply::write_reply`] builds it, leniently if the scanner
    /// refused the datagram).
    Reply(Reject<'a>),
    Drop(DropReason),
}

/// Judges one datagram, scanned as the data plane scans it ([`scan_forwarding`]), as the
/// data plane judges a request of no call it knows: what its scan leaves unread is read then
/// ([`new_request_parts`]). A shard does not read that for the in-dialog requests of a known
/// call.
pub fn judge<'a>(buf: &'a [u8], me: &Identity) -> Verdict<'a> {
    let scanned = scan_forwarding(buf, &mut ScanMemory::default());
    match judge_scanned(buf, &scanned, me) {
        Verdict::Keepalive => Verdict::Keepalive,
        Verdict::Request(m, f) => match new_request_parts(m) {
            Ok(_) => Verdict::Request(*m, f),
            Err(e) => malformed(buf, e),
        },
        Verdict::Response(m) => Verdict::Response(*m),
        Verdict::Reply(r) => Verdict::Reply(r),
        Verdict::Drop(d) => Verdict::Drop(d),
    }
}

/// What the data plane's scan left unread of a request, and a request of no known call needs
/// read: its Request-URI, parsed, and whether it starts a dialog (its To). The error the full
/// scan gives where either is malformed.
pub fn new_request_parts(m: &Message<'_>) -> Result<(Uri, bool), ScanError> {
    let uri = m.request_uri().ok_or(ScanError::BadRequestUri)?;
    Ok((uri, m.is_initial()?))
}

/// [`judge`] on a scan of `buf` that the caller keeps: the verdict points into it. The
/// message is several hundred bytes, and moving it out of the scan result and into the
/// verdict cost ~250 instructions per forwarded request.
pub fn judge_scanned<'m, 'a>(
    buf: &'a [u8],
    scanned: &'m Result<Scanned<'a>, ScanError>,
    me: &Identity,
) -> Verdict<'a, &'m Message<'a>> {
    let msg = match scanned {
        Ok(Scanned::Keepalive) => return Verdict::Keepalive,
        Ok(Scanned::Message(m)) => m,
        Err(e) => return malformed(buf, *e),
    };
    if !msg.is_request() {
        return Verdict::Response(msg);
    }
    match plan_request(msg, me) {
        RequestPlan::Forward(f) => Verdict::Request(msg, f),
        RequestPlan::DropAck => Verdict::Drop(DropReason::AckNotAnswered),
        RequestPlan::NotARequest => Verdict::Response(msg),
        RequestPlan::Reply(r) => Verdict::Reply(local(buf, r)),
    }
}

fn local(buf: &[u8], r: LocalReply) -> Reject<'_> {
    let (code, reason, extra) = match r {
        LocalReply::Options200 => (200, "OK", Extra::None),
        LocalReply::UnsupportedScheme => (416, "Unsupported URI Scheme", Extra::None),
        LocalReply::BadExtension(tags) => (420, "Bad Extension", Extra::Unsupported(tags.of(buf))),
        LocalReply::TooManyHops => (483, "Too Many Hops", Extra::None),
        LocalReply::LoopDetected => (482, "Loop Detected", Extra::None),
    };
    Reject {
        code,
        reason,
        extra,
    }
}

/// What a malformed datagram gets: a request its 400 (505 for another SIP version), an ACK or
/// a response nothing.
pub fn malformed<M>(buf: &[u8], e: ScanError) -> Verdict<'_, M> {
    let is_request = !buf.starts_with(b"SIP/") && !buf.starts_with(b"ACK ");
    if !is_request || matches!(e, ScanError::Empty | ScanError::TooLarge) {
        return Verdict::Drop(DropReason::Malformed(e));
    }
    let (code, reason) = match e {
        ScanError::BadVersion => (505, "Version Not Supported"),
        _ => (400, "Bad Request"),
    };
    Verdict::Reply(Reject {
        code,
        reason,
        extra: Extra::Warning(warning(e)),
    })
}

/// The scanner's reason as static text for a Warning header (no allocation).
fn warning(e: ScanError) -> &'static str {
    match e {
        ScanError::Empty => "empty datagram",
        ScanError::TooLarge => "datagram too large",
        ScanError::BadStartLine => "malformed start line",
        ScanError::BadRequestUri => "malformed Request-URI",
        ScanError::BadVersion => "unsupported SIP version",
        ScanError::BadStatusCode => "status code out of range",
        ScanError::HeaderWithoutColon => "header line without a colon",
        ScanError::BadHeaderName => "malformed header name",
        ScanError::BadHeader(h) => match h {
            "Via" => "malformed Via header",
            "From" => "malformed From header",
            "To" => "malformed To header",
            "CSeq" => "malformed CSeq header",
            "Call-ID" => "malformed Call-ID header",
            "Max-Forwards" => "malformed Max-Forwards header",
            "Content-Length" => "malformed Content-Length header",
            "Route" => "malformed Route header",
            "Record-Route" => "malformed Record-Route header",
            _ => "malformed header",
        },
        ScanError::DuplicateHeader(_) => "a single-valued header appears more than once",
        ScanError::MissingHeader(_) => "a mandatory header is missing",
        ScanError::ContentLengthTooLarge => "Content-Length larger than the datagram",
        ScanError::CSeqMethodMismatch => "CSeq method differs from the request method",
    }
}
