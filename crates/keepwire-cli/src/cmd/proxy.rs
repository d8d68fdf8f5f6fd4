//! `keepwire proxy`: the short↔long gateway. Flags into a `keepwire::proxy::ProxyConfig`
//! (the client side through `serve`'s settings, the upstream through `send`'s builders),
//! `Proxy::bind`, `serve_until_signal`.

use std::io::Write;
use std::sync::Arc;

use keepwire::client::{ByteRange, ClientBuilder};
use keepwire::protocol::drive::{ClientSession, SequenceKey};
use keepwire::protocol::{BindMode, Iso8583Session, Template};
use keepwire::proxy::{
    LocalAnswer, OnUpstreamError, Proxy, ProxyConfig, ProxyError, TemplateSession, Upstream,
};
use keepwire::server::{ServerSettings, ShutdownSignals};

use super::Failure;
use super::serve::{chain, check_address, config_failure, server_failure};

/// The most upstream connections `--pool` takes.
const MAX_POOL: u32 = 1024;

const EXAMPLES: &str = "\
Examples:
  # Short clients on a 4-digit ASCII length, two kept-alive upstream connections
  # on a 2-byte binary length, pinged every 10s; 7001 first, 7002 if it fails
  keepwire proxy --listen 0.0.0.0:7000 --framing len:ascii:4 --client-mode short \\
      --upstream 10.0.0.5:7001,10.0.0.6:7002 --upstream-framing len:be:2 --pool 2 \\
      --heartbeat interval=10s,timeout=3s,misses=2

  # Many requests in flight on one upstream connection, replies matched on the 6-byte
  # key at offset 0 (colliding keys from two clients are rewritten and restored)
  keepwire proxy --listen 127.0.0.1:7000 --framing line --upstream 127.0.0.1:7001 \\
      --correlate 0:6 --on-upstream-error reply:text:ERR

  # TLS on both sides: clients reach the proxy's certificate, the proxy presents
  # its client certificate to the partner (mutual TLS) and checks the partner's
  keepwire proxy --listen 0.0.0.0:7443 --framing len:ascii:4 \\
      --tls-cert proxy.pem --tls-key proxy.key \\
      --upstream partner.example:7443 --tls --tls-ca partner-ca.pem \\
      --upstream-tls-cert ours.pem --upstream-tls-key ours.key

  # An ISMG allows one CMPP link: the proxy logs in once; clients' own logins are
  # answered by the proxy
  keepwire proxy --listen 127.0.0.1:7890 --protocol cmpp3 --upstream 10.1.1.1:7890 \\
      --account 901234:s3cret
";

/// Flags of `keepwire proxy`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Address clients connect to; port 0 picks a free port (printed as `listening on ADDR`).
    #[arg(long, value_name = "ADDR", required = true)]
    listen: String,
    /// Upstream endpoints in failover order.
    #[arg(
        long,
        value_name = "ADDR[,ADDR..]",
        value_delimiter = ',',
        required = true
    )]
    upstream: Vec<String>,
    /// Clients' framing spec, e.g. len:ascii:4, len:be:4:incl, line.
    #[arg(
        long,
        short = 'f',
        value_name = "SPEC",
        required_unless_present = "protocol"
    )]
    framing: Option<String>,
    /// Upstream framing spec (default: --framing); message bodies pass unchanged.
    #[arg(long, value_name = "SPEC")]
    upstream_framing: Option<String>,
    /// long (default): clients send many requests per connection; short: one each.
    #[arg(long, value_name = "short|long", default_value = "long")]
    client_mode: String,
    /// long (default): kept-alive upstream connections; short: one per request.
    #[arg(long, value_name = "long|short", default_value = "long")]
    upstream_mode: String,
    /// Long upstream connections (default 1, at most 1024).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pool: u32,
    /// Multiplex: many requests in flight per upstream connection, replies matched on the
    /// LEN bytes at OFFSET of each frame.
    #[arg(long, value_name = "OFFSET:LEN", conflicts_with = "protocol")]
    correlate: Option<String>,
    /// A protocol template (smpp, cmpp3, cmpp2, iso8583): its framing, heartbeats and
    /// sequence key; the upstream session is the proxy's (--account, or --sign-on for
    /// iso8583), clients' logins are answered here.
    #[arg(long, value_name = "smpp|cmpp3|cmpp2|iso8583")]
    protocol: Option<String>,
    /// With --protocol: the proxy's login upstream.
    #[arg(long, value_name = "ID:SECRET", requires = "protocol")]
    account: Option<String>,
    /// With --protocol iso8583: the field table: ascii (default), binary or FILE.toml.
    #[arg(long, value_name = "ascii|binary|FILE.toml", requires = "protocol")]
    iso8583_spec: Option<String>,
    /// With --protocol iso8583: sign on upstream (0800 / 70=001) on every connection, off
    /// before it closes.
    #[arg(long, requires = "protocol")]
    sign_on: bool,
    /// Upstream heartbeats: interval=DUR,timeout=DUR,misses=N[,ping=..][,pong=..], or off.
    #[arg(long, value_name = "SPEC|off")]
    heartbeat: Option<String>,
    /// Upstream connect and reply timeout; also how long a request waits for an upstream
    /// that is down (it is retried in the background) (default 10s).
    #[arg(long, value_name = "DUR")]
    timeout: Option<String>,
    /// What a client gets when its request may have reached the upstream but no reply
    /// came: close (default) or reply:text:..|reply:hex:..
    #[arg(long, value_name = "close|reply:..", default_value = "close")]
    on_upstream_error: String,
    /// Send a request that may have reached the upstream once more (default: never twice).
    #[arg(long)]
    retry_sent: bool,
    /// Client connections open at once (default 10000).
    #[arg(long, value_name = "N")]
    max_conns: Option<usize>,
    /// Client connections open at once per IP (default 1000; 0 = no limit).
    #[arg(long, value_name = "N")]
    max_conns_per_ip: Option<usize>,
    /// Close a client connection with no inbound frame for this long (default 5m).
    #[arg(long, value_name = "DUR")]
    idle_timeout: Option<String>,
    /// Cut a client frame that trickles in slower than this (default 30s).
    #[arg(long, value_name = "DUR")]
    frame_timeout: Option<String>,
    /// Expect a PROXY protocol v1/v2 header on every client connection.
    #[arg(long)]
    proxy_protocol: bool,
    /// With --proxy-protocol: accept connections only from these networks.
    #[arg(long, value_name = "CIDR[,CIDR..]")]
    proxy_from: Option<String>,
    /// How long client connections get to finish after SIGINT/SIGTERM (default 10s).
    #[arg(long, value_name = "DUR")]
    shutdown_grace: Option<String>,
    /// The client side's TLS (--tls-cert, --tls-key, --tls-client-ca), as on `serve`.
    #[command(flatten)]
    tls: super::tls_args::ServerTlsArgs,
    /// The upstream's TLS and SOCKS5 (--tls, --tls-ca, --tls-server-name,
    /// --upstream-tls-cert/--upstream-tls-key, --socks5), as on `send`.
    #[command(flatten)]
    upstream_tls: super::tls_args::UpstreamTlsArgs,
}

