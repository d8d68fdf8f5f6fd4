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
//!
//! # Per-socket timers
//!
//! The same line carries each socket's queues and its one pending timer
//! ([`TcpSocket::parse_line`], [`port_sockets_now`]), as `net/ipv4/tcp_ipv4.c`
//! (`get_tcp4_sock`, `get_timewait4_sock`) prints them:
//!
//! ```text
//!   st tx_queue:rx_queue tr:tm->when retrnsmt   uid  timeout inode
//!   01 00000005:00000000 01:0000002D 00000003     0        0 41234 ...
//!   |  |        |        |  |        |                     |
//!   |  |        |        |  |        |                     probes sent (decimal)
//!   |  |        |        |  |        retransmits of the head segment (hex)
//!   |  |        |        |  time left on the timer, in clock ticks (USER_HZ = 100/s, hex)
//!   |  |        |        timer: 0 none, 1 retransmit, 2 keepalive, 3 TIME_WAIT,
//!   |  |        |               4 zero-window probe
//!   |  |        bytes received, not yet read by the application (hex)
//!   |  bytes sent, not yet acknowledged (hex)
//!   state (include/net/tcp_states.h)
//! ```
//!
//! INPUT -> DECODED, one per timer:
//!
//! ```text
//! 00:00000000 00000000 ... 0   -> no timer
//! 01:0000002D 00000003 ... 0   -> retransmit in 450ms, 3 retransmits so far (a pulled cable,
//!                                 data unacknowledged)
//! 02:00000064 00000000 ... 2   -> keepalive in 1s, 2 probes unanswered (a silent peer)
//! 03:00001770 00000000 ... 0   -> TIME_WAIT, 60s left
//! 04:000000C8 00000000 ... 1   -> zero-window probe in 2s, 1 probe sent (a peer not reading)
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

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

/// The timer pending on a socket, as `/proc/net/tcp`'s `tr` field names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TcpTimer {
    /// `0`: no timer pending.
    None,
    /// `1`: the retransmission timer (also the tail-loss probe and reordering timers): sent
    /// data is unacknowledged.
    Retransmit,
    /// `2`: the keepalive timer (`SO_KEEPALIVE`; for some states the same kernel timer runs
    /// `FIN_WAIT2` and SYN-ACK timeouts).
    Keepalive,
    /// `3`: a `TIME_WAIT` socket's 2×MSL timer.
    TimeWait,
    /// `4`: the zero-window probe timer: the peer advertises no room to receive.
    ZeroWindowProbe,
}

impl TcpTimer {
    /// From the `tr` code; `None` (the Rust one) for a code the kernel does not print.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => TcpTimer::None,
            1 => TcpTimer::Retransmit,
            2 => TcpTimer::Keepalive,
            3 => TcpTimer::TimeWait,
            4 => TcpTimer::ZeroWindowProbe,
            _ => return None,
        })
    }

    /// A short name: `-`, `retransmit`, `keepalive`, `time_wait`, `zero_window_probe`.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpTimer::None => "-",
            TcpTimer::Retransmit => "retransmit",
            TcpTimer::Keepalive => "keepalive",
            TcpTimer::TimeWait => "time_wait",
            TcpTimer::ZeroWindowProbe => "zero_window_probe",
        }
    }
}

impl fmt::Display for TcpTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Clock ticks per second of `tm->when`: the kernel prints it with `jiffies_delta_to_clock_t`,
/// in `USER_HZ`, which is 100 on every architecture Linux runs on today except alpha.
pub const USER_HZ: u64 = 100;

/// One socket of the kernel's table with its queues and its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpSocket {
    /// Addresses and state.
    pub entry: TcpEntry,
    /// Bytes sent and not yet acknowledged (for a listener: 0).
    pub send_queue: u32,
    /// Bytes received and not yet read (for a listener: connections waiting in the backlog).
    pub recv_queue: u32,
    /// The pending timer.
    pub timer: TcpTimer,
    /// Time left before it fires (zero when no timer, or when it is already due).
    pub timer_left: Duration,
    /// Retransmissions of the unacknowledged head segment (`retrnsmt`).
    pub retransmits: u32,
    /// Keepalive or zero-window probes sent without an answer (the `timeout` column).
    pub probes: u32,
}

/// A `/proc/net/tcp` line that is not what the kernel prints.
///
/// `Display`: `/proc/net/tcp field tm->when: "zz" is not hex`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpLineError {
    /// The column, named as the file's header names it.
    pub field: &'static str,
    /// What was there (at most 40 bytes of it; empty when the line ended before it).
    pub found: String,
    /// What would be valid.
    pub expected: &'static str,
}

