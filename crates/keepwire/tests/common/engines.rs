//! The two server engines side by side, for the reviews of the direct engine
//! (`direct_attack.rs`, `direct_attack2.rs`): a server on either engine (`Server::serve` or
//! `Server::serve_direct`), frames made by hand, raw clients and how their streams end, and
//! the blocking helpers of the scenarios that run in a child process of their own. Included
//! with `#[path]` by the tests that use it, which also declare `mod common;` and include
//! `common/queues.rs` as `mod queues`.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use keepwire::frame::FrameCodec;
use keepwire::server::{
    Mode, Reply, Server, ServerConfig, ServerError, ServerStats, ShutdownReport,
};
use keepwire::tcpstate::TcpState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::common::{SOON, eventually, spec};
use crate::queues::queues;

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Far enough that no idle or slow-frame timer closes a connection in a test about
/// something else.
pub const FAR: Duration = Duration::from_secs(60);

/// Scheduling slack on a loaded 2-core machine (a debug build), on top of a timer's due
/// time.
pub const SLACK: Duration = Duration::from_millis(800);

/// How soon after the shutdown signal an idle connection must have its FIN.
pub const DRAIN_BOUND: Duration = Duration::from_secs(3);

// ------------------------------------------------------------------ servers

/// Which engine serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eng {
    /// `serve_direct`: the engine under review.
    Direct,
    /// `serve` with `Reply::into_service`: the reference.
    Tokio,
}

/// The reference first: a scenario the default engine fails is a wrong test, not a finding.
pub const BOTH: [Eng; 2] = [Eng::Tokio, Eng::Direct];

/// Every engine in long and short mode, the reference first.
pub const BOTH_IN_BOTH_MODES: [(Eng, Mode); 4] = [
    (Eng::Tokio, Mode::Long),
    (Eng::Tokio, Mode::Short),
    (Eng::Direct, Mode::Long),
    (Eng::Direct, Mode::Short),
];

/// A server on 127.0.0.1:0, serving on one engine in a task of its own.
pub struct Srv {
    /// The engine that serves.
    pub eng: Eng,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its shutdown token: cancelled, the drain begins.
    pub stop: CancellationToken,
    /// Its counters.
    pub stats: Arc<ServerStats>,
    /// The serve future's task.
    pub task: JoinHandle<Result<ShutdownReport, ServerError>>,
}

/// `framing`, idle and slow-frame timers far away, no per-IP cap, a 5 s grace.
pub fn cfg(framing: &str) -> ServerConfig {
    let mut c = ServerConfig::new(spec(framing));
    c.liveness.read_idle = Some(FAR);
    c.liveness.frame_timeout = Some(FAR);
    c.max_conns_per_ip = None;
    c.shutdown_grace = Duration::from_secs(5);
    c
}

/// A server of engine `eng` under `cfg`, answering with `reply`.
pub async fn start(eng: Eng, cfg: ServerConfig, reply: Reply) -> Srv {
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    let stats = server.stats();
    let task = match eng {
        Eng::Direct => tokio::spawn(server.serve_direct(reply)),
        Eng::Tokio => tokio::spawn(server.serve(reply.into_service())),
    };
    Srv {
        eng,
        addr,
        stop,
        stats,
        task,
    }
}

/// An echo server on the direct engine.
pub async fn direct(cfg: ServerConfig) -> Srv {
    start(Eng::Direct, cfg, Reply::Echo).await
}

impl Srv {
    /// Waits for the server to return (after its drain).
    pub async fn join(self) -> ShutdownReport {
        let eng = self.eng;
        tokio::time::timeout(SOON, self.task)
            .await
            .unwrap_or_else(|_| panic!("{eng:?}: the server did not return after its drain"))
            .expect("server task panicked")
            .unwrap_or_else(|e| panic!("{eng:?}: serve failed: {e}"))
    }

