//! The task behind every long connection (long, mux, duplex, simplex, pooled): connects with
//! failover, writes requests, matches replies, answers and sends heartbeats through
//! [`Liveness`], and reconnects with backoff when the connection is lost.
//!
//! Callers talk to it through a bounded channel of [`Op`]s. Each op carries a [`Ticket`], an
//! atomic that both sides race on exactly once: the task moves it from `PENDING` to
//! `WRITING` before encoding the frame, a caller that gives up moves it from `PENDING` to
//! `CANCELLED`. Whoever wins decides: a cancelled op is never written, and a caller that
//! lost the race knows its request may have been sent.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder;

use super::config::ClientConfig;
use super::endpoint::{Backoff, EndpointSet, EndpointStatus, Jitter};
use super::error::{ClientError, ClientErrorKind, Delivery, EndpointFailure};
use super::tombstone::Tombstones;
use super::{Correlate, Key};
use crate::frame::FrameCodec;
use crate::liveness::{Action, Beat, CloseReason, Liveness, LivenessConfig, Verdict};

const PENDING: u8 = 0;
const WRITING: u8 = 1;
const CANCELLED: u8 = 2;

/// Heartbeats (pongs) queued behind a batch that waits for the socket, after which reading
/// pauses until the batch is written: bounds `wbuf` against a peer that pings without
/// reading. 64 KiB, the server's `MAX_PENDING_WRITE`.
const MAX_PENDING_CONTROL: usize = 64 * 1024;

/// How replies find their request.
#[derive(Clone)]
pub(crate) enum Matching {
    /// In order: the first reply answers the oldest request.
    Fifo,
    /// By key.
    Keyed(Arc<dyn Correlate>),
    /// Nothing is a reply: every inbound frame goes to the unsolicited stream.
    None,
}

/// Counters of one client, as [`LongClient::stats`](super::LongClient::stats) reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Connections established (the first one included).
    pub connects: u64,
    /// Connections lost or closed by the client (heartbeats, timeouts, errors).
    pub disconnects: u64,
    /// Pings sent.
    pub pings_sent: u64,
    /// Pings from the peer answered.
    pub pings_answered: u64,
    /// Heartbeat frames taken as pongs.
    pub pongs_received: u64,
    /// Inbound frames that matched no request.
    pub unsolicited: u64,
    /// Mux: replies that came after their request timed out (or its caller gave up); also
    /// counted in `unsolicited` and sent to the unsolicited stream.
    pub late_replies: u64,
    /// Unsolicited frames dropped because nobody read them fast enough.
    pub unsolicited_dropped: u64,
    /// Endpoints marked down.
    pub endpoints_marked_down: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    connects: AtomicU64,
    disconnects: AtomicU64,
    pings_sent: AtomicU64,
    pings_answered: AtomicU64,
    pongs_received: AtomicU64,
    unsolicited: AtomicU64,
    late_replies: AtomicU64,
    unsolicited_dropped: AtomicU64,
    marked_down: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the handles and the task share: configuration, endpoint health, counters.
pub(crate) struct Link {
    pub(crate) cfg: ClientConfig,
    pub(crate) matching: Matching,
    endpoints: Arc<Mutex<EndpointSet>>,
    jitter: Mutex<Jitter>,
    counters: Counters,
    connected: AtomicBool,
    current: Mutex<Option<usize>>,
    /// Reconnect when the connection is lost (a pooled connection does not: the pool
    /// replaces it).
    reconnect: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("endpoints", &self.cfg.endpoints)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

/// A fresh TCP connection to endpoint `ep`, with bytes read during the probe.
#[derive(Debug)]
pub(crate) struct Connected {
    pub(crate) stream: TcpStream,
    pub(crate) ep: usize,
    pub(crate) addr: String,
    pub(crate) leftover: BytesMut,
}

impl Link {
    pub(crate) fn new(cfg: ClientConfig, matching: Matching) -> Self {
        let endpoints = Arc::new(Mutex::new(EndpointSet::new(
            cfg.endpoints.iter().cloned(),
            cfg.down_base,
            cfg.down_max,
        )));
        Link::with_endpoints(cfg, matching, endpoints)
    }

    /// A link whose endpoint health is shared with others (the pool's connections).
    pub(crate) fn with_endpoints(
        cfg: ClientConfig,
        matching: Matching,
        endpoints: Arc<Mutex<EndpointSet>>,
    ) -> Self {
        Link {
            cfg,
            matching,
            endpoints,
            jitter: Mutex::new(Jitter::new()),
            counters: Counters::default(),
            connected: AtomicBool::new(false),
            current: Mutex::new(None),
            reconnect: true,
        }
    }

    /// The connection task ends when the connection is lost, instead of reconnecting.
    pub(crate) fn without_reconnect(mut self) -> Self {
        self.reconnect = false;
        self
    }

    fn eps(&self) -> std::sync::MutexGuard<'_, EndpointSet> {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn jitter(&self) -> f64 {
        self.jitter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_f64()
    }

    pub(crate) fn mark_down(&self, ep: usize, reason: &str) {
        let j = self.jitter();
        self.eps().mark_down(ep, Instant::now(), reason, j);
        inc(&self.counters.marked_down);
        tracing::info!(
            endpoint = self.eps().addr(ep).unwrap_or("?"),
            reason,
            "endpoint marked down"
        );
    }

    /// A connection to `ep` proved its service: the endpoint's down backoff starts over.
    pub(crate) fn proven(&self, ep: usize) {
        self.eps().proven(ep);
    }

    pub(crate) fn status(&self) -> Vec<EndpointStatus> {
        self.eps().status(Instant::now())
    }

