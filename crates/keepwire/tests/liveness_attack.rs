//! Hostile review of the coalesced liveness deadlines (issue 17, `server/conn/clock.rs`):
//! deadlines rounded up onto shared slots must never fire early and never later than the
//! documented bound (1/64 of the wait, at most about a second; waits under 128 ms exact).
//! Real loopback sockets; short configured durations, generous upper bounds.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::*;
use keepwire::liveness::PingConfig;
use keepwire::server::{Request, Server, ServerConfig, service_fn};
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Scheduling slack on a loaded 2-core machine, on top of the documented lateness.
const SLACK: Duration = Duration::from_millis(400);

fn cfg() -> ServerConfig {
    ServerConfig::new(spec("len:be:4"))
}

/// The documented bound on how late a deadline `wait` away may fire.
fn late_bound(wait: Duration) -> Duration {
    (wait / 64).min(Duration::from_millis(1024)) + SLACK
}

/// Connects, optionally sends `first` (raw bytes), and measures from just before the
/// connect (or the send) until the server closes.
async fn time_to_close(addr: std::net::SocketAddr, first: Option<&[u8]>) -> Duration {
    let t = Instant::now();
    let mut c = Client::connect(addr, "len:be:4").await;
    let t = match first {
        Some(b) => {
            let t = Instant::now();
            c.send_raw(b).await.unwrap();
            t
        }
        None => t,
    };
    c.closed_within(SOON).await;
    t.elapsed()
}

fn check(what: &str, took: Duration, want: Duration) {
    assert!(
        took >= want,
        "{what}: fired early, after {took:?} < {want:?}"
    );
    assert!(
        took <= want + late_bound(want),
        "{what}: fired late, after {took:?} (want {want:?} + {:?})",
        late_bound(want)
    );
}

