//! A connection's liveness timer, as its wait polls it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Instant;

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
    pub(super) fn arm(&mut self, next: Option<Instant>) {
        match (next, self.armed) {
            (Some(d), Some(a)) if d >= a => {}
            (Some(d), _) => {
                self.sleep.as_mut().reset(d.into());
                self.armed = Some(d);
                // Polled again before the next wait, whatever tokio kept.
                self.waker = None;
            }
            (None, _) => self.armed = None,
        }
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
