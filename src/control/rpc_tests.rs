use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use serde_json::{Value, json};

use super::*;
use crate::config::Config;
use crate::runtime::{build_table, shared};

const CONFIG: &str = r#"
[listen]
udp = ["127.0.0.1:5060"]
[destinations]
list_file = "dispatcher.list"
[[routes]]
set = 1
algorithm = "call-load"
"#;

const LIST: &str = "1 sip:127.0.0.1:7001 0 0 duid=a;maxload=5\n1 sip:127.0.0.1:7002 8 0 duid=b\n2 sip:127.0.0.1:7003\n";

/// A control over a table loaded from a config and list file written to a fresh directory.
fn control(name: &str) -> (Control, PathBuf) {
    control_with(name, CONFIG, LIST)
}

fn control_with(name: &str, config: &str, list: &str) -> (Control, PathBuf) {
    let dir = std::env::temp_dir().join(format!("sipdispatch-rpc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dispatcher.list"), list).unwrap();
    let path = dir.join("sipdispatch.toml");
    std::fs::write(&path, config).unwrap();
    let cfg = Config::load(&path).unwrap();
    let table = build_table(&cfg, None).unwrap();
    let sh = Arc::new(shared(&cfg, table).unwrap());
    let ctl = Control::new(
        path,
        sh,
        Vec::new(),
        Vec::new(),
        Arc::new(AtomicBool::new(true)),
        true,
    );
    (ctl, dir)
}

fn rpc(ctl: &Control, method: &str, params: Value) -> Value {
    let req = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 7});
    handle(ctl, req.to_string().as_bytes()).expect("an answer")
}

