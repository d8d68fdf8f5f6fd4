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
//! - **Liveness** ([`LivenessConfig`]): read/write/any idle timeouts, a slow-frame cut-off,
//!   heartbeats answered by the connection itself and optional pings to idle clients.
//! - **Limits**: a global and a per-client-IP cap (excess connections are reset right after
//!   accept and counted), accept errors retried with backoff, memory bounded by the framing's
//!   `max`. An idle connection holds no read or write buffer.
//! - **PROXY protocol** v1/v2: the address from the balancer's header is the peer for limits,
//!   logs and the handler.
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

mod conn;
mod limits;
mod metrics_http;
pub mod proxy_protocol;
mod stats;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::frame::FramingSpec;
use crate::liveness::{Heartbeat, LivenessConfig};
use crate::socket::SocketOptions;

pub use metrics_http::serve_prometheus;
pub use stats::{ServerStats, StatsSnapshot};
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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "long" => Ok(Mode::Long),
            "short" => Ok(Mode::Short),
            _ => Err(format!("mode {s:?}: expected long or short")),
        }
    }
}

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
}

/// Everything about how a [`Server`] runs. Start from [`ServerConfig::new`], whose defaults
/// are safe for a public port, and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// How messages are framed.
    pub framing: FramingSpec,
    /// Long (default) or short connections.
    pub mode: Mode,
    /// Idle timeouts, slow-frame cut-off and pings to idle clients. Default: a 5 minute read
    /// idle timeout and a 30 s frame timeout; no pings.
    pub liveness: LivenessConfig,
    /// How heartbeats are recognised and answered; `None` turns heartbeat handling off, so
    /// every frame reaches the handler. Default: the empty frame, where the framing has one.
    pub heartbeat: Option<Arc<dyn Heartbeat>>,
    /// Connections open at once (default 10 000); more are reset right after accept.
    pub max_conns: usize,
    /// Connections open at once from one client IP (default 1000). Behind a balancer that does
    /// not send the PROXY protocol every connection comes from the balancer's address: raise
    /// it there, or set `None`.
    pub max_conns_per_ip: Option<usize>,
    /// TCP options for accepted sockets (default: `TCP_NODELAY` only).
    pub socket: SocketOptions,
    /// Expect a PROXY protocol v1/v2 header on every connection (default off).
    pub proxy_protocol: bool,
    /// With `proxy_protocol`: the networks the balancer connects from. A connection from
    /// anywhere else is closed before its header is read, so a client that reaches the port
    /// directly cannot claim an address. Empty (the default) trusts every source: then only
    /// the balancer may be able to reach the port.
    pub proxy_from: Vec<ipnet::IpNet>,
    /// How long the PROXY header may take to arrive (default 5 s).
    pub handshake_timeout: Duration,
    /// How long a reply may wait for a client that does not read (default 30 s).
    pub write_timeout: Duration,
    /// Hold each reply this long before sending it (default none): a slow partner, for tests.
    pub reply_delay: Option<Duration>,
    /// Short mode: how long to wait for the client's FIN after the reply (default 5 s).
    pub short_close_wait: Duration,
    /// Short mode: close right after the reply instead of waiting for the client's FIN. The
    /// server then holds the TIME_WAIT socket. Default off.
    pub short_server_closes_first: bool,
    /// After shutdown starts, how long connections get to finish (default 10 s).
    pub shutdown_grace: Duration,
    /// Listen backlog (default 1024).
    pub backlog: u32,
}

impl ServerConfig {
    /// Safe defaults for `framing`; see each field.
    pub fn new(framing: FramingSpec) -> Self {
        let heartbeat = crate::liveness::default_heartbeat(&framing);
        ServerConfig {
            framing,
            mode: Mode::Long,
            liveness: LivenessConfig {
                read_idle: Some(Duration::from_secs(300)),
                frame_timeout: Some(Duration::from_secs(30)),
                ..LivenessConfig::default()
            },
            heartbeat,
            max_conns: 10_000,
            max_conns_per_ip: Some(1000),
            socket: SocketOptions::default(),
            proxy_protocol: false,
            proxy_from: Vec::new(),
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
            reply_delay: None,
            short_close_wait: Duration::from_secs(5),
            short_server_closes_first: false,
            shutdown_grace: Duration::from_secs(10),
            backlog: 1024,
        }
    }
}

