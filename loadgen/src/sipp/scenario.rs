//! SIPp scenario XML compiled into steps: labels resolved to indexes, messages compiled to
//! templates, `<action>`s compiled (see [`super::action_xml`]), variables numbered, response
//! matching prepared (the methods sent before each `recv`). Anything sipload does not
//! implement is refused with its name and line, never ignored.

use std::collections::HashMap;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::action_xml::{self, Names};
use super::actions::{Action, Dist};
use super::step_attrs::step;
use super::template::{Template, TemplateError, compile};

/// How long a `<pause>` lasts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pause {
    /// The `-d` value.
    Default,
    Ms(u64),
    /// `variable=`: the value of a variable, in ms.
    Var(usize),
    Dist(Dist),
}

#[derive(Clone, Debug)]
pub enum Kind {
    Send {
        msg: Template,
        /// Retransmission T1 in ms (UDP).
        retrans: Option<u64>,
        /// `start_txn`: this request's branch is remembered as this transaction's.
        start_txn: Option<usize>,
    },
    Recv {
        response: Option<u16>,
        request: Option<String>,
        optional: bool,
        /// `optional="global"`: also matched when the call is past it.
        global: bool,
        rrs: bool,
        timeout: Option<u64>,
        ontimeout: Option<usize>,
        /// Request methods sent by earlier `send`s: a response matches only if its CSeq method
        /// is one of them ...
        sent_methods: Vec<String>,
        /// ... or, with `response_txn`, only if its top Via branch is the transaction's.
        txn: Option<usize>,
        /// `regexp_match="true"`: `request` is a regular expression over the method.
        request_re: Option<regex::Regex>,
    },
    Pause(Pause),
    Nop,
    Timewait(u64),
}

