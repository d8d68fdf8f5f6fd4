//! Hostile review of the server's heartbeat path end to end, after `Connection::on_timer`
//! started taking its write buffer from the per-thread pool (`server/pool.rs`) and
//! `Connection::go_idle` started giving an empty one back.
//!
//! What could go wrong: pings lost or duplicated, a ping inside a reply (a corrupt stream),
//! a ping appended to a buffer that still holds part of a reply, a buffer pooled while not
//! empty (its bytes lost, or sent on another connection), a blocked write that keeps the
//! connection or its memory, storms between two pinging peers, a split pong, the drain.
//!
//! Real loopback sockets only. Every stream a client reads is decoded by a strict codec (a
//! stray byte breaks every frame after it), data frames carry payloads distinct per
//! connection and request, and the heartbeats a client saw are counted against the server's
//! own counters (`pings_sent + pings_answered`): a lost or duplicated heartbeat shows. Short
//! configured durations (ping interval 100 ms, the smallest accepted), generous bounds;
//! sleeps only pace traffic, they never stand in for synchronisation.

mod common;
mod tls_common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{SOON, builder, eventually, same, spec};
use keepwire::frame::FrameCodec;
use keepwire::liveness::PingConfig;
use keepwire::server::{Reply, Request, Server, ServerConfig, ServerStats, service_fn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

/// Frames up to 32 MiB: large enough for replies that cannot fit the socket buffers.
const FRAMING: &str = "len:be:4:max=33554432";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cfg_ping(interval: u64, timeout: u64, misses: u32) -> ServerConfig {
    let mut c = ServerConfig::new(spec(FRAMING));
    c.liveness.ping = Some(PingConfig {
        interval: ms(interval),
        timeout: ms(timeout),
        misses,
    });
    c
}

struct Srv {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
}

/// A server with the canned echo handler (answers at once: the fast path, no recording of
/// requests, so floods cost no memory in the test).
async fn echo(cfg: ServerConfig) -> Srv {
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    let stats = server.stats();
    tokio::spawn(async move { server.serve(Reply::Echo.into_service()).await.unwrap() });
    Srv { addr, stats }
}

/// A payload distinct per `(conn, seq)`, `len` bytes (at least 12 keep the tag whole).
fn payload(conn: u32, seq: u32, len: usize) -> Bytes {
    let mut v = format!("c{conn}s{seq}:").into_bytes();
    let mut x = (conn.wrapping_mul(2_654_435_761) ^ seq.wrapping_mul(40_503) ^ 0x9e37_79b9) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v.truncate(len.max(1));
    Bytes::from(v)
}

/// The flood's payloads: 1000 bytes, numbered (cheap to make by the hundred thousand).
fn flood_payload(seq: u32) -> Vec<u8> {
    let mut v: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
    v[..4].copy_from_slice(&seq.to_be_bytes());
    v
}

/// `body` framed as `len:be:4`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 4);
    v.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// How a reader task's stream ended.
#[derive(Debug)]
struct ReadEnd {
    /// Bytes read in all.
    bytes: usize,
    /// Bytes of an unfinished frame left at the end.
    leftover: usize,
    /// Those bytes.
    rest: BytesMut,
    /// `true`: a clean EOF; `false`: an error (a reset).
    eof: bool,
}

/// Frames as a client reads them, decoded strictly, in order.
struct Reader {
    frames: mpsc::UnboundedReceiver<Bytes>,
    done: JoinHandle<ReadEnd>,
}

impl Reader {
    /// The next frame within `bound`; `None` once the stream ended.
    async fn next(&mut self, bound: Duration) -> Option<Bytes> {
        tokio::time::timeout(bound, self.frames.recv())
            .await
            .expect("no frame and no close within the bound")
    }

    /// Reads every remaining frame until the stream ends; all must be heartbeats (empty).
    /// Returns how many, and how the stream ended.
    async fn drain_heartbeats(mut self, what: &str) -> (u64, ReadEnd) {
        let mut n = 0;
        while let Some(f) = self.next(SOON).await {
            assert!(f.is_empty(), "{what}: data frame after the last reply");
            n += 1;
        }
        (n, self.done.await.expect("reader task failed"))
    }
}

/// Reads `r` in reads of at most `chunk` bytes, pausing `pause` after each (a slow reader
/// when non-zero), decoding frames as they complete. A stream that does not decode panics
/// the task (corruption). Bounded: the task gives up after 30 s.
fn spawn_reader(mut r: OwnedReadHalf, chunk: usize, pause: Duration) -> Reader {
    let (tx, frames) = mpsc::unbounded_channel();
    let done = tokio::spawn(async move {
        let mut codec = FrameCodec::new(spec(FRAMING));
        let mut buf = BytesMut::new();
        let mut bytes = 0usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            buf.reserve(chunk);
            let mut lim = (&mut buf).limit(chunk);
            let res = tokio::time::timeout_at(deadline, r.read_buf(&mut lim))
                .await
                .expect("reader: stream neither ended nor went quiet in 30 s");
            let eof = match res {
                Ok(0) => Some(true),
                Ok(n) => {
                    bytes += n;
                    None
                }
                Err(_) => Some(false),
            };
            while let Some(f) = codec
                .decode(&mut buf)
                .unwrap_or_else(|e| panic!("corrupt stream after {bytes} bytes: {e}"))
            {
                let _ = tx.send(f);
            }
            if let Some(eof) = eof {
                return ReadEnd {
                    bytes,
                    leftover: buf.len(),
                    rest: buf,
                    eof,
                };
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    });
    Reader { frames, done }
}

async fn connect(addr: SocketAddr) -> (Reader, OwnedWriteHalf) {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (r, w) = s.into_split();
    (spawn_reader(r, 64 * 1024, Duration::ZERO), w)
}

/// A socket whose receive buffer is fixed small (no autotuning): when it stops reading,
/// the server's writes block after a few KiB beyond its own send buffer. (The send buffer
/// is left alone: a small one with the peer's delayed ACKs crawls at a few hundred KB/s.)
async fn connect_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    let s = sock.connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads frames until a data (non-empty) one, answering each heartbeat (a server ping)
/// with an empty frame when `answer`; returns it and how many heartbeats came first.
async fn reply(rd: &mut Reader, w: &mut OwnedWriteHalf, answer: bool, what: &str) -> (Bytes, u64) {
    for beats in 0..10_000 {
        let f = rd
            .next(SOON)
            .await
            .unwrap_or_else(|| panic!("{what}: closed while a reply was due"));
        if !f.is_empty() {
            return (f, beats);
        }
        if answer {
            w.write_all(&frame(b"")).await.unwrap();
        }
    }
    panic!("{what}: 10 000 heartbeats and no reply");
}

/// Waits for the server to count `n` connections closed.
async fn all_closed(stats: &ServerStats, n: u64) {
    eventually(&format!("{n} connections closed"), || {
        stats.snapshot().closed >= n
    })
    .await;
}

/// Silent clients: each gets exactly `misses` pings (one per miss, none twice, none lost),
/// then a clean close; not one other byte. Many at once on one interval: the timer steps
/// take pool buffers together and give them back (the steps that only count a miss write
/// nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_each_get_exactly_misses_pings_and_not_one_other_byte() {
    const N: u64 = 80;
    const MISSES: u32 = 3;
    let srv = echo(cfg_ping(100, 50, MISSES)).await;
    let mut tasks = Vec::new();
    for _ in 0..N {
        let addr = srv.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            tokio::time::timeout(SOON, s.read_to_end(&mut got))
                .await
                .expect("silent client not closed within the bound")
                .expect("reset instead of a clean close");
            got
        }));
    }
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(
            got,
            vec![0u8; 4 * MISSES as usize],
            "a silent client must see exactly {MISSES} empty frames"
        );
    }
    all_closed(&srv.stats, N).await;
    let st = srv.stats.snapshot();
    assert_eq!(st.heartbeat_timeouts, N);
    assert_eq!(st.pings_sent, N * u64::from(MISSES), "{st:?}");
    assert_eq!(st.frames_out, st.pings_sent, "{st:?}");
}

