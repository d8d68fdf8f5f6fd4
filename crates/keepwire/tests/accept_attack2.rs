//! Hostile review of the accept path without tokio's assumed readiness (issue 17): the
//! listener is a mio `TcpListener` in an `AsyncFd`, and each socket it accepts is registered
//! with `TcpStream::from_std`, so a connection's first read and first write wait for the
//! first epoll event. Attacked here with real loopback sockets: requests (whole, split,
//! half-closed) already in the socket before the accept while the accept loop cannot run,
//! connections that close or reset before the accept, thousands of them in one burst, a
//! server ping as a connection's first write, a PROXY header split around the accept, a TLS
//! ClientHello sent before the accept, the caps refusing in the middle of such a burst, the
//! shutdown with requests in the backlog, and EMFILE (in a child process with a lowered
//! RLIMIT_NOFILE) in the accept loop and in the shutdown's backlog sweep.
//!
//! "Before the accept" is made certain, not likely: the server runs on a runtime of its own
//! (current-thread, or multi-thread with one worker), and a handler blocks that runtime's
//! only worker thread until the test releases it, so the accept loop cannot run while the
//! clients connect and write.

mod common;
mod tls_common;

use std::convert::Infallible;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::SOON;
use keepwire::liveness::PingConfig;
use keepwire::server::{Request, Server, ServerConfig, ServerStats, ShutdownReport, service_fn};
use tokio_util::sync::CancellationToken;

const FRAMING: &str = "len:be:2";

// ------------------------------------------------------------------ the blockable server

#[derive(Clone, Copy, Debug)]
enum Flavor {
    /// A current-thread runtime, as `keepwire serve` runs on one CPU.
    Current,
    /// A multi-thread runtime with one worker (so one blocked handler stops it).
    Multi,
    /// A multi-thread runtime with four workers: the I/O driver runs on whichever worker
    /// parks, concurrently with the accept loop (no blocking request on this one).
    Wide,
}

/// A server on a runtime of its own, in a thread of its own. Its handler answers `block` only
/// after [`Srv::release`], holding the runtime's only worker thread meanwhile; `peer` with
/// the connection's peer address; anything else with itself.
struct Srv {
    addr: SocketAddr,
    stop: CancellationToken,
    stats: Arc<ServerStats>,
    entered: Receiver<()>,
    release: Sender<()>,
    thread: Option<std::thread::JoinHandle<ShutdownReport>>,
}

fn runtime(flavor: Flavor) -> tokio::runtime::Runtime {
    match flavor {
        Flavor::Current => tokio::runtime::Builder::new_current_thread(),
        Flavor::Multi => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(1);
            b
        }
        Flavor::Wide => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(4);
            b
        }
    }
    .enable_all()
    .build()
    .unwrap()
}

fn serve(flavor: Flavor, cfg: ServerConfig) -> Srv {
    let (setup_tx, setup_rx) = std::sync::mpsc::channel();
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let thread = std::thread::spawn(move || {
        let rt = runtime(flavor);
        rt.block_on(async move {
            let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
            setup_tx
                .send((server.local_addr(), server.shutdown_token(), server.stats()))
                .unwrap();
            let handler = service_fn(move |req: Request| {
                let entered = entered_tx.clone();
                let release = Arc::clone(&release_rx);
                async move {
                    if &req.frame[..] == b"block" {
                        let _ = entered.send(());
                        // Blocks the runtime's only worker on purpose: nothing else of the
                        // server runs, the accept loop included, until the test says so.
                        let _ = release.lock().unwrap().recv_timeout(SOON);
                    }
                    if &req.frame[..] == b"peer" {
                        return Ok::<_, Infallible>(Some(Bytes::from(req.peer.to_string())));
                    }
                    Ok(Some(req.frame))
                }
            });
            // Spawned: on the multi-thread runtime it then runs on the worker, not here.
            tokio::spawn(server.serve(handler)).await.unwrap().unwrap()
        })
    });
    let (addr, stop, stats) = setup_rx.recv_timeout(SOON).expect("server did not start");
    Srv {
        addr,
        stop,
        stats,
        entered,
        release,
        thread: Some(thread),
    }
}

