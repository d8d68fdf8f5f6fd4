//! Hostile review of the direct engine (`Server::serve_direct`, `server/direct/`): one mio
//! event loop per CPU, connections in a slab, one timer heap per thread, replies from a
//! [`Reply`]. It must behave on the wire as the default engine (`Server::serve`) does, so
//! where it matters a scenario runs on both and the outcomes are compared.
//!
//! What could go wrong in such a loop: readiness is edge-triggered, so a flag cleared too
//! early (a short read taken for "drained" while the peer's FIN waits behind the data) or a
//! batch stopped early (the read budget, a full socket) that is never resumed leaves bytes
//! in the kernel with no event to come; the timers are filed lazily and a reused slab slot
//! may inherit an earlier connection's deadline; the scratch output buffer is shared by
//! every connection of a thread; the drain has to take the backlog from several copies of
//! one listener; and the counters are kept by hand, apart from the default engine's.
//!
//! Real loopback sockets only, short configured durations, generous upper bounds; every wait
//! is for an event with a timeout as its failure bound (a sleep only paces a client, or
//! gives the server the time to do what it must not do). A scenario that runs on both
//! engines runs on the default one first: if that fails, the test is wrong, not the engine.
//!
//! Failing on the code they were written against (each on the direct engine only):
//! - `half_close_after_a_request_gets_the_reply_then_eof`,
//!   `a_fin_queued_behind_a_request_during_backpressure_is_seen`: a short read clears the
//!   edge-triggered `readable` hint while the peer's FIN waits behind the data; the FIN is
//!   never read (the connection stays open until a timeout, in short mode for
//!   `short_close_wait`).
//! - `counters_match_the_default_engine_for_the_same_traffic`: `pings_answered` is never
//!   counted.
//! - `dropping_the_serve_future_stops_the_engine`: the event loops outlive the future.
//! - `the_idle_timeout_does_not_cut_a_reply_in_the_middle`: a liveness close drops replies
//!   still in the write buffer, mid-frame.
//! - `emfile_at_the_shutdown_still_answers_the_backlog`: EMFILE at the drain's backlog sweep
//!   closes the listener on the connections still waiting (reset), with no retry.
//! - `short_mode_with_an_endless_fin_wait_still_waits_for_the_fin`: an overflowing
//!   `short_close_wait` becomes "close now".

mod common;
#[path = "common/engines.rs"]
mod engines;
#[path = "common/queues.rs"]
mod queues;
mod tls_common;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Client, SOON, builder, eventually, same, spec};
use engines::*;
use keepwire::frame::FrameCodec;
use keepwire::liveness::PingConfig;
use keepwire::server::{Mode, Reply, Server};
use keepwire::tcpstate::TcpState;
use queues::{queues, server_has_read};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Sends `sig` (`-INT`, `-TERM`) to this test process.
fn signal_self(sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &std::process::id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {sig} failed");
}

// ------------------------------------------------------------------ 1. framing

/// Frames split at every byte boundary: sent one byte at a time, each byte read by the
/// server before the next leaves (so each is a read of its own: waited for in the kernel's
/// table, which costs a delayed ACK per byte, so under `len:be:2` only), and then every
/// two-part split on fresh connections. Under a length header, an ASCII length and a
/// delimiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_at_every_byte_boundary_are_reassembled() {
    for framing in ["len:be:2", "len:ascii:4", "line"] {
        let srv = direct(cfg(framing)).await;
        let codec = FrameCodec::new(spec(framing));
        let bodies: [&[u8]; 3] = [b"alpha", b"b", b"gamma-delta-epsilon"];
        let mut wire = BytesMut::new();
        for b in bodies {
            codec.encode_to(b, &mut wire).unwrap();
        }
        let mut c = Client::connect(srv.addr, framing).await;
        c.stream.set_nodelay(true).unwrap();
        let me = c.stream.local_addr().unwrap();
        for byte in wire.iter() {
            c.send_raw(&[*byte]).await.unwrap();
            if framing == "len:be:2" {
                eventually("the byte read by the server", || {
                    server_has_read(me, srv.addr)
                })
                .await;
            } else {
                tokio::time::sleep(ms(2)).await;
            }
        }
        for b in bodies {
            assert_eq!(
                c.recv().await.as_deref(),
                Some(b),
                "{framing}: byte by byte"
            );
        }
        drop(c);
        // Every two-part split, the parts a few milliseconds apart (a pause that paces the
        // client: the byte-by-byte run above is the one that makes sure of separate reads).
        for cut in 1..wire.len() {
            let mut c = Client::connect(srv.addr, framing).await;
            c.stream.set_nodelay(true).unwrap();
            c.send_raw(&wire[..cut]).await.unwrap();
            tokio::time::sleep(ms(3)).await;
            c.send_raw(&wire[cut..]).await.unwrap();
            for b in bodies {
                assert_eq!(
                    c.recv().await.as_deref(),
                    Some(b),
                    "{framing}: cut at {cut}"
                );
            }
        }
        // (Waited for: the direct engine adds its counts after the write the client saw.)
        let n = 3 * wire.len() as u64;
        let stats = Arc::clone(&srv.stats);
        eventually(&format!("{framing}: {n} frames counted each way"), || {
            let st = stats.snapshot();
            (st.frames_in, st.frames_out) == (n, n)
        })
        .await;
        let report = srv.shutdown().await;
        assert_eq!(report.force_closed, 0, "{framing}: {report:?}");
    }
}

/// 1000 small frames in one write, and 1000 frames of 300 bytes (300 KB: more than the
/// engine's read budget of four 64 KiB reads per turn, so the connection must come back
/// through the `again` list with no new event): all answered, in order, and a second client
/// is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_frames_in_one_write_are_all_answered_in_order() {
    let srv = direct(cfg("len:be:2")).await;
    for size in [4usize, 300] {
        let bodies: Vec<Vec<u8>> = (0..1000)
            .map(|i| {
                let mut b = format!("m{i:04}-").into_bytes();
                b.resize(size.max(b.len()), b'.');
                b
            })
            .collect();
        let wire: Vec<u8> = bodies.iter().flat_map(|b| f2(b)).collect();
        let mut c = Client::connect(srv.addr, "len:be:2").await;
        let mut other = Client::connect(srv.addr, "len:be:2").await;
        let (mut r, mut w) = c.stream.into_split();
        let writer = tokio::spawn(async move {
            w.write_all(&wire).await.unwrap();
            w
        });
        other.send(b"meanwhile").await;
        assert_eq!(other.recv().await.as_deref(), Some(&b"meanwhile"[..]));
        let want: usize = bodies.iter().map(|b| b.len() + 2).sum();
        let mut got = vec![0u8; want];
        tokio::time::timeout(SOON, r.read_exact(&mut got))
            .await
            .expect("not every reply arrived")
            .unwrap();
        let (frames, rest) = decode_all("len:be:2", &got);
        assert_eq!(rest, 0);
        assert_eq!(frames.len(), 1000);
        for (i, (f, b)) in frames.iter().zip(&bodies).enumerate() {
            assert_eq!(&f[..], &b[..], "reply {i} (size {size})");
        }
        let w = writer.await.unwrap();
        c.stream = r.reunite(w).unwrap();
        c.send(b"after").await;
        assert_eq!(c.recv().await.as_deref(), Some(&b"after"[..]));
    }
    srv.shutdown().await;
}

/// A frame at the framing's maximum is echoed whole; one byte past it is a typed error
/// (`errors_too_long`), the connection closes with nothing sent, and the server still
/// serves the others, the first one included. Under `len:be:4:max=100000` and at the
/// width's own limit, `len:be:2` (65 535).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_at_the_max_is_echoed_and_one_past_it_closes_only_its_connection() {
    for (framing, max) in [("len:be:4:max=100000", 100_000usize), ("len:be:2", 65_535)] {
        let srv = direct(cfg(framing)).await;
        let mut ok = Client::connect(srv.addr, framing).await;
        let big = pattern(max, 7);
        ok.send(&big).await;
        let back = ok.recv().await.expect("no echo of the frame at the max");
        same("frame at the max", &back, &big);
        if framing.starts_with("len:be:4") {
            let mut bad = connect(srv.addr).await;
            let mut wire = u32::try_from(max + 1).unwrap().to_be_bytes().to_vec();
            wire.extend_from_slice(&pattern(1000, 1));
            bad.write_all(&wire).await.unwrap();
            let (got, end) = read_to_end_within(&mut bad, SOON).await;
            assert!(got.is_empty(), "bytes sent to the oversized frame: {got:?}");
            assert_ne!(
                end,
                Ending::Open,
                "the oversized frame's connection stayed open"
            );
            srv.closed(1).await;
            let st = srv.stats.snapshot();
            assert_eq!(st.errors_too_long, 1, "{st:?}");
        }
        ok.send(b"still here").await;
        assert_eq!(ok.recv().await.as_deref(), Some(&b"still here"[..]));
        let mut fresh = Client::connect(srv.addr, framing).await;
        fresh.send(b"fresh").await;
        assert_eq!(fresh.recv().await.as_deref(), Some(&b"fresh"[..]));
        // (Closed first: a drained connection waits up to a second for its peer's FIN.)
        drop((ok, fresh));
        srv.shutdown().await;
    }
}

