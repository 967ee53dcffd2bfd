//! A realistic message set for the scanner benchmark: a SIPp-style call (INVITE with SDP,
//! 100, 180, 200 with SDP, ACK, BYE) plus OPTIONS and a REGISTER with Digest credentials.

const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0 8 18 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

fn with_sdp(head: &str) -> Vec<u8> {
    format!(
        "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
    .into_bytes()
}

/// (name, bytes) for every message of the set.
pub fn all() -> Vec<(&'static str, Vec<u8>)> {
    let dialog = "From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\nTo: <sip:bob@example.net>;tag=a6c85cf\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n";
    let via = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsd8f7a6c5b4e3d2c1\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;received=192.0.2.10;rport=5060\r\n";
    vec![
        ("INVITE", with_sdp(
            "INVITE sip:bob@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\nTo: Bob <sip:bob@example.net>\r\nFrom: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@192.0.2.10:5060>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n\
Supported: replaces, timer\r\nUser-Agent: Example SBC 4.2\r\nP-Asserted-Identity: <sip:+15551234567@example.com>\r\n\
Session-Expires: 1800;refresher=uac\r\nMin-SE: 90\r\n")),
        ("100", format!("SIP/2.0 100 Trying\r\n{via}From: Alice <sip:alice@example.com>;tag=1928301774\r\nTo: Bob <sip:bob@example.net>\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n").into_bytes()),
        ("180", format!("SIP/2.0 180 Ringing\r\n{via}Record-Route: <sip:192.0.2.1:5060;lr>\r\n{dialog}\
Contact: <sip:bob@192.0.2.20:5060>\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n").into_bytes()),
        ("200+SDP", with_sdp(&format!("SIP/2.0 200 OK\r\n{via}Record-Route: <sip:192.0.2.1:5060;lr>\r\n{dialog}\
Contact: <sip:bob@192.0.2.20:5060>\r\nCSeq: 314159 INVITE\r\nAllow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n"))),
        ("ACK", format!("ACK sip:bob@192.0.2.20:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhdt;rport\r\n\
Route: <sip:192.0.2.1:5060;lr>\r\nMax-Forwards: 70\r\n{dialog}CSeq: 314159 ACK\r\nContent-Length: 0\r\n\r\n").into_bytes()),
        ("BYE", format!("BYE sip:bob@192.0.2.20:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhdu;rport\r\n\
Route: <sip:192.0.2.1:5060;lr>\r\nMax-Forwards: 70\r\n{dialog}CSeq: 314160 BYE\r\nContent-Length: 0\r\n\r\n").into_bytes()),
        ("OPTIONS", b"OPTIONS sip:carol@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKhjhs8ass877\r\n\
Max-Forwards: 70\r\nTo: <sip:carol@example.org>\r\nFrom: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\nCSeq: 63104 OPTIONS\r\nContact: <sip:alice@192.0.2.10>\r\nAccept: application/sdp\r\n\
Content-Length: 0\r\n\r\n".to_vec()),
        ("REGISTER", b"REGISTER sip:registrar.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.30:5060;branch=z9hG4bKnashds7\r\n\
Max-Forwards: 70\r\nTo: Bob <sip:bob@example.com>\r\nFrom: Bob <sip:bob@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\nCSeq: 1826 REGISTER\r\nContact: <sip:bob@192.0.2.30>\r\nExpires: 7200\r\n\
Authorization: Digest username=\"bob\", realm=\"example.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
uri=\"sip:registrar.example.com\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5\r\n\
Content-Length: 0\r\n\r\n".to_vec()),
    ]
}

/// A SIPp call as sipdispatch forwards it (`sipp -sn uac` → sipdispatch → `sipp -sn uas`, one
/// message of each kind): the INVITE, ACK and BYE from the uac, the 180, 200 and BYE's 200 from
/// the uas with its two Vias on one line. The data-plane scan's workload.
pub fn sipp_call() -> Vec<(&'static str, Vec<u8>)> {
    let vias = "SIP/2.0/UDP 127.0.0.1:7300;branch=z9hG4bK665f6203fefefeec, \
SIP/2.0/UDP 127.0.0.1:7302;branch=z9hG4bK-3319-1-0";
    vec![
        ("sipp-INVITE", sipp_request("INVITE", 1, 1, 0, false)),
        (
            "sipp-180",
            sipp_response(vias, "180 Ringing", "INVITE", 1, 1),
        ),
        ("sipp-200", sipp_response(vias, "200 OK", "INVITE", 1, 1)),
        ("sipp-ACK", sipp_request("ACK", 1, 1, 5, true)),
        ("sipp-BYE", sipp_request("BYE", 1, 2, 7, true)),
        ("sipp-200-BYE", sipp_response(vias, "200 OK", "BYE", 2, 1)),
    ]
}

/// A request of SIPp call number `call` as `sipp -sn uac` on 127.0.0.1:7302 sends it to
/// 127.0.0.1:7300: `branch` ends its branch (0 for the INVITE, 5 for the ACK, 7 for the BYE),
/// a To-tag once the dialog exists, SDP on the INVITE.
pub fn sipp_request(method: &str, call: usize, cseq: u32, branch: u32, to_tag: bool) -> Vec<u8> {
    let tag = if to_tag { ";tag=3313SIPpTag011" } else { "" };
    format!(
        "{method} sip:service@127.0.0.1:7300 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7302;branch=z9hG4bK-3319-{call}-{branch}\r\n\
From: sipp <sip:sipp@127.0.0.1:7302>;tag=3319SIPpTag00{call}\r\nTo: service <sip:service@127.0.0.1:7300>{tag}\r\n\
Call-ID: {call}-3319@127.0.0.1\r\nCSeq: {cseq} {method}\r\nContact: sip:sipp@127.0.0.1:7302\r\nMax-Forwards: 70\r\n\
Subject: Performance Test\r\n{}",
        sipp_body(method == "INVITE")
    )
    .into_bytes()
}

/// `sipp -sn uas`'s answer (from 127.0.0.1:7301) in SIPp call number `call`: the request's Vias
/// `vias` on one line, as SIPp writes them; SDP on a 200 to the INVITE.
pub fn sipp_response(vias: &str, status: &str, method: &str, cseq: u32, call: usize) -> Vec<u8> {
    format!(
        "SIP/2.0 {status}\r\nVia: {vias}\r\nFrom: sipp <sip:sipp@127.0.0.1:7302>;tag=3319SIPpTag00{call}\r\n\
To: service <sip:service@127.0.0.1:7300>;tag=3313SIPpTag011\r\nCall-ID: {call}-3319@127.0.0.1\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:127.0.0.1:7301;transport=UDP>\r\n{}",
        sipp_body(status == "200 OK" && method == "INVITE")
    )
    .into_bytes()
}

/// The end of a SIPp message's headers and its body: SDP (Content-Length padded to five places,
/// as SIPp writes it there) or none.
fn sipp_body(sdp: bool) -> String {
    const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 6004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    if sdp {
        format!(
            "Content-Type: application/sdp\r\nContent-Length: {:5}\r\n\r\n{SDP}",
            SDP.len()
        )
    } else {
        "Content-Length: 0\r\n\r\n".into()
    }
}
