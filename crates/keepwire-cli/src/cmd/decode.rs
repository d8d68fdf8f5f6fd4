//! `keepwire decode --framing SPEC [--hex] [FILE|-]`
//!
//! Reads framed bytes from FILE (or stdin) and prints one frame a line: text with escapes
//! (`\n \r \t \\ \xNN`), or lowercase hex with `--hex`. The input is streamed through a
//! [`FrameReader`], so memory stays bounded by the spec's `max=` whatever the input's size,
//! and each frame is printed before decode waits for more input (a live stream piped in shows
//! its frames as they arrive).
//!
//! Exit codes:
//!
//! - 0: the input ended cleanly between frames (or stdout was closed early, `| head -1`).
//! - 1: bad data, e.g. `offset 9: truncated frame, 3 of 5 body bytes`; every frame before the
//!   bad one is printed (and flushed) first. Also: FILE cannot be opened or read.
//! - 2: a bad spec.

use std::fs::File;
use std::io::{self, Read, Write};

use keepwire::blocking::FrameReader;
use keepwire::frame::{FrameErrorKind, FramingSpec};

use super::Failure;

const EXAMPLES: &str = "\
Examples:
  # Split a capture of an ISO 8583 link into messages
  keepwire decode --framing len:ascii:4 capture.bin

  # Watch a live stream of CMPP PDUs as hex
  nc 127.0.0.1 7890 | keepwire decode --framing len:be:4:incl --hex

  # ISO 8583 messages with binary bitmaps behind a 2-byte length, as JSON
  keepwire decode --protocol iso8583 --iso8583-spec binary --framing len:be:2 --json cap.bin

  # SMPP PDUs captured off a link, as text (or --json)
  keepwire decode --protocol smpp capture.bin
";

/// Flags of `keepwire decode`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Framing spec, e.g. len:ascii:4, len:be:4:incl, delim:0x03, line, fixed:16, eof.
    #[arg(
        long,
        short = 'f',
        value_name = "SPEC",
        required_unless_present = "protocol"
    )]
    framing: Option<String>,
    /// Print frames as lowercase hex instead of text with escapes.
    #[arg(long)]
    hex: bool,
    /// File to read, or - (the default) for stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    input: String,
    #[command(flatten)]
    proto: super::protocol::DecodeFlags,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    if let Some(p) = args.proto.template()? {
        let framing = args.framing.as_deref();
        return super::protocol::decode(&*p, framing, &args.input, args.proto.json);
    }
    let spec = super::parse_spec(args.framing.as_deref().unwrap_or_default())?;
    if args.input == "-" {
        decode(io::stdin().lock(), "stdin", spec, args.hex)
    } else {
        let file = File::open(&args.input)
            .map_err(|e| Failure::Runtime(format!("cannot open {:?}: {e}", args.input)))?;
        decode(file, &format!("{:?}", args.input), spec, args.hex)
    }
}

/// Prints every frame of `input` on stdout, one a line.
fn decode(input: impl Read, name: &str, spec: FramingSpec, hex: bool) -> Result<(), Failure> {
    let mut frames = FrameReader::new(FlushFirst::new(input), spec);
    let mut line = String::new();
    let failure = loop {
        let frame = match frames.read_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break None,
            Err(e) => {
                if let Some(out) = frames.get_mut().out_error.take() {
                    // The read failed only because stdout did.
                    return closed_or_failed(out);
                }
                break Some(match e.kind() {
                    FrameErrorKind::Io(io) => Failure::Runtime(format!("reading {name}: {io}")),
                    _ => Failure::Runtime(e.to_string()),
                });
            }
        };
        line.clear();
        if hex {
            line.push_str(&keepwire::text::to_hex(&frame));
        } else {
            // Writing to a String cannot fail.
            let _ = keepwire::text::write_escaped(&mut line, &frame);
        }
        line.push('\n');
        if let Err(e) = frames.get_mut().out.write_all(line.as_bytes()) {
            return closed_or_failed(e);
        }
    };
    // The frames before a bad one are printed before the error is.
    if let Err(e) = frames.get_mut().out.flush() {
        closed_or_failed(e)?;
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// The input, which flushes stdout before every read: each frame is printed before decode
/// waits for more input, so `nc host port | keepwire decode ..` shows frames as they come,
/// while a file is still printed in large writes (one per read of the input, not per frame).
struct FlushFirst<R> {
    input: R,
    out: io::BufWriter<io::StdoutLock<'static>>,
    /// Why stdout failed, when a read failed because of it.
    out_error: Option<io::Error>,
}

impl<R> FlushFirst<R> {
    fn new(input: R) -> Self {
        FlushFirst {
            input,
            out: io::BufWriter::new(io::stdout().lock()),
            out_error: None,
        }
    }
}

impl<R: Read> Read for FlushFirst<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Err(e) = self.out.flush() {
            self.out_error = Some(e);
            return Err(io::Error::other("stdout failed"));
        }
        self.input.read(buf)
    }
}

/// A closed pipe (`| head -1`) ends the output quietly; anything else is a failure.
fn closed_or_failed(e: io::Error) -> Result<(), Failure> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(Failure::Runtime(format!("writing to stdout: {e}")))
    }
}