impl TcpLineError {
    fn new(field: &'static str, found: &str, expected: &'static str) -> Self {
        let found = match found.char_indices().nth(40) {
            Some((i, _)) => found.get(..i).unwrap_or_default(),
            None => found,
        };
        TcpLineError {
            field,
            found: found.to_string(),
            expected,
        }
    }

    /// The line ended before this field.
    pub fn is_truncated(&self) -> bool {
        self.found.is_empty()
    }
}

impl fmt::Display for TcpLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.found.is_empty() {
            write!(
                f,
                "/proc/net/tcp field {}: line ended, expected {}",
                self.field, self.expected
            )
        } else {
            write!(
                f,
                "/proc/net/tcp field {}: {:?} is not {}",
                self.field, self.found, self.expected
            )
        }
    }
}

impl std::error::Error for TcpLineError {}

fn field<'a>(
    it: &mut impl Iterator<Item = &'a str>,
    name: &'static str,
    expected: &'static str,
) -> Result<&'a str, TcpLineError> {
    it.next()
        .ok_or_else(|| TcpLineError::new(name, "", expected))
}

fn hex_pair(s: &str, name: &'static str) -> Result<(u32, u32), TcpLineError> {
    const EXPECTED: &str = "two hex numbers joined by ':'";
    let bad = || TcpLineError::new(name, s, EXPECTED);
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let a = u32::from_str_radix(a, 16).map_err(|_| bad())?;
    let b = u32::from_str_radix(b, 16).map_err(|_| bad())?;
    Ok((a, b))
}

impl TcpSocket {
    /// Parses one line of `/proc/net/tcp` or `/proc/net/tcp6` (not the header).
    ///
    /// ```
    /// use keepwire::tcpstate::{TcpSocket, TcpState, TcpTimer};
    /// let line = "   1: 0100007F:1F90 0100007F:D431 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000";
    /// let s = TcpSocket::parse_line(line).unwrap();
    /// assert_eq!(s.entry.state, TcpState::TimeWait);
    /// assert_eq!(s.timer, TcpTimer::TimeWait);
    /// assert_eq!(s.timer_left, std::time::Duration::from_secs(60));
    /// ```
    ///
    /// # Errors
    /// A missing or malformed field, named as the header names it.
    pub fn parse_line(line: &str) -> Result<TcpSocket, TcpLineError> {
        let mut f = line.split_whitespace();
        field(&mut f, "sl", "a slot number")?;
        let addr = |s: &str, name| {
            parse_addr(s).ok_or_else(|| TcpLineError::new(name, s, "HEXADDR:HEXPORT"))
        };
        let local = addr(
            field(&mut f, "local_address", "an address")?,
            "local_address",
        )?;
        let remote = addr(field(&mut f, "rem_address", "an address")?, "rem_address")?;
        let st = field(&mut f, "st", "a state")?;
        let state = u8::from_str_radix(st, 16)
            .ok()
            .and_then(TcpState::from_code)
            .ok_or_else(|| TcpLineError::new("st", st, "a state code 01..0C"))?;
        let q = field(&mut f, "tx_queue", "tx_queue:rx_queue")?;
        let (send_queue, recv_queue) = hex_pair(q, "tx_queue")?;
        let t = field(&mut f, "tr", "tr:tm->when")?;
        let (tr, when) = hex_pair(t, "tm->when")?;
        let timer = u8::try_from(tr)
            .ok()
            .and_then(TcpTimer::from_code)
            .ok_or_else(|| TcpLineError::new("tr", t, "a timer code 0..4"))?;
        let r = field(&mut f, "retrnsmt", "a hex count")?;
        let retransmits =
            u32::from_str_radix(r, 16).map_err(|_| TcpLineError::new("retrnsmt", r, "hex"))?;
        field(&mut f, "uid", "a user id")?;
        let p = field(&mut f, "timeout", "a decimal count")?;
        let probes = p
            .parse::<u32>()
            .map_err(|_| TcpLineError::new("timeout", p, "a decimal count"))?;
        let ticks = u64::from(when);
        let timer_left = Duration::from_secs(ticks / USER_HZ)
            + Duration::from_millis((ticks % USER_HZ) * (1000 / USER_HZ));
        Ok(TcpSocket {
            entry: TcpEntry {
                local,
                remote,
                state,
            },
            send_queue,
            recv_queue,
            timer,
            timer_left,
            retransmits,
            probes,
        })
    }
}

