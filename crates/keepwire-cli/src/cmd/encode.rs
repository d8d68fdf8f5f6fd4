//! `keepwire encode --framing SPEC [--hex] MESSAGE..|-`
//!
//! Writes the wire form of each message to stdout, raw bytes, in order. Messages are text with
//! escapes (`\n \r \t \\ \xNN`) or hex with `--hex`; `-` as the only message reads stdin, one
//! message a line (a trailing `\r\n` or `\n` ends the line and is not part of the message; an
//! empty line is an empty message). A literal `-` message is written `\x2d`.
//!
//! Exit codes and what has been written when it fails:
//!
//! - 2, nothing written: a bad spec, no messages, `-` mixed with other messages, a bad escape
//!   or hex digit in a command-line message (all of them are checked before anything is
//!   written), or more than one message under `eof` (it carries one message per stream).
//! - 2, earlier messages written: a bad escape or hex digit on a stdin line, or a second
//!   stdin line under `eof`.
//! - 1, earlier messages written: a message the framing cannot express (too long for the
//!   header, the wrong size for `fixed`, containing the delimiter, ...). Nothing of that
//!   message is written. Also a failure to read stdin or write stdout.
//!
//! A closed stdout (`| head -c 4`) ends the command quietly with exit 0.

use std::io::{self, BufRead, BufReader, Write};

use bytes::BytesMut;
use keepwire::frame::{FrameCodec, FramingSpec};

use super::Failure;

const EXAMPLES: &str = "\
Examples:
  # Two messages behind a 4-digit ASCII length: 0005hello0005world
  keepwire encode --framing len:ascii:4 hello world

  # A message given as hex, behind a 2-byte big-endian length, sent with nc
  keepwire encode --framing len:be:2 --hex 0800a238 | nc 127.0.0.1 7000

  # One message per stdin line, each ended by ETX
  printf 'one\\ntwo\\n' | keepwire encode --framing delim:0x03 - > wire.bin

  # A CMPP 3.0 SUBMIT from its text form (Sequence_Id 1 assigned), as hex
  keepwire encode --protocol cmpp3 'submit dest_terminal_id=13800138000 msg_content=hi' | xxd
";

/// Flags of `keepwire encode`.
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
    /// Messages are hex (either case; spaces and colons are ignored) instead of text with
    /// escapes.
    #[arg(long)]
    hex: bool,
    /// Messages to frame, as text with escapes (\n \r \t \\ \xNN) or hex with --hex; a lone -
    /// reads stdin, one message a line.
    #[arg(value_name = "MESSAGE")]
    messages: Vec<String>,
    #[command(flatten)]
    proto: super::protocol::ProtocolFlag,
}

/// Reads one message as given by the user: hex with `--hex`, else text with escapes.
///
/// # Errors
/// The escape or hex error, as a usage failure prefixed with `what` (e.g. `message 2`).
pub(crate) fn parse_message(s: &str, hex: bool, what: &str) -> Result<Vec<u8>, Failure> {
    let parsed = if hex {
        keepwire::text::from_hex(s)
    } else {
        keepwire::text::unescape(s)
    };
    parsed.map_err(|e| Failure::Usage(format!("{what}: {e}")))
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    if let Some(p) = args.proto.template()? {
        return super::protocol::encode(&*p, args.framing.as_deref(), &args.messages);
    }
    let spec = super::parse_spec(args.framing.as_deref().unwrap_or_default())?;
    let mut enc = Encoder::new(spec);
    let result = match args.messages.as_slice() {
        [] => Err(Failure::Usage(
            "no messages to encode; give them as arguments, or - to read stdin one message a line"
                .into(),
        )),
        [only] if only == "-" => enc.encode_stdin(args.hex),
        many if many.iter().any(|m| m == "-") => Err(Failure::Usage(
            "- (read messages from stdin) must be the only message; write a literal - as \\x2d"
                .into(),
        )),
        many => enc.encode_args(many, args.hex),
    };
    // Whatever happened, what was encoded so far goes out before the error is printed.
    let flushed = enc.flush();
    result.and(flushed)
}