fn ok(ctl: &Control, method: &str, params: Value) -> Value {
    let v = rpc(ctl, method, params);
    assert_eq!(v["id"], 7);
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

fn err(ctl: &Control, method: &str, params: Value) -> (i64, String) {
    let v = rpc(ctl, method, params);
    let e = &v["error"];
    (
        e["code"].as_i64().unwrap(),
        e["message"].as_str().unwrap().to_owned(),
    )
}

fn flags_of(ctl: &Control, uri: &str) -> String {
    let list = ok(ctl, "dispatcher.list", json!([]));
    for r in list["RECORDS"].as_array().unwrap() {
        for t in r["SET"]["TARGETS"].as_array().unwrap() {
            if t["DEST"]["URI"] == uri {
                return t["DEST"]["FLAGS"].as_str().unwrap().to_owned();
            }
        }
    }
    panic!("{uri} not listed: {list}")
}

#[test]
fn list_has_kamailios_shape() {
    let (ctl, _) = control("list");
    let v = ok(&ctl, "dispatcher.list", json!([]));
    assert_eq!(v["NRSETS"], 2);
    let set = &v["RECORDS"][0]["SET"];
    assert_eq!(set["ID"], 1);
    let d = &set["TARGETS"][0]["DEST"];
    assert_eq!(
        (d["URI"].as_str(), d["FLAGS"].as_str()),
        (Some("sip:127.0.0.1:7001"), Some("AX"))
    );
    assert_eq!(d["ATTRS"]["DUID"], "a");
    assert_eq!(d["ATTRS"]["MAXLOAD"], 5);
    assert_eq!(d["RUNTIME"]["DLGLOAD"], 0);
    assert!(d["LATENCY"]["EST"].is_number());
    assert!(
        ok(&ctl, "dispatcher.list", json!(["short"]))["RECORDS"][0]["SET"]["TARGETS"][0]["DEST"]
            .get("ATTRS")
            .is_none()
    );
    assert_eq!(
        ok(&ctl, "dispatcher.list", json!(["full"]))["RECORDS"][0]["SET"]["TARGETS"][0]["DEST"]["PORT"],
        7001
    );
    // OpenSIPS's names, and named parameters.
    assert_eq!(ok(&ctl, "ds_list", json!([]))["NRSETS"], 2);
    assert_eq!(
        ok(&ctl, "dispatcher:list", json!({"mode": "short"}))["NRSETS"],
        2
    );
}

#[test]
fn set_state_by_address_duid_and_all() {
    let (ctl, _) = control("state");
    ok(
        &ctl,
        "dispatcher.set_state",
        json!(["ip", 1, "sip:127.0.0.1:7001"]),
    );
    assert_eq!(flags_of(&ctl, "sip:127.0.0.1:7001"), "IP");
    // Without a scheme, as kamcmd users often write it.
    ok(
        &ctl,
        "dispatcher.set_state",
        json!(["a", "1", "127.0.0.1:7001"]),
    );
    assert_eq!(flags_of(&ctl, "sip:127.0.0.1:7001"), "AX");
    ok(&ctl, "dispatcher.set_duid_state", json!(["d", 1, "b"]));
    assert_eq!(flags_of(&ctl, "sip:127.0.0.1:7002"), "DX");
    ok(&ctl, "ds_set_state", json!(["i", 1, "all"]));
    assert_eq!(flags_of(&ctl, "sip:127.0.0.1:7001"), "IX");
    assert_eq!(flags_of(&ctl, "sip:127.0.0.1:7002"), "IX");
    let (code, msg) = err(&ctl, "dispatcher.set_state", json!(["x", 1, "all"]));
    assert_eq!(code, -32602);
    assert!(msg.contains("expected a, i, d or t"), "{msg}");
    let (_, msg) = err(
        &ctl,
        "dispatcher.set_state",
        json!(["a", 1, "sip:10.9.9.9"]),
    );
    assert!(
        msg.contains("no destination sip:10.9.9.9 in set 1"),
        "{msg}"
    );
    let (_, msg) = err(&ctl, "dispatcher.set_state", json!(["a", 9, "all"]));
    assert!(msg.contains("no set 9"), "{msg}");
    // Found by the fuzzer: a state that starts with a multi-byte character.
    assert_eq!(
        err(&ctl, "dispatcher.set_state", json!(["ɦ", 1, "all"])).0,
        -32602
    );
    let (_, msg) = err(&ctl, "dispatcher.set_state", json!(["a"]));
    assert!(msg.contains("missing argument 2 (group)"), "{msg}");
}

#[test]
fn ping_active_hash_and_overload_control() {
    let (ctl, _) = control("misc");
    assert_eq!(
        ok(&ctl, "dispatcher.ping_active", json!([0])),
        json!({"OldPingState": 1, "NewPingState": 0})
    );
    assert!(!ctl.ping_active.load(Relaxed));
    assert_eq!(
        ok(&ctl, "dispatcher.ping_active", json!([])),
        json!({"OldPingState": 0, "NewPingState": 0})
    );
    let v = ok(
        &ctl,
        "dispatcher.oc_set",
        json!([1, "sip:127.0.0.1:7001", 30, 10]),
    );
    assert_eq!(v["ocrate"], 30);
    let rows = ok(&ctl, "dispatcher.oclist", json!([1]));
    assert_eq!(rows[0]["ocrate"], 30);
    assert!(rows[0]["octime_sec"].as_u64().unwrap() >= 9);
    assert!(
        err(
            &ctl,
            "dispatcher.oc_set",
            json!([1, "sip:127.0.0.1:7001", 30, 10, 1])
        )
        .1
        .contains("not newer")
    );
}

/// `dispatcher.hash` answers what Kamailio 5.6's RPC answered, line by line of the vectors.
#[test]
fn hash_matches_kamailios_rpc() {
    let (ctl, _) = control("hash");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/reference/kamailio-hash-vectors.tsv"
    );
    let text = std::fs::read_to_string(path).expect("hash vectors");
    let unhex = |h: &str| -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    };
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        // JSON carries text; a vector whose bytes are not UTF-8 cannot be sent as a string.
        let Ok(v1) = String::from_utf8(unhex(f[1])) else {
            continue;
        };
        let mut params = vec![json!(f[0]), json!(v1)];
        if f[2] != "-" {
            let Ok(v2) = String::from_utf8(unhex(f[2])) else {
                continue;
            };
            params.push(json!(v2));
        }
        let r = ok(&ctl, "dispatcher.hash", Value::Array(params));
        assert_eq!(r["hashid"].as_u64().unwrap().to_string(), f[3], "{line}");
        assert_eq!(r["slot"].as_u64().unwrap().to_string(), f[4], "{line}");
        n += 1;
    }
    assert!(n >= 15, "only {n} vectors");
}

