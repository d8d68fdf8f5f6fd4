//! One message on the wire: framing specs and the codec that turns a byte stream into frames.
//!
//! TCP delivers a byte stream; every protocol on top of it decides where one message ends and
//! the next begins. [`FramingSpec`] names the rule, as a string a person can write on a
//! command line or in a config file, and [`FrameCodec`] applies it. The codec is sans-IO: it
//! takes bytes in a [`BytesMut`] and gives back frames as [`Bytes`], so the same code runs
//! under tokio's [`Framed`](tokio_util::codec::Framed) and under the blocking
//! [`FrameReader`](crate::blocking::FrameReader).
//!
//! | spec                           | rule                                                |
//! |--------------------------------|-----------------------------------------------------|
//! | `len:<enc>:<width>[:opts]`     | a length header: [`length`] (ISO 8583, CMPP, SMPP)  |
//! | `delim:<bytes>[:max=N][:keep]` | ends at a delimiter: [`delimited`]                  |
//! | `line[:max=N]`                 | ends at `\n`, a `\r` before it is stripped          |
//! | `fixed:<N>`                    | exactly `N` bytes each: [`fixed`]                   |
//! | `eof[:max=N]`                  | everything until the peer half-closes: [`until_close`] |
//! | `http[:max=N][:max_head=N][:max_headers=N]` | one HTTP/1.x message: [`http`]  |
//!
//! A decoded frame is the message without its length field or delimiter; bytes covered by
//! `skip=N` stay at the frame's start, and encoding puts them back before the length field.
//!
//! ```
//! use keepwire::frame::{FrameCodec, FramingSpec};
//! use tokio_util::codec::{Decoder, Encoder};
//! use bytes::BytesMut;
//!
//! // ISO 8583 behind a 4-digit ASCII length.
//! let spec: FramingSpec = "len:ascii:4".parse().unwrap();
//! let mut codec = FrameCodec::new(spec);
//! let mut wire = BytesMut::new();
//! codec.encode(&b"0800\x82\x20"[..], &mut wire).unwrap();
//! assert_eq!(&wire[..], b"00060800\x82\x20");
//! assert_eq!(&codec.decode(&mut wire).unwrap().unwrap()[..], b"0800\x82\x20");
//! ```
//!
//! # Bounded memory
//! Every spec has a maximum frame size (`max=`, default [`DEFAULT_MAX`]); a length header
//! above it is rejected before any body byte is buffered, and a delimiter scan stops at it.
//! After an error the codec stays failed: the connection has lost its framing and must close.

pub mod delimited;
mod error;
pub mod fixed;
pub mod http;
pub mod length;
pub mod until_close;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

pub use delimited::DelimitedSpec;
pub use error::{FrameError, FrameErrorKind, FramePart};
pub use length::{LengthEncoding, LengthSpec};

/// The default largest frame body: 8 MiB.
pub const DEFAULT_MAX: usize = 8 * 1024 * 1024;

/// The most the decoder reserves ahead of bytes that have not arrived: 64 KiB. A length header
/// is the peer's claim; buffers grow as the body really arrives.
pub const RESERVE_STEP: usize = 64 * 1024;

/// Room the decoder reserves past the rest of a partial frame, so that the read which
/// completes the frame and drains the socket comes back shorter than asked. Small: the
/// server's reader takes a buffer with less room than a quarter of its first read size (250
/// bytes) for a new one, so the slack left once the frame is split off is never read into
/// on its own.
pub(crate) const READ_SLACK: usize = 128;

/// The largest `max=` (and `fixed:N`) a spec may ask for: 1 GiB. Past that a single peer could
/// make one connection hold more memory than a server should ever give it.
pub const MAX_LIMIT: usize = 1024 * 1024 * 1024;

/// How messages are delimited on the wire. Parse it from a spec string, print it back in
/// canonical form (`parse(display(x)) == x`).
///
/// ```
/// use keepwire::frame::FramingSpec;
/// let spec: FramingSpec = "len:be:4:incl".parse().unwrap();
/// assert_eq!(spec.to_string(), "len:be:4:incl");
/// let err = "len:asci:4".parse::<FramingSpec>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "framing spec \"len:asci:4\": unknown length encoding \"asci\"; expected ascii, bcd, be, le or hex"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FramingSpec {
    /// A length header (`len:..`).
    Length(LengthSpec),
    /// A delimiter (`delim:..` or `line`).
    Delimited(DelimitedSpec),
    /// Exactly this many bytes per frame (`fixed:N`).
    Fixed(usize),
    /// Everything until the peer half-closes, at most `max` bytes (`eof`).
    UntilClose {
        /// The largest message buffered.
        max: usize,
    },
    /// One HTTP/1.x message (`http`).
    Http(http::HttpSpec),
}