impl Args {
    /// The client side as `serve` settings.
    fn settings(&self, framing: String) -> ServerSettings {
        let mut s = ServerSettings::default();
        s.listen = Some(self.listen.clone());
        s.framing = Some(framing);
        s.mode = Some(self.client_mode.clone());
        s.idle_timeout.clone_from(&self.idle_timeout);
        s.frame_timeout.clone_from(&self.frame_timeout);
        s.max_conns = self.max_conns;
        s.max_conns_per_ip = self.max_conns_per_ip;
        s.proxy_protocol = Some(self.proxy_protocol);
        s.proxy_from.clone_from(&self.proxy_from);
        s.shutdown_grace.clone_from(&self.shutdown_grace);
        s
    }
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let (listen, config) = config(&args)?;
    let rt = super::server_runtime()?;
    rt.block_on(async move {
        tokio::spawn(serve(listen, config))
            .await
            .map_err(|e| Failure::Runtime(format!("proxy task failed: {e}")))?
    })
}

/// The flags as a library config, every rule checked (exit 2) before anything binds.
fn config(args: &Args) -> Result<(String, ProxyConfig), Failure> {
    let template =
        super::iso8583::protocol(args.protocol.as_deref(), args.iso8583_spec.as_deref(), &[])?;
    let framing = match (&args.framing, &template) {
        (Some(f), _) => f.clone(),
        (None, Some(p)) => p.framing().to_string(),
        (None, None) => return Err(Failure::Usage("--framing is required".into())),
    };
    let mut setup = args
        .settings(framing.clone())
        .build()
        .map_err(|e| config_failure(&e))?;
    check_address("listen", &setup.listen)?;
    // A malformed endpoint is a typo, not a partner under maintenance: refused now rather
    // than retried in the background for ever.
    for u in &args.upstream {
        check_address("upstream", u)?;
    }
    let up_framing = args.upstream_framing.clone().unwrap_or(framing);
    let long = match args.upstream_mode.as_str() {
        "long" => true,
        "short" => false,
        m => {
            return Err(Failure::Usage(format!(
                "--upstream-mode {m:?}: expected long or short"
            )));
        }
    };
    let on_error: OnUpstreamError = args.on_upstream_error.parse().map_err(|e| {
        Failure::Usage(format!(
            "--on-upstream-error: {e}; expected close or reply:text:..|reply:hex:.."
        ))
    })?;
    if args.pool == 0 {
        return Err(Failure::Usage("--pool must be at least 1".into()));
    }
    if args.pool > MAX_POOL {
        // Multiplexed links are all opened at start: --pool 100000 would be a SYN flood
        // on the partner the proxy exists to spare.
        return Err(Failure::Usage(format!(
            "--pool {}: expected at most {MAX_POOL} upstream connections",
            args.pool
        )));
    }
    let (upstream, mode, local) = match &template {
        Some(p) => {
            setup.config.heartbeat = Some(p.heartbeat());
            template_upstream(args, p, &up_framing)?
        }
        None => {
            let b = super::send::client_builder(
                &args.upstream,
                &up_framing,
                args.timeout.as_deref(),
                "--upstream",
            )?;
            let b = super::send::heartbeat_builder(b, args.heartbeat.as_deref(), long)?
                .checkout_timeout(super::send::parse_timeout(args.timeout.as_deref())?);
            (b, plain_mode(args, long)?, None)
        }
    };
    if !long && !matches!(mode, Upstream::Short) {
        return Err(Failure::Usage(
            "--upstream-mode short carries one request per connection: drop --correlate/--protocol"
                .into(),
        ));
    }
    setup.config.tls = args.tls.server_tls()?;
    setup.config.validate().map_err(|e| config_failure(&e))?;
    let upstream = args.upstream_tls.apply_to_client(upstream)?;
    let mut config = ProxyConfig::new(setup.config, upstream, mode);
    config.on_upstream_error = on_error;
    config.retry_sent = args.retry_sent;
    config.key_wait = super::send::parse_timeout(args.timeout.as_deref())?;
    config.local = local;
    config.upstream_wait = config.key_wait;
    Ok((setup.listen, config))
}

