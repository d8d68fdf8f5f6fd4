//! TLS for keepwire links (rustls, ring provider): loading PEM files, the server's and the
//! clients' settings, mutual TLS, and the peer's certificate subject.
//!
//! Where TLS sits on a connection:
//!
//! ```text
//! TCP ─▶ PROXY header (server, when on) ─▶ TLS handshake (handshake timeout) ─▶ frames
//!                                            │
//!       raw bytes ─▶ rustls read_tls ─▶ process_new_packets ─▶ plaintext ─▶ FrameCodec
//!       replies   ─▶ rustls writer   ─▶ write_tls           ─▶ raw bytes ─▶ socket
//! ```
//!
//! The server keeps its own readiness loop and drives rustls' sans-IO `ServerConnection`
//! as a boxed layer on the connection, so heartbeats, idle reaping, caps and the drain are
//! the same code over TLS; a plain connection pays one pointer for it.
//!
//! - [`ServerTls`]: a certificate chain and key, and for mutual TLS the CA that client
//!   certificates must chain to ([`ServerTls::from_pem_files`]). The handler sees a client's
//!   verified certificate as [`PeerCert`] on `server::Request::peer_cert`.
//! - [`ClientTls`]: trusted roots (a CA file, else the system's), an optional client
//!   certificate, the name to check the server's certificate against, resumption.
//!
//! Session resumption is on by default on both sides (TLS 1.3 tickets and a TLS 1.2 session
//! cache), so short connections after the first skip the certificate exchange and its
//! signatures. A handshake that fails says why, in the words of [`TlsError`]: unknown CA,
//! name mismatch, expired, no client certificate.
//!
//! ```
//! use keepwire::tls::ClientTls;
//! // Trust one CA, check the server's certificate against "bank.example".
//! let ca = rcgen::generate_simple_self_signed(vec!["bank.example".into()]).unwrap();
//! let tls = ClientTls::builder()
//!     .ca_certs(vec![ca.cert.der().clone()])
//!     .server_name("bank.example")
//!     .build()
//!     .unwrap();
//! assert_eq!(tls.server_name_for("10.0.0.1:7000").unwrap().to_str(), "bank.example");
//! ```

mod error;
pub(crate) mod layer;
mod subject;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub use error::TlsError;

/// The largest PEM file read, bytes: a chain of a few certificates is a few KiB; this
/// bounds a mistaken path (a device, a log file).
pub const MAX_PEM_FILE: u64 = 4 * 1024 * 1024;

/// The crypto provider every config here uses: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a file of at most [`MAX_PEM_FILE`] bytes.
fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let file_err = |source| TlsError::File {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::File::open(path).map_err(file_err)?;
    let mut bytes = Vec::new();
    f.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(file_err)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: format!("larger than {MAX_PEM_FILE} bytes: not a PEM file"),
        });
    }
    Ok(bytes)
}

/// Loads every `CERTIFICATE` block of a PEM file, in order (a chain: leaf first).
///
/// # Errors
/// [`TlsError::File`] when it cannot be read, [`TlsError::Pem`] when it holds no
/// certificate or a block is malformed; both name the file.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("kw-doc-certs-{}", std::process::id()));
/// std::fs::write(&dir, "not pem").unwrap();
/// let e = keepwire::tls::load_certs(&dir).unwrap_err();
/// assert!(e.is_pem() && e.to_string().contains("no CERTIFICATE"), "{e}");
/// # std::fs::remove_file(&dir).unwrap();
/// ```
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("bad CERTIFICATE block: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "no CERTIFICATE block found (expected a PEM certificate chain)".into(),
        });
    }
    Ok(certs)
}

/// Loads the first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of a PEM file.
///
/// # Errors
/// [`TlsError::File`] or [`TlsError::Pem`], naming the file.
pub fn load_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY block found (expected a PEM private key)".into()
            }
            other => format!("bad PRIVATE KEY block: {other}"),
        },
    })
}

/// A store of the CA certificates in a PEM file.
fn roots_from(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|source| TlsError::Config {
            what: "trusted CA certificate",
            source,
        })?;
    }
    Ok(roots)
}

/// A verified client certificate (mutual TLS), as the server's handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    subject: String,
    der: CertificateDer<'static>,
}

impl PeerCert {
    /// From a DER certificate (the leaf of the chain the peer presented).
    ///
    /// ```
    /// let key = rcgen::KeyPair::generate().unwrap();
    /// let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
    /// p.distinguished_name.push(rcgen::DnType::CommonName, "atm-17");
    /// let cert = p.self_signed(&key).unwrap();
    /// let peer = keepwire::tls::PeerCert::from_der(cert.der().clone());
    /// assert_eq!(peer.subject(), "CN=atm-17");
    /// ```
    pub fn from_der(der: CertificateDer<'static>) -> Self {
        let subject = subject::subject(&der).unwrap_or_default();
        PeerCert { subject, der }
    }

