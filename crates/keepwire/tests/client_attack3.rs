//! Hostile review of the async clients after their split around the sans-IO core (issue
//! 10). Each test names what it attacks; the module docs of a test say whether it failed on
//! the code it was written against. Misbehaving peers are raw tokio listeners on
//! 127.0.0.1; every wait is bounded.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use keepwire::client::ByteRange;
use keepwire::frame::FrameCodec;
use keepwire::server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Broke: `queue(usize::MAX)` and `unsolicited_capacity(usize::MAX)` went straight into
/// tokio's bounded channels, which panic above `Semaphore::MAX_PERMITS` (`usize::MAX >>
/// 3`): connecting a long, mux or duplex client with an absurd but legal capacity panicked
/// in the caller. Capacities are now capped at what a channel can hold.
#[tokio::test]
async fn attack3_huge_queue_and_unsolicited_capacity_do_not_panic() {
    let server = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let big = |b: keepwire::client::ClientBuilder| {
        b.queue(usize::MAX)
            .unsolicited_capacity(usize::MAX)
            .max_in_flight(usize::MAX)
    };
    let long = big(builder("len:ascii:4", &[server.addr]))
        .connect_long()
        .await
        .unwrap();
    assert_eq!(long.request(b("ping")).await.unwrap(), "ping");
    let mux = big(builder("len:ascii:4", &[server.addr]))
        .connect_mux(ByteRange::new(0, 2))
        .await
        .unwrap();
    assert_eq!(mux.request(b("k1mux")).await.unwrap(), "k1mux");
    let (tx, mut rx) = big(builder("len:ascii:4", &[server.addr]))
        .connect_duplex()
        .await
        .unwrap()
        .split();
    tx.send(b("dup")).await.unwrap();
    let got = tokio::time::timeout(SOON, rx.recv()).await.unwrap();
    assert_eq!(got.unwrap(), "dup");
    let stats = long.stats();
    assert_eq!((stats.connects, stats.disconnects), (1, 0), "{stats:?}");
}

/// Held before and after: a caller that drops its request future after the request was
/// written, then drops the client: nothing can use the reply, so the connection task must
/// not hold the socket until the request's (long) timeout. The peer sees the close at
/// once.
///
/// Broke: the task stayed until the abandoned request's reply deadline (60 s here), a
/// task and a socket leaked per dropped client.
#[tokio::test]
async fn attack3_dropped_client_with_abandoned_request_closes_promptly() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (seen_tx, mut seen_rx) = mpsc::channel::<()>(1);
    let peer = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut codec = FrameCodec::new(spec("len:ascii:4"));
        let mut buf = BytesMut::new();
        // The request arrives; never answer it.
        let f = read_frame(&mut s, &mut codec, &mut buf).await;
        assert_eq!(f.as_deref(), Some(&b"wait"[..]));
        seen_tx.send(()).await.unwrap();
        // Then wait for the client's close.
        let mut rest = [0u8; 64];
        let t = Instant::now();
        loop {
            match s.read(&mut rest).await {
                Ok(0) | Err(_) => return t.elapsed(),
                Ok(_) => {}
            }
        }
    });
    let client = builder("len:ascii:4", &[addr])
        .request_timeout(Duration::from_secs(60))
        .connect_long()
        .await
        .unwrap();
    let c2 = client.clone();
    let req = tokio::spawn(async move { c2.request(b("wait")).await });
    tokio::time::timeout(SOON, seen_rx.recv()).await.unwrap();
    req.abort();
    assert!(req.await.unwrap_err().is_cancelled());
    drop(client);
    let closed_after = tokio::time::timeout(Duration::from_secs(3), peer)
        .await
        .expect("the connection of a dropped client with only abandoned requests stays open")
        .unwrap();
    assert!(closed_after < Duration::from_secs(2), "{closed_after:?}");
}

/// Held (new coverage of the whole-write deadline): a peer that reads a few bytes now and
/// then never stalls for the whole write timeout, so a per-stall timeout would wait
/// forever; the pipeline's write step bounds the whole write from its first wait. The
/// request fails as may-have-been-sent, once, and the connection is counted lost.
#[tokio::test]
async fn attack3_trickle_reader_hits_the_whole_write_deadline() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut byte = [0u8; 16];
        // A trickle: 16 bytes every 20 ms, until the client gives up.
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            match s.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    let write_timeout = Duration::from_millis(400);
    let client = builder("len:be:4", &[addr])
        .write_timeout(write_timeout)
        .request_timeout(Duration::from_secs(8))
        .connect_long()
        .await
        .unwrap();
    let big = Bytes::from(vec![b'x'; 8_000_000]);
    let t = Instant::now();
    let err = tokio::time::timeout(SOON, client.request(big))
        .await
        .expect("a trickling reader held the write past every bound")
        .unwrap_err();
    let took = t.elapsed();
    assert!(err.may_have_been_sent(), "{err}");
    assert!(
        took < write_timeout * 4,
        "the write took {took:?} with a {write_timeout:?} write timeout: bounded per stall, \
         not as a whole"
    );
    let stats = client.stats();
    assert_eq!(stats.disconnects, 1, "{stats:?}");
    drop(client);
    peer.abort();
}

