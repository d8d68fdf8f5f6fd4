//! What the CLI tests share: the `keepwire` binary run with a bounded wait, and a
//! `keepwire serve` child on 127.0.0.1:0 that is killed and reaped on drop.
//!
//! Every wait here is bounded: a hung child fails the test instead of hanging it.

// Each test binary (and the `idle_rss` bench) uses only some of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The `keepwire` binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_keepwire");

/// How long any one run of the binary, or a serve's first line, may take before the test
/// fails instead of hanging.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(60);

/// `keepwire ARGS`, not yet spawned.
pub(crate) fn keepwire(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    cmd
}

/// Spawns `keepwire ARGS` with stdin, stdout and stderr piped.
pub(crate) fn spawn_piped(args: &[&str]) -> Child {
    keepwire(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning keepwire")
}

/// Runs `keepwire ARGS` with `stdin` as its input and collects its output, within
/// [`RUN_LIMIT`].
pub(crate) fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = spawn_piped(args);
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    // From a thread, so a child that writes a lot before reading cannot deadlock us. The
    // child may exit without reading everything (an error): ignore EPIPE.
    thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    wait_output(child)
}

/// Runs `keepwire ARGS` on `stdin` and checks the exit code, with the output in the panic
/// message if it differs.
#[track_caller]
pub(crate) fn run_expect(args: &[&str], stdin: &[u8], code: i32) -> Output {
    let out = run(args, stdin);
    assert_eq!(
        out.status.code(),
        Some(code),
        "keepwire {args:?}: stdout {:?}, stderr {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits for `child` at most [`RUN_LIMIT`], collecting its output.
pub(crate) fn wait_output(child: Child) -> Output {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(RUN_LIMIT)
        .expect("keepwire did not finish in time")
        .expect("waiting for keepwire")
}

/// Polls `child` every 5 ms until it exits; panics (after killing it) once `bound` has
/// passed, naming `what` was awaited.
pub(crate) fn wait_exit(child: &mut Child, bound: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(st) = child.try_wait().expect("polling the child") {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {bound:?} waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `cond` every 10 ms until it holds; panics after 10 s, naming `what`.
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The whole of `child`'s stderr, if it was piped and not taken yet.
pub(crate) fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// `out`'s stderr as text.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sends `keepwire` child `pid` the signal `sig` (`-TERM`, `-STOP`, `-CONT`).
pub(crate) fn signal(pid: u32, sig: &str) {
    // A child that has already exited makes `kill` fail; what the test sees next says so.
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("running kill");
}

/// A fresh path named after `name` (and this process) under cargo's per-target scratch
/// directory.
pub(crate) fn temp_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-tests");
    std::fs::create_dir_all(&dir).expect("creating the test scratch dir");
    dir.join(format!("{}-{name}", std::process::id()))
}

/// Writes `contents` to a fresh [`temp_path`] named after `name` and returns its path as
/// text, for a `--config` or FILE argument.
pub(crate) fn temp_file(name: &str, contents: &[u8]) -> String {
    let path = temp_path(name);
    std::fs::write(&path, contents).expect("writing the test file");
    path.to_str().expect("utf-8 temp path").to_string()
}

/// Connects to `addr` with a 10 s read timeout, so that a silent server fails the test
/// instead of hanging it.
pub(crate) fn connect(addr: impl ToSocketAddrs) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Connects to `addr`, writes `send` and reads exactly `want_len` bytes back.
pub(crate) fn roundtrip(addr: SocketAddr, send: &[u8], want_len: usize) -> Vec<u8> {
    let mut s = connect(addr).unwrap();
    s.write_all(send).unwrap();
    let mut got = vec![0u8; want_len];
    s.read_exact(&mut got).unwrap();
    got
}

/// `keepwire serve --listen 127.0.0.1:0 ARGS`, which must fail as a usage error (exit 2):
/// its stderr.
pub(crate) fn serve_usage_error(args: &[&str]) -> String {
    let mut a = vec!["serve", "--listen", "127.0.0.1:0"];
    a.extend_from_slice(args);
    stderr(&run_expect(&a, b"", 2))
}

/// `keepwire serve --listen 127.0.0.1:0 ARGS`, not yet spawned.
pub(crate) fn serve_command(args: &[&str]) -> Command {
    let mut cmd = keepwire(&["serve", "--listen", "127.0.0.1:0"]);
    cmd.args(args);
    cmd
}

/// A `serve` that did not print `listening on`: its exit code and stderr.
#[derive(Debug)]
pub(crate) struct Refused {
    /// The exit code (`None`: ended by a signal).
    pub(crate) code: Option<i32>,
    /// Everything it wrote to stderr.
    pub(crate) stderr: String,
}

/// A running `keepwire serve`, continued (if stopped), killed and reaped on drop, even when
/// the test fails.
pub(crate) struct Serve {
    /// The child; its stderr is piped and unread until a test takes it.
    pub(crate) child: Child,
    /// The address from its `listening on` line.
    pub(crate) addr: SocketAddr,
    /// `addr` as a `--to` or `--target` argument.
    pub(crate) to: String,
}

impl Serve {
    /// Starts `keepwire serve --listen 127.0.0.1:0 ARGS`; panics if it refuses to start.
    pub(crate) fn start(args: &[&str]) -> Serve {
        Serve::spawn(serve_command(args))
    }

    /// Starts `cmd` (a `keepwire serve`, possibly behind a shell); panics if it refuses to
    /// start.
    pub(crate) fn spawn(cmd: Command) -> Serve {
        Serve::try_spawn(cmd)
            .unwrap_or_else(|r| panic!("serve refused to start (exit {:?}): {}", r.code, r.stderr))
    }

    /// Starts `cmd` and reads its first line within [`RUN_LIMIT`]: the serve and its
    /// address, or, when the line is not `listening on ADDR`, its exit code and stderr.
    pub(crate) fn try_spawn(mut cmd: Command) -> Result<Serve, Refused> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning keepwire serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let Ok(line) = rx.recv_timeout(RUN_LIMIT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve printed nothing within {RUN_LIMIT:?}");
        };
        let Some(addr) = line.strip_prefix("listening on ") else {
            let status = wait_exit(
                &mut child,
                Duration::from_secs(10),
                "a refused serve to exit",
            );
            return Err(Refused {
                code: status.code(),
                stderr: stderr_of(&mut child),
            });
        };
        let to = addr.trim().to_string();
        let addr = to
            .parse()
            .unwrap_or_else(|e| panic!("first line is {line:?}: {e}"));
        Ok(Serve { child, addr, to })
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the child `sig` (`-STOP`, `-CONT`, `-TERM`).
    pub(crate) fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Sends SIGTERM and waits (bounded, 20 s) for the exit; returns (code, stderr).
    pub(crate) fn terminate(mut self) -> (Option<i32>, String) {
        self.signal("-TERM");
        let status = wait_exit(
            &mut self.child,
            Duration::from_secs(20),
            "serve to exit after SIGTERM",
        );
        (status.code(), stderr_of(&mut self.child))
    }

    /// Kills the child and returns its stderr.
    pub(crate) fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        stderr_of(&mut self.child)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // Reaped already (`terminate`, `kill`): its pid may be another process's by now.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // A child a test stopped (SIGSTOP) is continued, then killed.
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
