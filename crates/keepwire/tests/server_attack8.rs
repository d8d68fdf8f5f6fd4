//! Hostile review of the idle-memory diet of a server connection:
//!
//! - `server/draining.rs`: the drain signal is a flag plus a Mutex'd list of wakers with a
//!   free list (no `Notify` waiter per connection); a connection registers its waker once,
//!   its slot is reused after it ends, and `Draining::start` sets the flag, then takes and
//!   wakes every registered waker.
//! - `liveness/mod.rs`: the slow-frame clock, the outstanding ping, the last ping and the
//!   last pong written are 8-byte `Stamp`s (nanoseconds since a process-wide epoch, 0 none).
//! - `frame/length.rs`: the announced body length and the maximum are kept as `u32`.
//! - `server/conn.rs`: the batch handling inlined into `serve_frames`, no `seen` instant
//!   (the liveness timer reads the clock when it arms), counts as `u32`.
//!
//! What could go wrong: a connection whose waker was never registered, or registered after
//! the wake-up went through the list, left open until its idle timeout; a reused slot that
//! wakes the wrong task or none; a drain racing accepts; a slow-frame clock that restarts
//! with every byte (a slowloris never cut) or never restarts (every pipelined frame cut); a
//! pong gap that forgets the last pong; a peer's 64-bit length truncated into 32 bits (a
//! huge header taken for a small one); idle timers that fire early, late or not at all.
//!
//! Real loopback sockets only, short configured durations and generous upper bounds; every
//! wait is for an event with a timeout as its failure bound. Sleeps only pace a client.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use keepwire::liveness::PingConfig;
use keepwire::server::{ServerConfig, ServerStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Far enough that no idle or slow-frame timer can be what closes a connection in a test
/// about the drain.
const FAR: Duration = Duration::from_secs(60);

/// How soon after the shutdown signal every idle connection must have its FIN: well before
/// any timeout, generous for a loaded 2-core machine.
const DRAIN_BOUND: Duration = Duration::from_secs(3);

/// Scheduling slack on a loaded 2-core machine, on top of a timer's documented lateness
/// (1/64 of the wait, `server/conn/clock.rs`).
const SLACK: Duration = Duration::from_millis(800);

fn late_bound(wait: Duration) -> Duration {
    (wait / 64).min(ms(1024)) + SLACK
}

/// `len:be:4`, idle and slow-frame timers far away, a long grace.
fn drain_cfg() -> ServerConfig {
    let mut c = ServerConfig::new(spec("len:be:4"));
    c.liveness.read_idle = Some(FAR);
    c.liveness.frame_timeout = Some(FAR);
    c.shutdown_grace = Duration::from_secs(20);
    c
}

/// `body` framed as `len:be:4`, by hand.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// How a stream read by [`read_to_end_within`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// A clean end of stream (FIN).
    Fin,
    /// An error (a reset).
    Reset(io::ErrorKind),
    /// Still open when the bound ran out.
    Open,
}

/// Reads until the stream ends or `bound` runs out: the bytes read, and how it ended.
async fn read_to_end_within(s: &mut TcpStream, bound: Duration) -> (Vec<u8>, Ending) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::timeout(bound, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return Ending::Fin,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Ending::Reset(e.kind()),
            }
        }
    })
    .await
    .unwrap_or(Ending::Open);
    (got, end)
}

/// Reads until the stream ends: `Ok(bytes read)` at a clean end of stream (FIN), `Err` at a
/// reset. Panics when neither comes within `bound`.
async fn until_end(
    s: &mut TcpStream,
    bound: Duration,
    what: &str,
) -> Result<Vec<u8>, io::ErrorKind> {
    match read_to_end_within(s, bound).await {
        (got, Ending::Fin) => Ok(got),
        (_, Ending::Reset(kind)) => Err(kind),
        (got, Ending::Open) => panic!(
            "{what}: the server neither closed nor reset within {bound:?} ({} bytes read: {:02x?})",
            got.len(),
            &got[..got.len().min(32)]
        ),
    }
}

/// Waits until every accepted connection has ended, and checks none is still counted.
async fn all_closed(stats: &ServerStats) {
    eventually("every accepted connection closed", || {
        let s = stats.snapshot();
        s.closed == s.accepted
    })
    .await;
}

/// Connects `n` clients that send nothing.
async fn idle_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(TcpStream::connect(addr).await.unwrap());
    }
    v
}

/// Connects `n` clients that each exchange one request (`tag` + index) and stay open.
async fn used_clients(addr: SocketAddr, n: usize, tag: &str) -> Vec<Client> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = Client::connect(addr, "len:be:4").await;
        let body = format!("{tag}{i}");
        c.send(body.as_bytes()).await;
        assert_eq!(c.recv().await.as_deref(), Some(body.as_bytes()), "{tag}{i}");
        v.push(c);
    }
    v
}

// ------------------------------------------------------------------ the drain

