//! The ticket protocol: how a caller and the connection task agree, exactly once, on
//! whether a request was written.
//!
//! Callers talk to the task through a bounded channel of [`Op`]s. Each op carries a
//! [`Ticket`], an atomic that both sides race on exactly once:
//!
//! | ticket      | task: [`begin_write`](Ticket::begin_write) | caller: [`cancel`](Ticket::cancel) | task: [`unwrite`](Ticket::unwrite) |
//! |-------------|--------------------------|-------------------------------|----------------------------|
//! | `PENDING`   | -> `WRITING`: write it   | -> `CANCELLED`: not sent      | n/a                        |
//! | `WRITING`   | n/a                      | stays: may have been sent     | -> `PENDING` (no byte left: queued again) |
//! | `CANCELLED` | refused: never written   | stays: not sent               | n/a                        |
//!
//! Whoever wins decides: a cancelled op is never written, and a caller that lost the race
//! knows its request may have been sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use super::Key;
use super::error::{ClientError, ClientErrorKind, Delivery};
use super::state::ClientState;

const PENDING: u8 = 0;
const WRITING: u8 = 1;
const CANCELLED: u8 = 2;

/// The single decision point between a caller giving up and the task writing.
#[derive(Debug, Default)]
pub(crate) struct Ticket {
    state: AtomicU8,
    /// Set by the task when a same-bytes heartbeat that was not our pong arrived while this
    /// request awaited its reply: the timeout then says so (R3 of the heartbeat rule).
    heartbeats_instead: AtomicBool,
}

impl Ticket {
    /// Task side: may the op be written? False if the caller gave up first.
    pub(crate) fn begin_write(&self) -> bool {
        self.state
            .compare_exchange(PENDING, WRITING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Task side: the op was not written after all (it goes back in the queue).
    pub(crate) fn unwrite(&self) {
        let _ = self
            .state
            .compare_exchange(WRITING, PENDING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Caller side: give up. Returns the delivery verdict: `NotSent` if the task had not
    /// started writing (and now never will).
    pub(crate) fn cancel(&self) -> Delivery {
        match self
            .state
            .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Delivery::NotSent,
            Err(CANCELLED) => Delivery::NotSent,
            Err(_) => Delivery::SentNoReply,
        }
    }

    pub(crate) fn mark_heartbeats_instead(&self) {
        self.heartbeats_instead.store(true, Ordering::Relaxed);
    }

    pub(crate) fn saw_heartbeats_instead(&self) -> bool {
        self.heartbeats_instead.load(Ordering::Relaxed)
    }
}

/// The reply timeout of a request that was written, saying so when heartbeat frames came
/// instead of its reply (a peer that replies with the heartbeat frame).
pub(crate) fn reply_timeout(
    state: &ClientState,
    ticket: &Ticket,
    endpoint: Option<String>,
    after: Duration,
) -> ClientError {
    let err = ClientError::timeout(Delivery::SentNoReply, endpoint, after);
    match state.cfg.heartbeat.as_deref() {
        Some(h) if ticket.saw_heartbeats_instead() => err.heartbeats_instead(&h.ping(0)),
        _ => err,
    }
}

/// Where a request's outcome goes.
pub(crate) type ReplyTx = oneshot::Sender<Result<Bytes, ClientError>>;

/// The caller of a request in flight, as the [core](super::core) holds it: where its reply
/// goes, and its ticket.
#[derive(Debug)]
pub(crate) struct Caller {
    pub(crate) reply: ReplyTx,
    pub(crate) ticket: Arc<Ticket>,
}

/// One request (or one-way send) for the task.
#[derive(Debug)]
pub(crate) struct Op {
    pub(crate) frame: Bytes,
    /// Expect a reply (`false`: done once written).
    pub(crate) reply: bool,
    pub(crate) key: Option<Key>,
    pub(crate) ticket: Arc<Ticket>,
    pub(crate) done: ReplyTx,
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
}

impl Op {
    pub(crate) fn finish(self, r: Result<Bytes, ClientError>) {
        let _ = self.done.send(r);
    }
}

/// Cancels the ticket if the caller's future is dropped before it finished.
struct CancelOnDrop(Arc<Ticket>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The caller's side of a connection task.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    pub(crate) tx: mpsc::Sender<Op>,
    pub(crate) state: Arc<ClientState>,
    /// Cancels the task's `gone` token when the last handle is dropped: a task waiting out
    /// a backoff delay is not polling the queue, so it would not see the handles go.
    pub(crate) _alive: Arc<DropGuard>,
    /// The task's stop token (the one `_alive` cancels): cancelled by
    /// [`close`](Self::close) too.
    pub(crate) stop: CancellationToken,
    /// Tracks the connection task: [`close`](Self::close) waits on it.
    pub(crate) tracker: TaskTracker,
}

impl Handle {
    /// Closes the connection for every clone of this handle and waits until the task has
    /// ended: no new op is taken, ops already queued and requests in flight end (answered
    /// or at their deadline), the socket is shut down (FIN) and the task returns.
    ///
    /// # Cancel safety
    /// The close is decided at the first poll; dropping the future then leaves the task
    /// closing on its own. Dropped before its first poll, only this handle is dropped.
    pub(crate) async fn close(self) {
        self.stop.cancel();
        let tracker = self.tracker.clone();
        drop(self);
        tracker.wait().await;
    }

    /// Whether [`close`](Self::close) was called on a clone of this handle.
    pub(crate) fn is_closed(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Sends `frame`; with `reply`, waits for the reply. The whole call is bounded by
    /// `timeout`.
    pub(crate) async fn call(
        &self,
        frame: Bytes,
        reply: bool,
        key: Option<Key>,
        timeout: Duration,
    ) -> Result<Bytes, ClientError> {
        self.state.cfg.refuse_heartbeat_frame(&frame)?;
        // Closed: fail at once, not after the task has seen the close.
        if self.is_closed() {
            return Err(shutdown(Delivery::NotSent));
        }
        let ticket = Arc::new(Ticket::default());
        let guard = CancelOnDrop(Arc::clone(&ticket));
        let (done, rx) = oneshot::channel();
        let deadline = crate::deadline::std_in(timeout);
        let op = Op {
            frame,
            reply,
            key,
            ticket: Arc::clone(&ticket),
            done,
            deadline,
            timeout,
        };
        let work = async {
            if self.tx.send(op).await.is_err() {
                return Err(shutdown(Delivery::NotSent));
            }
            match rx.await {
                Ok(r) => r,
                Err(_) => Err(shutdown(ticket.cancel())),
            }
        };
        let res = match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(r) => r,
            Err(_) => Err(match ticket.cancel() {
                Delivery::NotSent => ClientError::new(
                    ClientErrorKind::Timeout,
                    Delivery::NotSent,
                    format!(
                        "no connection within {}",
                        humantime::format_duration(timeout)
                    ),
                )
                .with_endpoint(self.state.current_endpoint()),
                Delivery::SentNoReply => {
                    reply_timeout(&self.state, &ticket, self.state.current_endpoint(), timeout)
                }
            }),
        };
        drop(guard);
        res
    }
}

/// The client shut down before the request ended.
pub(crate) fn shutdown(d: Delivery) -> ClientError {
    ClientError::new(ClientErrorKind::Shutdown, d, "client shut down")
}