/// Empty frames: with heartbeats on (the default under `len:..`) an empty frame is a ping,
/// answered with an empty pong, never with the reply; with heartbeats off it is a request
/// like any other (answered with the fixed reply, or echoed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_frames_are_pings_with_heartbeats_on_and_data_with_them_off() {
    let fixed = Reply::Fixed(Bytes::from_static(b"R"));
    let srv = start(Eng::Direct, cfg("len:be:2"), fixed.clone()).await;
    let mut c = Client::connect(srv.addr, "len:be:2").await;
    c.send(b"").await;
    assert_eq!(c.recv().await.as_deref(), Some(&b""[..]), "the ping's pong");
    c.send(b"q").await;
    assert_eq!(c.recv().await.as_deref(), Some(&b"R"[..]));
    // Several pings in one write, between requests: each answered in its place. (After a
    // pause longer than the storm guard's gap: a heartbeat within 50 ms of our last pong is
    // taken for an answer to it, on both engines.)
    tokio::time::sleep(ms(60)).await;
    let mut wire = f2(b"");
    wire.extend(f2(b"q1"));
    wire.extend(f2(b""));
    c.send_raw(&wire).await.unwrap();
    assert_eq!(c.recv().await.as_deref(), Some(&b""[..]));
    assert_eq!(c.recv().await.as_deref(), Some(&b"R"[..]));
    drop(c);
    srv.shutdown().await;

    let mut off = cfg("len:be:2");
    off.heartbeat = None;
    let srv = start(Eng::Direct, off.clone(), fixed).await;
    let mut c = Client::connect(srv.addr, "len:be:2").await;
    c.send(b"").await;
    assert_eq!(
        c.recv().await.as_deref(),
        Some(&b"R"[..]),
        "heartbeat off: data"
    );
    drop(c);
    srv.shutdown().await;

    let srv = start(Eng::Direct, off, Reply::Echo).await;
    let mut c = Client::connect(srv.addr, "len:be:2").await;
    c.send(b"").await;
    c.send(b"x").await;
    assert_eq!(
        c.recv().await.as_deref(),
        Some(&b""[..]),
        "heartbeat off: echoed"
    );
    assert_eq!(c.recv().await.as_deref(), Some(&b"x"[..]));
    drop(c);
    srv.closed(1).await;
    let st = srv.stats.snapshot();
    assert_eq!((st.frames_in, st.frames_out, st.pings_answered), (2, 2, 0));
    srv.shutdown().await;
}

// ------------------------------------------------------------------ 2. a client that never reads

/// A client that floods requests and never reads its replies: the server stops reading once
/// its writes block (the client cannot push more than the socket buffers and a batch), the
/// write timeout (short here) cuts it, and meanwhile another client is served promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_bounded_and_cut_at_the_write_timeout() {
    const FLOOD: usize = 256 << 20;
    let mut c = cfg("len:be:4");
    c.write_timeout = ms(400);
    let srv = direct(c).await;
    let s = connect_small_rcvbuf(srv.addr).await;
    let me = s.local_addr().unwrap();
    let (_r, mut w) = s.into_split();
    let t0 = Instant::now();
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        let mut chunk = Vec::new();
        while chunk.len() < 60 * 1024 {
            chunk.extend_from_slice(&f4(&pattern(1000, 3)));
        }
        while sent < FLOOD && t0.elapsed() < SOON {
            match tokio::time::timeout(SOON, w.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                // Cut: a reset, a broken pipe; or the bound.
                Ok(Err(_)) | Err(_) => return (sent, true),
            }
        }
        (sent, false)
    });
    // The server stops reading: bytes pile up unread in its socket (it reads them at once
    // while it can write).
    eventually("the server stopped reading the flood", || {
        queues(srv.addr, me).is_some_and(|(_, unread)| unread > 32 * 1024)
    })
    .await;
    // Another client, served promptly all along.
    let mut other = Client::connect(srv.addr, "len:be:4").await;
    for i in 0..20 {
        let body = format!("other-{i}");
        let t = Instant::now();
        other.send(body.as_bytes()).await;
        assert_eq!(other.recv().await.as_deref(), Some(body.as_bytes()));
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "round trip {i} took {:?}",
            t.elapsed()
        );
        tokio::time::sleep(ms(20)).await;
    }
    srv.closed(1).await;
    let st = srv.stats.snapshot();
    assert_eq!(st.errors_io, 1, "not cut by the write timeout: {st:?}");
    let (sent, failed) = tokio::time::timeout(SOON, writer).await.unwrap().unwrap();
    assert!(
        failed,
        "the client pushed {sent} bytes into a server that cannot write"
    );
    assert!(
        sent < 40 << 20,
        "the client pushed {sent} bytes into a blocked server"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the write timeout of 400 ms took {:?}",
        t0.elapsed()
    );
    other.send(b"after").await;
    assert_eq!(other.recv().await.as_deref(), Some(&b"after"[..]));
    drop(other);
    srv.shutdown().await;
}

// ------------------------------------------------------------------ 3. drain

/// Half of a `len:be:4` frame: a header for 10 bytes, and 3 of them.
const HALF_FRAME: [u8; 7] = [0, 0, 0, 10, b'a', b'b', b'c'];

/// Writes `bytes`, the start of a frame, and waits until the server (`server`) has read
/// them.
async fn send_half_frame(half: &mut TcpStream, bytes: &[u8], server: SocketAddr) {
    half.write_all(bytes).await.unwrap();
    let me = half.local_addr().unwrap();
    eventually("the half frame read", || server_has_read(me, server)).await;
}

/// Requests written just before the shutdown (some still in the socket, unread by the
/// server) on several connections are all answered, then each of those connections and
/// every idle one gets a clean FIN; nothing is force-closed. On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_answers_requests_in_flight_and_fins_idle_connections() {
    for eng in BOTH {
        let srv = start(eng, cfg("len:be:4"), Reply::Echo).await;
        let mut idle = Vec::new();
        for i in 0..4 {
            let mut c = connect(srv.addr).await;
            let body = format!("used-{i}");
            c.write_all(&f4(body.as_bytes())).await.unwrap();
            assert_eq!(
                read_n(&mut c, 4 + body.len(), SOON, "warm-up").await,
                f4(body.as_bytes())
            );
            idle.push(c);
        }
        idle.push(connect(srv.addr).await);
        let mut busy = Vec::new();
        for _ in 0..10 {
            busy.push(connect(srv.addr).await);
        }
        // Two requests each, the second in a write of its own, then the shutdown at once.
        for (i, c) in busy.iter_mut().enumerate() {
            c.write_all(&f4(format!("a-{i}").as_bytes())).await.unwrap();
        }
        for (i, c) in busy.iter_mut().enumerate() {
            c.write_all(&f4(format!("b-{i}").as_bytes())).await.unwrap();
        }
        srv.stop.cancel();
        for (i, c) in busy.iter_mut().enumerate() {
            let (got, end) = read_to_end_within(c, SOON).await;
            let mut want = f4(format!("a-{i}").as_bytes());
            want.extend(f4(format!("b-{i}").as_bytes()));
            assert_eq!(got, want, "{eng:?}: busy client {i}");
            assert_eq!(end, Ending::Fin, "{eng:?}: busy client {i}");
        }
        for (i, c) in idle.iter_mut().enumerate() {
            let (got, end) = read_to_end_within(c, DRAIN_BOUND).await;
            assert!(got.is_empty(), "{eng:?}: idle client {i} got {got:?}");
            assert_eq!(end, Ending::Fin, "{eng:?}: idle client {i}");
        }
        drop((busy, idle));
        let stats = Arc::clone(&srv.stats);
        let report = srv.join().await;
        assert_eq!(report.force_closed, 0, "{eng:?}: {report:?}");
        let st = stats.snapshot();
        assert_eq!((st.accepted, st.closed), (15, 15), "{eng:?}: {st:?}");
        assert_eq!(st.frames_in, 24, "{eng:?}: {st:?}");
    }
}

