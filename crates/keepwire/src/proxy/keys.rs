//! Correlation keys of requests in flight through the proxy: one upstream link carries many
//! clients' requests, so two clients that both number their requests `000001` would have
//! their replies crossed. The table here keeps every key in flight unique:
//!
//! | request's key                      | what happens                                         |
//! |------------------------------------|------------------------------------------------------|
//! | not in flight                      | sent as is, key taken                                |
//! | in flight, the key can be rewritten | a fresh key of the same length, not in flight, is written over it; the reply gets the original back |
//! | in flight, cannot be rewritten     | the request waits until the earlier one's reply is back (or its deadline) |
//! | none (frame too short)             | sent as is: the upstream client refuses it           |
//!
//! A fresh key is a counter: decimal digits when the client's key is all ASCII digits (a
//! STAN stays a STAN), else big-endian bytes; `0` is skipped (a sequence number 0 is invalid
//! in SMPP).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::client::{Correlate, Key};

/// How many candidates are tried for a fresh key before the request waits instead: with
/// fewer requests in flight than keys of that length the first free one is found within as
/// many tries as there are requests in flight.
const MAX_TRIES: usize = 4096;

/// The keys in flight and the counter fresh keys come from.
pub(crate) struct KeyTable {
    correlate: Arc<dyn Correlate>,
    state: Mutex<State>,
    freed: Notify,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    in_flight: HashSet<Bytes>,
    next: u64,
}

/// A key held while its request is in flight; released on drop.
#[derive(Debug)]
pub(crate) struct Lease {
    table: Arc<KeyTable>,
    key: Option<Bytes>,
    /// The client's own key, when the request went up under another.
    original: Option<Key>,
}

/// A request ready to go up: its frame (perhaps rewritten) and the lease on its key.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) frame: Bytes,
    pub(crate) lease: Lease,
}

/// Waiting for a key took longer than the request may.
#[derive(Debug)]
pub(crate) struct KeyBusy;

impl KeyTable {
    pub(crate) fn new(correlate: Arc<dyn Correlate>) -> Arc<Self> {
        Arc::new(KeyTable {
            correlate,
            state: Mutex::new(State::default()),
            freed: Notify::new(),
        })
    }

    /// Takes a key for `frame`: its own, a rewritten one, or its own once free (at most
    /// `wait`).
    ///
    /// # Cancel safety
    /// Cancel safe: a key is only held by the returned lease.
    pub(crate) async fn take(
        self: &Arc<Self>,
        frame: Bytes,
        wait: Duration,
    ) -> Result<Taken, KeyBusy> {
        let deadline = crate::deadline::after_tokio(tokio::time::Instant::now(), wait);
        loop {
            let freed = self.freed.notified();
            if let Some(t) = self.try_take(&frame) {
                return Ok(t);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(KeyBusy);
            }
        }
    }

    fn try_take(self: &Arc<Self>, frame: &Bytes) -> Option<Taken> {
        let Some(key) = self.correlate.request_key(frame) else {
            return Some(self.taken(frame.clone(), None, None));
        };
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.in_flight.insert(key.0.clone()) {
            return Some(self.taken(frame.clone(), Some(key.0), None));
        }
        let digits = !key.0.is_empty() && key.0.iter().all(u8::is_ascii_digit);
        for _ in 0..MAX_TRIES {
            st.next = st.next.wrapping_add(1);
            let cand = fresh(st.next, key.0.len(), digits);
            if cand.iter().all(|b| *b == if digits { b'0' } else { 0 }) {
                continue;
            }
            if st.in_flight.contains(&cand) {
                continue;
            }
            let rewritten = self.correlate.rekey(frame, &Key(cand.clone()))?;
            st.in_flight.insert(cand.clone());
            return Some(self.taken(rewritten, Some(cand), Some(key)));
        }
        None
    }

    fn taken(self: &Arc<Self>, frame: Bytes, key: Option<Bytes>, original: Option<Key>) -> Taken {
        Taken {
            frame,
            lease: Lease {
                table: Arc::clone(self),
                key,
                original,
            },
        }
    }

