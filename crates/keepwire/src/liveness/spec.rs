//! The `--heartbeat` spec: `off`, or `interval=DUR,timeout=DUR,misses=N[,ping=..][,pong=..]`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;

use super::{EmptyHeartbeat, FixedHeartbeat, Heartbeat, PingConfig};
use crate::socket::{DurationError, parse_duration};
use crate::text::TextError;
pub use crate::text::parse_payload;

/// The shortest `interval=` accepted: twice [`super::PONG_GAP`], the closest two same-bytes
/// heartbeats are answered.
pub const MIN_PING_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// The shortest `timeout=` accepted.
pub const MIN_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(10);

fn fmt_ms(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A parsed `--heartbeat` value.
///
/// - `off`: no heartbeat handling at all; empty frames reach the handler like any other.
/// - `interval=5s,timeout=2s,misses=3`: ping the peer after 5 s of inbound silence, count a
///   miss when no pong came within 2 s, give up after 3 misses in a row. Any of the three
///   keys may be left out (defaults 30 s, 10 s, 3), but at least one of them turns pinging
///   on.
/// - `ping=..`, `pong=..`: payloads as `hex:0a0b` or `text:PING` (with escapes), for framings
///   with no empty frame or peers that want a body. Without them the empty frame is used.
///   Given alone, they change what is answered without sending pings.
///
/// ```
/// use keepwire::liveness::HeartbeatSpec;
/// let hb: HeartbeatSpec = "interval=5s,timeout=1s,misses=2,ping=text:PING,pong=text:PONG".parse().unwrap();
/// assert_eq!(hb.ping_config().unwrap().misses, 2);
/// assert!("off".parse::<HeartbeatSpec>().unwrap().is_off());
/// assert!("interval=fast".parse::<HeartbeatSpec>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatSpec {
    off: bool,
    ping_cfg: Option<PingConfig>,
    ping: Option<Bytes>,
    pong: Option<Bytes>,
}

impl HeartbeatSpec {
    /// Heartbeats turned off.
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// Pinging, if asked for.
    pub fn ping_config(&self) -> Option<PingConfig> {
        self.ping_cfg
    }

    /// The recogniser: `None` when off; fixed payloads when given; else the empty frame.
    pub fn heartbeat(&self) -> Option<Arc<dyn Heartbeat>> {
        if self.off {
            return None;
        }
        match (&self.ping, &self.pong) {
            (None, None) => Some(Arc::new(EmptyHeartbeat)),
            (ping, pong) => {
                let ping = ping.clone().unwrap_or_default();
                let pong = pong.clone().unwrap_or_else(|| ping.clone());
                Some(Arc::new(FixedHeartbeat::new(ping, pong)))
            }
        }
    }
}

impl FromStr for HeartbeatSpec {
    type Err = HeartbeatSpecError;

    fn from_str(s: &str) -> Result<Self, HeartbeatSpecError> {
        let s = s.trim();
        if s == "off" {
            return Ok(HeartbeatSpec {
                off: true,
                ..Default::default()
            });
        }
        let mut spec = HeartbeatSpec::default();
        let mut cfg = PingConfig::default();
        let mut pinging = false;
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (key, v) = split_pair(part)?;
            match key {
                HeartbeatKey::Interval => cfg.interval = duration(key, v)?,
                HeartbeatKey::Timeout => cfg.timeout = duration(key, v)?,
                HeartbeatKey::Misses => {
                    cfg.misses = v.parse::<u32>().ok().filter(|m| *m >= 1).ok_or_else(|| {
                        HeartbeatSpecError::BadMisses {
                            found: v.to_string(),
                        }
                    })?;
                }
                HeartbeatKey::Ping => spec.ping = Some(payload(key, v)?),
                HeartbeatKey::Pong => spec.pong = Some(payload(key, v)?),
            }
            pinging |= key.configures_pinging();
        }
        if pinging {
            check_ping_config(&cfg)?;
            spec.ping_cfg = Some(cfg);
        }
        Ok(spec)
    }
}

