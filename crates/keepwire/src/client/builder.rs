//! [`ClientBuilder`]: the configuration every client type is built from.

use std::sync::Arc;
use std::time::Duration;

use crate::frame::FramingSpec;
use crate::liveness::{EmptyHeartbeat, Heartbeat, HeartbeatSpec, PingConfig};
use crate::socket::SocketOptions;

use super::conn::{Link, Matching};
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
    pub(crate) framing: FramingSpec,
    pub(crate) endpoints: Vec<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) heartbeat: Option<Arc<dyn Heartbeat>>,
    pub(crate) ping: Option<PingConfig>,
    pub(crate) probe_on_connect: bool,
    pub(crate) reconnect_base: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) down_base: Duration,
    pub(crate) down_max: Duration,
    pub(crate) socket: SocketOptions,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) queue: usize,
    pub(crate) fail_back: bool,
    pub(crate) retry_sent: bool,
    pub(crate) unsolicited: usize,
    pub(crate) half_close: Option<bool>,
    pub(crate) checkout_timeout: Duration,
    pub(crate) max_idle: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
}

impl ClientBuilder {
    /// A client of `framing` frames to `endpoints`, in order of preference.
    pub fn new<I, S>(framing: FramingSpec, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let heartbeat: Option<Arc<dyn Heartbeat>> = if framing.has_empty_frame() {
            Some(Arc::new(EmptyHeartbeat))
        } else {
            None
        };
        ClientBuilder {
            framing,
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            heartbeat,
            ping: None,
            probe_on_connect: false,
            reconnect_base: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            down_base: Duration::from_secs(1),
            down_max: Duration::from_secs(60),
            socket: SocketOptions::default(),
            max_in_flight: None,
            queue: 1024,
            fail_back: true,
            retry_sent: false,
            unsolicited: 1024,
            half_close: None,
            checkout_timeout: Duration::from_secs(5),
            max_idle: None,
            max_lifetime: None,
        }
    }

