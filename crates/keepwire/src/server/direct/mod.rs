//! The direct engine: one event loop per thread over the connections it owns, for servers
//! that answer with a [`Reply`] (echo or fixed bytes).
//!
//! The default engine ([`Server::serve`]) runs a tokio task per connection: a task cell, an
//! I/O registration and a timer per connection, a waker and a scheduler turn per event.
//! That is the price of running any async handler. A server whose answer is known without
//! waiting (`keepwire serve --reply ...`, a simulator, a load-test target) needs none of it:
//! here each thread holds its connections in one slab, waits on one `epoll` (through mio)
//! and keeps one timer heap, and a request is `recv`, decode, encode, `send`, as in a C
//! event loop. The same pieces as the default engine decide what happens to each frame
//! (the codec, the heartbeat and liveness steps of `pipeline`, the limits, the counters),
//! so the wire behaviour is the same.
//!
//! ```text
//! thread 1..N (one per CPU the process may run on):
//!   epoll_wait ─▶ listener: accept4 until empty ─▶ limits ─▶ slab + register
//!              ├▶ connection: recv ─▶ decode ─▶ heartbeat/liveness ─▶ reply ─▶ send
//!              ├▶ timers due: pings, idle and slow-frame closes, write timeouts, lingers
//!              └▶ waker: drain (stop accepting, answer what came, FIN) or force-close
//! ```
//!
//! Not supported here (refused with [`ConfigError::NotDirect`]): TLS, the PROXY protocol,
//! `http` framing, a reply delay, and handlers of your own: those need the default engine.

mod conn;
mod timers;
mod worker;

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;

use super::{ConfigError, Reply, Server, ServerConfig, ServerError, ShutdownReport};
use crate::frame::FramingSpec;
use conn::Answerer;

/// The engine's state, as workers see it.
const RUN: u8 = 0;
/// Stop accepting, answer what came, close.
const DRAIN: u8 = 1;
/// Close everything now.
const FORCE: u8 = 2;

/// What the server tells its workers: the state and a waker for each.
#[derive(Debug)]
struct Control {
    state: AtomicU8,
    wakers: Vec<mio::Waker>,
}

impl Control {
    /// Moves every worker to `state` and wakes them.
    fn set(&self, state: u8) {
        self.state.fetch_max(state, Ordering::AcqRel);
        for w in &self.wakers {
            // A worker that has ended has nothing to be told.
            let _ = w.wake();
        }
    }

    fn get(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }
}

/// Refuses the settings this engine does not implement, naming the first.
pub(super) fn check(config: &ServerConfig) -> Result<(), ConfigError> {
    let key = if matches!(config.framing, FramingSpec::Http(_)) {
        "framing"
    } else if config.proxy_protocol {
        "proxy-protocol"
    } else if config.reply_delay.is_some() {
        "delay"
    } else if tls_on(config) {
        "tls"
    } else {
        return Ok(());
    };
    Err(ConfigError::NotDirect { key })
}

#[cfg(feature = "tls")]
fn tls_on(config: &ServerConfig) -> bool {
    config.tls.is_some()
}

#[cfg(not(feature = "tls"))]
fn tls_on(_: &ServerConfig) -> bool {
    false
}