/// Held (new coverage: drop, not timeout): a mux caller drops its future after the
/// request was written; the reply that then comes is late, goes to the unsolicited stream
/// and is counted exactly once; the key is free again for the next request.
#[tokio::test]
async fn attack3_mux_dropped_request_reply_is_late_once() {
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let served = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&served);
    let addr = raw_server(move |mut s| {
        let mut go = go_rx.clone();
        let n = Arc::clone(&n);
        async move {
            let mut codec = FrameCodec::new(spec("len:ascii:4"));
            let mut buf = BytesMut::new();
            while let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await {
                let first = n.fetch_add(1, Ordering::SeqCst) == 0;
                if first {
                    // Hold the first reply until the caller has given up.
                    let _ = go.wait_for(|g| *g).await;
                }
                let mut out = BytesMut::new();
                codec.encode_to(&f, &mut out).unwrap();
                if s.write_all(&out).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let mux = builder("len:ascii:4", &[addr])
        .connect_mux(ByteRange::new(0, 2))
        .await
        .unwrap();
    let mut unsolicited = mux.unsolicited().unwrap();
    let m2 = mux.clone();
    let req = tokio::spawn(async move { m2.request(b("k1first")).await });
    eventually("the first request reaches the peer", || {
        served.load(Ordering::SeqCst) == 1
    })
    .await;
    req.abort();
    let _ = req.await;
    go_tx.send(true).unwrap();
    let late = tokio::time::timeout(SOON, unsolicited.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late, "k1first");
    // The key is free: the next request with it gets its own reply.
    assert_eq!(mux.request(b("k1second")).await.unwrap(), "k1second");
    let s = mux.stats();
    assert_eq!(
        (
            s.connects,
            s.disconnects,
            s.late_replies,
            s.unsolicited,
            s.unsolicited_dropped
        ),
        (1, 0, 1, 1, 0),
        "{s:?}"
    );
}

/// Broke: a fail-back probe that answered while a request was in flight on the backup is
/// held until the backup is idle. The preferred endpoint closed that held connection
/// meanwhile (an idle timeout, a restart), and the client still moved to it: the first
/// read was the close, so the client counted a loss, marked the healthy preferred endpoint
/// down (closed young, nothing delivered) and went back to the backup; a request queued at
/// that moment could even be written on the dead socket and fail as may-have-been-sent.
/// The held connection is now checked at the move, and dropped (the next probe comes
/// later) when it was closed.
#[tokio::test]
async fn attack3_fail_back_to_a_probe_connection_closed_while_held() {
    let primary = refused_addr().await;
    let backup = start(
        ServerConfig::new(spec("len:ascii:4")),
        "127.0.0.1:0",
        Some(Duration::from_millis(300)),
    )
    .await;
    let mut backup_seen = backup.seen;
    let client = builder("len:ascii:4", &[primary, backup.addr])
        .probe_on_connect(true)
        .down_backoff(Duration::from_millis(50), Duration::from_millis(50))
        .connect_long()
        .await
        .unwrap();
    assert_eq!(client.current_endpoint(), Some(backup.addr.to_string()));
    let marked_before = client.stats().endpoints_marked_down;

    // The preferred endpoint comes back: its first connection (the probe) answers the
    // probe heartbeat when told to, then closes when told to.
    let l = TcpListener::bind(primary).await.unwrap();
    let (accepted_tx, mut accepted) = mpsc::channel::<()>(1);
    let (pong_tx, mut pong) = mpsc::channel::<()>(1);
    let (close_tx, mut close) = mpsc::channel::<()>(1);
    let (closed_tx, mut closed) = mpsc::channel::<()>(1);
    let primary_task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        accepted_tx.send(()).await.unwrap();
        let mut codec = FrameCodec::new(spec("len:ascii:4"));
        let mut buf = BytesMut::new();
        let ping = read_frame(&mut s, &mut codec, &mut buf).await;
        assert_eq!(ping.as_deref(), Some(&b""[..]));
        pong.recv().await.unwrap();
        s.write_all(b"0000").await.unwrap();
        close.recv().await.unwrap();
        drop(s);
        closed_tx.send(()).await.unwrap();
        // Later connections are served: pongs and echoes.
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut codec = FrameCodec::new(spec("len:ascii:4"));
                let mut buf = BytesMut::new();
                while let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await {
                    let mut out = BytesMut::new();
                    codec.encode_to(&f, &mut out).unwrap();
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    // The probe is under way; a request starts on the backup (300 ms).
    tokio::time::timeout(SOON, accepted.recv()).await.unwrap();
    let c1 = client.clone();
    let r1 = tokio::spawn(async move { c1.request(b("one")).await });
    tokio::time::timeout(SOON, backup_seen.recv())
        .await
        .unwrap()
        .unwrap();
    // The probe answers while the request is in flight, and its connection is closed
    // before the request ends.
    pong_tx.send(()).await.unwrap();
    close_tx.send(()).await.unwrap();
    tokio::time::timeout(SOON, closed.recv()).await.unwrap();
    assert_eq!(r1.await.unwrap().unwrap(), "one");
    let r2 = tokio::time::timeout(SOON, client.request(b("two")))
        .await
        .unwrap();
    assert_eq!(r2.unwrap(), "two");
    let s = client.stats();
    assert_eq!(
        s.endpoints_marked_down,
        marked_before,
        "the preferred endpoint was marked down for closing a connection the client held \
         unused: {s:?}, {:?}",
        client.endpoints()
    );
    drop(client);
    primary_task.abort();
}

/// Broke: after a loss the connection task sleeps its backoff delay before reconnecting,
/// deaf to its handles: a client dropped then left its task alive for the whole delay (up
/// to `reconnect_max`; with an absurd `reconnect_backoff` of `u64::MAX`, forever). The
/// task now ends as soon as the last handle is gone.
#[tokio::test(flavor = "current_thread")]
async fn attack3_dropped_client_stops_its_backoff_at_once() {
    // A peer that accepts and closes, on a thread: no tasks of its own on this runtime.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (accepted_tx, accepted) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        while let Ok((s, _)) = l.accept() {
            drop(s);
            if accepted_tx.send(()).is_err() {
                return;
            }
        }
    });
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let huge = Duration::from_secs(u64::MAX);
    let client = builder("len:ascii:4", &[addr])
        .reconnect_backoff(huge, huge)
        .connect_long()
        .await
        .unwrap();
    accepted.recv_timeout(SOON).unwrap();
    // The close is read and the task is in its backoff.
    eventually("the loss is seen", || client.stats().disconnects == 1).await;
    assert_eq!(metrics.num_alive_tasks(), before + 1);
    drop(client);
    let t = Instant::now();
    while metrics.num_alive_tasks() > before {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the task of a dropped client sleeps on in its reconnect backoff"
        );
        tokio::task::yield_now().await;
    }
}

