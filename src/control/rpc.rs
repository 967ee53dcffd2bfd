//! JSON-RPC 2.0 over the management endpoint, with Kamailio's `dispatcher.*` method names and
//! argument order, OpenSIPS's names as aliases, and positional or named parameters. Parsing and
//! answering are plain functions over bytes and a [`Control`]; the HTTP layer only carries them.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{Value, json};

use super::Control;
use super::reload::same_uri;
use crate::dispatch::destination::{DestState, normalise_uri};
use crate::dispatch::hash::kamailio_hash;
use crate::dispatch::{Destination, flags};

/// A JSON-RPC error: code and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    fn params(message: impl Into<String>) -> Self {
        Self {
            code: -32602,
            message: message.into(),
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        Self {
            code: -32000,
            message: message.into(),
        }
    }
}

/// Every method, with its parameter names in Kamailio's order (for named parameters).
const METHODS: &[(&str, &[&str])] = &[
    ("dispatcher.list", &["mode"]),
    ("dispatcher.reload", &["inherit_state"]),
    ("dispatcher.set_state", &["state", "group", "address"]),
    ("dispatcher.set_duid_state", &["state", "group", "duid"]),
    ("dispatcher.ping_active", &["state"]),
    (
        "dispatcher.add",
        &["group", "address", "flags", "priority", "attrs"],
    ),
    ("dispatcher.remove", &["group", "address"]),
    ("dispatcher.hash", &["nslots", "val1", "val2"]),
    ("dispatcher.oclist", &["group"]),
    (
        "dispatcher.oc_set",
        &["group", "address", "rate", "validity", "seq"],
    ),
];

/// OpenSIPS's names for the same methods.
const ALIASES: &[(&str, &str)] = &[
    ("ds_list", "dispatcher.list"),
    ("ds_reload", "dispatcher.reload"),
    ("ds_set_state", "dispatcher.set_state"),
    ("dispatcher:list", "dispatcher.list"),
    ("dispatcher:reload", "dispatcher.reload"),
    ("dispatcher:set_state", "dispatcher.set_state"),
];

/// The method names a client may call, canonical first.
pub fn method_names() -> impl Iterator<Item = &'static str> {
    METHODS
        .iter()
        .map(|m| m.0)
        .chain(ALIASES.iter().map(|a| a.0))
}

/// Answers one HTTP request body: a JSON-RPC request, notification or batch. `None` when
/// nothing is to be sent back (only notifications).
pub fn handle(ctl: &Control, body: &[u8]) -> Option<Value> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Some(error(Value::Null, -32700, &format!("parse error: {e}"))),
    };
    match v {
        Value::Array(batch) if batch.is_empty() => {
            Some(error(Value::Null, -32600, "invalid request: empty batch"))
        }
        Value::Array(batch) => {
            let out: Vec<Value> = batch.into_iter().filter_map(|r| one(ctl, r)).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        v => one(ctl, v),
    }
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id})
}

fn one(ctl: &Control, req: Value) -> Option<Value> {
    let Value::Object(req) = req else {
        return Some(error(Value::Null, -32600, "invalid request: not an object"));
    };
    let id = req.get("id").cloned();
    let reply_id = id.clone().unwrap_or(Value::Null);
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return Some(error(reply_id, -32600, "invalid request: no method"));
    };
    let canonical = ALIASES
        .iter()
        .find(|a| a.0 == method)
        .map_or(method, |a| a.1);
    let Some(&(_, names)) = METHODS.iter().find(|m| m.0 == canonical) else {
        let known: Vec<_> = METHODS.iter().map(|m| m.0).collect();
        let msg = format!("method not found: {method} (known: {})", known.join(", "));
        return Some(error(reply_id, -32601, &msg));
    };
    let params = match req.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(o)) => {
            let n = names
                .iter()
                .rposition(|n| o.contains_key(*n))
                .map_or(0, |i| i + 1);
            names[..n]
                .iter()
                .map(|n| o.get(*n).cloned().unwrap_or(Value::Null))
                .collect()
        }
        Some(_) => {
            return Some(error(
                reply_id,
                -32602,
                "params must be an array or an object",
            ));
        }
    };
    let result = call(ctl, canonical, &Args(&params));
    // A request without an id is a notification: carried out, not answered.
    id.as_ref()?;
    Some(match result {
        Ok(v) => json!({"jsonrpc": "2.0", "result": v, "id": reply_id}),
        Err(e) => error(reply_id, e.code, &e.message),
    })
}