/// Hundreds of idle connections on a single-threaded runtime, some that never sent a byte
/// and some that exchanged a request first (each registered its waker in the list at its
/// first wait): the shutdown wakes every one through the list and each gets a clean FIN
/// with nothing before it, well before any timeout. On one thread nothing closes between
/// the accept loop seeing the signal and its count, so the report counts all of them.
#[tokio::test(flavor = "current_thread")]
async fn a_drain_on_one_thread_fins_every_idle_connection_at_once() {
    const SILENT: usize = 300;
    const USED: usize = 100;
    let srv = echo_server(drain_cfg()).await;
    let mut silent = idle_clients(srv.addr, SILENT).await;
    let mut used = used_clients(srv.addr, USED, "u").await;
    eventually("every connection accepted", || {
        srv.stats.snapshot().accepted == (SILENT + USED) as u64
    })
    .await;
    // Lets every connection task reach its first wait (and register its waker). The test
    // holds either way; this only makes the list, not the flag, the path that is tested.
    tokio::time::sleep(ms(50)).await;
    assert_eq!(srv.stats.snapshot().closed, 0, "a connection closed early");

    let t0 = Instant::now();
    srv.stop.cancel();
    for (i, s) in silent.iter_mut().enumerate() {
        let got = until_end(s, DRAIN_BOUND, &format!("silent {i}")).await;
        assert_eq!(got, Ok(Vec::new()), "silent {i}: not a clean FIN");
    }
    for (i, c) in used.iter_mut().enumerate() {
        let got = until_end(&mut c.stream, DRAIN_BOUND, &format!("used {i}")).await;
        assert_eq!(got, Ok(Vec::new()), "used {i}: not a clean FIN");
    }
    assert!(t0.elapsed() < DRAIN_BOUND, "drain took {:?}", t0.elapsed());
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    assert_eq!(report.open_at_shutdown, SILENT + USED, "{report:?}");
    assert_eq!(report.force_closed, 0, "{report:?}");
    assert!(report.drain_time < DRAIN_BOUND, "{report:?}");
    let s = srv.stats.snapshot();
    assert_eq!(s.closed, s.accepted, "{s:?}");
    assert_eq!(
        (s.frames_in, s.frames_out),
        (USED as u64, USED as u64),
        "{s:?}"
    );
    assert_eq!(s.idle_closed + s.frame_timeouts + s.errors_io, 0, "{s:?}");
}

/// The same on two worker threads, with requests in the handler when the signal comes:
/// those are answered (then a FIN), and every idle connection gets its FIN within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_on_two_workers_answers_requests_in_flight_and_fins_the_idle() {
    const SILENT: usize = 300;
    const USED: usize = 60;
    const BUSY: usize = 30;
    let mut srv = start(drain_cfg(), "127.0.0.1:0", Some(ms(300))).await;
    let mut silent = idle_clients(srv.addr, SILENT).await;
    // 300 ms each: the exchanges run 20 at a time.
    let mut used = Vec::new();
    let mut jobs = Vec::new();
    for k in 0..20 {
        let addr = srv.addr;
        jobs.push(tokio::spawn(async move {
            used_clients(addr, USED / 20, &format!("u{k}-")).await
        }));
    }
    for j in jobs {
        used.extend(j.await.unwrap());
    }
    let mut busy = Vec::new();
    for i in 0..BUSY {
        let mut c = Client::connect(srv.addr, "len:be:4").await;
        c.send(format!("busy{i}").as_bytes()).await;
        busy.push(c);
    }
    // Every request has reached the handler (the busy ones are in it now).
    for _ in 0..USED + BUSY {
        tokio::time::timeout(SOON, srv.seen.recv())
            .await
            .expect("a request never reached the handler")
            .unwrap();
    }

    let t0 = Instant::now();
    srv.stop.cancel();
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    for (i, mut s) in silent.drain(..).enumerate() {
        readers.push(tokio::spawn(async move {
            let got = until_end(&mut s, DRAIN_BOUND, &format!("silent {i}")).await;
            assert_eq!(got, Ok(Vec::new()), "silent {i}: not a clean FIN");
        }));
    }
    for (i, mut c) in used.drain(..).enumerate() {
        readers.push(tokio::spawn(async move {
            let got = until_end(&mut c.stream, DRAIN_BOUND, &format!("used {i}")).await;
            assert_eq!(got, Ok(Vec::new()), "used {i}: not a clean FIN");
        }));
    }
    for (i, mut c) in busy.drain(..).enumerate() {
        readers.push(tokio::spawn(async move {
            let want = format!("busy{i}");
            assert_eq!(
                c.recv().await.as_deref(),
                Some(want.as_bytes()),
                "busy {i}: the request in flight was not answered"
            );
            let got = until_end(&mut c.stream, DRAIN_BOUND, &format!("busy {i}")).await;
            assert_eq!(
                got,
                Ok(Vec::new()),
                "busy {i}: not a clean FIN after the reply"
            );
        }));
    }
    for r in readers {
        r.await.unwrap();
    }
    assert!(t0.elapsed() < DRAIN_BOUND, "drain took {:?}", t0.elapsed());
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    let total = SILENT + USED + BUSY;
    // The busy ones are open for sure; idle ones may close before the count.
    assert!(
        (BUSY..=total).contains(&report.open_at_shutdown),
        "{report:?}"
    );
    assert_eq!(report.force_closed, 0, "{report:?}");
    let s = srv.stats.snapshot();
    assert_eq!(s.accepted, total as u64, "{s:?}");
    assert_eq!(s.closed, s.accepted, "{s:?}");
    let frames = (USED + BUSY) as u64;
    assert_eq!((s.frames_in, s.frames_out), (frames, frames), "{s:?}");
}

