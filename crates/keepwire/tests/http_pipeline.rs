//! Pipelined HTTP/1.x requests over real loopback sockets, each answered from its own head.
//!
//! The server parses a request head once, in the codec, and hands the handler that reading
//! with the frame (`Request::http_head`). These tests send requests that differ in what the
//! answer depends on (version, `Connection` options, method, `Host`, codings, body) back to
//! back in one write, to a handler that answers at once and to one that pends, so a summary
//! applied to the wrong frame shows as a wrong status, body or persistence.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use keepwire::http::{HttpReply, HttpService, KeepAlive};
use keepwire::server::{Answer, Request, Server, ServerConfig, service_fn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::Service;

const LIMIT: Duration = Duration::from_secs(10);

/// An echo [`HttpService`] behind a handler that pends: every other `poll_ready` is
/// `Pending` (the server holds the frame meanwhile) and every other call sleeps a few
/// milliseconds (the server writes earlier replies meanwhile). Counts the requests that
/// came with the codec's summary of their own frame.
#[derive(Clone)]
struct Pending {
    inner: HttpService,
    polls: u64,
    calls: u64,
    summaries: Arc<AtomicU64>,
}

impl Service<Request> for Pending {
    type Response = Answer;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.polls += 1;
        if self.polls % 2 == 1 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        self.calls += 1;
        if req.http_head().is_some_and(|h| h.describes(&req.frame)) {
            self.summaries.fetch_add(1, Ordering::Relaxed);
        }
        let fut = self.inner.call(req);
        let wait = (self.calls % 2 == 1).then_some(Duration::from_millis(3));
        Box::pin(async move {
            if let Some(d) = wait {
                tokio::time::sleep(d).await;
            }
            fut.await
        })
    }
}

fn echo() -> HttpService {
    HttpService::new(HttpReply::Echo, "text/plain", KeepAlive::default())
}

/// Starts an `http` server with `svc`; the address and the server's task.
async fn serve<S>(svc: S) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>)
where
    S: Service<Request, Response = Answer, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let server = Server::bind("127.0.0.1:0", ServerConfig::new("http".parse().unwrap()))
        .await
        .unwrap();
    let addr = server.local_addr();
    // The server runs until the test's runtime goes.
    let task = tokio::spawn(async move {
        server.serve(svc).await.unwrap();
    });
    (addr, task)
}

/// Writes `wire` in one write and reads until the server closes.
async fn exchange(addr: std::net::SocketAddr, wire: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(wire).await.unwrap();
    read_to_close(&mut c).await
}

async fn read_to_close(c: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, c.read_to_end(&mut out))
        .await
        .expect("the server closes within the bound")
        .unwrap();
    out
}

/// One response: its head (status line and fields, as text) and its body.
#[derive(Debug)]
struct Resp {
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn field(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// Splits `wire` into responses, one per entry of `to_head` (whether it answers a `HEAD`:
/// no body then, whatever `Content-Length` says); nothing may be left over.
fn responses(wire: &[u8], to_head: &[bool]) -> Vec<Resp> {
    let mut rest = wire;
    let mut out = Vec::new();
    for &head_only in to_head {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("a whole head in {:?}", String::from_utf8_lossy(rest)));
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 4..];
        let mut r = Resp {
            head,
            body: Vec::new(),
        };
        let len: usize = r.field("content-length").unwrap().parse().unwrap();
        if !head_only {
            r.body = rest[..len].to_vec();
            rest = &rest[len..];
        }
        out.push(r);
    }
    assert!(
        rest.is_empty(),
        "more than {} responses: {:?}",
        to_head.len(),
        String::from_utf8_lossy(rest)
    );
    out
}

/// Seven requests in one write, each differing from the one before in what its answer
/// depends on; the sixth closes, so the seventh is never answered.
const MIXED: &[u8] = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nfirst\
HEAD /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz\
GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
POST /d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfour\r\n0\r\nX-Trailer: t\r\n\r\n\
PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok\
POST /f HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 3\r\n\r\nend\
GET /g HTTP/1.1\r\nHost: a\r\n\r\n";

fn check_mixed(wire: &[u8]) {
    let r = responses(wire, &[false, true, false, false, false, false]);
    for x in &r {
        assert!(x.head.starts_with("HTTP/1.1 200 OK\r\n"), "{x:?}");
    }
    let bodies: Vec<&[u8]> = r.iter().map(|x| &x.body[..]).collect();
    assert_eq!(bodies, [&b"first"[..], b"", b"", b"four", b"ok", b"end"]);
    // The HEAD answer says how long the body would be, and carries none.
    assert_eq!(r[1].field("content-length"), Some("3"));
    let conn: Vec<Option<&str>> = r.iter().map(|x| x.field("connection")).collect();
    assert_eq!(
        conn,
        [None, None, Some("keep-alive"), None, None, Some("close")]
    );
}