/// `key=value` with a known key.
fn split_pair(part: &str) -> Result<(HeartbeatKey, &str), HeartbeatSpecError> {
    let (k, v) = part
        .split_once('=')
        .ok_or_else(|| HeartbeatSpecError::NotKeyValue {
            found: part.to_string(),
        })?;
    let key = HeartbeatKey::from_name(k).ok_or_else(|| HeartbeatSpecError::UnknownKey {
        found: k.to_string(),
    })?;
    Ok((key, v))
}

fn duration(key: HeartbeatKey, v: &str) -> Result<std::time::Duration, HeartbeatSpecError> {
    parse_duration(v).map_err(|source| HeartbeatSpecError::BadDuration { key, source })
}

fn payload(key: HeartbeatKey, v: &str) -> Result<Bytes, HeartbeatSpecError> {
    parse_payload(v).map_err(|source| HeartbeatSpecError::BadPayload { key, source })
}

fn check_ping_config(cfg: &PingConfig) -> Result<(), HeartbeatSpecError> {
    if cfg.interval < MIN_PING_INTERVAL {
        return Err(HeartbeatSpecError::TooShort {
            key: HeartbeatKey::Interval,
            found: cfg.interval,
        });
    }
    if cfg.timeout < MIN_PING_TIMEOUT {
        return Err(HeartbeatSpecError::TooShort {
            key: HeartbeatKey::Timeout,
            found: cfg.timeout,
        });
    }
    Ok(())
}

/// A key of the `--heartbeat` spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeartbeatKey {
    /// `interval=`: inbound silence before a ping.
    Interval,
    /// `timeout=`: how long a pong may take.
    Timeout,
    /// `misses=`: unanswered pings in a row before giving up.
    Misses,
    /// `ping=`: the ping payload.
    Ping,
    /// `pong=`: the pong payload.
    Pong,
}

impl HeartbeatKey {
    /// The key as written in the spec.
    pub fn name(self) -> &'static str {
        match self {
            HeartbeatKey::Interval => "interval",
            HeartbeatKey::Timeout => "timeout",
            HeartbeatKey::Misses => "misses",
            HeartbeatKey::Ping => "ping",
            HeartbeatKey::Pong => "pong",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            HeartbeatKey::Interval,
            HeartbeatKey::Timeout,
            HeartbeatKey::Misses,
            HeartbeatKey::Ping,
            HeartbeatKey::Pong,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    /// `interval`, `timeout` and `misses` turn pinging on; the payloads do not.
    fn configures_pinging(self) -> bool {
        matches!(
            self,
            HeartbeatKey::Interval | HeartbeatKey::Timeout | HeartbeatKey::Misses
        )
    }
}

impl fmt::Display for HeartbeatKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--heartbeat` spec that does not parse, or asks for pings faster than accepted.
///
/// `Display` is one line; where a value's own parser refused it (a duration, a payload) that
/// error is the `source()`, and `{:#}` appends it for a report on one line:
///
/// ```
/// use keepwire::liveness::{HeartbeatKey, HeartbeatSpec};
/// let e = "interval=fast".parse::<HeartbeatSpec>().unwrap_err();
/// assert_eq!(e.key(), Some(HeartbeatKey::Interval));
/// assert_eq!(e.to_string(), "heartbeat interval");
/// assert_eq!(
///     format!("{e:#}"),
///     "heartbeat interval: \"fast\" is not a duration (expected number at 0); \
///      expected a number with a unit, e.g. 250ms, 30s, 2m, 1h"
/// );
/// let e = "interval=10ms".parse::<HeartbeatSpec>().unwrap_err();
/// assert!(e.is_too_short());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeartbeatSpecError {
    /// A part is not `key=value`.
    NotKeyValue {
        /// The part.
        found: String,
    },
    /// A key other than `interval`, `timeout`, `misses`, `ping`, `pong`.
    UnknownKey {
        /// The key.
        found: String,
    },
    /// `interval=` or `timeout=` is not an accepted duration.
    BadDuration {
        /// Which key.
        key: HeartbeatKey,
        /// Why the duration was refused.
        source: DurationError,
    },
    /// `misses=` is not a whole number of at least 1.
    BadMisses {
        /// The value given.
        found: String,
    },
    /// `ping=` or `pong=` is not a payload.
    BadPayload {
        /// Which key.
        key: HeartbeatKey,
        /// Why the payload was refused.
        source: TextError,
    },
    /// `interval=` below [`MIN_PING_INTERVAL`] or `timeout=` below [`MIN_PING_TIMEOUT`].
    TooShort {
        /// Which key.
        key: HeartbeatKey,
        /// The duration given.
        found: std::time::Duration,
    },
}

impl HeartbeatSpecError {
    /// The key whose value was refused; `None` when the part is not `key=value` or names no
    /// known key.
    pub fn key(&self) -> Option<HeartbeatKey> {
        match self {
            HeartbeatSpecError::NotKeyValue { .. } | HeartbeatSpecError::UnknownKey { .. } => None,
            HeartbeatSpecError::BadMisses { .. } => Some(HeartbeatKey::Misses),
            HeartbeatSpecError::BadDuration { key, .. }
            | HeartbeatSpecError::BadPayload { key, .. }
            | HeartbeatSpecError::TooShort { key, .. } => Some(*key),
        }
    }

