//! Hostile review of the server's hot path without waiting (issue 17): `conn/now.rs` (a read
//! batch handled as plain calls, the handler's future in a reused slot), the one `poll_fn`
//! wait of `serve_frames` and the liveness timer of `conn/clock.rs`. Real loopback sockets.

mod common;
mod tls_common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use keepwire::server::{Answer, Request, Server, ServerConfig, service_fn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Reads `n` length-prefixed frames; panics after `SOON`.
async fn read_frames(c: &mut TcpStream, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut head = [0u8; 4];
        tokio::time::timeout(SOON, c.read_exact(&mut head))
            .await
            .expect("a reply in time")
            .unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
        c.read_exact(&mut body).await.unwrap();
        out.push(body);
    }
    out
}

/// Spends what is left of the task's cooperative budget (tokio's `coop`): any handler doing
/// enough tokio I/O, channel or lock operations in one call ends there.
async fn spend_budget() {
    while tokio::task::coop::has_budget_remaining() {
        tokio::task::coop::consume_budget().await;
    }
}

fn idle_config(idle: Duration) -> ServerConfig {
    let mut cfg = ServerConfig::new(spec("len:be:4"));
    cfg.liveness.read_idle = Some(idle);
    cfg
}

/// A handler that leaves the task's coop budget spent, on a connection whose first request
/// is handled before its liveness timer was ever polled (here: it came with the PROXY
/// header): the timer is polled for the first time with no budget left, which returns
/// `Pending` without registering the task; the clock took that poll for a registration and
/// never polled it again, so the idle connection was never reaped.
#[tokio::test]
async fn idle_timer_survives_a_handler_that_spends_the_coop_budget() {
    let mut cfg = idle_config(Duration::from_millis(200));
    cfg.proxy_protocol = true;
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(service_fn(|r: Request| async move {
        spend_budget().await;
        Ok::<_, Infallible>(Some(r.frame))
    })));
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut first = b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\n".to_vec();
    first.extend_from_slice(&frame(b"hello"));
    c.write_all(&first).await.unwrap();
    assert_eq!(read_frames(&mut c, 1).await, vec![b"hello".to_vec()]);
    let mut client = Client::from_stream(c, "len:be:4");
    let took = client.closed_within(Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "reaped after {took:?}");
}

/// A handler as tower's `ConcurrencyLimit` is one: a permit of a semaphore shared by every
/// connection taken in `poll_ready` (`Pending` while none is free), moved into the call's
/// future and given back when it completes. What each request does is its first byte:
/// `i` answers at once, `s` after a sleep, `y` after a yield (pending, woken at once), `o`
/// through a oneshot another task completes, `m` with two frames, `n` with none, `b` after
/// spending the task's coop budget.
struct Limited {
    sem: tokio_util::sync::PollSemaphore,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Clone for Limited {
    fn clone(&self) -> Self {
        Limited {
            sem: self.sem.clone(),
            permit: None,
        }
    }
}

impl Limited {
    fn new(permits: usize) -> Self {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(permits));
        Limited {
            sem: tokio_util::sync::PollSemaphore::new(sem),
            permit: None,
        }
    }
}

type BoxFut =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Answer, Infallible>> + Send>>;

impl tower::Service<Request> for Limited {
    type Response = Answer;
    type Error = Infallible;
    type Future = BoxFut;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        if self.permit.is_none() {
            let p = std::task::ready!(self.sem.poll_acquire(cx));
            self.permit = Some(p.expect("semaphore open"));
        }
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, r: Request) -> BoxFut {
        let permit = self.permit.take().expect("poll_ready before call");
        Box::pin(async move {
            let f = r.frame;
            let a = match f.first() {
                Some(b's') => {
                    tokio::time::sleep(Duration::from_millis(u64::from(f.len() as u8 % 3))).await;
                    Answer::one(f)
                }
                Some(b'y') => {
                    tokio::task::yield_now().await;
                    Answer::one(f)
                }
                Some(b'o') => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let g = f.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(g);
                    });
                    Answer::one(rx.await.expect("sent"))
                }
                Some(b'm') => Answer::many([f.clone(), f.slice(..1)]),
                Some(b'n') => Answer::none(),
                Some(b'b') => {
                    spend_budget().await;
                    Answer::one(f)
                }
                _ => Answer::one(f),
            };
            drop(permit);
            Ok(a)
        })
    }
}

