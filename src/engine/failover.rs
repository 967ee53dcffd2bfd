//! Failover without a script: for an initial INVITE dispatched on a route with a `failover`
//! policy, a light transaction record — a copy of the request as it arrived, the ordered
//! candidate list, the try in progress and its timer — kept until a final reply. The shard asks
//! it what to do with each reply and each expired timer; this module decides, the shard sends.
//! Records live in a table allocated once (request copies in one arena), so failover costs no
//! allocation per message; a request too large for a slot, or a full table, goes stateless.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::health::settings::Period;

/// Tries per call at most (the first one included).
pub const MAX_TRIES: usize = 16;
/// How long a record lives at most once a provisional reply stopped its timer (tm's
/// `fr_inv_timer` is 120 s; a ringing phase rarely lasts longer).
const RINGING_MS: u64 = 180_000;

/// What happens to a destination that failed a try.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    /// Inactive and probing (Kamailio's `ds_mark_dst("ip")`): out until keepalives bring it
    /// back, so use it with `[health]` keepalives on.
    Inactive,
    /// Trying: still selectable (`ds_mark_dst("tp")` as documented).
    Trying,
    #[default]
    None,
}

/// A route's `failover = { … }` table as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverSpec {
    /// Final reply codes that move the call on: `"503"`, or a class `"5xx"`.
    #[serde(default = "default_codes")]
    pub codes: Vec<String>,
    /// How long a try may go without a provisional reply.
    #[serde(default = "default_timeout")]
    pub timeout: Period,
    /// Tries per call, the first included.
    #[serde(default = "default_tries")]
    pub max_tries: usize,
    #[serde(default)]
    pub mark: Mark,
}

fn default_codes() -> Vec<String> {
    vec!["5xx".into(), "408".into()]
}

fn default_timeout() -> Period {
    Period(std::time::Duration::from_secs(2))
}

fn default_tries() -> usize {
    3
}

/// A resolved failover policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    codes: Vec<u16>,
    classes: Vec<u16>,
    pub timeout_ms: u64,
    pub max_tries: usize,
    pub mark: Mark,
}

impl FailoverSpec {
    pub fn policy(&self) -> Result<Policy, String> {
        let mut p = Policy {
            codes: Vec::new(),
            classes: Vec::new(),
            timeout_ms: self.timeout.0.as_millis() as u64,
            max_tries: self.max_tries,
            mark: self.mark,
        };
        for c in &self.codes {
            let c = c.trim().to_ascii_lowercase();
            let bad = || format!("failover.codes: `{c}` is not a code (503) or a class (5xx)");
            if let Some(class) = c.strip_suffix("xx") {
                let n: u16 = class.parse().map_err(|_| bad())?;
                if !(3..=6).contains(&n) {
                    return Err(bad());
                }
                p.classes.push(n);
            } else {
                let n: u16 = c.parse().map_err(|_| bad())?;
                if !(300..=699).contains(&n) {
                    return Err(bad());
                }
                p.codes.push(n);
            }
        }
        if !(1..=MAX_TRIES).contains(&p.max_tries) {
            return Err(format!("failover.max_tries: must be 1..={MAX_TRIES}"));
        }
        if p.timeout_ms == 0 {
            return Err("failover.timeout: must be more than 0".into());
        }
        Ok(p)
    }
}

impl Policy {
    /// Whether a final reply with `code` moves the call to the next candidate.
    pub fn retries_on(&self, code: u16) -> bool {
        self.codes.contains(&code) || self.classes.contains(&(code / 100))
    }
}

/// One INVITE transaction under failover.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub key: u64,
    /// Index of the route whose policy applies.
    pub route: u16,
    pub set: u32,
    /// Candidates (indexes into the set) in failover order, and the one being tried.
    pub cands: [u16; MAX_TRIES],
    pub ncands: u8,
    pub at: u8,
    /// Our Via branch for try 0; try `k` uses `branch ^ k·FORK`.
    pub branch: u64,
    /// When the try in progress fails for want of a provisional reply (0: one arrived).
    pub deadline_ms: u64,
    pub expires_ms: u64,
    pub cancelled: bool,
    pub record_route: bool,
    /// Where the request came from (for `received`/`rport` on every copy).
    pub src: SocketAddr,
    len: u16,
}

