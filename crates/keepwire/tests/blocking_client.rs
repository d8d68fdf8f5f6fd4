//! The blocking `std::net` clients over real loopback sockets: timeouts that keep partial
//! frames, heartbeats, failover and the sent / not-sent verdict.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use keepwire::blocking::{ClientOptions, LongClient, ShortClient};
use keepwire::liveness::PingConfig;

const SOON: Duration = Duration::from_secs(10);

fn spec(s: &str) -> keepwire::frame::FramingSpec {
    s.parse().unwrap()
}

/// A one-connection server running `f` on a thread.
fn serve_once(f: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            f(s);
        }
    });
    addr
}

fn refused() -> String {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    s.set_read_timeout(Some(SOON)).unwrap();
    s.read_exact(&mut v).unwrap();
    v
}

#[test]
fn recv_timeout_keeps_a_partial_frame() {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let addr = serve_once(move |mut s| {
        s.write_all(b"00").unwrap();
        go_rx.recv_timeout(SOON).unwrap();
        s.write_all(b"05hello0002hi").unwrap();
        let _ = read_n(&mut s, 1);
    });
    let mut c =
        LongClient::connect(ClientOptions::new(spec("len:ascii:4"), [addr.to_string()])).unwrap();
    // Half a header arrives, then silence: nothing returned, nothing lost.
    let t = Instant::now();
    while c.buffered() < 2 {
        assert_eq!(c.recv_timeout(Duration::from_millis(50)).unwrap(), None);
        assert!(t.elapsed() < SOON);
    }
    assert_eq!(c.try_recv().unwrap(), None);
    assert_eq!(c.buffered(), 2);
    go_tx.send(()).unwrap();
    assert_eq!(&c.recv_timeout(SOON).unwrap().unwrap()[..], b"hello");
    assert_eq!(&c.recv_timeout(SOON).unwrap().unwrap()[..], b"hi");
}

#[test]
fn long_request_answers_pings_and_fails_over() {
    let addr = serve_once(|mut s| {
        // A ping (empty frame) before the reply: the client answers it and waits on.
        let req = read_n(&mut s, 7);
        assert_eq!(req, b"0003abc");
        s.write_all(b"0000").unwrap();
        assert_eq!(read_n(&mut s, 4), b"0000", "pong");
        s.write_all(b"0003ABC").unwrap();
        let _ = read_n(&mut s, 1);
    });
    let dead = refused();
    let mut c = LongClient::connect(ClientOptions::new(
        spec("len:ascii:4"),
        [dead, addr.to_string()],
    ))
    .unwrap();
    assert_eq!(c.endpoint(), addr.to_string());
    assert_eq!(&c.request(b"abc").unwrap()[..], b"ABC");
}

#[test]
fn long_tick_pings_and_declares_a_silent_peer_dead() {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let addr = serve_once(move |_s| {
        let _ = done_rx.recv_timeout(SOON);
    });
    // The interval is the shortest the client configuration accepts (100 ms).
    let opts = ClientOptions::new(spec("len:be:2"), [addr.to_string()]).ping(Some(PingConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        misses: 2,
    }));
    let mut c = LongClient::connect(opts).unwrap();
    let t = Instant::now();
    let err = loop {
        if let Err(e) = c.tick() {
            break e;
        }
        let wait = c
            .next_tick()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(10));
        // recv_timeout is the caller's wait: it also answers and absorbs heartbeats.
        assert_eq!(c.recv_timeout(wait).unwrap(), None);
        assert!(t.elapsed() < SOON);
    };
    assert!(err.is_dead_peer(), "{err}");
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    done_tx.send(()).unwrap();
}

