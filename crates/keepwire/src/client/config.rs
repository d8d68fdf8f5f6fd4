//! [`ClientConfig`]: the settings a [`ClientBuilder`](super::ClientBuilder) collects, as plain
//! data, checked once by [`ClientConfig::validate`].
//!
//! The builder is the public way in; every client (async and blocking) and the connection
//! task read this struct, never the builder, so the builder depends on the clients and
//! nothing depends back on it.

use std::sync::Arc;
use std::time::Duration;

use crate::frame::FramingSpec;
use crate::liveness::{
    Heartbeat, MIN_PING_INTERVAL, MIN_PING_TIMEOUT, PingConfig, default_heartbeat,
};
use crate::socket::SocketOptions;

use super::ClientError;

/// Framing, endpoints, timeouts, heartbeats and backoff of one client. Field docs give the
/// defaults, which [`ClientConfig::new`] sets; the builder's setters document each one.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    pub(crate) framing: FramingSpec,
    /// In order of preference.
    pub(crate) endpoints: Vec<String>,
    /// 5 s per endpoint (connect plus the probe heartbeat).
    pub(crate) connect_timeout: Duration,
    /// 30 s for the whole request (the blocking clients: for the reply).
    pub(crate) request_timeout: Duration,
    /// 10 s for a write to a peer that does not read.
    pub(crate) write_timeout: Duration,
    /// The empty frame where the framing has one, else none.
    pub(crate) heartbeat: Option<Arc<dyn Heartbeat>>,
    /// No pings.
    pub(crate) ping: Option<PingConfig>,
    pub(crate) probe_on_connect: bool,
    /// 100 ms doubling to 10 s.
    pub(crate) reconnect_base: Duration,
    pub(crate) reconnect_max: Duration,
    /// 1 s doubling to 60 s.
    pub(crate) down_base: Duration,
    pub(crate) down_max: Duration,
    pub(crate) socket: SocketOptions,
    /// `None`: 1 on an ordered link, 1024 on a keyed or unmatched one.
    pub(crate) max_in_flight: Option<usize>,
    /// 1024 requests queued for a long connection.
    pub(crate) queue: usize,
    pub(crate) fail_back: bool,
    pub(crate) retry_sent: bool,
    /// 1024 unsolicited frames buffered.
    pub(crate) unsolicited: usize,
    /// `None`: only under `eof` framing.
    pub(crate) half_close: Option<bool>,
    pub(crate) checkout_timeout: Duration,
    pub(crate) max_idle: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    /// No session: no login, no logout.
    pub(crate) session: Option<Arc<dyn super::SessionHook>>,
    /// 5 s for a login's (and a logout's) answer.
    pub(crate) login_timeout: Duration,
    /// No TLS.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::ClientTls>,
    /// No proxy.
    #[cfg(feature = "socks")]
    pub(crate) socks5: Option<crate::socks::Socks5>,
}

