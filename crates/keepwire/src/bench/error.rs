//! What can stop a bench: a config that cannot run, a runtime or server that cannot start, a
//! target that answers nothing.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use super::{MIN_SIZE, Pattern};
use crate::server::ServerError;

/// A name that is not a [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParsePatternError {
    found: String,
}

impl ParsePatternError {
    pub(super) fn new(found: &str) -> Self {
        ParsePatternError {
            found: found.to_string(),
        }
    }

    /// The text that was given.
    pub fn found(&self) -> &str {
        &self.found
    }
}

impl fmt::Display for ParsePatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bench mode {:?}: expected short, long, pool or mux",
            self.found
        )
    }
}

impl std::error::Error for ParsePatternError {}

/// Why a bench did not run to the end.
#[derive(Debug)]
#[non_exhaustive]
pub enum BenchError {
    /// [`BenchConfig::patterns`](super::BenchConfig::patterns) is empty.
    NoPatterns,
    /// [`BenchConfig::connections`](super::BenchConfig::connections) is 0.
    NoConnections,
    /// [`BenchConfig::duration`](super::BenchConfig::duration) is 0: nothing would be sent.
    ZeroDuration,
    /// The request size cannot hold the 8-byte request id.
    SizeTooSmall {
        /// The size asked for.
        size: usize,
    },
    /// The request size is over the framing's largest frame.
    SizeTooLarge {
        /// The size asked for.
        size: usize,
        /// The framing, as its spec.
        framing: String,
        /// The framing's largest frame.
        max: usize,
    },
    /// The framing cannot carry a request of this size on its own: `fixed:N` with another
    /// size, `eof` (a message ends only at the close), `delim:..:keep`.
    Unframeable {
        /// The size asked for.
        size: usize,
        /// The framing, as its spec.
        framing: String,
    },
    /// [`run`](super::run) was called from inside a tokio runtime; it builds its own.
    InsideRuntime,
    /// A tokio runtime (the clients' or the embedded server's) could not be built.
    Runtime(io::Error),
    /// The embedded server could not start.
    EmbeddedServer(ServerError),
    /// A pattern ran to its end without one correct reply.
    NoReply {
        /// The pattern.
        pattern: Pattern,
        /// The address measured.
        target: SocketAddr,
        /// Requests that failed.
        errors: u64,
        /// The framing, as its spec.
        framing: String,
    },
}

impl BenchError {
    /// The config cannot run (change it; nothing was measured).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            BenchError::NoPatterns
                | BenchError::NoConnections
                | BenchError::ZeroDuration
                | BenchError::SizeTooSmall { .. }
                | BenchError::SizeTooLarge { .. }
                | BenchError::Unframeable { .. }
        )
    }

    /// The target answered no request correctly: not an echo server of this framing, or not
    /// reachable.
    pub fn is_no_reply(&self) -> bool {
        matches!(self, BenchError::NoReply { .. })
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::NoPatterns => {
                f.write_str("no bench mode given: expected at least one of short, long, pool, mux")
            }
            BenchError::NoConnections => f.write_str("0 connections: expected at least 1"),
            BenchError::ZeroDuration => f.write_str("duration 0 s: expected more than 0"),
            BenchError::SizeTooSmall { size } => write!(
                f,
                "request size {size} bytes: expected at least {MIN_SIZE} (the request id)"
            ),
            BenchError::SizeTooLarge { size, framing, max } => write!(
                f,
                "request size {size} bytes does not fit {framing}: expected at most {max}"
            ),
            BenchError::Unframeable { size, framing } => write!(
                f,
                "a request of {size} bytes cannot be framed by {framing}: expected a framing \
                 that delimits each request (fixed:N takes requests of N bytes)"
            ),
            BenchError::InsideRuntime => {
                f.write_str("bench run inside a tokio runtime: expected a plain thread")
            }
            BenchError::Runtime(_) => f.write_str("cannot start a bench runtime"),
            BenchError::EmbeddedServer(_) => f.write_str("cannot start the embedded server"),
            BenchError::NoReply {
                pattern,
                target,
                errors,
                framing,
            } => write!(
                f,
                "{pattern}: no request answered by {target} ({errors} errors): \
                 expected an echo server speaking {framing}"
            ),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Runtime(e) => Some(e),
            BenchError::EmbeddedServer(e) => Some(e),
            _ => None,
        }
    }
}
