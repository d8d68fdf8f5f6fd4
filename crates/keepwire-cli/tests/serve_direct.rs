//! `keepwire serve --engine direct` as a user runs it: the settings it serves, the ones it
//! refuses with a message naming the flag, signals, and the engine beside the default one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod common;
use common::{Serve, connect, roundtrip, serve_command, serve_usage_error, temp_file};

/// A short-mode direct server (with `extra` flags) and a client that sent it `req`.
fn short_exchange(extra: &[&str], req: &[u8]) -> (Serve, TcpStream) {
    let mut args = vec![
        "--framing",
        "len:be:2",
        "--mode",
        "short",
        "--engine",
        "direct",
    ];
    args.extend_from_slice(extra);
    let s = Serve::start(&args);
    let mut c = connect(s.addr).unwrap();
    c.write_all(req).unwrap();
    (s, c)
}

#[test]
fn echoes_fixed_replies_and_drains_on_sigterm() {
    let s = Serve::start(&["--framing", "len:ascii:4", "--engine", "direct"]);
    assert_eq!(roundtrip(s.addr, b"0005hello", 9), b"0005hello");
    // The ISO 8583 keep-alive is answered by the connection, not echoed as data.
    assert_eq!(roundtrip(s.addr, b"0000", 4), b"0000");
    // Requests pipelined in one write are answered in order.
    let mut c = connect(s.addr).unwrap();
    c.write_all(b"0001a0002bb0003ccc").unwrap();
    let mut got = [0u8; 18];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"0001a0002bb0003ccc");
    let (code, err) = s.terminate();
    assert_eq!(code, Some(0), "stderr: {err}");
    assert!(err.contains("shut down"), "{err}");

    let s = Serve::start(&[
        "--framing",
        "line",
        "--reply",
        "hex:414243",
        "--engine",
        "direct",
    ]);
    assert_eq!(roundtrip(s.addr, b"hi\n", 4), b"ABC\n");
}

#[test]
fn short_mode_answers_once_and_waits_for_the_clients_fin() {
    // A second request in the same write is dropped: short means one exchange.
    let (_s, mut c) = short_exchange(&[], b"\x00\x02hi\x00\x02yo");
    let mut got = [0u8; 4];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"\x00\x02hi");
    // The server does not close first: nothing more, and no EOF, within 300 ms.
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut one = [0u8; 1];
    let r = c.read(&mut one);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "{r:?}"
    );
    // With --close-first it does.
    let (_s, mut c) = short_exchange(&["--close-first"], b"\x00\x02hi");
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"\x00\x02hi");
}

#[test]
fn an_idle_connection_is_closed_at_the_idle_timeout() {
    let s = Serve::start(&[
        "--framing",
        "len:be:2",
        "--idle-timeout",
        "300ms",
        "--engine",
        "direct",
    ]);
    let mut c = connect(s.addr).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(c.read(&mut buf).unwrap(), 0, "EOF at the idle timeout");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn settings_it_does_not_implement_are_refused_naming_the_flag() {
    for (args, flag) in [
        (&["--framing", "http"][..], "framing"),
        (
            &["--framing", "line", "--proxy-protocol"][..],
            "proxy-protocol",
        ),
        (&["--framing", "line", "--delay", "1s"][..], "delay"),
    ] {
        let mut a = vec!["--engine", "direct"];
        a.extend_from_slice(args);
        let err = serve_usage_error(&a);
        assert!(
            err.contains(&format!("--{flag}")) && err.contains("direct engine"),
            "{args:?}: {err}"
        );
    }
    let err = serve_usage_error(&["--framing", "line", "--engine", "uring"]);
    assert!(
        err.contains("--engine") && err.contains("expected tokio or direct"),
        "{err}"
    );
    let err = serve_usage_error(&["--protocol", "smpp", "--engine", "direct"]);
    assert!(err.contains("--protocol"), "{err}");
    // A value that is no engine is named as such, with --protocol too.
    let err = serve_usage_error(&["--protocol", "smpp", "--engine", "uring"]);
    assert!(
        err.contains("--engine") && err.contains("expected tokio or direct"),
        "{err}"
    );
}

#[test]
fn the_engine_can_come_from_the_config_file() {
    let file = temp_file(
        "direct.toml",
        b"framing = \"len:be:2\"\nengine = \"direct\"\n",
    );
    let s = Serve::spawn({
        let mut c = serve_command(&["--config", &file]);
        c.env("RUST_LOG", "off");
        c
    });
    assert_eq!(roundtrip(s.addr, b"\x00\x01x", 3), b"\x00\x01x");
    // A flag wins over the file: --engine tokio with --delay is accepted.
    let s = Serve::start(&["--config", &file, "--engine", "tokio", "--delay", "10ms"]);
    assert_eq!(roundtrip(s.addr, b"\x00\x01y", 3), b"\x00\x01y");
}
