//! One connection of the direct engine: its state, and what an event or a timer does to it.
//!
//! Readiness is edge-triggered (mio): an event says bytes came, and the next event comes
//! only with more. So the connection remembers what the last event said (`readable`,
//! `writable`) and forgets it only when the kernel says so: a read that returns
//! `WouldBlock`, or fewer bytes than asked for (the socket had no more; anything that comes
//! later raises a new edge), or a write that returns `WouldBlock`. Whatever stops a batch
//! early (a full socket, the read budget) leaves the hint set, and the worker comes back.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, recv, send};

use super::super::conn::{ConnEnd, DRAIN_LINGER, MAX_PENDING_WRITE, Shared};
use super::super::limits::{GlobalSlot, IpSlot};
use super::super::{Mode, ServerStats};
use crate::frame::FrameCodec;
use crate::liveness::Liveness;
use crate::pipeline::{self, Inbound, Step, Tick};

/// What every request is answered with.
#[derive(Debug, Clone)]
pub(super) enum Answerer {
    /// The request itself, framed again.
    Echo,
    /// These bytes: the reply already framed, copied as they are.
    Framed(Bytes),
}

/// A worker's buffers, lent to the connection it is serving.
#[derive(Debug)]
pub(super) struct Scratch {
    /// Every read lands here first (zeroed once, so `read` can take it as it is).
    pub(super) input: Vec<u8>,
    /// The replies of the batch being served; what the socket does not take moves to the
    /// connection's own write buffer.
    pub(super) out: BytesMut,
    /// A read buffer for the next connection that needs one: an idle connection holds
    /// none. One buffer in a field of the thread's own, not the default engine's
    /// thread-local pool (`server/pool.rs`): taking from and giving to that pool on every
    /// batch cost about 100 instructions a request (callgrind, long 64 B: 1 108 -> 1 207).
    pub(super) spare: BytesMut,
}

/// The most a read asks for.
pub(super) const READ_SIZE: usize = 64 * 1024;
/// Reads one event may do before the worker turns to other connections.
const READ_BUDGET: u32 = 4;
/// The largest read buffer kept as the thread's spare: a full read behind part of a frame.
/// One per thread, so a peer's large frames leave at most this much behind.
const MAX_SPARE: usize = 2 * READ_SIZE;

impl Scratch {
    pub(super) fn new() -> Self {
        Scratch {
            input: vec![0; READ_SIZE],
            out: BytesMut::with_capacity(MAX_PENDING_WRITE),
            spare: BytesMut::new(),
        }
    }
}

/// What the connection does once its replies are written.
#[derive(Debug, Clone, Copy)]
pub(super) enum Then {
    /// Close.
    Close,
    /// Wait for the peer's FIN (at most this long), dropping what it sends, then close: the
    /// peer, closing first, holds the TIME_WAIT.
    AwaitFin(Duration),
    /// Send our FIN, then drop what the peer sends until its FIN, for at most
    /// [`DRAIN_LINGER`] (closing with unread bytes would send a RST, which can destroy
    /// replies the peer has not read yet).
    FinFirst,
}

/// A connection that is ending: why, and what is left to do.
#[derive(Debug)]
pub(super) struct Ending {
    end: ConnEnd,
    then: Then,
    /// Set once the replies are written and the connection waits for the peer's FIN.
    linger_until: Option<Instant>,
}

/// Per-request settings, shared by a worker's connections.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ctx<'a> {
    pub(super) shared: &'a Shared,
    pub(super) answer: &'a Answerer,
}

