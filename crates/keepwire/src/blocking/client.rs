//! Blocking clients over `std::net`: [`ShortClient`] and [`LongClient`], for code that is
//! not async. They take the async clients' configuration ([`ClientOptions`] is
//! [`ClientBuilder`]), try endpoints through the same [`EndpointSet`] health, apply the same
//! [`SocketOptions`](crate::socket::SocketOptions), frame with [`FrameReader`] (the same
//! sans-IO [`FrameCodec`]), run heartbeats through the same pipeline step and
//! [`Liveness`](crate::liveness::Liveness) state machine, and write with the pipeline's
//! write step; errors are the async clients' [`ClientError`], with the same not-sent /
//! may-have-been-sent verdict.
//!
//! [`EndpointSet`]: crate::client::EndpointSet

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::FrameReader;
use crate::client::ClientBuilder;
use crate::client::config::ClientConfig;
use crate::client::core::Matching;
use crate::client::state::ClientState;
use crate::client::{ClientError, ClientErrorKind, Delivery, EndpointFailure, EndpointStatus};
use crate::frame::{FrameCodec, FrameError};
use crate::pipeline::{WriteError, write_all_blocking};

/// Settings of a blocking client: the async clients' [`ClientBuilder`], under the name the
/// blocking clients always had.
///
/// The blocking clients read framing, endpoints (with the same down backoff), the connect,
/// request and write timeouts, socket options, heartbeat frames and pings; the settings of
/// a connection task or pool (queue, in-flight limit, reconnect backoff, fail-back, probe
/// on connect, unsolicited capacity, pool timeouts) do not apply. The request timeout
/// bounds the wait for a reply (the read timeout). Connect and write timeouts are handed to
/// the OS (`poll(2)`, `SO_SNDTIMEO`), which caps them at 2^31 - 1 ms, about 24.8 days:
/// `Duration::MAX` means that.
///
/// ```no_run
/// use std::time::Duration;
/// use keepwire::blocking::{ClientOptions, LongClient};
/// let opts = ClientOptions::new("len:ascii:4".parse().unwrap(), ["10.0.0.1:7000", "10.0.0.2:7000"])
///     .connect_timeout(Duration::from_secs(2))
///     .request_timeout(Duration::from_secs(5));
/// let mut client = LongClient::connect(opts)?;
/// let reply = client.request(b"0800")?;
/// # Ok::<(), keepwire::client::ClientError>(())
/// ```
pub type ClientOptions = ClientBuilder;

/// The longest timeout handed to the OS: 2^31 - 1 ms (about 24.8 days), `poll(2)`'s limit
/// (an `int` of milliseconds) and, at 1000 ticks a second, the BSDs' for `SO_SNDTIMEO`.
const MAX_OS_TIMEOUT: Duration = Duration::from_millis(0x7fff_ffff);

/// A connected socket: endpoint index and address.
#[derive(Debug)]
pub(super) struct Connected {
    pub(super) stream: TcpStream,
    pub(super) ep: usize,
    pub(super) addr: String,
}

/// Tries the endpoints in the order [`EndpointSet::plan`](crate::client::EndpointSet::plan)
/// gives; the first that connects wins, and every failure marks its endpoint down.
pub(super) fn connect(state: &ClientState) -> Result<Connected, ClientError> {
    refuse_async_only(&state.cfg)?;
    let plan = state.eps().plan(Instant::now());
    let mut failures = Vec::new();
    for ep in plan {
        let Some(addr) = state.eps().addr(ep).map(str::to_owned) else {
            continue;
        };
        match connect_one(&state.cfg, &addr) {
            Ok(stream) => {
                state.eps().mark_connected(ep);
                return Ok(Connected { stream, ep, addr });
            }
            Err(reason) => {
                state.mark_down(ep, &reason);
                failures.push(EndpointFailure {
                    endpoint: addr,
                    reason,
                });
            }
        }
    }
    Err(ClientError::connect(failures))
}

/// TLS and SOCKS5 are settings of the async clients; a blocking client given them says so
/// rather than connecting without them.
fn refuse_async_only(cfg: &ClientConfig) -> Result<(), ClientError> {
    #[cfg(feature = "tls")]
    if cfg.tls.is_some() {
        return Err(ClientError::config(
            "the blocking clients do not speak TLS: use blocking::tls_connect with \
             FrameReader/FrameWriter, or an async client",
        ));
    }
    #[cfg(feature = "socks")]
    if cfg.socks5.is_some() {
        return Err(ClientError::config(
            "the blocking clients do not connect through SOCKS5: use an async client",
        ));
    }
    let _ = cfg;
    Ok(())
}

/// One endpoint: every address it resolves to, each within the connect timeout, then the
/// socket options. The error is a reason for logs and [`ClientError`].
fn connect_one(cfg: &ClientConfig, addr: &str) -> Result<TcpStream, String> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?;
    let mut last = "the name resolved to no address".to_string();
    for a in addrs {
        match TcpStream::connect_timeout(&a, cfg.connect_timeout.min(MAX_OS_TIMEOUT)) {
            Ok(s) => {
                cfg.socket
                    .apply(&s)
                    .map_err(|e| format!("socket options: {e}"))?;
                return Ok(s);
            }
            Err(e) => last = format!("connect failed: {e}"),
        }
    }
    Err(last)
}

pub(super) fn frame_err(delivery: Delivery, ep: &str, e: FrameError) -> ClientError {
    ClientError::frame(delivery, Some(ep.to_owned()), e)
}

