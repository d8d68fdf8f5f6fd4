//! Prometheus metrics over HTTP: `metrics-exporter-prometheus` records and renders, hyper's
//! HTTP/1 server answers scrapes on a listener bound here.
//!
//! [`Server::export_prometheus`] binds the listener and installs the exporter's recorder as
//! this process's `metrics` recorder; [`Server::serve`] runs the listener next to the
//! connections, copies [`ServerStats`] into the recorder every [`PUBLISH_INTERVAL`], and stops
//! it (and every scrape connection) once the shutdown has drained: scrapes watch the drain.
//!
//! A scrape is bounded here rather than by the exporter's own listener, which has no
//! connection cap and no read timeout:
//!
//! | bound | value | on excess |
//! |---|---|---|
//! | scrape connections open at once | 16 | the next waits in the kernel's backlog (the permit is taken before `accept`) |
//! | request head | 5 s from accept | connection closed (hyper's `header_read_timeout`) |
//! | whole connection | 10 s | connection closed |
//! | requests per connection | 1 | keep-alive is off: the response ends the connection |
//! | request head size | hyper's read buffer (about 400 KiB), 100 headers | `431` / connection closed |
//!
//! Only `GET` (and `HEAD`) is answered: `/health` with `OK`, any other path with one render
//! of the registry (a few KiB for a server's counters); other methods get `405`.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Server, ServerError, ServerStats};

/// How often a running exporter copies the server's counters into the recorder, so a scrape
/// shows them at most this old.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// What bounds the scrapes one exporter serves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScrapeLimits {
    /// Scrape connections open at once; the next waits in the backlog.
    max_connections: usize,
    /// From accept to a complete request head (hyper's `header_read_timeout`).
    header_timeout: Duration,
    /// From accept to the connection's end, whatever it does.
    connection_timeout: Duration,
}

impl ScrapeLimits {
    /// The limits `export_prometheus` uses: 16 connections, 5 s for the head, 10 s in all.
    const DEFAULT: ScrapeLimits = ScrapeLimits {
        max_connections: 16,
        header_timeout: Duration::from_secs(5),
        connection_timeout: Duration::from_secs(10),
    };
}

/// The metrics listener, bound and waiting to be run.
pub(crate) struct Exporter {
    listener: TcpListener,
    handle: PrometheusHandle,
    limits: ScrapeLimits,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporter")
            .field("listener", &self.listener)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Serves scrapes and publishes `stats` every [`PUBLISH_INTERVAL`] until `stop`; then
    /// aborts the scrape connections still open and waits for them.
    pub(crate) async fn run(self, stats: Arc<ServerStats>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let permits = Arc::new(Semaphore::new(self.limits.max_connections));
        let mut conns: JoinSet<()> = JoinSet::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    stats.publish();
                    self.handle.run_upkeep();
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = accept(&self.listener, &permits) => {
                    let Some((stream, permit)) = accepted else { break };
                    let handle = self.handle.clone();
                    conns.spawn(scrape(stream, handle, self.limits, permit));
                }
            }
        }
        conns.shutdown().await;
    }
}

/// Takes a connection permit, then accepts one connection. Accept errors (e.g. out of file
/// descriptors) are retried after a pause; `None` when the semaphore is closed, which does not
/// happen while `run` holds it.
///
/// Cancel safety: a permit taken and dropped with the future is returned; `accept` itself is
/// cancel safe.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    let permit = Arc::clone(permits).acquire_owned().await.ok()?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return Some((stream, permit)),
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one scrape connection within `limits`, holding `permit` until it ends.
async fn scrape(
    stream: TcpStream,
    handle: PrometheusHandle,
    limits: ScrapeLimits,
    permit: OwnedSemaphorePermit,
) {
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let response = answer(req.method(), req.uri().path(), &handle);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), svc);
    match tokio::time::timeout(limits.connection_timeout, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics scrape connection failed"),
        Err(_) => tracing::debug!("metrics scrape connection over its time cap: closed"),
    }
    drop(permit);
}

