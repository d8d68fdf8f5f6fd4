//! HTTP/1.x messages: `http[:max=N][:max_head=N][:max_headers=N]`.
//!
//! One frame is one whole HTTP/1.0 or HTTP/1.1 message, request or response, exactly as it
//! came on the wire: the head (start line, header fields, empty line) and the body in its
//! transfer coding. The codec finds where the message ends (RFC 9112 §6.3, "Message Body
//! Length"); [`crate::http`] reads the head and the decoded body out of a frame.
//!
//! ```text
//! +---------------- head (httparse) ----------------+------------- body -------------+
//! | start line CRLF  *( field-line CRLF )  CRLF     | Content-Length bytes,          |
//! |                                                 | chunked (to the 0 chunk and    |
//! |                                                 | its trailers), or until close  |
//! +-------------------------------------------------+--------------------------------+
//! ```
//!
//! The body length, in the order RFC 9112 §6.3 gives it:
//!
//! | message                                         | body                              |
//! |-------------------------------------------------|-----------------------------------|
//! | response to HEAD; status 1xx, 204 or 304        | none, whatever the head says      |
//! | `Transfer-Encoding` with `Content-Length`       | refused (request smuggling, §6.3 ¶3) |
//! | `Transfer-Encoding` in an HTTP/1.0 message      | refused (§6.1: "faulty" framing)  |
//! | `Transfer-Encoding` ending in `chunked`         | chunked, trailers read and bounded |
//! | other `Transfer-Encoding`: request / response   | refused (§6.3 ¶4: 400) / until close |
//! | `Content-Length` (equal repeats allowed)        | that many bytes; differing values refused |
//! | request with neither                            | none                              |
//! | response with neither                           | until the server closes           |
//!
//! Examples, INPUT -> DECODED (the frame is the input, whole):
//!
//! ```text
//! "GET / HTTP/1.1\r\nHost: a\r\n\r\n"                         -> the same 27 bytes
//! "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"            -> the same bytes
//! "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n" -> the same
//! "HTTP/1.0 200 OK\r\n\r\nbody" then FIN                     -> the same bytes
//! "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2" -> error (differing lengths)
//! ```
//!
//! # Requests and responses
//! The codec takes both: a message whose first bytes are `HTTP/` is a response (a method is
//! a token, and `/` is not a token character), anything else a request. A response to a
//! `HEAD` request has a `Content-Length` but no body, which the response does not show: the
//! codec learns it from the requests it encodes through [`Encoder::encode`] (each request
//! encoded is remembered, in order, until its final response is decoded; `encode_to` takes
//! `&self` and remembers nothing). A client that writes requests some other way and sends
//! `HEAD` must encode them through the codec anyway. `101 Switching Protocols` ends HTTP on
//! the connection: what follows is not decoded as HTTP by anyone sane, nor here.
//!
//! # The request head's summary
//! Finding where a request ends takes parsing its head, and the fields a server then needs
//! (version, `Connection` options, `Host` count, codings, `HEAD` or not) are read in the same
//! pass: after each request frame, [`FrameCodec::take_http_head`] gives them as an
//! [`HttpHead`], so a server answers without parsing the head a second time. The summary
//! names the frame it describes ([`HttpHead::describes`]); responses get none.
//!
//! # Limits (defaults)
//! - `max_head` (16 KiB): the head, and the trailer section; past it a request gets 431.
//! - `max_headers` (100, at most 256): header fields in the head, and in the trailers; 431.
//! - `max` (8 MiB): the body (decoded chunk data); a `Content-Length` above it is refused
//!   before any body byte is buffered; 413. A chunked body's framing (size lines,
//!   extensions, CRLFs) may add at most as many bytes again (64 KiB at least), each size
//!   line at most 4096 bytes.
//!
//! Chunked framing is read strictly: every chunk line ends in CRLF, a chunk size is 1 to 16
//! hex digits, an extension starts with `;`. Heads are httparse's: obs-fold (a field line
//! starting with a space), a space before the colon and bare CRs are refused.
//!
//! [`Encoder::encode`]: tokio_util::codec::Encoder::encode
//! [`FrameCodec::take_http_head`]: super::FrameCodec::take_http_head

use std::collections::VecDeque;
use std::fmt;
use std::mem::MaybeUninit;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{FrameError, FrameErrorKind, FramePart};

