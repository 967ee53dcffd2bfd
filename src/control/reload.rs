//! Changing the destination table of a running instance: a reload from the config file (and
//! the list file it names), and the in-memory `add`/`remove` of the management API. The new
//! table is built aside from the current one — destinations that still exist (same set, URI and
//! duid) keep their id and runtime state: call load, latency, rotation, and, with
//! `inherit_state`, their health flags — then swapped in whole. A table that cannot be built
//! leaves the running one untouched.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use super::Control;
use crate::config::Config;
use crate::dispatch::destination::normalise_uri;
use crate::dispatch::{Attrs, DestSpec, Table};
use crate::runtime::{build_table, resolve_names};

/// Why a table change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Config(String),
    #[error("route `{route}` uses set {set}, which the new table does not have")]
    SetGone { route: String, set: u32 },
    #[error("no destination {address} in set {set}")]
    NoSuchDestination { set: u32, address: String },
    #[error("{0}")]
    Bad(String),
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub struct Reloaded {
    pub generation: u64,
    /// Sections the file changes that only a restart applies (`routes`, `listen`, …).
    pub not_applied: Vec<&'static str>,
}

impl Control {
    /// Reloads the destinations from the config file. `inherit` overrides the configured
    /// `inherit_state`.
    pub fn reload(&self, inherit: Option<bool>) -> Result<Reloaded, ChangeError> {
        let result = self.reload_inner(inherit.unwrap_or(self.inherit_state));
        let path = self.config_path.display();
        match &result {
            Ok(r) => {
                self.reloads.fetch_add(1, Relaxed);
                tracing::info!("reloaded {path}: generation {}", r.generation);
                if !r.not_applied.is_empty() {
                    tracing::warn!(
                        "{path}: [{}] changed too; only the destinations were reloaded, a restart applies the rest",
                        r.not_applied.join("], [")
                    );
                }
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Relaxed);
                tracing::warn!("reload refused, the running table stays: {e}");
            }
        }
        result
    }

    fn reload_inner(&self, inherit: bool) -> Result<Reloaded, ChangeError> {
        let cfg =
            Config::load(&self.config_path).map_err(|e| ChangeError::Config(e.to_string()))?;
        let not_applied = self
            .started_with
            .as_ref()
            .map_or_else(Vec::new, |start| start.start_only_changes(&cfg));
        let specs = cfg
            .dest_specs()
            .map_err(|e| ChangeError::Config(e.to_string()))?;
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.shared.table.load_full();
        let table = build_table(&cfg, Some(&current))
            .map_err(|e| ChangeError::Config(format!("{}: {e}", self.config_path.display())))?;
        if !inherit {
            reset_flags(&table, &specs);
        }
        Ok(Reloaded {
            generation: self.swap(table)?,
            not_applied,
        })
    }

    /// Adds a destination to the running table (until the next reload, as Kamailio's
    /// `dispatcher.add`).
    pub fn add(
        &self,
        set: u32,
        address: &str,
        flags: u8,
        priority: i32,
        attrs: &str,
    ) -> Result<u64, ChangeError> {
        let uri = normalise_uri(address).map_err(ChangeError::Bad)?;
        let attrs = Attrs::parse(attrs).map_err(ChangeError::Bad)?;
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.shared.table.load_full();
        let mut specs = specs_of(&current);
        specs.push(DestSpec {
            set,
            uri,
            flags,
            priority,
            attrs,
            origin: "dispatcher.add".into(),
        });
        self.rebuild(&current, specs)
    }

    /// Removes every record of `address` from `set` in the running table.
    pub fn remove(&self, set: u32, address: &str) -> Result<u64, ChangeError> {
        let uri = normalise_uri(address).map_err(ChangeError::Bad)?;
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.shared.table.load_full();
        let mut specs = specs_of(&current);
        let before = specs.len();
        specs.retain(|s| !(s.set == set && same_uri(&s.uri, &uri)));
        if specs.len() == before {
            return Err(ChangeError::NoSuchDestination {
                set,
                address: address.to_owned(),
            });
        }
        self.rebuild(&current, specs)
    }

    fn rebuild(&self, current: &Table, specs: Vec<DestSpec>) -> Result<u64, ChangeError> {
        let mut table = Table::build(specs, Some(current)).map_err(ChangeError::Bad)?;
        let default = current.default_ping_proxy().map(str::to_owned);
        resolve_names(&mut table, default.as_deref(), self.resolver);
        self.swap(table)
    }

    fn swap(&self, table: Table) -> Result<u64, ChangeError> {
        for r in &self.shared.routes {
            if table.set(r.set).is_none() {
                return Err(ChangeError::SetGone {
                    route: r.name.clone(),
                    set: r.set,
                });
            }
        }
        self.shared.table.store(std::sync::Arc::new(table));
        Ok(self.generation.fetch_add(1, Relaxed) + 1)
    }
}

/// Whether two URIs name the same destination (scheme and host case-insensitive).
pub fn same_uri(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The running table as specs, with each destination's current flags.
fn specs_of(t: &Table) -> Vec<DestSpec> {
    t.destinations()
        .map(|d| DestSpec {
            set: d.set,
            uri: d.uri.clone(),
            flags: d.state.flags(),
            priority: d.priority,
            attrs: d.attrs.clone(),
            origin: d.origin.clone(),
        })
        .collect()
}

/// Without `inherit_state`, destinations take the flags their new spec gives them.
fn reset_flags(t: &Table, specs: &[DestSpec]) {
    let by_key: HashMap<(u32, &str, Option<&str>), u8> = specs
        .iter()
        .map(|s| ((s.set, s.uri.as_str(), s.attrs.duid.as_deref()), s.flags))
        .collect();
    for d in t.destinations() {
        if let Some(&f) = by_key.get(&(d.set, d.uri.as_str(), d.attrs.duid.as_deref())) {
            d.state.flags.store(f, Relaxed);
        }
    }
}
