//! One thread of the direct engine: its `epoll`, its share of the listener, its
//! connections and their timers.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

use super::conn::{Answerer, Conn, Ctx, Drive, Scratch, Then};
use super::timers::{Armed, Timers};
use super::{Control, DRAIN, FORCE};
use crate::server::conn::clock::coalesce;
use crate::server::conn::{ConnEnd, Shared};
use crate::server::{
    MAX_ACCEPT_BACKOFF, MIN_ACCEPT_BACKOFF, ServerStats, is_transient_accept_error,
};

/// The listener's token (connections are slab keys, far below).
const LISTENER: Token = Token(usize::MAX - 1);
/// The token the server wakes a worker with.
const WAKER: Token = Token(usize::MAX);
/// The most connection slots reserved up front per thread (`max_conns`, up to this).
const MAX_RESERVED: usize = 64 * 1024;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 1024;

/// A worker before its thread starts.
#[derive(Debug)]
pub(super) struct Worker {
    poll: Poll,
    events: Events,
    core: Core,
}

/// Everything but the poll, so that events can be handled while they are borrowed.
#[derive(Debug)]
struct Core {
    listener: Option<mio::net::TcpListener>,
    conns: Slab<Conn>,
    timers: Timers,
    shared: Arc<Shared>,
    answer: Answerer,
    scratch: Scratch,
    /// Connections whose read budget ran out: driven again before the next wait.
    again: Vec<(usize, u32)>,
    next_generation: u32,
    /// After an accept error that concerns the listener: when to try again.
    accept_retry: Option<Instant>,
    backoff: Duration,
    /// Set once the drain began: when it gives up on what is left.
    drain_until: Option<Instant>,
    /// Connections open once the drain had taken the backlog.
    open_at_drain: usize,
}

/// How a worker's drain went.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ended {
    /// Connections open once the drain had taken the backlog (idle ones close at the same
    /// moment).
    pub(super) open_at_drain: usize,
    /// Connections closed by force: the grace ran out, or a second signal came.
    pub(super) force_closed: u64,
}

impl Worker {
    /// A worker serving `listener`'s connections with `answer`, and the waker that tells
    /// it to look at the server's [`Control`].
    pub(super) fn new(
        mut listener: mio::net::TcpListener,
        shared: Arc<Shared>,
        answer: Answerer,
    ) -> io::Result<(Self, mio::Waker)> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let core = Core {
            listener: Some(listener),
            // Reserved, not touched: pages come into memory as connections fill them, and
            // the slab never moves its connections to grow (a doubling would hold the old
            // and the new array at once).
            conns: Slab::with_capacity(shared.config.max_conns.min(MAX_RESERVED)),
            timers: Timers::default(),
            shared,
            answer,
            scratch: Scratch::new(),
            again: Vec::new(),
            next_generation: 0,
            accept_retry: None,
            backoff: MIN_ACCEPT_BACKOFF,
            drain_until: None,
            open_at_drain: 0,
        };
        let w = Worker {
            poll,
            events: Events::with_capacity(EVENTS),
            core,
        };
        Ok((w, waker))
    }

    /// Serves until the drain has closed every connection (or given up on them when the
    /// grace ran out) or `control` says force.
    pub(super) fn run(mut self, control: &Control) -> io::Result<Ended> {
        loop {
            let timeout = self.core.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            let registry = self.poll.registry();
            let core = &mut self.core;
            for ev in self.events.iter() {
                match ev.token() {
                    LISTENER => core.accept(registry, now),
                    WAKER => {}
                    Token(key) => {
                        if let Some(c) = core.conns.get_mut(key) {
                            // Errors and hang-ups are reported by the next read or write.
                            let closed = ev.is_read_closed() || ev.is_error();
                            c.read_closed |= closed;
                            c.readable |= ev.is_readable() || closed;
                            c.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
                            core.drive(key, now);
                        }
                    }
                }
            }
            core.drive_again(now);
            match control.get() {
                FORCE => {
                    let forced = core.close_all();
                    return Ok(core.ended(forced));
                }
                DRAIN if core.drain_until.is_none() => core.start_drain(registry, now),
                _ => {}
            }
            core.fire_timers(now);
            core.retry_accept(registry, now);
            if let Some(until) = core.drain_until {
                if core.conns.is_empty() && core.listener.is_none() {
                    return Ok(core.ended(0));
                }
                if until <= now {
                    let forced = core.close_all();
                    return Ok(core.ended(forced));
                }
            }
        }
    }
}

