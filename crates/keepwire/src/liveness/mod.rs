//! Liveness: idle detection, slow-frame cut-off and application heartbeats, as one sans-IO
//! state machine shared by the server's connections and the clients.
//!
//! TCP alone does not tell a live peer from a dead one. A pulled cable leaves a half-open
//! connection that looks healthy until something is written; a hung service behind a live
//! kernel accepts bytes forever. RFC 9293 §3.8.4 allows TCP keep-alives but says they "MUST
//! default to no less than two hours", far too slow for a payment link, and they only prove
//! the peer's kernel is alive. Applications therefore add their own checks, which this module
//! implements:
//!
//! | check          | config field       | fires when                                       |
//! |----------------|--------------------|--------------------------------------------------|
//! | read idle      | `read_idle`        | no inbound frame for the duration (Netty's reader-idle) |
//! | write idle     | `write_idle`       | nothing written for the duration                 |
//! | any idle       | `any_idle`         | neither                                          |
//! | slow frame     | `frame_timeout`    | a frame started arriving and is not whole in time (slowloris) |
//! | heartbeat      | `ping`             | `misses` pings in a row went unanswered          |
//!
//! [`Liveness`] takes events and the current time as arguments and returns what to do; it owns
//! no timer and no socket. The glue calls [`Liveness::next_deadline`], sleeps until then (or
//! until I/O happens), and calls [`Liveness::poll`].
//!
//! # Heartbeats without storms
//! A side that pings is waiting for a pong. Where ping and pong are the same bytes
//! ([`Beat::Either`], the empty frame), a side with `k` pings outstanding takes the next `k`
//! heartbeats as its pongs and answers none of them; only a heartbeat that arrives while
//! nothing is outstanding is a ping, and gets a pong. So two peers that both ping and both
//! answer exchange exactly one pong per ping (jPOS issue #775 shows the storm that answering
//! pongs causes). Where they differ ([`Beat::Ping`] / [`Beat::Pong`]: CMPP `ACTIVE_TEST`,
//! SMPP `enquire_link`), every ping is answered, even one that crosses ours, and only a pong
//! satisfies our ping. A side awaiting a reply uses [`Liveness::on_frame_awaiting`], which
//! answers ambiguous same-bytes heartbeats at most once per [`PONG_GAP_AWAITING`].
//!
//! | state                      | `Either` arrives             | `Ping` arrives | `Pong` arrives | data frame arrives        | deadline passes             |
//! |----------------------------|------------------------------|----------------|----------------|---------------------------|-----------------------------|
//! | nothing outstanding        | answer with a pong           | answer         | absorb (stray) | deliver; reset misses     | idle `interval`: send ping  |
//! | ping outstanding           | take as pong, no answer      | answer         | take as pong   | deliver; reset misses     | `timeout`: one miss (if nothing arrived since the ping); `misses` reached: close |
//!
//! Every deadline is computed with [`crate::deadline::after`], so no duration, however
//! large, overflows.

mod heartbeat;
mod spec;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deadline::after;

pub use heartbeat::{Beat, EmptyHeartbeat, FixedHeartbeat, Heartbeat, default_heartbeat};
pub use spec::{
    HeartbeatKey, HeartbeatSpec, HeartbeatSpecError, MIN_PING_INTERVAL, MIN_PING_TIMEOUT,
    parse_payload,
};

/// Same-bytes heartbeats are answered at most once per this gap: a peer that follows the
/// counting rule pings once per its interval (seconds on real links), so two answers this
/// close together mean a peer that answers our pongs (jPOS issue #775). Caps such an
/// exchange at 20 a second instead of one per round trip.
pub const PONG_GAP: Duration = Duration::from_millis(50);

/// While a reply is awaited, same-bytes heartbeats are answered at most once per this gap
/// (see [`Liveness::on_frame_awaiting`]): a pinging peer's interval is seconds, a storm's is
/// a round trip.
pub const PONG_GAP_AWAITING: Duration = Duration::from_secs(1);

/// Pinging idle peers: when nothing arrived for `interval`, send a ping; a ping not answered
/// within `timeout` is a miss; `misses` misses in a row close the connection. A dead peer is
/// thus detected within `interval + (misses - 1) * max(interval, timeout) + timeout`, which is
/// `interval * misses + timeout` when `timeout <= interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingConfig {
    /// Inbound silence before a ping is sent, and time between pings.
    pub interval: Duration,
    /// How long to wait for the pong.
    pub timeout: Duration,
    /// Unanswered pings in a row that declare the peer dead (at least 1).
    pub misses: u32,
}

