//! `--protocol smpp|cmpp3|cmpp2|iso8583` on `serve`, `send`, `encode`, `decode` and `bench`: the
//! flags, and each command's protocol path over the library (`keepwire::protocol`, its
//! `drive` glue, `keepwire::bench::protocol`).
//!
//! A template sets the framing (`len:be:4:incl`), the heartbeat PDUs (enquire_link,
//! ACTIVE_TEST) and the correlation (sequence numbers); `--framing` and `--heartbeat` given
//! explicitly still win. Messages and frames printed are PDUs in text form, one a line.
//! The ISO 8583 flags (`--iso8583-spec`, `--respond`, `--sign-on`) are in `iso8583.rs`.

use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use keepwire::client::{ClientBuilder, MuxClient, ShortClient};
use keepwire::frame::{FrameCodec, FramingSpec};
use keepwire::liveness::{Heartbeat, HeartbeatSpec};
use keepwire::protocol::drive::{ClientSession, Sequence, SequenceKey, SimulatorService};
use keepwire::protocol::{Account, BindMode, Iso8583Session, Protocol, SimulatorConfig, Template};
use keepwire::server::{ServerSettings, ShutdownSignals};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use super::Failure;

/// `--protocol` alone (encode, bench).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct ProtocolFlag {
    /// A protocol template: smpp, cmpp3, cmpp2 or iso8583. Sets the framing, heartbeats and
    /// correlation; messages are PDUs in text form (`submit_sm short_message=hi`).
    #[arg(long, value_name = "smpp|cmpp3|cmpp2|iso8583")]
    pub(crate) protocol: Option<String>,
    /// With --protocol iso8583: the field table: ascii (default: ISO 8583:1987, bitmap as 16
    /// hex characters), binary (8-byte bitmap) or FILE.toml (your partner's table).
    #[arg(long, value_name = "ascii|binary|FILE.toml", requires = "protocol")]
    pub(crate) iso8583_spec: Option<String>,
}

impl ProtocolFlag {
    /// The template of `--protocol`, with `--iso8583-spec`.
    pub(crate) fn template(&self) -> Result<Option<Arc<dyn Protocol>>, Failure> {
        super::iso8583::protocol(self.protocol.as_deref(), self.iso8583_spec.as_deref(), &[])
    }
}

/// `--protocol` and `--account` (bench).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct BenchFlags {
    /// A protocol template: smpp, cmpp3, cmpp2 or iso8583: submit round trips (short = log in, submit,
    /// log out per message) against its embedded simulator or --target.
    #[arg(long, value_name = "smpp|cmpp3|cmpp2|iso8583")]
    pub(crate) protocol: Option<String>,
    /// With --protocol: the account every connection logs in with (default bench:bench,
    /// which the embedded simulator accepts).
    #[arg(long, value_name = "ID:SECRET", requires = "protocol")]
    pub(crate) account: Option<String>,
    /// With --protocol iso8583: the field table: ascii (default: ISO 8583:1987, bitmap as 16
    /// hex characters), binary (8-byte bitmap) or FILE.toml (your partner's table).
    #[arg(long, value_name = "ascii|binary|FILE.toml", requires = "protocol")]
    pub(crate) iso8583_spec: Option<String>,
    /// With --protocol iso8583: sign on (0800 / 70=001) on every connection, off before it
    /// closes.
    #[arg(long, requires = "protocol")]
    pub(crate) sign_on: bool,
}

/// `--protocol` and `--json` (decode).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct DecodeFlags {
    /// A protocol template: smpp, cmpp3, cmpp2 or iso8583. Frames print as PDUs in text form.
    #[arg(long, value_name = "smpp|cmpp3|cmpp2|iso8583")]
    pub(crate) protocol: Option<String>,
    /// With --protocol: one JSON object a PDU instead of the text form.
    #[arg(long, requires = "protocol")]
    pub(crate) json: bool,
    /// With --protocol iso8583: the field table: ascii (default: ISO 8583:1987, bitmap as 16
    /// hex characters), binary (8-byte bitmap) or FILE.toml (your partner's table).
    #[arg(long, value_name = "ascii|binary|FILE.toml", requires = "protocol")]
    pub(crate) iso8583_spec: Option<String>,
}

