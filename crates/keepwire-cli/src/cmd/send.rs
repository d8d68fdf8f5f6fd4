//! `keepwire send`: send messages to a framed server and print the replies.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use keepwire::client::{ClientBuilder, ClientError, EndpointStatus, LongClient, ShortClient};
use keepwire::liveness::HeartbeatSpec;
use keepwire::socket::parse_duration;
use tokio::io::AsyncBufReadExt;

use super::Failure;
use super::encode::parse_message;

const EXAMPLES: &str = "\
Examples:
  # Two messages on one connection, 4-digit ASCII length; 7001 first, 7000 if it fails
  keepwire send --to 127.0.0.1:7001,127.0.0.1:7000 --framing len:ascii:4 0800 '0200\\x00'

  # HTTP: two requests on one kept-alive connection, status line and body printed
  # (--raw: each message is a whole request, text with escapes)
  keepwire send --to 127.0.0.1:8080 --framing http 'GET /' 'GET /x Connection: close'

  # One message a line from stdin, the connection confirmed and kept alive by heartbeats
  printf 'ping\\nhello\\n' | keepwire send --to 127.0.0.1:7000 --framing line \\
      --heartbeat interval=5s,timeout=2s,misses=3 -

  # Bind to an SMSC, submit, print the response and the receipt as text, unbind
  keepwire send --protocol smpp --to 127.0.0.1:2775 --account smppclient:secret \\
      'submit_sm source_addr=10086 destination_addr=13800138000 short_message=hello'
";

/// Flags of `keepwire send`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Endpoints in order of preference; the next is tried when one fails.
    #[arg(
        long,
        value_name = "ADDR[,ADDR..]",
        value_delimiter = ',',
        required = true
    )]
    to: Vec<String>,
    /// Framing spec, e.g. len:ascii:4, len:be:4:incl, delim:0x03, line, fixed:16, eof, http.
    #[arg(
        long,
        short = 'f',
        value_name = "SPEC",
        required_unless_present = "protocol"
    )]
    framing: Option<String>,
    /// long (default): one connection for all messages; short: a connection per message.
    #[arg(long, value_name = "short|long", default_value = "long")]
    mode: String,
    /// Time allowed for each connect and for each reply (default 10s).
    #[arg(long, value_name = "DUR")]
    timeout: Option<String>,
    /// Messages and replies are lowercase hex.
    #[arg(long, conflicts_with = "text")]
    hex: bool,
    /// Messages and replies are text with escapes (the default).
    #[arg(long)]
    text: bool,
    /// interval=DUR,timeout=DUR,misses=N[,ping=..][,pong=..]: confirm each connection with
    /// a heartbeat (skipping endpoints that accept but do not answer) and keep a long
    /// connection alive; or off.
    #[arg(long, value_name = "SPEC|off")]
    heartbeat: Option<String>,
    /// --framing http: each MESSAGE is a whole request (text with escapes) instead of a
    /// `METHOD PATH [Name: value]..` line.
    #[arg(long)]
    raw: bool,
    /// Messages to send (text with escapes, or hex with --hex); a lone - reads stdin, one
    /// message a line, each sent as it arrives.
    #[arg(value_name = "MESSAGE")]
    messages: Vec<String>,
    #[command(flatten)]
    proto: super::protocol::SendFlags,
    #[command(flatten)]
    link: super::tls_args::ClientTlsArgs,
}

