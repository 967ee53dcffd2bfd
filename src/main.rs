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
use sipdispatch::{control, runtime};

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
    #[arg(long, short, value_name = "FILE", global = true)]
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
    /// Call a running instance's management API, as kamcmd does for Kamailio: e.g.
    /// `sipdispatch ctl dispatcher.list`, `sipdispatch ctl dispatcher.set_state ip 1
    /// sip:10.0.0.2:5060`, `sipdispatch ctl dispatcher.reload`.
    #[command(after_help = "\
Methods: dispatcher.list [short|full], dispatcher.reload, dispatcher.set_state STATE GROUP \
ADDRESS|all, dispatcher.set_duid_state STATE GROUP DUID|all, dispatcher.ping_active [0|1], \
dispatcher.add GROUP ADDRESS [FLAGS [PRIORITY [ATTRS]]], dispatcher.remove GROUP ADDRESS, \
dispatcher.hash NSLOTS VAL1 [VAL2], dispatcher.oclist GROUP, dispatcher.oc_set GROUP ADDRESS \
RATE [VALIDITY_S [SEQ]]; OpenSIPS's ds_list, ds_reload, ds_set_state, dispatcher:list, \
dispatcher:reload, dispatcher:set_state. See docs/operations.md.")]
    Ctl {
        /// The method, e.g. dispatcher.list.
        method: String,
        /// Its arguments, in Kamailio's order.
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
        /// Print the JSON-RPC result as JSON (for scripts) instead of a table.
        #[arg(long)]
        json: bool,
        /// The endpoint (host:port); default: control.listen of --config.
        #[arg(long, value_name = "ADDR")]
        endpoint: Option<std::net::SocketAddr>,
        /// Bearer token; default: control.token of --config.
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
    },
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
        (
            Some(Command::Ctl {
                method,
                args,
                json,
                endpoint,
                token,
            }),
            config,
        ) => ctl(&method, &args, json, endpoint, token, config.as_deref()),
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
    println!("shards: {}, io: {}", cfg.shards(), cfg.runtime.io);
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
            "route {}: methods={methods} -> set {} algorithm={} hash={} limit={} record_route={}",
            r.name,
            r.set,
            r.selector.algorithm.name(),
            r.selector.hash.name(),
            r.selector.limit,
            r.record_route
        );
    }
    Ok(())
}

fn ctl(
    method: &str,
    args: &[String],
    json: bool,
    endpoint: Option<std::net::SocketAddr>,
    token: Option<String>,
    config: Option<&std::path::Path>,
) -> Result<(), String> {
    let from_cfg = match config {
        Some(f) => Config::load(f).map_err(|e| e.to_string())?.control,
        None => None,
    };
    let endpoint = endpoint
        .or(from_cfg.as_ref().map(|c| c.listen))
        .ok_or("no endpoint: give --endpoint ADDR, or --config FILE with a [control] section")?;
    let token = token.or(from_cfg.and_then(|c| c.token));
    let result = control::client::call(endpoint, token.as_deref(), method, args)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    } else {
        print!("{}", control::client::human(method, &result));
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
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .map_err(|e| format!("signal handler: {e}"))?;
    let inst =
        runtime::start(&cfg, Arc::clone(&stop)).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut ctl = control::Control::new(
        file.to_owned(),
        Arc::clone(&inst.shared),
        inst.counters.clone(),
        inst.io.counters.clone(),
        Arc::clone(&inst.ping_active),
        cfg.control.as_ref().is_none_or(|c| c.inherit_state),
    );
    ctl.started_with = Some(cfg.clone());
    let ctl = Arc::new(ctl);
    let endpoint = match &cfg.control {
        Some(c) => {
            let watch = c
                .watch_list_file
                .then(|| cfg.destinations.list_file.clone())
                .flatten();
            Some(
                control::http::serve(Arc::clone(&ctl), c, watch, Arc::clone(&stop)).map_err(
                    |e| {
                        stop.store(true, Relaxed);
                        format!("{}: {e}", file.display())
                    },
                )?,
            )
        }
        None => None,
    };
    tracing::info!(
        "sipdispatch running on {:?} ({:?})",
        cfg.listen.udp,
        inst.io.backends
    );
    runtime::summaries(
        &inst,
        Duration::from_secs(cfg.log.summary_interval),
        &stop,
        || {
            if hup.swap(false, Relaxed) {
                tracing::info!("SIGHUP: reloading {}", file.display());
                let _ = ctl.reload(None);
            }
        },
    );
    if let Some(t) = endpoint {
        let _ = t.join();
    }
    tracing::info!("stopping: finishing in-flight batches");
    inst.io.join();
    for (i, c) in inst.counters.iter().enumerate() {
        tracing::info!("shard {i} final: {}", c.snapshot());
    }
    Ok(())
}
