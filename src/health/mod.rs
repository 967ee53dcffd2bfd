//! Health checking: the keepalive prober, Kamailio's destination state machine and latency
//! statistics. Sans I/O like the rest of the core: the prober writes keepalives into the shard's
//! outbox and is fed the replies the data path recognises; it owns no socket and no thread.
#![forbid(unsafe_code)]

pub mod latency;
pub mod prober;
pub mod settings;
pub mod state;

pub use latency::LatencyStats;
pub use prober::{Cause, Change, ProbeSettings, Prober};
pub use settings::HealthConfig;
pub use state::{AcceptCodes, Machine, ProbingMode};
