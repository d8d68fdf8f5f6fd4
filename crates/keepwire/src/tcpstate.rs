//! The kernel's TCP table: which sockets exist on a port and in which state.
//!
//! Linux lists every TCP socket in `/proc/net/tcp` and `/proc/net/tcp6`, one line each:
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue:rx_queue ...
//!    0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 ...
//! ```
//!
//! Addresses are hex of the raw network-order words as the host prints them; `st` is the state
//! number (`include/net/tcp_states.h`). This is where short connections show their cost: every
//! closed connection leaves a `TIME_WAIT` socket on the side that closed first for 2×MSL
//! (RFC 9293 §3.6; 60 s on Linux), and a peer that never closes its side leaves `CLOSE_WAIT`.
//!
//! Reading the file directly takes a dozen lines; the `procfs` crate would bring a large tree
//! of dependencies for the same.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A TCP state, named as the kernel names it (RFC 9293 §3.3.2 spelling with underscores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TcpState {
    /// `ESTABLISHED`
    Established,
    /// `SYN_SENT`
    SynSent,
    /// `SYN_RECV`
    SynRecv,
    /// `FIN_WAIT1`
    FinWait1,
    /// `FIN_WAIT2`
    FinWait2,
    /// `TIME_WAIT`
    TimeWait,
    /// `CLOSE`
    Close,
    /// `CLOSE_WAIT`
    CloseWait,
    /// `LAST_ACK`
    LastAck,
    /// `LISTEN`
    Listen,
    /// `CLOSING`
    Closing,
    /// `NEW_SYN_RECV`
    NewSynRecv,
}

impl TcpState {
    /// From the kernel's state number.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => TcpState::Established,
            0x02 => TcpState::SynSent,
            0x03 => TcpState::SynRecv,
            0x04 => TcpState::FinWait1,
            0x05 => TcpState::FinWait2,
            0x06 => TcpState::TimeWait,
            0x07 => TcpState::Close,
            0x08 => TcpState::CloseWait,
            0x09 => TcpState::LastAck,
            0x0a => TcpState::Listen,
            0x0b => TcpState::Closing,
            0x0c => TcpState::NewSynRecv,
            _ => return None,
        })
    }

    /// The kernel's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One socket of the kernel's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEntry {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port (`0.0.0.0:0` for listeners).
    pub remote: SocketAddr,
    /// The state.
    pub state: TcpState,
}

fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parses the text of `/proc/net/tcp` or `/proc/net/tcp6`; lines that do not parse (the
/// header) are skipped.
pub fn parse_table(text: &str) -> Vec<TcpEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let _sl = f.next()?;
            let local = parse_addr(f.next()?)?;
            let remote = parse_addr(f.next()?)?;
            let state = TcpState::from_code(u8::from_str_radix(f.next()?, 16).ok()?)?;
            Some(TcpEntry {
                local,
                remote,
                state,
            })
        })
        .collect()
}

/// Every TCP socket of this network namespace, IPv4 and IPv6.
///
/// # Errors
/// `/proc/net/tcp` cannot be read (not Linux, or no procfs). A missing `tcp6` (IPv6 disabled)
/// is not an error.
pub fn sockets() -> io::Result<Vec<TcpEntry>> {
    let mut all = parse_table(&std::fs::read_to_string("/proc/net/tcp")?);
    if let Ok(v6) = std::fs::read_to_string("/proc/net/tcp6") {
        all.extend(parse_table(&v6));
    }
    Ok(all)
}

/// Counts of each state among the sockets on `port`, split by side: `local` counts sockets
/// whose local port is `port` (the server side of a server on that port), `remote` those whose
/// remote port is (the clients' side).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortStates {
    /// Sockets whose local port is the port.
    pub local: BTreeMap<TcpState, usize>,
    /// Sockets whose remote port is the port.
    pub remote: BTreeMap<TcpState, usize>,
}

impl PortStates {
    /// Both sides added up.
    pub fn total(&self) -> BTreeMap<TcpState, usize> {
        let mut t = self.local.clone();
        for (s, n) in &self.remote {
            *t.entry(*s).or_default() += n;
        }
        t
    }

    /// Sockets in `state` on the local (server) side.
    pub fn local_count(&self, state: TcpState) -> usize {
        self.local.get(&state).copied().unwrap_or(0)
    }

    /// Sockets in `state` on the remote (client) side.
    pub fn remote_count(&self, state: TcpState) -> usize {
        self.remote.get(&state).copied().unwrap_or(0)
    }
}

/// Counts states among `entries` for `port`.
pub fn port_states(entries: &[TcpEntry], port: u16) -> PortStates {
    let mut ps = PortStates::default();
    for e in entries {
        if e.local.port() == port {
            *ps.local.entry(e.state).or_default() += 1;
        }
        if e.remote.port() == port {
            *ps.remote.entry(e.state).or_default() += 1;
        }
    }
    ps
}

/// [`port_states`] of the live table.
///
/// # Errors
/// As [`sockets`].
pub fn port_states_now(port: u16) -> io::Result<PortStates> {
    Ok(port_states(&sockets()?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_lines() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:D431 06 00000000:00000000 03:00000F9F 00000000     0        0 0 3 0000000000000000\n";
        let e = parse_table(text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(e[0].state, TcpState::Listen);
        assert_eq!(e[1].remote, "127.0.0.1:54321".parse().unwrap());
        assert_eq!(e[1].state.to_string(), "TIME_WAIT");
        let v6 = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0";
        let e = parse_table(v6);
        assert_eq!(e[0].local, "[::1]:8080".parse().unwrap());
    }

    #[test]
    fn sees_a_real_listener_and_connection() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_s, _) = l.accept().unwrap();
        let (srv, cli) = (l.local_addr().unwrap(), c.local_addr().unwrap());
        // Other tests and processes may have sockets on the same port numbers: look for
        // exactly ours.
        let all = sockets().unwrap();
        let state_of = |local, remote| {
            all.iter()
                .find(|e| e.local == local && e.remote == remote)
                .map(|e| e.state)
        };
        assert_eq!(
            state_of(srv, "0.0.0.0:0".parse().unwrap()),
            Some(TcpState::Listen)
        );
        assert_eq!(state_of(srv, cli), Some(TcpState::Established));
        assert_eq!(state_of(cli, srv), Some(TcpState::Established));
        let ps = port_states_now(port).unwrap();
        assert!(ps.local_count(TcpState::Established) >= 1, "{ps:?}");
        assert!(ps.remote_count(TcpState::Established) >= 1, "{ps:?}");
    }
}
