//! `sipload`: the project's SIP load generator. With SIPp's command line it runs SIPp
//! scenarios (`sipload -sn uac 127.0.0.1:5060 ...`, see [`sipp`]); the subcommands `blast`
//! (pre-built INVITEs at a fixed or the highest rate), `sink` (counts what arrives) and
//! `relay` (a no-parsing recvmmsg→sendmmsg forwarder: the machine's ceiling) are the
//! forwarding benchmark's tools. Every loop is bounded by a count and a duration.

mod message;
mod net;
mod sipp;
mod tools;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "SIP load generator (benchmark tools)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
pub struct Common {
    /// Pin to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Socket buffer size in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub buf: usize,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Datagrams per send/receive batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Print one JSON summary line instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send pre-built INVITEs with unique Call-IDs.
    Blast {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:0")]
        local: SocketAddr,
        /// Messages per second, or 0 for as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Stop after this many messages.
        #[arg(long, default_value_t = u64::MAX)]
        count: u64,
        /// Extra SDP lines (of ~50 bytes) to make messages bigger.
        #[arg(long, default_value_t = 0)]
        size_pad: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Count datagrams that arrive, per second and in total.
    Sink {
        #[arg(long)]
        listen: SocketAddr,
        /// Stop once this many arrived.
        #[arg(long, default_value_t = u64::MAX)]
        expect: u64,
        /// Stop after this many idle seconds once traffic started.
        #[arg(long, default_value_t = 2.0)]
        idle: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Forward every datagram from --listen to --to without looking at it.
    Relay {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        to: SocketAddr,
        #[command(flatten)]
        common: Common,
    },
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !matches!(
        args.first().map(String::as_str),
        Some("blast" | "sink" | "relay")
    ) {
        return sipp::main(&args);
    }
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let r = match cli.command {
        Cmd::Blast {
            target,
            local,
            rate,
            count,
            size_pad,
            common,
        } => tools::blast(target, local, rate, count, size_pad, &common, &stop),
        Cmd::Sink {
            listen,
            expect,
            idle,
            common,
        } => tools::sink(listen, expect, idle, &common, &stop),
        Cmd::Relay { listen, to, common } => tools::relay(listen, to, &common, &stop),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipload: {e}");
            ExitCode::FAILURE
        }
    }
}
