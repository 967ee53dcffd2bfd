//! Who may send through sipdispatch: per listen address, the upstream networks allowed to send
//! initial requests, and the rule that in-dialog requests and responses come only from those
//! upstreams or from a configured destination (any resolved address of one, with or without
//! its port, as Kamailio's `ds_is_from_list` modes allow). Everything else is refused: dropped
//! silently or answered 403, as configured. Pure code over addresses and the destination table.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::dispatch::Table;

/// One network, `10.0.0.0/8`, `2001:db8::/32`, or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}`: not an address or network (e.g. 10.0.0.0/8)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
        };
        Ok(Self { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_canonical(canonical(ip))
    }

    /// [`Cidr::contains`] for an address already made [`canonical`].
    #[inline]
    fn contains_canonical(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            // In 32 bits, not widened to 128: this runs for every datagram.
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let shift = 32 - u32::from(self.prefix);
                u32::from(n).checked_shr(shift) == u32::from(a).checked_shr(shift)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(u128::from(n), u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn masked(n: u128, a: u128, prefix: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix);
    shift >= bits || (n >> shift) == (a >> shift)
}

/// An IPv4-mapped IPv6 address (from a dual-stack socket) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What a refused datagram gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Refusal {
    /// Nothing: the sender learns nothing (the default; no reflection towards spoofed sources).
    #[default]
    Drop,
    /// A 403 to requests (never to ACKs or responses).
    Forbidden,
}

/// The `[trust]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// Networks that may send initial requests, on every listen address.
    pub upstreams: Vec<String>,
    /// Per listen address (`"192.0.2.1:5060"`), networks that replace `upstreams` there.
    pub listen: HashMap<String, Vec<String>>,
    /// Match destinations by address and port, not by address only.
    pub match_port: bool,
    pub refuse: Refusal,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            upstreams: vec!["127.0.0.0/8".into(), "::1/128".into()],
            listen: HashMap::new(),
            match_port: false,
            refuse: Refusal::Drop,
        }
    }
}

/// Where a datagram comes from, as far as trust goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Upstream,
    Destination,
    /// A keepalive proxy (`obproxy`): only its responses are let in.
    PingProxy,
    Unknown,
}

/// The resolved trust rules.
#[derive(Clone, Debug)]
pub struct Trust {
    /// Allowed upstream networks, by listen socket index.
    per_socket: Vec<Vec<Cidr>>,
    match_port: bool,
    pub refuse: Refusal,
}

impl TrustConfig {
    /// The rules for `listen` (in the config's order); on error, the key at fault and why.
    pub fn resolve(&self, listen: &[SocketAddr]) -> Result<Trust, (&'static str, String)> {
        let parse = |nets: &[String]| {
            nets.iter()
                .map(|n| Cidr::parse(n))
                .collect::<Result<Vec<_>, _>>()
        };
        let all =
            parse(&self.upstreams).map_err(|e| ("upstreams", format!("trust.upstreams: {e}")))?;
        let mut per_socket = vec![all; listen.len()];
        for (addr, nets) in &self.listen {
            let a: SocketAddr = addr
                .parse()
                .map_err(|_| ("listen", format!("trust.listen: `{addr}` is not host:port")))?;
            let i = listen.iter().position(|&l| l == a).ok_or_else(|| {
                (
                    "listen",
                    format!("trust.listen: {a} is not one of listen.udp"),
                )
            })?;
            per_socket[i] =
                parse(nets).map_err(|e| ("listen", format!("trust.listen.\"{addr}\": {e}")))?;
        }
        Ok(Trust {
            per_socket,
            match_port: self.match_port,
            refuse: self.refuse,
        })
    }
}

impl Trust {
    /// Who sent a datagram that arrived on listen socket `sock` from `src`.
    pub fn source(&self, sock: usize, src: SocketAddr, table: &Table) -> Source {
        let ip = canonical(src.ip());
        if self
            .per_socket
            .get(sock)
            .is_some_and(|nets| nets.iter().any(|n| n.contains_canonical(ip)))
        {
            return Source::Upstream;
        }
        let known = if self.match_port {
            table.dest_at(SocketAddr::new(ip, src.port())).is_some()
        } else {
            table.has_ip(ip)
        };
        if known {
            Source::Destination
        } else if table.is_ping_proxy(src, self.match_port) {
            Source::PingProxy
        } else {
            Source::Unknown
        }
    }

