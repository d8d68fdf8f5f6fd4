//! 10 000 concurrent connections: all served, all released when they close.
//!
//! The clients run in a child process (this test binary, re-executed) so that each side needs
//! only 10 000 descriptors: some sandboxes cap RLIMIT_NOFILE's hard limit at 20 000 even for
//! root.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use keepwire::server::ServerConfig;
use keepwire::tcpstate::TcpState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const CONNS: usize = 10_000;
const TARGET_ENV: &str = "KEEPWIRE_SCALE_TARGET";
/// Where the child writes its clients' local addresses, one a line.
const PORTS_ENV: &str = "KEEPWIRE_SCALE_ADDRS";

/// Raises the soft RLIMIT_NOFILE towards `want` (up to the hard limit).
fn raise_nofile(want: u64) -> Result<(), String> {
    let (soft, hard) = rlimit::Resource::NOFILE.get().map_err(|e| e.to_string())?;
    if soft >= want {
        return Ok(());
    }
    if hard < want {
        return Err(format!("RLIMIT_NOFILE hard limit is {hard}, {want} needed"));
    }
    rlimit::Resource::NOFILE
        .set(want, hard)
        .map_err(|e| format!("cannot raise RLIMIT_NOFILE from {soft} to {want}: {e}"))
}

/// The client side, run in the child process: connect, exchange one frame each, report
/// "ready", hold the connections until stdin closes, then close them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by ten_thousand_connections_are_served_and_released in a child process"]
async fn scale_client_process() {
    let Ok(target) = std::env::var(TARGET_ENV) else {
        return;
    };
    let target: SocketAddr = target.parse().unwrap();
    raise_nofile(CONNS as u64 + 500).unwrap();
    let mut clients = Vec::with_capacity(CONNS);
    for i in 0..CONNS {
        // Four source addresses, so ephemeral ports never run short.
        let src: SocketAddr = format!("127.0.0.{}:0", 1 + i % 4).parse().unwrap();
        let s = TcpSocket::new_v4().unwrap();
        s.bind(src).unwrap();
        let mut stream = tokio::time::timeout(SOON, s.connect(target))
            .await
            .unwrap()
            .unwrap();
        stream
            .write_all(&[0, 2, (i >> 8) as u8, i as u8])
            .await
            .unwrap();
        clients.push(stream);
    }
    for (i, stream) in clients.iter_mut().enumerate() {
        let mut reply = [0u8; 4];
        tokio::time::timeout(SOON, stream.read_exact(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, [0, 2, (i >> 8) as u8, i as u8], "connection {i}");
    }
    let addrs: Vec<String> = clients
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();
    std::fs::write(std::env::var(PORTS_ENV).unwrap(), addrs.join("\n")).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_are_served_and_released() {
    if let Err(why) = raise_nofile(CONNS as u64 + 500) {
        eprintln!("skipping: {why}");
        return;
    }
    let mut cfg = ServerConfig::new(spec("len:be:2"));
    cfg.max_conns = CONNS + 100;
    cfg.max_conns_per_ip = None; // four source addresses, 2 500 each
    let srv = echo_server(cfg).await;

    let addrs_file = std::env::temp_dir().join(format!("kw-scale-{}", std::process::id()));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "scale_client_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--quiet",
        ])
        .env(TARGET_ENV, srv.addr.to_string())
        .env(PORTS_ENV, &addrs_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    // Read the child's stdout to its end (so its test harness never writes to a closed pipe),
    // signalling when it reports ready.
    let reader = tokio::task::spawn_blocking(move || {
        let mut ready_tx = Some(ready_tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim() == "ready" {
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    let ready = tokio::time::timeout(Duration::from_secs(120), ready_rx).await;
    if !matches!(ready, Ok(Ok(()))) {
        let _ = child.kill();
        panic!(
            "client process did not connect {CONNS} clients: {:?}",
            child.wait()
        );
    }
    // The server side of exactly our connections (other tests and processes may hold
    // sockets on the same port numbers).
    let ours: HashSet<SocketAddr> = std::fs::read_to_string(&addrs_file)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let _ = std::fs::remove_file(&addrs_file);
    assert_eq!(ours.len(), CONNS);
    let server_side = || -> BTreeMap<TcpState, usize> {
        let mut m = BTreeMap::new();
        for e in keepwire::tcpstate::sockets().unwrap() {
            if e.local == srv.addr && ours.contains(&e.remote) {
                *m.entry(e.state).or_insert(0) += 1;
            }
        }
        m
    };
    eventually("all connections established", || {
        server_side().get(&TcpState::Established) == Some(&CONNS)
    })
    .await;
    let snap = srv.stats.snapshot();
    assert_eq!(snap.accepted, CONNS as u64);
    assert_eq!(snap.frames_in, CONNS as u64);

    // Let the clients go, and check nothing leaks: every task ends, every slot is released,
    // no socket is left open or half-closed on the server side.
    drop(child.stdin.take());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    reader.await.unwrap();
    assert!(status.success(), "client process failed: {status}");
    eventually("all connections closed", || {
        srv.stats.snapshot().closed == CONNS as u64
    })
    .await;
    // TIME_WAIT is the kernel's, not a leak; anything open or half-closed is.
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let left = server_side();
        if left.keys().all(|s| *s == TcpState::TimeWait) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server-side sockets left: {left:?}"
        );
        // A bounded poll of the kernel's table: no event says a socket has left it.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(srv.stats.snapshot().rejected_max_conns, 0);
    // The server still serves.
    let mut c = Client::connect(srv.addr, "len:be:2").await;
    c.send(b"after").await;
    assert_eq!(c.recv().await.as_deref(), Some(&b"after"[..]));
    drop(c);
    srv.stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(20), srv.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.force_closed, 0);
}