/// How one client of a burst that races the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The connect was refused (the listener was gone).
    Refused,
    /// Its own reply, then a clean FIN.
    Answered,
    /// A clean FIN (or a reset) without a reply: accepted while draining before the request
    /// reached it, or reset with the listener.
    Closed,
}

/// A burst of clients connecting and sending their first request while the shutdown is
/// triggered, over several rounds: accepts, first polls (waker registrations) and the
/// drain's wake-up race. Every client ends well before any timeout: refused, answered with
/// its own bytes then closed, or closed; none is left hanging. The server finishes without
/// force-closing anything and counts every connection it accepted as closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_racing_a_burst_of_new_connections_leaves_none_hanging() {
    const CLIENTS: usize = 160;
    let mut totals = [0usize; 3];
    for round in 0..4u64 {
        let srv = echo_server(drain_cfg()).await;
        let addr = srv.addr;
        let connected = Arc::new(AtomicUsize::new(0));
        let c2 = Arc::clone(&connected);
        // Spread over a few tens of milliseconds (a client every quarter millisecond), so
        // that the signal lands inside the burst.
        let launcher = tokio::spawn(async move {
            let mut jobs = Vec::new();
            for i in 0..CLIENTS {
                let connected = Arc::clone(&c2);
                jobs.push(tokio::spawn(async move {
                    let Ok(mut s) = TcpStream::connect(addr).await else {
                        return Outcome::Refused;
                    };
                    connected.fetch_add(1, Ordering::Relaxed);
                    let body = format!("r{round}c{i}");
                    let _ = s.write_all(&frame(body.as_bytes())).await;
                    let what = format!("round {round} client {i}");
                    match until_end(&mut s, DRAIN_BOUND, &what).await {
                        Ok(got) if got.is_empty() => Outcome::Closed,
                        Ok(got) => {
                            assert_eq!(got, frame(body.as_bytes()), "{what}");
                            Outcome::Answered
                        }
                        Err(_) => Outcome::Closed,
                    }
                }));
                if i % 4 == 3 {
                    tokio::time::sleep(ms(1)).await;
                }
            }
            jobs
        });
        // The signal lands in the middle of the burst: at a different point each round.
        let at = CLIENTS / 8 * (round as usize + 1);
        eventually("part of the burst connected", || {
            connected.load(Ordering::Relaxed) >= at
        })
        .await;
        srv.stop.cancel();
        for j in launcher.await.unwrap() {
            let o = j.await.expect("a client task failed");
            totals[o as usize] += 1;
        }
        let report = tokio::time::timeout(SOON, srv.task)
            .await
            .expect("the server did not finish its drain")
            .unwrap();
        assert_eq!(report.force_closed, 0, "round {round}: {report:?}");
        all_closed(&srv.stats).await;
        let s = srv.stats.snapshot();
        assert_eq!(s.frames_in, s.frames_out, "round {round}: {s:?}");
    }
    // Not an assertion on timing, a sanity check of the test: the race was run.
    assert!(totals[Outcome::Answered as usize] > 0, "{totals:?}");
}

/// Thousands of short connections (each registers a waker at its first wait and leaves its
/// slot to the free list), with idle connections opened before them (low slots) and after
/// (reused slots), and a set of connections reset by their clients at the moment of the
/// signal (slots freed while `start` walks the list): every idle one gets its FIN at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_then_a_drain_fins_idle_connections_old_and_new() {
    const CHURN_TASKS: usize = 40;
    const CHURN_EACH: usize = 50;
    const IDLE_BEFORE: usize = 100;
    const IDLE_AFTER: usize = 100;
    const LEAVING: usize = 100;
    let srv = echo_server(drain_cfg()).await;
    let mut before = used_clients(srv.addr, IDLE_BEFORE / 2, "b").await;
    let mut before_silent = idle_clients(srv.addr, IDLE_BEFORE / 2).await;

    let mut jobs = Vec::new();
    for t in 0..CHURN_TASKS {
        let addr = srv.addr;
        jobs.push(tokio::spawn(async move {
            for k in 0..CHURN_EACH {
                let mut c = Client::connect(addr, "len:be:4").await;
                let body = format!("t{t}k{k}");
                c.send(body.as_bytes()).await;
                assert_eq!(c.recv().await.as_deref(), Some(body.as_bytes()));
            }
        }));
    }
    for j in jobs {
        j.await.unwrap();
    }
    let churned = (CHURN_TASKS * CHURN_EACH) as u64;
    eventually("the churned connections all ended", || {
        srv.stats.snapshot().closed == churned
    })
    .await;

    let mut after = used_clients(srv.addr, IDLE_AFTER / 2, "a").await;
    let mut after_silent = idle_clients(srv.addr, IDLE_AFTER / 2).await;
    let leaving = used_clients(srv.addr, LEAVING, "l").await;
    let total = churned + (IDLE_BEFORE + IDLE_AFTER + LEAVING) as u64;
    eventually("every connection accepted", || {
        srv.stats.snapshot().accepted == total
    })
    .await;

    let t0 = Instant::now();
    let resets = tokio::spawn(async move {
        for c in leaving {
            // A reset, not a FIN: the server's end goes at once.
            let _ = socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO));
            drop(c);
            tokio::task::yield_now().await;
        }
    });
    srv.stop.cancel();
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    let streams = before
        .drain(..)
        .map(|c| c.stream)
        .chain(before_silent.drain(..))
        .chain(after.drain(..).map(|c| c.stream))
        .chain(after_silent.drain(..));
    for (i, mut s) in streams.enumerate() {
        readers.push(tokio::spawn(async move {
            let got = until_end(&mut s, DRAIN_BOUND, &format!("idle {i}")).await;
            assert_eq!(got, Ok(Vec::new()), "idle {i}: not a clean FIN");
        }));
    }
    for r in readers {
        r.await.unwrap();
    }
    resets.await.unwrap();
    assert!(t0.elapsed() < DRAIN_BOUND, "drain took {:?}", t0.elapsed());
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    assert_eq!(report.force_closed, 0, "{report:?}");
    let s = srv.stats.snapshot();
    assert_eq!(s.accepted, total, "{s:?}");
    assert_eq!(s.closed, total, "{s:?}");
    assert_eq!(s.idle_closed + s.frame_timeouts, 0, "{s:?}");
}