/// The replies a [`Limited`] handler owes for `frames`, in order.
fn owed(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .flat_map(|f| match f.first() {
            Some(b'm') => vec![f.clone(), f[..1].to_vec()],
            Some(b'n') => vec![],
            _ => vec![f.clone()],
        })
        .collect()
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

/// Pipelined frames in segments split anywhere, handlers of every kind (at once, pending
/// then ready, woken from elsewhere, several frames, none, budget spent), a concurrency
/// limit shared by the connections (`poll_ready` pending): on every connection the replies
/// come in order, none lost, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_mixed_handlers_under_a_shared_limit_reply_in_order() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::new(spec("len:be:4")))
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(Limited::new(2)));
    let mut tasks = Vec::new();
    for conn in 0..8u64 {
        tasks.push(tokio::spawn(async move {
            let c = TcpStream::connect(addr).await.unwrap();
            c.set_nodelay(true).unwrap();
            mixed_pipeline(c, conn).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The same over TLS, where the fast path leaves every write to the async one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_mixed_handlers_over_tls_reply_in_order() {
    let pki = tls_common::Pki::new();
    let mut cfg = ServerConfig::new(spec("len:be:4"));
    cfg.tls = Some(pki.server_tls(false));
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(Limited::new(2)));
    let tls = pki.client_tls(false);
    let mut tasks = Vec::new();
    for conn in 0..4u64 {
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let s = tls.connect(tcp, &addr.to_string(), SOON).await.unwrap();
            mixed_pipeline(s, conn).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// 300 frames for a [`Limited`] handler, of every kind, written in segments cut anywhere
/// while the replies are read: every reply comes, in order, once.
async fn mixed_pipeline<S>(s: S, conn: u64)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (conn + 1));
    let kinds = b"isyomnbi";
    let frames: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            let k = kinds[rng.below(kinds.len())];
            let big = rng.below(20) == 0;
            let len = 1 + rng.below(if big { 3000 } else { 40 });
            let mut f = format!("{}{conn}-{i}-", k as char).into_bytes();
            f.resize(f.len() + len, b'a' + (i % 26) as u8);
            f
        })
        .collect();
    let want = owed(&frames);
    let wire: Vec<u8> = frames.iter().flat_map(|f| frame(f)).collect();
    let (mut rd, mut wr) = tokio::io::split(s);
    let mut rng = Rng(rng.next());
    let writer = tokio::spawn(async move {
        let mut at = 0;
        while at < wire.len() {
            let n = (1 + rng.below(2000)).min(wire.len() - at);
            wr.write_all(&wire[at..at + n]).await.unwrap();
            wr.flush().await.unwrap();
            at += n;
            if rng.below(4) == 0 {
                tokio::task::yield_now().await;
            }
        }
        wr
    });
    let mut got = Vec::new();
    for _ in 0..want.len() {
        let mut head = [0u8; 4];
        tokio::time::timeout(SOON, rd.read_exact(&mut head))
            .await
            .expect("a reply in time")
            .unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
        rd.read_exact(&mut body).await.unwrap();
        got.push(body);
    }
    let _wr = writer.await.unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            String::from_utf8_lossy(g),
            String::from_utf8_lossy(w),
            "conn {conn}: reply {i}"
        );
    }
    // Nothing more: no reply twice.
    let mut extra = [0u8; 1];
    let more = tokio::time::timeout(Duration::from_millis(100), rd.read(&mut extra)).await;
    assert!(
        more.is_err(),
        "conn {conn}: an extra byte after the last reply: {more:?}"
    );
}

