//! What the HTTP tests share: whether a tool is installed (skip, or fail under
//! `KEEPWIRE_REQUIRE_TOOLS=1`), and raw HTTP exchanges over a std socket.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// Whether `tool` can be run (`tool ARGS` exits at all). When it cannot, prints
/// "skipped: <why>" and returns false, or panics under `KEEPWIRE_REQUIRE_TOOLS=1` (CI).
pub(crate) fn have(tool: &str, probe: &[&str]) -> bool {
    if Command::new(tool).args(probe).output().is_ok() {
        return true;
    }
    let why = format!("{tool} is not installed (scripts/install-test-deps.sh installs it)");
    if std::env::var("KEEPWIRE_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    false
}

/// A connected socket with 10 s timeouts both ways.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Writes `req` and reads until the server closes (bounded by the read timeout).
pub(crate) fn exchange_to_close(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the server closes within 10s");
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `cmd` and returns (success, stdout, stderr).
pub(crate) fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("running the tool");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
