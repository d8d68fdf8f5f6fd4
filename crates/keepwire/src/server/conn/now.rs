//! A read batch handled without waiting, when nothing in it has to wait.
//!
//! Nearly every batch is a few whole frames whose handler answers at once and whose replies
//! the socket takes at once. [`Connection::process_now`] does that batch as plain function
//! calls: decode, inbound step, handler future polled once where it lives (the connection's
//! [`CallSlot`], allocated once, not per request), reply encoded, one `send`. No future is
//! built or boxed for the batch. Whatever must wait (a handler not ready, a socket that is
//! full, a close, an error whose replies are owed first, a short connection's end) is handed
//! back as a [`Slow`] step, which [`Connection::slow`] does the async way, boxed, and the
//! batch then goes on without waiting again. Both halves keep the order of frames and
//! replies: the slow step finishes the frame the fast one stopped at.

use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tower::Service;

use super::{ConnEnd, Connection, MAX_PENDING_WRITE, pool};
use crate::frame::FrameError;
use crate::pipeline::{self, Inbound};
use crate::server::answer::Close;
use crate::server::{Answer, BoxError, Mode, Request, ServerStats};

/// Where a connection's handler future lives while it runs: allocated at the first request
/// and reused for every later one (a future is written into it in place), so a request
/// allocates nothing for its handler call. Dropped when the connection goes idle if the
/// handler's future is large ([`keep_slot`]).
pub(super) type CallSlot<F> = Option<Pin<Box<Option<F>>>>;

/// Whether an idle connection keeps its [`CallSlot`]: a slot this small costs less idle
/// memory than its allocation per busy spell costs CPU.
pub(super) fn keep_slot<F>() -> bool {
    std::mem::size_of::<F>() <= 128
}

/// One read batch's facts, shared by its fast and slow steps.
#[derive(Debug)]
pub(super) struct Batch {
    /// When the batch's bytes arrived (one clock read per batch); moved on after a step
    /// that waited (a handler, a blocked write), so later writes count from then.
    pub(super) now: Instant,
    /// When the batch's bytes arrived: its frames count as read then (read idle, pongs),
    /// and the slow-frame clock of a partial frame starts here.
    pub(super) read_at: Instant,
    /// The read buffer was empty before this read.
    pub(super) fresh: bool,
    /// A frame was taken from the read buffer.
    pub(super) consumed: bool,
    /// Short mode: the one request was answered; the batch ends.
    pub(super) served: bool,
}

impl Batch {
    pub(super) fn new(fresh: bool) -> Self {
        let now = Instant::now();
        Batch {
            now,
            read_at: now,
            fresh,
            consumed: false,
            served: false,
        }
    }
}

/// What [`Connection::process_now`] got to.
pub(super) enum Now {
    /// The batch is done: replies written, the connection waits for more.
    Done,
    /// The connection ends, with nothing left to write or wait for.
    End(ConnEnd),
    /// This step must wait; after it the batch goes on (or ends, for [`Slow::EndBatch`]).
    Slow(Slow),
}

/// A step of a batch that may wait, done by [`Connection::slow`].
pub(super) enum Slow {
    /// Hand this data frame to the handler the async way (it was not ready, or replies
    /// are held back by `reply_delay`).
    Deliver(Bytes),
    /// The handler's future in the call slot is pending: replies so far are written, then
    /// its answer awaited and encoded.
    Call,
    /// The read buffer holds a frame that cannot be decoded.
    BadFrame(FrameError),
    /// The connection ends with this; replies already due are written first.
    Fail(ConnEnd),
    /// The write buffer is full enough to be written before more frames are handled.
    Flush,
    /// The answer closes the connection, after its replies.
    Close(Close),
    /// The end of the batch: the replies written, then a short connection's close, the
    /// peer's close, or the slow-frame clock.
    EndBatch,
}

/// What a write without waiting did.
enum Wrote {
    /// All of the write buffer went.
    All,
    /// The socket is full (or TLS): the rest waits for the async write.
    Blocked,
}