/// Many connections, each sending payloads of its own (sizes around the read size, the
/// pool's 32 KiB cap and the 64 KiB write batch), one to three pipelined, with pauses longer
/// than the ping interval in between, and answering every ping: every reply is exactly its
/// own payload, in order, and every heartbeat a client saw is one the server counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_between_replies_on_many_connections_never_mix_bytes() {
    const N: u32 = 120;
    const ROUNDS: u32 = 6;
    const SIZES: [usize; 8] = [12, 999, 1000, 1001, 4096, 32_769, 70_000, 200];
    let srv = echo(cfg_ping(100, 400, 3)).await;
    let mut tasks = Vec::new();
    for conn in 0..N {
        let addr = srv.addr;
        tasks.push(tokio::spawn(async move {
            let (mut rd, mut w) = connect(addr).await;
            let mut beats = 0;
            for round in 0..ROUNDS {
                // Pacing: 0 to 200 ms, so some requests come after a ping is due.
                tokio::time::sleep(ms(u64::from((conn * 37 + round * 53) % 5) * 50)).await;
                let k = 1 + (conn + round) % 3;
                let mut out = Vec::new();
                let mut want = Vec::new();
                for j in 0..k {
                    let size = SIZES[((conn + round * 7 + j * 3) % 8) as usize];
                    let p = payload(conn, round * 3 + j, size);
                    out.extend_from_slice(&frame(&p));
                    want.push(p);
                }
                w.write_all(&out).await.unwrap();
                for p in want {
                    let what = format!("conn {conn} round {round}");
                    let (got, n) = reply(&mut rd, &mut w, true, &what).await;
                    beats += n;
                    same(&what, &got, &p);
                }
            }
            w.shutdown().await.unwrap();
            let (n, end) = rd.drain_heartbeats(&format!("conn {conn}")).await;
            assert!(end.eof && end.leftover == 0, "conn {conn}: {end:?}");
            beats + n
        }));
    }
    let mut beats = 0;
    for t in tasks {
        beats += t.await.unwrap();
    }
    all_closed(&srv.stats, u64::from(N)).await;
    let st = srv.stats.snapshot();
    assert!(
        st.pings_sent > 0,
        "no ping fell between the replies: {st:?}"
    );
    assert_eq!(
        beats,
        st.pings_sent + st.pings_answered,
        "heartbeats seen vs sent: {st:?}"
    );
    assert_eq!(st.heartbeat_timeouts, 0, "{st:?}");
    assert_eq!(
        st.errors_io + st.errors_malformed + st.errors_handler,
        0,
        "{st:?}"
    );
}

