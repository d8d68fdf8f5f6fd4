//! One connection of the [task](super::task): thin glue around the sans-IO
//! [core](super::core) and the shared [pipeline](crate::pipeline).
//!
//! Each turn of the loop:
//! 1. decodes the whole frames buffered and runs each through the pipeline's inbound step
//!    (heartbeats to liveness, pongs queued, data to [`Session::on_reply`]); writes the
//!    pongs; ends on end of stream, on shutdown, or to move to a recovered better endpoint;
//! 2. writes the ops not sent on the previous connection first;
//! 3. waits for the socket, the op queue, the core's next deadline, a fail-back probe or a
//!    [`close`](super::ticket::Handle::close) (which closes the op queue), whichever comes
//!    first, and performs what it brings (with no room in flight, one op
//!    is taken and held first in line, so that the queue's closing is still seen).
//!
//! Writing, and reading while a write waits, is in [`write`](super::write).

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::connect::Connected;
use super::core::{FailBack, Reply, Session};
use super::error::{ClientError, ClientErrorKind, Delivery};
use super::state::{ClientState, inc};
use super::task::Task;
use super::ticket::{Caller, Op, reply_timeout, shutdown};
use crate::frame::FrameCodec;
use crate::liveness::CloseReason;
use crate::pipeline::{Inbound, Step, Tick, client_liveness, decode};

/// Why a connection ended.
pub(crate) enum SessionEnd {
    /// Every handle is gone.
    Shutdown,
    /// Lost; mark the endpoint down when `down` says why.
    Lost {
        err: ClientError,
        down: Option<String>,
    },
    /// Moving to a better endpoint that answered again.
    FailBack(Connected),
}

impl SessionEnd {
    fn lost(err: ClientError) -> Self {
        SessionEnd::Lost { err, down: None }
    }
}

/// A fail-back probe in progress: the endpoint, and its connect (and probe heartbeat).
type FailBackProbe =
    std::pin::Pin<Box<dyn std::future::Future<Output = (usize, Result<Connected, String>)> + Send>>;

/// One connection: its socket and buffers, the core's state for it, and a fail-back probe
/// running beside it.
pub(crate) struct ClientConnection {
    pub(crate) c: Connected,
    pub(crate) codec: FrameCodec,
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
    pub(crate) eof: bool,
    pub(crate) core: Session<Caller>,
    fail_back: FailBack<Connected>,
    /// Polled in the wait below: a preferred endpoint that drops SYNs takes the whole
    /// connect timeout to fail, and this connection keeps serving meanwhile. Dropped (and
    /// its socket closed) when this connection ends.
    probe: Option<FailBackProbe>,
}

impl ClientConnection {
    fn new(state: &ClientState, mut c: Connected) -> Self {
        let cfg = &state.cfg;
        let live = client_liveness(cfg.ping, cfg.heartbeat.as_deref(), Instant::now());
        ClientConnection {
            codec: FrameCodec::new(cfg.framing.clone()),
            rbuf: std::mem::take(&mut c.leftover),
            wbuf: BytesMut::new(),
            eof: false,
            core: Session::new(&state.matching, state.max_in_flight(), live),
            fail_back: FailBack::new(cfg.fail_back, c.ep, cfg.down_base),
            probe: None,
            c,
        }
    }

    pub(crate) fn endpoint(&self) -> Option<String> {
        Some(self.c.addr.clone())
    }

    fn fail_all(&mut self, err: &ClientError) {
        for w in self.core.drain() {
            let _ = w
                .done
                .reply
                .send(Err(err.for_delivery(Delivery::SentNoReply)));
        }
    }

    /// The pipeline step over this connection's parts.
    fn step<'a>(&'a mut self, state: &'a ClientState) -> Step<'a> {
        Step {
            heartbeat: state.cfg.heartbeat.as_deref(),
            live: &mut self.core.live,
            codec: &self.codec,
            wbuf: &mut self.wbuf,
        }
    }
}

/// What woke the wait of one turn.
enum Event {
    Read(io::Result<usize>),
    Op(Option<Op>),
    Timer,
    Probe(usize, Result<Connected, String>),
    /// [`close`](super::ticket::Handle::close) was called: take no new op.
    Closing,
}

