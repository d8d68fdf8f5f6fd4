//! Delimited frames: `delim:<bytes>[:max=N][:keep]` and `line`.
//!
//! A frame ends at the first occurrence of the delimiter (one or more bytes). The delimiter is
//! dropped from the decoded frame unless `keep` is given. `line` is `delim:\n` that also
//! strips one trailing `\r`, so both `\n` and `\r\n` peers work.
//!
//! ```text
//! +---------- body ----------+-- delimiter --+
//! | any bytes but delimiter  | e.g. 03 (ETX) |
//! +--------------------------+---------------+
//! ```
//!
//! The delimiter is written in the spec as text with the escapes `\n`, `\r`, `\t`, `\\`,
//! `\xNN`, or as hex `0xNN..` (a literal `:` must be written `\x3a`).
//!
//! Examples, INPUT -> DECODED:
//!
//! ```text
//! delim:0x03            02 'PAYLOAD' 03            -> 02 'PAYLOAD'   (STX..ETX links)
//! delim:0x03:keep       'PAYLOAD' 03               -> 'PAYLOAD' 03
//! delim:\r\n            "hello\r\n"                -> "hello"
//! line                  "hello\r\n" "bye\n"        -> "hello", "bye"
//! ```
//!
//! Encoding refuses a body the decoder would not give back: one that contains the delimiter,
//! or whose last bytes start it (`ab` under `delim:aba` would go out as `ababa`, which decodes
//! as an empty frame followed by `ba`).
//!
//! `max` caps the body: when `max` bytes have arrived and the delimiter is not among them
//! (nor straddling the end), decoding fails instead of buffering forever. The scan resumes
//! where the last one stopped, so a frame trickling in byte by byte costs linear time.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{FrameError, FrameErrorKind};

/// A delimited framing: see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DelimitedSpec {
    pub(crate) delimiter: Vec<u8>,
    pub(crate) max: usize,
    pub(crate) keep: bool,
    /// `line`: strip one trailing `\r`.
    pub(crate) line: bool,
}

impl DelimitedSpec {
    /// Frames end at `delimiter`, which is dropped from decoded frames; default max.
    ///
    /// # Errors
    /// An empty delimiter.
    pub fn new(delimiter: impl Into<Vec<u8>>) -> Result<Self, super::SpecError> {
        let delimiter = delimiter.into();
        if delimiter.is_empty() {
            return Err(super::SpecError::new(
                "delim:",
                "the delimiter is empty; give at least one byte, e.g. delim:\\n or delim:0x03",
            ));
        }
        Ok(DelimitedSpec {
            delimiter,
            max: super::DEFAULT_MAX,
            keep: false,
            line: false,
        })
    }

    /// `line`: frames end at `\n`, and one `\r` before it is stripped too.
    pub fn line() -> Self {
        DelimitedSpec {
            delimiter: b"\n".to_vec(),
            max: super::DEFAULT_MAX,
            keep: false,
            line: true,
        }
    }

    /// Keep the delimiter at the end of decoded frames.
    pub fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// The largest body accepted, delimiter not counted.
    /// Clamped to [`MAX_LIMIT`](super::MAX_LIMIT), as the spec parser does.
    pub fn max(mut self, max: usize) -> Self {
        self.max = max.min(super::MAX_LIMIT);
        self
    }

    /// The delimiter bytes.
    pub fn delimiter(&self) -> &[u8] {
        &self.delimiter
    }
}

/// Writes a delimiter in the spec syntax: text with escapes when that is readable, else hex.
pub(crate) fn fmt_delimiter(d: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let texty = !d.starts_with(b"0x")
        && d.iter()
            .all(|&b| matches!(b, b'\n' | b'\r' | b'\t') || (b.is_ascii_graphic() && b != b':'));
    if texty {
        for &b in d {
            match b {
                b'\n' => f.write_str("\\n")?,
                b'\r' => f.write_str("\\r")?,
                b'\t' => f.write_str("\\t")?,
                b'\\' => f.write_str("\\\\")?,
                _ => write!(f, "{}", b as char)?,
            }
        }
        Ok(())
    } else {
        f.write_str("0x")?;
        d.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for DelimitedSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line {
            f.write_str("line")?;
        } else {
            f.write_str("delim:")?;
            fmt_delimiter(&self.delimiter, f)?;
        }
        if self.max != super::DEFAULT_MAX {
            write!(f, ":max={}", self.max)?;
        }
        if self.keep && !self.line {
            f.write_str(":keep")?;
        }
        Ok(())
    }
}

