//! The `--heartbeat` spec: `off`, or `interval=DUR,timeout=DUR,misses=N[,ping=..][,pong=..]`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;

use super::{EmptyHeartbeat, FixedHeartbeat, Heartbeat, PingConfig};
use crate::socket::parse_duration;

/// The shortest `interval=` accepted: twice [`super::PONG_GAP`], the closest two same-bytes
/// heartbeats are answered.
pub const MIN_PING_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// The shortest `timeout=` accepted.
pub const MIN_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(10);

fn fmt_ms(d: std::time::Duration) -> String {
    if d.subsec_nanos() % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
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

/// Parses `hex:..` or `text:..` into bytes.
///
/// # Errors
/// A message naming the bad payload and the accepted forms.
pub fn parse_payload(s: &str) -> Result<Bytes, String> {
    if let Some(h) = s.strip_prefix("hex:") {
        crate::text::from_hex(h)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    } else if let Some(t) = s.strip_prefix("text:") {
        crate::text::unescape(t)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    } else {
        Err(format!(
            "payload {s:?}: expected hex:<digits> or text:<text>"
        ))
    }
}

impl FromStr for HeartbeatSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
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
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("heartbeat {part:?}: expected key=value (interval, timeout, misses, ping, pong) or off")
            })?;
            match k {
                "interval" => {
                    cfg.interval = parse_duration(v).map_err(|e| format!("interval: {e}"))?;
                    pinging = true;
                }
                "timeout" => {
                    cfg.timeout = parse_duration(v).map_err(|e| format!("timeout: {e}"))?;
                    pinging = true;
                }
                "misses" => {
                    cfg.misses = v.parse::<u32>().ok().filter(|m| *m >= 1).ok_or_else(|| {
                        format!("heartbeat misses={v}: expected a whole number of at least 1")
                    })?;
                    pinging = true;
                }
                "ping" => {
                    spec.ping = Some(parse_payload(v).map_err(|e| format!("heartbeat ping: {e}"))?)
                }
                "pong" => {
                    spec.pong = Some(parse_payload(v).map_err(|e| format!("heartbeat pong: {e}"))?)
                }
                _ => {
                    return Err(format!(
                        "heartbeat key {k:?}: expected interval, timeout, misses, ping or pong"
                    ));
                }
            }
        }
        if pinging {
            if cfg.interval < MIN_PING_INTERVAL {
                return Err(format!(
                    "heartbeat interval={}: must be at least 100ms (a peer answers same-bytes heartbeats at most every 50ms)",
                    fmt_ms(cfg.interval)
                ));
            }
            if cfg.timeout < MIN_PING_TIMEOUT {
                return Err(format!(
                    "heartbeat timeout={}: must be at least 10ms",
                    fmt_ms(cfg.timeout)
                ));
            }
            spec.ping_cfg = Some(cfg);
        }
        Ok(spec)
    }
}

impl fmt::Display for HeartbeatSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.off {
            return f.write_str("off");
        }
        let mut parts = Vec::new();
        if let Some(c) = self.ping_cfg {
            parts.push(format!("interval={:?}", c.interval));
            parts.push(format!("timeout={:?}", c.timeout));
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
