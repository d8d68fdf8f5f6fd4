//! Hostile review of `keepwire serve`: each test here failed on the code it was written
//! against. A child process on 127.0.0.1:0, bounded waits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod common;
use common::{Serve, connect, run, serve_command, temp_file};

/// Either `serve` refuses `args` with exit 2 and a line naming `flag`, or it starts and
/// answers a request. What it must not do is start and then drop every connection.
fn refused_or_served(args: &[&str], flag: &str) {
    refused_or(args, flag, |addr| {
        let mut s = connect(addr).map_err(|e| format!("connect: {e}"))?;
        s.write_all(b"0005hello")
            .map_err(|e| format!("write: {e}"))?;
        let mut got = [0u8; 9];
        s.read_exact(&mut got).map_err(|e| format!("read: {e}"))?;
        if &got != b"0005hello" {
            return Err(format!("reply {got:?}"));
        }
        Ok(())
    });
}

/// Either `serve ARGS` (framed `len:ascii:4` unless ARGS say otherwise) exits 2 with one line naming `flag`, or it
/// starts and `served(addr)` succeeds.
fn refused_or(args: &[&str], flag: &str, served: impl FnOnce(&str) -> Result<(), String>) {
    let mut cmd = serve_command(args);
    if !args.contains(&"--framing") {
        cmd.args(["--framing", "len:ascii:4"]);
    }
    let s = match Serve::try_spawn(cmd) {
        Ok(s) => s,
        // Refused at start: must be a usage error naming the flag.
        Err(refused) => {
            let err = refused.stderr;
            assert_eq!(refused.code, Some(2), "serve {args:?}: {err}");
            assert!(err.contains(flag), "serve {args:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "serve {args:?}: {err}");
            return;
        }
    };
    let result = served(&s.to);
    let err = s.kill();
    assert_eq!(
        result,
        Ok(()),
        "serve {args:?} started and failed the check; stderr: {err}"
    );
}

/// Linux caps TCP_KEEPIDLE and TCP_KEEPINTVL at 32767 s (MAX_TCP_KEEPIDLE/KEEPINTVL) and
/// answers EINVAL above. `--tcp-keepalive` accepts up to 365d, so `10h,5s,3` starts fine,
/// then `SocketOptions::apply` fails on every accepted socket and `Conn::serve` drops the
/// connection (`End::Io`, logged at debug only): a server that accepts and resets
/// everything. Checked at parse time in `Keepalive::from_str` (socket.rs), or clamped.
#[test]
fn tcp_keepalive_time_over_the_kernel_limit_is_not_a_silent_outage() {
    refused_or_served(&["--tcp-keepalive", "10h,5s,3"], "--tcp-keepalive");
}

#[test]
fn tcp_keepalive_interval_over_the_kernel_limit_is_not_a_silent_outage() {
    refused_or_served(&["--tcp-keepalive", "30s,10h,3"], "--tcp-keepalive");
}

/// TCP_USER_TIMEOUT is an `int` of milliseconds: above 2^31-1 ms (24.8 days) the kernel
/// answers EINVAL (socket2 clamps at u32::MAX, which the kernel reads as negative). The
/// flag accepts up to 365d, so `--tcp-user-timeout 30d` starts and then drops every
/// connection, as above.
#[test]
fn tcp_user_timeout_over_the_kernel_limit_is_not_a_silent_outage() {
    refused_or_served(&["--tcp-user-timeout", "30d"], "--tcp-user-timeout");
}

/// The same keys in a `--config` file.
#[test]
fn config_file_tcp_keepalive_over_the_kernel_limit_is_not_a_silent_outage() {
    let p = temp_file("serve.toml", b"tcp-keepalive = \"10h,5s,3\"\n");
    refused_or_served(&["--config", &p], "tcp-keepalive");
    let _ = std::fs::remove_file(&p);
}

/// docs/liveness.md: "Under fixed/eof, pinging needs payloads" (exit 2). Under `eof`, though,
/// `--heartbeat interval=..` is accepted: the CLI installs `EmptyHeartbeat`
/// (`HeartbeatSpec::heartbeat`) on a framing with no empty frame, and `validate` only checks
/// that the ping encodes, which an empty message under `eof` does (as nothing). The server
/// then "pings" with zero bytes that no client can answer and closes every connection whose
/// request takes longer than `interval x misses + timeout` to upload (`heartbeat_timeout`,
/// the client sees EPIPE/RST mid-request).
#[test]
fn eof_framing_with_pings_is_refused_or_harmless() {
    refused_or(
        &[
            "--framing",
            "eof",
            "--heartbeat",
            "interval=300ms,timeout=300ms,misses=1",
        ],
        "heartbeat",
        |addr| {
            let mut s = connect(addr).map_err(|e| format!("connect: {e}"))?;
            // A request uploaded over ~1.5 s, well past interval x misses + timeout.
            for chunk in [b"slo", b"w u", b"plo", b"ad!", b"..."] {
                s.write_all(chunk).map_err(|e| format!("write: {e}"))?;
                std::thread::sleep(Duration::from_millis(300));
            }
            s.shutdown(std::net::Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
            let mut got = Vec::new();
            s.read_to_end(&mut got).map_err(|e| format!("read: {e}"))?;
            if got != b"slow upload!..." {
                return Err(format!("reply {:?}", String::from_utf8_lossy(&got)));
            }
            Ok(())
        },
    );
}

/// A pong the framing cannot carry is as bad as a ping it cannot carry (which is refused:
/// `bad server config: the heartbeat ping cannot be sent under fixed:4: give ping=/pong=
/// payloads the framing can carry`). `validate` checks only the ping, and only when pinging
/// is on, so `--framing fixed:4 --heartbeat ping=text:PING,pong=text:PONGX` starts, and every
/// connection dies on the first PING it receives (counted as a handler error).
#[test]
fn unencodable_pong_is_refused_at_start() {
    refused_or(
        &[
            "--framing",
            "fixed:4",
            "--heartbeat",
            "ping=text:PING,pong=text:PONGX",
        ],
        "pong",
        |addr| {
            let mut s = connect(addr).map_err(|e| format!("connect: {e}"))?;
            s.write_all(b"PINGdata")
                .map_err(|e| format!("write: {e}"))?;
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            Err(format!(
                "started; a PING then data got {:?} and the connection closed",
                String::from_utf8_lossy(&got)
            ))
        },
    );
}

/// docs/limits.md, Graceful shutdown: on SIGTERM `serve` drains, prints its report and exits
/// 0. But the handlers are registered by `wait_for_signal` inside a task spawned *after*
/// `listening on` is printed (serve.rs, `serve`), so a SIGTERM sent as soon as the line
/// appears (what a supervisor or test harness does) often finds no handler and kills the
/// process outright: exit by signal, no drain, no report. About half of the tries on an
/// idle 2-core machine; 50 tries are allowed.
#[test]
fn sigterm_right_after_listening_drains_and_exits_0() {
    for i in 0..50 {
        // `start` returns as soon as the `listening on` line is read.
        let s = Serve::start(&["--framing", "len:ascii:4"]);
        let (code, err) = s.terminate();
        assert_eq!(
            code,
            Some(0),
            "try {i}: SIGTERM right after `listening on` ended serve with exit {code:?}, stderr {err:?}"
        );
        assert!(err.contains("shut down"), "try {i}: {err:?}");
    }
}

/// `--heartbeat interval=1ns,timeout=1ns` is accepted (`HeartbeatSpec` only refuses 0) and
/// silently clamped to 1 ms by `PingConfig::clamped`: the server then pings every idle
/// connection about a thousand times a second, forever with a large `misses`. Measured: 200
/// idle connections cost 0.6 of a core. An absurd interval should be refused (exit 2) like
/// 366d is, or at least not turn into a ping per millisecond.
#[test]
fn nanosecond_heartbeat_interval_is_refused_or_not_a_ping_storm() {
    refused_or(
        &["--heartbeat", "interval=1ns,timeout=1ns,misses=4294967295"],
        "--heartbeat",
        |addr| {
            let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let start = Instant::now();
            let mut bytes = 0usize;
            let mut buf = [0u8; 4096];
            while start.elapsed() < Duration::from_secs(1) {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => bytes += n,
                    Err(_) => {}
                }
            }
            let pings = bytes / 4;
            if pings > 100 {
                return Err(format!("{pings} pings in 1 s to one idle connection"));
            }
            Ok(())
        },
    );
}

/// A bad value is exit 2 with one line naming the flag. `--max-conns 0` is exit 2, but the
/// line names the library field instead: `keepwire: bad server config: max_conns must be at
/// least 1` (from `server::validate`, passed through unchanged by serve.rs). The flag a user
/// typed is `--max-conns`.
#[test]
fn max_conns_zero_names_the_flag() {
    let out = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--framing",
            "len:ascii:4",
            "--max-conns",
            "0",
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--max-conns"), "{err}");
}
