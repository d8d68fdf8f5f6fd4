//! The closed-loop clients of each mode.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;
use tokio_util::codec::Decoder;

use super::body::Bodies;
use super::tally::Tally;
use super::{BenchConfig, Pattern, PatternReport};
use crate::client::{ByteRange, ClientBuilder, ClientError, MuxClient, Pool};
use crate::frame::FrameCodec;
use crate::tcpstate::{TcpState, port_states_now};

/// Live counters of a run, for progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests answered so far.
    pub requests: AtomicU64,
    /// Requests failed so far.
    pub errors: AtomicU64,
}

/// Shared by the workers of one run.
struct Run {
    cfg: BenchConfig,
    target: SocketAddr,
    stop_at: Instant,
    progress: Arc<Progress>,
    opened: AtomicU64,
    bodies: Bodies,
}

/// A framed TCP stream that carries one request at a time and checks that the reply echoes
/// it: the `short` and `long` workers' connection.
struct EchoStream {
    stream: super::link::Link,
    codec: FrameCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl EchoStream {
    async fn connect(run: &Run) -> io::Result<EchoStream> {
        let stream = super::link::Link::connect(&run.cfg, run.target).await?;
        run.opened.fetch_add(1, Ordering::Relaxed);
        Ok(EchoStream {
            stream,
            codec: FrameCodec::new(run.cfg.framing.clone()),
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::with_capacity(256),
        })
    }

    /// Sends `req` and waits for one frame; checks it echoes `req`.
    async fn exchange(&mut self, req: &[u8], timeout: Duration) -> io::Result<()> {
        self.wbuf.clear();
        self.codec
            .encode_to(req, &mut self.wbuf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let fut = async {
            self.stream.write_all(&self.wbuf).await?;
            loop {
                match self.codec.decode(&mut self.rbuf) {
                    Ok(Some(reply)) => {
                        return if reply[..] == req[..] {
                            Ok(())
                        } else {
                            Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "reply does not echo the request",
                            ))
                        };
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                    }
                }
                if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply in time"))?
    }
}

async fn short_worker(run: Arc<Run>, w: u64) -> Tally {
    let mut t = Tally::new();
    let mut seq = 0u64;
    while Instant::now() < run.stop_at {
        seq += 1;
        let req = run.bodies.body(run.cfg.size, Bodies::id(w, seq), seq ^ w);
        let start = Instant::now();
        let res = async {
            let mut stream = EchoStream::connect(&run).await?;
            stream.exchange(&req, run.cfg.request_timeout).await
            // Dropped here: the client closes first, so TIME_WAIT lands on the client.
        }
        .await;
        match res {
            Ok(()) => t.ok(&run.progress, start),
            Err(_) => {
                t.err(&run.progress);
                // Do not spin on a refusing target or exhausted ephemeral ports.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    t
}

async fn long_worker(run: Arc<Run>, w: u64) -> Tally {
    let mut t = Tally::new();
    let mut stream = None;
    let mut seq = 0u64;
    while Instant::now() < run.stop_at {
        if stream.is_none() {
            match EchoStream::connect(&run).await {
                Ok(s) => stream = Some(s),
                Err(_) => {
                    t.err(&run.progress);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        seq += 1;
        let req = run.bodies.body(run.cfg.size, Bodies::id(w, seq), seq ^ w);
        let start = Instant::now();
        match s.exchange(&req, run.cfg.request_timeout).await {
            Ok(()) => t.ok(&run.progress, start),
            Err(_) => {
                t.err(&run.progress);
                stream = None;
                // Do not reconnect at once: a target that accepts and closes would get a
                // connection per few µs, as a refusing one would without the pause above.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    t
}

/// What the pool and mux clients need from a client: one request, one reply.
trait Requester: Send + Sync + 'static {
    fn request(
        &self,
        frame: Bytes,
    ) -> impl std::future::Future<Output = Result<Bytes, ClientError>> + Send;
}

impl Requester for Pool {
    fn request(
        &self,
        frame: Bytes,
    ) -> impl std::future::Future<Output = Result<Bytes, ClientError>> + Send {
        Pool::request(self, frame)
    }
}

impl Requester for MuxClient {
    fn request(
        &self,
        frame: Bytes,
    ) -> impl std::future::Future<Output = Result<Bytes, ClientError>> + Send {
        MuxClient::request(self, frame)
    }
}

/// A closed-loop worker over one of keepwire's own clients (pool checkout, or mux matching
/// replies on the 8-byte request id): the bench measures the library as users get it.
async fn client_worker<C: Requester>(run: Arc<Run>, client: Arc<C>, w: u64) -> Tally {
    let mut t = Tally::new();
    let mut seq = 0u64;
    while Instant::now() < run.stop_at {
        seq += 1;
        let req = run.bodies.body(run.cfg.size, Bodies::id(w, seq), seq ^ w);
        let start = Instant::now();
        match client.request(req.clone()).await {
            Ok(reply) if reply == req => t.ok(&run.progress, start),
            Ok(_) => t.err(&run.progress),
            Err(_) => {
                t.err(&run.progress);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    t
}

fn builder(cfg: &BenchConfig, target: SocketAddr) -> ClientBuilder {
    let b = ClientBuilder::new(cfg.framing.clone(), [target.to_string()])
        .request_timeout(cfg.request_timeout)
        .connect_timeout(cfg.request_timeout);
    #[cfg(feature = "tls")]
    let b = match &cfg.tls {
        Some(tls) => b.tls(tls.clone()),
        None => b,
    };
    #[cfg(feature = "socks")]
    let b = match &cfg.socks5 {
        Some(s) => b.socks5(s.clone()),
        None => b,
    };
    b
}

/// Sockets in TIME_WAIT on `port`: on its local side (a server's) or its remote side (its
/// clients'). `None` where the kernel's table cannot be read.
pub(super) fn time_wait(port: u16, local_side: bool) -> Option<u64> {
    let ps = port_states_now(port).ok()?;
    let n = if local_side {
        ps.local_count(TcpState::TimeWait)
    } else {
        ps.remote_count(TcpState::TimeWait)
    };
    u64::try_from(n).ok()
}

/// TIME_WAIT sockets on both sides of a port before a pattern runs, so that what the pattern
/// itself left can be told apart from what earlier ones did.
pub(super) struct TimeWaitBaseline {
    port: u16,
    client: Option<u64>,
    server: Option<u64>,
}

impl TimeWaitBaseline {
    /// Counts both sides of `port` now.
    pub(super) fn take(port: u16) -> Self {
        TimeWaitBaseline {
            port,
            client: time_wait(port, false),
            server: time_wait(port, true),
        }
    }

    /// The TIME_WAIT sockets added since, client side and server side (`None` where a side
    /// cannot be read, and for the server side unless `server_visible`).
    pub(super) fn added(&self, server_visible: bool) -> (Option<u64>, Option<u64>) {
        let delta = |after: Option<u64>, before: Option<u64>| {
            after.zip(before).map(|(a, b)| a.saturating_sub(b))
        };
        let server = if server_visible {
            delta(time_wait(self.port, true), self.server)
        } else {
            None
        };
        (delta(time_wait(self.port, false), self.client), server)
    }
}

/// The workers of one pattern, and what to ask its library clients after the run.
struct Workers {
    tasks: JoinSet<Tally>,
    /// Connections opened by the library clients (pool, mux), read after the run.
    opened: Vec<Box<dyn Fn() -> u64 + Send>>,
}

/// The library clients a pattern's workers share.
enum SharedClients {
    /// None: `short` and `long` workers connect their own.
    Own,
    /// `pool`: one pool, or none when it could not start (then no worker runs, and the
    /// report shows no request).
    Pool(Option<Arc<Pool>>),
    /// `mux`: the connections that could be made.
    Mux(Vec<Arc<MuxClient>>),
}

/// Connects the clients `pattern`'s workers share. This comes before the pattern's clock
/// starts: `mux` connections are made one after the other, and with many of them, or a far
/// target, their setup would otherwise eat the duration (all of it, for 600 of them in
/// 100 ms: no request made, and the bench blamed the target).
async fn connect_shared(cfg: &BenchConfig, target: SocketAddr, pattern: Pattern) -> SharedClients {
    match pattern {
        Pattern::Short | Pattern::Long => SharedClients::Own,
        Pattern::Pool => {
            let size = u32::try_from(cfg.effective_pool_size()).unwrap_or(u32::MAX);
            let pool = builder(cfg, target)
                .checkout_timeout(cfg.request_timeout)
                .pool(size)
                .await;
            SharedClients::Pool(pool.ok().map(Arc::new))
        }
        Pattern::Mux => {
            let mut muxes = Vec::new();
            for _ in 0..cfg.mux_connections.max(1) {
                if let Ok(c) = builder(cfg, target).connect_mux(ByteRange::new(0, 8)).await {
                    muxes.push(Arc::new(c));
                }
            }
            SharedClients::Mux(muxes)
        }
    }
}

/// Spawns `cfg.connections` closed-loop workers of `pattern` onto `run`, over `shared`.
fn spawn_workers(run: &Arc<Run>, pattern: Pattern, shared: SharedClients) -> Workers {
    let n = run.cfg.connections.max(1) as u64;
    let mut tasks = JoinSet::new();
    let mut opened: Vec<Box<dyn Fn() -> u64 + Send>> = Vec::new();
    match shared {
        SharedClients::Own => {
            for w in 0..n {
                if pattern == Pattern::Short {
                    tasks.spawn(short_worker(Arc::clone(run), w));
                } else {
                    tasks.spawn(long_worker(Arc::clone(run), w));
                }
            }
        }
        SharedClients::Pool(None) => {}
        SharedClients::Pool(Some(pool)) => {
            for w in 0..n {
                tasks.spawn(client_worker(Arc::clone(run), Arc::clone(&pool), w));
            }
            opened.push(Box::new(move || u64::from(pool.connections().0)));
        }
        SharedClients::Mux(muxes) => {
            for w in 0..n {
                if let Some(c) = muxes.get(w as usize % muxes.len().max(1)) {
                    tasks.spawn(client_worker(Arc::clone(run), Arc::clone(c), w));
                }
            }
            opened.extend(
                muxes
                    .into_iter()
                    .map(|m| Box::new(move || m.stats().connects) as Box<dyn Fn() -> u64 + Send>),
            );
        }
    }
    Workers { tasks, opened }
}

/// Runs one pattern against `target` and reports. `server_visible` says whether the target's
/// own sockets are in this machine's TCP table (a local target), so server-side TIME_WAIT can
/// be counted.
///
/// # Cancel safety
/// Not cancel safe: dropping the future leaves worker tasks running until the run's end.
pub(super) async fn run_pattern(
    target: SocketAddr,
    server_visible: bool,
    cfg: &BenchConfig,
    pattern: Pattern,
    progress: Arc<Progress>,
) -> PatternReport {
    let baseline = TimeWaitBaseline::take(target.port());
    let shared = connect_shared(cfg, target, pattern).await;
    let started = Instant::now();
    let run = Arc::new(Run {
        cfg: cfg.clone(),
        target,
        stop_at: crate::deadline::after(started, cfg.duration),
        progress,
        opened: AtomicU64::new(0),
        bodies: Bodies::new(&cfg.framing),
    });
    let Workers {
        mut tasks,
        opened: clients,
    } = spawn_workers(&run, pattern, shared);
    let Tally { hist, ok, errors } = Tally::sum(&mut tasks).await;
    let elapsed = started.elapsed();
    // Connections the pattern still holds (pool, mux) close when `run` and the clients drop;
    // the client-side count is taken after, so it includes what closing them leaves.
    let opened = run.opened.load(Ordering::Relaxed) + clients.iter().map(|f| f()).sum::<u64>();
    drop((run, clients));
    tokio::task::yield_now().await;
    PatternReport::from_run(
        pattern,
        (ok, errors),
        &hist,
        elapsed,
        opened,
        baseline.added(server_visible),
    )
}
