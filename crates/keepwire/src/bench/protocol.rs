//! `keepwire bench --protocol P`: submit/response round trips of a protocol template per
//! connection pattern, against the template's embedded simulator or a target partner.
//!
//! | pattern | what one request is |
//! |---|---|
//! | `short` | connect, log in, submit, its response, log out, close (as cmppy does) |
//! | `long` | a submit and its response on the worker's own logged-in connection |
//! | `pool` | a submit on a logged-in connection checked out of a shared pool |
//! | `mux` | a submit on one of a few logged-in connections shared by every worker, responses matched by sequence number |
//!
//! Every pattern uses the library's clients with a [`ClientSession`] (ISO 8583: an
//! [`Iso8583Session`], signing on only when [`ProtocolBench::sign_on`] says so, so `short` is
//! connect, 0200, 0210, close): the login, the heartbeats and the sequence numbers are the
//! ones `keepwire send --protocol` uses. A request counts as answered when a response with
//! its correlation key ([`Protocol::response_key`]: the sequence number; ISO 8583 the
//! response MTI, STAN and terminal id) came back and reports success
//! ([`Protocol::is_success`]: status 0, ISO 8583 field 39 = 00); a decline is an error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;

use super::embedded::EmbeddedServer;
use super::engine::{Progress, TimeWaitBaseline};
use super::tally::Tally;
use super::{BenchConfig, BenchError, BenchReport, Observer, Pattern, PatternReport};
use crate::client::SessionHook;
use crate::client::{ClientBuilder, ClientError, LongClient, MuxClient, Pool, ShortClient};
use crate::protocol::drive::{ClientSession, SequenceKey, SimulatorService, server_config};
use crate::protocol::{Account, BindMode, Iso8583Session, Protocol, SimulatorConfig, Template};

/// A protocol bench: the template, the account to log in with, the submit to send, and the
/// usual [`BenchConfig`] (its `framing` and `size` are the template's; the rest applies).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProtocolBench {
    /// The template.
    pub protocol: Arc<dyn Protocol>,
    /// Who logs in (the embedded simulator accepts every account).
    pub account: Account,
    /// The submit each request sends, in text form (the sequence number is assigned).
    pub submit: String,
    /// ISO 8583: sign on and off on every connection (default false: bank links often have
    /// no sign-on). SMPP and CMPP always log in.
    pub sign_on: bool,
    /// Patterns, clients, duration, target, pool and mux sizes, request timeout.
    pub base: BenchConfig,
}

impl ProtocolBench {
    /// A bench of `protocol`'s submit with the defaults of [`BenchConfig::new`].
    pub fn new(protocol: Arc<dyn Protocol>) -> Self {
        let submit = submit_line(&*protocol).to_string();
        let base = BenchConfig::new(protocol.framing());
        ProtocolBench {
            protocol,
            account: Account {
                id: "bench".into(),
                secret: "bench".into(),
            },
            submit,
            sign_on: false,
            base,
        }
    }
}

/// The submit a bench sends for `protocol`, in text form.
pub fn submit_line(protocol: &dyn Protocol) -> &'static str {
    match protocol.template() {
        crate::protocol::Template::Smpp => {
            "submit_sm source_addr=10086 destination_addr=13800138000 short_message=hello"
        }
        crate::protocol::Template::Iso8583 => {
            "0200 2=4111111111111111 3=000000 4=000000001000 41=TERM0001"
        }
        _ => "submit dest_terminal_id=13800138000 msg_content=hello",
    }
}

