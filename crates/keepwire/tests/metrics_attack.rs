//! Hostile review of the Prometheus listener (`Server::export_prometheus`) over real
//! loopback sockets: each test here failed on the code it was written against.
//!
//! One test per binary: the exporter installs the process-wide `metrics` recorder.

use std::convert::Infallible;
use std::time::Duration;

use keepwire::server::{Request, Server, ServerConfig, service_fn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

/// Bounded wait for anything that should happen well within it.
const SOON: Duration = Duration::from_secs(10);

/// One `GET path` on a fresh connection; the whole response (the server closes after one).
async fn scrape(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(SOON, s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no response within the bounded wait"))??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The exporter stopped at the shutdown signal, so the drain (up to the grace period, 10 s
/// by default) was invisible: a scrape during it was refused, and the last counters
/// (connections still open, closed by force) were never shown. It now stops after the
/// drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_are_answered_during_the_drain() {
    let mut cfg = ServerConfig::new("len:ascii:4".parse().unwrap());
    cfg.shutdown_grace = SOON;
    let mut server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let metrics = server.export_prometheus("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    let (seen_tx, mut seen) = mpsc::channel(1);
    let release = std::sync::Arc::new(Notify::new());
    let hold = std::sync::Arc::clone(&release);
    let handler = service_fn(move |req: Request| {
        let seen_tx = seen_tx.clone();
        let hold = std::sync::Arc::clone(&hold);
        async move {
            let _ = seen_tx.send(()).await;
            hold.notified().await;
            Ok::<_, Infallible>(Some(req.frame))
        }
    });
    let task = tokio::spawn(server.serve(handler));

    // A request in the handler keeps the drain going.
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"0004busy").await.unwrap();
    tokio::time::timeout(SOON, seen.recv()).await.unwrap();
    stop.cancel();

    let during = scrape(metrics, "/metrics").await;
    let during = during.unwrap_or_else(|e| format!("refused: {e}"));
    assert!(during.starts_with("HTTP/1.1 200"), "{during}");

    // The request ends, the drain ends, the exporter stops with the server.
    release.notify_one();
    let mut reply = [0u8; 8];
    tokio::time::timeout(SOON, busy.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply, b"0004busy");
    let report = tokio::time::timeout(SOON, task)
        .await
        .expect("serve ends once drained")
        .unwrap()
        .unwrap();
    assert_eq!(report.force_closed, 0);
    assert!(
        scrape(metrics, "/health").await.is_err(),
        "exporter stopped"
    );
}
