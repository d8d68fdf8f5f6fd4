//! `keepwire bench --json`, briefly, against the embedded server and a --target.

use serde_json::Value;

mod common;
use common::{Serve, run_expect, temp_path};

const KEYS: [&str; 10] = [
    "mode",
    "requests",
    "errors",
    "rps",
    "p50_us",
    "p99_us",
    "max_us",
    "connections_opened",
    "time_wait_client",
    "time_wait_server",
];

fn bench(args: &[&str]) -> Vec<Value> {
    let out = run_expect(&[&["bench"][..], args].concat(), b"", 0);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().clone()
}

fn get<'a>(rows: &'a [Value], mode: &str) -> &'a Value {
    rows.iter().find(|r| r["mode"] == mode).unwrap()
}

#[test]
fn json_has_the_contract_keys_and_relations() {
    let rows = bench(&["--duration", "300ms", "--connections", "4", "--json"]);
    let modes: Vec<&str> = rows.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["short", "long", "pool", "mux"]);
    for r in &rows {
        let obj = r.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "{r}");
        assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
        let (p50, p99, max) = (
            r["p50_us"].as_u64().unwrap(),
            r["p99_us"].as_u64().unwrap(),
            r["max_us"].as_u64().unwrap(),
        );
        assert!(p50 <= p99 && p99 <= max, "{r}");
        // The embedded server is local: both sides are visible.
        assert!(
            r["time_wait_client"].is_u64() && r["time_wait_server"].is_u64(),
            "{r}"
        );
    }
    let short = get(&rows, "short");
    let long = get(&rows, "long");
    // short opens a connection per request; long one per client.
    let sreq = short["requests"].as_u64().unwrap();
    assert!(
        short["connections_opened"].as_u64().unwrap() >= sreq,
        "{short}"
    );
    assert_eq!(long["connections_opened"].as_u64(), Some(4), "{long}");
    assert!(get(&rows, "pool")["connections_opened"].as_u64().unwrap() <= 4);
    assert_eq!(get(&rows, "mux")["connections_opened"].as_u64(), Some(2));
    // The client closes first in short mode: TIME_WAIT lands on the client, not the server.
    assert!(short["time_wait_client"].as_u64().unwrap() > 0, "{short}");
    // (Not an exact 0: another process's socket may share the server's port number.)
    let (twc, tws) = (
        short["time_wait_client"].as_u64().unwrap(),
        short["time_wait_server"].as_u64().unwrap(),
    );
    assert!(tws <= twc / 10, "{short}");
}

#[test]
fn target_mode_measures_any_echo_server() {
    // A `keepwire serve` child as the target: every mode must work against a plain echo.
    let serve = Serve::start(&["--framing", "len:ascii:4"]);
    let rows = bench(&[
        "--target",
        &serve.to,
        "--framing",
        "len:ascii:4",
        "--modes",
        "long,mux",
        "--duration",
        "300ms",
        "--size",
        "100",
        "--json",
    ]);
    drop(serve);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
    }
}

#[test]
fn table_and_chart() {
    let chart = temp_path("bench.svg");
    let out = run_expect(
        &[
            "bench",
            "--duration",
            "200ms",
            "--connections",
            "2",
            "--modes",
            "short,long",
            "--chart",
            chart.to_str().unwrap(),
        ],
        b"",
        0,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("req/s") && text.contains("tw_client"),
        "{text}"
    );
    assert!(
        text.contains("conclusion: long connections served"),
        "{text}"
    );
    assert!(text.contains("ephemeral ports"), "{text}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("requests/s") && svg.contains("p99"),
        "{svg}"
    );
    assert!(
        svg.contains(">\nshort\n<") || svg.contains("short"),
        "mode labels missing"
    );
}

#[test]
fn bad_usage_exits_two() {
    for args in [
        &["--modes", "fast"][..],
        &["--size", "4"],
        &["--duration", "x"],
        &["--framing", "len:be:9"],
    ] {
        run_expect(&[&["bench"][..], args].concat(), b"", 2);
    }
}

#[test]
fn help_ends_with_two_to_four_examples() {
    let out = run_expect(&["bench", "--help"], b"", 0);
    let help = String::from_utf8(out.stdout).unwrap();
    let examples = help
        .split_once("\nExamples:\n")
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("no examples in\n{help}"));
    let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!((2..=4).contains(&lines.len()), "{examples}");
    for line in lines {
        assert!(line.trim_start().starts_with("keepwire bench"), "{line}");
    }
}

#[test]
fn a_target_that_is_no_echo_server_exits_one() {
    // Accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = run_expect(
        &[
            "bench",
            "--target",
            &addr,
            "--modes",
            "long",
            "--duration",
            "200ms",
        ],
        b"",
        1,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("long: no request answered by") && err.contains("echo server"),
        "{err}"
    );
}