/// Held (new coverage): zero capacities are taken as one. `max_in_flight(0)` and `queue(0)`
/// on a mux client leave one request in flight and one held first in line, so concurrent
/// requests all complete in turn; `pool(0)` is a pool of one. Stats exact.
#[tokio::test]
async fn attack3_zero_capacities_serve_one_at_a_time() {
    let server = start(
        ServerConfig::new(spec("len:ascii:4")),
        "127.0.0.1:0",
        Some(Duration::from_millis(20)),
    )
    .await;
    let zero = builder("len:ascii:4", &[server.addr])
        .max_in_flight(0)
        .queue(0)
        .unsolicited_capacity(0);
    let mux = zero
        .clone()
        .connect_mux(ByteRange::new(0, 2))
        .await
        .unwrap();
    let (a, b2, c) = tokio::join!(
        mux.request(b("k1a")),
        mux.request(b("k2b")),
        mux.request(b("k3c")),
    );
    assert_eq!(
        (a.unwrap(), b2.unwrap(), c.unwrap()),
        (b("k1a"), b("k2b"), b("k3c"))
    );
    let s = mux.stats();
    assert_eq!(
        (s.connects, s.disconnects, s.unsolicited),
        (1, 0, 0),
        "{s:?}"
    );
    let pool = zero.pool(0).await.unwrap();
    let (a, b2) = tokio::join!(pool.request(b("p1")), pool.request(b("p2")));
    assert_eq!((a.unwrap(), b2.unwrap()), (b("p1"), b("p2")));
    assert_eq!(pool.connections().0, 1);
}