/// A client that stops reading, with pings already queued to it, then sends a 16 MiB
/// request: the echo blocks; the write timeout cuts the connection (not the heartbeat
/// timeout, not never). What reached the client is every ping the server counted, whole,
/// then a clean prefix of the echo: no ping inside it, nothing repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_by_the_write_timeout_with_a_clean_prefix() {
    let mut c = cfg_ping(100, 100, 50);
    c.write_timeout = ms(500);
    let srv = echo(c).await;
    let s = connect_small_rcvbuf(srv.addr).await;
    let (r, mut w) = s.into_split();
    eventually("three pings sent to the client that does not read", || {
        srv.stats.snapshot().pings_sent >= 3
    })
    .await;
    let big = payload(1, 1, 16 << 20);
    let t = Instant::now();
    tokio::time::timeout(SOON, w.write_all(&frame(&big)))
        .await
        .expect("the server stopped reading the request")
        .unwrap();
    eventually("the write timeout cut the connection", || {
        let st = srv.stats.snapshot();
        st.closed == 1
    })
    .await;
    let took = t.elapsed();
    let st = srv.stats.snapshot();
    assert_eq!(st.errors_io, 1, "not cut by the write timeout: {st:?}");
    assert_eq!(st.heartbeat_timeouts, 0, "{st:?}");
    assert!(took >= ms(450), "cut after {took:?}, write timeout 500 ms");
    assert!(
        took <= ms(500) + Duration::from_secs(4),
        "cut after {took:?}"
    );
    // Now read what reached us.
    let mut rd = spawn_reader(r, 64 * 1024, Duration::ZERO);
    let mut beats = 0;
    while let Some(f) = rd.next(SOON).await {
        assert!(
            f.is_empty(),
            "a whole echo of 16 MiB got through a blocked socket?"
        );
        beats += 1;
    }
    let end = rd.done.await.unwrap();
    let (bytes, eof, rest) = (end.bytes, end.eof, end.rest);
    assert_eq!(beats, st.pings_sent, "pings seen vs sent ({bytes} bytes)");
    assert!(eof, "a reset: the server closed with unread bytes?");
    // The rest: the echo's header and a prefix of its body, nothing after it.
    assert!(rest.len() > 4, "no part of the echo arrived");
    assert_eq!(bytes, 4 * beats as usize + rest.len());
    assert_eq!(&rest[..4], &u32::try_from(big.len()).unwrap().to_be_bytes());
    assert!(rest.len() < big.len() + 4, "the whole echo got through");
    same("echo prefix", &rest[4..], &big[..rest.len() - 4]);
}

