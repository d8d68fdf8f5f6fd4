//! Length-prefixed frames: `len:<enc>:<width>[:incl][:skip=N][:adj=N][:max=N]`.
//!
//! A frame is an optional prefix of `skip` bytes that belong to the frame, a length field of
//! `width` bytes, and a body whose size the field announces:
//!
//! ```text
//! +---- skip ----+---- width ----+--------- body ---------+
//! | prefix bytes | length field  | length (+ adj) bytes   |
//! +--------------+---------------+------------------------+
//! ```
//!
//! The length field is one of five encodings:
//!
//! | `enc`   | field bytes for 42, width 4 | notes                                   |
//! |---------|-----------------------------|-----------------------------------------|
//! | `ascii` | `"0042"` = `30 30 34 32`    | decimal digits `'0'..='9'` only         |
//! | `bcd`   | `00 00 00 42`               | packed BCD, two digits per byte         |
//! | `be`    | `00 00 00 2a`               | unsigned big-endian (network order)     |
//! | `le`    | `2a 00 00 00`               | unsigned little-endian                  |
//! | `hex`   | `"002A"` = `30 30 32 41`    | hex digits, either case; encodes upper  |
//!
//! Options change how the field's value maps to the number of body bytes:
//!
//! - `incl`: the value counts the whole header too (skip prefix and length field), as in
//!   CMPP and SMPP: `body = value - (skip + width)`.
//! - `adj=N`: a signed number added to the value (Netty's `lengthAdjustment`):
//!   `body = value + adj`.
//! - `skip=N`: `N` bytes before the length field, kept at the start of the decoded frame and
//!   written back before the field on encode.
//! - `max=N`: the largest body accepted (default 8 MiB). The check runs as soon as the header
//!   is read, before any body byte is buffered.
//!
//! Examples, INPUT -> DECODED:
//!
//! ```text
//! len:ascii:4           "0005hello"                      -> "hello"
//! len:be:2              00 05 'hello'                    -> "hello"
//! len:bcd:2             00 12 <12 bytes>                 -> <12 bytes>
//! len:be:4:incl         00 00 00 09 'hello'              -> "hello"        (CMPP, SMPP)
//! len:be:2:skip=1       7e 00 02 'hi'                    -> 7e 'hi'
//! len:be:1:adj=2        03 'abcde'                       -> "abcde"        (3 + 2 body bytes)
//! len:le:4              05 00 00 00 'hello'              -> "hello"
//! len:hex:4             "000a" <10 bytes>                -> <10 bytes>
//! ```

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{FrameError, FrameErrorKind, FramePart};

/// How the length field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LengthEncoding {
    /// ASCII decimal digits, zero padded: `"0042"`.
    Ascii,
    /// Packed BCD, two decimal digits per byte: `0x00 0x42`.
    Bcd,
    /// Unsigned big-endian (network byte order) integer.
    BigEndian,
    /// Unsigned little-endian integer.
    LittleEndian,
    /// ASCII hexadecimal digits, case-insensitive on input, upper case on output: `"002A"`.
    Hex,
}

impl LengthEncoding {
    /// The name used in spec strings (`ascii`, `bcd`, `be`, `le`, `hex`).
    pub fn name(self) -> &'static str {
        match self {
            LengthEncoding::Ascii => "ascii",
            LengthEncoding::Bcd => "bcd",
            LengthEncoding::BigEndian => "be",
            LengthEncoding::LittleEndian => "le",
            LengthEncoding::Hex => "hex",
        }
    }

    pub(crate) fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "ascii" => LengthEncoding::Ascii,
            "bcd" => LengthEncoding::Bcd,
            "be" => LengthEncoding::BigEndian,
            "le" => LengthEncoding::LittleEndian,
            "hex" => LengthEncoding::Hex,
            _ => return None,
        })
    }

    /// Widths this encoding accepts, as text for error messages.
    pub(crate) fn widths_text(self) -> &'static str {
        match self {
            LengthEncoding::Ascii => "1 to 19 digits",
            LengthEncoding::Hex => "1 to 16 digits",
            LengthEncoding::Bcd => "1 to 9 bytes",
            LengthEncoding::BigEndian | LengthEncoding::LittleEndian => "1, 2, 3, 4 or 8 bytes",
        }
    }

    pub(crate) fn width_ok(self, width: usize) -> bool {
        match self {
            LengthEncoding::Ascii => (1..=19).contains(&width),
            LengthEncoding::Hex => (1..=16).contains(&width),
            LengthEncoding::Bcd => (1..=9).contains(&width),
            LengthEncoding::BigEndian | LengthEncoding::LittleEndian => {
                matches!(width, 1 | 2 | 3 | 4 | 8)
            }
        }
    }

    /// The largest value a field of `width` can hold.
    fn capacity(self, width: usize) -> u64 {
        // `width_ok` holds, so none of these overflow: 10^19 - 1 < 2^64, 16^15 - 1 for hex
        // below 16 digits, 10^18 - 1 for 9 BCD bytes, 2^56 - 1 below 8 binary bytes.
        let pow = |base: u64, exp: usize| -> u64 {
            let mut v: u64 = 1;
            for _ in 0..exp {
                v = v.saturating_mul(base);
            }
            v
        };
        match self {
            LengthEncoding::Ascii => pow(10, width).saturating_sub(1),
            LengthEncoding::Hex if width >= 16 => u64::MAX,
            LengthEncoding::Hex => pow(16, width) - 1,
            LengthEncoding::Bcd => pow(100, width).saturating_sub(1),
            LengthEncoding::BigEndian | LengthEncoding::LittleEndian => {
                if width >= 8 {
                    u64::MAX
                } else {
                    (1u64 << (8 * width)) - 1
                }
            }
        }
    }
}

