//! Hostile review of the async clients (attack 4): each test here failed on the code it was
//! written against. Misbehaving peers are raw tokio listeners on 127.0.0.1; every loop is
//! bounded in count and time.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use keepwire::server::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A peer that accepts, writes one frame ("busy", as a server at its connection limit
/// says so: SMTP 421, Redis "-ERR max number of clients") and closes. The frame makes
/// `Backoff::after_loss` take the connection as proof of health, so the backoff is reset
/// and the client reconnects at once, every time: a reconnect storm, as before the
/// backoff fix, only with one frame in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack2_reconnect_storm_against_peer_that_says_busy_and_closes() {
    const CAP: usize = 300;
    let accepts = Arc::new(AtomicUsize::new(0));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::clone(&accepts);
    let acceptor = tokio::spawn(async move {
        while n.load(Ordering::Relaxed) < CAP {
            match l.accept().await {
                Ok((mut s, _)) => {
                    n.fetch_add(1, Ordering::Relaxed);
                    let _ = s.write_all(b"0004busy").await;
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
        "{seen} connections in 1 s to a peer that writes one frame and closes (cap {CAP}): \
         the frame resets the backoff, a reconnect storm"
    );
}

/// A mux client on the backup while the preferred endpoint is back, with requests
/// overlapping (two callers, the backup answers each after 100 ms): something is always in
/// flight, and the fail-back probe is only ever started when nothing is, so the client
/// never fails back, however long the preferred endpoint has been healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known limit: fail-back waits for an idle moment; under steady overlapping load \
            (a request always in flight) a mux or long client stays on the backup, \
            documented on LongClient and MuxClient"]
async fn attack2_mux_never_fails_back_under_overlapping_load() {
    let primary = refused_addr().await;
    let backup = start(
        ServerConfig::new(spec("len:ascii:4")),
        "127.0.0.1:0",
        Some(Duration::from_millis(100)),
    )
    .await;
    let client = builder("len:ascii:4", &[primary, backup.addr])
        .down_backoff(Duration::from_millis(50), Duration::from_millis(50))
        .connect_mux(keepwire::client::ByteRange::new(0, 4))
        .await
        .unwrap();
    // The preferred endpoint comes back on its port.
    let mut back = start(
        ServerConfig::new(spec("len:ascii:4")),
        &primary.to_string(),
        None,
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for c in 0..2u32 {
        let client = client.clone();
        let stop = Arc::clone(&stop);
        callers.push(tokio::spawn(async move {
            if c == 1 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut errors = Vec::new();
            // Bounded: at most 100 requests per caller.
            for i in 0..100u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let m = Bytes::from(format!("{c}{i:03}x"));
                match client.request(m.clone()).await {
                    Ok(r) => assert_eq!(r, m),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            errors
        }));
    }
    // 2 s: the preferred endpoint's retry time (50 ms) passes forty times over.
    let t = Instant::now();
    let mut failed_back = false;
    while t.elapsed() < Duration::from_secs(2) {
        if back.seen.try_recv().is_ok() {
            failed_back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        let errors = c.await.unwrap();
        assert!(errors.is_empty(), "requests failed: {errors:?}");
    }
    // Idle, the same client does fail back (the setup is sound): spaced requests reach
    // the preferred endpoint within the bound.
    let mut idle_failed_back = false;
    if !failed_back {
        for i in 0..20u32 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let m = Bytes::from(format!("i{i:03}x"));
            assert_eq!(client.request(m.clone()).await.unwrap(), m);
            if back.seen.try_recv().is_ok() {
                idle_failed_back = true;
                break;
            }
        }
    }
    assert!(
        failed_back,
        "the preferred endpoint was back for 2 s and not one request went to it: \
         under overlapping load the mux client never fails back (idle, it did: \
         {idle_failed_back})"
    );
}

/// A short client whose first endpoint drops SYNs, with a request timeout below the connect
/// timeout: each request spends its whole deadline connecting to the dead endpoint, which
/// is "cut short by the deadline" and so never marked down. The plan never changes and the
/// healthy second endpoint is never tried: every request fails, forever (before the
/// deadline bound, the first took the connect timeout and failover worked after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack2_short_client_never_fails_over_past_a_syn_blackhole() {
    let (_hole, _fill, dead) = blackhole();
    let srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let client = builder("len:ascii:4", &[dead, srv.addr])
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_millis(300))
        .build_short();
    let mut errors = Vec::new();
    // Bounded: 6 requests of at most 300 ms each.
    for i in 0..6u32 {
        let m = Bytes::from(format!("m{i}"));
        match tokio::time::timeout(SOON, client.request(m.clone()))
            .await
            .unwrap()
        {
            Ok(r) => assert_eq!(r, m),
            Err(e) => errors.push(e.to_string()),
        }
    }
    assert!(
        errors.len() < 6,
        "all 6 requests failed although the second endpoint is healthy: {errors:#?}\n{:?}",
        client.endpoints()
    );
}

/// A raw echo server (bytes back as they come) that, when `kill` fires, closes its listener
/// and every connection: the port then refuses connects.
async fn killable_echo() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    use tokio::io::AsyncReadExt;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (kill, mut killed) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            tokio::select! {
                _ = &mut killed => break,
                a = l.accept() => match a {
                    Ok((mut s, _)) => conns.push(tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        loop {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if s.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    })),
                    Err(_) => break,
                },
            }
        }
        for c in conns {
            c.abort();
        }
    });
    (addr, kill)
}