/// Idle, write-idle and any-idle timeouts just under, at and over the 128 ms threshold,
/// and at a couple of seconds: each connection closed never before its timeout and late by
/// at most the documented bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeouts_around_the_threshold_and_at_seconds_fire_in_bounds() {
    let mut tasks = Vec::new();
    for ms in [100u64, 127, 128, 129, 200, 1_000, 2_500] {
        for kind in 0..3 {
            let mut c = cfg();
            let d = MS(ms);
            match kind {
                0 => c.liveness.read_idle = Some(d),
                1 => c.liveness.write_idle = Some(d),
                _ => c.liveness.any_idle = Some(d),
            }
            let srv = echo_server(c).await;
            tasks.push(tokio::spawn(async move {
                let took = time_to_close(srv.addr, None).await;
                check(&format!("kind {kind}, {ms} ms"), took, d);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A partial frame then silence: the frame timeout fires in bounds, below and above the
/// threshold, with a read-idle timeout far away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_frame_then_silence_hits_the_frame_timeout_in_bounds() {
    let mut tasks = Vec::new();
    for ms in [90u64, 130, 700, 2_000] {
        let mut c = cfg();
        c.liveness.frame_timeout = Some(MS(ms));
        c.liveness.read_idle = Some(Duration::from_secs(60));
        let srv = echo_server(c).await;
        tasks.push(tokio::spawn(async move {
            // A header for 10 bytes and 3 of them.
            let took = time_to_close(srv.addr, Some(&[0, 0, 0, 10, 1, 2, 3])).await;
            check(&format!("frame timeout {ms} ms"), took, MS(ms));
            assert_eq!(srv.stats.snapshot().frame_timeouts, 1);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn ping_cfg(interval: u64, timeout: u64, misses: u32) -> ServerConfig {
    let mut c = cfg();
    c.liveness.ping = Some(PingConfig {
        interval: MS(interval),
        timeout: MS(timeout),
        misses,
    });
    c
}

/// A client that never answers: closed `interval × misses + timeout` after its last frame
/// (timeout under the interval), never earlier, within the bound; at intervals below and
/// above the threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_its_misses_in_bounds() {
    let mut tasks = Vec::new();
    for (interval, timeout, misses) in [(100u64, 50u64, 3u32), (200, 130, 2), (1_000, 300, 2)] {
        let srv = echo_server(ping_cfg(interval, timeout, misses)).await;
        tasks.push(tokio::spawn(async move {
            let want = MS(interval * u64::from(misses) + timeout);
            let took = time_to_close(srv.addr, None).await;
            // Each of the 2 × misses deadlines may be late by its own bound.
            let most = want + late_bound(MS(interval)) * (2 * misses) + SLACK;
            assert!(
                took >= want,
                "{interval}/{timeout}/{misses}: closed early, {took:?}"
            );
            assert!(
                took <= most,
                "{interval}/{timeout}/{misses}: closed late, {took:?}"
            );
            assert_eq!(srv.stats.snapshot().heartbeat_timeouts, 1);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A client that pings too (same bytes), answers the server's pings late (inside the
/// timeout), and sends data now and then: never closed for a heartbeat timeout; then it falls
/// silent and is reaped. A panic of the clock's debug assertion would end the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pinging_both_ways_and_answering_late_is_kept_then_reaped() {
    let srv = echo_server(ping_cfg(150, 120, 2)).await;
    let mut c = Client::connect(srv.addr, "len:be:4").await;
    let end = Instant::now() + Duration::from_millis(1_800);
    let mut pings_seen = 0u32;
    let mut i = 0u32;
    while Instant::now() < end {
        i += 1;
        // Our own ping (nothing of ours outstanding at the server: it answers), or data.
        if i % 3 == 0 {
            c.send(format!("data-{i}").as_bytes()).await;
        } else {
            c.send(b"").await;
        }
        // Whatever comes in the next 100 ms: server pings answered after 80 ms.
        let until = Instant::now() + MS(100);
        while let Ok(f) = tokio::time::timeout_at(until, c.recv()).await {
            let f = f.expect("server closed a live connection");
            if f.is_empty() {
                pings_seen += 1;
                tokio::time::sleep(MS(80)).await;
                c.send(b"").await;
            }
        }
    }
    assert!(pings_seen > 0, "no heartbeat frames at all");
    assert_eq!(
        srv.stats.snapshot().heartbeat_timeouts,
        0,
        "false heartbeat timeout"
    );
    let took = c.closed_within(Duration::from_secs(5)).await;
    assert!(
        took <= MS(150 * 2 + 120) + SLACK * 3,
        "reaped after {took:?}"
    );
    eventually("the heartbeat timeout counted", || {
        srv.stats.snapshot().heartbeat_timeouts == 1
    })
    .await;
}

/// Hundreds of connections with the same interval: while they answer, every one keeps
/// getting pings (none starves) and none is closed; silent, all are reaped within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_connections_on_one_interval_are_all_pinged_then_all_reaped() {
    const N: usize = 300;
    let srv = echo_server(ping_cfg(200, 150, 2)).await;
    let mut conns = Vec::new();
    for _ in 0..N {
        conns.push(Client::connect(srv.addr, "len:be:4").await);
    }
    let mut tasks = Vec::new();
    for mut c in conns {
        tasks.push(tokio::spawn(async move {
            // Answer pings for 1.2 s: at a 200 ms interval, at least 3 pings.
            let end = Instant::now() + MS(1_200);
            let mut pings = 0;
            while let Ok(f) = tokio::time::timeout_at(end, c.recv()).await {
                assert!(f.is_some_and(|f| f.is_empty()), "closed or not a ping");
                pings += 1;
                c.send(b"").await;
            }
            assert!(pings >= 3, "starved: {pings} pings in 1.2 s");
            let t = Instant::now();
            c.closed_within(SOON).await;
            t.elapsed()
        }));
    }
    let mut worst = Duration::ZERO;
    for t in tasks {
        worst = worst.max(t.await.unwrap());
    }
    // Silent: ping, miss, ping, miss → closed 2 × 200 + 150 ms after the last pong.
    assert!(
        worst <= MS(550) + SLACK * 4,
        "slowest reaped after {worst:?}"
    );
    assert_eq!(srv.stats.snapshot().heartbeat_timeouts as usize, N);
}

/// A reply written late (a handler slower than half the write-idle timeout): nothing
/// written for `write_idle` means counted from that reply, so the connection is not closed
/// sooner than `write_idle` after it.
///
/// Was broken: the batch recorded its writes at its one clock reading, taken before the
/// handler ran, so after a 600 ms handler the 1 s write-idle timeout closed the connection
/// 400 ms after the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_idle_counts_from_a_late_reply() {
    let mut c = cfg();
    c.liveness.write_idle = Some(MS(1_000));
    let srv = start(c, "127.0.0.1:0", Some(MS(600))).await;
    let mut cl = Client::connect(srv.addr, "len:be:4").await;
    cl.send(b"slow").await;
    let got = cl.recv().await;
    let t = Instant::now();
    assert_eq!(got.as_deref(), Some(&b"slow"[..]));
    cl.closed_within(SOON).await;
    let took = t.elapsed();
    assert!(
        took >= MS(950),
        "closed {took:?} after a reply, write_idle 1 s"
    );
}

/// Frames arriving a little faster than the read-idle timeout: the armed timer fires early
/// (frames moved the deadline later) and is re-armed from a fresh step; the connection is
/// never closed while frames come, and is closed in bounds once they stop. Below and above
/// the 128 ms threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_just_inside_the_idle_timeout_keep_the_connection() {
    let mut tasks = Vec::new();
    for (idle, every) in [(100u64, 40u64), (150, 60), (600, 250)] {
        let mut c = cfg();
        c.liveness.read_idle = Some(MS(idle));
        let srv = echo_server(c).await;
        tasks.push(tokio::spawn(async move {
            let mut cl = Client::connect(srv.addr, "len:be:4").await;
            let end = Instant::now() + MS(1_500);
            while Instant::now() < end {
                cl.send(b"x").await;
                let got = cl.recv().await;
                assert!(got.is_some(), "{idle} ms: closed while frames came");
                tokio::time::sleep(MS(every)).await;
            }
            cl.send(b"last").await;
            let t = Instant::now();
            assert!(cl.recv().await.is_some(), "{idle} ms: closed early");
            cl.closed_within(SOON).await;
            check(
                &format!("idle {idle} ms after frames"),
                t.elapsed(),
                MS(idle),
            );
            assert_eq!(srv.stats.snapshot().idle_closed, 1);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The other half of that fix: a partial frame read with a slow request still starts its
/// slow-frame clock when its bytes arrived, not after the handler: closed right after the
/// reply (the deadline passed during the call), not `frame_timeout` later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_frame_behind_a_slow_request_times_from_its_arrival() {
    let mut c = cfg();
    c.liveness.frame_timeout = Some(MS(800));
    let srv = start(c, "127.0.0.1:0", Some(MS(1_000))).await;
    let mut cl = Client::connect(srv.addr, "len:be:4").await;
    let t = Instant::now();
    // A whole request, then a header for 10 bytes and 3 of them, in one write.
    cl.send_raw(&[0, 0, 0, 4, b's', b'l', b'o', b'w', 0, 0, 0, 10, 1, 2, 3])
        .await
        .unwrap();
    assert_eq!(cl.recv().await.as_deref(), Some(&b"slow"[..]));
    cl.closed_within(SOON).await;
    let took = t.elapsed();
    assert!(took >= MS(800), "closed early, {took:?}");
    assert!(
        took <= MS(1_000) + SLACK,
        "closed {took:?} after the partial frame"
    );
    assert_eq!(srv.stats.snapshot().frame_timeouts, 1);
}

/// And frames pipelined behind a slow request count as read when they arrived: a client
/// that sent a slow request and a fast one, then fell silent, is closed for read idle right
/// after the replies (the deadline passed during the call), not `read_idle` after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_behind_a_slow_request_count_as_read_when_they_arrived() {
    let mut c = cfg();
    c.liveness.read_idle = Some(MS(800));
    let server = Server::bind("127.0.0.1:0", c).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(service_fn(|r: Request| async move {
        if r.frame.as_ref() == b"a" {
            tokio::time::sleep(MS(1_000)).await;
        }
        Ok::<_, Infallible>(Some(r.frame))
    })));
    let mut cl = Client::connect(addr, "len:be:4").await;
    let t = Instant::now();
    cl.send_raw(&[0, 0, 0, 1, b'a', 0, 0, 0, 1, b'b'])
        .await
        .unwrap();
    assert_eq!(cl.recv().await.as_deref(), Some(&b"a"[..]));
    assert_eq!(cl.recv().await.as_deref(), Some(&b"b"[..]));
    cl.closed_within(SOON).await;
    let took = t.elapsed();
    assert!(took >= MS(1_000), "closed before the slow reply, {took:?}");
    assert!(
        took <= MS(1_000) + SLACK,
        "closed {took:?} after the requests, read idle 800 ms"
    );
}