impl Srv {
    /// Connects a client that sends `block` (after `prefix`, e.g. a PROXY header) and
    /// returns once the handler holds the server's worker thread.
    fn block(&self, prefix: &[u8]) -> TcpStream {
        let mut s = connect(self.addr);
        let mut out = prefix.to_vec();
        out.extend_from_slice(&frame(b"block"));
        s.write_all(&out).unwrap();
        self.wait_blocked();
        s
    }

    fn wait_blocked(&self) {
        match self.entered.recv_timeout(SOON) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => {
                panic!("the blocking request never reached the handler")
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the server thread ended"),
        }
    }

    fn unblock(&self) {
        self.release.send(()).unwrap();
    }

    /// Cancels the shutdown token and waits (bounded) for `serve` to return.
    fn shutdown(&mut self) -> ShutdownReport {
        self.stop.cancel();
        self.join()
    }

    fn join(&mut self) -> ShutdownReport {
        let thread = self.thread.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(thread.join());
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("serve did not return within 20 s of the shutdown")
            .expect("the server thread panicked")
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        // A failed test must not leave a blocked worker or a serving thread behind.
        let _ = self.release.send(());
        self.stop.cancel();
    }
}

// ------------------------------------------------------------------ blocking clients

fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap();
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A blocking client socket to `addr`, reads bounded by `SOON`, Nagle off (every write its
/// own segment).
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, SOON).unwrap();
    prepare(&s);
    s
}

fn prepare(s: &TcpStream) {
    s.set_read_timeout(Some(SOON)).unwrap();
    s.set_write_timeout(Some(SOON)).unwrap();
    s.set_nodelay(true).unwrap();
}

/// A client socket to `addr` from the source address `ip` (any 127/8 address).
fn connect_from(ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let src = SocketAddr::from((ip, 0));
    sock.bind(&src.into()).unwrap();
    sock.connect_timeout(&addr.into(), SOON).unwrap();
    let s: TcpStream = sock.into();
    prepare(&s);
    s
}