/// One connection. An idle one holds no buffer.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) stream: mio::net::TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) id: u64,
    rbuf: BytesMut,
    wbuf: BytesMut,
    codec: FrameCodec,
    live: Liveness,
    /// When the write buffer first held bytes the socket would not take.
    blocked_since: Option<Instant>,
    /// `Some` once the connection is ending.
    ending: Option<Box<Ending>>,
    /// The deadline this connection is filed under in the worker's timers.
    pub(super) armed: Option<Instant>,
    /// Tells this connection from earlier ones in the same slab slot.
    pub(super) generation: u32,
    /// The last event said readable, and no read has said otherwise since.
    pub(super) readable: bool,
    /// The socket takes writes (no write has returned `WouldBlock` since the last event).
    pub(super) writable: bool,
    /// An event said the peer closed its side (or the socket failed): reads go on until
    /// one returns the end, whatever their size (the FIN may sit behind the last bytes,
    /// and its edge was spent with theirs).
    pub(super) read_closed: bool,
    /// The peer sent its FIN.
    eof: bool,
    /// Short mode: the one request was answered.
    served: bool,
    /// A full socket stopped the last batch with frames perhaps left in the read buffer.
    stalled: bool,
    /// The read buffer grew past [`MAX_SPARE`] (noted as it grows: its room shrinks as
    /// frames are split off).
    rbuf_large: bool,
    /// On the worker's list for another turn.
    pub(super) queued: bool,
    _ip: Option<IpSlot>,
    _global: GlobalSlot,
}

impl Conn {
    pub(super) fn new(
        stream: mio::net::TcpStream,
        peer: SocketAddr,
        shared: &Shared,
        generation: u32,
        now: Instant,
        ip: Option<IpSlot>,
        global: GlobalSlot,
    ) -> Self {
        Conn {
            stream,
            peer,
            id: shared
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            codec: FrameCodec::shared(std::sync::Arc::clone(&shared.framing)),
            live: Liveness::new(std::sync::Arc::clone(&shared.liveness), now),
            blocked_since: None,
            ending: None,
            armed: None,
            generation,
            readable: false,
            writable: true,
            read_closed: false,
            eof: false,
            served: false,
            stalled: false,
            rbuf_large: false,
            queued: false,
            _ip: ip,
            _global: global,
        }
    }

    /// Open, with nothing buffered either way: a drain may close it.
    pub(super) fn is_idle(&self) -> bool {
        self.ending.is_none() && self.rbuf.is_empty() && self.wbuf.is_empty()
    }

    /// Whether bytes wait in the kernel: a request may have come after the last read
    /// (which came back short, so no event has told of it yet). A failed peek says no: the
    /// next read reports the failure.
    pub(super) fn kernel_has_data(&self) -> bool {
        let mut one = [0u8; 1];
        matches!(
            recv(
                &self.stream,
                &mut one[..],
                RecvFlags::PEEK | RecvFlags::DONTWAIT
            ),
            Ok((1, _))
        )
    }

    /// Ends the connection after its replies (`then` says how).
    pub(super) fn begin_end(&mut self, end: ConnEnd, then: Then) {
        if self.ending.is_none() {
            self.ending = Some(Box::new(Ending {
                end,
                then,
                linger_until: None,
            }));
        }
    }

    /// Does what the socket allows: writes what is owed, reads and answers what came, or
    /// goes on with its end.
    pub(super) fn drive(&mut self, now: Instant, sc: &mut Scratch, cx: Ctx<'_>) -> Drive {
        let mut budget = READ_BUDGET;
        loop {
            if !self.wbuf.is_empty() {
                if !self.writable {
                    return Drive::Keep;
                }
                match self.flush(now) {
                    Ok(true) => {}
                    Ok(false) => return Drive::Keep,
                    Err(e) => return Drive::End(ConnEnd::Io(e)),
                }
            }
            if self.ending.is_some() {
                return self.go_on_ending(now, sc);
            }
            if std::mem::take(&mut self.stalled) {
                // Frames a full socket left in the buffer, before anything new is read.
                self.serve_batch(now, false, sc, cx);
                continue;
            }
            if !self.readable {
                return Drive::Keep;
            }
            if budget == 0 {
                return Drive::Again;
            }
            budget -= 1;
            let n = match self.read(sc) {
                Ok(n) => n,
                Err(e) => return Drive::End(ConnEnd::Io(e)),
            };
            if n == 0 && !self.eof {
                return Drive::Keep;
            }
            let fresh = self.rbuf.is_empty();
            if n > 0 {
                if self.rbuf.capacity() == 0 {
                    std::mem::swap(&mut self.rbuf, &mut sc.spare);
                }
                self.rbuf.extend_from_slice(&sc.input[..n]);
                self.rbuf_large |= self.rbuf.capacity() > MAX_SPARE;
            }
            self.serve_batch(now, fresh, sc, cx);
        }
    }