    /// How long a TCP connect (plus the probe heartbeat, if on) may take per endpoint.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long a request may take in all: waiting for a connection, writing, and the reply.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// How long a write may wait for a peer that does not read.
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.write_timeout = d;
        self
    }

    /// Heartbeats from a `--heartbeat` spec: `off` stops answering them; with
    /// `interval`/`timeout`/`misses` the client also pings idle connections and, for
    /// [`probe_on_connect`](Self::probe_on_connect), uses `timeout` for the probe.
    pub fn heartbeat(mut self, spec: HeartbeatSpec) -> Self {
        self.heartbeat = spec.heartbeat();
        self.ping = spec.ping_config();
        self
    }

    /// How heartbeat frames are recognised and built (`None`: no heartbeat handling).
    pub fn heartbeat_frames(mut self, hb: Option<Arc<dyn Heartbeat>>) -> Self {
        self.heartbeat = hb;
        self
    }

    /// Ping idle connections (`None`: never ping).
    ///
    /// Pings are heartbeat frames: with heartbeats off
    /// ([`heartbeat_frames`](Self::heartbeat_frames)`(None)`), or with a ping or pong the
    /// framing cannot carry (the empty frame under `fixed`), the client is refused when
    /// built ([`validate`](Self::validate)) instead of declaring healthy peers dead.
    pub fn ping(mut self, ping: Option<PingConfig>) -> Self {
        self.ping = ping;
        self
    }

    /// Confirm each new connection with one heartbeat before writing a request on it; an
    /// endpoint whose kernel accepts but whose service does not answer is then skipped.
    pub fn probe_on_connect(mut self, on: bool) -> Self {
        self.probe_on_connect = on;
        self
    }

    /// Reconnect backoff of a long connection: `base`, doubling up to `max`, with jitter.
    ///
    /// Both are at least [`MIN_BACKOFF`] (20 ms; less is taken as that), and `max` at least
    /// `base`: a zero backoff reconnects in a busy loop while the endpoint is down.
    pub fn reconnect_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.reconnect_base = base.max(MIN_BACKOFF);
        self.reconnect_max = max.max(self.reconnect_base);
        self
    }

    /// How long a failed endpoint stays marked down: `base`, doubling per failure up to
    /// `max`. It also spaces the fail-back probes of a better endpoint that is down.
    ///
    /// Both are at least [`MIN_BACKOFF`] (20 ms; less is taken as that), and `max` at least
    /// `base`: a zero backoff probes a dead preferred endpoint in a busy loop.
    pub fn down_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.down_base = base.max(MIN_BACKOFF);
        self.down_max = max.max(self.down_base);
        self
    }

    /// TCP options for client sockets.
    pub fn socket_options(mut self, s: SocketOptions) -> Self {
        self.socket = s;
        self
    }

    /// Requests written on a connection before their replies come back: 1 (the long
    /// client's default) is strict request/response; more pipelines them (replies in order).
    /// A mux client defaults to 1024.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }

    /// Requests queued for a long connection before callers wait (the queue is bounded).
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }

    /// Move back to a better endpoint once it answers again (default on). The probe and the
    /// move happen only while no request is in flight: under steady overlapping load the
    /// client stays where it is until an idle moment.
    pub fn fail_back(mut self, on: bool) -> Self {
        self.fail_back = on;
        self
    }

    /// Short client: a request that may have been sent is retried once on the next endpoint.
    /// Only for idempotent requests. Off by default.
    pub fn retry_sent(mut self, on: bool) -> Self {
        self.retry_sent = on;
        self
    }

    /// Unsolicited frames buffered for the reader of [`MuxClient::unsolicited`] and duplex
    /// receivers; past that they are dropped and counted.
    pub fn unsolicited_capacity(mut self, n: usize) -> Self {
        self.unsolicited = n.max(1);
        self
    }

    /// Short client: half-close after writing the request (default: only for `eof`
    /// framing, where the server needs the FIN to see the request end).
    pub fn half_close(mut self, on: bool) -> Self {
        self.half_close = Some(on);
        self
    }

    /// Pool: how long a checkout may wait for a free connection (default 5 s).
    pub fn checkout_timeout(mut self, d: Duration) -> Self {
        self.checkout_timeout = d;
        self
    }

    /// Pool: close connections idle this long (default never; zero is taken as 1 ms).
    pub fn max_idle(mut self, d: Option<Duration>) -> Self {
        self.max_idle = d;
        self
    }

    /// Pool: close connections this old (default never; zero is taken as 1 ms).
    pub fn max_lifetime(mut self, d: Option<Duration>) -> Self {
        self.max_lifetime = d;
        self
    }

    /// R1 of the heartbeat rule: a request that this link's heartbeat classifies as a
    /// heartbeat is refused before a byte is written, since the peer would answer it as a
    /// ping (and a same-bytes pong would come back as the "reply"). With heartbeats off the
    /// same frame is plain data. Short clients call it too: a short server answers a
    /// heartbeat (a probe) and waits for the request.
    pub(crate) fn refuse_heartbeat_frame(&self, frame: &[u8]) -> Result<(), ClientError> {
        match self.heartbeat.as_deref() {
            Some(h) if h.classify(frame).is_some() => Err(ClientError::heartbeat_frame(frame)),
            _ => Ok(()),
        }
    }

    /// Checks that the heartbeat settings can work on this framing; every `connect_*` and
    /// [`pool`](Self::pool) call it first, and a [`ShortClient`] before each request.
    ///
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
        let sends = self.ping.is_some() || self.probe_on_connect;
        let Some(hb) = self.heartbeat.as_deref() else {
            if self.ping.is_some() {
                return Err(ClientError::config(
                    "pings need heartbeat frames, and heartbeats are off (heartbeat_frames(None)): \
                     give heartbeat frames, or ping(None)",
                ));
            }
            if self.probe_on_connect {
                return Err(ClientError::config(
                    "the probe on connect needs heartbeat frames, and heartbeats are off \
                     (heartbeat_frames(None)): give heartbeat frames, or probe_on_connect(false)",
                ));
            }
            return Ok(());
        };
        if let Some(p) = self.ping {
            if p.interval < crate::liveness::MIN_PING_INTERVAL
                || p.timeout < crate::liveness::MIN_PING_TIMEOUT
            {
                return Err(ClientError::config(format!(
                    "ping interval {:?} and timeout {:?}: the interval must be at least 100ms \
                     (a peer answers same-bytes heartbeats at most every 50ms) and the timeout \
                     at least 10ms",
                    p.interval, p.timeout
                )));
            }
        }
        // A heartbeat must go out and come back as one frame: under `eof` none can.
        let encodes = |f: &[u8]| self.framing.carries(f);
        let ping = hb.ping(1);
        let ping_ok = encodes(&ping);
        if sends && !ping_ok {
            if self.framing.is_until_close() {
                return Err(ClientError::config(
                    "no heartbeat can be sent under eof (a message ends only at the close): \
                     turn pings and the probe off",
                ));
            }
            return Err(ClientError::config(format!(
                "the heartbeat ping cannot be sent under {}: give ping=/pong= payloads the \
                 framing can carry",
                self.framing
            )));
        }
        if (sends || ping_ok) && !encodes(&hb.pong(&ping)) {
            return Err(ClientError::config(format!(
                "the heartbeat pong cannot be sent under {}: give ping=/pong= payloads the \
                 framing can carry",
                self.framing
            )));
        }
        Ok(())
    }

    /// A client that connects per request.
    ///
    /// A configuration that [`validate`](Self::validate) refuses makes every request fail
    /// with [`ClientError::is_config`], before connecting.
    pub fn build_short(self) -> ShortClient {
        ShortClient::new(Arc::new(Link::new(self, Matching::Fifo)))
    }

    /// Connects one long connection (trying the endpoints in order) and keeps it alive.
    ///
    /// # Errors
    /// [`ClientError::is_config`] when [`validate`](Self::validate) refuses the
    /// configuration; [`ClientError::is_connect`] naming every endpoint when none could be
    /// connected to.
    ///
    /// # Cancel safety
    /// Dropping the future drops the connection being set up; nothing is left running.
    pub async fn connect_long(self) -> Result<LongClient, ClientError> {
        LongClient::connect(self).await
    }

    /// Connects a multiplexed connection whose replies are matched by `correlate`.
    ///
    /// # Errors
    /// As [`connect_long`](Self::connect_long).
    ///
    /// # Cancel safety
    /// As [`connect_long`](Self::connect_long).
    pub async fn connect_mux(self, correlate: impl Correlate) -> Result<MuxClient, ClientError> {
        MuxClient::connect(self, Arc::new(correlate)).await
    }

    /// A pool of up to `size` long connections.
    ///
    /// # Errors
    /// As [`connect_long`](Self::connect_long), for the first connection.
    ///
    /// # Cancel safety
    /// As [`connect_long`](Self::connect_long).
    pub async fn pool(self, size: u32) -> Result<Pool, ClientError> {
        Pool::connect(self, size).await
    }

    /// Connects a long connection split into a sender and a receiver.
    ///
    /// # Errors
    /// As [`connect_long`](Self::connect_long).
    ///
    /// # Cancel safety
    /// As [`connect_long`](Self::connect_long).
    pub async fn connect_duplex(self) -> Result<Duplex, ClientError> {
        Duplex::connect(self).await
    }
}
