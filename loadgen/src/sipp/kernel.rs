//! Datagrams the kernel dropped, so a load generator's own losses are not mistaken for the
//! peer's: the drop counter of each of sipload's sockets (`/proc/net/udp`, `/proc/net/udp6`,
//! found by the socket's inode) and the
//! host-wide `RcvbufErrors` (`/proc/net/snmp`, `/proc/net/snmp6`).

use std::net::SocketAddr;
use std::os::fd::RawFd;

/// `Udp: RcvbufErrors` plus `Udp6RcvbufErrors`, host-wide; `None` off Linux.
pub fn rcvbuf_errors() -> Option<u64> {
    let v4 = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut total = snmp_field(&v4, "Udp:", "RcvbufErrors")?;
    if let Ok(v6) = std::fs::read_to_string("/proc/net/snmp6") {
        total += v6
            .lines()
            .find_map(|l| l.strip_prefix("Udp6RcvbufErrors"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// A field of `/proc/net/snmp`, where a header line of names precedes a line of values.
fn snmp_field(text: &str, proto: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(proto));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// The kernel's drop counter of UDP socket `fd` (bound to `local`), found by its inode;
/// `None` if not found.
pub fn socket_drops(fd: RawFd, local: SocketAddr) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let inode = link
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .to_owned();
    let file = if local.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    find_drops(&std::fs::read_to_string(file).ok()?, &inode)
}

/// The `drops` column (the last) of the line whose `inode` column (the tenth) is `inode`.
fn find_drops(text: &str, inode: &str) -> Option<u64> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(9) == Some(&inode))
            .then(|| f.last()?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_formats_parse() {
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 0 7 12 5 0\n";
        assert_eq!(snmp_field(snmp, "Udp:", "RcvbufErrors"), Some(5));
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n  12: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n";
        assert_eq!(find_drops(udp, "4242"), Some(17));
        assert_eq!(find_drops(udp, "4243"), None);
    }

    #[test]
    fn this_host_reports() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
        assert_eq!(socket_drops(fd, s.local_addr().unwrap()), Some(0));
        assert!(rcvbuf_errors().is_some());
    }
}
