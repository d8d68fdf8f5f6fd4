//! [`ShortClient`]: a connection per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::connect::Connected;
use super::core::ShortRetry;
use super::error::{ClientError, ClientErrorKind, Delivery};
use super::state::ClientState;
use super::{ClientStats, EndpointStatus};
use crate::frame::FrameCodec;
use crate::pipeline::{WriteAll, WriteError};

/// Short connections: each request connects (within the connect timeout per endpoint,
/// trying the endpoints in order and skipping those that fail), writes, reads the one reply
/// and closes, all of it within the request timeout: a SYN-dropping endpoint or a peer that
/// does not read cannot stretch a request past it. The client closes first, so the TIME_WAIT socket stays on the
/// client (RFC 9293 §3.6), which is what `keepwire serve --mode short` waits for. Under `eof`
/// framing the client half-closes after writing so the server sees where the request ends.
///
/// A request that could not be written to one endpoint (connect failed, or the write failed
/// before a byte left) moves to the next one. One that may have been sent is retried only
/// with [`ClientBuilder::retry_sent`](super::ClientBuilder::retry_sent).
///
/// ```
/// use bytes::Bytes;
/// use keepwire::client::ClientBuilder;
/// # use keepwire::server::{Mode, Request, Server, ServerConfig, service_fn};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let mut cfg = ServerConfig::new("len:ascii:4".parse()?);
/// # cfg.mode = Mode::Short;
/// # let server = Server::bind("127.0.0.1:0", cfg).await?;
/// # let addr = server.local_addr().to_string();
/// # tokio::spawn(server.serve(service_fn(|r: Request| async move { Ok::<_, std::convert::Infallible>(Some(r.frame)) })));
/// // The first endpoint refuses: the request goes to the second.
/// let client = ClientBuilder::new("len:ascii:4".parse()?, ["127.0.0.1:1".to_string(), addr]).build_short();
/// assert_eq!(client.request(Bytes::from_static(b"ping")).await?, "ping");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ShortClient {
    state: Arc<ClientState>,
}

/// How one attempt on one connection ended.
enum Attempt {
    Reply(Bytes),
    /// Failed; `next` says the request may move to another endpoint.
    Failed {
        err: ClientError,
        next: bool,
    },
}

impl ShortClient {
    pub(crate) fn new(state: Arc<ClientState>) -> Self {
        ShortClient { state }
    }

    /// Connects, sends `frame`, reads the reply and closes.
    ///
    /// # Errors
    /// [`ClientError::is_connect`] naming every endpoint when none could be connected to;
    /// otherwise an error saying whether the request may have been sent.
    ///
    /// # Cancel safety
    /// Dropping the future closes the connection; whether the request was sent is then
    /// unknown.
    pub async fn request(&self, frame: Bytes) -> Result<Bytes, ClientError> {
        self.request_via(frame).await.map(|(reply, _)| reply)
    }

    /// [`request`](Self::request), also saying which endpoint answered.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    ///
    /// # Cancel safety
    /// As [`request`](Self::request).
    pub async fn request_via(&self, frame: Bytes) -> Result<(Bytes, String), ClientError> {
        let cfg = &self.state.cfg;
        // A short server answers heartbeats too (a probe before the request), so the
        // heartbeat frame is never a request here either.
        cfg.validate()?;
        cfg.refuse_heartbeat_frame(&frame)?;
        let deadline = crate::deadline::std_in(cfg.request_timeout);
        let mut retried_sent = false;
        let mut failures: Vec<super::EndpointFailure> = Vec::new();
        loop {
            // The request timeout covers the connect too: a plan of SYN-dropping
            // endpoints must not take each one's whole connect timeout past it.
            let by = Some((deadline, cfg.request_timeout));
            let c = match self.state.connect_plan_by(by).await {
                Ok(c) => c,
                Err(e) => {
                    if failures.is_empty() {
                        return Err(e);
                    }
                    // Earlier attempts failed after connecting: report those too.
                    let mut all = failures;
                    all.extend(e.endpoints().iter().cloned());
                    return Err(ClientError::connect(all));
                }
            };
            super::state::inc(&self.state.counters.connects);
            let ep = c.ep;
            let addr = c.addr.clone();
            match self.attempt(c, &frame, deadline).await {
                Attempt::Reply(r) => {
                    self.state.proven(ep);
                    return Ok((r, addr));
                }
                Attempt::Failed { err, next } => {
                    let retry = ShortRetry {
                        not_sent: next,
                        retry_sent: cfg.retry_sent,
                        retried_sent,
                        out_of_time: Instant::now() >= deadline,
                        endpoints: cfg.endpoints.len(),
                        attempts: failures.len().saturating_add(1),
                    };
                    if !retry.next_endpoint() {
                        return Err(err);
                    }
                    if !next {
                        retried_sent = true;
                    }
                    self.state.mark_down(ep, &err.to_string());
                    failures.push(super::EndpointFailure {
                        endpoint: addr,
                        reason: err.to_string(),
                    });
                }
            }
        }
    }

