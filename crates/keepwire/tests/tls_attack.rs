//! Hostile review of TLS on the server (issue 15): record and segment boundaries driven by
//! a sans-IO rustls client, so every way bytes can arrive is tried against the server's
//! readiness loop; half-closes; garbage before the handshake.

mod common;
#[path = "common/queues.rs"]
mod queues;
mod tls_common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::{SOON, echo_server, spec};
use keepwire::server::ServerConfig;
use tls_common::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn server_cfg(pki: &Pki) -> ServerConfig {
    let mut cfg = ServerConfig::new(spec("len:be:2"));
    cfg.tls = Some(pki.server_tls(false));
    cfg
}

/// A rustls client driven by hand: the test decides where records and segments end.
struct Raw {
    tcp: TcpStream,
    tls: rustls::ClientConnection,
    plain: Vec<u8>,
}

impl Raw {
    async fn connect(pki: &Pki, addr: std::net::SocketAddr) -> Raw {
        let cfg = Arc::clone(pki.client_tls(false).config());
        let name = "localhost".try_into().unwrap();
        let tls = rustls::ClientConnection::new(cfg, name).unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut r = Raw {
            tcp,
            tls,
            plain: Vec::new(),
        };
        tokio::time::timeout(SOON, async {
            while r.tls.is_handshaking() {
                r.flush().await;
                if r.tls.is_handshaking() {
                    r.pump().await.expect("eof during the handshake");
                }
            }
            r.flush().await;
        })
        .await
        .expect("handshake within 10 s");
        r
    }

