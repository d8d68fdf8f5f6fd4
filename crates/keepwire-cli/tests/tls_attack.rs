//! Hostile review of the TLS and SOCKS5 flags (issue 15): absurd values are usage errors
//! (exit 2) on one line naming the flag and the cause, before any connection is tried.

mod common;
mod tls_common;

use common::{run_expect, stderr};
use tls_common::PkiFiles;

/// Runs `args`, expects exit 2 and one stderr line holding every piece of `want`.
fn usage(args: &[&str], want: &[&str]) {
    let out = run_expect(args, b"", 2);
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: {err:?} lacks {w:?}");
    }
}

#[test]
fn socks5_address_garbage_is_a_usage_error() {
    for bad in ["garbage", "::::", "host:0", "host:99999", ":1080"] {
        usage(
            &[
                "send",
                "--framing",
                "line",
                "--to",
                "127.0.0.1:1",
                "--socks5",
                bad,
                "hi",
            ],
            &["--socks5", bad, "HOST:PORT"],
        );
    }
    usage(
        &[
            "send",
            "--framing",
            "line",
            "--to",
            "127.0.0.1:1",
            "--socks5",
            "127.0.0.1:1",
            "--socks5-auth",
            "nocolon",
            "hi",
        ],
        &["--socks5-auth", "USER:PASS"],
    );
}

#[test]
fn server_key_that_does_not_match_the_cert_is_named() {
    let pki = PkiFiles::new("attack-mismatch");
    let (cert, key) = (pki.path("server.crt"), pki.path("client.key"));
    usage(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--framing",
            "line",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        &["--tls-key", "does not match"],
    );
}

#[test]
fn tls_files_that_are_not_pem_are_named() {
    let pki = PkiFiles::new("attack-files");
    let key = pki.path("server.key");
    let dir = std::env::temp_dir();
    let dir = dir.to_str().unwrap();
    for (cert, why) in [
        ("/nonexistent/x.crt", "/nonexistent/x.crt"),
        (dir, dir),
        ("/dev/zero", "not a PEM file"),
    ] {
        usage(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--framing",
                "line",
                "--tls-cert",
                cert,
                "--tls-key",
                &key,
            ],
            &["--tls-cert", why],
        );
    }
    usage(
        &[
            "send",
            "--framing",
            "line",
            "--to",
            "127.0.0.1:1",
            "--tls",
            "--tls-ca",
            "/dev/zero",
            "x",
        ],
        &["--tls", "/dev/zero"],
    );
}
