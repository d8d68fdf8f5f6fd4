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
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Session {
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
        writeln!(stdin, "exec 2>&1; set -m").unwrap();
        let out = BufReader::new(bash.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Session { bash, stdin, lines }
    }

    /// Runs `cmd` and returns what it printed (and anything the background jobs printed
    /// meanwhile).
    fn run(&mut self, cmd: &str, at: &str) -> String {
        let end = "__keepwire_concepts_end__";
        writeln!(self.stdin, "{cmd}\necho {end}").unwrap();
        let deadline = Instant::now() + COMMAND_LIMIT;
        let mut got = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == end => return got,
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
        let _ = writeln!(self.stdin, "kill -KILL $(jobs -p) 2>/dev/null; wait; exit");
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

fn run_block(b: &Block) {
    let mut session = Session::start();
    for (n, step) in b.steps.iter().enumerate() {
        let at = format!("{}:{} command {}", b.page, b.line, n + 1);
        let mut got = session.run(&step.command, &at);
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
