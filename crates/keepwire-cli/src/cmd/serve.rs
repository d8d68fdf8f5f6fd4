//! `keepwire serve`: a framed server with a canned reply (echo, fixed bytes or a file).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use keepwire::server::{
    ConfigError, Engine, ServeSetup, Server, ServerError, ServerSettings, ShutdownSignals,
};

use super::Failure;

const EXAMPLES: &str = "\
Examples:
  # An ISO 8583 acquirer: 0210/0810 answers on len:ascii:4, one amount declined (51)
  keepwire serve --listen 127.0.0.1:7000 --protocol iso8583 --respond 4=000000009999:51

  # Short connections behind HAProxy, metrics for Prometheus
  keepwire serve --listen 0.0.0.0:7000 --framing line --mode short --proxy-protocol \\
      --proxy-from 10.0.0.0/8 --metrics 127.0.0.1:9464

  # A web server: 200 with a fixed body; HTTP/1.1 persistent, 1.0 with keep-alive;
  # 100 requests per connection, idle keep-alive connections closed after 15s
  keepwire serve --listen 127.0.0.1:8080 --framing http --reply text:hello \
      --content-type text/plain --keepalive-requests 100 --idle-timeout 15s

  # Everything from a file; flags given here win (--engine direct: an event loop per
  # CPU and no task per connection, for --reply servers)
  keepwire serve --config serve.toml --idle-timeout 30s --engine direct
";

/// Flags of `keepwire serve`. Every flag can also be given in `--config FILE.toml` under the
/// same name (e.g. `idle-timeout = "30s"`); flags win over the file.
#[derive(Debug, Default, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Framing spec, e.g. len:ascii:4, len:be:4:incl, delim:0x03, line, fixed:16, eof, http.
    #[arg(long, short = 'f', value_name = "SPEC")]
    framing: Option<String>,
    /// long (default): many requests per connection; short: one request, one reply.
    #[arg(long, value_name = "long|short")]
    mode: Option<String>,
    /// What to answer: echo (default), hex:.., text:.. or file:PATH.
    #[arg(long, value_name = "REPLY")]
    reply: Option<String>,
    /// Close a connection with no inbound frame for this long (default 5m; 0 = never).
    #[arg(long, value_name = "DUR")]
    idle_timeout: Option<String>,
    /// Close a connection the server wrote nothing to for this long (default never).
    #[arg(long, value_name = "DUR")]
    write_idle_timeout: Option<String>,
    /// Close a connection with no traffic either way for this long (default never).
    #[arg(long, value_name = "DUR")]
    any_idle_timeout: Option<String>,
    /// Cut a frame whose header or body trickles in slower than this (default 30s; 0 = never).
    #[arg(long, value_name = "DUR")]
    frame_timeout: Option<String>,
    /// Connections open at once (default 10000).
    #[arg(long, value_name = "N")]
    max_conns: Option<usize>,
    /// Connections open at once per client IP (default 1000; 0 = no limit).
    #[arg(long, value_name = "N")]
    max_conns_per_ip: Option<usize>,
    /// Kernel keepalive: TIME,INTERVAL,PROBES (e.g. 30s,5s,3) or off (default off).
    #[arg(long, value_name = "TIME,INTERVAL,PROBES|off")]
    tcp_keepalive: Option<String>,
    /// TCP_USER_TIMEOUT: give up on unacknowledged data after this long.
    #[arg(long, value_name = "DUR")]
    tcp_user_timeout: Option<String>,
    /// interval=DUR,timeout=DUR,misses=N[,ping=..][,pong=..] to ping idle clients, or off.
    #[arg(long, value_name = "SPEC|off")]
    heartbeat: Option<String>,
    /// Hold each reply this long (a slow partner).
    #[arg(long, value_name = "DUR")]
    delay: Option<String>,
    /// Expect a PROXY protocol v1/v2 header on every connection (`=false` turns off what
    /// a config file turns on).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    proxy_protocol: Option<bool>,
    /// With --proxy-protocol: accept connections only from these networks (e.g.
    /// 10.0.0.0/8,192.0.2.7/32), the balancer's addresses; others are closed at once.
    #[arg(long, value_name = "CIDR[,CIDR..]")]
    proxy_from: Option<String>,
    /// Short mode: close right after the reply instead of waiting for the client's FIN
    /// (`=false` turns off what a config file turns on).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    close_first: Option<bool>,
    /// How long connections get to finish after SIGINT/SIGTERM (default 10s).
    #[arg(long, value_name = "DUR")]
    shutdown_grace: Option<String>,
    /// Serve Prometheus metrics on this address (off: not at all, over a config file).
    #[arg(long, value_name = "ADDR|off")]
    metrics: Option<String>,
    /// --framing http: the Content-Type of responses (default text/plain).
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,
    /// --framing http: answer a connection's Nth request with `Connection: close` and close
    /// it (nginx's keepalive_requests; default no limit).
    #[arg(long, value_name = "N")]
    keepalive_requests: Option<u64>,
    /// --framing http: send `Keep-Alive: timeout=N[, max=M]` (the idle timeout, requests
    /// left) on responses that keep the connection.
    #[arg(long)]
    keepalive_header: bool,
    /// tokio (default): a task per connection, every feature; direct: an event loop per
    /// CPU and no task per connection, for --reply servers (no TLS, PROXY protocol, http
    /// framing, --delay or --protocol).
    #[arg(long, value_name = "tokio|direct")]
    engine: Option<String>,
    /// Read settings from this TOML file (keys as the flags, e.g. max-conns = 100).
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    #[command(flatten)]
    tls: super::tls_args::ServerTlsArgs,
    #[command(flatten)]
    proto: super::protocol::ServeFlags,
}