#[test]
fn short_client_verdicts_and_failover() {
    // All refused: not sent, each endpoint named.
    let (a, b) = (refused(), refused());
    let c = ShortClient::new(ClientOptions::new(spec("line"), [a.clone(), b.clone()]));
    let e = c.request(b"x").unwrap_err();
    assert!(
        e.is_connect()
            && e.is_not_sent()
            && e.to_string().contains(&a)
            && e.to_string().contains(&b),
        "{e}"
    );

    // Read but never answered: may have been sent, after the read timeout.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let silent = serve_once(move |_s| {
        let _ = done_rx.recv_timeout(SOON);
    });
    let c = ShortClient::new(
        ClientOptions::new(spec("line"), [silent.to_string()])
            .request_timeout(Duration::from_millis(100)),
    );
    let e = c.request(b"hello").unwrap_err();
    assert!(e.is_timeout() && e.may_have_been_sent(), "{e}");
    done_tx.send(()).unwrap();

    // Unencodable: not sent.
    let echo = serve_once(|_s| {});
    let c = ShortClient::new(ClientOptions::new(spec("line"), [echo.to_string()]));
    let e = c.request(b"two\nlines").unwrap_err();
    assert!(e.is_unencodable() && e.is_not_sent(), "{e}");

    // Past a refused endpoint to an echo; the client closes first.
    let echo = serve_once(|mut s| {
        let got = read_n(&mut s, 6);
        s.write_all(&got).unwrap();
        let mut rest = Vec::new();
        s.set_read_timeout(Some(SOON)).unwrap();
        let _ = s.read_to_end(&mut rest); // our FIN
    });
    let c = ShortClient::new(ClientOptions::new(
        spec("line"),
        [refused(), echo.to_string()],
    ));
    assert_eq!(&c.request(b"hello").unwrap()[..], b"hello");
}

/// Issue 9: a request whose write timed out half way leaves half a frame on the wire. The
/// next request must not follow it on the same connection (the peer would read it as the
/// rest of the first): the client reconnects, and the first request's error says it may have
/// been sent.
#[test]
fn long_client_reconnects_after_a_half_written_request() {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // A small receive window, and a first connection that is never read: the client's
    // write blocks once its own send buffer is full too.
    l.set_recv_buffer_size(4096).unwrap();
    l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    l.listen(8).unwrap();
    let l: TcpListener = l.into();
    let addr = l.local_addr().unwrap();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (got_tx, got_rx) = mpsc::channel::<Vec<u8>>();
    let server = thread::spawn(move || {
        let (stalled, _) = l.accept().unwrap();
        let (mut s, _) = l.accept().unwrap();
        let req = read_n(&mut s, 7);
        s.write_all(b"\x00\x00\x00\x02ok").unwrap();
        got_tx.send(req).unwrap();
        let _ = done_rx.recv_timeout(SOON);
        // Nothing after the half frame reached the stalled connection: what it holds is a
        // prefix of the big request.
        stalled.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        let _ = (&stalled).read_to_end(&mut held);
        assert_eq!(
            held.get(..4),
            Some(&[2, 0, 0, 0][..]),
            "the big request's header"
        );
        assert!(
            held.iter().skip(4).all(|&b| b == b'x'),
            "a second request followed the half frame"
        );
    });
    // Far more than the kernel buffers hold (tcp_wmem tops out at 4 MiB by default).
    let big = vec![b'x'; 32 * 1024 * 1024];
    let opts = ClientOptions::new(spec("len:be:4:max=67108864"), [addr.to_string()])
        .write_timeout(Duration::from_millis(200))
        .request_timeout(SOON);
    let mut c = LongClient::connect(opts).unwrap();
    let e = c.request(&big).unwrap_err();
    assert!(e.may_have_been_sent() && e.is_timeout(), "{e}");
    assert!(c.is_broken());
    assert_eq!(&c.request(b"abc").unwrap()[..], b"ok");
    assert_eq!(
        got_rx.recv_timeout(SOON).unwrap(),
        b"\x00\x00\x00\x03abc",
        "the second request went whole, on a new connection"
    );
    done_tx.send(()).unwrap();
    server.join().unwrap();
}

/// Reads `len:ascii:4` frames until the client closes (or [`SOON`] passes), answering each
/// with `reply`; the frames read.
fn frames_until_close(s: TcpStream, reply: Option<&'static [u8]>) -> Vec<Vec<u8>> {
    s.set_read_timeout(Some(SOON)).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = keepwire::blocking::FrameReader::new(s, spec("len:ascii:4"));
    let mut got = Vec::new();
    while let Ok(Some(f)) = r.read_frame() {
        got.push(f.to_vec());
        if reply.is_some_and(|reply| w.write_all(reply).is_err()) {
            break;
        }
    }
    got
}

