//! [`run`]: every pattern of a [`BenchConfig`] in turn, each against the target or a fresh
//! embedded server, on runtimes the bench builds and drops itself.

use std::net::SocketAddr;
use std::sync::Arc;

use super::embedded::EmbeddedServer;
use super::engine::{Progress, run_pattern};
use super::{BenchConfig, BenchError, BenchReport, Pattern, PatternReport, ephemeral_ports};

/// Told when each pattern starts and ends, to show progress; every method defaults to doing
/// nothing, and `()` is the observer that watches nothing.
pub trait Observer {
    /// `pattern` starts now and runs for [`BenchConfig::duration`]; `progress` counts its
    /// requests as they are answered.
    fn pattern_started(&mut self, pattern: Pattern, progress: &Arc<Progress>) {
        let _ = (pattern, progress);
    }

    /// A pattern ended (before [`run`] checks that it had any answer).
    fn pattern_finished(&mut self, report: &PatternReport) {
        let _ = report;
    }
}

impl Observer for () {}

/// Runs every pattern of `cfg`, in order, and reports.
///
/// Without [`BenchConfig::target`], each pattern gets a fresh keepwire echo server on
/// 127.0.0.1, on its own runtime threads (half the cores; the clients get the other half),
/// stopped and drained before the next pattern starts. With a target, the clients get every
/// core, and server-side TIME_WAIT is counted only when the target is on this machine.
///
/// This blocks the calling thread for about `patterns × duration`.
///
/// # Errors
/// A [`BenchError`]: [`is_config`](BenchError::is_config) before anything runs;
/// [`BenchError::InsideRuntime`] when called from a tokio runtime (it builds its own);
/// [`BenchError::Runtime`] or [`BenchError::EmbeddedServer`] when they cannot start;
/// [`BenchError::NoReply`] for the first pattern that had no correct reply at all.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use keepwire::bench::{self, BenchConfig, Pattern};
/// use keepwire::frame::FramingSpec;
///
/// let mut cfg = BenchConfig::new(FramingSpec::parse("len:be:4").unwrap());
/// cfg.patterns = vec![Pattern::Long];
/// cfg.connections = 2;
/// cfg.duration = Duration::from_millis(100);
/// let report = bench::run(&cfg, &mut ()).unwrap();
/// let long = report.get(Pattern::Long).unwrap();
/// assert!(long.requests > 0);
/// assert_eq!(long.connections_opened, 2);
/// ```
pub fn run(cfg: &BenchConfig, observer: &mut dyn Observer) -> Result<BenchReport, BenchError> {
    cfg.validate()?;
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(BenchError::InsideRuntime);
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server_threads = (cores / 2).max(1);
    let client_threads = if cfg.target.is_some() {
        cores
    } else {
        server_threads
    };
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    let patterns = run_patterns(cfg, observer, &client_rt, server_threads);
    // Waited for (bounded), not just dropped: a caller that benches and goes on must not be
    // left with `bench-client` threads still exiting when `run` returns.
    client_rt.shutdown_timeout(CLIENT_RT_SHUTDOWN);
    let patterns = patterns?;
    Ok(BenchReport {
        target: cfg.target,
        patterns,
        ephemeral_ports: ephemeral_ports(),
    })
}

/// How long `run` waits for its client runtime's threads to end.
const CLIENT_RT_SHUTDOWN: std::time::Duration = std::time::Duration::from_millis(500);

