//! [`HttpClient`]: HTTP/1.x requests on one kept connection, reused only while the
//! responses allow it (RFC 9112 §9.3), built on a plain socket and the `http` codec.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

use super::message;
use super::{HttpError, HttpErrorKind};
use crate::frame::http::HttpSpec;
use crate::frame::{FrameCodec, FramingSpec};

/// One response: the frame as it came, and what was read from it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Response {
    /// The whole message as it came on the wire.
    pub frame: Bytes,
    /// Its status, version, `Connection` options and de-chunked body.
    pub head: message::Response,
}

/// An HTTP/1.x client on one connection at a time: it connects when it has none, writes
/// requests, reads their responses in order, and keeps the connection only while the
/// responses allow it (an HTTP/1.0 response without `keep-alive`, or `Connection: close`,
/// closes it; a request of ours with `Connection: close` too). Interim (1xx) responses are
/// skipped.
///
/// ```
/// use keepwire::http::{HttpClient, HttpReply, HttpService, KeepAlive};
/// use keepwire::server::{Server, ServerConfig};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::bind("127.0.0.1:0", ServerConfig::new("http".parse()?)).await?;
/// let addr = server.local_addr();
/// let stop = server.shutdown_token();
/// let svc = HttpService::new(HttpReply::Echo, "text/plain", KeepAlive::default());
/// let task = tokio::spawn(server.serve(svc));
///
/// let mut client = HttpClient::new(addr, Duration::from_secs(5));
/// let req = &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"[..];
/// for _ in 0..3 {
///     let resp = client.request(req).await?;
///     assert_eq!(&resp.head.body[..], b"hi");
/// }
/// assert_eq!(client.connections_opened(), 1);
/// stop.cancel();
/// task.await??;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HttpClient {
    addr: SocketAddr,
    timeout: Duration,
    spec: HttpSpec,
    conn: Option<Conn>,
    opened: u64,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    codec: FrameCodec,
    rbuf: BytesMut,
    eof: bool,
}

impl HttpClient {
    /// A client of `addr`; `timeout` bounds each connect and each response.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        HttpClient {
            addr,
            timeout,
            spec: HttpSpec::default(),
            conn: None,
            opened: 0,
        }
    }

    /// This client with the framing limits of `spec` for responses.
    #[must_use]
    pub fn with_spec(mut self, spec: HttpSpec) -> Self {
        self.spec = spec;
        self
    }

    /// Connections opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.opened
    }

    /// Whether a connection is open and may carry the next request.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Sends one request (a whole HTTP/1.x message) and reads its response. A request on a
    /// reused connection that the server had closed or reset meanwhile is sent again once
    /// on a new connection when its method is idempotent (RFC 9110 §9.2.2; RFC 9112 §9.3.1
    /// allows the retry).
    ///
    /// # Errors
    /// [`HttpError`]: connect or socket failure, no response in time, the server closed
    /// first, or a response the framing refuses.
    ///
    /// # Cancel safety
    /// Not cancel safe: a dropped call leaves the connection mid-exchange; it is closed by
    /// the next call's failure. Drop the client instead.
    pub async fn request(&mut self, req: &[u8]) -> Result<Response, HttpError> {
        let reused = self.conn.is_some();
        match self.pipeline(&[req]).await {
            Err(e) if reused && lost_connection(&e) && idempotent(req) => {
                let mut all = self.pipeline(&[req]).await?;
                all.pop()
                    .ok_or_else(|| HttpError::new(HttpErrorKind::Closed))
            }
            Err(e) => Err(e),
            Ok(mut all) => all
                .pop()
                .ok_or_else(|| HttpError::new(HttpErrorKind::Closed)),
        }
    }

    /// Writes every request at once, then reads their responses in order (pipelining, RFC
    /// 9112 §9.3.2). The connection is dropped after a response that does not allow reuse;
    /// requests after it then fail with [`HttpError::is_closed`].
    ///
    /// # Errors
    /// As [`request`](Self::request), without the retry.
    ///
    /// # Cancel safety
    /// As [`request`](Self::request).
    pub async fn pipeline(&mut self, reqs: &[&[u8]]) -> Result<Vec<Response>, HttpError> {
        // A kept connection that already has bytes or an EOF waiting was spoiled by the
        // server (a body after a 204 or 304, a close it did not announce): not reused.
        let mut conn = match self.conn.take().filter(|c| !c.spoiled()) {
            Some(c) => c,
            None => self.connect().await?,
        };
        let mut wire = BytesMut::new();
        for r in reqs {
            conn.codec.encode(*r, &mut wire)?;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        match tokio::time::timeout_at(deadline, conn.stream.write_all(&wire)).await {
            Err(_) => return Err(HttpError::new(HttpErrorKind::Timeout(self.timeout))),
            Ok(r) => r?,
        }
        let mut out = Vec::with_capacity(reqs.len());
        let mut keep = true;
        for r in reqs {
            let resp = conn.read_final(deadline, self.timeout).await?;
            keep = resp.head.allows_reuse() && !asks_close(r);
            out.push(resp);
            if !keep {
                break;
            }
        }
        if out.len() < reqs.len() {
            return Err(HttpError::new(HttpErrorKind::Closed));
        }
        if keep && !conn.eof {
            self.conn = Some(conn);
        }
        Ok(out)
    }

    async fn connect(&mut self) -> Result<Conn, HttpError> {
        let stream = match tokio::time::timeout(self.timeout, TcpStream::connect(self.addr)).await {
            Err(_) => return Err(HttpError::new(HttpErrorKind::Timeout(self.timeout))),
            Ok(r) => r?,
        };
        let _ = stream.set_nodelay(true);
        self.opened += 1;
        Ok(Conn {
            stream,
            codec: FrameCodec::new(FramingSpec::Http(self.spec)),
            rbuf: BytesMut::new(),
            eof: false,
        })
    }
}