/// The response to one request: `GET`/`HEAD` only; `/health` is `OK`, any other path the
/// rendered registry.
fn answer(method: &Method, path: &str, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = Response::new(Full::new(Bytes::from_static(b"only GET is served\n")));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let (body, content_type) = if path == "/health" {
        (Bytes::from_static(b"OK"), "text/plain")
    } else {
        (Bytes::from(handle.render()), "text/plain; version=0.0.4")
    };
    let mut r = Response::new(Full::new(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Why the exporter could not start, besides the bind error itself.
#[derive(Debug)]
enum ExporterError {
    NoAddress,
    RecorderInstalled,
}

impl fmt::Display for ExporterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExporterError::NoAddress => "the name resolved to no address",
            ExporterError::RecorderInstalled => {
                "a metrics recorder is already installed in this process"
            }
        })
    }
}

impl std::error::Error for ExporterError {}

/// Binds the first address of `addr` that can be bound.
async fn bind(addr: impl ToSocketAddrs) -> Result<TcpListener, ServerErrorSource> {
    let mut last: Option<io::Error> = None;
    for a in tokio::net::lookup_host(addr).await? {
        match TcpListener::bind(a).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => e.into(),
        None => ExporterError::NoAddress.into(),
    })
}

type ServerErrorSource = Box<dyn std::error::Error + Send + Sync>;

