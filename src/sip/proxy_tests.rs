use super::*;
use crate::sip::{Scanned, scan};

fn me() -> Identity {
    Identity::new("192.0.2.1", 5060, &["192.0.2.1:5060".parse().unwrap()])
}

fn msg(s: &[u8]) -> Message<'_> {
    match scan(s) {
        Ok(Scanned::Message(m)) => m,
        other => panic!("{other:?}"),
    }
}

fn forward(req: &[u8], src: &str, rr: bool) -> String {
    let m = msg(req);
    let RequestPlan::Forward(f) = plan_request(&m, &me()) else {
        panic!("not forwarded: {:?}", plan_request(&m, &me()))
    };
    let mut out = [0u8; 4096];
    let n = write_request(&m, &f, rr, &me(), src.parse().unwrap(), &mut out).unwrap();
    String::from_utf8(out[..n].to_vec()).unwrap()
}

const INVITE: &[u8] = b"INVITE sip:service@192.0.2.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5061;branch=z9hG4bK-1-0\r\n\
From: sipp <sip:sipp@10.0.0.5:5061>;tag=1\r\n\
To: sut <sip:service@192.0.2.1:5060>\r\n\
Call-ID: 1-1@10.0.0.5\r\n\
CSeq: 1 INVITE\r\n\
Max-Forwards: 70\r\n\
Content-Length: 3\r\n\
\r\n\
v=0trailing junk";

#[test]
fn request_gets_via_decremented_mf_and_record_route() {
    let out = forward(INVITE, "10.0.0.5:5061", true);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("INVITE sip:service@192.0.2.1:5060 SIP/2.0")
    );
    let via = lines.next().unwrap();
    assert!(
        via.starts_with("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK"),
        "{via}"
    );
    assert_eq!(
        via.len(),
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK".len() + 16
    );
    assert_eq!(lines.next(), Some("Record-Route: <sip:192.0.2.1:5060;lr>"));
    assert_eq!(
        lines.next(),
        Some("Via: SIP/2.0/UDP 10.0.0.5:5061;branch=z9hG4bK-1-0")
    );
    assert!(out.contains("\r\nMax-Forwards: 69\r\n"));
    // Bytes past Content-Length are not forwarded.
    assert!(out.ends_with("\r\n\r\nv=0"), "{out}");
    // It scans again with one more Via and the same Call-ID.
    let m = msg(out.as_bytes());
    assert_eq!(m.via_count, 2);
    assert_eq!(m.call_id(), b"1-1@10.0.0.5");
    assert_eq!(m.max_forwards.unwrap().0, 69);
}

#[test]
fn branch_is_stable_for_retransmissions_and_cancel() {
    let a = forward(INVITE, "10.0.0.5:5061", false);
    let b = forward(INVITE, "10.0.0.5:5061", false);
    let cancel = b"CANCEL sip:service@192.0.2.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5061;branch=z9hG4bK-1-0\r\n\
From: sipp <sip:sipp@10.0.0.5:5061>;tag=1\r\nTo: sut <sip:service@192.0.2.1:5060>\r\n\
Call-ID: 1-1@10.0.0.5\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let c = forward(cancel, "10.0.0.5:5061", false);
    let top = |s: &str| s.lines().nth(1).unwrap().to_owned();
    assert_eq!(top(&a), top(&b));
    assert_eq!(top(&a), top(&c));
    let other = String::from_utf8(INVITE.to_vec())
        .unwrap()
        .replace("z9hG4bK-1-0", "z9hG4bK-2-0");
    assert_ne!(
        top(&a),
        top(&forward(other.as_bytes(), "10.0.0.5:5061", false))
    );
}

