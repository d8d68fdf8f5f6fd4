//! The clients over real loopback sockets: each client type, failover past refused and hung
//! endpoints, reconnect after a restart, heartbeats without storms, and whether a failed
//! request may have been sent, in each failure position.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use keepwire::client::{ByteRange, Delivery, Key, Simplex};
use keepwire::frame::FrameCodec;
use keepwire::liveness::PingConfig;
use keepwire::server::{Mode, Request, Server, ServerConfig, service_fn};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn ping(interval_ms: u64, timeout_ms: u64, misses: u32) -> Option<PingConfig> {
    Some(PingConfig {
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        misses,
    })
}

/// A server whose handler never returns: TCP is alive, the service is not.
async fn hung_server(framing: &str) -> (SocketAddr, tokio_util::sync::CancellationToken) {
    let server = Server::bind("127.0.0.1:0", ServerConfig::new(spec(framing)))
        .await
        .unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    tokio::spawn(server.serve(service_fn(|_r: Request| async move {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(None)
    })));
    (addr, stop)
}

/// A listener whose connections are accepted and held, never read: a stopped process or a
/// wedged service behind a live kernel.
async fn silent_listener() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

async fn write_frame(s: &mut TcpStream, codec: &FrameCodec, frame: &[u8]) {
    let mut out = BytesMut::new();
    codec.encode_to(frame, &mut out).unwrap();
    s.write_all(&out).await.unwrap();
}