/// Default largest head (and trailer section): 16 KiB.
pub const DEFAULT_MAX_HEAD: usize = 16 * 1024;
/// Default largest number of header fields: 100 (hyper's default).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// The largest `max_headers=` accepted: 256 (the parser's table lives on the stack).
pub const MAX_HEADERS_LIMIT: usize = 256;
/// The longest chunk-size line (size, extensions), bytes.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Requests encoded and not yet answered that a codec remembers (for `HEAD`).
pub const MAX_PENDING_REQUESTS: usize = 4096;

/// The limits of the `http` framing; see the [module doc](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HttpSpec {
    /// The largest body, bytes (`max=`).
    pub max_body: usize,
    /// The largest head and trailer section, bytes (`max_head=`).
    pub max_head: usize,
    /// The most header fields in a head or trailer section (`max_headers=`).
    pub max_headers: usize,
}

impl Default for HttpSpec {
    fn default() -> Self {
        HttpSpec {
            max_body: super::DEFAULT_MAX,
            max_head: DEFAULT_MAX_HEAD,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

impl HttpSpec {
    /// This spec with the largest body set to `n` bytes.
    ///
    /// ```
    /// use keepwire::frame::{FramingSpec, http::HttpSpec};
    /// let spec = FramingSpec::Http(HttpSpec::default().max_body(1024));
    /// assert_eq!(spec.to_string(), "http:max=1024");
    /// ```
    #[must_use]
    pub fn max_body(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }

    /// This spec with the largest head set to `n` bytes.
    #[must_use]
    pub fn max_head(mut self, n: usize) -> Self {
        self.max_head = n;
        self
    }
}

impl fmt::Display for HttpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("http")?;
        let d = HttpSpec::default();
        if self.max_body != d.max_body {
            write!(f, ":max={}", self.max_body)?;
        }
        if self.max_head != d.max_head {
            write!(f, ":max_head={}", self.max_head)?;
        }
        if self.max_headers != d.max_headers {
            write!(f, ":max_headers={}", self.max_headers)?;
        }
        Ok(())
    }
}

/// Parses the options after `http`.
pub(crate) fn parse_opts(opts: &[&str]) -> Result<HttpSpec, super::SpecError> {
    let mut spec = HttpSpec::default();
    let mut seen = [false; 3];
    let valid = "valid options are max=N, max_head=N and max_headers=N";
    for &opt in opts {
        let (i, v) = match opt.split_once('=') {
            Some(("max", v)) => (0, v),
            Some(("max_head", v)) => (1, v),
            Some(("max_headers", v)) => (2, v),
            _ => return Err(super::err(format!("unknown option {opt:?}; {valid}"))),
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(super::err(format!("repeated option {opt:?}; {valid}")));
        }
        match i {
            0 => spec.max_body = super::parse_size("max", v)?,
            1 => spec.max_head = super::parse_size("max_head", v)?.max(64),
            _ => {
                spec.max_headers = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_HEADERS_LIMIT).contains(n))
                    .ok_or_else(|| {
                        super::err(format!(
                            "max_headers={v} is not valid; expected 1 to {MAX_HEADERS_LIMIT}"
                        ))
                    })?
            }
        }
    }
    Ok(spec)
}

/// How the body of the message being read ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// This many bytes after the head.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(Chunk),
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// Where the chunked decoder stands; `pos` counts from the frame's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    pos: usize,
    state: ChunkState,
    /// Chunk data bytes so far.
    data: u64,
    /// Size lines, extensions and CRLFs so far.
    overhead: u64,
    /// Trailer bytes already searched for their end.
    scanned: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for the empty line that ends the head; this many bytes were searched.
    Head { scanned: usize },
    /// The head is `head` bytes long; the body ends as `body` says.
    Body { head: usize, body: Body },
}

