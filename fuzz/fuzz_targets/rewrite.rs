//! The whole contract on any bytes: scan, local replies, and the forwarding rewrite of
//! requests and responses (see `sipdispatch::sip::invariants`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sipdispatch::sip::invariants::check(data) {
        panic!("{e}");
    }
});
