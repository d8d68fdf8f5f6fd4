//! `keepwire serve --tls-*` as a user runs it: `openssl s_client` talks to it, mutual TLS
//! refuses a client without a certificate, unreadable files are usage errors, and TLS with
//! PROXY v2 behind HAProxy in TCP mode.

mod common;
mod tls_common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Serve, run_expect, stderr};
use tls_common::{Killed, Lines, PkiFiles, free_port, has_tool, require, wait_listening};

/// `openssl s_client` to `addr` with `extra` flags; writes `line`, returns the first line
/// it prints back (or `None` when the connection gave none within 10 s).
fn s_client(addr: &str, pki: &PkiFiles, extra: &[&str], line: &str) -> Option<String> {
    let mut child = Killed(
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                addr,
                "-quiet",
                "-verify_return_error",
            ])
            .args(["-CAfile", &pki.path("ca.crt"), "-servername", "localhost"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning openssl"),
    );
    let lines = Lines::new(child.0.stdout.take().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    let _ = writeln!(stdin, "{line}");
    let _ = stdin.flush();
    // stdin stays open (s_client -quiet would close on its EOF before the reply).
    let got = lines.next_line(Duration::from_secs(10));
    drop(stdin);
    got
}

#[test]
fn openssl_s_client_talks_to_serve_tls() {
    if !require(
        has_tool("openssl"),
        "openssl not installed (scripts/install-test-deps.sh)",
    ) {
        return;
    }
    let pki = PkiFiles::new("s-client");
    let serve = Serve::start(&[
        "--framing",
        "line",
        "--tls-cert",
        &pki.path("server.crt"),
        "--tls-key",
        &pki.path("server.key"),
    ]);
    let got = s_client(&serve.to, &pki, &[], "hello over tls");
    assert_eq!(got.as_deref(), Some("hello over tls"));
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    if !require(
        has_tool("openssl"),
        "openssl not installed (scripts/install-test-deps.sh)",
    ) {
        return;
    }
    let pki = PkiFiles::new("mutual");
    let serve = Serve::start(&[
        "--framing",
        "line",
        "--tls-cert",
        &pki.path("server.crt"),
        "--tls-key",
        &pki.path("server.key"),
        "--tls-client-ca",
        &pki.path("client-ca.crt"),
    ]);
    let with = [
        "-cert",
        &pki.path("client.crt"),
        "-key",
        &pki.path("client.key"),
    ];
    assert_eq!(
        s_client(&serve.to, &pki, &with, "id").as_deref(),
        Some("id")
    );
    assert_eq!(s_client(&serve.to, &pki, &[], "anonymous"), None);
}

#[test]
fn unreadable_tls_files_are_usage_errors_naming_them() {
    let out = run_expect(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--framing",
            "line",
            "--tls-cert",
            "/nonexistent/chain.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        b"",
        2,
    );
    assert!(
        stderr(&out).contains("/nonexistent/chain.pem"),
        "{}",
        stderr(&out)
    );
    // A certificate without its key is refused by the flag parser.
    run_expect(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--framing",
            "line",
            "--tls-cert",
            "x.pem",
        ],
        b"",
        2,
    );
    let pki = PkiFiles::new("bad-key");
    let out = run_expect(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--framing",
            "line",
            "--tls-cert",
            &pki.path("server.crt"),
            "--tls-key",
            &pki.path("ca.crt"),
        ],
        b"",
        2,
    );
    assert!(stderr(&out).contains("PRIVATE KEY"), "{}", stderr(&out));
}

