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
//! A fresh key comes from a counter through [`Correlate::renumber`]: decimal digits when the
//! client's key is all ASCII digits (a STAN stays a STAN), else big-endian bytes; a
//! template's sequence number (ISO 8583: the STAN inside a key of MTI, STAN and terminal
//! id); a key of zeros is skipped (a sequence number 0 is invalid in SMPP).

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
        for _ in 0..MAX_TRIES {
            st.next = st.next.wrapping_add(1);
            let (rewritten, cand) = self.correlate.renumber(frame, st.next)?;
            // A key of zeros is skipped (a sequence number 0 is invalid in SMPP).
            if cand.0.iter().all(|b| *b == b'0' || *b == 0) || st.in_flight.contains(&cand.0) {
                continue;
            }
            st.in_flight.insert(cand.0.clone());
            return Some(self.taken(rewritten, Some(cand.0), Some(key)));
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

    #[tokio::test]
    async fn colliding_iso8583_stans_are_renumbered_and_restored() {
        use crate::protocol::Template;
        use crate::protocol::drive::SequenceKey;
        let p = Template::Iso8583.protocol();
        let t = KeyTable::new(Arc::new(SequenceKey::new(Arc::clone(&p))));
        let req = |amount: &str| {
            p.encode_text(
                &format!("0200 3=000000 4={amount} 11=000123 41=TERM0001"),
                0,
            )
            .unwrap()
        };
        let a = t.take(req("000000001000"), Duration::ZERO).await.unwrap();
        let b = t.take(req("000000002000"), Duration::ZERO).await.unwrap();
        assert!(!a.lease.rewritten());
        assert!(
            b.lease.rewritten(),
            "the second STAN 000123 must be renumbered"
        );
        let up = p.decode_text(&b.frame).unwrap().to_string();
        assert!(!up.contains("11=000123"), "{up}");
        assert!(
            up.contains("41=TERM0001") && up.contains("4=000000002000"),
            "{up}"
        );
        // The partner answers the renumbered request; the client gets its own STAN back.
        let stan = up.split(' ').find(|f| f.starts_with("11=")).unwrap();
        let reply = p
            .encode_text(&format!("0210 4=000000002000 {stan} 39=00 41=TERM0001"), 0)
            .unwrap();
        let back = p.decode_text(&b.lease.restore(reply)).unwrap().to_string();
        assert_eq!(back, "0210 4=000000002000 11=000123 39=00 41=TERM0001");
    }
}
