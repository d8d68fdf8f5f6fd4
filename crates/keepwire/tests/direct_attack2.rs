//! Second hostile review of the direct engine (`Server::serve_direct`, `server/direct/`),
//! after the fixes of the first (`direct_attack.rs`): the sticky `read_closed` flag, the
//! liveness pause while a write is blocked, the EMFILE re-sweep at the drain, the
//! `ForceOnDrop` guard. Here: those fixes under the conditions they were not tried in (a FIN
//! riding the last data segment, under the read budget, behind a stalled batch, in a
//! linger), what the pause does once the block clears, the timers at scale, the two event
//! loops of a two-CPU process sharing limits and the drain, descriptors running out at the
//! drain and at the start, and input meant to make the loop panic.
//!
//! Same rules as the first round: real loopback sockets, short configured durations,
//! generous upper bounds, every wait an event with a timeout as its failure bound. A
//! scenario that applies to both engines runs on the default one first (the reference: if
//! it fails there, the test is wrong). Scenarios that lower RLIMIT_NOFILE or measure the
//! process's CPU time or memory run in a child process of their own (this test binary,
//! started again on one test), where no other test shares the process.
//!
//! A FIN "in the same segment" as data: the client corks its socket (`TCP_CORK`), writes,
//! then shuts down its side; the kernel tacks the FIN onto the last unsent segment, so the
//! server's socket gets the bytes and the end of stream in one event.
//!
//! Failing on the code they were written against (each on the direct engine only; the
//! default engine passes them):
//! - `after_a_write_block_clears_idle_timeouts_count_again`: once a blocked write clears,
//!   the connection stays filed in the timer heap under its write deadline
//!   (`blocked_since + write_timeout`): `Core::rearm` skips the deadline computation because
//!   `Conn::may_be_due_sooner` is false again (buffers empty, no ping). The idle timeouts,
//!   paused while blocked, then fire only at that old write deadline: seconds late (30 s
//!   with the default `write_timeout`), where the default engine closes on time.
//! - `a_request_that_arrives_while_the_drain_answers_a_batch_is_answered`: in the drain, a
//!   connection is declared idle (`Core::settle`: `Conn::is_idle`) on the strength of its
//!   last read having been short; a request that reached the socket after that read, while
//!   the batch was being answered, is then dropped by the linger that follows the FIN. The
//!   default engine asks the kernel (`kernel_has_data`, a peek) before it closes.
//! - `emfile_before_the_shutdown_does_not_slow_the_drains_backlog_sweep`: the drain's
//!   backlog sweep keeps the accept backoff grown by the failures before the shutdown (up
//!   to 1 s), so with a shorter grace the retry comes after the grace and the backlog is
//!   reset with the listener; the default engine's sweep starts again from 5 ms.

mod common;
#[path = "common/engines.rs"]
mod engines;
#[path = "common/queues.rs"]
mod queues;

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Client, SOON, eventually, same};
use engines::*;
use keepwire::liveness::PingConfig;
use keepwire::server::{Mode, Reply, Server, ServerError, ServerStats};
use keepwire::tcpstate::TcpState;
use queues::queues;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Writes `bytes` and the FIN so that the FIN rides the last data segment: the socket is
/// corked (segments are held until full), the FIN is tacked onto the unsent tail.
async fn write_with_fin_in_the_last_segment(s: &mut TcpStream, bytes: &[u8]) {
    socket2::SockRef::from(&*s).set_tcp_cork(true).unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
}

/// The same, on the write half of a split stream.
async fn write_half_with_fin_in_the_last_segment(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
) {
    socket2::SockRef::from(w.as_ref())
        .set_tcp_cork(true)
        .unwrap();
    w.write_all(bytes).await.unwrap();
    w.shutdown().await.unwrap();
}

/// Reads until the stream ends or `bound` runs out, slowly: a pause of `pause` every
/// `every` reads (so that the server's writes block now and then).
async fn read_slowly_to_end<R: AsyncReadExt + Unpin>(
    s: &mut R,
    bound: Duration,
    every: usize,
    pause: Duration,
) -> (Vec<u8>, Ending) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + bound;
    let mut reads = 0usize;
    let end = loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => break Ending::Open,
            Ok(Ok(0)) => break Ending::Fin,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break Ending::Reset(e.kind()),
        }
        reads += 1;
        if reads % every == 0 {
            tokio::time::sleep(pause).await;
        }
    };
    (got, end)
}

/// Whether the server (`server`) has read everything each of `clients` wrote: one look at
/// the kernel's table for all of them (it can be long: reading it once per client takes
/// longer than a short timer).
fn all_read_by_server(clients: &[SocketAddr], server: SocketAddr) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let mut q = std::collections::HashMap::new();
    for line in table.lines() {
        let Some(e) = keepwire::tcpstate::parse_table(line).first().copied() else {
            continue;
        };
        let Some((tx, rx)) = line
            .split_whitespace()
            .nth(4)
            .and_then(|v| v.split_once(':'))
        else {
            continue;
        };
        let (tx, rx) = (
            u64::from_str_radix(tx, 16).unwrap_or(u64::MAX),
            u64::from_str_radix(rx, 16).unwrap_or(u64::MAX),
        );
        q.insert((e.local, e.remote), (tx, rx));
    }
    clients.iter().all(|&c| {
        q.get(&(c, server))
            .is_some_and(|&(unacked, _)| unacked == 0)
            && q.get(&(server, c)).is_some_and(|&(_, unread)| unread == 0)
    })
}

/// Whether the peer's FIN has reached `s` (`POLLRDHUP`), without waiting.
fn fin_received(s: &TcpStream) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(s, PollFlags::RDHUP)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&zero)).unwrap();
    fds[0].revents().contains(PollFlags::RDHUP)
}

/// A small deterministic generator (xorshift), for the fuzz.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ------------------------------------------------------------------ 1. the FIN fix, again

/// Data and the FIN in one segment while the server lingers for the peer's FIN: in the
/// drain (the server's FIN sent first, a linger of up to 1 s) and in short mode after the
/// reply (a wait of up to `short_close_wait`). 1 MiB each time, more than a turn's read
/// budget, the FIN on its last segment. The linger ends at that FIN, not when it runs out.
/// A second drained connection that never closes shows the linger is real. On both
/// engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_fin_in_one_segment_end_a_linger_at_once() {
    const QUICK: Duration = Duration::from_millis(600);
    for eng in BOTH {
        // The drain's linger.
        let srv = start(eng, cfg("len:be:2"), Reply::Echo).await;
        let mut x = connect(srv.addr).await;
        let mut control = connect(srv.addr).await;
        eventually("both accepted", || srv.stats.snapshot().accepted == 2).await;
        let drained_at = Instant::now();
        srv.stop.cancel();
        for (name, s) in [("x", &mut x), ("control", &mut control)] {
            expect_fin_only(s, DRAIN_BOUND, &format!("{eng:?}: {name}")).await;
        }
        // More than the read budget of a turn (4 x 64 KiB), the FIN on its last segment.
        write_with_fin_in_the_last_segment(&mut x, &pattern(1 << 20, 5)).await;
        let took = srv.closed_within(1, SOON).await;
        assert!(
            took.is_some_and(|t| t < QUICK),
            "{eng:?}: a lingering connection closed {took:?} after data and the FIN came in \
             one segment: the FIN was not seen (the linger is 1 s)"
        );
        let took = srv
            .closed_within(2, SOON)
            .await
            .map(|_| drained_at.elapsed());
        assert!(
            took.is_some_and(|t| t >= ms(900)),
            "{eng:?}: the control connection, which never closes, left the linger after \
             {took:?}"
        );
        drop((x, control));
        let report = srv.join().await;
        assert_eq!(report.force_closed, 0, "{eng:?}: {report:?}");

        // Short mode's wait for the client's FIN.
        let srv = short_echo(eng, Duration::from_secs(20)).await;
        let mut s = connect(srv.addr).await;
        echo_f2(&mut s, b"one", "the reply").await;
        let mut junk = f2(b"ignored");
        junk.extend(pattern(1 << 20, 6));
        write_with_fin_in_the_last_segment(&mut s, &junk).await;
        let took = srv.closed_within(1, SOON).await;
        assert!(
            took.is_some_and(|t| t < QUICK),
            "{eng:?}: short mode: closed {took:?} after the client's bytes and FIN came in \
             one segment (short_close_wait is 20 s)"
        );
        expect_fin_only(&mut s, SOON, &format!("{eng:?}")).await;
        srv.shutdown().await;
    }
}