/// A handler that panics where its request says: `C` in `call`, `R` in its future's first
/// poll, `Q` in its future's second poll (after a pending first), and after `A` in the next
/// `poll_ready`. Anything else is echoed.
#[derive(Clone, Default)]
struct Panicky {
    ready_panics: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl tower::Service<Request> for Panicky {
    type Response = Answer;
    type Error = Infallible;
    type Future = BoxFut;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        if self
            .ready_panics
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("poll_ready panics (on purpose)");
        }
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, r: Request) -> BoxFut {
        let f = r.frame;
        match f.first() {
            Some(b'C') => panic!("call panics (on purpose)"),
            Some(b'A') => self
                .ready_panics
                .store(true, std::sync::atomic::Ordering::SeqCst),
            _ => {}
        }
        Box::pin(async move {
            match f.first() {
                Some(b'R') => panic!("poll panics (on purpose)"),
                Some(b'Q') => {
                    tokio::task::yield_now().await;
                    panic!("second poll panics (on purpose)");
                }
                _ => Ok(Answer::one(f)),
            }
        })
    }
}

/// A panic in `poll_ready`, in `call`, in the future's first poll and in a later one, each
/// in the middle of a pipelined batch: the replies before it are written, the frames after
/// it are never handled, the connection closes and is counted, and the server goes on.
#[tokio::test]
async fn a_panic_in_poll_ready_call_or_poll_ends_only_its_connection() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::new(spec("len:be:4")))
        .await
        .unwrap();
    let addr = server.local_addr();
    let stats = server.stats();
    tokio::spawn(server.serve(Panicky::default()));
    let cases: [(&str, &[&[u8]], usize); 4] = [
        ("call", &[b"one", b"two", b"C", b"three"], 2),
        ("first poll", &[b"one", b"two", b"R", b"three"], 2),
        ("later poll", &[b"one", b"two", b"Q", b"three"], 2),
        ("poll_ready", &[b"one", b"A", b"three", b"four"], 2),
    ];
    for (n, (what, frames, answered)) in cases.iter().enumerate() {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let wire: Vec<u8> = frames.iter().flat_map(|f| frame(f)).collect();
        c.write_all(&wire).await.unwrap();
        let want: Vec<Vec<u8>> = frames[..*answered].iter().map(|f| f.to_vec()).collect();
        assert_eq!(read_frames(&mut c, *answered).await, want, "{what}");
        let mut client = Client::from_stream(c, "len:be:4");
        client.closed_within(SOON).await;
        let closed = u64::try_from(n + 1).unwrap();
        eventually(&format!("{what}: the close counted"), || {
            let s = stats.snapshot();
            s.closed == closed && s.errors_handler == closed
        })
        .await;
        assert_eq!(
            stats.snapshot().frames_out,
            u64::try_from(2 * (n + 1)).unwrap(),
            "{what}"
        );
    }
    let mut c = Client::connect(addr, "len:be:4").await;
    c.send(b"still here").await;
    assert_eq!(c.recv().await.as_deref(), Some(&b"still here"[..]));
}

/// Pipelined requests, slow handlers among them, then the peer half-closes at once: every
/// reply is still written, in order, and only then does the server close.
#[tokio::test]
async fn a_peer_that_half_closes_after_pipelined_slow_requests_gets_every_reply() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::new(spec("len:be:4")))
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(Limited::new(1)));
    let frames: Vec<Vec<u8>> = (0..60)
        .map(|i| format!("{}-{i}", ["i", "s", "o", "y", "m", "n"][i % 6]).into_bytes())
        .collect();
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&frames.iter().flat_map(|f| frame(f)).collect::<Vec<_>>())
        .await
        .unwrap();
    c.shutdown().await.unwrap();
    let want = owed(&frames);
    assert_eq!(read_frames(&mut c, want.len()).await, want);
    let mut client = Client::from_stream(c, "len:be:4");
    client.closed_within(SOON).await;
}