/// Waits for the socket, the op queue (when `accepting`), `deadline`, the fail-back
/// probe or `stop` (while the queue is open). Not `biased`: tokio picks among ready branches at random, so a server flooding
/// frames cannot starve queued requests, reply deadlines and liveness timers.
async fn next_event(
    rx: &mut mpsc::Receiver<Op>,
    stop: &CancellationToken,
    conn: &mut ClientConnection,
    deadline: Option<Instant>,
    accepting: bool,
) -> Event {
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    let probing = conn.probe.is_some();
    let probe = async {
        match conn.probe.as_mut() {
            Some(p) => p.await,
            None => std::future::pending().await,
        }
    };
    conn.rbuf.reserve(4096);
    let open = !rx.is_closed();
    tokio::select! {
        r = conn.c.read(&mut conn.rbuf) => Event::Read(r),
        op = rx.recv(), if accepting => Event::Op(op),
        () = sleep => Event::Timer,
        (ep, r) = probe, if probing => Event::Probe(ep, r),
        () = stop.cancelled(), if open => Event::Closing,
    }
}

impl Task {
    /// Serves one connection until it ends; also says whether a frame came on it that
    /// answered us.
    pub(crate) async fn serve(&mut self, c: Connected) -> (SessionEnd, bool) {
        let mut conn = ClientConnection::new(&self.state, c);
        let end = self.serve_conn(&mut conn).await;
        match &end {
            SessionEnd::Lost { err, .. } => conn.fail_all(err),
            SessionEnd::Shutdown | SessionEnd::FailBack(_) => {
                conn.fail_all(&shutdown(Delivery::SentNoReply));
                super::login::log_out(&self.state.cfg, &mut conn.c, &mut conn.rbuf).await;
                conn.c.close_notify();
                let timeout = self.state.cfg.write_timeout;
                let _ = tokio::time::timeout(timeout, conn.c.stream.shutdown()).await;
            }
        }
        (end, conn.core.delivered())
    }

    async fn serve_conn(&mut self, conn: &mut ClientConnection) -> SessionEnd {
        let mut rx_closed = false;
        loop {
            // 1. Whole frames buffered; pongs they call for are written at once.
            if let Some(end) = self.settle(conn, rx_closed).await {
                return end;
            }
            // 2. Ops that were not sent on the previous connection go first.
            if !self.retry.is_empty() && conn.core.room() > 0 {
                let n = conn.core.room().min(self.retry.len());
                let ops: Vec<Op> = self.retry.drain(..n).collect();
                if let Err(end) = self.write_ops(conn, ops).await {
                    return end;
                }
                continue;
            }
            // 3. Wait for the socket, an op, a deadline, the probe or a close.
            let now = Instant::now();
            let in_flight = conn.core.in_flight();
            let fail_back_at = conn.fail_back.due_at(now, in_flight, &self.state.eps());
            let deadline = conn.core.next_deadline(fail_back_at);
            // With no room, one op is still taken (and held first in line): else the
            // task could not see every handle go while its requests wait, and would keep
            // the connection until their deadlines for callers that gave up.
            let accepting = !rx_closed && (conn.core.room() > 0 || self.retry.is_empty());
            let event = next_event(&mut self.rx, &self.gone, conn, deadline, accepting).await;
            if let Err(end) = self.perform(conn, event, &mut rx_closed).await {
                return end;
            }
        }
    }

    /// Step 3 of a turn: performs what woke the wait.
    async fn perform(
        &mut self,
        conn: &mut ClientConnection,
        event: Event,
        rx_closed: &mut bool,
    ) -> Result<(), SessionEnd> {
        match event {
            Event::Read(Ok(0)) => {
                conn.eof = true;
                Ok(())
            }
            Event::Read(Ok(_)) => Ok(()),
            Event::Read(Err(e)) => Err(SessionEnd::lost(read_failed(conn, e))),
            Event::Op(None) => {
                *rx_closed = true;
                Ok(())
            }
            Event::Op(Some(op)) if conn.core.room() == 0 => {
                self.retry.push_back(op);
                Ok(())
            }
            Event::Op(Some(op)) => self.write_batch(conn, op).await,
            Event::Timer => self.on_timer(conn).await,
            Event::Probe(ep, r) => {
                self.on_probe(conn, ep, r);
                Ok(())
            }
            // Closed: the ops already queued are still taken (then `Op(None)`), what
            // is in flight ends, and `Session::may_close` ends the connection.
            Event::Closing => {
                self.rx.close();
                Ok(())
            }
        }
    }

