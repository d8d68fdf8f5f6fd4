//! Hostile review of the server's connection changes: the client-asked close judged by
//! tokio's read readiness, per-IP caps under churn, socket options inherited from the
//! listener. Real loopback sockets.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keepwire::http::{HttpReply, HttpService, KeepAlive};
mod common;
mod tls_common;
use keepwire::server::{Server, ServerConfig};

const LIMIT: Duration = Duration::from_secs(5);

/// Reads until the server's FIN; the error (a reset) when one comes first.
fn read_to_close(c: &mut StdStream) -> std::io::Result<String> {
    c.set_read_timeout(Some(LIMIT))?;
    let mut out = Vec::new();
    c.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A client that asked for the close sent more while a CPU-bound handler held the runtime's
/// thread: its bytes were in the server's kernel long before the answer, but the runtime
/// never looked (its driver did not run). The server must not close on them with a reset
/// that destroys the response it just wrote.
#[tokio::test]
async fn bytes_sent_while_a_blocking_handler_runs_do_not_reset_the_response() {
    use tower::Service as _;
    let server = Server::bind("127.0.0.1:0", ServerConfig::new("http".parse().unwrap()))
        .await
        .unwrap();
    let addr: SocketAddr = server.local_addr();
    let inner = HttpService::new(HttpReply::Echo, "text/plain", KeepAlive::default());
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let started_tx = std::sync::Arc::new(std::sync::Mutex::new(started_tx));
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    let sent_rx = std::sync::Arc::new(std::sync::Mutex::new(sent_rx));
    let svc = tower::service_fn(move |req: keepwire::server::Request| {
        let mut http = inner.clone();
        // CPU-bound work on the runtime's thread: it waits (blocking) until the client has
        // sent its extra bytes, as a long computation would let them arrive.
        let _ = started_tx.lock().unwrap().send(());
        let _ = sent_rx.lock().unwrap().recv_timeout(LIMIT);
        async move { http.call(req).await }
    });
    tokio::spawn(server.serve(svc));
    let client = std::thread::spawn(move || {
        let mut c = StdStream::connect(addr).unwrap();
        c.write_all(b"GET /a HTTP/1.0\r\n\r\n").unwrap();
        started_rx.recv_timeout(LIMIT).unwrap();
        c.write_all(b"GET /b HTTP/1.0\r\n\r\n").unwrap();
        sent_tx.send(()).unwrap();
        read_to_close(&mut c)
    });
    let resp = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    let resp = resp.expect("the response was lost to a reset");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 1, "{resp}");
}

/// An HTTP echo server with `cfg`; its address and counters.
async fn web(
    cfg: ServerConfig,
    at: &str,
) -> (SocketAddr, std::sync::Arc<keepwire::server::ServerStats>) {
    let server = Server::bind(at, cfg).await.unwrap();
    let addr = server.local_addr();
    let stats = server.stats();
    let svc = HttpService::new(HttpReply::Echo, "text/plain", KeepAlive::default());
    tokio::spawn(server.serve(svc));
    (addr, stats)
}

/// Connects from `from` (port chosen by the kernel), with `prefix` sent first (a PROXY
/// header), and asks for one keep-alive request: `Some(stream)` when answered, `None` when
/// the server closed or reset instead.
async fn served(
    addr: SocketAddr,
    from: std::net::IpAddr,
    prefix: &[u8],
) -> Option<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sock = if from.is_ipv4() {
        tokio::net::TcpSocket::new_v4().unwrap()
    } else {
        tokio::net::TcpSocket::new_v6().unwrap()
    };
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    let mut c = sock.connect(addr).await.unwrap();
    let mut req = prefix.to_vec();
    req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    if c.write_all(&req).await.is_err() {
        return None;
    }
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            Ok(_) => return None,
            Err(_) => panic!("no answer and no close from {from}"),
        }
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    Some(c)
}

