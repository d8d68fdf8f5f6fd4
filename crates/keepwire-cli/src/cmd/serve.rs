//! `keepwire serve`: a framed server with a canned reply (echo, fixed bytes or a file).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use keepwire::liveness::HeartbeatSpec;
use keepwire::server::{Mode, Request, Server, ServerConfig, service_fn};
use keepwire::socket::{Keepalive, parse_duration};
use serde::Deserialize;

use super::Failure;

/// Flags of `keepwire serve`. Every flag can also be given in `--config FILE.toml` under the
/// same name (e.g. `idle-timeout = "30s"`); flags win over the file.
#[derive(Debug, Default, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct Args {
    /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Framing spec, e.g. len:ascii:4, len:be:4:incl, delim:0x03, line, fixed:16, eof.
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
    /// Expect a PROXY protocol v1/v2 header on every connection.
    #[arg(long)]
    #[serde(default)]
    proxy_protocol: bool,
    /// With --proxy-protocol: accept connections only from these networks (e.g.
    /// 10.0.0.0/8,192.0.2.7/32), the balancer's addresses; others are closed at once.
    #[arg(long, value_name = "CIDR[,CIDR..]")]
    proxy_from: Option<String>,
    /// Short mode: close right after the reply instead of waiting for the client's FIN.
    #[arg(long)]
    #[serde(default)]
    close_first: bool,
    /// How long connections get to finish after SIGINT/SIGTERM (default 10s).
    #[arg(long, value_name = "DUR")]
    shutdown_grace: Option<String>,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Read settings from this TOML file (keys as the flags, e.g. max-conns = 100).
    #[arg(long, value_name = "FILE.toml")]
    #[serde(skip)]
    config: Option<PathBuf>,
}

macro_rules! merge {
    ($flags:ident, $file:ident; $($f:ident),*; bools $($b:ident),*) => {
        Args {
            $($f: $flags.$f.or($file.$f),)*
            $($b: $flags.$b || $file.$b,)*
            config: $flags.config,
        }
    };
}

fn dur(name: &str, v: Option<&str>) -> Result<Option<Duration>, Failure> {
    v.map(|s| parse_duration(s).map_err(|e| Failure::Usage(format!("--{name}: {e}"))))
        .transpose()
}

/// A duration where `0` or `off` means none; `default` when not given.
fn opt_dur(
    name: &str,
    v: Option<&str>,
    default: Option<Duration>,
) -> Result<Option<Duration>, Failure> {
    match v {
        None => Ok(default),
        Some("off") => Ok(None),
        Some(s) => Ok(dur(name, Some(s))?.filter(|d| !d.is_zero())),
    }
}

fn reply_of(spec: &str) -> Result<Option<Bytes>, Failure> {
    if spec == "echo" {
        return Ok(None);
    }
    if let Some(path) = spec.strip_prefix("file:") {
        return std::fs::read(path)
            .map(|b| Some(Bytes::from(b)))
            .map_err(|e| Failure::Usage(format!("--reply file:{path}: {e}")));
    }
    keepwire::liveness::parse_payload(spec)
        .map(Some)
        .map_err(|e| Failure::Usage(format!("--reply: {e}; or echo, or file:PATH")))
}