impl DecodeFlags {
    /// The template of `--protocol`, with `--iso8583-spec`.
    pub(crate) fn template(&self) -> Result<Option<Arc<dyn Protocol>>, Failure> {
        super::iso8583::protocol(self.protocol.as_deref(), self.iso8583_spec.as_deref(), &[])
    }
}

/// `--protocol`, `--account`, `--bind` (send).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct SendFlags {
    /// A protocol template: smpp, cmpp3, cmpp2 or iso8583 (see --account). Messages are PDUs in text
    /// form, their sequence numbers assigned; responses and the partner's PDUs print as text.
    #[arg(long, value_name = "smpp|cmpp3|cmpp2|iso8583")]
    pub(crate) protocol: Option<String>,
    /// With --protocol: log in as ID:SECRET first (SMPP bind, CMPP CONNECT) and out last.
    #[arg(long, value_name = "ID:SECRET", requires = "protocol")]
    pub(crate) account: Option<String>,
    /// With --protocol smpp: bind as transceiver (default), transmitter or receiver.
    #[arg(long, value_name = "trx|tx|rx", requires = "account")]
    pub(crate) bind: Option<String>,
    /// With --protocol iso8583: the field table: ascii (default: ISO 8583:1987, bitmap as 16
    /// hex characters), binary (8-byte bitmap) or FILE.toml (your partner's table).
    #[arg(long, value_name = "ascii|binary|FILE.toml", requires = "protocol")]
    pub(crate) iso8583_spec: Option<String>,
    /// With --protocol iso8583: sign on first (0800 / 70=001, answered by 0810 / 39=00) and
    /// off last (70=002). Requests without field 11 get STANs 000001, 000002, ...
    #[arg(long, requires = "protocol")]
    pub(crate) sign_on: bool,
}

impl SendFlags {
    /// The template of `--protocol`, with `--iso8583-spec`.
    pub(crate) fn template(&self) -> Result<Option<Arc<dyn Protocol>>, Failure> {
        super::iso8583::protocol(self.protocol.as_deref(), self.iso8583_spec.as_deref(), &[])
    }
}

/// `--protocol`, `--accounts`, `--receipts` (serve).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct ServeFlags {
    /// Run a partner simulator of this template (an SMSC for smpp, an ISMG for cmpp3 and
    /// cmpp2): logins, heartbeats, a response to every request. E.g. `keepwire serve
    /// --listen 127.0.0.1:2775 --protocol smpp --accounts accounts.txt --receipts`.
    #[arg(long, value_name = "smpp|cmpp3|cmpp2|iso8583")]
    pub(crate) protocol: Option<String>,
    /// With --protocol: accept only these logins, one ID:SECRET a line (# comments);
    /// default: every login.
    #[arg(long, value_name = "FILE", requires = "protocol")]
    pub(crate) accounts: Option<std::path::PathBuf>,
    /// With --protocol: send a delivery report after each submit's response.
    #[arg(long, requires = "protocol")]
    pub(crate) receipts: bool,
    /// With --protocol iso8583: the field table: ascii (default: ISO 8583:1987, bitmap as 16
    /// hex characters), binary (8-byte bitmap) or FILE.toml (your partner's table).
    #[arg(long, value_name = "ascii|binary|FILE.toml", requires = "protocol")]
    pub(crate) iso8583_spec: Option<String>,
    /// With --protocol iso8583: answer requests whose FIELD is VALUE with response code CODE
    /// (field 39) instead of 00, e.g. 4=000000009999:51 (an amount declined for insufficient
    /// funds). Repeatable; the first match wins.
    #[arg(long, value_name = "FIELD=VALUE:CODE", requires = "protocol")]
    pub(crate) respond: Vec<String>,
}