/// Replies much larger than the socket buffers, to a peer that reads slowly, among small
/// ones, all asked in one segment: the write blocks in the middle of the batch (the fast
/// path's `send` leaves the rest to the async write), the batch resumes after it, and the
/// peer reads every reply whole and in order.
#[tokio::test]
async fn large_replies_to_a_slow_reader_resume_the_batch_in_order() {
    let mut cfg = ServerConfig::new(spec("len:be:4"));
    cfg.write_timeout = Duration::from_secs(5);
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(service_fn(|r: Request| async move {
        let n: usize = std::str::from_utf8(&r.frame).unwrap().parse().unwrap();
        // Reply i: i's digits over and over, 300 KiB for every third, 3 KiB otherwise.
        let len = if n % 3 == 0 { 300 * 1024 } else { 3 * 1024 };
        let body: Vec<u8> = r.frame.iter().copied().cycle().take(len).collect();
        Ok::<_, Infallible>(Some(Bytes::from(body)))
    })));
    let mut c = TcpStream::connect(addr).await.unwrap();
    let n = 40;
    let wire: Vec<u8> = (0..n)
        .flat_map(|i: usize| frame(i.to_string().as_bytes()))
        .collect();
    c.write_all(&wire).await.unwrap();
    let mut head = [0u8; 4];
    for i in 0..n {
        tokio::time::timeout(SOON, c.read_exact(&mut head))
            .await
            .expect("a reply in time")
            .unwrap();
        let len = u32::from_be_bytes(head) as usize;
        let mut body = vec![0u8; len];
        // Slowly: 4 KiB a read, a pause now and then, so the server's writes block.
        let mut at = 0;
        while at < len {
            let end = (at + 4096).min(len);
            c.read_exact(&mut body[at..end]).await.unwrap();
            at = end;
            if at % (64 * 1024) == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let digits = i.to_string().into_bytes();
        let want: Vec<u8> = digits.iter().copied().cycle().take(len).collect();
        assert!(body == want, "reply {i} ({len} bytes) is not its own");
    }
}

/// Server pings at a short interval, a handler that stays pending longer than the interval
/// and the ping timeout together, and a client that answers every ping: pings due while a
/// handler is pending go out after it, the pongs that queued meanwhile are read before the
/// ping timeout is judged (no false heartbeat timeout), and once the client falls silent
/// the timer still runs: the connection is reaped for its missed pings.
#[tokio::test]
async fn pings_due_during_a_pending_handler_go_out_after_it_and_the_timer_survives() {
    let mut cfg = ServerConfig::new(spec("len:be:4"));
    cfg.liveness.ping = Some(keepwire::liveness::PingConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(150),
        misses: 1,
    });
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    let stats = server.stats();
    tokio::spawn(server.serve(service_fn(|r: Request| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<_, Infallible>(Some(r.frame))
    })));
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut pings = 0;
    for i in 0..4 {
        let req = format!("slow-{i}").into_bytes();
        c.write_all(&frame(&req)).await.unwrap();
        loop {
            let f = read_frames(&mut c, 1).await.remove(0);
            if f.is_empty() {
                pings += 1;
                c.write_all(&frame(b"")).await.unwrap();
                continue;
            }
            assert_eq!(f, req, "request {i}");
            break;
        }
    }
    assert!(
        pings >= 2,
        "{pings} pings across four 300 ms calls at a 100 ms interval"
    );
    assert_eq!(
        stats.snapshot().heartbeat_timeouts,
        0,
        "a pong taken too late"
    );
    // Silent from here: the pings go unanswered and the connection is reaped.
    let mut client = Client::from_stream(c, "len:be:4");
    let took = client.closed_within(Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "reaped after {took:?}");
    eventually("the heartbeat timeout counted", || {
        stats.snapshot().heartbeat_timeouts == 1
    })
    .await;
}

