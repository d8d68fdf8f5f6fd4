//! The `short` and `long` workers' byte stream: plain TCP, or TLS, possibly through a
//! SOCKS5 proxy ([`BenchConfig::tls`], [`BenchConfig::socks5`]).

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BenchConfig;

/// One connection to the target.
pub(super) enum Link {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Link {
    /// TCP (or SOCKS5) connect and, with TLS, the handshake: all within the request
    /// timeout.
    pub(super) async fn connect(cfg: &BenchConfig, target: SocketAddr) -> io::Result<Link> {
        let timeout = cfg.request_timeout;
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
        let started = tokio::time::Instant::now();
        #[cfg(feature = "socks")]
        let stream = match &cfg.socks5 {
            Some(s) => s
                .connect(&target.to_string(), timeout)
                .await
                .map_err(io::Error::other)?,
            None => tokio::time::timeout(timeout, TcpStream::connect(target))
                .await
                .map_err(|_| timed_out())??,
        };
        #[cfg(not(feature = "socks"))]
        let stream = tokio::time::timeout(timeout, TcpStream::connect(target))
            .await
            .map_err(|_| timed_out())??;
        stream.set_nodelay(true)?;
        #[cfg(feature = "tls")]
        if let Some(tls) = &cfg.tls {
            let left = timeout.saturating_sub(started.elapsed());
            let s = tls
                .connect(stream, &target.to_string(), left)
                .await
                .map_err(io::Error::from)?;
            return Ok(Link::Tls(Box::new(s)));
        }
        let _ = started;
        Ok(Link::Plain(stream))
    }

    pub(super) async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.write_all(buf).await,
            #[cfg(feature = "tls")]
            Link::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
        }
    }

    pub(super) async fn read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.read_buf(buf).await,
            #[cfg(feature = "tls")]
            Link::Tls(s) => s.read_buf(buf).await,
        }
    }
}