#[test]
fn rfc2543_request_gets_branch_and_max_forwards() {
    let req = b"INVITE sip:joe@example.com SIP/2.0\r\nTo: sip:joe@example.com\r\n\
From: sip:caller@example.net\r\nCall-ID: inv2543.1717@example.net\r\nCSeq: 1 INVITE\r\n\
Via: SIP/2.0/UDP 192.0.2.15\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n";
    let out = forward(req, "192.0.2.15:5060", false);
    assert!(out.contains("\r\nMax-Forwards: 70\r\n"));
    assert!(out.contains(";branch=z9hG4bK"));
    assert!(out.ends_with("\r\n\r\nv=0\r\n"));
    assert_eq!(out, forward(req, "192.0.2.15:5060", false));
}

#[test]
fn received_and_rport_rfc3581() {
    let req = String::from_utf8(INVITE.to_vec())
        .unwrap()
        .replace("branch=z9hG4bK-1-0", "rport;branch=z9hG4bK-1-0");
    let out = forward(req.as_bytes(), "203.0.113.9:40000", false);
    assert!(
        out.contains(
            "Via: SIP/2.0/UDP 10.0.0.5:5061;rport=40000;branch=z9hG4bK-1-0;received=203.0.113.9\r\n"
        ),
        "{out}"
    );
    // Source differs, no rport: received only.
    let out = forward(INVITE, "203.0.113.9:5061", false);
    assert!(out.contains(";branch=z9hG4bK-1-0;received=203.0.113.9\r\n"));
    // Source is the sent-by host: untouched.
    let out = forward(INVITE, "10.0.0.5:5061", false);
    assert!(!out.contains("received="));
    // IPv6 source into received, without brackets (RFC 5118 §4.5).
    let out = forward(INVITE, "[2001:db8::9]:5061", false);
    assert!(out.contains(";received=2001:db8::9\r\n"), "{out}");
    // A received naming another address is corrected; one naming the source is kept.
    let stale = String::from_utf8(INVITE.to_vec()).unwrap().replace(
        "branch=z9hG4bK-1-0",
        "received=[2001:db8::1];branch=z9hG4bK-1-0",
    );
    let out = forward(stale.as_bytes(), "203.0.113.9:5061", false);
    assert!(
        out.contains(";received=203.0.113.9;branch=z9hG4bK-1-0\r\n"),
        "{out}"
    );
    let out = forward(stale.as_bytes(), "[2001:db8::1]:5061", false);
    assert!(
        out.contains(";received=[2001:db8::1];branch=z9hG4bK-1-0\r\n"),
        "{out}"
    );
}

#[test]
fn loose_routing_pops_our_route() {
    let req = b"BYE sip:uas@10.0.0.9:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5061;branch=z9hG4bK-9\r\n\
Route: <sip:192.0.2.1:5060;lr>\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n\r\n";
    let m = msg(req);
    let RequestPlan::Forward(f) = plan_request(&m, &me()) else {
        panic!()
    };
    assert!(f.pop_route);
    assert_eq!(f.route_target, None);
    let out = forward(req, "10.0.0.5:5061", false);
    assert!(!out.contains("Route:"), "{out}");

    // Two entries in one header: pop only ours; the next one is the next hop.
    let req = b"BYE sip:uas@10.0.0.9:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5061;branch=z9hG4bK-9\r\n\
Route: <sip:192.0.2.1;lr>, <sip:10.0.0.7:5070;lr>\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n";
    let m = msg(req);
    let RequestPlan::Forward(f) = plan_request(&m, &me()) else {
        panic!()
    };
    assert!(f.pop_route);
    let t = f.route_target.unwrap();
    assert_eq!((t.host.of(m.buf), t.port), (&b"10.0.0.7"[..], Some(5070)));
    let out = forward(req, "10.0.0.5:5061", false);
    assert!(
        out.contains("\r\nRoute: <sip:10.0.0.7:5070;lr>\r\n"),
        "{out}"
    );

    // A Route to someone else stays and names the next hop.
    let req = String::from_utf8(req.to_vec())
        .unwrap()
        .replace("<sip:192.0.2.1;lr>, ", "");
    let m = msg(req.as_bytes());
    let RequestPlan::Forward(f) = plan_request(&m, &me()) else {
        panic!()
    };
    assert!(!f.pop_route && f.route_target.is_some());
}