    /// One read into the worker's input buffer. `Ok(0)` with `eof` unset: nothing there.
    fn read(&mut self, sc: &mut Scratch) -> io::Result<usize> {
        loop {
            // rustix: the system call itself, without libc's cancellation-point wrapper.
            match recv(&self.stream, &mut sc.input[..], RecvFlags::empty()) {
                Ok((0, _)) => {
                    self.eof = true;
                    self.readable = false;
                    return Ok(0);
                }
                Ok((n, _)) => {
                    // Fewer bytes than asked for: the socket had no more, and whatever
                    // comes later raises a new edge; unless the peer's FIN came, whose
                    // edge came with these bytes: the next read returns it.
                    if n < sc.input.len() && !self.read_closed {
                        self.readable = false;
                    }
                    return Ok(n);
                }
                Err(Errno::AGAIN) => {
                    self.readable = false;
                    return Ok(0);
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Decodes and answers the whole frames buffered, in order, and writes the replies. A
    /// full socket stops it (`stalled`: the rest waits for the socket); a bad frame, the
    /// peer's FIN or a short connection's one request starts the connection's end, after
    /// the replies already due.
    fn serve_batch(&mut self, now: Instant, fresh: bool, sc: &mut Scratch, cx: Ctx<'_>) {
        let short = cx.shared.config.mode == Mode::Short;
        let (mut frames_in, mut frames_out) = (0u64, 0u64);
        let mut failed = None;
        loop {
            if sc.out.len() >= MAX_PENDING_WRITE {
                match self.send_out(now, &mut sc.out) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.stalled = true;
                        break;
                    }
                    Err(e) => {
                        failed = Some(ConnEnd::Io(e));
                        break;
                    }
                }
            }
            if short && self.served {
                // Short means one exchange: anything sent after the request is dropped.
                self.rbuf.clear();
                break;
            }
            let frame = match pipeline::decode(&mut self.codec, &mut self.rbuf, self.eof) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    failed = Some(ConnEnd::Frame(e));
                    break;
                }
            };
            frames_in += 1;
            match self.answer(frame, now, &mut sc.out, cx) {
                Ok(n) => frames_out += n,
                Err(end) => {
                    failed = Some(end);
                    break;
                }
            }
        }
        self.live
            .on_read(now, !self.rbuf.is_empty(), frames_in > 0 || fresh);
        // Counted before the replies leave: a client that has its reply sees it counted.
        let stats = &cx.shared.stats;
        if frames_in > 0 {
            ServerStats::add(&stats.frames_in, frames_in);
        }
        if frames_out > 0 {
            ServerStats::add(&stats.frames_out, frames_out);
        }
        if let Err(e) = self.send_out(now, &mut sc.out) {
            failed.get_or_insert(ConnEnd::Io(e));
        }
        self.give_back_rbuf(sc);
        let cfg = &cx.shared.config;
        if let Some(end) = failed {
            self.begin_end(end, Then::Close);
        } else if short && self.served {
            let then = if cfg.short_server_closes_first || self.eof {
                Then::Close
            } else {
                Then::AwaitFin(cfg.short_close_wait)
            };
            self.begin_end(ConnEnd::ShortDone, then);
        } else if self.eof && !self.stalled {
            self.begin_end(ConnEnd::PeerClosed, Then::Close);
        }
    }