/// The same, byte-checked: a client that floods small requests and never reads. The server
/// stops reading once its replies block (memory stays bounded: the client cannot push
/// more than the socket buffers and one batch), and the write timeout cuts it. Whatever the
/// client then reads decodes: heartbeats, then its own payloads in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_floods_and_never_reads_is_cut_and_cannot_push_unbounded_data() {
    const FLOOD: usize = 128 << 20;
    let mut c = cfg_ping(100, 100, 50);
    c.write_timeout = ms(400);
    let srv = echo(c).await;
    let s = connect_small_rcvbuf(srv.addr).await;
    let (r, mut w) = s.into_split();
    eventually("two pings sent to the client that does not read", || {
        srv.stats.snapshot().pings_sent >= 2
    })
    .await;
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        let mut seq = 0u32;
        let t = Instant::now();
        while sent < FLOOD && t.elapsed() < SOON {
            let mut chunk = Vec::with_capacity(64 * 1024);
            while chunk.len() < 60 * 1024 {
                chunk.extend_from_slice(&frame(&flood_payload(seq)));
                seq += 1;
            }
            match tokio::time::timeout(SOON, w.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                // Cut: a reset, a broken pipe; or the bound.
                Ok(Err(_)) | Err(_) => return (sent, seq, true),
            }
        }
        (sent, seq, false)
    });
    all_closed(&srv.stats, 1).await;
    let st = srv.stats.snapshot();
    assert_eq!(st.errors_io, 1, "not cut by the write timeout: {st:?}");
    let (sent, _, failed) = tokio::time::timeout(SOON, writer).await.unwrap().unwrap();
    assert!(
        failed,
        "the client pushed all {FLOOD} bytes into a server that cannot write"
    );
    // About 8 MiB here (the kernel's buffers both ways); never the whole flood.
    assert!(
        sent < 40 << 20,
        "the client pushed {sent} bytes into a blocked server"
    );
    // What reached us (if the reset left anything to read) is heartbeats, then our own
    // payloads in order.
    let mut rd = spawn_reader(r, 64 * 1024, Duration::ZERO);
    let mut seq = 0;
    while let Some(f) = rd.next(SOON).await {
        if f.is_empty() {
            // A heartbeat: whole, between replies (the codec would fail otherwise).
            continue;
        }
        same("flood reply", &f, &flood_payload(seq));
        seq += 1;
    }
    let _ = rd.done.await.unwrap();
}

