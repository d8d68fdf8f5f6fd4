//! One module per subcommand. Each has `Args` (clap) and `run(Args) -> Result<(), Failure>`.

pub(crate) mod bench;
pub(crate) mod bench_chart;
pub(crate) mod decode;
pub(crate) mod encode;
pub(crate) mod http;
pub(crate) mod iso8583;
pub(crate) mod protocol;
pub(crate) mod proxy;
pub(crate) mod send;
pub(crate) mod serve;
pub(crate) mod tls_args;
pub(crate) mod watch;

use std::process::ExitCode;

/// Why a subcommand failed, and so which exit code it gets.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad flags, spec or config: exit 2.
    Usage(String),
    /// The work itself failed (bad data, peer closed, timeout): exit 1.
    Runtime(String),
}

impl Failure {
    /// Prints the one-line message to stderr and gives the exit code.
    pub(crate) fn report(self) -> ExitCode {
        match self {
            Failure::Usage(msg) => {
                eprintln!("keepwire: {msg}");
                ExitCode::from(2)
            }
            Failure::Runtime(msg) => {
                eprintln!("keepwire: {msg}");
                ExitCode::from(1)
            }
        }
    }
}

/// Parses a framing spec given on the command line; a bad one is a usage error.
pub(crate) fn parse_spec(s: &str) -> Result<keepwire::frame::FramingSpec, Failure> {
    s.parse().map_err(|e| Failure::Usage(format!("{e}")))
}

/// The runtime of every command that serves (`serve`, `serve --protocol`, `proxy`). On one
/// CPU (a container limited to one, or `taskset` pinning the process to one) a current-thread
/// runtime: tokio's multi-thread scheduler would run a single
/// worker anyway, and pays for work-stealing queues, its wake-up protocol and a parked main
/// thread on every task it runs. With more CPUs, the multi-thread runtime, a worker each.
pub(crate) fn server_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the runtime: {e}")))
}