/// A connection holding half a frame keeps its slot through the drain (it may still
/// finish its request) until the grace runs out, then it is closed by force and counted;
/// meanwhile the port refuses and an idle connection has its FIN at once. On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_frame_keeps_its_slot_until_the_grace_then_is_force_closed() {
    const GRACE: Duration = Duration::from_millis(700);
    for eng in BOTH {
        let mut c = cfg("len:be:4");
        c.shutdown_grace = GRACE;
        let srv = start(eng, c, Reply::Echo).await;
        let mut half = connect(srv.addr).await;
        send_half_frame(&mut half, &HALF_FRAME, srv.addr).await;
        let mut idle = connect(srv.addr).await;
        eventually("both accepted", || srv.stats.snapshot().accepted == 2).await;
        let t0 = Instant::now();
        srv.stop.cancel();
        expect_fin_only(&mut idle, DRAIN_BOUND, &format!("{eng:?}: idle")).await;
        // Our FIN answers the server's: it waits for it (up to a second) before it lets go.
        drop(idle);
        srv.closed(1).await;
        // The port refuses while the drain goes on.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match TcpStream::connect(srv.addr).await {
                Err(_) => break,
                Ok(mut s) => {
                    // Accepted after the shutdown began: it must at least be closed.
                    let (_, end) = read_to_end_within(&mut s, DRAIN_BOUND).await;
                    assert_ne!(
                        end,
                        Ending::Open,
                        "{eng:?}: a connection made during the drain"
                    );
                }
            }
            assert!(Instant::now() < deadline, "{eng:?}: the port still accepts");
            tokio::time::sleep(ms(10)).await;
        }
        let (got, end) = read_to_end_within(&mut half, GRACE + SLACK + SLACK).await;
        let held = t0.elapsed();
        assert!(got.is_empty(), "{eng:?}: {got:?}");
        assert_ne!(
            end,
            Ending::Open,
            "{eng:?}: the half frame's connection outlived the grace"
        );
        assert!(
            held >= GRACE - ms(50),
            "{eng:?}: the half frame's connection was cut after {held:?}, before the grace"
        );
        let stats = Arc::clone(&srv.stats);
        let report = srv.join().await;
        assert_eq!(report.force_closed, 1, "{eng:?}: {report:?}");
        let st = stats.snapshot();
        assert_eq!(st.force_closed, 1, "{eng:?}: {st:?}");
        assert_eq!(st.closed, st.accepted, "{eng:?}: {st:?}");
    }
}

/// The rest of a half-sent frame arriving during the drain: the request is answered, then
/// the connection gets its FIN, and nothing is forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_finished_during_the_drain_is_answered_then_closed() {
    let srv = direct(cfg("len:be:4")).await;
    let mut half = connect(srv.addr).await;
    let mut idle = connect(srv.addr).await;
    send_half_frame(&mut half, &HALF_FRAME, srv.addr).await;
    srv.stop.cancel();
    let (_, end) = read_to_end_within(&mut idle, DRAIN_BOUND).await;
    assert_eq!(end, Ending::Fin, "the drain has not started");
    half.write_all(b"defghij").await.unwrap();
    let (got, end) = read_to_end_within(&mut half, SOON).await;
    assert_eq!(got, f4(b"abcdefghij"));
    assert_eq!(end, Ending::Fin);
    let report = srv.join().await;
    assert_eq!(report.force_closed, 0, "{report:?}");
}

/// Connections that complete their handshake right before the shutdown (many of them still
/// in the accept backlog, with their requests written) are answered and closed, not reset
/// with the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_in_the_backlog_at_the_shutdown_are_answered() {
    const N: usize = 200;
    let mut c = cfg("len:be:2");
    c.backlog = 1024;
    let srv = direct(c).await;
    let addr = srv.addr;
    // Connected and written from a blocking thread, as fast as it goes; the shutdown
    // follows the last write at once.
    let clients = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        (0..N)
            .map(|i| {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                s.write_all(&f2(format!("bk-{i}").as_bytes())).unwrap();
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    srv.stop.cancel();
    let accepted_at_shutdown = srv.stats.snapshot().accepted;
    for (i, s) in clients.into_iter().enumerate() {
        s.set_nonblocking(true).unwrap();
        let mut s = TcpStream::from_std(s).unwrap();
        let (got, end) = read_to_end_within(&mut s, SOON).await;
        assert_eq!(
            got,
            f2(format!("bk-{i}").as_bytes()),
            "client {i} ({end:?}; {accepted_at_shutdown} accepted when the shutdown began)"
        );
        assert_eq!(end, Ending::Fin, "client {i}");
    }
    let stats = Arc::clone(&srv.stats);
    let report = srv.join().await;
    assert_eq!(report.force_closed, 0, "{report:?}");
    let st = stats.snapshot();
    assert_eq!((st.accepted, st.closed), (N as u64, N as u64), "{st:?}");
}

/// A request sent by a client right after a burst of requests whose replies block: the
/// drain answers what is stalled behind the full socket once the client reads, then closes
/// with a FIN; nothing is forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_replies_stalled_behind_a_full_socket() {
    let reply = Bytes::from(pattern(100 * 1024, 9));
    let srv = start(Eng::Direct, cfg("len:be:4"), Reply::Fixed(reply.clone())).await;
    let mut s = connect_small_rcvbuf(srv.addr).await;
    let me = s.local_addr().unwrap();
    let wire = numbered_f4(50, "r");
    s.write_all(&wire).await.unwrap();
    // The server's replies block: its send queue holds bytes the client does not take.
    eventually("the server's writes blocked", || {
        queues(srv.addr, me).is_some_and(|(unacked, _)| unacked > 0)
            || queues(me, srv.addr).is_some_and(|(_, unread)| unread > 8 * 1024)
    })
    .await;
    srv.stop.cancel();
    let (got, end) = read_to_end_within(&mut s, SOON).await;
    assert_eq!(end, Ending::Fin);
    let (frames, rest) = decode_all("len:be:4", &got);
    assert_eq!((frames.len(), rest), (50, 0), "replies after the stall");
    for f in &frames {
        same("stalled reply", f, &reply);
    }
    let report = srv.join().await;
    assert_eq!(report.force_closed, 0, "{report:?}");
}

/// `serve_direct_until_signal`: SIGINT drains (an idle connection gets its FIN), a second
/// signal (SIGTERM) during the drain closes the connection that holds it (half a frame) at
/// once: `Interrupted`, counted closed and force-closed. The only test here that installs
/// signal handlers (signals reach every handler installed in the process).
#[test]
fn a_second_signal_cuts_the_direct_drain_short() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let signals = keepwire::server::ShutdownSignals::install().unwrap();
        let mut c = cfg("len:be:4");
        c.shutdown_grace = Duration::from_secs(30);
        let server = Server::bind("127.0.0.1:0", c).await.unwrap();
        let addr = server.local_addr();
        let token = server.shutdown_token();
        let stats = server.stats();
        let task = tokio::spawn(server.serve_direct_until_signal(Reply::Echo, signals));
        let mut half = connect(addr).await;
        send_half_frame(&mut half, &[0, 0, 0, 9, b'x'], addr).await;
        let mut idle = connect(addr).await;
        eventually("both accepted", || stats.snapshot().accepted == 2).await;
        signal_self("-INT");
        eventually("the first signal started the drain", || {
            token.is_cancelled()
        })
        .await;
        let (_, end) = read_to_end_within(&mut idle, DRAIN_BOUND).await;
        assert_eq!(end, Ending::Fin, "the idle connection at the first signal");
        drop(idle);
        eventually("the idle connection closed", || {
            stats.snapshot().closed == 1
        })
        .await;
        let t = Instant::now();
        signal_self("-TERM");
        let r = tokio::time::timeout(SOON, task).await.unwrap().unwrap();
        assert!(r.as_ref().is_err_and(|e| e.is_interrupted()), "{r:?}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "the second signal took {:?}",
            t.elapsed()
        );
        let (_, end) = read_to_end_within(&mut half, DRAIN_BOUND).await;
        assert_ne!(
            end,
            Ending::Open,
            "the half frame's connection outlived the interrupt"
        );
        let st = stats.snapshot();
        assert_eq!(
            (st.accepted, st.closed, st.force_closed),
            (2, 2, 1),
            "{st:?}"
        );
    });
}

