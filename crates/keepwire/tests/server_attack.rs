//! Hostile review of the server's recent fixes: each test here failed on the code it was
//! written against. Real loopback sockets, generous bounds.

mod common;
#[path = "common/queues.rs"]
mod queues;

use std::time::Duration;

use common::*;
use keepwire::server::ServerConfig;
use queues::server_has_read;

/// PROXY v1 header split by the network right after the source port's space
/// (`... 40312 ` | `7000\r\n`). A balancer's header may arrive in any number of segments;
/// `proxy_protocol::parse` took ppp's "invalid destination port" for the empty field at the
/// end of the partial header as final, and rejected the connection (logged `bad PROXY v1
/// header: Header contains invalid TCP port for the destination`) instead of waiting for
/// the CRLF. Same for TCP6.
#[tokio::test]
async fn proxy_v1_header_split_before_the_destination_port_is_accepted() {
    for (header, cut, peer) in [
        (
            &b"PROXY TCP4 198.51.100.7 203.0.113.9 40312 7000\r\n"[..],
            42,
            "198.51.100.7",
        ),
        (
            &b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 2000\r\n"[..],
            40,
            "2001:db8::1",
        ),
    ] {
        let mut cfg = ServerConfig::new(spec("len:ascii:4"));
        cfg.proxy_protocol = true;
        let mut srv = echo_server(cfg).await;
        let mut c = Client::connect(srv.addr, "len:ascii:4").await;
        let (first, rest) = header.split_at(cut);
        assert!(first.ends_with(b" "), "{first:?}");
        c.send_raw(first).await.unwrap();
        // The server reads the partial header on its own, and judges it before it reads
        // again: the rest, sent once the first part is read, is not in that read. On a
        // correct server this wait changes nothing.
        let me = c.stream.local_addr().unwrap();
        eventually("the partial header read by the server", || {
            server_has_read(me, srv.addr)
        })
        .await;
        let mut rest = rest.to_vec();
        rest.extend_from_slice(b"0005hello");
        // The write may fail if the server already reset the connection: that is the bug.
        let _ = c.send_raw(&rest).await;
        assert_eq!(
            c.recv().await.as_deref(),
            Some(&b"hello"[..]),
            "PROXY header {:?} split after byte {cut}: connection closed without a reply",
            String::from_utf8_lossy(header)
        );
        let req = srv.seen.recv().await.unwrap();
        assert_eq!(req.peer.ip().to_string(), peer);
        srv.stop.cancel();
    }
}

/// Sends `input` in one write, expects `reply` and then the close, and checks the frame
/// counters once the close is counted.
async fn counts_after_an_error(framing: &str, input: &[u8], reply: &[u8], frames: (u64, u64)) {
    let srv = echo_server(ServerConfig::new(spec(framing))).await;
    let mut c = Client::connect(srv.addr, framing).await;
    c.send_raw(input).await.unwrap();
    assert_eq!(c.recv().await.as_deref(), Some(reply));
    c.closed_within(SOON).await;
    let stats = srv.stats.clone();
    eventually("the connection is counted closed", || {
        stats.snapshot().closed == 1
    })
    .await;
    let s = stats.snapshot();
    assert_eq!((s.frames_in, s.frames_out), frames, "(in, out): {s:?}");
}

/// docs/limits.md, Metrics: `keepwire_frames_out_total` counts frames sent. When a batch
/// ends in an error (here a bad length header after a good request), the reply to the good
/// request is written before the close (fix 3), but `process` returned before adding the
/// batch's `frames_out`: the reply was on the wire and not counted.
#[tokio::test]
async fn replies_written_before_a_bad_frame_are_counted() {
    counts_after_an_error("len:ascii:4", b"0003abc00x1", b"abc", (1, 1)).await;
}

/// The same for a reply the framing cannot carry (docs/limits.md: under `line`,
/// `one\ntwo\r\r\n` gets the reply `one` before the close): two frames came in, one reply
/// went out, yet `fail` returned before either count was added, so both stayed 0.
#[tokio::test]
async fn frames_before_an_unencodable_reply_are_counted() {
    counts_after_an_error("line", b"one\ntwo\r\r\n", b"one", (2, 1)).await;
}

/// docs/limits.md, Graceful shutdown: "Idle connections drain the same way, so they close at
/// once." With the PROXY protocol on, a connection whose header has not come yet is idle too,
/// but `read_proxy_header` does not watch the shutdown token: the connection, and with it the
/// whole drain, waits for `handshake_timeout` (5 s by default; 30 s here to make it plain).
#[tokio::test]
async fn idle_connection_awaiting_its_proxy_header_closes_at_once_on_shutdown() {
    let mut cfg = ServerConfig::new(spec("len:ascii:4"));
    cfg.proxy_protocol = true;
    cfg.handshake_timeout = Duration::from_secs(30);
    cfg.shutdown_grace = Duration::from_secs(60);
    let srv = echo_server(cfg).await;
    let mut c = Client::connect(srv.addr, "len:ascii:4").await;
    let stats = srv.stats.clone();
    eventually("the connection is accepted", || {
        stats.snapshot().accepted == 1
    })
    .await;
    srv.stop.cancel();
    // Generous: "at once" is milliseconds; the bug makes it `handshake_timeout` (30 s).
    let mut scratch = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        loop {
            match c.stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an idle connection (no PROXY header yet) was still open 10 s after the shutdown signal"
    );
    let report = tokio::time::timeout(Duration::from_secs(10), srv.task)
        .await
        .expect("drain did not finish within 10 s")
        .unwrap();
    assert_eq!(report.force_closed, 0);
}

