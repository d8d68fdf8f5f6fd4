//! What stops a proxy from starting, and why one request got no reply from upstream.

use std::fmt;
use std::time::Duration;

use crate::client::ClientError;
use crate::frame::FrameError;
use crate::server::ServerError;

/// A proxy that could not start, or a request the upstream did not answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyError {
    /// The client side could not listen (bad address, port taken, bad server settings).
    Listen(ServerError),
    /// The upstream side could not be set up: a bad client configuration. (An upstream
    /// that does not answer at start is retried in the background, not an error here.)
    Connect(ClientError),
    /// One request failed upstream (the client connection is closed, or answered with the
    /// `--on-upstream-error` reply).
    Upstream(ClientError),
    /// A request waited this long for an earlier request with the same key (a key the
    /// proxy cannot rewrite) and was not sent.
    KeyBusy {
        /// How long it waited.
        waited: Duration,
    },
    /// The upstream's reply cannot be framed for the client (re-framing: too long for the
    /// client's length header or `max`, or it holds the client's delimiter). It was
    /// delivered upstream.
    Unframable(FrameError),
}

impl ProxyError {
    /// The listener could not be set up.
    pub fn is_listen(&self) -> bool {
        matches!(self, ProxyError::Listen(_))
    }

    /// The upstream client settings were refused at start.
    pub fn is_connect(&self) -> bool {
        matches!(self, ProxyError::Connect(_))
    }

    /// A request failed upstream.
    pub fn is_upstream(&self) -> bool {
        matches!(self, ProxyError::Upstream(_))
    }

    /// A request waited too long for its key.
    pub fn is_key_busy(&self) -> bool {
        matches!(self, ProxyError::KeyBusy { .. })
    }

    /// The upstream's reply cannot be framed for the client.
    pub fn is_unframable(&self) -> bool {
        matches!(self, ProxyError::Unframable(_))
    }

    /// Whether the failed request may have reached the upstream (`false` for the start-up
    /// errors and for a request that never left the proxy; `true` for an unframable
    /// reply, whose request was answered).
    pub fn may_have_been_sent(&self) -> bool {
        match self {
            ProxyError::Upstream(e) => e.may_have_been_sent(),
            ProxyError::Unframable(_) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Listen(e) => write!(f, "proxy listener: {e}"),
            ProxyError::Connect(e) => write!(f, "proxy upstream settings: {e}"),
            ProxyError::Upstream(e) => write!(f, "upstream request: {e}"),
            ProxyError::KeyBusy { waited } => write!(
                f,
                "request key still in flight upstream after {}: expected the earlier request with the same key to be answered first",
                humantime::format_duration(*waited)
            ),
            ProxyError::Unframable(e) => {
                write!(f, "upstream reply cannot be framed for the client: {e}")
            }
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyError::Listen(e) => Some(e),
            ProxyError::Connect(e) | ProxyError::Upstream(e) => Some(e),
            ProxyError::Unframable(e) => Some(e),
            ProxyError::KeyBusy { .. } => None,
        }
    }
}
