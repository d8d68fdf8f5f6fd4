//! Regression tests for client defects, named after what they found (issue 9 of the tracker):
//! the heartbeat frame sent as data (the "storm"), a reused mux key taking a late reply, the
//! write-write deadlock of large pipelined frames, and huge durations.
//!
//! Servers whose behaviour is the point (one that replies with the heartbeat frame, one that
//! answers late) are raw tokio listeners written here, not `keepwire::server`.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use keepwire::client::{ClientBuilder, ClientErrorKind};
use keepwire::frame::FrameCodec;
use keepwire::liveness::FixedHeartbeat;
use keepwire::server::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Writes one frame; false once the peer is gone.
async fn write_frame(s: &mut TcpStream, codec: &FrameCodec, frame: &[u8]) -> bool {
    let mut out = BytesMut::new();
    codec.encode_to(frame, &mut out).unwrap();
    s.write_all(&out).await.is_ok()
}

// ------------------------------------------- issue 9: the heartbeat frame is never data

/// R1: on a long link whose heartbeat is the empty frame, an empty request is refused before
/// a byte is written, on every async request path; with heartbeats off it is plain data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_heartbeat_frame_request_is_refused_not_sent() {
    let mut srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let eps = [srv.addr];
    let quick = |f: &str| builder(f, &eps).request_timeout(Duration::from_secs(1));

    let long = quick("len:ascii:4").connect_long().await.unwrap();
    let e = long.request(Bytes::new()).await.unwrap_err();
    assert!(e.is_heartbeat_frame() && e.is_not_sent(), "{e}");
    assert!(e.to_string().contains("--heartbeat off"), "{e}");
    assert_eq!(long.stats().pings_answered, 0);

    let pool = quick("len:ascii:4").pool(2).await.unwrap();
    let e = pool.request(Bytes::new()).await.unwrap_err();
    assert!(e.is_heartbeat_frame() && e.is_not_sent(), "{e}");

    let (tx, _rx) = quick("len:ascii:4").connect_duplex().await.unwrap().split();
    let e = tx.send(Bytes::new()).await.unwrap_err();
    assert!(e.is_heartbeat_frame() && e.is_not_sent(), "{e}");

    // A fixed same-bytes heartbeat on a mux link: the frame has a key, and is still refused.
    let mux = quick("len:ascii:4")
        .heartbeat_frames(Some(std::sync::Arc::new(FixedHeartbeat::new(
            "BEAT", "BEAT",
        ))))
        .connect_mux(keepwire::client::ByteRange::new(0, 4))
        .await
        .unwrap();
    let e = mux.request(b("BEAT")).await.unwrap_err();
    assert!(e.is_heartbeat_frame() && e.is_not_sent(), "{e}");
    assert!(e.to_string().contains("\"BEAT\""), "{e}");

    // Nothing reached the handler.
    assert_eq!(long.request(b("after")).await.unwrap(), "after");
    let seen = tokio::time::timeout(SOON, srv.seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.frame, "after");
    assert!(srv.seen.try_recv().is_err());

    // Heartbeats off: the empty frame is data. The server (which answers heartbeats) sends
    // its empty pong, which is the reply.
    let off = quick("len:ascii:4")
        .heartbeat_frames(None)
        .connect_long()
        .await
        .unwrap();
    let r = tokio::time::timeout(SOON, off.request(Bytes::new()))
        .await
        .unwrap()
        .unwrap();
    assert!(r.is_empty());
}

