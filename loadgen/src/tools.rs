//! The benchmark tools: `blast`, `sink` and `relay`. Each runs one pinned thread over
//! batched system calls and prints what it did and the CPU time it took.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::Common;
use crate::message::Template;
use crate::net::{RecvBatch, SendBatch, cpu_time, pin, socket, udp_rcvbuf_errors, wait_readable};

fn report(common: &Common, what: &str, count: u64, secs: f64, cpu: Duration, extra: &str) {
    let rate = count as f64 / secs.max(1e-9);
    let cpu_us = cpu.as_secs_f64() * 1e6 / (count.max(1) as f64);
    if common.json {
        println!(
            "{{\"tool\":\"{what}\",\"count\":{count},\"seconds\":{secs:.3},\"rate\":{rate:.0},\"cpu_seconds\":{:.3},\"cpu_us_per_msg\":{cpu_us:.3}{extra}}}",
            cpu.as_secs_f64()
        );
    } else {
        println!(
            "{what}: {count} datagrams in {secs:.2} s = {rate:.0}/s, CPU {:.2} s = {cpu_us:.2} µs/datagram{}",
            cpu.as_secs_f64(),
            extra.replace(",\"", " ").replace("\":", "=")
        );
    }
}

/// Sends unique INVITEs to `target` at `rate` per second (0 = as fast as possible).
pub fn blast(
    target: SocketAddr,
    local: SocketAddr,
    rate: u64,
    count: u64,
    pad: usize,
    common: &Common,
    stop: &AtomicBool,
) -> Result<(), String> {
    pin(common.cpu);
    let sock = socket(local, common.buf).map_err(|e| format!("bind {local}: {e}"))?;
    let local = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(local);
    let t = Template::invite(local, target, pad);
    let mut batch = SendBatch::new(common.batch.max(1), &t.bytes, target);
    let start = Instant::now();
    let cpu0 = cpu_time();
    let deadline = start + Duration::from_secs_f64(common.duration);
    let (mut sent, mut n) = (0u64, 0u64);
    while n < count && !stop.load(Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let mut k = (common.batch as u64).min(count - n);
        if rate > 0 {
            // Token bucket: send what the rate allows by now, sleep otherwise.
            let due = (now.duration_since(start).as_secs_f64() * rate as f64) as u64;
            k = k.min(due.saturating_sub(n));
            if k == 0 {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        for i in 0..k as usize {
            t.patch(&mut batch.bufs[i], n + i as u64);
        }
        sent += batch.send(&sock, k as usize) as u64;
        n += k;
    }
    let secs = start.elapsed().as_secs_f64();
    report(
        common,
        "blast",
        sent,
        secs,
        cpu_time() - cpu0,
        &format!(",\"bytes\":{}", t.bytes.len()),
    );
    Ok(())
}

/// Counts what arrives on `listen`.
pub fn sink(
    listen: SocketAddr,
    expect: u64,
    idle: f64,
    common: &Common,
    stop: &AtomicBool,
) -> Result<(), String> {
    pin(common.cpu);
    let sock = socket(listen, common.buf).map_err(|e| format!("bind {listen}: {e}"))?;
    let mut rx = RecvBatch::new(common.batch.max(1), 65_536);
    let drops0 = udp_rcvbuf_errors().unwrap_or(0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(common.duration);
    let idle = Duration::from_secs_f64(idle);
    let (mut total, mut bytes, mut this_sec) = (0u64, 0u64, 0u64);
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    let mut next_report = start + Duration::from_secs(1);
    while total < expect && !stop.load(Relaxed) {
        let now = Instant::now();
        if now >= deadline || first.is_some() && now.duration_since(last) > idle {
            break;
        }
        if now >= next_report {
            if !common.json {
                eprintln!("sink: {this_sec}/s");
            }
            this_sec = 0;
            next_report += Duration::from_secs(1);
        }
        let n = rx.recv(sock.as_raw_fd()).map_err(|e| e.to_string())?;
        if n == 0 {
            wait_readable(&sock, 20);
            continue;
        }
        for i in 0..n {
            bytes += rx.get(i).1.len() as u64;
        }
        total += n as u64;
        this_sec += n as u64;
        last = Instant::now();
        first.get_or_insert(last);
    }
    let active = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    let drops = udp_rcvbuf_errors().unwrap_or(0).saturating_sub(drops0);
    let extra = format!(",\"bytes\":{bytes},\"rcvbuf_errors\":{drops}");
    report(common, "sink", total, active, Duration::ZERO, &extra);
    Ok(())
}

/// Forwards every datagram from `listen` to `to` unparsed: the ceiling of a forwarder here.
pub fn relay(
    listen: SocketAddr,
    to: SocketAddr,
    common: &Common,
    stop: &AtomicBool,
) -> Result<(), String> {
    pin(common.cpu);
    let sock = socket(listen, common.buf).map_err(|e| format!("bind {listen}: {e}"))?;
    let n = common.batch.max(1);
    let mut rx = RecvBatch::new(n, 65_536);
    let mut tx = SendBatch::new(n, &[0u8; 65_536], to);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(common.duration);
    let (cpu0, mut fwd) = (cpu_time(), 0u64);
    let mut first = None::<(Instant, Duration)>;
    let mut last = Instant::now();
    while !stop.load(Relaxed) && Instant::now() < deadline {
        let k = rx.recv(sock.as_raw_fd()).map_err(|e| e.to_string())?;
        if k == 0 {
            if first.is_some() && last.elapsed() > Duration::from_secs(2) {
                break;
            }
            wait_readable(&sock, 20);
            continue;
        }
        first.get_or_insert_with(|| (Instant::now(), cpu_time()));
        for i in 0..k {
            let d = rx.get(i).1;
            tx.bufs[i].truncate(0);
            tx.bufs[i].extend_from_slice(d);
        }
        fwd += tx.send(&sock, k) as u64;
        last = Instant::now();
    }
    let (t0, c0) = first.unwrap_or((start, cpu0));
    report(
        common,
        "relay",
        fwd,
        last.duration_since(t0).as_secs_f64(),
        cpu_time() - c0,
        "",
    );
    Ok(())
}
