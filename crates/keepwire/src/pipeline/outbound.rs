//! The write step: all of a buffer to a socket, with one deadline for the whole write.
//!
//! # What the timeout means
//! `timeout` bounds the whole write from the moment it first has to wait for the peer (the
//! socket's send buffer is full), not each wait on its own. A peer that reads a few bytes now
//! and then would make every single wait short, and under a per-wait timeout keep the
//! connection and its buffers busy for as long as it likes; under one deadline it gets
//! `timeout` in all. A write that never waits never reads the clock (the per-request path on
//! the server).
//!
//! A caller may add its own, earlier deadline ([`WriteAll::with_deadline`]: a request's
//! deadline on the client); the write then ends with [`WriteError::Deadline`] when that one
//! comes first.
//!
//! Every outcome comes with the number of bytes written: a client uses it to tell a request
//! that never left (safe to send again) from one that may have reached the peer.
//!
//! The blocking twin [`write_all_blocking`] gives a `std::net::TcpStream` the same meaning
//! by setting its write timeout (`SO_SNDTIMEO`) to the time left before each write.

use std::io;
#[cfg(feature = "blocking")]
use std::io::Write as _;
use std::time::{Duration, Instant};

use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;

/// How a write ended short of writing everything.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The socket failed (the peer reset the connection, say), or took no bytes at all
    /// ([`io::ErrorKind::WriteZero`]).
    Io(io::Error),
    /// The peer did not read all of it within the write timeout.
    Stalled {
        /// The write timeout that ran out.
        timeout: Duration,
    },
    /// The caller's own deadline ([`WriteAll::with_deadline`]) came first.
    Deadline,
}

impl WriteError {
    /// Whether the write timeout ran out ([`WriteError::Stalled`]).
    #[cfg_attr(
        not(feature = "blocking"),
        allow(dead_code, reason = "only the blocking clients use it")
    )]
    pub(crate) fn is_stalled(&self) -> bool {
        matches!(self, WriteError::Stalled { .. })
    }

    /// The error as an [`io::Error`], for callers that deal in those: a stall or the
    /// caller's deadline is [`io::ErrorKind::TimedOut`] with this error's message.
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            WriteError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::TimedOut, other.to_string()),
        }
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Io(_) => f.write_str("socket write failed"),
            WriteError::Stalled { timeout } => write!(
                f,
                "peer did not read for {}",
                humantime::format_duration(*timeout)
            ),
            WriteError::Deadline => f.write_str("deadline passed before the write finished"),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// One write of a buffer, driven step by step: [`try_write`](Self::try_write) what the
/// socket takes, [`ready`](Self::ready) to wait (within the write's one deadline) when it
/// takes no more. [`finish`](Self::finish) runs both to the end; a caller that must read
/// while the socket is full (a client whose peer writes replies before it reads more
/// requests) drives the steps itself and waits with `Interest::READABLE` added.
///
/// The buffer may grow between steps (pongs appended behind the batch): `written` counts
/// from its start.
#[derive(Debug)]
pub(crate) struct WriteAll {
    written: usize,
    timeout: Duration,
    /// Set at the first wait: `timeout` from then.
    stall_deadline: Option<tokio::time::Instant>,
    /// The caller's deadline, if any.
    deadline: Option<tokio::time::Instant>,
}

impl WriteAll {
    /// A write that may wait `timeout` in all for the peer to read.
    pub(crate) fn new(timeout: Duration) -> Self {
        WriteAll {
            written: 0,
            timeout,
            stall_deadline: None,
            deadline: None,
        }
    }

