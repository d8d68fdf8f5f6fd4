//! Hostile review of `keepwire watch`: absurd flags, a closed pipe, many sockets on the
//! port, IPv6 and v4-mapped addresses. Each test is named after what it tried.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{keepwire, run_expect, wait_exit};

fn stderr_of(args: &[&str], code: i32) -> String {
    String::from_utf8(run_expect(args, b"", code).stderr).unwrap()
}

/// Port 0 is the remote port of every listener: `--port 0` listed every listener on the
/// machine and exited 0. It is a usage error now.
#[test]
fn port_zero_is_a_usage_error_not_every_listener() {
    for extra in [
        &["--once"][..],
        &["--once", "--sockets"],
        &["--once", "--json"],
    ] {
        let mut args = vec!["watch", "--port", "0"];
        args.extend_from_slice(extra);
        let err = stderr_of(&args, 2);
        assert!(err.contains("--port 0"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    for bad in ["70000", "abc", "-1"] {
        stderr_of(&["watch", "--port", bad, "--once"], 2);
    }
}

/// `--interval 1ns` redrew in a busy loop, as fast as /proc could be read. Below the
/// kernel's 10 ms resolution it is refused; 10ms itself is accepted.
#[test]
fn an_interval_below_the_kernels_resolution_is_refused() {
    for bad in ["0", "0s", "1ns", "9ms"] {
        let err = stderr_of(&["watch", "--port", "80", "--interval", bad], 2);
        assert!(err.contains("--interval"), "{bad}: {err}");
    }
    run_expect(
        &["watch", "--port", "80", "--interval", "10ms", "--once"],
        b"",
        0,
    );
}

/// Redrawn output into a pipe whose reader went away (`| head -1`): exit 0, no panic, and
/// at once rather than at the next interval.
#[test]
fn a_closed_pipe_ends_the_watch_quietly() {
    for sockets in [false, true] {
        let mut args = vec!["watch", "--port", "80", "--json", "--interval", "10ms"];
        if sockets {
            args.push("--sockets");
        }
        let mut child = keepwire(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line
        let st = wait_exit(
            &mut child,
            Duration::from_secs(10),
            "watch into a closed pipe",
        );
        assert_eq!(st.code(), Some(0), "{st:?}");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A dual-stack listener seen through /proc/net/tcp6: its IPv4 clients appear as
/// v4-mapped addresses on the server side, IPv6 ones as themselves.
#[test]
fn ipv6_and_v4_mapped_sockets_are_listed() {
    let Ok(l) = TcpListener::bind("[::]:0") else {
        println!("skipped: no IPv6 here");
        return;
    };
    let port = l.local_addr().unwrap().port();
    let c4 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_s4, _) = l.accept().unwrap();
    let out = run_expect(
        &[
            "watch",
            "--port",
            &port.to_string(),
            "--sockets",
            "--json",
            "--once",
        ],
        b"",
        0,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().unwrap();
    let client = c4.local_addr().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["local"] == mapped.to_string().as_str()
                && r["remote"] == format!("[::ffff:127.0.0.1]:{}", client.port()).as_str()
                && r["state"] == "ESTABLISHED"),
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|r| r["local"] == client.to_string().as_str() && r["state"] == "ESTABLISHED"),
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|r| r["local"] == format!("[::]:{port}").as_str() && r["state"] == "LISTEN"),
        "{text}"
    );
}

/// Thousands of sockets on the port: 2 000 TIME_WAIT sockets (bounded by count; about a
/// second to make) all listed, one refresh well under the bound below.
#[test]
fn thousands_of_time_wait_sockets_are_all_listed() {
    const N: usize = 2000;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    for _ in 0..N {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        drop(c); // the client closes first: its socket goes to TIME_WAIT
        drop(s);
    }
    let t0 = Instant::now();
    let out = run_expect(
        &["watch", "--port", &port.to_string(), "--sockets", "--once"],
        b"",
        0,
    );
    let took = t0.elapsed();
    let text = String::from_utf8(out.stdout).unwrap();
    let tw = text.lines().filter(|l| l.contains("TIME_WAIT")).count();
    // A few may still be in FIN_WAIT2 for a moment; none may be lost.
    let rows = text.lines().count() - 1;
    assert!(rows > N, "{rows} rows for {N} connections and a listener");
    assert!(tw >= N * 9 / 10, "{tw} TIME_WAIT rows of {N}");
    // Generous: a debug build on a loaded 2-core machine; this catches quadratic work.
    assert!(took < Duration::from_secs(20), "one refresh took {took:?}");
    println!("{N} TIME_WAIT sockets: one --sockets refresh in {took:?}");
}