enum Client {
    Long(LongClient),
    Short(ShortClient),
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    if let Some(p) = args.proto.template()? {
        return super::protocol::send(
            p,
            &args.proto,
            &super::protocol::SendCommon {
                to: &args.to,
                framing: args.framing.as_deref(),
                mode: &args.mode,
                timeout: args.timeout.as_deref(),
                heartbeat: args.heartbeat.as_deref(),
                messages: &args.messages,
            },
        );
    }
    // Flags are checked in the order they matter: where to, how, what, then heartbeats.
    let framing = args.framing.as_deref().unwrap_or_default();
    if args.raw || framing.split(':').next() == Some("http") {
        return super::http::send(&super::http::SendArgs {
            to: &args.to,
            framing,
            timeout: timeout(&args)?,
            raw: args.raw,
            messages: &args.messages,
        });
    }
    let builder = args.link.apply_to_client(base_builder(&args)?)?;
    let long = match args.mode.as_str() {
        "long" => true,
        "short" => false,
        m => {
            return Err(Failure::Usage(format!(
                "--mode {m:?}: expected short or long"
            )));
        }
    };
    let messages = messages(&args)?;
    let builder = with_heartbeat(builder, &args, long)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let client = if long {
            let c = builder
                .connect_long()
                .await
                .map_err(|e| Failure::Runtime(e.to_string()))?;
            let answered = c.current_endpoint().unwrap_or_default();
            report_endpoints(&answered, &c.endpoints());
            Client::Long(c)
        } else {
            Client::Short(builder.build_short())
        };
        let mut sender = Sender {
            client,
            hex: args.hex,
            last: None,
        };
        match messages {
            None => sender.stdin().await,
            Some(messages) => {
                for m in messages {
                    sender.send(m).await?;
                }
                Ok(())
            }
        }
    })
}

/// The library's client configuration from `--framing`, `--to` and `--timeout`.
fn base_builder(args: &Args) -> Result<ClientBuilder, Failure> {
    client_builder(
        &args.to,
        args.framing.as_deref().unwrap_or_default(),
        args.timeout.as_deref(),
        "--to",
    )
}

/// A client of `framing` to the endpoints `to` (named `flag` in errors), `timeout` for each
/// connect and reply; `send` and `proxy` (upstream) share it.
pub(crate) fn client_builder(
    to: &[String],
    framing: &str,
    timeout: Option<&str>,
    flag: &str,
) -> Result<ClientBuilder, Failure> {
    let framing = super::parse_spec(framing)?;
    let timeout = parse_timeout(timeout)?;
    let to: Vec<String> = to
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if to.is_empty() {
        return Err(Failure::Usage(format!(
            "{flag} needs at least one ADDR (host:port)"
        )));
    }
    Ok(ClientBuilder::new(framing, to)
        .connect_timeout(timeout)
        .request_timeout(timeout))
}

/// `--timeout`, 10s when not given; zero is a usage error.
fn timeout(args: &Args) -> Result<Duration, Failure> {
    parse_timeout(args.timeout.as_deref())
}

/// `--timeout` as given, 10s when not; zero is a usage error.
pub(crate) fn parse_timeout(given: Option<&str>) -> Result<Duration, Failure> {
    let timeout = match given {
        Some(t) => parse_duration(t).map_err(|e| Failure::Usage(format!("--timeout: {e}")))?,
        None => Duration::from_secs(10),
    };
    if timeout.is_zero() {
        return Err(Failure::Usage("--timeout must be more than 0".into()));
    }
    Ok(timeout)
}

/// `--heartbeat` added to `builder`, checked by the library: its rules are usage errors
/// here, as in `serve` (exit 2 before connecting).
fn with_heartbeat(
    builder: ClientBuilder,
    args: &Args,
    long: bool,
) -> Result<ClientBuilder, Failure> {
    heartbeat_builder(builder, args.heartbeat.as_deref(), long)
}

/// `--heartbeat` (as given) added to `builder` and checked; `send` and `proxy` share it.
pub(crate) fn heartbeat_builder(
    mut builder: ClientBuilder,
    heartbeat: Option<&str>,
    long: bool,
) -> Result<ClientBuilder, Failure> {
    if let Some(hb) = heartbeat {
        let hb: HeartbeatSpec = hb
            .parse()
            .map_err(|e| Failure::Usage(format!("--heartbeat: {e:#}")))?;
        let probe = hb.ping_config().is_some();
        // A short client never idles: there the ping timeout only bounds the probe.
        builder = builder.heartbeat(hb).probe_on_connect(probe);
    }
    // A heartbeat the framing cannot carry (`--framing fixed:4 --heartbeat interval=..`):
    builder.validate().map_err(|e| {
        Failure::Usage(match heartbeat {
            Some(_) => format!("--heartbeat: {e}"),
            None => e.to_string(),
        })
    })?;
    // and what a long connection needs (eof framing ends a message at the close):
    if long {
        builder
            .validate_long()
            .map_err(|e| Failure::Usage(e.to_string()))?;
    }
    Ok(builder)
}

