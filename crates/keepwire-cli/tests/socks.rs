//! The claim behind heartbeats, shown in network namespaces the test creates (198.18.0.0/15,
//! root; skipped elsewhere unless KEEPWIRE_REQUIRE_TOOLS=1):
//!
//! ```text
//!  ns C (client)          ns P (microsocks)           ns F1 (far1, keepwire serve)
//!  198.18.0.1 ── veth ── 198.18.0.2:1080  198.18.1.1 ── veth ── 198.18.1.2:7000
//!                                         198.18.2.1 ── veth ── 198.18.2.2:7000
//!                                                              ns F2 (far2)
//! ```
//!
//! The link to far1 is pulled (its veth set down in F1). TCP keepalive (1s,1s,3) on the
//! client's socket only tests the client's hop to the proxy, whose kernel answers every
//! probe: the client notices nothing for 10 s. keepwire heartbeats (interval 1s, timeout
//! 500ms, misses 2) cross the proxy like any frame: the client declares far1 dead within
//! interval * misses + timeout = 2.5 s and fails over to far2. The same through TLS.
//!
//! The client runs in ns C as this test binary itself (`socks_child`, run by the parent
//! through `ip netns exec`), so the test's own namespace is never touched.

mod common;
mod tls_common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Serve};
use tls_common::{Killed, PkiFiles, has_tool, require};

const PROXY: &str = "198.18.0.2:1080";
const FAR1: &str = "198.18.1.2:7000";
const FAR2: &str = "198.18.2.2:7000";

/// Runs `ip ARGS`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The four namespaces and their links; deleted on drop.
struct Topology {
    ns: [String; 4],
}

impl Topology {
    fn new(tag: &str) -> Topology {
        let pid = std::process::id();
        let ns = ["c", "p", "f1", "f2"].map(|n| format!("kw-{tag}-{pid}-{n}"));
        let t = Topology { ns };
        let [c, p, f1, f2] = &t.ns;
        for n in &t.ns {
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        // Each veth is made inside its namespaces, so the names never meet.
        for (a, b, a_ip, b_ip) in [
            (c, p, "198.18.0.1/24", "198.18.0.2/24"),
            (p, f1, "198.18.1.1/24", "198.18.1.2/24"),
            (p, f2, "198.18.2.1/24", "198.18.2.2/24"),
        ] {
            let (an, bn) = (format!("to-{}", suffix(b)), format!("to-{}", suffix(a)));
            ip(&[
                "link", "add", &an, "netns", a, "type", "veth", "peer", "name", &bn, "netns", b,
            ]);
            ip(&["-n", a, "addr", "add", a_ip, "dev", &an]);
            ip(&["-n", b, "addr", "add", b_ip, "dev", &bn]);
            ip(&["-n", a, "link", "set", &an, "up"]);
            ip(&["-n", b, "link", "set", &bn, "up"]);
        }
        t
    }

    fn client(&self) -> &str {
        &self.ns[0]
    }

    /// `ip netns exec NS PROGRAM`.
    fn exec(&self, ns: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns[ns], program]);
        cmd
    }

    /// Pulls far1's cable: its end of the link goes down.
    fn pull_far1(&self) {
        ip(&["-n", &self.ns[2], "link", "set", "to-p", "down"]);
    }
}

/// `kw-T-PID-f1` -> `f1`.
fn suffix(ns: &str) -> &str {
    ns.rsplit('-').next().unwrap_or(ns)
}

impl Drop for Topology {
    fn drop(&mut self) {
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Whether this machine lets the test build namespaces (root, `ip`, `microsocks`).
fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    require(root, "needs root for network namespaces")
        && require(
            has_tool("ip"),
            "iproute2 not installed (scripts/install-test-deps.sh)",
        )
        && require(
            has_tool("microsocks"),
            "microsocks not installed (scripts/install-test-deps.sh)",
        )
}

/// Sets up the namespaces, microsocks and the two far servers (`tls`: with certificates
/// from `pki`), runs the client part `mode` in ns C, pulls far1's link when the client is
/// ready, and returns the client's output after checking it passed.
fn scenario(tag: &str, mode: &str, tls: bool) -> String {
    let pki = PkiFiles::new(tag);
    let topo = Topology::new(tag);
    let mut socks = topo.exec(1, "microsocks");
    socks.args(["-i", "198.18.0.2", "-p", "1080"]);
    let _socks = Killed(
        socks
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut servers = Vec::new();
    for (ns, addr, name) in [(2, FAR1, "far1"), (3, FAR2, "far2")] {
        let mut cmd = topo.exec(ns, BIN);
        cmd.args([
            "serve",
            "--listen",
            addr,
            "--framing",
            "len:be:2",
            "--reply",
        ]);
        cmd.arg(format!("text:{name}"));
        if tls {
            cmd.args([
                "--tls-cert",
                &pki.path("server.crt"),
                "--tls-key",
                &pki.path("server.key"),
            ]);
        }
        servers.push(Serve::spawn(cmd));
    }
    let mut child = topo.exec(0, std::env::current_exe().unwrap().to_str().unwrap());
    child
        .args([
            "--exact",
            "socks_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KW_SOCKS_CHILD", mode)
        .env("KW_SOCKS_CA", pki.path("ca.crt"))
        .env("KW_SOCKS_TLS", if tls { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Killed(child.spawn().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        seen.push_str(&line);
        // (libtest prints `test socks_child ... ` before it, on the same line.)
        if line.trim_end().ends_with("KW-READY") {
            topo.pull_far1();
            writeln!(stdin, "pulled").unwrap();
            stdin.flush().unwrap();
        }
    }
    let status = tls_common::wait_child(&mut child.0, Duration::from_secs(60));
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err);
    assert!(
        status.success(),
        "client in {} failed:\n{seen}\n{err}",
        topo.client()
    );
    assert!(seen.contains("passed"), "client said:\n{seen}\n{err}");
    drop(servers);
    // The client's findings (with --nocapture): the figures docs/tls.md quotes.
    for line in seen
        .lines()
        .filter(|l| l.contains("keepalive:") || l.contains("heartbeat:"))
    {
        println!("{line}");
    }
    seen
}

#[test]
fn tcp_keepalive_alone_does_not_see_through_socks() {
    if !can_run() {
        return;
    }
    let out = scenario("ka", "keepalive", false);
    assert!(out.contains("nothing noticed in 10s"), "{out}");
}

/// The client half, run by [`scenario`] inside ns C; does nothing when run directly.
#[test]
#[ignore = "run by the namespace tests inside their client namespace"]
fn socks_child() {
    let Ok(mode) = std::env::var("KW_SOCKS_CHILD") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match mode.as_str() {
            "keepalive" => child_keepalive().await,
            "heartbeat" => child_heartbeat().await,
            other => panic!("unknown child mode {other}"),
        }
    });
    println!("passed");
}

/// Waits for the parent's `pulled` line on stdin (bounded: 30 s).
fn wait_pulled() {
    println!("KW-READY");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no word from the parent");
    assert_eq!(line.trim(), "pulled");
}

/// A raw framed exchange over `s`: `len:be:2` request, one reply.
async fn exchange(s: &mut tokio::net::TcpStream, msg: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let len = u16::try_from(msg.len()).unwrap().to_be_bytes();
    s.write_all(&[&len[..], msg].concat()).await.unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(head))];
    s.read_exact(&mut body).await.unwrap();
    body
}

