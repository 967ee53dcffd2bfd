//! The SIP socket (`-i`/`-p` bound as SIPp binds them, `-buff_size`), the remote host
//! resolved as SIPp reads it, and the batched send path with its `-trace_msg` log.

use std::fs::File;
use std::io::{ErrorKind, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::SystemTime;

use sipdispatch::io::sys;

use super::args::Options;
use super::engine::Net;
use super::gso::GsoTx;
use super::stats;
use super::{Fatal, start_err};

pub fn resolve(host: &str) -> Result<SocketAddr, Fatal> {
    let with_port = if host.rsplit_once(':').is_some_and(|(h, p)| {
        p.chars().all(|c| c.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']'))
    }) {
        host.to_owned()
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:5060")
    } else {
        format!("{host}:5060")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| start_err(format!("cannot resolve remote host `{host}`")))
}

/// Sends queue into a `sendmmsg` batch with UDP GSO ([`GsoTx`]), flushed once per loop turn.
pub struct UdpNet {
    pub tx: GsoTx,
    pub log: Option<File>,
    /// One `-trace_msg` entry, written with a single `write` so that workers appending to
    /// the same file do not interleave.
    pub entry: Vec<u8>,
}

impl UdpNet {
    fn log_entry(&mut self, what: std::fmt::Arguments<'_>, data: &[u8]) {
        let Some(f) = self.log.as_mut() else {
            return;
        };
        self.entry.clear();
        let _ = writeln!(
            self.entry,
            "----------------------------------------------- {}",
            stats::log_time(SystemTime::now())
        );
        let _ = self.entry.write_fmt(what);
        self.entry.extend_from_slice(b"\n\n");
        self.entry
            .extend_from_slice(String::from_utf8_lossy(data).as_bytes());
        self.entry.push(b'\n');
        let _ = f.write_all(&self.entry);
    }

    /// `-trace_msg`: a received message, in SIPp's layout.
    pub fn log_received(&mut self, data: &[u8]) {
        if self.log.is_some() {
            self.log_entry(
                format_args!("UDP message received [{}] bytes :", data.len()),
                data,
            );
        }
    }
}

impl Net for UdpNet {
    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        self.tx.send(to, data);
        if self.log.is_some() {
            self.log_entry(
                format_args!("UDP message sent ({} bytes):", data.len()),
                data,
            );
        }
    }
}

/// The SIP socket: `-i`/`-p` as SIPp binds them (5060…5119 tried first without `-p`).
/// Returns the socket and the IP for `[local_ip]`: as SIPp 3.6.1 does, the socket is bound to
/// that IP with `-i` or `-bind_local`, else to every address.
pub fn bind(o: &Options, remote: Option<SocketAddr>) -> Result<(UdpSocket, IpAddr), Fatal> {
    let ip: IpAddr = match (&o.local_ip, remote) {
        (Some(i), _) => i
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| start_err(format!("-i {i} is not an IP address")))?,
        (None, Some(r)) => UdpSocket::bind(if r.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
            .and_then(|s| s.connect(r).and_then(|_| s.local_addr()))
            .map(|a| a.ip())
            .unwrap_or_else(|_| "127.0.0.1".parse().expect("literal")),
        (None, None) => "127.0.0.1".parse().expect("literal"),
    };
    let ports: Vec<u16> = match o.local_port {
        Some(p) => vec![p],
        None => (5060..5120).chain([0]).collect(),
    };
    let bind_ip = match (o.local_ip.is_some() || o.bind_local, ip) {
        (true, ip) => ip,
        (false, IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (false, IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let mut last = None;
    for p in ports {
        match new_socket(SocketAddr::new(bind_ip, p), o.buff_size, o.rcvbuf) {
            Ok(s) => return Ok((s, ip)),
            Err(e) => last = Some(e),
        }
    }
    let e = last.expect("at least one port tried");
    if e.kind() == ErrorKind::AddrInUse {
        Err(Fatal(254, format!("cannot bind {ip}: {e}")))
    } else {
        Err(start_err(format!("cannot bind {ip}: {e}")))
    }
}

/// A further worker's socket at exactly `addr`.
pub fn bind_exact(addr: SocketAddr, sndbuf: usize, rcvbuf: usize) -> Result<UdpSocket, Fatal> {
    new_socket(addr, sndbuf, rcvbuf).map_err(|e| {
        if e.kind() == ErrorKind::AddrInUse {
            Fatal(254, format!("cannot bind {addr}: {e}"))
        } else {
            start_err(format!("cannot bind {addr}: {e}"))
        }
    })
}

fn new_socket(addr: SocketAddr, sndbuf: usize, rcvbuf: usize) -> std::io::Result<UdpSocket> {
    Ok(sys::udp_socket(addr, Some(rcvbuf), Some(sndbuf))?.into())
}