/// Pipelined requests whose replies (200 KiB each) block a slow reader, sent with the FIN in
/// their last segment: the server's batch stops at the full socket with frames left in its
/// read buffer (`stalled`) and the FIN already in the kernel, its event spent. In long mode
/// every reply comes, whole and in order, then the server's FIN; in short mode exactly one
/// reply, then the FIN (the other frames dropped), long before `short_close_wait`. On both
/// engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_and_fin_in_one_burst_behind_a_stalled_batch() {
    const N: usize = 30;
    let reply = Bytes::from(pattern(200 * 1024 + 3, 11));
    for (eng, mode) in BOTH_IN_BOTH_MODES {
        let mut c = cfg("len:be:4");
        c.mode = mode;
        c.short_close_wait = Duration::from_secs(20);
        let srv = start(eng, c, Reply::Fixed(reply.clone())).await;
        let mut s = connect_small_rcvbuf(srv.addr).await;
        let me = s.local_addr().unwrap();
        let wire = numbered_f4(N, "q");
        write_with_fin_in_the_last_segment(&mut s, &wire).await;
        // Everything, the FIN included, in the server's kernel before the client reads.
        eventually("the requests and the FIN delivered", || {
            queues(me, srv.addr).is_some_and(|(unacked, _)| unacked == 0)
        })
        .await;
        server_writes_blocked(me, srv.addr).await;
        let (got, end) = read_slowly_to_end(&mut s, SOON, 16, ms(1)).await;
        let (frames, rest) = decode_all("len:be:4", &got);
        let want = if mode == Mode::Short { 1 } else { N };
        assert_eq!(
            (frames.len(), rest),
            (want, 0),
            "{eng:?}, {mode} mode: replies ({} bytes, ended {end:?})",
            got.len()
        );
        for f in &frames {
            same("a reply behind a stall", f, &reply);
        }
        assert_eq!(end, Ending::Fin, "{eng:?}, {mode} mode");
        srv.closed(1).await;
        let st = srv.stats.snapshot();
        assert_eq!(
            (st.frames_out, st.errors_io, st.errors_truncated),
            (want as u64, 0, 0),
            "{eng:?}, {mode} mode: {st:?}"
        );
        drop(s);
        srv.shutdown().await;
    }
}

/// A burst longer than the read budget (four 64 KiB reads a turn, then the connection waits
/// on the worker's `again` list) with the FIN in its last segment: under `len:be:4`, 700 KiB
/// of small requests, every one answered, then the server's FIN; under `eof` framing (the
/// frame is everything up to the FIN), 1 MiB echoed whole, then the FIN. On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fin_on_the_last_segment_of_a_burst_longer_than_the_read_budget_is_seen() {
    for eng in BOTH {
        for framing in ["len:be:4", "eof:max=2000000"] {
            let mut c = cfg(framing);
            c.heartbeat = None;
            let srv = start(eng, c, Reply::Echo).await;
            let s = connect(srv.addr).await;
            let (mut r, mut w) = s.into_split();
            let (wire, want) = if framing == "eof:max=2000000" {
                let body = pattern(1 << 20, 3);
                (body.clone(), body)
            } else {
                let wire: Vec<u8> = (0..7000)
                    .flat_map(|i| {
                        let mut b = format!("r{i:05}-").into_bytes();
                        b.resize(96, b'.');
                        f4(&b)
                    })
                    .collect();
                (wire.clone(), wire)
            };
            let writer = tokio::spawn(async move {
                write_half_with_fin_in_the_last_segment(&mut w, &wire).await;
                w
            });
            let (got, end) = read_to_end_within(&mut r, SOON).await;
            let w = writer.await.unwrap();
            same(&format!("{eng:?}, {framing}: the echo"), &got, &want);
            assert_eq!(end, Ending::Fin, "{eng:?}, {framing}");
            drop((r, w));
            srv.closed(1).await;
            srv.shutdown().await;
        }
    }
}

/// A reset instead of a FIN while the server is blocked writing, with frames left in its
/// read buffer and more in the kernel (the error event sets `read_closed` while replies are
/// owed): only that connection ends, counted as an I/O error, and its slot (`max_conns` 1)
/// goes to the next. On both engines, the same counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_behind_a_stalled_batch_ends_only_that_connection() {
    let reply = Bytes::from(pattern(256 * 1024, 4));
    let mut snaps = Vec::new();
    for eng in BOTH {
        let mut c = cfg("len:be:4");
        c.max_conns = 1;
        let srv = start(eng, c, Reply::Fixed(reply.clone())).await;
        let mut s = connect_small_rcvbuf(srv.addr).await;
        let me = s.local_addr().unwrap();
        let wire: Vec<u8> = (0..40).flat_map(|_| f4(b"q")).collect();
        s.write_all(&wire).await.unwrap();
        server_writes_blocked(me, srv.addr).await;
        s.write_all(&wire).await.unwrap();
        eventually("the later requests in the server's kernel", || {
            queues(me, srv.addr).is_some_and(|(unacked, _)| unacked == 0)
        })
        .await;
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
        srv.closed(1).await;
        let mut next = Client::connect(srv.addr, "len:be:4").await;
        next.send(b"next").await;
        same("the next connection", &next.recv().await.unwrap(), &reply);
        drop(next);
        srv.closed(2).await;
        let st = srv.stats.snapshot();
        snaps.push((eng, st));
        srv.shutdown().await;
    }
    let [(_, t), (_, d)] = [snaps[0], snaps[1]];
    assert_eq!(
        (d.closed, d.errors_io, d.rejected_max_conns),
        (t.closed, t.errors_io, t.rejected_max_conns),
        "direct {d:?}\ntokio {t:?}"
    );
    assert_eq!(d.errors_io, 1, "{d:?}");
}