impl Args {
    /// The flags as library settings (a switch not given is "not set", so a file can set it).
    fn settings(&self) -> ServerSettings {
        let mut s = ServerSettings::default();
        s.listen.clone_from(&self.listen);
        s.framing.clone_from(&self.framing);
        s.mode.clone_from(&self.mode);
        s.reply.clone_from(&self.reply);
        s.idle_timeout.clone_from(&self.idle_timeout);
        s.write_idle_timeout.clone_from(&self.write_idle_timeout);
        s.any_idle_timeout.clone_from(&self.any_idle_timeout);
        s.frame_timeout.clone_from(&self.frame_timeout);
        s.max_conns = self.max_conns;
        s.max_conns_per_ip = self.max_conns_per_ip;
        s.tcp_keepalive.clone_from(&self.tcp_keepalive);
        s.tcp_user_timeout.clone_from(&self.tcp_user_timeout);
        s.heartbeat.clone_from(&self.heartbeat);
        s.delay.clone_from(&self.delay);
        s.proxy_protocol = self.proxy_protocol;
        s.proxy_from.clone_from(&self.proxy_from);
        s.close_first = self.close_first;
        s.shutdown_grace.clone_from(&self.shutdown_grace);
        s.metrics.clone_from(&self.metrics);
        s.engine.clone_from(&self.engine);
        s
    }
}

/// The largest `--config` file read, in bytes: a settings file is a few hundred bytes, and
/// a path like `/dev/zero` must not be read until memory runs out.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads `--config FILE.toml` (at most [`MAX_CONFIG_BYTES`]).
fn read_config(path: &Path) -> Result<ServerSettings, Failure> {
    let fail = |what: String| Failure::Usage(format!("--config {}: {what}", path.display()));
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| fail(e.to_string()))?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_CONFIG_BYTES {
        return Err(fail(format!(
            "larger than {MAX_CONFIG_BYTES} bytes; expected a small TOML file"
        )));
    }
    toml::from_str(&text).map_err(|e| fail(toml_failure(&text, &e)))
}

/// A toml error as one line: `line N: KEY: message`. toml's Display draws a multi-line
/// excerpt, and its message says what is wrong with a value but not which key holds it:
/// the key is taken from the line the error points at.
fn toml_failure(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    let Some(span) = e.span() else {
        return msg.to_string();
    };
    let before = text.get(..span.start).unwrap_or("");
    // Counting newlines, not `lines()`: a span at the start of a line is on that line.
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let key = text
        .get(start..)
        .and_then(|rest| rest.lines().next())
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|k| !k.is_empty() && !msg.contains(&format!("`{k}`")));
    match key {
        Some(k) => format!("line {line}: {k}: {msg}"),
        None => format!("line {line}: {msg}"),
    }
}

/// A config error as one line naming the flag: `--idle-timeout: "soon" is not a duration ...`.
pub(crate) fn config_failure(e: &ConfigError) -> Failure {
    let msg = match (e.key(), e) {
        // `invalid KEY VALUE`: the source says what is wrong with the value.
        (Some(key), ConfigError::Invalid { source, .. }) => {
            format!("--{key}: {}", chain(source.as_ref()))
        }
        (Some(key), ConfigError::Needs { needs, .. }) => format!("--{key} needs --{needs}"),
        // Every other keyed error's Display starts with its key.
        (Some(_), _) => format!("--{}", chain(e)),
        (None, _) => chain(e),
    };
    Failure::Usage(msg)
}

