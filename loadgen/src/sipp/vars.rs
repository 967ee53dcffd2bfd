//! Scenario variables (`$name`): the four kinds SIPp keeps (regexp capture, string, double,
//! bool) with SIPp's rules for when a variable counts as set, how it reads as a number or a
//! string, and how `[$name]` prints it. Per-call variables live in the call; `<Global>` ones
//! and those given with `-set` live once per run.

use std::fmt::Write as _;

/// One variable's value.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Var {
    #[default]
    Unset,
    /// Set by `ereg`: the capture that matched.
    Regexp(Vec<u8>),
    Str(Vec<u8>),
    Double(f64),
    Bool(bool),
}

impl Var {
    /// SIPp's "is set": a capture that matched, a true bool, a non-zero double, any string.
    pub fn is_set(&self) -> bool {
        match self {
            Var::Unset => false,
            Var::Regexp(_) | Var::Str(_) => true,
            Var::Double(d) => *d != 0.0,
            Var::Bool(b) => *b,
        }
    }

    /// The value arithmetic and `test` see: only a double has one, everything else is 0.
    pub fn double(&self) -> f64 {
        match self {
            Var::Double(d) => *d,
            _ => 0.0,
        }
    }

    /// The value `strcmp`, `ereg search_in="var"` and `todouble` see.
    pub fn text(&self) -> &[u8] {
        match self {
            Var::Regexp(s) | Var::Str(s) => s,
            _ => b"",
        }
    }

    /// `todouble`: the whole text must be a number (C's `strtod` with nothing left over).
    pub fn to_double(&self) -> Option<f64> {
        match self {
            Var::Regexp(s) | Var::Str(s) => std::str::from_utf8(s).ok()?.trim_start().parse().ok(),
            Var::Double(d) => Some(*d),
            Var::Bool(b) => Some(f64::from(u8::from(*b))),
            Var::Unset => None,
        }
    }

    /// `[$name]`: a capture or string as is, a double as C's `%lf` (six decimals), a bool as
    /// `true`/`false`; an unset variable (or a zero double) prints nothing.
    pub fn render(&self, out: &mut Vec<u8>) {
        match self {
            Var::Regexp(s) | Var::Str(s) => out.extend_from_slice(s),
            Var::Double(d) if *d != 0.0 => {
                let mut s = String::new();
                let _ = write!(s, "{d:.6}");
                out.extend_from_slice(s.as_bytes());
            }
            Var::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Var::Double(_) | Var::Unset => {}
        }
    }
}

/// Where variable `i` lives: in the call, or once for the run.
pub struct Space<'a> {
    pub local: &'a mut [Var],
    pub global: &'a mut [Var],
    pub is_global: &'a [bool],
}

impl Space<'_> {
    pub fn get(&self, i: usize) -> &Var {
        if self.is_global[i] {
            &self.global[i]
        } else {
            &self.local[i]
        }
    }

    pub fn set(&mut self, i: usize, v: Var) {
        if self.is_global[i] {
            self.global[i] = v;
        } else {
            self.local[i] = v;
        }
    }
}

/// Read-only view of the same, for rendering messages.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub local: &'a [Var],
    pub global: &'a [Var],
    pub is_global: &'a [bool],
}

impl View<'_> {
    pub fn get(&self, i: usize) -> &Var {
        let t = if self.is_global.get(i) == Some(&true) {
            self.global
        } else {
            self.local
        };
        t.get(i).unwrap_or(&Var::Unset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(v: &Var) -> String {
        let mut out = Vec::new();
        v.render(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn sipp_rules() {
        assert_eq!(shown(&Var::Double(3.0)), "3.000000");
        assert_eq!(shown(&Var::Double(0.0)), "");
        assert!(!Var::Double(0.0).is_set());
        assert_eq!(shown(&Var::Bool(false)), "false");
        assert_eq!(shown(&Var::Regexp(b"abc".to_vec())), "abc");
        assert_eq!(Var::Str(b"12.5".to_vec()).to_double(), Some(12.5));
        assert_eq!(Var::Str(b"12x".to_vec()).to_double(), None);
        assert_eq!(Var::Str(b"7".to_vec()).double(), 0.0);
        assert!(Var::Regexp(Vec::new()).is_set());
    }
}
