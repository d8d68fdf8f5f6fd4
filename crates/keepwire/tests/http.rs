//! HTTP/1.x over real loopback sockets: the server's persistence rules, its error
//! responses, the drain's `Connection: close`, and the client's reuse rule.

use std::time::Duration;

use keepwire::http::{HttpClient, HttpReply, HttpService, KeepAlive};
use keepwire::server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(10);

async fn web(
    max_requests: u64,
) -> (
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let server = Server::bind("127.0.0.1:0", ServerConfig::new("http".parse().unwrap()))
        .await
        .unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    let mut ka = KeepAlive::default();
    ka.max_requests = max_requests;
    let svc = HttpService::new(HttpReply::Echo, "text/plain", ka);
    let task = tokio::spawn(async move {
        server.serve(svc).await.unwrap();
    });
    (addr, stop, task)
}

async fn read_to_close(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, c.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_client_reuses_a_connection_only_while_responses_allow_it() {
    let (addr, stop, task) = web(0).await;
    let mut client = HttpClient::new(addr, LIMIT);
    let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for _ in 0..3 {
        assert_eq!(client.request(get).await.unwrap().head.status, 200);
    }
    assert_eq!(client.connections_opened(), 1);
    // HTTP/1.0 without keep-alive: the response says close, the next request reconnects.
    let old = b"GET / HTTP/1.0\r\n\r\n";
    let r = client.request(old).await.unwrap();
    assert!(!r.head.allows_reuse());
    assert!(!client.is_connected());
    client.request(get).await.unwrap();
    assert_eq!(client.connections_opened(), 2);
    // Our own Connection: close drops the connection too.
    client
        .request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(!client.is_connected());
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn keepalive_requests_makes_the_client_reconnect() {
    let (addr, stop, task) = web(2).await;
    let mut client = HttpClient::new(addr, LIMIT);
    for _ in 0..4 {
        client
            .request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
    }
    assert_eq!(client.connections_opened(), 2);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_head_has_no_body() {
    let (addr, stop, task) = web(0).await;
    let mut client = HttpClient::new(addr, LIMIT);
    let reqs: [&[u8]; 3] = [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\none",
        b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nthr\r\n2\r\nee\r\n0\r\n\r\n",
    ];
    let all = client.pipeline(&reqs).await.unwrap();
    let bodies: Vec<&[u8]> = all.iter().map(|r| &r.head.body[..]).collect();
    assert_eq!(bodies, [&b"one"[..], b"", b"three"]);
    assert_eq!(client.connections_opened(), 1);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_smuggling_shape_is_answered_400_and_closed() {
    let (addr, stop, task) = web(0).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let resp = read_to_close(&mut c).await;
    assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{resp}");
    drop(c);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn drain_answers_the_request_in_flight_with_connection_close() {
    let (addr, stop, task) = web(0).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    // One whole request before the drain: kept alive.
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let want = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n";
    let mut first = [0u8; 64];
    tokio::time::timeout(LIMIT, c.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], &want[..]);
    // Half a request, then the drain, then the rest: answered with a close.
    c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    stop.cancel();
    c.write_all(b"Host: a\r\n\r\n").await.unwrap();
    let resp = read_to_close(&mut c).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("Connection: close\r\n"), "{resp}");
    drop(c);
    task.await.unwrap();
}