/// Fifty connections at once, each sending its request and its FIN in one segment, in long
/// and short mode: a reply, then the server's FIN, long before any timeout (the first
/// round's half-close test, with the FIN made certain to ride the data). On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_requests_each_with_its_fin_in_one_segment_are_answered_then_closed() {
    const N: usize = 50;
    let wait = Duration::from_secs(20);
    let failures = echo_clients_in_both_modes(N, Some(wait), |addr, i| async move {
        let mut s = connect(addr).await;
        let body = format!("fin-{i}");
        write_with_fin_in_the_last_segment(&mut s, &f2(body.as_bytes())).await;
        let (got, end) = read_to_end_within(&mut s, Duration::from_secs(3)).await;
        (got == f2(body.as_bytes()), end)
    })
    .await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// During the drain, a connection busy with a large batch (12 000 small requests in one
/// 60 KiB write, after the rest of a frame it had begun before the shutdown) sends one more
/// request 1 ms later, while the server is still answering the batch. A request that is in
/// the server's socket before the server's FIN (the client has not seen the FIN when its
/// send returns: loopback delivers within the send) must be answered before the FIN: the
/// default engine asks the kernel whether bytes wait before it closes a drained connection;
/// it must not be dropped by the linger. Five connections, one after the other; at least
/// one request must be in time (else the test proves nothing). On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_arrives_while_the_drain_answers_a_batch_is_answered() {
    const FRAMES: usize = 12_000;
    for eng in BOTH {
        let srv = start(eng, cfg("len:be:4"), Reply::Echo).await;
        let mut busy = Vec::new();
        for _ in 0..5 {
            let mut s = connect(srv.addr).await;
            // A frame begun: the connection is not idle when the drain starts.
            s.write_all(&[0, 0, 0, 2, b'a']).await.unwrap();
            busy.push(s);
        }
        let mine: Vec<SocketAddr> = busy.iter().map(|s| s.local_addr().unwrap()).collect();
        eventually("the begun frames read", || {
            all_read_by_server(&mine, srv.addr)
        })
        .await;
        let mut idle = connect(srv.addr).await;
        eventually("all accepted", || srv.stats.snapshot().accepted == 6).await;
        srv.stop.cancel();
        let (_, end) = read_to_end_within(&mut idle, DRAIN_BOUND).await;
        assert_eq!(end, Ending::Fin, "{eng:?}: the drain has not started");
        let mut lost = Vec::new();
        let mut timely = 0;
        for (i, s) in busy.into_iter().enumerate() {
            let mut batch = vec![b'b'];
            for k in 0..FRAMES {
                batch.extend(f4(&[b'0' + (k % 10) as u8]));
            }
            let last = f4(format!("late-{i}").as_bytes());
            let mut want = f4(b"ab");
            want.extend_from_slice(&batch[1..]);
            want.extend_from_slice(&last);
            let (mut r, mut w) = s.into_split();
            let reader = tokio::spawn(async move {
                // When the first reply came.
                let mut first = [0u8; 1];
                let n = tokio::time::timeout(SOON, r.read(&mut first)).await;
                let at = Instant::now();
                let (mut got, end) = read_to_end_within(&mut r, SOON).await;
                if matches!(n, Ok(Ok(1))) {
                    got.insert(0, first[0]);
                }
                (got, end, at)
            });
            w.write_all(&batch).await.unwrap();
            tokio::time::sleep(ms(1)).await;
            // (The server may already have closed: then the write fails or is dropped.)
            let _ = w.write_all(&last).await;
            // Whether the server's FIN had come when the late request was in its socket
            // (loopback delivers within the send): if not, the server had not closed yet.
            let in_time = !fin_received(w.as_ref());
            let sent = Instant::now();
            let (got, end, first_reply) = reader.await.unwrap();
            if got != want || end != Ending::Fin {
                let (frames, rest) = decode_all("len:be:4", &got);
                if in_time {
                    lost.push(format!(
                        "connection {i}: {} of {} replies ({rest} bytes over), last {:?}, \
                         {end:?}; the late request was in the socket before the server's \
                         FIN, {:?} before the batch's first reply came",
                        frames.len(),
                        FRAMES + 2,
                        frames.last(),
                        first_reply.saturating_duration_since(sent),
                    ));
                }
            }
            timely += usize::from(in_time);
            drop(w);
        }
        drop(idle);
        let report = srv.join().await;
        assert!(
            timely > 0,
            "{eng:?}: the late request never reached the server before its FIN (a machine \
             too fast for this test)"
        );
        assert!(
            lost.is_empty(),
            "{eng:?}: requests in the socket before the drain's FIN went unanswered: {lost:#?}"
        );
        assert_eq!(report.force_closed, 0, "{eng:?}: {report:?}");
    }
}

// ------------------------------------------------------------------ 2. liveness while blocked