/// The upstream's client, its mode, and what the proxy answers itself.
type UpstreamSide = (ClientBuilder, Upstream, Option<Arc<dyn LocalAnswer>>);

/// The upstream with a template: its sequence key, the proxy's own session, clients'
/// logins answered locally.
fn template_upstream(
    args: &Args,
    p: &Arc<dyn keepwire::protocol::Protocol>,
    up_framing: &str,
) -> Result<UpstreamSide, Failure> {
    let common = super::protocol::SendCommon {
        to: &args.upstream,
        framing: Some(up_framing),
        mode: "long",
        timeout: args.timeout.as_deref(),
        heartbeat: args.heartbeat.as_deref(),
        messages: &[],
    };
    let mut b = super::protocol::send_builder(&**p, &common)?;
    super::iso8583::check_login_flags(&**p, args.sign_on, args.account.as_deref())?;
    if p.template() == Template::Iso8583 {
        // Always a session: the acquirer's own 0800s are answered, signed on or not.
        let hook = Iso8583Session::new(Arc::clone(p), args.sign_on);
        b = b.session(Some(Arc::new(hook)));
    } else if let Some(a) = &args.account {
        let account = super::protocol::parse_account(&**p, a)?;
        let hook = ClientSession::new(Arc::clone(p), account, BindMode::default());
        b = b.session(Some(Arc::new(hook)));
    }
    let mode = Upstream::Mux {
        connections: args.pool,
        correlate: Arc::new(SequenceKey::new(Arc::clone(p))),
    };
    let local: Arc<dyn LocalAnswer> = Arc::new(TemplateSession::new(Arc::clone(p)));
    Ok((b, mode, Some(local)))
}

/// The upstream mode without a template: short, a pool, or multiplexed on `--correlate`.
fn plain_mode(args: &Args, long: bool) -> Result<Upstream, Failure> {
    if !long {
        if args.correlate.is_some() {
            return Err(Failure::Usage(
                "--correlate needs --upstream-mode long: a short connection carries one request"
                    .into(),
            ));
        }
        return Ok(Upstream::Short);
    }
    Ok(match &args.correlate {
        Some(c) => {
            let range: ByteRange = c
                .parse()
                .map_err(|e| Failure::Usage(format!("--correlate: {e}")))?;
            Upstream::Mux {
                connections: args.pool,
                correlate: Arc::new(range),
            }
        }
        None => Upstream::Long {
            connections: args.pool,
        },
    })
}

async fn serve(listen: String, config: ProxyConfig) -> Result<(), Failure> {
    let proxy = Proxy::bind(listen.as_str(), config)
        .await
        .map_err(|e| proxy_failure(&e))?;
    // Before `listening on`: a SIGTERM sent as soon as the line is read must drain.
    let signals = ShutdownSignals::install()
        .map_err(|e| Failure::Runtime(format!("cannot install signal handlers: {e}")))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", proxy.local_addr());
        let _ = out.flush();
    }
    let report = proxy
        .serve_until_signal(signals)
        .await
        .map_err(|e| proxy_failure(&e))?;
    eprintln!(
        "keepwire: shut down: connections open at the signal: {}, closed by force after the grace period: {}",
        report.open_at_shutdown, report.force_closed
    );
    Ok(())
}

fn proxy_failure(e: &ProxyError) -> Failure {
    match e {
        ProxyError::Listen(s) => server_failure(s),
        ProxyError::Connect(c) if c.is_config() => Failure::Usage(format!("--upstream: {c}")),
        _ => Failure::Runtime(chain(e)),
    }
}
