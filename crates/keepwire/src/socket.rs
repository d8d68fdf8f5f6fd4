//! Socket options for message links: TCP keepalive, `TCP_USER_TIMEOUT`, `TCP_NODELAY`.
//!
//! - **TCP keepalive** (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6): after `time` without traffic the
//!   kernel sends up to `probes` probes `interval` apart, and resets the connection if none is
//!   answered. It proves the peer's *kernel* is alive, not its service, and the RFC's default
//!   of two hours is far too slow for most links: set it to seconds.
//! - **`TCP_USER_TIMEOUT`** (RFC 5482): how long written data may stay unacknowledged before
//!   the kernel gives up on the connection. This is what finds a pulled cable while there is
//!   data in flight, where keepalive does not run.
//! - **`TCP_NODELAY`**: request/response traffic of small messages must not wait for Nagle's
//!   algorithm; on by default.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

#[cfg(any(feature = "server", feature = "client"))]
use socket2::{SockRef, TcpKeepalive};

mod error;

pub use error::{
    DurationError, DurationErrorKind, KeepaliveError, KeepaliveErrorKind, KeepaliveField,
    SocketOptionsError, UserTimeoutError,
};

/// Kernel TCP keepalive settings: `TIME,INTERVAL,PROBES` on the command line.
///
/// ```
/// use keepwire::socket::Keepalive;
/// let k: Keepalive = "30s,5s,3".parse().unwrap();
/// assert_eq!(k.time.as_secs(), 30);
/// assert_eq!(k.to_string(), "30s,5s,3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub time: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is reset.
    pub probes: u32,
}

impl fmt::Display for Keepalive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{}",
            humantime_fmt(self.time),
            humantime_fmt(self.interval),
            self.probes
        )
    }
}

fn humantime_fmt(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The longest duration [`parse_duration`] accepts: 365 days. Longer is almost surely a
/// typo (or `u64::MAX` meaning "never"), and would overflow deadline arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses a duration such as `250ms`, `30s`, `2h` (humantime syntax; a bare number is
/// seconds), at most [`MAX_DURATION`].
///
/// ```
/// use keepwire::socket::parse_duration;
/// assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
/// assert_eq!(parse_duration("30").unwrap().as_secs(), 30);
/// let e = parse_duration("18446744073709551615").unwrap_err();
/// assert!(e.is_too_long());
/// assert!(e.to_string().contains("365d"), "{e}");
/// ```
///
/// # Errors
/// A [`DurationError`] naming the text and the expected form, or the largest accepted value.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| {
            let reason = e.to_string();
            DurationError::new(s, DurationErrorKind::NotADuration { reason })
        })?,
    };
    if d > MAX_DURATION {
        return Err(DurationError::new(s, DurationErrorKind::TooLong));
    }
    Ok(d)
}

impl FromStr for Keepalive {
    type Err = KeepaliveError;

    fn from_str(s: &str) -> Result<Self, KeepaliveError> {
        let fail = |kind| KeepaliveError::new(kind).in_text(s);
        let parts: Vec<&str> = s.split(',').collect();
        let [time, interval, probes] = parts[..] else {
            return Err(fail(KeepaliveErrorKind::Shape));
        };
        let probes = probes
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=MAX_KEEPALIVE_PROBES).contains(p))
            .ok_or_else(|| {
                fail(KeepaliveErrorKind::BadProbes {
                    found: probes.to_string(),
                })
            })?;
        let duration = |field, text| {
            let d = parse_duration(text)
                .map_err(|source| fail(KeepaliveErrorKind::BadDuration { field, source }))?;
            if d < Duration::from_secs(1) {
                return Err(fail(KeepaliveErrorKind::BelowOneSecond { field, found: d }));
            }
            Ok(d)
        };
        let k = Keepalive {
            time: duration(KeepaliveField::Time, time)?,
            interval: duration(KeepaliveField::Interval, interval)?,
            probes,
        };
        k.validate().map_err(|e| e.in_text(s))?;
        Ok(k)
    }
}

/// The kernel's largest `TCP_KEEPIDLE` and `TCP_KEEPINTVL`: 32 767 s (Linux `MAX_TCP_KEEPIDLE`,
/// `MAX_TCP_KEEPINTVL`); larger values are refused with EINVAL on every socket.
pub const MAX_KEEPALIVE_SECS: u64 = 32_767;
/// The kernel's largest `TCP_KEEPCNT` (Linux `MAX_TCP_KEEPCNT`).
pub const MAX_KEEPALIVE_PROBES: u32 = 127;
/// The largest `TCP_USER_TIMEOUT`: the kernel takes an `int` of milliseconds (about 24.8 days).
pub const MAX_USER_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

impl Keepalive {
    /// Checks the values against what the kernel accepts (1 s to [`MAX_KEEPALIVE_SECS`], 1 to
    /// [`MAX_KEEPALIVE_PROBES`] probes), so a bad value fails at start, not on every socket.
    ///
    /// # Errors
    /// A [`KeepaliveError`] naming the value and the accepted range.
    pub fn validate(&self) -> Result<(), KeepaliveError> {
        let fail = |kind| Err(KeepaliveError::new(kind));
        for (field, found) in [
            (KeepaliveField::Time, self.time),
            (KeepaliveField::Interval, self.interval),
        ] {
            if found < Duration::from_secs(1) || found > Duration::from_secs(MAX_KEEPALIVE_SECS) {
                return fail(KeepaliveErrorKind::DurationOutOfRange { field, found });
            }
        }
        if !(1..=MAX_KEEPALIVE_PROBES).contains(&self.probes) {
            return fail(KeepaliveErrorKind::ProbesOutOfRange { found: self.probes });
        }
        Ok(())
    }
}

