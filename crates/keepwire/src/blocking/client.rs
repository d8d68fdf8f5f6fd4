//! Blocking clients over `std::net`: [`ShortClient`] and [`LongClient`], for code that is
//! not async. They frame with [`FrameReader`]/[`FrameWriter`] (the same sans-IO
//! [`FrameCodec`](crate::frame::FrameCodec) as the async side) and keep heartbeats with the
//! same [`Liveness`] state machine; errors are the async clients' [`ClientError`], with the
//! same not-sent / may-have-been-sent verdict.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{FrameReader, FrameWriter};
use crate::client::{ClientError, ClientErrorKind, Delivery, EndpointFailure};
use crate::deadline::std_in;
use crate::frame::{FrameError, FrameErrorKind, FramingSpec};
use crate::liveness::{
    Action, Beat, EmptyHeartbeat, Heartbeat, Liveness, LivenessConfig, PingConfig, Verdict,
};

/// Settings of a blocking client. Defaults: connect, read and write timeouts of 5 s, 30 s and
/// 10 s; heartbeats answered with the empty frame where the framing has one; no pings.
///
/// ```no_run
/// use std::time::Duration;
/// use keepwire::blocking::{ClientOptions, LongClient};
/// let opts = ClientOptions::new("len:ascii:4".parse().unwrap(), ["10.0.0.1:7000", "10.0.0.2:7000"])
///     .connect_timeout(Duration::from_secs(2))
///     .read_timeout(Duration::from_secs(5));
/// let mut client = LongClient::connect(opts)?;
/// let reply = client.request(b"0800")?;
/// # Ok::<(), keepwire::client::ClientError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    framing: FramingSpec,
    endpoints: Vec<String>,
    connect_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    heartbeat: Option<Arc<dyn Heartbeat>>,
    ping: Option<PingConfig>,
}

impl ClientOptions {
    /// `framing` frames to `endpoints`, tried in order.
    pub fn new<I, S>(framing: FramingSpec, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let heartbeat: Option<Arc<dyn Heartbeat>> = if framing.has_empty_frame() {
            Some(Arc::new(EmptyHeartbeat))
        } else {
            None
        };
        ClientOptions {
            framing,
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            heartbeat,
            ping: None,
        }
    }

    /// Per-endpoint TCP connect timeout. Longer than about 24.8 days (`Duration::MAX`, say)
    /// means 24.8 days: see [`write_timeout`](Self::write_timeout).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long [`request`](LongClient::request) waits for the reply. Any duration works:
    /// past [`FAR_FUTURE`](crate::deadline::FAR_FUTURE) (`Duration::MAX`, say) it waits
    /// that long, which is forever in practice.
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = d;
        self
    }

    /// How long a write may block on a peer that does not read.
    ///
    /// This one and the connect timeout are handed to the OS (`SO_SNDTIMEO`, `poll(2)`),
    /// which does not take every duration: both are capped at 2^31 - 1 ms, about 24.8 days,
    /// the longest `poll(2)` waits (std's own `connect_timeout` caps there) and within what
    /// the BSDs accept for `SO_SNDTIMEO`. `Duration::MAX` therefore means 24.8 days.
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.write_timeout = d;
        self
    }

    /// How a [`LongClient`] recognises heartbeats (`None`: none, and every frame is data).
    /// A [`ShortClient`] has no heartbeats and ignores this.
    pub fn heartbeat_frames(mut self, hb: Option<Arc<dyn Heartbeat>>) -> Self {
        self.heartbeat = hb;
        self
    }

    /// Ping an idle long connection from [`LongClient::tick`].
    pub fn ping(mut self, ping: Option<PingConfig>) -> Self {
        self.ping = ping;
        self
    }

    /// The first endpoint that connects, with the failures before it.
    fn connect(&self) -> Result<(TcpStream, String), ClientError> {
        let mut failures = Vec::new();
        for ep in &self.endpoints {
            match self.connect_one(ep) {
                Ok(s) => return Ok((s, ep.clone())),
                Err(reason) => failures.push(EndpointFailure {
                    endpoint: ep.clone(),
                    reason,
                }),
            }
        }
        Err(ClientError::connect(failures))
    }

    fn connect_one(&self, ep: &str) -> Result<TcpStream, String> {
        let addrs = ep
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve: {e}"))?;
        let mut last = "the name resolved to no address".to_string();
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.connect_timeout.min(MAX_OS_TIMEOUT)) {
                Ok(s) => {
                    s.set_nodelay(true)
                        .and_then(|()| {
                            s.set_write_timeout(Some(self.write_timeout.min(MAX_OS_TIMEOUT)))
                        })
                        .map_err(|e| format!("socket options: {e}"))?;
                    return Ok(s);
                }
                Err(e) => last = format!("connect failed: {e}"),
            }
        }
        Err(last)
    }
}

