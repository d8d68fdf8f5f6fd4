//! Hostile review of the direct write of large replies (`Connection::write_direct`, chosen by
//! `Connection::direct_ok` and `encode_answer(answer, direct)`, with `FrameCodec::encode_head`
//! splitting the frame into header and body): an answer of one frame of at least 8 KiB,
//! answered at once with nothing queued before it and nothing read behind it, goes out as
//! header + body in one `writev` from the reply's own bytes; what the socket does not take
//! is copied into the write buffer for the normal write path to finish.
//!
//! What could go wrong: a header that differs from the copy path's, body bytes lost,
//! repeated or reordered when the `writev` is partial, replies reordered around pipelined
//! requests or answers of several frames, a short or closing connection that closes before
//! the rest is written, pings inside a reply, a blocked write that escapes the write timeout
//! or the drain, garbage on the wire for a reply the framing cannot carry, counters off.
//!
//! Real loopback sockets only. Every expected byte stream is built by this file's own
//! encoder (not the crate's codec, which shares `encode_head` with the code under review)
//! and compared byte for byte with what the client read, to the end of the stream. Replies
//! are slices of one shared random pool at offsets distinct per request, so a reply lost,
//! repeated or moved shows as a difference.

mod common;
mod tls_common;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use common::{SOON, eventually, same, spec};
use keepwire::liveness::PingConfig;
use keepwire::server::{
    Answer, BoxError, Mode, Request, Server, ServerConfig, ServerStats, ShutdownReport, service_fn,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ------------------------------------------------------------------ replies

/// Bytes every reply is cut from.
const POOL_LEN: usize = 10 << 20;

fn pool() -> &'static Bytes {
    static POOL: OnceLock<Bytes> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut v = Vec::with_capacity(POOL_LEN + 8);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while v.len() < POOL_LEN {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(POOL_LEN);
        Bytes::from(v)
    })
}

/// Reply `seq` of `size` bytes: a slice of the pool (no copy), at an offset of its own.
fn body(size: usize, seq: u64) -> Bytes {
    assert!(size <= POOL_LEN);
    let room = (POOL_LEN - size + 1) as u64;
    let off = (seq.wrapping_mul(104_729) ^ (size as u64).wrapping_mul(31)) % room;
    let off = usize::try_from(off).unwrap();
    pool().slice(off..off + size)
}

/// [`body`] mapped to lowercase letters (for `line` framing, which cannot carry `\n`).
fn text_body(size: usize, seq: u64) -> Bytes {
    body(size, seq).iter().map(|b| b'a' + b % 26).collect()
}

/// A request: `GEN <size>@<seq>,... <flags>` (`-` for no frame or no flag). Flags: `d` the
/// handler waits 30 ms first (not ready at once), `v` the answer is `Answer::many` even for
/// one frame, `c` then_close, `a` then_await_close, `t` text bodies.
fn cmd(frames: &[(usize, u64)], flags: &str) -> String {
    let list: Vec<String> = frames.iter().map(|(s, q)| format!("{s}@{q}")).collect();
    let list = if list.is_empty() {
        "-".to_string()
    } else {
        list.join(",")
    };
    format!("GEN {list} {}", if flags.is_empty() { "-" } else { flags })
}

/// The frames a command asks for, as the handler builds them.
fn frames_of(frames: &[(usize, u64)], flags: &str) -> Vec<Bytes> {
    frames
        .iter()
        .map(|&(s, q)| {
            if flags.contains('t') {
                text_body(s, q)
            } else {
                body(s, q)
            }
        })
        .collect()
}

/// The handler: parses the command after the `skip` prefix (trailing padding ignored).
async fn handle(skip: usize, req: Request) -> Result<Answer, BoxError> {
    let text = std::str::from_utf8(&req.frame[skip..]).map_err(|e| e.to_string())?;
    let mut words = text.split_ascii_whitespace();
    if words.next() != Some("GEN") {
        return Err(format!("not a command: {text:?}").into());
    }
    let list = words.next().ok_or("no frame list")?;
    let flags = words.next().unwrap_or("-");
    let mut frames = Vec::new();
    if list != "-" {
        for part in list.split(',') {
            let (s, q) = part.split_once('@').ok_or("bad frame")?;
            frames.push((s.parse::<usize>()?, q.parse::<u64>()?));
        }
    }
    let frames = frames_of(&frames, flags);
    if flags.contains('d') {
        tokio::time::sleep(ms(30)).await;
    }
    let mut a = if flags.contains('v') || frames.len() != 1 {
        Answer::many(frames)
    } else {
        Answer::one(frames[0].clone())
    };
    if flags.contains('c') {
        a = a.then_close();
    }
    if flags.contains('a') {
        a = a.then_await_close();
    }
    Ok(a)
}

// ------------------------------------------------------------------ framing, by hand

#[derive(Clone, Copy, Debug)]
enum Enc {
    Be,
    Le,
    Ascii,
    Hex,
    Bcd,
}

/// A framing as this file encodes it, independently of the crate's codec.
#[derive(Clone, Debug)]
enum Framing {
    Len {
        enc: Enc,
        width: usize,
        incl: bool,
        skip: usize,
        adj: i64,
        max: Option<usize>,
    },
    Fixed(usize),
    Eof(Option<usize>),
    Line,
}

fn len(enc: Enc, width: usize) -> Framing {
    Framing::Len {
        enc,
        width,
        incl: false,
        skip: 0,
        adj: 0,
        max: None,
    }
}

/// A length framing with options: `incl`, `skip`, `adj`, `max`.
fn len_opts(
    enc: Enc,
    width: usize,
    incl: bool,
    skip: usize,
    adj: i64,
    max: Option<usize>,
) -> Framing {
    Framing::Len {
        enc,
        width,
        incl,
        skip,
        adj,
        max,
    }
}

const DEFAULT_MAX: usize = 8 << 20;

impl Framing {
    fn spec(&self) -> String {
        match self {
            Framing::Len {
                enc,
                width,
                incl,
                skip,
                adj,
                max,
            } => {
                let e = match enc {
                    Enc::Be => "be",
                    Enc::Le => "le",
                    Enc::Ascii => "ascii",
                    Enc::Hex => "hex",
                    Enc::Bcd => "bcd",
                };
                let mut s = format!("len:{e}:{width}");
                if *incl {
                    s.push_str(":incl");
                }
                if *skip != 0 {
                    s.push_str(&format!(":skip={skip}"));
                }
                if *adj != 0 {
                    s.push_str(&format!(":adj={adj}"));
                }
                if let Some(m) = max {
                    s.push_str(&format!(":max={m}"));
                }
                s
            }
            Framing::Fixed(n) => format!("fixed:{n}"),
            Framing::Eof(None) => "eof".into(),
            Framing::Eof(Some(m)) => format!("eof:max={m}"),
            Framing::Line => "line".into(),
        }
    }

    fn skip(&self) -> usize {
        match self {
            Framing::Len { skip, .. } => *skip,
            _ => 0,
        }
    }