    fn take_out(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut out).unwrap();
        }
        out
    }

    async fn flush(&mut self) {
        let out = self.take_out();
        self.tcp.write_all(&out).await.unwrap();
    }

    /// One socket read fed to rustls; `None` at EOF.
    async fn pump(&mut self) -> Option<()> {
        let mut buf = vec![0u8; 32 * 1024];
        let n = self.tcp.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        let mut s = &buf[..n];
        while !s.is_empty() {
            self.tls.read_tls(&mut s).unwrap();
            self.tls.process_new_packets().unwrap();
        }
        let mut tmp = [0u8; 4096];
        loop {
            match self.tls.reader().read(&mut tmp) {
                Ok(0) | Err(_) => break,
                Ok(k) => self.plain.extend_from_slice(&tmp[..k]),
            }
        }
        Some(())
    }

    /// Ciphertext of `plain` as one record per `record` bytes of plaintext.
    fn seal(&mut self, plain: &[u8], record: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in plain.chunks(record) {
            self.tls.writer().write_all(chunk).unwrap();
            out.extend(self.take_out());
        }
        out
    }

    /// Waits until `n` plaintext bytes have arrived (bounded), or EOF.
    async fn expect(&mut self, n: usize) -> Vec<u8> {
        tokio::time::timeout(Duration::from_secs(5), async {
            while self.plain.len() < n {
                if self.pump().await.is_none() {
                    break;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("only {} of {n} bytes within 5 s", self.plain.len()));
        std::mem::take(&mut self.plain)
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[tokio::test]
async fn several_frames_in_one_record_all_answered() {
    let pki = Pki::new();
    let srv = echo_server(server_cfg(&pki)).await;
    let mut c = Raw::connect(&pki, srv.addr).await;
    let mut all = Vec::new();
    for i in 0..50u8 {
        all.extend(frame(&[i; 7]));
    }
    let wire = c.seal(&all, usize::MAX);
    c.tcp.write_all(&wire).await.unwrap();
    assert_eq!(c.expect(all.len()).await, all);
}

#[tokio::test]
async fn one_frame_across_many_records_answered() {
    let pki = Pki::new();
    let srv = echo_server(server_cfg(&pki)).await;
    let mut c = Raw::connect(&pki, srv.addr).await;
    let f = frame(&[9u8; 300]);
    // One record per byte, all in one write; then one record per byte, one write each.
    let wire = c.seal(&f, 1);
    c.tcp.write_all(&wire).await.unwrap();
    assert_eq!(c.expect(f.len()).await, f);
    for b in f.chunks(1) {
        let w = c.seal(b, 1);
        c.tcp.write_all(&w).await.unwrap();
    }
    assert_eq!(c.expect(f.len()).await, f);
}

#[tokio::test]
async fn a_record_split_at_every_offset_is_answered() {
    let pki = Pki::new();
    let srv = echo_server(server_cfg(&pki)).await;
    let mut c = Raw::connect(&pki, srv.addr).await;
    let f = frame(b"split me");
    let len = c.seal(&f, usize::MAX).len();
    // The sealing above was sent nowhere: reconnect so sequence numbers line up.
    drop(c);
    let mut c = Raw::connect(&pki, srv.addr).await;
    for cut in 1..len {
        let wire = c.seal(&f, usize::MAX);
        c.tcp.write_all(&wire[..cut]).await.unwrap();
        // A gap so the two parts leave as separate segments (the scenario, not a wait).
        tokio::time::sleep(Duration::from_millis(1)).await;
        c.tcp.write_all(&wire[cut..]).await.unwrap();
        assert_eq!(c.expect(f.len()).await, f, "cut at {cut}");
    }
}

#[tokio::test]
async fn last_record_alone_and_pipelined_requests() {
    let pki = Pki::new();
    let srv = echo_server(server_cfg(&pki)).await;
    let mut c = Raw::connect(&pki, srv.addr).await;
    let mut all = Vec::new();
    for i in 0..20u8 {
        all.extend(frame(&[i; 100]));
    }
    let wire = c.seal(&all, 64);
    // All but the last record, then the last one alone after a gap.
    let last = c.seal(b"", 1);
    assert!(last.is_empty());
    let cut = wire.len() - (64 + 22);
    c.tcp.write_all(&wire[..cut]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    c.tcp.write_all(&wire[cut..]).await.unwrap();
    assert_eq!(c.expect(all.len()).await, all);
}

#[tokio::test]
async fn request_then_close_notify_and_fin_is_answered() {
    let pki = Pki::new();
    let srv = echo_server(server_cfg(&pki)).await;
    let mut c = Raw::connect(&pki, srv.addr).await;
    let f = frame(b"last words");
    let mut wire = c.seal(&f, usize::MAX);
    c.tls.send_close_notify();
    wire.extend(c.take_out());
    c.tcp.write_all(&wire).await.unwrap();
    c.tcp.shutdown().await.unwrap();
    assert_eq!(c.expect(f.len()).await, f);
}

#[tokio::test]
async fn request_then_bare_fin_is_answered_or_closed() {
    let pki = Pki::new();
    let srv = echo_server(server_cfg(&pki)).await;
    let mut c = Raw::connect(&pki, srv.addr).await;
    let f = frame(b"no notify");
    let wire = c.seal(&f, usize::MAX);
    c.tcp.write_all(&wire).await.unwrap();
    c.tcp.shutdown().await.unwrap();
    assert_eq!(c.expect(f.len()).await, f);
}

#[tokio::test]
async fn reply_larger_than_the_socket_buffer_to_a_slow_reader() {
    let pki = Pki::new();
    let mut cfg = ServerConfig::new(spec("len:be:4"));
    cfg.tls = Some(pki.server_tls(false));
    let srv = echo_server(cfg).await;
    let mut c = Raw::connect(&pki, srv.addr).await;
    let body = vec![0x5au8; 3 * 1024 * 1024];
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&body);
    let wire = c.seal(&f, 16 * 1024);
    let (mut rd, mut wr) = c.tcp.split();
    let tls = &mut c.tls;
    let mut plain = Vec::new();
    let write = async { wr.write_all(&wire).await.unwrap() };
    let read = async {
        let mut buf = vec![0u8; 4096];
        // Slow: small reads only, decrypted as they come. The server's records are not
        // the client's (other sizes, other overhead), so only the plaintext can say when
        // the echo is complete.
        while plain.len() < f.len() {
            let n = rd.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            let mut s = &buf[..n];
            while !s.is_empty() {
                tls.read_tls(&mut s).unwrap();
                tls.process_new_packets().unwrap();
                let _ = tls.reader().read_to_end(&mut plain);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(write, read) })
        .await
        .expect("echo of 3 MiB within 10 s");
    assert_eq!(plain.len(), f.len());
    assert!(plain == f);
}

#[tokio::test]
async fn garbage_instead_of_a_client_hello_is_closed() {
    let pki = Pki::new();
    let mut cfg = server_cfg(&pki);
    cfg.handshake_timeout = Duration::from_secs(5);
    let mut srv = echo_server(cfg).await;
    let inputs: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\0\0\0\0\0\0\0\0\0\0",
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0, 0, 0],
    ];
    for input in inputs {
        let mut c = common::Client::connect(srv.addr, "len:be:2").await;
        c.send_raw(input).await.unwrap();
        let took = c.closed_within(SOON).await;
        assert!(
            took < Duration::from_secs(3),
            "{input:?} closed after {took:?}"
        );
    }
    assert!(srv.seen.try_recv().is_err());
}

/// A client that completed TCP and sent nothing (or half a ClientHello) has sent no request:
/// a drain closes it at once, as it does a connection still waiting for its PROXY header,
/// instead of waiting out the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_a_silent_handshake_at_once() {
    let pki = Pki::new();
    let mut cfg = server_cfg(&pki);
    cfg.handshake_timeout = Duration::from_secs(8);
    cfg.shutdown_grace = Duration::from_secs(8);
    let srv = common::start(cfg, "127.0.0.1:0", None).await;
    let mut silent = common::Client::connect(srv.addr, "len:be:2").await;
    let mut half = common::Client::connect(srv.addr, "len:be:2").await;
    half.send_raw(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    // Both accepted and in their handshake: a completed one proves the accept loop ran.
    let _done = Raw::connect(&pki, srv.addr).await;
    srv.stop.cancel();
    let took = silent.closed_within(SOON).await;
    assert!(
        took < Duration::from_secs(3),
        "silent closed after {took:?}"
    );
    let took = half.closed_within(SOON).await;
    assert!(took < Duration::from_secs(3), "half closed after {took:?}");
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    assert!(report.drain_time < Duration::from_secs(3), "{report:?}");
    assert_eq!(report.force_closed, 0, "{report:?}");
}

/// Requests that arrived in one record are all decrypted by one read; a drain that starts
/// while the first is being handled still answers every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_answers_requests_already_decrypted() {
    let pki = Pki::new();
    let mut cfg = server_cfg(&pki);
    cfg.shutdown_grace = Duration::from_secs(8);
    let mut srv = common::start(cfg, "127.0.0.1:0", Some(Duration::from_millis(100))).await;
    let mut c = Raw::connect(&pki, srv.addr).await;
    let mut all = Vec::new();
    for i in 0..5u8 {
        all.extend(frame(&[i; 10]));
    }
    let wire = c.seal(&all, usize::MAX);
    c.tcp.write_all(&wire).await.unwrap();
    tokio::time::timeout(SOON, srv.seen.recv())
        .await
        .unwrap()
        .unwrap();
    srv.stop.cancel();
    assert_eq!(c.expect(all.len()).await, all);
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    assert_eq!(report.force_closed, 0, "{report:?}");
}

/// A raw listener that accepts and, per connection, reads what comes and then closes
/// (`close`) or keeps the connection open in silence.
async fn hostile_listener(close: bool) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            if close {
                let mut b = [0u8; 64];
                let _ = s.read(&mut b).await;
                drop(s);
            } else {
                held.push(s);
            }
        }
    });
    addr
}

