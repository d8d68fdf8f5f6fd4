//! Hostile checks of the one-parse path: the codec's summary of a request head
//! (`HttpHead`) against a full parse of the same frame, whatever the segmentation, and a
//! server answering from summaries against `HttpService::answer` parsing each frame.
//!
//! Requests are random but reproducible (a fixed-seed xorshift): odd case, spacing, commas
//! and obs-text in `Connection`, repeated and empty `Host`, `Transfer-Encoding` lists,
//! chunk extensions and trailers, `Expect: 100-continue`, `HEAD`, HTTP/1.0 keep-alive,
//! empty lines before a request, and (for the codec) random damage.

mod tls_common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use keepwire::frame::{FrameCodec, FramingSpec, http::HttpSpec};
use keepwire::http::message::{Request as Parsed, dechunk};
use keepwire::http::{HttpReply, HttpService, KeepAlive};
use keepwire::server::{Answer, Request, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use tower::Service;

const LIMIT: Duration = Duration::from_secs(8);

/// xorshift64*: reproducible, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, in_n: usize) -> bool {
        self.below(in_n) == 0
    }
}

fn casing(r: &mut Rng, name: &str) -> String {
    name.chars()
        .map(|c| {
            if r.chance(2) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn connection_value(r: &mut Rng) -> Vec<u8> {
    let tokens = [
        "close",
        "keep-alive",
        "Close",
        "KEEP-ALIVE",
        "Keep-Alive",
        "upgrade",
        "",
        "te",
        "keep-alive2",
        "clos",
    ];
    let mut v = Vec::new();
    for i in 0..1 + r.below(3) {
        if i > 0 {
            v.extend_from_slice(r.pick(&[",", ", ", " ,", ",,", ",\t"]).as_bytes());
        }
        if r.chance(8) {
            v.extend_from_slice(b"\x80\xff");
        }
        v.extend_from_slice(r.pick(&["", " ", "\t"]).as_bytes());
        v.extend_from_slice(r.pick(&tokens).as_bytes());
        v.extend_from_slice(r.pick(&["", " ", "\t"]).as_bytes());
    }
    v
}

/// Whether a random request must be well formed (the server test) or may be damaged.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Valid,
    Any,
}

fn chunked_body(r: &mut Rng, body: &mut Vec<u8>) -> Vec<u8> {
    let mut wire = Vec::new();
    for _ in 0..r.below(4) {
        let n = 1 + r.below(6);
        let hex = format!("{:0w$x}", n, w = 1 + r.below(3));
        let hex = if r.chance(2) { hex.to_uppercase() } else { hex };
        wire.extend_from_slice(hex.as_bytes());
        wire.extend_from_slice(r.pick(&["", ";a=b", "; x", ";q=\"1 2\"", " ;e"]).as_bytes());
        wire.extend_from_slice(b"\r\n");
        for _ in 0..n {
            let b = b"xyzHTP\r\n0"[r.below(9)];
            body.push(b);
            wire.push(b);
        }
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(r.pick(&["0", "000", "0;last"]).as_bytes());
    wire.extend_from_slice(b"\r\n");
    for _ in 0..r.below(3) {
        wire.extend_from_slice(
            r.pick(&["T: 1\r\n", "Connection: close\r\n", "Host: x\r\n"])
                .as_bytes(),
        );
    }
    wire.extend_from_slice(b"\r\n");
    wire
}

/// One random request.
fn request(r: &mut Rng, kind: Kind) -> Vec<u8> {
    let mut w = Vec::new();
    if r.chance(6) {
        w.extend_from_slice(r.pick(&["\r\n", "\n", "\r\n\r\n"]).as_bytes());
    }
    let method = r.pick(&["GET", "HEAD", "POST", "PUT", "head", "OPTIONS"]);
    let v1 = !r.chance(3);
    w.extend_from_slice(format!("{method} /p?q=1 HTTP/1.{}\r\n", u8::from(v1)).as_bytes());
    let mut fields: Vec<Vec<u8>> = Vec::new();
    let hosts = match r.below(8) {
        0 => 0,
        1 => 2,
        _ => 1,
    };
    for _ in 0..hosts {
        let v = r.pick(&[" a", "", " ", " a:80", "\tb"]);
        fields.push(format!("{}:{v}", casing(r, "host")).into_bytes());
    }
    for _ in 0..r.below(3) {
        let mut f = format!("{}:", casing(r, "connection")).into_bytes();
        f.extend_from_slice(r.pick(&[" ", "", "\t"]).as_bytes());
        f.extend_from_slice(&connection_value(r));
        fields.push(f);
    }
    if r.chance(5) {
        fields.push(format!("{}: 100-continue", casing(r, "expect")).into_bytes());
    }
    if r.chance(4) {
        fields.push(b"X-Obs: \x80\xfe text".to_vec());
    }
    let mut body = Vec::new();
    let te = v1 && r.chance(3);
    let body_wire = if te {
        let te_values: &[&str] = if kind == Kind::Valid {
            &[
                "chunked",
                "Chunked",
                "gzip, chunked",
                ", chunked",
                "chunked,",
                "gzip,chunked",
            ]
        } else {
            &[
                "chunked",
                "gzip",
                "chunked, chunked",
                "identity",
                "",
                "chunked, gzip",
            ]
        };
        let name = casing(r, "transfer-encoding");
        if r.chance(4) {
            // Two lines, kept in this order by the shuffle below.
            fields.push(format!("{name}: gzip\r\n{name}: chunked").into_bytes());
        } else {
            fields.push(format!("{name}: {}", r.pick(te_values)).into_bytes());
        }
        chunked_body(r, &mut body)
    } else if r.chance(2) {
        let n = r.below(6);
        body = (0..n).map(|i| b"abc\r\n"[i % 5]).collect();
        let cl = if r.chance(4) {
            format!("{n}, {n}")
        } else {
            n.to_string()
        };
        fields.push(format!("{}: {cl}", casing(r, "content-length")).into_bytes());
        body.clone()
    } else {
        Vec::new()
    };
    // Shuffle the field lines.
    for i in (1..fields.len()).rev() {
        let j = r.below(i + 1);
        fields.swap(i, j);
    }
    // Head lines end in CRLF, or now and then a bare LF (RFC 9112 §2.2 lets a recipient
    // take it).
    let bare = r.chance(5);
    let eol = |r: &mut Rng| {
        if bare && r.chance(2) {
            &b"\n"[..]
        } else {
            b"\r\n"
        }
    };
    for f in fields {
        w.extend_from_slice(&f);
        w.extend_from_slice(eol(r));
    }
    w.extend_from_slice(eol(r));
    w.extend_from_slice(&body_wire);
    if kind == Kind::Any && r.chance(10) {
        let at = r.below(w.len());
        w[at] = b"\x00 :\r\n;zG"[r.below(8)];
    }
    w
}

/// What a summary says, minus where the frame is.
type Said = (u8, bool, bool, usize, bool, bool, bool, usize);

/// The codec's reading of each frame of `wire`, fed in the pieces `cuts` gives (ends of
/// pieces), then the end of the stream; `Err(())` for the error that stops it.
fn decode_all(wire: &[u8], cuts: &[usize]) -> Vec<Result<(Bytes, Said), ()>> {
    let mut codec = FrameCodec::new(FramingSpec::Http(HttpSpec::default().max_head(300)));
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut from = 0;
    let mut ends: Vec<usize> = cuts.to_vec();
    ends.push(wire.len());
    for (i, &end) in ends.iter().enumerate() {
        buf.extend_from_slice(&wire[from..end]);
        from = end;
        loop {
            let res = if i + 1 == ends.len() {
                codec.decode_eof(&mut buf)
            } else {
                codec.decode(&mut buf)
            };
            match res {
                Ok(Some(frame)) => {
                    let h = codec
                        .take_http_head()
                        .expect("every request frame has a summary");
                    assert!(h.describes(&frame), "the summary names its frame");
                    assert_eq!(codec.take_http_head(), None, "given once");
                    let said = (
                        h.version(),
                        h.close(),
                        h.keep_alive(),
                        h.host_fields(),
                        h.other_coding(),
                        h.is_head(),
                        h.chunked(),
                        h.head_len(),
                    );
                    out.push(Ok((frame, said)));
                }
                Ok(None) => break,
                Err(_) => {
                    out.push(Err(()));
                    return out;
                }
            }
        }
    }
    out
}

/// A full parse of `frame` says what its summary says.
fn check_against_parse(frame: &Bytes, said: Said, what: &str) {
    let p = Parsed::parse_bytes(frame).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (version, close, keep_alive, hosts, other, is_head, chunked, head_len) = said;
    assert_eq!(
        (p.version, p.connection.close, p.connection.keep_alive),
        (version, close, keep_alive),
        "{what}"
    );
    assert_eq!(
        (p.host_fields, p.other_coding, p.is_head()),
        (hosts, other, is_head),
        "{what}"
    );
    let rest = &frame[head_len.min(frame.len())..];
    let body = if chunked {
        dechunk(rest).unwrap_or_else(|e| panic!("{what}: {e}"))
    } else {
        Bytes::copy_from_slice(rest)
    };
    assert_eq!(p.body, body, "{what}");
}

fn wire_of(r: &mut Rng, kind: Kind, n: usize) -> Vec<u8> {
    (0..n).flat_map(|_| request(r, kind)).collect()
}

#[test]
fn summaries_match_a_full_parse_whatever_the_segmentation() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut frames = 0;
    for case in 0..400 {
        let kind = if case % 2 == 0 {
            Kind::Valid
        } else {
            Kind::Any
        };
        let n = 1 + r.below(4);
        let wire = wire_of(&mut r, kind, n);
        let whole = decode_all(&wire, &[]);
        for ev in whole.iter().flatten() {
            let what = format!("case {case}: {}", String::from_utf8_lossy(&ev.0));
            check_against_parse(&ev.0, ev.1, &what);
            frames += 1;
        }
        if kind == Kind::Valid {
            assert!(
                whole.iter().all(Result::is_ok),
                "case {case}: valid requests decode"
            );
        }
        // Every byte its own segment, and every single cut for the short wires.
        let bytes: Vec<usize> = (1..wire.len()).collect();
        let events = |got: &[Result<(Bytes, Said), ()>]| -> Vec<Result<(Vec<u8>, Said), ()>> {
            got.iter()
                .map(|e| e.clone().map(|(f, s)| (f.to_vec(), s)))
                .collect()
        };
        let want = events(&whole);
        assert_eq!(
            events(&decode_all(&wire, &bytes)),
            want,
            "case {case}: byte by byte"
        );
        if case % 8 == 0 {
            for cut in 1..wire.len() {
                assert_eq!(
                    events(&decode_all(&wire, &[cut])),
                    want,
                    "case {case} cut {cut}"
                );
            }
        }
    }
    assert!(frames > 500, "only {frames} frames decoded");
}

/// An `HttpService` behind a handler that pends on every other call and sometimes
/// replaces the frame: with a copy (other bytes, same contents: the summary must not be
/// given, the answer must not change) or with the same bytes re-sliced.
/// Frames seen: (address, length).
type Places = std::sync::Arc<std::sync::Mutex<Vec<(usize, usize)>>>;

#[derive(Clone)]
struct Meddler {
    inner: HttpService,
    calls: u64,
    /// Where each frame the server handed over was (address, length).
    at: Option<Places>,
}

impl Service<Request> for Meddler {
    type Response = Answer;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        self.calls += 1;
        assert!(
            req.http_head().is_some(),
            "a server request has its summary"
        );
        if let Some(at) = &self.at {
            at.lock()
                .unwrap()
                .push((req.frame.as_ptr() as usize, req.frame.len()));
        }
        match self.calls % 3 {
            0 => {
                req.frame = Bytes::copy_from_slice(&req.frame);
                assert!(req.http_head().is_none(), "a copy gets no summary");
            }
            1 => {
                let len = req.frame.len();
                req.frame = req.frame.slice(..len);
                assert!(req.http_head().is_some(), "the same bytes keep it");
            }
            _ => {}
        }
        let pend = self.calls % 2 == 0;
        let fut = self.inner.call(req);
        Box::pin(async move {
            if pend {
                tokio::task::yield_now().await;
            }
            fut.await
        })
    }
}

/// What the server must send for `wire`: each frame answered by a service that parses it,
/// up to the first answer that closes.
fn expected(wire: &[u8], svc: &HttpService) -> Vec<u8> {
    let mut svc = svc.clone();
    let mut out = Vec::new();
    for ev in decode_all_default(wire) {
        let a = svc.answer(&ev, false);
        for f in a.frames() {
            out.extend_from_slice(f);
        }
        if a.closes() {
            break;
        }
    }
    out
}

fn decode_all_default(wire: &[u8]) -> Vec<Bytes> {
    let mut codec = FrameCodec::new(FramingSpec::Http(HttpSpec::default()));
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while let Some(f) = codec.decode_eof(&mut buf).expect("valid requests") {
        out.push(f);
    }
    out
}

async fn serve<S>(svc: S) -> std::net::SocketAddr
where
    S: Service<Request, Response = Answer, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    serve_with(svc, ServerConfig::new("http".parse().unwrap()))
        .await
        .0
}

