use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::frame::{FrameCodec, FrameError, FramingSpec};

/// Bytes asked of the reader per `read` call.
const READ_CHUNK: usize = 8 * 1024;

/// Reads frames from any [`Read`] with a [`FrameCodec`].
///
/// Bytes read past the end of a frame stay buffered for the next call; a frame cut short by a
/// timeout or `WouldBlock` stays buffered too, so no call ever loses data.
///
/// ```
/// use keepwire::blocking::FrameReader;
/// use keepwire::frame::FramingSpec;
///
/// let wire: &[u8] = b"0005hello0003bye";
/// let mut r = FrameReader::new(wire, FramingSpec::parse("len:ascii:4").unwrap());
/// assert_eq!(&r.read_frame().unwrap().unwrap()[..], b"hello");
/// assert_eq!(&r.read_frame().unwrap().unwrap()[..], b"bye");
/// assert!(r.read_frame().unwrap().is_none()); // clean end of stream
/// ```
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    codec: FrameCodec,
    buf: BytesMut,
    eof: bool,
}

impl<R> FrameReader<R> {
    /// A reader of `spec` frames from `inner`.
    pub fn new(inner: R, spec: FramingSpec) -> Self {
        FrameReader {
            inner,
            codec: FrameCodec::new(spec),
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The wrapped reader, mutably. Reading from it directly skips the frame buffer.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Bytes received but not yet returned as a frame (a partial frame, or frames not yet
    /// asked for).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset where the next frame starts.
    pub fn stream_offset(&self) -> u64 {
        self.codec.stream_offset()
    }

    /// The wrapped reader and anything buffered but not yet decoded.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }

    /// A frame already complete in the buffer (or, at end of stream, the last one).
    fn buffered_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.eof {
            self.codec.decode_eof(&mut self.buf)
        } else {
            self.codec.decode(&mut self.buf)
        }
    }
}

impl<R: Read> FrameReader<R> {
    /// One `read` into the buffer. `Ok(false)` at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let res = self.inner.read(&mut self.buf[start..]);
        let n = *res.as_ref().unwrap_or(&0);
        self.buf.truncate(start + n);
        match res {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(_) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Reads until a whole frame is decoded. `Ok(None)` when the stream ended cleanly between
    /// frames.
    ///
    /// # Errors
    /// A framing error (the reader then stays failed), end of stream inside a frame, or an
    /// I/O error. A read timeout or `WouldBlock` from the reader is returned as an I/O error
    /// and loses nothing: call again to continue the same frame.
    pub fn read_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(Some(frame));
            }
            if self.eof {
                return Ok(None);
            }
            match self.fill() {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl FrameReader<TcpStream> {
    /// Waits at most `timeout` for a whole frame. `Ok(None)` when none completed in time (or
    /// the stream ended cleanly: see [`is_eof`](Self::is_eof)); the bytes of a partial frame
    /// stay buffered and the next call continues it.
    ///
    /// Works whether the socket is in blocking or non-blocking mode: for the duration of the
    /// call it is switched to blocking reads with a read timeout, and its previous mode and
    /// read timeout are restored before returning.
    ///
    /// A zero `timeout` does not wait: it reads what has already arrived, as
    /// [`try_read_frame`](Self::try_read_frame) does. A `timeout` too large to add to
    /// [`Instant::now`] (`Duration::MAX`) waits without a deadline.
    ///
    /// # Errors
    /// A framing error, end of stream inside a frame, or an I/O error.
    pub fn read_frame_timeout(&mut self, timeout: Duration) -> Result<Option<Bytes>, FrameError> {
        if timeout.is_zero() {
            // The OS takes a zero read timeout as "none" (std refuses it), and a deadline of
            // now would return before reading anything: a loop polling with a zero timeout
            // would never make progress.
            return self.try_read_frame();
        }
        if let Some(frame) = self.buffered_frame()? {
            return Ok(Some(frame));
        }
        if self.eof {
            return Ok(None);
        }
        let sock = socket2::SockRef::from(&self.inner);
        let was_nonblocking = sock.nonblocking()?;
        let old_timeout = self.inner.read_timeout()?;
        if was_nonblocking {
            self.inner.set_nonblocking(false)?;
        }
        // `Instant + Duration` panics on overflow; past what an Instant can hold there is no
        // deadline.
        let res = self.read_until(Instant::now().checked_add(timeout));
        // Restore the caller's settings even when the read failed.
        let restore = self
            .inner
            .set_read_timeout(old_timeout)
            .and_then(|()| self.inner.set_nonblocking(was_nonblocking));
        let frame = res?;
        restore?;
        Ok(frame)
    }

    /// Blocking reads until a frame is complete, the stream ends or `deadline` (`None`: no
    /// deadline) passes.
    fn read_until(&mut self, deadline: Option<Instant>) -> Result<Option<Bytes>, FrameError> {
        loop {
            let left = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    Some(left)
                }
                None => None,
            };
            self.inner.set_read_timeout(left)?;
            match self.fill() {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
            if let Some(frame) = self.buffered_frame()? {
                return Ok(Some(frame));
            }
            if self.eof {
                return Ok(None);
            }
        }
    }

    /// Reads what the socket has now without waiting, and returns a frame if one is complete.
    /// A partial frame stays buffered. Reading stops as soon as a frame is complete (the
    /// bytes past it stay in the socket or the buffer for the next call), and a header that
    /// announces more than `max` fails after at most one read.
    ///
    /// # Errors
    /// As [`read_frame_timeout`](Self::read_frame_timeout).
    pub fn try_read_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.buffered_frame()? {
            return Ok(Some(frame));
        }
        if self.eof {
            return Ok(None);
        }
        let was_nonblocking = socket2::SockRef::from(&self.inner).nonblocking()?;
        if !was_nonblocking {
            self.inner.set_nonblocking(true)?;
        }
        let res = self.read_available();
        let restore = if was_nonblocking {
            Ok(())
        } else {
            self.inner.set_nonblocking(false)
        };
        let frame = res?;
        restore?;
        Ok(frame)
    }

    /// Reads from a non-blocking socket until a frame is complete, the stream ends, or the
    /// socket has nothing more for now.
    fn read_available(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            match self.fill() {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            // Decode after every read, not once the socket runs dry: a busy peer cannot keep
            // us reading past a complete frame, and a header announcing more than `max`
            // fails before its body is buffered (at most one read past it).
            if let Some(frame) = self.buffered_frame()? {
                return Ok(Some(frame));
            }
            if self.eof {
                return Ok(None);
            }
        }
    }

    /// Whether the peer has closed its sending side (a read returned 0 bytes).
    pub fn is_eof(&self) -> bool {
        self.eof
    }
}

/// Writes frames to any [`Write`] with a [`FrameCodec`].
///
/// ```
/// use keepwire::blocking::FrameWriter;
/// use keepwire::frame::FramingSpec;
///
/// let mut w = FrameWriter::new(Vec::new(), FramingSpec::parse("len:be:2").unwrap());
/// w.write_frame(b"hi").unwrap();
/// assert_eq!(w.get_ref(), &[0, 2, b'h', b'i']);
/// ```
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    codec: FrameCodec,
    buf: BytesMut,
}

impl<W> FrameWriter<W> {
    /// A writer of `spec` frames to `inner`.
    pub fn new(inner: W, spec: FramingSpec) -> Self {
        FrameWriter {
            inner,
            codec: FrameCodec::new(spec),
            buf: BytesMut::new(),
        }
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The wrapped writer, mutably.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> FrameWriter<W> {
    /// Encodes `frame` and writes it whole, then flushes.
    ///
    /// # Errors
    /// [`FrameError::is_unencodable`] (nothing is written), or an I/O error (part of the frame
    /// may have been written: the stream's framing is then unknown and it should be closed).
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), FrameError> {
        self.buf.clear();
        self.codec.encode_to(frame, &mut self.buf)?;
        self.inner.write_all(&self.buf)?;
        self.inner.flush()?;
        Ok(())
    }
}
