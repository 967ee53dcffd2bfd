//! The attributes every scenario command takes (`rtd`, `start_rtd`, `repeat_rtd`, `counter`,
//! `next`, `test`, `chance`, `condexec`, `lost`), compiled into a [`Step`].

use super::action_xml::Names;
use super::scenario::{Kind, Scenario, Step};

type Attr = (String, String);

pub(super) fn step(
    sc: &mut Scenario,
    kind: Kind,
    line: usize,
    attrs: &[Attr],
    pending_next: &mut Vec<(usize, String, usize, bool)>,
    names: &mut Names,
) -> Result<Step, String> {
    let get = |k: &str| attrs.iter().find(|a| a.0 == k).map(|a| a.1.clone());
    let intern = |list: &mut Vec<String>, v: String| -> usize {
        let v = if v == "true" { "1".to_owned() } else { v };
        list.iter().position(|x| *x == v).unwrap_or_else(|| {
            list.push(v);
            list.len() - 1
        })
    };
    let rtd = get("rtd").map(|v| intern(&mut sc.rtds, v));
    let start_rtd = get("start_rtd").map(|v| intern(&mut sc.rtds, v));
    let counter = get("counter").map(|v| intern(&mut sc.counters, v));
    if let Some(l) = get("next") {
        pending_next.push((sc.steps.len(), l, line, false));
    }
    let chance = match get("chance") {
        Some(c) => match c.trim().parse::<f64>() {
            Ok(p) if (0.0..=1.0).contains(&p) => p,
            _ => {
                return Err(format!("chance=\"{c}\" is not a probability in 0..1"));
            }
        },
        None => 1.0,
    };
    let condexec = get("condexec").map(|v| {
        (
            names.var(&v, line),
            get("condexec_inverse").as_deref() == Some("true"),
        )
    });
    Ok(Step {
        kind,
        line,
        next: None,
        rtd,
        start_rtd,
        repeat_rtd: get("repeat_rtd").as_deref() == Some("true"),
        counter,
        test: get("test").map(|v| names.var(&v, line)),
        lost: match get("lost") {
            Some(v) => Some(
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| format!("lost=\"{v}\" is not a percentage"))?,
            ),
            None => None,
        },
        chance,
        condexec,
        actions: Vec::new(),
        hide: get("hide").as_deref() == Some("true"),
        crlf: get("crlf").as_deref() == Some("true"),
        display: get("display"),
    })
}
