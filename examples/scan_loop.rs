//! Scans one message of the benchmark set N times: the workload `bench/scan_instructions.sh`
//! counts instructions over (callgrind), where a criterion loop would add its own.
//!   cargo run --release --example scan_loop -- INVITE 1000

use sipdispatch::sip::{Scanned, scan};

#[path = "../bench/messages.rs"]
mod messages;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "INVITE".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let msgs = messages::all();
    let Some((_, msg)) = msgs.iter().find(|(name, _)| *name == which) else {
        eprintln!(
            "no message {which}; one of: {:?}",
            msgs.iter().map(|m| m.0).collect::<Vec<_>>()
        );
        std::process::exit(2);
    };
    let mut acc = 0usize;
    for _ in 0..n {
        if let Ok(Scanned::Message(m)) = scan(std::hint::black_box(msg)) {
            acc += m.call_id().len() + m.via.branch.map_or(0, |b| b.len());
        }
    }
    println!("{acc}");
}