impl Core {
    /// How long the next wait may last: until the first timer, accept retry or the end of
    /// the drain; not at all when connections are waiting for another turn.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        [self.timers.next(), self.accept_retry, self.drain_until]
            .into_iter()
            .flatten()
            .min()
            // Rounded up to the next millisecond by mio: a timer is never seen early.
            .map(|t| t.saturating_duration_since(now))
    }

    /// The connections, the thread's buffers and the per-request settings, borrowed apart.
    fn parts(&mut self) -> (&mut Slab<Conn>, &mut Scratch, Ctx<'_>) {
        let cx = Ctx {
            shared: &self.shared,
            answer: &self.answer,
        };
        (&mut self.conns, &mut self.scratch, cx)
    }

    /// Drives connection `key` after an event, then settles what that left.
    fn drive(&mut self, key: usize, now: Instant) {
        let (conns, sc, cx) = self.parts();
        let Some(c) = conns.get_mut(key) else {
            return;
        };
        let d = c.drive(now, sc, cx);
        self.settle(key, d, now);
    }

    /// Connections whose read budget ran out, once each.
    fn drive_again(&mut self, now: Instant) {
        for (key, generation) in std::mem::take(&mut self.again) {
            if let Some(c) = self
                .conns
                .get_mut(key)
                .filter(|c| c.generation == generation)
            {
                c.queued = false;
                self.drive(key, now);
            }
        }
    }

    /// After a connection was driven: closes it if it ended, starts its end if the drain
    /// finds it idle, queues it for another turn, and files its next deadline.
    fn settle(&mut self, key: usize, d: Drive, now: Instant) {
        let d = match d {
            Drive::Keep if self.drain_until.is_some() => {
                let (conns, sc, cx) = self.parts();
                match conns.get_mut(key) {
                    // A request that came after the last (short) read: answered on the
                    // next turn, before the FIN.
                    Some(c) if c.is_idle() && c.kernel_has_data() => {
                        c.readable = true;
                        Drive::Again
                    }
                    Some(c) if c.is_idle() => {
                        c.begin_end(ConnEnd::Drained, Then::FinFirst);
                        c.drive(now, sc, cx)
                    }
                    _ => Drive::Keep,
                }
            }
            d => d,
        };
        match d {
            Drive::End(end) => return self.close(key, end),
            Drive::Again => {
                // Once on the list, however many events asked: a turn's reads stay bounded.
                if let Some(c) = self.conns.get_mut(key).filter(|c| !c.queued) {
                    c.queued = true;
                    self.again.push((key, c.generation));
                }
            }
            Drive::Keep => {}
        }
        self.rearm(key, now);
    }

    /// Files connection `key` under its deadline, unless it is filed under an earlier one
    /// (see [`super::timers`]).
    ///
    /// Deadlines are moved later onto shared slots (`coalesce`, by at most 1/64 of the
    /// wait, as the default engine's): connections due within one slot wake the thread
    /// once. Without it, 19 000 connections pinged every 10 s woke it about twice a ping,
    /// each wake a sleep of under a millisecond (8.5 % of a core instead of 2.5 %).
    fn rearm(&mut self, key: usize, now: Instant) {
        let write_timeout = self.shared.config.write_timeout;
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        // Filed already, under a deadline no later than its own: nothing to do (the
        // common case, a request answered, costs no deadline computation).
        if c.armed.is_some() && !c.may_be_due_sooner() {
            return;
        }
        let Some(at) = c.deadline(write_timeout) else {
            return;
        };
        let at = coalesce(at, now);
        if c.armed.is_none_or(|a| at < a) {
            c.armed = Some(at);
            self.timers.push(Armed {
                at,
                key,
                generation: c.generation,
            });
        }
    }

    /// Runs the timers due at `now`.
    fn fire_timers(&mut self, now: Instant) {
        while let Some(a) = self.timers.pop_due(now) {
            let (conns, sc, cx) = self.parts();
            let Some(c) = conns.get_mut(a.key) else {
                continue;
            };
            if c.generation != a.generation || c.armed != Some(a.at) {
                continue;
            }
            c.armed = None;
            let d = match c.on_timer(now, sc, cx) {
                // Pings may have filled the socket; what the timer left, the drive goes on with.
                Drive::Keep => c.drive(now, sc, cx),
                d => d,
            };
            self.settle(a.key, d, now);
        }
        let conns = &self.conns;
        self.timers.compact(conns.len(), |a| {
            conns
                .get(a.key)
                .is_some_and(|c| c.generation == a.generation && c.armed == Some(a.at))
        });
    }

    /// Accepts every connection the listener holds.
    fn accept(&mut self, registry: &Registry, now: Instant) {
        if self.accept_retry.is_some() {
            return;
        }
        while let Some(l) = &self.listener {
            match l.accept() {
                Ok((stream, peer)) => {
                    self.backoff = MIN_ACCEPT_BACKOFF;
                    self.admit(registry, stream, peer, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient_accept_error(&e) => {}
                Err(e) => return self.accept_failed(&e, now),
            }
        }
    }

    /// EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending connection stays in the backlog; wait
    /// rather than spin on it (edge-triggered, the listener raises no new event for it).
    fn accept_failed(&mut self, e: &io::Error, now: Instant) {
        ServerStats::add(&self.shared.stats.errors_accept, 1);
        if let Some(held) = self.shared.accept_log.check(now) {
            tracing::error!(error = %e, held_back = held, backoff = %humantime::format_duration(self.backoff), "accept failed; backing off");
        }
        self.accept_retry = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_ACCEPT_BACKOFF);
    }

    fn retry_accept(&mut self, registry: &Registry, now: Instant) {
        if self.accept_retry.is_some_and(|t| t <= now) {
            self.accept_retry = None;
            self.accept(registry, now);
            self.close_listener_once_swept(registry);
        }
    }

    /// During the drain, once the backlog is empty (no accept waits for descriptors to
    /// retry): the listener is closed. Until then it stays, so that connections the kernel
    /// acknowledged are answered rather than reset.
    fn close_listener_once_swept(&mut self, registry: &Registry) {
        if self.drain_until.is_none() || self.accept_retry.is_some() {
            return;
        }
        if let Some(mut l) = self.listener.take() {
            // The other workers' copies keep the socket open: take it out of this epoll.
            let _ = registry.deregister(&mut l);
        }
    }

    /// Counts, limits and registers an accepted socket (a reset when a limit refuses it).
    fn admit(
        &mut self,
        registry: &Registry,
        mut stream: mio::net::TcpStream,
        peer: SocketAddr,
        now: Instant,
    ) {
        let shared = &self.shared;
        let stats = &shared.stats;
        ServerStats::add(&stats.accepted, 1);
        let Some(global) = shared.limits.try_global() else {
            return shared.refuse_max_conns(stream, peer, now);
        };
        let Some(ip) = shared.limits.try_ip(peer.ip()) else {
            shared.refused_per_ip(&stream, peer, now);
            // Counted closed, as the default engine's per-IP refusals are.
            ServerStats::add(&stats.closed, 1);
            return;
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let registered = shared.apply_socket_options(&stream).and_then(|()| {
            registry.register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
        });
        if let Err(e) = registered {
            ServerStats::add(&stats.closed, 1);
            ConnEnd::Io(e).count(stats);
            return;
        }
        self.next_generation = self.next_generation.wrapping_add(1);
        entry.insert(Conn::new(
            stream,
            peer,
            shared,
            self.next_generation,
            now,
            ip,
            global,
        ));
        // Nothing to read yet: the registration reports at once whatever is there.
        self.rearm(key, now);
    }

    /// Closes connection `key` and accounts for its end.
    fn close(&mut self, key: usize, end: ConnEnd) {
        let Some(c) = self.conns.try_remove(key) else {
            return;
        };
        let stats = &self.shared.stats;
        ServerStats::add(&stats.closed, 1);
        end.count(stats);
        end.log(c.id, c.peer);
        // Closing the socket takes it out of the epoll set: no EPOLL_CTL_DEL.
        drop(c);
    }

    /// The drain: connections waiting in the backlog are taken (the kernel acknowledged
    /// their requests), the listener closed, and every connection driven once, with a read
    /// even if no event came (its request may be in the socket with its event not yet
    /// handled): idle ones then end with a FIN.
    fn start_drain(&mut self, registry: &Registry, now: Instant) {
        self.drain_until = Some(crate::deadline::after(
            now,
            self.shared.config.shutdown_grace,
        ));
        // A backoff grown by earlier accept failures would put the backlog's next sweep
        // past a short grace: the drain starts it afresh.
        self.accept_retry = None;
        self.backoff = MIN_ACCEPT_BACKOFF;
        self.accept(registry, now);
        // Out of descriptors (EMFILE): the backlog is swept again on the retry timer.
        self.close_listener_once_swept(registry);
        self.open_at_drain = self.conns.len();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(c) = self.conns.get_mut(key) {
                c.readable = true;
            }
            self.drive(key, now);
        }
    }

    fn ended(&self, force_closed: u64) -> Ended {
        Ended {
            open_at_drain: self.open_at_drain,
            force_closed,
        }
    }

    /// Closes every connection at once: the grace ran out, or a second signal came.
    fn close_all(&mut self) -> u64 {
        let n = self.conns.len() as u64;
        let stats = &self.shared.stats;
        ServerStats::add(&stats.force_closed, n);
        ServerStats::add(&stats.closed, n);
        self.conns.clear();
        n
    }
}