/// Every pattern of `cfg` in order, each against a fresh embedded server unless a target is
/// given.
fn run_patterns(
    cfg: &BenchConfig,
    observer: &mut dyn Observer,
    client_rt: &tokio::runtime::Runtime,
    server_threads: usize,
) -> Result<Vec<PatternReport>, BenchError> {
    let mut patterns = Vec::with_capacity(cfg.patterns.len());
    for &pattern in &cfg.patterns {
        // A fresh embedded server per pattern, so each pattern's TIME_WAIT sockets are its own.
        let (embedded, addr, visible) = match cfg.target {
            Some(target) => (None, target, is_local(target)),
            None => {
                let server = EmbeddedServer::start(cfg.framing.clone(), server_threads)?;
                let addr = server.addr();
                (Some(server), addr, true)
            }
        };
        let progress = Arc::new(Progress::default());
        observer.pattern_started(pattern, &progress);
        let report = if matches!(cfg.framing, crate::frame::FramingSpec::Http(_)) {
            client_rt.block_on(super::http::run_pattern(
                addr, visible, cfg, pattern, progress,
            ))
        } else {
            client_rt.block_on(run_pattern(addr, visible, cfg, pattern, progress))
        };
        observer.pattern_finished(&report);
        if let Some(server) = embedded {
            server.shutdown();
        }
        if report.requests == 0 {
            return Err(BenchError::NoReply {
                pattern,
                target: addr,
                errors: report.errors,
                framing: cfg.framing.to_string(),
            });
        }
        patterns.push(report);
    }
    Ok(patterns)
}

/// Whether `addr` is on this machine, so its server-side sockets show in our TCP table: a
/// loopback address, or one this machine can bind.
fn is_local(addr: SocketAddr) -> bool {
    addr.ip().is_loopback() || std::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::frame::FramingSpec;

    #[test]
    fn loopback_and_own_addresses_are_local_others_not() {
        assert!(is_local("127.0.0.1:7".parse().unwrap()));
        assert!(is_local("[::1]:7".parse().unwrap()));
        // TEST-NET-1 (RFC 5737): never assigned to a host.
        assert!(!is_local("192.0.2.1:7".parse().unwrap()));
    }

    #[derive(Default)]
    struct Seen(Vec<String>);

    impl Observer for Seen {
        fn pattern_started(&mut self, pattern: Pattern, _: &Arc<Progress>) {
            self.0.push(format!("start {pattern}"));
        }
        fn pattern_finished(&mut self, report: &PatternReport) {
            self.0.push(format!("end {}", report.pattern));
        }
    }

    fn quick() -> BenchConfig {
        let mut cfg = BenchConfig::new(FramingSpec::parse("len:be:4").unwrap());
        cfg.patterns = vec![Pattern::Short, Pattern::Long];
        cfg.connections = 2;
        cfg.duration = Duration::from_millis(100);
        cfg
    }

    #[test]
    fn runs_each_pattern_on_its_own_embedded_server_and_concludes() {
        let mut seen = Seen::default();
        let report = run(&quick(), &mut seen).unwrap();
        assert_eq!(
            seen.0,
            ["start short", "end short", "start long", "end long"]
        );
        assert_eq!(report.target, None);
        let long = report.get(Pattern::Long).unwrap();
        assert_eq!(long.connections_opened, 2);
        assert!(long.time_wait_server.is_some(), "embedded is local");
        assert!(report.conclusion().is_some());
    }

    #[test]
    fn a_target_that_answers_nothing_is_no_reply() {
        // A listener that accepts and never answers: every request times out.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cfg = quick();
        cfg.target = Some(silent.local_addr().unwrap());
        cfg.patterns = vec![Pattern::Long];
        cfg.request_timeout = Duration::from_millis(50);
        let e = run(&cfg, &mut ()).unwrap_err();
        assert!(e.is_no_reply(), "{e}");
        assert!(
            e.to_string()
                .starts_with("long: no request answered by 127.0.0.1:")
        );
    }

    #[test]
    fn a_bad_config_runs_nothing() {
        let mut cfg = quick();
        cfg.size = 4;
        let mut seen = Seen::default();
        assert!(run(&cfg, &mut seen).unwrap_err().is_config());
        assert!(seen.0.is_empty());
    }

    #[tokio::test]
    async fn refuses_to_run_inside_a_runtime() {
        let e = run(&quick(), &mut ()).unwrap_err();
        assert!(matches!(e, BenchError::InsideRuntime), "{e}");
    }
}
