//! [`LongClient`]: a blocking long connection.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::FrameReader;
use super::client::{ClientOptions, connect, frame_err, write_bytes};
use crate::client::core::Matching;
use crate::client::state::ClientState;
use crate::client::{ClientError, ClientErrorKind, Delivery, EndpointStatus};
use crate::deadline::std_in;
use crate::frame::{FrameCodec, FrameError};
use crate::liveness::Liveness;
use crate::pipeline::{Inbound, Step, Tick, client_liveness};

/// A blocking long connection: [`request`](Self::request) for request/response, and
/// [`send`](Self::send) with [`try_recv`](Self::try_recv) /
/// [`recv_timeout`](Self::recv_timeout) for code that polls. A receive that times out in the
/// middle of a frame keeps the partial frame buffered; the next call continues it.
///
/// Heartbeats run through [`Liveness`]: pings from the peer are answered whenever frames are
/// read, and with [`ClientBuilder::ping`](crate::client::ClientBuilder::ping) an idle connection is pinged by
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
    state: Arc<ClientState>,
    reader: FrameReader<TcpStream>,
    /// Encodes requests, pongs and pings into `wbuf`.
    codec: FrameCodec,
    wbuf: BytesMut,
    ep: usize,
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
    /// Connects to the first endpoint that accepts, in the order of the endpoints' health.
    ///
    /// # Errors
    /// [`ClientError::is_config`] when [`ClientBuilder::validate_long`](crate::client::ClientBuilder::validate_long) refuses the
    /// options; [`ClientError::is_connect`] naming every endpoint when none connects.
    pub fn connect(opts: ClientOptions) -> Result<Self, ClientError> {
        let cfg = opts.into_config();
        cfg.validate_long()?;
        LongClient::connect_state(Arc::new(ClientState::new(cfg, Matching::Fifo)))
    }

    /// Connects with `state`'s configuration and endpoint health.
    fn connect_state(state: Arc<ClientState>) -> Result<Self, ClientError> {
        let c = connect(&state)?;
        let cfg = &state.cfg;
        let live = client_liveness(cfg.ping, cfg.heartbeat.as_deref(), Instant::now());
        Ok(LongClient {
            reader: FrameReader::new(c.stream, cfg.framing.clone()),
            codec: FrameCodec::new(cfg.framing.clone()),
            wbuf: BytesMut::new(),
            ep: c.ep,
            endpoint: c.addr,
            live,
            broken: None,
            strays: Strays::default(),
            state,
        })
    }

    /// Closes this connection and connects again along the endpoint list (failed endpoints
    /// tried last).
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn reconnect(&mut self) -> Result<(), ClientError> {
        let _ = self.reader.get_ref().shutdown(std::net::Shutdown::Both);
        // Broken until the new connection is in: if none connects, the next send must not
        // write on the shut socket (a broken pipe would read as "may have been sent").
        self.broken = Some("a reconnect that found no endpoint".into());
        *self = LongClient::connect_state(Arc::clone(&self.state))?;
        Ok(())
    }

    /// The endpoint connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every endpoint's health (kept across [`reconnect`](Self::reconnect)s).
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.state.status()
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
    /// A frame that the link's heartbeat recognises ([`ClientBuilder::heartbeat_frames`](crate::client::ClientBuilder::heartbeat_frames); by
    /// default the empty frame, where the framing has one) is never sent as data: the peer
    /// would take it as a ping. Turn heartbeats off to send it.
    ///
    /// # Errors
    /// [`ClientError::is_heartbeat_frame`] (not sent) for a heartbeat frame; unencodable
    /// (not sent); a failed reconnect ([`ClientError::is_connect`], not sent);
    /// or a write error or timeout: the error says it may have been sent when part of the
    /// frame may be on the wire (not sent when none of it left), and the connection is then
    /// broken.
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
        self.state
            .cfg
            .refuse_heartbeat_frame(frame)
            .map_err(|e| e.with_endpoint(Some(self.endpoint.clone())))?;
        if self.is_broken() {
            self.reconnect()?;
        }
        self.write(frame)
    }

    /// Writes `frame` on this connection, breaking it if the write fails part way.
    fn write(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        if let Err(e) = self.codec.encode_to(frame, &mut self.wbuf) {
            self.wbuf.clear();
            return Err(frame_err(Delivery::NotSent, &self.endpoint, e));
        }
        self.write_queued()
    }

    /// Writes what `wbuf` holds (a request, pongs, pings) with the pipeline's write step,
    /// breaking the connection if it fails.
    fn write_queued(&mut self) -> Result<(), ClientError> {
        let buf = std::mem::take(&mut self.wbuf);
        if let Some(why) = &self.broken {
            return Err(ClientError::new(
                ClientErrorKind::Closed,
                Delivery::NotSent,
                format!("connection unusable after {why}; send or reconnect opens a new one"),
            )
            .with_endpoint(Some(self.endpoint.clone())));
        }
        let res = write_bytes(&self.state.cfg, self.reader.get_ref(), &self.endpoint, &buf);
        if res.is_err() {
            self.broken = Some("a failed write".into());
        }
        res?;
        self.live.on_write(Instant::now());
        Ok(())
    }

    /// A read error: the codec may be mid-frame or failed, so the connection is broken.
    fn read_failed(&mut self, e: FrameError) -> ClientError {
        self.broken = Some("a failed read".into());
        frame_err(Delivery::SentNoReply, &self.endpoint, e)
    }

    /// Sends `frame` and waits at most the request timeout for the next application frame.
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
        let timeout = self.state.cfg.request_timeout;
        match self.recv(timeout, true)? {
            Some(f) => {
                self.state.proven(self.ep);
                Ok(f)
            }
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
                    self.strays.timeout_detail(timeout),
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
        let state = Arc::clone(&self.state);
        let tick = Step {
            heartbeat: state.cfg.heartbeat.as_deref(),
            live: &mut self.live,
            codec: &self.codec,
            wbuf: &mut self.wbuf,
        }
        .timer(Instant::now());
        match tick {
            Err(e) => {
                self.wbuf.clear();
                Err(frame_err(Delivery::NotSent, &self.endpoint, e))
            }
            Ok(Tick::Pings(0)) => Ok(()),
            Ok(Tick::Pings(_)) => self.write_queued(),
            Ok(Tick::Close(_)) => {
                // Failed like any other failure: the next send reconnects rather than
                // wait out a request on a dead peer.
                self.broken = Some("a peer that stopped answering heartbeats".into());
                Err(self.dead_peer())
            }
        }
    }

    /// The error of a peer that stopped answering heartbeats.
    fn dead_peer(&self) -> ClientError {
        ClientError::new(
            ClientErrorKind::Dead,
            Delivery::NotSent,
            "peer stopped answering heartbeats",
        )
        .with_endpoint(Some(self.endpoint.clone()))
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_tick(&self) -> Option<Instant> {
        self.live.next_deadline()
    }

    /// Heartbeat handling of one inbound frame, through the pipeline's inbound step; the
    /// frame back if it is application data. `awaiting`: a request awaits its reply, so
    /// same-bytes heartbeats that are not our pong go through the storm guard of
    /// [`Liveness::on_frame_awaiting`].
    fn on_frame(&mut self, f: Bytes, awaiting: bool) -> Result<Option<Bytes>, ClientError> {
        let state = Arc::clone(&self.state);
        let inbound = Step {
            heartbeat: state.cfg.heartbeat.as_deref(),
            live: &mut self.live,
            codec: &self.codec,
            wbuf: &mut self.wbuf,
        }
        .inbound(f.clone(), Instant::now(), awaiting);
        let inbound = match inbound {
            Ok(i) => i,
            Err(e) => return Err(frame_err(Delivery::NotSent, &self.endpoint, e)),
        };
        if inbound.came_instead_of_reply() {
            self.strays.seen = self.strays.seen.saturating_add(1);
            self.strays.absorbed |= matches!(inbound, Inbound::Absorbed { .. });
            self.strays.frame = f;
        }
        match inbound {
            Inbound::Data(f) => Ok(Some(f)),
            Inbound::Pong | Inbound::Absorbed { .. } => Ok(None),
            Inbound::PongQueued { .. } => {
                self.write_queued()?;
                Ok(None)
            }
        }
    }
}