/// Our Route comes back spelled as our Record-Route wrote it, which is recognised without
/// parsing it; any other spelling of our address is parsed and recognised too, and near misses
/// of the spelling are not ours.
#[test]
fn our_route_in_any_spelling_is_popped() {
    let plan = |route: &str| {
        let req = format!(
            "BYE sip:uas@10.0.0.9:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5061;branch=z9hG4bK-9\r\n\
Route: {route}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n"
        );
        match plan_request(&msg(req.as_bytes()), &me()) {
            RequestPlan::Forward(f) => (f.pop_route, f.route_target.is_some()),
            other => panic!("{route}: {other:?}"),
        }
    };
    for ours in [
        "<sip:192.0.2.1:5060;lr>",
        "<SIP:192.0.2.1:5060;lr>",
        "<sip:192.0.2.1:5060;LR>",
        "<sip:192.0.2.1;lr>",
        "<sip:192.0.2.1:5060;lr;ftag=x>",
        "\"proxy\" <sip:192.0.2.1:5060;lr>",
    ] {
        assert_eq!(plan(ours), (true, false), "{ours}");
    }
    for theirs in [
        "<sip:192.0.2.1:5061;lr>",
        "<sip:192.0.2.10:5060;lr>",
        "<sip:192.0.2.11:5060;lr>",
    ] {
        assert_eq!(plan(theirs), (false, true), "{theirs}");
    }
}

#[test]
fn local_replies_required_by_the_rules() {
    let with = |from: &str, to: &str| {
        String::from_utf8(INVITE.to_vec())
            .unwrap()
            .replace(from, to)
    };
    let zero = with("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(
        plan_request(&msg(zero.as_bytes()), &me()),
        RequestPlan::Reply(LocalReply::TooManyHops)
    );
    // Our own Via on top: the request came straight back to us.
    let looped = with(
        "Via: SIP/2.0/UDP 10.0.0.5:5061;",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;",
    );
    assert_eq!(
        plan_request(&msg(looped.as_bytes()), &me()),
        RequestPlan::Reply(LocalReply::LoopDetected)
    );
    let ack = zero.replace("INVITE", "ACK");
    assert_eq!(
        plan_request(&msg(ack.as_bytes()), &me()),
        RequestPlan::DropAck
    );
    let unk = with("INVITE sip:service@", "INVITE isbn:service@");
    assert_eq!(
        plan_request(&msg(unk.as_bytes()), &me()),
        RequestPlan::Reply(LocalReply::UnsupportedScheme)
    );
    let pr = with(
        "Max-Forwards: 70",
        "Max-Forwards: 70\r\nProxy-Require: foo, bar",
    );
    assert!(matches!(
        plan_request(&msg(pr.as_bytes()), &me()),
        RequestPlan::Reply(LocalReply::BadExtension(s)) if s.of(pr.as_bytes()) == b"foo, bar"
    ));
    let opt = b"OPTIONS sip:192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:192.0.2.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert_eq!(
        plan_request(&msg(opt), &me()),
        RequestPlan::Reply(LocalReply::Options200)
    );
}

const RESPONSE: &[u8] = b"SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc, SIP/2.0/UDP 10.0.0.5:5061;branch=z9hG4bK-1-0;received=10.0.0.6;rport=7000\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

#[test]
fn response_strips_our_joined_via() {
    let m = msg(RESPONSE);
    let mut out = [0u8; 1024];
    let (n, to) = write_response(&m, &me(), &mut out).unwrap();
    let s = std::str::from_utf8(&out[..n]).unwrap();
    assert!(s.starts_with(
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.5:5061;branch=z9hG4bK-1-0;received=10.0.0.6;rport=7000\r\nFrom:"
    ), "{s}");
    assert_eq!(to, "10.0.0.6:7000".parse().unwrap());
    let again = msg(&out[..n]);
    assert_eq!(again.via_count, 1);
    assert_eq!(again.call_id(), b"c");
}

