//! TLS on the server: round trips with certificates made here (rcgen), mutual TLS and the
//! peer's subject, the failure causes in words, a stalled handshake cut at the timeout,
//! heartbeats and idle reaping over TLS, PROXY v2 before TLS.

mod common;
mod tls_common;

use std::time::Duration;

use common::{SOON, echo_server, spec};
use keepwire::server::ServerConfig;
use keepwire::tls::{ClientTls, TlsError};
use tls_common::{Ca, Framed, Pki};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn tls_config(pki: &Pki, mutual: bool) -> ServerConfig {
    let mut cfg = ServerConfig::new(spec("len:be:2"));
    cfg.tls = Some(pki.server_tls(mutual));
    cfg
}

async fn connect(
    tls: &ClientTls,
    addr: std::net::SocketAddr,
) -> Result<Framed<tokio_rustls::client::TlsStream<TcpStream>>, TlsError> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let s = tls.connect(tcp, &addr.to_string(), SOON).await?;
    Ok(Framed::new(s, "len:be:2"))
}

#[tokio::test]
async fn mutual_tls_round_trip_shows_the_client_subject() {
    let pki = Pki::new();
    let mut srv = echo_server(tls_config(&pki, true)).await;
    let mut c = connect(&pki.client_tls(true), srv.addr).await.unwrap();
    for msg in [&b"hello"[..], b"0800", &[7u8; 1000][..]] {
        c.send(msg).await.unwrap();
        assert_eq!(c.recv().await.unwrap().as_deref(), Some(msg));
    }
    let req = srv.seen.recv().await.unwrap();
    let cert = req
        .peer_cert
        .expect("the handler sees the client certificate");
    assert_eq!(cert.subject(), "CN=atm-17");
    assert_eq!(cert.der(), &pki.client.chain()[0]);
}

#[tokio::test]
async fn frames_larger_than_a_record_and_pipelined_bursts() {
    let pki = Pki::new();
    let mut cfg = ServerConfig::new(spec("len:be:4"));
    cfg.tls = Some(pki.server_tls(false));
    let srv = echo_server(cfg).await;
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let s = pki
        .client_tls(false)
        .connect(tcp, "localhost:1", SOON)
        .await
        .unwrap();
    let mut c = Framed::new(s, "len:be:4");
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    c.send(&big).await.unwrap();
    assert_eq!(c.recv().await.unwrap().as_deref(), Some(&big[..]));
    // 200 small frames in one write: answered in order.
    let mut burst = Vec::new();
    for i in 0..200u32 {
        let body = i.to_be_bytes();
        burst.extend_from_slice(&4u32.to_be_bytes());
        burst.extend_from_slice(&body);
    }
    c.io.write_all(&burst).await.unwrap();
    c.io.flush().await.unwrap();
    for i in 0..200u32 {
        assert_eq!(
            c.recv().await.unwrap().as_deref(),
            Some(&i.to_be_bytes()[..])
        );
    }
}

#[tokio::test]
async fn server_cert_from_another_ca_is_unknown_ca() {
    let pki = Pki::new();
    let srv = echo_server(tls_config(&pki, false)).await;
    let other = Ca::new("someone else");
    let tls = ClientTls::builder()
        .ca_certs(vec![other.der()])
        .build()
        .unwrap();
    let e = connect(&tls, srv.addr).await.err().unwrap();
    assert!(e.is_unknown_ca(), "{e}");
    assert!(e.to_string().contains("unknown CA"), "{e}");
}

#[tokio::test]
async fn wrong_server_name_is_name_mismatch() {
    let pki = Pki::new();
    let srv = echo_server(tls_config(&pki, false)).await;
    let tls = ClientTls::builder()
        .ca_certs(vec![pki.ca.der()])
        .server_name("bank.example")
        .build()
        .unwrap();
    let e = connect(&tls, srv.addr).await.err().unwrap();
    assert!(e.is_name_mismatch(), "{e}");
    assert!(e.to_string().contains("name mismatch"), "{e}");
}

