//! Reading a decoded `http` frame: the start line, the version, the `Connection` options and
//! the body (de-chunked). The frame was checked by the codec when it was decoded; these
//! functions still refuse, never panic on, any bytes given to them.
//!
//! ```
//! use bytes::Bytes;
//! use keepwire::http::message::Response;
//!
//! let frame = Bytes::from_static(
//!     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
//! );
//! let resp = Response::parse(&frame).unwrap();
//! assert_eq!(resp.status, 200);
//! assert_eq!(&resp.status_line[..], b"HTTP/1.1 200 OK");
//! assert_eq!(&resp.body[..], b"hi");
//! ```

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

use super::HttpError;
use crate::frame::http::MAX_HEADERS_LIMIT;

/// The `Connection` options of a message (RFC 9110 §7.6.1), the two that decide
/// persistence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionOptions {
    /// `Connection: close`.
    pub close: bool,
    /// `Connection: keep-alive` (HTTP/1.0 persistence, RFC 2068 §19.7.1).
    pub keep_alive: bool,
}

/// A request read from a frame. The byte fields share the frame's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: Bytes,
    /// The request target.
    pub path: Bytes,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The `Connection` options.
    pub connection: ConnectionOptions,
    /// How many `Host` field lines the head has (RFC 9112 §3.2: exactly one in HTTP/1.1).
    pub host_fields: usize,
    /// `Transfer-Encoding` names a coding other than `chunked` (`gzip, chunked`): the body
    /// is still in that coding, which this module does not undo.
    pub other_coding: bool,
    /// The body, de-chunked.
    pub body: Bytes,
}

/// A response read from a frame. The byte fields share the frame's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The status line, without its line end.
    pub status_line: Bytes,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The `Connection` options.
    pub connection: ConnectionOptions,
    /// The body, de-chunked.
    pub body: Bytes,
}

/// The framing fields of a head.
struct Fields {
    connection: ConnectionOptions,
    chunked: bool,
    hosts: usize,
    other_coding: bool,
}

fn fields(headers: &[httparse::Header<'_>]) -> Fields {
    let mut out = Fields {
        connection: ConnectionOptions::default(),
        chunked: false,
        hosts: 0,
        other_coding: false,
    };
    let mut codings = crate::frame::http::Codings::default();
    for h in headers {
        out.hosts += usize::from(h.name.eq_ignore_ascii_case("host"));
        if h.name.eq_ignore_ascii_case("connection") {
            let c = &mut out.connection;
            crate::frame::http::connection_options(h.value, &mut c.close, &mut c.keep_alive);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            codings.add(h.value);
        }
    }
    // Read as the codec reads them (it framed this message by them).
    out.chunked = codings.last_chunked;
    out.other_coding = codings.other;
    out
}

/// The range of `sub` (a slice of `frame`) within `frame`, as a `Bytes` sharing it.
fn share(frame: &Bytes, sub: &[u8]) -> Bytes {
    let start = (sub.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
    match start.checked_add(sub.len()) {
        Some(end) if end <= frame.len() => frame.slice(start..end),
        _ => Bytes::copy_from_slice(sub),
    }
}

impl Request {
    /// Reads a request frame.
    ///
    /// # Errors
    /// [`HttpError::is_parse`]: not a whole HTTP/1.x request head, or a bad chunked body.
    pub fn parse(frame: &[u8]) -> Result<Request, HttpError> {
        Self::parse_bytes(&Bytes::copy_from_slice(frame))
    }

    /// [`parse`](Self::parse) without copying: the fields share `frame`.
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    pub fn parse_bytes(frame: &Bytes) -> Result<Request, HttpError> {
        // Uninitialised: filling 256 empty headers first costs more than a short head.
        let mut table =
            [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_LIMIT];
        let mut none = [httparse::EMPTY_HEADER; 0];
        let mut req = httparse::Request::new(&mut none);
        let head = match req.parse_with_uninit_headers(frame, &mut table) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return Err(HttpError::parse("request", frame, "a whole request head"));
            }
            Err(e) => {
                return Err(HttpError::parse(
                    "request",
                    frame,
                    format!("a request head ({e})"),
                ));
            }
        };
        let f = fields(req.headers);
        let method = share(frame, req.method.unwrap_or_default().as_bytes());
        let path = share(frame, req.path.unwrap_or_default().as_bytes());
        Ok(Request {
            method,
            path,
            version: req.version.unwrap_or(1),
            connection: f.connection,
            host_fields: f.hosts,
            other_coding: f.other_coding,
            body: body(frame, head, f.chunked)?,
        })
    }

    /// Whether the head breaks RFC 9112 §3.2: "A server MUST respond with a 400 (Bad
    /// Request) status code to any HTTP/1.1 request message that lacks a Host header field
    /// and to any request message that contains more than one Host header field line".
    ///
    /// ```
    /// use keepwire::http::message::Request;
    /// assert!(Request::parse(b"GET / HTTP/1.1\r\n\r\n").unwrap().bad_host());
    /// assert!(!Request::parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().bad_host());
    /// assert!(!Request::parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().bad_host());
    /// ```
    pub fn bad_host(&self) -> bool {
        self.host_fields > 1 || (self.version >= 1 && self.host_fields == 0)
    }

    /// Whether this is a `HEAD` request (its response carries no body).
    pub fn is_head(&self) -> bool {
        &self.method[..] == b"HEAD"
    }
}

