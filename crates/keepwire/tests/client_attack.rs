//! Hostile review of the async clients (attack 2): each test here failed on the code it was
//! written against. Misbehaving peers are raw tokio listeners on 127.0.0.1; every loop is
//! bounded in count and time.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use keepwire::frame::FrameCodec;
use keepwire::liveness::HeartbeatSpec;
use keepwire::server::{Mode, ServerConfig};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Decoder;

// ----------------------------------------------------------------- reconnect storms

/// A peer that accepts and closes at once (an overloaded server at its connection limit, a
/// load balancer with no healthy backend). Each connect succeeds, so the reconnect backoff
/// is reset, and a lost connection is reconnected with no delay at all: the client
/// reconnects in a tight loop, one core pinned. With a 20 ms base backoff, a second allows
/// a handful of attempts, not hundreds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_reconnect_storm_against_peer_that_accepts_and_closes() {
    const CAP: usize = 300;
    let accepts = Arc::new(AtomicUsize::new(0));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::clone(&accepts);
    let acceptor = tokio::spawn(async move {
        // Bounded: after CAP accepts the listener goes away (connects are then refused).
        while n.load(Ordering::Relaxed) < CAP {
            match l.accept().await {
                Ok((s, _)) => {
                    n.fetch_add(1, Ordering::Relaxed);
                    drop(s);
                }
                Err(_) => return,
            }
        }
    });
    let client = builder("len:ascii:4", &[addr])
        .connect_long()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = accepts.load(Ordering::Relaxed);
    drop(client);
    acceptor.abort();
    assert!(
        seen < 60,
        "{seen} connections in 1 s to a peer that closes each at once (cap {CAP}): \
         a reconnect storm, the backoff never applies"
    );
}

/// `reconnect_backoff(0, 0)`: every failed round is retried at once, a busy loop of connect
/// attempts for as long as the endpoint is down (pings are clamped to 1 ms for this reason;
/// the backoffs are not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_zero_reconnect_backoff_spins() {
    // Accepts one connection, then closes it and stops listening.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let client_fut = builder("len:ascii:4", &[addr])
        .reconnect_backoff(Duration::ZERO, Duration::ZERO)
        .down_backoff(Duration::ZERO, Duration::ZERO)
        .connect_long();
    let (client, accepted) = tokio::join!(client_fut, l.accept());
    let client = client.unwrap();
    drop(accepted.unwrap());
    drop(l);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let downs = client.stats().endpoints_marked_down;
    drop(client);
    assert!(
        downs < 100,
        "{downs} failed connects in 500 ms with a zero reconnect backoff: a busy loop"
    );
}

/// `down_backoff(0, 0)` while connected to a backup: the preferred endpoint is "due a retry"
/// the instant it failed, so the idle client probes it in a tight loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_zero_down_backoff_fail_back_spins() {
    let srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let dead = refused_addr().await;
    let client = builder("len:ascii:4", &[dead, srv.addr])
        .down_backoff(Duration::ZERO, Duration::ZERO)
        .connect_long()
        .await
        .unwrap();
    assert_eq!(client.request(b("x")).await.unwrap(), "x");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let downs = client.stats().endpoints_marked_down;
    drop(client);
    assert!(
        downs < 100,
        "{downs} fail-back probes of a dead endpoint in 500 ms with a zero down backoff"
    );
}

// ----------------------------------------------------------------- short clients

