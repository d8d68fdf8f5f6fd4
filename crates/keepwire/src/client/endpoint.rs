//! Endpoints, failover and reconnect backoff, as sans-IO pieces: time and randomness are
//! arguments, so every decision here is unit-tested without sockets or clocks.
//!
//! # Failover
//! Endpoints are an ordered list: the first is preferred. An endpoint that fails (refused,
//! connect timeout, probe heartbeat unanswered, heartbeats stopped) is marked *down* until a
//! retry time that backs off exponentially per endpoint. [`EndpointSet::plan`] orders the
//! endpoints for a connect attempt: those up (or whose retry time has come) in list order,
//! then those still down, soonest retry first — a down endpoint is tried last, never
//! forgotten, so a client whose every endpoint failed recovers as soon as one returns.
//!
//! | endpoint state | connect succeeds          | connect or heartbeat fails                  |
//! |----------------|---------------------------|---------------------------------------------|
//! | up             | stays up                  | down until `now + backoff`; backoff doubles |
//! | down           | up                        | down until `now + backoff`; backoff doubles |
//!
//! An endpoint's backoff resets only once a connection to it proves the service (a reply
//! to a request, a pong to a ping), not on a bare connect: a peer that accepts and closes
//! is backed off from ever longer. A long connection lost young (closed or reset) with
//! nothing delivered marks its endpoint down, so the next plan tries the others first.
//!
//! # Recovery probing
//! While connected to an endpoint other than the first, a long client asks
//! [`EndpointSet::fail_back_candidate`] whether a better endpoint is due a retry; if so it
//! probes it (connect, and a heartbeat when configured) beside the current connection, which
//! keeps serving requests meanwhile, and moves back to it once nothing is in flight.

use std::time::{Duration, Instant};

use super::error::EndpointFailure;

/// Exponential backoff with jitter: `base`, `2·base`, `4·base`, ... up to `max`, each delay
/// drawn uniformly from `[d/2, d]` ("equal jitter") so that many clients cut off by one server
/// restart do not reconnect in lockstep.
///
/// Sans-IO: the jitter comes in as an argument.
///
/// ```
/// use std::time::Duration;
/// use keepwire::client::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// // A jitter of 1.0 gives the full delay, 0.0 the half.
/// assert_eq!(b.next_delay(1.0), Duration::from_millis(100));
/// assert_eq!(b.next_delay(1.0), Duration::from_millis(200));
/// assert_eq!(b.next_delay(0.0), Duration::from_millis(200)); // half of 400 ms
/// assert_eq!(b.next_delay(1.0), Duration::from_millis(800));
/// assert_eq!(b.next_delay(1.0), Duration::from_secs(1)); // capped
/// b.reset();
/// assert_eq!(b.next_delay(1.0), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starting at `base`, doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The un-jittered delay the next call will be based on.
    pub fn current(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt; `jitter` in `[0, 1]` picks it within `[d/2, d]`.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let d = self.current();
        self.attempt = self.attempt.saturating_add(1);
        let j = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        d / 2 + (d / 2).mul_f64(j)
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// A connection was lost after `lived`; `delivered` says whether a frame came on it that
    /// answered us (a reply matched to a request, a pong to our ping; an unsolicited frame
    /// does not count: a peer may say "busy" and close). Returns how long to wait before
    /// reconnecting: `None` (at once) when the connection proved its endpoint healthy, by
    /// delivering a frame or by living at least the backoff ceiling, and the backoff then
    /// starts over; else the next delay.
    ///
    /// A successful connect alone proves nothing: a peer that accepts and closes at once
    /// (a server at its connection limit, a load balancer with no healthy backend) would
    /// otherwise be reconnected to in a tight loop, hundreds of times a second.
    pub(crate) fn after_loss(
        &mut self,
        delivered: bool,
        lived: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        if delivered || lived >= self.max {
            self.reset();
            None
        } else {
            Some(self.next_delay(jitter))
        }
    }
}