/// docs/liveness.md, "No keep-alive storms", cites jPOS #775: a peer that answers every
/// zero-length keep-alive it receives. Against such a peer the keepwire *server* storms: with
/// no ping of its own outstanding it takes each of the peer's answers for a new ping (rule 1)
/// and answers it, and the peer answers that, at socket speed, nothing logged (measured:
/// ~10 000 exchanges a second, the server at 50-65 % of a core, for as long as the connection
/// lives). The storm guard of rule 5 (at most one pong a second to ambiguous heartbeats)
/// exists only in the clients. A real peer pings seconds apart; 2 s of a jPOS-style peer must
/// not get more than a handful of pongs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_does_not_storm_with_a_peer_that_answers_every_heartbeat() {
    let srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    let addr = srv.addr;
    let client = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // One keep-alive, then answer every keep-alive that comes back (jPOS CMFChannel).
        s.write_all(b"0000").unwrap();
        let start = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        let mut pending = 0usize;
        while start.elapsed() < Duration::from_secs(2) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    pending += n;
                    let whole = pending / 4;
                    pending %= 4;
                    if s.write_all(&b"0000".repeat(whole)).is_err() {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
    });
    tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    let answered = srv.stats.snapshot().pings_answered;
    assert!(
        answered <= 20,
        "the server answered {answered} heartbeats in 2 s from a peer that answers every heartbeat"
    );
}

/// docs/limits.md, Connection caps: "Every accepted connection is either rejected for
/// `max_conns`, still open, or counted in `keepwire_connections_closed_total`", and
/// "Whatever ends a connection (..., a failed handler call, ...), the replies computed before
/// it are written first". A handler that panics (an `unwrap` on a message it did not expect)
/// unwinds the connection task: `run` never counts the close, so `accepted != closed + open`
/// forever after, and the reply to the request before it in the same read, already computed,
/// is dropped with the socket.
#[tokio::test]
async fn a_panicking_handler_still_counts_the_close_and_sends_earlier_replies() {
    use keepwire::server::{Request, Server, service_fn};
    let server = Server::bind("127.0.0.1:0", ServerConfig::new(spec("len:ascii:4")))
        .await
        .unwrap();
    let addr = server.local_addr();
    let stats = server.stats();
    let stop = server.shutdown_token();
    let task = tokio::spawn(server.serve(service_fn(|req: Request| async move {
        assert_ne!(&req.frame[..], b"boom", "handler bug");
        Ok::<_, std::convert::Infallible>(Some(req.frame))
    })));
    let mut c = Client::connect(addr, "len:ascii:4").await;
    c.send_raw(b"0003abc0004boom").await.unwrap();
    let first = c.recv().await;
    c.closed_within(SOON).await;
    // Give the server every chance to count the close: a bounded poll of the counter (the
    // assertion below reports what it saw).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while stats.snapshot().closed == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = stats.snapshot();
    stop.cancel();
    let _ = tokio::time::timeout(SOON, task).await;
    assert_eq!(
        (s.accepted, s.closed),
        (1, 1),
        "accepted = rejected + closed + open broken by a handler panic: {s:?}"
    );
    assert_eq!(
        first.as_deref(),
        Some(&b"abc"[..]),
        "the reply computed before the panic was lost"
    );
}

/// docs/limits.md, Graceful shutdown: "Every complete frame that reached the server's socket
/// before the connection closes is read and answered". A client whose connection the kernel
/// completed (it sits in the listen backlog, `connect` returned) and whose request the kernel
/// acknowledged gets no answer when the signal comes before `accept` took it: the accept
/// loop sees the token first (biased select), drops the listener, and the kernel resets
/// every backlog connection. Accepting what is pending before closing the listener (and
/// draining it like the rest) would answer them. Deterministic: the server runs on this
/// test's single thread, which does not poll it until the token is cancelled.
#[tokio::test(flavor = "current_thread")]
async fn requests_on_connections_still_in_the_backlog_at_shutdown_are_answered() {
    use std::io::{Read, Write};
    let srv = echo_server(ServerConfig::new(spec("len:ascii:4"))).await;
    // Blocking connects and writes: the kernel completes them without the server's help.
    let mut socks: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
            s.write_all(b"0005hello").unwrap();
            s
        })
        .collect();
    srv.stop.cancel();
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    let mut answered = 0;
    let mut outcomes = Vec::new();
    for s in &mut socks {
        s.set_read_timeout(Some(SOON)).unwrap();
        let mut got = Vec::new();
        let r = s.read_to_end(&mut got);
        if got == b"0005hello" {
            answered += 1;
        }
        outcomes.push(format!(
            "{:?} {:?}",
            String::from_utf8_lossy(&got),
            r.err().map(|e| e.kind())
        ));
    }
    assert_eq!(
        answered, 3,
        "requests acknowledged by the server's kernel before the signal: {outcomes:?}; {report:?}"
    );
}