/// R3: a misconfigured peer that answers every frame it reads with the empty frame (it
/// replies with the heartbeat frame, and answers our pongs). Before the fix the client
/// answered each empty frame and the two bounced them at socket speed until the request
/// timed out; now at most one a second is answered and the timeout says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_peer_replying_with_heartbeat_frame_does_not_storm() {
    let addr = raw_server(|mut s| async move {
        let mut codec = FrameCodec::new(spec("len:ascii:4"));
        let mut buf = BytesMut::new();
        while read_frame(&mut s, &mut codec, &mut buf).await.is_some() {
            if !write_frame(&mut s, &codec, b"").await {
                return;
            }
        }
    })
    .await;
    let client = builder("len:ascii:4", &[addr])
        .connect_long()
        .await
        .unwrap();
    let t = Instant::now();
    let e = tokio::time::timeout(SOON, client.request_timeout(b("x"), Duration::from_secs(1)))
        .await
        .unwrap()
        .unwrap_err();
    let answered = client.stats().pings_answered;
    assert!(answered <= 2, "{answered} empty frames answered: a storm");
    assert!(e.is_timeout() && e.may_have_been_sent(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("no reply within 1s; heartbeat frames arrived instead")
            && msg.contains("the empty frame is the heartbeat")
            && msg.contains("--heartbeat off"),
        "{msg}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// Nothing pings a short link after the request: an empty reply is the reply (before the
/// fix it was skipped as "a heartbeat before the reply" and the request timed out). An
/// empty request is the heartbeat frame: refused unless heartbeats are off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_short_client_takes_an_empty_reply() {
    let addr = raw_server(|mut s| async move {
        let mut codec = FrameCodec::new(spec("len:ascii:4"));
        let mut buf = BytesMut::new();
        if read_frame(&mut s, &mut codec, &mut buf).await.is_some() {
            let _ = s.write_all(b"0000").await;
        }
        // Hold until the client closes.
        while read_frame(&mut s, &mut codec, &mut buf).await.is_some() {}
    })
    .await;
    let client = builder("len:ascii:4", &[addr])
        .request_timeout(Duration::from_secs(2))
        .build_short();
    // The empty request is the heartbeat frame: a short server answers it as a probe.
    let e = client.request(Bytes::new()).await.unwrap_err();
    assert!(e.is_heartbeat_frame() && e.is_not_sent(), "{e}");
    let client = builder("len:ascii:4", &[addr])
        .request_timeout(Duration::from_secs(2))
        .heartbeat_frames(None)
        .build_short();
    for req in [b("x"), Bytes::new()] {
        let r = tokio::time::timeout(SOON, client.request(req))
            .await
            .unwrap()
            .unwrap();
        assert!(r.is_empty(), "{r:?}");
    }
}

// ------------------------------------------------------- issue 9: huge durations

/// Every duration of the builder at `Duration::MAX` (and `u64::MAX` seconds): long, mux,
/// pool and short clients connect (past a refused endpoint, which is then marked down for
/// "ever") and complete requests without panicking. `Instant + Duration` used to panic on
/// the refused endpoint's down time and on every request deadline. Zero pool idle and
/// lifetime (bb8 asserts them non-zero) are taken as 1 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_huge_durations_do_not_panic() {
    let srv = echo_server(ServerConfig::new(spec("len:be:2"))).await;
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let eps = [dead, srv.addr.to_string()];
    for huge in [Duration::MAX, Duration::from_secs(u64::MAX)] {
        let cfg = ClientBuilder::new(spec("len:be:2"), eps.clone())
            .connect_timeout(huge)
            .request_timeout(huge)
            .write_timeout(huge)
            .reconnect_backoff(huge, huge)
            .down_backoff(huge, huge)
            .checkout_timeout(huge)
            .max_idle(Some(huge))
            .max_lifetime(Some(huge))
            .ping(Some(keepwire::liveness::PingConfig {
                interval: huge,
                timeout: huge,
                misses: 3,
            }));
        let run = async {
            let long = cfg.clone().connect_long().await.unwrap();
            assert_eq!(long.request(b("long")).await.unwrap(), "long");
            assert_eq!(long.request_timeout(b("own"), huge).await.unwrap(), "own");
            let mux = cfg
                .clone()
                .connect_mux(keepwire::client::ByteRange::new(0, 2))
                .await
                .unwrap();
            assert_eq!(mux.request(b("mx")).await.unwrap(), "mx");
            let pool = cfg.clone().pool(2).await.unwrap();
            assert_eq!(pool.request(b("pool")).await.unwrap(), "pool");
            let short = cfg.clone().build_short();
            assert_eq!(short.request(b("short")).await.unwrap(), "short");
        };
        tokio::time::timeout(SOON, run).await.unwrap();
    }
    let zero = ClientBuilder::new(spec("len:be:2"), [srv.addr.to_string()])
        .max_idle(Some(Duration::ZERO))
        .max_lifetime(Some(Duration::ZERO));
    let pool = tokio::time::timeout(SOON, zero.pool(1))
        .await
        .unwrap()
        .unwrap();
    let r = tokio::time::timeout(SOON, pool.request(b("z")))
        .await
        .unwrap();
    assert_eq!(r.unwrap(), "z");
}

// ------------------------------------------------ issue 9: a reused mux key

