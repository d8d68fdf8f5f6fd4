//! One server connection: read, decode, liveness, handler, encode, write.
//!
//! ```text
//! serve: socket options, PROXY header, per-IP slot
//!   └─ serve_frames: wait for readable | liveness timer | shutdown
//!        ├─ readable ─▶ try_read ─▶ process_now (no future; conn/now.rs)
//!        │                 every whole frame: pipeline::decode ─▶ Step::inbound
//!        │                   Data ─▶ deliver_now (handler polled once, reply encoded)
//!        │                   PongQueued / Pong / Absorbed: heartbeats, never delivered
//!        │                 end_batch_now: one write of all replies
//!        │               a step that must wait ─▶ slow (boxed), then process_now again
//!        ├─ timer ─▶ Step::timer: pings queued, or the liveness close
//!        └─ shutdown ─▶ drain: answer what already arrived, then FIN and linger
//! ```
//!
//! The decode → heartbeat → liveness → pong step and the write step are the
//! [`pipeline`] the clients share; what is the server's own is the handler
//! call, the short/long rules, draining and the accounting.
//!
//! The read buffer exists only while bytes are buffered: when a read leaves no partial frame
//! the buffer goes back to the thread's pool ([`pool`]), so an idle connection holds no
//! buffer at all (a `Framed` would hold 8 KiB each way) and a busy one allocates none.
//! Replies to every frame of one read are written together.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::answer::Close;
use super::draining::{DrainWait, Draining};
use super::limits::{GlobalSlot, Limits, LogLimiter};
use super::pool;
use super::proxy_protocol::{self, Parsed};
use super::{Answer, BoxError, Mode, Request, ServerConfig, ServerStats};
use crate::frame::{FrameCodec, FrameError};
use crate::liveness::{CloseReason, Liveness};
use crate::pipeline::{self, Step, Tick, WriteError};

pub(super) mod clock;
mod now;

use clock::Clock;
use now::{Batch, CallSlot, Now};

/// Bytes asked of the kernel by the first read into an empty buffer. Small on purpose: the
/// buffer is allocated when bytes arrive and freed when the connection goes idle, and an
/// allocation this size stays in the allocator's per-thread cache (glibc's tcache ends at
/// 1032 bytes), so request/response traffic costs no trip into the allocator proper. A read
/// that fills the buffer doubles the next one, up to `MAX_READ_SIZE`.
const READ_SIZE: usize = 1000;
/// The most a single read asks for.
const MAX_READ_SIZE: usize = 64 * 1024;
/// How long a drained connection waits for the peer's FIN after sending its own.
pub(super) const DRAIN_LINGER: Duration = Duration::from_secs(1);
/// Replies buffered before they are written even if more frames wait.
pub(super) const MAX_PENDING_WRITE: usize = 64 * 1024;

/// State shared by the accept loop and every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    /// `config.liveness`, shared by every connection's state machine.
    pub(super) liveness: Arc<crate::liveness::LivenessConfig>,
    /// `config.framing`, shared by every connection's codec.
    pub(super) framing: Arc<crate::frame::FramingSpec>,
    pub(crate) stats: Arc<ServerStats>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) shutdown: CancellationToken,
    /// Set when the accept loop has seen `shutdown`: what connections wait on.
    pub(crate) draining: Draining,
    pub(crate) reject_log: LogLimiter,
    pub(crate) accept_log: LogLimiter,
    pub(super) next_id: AtomicU64,
    /// Whether accepted sockets come with `config.socket` already set (inherited from the
    /// listener): [`UNKNOWN`] until the first connection tells.
    socket_inherited: AtomicU8,
}

/// [`Shared::socket_inherited`] before the first connection.
const UNKNOWN: u8 = 0;
/// Accepted sockets have the options: none are set per connection.
const INHERITED: u8 = 1;
/// They do not (another OS, or the listener refused one): set per connection.
const NOT_INHERITED: u8 = 2;

impl Shared {
    pub(crate) fn new(config: ServerConfig) -> Arc<Self> {
        Arc::new(Shared {
            limits: Limits::new(config.max_conns, config.max_conns_per_ip),
            liveness: Arc::new(config.liveness),
            framing: Arc::new(config.framing.clone()),
            config,
            stats: Arc::new(ServerStats::default()),
            shutdown: CancellationToken::new(),
            draining: Draining::default(),
            reject_log: LogLimiter::new(Duration::from_secs(1)),
            accept_log: LogLimiter::new(Duration::from_secs(1)),
            next_id: AtomicU64::new(1),
            socket_inherited: AtomicU8::new(UNKNOWN),
        })
    }

    /// Records whether accepted sockets inherit the listener's options (`false` when they
    /// could not be set on it).
    pub(crate) fn socket_options_inherited(&self, yes: bool) {
        let v = if yes { INHERITED } else { NOT_INHERITED };
        self.socket_inherited.store(v, Ordering::Relaxed);
    }

    /// A connection refused because `max_conns` are open: counted, logged (at most once a
    /// second) and reset.
    pub(crate) fn refuse_max_conns<S: std::os::fd::AsFd>(
        &self,
        stream: S,
        peer: SocketAddr,
        now: Instant,
    ) {
        ServerStats::add(&self.stats.rejected_max_conns, 1);
        reject(stream);
        if let Some(held) = self.reject_log.check(now) {
            tracing::warn!(%peer, max_conns = self.config.max_conns, held_back = held, "connection rejected: max_conns reached");
        }
    }

    /// A connection refused because its IP has `max_conns_per_ip` open: counted, logged (at
    /// most once a second) and set to reset when it is closed.
    pub(crate) fn refused_per_ip<S: std::os::fd::AsFd>(
        &self,
        stream: &S,
        peer: SocketAddr,
        now: Instant,
    ) {
        ServerStats::add(&self.stats.rejected_per_ip, 1);
        let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
        if let Some(held) = self.reject_log.check(now) {
            tracing::warn!(%peer, max_conns_per_ip = ?self.config.max_conns_per_ip, held_back = held, "connection rejected: per-IP limit reached");
        }
    }

    /// Gives `stream` the configured socket options, unless it inherited them: the first
    /// connection reads them back, and what it finds holds for the rest.
    pub(super) fn apply_socket_options<F: std::os::fd::AsFd>(&self, stream: &F) -> io::Result<()> {
        let opts = &self.config.socket;
        match self.socket_inherited.load(Ordering::Relaxed) {
            INHERITED => Ok(()),
            UNKNOWN => {
                let yes = opts.is_applied_to(stream).unwrap_or(false);
                self.socket_options_inherited(yes);
                if yes { Ok(()) } else { opts.apply(stream) }
            }
            _ => opts.apply(stream),
        }
    }
}