/// The client's handshake against a server that closes mid-handshake, and one that never
/// answers: each fails within the connect timeout and the client moves to the next endpoint.
#[tokio::test]
async fn client_fails_over_past_a_closing_and_a_silent_tls_server() {
    use bytes::Bytes;
    let pki = Pki::new();
    let good = echo_server(server_cfg(&pki)).await;
    let closing = hostile_listener(true).await;
    let silent = hostile_listener(false).await;
    let t = std::time::Instant::now();
    let c = common::builder("len:be:2", &[closing, silent, good.addr])
        .tls(pki.client_tls(false))
        .connect_timeout(Duration::from_millis(300))
        .request_timeout(SOON)
        .connect_long()
        .await
        .unwrap();
    assert_eq!(
        &c.request(Bytes::from_static(b"hi")).await.unwrap()[..],
        b"hi"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let eps = c.endpoints();
    // (`up` may already be back: the down backoff is 200 ms.) Each names its failure.
    let why = |i: usize| eps[i].last_error.clone().unwrap_or_default();
    assert!(why(0).contains("tls handshake"), "{:?}", eps[0]);
    assert!(why(1).contains("tls handshake"), "{:?}", eps[1]);
    assert!(eps[2].up && eps[2].last_error.is_none(), "{:?}", eps[2]);
}

/// A SOCKS5 proxy that stalls, one that answers garbage, one that refuses: each connect
/// ends within the connect timeout with an error naming the proxy.
#[tokio::test]
async fn socks5_proxy_that_stalls_or_lies_is_bounded() {
    let silent = hostile_listener(false).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let liar = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut b = [0u8; 64];
            let _ = s.read(&mut b).await;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for proxy in [silent, liar, refused] {
        let socks: keepwire::socks::Socks5 = proxy.to_string().parse().unwrap();
        let t = std::time::Instant::now();
        let e = socks
            .connect("127.0.0.1:9", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{proxy}: {:?}",
            t.elapsed()
        );
        assert!(e.to_string().contains(&proxy.to_string()), "{e}");
    }
}

/// A ClientHello trickled a byte at a time is cut at the handshake timeout: the timeout
/// bounds the whole handshake, not each read.
#[tokio::test]
async fn trickled_client_hello_is_cut_at_the_handshake_timeout() {
    let pki = Pki::new();
    let mut cfg = server_cfg(&pki);
    cfg.handshake_timeout = Duration::from_millis(400);
    let srv = echo_server(cfg).await;
    // A real ClientHello, from a rustls client that never sends it itself.
    let name = "localhost".try_into().unwrap();
    let mut tls =
        rustls::ClientConnection::new(Arc::clone(pki.client_tls(false).config()), name).unwrap();
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).unwrap();
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let t = tokio::time::Instant::now();
    let mut closed = false;
    // The scenario is a slow peer: one byte per 20 ms, for at most 5 s.
    for b in hello.iter().cycle().take(250) {
        if tcp.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut x = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(20), tcp.read(&mut x)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    let took = t.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(took >= Duration::from_millis(350), "cut after {took:?}");
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
}

/// Stalled handshakes hold connection slots: the cap still applies, and a slot comes back
/// when a stalled one is cut.
#[tokio::test]
async fn stalled_handshakes_count_against_the_connection_cap() {
    let pki = Pki::new();
    let mut cfg = server_cfg(&pki);
    cfg.max_conns = 3;
    cfg.handshake_timeout = Duration::from_millis(500);
    let srv = echo_server(cfg).await;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(common::Client::connect(srv.addr, "len:be:2").await);
    }
    // The fourth is refused (reset) while the three stall.
    let t = std::time::Instant::now();
    if let Ok(mut extra) = TcpStream::connect(srv.addr).await {
        let mut x = [0u8; 16];
        let r = tokio::time::timeout(SOON, extra.read(&mut x)).await;
        assert!(matches!(r, Ok(Ok(0) | Err(_))), "{r:?}");
    }
    let took = t.elapsed();
    assert!(took < Duration::from_millis(400), "refused after {took:?}");
    // The stalled ones are cut at the timeout; then a real client gets in.
    for s in &mut stalled {
        s.closed_within(SOON).await;
    }
    let mut c = Raw::connect(&pki, srv.addr).await;
    let f = frame(b"after");
    let wire = c.seal(&f, usize::MAX);
    c.tcp.write_all(&wire).await.unwrap();
    assert_eq!(c.expect(f.len()).await, f);
}