    /// Runs one decoded frame through the heartbeat and liveness step and answers it: the
    /// frames it put in `out` (a reply, a pong, or none).
    fn answer(
        &mut self,
        frame: Bytes,
        now: Instant,
        out: &mut BytesMut,
        cx: Ctx<'_>,
    ) -> Result<u64, ConnEnd> {
        let mut step = Step {
            heartbeat: cx.shared.config.heartbeat.as_deref(),
            live: &mut self.live,
            codec: &self.codec,
            wbuf: out,
        };
        match step.inbound(frame, now, false) {
            Ok(Inbound::Data(frame)) => {
                match cx.answer {
                    Answerer::Echo => self.codec.encode_to(&frame, out).map_err(ConnEnd::Frame)?,
                    Answerer::Framed(b) => out.extend_from_slice(b),
                }
                self.served = true;
                Ok(1)
            }
            Ok(Inbound::PongQueued { .. }) => {
                ServerStats::add(&cx.shared.stats.pings_answered, 1);
                Ok(1)
            }
            Ok(Inbound::Pong | Inbound::Absorbed { .. }) => Ok(0),
            Err(e) => Err(ConnEnd::Frame(e)),
        }
    }

    /// An emptied read buffer goes back to the thread as its spare, or is freed if it grew
    /// large (its room shrinks as frames are split off, so the size is noted as it grows):
    /// an idle connection holds none.
    fn give_back_rbuf(&mut self, sc: &mut Scratch) {
        if !self.rbuf.is_empty() || self.rbuf.capacity() == 0 {
            return;
        }
        let buf = std::mem::take(&mut self.rbuf);
        if !std::mem::take(&mut self.rbuf_large) && sc.spare.capacity() == 0 {
            sc.spare = buf;
        }
    }

    /// Writes `out` (left empty), after what the connection already owes; what the socket
    /// does not take moves to the connection's write buffer. `Ok(true)`: all of it went.
    fn send_out(&mut self, now: Instant, out: &mut BytesMut) -> io::Result<bool> {
        if out.is_empty() {
            return Ok(true);
        }
        let mut done = 0;
        if self.wbuf.is_empty() && self.writable {
            let r = self.write_some(out, &mut done);
            if done > 0 {
                self.live.on_write(now);
            }
            if let Err(e) = r {
                out.clear();
                return Err(e);
            }
        }
        let all = done == out.len();
        if !all {
            self.wbuf.extend_from_slice(&out[done..]);
            self.blocked_since.get_or_insert(now);
        }
        out.clear();
        Ok(all)
    }

