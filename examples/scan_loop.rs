//! Scans one message of the benchmark set N times: the workload `bench/scan_instructions.sh`
//! counts instructions over (callgrind), where a criterion loop would add its own.
//!   cargo run --release --example scan_loop -- INVITE 1000
//! Messages named `sipp-…` (a SIPp call) are scanned as the data plane scans them
//! (`scan_forwarding`); the others with the full `scan`. `sipp` scans the whole SIPp call
//! each round (instructions per round ÷ 6 = per forwarded message).

use sipdispatch::sip::{ScanMemory, Scanned, scan, scan_forwarding};

#[path = "../bench/messages.rs"]
mod messages;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "INVITE".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let mut msgs = messages::all();
    msgs.extend(messages::sipp_call());
    if which == "sipp" {
        msgs = messages::sipp_call();
    } else {
        msgs.retain(|(name, _)| *name == which);
    }
    let Some((name, _)) = msgs.first() else {
        eprintln!(
            "no message {which}; one of: {:?}",
            msgs.iter().map(|m| m.0).collect::<Vec<_>>()
        );
        std::process::exit(2);
    };
    // The data plane's scan keeps its memory from one message to the next, as a shard does.
    let mut heads = ScanMemory::default();
    let forwarding = name.starts_with("sipp-");
    let mut scanner = |m| {
        if forwarding {
            scan_forwarding(m, &mut heads)
        } else {
            scan(m)
        }
    };
    let mut acc = 0usize;
    for _ in 0..n {
        for (name, msg) in &msgs {
            if let Ok(Scanned::Message(m)) = scanner(std::hint::black_box(msg)) {
                acc += m.call_id().len() + m.via.branch.map_or(0, |b| b.len());
            } else {
                panic!("{name} does not scan");
            }
        }
    }
    println!("{acc}");
}