    /// The largest frame (skip prefix included) the framing carries.
    fn max_frame(&self) -> usize {
        match self {
            Framing::Len {
                enc,
                width,
                incl,
                skip,
                adj,
                max,
            } => {
                let w = u32::try_from(*width).unwrap();
                let cap: i128 = match enc {
                    Enc::Be | Enc::Le => (1i128 << (8 * w)) - 1,
                    Enc::Ascii => 10i128.pow(w) - 1,
                    Enc::Hex => 16i128.pow(w) - 1,
                    Enc::Bcd => 10i128.pow(2 * w) - 1,
                };
                let incl = if *incl { (skip + width) as i128 } else { 0 };
                let body = (cap + i128::from(*adj) - incl).max(0);
                let body = usize::try_from(body)
                    .unwrap_or(usize::MAX)
                    .min(max.unwrap_or(DEFAULT_MAX));
                skip + body
            }
            Framing::Fixed(n) => *n,
            Framing::Eof(m) => m.unwrap_or(DEFAULT_MAX),
            Framing::Line => DEFAULT_MAX,
        }
    }

    /// `frame` as it goes on the wire.
    fn wire(&self, frame: &[u8]) -> Vec<u8> {
        match self {
            Framing::Len {
                enc,
                width,
                incl,
                skip,
                adj,
                ..
            } => {
                let (prefix, body) = frame.split_at(*skip);
                let incl = if *incl { (skip + width) as i128 } else { 0 };
                let value = body.len() as i128 - i128::from(*adj) + incl;
                let value = u64::try_from(value).expect("frame too short for adj");
                let w = *width;
                let field: Vec<u8> = match enc {
                    Enc::Be => value.to_be_bytes()[8 - w..].to_vec(),
                    Enc::Le => value.to_le_bytes()[..w].to_vec(),
                    Enc::Ascii => format!("{value:0w$}").into_bytes(),
                    Enc::Hex => format!("{value:0w$X}").into_bytes(),
                    Enc::Bcd => {
                        let digits = format!("{value:0dw$}", dw = 2 * w).into_bytes();
                        digits
                            .chunks(2)
                            .map(|p| ((p[0] - b'0') << 4) | (p[1] - b'0'))
                            .collect()
                    }
                };
                assert_eq!(field.len(), w, "value {value} does not fit {}", self.spec());
                let mut v = Vec::with_capacity(frame.len() + w);
                v.extend_from_slice(prefix);
                v.extend_from_slice(&field);
                v.extend_from_slice(body);
                v
            }
            Framing::Fixed(_) | Framing::Eof(_) => frame.to_vec(),
            Framing::Line => {
                let mut v = frame.to_vec();
                v.push(b'\n');
                v
            }
        }
    }

    /// The request frame carrying `command`: after the skip prefix; padded to `fixed:N`.
    fn request_frame(&self, command: &str) -> Vec<u8> {
        let mut v = vec![b'~'; self.skip()];
        v.extend_from_slice(command.as_bytes());
        if let Framing::Len { adj, skip, .. } = self {
            // A positive `adj` needs a body at least that long (the field cannot go negative).
            let least = skip + usize::try_from(*adj).unwrap_or(0);
            if v.len() < least {
                v.resize(least, b' ');
            }
        }
        if let Framing::Fixed(n) = self {
            assert!(v.len() <= *n, "command longer than fixed:{n}");
            v.resize(*n, b' ');
        }
        v
    }

    /// The request on the wire.
    fn request(&self, frames: &[(usize, u64)], flags: &str) -> Vec<u8> {
        self.wire(&self.request_frame(&cmd(frames, flags)))
    }

    /// The reply stream for that request.
    fn reply(&self, frames: &[(usize, u64)], flags: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for f in frames_of(frames, flags) {
            v.extend_from_slice(&self.wire(&f));
        }
        v
    }
}

// ------------------------------------------------------------------ server and client

struct Srv {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    stop: CancellationToken,
    task: JoinHandle<ShutdownReport>,
}

fn config(f: &Framing) -> ServerConfig {
    ServerConfig::new(spec(&f.spec()))
}

/// A server answering [`cmd`] requests under framing `f`.
async fn start(cfg: ServerConfig, f: &Framing) -> Srv {
    let skip = f.skip();
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    let stats = server.stats();
    let stop = server.shutdown_token();
    let svc = service_fn(move |req: Request| handle(skip, req));
    let task = tokio::spawn(async move { server.serve(svc).await.unwrap() });
    Srv {
        addr,
        stats,
        stop,
        task,
    }
}

/// A client socket; `rcvbuf`: a small fixed receive buffer (no autotuning), so that large
/// replies do not fit the socket buffers and the server's `writev` is partial.
async fn connect(addr: SocketAddr, rcvbuf: Option<u32>) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n).unwrap();
    }
    let s = sock.connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// How a client reads: reads of at most `chunk` bytes, a pause of `pause` after every
/// `every` reads (never when `every` is 0).
#[derive(Clone, Copy, Debug)]
struct Pace {
    chunk: usize,
    every: u32,
    pause: Duration,
}

const FAST: Pace = Pace {
    chunk: 1 << 20,
    every: 0,
    pause: Duration::ZERO,
};

const SLOW: Pace = Pace {
    chunk: 4096,
    every: 8,
    pause: Duration::from_millis(1),
};

/// How a read ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// All the bytes asked for.
    Full,
    /// A clean EOF first.
    Eof,
    /// An error first (a reset).
    Err(std::io::ErrorKind),
}

/// Bound on any one stream read in this file.
const READ_BOUND: Duration = Duration::from_secs(15);

/// Reads `n` bytes (fewer if the stream ends first) at `pace`; panics if the stream stalls.
async fn read_n<R: AsyncRead + Unpin>(
    r: &mut R,
    n: usize,
    pace: Pace,
    what: &str,
) -> (Vec<u8>, End) {
    let mut out = vec![0u8; n];
    let mut got = 0;
    let mut reads = 0u32;
    let deadline = Instant::now() + READ_BOUND;
    while got < n {
        let end = (got + pace.chunk).min(n);
        match tokio::time::timeout_at(deadline, r.read(&mut out[got..end])).await {
            Err(_) => panic!("{what}: stream stalled after {got} of {n} bytes"),
            Ok(Ok(0)) => {
                out.truncate(got);
                return (out, End::Eof);
            }
            Ok(Ok(k)) => got += k,
            Ok(Err(e)) => {
                out.truncate(got);
                return (out, End::Err(e.kind()));
            }
        }
        reads += 1;
        if pace.every > 0 && reads % pace.every == 0 {
            tokio::time::sleep(pace.pause).await;
        }
    }
    (out, End::Full)
}

/// Reads everything until the stream ends (bounded by [`SOON`]).
async fn read_rest<R: AsyncRead + Unpin>(r: &mut R, what: &str) -> (Vec<u8>, End) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + SOON;
    loop {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Err(_) => panic!(
                "{what}: stream neither ended nor closed ({} bytes)",
                out.len()
            ),
            Ok(Ok(0)) => return (out, End::Eof),
            Ok(Ok(k)) => out.extend_from_slice(&buf[..k]),
            Ok(Err(e)) => return (out, End::Err(e.kind())),
        }
    }
}

