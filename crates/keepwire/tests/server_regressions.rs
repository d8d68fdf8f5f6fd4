//! Regression tests for the server defects of issue 9 (correctness): each one failed on the
//! code before its fix.

mod common;
#[path = "common/queues.rs"]
mod queues;

use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::time::{Duration, Instant};

use common::*;
use keepwire::server::ServerConfig;
use queues::{queues, server_has_read};

const MS: Duration = Duration::from_millis(1);

/// Issue 9.1 (lost wakeup): after a short read the server cleared tokio's readiness with a
/// WouldBlock that no syscall returned; readiness that arrived between the real `recv` and
/// that clear was erased, and a request whose body came a few microseconds after its header
/// sat in the kernel until the idle timeout. Six clients write the header, then the body
/// 0–80 µs later, many times; every reply must come back promptly (the bound is generous:
/// a stalled request never comes back at all, as this server has no idle timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_header_and_body_never_stall() {
    let srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let addr = srv.addr;
    let clients: Vec<_> = (0..6u64)
        .map(|c| {
            std::thread::spawn(move || -> Result<(), String> {
                let mut s = StdStream::connect(addr).map_err(|e| e.to_string())?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(3)))
                    .map_err(|e| e.to_string())?;
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (c + 1);
                // Bounded in count and time: the race needs thousands of tries to show.
                let start = Instant::now();
                for i in 0..50_000u32 {
                    if start.elapsed() > Duration::from_secs(4) {
                        break;
                    }
                    // xorshift: a delay of 0..=80 µs between header and body.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let gap = Duration::from_micros(seed % 81);
                    let body = format!("{c:02}-{:05}", i % 100_000);
                    s.write_all(b"0008").map_err(|e| e.to_string())?;
                    let t = Instant::now();
                    while t.elapsed() < gap {
                        std::hint::spin_loop();
                    }
                    s.write_all(body.as_bytes()).map_err(|e| e.to_string())?;
                    let sent = Instant::now();
                    let mut reply = [0u8; 12];
                    s.read_exact(&mut reply).map_err(|e| {
                        format!(
                            "client {c} request {i}: no reply after {:?} ({e})",
                            sent.elapsed()
                        )
                    })?;
                    if &reply[4..] != body.as_bytes() {
                        return Err(format!("client {c} request {i}: wrong reply {reply:?}"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap().unwrap();
    }
}

/// Issue 9.3: on SIGTERM (drain) a request already in the server's socket buffer was never
/// read: the first request (being handled) was answered, the second lost, and the
/// connection ended in a RST. Now every complete frame that reached the socket before the
/// close is answered, and the close is a FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_answers_requests_already_in_the_socket() {
    let mut c = ServerConfig::new(spec("len:be:2"));
    c.shutdown_grace = Duration::from_secs(10);
    let mut srv = start(c, "127.0.0.1:0", Some(500 * MS)).await;
    let mut client = Client::connect(srv.addr, "len:be:2").await;
    client.send(b"first").await;
    tokio::time::timeout(SOON, srv.seen.recv())
        .await
        .unwrap()
        .unwrap();
    // The second request lands in the socket while the first is being handled (the handler
    // holds it for 500 ms): it is there once the server's kernel has acknowledged it.
    client.send(b"second").await;
    let me = client.stream.local_addr().unwrap();
    eventually("`second` acknowledged by the server's kernel", || {
        queues(me, srv.addr).is_some_and(|(unacked, _)| unacked == 0)
    })
    .await;
    srv.stop.cancel();
    assert_eq!(client.recv().await.as_deref(), Some(&b"first"[..]));
    assert_eq!(client.recv().await.as_deref(), Some(&b"second"[..]));
    // Then a clean end of stream, not a reset.
    let mut scratch = [0u8; 16];
    let n = tokio::time::timeout(
        SOON,
        tokio::io::AsyncReadExt::read(&mut client.stream, &mut scratch),
    )
    .await
    .expect("server did not close");
    assert_eq!(n.expect("connection was reset, not closed with a FIN"), 0);
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    assert_eq!(report.force_closed, 0, "{report:?}");
}

/// Issue 9.3, the part with a frame split across the drain: a frame whose first half was
/// read before shutdown and whose second half arrives during the drain is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_completes_a_frame_that_was_half_read() {
    let mut c = ServerConfig::new(spec("len:be:2"));
    c.shutdown_grace = Duration::from_secs(10);
    let srv = echo_server(c).await;
    let mut client = Client::connect(srv.addr, "len:be:2").await;
    client.send_raw(b"\x00\x05he").await.unwrap();
    // The first half is read before shutdown: acknowledged by the server's kernel, and no
    // longer in its socket's receive queue.
    let me = client.stream.local_addr().unwrap();
    eventually("the first half read by the server", || {
        server_has_read(me, srv.addr)
    })
    .await;
    // `cancel` marks every connection's token before it returns, so the second half arrives
    // during the drain whenever the server reads it: nothing to wait for.
    srv.stop.cancel();
    client.send_raw(b"llo").await.unwrap();
    assert_eq!(client.recv().await.as_deref(), Some(&b"hello"[..]));
    client.closed_within(SOON).await;
}

/// Issue 9.4: a later bad frame lost replies already computed. Under `line`, one write of
/// `one\ntwo\r\r\n`: the reply `one` is computed, the echo of `two\r` cannot be framed
/// (a body ending in `\r` would read back without it), and the connection closed without
/// flushing `one`.
#[tokio::test]
async fn replies_computed_before_an_unencodable_reply_are_written() {
    let srv = echo_server(ServerConfig::new(spec("line"))).await;
    let mut client = Client::connect(srv.addr, "line").await;
    client.send_raw(b"one\ntwo\r\r\n").await.unwrap();
    assert_eq!(client.recv().await.as_deref(), Some(&b"one"[..]));
    client.closed_within(SOON).await;
}

/// Issue 9.4, handler-error path: replies before a failing handler call are written.
#[tokio::test]
async fn replies_before_a_handler_error_are_written() {
    use keepwire::server::{Request, Server, service_fn};
    let server = Server::bind("127.0.0.1:0", ServerConfig::new(spec("line")))
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(service_fn(|req: Request| async move {
        if &req.frame[..] == b"fail" {
            Err("handler refused".into())
        } else {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Some(req.frame))
        }
    })));
    let mut client = Client::connect(addr, "line").await;
    client.send_raw(b"a\nb\nfail\nc\n").await.unwrap();
    assert_eq!(client.recv().await.as_deref(), Some(&b"a"[..]));
    assert_eq!(client.recv().await.as_deref(), Some(&b"b"[..]));
    client.closed_within(SOON).await;
}

