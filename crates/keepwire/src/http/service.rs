//! [`HttpService`]: the handler `keepwire serve --framing http` runs, answering every
//! request with 200 and a canned or echoed body, per the persistence rules of
//! [`persist`](super::persist).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use tower::Service;

use super::message::{self, ConnectionOptions};
use super::persist::{KeepAlive, Persistence, persistent};
use crate::frame::http::HttpHead;
use crate::server::{Answer, Request};

/// The body a [`HttpService`] answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpReply {
    /// The request's body (de-chunked).
    Echo,
    /// These bytes.
    Fixed(Bytes),
}

/// A handler answering each request with `200 OK`, a `Content-Type` and the [`HttpReply`]
/// body (none to `HEAD`), keeping or closing the connection as [`Persistence::decide`]
/// says; 400 to a request without exactly one `Host` (one at most in HTTP/1.0) and 501 to
/// a transfer coding other than `chunked`, each with a close. A frame that is not a request (a response sent to a server) is answered 400 and
/// the connection closes. Cloned per connection by the server: the clone counts that
/// connection's requests for [`KeepAlive::max_requests`].
///
/// ```
/// use keepwire::http::{HttpReply, HttpService, KeepAlive};
/// use keepwire::server::{Server, ServerConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::bind("127.0.0.1:0", ServerConfig::new("http".parse()?)).await?;
/// let addr = server.local_addr();
/// let stop = server.shutdown_token();
/// let svc = HttpService::new(HttpReply::Fixed("hi".into()), "text/plain", KeepAlive::default());
/// let task = tokio::spawn(server.serve(svc));
///
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// let mut c = tokio::net::TcpStream::connect(addr).await?;
/// c.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
/// let mut resp = Vec::new();
/// c.read_to_end(&mut resp).await?; // HTTP/1.0 without keep-alive: the server closes
/// assert!(resp.starts_with(b"HTTP/1.1 200 OK\r\n"));
/// assert!(resp.ends_with(b"Connection: close\r\n\r\nhi"));
/// stop.cancel();
/// task.await??;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpService {
    /// What every connection's clone shares: a server clones the service per connection,
    /// and the clone lives in the connection's task for as long as it is open (16 bytes
    /// with this `Arc`, 112 with the fields inline).
    config: Arc<Config>,
    /// Requests this connection has carried.
    served: u64,
}

/// An [`HttpService`]'s settings, shared by its clones.
#[derive(Debug)]
struct Config {
    reply: HttpReply,
    content_type: Bytes,
    keep_alive: KeepAlive,
    /// A [`HttpReply::Fixed`] reply's responses, built once: see
    /// [`HttpService::canned`].
    canned: Option<[Bytes; 6]>,
}

impl HttpService {
    /// A handler answering `reply` as `content_type`, under the `keep_alive` settings.
    pub fn new(reply: HttpReply, content_type: &str, keep_alive: KeepAlive) -> Self {
        let content_type = Bytes::copy_from_slice(content_type.as_bytes());
        let canned = match &reply {
            HttpReply::Fixed(body) => Some(CANNED.map(|(connection, head_only)| {
                let p = Persistence {
                    keep: true,
                    connection,
                    keep_alive: None,
                };
                response(200, "OK", &content_type, body, &p, head_only)
            })),
            HttpReply::Echo => None,
        };
        HttpService {
            config: Arc::new(Config {
                reply,
                content_type,
                keep_alive,
                canned,
            }),
            served: 0,
        }
    }

    /// The prebuilt `200` response for `p` and `head_only`, when the reply is fixed and
    /// `p` sends no `Keep-Alive` field: the response is then one of [`CANNED`], and a
    /// clone of it costs no allocation and no copy.
    fn canned(&self, p: &Persistence, head_only: bool) -> Option<Bytes> {
        if p.keep_alive.is_some() {
            return None;
        }
        let i = CANNED
            .iter()
            .position(|&(c, h)| c == p.connection && h == head_only)?;
        self.config.canned.as_ref()?.get(i).cloned()
    }

    /// The answer to one request frame; `draining`: the server is shutting down. The head
    /// is parsed here; a server's requests carry the codec's reading of it instead
    /// ([`Request::http_head`]), which the [`Service`] impl uses.
    pub fn answer(&mut self, frame: &Bytes, draining: bool) -> Answer {
        self.respond(frame, None, draining)
    }