// ------------------------------------------------------------------ 4. liveness

/// A silent connection is closed at the idle timeout: not before it, and not much after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_closes_a_silent_connection_within_bounds() {
    let mut c = cfg("len:be:2");
    c.liveness.read_idle = Some(ms(200));
    let srv = direct(c).await;
    let t = Instant::now();
    let mut s = connect(srv.addr).await;
    let (got, end) = read_to_end_within(&mut s, SOON).await;
    let took = t.elapsed();
    assert!(got.is_empty() && end == Ending::Fin, "{end:?} {got:?}");
    assert!(
        took >= ms(195),
        "closed after {took:?}, before the idle timeout"
    );
    assert!(took <= ms(200) + SLACK, "closed after {took:?}");
    // A connection that talks is closed 200 ms after its last frame, not after its first.
    let mut s = connect(srv.addr).await;
    for i in 0..4u8 {
        echo_f2(&mut s, &[i], "echo").await;
        tokio::time::sleep(ms(100)).await;
    }
    let t = Instant::now();
    let (_, end) = read_to_end_within(&mut s, SOON).await;
    assert_eq!(end, Ending::Fin);
    assert!(
        t.elapsed() >= ms(90),
        "closed {:?} after its last frame",
        t.elapsed()
    );
    srv.closed(2).await;
    assert_eq!(srv.stats.snapshot().idle_closed, 2);
    srv.shutdown().await;
}

/// Server pings: a client that answers each ping with the heartbeat keeps its connection
/// (several pings come, the connection stays and still serves); one that never answers is
/// closed after `misses` pings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_pings_keep_an_answering_client_and_close_a_silent_one() {
    // As `--heartbeat` gives it.
    let hb: keepwire::liveness::HeartbeatSpec =
        "interval=150ms,timeout=100ms,misses=2".parse().unwrap();
    let mut c = cfg("len:be:2");
    c.liveness.ping = hb.ping_config();
    c.heartbeat = hb.heartbeat();
    let srv = direct(c).await;
    let mut answering = connect(srv.addr).await;
    let mut silent = connect(srv.addr).await;
    let t0 = Instant::now();
    let mut pings = 0;
    while t0.elapsed() < ms(1200) {
        let hdr = read_n(&mut answering, 2, SOON, "a ping").await;
        assert_eq!(hdr, [0, 0], "not a heartbeat");
        pings += 1;
        answering.write_all(&f2(b"")).await.unwrap();
    }
    assert!(pings >= 4, "{pings} pings in 1.2 s at a 150 ms interval");
    answering.write_all(&f2(b"alive")).await.unwrap();
    // Pings may come before the echo.
    let mut got = Vec::new();
    while !got.ends_with(&f2(b"alive")) {
        got.extend(read_n(&mut answering, 1, SOON, "the echo").await);
        assert!(got.len() < 1000);
    }
    let (got, end) = read_to_end_within(&mut silent, SOON).await;
    assert_ne!(end, Ending::Open);
    assert_eq!(got, [0, 0, 0, 0], "a silent client gets exactly two pings");
    srv.closed(1).await;
    let st = srv.stats.snapshot();
    assert_eq!((st.heartbeat_timeouts, st.closed), (1, 1), "{st:?}");
    drop(answering);
    srv.shutdown().await;
}

/// Pings every 100 ms, a pong timeout of 300 ms, three misses.
fn pings_every_100ms() -> PingConfig {
    PingConfig {
        interval: ms(100),
        timeout: ms(300),
        misses: 3,
    }
}

/// Both peers ping: a pinging server against a client that pings every 100 ms and answers
/// every heartbeat it receives (the jPOS #775 client: it answers pongs too). The exchange
/// must stay near one heartbeat per interval each way, not a storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_peers_pinging_each_other_make_no_storm() {
    let mut c = cfg("len:be:2");
    c.liveness.ping = Some(pings_every_100ms());
    let srv = direct(c).await;
    let s = connect(srv.addr).await;
    let (mut r, mut w) = s.into_split();
    let t0 = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        let mut hdr = [0u8; 2];
        while t0.elapsed() < ms(1000) {
            match tokio::time::timeout(ms(200), r.read_exact(&mut hdr)).await {
                Ok(Ok(_)) => {
                    assert_eq!(hdr, [0, 0], "a data frame among heartbeats");
                    n += 1;
                    let _ = tx.send(());
                }
                Ok(Err(e)) => panic!("closed: {e}"),
                Err(_) => {}
            }
        }
        n
    });
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(ms(100));
    while t0.elapsed() < ms(1000) {
        tokio::select! {
            _ = tick.tick() => {}
            Some(()) = rx.recv() => {}
        }
        // A ping on every tick, and an answer to every heartbeat: one frame either way.
        w.write_all(&f2(b"")).await.unwrap();
        sent += 1;
        assert!(sent < 10_000, "storm from the client side");
    }
    let got = reader.await.unwrap();
    // At most: a pong to each of our ~10 pings, a ping every 100 ms, the answers the
    // storm guard allows (one per 50 ms); a storm is thousands.
    assert!(
        got <= 45,
        "{got} heartbeats from the server in 1 s (we sent {sent})"
    );
    let st = srv.stats.snapshot();
    assert_eq!(st.closed, 0, "{st:?}");
    drop(w);
    srv.shutdown().await;
}

/// The library's own long client with pings against the pinging direct server: no
/// heartbeat timeout on either side, replies right, heartbeats near one per interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_client_pinging_a_pinging_direct_server_settles() {
    let mut c = cfg("len:be:4");
    c.liveness.ping = Some(pings_every_100ms());
    let srv = direct(c).await;
    let client = builder("len:be:4", &[srv.addr])
        .ping(Some(pings_every_100ms()))
        .connect_long()
        .await
        .unwrap();
    let t = Instant::now();
    for i in 0..6u32 {
        let p = Bytes::from(pattern(40 + i as usize * 997, i as u8));
        let got = client.request(p.clone()).await.unwrap();
        same("reply", &got, &p);
        tokio::time::sleep(ms(150)).await;
    }
    tokio::time::sleep(ms(400)).await;
    let secs = t.elapsed().as_secs_f64();
    let cs = client.stats();
    let st = srv.stats.snapshot();
    assert_eq!((cs.connects, cs.disconnects), (1, 0), "{cs:?}");
    assert_eq!((st.heartbeat_timeouts, st.closed), (0, 0), "{st:?}");
    let server_out = st.frames_out - 6;
    let most = (secs * 2.0 * 10.0) as u64 + 10;
    assert!(
        server_out <= most,
        "server storm: {server_out} in {secs:.1} s: {st:?}"
    );
    let client_beats = cs.pings_sent + cs.pings_answered;
    assert!(client_beats <= most, "client storm: {client_beats}: {cs:?}");
    drop(client);
    srv.shutdown().await;
}

/// A slow frame: its header, then a byte every 50 ms (a slowloris). It is cut at the frame
/// timeout after the header, not kept alive by the trickle; counted as a frame timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_frame_is_cut_at_the_frame_timeout() {
    let mut c = cfg("len:be:2");
    c.liveness.frame_timeout = Some(ms(300));
    let srv = direct(c).await;
    let s = connect(srv.addr).await;
    let (mut r, mut w) = s.into_split();
    let t0 = Instant::now();
    w.write_all(&[0, 100]).await.unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(ms(50)).await;
            if w.write_all(b"z").await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 16];
    let end = tokio::time::timeout(SOON, r.read(&mut buf))
        .await
        .expect("never cut");
    let took = t0.elapsed();
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    assert!(
        took >= ms(290),
        "cut after {took:?}, before the frame timeout"
    );
    assert!(took <= ms(300) + SLACK, "cut after {took:?}");
    trickle.abort();
    srv.closed(1).await;
    assert_eq!(srv.stats.snapshot().frame_timeouts, 1);
    srv.shutdown().await;
}

// ------------------------------------------------------------------ 5. short mode