impl ServeFlags {
    /// The template of `--protocol`, with `--iso8583-spec` and `--respond`.
    pub(crate) fn template(&self) -> Result<Option<Arc<dyn Protocol>>, Failure> {
        super::iso8583::check_serve_flags(
            self.protocol.as_deref(),
            self.accounts.is_some(),
            self.receipts,
        )?;
        super::iso8583::protocol(
            self.protocol.as_deref(),
            self.iso8583_spec.as_deref(),
            &self.respond,
        )
    }
}

/// The template named by `--protocol`, if given.
pub(crate) fn template(name: Option<&str>) -> Result<Option<Arc<dyn Protocol>>, Failure> {
    let Some(name) = name else {
        return Ok(None);
    };
    let t: Template = name
        .parse()
        .map_err(|e| Failure::Usage(format!("--protocol: {e}")))?;
    Ok(Some(t.protocol()))
}

/// `--framing` when given, else the template's.
fn framing(p: &dyn Protocol, given: Option<&str>) -> Result<FramingSpec, Failure> {
    match given {
        Some(s) => super::parse_spec(s),
        None => Ok(p.framing()),
    }
}

/// A link's heartbeat frames, and the `--heartbeat` spec that was given.
type LinkHeartbeat = (Option<Arc<dyn Heartbeat>>, Option<HeartbeatSpec>);

/// The heartbeat frames and pings of a protocol link: the template's PDUs, unless
/// `--heartbeat` is `off` or gives its own `ping=`/`pong=` payloads; its interval, timeout
/// and misses turn pings on.
fn heartbeat(p: &dyn Protocol, given: Option<&str>) -> Result<LinkHeartbeat, Failure> {
    let Some(text) = given else {
        return Ok((Some(p.heartbeat()), None));
    };
    let spec: HeartbeatSpec = text
        .parse()
        .map_err(|e| Failure::Usage(format!("--heartbeat: {e:#}")))?;
    let own = text
        .split(',')
        .any(|kv| kv.starts_with("ping=") || kv.starts_with("pong="));
    let frames = if spec.is_off() || own {
        spec.heartbeat()
    } else {
        Some(p.heartbeat())
    };
    Ok((frames, Some(spec)))
}

// ---------------------------------------------------------------- encode / decode

/// `encode --protocol P`: each PDU line (arguments, or stdin with `-`) framed onto stdout,
/// sequence numbers 1, 2, ... where a line gives none.
pub(crate) fn encode(
    p: &dyn Protocol,
    framing_flag: Option<&str>,
    messages: &[String],
) -> Result<(), Failure> {
    let codec = FrameCodec::new(framing(p, framing_flag)?);
    let seq = Sequence::default();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut wire = BytesMut::new();
    let mut one = |line: &str, what: &str| -> Result<(), Failure> {
        let frame = p
            .encode_text(line, seq.next())
            .map_err(|e| Failure::Usage(format!("{what}: {e}")))?;
        wire.clear();
        codec
            .encode_to(&frame, &mut wire)
            .map_err(|e| Failure::Runtime(format!("{what}: {e}")))?;
        out.write_all(&wire)
            .map_err(|e| Failure::Runtime(format!("writing stdout: {e}")))
    };
    match messages {
        [] => {
            return Err(Failure::Usage(
                "no PDUs to encode; give them as arguments (submit_sm short_message=hi), or - \
                 to read stdin one a line"
                    .into(),
            ));
        }
        [only] if only == "-" => {
            for (i, line) in io::stdin().lock().lines().enumerate() {
                let line = line.map_err(|e| Failure::Runtime(format!("reading stdin: {e}")))?;
                if line.trim().is_empty() {
                    continue;
                }
                one(
                    line.trim_end_matches('\r'),
                    &format!("stdin line {}", i + 1),
                )?;
            }
        }
        many => {
            for (i, m) in many.iter().enumerate() {
                one(m, &format!("message {}", i + 1))?;
            }
        }
    }
    out.flush()
        .map_err(|e| Failure::Runtime(format!("writing stdout: {e}")))
}