/// A client asks for 8 MiB (more than the kernel buffers hold), reads nothing for a second
/// (its write blocks the server; the idle timeout, 300 ms, must not cut the reply), then
/// reads it all. Once the block clears the idle timeouts count again, and fire when they are
/// due: under `any_idle` 300 ms after the last write (not at once: the last write came
/// after the client began to read), under `read_idle` at once (the last request is more
/// than a second old). Not at the write timeout (5 s) the blocked write had. On both
/// engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_write_block_clears_idle_timeouts_count_again() {
    const IDLE: Duration = Duration::from_millis(300);
    let reply = Bytes::from(pattern(8 << 20, 8));
    let mut failures = Vec::new();
    for eng in BOTH {
        for which in ["any_idle", "read_idle"] {
            let mut c = cfg("len:be:4");
            c.write_timeout = Duration::from_secs(5);
            if which == "any_idle" {
                c.liveness.any_idle = Some(IDLE);
            } else {
                c.liveness.read_idle = Some(IDLE);
            }
            let srv = start(eng, c, Reply::Fixed(reply.clone())).await;
            let mut s = connect_small_rcvbuf(srv.addr).await;
            let me = s.local_addr().unwrap();
            s.write_all(&f4(b"big")).await.unwrap();
            server_writes_blocked(me, srv.addr).await;
            let blocked = Instant::now();
            // Longer than the idle timeout: a pause that paces the client.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let resumed = Instant::now();
            let want = reply.len() + 4;
            let mut got = Vec::with_capacity(want);
            let mut buf = vec![0u8; 256 * 1024];
            let mut end = Ending::Open;
            while got.len() < want {
                match tokio::time::timeout(SOON, s.read(&mut buf)).await {
                    Ok(Ok(0)) => {
                        end = Ending::Fin;
                        break;
                    }
                    Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    Ok(Err(e)) => {
                        end = Ending::Reset(e.kind());
                        break;
                    }
                    Err(_) => break,
                }
            }
            assert_eq!(
                got.len(),
                want,
                "{eng:?}, {which}: the reply was cut at {} bytes ({end:?})",
                got.len()
            );
            same("the blocked reply", &got[4..], &reply);
            let cleared = Instant::now();
            let (rest, end) = read_to_end_within(&mut s, Duration::from_secs(3)).await;
            let closed = Instant::now();
            assert!(rest.is_empty(), "{eng:?}, {which}: {rest:?}");
            let since_clear = closed - cleared;
            let since_resume = closed - resumed;
            let verdict = if end == Ending::Open {
                // When it does close, for the report.
                let (_, end) = read_to_end_within(&mut s, Duration::from_secs(6)).await;
                Some(format!(
                    "{eng:?}, {which}: still open 3 s after the block cleared (idle timeout \
                     {IDLE:?}); then {end:?} {:?} after the block began (write timeout 5 s)",
                    blocked.elapsed()
                ))
            } else if which == "any_idle" && since_resume < IDLE - ms(20) {
                Some(format!(
                    "{eng:?}, {which}: closed {since_resume:?} after the client began to read, \
                     before the idle timeout counted from the last write"
                ))
            } else if which == "any_idle" && since_clear > IDLE + SLACK {
                Some(format!(
                    "{eng:?}, {which}: closed {since_clear:?} after the reply was read"
                ))
            } else if which == "read_idle" && since_clear > SLACK {
                Some(format!(
                    "{eng:?}, {which}: closed {since_clear:?} after the reply was read, the \
                     idle timeout long due"
                ))
            } else {
                None
            };
            if let Some(v) = verdict {
                failures.push(v);
            } else {
                srv.closed(1).await;
                let st = srv.stats.snapshot();
                assert_eq!(
                    (st.idle_closed, st.errors_io),
                    (1, 0),
                    "{eng:?}, {which}: {st:?}"
                );
            }
            drop(s);
            srv.shutdown().await;
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A client that asks for 8 MiB and never reads, with every liveness check on and short
/// (read idle 200 ms, pings every 150 ms, a 100 ms pong timeout, two misses): liveness is
/// paused while the write is blocked, but the write timeout (1 s) still cuts the
/// connection, no sooner and not much later; no ping is written into it (a ping queued
/// behind the reply would be the only thing the client sees after it), and it is counted
/// as an I/O error, not an idle close or a heartbeat timeout. On both engines, the same
/// counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_by_the_write_timeout_with_liveness_on() {
    const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
    let reply = Bytes::from(pattern(8 << 20, 2));
    let mut snaps = Vec::new();
    for eng in BOTH {
        let mut c = cfg("len:be:4");
        c.write_timeout = WRITE_TIMEOUT;
        c.liveness.read_idle = Some(ms(200));
        c.liveness.ping = Some(PingConfig {
            interval: ms(150),
            timeout: ms(100),
            misses: 2,
        });
        let srv = start(eng, c, Reply::Fixed(reply.clone())).await;
        let mut s = connect_small_rcvbuf(srv.addr).await;
        let me = s.local_addr().unwrap();
        s.write_all(&f4(b"big")).await.unwrap();
        let asked = Instant::now();
        server_writes_blocked(me, srv.addr).await;
        let took = srv.closed_within(1, SOON).await.map(|_| asked.elapsed());
        assert!(
            took.is_some_and(|t| t >= WRITE_TIMEOUT - ms(50) && t <= WRITE_TIMEOUT + SLACK),
            "{eng:?}: a client that never reads was cut after {took:?} (write timeout \
             {WRITE_TIMEOUT:?})"
        );
        let (got, _) = read_to_end_within(&mut s, Duration::from_secs(3)).await;
        // What reached the client: a prefix of the one reply, nothing after it.
        assert!(got.len() < reply.len() + 4, "{eng:?}: the whole reply came");
        assert_eq!(&got[..4], &f4(&reply)[..4], "{eng:?}");
        same(
            &format!("{eng:?}: the part of the reply that came"),
            &got[4..],
            &reply[..got.len() - 4],
        );
        let st = srv.stats.snapshot();
        snaps.push((eng, st));
        srv.shutdown().await;
    }
    for (eng, st) in &snaps {
        assert_eq!(
            (
                st.errors_io,
                st.idle_closed,
                st.heartbeat_timeouts,
                st.pings_sent
            ),
            (1, 0, 0, 0),
            "{eng:?}: {st:?}"
        );
    }
}

// ------------------------------------------------------------------ child processes

/// This process's CPU time so far (user and system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name (which may hold spaces), from the third (state).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    let tck = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(100);
    Duration::from_millis((f[0] + f[1]) * 1000 / tck)
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Threads of this process named as the direct engine names its event loops.
fn direct_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("keepwire-direc"))
        })
        .count()
}

/// A first request and its reply (the engine is running), then the connection closed and
/// its descriptors, the client's and the server's, given back (the server counts a
/// connection closed just before it closes the socket).
fn warm_up(addr: SocketAddr, stats: &ServerStats) {
    let first = std_first(addr);
    let with_it = open_fds();
    drop(first);
    std_eventually("the first connection closed", || {
        stats.snapshot().closed == 1 && open_fds() + 2 <= with_it
    });
}

// ------------------------------------------------------------------ 2b. no spin while blocked

/// While one connection is blocked on a client that stopped reading (pings and idle
/// timeouts on, the write timeout 4 s away), the process uses almost no CPU: the blocked
/// connection's timers must not fire over and over (a deadline filed in the past, a
/// readiness flag that never clears, the `again` list refilled every turn). Over one second,
/// at most 300 ms of CPU (a spinning loop takes a whole core). On both engines, in a child
/// process (the CPU time is the whole process's).
fn no_spin_while_blocked() {
    for eng in BOTH {
        let mut c = cfg("len:be:4");
        c.write_timeout = Duration::from_secs(4);
        c.liveness.read_idle = Some(ms(100));
        c.liveness.frame_timeout = Some(ms(100));
        c.liveness.ping = Some(PingConfig {
            interval: ms(100),
            timeout: ms(50),
            misses: 1,
        });
        let mut cs = ChildSrv::start(eng, c, Reply::Fixed(Bytes::from(pattern(8 << 20, 1))));
        let addr = cs.srv().addr;
        let stats = Arc::clone(&cs.srv().stats);
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(16 * 1024).unwrap();
        let mut s = std_connect(sock, addr);
        let me = s.local_addr().unwrap();
        use std::io::Write;
        // A request and half of the next: a partial frame behind the blocked reply too.
        let mut wire = f4(b"big");
        wire.extend_from_slice(&[0, 0, 0, 9, b'h']);
        s.write_all(&wire).unwrap();
        std_eventually("the server's write blocked", || {
            queues(me, addr).is_some_and(|(_, unread)| unread > 8 * 1024)
        });
        // Past the idle, slow-frame and ping deadlines (all paused by the block).
        std::thread::sleep(ms(300));
        let before = cpu_time();
        let t = std::time::Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_time() - before;
        let wall = t.elapsed();
        println!("note: {eng:?}: {used:?} of CPU in {wall:?} with one blocked connection");
        assert!(
            used < ms(300),
            "{eng:?}: the process used {used:?} of CPU in {wall:?} with one blocked connection"
        );
        assert_eq!(
            stats.snapshot().closed,
            0,
            "{eng:?}: cut before the write timeout"
        );
        drop(s);
        cs.srv().stop.cancel();
        cs.join_result().unwrap();
    }
}

#[test]
fn no_spin_while_a_connection_is_blocked() {
    in_child(
        "no_spin_while_a_connection_is_blocked",
        no_spin_while_blocked,
    );
}

// ------------------------------------------------------------------ 3. EMFILE at the drain

