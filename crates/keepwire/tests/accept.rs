//! The accept loop (issue 17: a cheaper accept path): bursts of short connections served and
//! released, caps enforced in the middle of a burst, connections that arrive as the shutdown
//! starts drained rather than dropped, and a shutdown seen while connections keep arriving.
//! Each test runs on a current-thread runtime (as `keepwire serve` does on one CPU) and on a
//! multi-thread one.

mod common;

use std::time::Duration;

use common::*;
use keepwire::server::ServerConfig;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const FRAMING: &str = "len:be:2";

/// `n` clients at once, each: connect, one request, its reply, close.
async fn short_burst(addr: std::net::SocketAddr, n: usize) {
    let mut clients = JoinSet::new();
    for i in 0..n {
        clients.spawn(async move {
            let mut c = Client::connect(addr, FRAMING).await;
            let body = format!("request {i}");
            c.send(body.as_bytes()).await;
            assert_eq!(c.recv().await.as_deref(), Some(body.as_bytes()));
        });
    }
    tokio::time::timeout(SOON, async {
        while let Some(r) = clients.join_next().await {
            r.expect("a client failed");
        }
    })
    .await
    .expect("the burst was not served within the bound");
}

async fn burst_served_and_released() {
    let srv = echo_server(ServerConfig::new(spec(FRAMING))).await;
    short_burst(srv.addr, 300).await;
    // Every connection ends and is counted, with no further accept to drive anything.
    eventually("300 connections closed", || {
        srv.stats.snapshot().closed == 300
    })
    .await;
    let s = srv.stats.snapshot();
    assert_eq!((s.accepted, s.frames_in, s.frames_out), (300, 300, 300));
    // A second burst on the same server: the slots of the first were given back.
    short_burst(srv.addr, 300).await;
    eventually("600 connections closed", || {
        srv.stats.snapshot().closed == 600
    })
    .await;
    srv.stop.cancel();
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    assert_eq!(report.force_closed, 0, "{report:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_burst_of_short_connections_is_served_and_released_current_thread() {
    burst_served_and_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_short_connections_is_served_and_released_multi_thread() {
    burst_served_and_released().await;
}

async fn max_conns_in_a_burst() {
    let mut cfg = ServerConfig::new(spec(FRAMING));
    cfg.max_conns = 4;
    let srv = echo_server(cfg).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = Client::connect(srv.addr, FRAMING).await;
        c.send(b"hold").await;
        assert_eq!(c.recv().await.as_deref(), Some(&b"hold"[..]));
        held.push(c);
    }
    // 40 more at once: each is accepted, refused with a reset and counted.
    let mut extra = JoinSet::new();
    for _ in 0..40 {
        let addr = srv.addr;
        extra.spawn(async move {
            // The reset may come before connect() even reports success on loopback.
            if let Ok(s) = TcpStream::connect(addr).await {
                Client::from_stream(s, FRAMING).closed_within(SOON).await;
            }
        });
    }
    while let Some(r) = extra.join_next().await {
        r.expect("a refused client failed");
    }
    eventually("40 rejections counted", || {
        srv.stats.snapshot().rejected_max_conns == 40
    })
    .await;
    // The held connections are still served; once they close, new ones are too.
    held[0].send(b"still here").await;
    assert_eq!(held[0].recv().await.as_deref(), Some(&b"still here"[..]));
    drop(held);
    // Refused connections are not counted as closed: they were never served.
    eventually("the held connections closed", || {
        srv.stats.snapshot().closed == 4
    })
    .await;
    short_burst(srv.addr, 4).await;
    assert_eq!(srv.stats.snapshot().rejected_max_conns, 40);
}

#[tokio::test(flavor = "current_thread")]
async fn max_conns_refuses_in_the_middle_of_a_burst_current_thread() {
    max_conns_in_a_burst().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_conns_refuses_in_the_middle_of_a_burst_multi_thread() {
    max_conns_in_a_burst().await;
}

/// A client connects and sends its request, and the shutdown starts at once: whether the
/// accept loop or the backlog sweep takes the connection, its request is answered.
async fn arrival_at_shutdown() {
    for round in 0..20 {
        let mut cfg = ServerConfig::new(spec(FRAMING));
        cfg.shutdown_grace = Duration::from_secs(5);
        let srv = echo_server(cfg).await;
        let mut c = Client::connect(srv.addr, FRAMING).await;
        c.send(b"just in time").await;
        srv.stop.cancel();
        assert_eq!(
            c.recv().await.as_deref(),
            Some(&b"just in time"[..]),
            "round {round}"
        );
        c.closed_within(SOON).await;
        // Our FIN: the server's drain waits for it after its own.
        drop(c);
        let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
        assert_eq!(report.force_closed, 0, "round {round}: {report:?}");
        let s = srv.stats.snapshot();
        assert_eq!((s.accepted, s.closed), (1, 1), "round {round}: {s:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_arriving_as_the_shutdown_starts_is_drained_current_thread() {
    arrival_at_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_arriving_as_the_shutdown_starts_is_drained_multi_thread() {
    arrival_at_shutdown().await;
}

/// Connections keep arriving (a client task connecting in a loop, each connection served
/// one request) when the shutdown starts: the accept loop stops, the port refuses, and
/// everything accepted is drained.
async fn shutdown_under_load() {
    let mut cfg = ServerConfig::new(spec(FRAMING));
    cfg.shutdown_grace = Duration::from_secs(5);
    let srv = echo_server(cfg).await;
    let addr = srv.addr;
    let load = tokio::spawn(async move {
        let mut answered = 0u64;
        for _ in 0..100_000 {
            let Ok(stream) = TcpStream::connect(addr).await else {
                break;
            };
            let mut c = Client::from_stream(stream, FRAMING);
            if c.send_raw(b"\x00\x01x").await.is_err() {
                continue;
            }
            if c.recv().await.is_some() {
                answered += 1;
            }
        }
        answered
    });
    eventually("some connections served", || {
        srv.stats.snapshot().closed >= 50
    })
    .await;
    srv.stop.cancel();
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    assert_eq!(report.force_closed, 0, "{report:?}");
    let answered = tokio::time::timeout(SOON, load).await.unwrap().unwrap();
    let s = srv.stats.snapshot();
    assert_eq!(s.accepted, s.closed, "{s:?}");
    // Every connection accepted got its answer, except perhaps the one whose request was
    // still on its way when the drain closed it idle.
    assert!(answered + 1 >= s.accepted, "{answered} answered, {s:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_shutdown_is_seen_while_connections_keep_arriving_current_thread() {
    shutdown_under_load().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_is_seen_while_connections_keep_arriving_multi_thread() {
    shutdown_under_load().await;
}
