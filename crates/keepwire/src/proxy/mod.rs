//! The short↔long gateway behind `keepwire proxy`: many clients on one side, one or a few
//! upstream connections on the other.
//!
//! ```text
//!  clients (short or long)                 proxy                        upstream
//!  ──────────────────────  ┌──────────────────────────────────────┐  ───────────────
//!  conn ─▶ frame ─────────▶│ Server (accept loop, caps, idle,     │
//!  conn ─▶ frame ─────────▶│ frame timeout, PROXY header, drain)  │
//!  conn ─▶ frame ─────────▶│   └▶ Forward (tower::Service):       │  N long conns
//!                          │      key rewrite ─▶ client ──────────┼─▶ (heartbeats,
//!  reply ◀── key restored ◀│      ◀── reply by key or in order ◀──┼── failover)
//!                          └──────────────────────────────────────┘
//! ```
//!
//! Nothing here reads a socket: the client side **is** a [`Server`] whose handler
//! ([`Forward`]) hands each frame to a [`crate::client`] type, and the upstream side **is**
//! that client:
//!
//! | [`Upstream`]                | client type                | in flight upstream |
//! |-----------------------------|----------------------------|--------------------|
//! | `Short`                     | [`ShortClient`](crate::client::ShortClient) | one per connection, a connection per request |
//! | `Long { connections: N }`   | [`Pool`](crate::client::Pool) of N | N (one per connection, replies in order) |
//! | `Mux { connections: N, .. }`| N [`MuxClient`](crate::client::MuxClient)s | many, replies matched by the [`Correlate`] key |
//!
//! Re-framing is free: the server decodes with its framing, the client encodes with its own,
//! and the message body passes unchanged, byte for byte.
//!
//! # Guarantees
//! - **Nothing lost.** A request the upstream connection failed before writing (not a byte
//!   sent) is sent on the next connection or endpoint by the client itself.
//! - **Nothing silent.** A request that may have been sent and got no reply is answered by
//!   [`OnUpstreamError`]: the client's connection is closed, or it gets the configured error
//!   frame. It is never sent twice unless [`ProxyConfig::retry_sent`] (then once more).
//! - **Keys never cross.** With a correlation key, two clients' requests with the same key
//!   are kept apart (see `keys.rs`): the second is rewritten upstream and restored on its
//!   reply, or, where the key cannot be rewritten, held until the first reply is back.
//! - **Bounded.** A client connection has at most one request in the proxy at a time (the
//!   server awaits the handler before it decodes the next frame), so what the proxy holds is
//!   at most `max_conns` requests of at most the framing's `max` bytes each; upstream
//!   back-pressure (a pool with no free connection, a full mux queue) holds the handler, and
//!   a client connection whose handler is held is not read.
//! - A client that disconnects before its reply: its reply is dropped when it comes. A keyed
//!   request runs in a task of its own that keeps its key until then, so a later request
//!   with that key neither takes the orphan's reply nor is refused; such tasks count against
//!   `max_conns` with the rest.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use keepwire::client::ClientBuilder;
//! use keepwire::proxy::{Proxy, ProxyConfig, Upstream};
//! use keepwire::server::{Request, Server, ServerConfig, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // An upstream that speaks a 2-byte binary length and echoes.
//! let up = Server::bind("127.0.0.1:0", ServerConfig::new("len:be:2".parse()?)).await?;
//! let up_addr = up.local_addr().to_string();
//! tokio::spawn(up.serve(service_fn(|r: Request| async move {
//!     Ok::<_, std::convert::Infallible>(Some(r.frame))
//! })));
//!
//! // Clients speak a 4-digit ASCII length; two long connections go upstream.
//! let config = ProxyConfig::new(
//!     ServerConfig::new("len:ascii:4".parse()?),
//!     ClientBuilder::new("len:be:2".parse()?, [up_addr]),
//!     Upstream::Long { connections: 2 },
//! );
//! let proxy = Proxy::bind("127.0.0.1:0", config).await?;
//! let addr = proxy.local_addr();
//! let stop = proxy.shutdown_token();
//! let task = tokio::spawn(proxy.serve());
//!
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let mut c = tokio::net::TcpStream::connect(addr).await?;
//! c.write_all(b"0005hello").await?;
//! let mut reply = [0u8; 9];
//! c.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"0005hello");
//!
//! stop.cancel();
//! task.await??;
//! # Ok(()) }
//! ```