/// What the codec read in a request frame's head while finding the frame's end: what a
/// server needs to answer it, so that the head is parsed once per request. Given by
/// [`FrameCodec::take_http_head`](super::FrameCodec::take_http_head) after each request
/// frame, and to a server's handler by `server::Request::http_head`. It describes exactly
/// one frame ([`describes`](Self::describes)); [`crate::http::message::Request::parse_bytes`]
/// reads the same fields, the same way, from any frame.
///
/// ```
/// use keepwire::frame::{FrameCodec, FramingSpec};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = FrameCodec::new("http".parse::<FramingSpec>().unwrap());
/// let mut buf = bytes::BytesMut::from(
///     &b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n\r\n"[..],
/// );
/// let first = codec.decode(&mut buf).unwrap().unwrap();
/// let head = codec.take_http_head().unwrap();
/// assert!(head.describes(&first));
/// assert_eq!((head.version(), head.is_head(), head.keep_alive()), (0, true, true));
/// assert_eq!((head.head_len(), head.bad_host()), (first.len(), false));
/// let second = codec.decode(&mut buf).unwrap().unwrap();
/// let head = codec.take_http_head().unwrap();
/// assert!(head.describes(&second) && !head.describes(&first));
/// assert!(head.bad_host()); // HTTP/1.1 without Host
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpHead {
    version: u8,
    close: bool,
    keep_alive: bool,
    hosts: u16,
    chunked: bool,
    other_coding: bool,
    is_head: bool,
    head_len: usize,
    /// The frame described: the address of its first byte and its length.
    at: usize,
    len: usize,
}

impl HttpHead {
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// `Connection: close` (RFC 9110 §7.6.1).
    pub fn close(&self) -> bool {
        self.close
    }

    /// `Connection: keep-alive` (HTTP/1.0 persistence, RFC 2068 §19.7.1).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// How many `Host` field lines the head has.
    pub fn host_fields(&self) -> usize {
        usize::from(self.hosts)
    }

    /// Whether the head breaks RFC 9112 §3.2 (no `Host` in HTTP/1.1, or more than one), as
    /// [`crate::http::message::Request::bad_host`] says.
    pub fn bad_host(&self) -> bool {
        self.hosts > 1 || (self.version >= 1 && self.hosts == 0)
    }

    /// The body is chunked (it starts at [`head_len`](Self::head_len)).
    pub fn chunked(&self) -> bool {
        self.chunked
    }

    /// `Transfer-Encoding` names a coding other than `chunked` (`gzip, chunked`).
    pub fn other_coding(&self) -> bool {
        self.other_coding
    }

    /// The method is `HEAD`.
    pub fn is_head(&self) -> bool {
        self.is_head
    }

    /// The head's length, empty line included: where the body starts in the frame.
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// Whether this summary is the one of `frame` (the very bytes the codec returned, not
    /// a copy): a summary is never applied to another frame.
    pub fn describes(&self, frame: &[u8]) -> bool {
        frame.as_ptr() as usize == self.at && frame.len() == self.len
    }
}

/// Reads the `Connection` options of one field line's value into `close` and `keep_alive`
/// (the codec and [`crate::http::message`] both read them here).
pub(crate) fn connection_options(value: &[u8], close: &mut bool, keep_alive: &mut bool) {
    // The usual value is one option alone, in one of two spellings: compared whole.
    match value {
        b"keep-alive" | b"Keep-Alive" => *keep_alive = true,
        b"close" | b"Close" => *close = true,
        _ => connection_list(value, close, keep_alive),
    }
}

/// [`connection_options`] of any value: a list, in any case.
fn connection_list(value: &[u8], close: &mut bool, keep_alive: &mut bool) {
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        *close |= token.eq_ignore_ascii_case(b"close");
        *keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
    }
}

/// The decoder of the `http` framing.
#[derive(Debug, Clone)]
pub(crate) struct HttpCodec {
    spec: HttpSpec,
    state: State,
    /// For each request encoded and not answered yet: whether it was `HEAD`.
    pending_head: VecDeque<bool>,
    /// The message being read (or the last one) is a response.
    response: bool,
    /// A request head asked `Expect: 100-continue` and its body has not come yet.
    continue_due: bool,
    /// The summary of the request being read (its frame not yet whole).
    reading: Option<HttpHead>,
    /// The summary of the last request frame returned, until taken.
    last: Option<HttpHead>,
}

/// What the head says about the body.
struct HeadInfo {
    response: bool,
    status: u16,
    version: u8,
    content_length: Option<u64>,
    /// `Transfer-Encoding` seen; whether its last coding is `chunked`; `chunked` count.
    te: Option<(bool, usize)>,
    /// `Expect: 100-continue`.
    expect_continue: bool,
    /// `Connection: close`, `Connection: keep-alive`.
    close: bool,
    keep_alive: bool,
    /// `Host` field lines.
    hosts: u16,
    /// A coding other than `chunked` is named.
    other_coding: bool,
    /// The method is `HEAD`.
    is_head: bool,
}