/// A length-prefixed framing: see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LengthSpec {
    pub(crate) encoding: LengthEncoding,
    pub(crate) width: usize,
    pub(crate) incl: bool,
    pub(crate) skip: usize,
    pub(crate) adj: i64,
    pub(crate) max: usize,
}

impl LengthSpec {
    /// A header of `width` bytes (digits for `ascii`/`hex`) in `encoding`, not counting itself,
    /// no prefix, no adjustment, the default max.
    ///
    /// # Errors
    /// A width the encoding does not allow (`be`/`le`: 1, 2, 3, 4, 8; `ascii`: 1..=19;
    /// `hex`: 1..=16; `bcd`: 1..=9).
    pub fn new(encoding: LengthEncoding, width: usize) -> Result<Self, super::SpecError> {
        if !encoding.width_ok(width) {
            return Err(super::SpecError::new(
                format!("len:{}:{width}", encoding.name()),
                format!(
                    "width {width} is not valid for {}; expected {}",
                    encoding.name(),
                    encoding.widths_text()
                ),
            ));
        }
        Ok(LengthSpec {
            encoding,
            width,
            incl: false,
            skip: 0,
            adj: 0,
            max: super::DEFAULT_MAX,
        })
    }

    /// The length counts the header (prefix and length field) too.
    pub fn incl(mut self, incl: bool) -> Self {
        self.incl = incl;
        self
    }