    /// Step 1 of a turn: frames buffered, pongs written; whether the connection ends here.
    async fn settle(&mut self, conn: &mut ClientConnection, rx_closed: bool) -> Option<SessionEnd> {
        if let Err(err) = self.process_frames(conn) {
            return Some(SessionEnd::lost(err));
        }
        if !conn.wbuf.is_empty() {
            if let Err(end) = self.flush_control(conn).await {
                return Some(end);
            }
        }
        if conn.eof {
            let err = ClientError::new(
                ClientErrorKind::Closed,
                Delivery::SentNoReply,
                "peer closed the connection",
            )
            .with_endpoint(conn.endpoint());
            return Some(SessionEnd::lost(err));
        }
        let in_flight = conn.core.in_flight();
        if rx_closed {
            // Ops whose callers gave up are never written (their tickets are cancelled).
            self.retry.retain(|op| !op.done.is_closed());
        }
        let late_unread = self.unsolicited.is_closed();
        let queue_closed = rx_closed && self.retry.is_empty();
        if conn
            .core
            .may_close(queue_closed, late_unread, |c| c.reply.is_closed())
        {
            return Some(SessionEnd::Shutdown);
        }
        // Fail back only when nothing is in flight: the requests on this connection get
        // their replies first.
        let mut to = conn.fail_back.take_move(in_flight, self.retry.len())?;
        // Held while requests were in flight, the recovered connection may have been closed
        // meanwhile (an idle timeout, a restart): moving to it would read only its close,
        // count a loss and mark the healthy endpoint down. Dropped like a failed probe.
        if let Err(why) = still_open(&mut to) {
            tracing::debug!(endpoint = %to.addr, "fail-back connection {why} while held");
            conn.fail_back.on_probe(Instant::now(), None);
            return None;
        }
        Some(SessionEnd::FailBack(to))
    }

    /// An op arrived: it and whatever else is queued, up to the room left (64 at most),
    /// are written as one batch.
    async fn write_batch(&mut self, conn: &mut ClientConnection, op: Op) -> Result<(), SessionEnd> {
        let mut ops = vec![op];
        let room = conn.core.room();
        while ops.len() < room.min(64) {
            match self.rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        self.write_ops(conn, ops).await
    }

    /// The core's deadline came: liveness (pings, or giving up on the peer), reply
    /// deadlines, and the fail-back probe.
    async fn on_timer(&mut self, conn: &mut ClientConnection) -> Result<(), SessionEnd> {
        let now = Instant::now();
        let state = Arc::clone(&self.state);
        match conn.step(&state).timer(now) {
            Err(e) => {
                let err = ClientError::frame(Delivery::SentNoReply, conn.endpoint(), e);
                return Err(SessionEnd::lost(err));
            }
            Ok(Tick::Close(reason)) => return Err(liveness_closed(conn, reason)),
            Ok(Tick::Pings(0)) => {}
            Ok(Tick::Pings(n)) => {
                self.flush_control(conn).await?;
                for _ in 0..n {
                    inc(&state.counters.pings_sent);
                }
            }
        }
        if let Some(w) = conn.core.fifo_overdue(now) {
            // Later replies could no longer be matched by order.
            let err = reply_timeout(&state, &w.done.ticket, conn.endpoint(), w.timeout);
            return Err(SessionEnd::lost(err));
        }
        self.expire_keyed(conn, now);
        // Probe a better endpoint to fail back to, when idle; the probe runs beside this
        // connection (the wait takes its outcome).
        let in_flight = conn.core.in_flight();
        let cand = conn.fail_back.start_probe(now, in_flight, &state.eps());
        if let Some(ep) = cand {
            let addr = state.eps().addr(ep).map(str::to_owned).unwrap_or_default();
            let prober = Arc::clone(&state);
            conn.probe = Some(Box::pin(async move {
                let r = prober.connect_one(ep, &addr).await;
                (ep, r)
            }));
        }
        Ok(())
    }

    /// The fail-back probe of `ep` ended.
    fn on_probe(&mut self, conn: &mut ClientConnection, ep: usize, r: Result<Connected, String>) {
        conn.probe = None;
        match r {
            Ok(c) => {
                self.state.eps().mark_connected(ep);
                conn.fail_back.on_probe(Instant::now(), Some(c));
            }
            Err(reason) => {
                self.state.mark_down(ep, &reason);
                conn.fail_back.on_probe(Instant::now(), None);
            }
        }
    }

    /// Fails the keyed requests whose deadline has passed; the core tombstones their keys.
    pub(crate) fn expire_keyed(&self, conn: &mut ClientConnection, now: Instant) {
        for w in conn.core.expire_keyed(now) {
            let err = reply_timeout(&self.state, &w.done.ticket, conn.endpoint(), w.timeout);
            let _ = w.done.reply.send(Err(err));
        }
    }

    /// Decodes every whole frame buffered and runs it through the pipeline's inbound step:
    /// heartbeats through liveness (a pong to send is appended to `wbuf`, for the caller to
    /// flush), everything else dispatched. Run by the main loop and while a write waits.
    pub(crate) fn process_frames(
        &mut self,
        conn: &mut ClientConnection,
    ) -> Result<(), ClientError> {
        let state = Arc::clone(&self.state);
        let now = Instant::now();
        let frame_err = |conn: &ClientConnection, e| {
            ClientError::frame(Delivery::SentNoReply, conn.endpoint(), e)
        };
        loop {
            let frame = match decode(&mut conn.codec, &mut conn.rbuf, conn.eof) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(frame_err(conn, e)),
            };
            let awaiting = conn.core.in_flight() > 0;
            let step = match conn.step(&state).inbound(frame, now, awaiting) {
                Ok(s) => s,
                Err(e) => return Err(frame_err(conn, e)),
            };
            // R3: while a reply is awaited, a same-bytes heartbeat that is not our pong may
            // be a peer replying with the heartbeat frame; the storm guard answers such
            // frames at most once a second, and the waiting requests learn of them.
            if step.came_instead_of_reply() {
                conn.core
                    .waiters()
                    .for_each(|w| w.done.ticket.mark_heartbeats_instead());
            }
            match step {
                Inbound::Data(frame) => self.dispatch(conn, frame, now),
                // Only an answer to us proves the peer's service: our pong here, a matched
                // reply in `dispatch`. An unsolicited frame does not ("busy" and close).
                Inbound::Pong => {
                    conn.core.on_answered();
                    inc(&state.counters.pongs_received);
                }
                // Counted as before the pipeline: every heartbeat swallowed unanswered.
                Inbound::Absorbed { .. } => inc(&state.counters.pongs_received),
                Inbound::PongQueued { .. } => inc(&state.counters.pings_answered),
            }
        }
    }