    /// The subject as RFC 4514 text, last RDN first: `CN=atm-17,O=Acquirer,C=DE`. Empty if
    /// the certificate's subject could not be read.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The certificate itself, DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }
}

/// A server's TLS settings: its certificate chain and key, and for mutual TLS the CA
/// client certificates must chain to. Cheap to clone (an `Arc`).
///
/// ```
/// use keepwire::tls::ServerTls;
/// let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// let key = keepwire::tls::PrivateKeyDer::Pkcs8(c.key_pair.serialize_der().into());
/// let tls = ServerTls::new(vec![c.cert.der().clone()], key, None).unwrap();
/// assert!(!tls.requires_client_cert());
/// ```
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    mutual: bool,
}

impl ServerTls {
    /// From PEM files: `cert` (the chain, leaf first), `key`, and `client_ca` for mutual TLS
    /// (every client must present a certificate that chains to one of its CAs).
    ///
    /// # Errors
    /// A file that cannot be read or parsed, named; a key that does not match the
    /// certificate.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        client_ca: Option<&Path>,
    ) -> Result<Self, TlsError> {
        let chain = load_certs(cert)?;
        let key = load_key(key)?;
        let client_ca = client_ca.map(load_certs).transpose()?;
        Self::new(chain, key, client_ca)
    }

    /// From a certificate chain and key already loaded; `client_ca` turns on mutual TLS.
    /// Resumption: a session cache and stateless tickets (TLS 1.2 and 1.3).
    ///
    /// # Errors
    /// rustls refuses the key, the chain or a CA certificate.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_ca: Option<Vec<CertificateDer<'static>>>,
    ) -> Result<Self, TlsError> {
        let cfg_err = |what| move |source| TlsError::Config { what, source };
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(cfg_err("server config"))?;
        let mutual = client_ca.is_some();
        let builder = match client_ca {
            Some(cas) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots_from(cas)?),
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::Config {
                    what: "client CA",
                    source: rustls::Error::General(e.to_string()),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(cfg_err("server certificate and key"))?;
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(cfg_err("session tickets"))?;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
        Ok(ServerTls {
            config: Arc::new(config),
            mutual,
        })
    }

    /// Wraps a rustls config built elsewhere (own verifier, ALPN, key log).
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> Self {
        ServerTls {
            config,
            mutual: false,
        }
    }

    /// The rustls config.
    pub fn config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }

    /// Mutual TLS: clients must present a certificate from the client CA.
    pub fn requires_client_cert(&self) -> bool {
        self.mutual
    }
}

/// Where a client's trusted roots come from.
#[derive(Debug, Clone)]
enum Roots {
    System,
    File(PathBuf),
    Certs(Vec<CertificateDer<'static>>),
}

/// The client certificate, when given.
#[derive(Debug)]
enum Identity {
    Files(PathBuf, PathBuf),
    Loaded(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
}

/// Builds a [`ClientTls`]; see [`ClientTls::builder`].
#[derive(Debug)]
pub struct ClientTlsBuilder {
    roots: Roots,
    identity: Option<Identity>,
    server_name: Option<String>,
    resumption: bool,
}

impl ClientTlsBuilder {
    /// Trust the CA certificates of a PEM file instead of the system's roots (`--tls-ca`).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots = Roots::File(path.into());
        self
    }

    /// Trust these CA certificates instead of the system's roots.
    pub fn ca_certs(mut self, certs: Vec<CertificateDer<'static>>) -> Self {
        self.roots = Roots::Certs(certs);
        self
    }

    /// Present this client certificate chain and key from PEM files (mutual TLS).
    pub fn identity_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some(Identity::Files(cert.into(), key.into()));
        self
    }

    /// Present this client certificate chain and key (mutual TLS).
    pub fn identity(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.identity = Some(Identity::Loaded(chain, key));
        self
    }

    /// Check the server's certificate against `name` rather than the host of the address
    /// connected to (`--tls-server-name`); also sent as SNI.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Session resumption (default on): later connections to a server resume the session
    /// of an earlier one and skip the certificate exchange.
    pub fn resumption(mut self, on: bool) -> Self {
        self.resumption = on;
        self
    }

