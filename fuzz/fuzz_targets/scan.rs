//! The scanner and the verdict on any bytes: no panic, and every range of a scanned message
//! inside the datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipdispatch::sip::invariants::spans;
use sipdispatch::sip::proxy::Identity;
use sipdispatch::sip::{Scanned, scan, verdict::judge};

fuzz_target!(|data: &[u8]| {
    let _ = judge(data, &Identity::new("192.0.2.1", 5060, &[]));
    if let Ok(Scanned::Message(m)) = scan(data) {
        for s in spans(&m) {
            assert!(s.start <= s.end && s.end() <= data.len(), "{s:?}");
        }
    }
});
