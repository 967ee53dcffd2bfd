//! The destination table: sets of destinations ordered as Kamailio orders them (priority,
//! highest first), with the per-set counters the algorithms share across shards. A table is
//! built whole from specs and never edited in place; building from a previous table carries
//! over each surviving destination's id and runtime state, and each set's rotation.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::destination::{Attrs, DestId, DestSpec, DestState, Target};
use super::hash::{le_word, mix64};

/// One destination of a set.
#[derive(Debug)]
pub struct Destination {
    pub id: DestId,
    pub set: u32,
    pub uri: String,
    pub target: Target,
    /// Where to send; `None` until a host name is resolved.
    pub addr: Option<SocketAddr>,
    /// The outbound proxy its keepalives go through: its `obproxy` attribute, else the
    /// `[health]` `outbound_proxy`.
    pub ping_proxy: PingProxy,
    pub priority: i32,
    pub attrs: Attrs,
    pub state: Arc<DestState>,
    pub origin: String,
    /// Stable across restarts and instances (a hash of the URI and duid), for rendezvous.
    pub seed: u64,
}

/// Where a destination's keepalives go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PingProxy {
    /// To the destination itself.
    #[default]
    None,
    Resolved(SocketAddr),
    /// A proxy is configured but its host did not resolve: no keepalives (sending them
    /// straight to the destination would test a path the calls do not take).
    Unresolved,
}

impl Destination {
    /// Where its keepalives are sent, if anywhere.
    pub fn keepalive_to(&self) -> Option<SocketAddr> {
        match self.ping_proxy {
            PingProxy::None => self.addr,
            PingProxy::Resolved(a) => Some(a),
            PingProxy::Unresolved => None,
        }
    }
}

/// A destination set and its shared selection counters.
#[derive(Debug)]
pub struct Set {
    pub id: u32,
    pub dests: Vec<Destination>,
    /// Round-robin position (algorithms 4, 5, 13, 14, 64).
    pub rr: AtomicU32,
    /// Weighted-selection cursor (algorithms 9, 11, 15 and OpenSIPS 4).
    pub wcursor: AtomicU64,
    /// Algorithm 14: every destination has the same priority, above 0.
    pub rr_serial: bool,
    /// Rendezvous hashing: every destination has the same weight, so scores need no logarithm.
    pub hrw_equal: bool,
    /// Some destination has a `maxcps` or `maxcalls` cap.
    pub has_caps: bool,
}

/// The hasher of the table's lookups by id and address, which run for most datagrams. Their
/// keys are few and come from the config, never from the network, so a fixed-key hash cannot
/// be flooded; SipHash spent ~80 instructions a lookup.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            self.write_u64(le_word(c));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }

    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        mix64(self.0)
    }
}

type Keyed = BuildHasherDefault<KeyHasher>;

/// All sets, immutable once built (runtime state lives in the `Arc<DestState>`s).
#[derive(Debug, Default)]
pub struct Table {
    /// Sorted by id.
    pub sets: Vec<Set>,
    index: HashMap<DestId, (usize, usize), Keyed>,
    /// The first destination at each resolved address (for counting its replies), and every
    /// resolved IP (for telling who may send in-dialog requests).
    /// Positions (set, destination), not ids: a reply's lookup then needs no second one.
    by_addr: HashMap<SocketAddr, (usize, usize), Keyed>,
    by_ip: HashSet<IpAddr, Keyed>,
    /// Every destination's keepalive proxy: their replies to keepalives are let in.
    ping_proxies: Vec<SocketAddr>,
    /// The `[health]` `outbound_proxy` they were resolved with, for in-memory changes.
    default_ping_proxy: Option<String>,
    next_id: u32,
}

/// What identifies a destination across reloads: set, URI, duid.
type CarryKey<'a> = (u32, &'a str, Option<&'a str>);