/// `request_timeout` is "how long a request may take in all: waiting for a connection,
/// writing, and the reply", but the short client writes with `write_timeout` alone: against
/// a peer that accepts and never reads, a large request takes the whole write timeout (here
/// 4 s) past a 500 ms request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_short_client_write_ignores_request_timeout() {
    let (hold_tx, mut hold_rx) = tokio::sync::mpsc::channel::<TcpStream>(4);
    let addr = raw_server(move |s| {
        let hold_tx = hold_tx.clone();
        async move {
            // Never read; keep the socket open.
            let _ = hold_tx.send(s).await;
        }
    })
    .await;
    let client = builder("len:be:4:max=64m", &[addr])
        .request_timeout(Duration::from_millis(500))
        .write_timeout(Duration::from_secs(4))
        .build_short();
    let big = Bytes::from(vec![b'x'; 48 << 20]);
    let t = Instant::now();
    let r = tokio::time::timeout(SOON, client.request(big))
        .await
        .unwrap();
    let took = t.elapsed();
    let e = r.unwrap_err();
    drop(hold_rx.try_recv());
    assert!(
        took < Duration::from_secs(2),
        "a request with a 500 ms timeout took {took:?}: {e}"
    );
}

/// `keepwire send --mode short --heartbeat interval=..` builds a short client with
/// `probe_on_connect`: the probe writes the heartbeat on a short link. A keepwire short
/// server once took the probe as THE request, answered it, and discarded the real request.
/// It passes on the base this review was committed on (rule 4: a short server answers a
/// heartbeat before the request, then waits for the request); kept as a regression test.
/// The request must reach the handler and get its reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_short_client_probe_is_taken_as_the_short_servers_request() {
    let mut cfg = ServerConfig::new(spec("len:ascii:4"));
    cfg.mode = Mode::Short;
    let mut srv = echo_server(cfg).await;
    let hb: HeartbeatSpec = "interval=1s,timeout=1s,misses=1".parse().unwrap();
    // As send.rs builds it.
    let client = builder("len:ascii:4", &[srv.addr])
        .request_timeout(Duration::from_secs(2))
        .heartbeat(hb)
        .probe_on_connect(true)
        .build_short();
    let r = tokio::time::timeout(SOON, client.request(b("hello")))
        .await
        .unwrap();
    let first = srv.seen.try_recv().map(|r| r.frame);
    assert_eq!(
        r.as_ref().ok().map(|b| &b[..]),
        Some(&b"hello"[..]),
        "short request with a probe: {r:?}; the handler's first request was {first:?}"
    );
}

// ----------------------------------------------------------------- heartbeat storms

