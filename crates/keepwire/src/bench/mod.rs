//! The load engine behind `keepwire bench`: what short and long connections cost on a target.
//!
//! Each [`Mode`] runs `connections` concurrent closed-loop clients for `duration`, each
//! sending `size`-byte requests and checking that the reply echoes them:
//!
//! | mode    | connections                              | what it shows                          |
//! |---------|------------------------------------------|----------------------------------------|
//! | `short` | one per request: connect, send, read, close (client first) | handshake cost, TIME_WAIT pile-up |
//! | `long`  | one per client, reused                   | the floor: one round trip per request  |
//! | `pool`  | clients share fewer connections (checkout per request) | contention for a pool        |
//! | `mux`   | all clients over a few connections, replies matched by request id | pipelining on one socket |
//!
//! Every request body starts with an 8-byte big-endian request id, which any echo server
//! returns unchanged: `mux` matches replies on it, so every mode works against any echo
//! server, keepwire or not. Latency is recorded per request in an HDR histogram (µs).

mod engine;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use engine::{Progress, run_mode};

use crate::frame::FramingSpec;

/// A way of using connections; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// A connection per request.
    Short,
    /// A connection per client, reused.
    Long,
    /// Clients share a smaller pool of long connections.
    Pool,
    /// Clients multiplexed over a few long connections.
    Mux,
}

impl Mode {
    /// Every mode, in table order.
    pub const ALL: [Mode; 4] = [Mode::Short, Mode::Long, Mode::Pool, Mode::Mux];

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Short => "short",
            Mode::Long => "long",
            Mode::Pool => "pool",
            Mode::Mux => "mux",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("mode {s:?}: expected short, long, pool or mux"))
    }
}

/// What to run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BenchConfig {
    /// Framing of requests and replies.
    pub framing: FramingSpec,
    /// Concurrent clients.
    pub connections: usize,
    /// How long each mode runs.
    pub duration: Duration,
    /// Request body size in bytes (at least 8: the request id).
    pub size: usize,
    /// `pool`: connections shared by the clients (default: a quarter of them, at least 1).
    pub pool_size: usize,
    /// `mux`: connections the clients are multiplexed over (default 2).
    pub mux_connections: usize,
    /// Time allowed for one request before it counts as an error.
    pub request_timeout: Duration,
}

impl BenchConfig {
    /// Defaults for `framing`: 16 clients, 3 s per mode, 64-byte bodies.
    pub fn new(framing: FramingSpec) -> Self {
        BenchConfig {
            framing,
            connections: 16,
            duration: Duration::from_secs(3),
            size: 64,
            pool_size: 4,
            mux_connections: 2,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// The outcome of one mode.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModeReport {
    /// Which mode.
    pub mode: Mode,
    /// Requests answered correctly.
    pub requests: u64,
    /// Requests that failed (connect error, timeout, wrong reply, closed connection).
    pub errors: u64,
    /// Requests per second over the run.
    pub rps: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Largest latency, µs.
    pub max_us: u64,
    /// TCP connections the clients opened.
    pub connections_opened: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Sockets in TIME_WAIT on the client side after the run, added by this mode (`None` where
    /// the kernel's table cannot be read).
    pub time_wait_client: Option<u64>,
    /// Sockets in TIME_WAIT on the server side after the run (`None` for a remote target).
    pub time_wait_server: Option<u64>,
}

/// The kernel's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`), as the
/// number of ports in it.
pub fn ephemeral_ports() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    let (lo, hi) = (it.next()??, it.next()??);
    hi.checked_sub(lo).map(|d| d + 1)
}
