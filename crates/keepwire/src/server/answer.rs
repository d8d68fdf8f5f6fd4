//! What a handler answers to one request.
//!
//! Most handlers answer a request with one frame or none: they return `Option<Bytes>`, which
//! converts into an [`Answer`]. Protocols need two more things, and an [`Answer`] carries them:
//!
//! - **several frames** for one request, written in order: a submit's response followed by
//!   its delivery report (SMPP `submit_sm_resp` then `deliver_sm`);
//! - **close after the answer**: HTTP's `Connection: close` (RFC 9112 §9.6: "a server that
//!   sends a "close" connection option MUST initiate closure of the connection after it sends
//!   the response containing the close"), a refused login.
//! - **the peer closes next**: an SMPP `unbind_resp` or a CMPP `TERMINATE_RESP`, after which
//!   the client is the one to close. Waiting for its FIN leaves the TIME_WAIT socket on the
//!   client (RFC 9293 §3.6: the side that closes first waits 2×MSL), not one per short link
//!   on the server.
//!
//! When an answer closes the connection, frames that arrived after the request are not
//! handed to the handler. [`then_close`](Answer::then_close): the connection writes the
//! answer, sends its FIN, and reads and drops what the peer still sends until the peer closes
//! too (for at most a second), so unread bytes do not turn the close into a reset that could
//! destroy the answer in flight. [`then_await_close`](Answer::then_await_close): it writes the
//! answer and drops what the peer sends until the peer's FIN, for at most the server's
//! `short_close_wait`, then closes.

use bytes::Bytes;

/// A handler's answer to one request: frames to send, in order, and whether the connection
/// closes after them.
///
/// ```
/// use bytes::Bytes;
/// use keepwire::server::Answer;
///
/// let none: Answer = None::<Bytes>.into();
/// assert!(none.frames().is_empty() && !none.closes());
///
/// let one: Answer = Some(Bytes::from_static(b"ok")).into();
/// assert_eq!(one.frames(), [Bytes::from_static(b"ok")]);
///
/// let two = Answer::one("resp").with("receipt").then_close();
/// assert_eq!(two.frames().len(), 2);
/// assert!(two.closes());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Answer {
    frames: Frames,
    close: Close,
}

/// Whether and how a connection closes after an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Close {
    /// It stays open.
    #[default]
    No,
    /// We close first.
    Now,
    /// We close first, and the peer has said it sends nothing more (an HTTP client that
    /// asked for the close): no linger for its FIN unless bytes from it already wait.
    Asked,
    /// The peer is expected to close; we wait for its FIN (bounded), then close.
    AfterPeer,
}

/// The frames of an answer. One frame, by far the usual answer, costs no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Frames {
    #[default]
    None,
    One(Bytes),
    Many(Vec<Bytes>),
}

impl Answer {
    /// No frame; the connection stays open.
    pub fn none() -> Self {
        Answer::default()
    }

    /// One frame.
    pub fn one(frame: impl Into<Bytes>) -> Self {
        Answer {
            frames: Frames::One(frame.into()),
            close: Close::No,
        }
    }

    /// These frames, in order.
    pub fn many(frames: impl IntoIterator<Item = Bytes>) -> Self {
        Answer::from(frames.into_iter().collect::<Vec<_>>())
    }

    /// This answer with one more frame after the others.
    #[must_use]
    pub fn with(mut self, frame: impl Into<Bytes>) -> Self {
        self.push(frame);
        self
    }

    /// Adds one more frame after the others.
    pub fn push(&mut self, frame: impl Into<Bytes>) {
        let frame = frame.into();
        self.frames = match std::mem::take(&mut self.frames) {
            Frames::None => Frames::One(frame),
            Frames::One(first) => Frames::Many(vec![first, frame]),
            Frames::Many(mut all) => {
                all.push(frame);
                Frames::Many(all)
            }
        };
    }

    /// This answer, after which the connection closes.
    #[must_use]
    pub fn then_close(mut self) -> Self {
        self.close = Close::Now;
        self
    }

    /// [`then_close`](Self::then_close) for a peer that asked for the close (HTTP/1.0
    /// without keep-alive, `Connection: close`): it sends nothing more, so unless bytes
    /// from it already wait, the connection closes at once instead of half-closing and
    /// lingering for the peer's FIN (what nginx does; the linger only matters for bytes
    /// the peer still sends, which a reset would answer).
    #[must_use]
    pub(crate) fn then_close_asked(mut self) -> Self {
        self.close = Close::Asked;
        self
    }

    /// This answer, after which the peer is expected to close: the connection waits for the
    /// peer's FIN (for at most the server's `short_close_wait`), dropping anything else it
    /// sends, then closes. The peer then holds the TIME_WAIT socket.
    ///
    /// ```
    /// use keepwire::server::Answer;
    /// let a = Answer::one("unbind_resp").then_await_close();
    /// assert!(a.closes());
    /// ```
    #[must_use]
    pub fn then_await_close(mut self) -> Self {
        self.close = Close::AfterPeer;
        self
    }

    /// The frames, in the order they are written.
    pub fn frames(&self) -> &[Bytes] {
        match &self.frames {
            Frames::None => &[],
            Frames::One(frame) => std::slice::from_ref(frame),
            Frames::Many(all) => all,
        }
    }

    /// Whether the connection closes after this answer.
    pub fn closes(&self) -> bool {
        self.close != Close::No
    }

    /// How the connection closes after this answer.
    pub(crate) fn close(&self) -> Close {
        self.close
    }
}

impl PartialEq for Answer {
    fn eq(&self, other: &Self) -> bool {
        self.frames() == other.frames() && self.close == other.close
    }
}

impl Eq for Answer {}

impl From<Option<Bytes>> for Answer {
    fn from(reply: Option<Bytes>) -> Self {
        match reply {
            Some(frame) => Answer::one(frame),
            None => Answer::none(),
        }
    }
}

impl From<Bytes> for Answer {
    fn from(frame: Bytes) -> Self {
        Answer::one(frame)
    }
}

impl From<Vec<Bytes>> for Answer {
    fn from(frames: Vec<Bytes>) -> Self {
        let frames = match frames.len() {
            0 => Frames::None,
            _ => Frames::Many(frames),
        };
        Answer {
            frames,
            close: Close::No,
        }
    }
}
