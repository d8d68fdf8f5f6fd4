//! The sans-IO core of a long connection: which requests are in flight and when each must
//! be answered, which op may be written, what a reply answers, when to fail back to a
//! better endpoint, and what to do when the connection is lost.
//!
//! Like [`Liveness`](crate::liveness::Liveness), it owns no socket, no timer and no clock:
//! the connection task passes `now` in, performs what the core decides, and sleeps until
//! [`Session::next_deadline`]. The waiter a request carries (`W`: the caller's reply
//! channel) and a recovered connection (`C`) are type parameters, so every rule below is
//! unit-tested without sockets or a runtime.
//!
//! # A request's life on one connection
//!
//! | state       | event                          | decision                                   |
//! |-------------|--------------------------------|--------------------------------------------|
//! | queued      | its deadline has passed        | [`Refusal::Late`]: fails not sent, never written |
//! | queued      | keyed: no key in the frame     | [`Refusal::NoKey`] (not sent)              |
//! | queued      | keyed: key already in flight   | [`Refusal::KeyInFlight`] (not sent)        |
//! | queued      | keyed: key tombstoned          | [`Refusal::KeyTombstoned`] (not sent)      |
//! | queued      | admitted                       | registered in flight before the write      |
//! | in flight   | write failed, no byte of it left | [`Session::unregister`]: retried on the next connection (not sent) |
//! | in flight   | write failed part way          | stays registered, fails with the connection (may have been sent) |
//! | in flight   | its reply arrives              | [`Reply::Waiter`]: handed to the caller    |
//! | in flight   | FIFO: deadline passes          | [`Session::fifo_overdue`]: close the connection (later replies could not be matched) |
//! | in flight   | keyed: deadline passes         | [`Session::expire_keyed`]: fails (may have been sent); key tombstoned |
//! | tombstoned  | a frame with its key arrives   | [`Reply::Unmatched`] `late: true`          |
//! | in flight   | queue closed (every handle gone, or `close`), its caller gone too (and, keyed, no unsolicited reader) | [`Session::may_close`]: the connection closes |
//! | in flight   | queue closed, its caller still waits | [`Session::may_close`] waits: answered, or failed at its deadline |
//! | none        | queue closed                   | [`Session::may_close`]: the connection closes (FIN) |
//!
//! # Fail-back ([`FailBack`])
//!
//! | state                        | event                              | decision                   |
//! |------------------------------|------------------------------------|----------------------------|
//! | on endpoint 0, or fail-back off | any                             | never                      |
//! | idle, a better endpoint due  | deadline                           | probe it (beside this connection) |
//! | idle, better ones down       | deadline = their next retry time   | wait                       |
//! | probe failed                 | next probe                         | not before `down_base` later |
//! | probe answered               | nothing in flight or queued        | move to it                 |
//! | probe answered, then closed while held | the move (the glue finds the close) | [`FailBack::on_probe`] `None`: as a failed probe |
//! | anything in flight           | any                                | no probe, no move, no fail-back timer |
//!
//! # After a loss ([`Reconnect`])
//!
//! | the lost connection                          | endpoint       | next connect            |
//! |----------------------------------------------|----------------|-------------------------|
//! | answered us (a reply or a pong), or lived `reconnect_max` | kept up | at once; backoff reset |
//! | closed or reset young, nothing answered      | marked down    | after the next backoff delay |
//! | otherwise young, nothing answered            | kept up        | after the next backoff delay |
//! | every endpoint failed to connect             | (each marked down) | after the next backoff delay |
//!
//! Backoff delays are at least [`MIN_BACKOFF`](super::MIN_BACKOFF) (20 ms), so no loop is
//! tight.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::endpoint::{Backoff, EndpointSet};
use super::tombstone::Tombstones;
use super::{Correlate, Key};
use crate::liveness::Liveness;

/// How replies find their request.
#[derive(Clone)]
pub(crate) enum Matching {
    /// In order: the first reply answers the oldest request.
    Fifo,
    /// By key.
    Keyed(Arc<dyn Correlate>),
    /// Nothing is a reply: every inbound frame goes to the unsolicited stream.
    None,
}

impl Matching {
    /// Requests in flight on one connection when none is configured: 1 on an ordered link
    /// (strict request/response), 1024 otherwise.
    pub(crate) fn default_max_in_flight(&self) -> usize {
        match self {
            Matching::Fifo => 1,
            Matching::Keyed(_) | Matching::None => 1024,
        }
    }
}

/// A request written and awaiting its reply.
#[derive(Debug)]
pub(crate) struct Waiter<W> {
    /// The caller's side (its reply channel).
    pub(crate) done: W,
    pub(crate) deadline: Instant,
    /// The request's timeout, for messages and the tombstone window.
    pub(crate) timeout: Duration,
}