/// Both peers ping (the library's long client with pings, against a pinging server), with
/// requests now and then and an idle spell: no heartbeat timeout on either side, no storm
/// (heartbeats stay about one per interval each way), every reply right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_peers_pinging_each_other_settle_without_a_storm() {
    let srv = echo(cfg_ping(100, 300, 3)).await;
    let client = builder(FRAMING, &[srv.addr])
        .ping(Some(PingConfig {
            interval: ms(100),
            timeout: ms(300),
            misses: 3,
        }))
        .connect_long()
        .await
        .unwrap();
    let t = Instant::now();
    for i in 0..10u32 {
        let p = payload(3, i, 40 + (i as usize * 997) % 5000);
        let got = client.request(p.clone()).await.unwrap();
        same("reply", &got, &p);
        // Pacing: gaps longer than both intervals.
        tokio::time::sleep(ms(150)).await;
    }
    // Idle: only heartbeats.
    tokio::time::sleep(ms(500)).await;
    let p = payload(3, 99, 3000);
    same(
        "reply after idle",
        &client.request(p.clone()).await.unwrap(),
        &p,
    );
    let secs = t.elapsed().as_secs_f64();
    let cs = client.stats();
    let st = srv.stats.snapshot();
    assert_eq!((cs.connects, cs.disconnects), (1, 0), "{cs:?}");
    assert_eq!(st.heartbeat_timeouts, 0, "{st:?}");
    assert_eq!(st.closed, 0, "{st:?}");
    let server_beats = st.pings_sent + st.pings_answered;
    let client_beats = cs.pings_sent + cs.pings_answered;
    assert!(
        server_beats + client_beats > 0,
        "no heartbeat at all: {st:?} {cs:?}"
    );
    // One ping and one pong per interval each way at most, plus slack.
    let most = (secs * 2.0 * 10.0) as u64 + 10;
    assert!(
        server_beats <= most,
        "server storm: {server_beats} in {secs:.1} s: {st:?}"
    );
    assert!(
        client_beats <= most,
        "client storm: {client_beats} in {secs:.1} s: {cs:?}"
    );
}

/// Pongs split across segments: four single bytes 5 ms apart, or two halves 120 ms apart
/// (longer than the ping timeout: a miss is counted and the next ping is written while half
/// a pong sits in the server's read buffer). The connection stays; every heartbeat the
/// client saw is one the server counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_split_across_segments_are_taken_and_pings_written_meanwhile_stay_whole() {
    let srv = echo(cfg_ping(100, 80, 3)).await;
    let (mut rd, mut w) = connect(srv.addr).await;
    let mut beats = 0u64;
    let mut crossed = 0;
    let end = Instant::now() + ms(1_400);
    let mut round = 0u32;
    while Instant::now() < end && round < 40 {
        let f = rd
            .next(ms(2_000))
            .await
            .expect("closed although pongs come");
        assert!(
            f.is_empty(),
            "a data frame from an echo server we sent no data"
        );
        beats += 1;
        if round % 2 == 0 {
            for b in [0u8; 4] {
                w.write_all(&[b]).await.unwrap();
                tokio::time::sleep(ms(5)).await;
            }
        } else {
            w.write_all(&[0, 0]).await.unwrap();
            tokio::time::sleep(ms(120)).await;
            if !rd.frames.is_empty() {
                crossed += 1;
            }
            w.write_all(&[0, 0]).await.unwrap();
        }
        round += 1;
    }
    assert!(beats >= 5, "{beats} pings in 1.4 s at a 100 ms interval");
    assert!(
        crossed >= 1,
        "no ping was written while half a pong was buffered"
    );
    let st = srv.stats.snapshot();
    assert_eq!(st.heartbeat_timeouts, 0, "{st:?}");
    assert_eq!(st.closed, 0, "{st:?}");
    w.shutdown().await.unwrap();
    let (n, end) = rd.drain_heartbeats("split pongs").await;
    assert!(end.eof && end.leftover == 0, "{end:?}");
    all_closed(&srv.stats, 1).await;
    let st = srv.stats.snapshot();
    assert_eq!(beats + n, st.pings_sent + st.pings_answered, "{st:?}");
}

