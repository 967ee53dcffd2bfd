//! The XML side of `<action>`: each child element checked against the attributes SIPp gives
//! it and compiled to an [`Action`]; variables named in it interned through [`Names`]. An
//! action or attribute sipload does not run is refused by name.

use std::collections::HashMap;

use super::actions::{Action, Arith, Compare, Dist, Look, Operand, regex};
use super::template::compile_text;

/// The scenario's variables by name, with how often each is referenced (SIPp refuses a
/// variable used only once, a likely typo) and the line that first named it.
#[derive(Debug, Default)]
pub struct Names {
    pub names: Vec<String>,
    pub refs: Vec<(u32, usize)>,
}

impl Names {
    pub fn var(&mut self, name: &str, line: usize) -> usize {
        let name = name.trim();
        match self.names.iter().position(|n| n == name) {
            Some(i) => {
                self.refs[i].0 += 1;
                i
            }
            None => {
                self.names.push(name.to_owned());
                self.refs.push((1, line));
                self.names.len() - 1
            }
        }
    }
}

type Attr = (String, String);

fn number(k: &str, v: &str) -> Result<f64, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{k}=\"{v}\" is not a number"))
}

fn flag(v: Option<&str>) -> bool {
    matches!(v, Some("true" | "yes"))
}

/// A `distribution=` with its parameters (`<pause>` and `<sample>`); fixed and uniform only.
pub fn distribution(get: &dyn Fn(&str) -> Option<String>) -> Result<Dist, String> {
    let d = get("distribution").unwrap_or_default();
    let p = |k: &str| -> Result<f64, String> {
        let v = get(k).ok_or_else(|| format!("distribution=\"{d}\" needs {k}="))?;
        number(k, &v)
    };
    match d.as_str() {
        "fixed" => Ok(Dist::Fixed(p("value")?)),
        "uniform" => {
            let (min, max) = (p("min")?, p("max")?);
            if max < min {
                return Err(format!("distribution=\"uniform\": max {max} < min {min}"));
            }
            Ok(Dist::Uniform { min, max })
        }
        other => Err(format!(
            "distribution=\"{other}\" is not supported by sipload (fixed, uniform)"
        )),
    }
}