/// This process's resident memory, in bytes (Linux; 0 elsewhere).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// How many bytes a loopback socket takes at once from one buffer, written without waiting
/// until it blocks, when its peer reads nothing: what the fast path's `send` loop gets
/// through before it leaves the rest to the async write.
async fn socket_takes() -> usize {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _peer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    let buf = vec![0u8; 64 * 1024 * 1024];
    let mut at = 0;
    while let Ok(n) = s.try_write(&buf[at..]) {
        at += n;
    }
    at
}

/// Replies that fill the socket save for the last few KiB, to peers that read only once
/// the socket is full: the write buffer is advanced past what went at once, so its room
/// looked small while its allocation was the whole reply, and it went to the buffer pool as
/// a small one. Twelve such connections pinned twelve socket-sized allocations (megabytes
/// each) for good after they went idle; the pool is meant to hold at most 32 buffers of at
/// most 64 KiB per thread.
#[tokio::test]
async fn write_buffers_advanced_past_a_blocked_send_are_not_pooled() {
    if rss() == 0 {
        eprintln!("skipped: no /proc/self/statm to read the resident size from");
        return;
    }
    let takes = socket_takes().await;
    // The reply and its 4-byte header: 16 KiB more than the socket takes at once.
    let body = takes + 16 * 1024 - 4;
    let mut cfg = ServerConfig::new(spec("len:be:4:max=64M"));
    cfg.write_timeout = Duration::from_secs(5);
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(service_fn(|r: Request| async move {
        let n: usize = std::str::from_utf8(&r.frame).unwrap().parse().unwrap();
        Ok::<_, Infallible>(Some(Bytes::from(vec![b'x'; n])))
    })));
    let before = rss();
    let mut cs = Vec::new();
    for _ in 0..12 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&frame(body.to_string().as_bytes()))
            .await
            .unwrap();
        cs.push(c);
    }
    // Each server connection fills its socket, then waits for its peer to read.
    for c in &mut cs {
        let got = read_frames(c, 1).await.remove(0);
        assert_eq!(got.len(), body);
    }
    // All idle now: their buffers are given back.
    let mut c = cs.pop().unwrap();
    c.write_all(&frame(b"1")).await.unwrap();
    assert_eq!(read_frames(&mut c, 1).await, vec![b"x".to_vec()]);
    let grew = rss().saturating_sub(before);
    assert!(
        grew < 12 * takes as u64 / 2,
        "resident size grew by {} MiB for twelve idle connections ({} KiB taken by a socket at once)",
        grew >> 20,
        takes >> 10
    );
}

/// `then_close` and `then_await_close` answered by a handler that is pending first, in the
/// middle of pipelined frames: the replies up to and including the closing answer are
/// written, in order, and the frames after it never reach the handler; `then_close` closes
/// at once, `then_await_close` only after the peer's FIN.
#[tokio::test]
async fn a_closing_answer_after_a_pending_first_call_mid_pipeline_ends_the_batch() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::new(spec("len:be:4")))
        .await
        .unwrap();
    let addr = server.local_addr();
    let handled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = std::sync::Arc::clone(&handled);
    tokio::spawn(server.serve(service_fn(move |r: Request| {
        h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            tokio::task::yield_now().await;
            let a = Answer::many([r.frame.clone(), r.frame.slice(..1)]);
            Ok::<_, Infallible>(match r.frame.first() {
                Some(b'c') => a.then_close(),
                Some(b'a') => a.then_await_close(),
                _ => Answer::one(r.frame),
            })
        }
    })));
    for closing in [&b"close"[..], b"await"] {
        let before = handled.load(std::sync::atomic::Ordering::SeqCst);
        let mut c = TcpStream::connect(addr).await.unwrap();
        let frames: [&[u8]; 5] = [b"one", b"two", closing, b"three", b"four"];
        c.write_all(&frames.iter().flat_map(|f| frame(f)).collect::<Vec<_>>())
            .await
            .unwrap();
        let want = vec![
            b"one".to_vec(),
            b"two".to_vec(),
            closing.to_vec(),
            closing[..1].to_vec(),
        ];
        assert_eq!(read_frames(&mut c, 4).await, want);
        let mut one = [0u8; 1];
        if closing == b"await" {
            // Nothing more, and no close, until we close.
            let r = tokio::time::timeout(Duration::from_millis(200), c.read(&mut one)).await;
            assert!(r.is_err(), "then_await_close: {r:?} before our FIN");
            c.shutdown().await.unwrap();
        }
        let r = tokio::time::timeout(SOON, c.read(&mut one))
            .await
            .expect("a close");
        assert!(
            matches!(r, Ok(0)),
            "{}: {r:?}",
            String::from_utf8_lossy(closing)
        );
        assert_eq!(
            handled.load(std::sync::atomic::Ordering::SeqCst) - before,
            3,
            "frames after the closing answer were handled"
        );
    }
}