    async fn attempt(&self, mut c: Connected, frame: &[u8], deadline: Instant) -> Attempt {
        let cfg = &self.state.cfg;
        let ep = Some(c.addr.clone());
        let mut codec = FrameCodec::new(cfg.framing.clone());
        if let Err(err) = self
            .write_request(&mut c, &mut codec, frame, deadline)
            .await
        {
            return err;
        }
        let half_close = cfg.half_closes();
        if half_close {
            // Under `eof` framing the FIN is the end of the request.
            let _ = c.stream.shutdown().await;
        }
        let read = tokio::time::timeout_at(deadline.into(), read_reply(&mut c, &mut codec)).await;
        if matches!(read, Ok(Ok(_))) && !half_close {
            // The session's logout, answered, before our FIN.
            let mut buf = std::mem::take(&mut c.leftover);
            super::login::log_out(cfg, &mut c, &mut buf).await;
        }
        // We close first: our FIN, and TIME_WAIT on this side.
        if !half_close {
            c.close_notify();
            let _ = tokio::time::timeout(Duration::from_millis(100), c.stream.shutdown()).await;
        }
        drop(c.stream);
        match read {
            Ok(Ok(reply)) => Attempt::Reply(reply),
            Ok(Err(e)) => Attempt::Failed {
                err: e.with_endpoint(ep),
                next: false,
            },
            Err(_) => Attempt::Failed {
                err: ClientError::timeout(Delivery::SentNoReply, ep, cfg.request_timeout),
                next: false,
            },
        }
    }

    /// Encodes and writes `frame` with the pipeline's write step, bounded by the request
    /// `deadline` as well as the write timeout. The error says whether the request may move
    /// to the next endpoint (not a byte of it left).
    async fn write_request(
        &self,
        c: &mut Connected,
        codec: &mut FrameCodec,
        frame: &[u8],
        deadline: Instant,
    ) -> Result<(), Attempt> {
        let cfg = &self.state.cfg;
        let ep = Some(c.addr.clone());
        let mut out = BytesMut::new();
        if let Err(e) = codec.encode_to(frame, &mut out) {
            return Err(Attempt::Failed {
                err: ClientError::frame(Delivery::NotSent, ep, e),
                next: false,
            });
        }
        let (written, res) = c
            .write_with(
                WriteAll::new(cfg.write_timeout).with_deadline(deadline),
                &out,
            )
            .await;
        let Err(end) = res else {
            return Ok(());
        };
        let delivery = if written == 0 {
            Delivery::NotSent
        } else {
            Delivery::SentNoReply
        };
        let (err, next) = match end {
            // Out of time: no other endpoint would have any.
            WriteError::Deadline => {
                let why = format!(
                    "not written within {}",
                    humantime::format_duration(cfg.request_timeout)
                );
                let err = ClientError::new(ClientErrorKind::Timeout, delivery, why);
                (err.with_endpoint(ep), false)
            }
            e => (
                ClientError::io(delivery, ep, "write failed", e.into_io()),
                written == 0,
            ),
        };
        Err(Attempt::Failed { err, next })
    }

    /// Every endpoint's health (failures mark an endpoint down for the next requests).
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.state.status()
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.state.stats()
    }
}

request_service!(ShortClient);

/// Reads until the first whole frame: the reply. Nothing pings a short link after the
/// request (a short server never pings), so the first frame back is the reply, even the
/// empty frame.
async fn read_reply(c: &mut Connected, codec: &mut FrameCodec) -> Result<Bytes, ClientError> {
    let mut rbuf = std::mem::take(&mut c.leftover);
    let mut eof = false;
    loop {
        match crate::pipeline::decode(codec, &mut rbuf, eof) {
            Ok(Some(f)) => {
                // What follows the reply is kept for the logout.
                c.leftover = rbuf;
                return Ok(f);
            }
            Ok(None) if eof => {
                return Err(ClientError::new(
                    ClientErrorKind::Closed,
                    Delivery::SentNoReply,
                    "peer closed the connection without a reply",
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(ClientError::frame(Delivery::SentNoReply, None, e)),
        }
        rbuf.reserve(4096);
        match c.read(&mut rbuf).await {
            Ok(0) => eof = true,
            Ok(_) => {}
            Err(e) => {
                return Err(ClientError::io(
                    Delivery::SentNoReply,
                    None,
                    "read failed",
                    e,
                ));
            }
        }
    }
}
