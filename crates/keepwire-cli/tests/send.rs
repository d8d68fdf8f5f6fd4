//! `keepwire send` against `keepwire serve`, both run for real: replies one per line, stdin,
//! short and long mode, failover past refused and stopped (SIGSTOP) servers, exit codes.

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::{RUN_LIMIT, Serve, run};

/// Runs `keepwire send ARGS` on `stdin`, checks the exit code and returns (stdout, stderr).
#[track_caller]
fn run_expect(args: &[&str], stdin: &[u8], code: i32) -> (String, String) {
    let mut full = vec!["send"];
    full.extend_from_slice(args);
    let out = run(&full, stdin);
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "send {args:?}: stdout {so:?}, stderr {se:?}"
    );
    (so, se)
}

/// An address nothing listens on.
fn refused() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn long_mode_sends_several_messages_on_one_connection() {
    let srv = Serve::start(&["--framing", "len:ascii:4"]);
    let (out, err) = run_expect(
        &[
            "--to",
            &srv.to,
            "--framing",
            "len:ascii:4",
            "hello",
            "tab\\there",
            "\\x00end",
        ],
        b"",
        0,
    );
    assert_eq!(out, "hello\ntab\\there\n\\x00end\n");
    assert!(err.contains(&format!("connected to {}", srv.addr)), "{err}");
}

#[test]
fn short_mode_fails_over_past_a_refused_endpoint_and_says_so() {
    let srv = Serve::start(&["--framing", "len:be:2", "--mode", "short"]);
    let dead = refused();
    let to = format!("{dead},{}", srv.to);
    let (out, err) = run_expect(
        &[
            "--to",
            &to,
            "--framing",
            "len:be:2",
            "--mode",
            "short",
            "--hex",
            "0800",
            "0810",
        ],
        b"",
        0,
    );
    assert_eq!(out, "0800\n0810\n");
    assert!(err.contains(&format!("skipped {dead}")), "{err}");
    assert!(err.contains(&format!("connected to {}", srv.addr)), "{err}");
}

#[test]
fn stdin_messages_are_sent_one_per_line() {
    let srv = Serve::start(&["--framing", "line", "--reply", "text:ok"]);
    let (out, _) = run_expect(&["--to", &srv.to, "--framing", "len:ascii:4", "-"], b"", 0);
    assert_eq!(out, "");
    let srv2 = Serve::start(&["--framing", "len:ascii:4"]);
    let (out, _) = run_expect(
        &["--to", &srv2.to, "--framing", "len:ascii:4", "--hex", "-"],
        b"6869\r\n0a0b\n",
        0,
    );
    assert_eq!(out, "6869\n0a0b\n");
    drop(srv);
}