async fn serve_with<S>(
    svc: S,
    cfg: ServerConfig,
) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken)
where
    S: Service<Request, Response = Answer, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    tokio::spawn(async move {
        let _ = server.serve(svc).await;
    });
    (addr, stop)
}

/// Sends `wire` in random pieces, then half-closes, and reads until the server closes;
/// `100 Continue` interim responses (sent or not, as the pieces fall) are dropped.
async fn exchange(addr: std::net::SocketAddr, wire: &[u8], r: &mut Rng) -> Vec<u8> {
    let c = TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = c.into_split();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let read = tokio::time::timeout(LIMIT, rd.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the server closes within the bound");
        out
    });
    let mut at = 0;
    while at < wire.len() {
        let n = (1 + r.below(40)).min(wire.len() - at);
        if wr.write_all(&wire[at..at + n]).await.is_err() {
            break; // the server closed (an answer that closes)
        }
        at += n;
    }
    let _ = wr.shutdown().await;
    let out = reader.await.unwrap();
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut clean = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        if rest.starts_with(interim) {
            rest = &rest[interim.len()..];
        } else {
            clean.push(rest[0]);
            rest = &rest[1..];
        }
    }
    clean
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answers_from_summaries_as_a_parse_would() {
    let mut r = Rng(0x0123_4567_89ab_cdef);
    let configs = [
        (HttpReply::Echo, 0),
        (HttpReply::Fixed("abc".into()), 0),
        (HttpReply::Echo, 3),
        (HttpReply::Fixed("abc".into()), 2),
    ];
    for (ci, (reply, max)) in configs.into_iter().enumerate() {
        let mut ka = KeepAlive::default();
        ka.max_requests = max;
        ka.advertise = ci % 2 == 1;
        ka.timeout = Some(Duration::from_secs(5));
        let svc = HttpService::new(reply, "text/plain", ka);
        let plain = serve(svc.clone()).await;
        let meddled = serve(Meddler {
            inner: svc.clone(),
            calls: 0,
            at: None,
        })
        .await;
        // Every request handed over the slow way (held back by a reply delay).
        let mut cfg = ServerConfig::new("http".parse().unwrap());
        cfg.reply_delay = Some(Duration::from_millis(1));
        let delayed = serve_with(svc.clone(), cfg).await.0;
        for case in 0..25 {
            let n = 1 + r.below(5);
            let wire = wire_of(&mut r, Kind::Valid, n);
            let want = expected(&wire, &svc);
            for addr in [plain, meddled, delayed] {
                let got = exchange(addr, &wire, &mut r).await;
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "config {ci} case {case}, wire:\n{}",
                    String::from_utf8_lossy(&wire)
                );
            }
        }
    }
}

