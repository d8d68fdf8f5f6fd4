//! What went wrong with TLS: a file that would not load, or a handshake that failed, with
//! the cause named in words a person can act on.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};

/// A TLS failure: loading certificates and keys, building a config, or a handshake.
///
/// `Display` is one lowercase line: what was seen, what was expected, where. The
/// handshake causes people meet most have a predicate each ([`is_unknown_ca`],
/// [`is_name_mismatch`], [`is_expired`], [`is_no_client_cert`], [`is_timeout`]), and their
/// messages say those words.
///
/// ```
/// let e = keepwire::tls::load_certs("/nonexistent/chain.pem").unwrap_err();
/// assert!(e.is_file());
/// assert!(e.to_string().contains("/nonexistent/chain.pem"));
/// ```
///
/// [`is_unknown_ca`]: TlsError::is_unknown_ca
/// [`is_name_mismatch`]: TlsError::is_name_mismatch
/// [`is_expired`]: TlsError::is_expired
/// [`is_no_client_cert`]: TlsError::is_no_client_cert
/// [`is_timeout`]: TlsError::is_timeout
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    File {
        /// The file.
        path: PathBuf,
        /// What `open`/`read` said.
        source: std::io::Error,
    },
    /// A file was read but holds no usable PEM item of the kind asked for.
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong, e.g. `no CERTIFICATE block`.
        what: String,
    },
    /// rustls refused the certificates, key or settings.
    Config {
        /// What was being built (`server config`, `client config`, `client CA`).
        what: &'static str,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The server name for certificate checks is not a DNS name or an IP address.
    ServerName {
        /// The name given.
        name: String,
    },
    /// The handshake failed or the connection's TLS layer broke.
    Handshake {
        /// Which side we were (`client` or `server`).
        side: &'static str,
        /// rustls' error.
        source: rustls::Error,
    },
    /// The handshake did not finish in time.
    Timeout {
        /// The handshake timeout.
        after: Duration,
    },
    /// The socket failed or the peer closed during the handshake.
    Io {
        /// What happened on the socket.
        source: std::io::Error,
    },
}

impl TlsError {
    pub(crate) fn handshake(side: &'static str, source: rustls::Error) -> Self {
        TlsError::Handshake { side, source }
    }

