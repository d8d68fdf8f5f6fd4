//! The pieces of `scripts/compare-servers.sh` (docs/performance.md): the C epoll echo
//! (bench/peers/c_echo.c) and the tokio-util example echo every frame the way `keepwire
//! serve --reply echo` does, and the script runs end to end and prints a table with a row per
//! server and case.
//!
//! Needs `cc` (and `bash`, `taskset` is optional): without it each test prints "skipped: ..."
//! and returns, unless `KEEPWIRE_REQUIRE_TOOLS=1` (CI), where it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_keepwire");

/// `true` when `tool` runs; otherwise prints "skipped: ..." and returns `false`, or panics
/// when `KEEPWIRE_REQUIRE_TOOLS=1`.
fn tool_or_skip(tool: &str, probe: &[&str]) -> bool {
    let found = Command::new(tool)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    let why = format!("{tool} not found (scripts/install-test-deps.sh installs it)");
    if std::env::var_os("KEEPWIRE_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("KEEPWIRE_REQUIRE_TOOLS=1 and {why}");
    }
    eprintln!("skipped: {why}");
    false
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh directory under the system's temp dir for this test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keepwire-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch dir");
    dir
}

/// Compiles bench/peers/c_echo.c as the script does.
fn build_c_echo(dir: &Path) -> PathBuf {
    let out = dir.join("c_echo");
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(repo_root().join("bench/peers/c_echo.c"))
        .arg("-lpthread")
        .status()
        .expect("running cc");
    assert!(status.success(), "cc failed on bench/peers/c_echo.c");
    out
}

/// The tokio example beside the binary under test (`cargo test --workspace` builds it);
/// built here when a narrower `cargo test` did not.
fn tokio_echo() -> PathBuf {
    let path = Path::new(BIN)
        .parent()
        .expect("the binary has a directory")
        .join("examples/tokio_echo");
    if !path.exists() {
        let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["build", "-q", "-p", "keepwire", "--example", "tokio_echo"])
            .current_dir(repo_root())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build --example tokio_echo failed");
    }
    path
}

/// A server child killed and reaped on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(cmd: &mut Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning a server");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the server's first line in time");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line {line:?} is not 'listening on ADDR'"))
            .to_owned();
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("test bodies fit a u32");
    let mut f = len.to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The exchanges every peer must pass: empty to 1 MiB bodies, a frame written in 1..7-byte
/// pieces, 200 frames in one write, a truncated frame that does not stop the server.
fn conformance(addr: &str) {
    let connect = || {
        let s = TcpStream::connect(addr).expect("connecting to the peer");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        s
    };
    let mut s = connect();
    for (i, len) in [0usize, 1, 64, 4096, 65_536, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let f = frame(&body(len, i as u8));
        s.write_all(&f).expect("writing a frame");
        let mut back = vec![0; f.len()];
        s.read_exact(&mut back).expect("reading the echo");
        assert!(back == f, "{len}-byte body not echoed unchanged by {addr}");
    }
    let f = frame(&body(300, 7));
    for piece in f.chunks(5) {
        s.write_all(piece).expect("writing a piece");
        s.flush().expect("flushing");
    }
    let mut back = vec![0; f.len()];
    s.read_exact(&mut back)
        .expect("reading the echo of a split frame");
    assert_eq!(back, f, "split frame");
    let batch: Vec<u8> = (0..200u8).flat_map(|i| frame(&body(40, i))).collect();
    s.write_all(&batch).expect("writing 200 frames");
    let mut back = vec![0; batch.len()];
    s.read_exact(&mut back).expect("reading 200 echoes");
    assert_eq!(back, batch, "200 frames in one write");
    // A truncated frame then close; the next connection is still served.
    let mut cut = connect();
    cut.write_all(&frame(&body(100, 1))[..50])
        .expect("writing half a frame");
    drop(cut);
    let mut s = connect();
    let f = frame(b"still here");
    s.write_all(&f).expect("writing after a truncated peer");
    let mut back = vec![0; f.len()];
    s.read_exact(&mut back)
        .expect("reading after a truncated peer");
    assert_eq!(back, f);
}

#[test]
fn c_echo_and_tokio_example_echo_every_frame() {
    if !tool_or_skip("cc", &["--version"]) {
        return;
    }
    let dir = scratch("peers");
    let c = build_c_echo(&dir);
    let c_server = Server::start(Command::new(&c).args(["-listen", "127.0.0.1:0"]));
    conformance(&c_server.addr);
    let tokio_server = Server::start(Command::new(tokio_echo()).args(["--listen", "127.0.0.1:0"]));
    conformance(&tokio_server.addr);
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits for `child` at most `limit`; kills it and fails past that.
fn wait_bounded(mut child: Child, limit: Duration) -> (bool, String, String) {
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the script") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
            panic!("compare-servers.sh still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out.join().expect("stdout reader");
    let err = err.join().expect("stderr reader");
    (status.success(), out, err)
}

#[test]
fn compare_script_prints_a_row_per_server_and_case() {
    if !tool_or_skip("cc", &["--version"]) || !tool_or_skip("bash", &["--version"]) {
        return;
    }
    let dir = scratch("compare");
    let tokio = tokio_echo();
    let extra = format!("tokio2={} --listen 127.0.0.1:0", tokio.display());
    let child = Command::new("bash")
        .arg(repo_root().join("scripts/compare-servers.sh"))
        .args(["--no-build", "--servers", "c,keepwire", "--keepwire", BIN])
        .args(["--server", &extra, "--work"])
        .arg(&dir)
        .args(["--duration", "500ms", "--warmup", "0"])
        .args(["--cases", "long:64:4,short:64:2", "--runs", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running scripts/compare-servers.sh");
    let (ok, out, err) = wait_bounded(child, Duration::from_secs(120));
    assert!(ok, "script failed:\n{out}\n{err}");
    check_rows(&out);
    let _ = std::fs::remove_dir_all(dir);
}

/// Two runs' tables, each with a row per server and case that measured something (its user
/// and kernel CPU adding up to the whole), then the ratio table in which c is 1.00 against
/// itself.
fn check_rows(out: &str) {
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 12 && ["long", "short"].contains(&f[1]))
        .collect();
    assert_eq!(rows.len(), 2 * 3 * 2, "12 rows expected in:\n{out}");
    for f in &rows {
        let rps: f64 = f[4].parse().expect("req/s is a number");
        let errors: u64 = f[6].parse().expect("errors is a number");
        let us: f64 = f[8].parse().expect("srvus/req is a number");
        assert!(rps > 0.0 && errors == 0, "row {f:?} in:\n{out}");
        assert!(
            us > 0.0 && us < 100_000.0,
            "server CPU per request {us} in:\n{out}"
        );
        let usr: f64 = f[9].parse().expect("usr_us is a number");
        let sys: f64 = f[10].parse().expect("sys_us is a number");
        // Each printed with two decimals: their sum is within rounding of the whole.
        assert!(
            usr >= 0.0 && sys >= 0.0 && (usr + sys - us).abs() <= 0.011,
            "usr {usr} + sys {sys} is not srvus/req {us} in:\n{out}"
        );
    }
    let ratio_rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 7 && ["long", "short"].contains(&f[1]))
        .collect();
    assert_eq!(ratio_rows.len(), 3 * 2, "ratio rows in:\n{out}");
    for f in ratio_rows.iter().filter(|f| f[0] == "c") {
        assert_eq!(&f[4..], ["1.00", "1.00", "1.00"], "c against itself: {f:?}");
    }
}
