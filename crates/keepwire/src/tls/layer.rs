//! The TLS layer of one connection: rustls' sans-IO connection between the socket and the
//! frame buffers, so the server's readiness loop (and the clients') stays as it is.
//!
//! ```text
//! socket ─try_read─▶ raw ─read_tls─▶ rustls ─process_new_packets─▶ plaintext ─▶ rbuf
//! wbuf ─writer().write─▶ rustls ─write_tls─▶ out ─pipeline write─▶ socket
//! ```
//!
//! Memory stays bounded: each read hands rustls at most [`RAW_READ`] bytes and every
//! plaintext byte is moved out right after (rustls itself refuses more than 16 KiB of
//! unread plaintext), and the ciphertext buffer holds one batch of replies.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::{ClientTls, PeerCert, ServerTls, TlsError};

/// Raw bytes read from the socket at once: one TLS record at most (16 KiB of plaintext
/// plus its header and tag, RFC 8446 §5.2: "The length MUST NOT exceed 2^14 + 256 bytes").
pub(crate) const RAW_READ: usize = 16 * 1024 + 256 + 5;

/// A connection's TLS state: the rustls connection and the ciphertext waiting to be
/// written.
#[derive(Debug)]
pub(crate) struct TlsLayer {
    conn: rustls::Connection,
    out: Vec<u8>,
    side: &'static str,
    peer_closed: bool,
    peer_cert: Option<Arc<PeerCert>>,
    edge: RecordEdge,
}

/// Where the peer's byte stream stands in TLS record framing, so a record begun but not
/// complete (held inside rustls, in no buffer of ours) can be told from nothing at all.
/// RFC 8446 §5.1: a record is a 5-byte header, "uint16 length" in its last two bytes, then
/// that many bytes.
#[derive(Debug, Default)]
struct RecordEdge {
    /// Header bytes of the current record seen so far (0 to 4).
    header: u8,
    /// The length's high byte, once seen.
    len_hi: u8,
    /// Body bytes of the current record still to come.
    body_left: usize,
}

impl RecordEdge {
    fn feed(&mut self, mut raw: &[u8]) {
        while !raw.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(raw.len());
                self.body_left -= n;
                raw = raw.get(n..).unwrap_or_default();
                continue;
            }
            let Some((&b, rest)) = raw.split_first() else {
                return;
            };
            raw = rest;
            match self.header {
                3 => self.len_hi = b,
                4 => self.body_left = usize::from(u16::from_be_bytes([self.len_hi, b])),
                _ => {}
            }
            self.header = if self.header >= 4 { 0 } else { self.header + 1 };
        }
    }

    fn mid_record(&self) -> bool {
        self.header > 0 || self.body_left > 0
    }
}

