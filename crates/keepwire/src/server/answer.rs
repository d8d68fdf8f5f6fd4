//! What a handler answers to one request.
//!
//! Most handlers answer a request with one frame or none: they return `Option<Bytes>`, which
//! converts into an [`Answer`]. Protocols need two more things, and an [`Answer`] carries them:
//!
//! - **several frames** for one request, written in order: a submit's response followed by
//!   its delivery report (SMPP `submit_sm_resp` then `deliver_sm`);
//! - **close after the answer**: HTTP's `Connection: close` (RFC 9112 §9.6: "a server that
//!   sends a "close" connection option MUST initiate closure of the connection after it sends
//!   the response containing the close"), a refused login, an SMPP `unbind_resp`.
//!
//! When an answer closes the connection, frames that arrived after the request are not
//! handed to the handler: the connection writes the answer, sends its FIN, and reads and drops
//! what the peer still sends until the peer closes too (for at most a second), so unread bytes
//! do not turn the close into a reset that could destroy the answer in flight.

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
    close: bool,
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
            close: false,
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
        self.close = true;
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
            close: false,
        }
    }
}