    /// `n` bytes that belong to the frame precede the length field.
    /// Clamped to 65 536, as the spec parser does.
    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n.min(65_536);
        self
    }

    /// A signed adjustment added to the length field's value.
    pub fn adj(mut self, adj: i64) -> Self {
        self.adj = adj;
        self
    }

    /// The largest body accepted, in bytes.
    /// Clamped to [`MAX_LIMIT`](super::MAX_LIMIT), as the spec parser does: no arithmetic
    /// on a peer's length can then overflow.
    pub fn max(mut self, max: usize) -> Self {
        self.max = max.min(super::MAX_LIMIT);
        self
    }

    /// The encoding of the length field.
    pub fn encoding(&self) -> LengthEncoding {
        self.encoding
    }

    /// Size of the length field (bytes; for `ascii`/`hex`, characters).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Bytes before the first body byte: `skip + width`.
    pub fn header_len(&self) -> usize {
        self.skip.saturating_add(self.width)
    }

    /// The largest body this spec will decode or encode: `max`, clamped by what the length
    /// field can express.
    pub fn effective_max(&self) -> usize {
        let cap = i128::from(self.encoding.capacity(self.width)) + i128::from(self.adj)
            - self.incl_bytes();
        let cap = usize::try_from(cap.max(0)).unwrap_or(usize::MAX);
        self.max.min(cap)
    }

    fn incl_bytes(&self) -> i128 {
        if self.incl {
            self.header_len() as i128
        } else {
            0
        }
    }

    /// Parse the field's value. `field` has exactly `width` bytes; `base` is the field's index
    /// in the frame (for error positions).
    fn parse_field(&self, field: &[u8], base: usize) -> Result<u64, FrameErrorKind> {
        let mut v: u64 = 0;
        match self.encoding {
            LengthEncoding::Ascii => {
                for (i, &b) in field.iter().enumerate() {
                    let d = match b {
                        b'0'..=b'9' => b - b'0',
                        _ => {
                            return Err(FrameErrorKind::BadAsciiDigit {
                                pos: base + i,
                                byte: b,
                            });
                        }
                    };
                    // 19 digits always fit in u64.
                    v = v * 10 + u64::from(d);
                }
            }
            LengthEncoding::Hex => {
                for (i, &b) in field.iter().enumerate() {
                    let d = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        _ => {
                            return Err(FrameErrorKind::BadHexDigit {
                                pos: base + i,
                                byte: b,
                            });
                        }
                    };
                    v = (v << 4) | u64::from(d);
                }
            }
            LengthEncoding::Bcd => {
                for (i, &b) in field.iter().enumerate() {
                    let (hi, lo) = (b >> 4, b & 0x0f);
                    for nibble in [hi, lo] {
                        if nibble > 9 {
                            return Err(FrameErrorKind::BadBcdNibble {
                                pos: base + i,
                                byte: b,
                                nibble,
                            });
                        }
                    }
                    v = v * 100 + u64::from(hi) * 10 + u64::from(lo);
                }
            }
            LengthEncoding::BigEndian => {
                for &b in field {
                    v = (v << 8) | u64::from(b);
                }
            }
            LengthEncoding::LittleEndian => {
                for &b in field.iter().rev() {
                    v = (v << 8) | u64::from(b);
                }
            }
        }
        Ok(v)
    }

    /// Body length for a field value, checked against the header size and `max_body` (which
    /// is [`effective_max`](Self::effective_max), computed once by the codec).
    fn body_len(&self, value: u64, max_body: usize) -> Result<usize, FrameErrorKind> {
        let body = i128::from(value) + i128::from(self.adj) - self.incl_bytes();
        if body < 0 {
            let min = self.incl_bytes() - i128::from(self.adj);
            return Err(FrameErrorKind::LengthTooSmall {
                value,
                min: u64::try_from(min).unwrap_or(u64::MAX),
            });
        }
        match usize::try_from(body) {
            Ok(n) if n <= max_body => Ok(n),
            _ => Err(FrameErrorKind::TooLong {
                len: u64::try_from(body).unwrap_or(u64::MAX),
                max: max_body,
            }),
        }
    }

    fn write_field(&self, value: u64, dst: &mut BytesMut) {
        let w = self.width;
        match self.encoding {
            LengthEncoding::Ascii | LengthEncoding::Hex => {
                let (base, digits): (u64, &[u8; 16]) = match self.encoding {
                    LengthEncoding::Ascii => (10, b"0123456789ABCDEF"),
                    _ => (16, b"0123456789ABCDEF"),
                };
                let mut buf = [b'0'; 19];
                let mut v = value;
                for slot in buf.iter_mut().take(w).rev() {
                    *slot = digits[(v % base) as usize];
                    v /= base;
                }
                dst.put_slice(&buf[..w]);
            }
            LengthEncoding::Bcd => {
                let mut buf = [0u8; 9];
                let mut v = value;
                for slot in buf.iter_mut().take(w).rev() {
                    let pair = (v % 100) as u8;
                    *slot = ((pair / 10) << 4) | (pair % 10);
                    v /= 100;
                }
                dst.put_slice(&buf[..w]);
            }
            LengthEncoding::BigEndian => {
                let bytes = value.to_be_bytes();
                dst.put_slice(&bytes[8 - w..]);
            }
            LengthEncoding::LittleEndian => {
                let bytes = value.to_le_bytes();
                dst.put_slice(&bytes[..w]);
            }
        }
    }

    /// The field value that announces a body of `body_len` bytes, if the field can express it.
    #[inline(always)]
    fn field_value(&self, body_len: usize) -> Result<u64, String> {
        let v = body_len as i128 - i128::from(self.adj) + self.incl_bytes();
        let cap = self.encoding.capacity(self.width);
        match u64::try_from(v) {
            Ok(v) if v <= cap && body_len <= self.max => Ok(v),
            _ if body_len > self.max => Err(format!(
                "body of {body_len} bytes exceeds max={} of {self}",
                self.max
            )),
            _ => Err(format!(
                "body of {body_len} bytes does not fit the header of {self} (at most {} body bytes)",
                self.effective_max()
            )),
        }
    }
}

impl fmt::Display for LengthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "len:{}:{}", self.encoding.name(), self.width)?;
        if self.incl {
            f.write_str(":incl")?;
        }
        if self.skip != 0 {
            write!(f, ":skip={}", self.skip)?;
        }
        if self.adj != 0 {
            write!(f, ":adj={}", self.adj)?;
        }
        if self.max != super::DEFAULT_MAX {
            write!(f, ":max={}", self.max)?;
        }
        Ok(())
    }
}