// ------------------------------------------------------------------ the slow-frame clock

/// A header and half a body, then silence: cut at the frame timeout (never before, late by
/// at most the bound), counted as a frame timeout. Beside it, a frame finished just inside
/// the timeout is served, and so are later frames on the same connection, each started
/// and finished inside the timeout, over a span several times longer than it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_frame_is_cut_at_the_frame_timeout_and_frames_finished_in_time_are_served() {
    const TIMEOUT: u64 = 400;
    let mut c = ServerConfig::new(spec("len:be:4"));
    c.liveness.frame_timeout = Some(ms(TIMEOUT));
    c.liveness.read_idle = Some(FAR);
    let srv = echo_server(c).await;

    let stalled = tokio::spawn(async move {
        let mut c = Client::connect(srv.addr, "len:be:4").await;
        let t = Instant::now();
        c.send_raw(&[0, 0, 0, 10, b'h', b'a', b'l', b'f'])
            .await
            .unwrap();
        let took = c.closed_within(SOON).await;
        let took = took.max(t.elapsed());
        assert!(took >= ms(TIMEOUT), "cut early, after {took:?}");
        assert!(
            took <= ms(TIMEOUT) + late_bound(ms(TIMEOUT)),
            "cut late, after {took:?}"
        );
    });

    let mut ok = Client::connect(srv.addr, "len:be:4").await;
    for round in 0..4 {
        let body = format!("in-time frame {round}");
        let wire = frame(body.as_bytes());
        let (head, tail) = wire.split_at(6);
        ok.send_raw(head).await.unwrap();
        // Half the timeout: each frame lives well inside it, the four together span
        // several timeouts.
        tokio::time::sleep(ms(TIMEOUT / 2)).await;
        ok.send_raw(tail).await.unwrap();
        assert_eq!(
            ok.recv().await.as_deref(),
            Some(body.as_bytes()),
            "round {round}"
        );
    }
    stalled.await.unwrap();
    // Still open: one more request.
    ok.send(b"still here").await;
    assert_eq!(ok.recv().await.as_deref(), Some(&b"still here"[..]));
    let s = srv.stats.snapshot();
    assert_eq!(s.frame_timeouts, 1, "{s:?}");
    assert_eq!(s.idle_closed, 0, "{s:?}");
}

/// A frame dribbled one byte per segment: inside the frame timeout it is served whole; a
/// slower dribble is cut at the timeout counted from its first byte (each byte that is not
/// the start of a frame must not restart the clock), and never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_dribbled_byte_by_byte_is_served_in_time_and_cut_when_slower() {
    let mut c = ServerConfig::new(spec("len:be:4"));
    c.liveness.frame_timeout = Some(ms(1500));
    c.liveness.read_idle = Some(FAR);
    let srv = echo_server(c).await;
    let body: Vec<u8> = (0..60u8).map(|i| b'a' + i % 26).collect();
    let wire = frame(&body);
    let mut fast = Client::connect(srv.addr, "len:be:4").await;
    fast.stream.set_nodelay(true).unwrap();
    for b in &wire {
        fast.send_raw(std::slice::from_ref(b)).await.unwrap();
        // ~5 ms a byte: about 320 ms in all, a fifth of the timeout.
        tokio::time::sleep(ms(5)).await;
    }
    assert_eq!(fast.recv().await.as_deref(), Some(&body[..]));

    const TIMEOUT: u64 = 300;
    let mut c = ServerConfig::new(spec("len:be:4"));
    c.liveness.frame_timeout = Some(ms(TIMEOUT));
    c.liveness.read_idle = Some(FAR);
    let srv2 = echo_server(c).await;
    let s = TcpStream::connect(srv2.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (mut r, mut w) = s.into_split();
    let t0 = Instant::now();
    let writer = tokio::spawn(async move {
        // 25 ms a byte: 64 bytes take 1.6 s, five times the timeout.
        for b in &wire {
            if w.write_all(std::slice::from_ref(b)).await.is_err() {
                return;
            }
            tokio::time::sleep(ms(25)).await;
        }
        // Kept open: only the frame timeout may close it.
        tokio::time::sleep(SOON).await;
    });
    let mut got = Vec::new();
    let end = tokio::time::timeout(SOON, r.read_to_end(&mut got)).await;
    let took = t0.elapsed();
    writer.abort();
    assert!(end.is_ok(), "the slow dribble was never cut");
    assert!(got.is_empty(), "a frame cut off was answered: {got:?}");
    assert!(took >= ms(TIMEOUT), "cut early, after {took:?}");
    assert!(
        took <= ms(TIMEOUT) + late_bound(ms(TIMEOUT)),
        "cut late, after {took:?}: the clock restarted with a byte"
    );
    eventually("the frame timeout counted", || {
        srv2.stats.snapshot().frame_timeouts == 1
    })
    .await;
    assert_eq!(srv.stats.snapshot().frame_timeouts, 0);
}