/// The next frame; `Ok(None)` at a clean end of stream before one; errors (a reset, the read
/// timeout: `WouldBlock`/`TimedOut`) as they come.
fn read_frame<R: Read>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut hdr = [0u8; 2];
    let mut got = 0;
    while got < hdr.len() {
        let n = r.read(&mut hdr[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    let mut body = vec![0; usize::from(u16::from_be_bytes(hdr))];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

/// The reply to a request, or a panic naming `what` and what came instead.
fn expect_reply(s: &mut TcpStream, want: &[u8], what: &str) {
    match read_frame(s) {
        Ok(Some(f)) => assert_eq!(
            f,
            want,
            "{what}: wrong reply {:?}",
            String::from_utf8_lossy(&f)
        ),
        other => panic!("{what}: no reply ({other:?})"),
    }
}

/// End of stream (or a reset) next, within the read timeout.
fn expect_closed(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected the server to close, got {other:?}"),
    }
}

/// Polls `cond` until it holds; panics after `SOON`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SOON;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn config() -> ServerConfig {
    let mut cfg = ServerConfig::new(common::spec(FRAMING));
    cfg.shutdown_grace = Duration::from_secs(8);
    cfg
}

// ------------------------------------------------------------------ requests before the accept

/// Every shape a request can have in the socket before the accept: whole; whole and the
/// write side shut; its first byte only (the rest after the release); and connections with
/// nothing (closed, or reset) before the accept. All answered, none lost, every connection
/// accounted closed, and the server still serves afterwards.
fn waiting_before_the_accept(flavor: Flavor) {
    let mut srv = serve(flavor, config());
    let mut blocker = srv.block(b"");

    const N: usize = 60;
    let mut whole = Vec::new();
    let mut half_closed = Vec::new();
    let mut split = Vec::new();
    for i in 0..N {
        let mut s = connect(srv.addr);
        let req = frame(format!("req-{i}").as_bytes());
        match i % 3 {
            0 => {
                s.write_all(&req).unwrap();
                whole.push((i, s));
            }
            1 => {
                s.write_all(&req).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                half_closed.push((i, s));
            }
            _ => {
                s.write_all(&req[..1]).unwrap();
                split.push((i, s, req));
            }
        }
    }
    // Nothing sent, then closed; and reset (SO_LINGER 0), both before the accept.
    for _ in 0..5 {
        drop(connect(srv.addr));
    }
    for _ in 0..5 {
        let s = socket2::Socket::from(connect(srv.addr));
        s.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
    }
    srv.unblock();
    expect_reply(&mut blocker, b"block", "the blocking client");

    for (i, s, req) in &mut split {
        s.write_all(&req[1..]).unwrap();
        expect_reply(
            s,
            format!("req-{i}").as_bytes(),
            "a request split around the accept",
        );
    }
    for (i, s) in &mut whole {
        expect_reply(
            s,
            format!("req-{i}").as_bytes(),
            "a request sent before the accept",
        );
    }
    for (i, s) in &mut half_closed {
        expect_reply(
            s,
            format!("req-{i}").as_bytes(),
            "a request sent and half-closed before the accept",
        );
        expect_closed(s, "a half-closed client, answered");
    }

    // Served after the burst, too.
    let mut late = connect(srv.addr);
    late.write_all(&frame(b"late")).unwrap();
    expect_reply(&mut late, b"late", "a connection after the burst");

    let accepted = 1 + N as u64 + 10 + 1;
    let stats = Arc::clone(&srv.stats);
    eventually("every connection accepted", || {
        stats.snapshot().accepted == accepted
    });
    drop((blocker, whole, half_closed, split, late));
    eventually("every connection closed", || {
        stats.snapshot().closed == accepted
    });
    let report = srv.shutdown();
    assert_eq!(report.force_closed, 0, "{report:?}");
    let snap = srv.stats.snapshot();
    assert_eq!(snap.frames_in, N as u64 + 2, "{snap:?}");
    assert_eq!(snap.errors_accept, 0, "{snap:?}");
}

#[test]
fn requests_in_the_socket_before_the_accept_are_served_current_thread() {
    waiting_before_the_accept(Flavor::Current);
}

#[test]
fn requests_in_the_socket_before_the_accept_are_served_multi_thread() {
    waiting_before_the_accept(Flavor::Multi);
}

/// Thousands of connections complete into the backlog, each with its request written and its
/// write side shut, while the accept loop cannot run: one burst accepts them all, and every
/// one is answered.
fn thousands_in_the_backlog(flavor: Flavor) {
    const N: usize = 2000;
    let mut cfg = config();
    cfg.backlog = 4096;
    cfg.max_conns_per_ip = None;
    let mut srv = serve(flavor, cfg);
    let mut blocker = srv.block(b"");
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = connect(srv.addr);
        s.write_all(&frame(format!("{i}").as_bytes())).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        clients.push(s);
    }
    srv.unblock();
    expect_reply(&mut blocker, b"block", "the blocking client");
    for (i, s) in clients.iter_mut().enumerate() {
        expect_reply(s, format!("{i}").as_bytes(), "a request in the burst");
    }
    drop(clients);
    drop(blocker);
    let stats = Arc::clone(&srv.stats);
    eventually("every connection of the burst closed", || {
        let s = stats.snapshot();
        s.accepted == N as u64 + 1 && s.closed == s.accepted
    });
    let report = srv.shutdown();
    assert_eq!(report.force_closed, 0, "{report:?}");
}

#[test]
fn thousands_of_requests_waiting_in_the_backlog_are_all_served_current_thread() {
    thousands_in_the_backlog(Flavor::Current);
}

#[test]
fn thousands_of_requests_waiting_in_the_backlog_are_all_served_multi_thread() {
    thousands_in_the_backlog(Flavor::Multi);
}

/// Short connections whose request is written the moment the connect returns, from
/// several threads at once, against a runtime whose I/O driver runs concurrently with the
/// accept loop (four workers): the request's event can reach the driver before, during or
/// after the socket's registration. None may be lost (a lost event is a stall: the read
/// times out).
fn racing_the_registration(flavor: Flavor) {
    const THREADS: usize = 4;
    const EACH: usize = 300;
    let mut cfg = config();
    cfg.max_conns_per_ip = None;
    let mut srv = serve(flavor, cfg);
    let addr = srv.addr;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let mut s = connect(addr);
                    let req = format!("{t}-{i}");
                    s.write_all(&frame(req.as_bytes())).unwrap();
                    if i % 2 == 0 {
                        s.shutdown(Shutdown::Write).unwrap();
                    }
                    expect_reply(&mut s, req.as_bytes(), "a request racing the registration");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client thread failed");
    }
    let stats = Arc::clone(&srv.stats);
    eventually("every connection closed", || {
        let s = stats.snapshot();
        s.accepted == (THREADS * EACH) as u64 && s.closed == s.accepted
    });
    let report = srv.shutdown();
    assert_eq!(report.force_closed, 0, "{report:?}");
}