/// EMFILE that lasts past the grace: three connections hold every descriptor the server may
/// open, each with half a frame (so the drain keeps them until the grace), and six more wait
/// in the backlog with their requests. The drain cannot sweep the backlog; it must still
/// end at the grace (1.5 s), not wait on the listener it keeps for the retry: the three
/// closed by force, the six reset with the listener. On both engines, in a child process.
fn emfile_past_the_grace() {
    const N: usize = 6;
    const GRACE: Duration = Duration::from_millis(1500);
    use std::io::Write;
    for eng in BOTH {
        let mut cs = child_echo(eng, GRACE);
        let addr = cs.srv().addr;
        let stats = Arc::clone(&cs.srv().stats);
        warm_up(addr, &stats);
        let mut socks = sockets(N + 3).into_iter();
        let (soft, hard) = limit_fds(3);
        let mut holders = Vec::new();
        for _ in 0..3 {
            let mut s = std_connect(socks.next().unwrap(), addr);
            s.write_all(&[0, 9, b'h']).unwrap();
            holders.push(s);
        }
        // (No look at the kernel's table from here on: reading it takes a descriptor.
        // Whether the half frames were read yet does not matter: the drain reads what waits.)
        std_eventually("the holders accepted", || stats.snapshot().accepted == 4);
        let mut waiting = std_requests(socks, addr, "w");
        std_eventually_emfile(&stats);
        let t = std::time::Instant::now();
        cs.srv().stop.cancel();
        let report = cs.join_result();
        let took = t.elapsed();
        rlimit::Resource::NOFILE.set(soft, hard).unwrap();
        let report = report.unwrap_or_else(|e| panic!("{eng:?}: {e}"));
        assert!(
            took >= GRACE - ms(50) && took <= GRACE + Duration::from_secs(2),
            "{eng:?}: the drain ended after {took:?} (grace {GRACE:?}): {report:?}"
        );
        assert_eq!(
            report.force_closed,
            3,
            "{eng:?}: {report:?} {:?}",
            stats.snapshot()
        );
        for (i, s) in waiting.iter_mut().enumerate() {
            match std_read_frame(s) {
                Ok(None) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) => {}
                other => panic!("{eng:?}: waiting connection {i} after the grace: {other:?}"),
            }
        }
        let st = stats.snapshot();
        assert_eq!(st.accepted, 4, "{eng:?}: {st:?}");
        assert_eq!(st.closed, st.accepted, "{eng:?}: {st:?}");
        drop(holders);
    }
}

#[test]
fn emfile_that_outlasts_the_grace_still_ends_the_drain_at_the_grace() {
    in_child(
        "emfile_that_outlasts_the_grace_still_ends_the_drain_at_the_grace",
        emfile_past_the_grace,
    );
}

/// EMFILE at the drain with no connection open on the server: the descriptors are held
/// elsewhere in the process, which gives them back 300 ms into the drain. The workers have
/// no connection to wait for, but the backlog is not swept: they must not end (the exit
/// condition wants the listener gone) until the retry has taken the eight connections
/// waiting there, and those are answered, not reset.
///
/// Direct engine only: the default engine, by design, gives the backlog one retry when no
/// connection is open (`finish_backlog`: "no connection left to free one") and then resets
/// it; the direct engine retries until the grace. In a child process.
fn emfile_with_nothing_open() {
    const N: usize = 8;
    let eng = Eng::Direct;
    let mut cs = child_echo(eng, Duration::from_secs(6));
    let addr = cs.srv().addr;
    let stats = Arc::clone(&cs.srv().stats);
    warm_up(addr, &stats);
    let socks = sockets(N);
    let (soft, hard) = limit_fds(0);
    let mut waiting = std_requests(socks, addr, "n");
    std_eventually_emfile(&stats);
    let errors_before = stats.snapshot().errors_accept;
    cs.srv().stop.cancel();
    std_eventually("the drain's sweep met EMFILE", || {
        stats.snapshot().errors_accept > errors_before
    });
    // A pause that paces the client (the descriptors come back later), not an assertion.
    std::thread::sleep(ms(300));
    let ended_early = cs.srv().task.is_finished();
    rlimit::Resource::NOFILE.set(soft, hard).unwrap();
    assert!(
        !ended_early,
        "{eng:?}: the server returned with connections still in its backlog"
    );
    for (i, s) in waiting.iter_mut().enumerate() {
        std_expect_reply(
            s,
            format!("n{i}").as_bytes(),
            &format!("{eng:?}: a request in the backlog while EMFILE, nothing open"),
        );
    }
    drop(waiting);
    let report = cs.join_result().unwrap();
    assert_eq!(report.force_closed, 0, "{report:?}");
    let st = stats.snapshot();
    assert_eq!(st.accepted, N as u64 + 1, "{st:?}");
}

#[test]
fn emfile_at_the_drain_with_nothing_open_still_sweeps_the_backlog() {
    in_child(
        "emfile_at_the_drain_with_nothing_open_still_sweeps_the_backlog",
        emfile_with_nothing_open,
    );
}

/// EMFILE for over a second before the shutdown (the accept backoff has grown to its
/// 1 s cap), then a drain with a short grace (800 ms): the three idle connections that hold
/// the descriptors get their FIN and close at once, and the six connections waiting in the
/// backlog must be swept and answered within the grace. The default engine's backlog sweep
/// starts over from the shortest backoff (5 ms); a sweep that kept the backoff of the
/// failures before the shutdown would first retry a second later, after the grace, and the
/// backlog would be reset with the listener. On both engines, in a child process.
fn emfile_backoff_at_the_drain() {
    const N: usize = 6;
    for eng in BOTH {
        let mut cs = child_echo(eng, ms(800));
        let addr = cs.srv().addr;
        let stats = Arc::clone(&cs.srv().stats);
        warm_up(addr, &stats);
        let mut socks = sockets(N + 3).into_iter();
        let (soft, hard) = limit_fds(3);
        let mut holders = std_holders(socks.by_ref().take(3), addr);
        let waiting = std_requests(socks, addr, "w");
        std_eventually_emfile(&stats);
        // Long enough for the backoff to reach its cap (5 ms doubled: 1.3 s). A pause that
        // paces the client, not an assertion.
        std::thread::sleep(ms(1600));
        let failures = stats.snapshot().errors_accept;
        cs.srv().stop.cancel();
        for h in &mut holders {
            match std_read_frame(h) {
                Ok(None) => {}
                other => panic!("{eng:?}: an idle holder at the shutdown: {other:?}"),
            }
        }
        drop(holders);
        let mut unanswered = Vec::new();
        for (i, mut s) in waiting.into_iter().enumerate() {
            match std_read_frame(&mut s) {
                // Answered: closed at once, so the drain need not wait for it.
                Ok(Some(f)) if f == format!("w{i}").as_bytes() => {}
                other => unanswered.push((i, other.map_err(|e| e.kind()))),
            }
        }
        let report = cs.join_result();
        rlimit::Resource::NOFILE.set(soft, hard).unwrap();
        let report = report.unwrap_or_else(|e| panic!("{eng:?}: {e}"));
        assert!(
            unanswered.is_empty(),
            "{eng:?}: connections in the backlog unanswered after {failures} accept failures \
             before the shutdown: {unanswered:?}; {report:?}"
        );
        assert_eq!(report.force_closed, 0, "{eng:?}: {report:?}");
    }
}

#[test]
fn emfile_before_the_shutdown_does_not_slow_the_drains_backlog_sweep() {
    in_child(
        "emfile_before_the_shutdown_does_not_slow_the_drains_backlog_sweep",
        emfile_backoff_at_the_drain,
    );
}