/// Runs every pattern of `cfg` in turn, each against a fresh embedded simulator (or the
/// target), and reports as [`run`](super::run) does.
///
/// # Errors
/// As [`run`](super::run); also [`BenchError::NoReply`] when the submit does not encode or
/// the login is refused (every request then fails).
///
/// # Examples
/// `keepwire bench --protocol cmpp3` calls it; see docs/protocols.md.
pub fn run_protocol(
    cfg: &ProtocolBench,
    observer: &mut dyn Observer,
) -> Result<BenchReport, BenchError> {
    if cfg.base.patterns.is_empty() {
        return Err(BenchError::NoPatterns);
    }
    if cfg.base.connections == 0 {
        return Err(BenchError::NoConnections);
    }
    if cfg.base.duration.is_zero() {
        return Err(BenchError::ZeroDuration);
    }
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(BenchError::InsideRuntime);
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server_threads = (cores / 2).max(1);
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    let mut patterns = Vec::with_capacity(cfg.base.patterns.len());
    let mut failed = None;
    for &pattern in &cfg.base.patterns {
        match one_pattern(cfg, observer, &client_rt, server_threads, pattern) {
            Ok(r) => patterns.push(r),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    client_rt.shutdown_timeout(Duration::from_millis(500));
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(BenchReport {
        target: cfg.base.target,
        patterns,
        ephemeral_ports: super::ephemeral_ports(),
    })
}

/// The most clients a protocol bench runs (`connections`): each long, pool or mux pattern
/// logs in its connections before the clock starts, and each is a socket from one address
/// to one port, so more than the ephemeral port range cannot be connected anyway.
/// `keepwire bench --protocol` refuses more.
pub const MAX_CONNECTIONS: usize = 65_536;

/// One pattern against a fresh simulator (or the target).
fn one_pattern(
    cfg: &ProtocolBench,
    observer: &mut dyn Observer,
    client_rt: &tokio::runtime::Runtime,
    server_threads: usize,
    pattern: Pattern,
) -> Result<PatternReport, BenchError> {
    let (embedded, addr) = match cfg.base.target {
        Some(t) => (None, t),
        None => {
            let sim = SimulatorService::new(Arc::clone(&cfg.protocol), SimulatorConfig::default());
            let server =
                EmbeddedServer::start_with(server_config(&*cfg.protocol), sim, server_threads)?;
            let addr = server.addr();
            (Some(server), addr)
        }
    };
    let progress = Arc::new(Progress::default());
    observer.pattern_started(pattern, &progress);
    let report = client_rt.block_on(run_pattern(cfg, addr, pattern, progress));
    observer.pattern_finished(&report);
    if let Some(server) = embedded {
        server.shutdown();
    }
    if report.requests == 0 {
        return Err(BenchError::NoReply {
            pattern,
            target: addr,
            errors: report.errors,
            framing: cfg.protocol.framing().to_string(),
        });
    }
    Ok(report)
}

/// The clients of one pattern.
enum Clients {
    Short(ShortClient),
    Long(Vec<LongClient>),
    Pool(Pool),
    Mux(Vec<MuxClient>),
}

impl Clients {
    async fn connect(
        b: ClientBuilder,
        cfg: &ProtocolBench,
        p: Pattern,
    ) -> Result<Self, ClientError> {
        let base = &cfg.base;
        Ok(match p {
            Pattern::Short => Clients::Short(b.build_short()),
            Pattern::Pool => {
                let size = u32::try_from(base.effective_pool_size()).unwrap_or(u32::MAX);
                Clients::Pool(b.pool(size).await?)
            }
            Pattern::Mux => {
                let mut all = Vec::new();
                for _ in 0..base.mux_connections.max(1) {
                    let key = SequenceKey::new(Arc::clone(&cfg.protocol));
                    all.push(b.clone().connect_mux(key).await?);
                }
                Clients::Mux(all)
            }
            _ => {
                let mut all = Vec::new();
                for _ in 0..base.connections {
                    all.push(b.clone().connect_long().await?);
                }
                Clients::Long(all)
            }
        })
    }

    async fn request(&self, w: usize, frame: Bytes) -> Result<Bytes, ClientError> {
        match self {
            Clients::Short(c) => c.request(frame).await,
            Clients::Pool(c) => c.request(frame).await,
            Clients::Long(all) => match all.get(w % all.len().max(1)) {
                Some(c) => c.request(frame).await,
                None => Err(ClientError::config("no long client")),
            },
            Clients::Mux(all) => match all.get(w % all.len().max(1)) {
                Some(c) => c.request(frame).await,
                None => Err(ClientError::config("no mux client")),
            },
        }
    }

    fn connects(&self) -> u64 {
        match self {
            Clients::Short(c) => c.stats().connects,
            Clients::Pool(c) => u64::from(c.connections().0),
            Clients::Long(all) => all.iter().map(|c| c.stats().connects).sum(),
            Clients::Mux(all) => all.iter().map(|c| c.stats().connects).sum(),
        }
    }

    async fn close(self) {
        match self {
            Clients::Long(all) => {
                for c in all {
                    c.close().await;
                }
            }
            Clients::Mux(all) => {
                for c in all {
                    c.close().await;
                }
            }
            Clients::Short(_) | Clients::Pool(_) => {}
        }
    }
}

async fn worker(
    clients: Arc<Clients>,
    session: Numbered,
    submit: Arc<str>,
    w: usize,
    stop_at: Instant,
    progress: Arc<Progress>,
) -> Tally {
    let mut t = Tally::new();
    let p = Arc::clone(&session.0);
    while Instant::now() < stop_at {
        let seq = (session.1)();
        let Ok(frame) = p.encode_text(&submit, seq) else {
            t.err(&progress);
            break;
        };
        let asked = p.request_key(&frame);
        let start = Instant::now();
        let answered = match clients.request(w, frame).await {
            Ok(r) => asked.is_some() && p.response_key(&r) == asked && p.is_success(&r),
            Err(_) => false,
        };
        t.record(&progress, answered, start, 1);
    }
    t
}

/// The template and the next sequence number of a bench's session.
type Numbered = (Arc<dyn Protocol>, Arc<dyn Fn() -> u32 + Send + Sync>);

/// The session of every connection of a pattern, and its numbering: a [`ClientSession`]
/// (SMPP, CMPP), an [`Iso8583Session`] (signing on only when asked).
fn session(cfg: &ProtocolBench) -> (Arc<dyn SessionHook>, Numbered) {
    let p = Arc::clone(&cfg.protocol);
    if p.template() == Template::Iso8583 {
        let s = Iso8583Session::new(Arc::clone(&p), cfg.sign_on);
        let n = s.clone();
        return (Arc::new(s), (p, Arc::new(move || n.next_sequence())));
    }
    let s = ClientSession::new(Arc::clone(&p), cfg.account.clone(), BindMode::Transceiver);
    let n = s.clone();
    (Arc::new(s), (p, Arc::new(move || n.next_sequence())))
}

async fn run_pattern(
    cfg: &ProtocolBench,
    target: SocketAddr,
    pattern: Pattern,
    progress: Arc<Progress>,
) -> PatternReport {
    let base = &cfg.base;
    let baseline = TimeWaitBaseline::take(target.port());
    // One session (one sequence series) for every connection of the pattern: numbers are
    // unique across them, so a mux connection never sees one twice in flight.
    let (hook, session) = session(cfg);
    let builder = ClientBuilder::new(cfg.protocol.framing(), [target.to_string()])
        .heartbeat_frames(Some(cfg.protocol.heartbeat()))
        .request_timeout(base.request_timeout)
        .connect_timeout(base.request_timeout)
        .session(Some(hook));
    let started = Instant::now();
    let clients = match Clients::connect(builder, cfg, pattern).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::warn!(error = %e, "bench: cannot connect");
            let failed = (0, base.connections as u64);
            let hist = &Tally::new().hist;
            return PatternReport::from_run(
                pattern,
                failed,
                hist,
                started.elapsed(),
                0,
                (None, None),
            );
        }
    };
    let stop_at = crate::deadline::after(started, base.duration);
    let submit: Arc<str> = Arc::from(cfg.submit.as_str());
    let mut tasks = JoinSet::new();
    for w in 0..base.connections {
        tasks.spawn(worker(
            Arc::clone(&clients),
            session.clone(),
            Arc::clone(&submit),
            w,
            stop_at,
            Arc::clone(&progress),
        ));
    }
    let Tally { hist, ok, errors } = Tally::sum(&mut tasks).await;
    let opened = clients.connects();
    if let Ok(c) = Arc::try_unwrap(clients) {
        c.close().await;
    }
    // The server side is counted whatever the target: a remote target's port has no local
    // TIME_WAIT sockets, so its count stays 0.
    PatternReport::from_run(
        pattern,
        (ok, errors),
        &hist,
        started.elapsed(),
        opened,
        baseline.added(true),
    )
}
