//! `<action>` children of `recv`, `send` and `nop`: compiled from their XML attributes (an
//! action or attribute sipload does not run is refused by name) and run against a call's
//! variables with SIPp's semantics: `ereg` captures, the arithmetic family on doubles,
//! `assignstr`, `test`, `strcmp`, `todouble`, `trim`, `gettimeofday`, `index`, `sample`,
//! `log`/`warning`/`error`, `jump`, and `exec int_cmd=…`. A failing check does not stop the
//! call: SIPp remembers the failure, stops running that step's actions, and counts the call
//! as failed when it ends.

use std::time::{SystemTime, UNIX_EPOCH};

use regex::bytes::{Regex, RegexBuilder};

use super::stats;
use super::template::Template;
use super::vars::{Space, Var};

/// Where `ereg` looks.
#[derive(Clone, Debug)]
pub enum Look {
    Msg,
    Body,
    /// The rest of the line after the `occurrence`-th `name` (e.g. `Contact:`), found as SIPp
    /// finds it: anywhere, or only at a line start with `start_line="true"`.
    Hdr {
        name: String,
        start_line: bool,
        occurrence: usize,
    },
    Var(usize),
}

/// A number from `value=` or from `variable=`.
#[derive(Clone, Copy, Debug)]
pub enum Operand {
    Value(f64),
    Var(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Assign,
    Add,
    Subtract,
    Multiply,
    Divide,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    Equal,
    NotEqual,
    GreaterThan,
    LessThan,
    GreaterThanEqual,
    LessThanEqual,
}

/// `sample` / `<pause distribution=…>`: the distributions sipload draws from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dist {
    Fixed(f64),
    Uniform { min: f64, max: f64 },
}

/// One compiled action.
#[derive(Clone, Debug)]
pub enum Action {
    Ereg {
        re: Regex,
        look: Look,
        case_indep: bool,
        check_it: bool,
        check_it_inverse: bool,
        /// The whole match, then the capture groups.
        assign_to: Vec<usize>,
    },
    Arith {
        op: Arith,
        to: usize,
        rhs: Operand,
    },
    AssignStr {
        to: usize,
        value: Template,
    },
    ToDouble {
        to: usize,
        from: usize,
    },
    Trim(usize),
    GetTimeOfDay {
        secs: usize,
        usecs: Option<usize>,
    },
    Index(usize),
    Sample {
        to: usize,
        dist: Dist,
    },
    Test {
        to: Option<usize>,
        lhs: usize,
        cmp: Compare,
        rhs: Operand,
        check_it: bool,
        check_it_inverse: bool,
    },
    Strcmp {
        to: Option<usize>,
        lhs: usize,
        rhs: Result<Vec<u8>, usize>,
        check_it: bool,
        check_it_inverse: bool,
    },
    Log(Template),
    Warning(Template),
    Error(Template),
    Jump(Operand),
    StopCall,
    StopGracefully,
    StopNow,
}

/// What running a step's actions asks of the engine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// A failed check: the `Failed*` reason the call ends with (SIPp lets it run on).
    pub failure: Option<usize>,
    /// `jump`: continue at this message index.
    pub jump: Option<usize>,
    pub stop_call: bool,
    pub stop_gracefully: bool,
    pub stop_now: bool,
    /// `error`: SIPp's fatal error, the whole run ends (exit 255).
    pub fatal: Option<String>,
}

/// Renders a keyword template (for `assignstr`, `log`, ...) in the caller's call context.
pub trait Render {
    fn render(&self, t: &Template, space: &Space<'_>, out: &mut Vec<u8>);
}

/// Everything an action may touch.
pub struct Cx<'a, R: Render> {
    pub vars: Space<'a>,
    /// The message the step received or sent (`None` on a `nop`).
    pub msg: Option<&'a [u8]>,
    pub msg_index: usize,
    pub render: &'a R,
    /// `log` lines (`-trace_logs`) and `warning` lines (the error log).
    pub logs: &'a mut Vec<String>,
    pub warnings: &'a mut Vec<String>,
    pub rng: &'a mut u64,
}

