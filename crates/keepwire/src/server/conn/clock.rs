//! A connection's liveness timer, as its wait polls it.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// The one timer a connection keeps for its liveness deadlines (idle, slow frame, ping).
pub(super) struct Clock<'a> {
    sleep: Pin<&'a mut Sleep>,
    /// What the timer is set to; `None`: no deadline.
    armed: Option<Instant>,
    /// The waker the timer was last polled with: while it is the task's and the timer is
    /// still in tokio's wheel, the wheel wakes the task when it fires, and polling it again
    /// per wait would only store the same waker again.
    waker: Option<Waker>,
}

impl<'a> Clock<'a> {
    pub(super) fn new(sleep: Pin<&'a mut Sleep>) -> Self {
        Clock {
            sleep,
            armed: None,
            waker: None,
        }
    }

    /// Whether the timer is set.
    pub(super) fn armed(&self) -> Option<Instant> {
        self.armed
    }

    /// Forgets the deadline (it fired): the next [`arm`](Self::arm) sets it afresh.
    pub(super) fn disarm(&mut self) {
        self.armed = None;
    }

    /// Points the timer at `next`, only ever earlier. When a deadline moved later (every
    /// frame moves the idle deadline), the armed timer fires early, the timer step finds
    /// nothing due, and it is re-armed then: that keeps timer-wheel work off the
    /// per-request path.
    ///
    /// The caller asks the liveness state machine for `next` only when the timer is not
    /// armed, bytes are buffered, or a heartbeat went through since the last wait: otherwise
    /// no deadline can come before the armed one. Data only moves the idle deadlines later,
    /// the slow-frame clock runs only while part of a frame is buffered, a ping's timeout
    /// is set by the timer step (which disarms), and only a heartbeat (a pong taken) brings
    /// the next ping earlier (an interval shorter than the timeout). That saves about 150
    /// instructions a request.
    pub(super) fn arm(&mut self, next: Option<Instant>, now: Instant) {
        match (next.map(|d| coalesce(d, now)), self.armed) {
            (Some(d), Some(a)) if d >= a => {}
            (Some(d), _) => self.reset(d),
            (None, _) => self.armed = None,
        }
    }

    /// Points the timer at exactly `next`, later as well as earlier. Used after a heartbeat:
    /// a pong clears the ping's timeout and moves the next ping an interval away, and a
    /// timer left at the timeout would wake the connection once per ping for nothing (a
    /// wake costs more than moving the timer in tokio's wheel).
    pub(super) fn set(&mut self, next: Option<Instant>, now: Instant) {
        match next.map(|d| coalesce(d, now)) {
            Some(d) if self.armed == Some(d) => {}
            Some(d) => self.reset(d),
            None => self.armed = None,
        }
    }

    /// Moves tokio's timer to `d`; it is polled again before the next wait, whatever tokio
    /// kept of the last registration.
    fn reset(&mut self, d: Instant) {
        self.sleep.as_mut().reset(d.into());
        self.armed = Some(d);
        self.waker = None;
    }

    /// `true` once the armed deadline has passed; registers the task otherwise. Polled after
    /// the socket's read: with the task's budget spent, that read said `Pending` without
    /// looking, and bytes that postpone the deadline may wait; the deadline is then reported
    /// on the next poll, after a read that looked (the task is woken for it).
    pub(super) fn poll_fired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.armed.is_none() {
            return false;
        }
        let known = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        // `is_elapsed` errs towards true (not in the wheel, e.g. never polled).
        if known && !self.sleep.is_elapsed() {
            return false;
        }
        // Outside tokio's cooperative budget: with the budget spent (a handler, a burst of
        // reads in this task poll) `Sleep::poll` returns `Pending` without registering the
        // task, and the waker kept below would then stand for a registration never made:
        // the deadline would pass with nobody woken (an idle connection never reaped).
        let sleep = std::pin::pin!(tokio::task::unconstrained(self.sleep.as_mut()));
        if sleep.poll(cx).is_ready() {
            if tokio::task::coop::has_budget_remaining() {
                return true;
            }
            cx.waker().wake_by_ref();
            return false;
        }
        if !known {
            self.waker = Some(cx.waker().clone());
        }
        false
    }
}

/// The most a deadline is moved later to share a wake-up with others.
pub(super) const MAX_SLACK: Duration = Duration::from_millis(1024);

/// `deadline`, moved later onto a boundary of a slot about 1/64 of the time from `now` (a
/// recent reading of the clock, at most the real time) until it (a power of two of
/// milliseconds, at most [`MAX_SLACK`]), counted from one instant for the whole process. Connections whose deadlines fall in the same slot then wake together, in
/// one turn of the runtime: 10 000 connections pinged every 10 s wake the server about 8
/// times a second, 1 250 pings each, instead of a thousand times for one or two. A deadline
/// fires at most 1/64 of its wait late (a 10 s ping about 0.13 s, a 5 min idle timeout about
/// 1 s); a wait under 128 ms is not moved.
pub(in crate::server) fn coalesce(deadline: Instant, now: Instant) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| now);
    let wait_ms = deadline.saturating_duration_since(now).as_millis() / 64;
    let Ok(wait_ms) = u64::try_from(wait_ms) else {
        return deadline;
    };
    if wait_ms < 2 {
        return deadline;
    }
    let slot_ms = (1u64 << wait_ms.ilog2()).min(MAX_SLACK.as_millis() as u64);
    let slot = u128::from(slot_ms) * 1_000_000;
    let since = deadline.saturating_duration_since(epoch).as_nanos();
    let late = (slot - since % slot) % slot;
    u64::try_from(late).map_or(deadline, |ns| deadline + Duration::from_nanos(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_move_later_by_at_most_a_64th_of_the_wait_onto_shared_slots() {
        let now = Instant::now();
        for ms in [
            0u64, 1, 50, 127, 128, 200, 1_000, 10_000, 300_000, 86_400_000,
        ] {
            let d = now + Duration::from_millis(ms);
            let c = coalesce(d, now);
            assert!(c >= d, "{ms} ms: moved earlier");
            let most = Duration::from_millis(ms / 64).min(MAX_SLACK);
            assert!(
                c - d <= most,
                "{ms} ms: moved {:?}, more than {most:?}",
                c - d
            );
            if ms < 128 {
                assert_eq!(c, d, "{ms} ms: a short wait is not moved");
            }
        }
        // Two deadlines a few ms apart, 10 s away, usually share a slot (128 ms wide): of
        // 100 pairs 3 ms apart, most coalesce.
        let now = Instant::now();
        let base = now + Duration::from_secs(10);
        let shared = (0..100u64)
            .filter(|i| {
                let a = base + Duration::from_millis(i * 7);
                coalesce(a, now) == coalesce(a + Duration::from_millis(3), now)
            })
            .count();
        assert!(shared >= 90, "only {shared} of 100 pairs share a wake-up");
    }
}