fn malformed(what: &'static str, found: &[u8], expected: &'static str) -> FrameErrorKind {
    let cut = found.get(..found.len().min(40)).unwrap_or_default();
    FrameErrorKind::HttpMalformed {
        what,
        found: crate::text::escape(cut),
        expected,
    }
}

fn smuggling(reason: &'static str) -> FrameErrorKind {
    FrameErrorKind::HttpSmuggling { reason }
}

impl HttpCodec {
    pub(crate) fn new(spec: HttpSpec) -> Self {
        let spec = HttpSpec {
            max_body: spec.max_body.min(super::MAX_LIMIT),
            max_head: spec.max_head.clamp(64, super::MAX_LIMIT),
            max_headers: spec.max_headers.clamp(1, MAX_HEADERS_LIMIT),
        };
        HttpCodec {
            spec,
            state: State::Head { scanned: 0 },
            pending_head: VecDeque::new(),
            response: false,
            continue_due: false,
            reading: None,
            last: None,
        }
    }

    pub(crate) fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameErrorKind> {
        loop {
            match self.state {
                State::Head { scanned } => {
                    let Some(head) = self.find_head(src, scanned)? else {
                        return Ok(None);
                    };
                    let body = self.parse_head(src.get(..head).unwrap_or_default())?;
                    self.state = State::Body { head, body };
                }
                State::Body { head, body } => return self.decode_body(src, head, body),
            }
        }
    }

    pub(crate) fn decode_eof(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<Bytes>, FrameErrorKind> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        match self.state {
            State::Head { .. } if src.is_empty() => Ok(None),
            State::Head { .. } => Err(FrameErrorKind::Truncated {
                part: FramePart::Header,
                have: src.len(),
                want: None,
            }),
            State::Body {
                body: Body::UntilClose,
                ..
            } => Ok(Some(self.take(src, src.len()))),
            State::Body { head, body } => Err(FrameErrorKind::Truncated {
                part: FramePart::Body,
                have: src.len().saturating_sub(head),
                want: match body {
                    Body::Length(n) => usize::try_from(n).ok(),
                    _ => None,
                },
            }),
        }
    }

    /// The frame's `len` bytes, and the state reset for the next message.
    fn take(&mut self, src: &mut BytesMut, len: usize) -> Bytes {
        self.state = State::Head { scanned: 0 };
        self.continue_due = false;
        let frame = src.split_to(len.min(src.len())).freeze();
        self.last = self.reading.take().map(|h| HttpHead {
            at: frame.as_ptr() as usize,
            len: frame.len(),
            ..h
        });
        frame
    }

    /// The summary of the last request frame returned, once.
    pub(crate) fn take_head(&mut self) -> Option<HttpHead> {
        self.last.take()
    }

    /// The head's length once its empty line has arrived. Empty lines before a request are
    /// dropped (RFC 9112 §2.2: a server "SHOULD ignore at least one empty line (CRLF)
    /// received prior to the request-line").
    fn find_head(
        &mut self,
        src: &mut BytesMut,
        scanned: usize,
    ) -> Result<Option<usize>, FrameErrorKind> {
        if scanned == 0 {
            loop {
                let skip = match src.get(..2) {
                    Some(b"\r\n") => 2,
                    _ if src.first() == Some(&b'\n') => 1,
                    _ => break,
                };
                let _ = src.split_to(skip);
            }
            // A lone CR may be the start of one more empty line: wait for the next byte.
            if &src[..] == b"\r" {
                return Ok(None);
            }
        }
        let from = scanned.saturating_sub(2);
        let hay = src.get(from..).unwrap_or_default();
        for nl in memchr::memchr_iter(b'\n', hay) {
            let at = from + nl;
            match (src.get(at + 1), src.get(at + 2)) {
                (Some(b'\n'), _) => return self.head_fits(at + 2).map(Some),
                (Some(b'\r'), Some(b'\n')) => return self.head_fits(at + 3).map(Some),
                _ => {}
            }
        }
        if src.len() > self.spec.max_head {
            return Err(FrameErrorKind::HeadTooLarge {
                len: src.len(),
                max: self.spec.max_head,
            });
        }
        self.state = State::Head { scanned: src.len() };
        Ok(None)
    }

    fn head_fits(&self, len: usize) -> Result<usize, FrameErrorKind> {
        if len > self.spec.max_head {
            return Err(FrameErrorKind::HeadTooLarge {
                len,
                max: self.spec.max_head,
            });
        }
        Ok(len)
    }