/// A keyed request times out; its caller retries with the same key (same sequence number,
/// as is normal practice); the server's late reply to the first must not be handed to the
/// second. The raw server keeps the first reply until it has read the next request (or
/// 700 ms passed, within the key's 1 s tombstone window), then sends the late reply followed
/// at once by the reply to whatever it read.
/// Before the fix the retry was written at once and took the late reply (`late-first`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_mux_retry_with_a_timed_out_key_never_takes_the_late_reply() {
    let addr = raw_server(|mut s| async move {
        let mut codec = FrameCodec::new(spec("len:be:2"));
        let mut buf = BytesMut::new();
        let Some(first) = read_frame(&mut s, &mut codec, &mut buf).await else {
            return;
        };
        let key = first.slice(..2);
        let next = tokio::time::timeout(
            Duration::from_millis(700),
            read_frame(&mut s, &mut codec, &mut buf),
        )
        .await;
        if !write_frame(&mut s, &codec, &[&key[..], b"late-first"].concat()).await {
            return;
        }
        let mut next = match next {
            Ok(Some(f)) => Some(f),
            Ok(None) => return,
            Err(_) => read_frame(&mut s, &mut codec, &mut buf).await,
        };
        while let Some(f) = next {
            if !write_frame(&mut s, &codec, &[&f[..], b"-reply"].concat()).await {
                return;
            }
            next = read_frame(&mut s, &mut codec, &mut buf).await;
        }
    })
    .await;
    let mux = builder("len:be:2", &[addr])
        .connect_mux(keepwire::client::ByteRange::new(0, 2))
        .await
        .unwrap();
    let mut unsolicited = mux.unsolicited().unwrap();
    let e = mux
        .request_timeout(b("\x00\x01first"), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(e.is_timeout() && e.may_have_been_sent(), "{e}");

    // The caller retries with the same key until it is let through; a refusal must be
    // `Key`, not sent, and say why.
    let retry = async {
        let mut refusals = 0;
        loop {
            match mux.request(b("\x00\x01second")).await {
                Ok(r) => return (r, refusals),
                Err(e) => {
                    assert_eq!(e.kind(), ClientErrorKind::Key, "{e}");
                    assert!(e.is_not_sent(), "{e}");
                    assert!(e.to_string().contains("late reply"), "{e}");
                    refusals += 1;
                    // Retry once the late reply has come (it goes to the unsolicited stream).
                    let late = unsolicited.recv().await.unwrap();
                    assert_eq!(late, b("\x00\x01late-first"));
                }
            }
        }
    };
    let (reply, refusals) = tokio::time::timeout(SOON, retry).await.unwrap();
    assert_eq!(
        reply,
        b("\x00\x01second-reply"),
        "the retry took another reply"
    );
    assert_eq!(refusals, 1);
    let st = mux.stats();
    assert_eq!((st.late_replies, st.unsolicited), (1, 1), "{st:?}");
}