#[test]
fn requests_racing_the_registration_are_never_lost_current_thread() {
    racing_the_registration(Flavor::Current);
}

#[test]
fn requests_racing_the_registration_are_never_lost_multi_thread() {
    racing_the_registration(Flavor::Wide);
}

// ------------------------------------------------------------------ shutdown with a backlog

/// The shutdown token is cancelled while connections with requests (and some without) sit
/// in the backlog, never accepted by the loop: the backlog sweep (on the mio listener)
/// takes them, those with a request are answered, the others closed, and nothing is cut at
/// the grace.
fn shutdown_with_a_backlog(flavor: Flavor) {
    const N: usize = 50;
    let mut srv = serve(flavor, config());
    let mut blocker = srv.block(b"");
    let mut asking = Vec::new();
    for i in 0..N {
        let mut s = connect(srv.addr);
        s.write_all(&frame(format!("bk-{i}").as_bytes())).unwrap();
        asking.push(s);
    }
    let mut silent: Vec<TcpStream> = (0..5).map(|_| connect(srv.addr)).collect();
    srv.stop.cancel();
    srv.unblock();
    expect_reply(&mut blocker, b"block", "the blocking client");
    for (i, s) in asking.iter_mut().enumerate() {
        expect_reply(
            s,
            format!("bk-{i}").as_bytes(),
            "a request in the backlog at the shutdown",
        );
        expect_closed(s, "a drained backlog connection, answered");
    }
    for s in &mut silent {
        expect_closed(s, "a silent backlog connection at the shutdown");
    }
    expect_closed(&mut blocker, "the blocking client at the shutdown");
    drop((asking, silent, blocker));
    let report = srv.join();
    assert_eq!(report.force_closed, 0, "{report:?}");
    let snap = srv.stats.snapshot();
    assert_eq!(snap.accepted, N as u64 + 6, "{snap:?}");
    assert_eq!(snap.closed, snap.accepted, "{snap:?}");
    // The port refuses once the shutdown is done.
    assert!(TcpStream::connect_timeout(&srv.addr, SOON).is_err());
}

#[test]
fn shutdown_with_requests_in_the_backlog_answers_them_current_thread() {
    shutdown_with_a_backlog(Flavor::Current);
}

#[test]
fn shutdown_with_requests_in_the_backlog_answers_them_multi_thread() {
    shutdown_with_a_backlog(Flavor::Multi);
}

// ------------------------------------------------------------------ the first write

