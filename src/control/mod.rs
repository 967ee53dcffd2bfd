//! The control plane: what an operator uses on a running sipdispatch. A JSON-RPC 2.0 endpoint
//! over HTTP with Kamailio's `dispatcher.*` method names (and OpenSIPS's as aliases), Prometheus
//! metrics at `/metrics`, hot reload of the destinations (SIGHUP, RPC, or a watched list file)
//! that keeps runtime state, and the `sipdispatch ctl` client. It changes the data plane only
//! through what the shards already read — the destination table (swapped whole), destination
//! state atomics, the keepalive switch — so shards never wait on it.

pub mod client;
pub mod http;
pub mod metrics;
pub mod reload;
pub mod rpc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::engine::{Counters, Shared};
use crate::io::IoCounters;

/// The `[control]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Where the management endpoint listens (HTTP: JSON-RPC on `/`, metrics on `/metrics`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token the endpoint requires; mandatory for a non-loopback address.
    pub token: Option<String>,
    /// Carry health flags over a reload for destinations that still exist (OpenSIPS's
    /// `inherit_state`); call load, latency and rotation are always carried.
    #[serde(default = "yes")]
    pub inherit_state: bool,
    /// Reload when the list file changes (checked every second).
    #[serde(default)]
    pub watch_list_file: bool,
}

/// The endpoint's address when the section does not give one: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8060";

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("a socket address")
}

fn yes() -> bool {
    true
}

impl ControlConfig {
    /// The check that keeps the endpoint from being opened to the network without a token.
    pub fn validate(&self) -> Result<(), String> {
        if !self.listen.ip().is_loopback() && self.token.as_deref().is_none_or(str::is_empty) {
            return Err(format!(
                "control.listen: {} is not a loopback address; set control.token to expose it",
                self.listen
            ));
        }
        Ok(())
    }
}

/// What the control plane reads and changes in a running instance.
pub struct Control {
    pub config_path: PathBuf,
    pub shared: Arc<Shared>,
    pub counters: Vec<Arc<Counters>>,
    pub io: Vec<Arc<IoCounters>>,
    /// The keepalive switch (`dispatcher.ping_active`).
    pub ping_active: Arc<AtomicBool>,
    pub inherit_state: bool,
    /// Bumped by every table change (reload, add, remove).
    pub generation: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// How destination hosts added over the API are resolved (at the time of the call): every
    /// address of the host, the first is where it is sent.
    pub resolver: fn(&crate::dispatch::destination::Target) -> Vec<SocketAddr>,
    /// The config the instance started with: a reload says which of its start-only sections
    /// the file now changes.
    pub started_with: Option<crate::config::Config>,
    /// One table writer at a time.
    writer: Mutex<()>,
}

impl Control {
    pub fn new(
        config_path: PathBuf,
        shared: Arc<Shared>,
        counters: Vec<Arc<Counters>>,
        io: Vec<Arc<IoCounters>>,
        ping_active: Arc<AtomicBool>,
        inherit_state: bool,
    ) -> Self {
        Self {
            config_path,
            shared,
            counters,
            io,
            ping_active,
            inherit_state,
            generation: AtomicU64::new(1),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            resolver: crate::runtime::resolve_all,
            started_with: None,
            writer: Mutex::new(()),
        }
    }
}
