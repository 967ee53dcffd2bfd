//! `sipdispatch ctl`: the kamcmd of sipdispatch. Sends one JSON-RPC call to a running
//! instance's endpoint over plain HTTP/1.1 and prints the result as a table a person reads,
//! or as JSON for scripts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

/// Calls `method` with `params` (strings; the server reads numbers from them) and returns the
/// JSON-RPC result, or an error message naming what went wrong.
pub fn call(
    endpoint: SocketAddr,
    token: Option<&str>,
    method: &str,
    params: &[String],
) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string();
    let mut s = TcpStream::connect_timeout(&endpoint, Duration::from_secs(3))
        .map_err(|e| format!("cannot reach the management endpoint {endpoint}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("");
    match status {
        "200" => {}
        "401" => {
            return Err(format!(
                "{endpoint}: 401 Unauthorized (give --token or control.token)"
            ));
        }
        other => return Err(format!("{endpoint}: HTTP {other}: {}", body.trim())),
    }
    let v: Value = serde_json::from_str(body).map_err(|e| format!("{endpoint}: bad JSON: {e}"))?;
    if let Some(e) = v.get("error") {
        return Err(format!(
            "{method}: {} (code {})",
            e["message"].as_str().unwrap_or("error"),
            e["code"]
        ));
    }
    Ok(v.get("result").cloned().unwrap_or(Value::Null))
}

/// A result as a person reads it: `dispatcher.list` as a table, lists of objects as tables,
/// anything else as `key: value` lines.
pub fn human(method: &str, v: &Value) -> String {
    if matches!(method, "dispatcher.list" | "ds_list" | "dispatcher:list") {
        return list_table(v);
    }
    match v {
        Value::Array(rows) if rows.iter().all(Value::is_object) && !rows.is_empty() => {
            let keys: Vec<String> = rows[0]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| keys.iter().map(|k| scalar(&r[k])).collect())
                .collect();
            table(&keys, &cells)
        }
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", scalar(v)))
            .collect(),
        other => format!("{}\n", scalar(other)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn list_table(v: &Value) -> String {
    let head: Vec<String> = [
        "SET", "URI", "FLAGS", "PRIO", "LOAD", "EST ms", "AVG ms", "TIMEOUTS", "REQUESTS", "ATTRS",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = Vec::new();
    for r in v["RECORDS"].as_array().into_iter().flatten() {
        let set = &r["SET"];
        for t in set["TARGETS"].as_array().into_iter().flatten() {
            let d = &t["DEST"];
            rows.push(vec![
                scalar(&set["ID"]),
                scalar(&d["URI"]),
                scalar(&d["FLAGS"]),
                scalar(&d["PRIORITY"]),
                scalar(&d["RUNTIME"]["DLGLOAD"]),
                format!("{:.1}", d["LATENCY"]["EST"].as_f64().unwrap_or(0.0)),
                format!("{:.1}", d["LATENCY"]["AVG"].as_f64().unwrap_or(0.0)),
                scalar(&d["LATENCY"]["TIMEOUT"]),
                scalar(&d["COUNTERS"]["REQUESTS"]),
                scalar(&d["ATTRS"]["BODY"]),
            ]);
        }
    }
    table(&head, &rows)
}

fn table(head: &[String], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(String::len).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: &[String]| {
        let mut s = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(head);
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_as_a_table() {
        let v = json!({"NRSETS": 1, "RECORDS": [{"SET": {"ID": 1, "TARGETS": [
            {"DEST": {"URI": "sip:10.0.0.1:5060", "FLAGS": "AP", "PRIORITY": 0,
                      "RUNTIME": {"DLGLOAD": 3}, "LATENCY": {"EST": 1.25, "AVG": 1.0, "TIMEOUT": 0},
                      "COUNTERS": {"REQUESTS": 9}, "ATTRS": {"BODY": "duid=a"}}}]}}]});
        let t = human("dispatcher.list", &v);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("SET  URI"));
        assert!(
            lines[1].contains("sip:10.0.0.1:5060")
                && lines[1].contains("AP")
                && lines[1].ends_with("duid=a")
        );
        assert_eq!(
            human("dispatcher.hash", &json!({"hashid": 5, "slot": 1})),
            "hashid: 5\nslot: 1\n"
        );
    }
}
