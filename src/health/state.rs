//! Kamailio's keepalive state machine (`ds_update_state` and the probing modes of
//! `ds_ping_set`): which destinations get a keepalive, which replies count as success, and the
//! flags a destination moves to after each result. Pure functions over flag bits and a
//! counter; the prober applies them.
#![forbid(unsafe_code)]

use serde::Deserialize;

use crate::dispatch::flags::{DISABLED, INACTIVE, NODNSARES, NOPING, PROBING, TRYING};

/// Kamailio's `ds_probing_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u8")]
pub enum ProbingMode {
    /// 0: only destinations with the probing flag; it is cleared once they answer.
    #[default]
    Flagged,
    /// 1: every destination, forever.
    All,
    /// 2: only destinations flagged probing and inactive.
    Inactive,
    /// 3: only destinations flagged probing; the flag is kept.
    OnlyFlagged,
}

impl TryFrom<u8> for ProbingMode {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        Ok(match n {
            0 => Self::Flagged,
            1 => Self::All,
            2 => Self::Inactive,
            3 => Self::OnlyFlagged,
            _ => return Err(format!("probing_mode {n}: expected 0, 1, 2 or 3")),
        })
    }
}

/// Whether a destination with `flags` gets a keepalive in `mode`. Disabled, no-ping and
/// unresolved (`NODNSARES`) destinations never do.
pub fn should_ping(flags: u8, mode: ProbingMode) -> bool {
    if flags & (DISABLED | NOPING | NODNSARES) != 0 {
        return false;
    }
    match mode {
        ProbingMode::All => true,
        ProbingMode::Flagged | ProbingMode::OnlyFlagged => flags & PROBING != 0,
        ProbingMode::Inactive => flags & (PROBING | INACTIVE) == PROBING | INACTIVE,
    }
}

/// The reply codes that count as a successful keepalive: any 2xx, plus Kamailio's
/// `ds_ping_reply_codes` (`code=NNN;class=N;…`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceptCodes {
    pub codes: Vec<u16>,
    pub classes: Vec<u8>,
}

impl AcceptCodes {
    /// Parses `code=404;class=4;…`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut a = Self::default();
        for item in s.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected code=NNN or class=N"))?;
            let n: u16 = v
                .trim()
                .parse()
                .map_err(|_| format!("`{item}`: `{v}` is not a number"))?;
            match k.trim() {
                "code" if (100..=699).contains(&n) => a.codes.push(n),
                "class" if (1..=6).contains(&n) => a.classes.push(n as u8),
                "code" | "class" => return Err(format!("`{item}`: out of range")),
                other => return Err(format!("`{other}`: expected code or class")),
            }
        }
        Ok(a)
    }

    pub fn accepts(&self, code: u16) -> bool {
        (200..300).contains(&code)
            || self.codes.contains(&code)
            || self.classes.contains(&((code / 100) as u8))
    }
}

/// Thresholds and mode of the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    pub mode: ProbingMode,
    /// Consecutive failures before a destination goes inactive (`ds_probing_threshold`).
    pub probing_threshold: u32,
    /// Consecutive successes before an inactive destination is active again
    /// (`ds_inactive_threshold`).
    pub inactive_threshold: u32,
}

/// A destination's state after one keepalive result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next {
    pub flags: u8,
    pub count: u32,
}