/// A jPOS-`CMFChannel`-like peer (docs/liveness.md names its issue #775): it echoes every
/// frame it reads, empty keep-alives included, and sends one keep-alive of its own. Without
/// a cap the idle client and this peer bounce the empty frame at socket speed: the storm
/// the section "No keep-alive storms" is about, with no request anywhere. Rule 5 caps an
/// idle side's answers to same-bytes heartbeats at one per `PONG_GAP` (50 ms), at most 20 a
/// second: that cap, plus slack for the first answer and timer granularity, is the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_idle_client_storms_with_a_peer_that_echoes_heartbeats() {
    const CAP: usize = 2000;
    let echoed = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&echoed);
    let addr = raw_server(move |mut s| {
        let n = Arc::clone(&n);
        async move {
            use tokio::io::AsyncWriteExt;
            let mut codec = FrameCodec::new(spec("len:ascii:4"));
            let mut buf = BytesMut::new();
            // One keep-alive after connecting, then echo everything (bounded).
            tokio::time::sleep(Duration::from_millis(50)).await;
            if s.write_all(b"0000").await.is_err() {
                return;
            }
            while n.load(Ordering::Relaxed) < CAP {
                let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await else {
                    return;
                };
                let mut out = BytesMut::new();
                codec.encode_to(&f, &mut out).unwrap();
                if s.write_all(&out).await.is_err() {
                    return;
                }
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    let client = builder("len:ascii:4", &[addr])
        .connect_long()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answered = client.stats().pings_answered;
    let bounced = echoed.load(Ordering::Relaxed);
    drop(client);
    let cap =
        (Duration::from_secs(1).as_millis() / keepwire::liveness::PONG_GAP.as_millis()) as u64 + 2;
    assert!(
        answered <= cap && bounced as u64 <= cap,
        "idle client answered {answered} heartbeats in 1 s, the peer echoed {bounced} \
         (cap {CAP}): a keep-alive storm"
    );
}

/// A peer that pings before every reply while several requests are pipelined, writing
/// every byte as its own segment with µs gaps; the client pings every 10 ms too. Every
/// request must get its own reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_pings_crossing_pipelined_requests_split_everywhere() {
    let addr = raw_server(|mut s| async move {
        use tokio::io::AsyncWriteExt;
        s.set_nodelay(true).unwrap();
        let mut codec = FrameCodec::new(spec("len:ascii:4"));
        let mut buf = BytesMut::new();
        for _ in 0..10_000 {
            let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await else {
                return;
            };
            if f.is_empty() {
                continue; // our ping's pong or the client's ping: ignore both
            }
            let mut out = BytesMut::new();
            codec.encode_to(b"", &mut out).unwrap();
            codec.encode_to(&f, &mut out).unwrap();
            for byte in out.iter() {
                if s.write_all(&[*byte]).await.is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_micros(30));
            }
        }
    })
    .await;
    let client = builder("len:ascii:4", &[addr])
        .max_in_flight(8)
        .ping(Some(keepwire::liveness::PingConfig {
            // The smallest interval accepted (liveness::MIN_PING_INTERVAL).
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
            misses: 3,
        }))
        .connect_long()
        .await
        .unwrap();
    let reqs = (0..40).map(|i| {
        let c = client.clone();
        async move {
            let m = Bytes::from(format!("request-{i}"));
            (m.clone(), c.request(m).await)
        }
    });
    let res = tokio::time::timeout(SOON, futures_util::future::join_all(reqs))
        .await
        .unwrap();
    for (m, r) in res {
        assert_eq!(r.as_ref().ok(), Some(&m), "{m:?}: {r:?}");
    }
}

// ----------------------------------------------------------------- mux keys

/// A keyed request times out; its late reply arrives just as the caller retries with the
/// same key (the reply is delayed by exactly the timeout). The retry is refused (Key, not
/// sent) until the late reply came, and once sent gets ITS reply, never the late one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_mux_late_reply_at_the_retry() {
    let addr = raw_server(|s| async move {
        use tokio::io::AsyncWriteExt;
        let (mut r, mut w) = s.into_split();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            let codec = FrameCodec::new(spec("len:ascii:4"));
            while let Some(f) = rx.recv().await {
                let mut out = BytesMut::new();
                codec.encode_to(&f, &mut out).unwrap();
                if w.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
        let mut codec = FrameCodec::new(spec("len:ascii:4"));
        let mut buf = BytesMut::new();
        loop {
            let f = loop {
                if let Ok(Some(f)) = codec.decode(&mut buf) {
                    break f;
                }
                buf.reserve(1024);
                match r.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            };
            if f.is_empty() {
                continue;
            }
            let tx = tx.clone();
            if f.ends_with(b"first") {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = tx.send(f).await;
                });
            } else {
                let _ = tx.send(f).await;
            }
        }
    })
    .await;
    let mux = builder("len:ascii:4", &[addr])
        .connect_mux(keepwire::client::ByteRange::new(0, 4))
        .await
        .unwrap();
    let mut timed_out = 0;
    for i in 0..8 {
        let first = Bytes::from(format!("k{i:03}first"));
        // The race is the point: on a loaded machine the reply can beat the timer, which
        // is a correct outcome, not this test's case.
        match mux
            .request_timeout(first.clone(), Duration::from_millis(200))
            .await
        {
            Ok(r) => {
                assert_eq!(r, first, "request {i} got another request's reply");
                continue;
            }
            Err(e) => assert!(e.is_timeout() && e.may_have_been_sent(), "{e}"),
        }
        timed_out += 1;
        let second = Bytes::from(format!("k{i:03}second"));
        let mut tries = 0;
        let reply = loop {
            tries += 1;
            assert!(tries < 100, "key k{i:03} refused for too long");
            match mux
                .request_timeout(second.clone(), Duration::from_secs(2))
                .await
            {
                Ok(r) => break r,
                Err(e) if e.is_not_sent() => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => panic!("retry {i}: {e}"),
            }
        };
        assert_eq!(reply, second, "retry {i} got another request's reply");
    }
    assert!(
        timed_out > 0,
        "no request timed out: the case was never tried"
    );
}

