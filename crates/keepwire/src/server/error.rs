//! [`ServerError`] and [`ConfigError`]: what goes wrong configuring, starting and running a
//! server.
//!
//! `Display` is one lowercase line naming what was found and what was expected; a wrapped
//! cause (an I/O error, a duration that did not parse) is in `source()` and not repeated in
//! `Display`, so print the chain (`err`, then each `source()`) to show all of it.
//!
//! A [`ConfigError`] names the setting it concerns by its key, spelled as in a config file
//! and as the CLI flag without `--` (`idle-timeout`, `max-conns`): see [`ConfigError::key`].

use std::fmt;
use std::io;

use super::BoxError;

/// What went wrong starting or running a server.
///
/// ```
/// use keepwire::server::{Server, ServerConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut config = ServerConfig::new("line".parse().unwrap());
/// config.max_conns = 0;
/// let err = Server::bind("127.0.0.1:0", config).await.unwrap_err();
/// assert!(err.is_config());
/// assert_eq!(err.config().and_then(|c| c.key()), Some("max-conns"));
/// # }
/// ```
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
    /// The configuration is inconsistent or out of range. Displayed as the [`ConfigError`]
    /// itself, whose source is this error's source.
    Config(ConfigError),
    /// The Prometheus exporter could not start: its address is not usable or another
    /// `metrics` recorder is installed in this process.
    Metrics {
        /// The address asked for.
        addr: String,
        /// Why.
        source: BoxError,
    },
    /// A second shutdown signal arrived while connections were draining; the drain was
    /// abandoned (see [`Server::serve_until_signal`](super::Server::serve_until_signal)).
    Interrupted,
    /// The direct engine could not start or its event loop failed (`epoll_create`,
    /// registering the listener, starting a thread).
    Engine {
        /// Why.
        source: io::Error,
    },
}

impl ServerError {
    /// The listen address could not be bound.
    pub fn is_bind(&self) -> bool {
        matches!(self, ServerError::Bind { .. })
    }

    /// The configuration was refused; [`config`](Self::config) tells which setting.
    pub fn is_config(&self) -> bool {
        matches!(self, ServerError::Config(_))
    }

    /// The metrics exporter could not start.
    pub fn is_metrics(&self) -> bool {
        matches!(self, ServerError::Metrics { .. })
    }