/// The engine cannot start (descriptors run out while it makes its event loops: a copy of
/// the listener, an epoll, a waker per thread): `serve_direct` fails with an engine error,
/// leaves no thread behind, and gives the listening socket back (the same port can be bound
/// again at once). For every point of failure (room for 0 to 5 descriptors). In a child.
fn engine_start_failure() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut failed = 0;
    let mut started = None;
    for room in 0..20u64 {
        let (server, addr) = rt.block_on(async {
            let s = Server::bind("127.0.0.1:0", cfg("len:be:2")).await.unwrap();
            let a = s.local_addr();
            (s, a)
        });
        let stop = server.shutdown_token();
        let (soft, hard) = limit_fds(room);
        let mut task = rt.spawn(server.serve_direct(Reply::Echo));
        // An engine that cannot start says so at once; one that started serves on.
        let r = rt.block_on(async { tokio::time::timeout(ms(500), &mut task).await });
        rlimit::Resource::NOFILE.set(soft, hard).unwrap();
        match r {
            Ok(Ok(Err(ServerError::Engine { .. }))) => failed += 1,
            Ok(other) => panic!("room for {room} descriptors: {other:?}"),
            Err(_) => {
                // Started: it serves, and stops.
                let mut c = std_connect(sockets(1).pop().unwrap(), addr);
                use std::io::Write;
                c.write_all(&f2(b"up")).unwrap();
                std_expect_reply(&mut c, b"up", "the engine that started");
                drop(c);
                stop.cancel();
                let r = rt.block_on(async { tokio::time::timeout(SOON, task).await });
                assert!(matches!(r, Ok(Ok(Ok(_)))), "{r:?}");
                started = Some(room);
                break;
            }
        }
        std_eventually("no event loop left running", || direct_threads() == 0);
        // The port is free: bound again (no listener left open on it).
        let again = std::net::TcpListener::bind(addr);
        assert!(
            again.is_ok(),
            "room for {room} descriptors: the port cannot be bound again: {again:?}"
        );
    }
    println!("note: engine start: {failed} failures before it started with room {started:?}");
    assert!(
        failed >= 1 && started.is_some(),
        "{failed} failures, started with room {started:?}"
    );
}

#[test]
fn an_engine_that_cannot_start_leaves_no_thread_and_frees_the_port() {
    in_child(
        "an_engine_that_cannot_start_leaves_no_thread_and_frees_the_port",
        engine_start_failure,
    );
}

// ------------------------------------------------------------------ 4. two event loops

/// The epoll instances of this process that watch the listening socket on `port` (the
/// direct engine's event loops: each registers its own copy of it), and for each, how many
/// of the server's connections on that port it watches. From `/proc/self/fdinfo` (an epoll's
/// targets) and `/proc/net/tcp` (which socket is which).
fn event_loops(port: u16) -> Vec<usize> {
    let mut listeners = HashSet::new();
    let mut conns = HashSet::new();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    for line in table.lines() {
        let Some(e) = keepwire::tcpstate::parse_table(line).first().copied() else {
            continue;
        };
        if e.local.port() != port {
            continue;
        }
        let Some(inode) = line
            .split_whitespace()
            .nth(9)
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        if e.state == TcpState::Listen {
            listeners.insert(inode);
        } else {
            conns.insert(inode);
        }
    }
    let inode_of = |fd: &str| -> Option<u64> {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        let link = link.to_str()?;
        link.strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    };
    let mut loops = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let fd = entry.file_name().to_string_lossy().into_owned();
        let is_epoll = std::fs::read_link(entry.path())
            .is_ok_and(|l| l.to_string_lossy().contains("eventpoll"));
        if !is_epoll {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let targets: Vec<u64> = info
            .lines()
            .filter_map(|l| l.strip_prefix("tfd:"))
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(inode_of)
            .collect();
        if targets.iter().any(|i| listeners.contains(i)) {
            loops.push(targets.iter().filter(|i| conns.contains(i)).count());
        }
    }
    loops
}

/// `n` connections from source address `ip`, each with a request (`{tag}0`, `{tag}1`, ...)
/// echoed, held open.
async fn held_from(ip: [u8; 4], addr: SocketAddr, n: usize, tag: &str) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for i in 0..n {
        let mut s = connect_from(ip, addr).await;
        echo_f2(&mut s, format!("{tag}{i}").as_bytes(), "held").await;
        held.push(s);
    }
    held
}

/// Asserts that `n` connections from source address `ip`, one after the other, are refused
/// (closed or reset with nothing sent), `what` saying otherwise.
async fn expect_refused(ip: [u8; 4], addr: SocketAddr, n: usize, what: &str) {
    for _ in 0..n {
        let r = refused_from(ip, addr).await;
        assert!(
            r.as_ref().is_ok_and(Vec::is_empty) || r.is_err(),
            "{what} ({r:?})"
        );
    }
}

/// Two event loops (this process may run on two CPUs): `max_conns` (30) and the per-IP cap
/// (20) hold across both (the 21st connection from one address and the 31st in all are
/// reset, wherever they land), the connections are spread over both loops, the drain
/// answers every request in flight on either, and `open_at_shutdown` is their sum. The
/// default engine first, for the same report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_event_loops_share_the_limits_and_the_drain() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        eprintln!("one CPU: the direct engine runs one event loop; nothing to share");
        return;
    }
    let mut reports = Vec::new();
    for eng in BOTH {
        let mut c = cfg("len:be:2");
        c.max_conns = 30;
        c.max_conns_per_ip = Some(20);
        let srv = start(eng, c, Reply::Echo).await;
        let mut held = held_from([127, 0, 0, 1], srv.addr, 20, "a").await;
        // The per-IP cap, whichever loop takes the connection.
        let what = format!("{eng:?}: the per-IP cap let a 21st connection in");
        expect_refused([127, 0, 0, 1], srv.addr, 4, &what).await;
        held.extend(held_from([127, 0, 0, 2], srv.addr, 10, "b").await);
        let what = format!("{eng:?}: max_conns let a 31st connection in");
        expect_refused([127, 0, 0, 3], srv.addr, 4, &what).await;
        let st = srv.stats.snapshot();
        assert_eq!(
            (st.rejected_per_ip, st.rejected_max_conns),
            (4, 4),
            "{eng:?}: {st:?}"
        );
        if eng == Eng::Direct {
            let loops = event_loops(srv.addr.port());
            println!("direct engine: connections per event loop: {loops:?}");
            assert_eq!(loops.len(), cpus, "event loops: {loops:?}");
            assert_eq!(loops.iter().sum::<usize>(), 30, "{loops:?}");
            // Which loop accepts a connection is the scheduler's choice (both are woken by
            // the one listener): on a loaded machine one loop can take them all, so a split
            // is reported, not required (asserted, it failed twice in this round's runs under load).
            if loops.contains(&0) {
                eprintln!(
                    "direct engine: one event loop took every connection this run: {loops:?}"
                );
            }
        }
        // A request on every connection, the shutdown right after.
        for (i, s) in held.iter_mut().enumerate() {
            s.write_all(&f2(format!("last-{i}").as_bytes()))
                .await
                .unwrap();
        }
        srv.stop.cancel();
        for (i, s) in held.iter_mut().enumerate() {
            let (got, end) = read_to_end_within(s, SOON).await;
            assert_eq!(got, f2(format!("last-{i}").as_bytes()), "{eng:?}: {i}");
            assert_eq!(end, Ending::Fin, "{eng:?}: {i}");
        }
        drop(held);
        let report = srv.join().await;
        assert_eq!(report.force_closed, 0, "{eng:?}: {report:?}");
        reports.push(report.open_at_shutdown);
    }
    assert_eq!(reports, [30, 30], "open_at_shutdown (tokio, direct)");
}