/// The longest timeout handed to the OS: 2^31 - 1 ms (about 24.8 days), `poll(2)`'s limit
/// (an `int` of milliseconds) and, at 1000 ticks a second, the BSDs' for `SO_SNDTIMEO`.
const MAX_OS_TIMEOUT: Duration = Duration::from_millis(0x7fff_ffff);

fn frame_err(delivery: Delivery, ep: &str, e: FrameError) -> ClientError {
    ClientError::frame(delivery, Some(ep.to_owned()), e)
}

/// A blocking short client: each request connects, writes, reads one reply within the read
/// timeout and closes (the client closes first; under `eof` framing it half-closes after
/// writing). Endpoints that refuse are skipped.
///
/// Nothing pings a short link after the request, so the first frame back is the reply even
/// when it is empty. A request that is the link's heartbeat frame is refused as on the long
/// client: a server answers it as a heartbeat, not as a request.
///
/// ```no_run
/// use keepwire::blocking::{ClientOptions, ShortClient};
/// let client = ShortClient::new(ClientOptions::new("len:be:2".parse().unwrap(), ["127.0.0.1:7000"]));
/// let reply = client.request(b"hello")?;
/// # Ok::<(), keepwire::client::ClientError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ShortClient {
    opts: ClientOptions,
}

impl ShortClient {
    /// A short client with these options.
    pub fn new(opts: ClientOptions) -> Self {
        ShortClient { opts }
    }