pub(crate) fn run(flags: Args) -> Result<(), Failure> {
    let args = match &flags.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::Usage(format!("--config {}: {e}", path.display())))?;
            let file: Args = toml::from_str(&text).map_err(|e| {
                // toml's Display draws a multi-line excerpt; errors here are one line.
                let line = e
                    .span()
                    .map(|s| text.get(..s.start).unwrap_or("").lines().count().max(1));
                let at = line.map(|l| format!(" line {l}:")).unwrap_or_default();
                Failure::Usage(format!(
                    "--config {}:{at} {}",
                    path.display(),
                    e.message().trim()
                ))
            })?;
            merge!(flags, file;
                listen, framing, mode, reply, idle_timeout, write_idle_timeout, any_idle_timeout,
                frame_timeout, max_conns, max_conns_per_ip, tcp_keepalive, tcp_user_timeout,
                heartbeat, delay, shutdown_grace, metrics, proxy_from;
                bools proxy_protocol, close_first)
        }
        None => flags,
    };
    let listen = args
        .listen
        .clone()
        .ok_or_else(|| Failure::Usage("serve needs --listen ADDR (e.g. 127.0.0.1:7000)".into()))?;
    let framing =
        super::parse_spec(args.framing.as_deref().ok_or_else(|| {
            Failure::Usage("serve needs --framing SPEC (e.g. len:ascii:4)".into())
        })?)?;
    let mut cfg = ServerConfig::new(framing);
    if let Some(m) = &args.mode {
        cfg.mode = m
            .parse()
            .map_err(|e| Failure::Usage(format!("--mode: {e}")))?;
    }
    cfg.liveness.read_idle = opt_dur(
        "idle-timeout",
        args.idle_timeout.as_deref(),
        cfg.liveness.read_idle,
    )?;
    cfg.liveness.write_idle = opt_dur(
        "write-idle-timeout",
        args.write_idle_timeout.as_deref(),
        None,
    )?;
    cfg.liveness.any_idle = opt_dur("any-idle-timeout", args.any_idle_timeout.as_deref(), None)?;
    cfg.liveness.frame_timeout = opt_dur(
        "frame-timeout",
        args.frame_timeout.as_deref(),
        cfg.liveness.frame_timeout,
    )?;
    if let Some(n) = args.max_conns {
        if n == 0 {
            return Err(Failure::Usage("--max-conns must be at least 1".into()));
        }
        cfg.max_conns = n;
    }
    match args.max_conns_per_ip {
        // 0 lifts the cap (behind a balancer that does not send the PROXY protocol).
        Some(0) => cfg.max_conns_per_ip = None,
        Some(n) => cfg.max_conns_per_ip = Some(n),
        None => {}
    }
    match args.tcp_keepalive.as_deref() {
        None | Some("off") => {}
        Some(k) => {
            cfg.socket.keepalive = Some(
                k.parse::<Keepalive>()
                    .map_err(|e| Failure::Usage(format!("--tcp-keepalive: {e:#}")))?,
            );
        }
    }
    cfg.socket.user_timeout = dur("tcp-user-timeout", args.tcp_user_timeout.as_deref())?;
    if let Some(t) = cfg.socket.user_timeout {
        keepwire::socket::validate_user_timeout(t)
            .map_err(|e| Failure::Usage(format!("--tcp-user-timeout: {e}")))?;
    }
    if let Some(hb) = &args.heartbeat {
        let hb: HeartbeatSpec = hb
            .parse()
            .map_err(|e| Failure::Usage(format!("--heartbeat: {e:#}")))?;
        cfg.heartbeat = hb.heartbeat();
        cfg.liveness.ping = hb.ping_config();
    }
    cfg.reply_delay = dur("delay", args.delay.as_deref())?;
    cfg.proxy_protocol = args.proxy_protocol;
    if let Some(list) = &args.proxy_from {
        if !args.proxy_protocol {
            return Err(Failure::Usage("--proxy-from needs --proxy-protocol".into()));
        }
        cfg.proxy_from = list
            .split(',')
            .map(|n| {
                let n = n.trim();
                n.parse::<ipnet::IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        Failure::Usage(format!(
                            "--proxy-from: {n:?} is not a network; expected CIDR like 10.0.0.0/8 or an address"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
    }
    cfg.short_server_closes_first = args.close_first;
    if let Some(g) = dur("shutdown-grace", args.shutdown_grace.as_deref())? {
        cfg.shutdown_grace = g;
    }
    let reply = reply_of(args.reply.as_deref().unwrap_or("echo"))?;
    if let Some(r) = &reply {
        // A fixed reply the framing cannot carry would fail every request: refuse it now.
        let mut probe = bytes::BytesMut::new();
        keepwire::frame::FrameCodec::new(cfg.framing.clone())
            .encode_to(r, &mut probe)
            .map_err(|e| Failure::Usage(format!("--reply under {}: {e}", cfg.framing)))?;
        // The heartbeat frame is never data: a client would take this reply for a ping.
        let is_beat = cfg
            .heartbeat
            .as_deref()
            .is_some_and(|h| h.classify(r).is_some());
        if cfg.mode == Mode::Long && is_beat {
            return Err(Failure::Usage(format!(
                "--reply {:?} is the heartbeat frame under {}: clients would take every reply for a ping; \
                 give a non-empty reply, or --heartbeat off if your clients have no heartbeats",
                args.reply.as_deref().unwrap_or_default(),
                cfg.framing
            )));
        }
    }
    if cfg.mode == Mode::Short && cfg.liveness.ping.is_some() {
        return Err(Failure::Usage(
            "--heartbeat pings make no sense with --mode short: a short connection is never idle long".into(),
        ));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the runtime: {e}")))?;
    // Run on a worker thread, not in block_on on the main thread: connections spawned from
    // the accept loop then start on the same worker instead of waking another thread each.
    rt.block_on(async move {
        tokio::spawn(serve(listen, cfg, reply, args.metrics))
            .await
            .map_err(|e| Failure::Runtime(format!("server task failed: {e}")))?
    })
}

async fn serve(
    listen: String,
    cfg: ServerConfig,
    reply: Option<Bytes>,
    metrics: Option<String>,
) -> Result<(), Failure> {
    let server = Server::bind(listen.as_str(), cfg).await.map_err(|e| {
        if e.is_bind() {
            Failure::Runtime(e.to_string())
        } else {
            Failure::Usage(e.to_string())
        }
    })?;
    let stop = server.shutdown_token();
    let stats = server.stats();
    // Bound before `listening on` is printed: a bad --metrics address fails before the
    // server announces itself.
    if let Some(addr) = metrics {
        let l = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| Failure::Runtime(format!("--metrics: cannot listen on {addr}: {e}")))?;
        if let Ok(a) = l.local_addr() {
            eprintln!("keepwire: metrics on http://{a}/metrics");
        }
        let (stats, stop) = (Arc::clone(&stats), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = keepwire::server::serve_prometheus(l, stats, stop).await {
                tracing::error!("{e}");
            }
        });
    }
    // Signal handlers before `listening on`: a SIGTERM sent as soon as the line is read must
    // drain, not kill the process (the default action of an unhandled SIGTERM).
    let mut signals = Signals::install()
        .map_err(|e| Failure::Runtime(format!("cannot install signal handlers: {e}")))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", server.local_addr());
        let _ = out.flush();
    }

    let signal_stop = stop.clone();
    tokio::spawn(async move {
        signals.next().await;
        tracing::info!("shutting down");
        signal_stop.cancel();
        // A second signal while draining: stop waiting.
        signals.next().await;
        eprintln!("keepwire: second signal: exiting without waiting for the drain");
        std::process::exit(1);
    });

    let handler = service_fn(move |req: Request| {
        let out = reply.clone().unwrap_or(req.frame);
        async move { Ok::<_, std::convert::Infallible>(Some(out)) }
    });
    let report = server
        .serve(handler)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    eprintln!(
        "keepwire: shut down: connections open at the signal: {}, closed by force after the grace period: {}, drained in {} ms",
        report.open_at_shutdown,
        report.force_closed,
        report.drain_time.as_millis()
    );
    Ok(())
}

/// SIGINT and SIGTERM, installed once.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
