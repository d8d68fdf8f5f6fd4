//! Shutdown on SIGINT and SIGTERM: the first signal drains, a second one gives up waiting.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tower::Service;

use super::{Answer, BoxError, Request, Server, ServerError, ShutdownReport};

/// SIGINT and SIGTERM handlers, installed when this is created.
///
/// Install them before announcing the server (printing its address, writing a pid file): from
/// then on a SIGTERM drains instead of killing the process, which is the default action of an
/// unhandled SIGTERM. A supervisor that signals as soon as the server is announced would
/// otherwise kill it.
#[derive(Debug)]
pub struct ShutdownSignals {
    int: Signal,
    term: Signal,
}

impl ShutdownSignals {
    /// Installs the handlers.
    ///
    /// # Errors
    /// The signal driver could not register them (no tokio runtime with signals enabled).
    pub fn install() -> std::io::Result<Self> {
        Ok(ShutdownSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM.
    ///
    /// # Cancel safety
    /// Cancel-safe: a signal that arrives while no one waits is kept for the next call.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

impl Server {
    /// Serves until the first SIGINT or SIGTERM, then drains as
    /// [`serve`](Self::serve) does after its shutdown token is cancelled. A second signal
    /// while draining stops waiting: the connections are aborted (counted closed and
    /// force-closed in [`stats`](Self::stats)) and, once their tasks have ended,
    /// [`ServerError::Interrupted`] is returned.
    ///
    /// ```no_run
    /// use keepwire::server::{Reply, Server, ServerConfig, ShutdownSignals};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Server::bind("127.0.0.1:7000", ServerConfig::new("line".parse()?)).await?;
    /// let signals = ShutdownSignals::install()?;
    /// println!("listening on {}", server.local_addr());
    /// let report = server.serve_until_signal(Reply::Echo.into_service(), signals).await?;
    /// eprintln!("{} closed by force", report.force_closed);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ServerError::Interrupted`] after a second signal; else as [`serve`](Self::serve).
    ///
    /// # Cancel safety
    /// As [`serve`](Self::serve).
    pub async fn serve_until_signal<S>(
        self,
        svc: S,
        signals: ShutdownSignals,
    ) -> Result<ShutdownReport, ServerError>
    where
        S: Service<Request> + Clone + Send + 'static,
        S::Response: Into<Answer>,
        S::Error: Into<BoxError> + Send,
        S::Future: Send,
    {
        let interrupt = watch(self.shutdown_token(), signals);
        self.serve_inner(svc, interrupt).await
    }

    /// [`serve_direct`](Self::serve_direct) until SIGINT or SIGTERM, as
    /// [`serve_until_signal`](Self::serve_until_signal): the first signal drains, a second
    /// one closes what is left.
    ///
    /// # Errors
    /// [`ServerError::Interrupted`] after a second signal; else as
    /// [`serve_direct`](Self::serve_direct).
    pub async fn serve_direct_until_signal(
        self,
        reply: super::Reply,
        signals: ShutdownSignals,
    ) -> Result<ShutdownReport, ServerError> {
        let interrupt = watch(self.shutdown_token(), signals);
        self.serve_direct_inner(reply, interrupt).await
    }
}

/// Watches `signals`: the first cancels `stop`; the future returned ends at the second.
///
/// The signals are watched by a task of their own: selecting them beside the server would
/// poll both signal futures on every wake-up of the accept loop. The second signal is looked
/// for only once the drain is on.
fn watch(
    stop: tokio_util::sync::CancellationToken,
    mut signals: ShutdownSignals,
) -> impl std::future::Future<Output = ()> {
    let mut watcher = AbortOnDrop(tokio::spawn(async move {
        signals.recv().await;
        tracing::info!("shutting down");
        stop.cancel();
        signals.recv().await;
    }));
    async move {
        // Ended otherwise than by the second signal (the runtime is shutting down): no
        // interruption.
        if (&mut watcher.0).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Aborts the task when dropped: the signal watcher does not outlive `serve_until_signal`.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
