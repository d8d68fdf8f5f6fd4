//! What the CLI's TLS and SOCKS tests share: certificates written as PEM files, a child
//! process killed on drop, a free loopback port, and the rule for a missing tool.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout};
use std::sync::mpsc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// Whether a test may run: `ok`, or it prints "skipped: <why>" and returns false, unless
/// `KEEPWIRE_REQUIRE_TOOLS=1` (CI), where a missing tool or privilege fails the test.
pub(crate) fn require(ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("KEEPWIRE_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("KEEPWIRE_REQUIRE_TOOLS=1 but {why}");
    }
    eprintln!("skipped: {why}");
    false
}

/// Whether `tool` is on the PATH.
pub(crate) fn has_tool(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A child process killed and reaped on drop.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port on 127.0.0.1 free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls until `addr` accepts a TCP connection, at most 10 s.
pub(crate) fn wait_listening(addr: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} not listening after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of a child's stdout, read by a thread; `next_line` waits a bounded time.
pub(crate) struct Lines(mpsc::Receiver<String>);

impl Lines {
    pub(crate) fn new(out: ChildStdout) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// The next line within `wait`, `None` at EOF or timeout.
    pub(crate) fn next_line(&self, wait: Duration) -> Option<String> {
        self.0.recv_timeout(wait).ok()
    }
}

/// A server CA with a leaf for localhost and 127.0.0.1, a client CA with a leaf
/// `CN=atm-17`, and another CA nobody trusts: all as PEM files in a fresh directory.
pub(crate) struct PkiFiles {
    pub(crate) dir: PathBuf,
}

fn ca(cn: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    (p.self_signed(&key).unwrap(), key)
}

fn leaf(dir: &Path, name: &str, sans: &[&str], cn: &str, ca: &(rcgen::Certificate, KeyPair)) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.signed_by(&key, &ca.0, &ca.1).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

impl PkiFiles {
    pub(crate) fn new(tag: &str) -> PkiFiles {
        let dir = std::env::temp_dir().join(format!("keepwire-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let server_ca = ca("keepwire test server CA");
        let client_ca = ca("keepwire test client CA");
        let other_ca = ca("nobody trusts this CA");
        std::fs::write(dir.join("ca.crt"), server_ca.0.pem()).unwrap();
        std::fs::write(dir.join("client-ca.crt"), client_ca.0.pem()).unwrap();
        std::fs::write(dir.join("other-ca.crt"), other_ca.0.pem()).unwrap();
        leaf(
            &dir,
            "server",
            &["localhost", "127.0.0.1"],
            "localhost",
            &server_ca,
        );
        leaf(&dir, "client", &[], "atm-17", &client_ca);
        PkiFiles { dir }
    }

    /// The path of `name` (`ca.crt`, `server.key`, ...) as a string.
    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for PkiFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for `child` to exit, at most `bound`; kills it past that.
pub(crate) fn wait_child(child: &mut Child, bound: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + bound;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