fn seed_of(uri: &str, duid: Option<&str>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in uri.bytes().chain([0]).chain(duid.unwrap_or("").bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

impl Table {
    /// Builds a table. With `previous`, destinations matched by (set, URI, duid) keep their id
    /// and runtime state, and sets keep their rotation.
    pub fn build(specs: Vec<DestSpec>, previous: Option<&Table>) -> Result<Self, String> {
        let mut carried: HashMap<CarryKey<'_>, (DestId, &Arc<DestState>)> = HashMap::new();
        let mut next_id = 1;
        if let Some(p) = previous {
            next_id = p.next_id;
            for s in &p.sets {
                for d in &s.dests {
                    carried.insert((d.set, &d.uri, d.attrs.duid.as_deref()), (d.id, &d.state));
                }
            }
        }
        let mut by_set: Vec<(u32, Vec<Destination>)> = Vec::new();
        for spec in specs {
            let target = Target::parse(&spec.uri)
                .ok_or_else(|| format!("{}: `{}` is not a valid SIP URI", spec.origin, spec.uri))?;
            let key = (spec.set, spec.uri.as_str(), spec.attrs.duid.as_deref());
            let (id, state) = match carried.get(&key) {
                Some((id, st)) => {
                    // A new rweight applies at once unless congestion control manages it.
                    if !spec.attrs.cc {
                        st.rweight.store(spec.attrs.rweight, Relaxed);
                    }
                    st.caps.maxcps.store(spec.attrs.maxcps, Relaxed);
                    st.caps.maxcalls.store(spec.attrs.maxcalls, Relaxed);
                    (*id, Arc::clone(st))
                }
                None => {
                    let id = DestId(next_id);
                    next_id += 1;
                    (id, Arc::new(DestState::new(spec.flags, &spec.attrs)))
                }
            };
            let d = Destination {
                id,
                set: spec.set,
                seed: seed_of(&spec.uri, spec.attrs.duid.as_deref()),
                addr: target.literal_addr(),
                ping_proxy: PingProxy::None,
                target,
                uri: spec.uri,
                priority: spec.priority,
                attrs: spec.attrs,
                state,
                origin: spec.origin,
            };
            match by_set.iter_mut().find(|(s, _)| *s == spec.set) {
                Some((_, v)) => v.push(d),
                None => by_set.push((spec.set, vec![d])),
            }
        }
        by_set.sort_by_key(|(s, _)| *s);
        let mut sets = Vec::with_capacity(by_set.len());
        let mut index = HashMap::default();
        for (id, mut dests) in by_set {
            // Highest priority first; equal priorities keep file order (a stable sort).
            dests.sort_by_key(|d| std::cmp::Reverse(d.priority));
            for (i, d) in dests.iter().enumerate() {
                if index.insert(d.id, (sets.len(), i)).is_some() {
                    return Err(format!(
                        "{}: destination {} appears twice in set {id} with the same duid",
                        d.origin, d.uri
                    ));
                }
            }
            let p0 = dests[0].priority;
            let rr_serial = p0 > 0 && dests.iter().all(|d| d.priority == p0);
            let w0 = super::weights::hrw_weight(&dests[0]);
            let hrw_equal = dests.iter().all(|d| super::weights::hrw_weight(d) == w0);
            let has_caps = dests
                .iter()
                .any(|d| d.attrs.maxcps > 0 || d.attrs.maxcalls > 0);
            let prev = previous.and_then(|p| p.set(id));
            sets.push(Set {
                id,
                rr: AtomicU32::new(prev.map_or(0, |s| s.rr.load(Relaxed))),
                wcursor: AtomicU64::new(prev.map_or(0, |s| s.wcursor.load(Relaxed))),
                rr_serial,
                hrw_equal,
                has_caps,
                dests,
            });
        }
        let mut t = Self {
            sets,
            index,
            by_addr: HashMap::default(),
            by_ip: HashSet::default(),
            ping_proxies: Vec::new(),
            default_ping_proxy: None,
            next_id,
        };
        t.index_addrs();
        Ok(t)
    }

    fn index_addrs(&mut self) {
        self.by_addr.clear();
        self.by_ip.clear();
        for (si, s) in self.sets.iter().enumerate() {
            for (di, d) in s.dests.iter().enumerate() {
                if let Some(a) = d.addr {
                    self.by_addr.entry(a).or_insert((si, di));
                    self.by_ip.insert(a.ip());
                }
            }
        }
    }

    /// Adds every address a destination's host resolves to (`all` does the resolving, at load
    /// time) to the addresses that count as that destination for trust and reply counting;
    /// the one it is sent to stays its first.
    pub fn add_resolved(&mut self, mut all: impl FnMut(&Target) -> Vec<SocketAddr>) {
        for (si, s) in self.sets.iter().enumerate() {
            for (di, d) in s.dests.iter().enumerate() {
                for a in all(&d.target) {
                    self.by_addr.entry(a).or_insert((si, di));
                    self.by_ip.insert(a.ip());
                }
            }
        }
    }

    /// Sets each destination's keepalive proxy: `proxy` resolves the URI (its `obproxy`
    /// attribute, else `default`), at load time. Returns the destinations whose proxy did not
    /// resolve, with that proxy's URI.
    pub fn resolve_ping_proxies(
        &mut self,
        default: Option<&str>,
        mut proxy: impl FnMut(&str) -> Option<SocketAddr>,
    ) -> Vec<(&Destination, String)> {
        self.ping_proxies.clear();
        self.default_ping_proxy = default.map(str::to_owned);
        let mut unresolved = Vec::new();
        for s in &mut self.sets {
            for d in &mut s.dests {
                let Some(uri) = d.attrs.obproxy.as_deref().or(default) else {
                    continue;
                };
                d.ping_proxy = match proxy(uri) {
                    Some(a) => {
                        if !self.ping_proxies.contains(&a) {
                            self.ping_proxies.push(a);
                        }
                        PingProxy::Resolved(a)
                    }
                    None => {
                        unresolved.push((d.id, uri.to_owned()));
                        PingProxy::Unresolved
                    }
                };
            }
        }
        let this = &*self;
        unresolved
            .into_iter()
            .filter_map(|(id, uri)| Some((this.dest(id)?, uri)))
            .collect()
    }

    /// The default keepalive proxy [`Self::resolve_ping_proxies`] was given.
    pub fn default_ping_proxy(&self) -> Option<&str> {
        self.default_ping_proxy.as_deref()
    }

    /// Whether `addr` (or, without `match_port`, its IP) is some destination's keepalive proxy.
    pub fn is_ping_proxy(&self, addr: SocketAddr, match_port: bool) -> bool {
        self.ping_proxies
            .iter()
            .any(|p| p.ip() == addr.ip() && (!match_port || p.port() == addr.port()))
    }

    /// Whether some destination resolved to `ip`.
    pub fn has_ip(&self, ip: IpAddr) -> bool {
        self.by_ip.contains(&ip)
    }

    /// The destination at `addr` (the first, if several records share it).
    pub fn dest_at(&self, addr: SocketAddr) -> Option<&Destination> {
        self.dest_in(self.place_of(addr)?)
    }

    /// Where [`Table::dest_at`] finds the destination at `addr`: (set, destination) positions,
    /// valid for this table only. For callers that remember the answer per source.
    pub fn place_of(&self, addr: SocketAddr) -> Option<(usize, usize)> {
        self.by_addr.get(&addr).copied()
    }

    /// The destination at a place [`Table::place_of`] gave.
    pub fn dest_in(&self, (s, d): (usize, usize)) -> Option<&Destination> {
        self.sets.get(s)?.dests.get(d)
    }

    pub fn set(&self, id: u32) -> Option<&Set> {
        self.sets
            .binary_search_by_key(&id, |s| s.id)
            .ok()
            .map(|i| &self.sets[i])
    }

    pub fn dest(&self, id: DestId) -> Option<&Destination> {
        let &(s, d) = self.index.get(&id)?;
        self.sets.get(s)?.dests.get(d)
    }

    pub fn destinations(&self) -> impl Iterator<Item = &Destination> {
        self.sets.iter().flat_map(|s| s.dests.iter())
    }

    /// Resolves host names (I/O happens in `f`, at load time, never per message).
    pub fn resolve_with(&mut self, mut f: impl FnMut(&Target) -> Option<SocketAddr>) {
        for s in &mut self.sets {
            for d in &mut s.dests {
                if d.addr.is_none() {
                    d.addr = f(&d.target);
                }
            }
        }
        self.index_addrs();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::list::parse;

    #[test]
    fn priority_order_and_carry_over() {
        let t1 = Table::build(
            parse(
                "1 sip:a:5060 0 1\n1 sip:b:5060 0 5\n1 sip:c:5060 0 1\n2 sip:d 1\n",
                "l",
            )
            .unwrap(),
            None,
        )
        .unwrap();
        let uris: Vec<&str> = t1
            .set(1)
            .unwrap()
            .dests
            .iter()
            .map(|d| d.uri.as_str())
            .collect();
        assert_eq!(uris, ["sip:b:5060", "sip:a:5060", "sip:c:5060"]);
        assert!(!t1.set(2).unwrap().dests[0].state.is_usable());
        let a = t1.set(1).unwrap().dests[1].id;
        t1.dest(a).unwrap().state.inc_load();
        t1.set(1).unwrap().rr.store(7, Relaxed);
        // Reload: `a` survives with its id and load, `e` is new, `c` is gone.
        let t2 = Table::build(
            parse("1 sip:a:5060 0 1\n1 sip:e:5060\n", "l").unwrap(),
            Some(&t1),
        )
        .unwrap();
        let a2 = t2
            .set(1)
            .unwrap()
            .dests
            .iter()
            .find(|d| d.uri == "sip:a:5060")
            .unwrap();
        assert_eq!(a2.id, a);
        assert_eq!(a2.state.load(), 1);
        let e = t2
            .set(1)
            .unwrap()
            .dests
            .iter()
            .find(|d| d.uri == "sip:e:5060")
            .unwrap();
        assert!(e.id.0 > 4, "fresh ids never reuse old ones");
        assert_eq!(t2.set(1).unwrap().rr.load(Relaxed), 7);
        assert!(t2.set(2).is_none());
    }

    #[test]
    fn rr_serial_flag_and_addresses() {
        let t = Table::build(
            parse(
                "1 sip:10.0.0.1 0 5\n1 sip:10.0.0.2:5070 0 5\n2 sip:x 0 0\n2 sip:y 0 0\n",
                "l",
            )
            .unwrap(),
            None,
        )
        .unwrap();
        assert!(t.set(1).unwrap().rr_serial);
        assert!(!t.set(2).unwrap().rr_serial);
        assert_eq!(
            t.set(1).unwrap().dests[1].addr,
            Some("10.0.0.2:5070".parse().unwrap())
        );
        assert_eq!(t.set(2).unwrap().dests[0].addr, None);
    }
}