    pub(crate) fn stats(&self) -> ClientStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            connects: g(&c.connects),
            disconnects: g(&c.disconnects),
            pings_sent: g(&c.pings_sent),
            pings_answered: g(&c.pings_answered),
            pongs_received: g(&c.pongs_received),
            unsolicited: g(&c.unsolicited),
            late_replies: g(&c.late_replies),
            unsolicited_dropped: g(&c.unsolicited_dropped),
            endpoints_marked_down: g(&c.marked_down),
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn current_endpoint(&self) -> Option<String> {
        let cur = *self.current.lock().unwrap_or_else(PoisonError::into_inner);
        cur.and_then(|i| self.eps().addr(i).map(str::to_owned))
    }

    fn set_current(&self, ep: Option<usize>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = ep;
        self.connected.store(ep.is_some(), Ordering::Release);
    }

    /// Tries the endpoints in plan order; the first that connects (and answers the probe)
    /// wins. Every failure marks its endpoint down.
    pub(crate) async fn connect_plan(&self) -> Result<Connected, ClientError> {
        self.connect_plan_by(None).await
    }

    /// [`connect_plan`](Self::connect_plan), all of it within a request's deadline when
    /// `by` gives one (`(deadline, the request timeout)`): the connect and probe timeouts
    /// then bound each endpoint, and the deadline the whole plan. An endpoint cut short by
    /// the deadline after it was given at least half the request timeout is marked down (so
    /// the next request tries the others first); one cut shorter, after earlier endpoints
    /// used the budget, is not. The error is then a timeout, not sent.
    pub(crate) async fn connect_plan_by(
        &self,
        by: Option<(Instant, Duration)>,
    ) -> Result<Connected, ClientError> {
        let plan = self.eps().plan(Instant::now());
        let mut failures = Vec::new();
        for ep in plan {
            let Some(addr) = self.eps().addr(ep).map(str::to_owned) else {
                continue;
            };
            let attempt = match by {
                None => self.connect_one(ep, &addr).await,
                Some((deadline, budget)) => {
                    let given = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout_at(deadline.into(), self.connect_one(ep, &addr))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => {
                            // Given most of the request timeout and still not connected: mark
                            // it down, else every later request spends its whole deadline
                            // here and none reaches the next endpoint. Cut short after
                            // earlier endpoints used up the budget, it is not blamed.
                            if given >= budget / 2 {
                                self.mark_down(
                                    ep,
                                    &format!(
                                        "connect did not finish within the request timeout ({})",
                                        humantime::format_duration(budget)
                                    ),
                                );
                            }
                            for f in &failures {
                                tracing::warn!("skipped endpoint {f}");
                            }
                            return Err(ClientError::new(
                                ClientErrorKind::Timeout,
                                Delivery::NotSent,
                                format!(
                                    "no connection within {}",
                                    humantime::format_duration(budget)
                                ),
                            )
                            .with_endpoint(Some(addr)));
                        }
                    }
                }
            };
            match attempt {
                Ok(c) => {
                    self.eps().mark_connected(ep);
                    for f in &failures {
                        tracing::warn!("skipped endpoint {f}");
                    }
                    return Ok(c);
                }
                Err(reason) => {
                    self.mark_down(ep, &reason);
                    failures.push(EndpointFailure {
                        endpoint: addr,
                        reason,
                    });
                }
            }
        }
        Err(ClientError::connect(failures))
    }

    /// One endpoint: TCP connect within `connect_timeout`, socket options, and the probe
    /// heartbeat when configured. The error is a reason for logs and [`ClientError`].
    pub(crate) async fn connect_one(&self, ep: usize, addr: &str) -> Result<Connected, String> {
        let cfg = &self.cfg;
        let stream = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await
        {
            Err(_) => {
                return Err(format!(
                    "connect timed out after {}",
                    humantime::format_duration(cfg.connect_timeout)
                ));
            }
            Ok(Err(e)) => return Err(format!("connect failed: {e}")),
            Ok(Ok(s)) => s,
        };
        cfg.socket
            .apply(&stream)
            .map_err(|e| format!("socket options: {e}"))?;
        let mut c = Connected {
            stream,
            ep,
            addr: addr.to_owned(),
            leftover: BytesMut::new(),
        };
        if cfg.probe_on_connect {
            self.probe(&mut c).await?;
        }
        Ok(c)
    }

    /// Writes one ping and waits for any heartbeat frame back.
    async fn probe(&self, c: &mut Connected) -> Result<(), String> {
        let Some(hb) = self.cfg.heartbeat.as_deref() else {
            return Err("probe on connect needs heartbeat frames (heartbeats are off)".into());
        };
        let wait = self
            .cfg
            .ping
            .map(|p| p.timeout)
            .unwrap_or(self.cfg.connect_timeout);
        let mut codec = FrameCodec::new(self.cfg.framing.clone());
        let mut out = BytesMut::new();
        codec
            .encode_to(&hb.ping(0), &mut out)
            .map_err(|e| format!("probe heartbeat: {e}"))?;
        let res = tokio::time::timeout(wait, async {
            c.stream
                .write_all(&out)
                .await
                .map_err(|e| format!("probe heartbeat: write failed: {e}"))?;
            loop {
                while let Some(frame) = codec
                    .decode(&mut c.leftover)
                    .map_err(|e| format!("probe heartbeat: bad reply: {e}"))?
                {
                    if hb.classify(&frame).is_some() {
                        return Ok(());
                    }
                    // An application frame before the pong: the service is alive. Do not
                    // lose it... but a fresh connection owes us nothing, so it is unsolicited.
                    tracing::debug!(len = frame.len(), "frame before probe pong, dropped");
                }
                c.leftover.reserve(4096);
                match c.stream.read_buf(&mut c.leftover).await {
                    Ok(0) => return Err("probe heartbeat: peer closed".to_string()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("probe heartbeat: read failed: {e}")),
                }
            }
        })
        .await;
        match res {
            Err(_) => Err(format!(
                "probe heartbeat unanswered within {} (service hung?)",
                humantime::format_duration(wait)
            )),
            Ok(r) => r,
        }
    }
}

