//! One server connection: read, decode, liveness, handler, encode, write.
//!
//! The read buffer exists only while bytes are buffered: when a read leaves no partial frame
//! the buffer is dropped, so an idle connection holds no buffer at all (a `Framed` would hold
//! 8 KiB each way). Replies to every frame of one read are written together.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::limits::{GlobalSlot, Limits, LogLimiter};
use super::proxy_protocol::{self, Parsed};
use super::{BoxError, Mode, Request, ServerConfig, ServerStats};
use crate::frame::{FrameCodec, FrameError};
use crate::liveness::{Action, CloseReason, Liveness, Verdict};

/// Bytes asked of the kernel per read.
const READ_SIZE: usize = 4096;
/// Replies buffered before they are written even if more frames wait.
const MAX_PENDING_WRITE: usize = 64 * 1024;

/// State shared by the accept loop and every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) stats: Arc<ServerStats>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) reject_log: LogLimiter,
    pub(crate) accept_log: LogLimiter,
    next_id: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: ServerConfig) -> Arc<Self> {
        Arc::new(Shared {
            limits: Limits::new(config.max_conns, config.max_conns_per_ip),
            config,
            stats: Arc::new(ServerStats::default()),
            shutdown: CancellationToken::new(),
            reject_log: LogLimiter::new(Duration::from_secs(1)),
            accept_log: LogLimiter::new(Duration::from_secs(1)),
            next_id: AtomicU64::new(1),
        })
    }
}