#[test]
fn keepalive_proxies_hold_through_add_and_reload() {
    let config = format!("{CONFIG}[health]\noutbound_proxy = \"127.0.0.8:5070\"\n");
    let list = "1 sip:127.0.0.1:7001 0 0 obproxy=sip:127.0.0.9:5071\n1 sip:127.0.0.1:7002\n";
    let (ctl, _dir) = control_with("obproxy", &config, list);
    let to = |uri: &str| {
        let t = ctl.shared.table.load_full();
        let d = t.destinations().find(|d| d.uri == uri).unwrap();
        d.keepalive_to().map(|a| a.to_string())
    };
    let check = |ctl: &Control| {
        assert!(
            ctl.shared
                .table
                .load()
                .is_ping_proxy("127.0.0.8:5070".parse().unwrap(), true)
        );
    };
    assert_eq!(to("sip:127.0.0.1:7001").as_deref(), Some("127.0.0.9:5071"));
    assert_eq!(to("sip:127.0.0.1:7002").as_deref(), Some("127.0.0.8:5070"));
    ok(
        &ctl,
        "dispatcher.add",
        json!([1, "sip:127.0.0.1:7009", 0, 0, ""]),
    );
    ok(
        &ctl,
        "dispatcher.add",
        json!([1, "sip:127.0.0.1:7010", 0, 0, "obproxy=127.0.0.7"]),
    );
    assert_eq!(to("sip:127.0.0.1:7009").as_deref(), Some("127.0.0.8:5070"));
    assert_eq!(to("sip:127.0.0.1:7010").as_deref(), Some("127.0.0.7:5060"));
    assert_eq!(to("sip:127.0.0.1:7001").as_deref(), Some("127.0.0.9:5071"));
    check(&ctl);
    ok(&ctl, "dispatcher.reload", json!([]));
    assert_eq!(to("sip:127.0.0.1:7002").as_deref(), Some("127.0.0.8:5070"));
    check(&ctl);
    assert!(
        err(
            &ctl,
            "dispatcher.add",
            json!([1, "sip:127.0.0.1:7011", 0, 0, "obproxy=sip:"])
        )
        .1
        .contains("obproxy"),
        "a proxy that is not a SIP URI is refused"
    );
}

#[test]
fn add_remove_and_reload() {
    let (ctl, dir) = control("reload");
    let g = ok(
        &ctl,
        "dispatcher.add",
        json!([1, "sip:127.0.0.1:7009", 0, 5, "duid=z"]),
    )["generation"]
        .as_u64()
        .unwrap();
    assert_eq!(g, 2);
    assert_eq!(flags_of(&ctl, "sip:127.0.0.1:7009"), "AX");
    // Load on a surviving destination is carried through every change.
    let t = ctl.shared.table.load_full();
    t.set(1)
        .unwrap()
        .dests
        .iter()
        .find(|d| d.uri.ends_with("7001"))
        .unwrap()
        .state
        .inc_load();
    ok(&ctl, "dispatcher.remove", json!([1, "sip:127.0.0.1:7009"]));
    assert!(
        err(&ctl, "dispatcher.remove", json!([1, "sip:127.0.0.1:7009"]))
            .1
            .contains("no destination")
    );
    ok(
        &ctl,
        "dispatcher.set_state",
        json!(["ip", 1, "sip:127.0.0.1:7001"]),
    );
    // A new list file: 7002 goes, 7004 comes; 7001 keeps its load and (inherit_state) its flags.
    std::fs::write(
        dir.join("dispatcher.list"),
        "1 sip:127.0.0.1:7001 0 0 duid=a;maxload=5\n1 sip:127.0.0.1:7004\n2 sip:127.0.0.1:7003\n",
    )
    .unwrap();
    ok(&ctl, "dispatcher.reload", json!([]));
    assert_eq!(flags_of(&ctl, "sip:127.0.0.1:7001"), "IP");
    assert_eq!(flags_of(&ctl, "sip:127.0.0.1:7004"), "AX");
    let t = ctl.shared.table.load_full();
    let d1 = t
        .set(1)
        .unwrap()
        .dests
        .iter()
        .find(|d| d.uri.ends_with("7001"))
        .unwrap();
    assert_eq!(d1.state.load(), 1);
    assert_eq!(t.set(1).unwrap().dests.len(), 2);
    // Without inheriting state, flags come from the file again; the load stays.
    ok(&ctl, "dispatcher:reload", json!({"inherit_state": "n"}));
    assert_eq!(flags_of(&ctl, "sip:127.0.0.1:7001"), "AX");
    assert_eq!(d1.state.load(), 1);
    // A bad file is refused with its line, and the running table stays.
    std::fs::write(
        dir.join("dispatcher.list"),
        "1 sip:127.0.0.1:7001\nx sip:bad\n",
    )
    .unwrap();
    let (code, msg) = err(&ctl, "dispatcher.reload", json!([]));
    assert_eq!(code, -32000);
    assert!(msg.contains("dispatcher.list:2"), "{msg}");
    assert_eq!(flags_of(&ctl, "sip:127.0.0.1:7004"), "AX");
    // A table without the set a route uses is refused too.
    std::fs::write(dir.join("dispatcher.list"), "2 sip:127.0.0.1:7003\n").unwrap();
    assert!(
        err(&ctl, "dispatcher.reload", json!([]))
            .1
            .contains("set 1")
    );
    assert_eq!(ctl.reloads.load(Relaxed), 2);
    assert_eq!(ctl.reload_failures.load(Relaxed), 2);
}

