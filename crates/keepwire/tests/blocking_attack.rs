//! Hostile review of the blocking clients after they took the async clients' config,
//! endpoint set and pipeline (issue 10). Misbehaving peers are `std::net` listeners on
//! 127.0.0.1 run on threads; every wait is bounded.

use std::io::Read;
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

/// A listener that hands each accepted connection to the test (and keeps it open there)
/// until `max` were accepted; then it closes, so the port refuses.
fn acceptor(max: usize) -> (SocketAddr, mpsc::Receiver<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for _ in 0..max {
            match l.accept() {
                Ok((s, _)) => {
                    if tx.send(s).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    (addr, rx)
}

/// Broke: `reconnect` shut the old socket down before connecting again; when no endpoint
/// then connected, the client kept the shut socket as if healthy (`is_broken` false), and
/// the next `send` wrote on it: a broken pipe reported as "may have been sent" for a
/// request no byte of which could leave. The failed reconnect now leaves the client
/// broken, so the next send reconnects first and fails as not sent.
#[test]
fn failed_reconnect_leaves_the_client_broken_not_half_alive() {
    let (addr, accepted) = acceptor(1);
    let mut c =
        LongClient::connect(ClientOptions::new(spec("len:ascii:4"), [addr.to_string()])).unwrap();
    let _peer = accepted.recv_timeout(SOON).unwrap();
    // The listener is closed once its one connection was accepted: wait until it refuses.
    let t = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(t.elapsed() < SOON, "the listener never closed");
        thread::yield_now();
    }
    let e = c.reconnect().unwrap_err();
    assert!(e.is_connect() && e.is_not_sent(), "{e}");
    assert!(
        c.is_broken(),
        "a failed reconnect leaves a shut socket in use"
    );
    let e = c.send(b"abc").unwrap_err();
    assert!(
        e.is_not_sent() && e.is_connect(),
        "the send after a failed reconnect: {e} (not sent: {})",
        e.is_not_sent()
    );
}

/// Broke: once `tick` said the peer is dead (pings unanswered), the connection was not
/// marked broken: the next `request` went to the dead peer and waited out its whole
/// request timeout. A dead peer's connection now stays failed like every other failure,
/// and the next send reconnects.
#[test]
fn dead_peer_breaks_the_connection_and_the_next_send_reconnects() {
    let (addr, accepted) = acceptor(2);
    let opts = ClientOptions::new(spec("len:ascii:4"), [addr.to_string()])
        .request_timeout(Duration::from_secs(5))
        .ping(Some(PingConfig {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
            misses: 2,
        }));
    let mut c = LongClient::connect(opts).unwrap();
    // The first peer reads everything and never answers.
    let _silent = accepted.recv_timeout(SOON).unwrap();
    let t = Instant::now();
    let err = loop {
        if let Err(e) = c.tick() {
            break e;
        }
        let wait = c.next_tick().map_or(Duration::from_millis(10), |d| {
            d.saturating_duration_since(Instant::now())
        });
        assert_eq!(c.recv_timeout(wait).unwrap(), None);
        assert!(t.elapsed() < SOON);
    };
    assert!(err.is_dead_peer(), "{err}");
    assert!(
        c.is_broken(),
        "a dead peer's connection is still taken as healthy"
    );
    c.send(b"abc").unwrap();
    let mut second = accepted
        .recv_timeout(Duration::from_secs(2))
        .expect("the send after a dead peer went on the dead connection");
    let mut got = [0u8; 7];
    second.set_read_timeout(Some(SOON)).unwrap();
    second.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"0003abc");
}

/// Held (new coverage: the whole-write deadline on the blocking client): a peer that reads
/// a few bytes now and then never stalls a single `write(2)` for the write timeout, yet the
/// write as a whole is bounded by it; the request fails as may-have-been-sent and the
/// connection is broken.
#[test]
fn trickle_reader_hits_the_whole_write_deadline() {
    let (addr, accepted) = acceptor(1);
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let trickle = thread::spawn(move || {
        let mut s = accepted.recv_timeout(SOON).unwrap();
        let mut buf = [0u8; 16];
        // 16 bytes every 20 ms until told to stop.
        while stop_rx.recv_timeout(Duration::from_millis(20)).is_err() {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    let write_timeout = Duration::from_millis(400);
    let mut c = LongClient::connect(
        ClientOptions::new(spec("len:be:4"), [addr.to_string()])
            .write_timeout(write_timeout)
            .request_timeout(Duration::from_secs(8)),
    )
    .unwrap();
    let big = vec![b'x'; 8_000_000];
    let t = Instant::now();
    let e = c.request(&big).unwrap_err();
    let took = t.elapsed();
    stop_tx.send(()).unwrap();
    trickle.join().unwrap();
    assert!(e.is_timeout() && e.may_have_been_sent(), "{e}");
    assert!(
        took < write_timeout * 4,
        "the write took {took:?} with a {write_timeout:?} write timeout"
    );
    assert!(c.is_broken());
}

/// Held (new coverage): absurd but legal settings on the blocking clients (an in-flight
/// limit, queue and unsolicited capacity they do not use; `u64::MAX` durations) neither
/// panic nor change a working exchange; a zero connect timeout is refused up front as a
/// config error naming the setting, before any endpoint is marked down.
#[test]
fn absurd_settings_on_blocking_clients() {
    let (addr, accepted) = acceptor(1);
    let peer = thread::spawn(move || {
        use std::io::Write;
        let mut s = accepted.recv_timeout(SOON).unwrap();
        let mut got = [0u8; 7];
        s.set_read_timeout(Some(SOON)).unwrap();
        s.read_exact(&mut got).unwrap();
        s.write_all(&got).unwrap();
    });
    let huge = Duration::from_secs(u64::MAX);
    let opts = ClientOptions::new(spec("len:ascii:4"), [addr.to_string()])
        .max_in_flight(0)
        .queue(0)
        .unsolicited_capacity(usize::MAX)
        .connect_timeout(huge)
        .request_timeout(huge)
        .write_timeout(huge)
        .reconnect_backoff(huge, huge)
        .down_backoff(huge, huge);
    let mut c = LongClient::connect(opts).unwrap();
    assert_eq!(&c.request(b"abc").unwrap()[..], b"abc");
    peer.join().unwrap();

    let opts =
        ClientOptions::new(spec("len:ascii:4"), [addr.to_string()]).connect_timeout(Duration::ZERO);
    let e = ShortClient::new(opts.clone()).request(b"abc").unwrap_err();
    assert!(e.is_config(), "{e}");
    assert!(e.to_string().contains("connect_timeout"), "{e}");
    let e = LongClient::connect(opts).unwrap_err();
    assert!(e.is_config(), "{e}");
}

/// A zero write timeout: the async long client writes a small request that the socket takes
/// at once (its write step waits only when the socket is full); the blocking one failed it
/// before its first `write(2)`, because `pipeline::write_all_blocking` checked the time left
/// before writing anything. It now tries each write first and checks the deadline only
/// before waiting.
#[test]
fn zero_write_timeout_still_writes_what_the_socket_takes() {
    let (addr, accepted) = acceptor(1);
    let peer = thread::spawn(move || {
        use std::io::Write;
        let mut s = accepted.recv_timeout(SOON).unwrap();
        let mut got = [0u8; 7];
        s.set_read_timeout(Some(SOON)).unwrap();
        s.read_exact(&mut got).unwrap();
        s.write_all(&got).unwrap();
    });
    let opts =
        ClientOptions::new(spec("len:ascii:4"), [addr.to_string()]).write_timeout(Duration::ZERO);
    let mut c = LongClient::connect(opts).unwrap();
    assert_eq!(&c.request(b"abc").unwrap()[..], b"abc");
    peer.join().unwrap();
}