/// Huge and empty frames around pings, read slowly (the large replies take several ping
/// intervals to go out, the server's writes blocking): a burst of empty, 3 MiB, empty, small, empty, 1.5 MiB, small in
/// one write; an idle spell with pings; a 4 MiB frame sent in three pieces 120 ms apart
/// (pings due while it is partial); then a small one. Data comes back exactly, in order;
/// every heartbeat seen is one the server counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_empty_frames_around_pings_read_slowly_keep_their_order() {
    let srv = echo(cfg_ping(100, 150, 10)).await;
    // A 16 KiB receive buffer read 16 KiB a millisecond at most: the 4.5 MiB of the burst's
    // replies take at least 288 ms to go out, the server's writes block, and pings come due
    // meanwhile (they must wait for the end of the replies).
    let s = connect_small_rcvbuf(srv.addr).await;
    let (r, mut w) = s.into_split();
    let mut rd = spawn_reader(r, 16 * 1024, ms(1));
    // The first ping, unanswered.
    assert_eq!(rd.next(SOON).await.as_deref(), Some(&b""[..]));
    let mut beats = 1;
    let (big1, a, big2, b) = (
        payload(5, 1, 3 << 20),
        payload(5, 2, 20),
        payload(5, 3, 3 << 19),
        payload(5, 4, 33),
    );
    let mut out = Vec::new();
    for f in [&b""[..], &big1, b"", &a, b"", &big2, &b] {
        out.extend_from_slice(&frame(f));
    }
    w.write_all(&out).await.unwrap();
    for (i, want) in [&big1, &a, &big2, &b].into_iter().enumerate() {
        let (got, n) = reply(&mut rd, &mut w, false, "burst").await;
        beats += n;
        same(&format!("burst reply {i}"), &got, want);
    }
    // Idle: pings.
    tokio::time::sleep(ms(250)).await;
    let big3 = frame(&payload(5, 5, 4 << 20));
    let third = big3.len() / 3;
    for piece in [&big3[..third], &big3[third..2 * third], &big3[2 * third..]] {
        w.write_all(piece).await.unwrap();
        tokio::time::sleep(ms(120)).await;
    }
    let c = payload(5, 6, 77);
    w.write_all(&frame(&c)).await.unwrap();
    let (got, n) = reply(&mut rd, &mut w, false, "big3").await;
    beats += n;
    same("4 MiB in pieces", &got, &big3[4..]);
    let (got, n) = reply(&mut rd, &mut w, false, "c").await;
    beats += n;
    same("small after", &got, &c);
    w.shutdown().await.unwrap();
    let (n, end) = rd.drain_heartbeats("huge").await;
    assert!(end.eof && end.leftover == 0, "{end:?}");
    all_closed(&srv.stats, 1).await;
    let st = srv.stats.snapshot();
    assert!(st.pings_sent >= 3, "{st:?}");
    assert_eq!(beats + n, st.pings_sent + st.pings_answered, "{st:?}");
    assert_eq!(st.heartbeat_timeouts + st.errors_io, 0, "{st:?}");
}

/// The idle timeout firing with nothing to write (pings on but far off; timer steps that
/// write nothing, as a read-idle deadline moved later by traffic makes): idle connections
/// get not one byte before their close, never early; busy neighbours on the same threads
/// get exactly their own replies, then are closed the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeouts_with_nothing_to_write_send_not_a_byte_while_neighbours_stream() {
    const IDLE: u64 = 60;
    const BUSY: u32 = 30;
    let mut c = cfg_ping(10_000, 1_000, 3);
    c.liveness.read_idle = Some(ms(300));
    let srv = echo(c).await;
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        let addr = srv.addr;
        idle.push(tokio::spawn(async move {
            let t = Instant::now();
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            tokio::time::timeout(SOON, s.read_to_end(&mut got))
                .await
                .expect("idle client not closed")
                .expect("reset instead of a clean close");
            (got, t.elapsed())
        }));
    }
    let mut busy = Vec::new();
    for conn in 0..BUSY {
        let addr = srv.addr;
        busy.push(tokio::spawn(async move {
            let (mut rd, mut w) = connect(addr).await;
            let mut last = Instant::now();
            for seq in 0..14u32 {
                let p = payload(conn, seq, [12, 1500, 40_000, 300][(seq % 4) as usize]);
                w.write_all(&frame(&p)).await.unwrap();
                let what = format!("busy {conn} #{seq}");
                let (got, n) = reply(&mut rd, &mut w, false, &what).await;
                assert_eq!(n, 0, "{what}: a heartbeat with pings 10 s off");
                same(&what, &got, &p);
                last = Instant::now();
                // Pacing: a frame every 50 ms keeps it under the 300 ms idle timeout.
                tokio::time::sleep(ms(50)).await;
            }
            let (n, end) = rd.drain_heartbeats(&format!("busy {conn}")).await;
            assert_eq!(n, 0);
            assert!(end.eof && end.leftover == 0, "busy {conn}: {end:?}");
            last.elapsed()
        }));
    }
    for t in idle {
        let (got, took) = t.await.unwrap();
        assert!(
            got.is_empty(),
            "an idle client got {} bytes: {:?}",
            got.len(),
            &got[..got.len().min(32)]
        );
        assert!(took >= ms(290), "idle client closed after {took:?}");
    }
    for t in busy {
        let took = t.await.unwrap();
        assert!(
            took >= ms(250),
            "busy client closed {took:?} after its last frame"
        );
    }
    all_closed(&srv.stats, IDLE + u64::from(BUSY)).await;
    let st = srv.stats.snapshot();
    assert_eq!(st.idle_closed, IDLE + u64::from(BUSY), "{st:?}");
    assert_eq!(st.pings_sent, 0, "{st:?}");
}

