//! The embedded echo server a bench measures when no target is given.
//!
//! It runs on its own runtime threads so that client and server do not share one executor
//! (on a small machine, one worker each), and a fresh one serves each pattern so that every
//! pattern's TIME_WAIT sockets are its own. Its one task, the server's accept loop, is kept
//! as a `JoinHandle` and awaited on [`EmbeddedServer::shutdown`]: the loop drains its
//! connections within [`DRAIN`] and returns, and only then is the runtime dropped.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::BenchError;
use crate::frame::FramingSpec;
use crate::server::{Request, Server, ServerConfig, ServerError, ShutdownReport, service_fn};

/// How long the server's connections get to close after a pattern (the server's
/// `shutdown_grace`); the clients have closed theirs by then, so this is rarely waited for.
pub(super) const DRAIN: Duration = Duration::from_secs(2);

/// Beyond [`DRAIN`], how long to wait for the accept loop to return before the runtime is
/// shut down regardless; also the most its threads are then waited for.
const DRAIN_SLACK: Duration = Duration::from_millis(500);

/// A keepwire echo server on 127.0.0.1, port 0, on its own runtime.
#[derive(Debug)]
pub(super) struct EmbeddedServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<ShutdownReport, ServerError>>>,
    rt: Option<Runtime>,
}

impl EmbeddedServer {
    /// Starts an echo server of `framing` on `threads` worker threads.
    ///
    /// # Errors
    /// [`BenchError::Runtime`] when the runtime cannot be built,
    /// [`BenchError::EmbeddedServer`] when the server cannot bind.
    pub(super) fn start(framing: FramingSpec, threads: usize) -> Result<Self, BenchError> {
        let echo =
            service_fn(
                |r: Request| async move { Ok::<_, std::convert::Infallible>(Some(r.frame)) },
            );
        Self::start_with(ServerConfig::new(framing), echo, threads)
    }

    /// Starts a server of `cfg` answering with `svc` (a protocol simulator) on `threads`
    /// worker threads; errors as [`start`](Self::start).
    pub(super) fn start_with<S>(
        mut cfg: ServerConfig,
        svc: S,
        threads: usize,
    ) -> Result<Self, BenchError>
    where
        S: tower::Service<Request> + Clone + Send + Sync + 'static,
        S::Response: Into<crate::server::Answer>,
        S::Error: Into<crate::server::BoxError> + Send,
        S::Future: Send,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("bench-server")
            .enable_all()
            .build()
            .map_err(BenchError::Runtime)?;
        // The bench opens as many connections as it can: no limit must cut it short.
        cfg.max_conns = 1_000_000;
        cfg.max_conns_per_ip = None;
        cfg.shutdown_grace = DRAIN;
        let server = rt
            .block_on(Server::bind("127.0.0.1:0", cfg))
            .map_err(BenchError::EmbeddedServer)?;
        let addr = server.local_addr();
        let stop = server.shutdown_token();
        let task = rt.spawn(server.serve(svc));
        Ok(EmbeddedServer {
            addr,
            stop,
            task: Some(task),
            rt: Some(rt),
        })
    }

    /// The address it listens on.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, waits (bounded) for the accept loop to drain and return, then shuts
    /// the runtime down. Returns how the drain went, when the loop returned in time.
    pub(super) fn shutdown(mut self) -> Option<ShutdownReport> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> Option<ShutdownReport> {
        self.stop.cancel();
        let rt = self.rt.take()?;
        let report = self.task.take().and_then(|task| {
            // The timer is made inside `block_on`: it needs the runtime's context.
            let waited =
                rt.block_on(async { tokio::time::timeout(DRAIN + DRAIN_SLACK, task).await });
            match waited {
                Ok(Ok(Ok(report))) => Some(report),
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "bench: embedded server failed");
                    None
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "bench: embedded server task failed");
                    None
                }
                Err(_) => {
                    tracing::warn!("bench: embedded server did not drain in time");
                    None
                }
            }
        });
        // Whatever is left (nothing, once the loop returned) is aborted here, and the
        // runtime's threads are waited for (bounded): with no wait they outlived the call,
        // still running when `run` returned to its caller.
        rt.shutdown_timeout(DRAIN_SLACK);
        report
    }
}

impl Drop for EmbeddedServer {
    /// A bench that stops early (an error, a panic in the caller) still stops its server.
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn echoes_then_shuts_down_and_refuses() {
        let server = EmbeddedServer::start(FramingSpec::parse("line").unwrap(), 1).unwrap();
        let addr = server.addr();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"ping\n").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping\n");
        drop(s);
        let report = server.shutdown().expect("the accept loop returned in time");
        assert_eq!(report.force_closed, 0);
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn drop_alone_stops_it() {
        let server = EmbeddedServer::start(FramingSpec::parse("line").unwrap(), 1).unwrap();
        let addr = server.addr();
        drop(server);
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
}