/// A server ping is the first thing written on a connection whose client sends nothing:
/// the write must go without waiting for a read event (there will be none), both on a
/// connection accepted at once and on one accepted late, from the backlog.
fn ping_first(flavor: Flavor) {
    let mut cfg = config();
    cfg.liveness.ping = Some(PingConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
        misses: 3,
    });
    let srv = serve(flavor, cfg);

    let t = Instant::now();
    let mut idle = connect(srv.addr);
    match read_frame(&mut idle) {
        Ok(Some(f)) => assert!(f.is_empty(), "expected a ping, got {f:?}"),
        other => panic!("no ping to an idle client: {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the first ping took {:?} at a 100 ms interval",
        t.elapsed()
    );

    // Accepted late: connected while the accept loop could not run.
    let mut blocker = srv.block(b"");
    let mut late = connect(srv.addr);
    srv.unblock();
    expect_reply(&mut blocker, b"block", "the blocking client");
    let t = Instant::now();
    match read_frame(&mut late) {
        Ok(Some(f)) => assert!(f.is_empty(), "expected a ping, got {f:?}"),
        other => panic!("no ping to an idle client accepted late: {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Answered with a pong, the link carries requests.
    late.write_all(&frame(b"")).unwrap();
    late.write_all(&frame(b"after-ping")).unwrap();
    loop {
        match read_frame(&mut late) {
            Ok(Some(f)) if f.is_empty() => continue, // another ping
            Ok(Some(f)) => {
                assert_eq!(f, b"after-ping");
                break;
            }
            other => panic!("no reply after the pong: {other:?}"),
        }
    }
    assert!(srv.stats.snapshot().pings_sent >= 2);
}

#[test]
fn a_ping_is_the_first_write_of_a_new_connection_current_thread() {
    ping_first(Flavor::Current);
}

#[test]
fn a_ping_is_the_first_write_of_a_new_connection_multi_thread() {
    ping_first(Flavor::Multi);
}

/// A client that connects and half-closes without a request, at once: the server sees the
/// end of stream (its first read event is the FIN) and closes, it does not wait for bytes.
fn fin_first(flavor: Flavor) {
    let srv = serve(flavor, config());
    let mut s = connect(srv.addr);
    s.shutdown(Shutdown::Write).unwrap();
    expect_closed(&mut s, "a client that half-closed at once");
    // And before the accept.
    let mut blocker = srv.block(b"");
    let mut early = connect(srv.addr);
    early.shutdown(Shutdown::Write).unwrap();
    srv.unblock();
    expect_reply(&mut blocker, b"block", "the blocking client");
    expect_closed(&mut early, "a client that half-closed before the accept");
}

#[test]
fn a_fin_as_the_first_event_closes_the_connection_current_thread() {
    fin_first(Flavor::Current);
}

#[test]
fn a_fin_as_the_first_event_closes_the_connection_multi_thread() {
    fin_first(Flavor::Multi);
}

// ------------------------------------------------------------------ PROXY and TLS

/// PROXY v1 and v2 headers, each split across segments with the first part in the socket
/// before the accept: the peer is the header's, and the request is answered.
fn proxy_split(flavor: Flavor) {
    let mut cfg = config();
    cfg.proxy_protocol = true;
    cfg.max_conns_per_ip = None;
    let srv = serve(flavor, cfg);
    let v1_block = b"PROXY TCP4 192.0.2.1 127.0.0.1 1000 2000\r\n";
    let mut blocker = srv.block(v1_block);

    let v1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 4000 5000\r\n".to_vec();
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0, 12]);
    v2.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1]);
    v2.extend_from_slice(&4001u16.to_be_bytes());
    v2.extend_from_slice(&5000u16.to_be_bytes());

    let mut clients = Vec::new();
    for (header, want, cut) in [
        (&v1, "192.0.2.7:4000", 3),
        (&v1, "192.0.2.7:4000", 20),
        (&v2, "198.51.100.9:4001", 5),
        (&v2, "198.51.100.9:4001", 14),
    ] {
        let mut s = connect(srv.addr);
        s.write_all(&header[..cut]).unwrap();
        clients.push((s, header, want, cut));
    }
    srv.unblock();
    expect_reply(&mut blocker, b"block", "the blocking client");
    for (s, header, want, cut) in &mut clients {
        s.write_all(&header[*cut..]).unwrap();
        s.write_all(&frame(b"peer")).unwrap();
        expect_reply(s, want.as_bytes(), "a PROXY header split around the accept");
    }
    assert_eq!(srv.stats.snapshot().rejected_proxy, 0);
}

#[test]
fn a_proxy_header_split_around_the_accept_is_read_current_thread() {
    proxy_split(Flavor::Current);
}

#[test]
fn a_proxy_header_split_around_the_accept_is_read_multi_thread() {
    proxy_split(Flavor::Multi);
}

/// A TLS server whose only worker is held by a TLS client's `block` request: the client's
/// TLS settings and the server's name, and that blocking client.
fn tls_server_blocked(
    flavor: Flavor,
) -> (
    Srv,
    (
        keepwire::tls::ClientTls,
        rustls::pki_types::ServerName<'static>,
    ),
    rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) {
    let pki = tls_common::Pki::new();
    let mut cfg = config();
    cfg.tls = Some(pki.server_tls(false));
    let srv = serve(flavor, cfg);
    let client_tls = pki.client_tls(false);
    let name = client_tls.server_name_for(&srv.addr.to_string()).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::clone(client_tls.config()), name.clone()).unwrap();
    let mut blocker = rustls::StreamOwned::new(conn, connect(srv.addr));
    blocker.write_all(&frame(b"block")).unwrap();
    blocker.flush().unwrap();
    srv.wait_blocked();
    (srv, (client_tls, name), blocker)
}