/// Positional arguments, as strings or numbers.
struct Args<'a>(&'a [Value]);

impl Args<'_> {
    fn text(&self, i: usize, name: &str) -> Result<String, RpcError> {
        self.opt_text(i)
            .ok_or_else(|| RpcError::params(format!("missing argument {} ({name})", i + 1)))
    }

    fn opt_text(&self, i: usize) -> Option<String> {
        match self.0.get(i)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(u8::from(*b).to_string()),
            _ => None,
        }
    }

    fn num<T: std::str::FromStr>(&self, i: usize, name: &str) -> Result<T, RpcError> {
        let t = self.text(i, name)?;
        parse_num(&t).ok_or_else(|| RpcError::params(format!("{name}: `{t}` is not a number")))
    }

    fn opt_num<T: std::str::FromStr>(&self, i: usize, name: &str) -> Result<Option<T>, RpcError> {
        match self.opt_text(i) {
            None => Ok(None),
            Some(_) => self.num(i, name).map(Some),
        }
    }
}

fn parse_num<T: std::str::FromStr>(t: &str) -> Option<T> {
    let t = t.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?.to_string().parse().ok(),
        None => t.parse().ok(),
    }
}

fn call(ctl: &Control, method: &str, a: &Args<'_>) -> Result<Value, RpcError> {
    match method {
        "dispatcher.list" => {
            let mode = a.opt_text(0).unwrap_or_default();
            if !matches!(mode.as_str(), "" | "short" | "full") {
                return Err(RpcError::params(format!(
                    "mode: `{mode}`: expected short or full"
                )));
            }
            Ok(list(ctl, &mode))
        }
        "dispatcher.reload" => {
            let inherit = match a.opt_text(0).as_deref() {
                None => None,
                Some("1" | "y" | "yes" | "true") => Some(true),
                Some("0" | "n" | "no" | "false") => Some(false),
                Some(o) => {
                    return Err(RpcError::params(format!(
                        "inherit_state: `{o}`: expected y or n"
                    )));
                }
            };
            let r = ctl
                .reload(inherit)
                .map_err(|e| RpcError::failed(e.to_string()))?;
            Ok(json!({"generation": r.generation, "not_applied": r.not_applied}))
        }
        "dispatcher.set_state" | "dispatcher.set_duid_state" => {
            let state = parse_state(&a.text(0, "state")?)?;
            let group: u32 = a.num(1, "group")?;
            let which = a.text(
                2,
                if method.ends_with("duid_state") {
                    "duid"
                } else {
                    "address"
                },
            )?;
            let by_duid = method.ends_with("duid_state");
            let target = if which == "all" || by_duid {
                which.clone()
            } else {
                normalise_uri(&which).map_err(RpcError::params)?
            };
            let table = ctl.shared.table.load();
            let set = table
                .set(group)
                .ok_or_else(|| RpcError::failed(format!("no set {group}")))?;
            let mut n = 0;
            for d in &set.dests {
                let hit = target == "all"
                    || if by_duid {
                        d.attrs.duid.as_deref() == Some(target.as_str())
                    } else {
                        same_uri(&d.uri, &target)
                    };
                if hit {
                    set_flags(&d.state, state);
                    tracing::info!(
                        "{}: state set to {} by the management API",
                        d.uri,
                        d.state.letters()
                    );
                    n += 1;
                }
            }
            if n == 0 {
                return Err(RpcError::failed(format!(
                    "no destination {which} in set {group}"
                )));
            }
            Ok(json!({"updated": n}))
        }
        "dispatcher.ping_active" => {
            let old = u8::from(ctl.ping_active.load(Relaxed));
            if let Some(v) = a.opt_num::<u8>(0, "state")? {
                ctl.ping_active.store(v != 0, Relaxed);
            }
            let new = u8::from(ctl.ping_active.load(Relaxed));
            Ok(json!({"OldPingState": old, "NewPingState": new}))
        }
        "dispatcher.add" => {
            let group: u32 = a.num(0, "group")?;
            let address = a.text(1, "address")?;
            let flags: u8 = a.opt_num(2, "flags")?.unwrap_or(0);
            let priority: i32 = a.opt_num(3, "priority")?.unwrap_or(0);
            let attrs = a.opt_text(4).unwrap_or_default();
            let g = ctl
                .add(group, &address, flags, priority, &attrs)
                .map_err(|e| RpcError::failed(e.to_string()))?;
            Ok(json!({"generation": g}))
        }
        "dispatcher.remove" => {
            let group: u32 = a.num(0, "group")?;
            let address = a.text(1, "address")?;
            let g = ctl
                .remove(group, &address)
                .map_err(|e| RpcError::failed(e.to_string()))?;
            Ok(json!({"generation": g}))
        }
        "dispatcher.hash" => {
            let nslots: u32 = a.num(0, "nslots")?;
            if nslots == 0 {
                return Err(RpcError::params("nslots: must be at least 1"));
            }
            let v1 = a.text(1, "val1")?;
            let v2 = a.opt_text(2);
            let h = kamailio_hash(v1.as_bytes(), v2.as_deref().map(str::as_bytes));
            Ok(json!({"hashid": h, "slot": h % nslots}))
        }
        "dispatcher.oclist" => {
            let group: u32 = a.num(0, "group")?;
            let table = ctl.shared.table.load();
            let set = table
                .set(group)
                .ok_or_else(|| RpcError::failed(format!("no set {group}")))?;
            let now = ctl.shared.epoch.elapsed().as_millis() as u64;
            let rows: Vec<Value> = set.dests.iter().map(|d| oc_row(d, now)).collect();
            Ok(Value::Array(rows))
        }
        "dispatcher.oc_set" => {
            let group: u32 = a.num(0, "group")?;
            let uri = normalise_uri(&a.text(1, "address")?).map_err(RpcError::params)?;
            let rate: u32 = a.num(2, "rate")?;
            let validity: u64 = a.opt_num(3, "validity")?.unwrap_or(60);
            let table = ctl.shared.table.load();
            let d = table
                .set(group)
                .and_then(|s| s.dests.iter().find(|d| same_uri(&d.uri, &uri)))
                .ok_or_else(|| RpcError::failed(format!("no destination {uri} in set {group}")))?;
            let seq: i64 = a
                .opt_num(4, "seq")?
                .unwrap_or_else(|| d.state.oc_seq.load(Relaxed) + 1);
            let now = ctl.shared.epoch.elapsed().as_millis() as u64;
            if !crate::dispatch::algorithm::oc_set(d, rate, validity * 1000, seq, now) {
                return Err(RpcError::failed(format!(
                    "seq {seq} is not newer than the last update"
                )));
            }
            Ok(oc_row(d, now))
        }
        _ => Err(RpcError::failed(format!("{method} is not implemented"))),
    }
}