    /// Parses the whole head and decides how its body ends.
    fn parse_head(&mut self, head: &[u8]) -> Result<Body, FrameErrorKind> {
        self.response = head.starts_with(b"HTTP/");
        self.reading = None;
        self.last = None;
        let info = parse_info(head, self.response, self.spec.max_headers)?;
        let no_body = if info.response {
            // RFC 9112 §6.3 ¶1: "Any response to a HEAD request and any response with a
            // 1xx (Informational), 204 (No Content), or 304 (Not Modified) status code is
            // always terminated by the first empty line after the header fields".
            let interim = (100..200).contains(&info.status);
            let to_head = if interim {
                false
            } else {
                self.pending_head.pop_front().unwrap_or(false)
            };
            to_head || interim || info.status == 204 || info.status == 304
        } else {
            false
        };
        if no_body {
            return Ok(Body::Length(0));
        }
        let body = self.body_rule(&info)?;
        // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an
        // HTTP/1.0 request MUST ignore that expectation"; one MAY omit the 100 when the
        // content has already arrived, so it is due only while the body is awaited.
        self.continue_due =
            !info.response && info.version >= 1 && info.expect_continue && body != Body::Length(0);
        if !info.response {
            self.reading = Some(HttpHead {
                version: info.version,
                close: info.close,
                keep_alive: info.keep_alive,
                hosts: info.hosts,
                chunked: matches!(body, Body::Chunked(_)),
                other_coding: info.other_coding,
                is_head: info.is_head,
                head_len: head.len(),
                at: 0,
                len: 0,
            });
        }
        Ok(body)
    }