/// Many concurrent requests with one key: the ones refused are not sent, and each one sent
/// gets its own reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_mux_duplicate_keys_in_one_batch() {
    let mut srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let mux = builder("len:ascii:4", &[srv.addr])
        .connect_mux(keepwire::client::ByteRange::new(0, 4))
        .await
        .unwrap();
    let reqs = (0..64).map(|i| {
        let m = mux.clone();
        async move {
            let f = Bytes::from(format!("DUPE{i}"));
            (f.clone(), m.request(f).await)
        }
    });
    let res = tokio::time::timeout(SOON, futures_util::future::join_all(reqs))
        .await
        .unwrap();
    let mut ok = 0;
    for (f, r) in res {
        match r {
            Ok(reply) => {
                ok += 1;
                assert_eq!(reply, f);
            }
            Err(e) => assert!(e.is_not_sent(), "{f:?}: {e}"),
        }
    }
    let mut seen = 0;
    while srv.seen.try_recv().is_ok() {
        seen += 1;
    }
    assert!(ok >= 1);
    assert_eq!(seen, ok, "the server saw {seen} requests, {ok} replied");
}

// ----------------------------------------------------------------- write accounting

/// Conn 1 reads a prefix of a large pipelined batch and resets the connection; later
/// connections echo. Returns the address and, per connection, the ids of the requests whose
/// header and id reached the server (conn 1: raw prefix; later: whole frames).
async fn reset_after_prefix_server(
    prefix: usize,
) -> (SocketAddr, Arc<std::sync::Mutex<Vec<Vec<u32>>>>) {
    let log: Arc<std::sync::Mutex<Vec<Vec<u32>>>> = Arc::default();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let lg = Arc::clone(&log);
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = l.accept().await {
            n += 1;
            let idx = {
                let mut g = lg.lock().unwrap();
                g.push(Vec::new());
                g.len() - 1
            };
            let lg = Arc::clone(&lg);
            if n == 1 {
                tokio::spawn(async move {
                    let mut raw = Vec::new();
                    let mut chunk = vec![0u8; 64 * 1024];
                    while raw.len() < prefix {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => raw.extend_from_slice(&chunk[..k]),
                        }
                    }
                    // Ids whose header and 4-byte id arrived.
                    let mut ids = Vec::new();
                    let mut at = 0;
                    while at + 8 <= raw.len() {
                        let len = u32::from_be_bytes(raw[at..at + 4].try_into().unwrap()) as usize;
                        ids.push(u32::from_be_bytes(raw[at + 4..at + 8].try_into().unwrap()));
                        at += 4 + len;
                    }
                    lg.lock().unwrap()[idx] = ids;
                    s.set_zero_linger().unwrap();
                    drop(s); // RST
                });
            } else {
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut codec = FrameCodec::new(spec("len:be:4:max=2m"));
                    let mut buf = BytesMut::new();
                    while let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await {
                        if f.len() >= 4 {
                            let id = u32::from_be_bytes(f[..4].try_into().unwrap());
                            lg.lock().unwrap()[idx].push(id);
                        }
                        let mut out = BytesMut::new();
                        codec.encode_to(&f, &mut out).unwrap();
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    (addr, log)
}

fn req(id: u32, size: usize) -> Bytes {
    let mut v = vec![b'.'; size];
    v[..4].copy_from_slice(&id.to_be_bytes());
    Bytes::from(v)
}

/// Checks the Ticket protocol over a reset mid-batch: not-sent requests never reached the
/// server, nothing reached two connections, and every reply is the request's own.
fn check_accounting(
    res: Vec<(u32, Result<Bytes, keepwire::client::ClientError>)>,
    log: &[Vec<u32>],
) {
    let count = |id: u32| {
        log.iter()
            .map(|c| c.iter().filter(|x| **x == id).count())
            .sum::<usize>()
    };
    for (id, r) in res {
        match r {
            Ok(reply) => {
                assert!(
                    reply.len() >= 4 && reply[..4] == id.to_be_bytes(),
                    "request {id} got another reply"
                );
                assert_eq!(
                    count(id),
                    1,
                    "request {id} reached the server {} times: {log:?}",
                    count(id)
                );
            }
            Err(e) if e.is_not_sent() => {
                assert_eq!(
                    count(id),
                    0,
                    "request {id} reported not sent ({e}) but reached the server: {log:?}"
                );
            }
            Err(e) => assert!(e.may_have_been_sent(), "{e}"),
        }
    }
}

/// A pipelined long client writes 40 × 256 KiB; the peer reads 1.3 MiB and resets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_reset_mid_batch_long_client_accounting() {
    let (addr, log) = reset_after_prefix_server(1_300_000).await;
    let client = builder("len:be:4:max=2m", &[addr])
        .max_in_flight(64)
        .request_timeout(Duration::from_secs(8))
        .connect_long()
        .await
        .unwrap();
    let reqs = (0..40u32).map(|i| {
        let c = client.clone();
        async move { (i, c.request(req(i, 256 * 1024)).await) }
    });
    let res = tokio::time::timeout(SOON, futures_util::future::join_all(reqs))
        .await
        .unwrap();
    let log = log.lock().unwrap().clone();
    check_accounting(res, &log);
}

/// The same on a mux link (keyed in-flight map).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_reset_mid_batch_mux_accounting() {
    let (addr, log) = reset_after_prefix_server(1_300_000).await;
    let mux = builder("len:be:4:max=2m", &[addr])
        .request_timeout(Duration::from_secs(8))
        .connect_mux(keepwire::client::ByteRange::new(0, 4))
        .await
        .unwrap();
    let reqs = (0..40u32).map(|i| {
        let c = mux.clone();
        async move { (i, c.request(req(i, 256 * 1024)).await) }
    });
    let res = tokio::time::timeout(SOON, futures_util::future::join_all(reqs))
        .await
        .unwrap();
    let log = log.lock().unwrap().clone();
    check_accounting(res, &log);
}

