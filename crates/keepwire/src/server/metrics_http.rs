//! A minimal Prometheus scrape endpoint: `GET /metrics` (any path) answered with the text
//! exposition format. Hand-written rather than pulling an HTTP server into the library: it
//! reads one bounded request head and writes one response, then closes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::ServerStats;

/// The largest request head read from a scraper.
const MAX_HEAD: usize = 8 * 1024;

/// Installs the Prometheus recorder for the `metrics` facade and serves it on `listener`
/// until `stop` is cancelled. Each scrape first publishes `stats`.
///
/// # Errors
/// A recorder is already installed in this process.
///
/// # Cancel safety
/// Cancel-safe: dropping the future stops serving.
pub async fn serve_prometheus(
    listener: TcpListener,
    stats: Arc<ServerStats>,
    stop: CancellationToken,
) -> Result<(), String> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    loop {
        let (mut sock, _) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        stats.publish();
        let body = handle.render();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                    let n = sock.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(chunk.get(..n).unwrap_or_default());
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
