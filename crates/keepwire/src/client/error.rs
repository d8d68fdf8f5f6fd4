//! [`ClientError`]: why a request got no reply, and whether it may have reached the server.

use std::fmt;
use std::io;

use crate::frame::FrameError;

/// Whether a failed request may have reached the server: the one thing a caller needs to know
/// before retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Not a byte of the request was written: retrying it, anywhere, is safe.
    NotSent,
    /// Some or all of the request was written (or handed to the kernel) and no reply came: the
    /// server may have acted on it. Retry only what is idempotent, or after checking.
    SentNoReply,
}

/// Why an endpoint was skipped, as reported by [`ClientError::endpoints`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFailure {
    /// The endpoint as configured (`host:port`).
    pub endpoint: String,
    /// What went wrong there, one lowercase line.
    pub reason: String,
}

impl fmt::Display for EndpointFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.reason)
    }
}

/// What went wrong; see [`ClientError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientErrorKind {
    /// No endpoint could be connected to (refused, unreachable, connect timeout, or the probe
    /// heartbeat went unanswered). [`ClientError::endpoints`] says why for each.
    Connect,
    /// The reply did not come within the request timeout.
    Timeout,
    /// The peer closed the connection (or reset it) before the reply.
    Closed,
    /// The connection was closed because the peer stopped answering heartbeats.
    Dead,
    /// Reading or writing failed.
    Io,
    /// The peer sent bytes that are not a valid frame.
    Frame,
    /// The request cannot be framed (too long for the header, wrong size for `fixed`, ...).
    Unencodable,
    /// No pooled connection became free within the checkout timeout.
    PoolTimeout,
    /// A mux request's correlation key could not be taken from the frame, or is already in
    /// flight.
    Key,
    /// The client was shut down.
    Shutdown,
    /// The request is this link's heartbeat frame (the empty frame, or a `ping=`/`pong=`
    /// payload): the peer would take it as a ping, not a request, so it is not sent. Turn
    /// heartbeats off on the client (and the peer) to send such a frame as data.
    HeartbeatFrame,
    /// The client's configuration cannot work (pings with heartbeats off, a heartbeat the
    /// framing cannot carry): refused when the client is built or connected, before any
    /// connection is made.
    Config,
    /// The partner refused the login of the client's [`SessionHook`](super::SessionHook)
    /// (its status named): not sent.
    Login,
}