impl ClientConfig {
    /// The defaults, for `framing` frames to `endpoints`.
    pub(crate) fn new(framing: FramingSpec, endpoints: Vec<String>) -> Self {
        ClientConfig {
            heartbeat: default_heartbeat(&framing),
            framing,
            endpoints,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            ping: None,
            probe_on_connect: false,
            reconnect_base: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            down_base: Duration::from_secs(1),
            down_max: Duration::from_secs(60),
            socket: SocketOptions::default(),
            max_in_flight: None,
            queue: 1024,
            fail_back: true,
            retry_sent: false,
            unsolicited: 1024,
            half_close: None,
            checkout_timeout: Duration::from_secs(5),
            max_idle: None,
            max_lifetime: None,
            session: None,
            login_timeout: Duration::from_secs(5),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "socks")]
            socks5: None,
        }
    }

    /// Whether a short connection half-closes after writing its request.
    pub(crate) fn half_closes(&self) -> bool {
        self.half_close
            .unwrap_or_else(|| self.framing.is_until_close())
    }

    /// R1 of the heartbeat rule: a request that this link's heartbeat classifies as a
    /// heartbeat is refused before a byte is written, since the peer would answer it as a
    /// ping (and a same-bytes pong would come back as the "reply"). With heartbeats off the
    /// same frame is plain data. Short clients call it too: a short server answers a
    /// heartbeat (a probe) and waits for the request.
    pub(crate) fn refuse_heartbeat_frame(&self, frame: &[u8]) -> Result<(), ClientError> {
        match self.heartbeat.as_deref() {
            Some(h) if h.classify(frame).is_some() => Err(ClientError::heartbeat_frame(frame)),
            _ => Ok(()),
        }
    }

    /// The checks of [`ClientBuilder::validate`](super::ClientBuilder::validate): a connect
    /// timeout above zero, and heartbeat settings that can work on this framing.
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        if self.connect_timeout.is_zero() {
            // Every connect would fail and mark a healthy endpoint down.
            return Err(ClientError::config(
                "connect_timeout 0s: no connect can finish in no time (every endpoint would be \
                 marked down): give a positive timeout",
            ));
        }
        let Some(hb) = self.heartbeat.as_deref() else {
            return self.validate_without_heartbeats();
        };
        if let Some(p) = self.ping {
            if p.interval < MIN_PING_INTERVAL || p.timeout < MIN_PING_TIMEOUT {
                return Err(ClientError::config(format!(
                    "ping interval {} and timeout {}: the interval must be at least 100ms \
                     (a peer answers same-bytes heartbeats at most every 50ms) and the timeout \
                     at least 10ms",
                    humantime::format_duration(p.interval),
                    humantime::format_duration(p.timeout)
                )));
            }
        }
        self.validate_heartbeat_frames(hb)
    }

    /// [`validate`](Self::validate), plus what a long connection needs: a framing whose
    /// messages end before the connection does (`eof` framing ends each message by closing
    /// the connection, so only a short client can use it).
    pub(crate) fn validate_long(&self) -> Result<(), ClientError> {
        if self.framing.is_until_close() {
            return Err(ClientError::config(
                "eof framing ends a message by closing the connection, so it needs a short \
                 client (one connection per request; --mode short), not a long one",
            ));
        }
        self.validate()
    }

    /// Heartbeats off: nothing may need to write one.
    fn validate_without_heartbeats(&self) -> Result<(), ClientError> {
        if self.ping.is_some() {
            return Err(ClientError::config(
                "pings need heartbeat frames, and heartbeats are off (heartbeat_frames(None)): \
                 give heartbeat frames, or ping(None)",
            ));
        }
        if self.probe_on_connect {
            return Err(ClientError::config(
                "the probe on connect needs heartbeat frames, and heartbeats are off \
                 (heartbeat_frames(None)): give heartbeat frames, or probe_on_connect(false)",
            ));
        }
        Ok(())
    }

    /// A heartbeat must go out and come back as one frame: under `eof` none can.
    fn validate_heartbeat_frames(&self, hb: &dyn Heartbeat) -> Result<(), ClientError> {
        let sends = self.ping.is_some() || self.probe_on_connect;
        let encodes = |f: &[u8]| self.framing.carries(f);
        let ping = hb.ping(1);
        let ping_ok = encodes(&ping);
        if sends && !ping_ok {
            if self.framing.is_until_close() {
                return Err(ClientError::config(
                    "no heartbeat can be sent under eof (a message ends only at the close): \
                     turn pings and the probe off",
                ));
            }
            return Err(ClientError::config(format!(
                "the heartbeat ping cannot be sent under {}: give ping=/pong= payloads the \
                 framing can carry",
                self.framing
            )));
        }
        if (sends || ping_ok) && !encodes(&hb.pong(&ping)) {
            return Err(ClientError::config(format!(
                "the heartbeat pong cannot be sent under {}: give ping=/pong= payloads the \
                 framing can carry",
                self.framing
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(framing: &str) -> ClientConfig {
        let framing = framing.parse().expect("framing spec");
        ClientConfig::new(framing, vec!["127.0.0.1:1".into()])
    }

    #[test]
    fn eof_framing_is_refused_for_long_clients_only() {
        let c = cfg("eof");
        assert!(c.validate().is_ok());
        let e = c.validate_long().unwrap_err();
        assert!(e.is_config(), "{e}");
        assert!(e.to_string().contains("eof framing"), "{e}");
        assert!(cfg("line").validate_long().is_ok());
    }

    #[test]
    fn pings_need_heartbeat_frames() {
        let mut c = cfg("len:ascii:4");
        c.heartbeat = None;
        c.ping = Some(PingConfig::default());
        let e = c.validate().unwrap_err();
        assert!(e.is_config() && e.to_string().contains("pings need heartbeat frames"));
        c.ping = None;
        c.probe_on_connect = true;
        assert!(c.validate().unwrap_err().is_config());
    }

    #[test]
    fn default_heartbeat_is_the_empty_frame_where_the_framing_has_one() {
        assert!(cfg("len:ascii:4").heartbeat.is_some());
        assert!(cfg("fixed:4").heartbeat.is_none());
        assert!(cfg("eof").heartbeat.is_none());
    }
}
