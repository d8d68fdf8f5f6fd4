use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::RecvFlags;
use tokio_util::codec::Decoder;

use crate::deadline::std_in;
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

    /// One `read` into the buffer through `read`. `Ok(false)` at end of stream.
    fn fill_with(
        &mut self,
        read: impl FnOnce(&mut R, &mut [u8]) -> io::Result<usize>,
    ) -> io::Result<bool> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let res = read(&mut self.inner, &mut self.buf[start..]);
        // A reader claiming more than it was given is clamped, not trusted.
        let n = res.as_ref().map_or(0, |&n| n.min(READ_CHUNK));
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
}

impl<R: Read> FrameReader<R> {
    /// One `read` into the buffer. `Ok(false)` at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        self.fill_with(|r, buf| r.read(buf))
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
    /// Works whether the socket is in blocking or non-blocking mode, and changes neither its
    /// mode (`O_NONBLOCK`) nor its read timeout (`SO_RCVTIMEO`): both belong to the socket,
    /// not to this handle, so a [`try_clone`](TcpStream::try_clone) writing on another thread
    /// would see them change under it (a blocking `write_all` failing with `WouldBlock` half
    /// way through a frame). The wait is `poll(2)` and each read is `recv(2)` with
    /// `MSG_DONTWAIT`, which make this one call non-blocking and nothing else.
    ///
    /// A zero `timeout` does not wait: it reads what has already arrived, as
    /// [`try_read_frame`](Self::try_read_frame) does. A `timeout` past
    /// [`FAR_FUTURE`](crate::deadline::FAR_FUTURE) (`Duration::MAX`, say) waits that long:
    /// without a deadline, in practice.
    ///
    /// # Errors
    /// A framing error, end of stream inside a frame, or an I/O error.
    ///
    /// ```
    /// use std::io::Write;
    /// use std::net::{TcpListener, TcpStream};
    /// use std::time::Duration;
    /// use keepwire::blocking::FrameReader;
    ///
    /// let l = TcpListener::bind("127.0.0.1:0")?;
    /// let ours = TcpStream::connect(l.local_addr()?)?;
    /// let (mut theirs, _) = l.accept()?;
    /// let mut r = FrameReader::new(ours, "len:ascii:4".parse().unwrap());
    /// theirs.write_all(b"0005he")?;
    /// // Half a frame: none yet, and the half is kept.
    /// assert!(r.read_frame_timeout(Duration::from_millis(50))?.is_none());
    /// theirs.write_all(b"llo")?;
    /// let frame = r.read_frame_timeout(Duration::from_secs(10))?;
    /// assert_eq!(frame.as_deref(), Some(&b"hello"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_frame_timeout(&mut self, timeout: Duration) -> Result<Option<Bytes>, FrameError> {
        if timeout.is_zero() {
            // A deadline of now would return before reading anything: a loop polling with a
            // zero timeout would never make progress.
            return self.try_read_frame();
        }
        self.read_until(std_in(timeout))
    }

    /// Reads until a frame is complete, the stream ends or `deadline` passes.
    fn read_until(&mut self, deadline: Instant) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.read_available()? {
                return Ok(Some(frame));
            }
            if self.eof {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            wait_readable(&self.inner, left)?;
        }
    }

    /// Reads what the socket has now without waiting, and returns a frame if one is complete.
    /// A partial frame stays buffered. Reading stops as soon as a frame is complete (the
    /// bytes past it stay in the socket or the buffer for the next call), and a header that
    /// announces more than `max` fails after at most one read.
    ///
    /// The socket's mode is not changed (see
    /// [`read_frame_timeout`](Self::read_frame_timeout)): a blocking socket stays blocking
    /// for every other handle on it.
    ///
    /// # Errors
    /// As [`read_frame_timeout`](Self::read_frame_timeout).
    ///
    /// ```
    /// use std::net::{TcpListener, TcpStream};
    /// use keepwire::blocking::FrameReader;
    ///
    /// let l = TcpListener::bind("127.0.0.1:0")?;
    /// let ours = TcpStream::connect(l.local_addr()?)?;
    /// let mut r = FrameReader::new(ours, "line".parse().unwrap());
    /// assert!(r.try_read_frame()?.is_none()); // nothing sent yet, and no waiting
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_read_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        self.read_available()
    }

    /// Reads without waiting until a frame is complete, the stream ends, or the socket has
    /// nothing more for now.
    fn read_available(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(Some(frame));
            }
            if self.eof {
                return Ok(None);
            }
            // Decode after every read, not once the socket runs dry: a busy peer cannot keep
            // us reading past a complete frame, and a header announcing more than `max`
            // fails before its body is buffered (at most one read past it).
            match self.fill_with(|s, buf| {
                rustix::net::recv(s, buf, RecvFlags::DONTWAIT)
                    .map(|(n, _)| n)
                    .map_err(io::Error::from)
            }) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the peer has closed its sending side (a read returned 0 bytes).
    pub fn is_eof(&self) -> bool {
        self.eof
    }
}

/// The longest single `poll(2)` wait: a day. Longer waits poll again (the deadline is
/// checked between polls), so no timeout has to fit the OS's own limits.
const MAX_POLL: Duration = Duration::from_secs(86_400);

/// Waits at most `left` for `sock` to be readable (or closed, or failed: the next `recv`
/// says which). Changes nothing on the socket. A signal ends the wait early; the caller
/// loops on its deadline.
fn wait_readable(sock: &TcpStream, left: Duration) -> io::Result<()> {
    let left = left.min(MAX_POLL);
    let timeout = Timespec {
        tv_sec: left.as_secs().try_into().unwrap_or(0),
        tv_nsec: left.subsec_nanos().into(),
    };
    let mut fds = [PollFd::new(sock, PollFlags::IN)];
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(_) => Ok(()),
        Err(e) if e == rustix::io::Errno::INTR => Ok(()),
        Err(e) => Err(e.into()),
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
