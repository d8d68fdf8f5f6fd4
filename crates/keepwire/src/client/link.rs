//! What a client connection carries its bytes over: the socket to the endpoint (or to a
//! SOCKS5 proxy relaying to it), and TLS as rustls' sans-IO layer between the socket and
//! the connection's buffers (`tls/layer.rs`), as on the server. The session's select loop,
//! the write step with its readiness waits, heartbeats, the login and the endpoint plan
//! stay the same code over TLS and through a proxy.
//!
//! ```text
//! connect_tcp: TCP (or SOCKS5 CONNECT) ─▶ socket options ─▶ TLS handshake ─▶ probe ─▶ login
//! reads:  socket ─▶ [TLS decrypt] ─▶ rbuf          writes: wbuf ─▶ [TLS encrypt] ─▶ socket
//! ```

use std::io;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::config::ClientConfig;
use super::connect::Connected;
use crate::pipeline::{WriteAll, WriteError};

/// A connection's TLS layer, when the `tls` feature is on and TLS configured.
#[cfg(feature = "tls")]
pub(crate) type TlsSlot = Option<Box<crate::tls::layer::TlsLayer>>;
/// Without the `tls` feature there is no layer.
#[cfg(not(feature = "tls"))]
pub(crate) type TlsSlot = ();

/// The TCP connection to `addr` within the connect timeout: direct, or through the
/// configured SOCKS5 proxy. The error is a reason for logs and `ClientError`.
pub(crate) async fn open(cfg: &ClientConfig, addr: &str) -> Result<TcpStream, String> {
    #[cfg(feature = "socks")]
    if let Some(socks) = &cfg.socks5 {
        return socks
            .connect(addr, cfg.connect_timeout)
            .await
            .map_err(|e| e.to_string());
    }
    match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(format!(
            "connect timed out after {}",
            humantime::format_duration(cfg.connect_timeout)
        )),
        Ok(Err(e)) => Err(format!("connect failed: {e}")),
        Ok(Ok(s)) => Ok(s),
    }
}

impl Connected {
    /// With TLS configured: the handshake, within the connect timeout. Plaintext that came
    /// with the server's last flight is kept in `leftover`.
    pub(crate) async fn start_tls(&mut self, cfg: &ClientConfig) -> Result<(), String> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &cfg.tls {
            let mut layer = Box::new(
                crate::tls::layer::TlsLayer::client(tls, &self.addr).map_err(|e| e.to_string())?,
            );
            layer
                .handshake(&self.stream, &[], &mut self.leftover, cfg.connect_timeout)
                .await
                .map_err(|e| e.to_string())?;
            self.tls = Some(layer);
        }
        let _ = cfg;
        Ok(())
    }

    /// Reads once into `buf` (plaintext), waiting for the socket. `Ok(0)` at end of stream
    /// (or after the server's close_notify).
    ///
    /// # Cancel safety
    /// Cancel safe: it waits for readiness, then reads (and decrypts) without waiting.
    pub(crate) async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            loop {
                self.stream.readable().await?;
                match tls.read(&self.stream, buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            }
        }
        self.stream.read_buf(buf).await
    }

    /// Reads what has arrived, without waiting: `Ok(0)` at end of stream, `WouldBlock`
    /// when nothing (or no whole TLS record) is there.
    pub(crate) fn try_read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.read(&self.stream, buf);
        }
        self.stream.try_read_buf(buf)
    }

    /// Writes all of `plain` with the write step `w` (sealed first with TLS). Returns the
    /// plaintext bytes that may have left (see [`sealed_written`]) with the outcome.
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`WriteAll::finish`].
    pub(crate) async fn write_with(
        &mut self,
        w: WriteAll,
        plain: &[u8],
    ) -> (usize, Result<(), WriteError>) {
        let mut sealed = 0;
        let (n, res) = match seal(&mut self.tls, plain, &mut sealed) {
            Ok(wire) => w.finish(&self.stream, wire).await,
            Err(e) => (0, Err(WriteError::Io(e))),
        };
        (sealed_written(&mut self.tls, plain.len(), n), res)
    }

    /// Our close_notify before the FIN (TLS), offered to the socket without waiting.
    pub(crate) fn close_notify(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            let _ = self.stream.try_write(tls.close_notify());
            tls.written();
        }
    }
}

/// The bytes that put `plain` on the wire: `plain` itself, or with TLS its ciphertext.
/// `sealed` counts the plaintext already encrypted, so a buffer that grows while it is
/// written (pongs queued behind a batch) has only its new part encrypted; the ciphertext
/// accumulates in the layer until [`sealed_written`].
pub(crate) fn seal<'a>(
    tls: &'a mut TlsSlot,
    plain: &'a [u8],
    sealed: &mut usize,
) -> io::Result<&'a [u8]> {
    #[cfg(feature = "tls")]
    match tls.as_deref_mut() {
        Some(t) => {
            let fresh = plain.get(*sealed..).unwrap_or_default();
            *sealed = plain.len();
            t.encrypt(fresh).map_err(io::Error::from)
        }
        None => Ok(plain),
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (tls, sealed);
        Ok(plain)
    }
}

/// The write of a sealed buffer of `plain_len` bytes ended after `wire` bytes left: the
/// ciphertext is dropped, and the plaintext bytes that may have left are returned. A TLS
/// record cut part way cannot be mapped back to plaintext, so any ciphertext gone counts
/// all of the plaintext as possibly sent (the safe verdict); none gone is none.
pub(crate) fn sealed_written(tls: &mut TlsSlot, plain_len: usize, wire: usize) -> usize {
    #[cfg(feature = "tls")]
    if let Some(t) = tls.as_deref_mut() {
        t.written();
        return if wire == 0 { 0 } else { plain_len };
    }
    let _ = (tls, plain_len);
    wire
}