impl FramingSpec {
    /// The largest frame this spec accepts.
    pub fn max_frame(&self) -> usize {
        match self {
            FramingSpec::Length(l) => l.effective_max().saturating_add(l.skip),
            FramingSpec::Delimited(d) => d.max,
            FramingSpec::Fixed(n) => *n,
            FramingSpec::UntilClose { max } => *max,
            FramingSpec::Http(h) => h.max_head.saturating_add(h.max_body),
        }
    }

    /// Whether the framing has an empty message (`len:..`, `delim:..`, `line`), which is what
    /// heartbeats use by default: one that [`carries`](Self::carries) the empty frame. `fixed`
    /// and `eof` have none, nor `delim:..:keep` (its frames hold the delimiter), nor a `len`
    /// spec whose `skip=`/`adj=` cannot express an empty body.
    ///
    /// ```
    /// use keepwire::frame::FramingSpec;
    /// assert!(FramingSpec::parse("len:ascii:4").unwrap().has_empty_frame());
    /// assert!(FramingSpec::parse("line").unwrap().has_empty_frame());
    /// assert!(!FramingSpec::parse("delim:0x03:keep").unwrap().has_empty_frame());
    /// assert!(!FramingSpec::parse("fixed:4").unwrap().has_empty_frame());
    /// ```
    pub fn has_empty_frame(&self) -> bool {
        self.carries(b"")
    }

    /// The whole frame is consumed only at end of stream (`eof`): one message per direction.
    pub fn is_until_close(&self) -> bool {
        matches!(self, FramingSpec::UntilClose { .. })
    }

    /// Whether `frame` can travel on a live connection under this framing: it encodes, and
    /// the bytes decode back, without waiting for the end of the stream, as exactly that
    /// frame. Heartbeat frames must (never true under `eof`).
    ///
    /// ```
    /// use keepwire::frame::FramingSpec;
    /// assert!(FramingSpec::parse("len:ascii:4").unwrap().carries(b""));
    /// assert!(!FramingSpec::parse("fixed:4").unwrap().carries(b"PONGX"));
    /// assert!(!FramingSpec::parse("eof").unwrap().carries(b"PING"));
    /// ```
    pub fn carries(&self, frame: &[u8]) -> bool {
        use tokio_util::codec::Decoder;
        let codec = FrameCodec::new(self.clone());
        let mut buf = BytesMut::new();
        if codec.encode_to(frame, &mut buf).is_err() {
            return false;
        }
        let mut codec = FrameCodec::new(self.clone());
        matches!(codec.decode(&mut buf), Ok(Some(f)) if f[..] == *frame) && buf.is_empty()
    }
}

impl fmt::Display for FramingSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingSpec::Length(l) => l.fmt(f),
            FramingSpec::Delimited(d) => d.fmt(f),
            FramingSpec::Fixed(n) => write!(f, "fixed:{n}"),
            FramingSpec::UntilClose { max } if *max == DEFAULT_MAX => f.write_str("eof"),
            FramingSpec::UntilClose { max } => write!(f, "eof:max={max}"),
            FramingSpec::Http(h) => h.fmt(f),
        }
    }
}

/// A framing spec string that could not be parsed, naming the bad part and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    spec: Option<String>,
    msg: String,
}

impl SpecError {
    pub(crate) fn new(part: impl Into<String>, msg: impl Into<String>) -> Self {
        SpecError {
            spec: Some(part.into()),
            msg: msg.into(),
        }
    }