    /// Connects, sends `frame`, reads the reply and closes.
    ///
    /// # Errors
    /// [`ClientError::is_connect`] (not sent) naming every endpoint when none connects;
    /// otherwise an error saying whether the request may have been sent.
    pub fn request(&self, frame: &[u8]) -> Result<Bytes, ClientError> {
        if let Some(hb) = self.opts.heartbeat.as_deref() {
            if hb.classify(frame).is_some() {
                return Err(ClientError::heartbeat_frame(frame));
            }
        }
        let (stream, ep) = self.opts.connect()?;
        let w = stream
            .try_clone()
            .map_err(|e| ClientError::io(Delivery::NotSent, Some(ep.clone()), "socket", e))?;
        let mut writer = FrameWriter::new(w, self.opts.framing.clone());
        if let Err(e) = writer.write_frame(frame) {
            return Err(if e.is_unencodable() {
                frame_err(Delivery::NotSent, &ep, e)
            } else {
                write_err(&ep, self.opts.write_timeout, &e)
            });
        }
        if self.opts.framing.is_until_close() {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        let mut reader = FrameReader::new(stream, self.opts.framing.clone());
        let reply = reader.read_frame_timeout(self.opts.read_timeout);
        let _ = reader.get_ref().shutdown(std::net::Shutdown::Both);
        match reply {
            Ok(Some(f)) => Ok(f),
            Ok(None) if reader.is_eof() => Err(ClientError::new(
                ClientErrorKind::Closed,
                Delivery::SentNoReply,
                "peer closed the connection without a reply",
            )
            .with_endpoint(Some(ep))),
            Ok(None) => Err(ClientError::timeout(
                Delivery::SentNoReply,
                Some(ep),
                self.opts.read_timeout,
            )),
            Err(e) => Err(frame_err(Delivery::SentNoReply, &ep, e)),
        }
    }
}

/// A write that failed after it may have put part of the frame on the wire (`e` is not
/// unencodable). A blocking socket reports its write timeout as `WouldBlock`.
fn write_err(ep: &str, write_timeout: Duration, e: &FrameError) -> ClientError {
    let FrameErrorKind::Io(io) = e.kind() else {
        return ClientError::new(ClientErrorKind::Io, Delivery::SentNoReply, e.to_string())
            .with_endpoint(Some(ep.to_owned()));
    };
    if matches!(
        io.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ) {
        return ClientError::new(
            ClientErrorKind::Timeout,
            Delivery::SentNoReply,
            format!(
                "writing the request took over {} (the peer is not reading): part of it may \
                 be on the wire, so the next request opens a new connection",
                humantime::format_duration(write_timeout)
            ),
        )
        .with_endpoint(Some(ep.to_owned()));
    }
    ClientError::io(
        Delivery::SentNoReply,
        Some(ep.to_owned()),
        "writing the request (part of it may be on the wire: the next request opens a new connection)",
        std::io::Error::new(io.kind(), io.to_string()),
    )
}

/// A blocking long connection: [`request`](Self::request) for request/response, and
/// [`send`](Self::send) with [`try_recv`](Self::try_recv) /
/// [`recv_timeout`](Self::recv_timeout) for code that polls. A receive that times out in the
/// middle of a frame keeps the partial frame buffered; the next call continues it.
///
/// Heartbeats run through [`Liveness`]: pings from the peer are answered whenever frames are
/// read, and with [`ClientOptions::ping`] an idle connection is pinged by
/// [`tick`](Self::tick), which the caller calls from its loop (a blocking client owns no
/// thread).
///
/// A connection that failed stays failed, as hyper's keep-alive does: after a write that
/// failed or may have stopped part way (the peer would read the next request as the rest of
/// this one), a read or framing error, a request that timed out (a late reply would be taken
/// as the next one's) or the peer's close, nothing more is written on it. The next
/// [`send`](Self::send) or [`request`](Self::request) first reconnects along the endpoint
/// list; [`reconnect`](Self::reconnect) does so at once.
#[derive(Debug)]
pub struct LongClient {
    opts: ClientOptions,
    reader: FrameReader<TcpStream>,
    writer: FrameWriter<TcpStream>,
    endpoint: String,
    live: Liveness,
    /// Why nothing more may be written on this connection, once something went wrong.
    broken: Option<String>,
    /// Same-bytes heartbeats that came while the current request awaited its reply.
    strays: Strays,
}

/// Heartbeats that arrived while a request awaited its reply and were not our pong: what a
/// request that then times out tells its caller (a peer that replies with the heartbeat
/// frame is misconfigured, and the storm guard absorbs what it sends).
#[derive(Debug, Default)]
struct Strays {
    /// How many same-bytes heartbeats came.
    seen: u32,
    /// Whether the storm guard absorbed any of them (rather than answering them all).
    absorbed: bool,
    /// The heartbeat frame itself, to name it.
    frame: Bytes,
}

impl Strays {
    /// The timeout's detail: `no reply within 1s`, and what came instead when the storm
    /// guard had to absorb heartbeats.
    fn timeout_detail(&self, after: Duration) -> String {
        let mut d = format!("no reply within {}", humantime::format_duration(after));
        if self.absorbed {
            let what = if self.frame.is_empty() {
                "the empty frame".to_string()
            } else {
                format!("{:?}", crate::text::escape(&self.frame))
            };
            let n = self.seen;
            let s = if n == 1 { "" } else { "s" };
            d.push_str(&format!(
                ": {n} heartbeat frame{s} arrived instead (on this link {what} is the \
                 heartbeat: a peer that replies with it must not have heartbeats on)"
            ));
        }
        d
    }
}

impl LongClient {
    /// Connects to the first endpoint that accepts.
    ///
    /// # Errors
    /// [`ClientError::is_connect`] naming every endpoint when none connects.
    pub fn connect(opts: ClientOptions) -> Result<Self, ClientError> {
        let (stream, endpoint) = opts.connect()?;
        let w = stream
            .try_clone()
            .map_err(|e| ClientError::io(Delivery::NotSent, Some(endpoint.clone()), "socket", e))?;
        let mut live = Liveness::new(
            LivenessConfig {
                ping: opts.ping,
                ..LivenessConfig::default()
            },
            Instant::now(),
        );
        live.set_answer_pings(opts.heartbeat.is_some());
        Ok(LongClient {
            reader: FrameReader::new(stream, opts.framing.clone()),
            writer: FrameWriter::new(w, opts.framing.clone()),
            endpoint,
            live,
            opts,
            broken: None,
            strays: Strays::default(),
        })
    }