/// The messages given as arguments, or `None` for a lone `-` (one a line from stdin).
fn messages(args: &Args) -> Result<Option<Vec<Vec<u8>>>, Failure> {
    match args.messages.as_slice() {
        [] => Err(Failure::Usage(
            "no messages to send; give them as arguments, or - to read stdin one message a line"
                .into(),
        )),
        [only] if only == "-" => Ok(None),
        many if many.iter().any(|m| m == "-") => Err(Failure::Usage(
            "- (read messages from stdin) must be the only message; write a literal - as \\x2d"
                .into(),
        )),
        many => many
            .iter()
            .enumerate()
            .map(|(i, m)| parse_message(m, args.hex, &format!("message {}", i + 1)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

/// Tells stderr which endpoint answered and which were skipped, and why.
fn report_endpoints(answered: &str, status: &[EndpointStatus]) {
    for s in status {
        if s.endpoint == answered {
            continue;
        }
        if let Some(why) = &s.last_error {
            eprintln!("keepwire: skipped {}: {why}", s.endpoint);
        }
    }
    eprintln!("keepwire: connected to {answered}");
}

/// A failed request: exit 1, except a message refused as this link's heartbeat frame,
/// which is a usage error (exit 2): the fix is a flag (`--heartbeat off`), not a retry.
fn failure(e: ClientError) -> Failure {
    if e.is_heartbeat_frame() {
        Failure::Usage(e.to_string())
    } else {
        Failure::Runtime(e.to_string())
    }
}

struct Sender {
    client: Client,
    hex: bool,
    /// The endpoint that answered last, to report changes.
    last: Option<String>,
}

impl Sender {
    async fn send(&mut self, msg: Vec<u8>) -> Result<(), Failure> {
        let frame = Bytes::from(msg);
        let (reply, via) = match &self.client {
            Client::Long(c) => {
                let r = c.request(frame).await.map_err(failure)?;
                let via = c.current_endpoint().unwrap_or_default();
                if self.last.as_ref().is_some_and(|l| *l != via) {
                    report_endpoints(&via, &c.endpoints());
                }
                (r, via)
            }
            Client::Short(c) => {
                let (r, via) = c.request_via(frame).await.map_err(failure)?;
                if self.last.as_ref() != Some(&via) {
                    report_endpoints(&via, &c.endpoints());
                }
                (r, via)
            }
        };
        self.last = Some(via);
        let line = if self.hex {
            keepwire::text::to_hex(&reply)
        } else {
            keepwire::text::escape(&reply)
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| Failure::Runtime(format!("writing stdout: {e}")))
    }

    /// One message a line, each sent as soon as it is read; a long connection stays open
    /// (and kept alive by heartbeats) in between.
    async fn stdin(&mut self) -> Result<(), Failure> {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).split(b'\n');
        let mut n = 0usize;
        while let Some(line) = lines
            .next_segment()
            .await
            .map_err(|e| Failure::Runtime(format!("reading stdin: {e}")))?
        {
            n += 1;
            let what = format!("stdin line {n}");
            let text = line.strip_suffix(b"\r").unwrap_or(&line);
            let text = std::str::from_utf8(text).map_err(|_| {
                Failure::Usage(format!(
                    "{what} is not UTF-8 text; write such bytes as \\xNN escapes or use --hex"
                ))
            })?;
            let msg = parse_message(text, self.hex, &what)?;
            self.send(msg).await?;
        }
        Ok(())
    }
}