    /// Cancels the shutdown token and waits for the server to return.
    pub async fn shutdown(self) -> ShutdownReport {
        self.stop.cancel();
        self.join().await
    }

    /// Waits until the server counts `n` connections closed.
    pub async fn closed(&self, n: u64) {
        let stats = Arc::clone(&self.stats);
        eventually(&format!("{:?}: {n} connections closed", self.eng), || {
            stats.snapshot().closed >= n
        })
        .await;
    }

    /// How long until the server counts `n` connections closed (at most `bound`: `None`
    /// past it).
    pub async fn closed_within(&self, n: u64, bound: Duration) -> Option<Duration> {
        let t = Instant::now();
        while self.stats.snapshot().closed < n {
            if t.elapsed() > bound {
                return None;
            }
            tokio::time::sleep(ms(2)).await;
        }
        Some(t.elapsed())
    }
}

/// An echo server of engine `eng` in short mode under `len:be:2`, waiting `wait` for the
/// client's FIN after the reply.
pub async fn short_echo(eng: Eng, wait: Duration) -> Srv {
    let mut c = cfg("len:be:2");
    c.mode = Mode::Short;
    c.short_close_wait = wait;
    start(eng, c, Reply::Echo).await
}

/// Configs the direct engine refuses (`http` framing, the PROXY protocol, a reply delay),
/// each with the setting its error names.
pub fn unsupported_cfgs() -> [(ServerConfig, &'static str); 3] {
    let mut http = cfg("http");
    http.heartbeat = None;
    let mut proxy = cfg("len:be:2");
    proxy.proxy_protocol = true;
    let mut delay = cfg("len:be:2");
    delay.reply_delay = Some(ms(10));
    [
        (http, "framing"),
        (proxy, "proxy-protocol"),
        (delay, "delay"),
    ]
}

// ------------------------------------------------------------------ bytes and clients

/// `body` framed as `len:be:2`, by hand.
pub fn f2(body: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// `body` framed as `len:be:4`, by hand.
pub fn f4(body: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// `n` numbered requests in one buffer, each framed as `len:be:4`: `{tag}0`, `{tag}1`, ...
pub fn numbered_f4(n: usize, tag: &str) -> Vec<u8> {
    (0..n)
        .flat_map(|i| f4(format!("{tag}{i}").as_bytes()))
        .collect()
}

/// `n` bytes that tell their offsets apart (a shifted or repeated chunk shows).
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

/// A connection with Nagle off. (Setting it fails on a connection the server already
/// reset: refused by a cap. The read that follows tells.)
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.unwrap();
    let _ = s.set_nodelay(true);
    s
}

/// A connection from source address `ip` (any 127/8 address).
pub async fn connect_from(ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((ip, 0))).unwrap();
    // (Nagle left on: nothing is set on a socket the server may have reset.)
    sock.connect(addr).await.unwrap()
}

/// How a connection the server refuses ends, from source address `ip`: the first error
/// seen (the connect itself may report the reset, when it comes before the connect's
/// completion is looked at), or `Ok` with what was read before a clean end of stream; a
/// connection still open after `SOON` is a failure. Nothing is written or set first, so
/// the first call after the reset is the one to see it.
pub async fn refused_from(ip: [u8; 4], addr: SocketAddr) -> Result<Vec<u8>, io::ErrorKind> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((ip, 0))).unwrap();
    let mut s = match sock.connect(addr).await {
        Ok(s) => s,
        Err(e) => return Err(e.kind()),
    };
    match read_to_end_within(&mut s, SOON).await {
        (got, Ending::Fin) => Ok(got),
        (_, Ending::Reset(kind)) => Err(kind),
        (got, Ending::Open) => panic!("a refused connection stayed open ({got:?})"),
    }
}

