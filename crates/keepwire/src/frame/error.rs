//! [`FrameError`]: everything that can go wrong turning bytes into frames and back.

use std::fmt;
use std::io;

/// An error from [`FrameCodec`](super::FrameCodec): a malformed or oversized frame from the
/// peer, a frame this side cannot encode, or an I/O error from the transport under a
/// `Framed`.
///
/// After any decode error the codec stays failed (see [`FrameErrorKind::Poisoned`]): framing
/// is lost, and the only safe thing to do is to close the connection. There is no resync by
/// guessing.
///
/// `Display` is one lowercase line a person can act on, starting with the byte offset in the
/// stream where the bad frame starts:
///
/// ```
/// use keepwire::frame::{FrameCodec, FramingSpec};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = FrameCodec::new("len:ascii:4".parse::<FramingSpec>().unwrap());
/// let mut buf = bytes::BytesMut::from(&b"0003abc00x5"[..]);
/// assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"abc");
/// let err = codec.decode(&mut buf).unwrap_err();
/// assert!(err.is_malformed());
/// assert_eq!(err.offset(), Some(7));
/// assert_eq!(
///     err.to_string(),
///     "offset 7: ascii length header byte 2 is 0x78 ('x'), expected a decimal digit"
/// );
/// ```
#[derive(Debug)]
pub struct FrameError {
    offset: Option<u64>,
    kind: FrameErrorKind,
}

/// What went wrong; see [`FrameError::kind`].
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameErrorKind {
    /// A byte of an ASCII decimal length header is not `'0'..='9'`.
    BadAsciiDigit {
        /// Index of the bad byte within the frame (after any `skip=` prefix it counts from the
        /// frame start, so it points at the byte in a hex dump of the frame).
        pos: usize,
        /// The byte seen.
        byte: u8,
    },
    /// A byte of an ASCII hex length header is not `0-9a-fA-F`.
    BadHexDigit {
        /// Index of the bad byte within the frame.
        pos: usize,
        /// The byte seen.
        byte: u8,
    },
    /// A nibble of a packed-BCD length header is above 9.
    BadBcdNibble {
        /// Index of the byte holding the bad nibble, within the frame.
        pos: usize,
        /// The byte seen.
        byte: u8,
        /// The nibble above 9.
        nibble: u8,
    },
    /// The frame's body is larger than the configured `max`. For length headers this is
    /// reported as soon as the header is read, before any of the body is buffered.
    TooLong {
        /// Body length the header announced, or bytes buffered without a delimiter.
        len: u64,
        /// The configured maximum body size.
        max: usize,
    },
    /// Under `incl` (or a negative `adj`), the header announced fewer bytes than the header
    /// itself takes.
    LengthTooSmall {
        /// The value of the length field.
        value: u64,
        /// The smallest value that makes sense for this spec.
        min: u64,
    },
    /// The stream ended inside a frame.
    Truncated {
        /// Which part of the frame was being read.
        part: FramePart,
        /// Bytes of that part that had arrived.
        have: usize,
        /// Bytes of that part expected, where known (`None` for delimited frames).
        want: Option<usize>,
    },
    /// `encode`: the body cannot be expressed by this framing (too long for the header, the
    /// wrong size for `fixed`, or it contains the delimiter or ends in its first bytes).
    Unencodable {
        /// Why, in words.
        reason: String,
    },
    /// `http`: a head, a field or chunked framing that is not HTTP/1.x (answered 400).
    HttpMalformed {
        /// Which part: `request head`, `content-length`, `chunk size`, ...
        what: &'static str,
        /// What was seen (escaped, at most 40 bytes of it), or the parser's words.
        found: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// `http`: a message whose length two parties could read differently (RFC 9112 §6.3):
    /// Content-Length with Transfer-Encoding, differing Content-Lengths, ... (answered 400).
    HttpSmuggling {
        /// The shape refused, in words.
        reason: &'static str,
    },
    /// `http`: the head (or the trailer section) is larger than `max_head` (answered 431).
    HeadTooLarge {
        /// Bytes of head seen so far.
        len: usize,
        /// The configured `max_head`.
        max: usize,
    },
    /// `http`: more header fields than `max_headers` (answered 431).
    TooManyHeaders {
        /// The configured `max_headers`.
        max: usize,
    },
    /// The decoder failed earlier and refuses to guess where the next frame starts.
    Poisoned,
    /// The underlying transport failed.
    Io(io::Error),
}

/// The part of a frame a [`FrameErrorKind::Truncated`] error stopped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FramePart {
    /// The header (the `skip=` prefix and the length field).
    Header,
    /// The body.
    Body,
    /// A delimited frame: the delimiter had not been seen.
    Delimited,
    /// A fixed-size frame.
    Fixed,
}

impl FrameError {
    pub(crate) fn at(offset: u64, kind: FrameErrorKind) -> Self {
        FrameError {
            offset: Some(offset),
            kind,
        }
    }

    pub(crate) fn unencodable(reason: impl Into<String>) -> Self {
        FrameError {
            offset: None,
            kind: FrameErrorKind::Unencodable {
                reason: reason.into(),
            },
        }
    }

    /// The byte offset in the stream where the offending frame starts (`None` for encode and
    /// I/O errors).
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// What went wrong.
    pub fn kind(&self) -> &FrameErrorKind {
        &self.kind
    }

