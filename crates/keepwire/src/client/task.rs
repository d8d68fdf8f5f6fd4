//! The task behind every long connection (long, mux, duplex, simplex, pooled): connects
//! with failover, serves one connection at a time ([`session`](super::session)), and
//! reconnects with backoff when it is lost. What to do after a loss is the
//! [core](super::core)'s decision ([`Reconnect`]); this file performs it.
//!
//! | a connection ended with            | the task                                       |
//! |------------------------------------|------------------------------------------------|
//! | every handle gone, nothing pending | stops; queued ops fail "client shut down"      |
//! | `close`: queue closed, what was queued written, nothing in flight ([`Session::may_close`](super::core::Session::may_close)) | shuts the socket down (FIN) and stops; `close` returns |
//! | lost                               | marks the endpoint down if the core says so, waits the core's delay, reconnects (either ends once every handle is gone, or at `close`) |
//! | lost, on a pooled connection       | stops (the pool replaces it); queued ops fail not sent |
//! | a better endpoint answered (fail-back) | moves to it at once                        |
//! | reconnect: no endpoint connects    | fails what is queued (not sent), waits the next backoff delay, tries again |
//!
//! The task is spawned on a [`TaskTracker`] that every handle holds, with a stop token they
//! share: dropping the last handle cancels the token (a task waiting out a backoff does not
//! poll its queue), and `close` cancels it for every clone, then waits on the tracker, so
//! the task, and the socket's FIN, are owned by its handles, never left running unseen.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connect::Connected;
use super::core::Reconnect;
use super::error::{ClientError, ClientErrorKind, Delivery};
use super::session::SessionEnd;
use super::state::{ClientState, inc};
use super::ticket::{Handle, Op, shutdown};

/// Starts the task on `first` and returns its handle and the stream of unsolicited
/// frames (mux, duplex). A client that has no use for them drops the stream: they are then
/// counted and dropped.
pub(crate) fn spawn(state: Arc<ClientState>, first: Connected) -> (Handle, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel(channel_capacity(state.cfg.queue));
    let (utx, urx) = mpsc::channel(channel_capacity(state.cfg.unsolicited));
    let gone = CancellationToken::new();
    let alive = Arc::new(gone.clone().drop_guard());
    let stop = gone.clone();
    let task = Task {
        gone,
        state: Arc::clone(&state),
        rx,
        retry: VecDeque::new(),
        reconnect: Reconnect::new(state.cfg.reconnect_base, state.cfg.reconnect_max),
        unsolicited: utx,
    };
    state.set_current(Some(first.ep));
    // Tracked, so that `close` can wait for the task (and its FIN); closed at once: this
    // tracker holds this one task and nothing else.
    let tracker = TaskTracker::new();
    tracker.spawn(task.run(first));
    tracker.close();
    let handle = Handle {
        tx,
        state,
        _alive: alive,
        stop,
        tracker,
    };
    (handle, urx)
}

/// `n` as a bounded channel's capacity: at least 1, and at most what tokio's channels
/// hold ([`Semaphore::MAX_PERMITS`](tokio::sync::Semaphore::MAX_PERMITS), `usize::MAX >>
/// 3`); above it `mpsc::channel` panics, so `queue(usize::MAX)` means "as many as fit".
fn channel_capacity(n: usize) -> usize {
    n.clamp(1, tokio::sync::Semaphore::MAX_PERMITS)
}

/// The connection task's state across connections.
pub(crate) struct Task {
    pub(crate) state: Arc<ClientState>,
    pub(crate) rx: mpsc::Receiver<Op>,
    /// Ops that were not sent on a lost connection: first on the next one.
    pub(crate) retry: VecDeque<Op>,
    reconnect: Reconnect,
    /// Frames that answer no request; closed when nobody reads them.
    pub(crate) unsolicited: mpsc::Sender<Bytes>,
    /// Cancelled once every handle is gone, or by `close`: the task then takes no new op,
    /// lets what is in flight end, and stops instead of reconnecting.
    pub(crate) gone: CancellationToken,
}