#[tokio::test]
async fn pipelined_requests_are_each_answered_from_their_own_head() {
    let (addr, _task) = serve(echo()).await;
    check_mixed(&exchange(addr, MIXED).await);
}

#[tokio::test]
async fn a_pending_handler_answers_pipelined_requests_from_their_own_heads() {
    let summaries = Arc::new(AtomicU64::new(0));
    let svc = Pending {
        inner: echo(),
        polls: 0,
        calls: 0,
        summaries: Arc::clone(&summaries),
    };
    let (addr, _task) = serve(svc).await;
    check_mixed(&exchange(addr, MIXED).await);
    // Every request answered came with the codec's reading of its own head.
    assert_eq!(summaries.load(Ordering::Relaxed), 6);
}

#[tokio::test]
async fn a_one_zero_request_without_keep_alive_closes_after_a_one_one_one() {
    let (addr, _task) = serve(echo()).await;
    let wire = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
GET / HTTP/1.0\r\nContent-Length: 1\r\n\r\nz\
GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let r = responses(&exchange(addr, wire).await, &[false, false]);
    assert_eq!(r[0].field("connection"), None);
    assert_eq!(r[1].field("connection"), Some("close"));
    assert_eq!(r[1].body, b"z");
}

#[tokio::test]
async fn a_request_without_host_after_one_with_is_answered_400() {
    let (addr, _task) = serve(echo()).await;
    let wire = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
GET / HTTP/1.1\r\n\r\n\
GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let r = responses(&exchange(addr, wire).await, &[false, false]);
    assert!(r[0].head.starts_with("HTTP/1.1 200 "), "{:?}", r[0]);
    assert!(r[1].head.starts_with("HTTP/1.1 400 "), "{:?}", r[1]);
    // And the other way round: two Host fields first, then a good request never read.
    let wire = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let r = responses(&exchange(addr, wire).await, &[false]);
    assert!(r[0].head.starts_with("HTTP/1.1 400 "), "{:?}", r[0]);
}

#[tokio::test]
async fn another_coding_after_a_plain_request_is_answered_501() {
    let (addr, _task) = serve(echo()).await;
    let wire =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n\
POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\ny\r\n0\r\n\r\n\
GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let r = responses(&exchange(addr, wire).await, &[false, false]);
    assert_eq!(r[0].body, b"x");
    assert!(r[1].head.starts_with("HTTP/1.1 501 "), "{:?}", r[1]);
}

#[tokio::test]
async fn a_body_sent_after_100_continue_is_answered_then_the_next_request() {
    let summaries = Arc::new(AtomicU64::new(0));
    let svc = Pending {
        inner: echo(),
        polls: 0,
        calls: 0,
        summaries: Arc::clone(&summaries),
    };
    let (addr, _task) = serve(svc).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    let want = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut interim = [0u8; 25];
    tokio::time::timeout(LIMIT, c.read_exact(&mut interim))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&interim, want);
    c.write_all(b"helloHEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = responses(&read_to_close(&mut c).await, &[false, true]);
    assert_eq!(r[0].body, b"hello");
    assert_eq!(r[0].field("connection"), None);
    assert_eq!(r[1].field("content-length"), Some("0"));
    assert_eq!(r[1].field("connection"), Some("close"));
    assert_eq!(summaries.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn the_summary_goes_with_its_frame_only() {
    // A handler that looks at the summary, then replaces the frame: the summary goes.
    let svc = service_fn(|mut req: Request| async move {
        let had = req
            .http_head()
            .is_some_and(|h| h.describes(&req.frame) && h.head_len() <= req.frame.len());
        req.frame = Bytes::copy_from_slice(&req.frame);
        let gone = req.http_head().is_none();
        let body = format!("{had} {gone}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Ok::<_, std::convert::Infallible>(Answer::one(resp))
    });
    let (addr, _task) = serve(svc).await;
    let wire =
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(wire).await.unwrap();
    // The handler never closes: two answers of 38 + 9 bytes each are read, then checked.
    let mut got = [0u8; 94];
    tokio::time::timeout(LIMIT, c.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    let r = responses(&got, &[false, false]);
    assert_eq!(
        (&r[0].body[..], &r[1].body[..]),
        (&b"true true"[..], &b"true true"[..])
    );
}

#[tokio::test]
async fn other_framings_carry_no_summary() {
    let svc = service_fn(|req: Request| async move {
        let answer = if req.http_head().is_some() {
            "some"
        } else {
            "none"
        };
        Ok::<_, std::convert::Infallible>(Answer::one(answer))
    });
    let server = Server::bind("127.0.0.1:0", ServerConfig::new("line".parse().unwrap()))
        .await
        .unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    let task = tokio::spawn(server.serve(svc));
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\n").await.unwrap();
    let mut got = [0u8; 5];
    tokio::time::timeout(LIMIT, c.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"none\n");
    stop.cancel();
    task.await.unwrap().unwrap();
}