/// Reads exactly `want` at `pace`, then checks it.
async fn expect_bytes<R: AsyncRead + Unpin>(r: &mut R, want: &[u8], pace: Pace, what: &str) {
    let (got, end) = read_n(r, want.len(), pace, what).await;
    same(what, &got, want);
    assert_eq!(end, End::Full, "{what}");
}

/// The peer's clean close with not one byte more.
async fn expect_clean_eof<R: AsyncRead + Unpin>(r: &mut R, what: &str) {
    let (rest, end) = read_rest(r, what).await;
    assert!(
        rest.is_empty(),
        "{what}: {} bytes after the last reply (starting {:02x?})",
        rest.len(),
        &rest[..rest.len().min(16)]
    );
    assert_eq!(end, End::Eof, "{what}: not a clean close");
}

async fn closed(stats: &ServerStats, n: u64) {
    eventually(&format!("{n} connections closed"), || {
        stats.snapshot().closed >= n
    })
    .await;
}

/// One request: the frames it asks for, (size, seq) each, and its flags (see [`cmd`]).
type Req = (Vec<(usize, u64)>, &'static str);

/// Replies above this do not fit an idle loopback socket at once (it takes about 3.3 MiB in
/// one `writev`, with tcp_wmem's usual 4 MiB): the direct write is partial.
const LARGER_THAN_THE_SOCKET: usize = 3 << 20;

/// Requests sent one at a time, each when the client has read `permille` of the reply
/// before it (so that it reaches the server while the rest of that reply is still being
/// written, or just after, when the socket is still full), the whole stream read at `pace`
/// and checked to the byte. `plan`: (size, seq, permille). Returns the frames.
async fn mid_reply(
    s: TcpStream,
    f: &Framing,
    plan: &[(usize, u64, u64)],
    pace: Pace,
    what: &str,
) -> u64 {
    let (mut r, mut w) = s.into_split();
    let mut want = Vec::new();
    // Where in the stream each request is sent.
    let mut triggers = Vec::new();
    let mut prev = (0usize, 0usize);
    for &(size, seq, permille) in plan {
        let at = prev.0 + usize::try_from(prev.1 as u64 * permille / 1000).unwrap();
        triggers.push(at);
        prev = (want.len(), f.wire(&body(size, seq)).len());
        want.extend_from_slice(&f.reply(&[(size, seq)], ""));
    }
    let mut got = vec![0u8; want.len()];
    let mut have = 0;
    let mut next = 0;
    let mut reads = 0u32;
    let deadline = Instant::now() + READ_BOUND;
    loop {
        while next < plan.len() && triggers[next] <= have {
            let (size, seq, _) = plan[next];
            w.write_all(&f.request(&[(size, seq)], "")).await.unwrap();
            next += 1;
        }
        if have == want.len() {
            break;
        }
        let end = (have + pace.chunk).min(want.len());
        match tokio::time::timeout_at(deadline, r.read(&mut got[have..end])).await {
            Err(_) => panic!(
                "{what}: stream stalled after {have} of {} bytes",
                want.len()
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(k)) => have += k,
        }
        reads += 1;
        if pace.every > 0 && reads % pace.every == 0 {
            tokio::time::sleep(pace.pause).await;
        }
    }
    got.truncate(have);
    same(what, &got, &want);
    w.shutdown().await.unwrap();
    expect_clean_eof(&mut r, what).await;
    plan.len() as u64
}

/// One request at a time: `plan` is (frames, flags) per request; the client sends it, reads
/// its whole reply at `pace`, then the next. Returns the frames answered.
async fn sequential<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    f: &Framing,
    plan: &[Req],
    pace: Pace,
    what: &str,
) -> u64 {
    let mut n = 0;
    for (i, (frames, flags)) in plan.iter().enumerate() {
        s.write_all(&f.request(frames, flags)).await.unwrap();
        s.flush().await.unwrap();
        let want = f.reply(frames, flags);
        if want.len() > LARGER_THAN_THE_SOCKET {
            // Read late: the `writev` finds the socket full, not drained as it goes.
            tokio::time::sleep(ms(20)).await;
        }
        let sizes: Vec<usize> = frames.iter().map(|x| x.0).collect();
        expect_bytes(s, &want, pace, &format!("{what}: request {i} {sizes:?}")).await;
        n += frames.len() as u64;
    }
    n
}

/// Sends `bursts` (each one write of several requests, `gap` between bursts) while reading
/// the concatenation of every reply at `pace` on the same connection. Returns the frames.
async fn bursts_over(
    s: TcpStream,
    f: &Framing,
    bursts: Vec<Vec<Req>>,
    gap: Duration,
    pace: Pace,
    what: &str,
) -> u64 {
    let (mut r, mut w) = s.into_split();
    let mut want = Vec::new();
    let mut n = 0;
    let mut writes = Vec::new();
    for burst in &bursts {
        let mut out = Vec::new();
        for (frames, flags) in burst {
            out.extend_from_slice(&f.request(frames, flags));
            want.extend_from_slice(&f.reply(frames, flags));
            n += frames.len() as u64;
        }
        writes.push(out);
    }
    let writer = tokio::spawn(async move {
        for out in writes {
            w.write_all(&out).await.unwrap();
            tokio::time::sleep(gap).await;
        }
        w
    });
    expect_bytes(&mut r, &want, pace, what).await;
    let mut w = tokio::time::timeout(SOON, writer).await.unwrap().unwrap();
    w.shutdown().await.unwrap();
    expect_clean_eof(&mut r, what).await;
    n
}

fn one(size: usize, seq: u64) -> Req {
    (vec![(size, seq)], "")
}

// ------------------------------------------------------------------ tests

/// Awaits every client task; a panic in one fails the test.
async fn join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        t.await.unwrap();
    }
}

/// The server counted no I/O error and no handler error (an unencodable reply is one).
fn no_errors(st: &keepwire::server::StatsSnapshot, what: &str) {
    assert_eq!(st.errors_io + st.errors_handler, 0, "{what}: {st:?}");
}

