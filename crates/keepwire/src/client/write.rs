//! Writing on a long connection: a batch of ops encoded into `wbuf`, written with the
//! pipeline's write step ([`WriteAll`]: one deadline for the whole write, the write
//! timeout from its first wait), reading and dispatching while the socket is full.
//!
//! Which op may be written, and what a failed write means for each op (not sent: queued
//! for the next connection; may have been sent: fails), are the [core](super::core)'s
//! decisions ([`Session::admit`](super::core::Session::admit),
//! [`not_sent`]); the tickets settle the race with callers who give up
//! ([`ticket`](super::ticket)).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::Interest;

use super::Key;
use super::core::{Admission, Refusal, Waiter, not_sent};
use super::error::{ClientError, ClientErrorKind, Delivery};
use super::session::{ClientConnection, SessionEnd, read_failed};
use super::task::Task;
use super::ticket::{Caller, Op, ReplyTx, Ticket};
use crate::pipeline::WriteAll;

/// Heartbeats (pongs) queued behind a batch that waits for the socket, after which reading
/// pauses until the batch is written: bounds `wbuf` against a peer that pings without
/// reading. 64 KiB, the server's `MAX_PENDING_WRITE`.
const MAX_PENDING_CONTROL: usize = 64 * 1024;

/// An op of a batch being written: where its bytes start in `wbuf`, and what it takes to
/// queue it again if none of them left.
struct Written {
    start: usize,
    frame: Bytes,
    reply: bool,
    key: Option<Key>,
    ticket: Arc<Ticket>,
    deadline: Instant,
    timeout: Duration,
    /// A one-way op's sender; a request's is registered in the core.
    done: Option<ReplyTx>,
}

/// The refusal of an op the core would not admit (never written).
fn refusal_error(r: Refusal, timeout: Duration) -> ClientError {
    let (kind, detail) = match r {
        Refusal::Late => (
            ClientErrorKind::Timeout,
            format!("not written within {}", humantime::format_duration(timeout)),
        ),
        Refusal::NoKey => (
            ClientErrorKind::Key,
            "request frame has no correlation key".to_string(),
        ),
        Refusal::KeyInFlight(k) => (
            ClientErrorKind::Key,
            format!("correlation key {:02x?} already in flight", &k.0[..]),
        ),
        Refusal::KeyTombstoned(k, left) => {
            // Whole seconds, rounded up: "after 0s" would invite a retry refused again.
            let secs = left
                .as_secs()
                .saturating_add(u64::from(left.subsec_nanos() > 0));
            (
                ClientErrorKind::Key,
                format!(
                    "correlation key {:02x?} awaits the late reply to an earlier request with \
                     it that timed out: retry once that reply arrives, or after {} at most",
                    &k.0[..],
                    humantime::format_duration(std::time::Duration::from_secs(secs))
                ),
            )
        }
    };
    ClientError::new(kind, Delivery::NotSent, detail)
}

fn write_failed(conn: &ClientConnection, e: io::Error) -> ClientError {
    ClientError::io(Delivery::SentNoReply, conn.endpoint(), "write failed", e)
}

impl Task {
    /// Writes the heartbeats queued in `wbuf`.
    pub(crate) async fn flush_control(
        &mut self,
        conn: &mut ClientConnection,
    ) -> Result<(), SessionEnd> {
        let (_, res) = self.flush(conn).await;
        conn.wbuf.clear();
        res.map_err(|err| SessionEnd::Lost { err, down: None })
    }

    /// Writes all of `wbuf` with the pipeline's write step, and returns how many bytes left
    /// with the outcome.
    ///
    /// While the socket is full it keeps reading and dispatching whole frames (replies,
    /// pongs, unsolicited frames): a peer that writes its replies before reading more
    /// requests (as keepwire's server does) otherwise fills both socket buffers, and both
    /// sides wait on writes until a write timeout. Memory stays bounded: replies go to their
    /// requests (at most `max_in_flight`, already registered) or to the bounded unsolicited
    /// stream, so `rbuf` holds at most one partial frame; pongs the frames call for are
    /// appended to `wbuf`, and reading pauses while more than [`MAX_PENDING_CONTROL`] of
    /// them wait behind the batch.
    async fn flush(&mut self, conn: &mut ClientConnection) -> (usize, Result<(), ClientError>) {
        let (wire, res) = self.flush_wire(conn).await;
        // With TLS, what left is ciphertext: see `link::sealed_written`.
        let plain = super::link::sealed_written(&mut conn.c.tls, conn.wbuf.len(), wire);
        (plain, res)
    }

    /// [`flush`](Self::flush) on the wire: with TLS, `wbuf` is sealed as it grows and the
    /// count returned is of ciphertext bytes.
    async fn flush_wire(
        &mut self,
        conn: &mut ClientConnection,
    ) -> (usize, Result<(), ClientError>) {
        let mut w = WriteAll::new(self.state.cfg.write_timeout);
        let mut sealed = 0;
        let control_cap = conn.wbuf.len().saturating_add(MAX_PENDING_CONTROL);
        loop {
            let before = w.written();
            let done = match super::link::seal(&mut conn.c.tls, &conn.wbuf, &mut sealed) {
                Ok(wire) => w.try_write(&conn.c.stream, wire),
                Err(e) => Err(crate::pipeline::WriteError::Io(e)),
            };
            if w.written() > before {
                conn.core.live.on_write(Instant::now());
            }
            match done {
                Ok(true) => return (w.written(), Ok(())),
                Ok(false) => {}
                Err(e) => return (w.written(), Err(write_failed(conn, e.into_io()))),
            }
            let read = !conn.eof && conn.wbuf.len() <= control_cap;
            let interest = if read {
                Interest::WRITABLE | Interest::READABLE
            } else {
                Interest::WRITABLE
            };
            let ready = match w.ready(&conn.c.stream, interest).await {
                Ok(r) => r,
                Err(e) => return (w.written(), Err(write_failed(conn, e.into_io()))),
            };
            if read && (ready.is_readable() || ready.is_read_closed()) {
                if let Err(err) = self.read_while_writing(conn) {
                    return (w.written(), Err(err));
                }
            }
        }
    }

