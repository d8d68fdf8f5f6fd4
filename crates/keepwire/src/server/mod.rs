//! A framed TCP server with both connection policies and the defences a public-facing link
//! needs.
//!
//! Data path of one request on a long connection:
//!
//! ```text
//! socket -> (PROXY header) -> FrameCodec::decode -> liveness (heartbeat answered here,
//!        idle timer reset) -> handler (tower::Service<Request>) -> FrameCodec::encode -> socket
//! ```
//!
//! - **Policies** ([`Mode`]): `Long` answers frames in a loop, several per read in order.
//!   `Short` answers one request and then waits (at most `short_close_wait`) for the client's
//!   FIN before closing, so the client, which closes first, holds the TIME_WAIT socket (RFC 9293
//!   §3.6: the side that sends the first FIN waits 2×MSL).
//! - **Liveness** ([`LivenessConfig`](crate::liveness::LivenessConfig)): read/write/any idle timeouts, a slow-frame cut-off,
//!   heartbeats answered by the connection itself and optional pings to idle clients.
//! - **Limits**: a global and a per-client-IP cap (excess connections are reset right after
//!   accept and counted), accept errors retried with backoff, memory bounded by the framing's
//!   `max`. An idle connection holds no read or write buffer.
//! - **PROXY protocol** v1/v2: the address from the balancer's header is the peer for limits,
//!   logs and the handler.
//! - **Two engines**: [`Server::serve`] runs any `tower::Service` handler, a tokio task per
//!   connection; [`Server::serve_direct`] answers with a [`Reply`] (echo or fixed bytes)
//!   from an event loop per CPU with no task per connection: about half the user-space
//!   instructions per request and 621 bytes per idle connection instead of 1 556
//!   (docs/performance.md), no TLS, PROXY protocol or `http` framing.
//! - **Graceful shutdown**: cancel [`Server::shutdown_token`]; the port refuses at once,
//!   requests already read get their replies, idle connections close, and whatever is still
//!   open when `shutdown_grace` runs out is closed by force and counted.
//!
//! ```
//! use bytes::Bytes;
//! use keepwire::server::{Request, Server, ServerConfig, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ServerConfig::new("len:ascii:4".parse()?);
//! let server = Server::bind("127.0.0.1:0", config).await?;
//! let addr = server.local_addr();
//! let stop = server.shutdown_token();
//! let task = tokio::spawn(server.serve(service_fn(|req: Request| async move {
//!     Ok::<_, std::convert::Infallible>(Some(req.frame))
//! })));
//!
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let mut c = tokio::net::TcpStream::connect(addr).await?;
//! c.write_all(b"0005hello").await?;
//! let mut reply = [0u8; 9];
//! c.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"0005hello");
//!
//! stop.cancel();
//! let report = task.await??;
//! assert_eq!(report.force_closed, 0);
//! # Ok(()) }
//! ```

mod answer;
mod config;
mod conn;
mod direct;
mod draining;
mod error;
mod limits;
mod listener;
#[cfg(feature = "metrics")]
mod metrics_http;
mod pool;
pub mod proxy_protocol;
mod signals;
mod stats;
mod tasks;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::ToSocketAddrs;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::Service;

use listener::Listener;

pub use answer::Answer;
pub use config::{Engine, Reply, ReplyFuture, ServeSetup, ServerConfig, ServerSettings};
pub use error::{ConfigError, ServerError};
#[cfg(feature = "metrics")]
pub use metrics_http::PUBLISH_INTERVAL;
pub use signals::ShutdownSignals;
pub use stats::{ServerStats, StatsSnapshot};
use tasks::ConnTasks;
pub use tower::service_fn;

/// An error a handler may return: anything boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The connection policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One connection carries many requests (the default).
    #[default]
    Long,
    /// One request and one reply per connection.
    Short,
}

impl std::str::FromStr for Mode {
    type Err = ModeError;