/// The slow-frame clock restarts for each new frame: every write finishes one frame and
/// starts the next, one write per 200 ms under a 500 ms frame timeout. No frame is ever
/// partial for longer than 200 ms, yet a partial frame is buffered for the whole 2.4 s:
/// every frame is served, in order, and nothing is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slow_frame_clock_restarts_with_every_frame_begun_behind_a_finished_one() {
    let mut c = ServerConfig::new(spec("len:be:4"));
    c.liveness.frame_timeout = Some(ms(500));
    c.liveness.read_idle = Some(FAR);
    let srv = echo_server(c).await;
    let mut cl = Client::connect(srv.addr, "len:be:4").await;
    cl.stream.set_nodelay(true).unwrap();
    const N: usize = 12;
    let bodies: Vec<Vec<u8>> = (0..N)
        .map(|i| format!("frame number {i:02}").into_bytes())
        .collect();
    let wires: Vec<Vec<u8>> = bodies.iter().map(|b| frame(b)).collect();
    // Write k: the rest of frame k-1 and the first 7 bytes of frame k.
    let mut rest: &[u8] = &[];
    for (k, w) in wires.iter().enumerate() {
        let (head, tail) = w.split_at(7);
        let mut out = rest.to_vec();
        out.extend_from_slice(head);
        cl.send_raw(&out).await.unwrap();
        rest = tail;
        if k > 0 {
            assert_eq!(
                cl.recv().await.as_deref(),
                Some(&bodies[k - 1][..]),
                "frame {}",
                k - 1
            );
        }
        tokio::time::sleep(ms(200)).await;
    }
    cl.send_raw(rest).await.unwrap();
    assert_eq!(cl.recv().await.as_deref(), Some(&bodies[N - 1][..]));
    let s = srv.stats.snapshot();
    assert_eq!(s.frame_timeouts, 0, "{s:?}");
    assert_eq!((s.frames_in, s.frames_out), (N as u64, N as u64), "{s:?}");
}

// ------------------------------------------------------------------ heartbeats

/// Sends `mark` and reads until its echo comes back: the heartbeats (empty frames) read
/// before it, counted. Panics if the connection closes first.
async fn heartbeats_before_echo(cl: &mut Client, mark: &[u8]) -> usize {
    cl.send(mark).await;
    let mut empties = 0;
    loop {
        let f = cl.recv().await.expect("closed before the echo");
        if !f.is_empty() {
            assert_eq!(&f[..], mark);
            return empties;
        }
        empties += 1;
    }
}

fn ping_cfg(interval: u64, timeout: u64, misses: u32) -> ServerConfig {
    let mut c = ServerConfig::new(spec("len:be:4"));
    c.liveness.ping = Some(PingConfig {
        interval: ms(interval),
        timeout: ms(timeout),
        misses,
    });
    c.liveness.read_idle = Some(FAR);
    c
}

/// Server pings every 100 ms (timeout 100 ms, 2 misses): a client that answers every ping
/// stays through many intervals and is still served; a silent one is closed after
/// `interval + (misses - 1) * max(interval, timeout) + timeout` = 300 ms, never before;
/// and the answering one, once it stops answering, is closed the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_an_answering_client_and_cut_a_silent_one_in_bounds() {
    let srv = echo_server(ping_cfg(100, 100, 2)).await;
    let detect = ms(300);

    let silent = tokio::spawn(async move {
        let t = Instant::now();
        let mut c = Client::connect(srv.addr, "len:be:4").await;
        // Two pings, then the close.
        let mut pings = 0;
        while let Some(f) = c.recv().await {
            assert!(f.is_empty(), "a data frame to a silent client: {f:?}");
            pings += 1;
        }
        let took = t.elapsed();
        assert_eq!(pings, 2, "pings before the close");
        assert!(took >= detect, "closed early, after {took:?}");
        assert!(
            took <= detect + late_bound(detect),
            "closed late, after {took:?}"
        );
    });

    let mut good = Client::connect(srv.addr, "len:be:4").await;
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < ms(1500) {
        let f = good
            .recv()
            .await
            .expect("closed although every ping was answered");
        assert!(f.is_empty(), "unexpected data frame {f:?}");
        pings += 1;
        good.send(b"").await;
    }
    assert!(
        (6..=20).contains(&pings),
        "{pings} pings in 1.5 s at a 100 ms interval"
    );
    silent.await.unwrap();
    // Still served: the echo comes back (pings may come before it).
    let last = Instant::now();
    heartbeats_before_echo(&mut good, b"data after pings").await;
    // Now silent: cut like the other one (measured from the last frame it sent).
    let took = good.closed_within(SOON).await.max(last.elapsed());
    assert!(took >= detect, "closed early, after {took:?}");
    assert!(
        took <= detect + late_bound(detect),
        "closed late, after {took:?}"
    );
    eventually("both heartbeat timeouts counted", || {
        srv.stats.snapshot().heartbeat_timeouts == 2
    })
    .await;
}

