//! What a bench found: one [`PatternReport`] per pattern, and what they say together.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::Pattern;

/// The outcome of one pattern.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PatternReport {
    /// Which pattern.
    pub pattern: Pattern,
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
    /// Sockets in TIME_WAIT on the client side after the run, added by this pattern (`None`
    /// where the kernel's table cannot be read).
    pub time_wait_client: Option<u64>,
    /// Sockets in TIME_WAIT on the server side after the run (`None` for a remote target).
    pub time_wait_server: Option<u64>,
}

impl PatternReport {
    /// The report of a pattern that answered `ok` requests and failed `errors` in `elapsed`,
    /// with latencies in `hist` (µs), `opened` connections, and the TIME_WAIT sockets it left
    /// (client side, server side; see [`TimeWaitBaseline`](super::engine::TimeWaitBaseline)).
    pub(super) fn from_run(
        pattern: Pattern,
        (ok, errors): (u64, u64),
        hist: &hdrhistogram::Histogram<u64>,
        elapsed: Duration,
        opened: u64,
        (time_wait_client, time_wait_server): (Option<u64>, Option<u64>),
    ) -> Self {
        PatternReport {
            pattern,
            requests: ok,
            errors,
            rps: ok as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_us: hist.value_at_quantile(0.50),
            p99_us: hist.value_at_quantile(0.99),
            max_us: hist.max(),
            connections_opened: opened,
            elapsed,
            time_wait_client,
            time_wait_server,
        }
    }
}

/// A whole bench: every pattern's report, in the order run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BenchReport {
    /// The target measured; `None` for the embedded server on 127.0.0.1.
    pub target: Option<SocketAddr>,
    /// One report per pattern, in the order run.
    pub patterns: Vec<PatternReport>,
    /// The size of the kernel's ephemeral port range when the bench ended (see
    /// [`ephemeral_ports`]).
    pub ephemeral_ports: Option<u64>,
}

impl BenchReport {
    /// The report of `pattern`, if it ran.
    pub fn get(&self, pattern: Pattern) -> Option<&PatternReport> {
        self.patterns.iter().find(|r| r.pattern == pattern)
    }

    /// How close short connections came to running out of ephemeral ports; `None` unless
    /// `short` ran and both the TIME_WAIT count and the port range could be read.
    pub fn port_pressure(&self) -> Option<PortPressure> {
        let time_wait = self.get(Pattern::Short)?.time_wait_client?;
        Some(PortPressure {
            time_wait,
            ephemeral_ports: self.ephemeral_ports?,
        })
    }

    /// What long connections gain over short ones; `None` unless both ran.
    pub fn conclusion(&self) -> Option<Conclusion> {
        let (short, long) = (self.get(Pattern::Short)?, self.get(Pattern::Long)?);
        Some(Conclusion {
            short_rps: short.rps,
            long_rps: long.rps,
            short_p99_us: short.p99_us,
            long_p99_us: long.p99_us,
            short_connections: short.connections_opened,
            long_connections: long.connections_opened,
        })
    }
}

/// Client sockets short connections left in TIME_WAIT, against the ephemeral port range.
///
/// ```
/// use keepwire::bench::PortPressure;
/// let p = PortPressure { time_wait: 7000, ephemeral_ports: 28232 };
/// assert_eq!(p.percent().round(), 25.0);
/// assert!(p.to_string().starts_with("7000 client sockets in TIME_WAIT of 28232 ephemeral ports (25%)"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPressure {
    /// Client sockets the `short` pattern left in TIME_WAIT.
    pub time_wait: u64,
    /// Ports in the kernel's ephemeral range.
    pub ephemeral_ports: u64,
}

impl PortPressure {
    /// `time_wait` as a percentage of the range.
    pub fn percent(&self) -> f64 {
        self.time_wait as f64 * 100.0 / self.ephemeral_ports.max(1) as f64
    }
}

