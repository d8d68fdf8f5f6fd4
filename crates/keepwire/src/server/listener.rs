//! The listening socket, accepted from directly rather than through tokio's `TcpListener`.
//!
//! tokio registers a socket its listener accepts as already readable and writable, before
//! any event from the kernel. A connection's first read is then tried at once, and on a busy
//! port the request has usually not arrived yet: a `recv` that returns `EAGAIN`, about 0.8
//! per connection under `keepwire bench --modes short`. A socket accepted here (`accept4`
//! with `SOCK_NONBLOCK | SOCK_CLOEXEC`, through mio) is registered with
//! [`TcpStream::from_std`], which assumes nothing: the connection reads once the kernel says
//! there is something to read. Nothing is lost by waiting: registering a socket with epoll
//! (`EPOLL_CTL_ADD`, edge-triggered) reports at once what is already in it.
//!
//! (Clearing tokio's assumed readiness right after its accept is not the same: on a
//! multi-thread runtime the driver can report the request in between, and the clearing
//! then erases that event. See docs/performance.md.)

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;

/// A non-blocking listening socket registered with the runtime's I/O driver.
#[derive(Debug)]
pub(super) struct Listener(AsyncFd<mio::net::TcpListener>);

impl Listener {
    /// Registers `listener`, which must be non-blocking and listening.
    pub(super) fn new(listener: std::net::TcpListener) -> io::Result<Self> {
        // tokio 1.5x deprecates `AsyncFd::new` for `AsyncFd::register`, an `unsafe fn`
        // (this crate forbids `unsafe`): `new` is safe to call on any `T: AsRawFd`, yet the
        // registration is only sound if `T` keeps returning the same open descriptor until
        // it is dropped or taken back with `into_inner`. mio's `TcpListener` owns its
        // descriptor (an `OwnedFd` inside) and never replaces it, and nothing here can swap
        // it: the condition holds, so the deprecated constructor is used knowingly.
        #[allow(deprecated)]
        let fd = AsyncFd::new(mio::net::TcpListener::from_std(listener))?;
        Ok(Self(fd))
    }

    /// The address the socket is bound to.
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    /// Accepts one pending connection, not yet registered with the runtime (see
    /// [`registered`]); `Pending` (the task registered) when none is. Errors are `accept4`'s.
    pub(super) fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<MioAccepted>> {
        loop {
            let mut ready = ready!(self.0.poll_read_ready(cx))?;
            // `try_io` clears the readiness it saw only on `WouldBlock`, and only if no event
            // came since: a connection completed meanwhile keeps the listener readable.
            match ready.try_io(|l| l.get_ref().accept()) {
                Ok(res) => return Poll::Ready(res),
                Err(_would_block) => {}
            }
        }
    }

    /// Stops watching the socket: the backlog sweep at shutdown accepts from it without
    /// the runtime.
    pub(super) fn into_inner(self) -> mio::net::TcpListener {
        self.0.into_inner()
    }
}

/// An accepted connection and its peer's address.
pub(super) type Accepted = (TcpStream, SocketAddr);

/// A connection mio accepted (non-blocking, not registered) and its peer's address.
pub(super) type MioAccepted = (mio::net::TcpStream, SocketAddr);

/// Registers a socket accepted by mio (non-blocking) with the runtime, readiness unknown.
pub(super) fn registered((stream, peer): MioAccepted) -> io::Result<Accepted> {
    TcpStream::from_std(stream.into()).map(|s| (s, peer))
}