/// Why an op may not be written (it is not sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its deadline passed while it was queued.
    Late,
    /// Keyed link: the frame has no correlation key.
    NoKey,
    /// Keyed link: a request with this key is in flight.
    KeyInFlight(Key),
    /// Keyed link: the key awaits the late reply of a request that timed out, for `left`
    /// at most.
    KeyTombstoned(Key, Duration),
}

/// What an application frame answers.
#[derive(Debug)]
pub(crate) enum Reply<W> {
    /// This waiting request.
    Waiter(Waiter<W>),
    /// No request: unsolicited; `late` when it is the late reply of a tombstoned key.
    Unmatched {
        /// The reply of a request that timed out.
        late: bool,
    },
}

/// The requests in flight on one connection, and its liveness. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Session<W> {
    keyed_link: bool,
    fifo: VecDeque<Waiter<W>>,
    keyed: HashMap<Key, Waiter<W>>,
    tombstones: Tombstones,
    max_in_flight: usize,
    /// Heartbeats of this connection.
    pub(crate) live: Liveness,
    /// A frame came that answered us (a matched reply, a pong to our ping).
    delivered: bool,
}

impl<W> Session<W> {
    /// A fresh connection: nothing in flight, at most `max_in_flight` requests (and
    /// tombstones).
    pub(crate) fn new(matching: &Matching, max_in_flight: usize, live: Liveness) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Session {
            keyed_link: matches!(matching, Matching::Keyed(_)),
            fifo: VecDeque::new(),
            keyed: HashMap::new(),
            tombstones: Tombstones::new(max_in_flight),
            max_in_flight,
            live,
            delivered: false,
        }
    }

    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.fifo.len() + self.keyed.len()
    }

    /// How many more requests may be written now.
    pub(crate) fn room(&self) -> usize {
        self.max_in_flight.saturating_sub(self.in_flight())
    }

    /// Whether a frame came on this connection that answered us.
    pub(crate) fn delivered(&self) -> bool {
        self.delivered
    }

    /// A frame answered us: a pong to our ping (the glue sees liveness's unanswered count
    /// drop).
    pub(crate) fn on_answered(&mut self) {
        self.delivered = true;
    }

    /// May an op with `deadline` be written at `now`, and under which key? `key` is the
    /// caller's, else `matching` takes it from `frame`; only requests (`reply`) on a keyed
    /// link have one. Checked before the op's ticket is taken: a refused op is never
    /// written, whoever else looks at its ticket.
    pub(crate) fn admit(
        &mut self,
        matching: &Matching,
        op: Admission<'_>,
        now: Instant,
    ) -> Result<Option<Key>, Refusal> {
        if op.deadline <= now {
            return Err(Refusal::Late);
        }
        let Matching::Keyed(c) = matching else {
            return Ok(None);
        };
        if !op.reply {
            return Ok(None);
        }
        let Some(k) = op.key.or_else(|| c.request_key(op.frame)) else {
            return Err(Refusal::NoKey);
        };
        if self.keyed.contains_key(&k) {
            return Err(Refusal::KeyInFlight(k));
        }
        if let Some(until) = self.tombstones.blocks(&k, now) {
            let left = until.saturating_duration_since(now);
            return Err(Refusal::KeyTombstoned(k, left));
        }
        Ok(Some(k))
    }

    /// Registers an admitted request before its bytes are written (its reply may be read
    /// while the write waits).
    pub(crate) fn register(&mut self, key: Option<Key>, w: Waiter<W>) {
        match key {
            Some(k) => {
                self.keyed.insert(k, w);
            }
            None => self.fifo.push_back(w),
        }
    }

    /// Takes back a request registered with `key` none of whose bytes left: it goes to the
    /// next connection. Call newest first: on an ordered link it is the newest entry.
    pub(crate) fn unregister(&mut self, key: Option<&Key>) -> Option<Waiter<W>> {
        match key {
            Some(k) => self.keyed.remove(k),
            None => self.fifo.pop_back(),
        }
    }

    /// What an application frame answers, at `now`.
    pub(crate) fn on_reply(&mut self, matching: &Matching, frame: &[u8], now: Instant) -> Reply<W> {
        let waiter = match matching {
            Matching::Fifo => self.fifo.pop_front(),
            Matching::Keyed(c) => match c.key(frame) {
                None => None,
                Some(key) => match self.keyed.remove(&key) {
                    Some(w) => Some(w),
                    None => {
                        let late = self.tombstones.take_late(&key, now);
                        if late {
                            self.delivered = true;
                        }
                        return Reply::Unmatched { late };
                    }
                },
            },
            Matching::None => None,
        };
        match waiter {
            Some(w) => {
                self.delivered = true;
                Reply::Waiter(w)
            }
            None => Reply::Unmatched { late: false },
        }
    }

    /// Whether a reply handed to a caller that had given up is late (a keyed link sends it
    /// to the unsolicited stream; an ordered link drops it).
    pub(crate) fn abandoned_reply_is_late(&self) -> bool {
        self.keyed_link
    }

    /// Whether the connection may close once its queue is closed (`queue_closed`: every
    /// handle is gone, or a handle's `close` was called, and no op waits to be written):
    /// nothing in flight, or only requests whose callers gave up (`gone` says so of a
    /// waiter) and whose late replies nobody could read (`late_unread`: a keyed link sends
    /// them to the unsolicited stream, which may still have a reader). Waiting for
    /// abandoned requests' replies would hold the task and its socket until their
    /// deadlines, for nobody; a request whose caller still waits is let end (answered, or
    /// failed at its deadline), so a graceful close never cuts a reply off.
    pub(crate) fn may_close(
        &self,
        queue_closed: bool,
        late_unread: bool,
        gone: impl Fn(&W) -> bool,
    ) -> bool {
        if !queue_closed {
            return false;
        }
        if self.in_flight() == 0 {
            return true;
        }
        (late_unread || !self.keyed_link) && self.waiters().all(|w| gone(&w.done))
    }

    /// Every request in flight.
    pub(crate) fn waiters(&self) -> impl Iterator<Item = &Waiter<W>> {
        self.fifo.iter().chain(self.keyed.values())
    }

    /// The oldest request of an ordered link, if it is overdue at `now`: the connection
    /// must then close (later replies could not be matched by order). It stays registered
    /// and fails with the connection.
    pub(crate) fn fifo_overdue(&self, now: Instant) -> Option<&Waiter<W>> {
        self.fifo.front().filter(|f| f.deadline <= now)
    }

    /// Takes out the keyed requests overdue at `now` and tombstones their keys (their late
    /// replies may still come).
    pub(crate) fn expire_keyed(&mut self, now: Instant) -> Vec<Waiter<W>> {
        if self.keyed.values().all(|f| f.deadline > now) {
            return Vec::new();
        }
        let expired: Vec<Key> = self
            .keyed
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::with_capacity(expired.len());
        for k in expired {
            if let Some(w) = self.keyed.remove(&k) {
                self.tombstones.bury(k, now, w.timeout);
                out.push(w);
            }
        }
        out
    }

    /// The earliest reply deadline.
    pub(crate) fn reply_deadline(&self) -> Option<Instant> {
        let f = self.fifo.front().map(|f| f.deadline);
        let k = self.keyed.values().map(|f| f.deadline).min();
        [f, k].into_iter().flatten().min()
    }

    /// When the glue must next wake: liveness, reply deadlines, or `fail_back` (from
    /// [`FailBack::due_at`]).
    pub(crate) fn next_deadline(&self, fail_back: Option<Instant>) -> Option<Instant> {
        [self.live.next_deadline(), self.reply_deadline(), fail_back]
            .into_iter()
            .flatten()
            .min()
    }

    /// Every request in flight, for failing them with the connection.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Waiter<W>> + '_ {
        self.fifo
            .drain(..)
            .chain(self.keyed.drain().map(|(_, w)| w))
    }
}