/// Mutual TLS with an expired client certificate from the trusted CA: refused, the cause
/// named, no request reaches the handler.
#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let pki = Pki::new();
    let mut cfg = server_cfg(&pki);
    cfg.tls = Some(pki.server_tls(true));
    let mut srv = echo_server(cfg).await;
    let old = pki.client_ca.leaf(&[], "atm-old", true);
    let tls = keepwire::tls::ClientTls::builder()
        .ca_certs(vec![pki.ca.der()])
        .identity(old.chain(), old.key_der())
        .build()
        .unwrap();
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let err = match tls.connect(tcp, &srv.addr.to_string(), SOON).await {
        Err(e) => e,
        Ok(s) => {
            let mut c = tls_common::Framed::new(s, "len:be:2");
            let _ = c.send(b"hello").await;
            keepwire::tls::TlsError::from_io("client", c.recv().await.expect_err("refused"))
        }
    };
    assert!(
        err.is_expired() && err.to_string().contains("expired"),
        "{err}"
    );
    assert!(
        srv.seen.try_recv().is_err(),
        "no request reached the handler"
    );
}

/// `PeerCert` on hostile DER: truncations of a real certificate at every offset, indefinite
/// and over-long lengths, deep nesting, a huge subject. No panic; the subject stays short.
#[test]
fn peer_cert_parser_survives_hostile_der() {
    use keepwire::tls::PeerCert;
    let pki = Pki::new();
    let real = pki.client.chain()[0].to_vec();
    let subject = |der: Vec<u8>| PeerCert::from_der(der.into()).subject().len();
    for cut in 0..real.len() {
        assert!(subject(real[..cut].to_vec()) <= 1024);
    }
    for i in 0..real.len() {
        for b in [0x00, 0x80, 0x84, 0x85, 0xff] {
            let mut d = real.clone();
            d[i] = b;
            assert!(subject(d) <= 1024);
        }
    }
    let mut nested = Vec::new();
    for _ in 0..10_000 {
        nested.extend([0x30, 0x80]);
    }
    assert!(subject(nested) <= 1024);
    assert!(subject(vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff]) <= 1024);
    // A name of 2 000 RDNs of 30 bytes each: formatted, then cut.
    let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    for i in 0..2000 {
        dn.push(
            rcgen::DnType::CustomDnType(vec![2, 5, 4, 1000 + i]),
            "y".repeat(30),
        );
    }
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().unwrap();
    let huge = params.self_signed(&key).unwrap().der().to_vec();
    let n = subject(huge);
    assert!(n > 0 && n <= 1024, "{n}");
}