// ------------------------------------------------------------------ 5. timers at scale

/// 2 000 connections made in a burst with a 1.5 s idle timeout: every one is closed at its
/// idle timeout, not before it and not more than 1.5 s after, however many come due
/// together. On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections_idling_out_together_all_close_in_bounds() {
    const N: usize = 2000;
    const IDLE: Duration = Duration::from_millis(1500);
    for eng in BOTH {
        let mut c = cfg("len:be:2");
        c.liveness.read_idle = Some(IDLE);
        c.backlog = 4096;
        let srv = start(eng, c, Reply::Echo).await;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..N {
            let t = Instant::now();
            let mut s = TcpStream::connect(srv.addr).await.unwrap();
            set.spawn(async move {
                let mut b = [0u8; 16];
                let r = tokio::time::timeout(IDLE + Duration::from_secs(4), s.read(&mut b)).await;
                (t.elapsed(), matches!(r, Ok(Ok(0) | Err(_))))
            });
        }
        let mut early = Vec::new();
        let mut late = Vec::new();
        while let Some(r) = set.join_next().await {
            let (took, closed) = r.unwrap();
            if !closed || took > IDLE + Duration::from_millis(1500) {
                late.push(took);
            } else if took < IDLE - ms(20) {
                early.push(took);
            }
        }
        assert!(
            early.is_empty() && late.is_empty(),
            "{eng:?}: {} closed before the idle timeout (e.g. {:?}), {} late or never (e.g. {:?})",
            early.len(),
            early.first(),
            late.len(),
            late.first()
        );
        srv.closed(N as u64).await;
        assert_eq!(srv.stats.snapshot().idle_closed, N as u64, "{eng:?}");
        srv.shutdown().await;
    }
}

/// Slots reused after deadlines moved earlier: eight connections each start a frame (their
/// slow-frame deadline, 400 ms, filed before their idle one) and close; eight more take
/// their slots while those entries are still filed. The later ones must live their own idle
/// timeout (1.2 s), not die at the earlier connections' slow-frame deadlines, and an idle
/// close must not be counted as a frame timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_slot_ignores_an_earlier_connections_slow_frame_deadline() {
    const IDLE: Duration = Duration::from_millis(1200);
    let mut c = cfg("len:be:2");
    c.liveness.read_idle = Some(IDLE);
    c.liveness.frame_timeout = Some(ms(600));
    let srv = start(Eng::Direct, c, Reply::Echo).await;
    let mut early = Vec::new();
    for _ in 0..8 {
        let mut s = connect(srv.addr).await;
        s.write_all(&[0, 50, b'p']).await.unwrap();
        early.push(s);
    }
    let mine: Vec<SocketAddr> = early.iter().map(|s| s.local_addr().unwrap()).collect();
    eventually("the partial frames read", || {
        all_read_by_server(&mine, srv.addr)
    })
    .await;
    // Their FINs end them (truncated frames), their slow-frame entries still filed.
    drop(early);
    srv.closed(8).await;
    assert_eq!(srv.stats.snapshot().errors_truncated, 8);
    later_ones_live_their_idle_timeout(srv.addr, 8, IDLE, ms(20)).await;
    srv.closed(16).await;
    let st = srv.stats.snapshot();
    assert_eq!(
        (st.idle_closed, st.frame_timeouts, st.errors_truncated),
        (8, 0, 8),
        "{st:?}"
    );
    srv.shutdown().await;
}