/// An error from one of the [clients](super): what went wrong, which endpoint, and whether
/// the request may have reached the server ([`is_not_sent`](Self::is_not_sent) /
/// [`may_have_been_sent`](Self::may_have_been_sent)).
///
/// `Display` is one lowercase line: `request to 127.0.0.1:7000 may have been sent: no reply
/// within 2s`.
///
/// ```
/// use keepwire::client::{ClientError, Delivery};
/// let e = ClientError::timeout(Delivery::SentNoReply, Some("127.0.0.1:7000".into()), std::time::Duration::from_secs(2));
/// assert!(e.is_timeout());
/// assert!(e.may_have_been_sent());
/// assert!(!e.is_not_sent());
/// assert_eq!(e.to_string(), "request to 127.0.0.1:7000 may have been sent: no reply within 2s");
/// ```
#[derive(Debug)]
pub struct ClientError {
    kind: ClientErrorKind,
    delivery: Delivery,
    endpoint: Option<String>,
    detail: String,
    endpoints: Vec<EndpointFailure>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ClientError {
    pub(crate) fn new(
        kind: ClientErrorKind,
        delivery: Delivery,
        detail: impl Into<String>,
    ) -> Self {
        ClientError {
            kind,
            delivery,
            endpoint: None,
            detail: detail.into(),
            endpoints: Vec::new(),
            source: None,
        }
    }

    pub(crate) fn with_endpoint(mut self, endpoint: Option<String>) -> Self {
        self.endpoint = endpoint;
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The reply did not come within `after`.
    pub fn timeout(
        delivery: Delivery,
        endpoint: Option<String>,
        after: std::time::Duration,
    ) -> Self {
        ClientError::new(
            ClientErrorKind::Timeout,
            delivery,
            // Whole milliseconds, rounded up: the time left of a deadline, `999ms 983us
            // 780ns`, reads as the `1s` the user configured.
            format!(
                "no reply within {}",
                humantime::format_duration(ceil_ms(after))
            ),
        )
        .with_endpoint(endpoint)
    }

    /// A reply timeout during which the peer sent same-bytes heartbeat frames that were not
    /// our pong: most likely a peer that replies with the heartbeat frame. `heartbeat` is the
    /// frame (ping and pong are the same bytes).
    pub(crate) fn heartbeats_instead(mut self, heartbeat: &[u8]) -> Self {
        let what = if heartbeat.is_empty() {
            "the empty frame".to_string()
        } else {
            format!("{:?}", crate::text::escape(heartbeat))
        };
        self.detail = format!(
            "{}; heartbeat frames arrived instead (on this link {what} is the heartbeat: if the \
             peer replies with it, turn heartbeats off on this client, --heartbeat off, so it is \
             taken as the reply)",
            self.detail
        );
        self
    }

    /// Every endpoint failed; `failures` says why, in the order tried.
    pub(crate) fn connect(failures: Vec<EndpointFailure>) -> Self {
        let detail = if failures.is_empty() {
            "no endpoint configured".to_string()
        } else {
            let list: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
            format!("all endpoints failed: {}", list.join("; "))
        };
        ClientError {
            endpoints: failures,
            ..ClientError::new(ClientErrorKind::Connect, Delivery::NotSent, detail)
        }
    }

    pub(crate) fn io(
        delivery: Delivery,
        endpoint: Option<String>,
        what: &str,
        e: io::Error,
    ) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => ClientErrorKind::Closed,
            io::ErrorKind::TimedOut => ClientErrorKind::Timeout,
            _ => ClientErrorKind::Io,
        };
        ClientError::new(kind, delivery, format!("{what}: {e}"))
            .with_endpoint(endpoint)
            .with_source(e)
    }

    pub(crate) fn frame(delivery: Delivery, endpoint: Option<String>, e: FrameError) -> Self {
        if e.is_unencodable() {
            return ClientError::new(
                ClientErrorKind::Unencodable,
                Delivery::NotSent,
                e.to_string(),
            )
            .with_endpoint(endpoint)
            .with_source(e);
        }
        let kind = if e.is_io() {
            ClientErrorKind::Io
        } else if e.is_truncated() {
            ClientErrorKind::Closed
        } else {
            ClientErrorKind::Frame
        };
        ClientError::new(kind, delivery, format!("bad reply: {e}"))
            .with_endpoint(endpoint)
            .with_source(e)
    }