/// Polls `cond` on the server's counters until it holds, for at most `LIMIT`.
async fn until(stats: &keepwire::server::ServerStats, what: &str, cond: impl Fn(u64) -> bool) {
    let t0 = Instant::now();
    while !cond(stats.snapshot().closed) {
        assert!(t0.elapsed() < LIMIT, "{what}: {:?}", stats.snapshot());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Many client addresses (127.0.0.10..40) at a cap of 2, three rounds: each address gets
/// exactly 2, its third is refused, and once all close every address gets its 2 again (the
/// counts went back to zero, whatever the table's growth and removals did).
#[tokio::test]
async fn per_ip_caps_hold_exactly_under_churn_from_many_addresses() {
    let mut cfg = ServerConfig::new("http".parse().unwrap());
    cfg.max_conns_per_ip = Some(2);
    let (addr, stats) = web(cfg, "127.0.0.1:0").await;
    let ips: Vec<std::net::IpAddr> = (10..40u8)
        .map(|n| std::net::Ipv4Addr::new(127, 0, 0, n).into())
        .collect();
    let mut closed = 0;
    for round in 0..3u64 {
        let mut held = Vec::new();
        for ip in &ips {
            for k in 0..2 {
                let c = served(addr, *ip, b"").await;
                held.push(c.unwrap_or_else(|| panic!("round {round}: {ip} #{k} refused")));
            }
            assert!(
                served(addr, *ip, b"").await.is_none(),
                "round {round}: {ip} got a third connection"
            );
            closed += 1;
        }
        let n = ips.len() as u64;
        assert_eq!(stats.snapshot().rejected_per_ip, n * (round + 1));
        closed += held.len() as u64;
        drop(held);
        until(&stats, "connections never closed", |c| c >= closed).await;
    }
}

/// Behind PROXY, the slot is the named client's: one client named twice is capped, another
/// named through the same proxy address is not, and a named client's slot comes back.
#[tokio::test]
async fn per_ip_caps_count_the_proxy_named_client_not_the_proxy() {
    let mut cfg = ServerConfig::new("http".parse().unwrap());
    cfg.max_conns_per_ip = Some(1);
    cfg.proxy_protocol = true;
    let (addr, stats) = web(cfg, "127.0.0.1:0").await;
    let lo = std::net::IpAddr::from([127, 0, 0, 1]);
    let named = |c: u8| format!("PROXY TCP4 192.0.2.{c} 127.0.0.1 5000 80\r\n").into_bytes();
    let a = served(addr, lo, &named(7))
        .await
        .expect("first named client refused");
    assert!(
        served(addr, lo, &named(7)).await.is_none(),
        "named twice, cap 1"
    );
    let b = served(addr, lo, &named(8))
        .await
        .expect("another named client refused");
    assert_eq!(stats.snapshot().rejected_per_ip, 1);
    drop((a, b));
    until(&stats, "connections never closed", |c| c >= 3).await;
    let _a = served(addr, lo, &named(7))
        .await
        .expect("slot not given back");
}

/// IPv6 loopback: cap 1 on a `[::1]` listener, the slot given back at the close.
#[tokio::test]
async fn per_ip_caps_on_ipv6_loopback() {
    let mut cfg = ServerConfig::new("http".parse().unwrap());
    cfg.max_conns_per_ip = Some(1);
    let bound = Server::bind("[::1]:0", cfg).await;
    if !tls_common::require(bound.is_ok(), "no IPv6 loopback") {
        return;
    }
    let server = bound.unwrap();
    let addr = server.local_addr();
    let stats = server.stats();
    let svc = HttpService::new(HttpReply::Echo, "text/plain", KeepAlive::default());
    tokio::spawn(server.serve(svc));
    let v6 = std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
    for round in 0..3u64 {
        let a = served(addr, v6, b"").await.expect("first refused");
        assert!(served(addr, v6, b"").await.is_none(), "second past cap 1");
        drop(a);
        until(&stats, "never closed", |c| c >= 2 * (round + 1)).await;
    }
}

/// A TLS peer that trickles one record carrying a frame (20 bytes each 20 ms): the
/// plaintext buffer stays empty until the record is whole, but the frame has begun, and the
/// frame timeout (300 ms) must cut it as it cuts a plain trickle, not the record's end
/// (about 4 s) or the idle timeout.
#[tokio::test]
async fn a_tls_record_trickled_in_is_cut_at_the_frame_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let pki = tls_common::Pki::new();
    let mut cfg = ServerConfig::new(common::spec("len:be:2"));
    cfg.tls = Some(pki.server_tls(false));
    cfg.liveness.frame_timeout = Some(Duration::from_millis(300));
    cfg.liveness.read_idle = Some(Duration::from_secs(30));
    let srv = common::echo_server(cfg).await;
    let name = "localhost".try_into().unwrap();
    let ccfg = std::sync::Arc::clone(pki.client_tls(false).config());
    let mut tls = rustls::ClientConnection::new(ccfg, name).unwrap();
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    // The handshake, driven by hand.
    let mut buf = vec![0u8; 32 * 1024];
    tokio::time::timeout(LIMIT, async {
        while tls.is_handshaking() {
            let mut out = Vec::new();
            while tls.wants_write() {
                tls.write_tls(&mut out).unwrap();
            }
            tcp.write_all(&out).await.unwrap();
            if tls.is_handshaking() {
                let n = tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "eof in the handshake");
                let mut s = &buf[..n];
                while !s.is_empty() {
                    tls.read_tls(&mut s).unwrap();
                    tls.process_new_packets().unwrap();
                }
            }
        }
    })
    .await
    .unwrap();
    let mut frame = vec![0x0f, 0xa0];
    frame.resize(2 + 4000, b'x');
    tls.writer().write_all(&frame).unwrap();
    let mut record = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut record).unwrap();
    }
    let t = Instant::now();
    let mut closed = false;
    for chunk in record.chunks(20) {
        if tcp.write_all(chunk).await.is_err() {
            closed = true;
            break;
        }
        match tokio::time::timeout(Duration::from_millis(20), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    let took = t.elapsed();
    assert!(closed, "a trickled record held the connection {took:?}");
    assert!(took < Duration::from_secs(2), "cut after {took:?}");
    assert!(took >= Duration::from_millis(250), "cut after {took:?}");
}