/// The pool's server goes away (connects refused). Pool::request is documented to fail with
/// `is_connect` "when a new connection could not be made"; but bb8 sends connect errors to
/// its error sink, not to the waiter, which sleeps until the checkout timeout: the request
/// takes the whole checkout timeout (3 s here) and fails as a pool timeout, as if every
/// connection were busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack2_pool_server_down_is_a_pool_timeout_not_a_connect_error() {
    let (addr, kill) = killable_echo().await;
    let pool = builder("len:ascii:4", &[addr])
        .checkout_timeout(Duration::from_secs(3))
        .request_timeout(Duration::from_secs(5))
        .pool(1)
        .await
        .unwrap();
    assert_eq!(
        pool.request(Bytes::from_static(b"a")).await.unwrap(),
        &b"a"[..]
    );
    kill.send(()).unwrap();
    // Wait until the idle pooled connection has read the close and closed its end: no
    // client socket to the port is still ESTABLISHED or in CLOSE_WAIT (the kernel's count).
    eventually("the pooled connection closes its end", || {
        let st = keepwire::tcpstate::port_states_now(addr.port()).unwrap();
        st.remote_count(keepwire::tcpstate::TcpState::Established) == 0
            && st.remote_count(keepwire::tcpstate::TcpState::CloseWait) == 0
    })
    .await;
    let t = Instant::now();
    let r = tokio::time::timeout(SOON, pool.request(Bytes::from_static(b"b")))
        .await
        .unwrap();
    let took = t.elapsed();
    let e = r.expect_err("the server is gone");
    assert!(
        e.is_connect() && e.is_not_sent() && took < Duration::from_secs(1),
        "with the server gone (connects refused) the request took {took:?} and failed with \
         {e} (connect: {}, pool timeout: {})",
        e.is_connect(),
        e.is_pool_timeout()
    );
}

/// A listener that accepts and closes every connection at once (a server at its
/// connection limit, a load balancer with no healthy backend), counting them.
async fn accept_and_close(cap: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let accepts = Arc::new(AtomicUsize::new(0));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::clone(&accepts);
    tokio::spawn(async move {
        // Bounded: after `cap` accepts the listener goes away (connects are then refused).
        while n.load(Ordering::Relaxed) < cap {
            match l.accept().await {
                Ok((s, _)) => {
                    n.fetch_add(1, Ordering::Relaxed);
                    drop(s);
                }
                Err(_) => return,
            }
        }
    });
    (addr, accepts)
}

/// The preferred endpoint accepts and closes every connection; the second is a healthy
/// echo server. A connection that dies young with nothing delivered is backed off from,
/// but its endpoint is not marked down (a close is no `down` reason), so every reconnect
/// plan starts with the same bad endpoint again: the long client never fails over, and
/// its requests fail although the backup is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack2_long_client_never_fails_over_from_an_accept_and_close_endpoint() {
    let (bad, accepts) = accept_and_close(300).await;
    let srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let client = builder("len:ascii:4", &[bad, srv.addr])
        .request_timeout(Duration::from_millis(500))
        .connect_long()
        .await
        .unwrap();
    let mut errors = Vec::new();
    let mut ok = 0;
    // Bounded: 8 requests of at most 500 ms, 100 ms apart.
    for i in 0..8u32 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let m = Bytes::from(format!("m{i}"));
        match client.request(m.clone()).await {
            Ok(r) => {
                assert_eq!(r, m);
                ok += 1;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    assert!(
        ok >= 4,
        "{ok} of 8 requests succeeded with a healthy backup ({} connections to the endpoint \
         that closes each; now on {:?}): {errors:#?}",
        accepts.load(Ordering::Relaxed),
        client.current_endpoint()
    );
}