    /// How many keys are in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .in_flight
            .len()
    }
}

impl Lease {
    /// The reply with the client's own key back in it (unchanged when the key was not
    /// rewritten, or the reply's key cannot be written).
    pub(crate) fn restore(&self, reply: Bytes) -> Bytes {
        match &self.original {
            Some(k) => self.table.correlate.rekey(&reply, k).unwrap_or(reply),
            None => reply,
        }
    }

    /// Whether the request went up under a key of the proxy's.
    #[cfg(test)]
    pub(crate) fn rewritten(&self) -> bool {
        self.original.is_some()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.table
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .in_flight
                .remove(&k);
            self.table.freed.notify_waiters();
        }
    }
}

/// Counter `n` as a key of `len` bytes: decimal digits (the last `len` of them) or
/// big-endian bytes (zero-padded on the left, or the low `len` bytes).
fn fresh(n: u64, len: usize, digits: bool) -> Bytes {
    let mut out = vec![if digits { b'0' } else { 0 }; len];
    let mut v = n;
    for b in out.iter_mut().rev() {
        if digits {
            // `v % 10` is below 10: the narrowing cannot lose anything.
            *b = b'0' + u8::try_from(v % 10).unwrap_or(0);
            v /= 10;
        } else {
            *b = u8::try_from(v & 0xff).unwrap_or(0);
            v >>= 8;
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ByteRange;

    fn table() -> Arc<KeyTable> {
        KeyTable::new(Arc::new(ByteRange::new(0, 6)))
    }

    #[tokio::test]
    async fn a_free_key_goes_up_unchanged() {
        let t = table();
        let a = t
            .take(Bytes::from_static(b"000001hello"), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(a.frame, "000001hello");
        assert!(!a.lease.rewritten());
        assert_eq!(a.lease.restore(Bytes::from_static(b"000001ok")), "000001ok");
    }

    #[tokio::test]
    async fn a_colliding_key_is_rewritten_and_restored() {
        let t = table();
        let a = t
            .take(Bytes::from_static(b"000001a"), Duration::ZERO)
            .await
            .unwrap();
        let b = t
            .take(Bytes::from_static(b"000001b"), Duration::ZERO)
            .await
            .unwrap();
        assert!(b.lease.rewritten());
        assert_ne!(b.frame.get(..6), a.frame.get(..6));
        assert!(b.frame.get(..6).unwrap().iter().all(u8::is_ascii_digit));
        assert_eq!(b.frame.get(6..), Some(&b"b"[..]));
        let up = Bytes::copy_from_slice(&b.frame);
        assert_eq!(b.lease.restore(up), "000001b");
        assert_eq!(t.in_flight(), 2);
        drop((a, b));
        assert_eq!(t.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_unrewritable_key_waits_for_the_earlier_reply() {
        // A closure keys, and cannot rewrite.
        let t = KeyTable::new(Arc::new(|f: &[u8]| f.get(..1).map(Key::from)));
        let a = t
            .take(Bytes::from_static(b"xa"), Duration::ZERO)
            .await
            .unwrap();
        assert!(
            t.take(Bytes::from_static(b"xb"), Duration::from_millis(20))
                .await
                .is_err()
        );
        let t2 = Arc::clone(&t);
        let waiting = tokio::spawn(async move {
            t2.take(Bytes::from_static(b"xb"), Duration::from_secs(10))
                .await
                .map(|t| t.frame)
        });
        drop(a);
        let got = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, "xb");
    }

    #[test]
    fn fresh_keys_keep_their_length_and_kind() {
        assert_eq!(fresh(42, 6, true), "000042");
        assert_eq!(fresh(1_234_567, 3, true), "567");
        assert_eq!(fresh(0x0102, 4, false), &b"\0\0\x01\x02"[..]);
        assert_eq!(fresh(0x0102_0304, 1, false), &b"\x04"[..]);
    }
}