/// Every length header variant, one request at a time on an idle socket (the direct path
/// each time for the large ones): replies just below, at and above the 8 KiB threshold,
/// around 64 KiB, and larger than the socket buffers, each after a small one; the byte
/// stream is exactly header + body per reply, and nothing after the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_length_header_around_the_threshold_and_past_the_socket_buffers() {
    let framings = vec![
        len(Enc::Be, 4),
        len(Enc::Le, 2),
        len(Enc::Ascii, 6),
        len(Enc::Bcd, 3),
        len(Enc::Hex, 5),
        len_opts(Enc::Be, 4, true, 0, 0, None),
        len_opts(Enc::Be, 2, false, 3, 0, None),
        len_opts(Enc::Be, 4, true, 2, -3, None),
        len_opts(Enc::Le, 3, false, 0, 5, None),
        len_opts(Enc::Ascii, 7, true, 5, 0, None),
    ];
    // The loopback socket takes about 3.3 MiB in one `writev` (tcp_wmem's 4 MiB): 6 MiB
    // replies are written in part, the rest from the write buffer.
    const SIZES: [usize; 13] = [
        8190,
        8191,
        8192,
        8193,
        8194,
        16_384,
        65_533,
        65_535,
        65_536,
        65_538,
        1 << 20,
        (3 << 20) + 7,
        (6 << 20) + 3,
    ];
    let mut tasks = Vec::new();
    for (k, f) in framings.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let what = f.spec();
            let srv = start(config(&f), &f).await;
            // A window of fixed size: an autotuned one (up to tcp_rmem's max) would take
            // a 6 MiB reply whole.
            let mut s = connect(srv.addr, Some(64 * 1024)).await;
            let small = f.skip() + 13;
            let mut plan = Vec::new();
            let mut seq = k as u64 * 1000;
            for size in SIZES.into_iter().filter(|s| *s <= f.max_frame()) {
                plan.push(one(small, seq));
                plan.push(one(size, seq + 1));
                seq += 2;
            }
            // The largest the header carries, when that is not already in the list.
            if f.max_frame() < (3 << 20) {
                plan.push(one(f.max_frame(), seq));
            }
            let n = sequential(&mut s, &f, &plan, FAST, &what).await;
            s.shutdown().await.unwrap();
            expect_clean_eof(&mut s, &what).await;
            closed(&srv.stats, 1).await;
            let st = srv.stats.snapshot();
            assert_eq!(st.frames_out, n, "{what}: {st:?}");
            assert_eq!(st.frames_in, plan.len() as u64, "{what}: {st:?}");
            no_errors(&st, &what);
        }));
    }
    join(tasks).await;
}

/// A client with a small receive window, each request sent when it has read a given part
/// of the reply before it: some reach the server while the rest of a partial `writev` is
/// still being written, some just after, when the socket is still full (the direct write
/// is then partial again, or finds no room at all), some on an idle socket. Large and small
/// replies alternate; the stream is exact to the byte, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_mid_reply_get_every_partial_direct_write_whole_and_in_order() {
    let framings = vec![
        len(Enc::Be, 4),
        len_opts(Enc::Ascii, 7, false, 2, 0, None),
        len_opts(Enc::Bcd, 4, true, 0, 0, None),
    ];
    let pace = Pace {
        chunk: 16 * 1024,
        every: 4,
        pause: ms(1),
    };
    let mut tasks = Vec::new();
    for (k, f) in framings.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let what = format!("{} mid reply", f.spec());
            let srv = start(config(&f), &f).await;
            let s = connect(srv.addr, Some(8192)).await;
            let q = 100 + k as u64 * 100;
            let mut plan = vec![
                (5 << 20, q, 0),
                ((4 << 20) + 1, q + 1, 50),
                (8192, q + 2, 100),
                (20, q + 3, 1000),
                ((3 << 20) + 5, q + 4, 1000),
                (6 << 20, q + 5, 500),
                (8193, q + 6, 30),
                (2 << 20, q + 7, 10),
                (9000, q + 8, 900),
                (4 << 20, q + 9, 200),
                (8192, q + 10, 20),
                ((5 << 20) + 3, q + 11, 700),
                (10, q + 12, 0),
                (300_001, q + 13, 0),
            ];
            if k > 0 {
                // The others: a shorter run (time).
                plan.truncate(8);
            }
            let n = mid_reply(s, &f, &plan, pace, &what).await;
            closed(&srv.stats, 1).await;
            let st = srv.stats.snapshot();
            assert_eq!(st.frames_out, n, "{what}: {st:?}");
            assert_eq!(st.frames_in, n, "{what}: {st:?}");
            no_errors(&st, &what);
        }));
    }
    join(tasks).await;
}

/// A client that reads nothing for a while, requests sent one by one: direct writes land
/// on a socket that fills up, so one of them is partial wherever the socket's room ends. A
/// 20 000-byte `skip=` prefix makes the header most of each frame, so the `writev` often
/// stops inside the header (the rest of the header, then the whole body, go to the write
/// buffer). Once the client reads, the stream is exact to the byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_write_that_stops_inside_a_long_header_is_finished_in_order() {
    let f = len_opts(Enc::Be, 4, false, 20_000, 0, None);
    let srv = start(config(&f), &f).await;
    const SIZES: [usize; 5] = [28_192, 60_000, 100_000, 150_001, 28_193];
    const K: u64 = 70;
    let mut tasks = Vec::new();
    for c in 0..4u64 {
        let f = f.clone();
        let addr = srv.addr;
        tasks.push(tokio::spawn(async move {
            let what = format!("long header, conn {c}");
            let s = connect(addr, Some(8192)).await;
            let (mut r, mut w) = s.into_split();
            let plan: Vec<(usize, u64)> = (0..K)
                .map(|i| (SIZES[((i + c) % 5) as usize], c * 1000 + i))
                .collect();
            let mut want = Vec::new();
            for &(size, seq) in &plan {
                want.extend_from_slice(&f.reply(&[(size, seq)], ""));
            }
            let f2 = f.clone();
            let writer = tokio::spawn(async move {
                for (size, seq) in plan {
                    w.write_all(&f2.request(&[(size, seq)], "")).await.unwrap();
                    tokio::time::sleep(ms(4)).await;
                }
                w
            });
            // Reads nothing until the socket is full.
            tokio::time::sleep(ms(300)).await;
            expect_bytes(&mut r, &want, FAST, &what).await;
            let mut w = writer.await.unwrap();
            w.shutdown().await.unwrap();
            expect_clean_eof(&mut r, &what).await;
        }));
    }
    join(tasks).await;
    closed(&srv.stats, 4).await;
    let st = srv.stats.snapshot();
    assert_eq!((st.frames_out, st.frames_in), (4 * K, 4 * K), "{st:?}");
}

