//! [`ClientState`]: what a client's handles and its connection task share: the
//! configuration, endpoint health, counters and the connection now in use.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::config::ClientConfig;
use super::core::Matching;
use super::endpoint::{EndpointSet, EndpointStatus, Jitter};

/// Counters of one client, as [`LongClient::stats`](super::LongClient::stats) reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Connections established (the first one included).
    pub connects: u64,
    /// Connections lost or closed by the client (heartbeats, timeouts, errors).
    pub disconnects: u64,
    /// Pings sent.
    pub pings_sent: u64,
    /// Pings from the peer answered.
    pub pings_answered: u64,
    /// Heartbeat frames taken as pongs.
    pub pongs_received: u64,
    /// Inbound frames that matched no request.
    pub unsolicited: u64,
    /// Mux: replies that came after their request timed out (or its caller gave up); also
    /// counted in `unsolicited` and sent to the unsolicited stream.
    pub late_replies: u64,
    /// Unsolicited frames dropped because nobody read them fast enough.
    pub unsolicited_dropped: u64,
    /// Endpoints marked down.
    pub endpoints_marked_down: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connects: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) pings_sent: AtomicU64,
    pub(crate) pings_answered: AtomicU64,
    pub(crate) pongs_received: AtomicU64,
    pub(crate) unsolicited: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) unsolicited_dropped: AtomicU64,
    pub(crate) marked_down: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What a client's handles and its connection task share: configuration, endpoint health,
/// counters, and the connection now in use.
pub(crate) struct ClientState {
    pub(crate) cfg: ClientConfig,
    pub(crate) matching: Matching,
    endpoints: Arc<Mutex<EndpointSet>>,
    jitter: Mutex<Jitter>,
    pub(crate) counters: Counters,
    connected: AtomicBool,
    current: Mutex<Option<usize>>,
    /// Reconnect when the connection is lost (a pooled connection does not: the pool
    /// replaces it).
    reconnect: bool,
}

impl std::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientState")
            .field("endpoints", &self.cfg.endpoints)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl ClientState {
    pub(crate) fn new(cfg: ClientConfig, matching: Matching) -> Self {
        let endpoints = Arc::new(Mutex::new(EndpointSet::new(
            cfg.endpoints.iter().cloned(),
            cfg.down_base,
            cfg.down_max,
        )));
        ClientState::with_endpoints(cfg, matching, endpoints)
    }

    /// A link whose endpoint health is shared with others (the pool's connections).
    pub(crate) fn with_endpoints(
        cfg: ClientConfig,
        matching: Matching,
        endpoints: Arc<Mutex<EndpointSet>>,
    ) -> Self {
        ClientState {
            cfg,
            matching,
            endpoints,
            jitter: Mutex::new(Jitter::new()),
            counters: Counters::default(),
            connected: AtomicBool::new(false),
            current: Mutex::new(None),
            reconnect: true,
        }
    }

    /// The connection task ends when the connection is lost, instead of reconnecting.
    pub(crate) fn without_reconnect(mut self) -> Self {
        self.reconnect = false;
        self
    }

    pub(crate) fn eps(&self) -> std::sync::MutexGuard<'_, EndpointSet> {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn jitter(&self) -> f64 {
        self.jitter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_f64()
    }

    pub(crate) fn mark_down(&self, ep: usize, reason: &str) {
        let j = self.jitter();
        self.eps().mark_down(ep, Instant::now(), reason, j);
        inc(&self.counters.marked_down);
        tracing::info!(
            endpoint = self.eps().addr(ep).unwrap_or("?"),
            reason,
            "endpoint marked down"
        );
    }

    /// A connection to `ep` proved its service: the endpoint's down backoff starts over.
    pub(crate) fn proven(&self, ep: usize) {
        self.eps().proven(ep);
    }

    pub(crate) fn status(&self) -> Vec<EndpointStatus> {
        self.eps().status(Instant::now())
    }

    pub(crate) fn stats(&self) -> ClientStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            connects: g(&c.connects),
            disconnects: g(&c.disconnects),
            pings_sent: g(&c.pings_sent),
            pings_answered: g(&c.pings_answered),
            pongs_received: g(&c.pongs_received),
            unsolicited: g(&c.unsolicited),
            late_replies: g(&c.late_replies),
            unsolicited_dropped: g(&c.unsolicited_dropped),
            endpoints_marked_down: g(&c.marked_down),
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn current_endpoint(&self) -> Option<String> {
        let cur = *self.current.lock().unwrap_or_else(PoisonError::into_inner);
        cur.and_then(|i| self.eps().addr(i).map(str::to_owned))
    }

    pub(crate) fn set_current(&self, ep: Option<usize>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = ep;
        self.connected.store(ep.is_some(), Ordering::Release);
    }

    /// Whether the connection task reconnects a lost connection.
    pub(crate) fn reconnects(&self) -> bool {
        self.reconnect
    }

    /// Requests in flight on one connection: configured, else the link's default.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.cfg
            .max_in_flight
            .unwrap_or_else(|| self.matching.default_max_in_flight())
    }
}