/// A handler pending longer than the read idle timeout that then spends the task's coop
/// budget, and the client's next request already waiting in the socket: the read comes
/// before the idle verdict, so the request is answered, not the connection closed for a
/// silence that was the server's own. (With the budget spent the wait's read returns
/// `Pending` without looking; the timer, polled outside the budget, must not be judged
/// before the read has had its turn.)
#[tokio::test]
async fn a_request_waiting_behind_a_long_call_that_spent_the_budget_is_read_before_the_idle_verdict()
 {
    let server = Server::bind("127.0.0.1:0", idle_config(Duration::from_millis(150)))
        .await
        .unwrap();
    let addr = server.local_addr();
    let (started_tx, mut started) = tokio::sync::mpsc::channel::<()>(4);
    tokio::spawn(server.serve(service_fn(move |r: Request| {
        let started_tx = started_tx.clone();
        async move {
            if r.frame.starts_with(b"slow") {
                let _ = started_tx.send(()).await;
                tokio::time::sleep(Duration::from_millis(400)).await;
                spend_budget().await;
            }
            Ok::<_, Infallible>(Some(r.frame))
        }
    })));
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&frame(b"slow")).await.unwrap();
    tokio::time::timeout(SOON, started.recv())
        .await
        .expect("the slow call started");
    // In the socket while the call is pending, well within the idle timeout of its read.
    c.write_all(&frame(b"next")).await.unwrap();
    let got = read_frames(&mut c, 1).await;
    assert_eq!(got, vec![b"slow".to_vec()]);
    let mut head = [0u8; 4];
    let r = tokio::time::timeout(SOON, c.read_exact(&mut head))
        .await
        .expect("an answer or a close");
    assert!(
        r.is_ok(),
        "closed instead of answering the waiting request: {r:?}"
    );
}

/// The drain starts while a handler is pending and two more requests wait in the socket
/// behind it: all three are answered, in order, the later ones seeing the drain, then the
/// server closes first and nothing is force-closed.
#[tokio::test]
async fn a_drain_during_a_pending_call_answers_the_requests_queued_behind_it() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::new(spec("len:be:4")))
        .await
        .unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    let (started_tx, mut started) = tokio::sync::mpsc::channel::<()>(4);
    let (go_tx, go) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server.serve(service_fn(move |r: Request| {
        let started_tx = started_tx.clone();
        let mut go = go.clone();
        async move {
            let a = if r.frame.starts_with(b"slow") {
                let _ = started_tx.send(()).await;
                go.wait_for(|g| *g).await.unwrap();
                r.frame
            } else {
                Bytes::from(format!(
                    "{}:{}",
                    String::from_utf8_lossy(&r.frame),
                    r.draining
                ))
            };
            Ok::<_, Infallible>(Some(a))
        }
    })));
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&frame(b"slow")).await.unwrap();
    tokio::time::timeout(SOON, started.recv())
        .await
        .expect("the slow call started");
    c.write_all(&[frame(b"a"), frame(b"b")].concat())
        .await
        .unwrap();
    stop.cancel();
    // The accept loop has seen the shutdown once it no longer accepts.
    eventually("the listener closed", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    go_tx.send(true).unwrap();
    let got = read_frames(&mut c, 3).await;
    assert_eq!(
        got,
        vec![b"slow".to_vec(), b"a:true".to_vec(), b"b:true".to_vec()]
    );
    let mut client = Client::from_stream(c, "len:be:4");
    client.closed_within(SOON).await;
    let report = tokio::time::timeout(SOON, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.force_closed, 0, "{report:?}");
}

