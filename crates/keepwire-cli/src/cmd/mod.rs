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