/// A close_notify without a FIN (the TCP side left open) ends the connection as a FIN
/// would: the server closes at once, after answering what came before it.
#[tokio::test]
async fn close_notify_without_fin_closes_the_connection() {
    let pki = Pki::new();
    let cfg = server_cfg(&pki);
    let srv = echo_server(cfg).await;
    for request in [&b""[..], b"bye"] {
        let mut c = Raw::connect(&pki, srv.addr).await;
        let mut wire = if request.is_empty() {
            Vec::new()
        } else {
            c.seal(&frame(request), usize::MAX)
        };
        c.tls.send_close_notify();
        wire.extend(c.take_out());
        c.tcp.write_all(&wire).await.unwrap();
        let t = std::time::Instant::now();
        let want = if request.is_empty() {
            0
        } else {
            request.len() + 2
        };
        let got = c.expect(usize::MAX).await;
        assert_eq!(got.len(), want, "{got:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
}

/// A drain that starts while a request's record is half read (the rest still on its way)
/// waits for the rest and answers it, as it does a frame half read without TLS: the half
/// record sits in rustls, not in the read buffer, and must count as a request begun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_a_record_half_read() {
    let pki = Pki::new();
    let mut cfg = server_cfg(&pki);
    cfg.shutdown_grace = Duration::from_secs(8);
    let srv = common::start(cfg, "127.0.0.1:0", None).await;
    let mut c = Raw::connect(&pki, srv.addr).await;
    let f = frame(b"half a record, then a drain");
    let wire = c.seal(&f, usize::MAX);
    let local = c.tcp.local_addr().unwrap();
    c.tcp.write_all(&wire[..10]).await.unwrap();
    common::eventually("server read the half record", || {
        queues::server_has_read(local, srv.addr)
    })
    .await;
    srv.stop.cancel();
    // The listener closing shows the drain has begun.
    common::eventually("listener closed", || {
        std::net::TcpStream::connect_timeout(&srv.addr, Duration::from_millis(200)).is_err()
    })
    .await;
    // Written only if the server has not closed: a closed socket would reset it.
    let _ = c.tcp.write_all(&wire[10..]).await;
    assert_eq!(c.expect(f.len()).await, f);
}

/// Bytes after the peer's close_notify, in the same socket read: rustls' `read_tls` then
/// takes nothing more (RFC 8446 §6.1: data after a closure alert is ignored), and a loop
/// that fed it until the input was empty spun forever on a runtime thread. The scenario
/// runs on a runtime of its own in a thread, so a hang fails the test instead of hanging it.
#[test]
fn bytes_after_close_notify_do_not_freeze_the_server() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pki = Pki::new();
            let srv = echo_server(server_cfg(&pki)).await;
            let mut c = Raw::connect(&pki, srv.addr).await;
            let f = frame(b"before the alert");
            let mut wire = c.seal(&f, usize::MAX);
            c.tls.send_close_notify();
            wire.extend(c.take_out());
            // More than rustls reads in one call, so it is asked again after the alert.
            wire.extend(std::iter::repeat_n(0x17u8, 9000));
            c.tcp.write_all(&wire).await.unwrap();
            let got = c.expect(usize::MAX).await;
            let _ = done_tx.send(got == f);
        });
        // A frozen worker would keep this runtime from shutting down: leave it.
        std::mem::forget(rt);
    });
    let answered = done_rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the server froze on bytes after close_notify");
    assert!(answered, "the request before the alert was not answered");
}

/// A bad frame answered by the framing (HTTP's 400) over TLS: the answer, then our
/// close_notify, then the FIN, as on every other close we make. The close_notify came after
/// the FIN before (and so never arrived): the peer saw a truncated connection.
#[tokio::test]
async fn an_error_reply_over_tls_ends_with_close_notify() {
    let pki = Pki::new();
    let mut cfg = ServerConfig::new(spec("http"));
    cfg.tls = Some(pki.server_tls(false));
    let srv = echo_server(cfg).await;
    let mut c = Raw::connect(&pki, srv.addr).await;
    let wire = c.seal(b"NOT A REQUEST\r\n\r\n", usize::MAX);
    c.tcp.write_all(&wire).await.unwrap();
    let got = c.expect(usize::MAX).await;
    assert!(
        got.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // At EOF rustls tells a clean close (close_notify seen: Ok(0)) from a truncation.
    let mut one = [0u8; 1];
    let end = c.tls.reader().read(&mut one);
    assert!(
        matches!(end, Ok(0)),
        "no close_notify before the FIN: {end:?}"
    );
}