/// Draws a uniform number in [0, 1) (xorshift64*: cheap, and good enough for load shaping).
pub fn unit(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

impl Dist {
    pub fn sample(&self, rng: &mut u64) -> f64 {
        match *self {
            Dist::Fixed(v) => v,
            Dist::Uniform { min, max } => min + (max - min) * unit(rng),
        }
    }
}

fn operand(o: Operand, v: &Space<'_>) -> f64 {
    match o {
        Operand::Value(x) => x,
        Operand::Var(i) => v.get(i).double(),
    }
}

/// The haystack of `Look::Hdr`: the text after the header name, to the end of its line.
pub(super) fn header_part<'m>(
    msg: &'m [u8],
    name: &str,
    case_indep: bool,
    start_line: bool,
    occurrence: usize,
) -> &'m [u8] {
    let n = name.as_bytes();
    if n.is_empty() || msg.len() < n.len() {
        return b"";
    }
    let mut seen = 0;
    for at in 0..=msg.len() - n.len() {
        let w = &msg[at..at + n.len()];
        let hit = if case_indep {
            w.eq_ignore_ascii_case(n)
        } else {
            w == n
        };
        if !hit || (start_line && at > 0 && msg[at - 1] != b'\n') {
            continue;
        }
        seen += 1;
        if seen == occurrence.max(1) {
            let rest = &msg[at + n.len()..];
            let end = rest
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(rest.len());
            return &rest[..end];
        }
    }
    b""
}

fn cmp(c: Compare, a: f64, b: f64) -> bool {
    match c {
        Compare::Equal => a == b,
        Compare::NotEqual => a != b,
        Compare::GreaterThan => a > b,
        Compare::LessThan => a < b,
        Compare::GreaterThanEqual => a >= b,
        Compare::LessThanEqual => a <= b,
    }
}

