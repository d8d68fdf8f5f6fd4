//! Helpers shared by the integration tests: a server on 127.0.0.1:0 and framed clients.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use keepwire::client::ClientBuilder;
use keepwire::frame::{FrameCodec, FramingSpec};
use keepwire::server::{Request, Server, ServerConfig, ServerStats, ShutdownReport, service_fn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

/// Generous upper bound for anything that should happen "soon".
pub const SOON: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub stats: Arc<ServerStats>,
    pub task: JoinHandle<ShutdownReport>,
    /// Every frame the handler saw.
    pub seen: mpsc::Receiver<Request>,
}

pub fn spec(s: &str) -> FramingSpec {
    s.parse().unwrap()
}

/// An echo server recording every request it sees.
pub async fn echo_server(cfg: ServerConfig) -> TestServer {
    start(cfg, "127.0.0.1:0", None).await
}

/// A server whose handler sleeps `delay` before echoing.
pub async fn start(cfg: ServerConfig, addr: &str, delay: Option<Duration>) -> TestServer {
    let server = Server::bind(addr, cfg).await.unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    let stats = server.stats();
    let (tx, seen) = mpsc::channel(100_000);
    let handler = service_fn(move |req: Request| {
        let tx = tx.clone();
        async move {
            let _ = tx.try_send(req.clone());
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            Ok::<_, Infallible>(Some(req.frame))
        }
    });
    let task = tokio::spawn(async move { server.serve(handler).await.unwrap() });
    TestServer {
        addr,
        stop,
        stats,
        task,
        seen,
    }
}

/// A framed client over a real socket.
pub struct Client {
    pub stream: TcpStream,
    codec: FrameCodec,
    buf: BytesMut,
}

impl Client {
    pub async fn connect(addr: SocketAddr, framing: &str) -> Client {
        Client::from_stream(TcpStream::connect(addr).await.unwrap(), framing)
    }

    pub fn from_stream(stream: TcpStream, framing: &str) -> Client {
        Client {
            stream,
            codec: FrameCodec::new(spec(framing)),
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, frame: &[u8]) {
        let mut out = BytesMut::new();
        self.codec.encode_to(frame, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next frame, `None` at EOF or error; panics after `SOON`.
    pub async fn recv(&mut self) -> Option<Bytes> {
        tokio::time::timeout(SOON, self.recv_inner())
            .await
            .expect("no frame within the bound")
    }

    async fn recv_inner(&mut self) -> Option<Bytes> {
        loop {
            if let Ok(Some(f)) = self.codec.decode(&mut self.buf) {
                return Some(f);
            }
            self.buf.reserve(4096);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Waits for the server to close (EOF or reset); returns how long that took.
    pub async fn closed_within(&mut self, bound: Duration) -> Duration {
        let t = tokio::time::Instant::now();
        let mut scratch = [0u8; 1024];
        tokio::time::timeout(bound, async {
            loop {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("server did not close the connection within the bound");
        t.elapsed()
    }
}

/// Polls `cond` every 10 ms until it holds; panics after `SOON`.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + SOON;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ------------------------------------------------------------ client test helpers

pub fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

pub fn builder(framing: &str, eps: &[SocketAddr]) -> ClientBuilder {
    ClientBuilder::new(spec(framing), eps.iter().map(|a| a.to_string()))
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(5))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .down_backoff(Duration::from_millis(200), Duration::from_secs(2))
}

/// A raw server that runs `f` on each accepted connection.
pub async fn raw_server<F, Fut>(f: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(f(s));
        }
    });
    addr
}

pub async fn read_frame(
    s: &mut TcpStream,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
) -> Option<Bytes> {
    loop {
        if let Ok(Some(f)) = codec.decode(buf) {
            return Some(f);
        }
        buf.reserve(1024);
        match s.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A port nothing listens on (bound, then closed).
pub async fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A listener whose accept queue is full and never drained: further SYNs are dropped, so a
/// connect to it hangs until its timeout (a dead host, seen from the client).
pub fn blackhole() -> (socket2::Socket, Vec<std::net::TcpStream>, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&any.into()).unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..4 {
        if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fill.push(c);
        }
    }
    let t = std::time::Instant::now();
    let probe = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300));
    assert!(
        probe.is_err() && t.elapsed() >= Duration::from_millis(250),
        "the accept queue did not fill: cannot blackhole on this host"
    );
    (s, fill, addr)
}

/// Asserts two byte streams are equal, without printing megabytes: on a difference, the
/// lengths, the first differing offset and the bytes around it.
pub fn same(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {} bytes, want {} (first difference at {at}; got {:02x?}.., want {:02x?}..)",
            got.len(),
            want.len(),
            &got[at.saturating_sub(8)..(at + 16).min(got.len())],
            &want[at.saturating_sub(8)..(at + 16).min(want.len())],
        );
    }
}