    /// The answer to one request frame, read from `head` when given (it describes `frame`),
    /// else parsed.
    fn respond(&mut self, frame: &Bytes, head: Option<&HttpHead>, draining: bool) -> Answer {
        self.served = self.served.saturating_add(1);
        let facts = match head {
            Some(h) => Some(Facts::of_head(h)),
            None => message::Request::parse_bytes(frame)
                .ok()
                .map(Facts::of_request),
        };
        // A request without exactly one Host (HTTP/1.1), or with two: 400 (RFC 9112 §3.2).
        let Some(req) = facts.filter(|f| !f.bad_host) else {
            return bad_request();
        };
        // RFC 9112 §6.1: "A server that receives a request message with a transfer coding
        // it does not understand SHOULD respond with 501 (Not Implemented)" (nginx does);
        // echoed, a gzip body would go back still gzipped under a plain Content-Length.
        if req.other_coding {
            let no =
                b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            return Answer::one(Bytes::from_static(no)).then_close();
        }
        let p = Persistence::decide(
            req.version,
            req.connection,
            self.served,
            &self.config.keep_alive,
            draining,
        );
        let resp = match self.canned(&p, req.head_only) {
            Some(resp) => resp,
            None => match self.build(frame, req.body, &p, req.head_only) {
                Some(resp) => resp,
                None => return bad_request(),
            },
        };
        let answer = Answer::one(resp);
        if p.keep {
            answer
        } else if !persistent(req.version, req.connection) {
            // The client asked for the close (1.0 without keep-alive, `Connection: close`).
            answer.then_close_asked()
        } else {
            answer.then_close()
        }
    }

    /// Builds the `200` response; `None` when the body to echo is not well formed.
    fn build(&self, frame: &Bytes, body: Body, p: &Persistence, head_only: bool) -> Option<Bytes> {
        let body = match &self.config.reply {
            HttpReply::Echo => match body {
                Body::Read(b) => b,
                Body::At { head, chunked } => message::body(frame, head, chunked).ok()?,
            },
            HttpReply::Fixed(b) => b.clone(),
        };
        Some(response(
            200,
            "OK",
            &self.config.content_type,
            &body,
            p,
            head_only,
        ))
    }
}

/// The `Connection` field and `HEAD` or not of the responses a fixed reply prebuilds: every
/// [`Persistence`] without `Keep-Alive` fields sends one of these `Connection` values.
const CANNED: [(Option<&str>, bool); 6] = [
    (None, false),
    (None, true),
    (Some("keep-alive"), false),
    (Some("keep-alive"), true),
    (Some("close"), false),
    (Some("close"), true),
];

