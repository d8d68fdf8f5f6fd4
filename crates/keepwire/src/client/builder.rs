//! [`ClientBuilder`]: the configuration every client type is built from.

use std::sync::Arc;
use std::time::Duration;

use crate::frame::FramingSpec;
use crate::liveness::{Heartbeat, HeartbeatSpec, PingConfig};
use crate::socket::SocketOptions;

use super::config::ClientConfig;

use super::core::Matching;
use super::state::ClientState;
use super::{ClientError, Correlate, Duplex, LongClient, MuxClient, Pool, ShortClient};

/// The shortest reconnect and down backoff, base and ceiling alike: 20 ms, so that no
/// jittered delay (drawn from `[d/2, d]`) is under 10 ms. A zero backoff would retry a
/// refused endpoint, or probe a dead preferred one, in a busy loop; `PingConfig` clamps its
/// durations for the same reason.
pub const MIN_BACKOFF: Duration = Duration::from_millis(20);

/// Framing, endpoints, timeouts, heartbeats and backoff for a client; finish with
/// [`build_short`](Self::build_short), [`connect_long`](Self::connect_long),
/// [`connect_mux`](Self::connect_mux), [`pool`](Self::pool) or
/// [`connect_duplex`](Self::connect_duplex).
///
/// Defaults: connect timeout 5 s, request timeout 30 s, write timeout 10 s; heartbeats
/// answered with the empty frame where the framing has one, no pings sent, no probe on
/// connect; reconnect backoff 100 ms doubling to 10 s; a failed endpoint retried after 1 s
/// doubling to 60 s; one request in flight on a long connection; fail back to a better
/// endpoint when it recovers; `TCP_NODELAY` on.
///
/// Any duration may be as large as [`Duration::MAX`]: deadlines are computed with
/// [`deadline::after`](crate::deadline::after), which saturates at
/// [`FAR_FUTURE`](crate::deadline::FAR_FUTURE) (never, for a connection) instead of
/// panicking.
///
/// ```
/// use std::time::Duration;
/// use keepwire::client::ClientBuilder;
/// let b = ClientBuilder::new("len:ascii:4".parse().unwrap(), ["10.0.0.1:7000", "10.0.0.2:7000"])
///     .connect_timeout(Duration::from_secs(2))
///     .request_timeout(Duration::from_secs(5))
///     .heartbeat("interval=30s,timeout=5s,misses=3".parse().unwrap())
///     .probe_on_connect(true);
/// let _client = b.build_short();
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    cfg: ClientConfig,
}

impl ClientBuilder {
    /// A client of `framing` frames to `endpoints`, in order of preference.
    pub fn new<I, S>(framing: FramingSpec, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder {
            cfg: ClientConfig::new(framing, endpoints.into_iter().map(Into::into).collect()),
        }
    }