/// Threads to run: one per CPU this process may run on (its affinity mask and cgroup
/// quota, as `std` reads them), at least one.
fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl Server {
    /// Serves `reply` to every request on the direct engine (see the [module
    /// docs](crate::server)): an event loop per CPU, no task per connection. Until the
    /// shutdown token is cancelled, then drains as [`serve`](Self::serve) does: the port
    /// refuses, requests already sent (in the backlog or in the socket) are answered, idle
    /// connections get a FIN, and whatever is still open after `shutdown_grace` is closed.
    ///
    /// Frames, heartbeats, liveness, limits, socket options, counters and the Prometheus
    /// exporter behave as under `serve`.
    ///
    /// ```
    /// use keepwire::server::{Reply, Server, ServerConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Server::bind("127.0.0.1:0", ServerConfig::new("len:be:2".parse()?)).await?;
    /// let addr = server.local_addr();
    /// let stop = server.shutdown_token();
    /// let task = tokio::spawn(server.serve_direct(Reply::Echo));
    ///
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// let mut c = tokio::net::TcpStream::connect(addr).await?;
    /// c.write_all(b"\x00\x02hi").await?;
    /// let mut back = [0u8; 4];
    /// c.read_exact(&mut back).await?;
    /// assert_eq!(&back, b"\x00\x02hi");
    ///
    /// stop.cancel();
    /// assert_eq!(task.await??.force_closed, 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ServerError::Config`] with [`ConfigError::NotDirect`] for a setting this engine
    /// does not implement (TLS, PROXY protocol, `http` framing, a reply delay);
    /// [`ServerError::Engine`] when an event loop cannot start or fails.
    ///
    /// # Cancel safety
    /// Dropping the future stops the engine: its threads close the listener and every
    /// connection at once and end. Cancel the shutdown token instead for a graceful stop.
    pub async fn serve_direct(self, reply: Reply) -> Result<ShutdownReport, ServerError> {
        self.serve_direct_inner(reply, std::future::pending()).await
    }

    /// [`serve_direct`](Self::serve_direct), with a drain that `interrupt` cuts short.
    pub(super) async fn serve_direct_inner(
        self,
        reply: Reply,
        interrupt: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, ServerError> {
        let cfg = &self.shared.config;
        check(cfg)?;
        let answer = match reply {
            Reply::Echo => Answerer::Echo,
            Reply::Fixed(b) => Answerer::Framed(cfg.framed_reply(&b)?),
        };
        let Server {
            listener,
            shared,
            #[cfg(feature = "metrics")]
            exporter,
            ..
        } = self;
        let listener: std::net::TcpListener = OwnedFd::from(listener.into_inner()).into();
        let (control, mut done) = start(&listener, &shared, &answer).map_err(engine)?;
        drop(listener);
        // Dropped with this future (cancelled, or ended): the threads stop at once.
        let _stop_on_drop = ForceOnDrop(Arc::clone(&control));
        let side_stop = tokio_util::sync::CancellationToken::new();
        let mut side: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
        #[cfg(feature = "metrics")]
        if let Some(e) = exporter {
            side.spawn(e.run(Arc::clone(&shared.stats), side_stop.clone()));
        }
        let early = tokio::select! {
            () = shared.shutdown.cancelled() => None,
            r = done.recv() => Some(r.unwrap_or_else(|| Err(ended()))),
        };
        let started = Instant::now();
        control.set(DRAIN);
        let left = control.wakers.len() - usize::from(early.is_some());
        let (outcome, interrupted) = wait(&control, &mut done, left, early, interrupt).await;
        side_stop.cancel();
        while side.join_next().await.is_some() {}
        if interrupted {
            return Err(ServerError::Interrupted);
        }
        let ended = outcome.map_err(engine)?;
        Ok(ShutdownReport {
            open_at_shutdown: ended.open_at_drain,
            force_closed: ended.force_closed,
            drain_time: started.elapsed(),
        })
    }
}

fn engine(source: io::Error) -> ServerError {
    ServerError::Engine { source }
}

fn ended() -> io::Error {
    io::Error::other("an event loop ended before the shutdown")
}

/// What a worker thread reports when it ends.
type Done = mpsc::UnboundedReceiver<io::Result<worker::Ended>>;

/// Tells the workers to close everything and end when dropped.
struct ForceOnDrop(Arc<Control>);

impl Drop for ForceOnDrop {
    fn drop(&mut self) {
        self.0.set(FORCE);
    }
}

/// Starts a worker thread per CPU, each with its own copy of `listener`.
fn start(
    listener: &std::net::TcpListener,
    shared: &Arc<super::conn::Shared>,
    answer: &Answerer,
) -> io::Result<(Arc<Control>, Done)> {
    let n = worker_count();
    let mut workers = Vec::with_capacity(n);
    let mut wakers = Vec::with_capacity(n);
    for _ in 0..n {
        let l = mio::net::TcpListener::from_std(listener.try_clone()?);
        let (w, waker) = worker::Worker::new(l, Arc::clone(shared), answer.clone())?;
        workers.push(w);
        wakers.push(waker);
    }
    let control = Arc::new(Control {
        state: AtomicU8::new(RUN),
        wakers,
    });
    let (done_tx, done) = mpsc::unbounded_channel();
    for (i, w) in workers.into_iter().enumerate() {
        let (c, done_tx) = (Arc::clone(&control), done_tx.clone());
        let spawned = std::thread::Builder::new()
            // Linux keeps 15 bytes of a thread's name: "keepwire-d" and the index fit.
            .name(format!("keepwire-d{i}"))
            .spawn(move || {
                // A panic ends the worker's connections (their sockets close with it) and
                // is reported as a failed engine, not lost with the thread.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.run(&c)))
                    .unwrap_or_else(|_| Err(io::Error::other("an event loop panicked")));
                let _ = done_tx.send(r);
            });
        if let Err(e) = spawned {
            control.set(FORCE);
            return Err(e);
        }
    }
    Ok((control, done))
}

/// Waits for `left` workers to finish their drain, forcing them when `interrupt` comes;
/// `early` is a worker that ended before the shutdown. Their drains summed (or the first
/// failure), and whether the drain was interrupted.
async fn wait(
    control: &Control,
    done: &mut Done,
    mut left: usize,
    early: Option<io::Result<worker::Ended>>,
    interrupt: impl Future<Output = ()>,
) -> (io::Result<worker::Ended>, bool) {
    let mut outcome = match early {
        Some(Ok(_)) => Err(ended()),
        Some(Err(e)) => Err(e),
        None => Ok(worker::Ended::default()),
    };
    let mut interrupt = std::pin::pin!(interrupt);
    let mut interrupted = false;
    while left > 0 {
        tokio::select! {
            r = done.recv() => {
                left -= 1;
                match (r.unwrap_or_else(|| Err(ended())), &mut outcome) {
                    (Ok(e), Ok(sum)) => {
                        sum.open_at_drain += e.open_at_drain;
                        sum.force_closed += e.force_closed;
                    }
                    (Err(e), o @ Ok(_)) => *o = Err(e),
                    _ => {}
                }
            }
            () = &mut interrupt, if !interrupted => {
                interrupted = true;
                control.set(FORCE);
            }
        }
    }
    (outcome, interrupted)
}