/// Issue 9, R1: on a link whose heartbeat is the empty frame, an empty request would be read
/// by the peer as a ping. It is refused before a byte is written; with heartbeats off it is
/// plain data.
#[test]
fn long_client_refuses_a_heartbeat_frame_as_request() {
    let (tx, rx) = mpsc::channel();
    let addr = serve_once(move |s| tx.send(frames_until_close(s, None)).unwrap());
    let mut c = LongClient::connect(
        ClientOptions::new(spec("len:ascii:4"), [addr.to_string()])
            .request_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let e = c.request(b"").unwrap_err();
    assert!(e.is_heartbeat_frame() && e.is_not_sent(), "{e}");
    let e = c.send(b"").unwrap_err();
    assert!(e.is_heartbeat_frame() && e.is_not_sent(), "{e}");
    drop(c);
    assert_eq!(
        rx.recv_timeout(SOON).unwrap(),
        Vec::<Vec<u8>>::new(),
        "nothing written"
    );

    let (tx, rx) = mpsc::channel();
    let addr = serve_once(move |s| tx.send(frames_until_close(s, Some(b"0002ok"))).unwrap());
    let mut c = LongClient::connect(
        ClientOptions::new(spec("len:ascii:4"), [addr.to_string()]).heartbeat_frames(None),
    )
    .unwrap();
    assert_eq!(&c.request(b"").unwrap()[..], b"ok");
    drop(c);
    assert_eq!(rx.recv_timeout(SOON).unwrap(), vec![Vec::<u8>::new()]);
}

/// Issue 9, R3: a peer that answers every frame with the empty frame (its heartbeat on this
/// link) used to get each of them answered back: thousands of frames a second until the
/// request timed out. Now at most one is answered per second while the reply is awaited,
/// and the timeout says what arrived instead.
#[test]
fn long_client_does_not_storm_a_peer_that_replies_with_heartbeats() {
    let (tx, rx) = mpsc::channel();
    let addr = serve_once(move |s| tx.send(frames_until_close(s, Some(b"0000"))).unwrap());
    let mut c = LongClient::connect(
        ClientOptions::new(spec("len:ascii:4"), [addr.to_string()])
            .request_timeout(Duration::from_secs(1)),
    )
    .unwrap();
    let e = c.request(b"abc").unwrap_err();
    assert!(e.is_timeout() && e.may_have_been_sent(), "{e}");
    drop(c);
    let got = rx.recv_timeout(SOON).unwrap();
    assert_eq!(got.first().map(|f| &f[..]), Some(&b"abc"[..]));
    // The request, then at most a pong or two (one per second, plus timing slack).
    assert!(got.len() <= 3, "{} frames reached the peer", got.len());
    let msg = e.to_string();
    assert!(
        msg.contains("heartbeat frames arrived instead")
            && msg.contains("the empty frame is the heartbeat"),
        "{msg}"
    );
}

/// Issue 9: nothing pings a short link after the request, so the first frame back is the
/// reply even when it is empty. An empty request is the heartbeat frame (a server answers
/// it as a probe, not as a request): refused unless heartbeats are off.
#[test]
fn short_client_takes_an_empty_reply_as_the_reply() {
    let (tx, rx) = mpsc::channel();
    let addr = serve_once(move |s| tx.send(frames_until_close(s, Some(b"0000"))).unwrap());
    let c = ShortClient::new(ClientOptions::new(spec("len:ascii:4"), [addr.to_string()]));
    assert_eq!(&c.request(b"abc").unwrap()[..], b"");
    assert_eq!(rx.recv_timeout(SOON).unwrap(), vec![b"abc".to_vec()]);

    let e = c.request(b"").unwrap_err();
    assert!(e.is_heartbeat_frame() && e.is_not_sent(), "{e}");

    let (tx, rx) = mpsc::channel();
    let addr = serve_once(move |s| tx.send(frames_until_close(s, Some(b"0002ok"))).unwrap());
    let c = ShortClient::new(
        ClientOptions::new(spec("len:ascii:4"), [addr.to_string()]).heartbeat_frames(None),
    );
    assert_eq!(&c.request(b"").unwrap()[..], b"ok");
    assert_eq!(rx.recv_timeout(SOON).unwrap(), vec![Vec::<u8>::new()]);
}

/// Issue 9: `Duration::MAX` as every timeout (a config file's "forever") must work, not
/// overflow `Instant + Duration` or be refused by the OS.
#[test]
fn huge_timeouts_work() {
    let forever = |o: ClientOptions| {
        o.connect_timeout(Duration::MAX)
            .request_timeout(Duration::MAX)
            .write_timeout(Duration::MAX)
    };
    let addr = serve_once(|mut s| {
        assert_eq!(read_n(&mut s, 7), b"0003abc");
        s.write_all(b"0003ABC0004push").unwrap();
        let _ = s.read(&mut [0; 1]); // until the client closes
    });
    let mut c = LongClient::connect(forever(ClientOptions::new(
        spec("len:ascii:4"),
        [addr.to_string()],
    )))
    .unwrap();
    assert_eq!(&c.request(b"abc").unwrap()[..], b"ABC");
    assert_eq!(
        c.recv_timeout(Duration::MAX).unwrap().as_deref(),
        Some(&b"push"[..])
    );
    drop(c);

    let addr = serve_once(|mut s| {
        assert_eq!(read_n(&mut s, 7), b"0003abc");
        s.write_all(b"0002ok").unwrap();
        let _ = s.read(&mut [0; 1]);
    });
    let c = ShortClient::new(forever(ClientOptions::new(
        spec("len:ascii:4"),
        [addr.to_string()],
    )));
    assert_eq!(&c.request(b"abc").unwrap()[..], b"ok");
}

/// The blocking clients share the async clients' endpoint health: a refused endpoint is
/// marked down, and the next connect tries the others first.
#[test]
fn blocking_clients_mark_failed_endpoints_down() {
    let dead = refused();
    let (tx, rx) = mpsc::channel::<()>();
    let live = serve_once(move |_s| {
        let _ = rx.recv_timeout(SOON);
    });
    let opts = ClientOptions::new(spec("line"), [dead.clone(), live.to_string()]);
    let c = LongClient::connect(opts.clone()).unwrap();
    assert_eq!(c.endpoint(), live.to_string());
    let status = c.endpoints();
    assert!(
        !status[0].up && status[0].last_error.is_some(),
        "{status:?}"
    );
    assert!(status[1].up, "{status:?}");
    tx.send(()).unwrap();

    let echo = serve_once(|mut s| {
        assert_eq!(read_n(&mut s, 2), b"x\n");
        s.write_all(b"y\n").unwrap();
        let _ = read_n(&mut s, 0);
    });
    let short = ShortClient::new(ClientOptions::new(spec("line"), [dead, echo.to_string()]));
    assert_eq!(&short.request(b"x").unwrap()[..], b"y");
    let status = short.endpoints();
    assert!(!status[0].up && status[1].up, "{status:?}");
}

/// The kernel timer armed on the established connection from `local` to `remote`
/// (`/proc/net/tcp`, column `tr`: 0 none, 1 retransmit, 2 keepalive, ...). Both addresses and
/// the state: a TIME_WAIT socket of an earlier test on the same local port has a timer too.
fn kernel_timer(local: SocketAddr, remote: SocketAddr) -> Option<u8> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        )),
        SocketAddr::V6(_) => None,
    };
    let (local, remote) = (hex(local)?, hex(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // State 01 is ESTABLISHED.
        let ours = f.get(1) == Some(&local.as_str())
            && f.get(2) == Some(&remote.as_str())
            && f.get(3) == Some(&"01");
        ours.then(|| f.get(5)?.split(':').next()?.parse().ok())
            .flatten()
    })
}

/// Socket options of the builder reach the blocking client's socket: with TCP keepalive
/// on, the kernel arms the keepalive timer on it; without, no timer runs on an idle
/// connection.
#[test]
fn blocking_clients_apply_socket_options() {
    use keepwire::socket::SocketOptions;
    for keepalive in [false, true] {
        let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let live = serve_once(move |s| {
            addr_tx.send(s.peer_addr().unwrap()).unwrap();
            let _ = done_rx.recv_timeout(SOON);
        });
        let mut so = SocketOptions::default();
        if keepalive {
            so.keepalive = Some("60s,5s,3".parse().unwrap());
        }
        let opts = ClientOptions::new(spec("line"), [live.to_string()]).socket_options(so);
        let _c = LongClient::connect(opts).unwrap();
        let client_addr = addr_rx.recv_timeout(SOON).unwrap();
        let want = if keepalive { 2 } else { 0 };
        assert_eq!(
            kernel_timer(client_addr, live),
            Some(want),
            "keepalive {keepalive}"
        );
        done_tx.send(()).unwrap();
    }
}