/// `decode --protocol P [--json]`: every frame of FILE (or stdin) as one PDU line (or JSON
/// object). A frame that is no valid PDU ends the command with exit 1, naming the field.
pub(crate) fn decode(
    p: &dyn Protocol,
    framing_flag: Option<&str>,
    input: &str,
    json: bool,
) -> Result<(), Failure> {
    let spec = framing(p, framing_flag)?;
    let reader: Box<dyn Read> = if input == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(input)
                .map_err(|e| Failure::Runtime(format!("cannot open {input:?}: {e}")))?,
        )
    };
    let mut frames = keepwire::blocking::FrameReader::new(reader, spec);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut n = 0usize;
    loop {
        let frame = match frames.read_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                let _ = out.flush();
                return Err(Failure::Runtime(e.to_string()));
            }
        };
        n += 1;
        let line = match p.decode_text(&frame) {
            Ok(pdu) if json => pdu.to_json_with(|f| p.json_number(f)),
            Ok(pdu) => pdu.to_string(),
            Err(e) => {
                let _ = out.flush();
                return Err(Failure::Runtime(format!("pdu {n}: {e}")));
            }
        };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
    }
    out.flush()
        .map_err(|e| Failure::Runtime(format!("writing stdout: {e}")))
}

// ---------------------------------------------------------------- serve

/// Largest `--accounts FILE` read, bytes.
const MAX_ACCOUNTS_FILE: u64 = 1024 * 1024;

/// Reads `--accounts FILE`: one `ID:SECRET` a line; blank lines and lines starting with `#`
/// skipped (a `#` later in a line belongs to the secret). Each account must fit `p`'s login.
fn read_accounts(p: &dyn Protocol, path: &std::path::Path) -> Result<Vec<Account>, Failure> {
    let fail = |what: String| Failure::Usage(format!("--accounts {}: {what}", path.display()));
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_ACCOUNTS_FILE + 1).read_to_string(&mut text))
        .map_err(|e| fail(e.to_string()))?;
    if text.len() as u64 > MAX_ACCOUNTS_FILE {
        return Err(fail(format!(
            "larger than {MAX_ACCOUNTS_FILE} bytes; expected one ID:SECRET a line"
        )));
    }
    let mut accounts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let a: Account = line
            .parse()
            .map_err(|e| fail(format!("line {}: {e}", i + 1)))?;
        p.check_account(&a)
            .map_err(|e| fail(format!("line {}: {e}", i + 1)))?;
        accounts.push(a);
    }
    Ok(accounts)
}

/// `--account ID:SECRET` for `p`: parsed, and checked to fit its login (never cut).
pub(crate) fn parse_account(p: &dyn Protocol, text: &str) -> Result<Account, Failure> {
    let a: Account = text
        .parse()
        .map_err(|e| Failure::Usage(format!("--account: {e}")))?;
    p.check_account(&a)
        .map_err(|e| Failure::Usage(format!("--account: {e}")))?;
    Ok(a)
}

/// `serve --protocol P`: the template's framing and heartbeats under the other settings
/// (flags and `--config`), and its simulator as the handler.
pub(crate) fn serve(
    p: Arc<dyn Protocol>,
    flags: &ServeFlags,
    mut settings: ServerSettings,
) -> Result<(), Failure> {
    if settings.reply.is_some() {
        return Err(Failure::Usage(
            "--reply and --protocol: the simulator answers every PDU itself; drop --reply".into(),
        ));
    }
    let hb_text = settings.heartbeat.take();
    if settings.framing.is_none() {
        settings.framing = Some(p.framing().to_string());
    }
    let (frames, spec) = heartbeat(&*p, hb_text.as_deref())?;
    // The interval, timeout and misses still go through the settings' own checks.
    settings.heartbeat = spec.as_ref().and(hb_text);
    let mut setup = settings
        .build()
        .map_err(|e| Failure::Usage(format!("{e}")))?;
    setup.config.heartbeat = frames;
    setup
        .config
        .validate()
        .map_err(|e| Failure::Usage(format!("{e}")))?;
    let accounts = match &flags.accounts {
        Some(path) => Some(read_accounts(&*p, path)?),
        None => None,
    };
    let sim = SimulatorConfig {
        accounts,
        receipts: flags.receipts,
        next_message_id: Arc::new(AtomicU64::new(1)),
    };
    let service = SimulatorService::new(p, sim);
    let rt = super::server_runtime()?;
    rt.block_on(async move {
        tokio::spawn(serve_simulator(setup, service))
            .await
            .map_err(|e| Failure::Runtime(format!("server task failed: {e}")))?
    })
}