/// Several requests in one write (the batched path; the last of a batch may go direct when
/// the replies before it were written): every reply comes back in order. A burst is also
/// split in the middle of a frame, so that a whole frame waits with a partial one behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_come_back_in_order_fast_and_slow_readers() {
    let f = len(Enc::Be, 4);
    let srv = start(config(&f), &f).await;
    let mut tasks = Vec::new();
    for (k, (rcvbuf, pace)) in [(None, FAST), (Some(8192), SLOW)].into_iter().enumerate() {
        let f = f.clone();
        let addr = srv.addr;
        tasks.push(tokio::spawn(async move {
            let what = format!("pipelined, reader {k}");
            let q = 1000 * (k as u64 + 1);
            let bursts = vec![
                vec![
                    one(100, q),
                    one(70_000, q + 1),
                    one(8192, q + 2),
                    one(5, q + 3),
                    one(300_000, q + 4),
                    one(8191, q + 5),
                    one(9000, q + 6),
                ],
                vec![one(8192, q + 7)],
                vec![one(9000, q + 8), one(9000, q + 9), one(9000, q + 10)],
                // 100 KiB then a large one: the first is written before the last is handled
                // (64 KiB batch limit), which then finds the write buffer empty.
                vec![one(100_000, q + 11), one(200_000, q + 12)],
                vec![one(1 << 20, q + 13), one(20, q + 14), one(1 << 20, q + 15)],
                vec![one(20, q + 16), one(8193, q + 17)],
                // The first fills the socket (written from the write buffer); the second
                // then goes direct on a full socket.
                vec![one(4 << 20, q + 18), one(5 << 20, q + 19)],
            ];
            let s = connect(addr, rcvbuf).await;
            let n = bursts_over(s, &f, bursts, ms(5), pace, &what).await;
            // A burst split inside its last frame: the first part holds whole requests and
            // the start of the last one.
            let s = connect(addr, rcvbuf).await;
            let (mut r, mut w) = s.into_split();
            let reqs = [one(8192, q + 20), one(9000, q + 21), one(500_000, q + 22)];
            let mut out = Vec::new();
            let mut want = Vec::new();
            for (fr, fl) in &reqs {
                out.extend_from_slice(&f.request(fr, fl));
                want.extend_from_slice(&f.reply(fr, fl));
            }
            let cut = out.len() - 5;
            w.write_all(&out[..cut]).await.unwrap();
            tokio::time::sleep(ms(30)).await;
            w.write_all(&out[cut..]).await.unwrap();
            expect_bytes(&mut r, &want, pace, &format!("{what}, split burst")).await;
            w.shutdown().await.unwrap();
            expect_clean_eof(&mut r, &what).await;
            n + reqs.len() as u64
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    closed(&srv.stats, 4).await;
    let st = srv.stats.snapshot();
    assert_eq!(st.frames_out, n, "{st:?}");
    no_errors(&st, "");
}

/// Answers of several frames (never direct), `Answer::many` of one frame (direct), no frame
/// then a large one, sequential and then all pipelined; `frames_out` counts every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_many_frames_one_frame_in_a_list_and_none() {
    let f = len_opts(Enc::Be, 4, false, 0, 0, Some(16 << 20));
    let srv = start(config(&f), &f).await;
    let plan: Vec<Req> = vec![
        (vec![(9000, 1), (20, 2), (8192, 3)], ""),
        (vec![(8192, 4)], "v"),
        (vec![], ""),
        (vec![(70_000, 5)], ""),
        (vec![(100_000, 6), (100_000, 7)], ""),
        (vec![(8191, 8), (8193, 9)], "v"),
        (vec![(2 << 20, 10)], "v"),
        (vec![(3 << 20, 11), (1 << 20, 12), (10, 13)], ""),
        (vec![], "v"),
        (vec![(8192, 14)], ""),
    ];
    let mut s = connect(srv.addr, None).await;
    // One at a time (an empty answer has nothing to read: the next request follows at once).
    let mut n = sequential(&mut s, &f, &plan, FAST, "sequential").await;
    s.shutdown().await.unwrap();
    expect_clean_eof(&mut s, "sequential").await;
    // All in one write, with a slow small-window reader.
    let s = connect(srv.addr, Some(8192)).await;
    let burst: Vec<Req> = plan
        .iter()
        .map(|(fr, fl)| (fr.iter().map(|&(a, b)| (a, b + 50)).collect(), *fl))
        .collect();
    n += bursts_over(s, &f, vec![burst], ms(1), SLOW, "pipelined").await;
    closed(&srv.stats, 2).await;
    let st = srv.stats.snapshot();
    assert_eq!(st.frames_out, n, "{st:?}");
    assert_eq!(st.frames_in, 2 * plan.len() as u64, "{st:?}");
}

/// A handler whose answer is not ready at once (the slow path, no direct write), alternating
/// with ones that are, and a server whose `reply_delay` holds every answer back: exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_not_ready_at_once_and_reply_delay_keep_the_stream_exact() {
    let f = len(Enc::Be, 4);
    let srv = start(config(&f), &f).await;
    let mut delayed = config(&f);
    delayed.reply_delay = Some(ms(15));
    let srv_d = start(delayed, &f).await;
    let plan: Vec<Req> = vec![
        (vec![(8192, 1)], "d"),
        (vec![(8192, 2)], ""),
        (vec![(1 << 20, 3)], "d"),
        (vec![(20, 4)], "d"),
        (vec![(1 << 20, 5)], ""),
        (vec![(9000, 6)], "d"),
        (vec![(8191, 7)], "d"),
    ];
    let mut n = 0;
    let mut m = 0;
    for (k, (rcvbuf, pace)) in [(None, FAST), (Some(8192), SLOW)].into_iter().enumerate() {
        let mut s = connect(srv.addr, rcvbuf).await;
        n += sequential(&mut s, &f, &plan, pace, &format!("not ready {k}")).await;
        s.shutdown().await.unwrap();
        expect_clean_eof(&mut s, "not ready").await;
        // Pipelined: a slow one first holds the large ones behind it.
        let s = connect(srv.addr, rcvbuf).await;
        let burst: Vec<_> = plan.iter().map(|(a, b)| (a.clone(), *b)).collect();
        n += bursts_over(s, &f, vec![burst], ms(1), pace, "not ready, pipelined").await;
        let mut s = connect(srv_d.addr, rcvbuf).await;
        m += sequential(&mut s, &f, &plan, pace, &format!("reply_delay {k}")).await;
        s.shutdown().await.unwrap();
        expect_clean_eof(&mut s, "reply_delay").await;
    }
    closed(&srv.stats, 4).await;
    closed(&srv_d.stats, 2).await;
    assert_eq!(srv.stats.snapshot().frames_out, n);
    assert_eq!(srv_d.stats.snapshot().frames_out, m);
}

/// Short connections with large replies, the client's window small and its reading late
/// and slow: the whole reply, then the close (after the client's FIN, or first when the
/// server closes first), never a close in the middle of the rest of a partial `writev`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_large_replies_are_whole_before_the_close() {
    let f = len(Enc::Be, 4);
    let mut tasks = Vec::new();
    for closes_first in [false, true] {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut cfg = config(&f);
            cfg.mode = Mode::Short;
            cfg.short_server_closes_first = closes_first;
            let srv = start(cfg, &f).await;
            const SIZES: [usize; 5] = [8191, 8192, 8193, 300_000, 5 << 20];
            for (i, size) in SIZES.into_iter().enumerate() {
                let what = format!("short, closes first {closes_first}, {size} bytes");
                let mut s = connect(srv.addr, Some(8192)).await;
                s.write_all(&f.request(&[(size, i as u64)], ""))
                    .await
                    .unwrap();
                // Late: the server's write is blocked before the client reads a byte.
                tokio::time::sleep(ms(60)).await;
                let want = f.reply(&[(size, i as u64)], "");
                expect_bytes(&mut s, &want, SLOW, &what).await;
                if !closes_first {
                    s.shutdown().await.unwrap();
                }
                expect_clean_eof(&mut s, &what).await;
            }
            let n = SIZES.len() as u64;
            closed(&srv.stats, n).await;
            let st = srv.stats.snapshot();
            assert_eq!(st.frames_out, n, "{st:?}");
            no_errors(&st, "");
        }));
    }
    join(tasks).await;
}