    /// Routes an application frame to its request, or to the unsolicited stream.
    fn dispatch(&mut self, conn: &mut ClientConnection, frame: Bytes, now: Instant) {
        let (late, frame) = match conn.core.on_reply(&self.state.matching, &frame, now) {
            Reply::Waiter(w) => match w.done.reply.send(Ok(frame)) {
                Ok(()) | Err(Err(_)) => return,
                // The caller gave up after the request was written: on a mux link its
                // reply is late and goes to the unsolicited stream (an ordered link drops
                // it).
                Err(Ok(frame)) if conn.core.abandoned_reply_is_late() => (true, frame),
                Err(Ok(_)) => return,
            },
            Reply::Unmatched { late } => (late, frame),
        };
        // The partner's own request (SMPP deliver_sm): the session's answer goes out with
        // the next write, as pongs do.
        if let Some(hook) = self.state.cfg.session.as_deref() {
            if let Some(answer) = hook.answer(&frame) {
                if let Err(e) = conn.codec.encode_to(&answer, &mut conn.wbuf) {
                    tracing::debug!("session answer not encodable: {e}");
                }
            }
        }
        let counters = &self.state.counters;
        if late {
            inc(&counters.late_replies);
        }
        inc(&counters.unsolicited);
        if self.unsolicited.try_send(frame).is_err() {
            inc(&counters.unsolicited_dropped);
            tracing::debug!("unsolicited frame dropped: no reader or reader too slow");
        }
    }
}

/// Whether an idle connection is still open, without waiting: a read that finds the
/// close (or an error) says no; bytes it finds are kept for the session.
fn still_open(c: &mut Connected) -> Result<(), &'static str> {
    c.leftover.reserve(4096);
    let mut buf = std::mem::take(&mut c.leftover);
    let read = c.try_read(&mut buf);
    c.leftover = buf;
    match read {
        Ok(0) => Err("closed"),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(_) => Err("failed"),
    }
}

/// Liveness gave up on the peer.
fn liveness_closed(conn: &ClientConnection, reason: CloseReason) -> SessionEnd {
    let (kind, why) = match reason {
        CloseReason::HeartbeatTimeout => (
            ClientErrorKind::Dead,
            "peer stopped answering heartbeats".to_string(),
        ),
        other => (
            ClientErrorKind::Timeout,
            format!("liveness: {}", other.as_str()),
        ),
    };
    let err =
        ClientError::new(kind, Delivery::SentNoReply, why.clone()).with_endpoint(conn.endpoint());
    let down = (reason == CloseReason::HeartbeatTimeout).then_some(why);
    SessionEnd::Lost { err, down }
}

/// A read from the socket failed.
pub(crate) fn read_failed(conn: &ClientConnection, e: io::Error) -> ClientError {
    ClientError::io(Delivery::SentNoReply, conn.endpoint(), "read failed", e)
}