    fn with_spec(mut self, spec: &str) -> Self {
        self.spec = Some(spec.to_owned());
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.spec {
            Some(s) => write!(f, "framing spec {s:?}: {}", self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for SpecError {}

const KINDS: &str = "expected len:<enc>:<width>, delim:<bytes>, line, fixed:<N>, eof or http";

fn err(msg: impl Into<String>) -> SpecError {
    SpecError {
        spec: None,
        msg: msg.into(),
    }
}

/// Parses a size: plain bytes, or with a `k`/`kib`/`m`/`mib` suffix (powers of 1024).
fn parse_size(what: &str, v: &str) -> Result<usize, SpecError> {
    let lower = v.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix("kib").or(lower.strip_suffix('k')) {
        (n, 1024)
    } else if let Some(n) = lower.strip_suffix("mib").or(lower.strip_suffix('m')) {
        (n, 1024 * 1024)
    } else {
        (lower.as_str(), 1)
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n <= MAX_LIMIT)
        .ok_or_else(|| {
            err(format!(
                "{what}={v} is not a size; expected bytes from 0 to {MAX_LIMIT} (suffixes k, m allowed)"
            ))
        })
}

/// Parses the trailing `:opt` parts shared by `delim`, `line` and `eof`.
fn parse_max_keep(
    opts: &[&str],
    allow_keep: bool,
    valid: &str,
) -> Result<(usize, bool), SpecError> {
    let (mut max, mut keep) = (None, false);
    for &opt in opts {
        match opt.split_once('=') {
            Some(("max", v)) if max.is_none() => max = Some(parse_size("max", v)?),
            None if opt == "keep" && allow_keep && !keep => keep = true,
            _ => return Err(err(format!("unknown or repeated option {opt:?}; {valid}"))),
        }
    }
    Ok((max.unwrap_or(DEFAULT_MAX), keep))
}

fn parse_length(
    enc: Option<&str>,
    width: Option<&str>,
    opts: &[&str],
) -> Result<LengthSpec, SpecError> {
    let enc = enc.filter(|e| !e.is_empty()).ok_or_else(|| {
        err("missing length encoding; expected len:<ascii|bcd|be|le|hex>:<width>, e.g. len:ascii:4")
    })?;
    let encoding = LengthEncoding::from_name(enc).ok_or_else(|| {
        err(format!(
            "unknown length encoding {enc:?}; expected ascii, bcd, be, le or hex"
        ))
    })?;
    let width_s = width.ok_or_else(|| {
        err(format!(
            "missing width after len:{enc}; expected {}",
            encoding.widths_text()
        ))
    })?;
    let width = width_s
        .parse::<usize>()
        .ok()
        .filter(|&w| encoding.width_ok(w))
        .ok_or_else(|| {
            err(format!(
                "width {width_s:?} is not valid for {enc}; expected {}",
                encoding.widths_text()
            ))
        })?;
    let mut spec = LengthSpec::new(encoding, width).map_err(|e| err(e.msg))?;
    let valid = "valid options are incl, skip=N, adj=N, max=N";
    let (mut seen_skip, mut seen_adj, mut seen_max) = (false, false, false);
    for &opt in opts {
        match opt.split_once('=') {
            None if opt == "incl" && !spec.incl => spec.incl = true,
            Some(("skip", v)) if !seen_skip => {
                seen_skip = true;
                spec.skip = v
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n <= 65_536)
                    .ok_or_else(|| {
                        err(format!(
                            "skip={v} is not valid; expected bytes from 0 to 65536"
                        ))
                    })?;
            }
            Some(("adj", v)) if !seen_adj => {
                seen_adj = true;
                spec.adj = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| n.unsigned_abs() <= MAX_LIMIT as u64)
                    .ok_or_else(|| {
                        err(format!(
                            "adj={v} is not valid; expected a signed whole number of bytes, e.g. adj=-4"
                        ))
                    })?;
            }
            Some(("max", v)) if !seen_max => {
                seen_max = true;
                spec.max = parse_size("max", v)?;
            }
            _ => return Err(err(format!("unknown or repeated option {opt:?}; {valid}"))),
        }
    }
    Ok(spec)
}

fn parse_delimiter(d: &str) -> Result<Vec<u8>, SpecError> {
    let bytes = match d.strip_prefix("0x") {
        Some(hex) => crate::text::from_hex(hex).map_err(|e| err(format!("delimiter: {e}")))?,
        None => crate::text::unescape(d).map_err(|e| err(format!("delimiter: {e}")))?,
    };
    if bytes.is_empty() {
        return Err(err(
            "the delimiter is empty; give at least one byte, e.g. delim:\\n, delim:\\r\\n or delim:0x03",
        ));
    }
    if bytes.len() > 64 {
        return Err(err("the delimiter is longer than 64 bytes"));
    }
    Ok(bytes)
}

impl FromStr for FramingSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        // The parts build errors without the whole spec; attach it here, once.
        parse_spec(s).map_err(|e| e.with_spec(s))
    }
}