    /// `long` or `short`.
    ///
    /// ```
    /// use keepwire::server::Mode;
    /// assert_eq!("short".parse::<Mode>().unwrap(), Mode::Short);
    /// let e = "medium".parse::<Mode>().unwrap_err();
    /// assert_eq!(e.to_string(), "mode \"medium\": expected long or short");
    /// assert_eq!(e.found(), "medium");
    /// ```
    fn from_str(s: &str) -> Result<Self, ModeError> {
        match s {
            "long" => Ok(Mode::Long),
            "short" => Ok(Mode::Short),
            _ => Err(ModeError {
                found: s.to_string(),
            }),
        }
    }
}

/// A server [`Mode`] that is neither `long` nor `short`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeError {
    found: String,
}

impl ModeError {
    /// The text that was given.
    pub fn found(&self) -> &str {
        &self.found
    }
}

impl fmt::Display for ModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mode {:?}: expected long or short", self.found)
    }
}

impl std::error::Error for ModeError {}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Long => "long",
            Mode::Short => "short",
        })
    }
}

/// One inbound application frame, as the handler sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Request {
    /// The frame, without its length header or delimiter.
    pub frame: Bytes,
    /// The client: from the PROXY header when that is enabled, else the socket's peer.
    pub peer: SocketAddr,
    /// The server address the client connected to.
    pub local: SocketAddr,
    /// A server-unique connection number, for logs and correlation.
    pub conn_id: u64,
    /// The server is draining (shutting down): this request is answered, but a handler
    /// that can tell its client to go elsewhere should (HTTP: `Connection: close`).
    pub draining: bool,
    /// Mutual TLS: the client's verified certificate (its subject names the partner).
    #[cfg(feature = "tls")]
    pub peer_cert: Option<Arc<crate::tls::PeerCert>>,
    /// Under `http` framing: what the codec read in this request's head (see
    /// [`http_head`](Self::http_head)).
    http_head: Option<crate::frame::http::HttpHead>,
}

impl Request {
    /// Under `http` framing, what the codec read in this request's head while finding the
    /// frame's end (version, `Connection` options, `Host` count, codings, `HEAD`), so that a
    /// handler need not parse the head again. `None` under other framings, and once
    /// [`frame`](Self::frame) has been replaced by other bytes: the summary is given only
    /// for the very frame it describes ([`HttpHead::describes`](crate::frame::http::HttpHead::describes)).
    pub fn http_head(&self) -> Option<&crate::frame::http::HttpHead> {
        self.http_head.as_ref().filter(|h| h.describes(&self.frame))
    }
}

/// How a server's shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections open when the accept loop saw the shutdown signal (idle ones close at the
    /// same moment, so this may miss some of them).
    pub open_at_shutdown: usize,
    /// Connections still open when the grace period ran out, closed by force.
    pub force_closed: u64,
    /// Time from the shutdown signal to the last connection closing.
    pub drain_time: Duration,
}

/// A bound server: [`bind`](Server::bind) it, then [`serve`](Server::serve) a handler.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    local: SocketAddr,
    shared: Arc<conn::Shared>,
    /// Started by [`Server::export_prometheus`]; run by `serve` alongside the connections.
    #[cfg(feature = "metrics")]
    exporter: Option<metrics_http::Exporter>,
}

