//! A long client's graceful `close`: the connection task is tracked, so `close().await`
//! returns once in-flight requests have ended and the server has read end of stream.
//!
//! The servers here are raw loopback sockets speaking `line` framing, so that each test
//! controls when a reply is written and sees the client's FIN itself. The second half is
//! the hostile review of `close`: races with many clones, two closes, a close dropped
//! midway, a close while the write side is stalled or a connect hangs; no task outlives it.

use std::io::Read;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keepwire::client::{ByteRange, ClientBuilder, LongClient};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

mod common;

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

// Hostile review of close.

/// Echoes lines on one accepted connection until the client's FIN.
async fn echo(s: TcpStream) {
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    while r.read_until(b'\n', &mut line).await.unwrap_or(0) > 0 {
        if w.write_all(&line).await.is_err() {
            return;
        }
        line.clear();
    }
}

/// Waits (bounded) until no more than `n` tasks are alive on this runtime.
async fn alive_at_most(n: usize, what: &str) {
    let metrics = tokio::runtime::Handle::current().metrics();
    tokio::time::timeout(SOON, async {
        while metrics.num_alive_tasks() > n {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: {} tasks alive", metrics.num_alive_tasks()));
}

/// 32 clones request in a loop while one closes: every request ends answered or with a
/// typed shutdown error (never a timeout, never a hang), `close` returns, and no task of
/// the client outlives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_racing_requests_from_many_clones() {
    let (l, addr) = listener().await;
    let client = builder(&addr).connect_long().await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    let server = tokio::spawn(echo(s));
    let mut callers = Vec::new();
    for i in 0..32 {
        let c = client.clone();
        callers.push(tokio::spawn(async move {
            let mut answered = 0u32;
            loop {
                let frame = Bytes::from(format!("req {i} {answered}"));
                match c.request(frame.clone()).await {
                    Ok(reply) => {
                        assert_eq!(reply, frame);
                        answered += 1;
                    }
                    Err(e) => {
                        assert!(e.is_shutdown(), "{e}");
                        return answered;
                    }
                }
            }
        }));
    }
    // Let every caller get going, then close from yet another clone.
    let closer = client.clone();
    tokio::time::timeout(SOON, async {
        let _ = client.request(Bytes::from_static(b"warm")).await;
    })
    .await
    .unwrap();
    let started = Instant::now();
    tokio::time::timeout(SOON, closer.close())
        .await
        .expect("close returns");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for c in callers {
        tokio::time::timeout(SOON, c).await.unwrap().unwrap();
    }
    let e = client
        .request(Bytes::from_static(b"late"))
        .await
        .unwrap_err();
    assert!(e.is_shutdown() && e.is_not_sent(), "{e}");
    drop(client);
    tokio::time::timeout(SOON, server).await.unwrap().unwrap();
    // Only the test's own task is left.
    alive_at_most(0, "after close").await;
}

/// Two clones close at once while a request is in flight that the server never answers:
/// both closes return once it has timed out, and neither waits longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clones_close_at_once() {
    let (l, addr) = listener().await;
    let client = builder(&addr)
        .request_timeout(Duration::from_millis(500))
        .connect_long()
        .await
        .unwrap();
    let (s, _) = l.accept().await.unwrap();
    let mut r = BufReader::new(s);
    let req = tokio::spawn({
        let c = client.clone();
        async move { c.request(Bytes::from_static(b"never answered")).await }
    });
    let mut line = String::new();
    tokio::time::timeout(SOON, r.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let a = tokio::spawn(client.clone().close());
    let b = tokio::spawn(client.close());
    tokio::time::timeout(SOON, a).await.unwrap().unwrap();
    tokio::time::timeout(SOON, b).await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let e = req.await.unwrap().unwrap_err();
    assert!(e.is_timeout(), "{e}");
    // The server reads end of stream.
    let mut rest = Vec::new();
    tokio::time::timeout(SOON, r.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    alive_at_most(0, "after both closes").await;
}

/// A close future dropped after its first poll still closes: requests through other
/// clones fail at once, the request in flight gets its reply, the server reads end of
/// stream, and the connection task ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_dropped_midway_still_closes() {
    let (l, addr) = listener().await;
    let client = builder(&addr).connect_long().await.unwrap();
    let other = client.clone();
    let (s, _) = l.accept().await.unwrap();
    let mut r = BufReader::new(s);
    let req = tokio::spawn({
        let c = client.clone();
        async move { c.request(Bytes::from_static(b"held")).await }
    });
    let mut line = String::new();
    tokio::time::timeout(SOON, r.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    // Polled (the close is decided), then dropped while it waits for the request.
    let mut close = Box::pin(client.close());
    assert!(futures_util::poll!(close.as_mut()).is_pending());
    drop(close);
    let e = other
        .request(Bytes::from_static(b"late"))
        .await
        .unwrap_err();
    assert!(e.is_shutdown() && e.is_not_sent(), "{e}");
    r.get_mut().write_all(b"held\n").await.unwrap();
    let reply = tokio::time::timeout(SOON, req).await.unwrap().unwrap();
    assert_eq!(reply.unwrap(), "held");
    let mut rest = Vec::new();
    tokio::time::timeout(SOON, r.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    drop(other);
    alive_at_most(0, "after the dropped close").await;
}

/// The server never reads: the client's writes stall once the socket buffers are full.
/// `close` is then bounded by the write timeout, not by the requests' (longer) deadlines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_while_the_write_is_stalled_is_bounded_by_the_write_timeout() {
    let (l, addr) = listener().await;
    let client: LongClient = builder(&addr)
        .write_timeout(Duration::from_millis(300))
        .request_timeout(Duration::from_secs(8))
        .connect_long()
        .await
        .unwrap();
    let (s, _) = l.accept().await.unwrap();
    // Far more than loopback socket buffers hold.
    let big = Bytes::from(vec![b'x'; 4 * 1024 * 1024]);
    let mut reqs = Vec::new();
    for _ in 0..4 {
        let c = client.clone();
        let big = big.clone();
        reqs.push(tokio::spawn(async move { c.request(big).await }));
    }
    // The writes have stalled: the kernel holds bytes the server never acknowledges.
    let (local, remote) = (s.peer_addr().unwrap(), s.local_addr().unwrap());
    common::eventually("the client's writes stall", || {
        keepwire::tcpstate::sockets_detailed()
            .unwrap()
            .iter()
            .any(|t| t.entry.local == local && t.entry.remote == remote && t.send_queue > 0)
    })
    .await;
    let started = Instant::now();
    tokio::time::timeout(SOON, client.close())
        .await
        .expect("close returns");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "close took {took:?}");
    // Each request ended by the close, within its bound (asserted above), not by its 8 s
    // deadline.
    for r in reqs {
        let _ = tokio::time::timeout(SOON, r)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
    }
    drop(s);
    alive_at_most(0, "after close").await;
}

/// The connection is lost and the only endpoint left drops SYNs: `close` during that
/// connect returns at once, not after the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_a_connect_to_a_black_hole_returns_at_once() {
    let (l, good) = listener().await;
    let (_hole, _filler, hole) = common::blackhole();
    let hole = hole.to_string();
    let client = ClientBuilder::new("line".parse().unwrap(), [good, hole.clone()])
        .connect_timeout(Duration::from_secs(8))
        .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(1))
        .connect_long()
        .await
        .unwrap();
    let (s, _) = l.accept().await.unwrap();
    drop(l);
    drop(s);
    // Bounded: the good endpoint refuses and is marked down; the next try is the hole.
    tokio::time::timeout(SOON, async {
        while client.endpoints().iter().all(|e| e.up) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let other = client.clone();
    let started = Instant::now();
    tokio::time::timeout(SOON, client.close()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let e = other.request(Bytes::from_static(b"x")).await.unwrap_err();
    assert!(e.is_shutdown() && e.is_not_sent(), "{e}");
    drop(other);
    alive_at_most(0, "after close").await;
}

/// The peer floods frames that nobody reads (the receiver is held, its queue full) and
/// keeps flooding during the close: `DuplexSender::close` still returns at once, and the
/// receiver then ends after what it had queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplex_close_with_the_inbound_queue_full_and_the_peer_flooding() {
    let (l, addr) = listener().await;
    let (tx, mut rx) = builder(&addr)
        .unsolicited_capacity(2)
        .connect_duplex()
        .await
        .unwrap()
        .split();
    let (s, _) = l.accept().await.unwrap();
    let (mut sr, mut sw) = s.into_split();
    let flood = tokio::spawn(async move {
        let line = Bytes::from(
            vec![b'f'; 1023]
                .into_iter()
                .chain([b'\n'])
                .collect::<Vec<u8>>(),
        );
        while sw.write_all(&line).await.is_ok() {}
    });
    tokio::time::timeout(SOON, async {
        while tx.stats().unsolicited_dropped == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the inbound queue fills");
    let started = Instant::now();
    tokio::time::timeout(SOON, tx.close())
        .await
        .expect("close returns");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The server reads end of stream.
    let mut rest = Vec::new();
    tokio::time::timeout(SOON, sr.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let mut queued = 0;
    while tokio::time::timeout(SOON, rx.recv())
        .await
        .unwrap()
        .is_some()
    {
        queued += 1;
    }
    assert!(queued <= 2, "{queued}");
    drop(rx);
    flood.abort();
    let _ = flood.await;
    alive_at_most(0, "after close").await;
}