/// The single decision point between a caller giving up and the task writing.
#[derive(Debug, Default)]
pub(crate) struct Ticket {
    state: AtomicU8,
    /// Set by the task when a same-bytes heartbeat that was not our pong arrived while this
    /// request awaited its reply: the timeout then says so (R3 of the heartbeat rule).
    heartbeats_instead: AtomicBool,
}

impl Ticket {
    /// Task side: may the op be written? False if the caller gave up first.
    fn begin_write(&self) -> bool {
        self.state
            .compare_exchange(PENDING, WRITING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Task side: the op was not written after all (it goes back in the queue).
    fn unwrite(&self) {
        let _ = self
            .state
            .compare_exchange(WRITING, PENDING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Caller side: give up. Returns the delivery verdict: `NotSent` if the task had not
    /// started writing (and now never will).
    pub(crate) fn cancel(&self) -> Delivery {
        match self
            .state
            .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Delivery::NotSent,
            Err(CANCELLED) => Delivery::NotSent,
            Err(_) => Delivery::SentNoReply,
        }
    }

    fn mark_heartbeats_instead(&self) {
        self.heartbeats_instead.store(true, Ordering::Relaxed);
    }

    fn saw_heartbeats_instead(&self) -> bool {
        self.heartbeats_instead.load(Ordering::Relaxed)
    }
}

/// The reply timeout of a request that was written, saying so when heartbeat frames came
/// instead of its reply (a peer that replies with the heartbeat frame).
fn reply_timeout(
    link: &Link,
    ticket: &Ticket,
    endpoint: Option<String>,
    after: Duration,
) -> ClientError {
    let err = ClientError::timeout(Delivery::SentNoReply, endpoint, after);
    match link.cfg.heartbeat.as_deref() {
        Some(h) if ticket.saw_heartbeats_instead() => err.heartbeats_instead(&h.ping(0)),
        _ => err,
    }
}

/// One request (or one-way send) for the task.
#[derive(Debug)]
pub(crate) struct Op {
    frame: Bytes,
    /// Expect a reply (`false`: done once written).
    reply: bool,
    key: Option<Key>,
    ticket: Arc<Ticket>,
    done: oneshot::Sender<Result<Bytes, ClientError>>,
    deadline: Instant,
    timeout: Duration,
}

impl Op {
    fn finish(self, r: Result<Bytes, ClientError>) {
        let _ = self.done.send(r);
    }
}

/// Cancels the ticket if the caller's future is dropped before it finished.
struct CancelOnDrop(Arc<Ticket>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The caller's side of a connection task.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    pub(crate) tx: mpsc::Sender<Op>,
    pub(crate) link: Arc<Link>,
}

impl Handle {
    /// Sends `frame`; with `reply`, waits for the reply. The whole call is bounded by
    /// `timeout`.
    pub(crate) async fn call(
        &self,
        frame: Bytes,
        reply: bool,
        key: Option<Key>,
        timeout: Duration,
    ) -> Result<Bytes, ClientError> {
        self.link.cfg.refuse_heartbeat_frame(&frame)?;
        let ticket = Arc::new(Ticket::default());
        let guard = CancelOnDrop(Arc::clone(&ticket));
        let (done, rx) = oneshot::channel();
        let deadline = crate::deadline::std_in(timeout);
        let op = Op {
            frame,
            reply,
            key,
            ticket: Arc::clone(&ticket),
            done,
            deadline,
            timeout,
        };
        let work = async {
            if self.tx.send(op).await.is_err() {
                return Err(shutdown(Delivery::NotSent));
            }
            match rx.await {
                Ok(r) => r,
                Err(_) => Err(shutdown(ticket.cancel())),
            }
        };
        let res = match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(r) => r,
            Err(_) => Err(match ticket.cancel() {
                Delivery::NotSent => ClientError::new(
                    ClientErrorKind::Timeout,
                    Delivery::NotSent,
                    format!(
                        "no connection within {}",
                        humantime::format_duration(timeout)
                    ),
                )
                .with_endpoint(self.link.current_endpoint()),
                Delivery::SentNoReply => {
                    reply_timeout(&self.link, &ticket, self.link.current_endpoint(), timeout)
                }
            }),
        };
        drop(guard);
        res
    }
}

/// The refusal of a mux request whose key is tombstoned for `left` more.
fn key_awaits_late_reply(k: &Key, left: Duration) -> ClientError {
    // Whole seconds, rounded up: "after 0s" would invite a retry that is refused again.
    let secs = left
        .as_secs()
        .saturating_add(u64::from(left.subsec_nanos() > 0));
    ClientError::new(
        ClientErrorKind::Key,
        Delivery::NotSent,
        format!(
            "correlation key {:02x?} awaits the late reply to an earlier request with it that \
             timed out: retry once that reply arrives, or after {secs}s at most",
            &k.0[..]
        ),
    )
}

/// `d` to whole milliseconds, for messages.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn shutdown(d: Delivery) -> ClientError {
    ClientError::new(ClientErrorKind::Shutdown, d, "client shut down")
}

/// Starts the task on `first` and returns its handle.
pub(crate) fn spawn(link: Arc<Link>, first: Connected) -> Handle {
    let (tx, rx) = mpsc::channel(link.cfg.queue);
    let task = Task {
        link: Arc::clone(&link),
        rx,
        retry: VecDeque::new(),
        backoff: Backoff::new(link.cfg.reconnect_base, link.cfg.reconnect_max),
        unsolicited: None,
    };
    link.set_current(Some(first.ep));
    tokio::spawn(task.run(first));
    Handle { tx, link }
}

/// Like [`spawn`], with a stream of unsolicited frames.
pub(crate) fn spawn_with_unsolicited(
    link: Arc<Link>,
    first: Connected,
) -> (Handle, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel(link.cfg.queue);
    let (utx, urx) = mpsc::channel(link.cfg.unsolicited);
    let task = Task {
        link: Arc::clone(&link),
        rx,
        retry: VecDeque::new(),
        backoff: Backoff::new(link.cfg.reconnect_base, link.cfg.reconnect_max),
        unsolicited: Some(utx),
    };
    link.set_current(Some(first.ep));
    tokio::spawn(task.run(first));
    (Handle { tx, link }, urx)
}

struct Task {
    link: Arc<Link>,
    rx: mpsc::Receiver<Op>,
    /// Ops that were not sent on a lost connection: first on the next one.
    retry: VecDeque<Op>,
    backoff: Backoff,
    unsolicited: Option<mpsc::Sender<Bytes>>,
}

/// Why a connection ended.
enum End {
    /// Every handle is gone.
    Shutdown,
    /// Lost; mark the endpoint down when `down` says why.
    Lost {
        err: ClientError,
        down: Option<String>,
    },
    /// Moving to a better endpoint that answered again.
    FailBack(Connected),
}

/// A fail-back probe in progress: the endpoint, and its connect (and probe heartbeat).
type FailBackProbe =
    std::pin::Pin<Box<dyn std::future::Future<Output = (usize, Result<Connected, String>)> + Send>>;

struct InFlight {
    done: oneshot::Sender<Result<Bytes, ClientError>>,
    ticket: Arc<Ticket>,
    deadline: Instant,
    timeout: Duration,
}

/// Per-connection state of the task.
struct Conn {
    c: Connected,
    codec: FrameCodec,
    live: Liveness,
    rbuf: BytesMut,
    wbuf: BytesMut,
    fifo: VecDeque<InFlight>,
    keyed: HashMap<Key, InFlight>,
    /// Keys of keyed requests that timed out after they were written.
    tombstones: Tombstones,
    eof: bool,
    /// A frame came on this connection that answered us (a reply matched to a request, a
    /// pong to our ping), proving the peer's service: see [`Backoff::after_loss`]. An
    /// unsolicited frame proves nothing (a peer that says "busy" and closes).
    delivered: bool,
}

impl Conn {
    fn in_flight(&self) -> usize {
        self.fifo.len() + self.keyed.len()
    }

