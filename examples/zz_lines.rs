use sipdispatch::sip::{Scanned, ViaHeads, scan_forwarding};
#[path = "../bench/messages.rs"]
#[allow(dead_code)]
mod messages;
fn main() {
    let mut args = std::env::args().skip(1);
    let extra: usize = args.next().unwrap().parse().unwrap();
    let line = args.next().unwrap();
    let n: usize = args.next().unwrap().parse().unwrap();
    let base = messages::sipp_request("BYE", 1, 2, 7, true);
    let s = String::from_utf8(base).unwrap();
    let at = s.find("Subject:").unwrap();
    let mut m = s[..at].to_string();
    for _ in 0..extra {
        m.push_str(&line);
        m.push_str("\r\n");
    }
    m.push_str(&s[at..]);
    let msg = m.into_bytes();
    let mut heads = ViaHeads::default();
    let mut acc = 0;
    for _ in 0..n {
        if let Ok(Scanned::Message(x)) = scan_forwarding(std::hint::black_box(&msg), &mut heads) {
            acc += x.call_id().len() + x.routes.count as usize;
        } else {
            panic!()
        }
    }
    println!("{acc}");
}