    /// Closes this connection and connects again along the endpoint list.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn reconnect(&mut self) -> Result<(), ClientError> {
        let _ = self.reader.get_ref().shutdown(std::net::Shutdown::Both);
        *self = LongClient::connect(self.opts.clone())?;
        Ok(())
    }

    /// The endpoint connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Bytes received but not yet returned as a frame (a partial frame, say).
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Whether this connection has failed (see the type's docs): the next
    /// [`send`](Self::send) or [`request`](Self::request) reconnects first.
    ///
    /// ```no_run
    /// use keepwire::blocking::{ClientOptions, LongClient};
    /// let mut c = LongClient::connect(ClientOptions::new("len:ascii:4".parse().unwrap(), ["127.0.0.1:7000"]))?;
    /// if let Err(e) = c.request(b"0800") {
    ///     // A timeout breaks the connection: the next request goes on a new one.
    ///     assert!(!e.is_timeout() || c.is_broken());
    /// }
    /// # Ok::<(), keepwire::client::ClientError>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.broken.is_some() || self.reader.is_eof()
    }

    /// Writes `frame`, after reconnecting if this connection [is broken](Self::is_broken).
    ///
    /// A frame that the link's heartbeat recognises ([`ClientOptions::heartbeat_frames`]; by
    /// default the empty frame, where the framing has one) is never sent as data: the peer
    /// would take it as a ping. Turn heartbeats off to send it.
    ///
    /// # Errors
    /// [`ClientError::is_heartbeat_frame`] (not sent) for a heartbeat frame; unencodable
    /// (not sent); a failed reconnect ([`ClientError::is_connect`], not sent);
    /// or a write error or timeout, which may have left part of the frame on the wire: the
    /// error says it may have been sent, and the connection is then broken.
    ///
    /// ```no_run
    /// use keepwire::blocking::{ClientOptions, LongClient};
    /// let opts = ClientOptions::new("len:ascii:4".parse().unwrap(), ["127.0.0.1:7000"])
    ///     .heartbeat_frames(None); // the empty frame is plain data here
    /// let mut c = LongClient::connect(opts)?;
    /// c.send(b"")?;
    /// # Ok::<(), keepwire::client::ClientError>(())
    /// ```
    pub fn send(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        // Issue 9, R1: the peer would take it as a ping, never as a request.
        let hb = self.opts.heartbeat.as_deref();
        if hb.is_some_and(|hb| hb.classify(frame).is_some()) {
            return Err(
                ClientError::heartbeat_frame(frame).with_endpoint(Some(self.endpoint.clone()))
            );
        }
        if self.is_broken() {
            self.reconnect()?;
        }
        self.write(frame)
    }

