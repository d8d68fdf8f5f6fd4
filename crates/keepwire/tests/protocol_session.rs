//! The clients' session hook ([`SessionHook`]) with a tiny fake protocol of our own, over
//! real sockets: the login on every connection before any request, a refused login as
//! `is_login` (and not retried in a loop), the logout answered before the FIN on a graceful
//! close, short clients logging in and out per request, and the answers owed to the
//! partner's own frames.
//!
//! The fake protocol (`len:be:2`): `LOGIN:<secret>` answered `OK` or `NO:<status>`;
//! `LOGOUT` answered `BYE`; `REQ:<x>` answered `RSP:<x>`; the server may send `PUSH`, which
//! the client owes `ACK` for.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{b, builder, raw_server, read_frame, spec};
use keepwire::client::{LoginRefused, SessionHook};
use keepwire::frame::FrameCodec;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[derive(Debug)]
struct Fake {
    secret: &'static str,
}

impl SessionHook for Fake {
    fn login(&self) -> Option<Bytes> {
        Some(Bytes::from(format!("LOGIN:{}", self.secret)))
    }
    fn is_answer(&self, request: &[u8], frame: &[u8]) -> bool {
        if request.starts_with(b"LOGIN") {
            frame == b"OK" || frame.starts_with(b"NO:")
        } else {
            frame == b"BYE"
        }
    }
    fn check_login(&self, _login: &[u8], answer: &[u8]) -> Result<(), LoginRefused> {
        match answer.strip_prefix(b"NO:") {
            Some(status) => Err(LoginRefused::new(format!(
                "login refused: status {}",
                String::from_utf8_lossy(status)
            ))),
            None => Ok(()),
        }
    }
    fn logout(&self) -> Option<Bytes> {
        Some(b("LOGOUT"))
    }
    fn answer(&self, frame: &[u8]) -> Option<Bytes> {
        (frame == b"PUSH").then(|| b("ACK"))
    }
}

/// What a fake partner saw, in order, across its connections (`<conn>:<frame>`, `EOF`).
type Log = Arc<Mutex<Vec<String>>>;

/// A fake partner accepting the secret `right`; after each response it pushes a `PUSH`.
async fn partner(log: Log) -> SocketAddr {
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    raw_server(move |s| {
        let log = Arc::clone(&log);
        let n = conns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        serve_one(s, n, log)
    })
    .await
}

async fn serve_one(mut s: TcpStream, n: usize, log: Log) {
    let mut codec = FrameCodec::new(spec("len:be:2"));
    let mut buf = BytesMut::new();
    let mut logged_in = false;
    loop {
        let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await else {
            log.lock().unwrap().push(format!("{n}:EOF"));
            return;
        };
        let text = String::from_utf8_lossy(&f).into_owned();
        log.lock().unwrap().push(format!("{n}:{text}"));
        let reply: Vec<&[u8]> = match text.as_str() {
            "LOGIN:right" => {
                logged_in = true;
                vec![b"OK"]
            }
            t if t.starts_with("LOGIN:") => vec![b"NO:3"],
            "LOGOUT" => vec![b"BYE"],
            "ACK" => vec![],
            t if t.starts_with("REQ:") && logged_in => vec![b"RSP", b"PUSH"],
            _ => vec![b"NOT LOGGED IN"],
        };
        let mut out = BytesMut::new();
        for r in reply {
            codec.encode_to(r, &mut out).unwrap();
        }
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn hook(secret: &'static str) -> Option<Arc<dyn SessionHook>> {
    Some(Arc::new(Fake { secret }))
}

fn log_of(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[tokio::test]
async fn a_long_client_logs_in_first_answers_pushes_and_logs_out_at_close() {
    let log = Log::default();
    let addr = partner(Arc::clone(&log)).await;
    let c = builder("len:be:2", &[addr])
        .session(hook("right"))
        .connect_duplex()
        .await
        .unwrap();
    let (tx, mut rx) = c.split();
    tx.send(b("REQ:1")).await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), b("RSP"));
    assert_eq!(rx.recv().await.unwrap(), b("PUSH"));
    common::eventually("the push answered", || {
        log_of(&log).contains(&"0:ACK".into())
    })
    .await;
    drop(rx);
    tx.close().await;
    common::eventually("EOF after the logout", || {
        log_of(&log).contains(&"0:EOF".into())
    })
    .await;
    assert_eq!(
        log_of(&log),
        ["0:LOGIN:right", "0:REQ:1", "0:ACK", "0:LOGOUT", "0:EOF"]
    );
}

#[tokio::test]
async fn a_refused_login_is_a_login_error_naming_the_status() {
    let log = Log::default();
    let addr = partner(Arc::clone(&log)).await;
    let e = builder("len:be:2", &[addr])
        .session(hook("wrong"))
        .connect_long()
        .await
        .unwrap_err();
    assert!(e.is_login(), "{e}");
    assert!(e.is_not_sent(), "{e}");
    assert!(e.to_string().contains("login refused: status 3"), "{e}");
    // Nothing but the login was sent.
    common::eventually("closed", || log_of(&log).contains(&"0:EOF".into())).await;
    assert_eq!(log_of(&log), ["0:LOGIN:wrong", "0:EOF"]);
}

#[tokio::test]
async fn a_short_client_logs_in_requests_and_logs_out_per_request() {
    let log = Log::default();
    let addr = partner(Arc::clone(&log)).await;
    let c = builder("len:be:2", &[addr])
        .session(hook("right"))
        .build_short();
    assert_eq!(c.request(b("REQ:a")).await.unwrap(), b("RSP"));
    assert_eq!(c.request(b("REQ:b")).await.unwrap(), b("RSP"));
    common::eventually("both closed", || {
        let l = log_of(&log);
        l.contains(&"0:EOF".into()) && l.contains(&"1:EOF".into())
    })
    .await;
    let first: Vec<String> = log_of(&log)
        .into_iter()
        .filter(|l| l.starts_with("0:"))
        .collect();
    // The PUSH after the response is owed an ACK: the logout is written first, and the ACK
    // while it waits for its BYE.
    assert_eq!(
        first,
        ["0:LOGIN:right", "0:REQ:a", "0:LOGOUT", "0:ACK", "0:EOF"]
    );
}

#[tokio::test]
async fn a_partner_that_refuses_is_not_retried_in_a_loop() {
    // The first connect logs in; later logins are refused (a revoked account).
    let logins = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&logins);
    let addr = raw_server(move |mut s| {
        let n = seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let mut codec = FrameCodec::new(spec("len:be:2"));
            let mut buf = BytesMut::new();
            let _ = read_frame(&mut s, &mut codec, &mut buf).await;
            let mut out = BytesMut::new();
            let answer: &[u8] = if n == 0 { b"OK" } else { b"NO:9" };
            codec.encode_to(answer, &mut out).unwrap();
            let _ = s.write_all(&out).await;
            // The first connection is dropped right away: the client reconnects.
        }
    })
    .await;
    let c = builder("len:be:2", &[addr])
        .session(hook("right"))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .connect_long()
        .await
        .unwrap();
    // For a bounded window the client keeps trying, backing off: a handful of logins,
    // not thousands.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let n = logins.load(std::sync::atomic::Ordering::Relaxed);
    assert!((2..=15).contains(&n), "{n} logins in 1.2 s");
    let e = c.request(b("REQ:x")).await.unwrap_err();
    assert!(e.is_not_sent(), "{e}");
    c.close().await;
}