    /// Also ends the write at `deadline` ([`WriteError::Deadline`]) if that comes before
    /// the write timeout runs out.
    #[cfg_attr(
        not(feature = "client"),
        allow(dead_code, reason = "only the clients use it")
    )]
    pub(crate) fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(tokio::time::Instant::from_std(deadline));
        self
    }

    /// Bytes of the buffer written so far.
    #[cfg_attr(
        not(feature = "client"),
        allow(dead_code, reason = "only the clients use it")
    )]
    pub(crate) fn written(&self) -> usize {
        self.written
    }

    /// Writes as much of `buf` (from [`written`](Self::written) on) as the socket takes now,
    /// without waiting. `Ok(true)` when all of `buf` is written, `Ok(false)` when the socket
    /// is full.
    ///
    /// # Errors
    /// [`WriteError::Io`] when the socket fails or takes zero bytes.
    pub(crate) fn try_write(&mut self, stream: &TcpStream, buf: &[u8]) -> Result<bool, WriteError> {
        while let Some(pending) = buf.get(self.written..).filter(|p| !p.is_empty()) {
            match stream.try_write(pending) {
                Ok(0) => return Err(WriteError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.written = self.written.saturating_add(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(WriteError::Io(e)),
            }
        }
        Ok(true)
    }

    /// Waits until `stream` is ready for `interest` (which should include
    /// [`Interest::WRITABLE`]), at most until the write's deadline: `timeout` after the first
    /// call of this write, or the caller's deadline if earlier.
    ///
    /// # Errors
    /// [`WriteError::Stalled`] or [`WriteError::Deadline`] when the deadline passes;
    /// [`WriteError::Io`] when the socket fails.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits. The deadline was fixed at the first call and stays.
    pub(crate) async fn ready(
        &mut self,
        stream: &TcpStream,
        interest: Interest,
    ) -> Result<Ready, WriteError> {
        let timeout = self.timeout;
        let stall = *self
            .stall_deadline
            .get_or_insert_with(|| crate::deadline::tokio_in(timeout));
        let (until, err) = match self.deadline {
            Some(d) if d < stall => (d, WriteError::Deadline),
            _ => (stall, WriteError::Stalled { timeout }),
        };
        match tokio::time::timeout_at(until, stream.ready(interest)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(WriteError::Io(e)),
            Err(_) => Err(err),
        }
    }

    /// Writes the rest of `buf`, waiting for the peer within the write's deadline. Returns
    /// the bytes of `buf` written, with the outcome.
    ///
    /// # Errors
    /// As [`try_write`](Self::try_write) and [`ready`](Self::ready).
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped part way, an unknown prefix of `buf` has been written. A
    /// caller that must know drives [`try_write`](Self::try_write) and
    /// [`ready`](Self::ready) itself.
    pub(crate) async fn finish(
        mut self,
        stream: &TcpStream,
        buf: &[u8],
    ) -> (usize, Result<(), WriteError>) {
        loop {
            match self.try_write(stream, buf) {
                Ok(true) => return (self.written, Ok(())),
                Ok(false) => {}
                Err(e) => return (self.written, Err(e)),
            }
            if let Err(e) = self.ready(stream, Interest::WRITABLE).await {
                return (self.written, Err(e));
            }
        }
    }
}

/// Writes all of `buf` to `stream`, waiting at most `timeout` in all for the peer to read
/// (see the [module docs](self)). Returns the bytes written, with the outcome.
///
/// # Errors
/// [`WriteError::Stalled`] when the peer did not read it all in time, [`WriteError::Io`]
/// when the socket failed.
///
/// # Cancel safety
/// Not cancel safe: see [`WriteAll::finish`].
#[cfg_attr(
    not(feature = "server"),
    allow(dead_code, reason = "only the server uses it")
)]
pub(crate) async fn write_all(
    stream: &TcpStream,
    buf: &[u8],
    timeout: Duration,
) -> (usize, Result<(), WriteError>) {
    let mut write = WriteAll::new(timeout);
    match write.try_write(stream, buf) {
        Ok(true) => return (write.written, Ok(())),
        Ok(false) => {}
        Err(e) => return (write.written, Err(e)),
    }
    // The socket is full: wait for the peer in a future of its own. Boxed: its timer and
    // readiness wait (about 600 bytes) would otherwise sit in every caller's future, which
    // the server allocates once per read batch; a write the socket takes at once (nearly
    // all of them) needs neither.
    Box::pin(write.finish(stream, buf)).await
}

/// The longest timeout handed to the OS: 2^31 - 1 ms (about 24.8 days), `poll(2)`'s limit
/// (an `int` of milliseconds) and, at 1000 ticks a second, the BSDs' for `SO_SNDTIMEO`.
#[cfg(feature = "blocking")]
const MAX_OS_TIMEOUT: Duration = Duration::from_millis(0x7fff_ffff);