/// Short mode: the first request of a write is answered, the frames after it in the same
/// write are dropped, and the server waits for the client's FIN (so the client holds the
/// TIME_WAIT). On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_answers_once_and_waits_for_the_clients_fin() {
    for eng in BOTH {
        let srv = short_echo(eng, Duration::from_secs(5)).await;
        let mut s = connect(srv.addr).await;
        let me = s.local_addr().unwrap();
        let mut wire = f2(b"one");
        wire.extend(f2(b"two"));
        wire.extend(f2(b"three"));
        s.write_all(&wire).await.unwrap();
        assert_eq!(read_n(&mut s, 5, SOON, "the one reply").await, f2(b"one"));
        // Nothing more, and no close from the server: it waits for ours.
        let (got, end) = read_to_end_within(&mut s, ms(300)).await;
        assert!(
            got.is_empty() && end == Ending::Open,
            "{eng:?}: {end:?} {got:?}"
        );
        s.shutdown().await.unwrap();
        expect_fin_only(&mut s, SOON, &format!("{eng:?}")).await;
        drop(s);
        eventually("the client's TIME_WAIT", || {
            tcp_state(me, srv.addr) == Some(TcpState::TimeWait)
        })
        .await;
        assert_ne!(tcp_state(srv.addr, me), Some(TcpState::TimeWait), "{eng:?}");
        srv.closed(1).await;
        let st = srv.stats.snapshot();
        assert_eq!((st.frames_in, st.frames_out), (1, 1), "{eng:?}: {st:?}");
        srv.shutdown().await;
    }
}

/// Short mode, the server closing first: the reply, then the server's FIN at once (the
/// server holds the TIME_WAIT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_with_close_first_closes_after_the_reply() {
    let mut c = cfg("len:be:2");
    c.mode = Mode::Short;
    c.short_server_closes_first = true;
    let srv = direct(c).await;
    let mut s = connect(srv.addr).await;
    let me = s.local_addr().unwrap();
    let mut wire = f2(b"one");
    wire.extend(f2(b"two"));
    s.write_all(&wire).await.unwrap();
    let (got, end) = read_to_end_within(&mut s, Duration::from_secs(2)).await;
    assert_eq!(got, f2(b"one"));
    assert_eq!(end, Ending::Fin);
    drop(s);
    eventually("the server's TIME_WAIT", || {
        tcp_state(srv.addr, me) == Some(TcpState::TimeWait)
    })
    .await;
    srv.shutdown().await;
}

// ------------------------------------------------------------------ 6. limits

/// `max_conns`: past the cap a connection is reset at once and counted; a slot given back
/// by a closed connection is taken by the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_conns_resets_the_excess_and_gives_slots_back() {
    let mut c = cfg("len:be:2");
    c.max_conns = 3;
    let srv = direct(c).await;
    let mut held = Vec::new();
    for i in 0..3u8 {
        let mut s = connect(srv.addr).await;
        echo_f2(&mut s, &[i], "held").await;
        held.push(s);
    }
    for _ in 0..3 {
        assert_eq!(
            refused_from([127, 0, 0, 1], srv.addr).await,
            Err(io::ErrorKind::ConnectionReset)
        );
    }
    let st = srv.stats.snapshot();
    assert_eq!(st.rejected_max_conns, 3, "{st:?}");
    drop(held.pop());
    srv.closed(1).await;
    let mut s = connect(srv.addr).await;
    echo_f2(&mut s, b"back", "a freed slot").await;
    let st = srv.stats.snapshot();
    assert_eq!(st.accepted, 7, "{st:?}");
    assert_eq!(st.accepted, st.closed + st.rejected_max_conns + 3, "{st:?}");
    drop((held, s));
    srv.shutdown().await;
}

/// `max_conns_per_ip`: a third connection from 127.0.0.1 is reset, one from 127.0.0.2 is
/// served; a closed connection gives its address's slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_conns_per_ip_resets_the_excess_per_address_and_gives_slots_back() {
    let mut c = cfg("len:be:2");
    c.max_conns_per_ip = Some(2);
    let srv = direct(c).await;
    let mut held = Vec::new();
    for i in 0..2u8 {
        let mut s = connect_from([127, 0, 0, 1], srv.addr).await;
        echo_f2(&mut s, &[i], "held").await;
        held.push(s);
    }
    assert_eq!(
        refused_from([127, 0, 0, 1], srv.addr).await,
        Err(io::ErrorKind::ConnectionReset)
    );
    let mut elsewhere = connect_from([127, 0, 0, 2], srv.addr).await;
    echo_f2(&mut elsewhere, b"two", "another address").await;
    assert_eq!(srv.stats.snapshot().rejected_per_ip, 1);
    drop(held.pop());
    srv.closed(2).await;
    let mut again = connect_from([127, 0, 0, 1], srv.addr).await;
    echo_f2(&mut again, b"back", "a freed slot").await;
    drop((held, elsewhere, again));
    srv.shutdown().await;
}

// ------------------------------------------------------------------ 7. absurd values

/// A grace of zero: the server returns at once; every connection ends (answered or not),
/// and the accounting adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_grace_ends_everything_at_once_and_accounts_for_it() {
    let mut c = cfg("len:be:4");
    c.shutdown_grace = Duration::ZERO;
    let srv = direct(c).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut s = connect(srv.addr).await;
        if i % 2 == 0 {
            s.write_all(&f4(format!("z{i}").as_bytes())).await.unwrap();
        }
        if i == 5 {
            s.write_all(&[0, 0, 0, 50, b'h']).await.unwrap();
        }
        clients.push(s);
    }
    eventually("all accepted", || srv.stats.snapshot().accepted == 6).await;
    let stats = Arc::clone(&srv.stats);
    let t = Instant::now();
    let report = srv.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a zero grace took {:?}",
        t.elapsed()
    );
    for (i, s) in clients.iter_mut().enumerate() {
        let (got, end) = read_to_end_within(s, DRAIN_BOUND).await;
        assert_ne!(end, Ending::Open, "client {i}");
        if !got.is_empty() {
            assert_eq!(got, f4(format!("z{i}").as_bytes()), "client {i}");
        }
    }
    let st = stats.snapshot();
    assert_eq!(st.closed, st.accepted, "{st:?}");
    assert_eq!(report.force_closed, st.force_closed, "{report:?} {st:?}");
}

/// A write timeout of zero: a client whose replies always fit the socket is never cut (the
/// timer starts only when a write blocks); one that pipelines large replies and never reads
/// is cut at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_write_timeout_cuts_only_blocked_writes() {
    let mut c = cfg("len:be:4");
    c.write_timeout = Duration::ZERO;
    let srv = start(
        Eng::Direct,
        c,
        Reply::Fixed(Bytes::from(pattern(64 * 1024, 2))),
    )
    .await;
    let mut fine = Client::connect(srv.addr, "len:be:4").await;
    for i in 0..50 {
        fine.send(format!("q{i}").as_bytes()).await;
        assert_eq!(
            fine.recv().await.map(|f| f.len()),
            Some(64 * 1024),
            "reply {i}"
        );
    }
    let mut hog = connect_small_rcvbuf(srv.addr).await;
    let wire: Vec<u8> = (0..200).flat_map(|_| f4(b"q")).collect();
    hog.write_all(&wire).await.unwrap();
    srv.closed(1).await;
    let st = srv.stats.snapshot();
    assert_eq!(st.errors_io, 1, "{st:?}");
    fine.send(b"still").await;
    assert_eq!(fine.recv().await.map(|f| f.len()), Some(64 * 1024));
    drop(fine);
    srv.shutdown().await;
}

/// Idle and slow-frame timeouts off: a silent connection and one with half a frame stay
/// (nothing closes them), still serve, and the drain still ends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_off_keep_connections_until_the_drain() {
    let mut c = cfg("len:be:2");
    c.liveness.read_idle = None;
    c.liveness.frame_timeout = None;
    c.shutdown_grace = ms(500);
    let srv = direct(c).await;
    let mut quiet = connect(srv.addr).await;
    let mut half = connect(srv.addr).await;
    half.write_all(&[0, 5, b'a']).await.unwrap();
    let (got, end) = read_to_end_within(&mut quiet, ms(400)).await;
    assert!(got.is_empty() && end == Ending::Open, "{end:?}");
    echo_f2(&mut quiet, b"awake", "after silence").await;
    half.write_all(b"bcde").await.unwrap();
    assert_eq!(
        read_n(&mut half, 7, SOON, "a frame finished late").await,
        f2(b"abcde")
    );
    assert_eq!(srv.stats.snapshot().closed, 0);
    srv.stop.cancel();
    for (name, s) in [("quiet", &mut quiet), ("half", &mut half)] {
        expect_fin_only(s, DRAIN_BOUND, name).await;
    }
    drop((quiet, half));
    let report = srv.join().await;
    assert_eq!(report.force_closed, 0, "{report:?}");
}

