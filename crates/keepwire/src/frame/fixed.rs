//! Fixed-size frames: `fixed:<N>`.
//!
//! Every message is exactly `N` bytes; there is no header and no delimiter.
//!
//! ```text
//! +------- N bytes -------+------- N bytes -------+
//! | message 1             | message 2             |
//! +-----------------------+-----------------------+
//! ```
//!
//! Example, INPUT -> DECODED: `fixed:4`, `"abcdefgh"` -> `"abcd"`, `"efgh"`.
//! Encoding a message of any other size is an error, never padding or truncation.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{FrameError, FrameErrorKind, FramePart};

#[derive(Debug, Clone)]
pub(crate) struct FixedCodec {
    len: usize,
}

impl FixedCodec {
    pub(crate) fn new(len: usize) -> Self {
        FixedCodec { len }
    }

    pub(crate) fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameErrorKind> {
        if src.len() < self.len {
            // In steps: `fixed:N` may be large, and until bytes arrive it is only a promise.
            src.reserve((self.len - src.len()).min(super::RESERVE_STEP));
            return Ok(None);
        }
        Ok(Some(src.split_to(self.len).freeze()))
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
            part: FramePart::Fixed,
            have: src.len(),
            want: Some(self.len),
        })
    }

    pub(crate) fn encode(&self, frame: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.put_slice(self.encode_head(frame)?);
        Ok(())
    }

    /// [`encode`](Self::encode)'s check; the frame goes on the wire as it is.
    pub(crate) fn encode_head<'a>(&self, frame: &'a [u8]) -> Result<&'a [u8], FrameError> {
        if frame.len() != self.len {
            return Err(FrameError::unencodable(format!(
                "the frame is {} bytes, fixed:{} needs exactly {}",
                frame.len(),
                self.len,
                self.len
            )));
        }
        Ok(frame)
    }
}