/// A TLS client whose ClientHello is in the socket before the accept: the handshake
/// completes (the server's first write is its ServerHello) and the request is answered.
fn tls_hello_first(flavor: Flavor) {
    let (srv, tls, mut blocker) = tls_server_blocked(flavor);
    let (client_tls, name) = (&tls.0, &tls.1);

    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut sock = connect(srv.addr);
        let mut conn =
            rustls::ClientConnection::new(Arc::clone(client_tls.config()), name.clone()).unwrap();
        // The ClientHello, written now, while the server cannot accept.
        while conn.wants_write() {
            conn.write_tls(&mut sock).unwrap();
        }
        clients.push(rustls::StreamOwned::new(conn, sock));
    }
    srv.unblock();
    match read_frame(&mut blocker) {
        Ok(Some(f)) => assert_eq!(f, b"block"),
        other => panic!("the blocking TLS client: {other:?}"),
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let req = format!("tls-{i}");
        c.write_all(&frame(req.as_bytes())).unwrap();
        c.flush().unwrap();
        match read_frame(c) {
            Ok(Some(f)) => assert_eq!(f, req.as_bytes()),
            other => panic!("a TLS client whose hello came before the accept: {other:?}"),
        }
    }
}

#[test]
fn a_tls_hello_sent_before_the_accept_is_answered_current_thread() {
    tls_hello_first(Flavor::Current);
}

#[test]
fn a_tls_hello_sent_before_the_accept_is_answered_multi_thread() {
    tls_hello_first(Flavor::Multi);
}

/// A malformed ClientHello in the socket before the accept: the server's first write is the
/// fatal alert that says why (a write tried without waiting: `try_write` in the handshake's
/// failure path), then it closes.
fn tls_bad_hello_first(flavor: Flavor) {
    let (srv, _tls, mut blocker) = tls_server_blocked(flavor);

    // A handshake record holding a ClientHello cut to nonsense.
    let bad = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0xff];
    let mut clients: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(srv.addr);
            s.write_all(&bad).unwrap();
            s
        })
        .collect();
    srv.unblock();
    match read_frame(&mut blocker) {
        Ok(Some(f)) => assert_eq!(f, b"block"),
        other => panic!("the blocking TLS client: {other:?}"),
    }
    for (i, s) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("client {i}: no alert and no close: {e} (got {got:?})"),
            }
        }
        assert_eq!(
            got.first(),
            Some(&0x15),
            "client {i}: the server closed without its alert: {got:?}"
        );
    }
}

#[test]
fn a_bad_tls_hello_before_the_accept_gets_its_alert_current_thread() {
    tls_bad_hello_first(Flavor::Current);
}

#[test]
fn a_bad_tls_hello_before_the_accept_gets_its_alert_multi_thread() {
    tls_bad_hello_first(Flavor::Multi);
}

// ------------------------------------------------------------------ caps in the burst

/// `max_conns` and the per-IP cap refuse in the middle of a burst whose requests are already
/// in the sockets: exactly the capacity is served, the rest reset, and the slots come back.
fn caps_in_a_waiting_burst(flavor: Flavor) {
    // max_conns: 4, the blocking client holding one.
    let mut cfg = config();
    cfg.max_conns = 4;
    cfg.max_conns_per_ip = None;
    let srv = serve(flavor, cfg);
    let mut blocker = srv.block(b"");
    let mut clients: Vec<TcpStream> = (0..10)
        .map(|i| {
            let mut s = connect(srv.addr);
            s.write_all(&frame(format!("c{i}").as_bytes())).unwrap();
            s
        })
        .collect();
    srv.unblock();
    expect_reply(&mut blocker, b"block", "the blocking client");
    let mut served = 0;
    for (i, s) in clients.iter_mut().enumerate() {
        match read_frame(s) {
            Ok(Some(f)) => {
                assert_eq!(f, format!("c{i}").as_bytes());
                served += 1;
                assert!(
                    i < 3,
                    "client {i} served past max_conns (accepted in order)"
                );
            }
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("client {i}: neither served nor refused: {e}"),
        }
    }
    assert_eq!(served, 3);
    assert_eq!(srv.stats.snapshot().rejected_max_conns, 7);
    drop(clients);
    drop(blocker);
    let stats = Arc::clone(&srv.stats);
    eventually("the slots released", || {
        let s = stats.snapshot();
        // (Refused connections are not counted closed: they were never served.)
        s.closed + s.rejected_max_conns == s.accepted
    });
    let mut again: Vec<TcpStream> = (0..4).map(|_| connect(srv.addr)).collect();
    for (i, s) in again.iter_mut().enumerate() {
        s.write_all(&frame(format!("again{i}").as_bytes())).unwrap();
        expect_reply(
            s,
            format!("again{i}").as_bytes(),
            "after the slots came back",
        );
    }
    drop(again);
    drop(srv);

    // Per IP: 2 each, from two source addresses.
    let mut cfg = config();
    cfg.max_conns_per_ip = Some(2);
    let srv = serve(flavor, cfg);
    let mut blocker = srv.block(b"");
    let mut clients = Vec::new();
    for ip in [[127, 0, 0, 2], [127, 0, 0, 3]] {
        for i in 0..5 {
            let mut s = connect_from(ip, srv.addr);
            s.write_all(&frame(format!("{ip:?}-{i}").as_bytes()))
                .unwrap();
            clients.push((ip, i, s));
        }
    }
    srv.unblock();
    expect_reply(&mut blocker, b"block", "the blocking client");
    let mut served = std::collections::HashMap::new();
    for (ip, i, s) in &mut clients {
        match read_frame(s) {
            Ok(Some(f)) => {
                assert_eq!(f, format!("{ip:?}-{i}").as_bytes());
                *served.entry(*ip).or_insert(0) += 1;
            }
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{ip:?} client {i}: neither served nor refused: {e}"),
        }
    }
    assert_eq!(served.get(&[127, 0, 0, 2]), Some(&2), "{served:?}");
    assert_eq!(served.get(&[127, 0, 0, 3]), Some(&2), "{served:?}");
    assert_eq!(srv.stats.snapshot().rejected_per_ip, 6);
}

