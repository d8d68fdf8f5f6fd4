//! `keepwire bench`: what short vs long connections cost, on an embedded server or a target.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keepwire::bench::{BenchConfig, Mode, ModeReport, Progress, ephemeral_ports, run_mode};
use keepwire::frame::FramingSpec;
use keepwire::server::{Request, Server, ServerConfig, service_fn};
use keepwire::socket::parse_duration;

use super::Failure;

/// Flags of `keepwire bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// An echo server to measure; without it an embedded keepwire server on 127.0.0.1 is used.
    #[arg(long, value_name = "ADDR")]
    target: Option<String>,
    /// Framing of requests and replies.
    #[arg(long, short = 'f', value_name = "SPEC", default_value = "len:be:4")]
    framing: String,
    /// Modes to run, in order.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "short,long,pool,mux",
        value_delimiter = ','
    )]
    modes: Vec<String>,
    /// Concurrent clients.
    #[arg(long, value_name = "N", default_value_t = 16)]
    connections: usize,
    /// How long each mode runs.
    #[arg(long, value_name = "DUR", default_value = "3s")]
    duration: String,
    /// Request body size in bytes (at least 8: the request id).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    size: usize,
    /// pool mode: connections shared by the clients (default: a quarter of --connections).
    #[arg(long, value_name = "N")]
    pool_size: Option<usize>,
    /// mux mode: connections all clients are multiplexed over.
    #[arg(long, value_name = "N", default_value_t = 2)]
    mux_connections: usize,
    /// Print one JSON array instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write a bar chart of requests/s and p99 per mode.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let framing: FramingSpec = super::parse_spec(&args.framing)?;
    let modes = args
        .modes
        .iter()
        .map(|m| {
            m.trim()
                .parse::<Mode>()
                .map_err(|e| Failure::Usage(format!("--modes: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if modes.is_empty() {
        return Err(Failure::Usage(
            "--modes needs at least one of short,long,pool,mux".into(),
        ));
    }
    let duration =
        parse_duration(&args.duration).map_err(|e| Failure::Usage(format!("--duration: {e}")))?;
    if args.size < 8 {
        return Err(Failure::Usage(
            "--size must be at least 8 (the request id)".into(),
        ));
    }
    if args.connections == 0 {
        return Err(Failure::Usage("--connections must be at least 1".into()));
    }
    if args.size > framing.max_frame() {
        return Err(Failure::Usage(format!(
            "--size {} does not fit {framing} (at most {} bytes)",
            args.size,
            framing.max_frame()
        )));
    }
    let mut cfg = BenchConfig::new(framing.clone());
    cfg.connections = args.connections;
    cfg.duration = duration;
    cfg.size = args.size;
    cfg.pool_size = args.pool_size.unwrap_or((args.connections / 4).max(1));
    cfg.mux_connections = args.mux_connections.max(1);

    let target: Option<SocketAddr> = match &args.target {
        None => None,
        Some(t) => Some(resolve(t)?),
    };
    // Client and embedded server each get their own runtime threads, so they do not share
    // one executor: one worker each on a small machine.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let client_threads = if target.is_some() {
        cores
    } else {
        (cores / 2).max(1)
    };
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the runtime: {e}")))?;
    let bar = std::io::stderr().is_terminal() && !args.json;

    let mut reports = Vec::new();
    for mode in modes {
        // A fresh embedded server per mode, so each mode's TIME_WAIT sockets are its own.
        let embedded = match target {
            Some(_) => None,
            None => Some(Embedded::start(framing.clone(), cores)?),
        };
        let (addr, visible) = match (&embedded, target) {
            (Some(e), _) => (e.addr, true),
            (None, Some(t)) => (t, is_local(t)),
            (None, None) => unreachable!("either embedded or target"),
        };
        let progress = Arc::new(Progress::default());
        let ticker = bar.then(|| progress_bar(mode, duration, Arc::clone(&progress)));
        let report = client_rt.block_on(run_mode(addr, visible, &cfg, mode, progress));
        if let Some((pb, stop)) = ticker {
            stop.store(true, Ordering::Relaxed);
            pb.finish_and_clear();
        }
        drop(embedded);
        if report.requests == 0 {
            return Err(Failure::Runtime(format!(
                "{mode}: no request answered by {addr} ({} errors): is it an echo server speaking {framing}?",
                report.errors
            )));
        }
        reports.push(report);
    }

    let mut out = std::io::stdout().lock();
    let text = if args.json {
        json(&reports)
    } else {
        table(&reports, target)
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if let Some(path) = &args.chart {
        super::bench_chart::write(path, &reports)
            .map_err(|e| Failure::Runtime(format!("--chart {}: {e}", path.display())))?;
    }
    Ok(())
}

fn resolve(t: &str) -> Result<SocketAddr, Failure> {
    use std::net::ToSocketAddrs;
    t.to_socket_addrs()
        .map_err(|e| Failure::Usage(format!("--target {t}: {e}")))?
        .next()
        .ok_or_else(|| Failure::Usage(format!("--target {t}: resolves to no address")))
}

/// Whether `addr` is on this machine, so its server-side sockets show in our TCP table.
fn is_local(addr: SocketAddr) -> bool {
    addr.ip().is_loopback() || std::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)).is_ok()
}

/// A keepwire echo server on its own runtime.
struct Embedded {
    addr: SocketAddr,
    /// Cancels the server's shutdown token.
    stop: Box<dyn Fn() + Send>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Embedded {
    fn start(framing: FramingSpec, cores: usize) -> Result<Self, Failure> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads((cores / 2).max(1))
            .thread_name("bench-server")
            .enable_all()
            .build()
            .map_err(|e| Failure::Runtime(format!("cannot start the server runtime: {e}")))?;
        let mut cfg = ServerConfig::new(framing);
        cfg.max_conns = 1_000_000;
        cfg.max_conns_per_ip = None;
        let server = rt
            .block_on(Server::bind("127.0.0.1:0", cfg))
            .map_err(|e| Failure::Runtime(format!("embedded server: {e}")))?;
        let addr = server.local_addr();
        let token = server.shutdown_token();
        rt.spawn(server.serve(service_fn(|r: Request| async move {
            Ok::<_, std::convert::Infallible>(Some(r.frame))
        })));
        Ok(Embedded {
            addr,
            stop: Box::new(move || token.cancel()),
            rt: Some(rt),
        })
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        (self.stop)();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

fn progress_bar(
    mode: Mode,
    duration: Duration,
    progress: Arc<Progress>,
) -> (indicatif::ProgressBar, Arc<std::sync::atomic::AtomicBool>) {
    let pb = indicatif::ProgressBar::new(duration.as_millis() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>6} [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(mode.to_string());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (pb2, stop2) = (pb.clone(), Arc::clone(&stop));
    std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        while !stop2.load(Ordering::Relaxed) {
            let n = progress.requests.load(Ordering::Relaxed);
            let secs = t0.elapsed().as_secs_f64().max(0.001);
            pb2.set_position(t0.elapsed().as_millis() as u64);
            pb2.set_message(format!("{n} requests, {:.0}/s", n as f64 / secs));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (pb, stop)
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |n| n.to_string())
}

fn table(reports: &[ModeReport], target: Option<SocketAddr>) -> String {
    let mut s = String::new();
    let on = target.map_or_else(
        || "an embedded keepwire server on 127.0.0.1".to_string(),
        |t| t.to_string(),
    );
    s.push_str(&format!("keepwire bench against {on}\n\n"));
    s.push_str(&format!(
        "{:<6} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>7}\n",
        "mode", "req/s", "p50_us", "p99_us", "max_us", "conns", "tw_client", "tw_server", "errors"
    ));
    for r in reports {
        s.push_str(&format!(
            "{:<6} {:>10.0} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>7}\n",
            r.mode.as_str(),
            r.rps,
            r.p50_us,
            r.p99_us,
            r.max_us,
            r.connections_opened,
            opt(r.time_wait_client),
            opt(r.time_wait_server),
            r.errors
        ));
    }
    s.push('\n');
    let find = |m: Mode| reports.iter().find(|r| r.mode == m);
    if let Some(short) = find(Mode::Short) {
        if let (Some(tw), Some(range)) = (short.time_wait_client, ephemeral_ports()) {
            let pct = tw as f64 * 100.0 / range as f64;
            s.push_str(&format!(
                "short: {tw} client sockets in TIME_WAIT of {range} ephemeral ports ({pct:.0}%); \
                 at 100% connect() fails with \"cannot assign requested address\" unless the \
                 kernel may reuse them (net.ipv4.tcp_tw_reuse)\n"
            ));
        }
    }
    if let (Some(short), Some(long)) = (find(Mode::Short), find(Mode::Long)) {
        let ratio = long.rps / short.rps.max(1e-9);
        s.push_str(&format!(
            "conclusion: long connections served {ratio:.1}x the requests/s of short ones \
             ({:.0} vs {:.0}, p99 {} vs {} us), opening {} connections instead of {}.\n",
            long.rps,
            short.rps,
            long.p99_us,
            short.p99_us,
            long.connections_opened,
            short.connections_opened
        ));
    }
    s
}

fn json(reports: &[ModeReport]) -> String {
    let arr: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            serde_json::json!({
                "mode": r.mode.as_str(),
                "requests": r.requests,
                "errors": r.errors,
                "rps": (r.rps * 10.0).round() / 10.0,
                "p50_us": r.p50_us,
                "p99_us": r.p99_us,
                "max_us": r.max_us,
                "connections_opened": r.connections_opened,
                "time_wait_client": r.time_wait_client,
                "time_wait_server": r.time_wait_server,
            })
        })
        .collect();
    format!("{}\n", serde_json::Value::Array(arr))
}
