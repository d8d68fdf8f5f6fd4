//! Hostile review of the server's connection changes: the client-asked close judged by
//! tokio's read readiness, per-IP caps under churn, socket options inherited from the
//! listener. Real loopback sockets.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::mpsc;
use std::time::Duration;

use keepwire::http::{HttpReply, HttpService, KeepAlive};
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