#[test]
fn all_endpoints_failing_exits_1_naming_each() {
    let (a, b) = (refused(), refused());
    let to = format!("{a},{b}");
    let (out, err) = run_expect(&["--to", &to, "--framing", "line", "x"], b"", 1);
    assert_eq!(out, "");
    assert!(err.contains(&a) && err.contains(&b), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn bad_usage_exits_2() {
    let base = ["--to", "127.0.0.1:1", "--framing"];
    for rest in [
        &["len:zz:4", "x"][..],
        &["line"],
        &["line", "--timeout", "soon", "x"],
        &["line", "--heartbeat", "bogus", "x"],
        &["line", "--mode", "medium", "x"],
        &["line", "--hex", "zz"],
    ] {
        let args = [&base[..], rest].concat();
        run_expect(&args, b"", 2);
    }
}

/// Hostile review: a heartbeat the framing cannot carry is a usage error at parse, as in
/// `serve`, not a connection dropped at every interval.
#[test]
fn unencodable_heartbeat_exits_2() {
    let (_, err) = run_expect(
        &[
            "--to",
            &refused(),
            "--framing",
            "fixed:4",
            "--heartbeat",
            "interval=1s",
            "abcd",
        ],
        b"",
        2,
    );
    assert!(
        err.contains("the heartbeat ping cannot be sent under fixed:4"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn heartbeat_probe_skips_a_stopped_server() {
    let stopped = Serve::start(&["--framing", "len:ascii:4"]);
    let live = Serve::start(&["--framing", "len:ascii:4"]);
    // The kernel still accepts connections to a stopped process: only the heartbeat shows
    // that nobody is home.
    stopped.signal("-STOP");
    let to = format!("{},{}", stopped.addr, live.addr);
    for mode in ["long", "short"] {
        let t = Instant::now();
        let (out, err) = run_expect(
            &[
                "--to",
                &to,
                "--framing",
                "len:ascii:4",
                "--mode",
                mode,
                "--timeout",
                "5s",
                "--heartbeat",
                "interval=200ms,timeout=300ms,misses=1",
                "ping",
            ],
            b"",
            0,
        );
        assert_eq!(out, "ping\n");
        assert!(
            err.contains(&format!("skipped {}", stopped.addr)) && err.contains("probe"),
            "{err}"
        );
        assert!(
            err.contains(&format!("connected to {}", live.addr)),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    }
    // Without the heartbeat the stopped server swallows the request: exit 1, and the error
    // says it may have been sent.
    let (_, err) = run_expect(
        &[
            "--to",
            &to,
            "--framing",
            "len:ascii:4",
            "--timeout",
            "300ms",
            "x",
        ],
        b"",
        1,
    );
    assert!(err.contains("may have been sent"), "{err}");
}

/// Issue 9 (the heartbeat storm): under `len:ascii:4` the empty message is the heartbeat, so
/// `send ''` on a long link is refused (exit 2, one line naming the way out) instead of
/// bouncing empty frames with the server until the timeout.
#[test]
fn issue9_empty_message_is_the_heartbeat_exits_2() {
    let srv = Serve::start(&["--framing", "len:ascii:4"]);
    let t = Instant::now();
    let (out, err) = run_expect(
        &[
            "--to",
            &srv.to,
            "--framing",
            "len:ascii:4",
            "--timeout",
            "5s",
            "",
        ],
        b"",
        2,
    );
    assert_eq!(out, "");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("heartbeat") && last.contains("--heartbeat off") && last.contains("not sent"),
        "{err}"
    );
    assert!(
        err.lines().filter(|l| l.contains("heartbeat")).count() == 1,
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

/// With `--heartbeat off` the empty message is data: the server answers it (with its empty
/// pong), the client takes that as the reply, and that is the whole exchange: one frame each
/// way, counted at a raw server that answers like `keepwire serve` does.
#[test]
fn issue9_empty_message_with_heartbeat_off_is_one_exchange() {
    let srv = Serve::start(&["--framing", "len:ascii:4"]);
    // Count the frames: a raw server answers every empty frame with one, as keepwire serve
    // does, and reports how many it read once the client closes.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let raw = l.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        use std::io::Read;
        let Ok((mut s, _)) = l.accept() else { return };
        let _ = s.set_read_timeout(Some(RUN_LIMIT));
        let mut frames = 0u32;
        let mut head = [0u8; 4];
        while s.read_exact(&mut head).is_ok() {
            frames += 1;
            if &head != b"0000" || s.write_all(b"0000").is_err() {
                break;
            }
        }
        let _ = tx.send(frames);
    });
    for to in [&srv.to, &raw] {
        let (out, _) = run_expect(
            &[
                "--to",
                to,
                "--framing",
                "len:ascii:4",
                "--heartbeat",
                "off",
                "",
            ],
            b"",
            0,
        );
        assert_eq!(out, "\n", "{to}");
    }
    let frames = rx.recv_timeout(RUN_LIMIT).expect("raw server reports");
    assert_eq!(frames, 1, "frames the client sent");
}

/// Issue 9 (huge durations): a `--timeout` past the largest accepted value is a usage error
/// naming that value (it used to overflow `Instant + Duration` and exit 101); the largest
/// accepted value works.
#[test]
fn issue9_huge_timeout_exits_2_naming_the_limit() {
    let (out, err) = run_expect(
        &[
            "--to",
            "127.0.0.1:1",
            "--framing",
            "line",
            "--timeout",
            "18446744073709551615",
            "x",
        ],
        b"",
        2,
    );
    assert_eq!(out, "");
    assert!(err.contains("--timeout") && err.contains("365d"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let srv = Serve::start(&["--framing", "len:ascii:4"]);
    for mode in ["long", "short"] {
        let (out, _) = run_expect(
            &[
                "--to",
                &srv.to,
                "--framing",
                "len:ascii:4",
                "--mode",
                mode,
                "--timeout",
                "365d",
                "hi",
            ],
            b"",
            0,
        );
        assert_eq!(out, "hi\n");
    }
}