// ----------------------------------------------------------------- fail-back

/// Connected to a healthy backup, the idle client probes the preferred endpoint to fail
/// back, inline in the connection task: a preferred endpoint that does not answer SYNs
/// freezes the healthy connection for the whole connect timeout, and every request made
/// meanwhile fails ("no connection within ..", not sent) although the link is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_fail_back_probe_freezes_the_working_connection() {
    let (_hole, _fill, dead) = blackhole();
    let srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let client = builder("len:ascii:4", &[dead, srv.addr])
        .connect_timeout(Duration::from_millis(1500))
        .request_timeout(Duration::from_millis(700))
        .down_backoff(Duration::from_millis(100), Duration::from_millis(100))
        .connect_long()
        .await
        .unwrap();
    assert_eq!(client.current_endpoint(), Some(srv.addr.to_string()));
    let mut failed = Vec::new();
    let t = Instant::now();
    for i in 0..8 {
        let m = Bytes::from(format!("m{i}"));
        match client.request(m.clone()).await {
            Ok(r) => assert_eq!(r, m),
            Err(e) => failed.push(format!("{:?}: {e}", t.elapsed())),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        failed.is_empty(),
        "{} of 8 requests failed on a healthy backup connection: {failed:#?}",
        failed.len()
    );
}

