//! The connections' tasks, as the accept loop and the drain see them.
//!
//! Each connection runs in a task of its own, spawned detached. The task removes itself from
//! the server's registry when its future is dropped (it ended, panicked or was aborted), so
//! nothing has to reap it: an idle server holds no finished task. The registry keeps one
//! [`AbortHandle`] per running task, for the two jobs the drain has: wait until every task
//! has ended ([`ConnTasks::all_ended`]) and abort those left when the grace runs out
//! ([`ConnTasks::abort_all`]). It also counts the tasks whose future was dropped before it
//! completed ([`ConnTasks::cut_short`]): an abort reaches a task that is being polled on
//! another thread only after that poll, which may complete it, so the drain counts the
//! connections its abort really cut, not the aborts it sent.
//!
//! Per connection this costs two uncontended locks (one at the spawn, one at the end) and an
//! entry in a map. A `JoinSet` costs an `Arc`'d list entry, four locks (insert, the wake at
//! the end, the pop and the removal when reaped) and a wake-up of the accept loop's task to
//! reap it.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The connections' tasks: spawns them and drains them. Dropping it aborts every task left,
/// as dropping a `JoinSet` does.
#[derive(Debug, Default)]
pub(crate) struct ConnTasks {
    registry: Arc<Registry>,
    /// The next task's key: keys are never reused.
    next_key: u64,
}

#[derive(Debug, Default)]
struct Registry {
    slots: Mutex<Slots>,
    /// Woken when the last task ends while [`ConnTasks::all_ended`] waits.
    ended: Notify,
}

#[derive(Debug, Default)]
struct Slots {
    tasks: HashMap<u64, Slot, BuildHasherDefault<KeyHasher>>,
    /// Someone waits in [`ConnTasks::all_ended`].
    waiting: bool,
    /// Tasks whose future was dropped before it completed (aborted, or panicked).
    cut_short: u64,
}

/// A task's entry. The spawner and the task's end race to the lock (on a multi-thread
/// runtime the task may end before its spawner records it): whichever comes second removes
/// the entry.
#[derive(Debug)]
enum Slot {
    Running(AbortHandle),
    /// The task ended before its spawner recorded it.
    Ended,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Nothing panics while holding it; a poisoned lock still holds consistent slots.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The task `key` has ended, its future `completed` or dropped before.
    fn remove(&self, key: u64, completed: bool) {
        let mut slots = self.lock();
        if !completed {
            slots.cut_short = slots.cut_short.saturating_add(1);
        }
        if slots.tasks.remove(&key).is_none() {
            slots.tasks.insert(key, Slot::Ended);
            return;
        }
        let wake = slots.waiting && slots.tasks.is_empty();
        drop(slots);
        if wake {
            self.ended.notify_waiters();
        }
    }
}

impl ConnTasks {
    /// Runs `fut` in a task of its own, tracked until it ends.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn`.
    pub(crate) fn spawn<F>(&mut self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1);
        let guard = EndGuard {
            registry: Arc::clone(&self.registry),
            key,
            completed: false,
        };
        // Boxed: `tokio::spawn` moves its future six times on the way into the task (a
        // connection's is up to 1 KiB: 680 instructions of memcpy per connection,
        // callgrind); a box is moved as a pointer, for one allocation from the thread's
        // cache. The task keeps the same bytes, split in two.
        let fut = Box::pin(fut);
        // The guard lives in the closure: dropped with the future whenever that is dropped,
        // or right after it completes.
        let handle = tokio::spawn(futures_util::FutureExt::map(fut, move |()| {
            guard.complete()
        }));
        let mut slots = self.registry.lock();
        if slots.tasks.remove(&key).is_none() {
            slots
                .tasks
                .insert(key, Slot::Running(handle.abort_handle()));
        }
    }

    /// Tasks whose future was dropped before it completed, so far: aborted ones (once they
    /// have ended: see [`all_ended`](Self::all_ended)) and panicked ones.
    pub(crate) fn cut_short(&self) -> u64 {
        self.registry.lock().cut_short
    }

    /// Whether every task spawned so far has ended.
    pub(crate) fn is_empty(&self) -> bool {
        self.registry.lock().tasks.is_empty()
    }

    /// Tasks not yet ended.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.registry.lock().tasks.len()
    }

    /// Waits until every task spawned so far has ended.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only waits.
    pub(crate) async fn all_ended(&self) {
        loop {
            // Registered before the look at the count, so the last task's wake-up is not
            // lost between the two.
            let notified = self.registry.ended.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut slots = self.registry.lock();
                if slots.tasks.is_empty() {
                    slots.waiting = false;
                    return;
                }
                slots.waiting = true;
            }
            notified.await;
        }
    }

    /// Aborts every task still running; returns how many there were. An aborted task ends
    /// (and leaves the registry) when the runtime next polls it; one being polled on another
    /// thread may still complete in that poll ([`cut_short`](Self::cut_short) tells).
    pub(crate) fn abort_all(&self) -> usize {
        // Aborted outside the lock: an abort never drops a task's future in place today, but
        // if it did, the task's guard would take the lock again.
        let running: Vec<AbortHandle> = {
            let slots = self.registry.lock();
            slots
                .tasks
                .values()
                .filter_map(|slot| match slot {
                    Slot::Running(h) => Some(h.clone()),
                    Slot::Ended => None,
                })
                .collect()
        };
        for h in &running {
            h.abort();
        }
        running.len()
    }
}