/// Encodes `frame` and writes it with the pipeline's write step (the write timeout bounds
/// the whole write). An unencodable frame is not sent; a write that fails may have left
/// part of it on the wire.
pub(super) fn write_frame(
    cfg: &ClientConfig,
    stream: &TcpStream,
    addr: &str,
    frame: &[u8],
) -> Result<(), ClientError> {
    let mut out = BytesMut::new();
    FrameCodec::new(cfg.framing.clone())
        .encode_to(frame, &mut out)
        .map_err(|e| frame_err(Delivery::NotSent, addr, e))?;
    write_bytes(cfg, stream, addr, &out)
}

/// Writes `buf` whole with the pipeline's write step.
pub(super) fn write_bytes(
    cfg: &ClientConfig,
    stream: &TcpStream,
    addr: &str,
    buf: &[u8],
) -> Result<(), ClientError> {
    let (written, res) = write_all_blocking(stream, buf, cfg.write_timeout);
    res.map_err(|e| write_err(addr, cfg.write_timeout, written, e))
}

/// A write that failed after `written` bytes: may have been sent when any left (part of
/// the frame may be on the wire), not sent when none did, as the async clients say.
fn write_err(ep: &str, write_timeout: Duration, written: usize, e: WriteError) -> ClientError {
    let (delivery, wire) = if written == 0 {
        (Delivery::NotSent, "none of it left")
    } else {
        (Delivery::SentNoReply, "part of it may be on the wire")
    };
    if e.is_stalled() {
        return ClientError::new(
            ClientErrorKind::Timeout,
            delivery,
            format!(
                "writing the request took over {} (the peer is not reading): {wire}, so the \
                 next request opens a new connection",
                humantime::format_duration(write_timeout)
            ),
        )
        .with_endpoint(Some(ep.to_owned()));
    }
    ClientError::io(
        delivery,
        Some(ep.to_owned()),
        &format!("writing the request ({wire}: the next request opens a new connection)"),
        e.into_io(),
    )
}

/// A blocking short client: each request connects, writes, reads one reply within the
/// request timeout and closes (the client closes first; under `eof` framing it half-closes
/// after writing). Endpoints that refuse are skipped, and marked down for the next requests.
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
    state: Arc<ClientState>,
}

impl ShortClient {
    /// A short client with these options.
    pub fn new(opts: ClientOptions) -> Self {
        ShortClient {
            state: Arc::new(ClientState::new(opts.into_config(), Matching::Fifo)),
        }
    }

    /// Connects, sends `frame`, reads the reply and closes.
    ///
    /// # Errors
    /// [`ClientError::is_config`] when [`ClientBuilder::validate`] refuses the options;
    /// [`ClientError::is_connect`] (not sent) naming every endpoint when none connects;
    /// otherwise an error saying whether the request may have been sent.
    pub fn request(&self, frame: &[u8]) -> Result<Bytes, ClientError> {
        let cfg = &self.state.cfg;
        cfg.validate()?;
        cfg.refuse_heartbeat_frame(frame)?;
        let c = connect(&self.state)?;
        write_frame(cfg, &c.stream, &c.addr, frame)?;
        if cfg.half_closes() {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        let (ep, addr) = (c.ep, c.addr);
        let mut reader = FrameReader::new(c.stream, cfg.framing.clone());
        let reply = reader.read_frame_timeout(cfg.request_timeout);
        let _ = reader.get_ref().shutdown(std::net::Shutdown::Both);
        match reply {
            Ok(Some(f)) => {
                self.state.proven(ep);
                Ok(f)
            }
            Ok(None) if reader.is_eof() => Err(ClientError::new(
                ClientErrorKind::Closed,
                Delivery::SentNoReply,
                "peer closed the connection without a reply",
            )
            .with_endpoint(Some(addr))),
            Ok(None) => Err(ClientError::timeout(
                Delivery::SentNoReply,
                Some(addr),
                cfg.request_timeout,
            )),
            Err(e) => Err(frame_err(Delivery::SentNoReply, &addr, e)),
        }
    }

    /// Every endpoint's health: a failed endpoint is marked down and tried last until its
    /// retry time, as on the async clients.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.state.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Broke (hostile review of issue 10): the blocking clients reported every failed write
    /// as "may have been sent", even when not a byte of the request left. On a socket a
    /// silent peer has already filled, a request that fails takes nothing with it: not sent.
    #[test]
    fn a_write_that_wrote_nothing_is_not_sent() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let w = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (silent, _) = l.accept().unwrap();
        socket2::SockRef::from(&w)
            .set_send_buffer_size(64 << 10)
            .unwrap();
        socket2::SockRef::from(&silent)
            .set_recv_buffer_size(64 << 10)
            .unwrap();
        let mut cfg =
            crate::client::ClientBuilder::new("len:ascii:4".parse().unwrap(), ["127.0.0.1:1"])
                .write_timeout(Duration::from_millis(100))
                .into_config();
        // Fill both socket buffers: the first stalled write leaves part of itself behind.
        let fill = vec![b'x'; 8 << 20];
        let e = write_bytes(&cfg, &w, "peer", &fill).unwrap_err();
        assert!(!e.is_not_sent(), "{e}");
        cfg.write_timeout = Duration::ZERO;
        let e = write_bytes(&cfg, &w, "peer", b"0003abc").unwrap_err();
        assert!(e.is_not_sent(), "{e}");
    }
}