/// pool.rs says "a pooled connection that breaks is replaced by the pool, not reconnected
/// by itself", but each pooled `LongClient` runs the ordinary connection task, which
/// reconnects on its own, without delay after a successful connect: an idle pool against a
/// peer that accepts and closes storms like a long client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_idle_pool_reconnects_by_itself_and_storms() {
    const CAP: usize = 300;
    let accepts = Arc::new(AtomicUsize::new(0));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::clone(&accepts);
    let acceptor = tokio::spawn(async move {
        while n.load(Ordering::Relaxed) < CAP {
            match l.accept().await {
                Ok((s, _)) => {
                    n.fetch_add(1, Ordering::Relaxed);
                    drop(s);
                }
                Err(_) => return,
            }
        }
    });
    let pool = builder("len:ascii:4", &[addr]).pool(2).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = accepts.load(Ordering::Relaxed);
    drop(pool);
    acceptor.abort();
    assert!(
        seen < 60,
        "an idle pool made {seen} connections in 1 s (cap {CAP}) to a peer that closes each"
    );
}

/// `request_timeout` is "how long a request may take in all: waiting for a connection,
/// writing, and the reply". A pool of one whose connection is busy: the third caller waits
/// for two others' whole request timeouts before its own starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_pool_request_outlives_request_timeout() {
    let srv = start(
        ServerConfig::new(spec("len:ascii:4")),
        "127.0.0.1:0",
        Some(Duration::from_secs(3)),
    )
    .await;
    let pool = builder("len:ascii:4", &[srv.addr])
        .request_timeout(Duration::from_millis(400))
        .pool(1)
        .await
        .unwrap();
    let reqs = (0..3).map(|i| {
        let p = pool.clone();
        async move {
            let t = Instant::now();
            let r = p.request(Bytes::from(format!("m{i}"))).await;
            (t.elapsed(), r)
        }
    });
    let res = tokio::time::timeout(SOON, futures_util::future::join_all(reqs))
        .await
        .unwrap();
    let slowest = res.iter().map(|(t, _)| *t).max().unwrap();
    assert!(
        slowest < Duration::from_millis(900),
        "a pool request with a 400 ms timeout took {slowest:?}: {:?}",
        res.iter()
            .map(|(t, r)| (t, r.as_ref().map_err(ToString::to_string)))
            .collect::<Vec<_>>()
    );
}