fn parse_spec(s: &str) -> Result<FramingSpec, SpecError> {
    {
        let parts: Vec<&str> = s.split(':').collect();
        let kind = parts.first().copied().unwrap_or_default();
        let rest = parts.get(1..).unwrap_or_default();
        let spec = match kind {
            "len" => {
                let opts = rest.get(2..).unwrap_or_default();
                FramingSpec::Length(parse_length(
                    rest.first().copied(),
                    rest.get(1).copied(),
                    opts,
                )?)
            }
            "delim" => {
                let d = rest.first().ok_or_else(|| {
                    err("missing delimiter; expected delim:<bytes>, e.g. delim:\\n or delim:0x03")
                })?;
                let delimiter = parse_delimiter(d)?;
                let opts = rest.get(1..).unwrap_or_default();
                let (max, keep) = parse_max_keep(opts, true, "valid options are max=N and keep")?;
                FramingSpec::Delimited(DelimitedSpec {
                    delimiter,
                    max,
                    keep,
                    line: false,
                })
            }
            "line" => {
                let (max, _) = parse_max_keep(rest, false, "the valid option is max=N")?;
                FramingSpec::Delimited(DelimitedSpec::line().max(max))
            }
            "fixed" => {
                let n = match rest {
                    [n] => n,
                    [] => return Err(err("missing size; expected fixed:<N>, e.g. fixed:128")),
                    [_, extra, ..] => {
                        return Err(err(format!("unexpected {extra:?}; fixed takes no options")));
                    }
                };
                let len = n
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| (1..=MAX_LIMIT).contains(&n))
                    .ok_or_else(|| {
                        err(format!(
                            "size {n:?} is not valid; expected fixed:<N> with N from 1 to {MAX_LIMIT}"
                        ))
                    })?;
                FramingSpec::Fixed(len)
            }
            "eof" => {
                let (max, _) = parse_max_keep(rest, false, "the valid option is max=N")?;
                FramingSpec::UntilClose { max }
            }
            "http" => FramingSpec::Http(http::parse_opts(rest)?),
            "" => return Err(err(format!("the spec is empty; {KINDS}"))),
            other => return Err(err(format!("unknown framing {other:?}; {KINDS}"))),
        };
        Ok(spec)
    }
}

impl FramingSpec {
    /// Parses a spec, as [`FromStr`] does.
    ///
    /// # Errors
    /// A [`SpecError`] naming the bad part and what would be valid.
    pub fn parse(s: &str) -> Result<Self, SpecError> {
        s.parse()
    }
}

#[derive(Debug, Clone)]
enum Inner {
    Length(length::LengthCodec),
    Delimited(Box<delimited::DelimitedCodec>),
    Fixed(fixed::FixedCodec),
    UntilClose(until_close::UntilCloseCodec),
    Http(Box<http::HttpCodec>),
}

/// Decodes and encodes frames under a [`FramingSpec`]: a tokio-util [`Decoder`] and
/// [`Encoder`], so it works with `Framed`, `FramedRead` and `FramedWrite`.
///
/// Decoded frames are [`Bytes`] split off the read buffer: the body is not copied, and in the
/// steady state no allocation is made per frame. Anything that is `AsRef<[u8]>` can be
/// encoded.
///
/// The codec counts the bytes it has consumed, so errors name the stream offset where the bad
/// frame starts ([`FrameError::offset`]).
///
/// ```
/// use keepwire::frame::{FrameCodec, FramingSpec};
/// use tokio_util::codec::Decoder;
/// use bytes::BytesMut;
///
/// // CMPP: a 4-byte big-endian Total_Length that counts itself.
/// let mut codec = FrameCodec::new("len:be:4:incl".parse().unwrap());
/// let mut buf = BytesMut::from(&[0, 0, 0, 12, 0, 0, 0, 8, 0, 0, 0, 1][..]);
/// let frame = codec.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(&frame[..], &[0, 0, 0, 8, 0, 0, 0, 1]); // ACTIVE_TEST, sequence 1
/// ```
#[derive(Debug, Clone)]
pub struct FrameCodec {
    /// Shared: a server's connections all decode under one spec, and every byte here is
    /// paid once per idle connection.
    spec: Arc<FramingSpec>,
    inner: Inner,
    /// Bytes consumed from the stream by frames decoded so far.
    offset: u64,
    poisoned: bool,
}

