//! The load engine behind `keepwire bench`: what short and long connections cost on a target.
//!
//! Each [`Pattern`] of connection use runs `connections` concurrent closed-loop clients for
//! `duration`, each sending `size`-byte requests and checking that the reply echoes them:
//!
//! | pattern | connections                              | what it shows                          |
//! |---------|------------------------------------------|----------------------------------------|
//! | `short` | one per request: connect, send, read, close (client first) | handshake cost, TIME_WAIT pile-up |
//! | `long`  | one per client, reused                   | the floor: one round trip per request  |
//! | `pool`  | clients share fewer connections (checkout per request) | contention for a pool        |
//! | `mux`   | all clients over a few connections, replies matched by request id | pipelining on one socket |
//!
//! Every request body starts with an 8-byte request id, which any echo server returns
//! unchanged: `mux` matches replies on it, so every pattern works against any echo server,
//! keepwire or not. Bodies are printable ASCII without the framing's delimiter bytes, so
//! `line` and `delim:..` framings carry every one. Latency is recorded per request in an HDR
//! histogram (µs).
//!
//! ```text
//! request body, --size 16, worker 1, request 42:
//! +-------------------------------+-------------------------------+
//! | request id (8 base-94 digits) | filler (xorshift, same bytes) |
//! | !  !  !  !  5  3  f  M        | X  7  ,  b  z  e  ?  L        |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! [`run`] drives a whole bench: it checks the [`BenchConfig`], runs each pattern in turn
//! (against [`BenchConfig::target`], or against a fresh embedded keepwire echo server on
//! 127.0.0.1 that it starts and stops itself), and returns a [`BenchReport`] whose
//! [`conclusion`](BenchReport::conclusion) says, with numbers, what short costs next to long.
//!
//! ```no_run
//! use std::time::Duration;
//! use keepwire::bench::{self, BenchConfig, Pattern};
//! use keepwire::frame::FramingSpec;
//!
//! let mut cfg = BenchConfig::new(FramingSpec::parse("len:be:4").unwrap());
//! cfg.patterns = vec![Pattern::Short, Pattern::Long];
//! cfg.duration = Duration::from_millis(500);
//! let report = bench::run(&cfg, &mut ()).unwrap();
//! if let Some(c) = report.conclusion() {
//!     println!("conclusion: {c}");
//! }
//! ```
//!
//! Why "pattern" and not "mode": [`server::Mode`](crate::server::Mode) is what a server does
//! with a connection after a reply (keep it, or close it), two values; a bench pattern is how
//! clients use connections, four values, two of which (`pool`, `mux`) have no server
//! counterpart. The command line still calls them modes (`--modes`, the JSON key `mode`).

mod body;
mod embedded;
mod engine;
mod error;
mod http;
mod link;
#[cfg(feature = "protocol")]
pub mod protocol;
mod report;
mod run;
mod tally;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

pub use engine::Progress;
pub use error::{BenchError, ParsePatternError};
pub use report::{BenchReport, Conclusion, PatternReport, PortPressure, ephemeral_ports};
pub use run::{Observer, run};

use crate::frame::FramingSpec;

/// A way of using connections; see the [module docs](self).
///
/// ```
/// use keepwire::bench::Pattern;
/// assert_eq!("mux".parse::<Pattern>().unwrap(), Pattern::Mux);
/// assert!("fast".parse::<Pattern>().unwrap_err().to_string().contains("expected short"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pattern {
    /// A connection per request.
    Short,
    /// A connection per client, reused.
    Long,
    /// Clients share a smaller pool of long connections.
    Pool,
    /// Clients multiplexed over a few long connections.
    Mux,
}

impl Pattern {
    /// Every pattern, in table order.
    pub const ALL: [Pattern; 4] = [Pattern::Short, Pattern::Long, Pattern::Pool, Pattern::Mux];

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Short => "short",
            Pattern::Long => "long",
            Pattern::Pool => "pool",
            Pattern::Mux => "mux",
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Pattern {
    type Err = ParsePatternError;

    /// Parses a name of [`Pattern::as_str`].
    ///
    /// # Errors
    /// [`ParsePatternError`] naming the text when it is none of them.
    fn from_str(s: &str) -> Result<Self, ParsePatternError> {
        Pattern::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ParsePatternError::new(s))
    }
}