/// A socket whose receive buffer is fixed small (no autotuning): when it stops reading,
/// the server's writes block after a few KiB beyond its own send buffer.
pub async fn connect_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    let s = sock.connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// How a stream read by [`read_to_end_within`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A clean end of stream (FIN).
    Fin,
    /// An error (a reset).
    Reset(io::ErrorKind),
    /// Still open when the bound ran out.
    Open,
}

/// Reads until the stream ends or `bound` runs out: the bytes read, and how it ended.
pub async fn read_to_end_within<R: AsyncReadExt + Unpin>(
    s: &mut R,
    bound: Duration,
) -> (Vec<u8>, Ending) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = tokio::time::timeout(bound, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return Ending::Fin,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Ending::Reset(e.kind()),
            }
        }
    })
    .await
    .unwrap_or(Ending::Open);
    (got, end)
}

/// Reads `s` to its end within `bound` and asserts that it ended with a FIN, nothing read
/// before it (`what` naming the stream).
pub async fn expect_fin_only<R: AsyncReadExt + Unpin>(s: &mut R, bound: Duration, what: &str) {
    let (got, end) = read_to_end_within(s, bound).await;
    assert!(
        got.is_empty() && end == Ending::Fin,
        "{what}: {end:?} {got:?}"
    );
}

/// Reads exactly `n` bytes within `bound`; panics with what came otherwise.
pub async fn read_n(s: &mut TcpStream, n: usize, bound: Duration, what: &str) -> Vec<u8> {
    let mut got = vec![0u8; n];
    match tokio::time::timeout(bound, s.read_exact(&mut got)).await {
        Ok(Ok(_)) => got,
        Ok(Err(e)) => panic!("{what}: the stream ended before {n} bytes: {e}"),
        Err(_) => panic!("{what}: {n} bytes did not arrive within {bound:?}"),
    }
}

/// Reads exactly `want` bytes within `SOON` in all, in reads of at most `chunk` bytes with
/// a pause of `pause` every `every` reads (so that the server's writes block now and then);
/// panics, `what` first, when the stream stalls or ends before.
pub async fn read_paced<R: AsyncReadExt + Unpin>(
    r: &mut R,
    want: usize,
    chunk: usize,
    every: usize,
    pause: Duration,
    what: &str,
) -> Vec<u8> {
    let mut got = Vec::with_capacity(want);
    let mut buf = vec![0u8; chunk];
    let deadline = Instant::now() + SOON;
    let mut reads = 0;
    while got.len() < want {
        let n = tokio::time::timeout_at(deadline, r.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what}: stalled at {} of {want} bytes", got.len()))
            .unwrap();
        assert!(n > 0, "{what}: closed at {} of {want} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        reads += 1;
        if reads % every == 0 {
            tokio::time::sleep(pause).await;
        }
    }
    got
}

/// Decodes every frame in `wire` under `framing`; panics on a corrupt stream.
pub fn decode_all(framing: &str, wire: &[u8]) -> (Vec<Bytes>, usize) {
    let mut codec = FrameCodec::new(spec(framing));
    let mut buf = BytesMut::from(wire);
    let mut frames = Vec::new();
    while let Some(f) = codec
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("corrupt stream: {e}"))
    {
        frames.push(f);
    }
    (frames, buf.len())
}

/// The state of the socket from `local` to `remote` in the kernel's table, if any.
pub fn tcp_state(local: SocketAddr, remote: SocketAddr) -> Option<TcpState> {
    keepwire::tcpstate::sockets()
        .unwrap()
        .into_iter()
        .find(|e| e.local == local && e.remote == remote)
        .map(|e| e.state)
}

// ------------------------------------------------------------------ steps of a scenario

/// Writes `body` as a `len:be:2` frame and asserts that the echo (read within `SOON`,
/// `what` naming it) is that frame.
pub async fn echo_f2(s: &mut TcpStream, body: &[u8], what: &str) {
    let want = f2(body);
    s.write_all(&want).await.unwrap();
    assert_eq!(read_n(s, want.len(), SOON, what).await, want);
}

