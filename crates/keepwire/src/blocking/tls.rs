//! TLS for code that is not async: rustls' own blocking stream ([`rustls::StreamOwned`])
//! over a `std::net::TcpStream`, under [`FrameReader`](super::FrameReader) and
//! [`FrameWriter`](super::FrameWriter) like any `Read + Write`.
//!
//! ```no_run
//! use std::net::TcpStream;
//! use std::time::Duration;
//! use keepwire::blocking::{FrameReader, FrameWriter, tls_connect};
//! use keepwire::tls::ClientTls;
//!
//! let tls = ClientTls::builder().ca_file("ca.pem").build()?;
//! let tcp = TcpStream::connect("127.0.0.1:7443")?;
//! let stream = tls_connect(tcp, &tls, "127.0.0.1:7443", Duration::from_secs(5))?;
//! let mut w = FrameWriter::new(stream, "len:be:2".parse()?);
//! w.write_frame(b"hello")?;
//! let mut r = FrameReader::new(w.into_inner(), "len:be:2".parse()?);
//! let reply = r.read_frame()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::tls::{ClientTls, TlsError};

/// A blocking TLS client stream: rustls' `StreamOwned` over a `std::net::TcpStream`.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Runs the client handshake on `stream` (a connection to `addr`: its host is the server
/// name unless `tls` names one) within `timeout`, and returns the TLS stream. The socket's
/// read and write timeouts are set for the handshake and cleared after it; set them again
/// (`stream.sock.set_read_timeout`) to bound later reads.
///
/// # Errors
/// [`TlsError::Timeout`] at the timeout; the handshake's failure with its cause named
/// (unknown CA, name mismatch, expired, ...).
pub fn tls_connect(
    stream: TcpStream,
    tls: &ClientTls,
    addr: &str,
    timeout: Duration,
) -> Result<TlsStream, TlsError> {
    let io_err = |source| TlsError::Io { source };
    let name = tls.server_name_for(addr)?;
    let mut conn = rustls::ClientConnection::new(Arc::clone(tls.config()), name)
        .map_err(|e| TlsError::handshake("client", e))?;
    // A zero timeout means "none" to the OS: at least 1 ms. Capped at poll(2)'s 24.8 days.
    let os = timeout.clamp(Duration::from_millis(1), Duration::from_millis(0x7fff_ffff));
    stream.set_read_timeout(Some(os)).map_err(io_err)?;
    stream.set_write_timeout(Some(os)).map_err(io_err)?;
    let deadline = crate::deadline::std_in(timeout);
    let mut sock = stream;
    while conn.is_handshaking() {
        if std::time::Instant::now() >= deadline {
            return Err(TlsError::Timeout { after: timeout });
        }
        match conn.complete_io(&mut sock) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(TlsError::Timeout { after: timeout });
            }
            Err(e) => return Err(TlsError::from_io("client", e)),
        }
    }
    sock.set_read_timeout(None).map_err(io_err)?;
    sock.set_write_timeout(None).map_err(io_err)?;
    Ok(rustls::StreamOwned::new(conn, sock))
}