impl PingConfig {
    /// The config as the state machine uses it: interval and timeout at least 1 ms (a zero
    /// would send pings in a loop at one instant), misses at least 1.
    fn clamped(self) -> Self {
        const MIN: Duration = Duration::from_millis(1);
        PingConfig {
            interval: self.interval.max(MIN),
            timeout: self.timeout.max(MIN),
            misses: self.misses.max(1),
        }
    }
}

impl Default for PingConfig {
    /// 30 s interval, 10 s timeout, 3 misses.
    fn default() -> Self {
        PingConfig {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            misses: 3,
        }
    }
}

/// Which liveness checks run on a connection. All off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Close when no frame arrived for this long.
    pub read_idle: Option<Duration>,
    /// Close when nothing was written for this long.
    pub write_idle: Option<Duration>,
    /// Close when nothing was read or written for this long.
    pub any_idle: Option<Duration>,
    /// Close when a frame that started arriving is not complete within this long.
    pub frame_timeout: Option<Duration>,
    /// Ping idle peers and close those that do not answer.
    pub ping: Option<PingConfig>,
}

/// Why [`Liveness`] decided to close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// No inbound frame for `read_idle`.
    ReadIdle,
    /// Nothing written for `write_idle`.
    WriteIdle,
    /// No traffic either way for `any_idle`.
    AnyIdle,
    /// A frame trickled in slower than `frame_timeout`.
    FrameTimeout,
    /// `misses` pings in a row went unanswered.
    HeartbeatTimeout,
}

impl CloseReason {
    /// A short name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ReadIdle => "read_idle",
            CloseReason::WriteIdle => "write_idle",
            CloseReason::AnyIdle => "any_idle",
            CloseReason::FrameTimeout => "frame_timeout",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
        }
    }
}

/// What [`Liveness::poll`] asks the connection to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing is due.
    Wait,
    /// Send ping number `seq` (from 1).
    SendPing(u32),
    /// Close the connection.
    Close(CloseReason),
}

/// What to do with an inbound frame, from [`Liveness::on_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An application frame: hand it to the handler.
    Deliver,
    /// A ping: answer it with a pong, do not deliver it.
    Answer,
    /// A pong (or a heartbeat taken as one): swallow it.
    Absorb,
}

/// The liveness state of one connection. See the [module docs](self).
///
/// ```
/// use std::time::{Duration, Instant};
/// use keepwire::liveness::{Action, Beat, CloseReason, Liveness, LivenessConfig, PingConfig, Verdict};
///
/// let cfg = LivenessConfig {
///     ping: Some(PingConfig { interval: Duration::from_secs(5), timeout: Duration::from_secs(1), misses: 2 }),
///     ..Default::default()
/// };
/// let t0 = Instant::now();
/// let mut live = Liveness::new(cfg, t0);
/// assert_eq!(live.next_deadline(), Some(t0 + Duration::from_secs(5)));
/// assert_eq!(live.poll(t0 + Duration::from_secs(5)), Action::SendPing(1));
/// // The peer's heartbeat is our pong: not answered.
/// assert_eq!(live.on_frame(t0 + Duration::from_secs(5), Some(Beat::Either)), Verdict::Absorb);
/// // Silence: ping, miss, ping, miss: closed.
/// let t = t0 + Duration::from_secs(10);
/// assert_eq!(live.poll(t), Action::SendPing(2));
/// assert_eq!(live.poll(t + Duration::from_secs(1)), Action::Wait);
/// assert_eq!(live.poll(t + Duration::from_secs(5)), Action::SendPing(3));
/// assert_eq!(live.poll(t + Duration::from_secs(6)), Action::Close(CloseReason::HeartbeatTimeout));
/// ```
#[derive(Debug, Clone)]
pub struct Liveness {
    /// Shared: a server's connections all use the same config, and every byte of this struct
    /// is paid once per idle connection.
    cfg: Arc<LivenessConfig>,
    /// Whether pings from the peer get a pong.
    answer_pings: bool,
    last_in: Instant,
    last_out: Instant,
    partial_since: Stamp,
    /// A ping was sent (at `last_ping`) and we wait for its pong.
    outstanding: bool,
    /// Pings sent and not matched by a heartbeat from the peer (late pongs included).
    unanswered: u32,
    last_ping: Stamp,
    /// When our last pong was written (see [`Liveness::on_write`]).
    pong_sent: Stamp,
    /// A pong was decided on and not yet written.
    pong_unsent: bool,
    misses: u32,
    seq: u32,
}

impl Liveness {
    /// A fresh connection at `now`; pings from the peer are answered. Pass an
    /// `Arc<LivenessConfig>` to share one config among many connections.
    pub fn new(cfg: impl Into<Arc<LivenessConfig>>, now: Instant) -> Self {
        let cfg = cfg.into();
        Liveness {
            cfg,
            answer_pings: true,
            last_in: now,
            last_out: now,
            partial_since: Stamp::NONE,
            outstanding: false,
            unanswered: 0,
            last_ping: Stamp::NONE,
            pong_sent: Stamp::NONE,
            pong_unsent: false,
            misses: 0,
            seq: 0,
        }
    }