/// What to run; [`BenchConfig::new`] gives the defaults of `keepwire bench`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BenchConfig {
    /// Framing of requests and replies.
    pub framing: FramingSpec,
    /// The echo server to measure; `None` (the default) starts an embedded keepwire server on
    /// 127.0.0.1 for each pattern.
    pub target: Option<SocketAddr>,
    /// Patterns to run, in order (default: all four, in [`Pattern::ALL`] order).
    pub patterns: Vec<Pattern>,
    /// Concurrent clients (default 16).
    pub connections: usize,
    /// How long each pattern runs (default 3 s).
    pub duration: Duration,
    /// Request body size in bytes, at least 8: the request id (default 64).
    pub size: usize,
    /// `pool`: connections shared by the clients (default `None`: a quarter of
    /// `connections`, at least 1).
    pub pool_size: Option<usize>,
    /// `mux`: connections the clients are multiplexed over (default 2; 0 counts as 1).
    pub mux_connections: usize,
    /// Time allowed for one request before it counts as an error (default 5 s).
    pub request_timeout: Duration,
    /// TLS to the [`target`](Self::target) (default none; the embedded server is plain
    /// TCP). The `short` and `long` patterns handshake per connection, resuming sessions
    /// when the config has resumption on.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::ClientTls>,
    /// Reach the target through a SOCKS5 proxy (default none).
    #[cfg(feature = "socks")]
    pub socks5: Option<crate::socks::Socks5>,
}

/// The smallest request: the 8-byte request id every reply is matched on.
pub const MIN_SIZE: usize = 8;

impl BenchConfig {
    /// Defaults for `framing`: all four patterns against an embedded server, 16 clients, 3 s
    /// per pattern, 64-byte bodies.
    pub fn new(framing: FramingSpec) -> Self {
        BenchConfig {
            framing,
            target: None,
            patterns: Pattern::ALL.to_vec(),
            connections: 16,
            duration: Duration::from_secs(3),
            size: 64,
            pool_size: None,
            mux_connections: 2,
            request_timeout: Duration::from_secs(5),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "socks")]
            socks5: None,
        }
    }

    /// The `pool` pattern's pool size: [`pool_size`](Self::pool_size), or a quarter of the
    /// clients, at least 1.
    pub fn effective_pool_size(&self) -> usize {
        self.pool_size.unwrap_or(self.connections / 4).max(1)
    }

    /// Checks that the config can run.
    ///
    /// # Errors
    /// A [`BenchError`] for which [`is_config`](BenchError::is_config) holds: no pattern, no
    /// client, a zero duration, a size under [`MIN_SIZE`] or over the framing's largest
    /// frame.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.patterns.is_empty() {
            return Err(BenchError::NoPatterns);
        }
        if self.connections == 0 {
            return Err(BenchError::NoConnections);
        }
        // A run of no time sends nothing, and would end in `NoReply`, blaming the target.
        if self.duration.is_zero() {
            return Err(BenchError::ZeroDuration);
        }
        if self.size < MIN_SIZE {
            return Err(BenchError::SizeTooSmall { size: self.size });
        }
        let max = self.framing.max_frame();
        if self.size > max {
            return Err(BenchError::SizeTooLarge {
                size: self.size,
                framing: self.framing.to_string(),
                max,
            });
        }
        // `fixed:N` with another size, `eof`, `delim:..:keep`: every request would fail, and
        // the bench would blame the target.
        let sample = body::Bodies::new(&self.framing).body(self.size, 0, 1);
        // (`http` sends its own GET requests, whatever the size.)
        if !matches!(self.framing, FramingSpec::Http(_)) && !self.framing.carries(&sample) {
            return Err(BenchError::Unframeable {
                size: self.size,
                framing: self.framing.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BenchConfig {
        BenchConfig::new(FramingSpec::parse("len:be:2").unwrap())
    }

    #[test]
    fn every_pattern_parses_back_from_its_name() {
        for p in Pattern::ALL {
            assert_eq!(p.as_str().parse::<Pattern>().unwrap(), p);
        }
    }

    #[test]
    fn an_unknown_pattern_names_what_was_found_and_expected() {
        let e = "fast".parse::<Pattern>().unwrap_err();
        assert_eq!(e.found(), "fast");
        assert_eq!(
            e.to_string(),
            "bench mode \"fast\": expected short, long, pool or mux"
        );
    }

    #[test]
    fn validate_accepts_the_defaults() {
        cfg().validate().unwrap();
    }

    #[test]
    fn validate_rejects_what_cannot_run() {
        type Change = fn(&mut BenchConfig);
        let cases: [(Change, &str); 5] = [
            (|c| c.patterns.clear(), "no bench mode"),
            (|c| c.connections = 0, "0 connections"),
            (|c| c.duration = Duration::ZERO, "duration 0 s"),
            (|c| c.size = 7, "request size 7 bytes"),
            (|c| c.size = 65_536, "does not fit len:be:2"),
        ];
        for (change, want) in cases {
            let mut c = cfg();
            change(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.is_config(), "{e}");
            assert!(e.to_string().contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn pool_size_defaults_to_a_quarter_of_the_clients() {
        let mut c = cfg();
        assert_eq!(c.effective_pool_size(), 4);
        c.connections = 3;
        assert_eq!(c.effective_pool_size(), 1);
        c.pool_size = Some(7);
        assert_eq!(c.effective_pool_size(), 7);
        c.pool_size = Some(0);
        assert_eq!(c.effective_pool_size(), 1);
    }
}