    /// `HTTP/1.1 100 Continue` once, when a request head with `Expect: 100-continue` has
    /// been decoded and its body is still awaited (RFC 9110 §10.1.1: a client waiting for
    /// it, curl for one second, sends the body only then).
    pub(crate) fn interim_reply(&mut self) -> Option<&'static [u8]> {
        std::mem::take(&mut self.continue_due).then_some(b"HTTP/1.1 100 Continue\r\n\r\n")
    }

    fn body_rule(&self, info: &HeadInfo) -> Result<Body, FrameErrorKind> {
        if let Some((chunked_last, chunked_count)) = info.te {
            // §6.3 ¶3: "ought to be handled as an error"; §6.1: "a server MUST close the
            // connection after responding to such a request".
            if info.content_length.is_some() {
                return Err(smuggling("content-length together with transfer-encoding"));
            }
            // §6.1: "A server or client that receives an HTTP/1.0 message containing a
            // Transfer-Encoding header field MUST treat the message as if the framing is
            // faulty".
            if info.version == 0 {
                return Err(smuggling("transfer-encoding in an http/1.0 message"));
            }
            // §7: "A sender MUST NOT apply the chunked transfer coding more than once".
            if chunked_count > 1 {
                return Err(smuggling("chunked applied more than once"));
            }
            if chunked_last {
                return Ok(Body::Chunked(Chunk {
                    pos: 0,
                    state: ChunkState::Size,
                    data: 0,
                    overhead: 0,
                    scanned: 0,
                }));
            }
            // §6.3 ¶4: a request whose final coding is not chunked: "the server MUST
            // respond with the 400 (Bad Request) status code and then close".
            if !info.response {
                return Err(smuggling(
                    "transfer-encoding whose final coding is not chunked",
                ));
            }
            return Ok(Body::UntilClose);
        }
        match info.content_length {
            Some(n) if n > self.spec.max_body as u64 => Err(FrameErrorKind::TooLong {
                len: n,
                max: self.spec.max_body,
            }),
            Some(n) => Ok(Body::Length(n)),
            None if info.response => Ok(Body::UntilClose),
            None => Ok(Body::Length(0)),
        }
    }

    fn decode_body(
        &mut self,
        src: &mut BytesMut,
        head: usize,
        body: Body,
    ) -> Result<Option<Bytes>, FrameErrorKind> {
        match body {
            Body::Length(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                let total = head.saturating_add(n);
                if src.len() >= total {
                    return Ok(Some(self.take(src, total)));
                }
                Ok(None)
            }
            Body::UntilClose => {
                let have = src.len().saturating_sub(head);
                if have > self.spec.max_body {
                    return Err(FrameErrorKind::TooLong {
                        len: have as u64,
                        max: self.spec.max_body,
                    });
                }
                Ok(None)
            }
            Body::Chunked(mut c) => {
                if c.pos == 0 {
                    c.pos = head;
                }
                let done = self.chunks(src, &mut c);
                self.state = State::Body {
                    head,
                    body: Body::Chunked(c),
                };
                match done? {
                    Some(end) => Ok(Some(self.take(src, end))),
                    None => Ok(None),
                }
            }
        }
    }

    /// Runs the chunked decoder over what arrived; `Some(end)` when the message ends there.
    fn chunks(&self, src: &[u8], c: &mut Chunk) -> Result<Option<usize>, FrameErrorKind> {
        loop {
            match c.state {
                ChunkState::Size => {
                    let Some((size, next)) = self.chunk_line(src, c.pos)? else {
                        return Ok(None);
                    };
                    c.overhead += (next - c.pos) as u64;
                    c.data = c.data.saturating_add(size);
                    self.chunk_budget(c)?;
                    c.pos = next;
                    c.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(rem) => {
                    let avail = src.len().saturating_sub(c.pos) as u64;
                    let step = avail.min(rem);
                    c.pos += usize::try_from(step).unwrap_or(0);
                    if step < rem {
                        c.state = ChunkState::Data(rem - step);
                        return Ok(None);
                    }
                    c.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => match src.get(c.pos..c.pos + 2) {
                    None if src.get(c.pos).is_none_or(|&b| b == b'\r') => return Ok(None),
                    Some(b"\r\n") => {
                        c.pos += 2;
                        c.overhead += 2;
                        self.chunk_budget(c)?;
                        c.state = ChunkState::Size;
                    }
                    _ => {
                        let seen = src.get(c.pos..).unwrap_or_default();
                        return Err(malformed(
                            "chunk data end",
                            seen,
                            "CRLF after the chunk data",
                        ));
                    }
                },
                ChunkState::Trailers => return self.trailers(src, c),
            }
        }
    }

    fn chunk_budget(&self, c: &Chunk) -> Result<(), FrameErrorKind> {
        if c.data > self.spec.max_body as u64 {
            return Err(FrameErrorKind::TooLong {
                len: c.data,
                max: self.spec.max_body,
            });
        }
        let framing_max = self.spec.max_body.max(64 * 1024) as u64;
        if c.overhead > framing_max {
            return Err(FrameErrorKind::TooLong {
                len: c.data.saturating_add(c.overhead),
                max: self.spec.max_body,
            });
        }
        Ok(())
    }

    /// One chunk-size line at `pos`: the size and where the line ends; `None`: not whole.
    fn chunk_line(&self, src: &[u8], pos: usize) -> Result<Option<(u64, usize)>, FrameErrorKind> {
        let rest = src.get(pos..).unwrap_or_default();
        let window = rest
            .get(..rest.len().min(MAX_CHUNK_LINE + 2))
            .unwrap_or_default();
        let Some(nl) = memchr::memchr(b'\n', window) else {
            if rest.len() > MAX_CHUNK_LINE + 1 {
                return Err(malformed(
                    "chunk size line",
                    rest,
                    "a line of at most 4096 bytes",
                ));
            }
            return Ok(None);
        };
        let line = match nl
            .checked_sub(1)
            .and_then(|cr| rest.get(..cr).zip(rest.get(cr)))
        {
            Some((line, b'\r')) => line,
            _ => return Err(malformed("chunk size line", rest, "a line ending in CRLF")),
        };
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 16 {
            return Err(malformed("chunk size", line, "1 to 16 hex digits"));
        }
        let hex = line.get(..digits).unwrap_or_default();
        let size = hex.iter().try_fold(0u64, |acc, &b| {
            let d = (b as char).to_digit(16)?;
            acc.checked_mul(16)?.checked_add(u64::from(d))
        });
        let Some(size) = size else {
            return Err(malformed("chunk size", line, "1 to 16 hex digits"));
        };
        let ext = line.get(digits..).unwrap_or_default();
        let ext_ok = {
            let trimmed: &[u8] = match ext.iter().position(|&b| b != b' ' && b != b'\t') {
                Some(i) => ext.get(i..).unwrap_or_default(),
                None => &[],
            };
            (trimmed.is_empty() && ext.is_empty() || trimmed.first() == Some(&b';'))
                && ext.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        };
        if !ext_ok {
            return Err(malformed(
                "chunk size",
                line,
                "hex digits, then ';' or CRLF",
            ));
        }
        Ok(Some((size, pos + nl + 1)))
    }

    /// The trailer section after the last chunk: `Some(end)` when whole.
    fn trailers(&self, src: &[u8], c: &mut Chunk) -> Result<Option<usize>, FrameErrorKind> {
        let rest = src.get(c.pos..).unwrap_or_default();
        match rest.get(..2) {
            None if rest.first().is_none_or(|&b| b == b'\r') => return Ok(None),
            Some(b"\r\n") => return Ok(Some(c.pos + 2)),
            _ => {}
        }
        let from = c.scanned.saturating_sub(3);
        let found = rest
            .get(from..)
            .and_then(|hay| memchr::memmem::find(hay, b"\r\n\r\n"))
            .map(|i| from + i + 4);
        let Some(len) = found else {
            if rest.len() > self.spec.max_head {
                return Err(FrameErrorKind::HeadTooLarge {
                    len: rest.len(),
                    max: self.spec.max_head,
                });
            }
            c.scanned = rest.len();
            return Ok(None);
        };
        if len > self.spec.max_head {
            return Err(FrameErrorKind::HeadTooLarge {
                len,
                max: self.spec.max_head,
            });
        }
        let section = rest.get(..len).unwrap_or_default();
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS_LIMIT];
        let table = headers.get_mut(..self.spec.max_headers).unwrap_or_default();
        match httparse::parse_headers(section, table) {
            Ok(httparse::Status::Complete((n, _))) if n == len => Ok(Some(c.pos + len)),
            Err(httparse::Error::TooManyHeaders) => Err(FrameErrorKind::TooManyHeaders {
                max: self.spec.max_headers,
            }),
            _ => Err(malformed(
                "trailer section",
                section,
                "field lines ending in CRLF",
            )),
        }
    }

    /// Appends `frame` to `dst` as it is: the handler or the caller wrote the message.
    pub(crate) fn encode(&self, frame: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        if frame.is_empty() {
            return Err(FrameError::unencodable(
                "an empty frame is no http message (http has no heartbeat frame)",
            ));
        }
        let max = self
            .spec
            .max_head
            .saturating_add(self.spec.max_body.saturating_mul(2));
        if frame.len() > max {
            return Err(FrameError::unencodable(format!(
                "the message is {} bytes, more than max_head + 2 x max = {max}",
                frame.len()
            )));
        }
        dst.put_slice(frame);
        Ok(())
    }

    /// Remembers a request encoded through `Encoder::encode`, so that its response is read
    /// right (no body after `HEAD`).
    pub(crate) fn note_sent(&mut self, frame: &[u8]) {
        if !frame.starts_with(b"HTTP/") {
            self.pending_head.push_back(frame.starts_with(b"HEAD "));
        }
    }

    /// Refuses one more request while [`MAX_PENDING_REQUESTS`] await their responses.
    pub(crate) fn check_pending(&self) -> Result<(), FrameError> {
        if self.pending_head.len() >= MAX_PENDING_REQUESTS {
            return Err(FrameError::unencodable(format!(
                "{MAX_PENDING_REQUESTS} requests already await their responses"
            )));
        }
        Ok(())
    }

    /// The response a server sends before closing on a framing error, if any: 400, 431 or
    /// 413, with `Connection: close`. `None` for a response being read, a truncated message
    /// (the peer left) or a transport error.
    pub(crate) fn error_reply(&self, kind: &FrameErrorKind) -> Option<&'static [u8]> {
        if self.response {
            return None;
        }
        match kind {
            FrameErrorKind::HttpMalformed { .. } | FrameErrorKind::HttpSmuggling { .. } => Some(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ),
            FrameErrorKind::HeadTooLarge { .. } | FrameErrorKind::TooManyHeaders { .. } => Some(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ),
            FrameErrorKind::TooLong { .. } => Some(
                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ),
            _ => None,
        }
    }
}

