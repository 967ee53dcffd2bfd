//! sipdispatch: a SIP load balancer with the semantics of Kamailio's and OpenSIPS's `dispatcher`
//! modules, built for line rate.
//!
//! Layers, data flowing one way (see `docs/architecture.md`):
//! socket ([`io`]) → scan ([`sip::scan`]) → decide ([`dispatch`]) → rewrite ([`sip::proxy`]) → send.
//! Everything below `io` is sans-I/O: plain functions over byte slices, addresses and time.

pub mod config;
pub mod control;
pub mod dispatch;
pub mod engine;
pub mod health;
pub mod io;
pub mod runtime;
pub mod sip;
pub mod tune;