#[test]
fn tls_with_proxy_v2_behind_haproxy() {
    if !require(
        has_tool("haproxy"),
        "haproxy not installed (scripts/install-test-deps.sh)",
    ) || !require(
        has_tool("openssl"),
        "openssl not installed (scripts/install-test-deps.sh)",
    ) {
        return;
    }
    let pki = PkiFiles::new("haproxy");
    let serve = Serve::start(&[
        "--framing",
        "line",
        "--proxy-protocol",
        "--tls-cert",
        &pki.path("server.crt"),
        "--tls-key",
        &pki.path("server.key"),
    ]);
    let front = format!("127.0.0.1:{}", free_port());
    let cfg = format!(
        "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  \
         timeout server 30s\nfrontend fe\n  bind {front}\n  default_backend be\nbackend be\n  \
         server s1 {} send-proxy-v2\n",
        serve.to
    );
    let cfg_path = pki.dir.join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let _haproxy = Killed(
        Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning haproxy"),
    );
    wait_listening(&front);
    // Through HAProxy: PROXY v2 header first, then the TLS handshake, then frames.
    assert_eq!(
        s_client(&front, &pki, &[], "via haproxy").as_deref(),
        Some("via haproxy")
    );
    // Straight to the server, without the header, TLS alone is refused.
    assert_eq!(s_client(&serve.to, &pki, &[], "direct"), None);
}

/// `keepwire send --tls ARGS MESSAGE` against `serve_to`, expecting exit `code`.
fn send(serve_to: &str, extra: &[&str], code: i32) -> std::process::Output {
    let mut args = vec![
        "send",
        "--to",
        serve_to,
        "--framing",
        "line",
        "--timeout",
        "5s",
        "--tls",
    ];
    args.extend_from_slice(extra);
    args.push("ping me");
    run_expect(&args, b"", code)
}

#[test]
fn send_over_tls_and_its_failures_in_words() {
    let pki = PkiFiles::new("send");
    let serve = Serve::start(&[
        "--framing",
        "line",
        "--tls-cert",
        &pki.path("server.crt"),
        "--tls-key",
        &pki.path("server.key"),
        "--tls-client-ca",
        &pki.path("client-ca.crt"),
    ]);
    let (ca, other) = (pki.path("ca.crt"), pki.path("other-ca.crt"));
    let (cert, key) = (pki.path("client.crt"), pki.path("client.key"));
    let id = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let ok = send(&serve.to, &[&["--tls-ca", &ca][..], &id].concat(), 0);
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "ping me");
    // Short connections too, each a handshake (resumed after the first).
    let ok = send(
        &serve.to,
        &[&["--tls-ca", &ca, "--mode", "short"][..], &id].concat(),
        0,
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "ping me");
    let bad = send(&serve.to, &[&["--tls-ca", &other][..], &id].concat(), 1);
    assert!(stderr(&bad).contains("unknown CA"), "{}", stderr(&bad));
    let bad = send(
        &serve.to,
        &[
            &["--tls-ca", &ca, "--tls-server-name", "bank.example"][..],
            &id,
        ]
        .concat(),
        1,
    );
    assert!(stderr(&bad).contains("name mismatch"), "{}", stderr(&bad));
    let bad = send(&serve.to, &["--tls-ca", &ca], 1);
    assert!(
        stderr(&bad).contains("no client certificate"),
        "{}",
        stderr(&bad)
    );
    let bad = send(&serve.to, &["--tls-ca", "/nonexistent/ca.pem"], 2);
    assert!(
        stderr(&bad).contains("/nonexistent/ca.pem"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn send_through_microsocks_on_loopback() {
    if !require(
        has_tool("microsocks"),
        "microsocks not installed (scripts/install-test-deps.sh)",
    ) {
        return;
    }
    let pki = PkiFiles::new("socks-lo");
    let serve = Serve::start(&[
        "--framing",
        "line",
        "--tls-cert",
        &pki.path("server.crt"),
        "--tls-key",
        &pki.path("server.key"),
    ]);
    let port = free_port().to_string();
    let _socks = Killed(
        Command::new("microsocks")
            .args(["-i", "127.0.0.1", "-p", &port, "-u", "kw", "-P", "s3cret"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let proxy = format!("127.0.0.1:{port}");
    wait_listening(&proxy);
    let ca = pki.path("ca.crt");
    let ok = send(
        &serve.to,
        &[
            "--tls-ca",
            &ca,
            "--socks5",
            &proxy,
            "--socks5-auth",
            "kw:s3cret",
        ],
        0,
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "ping me");
    let bad = send(
        &serve.to,
        &[
            "--tls-ca",
            &ca,
            "--socks5",
            &proxy,
            "--socks5-auth",
            "kw:wrong",
        ],
        1,
    );
    assert!(stderr(&bad).contains("socks5"), "{}", stderr(&bad));
}