#[tokio::test]
async fn expired_server_cert_is_expired() {
    let pki = Pki::new();
    let old = pki.ca.leaf(&["127.0.0.1"], "old", true);
    let mut cfg = ServerConfig::new(spec("len:be:2"));
    cfg.tls = Some(keepwire::tls::ServerTls::new(old.chain(), old.key_der(), None).unwrap());
    let srv = echo_server(cfg).await;
    let e = connect(&pki.client_tls(false), srv.addr)
        .await
        .err()
        .unwrap();
    assert!(e.is_expired(), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
}

#[tokio::test]
async fn missing_client_cert_is_no_client_certificate() {
    let pki = Pki::new();
    let mut srv = echo_server(tls_config(&pki, true)).await;
    // TLS 1.3: the client's handshake ends before the server checks its certificate, so
    // the refusal arrives as the server's alert on the first read.
    let err = match connect(&pki.client_tls(false), srv.addr).await {
        Err(e) => e,
        Ok(mut c) => {
            let _ = c.send(b"hello").await;
            TlsError::from_io("client", c.recv().await.expect_err("refused"))
        }
    };
    assert!(err.is_no_client_cert(), "{err}");
    assert!(err.to_string().contains("no client certificate"), "{err}");
    assert!(
        srv.seen.try_recv().is_err(),
        "no request reached the handler"
    );
}

#[tokio::test]
async fn client_cert_from_another_ca_is_refused() {
    let pki = Pki::new();
    let srv = echo_server(tls_config(&pki, true)).await;
    let stranger = Ca::new("stranger").leaf(&[], "mallory", false);
    let tls = ClientTls::builder()
        .ca_certs(vec![pki.ca.der()])
        .identity(stranger.chain(), stranger.key_der())
        .build()
        .unwrap();
    let err = match connect(&tls, srv.addr).await {
        Err(e) => e,
        Ok(mut c) => {
            let _ = c.send(b"hello").await;
            TlsError::from_io("client", c.recv().await.expect_err("refused"))
        }
    };
    assert!(err.is_unknown_ca(), "{err}");
    assert!(err.to_string().contains("unknown CA"), "{err}");
}

#[tokio::test]
async fn stalled_handshake_is_cut_at_the_timeout() {
    let pki = Pki::new();
    let mut cfg = tls_config(&pki, false);
    cfg.handshake_timeout = Duration::from_millis(300);
    let srv = echo_server(cfg).await;
    // Nothing at all, and half a ClientHello: both cut.
    for first in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut c = common::Client::connect(srv.addr, "len:be:2").await;
        c.send_raw(first).await.unwrap();
        let took = c.closed_within(SOON).await;
        assert!(took >= Duration::from_millis(250), "cut after {took:?}");
        assert!(took < Duration::from_secs(5), "cut after {took:?}");
    }
}

#[tokio::test]
async fn plain_bytes_to_a_tls_port_are_refused() {
    let pki = Pki::new();
    let mut srv = echo_server(tls_config(&pki, false)).await;
    let mut c = common::Client::connect(srv.addr, "len:be:2").await;
    c.send(b"hello").await;
    c.closed_within(SOON).await;
    assert!(srv.seen.try_recv().is_err());
}

#[tokio::test]
async fn heartbeats_answered_and_idle_reaped_over_tls() {
    let pki = Pki::new();
    let mut cfg = tls_config(&pki, false);
    cfg.liveness.read_idle = Some(Duration::from_millis(600));
    let srv = echo_server(cfg).await;
    let mut c = connect(&pki.client_tls(false), srv.addr).await.unwrap();
    c.send(b"data").await.unwrap();
    assert_eq!(c.recv().await.unwrap().as_deref(), Some(&b"data"[..]));
    // The empty frame is this link's heartbeat: answered with one, never handed on.
    c.send(b"").await.unwrap();
    assert_eq!(c.recv().await.unwrap().as_deref(), Some(&b""[..]));
    // Pings keep the link alive past the idle timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.send(b"").await.unwrap();
        assert_eq!(c.recv().await.unwrap().as_deref(), Some(&b""[..]));
    }
    // ...and silence ends it, with a close_notify (a clean EOF, not an error).
    let t = tokio::time::Instant::now();
    assert_eq!(c.recv().await.unwrap(), None);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    common::eventually("idle close counted", || {
        srv.stats.snapshot().idle_closed == 1
    })
    .await;
}

#[tokio::test]
async fn server_pings_an_idle_tls_client() {
    let pki = Pki::new();
    let mut cfg = tls_config(&pki, false);
    cfg.liveness.ping = Some(keepwire::liveness::PingConfig {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
        misses: 2,
    });
    let srv = echo_server(cfg).await;
    let mut c = connect(&pki.client_tls(false), srv.addr).await.unwrap();
    // The server's ping is the empty frame, encrypted.
    assert_eq!(c.recv().await.unwrap().as_deref(), Some(&b""[..]));
    // Unanswered, the server gives up on us.
    let mut frames = 1;
    while let Some(f) = c.recv().await.unwrap() {
        assert!(f.is_empty());
        frames += 1;
        assert!(frames < 20);
    }
    common::eventually("heartbeat timeout counted", || {
        srv.stats.snapshot().heartbeat_timeouts == 1
    })
    .await;
}

#[tokio::test]
async fn proxy_v2_header_then_tls() {
    let pki = Pki::new();
    let mut cfg = tls_config(&pki, true);
    cfg.proxy_protocol = true;
    let mut srv = echo_server(cfg).await;
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (
            "198.51.100.7:4242".parse::<std::net::SocketAddr>().unwrap(),
            srv.addr,
        ),
    )
    .build()
    .unwrap();
    tcp.write_all(&header).await.unwrap();
    let s = pki
        .client_tls(true)
        .connect(tcp, &srv.addr.to_string(), SOON)
        .await
        .unwrap();
    let mut c = Framed::new(s, "len:be:2");
    c.send(b"behind the balancer").await.unwrap();
    assert_eq!(
        c.recv().await.unwrap().as_deref(),
        Some(&b"behind the balancer"[..])
    );
    let req = srv.seen.recv().await.unwrap();
    assert_eq!(req.peer.to_string(), "198.51.100.7:4242");
    assert_eq!(req.peer_cert.unwrap().subject(), "CN=atm-17");
}