impl Drop for ConnTasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// Removes its task from the registry when the task's future is dropped: at its end, on a
/// panic, on an abort, or when the runtime shuts down.
#[derive(Debug)]
struct EndGuard {
    registry: Arc<Registry>,
    key: u64,
    /// Set when the task's future completed; the guard is dropped right after.
    completed: bool,
}

impl EndGuard {
    /// The task's future completed: drops the guard, saying so. (By value: a closure that
    /// set the field would capture the field alone, and drop the guard at the spawn.)
    fn complete(mut self) {
        self.completed = true;
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.registry.remove(self.key, self.completed);
    }
}

/// Keys are a counter: spread them with a multiplication (Fibonacci hashing) rather than
/// SipHash. They are ours, not a peer's, so nobody can choose them to collide.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    const SOON: Duration = Duration::from_secs(10);

    /// Polls `cond` until it holds, at most `SOON`.
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + SOON;
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn finished_tasks_leave_the_registry_with_nothing_to_reap_them() {
        let mut tasks = ConnTasks::default();
        for _ in 0..100 {
            tasks.spawn(async { tokio::task::yield_now().await });
        }
        assert!(!tasks.is_empty(), "the tasks have not run yet");
        // No accept, no join: the tasks alone empty the registry.
        eventually("the registry emptied", || tasks.is_empty()).await;
        tokio::time::timeout(SOON, tasks.all_ended()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_that_end_before_their_spawner_records_them_are_not_kept() {
        let mut tasks = ConnTasks::default();
        for _ in 0..2_000 {
            tasks.spawn(async {});
        }
        eventually("the registry emptied", || tasks.is_empty()).await;
        tokio::time::timeout(SOON, tasks.all_ended()).await.unwrap();
    }

    #[tokio::test]
    async fn all_ended_waits_for_the_last_task() {
        let mut tasks = ConnTasks::default();
        let mut release = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = oneshot::channel::<()>();
            tasks.spawn(async move {
                let _ = rx.await;
            });
            release.push(tx);
        }
        let mut wait = std::pin::pin!(tasks.all_ended());
        assert!(futures_util::poll!(wait.as_mut()).is_pending());
        for tx in release.drain(..2) {
            let _ = tx.send(());
        }
        eventually("two ended", || tasks.len() == 1).await;
        assert!(futures_util::poll!(wait.as_mut()).is_pending());
        drop(release);
        tokio::time::timeout(SOON, wait).await.unwrap();
    }

    #[tokio::test]
    async fn abort_all_counts_and_ends_the_running_tasks_only() {
        let mut tasks = ConnTasks::default();
        let mut dropped = Vec::new();
        for _ in 0..5 {
            let (tx, rx) = oneshot::channel::<()>();
            // Never ends by itself; `tx` is dropped when the task is aborted.
            tasks.spawn(async move {
                let _keep = tx;
                std::future::pending::<()>().await;
            });
            dropped.push(rx);
        }
        for _ in 0..3 {
            tasks.spawn(async {});
        }
        eventually("the short ones ended", || tasks.len() == 5).await;
        assert_eq!(tasks.cut_short(), 0, "the short ones completed");
        assert_eq!(tasks.abort_all(), 5);
        tokio::time::timeout(SOON, tasks.all_ended()).await.unwrap();
        assert_eq!(tasks.cut_short(), 5);
        for rx in dropped {
            assert!(rx.await.is_err(), "the aborted task's state was dropped");
        }
    }

    #[tokio::test]
    async fn dropping_the_registry_aborts_its_tasks() {
        let mut tasks = ConnTasks::default();
        let (tx, rx) = oneshot::channel::<()>();
        tasks.spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        drop(tasks);
        let r = tokio::time::timeout(SOON, rx).await.unwrap();
        assert!(r.is_err(), "the task was aborted, its state dropped");
    }

    #[tokio::test]
    async fn a_panicking_task_leaves_the_registry() {
        let mut tasks = ConnTasks::default();
        tasks.spawn(async {
            tokio::task::yield_now().await;
            panic!("a handler bug");
        });
        tokio::time::timeout(SOON, tasks.all_ended()).await.unwrap();
        assert_eq!(tasks.len(), 0);
        assert_eq!(tasks.cut_short(), 1);
    }

    /// An abort that reaches a task while another thread polls it may come too late: the
    /// task completes in that poll and is not counted as cut short.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_that_completes_despite_its_abort_is_not_cut_short() {
        let mut tasks = ConnTasks::default();
        let (inside_tx, inside_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        tasks.spawn(async move {
            // Blocks its worker thread inside one poll until the abort was sent.
            let _ = inside_tx.send(());
            let _ = go_rx.recv_timeout(SOON);
        });
        tokio::task::spawn_blocking(move || inside_rx.recv_timeout(SOON))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tasks.abort_all(), 1, "sent while the task is being polled");
        let _ = go_tx.send(());
        tokio::time::timeout(SOON, tasks.all_ended()).await.unwrap();
        assert_eq!(tasks.cut_short(), 0, "the task completed its poll");
    }
}
