//! Hostile review of `keepwire serve --config FILE.toml`: each test here failed on the code
//! it was written against. Refusals are checked on the real binary: exit 2, one line on
//! stderr naming what is wrong and where.

mod common;
use common::{run, stderr, temp_file};

/// `serve --config FILE` with `toml` as the file refuses to start with exit 2 and one
/// line; the line is returned.
fn refused(name: &str, toml: &str) -> String {
    let cfg = temp_file(name, toml.as_bytes());
    let out = run(
        &[
            "serve",
            "--config",
            &cfg,
            "--listen",
            "127.0.0.1:0",
            "--framing",
            "len:ascii:4",
        ],
        b"",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{toml:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{toml:?}: {err}");
    err
}

/// toml's errors say what is wrong with a value but not which key holds it: `invalid type:
/// integer `30`, expected a string` left the user to find the line. The key is named now.
#[test]
fn a_value_of_the_wrong_type_names_its_key() {
    for (toml, key) in [
        ("idle-timeout = 30\n", "idle-timeout"),
        ("max-conns = -1\n", "max-conns"),
        ("max-conns = 1.5\n", "max-conns"),
        ("max-conns = 18446744073709551616\n", "max-conns"),
        (
            "framing = \"line\"\nproxy-protocol = \"yes\"\n",
            "proxy-protocol",
        ),
    ] {
        let err = refused("wrong-type.toml", toml);
        assert!(err.contains(key), "{toml:?}: {err}");
    }
}

/// An error on a key at the start of a line was reported one line early (`lines()` of the
/// text before the key does not count the line the key starts), and a duplicate key was
/// not named.
#[test]
fn errors_at_the_start_of_a_line_give_that_line_and_key() {
    let err = refused("duplicate.toml", "max-conns = 1\nmax-conns = 2\n");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("max-conns"), "{err}");
    let err = refused("unknown.toml", "max-conns = 1\n\nnope = 3\n");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("nope"), "{err}");
}

/// `--config /dev/zero` (or any huge file) was read whole into memory before parsing:
/// the process grew until the allocator failed. A config file is read up to a cap.
#[test]
fn a_config_file_without_end_is_refused_without_reading_it_all() {
    let out = run(
        &["serve", "--config", "/dev/zero", "--listen", "127.0.0.1:0"],
        b"",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--config /dev/zero"), "{err}");
    assert!(err.contains("larger than"), "{err}");
}

/// `--reply file:/dev/zero` was read whole into memory, then checked against the framing:
/// a reply file is read only up to the largest frame the framing carries.
#[test]
fn a_reply_file_without_end_is_refused_without_reading_it_all() {
    let out = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--framing",
            "len:ascii:4",
            "--reply",
            "file:/dev/zero",
        ],
        b"",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--reply"), "{err}");
    assert!(err.contains("larger than"), "{err}");
}

/// `--listen garbage` and `metrics = "127.0.0.1:99999"` were runtime failures (exit 1)
/// that did not name the setting (`cannot listen on garbage: invalid socket address`): a
/// value that is not `HOST:PORT` is a usage error naming its key.
#[test]
fn an_address_that_is_not_host_and_port_is_a_usage_error() {
    for (toml, key) in [
        ("listen = \"garbage\"\n", "--listen"),
        ("listen = \"\"\n", "--listen"),
        ("listen = \"127.0.0.1:99999\"\n", "--listen"),
        ("metrics = \"garbage\"\n", "--metrics"),
        ("metrics = \"127.0.0.1:99999\"\n", "--metrics"),
    ] {
        let cfg = temp_file(
            "address.toml",
            format!("framing = \"line\"\n{toml}").as_bytes(),
        );
        let mut args = vec!["serve", "--config", &cfg];
        if key == "--metrics" {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        let out = run(&args, b"");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{toml:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{toml:?}: {err}");
        assert!(err.contains(key), "{toml:?}: {err}");
    }
}

/// Flags win over the file, but `proxy-protocol = true` or `close-first = true` in a file
/// could not be turned off from the command line: the switches only set. They now take
/// an optional value, `--proxy-protocol=false`.
#[test]
fn a_switch_turns_off_what_the_file_turns_on() {
    use std::io::{Read, Write};
    let cfg = temp_file(
        "switch.toml",
        b"framing = \"len:ascii:4\"\nproxy-protocol = true\nclose-first = true\n",
    );
    let s = common::Serve::spawn(common::keepwire(&[
        "serve",
        "--config",
        &cfg,
        "--listen",
        "127.0.0.1:0",
        "--proxy-protocol=false",
        "--close-first=false",
    ]));
    // Without a PROXY header: answered only if the flag won.
    let mut c = common::connect(s.addr).unwrap();
    c.write_all(b"0002hi").unwrap();
    let mut got = [0u8; 6];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"0002hi");
    // The bare switch still turns it on: `--proxy-from` needs it.
    let _on = common::Serve::start(&[
        "--framing",
        "line",
        "--proxy-protocol",
        "--proxy-from",
        "127.0.0.1",
    ]);
}

/// `metrics = "ADDR"` in a file could not be undone by a flag: `--metrics off` now
/// serves no metrics.
#[test]
fn metrics_off_on_the_command_line_wins_over_the_file() {
    let cfg = temp_file(
        "metrics.toml",
        b"framing = \"line\"\nmetrics = \"127.0.0.1:0\"\n",
    );
    let mut s = common::Serve::spawn(common::keepwire(&[
        "serve",
        "--config",
        &cfg,
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "off",
    ]));
    // `metrics on ...` is printed before `listening on`, so it would be there by now.
    common::signal(s.child.id(), "-TERM");
    let err = common::stderr_of(&mut s.child);
    assert!(!err.contains("metrics on"), "{err}");
}