/// What went wrong starting or running a server.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The address could not be bound (in use, not local, no permission).
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The configuration is inconsistent.
    Config(String),
}

impl ServerError {
    /// The listen address could not be bound.
    pub fn is_bind(&self) -> bool {
        matches!(self, ServerError::Bind { .. })
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::Config(msg) => write!(f, "bad server config: {msg}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Bind { source, .. } => Some(source),
            ServerError::Config(_) => None,
        }
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
    listener: TcpListener,
    local: SocketAddr,
    shared: Arc<conn::Shared>,
}

impl Server {
    /// Binds `addr` (`SO_REUSEADDR` set, so a restart is not blocked by the previous run's
    /// TIME_WAIT sockets).
    ///
    /// # Errors
    /// [`ServerError::Bind`] when no address could be bound; [`ServerError::Config`] for an
    /// inconsistent config (e.g. heartbeats on a framing with no empty frame).
    pub async fn bind(
        addr: impl ToSocketAddrs + fmt::Display,
        config: ServerConfig,
    ) -> Result<Self, ServerError> {
        validate(&config)?;
        let shown = addr.to_string();
        let bind_err = |source| ServerError::Bind {
            addr: shown.clone(),
            source,
        };
        let mut last = None;
        for a in tokio::net::lookup_host(addr).await.map_err(bind_err)? {
            match listen(a, config.backlog) {
                Ok(listener) => {
                    let local = listener.local_addr().map_err(bind_err)?;
                    return Ok(Server {
                        listener,
                        local,
                        shared: conn::Shared::new(config),
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
    /// # Errors
    /// None at present once bound: accept errors are retried with backoff, connection errors
    /// close that connection only. The `Result` leaves room for fatal listener errors.
    ///
    /// # Cancel safety
    /// Dropping the future stops accepting and drops the listener, but connection tasks keep
    /// running until their own end; cancel the shutdown token instead for a graceful stop.
    pub async fn serve<S>(self, svc: S) -> Result<ShutdownReport, ServerError>
    where
        S: Service<Request, Response = Option<Bytes>> + Clone + Send + 'static,
        S::Error: Into<BoxError> + Send,
        S::Future: Send,
    {
        let Server {
            listener,
            shared,
            local,
        } = self;
        // A JoinSet rather than a TaskTracker plus a per-connection "hard stop" future: that
        // future would sit in every idle connection's task; abort_all does the same job.
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut backoff = Duration::from_millis(5);
        // Registered once, not per accept (each registration takes the token's lock).
        let mut stop = std::pin::pin!(shared.shutdown.cancelled());
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut stop => break,
                // Reap finished connections so the set does not grow.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                r = listener.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(5);
                    a
                }
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending connection stays in the
                    // backlog; wait rather than spin on it.
                    ServerStats::add(&shared.stats.errors_accept, 1);
                    if let Some(held) = shared.accept_log.check(Instant::now()) {
                        tracing::error!(error = %e, held_back = held, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                    }
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            ServerStats::add(&shared.stats.accepted, 1);
            let Some(slot) = shared.limits.try_global() else {
                ServerStats::add(&shared.stats.rejected_max_conns, 1);
                conn::reject(stream);
                if let Some(held) = shared.reject_log.check(Instant::now()) {
                    tracing::warn!(%peer, max_conns = shared.config.max_conns, held_back = held, "connection rejected: max_conns reached");
                }
                continue;
            };
            let conn = conn::new_conn(stream, peer, local, &shared);
            tasks.spawn(conn::run(conn, svc.clone(), slot));
        }
        let started = Instant::now();
        // Stop accepting: the port refuses from here on. Connections the kernel already
        // accepted into the backlog have had their requests acknowledged: take them too, and
        // drain them like the others (they see the shutdown at once).
        match listener.into_std() {
            Ok(std_listener) => {
                while let Ok((stream, peer)) = std_listener.accept() {
                    ServerStats::add(&shared.stats.accepted, 1);
                    let stream = match stream
                        .set_nonblocking(true)
                        .and_then(|()| tokio::net::TcpStream::from_std(stream))
                    {
                        Ok(s) => s,
                        Err(_) => {
                            ServerStats::add(&shared.stats.closed, 1);
                            continue;
                        }
                    };
                    let Some(slot) = shared.limits.try_global() else {
                        ServerStats::add(&shared.stats.rejected_max_conns, 1);
                        conn::reject(stream);
                        continue;
                    };
                    let conn = conn::new_conn(stream, peer, local, &shared);
                    tasks.spawn(conn::run(conn, svc.clone(), slot));
                }
                drop(std_listener);
            }
            Err(e) => tracing::debug!(error = %e, "listener: backlog not drained"),
        }
        let open_at_shutdown = shared.limits.active();
        let grace = shared.config.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        let mut force_closed = 0;
        if drained.is_err() {
            force_closed = tasks.len() as u64;
            ServerStats::add(&shared.stats.force_closed, force_closed);
            ServerStats::add(&shared.stats.closed, force_closed);
            tasks.shutdown().await;
            tracing::warn!(
                force_closed,
                grace_ms = grace.as_millis() as u64,
                "shutdown grace ran out; connections closed by force"
            );
        }
        Ok(ShutdownReport {
            open_at_shutdown,
            force_closed,
            drain_time: started.elapsed(),
        })
    }
}

fn validate(c: &ServerConfig) -> Result<(), ServerError> {
    if c.max_conns == 0 {
        return Err(ServerError::Config("max_conns must be at least 1".into()));
    }
    if c.max_conns_per_ip == Some(0) {
        return Err(ServerError::Config(
            "max_conns_per_ip must be at least 1".into(),
        ));
    }
    c.socket.validate().map_err(ServerError::Config)?;
    if let Some(hb) = &c.heartbeat {
        // Both heartbeat frames must go out and come back as one frame each: a pong that
        // cannot be framed would kill every connection at its first ping, and under `eof`
        // (a frame ends only at the close) no heartbeat can be a frame at all.
        let ping = hb.ping(1);
        let pong = hb.pong(&ping);
        for (what, frame) in [("ping", &ping), ("pong", &pong)] {
            if !c.framing.carries(frame) {
                return Err(ServerError::Config(format!(
                    "the heartbeat {what} cannot be sent under {}: give ping=/pong= payloads the framing can carry{}",
                    c.framing,
                    if c.framing.is_until_close() {
                        " (none: under eof a message ends only at the close; use --heartbeat off)"
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    if let Some(p) = c.liveness.ping {
        if p.interval < crate::liveness::MIN_PING_INTERVAL
            || p.timeout < crate::liveness::MIN_PING_TIMEOUT
        {
            return Err(ServerError::Config(format!(
                "ping interval {:?} and timeout {:?}: the interval must be at least 100ms (a peer answers same-bytes heartbeats at most every 50ms) and the timeout at least 10ms",
                p.interval, p.timeout
            )));
        }
        if c.mode == Mode::Short {
            return Err(ServerError::Config(
                "pings make no sense in short mode: a short connection is never idle long, and a short client takes the first frame after its request as the reply".into(),
            ));
        }
    }
    if c.liveness.ping.is_some() && c.heartbeat.is_none() {
        return Err(ServerError::Config(format!(
            "pings to idle clients need a heartbeat frame, and {} has no empty frame: give ping=/pong= payloads",
            c.framing
        )));
    }
    Ok(())
}

fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
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
    sock.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(sock.into())
}

/// Errors that concern one pending connection, not the listener.
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
