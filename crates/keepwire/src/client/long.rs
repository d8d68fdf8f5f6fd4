//! [`LongClient`]: one persistent connection, kept alive, reconnected and failed over.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::config::ClientConfig;
use super::core::Matching;
use super::state::ClientState;
use super::task;
use super::ticket::Handle;
use super::{ClientError, ClientStats, EndpointStatus};

/// A long connection: requests and replies in order on one TCP connection that the client
/// keeps alive (heartbeats through [`Liveness`](crate::liveness::Liveness)), reconnects with
/// exponential backoff and jitter when lost, and moves along the endpoint list when an
/// endpoint fails or stops answering heartbeats.
///
/// By default one request is in flight at a time (strict request/response); concurrent
/// callers queue. [`ClientBuilder::max_in_flight`](super::ClientBuilder::max_in_flight) pipelines: up to N requests are written
/// before their replies, which are matched in order. A reply that does not come within the
/// request timeout closes the connection (later replies could not be matched any more) and
/// the client reconnects.
///
/// A lost connection that proved itself (a reply or a pong to our ping came on it, or it
/// lived at least the reconnect backoff's ceiling) is reconnected at once and the backoff
/// starts over; one that died young with nothing delivered is followed by the next backoff
/// delay, so a peer that accepts and closes at once (or writes "busy" and closes) is not
/// hammered. Closed or reset young like that, its endpoint is also marked down, so the
/// reconnect tries the next endpoint first.
///
/// # Fail-back needs an idle moment
/// On an endpoint other than the first, the client probes a better endpoint once it is due
/// a retry ([`ClientBuilder::fail_back`](super::ClientBuilder::fail_back)), but it starts the probe, and moves over, only
/// while no request is in flight, so that no reply is lost in the move. Under steady
/// overlapping load (a request always in flight) it stays on the current endpoint until
/// the first idle moment.
///
/// Cloning is cheap: clones share the connection. It closes when the last clone is dropped,
/// or at once for every clone with [`close`](Self::close), which also waits for the close.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use keepwire::client::ClientBuilder;
/// use keepwire::liveness::PingConfig;
/// # use keepwire::server::{Request, Server, ServerConfig, service_fn};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = Server::bind("127.0.0.1:0", ServerConfig::new("len:be:2".parse()?)).await?;
/// # let addr = server.local_addr().to_string();
/// # tokio::spawn(server.serve(service_fn(|r: Request| async move { Ok::<_, std::convert::Infallible>(Some(r.frame)) })));
/// let client = ClientBuilder::new("len:be:2".parse()?, [addr, "127.0.0.1:1".to_string()])
///     .request_timeout(Duration::from_secs(2))
///     .ping(Some(PingConfig { interval: Duration::from_secs(30), timeout: Duration::from_secs(5), misses: 3 }))
///     .connect_long()
///     .await?;
/// match client.request(Bytes::from_static(b"0800")).await {
///     Ok(reply) => assert_eq!(reply, "0800"),
///     Err(e) if e.is_not_sent() => { /* safe to retry */ }
///     Err(e) => return Err(e.into()),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LongClient {
    handle: Handle,
}

impl LongClient {
    pub(crate) async fn connect(cfg: ClientConfig) -> Result<Self, ClientError> {
        cfg.validate_long()?;
        Self::connect_state(Arc::new(ClientState::new(cfg, Matching::Fifo))).await
    }

    pub(crate) async fn connect_state(state: Arc<ClientState>) -> Result<Self, ClientError> {
        let first = state.connect_plan().await?;
        // Nothing reads unsolicited frames: they are counted and dropped.
        let (handle, _) = task::spawn(state, first);
        Ok(LongClient { handle })
    }

    /// Sends `frame` and waits for its reply, within the request timeout.
    ///
    /// # Errors
    /// A [`ClientError`] saying whether the request may have been sent. Requests not sent
    /// are never lost: they fail with [`ClientError::is_not_sent`] or are moved to the next
    /// connection.
    ///
    /// # Cancel safety
    /// Dropping the future before the request was written withdraws it (it is never
    /// written); after, the reply is discarded when it comes and the connection stays in
    /// step.
    pub async fn request(&self, frame: Bytes) -> Result<Bytes, ClientError> {
        self.request_timeout(frame, self.handle.state.cfg.request_timeout)
            .await
    }

    /// [`request`](Self::request) with its own timeout.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    ///
    /// # Cancel safety
    /// As [`request`](Self::request).
    pub async fn request_timeout(
        &self,
        frame: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, ClientError> {
        self.handle.call(frame, true, None, timeout).await
    }

    /// Closes the connection gracefully and waits until it is closed: no new request is
    /// taken (clones share the connection, so a request made through any clone after this
    /// call fails at once with [`ClientError::is_shutdown`], not sent), requests already
    /// queued or in flight end (answered, or failed at their own deadline: never
    /// silently), the socket is shut down (the server reads end of stream) and the
    /// connection task has ended when this returns. It takes at most the longest
    /// remaining request deadline (plus the write timeout for the FIN); with no
    /// connection up (reconnecting or backing off) it returns at once, and requests
    /// waiting for one fail not sent.
    ///
    /// Dropping every clone still closes the connection as before, without waiting.
    ///
    /// # Errors
    /// None: every request in flight gets its own outcome.
    ///
    /// # Cancel safety
    /// The close is decided at the first poll: dropping the future after it leaves the
    /// connection closing on its own (requests in flight still end as above); dropped
    /// before, it only drops this handle.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use keepwire::client::ClientBuilder;
    /// # use keepwire::server::{Request, Server, ServerConfig, service_fn};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = Server::bind("127.0.0.1:0", ServerConfig::new("line".parse()?)).await?;
    /// # let addr = server.local_addr().to_string();
    /// # tokio::spawn(server.serve(service_fn(|r: Request| async move { Ok::<_, std::convert::Infallible>(Some(r.frame)) })));
    /// let client = ClientBuilder::new("line".parse()?, [addr]).connect_long().await?;
    /// let other = client.clone();
    /// client.request(Bytes::from_static(b"last")).await?;
    /// client.close().await;
    /// assert!(other.request(Bytes::from_static(b"late")).await.unwrap_err().is_shutdown());
    /// # Ok(()) }
    /// ```
    pub async fn close(self) {
        self.handle.close().await;
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        self.handle.state.is_connected()
    }

    /// The endpoint connected to now.
    pub fn current_endpoint(&self) -> Option<String> {
        self.handle.state.current_endpoint()
    }

    /// Every endpoint's health.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.handle.state.status()
    }

    /// Counters: connects, heartbeats, unsolicited frames.
    pub fn stats(&self) -> ClientStats {
        self.handle.state.stats()
    }
}

request_service!(LongClient);
