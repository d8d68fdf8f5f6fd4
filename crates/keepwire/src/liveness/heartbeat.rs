//! Recognising and building heartbeat frames.
//!
//! A heartbeat is a frame that only says "I am alive". Most links use the empty frame: a bare
//! length header (`"0000"` under `len:ascii:4`, `00 00` under `len:be:2`), which is the usual
//! ISO 8583 keep-alive, or an empty line under `line`. There the ping and the pong are the same
//! bytes. Other protocols have distinct messages (CMPP `ACTIVE_TEST` 0x00000008 /
//! `ACTIVE_TEST_RESP` 0x80000008, SMPP `enquire_link` / `enquire_link_resp`), which later
//! protocol templates implement through the same [`Heartbeat`] trait.

use std::sync::Arc;

use bytes::Bytes;

use crate::frame::FramingSpec;

/// What a frame is, as far as heartbeats go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// A ping: the peer asks whether we are alive.
    Ping,
    /// A pong: the answer to a ping. Never answered.
    Pong,
    /// A heartbeat whose ping and pong are the same bytes (the empty frame): a ping unless we
    /// have a ping outstanding, in which case it is our pong.
    Either,
}

/// Recognises heartbeat frames and builds them.
///
/// Implemented here for the empty frame ([`EmptyHeartbeat`]) and for fixed payloads
/// ([`FixedHeartbeat`]); protocol templates whose pings carry a sequence number implement it
/// too.
pub trait Heartbeat: Send + Sync + std::fmt::Debug + 'static {
    /// Whether `frame` is a heartbeat, and which kind. `None` for application frames.
    fn classify(&self, frame: &[u8]) -> Option<Beat>;
    /// The ping to send, for the `seq`-th ping on this connection (starting at 1).
    fn ping(&self, seq: u32) -> Bytes;
    /// The pong that answers `ping`.
    fn pong(&self, ping: &[u8]) -> Bytes;
}

/// The heartbeat frames a link uses when none are configured: [`EmptyHeartbeat`] where the
/// framing can carry the empty frame on a live connection ([`FramingSpec::has_empty_frame`]:
/// `len:*`, `line`, a `delim:*` that strips its delimiter), and none elsewhere (`fixed:N`,
/// `eof`, a delimiter kept in the frame), where every frame is then data.
///
/// The one default of the server's config and of both clients' builders.
///
/// ```
/// use keepwire::liveness::{default_heartbeat, Beat};
/// let hb = default_heartbeat(&"len:ascii:4".parse().unwrap()).unwrap();
/// assert_eq!(hb.classify(b""), Some(Beat::Either));
/// assert!(default_heartbeat(&"fixed:4".parse().unwrap()).is_none());
/// ```
pub fn default_heartbeat(framing: &FramingSpec) -> Option<Arc<dyn Heartbeat>> {
    if framing.has_empty_frame() {
        Some(Arc::new(EmptyHeartbeat))
    } else {
        None
    }
}

/// The empty frame is both ping and pong: the ISO 8583 `"0000"` keep-alive.
///
/// ```
/// use keepwire::liveness::{Beat, EmptyHeartbeat, Heartbeat};
/// assert_eq!(EmptyHeartbeat.classify(b""), Some(Beat::Either));
/// assert_eq!(EmptyHeartbeat.classify(b"0800"), None);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyHeartbeat;

impl Heartbeat for EmptyHeartbeat {
    fn classify(&self, frame: &[u8]) -> Option<Beat> {
        frame.is_empty().then_some(Beat::Either)
    }

    fn ping(&self, _seq: u32) -> Bytes {
        Bytes::new()
    }

    fn pong(&self, _ping: &[u8]) -> Bytes {
        Bytes::new()
    }
}

/// Fixed ping and pong payloads, e.g. `ping=text:PING`, `pong=text:PONG` for framings with no
/// empty frame (`fixed`, `eof`) or peers that want a body.
///
/// ```
/// use keepwire::liveness::{Beat, FixedHeartbeat, Heartbeat};
/// let hb = FixedHeartbeat::new("PING", "PONG");
/// assert_eq!(hb.classify(b"PING"), Some(Beat::Ping));
/// assert_eq!(hb.classify(b"PONG"), Some(Beat::Pong));
/// let same = FixedHeartbeat::new("HB", "HB");
/// assert_eq!(same.classify(b"HB"), Some(Beat::Either));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedHeartbeat {
    ping: Bytes,
    pong: Bytes,
}

impl FixedHeartbeat {
    /// Heartbeats with these exact payloads.
    pub fn new(ping: impl Into<Bytes>, pong: impl Into<Bytes>) -> Self {
        FixedHeartbeat {
            ping: ping.into(),
            pong: pong.into(),
        }
    }
}

impl Heartbeat for FixedHeartbeat {
    fn classify(&self, frame: &[u8]) -> Option<Beat> {
        match (frame == &self.ping[..], frame == &self.pong[..]) {
            (true, true) => Some(Beat::Either),
            (true, false) => Some(Beat::Ping),
            (false, true) => Some(Beat::Pong),
            (false, false) => None,
        }
    }

    fn ping(&self, _seq: u32) -> Bytes {
        self.ping.clone()
    }

    fn pong(&self, _ping: &[u8]) -> Bytes {
        self.pong.clone()
    }
}
