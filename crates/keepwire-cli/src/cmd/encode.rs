//! `keepwire encode --framing SPEC [--hex] MESSAGE..`

use super::Failure;

/// Flags of `keepwire encode`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Framing spec, e.g. len:ascii:4, len:be:4:incl, delim:0x03, line, fixed:16, eof.
    #[arg(long, short = 'f', value_name = "SPEC")]
    framing: String,
    /// Messages are lowercase hex instead of text with escapes.
    #[arg(long)]
    hex: bool,
    /// Messages to frame, as text with escapes (\n \r \t \\ \xNN) or hex with --hex.
    #[arg(value_name = "MESSAGE")]
    messages: Vec<String>,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let _ = (super::parse_spec(&args.framing)?, args.hex, args.messages);
    Err(Failure::Runtime("encode: not implemented yet".into()))
}
