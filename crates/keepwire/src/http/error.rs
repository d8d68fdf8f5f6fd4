//! [`HttpError`]: what went wrong reading an HTTP message or exchanging one.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::frame::FrameError;

/// An error of the [`http`](super) layer. `Display` is one lowercase line.
///
/// ```
/// use keepwire::http::message::Request;
/// let err = Request::parse(b"HTTP/1.1 200 OK\r\n\r\n").unwrap_err();
/// assert!(err.is_parse());
/// assert_eq!(err.to_string(), "http request: saw \"HTTP/1.1 200 OK\", expected a request head (invalid token)");
/// ```
#[derive(Debug)]
pub struct HttpError {
    kind: HttpErrorKind,
}

/// What went wrong; see [`HttpError::kind`].
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpErrorKind {
    /// The bytes are not the message expected.
    Parse {
        /// Which message: `request`, `response`, `chunked body`.
        what: &'static str,
        /// What was seen (escaped, cut at 40 bytes).
        found: String,
        /// What was expected.
        expected: String,
    },
    /// The framing refused the peer's bytes.
    Frame(FrameError),
    /// The socket failed.
    Io(io::Error),
    /// No response within this long.
    Timeout(Duration),
    /// The peer closed the connection before a whole response.
    Closed,
}

impl HttpError {
    pub(crate) fn parse(what: &'static str, found: &[u8], expected: impl Into<String>) -> Self {
        let line = found
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        let cut = line.get(..line.len().min(40)).unwrap_or_default();
        HttpError {
            kind: HttpErrorKind::Parse {
                what,
                found: crate::text::escape(cut),
                expected: expected.into(),
            },
        }
    }

    pub(crate) fn new(kind: HttpErrorKind) -> Self {
        HttpError { kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> &HttpErrorKind {
        &self.kind
    }

    /// The bytes are not the HTTP message expected.
    pub fn is_parse(&self) -> bool {
        matches!(self.kind, HttpErrorKind::Parse { .. })
    }

    /// The framing refused the peer's bytes (see the [`FrameError`] in `source()`).
    pub fn is_frame(&self) -> bool {
        matches!(self.kind, HttpErrorKind::Frame(_))
    }

    /// The socket failed.
    pub fn is_io(&self) -> bool {
        matches!(self.kind, HttpErrorKind::Io(_))
    }

    /// No response in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, HttpErrorKind::Timeout(_))
    }

    /// The peer closed before a whole response.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, HttpErrorKind::Closed)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            HttpErrorKind::Parse {
                what,
                found,
                expected,
            } => write!(f, "http {what}: saw \"{found}\", expected {expected}"),
            HttpErrorKind::Frame(e) => write!(f, "http framing: {e}"),
            HttpErrorKind::Io(e) => write!(f, "http connection: {e}"),
            HttpErrorKind::Timeout(d) => write!(
                f,
                "no http response within {}",
                humantime::format_duration(*d)
            ),
            HttpErrorKind::Closed => {
                f.write_str("the server closed the connection before a whole response")
            }
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            HttpErrorKind::Frame(e) => Some(e),
            HttpErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FrameError> for HttpError {
    fn from(e: FrameError) -> Self {
        HttpError::new(HttpErrorKind::Frame(e))
    }
}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        HttpError::new(HttpErrorKind::Io(e))
    }
}