    /// Writes `frame` on this connection, breaking it if the write fails part way.
    fn write(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        if let Some(why) = &self.broken {
            return Err(ClientError::new(
                ClientErrorKind::Closed,
                Delivery::NotSent,
                format!("connection unusable after {why}; send or reconnect opens a new one"),
            )
            .with_endpoint(Some(self.endpoint.clone())));
        }
        if let Err(e) = self.writer.write_frame(frame) {
            if e.is_unencodable() {
                return Err(frame_err(Delivery::NotSent, &self.endpoint, e));
            }
            self.broken = Some("a failed write".into());
            return Err(write_err(&self.endpoint, self.opts.write_timeout, &e));
        }
        self.live.on_write(Instant::now());
        Ok(())
    }

    /// A read error: the codec may be mid-frame or failed, so the connection is broken.
    fn read_failed(&mut self, e: FrameError) -> ClientError {
        self.broken = Some("a failed read".into());
        frame_err(Delivery::SentNoReply, &self.endpoint, e)
    }

    /// Sends `frame` and waits at most the read timeout for the next application frame.
    ///
    /// While it waits, the peer's pings are answered, but a heartbeat whose ping and pong are
    /// the same bytes (the empty frame) is answered at most once per
    /// [`PONG_GAP_AWAITING`](crate::liveness::PONG_GAP_AWAITING): a peer that sends the
    /// heartbeat frame as its reply, and answers ours, would otherwise bounce it with us at
    /// full speed. If the request then times out, the error says that heartbeats came
    /// instead of the reply.
    ///
    /// # Errors
    /// As [`send`](Self::send); then a timeout, a close or a bad frame, all "may have been
    /// sent". After a timeout the connection is out of step (a late reply would be taken as
    /// the next one's), so it is [broken](Self::is_broken): the next request reconnects.
    ///
    /// ```no_run
    /// use keepwire::blocking::{ClientOptions, LongClient};
    /// let mut c = LongClient::connect(ClientOptions::new("len:ascii:4".parse().unwrap(), ["127.0.0.1:7000"]))?;
    /// let reply = c.request(b"0800")?;
    /// // The empty frame is this link's heartbeat: refused, nothing written.
    /// assert!(c.request(b"").unwrap_err().is_heartbeat_frame());
    /// # Ok::<(), keepwire::client::ClientError>(())
    /// ```
    pub fn request(&mut self, frame: &[u8]) -> Result<Bytes, ClientError> {
        self.send(frame)?;
        self.strays = Strays::default();
        match self.recv(self.opts.read_timeout, true)? {
            Some(f) => Ok(f),
            None if self.reader.is_eof() => Err(ClientError::new(
                ClientErrorKind::Closed,
                Delivery::SentNoReply,
                "peer closed the connection without a reply",
            )
            .with_endpoint(Some(self.endpoint.clone()))),
            None => {
                self.broken = Some("a request that timed out".into());
                Err(ClientError::new(
                    ClientErrorKind::Timeout,
                    Delivery::SentNoReply,
                    self.strays.timeout_detail(self.opts.read_timeout),
                )
                .with_endpoint(Some(self.endpoint.clone())))
            }
        }
    }