/// Both sides ping: the server every 150 ms, the client every 100 ms (empty frames) while
/// never answering. The client's pings arrive more often than the server's interval, so
/// the server's ping clock keeps moving; the client's pings are answered, one pong each at
/// most: no storm, no heartbeat timeout, the connection stays and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pinging_on_its_own_schedule_is_kept_without_a_storm() {
    let srv = echo_server(ping_cfg(150, 100, 2)).await;
    let mut cl = Client::connect(srv.addr, "len:be:4").await;
    cl.stream.set_nodelay(true).unwrap();
    const SENT: usize = 15;
    for _ in 0..SENT {
        cl.send(b"").await;
        tokio::time::sleep(ms(100)).await;
    }
    let empties = heartbeats_before_echo(&mut cl, b"mark").await;
    // One pong per client ping at most, plus the odd server ping; and the client's pings
    // are answered (a stall of the machine may let a few fall inside the pong gap).
    assert!(
        empties <= SENT + 3,
        "{empties} heartbeats for {SENT} pings: a storm"
    );
    assert!(
        empties >= SENT / 2,
        "{empties} heartbeats for {SENT} pings: not answered"
    );
    let st = srv.stats.snapshot();
    assert_eq!(st.heartbeat_timeouts, 0, "{st:?}");
    assert!(st.pings_answered <= SENT as u64, "{st:?}");
}

/// The gap after a written pong (`PONG_GAP`, 50 ms, kept as a `Stamp`): heartbeats that
/// arrive right after our pong are taken as a peer answering it and absorbed; one that
/// arrives after the gap is a ping again and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_right_after_a_pong_are_absorbed_and_later_ones_answered() {
    let mut c = ServerConfig::new(spec("len:be:4"));
    c.liveness.read_idle = Some(FAR);
    let srv = echo_server(c).await;
    let mut cl = Client::connect(srv.addr, "len:be:4").await;
    cl.stream.set_nodelay(true).unwrap();
    cl.send(b"").await;
    assert_eq!(
        cl.recv().await.as_deref(),
        Some(&b""[..]),
        "the first ping's pong"
    );
    // At once, five more, each its own write: all within a few ms of the pong.
    for _ in 0..5 {
        cl.send(b"").await;
    }
    tokio::time::sleep(ms(300)).await;
    let pongs = heartbeats_before_echo(&mut cl, b"mark").await;
    // Without the gap all five are answered; a stall of the machine past 50 ms may let one
    // through.
    assert!(
        pongs <= 2,
        "{pongs} pongs for 5 heartbeats right after a pong"
    );
    // Long after the last pong: answered.
    cl.send(b"").await;
    assert_eq!(
        cl.recv().await.as_deref(),
        Some(&b""[..]),
        "a ping after the gap"
    );
    let st = srv.stats.snapshot();
    assert_eq!(st.pings_answered, 2 + pongs as u64, "{st:?}");
}

// ------------------------------------------------------------------ length framing

/// What a server must do with one header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The body is read and echoed.
    Echo,
    /// Closed at the header: too long.
    TooLong,
    /// Closed at the header: malformed (a length below what the header takes).
    Malformed,
    /// Accepted at the header; the peer then closes mid-body: truncated.
    Truncated,
}