/// Waits until the server's writes to the client at `me` block: more than 8 KiB unread in
/// the client's socket.
pub async fn server_writes_blocked(me: SocketAddr, server: SocketAddr) {
    eventually("the server's writes blocked", || {
        queues(me, server).is_some_and(|(_, unread)| unread > 8 * 1024)
    })
    .await;
}

/// Runs `n` clients of `addr` at once, the `i`th as `client(addr, i)`, which tells whether
/// its reply was right and how its stream ended: `None` when every one got the right reply,
/// then a FIN; else which did not (the first three, as `(connection, reply right, end)`).
pub async fn clients_at_once<F, Fut>(addr: SocketAddr, n: usize, client: F) -> Option<String>
where
    F: Fn(SocketAddr, usize) -> Fut,
    Fut: Future<Output = (bool, Ending)> + Send + 'static,
{
    let mut set = JoinSet::new();
    for i in 0..n {
        let client = client(addr, i);
        set.spawn(async move {
            let (ok, end) = client.await;
            (i, ok, end)
        });
    }
    let mut stuck = Vec::new();
    while let Some(r) = set.join_next().await {
        let (i, ok, end) = r.unwrap();
        if !ok || end != Ending::Fin {
            stuck.push((i, ok, end));
        }
    }
    (!stuck.is_empty()).then(|| {
        format!(
            "{} of {n} (connection, reply right, end; first 3): {:?}",
            stuck.len(),
            &stuck[..stuck.len().min(3)]
        )
    })
}

/// On every engine in long and short mode, an echo server under `len:be:2` (its wait for the
/// client's FIN in short mode `short_close_wait`, or the default) and `n` clients at once,
/// as [`clients_at_once`] runs them: for each engine and mode where some client did not get
/// the right reply, then a FIN, which did not.
pub async fn echo_clients_in_both_modes<F, Fut>(
    n: usize,
    short_close_wait: Option<Duration>,
    client: F,
) -> Vec<String>
where
    F: Fn(SocketAddr, usize) -> Fut,
    Fut: Future<Output = (bool, Ending)> + Send + 'static,
{
    let mut failures = Vec::new();
    for (eng, mode) in BOTH_IN_BOTH_MODES {
        let mut c = cfg("len:be:2");
        c.mode = mode;
        if let Some(wait) = short_close_wait {
            c.short_close_wait = wait;
        }
        let srv = start(eng, c, Reply::Echo).await;
        if let Some(stuck) = clients_at_once(srv.addr, n, &client).await {
            failures.push(format!("{eng:?}, {mode} mode: {stuck}"));
        }
        srv.shutdown().await;
    }
    failures
}

/// Makes `n` connections to `addr` and asserts that each is closed with a FIN, no sooner
/// than `idle` (less `margin`) after the first of them began: they live their own idle
/// timeout.
pub async fn later_ones_live_their_idle_timeout(
    addr: SocketAddr,
    n: usize,
    idle: Duration,
    margin: Duration,
) {
    let mut later = Vec::new();
    let t = Instant::now();
    for _ in 0..n {
        later.push(connect(addr).await);
    }
    for (i, s) in later.iter_mut().enumerate() {
        let (_, end) = read_to_end_within(s, SOON).await;
        assert_eq!(end, Ending::Fin, "later {i}");
        assert!(
            t.elapsed() >= idle - margin,
            "later connection {i} closed {:?} after it connected (idle timeout {idle:?})",
            t.elapsed()
        );
    }
}

// ------------------------------------------------------------------ child processes

/// Which test a child process runs (set by the parent, read by the same test in the child).
const CHILD_ENV: &str = "KEEPWIRE_DIRECT_ATTACK_CHILD";