impl Response {
    /// Reads a response frame.
    ///
    /// # Errors
    /// [`HttpError::is_parse`]: not a whole HTTP/1.x response head, or a bad chunked body.
    pub fn parse(frame: &Bytes) -> Result<Response, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS_LIMIT];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(frame) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return Err(HttpError::parse("response", frame, "a whole response head"));
            }
            Err(e) => {
                return Err(HttpError::parse(
                    "response",
                    frame,
                    format!("a response head ({e})"),
                ));
            }
        };
        let f = fields(resp.headers);
        let line_end = memchr::memchr(b'\n', frame).unwrap_or(0);
        let line = frame.get(..line_end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Ok(Response {
            status: resp.code.unwrap_or(0),
            status_line: share(frame, line),
            version: resp.version.unwrap_or(1),
            connection: f.connection,
            body: body(frame, head, f.chunked)?,
        })
    }

    /// Whether the connection may carry another request after this response (RFC 9112
    /// §9.3): not when it says `close`, nor an HTTP/1.0 response without `keep-alive`.
    pub fn allows_reuse(&self) -> bool {
        super::persist::persistent(self.version, self.connection)
    }
}

/// Builds an HTTP/1.1 request from a line `METHOD PATH [Name: value]..` (a new field starts
/// at each word that ends in `:`), adding `Host: host` unless the line has a `Host` field.
///
/// ```
/// use keepwire::http::message::request_from_line;
/// let req = request_from_line("GET /a Connection: close X-Tag: two words", "example").unwrap();
/// assert_eq!(
///     &req[..],
///     &b"GET /a HTTP/1.1\r\nConnection: close\r\nX-Tag: two words\r\nHost: example\r\n\r\n"[..]
/// );
/// ```
///
/// # Errors
/// [`HttpError::is_parse`] when the method or path is missing, or the result is no request.
pub fn request_from_line(line: &str, host: &str) -> Result<Bytes, HttpError> {
    let mut words = line.split_ascii_whitespace();
    let (Some(method), Some(path)) = (words.next(), words.next()) else {
        return Err(HttpError::parse(
            "request line",
            line.as_bytes(),
            "METHOD PATH [Name: value].., e.g. GET / or GET /x Connection: close",
        ));
    };
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    let mut fields: Vec<String> = Vec::new();
    for w in words {
        match fields.last_mut() {
            Some(f) if !w.ends_with(':') => {
                f.push(' ');
                f.push_str(w);
            }
            _ => fields.push(w.to_string()),
        }
    }
    let mut has_host = false;
    for f in &fields {
        has_host |= f.to_ascii_lowercase().starts_with("host:");
        out.push_str(f);
        out.push_str("\r\n");
    }
    if !has_host {
        out.push_str(&format!("Host: {host}\r\n"));
    }
    out.push_str("\r\n");
    let bytes = Bytes::from(out);
    Request::parse_bytes(&bytes)?;
    Ok(bytes)
}