/// The length of the longest tail of `body` where the delimiter would first be found once the
/// delimiter is appended: `body` ends with its first `k` bytes, and the delimiter repeats
/// itself after `k` bytes. With `aba`, the body `ab` goes out as `ababa`, which a decoder reads
/// as an empty frame and then `ba`. `body` must not contain `d`.
fn seam_overlap(body: &[u8], d: &[u8]) -> Option<usize> {
    // The largest `k` is the earliest occurrence, the one a decoder would find.
    (1..d.len()).rev().find(|&k| {
        d.split_at_checked(k)
            .is_some_and(|(head, rest)| body.ends_with(head) && d.starts_with(rest))
    })
}

#[derive(Debug, Clone)]
pub(crate) struct DelimitedCodec {
    spec: DelimitedSpec,
    /// Bytes of the buffer already scanned without finding a delimiter start.
    scanned: usize,
    finder: memchr::memmem::Finder<'static>,
}

impl DelimitedCodec {
    pub(crate) fn new(spec: DelimitedSpec) -> Self {
        let finder = memchr::memmem::Finder::new(&spec.delimiter).into_owned();
        DelimitedCodec {
            spec,
            scanned: 0,
            finder,
        }
    }

    pub(crate) fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameErrorKind> {
        let dlen = self.spec.delimiter.len();
        let max = self.spec.max;
        // A frame plus its delimiter never needs more than this many bytes.
        let limit = max.saturating_add(dlen);
        let window = src.get(..src.len().min(limit)).unwrap_or_default();
        let start = self.scanned.min(window.len());
        let found = window
            .get(start..)
            .and_then(|w| self.finder.find(w))
            .map(|i| i + start);
        let Some(pos) = found else {
            if src.len() >= limit {
                return Err(FrameErrorKind::TooLong {
                    len: src.len() as u64,
                    max,
                });
            }
            // The delimiter may straddle the end: rescan its first bytes next time.
            self.scanned = window.len().saturating_sub(dlen - 1);
            return Ok(None);
        };
        self.scanned = 0;
        let mut frame = if self.spec.keep && !self.spec.line {
            src.split_to(pos + dlen)
        } else {
            let f = src.split_to(pos);
            src.advance(dlen);
            f
        };
        if self.spec.line && frame.last() == Some(&b'\r') {
            frame.truncate(frame.len() - 1);
        }
        Ok(Some(frame.freeze()))
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
        Err(FrameErrorKind::Truncated {
            part: super::FramePart::Delimited,
            have: src.len(),
            want: None,
        })
    }

    pub(crate) fn encode(&self, frame: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        let d = &self.spec.delimiter[..];
        // Under `keep` the frame carries its delimiter; accept it with or without.
        let body = if self.spec.keep && !self.spec.line {
            frame.strip_suffix(d).unwrap_or(frame)
        } else {
            frame
        };
        if let Some(i) = self.finder.find(body) {
            return Err(FrameError::unencodable(format!(
                "the frame contains the delimiter of {} at byte {i}",
                self.spec
            )));
        }
        if let Some(k) = seam_overlap(body, d) {
            return Err(FrameError::unencodable(format!(
                "the frame's last {k} bytes begin the delimiter of {}, which would end the frame {k} bytes early",
                self.spec
            )));
        }
        if body.len() > self.spec.max {
            return Err(FrameError::unencodable(format!(
                "body of {} bytes exceeds max={} of {}",
                body.len(),
                self.spec.max,
                self.spec
            )));
        }
        if self.spec.line && body.last() == Some(&b'\r') {
            return Err(FrameError::unencodable(
                "the frame ends with \\r, which line framing strips on decode",
            ));
        }
        dst.reserve(body.len() + d.len());
        dst.put_slice(body);
        dst.put_slice(d);
        Ok(())
    }
}