/// Closes a connection we will not serve with a RST, so refusing a flood costs no TIME_WAIT
/// socket on our side.
pub(crate) fn reject<S: std::os::fd::AsFd>(stream: S) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Why a connection ended, for the counters and the log.
#[derive(Debug)]
pub(super) enum ConnEnd {
    /// The peer closed its side (between frames).
    PeerClosed,
    /// The liveness state machine gave up on the peer.
    Liveness(CloseReason),
    /// A bad frame, or a reply or heartbeat that cannot be framed.
    Frame(FrameError),
    /// The handler failed, panicked, or replied with a heartbeat frame.
    Handler(BoxError),
    /// The socket failed, or the peer did not read our replies in time.
    Io(io::Error),
    /// Short mode: the one exchange is done.
    ShortDone,
    /// The handler's answer closed the connection ([`Answer::then_close`]).
    HandlerClosed,
    /// Closed by the shutdown drain.
    Drained,
    /// Refused: per-IP limit, untrusted or bad PROXY header.
    Rejected,
}

impl ConnEnd {
    /// Adds this end to the server's counters.
    pub(super) fn count(&self, stats: &ServerStats) {
        let counter = match self {
            ConnEnd::Liveness(CloseReason::HeartbeatTimeout) => &stats.heartbeat_timeouts,
            ConnEnd::Liveness(CloseReason::FrameTimeout) => &stats.frame_timeouts,
            ConnEnd::Liveness(_) => &stats.idle_closed,
            ConnEnd::Frame(e) if e.is_too_long() => &stats.errors_too_long,
            ConnEnd::Frame(e) if e.is_truncated() => &stats.errors_truncated,
            ConnEnd::Frame(e) if e.is_io() => &stats.errors_io,
            ConnEnd::Frame(e) if e.is_unencodable() => &stats.errors_handler,
            ConnEnd::Frame(_) => &stats.errors_malformed,
            ConnEnd::Handler(_) => &stats.errors_handler,
            ConnEnd::Io(_) => &stats.errors_io,
            ConnEnd::PeerClosed
            | ConnEnd::ShortDone
            | ConnEnd::HandlerClosed
            | ConnEnd::Drained
            | ConnEnd::Rejected => {
                return;
            }
        };
        ServerStats::add(counter, 1);
    }

    /// Logs this end of connection `id` with `peer`, at a level that fits it.
    pub(super) fn log(self, id: u64, peer: SocketAddr) {
        match self {
            ConnEnd::Frame(e) => {
                tracing::info!(conn = id, peer = %peer, error = %e, "closing connection: bad frame")
            }
            ConnEnd::Handler(e) => {
                tracing::warn!(conn = id, peer = %peer, error = %e, "closing connection: handler failed")
            }
            ConnEnd::Io(e) => {
                tracing::debug!(conn = id, peer = %peer, error = %e, "connection error")
            }
            ConnEnd::Liveness(r) => {
                tracing::info!(conn = id, peer = %peer, reason = r.as_str(), "closing connection")
            }
            other => tracing::trace!(conn = id, peer = %peer, end = ?other, "connection closed"),
        }
    }
}

/// Builds a connection's state, on the heap: the task then holds a pointer, not a copy
/// (async fn arguments keep their full size in the task for its whole life).
pub(crate) fn new_conn(
    stream: TcpStream,
    peer: SocketAddr,
    listen: SocketAddr,
    shared: &Arc<Shared>,
) -> Box<Connection> {
    let now = Instant::now();
    Box::new(Connection {
        // A listener on a specific address needs no getsockname per connection.
        local: if listen.ip().is_unspecified() {
            stream.local_addr().unwrap_or(listen)
        } else {
            listen
        },
        stream,
        peer,
        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        shared: Arc::clone(shared),
        rbuf: BytesMut::new(),
        rbuf_large: false,
        beat_seen: false,
        wbuf: BytesMut::new(),
        codec: FrameCodec::shared(Arc::clone(&shared.framing)),
        live: Liveness::new(Arc::clone(&shared.liveness), now),
        eof: false,
        #[cfg(feature = "tls")]
        tls: None,
        counts: (0, 0),
    })
}

/// Serves `conn` with `svc` until it ends, then releases its `slot` and accounts for the
/// end. The task body the accept loop spawns.
///
/// An async block, not an `async fn`: an async fn keeps each argument twice in its state
/// (as passed, and as the body's binding), and this state is every connection's for its
/// whole life. The service is lent to `serve` for the same reason.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice in its state"
)]
pub(crate) fn run<S>(
    mut conn: Box<Connection>,
    mut svc: S,
    slot: GlobalSlot,
) -> impl Future<Output = ()> + Send + 'static
where
    S: Service<Request> + Send + 'static,
    S::Response: Into<Answer>,
    S::Error: Into<BoxError> + Send,
    S::Future: Send,
{
    async move {
        let end = conn.serve(&mut svc).await;
        // TLS: every close we make ends with our close_notify, so the peer can tell it from
        // a truncation (RFC 8446 §6.1).
        conn.close_notify();
        // (A task aborted at the end of the shutdown grace never gets here: the accept loop
        // counts those as closed and force-closed; the slot is released when the task
        // drops.)
        drop(slot);
        let stats = &conn.shared.stats;
        ServerStats::add(&stats.closed, 1);
        end.count(stats);
        end.log(conn.id, conn.peer);
    }
}

/// One `sendmsg(2)` of `bufs` that does not wait, with `MSG_NOSIGNAL` as every other write
/// of the server (through `send`): a plain `writev` to a peer that reset raises SIGPIPE,
/// which kills a process that has not ignored it (`server_attack7.rs`). `WouldBlock` clears
/// tokio's write readiness, as its own writes do.
fn send_vectored(stream: &TcpStream, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendFlags, sendmsg};
    stream.try_io(tokio::io::Interest::WRITABLE, || {
        loop {
            let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
            match sendmsg(stream, bufs, &mut SendAncillaryBuffer::default(), flags) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    })
}

/// Replies at least this large are written from their own bytes when nothing is queued
/// before them ([`Connection::write_direct`]). Measured (scripts/compare-servers.sh, echo,
/// long connections, medians of 5 to 7 runs): at 4 KiB the copy it saves (about 0.3 µs of
/// user CPU a request, 440 instructions) is what the vectored write costs the kernel more
/// than a plain `send`; at 64 KiB it saves about 0.9 µs. The copy grows with the size, the
/// `writev`'s extra does not.
const DIRECT_MIN: usize = 8 * 1024;

