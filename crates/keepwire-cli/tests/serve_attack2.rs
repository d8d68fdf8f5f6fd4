//! Second hostile review of `keepwire serve` / `send`, against the fixes of "server: fixes
//! from the hostile review" and "liveness: answer same-bytes heartbeats at most every
//! 50 ms": each test here failed on the code it was written against. Child processes on
//! 127.0.0.1:0, bounded waits.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

mod common;
use common::{Serve, connect, keepwire, run, serve_command, wait_exit};

/// `keepwire serve ARGS` on 127.0.0.1:0 with `envs` set: the serve, or its exit code and
/// stderr when it refused to start.
fn serve(args: &[&str], envs: &[(&str, &str)]) -> Result<Serve, common::Refused> {
    let mut cmd = serve_command(args);
    cmd.envs(envs.iter().copied());
    Serve::try_spawn(cmd)
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
        Err(refused) => {
            panic!(
                "serve --framing delim:0x03:keep refused (exit {:?}): {}",
                refused.code, refused.stderr
            )
        }
        Ok(server) => {
            let mut s = connect(server.addr).unwrap();
            s.write_all(b"hello\x03").unwrap();
            let mut got = [0u8; 6];
            let r = s.read_exact(&mut got);
            let _ = server.terminate();
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
    let server = serve(&["--framing", "eof", "--mode", "short"], &[])
        .unwrap_or_else(|e| panic!("serve refused: {e:?}"));
    let out = run(
        &[
            "send",
            "--to",
            &server.to,
            "--framing",
            "eof",
            "--mode",
            "short",
            "--timeout",
            "5s",
            "--heartbeat",
            "interval=1s,timeout=500ms,misses=1",
            "hello",
        ],
        b"",
    );
    let _ = server.terminate();
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
    let server = serve(
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
    let mut send = keepwire(&[
        "send",
        "--to",
        &server.to,
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
    let code = wait_exit(&mut send, Duration::from_secs(20), "send to exit").code();
    let mut stdout = String::new();
    send.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let (_, serve_err) = server.terminate();
    assert_eq!(code, Some(0), "send failed; stdout {stdout:?}");
    assert_eq!(stdout, "slow\nnext\n");
    assert!(
        !serve_err.contains("heartbeat_timeout"),
        "the server closed a live client for unanswered heartbeats: {serve_err}"
    );
}