/// A tombstoned key whose late reply never comes is let through once its window (the timed
/// out request's own timeout, at least 1 s) has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_mux_tombstone_clears_after_its_window() {
    // Never answers frames whose body starts with "hold"; echoes the rest.
    let addr = raw_server(|mut s| async move {
        let mut codec = FrameCodec::new(spec("len:be:2"));
        let mut buf = BytesMut::new();
        while let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await {
            if f.get(2..6) != Some(&b"hold"[..]) && !write_frame(&mut s, &codec, &f).await {
                return;
            }
        }
    })
    .await;
    let mux = builder("len:be:2", &[addr])
        .connect_mux(keepwire::client::ByteRange::new(0, 2))
        .await
        .unwrap();
    let e = mux
        .request_timeout(b("\x00\x05hold"), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(e.may_have_been_sent(), "{e}");
    let gone = Instant::now();
    let e = mux.request(b("\x00\x05again")).await.unwrap_err();
    assert!(e.kind() == ClientErrorKind::Key && e.is_not_sent(), "{e}");
    assert!(e.to_string().contains("after 1s at most"), "{e}");
    // Other keys are not held up meanwhile.
    assert_eq!(
        mux.request(b("\x00\x06other")).await.unwrap(),
        "\x00\x06other"
    );
    let ok = tokio::time::timeout(SOON, async {
        loop {
            match mux.request(b("\x00\x05again")).await {
                Ok(r) => return r,
                Err(e) => {
                    assert_eq!(e.kind(), ClientErrorKind::Key, "{e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ok, "\x00\x05again");
    assert!(
        gone.elapsed() >= Duration::from_millis(900),
        "{:?}",
        gone.elapsed()
    );
}

// ------------------------------------------ issue 9: write-write deadlock

/// 256 requests of 256 KiB pipelined on one mux connection to an echo server. The client
/// used not to read while a write waited for the socket: with both socket buffers full of
/// frames, the server blocked writing replies (so stopped reading) and the client blocked
/// writing requests, until the write timeout. Now the client reads and dispatches replies
/// while its writes wait.
///
/// One thread on purpose: all 256 requests are queued before the connection task runs, so
/// they go out in batches of 64 (16 MiB per write), more than the loopback buffers hold. On
/// a multi-thread runtime the task wakes per request and its small batches hid the defect.
#[tokio::test(flavor = "current_thread")]
async fn issue9_large_pipelined_frames_do_not_deadlock() {
    const N: u32 = 256;
    const SIZE: usize = 256 * 1024;
    let server = keepwire::server::Server::bind("127.0.0.1:0", ServerConfig::new(spec("len:be:4")))
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(
        server.serve(keepwire::server::service_fn(
            |r: keepwire::server::Request| async move {
                Ok::<_, std::convert::Infallible>(Some(r.frame))
            },
        )),
    );
    let mux = builder("len:be:4", &[addr])
        .request_timeout(Duration::from_secs(60))
        .write_timeout(Duration::from_secs(3))
        .connect_mux(keepwire::client::ByteRange::new(0, 4))
        .await
        .unwrap();
    let body = |i: u32| -> Bytes {
        let mut v = Vec::with_capacity(SIZE);
        v.extend_from_slice(&i.to_be_bytes());
        v.extend((4..SIZE).map(|j| (j as u32 ^ i) as u8));
        Bytes::from(v)
    };
    let all = futures_util::future::join_all((0..N).map(|i| {
        let mux = mux.clone();
        async move { (i, mux.request(body(i)).await) }
    }));
    let results = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("256 echoes within 60 s");
    let mut failed = Vec::new();
    for (i, r) in results {
        match r {
            Ok(reply) if reply == body(i) => {}
            Ok(reply) => failed.push(format!("{i}: wrong reply of {} bytes", reply.len())),
            Err(e) => failed.push(format!("{i}: {e}")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(mux.stats().unsolicited, 0);
}

/// Hostile review: `ping(Some(..))` with `heartbeat_frames(None)` declared healthy peers dead,
/// and an empty-frame ping under `fixed:4` dropped the connection every interval. Both are
/// refused before a connection is made, by every client type, with a config error.
#[tokio::test]
async fn review_heartbeat_configs_that_cannot_work_are_refused_up_front() {
    let srv = echo_server(ServerConfig::new(spec("fixed:4"))).await;
    let ping = keepwire::liveness::PingConfig::default();
    let cases = [
        builder("fixed:4", &[srv.addr]).heartbeat("interval=100ms".parse().unwrap()),
        builder("fixed:4", &[srv.addr]).heartbeat("ping=text:PING,pong=text:PO".parse().unwrap()),
        builder("fixed:4", &[srv.addr])
            .heartbeat_frames(None)
            .ping(Some(ping)),
        builder("fixed:4", &[srv.addr]).probe_on_connect(true),
    ];
    for cb in cases {
        let what = format!("{cb:?}");
        let e = cb.clone().connect_long().await.unwrap_err();
        assert!(e.is_config() && e.is_not_sent(), "{what}: {e}");
        assert!(e.to_string().starts_with("bad client config: "), "{e}");
        let e = cb.clone().pool(2).await.unwrap_err();
        assert!(e.is_config(), "{what}: {e}");
        let e = cb.clone().connect_duplex().await.unwrap_err();
        assert!(e.is_config(), "{what}: {e}");
        let e = cb
            .clone()
            .build_short()
            .request(b("abcd"))
            .await
            .unwrap_err();
        assert!(e.is_config(), "{what}: {e}");
    }
    // Payloads the framing carries are fine, and the link works.
    let ok = builder("fixed:4", &[srv.addr]).heartbeat(
        "interval=100ms,ping=text:PING,pong=text:PONG"
            .parse()
            .unwrap(),
    );
    assert!(ok.validate().is_ok());
    let c = ok.connect_long().await.unwrap();
    assert_eq!(c.request(b("abcd")).await.unwrap(), "abcd");
}