    /// The same error, with the delivery verdict replaced (a connection-level failure seen by
    /// each request on it).
    pub(crate) fn for_delivery(&self, delivery: Delivery) -> Self {
        ClientError {
            kind: self.kind,
            delivery,
            endpoint: self.endpoint.clone(),
            detail: self.detail.clone(),
            endpoints: self.endpoints.clone(),
            source: None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ClientErrorKind {
        self.kind
    }

    /// Whether the request may have reached the server.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// Not a byte of the request left this side: retrying is safe.
    pub fn is_not_sent(&self) -> bool {
        self.delivery == Delivery::NotSent
    }

    /// The request may have reached the server (the `SentNoReply` case): retry only if it is
    /// idempotent.
    pub fn may_have_been_sent(&self) -> bool {
        self.delivery == Delivery::SentNoReply
    }

    /// The endpoint the request went to, when one was chosen.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// For [`ClientErrorKind::Connect`]: every endpoint tried and why it failed.
    pub fn endpoints(&self) -> &[EndpointFailure] {
        &self.endpoints
    }

    /// No endpoint could be connected to.
    pub fn is_connect(&self) -> bool {
        self.kind == ClientErrorKind::Connect
    }

    /// The reply (or the connect) did not come in time.
    pub fn is_timeout(&self) -> bool {
        self.kind == ClientErrorKind::Timeout
    }

    /// The peer closed or reset the connection.
    pub fn is_closed(&self) -> bool {
        self.kind == ClientErrorKind::Closed
    }

    /// The peer stopped answering heartbeats.
    pub fn is_dead_peer(&self) -> bool {
        self.kind == ClientErrorKind::Dead
    }

    /// The peer sent a malformed frame.
    pub fn is_frame(&self) -> bool {
        self.kind == ClientErrorKind::Frame
    }

    /// The request cannot be framed.
    pub fn is_unencodable(&self) -> bool {
        self.kind == ClientErrorKind::Unencodable
    }

    /// No pooled connection was free in time.
    pub fn is_pool_timeout(&self) -> bool {
        self.kind == ClientErrorKind::PoolTimeout
    }

    /// The client was shut down.
    pub fn is_shutdown(&self) -> bool {
        self.kind == ClientErrorKind::Shutdown
    }

    /// The request was refused because it is the link's heartbeat frame.
    pub fn is_heartbeat_frame(&self) -> bool {
        self.kind == ClientErrorKind::HeartbeatFrame
    }

    /// The configuration cannot work; refused before connecting.
    pub fn is_config(&self) -> bool {
        self.kind == ClientErrorKind::Config
    }

    /// The partner refused the session's login (the status it answered is in the message).
    pub fn is_login(&self) -> bool {
        self.kind == ClientErrorKind::Login
    }

    /// A configuration that cannot work, `detail` saying why and what to change.
    pub(crate) fn config(detail: impl Into<String>) -> Self {
        ClientError::new(ClientErrorKind::Config, Delivery::NotSent, detail)
    }

    /// The refusal of a request that is the link's heartbeat frame (never sent).
    pub(crate) fn heartbeat_frame(frame: &[u8]) -> Self {
        let what = if frame.is_empty() {
            "an empty message".to_string()
        } else {
            format!("{:?}", crate::text::escape(frame))
        };
        ClientError::new(
            ClientErrorKind::HeartbeatFrame,
            Delivery::NotSent,
            format!(
                "{what} is this link's heartbeat frame: the peer would answer it as a ping, not \
                 as a request; turn heartbeats off (--heartbeat off; heartbeat_frames(None) in \
                 the library) to send it as data"
            ),
        )
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ClientErrorKind::Connect {
            return write!(f, "request not sent: {}", self.detail);
        }
        if self.kind == ClientErrorKind::Login {
            let at = self.endpoint.as_deref().unwrap_or("the partner");
            return write!(f, "login to {at} refused, nothing sent: {}", self.detail);
        }
        if self.kind == ClientErrorKind::Config {
            return write!(f, "bad client config: {}", self.detail);
        }
        let verdict = match self.delivery {
            Delivery::NotSent => "not sent",
            Delivery::SentNoReply => "may have been sent",
        };
        match &self.endpoint {
            Some(ep) => write!(f, "request to {ep} {verdict}: {}", self.detail),
            None => write!(f, "request {verdict}: {}", self.detail),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `d` rounded up to whole milliseconds.
fn ceil_ms(d: std::time::Duration) -> std::time::Duration {
    let ms = d.as_nanos().div_ceil(1_000_000);
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time left of a 1 s deadline, as the proxy's log printed it: `no reply within
    /// 999ms 983us 780ns`.
    #[test]
    fn a_reply_timeout_reads_in_whole_milliseconds() {
        let left = std::time::Duration::from_nanos(999_983_780);
        let e = ClientError::timeout(Delivery::SentNoReply, None, left);
        assert_eq!(
            e.to_string(),
            "request may have been sent: no reply within 1s"
        );
        let e = ClientError::timeout(Delivery::SentNoReply, None, left * 2);
        assert!(e.to_string().ends_with("within 2s"), "{e}");
    }
}
