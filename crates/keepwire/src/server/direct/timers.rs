//! A worker's timers: one min-heap of (deadline, connection) entries, checked lazily.
//!
//! A connection's deadline moves later with every request (its idle timeout counts from the
//! last frame), and re-filing it on every request would cost a heap operation each. Instead
//! a connection is filed once, under the deadline it had then, and remembers that deadline
//! ([`Armed`]). A deadline that moves later changes nothing here: when the old entry comes
//! due, the worker finds the connection not due yet and files it again under its new
//! deadline. Only a deadline that moves earlier (a partial frame's slow-frame clock, a
//! blocked write) files a second entry; the first is then stale and skipped when it comes
//! due. Stale entries are bounded: the heap is rebuilt without them when it holds more
//! than twice the connections plus a margin.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// The deadline a connection is filed under, and the connection's generation (a slab key
/// is reused by later connections; the generation tells an entry for an earlier one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Armed {
    pub(super) at: Instant,
    pub(super) key: usize,
    pub(super) generation: u32,
}

/// Entries beyond twice the connections that may pile up before a rebuild.
const SLACK: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<Armed>>,
}

impl Timers {
    /// Files `entry`.
    pub(super) fn push(&mut self, entry: Armed) {
        self.heap.push(Reverse(entry));
    }

    /// The earliest deadline filed.
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(a)| a.at)
    }

    /// Takes the earliest entry if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Armed> {
        if self.heap.peek().is_some_and(|Reverse(a)| a.at <= now) {
            self.heap.pop().map(|Reverse(a)| a)
        } else {
            None
        }
    }

    /// Rebuilds the heap without the entries `live` says are stale, when there are more
    /// entries than `conns` connections can account for.
    pub(super) fn compact(&mut self, conns: usize, live: impl Fn(&Armed) -> bool) {
        if self.heap.len() > conns.saturating_mul(2).saturating_add(SLACK) {
            self.heap.retain(|Reverse(a)| live(a));
        }
    }

    /// Entries filed (stale ones included).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(t0: Instant, ms: u64, key: usize) -> Armed {
        Armed {
            at: t0 + Duration::from_millis(ms),
            key,
            generation: 0,
        }
    }

    #[test]
    fn entries_come_due_in_deadline_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.push(at(t0, 30, 3));
        t.push(at(t0, 10, 1));
        t.push(at(t0, 20, 2));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0 + Duration::from_millis(5)), None);
        let due: Vec<usize> = std::iter::from_fn(|| t.pop_due(t0 + Duration::from_millis(25)))
            .map(|a| a.key)
            .collect();
        assert_eq!(due, [1, 2]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn stale_entries_are_dropped_past_the_slack() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for i in 0..SLACK + 10 {
            t.push(at(t0, i as u64, i));
        }
        // Only key 7 is live: with one connection, the heap keeps its entry alone.
        t.compact(1, |a| a.key == 7);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.pop_due(t0 + Duration::from_secs(60)).map(|a| a.key),
            Some(7)
        );
        // Under the slack nothing is rebuilt.
        t.push(at(t0, 1, 1));
        t.push(at(t0, 2, 2));
        t.compact(1, |_| false);
        assert_eq!(t.len(), 2);
    }
}