/// Closes a connection we will not serve with a RST, so refusing a flood costs no TIME_WAIT
/// socket on our side.
pub(crate) fn reject(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Why a connection ended (for logs).
#[derive(Debug)]
enum End {
    PeerClosed,
    Liveness(CloseReason),
    Frame(FrameError),
    Handler(BoxError),
    Io(io::Error),
    ShortDone,
    Drained,
    Rejected,
}

pub(crate) async fn run<S>(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    svc: S,
    slot: GlobalSlot,
) where
    S: Service<Request, Response = Option<Bytes>> + Send + 'static,
    S::Error: Into<BoxError> + Send,
    S::Future: Send,
{
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let mut conn = Conn {
        local: stream.local_addr().unwrap_or(peer),
        stream,
        peer,
        id,
        shared: Arc::clone(&shared),
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        codec: FrameCodec::new(shared.config.framing.clone()),
        live: Liveness::new(shared.config.liveness, Instant::now()),
        eof: false,
    };
    let end = conn.serve(svc).await;
    drop(slot);
    let stats = &shared.stats;
    match &end {
        End::Liveness(CloseReason::HeartbeatTimeout) => {
            ServerStats::add(&stats.heartbeat_timeouts, 1);
        }
        End::Liveness(CloseReason::FrameTimeout) => ServerStats::add(&stats.frame_timeouts, 1),
        End::Liveness(_) => ServerStats::add(&stats.idle_closed, 1),
        End::Frame(e) if e.is_too_long() => ServerStats::add(&stats.errors_too_long, 1),
        End::Frame(e) if e.is_truncated() => ServerStats::add(&stats.errors_truncated, 1),
        End::Frame(e) if e.is_io() => ServerStats::add(&stats.errors_io, 1),
        End::Frame(e) if e.is_unencodable() => ServerStats::add(&stats.errors_handler, 1),
        End::Frame(_) => ServerStats::add(&stats.errors_malformed, 1),
        End::Handler(_) => ServerStats::add(&stats.errors_handler, 1),
        End::Io(_) => ServerStats::add(&stats.errors_io, 1),
        End::PeerClosed | End::ShortDone | End::Drained | End::Rejected => {}
    }
    match end {
        End::Frame(e) => {
            tracing::info!(conn = id, peer = %conn.peer, error = %e, "closing connection: bad frame")
        }
        End::Handler(e) => {
            tracing::warn!(conn = id, peer = %conn.peer, error = %e, "closing connection: handler failed")
        }
        End::Io(e) => tracing::debug!(conn = id, peer = %conn.peer, error = %e, "connection error"),
        End::Liveness(r) => {
            tracing::info!(conn = id, peer = %conn.peer, reason = r.as_str(), "closing connection")
        }
        other => tracing::trace!(conn = id, peer = %conn.peer, end = ?other, "connection closed"),
    }
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    id: u64,
    shared: Arc<Shared>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    codec: FrameCodec,
    live: Liveness,
    eof: bool,
}

impl Conn {
    async fn serve<S>(&mut self, mut svc: S) -> End
    where
        S: Service<Request, Response = Option<Bytes>>,
        S::Error: Into<BoxError>,
    {
        let shared = Arc::clone(&self.shared);
        let cfg = &shared.config;
        if let Err(e) = cfg.socket.apply(&self.stream) {
            return End::Io(e);
        }
        let _ip_slot = if cfg.proxy_protocol {
            match self.read_proxy_header().await {
                Ok(()) => {}
                Err(end) => {
                    ServerStats::add(&shared.stats.rejected_proxy, 1);
                    return end;
                }
            }
            match self.ip_slot() {
                Some(s) => s,
                None => return End::Rejected,
            }
        } else {
            match self.ip_slot() {
                Some(s) => s,
                None => return End::Rejected,
            }
        };
        self.serve_frames(&mut svc).await
    }

    /// A per-IP slot for the (real) peer, or `None` after rejecting the connection.
    fn ip_slot(&mut self) -> Option<Option<super::limits::IpSlot>> {
        let shared = &self.shared;
        match shared.limits.try_ip(self.peer.ip()) {
            Some(slot) => Some(slot),
            None => {
                ServerStats::add(&shared.stats.rejected_per_ip, 1);
                let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
                if let Some(held) = shared.reject_log.check(Instant::now()) {
                    tracing::warn!(peer = %self.peer, max_conns_per_ip = ?shared.config.max_conns_per_ip, held_back = held, "connection rejected: per-IP limit reached");
                }
                None
            }
        }
    }

    async fn read_proxy_header(&mut self) -> Result<(), End> {
        let deadline = tokio::time::Instant::now() + self.shared.config.handshake_timeout;
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
                    return Err(End::Rejected);
                }
                Parsed::Incomplete => {}
            }
            let read = tokio::time::timeout_at(deadline, self.read_some()).await;
            match read {
                Err(_) => {
                    tracing::info!(conn = self.id, peer = %self.peer, "closing connection: no PROXY header in time");
                    return Err(End::Rejected);
                }
                Ok(Err(e)) => return Err(End::Io(e)),
                Ok(Ok(0)) => return Err(End::PeerClosed),
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

    fn try_read(&mut self) -> io::Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_SIZE / 4 {
            self.rbuf.reserve(READ_SIZE);
        }
        let n = self.stream.try_read_buf(&mut self.rbuf)?;
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    async fn serve_frames<S>(&mut self, svc: &mut S) -> End
    where
        S: Service<Request, Response = Option<Bytes>>,
        S::Error: Into<BoxError>,
    {
        let shared = Arc::clone(&self.shared);
        let cfg = &shared.config;
        let stats = &shared.stats;
        let heartbeat = cfg.heartbeat.as_deref();
        let mut sleep = pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
        let mut armed: Option<Instant> = None;
        let mut draining = false;
        let mut fresh = true;
        loop {
            // 1. Every whole frame buffered, in order.
            let now = Instant::now();
            let (mut frames_in, mut frames_out) = (0u64, 0u64);
            let mut served = false;
            loop {
                let decoded = if self.eof {
                    self.codec.decode_eof(&mut self.rbuf)
                } else {
                    self.codec.decode(&mut self.rbuf)
                };
                let frame = match decoded {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        ServerStats::add(&stats.frames_in, frames_in);
                        // Replies already due still go out before the close.
                        let _ = self.flush(cfg.write_timeout).await;
                        return End::Frame(e);
                    }
                };
                frames_in += 1;
                fresh = true;
                let beat = heartbeat.and_then(|h| h.classify(&frame));
                match self.live.on_frame(now, beat) {
                    Verdict::Absorb => continue,
                    Verdict::Answer => {
                        if let Some(h) = heartbeat {
                            if let Err(e) = self.codec.encode_to(&h.pong(&frame), &mut self.wbuf) {
                                return End::Frame(e);
                            }
                            frames_out += 1;
                            ServerStats::add(&stats.pings_answered, 1);
                        }
                        continue;
                    }
                    Verdict::Deliver => {}
                }
                let req = Request {
                    frame,
                    peer: self.peer,
                    local: self.local,
                    conn_id: self.id,
                };
                let reply = match self.call(svc, req, cfg).await {
                    Ok(r) => r,
                    Err(end) => return end,
                };
                if let Some(reply) = reply {
                    if let Err(e) = self.codec.encode_to(&reply, &mut self.wbuf) {
                        tracing::warn!(conn = self.id, error = %e, "handler reply cannot be framed");
                        return End::Frame(e);
                    }
                    frames_out += 1;
                }
                if cfg.mode == Mode::Short {
                    served = true;
                    break;
                }
                if self.wbuf.len() >= MAX_PENDING_WRITE {
                    if let Err(e) = self.flush(cfg.write_timeout).await {
                        return End::Io(e);
                    }
                }
            }
            ServerStats::add(&stats.frames_in, frames_in);
            ServerStats::add(&stats.frames_out, frames_out);

            // 2. Replies out.
            if let Err(e) = self.flush(cfg.write_timeout).await {
                return End::Io(e);
            }
            if served {
                return self.short_close(cfg).await;
            }
            if self.eof {
                return End::PeerClosed;
            }

            // 3. Partial-frame clock; idle connections give their buffers back.
            self.live.on_read(now, !self.rbuf.is_empty(), fresh);
            fresh = false;
            if self.rbuf.is_empty() {
                if draining {
                    return End::Drained;
                }
                if self.rbuf.capacity() > 0 {
                    self.rbuf = BytesMut::new();
                }
            }
            if self.wbuf.capacity() > 0 {
                self.wbuf = BytesMut::new();
            }

            // 4. Wait for bytes, a deadline or shutdown.
            let deadline = self.live.next_deadline();
            if deadline != armed {
                if let Some(d) = deadline {
                    sleep.as_mut().reset(d.into());
                }
                armed = deadline;
            }
            tokio::select! {
                biased;
                () = shared.shutdown.cancelled(), if !draining => {
                    draining = true;
                }
                r = self.stream.readable() => {
                    if let Err(e) = r {
                        return End::Io(e);
                    }
                    fresh = self.rbuf.is_empty();
                    match self.try_read() {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return End::Io(e),
                    }
                }
                () = &mut sleep, if armed.is_some() => {
                    loop {
                        match self.live.poll(Instant::now()) {
                            Action::Wait => break,
                            Action::Close(reason) => return End::Liveness(reason),
                            Action::SendPing(seq) => {
                                if let Some(h) = heartbeat {
                                    if let Err(e) = self.codec.encode_to(&h.ping(seq), &mut self.wbuf) {
                                        return End::Frame(e);
                                    }
                                    ServerStats::add(&stats.pings_sent, 1);
                                    ServerStats::add(&stats.frames_out, 1);
                                }
                            }
                        }
                    }
                    // Re-arm even if the deadline value repeats.
                    armed = None;
                }
            }
        }
    }

    /// Calls the handler. If its answer is not ready at once, replies already buffered are
    /// written first, so a slow request does not hold back earlier ones.
    async fn call<S>(
        &mut self,
        svc: &mut S,
        req: Request,
        cfg: &ServerConfig,
    ) -> Result<Option<Bytes>, End>
    where
        S: Service<Request, Response = Option<Bytes>>,
        S::Error: Into<BoxError>,
    {
        let delay = cfg.reply_delay;
        let mut fut = pin!(async move {
            let reply = svc.ready().await?.call(req).await?;
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            Ok::<_, S::Error>(reply)
        });
        let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        let res = match first {
            Poll::Ready(r) => r,
            Poll::Pending => {
                if let Err(e) = self.flush(cfg.write_timeout).await {
                    return Err(End::Io(e));
                }
                fut.await
            }
        };
        res.map_err(|e| End::Handler(e.into()))
    }

    /// Writes all of `wbuf`, waiting at most `timeout` each time the socket is full.
    async fn flush(&mut self, timeout: Duration) -> io::Result<()> {
        let mut off = 0;
        while off < self.wbuf.len() {
            let pending = self.wbuf.get(off..).unwrap_or_default();
            match self.stream.try_write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match tokio::time::timeout(timeout, self.stream.writable()).await {
                        Ok(r) => r?,
                        Err(_) => {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("peer did not read a reply for {timeout:?}"),
                            ));
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if off > 0 {
            self.wbuf.clear();
            self.live.on_write(Instant::now());
        }
        Ok(())
    }

    /// Short mode after the reply: wait for the client's FIN so the client holds TIME_WAIT,
    /// unless configured to close first.
    async fn short_close(&mut self, cfg: &ServerConfig) -> End {
        if cfg.short_server_closes_first || self.eof {
            return End::ShortDone;
        }
        let deadline = tokio::time::Instant::now() + cfg.short_close_wait;
        let mut scratch = [0u8; 512];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.readable()).await {
                Err(_) => return End::ShortDone,
                Ok(Err(e)) => return End::Io(e),
                Ok(Ok(())) => {}
            }
            // Anything sent after the one request is discarded: short means one exchange.
            match self.stream.try_read(&mut scratch) {
                Ok(0) => return End::ShortDone,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return End::Io(e),
            }
        }
    }
}
