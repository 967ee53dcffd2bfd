#![forbid(unsafe_code)]
//! The `sipdispatch` command: run the dispatcher on a config file, check a config, or compare
//! the kernel's settings with the recommended ones.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use clap::{Parser, Subcommand};
use sipdispatch::config::Config;
use sipdispatch::runtime;

/// A SIP load balancer with Kamailio's dispatcher semantics.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about = None,
    after_help = "\
Running: `sipdispatch --config FILE` forwards until SIGINT or SIGTERM, then sends what is in \
flight, closes its sockets and exits 0. Every `[log] summary_interval` seconds it logs one \
counter line per shard at info level; RUST_LOG sets the level (default info), logs go to stderr.
Exit status: 0 on success, 1 when the config is refused (the error names file, line and reason) \
or the data plane cannot start."
)]
struct Cli {
    /// Config file to run (TOML; see examples/sipdispatch.toml and docs/configuration.md).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and print the sets and routes it would use.
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
    /// Print the kernel's network settings against what tuning/ recommends.
    TuneCheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match (cli.command, cli.config) {
        (Some(Command::CheckConfig { file }), _) => check_config(&file),
        (Some(Command::TuneCheck), _) => {
            print!("{}", sipdispatch::tune::report());
            Ok(())
        }
        (None, Some(file)) => run(&file),
        (None, None) => Err("nothing to do: give --config FILE (see --help)".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipdispatch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> Result<(), String> {
    let cfg = Config::load(file).map_err(|e| e.to_string())?;
    let table = runtime::build_table(&cfg, None).map_err(|e| format!("{}: {e}", file.display()))?;
    let (host, port) = cfg.advertise();
    println!("{}: ok", file.display());
    println!("listen: {:?}, advertised as {host}:{port}", cfg.listen.udp);
    println!("shards: {}, io: {:?}", cfg.shards(), cfg.runtime.io);
    for set in &table.sets {
        println!("set {}:", set.id);
        for d in &set.dests {
            let addr = d.addr.map_or("unresolved".to_owned(), |a| a.to_string());
            println!(
                "  {:<32} {} prio={:<4} {addr:<22} {}",
                d.uri,
                d.state.letters(),
                d.priority,
                d.attrs.body
            );
        }
    }
    for r in cfg.routes() {
        let methods = if r.methods.is_empty() {
            "any".to_owned()
        } else {
            r.methods
                .iter()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "route {}: methods={methods} -> set {} algorithm={} hash={:?} limit={} record_route={}",
            r.name,
            r.set,
            r.selector.algorithm.name(),
            r.selector.hash,
            r.selector.limit,
            r.record_route
        );
    }
    Ok(())
}

fn run(file: &std::path::Path) -> Result<(), String> {
    let cfg = Config::load(file).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let inst =
        runtime::start(&cfg, Arc::clone(&stop)).map_err(|e| format!("{}: {e}", file.display()))?;
    tracing::info!(
        "sipdispatch running on {:?} ({:?})",
        cfg.listen.udp,
        inst.io.backends
    );
    runtime::summaries(&inst, Duration::from_secs(cfg.log.summary_interval), &stop);
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("stopping: finishing in-flight batches");
    inst.io.join();
    for (i, c) in inst.counters.iter().enumerate() {
        tracing::info!("shard {i} final: {}", c.snapshot());
    }
    Ok(())
}
