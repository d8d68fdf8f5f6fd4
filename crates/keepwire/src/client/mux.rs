//! [`MuxClient`]: many requests in flight on one connection, replies matched by key.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::config::ClientConfig;
use super::core::Matching;
use super::state::ClientState;
use super::task;
use super::ticket::Handle;
use super::{ClientError, ClientStats, Correlate, EndpointStatus};

/// A multiplexed long connection: any number of requests in flight (up to
/// [`ClientBuilder::max_in_flight`](super::ClientBuilder::max_in_flight), default 1024), each reply matched to its request by a
/// [`Correlate`] key taken from the frame (a byte range such as CMPP's `Sequence_Id`, or a
/// closure), in any order, each request with its own timeout. Frames that match no request
/// in flight (server-initiated messages, or replies that came after their request timed
/// out) go to the [`unsolicited`](Self::unsolicited) stream.
///
/// Keeps its connection alive and fails over like [`LongClient`](super::LongClient). A request
/// whose key is already in flight fails at once, not sent.
///
/// Fail-back to a better endpoint needs an idle moment, as on a
/// [`LongClient`](super::LongClient#fail-back-needs-an-idle-moment): with many requests
/// overlapping, something is always in flight, and the client stays on the current endpoint
/// until nothing is.
///
/// # Reusing a key after a timeout
/// A request that timed out after it was written may still be answered. Its key is kept as
/// a *tombstone* until that late reply arrives (it then goes to the unsolicited stream and
/// counts in [`ClientStats::late_replies`]) or a window passes: the timed-out request's own
/// timeout, at least 1 s and at most 30 s. Meanwhile a request with the same key (a retry
/// with the same sequence number or STAN) is refused at once with
/// [`ClientErrorKind::Key`](super::ClientErrorKind::Key), not sent, and a message saying how
/// long to wait at most; it is not held, so a retry loop decides for itself and other keys
/// are never held up behind it. Without this the late reply would be taken as the retry's
/// reply. At most `max_in_flight` keys are tombstoned per connection; past that the one
/// expiring first is dropped early. A new connection starts with none (it owes no late
/// replies). A request whose caller gives up early stays in flight until its timeout.
///
/// The server must answer each request at most once: the tombstone goes with the first late
/// reply, so a second copy of it is taken as the reply of a retry with the same key then in
/// flight (see `client/tombstone.rs`). Against a peer that may answer twice, give each
/// attempt a fresh key.
///
/// ```
/// use bytes::Bytes;
/// use keepwire::client::{ByteRange, ClientBuilder};
/// # use keepwire::server::{Request, Server, ServerConfig, service_fn};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = Server::bind("127.0.0.1:0", ServerConfig::new("len:be:4".parse()?)).await?;
/// # let addr = server.local_addr().to_string();
/// # tokio::spawn(server.serve(service_fn(|r: Request| async move { Ok::<_, std::convert::Infallible>(Some(r.frame)) })));
/// // The first 4 bytes of every body are a sequence number the server echoes back.
/// let mux = ClientBuilder::new("len:be:4".parse()?, [addr]).connect_mux(ByteRange::new(0, 4)).await?;
/// let (a, b) = tokio::join!(
///     mux.request(Bytes::from_static(b"\0\0\0\x01first")),
///     mux.request(Bytes::from_static(b"\0\0\0\x02second")),
/// );
/// assert_eq!(a?, &b"\0\0\0\x01first"[..]);
/// assert_eq!(b?, &b"\0\0\0\x02second"[..]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MuxClient {
    handle: Handle,
    unsolicited: Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>,
}

impl MuxClient {
    pub(crate) async fn connect(
        cfg: ClientConfig,
        correlate: Arc<dyn Correlate>,
    ) -> Result<Self, ClientError> {
        cfg.validate_long()?;
        let state = Arc::new(ClientState::new(cfg, Matching::Keyed(correlate)));
        let first = state.connect_plan().await?;
        let (handle, rx) = task::spawn(state, first);
        Ok(MuxClient {
            handle,
            unsolicited: Arc::new(Mutex::new(Some(rx))),
        })
    }

    /// Sends `frame` (its key taken by the [`Correlate`]) and waits for the reply with the
    /// same key, within the request timeout.
    ///
    /// # Errors
    /// As [`LongClient::request`](super::LongClient::request); a frame with no key, or a key
    /// already in flight, fails as not sent.
    ///
    /// # Cancel safety
    /// Dropping the future before the request was written withdraws it; after, its reply
    /// goes to the unsolicited stream when it comes (counted as late), and its key stays in
    /// flight until the request's timeout, then tombstoned (see the type docs).
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

    /// Sends `frame` without waiting for a reply (e.g. a response to a server-initiated
    /// message); done once written.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    ///
    /// # Cancel safety
    /// As [`request`](Self::request).
    pub async fn send(&self, frame: Bytes) -> Result<(), ClientError> {
        self.handle
            .call(frame, false, None, self.handle.state.cfg.request_timeout)
            .await
            .map(|_| ())
    }

    /// The stream of frames that matched no request. The first call takes it; later calls
    /// return `None`. Unread frames beyond [`ClientBuilder::unsolicited_capacity`](super::ClientBuilder::unsolicited_capacity) are dropped
    /// and counted in [`ClientStats::unsolicited_dropped`].
    pub fn unsolicited(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.unsolicited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Closes the connection gracefully and waits until it is closed: no new request is
    /// taken (clones share the connection, so a request made through any clone after this
    /// call fails at once with [`ClientError::is_shutdown`], not sent), requests already
    /// queued or in flight end (answered, or failed at their own deadline: never
    /// silently), the socket is shut down (the server reads end of stream) and the
    /// connection task has ended when this returns. It takes at most the longest
    /// remaining request deadline (plus the write timeout for the FIN); with no
    /// connection up (reconnecting or backing off) it returns at once, and requests
    /// waiting for one fail not sent. The unsolicited stream ends once the task has ended.
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
    pub async fn close(self) {
        self.handle.close().await;
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        self.handle.state.is_connected()
    }

    /// Every endpoint's health.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.handle.state.status()
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.handle.state.stats()
    }
}

request_service!(MuxClient);