#[derive(Clone, Debug)]
pub struct Step {
    pub kind: Kind,
    pub line: usize,
    pub next: Option<usize>,
    /// Response-time timer stopped here / started here (indexes into `Scenario::rtds`).
    pub rtd: Option<usize>,
    pub start_rtd: Option<usize>,
    pub repeat_rtd: bool,
    pub counter: Option<usize>,
    /// `lost=`: percent of this step's messages dropped on purpose.
    pub lost: Option<f64>,
    /// `next` is taken only if this variable is set (`test=`) ...
    pub test: Option<usize>,
    /// ... and then with this probability (`chance=`; 1 when absent).
    pub chance: f64,
    /// `condexec=` / `condexec_inverse`: the step runs only if the variable is (not) set.
    pub condexec: Option<(usize, bool)>,
    pub actions: Vec<Action>,
    /// Display only (the `-trace_screen` scenario screen): `hide`, `crlf`, `display`.
    pub hide: bool,
    pub crlf: bool,
    pub display: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Scenario {
    pub name: String,
    pub steps: Vec<Step>,
    /// UAC when the first send/recv is a send.
    pub uac: bool,
    pub rtds: Vec<String>,
    pub counters: Vec<String>,
    pub rt_repartition: Vec<u64>,
    pub cl_repartition: Vec<u64>,
    /// Variable names (`[$x]`, `assign_to=`...), and which are run-wide (`<Global>`, `-set`).
    pub vars: Vec<String>,
    pub var_global: Vec<bool>,
    /// `<init>`: nops whose actions run once when the run starts (for global variables).
    pub init: Vec<Step>,
    /// Transactions (`start_txn`), and the index of the ACK marked `ack_txn` for each.
    pub txns: Vec<String>,
    pub txn_ack: Vec<Option<usize>>,
    /// The step of the `_unexp.main` label: where an unexpected message sends the call.
    pub unexp_main: Option<usize>,
    /// `$_unexp.retaddr` and `$_unexp.pausedaddr`, when the scenario uses them.
    pub unexp_retaddr: Option<usize>,
    pub unexp_pausedaddr: Option<usize>,
    /// Which variables are `<User>` ones (kept per `-users` user across its calls).
    pub var_user: Vec<bool>,
}

/// A scenario that cannot be run, with the line it was found on.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

const COMMON: [&str; 13] = [
    "lost",
    "crlf",
    "hide",
    "display",
    "rtd",
    "start_rtd",
    "repeat_rtd",
    "counter",
    "next",
    "test",
    "chance",
    "condexec",
    "condexec_inverse",
];

/// Compiles scenario XML; `file` names it in errors, `generic` holds `-key` keywords and
/// `set` the variables given values with `-set`.
pub fn parse(
    xml: &str,
    file: &str,
    generic: &HashMap<String, String>,
    set: &[String],
) -> Result<Scenario, ScenarioError> {
    let line_of = |pos: u64| xml[..(pos as usize).min(xml.len())].matches('\n').count() + 1;
    let err = |line: usize, reason: String| ScenarioError {
        file: file.to_owned(),
        line,
        reason,
    };
    let mut r = Reader::from_str(xml);
    let mut sc = Scenario::default();
    let mut labels: HashMap<String, usize> = HashMap::new();
    let mut pending_next: Vec<(usize, String, usize, bool)> = Vec::new();
    let mut sent: Vec<String> = Vec::new();
    // The open element a CDATA message belongs to.
    let mut open_send: Option<(usize, Option<u64>, Vec<Attr>)> = None;
    let mut depth_in_scenario = false;
    let mut names = Names::default();
    let mut globals: Vec<String> = set.to_vec();
    let mut users: Vec<String> = Vec::new();
    for g in set {
        names.var(g, 0);
    }
    // Inside a non-empty recv/send/nop: the element, and the actions of its <action>.
    let mut open: Option<(String, Vec<Action>)> = None;
    let mut in_action = false;
    // Inside <init>: the index its steps start at, and its line.
    let mut init_from: Option<(usize, usize)> = None;
    loop {
        let pos = r.buffer_position();
        let ev = r
            .read_event()
            .map_err(|e| err(line_of(r.error_position()), format!("XML: {e}")))?;
        let line = line_of(pos) + leading_newlines(xml, pos);
        let (start, empty) = match &ev {
            Event::Start(s) => (Some(s.clone()), false),
            Event::Empty(s) => (Some(s.clone()), true),
            _ => (None, false),
        };
        if let Some(s) = start {
            let name = String::from_utf8_lossy(s.name().as_ref()).into_owned();
            let attrs = attrs(&s).map_err(|e| err(line, e))?;
            let get = |k: &str| attrs.iter().find(|a| a.0 == k).map(|a| a.1.clone());
            let allow = |extra: &[&str]| -> Result<(), ScenarioError> {
                for (k, _) in &attrs {
                    if !COMMON.contains(&k.as_str()) && !extra.contains(&k.as_str()) {
                        return Err(err(
                            line,
                            format!("attribute `{k}` of <{name}> is not supported by sipload"),
                        ));
                    }
                }
                Ok(())
            };
            let ms = |k: &str| -> Result<Option<u64>, ScenarioError> {
                get(k)
                    .map(|v| {
                        v.trim()
                            .parse()
                            .map_err(|_| err(line, format!("{k}=\"{v}\" is not a number of ms")))
                    })
                    .transpose()
            };
            let index = sc.steps.len();
            if in_action {
                let act = action_xml::action(&name, &attrs, line, generic, &mut names)
                    .map_err(|e| err(line, e))?;
                if matches!(act, Action::Jump(_))
                    && open.as_ref().is_some_and(|(el, _)| el == "recv")
                {
                    return Err(err(
                        line,
                        "action <jump> in a <recv> is not supported by sipload (use it in a <nop>)"
                            .into(),
                    ));
                }
                if let Some((_, acts)) = open.as_mut() {
                    acts.push(act);
                }
                continue;
            }
            if !empty && matches!(name.as_str(), "recv" | "send" | "nop") {
                open = Some((name.clone(), Vec::new()));
            }
            let kind = match name.as_str() {
                "scenario" => {
                    sc.name = get("name").unwrap_or_default();
                    depth_in_scenario = true;
                    continue;
                }
                "send" => {
                    allow(&["retrans", "start_txn", "ack_txn"])?;
                    open_send = Some((line, ms("retrans")?, attrs.clone()));
                    if empty {
                        return Err(err(line, "<send> without a message".into()));
                    }
                    continue;
                }
                "recv" => {
                    allow(&[
                        "response",
                        "request",
                        "optional",
                        "rrs",
                        "timeout",
                        "ontimeout",
                        "response_txn",
                        "regexp_match",
                    ])?;
                    let response = get("response")
                        .map(|v| {
                            v.parse::<u16>().map_err(|_| {
                                err(line, format!("response=\"{v}\" is not a status code"))
                            })
                        })
                        .transpose()?;
                    let request = get("request");
                    if response.is_some() == request.is_some() {
                        return Err(err(
                            line,
                            "<recv> needs exactly one of response= or request=".into(),
                        ));
                    }
                    let (optional, global) = match get("optional").as_deref() {
                        None | Some("false") => (false, false),
                        Some("true") => (true, false),
                        Some("global") => (true, true),
                        Some(o) => {
                            return Err(err(
                                line,
                                format!("optional=\"{o}\" is not supported by sipload"),
                            ));
                        }
                    };
                    if let Some(l) = get("ontimeout") {
                        pending_next.push((index, l, line, true));
                    }
                    Kind::Recv {
                        response,
                        request: request.clone(),
                        optional,
                        global,
                        rrs: get("rrs").as_deref() == Some("true"),
                        timeout: ms("timeout")?,
                        ontimeout: None,
                        sent_methods: sent.clone(),
                        request_re: match (&request, get("regexp_match").as_deref()) {
                            (Some(r), Some("true")) => Some(
                                regex::Regex::new(r)
                                    .map_err(|e| err(line, format!("request=\"{r}\": {e}")))?,
                            ),
                            _ => None,
                        },
                        txn: match get("response_txn") {
                            Some(t) => Some(txn_use(&sc.txns, &t).map_err(|e| err(line, e))?),
                            None => None,
                        },
                    }
                }
                "pause" => {
                    allow(&[
                        "milliseconds",
                        "variable",
                        "distribution",
                        "value",
                        "min",
                        "max",
                    ])?;
                    let p = if let Some(v) = ms("milliseconds")? {
                        Pause::Ms(v)
                    } else if let Some(v) = get("variable") {
                        Pause::Var(names.var(&v, line))
                    } else if get("distribution").is_some() {
                        Pause::Dist(action_xml::distribution(&get).map_err(|e| err(line, e))?)
                    } else {
                        Pause::Default
                    };
                    Kind::Pause(p)
                }
                "nop" => {
                    allow(&[])?;
                    Kind::Nop
                }
                "timewait" => {
                    allow(&["milliseconds"])?;
                    Kind::Timewait(ms("milliseconds")?.unwrap_or(0))
                }
                "label" => {
                    if init_from.is_some() {
                        return Err(err(
                            line,
                            "<label> inside <init> is not supported by sipload".into(),
                        ));
                    }
                    let id = get("id").ok_or_else(|| err(line, "<label> without id".into()))?;
                    if id == "_unexp.main" {
                        sc.unexp_main = Some(index);
                    }
                    if labels.insert(id.clone(), index).is_some() {
                        return Err(err(line, format!("label `{id}` defined twice")));
                    }
                    continue;
                }
                "ResponseTimeRepartition" | "CallLengthRepartition" => {
                    let v = get("value").unwrap_or_default();
                    let borders = v
                        .split(',')
                        .map(|b| b.trim().parse::<u64>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| {
                            err(line, format!("{name} value=\"{v}\" is not a list of ms"))
                        })?;
                    if name == "ResponseTimeRepartition" {
                        sc.rt_repartition = borders;
                    } else {
                        sc.cl_repartition = borders;
                    }
                    continue;
                }
                "init" if !empty => {
                    if init_from.is_some() {
                        return Err(err(line, "<init> inside <init>".into()));
                    }
                    init_from = Some((sc.steps.len(), line));
                    continue;
                }
                "init" => continue,
                "Reference" | "Global" | "User" => {
                    for v in get("variables").unwrap_or_default().split(',') {
                        if !v.trim().is_empty() {
                            names.var(v, line);
                            if name == "Global" {
                                globals.push(v.trim().to_owned());
                            } else if name == "User" {
                                users.push(v.trim().to_owned());
                            }
                        }
                    }
                    continue;
                }
                "action" => {
                    match open.as_ref().map(|(el, _)| el.as_str()) {
                        Some(_) if !empty => in_action = true,
                        Some(_) => {}
                        None => {
                            return Err(err(
                                line,
                                "<action> must be inside a <recv>, <send> or <nop>".into(),
                            ));
                        }
                    }
                    continue;
                }
                other => {
                    let what = match other {
                        "sendCmd" | "recvCmd" => " (3PCC)",
                        _ => "",
                    };
                    return Err(err(
                        line,
                        format!("element <{other}>{what} is not supported by sipload"),
                    ));
                }
            };
            let s = step(&mut sc, kind, line, &attrs, &mut pending_next, &mut names)
                .map_err(|e| err(line, e))?;
            sc.steps.push(s);
            continue;
        }
        match ev {
            Event::CData(c) => {
                let Some((line, retrans, attrs)) = open_send.take() else {
                    continue;
                };
                let text = String::from_utf8_lossy(&c.into_inner()).into_owned();
                let msg = compile(&text, generic, &mut |v| names.var(v, line))
                    .map_err(|e: TemplateError| err(line, e.to_string()))?;
                let get = |k: &str| attrs.iter().find(|a| a.0 == k).map(|a| a.1.clone());
                // As in SIPp, responses to a transaction's request match by `response_txn`
                // only, not by CSeq method.
                if let Some(m) = &msg.method
                    && get("start_txn").is_none()
                {
                    sent.push(m.clone());
                }
                let start_txn = get("start_txn").map(|t| {
                    sc.txns.iter().position(|x| *x == t).unwrap_or_else(|| {
                        sc.txns.push(t);
                        sc.txn_ack.push(None);
                        sc.txns.len() - 1
                    })
                });
                if let Some(t) = get("ack_txn") {
                    if msg.method.as_deref() != Some("ACK") {
                        return Err(err(line, "ack_txn is allowed only on an ACK".into()));
                    }
                    let i = txn_use(&sc.txns, &t).map_err(|e| err(line, e))?;
                    sc.txn_ack[i] = Some(sc.steps.len());
                }
                let kind = Kind::Send {
                    msg,
                    retrans,
                    start_txn,
                };
                let s = step(&mut sc, kind, line, &attrs, &mut pending_next, &mut names)
                    .map_err(|e| err(line, e))?;
                sc.steps.push(s);
            }
            Event::End(e) if e.name().as_ref() == b"action" => in_action = false,
            Event::End(e) if e.name().as_ref() == b"init" => {
                let Some((from, line)) = init_from.take() else {
                    continue;
                };
                if pending_next.iter().any(|p| p.0 >= from) {
                    return Err(err(
                        line,
                        "next= inside <init> is not supported by sipload".into(),
                    ));
                }
                let init: Vec<Step> = sc.steps.drain(from..).collect();
                if let Some(s) = init.iter().find(|s| !matches!(s.kind, Kind::Nop)) {
                    return Err(err(s.line, "only <nop> is allowed inside <init>".into()));
                }
                sc.init.extend(init);
            }
            Event::End(e) if matches!(e.name().as_ref(), b"send" | b"recv" | b"nop") => {
                if let Some((line, ..)) = open_send.take() {
                    return Err(err(line, "<send> without a CDATA message".into()));
                }
                if let (Some((_, acts)), Some(last)) = (open.take(), sc.steps.last_mut()) {
                    last.actions = acts;
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !depth_in_scenario {
        return Err(err(1, "no <scenario> element".into()));
    }
    for (i, n) in names.names.iter().enumerate() {
        let (refs, line) = names.refs[i];
        // SIPp sets the `_unexp.*` ones itself.
        if refs < 2 && n != "_" && !n.starts_with("_unexp.") {
            return Err(err(
                line,
                format!(
                    "variable ${n} is referenced only once (SIPp refuses this too; list it in <Reference variables=\"{n}\"/> if intended)"
                ),
            ));
        }
    }
    sc.var_global = names.names.iter().map(|n| globals.contains(n)).collect();
    sc.var_user = names.names.iter().map(|n| users.contains(n)).collect();
    sc.unexp_retaddr = names.names.iter().position(|n| n == "_unexp.retaddr");
    sc.unexp_pausedaddr = names.names.iter().position(|n| n == "_unexp.pausedaddr");
    sc.vars = names.names;
    for (at, label, line, timeout) in pending_next {
        let target = *labels
            .get(&label)
            .ok_or_else(|| err(line, format!("unknown label `{label}`")))?;
        if timeout {
            if let Kind::Recv { ontimeout, .. } = &mut sc.steps[at].kind {
                *ontimeout = Some(target);
            }
        } else {
            sc.steps[at].next = Some(target);
        }
    }
    if let Some(p) = sc
        .steps
        .iter()
        .position(|s| matches!(s.kind, Kind::Timewait(_)))
        && p + 1 != sc.steps.len()
    {
        return Err(err(
            sc.steps[p].line,
            "<timewait> must be the last command".into(),
        ));
    }
    sc.uac = match sc
        .steps
        .iter()
        .find(|s| matches!(s.kind, Kind::Send { .. } | Kind::Recv { .. }))
    {
        Some(s) => matches!(s.kind, Kind::Send { .. }),
        None => return Err(err(1, "the scenario has no <send> or <recv>".into())),
    };
    Ok(sc)
}

type Attr = (String, String);

/// A transaction named by `response_txn`/`ack_txn`: one a `start_txn` opened earlier.
fn txn_use(txns: &[String], name: &str) -> Result<usize, String> {
    txns.iter()
        .position(|t| t == name)
        .ok_or_else(|| format!("transaction `{name}` has no earlier <send start_txn=\"{name}\">"))
}

fn attrs(s: &BytesStart<'_>) -> Result<Vec<Attr>, String> {
    s.attributes()
        .map(|a| {
            let a = a.map_err(|e| format!("XML attribute: {e}"))?;
            let v = a
                .unescape_value()
                .map_err(|e| format!("XML attribute: {e}"))?;
            Ok((
                String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                v.into_owned(),
            ))
        })
        .collect()
}

/// quick-xml reports the position before the whitespace that precedes an element.
fn leading_newlines(xml: &str, pos: u64) -> usize {
    let rest = &xml[(pos as usize).min(xml.len())..];
    let ws = rest.len() - rest.trim_start().len();
    rest[..ws].matches('\n').count()
}