/// Pings every 100 ms of read silence, a client with a small window that reads a 4 MiB reply
/// for several intervals and pauses past the interval between requests, answering every
/// ping: pings come only between frames (the stream decodes strictly), every reply is
/// exact, and the pings seen are the pings the server counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_due_while_a_large_reply_crawls_out_stay_between_frames() {
    let f = len(Enc::Be, 4);
    let mut cfg = config(&f);
    cfg.liveness.ping = Some(PingConfig {
        interval: ms(100),
        timeout: ms(400),
        misses: 3,
    });
    let srv = start(cfg, &f).await;
    let s = connect(srv.addr, Some(8192)).await;
    let (mut r, mut w) = s.into_split();
    let pace = Pace {
        chunk: 4096,
        every: 4,
        pause: ms(1),
    };
    let sizes = [4 << 20, 8192, 20, (2 << 20) + 1, 9000];
    let mut beats = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        let what = format!("request {i} ({size} bytes)");
        w.write_all(&f.request(&[(size, i as u64)], ""))
            .await
            .unwrap();
        let want = body(size, i as u64);
        loop {
            let (head, end) = read_n(&mut r, 4, pace, &what).await;
            assert_eq!(end, End::Full, "{what}: closed");
            let n = u32::from_be_bytes(head.try_into().unwrap()) as usize;
            if n == 0 {
                beats += 1;
                w.write_all(&[0, 0, 0, 0]).await.unwrap();
                continue;
            }
            assert_eq!(n, size, "{what}: a frame of another size");
            expect_bytes(&mut r, &want, pace, &what).await;
            break;
        }
        // Past the interval: a ping falls due before the next request.
        tokio::time::sleep(ms(160)).await;
    }
    w.shutdown().await.unwrap();
    let (rest, end) = read_rest(&mut r, "after the last reply").await;
    assert_eq!(end, End::Eof);
    assert_eq!(rest.len() % 4, 0, "{rest:02x?}");
    assert!(rest.iter().all(|b| *b == 0), "data after the last reply");
    beats += (rest.len() / 4) as u64;
    closed(&srv.stats, 1).await;
    let st = srv.stats.snapshot();
    assert!(st.pings_sent >= 3, "no ping fell due: {st:?}");
    // (An answer of ours the server took for a ping of ours is answered: pings_answered.)
    let heartbeats = st.pings_sent + st.pings_answered;
    assert_eq!(beats, heartbeats, "heartbeats seen vs sent: {st:?}");
    assert_eq!(st.frames_out, sizes.len() as u64 + heartbeats, "{st:?}");
    assert_eq!(st.heartbeat_timeouts + st.errors_io, 0, "{st:?}");
}

/// A client that never reads: the partial direct write's rest waits within the write
/// timeout, then the connection is cut (counted as an I/O error); what reached the client
/// is a clean prefix of the reply followed by a clean close. Requests sent after the stuck
/// one are never read (the server does not buffer reply after reply for a peer that reads
/// nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_by_the_write_timeout() {
    let f = len(Enc::Be, 4);
    let mut cfg = config(&f);
    cfg.write_timeout = ms(400);
    let srv = start(cfg, &f).await;
    let size = 6 << 20;
    let mut s = connect(srv.addr, Some(8192)).await;
    s.write_all(&f.request(&[(size, 1)], "")).await.unwrap();
    let t = Instant::now();
    closed(&srv.stats, 1).await;
    let took = t.elapsed();
    assert!(took >= ms(350), "cut after {took:?}, write timeout 400 ms");
    assert!(
        took <= ms(400) + Duration::from_secs(4),
        "cut after {took:?}"
    );
    let st = srv.stats.snapshot();
    assert_eq!(st.errors_io, 1, "not cut by the write timeout: {st:?}");
    assert_eq!((st.frames_in, st.frames_out), (1, 1), "{st:?}");
    let (got, end) = read_rest(&mut s, "stuck client").await;
    let want = f.reply(&[(size, 1)], "");
    assert!(got.len() > 4, "not even the header arrived");
    assert!(
        got.len() < want.len(),
        "a whole reply through a blocked socket?"
    );
    same("stuck client's prefix", &got, &want[..got.len()]);
    assert_eq!(end, End::Eof, "not a clean close");

    // More requests behind a stuck reply: never read, never answered.
    let mut s = connect(srv.addr, Some(8192)).await;
    s.write_all(&f.request(&[(size, 2)], "")).await.unwrap();
    // Its reply counted: the direct write of 1 MiB into an 8 KiB window was made and stuck.
    eventually("the second reply written", || {
        srv.stats.snapshot().frames_out == 2
    })
    .await;
    for i in 0..30 {
        s.write_all(&f.request(&[(1 << 20, 10 + i)], ""))
            .await
            .unwrap();
    }
    closed(&srv.stats, 2).await;
    let st = srv.stats.snapshot();
    assert_eq!(st.errors_io, 2, "{st:?}");
    assert_eq!((st.frames_in, st.frames_out), (2, 2), "{st:?}");
}

/// The drain while a direct write's rest is blocked: the client reads late and slowly; it
/// gets the whole reply, then the server's clean close, with no force-close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_finishes_a_blocked_direct_write_before_closing() {
    let f = len(Enc::Be, 4);
    let mut cfg = config(&f);
    cfg.shutdown_grace = Duration::from_secs(6);
    let srv = start(cfg, &f).await;
    let mut s = connect(srv.addr, Some(8192)).await;
    let size = 6 << 20;
    s.write_all(&f.request(&[(size, 7)], "")).await.unwrap();
    // The reply is counted just before its direct write, which 6 MiB into an 8 KiB window
    // leaves blocked.
    eventually("the reply written", || srv.stats.snapshot().frames_out == 1).await;
    srv.stop.cancel();
    // The client reads late: the drain finds the write still blocked.
    tokio::time::sleep(ms(100)).await;
    let want = f.reply(&[(size, 7)], "");
    expect_bytes(&mut s, &want, SLOW, "drained").await;
    expect_clean_eof(&mut s, "drained").await;
    s.shutdown().await.unwrap();
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    assert_eq!(report.force_closed, 0, "{report:?}");
    assert!(report.drain_time < Duration::from_secs(5), "{report:?}");
    let st = srv.stats.snapshot();
    assert_eq!(
        (st.frames_out, st.closed, st.errors_io),
        (1, 1, 0),
        "{st:?}"
    );
}

/// The grace runs out on a client that never reads: force-closed and reported; what it got
/// is a clean prefix of the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_runs_out_on_a_blocked_direct_write() {
    let f = len(Enc::Be, 4);
    let mut cfg = config(&f);
    cfg.shutdown_grace = ms(300);
    let srv = start(cfg, &f).await;
    let mut s = connect(srv.addr, Some(8192)).await;
    let size = 6 << 20;
    s.write_all(&f.request(&[(size, 9)], "")).await.unwrap();
    eventually("the request was read", || {
        srv.stats.snapshot().frames_in == 1
    })
    .await;
    let t = Instant::now();
    srv.stop.cancel();
    let report = tokio::time::timeout(SOON, srv.task).await.unwrap().unwrap();
    let took = t.elapsed();
    assert_eq!(report.force_closed, 1, "{report:?}");
    assert!(took >= ms(250) && took < Duration::from_secs(4), "{took:?}");
    let (got, _end) = read_rest(&mut s, "force-closed").await;
    let want = f.reply(&[(size, 9)], "");
    assert!(
        got.len() > 4 && got.len() < want.len(),
        "{} bytes",
        got.len()
    );
    same("force-closed prefix", &got, &want[..got.len()]);
    let st = srv.stats.snapshot();
    assert_eq!((st.frames_out, st.force_closed), (1, 1), "{st:?}");
}

