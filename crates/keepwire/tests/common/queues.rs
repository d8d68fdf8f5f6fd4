//! A socket's kernel queues, for tests that must know where bytes are: sent and acknowledged
//! by the peer's kernel, or read by the application. Waiting on these is an event, where a
//! sleep would be a guess. Included with `#[path]` by the tests that use it.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

/// The queues of the IPv4 socket from `local` to `remote`, from `/proc/net/tcp`: bytes sent
/// and not yet acknowledged by the peer's kernel, and bytes received and not yet read by the
/// application. `None` when there is no such socket.
pub fn queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().find_map(|line| {
        let e = *keepwire::tcpstate::parse_table(line).first()?;
        if e.local != local || e.remote != remote {
            return None;
        }
        let (tx, rx) = line.split_whitespace().nth(4)?.split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// Whether the server end (`server`) of the connection from `client` has read everything the
/// client wrote: the client's kernel holds nothing unacknowledged and the server's socket
/// nothing unread.
pub fn server_has_read(client: SocketAddr, server: SocketAddr) -> bool {
    queues(client, server).is_some_and(|(unacked, _)| unacked == 0)
        && queues(server, client).is_some_and(|(_, unread)| unread == 0)
}