impl Server {
    /// Serves the server's counters for Prometheus on `addr` (`GET` on any path; `/health`
    /// answers `OK`) while [`serve`](Self::serve) runs. The address is bound now, so a bad one
    /// fails before the server is announced, and port 0 picks a free port: the bound address
    /// is returned. The listener and the publishing of the counters start with `serve` and
    /// stop when its shutdown has drained (scrapes during the drain are answered). Scrapes show the counters at most [`PUBLISH_INTERVAL`] old.
    ///
    /// Scrapes are bounded: at most 16 connections at once (the next waits in the backlog),
    /// 5 s from accept to a complete request head, 10 s per connection in all, one request per
    /// connection, and hyper's cap on a request head (about 400 KiB, 100 headers). Each
    /// response is one render of the registry (a few KiB).
    ///
    /// This installs the process-wide `metrics` recorder: one exporting server per process.
    ///
    /// # Errors
    /// [`ServerError::Metrics`]: `addr` does not resolve or cannot be bound, or a recorder is
    /// already installed.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn export_prometheus(
        &mut self,
        addr: impl ToSocketAddrs + fmt::Display,
    ) -> Result<SocketAddr, ServerError> {
        let shown = addr.to_string();
        let fail = |source: ServerErrorSource| ServerError::Metrics {
            addr: shown.clone(),
            source,
        };
        let listener = bind(addr).await.map_err(fail)?;
        let local = listener.local_addr().map_err(|e| fail(e.into()))?;
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)
            .map_err(|_| fail(ExporterError::RecorderInstalled.into()))?;
        self.exporter = Some(Exporter {
            listener,
            handle,
            limits: ScrapeLimits::DEFAULT,
        });
        Ok(local)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use metrics_exporter_prometheus::PrometheusRecorder;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Short enough for a test, long enough that a loaded machine sends a request in time.
    const HEADER_TIMEOUT: Duration = Duration::from_millis(300);
    /// Bounded wait for anything the exporter should do well within its limits.
    const WAIT: Duration = Duration::from_secs(10);

    struct Running {
        addr: SocketAddr,
        recorder: Arc<PrometheusRecorder>,
        stats: Arc<ServerStats>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    /// An exporter on 127.0.0.1:0 with a local (not global) recorder.
    async fn start(max_connections: usize) -> Running {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorder = Arc::new(PrometheusBuilder::new().build_recorder());
        let exporter = Exporter {
            listener,
            handle: recorder.handle(),
            limits: ScrapeLimits {
                max_connections,
                header_timeout: HEADER_TIMEOUT,
                connection_timeout: WAIT,
            },
        };
        let stats = Arc::new(ServerStats::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(exporter.run(Arc::clone(&stats), stop.clone()));
        Running {
            addr,
            recorder,
            stats,
            stop,
            task,
        }
    }

    /// Sends `request` and reads the whole response (the server closes after one).
    async fn fetch(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, s.read_to_end(&mut out))
            .await
            .expect("response within the bounded wait")
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
    }

    #[tokio::test]
    async fn a_scrape_shows_the_counters_and_health_is_ok() {
        let r = start(16).await;
        r.stats.accepted.store(7, Ordering::Relaxed);
        metrics::with_local_recorder(r.recorder.as_ref(), || r.stats.publish());
        let body = fetch(r.addr, &get("/metrics")).await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(
            body.contains("keepwire_connections_accepted_total 7"),
            "{body}"
        );
        let health = fetch(r.addr, &get("/health")).await;
        assert!(
            health.starts_with("HTTP/1.1 200") && health.ends_with("OK"),
            "{health}"
        );
        let post = fetch(r.addr, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        r.stop.cancel();
        tokio::time::timeout(WAIT, r.task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_header_timeout() {
        let r = start(16).await;
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        let t0 = Instant::now();
        // hyper answers a head timeout with a bare close (or a 408): either way the read ends.
        let mut out = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
            .await
            .expect("closed within the bounded wait");
        let took = t0.elapsed();
        assert!(
            took >= HEADER_TIMEOUT - Duration::from_millis(50),
            "{took:?}"
        );
        assert!(took < HEADER_TIMEOUT * 10, "{took:?}");
        r.stop.cancel();
        tokio::time::timeout(WAIT, r.task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn idle_connections_over_the_cap_do_not_starve_a_scrape() {
        let cap = 2;
        let r = start(cap).await;
        // Twice the cap of silent connections: the first `cap` hold every permit, the rest
        // wait in the backlog, and each is closed by the header timeout in turn.
        let mut idle = Vec::new();
        for _ in 0..cap * 2 {
            idle.push(TcpStream::connect(r.addr).await.unwrap());
        }
        let t0 = Instant::now();
        let body = fetch(r.addr, &get("/metrics")).await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        // Answered only after the silent ones made room: the cap held.
        assert!(t0.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(50));
        r.stop.cancel();
        tokio::time::timeout(WAIT, r.task).await.unwrap().unwrap();
    }

    /// Slowloris: a head trickled a byte at a time does not renew the head timeout.
    #[tokio::test]
    async fn a_trickled_head_is_cut_at_the_header_timeout() {
        let r = start(16).await;
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(HEADER_TIMEOUT / 10);
        let head =
            b"GET /metrics HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut cut = false;
        for b in head.iter().cycle().take(1000) {
            tick.tick().await;
            if s.write_all(&[*b]).await.is_err() || t0.elapsed() > WAIT {
                cut = true;
                break;
            }
            let mut buf = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::ZERO, s.read(&mut buf)).await
            {
                cut = true;
                break;
            }
        }
        let took = t0.elapsed();
        assert!(cut, "still open after {took:?}");
        assert!(took < HEADER_TIMEOUT * 10, "{took:?}");
        r.stop.cancel();
        tokio::time::timeout(WAIT, r.task).await.unwrap().unwrap();
    }

    /// A head of megabytes is refused at hyper's buffer cap, and the next scrape is served.
    #[tokio::test]
    async fn a_huge_head_is_refused_and_the_next_scrape_served() {
        let r = start(16).await;
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        let mut head = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        head.resize(4 * 1024 * 1024, b'a');
        // The server stops reading at its cap: the write may fail part way.
        let _ = tokio::time::timeout(WAIT, s.write_all(&head)).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
            .await
            .expect("answered or closed within the bounded wait");
        let out = String::from_utf8_lossy(&out);
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 431"), "{out}");
        let body = fetch(r.addr, &get("/health")).await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        r.stop.cancel();
        tokio::time::timeout(WAIT, r.task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_stops_open_scrape_connections() {
        let r = start(16).await;
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        // A head in progress: the connection is open in a scrape task.
        s.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        r.stop.cancel();
        tokio::time::timeout(HEADER_TIMEOUT, r.task)
            .await
            .expect("run ends at stop, before the header timeout")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
}
