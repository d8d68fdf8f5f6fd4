//! SOCKS5 connects (RFC 1928, username/password per RFC 1929) for the clients, through
//! tokio-socks.
//!
//! ```text
//! client ──TCP──▶ SOCKS5 proxy ──TCP──▶ endpoint
//!   greeting, [auth], CONNECT host:port   relays bytes
//! ```
//!
//! What a proxy does to liveness: it relays bytes, not TCP segments. A TCP keepalive probe
//! on the client's socket is answered by the proxy's kernel, so it only ever tests the
//! first hop; a far end that vanished behind the proxy goes unnoticed. Application
//! heartbeats cross the proxy like any frame and find it (`docs/tls.md`).
//!
//! ```
//! use keepwire::socks::Socks5;
//! let s: Socks5 = "127.0.0.1:1080".parse().unwrap();
//! let s = s.with_auth_str("alice:s3cret").unwrap();
//! assert_eq!(s.proxy(), "127.0.0.1:1080");
//! assert!(Socks5::new("p:1080").with_auth_str("no-colon").is_err());
//! assert!("garbage".parse::<Socks5>().unwrap_err().is_bad_proxy());
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::net::TcpStream;

/// A SOCKS5 proxy to connect through, with optional username/password.
#[derive(Clone, PartialEq, Eq)]
pub struct Socks5 {
    proxy: String,
    auth: Option<(String, String)>,
}

impl fmt::Debug for Socks5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password is never printed.
        f.debug_struct("Socks5")
            .field("proxy", &self.proxy)
            .field("user", &self.auth.as_ref().map(|a| &a.0))
            .finish()
    }
}

/// Why a SOCKS5 connect failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SocksError {
    /// The proxy address is not `HOST:PORT` (a name or address, and a port 1 to 65535).
    BadProxy {
        /// The address as given.
        proxy: String,
    },
    /// `USER:PASS` was not of that form (or a part is longer than RFC 1929's 255 bytes).
    BadAuth,
    /// The proxy could not be reached, or refused or failed the request.
    Connect {
        /// The proxy.
        proxy: String,
        /// The endpoint asked for.
        target: String,
        /// tokio-socks' error.
        source: tokio_socks::Error,
    },
    /// The proxy did not answer within the connect timeout.
    Timeout {
        /// The proxy.
        proxy: String,
        /// The connect timeout.
        after: Duration,
    },
}

impl SocksError {
    /// The proxy itself could not be reached (as opposed to refusing the target).
    pub fn is_proxy_unreachable(&self) -> bool {
        matches!(
            self,
            SocksError::Connect {
                source: tokio_socks::Error::Io(_) | tokio_socks::Error::ProxyServerUnreachable,
                ..
            }
        )
    }

    /// The proxy address was not `HOST:PORT`.
    pub fn is_bad_proxy(&self) -> bool {
        matches!(self, SocksError::BadProxy { .. })
    }

    /// The connect timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SocksError::Timeout { .. })
    }
}

impl fmt::Display for SocksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocksError::BadProxy { proxy } => write!(
                f,
                "socks5 proxy {proxy:?}: expected HOST:PORT with a port from 1 to 65535"
            ),
            SocksError::BadAuth => write!(f, "socks5 auth must be USER:PASS, each 1 to 255 bytes"),
            SocksError::Connect {
                proxy,
                target,
                source,
            } => write!(
                f,
                "socks5 proxy {proxy} connecting to {target}: {}",
                source.to_string().to_lowercase()
            ),
            SocksError::Timeout { proxy, after } => write!(
                f,
                "socks5 proxy {proxy} did not connect within {}",
                humantime::format_duration(*after)
            ),
        }
    }
}

impl std::error::Error for SocksError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SocksError::Connect { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `HOST:PORT` (`[v6]:PORT` for an IPv6 address), the form `--socks5` takes.
impl FromStr for Socks5 {
    type Err = SocksError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SocksError::BadProxy {
            proxy: s.to_owned(),
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
        let host = match host.strip_prefix('[') {
            Some(v6) => v6
                .strip_suffix(']')
                .filter(|h| h.parse::<std::net::Ipv6Addr>().is_ok()),
            None => Some(host).filter(|h| !h.contains(':')),
        };
        let host_ok = host.is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace));
        if !port_ok || !host_ok {
            return Err(bad());
        }
        Ok(Socks5::new(s))
    }
}

impl Socks5 {
    /// Through the proxy at `proxy` (`host:port`), no authentication.
    pub fn new(proxy: impl Into<String>) -> Self {
        Socks5 {
            proxy: proxy.into(),
            auth: None,
        }
    }

    /// With RFC 1929 username/password authentication.
    pub fn with_auth(mut self, user: impl Into<String>, pass: impl Into<String>) -> Self {
        self.auth = Some((user.into(), pass.into()));
        self
    }

    /// With `USER:PASS` authentication (`--socks5-auth`): split at the first `:`.
    ///
    /// # Errors
    /// [`SocksError::BadAuth`] without a `:`, or with an empty or over-long part.
    pub fn with_auth_str(self, auth: &str) -> Result<Self, SocksError> {
        let (user, pass) = auth.split_once(':').ok_or(SocksError::BadAuth)?;
        let ok = |s: &str| (1..=255).contains(&s.len());
        if !ok(user) || !ok(pass) {
            return Err(SocksError::BadAuth);
        }
        Ok(self.with_auth(user, pass))
    }

    /// The proxy's address.
    pub fn proxy(&self) -> &str {
        &self.proxy
    }

    /// Connects to `target` (`host:port`; the proxy resolves names) through the proxy,
    /// within `timeout` for the proxy's TCP connect and the SOCKS exchange together. The
    /// stream returned is the socket to the proxy, relaying to `target`.
    ///
    /// # Errors
    /// [`SocksError::Timeout`], or [`SocksError::Connect`] with the proxy's answer.
    ///
    /// # Cancel safety
    /// Cancel safe: dropped, the half-made connection is closed.
    pub async fn connect(&self, target: &str, timeout: Duration) -> Result<TcpStream, SocksError> {
        let fut = async {
            match &self.auth {
                None => tokio_socks::tcp::Socks5Stream::connect(self.proxy.as_str(), target).await,
                Some((u, p)) => {
                    tokio_socks::tcp::Socks5Stream::connect_with_password(
                        self.proxy.as_str(),
                        target,
                        u,
                        p,
                    )
                    .await
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(SocksError::Timeout {
                proxy: self.proxy.clone(),
                after: timeout,
            }),
            Ok(Err(source)) => Err(SocksError::Connect {
                proxy: self.proxy.clone(),
                target: target.to_owned(),
                source,
            }),
            Ok(Ok(s)) => Ok(s.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_addresses_parse_or_are_refused() {
        for ok in ["127.0.0.1:1080", "proxy.example:1", "[::1]:1080", "p:65535"] {
            assert_eq!(ok.parse::<Socks5>().unwrap().proxy(), ok);
        }
        for bad in [
            "garbage",
            "::::",
            "host:",
            ":1080",
            "host:0",
            "host:65536",
            "host:x",
            "::1:1080",
            "[::1]",
            "[zz]:1",
            "a b:1",
            "",
        ] {
            let e = bad.parse::<Socks5>().unwrap_err();
            assert!(e.is_bad_proxy(), "{bad:?}: {e}");
            assert!(e.to_string().contains("HOST:PORT"), "{e}");
        }
    }
}