impl fmt::Display for PortPressure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} client sockets in TIME_WAIT of {} ephemeral ports ({:.0}%); \
             at 100% connect() fails with \"cannot assign requested address\" unless the \
             kernel may reuse them (net.ipv4.tcp_tw_reuse)",
            self.time_wait,
            self.ephemeral_ports,
            self.percent()
        )
    }
}

/// Long against short connections, in numbers; its `Display` is the sentence.
///
/// ```
/// use keepwire::bench::Conclusion;
/// let c = Conclusion {
///     short_rps: 7000.0, long_rps: 49000.0,
///     short_p99_us: 9500, long_p99_us: 4100,
///     short_connections: 21000, long_connections: 16,
/// };
/// assert_eq!(c.ratio(), 7.0);
/// assert_eq!(
///     c.to_string(),
///     "long connections served 7.0x the requests/s of short ones (49000 vs 7000, \
///      p99 4ms 100us vs 9ms 500us), opening 16 connections instead of 21000."
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conclusion {
    /// Requests per second with a connection per request.
    pub short_rps: f64,
    /// Requests per second with a connection per client.
    pub long_rps: f64,
    /// p99 latency of `short`, µs.
    pub short_p99_us: u64,
    /// p99 latency of `long`, µs.
    pub long_p99_us: u64,
    /// Connections `short` opened.
    pub short_connections: u64,
    /// Connections `long` opened.
    pub long_connections: u64,
}

impl Conclusion {
    /// How many times the requests/s of `short` `long` served.
    pub fn ratio(&self) -> f64 {
        self.long_rps / self.short_rps.max(1e-9)
    }
}

impl fmt::Display for Conclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "long connections served {:.1}x the requests/s of short ones \
             ({:.0} vs {:.0}, p99 {} vs {}), opening {} connections instead of {}.",
            self.ratio(),
            self.long_rps,
            self.short_rps,
            humantime::format_duration(Duration::from_micros(self.long_p99_us)),
            humantime::format_duration(Duration::from_micros(self.short_p99_us)),
            self.long_connections,
            self.short_connections
        )
    }
}

/// The kernel's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`), as the
/// number of ports in it.
pub fn ephemeral_ports() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    let (lo, hi) = (it.next()??, it.next()??);
    hi.checked_sub(lo).map(|d| d + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pattern: Pattern, rps: f64, tw: Option<u64>) -> PatternReport {
        PatternReport {
            pattern,
            requests: 10,
            errors: 0,
            rps,
            p50_us: 1,
            p99_us: 2,
            max_us: 3,
            connections_opened: 4,
            elapsed: Duration::from_secs(1),
            time_wait_client: tw,
            time_wait_server: Some(0),
        }
    }

    #[test]
    fn conclusion_needs_short_and_long() {
        let mut r = BenchReport {
            target: None,
            patterns: vec![
                row(Pattern::Long, 200.0, None),
                row(Pattern::Pool, 1.0, None),
            ],
            ephemeral_ports: Some(100),
        };
        assert_eq!(r.conclusion(), None);
        r.patterns.push(row(Pattern::Short, 50.0, Some(25)));
        let c = r.conclusion().unwrap();
        assert_eq!((c.long_rps, c.short_rps, c.ratio()), (200.0, 50.0, 4.0));
    }

    #[test]
    fn port_pressure_needs_short_time_wait_and_the_range() {
        let mut r = BenchReport {
            target: None,
            patterns: vec![row(Pattern::Short, 1.0, None)],
            ephemeral_ports: Some(100),
        };
        assert_eq!(r.port_pressure(), None);
        r.patterns = vec![row(Pattern::Short, 1.0, Some(25))];
        assert_eq!(r.port_pressure().unwrap().percent(), 25.0);
        r.ephemeral_ports = None;
        assert_eq!(r.port_pressure(), None);
    }

    #[test]
    fn a_zero_short_rate_does_not_divide_by_zero() {
        let c = Conclusion {
            short_rps: 0.0,
            long_rps: 1.0,
            short_p99_us: 0,
            long_p99_us: 0,
            short_connections: 0,
            long_connections: 0,
        };
        assert!(c.ratio().is_finite());
    }
}