impl Record {
    /// A record for a call whose first try leaves now (`now_ms`) to `cands[0]`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: u64,
        route: u16,
        set: u32,
        cands: &[u16],
        branch: u64,
        deadline_ms: u64,
        now_ms: u64,
        record_route: bool,
        src: SocketAddr,
    ) -> Self {
        let mut list = [0u16; MAX_TRIES];
        let n = cands.len().min(MAX_TRIES);
        list[..n].copy_from_slice(&cands[..n]);
        Self {
            key,
            route,
            set,
            cands: list,
            ncands: n as u8,
            at: 0,
            branch,
            deadline_ms,
            expires_ms: now_ms + RINGING_MS,
            cancelled: false,
            record_route,
            src,
            len: 0,
        }
    }

    /// The candidate of try `k`.
    pub fn cand(&self, k: u8) -> Option<usize> {
        (k < self.ncands).then(|| usize::from(self.cands[usize::from(k)]))
    }
}

/// Branches of successive tries differ by this factor of the try number (as parallel forks do).
pub const FORK: u64 = 0x9e37_79b9_7f4a_7c15;

/// The failover records of one shard.
pub struct Failover {
    records: Vec<Option<Record>>,
    arena: Vec<u8>,
    slot_size: usize,
    index: HashMap<u64, u32>,
    free: Vec<u32>,
}

/// Why a call could not get a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRecord {
    Full,
    TooLarge,
}

