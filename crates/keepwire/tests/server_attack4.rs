//! Hostile review of the server's per-request optimisations (issue 17): the per-thread
//! buffer pool (`server/pool.rs`) and the wait that skips asking the liveness state machine
//! for its next deadline (`Connection::serve_frames`). Real loopback sockets.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use keepwire::liveness::PingConfig;
use keepwire::server::{Answer, Request, Server, ServerConfig, service_fn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

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

/// The read buffer goes back to the thread's pool when the connection goes idle, while the
/// frames split from it may still be held by a handler (a current-thread runtime: server and
/// clients share one pool). Frames kept by the handler past their connection's batch (their bytes live in the read
/// buffer the pool hands to the next connection), answered later as one multi-frame
/// [`Answer`] while other connections have read into the recycled buffers in between: the
/// kept frames are intact, and so is every echo.
#[tokio::test]
async fn frames_kept_by_a_handler_survive_their_buffer_going_back_to_the_pool() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::new(spec("len:be:4")))
        .await
        .unwrap();
    let addr = server.local_addr();
    let kept = Arc::new(Mutex::new(Vec::<Bytes>::new()));
    let k = Arc::clone(&kept);
    tokio::spawn(server.serve(service_fn(move |r: Request| {
        let k = Arc::clone(&k);
        async move {
            let a = if r.frame.starts_with(b"keep") {
                k.lock().unwrap().push(r.frame);
                Answer::one(Bytes::from_static(b"ok"))
            } else if &r.frame[..] == b"give" {
                let frames = k.lock().unwrap().clone();
                // Each kept frame and a slice of it: two references into the old buffer.
                Answer::many(frames.iter().flat_map(|f| [f.clone(), f.slice(4..)]))
            } else {
                Answer::one(r.frame)
            };
            Ok::<_, std::convert::Infallible>(a)
        }
    })));

    let keep: Vec<Vec<u8>> = (0..8u8)
        .map(|i| {
            [
                b"keep".as_slice(),
                &vec![b'a' + i; 100 + usize::from(i) * 50],
            ]
            .concat()
        })
        .collect();
    let mut owner = TcpStream::connect(addr).await.unwrap();
    owner
        .write_all(&keep.iter().flat_map(|f| frame(f)).collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(read_frames(&mut owner, 8).await.iter().all(|r| r == b"ok"));

    // Other connections on the same thread take the pooled buffers and read into them.
    for round in 0..20u8 {
        let mut cs = Vec::new();
        for c in 0..8u8 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let bodies: Vec<Vec<u8>> = (0..5u8)
                .map(|j| vec![round ^ c ^ j ^ 0x5a; 1 + usize::from(j) * 700])
                .collect();
            s.write_all(&bodies.iter().flat_map(|b| frame(b)).collect::<Vec<_>>())
                .await
                .unwrap();
            cs.push((s, bodies));
        }
        for (mut s, bodies) in cs {
            assert_eq!(
                read_frames(&mut s, bodies.len()).await,
                bodies,
                "round {round}"
            );
        }
    }

    owner.write_all(&frame(b"give")).await.unwrap();
    let got = read_frames(&mut owner, keep.len() * 2).await;
    let want: Vec<Vec<u8>> = keep
        .iter()
        .flat_map(|f| [f.clone(), f[4..].to_vec()])
        .collect();
    assert_eq!(got, want, "the kept frames changed under the handler");
}

/// A ping interval shorter than its timeout, a client answering every ping at once: the next
/// ping comes one interval after the pong, not when the answered ping would have timed out.
/// (The wait that skips asking for the next deadline once kept the timer armed at the ping's
/// timeout after a pong had moved the next ping earlier: one ping a second here instead of
/// ten; debug builds panicked on the invariant check.)
#[tokio::test]
async fn pings_keep_their_interval_when_it_is_shorter_than_the_timeout() {
    let mut cfg = ServerConfig::new(spec("len:be:4"));
    cfg.liveness.ping = Some(PingConfig {
        interval: std::time::Duration::from_millis(100),
        timeout: std::time::Duration::from_secs(1),
        misses: 2,
    });
    let srv = echo_server(cfg).await;
    let mut c = TcpStream::connect(srv.addr).await.unwrap();
    let mut pings = 0;
    let start = tokio::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(1000) {
        let f = read_frames(&mut c, 1).await;
        assert!(f[0].is_empty(), "expected a ping, got {:?}", f[0]);
        pings += 1;
        c.write_all(&frame(b"")).await.unwrap();
    }
    assert!(pings >= 5, "{pings} pings in 1 s at a 100 ms interval");
}