async fn serve_simulator(
    setup: keepwire::server::ServeSetup,
    service: SimulatorService,
) -> Result<(), Failure> {
    let server = keepwire::server::Server::bind(setup.listen.as_str(), setup.config)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let signals = ShutdownSignals::install()
        .map_err(|e| Failure::Runtime(format!("cannot install signal handlers: {e}")))?;
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "listening on {}", server.local_addr());
        let _ = out.flush();
    }
    let report = server
        .serve_until_signal(service, signals)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    eprintln!(
        "keepwire: shut down: connections open at the signal: {}, closed by force after the grace period: {}",
        report.open_at_shutdown, report.force_closed
    );
    Ok(())
}

// ---------------------------------------------------------------- send

/// What `send --protocol` needs of the other `send` flags.
pub(crate) struct SendCommon<'a> {
    pub(crate) to: &'a [String],
    pub(crate) framing: Option<&'a str>,
    pub(crate) mode: &'a str,
    pub(crate) timeout: Option<&'a str>,
    pub(crate) heartbeat: Option<&'a str>,
    pub(crate) messages: &'a [String],
}

enum Link {
    Mux(MuxClient),
    Short(ShortClient),
}

/// `send --protocol P [--account ID:SECRET]`: logs in, sends each PDU, prints each response
/// and each PDU the partner sends meanwhile, logs out.
pub(crate) fn send(p: Arc<dyn Protocol>, flags: &SendFlags, c: &SendCommon) -> Result<(), Failure> {
    let long = match c.mode {
        "long" => true,
        "short" => false,
        m => {
            return Err(Failure::Usage(format!(
                "--mode {m:?}: expected short or long"
            )));
        }
    };
    let stdin = match c.messages {
        [] => {
            return Err(Failure::Usage(
                "no PDUs to send; give them as arguments (submit_sm short_message=hi), or - to \
                 read stdin one a line"
                    .into(),
            ));
        }
        [only] => only == "-",
        _ => false,
    };
    super::iso8583::check_login_flags(&*p, flags.sign_on, flags.account.as_deref())?;
    let account = match &flags.account {
        Some(a) => Some(parse_account(&*p, a)?),
        None => None,
    };
    let bind = match &flags.bind {
        Some(b) => b
            .parse::<BindMode>()
            .map_err(|e| Failure::Usage(format!("--bind: {e}")))?,
        None => BindMode::default(),
    };
    let builder = send_builder(&*p, c)?;
    let session = account.map(|a| ClientSession::new(Arc::clone(&p), a, bind));
    // ISO 8583 always has a session: the partner's 0800s are answered, sign-on when asked.
    let iso = (p.template() == Template::Iso8583)
        .then(|| Iso8583Session::new(Arc::clone(&p), flags.sign_on));
    let hook = match (&session, &iso) {
        (Some(s), _) => Some(Arc::new(s.clone()) as Arc<dyn keepwire::client::SessionHook>),
        (None, Some(i)) => Some(Arc::new(i.clone()) as Arc<dyn keepwire::client::SessionHook>),
        (None, None) => None,
    };
    let builder = builder.session(hook);
    let seq = Arc::new(Sequence::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the runtime: {e}")))?;
    let result = rt.block_on(async move {
        let link = if long {
            let key = SequenceKey::new(Arc::clone(&p));
            Link::Mux(
                builder
                    .connect_mux(key)
                    .await
                    .map_err(|e| Failure::Runtime(e.to_string()))?,
            )
        } else {
            Link::Short(builder.build_short())
        };
        let watch = session.clone();
        let next = move || match (&session, &iso) {
            (Some(s), _) => s.next_sequence(),
            (None, Some(i)) => i.next_sequence(),
            (None, None) => seq.next(),
        };
        let mut s = Sender {
            p,
            link,
            next: Box::new(next),
            session: watch,
            warned: false,
        };
        s.run(stdin, c.messages).await
    });
    // Not a plain drop: that would wait for the blocking read of a stdin still open (a
    // session ended by a signal at a terminal). Everything else has been awaited.
    rt.shutdown_background();
    result
}

/// The client builder of `send --protocol`: endpoints, timeouts, framing and heartbeats.
pub(crate) fn send_builder(p: &dyn Protocol, c: &SendCommon) -> Result<ClientBuilder, Failure> {
    let framing = framing(p, c.framing)?;
    let timeout = match c.timeout {
        Some(t) => keepwire::socket::parse_duration(t)
            .map_err(|e| Failure::Usage(format!("--timeout: {e}")))?,
        None => Duration::from_secs(10),
    };
    if timeout.is_zero() {
        return Err(Failure::Usage("--timeout must be more than 0".into()));
    }
    let to: Vec<String> =
        c.to.iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    if to.is_empty() {
        return Err(Failure::Usage(
            "--to needs at least one ADDR (host:port)".into(),
        ));
    }
    let (frames, spec) = heartbeat(p, c.heartbeat)?;
    let builder = ClientBuilder::new(framing, to)
        .connect_timeout(timeout)
        .request_timeout(timeout)
        .login_timeout(timeout)
        .heartbeat_frames(frames)
        .ping(spec.and_then(|s| s.ping_config()));
    builder
        .validate_long()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(builder)
}

struct Sender {
    p: Arc<dyn Protocol>,
    link: Link,
    next: Box<dyn Fn() -> u32 + Send>,
    /// The session, to warn once when the partner did not authenticate itself.
    session: Option<ClientSession>,
    warned: bool,
}

impl Sender {
    async fn run(&mut self, stdin: bool, messages: &[String]) -> Result<(), Failure> {
        self.warn_unauthenticated();
        let mut unsolicited = match &self.link {
            Link::Mux(m) => m.unsolicited(),
            Link::Short(_) => None,
        };
        let result = if stdin {
            self.stdin(&mut unsolicited).await
        } else {
            let mut r = Ok(());
            for (i, m) in messages.iter().enumerate() {
                r = self
                    .one(m, &format!("message {}", i + 1), &mut unsolicited)
                    .await;
                if r.is_err() {
                    break;
                }
            }
            r
        };
        // Logout and close; PDUs that came meanwhile are printed before we return.
        if let Link::Mux(m) = &self.link {
            m.clone().close().await;
        }
        if let Some(rx) = unsolicited.as_mut() {
            while let Some(f) = rx.recv().await {
                self.print(&f);
            }
        }
        result
    }

    /// Encodes one PDU line, sends it, prints its response (and the partner's PDUs that
    /// arrive while it waits).
    async fn one(
        &mut self,
        line: &str,
        what: &str,
        unsolicited: &mut Option<mpsc::Receiver<Bytes>>,
    ) -> Result<(), Failure> {
        let frame = self
            .p
            .encode_text(line, (self.next)())
            .map_err(|e| Failure::Usage(format!("{what}: {e}")))?;
        let reply = match &self.link {
            Link::Short(c) => c.request(frame).await,
            Link::Mux(m) => {
                let req = m.request(frame);
                tokio::pin!(req);
                loop {
                    tokio::select! {
                        biased;
                        r = &mut req => break r,
                        Some(f) = recv(unsolicited) => self.print(&f),
                    }
                }
            }
        };
        self.warn_unauthenticated();
        let reply = reply.map_err(|e| Failure::Runtime(e.to_string()))?;
        self.print(&reply);
        Ok(())
    }

    /// One stderr line, once, when a login was accepted by a partner that did not
    /// authenticate itself (CMPP: AuthenticatorISMG all zero; docs/protocols.md).
    fn warn_unauthenticated(&mut self) {
        let unauthenticated = self
            .session
            .as_ref()
            .is_some_and(|s| s.unauthenticated_logins() > 0);
        if unauthenticated && !self.warned {
            self.warned = true;
            eprintln!(
                "keepwire: warning: the partner accepted the login without authenticating \
                 itself (AuthenticatorISMG all zero): it may not be the gateway you meant"
            );
        }
    }

    /// PDUs from stdin, one a line, until its end or SIGINT/SIGTERM: either ends the session
    /// the same way (the caller logs out and closes); a signal then exits 1.
    async fn stdin(
        &mut self,
        unsolicited: &mut Option<mpsc::Receiver<Bytes>>,
    ) -> Result<(), Failure> {
        let mut signals = keepwire::server::ShutdownSignals::install()
            .map_err(|e| Failure::Runtime(format!("cannot install signal handlers: {e}")))?;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut n = 0usize;
        loop {
            let line = tokio::select! {
                () = signals.recv() => {
                    return Err(Failure::Runtime(
                        "interrupted by a signal: logged out and closed before the end of stdin"
                            .into(),
                    ));
                }
                l = lines.next_line() => l.map_err(|e| Failure::Runtime(format!("reading stdin: {e}")))?,
                Some(f) = recv(unsolicited) => {
                    self.print(&f);
                    continue;
                }
            };
            let Some(line) = line else {
                return Ok(());
            };
            n += 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            self.one(line, &format!("stdin line {n}"), unsolicited)
                .await?;
        }
    }

    /// One frame as a PDU line on stdout (hex when it does not decode).
    fn print(&self, frame: &[u8]) {
        let line = match self.p.decode_text(frame) {
            Ok(pdu) => pdu.to_string(),
            Err(e) => format!("# undecodable ({e}): {}", keepwire::text::to_hex(frame)),
        };
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The next unsolicited frame, or never when there is no stream (or it ended).
async fn recv(rx: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match rx.as_mut() {
        Some(r) => match r.recv().await {
            Some(f) => Some(f),
            None => {
                *rx = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------- bench

/// `bench --protocol P`: the protocol bench over the other bench settings.
pub(crate) fn bench_config(
    flag: &BenchFlags,
    base: &keepwire::bench::BenchConfig,
) -> Result<Option<keepwire::bench::protocol::ProtocolBench>, Failure> {
    let Some(p) =
        super::iso8583::protocol(flag.protocol.as_deref(), flag.iso8583_spec.as_deref(), &[])?
    else {
        return Ok(None);
    };
    super::iso8583::check_login_flags(&*p, flag.sign_on, flag.account.as_deref())?;
    let mut b = keepwire::bench::protocol::ProtocolBench::new(p);
    b.sign_on = flag.sign_on;
    if let Some(a) = &flag.account {
        b.account = parse_account(&*b.protocol, a)?;
    }
    let max = keepwire::bench::protocol::MAX_CONNECTIONS;
    if base.connections > max {
        return Err(Failure::Usage(format!(
            "--connections {}: at most {max} with --protocol (each is a logged-in socket to \
             one port)",
            base.connections
        )));
    }
    let mut cfg = base.clone();
    cfg.framing = b.base.framing.clone();
    b.base = cfg;
    Ok(Some(b))
}

/// Runs the protocol bench when `--protocol` was given, else the echo bench.
pub(crate) fn bench_run(
    proto: Option<&keepwire::bench::protocol::ProtocolBench>,
    cfg: &keepwire::bench::BenchConfig,
    observer: &mut dyn keepwire::bench::Observer,
) -> Result<keepwire::bench::BenchReport, keepwire::bench::BenchError> {
    match proto {
        Some(p) => keepwire::bench::protocol::run_protocol(p, observer),
        None => keepwire::bench::run(cfg, observer),
    }
}
