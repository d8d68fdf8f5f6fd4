//! Hostile review of issue 17 (signals watched by a task of their own): `keepwire serve` on
//! one CPU (`taskset -c 0`, a current-thread runtime, where the watcher task only runs when
//! the accept loop yields) drains on SIGINT as on SIGTERM, takes a SIGINT and then a SIGTERM
//! as the two signals that interrupt the drain, and reports a handler held past the grace as
//! closed by force.
//!
//! Needs `taskset` (util-linux): without it each test prints "skipped: ..." and returns,
//! unless `KEEPWIRE_REQUIRE_TOOLS=1` (CI), where it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{BIN, Serve, connect, wait_exit};

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

/// `taskset -c 0 keepwire serve --listen 127.0.0.1:0 --framing len:ascii:4 ARGS`, logging
/// at info.
fn pinned(args: &[&str]) -> Serve {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0", BIN, "serve", "--listen", "127.0.0.1:0"]);
    cmd.args(["--framing", "len:ascii:4"]);
    cmd.args(args);
    cmd.env("RUST_LOG", "info");
    Serve::spawn(cmd)
}

/// Reads `err` until a line contains `want` (bounded: 10 s); returns what it read.
fn read_until(err: &mut impl BufRead, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "stderr ended before {want:?}: {seen}"
        );
        seen.push_str(&line);
        if line.contains(want) {
            return seen;
        }
        assert!(Instant::now() < deadline, "no {want:?}: {seen}");
    }
}

/// SIGINT drains like SIGTERM: the request in the handler is answered, the connection
/// closed, exit 0 with the report.
#[test]
fn on_one_cpu_sigint_drains_and_exits_zero() {
    if !taskset_or_skip() {
        return;
    }
    let mut s = pinned(&["--delay", "300ms"]);
    let mut c = connect(s.addr).unwrap();
    c.write_all(b"0003one").unwrap();
    let mut err = BufReader::new(s.child.stderr.take().unwrap());
    s.signal("-INT");
    read_until(&mut err, "shutting down");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"0003one");
    let status = wait_exit(&mut s.child, Duration::from_secs(10), "serve to exit");
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(
        rest.contains(
            "connections open at the signal: 1, closed by force after the grace period: 0"
        ),
        "{rest}"
    );
}

/// SIGINT, then SIGTERM while the drain waits for a request held 10 s: the second signal
/// interrupts (exit 1 at once), whichever of the two kinds each is.
#[test]
fn on_one_cpu_sigint_then_sigterm_interrupts_the_drain() {
    if !taskset_or_skip() {
        return;
    }
    let mut s = pinned(&["--delay", "10s"]);
    let mut c = connect(s.addr).unwrap();
    c.write_all(b"0003one").unwrap();
    let mut err = BufReader::new(s.child.stderr.take().unwrap());
    s.signal("-INT");
    let seen = read_until(&mut err, "shutting down");
    let t = Instant::now();
    s.signal("-TERM");
    let status = wait_exit(
        &mut s.child,
        Duration::from_secs(5),
        "serve to stop draining after SIGINT then SIGTERM",
    );
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(1), "{seen}{rest}");
    assert!(rest.contains("second signal"), "{seen}{rest}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// A request held past `--shutdown-grace` on one CPU: the drain gives up at the grace, counts
/// the connection closed by force, and exits 0 (a graceful stop that ran out of time).
#[test]
fn on_one_cpu_a_request_held_past_the_grace_is_closed_by_force() {
    if !taskset_or_skip() {
        return;
    }
    let mut s = pinned(&["--delay", "30s", "--shutdown-grace", "300ms"]);
    let mut c = connect(s.addr).unwrap();
    c.write_all(b"0003one").unwrap();
    // Accepted already or still in the backlog (the drain takes it), the request is read
    // and held by the handler past the grace either way.
    let mut err = BufReader::new(s.child.stderr.take().unwrap());
    let t = Instant::now();
    s.signal("-TERM");
    read_until(&mut err, "shutting down");
    let status = wait_exit(&mut s.child, Duration::from_secs(10), "serve to exit");
    let took = t.elapsed();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(
        rest.contains("closed by force after the grace period: 1"),
        "{rest}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.is_empty(), "a reply after a forced close: {got:?}");
}

/// Out of descriptors (EMFILE) when SIGTERM comes: the connections waiting in the backlog
/// had their requests acknowledged by the kernel, and are served once the drain frees
/// descriptors, not reset with the listener.
#[test]
fn connections_waiting_out_of_descriptors_are_served_by_the_drain() {
    // 40 descriptors: a few for the runtime, the rest for connections.
    let mut cmd = Command::new("bash");
    cmd.args([
        "-c",
        &format!("ulimit -n 40 && exec {BIN} serve --listen 127.0.0.1:0 --framing len:be:2"),
    ]);
    let mut s = Serve::spawn(cmd);
    let pid = s.pid();
    let conns: Vec<_> = (0..60)
        .map(|_| {
            let mut c = connect(s.addr).unwrap();
            c.write_all(b"\x00\x02ok").unwrap();
            c
        })
        .collect();
    common::wait_until("the server to use all its descriptors", || {
        std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()) >= 40
    });
    s.signal("-TERM");
    // Each client reads its reply and the server's close, then closes (the drain waits for
    // that FIN), all at once.
    let readers: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut got = Vec::new();
                let r = c.read_to_end(&mut got);
                (got, r.err().map(|e| e.kind()))
            })
        })
        .collect();
    let outcomes: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let status = wait_exit(&mut s.child, Duration::from_secs(20), "serve to exit");
    let answered = outcomes
        .iter()
        .filter(|(got, _)| got == b"\x00\x02ok")
        .count();
    let lost: Vec<_> = outcomes
        .iter()
        .filter(|(got, _)| got != b"\x00\x02ok")
        .collect();
    assert_eq!(answered, 60, "unanswered: {lost:?}");
    assert_eq!(status.code(), Some(0));
}