    /// The networks allowed on socket `sock`, for the start-up log.
    pub fn describe(&self, sock: usize) -> String {
        self.per_socket
            .get(sock)
            .map(|n| {
                n.iter()
                    .map(|c| format!("{}/{}", c.net, c.prefix))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::list;

    #[test]
    fn networks() {
        let n = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()), "v4-mapped");
        let one = Cidr::parse("192.0.2.1").unwrap();
        assert!(one.contains("192.0.2.1".parse().unwrap()));
        assert!(!one.contains("192.0.2.2".parse().unwrap()));
        let h = Cidr::parse("2001:db8::1").unwrap();
        assert!(h.contains("2001:db8::1".parse().unwrap()));
        assert!(!h.contains("2001:db8::2".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("192.0.2.1".parse().unwrap())
        );
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten").is_err());
    }

    #[test]
    fn sources_by_socket_and_destination() {
        let listen: Vec<SocketAddr> = vec![
            "127.0.0.1:5060".parse().unwrap(),
            "[::1]:5060".parse().unwrap(),
        ];
        let mut cfg = TrustConfig {
            upstreams: vec!["192.0.2.0/24".into()],
            ..TrustConfig::default()
        };
        cfg.listen
            .insert("[::1]:5060".into(), vec!["2001:db8::/32".into()]);
        let t = cfg.resolve(&listen).unwrap();
        let table_of = |text: &str| Table::build(list::parse(text, "l").unwrap(), None).unwrap();
        let table = table_of("1 sip:198.51.100.7:5070\n");
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(t.source(0, at("192.0.2.9:5060"), &table), Source::Upstream);
        assert_eq!(
            t.source(1, at("192.0.2.9:5060"), &table),
            Source::Unknown,
            "not on that socket"
        );
        assert_eq!(
            t.source(1, at("[2001:db8::5]:5060"), &table),
            Source::Upstream
        );
        assert_eq!(
            t.source(0, at("198.51.100.7:9999"), &table),
            Source::Destination,
            "any port"
        );
        assert_eq!(t.source(0, at("203.0.113.1:5060"), &table), Source::Unknown);
        let strict = TrustConfig {
            match_port: true,
            ..cfg.clone()
        }
        .resolve(&listen)
        .unwrap();
        assert_eq!(
            strict.source(0, at("198.51.100.7:9999"), &table),
            Source::Unknown
        );
        assert_eq!(
            strict.source(0, at("198.51.100.7:5070"), &table),
            Source::Destination
        );
        // Every address a destination's host resolves to counts, not only the first.
        let mut named = table_of("1 sip:media.example:5070\n");
        named.resolve_with(|_| Some(at("198.51.100.20:5070")));
        named.add_resolved(|_| vec![at("198.51.100.20:5070"), at("198.51.100.21:5070")]);
        assert_eq!(
            t.source(0, at("198.51.100.21:5070"), &named),
            Source::Destination
        );
        assert_eq!(
            strict.source(0, at("198.51.100.21:5070"), &named),
            Source::Destination
        );
        assert_eq!(
            t.source(0, at("198.51.100.22:5070"), &named),
            Source::Unknown
        );
        // A keepalive proxy is its own kind of source: the shard lets in only its responses.
        let mut proxied = table_of("1 sip:198.51.100.7:5070 0 0 obproxy=sip:198.51.100.9\n");
        proxied.resolve_ping_proxies(None, |_| Some(at("198.51.100.9:5060")));
        assert_eq!(
            strict.source(0, at("198.51.100.9:5060"), &proxied),
            Source::PingProxy
        );
        assert_eq!(
            strict.source(0, at("198.51.100.9:5061"), &proxied),
            Source::Unknown
        );
        let mut bad = TrustConfig::default();
        bad.listen.insert("10.0.0.1:5060".into(), vec![]);
        assert_eq!(bad.resolve(&listen).unwrap_err().0, "listen");
    }
}
