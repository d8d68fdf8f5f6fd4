//! Read-until-close frames: `eof[:max=N]`.
//!
//! The message is every byte until the peer half-closes its side (sends FIN). This is the
//! oldest short-connection protocol: connect, write the request, `shutdown(Write)`, read the
//! reply until the server closes. It cannot carry more than one message per direction, and it
//! has no empty message: a peer that closes without sending anything sent no frame.
//!
//! ```text
//! +------------ any bytes ------------+ FIN
//! | the whole message                 |
//! +-----------------------------------+
//! ```
//!
//! Example, INPUT -> DECODED: `eof`, `"hello world"` then FIN -> `"hello world"`.
//!
//! `max` (default 8 MiB) bounds what is buffered while waiting for the FIN.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{FrameError, FrameErrorKind};

#[derive(Debug, Clone)]
pub(crate) struct UntilCloseCodec {
    max: usize,
}

impl UntilCloseCodec {
    pub(crate) fn new(max: usize) -> Self {
        UntilCloseCodec { max }
    }

    pub(crate) fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameErrorKind> {
        if src.len() > self.max {
            return Err(FrameErrorKind::TooLong {
                len: src.len() as u64,
                max: self.max,
            });
        }
        Ok(None)
    }

    pub(crate) fn decode_eof(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<Bytes>, FrameErrorKind> {
        self.decode(src)?;
        if src.is_empty() {
            return Ok(None);
        }
        Ok(Some(src.split().freeze()))
    }

    pub(crate) fn encode(&self, frame: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.put_slice(self.encode_head(frame)?);
        Ok(())
    }

    /// [`encode`](Self::encode)'s check; the frame goes on the wire as it is.
    pub(crate) fn encode_head<'a>(&self, frame: &'a [u8]) -> Result<&'a [u8], FrameError> {
        if frame.len() > self.max {
            return Err(FrameError::unencodable(format!(
                "the frame is {} bytes, more than max={}",
                frame.len(),
                self.max
            )));
        }
        Ok(frame)
    }
}