    /// The TLS failure inside an I/O error from a rustls stream (`tokio_rustls`,
    /// `rustls::StreamOwned`), on `side` (`client` or `server`); other I/O errors as
    /// [`TlsError::Io`].
    ///
    /// ```
    /// use keepwire::tls::TlsError;
    /// let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::NoCertificatesPresented);
    /// assert!(TlsError::from_io("server", io).is_no_client_cert());
    /// ```
    pub fn from_io(side: &'static str, e: std::io::Error) -> Self {
        if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
            if let Some(Ok(source)) = e.into_inner().map(|i| i.downcast::<rustls::Error>()) {
                return TlsError::Handshake {
                    side,
                    source: *source,
                };
            }
            return TlsError::Io {
                source: std::io::ErrorKind::InvalidData.into(),
            };
        }
        TlsError::Io { source: e }
    }

    fn cert_error(&self) -> Option<&CertificateError> {
        match self {
            TlsError::Handshake {
                source: rustls::Error::InvalidCertificate(c),
                ..
            } => Some(c),
            _ => None,
        }
    }

    fn alert(&self) -> Option<AlertDescription> {
        match self {
            TlsError::Handshake {
                source: rustls::Error::AlertReceived(a),
                ..
            } => Some(*a),
            _ => None,
        }
    }

    /// A file could not be read.
    pub fn is_file(&self) -> bool {
        matches!(self, TlsError::File { .. })
    }

    /// A file holds no usable PEM item.
    pub fn is_pem(&self) -> bool {
        matches!(self, TlsError::Pem { .. })
    }

    /// The peer's certificate chain does not lead to a trusted CA (ours), or the peer said
    /// so of ours.
    pub fn is_unknown_ca(&self) -> bool {
        matches!(self.cert_error(), Some(CertificateError::UnknownIssuer))
            || self.alert() == Some(AlertDescription::UnknownCA)
    }

    /// The server's certificate is not valid for the name we asked for.
    pub fn is_name_mismatch(&self) -> bool {
        matches!(
            self.cert_error(),
            Some(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        )
    }

    /// A certificate has expired (ours, as the peer says, or the peer's).
    pub fn is_expired(&self) -> bool {
        matches!(
            self.cert_error(),
            Some(CertificateError::Expired | CertificateError::ExpiredContext { .. })
        ) || self.alert() == Some(AlertDescription::CertificateExpired)
    }

    /// Mutual TLS: the client sent no certificate (server side), or the server asked for
    /// one we did not have (client side).
    pub fn is_no_client_cert(&self) -> bool {
        matches!(
            self,
            TlsError::Handshake {
                source: rustls::Error::NoCertificatesPresented,
                ..
            }
        ) || self.alert() == Some(AlertDescription::CertificateRequired)
    }

    /// The handshake did not finish within the handshake timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, TlsError::Timeout { .. })
    }

    /// A handshake failure of any kind (not a file or config problem).
    pub fn is_handshake(&self) -> bool {
        matches!(
            self,
            TlsError::Handshake { .. } | TlsError::Timeout { .. } | TlsError::Io { .. }
        )
    }

    /// The cause in words, for the handshake failures people meet most.
    fn cause(&self) -> Option<&'static str> {
        let side = match self {
            TlsError::Handshake { side, .. } => *side,
            _ => return None,
        };
        Some(if self.is_unknown_ca() && self.alert().is_some() {
            "unknown CA: the peer does not trust our certificate's issuer"
        } else if self.is_unknown_ca() && side == "client" {
            "unknown CA: the server's certificate is not signed by a CA we trust (--tls-ca)"
        } else if self.is_unknown_ca() {
            "unknown CA: the client's certificate is not signed by the client CA (--tls-client-ca)"
        } else if self.is_name_mismatch() {
            "name mismatch: the server's certificate is not valid for the name we connected to (--tls-server-name)"
        } else if self.is_expired() {
            "expired: a certificate is past its validity period"
        } else if self.is_no_client_cert() && side == "client" {
            "no client certificate: the server requires one (--tls-cert, --tls-key; on proxy --upstream-tls-cert, --upstream-tls-key)"
        } else if self.is_no_client_cert() {
            "no client certificate: the client sent none and one is required"
        } else {
            return None;
        })
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::File { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            TlsError::Pem { path, what } => write!(f, "{}: {what}", path.display()),
            TlsError::Config {
                what,
                source: rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch),
            } => write!(
                f,
                "tls {what}: the private key does not match the certificate's public key"
            ),
            TlsError::Config { what, source } => write!(f, "tls {what}: {source}"),
            TlsError::ServerName { name } => write!(
                f,
                "tls server name {name:?} is neither a dns name nor an ip address"
            ),
            TlsError::Handshake { side, source } => match self.cause() {
                Some(cause) => write!(f, "tls handshake failed ({side} side): {cause} ({source})"),
                None => write!(f, "tls handshake failed ({side} side): {source}"),
            },
            TlsError::Timeout { after } => write!(
                f,
                "tls handshake did not finish within {}",
                humantime::format_duration(*after)
            ),
            TlsError::Io { source } => write!(f, "tls handshake: {source}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::File { source, .. } | TlsError::Io { source } => Some(source),
            TlsError::Config { source, .. } | TlsError::Handshake { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<TlsError> for std::io::Error {
    fn from(e: TlsError) -> Self {
        let kind = match &e {
            TlsError::Timeout { .. } => std::io::ErrorKind::TimedOut,
            TlsError::Io { source } => source.kind(),
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_named() {
        let e = TlsError::handshake(
            "client",
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(e.is_unknown_ca());
        assert!(e.to_string().contains("unknown CA"), "{e}");
        let e = TlsError::handshake(
            "client",
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        );
        assert!(
            e.is_name_mismatch() && e.to_string().contains("name mismatch"),
            "{e}"
        );
        let e = TlsError::handshake("server", rustls::Error::NoCertificatesPresented);
        assert!(e.is_no_client_cert());
        assert!(e.to_string().contains("no client certificate"), "{e}");
        let e = TlsError::handshake(
            "client",
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        );
        assert!(e.is_no_client_cert() && e.to_string().contains("no client certificate"));
        let e = TlsError::handshake(
            "client",
            rustls::Error::InvalidCertificate(CertificateError::Expired),
        );
        assert!(e.is_expired() && e.to_string().contains("expired"), "{e}");
        let e = TlsError::handshake("client", rustls::Error::DecryptError);
        assert!(!e.is_unknown_ca() && !e.is_expired() && e.is_handshake());
    }
}