    /// The next application frame if one has arrived, without waiting. Heartbeats read on
    /// the way are handled, not returned.
    ///
    /// # Errors
    /// A bad frame, end of stream inside a frame, or an I/O error.
    pub fn try_recv(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            let f = match self.reader.try_read_frame() {
                Ok(f) => f,
                Err(e) => return Err(self.read_failed(e)),
            };
            match f {
                None => return Ok(None),
                Some(f) => {
                    if let Some(app) = self.on_frame(f, false)? {
                        return Ok(Some(app));
                    }
                }
            }
        }
    }

    /// Waits at most `timeout` for the next application frame; `Ok(None)` when none came
    /// (a partial frame stays buffered) or the peer closed ([`is_closed`](Self::is_closed)).
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Bytes>, ClientError> {
        self.recv(timeout, false)
    }

    /// [`recv_timeout`](Self::recv_timeout); `awaiting` says a request awaits its reply.
    fn recv(&mut self, timeout: Duration, awaiting: bool) -> Result<Option<Bytes>, ClientError> {
        let deadline = std_in(timeout);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = match self.reader.read_frame_timeout(left) {
                Ok(f) => f,
                Err(e) => return Err(self.read_failed(e)),
            };
            match f {
                None => return Ok(None),
                Some(f) => {
                    if let Some(app) = self.on_frame(f, awaiting)? {
                        return Ok(Some(app));
                    }
                    if left.is_zero() {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Whether the peer closed its side.
    pub fn is_closed(&self) -> bool {
        self.reader.is_eof()
    }

    /// Runs the heartbeat timers: sends a ping when one is due. A ping is never written on
    /// a [broken](Self::is_broken) connection, and `tick` does not reconnect.
    ///
    /// # Errors
    /// [`ClientError::is_dead_peer`] once `misses` pings went unanswered; a write error; or,
    /// when a ping is due on a broken connection, [`ClientError::is_closed`] (the next
    /// [`send`](Self::send) reconnects).
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use keepwire::blocking::{ClientOptions, LongClient};
    /// use keepwire::liveness::PingConfig;
    /// let opts = ClientOptions::new("len:ascii:4".parse().unwrap(), ["127.0.0.1:7000"]).ping(Some(PingConfig {
    ///     interval: Duration::from_secs(30),
    ///     timeout: Duration::from_secs(10),
    ///     misses: 3,
    /// }));
    /// let mut c = LongClient::connect(opts)?;
    /// loop {
    ///     c.tick()?;
    ///     let wait = c.next_tick().map_or(Duration::from_secs(1), |t| t.saturating_duration_since(Instant::now()));
    ///     if let Some(frame) = c.recv_timeout(wait)? {
    ///         println!("{} bytes", frame.len());
    ///     }
    /// }
    /// # Ok::<(), keepwire::client::ClientError>(())
    /// ```
    pub fn tick(&mut self) -> Result<(), ClientError> {
        loop {
            match self.live.poll(Instant::now()) {
                Action::Wait => return Ok(()),
                Action::SendPing(seq) => {
                    if let Some(hb) = self.opts.heartbeat.clone() {
                        self.write(&hb.ping(seq))?;
                    }
                }
                Action::Close(_) => {
                    return Err(ClientError::new(
                        ClientErrorKind::Dead,
                        Delivery::NotSent,
                        "peer stopped answering heartbeats",
                    )
                    .with_endpoint(Some(self.endpoint.clone())));
                }
            }
        }
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_tick(&self) -> Option<Instant> {
        self.live.next_deadline()
    }

    /// Heartbeat handling of one inbound frame; the frame back if it is application data.
    /// `awaiting`: a request awaits its reply, so same-bytes heartbeats that are not our
    /// pong go through the storm guard of [`Liveness::on_frame_awaiting`].
    fn on_frame(&mut self, f: Bytes, awaiting: bool) -> Result<Option<Bytes>, ClientError> {
        let hb = self.opts.heartbeat.clone();
        let beat = hb.as_deref().and_then(|h| h.classify(&f));
        let our_pong = self.live.unanswered() > 0;
        let verdict = self.live.on_frame_awaiting(Instant::now(), beat, awaiting);
        if awaiting && beat == Some(Beat::Either) && !our_pong {
            self.strays.seen = self.strays.seen.saturating_add(1);
            self.strays.absorbed |= verdict == Verdict::Absorb;
            self.strays.frame = f.clone();
        }
        match verdict {
            Verdict::Deliver => Ok(Some(f)),
            Verdict::Absorb => Ok(None),
            Verdict::Answer => {
                if let Some(h) = hb {
                    self.write(&h.pong(&f))?;
                }
                Ok(None)
            }
        }
    }
}