#[tokio::test]
async fn short_mode_over_tls_with_resumption() {
    let pki = Pki::new();
    let mut cfg = tls_config(&pki, false);
    cfg.mode = keepwire::server::Mode::Short;
    let srv = echo_server(cfg).await;
    let tls = pki.client_tls(false);
    let mut resumed = 0;
    for i in 0..4u8 {
        let mut c = connect(&tls, srv.addr).await.unwrap();
        if c.io.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            resumed += 1;
        }
        c.send(&[i]).await.unwrap();
        assert_eq!(c.recv().await.unwrap().as_deref(), Some(&[i][..]));
        c.io.shutdown().await.unwrap();
    }
    assert!(resumed >= 3, "only {resumed} of 4 handshakes resumed");
}

#[tokio::test]
async fn drain_answers_then_closes_with_close_notify() {
    let pki = Pki::new();
    let srv = echo_server(tls_config(&pki, false)).await;
    let mut c = connect(&pki.client_tls(false), srv.addr).await.unwrap();
    c.send(b"before").await.unwrap();
    assert_eq!(c.recv().await.unwrap().as_deref(), Some(&b"before"[..]));
    srv.stop.cancel();
    // A clean end: close_notify, then EOF (an error here would be a truncation).
    assert_eq!(c.recv().await.unwrap(), None);
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    assert_eq!(report.force_closed, 0);
}

fn tls_builder(pki: &Pki, addr: std::net::SocketAddr, id: bool) -> keepwire::client::ClientBuilder {
    common::builder("len:be:2", &[addr])
        .tls(pki.client_tls(id))
        .connect_timeout(SOON)
        .request_timeout(SOON)
}

#[tokio::test]
async fn every_client_type_speaks_tls() {
    use bytes::Bytes;
    let pki = Pki::new();
    let mut srv = echo_server(tls_config(&pki, true)).await;
    let long = tls_builder(&pki, srv.addr, true)
        .connect_long()
        .await
        .unwrap();
    for i in 0..3u8 {
        assert_eq!(
            long.request(Bytes::from(vec![i; 40_000])).await.unwrap(),
            vec![i; 40_000]
        );
    }
    let short = tls_builder(&pki, srv.addr, true).build_short();
    assert_eq!(
        &short.request(Bytes::from_static(b"short")).await.unwrap()[..],
        b"short"
    );
    assert_eq!(
        &short.request(Bytes::from_static(b"again")).await.unwrap()[..],
        b"again"
    );
    let mux = tls_builder(&pki, srv.addr, true)
        .connect_mux(keepwire::client::ByteRange::new(0, 4))
        .await
        .unwrap();
    let replies = futures_util::future::join_all(
        (0..50u32).map(|i| mux.request(Bytes::from(i.to_be_bytes().repeat(3)))),
    )
    .await;
    for (i, r) in (0..50u32).zip(replies) {
        assert_eq!(r.unwrap(), Bytes::from(i.to_be_bytes().repeat(3)));
    }
    let pool = tls_builder(&pki, srv.addr, true).pool(2).await.unwrap();
    assert_eq!(
        &pool.request(Bytes::from_static(b"pooled")).await.unwrap()[..],
        b"pooled"
    );
    let req = srv.seen.recv().await.unwrap();
    assert_eq!(req.peer_cert.unwrap().subject(), "CN=atm-17");
}

#[tokio::test]
async fn client_handshake_failures_name_the_cause_and_fail_over() {
    use bytes::Bytes;
    let pki = Pki::new();
    let srv = echo_server(tls_config(&pki, false)).await;
    let other = Ca::new("someone else");
    let e = common::builder("len:be:2", &[srv.addr])
        .tls(
            ClientTls::builder()
                .ca_certs(vec![other.der()])
                .build()
                .unwrap(),
        )
        .connect_long()
        .await
        .unwrap_err();
    assert!(
        e.is_connect() && e.to_string().contains("unknown CA"),
        "{e}"
    );
    // A server with the wrong certificate first, a good one second: the client moves on.
    let mut bad = tls_config(&pki, false);
    let stranger = other.leaf(&["127.0.0.1"], "stranger", false);
    bad.tls =
        Some(keepwire::tls::ServerTls::new(stranger.chain(), stranger.key_der(), None).unwrap());
    let bad = echo_server(bad).await;
    let c = common::builder("len:be:2", &[bad.addr, srv.addr])
        .tls(pki.client_tls(false))
        .connect_long()
        .await
        .unwrap();
    assert_eq!(
        &c.request(Bytes::from_static(b"hi")).await.unwrap()[..],
        b"hi"
    );
    let down = &c.endpoints()[0];
    assert!(!down.up);
    assert!(
        down.last_error
            .as_deref()
            .unwrap_or("")
            .contains("unknown CA"),
        "{down:?}"
    );
}