/// Runs `scenario` in a child process of its own (it lowers RLIMIT_NOFILE, or measures the
/// process's CPU time or memory: no other test may share the process), by running the test
/// named `test` there with `CHILD_ENV` set; in that child, runs the scenario. The child's
/// lines from `note:` on are printed again by the parent. Bounded: the child is killed
/// after 60 s.
pub fn in_child(test: &str, scenario: impl FnOnce()) {
    use std::io::{BufRead, BufReader, Read};
    if let Ok(w) = std::env::var(CHILD_ENV) {
        assert_eq!(w, test, "the child runs the test it was started for");
        scenario();
        println!("child scenario {test} passed");
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(s) => s.unwrap(),
        Err(_) => {
            // Ours, by its id.
            let _ = std::process::Command::new("kill")
                .args(["-9", &id.to_string()])
                .status();
            panic!("the {test} child did not finish within 60 s");
        }
    };
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    let want = format!("child scenario {test} passed");
    assert!(
        status.success() && out.iter().any(|l| l.contains(&want)),
        "child {test} failed ({status}):\n{}\n{err}",
        out.join("\n")
    );
    for l in out
        .iter()
        .filter_map(|l| l.find("note:").map(|at| &l[at..]))
    {
        println!("{l}");
    }
}

/// The descriptors open in this process, by number (not the one the listing itself holds).
pub fn fd_numbers() -> HashSet<u64> {
    let me = format!("/proc/{}/fd", std::process::id());
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() != me))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// How many descriptors are open in this process.
pub fn open_fds() -> u64 {
    fd_numbers().len() as u64
}

/// Leaves room for exactly `room` more descriptors in this process (RLIMIT_NOFILE bounds
/// the descriptor's number, not their count: the limit is set where `room` numbers below it
/// are free, whatever holes or high descriptors, such as an inherited jobserver pipe, the
/// table has); returns the limits to restore.
pub fn limit_fds(room: u64) -> (u64, u64) {
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let open = fd_numbers();
    let mut free = 0;
    let mut limit = 0;
    while free < room || open.contains(&limit) {
        if !open.contains(&limit) {
            free += 1;
        }
        limit += 1;
    }
    rlimit::Resource::NOFILE.set(limit, hard).unwrap();
    (soft, hard)
}

/// A blocking client socket with bounded reads, Nagle off.
pub fn std_prepare(s: &std::net::TcpStream) {
    s.set_read_timeout(Some(SOON)).unwrap();
    s.set_write_timeout(Some(SOON)).unwrap();
    s.set_nodelay(true).unwrap();
}

/// `n` unconnected client sockets, made before the descriptor limit is lowered.
pub fn sockets(n: usize) -> Vec<socket2::Socket> {
    (0..n)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect()
}

/// `sock` connected to `addr` (within `SOON`), as a blocking client socket ([`std_prepare`]).
pub fn std_connect(sock: socket2::Socket, addr: SocketAddr) -> std::net::TcpStream {
    sock.connect_timeout(&addr.into(), SOON).unwrap();
    let s: std::net::TcpStream = sock.into();
    std_prepare(&s);
    s
}

/// The next `len:be:2` frame; `Ok(None)` at a clean end of stream.
pub fn std_read_frame(s: &mut std::net::TcpStream) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut hdr = [0u8; 2];
    match s.read(&mut hdr[..1])? {
        0 => return Ok(None),
        _ => s.read_exact(&mut hdr[1..])?,
    }
    let mut body = vec![0; usize::from(u16::from_be_bytes(hdr))];
    s.read_exact(&mut body)?;
    Ok(Some(body))
}

/// Asserts that the next `len:be:2` frame is `want` (`what` naming it).
pub fn std_expect_reply(s: &mut std::net::TcpStream, want: &[u8], what: &str) {
    match std_read_frame(s) {
        Ok(Some(f)) => assert_eq!(f, want, "{what}"),
        other => panic!("{what}: no reply ({other:?})"),
    }
}

