//! The drain's start, as every connection's wait sees it: cheaply.
//!
//! A connection waits for bytes, a deadline or the drain, once per request. Waiting on the
//! shutdown token itself (`CancellationToken::cancelled`) takes two locks on every poll: the
//! token's, to ask whether it is cancelled, and its `Notify`'s, to store the waker again
//! (about 250 instructions a request, callgrind). Here the server flips a flag and wakes
//! every waiter once, when its accept loop sees the token cancelled ([`Draining::start`]);
//! a wait registers its task's waker once ([`Draining::poll_started`]) and afterwards only
//! loads the flag, until the task's waker changes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// Whether the server has started to drain, with a wake-up for the connections waiting.
#[derive(Debug, Default)]
pub(crate) struct Draining {
    started: AtomicBool,
    notify: Notify,
}

impl Draining {
    /// Starts the drain: every wait sees it, those already registered are woken.
    pub(crate) fn start(&self) {
        // Before the wake-up: a woken task, or one that registers later, sees the flag.
        self.started.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether the drain has started.
    pub(crate) fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// A wait for the drain's start, for one task (a connection's). Created now, a
    /// [`start`](Self::start) from here on completes it even before its first poll. Pin it
    /// where the task keeps its state and poll it with [`poll_started`](Self::poll_started).
    pub(crate) fn wait(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// `Ready` once the drain has started. While the task's waker stays the one `wait` was
    /// registered with, this only loads the flag: that waker is woken by
    /// [`start`](Self::start).
    pub(crate) fn poll_started(
        &self,
        cx: &mut Context<'_>,
        wait: Pin<&mut Notified<'_>>,
        registered: &mut Option<Waker>,
    ) -> Poll<()> {
        if self.started() {
            return Poll::Ready(());
        }
        if registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        if wait.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        *registered = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::pin::pin;
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_registered_wait_is_woken_by_start() {
        let d = Arc::new(Draining::default());
        let d2 = Arc::clone(&d);
        let (polled, ready) = tokio::sync::oneshot::channel();
        let waiter = tokio::spawn(async move {
            let mut w = pin!(d2.wait());
            let mut reg = None;
            // Polled several times with the same waker before the start.
            for _ in 0..3 {
                let p = poll_fn(|cx| Poll::Ready(d2.poll_started(cx, w.as_mut(), &mut reg)));
                assert!(p.await.is_pending());
            }
            let _ = polled.send(());
            poll_fn(|cx| d2.poll_started(cx, w.as_mut(), &mut reg)).await;
        });
        ready.await.expect("the waiter registered");
        d.start();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the wait was woken")
            .expect("the waiter did not panic");
    }

    #[tokio::test]
    async fn a_wait_made_before_the_start_and_polled_after_is_ready() {
        let d = Draining::default();
        let mut w = pin!(d.wait());
        d.start();
        poll_fn(|cx| d.poll_started(cx, w.as_mut(), &mut None)).await;
        let mut late = pin!(d.wait());
        poll_fn(|cx| d.poll_started(cx, late.as_mut(), &mut None)).await;
    }
}