    /// One read while a write waits, and the frames it completes.
    fn read_while_writing(&mut self, conn: &mut ClientConnection) -> Result<(), ClientError> {
        conn.rbuf.reserve(4096);
        match conn.c.try_read(&mut conn.rbuf) {
            // End of stream: stop reading; the main loop reports it once the write is done
            // (or fails).
            Ok(0) => {
                conn.eof = true;
                Ok(())
            }
            Ok(_) => self.process_frames(conn),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(read_failed(conn, e)),
        }
    }

    /// Encodes and writes a batch of ops. Requests are registered as in flight before the
    /// write, since their replies may be read while it waits. On a write error, ops none of
    /// whose bytes left go back to the retry queue (not sent); the others fail as maybe sent.
    pub(crate) async fn write_ops(
        &mut self,
        conn: &mut ClientConnection,
        ops: Vec<Op>,
    ) -> Result<(), SessionEnd> {
        let now = Instant::now();
        // A caller whose timeout fired may retry with the same key before the timer has
        // run: expire first, so the retry meets the tombstone, not "in flight".
        self.expire_keyed(conn, now);
        let batch: Vec<Written> = ops
            .into_iter()
            .filter_map(|op| self.encode_op(conn, op, now))
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let (written, res) = self.flush(conn).await;
        conn.wbuf.clear();
        match res {
            Ok(()) => {
                for w in batch {
                    if let Some(done) = w.done {
                        let _ = done.send(Ok(Bytes::new()));
                    }
                }
                Ok(())
            }
            Err(err) => Err(self.requeue_unsent(conn, batch, written, err)),
        }
    }

    /// Admits `op` (the core's rules), takes its ticket, encodes it into `wbuf` and
    /// registers a request in flight. `None` when it was refused (and finished) instead.
    fn encode_op(&mut self, conn: &mut ClientConnection, op: Op, now: Instant) -> Option<Written> {
        let admission = Admission {
            frame: &op.frame,
            reply: op.reply,
            key: op.key.clone(),
            deadline: op.deadline,
        };
        let key = match conn.core.admit(&self.state.matching, admission, now) {
            Ok(k) => k,
            // Too late: the caller is giving up. Whoever cancels first decides.
            Err(Refusal::Late) if op.ticket.cancel() != Delivery::NotSent => return None,
            Err(r) => {
                let timeout = op.timeout;
                op.finish(Err(refusal_error(r, timeout)));
                return None;
            }
        };
        if !op.ticket.begin_write() {
            // The caller gave up first and was told "not sent": never write it.
            return None;
        }
        let start = conn.wbuf.len();
        if let Err(e) = conn.codec.encode_to(&op.frame, &mut conn.wbuf) {
            op.ticket.unwrite();
            op.finish(Err(ClientError::frame(
                Delivery::NotSent,
                conn.endpoint(),
                e,
            )));
            return None;
        }
        let Op {
            frame,
            reply,
            ticket,
            done,
            deadline,
            timeout,
            ..
        } = op;
        let done = if reply {
            let caller = Caller {
                reply: done,
                ticket: Arc::clone(&ticket),
            };
            let w = Waiter {
                done: caller,
                deadline,
                timeout,
            };
            conn.core.register(key.clone(), w);
            None
        } else {
            Some(done)
        };
        Some(Written {
            start,
            frame,
            reply,
            key,
            ticket,
            deadline,
            timeout,
            done,
        })
    }

    /// A batch write failed after `written` bytes: ops none of whose bytes left go back to
    /// the retry queue, in order; a one-way op that started fails as maybe sent, and a
    /// request that started stays registered and fails with the connection.
    fn requeue_unsent(
        &mut self,
        conn: &mut ClientConnection,
        batch: Vec<Written>,
        written: usize,
        err: ClientError,
    ) -> SessionEnd {
        // Newest first: the unwritten ops are the batch's tail, and the newest entries of
        // the ordered table.
        let mut unsent = Vec::new();
        for w in batch.into_iter().rev() {
            if !not_sent(w.start, written) {
                if let Some(done) = w.done {
                    let _ = done.send(Err(err.for_delivery(Delivery::SentNoReply)));
                }
                continue;
            }
            // Not a byte of it left: safe to send on the next connection.
            let done = match w.done {
                Some(done) => Some(done),
                None => conn.core.unregister(w.key.as_ref()).map(|f| f.done.reply),
            };
            if let Some(done) = done {
                w.ticket.unwrite();
                unsent.push(Op {
                    frame: w.frame,
                    reply: w.reply,
                    key: w.key,
                    ticket: w.ticket,
                    done,
                    deadline: w.deadline,
                    timeout: w.timeout,
                });
            }
        }
        self.retry.extend(unsent.into_iter().rev());
        SessionEnd::Lost { err, down: None }
    }
}