#[test]
fn caps_refuse_in_a_burst_of_waiting_requests_current_thread() {
    caps_in_a_waiting_burst(Flavor::Current);
}

#[test]
fn caps_refuse_in_a_burst_of_waiting_requests_multi_thread() {
    caps_in_a_waiting_burst(Flavor::Multi);
}

// ------------------------------------------------------------------ EMFILE

/// Which child scenario to run, and on which runtime.
const EMFILE_ENV: &str = "KEEPWIRE_ACCEPT_ATTACK2_EMFILE";

fn open_fds() -> u64 {
    // (read_dir holds one descriptor of its own while it lists.)
    (std::fs::read_dir("/proc/self/fd").unwrap().count() as u64).saturating_sub(1)
}

/// Leaves room for `room` more descriptors in this process.
fn limit_fds(room: u64) {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    rlimit::Resource::NOFILE
        .set(open_fds() + room, hard)
        .unwrap();
}

/// EMFILE in the accept loop: with room for 3 descriptors, 20 connections with their
/// requests written wait; the loop accepts what it can, backs off, and takes the rest as
/// the answered clients close. No connection is lost, and the errors are counted.
fn emfile_accept_loop(flavor: Flavor) {
    const N: usize = 20;
    let srv = serve(flavor, config());
    // One round trip first: the server is serving, its lazily made descriptors made.
    let mut first = connect(srv.addr);
    first.write_all(&frame(b"first")).unwrap();
    expect_reply(&mut first, b"first", "before the limit");
    // The clients' sockets exist before the limit (a connect needs no new descriptor).
    let socks: Vec<socket2::Socket> = (0..N)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect();
    limit_fds(3);
    let mut clients = Vec::new();
    for (i, sock) in socks.into_iter().enumerate() {
        sock.connect_timeout(&srv.addr.into(), SOON).unwrap();
        let mut s: TcpStream = sock.into();
        prepare(&s);
        s.write_all(&frame(format!("e{i}").as_bytes())).unwrap();
        clients.push(s);
    }
    for (i, mut s) in clients.into_iter().enumerate() {
        expect_reply(
            &mut s,
            format!("e{i}").as_bytes(),
            "a connection held back by EMFILE",
        );
        // Closing frees the server's descriptor (it sees the end of stream).
        drop(s);
    }
    let snap = srv.stats.snapshot();
    assert!(snap.errors_accept > 0, "EMFILE never hit: {snap:?}");
    assert_eq!(snap.accepted, N as u64 + 1, "{snap:?}");
}