/// Frames messages onto stdout, counting them (`eof` takes only one).
struct Encoder {
    codec: FrameCodec,
    wire: BytesMut,
    out: io::BufWriter<io::StdoutLock<'static>>,
    count: usize,
}

/// Whether stdout still takes output; a closed one ends the command quietly.
enum Written {
    Open,
    Closed,
}

impl Encoder {
    fn new(spec: FramingSpec) -> Self {
        Encoder {
            codec: FrameCodec::new(spec),
            wire: BytesMut::new(),
            out: io::BufWriter::new(io::stdout().lock()),
            count: 0,
        }
    }

    fn encode_args(&mut self, messages: &[String], hex: bool) -> Result<(), Failure> {
        // Check every message and the count before writing anything: a typo in the last
        // message should not leave half an output behind.
        let parsed = messages
            .iter()
            .enumerate()
            .map(|(i, m)| parse_message(m, hex, &format!("message {}", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        if self.codec.spec().is_until_close() && parsed.len() > 1 {
            return Err(Failure::Usage(format!(
                "eof framing carries one message per stream, got {}; give one message",
                parsed.len()
            )));
        }
        for (i, msg) in parsed.iter().enumerate() {
            if let Written::Closed = self.write(msg, &format!("message {}", i + 1))? {
                break;
            }
        }
        Ok(())
    }

    fn encode_stdin(&mut self, hex: bool) -> Result<(), Failure> {
        let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
        let mut line = Vec::new();
        let mut n = 0usize;
        loop {
            line.clear();
            let read = input
                .read_until(b'\n', &mut line)
                .map_err(|e| Failure::Runtime(format!("reading stdin: {e}")))?;
            if read == 0 {
                return Ok(());
            }
            n += 1;
            let what = format!("stdin line {n}");
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let text = std::str::from_utf8(text).map_err(|_| {
                Failure::Usage(format!(
                    "{what} is not UTF-8 text; write such bytes as \\xNN escapes or use --hex"
                ))
            })?;
            let msg = parse_message(text, hex, &what)?;
            if self.codec.spec().is_until_close() && self.count >= 1 {
                return Err(Failure::Usage(format!(
                    "{what}: eof framing carries one message per stream; give one line"
                )));
            }
            if let Written::Closed = self.write(&msg, &what)? {
                return Ok(());
            }
            // Each message goes out as soon as its line is read (a pipe into a live
            // connection sees it at once), but a burst of lines already read is written in
            // one go.
            if input.buffer().is_empty() {
                if let Written::Closed = self.flush_out()? {
                    return Ok(());
                }
            }
        }
    }

    /// Encodes one message and queues its bytes; nothing of it is queued if it cannot be
    /// encoded.
    fn write(&mut self, msg: &[u8], what: &str) -> Result<Written, Failure> {
        self.wire.clear();
        self.codec
            .encode_to(msg, &mut self.wire)
            .map_err(|e| Failure::Runtime(format!("{what}: {e}")))?;
        self.count += 1;
        match self.out.write_all(&self.wire) {
            Ok(()) => Ok(Written::Open),
            Err(e) => closed_or_failed(e),
        }
    }

    fn flush_out(&mut self) -> Result<Written, Failure> {
        match self.out.flush() {
            Ok(()) => Ok(Written::Open),
            Err(e) => closed_or_failed(e),
        }
    }

    fn flush(&mut self) -> Result<(), Failure> {
        self.flush_out().map(|_| ())
    }
}

/// A closed pipe ends the output quietly (as `yes | head` does); anything else is a failure.
fn closed_or_failed(e: io::Error) -> Result<Written, Failure> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(Written::Closed)
    } else {
        Err(Failure::Runtime(format!("writing to stdout: {e}")))
    }
}
