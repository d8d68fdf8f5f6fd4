//! Memory of idle long connections: RSS growth of a `keepwire serve` process per connection.
//!
//! ```sh
//! cargo bench -p keepwire-cli --bench idle_rss              # 10000 connections
//! cargo bench -p keepwire-cli --bench idle_rss -- 10000 19000
//! ```
//!
//! Starts the release-built `keepwire serve` (the binary this bench is built with), opens N
//! connections from 127.0.0.1-127.0.0.8 (so ephemeral ports never run short), exchanges one
//! frame on each (so every connection has had its read and write buffers once), leaves them
//! idle, and reads the server's VmRSS from /proc before and after. Each process needs about N
//! descriptors, so N is capped by RLIMIT_NOFILE's hard limit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;
use common::Serve;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![10_000]
    } else {
        counts
    };
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let max = *counts.iter().max().unwrap() as u64 + 200;
    if soft < max {
        rlimit::Resource::NOFILE.set(max.min(hard), hard).unwrap();
    }
    println!("connections  rss_before_kib  rss_after_kib  bytes_per_conn");
    for n in counts {
        if n as u64 + 200 > hard {
            println!("{n:>11}  skipped: RLIMIT_NOFILE hard limit is {hard}");
            continue;
        }
        let max_conns = (n + 100).to_string();
        let server = Serve::start(&[
            "--framing",
            "len:be:2",
            "--max-conns",
            &max_conns,
            "--idle-timeout",
            "off",
            "--max-conns-per-ip",
            "0",
        ]);
        let addr = server.addr;
        // Warm up the runtime and allocator with a few connections first.
        for _ in 0..10 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"\x00\x01x").unwrap();
            s.read_exact(&mut [0u8; 3]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        let before = rss_kib(server.pid());
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            let src: SocketAddr = format!("127.0.0.{}:0", 1 + i % 8).parse().unwrap();
            sock.bind(&src.into()).unwrap();
            sock.connect(&addr.into()).unwrap();
            let mut s: TcpStream = sock.into();
            s.write_all(b"\x00\x01x").unwrap();
            conns.push(s);
        }
        for s in &mut conns {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.read_exact(&mut [0u8; 3]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
        let after = rss_kib(server.pid());
        let per = (after.saturating_sub(before) * 1024) as f64 / n as f64;
        println!("{n:>11}  {before:>14}  {after:>13}  {per:>14.0}");
        drop(conns);
        drop(server);
    }
}