    fn endpoint(&self) -> Option<String> {
        Some(self.c.addr.clone())
    }

    fn fail_all(&mut self, err: &ClientError) {
        for f in self.fifo.drain(..) {
            let _ = f.done.send(Err(err.for_delivery(Delivery::SentNoReply)));
        }
        for (_, f) in self.keyed.drain() {
            let _ = f.done.send(Err(err.for_delivery(Delivery::SentNoReply)));
        }
    }

    fn mark_heartbeats_instead(&self) {
        for f in self.fifo.iter().chain(self.keyed.values()) {
            f.ticket.mark_heartbeats_instead();
        }
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        let f = self.fifo.front().map(|f| f.deadline);
        let k = self.keyed.values().map(|f| f.deadline).min();
        match (f, k) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Task {
    async fn run(mut self, first: Connected) {
        let mut next = Some(first);
        let mut last_err = shutdown(Delivery::NotSent);
        loop {
            let c = match next.take() {
                Some(c) => c,
                None => match self.reconnect().await {
                    Some(c) => c,
                    None => break,
                },
            };
            inc(&self.link.counters.connects);
            self.link.set_current(Some(c.ep));
            let ep = c.ep;
            let started = Instant::now();
            let (end, delivered) = self.serve(c).await;
            self.link.set_current(None);
            let lived = started.elapsed();
            if delivered {
                self.link.proven(ep);
            }
            match end {
                End::Shutdown => break,
                End::Lost { err, down } => {
                    inc(&self.link.counters.disconnects);
                    tracing::info!(error = %err, "connection lost");
                    // Closed or reset young with nothing delivered (a peer at its
                    // connection limit, a balancer with no backend): the endpoint is not
                    // serving, so the next plan tries the others first, and fail-back waits
                    // for its retry time.
                    let down = down.or_else(|| {
                        let young = !delivered && lived < self.link.cfg.reconnect_max;
                        let lost =
                            matches!(err.kind(), ClientErrorKind::Closed | ClientErrorKind::Io);
                        (young && lost).then(|| {
                            format!(
                                "connection lost {} after connect with nothing delivered: {err}",
                                humantime::format_duration(round_ms(lived))
                            )
                        })
                    });
                    if let Some(reason) = down {
                        self.link.mark_down(ep, &reason);
                    }
                    if !self.link.reconnect {
                        last_err = err.for_delivery(Delivery::NotSent);
                        break;
                    }
                    // A connection that died young with nothing delivered proves nothing:
                    // wait before the next connect, else a peer that accepts and closes
                    // at once is reconnected to in a tight loop.
                    let jitter = self.link.jitter();
                    if let Some(delay) = self.backoff.after_loss(delivered, lived, jitter) {
                        tracing::debug!(?delay, "connection died young; backing off");
                        tokio::time::sleep_until(crate::deadline::tokio_in(delay)).await;
                    }
                }
                End::FailBack(c) => {
                    inc(&self.link.counters.disconnects);
                    tracing::info!(endpoint = %c.addr, "failing back to a recovered endpoint");
                    next = Some(c);
                }
            }
        }
        self.link.set_current(None);
        self.fail_queued(&last_err);
    }

    /// Fails every op waiting for a connection, with `err` as not sent.
    fn fail_queued(&mut self, err: &ClientError) {
        for op in self.retry.drain(..) {
            op.finish(Err(err.for_delivery(Delivery::NotSent)));
        }
        while let Ok(op) = self.rx.try_recv() {
            op.finish(Err(err.for_delivery(Delivery::NotSent)));
        }
    }

    /// Tries the endpoint plan until one connects, backing off between rounds. Ops that
    /// arrive while no endpoint answers fail at once as not sent. `None` once every handle
    /// is gone.
    async fn reconnect(&mut self) -> Option<Connected> {
        loop {
            if self.rx.is_closed() && self.retry.is_empty() && self.rx.is_empty() {
                return None;
            }
            match self.link.connect_plan().await {
                // The backoff is not reset here: a connect proves little (see
                // `Backoff::after_loss`), the connection has to deliver first.
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "reconnect failed");
                    self.fail_queued(&e);
                    let delay = self.backoff.next_delay(self.link.jitter());
                    let until = crate::deadline::tokio_in(delay);
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep_until(until) => break,
                            op = self.rx.recv() => match op {
                                None => return None,
                                Some(op) => op.finish(Err(e.for_delivery(Delivery::NotSent))),
                            },
                        }
                    }
                }
            }
        }
    }

    /// Serves one connection until it ends; also says whether a frame came on it.
    async fn serve(&mut self, c: Connected) -> (End, bool) {
        let link = Arc::clone(&self.link);
        let cfg = &link.cfg;
        let now = Instant::now();
        let mut live = Liveness::new(
            LivenessConfig {
                ping: cfg.ping,
                ..LivenessConfig::default()
            },
            now,
        );
        live.set_answer_pings(cfg.heartbeat.is_some());
        let mut conn = Conn {
            codec: FrameCodec::new(cfg.framing.clone()),
            live,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            fifo: VecDeque::new(),
            keyed: HashMap::new(),
            tombstones: Tombstones::new(self.max_in_flight()),
            eof: false,
            delivered: false,
            c,
        };
        conn.rbuf = std::mem::take(&mut conn.c.leftover);
        let end = self.serve_conn(&mut conn).await;
        match &end {
            End::Lost { err, .. } => conn.fail_all(err),
            End::Shutdown | End::FailBack(_) => {
                conn.fail_all(&shutdown(Delivery::SentNoReply));
                let _ = tokio::time::timeout(cfg.write_timeout, conn.c.stream.shutdown()).await;
            }
        }
        (end, conn.delivered)
    }

    fn max_in_flight(&self) -> usize {
        match (&self.link.matching, self.link.cfg.max_in_flight) {
            (_, Some(n)) => n,
            (Matching::Keyed(_), None) => 1024,
            (Matching::None, None) => 1024,
            (Matching::Fifo, None) => 1,
        }
    }

    async fn serve_conn(&mut self, conn: &mut Conn) -> End {
        let link = Arc::clone(&self.link);
        let cfg = &link.cfg;
        let heartbeat = cfg.heartbeat.clone();
        let max_in_flight = self.max_in_flight();
        let mut rx_closed = false;
        let mut fail_back_failed_at: Option<Instant> = None;
        // The fail-back probe of a better endpoint runs beside this connection, polled in
        // the select below: a preferred endpoint that drops SYNs takes the whole connect
        // timeout to fail, and this connection keeps serving meanwhile. Dropped (and its
        // socket closed) when this connection ends.
        let mut probe: Option<FailBackProbe> = None;
        // A better endpoint that answered the probe, for when nothing is in flight.
        let mut recovered: Option<Connected> = None;
        loop {
            // 1. Whole frames buffered; pongs they call for are written at once.
            if let Err(err) = self.process_frames(conn) {
                return End::Lost { err, down: None };
            }
            if !conn.wbuf.is_empty() {
                if let Err(end) = self.flush_control(conn).await {
                    return end;
                }
            }
            if conn.eof {
                let err = ClientError::new(
                    ClientErrorKind::Closed,
                    Delivery::SentNoReply,
                    "peer closed the connection",
                )
                .with_endpoint(conn.endpoint());
                return End::Lost { err, down: None };
            }
            if rx_closed && conn.in_flight() == 0 && self.retry.is_empty() {
                return End::Shutdown;
            }
            // Fail back only when nothing is in flight: the requests on this connection
            // get their replies first.
            if conn.in_flight() == 0 && self.retry.is_empty() {
                if let Some(c) = recovered.take() {
                    return End::FailBack(c);
                }
            }

            // 2. Ops that were not sent on the previous connection go first.
            if !self.retry.is_empty() && conn.in_flight() < max_in_flight {
                let room = max_in_flight - conn.in_flight();
                let n = room.min(self.retry.len());
                let ops: Vec<Op> = self.retry.drain(..n).collect();
                if let Err(end) = self.write_ops(conn, ops).await {
                    return end;
                }
                continue;
            }

            // 3. Timers: liveness, reply deadlines, fail-back.
            let now = Instant::now();
            // Fail-back happens only when nothing is in flight; while something is, its timer
            // stays out of the deadline (else a due fail-back woke this loop at every tick:
            // ~1000 wakeups a second while a request waited on a slow backup).
            let fail_back_at = if cfg.fail_back
                && conn.c.ep > 0
                && conn.in_flight() == 0
                && probe.is_none()
                && recovered.is_none()
            {
                let eps = link.eps();
                if eps.fail_back_candidate(conn.c.ep, now).is_some() {
                    Some(
                        fail_back_failed_at
                            .map(|t| crate::deadline::after(t, cfg.down_base))
                            .unwrap_or(now)
                            .max(now),
                    )
                } else {
                    eps.next_retry_before(conn.c.ep)
                }
            } else {
                None
            };
            let deadline = [
                conn.live.next_deadline(),
                conn.earliest_deadline(),
                fail_back_at,
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let accepting = !rx_closed && conn.in_flight() < max_in_flight;
            conn.rbuf.reserve(4096);
            // Not `biased`: tokio picks among ready branches at random, so a server flooding
            // frames cannot starve queued requests, reply deadlines and liveness timers.
            tokio::select! {
                r = conn.c.stream.read_buf(&mut conn.rbuf) => match r {
                    Ok(0) => conn.eof = true,
                    Ok(_) => {}
                    Err(e) => {
                        let err = ClientError::io(Delivery::SentNoReply, conn.endpoint(), "read failed", e);
                        return End::Lost { err, down: None };
                    }
                },
                op = self.rx.recv(), if accepting => match op {
                    None => rx_closed = true,
                    Some(op) => {
                        let mut ops = vec![op];
                        let room = max_in_flight.saturating_sub(conn.in_flight());
                        while ops.len() < room.min(64) {
                            match self.rx.try_recv() {
                                Ok(op) => ops.push(op),
                                Err(_) => break,
                            }
                        }
                        if let Err(end) = self.write_ops(conn, ops).await {
                            return end;
                        }
                    }
                },
                () = sleep => {
                    let now = Instant::now();
                    loop {
                        match conn.live.poll(now) {
                            Action::Wait => break,
                            Action::Close(reason) => {
                                let (kind, why) = match reason {
                                    CloseReason::HeartbeatTimeout => (ClientErrorKind::Dead, "peer stopped answering heartbeats".to_string()),
                                    other => (ClientErrorKind::Timeout, format!("liveness: {}", other.as_str())),
                                };
                                let err = ClientError::new(kind, Delivery::SentNoReply, why.clone())
                                    .with_endpoint(conn.endpoint());
                                let down = (reason == CloseReason::HeartbeatTimeout).then_some(why);
                                return End::Lost { err, down };
                            }
                            Action::SendPing(seq) => {
                                if let Some(h) = heartbeat.as_deref() {
                                    if let Err(e) = conn.codec.encode_to(&h.ping(seq), &mut conn.wbuf) {
                                        let err = ClientError::frame(Delivery::SentNoReply, conn.endpoint(), e);
                                        return End::Lost { err, down: None };
                                    }
                                    if let Err(end) = self.flush_control(conn).await {
                                        return end;
                                    }
                                    inc(&link.counters.pings_sent);
                                }
                            }
                        }
                    }
                    // Reply deadlines.
                    if let Some(front) = conn.fifo.front() {
                        if front.deadline <= now {
                            // Later replies could no longer be matched by order.
                            let err = reply_timeout(&link, &front.ticket, conn.endpoint(), front.timeout);
                            return End::Lost { err, down: None };
                        }
                    }
                    self.expire_keyed(conn, now);
                    // Probe a better endpoint to fail back to, when idle; the probe runs
                    // beside this connection (the branch below takes its outcome).
                    if fail_back_at.is_some_and(|t| t <= now) && conn.in_flight() == 0 {
                        let cand = link.eps().fail_back_candidate(conn.c.ep, now);
                        if let Some(ep) = cand {
                            let addr = link.eps().addr(ep).map(str::to_owned).unwrap_or_default();
                            let prober = Arc::clone(&link);
                            probe = Some(Box::pin(async move {
                                let r = prober.connect_one(ep, &addr).await;
                                (ep, r)
                            }));
                        }
                    }
                }
                (ep, r) = async {
                    match probe.as_mut() {
                        Some(p) => p.await,
                        None => std::future::pending().await,
                    }
                }, if probe.is_some() => {
                    probe = None;
                    match r {
                        Ok(c) => {
                            link.eps().mark_connected(ep);
                            recovered = Some(c);
                        }
                        Err(reason) => {
                            link.mark_down(ep, &reason);
                            fail_back_failed_at = Some(Instant::now());
                        }
                    }
                }
            }
        }
    }

    /// Fails the keyed requests whose deadline has passed and tombstones their keys: their
    /// late replies may still come.
    fn expire_keyed(&self, conn: &mut Conn, now: Instant) {
        if conn.keyed.values().all(|f| f.deadline > now) {
            return;
        }
        let expired: Vec<Key> = conn
            .keyed
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(f) = conn.keyed.remove(&k) {
                let err = reply_timeout(&self.link, &f.ticket, conn.endpoint(), f.timeout);
                let _ = f.done.send(Err(err));
                conn.tombstones.bury(k, now, f.timeout);
            }
        }
    }

    /// Routes an application frame to its request, or to the unsolicited stream. True when
    /// it answered one of our requests (late replies included).
    fn dispatch(&mut self, conn: &mut Conn, frame: Bytes) -> bool {
        let mut late = false;
        let waiter = match &self.link.matching {
            Matching::Fifo => conn.fifo.pop_front(),
            Matching::Keyed(k) => k.key(&frame).and_then(|key| {
                let w = conn.keyed.remove(&key);
                if w.is_none() {
                    late = conn.tombstones.take_late(&key, Instant::now());
                }
                w
            }),
            Matching::None => None,
        };
        let frame = match waiter {
            Some(w) => match w.done.send(Ok(frame)) {
                Ok(()) | Err(Err(_)) => return true,
                // The caller gave up after the request was written: on a mux link its reply
                // is late and goes to the unsolicited stream (an ordered link drops it).
                Err(Ok(frame)) => {
                    if !matches!(self.link.matching, Matching::Keyed(_)) {
                        return true;
                    }
                    late = true;
                    frame
                }
            },
            None => frame,
        };
        if late {
            inc(&self.link.counters.late_replies);
        }
        inc(&self.link.counters.unsolicited);
        let delivered = self
            .unsolicited
            .as_ref()
            .is_some_and(|tx| tx.try_send(frame).is_ok());
        if !delivered {
            inc(&self.link.counters.unsolicited_dropped);
            tracing::debug!("unsolicited frame dropped: no reader or reader too slow");
        }
        late
    }

    /// Decodes every whole frame buffered and acts on it: heartbeats through liveness
    /// (a pong to send is appended to `wbuf`, for the caller to flush), everything else
    /// dispatched. The one decode -> heartbeat -> liveness step, run by the main loop and
    /// while a write waits.
    fn process_frames(&mut self, conn: &mut Conn) -> Result<(), ClientError> {
        let link = Arc::clone(&self.link);
        let heartbeat = link.cfg.heartbeat.as_deref();
        let now = Instant::now();
        loop {
            let decoded = if conn.eof {
                conn.codec.decode_eof(&mut conn.rbuf)
            } else {
                conn.codec.decode(&mut conn.rbuf)
            };
            let frame = match decoded {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(ClientError::frame(
                        Delivery::SentNoReply,
                        conn.endpoint(),
                        e,
                    ));
                }
            };
            let beat = heartbeat.and_then(|h| h.classify(&frame));
            // R3: while a reply is awaited, a same-bytes heartbeat that is not our pong
            // may be a peer replying with the heartbeat frame; the storm guard answers
            // such frames at most once a second, and the waiting requests learn of them.
            let awaiting = conn.in_flight() > 0;
            if awaiting && beat == Some(Beat::Either) && conn.live.unanswered() == 0 {
                conn.mark_heartbeats_instead();
            }
            let unanswered = conn.live.unanswered();
            let verdict = conn.live.on_frame_awaiting(now, beat, awaiting);
            // Only an answer to us proves the peer's service: our pong here, a matched reply
            // in `dispatch`. An unsolicited frame does not ("busy" and close).
            if conn.live.unanswered() < unanswered {
                conn.delivered = true;
            }
            match verdict {
                Verdict::Absorb => inc(&link.counters.pongs_received),
                Verdict::Answer => {
                    if let Some(h) = heartbeat {
                        conn.codec
                            .encode_to(&h.pong(&frame), &mut conn.wbuf)
                            .map_err(|e| {
                                ClientError::frame(Delivery::SentNoReply, conn.endpoint(), e)
                            })?;
                        inc(&link.counters.pings_answered);
                    }
                }
                Verdict::Deliver => {
                    if self.dispatch(conn, frame) {
                        conn.delivered = true;
                    }
                }
            }
        }
    }

    /// Writes the heartbeats queued in `wbuf`.
    async fn flush_control(&mut self, conn: &mut Conn) -> Result<(), End> {
        let (_, res) = self.flush(conn).await;
        conn.wbuf.clear();
        res.map_err(|err| End::Lost { err, down: None })
    }

    /// Writes all of `wbuf`, waiting at most the write timeout per stall, and returns how
    /// many bytes left with the outcome.
    ///
    /// While the socket is full it keeps reading and dispatching whole frames (replies,
    /// pongs, unsolicited frames): a peer that writes its replies before reading more
    /// requests (as keepwire's server does) otherwise fills both socket buffers, and both
    /// sides wait on writes until a write timeout. Memory stays bounded: replies go to their
    /// requests (at most `max_in_flight`, already registered) or to the bounded unsolicited
    /// stream, so `rbuf` holds at most one partial frame; pongs the frames call for are
    /// appended to `wbuf`, and reading pauses while more than [`MAX_PENDING_CONTROL`] of
    /// them wait behind the batch.
    async fn flush(&mut self, conn: &mut Conn) -> (usize, Result<(), ClientError>) {
        let timeout = self.link.cfg.write_timeout;
        let control_cap = conn.wbuf.len().saturating_add(MAX_PENDING_CONTROL);
        let mut off = 0;
        let mut stall_until: Option<tokio::time::Instant> = None;
        while off < conn.wbuf.len() {
            let pending = conn.wbuf.get(off..).unwrap_or_default();
            match conn.c.stream.try_write(pending) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return (off, Err(self.write_failed(conn, e)));
                }
                Ok(n) => {
                    off += n;
                    stall_until = None;
                    conn.live.on_write(Instant::now());
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (off, Err(self.write_failed(conn, e))),
            }
            let until = *stall_until.get_or_insert_with(|| crate::deadline::tokio_in(timeout));
            let read = !conn.eof && conn.wbuf.len() <= control_cap;
            let interest = if read {
                Interest::WRITABLE | Interest::READABLE
            } else {
                Interest::WRITABLE
            };
            let ready = match tokio::time::timeout_at(until, conn.c.stream.ready(interest)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return (off, Err(self.write_failed(conn, e))),
                Err(_) => {
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "peer did not read for {}",
                            humantime::format_duration(timeout)
                        ),
                    );
                    return (off, Err(self.write_failed(conn, e)));
                }
            };
            if read && (ready.is_readable() || ready.is_read_closed()) {
                conn.rbuf.reserve(4096);
                match conn.c.stream.try_read_buf(&mut conn.rbuf) {
                    // End of stream: stop reading; the main loop reports it once the write
                    // is done (or fails).
                    Ok(0) => conn.eof = true,
                    Ok(_) => {
                        if let Err(err) = self.process_frames(conn) {
                            return (off, Err(err));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        let err = ClientError::io(
                            Delivery::SentNoReply,
                            conn.endpoint(),
                            "read failed",
                            e,
                        );
                        return (off, Err(err));
                    }
                }
            }
        }
        (off, Ok(()))
    }

    fn write_failed(&self, conn: &Conn, e: io::Error) -> ClientError {
        ClientError::io(Delivery::SentNoReply, conn.endpoint(), "write failed", e)
    }

    /// Encodes and writes a batch of ops. Requests are registered as in flight before the
    /// write, since their replies may be read while it waits. On a write error, ops none of
    /// whose bytes left go back to the retry queue (not sent); the others fail as maybe sent.
    async fn write_ops(&mut self, conn: &mut Conn, ops: Vec<Op>) -> Result<(), End> {
        let mut batch: Vec<Written> = Vec::with_capacity(ops.len());
        let now = Instant::now();
        // A caller whose timeout fired may retry with the same key before the timer branch
        // has run: expire first, so the retry meets the tombstone, not "in flight".
        self.expire_keyed(conn, now);
        for op in ops {
            if op.deadline <= now {
                // Too late: the caller is giving up. Whoever cancels first decides.
                if op.ticket.cancel() == Delivery::NotSent {
                    let timeout = op.timeout;
                    op.finish(Err(ClientError::new(
                        ClientErrorKind::Timeout,
                        Delivery::NotSent,
                        format!("not written within {}", humantime::format_duration(timeout)),
                    )));
                }
                continue;
            }
            // Key checks come before the ticket is taken: a refused op was never written,
            // whoever else looks at its ticket.
            let mut key = None;
            if op.reply {
                if let Matching::Keyed(c) = &self.link.matching {
                    let Some(k) = op.key.clone().or_else(|| c.key(&op.frame)) else {
                        op.finish(Err(ClientError::new(
                            ClientErrorKind::Key,
                            Delivery::NotSent,
                            "request frame has no correlation key",
                        )));
                        continue;
                    };
                    // Earlier ops of this batch are registered already.
                    if conn.keyed.contains_key(&k) {
                        op.finish(Err(ClientError::new(
                            ClientErrorKind::Key,
                            Delivery::NotSent,
                            format!("correlation key {:02x?} already in flight", &k.0[..]),
                        )));
                        continue;
                    }
                    if let Some(until) = conn.tombstones.blocks(&k, now) {
                        op.finish(Err(key_awaits_late_reply(
                            &k,
                            until.saturating_duration_since(now),
                        )));
                        continue;
                    }
                    key = Some(k);
                }
            }
            if !op.ticket.begin_write() {
                // The caller gave up first and was told "not sent": never write it.
                continue;
            }
            let start = conn.wbuf.len();
            if let Err(e) = conn.codec.encode_to(&op.frame, &mut conn.wbuf) {
                op.ticket.unwrite();
                op.finish(Err(ClientError::frame(
                    Delivery::NotSent,
                    conn.endpoint(),
                    e,
                )));
                continue;
            }
            let Op {
                frame,
                reply,
                ticket,
                done,
                deadline,
                timeout,
                ..
            } = op;
            let done = if reply {
                let inflight = InFlight {
                    done,
                    ticket: Arc::clone(&ticket),
                    deadline,
                    timeout,
                };
                match &key {
                    Some(k) => {
                        conn.keyed.insert(k.clone(), inflight);
                    }
                    None => conn.fifo.push_back(inflight),
                }
                None
            } else {
                Some(done)
            };
            batch.push(Written {
                start,
                frame,
                reply,
                key,
                ticket,
                deadline,
                timeout,
                done,
            });
        }
        if batch.is_empty() {
            return Ok(());
        }
        let (written, res) = self.flush(conn).await;
        conn.wbuf.clear();
        let err = match res {
            Ok(()) => {
                for w in batch {
                    if let Some(done) = w.done {
                        let _ = done.send(Ok(Bytes::new()));
                    }
                }
                return Ok(());
            }
            Err(err) => err,
        };
        // Newest first: the unwritten ops are the batch's tail, and the newest entries of
        // `fifo`.
        let mut unsent = Vec::new();
        for w in batch.into_iter().rev() {
            if w.start < written {
                // Some of it left. A request stays registered and fails with the connection
                // (fail_all); a one-way op fails here.
                if let Some(done) = w.done {
                    let _ = done.send(Err(err.for_delivery(Delivery::SentNoReply)));
                }
                continue;
            }
            // Not a byte of it left: safe to send on the next connection.
            let done = match (w.done, &w.key) {
                (Some(done), _) => Some(done),
                (None, Some(k)) => conn.keyed.remove(k).map(|f| f.done),
                (None, None) => conn.fifo.pop_back().map(|f| f.done),
            };
            if let Some(done) = done {
                w.ticket.unwrite();
                unsent.push(Op {
                    frame: w.frame,
                    reply: w.reply,
                    key: w.key,
                    ticket: w.ticket,
                    done,
                    deadline: w.deadline,
                    timeout: w.timeout,
                });
            }
        }
        self.retry.extend(unsent.into_iter().rev());
        Err(End::Lost { err, down: None })
    }
}

