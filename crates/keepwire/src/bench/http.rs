//! The bench patterns over HTTP/1.x (`--framing http`), against any web server.
//!
//! Every request is `GET / HTTP/1.1` with a `Host` field; a `200`-class response of any
//! body counts as answered. The patterns mean what they mean for other framings, in HTTP's
//! words:
//!
//! | pattern | HTTP                                                                   |
//! |---------|------------------------------------------------------------------------|
//! | `short` | `Connection: close` on every request: the server closes after its response |
//! | `long`  | one keep-alive connection per client (a new one when a response says close) |
//! | `pool`  | clients share `pool` keep-alive connections, one request at a time each |
//! | `mux`   | pipelined instead (RFC 9112 §9.3.2): each of `mux_connections` connections carries batches of `connections / mux_connections` requests written at once, answered in order |
//!
//! Under `short` the server closes first, so the TIME_WAIT sockets are the server's: that is
//! what HTTP/1.0 without keep-alive costs a web server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinSet;

use super::engine::{Progress, TimeWaitBaseline};
use super::tally::Tally;
use super::{BenchConfig, Pattern, PatternReport};
use crate::http::HttpClient;

/// The request every pattern sends, with or without `Connection: close`.
fn request(host: SocketAddr, close: bool) -> Vec<u8> {
    let close = if close { "Connection: close\r\n" } else { "" };
    format!("GET / HTTP/1.1\r\nHost: {host}\r\n{close}\r\n").into_bytes()
}

/// What the workers of one pattern share.
struct Shared {
    target: SocketAddr,
    timeout: Duration,
    stop_at: Instant,
    progress: Arc<Progress>,
    /// Connections opened by clients that were dropped.
    opened: AtomicU64,
    pool: Mutex<Vec<HttpClient>>,
}

impl Shared {
    fn client(&self) -> HttpClient {
        HttpClient::new(self.target, self.timeout)
    }

    fn retire(&self, c: &HttpClient) {
        self.opened
            .fetch_add(c.connections_opened(), Ordering::Relaxed);
    }
}

/// Runs one pattern against an HTTP server at `target` for `cfg.duration`.
///
/// # Cancel safety
/// Not cancel safe: dropping the future leaves workers running until the duration ends.
pub(super) async fn run_pattern(
    target: SocketAddr,
    server_visible: bool,
    cfg: &BenchConfig,
    pattern: Pattern,
    progress: Arc<Progress>,
) -> PatternReport {
    let baseline = TimeWaitBaseline::take(target.port());
    let started = Instant::now();
    let shared = Arc::new(Shared {
        target,
        timeout: cfg.request_timeout,
        stop_at: crate::deadline::after(started, cfg.duration),
        progress,
        opened: AtomicU64::new(0),
        pool: Mutex::new(Vec::new()),
    });
    let mut tasks = JoinSet::new();
    let (workers, depth) = match pattern {
        Pattern::Mux => {
            let conns = cfg.mux_connections.clamp(1, cfg.connections);
            (conns, (cfg.connections / conns).max(1))
        }
        _ => (cfg.connections, 1),
    };
    if pattern == Pattern::Pool {
        let mut pool = shared.pool.lock().await;
        pool.extend((0..cfg.effective_pool_size()).map(|_| shared.client()));
    }
    for _ in 0..workers {
        tasks.spawn(worker(Arc::clone(&shared), pattern, depth));
    }
    let Tally { hist, ok, errors } = Tally::sum(&mut tasks).await;
    let elapsed = started.elapsed();
    for c in shared.pool.lock().await.drain(..) {
        shared.retire(&c);
    }
    let opened = shared.opened.load(Ordering::Relaxed);
    drop(shared);
    tokio::task::yield_now().await;
    PatternReport::from_run(
        pattern,
        (ok, errors),
        &hist,
        elapsed,
        opened,
        baseline.added(server_visible),
    )
}

/// One closed-loop client until the pattern's end.
async fn worker(shared: Arc<Shared>, pattern: Pattern, depth: usize) -> Tally {
    let mut tally = Tally::new();
    let keep = request(shared.target, false);
    let close = request(shared.target, true);
    let batch: Vec<&[u8]> = (0..depth).map(|_| &keep[..]).collect();
    let mut own = shared.client();
    while Instant::now() < shared.stop_at {
        let since = Instant::now();
        match pattern {
            Pattern::Short => {
                let mut c = shared.client();
                let ok = c.request(&close).await.is_ok_and(|r| is_ok(&r));
                shared.retire(&c);
                tally.record(&shared.progress, ok, since, 1);
            }
            Pattern::Pool => {
                let taken = shared.pool.lock().await.pop();
                let Some(mut c) = taken else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let ok = c.request(&keep).await.is_ok_and(|r| is_ok(&r));
                shared.pool.lock().await.push(c);
                tally.record(&shared.progress, ok, since, 1);
            }
            Pattern::Mux => {
                let res = own.pipeline(&batch).await;
                let ok = res.is_ok_and(|all| all.iter().all(is_ok));
                tally.record(&shared.progress, ok, since, depth as u64);
            }
            _ => {
                let ok = own.request(&keep).await.is_ok_and(|r| is_ok(&r));
                tally.record(&shared.progress, ok, since, 1);
            }
        }
    }
    shared.retire(&own);
    tally
}

fn is_ok(r: &crate::http::ClientResponse) -> bool {
    (200..300).contains(&r.head.status)
}