/// C's `strcmp` on the bytes: the difference of the first differing bytes.
pub(super) fn strcmp(a: &[u8], b: &[u8]) -> i32 {
    for i in 0..=a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y || x == 0 {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// Runs `actions` in order; stops at the first failed check, as SIPp does.
pub fn run<R: Render>(actions: &[Action], cx: &mut Cx<'_, R>) -> Outcome {
    let mut out = Outcome::default();
    for a in actions {
        match a {
            Action::Ereg {
                re,
                look,
                case_indep,
                check_it,
                check_it_inverse,
                assign_to,
            } => {
                let owned;
                let hay: &[u8] = match look {
                    Look::Msg => cx.msg.unwrap_or_default(),
                    Look::Body => {
                        let m = cx.msg.unwrap_or_default();
                        match m.windows(4).position(|w| w == b"\r\n\r\n") {
                            Some(p) => &m[p + 4..],
                            None if *check_it => {
                                out.failure = Some(stats::REGEXP_HDR_NOT_FOUND);
                                return out;
                            }
                            None => b"",
                        }
                    }
                    Look::Hdr {
                        name,
                        start_line,
                        occurrence,
                    } => {
                        let h = header_part(
                            cx.msg.unwrap_or_default(),
                            name,
                            *case_indep,
                            *start_line,
                            *occurrence,
                        );
                        if h.is_empty() && *check_it {
                            out.failure = Some(stats::REGEXP_HDR_NOT_FOUND);
                            return out;
                        }
                        h
                    }
                    Look::Var(i) => {
                        owned = cx.vars.get(*i).text().to_vec();
                        &owned
                    }
                };
                let mut matched = false;
                if let Some(caps) = re.captures(hay) {
                    for (k, &var) in assign_to.iter().enumerate() {
                        if let Some(g) = caps.get(k) {
                            cx.vars.set(var, Var::Regexp(g.as_bytes().to_vec()));
                            matched = true;
                        }
                    }
                }
                if !matched && *check_it {
                    out.failure = Some(stats::REGEXP_DOESNT_MATCH);
                    return out;
                }
                if matched && *check_it_inverse {
                    out.failure = Some(stats::REGEXP_SHOULDNT_MATCH);
                    return out;
                }
            }
            Action::Arith { op, to, rhs } => {
                let r = operand(*rhs, &cx.vars);
                let v = cx.vars.get(*to).double();
                let new = match op {
                    Arith::Assign => r,
                    Arith::Add => v + r,
                    Arith::Subtract => v - r,
                    Arith::Multiply => v * r,
                    Arith::Divide if r == 0.0 => {
                        cx.warnings
                            .push("Action failure: Can not divide by zero".to_owned());
                        continue;
                    }
                    Arith::Divide => v / r,
                };
                cx.vars.set(*to, Var::Double(new));
            }
            Action::AssignStr { to, value } => {
                let mut s = Vec::new();
                cx.render.render(value, &cx.vars, &mut s);
                cx.vars.set(*to, Var::Str(s));
            }
            Action::ToDouble { to, from } => match cx.vars.get(*from).to_double() {
                Some(d) => cx.vars.set(*to, Var::Double(d)),
                None => cx
                    .warnings
                    .push("Invalid double conversion in todouble".to_owned()),
            },
            Action::Trim(i) => {
                let t = cx.vars.get(*i).text().trim_ascii().to_vec();
                cx.vars.set(*i, Var::Str(t));
            }
            Action::GetTimeOfDay { secs, usecs } => {
                let d = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                cx.vars.set(*secs, Var::Double(d.as_secs() as f64));
                if let Some(u) = usecs {
                    cx.vars.set(*u, Var::Double(f64::from(d.subsec_micros())));
                }
            }
            Action::Index(i) => cx.vars.set(*i, Var::Double(cx.msg_index as f64)),
            Action::Sample { to, dist } => {
                let v = dist.sample(cx.rng);
                cx.vars.set(*to, Var::Double(v));
            }
            Action::Test {
                to,
                lhs,
                cmp: c,
                rhs,
                check_it,
                check_it_inverse,
            } => {
                let r = cmp(*c, cx.vars.get(*lhs).double(), operand(*rhs, &cx.vars));
                if *check_it && !r {
                    out.failure = Some(stats::TEST_DOESNT_MATCH);
                    return out;
                }
                if *check_it_inverse && r {
                    out.failure = Some(stats::TEST_SHOULDNT_MATCH);
                    return out;
                }
                if let Some(t) = to {
                    cx.vars.set(*t, Var::Bool(r));
                }
            }
            Action::Strcmp {
                to,
                lhs,
                rhs,
                check_it,
                check_it_inverse,
            } => {
                let b = match rhs {
                    Ok(v) => v.clone(),
                    Err(i) => cx.vars.get(*i).text().to_vec(),
                };
                let r = strcmp(cx.vars.get(*lhs).text(), &b);
                if *check_it && r != 0 {
                    out.failure = Some(stats::STRCMP_DOESNT_MATCH);
                    return out;
                }
                if *check_it_inverse && r == 0 {
                    out.failure = Some(stats::STRCMP_SHOULDNT_MATCH);
                    return out;
                }
                if let Some(t) = to {
                    cx.vars.set(*t, Var::Double(f64::from(r)));
                }
            }
            Action::Log(t) | Action::Warning(t) | Action::Error(t) => {
                let mut s = Vec::new();
                cx.render.render(t, &cx.vars, &mut s);
                let s = String::from_utf8_lossy(&s).into_owned();
                match a {
                    Action::Log(_) => cx.logs.push(s),
                    Action::Warning(_) => cx.warnings.push(s),
                    _ => {
                        out.fatal = Some(s);
                        return out;
                    }
                }
            }
            Action::Jump(o) => {
                out.jump = Some(operand(*o, &cx.vars).max(0.0) as usize);
            }
            Action::StopCall => {
                out.stop_call = true;
                return out;
            }
            Action::StopGracefully => out.stop_gracefully = true,
            Action::StopNow => {
                out.stop_now = true;
                return out;
            }
        }
    }
    out
}

/// Compiles `regexp=` as SIPp's POSIX extended regex: `.` also matches line ends, `^`/`$`
/// anchor at the ends of the text searched.
pub fn regex(pattern: &str, case_indep: bool) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .dot_matches_new_line(true)
        .case_insensitive(case_indep)
        .build()
        .map_err(|e| format!("regexp \"{pattern}\": {e}"))
}