impl Conn {
    /// Whether the server sent anything between our exchanges: bytes no request asked for
    /// (curl's "excess found"), an EOF, or an error. Reading them as the next response
    /// would hand one request another's leftovers.
    fn spoiled(&self) -> bool {
        if !self.rbuf.is_empty() || self.eof {
            return true;
        }
        // A peek on the (non-blocking) socket itself: tokio's `try_read` would answer
        // from its cached readiness without asking the kernel.
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&self.stream).peek(&mut probe) {
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            Ok(_) => true,
        }
    }

    /// The next final (non-1xx) response.
    async fn read_final(
        &mut self,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        loop {
            let frame = self.read_frame(deadline, timeout).await?;
            let head = message::Response::parse(&frame)?;
            if !(100..200).contains(&head.status) {
                return Ok(Response { frame, head });
            }
        }
    }

    async fn read_frame(
        &mut self,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Bytes, HttpError> {
        loop {
            let got = if self.eof {
                self.codec.decode_eof(&mut self.rbuf)?
            } else {
                self.codec.decode(&mut self.rbuf)?
            };
            if let Some(frame) = got {
                return Ok(frame);
            }
            if self.eof {
                return Err(HttpError::new(HttpErrorKind::Closed));
            }
            self.rbuf.reserve(4096);
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf));
            match read.await {
                Err(_) => return Err(HttpError::new(HttpErrorKind::Timeout(timeout))),
                Ok(Ok(0)) => self.eof = true,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }
}

/// Whether a kept connection was lost under the request: closed, or reset (a peer that
/// had closed resets our write; the read then fails with "reset" or, in CLOSE_WAIT, "broken
/// pipe"). RFC 9112 §9.3.1: "When an inbound connection is closed prematurely, a client MAY
/// open a new connection and automatically retransmit an aborted sequence of requests if
/// all of those requests have idempotent methods".
fn lost_connection(e: &HttpError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    match e.kind() {
        HttpErrorKind::Closed => true,
        HttpErrorKind::Io(io) => {
            matches!(io.kind(), BrokenPipe | ConnectionAborted | ConnectionReset)
        }
        _ => false,
    }
}

/// RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT and DELETE may be sent again.
fn idempotent(req: &[u8]) -> bool {
    let method = req.split(|&b| b == b' ').next().unwrap_or_default();
    [
        &b"GET"[..],
        b"HEAD",
        b"OPTIONS",
        b"TRACE",
        b"PUT",
        b"DELETE",
    ]
    .contains(&method)
}

/// Whether our request says `Connection: close`.
fn asks_close(req: &[u8]) -> bool {
    message::Request::parse(req).is_ok_and(|r| r.connection.close)
}