impl FrameCodec {
    /// A codec for `spec`, at stream offset 0.
    pub fn new(spec: FramingSpec) -> Self {
        Self::shared(Arc::new(spec))
    }

    /// [`new`](Self::new) for a spec many codecs share (a server's connections).
    pub(crate) fn shared(spec: Arc<FramingSpec>) -> Self {
        let inner = match &*spec {
            FramingSpec::Length(l) => Inner::Length(length::LengthCodec::new(l.clone())),
            FramingSpec::Delimited(d) => {
                Inner::Delimited(Box::new(delimited::DelimitedCodec::new(d.clone())))
            }
            // The enum's fields are public, so a spec built in code may hold values the parser
            // refuses; clamp them here (a zero-size fixed frame would decode forever).
            FramingSpec::Fixed(n) => Inner::Fixed(fixed::FixedCodec::new((*n).clamp(1, MAX_LIMIT))),
            FramingSpec::UntilClose { max } => {
                Inner::UntilClose(until_close::UntilCloseCodec::new((*max).min(MAX_LIMIT)))
            }
            FramingSpec::Http(h) => Inner::Http(Box::new(http::HttpCodec::new(*h))),
        };
        FrameCodec {
            spec,
            inner,
            offset: 0,
            poisoned: false,
        }
    }

    /// The spec this codec applies.
    pub fn spec(&self) -> &FramingSpec {
        &self.spec
    }

    /// Bytes of the stream consumed by the frames decoded so far: where the next frame starts.
    pub fn stream_offset(&self) -> u64 {
        self.offset
    }

    /// Appends the wire form of `frame` to `dst`.
    ///
    /// # Errors
    /// [`FrameError::is_unencodable`]: the body is too long for the header or `max`, the wrong
    /// size for `fixed`, contains the delimiter or ends in its first bytes (so the delimiter
    /// would appear early), or is shorter than the `skip=` prefix. `dst` is left unchanged.
    pub fn encode_to(&self, frame: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        match &self.inner {
            Inner::Length(c) => c.encode(frame, dst),
            Inner::Delimited(c) => c.encode(frame, dst),
            Inner::Fixed(c) => c.encode(frame, dst),
            Inner::UntilClose(c) => c.encode(frame, dst),
            Inner::Http(c) => c.encode(frame, dst),
        }
    }

    /// Whether [`encode_head`](Self::encode_head) splits frames (the framing sends a frame's
    /// body as it is, last).
    #[cfg(feature = "server")]
    pub(crate) fn sends_body_as_is(&self) -> bool {
        matches!(
            self.inner,
            Inner::Length(_) | Inner::Fixed(_) | Inner::UntilClose(_)
        )
    }