/// Writes `wire` at once and reads until the server closes.
async fn send_all(addr: std::net::SocketAddr, wire: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(wire).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, c.read_to_end(&mut out))
        .await
        .expect("the server closes within the bound")
        .unwrap();
    out
}

#[tokio::test]
async fn a_bad_frame_mid_pipeline_gets_its_error_after_the_answers_owed() {
    let mut cfg = ServerConfig::new("http:max=8:max_head=200".parse().unwrap());
    cfg.shutdown_grace = Duration::from_secs(1);
    let mut ka = KeepAlive::default();
    ka.max_requests = 3;
    let svc = HttpService::new(HttpReply::Echo, "t", ka);
    let (addr, _stop) = serve_with(svc.clone(), cfg).await;
    let good: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
    let head_only: &[u8] = b"HEAD / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "y".repeat(300)
    );
    let big_trailer = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: {}\r\n\r\n",
        "t".repeat(300)
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "A: b\r\n".repeat(101)
    );
    let cases: [(&[u8], &[u8]); 7] = [
        (big_trailer.as_bytes(), b"HTTP/1.1 431 "),
        (many.as_bytes(), b"HTTP/1.1 431 "),
        // Refused on its head: no `100 Continue` first.
        (
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n",
            b"HTTP/1.1 413 ",
        ),
        (big_head.as_bytes(), b"HTTP/1.1 431 "),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\n",
            b"HTTP/1.1 413 ",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n",
            b"HTTP/1.1 413 ",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
            b"HTTP/1.1 400 ",
        ),
    ];
    for (bad, status) in cases {
        for owed in 0..3 {
            let mut wire = Vec::new();
            let mut want = Vec::new();
            let mut reference = svc.clone();
            for i in 0..owed {
                let f = if i % 2 == 0 { good } else { head_only };
                wire.extend_from_slice(f);
                let a = reference.answer(&Bytes::copy_from_slice(f), false);
                want.extend_from_slice(&a.frames()[0]);
            }
            wire.extend_from_slice(bad);
            let got = send_all(addr, &wire).await;
            let what = format!("{owed} owed, then {}", String::from_utf8_lossy(bad));
            assert!(
                got.starts_with(&want),
                "{what}: {}",
                String::from_utf8_lossy(&got)
            );
            let rest = &got[want.len()..];
            assert!(
                rest.starts_with(status),
                "{what}: {}",
                String::from_utf8_lossy(rest)
            );
        }
    }
    // The request limit closes first: the bad frame after it is never read.
    let wire = [
        good,
        head_only,
        good,
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
    ]
    .concat();
    let got = send_all(addr, &wire).await;
    assert_eq!(got.windows(9).filter(|w| w == b"HTTP/1.1 ").count(), 3);
    assert!(
        got.ends_with(b"Connection: close\r\n\r\nhi"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// Records `req.draining` of each call and lets the first call wait for `go`.
#[derive(Clone)]
struct Gate {
    inner: HttpService,
    called: std::sync::Arc<tokio::sync::Notify>,
    go: std::sync::Arc<tokio::sync::Notify>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
}

impl Service<Request> for Gate {
    type Response = Answer;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let first = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(req.draining);
            seen.len() == 1
        };
        let fut = self.inner.call(req);
        let (called, go) = (self.called.clone(), self.go.clone());
        Box::pin(async move {
            if first {
                called.notify_one();
                go.notified().await;
            }
            fut.await
        })
    }
}