/// Checks that `wire` is exactly one whole HTTP/1.x request as the `http` framing reads
/// it: a head ending in an empty line, then all of its body, nothing after. A request cut
/// short would otherwise be sent and wait for an answer that cannot come.
///
/// ```
/// use keepwire::http::message::whole_request;
/// assert!(whole_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
/// assert!(whole_request(b"GET / HTTP/1.1").unwrap_err().is_parse());
/// assert!(whole_request(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nhi").is_err());
/// ```
///
/// # Errors
/// [`HttpError::is_parse`] when `wire` is cut short, malformed, a response, or more than
/// one request.
pub fn whole_request(wire: &[u8]) -> Result<(), HttpError> {
    use crate::frame::{FrameCodec, FramingSpec};
    use tokio_util::codec::Decoder;
    let expected = "one whole http/1.x request: a head ending in an empty line (\\r\\n\\r\\n), \
                    then its body, nothing after";
    let mut codec = FrameCodec::new(FramingSpec::Http(Default::default()));
    let mut buf = BytesMut::from(wire);
    let frame = match codec.decode_eof(&mut buf) {
        Ok(Some(frame)) if buf.is_empty() => frame,
        _ => return Err(HttpError::parse("request", wire, expected)),
    };
    Request::parse_bytes(&frame).map(|_| ())
}

/// The body after a head of `head` bytes: the rest of the frame, or its chunks joined.
pub(crate) fn body(frame: &Bytes, head: usize, chunked: bool) -> Result<Bytes, HttpError> {
    let rest = frame.slice(head.min(frame.len())..);
    if chunked { dechunk(&rest) } else { Ok(rest) }
}

/// The data of a chunked body (trailers dropped).
///
/// # Errors
/// [`HttpError::is_parse`] when the chunks are not well formed.
pub fn dechunk(wire: &[u8]) -> Result<Bytes, HttpError> {
    let bad = |at: &[u8]| HttpError::parse("chunked body", at, "chunk-size [ext] CRLF data CRLF");
    let mut out = BytesMut::new();
    let mut rest = wire;
    loop {
        let nl = memchr::memchr(b'\n', rest).ok_or_else(|| bad(rest))?;
        let line = rest.get(..nl).unwrap_or_default();
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let hex = line
            .get(..digits)
            .filter(|h| !h.is_empty() && h.len() <= 16);
        let size = hex
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| bad(line))?;
        rest = rest.get(nl + 1..).unwrap_or_default();
        if size == 0 {
            return Ok(out.freeze());
        }
        let data = rest.get(..size).ok_or_else(|| bad(rest))?;
        out.extend_from_slice(data);
        rest = rest
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or_else(|| bad(rest))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_their_version_options_and_body() {
        let table: &[(&[u8], u8, ConnectionOptions, &[u8])] = &[
            (b"GET / HTTP/1.1\r\n\r\n", 1, ConnectionOptions::default(), b""),
            (
                b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                0,
                ConnectionOptions { close: false, keep_alive: true },
                b"",
            ),
            (
                b"POST / HTTP/1.1\r\nConnection: foo, close\r\nContent-Length: 2\r\n\r\nhi",
                1,
                ConnectionOptions { close: true, keep_alive: false },
                b"hi",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;x\r\nhi\r\n3\r\n!!!\r\n0\r\nT: 1\r\n\r\n",
                1,
                ConnectionOptions::default(),
                b"hi!!!",
            ),
        ];
        for (frame, version, conn, body) in table {
            let r = Request::parse(frame).unwrap();
            assert_eq!(
                (r.version, r.connection, &r.body[..]),
                (*version, *conn, *body)
            );
        }
    }

    #[test]
    fn bad_input_is_refused_not_a_panic() {
        for bad in [
            &b""[..],
            b"GET",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"\xff\xfe",
        ] {
            assert!(Request::parse(bad).unwrap_err().is_parse());
        }
        assert!(dechunk(b"5\r\nhi\r\n").is_err());
        assert!(dechunk(b"ffffffffffffffffff\r\n").is_err());
    }

    #[test]
    fn responses_say_whether_the_connection_may_be_reused() {
        let r = Response::parse(&Bytes::from_static(b"HTTP/1.0 200 OK\r\n\r\nx")).unwrap();
        assert!(!r.allows_reuse());
        assert_eq!(&r.body[..], b"x");
        let r = Response::parse(&Bytes::from_static(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        assert!(r.allows_reuse());
        let r = Response::parse(&Bytes::from_static(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        ))
        .unwrap();
        assert!(!r.allows_reuse());
    }
}