    /// Whether pings from the peer are answered (default: yes).
    pub fn set_answer_pings(&mut self, answer: bool) {
        self.answer_pings = answer;
    }

    /// The configuration.
    pub fn config(&self) -> &LivenessConfig {
        &self.cfg
    }

    /// A whole frame arrived at `now`; `beat` is its heartbeat classification (`None` for an
    /// application frame, or when heartbeats are off).
    ///
    /// - [`Beat::Ping`] (a ping distinct from the pong) is always answered (when answering is
    ///   on): a peer's ping that crosses ours is still a ping, and never our pong.
    /// - [`Beat::Pong`] satisfies our oldest outstanding ping, or is a stray pong; never
    ///   answered.
    /// - [`Beat::Either`] (ping and pong are the same bytes) is our pong while we have a ping
    ///   outstanding, else a ping to answer.
    pub fn on_frame(&mut self, now: Instant, beat: Option<Beat>) -> Verdict {
        self.on_frame_awaiting(now, beat, false)
    }

    /// [`on_frame`](Self::on_frame) on a side that may be waiting for a reply: `awaiting`
    /// says a request of ours awaits its reply.
    ///
    /// While a reply is awaited, a [`Beat::Either`] heartbeat that is not our pong is
    /// ambiguous: the peer's ping that crossed our request, or a peer that sends the
    /// heartbeat frame as its reply (a misconfigured link; keepwire never does). Answering
    /// the second kind starts a storm with a peer that answers what we answer, so while a
    /// reply is awaited such heartbeats are answered at most once per [`PONG_GAP_AWAITING`]
    /// and otherwise absorbed. The peer's real pings, seconds apart, are all answered. When
    /// nothing is awaited the gap is [`PONG_GAP`], which contains a peer that answers every
    /// heartbeat, ours included.
    pub fn on_frame_awaiting(
        &mut self,
        now: Instant,
        beat: Option<Beat>,
        awaiting: bool,
    ) -> Verdict {
        let v = self.classify(now, beat);
        let gap = if awaiting {
            PONG_GAP_AWAITING
        } else {
            PONG_GAP
        };
        // Only a heartbeat that arrived after our last pong left can be an answer to it:
        // heartbeats read in one batch with the ping we answered (pings that queued while
        // a slow request was handled) are all answered.
        if v == Verdict::Answer
            && beat == Some(Beat::Either)
            && self
                .pong_sent
                .get()
                .is_some_and(|t| now >= t && now.saturating_duration_since(t) < gap)
        {
            return Verdict::Absorb;
        }
        if v == Verdict::Answer {
            self.pong_unsent = true;
        }
        v
    }

    fn classify(&mut self, now: Instant, beat: Option<Beat>) -> Verdict {
        self.last_in = now;
        self.misses = 0;
        match beat {
            None => Verdict::Deliver,
            Some(Beat::Pong) => {
                self.take_pong();
                Verdict::Absorb
            }
            Some(Beat::Ping) => {
                if self.answer_pings {
                    Verdict::Answer
                } else {
                    Verdict::Absorb
                }
            }
            Some(Beat::Either) => {
                if self.unanswered > 0 {
                    self.take_pong();
                    Verdict::Absorb
                } else if self.answer_pings {
                    Verdict::Answer
                } else {
                    Verdict::Absorb
                }
            }
        }
    }

    /// Pings sent and not yet matched by a pong (late pongs still count).
    pub fn unanswered(&self) -> u32 {
        self.unanswered
    }

    fn take_pong(&mut self) {
        self.unanswered = self.unanswered.saturating_sub(1);
        self.outstanding = false;
    }

    /// Bytes were read at `now`; `partial` says whether an incomplete frame is now buffered
    /// and `new_frame_started` whether that partial frame began in this read (a whole frame
    /// was consumed before it, or the buffer was empty).
    pub fn on_read(&mut self, now: Instant, partial: bool, new_frame_started: bool) {
        if !partial {
            self.partial_since = Stamp::NONE;
        } else if new_frame_started || self.partial_since.is_none() {
            self.partial_since = Stamp::at(now);
        }
    }

    /// Something was written at `now` (pongs the state machine asked for included: the
    /// storm guard of [`on_frame_awaiting`](Self::on_frame_awaiting) counts from here).
    pub fn on_write(&mut self, now: Instant) {
        self.last_out = now;
        if std::mem::take(&mut self.pong_unsent) {
            self.pong_sent = Stamp::at(now);
        }
    }