#[tokio::test]
async fn a_drain_mid_pipeline_answers_as_a_parse_with_the_flag_seen() {
    let svc = HttpService::new(HttpReply::Fixed("abc".into()), "t", KeepAlive::default());
    let gate = Gate {
        inner: svc.clone(),
        called: Default::default(),
        go: Default::default(),
        seen: Default::default(),
    };
    let mut cfg = ServerConfig::new("http".parse().unwrap());
    cfg.shutdown_grace = Duration::from_secs(5);
    let (addr, stop) = serve_with(gate.clone(), cfg).await;
    let frames: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&frames.concat()).await.unwrap();
    tokio::time::timeout(LIMIT, gate.called.notified())
        .await
        .expect("the first request reaches the handler");
    stop.cancel();
    gate.go.notify_one();
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, c.read_to_end(&mut got))
        .await
        .expect("the server closes within the bound")
        .unwrap();
    let seen = gate.seen.lock().unwrap().clone();
    let mut reference = svc.clone();
    let mut want = Vec::new();
    for (f, &draining) in frames.iter().zip(&seen) {
        let a = reference.answer(&Bytes::copy_from_slice(f), draining);
        want.extend_from_slice(&a.frames()[0]);
    }
    assert!(!seen.is_empty() && seen.len() <= 3);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "{seen:?}"
    );
    assert!(got.ends_with(b"Connection: close\r\n\r\n") || got.ends_with(b"close\r\n\r\nabc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_server_answers_from_summaries_as_a_parse_would() {
    let pki = tls_common::Pki::new();
    let mut r = Rng(0x5151_2727_d00d_f00d);
    let mut ka = KeepAlive::default();
    ka.max_requests = 4;
    for reply in [HttpReply::Echo, HttpReply::Fixed("abc".into())] {
        let svc = HttpService::new(reply, "text/plain", ka);
        let mut cfg = ServerConfig::new("http".parse().unwrap());
        cfg.tls = Some(pki.server_tls(false));
        let meddler = Meddler {
            inner: svc.clone(),
            calls: 0,
            at: None,
        };
        let (addr, _stop) = serve_with(meddler, cfg).await;
        for case in 0..10 {
            let n = 1 + r.below(5);
            let wire = wire_of(&mut r, Kind::Valid, n);
            let want = expected(&wire, &svc);
            let tcp = TcpStream::connect(addr).await.unwrap();
            let tls = pki.client_tls(false);
            let s = tls.connect(tcp, "localhost:1", LIMIT).await.unwrap();
            let (mut rd, mut wr) = tokio::io::split(s);
            let reader = tokio::spawn(async move {
                let mut out = Vec::new();
                let mut buf = [0u8; 4096];
                let read_all = async {
                    // A close without close_notify ends the stream as an error: the bytes
                    // read before it are what the server sent.
                    while let Ok(k) = rd.read(&mut buf).await {
                        if k == 0 {
                            break;
                        }
                        out.extend_from_slice(&buf[..k]);
                    }
                };
                let closed = tokio::time::timeout(LIMIT, read_all).await;
                assert!(closed.is_ok(), "the server closes within the bound");
                out
            });
            let mut at = 0;
            while at < wire.len() {
                let k = (1 + r.below(40)).min(wire.len() - at);
                if wr.write_all(&wire[at..at + k]).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
                at += k;
            }
            let _ = wr.shutdown().await;
            let got = reader.await.unwrap();
            let interim = "HTTP/1.1 100 Continue\r\n\r\n";
            let got = String::from_utf8_lossy(&got).replace(interim, "");
            assert_eq!(
                got,
                String::from_utf8_lossy(&want),
                "case {case}, wire:\n{}",
                String::from_utf8_lossy(&wire)
            );
        }
    }
}

/// Reads one response to a request of `head_only` (no body then) from `c`.
async fn read_response(c: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> Vec<u8> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + if head_only { 0 } else { len };
            if buf.len() >= total {
                return buf.drain(..total).collect();
            }
        }
        let mut more = [0u8; 4096];
        let n = tokio::time::timeout(LIMIT, c.read(&mut more))
            .await
            .expect("a response within the bound")
            .unwrap();
        assert!(
            n > 0,
            "the server closed early: {}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&more[..n]);
    }
}