/// 400 and a close: a malformed request, or one with a bad `Host`.
fn bad_request() -> Answer {
    let bad = Bytes::from_static(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    Answer::one(bad).then_close()
}

/// What the answer to a request depends on, from the codec's [`HttpHead`] or a parse.
struct Facts {
    version: u8,
    connection: ConnectionOptions,
    bad_host: bool,
    other_coding: bool,
    head_only: bool,
    body: Body,
}

/// The request's body: read already, or where it is in the frame (read only to echo it).
enum Body {
    Read(Bytes),
    At { head: usize, chunked: bool },
}

impl Facts {
    fn of_head(h: &HttpHead) -> Facts {
        Facts {
            version: h.version(),
            connection: ConnectionOptions {
                close: h.close(),
                keep_alive: h.keep_alive(),
            },
            bad_host: h.bad_host(),
            other_coding: h.other_coding(),
            head_only: h.is_head(),
            body: Body::At {
                head: h.head_len(),
                chunked: h.chunked(),
            },
        }
    }

    fn of_request(r: message::Request) -> Facts {
        Facts {
            version: r.version,
            connection: r.connection,
            bad_host: r.bad_host(),
            other_coding: r.other_coding,
            head_only: r.is_head(),
            body: Body::Read(r.body),
        }
    }
}

/// An HTTP/1.1 response: status line, `Content-Type`, `Content-Length`, the persistence
/// fields, and the body unless `head_only`.
///
/// ```
/// use keepwire::http::{KeepAlive, Persistence};
/// use keepwire::http::message::ConnectionOptions;
/// let p = Persistence::decide(1, ConnectionOptions::default(), 1, &KeepAlive::default(), false);
/// let r = keepwire::http::service_response(404, "Not Found", b"text/plain", b"no", &p, false);
/// assert_eq!(&r[..], b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nno");
/// ```
pub fn response(
    status: u16,
    reason: &str,
    content_type: &[u8],
    body: &[u8],
    p: &Persistence,
    head_only: bool,
) -> Bytes {
    let mut out = BytesMut::with_capacity(128 + content_type.len() + body.len());
    // Appended piece by piece: `write!` through core::fmt cost more than the rest of the
    // response together.
    let mut digits = itoa::Buffer::new();
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(digits.format(status).as_bytes());
    out.put_u8(b' ');
    out.put_slice(reason.as_bytes());
    out.put_slice(b"\r\n");
    if !content_type.is_empty() {
        out.put_slice(b"Content-Type: ");
        out.put_slice(content_type);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Content-Length: ");
    out.put_slice(digits.format(body.len()).as_bytes());
    out.put_slice(b"\r\n");
    if let Some(c) = p.connection {
        out.put_slice(b"Connection: ");
        out.put_slice(c.as_bytes());
        out.put_slice(b"\r\n");
    }
    if let Some((secs, left)) = p.keep_alive {
        out.put_slice(b"Keep-Alive: timeout=");
        out.put_slice(digits.format(secs).as_bytes());
        if let Some(left) = left {
            out.put_slice(b", max=");
            out.put_slice(digits.format(left).as_bytes());
        }
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    if !head_only {
        out.put_slice(body);
    }
    out.freeze()
}

impl Service<Request> for HttpService {
    type Response = Answer;
    type Error = Infallible;
    type Future = Ready<Result<Answer, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        ready(Ok(self.respond(&req.frame, req.http_head(), req.draining)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(max: u64) -> HttpService {
        let ka = KeepAlive {
            max_requests: max,
            ..KeepAlive::default()
        };
        HttpService::new(HttpReply::Echo, "text/plain", ka)
    }

    #[test]
    fn echo_keeps_and_closes_per_request() {
        let mut s = svc(2);
        let a = s.answer(
            &Bytes::from_static(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"),
            false,
        );
        assert!(!a.closes());
        assert!(a.frames()[0].ends_with(b"Content-Length: 2\r\n\r\nhi"));
        let a = s.answer(
            &Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            false,
        );
        assert!(a.closes(), "the second of max 2 closes");
        assert!(a.frames()[0].ends_with(b"Connection: close\r\n\r\n"));
    }

    #[test]
    fn the_codec_summary_answers_as_a_parse_does() {
        use crate::frame::{FrameCodec, FramingSpec};
        use tokio_util::codec::Decoder;
        let wire = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\
HEAD / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx\
POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\ny\r\n0\r\nT: 1\r\n\r\n\
GET / HTTP/1.0\r\n\r\n\
GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n\
GET / HTTP/1.1\r\n\r\n\
PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
        for reply in [HttpReply::Echo, HttpReply::Fixed("abc".into())] {
            for draining in [false, true] {
                let mut codec = FrameCodec::new(FramingSpec::Http(Default::default()));
                let mut buf = BytesMut::from(&wire[..]);
                let ka = KeepAlive {
                    max_requests: 3,
                    ..KeepAlive::default()
                };
                let (mut parsed, mut summed) = (
                    HttpService::new(reply.clone(), "t", ka),
                    HttpService::new(reply.clone(), "t", ka),
                );
                let mut n = 0;
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    let head = codec.take_http_head().unwrap();
                    assert_eq!(
                        summed.respond(&frame, Some(&head), draining),
                        parsed.answer(&frame, draining),
                        "frame {n}"
                    );
                    n += 1;
                }
                assert_eq!(n, 7);
            }
        }
    }

    #[test]
    fn canned_responses_are_the_ones_built() {
        let frames: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            b"HEAD / HTTP/1.0\r\n\r\n",
        ];
        for advertise in [false, true] {
            let ka = KeepAlive {
                max_requests: 4,
                timeout: Some(std::time::Duration::from_secs(5)),
                advertise,
            };
            let mut s = HttpService::new(HttpReply::Fixed("abc".into()), "t/p", ka);
            for (nth, frame) in frames.iter().enumerate() {
                let req = message::Request::parse(frame).unwrap();
                let nth = (nth % 4 + 1) as u64;
                s.served = nth - 1;
                let p = Persistence::decide(req.version, req.connection, nth, &ka, false);
                let want = response(200, "OK", b"t/p", b"abc", &p, req.is_head());
                let got = s.answer(&Bytes::copy_from_slice(frame), false);
                assert_eq!(got.frames()[0], want, "{}", String::from_utf8_lossy(frame));
            }
        }
    }

    #[test]
    fn head_gets_no_body_and_responses_get_400() {
        let mut s = HttpService::new(HttpReply::Fixed("abc".into()), "", KeepAlive::default());
        let a = s.answer(
            &Bytes::from_static(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"),
            false,
        );
        assert!(a.frames()[0].ends_with(b"Content-Length: 3\r\n\r\n"));
        let a = s.answer(&Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"), false);
        assert!(a.closes() && a.frames()[0].starts_with(b"HTTP/1.1 400 "));
        let a = s.answer(
            &Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            true,
        );
        assert!(a.closes(), "draining closes");
    }
}
