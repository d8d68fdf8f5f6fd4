//! Prometheus metrics over HTTP, served by `metrics-exporter-prometheus`'s own listener.
//!
//! [`Server::export_prometheus`] installs the exporter's recorder as this process's `metrics`
//! recorder and binds its HTTP listener; [`Server::serve`] runs it next to the connections,
//! copies [`ServerStats`] into the recorder every [`PUBLISH_INTERVAL`], and stops it at
//! shutdown.
//!
//! What bounds a scrape is the listener's own behaviour (hyper's HTTP/1 server): a request
//! head is refused past hyper's read buffer cap (about 400 KiB) and 100 headers, and each
//! response is one render of the registry (a few KiB for a server's counters). The listener
//! has no cap on connections and no read timeout of its own: put the metrics address on
//! loopback or a management network, not on the port clients reach.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{ExporterFuture, PrometheusBuilder};
use tokio::net::ToSocketAddrs;
use tokio_util::sync::CancellationToken;

use super::{Server, ServerError, ServerStats};

/// How often a running exporter copies the server's counters into the recorder, so a scrape
/// shows them at most this old.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// The exporter's HTTP listener, bound and waiting to be run.
pub(crate) struct Exporter {
    serve: ExporterFuture,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Exporter")
    }
}

impl Exporter {
    /// Serves scrapes and publishes `stats` every [`PUBLISH_INTERVAL`] until `stop`.
    pub(crate) async fn run(self, stats: Arc<ServerStats>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut serve = self.serve;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                r = &mut serve => {
                    if let Err(e) = r {
                        tracing::error!(error = ?e, "metrics listener stopped");
                    }
                    return;
                }
                _ = tick.tick() => stats.publish(),
            }
        }
    }
}

/// Why the exporter could not start, besides the builder's own errors.
#[derive(Debug)]
enum ExporterError {
    NoAddress,
    PortZero,
    RecorderInstalled,
}

impl fmt::Display for ExporterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExporterError::NoAddress => "the name resolved to no address",
            ExporterError::PortZero => "port 0: expected a fixed port, which a scraper can be told",
            ExporterError::RecorderInstalled => {
                "a metrics recorder is already installed in this process"
            }
        })
    }
}

impl std::error::Error for ExporterError {}

impl Server {
    /// Serves the server's counters for Prometheus on `addr` (any path; `/health` answers
    /// `OK`) while [`serve`](Self::serve) runs. The address is bound now, so a bad one fails
    /// before the server is announced; the listener and the publishing of the counters start
    /// with `serve` and stop with its shutdown. Scrapes show the counters at most
    /// [`PUBLISH_INTERVAL`] old.
    ///
    /// What bounds a scrape is the exporter's listener (hyper's HTTP/1 server): a request head
    /// is refused past hyper's read buffer cap (about 400 KiB) and 100 headers, and each
    /// response is one render of the registry (a few KiB). It has no connection cap and no
    /// read timeout of its own: keep `addr` on loopback or a management network.
    ///
    /// This installs the process-wide `metrics` recorder: one exporting server per process.
    ///
    /// # Errors
    /// [`ServerError::Metrics`]: `addr` does not resolve, has port 0, cannot be bound, or a
    /// recorder is already installed.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn export_prometheus(
        &mut self,
        addr: impl ToSocketAddrs + fmt::Display,
    ) -> Result<SocketAddr, ServerError> {
        let shown = addr.to_string();
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| ServerError::Metrics {
            addr: shown.clone(),
            source,
        };
        let a = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| fail(e.into()))?
            .next()
            .ok_or_else(|| fail(ExporterError::NoAddress.into()))?;
        if a.port() == 0 {
            return Err(fail(ExporterError::PortZero.into()));
        }
        let (recorder, serve) = PrometheusBuilder::new()
            .with_http_listener(a)
            .build()
            .map_err(|e| fail(e.into()))?;
        metrics::set_global_recorder(recorder)
            .map_err(|_| fail(ExporterError::RecorderInstalled.into()))?;
        self.exporter = Some(Exporter { serve });
        Ok(a)
    }
}