    /// The earliest instant at which [`poll`](Self::poll) may have something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let c = &self.cfg;
        let candidates = [
            self.partial_since
                .get()
                .zip(c.frame_timeout)
                .map(|(t, d)| after(t, d)),
            c.read_idle.map(|d| after(self.last_in, d)),
            c.write_idle.map(|d| after(self.last_out, d)),
            c.any_idle
                .map(|d| after(self.last_in.max(self.last_out), d)),
            c.ping
                .map(PingConfig::clamped)
                .map(|p| match self.outstanding_since() {
                    Some(sent) => after(sent, p.timeout),
                    None => after(self.ping_base(), p.interval),
                }),
        ];
        candidates.into_iter().flatten().min()
    }

    /// When the ping we wait for was sent.
    fn outstanding_since(&self) -> Option<Instant> {
        if self.outstanding {
            self.last_ping.get()
        } else {
            None
        }
    }

    fn ping_base(&self) -> Instant {
        match self.last_ping.get() {
            Some(p) => p.max(self.last_in),
            None => self.last_in,
        }
    }

    /// What is due at `now`. Call again while it returns something other than
    /// [`Action::Wait`].
    pub fn poll(&mut self, now: Instant) -> Action {
        let c = Arc::clone(&self.cfg);
        let due = |t: Instant, d: Option<Duration>| d.is_some_and(|d| after(t, d) <= now);
        if let (Some(t), Some(d)) = (self.partial_since.get(), c.frame_timeout) {
            if after(t, d) <= now {
                return Action::Close(CloseReason::FrameTimeout);
            }
        }
        if due(self.last_in, c.read_idle) {
            return Action::Close(CloseReason::ReadIdle);
        }
        if due(self.last_out, c.write_idle) {
            return Action::Close(CloseReason::WriteIdle);
        }
        if due(self.last_in.max(self.last_out), c.any_idle) {
            return Action::Close(CloseReason::AnyIdle);
        }
        let Some(p) = c.ping.map(PingConfig::clamped) else {
            return Action::Wait;
        };
        if let Some(sent) = self.outstanding_since() {
            if after(sent, p.timeout) > now {
                return Action::Wait;
            }
            self.outstanding = false;
            // Anything that arrived since the ping proves the peer alive.
            if self.last_in < sent {
                self.misses += 1;
                if self.misses >= p.misses.max(1) {
                    return Action::Close(CloseReason::HeartbeatTimeout);
                }
            }
        }
        if after(self.ping_base(), p.interval) <= now {
            self.seq = self.seq.wrapping_add(1);
            self.outstanding = true;
            self.last_ping = Stamp::at(now);
            self.unanswered = self.unanswered.saturating_add(1);
            return Action::SendPing(self.seq);
        }
        Action::Wait
    }

    /// Unanswered pings in a row so far.
    pub fn misses(&self) -> u32 {
        self.misses
    }

    /// When the last frame arrived (the instant given to [`new`](Self::new) before any).
    #[cfg(feature = "server")]
    pub(crate) fn last_in(&self) -> Instant {
        self.last_in
    }
}

/// An optional instant in 8 bytes, where `Option<Instant>` takes 16: nanoseconds since a
/// process-wide epoch, plus one; 0 is none. Every idle connection holds three of them.
///
/// The epoch is a century before the first instant the process stamps (taken from that
/// instant, not from the system clock: the state machine reads no clock). Instants from a
/// century before that one to five centuries after it map exactly; beyond, they are clamped
/// to the ends of that range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(u64);

/// How far before the first stamped instant the epoch lies.
const STAMP_BACK: Duration = Duration::from_secs(100 * 365 * 86_400);

static STAMP_EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

impl Stamp {
    const NONE: Stamp = Stamp(0);

    fn at(t: Instant) -> Stamp {
        let epoch = *STAMP_EPOCH.get_or_init(|| {
            // (A platform whose instants cannot go back a century: the earliest it can.)
            let mut back = STAMP_BACK;
            loop {
                if let Some(e) = t.checked_sub(back) {
                    break e;
                }
                if back.is_zero() {
                    break t;
                }
                back /= 2;
            }
        });
        let nanos = t.saturating_duration_since(epoch).as_nanos();
        Stamp(u64::try_from(nanos).map_or(u64::MAX, |n| n.saturating_add(1)))
    }

    fn get(self) -> Option<Instant> {
        let nanos = self.0.checked_sub(1)?;
        // (Set by the `at` that made this stamp.)
        let epoch = STAMP_EPOCH.get()?;
        epoch.checked_add(Duration::from_nanos(nanos))
    }

    fn is_none(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests;