impl TlsLayer {
    /// The server side of a new connection.
    #[cfg_attr(
        not(feature = "server"),
        allow(dead_code, reason = "only the server uses it")
    )]
    pub(crate) fn server(tls: &ServerTls) -> Result<Self, TlsError> {
        let conn = rustls::ServerConnection::new(Arc::clone(tls.config()))
            .map_err(|e| TlsError::handshake("server", e))?;
        Ok(Self::with(conn.into(), "server"))
    }

    /// The client side of a new connection to `addr` (its host is the server name unless
    /// one is configured).
    #[cfg_attr(
        not(feature = "client"),
        allow(dead_code, reason = "only the clients use it")
    )]
    pub(crate) fn client(tls: &ClientTls, addr: &str) -> Result<Self, TlsError> {
        let name = tls.server_name_for(addr)?;
        let conn = rustls::ClientConnection::new(Arc::clone(tls.config()), name)
            .map_err(|e| TlsError::handshake("client", e))?;
        Ok(Self::with(conn.into(), "client"))
    }

    fn with(conn: rustls::Connection, side: &'static str) -> Self {
        TlsLayer {
            conn,
            out: Vec::new(),
            side,
            peer_closed: false,
            peer_cert: None,
            edge: RecordEdge::default(),
        }
    }

    /// The peer's verified certificate (the leaf), once the handshake is done.
    #[cfg_attr(
        not(feature = "server"),
        allow(dead_code, reason = "only the server uses it")
    )]
    pub(crate) fn peer_cert(&self) -> Option<&Arc<PeerCert>> {
        self.peer_cert.as_ref()
    }

    /// The peer sent its close_notify: no more plaintext will come.
    #[cfg_attr(
        not(feature = "server"),
        allow(dead_code, reason = "only the server uses it")
    )]
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Feeds `raw` bytes from the socket to rustls and appends the plaintext they carry to
    /// `plain`.
    ///
    /// # Errors
    /// A handshake failure or a bad record ([`TlsError::Handshake`]). The alert rustls
    /// queued for the peer is in [`output`](Self::output).
    pub(crate) fn decrypt(&mut self, mut raw: &[u8], plain: &mut BytesMut) -> Result<(), TlsError> {
        self.edge.feed(raw);
        while !raw.is_empty() {
            match self.conn.read_tls(&mut raw) {
                // After the peer's close_notify rustls takes no more input: what follows is
                // dropped (RFC 8446 §6.1: "Any data received after a closure alert has been
                // received MUST be ignored"). Asking again would loop forever.
                Ok(0) => break,
                Ok(_) => {}
                Err(source) => return Err(TlsError::Io { source }),
            }
            let state = self
                .conn
                .process_new_packets()
                .map_err(|e| TlsError::handshake(self.side, e));
            let state = match state {
                Ok(s) => s,
                Err(e) => {
                    let _ = self.pull_output();
                    return Err(e);
                }
            };
            let mut want = state.plaintext_bytes_to_read();
            while want > 0 {
                let start = plain.len();
                plain.resize(start.saturating_add(want), 0);
                let got = match plain.get_mut(start..).map(|b| self.conn.reader().read(b)) {
                    Some(Ok(n)) => n,
                    _ => 0,
                };
                plain.truncate(start.saturating_add(got));
                if got == 0 {
                    break;
                }
                want = want.saturating_sub(got);
            }
            if state.peer_has_closed() {
                self.peer_closed = true;
            }
        }
        Ok(())
    }

    /// Part of a record has arrived and the rest has not: a request may have begun (a
    /// drain waits for it, as for a frame half read).
    #[cfg_attr(
        not(feature = "server"),
        allow(dead_code, reason = "only the server uses it")
    )]
    pub(crate) fn mid_record(&self) -> bool {
        self.edge.mid_record()
    }

    /// Moves what rustls has to send into the output buffer.
    fn pull_output(&mut self) -> Result<(), TlsError> {
        while self.conn.wants_write() {
            if let Err(source) = self.conn.write_tls(&mut self.out) {
                return Err(TlsError::Io { source });
            }
        }
        Ok(())
    }

    /// Encrypts `plain` and returns all ciphertext to write (with anything rustls had
    /// queued: tickets, alerts, key updates). Call [`written`](Self::written) after
    /// writing it.
    ///
    /// # Errors
    /// rustls refused the plaintext (the connection is closing).
    pub(crate) fn encrypt(&mut self, mut plain: &[u8]) -> Result<&[u8], TlsError> {
        while !plain.is_empty() {
            let n = self
                .conn
                .writer()
                .write(plain)
                .map_err(|source| TlsError::Io { source })?;
            self.pull_output()?;
            if n == 0 {
                return Err(TlsError::Io {
                    source: io::ErrorKind::WriteZero.into(),
                });
            }
            plain = plain.get(n..).unwrap_or_default();
        }
        self.pull_output()?;
        Ok(&self.out)
    }

    /// The ciphertext waiting to be written (after [`decrypt`](Self::decrypt) failed: the
    /// alert).
    pub(crate) fn output(&mut self) -> &[u8] {
        let _ = self.pull_output();
        &self.out
    }

    /// The ciphertext returned by [`encrypt`](Self::encrypt) was written (or given up).
    pub(crate) fn written(&mut self) {
        self.out.clear();
        if self.out.capacity() > RAW_READ {
            self.out = Vec::new();
        }
    }

    /// Queues our close_notify (RFC 8446 §6.1: "Each party MUST send a 'close_notify'
    /// alert before closing its write side of the connection") and returns the ciphertext
    /// to write.
    pub(crate) fn close_notify(&mut self) -> &[u8] {
        self.conn.send_close_notify();
        self.output()
    }

    /// One read from the socket: the plaintext bytes it gave (appended to `plain`), `Ok(0)`
    /// at end of stream or after the peer's close_notify, `WouldBlock` when the socket is
    /// drained or the bytes read held no whole record yet.
    ///
    /// # Errors
    /// The socket's error, or the TLS failure as `InvalidData` (`TimedOut` never).
    pub(crate) fn read(&mut self, stream: &TcpStream, plain: &mut BytesMut) -> io::Result<usize> {
        if self.peer_closed {
            return Ok(0);
        }
        // On the thread's stack, not in any task: this is a plain function.
        let mut raw = [0u8; RAW_READ];
        let n = stream.try_read(&mut raw)?;
        if n == 0 {
            return Ok(0);
        }
        let before = plain.len();
        self.decrypt(raw.get(..n).unwrap_or_default(), plain)?;
        match plain.len().saturating_sub(before) {
            0 if self.peer_closed => Ok(0),
            0 => Err(io::ErrorKind::WouldBlock.into()),
            got => Ok(got),
        }
    }

    /// Runs the handshake on `stream` within `timeout`: `early` is what was already read
    /// from the socket (after a PROXY header); plaintext that arrives with the handshake's
    /// last flight goes to `plain`.
    ///
    /// # Errors
    /// [`TlsError::Timeout`] at the timeout; the handshake's failure, after the alert that
    /// says why was offered to the socket; [`TlsError::Io`] when the socket failed or the
    /// peer closed.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped part way, the connection is unusable.
    pub(crate) async fn handshake(
        &mut self,
        stream: &TcpStream,
        early: &[u8],
        plain: &mut BytesMut,
        timeout: Duration,
    ) -> Result<(), TlsError> {
        // tokio's timeout saturates a deadline past its clock's range.
        let res = match tokio::time::timeout(timeout, self.drive(stream, early, plain)).await {
            Err(_) => Err(TlsError::Timeout { after: timeout }),
            Ok(r) => r,
        };
        if res.is_err() {
            // Best effort, never waiting: the alert tells the peer why.
            let _ = stream.try_write(self.output());
        }
        if res.is_ok() {
            self.peer_cert = self
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(PeerCert::from_der(c.clone().into_owned())));
        }
        res
    }

    async fn drive(
        &mut self,
        stream: &TcpStream,
        early: &[u8],
        plain: &mut BytesMut,
    ) -> Result<(), TlsError> {
        let io_err = |source| TlsError::Io { source };
        self.decrypt(early, plain)?;
        let mut raw = vec![0u8; RAW_READ];
        loop {
            self.pull_output()?;
            let mut sent = 0;
            while sent < self.out.len() {
                stream.writable().await.map_err(io_err)?;
                match stream.try_write(self.out.get(sent..).unwrap_or_default()) {
                    Ok(n) => sent = sent.saturating_add(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            self.written();
            if !self.conn.is_handshaking() {
                return Ok(());
            }
            stream.readable().await.map_err(io_err)?;
            match stream.try_read(&mut raw) {
                Ok(0) => {
                    return Err(io_err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed the connection during the tls handshake",
                    )));
                }
                Ok(n) => self.decrypt(raw.get(..n).unwrap_or_default(), plain)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io_err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RecordEdge;

    #[test]
    fn record_edge_follows_records_at_every_split() {
        // Three records: 3 bytes of body, none, 2.
        let stream = [
            23, 3, 3, 0, 3, 1, 2, 3, 23, 3, 3, 0, 0, 23, 3, 3, 0, 2, 9, 9,
        ];
        let ends = [8, 13, 20];
        for cut in 0..=stream.len() {
            let mut e = RecordEdge::default();
            e.feed(&stream[..cut]);
            assert_eq!(
                e.mid_record(),
                !(cut == 0 || ends.contains(&cut)),
                "cut {cut}"
            );
            e.feed(&stream[cut..]);
            assert!(!e.mid_record(), "cut {cut}");
        }
    }
}