/// `d` to whole milliseconds, for messages.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Task {
    async fn run(mut self, first: Connected) {
        let mut next = Some(first);
        let mut last_err = shutdown(Delivery::NotSent);
        loop {
            let c = match next.take() {
                Some(c) => c,
                None => match self.reconnect().await {
                    Some(c) => c,
                    None => break,
                },
            };
            inc(&self.state.counters.connects);
            self.state.set_current(Some(c.ep));
            let ep = c.ep;
            let started = Instant::now();
            let (end, delivered) = self.serve(c).await;
            let lived = started.elapsed();
            self.state.set_current(None);
            if delivered {
                self.state.proven(ep);
            }
            match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Lost { err, down } => {
                    if let Err(err) = self.after_loss(ep, err, down, delivered, lived).await {
                        last_err = err;
                        break;
                    }
                }
                SessionEnd::FailBack(c) => {
                    inc(&self.state.counters.disconnects);
                    tracing::info!(endpoint = %c.addr, "failing back to a recovered endpoint");
                    next = Some(c);
                }
            }
        }
        self.state.set_current(None);
        self.fail_queued(&last_err);
    }

    /// Performs the core's decision after connection to `ep` was lost with `err` after
    /// `lived`: mark the endpoint down (`down` gives a reason already), then wait before
    /// reconnecting. `Err` (the error queued ops fail with) when this task does not
    /// reconnect.
    async fn after_loss(
        &mut self,
        ep: usize,
        err: ClientError,
        down: Option<String>,
        delivered: bool,
        lived: Duration,
    ) -> Result<(), ClientError> {
        inc(&self.state.counters.disconnects);
        tracing::info!(error = %err, "connection lost");
        let closed_or_reset = matches!(err.kind(), ClientErrorKind::Closed | ClientErrorKind::Io);
        let plan = self
            .reconnect
            .on_loss(delivered, lived, closed_or_reset, self.state.jitter());
        let down = down.or_else(|| {
            plan.mark_down.then(|| {
                format!(
                    "connection lost {} after connect with nothing delivered: {err}",
                    humantime::format_duration(round_ms(lived))
                )
            })
        });
        if let Some(reason) = down {
            self.state.mark_down(ep, &reason);
        }
        if !self.state.reconnects() {
            return Err(err.for_delivery(Delivery::NotSent));
        }
        // A connection that died young with nothing delivered proves nothing: wait before
        // the next connect, else a peer that accepts and closes at once is reconnected to
        // in a tight loop.
        // Every handle gone ends the wait: nobody is left to reconnect for.
        if let Some(delay) = plan.delay {
            tracing::debug!(
                delay = %humantime::format_duration(delay),
                "connection died young; backing off"
            );
            tokio::select! {
                () = tokio::time::sleep_until(crate::deadline::tokio_in(delay)) => {}
                () = self.gone.cancelled() => return Err(shutdown(Delivery::NotSent)),
            }
        }
        Ok(())
    }

    /// Fails every op waiting for a connection, with `err` as not sent.
    fn fail_queued(&mut self, err: &ClientError) {
        for op in self.retry.drain(..) {
            op.finish(Err(err.for_delivery(Delivery::NotSent)));
        }
        while let Ok(op) = self.rx.try_recv() {
            op.finish(Err(err.for_delivery(Delivery::NotSent)));
        }
    }

    /// Tries the endpoint plan until one connects, backing off between rounds. Ops that
    /// arrive while no endpoint answers fail at once as not sent. `None` once every handle
    /// is gone.
    async fn reconnect(&mut self) -> Option<Connected> {
        loop {
            // Closed (or every handle gone): nobody to reconnect for.
            if self.gone.is_cancelled() {
                return None;
            }
            if self.rx.is_closed() && self.retry.is_empty() && self.rx.is_empty() {
                return None;
            }
            let plan = tokio::select! {
                r = self.state.connect_plan() => r,
                // A plan of SYN-dropping endpoints takes each one's connect timeout.
                () = self.gone.cancelled() => return None,
            };
            match plan {
                // The backoff is not reset here: a connect proves little (see
                // `Backoff::after_loss`), the connection has to deliver first.
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "reconnect failed");
                    self.fail_queued(&e);
                    let delay = self.reconnect.on_connect_failed(self.state.jitter());
                    let until = crate::deadline::tokio_in(delay);
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep_until(until) => break,
                            () = self.gone.cancelled() => return None,
                            op = self.rx.recv() => match op {
                                None => return None,
                                Some(op) => op.finish(Err(e.for_delivery(Delivery::NotSent))),
                            },
                        }
                    }
                }
            }
        }
    }
}