impl Server {
    /// Binds `addr` (`SO_REUSEADDR` set, so a restart is not blocked by the previous run's
    /// TIME_WAIT sockets).
    ///
    /// # Errors
    /// [`ServerError::Bind`] when no address could be bound; [`ServerError::Config`] when
    /// [`ServerConfig::validate`] refuses the config (e.g. heartbeats on a framing with no
    /// empty frame).
    pub async fn bind(
        addr: impl ToSocketAddrs + fmt::Display,
        config: ServerConfig,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        let shown = addr.to_string();
        let bind_err = |source| ServerError::Bind {
            addr: shown.clone(),
            source,
        };
        let mut last = None;
        for a in tokio::net::lookup_host(addr).await.map_err(bind_err)? {
            match listen(a, config.backlog, &config.socket) {
                Ok((listener, options_set)) => {
                    let local = listener.local_addr().map_err(bind_err)?;
                    let shared = conn::Shared::new(config);
                    if !options_set {
                        shared.socket_options_inherited(false);
                    }
                    return Ok(Server {
                        listener,
                        local,
                        shared,
                        #[cfg(feature = "metrics")]
                        exporter: None,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(bind_err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "the name resolved to no address",
            )
        })))
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Cancel this token to start a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// The server's counters.
    pub fn stats(&self) -> Arc<ServerStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Accepts and serves connections until the shutdown token is cancelled, then drains.
    ///
    /// `svc` is cloned for each connection, so state kept in a clone (a login, a sequence
    /// number) is that connection's own. It answers each request with anything that converts
    /// into an [`Answer`]: `Option<Bytes>` (one reply or none), or an [`Answer`] with several
    /// frames or a close after them.
    ///
    /// Every task it starts (one per connection, and the metrics exporter if
    /// [`export_prometheus`](Self::export_prometheus) was called) is tracked: when this returns
    /// they have all ended.
    ///
    /// # Errors
    /// None at present once bound: accept errors are retried with backoff, connection errors
    /// close that connection only. The `Result` leaves room for fatal listener errors.
    ///
    /// # Cancel safety
    /// Dropping the future stops accepting, drops the listener and aborts every connection
    /// task; cancel the shutdown token instead for a graceful stop.
    pub async fn serve<S>(self, svc: S) -> Result<ShutdownReport, ServerError>
    where
        S: Service<Request> + Clone + Send + 'static,
        S::Response: Into<Answer>,
        S::Error: Into<BoxError> + Send,
        S::Future: Send,
    {
        self.serve_inner(svc, std::future::pending()).await
    }

    /// [`serve`](Self::serve), with a drain that `interrupt` cuts short: it is polled only
    /// once the accept loop has stopped, so it costs the accept path nothing.
    async fn serve_inner<S>(
        self,
        svc: S,
        interrupt: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, ServerError>
    where
        S: Handler,
    {
        let Server {
            listener,
            shared,
            local,
            #[cfg(feature = "metrics")]
            exporter,
        } = self;
        // Dropped with this future, which aborts the exporter too. The exporter has its own
        // stop, cancelled after the drain: scrapes watch the drain.
        let mut side: JoinSet<()> = JoinSet::new();
        let side_stop = CancellationToken::new();
        #[cfg(feature = "metrics")]
        if let Some(e) = exporter {
            side.spawn(e.run(Arc::clone(&shared.stats), side_stop.clone()));
        }
        // A registry of abort handles rather than a per-connection "hard stop" future: that
        // future would sit in every idle connection's task; abort_all does the same job.
        // Dropped (this future dropped, or interrupted), it aborts the connections.
        let mut tasks = ConnTasks::default();
        accept_until_shutdown(&listener, local, &shared, &svc, &mut tasks).await;
        let drained = async {
            shared.draining.start();
            let started = Instant::now();
            let deadline = crate::deadline::tokio_in(shared.config.shutdown_grace);
            let left = take_backlog(listener, local, &shared, &svc, &mut tasks);
            let open_at_shutdown = shared.limits.active();
            finish_backlog(left, deadline, local, &shared, &svc, &mut tasks).await;
            let force_closed = drain(&shared, &mut tasks, deadline).await;
            side_stop.cancel();
            while side.join_next().await.is_some() {}
            ShutdownReport {
                open_at_shutdown,
                force_closed,
                drain_time: started.elapsed(),
            }
        };
        tokio::select! {
            report = drained => return Ok(report),
            () = interrupt => {}
        }
        // Interrupted: the connections are aborted and counted as after a grace that ran out,
        // and have ended when this returns, as the doc of `serve` says. Dropping `side` aborts
        // the exporter.
        abort_connections(&shared, &tasks).await;
        Err(ServerError::Interrupted)
    }
}

/// The bounds `serve` puts on a handler, named once for the functions behind it. (The
/// public methods spell them out, so that their documentation shows them.)
trait Handler:
    Service<Request, Response: Into<Answer>, Error: Into<BoxError> + Send, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S> Handler for S where
    S: Service<Request, Response: Into<Answer>, Error: Into<BoxError> + Send, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// The backoff after an accept error that concerns the listener (EMFILE and friends): the
/// first wait, doubled per failure in a row up to [`MAX_ACCEPT_BACKOFF`].
pub(crate) const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// The longest wait between accepts that keep failing.
pub(crate) const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The accept loop: a task per connection, until the shutdown token is cancelled.
///
/// Per wake-up of its task, not per connection: one look at the shutdown token (a lock). In
/// between, each connection costs its `accept4`, its spawn and its counters, as many as the
/// backlog holds (tokio's cooperative budget makes the task yield after 128). Finished
/// connections need no reaping: each leaves the registry itself (`tasks.rs`).
async fn accept_until_shutdown<S>(
    listener: &Listener,
    local: SocketAddr,
    shared: &Arc<conn::Shared>,
    svc: &S,
    tasks: &mut ConnTasks,
) where
    S: Handler,
{
    let mut backoff = MIN_ACCEPT_BACKOFF;
    // Registered once, not per accept (each registration takes the token's lock).
    let mut stop = std::pin::pin!(shared.shutdown.cancelled());
    loop {
        let failed = std::future::poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            accept_burst(cx, listener, local, shared, svc, tasks, &mut backoff).map(Some)
        })
        .await;
        let Some(e) = failed else { return };
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending connection stays in the backlog; wait
        // rather than spin on it.
        ServerStats::add(&shared.stats.errors_accept, 1);
        if let Some(held) = shared.accept_log.check(Instant::now()) {
            tracing::error!(error = %e, held_back = held, backoff = %humantime::format_duration(backoff), "accept failed; backing off");
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
    }
}

/// Accepts and spawns connections until the listener has none ready (`Pending`) or fails in a
/// way that concerns the listener (`Ready`).
fn accept_burst<S>(
    cx: &mut Context<'_>,
    listener: &Listener,
    local: SocketAddr,
    shared: &Arc<conn::Shared>,
    svc: &S,
    tasks: &mut ConnTasks,
    backoff: &mut Duration,
) -> Poll<io::Error>
where
    S: Handler,
{
    loop {
        let accepted = match listener.poll_accept(cx) {
            Poll::Ready(Ok(a)) => a,
            Poll::Ready(Err(e)) if is_transient_accept_error(&e) => continue,
            Poll::Ready(Err(e)) => return Poll::Ready(e),
            Poll::Pending => return Poll::Pending,
        };
        *backoff = MIN_ACCEPT_BACKOFF;
        // A socket the runtime cannot take (its epoll is full, or memory is short): the
        // next would fare no better, so back off as for a failed accept.
        if let Err(e) = register_and_admit(accepted, local, shared, svc, tasks) {
            return Poll::Ready(e);
        }
    }
}

/// Counts an accepted socket, registers it with the runtime and [`admit`]s it; a socket
/// that cannot be registered is closed (counted closed too) and its error returned.
fn register_and_admit<S: Handler>(
    accepted: listener::MioAccepted,
    local: SocketAddr,
    shared: &Arc<conn::Shared>,
    svc: &S,
    tasks: &mut ConnTasks,
) -> io::Result<()> {
    ServerStats::add(&shared.stats.accepted, 1);
    match listener::registered(accepted) {
        Ok((stream, peer)) => {
            admit(stream, peer, local, shared, svc, tasks);
            Ok(())
        }
        Err(e) => {
            ServerStats::add(&shared.stats.closed, 1);
            Err(e)
        }
    }
}

/// Serves an accepted connection as a task of its own, or refuses it (a reset) when
/// `max_conns` are open.
fn admit<S>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: &Arc<conn::Shared>,
    svc: &S,
    tasks: &mut ConnTasks,
) where
    S: Handler,
{
    let Some(slot) = shared.limits.try_global() else {
        shared.refuse_max_conns(stream, peer, Instant::now());
        return;
    };
    let conn = conn::new_conn(stream, peer, local, shared);
    tasks.spawn(conn::run(conn, svc.clone(), slot));
}

/// Stops accepting: the port refuses from here on. Connections the kernel already accepted
/// into the backlog have had their requests acknowledged: take them too, and drain them like
/// the others (they see the shutdown at once). Returns the listener when an accept failed for
/// want of resources (EMFILE and friends) with connections perhaps still waiting: see
/// [`finish_backlog`].
fn take_backlog<S>(
    listener: Listener,
    local: SocketAddr,
    shared: &Arc<conn::Shared>,
    svc: &S,
    tasks: &mut ConnTasks,
) -> Option<mio::net::TcpListener>
where
    S: Handler,
{
    sweep_backlog(listener.into_inner(), local, shared, svc, tasks)
}

/// Accepts what the backlog holds, until it is empty (`None`) or an accept fails for want of
/// resources (`Some`: the listener, to try again).
fn sweep_backlog<S>(
    listener: mio::net::TcpListener,
    local: SocketAddr,
    shared: &Arc<conn::Shared>,
    svc: &S,
    tasks: &mut ConnTasks,
) -> Option<mio::net::TcpListener>
where
    S: Handler,
{
    loop {
        let accepted = match listener.accept() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if is_transient_accept_error(&e) => continue,
            Err(e) => {
                ServerStats::add(&shared.stats.errors_accept, 1);
                tracing::debug!(error = %e, "backlog: accept failed; trying again");
                return Some(listener);
            }
        };
        // A socket the runtime could not take is closed; the sweep goes on with the next.
        let _ = register_and_admit(accepted, local, shared, svc, tasks);
    }
}