/// Headers at and one past `max`, and 64-bit values that would become small if cut to 32
/// bits (2^32 + 3, followed by exactly 3 body bytes: a truncation would echo them), on
/// several encodings, with `incl` and `adj`, and at the 1 GiB ceiling. Every rejection
/// closes the connection without a byte and counts its kind; the server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_headers_at_the_limits_and_past_32_bits_are_judged_at_the_header() {
    let two32_3: u64 = (1 << 32) + 3;
    let cases: Vec<(&str, Vec<u8>, Want)> = vec![
        (
            "len:be:4:max=1000",
            1000u32.to_be_bytes().to_vec(),
            Want::Echo,
        ),
        (
            "len:be:4:max=1000",
            1001u32.to_be_bytes().to_vec(),
            Want::TooLong,
        ),
        ("len:be:4", 0u32.to_be_bytes().to_vec(), Want::Echo),
        ("len:be:4", u32::MAX.to_be_bytes().to_vec(), Want::TooLong),
        ("len:be:8", two32_3.to_be_bytes().to_vec(), Want::TooLong),
        ("len:be:8", u64::MAX.to_be_bytes().to_vec(), Want::TooLong),
        (
            "len:be:8",
            (1u64 << 63).to_be_bytes().to_vec(),
            Want::TooLong,
        ),
        (
            "len:be:8",
            (1u64 << 32).to_be_bytes().to_vec(),
            Want::TooLong,
        ),
        ("len:le:8", two32_3.to_le_bytes().to_vec(), Want::TooLong),
        ("len:hex:16", b"0000000100000003".to_vec(), Want::TooLong),
        (
            "len:ascii:19",
            b"0000000004294967299".to_vec(),
            Want::TooLong,
        ),
        (
            "len:ascii:19",
            b"9999999999999999999".to_vec(),
            Want::TooLong,
        ),
        (
            "len:be:8:max=1073741824",
            (1u64 << 30).to_be_bytes().to_vec(),
            Want::Truncated,
        ),
        (
            "len:be:8:max=1073741824",
            ((1u64 << 30) + 1).to_be_bytes().to_vec(),
            Want::TooLong,
        ),
        (
            "len:be:8:max=1073741824",
            ((1u64 << 34) + 3).to_be_bytes().to_vec(),
            Want::TooLong,
        ),
        (
            "len:be:8:max=1073741824",
            two32_3.to_be_bytes().to_vec(),
            Want::TooLong,
        ),
        (
            "len:be:4:incl:max=1000",
            1004u32.to_be_bytes().to_vec(),
            Want::Echo,
        ),
        (
            "len:be:4:incl:max=1000",
            1005u32.to_be_bytes().to_vec(),
            Want::TooLong,
        ),
        (
            "len:be:4:incl",
            3u32.to_be_bytes().to_vec(),
            Want::Malformed,
        ),
        (
            "len:be:4:adj=-4",
            2u32.to_be_bytes().to_vec(),
            Want::Malformed,
        ),
        ("len:be:4:adj=-4", 7u32.to_be_bytes().to_vec(), Want::Echo),
    ];
    for (framing, head, want) in cases {
        let what = format!("{framing} {head:02x?} ({want:?})");
        let mut c = ServerConfig::new(spec(framing));
        c.heartbeat = None;
        let srv = echo_server(c).await;
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        let mut wire = head.clone();
        match want {
            Want::Echo => {
                // The body the header announces.
                let n = match framing {
                    "len:be:4:incl:max=1000" => 1000,
                    "len:be:4:adj=-4" => 3,
                    _ => {
                        usize::try_from(u32::from_be_bytes(head[..4].try_into().unwrap())).unwrap()
                    }
                };
                let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                wire.extend_from_slice(&body);
                s.write_all(&wire).await.unwrap();
                // The reply is the same header and body (the crate's encoder writes the
                // header the same way for these specs).
                let mut got = vec![0u8; wire.len()];
                tokio::time::timeout(SOON, s.read_exact(&mut got))
                    .await
                    .unwrap_or_else(|_| panic!("{what}: no reply"))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                same(&what, &got, &wire);
            }
            Want::TooLong | Want::Malformed => {
                // Exactly the 3 bytes a header cut to 32 bits would announce.
                wire.extend_from_slice(b"abc");
                let _ = s.write_all(&wire).await;
                let (got, end) = read_to_end_within(&mut s, SOON).await;
                assert!(got.is_empty(), "{what}: bytes came back: {got:02x?}");
                assert_ne!(end, Ending::Open, "{what}: the connection was kept");
            }
            Want::Truncated => {
                wire.extend_from_slice(&[7u8; 100]);
                s.write_all(&wire).await.unwrap();
                s.shutdown().await.unwrap();
                let (got, end) = read_to_end_within(&mut s, SOON).await;
                assert!(got.is_empty(), "{what}: bytes came back: {got:02x?}");
                assert_ne!(end, Ending::Open, "{what}: the connection was kept");
            }
        }
        let st = &srv.stats;
        match want {
            Want::Echo => assert_eq!(st.snapshot().frames_out, 1, "{what}"),
            Want::TooLong => {
                eventually(&what, || st.snapshot().errors_too_long == 1).await;
            }
            Want::Malformed => {
                eventually(&what, || st.snapshot().errors_malformed == 1).await;
            }
            Want::Truncated => {
                eventually(&what, || st.snapshot().errors_truncated == 1).await;
            }
        }
        // The server goes on: a good frame on a new connection is echoed.
        assert!(!srv.task.is_finished(), "{what}: the server stopped");
        let mut good = Client::connect(srv.addr, framing).await;
        good.send(b"next one").await;
        assert_eq!(
            good.recv().await.as_deref(),
            Some(&b"next one"[..]),
            "{what}"
        );
        let s = st.snapshot();
        assert_eq!(
            s.errors_too_long + s.errors_malformed + s.errors_truncated,
            u64::from(want != Want::Echo),
            "{what}: {s:?}"
        );
    }
}