/// Every socket of `text` (a whole `/proc/net/tcp{,6}`), header and malformed lines skipped.
pub fn parse_sockets(text: &str) -> Vec<TcpSocket> {
    text.lines()
        .filter_map(|l| TcpSocket::parse_line(l).ok())
        .collect()
}

/// Every TCP socket of this network namespace with its queues and timer, IPv4 then IPv6.
///
/// # Errors
/// As [`sockets`].
pub fn sockets_detailed() -> io::Result<Vec<TcpSocket>> {
    let mut all = parse_sockets(&std::fs::read_to_string("/proc/net/tcp")?);
    if let Ok(v6) = std::fs::read_to_string("/proc/net/tcp6") {
        all.extend(parse_sockets(&v6));
    }
    Ok(all)
}

/// The sockets whose local or remote port is `port`, ordered by local then remote address.
///
/// ```
/// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let port = l.local_addr().unwrap().port();
/// let socks = keepwire::tcpstate::port_sockets_now(port).unwrap();
/// assert!(socks.iter().any(|s| s.entry.local == l.local_addr().unwrap()));
/// ```
///
/// # Errors
/// As [`sockets`].
pub fn port_sockets_now(port: u16) -> io::Result<Vec<TcpSocket>> {
    let mut v: Vec<TcpSocket> = sockets_detailed()?
        .into_iter()
        .filter(|s| s.entry.local.port() == port || s.entry.remote.port() == port)
        .collect();
    v.sort_by_key(|s| (s.entry.local, s.entry.remote));
    Ok(v)
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

    /// Lines captured on this project's CI VM (Linux 6.x) from loopback sockets: a listener
    /// with one connection in its backlog, an ESTABLISHED socket with 5 unread bytes and
    /// keepalive on (39.69 s left), a FIN_WAIT2 orphan on the TIME_WAIT timer, a CLOSE_WAIT,
    /// and IPv6 (a listener, 10 unread bytes, a keepalive at 7199.68 s: the 2 h default).
    const CAPTURED: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   1: 0100007F:E709 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 4796418 2 000000007a7559cc 100 0 0 10 0
   7: 0100007F:D876 0100007F:E709 01 00000000:00000005 02:00000F81 00000000     0        0 4796419 3 000000003d24f09c 20 4 30 10 -1
   3: 0100007F:E709 0100007F:D87E 05 00000000:00000000 03:00001752 00000000     0        0 0 3 0000000017e461f1
   6: 0100007F:E709 0100007F:D886 08 00000000:00000001 00:00000000 00000000     0        0 0 1 0000000059adfe5b 20 4 0 10 -1
   0: 00000000000000000000000001000000:A909 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4796424 1 00000000b0692b9d 100 0 0 10 0
   1: 00000000000000000000000001000000:A909 00000000000000000000000001000000:DB88 01 00000000:0000000A 00:00000000 00000000     0        0 4796426 1 000000002d632af8 20 4 30 10 -1
   2: 00000000000000000000000001000000:DB88 00000000000000000000000001000000:A909 01 00000000:00000000 02:000AFC60 00000000     0        0 4796425 2 000000008ad807d4 20 0 0 11 -1
";

    /// Timers that need a dead link, captured here behind a veth whose far end was set
    /// down: a socket retransmitting 5 unacknowledged bytes (4 retransmits, next in
    /// 1.39 s), and an idle one with keepalive 1s,1s,9 (3 probes unanswered). The last line,
    /// a zero-window probe, is written in `get_tcp4_sock`'s format rather than captured.
    const DEAD_LINK: &str = "  15: 01FB12C6:C366 02FB12C6:1B58 01 00000005:00000000 01:0000008B 00000004     0        0 4873892 2 0000000033e50d14 163 0 0 1 -1
  16: 01FB12C6:C376 02FB12C6:1B58 01 00000000:00000000 02:00000035 00000000     0        3 4873894 2 00000000820a17a4 20 0 0 10 -1
   4: 0100007F:D432 0100007F:1F90 01 0001F000:00000000 04:000000C8 00000000     0        1 41004 2 0000000000000000 200 40 0 10 -1
";

    #[test]
    fn parses_captured_timers_and_queues() {
        let s = parse_sockets(CAPTURED);
        assert_eq!(s.len(), 7);
        assert_eq!(
            (s[0].entry.state, s[0].timer, s[0].recv_queue),
            (TcpState::Listen, TcpTimer::None, 1)
        );
        assert_eq!(s[1].entry.local, "127.0.0.1:55414".parse().unwrap());
        assert_eq!((s[1].timer, s[1].recv_queue), (TcpTimer::Keepalive, 5));
        assert_eq!(s[1].timer_left, Duration::from_millis(39_690));
        assert_eq!(
            (s[2].entry.state, s[2].timer),
            (TcpState::FinWait2, TcpTimer::TimeWait)
        );
        assert_eq!(s[2].timer_left, Duration::from_millis(59_700));
        assert_eq!(
            (s[3].entry.state, s[3].timer),
            (TcpState::CloseWait, TcpTimer::None)
        );
        assert_eq!(s[4].entry.local, "[::1]:43273".parse().unwrap());
        assert_eq!(s[5].entry.remote, "[::1]:56200".parse().unwrap());
        assert_eq!(s[5].recv_queue, 10);
        assert_eq!(s[6].timer, TcpTimer::Keepalive);
        assert_eq!(s[6].timer_left, Duration::from_millis(7_199_680));
        let d = parse_sockets(DEAD_LINK);
        assert_eq!(d[0].entry.remote, "198.18.251.2:7000".parse().unwrap());
        assert_eq!(
            (d[0].timer, d[0].retransmits, d[0].send_queue),
            (TcpTimer::Retransmit, 4, 5)
        );
        assert_eq!(d[0].timer_left, Duration::from_millis(1390));
        assert_eq!((d[1].timer, d[1].probes), (TcpTimer::Keepalive, 3));
        assert_eq!(d[1].timer_left, Duration::from_millis(530));
        assert_eq!((d[2].timer, d[2].probes), (TcpTimer::ZeroWindowProbe, 1));
        assert_eq!(d[2].timer_left, Duration::from_secs(2));
    }

    #[test]
    fn malformed_lines_name_their_field() {
        let good = "   1: 010012C6:9C40 020012C6:1B58 01 00000005:00000000 01:0000002D 00000003     0        0 41002";
        assert!(TcpSocket::parse_line(good).is_ok());
        let cases = [
            (
                "   1: 010012C6:9C40 020012C6:1B58 01 00000005:00000000 09:0000002D 00000003 0 0",
                "tr",
            ),
            (
                "   1: 010012C6:9C40 020012C6:1B58 01 00000005:00000000 01:zz 00000003 0 0",
                "tm->when",
            ),
            (
                "   1: 010012C6:9C40 020012C6:1B58 01 00000005 01:0000002D 00000003 0 0",
                "tx_queue",
            ),
            (
                "   1: 010012C6:9C40 020012C6:1B58 FF 00000005:00000000 01:0000002D 0 0 0",
                "st",
            ),
            (
                "   1: 010012C6:9C40 020012C6:1B58 01 00000005:00000000 01:0000002D 0 0 -1",
                "timeout",
            ),
            (
                "   1: 010012C6:9C40 020012C6:1B58 01 00000005:00000000 01:0000002D",
                "retrnsmt",
            ),
            ("   1: 0100:9C40 020012C6:1B58 01", "local_address"),
            (
                "  sl  local_address rem_address   st tx_queue",
                "local_address",
            ),
        ];
        for (line, name) in cases {
            let e = TcpSocket::parse_line(line).unwrap_err();
            assert_eq!(e.field, name, "{line}: {e}");
            let text = e.to_string();
            assert!(text.starts_with("/proc/net/tcp field "), "{text}");
        }
        let e = TcpSocket::parse_line(
            "   1: 010012C6:9C40 020012C6:1B58 01 00000005:00000000 01:0000002D",
        )
        .unwrap_err();
        assert!(e.is_truncated(), "{e}");
        // Every prefix of a good line is an error or a socket, never a panic.
        for i in 0..good.len() {
            let _ = TcpSocket::parse_line(&good[..i]);
        }
    }

    #[cfg(any(feature = "server", feature = "client"))]
    #[test]
    fn a_real_keepalive_socket_shows_its_timer() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _s = l.accept().unwrap();
        socket2::SockRef::from(&c)
            .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(Duration::from_secs(30)))
            .unwrap();
        let me = port_sockets_now(l.local_addr().unwrap().port())
            .unwrap()
            .into_iter()
            .find(|s| s.entry.local == c.local_addr().unwrap())
            .unwrap();
        assert_eq!(me.timer, TcpTimer::Keepalive, "{me:?}");
        assert!(me.timer_left <= Duration::from_secs(30), "{me:?}");
        assert!(me.timer_left > Duration::from_secs(20), "{me:?}");
    }
}