/// Issue 9.5: `--idle-timeout 18446744073709551615` panicked on every connection
/// ("overflow when adding duration to instant"). Huge durations in a config built in code
/// saturate instead.
#[tokio::test]
async fn huge_durations_do_not_panic() {
    let huge = Duration::from_secs(u64::MAX);
    let mut c = ServerConfig::new(spec("len:be:2"));
    c.liveness.read_idle = Some(huge);
    c.liveness.write_idle = Some(Duration::MAX);
    c.liveness.any_idle = Some(huge);
    c.liveness.frame_timeout = Some(huge);
    c.liveness.ping = Some(keepwire::liveness::PingConfig {
        interval: huge,
        timeout: Duration::MAX,
        misses: u32::MAX,
    });
    c.write_timeout = Duration::MAX;
    c.handshake_timeout = huge;
    c.short_close_wait = huge;
    let srv = echo_server(c).await;
    let mut client = Client::connect(srv.addr, "len:be:2").await;
    client.send_raw(b"\x00\x05hel").await.unwrap();
    client.send_raw(b"lo").await.unwrap();
    assert_eq!(client.recv().await.as_deref(), Some(&b"hello"[..]));
    client.send(b"again").await;
    assert_eq!(client.recv().await.as_deref(), Some(&b"again"[..]));
}