/// Asserts that the server closes the stream next (a FIN or a reset), with no frame first.
pub fn std_expect_closed(s: &mut std::net::TcpStream, what: &str) {
    match std_read_frame(s) {
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected the server to close, got {other:?}"),
    }
}

/// Waits, blocking the thread, until `cond` holds; panics after `SOON`.
pub fn std_eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + SOON;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        std::thread::sleep(ms(5));
    }
}

/// A blocking connection to `addr` whose first request has had its reply (the engine is
/// running); made before the descriptor limit is lowered.
pub fn std_first(addr: SocketAddr) -> std::net::TcpStream {
    use std::io::Write;
    let mut first = std_connect(sockets(1).pop().unwrap(), addr);
    first.write_all(&f2(b"first")).unwrap();
    std_expect_reply(&mut first, b"first", "before the limit");
    first
}

/// Idle connections that each hold one of the server's descriptors: every socket of `socks`
/// connected to `addr`, its request (`h0`, `h1`, ...) answered.
pub fn std_holders(
    socks: impl IntoIterator<Item = socket2::Socket>,
    addr: SocketAddr,
) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let mut holders = Vec::new();
    for (i, sock) in socks.into_iter().enumerate() {
        let mut s = std_connect(sock, addr);
        s.write_all(&f2(format!("h{i}").as_bytes())).unwrap();
        std_expect_reply(&mut s, format!("h{i}").as_bytes(), "a holder");
        holders.push(s);
    }
    holders
}

/// Connections that wait for their reply (in the backlog, while descriptors run out): every
/// socket of `socks` connected to `addr`, its request written, `{tag}{i}` for the `i`th,
/// nothing read.
pub fn std_requests(
    socks: impl IntoIterator<Item = socket2::Socket>,
    addr: SocketAddr,
    tag: &str,
) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let mut waiting = Vec::new();
    for (i, sock) in socks.into_iter().enumerate() {
        let mut s = std_connect(sock, addr);
        s.write_all(&f2(format!("{tag}{i}").as_bytes())).unwrap();
        waiting.push(s);
    }
    waiting
}

/// Waits, blocking the thread, until the server counts a failed accept (EMFILE).
pub fn std_eventually_emfile(stats: &ServerStats) {
    std_eventually("EMFILE in the accept loop", || {
        stats.snapshot().errors_accept > 0
    });
}

/// An echo server of engine `eng` under `len:be:2` with a shutdown grace of `grace`, on a
/// runtime of its own.
pub fn child_echo(eng: Eng, grace: Duration) -> ChildSrv {
    let mut c = cfg("len:be:2");
    c.shutdown_grace = grace;
    ChildSrv::start(eng, c, Reply::Echo)
}

/// A server of engine `eng` on a runtime of its own; the test thread is the client.
pub struct ChildSrv {
    /// The server's runtime.
    pub rt: tokio::runtime::Runtime,
    srv: Option<Srv>,
}

impl ChildSrv {
    /// A server of engine `eng` under `c`, answering with `reply`, on a new two-thread
    /// runtime.
    pub fn start(eng: Eng, c: ServerConfig, reply: Reply) -> ChildSrv {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let srv = rt.block_on(start(eng, c, reply));
        ChildSrv { rt, srv: Some(srv) }
    }

    /// The server (until it is joined).
    pub fn srv(&self) -> &Srv {
        self.srv.as_ref().unwrap()
    }

    /// Waits for the server to return (after its drain), as [`Srv::join`].
    pub fn join(&mut self) -> ShutdownReport {
        let srv = self.srv.take().unwrap();
        self.rt.block_on(srv.join())
    }

    /// Waits for the server's end; what it returned.
    pub fn join_result(&mut self) -> Result<ShutdownReport, ServerError> {
        let srv = self.srv.take().unwrap();
        self.rt
            .block_on(async { tokio::time::timeout(SOON, srv.task).await })
            .expect("the server did not return")
            .expect("server task panicked")
    }
}