/// EMFILE in the shutdown's backlog sweep: three idle connections hold every descriptor the
/// server may open and ten connections with requests wait in the backlog when the shutdown
/// starts. The sweep fails, the drain closes the idle ones, and `finish_backlog` (on the mio
/// listener) takes and answers the ten.
fn emfile_backlog_sweep(flavor: Flavor) {
    const N: usize = 10;
    let mut srv = serve(flavor, config());
    let mut first = connect(srv.addr);
    first.write_all(&frame(b"first")).unwrap();
    expect_reply(&mut first, b"first", "before the limit");
    drop(first);
    let stats = Arc::clone(&srv.stats);
    eventually("the first connection closed", || {
        stats.snapshot().closed == 1
    });
    let socks: Vec<socket2::Socket> = (0..N + 3)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect();
    limit_fds(3);
    let mut socks = socks.into_iter();
    let mut holders = Vec::new();
    for i in 0..3 {
        let sock = socks.next().unwrap();
        sock.connect_timeout(&srv.addr.into(), SOON).unwrap();
        let mut s: TcpStream = sock.into();
        prepare(&s);
        s.write_all(&frame(format!("h{i}").as_bytes())).unwrap();
        expect_reply(&mut s, format!("h{i}").as_bytes(), "a holder");
        holders.push(s);
    }
    let mut waiting = Vec::new();
    for (i, sock) in socks.enumerate() {
        sock.connect_timeout(&srv.addr.into(), SOON).unwrap();
        let mut s: TcpStream = sock.into();
        prepare(&s);
        s.write_all(&frame(format!("w{i}").as_bytes())).unwrap();
        waiting.push(s);
    }
    eventually("EMFILE in the accept loop", || {
        stats.snapshot().errors_accept > 0
    });
    // Some of the ten are still in the backlog (the exact room is the process's, give or
    // take a descriptor the runtime holds).
    let accepted_before = stats.snapshot().accepted;
    assert!(
        accepted_before < 4 + N as u64 - 3,
        "the backlog was not held back by EMFILE: {:?}",
        stats.snapshot()
    );
    let errors_at_shutdown = stats.snapshot().errors_accept;
    srv.stop.cancel();
    for mut h in holders {
        expect_closed(&mut h, "an idle holder at the shutdown");
    }
    for (i, mut s) in waiting.into_iter().enumerate() {
        expect_reply(
            &mut s,
            format!("w{i}").as_bytes(),
            "a request in the backlog at the shutdown, past EMFILE",
        );
        drop(s);
    }
    let report = srv.join();
    assert_eq!(report.force_closed, 0, "{report:?}");
    let snap = srv.stats.snapshot();
    assert_eq!(snap.accepted, N as u64 + 4, "{snap:?}");
    assert!(
        snap.errors_accept > errors_at_shutdown,
        "the backlog sweep never met EMFILE (finish_backlog untested): {snap:?}"
    );
}

/// The child process's side: runs the scenario named in `EMFILE_ENV`, if any.
#[test]
#[ignore = "run by the emfile_* tests in a child process (it lowers RLIMIT_NOFILE)"]
fn emfile_child_process() {
    let Ok(which) = std::env::var(EMFILE_ENV) else {
        return;
    };
    let flavor = if which.ends_with("multi") {
        Flavor::Multi
    } else {
        Flavor::Current
    };
    if which.starts_with("loop") {
        emfile_accept_loop(flavor);
    } else {
        emfile_backlog_sweep(flavor);
    }
    println!("emfile scenario {which} passed");
}

/// Runs `which` in a child process (bounded), and fails with its output if it failed.
fn in_child(which: &str) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "emfile_child_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EMFILE_ENV, which)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(s) => s.unwrap(),
        Err(_) => {
            // Ours, by its id.
            let _ = std::process::Command::new("kill")
                .args(["-9", &id.to_string()])
                .status();
            panic!("the {which} child did not finish within 60 s");
        }
    };
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    assert!(
        status.success() && out.iter().any(|l| l.contains("passed")),
        "child {which} failed ({status}):\n{}\n{err}",
        out.join("\n")
    );
}

#[test]
fn emfile_in_the_accept_loop_backs_off_and_recovers_current_thread() {
    in_child("loop-current");
}

#[test]
fn emfile_in_the_accept_loop_backs_off_and_recovers_multi_thread() {
    in_child("loop-multi");
}

#[test]
fn emfile_in_the_backlog_sweep_at_shutdown_still_answers_current_thread() {
    in_child("sweep-current");
}

#[test]
fn emfile_in_the_backlog_sweep_at_shutdown_still_answers_multi_thread() {
    in_child("sweep-multi");
}