/// A tiny frame maximum (`max=1`): one byte is echoed, two are refused as too long; a fixed
/// reply the framing cannot carry is refused before serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_frame_max_is_enforced_both_ways() {
    let srv = direct(cfg("len:be:2:max=1")).await;
    let mut s = connect(srv.addr).await;
    echo_f2(&mut s, b"a", "one byte").await;
    s.write_all(&f2(b"ab")).await.unwrap();
    let (got, end) = read_to_end_within(&mut s, SOON).await;
    assert!(got.is_empty() && end != Ending::Open, "{end:?} {got:?}");
    srv.closed(1).await;
    assert_eq!(srv.stats.snapshot().errors_too_long, 1);
    srv.shutdown().await;

    let server = Server::bind("127.0.0.1:0", cfg("len:be:2:max=1"))
        .await
        .unwrap();
    let r = tokio::time::timeout(
        SOON,
        server.serve_direct(Reply::Fixed(Bytes::from_static(b"xy"))),
    )
    .await
    .expect("a refused reply must not serve");
    let e = r.unwrap_err();
    assert!(e.config().is_some_and(|c| c.is_reply()), "{e}");
}

/// A fixed reply larger than 64 KiB, 300 requests pipelined in one write on one long
/// connection read in bursts with pauses: the server's batch stops at every full socket
/// with frames left in its buffer and must resume each time, with no new read event. Every
/// reply arrives, complete and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_fixed_replies_to_pipelined_requests_all_arrive_whole_in_order() {
    const N: usize = 300;
    let reply = Bytes::from(pattern(200 * 1024 + 7, 5));
    let srv = start(Eng::Direct, cfg("len:be:4"), Reply::Fixed(reply.clone())).await;
    let s = connect_small_rcvbuf(srv.addr).await;
    let (mut r, mut w) = s.into_split();
    let wire = numbered_f4(N, "p");
    w.write_all(&wire).await.unwrap();
    let want = N * (reply.len() + 4);
    let got = read_paced(&mut r, want, 256 * 1024, 64, ms(5), "the replies").await;
    let (frames, rest) = decode_all("len:be:4", &got);
    assert_eq!((frames.len(), rest), (N, 0));
    for f in &frames {
        same("fixed reply", f, &reply);
    }
    w.write_all(&f4(b"one more")).await.unwrap();
    let mut one = vec![0u8; reply.len() + 4];
    tokio::time::timeout(SOON, r.read_exact(&mut one))
        .await
        .unwrap()
        .unwrap();
    same("one more", &one[4..], &reply);
    let stats = Arc::clone(&srv.stats);
    eventually("every frame counted", || {
        let st = stats.snapshot();
        (st.frames_in, st.frames_out) == (N as u64 + 1, N as u64 + 1)
    })
    .await;
    drop((r, w));
    srv.shutdown().await;
}

// ------------------------------------------------------------------ 8. resets and half-closes

/// The peer resets (SO_LINGER 0, close) while megabytes of replies are owed: the server
/// drops the connection, counts an I/O error, gives its slot back, and serves the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_reset_mid_reply_ends_only_that_connection() {
    let reply = Bytes::from(pattern(1 << 20, 4));
    let mut c = cfg("len:be:4");
    c.max_conns = 2;
    let srv = start(Eng::Direct, c, Reply::Fixed(reply.clone())).await;
    for round in 0..3 {
        let mut s = connect_small_rcvbuf(srv.addr).await;
        let wire: Vec<u8> = (0..10).flat_map(|_| f4(b"q")).collect();
        s.write_all(&wire).await.unwrap();
        read_n(&mut s, 100 * 1024, SOON, "the start of the replies").await;
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
        srv.closed(round + 1).await;
    }
    let st = srv.stats.snapshot();
    assert_eq!(st.errors_io, 3, "{st:?}");
    // Both slots are free again (max_conns = 2).
    let mut a = Client::connect(srv.addr, "len:be:4").await;
    let mut b = Client::connect(srv.addr, "len:be:4").await;
    a.send(b"a").await;
    b.send(b"b").await;
    same("a", &a.recv().await.unwrap(), &reply);
    same("b", &b.recv().await.unwrap(), &reply);
    drop((a, b));
    srv.shutdown().await;
}

/// Half-close after a request (write, then `shutdown(Write)` at once): the reply arrives,
/// then the server's FIN, long before any timeout (idle: a minute; short mode's wait for
/// the FIN: 5 s). Fifty connections at once, the request and the FIN reaching the server
/// together or apart as the scheduler has it. On both engines, in long and short mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_after_a_request_gets_the_reply_then_eof() {
    const N: usize = 50;
    let failures = echo_clients_in_both_modes(N, None, |addr, i| async move {
        let mut s = connect(addr).await;
        let body = format!("hc-{i}");
        s.write_all(&f2(body.as_bytes())).await.unwrap();
        s.shutdown().await.unwrap();
        let (got, end) = read_to_end_within(&mut s, Duration::from_secs(2)).await;
        (got == f2(body.as_bytes()), end)
    })
    .await;
    assert!(
        failures.is_empty(),
        "half-closed connections, no reply or no EOF within 2 s: {failures:#?}"
    );
}

/// The same, made certain: the client's FIN waits in the server's socket behind its last
/// request while the server is blocked writing earlier replies (so both arrive before the
/// server reads either). Once the client reads, every reply must come, then the FIN.
/// (Edge-triggered readiness: the FIN's event came while the server could not read, and no
/// other event follows it.) On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fin_queued_behind_a_request_during_backpressure_is_seen() {
    for eng in BOTH {
        let reply = Bytes::from(pattern(256 * 1024, 6));
        let srv = start(eng, cfg("len:be:4"), Reply::Fixed(reply.clone())).await;
        let mut s = connect_small_rcvbuf(srv.addr).await;
        let me = s.local_addr().unwrap();
        let wire: Vec<u8> = (0..40).flat_map(|_| f4(b"q")).collect();
        s.write_all(&wire).await.unwrap();
        server_writes_blocked(me, srv.addr).await;
        // The server cannot write: the last request and the FIN wait in its socket.
        s.write_all(&f4(b"last")).await.unwrap();
        s.shutdown().await.unwrap();
        eventually(
            "the last request and the FIN in the server's kernel",
            || queues(me, srv.addr).is_some_and(|(unacked, _)| unacked == 0),
        )
        .await;
        let (got, end) = read_to_end_within(&mut s, Duration::from_secs(2)).await;
        let (frames, rest) = decode_all("len:be:4", &got);
        assert_eq!(
            (frames.len(), rest),
            (41, 0),
            "{eng:?}: replies ({} bytes, ended {end:?})",
            got.len()
        );
        assert_eq!(
            end,
            Ending::Fin,
            "{eng:?}: every reply came but not the server's FIN: the client's FIN was never read"
        );
        drop(s);
        srv.shutdown().await;
    }
}

// ------------------------------------------------------------------ 9. the rest

/// Timers for reused slab slots: connections that close at once free their slots, later
/// connections take them while the earlier ones' idle deadlines are still filed. A later
/// connection must live its own idle timeout, not inherit its slot's earlier deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_slot_does_not_inherit_an_earlier_connections_deadline() {
    const IDLE: Duration = Duration::from_millis(500);
    let mut c = cfg("len:be:2");
    c.liveness.read_idle = Some(IDLE);
    let srv = direct(c).await;
    let mut early = Vec::new();
    for _ in 0..16 {
        early.push(connect(srv.addr).await);
    }
    eventually("the early ones accepted", || {
        srv.stats.snapshot().accepted == 16
    })
    .await;
    drop(early);
    srv.closed(16).await;
    // Half-way to the early ones' deadlines: the slots are reused now.
    tokio::time::sleep(IDLE / 2).await;
    later_ones_live_their_idle_timeout(srv.addr, 16, IDLE, ms(10)).await;
    srv.closed(32).await;
    assert_eq!(srv.stats.snapshot().idle_closed, 16);
    srv.shutdown().await;
}