/// Shutdown while pings are due: idle clients being pinged, slow requests in their handler,
/// partial frames completed after the drain started (pings written meanwhile). Every slow
/// request and every completed frame gets its reply, every connection then closes cleanly,
/// nothing is forced, and every heartbeat a client saw is one the server counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_pings_are_due_answers_what_arrived_and_closes_cleanly() {
    const IDLE: u32 = 20;
    const SLOW: u32 = 4;
    const PARTIAL: u32 = 4;
    let mut c = cfg_ping(100, 200, 20);
    c.shutdown_grace = Duration::from_secs(4);
    let server = Server::bind("127.0.0.1:0", c).await.unwrap();
    let addr = server.local_addr();
    let stats = server.stats();
    let stop = server.shutdown_token();
    let task = tokio::spawn(server.serve(service_fn(|r: Request| async move {
        if r.frame.starts_with(b"slow") {
            tokio::time::sleep(ms(400)).await;
        }
        Ok::<_, Infallible>(Some(r.frame))
    })));
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(connect(addr).await);
    }
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        slow.push(connect(addr).await);
    }
    let mut partial = Vec::new();
    for _ in 0..PARTIAL {
        partial.push(connect(addr).await);
    }
    eventually("pings flowing", || {
        stats.snapshot().pings_sent >= u64::from(IDLE + SLOW + PARTIAL)
    })
    .await;
    for (i, (_, w)) in slow.iter_mut().enumerate() {
        let mut p = b"slow".to_vec();
        p.extend_from_slice(&payload(10, i as u32, 500));
        w.write_all(&frame(&p)).await.unwrap();
    }
    let partial_want: Vec<Vec<u8>> = (0..PARTIAL).map(|i| frame(&payload(11, i, 3000))).collect();
    for ((_, w), f) in partial.iter_mut().zip(&partial_want) {
        w.write_all(&f[..100]).await.unwrap();
    }
    // Pacing: the slow requests reach their handler.
    tokio::time::sleep(ms(50)).await;
    let t = Instant::now();
    stop.cancel();
    let mut beats = 0;
    let mut tasks = Vec::new();
    for (i, (rd, w)) in idle.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            // Kept open: our FIN would end the connection before the drain does.
            let _w = w;
            let (n, end) = rd.drain_heartbeats(&format!("idle {i}")).await;
            assert!(end.eof && end.leftover == 0, "idle {i}: {end:?}");
            n
        }));
    }
    for (i, (mut rd, mut w)) in slow.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut p = b"slow".to_vec();
            p.extend_from_slice(&payload(10, i as u32, 500));
            let (got, n) = reply(&mut rd, &mut w, false, &format!("slow {i}")).await;
            same("slow reply across the drain", &got, &p);
            let (m, end) = rd.drain_heartbeats(&format!("slow {i}")).await;
            assert!(end.eof && end.leftover == 0, "slow {i}: {end:?}");
            n + m
        }));
    }
    for (i, ((mut rd, mut w), f)) in partial.into_iter().zip(partial_want).enumerate() {
        tasks.push(tokio::spawn(async move {
            // Pacing: the rest comes after the drain started and a ping came due.
            tokio::time::sleep(ms(150)).await;
            w.write_all(&f[100..]).await.unwrap();
            let (got, n) = reply(&mut rd, &mut w, false, &format!("partial {i}")).await;
            same("frame completed during the drain", &got, &f[4..]);
            let (m, end) = rd.drain_heartbeats(&format!("partial {i}")).await;
            assert!(end.eof && end.leftover == 0, "partial {i}: {end:?}");
            n + m
        }));
    }
    for t in tasks {
        beats += t.await.unwrap();
    }
    let report = tokio::time::timeout(SOON, task)
        .await
        .expect("the drain did not end")
        .unwrap()
        .unwrap();
    assert_eq!(report.force_closed, 0, "{report:?}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "drain took {:?}",
        t.elapsed()
    );
    let st = stats.snapshot();
    assert_eq!(st.closed, u64::from(IDLE + SLOW + PARTIAL), "{st:?}");
    assert_eq!(beats, st.pings_sent + st.pings_answered, "{st:?}");
    assert_eq!(st.heartbeat_timeouts + st.errors_io, 0, "{st:?}");
}