    /// The spec is not a list of `key=value` with known keys.
    pub fn is_syntax(&self) -> bool {
        matches!(
            self,
            HeartbeatSpecError::NotKeyValue { .. } | HeartbeatSpecError::UnknownKey { .. }
        )
    }

    /// A valid duration below the shortest accepted `interval=` or `timeout=`.
    pub fn is_too_short(&self) -> bool {
        matches!(self, HeartbeatSpecError::TooShort { .. })
    }
}

impl fmt::Display for HeartbeatSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeartbeatSpecError::NotKeyValue { found } => write!(
                f,
                "heartbeat {found:?}: expected key=value (interval, timeout, misses, ping, pong) or off"
            ),
            HeartbeatSpecError::UnknownKey { found } => write!(
                f,
                "heartbeat key {found:?}: expected interval, timeout, misses, ping or pong"
            ),
            HeartbeatSpecError::BadMisses { found } => write!(
                f,
                "heartbeat misses={found}: expected a whole number of at least 1"
            ),
            HeartbeatSpecError::BadDuration { key, source } => {
                write!(f, "heartbeat {key}")?;
                if f.alternate() {
                    write!(f, ": {source:#}")?;
                }
                Ok(())
            }
            HeartbeatSpecError::BadPayload { key, source } => {
                write!(f, "heartbeat {key}")?;
                if f.alternate() {
                    write!(f, ": {source:#}")?;
                }
                Ok(())
            }
            HeartbeatSpecError::TooShort { key, found } => {
                let found = fmt_ms(*found);
                match key {
                    HeartbeatKey::Interval => write!(
                        f,
                        "heartbeat {key}={found}: must be at least {} (a peer answers \
                         same-bytes heartbeats at most every {})",
                        fmt_ms(MIN_PING_INTERVAL),
                        fmt_ms(super::PONG_GAP)
                    ),
                    _ => write!(
                        f,
                        "heartbeat {key}={found}: must be at least {}",
                        fmt_ms(MIN_PING_TIMEOUT)
                    ),
                }
            }
        }
    }
}

