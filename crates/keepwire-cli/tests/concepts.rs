//! Runs every command block of `docs/concepts/*.md` and checks that what the commands print
//! today has the shape the page shows: every word of the page's output that carries no digit
//! (column names, row labels, states, messages) must appear in the real output. Numbers may
//! differ; a renamed column, a missing row or a changed message fails.
//!
//! A runnable block is fenced as ```` ```console ```` (or ```` ```console root ```` when it
//! needs root and `ip netns`: skipped with a printed reason otherwise, unless
//! `KEEPWIRE_REQUIRE_TOOLS=1`). In it, a line starting `$ ` is a command; the lines up to
//! the next command are what it printed (stdout and stderr), a line `...` standing for
//! lines left out. A block's commands run one after another in one bash session (job
//! control on, so `%1` names the first background job), with the `keepwire` under test
//! first on `PATH`. A command ending in `&` runs in the background until the block ends;
//! when it has `--listen ADDR`, the next command waits until ADDR accepts. Each command
//! gets at most [`COMMAND_LIMIT`]; the block's jobs are killed when it ends.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use keepwire::tcpstate::TcpState;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "faults/netns.rs"]
mod netns;

const COMMAND_LIMIT: Duration = Duration::from_secs(60);

struct Step {
    command: String,
    expected: Vec<String>,
}

struct Block {
    page: String,
    line: usize,
    root: bool,
    steps: Vec<Step>,
}

fn blocks(page: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(page).unwrap();
    let mut out = Vec::new();
    let mut cur: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut cur, line.trim_end()) {
            (None, l) if l.starts_with("```console") => {
                cur = Some(Block {
                    page: page.file_name().unwrap().to_string_lossy().into(),
                    line: i + 1,
                    root: l.split_whitespace().nth(1) == Some("root"),
                    steps: Vec::new(),
                })
            }
            (Some(_), "```") => out.extend(cur.take()),
            (Some(b), l) => match l.strip_prefix("$ ") {
                Some(cmd) => b.steps.push(Step {
                    command: cmd.to_string(),
                    expected: Vec::new(),
                }),
                None => b
                    .steps
                    .last_mut()
                    .unwrap_or_else(|| panic!("{}:{}: output before a command", b.page, i + 1))
                    .expected
                    .push(l.to_string()),
            },
            (None, _) => {}
        }
    }
    assert!(
        cur.is_none(),
        "{}: a console block is not closed",
        page.display()
    );
    out
}

/// The words of `lines` that carry no digit: the shape of the output.
fn shape(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l.trim() != "...")
        .flat_map(|l| l.split_whitespace())
        .map(|w| w.trim_matches(|c: char| ",;:()[]{}\"'".contains(c)))
        .filter(|w| w.len() >= 2 && !w.chars().any(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

/// One bash session for a block, its stdout and stderr read by a thread, line by line.
struct Session {
    bash: Child,
    /// `None` once [`abandon`](Session::abandon)ed.
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Session {
    /// What a killed test does to the session: its end of bash's stdin closes, and no
    /// `kill` is written.
    fn abandon(&mut self) {
        self.stdin = None;
    }

    fn start() -> Session {
        let bin = Path::new(env!("CARGO_BIN_EXE_keepwire"))
            .parent()
            .unwrap()
            .to_path_buf();
        let old = std::env::var_os("PATH").unwrap_or_default();
        let path =
            std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&old))).unwrap();
        let mut bash = Command::new("bash")
            .args(["--norc", "--noprofile", "-s"])
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = bash.stdin.take().unwrap();
        // The EXIT trap kills the block's jobs also when this test is killed: bash then
        // reads EOF and exits, and without it a `serve ... &` (in its own process group
        // under `set -m`) outlived the run, holding the page's fixed port.
        writeln!(
            stdin,
            "exec 2>&1; set -m; trap 'kill -KILL $(jobs -p) 2>/dev/null' EXIT"
        )
        .unwrap();
        let out = BufReader::new(bash.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Session {
            bash,
            stdin: Some(stdin),
            lines,
        }
    }

    /// Runs `cmd` and returns what it printed (and anything the background jobs printed
    /// meanwhile).
    fn run(&mut self, cmd: &str, at: &str) -> String {
        self.run_status(cmd, at).0
    }

    /// [`run`](Self::run), and the command's exit status.
    fn run_status(&mut self, cmd: &str, at: &str) -> (String, String) {
        let end = "__keepwire_concepts_end__";
        let stdin = self.stdin.as_mut().expect("a live session");
        writeln!(stdin, "{cmd}\necho {end} $?").unwrap();
        let deadline = Instant::now() + COMMAND_LIMIT;
        let mut got = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(end) => {
                    return (got, l.trim_start_matches(end).trim().to_string());
                }
                Ok(l) => {
                    got.push_str(&l);
                    got.push('\n');
                }
                Err(_) => panic!("{at}: `{cmd}` ran over {COMMAND_LIMIT:?}; so far:\n{got}"),
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Stopped jobs die of SIGKILL too.
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "kill -KILL $(jobs -p) 2>/dev/null; wait; exit");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.bash.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.bash.kill();
        let _ = self.bash.wait();
    }
}