    /// A second signal cut the drain short.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, ServerError::Interrupted)
    }

    /// The configuration error, when that is what this is.
    pub fn config(&self) -> Option<&ConfigError> {
        match self {
            ServerError::Config(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind { addr, .. } => write!(f, "cannot listen on {addr}"),
            // Transparent: the config error says which setting and why.
            ServerError::Config(c) => c.fmt(f),
            ServerError::Metrics { addr, .. } => {
                write!(f, "cannot serve metrics on {addr}")
            }
            ServerError::Interrupted => {
                f.write_str("second signal: exiting without waiting for the drain")
            }
            ServerError::Engine { .. } => f.write_str("the direct engine failed"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Bind { source, .. } => Some(source),
            ServerError::Config(c) => std::error::Error::source(c),
            ServerError::Metrics { source, .. } => Some(source.as_ref()),
            ServerError::Interrupted => None,
            ServerError::Engine { source } => Some(source),
        }
    }
}

impl From<ConfigError> for ServerError {
    fn from(e: ConfigError) -> Self {
        ServerError::Config(e)
    }
}

/// A server setting that is missing, malformed, out of range or inconsistent with another.
///
/// The `Display` of every variant starts with its [`key`](Self::key) (`max-conns 0: expected
/// at least 1`), except [`Invalid`](Self::Invalid), which reads `invalid KEY "VALUE"` and
/// leaves what is wrong with the value to its source: a front end can put its own spelling of
/// the setting (`--max-conns`) in front.
///
/// ```
/// use keepwire::server::ServerSettings;
///
/// let mut s = ServerSettings::default();
/// s.listen = Some("127.0.0.1:0".into());
/// s.framing = Some("line".into());
/// s.idle_timeout = Some("soon".into());
/// let err = s.build().unwrap_err();
/// assert!(err.is_invalid());
/// assert_eq!(err.key(), Some("idle-timeout"));
/// assert_eq!(err.to_string(), "invalid idle-timeout \"soon\"");
/// // What was expected is in the source.
/// let why = std::error::Error::source(&err).unwrap().to_string();
/// assert!(why.contains("expected a number with a unit"), "{why}");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting was not given.
    Missing {
        /// The setting.
        key: &'static str,
        /// An example of a good value.
        example: &'static str,
    },
    /// A value did not parse; the parser's error is the source.
    Invalid {
        /// The setting.
        key: &'static str,
        /// The value given.
        value: String,
        /// Why it did not parse, and what was expected.
        source: BoxError,
    },
    /// A number outside the accepted range.
    OutOfRange {
        /// The setting.
        key: &'static str,
        /// The value given.
        value: String,
        /// The accepted range, in words (`at least 1`).
        expected: &'static str,
    },
    /// A setting that needs another one to be set.
    Needs {
        /// The setting given.
        key: &'static str,
        /// The setting it needs.
        needs: &'static str,
    },
    /// Pings to idle clients were asked for in short mode.
    PingsInShortMode,
    /// Pings to idle clients were asked for, but the framing has no empty frame and no
    /// `ping=`/`pong=` payloads were given.
    PingsNeedHeartbeat {
        /// The framing, in its canonical form.
        framing: String,
    },
    /// A heartbeat frame (the ping, or the pong answering it) cannot be framed.
    HeartbeatNotFramable {
        /// `"ping"` or `"pong"`.
        which: &'static str,
        /// The framing, in its canonical form.
        framing: String,
        /// The framing is `eof`, where no heartbeat can be a frame.
        until_close: bool,
    },
    /// The fixed reply cannot be framed; the codec's error is the source.
    ReplyNotFramable {
        /// The framing, in its canonical form.
        framing: String,
        /// Why the codec refused it.
        source: crate::frame::FrameError,
    },
    /// In long mode the fixed reply is the heartbeat frame: clients would take every reply
    /// for a ping.
    ReplyIsHeartbeat {
        /// The reply as given.
        reply: String,
        /// The framing, in its canonical form.
        framing: String,
    },
    /// A reply file could not be read.
    ReplyFile {
        /// The path given.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A setting the direct engine ([`Server::serve_direct`](super::Server::serve_direct))
    /// does not implement; the default engine ([`Server::serve`](super::Server::serve)) does.
    NotDirect {
        /// The setting.
        key: &'static str,
    },
}

impl ConfigError {
    /// The setting this error is about, spelled as a config file key (the CLI flag without
    /// `--`): `idle-timeout`, `max-conns`, `heartbeat`, `reply`.
    pub fn key(&self) -> Option<&'static str> {
        match self {
            ConfigError::Missing { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::OutOfRange { key, .. }
            | ConfigError::Needs { key, .. } => Some(key),
            ConfigError::PingsInShortMode
            | ConfigError::PingsNeedHeartbeat { .. }
            | ConfigError::HeartbeatNotFramable { .. } => Some("heartbeat"),
            ConfigError::ReplyNotFramable { .. }
            | ConfigError::ReplyIsHeartbeat { .. }
            | ConfigError::ReplyFile { .. } => Some("reply"),
            ConfigError::NotDirect { key } => Some(key),
        }
    }

    /// A required setting is missing.
    pub fn is_missing(&self) -> bool {
        matches!(self, ConfigError::Missing { .. })
    }

    /// A value did not parse.
    pub fn is_invalid(&self) -> bool {
        matches!(self, ConfigError::Invalid { .. })
    }

    /// A value is out of range.
    pub fn is_out_of_range(&self) -> bool {
        matches!(self, ConfigError::OutOfRange { .. })
    }

    /// The heartbeat settings do not fit the framing or the mode.
    pub fn is_heartbeat(&self) -> bool {
        matches!(
            self,
            ConfigError::PingsInShortMode
                | ConfigError::PingsNeedHeartbeat { .. }
                | ConfigError::HeartbeatNotFramable { .. }
        )
    }

    /// The fixed reply cannot be used.
    pub fn is_reply(&self) -> bool {
        matches!(
            self,
            ConfigError::ReplyNotFramable { .. }
                | ConfigError::ReplyIsHeartbeat { .. }
                | ConfigError::ReplyFile { .. }
        )
    }

    /// An `Invalid` error for `key`, keeping the parser's error (a `String` or a typed error)
    /// as the source.
    pub(crate) fn invalid(key: &'static str, value: &str, source: impl Into<BoxError>) -> Self {
        ConfigError::Invalid {
            key,
            value: value.to_string(),
            source: source.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing { key, example } => {
                write!(f, "{key} is required (e.g. {example})")
            }
            ConfigError::Invalid { key, value, .. } => write!(f, "invalid {key} {value:?}"),
            ConfigError::OutOfRange {
                key,
                value,
                expected,
            } => write!(f, "{key} {value}: expected {expected}"),
            ConfigError::Needs { key, needs } => write!(f, "{key} needs {needs}"),
            ConfigError::PingsInShortMode => f.write_str(
                "heartbeat pings make no sense in short mode: a short connection is never idle long, and a short client takes the first frame after its request as the reply",
            ),
            ConfigError::PingsNeedHeartbeat { framing } => write!(
                f,
                "heartbeat pings to idle clients need a heartbeat frame, and {framing} has no empty frame: give ping=/pong= payloads"
            ),
            ConfigError::HeartbeatNotFramable {
                which,
                framing,
                until_close,
            } => {
                write!(
                    f,
                    "heartbeat {which} cannot be sent under {framing}: give ping=/pong= payloads the framing can carry"
                )?;
                if *until_close {
                    f.write_str(
                        " (none: under eof a message ends only at the close; use heartbeat off)",
                    )?;
                }
                Ok(())
            }
            ConfigError::ReplyNotFramable { framing, .. } => {
                write!(f, "reply cannot be framed under {framing}")
            }
            ConfigError::ReplyIsHeartbeat { reply, framing } => write!(
                f,
                "reply {reply:?} is the heartbeat frame under {framing}: clients would take every reply for a ping; give a non-empty reply, or heartbeat off if your clients have no heartbeats"
            ),
            ConfigError::ReplyFile { path, .. } => write!(f, "reply file {path:?} cannot be read"),
            ConfigError::NotDirect { key } => write!(
                f,
                "{key} is not supported by the direct engine (engine = direct); the default engine (tokio) supports it"
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Invalid { source, .. } => Some(source.as_ref()),
            ConfigError::ReplyNotFramable { source, .. } => Some(source),
            ConfigError::ReplyFile { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_names_the_key_and_does_not_repeat_the_source() {
        let e = ConfigError::invalid("delay", "soon", "\"soon\" is not a duration");
        assert_eq!(e.to_string(), "invalid delay \"soon\"");
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("\"soon\" is not a duration")
        );
        assert!(e.is_invalid() && !e.is_missing());
        assert_eq!(e.key(), Some("delay"));
    }

    #[test]
    fn keys_of_rule_errors() {
        assert_eq!(ConfigError::PingsInShortMode.key(), Some("heartbeat"));
        let r = ConfigError::ReplyIsHeartbeat {
            reply: "text:".into(),
            framing: "len:ascii:4".into(),
        };
        assert_eq!(r.key(), Some("reply"));
        assert!(r.is_reply() && !r.is_heartbeat());
        let o = ConfigError::OutOfRange {
            key: "max-conns",
            value: "0".into(),
            expected: "at least 1",
        };
        assert_eq!(o.to_string(), "max-conns 0: expected at least 1");
        assert!(o.is_out_of_range());
    }

    #[test]
    fn server_error_is_transparent_over_config() {
        let e = ServerError::from(ConfigError::Needs {
            key: "proxy-from",
            needs: "proxy-protocol",
        });
        assert!(e.is_config() && !e.is_bind());
        assert_eq!(e.to_string(), "proxy-from needs proxy-protocol");
        assert!(e.source().is_none());
        let e = ServerError::from(ConfigError::invalid("delay", "soon", "not a duration"));
        assert_eq!(e.to_string(), "invalid delay \"soon\"");
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("not a duration")
        );
    }
}