/// `addr` has the `HOST:PORT` shape (a name is resolved later, at bind): a value that
/// cannot be an address is a usage error naming `--key`, not a failure to listen.
pub(crate) fn check_address(key: &str, addr: &str) -> Result<(), Failure> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "--{key}: {addr:?} is not an address; expected HOST:PORT, e.g. 127.0.0.1:7000"
    )))
}

/// An error and its sources, joined by `: `.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

pub(crate) fn server_failure(e: &ServerError) -> Failure {
    match e {
        ServerError::Config(c) => config_failure(c),
        ServerError::Metrics { .. } => Failure::Runtime(format!("--metrics: {}", chain(e))),
        _ => Failure::Runtime(chain(e)),
    }
}

pub(crate) fn run(flags: Args) -> Result<(), Failure> {
    let mut settings = flags.settings();
    if let Some(path) = &flags.config {
        settings = settings.or(read_config(path)?);
    }
    if let Some(p) = flags.proto.template()? {
        let engine = settings.engine.as_deref().map(str::parse::<Engine>);
        match engine {
            Some(Err(why)) => return Err(Failure::Usage(format!("--engine: {why}"))),
            Some(Ok(Engine::Direct)) => {
                return Err(Failure::Usage(
                    "--engine direct serves --reply only; --protocol needs the default engine (tokio)"
                        .into(),
                ));
            }
            _ => {}
        }
        return super::protocol::serve(p, &flags.proto, settings);
    }
    let mut setup = settings.build().map_err(|e| config_failure(&e))?;
    setup.config.tls = flags.tls.server_tls()?;
    let http = super::http::service(
        &setup,
        flags.content_type.as_deref(),
        flags.keepalive_requests,
        flags.keepalive_header,
    )?;
    check_address("listen", &setup.listen)?;
    if let Some(m) = &setup.metrics {
        check_address("metrics", m)?;
    }

    let rt = super::server_runtime()?;
    // Multi-thread: run on a worker thread, not in block_on on the main thread: connections
    // spawned from the accept loop then start on the same worker instead of waking another
    // thread each. The task is awaited here, so nothing outlives it.
    rt.block_on(async move {
        tokio::spawn(serve(setup, http))
            .await
            .map_err(|e| Failure::Runtime(format!("server task failed: {e}")))?
    })
}

async fn serve(
    setup: ServeSetup,
    http: Option<keepwire::http::HttpService>,
) -> Result<(), Failure> {
    let mut server = Server::bind(setup.listen.as_str(), setup.config)
        .await
        .map_err(|e| server_failure(&e))?;
    // Bound before `listening on` is printed: a bad --metrics address fails before the
    // server announces itself. The server runs (and stops) the exporter.
    if let Some(addr) = &setup.metrics {
        let a = server
            .export_prometheus(addr.as_str())
            .await
            .map_err(|e| server_failure(&e))?;
        eprintln!("keepwire: metrics on http://{a}/metrics");
    }
    // Signal handlers before `listening on`: a SIGTERM sent as soon as the line is read must
    // drain, not kill the process (the default action of an unhandled SIGTERM).
    let signals = ShutdownSignals::install()
        .map_err(|e| Failure::Runtime(format!("cannot install signal handlers: {e}")))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", server.local_addr());
        let _ = out.flush();
    }
    let report = match http {
        Some(svc) => server.serve_until_signal(svc, signals).await,
        None if setup.engine == Engine::Direct => {
            server.serve_direct_until_signal(setup.reply, signals).await
        }
        None => {
            server
                .serve_until_signal(setup.reply.into_service(), signals)
                .await
        }
    }
    .map_err(|e| server_failure(&e))?;
    // Whole milliseconds: the drain is not measured finer than that.
    let drained =
        Duration::from_millis(u64::try_from(report.drain_time.as_millis()).unwrap_or(u64::MAX));
    eprintln!(
        "keepwire: shut down: connections open at the signal: {}, closed by force after the grace period: {}, drained in {}",
        report.open_at_shutdown,
        report.force_closed,
        humantime::format_duration(drained)
    );
    Ok(())
}