    /// Encodes `frame` as [`encode_to`](Self::encode_to) does, except for its last part when
    /// that goes on the wire as it is (the body after a length header; the whole frame under
    /// `fixed` and `until-close`): only what comes before it is put into `dst`, and it is
    /// returned, for the caller to write from the frame itself (one vectored write instead of
    /// a copy). `None`, with nothing written, for framings that add bytes after the body or
    /// change it (`delim`, `http`).
    #[cfg(feature = "server")]
    pub(crate) fn encode_head<'a>(
        &self,
        frame: &'a [u8],
        dst: &mut BytesMut,
    ) -> Result<Option<&'a [u8]>, FrameError> {
        match &self.inner {
            Inner::Length(c) => c.encode_head(frame, dst).map(Some),
            Inner::Fixed(c) => c.encode_head(frame).map(Some),
            Inner::UntilClose(c) => c.encode_head(frame).map(Some),
            Inner::Delimited(_) | Inner::Http(_) => Ok(None),
        }
    }

    /// The response a server writes before it closes on `err`, when its framing has one:
    /// under `http`, 400 for a malformed request or a smuggling shape, 431 for a head too
    /// large, 413 for a body too large, each with `Connection: close`. `None` for every
    /// other framing, for errors of a response being read, and for truncation (the peer
    /// already left).
    ///
    /// ```
    /// use keepwire::frame::{FrameCodec, FramingSpec};
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut codec = FrameCodec::new("http".parse::<FramingSpec>().unwrap());
    /// let mut buf = bytes::BytesMut::from(&b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"[..]);
    /// let err = codec.decode(&mut buf).unwrap_err();
    /// let reply = codec.error_reply(&err).unwrap();
    /// assert!(reply.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    /// ```
    pub fn error_reply(&self, err: &FrameError) -> Option<&'static [u8]> {
        match &self.inner {
            Inner::Http(c) => c.error_reply(err.kind()),
            _ => None,
        }
    }

    /// An interim reply a server owes the peer now, before the frame being read is whole:
    /// `HTTP/1.1 100 Continue` after a request head with `Expect: 100-continue` whose body
    /// has not come (at most once per request). `None` otherwise and for other framings.
    ///
    /// ```
    /// use keepwire::frame::{FrameCodec, FramingSpec};
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut codec = FrameCodec::new("http".parse::<FramingSpec>().unwrap());
    /// let mut buf = bytes::BytesMut::from(
    ///     &b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"[..],
    /// );
    /// assert!(codec.decode(&mut buf).unwrap().is_none());
    /// assert_eq!(codec.interim_reply(), Some(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]));
    /// assert_eq!(codec.interim_reply(), None);
    /// ```
    pub fn interim_reply(&mut self) -> Option<&'static [u8]> {
        match &mut self.inner {
            Inner::Http(c) => c.interim_reply(),
            _ => None,
        }
    }

    /// Under `http`, the summary of the request frame decoded last ([`http::HttpHead`]:
    /// version, `Connection` options, `Host` count, codings, `HEAD`), read while its end was
    /// found; given once per frame, so a server need not parse the head again. `None` for a
    /// response, once taken, after a head that began another frame, and for other framings.
    pub fn take_http_head(&mut self) -> Option<http::HttpHead> {
        match &mut self.inner {
            Inner::Http(c) => c.take_head(),
            _ => None,
        }
    }

    fn run(&mut self, src: &mut BytesMut, eof: bool) -> Result<Option<Bytes>, FrameError> {
        if self.poisoned {
            return Err(FrameError::at(self.offset, FrameErrorKind::Poisoned));
        }
        // No codec makes a frame of no bytes before the end of the stream (`fixed:0` is not a
        // spec; a length header is at least a byte): the call after a batch's last frame,
        // once per request, ends here.
        if src.is_empty() && !eof {
            return Ok(None);
        }
        let before = src.len();
        let res = match (&mut self.inner, eof) {
            (Inner::Length(c), false) => c.decode(src),
            (Inner::Length(c), true) => c.decode_eof(src),
            (Inner::Delimited(c), false) => c.decode(src),
            (Inner::Delimited(c), true) => c.decode_eof(src),
            (Inner::Fixed(c), false) => c.decode(src),
            (Inner::Fixed(c), true) => c.decode_eof(src),
            (Inner::UntilClose(c), false) => c.decode(src),
            (Inner::UntilClose(c), true) => c.decode_eof(src),
            (Inner::Http(c), false) => c.decode(src),
            (Inner::Http(c), true) => c.decode_eof(src),
        };
        match res {
            Ok(frame) => {
                self.offset += (before - src.len()) as u64;
                Ok(frame)
            }
            Err(kind) => {
                self.poisoned = true;
                Err(FrameError::at(self.offset, kind))
            }
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        self.run(src, false)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        self.run(src, true)
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for FrameCodec {
    type Error = FrameError;

    /// Under `http`, a request encoded here is remembered until its response is decoded
    /// (a response to `HEAD` has no body); see [`http`].
    fn encode(&mut self, frame: T, dst: &mut BytesMut) -> Result<(), FrameError> {
        if let Inner::Http(c) = &self.inner {
            c.check_pending()?;
        }
        self.encode_to(frame.as_ref(), dst)?;
        if let Inner::Http(c) = &mut self.inner {
            c.note_sent(frame.as_ref());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
