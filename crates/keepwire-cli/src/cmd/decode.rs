//! `keepwire decode --framing SPEC [--hex] [FILE|-]`

use super::Failure;

/// Flags of `keepwire decode`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Framing spec, e.g. len:ascii:4, len:be:4:incl, delim:0x03, line, fixed:16, eof.
    #[arg(long, short = 'f', value_name = "SPEC")]
    framing: String,
    /// Print frames as lowercase hex instead of text with escapes.
    #[arg(long)]
    hex: bool,
    /// File to read, or - (the default) for stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    input: String,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let _ = (super::parse_spec(&args.framing)?, args.hex, args.input);
    Err(Failure::Runtime("decode: not implemented yet".into()))
}
