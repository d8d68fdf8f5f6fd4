//! Opens CONNECTIONS (default 2 000) idle long connections to an in-process `keepwire`
//! server (`len:be:4` echo, one 64-byte exchange each, then idle) and prints the heap
//! allocations they added, by requested size (in 8-byte steps) and alignment, per
//! connection. The clients are blocking std sockets, which allocate nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};

const SLOTS: usize = 4096 / 8 + 1;
static LIVE: [AtomicI64; SLOTS * 2] = [const { AtomicI64::new(0) }; SLOTS * 2];

/// The system allocator, counting live allocations per size class.
struct Counting;

fn slot(l: Layout) -> usize {
    (l.size() / 8).min(SLOTS - 1) + if l.align() > 16 { SLOTS } else { 0 }
}

// SAFETY: every call is passed on to `System` unchanged; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE[slot(l)].fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE[slot(l)].fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn snapshot() -> Vec<i64> {
    LIVE.iter().map(|a| a.load(Ordering::Relaxed)).collect()
}

fn exchange(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    let frame = [&[0u8, 0, 0, 64][..], &[b'x'; 64][..]].concat();
    c.write_all(&frame).expect("send");
    let mut back = vec![0u8; frame.len()];
    c.read_exact(&mut back).expect("echo");
    assert_eq!(back, frame, "the echo differs");
    c
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(2000, |a| a.parse().expect("CONNECTIONS"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut cfg = keepwire::server::ServerConfig::new("len:be:4".parse().unwrap());
            cfg.max_conns = n + 100;
            cfg.max_conns_per_ip = None;
            let server = keepwire::server::Server::bind("127.0.0.1:0", cfg)
                .await
                .unwrap();
            tx.send(server.local_addr()).unwrap();
            let echo = keepwire::server::service_fn(|r: keepwire::server::Request| async move {
                Ok::<_, std::convert::Infallible>(Some(r.frame))
            });
            let _ = server.serve(echo).await;
        });
    });
    let addr = rx.recv().unwrap();
    // Warm-up: the server's first connections fill its buffer pool and tables.
    let mut held: Vec<_> = (0..10).map(|_| exchange(addr)).collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = snapshot();
    held.extend((0..n).map(|_| exchange(addr)));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = snapshot();
    println!("live heap allocations added per idle connection ({n} connections):");
    let mut bytes = 0i64;
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        let d = a - b;
        if d.unsigned_abs() as usize * 20 >= n {
            let size = (i % SLOTS) * 8;
            let align = if i >= SLOTS { ">16" } else { "<=16" };
            println!(
                "  {size:>5}..{:<5} bytes, align {align:>4}: {:+.2}",
                size + 7,
                d as f64 / n as f64
            );
            bytes += d * size as i64;
        }
    }
    println!("about {} bytes requested per connection", bytes / n as i64);
    drop(held);
}