/// One server connection's state. Boxed (see [`new_conn`]): an idle connection's task is
/// this pointer and the wait for readiness, nothing more.
pub(crate) struct Connection {
    stream: TcpStream,
    /// The client: the socket's peer, or the address its PROXY header names.
    peer: SocketAddr,
    local: SocketAddr,
    /// For logs and [`Request::conn_id`].
    id: u64,
    shared: Arc<Shared>,
    /// Bytes read and not yet decoded; no allocation while empty between reads.
    rbuf: BytesMut,
    /// `rbuf` grew past what the buffer pool keeps since it was taken.
    rbuf_large: bool,
    /// A heartbeat frame went through the state machine since the last wait: a pong taken
    /// can bring the next ping's deadline before the armed timer.
    beat_seen: bool,
    /// Replies, pongs and pings not yet written.
    wbuf: BytesMut,
    codec: FrameCodec,
    live: Liveness,
    /// The peer closed its side.
    eof: bool,
    /// TLS, when the server has it: rustls between the socket and the buffers (see
    /// `tls/layer.rs`). Boxed: a plain connection pays one pointer.
    #[cfg(feature = "tls")]
    tls: Option<Box<crate::tls::layer::TlsLayer>>,
    /// Frames in and out not yet added to the server's counters (added after every batch,
    /// so 32 bits are plenty).
    counts: (u32, u32),
}