/// Kamailio's state argument: `a`/`1`, `i`/`0`, `d`/`2`, `t`/`3`, with `p` for probing.
fn parse_state(s: &str) -> Result<u8, RpcError> {
    let l = s.to_ascii_lowercase();
    let mut chars = l.chars();
    let base = chars.next();
    let rest = chars.as_str();
    let state = match base {
        Some('a' | '1') => 0,
        Some('i' | '0') => flags::INACTIVE,
        Some('d' | '2') => flags::DISABLED,
        Some('t' | '3') => flags::TRYING,
        _ => {
            return Err(RpcError::params(format!(
                "state: `{s}`: expected a, i, d or t, with an optional p"
            )));
        }
    };
    match rest {
        "" => Ok(state),
        "p" if state != flags::DISABLED => Ok(state | flags::PROBING),
        "p" => Ok(state),
        _ => Err(RpcError::params(format!(
            "state: `{s}`: expected a, i, d or t, with an optional p"
        ))),
    }
}

/// Sets a destination's state bits verbatim, as Kamailio's RPC does (no thresholds).
fn set_flags(s: &DestState, state: u8) {
    let mask = flags::INACTIVE | flags::TRYING | flags::DISABLED | flags::PROBING;
    let _ = s
        .flags
        .fetch_update(Relaxed, Relaxed, |f| Some((f & !mask) | state));
}