#[test]
fn response_strips_our_via_line_and_goes_to_sent_by() {
    let r = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\n\
v: SIP/2.0/UDP [2001:db8::5]:5062;branch=z9hG4bK1\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
    let m = msg(r);
    let mut out = [0u8; 1024];
    let (n, to) = write_response(&m, &me(), &mut out).unwrap();
    assert!(out[..n].starts_with(b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP [2001:db8::5]:5062"));
    assert_eq!(to, "[2001:db8::5]:5062".parse().unwrap());
}

#[test]
fn responses_that_are_not_ours_or_unroutable_are_dropped() {
    let mut out = [0u8; 1024];
    let theirs = String::from_utf8(RESPONSE.to_vec())
        .unwrap()
        .replace("192.0.2.1:5060", "192.0.2.99:5060");
    let m = msg(theirs.as_bytes());
    assert_eq!(
        write_response(&m, &me(), &mut out),
        Err(ResponseDrop::NotOurVia)
    );
    let only_ours = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert_eq!(
        write_response(&msg(only_ours), &me(), &mut out),
        Err(ResponseDrop::ForUs)
    );
    let bcast = String::from_utf8(RESPONSE.to_vec())
        .unwrap()
        .replace("received=10.0.0.6", "received=255.255.255.255");
    assert_eq!(
        write_response(&msg(bcast.as_bytes()), &me(), &mut out),
        Err(ResponseDrop::BadNextHop)
    );
    let name = String::from_utf8(RESPONSE.to_vec())
        .unwrap()
        .replace("received=10.0.0.6;", "")
        .replace("10.0.0.5:5061", "uac.example.com:5061");
    assert_eq!(
        write_response(&msg(name.as_bytes()), &me(), &mut out),
        Err(ResponseDrop::Unresolvable)
    );
}

#[test]
fn small_buffer_is_an_error_not_a_panic() {
    let m = msg(INVITE);
    let RequestPlan::Forward(f) = plan_request(&m, &me()) else {
        panic!()
    };
    let mut out = [0u8; 64];
    assert_eq!(
        write_request(
            &m,
            &f,
            true,
            &me(),
            "10.0.0.5:5061".parse().unwrap(),
            &mut out
        ),
        Err(Overflow)
    );
}

#[test]
fn own_host_matches_in_any_case_and_only_on_our_port() {
    let me = Identity::new("lb.example.net", 5060, &["192.0.2.1:5070".parse().unwrap()]);
    assert!(me.is_own(b"lb.example.net", None));
    assert!(me.is_own(b"LB.Example.NET", Some(5060)));
    assert!(me.is_own(b"192.0.2.1", Some(5070)));
    assert!(
        !me.is_own(b"192.0.2.1", None),
        "the listen address has its own port"
    );
    assert!(!me.is_own(b"lb.example.ne", None));
    assert!(!me.is_own(b"lb.example.org", Some(5060)));
}

#[test]
fn received_and_rport_at_the_same_place_keep_their_order() {
    let req = b"INVITE sip:bob@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5061;branch=z9hG4bKx;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.net>\r\nCall-ID: c1\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let m = msg(req);
    let RequestPlan::Forward(f) = plan_request(&m, &me()) else {
        panic!()
    };
    let mut out = [0u8; 1024];
    let src: SocketAddr = "10.0.0.9:5999".parse().unwrap();
    let n = write_request(&m, &f, false, &me(), src, &mut out).unwrap();
    let text = std::str::from_utf8(&out[..n]).unwrap();
    assert!(
        text.contains("\r\nVia: SIP/2.0/UDP 10.0.0.5:5061;branch=z9hG4bKx;rport=5999;received=10.0.0.9\r\nMax-Forwards: 69\r\n"),
        "{text}"
    );
}