/// A body of exactly `max` announced by a header split byte by byte, arriving in hundreds
/// of segments, between zero-length bodies (delivered to the handler: heartbeats are off)
/// and small frames: the byte stream that comes back is exactly the one sent, and every
/// frame is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_size_body_in_hundreds_of_segments_and_zero_length_bodies_come_back_exact() {
    const MAX: usize = 65_536;
    let mut c = ServerConfig::new(spec("len:be:4:max=65536"));
    c.heartbeat = None;
    c.liveness.read_idle = Some(FAR);
    let srv = echo_server(c).await;
    let s = TcpStream::connect(srv.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (mut r, mut w) = s.into_split();
    let big: Vec<u8> = (0..MAX).map(|i| (i * 31 % 253) as u8).collect();
    let mut want = Vec::new();
    for part in [&frame(b"")[..], &frame(b"small")[..], &frame(b"")[..]] {
        want.extend_from_slice(part);
    }
    let big_wire = frame(&big);
    want.extend_from_slice(&big_wire);
    for part in [&frame(b"")[..], &frame(b"")[..], &frame(b"tail")[..]] {
        want.extend_from_slice(part);
    }
    let sent = want.clone();
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; sent.len()];
        tokio::time::timeout(SOON, r.read_exact(&mut got))
            .await
            .expect("the replies did not all come back")
            .unwrap();
        got
    });
    w.write_all(&frame(b"")).await.unwrap();
    w.write_all(&frame(b"small")).await.unwrap();
    w.write_all(&frame(b"")).await.unwrap();
    // The header one byte at a time, then the body in 997-byte pieces.
    for b in &big_wire[..4] {
        w.write_all(std::slice::from_ref(b)).await.unwrap();
        tokio::time::sleep(ms(2)).await;
    }
    for (i, piece) in big_wire[4..].chunks(997).enumerate() {
        w.write_all(piece).await.unwrap();
        if i % 4 == 0 {
            tokio::time::sleep(ms(1)).await;
        }
    }
    // Zero-length bodies, one of them split from its neighbour.
    let mut end = frame(b"");
    end.extend_from_slice(&frame(b""));
    end.extend_from_slice(&frame(b"tail"));
    let (a, b) = end.split_at(6);
    w.write_all(a).await.unwrap();
    tokio::time::sleep(ms(5)).await;
    w.write_all(b).await.unwrap();
    let got = reader.await.unwrap();
    same("replies", &got, &want);
    let st = srv.stats.snapshot();
    assert_eq!((st.frames_in, st.frames_out), (7, 7), "{st:?}");
    assert_eq!(st.errors_too_long + st.errors_malformed, 0, "{st:?}");
}

// ------------------------------------------------------------------ idle timeouts

/// Read-idle timeout 300 ms: a client that never sends is closed after it (never before,
/// late by at most the bound); one that sent a request and went silent is closed that long
/// after its request; one that keeps sending every 100 ms is kept for many timeouts and is
/// closed only once it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_reaps_the_silent_and_spares_the_chatty() {
    const IDLE: u64 = 300;
    let mut c = ServerConfig::new(spec("len:be:4"));
    c.liveness.read_idle = Some(ms(IDLE));
    c.liveness.frame_timeout = Some(FAR);
    let srv = echo_server(c).await;
    let check = |what: &str, took: Duration| {
        assert!(took >= ms(IDLE), "{what}: closed early, after {took:?}");
        assert!(
            took <= ms(IDLE) + late_bound(ms(IDLE)),
            "{what}: closed late, after {took:?}"
        );
    };

    let never = tokio::spawn(async move {
        let t = Instant::now();
        let mut c = Client::connect(srv.addr, "len:be:4").await;
        let took = c.closed_within(SOON).await.max(t.elapsed());
        (took, c)
    });
    let once = tokio::spawn(async move {
        let mut c = Client::connect(srv.addr, "len:be:4").await;
        let t = Instant::now();
        c.send(b"one request").await;
        assert_eq!(c.recv().await.as_deref(), Some(&b"one request"[..]));
        let took = c.closed_within(SOON).await.max(t.elapsed());
        (took, c)
    });

    let mut chatty = Client::connect(srv.addr, "len:be:4").await;
    let t = Instant::now();
    let mut k = 0;
    let mut last = t;
    while t.elapsed() < ms(IDLE * 5) {
        let body = format!("chat {k}");
        last = Instant::now();
        chatty.send(body.as_bytes()).await;
        assert_eq!(
            chatty.recv().await.as_deref(),
            Some(body.as_bytes()),
            "the chatty client was cut after {:?}",
            t.elapsed()
        );
        k += 1;
        tokio::time::sleep(ms(100)).await;
    }
    // Measured from its last frame's send (the server's clock starts at its arrival).
    let took = chatty.closed_within(SOON).await.max(last.elapsed());
    check("chatty, after it stopped", took);

    let (took, _c) = never.await.unwrap();
    check("never sent", took);
    let (took, _c) = once.await.unwrap();
    check("sent once", took);
    eventually("three idle closes counted", || {
        srv.stats.snapshot().idle_closed == 3
    })
    .await;
    let s = srv.stats.snapshot();
    assert_eq!(s.frames_in, k + 1, "{s:?}");
}