/// The same traffic on both engines gives the same counters: requests, pings answered,
/// a frame too long, a frame cut by the peer's close, an idle close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_the_default_engine_for_the_same_traffic() {
    let mut snaps = Vec::new();
    for eng in BOTH {
        let mut c = cfg("len:be:2:max=100");
        c.liveness.read_idle = Some(ms(300));
        let srv = start(eng, c, Reply::Echo).await;
        // Three requests and two pings.
        let mut a = connect(srv.addr).await;
        let mut wire = f2(b"r1");
        wire.extend(f2(b""));
        wire.extend(f2(b"r2"));
        wire.extend(f2(b""));
        wire.extend(f2(b"r3"));
        a.write_all(&wire).await.unwrap();
        read_n(&mut a, 4 + 2 + 4 + 2 + 4, SOON, "replies and pongs").await;
        drop(a);
        // Too long.
        let mut b = connect(srv.addr).await;
        b.write_all(&[0, 101]).await.unwrap();
        let _ = read_to_end_within(&mut b, SOON).await;
        // Truncated by the peer's close (the FIN sent once the partial frame was read: a
        // FIN that comes with the data is another test's business).
        let mut c = connect(srv.addr).await;
        c.write_all(&[0, 10, b'x']).await.unwrap();
        let me = c.local_addr().unwrap();
        eventually("the partial frame read", || server_has_read(me, srv.addr)).await;
        c.shutdown().await.unwrap();
        let _ = read_to_end_within(&mut c, SOON).await;
        // Idle.
        let mut d = connect(srv.addr).await;
        let _ = read_to_end_within(&mut d, SOON).await;
        // Reset by the peer while idle, after a request.
        let mut e = connect(srv.addr).await;
        e.write_all(&f2(b"r4")).await.unwrap();
        read_n(&mut e, 4, SOON, "before the reset").await;
        socket2::SockRef::from(&e)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(e);
        // Closed cleanly between frames.
        let mut f = connect(srv.addr).await;
        f.write_all(&f2(b"r5")).await.unwrap();
        read_n(&mut f, 4, SOON, "before the close").await;
        drop(f);
        srv.closed(6).await;
        let st = srv.stats.snapshot();
        srv.shutdown().await;
        snaps.push((eng, st));
    }
    let pick = |want: Eng| {
        snaps
            .iter()
            .find(|(e, _)| *e == want)
            .map(|(_, s)| *s)
            .unwrap()
    };
    let (d, t) = (pick(Eng::Direct), pick(Eng::Tokio));
    let fields = |s: keepwire::server::StatsSnapshot| {
        [
            ("accepted", s.accepted),
            ("closed", s.closed),
            ("frames_in", s.frames_in),
            ("frames_out", s.frames_out),
            ("pings_answered", s.pings_answered),
            ("pings_sent", s.pings_sent),
            ("errors_too_long", s.errors_too_long),
            ("errors_truncated", s.errors_truncated),
            ("errors_io", s.errors_io),
            ("idle_closed", s.idle_closed),
            ("force_closed", s.force_closed),
        ]
    };
    let differ: Vec<_> = fields(d)
        .into_iter()
        .zip(fields(t))
        .filter(|(a, b)| a.1 != b.1)
        .map(|((name, direct), (_, tokio))| format!("{name}: direct {direct}, tokio {tokio}"))
        .collect();
    assert!(differ.is_empty(), "counters differ: {differ:?}");
}

/// Settings the direct engine does not implement are refused before it serves, naming the
/// setting: `http` framing, the PROXY protocol, a reply delay, TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_it_does_not_implement_are_refused() {
    let mut tls = cfg("len:be:2");
    tls.tls = Some(tls_common::Pki::new().server_tls(false));
    for (c, key) in unsupported_cfgs().into_iter().chain([(tls, "tls")]) {
        let server = Server::bind("127.0.0.1:0", c).await.unwrap();
        let addr = server.local_addr();
        let r = tokio::time::timeout(SOON, server.serve_direct(Reply::Echo))
            .await
            .unwrap_or_else(|_| panic!("{key}: served instead of refusing"));
        let e = r.unwrap_err();
        assert_eq!(e.config().and_then(|c| c.key()), Some(key), "{e}");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "{key}: the port still accepts after the refusal"
        );
    }
}

/// Dropping the `serve_direct` future (an aborted task, a `select!` that took another
/// branch, a runtime shutting down) must stop the engine as dropping `serve` does: the
/// port refuses and the open connections end. The event loops run on threads of their
/// own, so nothing stops them unless the future's drop does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_serve_future_stops_the_engine() {
    for eng in BOTH {
        let srv = start(eng, cfg("len:be:2"), Reply::Echo).await;
        let mut s = connect(srv.addr).await;
        echo_f2(&mut s, b"hi", "before the drop").await;
        srv.task.abort();
        let _ = srv.task.await;
        let (_, end) = read_to_end_within(&mut s, Duration::from_secs(2)).await;
        assert_ne!(
            end,
            Ending::Open,
            "{eng:?}: a connection still open 2 s after the serve future was dropped"
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match TcpStream::connect(srv.addr).await {
                Err(_) => break,
                Ok(mut late) => {
                    let served = late.write_all(&f2(b"late")).await.is_ok()
                        && read_to_end_within(&mut late, ms(300)).await.0 == f2(b"late");
                    assert!(
                        !served && Instant::now() < deadline,
                        "{eng:?}: still serving after the serve future was dropped"
                    );
                }
            }
            tokio::time::sleep(ms(20)).await;
        }
    }
}

/// A client that reads its reply slowly while its idle timeout runs out: the reply under
/// way is not cut in the middle of a frame (the default engine writes it whole within the
/// write timeout, and closes after). On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_does_not_cut_a_reply_in_the_middle() {
    for eng in BOTH {
        let reply = Bytes::from(pattern(4 << 20, 8));
        let mut c = cfg("len:be:4");
        c.liveness.read_idle = Some(ms(100));
        let srv = start(eng, c, Reply::Fixed(reply.clone())).await;
        let mut s = connect_small_rcvbuf(srv.addr).await;
        // Two requests: 8 MiB of replies, more than the kernel's buffers hold (the server's
        // send buffer grows to 4 MiB), so some are still the server's own when the idle
        // timeout comes. Reads of at most the receive buffer, 2 ms apart: about 0.6 s in
        // all, longer than the idle timeout.
        s.write_all(&[f4(b"big"), f4(b"big")].concat())
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let end = loop {
            match tokio::time::timeout(SOON, s.read(&mut buf)).await {
                Ok(Ok(0)) => break Ending::Fin,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => break Ending::Reset(e.kind()),
                Err(_) => break Ending::Open,
            }
            tokio::time::sleep(ms(2)).await;
        };
        let want = 2 * (reply.len() + 4);
        assert_eq!(
            got.len(),
            want,
            "{eng:?}: the replies were cut at {} of {want} bytes ({end:?})",
            got.len(),
        );
        let (frames, rest) = decode_all("len:be:4", &got);
        assert_eq!((frames.len(), rest), (2, 0), "{eng:?}");
        for f in &frames {
            same("slow reply", f, &reply);
        }
        drop(s);
        srv.shutdown().await;
    }
}

/// Short mode, a client that never closes: the server waits `short_close_wait` for its FIN,
/// then closes anyway (not before, not forever). On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_stops_waiting_for_the_fin_at_short_close_wait() {
    const WAIT: Duration = Duration::from_millis(300);
    for eng in BOTH {
        let srv = short_echo(eng, WAIT).await;
        let mut s = connect(srv.addr).await;
        echo_f2(&mut s, b"one", "the reply").await;
        let t = Instant::now();
        // Bytes after the request are dropped, and do not restart the wait.
        s.write_all(&f2(b"ignored")).await.unwrap();
        let (got, end) = read_to_end_within(&mut s, SOON).await;
        let took = t.elapsed();
        assert!(got.is_empty(), "{eng:?}: {got:?}");
        assert_ne!(end, Ending::Open, "{eng:?}");
        // (Counted from the reply's arrival: the wait began a little before.)
        assert!(took >= WAIT - ms(100), "{eng:?}: closed after {took:?}");
        assert!(took <= WAIT + SLACK, "{eng:?}: closed after {took:?}");
        srv.closed(1).await;
        drop(s);
        srv.shutdown().await;
    }
}

// ------------------------------------------------------------------ EMFILE, in a child process