/// A small non-cryptographic random source for jitter (SplitMix64), seeded from the clock
/// and a per-process counter.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Jitter(t ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed))
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The health of one endpoint, as [`EndpointSet::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The endpoint as configured.
    pub endpoint: String,
    /// Not marked down (or its retry time has come).
    pub up: bool,
    /// The last failure seen there, if any since it was last up.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    addr: String,
    down_until: Option<Instant>,
    last_error: Option<String>,
    backoff: Backoff,
}

/// The ordered endpoint list and each endpoint's health: see [`plan`](Self::plan) for the
/// order of a connect attempt and [`fail_back_candidate`](Self::fail_back_candidate) for
/// recovery probing.
///
/// ```
/// use std::time::{Duration, Instant};
/// use keepwire::client::EndpointSet;
/// let t0 = Instant::now();
/// let mut eps = EndpointSet::new(["a:1", "b:2"], Duration::from_secs(1), Duration::from_secs(8));
/// assert_eq!(eps.plan(t0), vec![0, 1]);
/// eps.mark_down(0, t0, "connection refused", 1.0);
/// assert_eq!(eps.plan(t0), vec![1, 0]); // a:1 is tried last until its retry time
/// assert_eq!(eps.plan(t0 + Duration::from_secs(1)), vec![0, 1]);
/// eps.mark_up(0);
/// assert!(eps.status(t0)[0].up);
/// ```
#[derive(Debug, Clone)]
pub struct EndpointSet {
    entries: Vec<Entry>,
}

impl EndpointSet {
    /// Endpoints in order of preference; a failed one is retried after `retry_base`, doubling
    /// up to `retry_max`.
    pub fn new<I, S>(endpoints: I, retry_base: Duration, retry_max: Duration) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EndpointSet {
            entries: endpoints
                .into_iter()
                .map(|a| Entry {
                    addr: a.into(),
                    down_until: None,
                    last_error: None,
                    backoff: Backoff::new(retry_base, retry_max),
                })
                .collect(),
        }
    }

    /// How many endpoints.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The address of endpoint `i`.
    pub fn addr(&self, i: usize) -> Option<&str> {
        self.entries.get(i).map(|e| e.addr.as_str())
    }

    fn is_up(e: &Entry, now: Instant) -> bool {
        e.down_until.is_none_or(|t| t <= now)
    }

    /// Endpoint indices in the order to try them at `now`: up ones in list order, then down
    /// ones by retry time.
    pub fn plan(&self, now: Instant) -> Vec<usize> {
        let mut up: Vec<usize> = Vec::new();
        let mut down: Vec<(Instant, usize)> = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            match e.down_until {
                Some(t) if t > now => down.push((t, i)),
                _ => up.push(i),
            }
        }
        down.sort();
        up.extend(down.into_iter().map(|(_, i)| i));
        up
    }

    /// Endpoint `i` failed at `now` because of `reason`; it is tried last until a retry time
    /// that backs off per endpoint (`jitter` in `[0, 1]`, see [`Backoff::next_delay`]).
    pub fn mark_down(&mut self, i: usize, now: Instant, reason: impl Into<String>, jitter: f64) {
        if let Some(e) = self.entries.get_mut(i) {
            let delay = e.backoff.next_delay(jitter);
            e.down_until = Some(crate::deadline::after(now, delay));
            e.last_error = Some(reason.into());
        }
    }

    /// Endpoint `i` answered: up again, its backoff reset.
    pub fn mark_up(&mut self, i: usize) {
        if let Some(e) = self.entries.get_mut(i) {
            e.down_until = None;
            e.last_error = None;
            e.backoff.reset();
        }
    }

    /// Endpoint `i` accepted a connection: up again, but its backoff is kept until the
    /// connection proves the service ([`proven`](Self::proven)). A peer that accepts and
    /// closes at once is otherwise retried after the base delay every time, however often
    /// it failed.
    pub(crate) fn mark_connected(&mut self, i: usize) {
        if let Some(e) = self.entries.get_mut(i) {
            e.down_until = None;
            e.last_error = None;
        }
    }

    /// A connection to endpoint `i` proved its service (a reply, a pong): its backoff
    /// starts over.
    pub(crate) fn proven(&mut self, i: usize) {
        if let Some(e) = self.entries.get_mut(i) {
            e.backoff.reset();
        }
    }

    /// While connected to `current`: the best endpoint before it in the list that is up or
    /// due a retry at `now`, worth probing to fail back to.
    pub fn fail_back_candidate(&self, current: usize, now: Instant) -> Option<usize> {
        self.entries
            .iter()
            .take(current)
            .position(|e| Self::is_up(e, now))
    }

    /// When the next endpoint before `current` becomes due a retry, if any is down.
    pub fn next_retry_before(&self, current: usize) -> Option<Instant> {
        self.entries
            .iter()
            .take(current)
            .filter_map(|e| e.down_until)
            .min()
    }

    /// Every endpoint's health at `now`.
    pub fn status(&self, now: Instant) -> Vec<EndpointStatus> {
        self.entries
            .iter()
            .map(|e| EndpointStatus {
                endpoint: e.addr.clone(),
                up: Self::is_up(e, now),
                last_error: e.last_error.clone(),
            })
            .collect()
    }

    /// The last failure of every endpoint that has one, in list order.
    pub fn failures(&self) -> Vec<EndpointFailure> {
        self.entries
            .iter()
            .filter_map(|e| {
                e.last_error.as_ref().map(|r| EndpointFailure {
                    endpoint: e.addr.clone(),
                    reason: r.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_half() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(70));
        let mut j = Jitter::new();
        let mut prev_cap = Duration::ZERO;
        for _ in 0..20 {
            let cap = b.current();
            let d = b.next_delay(j.next_f64());
            assert!(
                d >= cap / 2 && d <= cap,
                "{d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= prev_cap);
            prev_cap = cap;
        }
        assert_eq!(b.current(), Duration::from_millis(70));
        assert_eq!(b.attempts(), 20);
    }

    #[test]
    fn backoff_survives_huge_attempt_counts() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..100 {
            b.next_delay(0.5);
        }
        assert_eq!(b.current(), Duration::from_secs(60));
        assert_eq!(b.next_delay(f64::NAN), Duration::from_secs(60));
    }

    #[test]
    fn backoff_after_loss_resets_only_for_a_connection_that_proved_itself() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(20), ms(200));
        // Died young, nothing delivered: the delay grows.
        assert_eq!(b.after_loss(false, ms(1), 1.0), Some(ms(20)));
        assert_eq!(b.after_loss(false, ms(1), 1.0), Some(ms(40)));
        // Delivered a frame: at once, and the backoff starts over.
        assert_eq!(b.after_loss(true, ms(1), 1.0), None);
        assert_eq!(b.current(), ms(20));
        b.next_delay(1.0);
        // Lived as long as the ceiling: proved too.
        assert_eq!(b.after_loss(false, ms(200), 1.0), None);
        assert_eq!(b.attempts(), 0);
    }

    #[test]
    fn jitter_is_in_unit_interval() {
        let mut j = Jitter::new();
        for _ in 0..1000 {
            let x = j.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn plan_puts_down_endpoints_last_by_retry_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut eps = EndpointSet::new(["a", "b", "c"], s, 8 * s);
        eps.mark_down(0, t0, "refused", 1.0); // retry at t0+1
        eps.mark_down(1, t0, "refused", 1.0); // retry at t0+1
        eps.mark_down(1, t0, "refused", 1.0); // retry at t0+2
        assert_eq!(eps.plan(t0), vec![2, 0, 1]);
        assert_eq!(eps.plan(t0 + s), vec![0, 2, 1]);
        assert_eq!(eps.plan(t0 + 2 * s), vec![0, 1, 2]);
        let f = eps.failures();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].to_string(), "a: refused");
    }

    #[test]
    fn a_bare_connect_keeps_the_down_backoff_until_proven() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut eps = EndpointSet::new(["a", "b"], s, 8 * s);
        eps.mark_down(0, t0, "closed", 1.0); // retry at t0+1
        eps.mark_connected(0);
        assert!(eps.status(t0)[0].up);
        eps.mark_down(0, t0, "closed", 1.0); // backoff kept: retry at t0+2
        assert_eq!(eps.fail_back_candidate(1, t0 + s), None);
        assert_eq!(eps.next_retry_before(1), Some(t0 + 2 * s));
        eps.proven(0);
        eps.mark_down(0, t0, "closed", 1.0); // starts over: retry at t0+1
        assert_eq!(eps.next_retry_before(1), Some(t0 + s));
    }

    #[test]
    fn fail_back_only_to_better_endpoints_due_a_retry() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut eps = EndpointSet::new(["a", "b", "c"], s, 8 * s);
        eps.mark_down(0, t0, "dead", 1.0);
        assert_eq!(eps.fail_back_candidate(0, t0), None);
        assert_eq!(eps.fail_back_candidate(1, t0), None);
        assert_eq!(eps.next_retry_before(1), Some(t0 + s));
        assert_eq!(eps.fail_back_candidate(1, t0 + s), Some(0));
        assert_eq!(eps.fail_back_candidate(2, t0), Some(1));
        eps.mark_up(0);
        assert_eq!(eps.next_retry_before(2), None);
        assert!(
            eps.status(t0)
                .iter()
                .all(|s| s.up && s.last_error.is_none())
        );
    }
}
