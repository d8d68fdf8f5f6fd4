//! `keepwire serve --protocol` against the real client libraries from PyPI, as
//! `scripts/install-test-deps.sh` installs them: `smpplib` (SMPP 3.4) binds as transceiver,
//! submits, gets its delivery receipt, answers the simulator's enquire_link and unbinds;
//! `cmppy` (CMPP 3.0, short links) connects, submits and terminates.
//!
//! Without python3 or the package the test prints `skipped: <why>` and passes, unless
//! `KEEPWIRE_REQUIRE_TOOLS=1` (CI), where it fails.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Serve, wait_output};

/// Whether `python3` can import `module`; prints why not and returns false (or panics under
/// `KEEPWIRE_REQUIRE_TOOLS=1`).
fn have_python_module(module: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    let why =
        format!("python3 cannot import {module}; run scripts/install-test-deps.sh to install it");
    if std::env::var("KEEPWIRE_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{why} (KEEPWIRE_REQUIRE_TOOLS=1)");
    }
    eprintln!("skipped: {why}");
    false
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// Runs an interop script against `serve` (bounded by the common run limit); its stdout.
fn run_script(name: &str, serve: &Serve, account: [&str; 2]) -> String {
    let child = Command::new("python3")
        .arg(script(name))
        .args([&serve.addr.ip().to_string(), &serve.addr.port().to_string()])
        .args(account)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning python3");
    let out = wait_output(child);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed ({:?}): stdout {stdout}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn smpplib_binds_submits_gets_a_receipt_answers_enquire_link_and_unbinds() {
    if !have_python_module("smpplib") {
        return;
    }
    let accounts = common::temp_file("smpp-accounts", b"# who may bind\nsmppclient:secret\n");
    let serve = Serve::start(&[
        "--protocol",
        "smpp",
        "--receipts",
        "--accounts",
        &accounts,
        "--heartbeat",
        "interval=300ms,timeout=2s,misses=3",
    ]);
    let out = run_script("smpplib_session.py", &serve, ["smppclient", "secret"]);
    assert!(out.contains("bind_transceiver_resp status=0"), "{out}");
    assert!(out.contains("submit_sm_resp status=0 message_id="), "{out}");
    assert!(out.contains("deliver_sm esm_class=4"), "{out}");
    assert!(out.contains("stat:DELIVRD"), "{out}");
    assert!(out.contains("enquire_link seq="), "{out}");
    assert!(out.contains("unbind_resp status=0"), "{out}");
    let (code, stderr) = serve.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn cmppy_short_link_connects_submits_and_terminates() {
    if !have_python_module("cmppy") {
        return;
    }
    let accounts = common::temp_file("cmpp-accounts", b"901234:secret\n");
    let serve = Serve::start(&["--protocol", "cmpp3", "--accounts", &accounts]);
    let out = run_script("cmppy_short.py", &serve, ["901234", "secret"]);
    assert!(out.contains("submit_resp command_id=0x80000004"), "{out}");
    assert!(out.lines().any(|l| l == "ok"), "{out}");
    // A second client with a wrong secret is refused at CONNECT.
    let child = Command::new("python3")
        .arg(script("cmppy_short.py"))
        .args([&serve.addr.ip().to_string(), &serve.addr.port().to_string()])
        .args(["901234", "wrong"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning python3");
    let out = wait_output(child);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("login refused"));
}