/// Distinct ping/pong (PING/PONG) on both sides, both pinging every few ms, while pipelined
/// requests are in flight: every request gets its reply and every peer ping is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_distinct_pings_crossing_requests() {
    let peer_pings = Arc::new(AtomicUsize::new(0));
    let pongs_back = Arc::new(AtomicUsize::new(0));
    let (pp, pb) = (Arc::clone(&peer_pings), Arc::clone(&pongs_back));
    let addr = raw_server(move |s| {
        let (pp, pb) = (Arc::clone(&pp), Arc::clone(&pb));
        async move {
            use tokio::io::AsyncWriteExt;
            let (mut r, mut w) = s.into_split();
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
            let ptx = tx.clone();
            let pinger = tokio::spawn(async move {
                for _ in 0..400 {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    if ptx.send(b("PING")).await.is_err() {
                        return;
                    }
                    pp.fetch_add(1, Ordering::Relaxed);
                }
            });
            tokio::spawn(async move {
                let codec = FrameCodec::new(spec("len:ascii:4"));
                while let Some(f) = rx.recv().await {
                    let mut out = BytesMut::new();
                    codec.encode_to(&f, &mut out).unwrap();
                    if w.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
            let mut codec = FrameCodec::new(spec("len:ascii:4"));
            let mut buf = BytesMut::new();
            loop {
                let f = loop {
                    if let Ok(Some(f)) = codec.decode(&mut buf) {
                        break f;
                    }
                    buf.reserve(1024);
                    match r.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => {
                            pinger.abort();
                            return;
                        }
                        Ok(_) => {}
                    }
                };
                let out = match &f[..] {
                    b"PING" => b("PONG"),
                    b"PONG" => {
                        pb.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    _ => f,
                };
                if tx.send(out).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let client = builder("len:ascii:4", &[addr])
        .max_in_flight(4)
        .heartbeat(
            "interval=100ms,timeout=2s,misses=3,ping=text:PING,pong=text:PONG"
                .parse()
                .unwrap(),
        )
        .connect_long()
        .await
        .unwrap();
    for round in 0..20 {
        let reqs = (0..8).map(|i| {
            let c = client.clone();
            async move {
                let m = Bytes::from(format!("r{round}-{i}"));
                (m.clone(), c.request(m).await)
            }
        });
        let res = tokio::time::timeout(SOON, futures_util::future::join_all(reqs))
            .await
            .unwrap();
        for (m, r) in res {
            assert_eq!(r.as_ref().ok(), Some(&m), "{m:?}: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(7)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let st = client.stats();
    let (sent, back) = (
        peer_pings.load(Ordering::Relaxed),
        pongs_back.load(Ordering::Relaxed),
    );
    assert!(
        sent > 0 && back + 2 >= sent,
        "peer sent {sent} pings, got {back} pongs; {st:?}"
    );
    assert_eq!(st.disconnects, 0, "{st:?}");
}

/// A server that answers a timed-out keyed request twice (a retransmitting peer): the first
/// late copy removes the tombstone, the retry with the same key is admitted at once, and the
/// second late copy is taken as the retry's reply.
///
/// Decided (see `client/tombstone.rs`): a server answers each request at most once; a
/// second reply to one key breaks correlation by key, and on the wire it cannot be told
/// from the retry's own reply (a retry of the same request gets the same bytes). Keeping the
/// tombstone for its whole window after the late reply would make every retry against a
/// correct server wait at least 1 s (`attack_mux_late_reply_at_the_retry` needs the retry
/// admitted as soon as the late reply came). So this asserts the documented behaviour: the
/// retry is refused (Key, not sent) until the first late copy arrived, then admitted, and
/// the duplicate, which comes first, is taken as its reply. Use a fresh key per attempt
/// where the peer may answer twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_mux_late_reply_answered_twice_goes_to_the_retry() {
    let addr = raw_server(|s| async move {
        use tokio::io::AsyncWriteExt;
        let (mut r, mut w) = s.into_split();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            let codec = FrameCodec::new(spec("len:ascii:4"));
            while let Some(f) = rx.recv().await {
                let mut out = BytesMut::new();
                codec.encode_to(&f, &mut out).unwrap();
                if w.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
        let mut codec = FrameCodec::new(spec("len:ascii:4"));
        let mut buf = BytesMut::new();
        loop {
            let f = loop {
                if let Ok(Some(f)) = codec.decode(&mut buf) {
                    break f;
                }
                buf.reserve(1024);
                match r.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                if f.ends_with(b"first") {
                    // Late, and twice.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = tx.send(f.clone()).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = tx.send(f).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = tx.send(f).await;
                }
            });
        }
    })
    .await;
    let mux = builder("len:ascii:4", &[addr])
        .connect_mux(keepwire::client::ByteRange::new(0, 4))
        .await
        .unwrap();
    let e = mux
        .request_timeout(b("k001first"), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    let mut tries = 0;
    let reply = loop {
        tries += 1;
        assert!(tries < 600, "key refused for too long");
        match mux
            .request_timeout(b("k001second"), Duration::from_secs(2))
            .await
        {
            Ok(r) => break r,
            Err(e) if e.is_not_sent() => {
                assert_eq!(e.kind(), keepwire::client::ClientErrorKind::Key, "{e}");
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        tries > 1,
        "the retry was admitted while its key awaited a late reply"
    );
    // The first copy was taken as the late reply (so the key was tombstoned until then);
    // reading the counter before each try would race with its arrival.
    assert_eq!(
        mux.stats().late_replies,
        1,
        "the first late copy was not taken as late"
    );
    // The server's contract violation: its duplicate is the retry's reply.
    assert_eq!(reply, "k001first");
}

/// The short client's connect is not bounded by the request timeout either: one endpoint
/// that drops SYNs makes a 500 ms request take the whole 2 s connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_short_client_connect_ignores_request_timeout() {
    let (_hole, _fill, dead) = blackhole();
    let client = builder("len:ascii:4", &[dead])
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_millis(500))
        .build_short();
    let t = Instant::now();
    let r = tokio::time::timeout(SOON, client.request(b("x")))
        .await
        .unwrap();
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1200),
        "a short request with a 500 ms timeout took {took:?}: {r:?}"
    );
}

// ----------------------------------------------------------------- segments and closes

/// Conn 1 answers with half a reply and closes; later connections echo. The request fails
/// as maybe sent, promptly, and the next request gets its own reply, not the stale half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_peer_closes_mid_reply_then_echoes() {
    let conns = Arc::new(AtomicUsize::new(0));
    let c2 = Arc::clone(&conns);
    let addr = raw_server(move |mut s| {
        let n = c2.fetch_add(1, Ordering::Relaxed);
        async move {
            use tokio::io::AsyncWriteExt;
            let mut codec = FrameCodec::new(spec("len:be:4"));
            let mut buf = BytesMut::new();
            while let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await {
                let mut out = BytesMut::new();
                codec.encode_to(&f, &mut out).unwrap();
                if n == 0 {
                    let _ = s.write_all(&out[..out.len() / 2]).await;
                    return; // FIN mid-frame
                }
                if s.write_all(&out).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    for mux in [false, true] {
        conns.store(0, Ordering::Relaxed);
        let cb = builder("len:be:4", &[addr]).request_timeout(Duration::from_secs(3));
        let t = Instant::now();
        let (e, r) = if mux {
            let c = cb
                .connect_mux(keepwire::client::ByteRange::new(0, 4))
                .await
                .unwrap();
            let e = c.request(b("AAAAfirst-request")).await.unwrap_err();
            (e, c.request(b("BBBBsecond-request")).await)
        } else {
            let c = cb.connect_long().await.unwrap();
            let e = c.request(b("AAAAfirst-request")).await.unwrap_err();
            (e, c.request(b("BBBBsecond-request")).await)
        };
        assert!(e.may_have_been_sent() && !e.is_timeout(), "mux={mux}: {e}");
        assert_eq!(r.ok(), Some(b("BBBBsecond-request")), "mux={mux}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "mux={mux}: {:?}",
            t.elapsed()
        );
    }
}

// ----------------------------------------------------------------- configurations that cannot work

/// `ping(Some(..))` with `heartbeat_frames(None)`: liveness "sends" pings that are never
/// written (no heartbeat to build them), counts them unanswered, and declares a healthy,
/// idle server dead: the connection is dropped and the endpoint marked down, again and
/// again. The builder should refuse the combination (or not ping), not fail over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_ping_without_heartbeat_frames_kills_healthy_links() {
    let srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let r = builder("len:ascii:4", &[srv.addr])
        .heartbeat_frames(None)
        .ping(Some(keepwire::liveness::PingConfig {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(50),
            misses: 1,
        }))
        .connect_long()
        .await;
    let Ok(client) = r else { return }; // refused up front: fine
    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = client.stats();
    let eps = client.endpoints();
    assert!(
        st.disconnects == 0 && st.endpoints_marked_down == 0,
        "a healthy idle server declared dead: {st:?} {eps:?}"
    );
}

/// `heartbeat("interval=..")` under `fixed:4` (no empty frame): the server refuses this
/// configuration ("the heartbeat ping cannot be sent under fixed:4"), the client builder
/// takes it, and the first idle ping fails to encode and drops the connection, every
/// interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_unencodable_ping_churns_the_connection() {
    let srv = echo_server(ServerConfig::new(spec("fixed:4"))).await;
    let r = builder("fixed:4", &[srv.addr])
        .heartbeat("interval=100ms,timeout=1s,misses=3".parse().unwrap())
        .connect_long()
        .await;
    let Ok(client) = r else { return }; // refused up front: fine
    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = client.stats();
    assert!(
        st.disconnects == 0,
        "an unencodable ping dropped the connection {} times in 800 ms: {st:?}",
        st.disconnects
    );
}
