//! `keepwire serve` pinned to one CPU (`taskset -c 0`), where it runs a current-thread
//! runtime (cmd/serve.rs): slow requests on different connections still overlap, SIGTERM
//! still drains requests already in the socket, and the metrics exporter still answers.
//!
//! Needs `taskset` (util-linux): without it each test prints "skipped: ..." and returns,
//! unless `KEEPWIRE_REQUIRE_TOOLS=1` (CI), where it fails.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{BIN, Serve, connect, wait_until};

#[path = "../../keepwire/tests/common/queues.rs"]
mod queues;

/// `true` when `taskset` runs; otherwise prints "skipped: ..." and returns `false`, or panics
/// when `KEEPWIRE_REQUIRE_TOOLS=1`.
fn taskset_or_skip() -> bool {
    let found = Command::new("taskset")
        .args(["-c", "0", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    let why = "taskset (util-linux) not found";
    if std::env::var_os("KEEPWIRE_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("KEEPWIRE_REQUIRE_TOOLS=1 and {why}");
    }
    eprintln!("skipped: {why}");
    false
}

/// `taskset -c 0 keepwire serve --listen 127.0.0.1:0 ARGS`.
fn pinned(args: &[&str]) -> Serve {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0", BIN, "serve", "--listen", "127.0.0.1:0"]);
    cmd.args(args);
    Serve::spawn(cmd)
}

/// Eight connections, each with a request held 1 s by `--delay`: on one thread they are
/// still served side by side (8 s one after the other), and a second request sent to each
/// while the first is held (it waits in the server's socket) is answered after SIGTERM,
/// which exits 0.
#[test]
fn on_one_cpu_slow_requests_overlap_and_sigterm_drains_the_socket() {
    if !taskset_or_skip() {
        return;
    }
    let s = pinned(&["--framing", "len:ascii:4", "--delay", "1s"]);
    let started = Instant::now();
    let mut cs: Vec<_> = (0..8).map(|_| connect(s.addr).unwrap()).collect();
    for c in &mut cs {
        c.write_all(b"0003one").unwrap();
    }
    for c in &cs {
        let local = c.local_addr().unwrap();
        wait_until("the server to read the first request", || {
            queues::server_has_read(local, s.addr)
        });
    }
    for c in &mut cs {
        c.write_all(b"0003two").unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(s.terminate()));
    for c in &mut cs {
        let mut got = [0u8; 7];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"0003one");
    }
    let first = started.elapsed();
    for c in &mut cs {
        let mut got = [0u8; 7];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"0003two");
    }
    let (code, err) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        first < Duration::from_secs(5),
        "eight requests held 1 s each took {first:?}: served one after the other"
    );
}

/// The metrics exporter runs on the same single thread as the connections, and counts them.
#[test]
fn on_one_cpu_metrics_answer() {
    if !taskset_or_skip() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let s = pinned(&["--framing", "len:ascii:4", "--metrics", &metrics]);
    let mut c = connect(s.addr).unwrap();
    c.write_all(b"0002hi").unwrap();
    let mut got = [0u8; 6];
    c.read_exact(&mut got).unwrap();
    // The exporter publishes the counters once a second.
    let scrape = || {
        let mut m = connect(metrics.as_str()).unwrap();
        m.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        m.read_to_string(&mut body).unwrap();
        body
    };
    wait_until("the metrics to count the frame", || {
        scrape().contains("keepwire_frames_in_total 1")
    });
    let (code, err) = s.terminate();
    assert_eq!(code, Some(0), "{err}");
}
