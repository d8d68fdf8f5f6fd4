//! Tombstones: correlation keys of mux requests that timed out after they were written,
//! kept until their late reply arrives or a bounded window passes.
//!
//! A keyed request that times out may still be answered: the server was slow, not gone. Its
//! caller (or another) often retries with the same key (the same sequence number or STAN).
//! If the retry were written at once, the late reply to the first would match it by key and
//! be handed to the retry as its reply. So the key of a request that was written and timed
//! out is a tombstone for a while, and a request with that key is refused (not sent) until:
//!
//! | event                                   | tombstone | the late reply, if it comes        |
//! |-----------------------------------------|-----------|------------------------------------|
//! | the late reply arrives                  | removed   | counted late, to the unsolicited stream |
//! | the window passes (checked on use)      | removed   | would match a new request with the key |
//! | the cap is reached by a new tombstone   | the one expiring first is evicted early | as the line above |
//! | the connection is lost                  | all dropped (a new connection owes no late replies) | n/a |
//!
//! The window is the timed-out request's own timeout, at least [`MIN_WINDOW`] and at most
//! [`MAX_WINDOW`]: a server that answers later than twice the timeout is treated as never
//! answering. Sans-IO: `now` is passed in.
//!
//! # One reply per request is the server's contract
//! The tombstone goes with the first late reply, so a retry is admitted as soon as the server
//! has answered the request that timed out. A server that answers one request twice (a
//! retransmitting peer) breaks correlation by key: its second copy, arriving while a retry
//! with that key is in flight, is taken as the retry's reply. Nothing on the wire tells the
//! two apart (a retry of the same request gets the same bytes), and keeping the tombstone
//! for its whole window after the late reply would make every retry against a correct
//! server wait that window (at least a second). Where a peer may answer twice, give each
//! attempt a fresh key.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Key;

/// The shortest tombstone window: late replies are late by the server's processing time,
/// which has nothing to do with a short client timeout.
pub(crate) const MIN_WINDOW: Duration = Duration::from_secs(1);

/// The longest tombstone window (also the default request timeout).
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(30);

/// The tombstones of one connection; at most `cap` of them.
#[derive(Debug)]
pub(crate) struct Tombstones {
    until: HashMap<Key, Instant>,
    cap: usize,
}

impl Tombstones {
    /// At most `cap` tombstones (at least 1).
    pub(crate) fn new(cap: usize) -> Self {
        Tombstones {
            until: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// The request with `key`, whose timeout was `timeout`, timed out at `now` after it was
    /// written. At the cap, expired tombstones are dropped and then, if still full, the one
    /// that expires first is evicted.
    pub(crate) fn bury(&mut self, key: Key, now: Instant, timeout: Duration) {
        if self.until.len() >= self.cap && !self.until.contains_key(&key) {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= self.cap {
                let first = self
                    .until
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone());
                if let Some(k) = first {
                    tracing::debug!(key = ?k, "tombstone evicted early: too many timed-out keys");
                    self.until.remove(&k);
                }
            }
        }
        let window = timeout.clamp(MIN_WINDOW, MAX_WINDOW);
        self.until.insert(key, crate::deadline::after(now, window));
    }

    /// Whether a new request with `key` must wait: `Some(until)` while its tombstone lasts.
    /// An expired tombstone is dropped.
    pub(crate) fn blocks(&mut self, key: &Key, now: Instant) -> Option<Instant> {
        match self.until.get(key) {
            Some(t) if *t > now => Some(*t),
            Some(_) => {
                self.until.remove(key);
                None
            }
            None => None,
        }
    }

    /// A frame with `key` matched no request: true if it is the late reply of a tombstoned
    /// key (the tombstone is then removed).
    pub(crate) fn take_late(&mut self, key: &Key, now: Instant) -> bool {
        match self.until.remove(key) {
            Some(t) => t > now,
            None => false,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u32) -> Key {
        Key::from(n)
    }

    #[test]
    fn window_is_the_timeout_clamped() {
        let t0 = Instant::now();
        let mut t = Tombstones::new(8);
        t.bury(k(1), t0, Duration::from_millis(10));
        t.bury(k(2), t0, Duration::from_secs(5));
        t.bury(k(3), t0, Duration::MAX);
        assert_eq!(t.blocks(&k(1), t0), Some(t0 + MIN_WINDOW));
        assert_eq!(t.blocks(&k(2), t0), Some(t0 + Duration::from_secs(5)));
        assert_eq!(t.blocks(&k(3), t0), Some(t0 + MAX_WINDOW));
        assert_eq!(t.blocks(&k(4), t0), None);
    }

    #[test]
    fn late_reply_clears_and_expiry_clears() {
        let t0 = Instant::now();
        let mut t = Tombstones::new(8);
        t.bury(k(1), t0, Duration::from_secs(2));
        t.bury(k(2), t0, Duration::from_secs(2));
        assert!(t.take_late(&k(1), t0 + Duration::from_secs(1)));
        assert_eq!(t.blocks(&k(1), t0 + Duration::from_secs(1)), None);
        assert!(!t.take_late(&k(1), t0 + Duration::from_secs(1)));
        // Expired: let through, and a reply then is not "late" any more.
        assert_eq!(t.blocks(&k(2), t0 + Duration::from_secs(2)), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn cap_drops_expired_then_evicts_the_first_to_expire() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Tombstones::new(2);
        t.bury(k(1), t0, 2 * s);
        t.bury(k(2), t0, 3 * s);
        t.bury(k(3), t0, 4 * s);
        assert_eq!(t.len(), 2);
        assert_eq!(t.blocks(&k(1), t0), None);
        assert!(t.blocks(&k(2), t0).is_some() && t.blocks(&k(3), t0).is_some());
        // k(2) has expired by then: dropped, nothing live is evicted.
        t.bury(k(4), t0 + 3 * s, 4 * s);
        assert_eq!(t.len(), 2);
        assert!(t.blocks(&k(3), t0 + 3 * s).is_some());
        // Re-burying a key at the cap replaces it, evicting nothing.
        t.bury(k(4), t0 + 3 * s, 5 * s);
        assert_eq!(t.len(), 2);
    }
}
