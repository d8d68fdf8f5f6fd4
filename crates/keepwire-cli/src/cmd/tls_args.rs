//! The TLS and SOCKS5 flags the subcommands share (`serve`, `send`, `bench`, `proxy`), and what they become in the library
//! (`keepwire::tls`, `keepwire::socks`). A file that cannot be loaded is a usage error
//! (exit 2) naming the flag and the file.

use std::path::PathBuf;

use keepwire::socks::Socks5;
use keepwire::tls::{ClientTls, ServerTls};

use super::Failure;

/// `serve`: TLS on every connection (after the PROXY header, when that is on).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct ServerTlsArgs {
    /// TLS: the server's certificate chain, PEM, leaf first (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS: the server's private key, PEM (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: require a client certificate signed by a CA in this PEM file.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// The server's TLS settings, `None` without `--tls-cert`.
    pub(crate) fn server_tls(&self) -> Result<Option<ServerTls>, Failure> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        ServerTls::from_pem_files(cert, key, self.tls_client_ca.as_deref())
            .map(Some)
            .map_err(|e| Failure::Usage(format!("--tls-cert/--tls-key/--tls-client-ca: {e}")))
    }
}

/// `send`, `bench`: TLS to the endpoints, and a SOCKS5 proxy to reach them through.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct ClientTlsArgs {
    #[command(flatten)]
    link: ClientLinkArgs,
    /// TLS: present this client certificate chain, PEM (mutual TLS; with --tls-key).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// TLS: the client certificate's private key, PEM (with --tls-cert).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_cert"])]
    tls_key: Option<PathBuf>,
}

/// `proxy`'s upstream: the same flags as [`ClientTlsArgs`], but the client certificate is
/// `--upstream-tls-cert/--upstream-tls-key` (`--tls-cert/--tls-key` are the proxy's own
/// server certificate, as on `serve`).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct UpstreamTlsArgs {
    #[command(flatten)]
    link: ClientLinkArgs,
    /// Upstream TLS: present this client certificate chain, PEM (mutual TLS; with
    /// --upstream-tls-key).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "upstream_tls_key"])]
    upstream_tls_cert: Option<PathBuf>,
    /// Upstream TLS: the client certificate's private key, PEM (with --upstream-tls-cert).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "upstream_tls_cert"])]
    upstream_tls_key: Option<PathBuf>,
}

/// The client-side TLS and SOCKS5 flags but the client certificate, which
/// [`ClientTlsArgs`] and [`UpstreamTlsArgs`] name apart.
#[derive(Debug, Default, clap::Args)]
struct ClientLinkArgs {
    /// Speak TLS to the endpoints (server certificates checked against the system's roots,
    /// or --tls-ca).
    #[arg(long)]
    tls: bool,
    /// TLS: trust the CAs in this PEM file instead of the system's roots.
    #[arg(long, value_name = "FILE", requires = "tls")]
    tls_ca: Option<PathBuf>,
    /// TLS: check the server's certificate against this name (default: the host of each
    /// endpoint address).
    #[arg(long, value_name = "NAME", requires = "tls")]
    tls_server_name: Option<String>,
    /// TLS: no session resumption (every connection does a full handshake).
    #[arg(long, requires = "tls")]
    tls_no_resume: bool,
    /// Connect to every endpoint through this SOCKS5 proxy (HOST:PORT).
    #[arg(long, value_name = "ADDR")]
    socks5: Option<String>,
    /// SOCKS5 username/password authentication.
    #[arg(long, value_name = "USER:PASS", requires = "socks5")]
    socks5_auth: Option<String>,
}

impl ClientLinkArgs {
    /// The client's TLS settings with `identity` (certificate, key), `None` without
    /// `--tls`.
    fn client_tls(
        &self,
        identity: (&Option<PathBuf>, &Option<PathBuf>),
    ) -> Result<Option<ClientTls>, Failure> {
        if !self.tls {
            return Ok(None);
        }
        let mut b = ClientTls::builder().resumption(!self.tls_no_resume);
        if let Some(ca) = &self.tls_ca {
            b = b.ca_file(ca);
        }
        if let (Some(c), Some(k)) = identity {
            b = b.identity_files(c, k);
        }
        if let Some(n) = &self.tls_server_name {
            b = b.server_name(n);
        }
        b.build()
            .map(Some)
            .map_err(|e| Failure::Usage(format!("--tls: {e}")))
    }

    /// Sets a client builder's TLS (with `identity`) and SOCKS5 settings.
    fn apply(
        &self,
        identity: (&Option<PathBuf>, &Option<PathBuf>),
        mut b: keepwire::client::ClientBuilder,
    ) -> Result<keepwire::client::ClientBuilder, Failure> {
        if let Some(tls) = self.client_tls(identity)? {
            b = b.tls(tls);
        }
        if let Some(s) = self.socks5()? {
            b = b.socks5(s);
        }
        Ok(b)
    }

    /// The SOCKS5 proxy, `None` without `--socks5`.
    fn socks5(&self) -> Result<Option<Socks5>, Failure> {
        let Some(proxy) = &self.socks5 else {
            return Ok(None);
        };
        let s: Socks5 = proxy
            .parse()
            .map_err(|e| Failure::Usage(format!("--socks5: {e}")))?;
        match &self.socks5_auth {
            None => Ok(Some(s)),
            Some(a) => s
                .with_auth_str(a)
                .map(Some)
                .map_err(|e| Failure::Usage(format!("--socks5-auth: {e}"))),
        }
    }
}

impl ClientTlsArgs {
    /// The client's TLS settings, `None` without `--tls`.
    pub(crate) fn client_tls(&self) -> Result<Option<ClientTls>, Failure> {
        self.link.client_tls((&self.tls_cert, &self.tls_key))
    }

    /// Sets the bench's TLS and SOCKS5 settings; both need `--target` (the embedded server
    /// is plain TCP).
    pub(crate) fn apply_to_bench(
        &self,
        cfg: &mut keepwire::bench::BenchConfig,
    ) -> Result<(), Failure> {
        cfg.tls = self.client_tls()?;
        cfg.socks5 = self.socks5()?;
        if (cfg.tls.is_some() || cfg.socks5.is_some()) && cfg.target.is_none() {
            return Err(Failure::Usage(
                "--tls and --socks5 need --target: the embedded server speaks plain TCP".into(),
            ));
        }
        Ok(())
    }

    /// Sets a client builder's TLS and SOCKS5 settings (`send`).
    pub(crate) fn apply_to_client(
        &self,
        b: keepwire::client::ClientBuilder,
    ) -> Result<keepwire::client::ClientBuilder, Failure> {
        self.link.apply((&self.tls_cert, &self.tls_key), b)
    }

    /// The SOCKS5 proxy, `None` without `--socks5`.
    pub(crate) fn socks5(&self) -> Result<Option<Socks5>, Failure> {
        self.link.socks5()
    }
}

impl UpstreamTlsArgs {
    /// Sets the upstream client builder's TLS and SOCKS5 settings (`proxy`).
    pub(crate) fn apply_to_client(
        &self,
        b: keepwire::client::ClientBuilder,
    ) -> Result<keepwire::client::ClientBuilder, Failure> {
        self.link
            .apply((&self.upstream_tls_cert, &self.upstream_tls_key), b)
    }
}