/// [`write_all`] for a blocking `std::net::TcpStream`: all of `buf`, with `timeout` for the
/// whole write (counted from its start). Before each `write(2)` the socket's write timeout
/// (`SO_SNDTIMEO`) is set to the time left, capped at about 24.8 days; it is left at the
/// time that was left, so a socket written only through this function needs no other
/// write timeout. Returns the bytes written, with the outcome.
///
/// # Errors
/// [`WriteError::Stalled`] when the peer did not read it all in time (the OS reports its
/// write timeout as `WouldBlock`), [`WriteError::Io`] when the socket failed.
#[cfg(feature = "blocking")]
pub(crate) fn write_all_blocking(
    stream: &std::net::TcpStream,
    buf: &[u8],
    timeout: Duration,
) -> (usize, Result<(), WriteError>) {
    let deadline = crate::deadline::std_in(timeout);
    let mut written = 0usize;
    let mut writer = stream;
    while let Some(pending) = buf.get(written..).filter(|p| !p.is_empty()) {
        // What the socket takes at once is written whatever the timeout (zero included), as
        // the async write step does: the deadline bounds only the waits.
        match try_send(stream, pending) {
            Ok(Some(n)) => {
                written = written.saturating_add(n);
                continue;
            }
            Ok(None) => {}
            Err(e) => return (written, Err(WriteError::Io(e))),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (written, Err(WriteError::Stalled { timeout }));
        }
        if let Err(e) = stream.set_write_timeout(Some(left.min(MAX_OS_TIMEOUT))) {
            return (written, Err(WriteError::Io(e)));
        }
        match writer.write(pending) {
            Ok(0) => {
                return (
                    written,
                    Err(WriteError::Io(io::ErrorKind::WriteZero.into())),
                );
            }
            Ok(n) => written = written.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return (written, Err(WriteError::Stalled { timeout }));
            }
            Err(e) => return (written, Err(WriteError::Io(e))),
        }
    }
    (written, Ok(()))
}