fn listen_addr(cmd: &str) -> Option<SocketAddr> {
    let mut words = cmd.split_whitespace();
    words.find(|w| *w == "--listen")?;
    words.next()?.parse().ok()
}

/// Waits until something listens on `addr`, reading the kernel's table rather than
/// connecting (a probe connection would leave a `TIME_WAIT` socket in the page's output).
fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let listening = || {
        keepwire::tcpstate::port_sockets_now(addr.port())
            .unwrap_or_default()
            .iter()
            .any(|s| s.entry.local == addr && s.entry.state == TcpState::Listen)
    };
    while !listening() {
        assert!(
            Instant::now() < deadline,
            "{what}: nothing listens on {addr}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Fails, saying what to do, when a port the block's servers will listen on is taken: a
/// `serve` that cannot bind would leave the block talking to whatever holds the port.
fn ports_free(b: &Block) {
    for addr in b.steps.iter().filter_map(|s| listen_addr(&s.command)) {
        let held = keepwire::tcpstate::port_sockets_now(addr.port())
            .unwrap_or_default()
            .into_iter()
            .any(|s| s.entry.local.port() == addr.port() && s.entry.state == TcpState::Listen);
        assert!(
            !held,
            "{}:{}: port {} is already taken by a listener (a server left by an earlier \
             run?); stop it (`ss -ltnp 'sport = :{}'`) and rerun",
            b.page,
            b.line,
            addr.port(),
            addr.port()
        );
    }
}

/// Serialises runs of this test across processes (two worktrees' `cargo test` at once):
/// the pages use fixed ports and names. The lock is a listener on [`LOCK_PORT`], which the
/// kernel releases whenever the process ends, killed or not.
fn lock() -> std::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", LOCK_PORT)) {
            Ok(l) => return l,
            Err(e) => assert!(
                Instant::now() < deadline,
                "127.0.0.1:{LOCK_PORT}, this test's lock, still held after 300 s: {e}"
            ),
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Not a port any page uses.
const LOCK_PORT: u16 = 7100;

fn run_block(b: &Block) {
    ports_free(b);
    let mut session = Session::start();
    for (n, step) in b.steps.iter().enumerate() {
        let at = format!("{}:{} command {}", b.page, b.line, n + 1);
        let (mut got, status) = session.run_status(&step.command, &at);
        // A command the page shows as silent must also succeed: `ip netns add kwc` failing
        // with "File exists" (left by a killed run) used to pass unnoticed.
        assert!(
            !step.expected.is_empty() || step.command.ends_with('&') || status == "0",
            "{at}: `{}` exited {status}; it printed:\n{got}",
            step.command
        );
        if step.command.ends_with('&') {
            if let Some(addr) = listen_addr(&step.command) {
                wait_listening(addr, &at);
                // What the job printed on starting belongs to it.
                got.push_str(&session.run("true", &at));
            }
        }
        let have = shape(&got.lines().map(str::to_string).collect::<Vec<_>>());
        let missing: Vec<_> = shape(&step.expected).difference(&have).cloned().collect();
        assert!(
            missing.is_empty(),
            "{at}: `{}` no longer prints {missing:?}; it printed:\n{got}",
            step.command
        );
    }
}

fn pages() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/concepts");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_concept_page_still_prints_what_it_shows() {
    let _lock = lock();
    let all: Vec<Block> = pages().iter().flat_map(|p| blocks(p)).collect();
    assert!(all.len() >= 4, "expected command blocks in docs/concepts");
    let root_ok = !all.iter().any(|b| b.root) || netns::tools_ready();
    for b in &all {
        if b.root && !root_ok {
            println!("skipped {}:{} (needs root)", b.page, b.line);
            continue;
        }
        run_block(b);
    }
}

#[test]
fn the_shape_check_can_fail() {
    let page = shape(&[
        "mode    requests/s   p50".to_string(),
        "short   1234   0.1ms".to_string(),
    ]);
    let renamed = shape(&[
        "mode    rps   p50".to_string(),
        "short   99   0.2ms".to_string(),
    ]);
    assert!(page.contains("requests/s") && page.contains("short"));
    assert!(!page.contains("1234"), "numbers are not part of the shape");
    assert_eq!(
        page.difference(&renamed).cloned().collect::<Vec<_>>(),
        ["requests/s"]
    );
}

/// A test killed mid-block (SIGKILL, a CI timeout) closes bash's stdin and nothing else:
/// the block's background `serve` must die with the session all the same.
#[test]
fn a_killed_run_leaves_no_server_behind() {
    let mut session = Session::start();
    let pid = session
        .run(
            "keepwire serve --listen 127.0.0.1:0 --framing line >/dev/null & echo $!",
            "kill",
        )
        .trim()
        .to_string();
    assert!(
        pid.chars().all(|c| c.is_ascii_digit()) && !pid.is_empty(),
        "{pid}"
    );
    let proc_dir = format!("/proc/{pid}");
    assert!(Path::new(&proc_dir).exists(), "serve did not start");
    session.abandon();
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = || {
        std::fs::read_to_string(format!("{proc_dir}/stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true)
    };
    while !gone() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let alive = !gone();
    if alive {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    }
    drop(session);
    assert!(!alive, "the block's serve (pid {pid}) outlived its session");
}
