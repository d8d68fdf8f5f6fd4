//! The blocking side of TLS: `blocking::tls_connect` (rustls' `StreamOwned`) under
//! `FrameReader`/`FrameWriter`, against the async TLS server.

mod common;
mod tls_common;

use std::time::{Duration, Instant};

use common::{echo_server, spec};
use keepwire::blocking::{FrameReader, FrameWriter, tls_connect};
use keepwire::server::ServerConfig;
use keepwire::tls::ClientTls;
use tls_common::{Ca, Pki};

fn tls_server_config(pki: &Pki, mutual: bool) -> ServerConfig {
    let mut cfg = ServerConfig::new(spec("len:be:2"));
    cfg.tls = Some(pki.server_tls(mutual));
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_frames_over_rustls_stream_owned() {
    let pki = Pki::new();
    let mut srv = echo_server(tls_server_config(&pki, true)).await;
    let (addr, tls) = (srv.addr, pki.client_tls(true));
    let replies = tokio::task::spawn_blocking(move || {
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        let s = tls_connect(tcp, &tls, &addr.to_string(), Duration::from_secs(10)).unwrap();
        let mut w = FrameWriter::new(s, spec("len:be:2"));
        let mut out = Vec::new();
        for msg in [&b"one"[..], b"two"] {
            w.write_frame(msg).unwrap();
            let mut r = FrameReader::new(w.into_inner(), spec("len:be:2"));
            out.push(r.read_frame().unwrap().unwrap());
            w = FrameWriter::new(r.into_parts().0, spec("len:be:2"));
        }
        out
    })
    .await
    .unwrap();
    assert_eq!(replies, [&b"one"[..], b"two"]);
    let req = srv.seen.recv().await.unwrap();
    assert_eq!(req.peer_cert.unwrap().subject(), "CN=atm-17");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_handshake_names_an_unknown_ca() {
    let pki = Pki::new();
    let srv = echo_server(tls_server_config(&pki, false)).await;
    let addr = srv.addr;
    let e = tokio::task::spawn_blocking(move || {
        let tls = ClientTls::builder()
            .ca_certs(vec![Ca::new("other").der()])
            .build()
            .unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tls_connect(tcp, &tls, &addr.to_string(), Duration::from_secs(10)).unwrap_err()
    })
    .await
    .unwrap();
    assert!(
        e.is_unknown_ca() && e.to_string().contains("unknown CA"),
        "{e}"
    );
}

#[test]
fn blocking_handshake_with_a_silent_server_times_out() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let tls = Pki::new().client_tls(false);
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    let e = tls_connect(tcp, &tls, &addr.to_string(), Duration::from_millis(300)).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(l);
}