mod connect;
mod error;
mod forward;
mod keys;
#[cfg(feature = "protocol")]
mod session;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::ToSocketAddrs;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientBuilder, Correlate};
use crate::server::{Answer, Server, ServerConfig, ShutdownReport, ShutdownSignals};

pub use error::ProxyError;
pub use forward::Forward;
#[cfg(feature = "protocol")]
pub use session::TemplateSession;

/// What the upstream side is.
#[derive(Clone)]
#[non_exhaustive]
pub enum Upstream {
    /// A connection per request.
    Short,
    /// `connections` long connections, one request at a time on each (replies in order).
    Long {
        /// How many (at least 1).
        connections: u32,
    },
    /// `connections` long connections carrying many requests each, replies matched by
    /// `correlate` (a [`ByteRange`](crate::client::ByteRange), a template's
    /// `SequenceKey`).
    Mux {
        /// How many (at least 1).
        connections: u32,
        /// Where a frame's key is, and how to rewrite it ([`Correlate::rekey`]).
        correlate: Arc<dyn Correlate>,
    },
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Short => f.write_str("Short"),
            Upstream::Long { connections } => write!(f, "Long {{ connections: {connections} }}"),
            Upstream::Mux { connections, .. } => {
                write!(f, "Mux {{ connections: {connections}, .. }}")
            }
        }
    }
}

/// What a client gets when its request may have reached the upstream but no reply came.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnUpstreamError {
    /// Its connection is closed (the default): the client sees end of stream.
    #[default]
    Close,
    /// It gets this frame as the reply, and its connection stays open.
    Reply(Bytes),
}

impl std::str::FromStr for OnUpstreamError {
    type Err = crate::text::TextError;

    /// `close`, `reply:text:..` or `reply:hex:..`.
    ///
    /// ```
    /// use keepwire::proxy::OnUpstreamError;
    /// assert_eq!("close".parse::<OnUpstreamError>().unwrap(), OnUpstreamError::Close);
    /// assert_eq!(
    ///     "reply:text:ERR".parse::<OnUpstreamError>().unwrap(),
    ///     OnUpstreamError::Reply("ERR".into())
    /// );
    /// assert!("reply:ERR".parse::<OnUpstreamError>().is_err());
    /// ```
    ///
    /// # Errors
    /// The payload's [`TextError`](crate::text::TextError); any other text is a missing
    /// `reply:` payload prefix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "close" {
            return Ok(OnUpstreamError::Close);
        }
        let payload = s.strip_prefix("reply:").unwrap_or(s);
        crate::text::parse_payload(payload).map(OnUpstreamError::Reply)
    }
}

/// Frames the proxy answers itself instead of forwarding (with a template: each client's
/// own login and logout, since the upstream session belongs to the proxy).
pub trait LocalAnswer: Send + Sync + fmt::Debug + 'static {
    /// The answer to `frame`, or `None` to forward it.
    fn answer(&self, frame: &[u8]) -> Option<Answer>;
}

/// How a proxy runs: its two sides and the rules between them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// The client side: framing, mode (short or long clients), caps, idle and frame
    /// timeouts, PROXY protocol, drain grace.
    pub server: ServerConfig,
    /// The upstream side: framing, endpoints in failover order, timeouts, heartbeats,
    /// session hook.
    pub upstream: ClientBuilder,
    /// Short, pooled or multiplexed upstream connections.
    pub mode: Upstream,
    /// The answer to a request that may have been sent and got no reply (default close).
    pub on_upstream_error: OnUpstreamError,
    /// Send a request that may have been sent once more (default off: never a second
    /// delivery).
    pub retry_sent: bool,
    /// How long a request waits for an earlier one with the same, unrewritable key (default
    /// 10 s).
    pub key_wait: Duration,
    /// Frames answered by the proxy itself (default none).
    pub local: Option<Arc<dyn LocalAnswer>>,
    /// How long a request waits for the upstream to come up when it was down at start
    /// (default 10 s); then it gets the [`OnUpstreamError`] answer.
    pub upstream_wait: Duration,
}