impl Connection {
    /// Applies the socket options, reads the PROXY header when configured, takes the
    /// (real) peer's per-IP slot, then serves frames until the connection ends.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice in its state"
    )]
    fn serve<'a, S>(&'a mut self, svc: &'a mut S) -> impl Future<Output = ConnEnd> + 'a
    where
        S: Service<Request>,
        S::Response: Into<Answer>,
        S::Error: Into<BoxError>,
    {
        // An async block, not an `async fn` (see `run`): its arguments are not kept twice.
        async move {
            let shared = Arc::clone(&self.shared);
            let cfg = &shared.config;
            if let Err(e) = shared.apply_socket_options(&self.stream) {
                return ConnEnd::Io(e);
            }
            let _ip_slot = if cfg.proxy_protocol {
                let from = self.peer.ip();
                if !cfg.proxy_from.is_empty() && !cfg.proxy_from.iter().any(|n| n.contains(&from)) {
                    ServerStats::add(&shared.stats.rejected_proxy, 1);
                    let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
                    if let Some(held) = shared.reject_log.check(Instant::now()) {
                        tracing::warn!(peer = %self.peer, held_back = held, "connection rejected: not from a trusted PROXY source");
                    }
                    return ConnEnd::Rejected;
                }
                // Boxed: it runs once, and its timer must not weigh on every idle connection.
                match Box::pin(self.read_proxy_header()).await {
                    Ok(()) => {}
                    // Closed by the drain before its header came: not a rejection.
                    Err(ConnEnd::Drained) => return ConnEnd::Drained,
                    Err(end) => {
                        ServerStats::add(&shared.stats.rejected_proxy, 1);
                        return end;
                    }
                }
                match self.ip_slot() {
                    Some(s) => s,
                    None => return ConnEnd::Rejected,
                }
            } else {
                match self.ip_slot() {
                    Some(s) => s,
                    None => return ConnEnd::Rejected,
                }
            };
            // PROXY header first (above), then TLS.
            #[cfg(feature = "tls")]
            if let Some(tls) = &cfg.tls {
                // Boxed, like the PROXY read: it runs once.
                if let Err(end) = Box::pin(self.tls_accept(tls, cfg.handshake_timeout)).await {
                    return end;
                }
            }
            self.serve_frames(svc).await
        }
    }

    /// The TLS handshake, within `timeout`. Bytes read with the PROXY header are its
    /// first bytes; plaintext that came with its last flight is left in the read buffer.
    #[cfg(feature = "tls")]
    async fn tls_accept(
        &mut self,
        tls: &crate::tls::ServerTls,
        timeout: Duration,
    ) -> Result<(), ConnEnd> {
        let mut layer =
            Box::new(crate::tls::layer::TlsLayer::server(tls).map_err(|e| ConnEnd::Io(e.into()))?);
        let early = std::mem::take(&mut self.rbuf);
        // Draining: a connection still in its handshake has sent no request, so it closes
        // at once, as one waiting for its PROXY header does (not after the timeout).
        let shutdown = self.shared.shutdown.clone();
        let res = tokio::select! {
            r = layer.handshake(&self.stream, &early, &mut self.rbuf, timeout) => r,
            () = shutdown.cancelled() => return Err(ConnEnd::Drained),
        };
        if let Err(e) = res {
            tracing::info!(conn = self.id, peer = %self.peer, error = %e, "closing connection: tls handshake failed");
            return Err(ConnEnd::Io(e.into()));
        }
        self.eof = layer.peer_closed();
        self.tls = Some(layer);
        Ok(())
    }

    /// Whether the connection runs TLS.
    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return true;
        }
        false
    }

    /// TLS: part of a record read, the rest to come (a request begun, for the drain).
    fn tls_mid_record(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref() {
            return tls.mid_record();
        }
        false
    }

    /// TLS: our close_notify before the FIN, offered to the socket without waiting.
    fn close_notify(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            // Sent once: rustls queues nothing for a second call (`run` makes one after
            // every close, which the closes that linger have already made).
            let alert = tls.close_notify();
            if !alert.is_empty() {
                let _ = self.stream.try_write(alert);
            }
            tls.written();
        }
    }

    /// A per-IP slot for the (real) peer, or `None` after rejecting the connection.
    fn ip_slot(&mut self) -> Option<Option<super::limits::IpSlot>> {
        let shared = &self.shared;
        match shared.limits.try_ip(self.peer.ip()) {
            Some(slot) => Some(slot),
            None => {
                shared.refused_per_ip(&self.stream, self.peer, Instant::now());
                None
            }
        }
    }

    async fn read_proxy_header(&mut self) -> Result<(), ConnEnd> {
        let deadline = crate::deadline::tokio_in(self.shared.config.handshake_timeout);
        loop {
            match proxy_protocol::parse(&mut self.rbuf) {
                Parsed::Done(addr) => {
                    if let Some(addr) = addr {
                        self.peer = addr;
                    }
                    return Ok(());
                }
                Parsed::Invalid(msg) => {
                    tracing::info!(conn = self.id, peer = %self.peer, "closing connection: {msg}");
                    return Err(ConnEnd::Rejected);
                }
                Parsed::Incomplete => {}
            }
            // Draining: a connection still waiting for its header has sent no request; it
            // closes at once unless bytes already wait in the kernel (then they are read).
            let shutdown = self.shared.shutdown.clone();
            if shutdown.is_cancelled() && self.rbuf.is_empty() && !self.kernel_has_data() {
                return Err(ConnEnd::Drained);
            }
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, self.read_some()) => r,
                () = shutdown.cancelled(), if !shutdown.is_cancelled() => continue,
            };
            match read {
                Err(_) => {
                    tracing::info!(conn = self.id, peer = %self.peer, "closing connection: no PROXY header in time");
                    return Err(ConnEnd::Rejected);
                }
                Ok(Err(e)) => return Err(ConnEnd::Io(e)),
                Ok(Ok(0)) => return Err(ConnEnd::PeerClosed),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Waits for the socket to be readable and reads once. `Ok(0)` at end of stream.
    async fn read_some(&mut self) -> io::Result<usize> {
        loop {
            self.stream.readable().await?;
            match self.try_read() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    /// Reads once into the read buffer, growing it as needed; `Ok(0)` (and `eof` set) at end
    /// of stream. `WouldBlock` when tokio knows of no readiness (no syscall is made then)
    /// or the socket had nothing after all; a buffer taken for a read that got nothing goes
    /// back to the pool, so a connection that waits holds none.
    fn try_read(&mut self) -> io::Result<usize> {
        let res = self.try_read_inner();
        if res.is_err() && self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            pool::give(&mut self.rbuf, !self.rbuf_large);
            self.rbuf_large = false;
        }
        res
    }

    fn try_read_inner(&mut self) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            if self.rbuf.capacity() == 0 {
                self.rbuf = pool::take();
            }
            let got = tls.read(&self.stream, &mut self.rbuf);
            let mid = tls.mid_record();
            self.note_rbuf_size();
            if got.is_err() && self.rbuf.is_empty() {
                // Ciphertext without plaintext: a record arriving in pieces is a frame begun
                // (the slow-frame clock starts, as for a plain partial frame); a whole record
                // that held none (a control record) is not.
                self.live.on_read(Instant::now(), mid, false);
            }
            let got = got?;
            if got == 0 {
                self.eof = true;
            }
            return Ok(got);
        }
        let (stream, rbuf) = (&self.stream, &mut self.rbuf);
        let mut got = 0;
        // A short read means the socket was drained. Saying so to tokio saves the recv() that
        // would otherwise return EAGAIN on the next wait (one syscall per request). It must
        // happen inside the same `try_io` as the real read: tokio takes its readiness
        // snapshot (a tick) when `try_io` starts, before the recv, and clears readiness only
        // if no new event came in since. Readiness that arrives during or after the recv
        // bumps the tick and survives. (Clearing it in a second `try_io` after the recv, as
        // this code once did, erased events that arrived in between: with edge-triggered
        // epoll the data then sat unread until the idle timeout. Regression test:
        // `split_header_and_body_never_stall`.) The buffer is taken inside, only once tokio
        // reports the socket readable.
        let res = stream.try_io(tokio::io::Interest::READABLE, || {
            let asked = room_to_read(rbuf);
            got = stream.try_read_buf(&mut bytes::BufMut::limit(&mut *rbuf, MAX_READ_SIZE))?;
            if got > 0 && got < asked {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        self.note_rbuf_size();
        match res {
            Ok(()) => {}
            // The drained-socket signal above, after a real read of `got` bytes.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => {}
            Err(e) => return Err(e),
        }
        if got == 0 {
            self.eof = true;
        }
        Ok(got)
    }

    /// Marks the read buffer too large for the pool once it may have grown past
    /// [`pool::MAX_CAPACITY`]. Asked after every read and every decode that wants more bytes:
    /// the only places the buffer grows.
    fn note_rbuf_size(&mut self) {
        if self.rbuf.len().saturating_add(self.rbuf.capacity()) > pool::MAX_CAPACITY {
            self.rbuf_large = true;
        }
    }

    /// Reads, waits for deadlines and shutdown, and handles each read until the connection
    /// ends.
    ///
    /// A read batch is every whole frame buffered, in order, and the replies written: without
    /// waiting where it can ([`process_now`](Self::process_now)); a step that must wait runs
    /// boxed ([`slow`](Self::slow)), so its state (write waits, timers, a handler call)
    /// exists only while it runs. The batch is handled in this function's loop, not in an
    /// async fn of its own: that fn's state would be part of every idle connection's task.
    ///
    /// The drain is waited for by a [`DrainWait`], registered once and then polled as a flag
    /// (the shutdown token's own future would take two locks per wait). `seen` is the clock
    /// when the connection last did something (a batch, a timer step): what the liveness
    /// timer rounds its deadlines from, without reading the clock again.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice in its state"
    )]
    fn serve_frames<'a, S>(&'a mut self, svc: &'a mut S) -> impl Future<Output = ConnEnd> + 'a
    where
        S: Service<Request>,
        S::Response: Into<Answer>,
        S::Error: Into<BoxError>,
    {
        // An async block, not an `async fn` (see `run`): its arguments are not kept twice.
        async move {
            let shared = Arc::clone(&self.shared);
            let sleep = pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
            let mut clock = Clock::new(sleep);
            let mut drain_wait = shared.draining.wait();
            let mut draining = false;
            let mut fresh = true;
            let mut slot: CallSlot<S::Future> = None;
            let mut seen = self.live.last_in(); // (its creation: no clock read)
            loop {
                if !self.rbuf.is_empty() || self.eof || !self.wbuf.is_empty() {
                    // The read batch (see above): here, not in an async fn of its own.
                    let mut b = Batch::new(fresh);
                    loop {
                        // The step goes into its boxed future in the match arm: no binding
                        // keeps its bytes in the task's state across the await.
                        let (last, slow) = match std::future::poll_fn(|cx| {
                            Poll::Ready(self.batch_step(svc, &mut b, &mut slot, cx))
                        })
                        .await
                        {
                            Now::Done => break,
                            Now::End(end) => return end,
                            Now::Slow(step) => (
                                matches!(step, now::Slow::EndBatch),
                                Box::pin(self.slow(svc, step, &mut b, &mut slot)),
                            ),
                        };
                        if let Some(end) = slow.await {
                            return end;
                        }
                        if last {
                            break;
                        }
                        // The step waited (a handler, a blocked write): what the rest of
                        // the batch writes or reads happened after it, not at the batch's
                        // start (a reply written late must not start the write-idle clock
                        // early).
                        b.now = Instant::now();
                    }
                    seen = b.now;
                }
                fresh = false;
                if self.drained_or_idle(draining, &mut slot) {
                    // Boxed: it runs once, and its linger timer would otherwise sit in every
                    // idle connection's task.
                    return Box::pin(self.close_drained()).await;
                }
                let was_empty = self.rbuf.is_empty();
                let woke = std::future::poll_fn(|cx| {
                    self.poll_wait(cx, draining, &mut drain_wait, &mut clock, seen)
                })
                .await;
                match woke {
                    Woke::Drain => draining = true,
                    Woke::Read(r) => {
                        fresh = was_empty;
                        if let Err(e) = r {
                            return ConnEnd::Io(e);
                        }
                    }
                    Woke::Timer => {
                        seen = Instant::now();
                        if let Some(end) = self.on_timer(seen) {
                            return end;
                        }
                        // Re-arm from the state machine's next deadline.
                        clock.disarm();
                    }
                }
            }
        }
    }

    /// Between a batch and the wait: `true` when the drain has started and nothing is left
    /// to answer (requests that already reached the socket are still answered: the loop
    /// reads them next; only when the kernel holds nothing does the connection end). An
    /// emptied connection gives its buffers back ([`go_idle`](Self::go_idle)).
    fn drained_or_idle<F>(&mut self, draining: bool, slot: &mut CallSlot<F>) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        if draining && !self.kernel_has_data() && !self.tls_mid_record() {
            return true;
        }
        self.go_idle(slot);
        false
    }

    /// One step of a read batch without waiting ([`process_now`](Self::process_now)), its
    /// frames counted on every path out, errors included.
    fn batch_step<S>(
        &mut self,
        svc: &mut S,
        b: &mut Batch,
        slot: &mut CallSlot<S::Future>,
        cx: &mut std::task::Context<'_>,
    ) -> Now
    where
        S: Service<Request>,
        S::Response: Into<Answer>,
        S::Error: Into<BoxError>,
    {
        let now = self.process_now(svc, b, slot, cx);
        self.publish_counts();
        now
    }

    /// The wait for bytes, a deadline or the drain's start: one poll function for the three,
    /// no future per wait.
    fn poll_wait(
        &mut self,
        cx: &mut std::task::Context<'_>,
        draining: bool,
        drain_wait: &mut DrainWait<'_>,
        clock: &mut Clock<'_>,
        seen: Instant,
    ) -> Poll<Woke> {
        if !draining && drain_wait.poll_started(cx).is_ready() {
            return Poll::Ready(Woke::Drain);
        }
        if let Poll::Ready(r) = self.poll_read(cx) {
            return Poll::Ready(Woke::Read(r));
        }
        // Armed only once the socket has nothing: a request already waiting when the
        // connection is accepted, or behind the last one, is served without touching tokio's
        // timer wheel (inserting the first timer into an empty wheel also wakes the runtime's
        // driver: a write to its eventfd and an extra event). The state machine's next
        // deadline is asked only when one can come before the armed timer (see `Clock::arm`).
        self.rearm(clock, seen);
        if clock.poll_fired(cx) {
            return Poll::Ready(Woke::Timer);
        }
        Poll::Pending
    }

    /// Points the clock at the next liveness deadline when one can come before the armed
    /// timer (see [`Clock::arm`]), and exactly at it after a heartbeat ([`Clock::set`]).
    /// `seen`: the clock when the connection last did something, what the deadline is
    /// rounded from.
    fn rearm(&mut self, clock: &mut Clock<'_>, seen: Instant) {
        let armed = clock.armed();
        if std::mem::take(&mut self.beat_seen) {
            clock.set(self.live.next_deadline(), seen);
        } else if armed.is_none() || !self.rbuf.is_empty() || self.tls_mid_record() {
            clock.arm(self.live.next_deadline(), seen);
        } else {
            // (The armed time may be up to the clock's slack later than the deadline.)
            debug_assert!(
                self.live
                    .next_deadline()
                    .is_none_or(|d| Some(d + clock::MAX_SLACK) >= armed),
                "a deadline came before the armed timer"
            );
        }
    }

    /// Reads what the socket has; `Pending` (the task registered for readiness) when it
    /// has nothing. `Ready(Ok)` after a read of bytes or of the peer's FIN.
    fn poll_read(&mut self, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        // Bounded: a readiness that keeps coming without bytes (a TLS record arriving in
        // pieces) yields to the other tasks now and then instead of spinning.
        for _ in 0..8 {
            match self.stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            match self.try_read() {
                Ok(_) => return Poll::Ready(Ok(())),
                // Stale readiness: tokio cleared it; poll again to register.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// An idle connection gives its buffers back, to this thread's pool, and its handler
    /// slot if that is large.
    fn go_idle<F>(&mut self, slot: &mut CallSlot<F>) {
        if self.rbuf.capacity() > 0 {
            pool::give(&mut self.rbuf, !self.rbuf_large);
            self.rbuf_large = false;
        }
        // (A timer step that took one and had nothing to write.)
        if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
            pool::give(&mut self.wbuf, true);
        }
        if !now::keep_slot::<F>() {
            *slot = None;
        }
    }

    /// Whether bytes wait in the socket's receive queue, asked of the kernel (tokio's
    /// readiness may lag behind it). An error or end of stream counts as no.
    fn kernel_has_data(&self) -> bool {
        let mut one = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        matches!(socket2::SockRef::from(&self.stream).peek(&mut one), Ok(n) if n > 0)
    }

    /// The end of a drained connection: we close first ([`close_first`](Self::close_first)).
    async fn close_drained(&mut self) -> ConnEnd {
        self.close_first().await;
        ConnEnd::Drained
    }

    /// We close first: our close_notify (TLS), a FIN, then what the peer still sends is
    /// read and dropped until it closes too, for at most [`DRAIN_LINGER`]. Closing a socket
    /// with unread bytes would send a RST instead, which can destroy replies the peer has not
    /// read yet.
    async fn close_first(&mut self) {
        self.close_notify();
        let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
        self.rbuf = BytesMut::new();
        let _ = self.discard_until_eof(DRAIN_LINGER).await;
    }

    /// The end of a connection whose handler answered with a close, the answer written.
    /// [`Close::Now`]: a FIN, and what the peer still sends is dropped until it closes too,
    /// for at most [`DRAIN_LINGER`] (as [`close_drained`](Self::close_drained), and for the
    /// same reason). [`Close::Asked`]: the same, unless nothing from the peer waits (it said
    /// it sends no more): then a plain close. [`Close::AfterPeer`]: what the peer sends is dropped until its FIN, for
    /// at most `short_close_wait`, so that the peer, closing first, holds the TIME_WAIT.
    async fn close_answered(&mut self, close: Close, cfg: &ServerConfig) -> ConnEnd {
        match close {
            Close::AfterPeer => {
                self.rbuf = BytesMut::new();
                if !self.eof {
                    let _ = self.discard_until_eof(cfg.short_close_wait).await;
                }
            }
            // Nothing from the peer waits (it asked for the close): a plain close sends a
            // FIN, not a reset, and the peer reads our answer. Asked of the kernel, not of
            // tokio's readiness: bytes that came while a handler held the thread are not in
            // the readiness yet (`server_attack6.rs`).
            Close::Asked if self.rbuf.is_empty() && (self.eof || !self.kernel_has_data()) => {
                self.close_notify()
            }
            Close::Asked | Close::Now | Close::No => self.close_first().await,
        }
        ConnEnd::HandlerClosed
    }

    /// Reads and drops what the peer sends until its FIN, for at most `wait`. `Ok` at the
    /// FIN or when `wait` runs out. Reads go into the (empty) read buffer, not a stack
    /// array: stack arrays here would be part of every connection task's size.
    async fn discard_until_eof(&mut self, wait: Duration) -> io::Result<()> {
        let deadline = crate::deadline::tokio_in(wait);
        self.rbuf.clear();
        loop {
            match tokio::time::timeout_at(deadline, self.stream.readable()).await {
                Err(_) => return Ok(()),
                Ok(r) => r?,
            }
            if self.rbuf.capacity() < 512 {
                self.rbuf.reserve(512);
            }
            match self.stream.try_read_buf(&mut self.rbuf) {
                Ok(0) => return Ok(()),
                Ok(_) => self.rbuf.clear(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The connection's state as the [`pipeline`] steps borrow it.
    fn step(&mut self) -> Step<'_> {
        Step {
            heartbeat: self.shared.config.heartbeat.as_deref(),
            live: &mut self.live,
            codec: &self.codec,
            wbuf: &mut self.wbuf,
        }
    }

    /// Runs the liveness clock at `now` (just read): pings to send go into the write buffer
    /// (the loop writes them next).
    fn on_timer(&mut self, now: Instant) -> Option<ConnEnd> {
        // An idle connection holds no write buffer: a ping written into an unallocated one
        // would allocate it (about 250 instructions, once per ping); the pool's costs less.
        // The loop gives it back once written, or at the next wait if the step wrote nothing
        // (`go_idle`); a step that ends the connection gives it back here, so reaping many
        // idle connections at once does not empty the pool.
        if self.wbuf.capacity() == 0 {
            self.wbuf = pool::take();
        }
        let end = match self.step().timer(now) {
            Ok(Tick::Pings(0)) => None,
            Ok(Tick::Pings(n)) => {
                let stats = &self.shared.stats;
                ServerStats::add(&stats.pings_sent, u64::from(n));
                ServerStats::add(&stats.frames_out, u64::from(n));
                None
            }
            Ok(Tick::Close(reason)) => Some(ConnEnd::Liveness(reason)),
            Err(e) => Some(ConnEnd::Frame(e)),
        };
        if end.is_some() && self.wbuf.is_empty() {
            pool::give(&mut self.wbuf, true);
        }
        end
    }

    /// Adds the frames counted since the last call to the server's counters. Batched: one
    /// atomic add per batch, not per frame.
    fn publish_counts(&mut self) {
        let (i, o) = std::mem::take(&mut self.counts);
        if i > 0 {
            ServerStats::add(&self.shared.stats.frames_in, u64::from(i));
        }
        if o > 0 {
            ServerStats::add(&self.shared.stats.frames_out, u64::from(o));
        }
    }

    /// The end of a batch read at `read_at`: the replies are written (recorded at `now`),
    /// the write buffer given back, and the slow-frame clock told about a partial frame
    /// (`started`: it began in this read). A short connection that `served` its request
    /// closes; so does one whose peer closed.
    async fn end_batch(
        &mut self,
        (now, read_at): (Instant, Instant),
        served: bool,
        started: bool,
        cfg: &ServerConfig,
    ) -> Option<ConnEnd> {
        if let Err(e) = self.flush_at(cfg.write_timeout, Some(now)).await {
            return Some(ConnEnd::Io(e));
        }
        if self.wbuf.capacity() > 0 {
            // Empty after the write; the pool frees it if it grew large.
            pool::give(&mut self.wbuf, true);
        }
        if served {
            return Some(self.short_close(cfg).await);
        }
        if self.eof {
            return Some(ConnEnd::PeerClosed);
        }
        // The slow-frame clock: a partial frame that began in this read starts it.
        self.live.on_read(read_at, !self.rbuf.is_empty(), started);
        None
    }

    /// Hands a data frame to the handler and encodes its answer's frames, if any, into the
    /// write buffer, and says whether the answer closes the connection. An `Err` is the
    /// connection's end, replies before it already written.
    async fn deliver<S>(
        &mut self,
        svc: &mut S,
        frame: Bytes,
        cfg: &ServerConfig,
    ) -> Result<Close, ConnEnd>
    where
        S: Service<Request>,
        S::Response: Into<Answer>,
        S::Error: Into<BoxError>,
    {
        let req = self.request(frame);
        let answer = match self.call(svc, req, cfg).await {
            Ok(a) => a,
            Err(end) => return Err(self.fail(end, cfg).await),
        };
        match self.encode_answer(&answer) {
            Ok(close) => Ok(close),
            Err(end) => Err(self.fail(end, cfg).await),
        }
    }

    /// Encodes one reply frame into the write buffer; `Err` ends the connection (after
    /// the replies before it are written).
    fn encode_reply_now(&mut self, reply: &Bytes) -> Result<(), ConnEnd> {
        self.check_reply(reply)?;
        if let Err(e) = self.codec.encode_to(reply, &mut self.wbuf) {
            tracing::warn!(conn = self.id, error = %e, "handler reply cannot be framed");
            return Err(ConnEnd::Frame(e));
        }
        self.counts.1 += 1;
        Ok(())
    }

    /// Whether `reply` goes out by [`write_direct`](Self::write_direct): it is large, nothing
    /// is queued before it (the write buffer is empty) and nothing read waits behind it (a
    /// request read with others gets its reply batched with theirs, one `send` for all), and
    /// the socket is written directly (not through TLS).
    fn direct_ok(&self, reply: &Bytes) -> bool {
        reply.len() >= DIRECT_MIN
            && self.wbuf.is_empty()
            && self.rbuf.is_empty()
            && !self.is_tls()
            && self.codec.sends_body_as_is()
    }

    /// Writes one reply at once, without copying its body: the framing's header from the
    /// write buffer and the body from the reply's own bytes, in one vectored write. What the
    /// socket does not take now is copied into the write buffer, after what was written, for
    /// the batch's write to finish. `Err` ends the connection.
    fn write_direct(&mut self, reply: &Bytes, now: Instant) -> Result<(), ConnEnd> {
        self.check_reply(reply)?;
        let body = match self.codec.encode_head(reply, &mut self.wbuf) {
            Ok(Some(body)) => body,
            // (Not chosen for such framings: `direct_ok`.)
            Ok(None) => return self.encode_reply_now(reply),
            Err(e) => {
                tracing::warn!(conn = self.id, error = %e, "handler reply cannot be framed");
                return Err(ConnEnd::Frame(e));
            }
        };
        self.counts.1 += 1;
        // Counted before a write the peer may see (as `write_now`).
        self.publish_counts();
        let head = self.wbuf.len();
        let bufs = [io::IoSlice::new(&self.wbuf), io::IoSlice::new(body)];
        match send_vectored(&self.stream, &bufs) {
            Ok(n) if n >= head + body.len() => {
                self.wbuf.clear();
                self.live.on_write(now);
            }
            Ok(0) => {
                self.wbuf = BytesMut::new();
                return Err(ConnEnd::Io(io::ErrorKind::WriteZero.into()));
            }
            Ok(n) => {
                bytes::Buf::advance(&mut self.wbuf, n.min(head));
                self.wbuf.extend_from_slice(&body[n.saturating_sub(head)..]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wbuf.extend_from_slice(body),
            Err(e) => {
                self.wbuf = BytesMut::new();
                return Err(ConnEnd::Io(e));
            }
        }
        Ok(())
    }

    /// A reply the client would take for a heartbeat is never sent as data (see
    /// docs/liveness.md, "Heartbeats and data never mix"): `Err` ends the connection.
    fn check_reply(&self, reply: &Bytes) -> Result<(), ConnEnd> {
        let cfg = &self.shared.config;
        let heartbeat = cfg.heartbeat.as_deref();
        if cfg.mode == Mode::Long && heartbeat.is_some_and(|h| h.classify(reply).is_some()) {
            tracing::warn!(
                conn = self.id,
                "handler reply is this link's heartbeat frame; closing the connection"
            );
            let why: BoxError = format!(
                "handler reply {:?} is this link's heartbeat frame: clients would take it for a ping or pong, not a reply",
                crate::text::escape(reply)
            )
            .into();
            return Err(ConnEnd::Handler(why));
        }
        Ok(())
    }

    /// The connection ends with `end`; replies already computed are written first (within
    /// the write timeout), so a bad frame or a failed handler call never costs the peer the
    /// answers to its earlier requests.
    async fn fail(&mut self, end: ConnEnd, cfg: &ServerConfig) -> ConnEnd {
        let _ = self.flush(cfg.write_timeout).await;
        end
    }

    /// A bad frame ends the connection: replies already due are written, then the framing's
    /// own error response if it has one (HTTP: 400, 431 or 413 with `Connection: close`),
    /// followed by a FIN and a linger for the peer's (as [`close_answered`](Self::close_answered):
    /// closing on unread bytes would send a RST that can destroy that response).
    async fn fail_frame(&mut self, e: FrameError, cfg: &ServerConfig) -> ConnEnd {
        let Some(reply) = self.codec.error_reply(&e) else {
            return self.fail(ConnEnd::Frame(e), cfg).await;
        };
        self.wbuf.extend_from_slice(reply);
        self.counts.1 += 1;
        if self.flush(cfg.write_timeout).await.is_ok() {
            // Over TLS the close_notify goes before the FIN, as on every other close.
            self.close_first().await;
        }
        ConnEnd::Frame(e)
    }

    /// Calls the handler. If its answer is not ready at once, replies already buffered are
    /// written first, so a slow request does not hold back earlier ones.
    async fn call<S>(
        &mut self,
        svc: &mut S,
        req: Request,
        cfg: &ServerConfig,
    ) -> Result<Answer, ConnEnd>
    where
        S: Service<Request>,
        S::Response: Into<Answer>,
        S::Error: Into<BoxError>,
    {
        let delay = cfg.reply_delay;
        // Boxed: the handler's future lives only during a call; kept inline it would make
        // every idle connection's task as large as the largest handler future, and the
        // batch future (boxed per read) too large for the allocator's per-thread cache.
        let call = async move {
            let reply: Answer = svc
                .ready()
                .await
                .map_err(Into::into)?
                .call(req)
                .await
                .map_err(Into::into)?
                .into();
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            Ok::<Answer, BoxError>(reply)
        };
        // A handler that panics costs its connection (after the replies before it are
        // written), never the accounting of the server: the panic becomes a handler error.
        let mut fut = Box::pin(async move {
            match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(call)).await {
                Ok(r) => r,
                Err(_) => Err(BoxError::from("handler panicked")),
            }
        });
        let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        let res = match first {
            Poll::Ready(r) => r,
            Poll::Pending => {
                self.publish_counts();
                if let Err(e) = self.flush(cfg.write_timeout).await {
                    return Err(ConnEnd::Io(e));
                }
                fut.await
            }
        };
        res.map_err(ConnEnd::Handler)
    }

    /// Writes all of `wbuf` within `timeout` (see [`flush_at`](Self::flush_at)).
    async fn flush(&mut self, timeout: Duration) -> io::Result<()> {
        self.flush_at(timeout, None).await
    }

    /// Writes all of `wbuf` with the pipeline's write step: one deadline for the whole write,
    /// so a peer reading a few bytes now and then cannot keep the connection (and its
    /// buffers) busy for longer than `timeout`. Records the write at `now` when given (saves
    /// a clock read on the per-request path).
    ///
    /// A failed write ends the connection, and the buffer is dropped with it: writing it
    /// again (as `fail` would, on its way out) would send the part already written a second
    /// time, a corrupt stream, and wait another `timeout` for a peer that does not read.
    async fn flush_at(&mut self, timeout: Duration, now: Option<Instant>) -> io::Result<()> {
        // Published before the write may wait: the task can be aborted there at the end of a
        // shutdown grace, and frames it handled must still count.
        self.publish_counts();
        #[cfg(feature = "tls")]
        let out: &[u8] = match self.tls.as_deref_mut() {
            Some(tls) => tls.encrypt(&self.wbuf).map_err(io::Error::from)?,
            None => &self.wbuf,
        };
        #[cfg(not(feature = "tls"))]
        let out: &[u8] = &self.wbuf;
        let (written, res) = pipeline::write_all(&self.stream, out, timeout).await;
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.written();
        }
        if let Err(e) = res {
            self.wbuf = BytesMut::new();
            return Err(match e {
                WriteError::Stalled { timeout } => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "peer did not read a reply for {}",
                        humantime::format_duration(timeout)
                    ),
                ),
                other => other.into_io(),
            });
        }
        if written > 0 {
            self.wbuf.clear();
            self.live.on_write(now.unwrap_or_else(Instant::now));
        }
        Ok(())
    }

    /// Short mode after the reply: wait for the client's FIN so the client holds TIME_WAIT,
    /// unless configured to close first.
    async fn short_close(&mut self, cfg: &ServerConfig) -> ConnEnd {
        if cfg.short_server_closes_first || self.eof {
            self.close_notify();
            return ConnEnd::ShortDone;
        }
        // Anything sent after the one request is discarded: short means one exchange.
        match self.discard_until_eof(cfg.short_close_wait).await {
            Ok(()) => ConnEnd::ShortDone,
            Err(e) => ConnEnd::Io(e),
        }
    }
}

/// Makes room in `rbuf` for a read (a buffer from the pool if it has none) and says how
/// much the read may ask for.
fn room_to_read(rbuf: &mut BytesMut) -> usize {
    if rbuf.capacity() == 0 {
        *rbuf = pool::take();
    }
    if rbuf.capacity() - rbuf.len() < READ_SIZE / 4 {
        // A buffer that is already in use grows by what it holds (a burst of pipelined
        // frames reads in fewer, larger reads); an empty one starts small.
        let grow = rbuf.len().clamp(READ_SIZE, MAX_READ_SIZE);
        rbuf.reserve(grow);
    }
    // Never more than MAX_READ_SIZE at once, whatever the buffer's spare capacity.
    (rbuf.capacity() - rbuf.len()).min(MAX_READ_SIZE)
}

/// What a connection's wait ended with.
enum Woke {
    /// The drain started.
    Drain,
    /// Bytes (or the peer's FIN) were read, or the socket failed.
    Read(io::Result<()>),
    /// The liveness timer fired.
    Timer,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle connection holds its task and its `Connection`; keep them small. Both
    /// are boxed, and an allocator serves them from size classes (mimalloc's 384 and 448
    /// bytes, bench/idle-allocs): a few bytes past a class cost a whole class more. The aim
    /// is ≤ 1 KiB per idle connection in user space, tokio's task and registration included
    /// (docs/performance.md, "Idle memory, exactly").
    #[tokio::test]
    async fn idle_connection_footprint_stays_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let shared = Shared::new(ServerConfig::new("len:be:2".parse().unwrap()));
        let echo = tower::service_fn(|r: Request| async move {
            Ok::<_, std::convert::Infallible>(Some(r.frame))
        });
        // A zero-sized handler, the service `keepwire serve --reply` runs, and
        // `serve --framing http`'s.
        let sizes = [
            ("a zero-sized handler", task_size(&shared, addr, echo).await),
            (
                "--reply",
                task_size(
                    &shared,
                    addr,
                    super::super::Reply::Fixed(Bytes::from_static(b"pong")).into_service(),
                )
                .await,
            ),
            (
                "--framing http",
                task_size(
                    &shared,
                    addr,
                    crate::http::HttpService::new(
                        crate::http::HttpReply::Fixed(Bytes::from_static(b"hello")),
                        "text/plain",
                        crate::http::KeepAlive::default(),
                    ),
                )
                .await,
            ),
        ];
        let conn_size = std::mem::size_of::<Connection>();
        eprintln!("connection task futures {sizes:?}, Connection {conn_size} bytes");
        for (what, size) in sizes {
            assert!(
                size <= 448,
                "connection task future ({what}) is {size} bytes"
            );
        }
        assert!(conn_size <= 384, "Connection is {conn_size} bytes");
    }

    /// The size of the task future [`run`] builds for a connection served by `svc`.
    async fn task_size<S>(shared: &Arc<Shared>, addr: SocketAddr, svc: S) -> usize
    where
        S: Service<Request> + Send + 'static,
        S::Response: Into<Answer>,
        S::Error: Into<BoxError> + Send,
        S::Future: Send,
    {
        let c = TcpStream::connect(addr).await.unwrap();
        let conn = new_conn(c, addr, addr, shared);
        let task = run(conn, svc, shared.limits.try_global().unwrap());
        std::mem::size_of_val(&task)
    }

    /// Options a test can read back on an accepted socket, none of them the kernel's default.
    fn some_options() -> crate::socket::SocketOptions {
        crate::socket::SocketOptions {
            nodelay: true,
            keepalive: Some(crate::socket::Keepalive {
                time: Duration::from_secs(77),
                interval: Duration::from_secs(7),
                probes: 4,
            }),
            user_timeout: Some(Duration::from_millis(9_000)),
        }
    }

    /// Accepts one connection on `l` and gives it `shared`'s options as a connection would.
    async fn accepted_with_options(l: &tokio::net::TcpListener, shared: &Shared) -> TcpStream {
        let _client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        shared.apply_socket_options(&s).unwrap();
        s
    }

    #[tokio::test]
    async fn socket_options_set_on_the_listener_are_inherited_and_not_set_again() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = ServerConfig::new("len:be:4".parse().unwrap());
        cfg.socket = some_options();
        let shared = Shared::new(cfg);
        shared.config.socket.apply(&l).unwrap();
        for _ in 0..3 {
            let s = accepted_with_options(&l, &shared).await;
            assert!(
                shared.config.socket.is_applied_to(&s).unwrap(),
                "options missing"
            );
            let state = shared.socket_inherited.load(Ordering::Relaxed);
            assert_eq!(
                state, INHERITED,
                "the first connection did not find them inherited"
            );
        }
    }

    #[tokio::test]
    async fn socket_options_not_on_the_listener_are_set_per_connection() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = ServerConfig::new("len:be:4".parse().unwrap());
        cfg.socket = some_options();
        let shared = Shared::new(cfg);
        for _ in 0..3 {
            let s = accepted_with_options(&l, &shared).await;
            assert!(
                shared.config.socket.is_applied_to(&s).unwrap(),
                "options not set"
            );
            let state = shared.socket_inherited.load(Ordering::Relaxed);
            assert_eq!(state, NOT_INHERITED);
        }
        // And a listener whose options could not be set: per connection from the start.
        let shared = Shared::new(ServerConfig::new("len:be:4".parse().unwrap()));
        shared.socket_options_inherited(false);
        let s = accepted_with_options(&l, &shared).await;
        assert!(shared.config.socket.is_applied_to(&s).unwrap());
    }

    /// A slow batch step (a write that waits, a handler that does not answer at once, a
    /// close) is allocated when it happens; glibc serves blocks up to 1032 bytes from its
    /// per-thread cache (tcache), larger ones take the allocator's slow path (about 300
    /// instructions more, callgrind).
    #[tokio::test]
    async fn slow_step_fits_the_allocator_cache() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let shared = Shared::new(ServerConfig::new("len:be:4".parse().unwrap()));
        let mut conn = new_conn(c, addr, addr, &shared);
        let mut svc = super::super::Reply::Echo.into_service();
        let mut b = Batch::new(true);
        let mut slot = None;
        let step = conn.slow(&mut svc, now::Slow::EndBatch, &mut b, &mut slot);
        let size = std::mem::size_of_val(&step);
        assert!(size <= 1024, "slow step future is {size} bytes");
    }
}
