//! Second hostile review of `keepwire serve` / `send`, against the fixes of "server: fixes
//! from the hostile review" and "liveness: answer same-bytes heartbeats at most every
//! 50 ms": each test here failed on the code it was written against. Child processes on
//! 127.0.0.1:0, bounded waits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_keepwire");

/// `keepwire serve ARGS` on 127.0.0.1:0: the child and its address, or its exit code and
/// stderr when it refused to start.
fn serve(args: &[&str], envs: &[(&str, &str)]) -> Result<(Child, String), (Option<i32>, String)> {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.strip_prefix("listening on ") {
        Some(addr) => Ok((child, addr.trim().to_string())),
        None => {
            let status = wait_bounded(&mut child, Duration::from_secs(10));
            Err((status, stderr_of(&mut child)))
        }
    }
}

fn wait_bounded(child: &mut Child, bound: Duration) -> Option<i32> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not exit within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// SIGTERM, then the exit code and stderr.
fn terminate(mut child: Child) -> (Option<i32>, String) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let code = wait_bounded(&mut child, Duration::from_secs(20));
    (code, stderr_of(&mut child))
}

/// docs/framing.md documents `delim:0x03:keep` (the delimiter stays on the decoded frame).
/// `serve --framing delim:0x03:keep`, with no heartbeat flag at all, served before the fix;
/// now it exits 2: `bad server config: the heartbeat ping cannot be sent under
/// delim:0x03:keep: give ping=/pong= payloads the framing can carry`. The default
/// empty-frame heartbeat that `ServerConfig::new` installs (`has_empty_frame()` is true for
/// every `delim`) fails the new `FramingSpec::carries` check, since under `keep` the
/// decoded empty frame is the delimiter. The user asked for nothing and is told to give
/// payloads.
#[test]
fn serve_starts_under_delim_keep_without_heartbeat_flags() {
    match serve(&["--framing", "delim:0x03:keep"], &[]) {
        Err((code, err)) => {
            panic!("serve --framing delim:0x03:keep refused (exit {code:?}): {err}")
        }
        Ok((child, addr)) => {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"hello\x03").unwrap();
            let mut got = [0u8; 6];
            let r = s.read_exact(&mut got);
            let _ = terminate(child);
            r.unwrap();
            assert_eq!(&got, b"hello\x03");
        }
    }
}

/// docs/liveness.md: "Under `eof` no heartbeat can be a frame (a message ends only at the
/// close): pings there are refused; use `--heartbeat off`" — `serve` now refuses them at
/// start (exit 2). `send` does not: `send --mode short --framing eof --heartbeat
/// interval=1s,timeout=500ms,misses=1 hello` starts, "probes" with an empty message (zero
/// bytes), waits for a heartbeat no server can send, marks the healthy endpoint down and
/// exits 1 with `request not sent: all endpoints failed: ...: probe heartbeat unanswered
/// within 500ms (service hung?)`. The same configuration check belongs on the client
/// (send.rs / `ClientBuilder`), as a usage error naming `--heartbeat`.
#[test]
fn send_refuses_heartbeats_under_eof_or_gets_its_reply() {
    let (server, addr) = serve(&["--framing", "eof", "--mode", "short"], &[])
        .unwrap_or_else(|e| panic!("serve refused: {e:?}"));
    let out = Command::new(BIN)
        .args([
            "send",
            "--to",
            &addr,
            "--framing",
            "eof",
            "--mode",
            "short",
            "--timeout",
            "5s",
            "--heartbeat",
            "interval=1s,timeout=500ms,misses=1",
            "hello",
        ])
        .output()
        .unwrap();
    let _ = terminate(server);
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(2) {
        assert!(err.contains("--heartbeat"), "{err}");
        return;
    }
    assert_eq!(
        (out.status.code(), stdout.trim()),
        (Some(0), "hello"),
        "send under eof with --heartbeat pings neither refused (exit 2) nor served; stderr: {err}"
    );
}

/// docs/liveness.md rule 1, "Every ping gets exactly one answer", and the detection bound
/// "a request that legitimately takes longer than `interval × misses + timeout` looks like
/// a dead service": this client's bound (400 ms × 10 + 100 ms) is far above its 1.4 s
/// request, and the server pings idle clients too. The client's three pings sent during the
/// slow request reach the server together; since PONG_GAP (liveness/mod.rs,
/// `on_frame_awaiting`) the server answers one and swallows two, so the client keeps
/// counting two pings outstanding and takes the server's next two pings for their pongs:
/// the server logs `closing connection ... reason="heartbeat_timeout"` about 500 ms after
/// the reply, on a live, idle connection (`send` then reconnects quietly).
#[test]
fn both_sides_pinging_across_a_slow_request_keep_the_connection() {
    let (server, addr) = serve(
        &[
            "--framing",
            "len:ascii:4",
            "--delay",
            "1400ms",
            "--heartbeat",
            "interval=200ms,timeout=100ms,misses=2",
        ],
        &[("RUST_LOG", "info")],
    )
    .unwrap_or_else(|e| panic!("serve refused: {e:?}"));
    let mut send = Command::new(BIN)
        .args([
            "send",
            "--to",
            &addr,
            "--framing",
            "len:ascii:4",
            "--heartbeat",
            "interval=400ms,timeout=100ms,misses=10",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = send.stdin.take().unwrap();
    writeln!(stdin, "slow").unwrap();
    // The reply comes after 1.4 s; then 2 s of idle link with both sides pinging.
    std::thread::sleep(Duration::from_millis(3400));
    writeln!(stdin, "next").unwrap();
    drop(stdin);
    let code = wait_bounded(&mut send, Duration::from_secs(20));
    let mut stdout = String::new();
    send.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let (_, serve_err) = terminate(server);
    assert_eq!(code, Some(0), "send failed; stdout {stdout:?}");
    assert_eq!(stdout, "slow\nnext\n");
    assert!(
        !serve_err.contains("heartbeat_timeout"),
        "the server closed a live client for unanswered heartbeats: {serve_err}"
    );
}