/// The backlog sweep ran out of descriptors (EMFILE): the connections still waiting are taken
/// as the drain frees descriptors, retried with the accept loop's backoff until the backlog
/// is empty or `deadline` (the grace's end), or until a retry fails with no connection left
/// to free one (ENFILE, ENOMEM: the system's). Meanwhile the port still completes new
/// connections into the backlog, and those are taken too.
async fn finish_backlog<S>(
    mut left: Option<mio::net::TcpListener>,
    deadline: tokio::time::Instant,
    local: SocketAddr,
    shared: &Arc<conn::Shared>,
    svc: &S,
    tasks: &mut ConnTasks,
) where
    S: Handler,
{
    let mut backoff = MIN_ACCEPT_BACKOFF;
    while let Some(listener) = left.take() {
        let none_open = tasks.is_empty();
        let wake = (tokio::time::Instant::now() + backoff).min(deadline);
        tokio::time::sleep_until(wake).await;
        if wake >= deadline {
            return;
        }
        left = sweep_backlog(listener, local, shared, svc, tasks);
        if none_open {
            return;
        }
        backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
    }
}

/// Waits for the connections to finish until `deadline` (the shutdown grace's end), then
/// aborts the rest; returns how many were closed by force.
async fn drain(
    shared: &conn::Shared,
    tasks: &mut ConnTasks,
    deadline: tokio::time::Instant,
) -> u64 {
    let grace = shared.config.shutdown_grace;
    if tokio::time::timeout_at(deadline, tasks.all_ended())
        .await
        .is_ok()
    {
        return 0;
    }
    let force_closed = abort_connections(shared, tasks).await;
    tracing::warn!(
        force_closed,
        grace = %humantime::format_duration(grace),
        "shutdown grace ran out; connections closed by force"
    );
    force_closed
}