/// Requests of one length sent one at a time: each lands where the last one was (the read
/// buffer reclaims its start once the frame before is dropped; pooled buffers across
/// connections), and each must be answered from its own head.
#[tokio::test]
async fn same_length_requests_at_a_reused_address_are_answered_each_by_its_own_head() {
    let same: [&[u8]; 4] = [
        b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: clos_\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: clos_\r\n\r\n",
        b"HEAD / HTTP/1.0\r\nX:\r\nConnection: keep-alive\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ];
    assert!(same.iter().all(|f| f.len() == same[0].len()));
    let svc = HttpService::new(HttpReply::Fixed("abc".into()), "t", KeepAlive::default());
    let at = std::sync::Arc::default();
    let addr = serve(Meddler {
        inner: svc.clone(),
        calls: 0,
        at: Some(std::sync::Arc::clone(&at)),
    })
    .await;
    for round in 0..20 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut reference = svc.clone();
        let mut buf = Vec::new();
        for i in 0..8 {
            let f = &same[(i + round) % 3];
            c.write_all(f).await.unwrap();
            let want = reference.answer(&Bytes::copy_from_slice(f), false);
            let got = read_response(&mut c, &mut buf, f.starts_with(b"HEAD")).await;
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want.frames()[0]),
                "round {round} request {i}"
            );
        }
        let last = &same[3];
        c.write_all(last).await.unwrap();
        let want = reference.answer(&Bytes::copy_from_slice(last), false);
        let mut got = Vec::new();
        tokio::time::timeout(LIMIT, c.read_to_end(&mut got))
            .await
            .expect("the server closes after close")
            .unwrap();
        assert_eq!(got, want.frames()[0], "round {round}");
    }
    let at = at.lock().unwrap();
    let mut places: Vec<_> = at.clone();
    places.sort_unstable();
    places.dedup();
    eprintln!("{} frames at {} places", at.len(), places.len());
    assert!(
        places.len() < at.len() / 2,
        "frames do land where others were"
    );
}