/// An op of a batch being written: where its bytes start in `wbuf`, and what it takes to
/// queue it again if none of them left.
struct Written {
    start: usize,
    frame: Bytes,
    reply: bool,
    key: Option<Key>,
    ticket: Arc<Ticket>,
    deadline: Instant,
    timeout: Duration,
    /// A one-way op's sender; a request's is registered in `fifo` or `keyed`.
    done: Option<oneshot::Sender<Result<Bytes, ClientError>>>,
}

/// How [`write_counted`] ended short of writing everything.
#[derive(Debug)]
pub(crate) enum WriteEnd {
    /// The socket failed, or the peer did not read for the write timeout.
    Io(io::Error),
    /// The caller's deadline passed first.
    Deadline,
}

/// Writes all of `buf` with `timeout` per stall, and all of it by `deadline`; returns the
/// bytes written and the outcome.
pub(crate) async fn write_counted(
    stream: &mut TcpStream,
    buf: &[u8],
    timeout: Duration,
    deadline: Instant,
) -> (usize, Result<(), WriteEnd>) {
    let mut off = 0;
    while off < buf.len() {
        let pending = buf.get(off..).unwrap_or_default();
        match stream.try_write(pending) {
            Ok(0) => return (off, Err(WriteEnd::Io(io::ErrorKind::WriteZero.into()))),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let stall = crate::deadline::std_in(timeout);
                let until = stall.min(deadline);
                match tokio::time::timeout_at(until.into(), stream.writable()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return (off, Err(WriteEnd::Io(e))),
                    Err(_) if until < stall => return (off, Err(WriteEnd::Deadline)),
                    Err(_) => {
                        return (
                            off,
                            Err(WriteEnd::Io(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!(
                                    "peer did not read for {}",
                                    humantime::format_duration(timeout)
                                ),
                            ))),
                        );
                    }
                }
            }
            Err(e) => return (off, Err(WriteEnd::Io(e))),
        }
    }
    (off, Ok(()))
}