/// Large replies the framing cannot carry (too long for the header or `max`, shorter than
/// the `skip=` prefix, a negative length after `adj`, the wrong size for `fixed`): after a
/// good large reply, the bad one closes the connection with a handler error and not one of
/// its bytes (no header, no prefix) on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_replies_the_framing_cannot_carry_close_without_a_byte_of_them() {
    let cases: Vec<(Framing, usize, usize)> = vec![
        (len(Enc::Be, 2), 65_535, 70_000),
        (len_opts(Enc::Le, 2, true, 0, 0, None), 65_533, 65_534),
        (len(Enc::Ascii, 4), 9_999, 10_000),
        (len(Enc::Bcd, 2), 9_999, 10_000),
        (
            len_opts(Enc::Be, 4, false, 0, 0, Some(10_000)),
            10_000,
            10_001,
        ),
        (len_opts(Enc::Be, 4, false, 9_000, 0, None), 9_000, 8_500),
        (len_opts(Enc::Be, 4, false, 0, 9_000, None), 9_500, 8_500),
        (len_opts(Enc::Be, 2, false, 4, -2, None), 65_537, 65_538),
        (Framing::Fixed(16_384), 16_384, 16_383),
        (Framing::Fixed(16_384), 16_384, 16_385),
    ];
    let mut tasks = Vec::new();
    for (k, (f, good, bad)) in cases.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let what = format!("{}: good {good}, bad {bad}", f.spec());
            let srv = start(config(&f), &f).await;
            for rcvbuf in [None, Some(8192)] {
                let mut s = connect(srv.addr, rcvbuf).await;
                let q = k as u64 * 10;
                let want = f.reply(&[(good, q)], "");
                s.write_all(&f.request(&[(good, q)], "")).await.unwrap();
                expect_bytes(&mut s, &want, FAST, &what).await;
                s.write_all(&f.request(&[(bad, q + 1)], "")).await.unwrap();
                expect_clean_eof(&mut s, &what).await;
            }
            closed(&srv.stats, 2).await;
            let st = srv.stats.snapshot();
            assert_eq!(st.errors_handler, 2, "{what}: {st:?}");
            assert_eq!((st.frames_in, st.frames_out), (4, 2), "{what}: {st:?}");
        }));
    }
    // `eof`: one reply a connection; one over `max` goes out as nothing at all.
    tasks.push(tokio::spawn(async move {
        let f = Framing::Eof(Some(9_000));
        let srv = start(config(&f), &f).await;
        for (i, size) in [9_000, 9_001].into_iter().enumerate() {
            let what = format!("eof:max=9000, {size} bytes");
            let mut s = connect(srv.addr, None).await;
            s.write_all(&f.request(&[(size, i as u64)], ""))
                .await
                .unwrap();
            s.shutdown().await.unwrap();
            let (got, end) = read_rest(&mut s, &what).await;
            let want = if size <= 9_000 {
                f.reply(&[(size, i as u64)], "")
            } else {
                Vec::new()
            };
            same(&what, &got, &want);
            assert_eq!(end, End::Eof, "{what}");
        }
        closed(&srv.stats, 2).await;
        let st = srv.stats.snapshot();
        assert_eq!((st.frames_out, st.errors_handler), (1, 1), "{st:?}");
    }));
    join(tasks).await;
}

/// `fixed:N` with large N (and N on either side of the threshold), one at a time and three
/// in one write; `eof` framing with replies around the threshold and past the socket
/// buffers, read late and slowly: the reply, then the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_and_eof_framings_with_large_replies() {
    let mut tasks = Vec::new();
    for n in [8191, 8192, 100_000] {
        tasks.push(tokio::spawn(async move {
            let f = Framing::Fixed(n);
            let what = f.spec();
            let srv = start(config(&f), &f).await;
            let mut s = connect(srv.addr, None).await;
            let plan = vec![one(n, 1), one(n, 2), one(n, 3)];
            let mut frames = sequential(&mut s, &f, &plan, FAST, &what).await;
            s.shutdown().await.unwrap();
            expect_clean_eof(&mut s, &what).await;
            let s = connect(srv.addr, Some(8192)).await;
            let burst = vec![vec![one(n, 4), one(n, 5), one(n, 6)], vec![one(n, 7)]];
            frames += bursts_over(s, &f, burst, ms(20), SLOW, &what).await;
            closed(&srv.stats, 2).await;
            assert_eq!(srv.stats.snapshot().frames_out, frames, "{what}");
        }));
    }
    tasks.push(tokio::spawn(async move {
        let f = Framing::Eof(None);
        let srv = start(config(&f), &f).await;
        let sizes = [8191, 8192, 8193, (5 << 20) + 1];
        for (i, size) in sizes.into_iter().enumerate() {
            let what = format!("eof, {size} bytes");
            let mut s = connect(srv.addr, Some(8192)).await;
            s.write_all(&f.request(&[(size, i as u64)], ""))
                .await
                .unwrap();
            s.shutdown().await.unwrap();
            tokio::time::sleep(ms(40)).await;
            expect_bytes(&mut s, &f.reply(&[(size, i as u64)], ""), SLOW, &what).await;
            expect_clean_eof(&mut s, &what).await;
        }
        closed(&srv.stats, sizes.len() as u64).await;
        let st = srv.stats.snapshot();
        assert_eq!(st.frames_out, sizes.len() as u64, "{st:?}");
        no_errors(&st, "");
    }));
    join(tasks).await;
}

/// An answer that closes after one large frame (`then_close`, `then_await_close`) and a slow
/// small-window reader: the whole reply, then a clean close, never a reset that destroys
/// the rest; a request pipelined behind a closing answer is not answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_answers_of_one_large_frame_are_whole_before_the_close() {
    let f = len(Enc::Be, 4);
    let srv = start(config(&f), &f).await;
    let size = (5 << 20) + 5;
    for (i, flags) in ["c", "a", "vc"].into_iter().enumerate() {
        let what = format!("closing answer {flags:?}");
        let mut s = connect(srv.addr, Some(8192)).await;
        let q = i as u64 * 3;
        s.write_all(&f.request(&[(size, q)], flags)).await.unwrap();
        tokio::time::sleep(ms(60)).await;
        expect_bytes(&mut s, &f.reply(&[(size, q)], flags), SLOW, &what).await;
        if flags == "a" {
            s.shutdown().await.unwrap();
        }
        expect_clean_eof(&mut s, &what).await;
    }
    // Pipelined behind a closing answer.
    let mut s = connect(srv.addr, Some(8192)).await;
    let mut out = f.request(&[(size, 20)], "c");
    out.extend_from_slice(&f.request(&[(9000, 21)], ""));
    s.write_all(&out).await.unwrap();
    expect_bytes(&mut s, &f.reply(&[(size, 20)], "c"), SLOW, "pipelined").await;
    expect_clean_eof(&mut s, "pipelined behind a close").await;
    closed(&srv.stats, 4).await;
    let st = srv.stats.snapshot();
    assert_eq!(st.frames_out, 4, "{st:?}");
    no_errors(&st, "");
}