    /// Loads the files and builds the config.
    ///
    /// # Errors
    /// A file that cannot be read or parsed (named), a bad server name, no system roots.
    pub fn build(self) -> Result<ClientTls, TlsError> {
        let roots = match self.roots {
            Roots::File(p) => roots_from(load_certs(p)?)?,
            Roots::Certs(c) => roots_from(c)?,
            Roots::System => system_roots()?,
        };
        let cfg_err = |what| move |source| TlsError::Config { what, source };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(cfg_err("client config"))?
            .with_root_certificates(roots);
        let mut config = match self.identity {
            None => builder.with_no_client_auth(),
            Some(id) => {
                let (chain, key) = match id {
                    Identity::Files(c, k) => (load_certs(c)?, load_key(k)?),
                    Identity::Loaded(c, k) => (c, k),
                };
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(cfg_err("client certificate and key"))?
            }
        };
        config.resumption = if self.resumption {
            Resumption::in_memory_sessions(256)
        } else {
            Resumption::disabled()
        };
        let server_name = self.server_name.map(parse_name).transpose()?;
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// The system's trusted roots (`rustls-native-certs`: the OpenSSL directories on Linux).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(TlsError::Config {
            what: "system trust roots",
            source: rustls::Error::General(format!("{why}; give a CA file (--tls-ca)")),
        });
    }
    Ok(roots)
}

/// A DNS name or an IP address, for certificate checks.
fn parse_name(name: String) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName { name })
}

/// A client's TLS settings. Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// A builder: system roots, no client certificate, the address's host as the server
    /// name, resumption on.
    pub fn builder() -> ClientTlsBuilder {
        ClientTlsBuilder {
            roots: Roots::System,
            identity: None,
            server_name: None,
            resumption: true,
        }
    }

    /// Wraps a rustls config built elsewhere; `server_name` as in
    /// [`ClientTlsBuilder::server_name`].
    pub fn from_config(
        config: Arc<rustls::ClientConfig>,
        server_name: Option<ServerName<'static>>,
    ) -> Self {
        ClientTls {
            config,
            server_name,
        }
    }

    /// The rustls config.
    pub fn config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }

    /// The name the server's certificate is checked against when connecting to `addr`
    /// (`host:port`, `[v6]:port`): the configured name, else the host.
    ///
    /// # Errors
    /// The host is neither a DNS name nor an IP address.
    pub fn server_name_for(&self, addr: &str) -> Result<ServerName<'static>, TlsError> {
        if let Some(n) = &self.server_name {
            return Ok(n.clone());
        }
        let host = match addr.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => addr,
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        parse_name(host.to_owned())
    }

    /// Runs the client handshake on `stream`, a connection to `addr`, within `timeout`:
    /// a `tokio_rustls` stream for code that reads and writes through `AsyncRead` and
    /// `AsyncWrite` (the bench engine, tests).
    ///
    /// # Errors
    /// The handshake's failure, its cause named ([`TlsError::is_unknown_ca`], ...), or
    /// [`TlsError::Timeout`].
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped part way, the connection is unusable.
    pub async fn connect(
        &self,
        stream: tokio::net::TcpStream,
        addr: &str,
        timeout: std::time::Duration,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, TlsError> {
        let name = self.server_name_for(addr)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
            Err(_) => Err(TlsError::Timeout { after: timeout }),
            Ok(Err(e)) => Err(TlsError::from_io("client", e)),
            Ok(Ok(s)) => Ok(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_comes_from_the_address() {
        let tls = ClientTls::builder().ca_certs(vec![]).build().unwrap();
        let n = |a: &str| tls.server_name_for(a).map(|n| n.to_str().into_owned());
        assert_eq!(n("127.0.0.1:7000").unwrap(), "127.0.0.1");
        assert_eq!(n("[::1]:7000").unwrap(), "::1");
        assert_eq!(n("bank.example:443").unwrap(), "bank.example");
        assert!(
            n("bad name!:1")
                .unwrap_err()
                .to_string()
                .contains("bad name!")
        );
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let e = load_key("/nonexistent/key.pem").unwrap_err();
        assert!(
            e.is_file() && e.to_string().contains("/nonexistent/key.pem"),
            "{e}"
        );
        let p = std::env::temp_dir().join(format!("kw-tls-empty-{}", std::process::id()));
        std::fs::write(
            &p,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_certs(&p).unwrap_err();
        assert!(
            e.is_pem() && e.to_string().contains(&*p.to_string_lossy()),
            "{e}"
        );
        let e = load_key(&p).unwrap_err();
        assert!(e.is_pem() && e.to_string().contains("PRIVATE KEY"), "{e}");
        std::fs::remove_file(&p).unwrap();
    }
}