impl Connection {
    /// Decodes and handles every whole frame buffered, in order, and writes the replies,
    /// as far as that goes without waiting. `cx` is the connection task's: a handler or a
    /// service that is not ready registers it.
    pub(super) fn process_now<S>(
        &mut self,
        svc: &mut S,
        b: &mut Batch,
        slot: &mut CallSlot<S::Future>,
        cx: &mut Context<'_>,
    ) -> Now
    where
        S: Service<Request>,
        S::Response: Into<Answer>,
        S::Error: Into<BoxError>,
    {
        if b.served {
            return Now::Slow(Slow::EndBatch);
        }
        if self.wbuf.capacity() == 0 {
            self.wbuf = pool::take();
        }
        loop {
            let frame = match pipeline::decode(&mut self.codec, &mut self.rbuf, self.eof) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    // The codec may have reserved room for the rest of a frame.
                    self.note_rbuf_size();
                    // HTTP's `100 Continue`, owed before the body comes (frame/http.rs).
                    if let Some(interim) = self.codec.interim_reply() {
                        self.wbuf.extend_from_slice(interim);
                    }
                    break;
                }
                // Replies already due still go out before the close, then the framing's
                // own error response (HTTP: 400, 431 or 413), if it has one.
                Err(e) => return Now::Slow(Slow::BadFrame(e)),
            };
            self.counts.0 += 1;
            b.consumed = true;
            match self.step().inbound(frame, b.read_at, false) {
                Ok(Inbound::Data(frame)) => {
                    match self.deliver_now(svc, frame, slot, cx, b.now) {
                        Ok(Close::No) => {}
                        // The handler closes the connection: frames after this request
                        // are never handed to it.
                        Ok(close) => return Now::Slow(Slow::Close(close)),
                        Err(step) => return Now::Slow(step),
                    }
                    if self.shared.config.mode == Mode::Short {
                        b.served = true;
                        return Now::Slow(Slow::EndBatch);
                    }
                }
                Ok(Inbound::PongQueued { .. }) => {
                    self.beat_seen = true;
                    self.counts.1 += 1;
                    ServerStats::add(&self.shared.stats.pings_answered, 1);
                }
                Ok(Inbound::Pong | Inbound::Absorbed { .. }) => {
                    self.beat_seen = true;
                    continue;
                }
                Err(e) => return Now::Slow(Slow::Fail(ConnEnd::Frame(e))),
            }
            if self.wbuf.len() >= MAX_PENDING_WRITE {
                match self.write_now(b.now) {
                    Ok(Wrote::All) => {}
                    Ok(Wrote::Blocked) => return Now::Slow(Slow::Flush),
                    Err(e) => return Now::End(ConnEnd::Io(e)),
                }
            }
        }
        self.end_batch_now(b)
    }

    /// [`end_batch`](Self::end_batch) without waiting, when the replies go at once and the
    /// connection stays open.
    fn end_batch_now(&mut self, b: &Batch) -> Now {
        if !self.wbuf.is_empty() {
            match self.write_now(b.now) {
                Ok(Wrote::All) => {}
                Ok(Wrote::Blocked) => return Now::Slow(Slow::EndBatch),
                Err(e) => return Now::End(ConnEnd::Io(e)),
            }
        }
        if self.wbuf.capacity() > 0 {
            // Empty after the write; the pool frees it if it grew large.
            pool::give(&mut self.wbuf, true);
        }
        if self.eof {
            return Now::End(ConnEnd::PeerClosed);
        }
        // The slow-frame clock: a partial frame that began in this read starts it.
        self.live
            .on_read(b.read_at, !self.rbuf.is_empty(), b.consumed || b.fresh);
        Now::Done
    }

    /// Writes the write buffer as far as the socket takes it now. Over TLS, or when the
    /// socket is full, the rest is left to [`flush_at`](Self::flush_at) (it keeps the whole
    /// write within one timeout). A failed write drops the buffer, as `flush_at` does.
    fn write_now(&mut self, now: Instant) -> io::Result<Wrote> {
        if self.is_tls() {
            return Ok(Wrote::Blocked);
        }
        // Published before a write that may wait (see flush_at).
        self.publish_counts();
        // Counted, not `advance`d, until it blocks: advancing moves the buffer's start, so
        // its room would shrink with every reply and soon need a new allocation.
        let mut written = 0;
        while let Some(rest) = self.wbuf.get(written..).filter(|r| !r.is_empty()) {
            match self.stream.try_write(rest) {
                Ok(0) => {
                    self.wbuf = BytesMut::new();
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wbuf.advance(written);
                    // Advanced, the buffer's room no longer shows its allocation: a large
                    // one would go to the pool as small (`pool::give` sees only the room)
                    // and stay pinned there. The little that is left is copied instead.
                    let room = self.wbuf.capacity();
                    if room <= pool::MAX_CAPACITY
                        && room.saturating_add(written) > pool::MAX_CAPACITY
                    {
                        self.wbuf = BytesMut::from(&self.wbuf[..]);
                    }
                    return Ok(Wrote::Blocked);
                }
                Err(e) => {
                    self.wbuf = BytesMut::new();
                    return Err(e);
                }
            }
        }
        self.wbuf.clear();
        self.live.on_write(now);
        Ok(Wrote::All)
    }

    /// Calls the handler with a data frame and encodes its answer, if it answers at once
    /// (`now`: the batch's clock, the time of a write made here). `Err`: the step that
    /// must wait (or fail) instead.
    fn deliver_now<S>(
        &mut self,
        svc: &mut S,
        frame: Bytes,
        slot: &mut CallSlot<S::Future>,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Result<Close, Slow>
    where
        S: Service<Request>,
        S::Response: Into<Answer>,
        S::Error: Into<BoxError>,
    {
        if self.shared.config.reply_delay.is_some() {
            return Err(Slow::Deliver(frame));
        }
        // A handler that panics costs its connection (after the replies before it are
        // written), never the accounting of the server.
        match catch_unwind(AssertUnwindSafe(|| svc.poll_ready(cx))) {
            Ok(Poll::Ready(Ok(()))) => {}
            Ok(Poll::Pending) => return Err(Slow::Deliver(frame)),
            Ok(Poll::Ready(Err(e))) => return Err(Slow::Fail(ConnEnd::Handler(e.into()))),
            Err(_) => return Err(Slow::Fail(ConnEnd::Handler(panicked()))),
        }
        let req = self.request(frame);
        let Ok(fut) = catch_unwind(AssertUnwindSafe(|| svc.call(req))) else {
            return Err(Slow::Fail(ConnEnd::Handler(panicked())));
        };
        let slot = slot.get_or_insert_with(|| Box::pin(None));
        slot.as_mut().set(Some(fut));
        match poll_slot(slot, cx) {
            Poll::Pending => Err(Slow::Call),
            Poll::Ready(Err(e)) => Err(Slow::Fail(ConnEnd::Handler(e))),
            Poll::Ready(Ok(answer)) => {
                // One large frame, answered at once: written from its own bytes (only here,
                // where the batch's clock is the time of the write).
                if let [one] = answer.frames() {
                    if self.direct_ok(one) {
                        return self
                            .write_direct(one, now)
                            .map(|()| answer.close())
                            .map_err(Slow::Fail);
                    }
                }
                self.encode_answer(&answer).map_err(Slow::Fail)
            }
        }
    }

    /// Encodes an answer's frames into the write buffer and says how the connection closes
    /// after it; `Err` ends the connection.
    pub(super) fn encode_answer(&mut self, answer: &Answer) -> Result<Close, ConnEnd> {
        for reply in answer.frames() {
            self.encode_reply_now(reply)?;
        }
        Ok(answer.close())
    }

    /// Does a step that may wait; `Some` when the connection is done. The batch goes on
    /// after it, except after [`Slow::EndBatch`].
    pub(super) async fn slow<S>(
        &mut self,
        svc: &mut S,
        step: Slow,
        b: &mut Batch,
        slot: &mut CallSlot<S::Future>,
    ) -> Option<ConnEnd>
    where
        S: Service<Request>,
        S::Response: Into<Answer>,
        S::Error: Into<BoxError>,
    {
        let shared = std::sync::Arc::clone(&self.shared);
        let cfg = &shared.config;
        let end = match step {
            Slow::Deliver(frame) => match self.deliver(svc, frame, cfg).await {
                Ok(close) => self.answered(close, b, cfg).await,
                Err(end) => Some(end),
            },
            Slow::Call => self.finish_call(slot, b, cfg).await,
            Slow::BadFrame(e) => Some(self.fail_frame(e, cfg).await),
            Slow::Fail(end) => Some(self.fail(end, cfg).await),
            Slow::Flush => self.flush(cfg.write_timeout).await.err().map(ConnEnd::Io),
            Slow::Close(close) => self.answered(close, b, cfg).await,
            Slow::EndBatch => {
                let started = b.consumed || b.fresh;
                self.end_batch((b.now, b.read_at), b.served, started, cfg)
                    .await
            }
        };
        self.publish_counts();
        end
    }

    /// The handler's future in `slot` did not answer at once: the replies before it are
    /// written (a slow request does not hold back earlier ones), then its answer awaited.
    async fn finish_call<F, R, E>(
        &mut self,
        slot: &mut CallSlot<F>,
        b: &mut Batch,
        cfg: &crate::server::ServerConfig,
    ) -> Option<ConnEnd>
    where
        F: Future<Output = Result<R, E>>,
        R: Into<Answer>,
        E: Into<BoxError>,
    {
        self.publish_counts();
        if let Err(e) = self.flush(cfg.write_timeout).await {
            return Some(ConnEnd::Io(e));
        }
        let Some(slot) = slot.as_mut() else {
            return Some(ConnEnd::Handler("no handler call pending".into()));
        };
        let answer = match std::future::poll_fn(|cx| poll_slot(slot, cx)).await {
            Ok(answer) => answer,
            Err(e) => return Some(self.fail(ConnEnd::Handler(e), cfg).await),
        };
        match self.encode_answer(&answer) {
            Ok(close) => self.answered(close, b, cfg).await,
            Err(end) => Some(self.fail(end, cfg).await),
        }
    }

    /// After an answer: a close writes the replies and closes; in short mode the batch ends
    /// with the one request served.
    async fn answered(
        &mut self,
        close: Close,
        b: &mut Batch,
        cfg: &crate::server::ServerConfig,
    ) -> Option<ConnEnd> {
        if close != Close::No {
            if let Err(e) = self.flush_at(cfg.write_timeout, Some(b.now)).await {
                return Some(ConnEnd::Io(e));
            }
            return Some(self.close_answered(close, cfg).await);
        }
        if cfg.mode == Mode::Short {
            b.served = true;
        }
        None
    }

    /// The request the handler sees for `frame`.
    pub(super) fn request(&mut self, frame: Bytes) -> Request {
        Request {
            // The codec's summary of this frame's head (HTTP): decoded last, taken once.
            http_head: self.codec.take_http_head(),
            frame,
            peer: self.peer,
            local: self.local,
            conn_id: self.id,
            draining: self.shared.draining.started(),
            #[cfg(feature = "tls")]
            peer_cert: self.tls.as_ref().and_then(|t| t.peer_cert().cloned()),
        }
    }
}

/// Polls the handler future in `slot`, catching a panic; empties the slot when it is done.
fn poll_slot<F, R, E>(
    slot: &mut Pin<Box<Option<F>>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Answer, BoxError>>
where
    F: Future<Output = Result<R, E>>,
    R: Into<Answer>,
    E: Into<BoxError>,
{
    let Some(fut) = slot.as_mut().as_pin_mut() else {
        return Poll::Ready(Err("no handler call pending".into()));
    };
    let res = match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(Poll::Pending) => return Poll::Pending,
        Ok(Poll::Ready(r)) => r.map(Into::into).map_err(Into::into),
        Err(_) => Err(panicked()),
    };
    slot.as_mut().set(None);
    Poll::Ready(res)
}

fn panicked() -> BoxError {
    BoxError::from("handler panicked")
}
