//! Hostile review of `--framing http` on the command line (issue 14): each test failed on
//! the code it was written against, or covers a scenario no other test did.

mod common;

use std::time::{Duration, Instant};

use common::{Serve, run_expect, stderr};

/// `send --raw` with a request cut short (no CRLF, no empty line, a body shorter than its
/// Content-Length): before, it was sent and the command waited out its timeout for an
/// answer that could not come (exit 1 after 10 s); now a usage error at once, nothing sent.
#[test]
fn send_raw_refuses_a_request_cut_short_at_once() {
    let s = Serve::start(&["--framing", "http", "--reply", "text:hello"]);
    for raw in [
        "GET / HTTP/1.1",
        r"GET / HTTP/1.1\r\nHost: a\r\n",
        r"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhi",
        r"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        r"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ] {
        let t = Instant::now();
        let out = run_expect(
            &[
                "send",
                "--to",
                &s.to,
                "--framing",
                "http",
                "--raw",
                "--timeout",
                "10s",
                raw,
            ],
            b"",
            2,
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{raw}: {:?}",
            t.elapsed()
        );
        let err = stderr(&out);
        assert!(err.contains("request 1:"), "{raw}: {err}");
    }
    let ok = run_expect(
        &[
            "send",
            "--to",
            &s.to,
            "--framing",
            "http",
            "--raw",
            r"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ],
        b"",
        0,
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("HTTP/1.1 200 OK\nhello"));
}
