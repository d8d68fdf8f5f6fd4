//! A long client's graceful `close`: the connection task is tracked, so `close().await`
//! returns once in-flight requests have ended and the server has read end of stream.
//!
//! The servers here are raw loopback sockets speaking `line` framing, so that each test
//! controls when a reply is written and sees the client's FIN itself.

use std::io::Read;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keepwire::client::{ByteRange, ClientBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Generous upper bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(10);

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

fn builder(addr: &str) -> ClientBuilder {
    ClientBuilder::new("line".parse().unwrap(), [addr.to_string()])
        .request_timeout(Duration::from_secs(5))
}

/// Whether the peer's FIN is in `s`'s receive queue now, without waiting: a non-blocking
/// read of the socket itself (not tokio's readiness, which may not have been polled yet).
fn fin_already_read(s: TcpStream) -> bool {
    let (rest, fin) = read_now(s);
    rest.is_empty() && fin
}

/// What `s` has received by now, without waiting, and whether the peer's FIN came after it.
fn read_now(s: TcpStream) -> (Vec<u8>, bool) {
    let mut s = s.into_std().unwrap();
    s.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// Reads one line (without its `\n`) from the server side of the connection.
async fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    let n = tokio::time::timeout(SOON, r.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0, "the client closed before sending its line");
    line.trim_end().to_string()
}

#[tokio::test]
async fn after_close_the_server_has_read_end_of_stream() {
    let (l, addr) = listener().await;
    let client = builder(&addr).connect_long().await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    let mut r = BufReader::new(s);
    let req = tokio::spawn({
        let client = client.clone();
        async move { client.request(Bytes::from_static(b"ping")).await }
    });
    assert_eq!(read_line(&mut r).await, "ping");
    r.get_mut().write_all(b"pong\n").await.unwrap();
    assert_eq!(
        tokio::time::timeout(SOON, req)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        "pong"
    );

    // A clone is still held: only `close` can end the connection, and it must have sent
    // the FIN by the time it returns (on this one-thread runtime the task runs only while
    // the test awaits).
    let other = client.clone();
    tokio::time::timeout(SOON, client.close()).await.unwrap();
    assert!(r.buffer().is_empty());
    assert!(
        fin_already_read(r.into_inner()),
        "close returned before the server could read end of stream"
    );
    drop(other);
}

#[tokio::test]
async fn a_request_in_flight_at_close_gets_its_reply_before_close_returns() {
    let (l, addr) = listener().await;
    let client = builder(&addr).connect_long().await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    let mut r = BufReader::new(s);
    let req = tokio::spawn({
        let client = client.clone();
        async move { client.request(Bytes::from_static(b"slow")).await }
    });
    assert_eq!(read_line(&mut r).await, "slow");

    let other = client.clone();
    let close = client.close();
    tokio::pin!(close);
    // The first poll decides the close; the request in flight holds it open.
    assert!(futures_util::poll!(&mut close).is_pending());
    // Closed for every clone: a new request fails at once, typed and not sent.
    let started = Instant::now();
    let e = other
        .request(Bytes::from_static(b"late"))
        .await
        .unwrap_err();
    assert!(e.is_shutdown() && e.is_not_sent(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(1));

    let (replied_tx, replied_rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        r.get_mut().write_all(b"done\n").await.unwrap();
        let _ = replied_tx.send(());
        // Nothing more comes: the next read is the FIN.
        let mut rest = String::new();
        let n = tokio::time::timeout(SOON, r.read_line(&mut rest)).await;
        (n.unwrap().unwrap(), rest)
    });
    tokio::time::timeout(SOON, &mut close).await.unwrap();
    assert!(replied_rx.await.is_ok());
    let reply = tokio::time::timeout(SOON, req).await.unwrap().unwrap();
    assert_eq!(reply.unwrap(), "done", "the reply was cut off by close");
    assert_eq!(server.await.unwrap(), (0, String::new()));
}

#[tokio::test]
async fn a_request_in_flight_at_close_times_out_before_close_returns() {
    let (l, addr) = listener().await;
    let timeout = Duration::from_millis(300);
    let client = builder(&addr)
        .request_timeout(timeout)
        .connect_long()
        .await
        .unwrap();
    let (s, _) = l.accept().await.unwrap();
    let mut r = BufReader::new(s);
    let sent = Instant::now();
    let req = tokio::spawn({
        let client = client.clone();
        async move { client.request(Bytes::from_static(b"never")).await }
    });
    assert_eq!(read_line(&mut r).await, "never");
    tokio::time::timeout(SOON, client.close()).await.unwrap();
    // Waited for the request's deadline (it began after `sent`), not cut short.
    assert!(
        sent.elapsed() >= timeout,
        "close returned after {:?}, before the request's deadline",
        sent.elapsed()
    );
    let e = req.await.unwrap().unwrap_err();
    assert!(e.is_timeout() && e.may_have_been_sent(), "{e}");
    assert!(fin_already_read(r.into_inner()));
}

#[tokio::test]
async fn close_while_backing_off_returns_at_once() {
    let (l, addr) = listener().await;
    // A long backoff: the task waits it out after the server hangs up at once.
    let client = builder(&addr)
        .reconnect_backoff(Duration::from_secs(60), Duration::from_secs(60))
        .connect_long()
        .await
        .unwrap();
    let (s, _) = l.accept().await.unwrap();
    drop(s);
    drop(l);
    // Wait (bounded) until the client has seen the loss and is backing off.
    tokio::time::timeout(SOON, async {
        while client.stats().disconnects == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    // A clone is held, so only `close` ends the backoff.
    let other = client.clone();
    let started = Instant::now();
    tokio::time::timeout(SOON, client.close()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    let e = other.request(Bytes::from_static(b"x")).await.unwrap_err();
    assert!(e.is_shutdown() && e.is_not_sent(), "{e}");
}

#[tokio::test]
async fn mux_close_waits_for_replies_in_flight() {
    let (l, addr) = listener().await;
    let mux = builder(&addr)
        .connect_mux(ByteRange::new(0, 1))
        .await
        .unwrap();
    let (s, _) = l.accept().await.unwrap();
    let mut r = BufReader::new(s);
    let reqs: Vec<_> = ["a1", "b2"]
        .into_iter()
        .map(|m| {
            let mux = mux.clone();
            tokio::spawn(async move { mux.request(Bytes::from(m)).await })
        })
        .collect();
    let mut got = vec![read_line(&mut r).await, read_line(&mut r).await];
    got.sort();
    assert_eq!(got, ["a1", "b2"]);
    let close = mux.close();
    tokio::pin!(close);
    assert!(futures_util::poll!(&mut close).is_pending());
    // Answered out of order, after the close began.
    r.get_mut().write_all(b"b-reply\na-reply\n").await.unwrap();
    tokio::time::timeout(SOON, &mut close).await.unwrap();
    let replies: Vec<_> = futures_util::future::join_all(reqs).await;
    assert_eq!(replies[0].as_ref().unwrap().as_ref().unwrap(), "a-reply");
    assert_eq!(replies[1].as_ref().unwrap().as_ref().unwrap(), "b-reply");
    assert!(fin_already_read(r.into_inner()));
}

#[tokio::test]
async fn duplex_sender_close_writes_what_was_sent_then_fin() {
    let (l, addr) = listener().await;
    let (tx, mut rx) = builder(&addr).connect_duplex().await.unwrap().split();
    let (s, _) = l.accept().await.unwrap();
    let mut r = BufReader::new(s);
    r.get_mut().write_all(b"hello\n").await.unwrap();
    assert_eq!(
        tokio::time::timeout(SOON, rx.recv())
            .await
            .unwrap()
            .unwrap(),
        "hello"
    );
    for m in ["one", "two"] {
        tx.send(Bytes::from(m)).await.unwrap();
    }
    let late = tx.clone();
    tokio::time::timeout(SOON, tx.close()).await.unwrap();
    // Both frames, then the FIN, are there by the time close returns.
    assert!(r.buffer().is_empty());
    assert_eq!(read_now(r.into_inner()), (b"one\ntwo\n".to_vec(), true));
    assert!(
        late.send(Bytes::from_static(b"three"))
            .await
            .unwrap_err()
            .is_shutdown()
    );
    // The receiver ends once the task has.
    assert_eq!(tokio::time::timeout(SOON, rx.recv()).await.unwrap(), None);
}

#[tokio::test]
async fn simplex_close_closes_both_links() {
    let (l, addr) = listener().await;
    let link = keepwire::client::Simplex::connect(builder(&addr), builder(&addr))
        .await
        .unwrap();
    // The send link connects first, then the receive link.
    let (send_side, _) = l.accept().await.unwrap();
    let (recv_side, _) = l.accept().await.unwrap();
    let mut r = BufReader::new(send_side);
    link.send(Bytes::from_static(b"out")).await.unwrap();
    assert_eq!(read_line(&mut r).await, "out");
    tokio::time::timeout(SOON, link.close()).await.unwrap();
    assert!(r.buffer().is_empty());
    assert!(fin_already_read(r.into_inner()), "send link still open");
    assert!(fin_already_read(recv_side), "receive link still open");
}