    /// Writes `buf[*done..]` until it is all written or the socket is full (`writable`
    /// cleared); `done` counts what went.
    fn write_some(&mut self, buf: &[u8], done: &mut usize) -> io::Result<()> {
        while *done < buf.len() {
            // MSG_NOSIGNAL: a peer that reset gets an error, not the process a SIGPIPE.
            match send(&self.stream, &buf[*done..], SendFlags::NOSIGNAL) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => *done += n,
                Err(Errno::AGAIN) => {
                    self.writable = false;
                    return Ok(());
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Writes what the connection owes. `Ok(true)`: all of it (the buffer is freed).
    fn flush(&mut self, now: Instant) -> io::Result<bool> {
        let buf = std::mem::take(&mut self.wbuf);
        let mut done = 0;
        let r = self.write_some(&buf, &mut done);
        if done > 0 {
            self.live.on_write(now);
        }
        r?;
        if done == buf.len() {
            self.blocked_since = None;
            // Filed under the write deadline while blocked: the idle deadlines count again
            // and may be earlier, so the worker files the connection anew.
            self.armed = None;
            return Ok(true);
        }
        let mut buf = buf;
        bytes::Buf::advance(&mut buf, done);
        self.wbuf = buf;
        Ok(false)
    }

    /// The end, once the replies are written: a close, or a wait for the peer's FIN while
    /// what it sends is dropped.
    fn go_on_ending(&mut self, now: Instant, sc: &mut Scratch) -> Drive {
        let Some(e) = self.ending.as_mut() else {
            return Drive::Keep;
        };
        if e.linger_until.is_none() {
            let wait = match e.then {
                Then::Close => return self.end_now(),
                Then::AwaitFin(d) => d,
                Then::FinFirst => {
                    let _ =
                        socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
                    DRAIN_LINGER
                }
            };
            if self.eof {
                return self.end_now();
            }
            e.linger_until = Some(crate::deadline::after(now, wait));
            self.rbuf = BytesMut::new();
        }
        for _ in 0..READ_BUDGET {
            if !self.readable {
                return Drive::Keep;
            }
            match self.read(sc) {
                Ok(0) if self.eof => return self.end_now(),
                Ok(_) => {}
                Err(_) => return self.end_now(),
            }
        }
        if self.readable {
            Drive::Again
        } else {
            Drive::Keep
        }
    }

    fn end_now(&mut self) -> Drive {
        let end = self.ending.take().map_or(ConnEnd::PeerClosed, |e| e.end);
        Drive::End(end)
    }

    /// The timers found the connection due (or its old deadline, which may have moved):
    /// a write that waited too long, a linger that ran out, pings or a liveness close.
    pub(super) fn on_timer(&mut self, now: Instant, sc: &mut Scratch, cx: Ctx<'_>) -> Drive {
        let cfg = &cx.shared.config;
        if let Some(t) = self.blocked_since {
            if t.checked_add(cfg.write_timeout).is_some_and(|d| d <= now) {
                return Drive::End(ConnEnd::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer did not read its replies within the write timeout",
                )));
            }
        }
        if let Some(e) = &self.ending {
            if e.linger_until.is_some_and(|u| u <= now) {
                return self.end_now();
            }
            return Drive::Keep;
        }
        // While replies wait for a peer that reads slowly, only the write timeout counts
        // (as in the default engine): an idle close would cut a reply in the middle.
        if self.blocked_since.is_some() {
            return Drive::Keep;
        }
        let mut step = Step {
            heartbeat: cfg.heartbeat.as_deref(),
            live: &mut self.live,
            codec: &self.codec,
            wbuf: &mut sc.out,
        };
        match step.timer(now) {
            Ok(Tick::Pings(0)) => Drive::Keep,
            Ok(Tick::Pings(n)) => {
                let stats = &cx.shared.stats;
                ServerStats::add(&stats.pings_sent, u64::from(n));
                ServerStats::add(&stats.frames_out, u64::from(n));
                match self.send_out(now, &mut sc.out) {
                    Ok(_) => Drive::Keep,
                    Err(e) => Drive::End(ConnEnd::Io(e)),
                }
            }
            Ok(Tick::Close(reason)) => Drive::End(ConnEnd::Liveness(reason)),
            Err(e) => Drive::End(ConnEnd::Frame(e)),
        }
    }

    /// Whether this connection's deadline may now be earlier than the one it was filed
    /// under. Reads and writes only move the idle deadlines later; what can bring one
    /// forward is a partial frame (the slow-frame clock), a blocked write, an ending, or,
    /// with pings on, a pong that ends a ping's wait (the next ping may be due before that
    /// wait would have ended).
    pub(super) fn may_be_due_sooner(&self) -> bool {
        !self.rbuf.is_empty()
            || !self.wbuf.is_empty()
            || self.ending.is_some()
            || self.live.config().ping.is_some()
    }

    /// When the timers should look at this connection next.
    pub(super) fn deadline(&self, write_timeout: Duration) -> Option<Instant> {
        let write = self
            .blocked_since
            .and_then(|t| t.checked_add(write_timeout));
        let other = match &self.ending {
            Some(e) => e.linger_until,
            // Blocked on a write: liveness waits (see `on_timer`).
            None if self.blocked_since.is_some() => None,
            None => self.live.next_deadline(),
        };
        match (write, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What [`Conn::drive`] left the connection as.
#[derive(Debug)]
pub(super) enum Drive {
    /// Waiting for the socket (or the timers).
    Keep,
    /// Readable still, its read budget spent: drive it again after the others.
    Again,
    /// Closed now, for this reason.
    End(ConnEnd),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection is its slab entry and nothing else (no buffer, no task, no
    /// timer object): the figure docs/performance.md gives, bounded so that a change
    /// that grows it is seen.
    #[test]
    fn an_idle_connection_is_small() {
        // The slab's entry adds at most a word (its vacant/occupied tag).
        let size = std::mem::size_of::<Conn>();
        eprintln!("direct engine: an idle connection is {size} bytes (plus its slab tag)");
        assert!(size <= 400, "{size} bytes");
    }
}
