//! `keepwire serve --framing http` against real HTTP clients (ab, wrk, curl, Python's
//! http.client) and raw sockets; `keepwire send --framing http` and `bench --framing http`
//! against it. Tools come from scripts/install-test-deps.sh; a missing one skips its test,
//! or fails it under KEEPWIRE_REQUIRE_TOOLS=1.

mod common;
mod http_common;

use std::io::{Read, Write};
use std::process::Command;

use common::{Serve, run_expect};
use http_common::{connect, exchange_to_close, have, output};

fn web(extra: &[&str]) -> Serve {
    let mut args = vec!["--framing", "http", "--reply", "text:hello"];
    args.extend_from_slice(extra);
    Serve::start(&args)
}

/// A number from an `ab` report line such as `Keep-Alive requests:    200`.
fn ab_field(report: &str, name: &str) -> Option<u64> {
    let line = report.lines().find(|l| l.starts_with(name))?;
    line.split_once(':')?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn ab_keepalive_reports_every_request_as_keep_alive() {
    if !have("ab", &["-V"]) {
        return;
    }
    let s = web(&[]);
    let url = format!("http://{}/", s.to);
    let (ok, out, err) =
        output(Command::new("ab").args(["-k", "-n", "300", "-c", "4", "-s", "10", &url]));
    assert!(ok, "ab failed: {err}\n{out}");
    assert_eq!(ab_field(&out, "Complete requests"), Some(300), "{out}");
    assert_eq!(ab_field(&out, "Failed requests"), Some(0), "{out}");
    assert_eq!(ab_field(&out, "Keep-Alive requests"), Some(300), "{out}");
}

#[test]
fn ab_without_keepalive_gets_a_close_after_each_request() {
    if !have("ab", &["-V"]) {
        return;
    }
    let s = web(&[]);
    let url = format!("http://{}/", s.to);
    // -v 2 prints every response head.
    let ab = ["-v", "2", "-n", "100", "-c", "2", "-s", "10", &url];
    let (ok, out, err) = output(Command::new("ab").args(ab));
    assert!(ok, "ab failed: {err}\n{out}");
    assert_eq!(ab_field(&out, "Complete requests"), Some(100), "{out}");
    assert_eq!(ab_field(&out, "Failed requests"), Some(0), "{out}");
    let kept = ab_field(&out, "Keep-Alive requests");
    assert!(matches!(kept, None | Some(0)), "{out}");
    // ab asked HTTP/1.0 without keep-alive; each response says the server closes.
    assert_eq!(out.matches("Connection: close").count(), 100, "{out}");
}

#[test]
fn wrk_keeps_http11_connections_without_socket_errors() {
    if !have("wrk", &["--version"]) {
        return;
    }
    let s = web(&[]);
    let url = format!("http://{}/", s.to);
    let (_, out, err) = output(Command::new("wrk").args(["-t", "1", "-c", "8", "-d", "1s", &url]));
    assert!(out.contains("requests in"), "wrk ran: {out}{err}");
    assert!(!out.contains("Socket errors"), "{out}");
    assert!(!out.contains("Non-2xx"), "{out}");
    let requests: u64 = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 8, "{out}");
}

fn curl_two(url: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-v", "--max-time", "10", "--http1.0"])
        .args(extra)
        .args([url, url]);
    let (ok, out, err) = output(&mut cmd);
    assert!(ok, "curl failed: {err}");
    assert_eq!(out, "hellohello");
    err
}

#[test]
fn curl_http10_reuses_the_connection_only_when_it_asks_for_keep_alive() {
    if !have("curl", &["--version"]) {
        return;
    }
    let s = web(&[]);
    let url = format!("http://{}/", s.to);
    let kept = curl_two(&url, &["-H", "Connection: keep-alive"]);
    assert!(kept.contains("< Connection: keep-alive"), "{kept}");
    assert!(
        kept.to_lowercase().contains("re-using existing connection"),
        "{kept}"
    );
    let closed = curl_two(&url, &[]);
    assert!(closed.contains("< Connection: close"), "{closed}");
    assert!(
        !closed
            .to_lowercase()
            .contains("re-using existing connection"),
        "{closed}"
    );
}

const PIPELINE_PY: &str = r#"
import http.client, sys
host, port = sys.argv[1], int(sys.argv[2])
c = http.client.HTTPConnection(host, port, timeout=10)
c.connect()
# Both requests written before any response is read (RFC 9112 section 9.3.2).
c.sock.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
f = c.sock.makefile("rb")
class Shared:
    def makefile(self, *a, **k):
        return Keep()
class Keep:
    def __getattr__(self, n):
        return getattr(f, n)
    def close(self):
        pass
for _ in range(2):
    r = http.client.HTTPResponse(Shared())
    r.begin()
    print(r.status, r.getheader("Connection"), r.read().decode())
"#;

