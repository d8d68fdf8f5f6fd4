//! A far host in a network namespace, joined to this one by a veth pair, and the faults
//! the suite puts on the link between them. Everything it creates (the namespace, the veth
//! pair, the iptables rules inside the namespace, the processes started there) is removed
//! when the [`Link`] is dropped, also while a failing test unwinds.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether the suite can run here: root, `ip netns`, iptables and python3. Prints
/// `skipped: <why>` and returns false when not, or panics with the reason when
/// `KEEPWIRE_REQUIRE_TOOLS=1` (CI) says a missing tool is a failure.
pub(crate) fn tools_ready() -> bool {
    let why = if !is_root() {
        Some("not root (network namespaces and iptables need CAP_NET_ADMIN)".to_string())
    } else if !runs("ip", &["netns", "list"]) {
        Some("`ip netns` is not available (install iproute2)".into())
    } else if !runs("iptables", &["-V"]) {
        Some("iptables is missing (scripts/install-test-deps.sh installs it)".into())
    } else if !runs("python3", &["-c", "pass"]) {
        Some("python3 is missing (scripts/install-test-deps.sh installs it)".into())
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if std::env::var("KEEPWIRE_REQUIRE_TOOLS").as_deref() == Ok("1") => {
            panic!("KEEPWIRE_REQUIRE_TOOLS=1 but {why}")
        }
        Some(why) => {
            println!("skipped: {why}");
            false
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn runs(prog: &str, args: &[&str]) -> bool {
    Command::new(prog)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command that must succeed; panics with its stderr.
pub(crate) fn must(prog: &str, args: &[&str]) -> Output {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{prog} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

static NEXT: AtomicU32 = AtomicU32::new(0);
static SWEPT: std::sync::Once = std::sync::Once::new();

/// Removes what an earlier run killed before its guards ran (SIGKILL, a timeout) left:
/// namespaces `kwf<pid>-<n>` whose process is gone, and their near veths `kwn<pid>x<n>`.
fn sweep_stale() {
    let alive = |pid: &str| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let out = Command::new("ip").args(["netns", "list"]).output();
    let list = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some((pid, _)) = name.strip_prefix("kwf").and_then(|r| r.split_once('-')) else {
            continue;
        };
        if pid.chars().all(|c| c.is_ascii_digit()) && !alive(pid) {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
    let out = Command::new("ip")
        .args(["-o", "link", "show", "type", "veth"])
        .output();
    let links = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for l in links.lines() {
        // "12: kwn4242x0@if11: <...>"
        let Some(name) = l.split_whitespace().nth(1) else {
            continue;
        };
        let name = name
            .trim_end_matches(':')
            .split('@')
            .next()
            .unwrap_or_default();
        let Some((pid, _)) = name.strip_prefix("kwn").and_then(|r| r.split_once('x')) else {
            continue;
        };
        // The name holds pid % 100000: only a live process with that suffix could own it.
        let owned = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.chars().all(|c| c.is_ascii_digit())
                    && n.parse::<u32>()
                        .is_ok_and(|p| (p % 100_000).to_string() == pid)
            });
        if !owned {
            let _ = Command::new("ip").args(["link", "del", name]).status();
        }
    }
}

/// A namespace `kwf<pid>-<n>` with address `far`, reached from this namespace's `near`
/// over a veth pair; a /30 of 198.18.0.0/15 (RFC 2544 benchmarking space) per link, picked
/// from the process id and a counter so parallel test binaries do not collide.
pub(crate) struct Link {
    /// The namespace's name.
    pub(crate) ns: String,
    near_if: String,
    far_if: String,
    /// This side's address.
    pub(crate) near: Ipv4Addr,
    /// The far host's address.
    pub(crate) far: Ipv4Addr,
    children: Mutex<Vec<Child>>,
}

impl Link {
    /// Creates the namespace and the link, both up.
    pub(crate) fn new() -> Link {
        SWEPT.call_once(sweep_stale);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let slot = ((pid % 400) * 80 + n) % 32768;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + slot * 4;
        let link = Link {
            ns: format!("kwf{pid}-{n}"),
            near_if: format!("kwn{}x{n}", pid % 100_000),
            far_if: format!("kwf{}x{n}", pid % 100_000),
            near: Ipv4Addr::from(base + 1),
            far: Ipv4Addr::from(base + 2),
            children: Mutex::new(Vec::new()),
        };
        // From here on Drop removes whatever was made, also if a step below panics.
        let (ns, near_if, far_if) = (&link.ns, &link.near_if, &link.far_if);
        must("ip", &["netns", "add", ns]);
        must(
            "ip",
            &[
                "link", "add", near_if, "type", "veth", "peer", "name", far_if, "netns", ns,
            ],
        );
        must(
            "ip",
            &["addr", "add", &format!("{}/30", link.near), "dev", near_if],
        );
        must("ip", &["link", "set", near_if, "up"]);
        must(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/30", link.far),
                "dev",
                far_if,
            ],
        );
        must("ip", &["-n", ns, "link", "set", far_if, "up"]);
        must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        link
    }

    /// `ip netns exec NS PROG ARGS`, not yet spawned (`ip` execs PROG in place, so the
    /// child's pid is PROG's).
    pub(crate) fn command(&self, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, prog]).args(args);
        c
    }

    /// Spawns `cmd` (stdin/stdout piped, stderr dropped) and keeps it to be killed on drop;
    /// returns its pid and its stdin/stdout.
    pub(crate) fn spawn(
        &self,
        mut cmd: Command,
    ) -> (u32, std::process::ChildStdin, std::process::ChildStdout) {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning in the namespace");
        let pid = child.id();
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        self.children.lock().unwrap().push(child);
        (pid, stdin, stdout)
    }

    /// Runs a command in the namespace that must succeed.
    pub(crate) fn run(&self, prog: &str, args: &[&str]) {
        let mut full = vec!["netns", "exec", &self.ns, prog];
        full.extend_from_slice(args);
        must("ip", &full);
    }

    /// Cable pulled: the far end of the veth goes down, so the near end loses carrier and
    /// every segment either way is dropped without a word.
    pub(crate) fn pull_cable(&self) {
        must("ip", &["-n", &self.ns, "link", "set", &self.far_if, "down"]);
    }

    /// The far host goes silent: iptables drops everything in and out.
    pub(crate) fn blackhole(&self) {
        self.run("iptables", &["-A", "INPUT", "-j", "DROP"]);
        self.run("iptables", &["-A", "OUTPUT", "-j", "DROP"]);
    }

    /// Drops what the far host sends (its FIN or RST while it "crashes").
    pub(crate) fn mute(&self) {
        self.run("iptables", &["-A", "OUTPUT", "-j", "DROP"]);
    }

    /// Undoes [`mute`](Self::mute) and [`blackhole`](Self::blackhole).
    pub(crate) fn unmute(&self) {
        self.run("iptables", &["-F", "OUTPUT"]);
        self.run("iptables", &["-F", "INPUT"]);
    }
}

/// Sends `sig` (`STOP`, `CONT`, `KILL`, `USR1`) to `pid`.
pub(crate) fn signal(pid: u32, sig: &str) {
    must("kill", &[&format!("-{sig}"), &pid.to_string()]);
}

impl Drop for Link {
    fn drop(&mut self) {
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for mut c in children {
            // A stopped process dies of SIGKILL too; wait so no zombie is left.
            let _ = c.kill();
            let _ = c.wait();
        }
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        // Deleting one end deletes the pair; deleting the namespace drops its iptables rules.
        quiet(&["link", "del", &self.near_if]);
        quiet(&["netns", "del", &self.ns]);
    }
}