/// Options applied to every accepted or connected socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// `TCP_NODELAY` (default on).
    pub nodelay: bool,
    /// Kernel keepalive (default off: the kernel's own default of two hours is useless).
    pub keepalive: Option<Keepalive>,
    /// `TCP_USER_TIMEOUT` (default off).
    pub user_timeout: Option<Duration>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            nodelay: true,
            keepalive: None,
            user_timeout: None,
        }
    }
}

/// Checks a `TCP_USER_TIMEOUT` against what the kernel accepts: 1 ms to [`MAX_USER_TIMEOUT`]
/// (a value below 1 ms would become 0, which means "the kernel's default").
///
/// ```
/// use std::time::Duration;
/// use keepwire::socket::validate_user_timeout;
/// assert!(validate_user_timeout(Duration::from_secs(20)).is_ok());
/// let e = validate_user_timeout(Duration::from_micros(10)).unwrap_err();
/// assert!(e.is_too_short());
/// assert_eq!(
///     e.to_string(),
///     "10us is out of range: the kernel accepts 1ms to 24days 20h 31m 23s 647ms (2^31-1 ms)"
/// );
/// ```
///
/// # Errors
/// A [`UserTimeoutError`] naming the value and the accepted range.
pub fn validate_user_timeout(d: Duration) -> Result<(), UserTimeoutError> {
    if d < Duration::from_millis(1) || d > MAX_USER_TIMEOUT {
        return Err(UserTimeoutError::new(d));
    }
    Ok(())
}

impl SocketOptions {
    /// Checks every option against what the kernel accepts, so a bad value fails once at
    /// start rather than on every socket.
    ///
    /// # Errors
    /// A [`SocketOptionsError`] naming the option, its cause naming the accepted range.
    pub fn validate(&self) -> Result<(), SocketOptionsError> {
        if let Some(k) = &self.keepalive {
            k.validate().map_err(SocketOptionsError::Keepalive)?;
        }
        if let Some(t) = self.user_timeout {
            validate_user_timeout(t).map_err(SocketOptionsError::UserTimeout)?;
        }
        Ok(())
    }

    /// Applies the options to a connected socket (tokio's or std's `TcpStream`).
    ///
    /// # Errors
    /// The `setsockopt` error, e.g. on a socket the peer already reset.
    #[cfg(any(feature = "server", feature = "client"))]
    pub fn apply<S: std::os::fd::AsFd>(&self, sock: &S) -> std::io::Result<()> {
        let sock = SockRef::from(sock);
        if self.nodelay {
            sock.set_tcp_nodelay(true)?;
        }
        if let Some(k) = self.keepalive {
            let ka = TcpKeepalive::new()
                .with_time(k.time)
                .with_interval(k.interval)
                .with_retries(k.probes);
            sock.set_tcp_keepalive(&ka)?;
        }
        if let Some(t) = self.user_timeout {
            sock.set_tcp_user_timeout(Some(t))?;
        }
        Ok(())
    }

    /// Whether `sock` already has every option these options set (read back with
    /// `getsockopt`). Linux gives an accepted socket the listener's `TCP_NODELAY`,
    /// keepalive and `TCP_USER_TIMEOUT` settings: a server that set them on its listener
    /// asks this of its first connection and, when it holds, skips [`apply`](Self::apply)
    /// (one `setsockopt` or more per connection).
    ///
    /// # Errors
    /// The `getsockopt` error.
    #[cfg(feature = "server")]
    pub(crate) fn is_applied_to<S: std::os::fd::AsFd>(&self, sock: &S) -> std::io::Result<bool> {
        let sock = SockRef::from(sock);
        if self.nodelay && !sock.tcp_nodelay()? {
            return Ok(false);
        }
        if let Some(k) = self.keepalive {
            let same = sock.keepalive()?
                && sock.tcp_keepalive_time()? == k.time
                && sock.tcp_keepalive_interval()? == k.interval
                && sock.tcp_keepalive_retries()? == k.probes;
            if !same {
                return Ok(false);
            }
        }
        if let Some(t) = self.user_timeout {
            if sock.tcp_user_timeout()? != Some(t) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 5 "), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    }

    #[test]
    fn keepalive_parse() {
        let k: Keepalive = "60s,10s,5".parse().unwrap();
        assert_eq!(k.probes, 5);
        assert_eq!(k.to_string(), "1m,10s,5");
        // The kernel's limits: refused at parse time, not on every socket.
        assert!("32767s,32767s,127".parse::<Keepalive>().is_ok());
        assert!("1500ms,1s,1".parse::<Keepalive>().is_ok());
    }

    #[test]
    fn options_reach_the_kernel() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let opts = SocketOptions {
            nodelay: true,
            keepalive: Some("7s,3s,4".parse().unwrap()),
            user_timeout: Some(Duration::from_millis(1500)),
        };
        opts.apply(&c).unwrap();
        let s = SockRef::from(&c);
        assert!(s.tcp_nodelay().unwrap());
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(s.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(
            s.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(1500))
        );
    }
}