    /// How long a TCP connect (plus the probe heartbeat, if on) may take per endpoint; zero is
    /// refused by [`validate`](Self::validate).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.cfg.connect_timeout = d;
        self
    }

    /// How long a request may take in all: waiting for a connection, writing, and the reply.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.cfg.request_timeout = d;
        self
    }

    /// How long a write may wait for a peer that does not read.
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.cfg.write_timeout = d;
        self
    }

    /// Heartbeats from a `--heartbeat` spec: `off` stops answering them; with
    /// `interval`/`timeout`/`misses` the client also pings idle connections and, for
    /// [`probe_on_connect`](Self::probe_on_connect), uses `timeout` for the probe.
    pub fn heartbeat(mut self, spec: HeartbeatSpec) -> Self {
        self.cfg.heartbeat = spec.heartbeat();
        self.cfg.ping = spec.ping_config();
        self
    }

    /// How heartbeat frames are recognised and built (`None`: no heartbeat handling).
    pub fn heartbeat_frames(mut self, hb: Option<Arc<dyn Heartbeat>>) -> Self {
        self.cfg.heartbeat = hb;
        self
    }

    /// Ping idle connections (`None`: never ping).
    ///
    /// Pings are heartbeat frames: with heartbeats off
    /// ([`heartbeat_frames`](Self::heartbeat_frames)`(None)`), or with a ping or pong the
    /// framing cannot carry (the empty frame under `fixed`), the client is refused when
    /// built ([`validate`](Self::validate)) instead of declaring healthy peers dead.
    pub fn ping(mut self, ping: Option<PingConfig>) -> Self {
        self.cfg.ping = ping;
        self
    }

    /// Confirm each new connection with one heartbeat before writing a request on it; an
    /// endpoint whose kernel accepts but whose service does not answer is then skipped.
    pub fn probe_on_connect(mut self, on: bool) -> Self {
        self.cfg.probe_on_connect = on;
        self
    }

    /// Reconnect backoff of a long connection: `base`, doubling up to `max`, with jitter.
    ///
    /// Both are at least [`MIN_BACKOFF`] (20 ms; less is taken as that), and `max` at least
    /// `base`: a zero backoff reconnects in a busy loop while the endpoint is down.
    pub fn reconnect_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.cfg.reconnect_base = base.max(MIN_BACKOFF);
        self.cfg.reconnect_max = max.max(self.cfg.reconnect_base);
        self
    }

    /// How long a failed endpoint stays marked down: `base`, doubling per failure up to
    /// `max`. It also spaces the fail-back probes of a better endpoint that is down.
    ///
    /// Both are at least [`MIN_BACKOFF`] (20 ms; less is taken as that), and `max` at least
    /// `base`: a zero backoff probes a dead preferred endpoint in a busy loop.
    pub fn down_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.cfg.down_base = base.max(MIN_BACKOFF);
        self.cfg.down_max = max.max(self.cfg.down_base);
        self
    }

    /// TCP options for client sockets.
    pub fn socket_options(mut self, s: SocketOptions) -> Self {
        self.cfg.socket = s;
        self
    }

    /// Requests written on a connection before their replies come back: 1 (the long
    /// client's default) is strict request/response; more pipelines them (replies in order).
    /// A mux client defaults to 1024.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.cfg.max_in_flight = Some(n.max(1));
        self
    }

    /// Requests queued for a long connection before callers wait (the queue is bounded).
    pub fn queue(mut self, n: usize) -> Self {
        self.cfg.queue = n.max(1);
        self
    }

    /// Move back to a better endpoint once it answers again (default on). The probe and the
    /// move happen only while no request is in flight: under steady overlapping load the
    /// client stays where it is until an idle moment.
    pub fn fail_back(mut self, on: bool) -> Self {
        self.cfg.fail_back = on;
        self
    }

    /// Short client: a request that may have been sent is retried once on the next endpoint.
    /// Only for idempotent requests. Off by default.
    pub fn retry_sent(mut self, on: bool) -> Self {
        self.cfg.retry_sent = on;
        self
    }

    /// Unsolicited frames buffered for the reader of [`MuxClient::unsolicited`] and duplex
    /// receivers; past that they are dropped and counted.
    pub fn unsolicited_capacity(mut self, n: usize) -> Self {
        self.cfg.unsolicited = n.max(1);
        self
    }

    /// Short client: half-close after writing the request (default: only for `eof`
    /// framing, where the server needs the FIN to see the request end).
    pub fn half_close(mut self, on: bool) -> Self {
        self.cfg.half_close = Some(on);
        self
    }

    /// Pool: how long a checkout may wait for a free connection (default 5 s).
    pub fn checkout_timeout(mut self, d: Duration) -> Self {
        self.cfg.checkout_timeout = d;
        self
    }

    /// Pool: close connections idle this long (default never; zero is taken as 1 ms).
    pub fn max_idle(mut self, d: Option<Duration>) -> Self {
        self.cfg.max_idle = d;
        self
    }

    /// Pool: close connections this old (default never; zero is taken as 1 ms).
    pub fn max_lifetime(mut self, d: Option<Duration>) -> Self {
        self.cfg.max_lifetime = d;
        self
    }

    /// A session on every connection (`None`, the default: none): the hook's login is
    /// written and its answer checked on each new connection before any request (a refusal
    /// fails with [`ClientError::is_login`]), its logout written before a graceful close,
    /// and its answers to the partner's own requests written as they come. See
    /// [`SessionHook`](super::SessionHook).
    pub fn session(mut self, hook: Option<Arc<dyn super::SessionHook>>) -> Self {
        self.cfg.session = hook;
        self
    }

    /// How long the answer to a login (or a logout) may take (default 5 s).
    pub fn login_timeout(mut self, d: Duration) -> Self {
        self.cfg.login_timeout = d;
        self
    }

    /// TLS on every connection (default none): the handshake runs right after the connect,
    /// within the connect timeout, before the probe and the login; every endpoint's
    /// certificate is checked against the name in its address unless `tls` names one. A
    /// failed handshake marks the endpoint down like a refused connect, its cause named
    /// (unknown CA, name mismatch, expired, no client certificate). The async clients
    /// only: the blocking ones refuse a config with TLS (see `blocking::tls_connect`).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.cfg.tls = Some(tls);
        self
    }

    /// Connect to every endpoint through this SOCKS5 proxy (default none). The endpoint
    /// list, failover and heartbeats work as without it; heartbeats are what notices a dead
    /// far end behind the proxy, which TCP keepalive cannot (docs/tls.md). The async
    /// clients only.
    #[cfg(feature = "socks")]
    pub fn socks5(mut self, proxy: crate::socks::Socks5) -> Self {
        self.cfg.socks5 = Some(proxy);
        self
    }

    /// Checks that the connect timeout is above zero and that the heartbeat settings can
    /// work on this framing; a [`ShortClient`] calls
    /// it before each request, and every `connect_*` and [`pool`](Self::pool) call
    /// [`validate_long`](Self::validate_long), which adds the long connection's rule.
    ///
    /// - a zero [`connect_timeout`](Self::connect_timeout) would fail every connect and
    ///   mark every endpoint down;
    /// - pinging ([`ping`](Self::ping)) and [`probe_on_connect`](Self::probe_on_connect)
    ///   write heartbeat frames, so they need them ([`heartbeat_frames`](Self::heartbeat_frames)
    ///   not `None`), and the ping must encode under the framing;
    /// - the pong must encode whenever pings are sent or can arrive: the peer answers ours
    ///   with it, and we answer its pings with it.
    ///
    /// Without this check each idle interval "sent" a ping that could not be written, and
    /// the connection was dropped (or the healthy peer marked down) again and again.
    ///
    /// # Errors
    /// [`ClientError::is_config`] (not sent), saying what to change, e.g. `bad client
    /// config: the heartbeat ping cannot be sent under fixed:4: give ping=/pong= payloads
    /// the framing can carry`.
    ///
    /// ```
    /// use keepwire::client::ClientBuilder;
    /// let b = ClientBuilder::new("fixed:4".parse().unwrap(), ["127.0.0.1:7000"])
    ///     .heartbeat("interval=30s".parse().unwrap());
    /// assert!(b.validate().unwrap_err().is_config());
    /// let b = ClientBuilder::new("fixed:4".parse().unwrap(), ["127.0.0.1:7000"])
    ///     .heartbeat("interval=30s,ping=text:PING,pong=text:PONG".parse().unwrap());
    /// assert!(b.validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), ClientError> {
        self.cfg.validate()
    }

    /// [`validate`](Self::validate), plus the rule of a long connection (as
    /// [`connect_long`](Self::connect_long), [`connect_mux`](Self::connect_mux),
    /// [`connect_duplex`](Self::connect_duplex) and [`pool`](Self::pool) use it): `eof`
    /// framing ends each message by closing the connection, so it needs a short client.
    ///
    /// # Errors
    /// [`ClientError::is_config`] (not sent), as [`validate`](Self::validate).
    ///
    /// ```
    /// use keepwire::client::ClientBuilder;
    /// let b = ClientBuilder::new("eof".parse().unwrap(), ["127.0.0.1:7000"]);
    /// assert!(b.validate().is_ok()); // fine for a short client
    /// assert!(b.validate_long().unwrap_err().is_config());
    /// ```
    pub fn validate_long(&self) -> Result<(), ClientError> {
        self.cfg.validate_long()
    }

    /// The settings collected, for the clients to read.
    pub(crate) fn into_config(self) -> ClientConfig {
        self.cfg
    }

    /// A client that connects per request.
    ///
    /// A configuration that [`validate`](Self::validate) refuses makes every request fail
    /// with [`ClientError::is_config`], before connecting.
    pub fn build_short(self) -> ShortClient {
        ShortClient::new(Arc::new(ClientState::new(self.cfg, Matching::Fifo)))
    }

    /// Connects one long connection (trying the endpoints in order) and keeps it alive.
    ///
    /// # Errors
    /// [`ClientError::is_config`] when [`validate_long`](Self::validate_long) refuses the
    /// configuration; [`ClientError::is_connect`] naming every endpoint when none could be
    /// connected to.
    ///
    /// # Cancel safety
    /// Dropping the future drops the connection being set up; nothing is left running.
    pub async fn connect_long(self) -> Result<LongClient, ClientError> {
        LongClient::connect(self.cfg).await
    }

    /// Connects a multiplexed connection whose replies are matched by `correlate`.
    ///
    /// # Errors
    /// As [`connect_long`](Self::connect_long).
    ///
    /// # Cancel safety
    /// As [`connect_long`](Self::connect_long).
    pub async fn connect_mux(self, correlate: impl Correlate) -> Result<MuxClient, ClientError> {
        MuxClient::connect(self.cfg, Arc::new(correlate)).await
    }

    /// A pool of up to `size` long connections.
    ///
    /// # Errors
    /// As [`connect_long`](Self::connect_long), for the first connection.
    ///
    /// # Cancel safety
    /// As [`connect_long`](Self::connect_long).
    pub async fn pool(self, size: u32) -> Result<Pool, ClientError> {
        Pool::connect(self.cfg, size).await
    }

    /// Connects a long connection split into a sender and a receiver.
    ///
    /// # Errors
    /// As [`connect_long`](Self::connect_long).
    ///
    /// # Cancel safety
    /// As [`connect_long`](Self::connect_long).
    pub async fn connect_duplex(self) -> Result<Duplex, ClientError> {
        Duplex::connect(self.cfg).await
    }
}