#[test]
fn protocol_errors() {
    let (ctl, _) = control("proto");
    let parse = handle(&ctl, b"{not json").unwrap();
    assert_eq!(parse["error"]["code"], -32700);
    assert_eq!(err(&ctl, "dispatcher.nope", json!([])).0, -32601);
    assert!(
        err(&ctl, "dispatcher.nope", json!([]))
            .1
            .contains("dispatcher.list")
    );
    // A notification is carried out and not answered.
    let note = json!({"jsonrpc": "2.0", "method": "dispatcher.ping_active", "params": [0]});
    assert!(handle(&ctl, note.to_string().as_bytes()).is_none());
    assert!(!ctl.ping_active.load(Relaxed));
    let batch = json!([
        {"jsonrpc": "2.0", "method": "dispatcher.hash", "params": [4, "a"], "id": 1},
        {"jsonrpc": "2.0", "method": "dispatcher.hash", "params": [0, "a"], "id": 2}
    ]);
    let out = handle(&ctl, batch.to_string().as_bytes()).unwrap();
    assert_eq!(out[0]["result"]["hashid"], 109);
    assert_eq!(out[1]["error"]["code"], -32602);
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let (ctl, _) = control("metrics");
    let text = crate::control::metrics::render(&ctl);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let names: std::collections::HashSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for want in [
        "sipdispatch_received_datagrams_total",
        "sipdispatch_destination_up",
        "sipdispatch_destination_keepalive_latency_seconds",
        "sipdispatch_config_generation",
    ] {
        assert!(names.contains(want), "{want} missing:\n{text}");
    }
    let up = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "sipdispatch_destination_up")
        .count();
    assert_eq!(up, 3);
}

#[test]
fn reload_names_the_sections_only_a_restart_applies() {
    let (mut ctl, dir) = control("start-only");
    ctl.started_with = Some(Config::load(&ctl.config_path).unwrap());
    // The list file changes: that is what a reload is for.
    std::fs::write(dir.join("dispatcher.list"), "1 sip:127.0.0.1:7001\n").unwrap();
    let r = ok(&ctl, "dispatcher.reload", json!([]));
    assert_eq!(
        (r["generation"].clone(), r["not_applied"].clone()),
        (json!(2), json!([]))
    );
    // A route and the listen address change, and the keepalives' proxy (which a reload takes).
    let edited = CONFIG
        .replace("call-load", "round-robin")
        .replace("127.0.0.1:5060", "127.0.0.1:5099")
        + "[health]\noutbound_proxy = \"sip:127.0.0.1:5999\"\n";
    std::fs::write(&ctl.config_path, edited).unwrap();
    let r = ok(&ctl, "dispatcher.reload", json!([]));
    assert_eq!(r["generation"], 3, "the destinations are still reloaded");
    assert_eq!(r["not_applied"], json!(["listen", "routes"]));
    assert_eq!(ctl.shared.table.load().set(1).unwrap().dests.len(), 1);
}
