//! Server-side liveness over real sockets: idle reaping, heartbeats, pings to idle clients,
//! slow frames. Durations are short and configured; bounds are generous.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use keepwire::liveness::{FixedHeartbeat, PingConfig};
use keepwire::server::ServerConfig;

const MS: Duration = Duration::from_millis(1);

fn cfg(framing: &str) -> ServerConfig {
    let mut c = ServerConfig::new(spec(framing));
    c.liveness.read_idle = None;
    c.liveness.frame_timeout = None;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_reaped_within_bounds() {
    const IDLE: Duration = Duration::from_secs(1);
    let mut c = cfg("len:ascii:4");
    c.liveness.read_idle = Some(IDLE);
    let srv = echo_server(c).await;
    let mut cl = Client::connect(srv.addr, "len:ascii:4").await;
    // Activity keeps it open past the timeout: a frame every 100 ms for longer than IDLE.
    // The sleep is the traffic's pacing, not synchronisation; its gaps are a tenth of the
    // timeout, so a stalled test thread (up to 900 ms) cannot make a gap look like idleness.
    // (The server takes real sockets, which tokio's paused clock cannot drive reliably; the
    // idle rule itself is tested with time passed in, in `liveness/tests.rs`.)
    let opened = tokio::time::Instant::now();
    while opened.elapsed() < IDLE + 200 * MS {
        tokio::time::sleep(100 * MS).await;
        cl.send(b"tick").await;
        assert_eq!(cl.recv().await.as_deref(), Some(&b"tick"[..]));
    }
    // ...then silence closes it: not before the timeout, and not much after.
    let took = cl.closed_within(SOON).await;
    assert!(took >= IDLE - 50 * MS, "closed too early: {took:?}");
    assert!(took < IDLE + 3000 * MS, "closed too late: {took:?}");
    eventually("idle close counted", || {
        srv.stats.snapshot().idle_closed == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_is_answered_and_not_seen_by_the_handler() {
    let mut srv = echo_server(cfg("len:ascii:4")).await;
    let mut cl = Client::connect(srv.addr, "len:ascii:4").await;
    cl.send_raw(b"0000").await.unwrap();
    // The pong: an empty frame, raw "0000" on the wire.
    assert_eq!(cl.recv().await.as_deref(), Some(&b""[..]));
    cl.send(b"data").await;
    assert_eq!(cl.recv().await.as_deref(), Some(&b"data"[..]));
    let seen = srv.seen.recv().await.unwrap();
    assert_eq!(&seen.frame[..], b"data", "the handler saw the heartbeat");
    assert!(srv.seen.try_recv().is_err());
    assert_eq!(srv.stats.snapshot().pings_answered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_off_passes_empty_frames_to_the_handler() {
    let mut c = cfg("len:be:2");
    c.heartbeat = None;
    let mut srv = echo_server(c).await;
    let mut cl = Client::connect(srv.addr, "len:be:2").await;
    cl.send(b"").await;
    assert_eq!(cl.recv().await.as_deref(), Some(&b""[..]));
    assert_eq!(srv.seen.recv().await.unwrap().frame.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_payload_heartbeats_for_fixed_framing() {
    let mut c = cfg("fixed:4");
    c.heartbeat = Some(Arc::new(FixedHeartbeat::new(&b"PING"[..], &b"PONG"[..])));
    let mut srv = echo_server(c).await;
    let mut cl = Client::connect(srv.addr, "fixed:4").await;
    cl.send(b"PING").await;
    assert_eq!(cl.recv().await.as_deref(), Some(&b"PONG"[..]));
    // A PONG is never answered.
    cl.send(b"PONG").await;
    cl.send(b"DATA").await;
    assert_eq!(cl.recv().await.as_deref(), Some(&b"DATA"[..]));
    assert_eq!(&srv.seen.recv().await.unwrap().frame[..], b"DATA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_pings_idle_clients_and_drops_silent_ones() {
    let mut c = cfg("len:be:2");
    c.liveness.ping = Some(PingConfig {
        interval: 150 * MS,
        timeout: 100 * MS,
        misses: 2,
    });
    let srv = echo_server(c).await;

    // A client that answers stays connected over several intervals.
    let mut good = Client::connect(srv.addr, "len:be:2").await;
    let t = tokio::time::Instant::now();
    let mut pings = 0;
    while t.elapsed() < 900 * MS {
        let f = good
            .recv()
            .await
            .expect("connection closed although pongs were sent");
        assert!(f.is_empty(), "expected a ping");
        pings += 1;
        good.send(b"").await; // pong
    }
    assert!(
        (3..=12).contains(&pings),
        "{pings} pings in 900 ms at a 150 ms interval"
    );
    drop(good); // a clean close, not a heartbeat timeout

    // A client that never answers is closed after interval*misses + timeout (400 ms here).
    let mut silent = Client::connect(srv.addr, "len:be:2").await;
    let took = silent.closed_within(SOON).await;
    assert!(took >= 350 * MS, "{took:?}");
    assert!(took < 3000 * MS, "{took:?}");
    eventually("heartbeat timeout counted", || {
        srv.stats.snapshot().heartbeat_timeouts == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_frame_is_cut_off() {
    let mut c = cfg("len:ascii:4");
    c.liveness.frame_timeout = Some(300 * MS);
    let srv = echo_server(c).await;
    let mut cl = Client::connect(srv.addr, "len:ascii:4").await;
    // A header then one body byte every 100 ms: the frame would take 2 s.
    cl.send_raw(b"0020").await.unwrap();
    let t = tokio::time::Instant::now();
    let mut cut = false;
    for _ in 0..20 {
        // The attack's pacing, not synchronisation: a stall only sends the bytes later.
        tokio::time::sleep(100 * MS).await;
        if cl.send_raw(b"x").await.is_err() {
            cut = true;
            break;
        }
        if t.elapsed() > 1500 * MS {
            break;
        }
    }
    if !cut {
        cl.closed_within(SOON).await;
    }
    // Cut at the frame timeout: not before it, and long before the frame would complete.
    assert!(t.elapsed() >= 250 * MS, "cut too early: {:?}", t.elapsed());
    assert!(
        t.elapsed() < 3 * Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
    eventually("frame timeout counted", || {
        srv.stats.snapshot().frame_timeouts == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_idle_closes_a_connection_we_never_answer() {
    let mut c = cfg("len:be:2");
    c.liveness.write_idle = Some(300 * MS);
    let srv = echo_server(c).await;
    let mut cl = Client::connect(srv.addr, "len:be:2").await;
    let took = cl.closed_within(SOON).await;
    assert!(took >= 250 * MS && took < 3000 * MS, "{took:?}");
    drop(srv);
}
