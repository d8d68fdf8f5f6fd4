//! Hostile review of the server's hot path without waiting (issue 17): `conn/now.rs` (a read
//! batch handled as plain calls, the handler's future in a reused slot), the one `poll_fn`
//! wait of `serve_frames` and the liveness timer of `conn/clock.rs`. Real loopback sockets.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::*;
use keepwire::server::{Request, Server, ServerConfig, service_fn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Reads `n` length-prefixed frames; panics after `SOON`.
async fn read_frames(c: &mut TcpStream, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut head = [0u8; 4];
        tokio::time::timeout(SOON, c.read_exact(&mut head))
            .await
            .expect("a reply in time")
            .unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
        c.read_exact(&mut body).await.unwrap();
        out.push(body);
    }
    out
}

/// Spends what is left of the task's cooperative budget (tokio's `coop`): any handler doing
/// enough tokio I/O, channel or lock operations in one call ends there.
async fn spend_budget() {
    while tokio::task::coop::has_budget_remaining() {
        tokio::task::coop::consume_budget().await;
    }
}

fn idle_config(idle: Duration) -> ServerConfig {
    let mut cfg = ServerConfig::new(spec("len:be:4"));
    cfg.liveness.read_idle = Some(idle);
    cfg
}

/// A handler that leaves the task's coop budget spent, on a connection whose first request
/// is handled before its liveness timer was ever polled (here: it came with the PROXY
/// header): the timer is polled for the first time with no budget left, which returns
/// `Pending` without registering the task; the clock took that poll for a registration and
/// never polled it again, so the idle connection was never reaped.
#[tokio::test]
async fn idle_timer_survives_a_handler_that_spends_the_coop_budget() {
    let mut cfg = idle_config(Duration::from_millis(200));
    cfg.proxy_protocol = true;
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(service_fn(|r: Request| async move {
        spend_budget().await;
        Ok::<_, Infallible>(Some(r.frame))
    })));
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut first = b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\n".to_vec();
    first.extend_from_slice(&frame(b"hello"));
    c.write_all(&first).await.unwrap();
    assert_eq!(read_frames(&mut c, 1).await, vec![b"hello".to_vec()]);
    let mut client = Client::from_stream(c, "len:be:4");
    let took = client.closed_within(Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "reaped after {took:?}");
}