/// HTTP pipelining in one segment: good requests (one with `Expect: 100-continue` and its
/// body already there), then a bad one (400, 413 or 431): every good request's response
/// comes first, in order, then the error response with `Connection: close`, then the close.
#[tokio::test]
async fn http_pipelined_good_requests_then_a_bad_one_answer_in_order_then_close() {
    let server = Server::bind(
        "127.0.0.1:0",
        ServerConfig::new(spec("http:max=2000:max_head=400")),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(keepwire::http::HttpService::new(
        keepwire::http::HttpReply::Echo,
        "text/plain",
        keepwire::http::KeepAlive::default(),
    )));
    let good = concat!(
        "GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
        "POST /b HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
        "GET /c HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    let long_header = format!(
        "GET /d HTTP/1.1\r\nHost: h\r\nX-Long: {}\r\n\r\n",
        "x".repeat(600)
    );
    let bad: [(&str, String); 3] = [
        ("400", "NOT A REQUEST LINE\r\n\r\n".to_string()),
        (
            "413",
            "POST /d HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n".to_string(),
        ),
        ("431", long_header),
    ];
    for (status, b) in bad {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(format!("{good}{b}").as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(SOON, c.read_to_end(&mut out))
            .await
            .expect("the server closes after its error response")
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        let statuses: Vec<&str> = text
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &text[i + 9..i + 12])
            .collect();
        assert_eq!(statuses, ["200", "200", "200", status], "{text}");
        let last = text.rfind("HTTP/1.1 ").unwrap();
        assert!(text[last..].contains("Connection: close"), "{text}");
        assert!(text.contains("hello"), "{text}");
    }
}

/// Short mode behind a concurrency limit of one shared by every connection (`poll_ready`
/// pending for all but one), handlers pending first, each client sending a second frame
/// the server must ignore: each gets its own one reply, then, with `close_first`, the
/// server's FIN; without it the server waits for the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_connections_behind_a_shared_limit_get_one_reply_each() {
    for close_first in [false, true] {
        let mut cfg = ServerConfig::new(spec("len:be:4"));
        cfg.mode = keepwire::server::Mode::Short;
        cfg.short_server_closes_first = close_first;
        let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
        let addr = server.local_addr();
        tokio::spawn(server.serve(Limited::new(1)));
        let mut tasks = Vec::new();
        for i in 0..16 {
            tasks.push(tokio::spawn(async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                let req = format!("{}-{i}", ["s", "y", "o", "i"][i % 4]).into_bytes();
                c.write_all(&[frame(&req), frame(b"ignored")].concat())
                    .await
                    .unwrap();
                assert_eq!(read_frames(&mut c, 1).await, vec![req]);
                if !close_first {
                    let mut one = [0u8; 1];
                    let r = tokio::time::timeout(Duration::from_millis(50), c.read(&mut one)).await;
                    assert!(r.is_err(), "close_first off: {r:?} before our FIN");
                    c.shutdown().await.unwrap();
                }
                let mut rest = Vec::new();
                tokio::time::timeout(SOON, c.read_to_end(&mut rest))
                    .await
                    .expect("closed")
                    .unwrap();
                assert!(rest.is_empty(), "more after the one reply: {rest:?}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
}