/// An op asking to be written, as [`Session::admit`] sees it.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    pub(crate) frame: &'a [u8],
    /// A reply is expected.
    pub(crate) reply: bool,
    /// The caller's key, if it gave one.
    pub(crate) key: Option<Key>,
    pub(crate) deadline: Instant,
}

/// Whether an op whose bytes start at `start` in a batch of which `written` bytes left
/// was not sent at all (and may go to the next connection).
pub(crate) fn not_sent(start: usize, written: usize) -> bool {
    start >= written
}

/// Fail-back to a better endpoint, for one connection to endpoint `current`. `C` is a
/// connection that answered the probe. See the [module docs](self#fail-back-failback).
#[derive(Debug)]
pub(crate) struct FailBack<C> {
    enabled: bool,
    current: usize,
    /// Spacing of probes after a failed one.
    retry: Duration,
    failed_at: Option<Instant>,
    probing: bool,
    recovered: Option<C>,
}

impl<C> FailBack<C> {
    /// On endpoint `current`; `enabled` is the client's `fail_back`, `retry` its
    /// `down_base`.
    pub(crate) fn new(enabled: bool, current: usize, retry: Duration) -> Self {
        FailBack {
            enabled: enabled && current > 0,
            current,
            retry,
            failed_at: None,
            probing: false,
            recovered: None,
        }
    }