/// One `send(2)` that does not wait (`MSG_DONTWAIT`, and `MSG_NOSIGNAL` as std's own writes):
/// `Some(n)` bytes taken (never 0 for a non-empty `buf`), `None` when the socket is full.
#[cfg(feature = "blocking")]
fn try_send(stream: &std::net::TcpStream, buf: &[u8]) -> io::Result<Option<usize>> {
    use rustix::net::{SendFlags, send};
    loop {
        return match send(stream, buf, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => Ok(Some(n)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    /// Kernel buffers are kept small so that a few hundred KiB fill them.
    const SMALL_BUF: usize = 16 * 1024;
    /// Far more than both sockets' buffers hold.
    const BIG: usize = 8 * 1024 * 1024;

    /// A connected pair on loopback with small kernel buffers: (writer, reader).
    fn std_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        use socket2::{Domain, Socket, Type};
        let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        // Set on the listener before the handshake, so the window it offers is small too.
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.set_recv_buffer_size(SMALL_BUF).unwrap();
        l.bind(&addr.into()).unwrap();
        l.listen(1).unwrap();
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_send_buffer_size(SMALL_BUF).unwrap();
        s.connect(&l.local_addr().unwrap()).unwrap();
        let (r, _) = l.accept().unwrap();
        (s.into(), r.into())
    }

    fn tokio_pair() -> (TcpStream, std::net::TcpStream) {
        let (w, r) = std_pair();
        w.set_nonblocking(true).unwrap();
        (TcpStream::from_std(w).unwrap(), r)
    }

    #[tokio::test]
    async fn writes_everything_to_a_reading_peer() {
        let (w, mut r) = tokio_pair();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).map(|_| got.len())
        });
        let buf = vec![7u8; 1024 * 1024];
        let (n, res) = write_all(&w, &buf, Duration::from_secs(30)).await;
        res.unwrap();
        assert_eq!(n, buf.len());
        drop(w);
        assert_eq!(reader.join().unwrap().unwrap(), buf.len());
    }

    #[tokio::test]
    async fn an_empty_buffer_is_written_at_once() {
        let (w, _r) = tokio_pair();
        let (n, res) = write_all(&w, &[], Duration::ZERO).await;
        assert_eq!(n, 0);
        res.unwrap();
    }

    /// One deadline for the whole write: a peer that reads a chunk every 400 ms keeps each
    /// wait shorter than the 1 s timeout, and still cannot hold the write past it.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_cannot_stretch_the_write_past_its_timeout() {
        let (w, r) = tokio_pair();
        r.set_nonblocking(true).unwrap();
        let r = TcpStream::from_std(r).unwrap();
        let reader = tokio::spawn(async move {
            let mut chunk = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            loop {
                tokio::time::sleep(Duration::from_millis(400)).await;
                r.readable().await.unwrap();
                match r.try_read(&mut chunk) {
                    Ok(0) => return total,
                    Ok(n) => total += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return total,
                }
            }
        });
        let buf = vec![1u8; BIG];
        let start = tokio::time::Instant::now();
        let (n, res) = write_all(&w, &buf, Duration::from_secs(1)).await;
        let took = start.elapsed();
        let err = res.unwrap_err();
        assert!(err.is_stalled(), "{err:?}");
        assert_eq!(err.to_string(), "peer did not read for 1s");
        assert!(n > 0 && n < BIG, "{n} bytes written");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_millis(1400),
            "{took:?}"
        );
        drop(w);
        // The reader did take bytes during the write (the waits were each shorter).
        assert!(reader.await.unwrap() > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_callers_deadline_ends_the_write_first() {
        let (w, _r) = tokio_pair();
        let buf = vec![1u8; BIG];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        let write = WriteAll::new(Duration::from_secs(10)).with_deadline(deadline.into_std());
        let (n, res) = write.finish(&w, &buf).await;
        assert!(matches!(res, Err(WriteError::Deadline)), "{res:?}");
        assert!(n > 0 && n < BIG);
        let now = tokio::time::Instant::now();
        assert!(now >= deadline && now < deadline + Duration::from_millis(10));
    }

    #[tokio::test]
    async fn a_reset_peer_fails_the_write_with_the_count_so_far() {
        let (w, r) = tokio_pair();
        socket2::SockRef::from(&r)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(r);
        let buf = vec![1u8; BIG];
        let (n, res) = write_all(&w, &buf, Duration::from_secs(30)).await;
        let err = res.unwrap_err();
        assert!(matches!(err, WriteError::Io(_)), "{err:?}");
        assert!(n < BIG);
    }

    #[test]
    fn blocking_write_reaches_a_reading_peer() {
        let (w, mut r) = std_pair();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).map(|_| got.len())
        });
        let buf = vec![7u8; 1024 * 1024];
        let (n, res) = write_all_blocking(&w, &buf, Duration::from_secs(30));
        res.unwrap();
        assert_eq!(n, buf.len());
        drop(w);
        assert_eq!(reader.join().unwrap().unwrap(), buf.len());
    }

    #[test]
    fn blocking_write_to_a_peer_that_does_not_read_stalls_in_time() {
        let (w, _r) = std_pair();
        let buf = vec![1u8; BIG];
        let timeout = Duration::from_millis(300);
        let start = Instant::now();
        let (n, res) = write_all_blocking(&w, &buf, timeout);
        let took = start.elapsed();
        assert!(res.unwrap_err().is_stalled());
        assert!(n > 0 && n < BIG, "{n} bytes written");
        // One deadline for the whole write, not one per write(2).
        assert!(took >= timeout && took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn blocking_write_with_zero_timeout_writes_what_the_socket_takes() {
        let (w, _r) = std_pair();
        let (n, res) = write_all_blocking(&w, b"abc", Duration::ZERO);
        res.unwrap();
        assert_eq!(n, 3);
        // Full socket: what it took is counted, then the zero deadline ends the wait at once.
        let buf = vec![1u8; BIG];
        let start = Instant::now();
        let (n, res) = write_all_blocking(&w, &buf, Duration::ZERO);
        assert!(res.unwrap_err().is_stalled());
        assert!(n > 0 && n < BIG, "{n} bytes written");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn errors_say_what_happened_in_one_line() {
        let stalled = WriteError::Stalled {
            timeout: Duration::from_secs(30),
        };
        assert_eq!(stalled.to_string(), "peer did not read for 30s");
        assert_eq!(stalled.into_io().kind(), io::ErrorKind::TimedOut);
        let io = WriteError::Io(io::ErrorKind::BrokenPipe.into());
        assert_eq!(io.to_string(), "socket write failed");
        assert!(std::error::Error::source(&io).is_some());
    }
}
