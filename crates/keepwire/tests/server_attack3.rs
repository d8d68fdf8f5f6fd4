//! Third hostile review of the server, against the move of its connection code onto the
//! shared pipeline (`pipeline::{inbound, outbound}`, issue 10). Tests named after a break
//! failed on the code they were written against; the others cover what no earlier test
//! did. Real loopback sockets, generous bounds.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use keepwire::server::{Request, Server, ServerConfig, ServerStats, service_fn};
use tokio::io::AsyncWriteExt;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A reply this size stays under the connection's 64 KiB write batch, so it is written by
/// whatever write comes next rather than at once.
const FILL: usize = 48 * 1024;

/// Waits until the server has counted `n` closed connections; the time it saw the last.
async fn closed(stats: &ServerStats, n: u64) -> Instant {
    eventually("the connection is closed", || stats.snapshot().closed >= n).await;
    Instant::now()
}

/// docs/limits.md, write timeout: "a peer that does not read our replies for
/// `write_timeout` is disconnected", one deadline for the whole write. When a handler call
/// is not ready at once, the replies before it are written first (`Connection::call`); if
/// that write stalls, `call` ends the connection, and `deliver` hands the end to `fail`,
/// which writes the same buffer again (a failed write keeps it) and waits another
/// `write_timeout`: the connection lived 2 × `write_timeout` (measured: 800 ms for 400 ms).
/// Had the peer read in the second wait, it would also have got the prefix already sent a
/// second time: a corrupt stream. Here every request pair is `fill` (a 48 KiB reply) and
/// `yield` (a handler that is pending once and replies nothing), so every write is the one
/// before a call; the client never reads, and the write that finds the socket full is timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_write_before_a_slow_call_ends_in_one_write_timeout() {
    const WT: u64 = 400;
    let mut cfg = ServerConfig::new(spec("len:be:4"));
    cfg.write_timeout = ms(WT);
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let (addr, stats) = (server.local_addr(), server.stats());
    // When the last `yield` call began: the write of the `fill` reply before it follows.
    let last_call = Arc::new(Mutex::new(None::<Instant>));
    let seen = Arc::clone(&last_call);
    tokio::spawn(server.serve(service_fn(move |r: Request| {
        let seen = Arc::clone(&seen);
        async move {
            if &r.frame[..] == b"fill" {
                return Ok::<_, std::convert::Infallible>(Some(Bytes::from(vec![b'f'; FILL])));
            }
            *seen.lock().unwrap() = Some(Instant::now());
            tokio::task::yield_now().await;
            Ok(None)
        }
    })));
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let pair = b"\0\0\0\x04fill\0\0\0\x05yield";
    let sender = tokio::spawn(async move {
        // Until the server stops reading; the client never reads.
        while c.write_all(pair).await.is_ok() {}
    });
    let end = closed(&stats, 1).await;
    let stalled_at = last_call.lock().unwrap().expect("a call was made");
    let lived = end.duration_since(stalled_at);
    sender.abort();
    assert_eq!(stats.snapshot().errors_io, 1);
    assert!(
        lived >= ms(WT) && lived < ms(WT * 3 / 2),
        "the connection lived {lived:?} after its write stalled; write_timeout is {WT} ms"
    );
}
