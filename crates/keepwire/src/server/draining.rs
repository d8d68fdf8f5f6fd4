//! The drain's start, as every connection's wait sees it: cheaply.
//!
//! A connection waits for bytes, a deadline or the drain, once per request. Waiting on the
//! shutdown token itself (`CancellationToken::cancelled`) takes two locks on every poll: the
//! token's, to ask whether it is cancelled, and its `Notify`'s, to store the waker again
//! (about 250 instructions a request, callgrind). Here the server flips a flag and wakes
//! every waiter once, when its accept loop sees the token cancelled ([`Draining::start`]);
//! a wait registers its task's waker once ([`DrainWait::poll_started`]) and afterwards only
//! loads the flag, until the task's waker changes.
//!
//! The waiters are a list of wakers here, not a `Notify`: a `Notify` waiter sits in every
//! connection's task (64 bytes, and 16 more for the waker it was registered with), where a
//! [`DrainWait`] takes 32, and an idle connection's task is mostly such waits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Whether the server has started to drain, with a wake-up for the connections waiting.
#[derive(Debug, Default)]
pub(crate) struct Draining {
    started: AtomicBool,
    waiters: Mutex<Waiters>,
}

/// The registered wakers: a slot per waiting connection, reused once it leaves; `None` once
/// [`Draining::start`] has woken it.
type Waiters = slab::Slab<Option<Waker>>;

impl Draining {
    /// Starts the drain: every wait sees it, those already registered are woken.
    pub(crate) fn start(&self) {
        // Before the wake-up: a woken task, or one that registers later, sees the flag.
        self.started.store(true, Ordering::Release);
        let woken: Vec<Waker> = self
            .lock()
            .iter_mut()
            .filter_map(|(_, w)| w.take())
            .collect();
        for w in woken {
            w.wake();
        }
    }

    /// Whether the drain has started.
    pub(crate) fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// A wait for the drain's start, for one task (a connection's): poll it with
    /// [`DrainWait::poll_started`]. A [`start`](Self::start) at any time before or after
    /// completes it.
    pub(crate) fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            draining: self,
            slot: None,
            waker: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // Nothing panics while holding it; a poisoned list is still a list of wakers.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One task's wait for the drain's start; leaves the list when dropped.
#[derive(Debug)]
pub(crate) struct DrainWait<'a> {
    draining: &'a Draining,
    /// Its slot in the list, once registered (32 bits: one slot per connection; a
    /// `usize` would make every idle connection's task 8 bytes larger).
    slot: Option<u32>,
    /// The waker registered there.
    waker: Option<Waker>,
}

impl DrainWait<'_> {
    /// `Ready` once the drain has started. While the task's waker stays the one registered,
    /// this only loads the flag: that waker is woken by [`Draining::start`].
    #[inline]
    pub(crate) fn poll_started(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.draining.started() {
            return Poll::Ready(());
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        self.register(cx)
    }

    /// Puts the task's waker in the list (once per task, unless its waker changes).
    #[inline(never)]
    fn register(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let d = self.draining;
        let waker = cx.waker().clone();
        {
            let mut list = d.lock();
            match self.slot {
                Some(i) => list[i as usize] = Some(waker.clone()),
                None => {
                    // One slot per connection alive, each holding a descriptor: fewer than
                    // 2^31, so the `Err` arm cannot happen. (Were it to, the connection
                    // acts as if the drain had started: it answers what it has and closes,
                    // never hangs.)
                    let Ok(i) = u32::try_from(list.vacant_key()) else {
                        return Poll::Ready(());
                    };
                    list.insert(Some(waker.clone()));
                    self.slot = Some(i);
                }
            }
        }
        self.waker = Some(waker);
        // Asked again after the registration: a start whose wake-up went through the list
        // before this waker was in it stored the flag first (and its lock orders the two).
        if d.started() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            self.draining.lock().remove(i as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_registered_wait_is_woken_by_start() {
        let d = Arc::new(Draining::default());
        let d2 = Arc::clone(&d);
        let (polled, ready) = tokio::sync::oneshot::channel();
        let waiter = tokio::spawn(async move {
            let mut w = d2.wait();
            // Polled several times with the same waker before the start.
            for _ in 0..3 {
                let p = poll_fn(|cx| Poll::Ready(w.poll_started(cx)));
                assert!(p.await.is_pending());
            }
            let _ = polled.send(());
            poll_fn(|cx| w.poll_started(cx)).await;
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
        let mut w = d.wait();
        d.start();
        poll_fn(|cx| w.poll_started(cx)).await;
        let mut late = d.wait();
        poll_fn(|cx| late.poll_started(cx)).await;
    }

    #[tokio::test]
    async fn a_wait_leaves_the_list_when_dropped_and_its_slot_is_reused() {
        let d = Draining::default();
        for _ in 0..100 {
            let mut w = d.wait();
            assert!(
                poll_fn(|cx| Poll::Ready(w.poll_started(cx)))
                    .await
                    .is_pending()
            );
            assert_eq!(w.slot, Some(0), "the first slot, reused");
        }
        assert!(d.lock().is_empty(), "none left registered");
    }

    /// A task whose waker changed (moved to another runtime's task, say) is woken through
    /// the new one.
    #[tokio::test]
    async fn a_new_waker_replaces_the_registered_one() {
        let d = Arc::new(Draining::default());
        let mut w = d.wait();
        let noop = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&noop);
        assert!(w.poll_started(&mut cx).is_pending());
        let d2 = Arc::clone(&d);
        let starter = tokio::spawn(async move {
            tokio::task::yield_now().await;
            d2.start();
        });
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            poll_fn(|cx| w.poll_started(cx)),
        )
        .await
        .expect("woken through the task's own waker");
        starter.await.unwrap();
    }
}
