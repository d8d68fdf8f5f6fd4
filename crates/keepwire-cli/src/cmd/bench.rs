//! `keepwire bench`: what short vs long connections cost, on an embedded server or a target.
//!
//! The library's [`keepwire::bench::run`] does the work (and owns the embedded server); this
//! command parses flags, shows progress, and prints the report as a table, JSON or a chart.

use std::error::Error as _;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use keepwire::bench::{
    BenchConfig, BenchError, BenchReport, Observer, Pattern, PatternReport, Progress,
};
use keepwire::socket::parse_duration;

use super::Failure;

const EXAMPLES: &str = "\
Examples:
  keepwire bench --chart bench.svg                  # embedded server, all four modes, 3s each
  keepwire bench --target 10.0.0.7:7443 --framing len:ascii:4 --tls --tls-ca ca.pem --json
  keepwire bench --protocol cmpp3 --duration 5s     # submit round trips on the ISMG simulator
  keepwire bench --framing http --target 127.0.0.1:8080   # any web server; mux = pipelined";

/// Flags of `keepwire bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
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
    #[command(flatten)]
    link: super::tls_args::ClientTlsArgs,
    #[command(flatten)]
    proto: super::protocol::BenchFlags,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let cfg = config(&args)?;
    let proto = super::protocol::bench_config(&args.proto, &cfg)?;
    let report = if std::io::stderr().is_terminal() && !args.json {
        super::protocol::bench_run(proto.as_ref(), &cfg, &mut Bars::new(cfg.duration))
    } else {
        super::protocol::bench_run(proto.as_ref(), &cfg, &mut ())
    }
    .map_err(failure)?;

    let mut out = std::io::stdout().lock();
    let text = if args.json {
        json(&report.patterns)
    } else {
        table(&report)
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if let Some(path) = &args.chart {
        super::bench_chart::write(path, &report.patterns)
            .map_err(|e| Failure::Runtime(format!("--chart {}: {e}", path.display())))?;
    }
    Ok(())
}

/// The library config the flags ask for; the library checks the rest.
fn config(args: &Args) -> Result<BenchConfig, Failure> {
    let framing = super::parse_spec(&args.framing)?;
    let patterns = args
        .modes
        .iter()
        .map(|m| {
            m.trim()
                .parse::<Pattern>()
                .map_err(|e| Failure::Usage(format!("--modes: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let duration =
        parse_duration(&args.duration).map_err(|e| Failure::Usage(format!("--duration: {e}")))?;
    let mut cfg = BenchConfig::new(framing);
    cfg.target = args.target.as_deref().map(resolve).transpose()?;
    cfg.patterns = patterns;
    cfg.connections = args.connections;
    cfg.duration = duration;
    cfg.size = args.size;
    cfg.pool_size = args.pool_size;
    cfg.mux_connections = args.mux_connections;
    args.link.apply_to_bench(&mut cfg)?;
    Ok(cfg)
}

fn resolve(t: &str) -> Result<SocketAddr, Failure> {
    use std::net::ToSocketAddrs;
    t.to_socket_addrs()
        .map_err(|e| Failure::Usage(format!("--target {t}: {e}")))?
        .next()
        .ok_or_else(|| Failure::Usage(format!("--target {t}: resolves to no address")))
}

/// A bad config is a usage error (exit 2) named after its flag; the rest are runtime (exit 1).
fn failure(e: BenchError) -> Failure {
    let flag = match &e {
        BenchError::NoPatterns => "--modes: ",
        BenchError::NoConnections => "--connections: ",
        BenchError::ZeroDuration => "--duration: ",
        BenchError::SizeTooSmall { .. } | BenchError::SizeTooLarge { .. } => "--size: ",
        BenchError::Unframeable { .. } => "--framing: ",
        _ => "",
    };
    let mut msg = format!("{flag}{e}");
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(msg, ": {s}");
        source = s.source();
    }
    if e.is_config() {
        Failure::Usage(msg)
    } else {
        Failure::Runtime(msg)
    }
}

/// A progress bar per pattern, redrawn by indicatif's steady tick from the library's
/// counters: the time run so far against `duration`, and the requests answered.
struct Bars {
    duration: Duration,
    current: Option<ProgressBar>,
}

impl Bars {
    fn new(duration: Duration) -> Self {
        Bars {
            duration,
            current: None,
        }
    }
}

impl Observer for Bars {
    fn pattern_started(&mut self, pattern: Pattern, progress: &Arc<Progress>) {
        self.current = Some(progress_bar(pattern, self.duration, Arc::clone(progress)));
    }

    fn pattern_finished(&mut self, _: &PatternReport) {
        if let Some(pb) = self.current.take() {
            pb.finish_and_clear();
        }
    }
}

/// `short [==========>                   ] 1s 200ms of 3s  9120 requests, 7600/s`
fn progress_bar(pattern: Pattern, duration: Duration, progress: Arc<Progress>) -> ProgressBar {
    const WIDTH: usize = 30;
    let clock = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let done = state.elapsed().as_secs_f64() / duration.as_secs_f64().max(1e-9);
        let filled = ((done.min(1.0) * WIDTH as f64) as usize).min(WIDTH);
        let head = if filled < WIDTH { ">" } else { "" };
        let _ = write!(w, "{:=<filled$}{head:<rest$}", "", rest = WIDTH - filled);
    };
    let when = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        // Whole tenths of a second: humantime prints every unit it is given.
        let tenths = (state.elapsed().min(duration).as_millis() / 100) as u64;
        let shown = Duration::from_millis(tenths * 100);
        let _ = write!(
            w,
            "{} of {}",
            humantime::format_duration(shown),
            humantime::format_duration(duration)
        );
    };
    let requests = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let n = progress.requests.load(Ordering::Relaxed);
        let secs = state.elapsed().as_secs_f64().max(0.001);
        let _ = write!(w, "{n} requests, {:.0}/s", n as f64 / secs);
    };
    let style = ProgressStyle::with_template("{prefix:>6} [{clock}] {when}  {requests}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("clock", clock)
        .with_key("when", when)
        .with_key("requests", requests);
    let pb = ProgressBar::new_spinner().with_style(style);
    pb.set_prefix(pattern.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |n| n.to_string())
}

fn table(report: &BenchReport) -> String {
    let mut s = String::new();
    let on = report.target.map_or_else(
        || "an embedded keepwire server on 127.0.0.1".to_string(),
        |t| t.to_string(),
    );
    let _ = writeln!(s, "keepwire bench against {on}\n");
    let _ = writeln!(
        s,
        "{:<6} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>7}",
        "mode", "req/s", "p50_us", "p99_us", "max_us", "conns", "tw_client", "tw_server", "errors"
    );
    for r in &report.patterns {
        let _ = writeln!(
            s,
            "{:<6} {:>10.0} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>7}",
            r.pattern.as_str(),
            r.rps,
            r.p50_us,
            r.p99_us,
            r.max_us,
            r.connections_opened,
            opt(r.time_wait_client),
            opt(r.time_wait_server),
            r.errors
        );
    }
    s.push('\n');
    if let Some(pressure) = report.port_pressure() {
        let _ = writeln!(s, "short: {pressure}");
    }
    if let Some(conclusion) = report.conclusion() {
        let _ = writeln!(s, "conclusion: {conclusion}");
    }
    s
}

fn json(reports: &[PatternReport]) -> String {
    let arr: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            serde_json::json!({
                "mode": r.pattern.as_str(),
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