/// `line` framing (no header/body split: the copy path) with large replies: exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_framing_large_replies_are_exact() {
    let f = Framing::Line;
    let srv = start(config(&f), &f).await;
    let plan: Vec<Req> = [8191, 8192, 8193, 100_000, 1 << 20]
        .iter()
        .enumerate()
        .map(|(i, &s)| (vec![(s, i as u64)], "t"))
        .collect();
    let mut s = connect(srv.addr, Some(8192)).await;
    let n = sequential(&mut s, &f, &plan, SLOW, "line").await;
    s.shutdown().await.unwrap();
    expect_clean_eof(&mut s, "line").await;
    closed(&srv.stats, 1).await;
    assert_eq!(srv.stats.snapshot().frames_out, n);
}

/// TLS (never direct): large replies around the threshold and past the buffers, one at a
/// time and pipelined, exact after decryption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_large_replies_are_exact() {
    let f = len(Enc::Be, 4);
    let pki = tls_common::Pki::new();
    let mut cfg = config(&f);
    cfg.tls = Some(pki.server_tls(false));
    let srv = start(cfg, &f).await;
    let tcp = connect(srv.addr, Some(8192)).await;
    let mut s = pki
        .client_tls(false)
        .connect(tcp, "localhost:1", SOON)
        .await
        .unwrap();
    let plan: Vec<Req> = [8191, 8192, 8193, 20, 1 << 20, (2 << 20) + 1]
        .iter()
        .enumerate()
        .map(|(i, &s)| (vec![(s, i as u64)], ""))
        .collect();
    let mut n = sequential(&mut s, &f, &plan, SLOW, "tls").await;
    let mut out = Vec::new();
    let mut want = Vec::new();
    for (i, size) in [9000, 8192, 20, 300_000, 8193].into_iter().enumerate() {
        out.extend_from_slice(&f.request(&[(size, 100 + i as u64)], ""));
        want.extend_from_slice(&f.reply(&[(size, 100 + i as u64)], ""));
        n += 1;
    }
    s.write_all(&out).await.unwrap();
    s.flush().await.unwrap();
    expect_bytes(&mut s, &want, SLOW, "tls pipelined").await;
    s.shutdown().await.unwrap();
    let (rest, _) = read_rest(&mut s, "tls end").await;
    assert!(rest.is_empty(), "{} bytes after the last reply", rest.len());
    closed(&srv.stats, 1).await;
    let st = srv.stats.snapshot();
    assert_eq!(st.frames_out, n, "{st:?}");
}

/// Many connections at once, each its own mix of sizes, bursts and reading speeds: no
/// connection's bytes show up on another, every stream exact, counters exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_at_once_each_get_exactly_their_own_stream() {
    let f = len_opts(Enc::Be, 4, false, 1, 0, None);
    let srv = start(config(&f), &f).await;
    const N: u64 = 12;
    const SIZES: [usize; 9] = [8192, 20, 8191, 70_000, 8193, 250_000, 9_000, 31_000, 40_000];
    let mut tasks = Vec::new();
    for c in 0..N {
        let f = f.clone();
        let addr = srv.addr;
        tasks.push(tokio::spawn(async move {
            let slow = c % 2 == 1;
            let s = connect(addr, slow.then_some(8192)).await;
            let mut bursts = Vec::new();
            let mut seq = c * 1000;
            for round in 0..6u64 {
                let k = 1 + (c + round) % 3;
                let mut burst = Vec::new();
                for j in 0..k {
                    let size = SIZES[((c * 5 + round * 7 + j * 3) % 9) as usize];
                    burst.push(one(size, seq));
                    seq += 1;
                }
                bursts.push(burst);
            }
            let pace = if slow { SLOW } else { FAST };
            bursts_over(s, &f, bursts, ms(3 * (c % 4)), pace, &format!("conn {c}")).await
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    closed(&srv.stats, N).await;
    let st = srv.stats.snapshot();
    assert_eq!(st.frames_out, n, "{st:?}");
    assert_eq!(st.frames_in, n, "{st:?}");
    no_errors(&st, "");
}

// Regression: the direct path first wrote with `writev(2)` (tokio's `try_write_vectored`),
// which has no MSG_NOSIGNAL: [(8191, false), (8192, true), (8191, false), (100000, true)]
// was (reply size, SIGPIPE raised). It now writes with sendmsg(MSG_NOSIGNAL).
/// A peer that sent a request, then its FIN, then a reset (a client that gave up: closed
/// with `SO_LINGER` 0) before the server got to it. The server reads the request (the
/// kernel keeps it readable after the reset) and writes the reply into a socket in error:
/// `EPIPE`. The copy path writes with `send(MSG_NOSIGNAL)` (tokio's `try_write`, as std's
/// own writes; pipeline/outbound.rs says the same of its `send`), so the error is only an
/// error. The direct path must be the same: a plain `writev` (tokio's
/// `try_write_vectored`) has no such flag, and the kernel would raise SIGPIPE, which kills a
/// process whose SIGPIPE is not ignored (a C host, a binary built with
/// `-Zon-broken-pipe=kill`, a CLI that restores the default). SIGPIPE is
/// made visible here by tokio's handler (installed for the test; Rust's runtime ignores the
/// signal otherwise). A current-thread runtime: the client's steps run with no server step
/// between them, so the request, FIN and reset all wait in the server's socket.
#[tokio::test]
async fn a_direct_write_to_a_peer_that_reset_raises_no_sigpipe() {
    use std::io::Write as _;
    use tokio::signal::unix::{SignalKind, signal};
    let mut pipes = signal(SignalKind::pipe()).unwrap();
    let f = len(Enc::Be, 4);
    let srv = start(config(&f), &f).await;
    let mut sigpipes = Vec::new();
    // 8191: the copy path (control); 8192: the direct path.
    for (i, size) in [8191usize, 8192, 8191, 100_000].into_iter().enumerate() {
        let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
        let n = i as u64 + 1;
        eventually("accepted", || srv.stats.snapshot().accepted >= n).await;
        tokio::time::sleep(ms(20)).await;
        s.write_all(&f.request(&[(size, i as u64)], "")).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
        closed(&srv.stats, n).await;
        let st = srv.stats.snapshot();
        // The request was read and its reply written (counted before the write).
        assert_eq!((st.frames_in, st.frames_out), (n, n), "{size}: {st:?}");
        let raised = tokio::time::timeout(ms(200), pipes.recv()).await.is_ok();
        sigpipes.push((size, raised));
    }
    assert!(
        sigpipes.iter().all(|(_, raised)| !raised),
        "SIGPIPE raised by the server's write, per (reply size, raised): {sigpipes:?}"
    );
}
