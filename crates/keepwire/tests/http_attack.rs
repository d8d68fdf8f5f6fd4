//! Hostile review of the HTTP/1.x framing and persistence (issue 14): each test failed on
//! the code it was written against, or covers a scenario no other test did. Real loopback
//! sockets against `Server` + `HttpService`.

use std::time::Duration;

use keepwire::http::{HttpReply, HttpService, KeepAlive};
use keepwire::server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(10);

async fn web() -> (
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let server = Server::bind("127.0.0.1:0", ServerConfig::new("http".parse().unwrap()))
        .await
        .unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    let svc = HttpService::new(HttpReply::Echo, "text/plain", KeepAlive::default());
    let task = tokio::spawn(async move {
        server.serve(svc).await.unwrap();
    });
    (addr, stop, task)
}

/// Writes `raw` and reads until the server closes (bounded).
async fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, c.read_to_end(&mut out))
        .await
        .expect("the server closes after its 400")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
/// HTTP/1.1 request message that lacks a Host header field and to any request message that
/// contains more than one Host header field line". Before: 200 and the connection kept.
#[tokio::test]
async fn a_missing_or_repeated_host_gets_400_and_a_close() {
    let (addr, stop, task) = web().await;
    for raw in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
    ] {
        let resp = exchange(addr, raw).await;
        assert!(
            resp.starts_with("HTTP/1.1 400 Bad Request\r\n") && resp.contains("Connection: close"),
            "{raw:?} -> {resp:?}"
        );
    }
    // HTTP/1.0 needs no Host; one Host is fine either way.
    for raw in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ] {
        let resp = exchange(addr, raw).await;
        assert!(
            resp.starts_with("HTTP/1.1 200 OK\r\n"),
            "{raw:?} -> {resp:?}"
        );
    }
    stop.cancel();
    task.await.unwrap();
}

/// RFC 9110 §10.1.1: a server that receives `Expect: 100-continue` "ought to" send 100
/// (Continue) before it reads the content; curl waits a second for it before sending a
/// body over 1 KiB. Before: nothing came until the body did.
#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let (addr, stop, task) = web().await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .await
        .unwrap();
    let want = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0; want.len()];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut got))
        .await
        .expect("100 Continue before the body is sent")
        .unwrap();
    assert_eq!(got, want);
    c.write_all(
        b"hiGET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    // The final response to the first; no second 100 for a request without a body.
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest:?}");
    assert!(rest.contains("\r\n\r\nhiHTTP/1.1 200 OK\r\n"), "{rest:?}");
    assert_eq!(rest.matches("100 Continue").count(), 0, "{rest:?}");
    stop.cancel();
    task.await.unwrap();
}