impl std::error::Error for HeartbeatSpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HeartbeatSpecError::BadDuration { source, .. } => Some(source),
            HeartbeatSpecError::BadPayload { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl fmt::Display for HeartbeatSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.off {
            return f.write_str("off");
        }
        let mut parts = Vec::new();
        if let Some(c) = self.ping_cfg {
            parts.push(format!("interval={}", fmt_ms(c.interval)));
            parts.push(format!("timeout={}", fmt_ms(c.timeout)));
            parts.push(format!("misses={}", c.misses));
        }
        if let Some(p) = &self.ping {
            parts.push(format!("ping=hex:{}", crate::text::to_hex(p)));
        }
        if let Some(p) = &self.pong {
            parts.push(format!("pong=hex:{}", crate::text::to_hex(p)));
        }
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::time::Duration;

    use super::*;

    fn err(s: &str) -> HeartbeatSpecError {
        s.parse::<HeartbeatSpec>().unwrap_err()
    }

    #[test]
    fn parses() {
        assert!("off".parse::<HeartbeatSpec>().unwrap().is_off());
        let hb: HeartbeatSpec = "misses=2".parse().unwrap();
        let cfg = hb.ping_config().unwrap();
        assert_eq!(cfg.misses, 2);
        assert_eq!(cfg.interval, PingConfig::default().interval);
        // Payloads alone do not turn pinging on.
        let hb: HeartbeatSpec = "ping=text:P,pong=hex:51".parse().unwrap();
        assert_eq!(hb.ping_config(), None);
        assert_eq!(
            (hb.ping.as_deref(), hb.pong.as_deref()),
            (Some(&b"P"[..]), Some(&b"Q"[..]))
        );
        let hb: HeartbeatSpec = "interval=100ms,timeout=10ms".parse().unwrap();
        assert_eq!(hb.ping_config().unwrap().interval, MIN_PING_INTERVAL);
    }

    /// Each refusal: the key at fault, the predicates and the one line shown.
    #[test]
    fn errors_name_found_and_expected() {
        let cases: &[(&str, Option<HeartbeatKey>, bool, bool, &str)] = &[
            (
                "every",
                None,
                true,
                false,
                "heartbeat \"every\": expected key=value (interval, timeout, misses, ping, pong) or off",
            ),
            (
                "every=1s",
                None,
                true,
                false,
                "heartbeat key \"every\": expected interval, timeout, misses, ping or pong",
            ),
            (
                "misses=0",
                Some(HeartbeatKey::Misses),
                false,
                false,
                "heartbeat misses=0: expected a whole number of at least 1",
            ),
            (
                "interval=99ms",
                Some(HeartbeatKey::Interval),
                false,
                true,
                "heartbeat interval=99ms: must be at least 100ms (a peer answers same-bytes \
                 heartbeats at most every 50ms)",
            ),
            (
                "interval=1s,timeout=1ms",
                Some(HeartbeatKey::Timeout),
                false,
                true,
                "heartbeat timeout=1ms: must be at least 10ms",
            ),
            (
                "timeout=soon",
                Some(HeartbeatKey::Timeout),
                false,
                false,
                "heartbeat timeout",
            ),
            (
                "pong=PONG",
                Some(HeartbeatKey::Pong),
                false,
                false,
                "heartbeat pong",
            ),
        ];
        for &(text, key, syntax, short, msg) in cases {
            let e = err(text);
            assert_eq!(e.key(), key, "{text}");
            assert_eq!((e.is_syntax(), e.is_too_short()), (syntax, short), "{text}");
            assert_eq!(e.to_string(), msg);
        }
    }

    #[test]
    fn a_value_error_is_the_source() {
        let e = err("interval=1s,timeout=366d");
        let HeartbeatSpecError::BadDuration { key, source } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(*key, HeartbeatKey::Timeout);
        assert!(source.is_too_long());
        assert_eq!(e.source().map(|c| c.to_string()), Some(source.to_string()));
        assert_eq!(
            format!("{e:#}"),
            "heartbeat timeout: \"366d\" is too long: the largest accepted duration is 365d"
        );

        let e = err("ping=hex:0g");
        let HeartbeatSpecError::BadPayload { key, source } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(*key, HeartbeatKey::Ping);
        assert!(source.is_hex());
        assert_eq!(
            format!("{e:#}"),
            "heartbeat ping: hex \"0g\": character 1 ('g') is not a hex digit"
        );
        // The rest wrap nothing.
        assert!(err("misses=x").source().is_none());
        assert!(err("interval=1ms").source().is_none());
    }

    #[test]
    fn too_short_names_the_duration() {
        assert_eq!(
            err("interval=1s,timeout=1500us").to_string(),
            "heartbeat timeout=1ms 500us: must be at least 10ms"
        );
        let HeartbeatSpecError::TooShort { found, .. } = err("interval=1ns") else {
            panic!();
        };
        assert_eq!(found, Duration::from_nanos(1));
    }
}