/// Bursts of empty frames (client pings) around data, 300 in a row, more than one read:
/// those read together are all answered, later ones inside the 50 ms gap are absorbed; the
/// data comes back in order and every heartbeat seen is one the server counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_empty_frames_around_data_are_counted_exactly() {
    let srv = echo(cfg_ping(100, 200, 10)).await;
    let (mut rd, mut w) = connect(srv.addr).await;
    let (x, y) = (payload(9, 1, 1500), payload(9, 2, 40));
    let mut out = Vec::new();
    for f in [&b""[..]; 300] {
        out.extend_from_slice(&frame(f));
    }
    out.extend_from_slice(&frame(&x));
    for f in [&b""[..]; 300] {
        out.extend_from_slice(&frame(f));
    }
    out.extend_from_slice(&frame(&y));
    w.write_all(&out).await.unwrap();
    let (got, n1) = reply(&mut rd, &mut w, false, "x").await;
    same("x", &got, &x);
    let (got, n2) = reply(&mut rd, &mut w, false, "y").await;
    same("y", &got, &y);
    // An idle spell: the server's own pings.
    tokio::time::sleep(ms(250)).await;
    w.shutdown().await.unwrap();
    let (n3, end) = rd.drain_heartbeats("bursts").await;
    assert!(end.eof && end.leftover == 0, "{end:?}");
    all_closed(&srv.stats, 1).await;
    let st = srv.stats.snapshot();
    assert!(n1 >= 1 && st.pings_answered >= 1, "{st:?}");
    assert!(st.pings_answered <= 600, "{st:?}");
    assert_eq!(n1 + n2 + n3, st.pings_sent + st.pings_answered, "{st:?}");
    assert_eq!(st.frames_in, 602, "{st:?}");
}

/// Over TLS (where every write goes the slow way, through the encrypting flush): pings
/// between replies of distinct payloads on a few connections; every reply exact, every
/// frame whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_between_replies_over_tls_stay_whole() {
    const N: u32 = 12;
    let pki = tls_common::Pki::new();
    let mut c = cfg_ping(100, 400, 3);
    c.tls = Some(pki.server_tls(false));
    let srv = echo(c).await;
    let tls = pki.client_tls(false);
    let mut tasks = Vec::new();
    for conn in 0..N {
        let (addr, tls) = (srv.addr, tls.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let s = tls.connect(tcp, "localhost:1", SOON).await.unwrap();
            let mut f = tls_common::Framed::new(s, FRAMING);
            let mut beats = 0u64;
            for seq in 0..5u32 {
                tokio::time::sleep(ms(u64::from((conn + seq) % 3) * 80)).await;
                let p = payload(conn, seq, [20, 20_000, 70_000][((conn + seq) % 3) as usize]);
                f.send(&p).await.unwrap();
                loop {
                    let got = f
                        .recv()
                        .await
                        .unwrap()
                        .expect("closed while a reply was due");
                    if got.is_empty() {
                        beats += 1;
                        f.send(b"").await.unwrap();
                        continue;
                    }
                    same(&format!("tls conn {conn} #{seq}"), &got, &p);
                    break;
                }
            }
            beats
        }));
    }
    let mut beats = 0;
    for t in tasks {
        beats += t.await.unwrap();
    }
    let st = srv.stats.snapshot();
    assert!(
        beats > 0 && st.pings_sent > 0,
        "no ping between the replies: {st:?}"
    );
    assert_eq!(st.heartbeat_timeouts + st.errors_io, 0, "{st:?}");
}