/// EMFILE in the accept loop: with room for 3 descriptors, 20 connections with their
/// requests written wait; the engine accepts what it can, backs off, and takes the rest
/// as the answered clients close (edge-triggered: no new event comes for connections
/// already waiting, only the retry finds them). None lost, the errors counted.
fn emfile_accept_loop(eng: Eng) {
    const N: usize = 20;
    let mut cs = child_echo(eng, Duration::from_secs(8));
    let addr = cs.srv().addr;
    let stats = Arc::clone(&cs.srv().stats);
    let first = std_first(addr);
    let socks = sockets(N);
    let (soft, hard) = limit_fds(3);
    let clients = std_requests(socks, addr, "e");
    for (i, mut s) in clients.into_iter().enumerate() {
        std_expect_reply(
            &mut s,
            format!("e{i}").as_bytes(),
            &format!("{eng:?}: a connection held back by EMFILE"),
        );
        drop(s);
    }
    rlimit::Resource::NOFILE.set(soft, hard).unwrap();
    let snap = stats.snapshot();
    assert!(
        snap.errors_accept > 0,
        "{eng:?}: EMFILE never hit: {snap:?}"
    );
    assert_eq!(snap.accepted, N as u64 + 1, "{eng:?}: {snap:?}");
    drop(first);
    cs.srv().stop.cancel();
    cs.join();
}

/// EMFILE when the shutdown comes: three idle connections hold every descriptor the server
/// may open and ten connections with requests wait in the backlog. The drain closes the
/// idle ones, which frees descriptors; the ten were acknowledged by the kernel and must be
/// answered (the default engine retries the backlog sweep until the grace runs out), not
/// reset with the listener. (The only way to be sure connections sit in the direct
/// engine's backlog at the shutdown: its event loops cannot be held up from outside.)
fn emfile_backlog_at_shutdown(eng: Eng) {
    const N: usize = 10;
    let mut cs = child_echo(eng, Duration::from_secs(8));
    let addr = cs.srv().addr;
    let stats = Arc::clone(&cs.srv().stats);
    drop(std_first(addr));
    std_eventually("the first connection closed", || {
        stats.snapshot().closed == 1
    });
    let mut socks = sockets(N + 3).into_iter();
    let (soft, hard) = limit_fds(3);
    let mut holders = std_holders(socks.by_ref().take(3), addr);
    let waiting = std_requests(socks, addr, "w");
    std_eventually_emfile(&stats);
    let accepted_before = stats.snapshot().accepted;
    assert!(
        accepted_before < 4 + N as u64 - 3,
        "{eng:?}: the backlog was not held back by EMFILE: {:?}",
        stats.snapshot()
    );
    cs.srv().stop.cancel();
    for h in &mut holders {
        std_expect_closed(h, "an idle holder at the shutdown");
    }
    // The holders keep their descriptors a while (the server waits for their FIN): the
    // shutdown's first look at the backlog meets EMFILE whatever the timing. A pause that
    // paces the client, not an assertion.
    std::thread::sleep(ms(200));
    drop(holders);
    for (i, mut s) in waiting.into_iter().enumerate() {
        std_expect_reply(
            &mut s,
            format!("w{i}").as_bytes(),
            &format!("{eng:?}: a request in the backlog at the shutdown, past EMFILE"),
        );
    }
    let report = cs.join();
    rlimit::Resource::NOFILE.set(soft, hard).unwrap();
    assert_eq!(report.force_closed, 0, "{eng:?}: {report:?}");
    let snap = stats.snapshot();
    assert_eq!(snap.accepted, N as u64 + 4, "{eng:?}: {snap:?}");
}

/// Runs `scenario` on both engines in a child process (it lowers RLIMIT_NOFILE, which no
/// other test may share): [`in_child`] on the test named `test`, `which` naming the
/// scenario in the child's output.
fn emfile_in_child(test: &str, which: &str, scenario: fn(Eng)) {
    in_child(test, || {
        for eng in BOTH {
            scenario(eng);
            println!("emfile scenario {which} on {eng:?} passed");
        }
    });
}

#[test]
fn emfile_in_the_accept_loop_backs_off_and_recovers() {
    emfile_in_child(
        "emfile_in_the_accept_loop_backs_off_and_recovers",
        "loop",
        emfile_accept_loop,
    );
}

#[test]
fn emfile_at_the_shutdown_still_answers_the_backlog() {
    emfile_in_child(
        "emfile_at_the_shutdown_still_answers_the_backlog",
        "sweep",
        emfile_backlog_at_shutdown,
    );
}

/// A bad frame after good ones in the same write: the replies already due are written, then
/// the connection closes (with a FIN: nothing of the bad frame is left unread), counted as
/// too long. On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_due_before_a_bad_frame_are_written_before_the_close() {
    for eng in BOTH {
        let srv = start(eng, cfg("len:be:2:max=100"), Reply::Echo).await;
        let mut s = connect(srv.addr).await;
        let mut wire = f2(b"good-1");
        wire.extend(f2(b"good-2"));
        wire.extend([0xff, 0xff]);
        s.write_all(&wire).await.unwrap();
        let (got, end) = read_to_end_within(&mut s, SOON).await;
        let mut want = f2(b"good-1");
        want.extend(f2(b"good-2"));
        assert_eq!(got, want, "{eng:?}");
        assert_eq!(end, Ending::Fin, "{eng:?}");
        srv.closed(1).await;
        let st = srv.stats.snapshot();
        assert_eq!(
            (st.errors_too_long, st.frames_out),
            (1, 2),
            "{eng:?}: {st:?}"
        );
        srv.shutdown().await;
    }
}

/// Heartbeats with payloads of their own (`ping=text:PING,pong=text:PONG` under `line`):
/// a PING is answered with a PONG, never echoed; a stray PONG is swallowed; data is echoed.
/// On both engines, with the spec parsed as `--heartbeat` parses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_payloads_are_answered_not_echoed() {
    let hb: keepwire::liveness::HeartbeatSpec = "ping=text:PING,pong=text:PONG".parse().unwrap();
    for eng in BOTH {
        let mut c = cfg("line");
        c.heartbeat = hb.heartbeat();
        let srv = start(eng, c, Reply::Echo).await;
        let mut s = connect(srv.addr).await;
        s.write_all(b"PING\nPONG\nhello\n").await.unwrap();
        assert_eq!(
            read_n(&mut s, 11, SOON, "the pong and the echo").await,
            b"PONG\nhello\n",
            "{eng:?}"
        );
        drop(s);
        srv.closed(1).await;
        let st = srv.stats.snapshot();
        assert_eq!((st.frames_in, st.frames_out), (3, 2), "{eng:?}: {st:?}");
        srv.shutdown().await;
    }
}

/// Short mode with an absurdly long wait for the client's FIN (`Duration::MAX`, as the
/// library API allows): the server waits for the FIN (it has no reason to close first),
/// the deadline saturating, as every other deadline does. On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_with_an_endless_fin_wait_still_waits_for_the_fin() {
    for eng in BOTH {
        let srv = short_echo(eng, Duration::MAX).await;
        let mut s = connect(srv.addr).await;
        echo_f2(&mut s, b"one", "the reply").await;
        let (got, end) = read_to_end_within(&mut s, ms(300)).await;
        assert!(
            got.is_empty() && end == Ending::Open,
            "{eng:?}: the server closed first ({end:?}) instead of waiting for the client's FIN"
        );
        s.shutdown().await.unwrap();
        let (_, end) = read_to_end_within(&mut s, SOON).await;
        assert_eq!(end, Ending::Fin, "{eng:?}");
        drop(s);
        srv.closed(1).await;
        srv.shutdown().await;
    }
}

/// A shutdown grace of `Duration::MAX` (no limit): both engines drain as usual, and
/// return once the last connection has closed, instead of overflowing the deadline (the
/// first version of both panicked on `now + grace`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_grace_drains_and_returns_when_the_connections_close() {
    for eng in BOTH {
        let mut c = cfg("len:be:4");
        c.shutdown_grace = Duration::MAX;
        let srv = start(eng, c, Reply::Echo).await;
        let mut busy = connect(srv.addr).await;
        // Half a frame: the drain waits for it, with no limit.
        busy.write_all(&[0, 0, 0, 4, b'a']).await.unwrap();
        eventually("accepted", || srv.stats.snapshot().accepted == 1).await;
        srv.stop.cancel();
        tokio::time::sleep(ms(300)).await;
        assert!(
            !srv.task.is_finished(),
            "{eng:?}: returned with a frame half read"
        );
        busy.write_all(b"bcd").await.unwrap();
        let got = read_n(&mut busy, 8, SOON, "the reply to the finished frame").await;
        assert_eq!(got, f4(b"abcd"), "{eng:?}");
        drop(busy);
        let report = srv.join().await;
        assert_eq!(report.force_closed, 0, "{eng:?}: {report:?}");
    }
}