// ---------------------------------------------------------------- short

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_client_fails_over_past_a_refused_endpoint() {
    let mut cfg = ServerConfig::new(spec("len:ascii:4"));
    cfg.mode = Mode::Short;
    let mut srv = echo_server(cfg).await;
    let dead = refused_addr().await;
    let c = builder("len:ascii:4", &[dead, srv.addr]).build_short();
    for m in ["one", "two", "three"] {
        assert_eq!(c.request(Bytes::from(m)).await.unwrap(), m);
    }
    // One connection per request.
    assert_eq!(srv.stats.snapshot().accepted, 3);
    let st = c.endpoints();
    assert!(
        !st[0].up
            && st[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains("connect failed"),
        "{st:?}"
    );
    assert!(st[1].up);
    assert!(srv.seen.recv().await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_client_half_closes_under_eof_framing() {
    let mut cfg = ServerConfig::new(spec("eof"));
    cfg.mode = Mode::Short;
    cfg.heartbeat = None;
    let srv = echo_server(cfg).await;
    let c = builder("eof", &[srv.addr]).build_short();
    assert_eq!(
        c.request(b("whole message")).await.unwrap(),
        "whole message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_client_all_endpoints_refused_is_not_sent_and_names_each() {
    let (a, b2) = (refused_addr().await, refused_addr().await);
    let c = builder("len:ascii:4", &[a, b2]).build_short();
    let e = c.request(b("x")).await.unwrap_err();
    assert!(e.is_connect() && e.is_not_sent(), "{e}");
    assert_eq!(e.endpoints().len(), 2);
    let msg = e.to_string();
    assert!(
        msg.contains(&a.to_string()) && msg.contains(&b2.to_string()),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_client_probe_skips_a_silent_endpoint() {
    let (silent, _t) = silent_listener().await;
    let mut cfg = ServerConfig::new(spec("len:ascii:4"));
    cfg.mode = Mode::Short;
    let srv = echo_server(cfg).await;
    let c = builder("len:ascii:4", &[silent, srv.addr])
        .ping(ping(100, 200, 1))
        .probe_on_connect(true)
        .build_short();
    let t = Instant::now();
    assert_eq!(c.request(b("hi")).await.unwrap(), "hi");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let st = c.endpoints();
    assert!(
        st[0].last_error.as_deref().unwrap().contains("probe"),
        "{st:?}"
    );
}

// ---------------------------------------------------------------- classification

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classification_in_each_failure_position() {
    // 1. Cannot be framed: not sent.
    let srv = echo_server(ServerConfig::new(spec("len:ascii:2"))).await;
    let c = builder("len:ascii:2", &[srv.addr])
        .connect_long()
        .await
        .unwrap();
    let e = c.request(Bytes::from(vec![b'x'; 200])).await.unwrap_err();
    assert!(e.is_unencodable() && e.is_not_sent(), "{e}");
    assert_eq!(c.request(b("ok")).await.unwrap(), "ok");

    // 2. Read, never answered: may have been sent.
    let (hung, _stop) = hung_server("len:ascii:4").await;
    let c = builder("len:ascii:4", &[hung])
        .request_timeout(Duration::from_millis(200))
        .connect_long()
        .await
        .unwrap();
    let e = c.request(b("lost?")).await.unwrap_err();
    assert!(e.is_timeout() && e.may_have_been_sent(), "{e}");
    assert_eq!(e.delivery(), Delivery::SentNoReply);

    // 3. Queued behind a request that hangs, never written: not sent. The server reports
    // each frame it reads, so the test knows when `first` holds the connection.
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel::<Bytes>(8);
    let holder = raw_server(move |mut s| {
        let seen_tx = seen_tx.clone();
        async move {
            let mut codec = FrameCodec::new(spec("len:ascii:4"));
            let mut buf = BytesMut::new();
            while let Some(frame) = read_frame(&mut s, &mut codec, &mut buf).await {
                let _ = seen_tx.send(frame).await;
            }
        }
    })
    .await;
    let c = builder("len:ascii:4", &[holder])
        .request_timeout(Duration::from_secs(5))
        .connect_long()
        .await
        .unwrap();
    let c2 = c.clone();
    let first = tokio::spawn(async move {
        c2.request_timeout(b("first"), Duration::from_millis(600))
            .await
    });
    let got = tokio::time::timeout(SOON, seen.recv()).await;
    assert_eq!(got.ok().flatten(), Some(b("first")));
    let e = c
        .request_timeout(b("second"), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(e.is_timeout() && e.is_not_sent(), "{e}");
    let e1 = first.await.unwrap().unwrap_err();
    assert!(e1.may_have_been_sent(), "{e1}");
    assert!(seen.try_recv().is_err(), "`second` reached the server");

    // 4. The peer reads the request and closes: may have been sent.
    let closer = raw_server(|mut s| async move {
        let mut codec = FrameCodec::new(spec("len:ascii:4"));
        let mut buf = BytesMut::new();
        let _ = read_frame(&mut s, &mut codec, &mut buf).await;
    })
    .await;
    let short = builder("len:ascii:4", &[closer]).build_short();
    let e = short.request(b("gone")).await.unwrap_err();
    assert!(e.is_closed() && e.may_have_been_sent(), "{e}");
    let long = builder("len:ascii:4", &[closer])
        .connect_long()
        .await
        .unwrap();
    let e = long.request(b("gone")).await.unwrap_err();
    assert!(e.is_closed() && e.may_have_been_sent(), "{e}");

    // 5. Nowhere to connect: not sent, every endpoint named.
    let dead = refused_addr().await;
    let e = builder("len:ascii:4", &[dead])
        .connect_long()
        .await
        .unwrap_err();
    assert!(
        e.is_connect() && e.is_not_sent() && e.to_string().contains(&dead.to_string()),
        "{e}"
    );

    // 6. Short client against a silent server: written, no reply.
    let (silent, _t) = silent_listener().await;
    let short = builder("len:ascii:4", &[silent])
        .request_timeout(Duration::from_millis(200))
        .build_short();
    let e = short.request(b("hello?")).await.unwrap_err();
    assert!(e.is_timeout() && e.may_have_been_sent(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_client_does_not_retry_sent_requests_unless_asked() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let closer = raw_server(move |mut s| {
        let h = Arc::clone(&h);
        async move {
            let mut codec = FrameCodec::new(spec("len:ascii:4"));
            let mut buf = BytesMut::new();
            if read_frame(&mut s, &mut codec, &mut buf).await.is_some() {
                h.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .await;
    let mut cfg = ServerConfig::new(spec("len:ascii:4"));
    cfg.mode = Mode::Short;
    let good = echo_server(cfg).await;
    let c = builder("len:ascii:4", &[closer, good.addr]).build_short();
    let e = c.request(b("pay 10")).await.unwrap_err();
    assert!(e.may_have_been_sent(), "{e}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let c = builder("len:ascii:4", &[closer, good.addr])
        .retry_sent(true)
        .build_short();
    assert_eq!(c.request(b("idempotent")).await.unwrap(), "idempotent");
}

// ---------------------------------------------------------------- long

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_client_one_connection_and_pipelining() {
    let srv = echo_server(ServerConfig::new(spec("len:be:2"))).await;
    let c = builder("len:be:2", &[srv.addr])
        .connect_long()
        .await
        .unwrap();
    for i in 0..20u8 {
        assert_eq!(
            c.request(Bytes::from(vec![i; 3])).await.unwrap(),
            vec![i; 3]
        );
    }
    let p = builder("len:be:2", &[srv.addr])
        .max_in_flight(8)
        .connect_long()
        .await
        .unwrap();
    let replies = futures_util::future::join_all((0..32u8).map(|i| {
        let p = p.clone();
        async move { (i, p.request(Bytes::from(vec![i])).await) }
    }))
    .await;
    for (i, r) in replies {
        assert_eq!(r.unwrap(), vec![i]);
    }
    assert_eq!(srv.stats.snapshot().accepted, 2);
    // A tower stack on top.
    use tower::{Service, ServiceExt};
    let mut svc = tower::ServiceBuilder::new()
        .map_request(|f: Bytes| f)
        .map_response(|r: Bytes| r.len())
        .service(c.clone());
    let r = svc.ready().await.unwrap().call(b("tower")).await.unwrap();
    assert_eq!(r, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_client_fails_over_past_refused_and_reconnects_after_restart() {
    let dead = refused_addr().await;
    let srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let addr = srv.addr;
    let c = builder("len:ascii:4", &[dead, addr])
        .fail_back(false)
        .connect_long()
        .await
        .unwrap();
    assert_eq!(c.request(b("a")).await.unwrap(), "a");
    assert_eq!(c.current_endpoint(), Some(addr.to_string()));

    // Restart the server on the same port.
    srv.stop.cancel();
    srv.task.await.unwrap();
    eventually("client notices the close", || !c.is_connected()).await;
    let e = c
        .request_timeout(b("meanwhile"), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(e.is_not_sent(), "{e}");
    let srv2 = start(
        ServerConfig::new(spec("len:ascii:4")),
        &addr.to_string(),
        None,
    )
    .await;
    eventually("client reconnects", || c.is_connected()).await;
    assert_eq!(c.request(b("again")).await.unwrap(), "again");
    assert!(c.stats().connects >= 2);
    srv2.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_client_leaves_a_hung_service_within_interval_times_misses_plus_timeout() {
    let (hung, _stop) = hung_server("len:ascii:4").await;
    let good = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let (interval, timeout, misses) = (100, 100, 2);
    let c = builder("len:ascii:4", &[hung, good.addr])
        .ping(ping(interval, timeout, misses))
        .fail_back(false)
        .connect_long()
        .await
        .unwrap();
    assert_eq!(c.current_endpoint(), Some(hung.to_string()));
    let t = Instant::now();
    // The request reaches the hung handler: it may have been sent, and is not retried.
    let e = c.request(b("stuck")).await.unwrap_err();
    let took = t.elapsed();
    assert!(e.is_dead_peer() && e.may_have_been_sent(), "{e}");
    let bound = Duration::from_millis(interval * u64::from(misses) + timeout);
    assert!(took >= bound - Duration::from_millis(50), "{took:?}");
    assert!(
        took < bound + Duration::from_millis(700),
        "{took:?} vs {bound:?}"
    );
    eventually("client moved to the good endpoint", || {
        c.current_endpoint() == Some(good.addr.to_string())
    })
    .await;
    assert_eq!(c.request(b("next")).await.unwrap(), "next");
    let st = c.endpoints();
    assert!(
        !st[0].up && st[0].last_error.as_deref().unwrap().contains("heartbeat"),
        "{st:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_client_probe_on_connect_skips_silent_endpoint_and_fails_back() {
    let (silent, silent_task) = silent_listener().await;
    let good = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let c = builder("len:ascii:4", &[silent, good.addr])
        .ping(ping(200, 150, 2))
        .probe_on_connect(true)
        .connect_long()
        .await
        .unwrap();
    assert_eq!(c.current_endpoint(), Some(good.addr.to_string()));
    assert_eq!(c.request(b("x")).await.unwrap(), "x");
    // The first endpoint comes back as a real server on the same port: the client probes
    // it after its down time and moves back to it.
    silent_task.abort();
    let _ = silent_task.await;
    let back = start(
        ServerConfig::new(spec("len:ascii:4")),
        &silent.to_string(),
        None,
    )
    .await;
    eventually("client fails back to the first endpoint", || {
        c.current_endpoint() == Some(silent.to_string())
    })
    .await;
    assert_eq!(c.request(b("y")).await.unwrap(), "y");
    back.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_both_ways_do_not_storm() {
    let mut cfg = ServerConfig::new(spec("len:ascii:4"));
    cfg.liveness.ping = ping(100, 100, 3);
    let srv = echo_server(cfg).await;
    let c = builder("len:ascii:4", &[srv.addr])
        .ping(ping(100, 100, 3))
        .connect_long()
        .await
        .unwrap();
    let run = Duration::from_millis(1000);
    tokio::time::sleep(run).await; // an observation window, not synchronisation
    let s = c.stats();
    let ss = srv.stats.snapshot();
    let frames = s.pings_sent + s.pings_answered + ss.pings_sent + ss.pings_answered;
    // One ping per interval at most from each side, and at most one pong per ping.
    let per_side = run.as_millis() as u64 / 100 + 2;
    assert!(frames > 0, "no heartbeats at all");
    assert!(
        frames <= 2 * 2 * per_side,
        "heartbeat storm: client {s:?} server {ss:?}"
    );
    assert!(c.is_connected());
    assert_eq!(s.connects, 1);
    assert_eq!(c.request(b("still alive")).await.unwrap(), "still alive");
}

// ---------------------------------------------------------------- mux

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_matches_replies_sent_in_reverse_order_and_streams_unsolicited() {
    const N: usize = 16;
    let addr = raw_server(|mut s| async move {
        let mut codec = FrameCodec::new(spec("len:be:2"));
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        while got.len() < N {
            match read_frame(&mut s, &mut codec, &mut buf).await {
                Some(f) => got.push(f),
                None => return,
            }
        }
        // A server-initiated message first, then the replies backwards.
        write_frame(&mut s, &codec, b"\xff\xffnotice").await;
        for f in got.iter().rev() {
            let mut reply = f.to_vec();
            reply.extend_from_slice(b"-ok");
            write_frame(&mut s, &codec, &reply).await;
        }
        let _ = read_frame(&mut s, &mut codec, &mut buf).await;
    })
    .await;
    let mux = builder("len:be:2", &[addr])
        .connect_mux(ByteRange::new(0, 2))
        .await
        .unwrap();
    let mut unsolicited = mux.unsolicited().unwrap();
    assert!(mux.unsolicited().is_none());
    let replies = futures_util::future::join_all((0..N as u16).map(|i| {
        let mux = mux.clone();
        async move {
            let mut f = i.to_be_bytes().to_vec();
            f.extend_from_slice(b"req");
            (i, mux.request(Bytes::from(f)).await)
        }
    }))
    .await;
    for (i, r) in replies {
        let r = r.unwrap();
        assert_eq!(&r[..2], &i.to_be_bytes());
        assert!(r.ends_with(b"req-ok"));
    }
    let n = tokio::time::timeout(SOON, unsolicited.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, &b"\xff\xffnotice"[..]);
    assert_eq!(mux.stats().unsolicited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_times_out_one_request_and_keeps_the_rest() {
    // The server answers every key except 0x00 0x07 and 0x00 0x09.
    let addr = raw_server(|mut s| async move {
        let mut codec = FrameCodec::new(spec("len:be:2"));
        let mut buf = BytesMut::new();
        while let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await {
            if f.get(..2) != Some(&[0, 7][..]) && f.get(..2) != Some(&[0, 9][..]) {
                write_frame(&mut s, &codec, &f).await;
            }
        }
    })
    .await;
    let seq = |f: &[u8]| f.get(..2).map(Key::from);
    let mux = builder("len:be:2", &[addr]).connect_mux(seq).await.unwrap();
    let lost = mux.request_timeout(Bytes::from_static(&[0, 7, 1]), Duration::from_millis(150));
    let ok = mux.request(Bytes::from_static(&[0, 8, 1]));
    let (lost, ok) = tokio::join!(lost, ok);
    assert!(lost.unwrap_err().may_have_been_sent());
    assert_eq!(ok.unwrap(), &[0, 8, 1][..]);
    // The timed-out key is tombstoned (its late reply may still come): reusing it at once is
    // refused, not sent.
    let again = mux
        .request(Bytes::from_static(&[0, 7, 2]))
        .await
        .unwrap_err();
    assert!(
        again.is_not_sent() && again.to_string().contains("late reply"),
        "{again}"
    );
    // Same key twice at once: whichever is written first stays in flight (never answered),
    // the other is refused, not sent.
    let a = mux.request_timeout(Bytes::from_static(&[0, 9, 2]), Duration::from_secs(2));
    let b2 = mux.request_timeout(Bytes::from_static(&[0, 9, 3]), Duration::from_secs(2));
    let (a, b2) = tokio::join!(a, b2);
    let (a, b2) = (a.unwrap_err(), b2.unwrap_err());
    assert!(a.is_not_sent() != b2.is_not_sent(), "{a}; {b2}");
    assert!(mux.is_connected());
}

// ---------------------------------------------------------------- pool

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_retires_connections_past_max_idle_and_max_lifetime() {
    for (idle, life) in [(Some(200), None), (None, Some(300))] {
        let srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
        let pool = builder("len:ascii:4", &[srv.addr])
            .max_idle(idle.map(Duration::from_millis))
            .max_lifetime(life.map(Duration::from_millis))
            .pool(1)
            .await
            .unwrap();
        assert_eq!(pool.request(b("one")).await.unwrap(), "one");
        let first = srv.stats.snapshot().accepted;
        // The connection is closed by the pool (the server sees it go) and replaced.
        eventually("pooled connection retired", || {
            srv.stats.snapshot().closed >= 1
        })
        .await;
        assert_eq!(pool.request(b("two")).await.unwrap(), "two");
        assert!(
            srv.stats.snapshot().accepted > first,
            "idle={idle:?} life={life:?}: no new connection"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_serves_64_concurrent_callers_on_few_connections() {
    let srv = start(
        ServerConfig::new(spec("len:ascii:4")),
        "127.0.0.1:0",
        Some(Duration::from_millis(5)),
    )
    .await;
    let pool = builder("len:ascii:4", &[srv.addr])
        .checkout_timeout(Duration::from_secs(5))
        .ping(ping(200, 200, 2))
        .pool(4)
        .await
        .unwrap();
    let replies = futures_util::future::join_all((0..64).map(|i| {
        let pool = pool.clone();
        async move {
            let mut out = Vec::new();
            for j in 0..4 {
                let m = format!("{i}-{j}");
                out.push((m.clone(), pool.request(Bytes::from(m)).await));
            }
            out
        }
    }))
    .await;
    for (m, r) in replies.into_iter().flatten() {
        assert_eq!(r.unwrap(), m.as_bytes());
    }
    let (conns, _idle) = pool.connections();
    assert!(conns <= 4, "{conns}");
    assert!(srv.stats.snapshot().accepted <= 4);
    // A checkout that cannot be served in time is not sent.
    let tight = builder("len:ascii:4", &[srv.addr])
        .checkout_timeout(Duration::from_millis(20))
        .pool(1)
        .await
        .unwrap();
    let busy = tight.clone();
    let slow = tokio::spawn(async move { busy.request(b("slow")).await });
    let mut saw_timeout = false;
    for _ in 0..50 {
        if let Err(e) = tight.request(b("x")).await {
            assert!(e.is_pool_timeout() && e.is_not_sent(), "{e}");
            saw_timeout = true;
            break;
        }
    }
    let _ = slow.await;
    assert!(saw_timeout || srv.stats.snapshot().accepted > 0);
}

// ---------------------------------------------------------------- duplex and simplex

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplex_sender_and_receiver_are_independent() {
    // The server pushes a frame before we send anything, then echoes.
    let addr = raw_server(|mut s| async move {
        let codec = FrameCodec::new(spec("line"));
        write_frame(&mut s, &codec, b"welcome").await;
        let mut c2 = FrameCodec::new(spec("line"));
        let mut buf = BytesMut::new();
        while let Some(f) = read_frame(&mut s, &mut c2, &mut buf).await {
            write_frame(&mut s, &codec, &f).await;
        }
    })
    .await;
    let (tx, mut rx) = builder("line", &[addr])
        .heartbeat_frames(None)
        .connect_duplex()
        .await
        .unwrap()
        .split();
    assert_eq!(
        tokio::time::timeout(SOON, rx.recv())
            .await
            .unwrap()
            .unwrap(),
        "welcome"
    );
    for m in ["a", "b", "c"] {
        tx.send(Bytes::from(m)).await.unwrap();
    }
    for m in ["a", "b", "c"] {
        assert_eq!(
            tokio::time::timeout(SOON, rx.recv())
                .await
                .unwrap()
                .unwrap(),
            m
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simplex_links_are_each_kept_alive() {
    // Send link: a sink. Receive link: pushes three frames, answering heartbeats meanwhile
    // through keepwire's own server on both ports.
    let mut sink_cfg = ServerConfig::new(spec("len:ascii:4"));
    sink_cfg.liveness.read_idle = Some(Duration::from_millis(400));
    let sink = Server::bind("127.0.0.1:0", sink_cfg).await.unwrap();
    let sink_addr = sink.local_addr();
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel(16);
    tokio::spawn(sink.serve(service_fn(move |r: Request| {
        let seen_tx = seen_tx.clone();
        async move {
            let _ = seen_tx.send(r.frame).await;
            Ok::<_, Infallible>(None)
        }
    })));
    let pusher = raw_server(|mut s| async move {
        let mut codec = FrameCodec::new(spec("len:ascii:4"));
        let mut buf = BytesMut::new();
        for m in ["m1", "m2", "m3"] {
            write_frame(&mut s, &codec, m.as_bytes()).await;
        }
        // Answer pings (empty frames) for as long as the client stays.
        while let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await {
            if f.is_empty() {
                write_frame(&mut s, &codec, b"").await;
            }
        }
    })
    .await;
    let mut link = Simplex::connect(
        builder("len:ascii:4", &[sink_addr]).ping(ping(100, 200, 2)),
        builder("len:ascii:4", &[pusher]).ping(ping(100, 200, 2)),
    )
    .await
    .unwrap();
    for m in ["m1", "m2", "m3"] {
        assert_eq!(
            tokio::time::timeout(SOON, link.recv())
                .await
                .unwrap()
                .unwrap(),
            m
        );
    }
    // Idle for longer than the sink's read-idle timeout: the send link's pings keep it open.
    tokio::time::sleep(Duration::from_millis(700)).await;
    link.send(b("late")).await.unwrap();
    assert_eq!(
        tokio::time::timeout(SOON, seen.recv())
            .await
            .unwrap()
            .unwrap(),
        "late"
    );
    assert!(link.is_connected());
    assert_eq!(link.send_stats().connects, 1, "{:?}", link.send_stats());
    assert!(link.recv_stats().pings_sent >= 2, "{:?}", link.recv_stats());
}