/// Decoder state: the header is parsed once and the body length kept (tokio-util's Head/Data).
/// 32 bits: a body is at most [`MAX_LIMIT`](super::MAX_LIMIT) (1 GiB), and every idle server
/// connection holds a codec.
#[derive(Debug, Clone, Copy)]
enum State {
    Head,
    Body(u32),
}

#[derive(Debug, Clone)]
pub(crate) struct LengthCodec {
    spec: LengthSpec,
    state: State,
    /// `spec.header_len()` and `spec.effective_max()`, computed once rather than per frame.
    head: usize,
    max_body: u32,
}

impl LengthCodec {
    pub(crate) fn new(spec: LengthSpec) -> Self {
        // `max` is clamped to MAX_LIMIT wherever it is set; the `min` keeps the conversion
        // exact whatever a spec built field by field holds.
        let max_body = spec.effective_max().min(super::MAX_LIMIT);
        LengthCodec {
            head: spec.header_len(),
            max_body: u32::try_from(max_body).unwrap_or(u32::MAX),
            spec,
            state: State::Head,
        }
    }

    pub(crate) fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameErrorKind> {
        let skip = self.spec.skip;
        let head = self.head;
        let body = match self.state {
            State::Body(n) => n as usize,
            State::Head => {
                let Some(field) = src.get(skip..head) else {
                    return Ok(None);
                };
                let value = self.spec.parse_field(field, skip)?;
                let n = self.spec.body_len(value, self.max_body as usize)?;
                // (n <= max_body, a u32.)
                self.state = State::Body(u32::try_from(n).unwrap_or(u32::MAX));
                n
            }
        };
        // `body <= max` (checked above), so this cannot overflow. Memory is reserved only in
        // steps of at most `RESERVE_STEP`: the peer's length is a claim, not bytes, and a
        // header announcing 8 MiB followed by silence must not hold 8 MiB per connection.
        let total = head + body;
        if src.len() < total {
            // A little past the frame: a read into this room that drains the socket comes
            // back short, which tells the reader the socket is empty (an exact fit would
            // leave it to find out with one more read that fails).
            let want = (total - src.len()).saturating_add(super::READ_SLACK);
            src.reserve(want.min(super::RESERVE_STEP));
            return Ok(None);
        }
        self.state = State::Head;
        if skip != 0 {
            // Move the (small) prefix forward over the length field so prefix and body are
            // contiguous: the body itself is never copied.
            src.copy_within(0..skip, self.spec.width);
        }
        src.advance(self.spec.width);
        Ok(Some(src.split_to(skip + body).freeze()))
    }

    pub(crate) fn decode_eof(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<Bytes>, FrameErrorKind> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        if src.is_empty() {
            return Ok(None);
        }
        let head = self.head;
        Err(match self.state {
            State::Head => FrameErrorKind::Truncated {
                part: FramePart::Header,
                have: src.len(),
                want: Some(head),
            },
            State::Body(n) => FrameErrorKind::Truncated {
                part: FramePart::Body,
                have: src.len().saturating_sub(head),
                want: Some(n as usize),
            },
        })
    }

    pub(crate) fn encode(&self, frame: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        let (prefix, body, value) = self.split(frame)?;
        dst.reserve(self.spec.header_len() + body.len());
        dst.put_slice(prefix);
        self.spec.write_field(value, dst);
        dst.put_slice(body);
        Ok(())
    }

    /// [`encode`](Self::encode) but the body: the `skip=` prefix and the length field go into
    /// `dst` (room for them alone is reserved), and the body is returned.
    #[cfg(feature = "server")]
    pub(crate) fn encode_head<'a>(
        &self,
        frame: &'a [u8],
        dst: &mut BytesMut,
    ) -> Result<&'a [u8], FrameError> {
        let (prefix, body, value) = self.split(frame)?;
        dst.reserve(self.spec.header_len());
        dst.put_slice(prefix);
        self.spec.write_field(value, dst);
        Ok(body)
    }

    /// `frame`'s `skip=` prefix, its body, and the length field's value for that body.
    #[inline(always)]
    fn split<'a>(&self, frame: &'a [u8]) -> Result<(&'a [u8], &'a [u8], u64), FrameError> {
        let skip = self.spec.skip;
        let Some((prefix, body)) = frame.split_at_checked(skip) else {
            return Err(self.shorter_than_skip(frame.len()));
        };
        let value = self
            .spec
            .field_value(body.len())
            .map_err(FrameError::unencodable)?;
        Ok((prefix, body, value))
    }

    #[cold]
    fn shorter_than_skip(&self, len: usize) -> FrameError {
        FrameError::unencodable(format!(
            "frame of {len} bytes is shorter than the {}-byte skip= prefix of {}",
            self.spec.skip, self.spec
        ))
    }
}