impl Failover {
    /// A table of `capacity` records whose request copies hold up to `slot_size` bytes.
    pub fn new(capacity: usize, slot_size: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            records: vec![None; capacity],
            arena: vec![0; capacity * slot_size],
            slot_size,
            index: HashMap::with_capacity(capacity),
            free: (0..capacity as u32).rev().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Starts a record for a call whose first try is being sent now.
    pub fn start(&mut self, mut rec: Record, request: &[u8]) -> Result<(), NoRecord> {
        if request.len() > self.slot_size {
            return Err(NoRecord::TooLarge);
        }
        if self.index.contains_key(&rec.key) {
            return Ok(());
        }
        let slot = self.free.pop().ok_or(NoRecord::Full)?;
        let at = slot as usize * self.slot_size;
        self.arena[at..at + request.len()].copy_from_slice(request);
        rec.len = request.len() as u16;
        self.records[slot as usize] = Some(rec);
        self.index.insert(rec.key, slot);
        Ok(())
    }

    pub fn get(&self, key: u64) -> Option<&Record> {
        let slot = *self.index.get(&key)?;
        self.records[slot as usize].as_ref()
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut Record> {
        let slot = *self.index.get(&key)?;
        self.records[slot as usize].as_mut()
    }

    /// The request as it arrived.
    pub fn request(&self, key: u64) -> Option<&[u8]> {
        let slot = *self.index.get(&key)? as usize;
        let rec = self.records[slot].as_ref()?;
        let at = slot * self.slot_size;
        Some(&self.arena[at..at + usize::from(rec.len)])
    }

    pub fn remove(&mut self, key: u64) -> Option<Record> {
        let slot = self.index.remove(&key)?;
        self.free.push(slot);
        self.records[slot as usize].take()
    }

    /// Calls whose try in progress timed out (no provisional reply), oldest slot first, and
    /// removes records past their lifetime. `due` gets each timed-out call's key.
    pub fn expired(&mut self, now_ms: u64, mut due: impl FnMut(u64)) {
        for slot in 0..self.records.len() {
            let Some(r) = self.records[slot] else {
                continue;
            };
            if r.expires_ms <= now_ms {
                // In place: the free list and the index have room, so nothing is allocated.
                self.records[slot] = None;
                self.index.remove(&r.key);
                self.free.push(slot as u32);
            } else if r.deadline_ms != 0 && r.deadline_ms <= now_ms && !r.cancelled {
                due(r.key);
            }
        }
    }

    /// Which try a response belongs to, from our Via branch on top of it.
    pub fn try_of(&self, key: u64, branch: &[u8]) -> Option<u8> {
        let r = self.get(key)?;
        let hex = std::str::from_utf8(branch.strip_prefix(b"z9hG4bK")?).ok()?;
        let b = u64::from_str_radix(hex, 16).ok()?;
        (0..=r.at).find(|&k| r.branch ^ u64::from(k).wrapping_mul(FORK) == b)
    }

    /// A provisional reply to the try in progress stops its timer.
    pub fn provisional(&mut self, key: u64, now_ms: u64) {
        if let Some(r) = self.get_mut(key) {
            r.deadline_ms = 0;
            r.expires_ms = now_ms + RINGING_MS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: u64) -> Record {
        Record {
            key,
            route: 0,
            set: 1,
            cands: [0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ncands: 3,
            at: 0,
            branch: 0x1234,
            deadline_ms: 1000,
            expires_ms: 60_000,
            cancelled: false,
            record_route: false,
            src: "127.0.0.1:5000".parse().unwrap(),
            len: 0,
        }
    }

    #[test]
    fn policy_codes() {
        let spec: FailoverSpec =
            toml::from_str("codes = [\"5xx\", \"408\"]\ntimeout = \"1s\"\nmark = \"inactive\"")
                .unwrap();
        let p = spec.policy().unwrap();
        assert!(p.retries_on(503) && p.retries_on(500) && p.retries_on(408));
        assert!(!p.retries_on(486) && !p.retries_on(404));
        assert_eq!(
            (p.timeout_ms, p.max_tries, p.mark),
            (1000, 3, Mark::Inactive)
        );
        for bad in [
            "codes = [\"2xx\"]",
            "codes = [\"50\"]",
            "max_tries = 0",
            "timeout = 0",
            "marks = \"none\"",
        ] {
            let r = toml::from_str::<FailoverSpec>(bad)
                .map_err(|e| e.to_string())
                .and_then(|s| s.policy());
            assert!(r.is_err(), "{bad}");
        }
    }

    #[test]
    fn records_are_bounded_and_recycled() {
        let mut f = Failover::new(2, 16);
        assert_eq!(f.start(rec(1), b"INVITE one"), Ok(()));
        assert_eq!(f.start(rec(2), b"INVITE two"), Ok(()));
        assert_eq!(f.start(rec(3), b"INVITE three"), Err(NoRecord::Full));
        assert_eq!(f.start(rec(3), &[0; 17]), Err(NoRecord::TooLarge));
        assert_eq!(f.request(2), Some(&b"INVITE two"[..]));
        f.remove(1);
        assert_eq!(f.start(rec(3), b"INVITE three"), Ok(()));
        assert_eq!(f.request(3), Some(&b"INVITE three"[..]));
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn timers_and_tries() {
        let mut f = Failover::new(4, 64);
        f.start(rec(7), b"x").unwrap();
        f.start(rec(8), b"y").unwrap();
        f.provisional(8, 500);
        let mut due = Vec::new();
        f.expired(999, |k| due.push(k));
        assert!(due.is_empty());
        f.expired(1000, |k| due.push(k));
        assert_eq!(due, vec![7], "a provisional reply stopped 8's timer");
        f.get_mut(7).unwrap().at = 1;
        let b1 = format!("z9hG4bK{:016x}", 0x1234u64 ^ FORK);
        assert_eq!(f.try_of(7, b1.as_bytes()), Some(1));
        assert_eq!(f.try_of(7, b"z9hG4bK0000000000001234"), Some(0));
        assert_eq!(f.try_of(7, b"z9hG4bKffff"), None);
        f.expired(60_000, |_| {});
        assert!(
            f.get(7).is_none() && f.get(8).is_some(),
            "7 lived out its time, 8 rings"
        );
    }
}
