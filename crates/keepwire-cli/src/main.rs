//! The `keepwire` binary: parses flags, builds library config, calls the library and maps the
//! outcome to an exit code (0 success, 1 runtime failure, 2 bad usage or config).

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Message-oriented TCP: framing, short and long connections, liveness, limits.
#[derive(Debug, Parser)]
#[command(name = "keepwire", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write messages framed by SPEC to stdout.
    Encode(cmd::encode::Args),
    /// Read framed bytes from FILE (or stdin) and print one frame a line.
    Decode(cmd::decode::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Encode(args) => cmd::encode::run(args),
        Command::Decode(args) => cmd::decode::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