/// Aborts every connection left and waits for their tasks to end; counts them closed and
/// force-closed, and returns how many there were.
async fn abort_connections(shared: &conn::Shared, tasks: &ConnTasks) -> u64 {
    // Counted by what the abort cut short, not by the aborts sent: a task being polled on
    // another worker thread when aborted may complete that poll, and count itself closed.
    let before = tasks.cut_short();
    tasks.abort_all();
    tasks.all_ended().await;
    let force_closed = tasks.cut_short().saturating_sub(before);
    ServerStats::add(&shared.stats.force_closed, force_closed);
    ServerStats::add(&shared.stats.closed, force_closed);
    force_closed
}

/// A listening socket on `addr`, and whether `options` could be set on it. Accepted sockets
/// inherit them (Linux): set here, before `listen` (a connection queued before they were set
/// would not have them), they are checked on the first connection instead of set on every
/// one (see `conn::Shared::apply_socket_options`).
fn listen(
    addr: SocketAddr,
    backlog: u32,
    options: &crate::socket::SocketOptions,
) -> io::Result<(Listener, bool)> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    // SO_REUSEADDR: bind even while TIME_WAIT sockets of a previous run hold the port
    // (RFC 9293 §3.6.1 lets the kernel accept a new SYN for a TIME_WAIT pair).
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    let options_set = options.apply(&sock).is_ok();
    sock.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok((Listener::new(sock.into())?, options_set))
}

/// Errors that concern one pending connection, not the listener.
pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