#[test]
fn python_http_client_reads_pipelined_responses_in_order() {
    if !have("python3", &["--version"]) {
        return;
    }
    let s = Serve::start(&["--framing", "http"]);
    let (ip, port) = (s.addr.ip().to_string(), s.addr.port().to_string());
    let (ok, out, err) = output(Command::new("python3").args(["-c", PIPELINE_PY, &ip, &port]));
    assert!(ok, "python failed: {err}");
    assert_eq!(out, "200 None \n200 None abc\n");
}

#[test]
fn http10_without_connection_header_closes() {
    let s = web(&[]);
    let resp = exchange_to_close(s.addr, b"GET / HTTP/1.0\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("Connection: close\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nhello"), "{resp}");
}

#[test]
fn connection_close_from_the_client_is_honoured() {
    let s = web(&[]);
    let resp = exchange_to_close(
        s.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 1, "{resp}");
    assert!(resp.contains("Connection: close\r\n"), "{resp}");
}

#[test]
fn keepalive_requests_closes_after_the_last_allowed_request() {
    let s = web(&[
        "--keepalive-requests",
        "2",
        "--idle-timeout",
        "7s",
        "--keepalive-header",
    ]);
    let two = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let resp = exchange_to_close(s.addr, two);
    assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 2, "{resp}");
    assert!(resp.contains("Keep-Alive: timeout=7, max=1\r\n"), "{resp}");
    assert!(resp.ends_with("Connection: close\r\n\r\nhello"), "{resp}");
}

#[test]
fn bad_requests_get_400_431_413_then_the_close() {
    let s = Serve::start(&["--framing", "http:max=10:max_head=1024"]);
    let cases: &[(&[u8], &str)] = &[
        (
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
        (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "HTTP/1.1 400 "),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world",
            "HTTP/1.1 413 ",
        ),
    ];
    for (req, want) in cases {
        let resp = exchange_to_close(s.addr, req);
        assert!(
            resp.starts_with(want),
            "{:?}: {resp}",
            String::from_utf8_lossy(req)
        );
        assert!(resp.contains("Connection: close\r\n"), "{resp}");
    }
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 2000));
    big.extend_from_slice(b"\r\n\r\n");
    assert!(exchange_to_close(s.addr, &big).starts_with("HTTP/1.1 431 "));
    // Earlier responses on the same connection are written before the error's.
    let mut both = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
    both.extend_from_slice(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
    let resp = exchange_to_close(s.addr, &both);
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(resp.contains("HTTP/1.1 400 Bad Request"), "{resp}");
}

#[test]
fn send_prints_status_line_and_body_and_raw_sends_as_written() {
    let s = Serve::start(&["--framing", "http", "--content-type", "application/x-test"]);
    let out = run_expect(
        &[
            "send",
            "--to",
            &s.to,
            "--framing",
            "http",
            "GET /",
            "GET /x Connection: close",
        ],
        b"",
        0,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HTTP/1.1 200 OK\n\nHTTP/1.1 200 OK\n\n"
    );
    let raw = r"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi";
    let out = run_expect(
        &["send", "--to", &s.to, "--framing", "http", "--raw", raw],
        b"",
        0,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HTTP/1.1 200 OK\nhi\n"
    );
    let out = run_expect(&["send", "--to", &s.to, "--framing", "http", "GET"], b"", 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("METHOD PATH"));
}

#[test]
fn serve_http_flags_need_http_framing() {
    let out = run_expect(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--framing",
            "line",
            "--content-type",
            "x/y",
        ],
        b"",
        2,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--content-type needs --framing http"));
}

#[test]
fn drain_answers_the_request_in_flight_with_connection_close() {
    let s = web(&["--shutdown-grace", "5s"]);
    let mut c = connect(s.addr);
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    s.signal("-TERM");
    // The drain has begun once the port refuses new connections.
    common::wait_until("the listener to close", || {
        std::net::TcpStream::connect(s.addr).is_err()
    });
    c.write_all(b"\r\n").unwrap();
    let mut resp = Vec::new();
    c.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(resp.contains("Connection: close\r\n"), "{resp}");
}

#[test]
fn bench_http_measures_a_web_server_in_every_mode() {
    let s = web(&[]);
    let out = run_expect(
        &[
            "bench",
            "--framing",
            "http",
            "--target",
            &s.to,
            "--duration",
            "300ms",
            "--connections",
            "4",
            "--json",
        ],
        b"",
        0,
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let modes = json.as_array().unwrap();
    assert_eq!(modes.len(), 4);
    for m in modes {
        assert!(m["requests"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(m["errors"].as_u64(), Some(0), "{m}");
    }
    let short = &modes[0];
    let long = &modes[1];
    assert_eq!(short["mode"], "short");
    assert_eq!(
        short["connections_opened"], short["requests"],
        "one connection per request"
    );
    assert_eq!(long["connections_opened"].as_u64(), Some(4), "{long}");
    // Connection: close makes the server close first: its side holds the TIME_WAIT.
    assert!(short["time_wait_server"].as_u64().unwrap() > 0, "{short}");
}