/// Parses a head with httparse and reads the framing fields out of it.
fn parse_info(head: &[u8], response: bool, max_headers: usize) -> Result<HeadInfo, FrameErrorKind> {
    // Requests (a server's every request) parse into an uninitialised table: filling 256
    // empty headers first would cost more than parsing a short head.
    let mut uninit = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_LIMIT];
    let mut headers = [httparse::EMPTY_HEADER; 0];
    let mut resp_headers;
    let (res, version, status, is_head, fields): (_, _, _, _, &[httparse::Header<'_>]) = if response
    {
        resp_headers = [httparse::EMPTY_HEADER; MAX_HEADERS_LIMIT];
        let table = resp_headers.get_mut(..max_headers).unwrap_or_default();
        let mut r = httparse::Response::new(table);
        let res = r.parse(head);
        (res, r.version, r.code.unwrap_or(0), false, r.headers)
    } else {
        let table = uninit.get_mut(..max_headers).unwrap_or_default();
        let mut r = httparse::Request::new(&mut headers);
        let res = r.parse_with_uninit_headers(head, table);
        (res, r.version, 0, r.method == Some("HEAD"), r.headers)
    };
    match res {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Err(FrameErrorKind::TooManyHeaders { max: max_headers });
        }
        Err(e) => {
            let what = if response {
                "response head"
            } else {
                "request head"
            };
            return Err(FrameErrorKind::HttpMalformed {
                what,
                found: format!("{e}"),
                expected: "an http/1.x head (RFC 9112 §2-§5)",
            });
        }
        Ok(_) => {
            return Err(malformed(
                "head",
                head,
                "an http/1.x head ending in an empty line",
            ));
        }
    }
    let mut info = HeadInfo {
        response,
        status,
        version: version.unwrap_or(1),
        content_length: None,
        te: None,
        expect_continue: false,
        close: false,
        keep_alive: false,
        hosts: 0,
        other_coding: false,
        is_head,
    };
    read_fields(&mut info, fields)?;
    Ok(info)
}

