//! The `keepwire` binary: parses flags, builds library config, calls the library and maps the
//! outcome to an exit code (0 success, 1 runtime failure, 2 bad usage or config).

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc. Every connection costs two 128-byte-aligned blocks
/// (tokio's task and its socket registration), which glibc serves through `memalign`'s slow
/// path (about 800 instructions each, callgrind), and a dozen small ones: with mimalloc,
/// `serve` runs a short connection in 18 % fewer user-space instructions.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Message-oriented TCP: framing, short and long connections, liveness, limits.
#[derive(Debug, Parser)]
#[command(name = "keepwire", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure short, long, pooled and multiplexed connections on an embedded server or a target.
    Bench(cmd::bench::Args),
    /// Write messages framed by SPEC to stdout.
    Encode(cmd::encode::Args),
    /// Read framed bytes from FILE (or stdin) and print one frame a line.
    Decode(cmd::decode::Args),
    /// Run a framed server that echoes or answers with a fixed reply.
    Serve(Box<cmd::serve::Args>),
    /// Forward short or long clients' messages over pooled or multiplexed upstream connections.
    Proxy(Box<cmd::proxy::Args>),
    /// Send messages to a framed server and print each reply, one per line.
    Send(cmd::send::Args),
    /// Show the kernel's TCP states (TIME_WAIT, CLOSE_WAIT, ...) for a port.
    Watch(cmd::watch::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr, filtered by RUST_LOG (default: warnings); never to stdout. The
    // client library's warnings (endpoint skipped, ...) are what `send` reports itself in
    // plain words, so by default they are not logged twice.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,keepwire::client=error")
            }),
        )
        .init();
    let result = match cli.command {
        Command::Bench(args) => cmd::bench::run(args),
        Command::Encode(args) => cmd::encode::run(args),
        Command::Decode(args) => cmd::decode::run(args),
        Command::Serve(args) => cmd::serve::run(*args),
        Command::Proxy(args) => cmd::proxy::run(*args),
        Command::Send(args) => cmd::send::run(args),
        Command::Watch(args) => cmd::watch::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