    /// The peer sent bytes that are not a valid header (bad digit, bad nibble, a length
    /// smaller than its own header).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self.kind,
            FrameErrorKind::BadAsciiDigit { .. }
                | FrameErrorKind::BadHexDigit { .. }
                | FrameErrorKind::BadBcdNibble { .. }
                | FrameErrorKind::LengthTooSmall { .. }
                | FrameErrorKind::HttpMalformed { .. }
                | FrameErrorKind::HttpSmuggling { .. }
        )
    }

    /// `http`: a message whose length could be read two ways (request smuggling shapes,
    /// RFC 9112 §6.3); also [`is_malformed`](Self::is_malformed).
    pub fn is_smuggling(&self) -> bool {
        matches!(self.kind, FrameErrorKind::HttpSmuggling { .. })
    }

    /// `http`: the head or trailer section exceeds `max_head`, or has more fields than
    /// `max_headers`.
    pub fn is_head_too_large(&self) -> bool {
        matches!(
            self.kind,
            FrameErrorKind::HeadTooLarge { .. } | FrameErrorKind::TooManyHeaders { .. }
        )
    }

    /// The frame exceeds the configured maximum.
    pub fn is_too_long(&self) -> bool {
        matches!(self.kind, FrameErrorKind::TooLong { .. })
    }

    /// The stream ended in the middle of a frame.
    pub fn is_truncated(&self) -> bool {
        matches!(self.kind, FrameErrorKind::Truncated { .. })
    }

    /// This side asked to encode a frame the framing cannot express.
    pub fn is_unencodable(&self) -> bool {
        matches!(self.kind, FrameErrorKind::Unencodable { .. })
    }

    /// The transport failed (the error is available through `source()`).
    pub fn is_io(&self) -> bool {
        matches!(self.kind, FrameErrorKind::Io(_))
    }

    /// A short name for the kind, for metrics labels and logs (`"malformed"`, `"too_long"`,
    /// `"truncated"`, `"unencodable"`, `"poisoned"`, `"io"`; `http` adds `"smuggling"` and
    /// `"head_too_large"`).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            FrameErrorKind::BadAsciiDigit { .. }
            | FrameErrorKind::BadHexDigit { .. }
            | FrameErrorKind::BadBcdNibble { .. }
            | FrameErrorKind::LengthTooSmall { .. }
            | FrameErrorKind::HttpMalformed { .. } => "malformed",
            FrameErrorKind::HttpSmuggling { .. } => "smuggling",
            FrameErrorKind::HeadTooLarge { .. } | FrameErrorKind::TooManyHeaders { .. } => {
                "head_too_large"
            }
            FrameErrorKind::TooLong { .. } => "too_long",
            FrameErrorKind::Truncated { .. } => "truncated",
            FrameErrorKind::Unencodable { .. } => "unencodable",
            FrameErrorKind::Poisoned => "poisoned",
            FrameErrorKind::Io(_) => "io",
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError {
            offset: None,
            kind: FrameErrorKind::Io(e),
        }
    }
}

/// `'x'` for printable ASCII, nothing otherwise.
struct Shown(u8);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02x}", self.0)?;
        if self.0.is_ascii_graphic() || self.0 == b' ' {
            write!(f, " ('{}')", self.0 as char)?;
        }
        Ok(())
    }
}

impl fmt::Display for FrameErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameErrorKind::BadAsciiDigit { pos, byte } => write!(
                f,
                "ascii length header byte {pos} is {}, expected a decimal digit",
                Shown(*byte)
            ),
            FrameErrorKind::BadHexDigit { pos, byte } => write!(
                f,
                "hex length header byte {pos} is {}, expected a hex digit",
                Shown(*byte)
            ),
            FrameErrorKind::BadBcdNibble { pos, byte, nibble } => write!(
                f,
                "bcd length header byte {pos} is 0x{byte:02x}: nibble 0x{nibble:x} is not a digit"
            ),
            FrameErrorKind::TooLong { len, max } => write!(
                f,
                "frame body of {len} bytes exceeds max={max} (raise max= in the framing spec if the peer is right)"
            ),
            FrameErrorKind::LengthTooSmall { value, min } => write!(
                f,
                "length field {value} is smaller than {min}, the header it must include"
            ),
            FrameErrorKind::Truncated { part, have, want } => {
                let part = match part {
                    FramePart::Header => "header ",
                    FramePart::Body => "body ",
                    FramePart::Delimited | FramePart::Fixed => "",
                };
                match want {
                    Some(want) => write!(f, "truncated frame, {have} of {want} {part}bytes"),
                    None => write!(f, "truncated frame, {have} bytes and no delimiter"),
                }
            }
            FrameErrorKind::Unencodable { reason } => write!(f, "cannot encode: {reason}"),
            FrameErrorKind::HttpMalformed {
                what,
                found,
                expected,
            } => write!(f, "http {what}: saw \"{found}\", expected {expected}"),
            FrameErrorKind::HttpSmuggling { reason } => write!(
                f,
                "http message length is ambiguous: {reason} (refused, RFC 9112 section 6.3)"
            ),
            FrameErrorKind::HeadTooLarge { len, max } => write!(
                f,
                "http head of {len} bytes exceeds max_head={max} (raise max_head= in the framing spec if the peer is right)"
            ),
            FrameErrorKind::TooManyHeaders { max } => {
                write!(f, "http head has more than max_headers={max} header fields")
            }
            FrameErrorKind::Poisoned => {
                f.write_str("decoder stopped after an earlier framing error")
            }
            FrameErrorKind::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(off) => write!(f, "offset {off}: {}", self.kind),
            None => self.kind.fmt(f),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            FrameErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}