/// TCP keepalive (1s,1s,3) alone on the client's socket to the proxy: after far1's link is
/// pulled, nothing happens on the client's socket for 10 s.
async fn child_keepalive() {
    let socks = keepwire::socks::Socks5::new(PROXY);
    let mut s = socks.connect(FAR1, Duration::from_secs(5)).await.unwrap();
    let opts = keepwire::socket::SocketOptions {
        keepalive: Some("1s,1s,3".parse().unwrap()),
        ..Default::default()
    };
    opts.apply(&s).unwrap();
    assert_eq!(exchange(&mut s, b"hello").await, b"far1");
    wait_pulled();
    let t = Instant::now();
    // Keepalive would surface as an error (ETIMEDOUT) or an EOF on read: neither comes.
    // (Readiness left over from the exchange is cleared by the first WouldBlock.)
    let noticed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut one = [0u8; 1];
        loop {
            s.readable().await?;
            match s.try_read(&mut one) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(
        noticed.is_err(),
        "the client noticed after {:?}: {noticed:?}",
        t.elapsed()
    );
    println!("keepalive: nothing noticed in 10s ({:?})", t.elapsed());
    // Yet far1 is gone: a request now gets no answer.
    let late = tokio::time::timeout(Duration::from_secs(2), exchange(&mut s, b"anyone?")).await;
    assert!(late.is_err(), "far1 answered: the link was not pulled");
}

#[test]
fn heartbeats_see_through_socks_and_fail_over() {
    if !can_run() {
        return;
    }
    let out = scenario("hb", "heartbeat", false);
    assert!(out.contains("failed over to far2"), "{out}");
}

#[test]
fn heartbeats_see_through_tls_over_socks() {
    if !can_run() {
        return;
    }
    let out = scenario("hbtls", "heartbeat", true);
    assert!(out.contains("failed over to far2"), "{out}");
}

/// keepwire heartbeats (interval 1s, timeout 500ms, misses 2) on a long client through the
/// proxy to [far1, far2], over TLS when the parent says so: after far1's link is pulled, the
/// client declares it dead within interval * misses + timeout = 2.5 s (plus 1 s for
/// scheduling) and the next request is answered by far2.
async fn child_heartbeat() {
    use keepwire::client::ClientBuilder;
    use keepwire::liveness::PingConfig;
    let mut b = ClientBuilder::new("len:be:2".parse().unwrap(), [FAR1, FAR2])
        .socks5(keepwire::socks::Socks5::new(PROXY))
        .ping(Some(PingConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            misses: 2,
        }))
        .socket_options(keepwire::socket::SocketOptions {
            keepalive: Some("1s,1s,3".parse().unwrap()),
            ..Default::default()
        })
        .connect_timeout(Duration::from_secs(3))
        .request_timeout(Duration::from_secs(5));
    if std::env::var("KW_SOCKS_TLS").as_deref() == Ok("1") {
        let ca = std::env::var("KW_SOCKS_CA").unwrap();
        // The far servers' certificate names localhost, as a partner's names its DNS name.
        let tls = keepwire::tls::ClientTls::builder()
            .ca_file(ca)
            .server_name("localhost")
            .build()
            .unwrap();
        b = b.tls(tls);
    }
    let client = b.connect_long().await.unwrap();
    let reply = client
        .request(bytes::Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(&reply[..], b"far1");
    wait_pulled();
    let t = Instant::now();
    while client.endpoints()[0].up {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "far1 never declared dead"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let detected = t.elapsed();
    let why = client.endpoints()[0].last_error.clone().unwrap_or_default();
    assert!(
        why.contains("heartbeats"),
        "far1 down for another reason: {why}"
    );
    assert!(
        detected <= Duration::from_millis(3500),
        "declared dead after {detected:?}"
    );
    let reply = client
        .request(bytes::Bytes::from_static(b"after"))
        .await
        .unwrap();
    assert_eq!(&reply[..], b"far2");
    println!(
        "heartbeat: far1 declared dead after {detected:?} ({why}); failed over to far2, \
         answered {:?} after the pull",
        t.elapsed()
    );
}