impl ProxyConfig {
    /// A proxy from `server` to `upstream` in `mode`; the other settings at their defaults.
    pub fn new(server: ServerConfig, upstream: ClientBuilder, mode: Upstream) -> Self {
        ProxyConfig {
            server,
            upstream,
            mode,
            on_upstream_error: OnUpstreamError::Close,
            retry_sent: false,
            key_wait: Duration::from_secs(10),
            local: None,
            upstream_wait: Duration::from_secs(10),
        }
    }
}

/// A bound proxy: [`bind`](Proxy::bind) it, then [`serve`](Proxy::serve).
#[derive(Debug)]
pub struct Proxy {
    server: Server,
    forward: Forward,
}

impl Proxy {
    /// Binds the client side on `listen` and starts connecting the upstream side in the
    /// background: an upstream down at start is retried with backoff (a `warn` line per
    /// failed try) while requests wait for it up to [`ProxyConfig::upstream_wait`].
    ///
    /// # Errors
    /// [`ProxyError::Listen`] when the address cannot be bound or the server settings are
    /// refused; [`ProxyError::Connect`] when the client settings are refused.
    ///
    /// # Cancel safety
    /// Dropping the future drops what was set up so far.
    pub async fn bind(
        listen: impl ToSocketAddrs + fmt::Display,
        config: ProxyConfig,
    ) -> Result<Self, ProxyError> {
        let ProxyConfig {
            server,
            upstream,
            mode,
            on_upstream_error,
            retry_sent,
            key_wait,
            local,
            upstream_wait,
        } = config;
        connect::validate(&upstream, &mode).map_err(ProxyError::Connect)?;
        let requests = Arc::new(tokio::sync::Semaphore::new(server.max_conns.max(1)));
        let client_framing = crate::frame::FrameCodec::new(server.framing.clone());
        let grace = server.shutdown_grace;
        let server = Server::bind(listen, server)
            .await
            .map_err(ProxyError::Listen)?;
        let stop = CancellationToken::new();
        let link = connect::spawn(upstream, mode.clone(), retry_sent, stop.clone());
        let keys = match &mode {
            Upstream::Mux { correlate, .. } => Some(keys::KeyTable::new(Arc::clone(correlate))),
            _ => None,
        };
        let forward = Forward::new(forward::Inner {
            link,
            keys,
            on_error: on_upstream_error,
            retry_sent,
            key_wait,
            local,
            requests,
            upstream_wait,
            stop,
            client_framing,
            drain: (server.shutdown_token(), grace),
        });
        Ok(Proxy { server, forward })
    }

    /// The client side's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Cancel it to drain: the port refuses at once, requests already read get their
    /// replies (those still without one a tenth of the server's `shutdown_grace`, at most
    /// 250 ms, before its end get the [`OnUpstreamError`] answer), then the upstream
    /// connections close (a template session logs out).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.server.shutdown_token()
    }

    /// The handler, for a caller that runs the server itself.
    pub fn forward(&self) -> Forward {
        self.forward.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains and closes upstream.
    ///
    /// # Errors
    /// [`ProxyError::Listen`] as [`Server::serve`].
    ///
    /// # Cancel safety
    /// As [`Server::serve`].
    pub async fn serve(self) -> Result<ShutdownReport, ProxyError> {
        let report = self.server.serve(self.forward.clone()).await;
        self.forward.close().await;
        report.map_err(ProxyError::Listen)
    }

    /// As [`serve`](Self::serve), draining on the first SIGINT/SIGTERM.
    ///
    /// # Errors
    /// As [`serve`](Self::serve).
    ///
    /// # Cancel safety
    /// As [`Server::serve_until_signal`].
    pub async fn serve_until_signal(
        self,
        signals: ShutdownSignals,
    ) -> Result<ShutdownReport, ProxyError> {
        let report = self
            .server
            .serve_until_signal(self.forward.clone(), signals)
            .await;
        self.forward.close().await;
        report.map_err(ProxyError::Listen)
    }
}