/// Reads the fields the framing and the request's summary need.
fn read_fields(info: &mut HeadInfo, fields: &[httparse::Header<'_>]) -> Result<(), FrameErrorKind> {
    let mut codings = Codings::default();
    for h in fields.iter() {
        // By length first: one jump instead of a comparison per name known.
        let name = h.name.as_bytes();
        match name.len() {
            4 if name_is(name, b"host") => {
                info.hosts = info.hosts.saturating_add(1);
            }
            6 if name_is(name, b"expect") => {
                info.expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            10 if name_is(name, b"connection") => {
                connection_options(h.value, &mut info.close, &mut info.keep_alive);
            }
            14 if name_is(name, b"content-length") => {
                content_length(info, h.value)?;
            }
            17 if name_is(name, b"transfer-encoding") => {
                codings.add(h.value);
                info.te = Some((codings.last_chunked, codings.chunked));
            }
            _ => {}
        }
    }
    info.other_coding = codings.other;
    Ok(())
}

/// What the `Transfer-Encoding` field lines of a head say. The codec (where the body ends)
/// and the handler (how to read the body) read them through this one type, so the two can
/// never disagree on a message. Empty list elements are ignored (RFC 9110 §5.6.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Codings {
    /// The last coding named is `chunked`.
    pub(crate) last_chunked: bool,
    /// How many times `chunked` is named.
    pub(crate) chunked: usize,
    /// A coding other than `chunked` is named.
    pub(crate) other: bool,
}

impl Codings {
    /// Adds one `Transfer-Encoding` field line's value.
    pub(crate) fn add(&mut self, value: &[u8]) {
        for coding in value.split(|&b| b == b',') {
            let coding = coding.trim_ascii();
            if coding.is_empty() {
                continue;
            }
            self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            self.chunked += usize::from(self.last_chunked);
            self.other |= !self.last_chunked;
        }
    }
}

/// Whether the field name `name` (a token: httparse refuses any other byte) is `lower`
/// (lowercase letters and `-`) in any case. A token byte OR 0x20 is a lowercase letter only
/// if it is that letter in either case, and `-` only if it is `-`: one instruction a byte
/// where `eq_ignore_ascii_case` maps both sides.
fn name_is(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.iter().zip(lower).all(|(&n, &l)| n | 0x20 == l)
}

/// Reads one `Content-Length` field (a list of equal values is allowed, RFC 9110 §8.6).
fn content_length(info: &mut HeadInfo, value: &[u8]) -> Result<(), FrameErrorKind> {
    for v in value.split(|&b| b == b',') {
        let v = v.trim_ascii();
        if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
            return Err(malformed("content-length", value, "1 to 18 decimal digits"));
        }
        let n = v
            .iter()
            .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
        match info.content_length {
            Some(old) if old != n => {
                return Err(smuggling("two content-length values that differ"));
            }
            _ => info.content_length = Some(n),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