fn oc_row(d: &Destination, now_ms: u64) -> Value {
    let s = &d.state;
    let until = s.oc_until_ms.load(Relaxed);
    let left = until.saturating_sub(now_ms);
    json!({
        "group": d.set, "uri": d.uri, "flags": s.letters(), "priority": d.priority,
        "ocrate": s.oc_rate.load(Relaxed), "ocidx": s.oc_idx.load(Relaxed),
        "ocseq": s.oc_seq.load(Relaxed), "octime_sec": left / 1000,
        "octime_usec": (left % 1000) * 1000, "ocmin": d.attrs.ocmin, "ocmax": d.attrs.ocmax,
    })
}

/// `dispatcher.list` in Kamailio's shape, with sipdispatch's per-destination counters added.
fn list(ctl: &Control, mode: &str) -> Value {
    let table = ctl.shared.table.load();
    let records: Vec<Value> = table
        .sets
        .iter()
        .map(|set| {
            let targets: Vec<Value> = set
                .dests
                .iter()
                .enumerate()
                .map(|(i, d)| json!({"DEST": dest(d, i, mode)}))
                .collect();
            json!({"SET": {"ID": set.id, "TARGETS": targets}})
        })
        .collect();
    json!({"NRSETS": table.sets.len(), "RECORDS": records})
}

fn dest(d: &Destination, idx: usize, mode: &str) -> Value {
    let s = &d.state;
    let ms = |us: u64| us as f64 / 1000.0;
    let mut v = json!({
        "URI": d.uri,
        "FLAGS": s.letters(),
        "PRIORITY": d.priority,
        "IUID": d.id.0,
        "LATENCY": {
            "AVG": ms(s.latency_avg_us.load(Relaxed)),
            "STD": ms(s.latency.std_us.load(Relaxed)),
            "EST": ms(s.latency_est_us.load(Relaxed)),
            "MAX": ms(s.latency.max_us.load(Relaxed)),
            "TIMEOUT": s.latency.timeouts.load(Relaxed),
        },
        "RUNTIME": {"DLGLOAD": s.load()},
        "COUNTERS": {
            "REQUESTS": s.requests.load(Relaxed),
            "REPLIES": {
                "1xx": s.replies[0].load(Relaxed), "2xx": s.replies[1].load(Relaxed),
                "3xx": s.replies[2].load(Relaxed), "4xx": s.replies[3].load(Relaxed),
                "5xx": s.replies[4].load(Relaxed), "6xx": s.replies[5].load(Relaxed),
            },
        },
    });
    if mode != "short" {
        v["ATTRS"] = json!({
            "BODY": d.attrs.body, "DUID": d.attrs.duid.clone().unwrap_or_default(),
            "MAXLOAD": d.attrs.maxload, "WEIGHT": d.attrs.weight,
            "RWEIGHT": s.rweight.load(Relaxed), "SOCKET": d.attrs.socket.clone().unwrap_or_default(),
            "OBPROXY": d.attrs.obproxy.clone().unwrap_or_default(),
            "OCMIN": d.attrs.ocmin, "OCMAX": d.attrs.ocmax,
        });
    }
    if mode == "full" {
        v["IDX"] = json!(idx);
        v["HOST"] = json!(d.target.host);
        v["PORT"] = json!(d.addr.map(|a| a.port()));
        v["IPADDR"] = json!(d.addr.map(|a| a.ip().to_string()));
        v["OCRATE"] = json!(s.oc_rate.load(Relaxed));
        v["OCSEQ"] = json!(s.oc_seq.load(Relaxed));
    }
    v
}

#[cfg(test)]
#[path = "rpc_tests.rs"]
mod tests;
