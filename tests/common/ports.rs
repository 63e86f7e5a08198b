//! Free loopback ports for the servers tests start (Pebble's ports, PostgreSQL, listeners
//! named in configurations), handed out once per test process and taken from below the
//! kernel's ephemeral range, so a port one test chose cannot be given by the kernel to
//! another test's `bind(:0)` or outgoing connection before the first test's server binds it.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// A loopback port no other test of this process got from here, free (TCP and UDP) when
/// checked, and outside the kernel's ephemeral range where that range leaves room below it;
/// otherwise one the kernel picks.
pub fn free_port() -> u16 {
    static NEXT: Mutex<Option<u16>> = Mutex::new(None);
    let (low, high) = reserved_range();
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    // Start at a place that depends on the process, so two test processes on one machine
    // rarely walk the same ports.
    let mut port = next.unwrap_or(low + (std::process::id() % u32::from(high - low)) as u16);
    for _ in low..high {
        let candidate = port;
        port = if port + 1 >= high { low } else { port + 1 };
        if is_free(candidate) {
            *next = Some(port);
            return candidate;
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0")
}

/// The 10,000 ports below the kernel's ephemeral range (`ip_local_port_range`), or a
/// range the default ephemeral range (32768-60999) leaves alone.
fn reserved_range() -> (u16, u16) {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if start > 12_000 {
        (start - 10_000, start)
    } else {
        (61_000, 65_000)
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}