/// Deadlines that move earlier over and over: 1 500 connections answer every ping
/// (interval 100 ms, the shortest the config takes; timeout a minute), so every pong brings
/// the next ping's deadline before the filed one (the pong timeout) and files a second
/// entry; the first stays in the heap, stale, for a minute. A stale entry per ping: about
/// 15 000 a second. The heap is rebuilt past twice the connections plus 1024 entries, so
/// its memory must stay flat: over three seconds in which at least 30 000 stale entries are
/// filed (32 bytes each, about 1 MiB, in a doubling vector: 2 MiB), the process's resident
/// memory may grow by at most half of what they would take. Direct engine only (the default
/// engine has no heap), in a child process.
fn heap_stays_flat() {
    const CONNS: usize = 1500;
    let mut c = cfg("len:be:2");
    c.liveness.ping = Some(PingConfig {
        interval: ms(100),
        timeout: FAR,
        misses: 3,
    });
    let mut cs = ChildSrv::start(Eng::Direct, c, Reply::Echo);
    let addr = cs.srv().addr;
    let stats = Arc::clone(&cs.srv().stats);
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let stop = stop.clone();
        let s = cs.rt.block_on(connect(addr));
        tasks.push(cs.rt.spawn(async move {
            let mut s = s;
            let mut hdr = [0u8; 2];
            while !stop.is_cancelled() {
                match tokio::time::timeout(ms(200), s.read_exact(&mut hdr)).await {
                    Ok(Ok(_)) => {
                        assert_eq!(hdr, [0, 0], "a ping");
                        s.write_all(&[0, 0]).await.unwrap();
                    }
                    Ok(Err(e)) => panic!("closed: {e}"),
                    Err(_) => {}
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (rss0, pings0) = (rss_kib(), stats.snapshot().pings_sent);
    std::thread::sleep(Duration::from_secs(3));
    let (rss1, pings1) = (rss_kib(), stats.snapshot().pings_sent);
    stop.cancel();
    for t in tasks {
        cs.rt.block_on(t).unwrap();
    }
    let grew = rss1.saturating_sub(rss0);
    let stale = pings1 - pings0;
    println!(
        "note: heap: {stale} pings in 3 s on {CONNS} connections; resident memory \
         {rss0} KiB -> {rss1} KiB"
    );
    assert!(
        stale >= 30_000,
        "only {stale} pings in 3 s: too few stale entries to tell (a slow machine?)"
    );
    assert!(
        grew * 1024 < stale * 32 / 2,
        "resident memory grew by {grew} KiB while {stale} deadlines moved earlier"
    );
    assert_eq!(stats.snapshot().heartbeat_timeouts, 0);
    cs.srv().stop.cancel();
    cs.join_result().unwrap();
}

#[test]
fn deadlines_moving_earlier_over_and_over_keep_the_timer_heap_flat() {
    in_child(
        "deadlines_moving_earlier_over_and_over_keep_the_timer_heap_flat",
        heap_stays_flat,
    );
}

// ------------------------------------------------------------------ 6. replies near 64 KiB

/// Fixed replies at the 64 KiB write threshold (`MAX_PENDING_WRITE`): a body of exactly
/// 64 KiB, and one whose frame (header included) is exactly 64 KiB, to 100 requests
/// pipelined in one write and read slowly. Every reply whole, in order. On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_at_the_64_kib_threshold_to_pipelined_requests_arrive_whole() {
    const N: usize = 100;
    for eng in BOTH {
        for body in [64 * 1024, 64 * 1024 - 4] {
            let reply = Bytes::from(pattern(body, body as u8));
            let srv = start(eng, cfg("len:be:4"), Reply::Fixed(reply.clone())).await;
            let s = connect_small_rcvbuf(srv.addr).await;
            let (mut r, mut w) = s.into_split();
            let wire = numbered_f4(N, "p");
            w.write_all(&wire).await.unwrap();
            let want = N * (body + 4);
            let what = format!("{eng:?}, body {body}");
            let got = read_paced(&mut r, want, 64 * 1024, 32, ms(2), &what).await;
            let (frames, rest) = decode_all("len:be:4", &got);
            assert_eq!((frames.len(), rest), (N, 0), "{eng:?}, body {body}");
            for f in &frames {
                same("a reply at the threshold", f, &reply);
            }
            drop((r, w));
            srv.closed(1).await;
            srv.shutdown().await;
        }
    }
}

// ------------------------------------------------------------------ 7. panics and the again list

/// Connections that overrun the read budget (600 KiB of requests in one write, so each
/// goes on the worker's `again` list) and reset at once, while as many others do the same
/// and read every reply, in waves, so that slots freed by the resets are taken by new
/// connections between a connection's first turn and its second. The readers get exactly
/// their own replies, in order; the engine stays up (a panic in a worker ends the serve
/// future with an engine error). On both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_between_their_turns_do_not_disturb_the_others() {
    const WAVES: usize = 3;
    const PER_WAVE: usize = 10;
    for eng in BOTH {
        let srv = start(eng, cfg("len:be:4"), Reply::Echo).await;
        for wave in 0..WAVES {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..PER_WAVE * 2 {
                let addr = srv.addr;
                set.spawn(async move {
                    let reset = i % 2 == 0;
                    let s = connect(addr).await;
                    let wire: Vec<u8> = (0..3000)
                        .flat_map(|k| {
                            let mut b = format!("w{wave}c{i}k{k:04}-").into_bytes();
                            b.resize(200, b'.');
                            f4(&b)
                        })
                        .collect();
                    let (mut r, mut w) = s.into_split();
                    if reset {
                        let _ = w.write_all(&wire).await;
                        let s = r.reunite(w).unwrap();
                        socket2::SockRef::from(&s)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        drop(s);
                        return;
                    }
                    let want = wire.clone();
                    let writer = tokio::spawn(async move {
                        w.write_all(&wire).await.unwrap();
                        w
                    });
                    let mut got = vec![0u8; want.len()];
                    tokio::time::timeout(SOON, r.read_exact(&mut got))
                        .await
                        .expect("replies did not come")
                        .unwrap();
                    same(&format!("wave {wave}, connection {i}"), &got, &want);
                    drop(writer.await.unwrap());
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
            assert!(
                !srv.task.is_finished(),
                "{eng:?}: the server ended during wave {wave}"
            );
        }
        srv.closed((WAVES * PER_WAVE * 2) as u64).await;
        let mut c = Client::connect(srv.addr, "len:be:4").await;
        c.send(b"still up").await;
        assert_eq!(c.recv().await.as_deref(), Some(&b"still up"[..]));
        drop(c);
        srv.shutdown().await;
    }
}

/// Garbage on every framing the direct engine takes (length headers of every encoding and
/// option, delimiters, fixed sizes, until-close), as frames that are almost right: random
/// bytes biased towards digits, delimiters and header-sized values, in random splits, some
/// connections half-closed, some reset. Whatever the codec makes of it, no worker panics
/// (a panic would end the whole engine, every connection with it): the server still
/// answers, and its shutdown returns a report, not an engine error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_framing_never_takes_the_engine_down() {
    let framings = [
        "len:be:2",
        "len:le:4:max=5000",
        "len:ascii:4",
        "len:bcd:2",
        "len:hex:4",
        "len:be:2:incl",
        "len:be:4:skip=3:adj=-2:max=1000",
        "len:be:2:adj=5",
        "line:max=100",
        "delim:0x03:max=50",
        "delim:0x0d0a:keep",
        "fixed:7",
        "eof:max=3000",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for framing in framings {
        let mut c = cfg(framing);
        c.liveness.frame_timeout = Some(ms(300));
        c.liveness.read_idle = Some(ms(600));
        c.write_timeout = ms(500);
        let Ok(server) = Server::bind("127.0.0.1:0", c).await else {
            panic!("{framing}: refused");
        };
        let addr = server.local_addr();
        let stop = server.shutdown_token();
        let task = tokio::spawn(server.serve_direct(Reply::Echo));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let seed = rng.next();
            set.spawn(async move {
                let mut rng = Rng(seed | 1);
                let alphabet: &[u8] =
                    b"0123456789ABCDEFabcdef\r\n\x03\x00\x00\x00\xff\xff\x7f\x80 ";
                let len = rng.below(3000) + 1;
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        if rng.below(3) == 0 {
                            rng.next() as u8
                        } else {
                            alphabet[rng.below(alphabet.len())]
                        }
                    })
                    .collect();
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    return;
                };
                let _ = s.set_nodelay(true);
                let mut at = 0;
                while at < bytes.len() {
                    let n = (rng.below(400) + 1).min(bytes.len() - at);
                    if s.write_all(&bytes[at..at + n]).await.is_err() {
                        return;
                    }
                    at += n;
                    if rng.below(4) == 0 {
                        tokio::time::sleep(ms(1)).await;
                    }
                }
                match rng.below(3) {
                    0 => {
                        let _ = s.shutdown().await;
                        let _ = read_to_end_within(&mut s, Duration::from_secs(2)).await;
                    }
                    1 => {
                        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    }
                    _ => {
                        let _ = read_to_end_within(&mut s, ms(50)).await;
                    }
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        assert!(
            !task.is_finished(),
            "{framing}: the engine ended on garbage: {:?}",
            task.await
        );
        stop.cancel();
        let r = tokio::time::timeout(SOON, task)
            .await
            .expect("no return")
            .unwrap();
        assert!(r.is_ok(), "{framing}: {r:?}");
    }
}

// ------------------------------------------------------------------ 8. refused configs

/// A config the direct engine refuses (`http` framing, the PROXY protocol, a reply delay,
/// TLS) and a reply it cannot send (larger than the framing's max, or the heartbeat frame
/// itself): `serve_direct` returns the config error at once, and the listening socket is
/// closed: the same port can be bound again at once (a leaked listener would hold it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_config_gives_the_port_back() {
    let cases = unsupported_cfgs()
        .map(|(c, what)| (c, Reply::Echo, what))
        .into_iter()
        .chain([
            (
                cfg("len:be:2:max=1"),
                Reply::Fixed(Bytes::from_static(b"xy")),
                "reply",
            ),
            (
                cfg("len:be:2"),
                Reply::Fixed(Bytes::new()),
                "reply (the heartbeat frame)",
            ),
        ]);
    for (c, reply, what) in cases {
        let server = Server::bind("127.0.0.1:0", c).await.unwrap();
        let addr = server.local_addr();
        let r = tokio::time::timeout(SOON, server.serve_direct(reply))
            .await
            .unwrap_or_else(|_| panic!("{what}: served instead of refusing"));
        let e = r.expect_err(what);
        assert!(e.is_config(), "{what}: {e}");
        let again = std::net::TcpListener::bind(addr);
        assert!(
            again.is_ok(),
            "{what}: the port cannot be bound again after the refusal: {again:?}"
        );
    }
}