impl Machine {
    /// Applies one keepalive result to a destination's `flags` and consecutive-result
    /// `count`. `None`: the result is ignored (a disabled destination, or in mode 3 one whose
    /// probing flag was removed meanwhile).
    pub fn on_result(&self, flags: u8, count: u32, ok: bool) -> Option<Next> {
        if flags & DISABLED != 0 || (self.mode == ProbingMode::OnlyFlagged && flags & PROBING == 0)
        {
            return None;
        }
        let other = flags & !(INACTIVE | TRYING | PROBING);
        let (state, count) = if ok {
            if flags & INACTIVE != 0 && count + 1 < self.inactive_threshold {
                (INACTIVE, count + 1)
            } else {
                (0, 0)
            }
        } else if flags & INACTIVE != 0 {
            // Down stays down; successes must be consecutive to bring it back.
            (INACTIVE, 0)
        } else if count + 1 >= self.probing_threshold {
            (INACTIVE, 0)
        } else {
            (TRYING, count + 1)
        };
        let probing = match self.mode {
            ProbingMode::All | ProbingMode::OnlyFlagged => PROBING,
            // Modes 0 and 2 probe until the destination is up (mode 2) or has answered once
            // (mode 0), as Kamailio does; an inactive one that still needs successes keeps it.
            ProbingMode::Flagged if ok && state == INACTIVE => PROBING,
            ProbingMode::Flagged => 0,
            ProbingMode::Inactive if state == 0 => 0,
            ProbingMode::Inactive => PROBING,
        };
        Some(Next {
            flags: other | state | probing,
            count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(mode: ProbingMode, fail: u32, ok: u32) -> Machine {
        Machine {
            mode,
            probing_threshold: fail,
            inactive_threshold: ok,
        }
    }

    /// Runs results through the machine from `flags`, returning the flags after each.
    fn run(machine: Machine, mut flags: u8, results: &[bool]) -> Vec<u8> {
        let mut count = 0;
        results
            .iter()
            .map(|&ok| {
                if let Some(n) = machine.on_result(flags, count, ok) {
                    (flags, count) = (n.flags, n.count);
                }
                flags
            })
            .collect()
    }

    #[test]
    fn thresholds_in_mode_all() {
        let mc = m(ProbingMode::All, 3, 2);
        let p = PROBING;
        assert_eq!(
            run(mc, p, &[false, false, false, false, true, true, false]),
            vec![
                TRYING | p,
                TRYING | p,
                INACTIVE | p,
                INACTIVE | p,
                INACTIVE | p,
                p,
                TRYING | p
            ]
        );
        // A success in between resets the count of failures, and a failure the successes.
        assert_eq!(
            run(mc, p, &[false, false, true, false, false]),
            vec![TRYING | p, TRYING | p, p, TRYING | p, TRYING | p]
        );
        assert_eq!(
            run(mc, INACTIVE | p, &[true, false, true, true]),
            vec![INACTIVE | p, INACTIVE | p, INACTIVE | p, p]
        );
    }

    #[test]
    fn mode_0_probes_once() {
        let mc = m(ProbingMode::Flagged, 1, 1);
        assert_eq!(run(mc, PROBING, &[true]), vec![0]);
        // A failure clears the flag too: it stays down until re-armed (Kamailio's quirk).
        assert_eq!(run(mc, INACTIVE | PROBING, &[false]), vec![INACTIVE]);
        assert!(!should_ping(INACTIVE, ProbingMode::Flagged));
        assert!(should_ping(INACTIVE | PROBING, ProbingMode::Flagged));
    }

    #[test]
    fn mode_2_probes_only_inactive() {
        let mc = m(ProbingMode::Inactive, 1, 1);
        assert!(!should_ping(PROBING, ProbingMode::Inactive));
        assert!(should_ping(INACTIVE | PROBING, ProbingMode::Inactive));
        assert_eq!(
            run(mc, INACTIVE | PROBING, &[false, true]),
            vec![INACTIVE | PROBING, 0]
        );
    }

    #[test]
    fn mode_3_keeps_the_flag_and_ignores_unflagged() {
        let mc = m(ProbingMode::OnlyFlagged, 1, 1);
        assert_eq!(
            run(mc, PROBING, &[false, true]),
            vec![INACTIVE | PROBING, PROBING]
        );
        assert_eq!(mc.on_result(0, 0, false), None);
    }

    #[test]
    fn disabled_and_noping_are_never_pinged_nor_changed() {
        for mode in [ProbingMode::All, ProbingMode::Flagged] {
            assert!(!should_ping(DISABLED | PROBING, mode));
            assert!(!should_ping(NOPING | PROBING, mode));
        }
        assert_eq!(m(ProbingMode::All, 1, 1).on_result(DISABLED, 0, true), None);
        assert!(should_ping(0, ProbingMode::All));
    }

    #[test]
    fn reply_codes() {
        let a = AcceptCodes::parse("code=404;class=3").unwrap();
        assert!(a.accepts(200) && a.accepts(299) && a.accepts(404) && a.accepts(302));
        assert!(!a.accepts(408) && !a.accepts(503) && !a.accepts(100));
        assert!(AcceptCodes::parse("code=99").is_err());
        assert!(AcceptCodes::parse("klass=4").is_err());
        assert!(AcceptCodes::parse("").unwrap().accepts(202));
    }
}