    /// When a probe is due, at `now` with `in_flight` requests. While something is in
    /// flight there is no fail-back timer (else a due fail-back woke the task at every
    /// tick: ~1000 wakeups a second while a request waited on a slow backup).
    pub(crate) fn due_at(
        &self,
        now: Instant,
        in_flight: usize,
        eps: &EndpointSet,
    ) -> Option<Instant> {
        if !self.enabled || in_flight > 0 || self.probing || self.recovered.is_some() {
            return None;
        }
        if eps.fail_back_candidate(self.current, now).is_some() {
            let after_failure = self
                .failed_at
                .map(|t| crate::deadline::after(t, self.retry));
            Some(after_failure.unwrap_or(now).max(now))
        } else {
            eps.next_retry_before(self.current)
        }
    }

    /// The endpoint to probe at `now`, if one is due and nothing is in flight; the probe is
    /// then running until [`on_probe`](Self::on_probe).
    pub(crate) fn start_probe(
        &mut self,
        now: Instant,
        in_flight: usize,
        eps: &EndpointSet,
    ) -> Option<usize> {
        if self.due_at(now, in_flight, eps).is_none_or(|t| t > now) {
            return None;
        }
        let ep = eps.fail_back_candidate(self.current, now)?;
        self.probing = true;
        Some(ep)
    }

    /// The probe ended at `now`: `Some` with the connection that answered, `None` if it
    /// failed (the next is then spaced by `retry`).
    pub(crate) fn on_probe(&mut self, now: Instant, answered: Option<C>) {
        self.probing = false;
        match answered {
            Some(c) => self.recovered = Some(c),
            None => self.failed_at = Some(now),
        }
    }

    /// The recovered connection to move to, once nothing is in flight or queued.
    pub(crate) fn take_move(&mut self, in_flight: usize, queued: usize) -> Option<C> {
        if in_flight == 0 && queued == 0 {
            self.recovered.take()
        } else {
            None
        }
    }
}

/// The reconnect backoff of a long connection. See the [module docs](self#after-a-loss-reconnect).
#[derive(Debug)]
pub(crate) struct Reconnect {
    backoff: Backoff,
    /// A connection that lived this long proved itself.
    max: Duration,
}

/// What to do after a connection was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LossPlan {
    /// Mark the endpoint down (closed or reset young with nothing answered).
    pub(crate) mark_down: bool,
    /// Wait this long before connecting again (`None`: at once).
    pub(crate) delay: Option<Duration>,
}

impl Reconnect {
    /// `base` doubling to `max`, with jitter; both at least
    /// [`MIN_BACKOFF`](super::MIN_BACKOFF), so that no reconnect loop is tight.
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        let base = base.max(super::MIN_BACKOFF);
        let max = max.max(base);
        Reconnect {
            backoff: Backoff::new(base, max),
            max,
        }
    }

    /// A connection that `delivered` (something answered us) was lost after `lived`;
    /// `closed_or_reset` when the peer closed or the socket failed. `jitter` in `[0, 1]`.
    pub(crate) fn on_loss(
        &mut self,
        delivered: bool,
        lived: Duration,
        closed_or_reset: bool,
        jitter: f64,
    ) -> LossPlan {
        // Closed or reset young with nothing delivered (a peer at its connection limit, a
        // balancer with no backend): the endpoint is not serving, so the next plan tries the
        // others first, and fail-back waits for its retry time.
        let young = !delivered && lived < self.max;
        LossPlan {
            mark_down: young && closed_or_reset,
            delay: self.backoff.after_loss(delivered, lived, jitter),
        }
    }

    /// Every endpoint failed to connect: the delay before the next round.
    pub(crate) fn on_connect_failed(&mut self, jitter: f64) -> Duration {
        self.backoff.next_delay(jitter)
    }
}

/// The short client's retry rule after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShortRetry {
    /// The request was not sent on this attempt.
    pub(crate) not_sent: bool,
    /// `retry_sent` is on.
    pub(crate) retry_sent: bool,
    /// A may-have-been-sent request was retried already.
    pub(crate) retried_sent: bool,
    /// The request deadline has passed.
    pub(crate) out_of_time: bool,
    /// How many endpoints there are.
    pub(crate) endpoints: usize,
    /// Attempts of this request that connected and failed, this one included.
    pub(crate) attempts: usize,
}

impl ShortRetry {
    /// Whether to try the next endpoint: a request not sent always may (while time and
    /// another endpoint are left); one that may have been sent only once, with
    /// `retry_sent`. At most one attempt per endpoint: endpoints that connect and then fail
    /// at once (a reset before the write) must not be cycled through until the deadline,
    /// one connection after another.
    pub(crate) fn next_endpoint(self) -> bool {
        let may = self.not_sent || (self.retry_sent && !self.retried_sent);
        may && !self.out_of_time && self.endpoints >= 2 && self.attempts < self.endpoints
    }
}

#[cfg(test)]
mod tests;