/// Compiles one child of `<action>`.
pub fn action(
    name: &str,
    attrs: &[Attr],
    line: usize,
    generic: &HashMap<String, String>,
    names: &mut Names,
) -> Result<Action, String> {
    let get = |k: &str| attrs.iter().find(|a| a.0 == k).map(|a| a.1.clone());
    let allow = |ok: &[&str]| -> Result<(), String> {
        match attrs.iter().find(|(k, _)| !ok.contains(&k.as_str())) {
            Some((k, _)) => Err(format!(
                "attribute `{k}` of action <{name}> is not supported by sipload"
            )),
            None => Ok(()),
        }
    };
    let need = |k: &str| get(k).ok_or_else(|| format!("action <{name}> needs {k}="));
    let mut var = |n: &str| names.var(n, line);
    let text = |v: &str, var: &mut dyn FnMut(&str) -> usize| {
        compile_text(v, generic, var).map_err(|e| e.to_string())
    };
    Ok(match name {
        "ereg" => {
            allow(&[
                "regexp",
                "search_in",
                "header",
                "variable",
                "case_indep",
                "occurrence",
                "start_line",
                "check_it",
                "check_it_inverse",
                "assign_to",
            ])?;
            let case_indep = flag(get("case_indep").as_deref());
            let re = regex(&need("regexp")?, case_indep)?;
            let look = match get("search_in").as_deref().unwrap_or("msg") {
                "msg" => Look::Msg,
                "body" => Look::Body,
                "hdr" => Look::Hdr {
                    name: need("header")?,
                    start_line: flag(get("start_line").as_deref()),
                    occurrence: match get("occurrence") {
                        Some(o) => number("occurrence", &o)? as usize,
                        None => 1,
                    },
                },
                "var" => Look::Var(var(&need("variable")?)),
                other => {
                    return Err(format!(
                        "search_in=\"{other}\" is not msg, hdr, body or var"
                    ));
                }
            };
            let assign_to: Vec<usize> = need("assign_to")?.split(',').map(&mut var).collect();
            if assign_to.len() > 10 {
                return Err("ereg: at most nine sub-expressions".into());
            }
            Action::Ereg {
                re,
                look,
                case_indep,
                check_it: flag(get("check_it").as_deref()),
                check_it_inverse: flag(get("check_it_inverse").as_deref()),
                assign_to,
            }
        }
        "assign" | "add" | "subtract" | "multiply" | "divide" => {
            allow(&["assign_to", "value", "variable"])?;
            let op = match name {
                "assign" => Arith::Assign,
                "add" => Arith::Add,
                "subtract" => Arith::Subtract,
                "multiply" => Arith::Multiply,
                _ => Arith::Divide,
            };
            let to = var(&need("assign_to")?);
            let rhs = match (get("value"), get("variable")) {
                (Some(v), None) => Operand::Value(number("value", &v)?),
                (None, Some(v)) => Operand::Var(var(&v)),
                _ => return Err(format!("action <{name}> needs one of value= or variable=")),
            };
            Action::Arith { op, to, rhs }
        }
        "assignstr" => {
            allow(&["assign_to", "value"])?;
            let to = var(&need("assign_to")?);
            let value = text(&need("value")?, &mut var)?;
            Action::AssignStr { to, value }
        }
        "todouble" => {
            allow(&["assign_to", "variable"])?;
            Action::ToDouble {
                to: var(&need("assign_to")?),
                from: var(&need("variable")?),
            }
        }
        "trim" => {
            allow(&["assign_to"])?;
            Action::Trim(var(&need("assign_to")?))
        }
        "index" => {
            allow(&["assign_to"])?;
            Action::Index(var(&need("assign_to")?))
        }
        "gettimeofday" => {
            allow(&["assign_to"])?;
            let v = need("assign_to")?;
            let mut it = v.split(',');
            Action::GetTimeOfDay {
                secs: var(it.next().unwrap_or_default()),
                usecs: it.next().map(&mut var),
            }
        }
        "sample" => {
            allow(&["assign_to", "distribution", "value", "min", "max"])?;
            Action::Sample {
                to: var(&need("assign_to")?),
                dist: distribution(&get)?,
            }
        }
        "test" | "strcmp" => {
            let mut ok = vec![
                "assign_to",
                "variable",
                "value",
                "variable2",
                "check_it",
                "check_it_inverse",
            ];
            if name == "test" {
                ok.push("compare");
            }
            allow(&ok)?;
            let (check_it, check_it_inverse) = (
                flag(get("check_it").as_deref()),
                flag(get("check_it_inverse").as_deref()),
            );
            let to = match get("assign_to") {
                Some(v) => Some(var(&v)),
                None if check_it || check_it_inverse => None,
                None => return Err(format!("action <{name}> needs assign_to=")),
            };
            let lhs = var(&need("variable")?);
            if name == "strcmp" {
                let rhs = match (get("value"), get("variable2")) {
                    (Some(v), None) => Ok(v.into_bytes()),
                    (None, Some(v)) => Err(var(&v)),
                    _ => return Err("strcmp needs one of value= or variable2=".into()),
                };
                return Ok(Action::Strcmp {
                    to,
                    lhs,
                    rhs,
                    check_it,
                    check_it_inverse,
                });
            }
            let rhs = match (get("value"), get("variable2")) {
                (Some(v), None) => Operand::Value(number("value", &v)?),
                (None, Some(v)) => Operand::Var(var(&v)),
                _ => return Err("test needs one of value= or variable2=".into()),
            };
            let cmp = match need("compare")?.as_str() {
                "equal" => Compare::Equal,
                "not_equal" => Compare::NotEqual,
                "greater_than" => Compare::GreaterThan,
                "less_than" => Compare::LessThan,
                "greater_than_equal" => Compare::GreaterThanEqual,
                "less_than_equal" => Compare::LessThanEqual,
                c => return Err(format!("test: compare=\"{c}\" is not a comparison")),
            };
            Action::Test {
                to,
                lhs,
                cmp,
                rhs,
                check_it,
                check_it_inverse,
            }
        }
        "log" | "warning" | "error" => {
            allow(&["message"])?;
            let t = text(&need("message")?, &mut var)?;
            match name {
                "log" => Action::Log(t),
                "warning" => Action::Warning(t),
                _ => Action::Error(t),
            }
        }
        "jump" => {
            allow(&["value", "variable"])?;
            match (get("value"), get("variable")) {
                (Some(v), None) => Action::Jump(Operand::Value(number("value", &v)?)),
                (None, Some(v)) => Action::Jump(Operand::Var(var(&v))),
                _ => return Err("jump needs one of value= or variable=".into()),
            }
        }
        "exec" => {
            if let Some((k, _)) = attrs.iter().find(|(k, _)| k != "int_cmd") {
                let why = if k.starts_with("play_") || k.starts_with("rtp_") {
                    " (media)"
                } else {
                    ""
                };
                return Err(format!(
                    "<exec {k}=…>{why} is not supported by sipload (only int_cmd=)"
                ));
            }
            match need("int_cmd")?.as_str() {
                "stop_call" => Action::StopCall,
                "stop_gracefully" => Action::StopGracefully,
                "stop_now" => Action::StopNow,
                c => return Err(format!("exec int_cmd=\"{c}\" is not an internal command")),
            }
        }
        "rtp_echo" | "rtp_stream" => {
            return Err(format!(
                "action <{name}> (media) is not supported by sipload"
            ));
        }
        other => return Err(format!("action <{other}> is not supported by sipload")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, attrs: &[(&str, &str)]) -> Result<Action, String> {
        let attrs: Vec<Attr> = attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        action(name, &attrs, 3, &HashMap::new(), &mut Names::default())
    }

    #[test]
    fn actions_compile_and_unsupported_ones_are_named() {
        assert!(matches!(
            a("ereg", &[("regexp", "a(b)"), ("search_in", "hdr"), ("header", "To:"), ("assign_to", "x,y")]),
            Ok(Action::Ereg { assign_to, .. }) if assign_to == [0, 1]
        ));
        assert!(matches!(
            a("add", &[("assign_to", "n"), ("value", "2")]),
            Ok(Action::Arith { op: Arith::Add, .. })
        ));
        assert!(matches!(
            a("exec", &[("int_cmd", "stop_now")]),
            Ok(Action::StopNow)
        ));
        let e = a("exec", &[("play_pcap_audio", "x.pcap")]).unwrap_err();
        assert!(e.contains("play_pcap_audio") && e.contains("media"), "{e}");
        assert!(a("verifyauth", &[]).unwrap_err().contains("<verifyauth>"));
        assert!(
            a(
                "ereg",
                &[("regexp", "x"), ("assign_to", "v"), ("bogus", "1")]
            )
            .unwrap_err()
            .contains("`bogus`")
        );
        assert!(a("ereg", &[("regexp", "("), ("assign_to", "v")]).is_err());
        assert!(
            a(
                "test",
                &[
                    ("assign_to", "r"),
                    ("variable", "v"),
                    ("compare", "around"),
                    ("value", "1")
                ]
            )
            .is_err()
        );
    }

    #[test]
    fn variables_are_counted() {
        let mut n = Names::default();
        n.var("a", 2);
        n.var("b", 3);
        n.var("a", 9);
        assert_eq!(n.refs, [(2, 2), (1, 3)]);
    }
}
