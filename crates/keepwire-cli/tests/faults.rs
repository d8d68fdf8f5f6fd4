//! The failure list as a test suite: every way a link dies, put on a real link between this
//! network namespace and a far one the suite creates, and each detected by the server and by
//! a long client with TCP keepalive only, heartbeats only, both, and `TCP_USER_TIMEOUT` with a
//! request unacknowledged. Each detection is timed against its bound, and every request the
//! fault caught is checked to end with an error saying whether it may have been sent.
//!
//! Root and `ip netns` are needed; without them the suite prints why and skips (unless
//! `KEEPWIRE_REQUIRE_TOOLS=1`). Every case runs at once, each on its own namespace, so the
//! suite takes about as long as its slowest case (a wait of [`NEVER_WINDOW`]).
//!
//! `KEEPWIRE_FAULTS_TABLE=docs/faults.md cargo test -p keepwire-cli --test faults` also
//! writes the table of what was measured (a path relative to the workspace root).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keepwire::client::ClientError;
use keepwire::liveness::PingConfig;
use keepwire::socket::{Keepalive, SocketOptions};

#[path = "faults/netns.rs"]
mod netns;
use netns::{Link, signal};

const PEER_PY: &str = include_str!("faults/peer.py");
const BIN: &str = env!("CARGO_BIN_EXE_keepwire");
const FRAMING: &str = "len:ascii:4";

/// Keepalive 1s,1s,3: dead after `time + interval × probes` = 4 s of silence.
const KEEPALIVE: Keepalive = Keepalive {
    time: Duration::from_secs(1),
    interval: Duration::from_secs(1),
    probes: 3,
};
/// Heartbeats every 1 s of silence, 500 ms to answer, 2 misses: dead after
/// `interval × misses + timeout` = 2.5 s.
const HEARTBEAT: &str = "interval=1s,timeout=500ms,misses=2";
const PING: PingConfig = PingConfig {
    interval: Duration::from_secs(1),
    timeout: Duration::from_millis(500),
    misses: 2,
};
/// `TCP_USER_TIMEOUT`: data unacknowledged this long kills the connection.
const USER_TIMEOUT: Duration = Duration::from_secs(3);
/// Added to every bound: scheduling on a loaded 2-core CI machine, the kernel's timer
/// granularity, the 10 ms polling.
const SLACK: Duration = Duration::from_secs(3);
/// How long a case waits to confirm that a mechanism does not see a fault.
const NEVER_WINDOW: Duration = Duration::from_secs(8);
/// The timeout of a request caught in flight: longer than every bound and than
/// [`NEVER_WINDOW`], so that its own timeout (which drops the connection too) is never
/// taken for a detection.
const IN_FLIGHT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Cable,
    Silent,
    Reboot,
    Hung,
    HalfClosed,
    Backlog,
    Flood,
    Slowloris,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Cable,
        Scenario::Silent,
        Scenario::Reboot,
        Scenario::Hung,
        Scenario::HalfClosed,
    ];
    fn label(self) -> &'static str {
        match self {
            Scenario::Cable => "cable pulled (veth down)",
            Scenario::Silent => "far host silent (iptables DROP)",
            Scenario::Reboot => "peer rebooted (RST on next segment)",
            Scenario::Hung => "service hung, TCP alive (SIGSTOP)",
            Scenario::HalfClosed => "half-closed peer (FIN, then silence)",
            Scenario::Backlog => "accept backlog full",
            Scenario::Flood => "a flood from one IP (50 connections)",
            Scenario::Slowloris => "slowloris (a byte every 300 ms)",
        }
    }
    /// The far end runs as `keepwire` (SIGSTOP-able, FIN on kill) or as the python peer
    /// (RST-free crash, half-close on cue).
    fn python_peer(self) -> bool {
        matches!(self, Scenario::Reboot | Scenario::HalfClosed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mech {
    Keepalive,
    Heartbeat,
    Both,
    UserTimeout,
    ConnectTimeout,
    PerIpCap,
    FrameTimeout,
}

impl Mech {
    fn label(self) -> &'static str {
        match self {
            Mech::Keepalive => "keepalive 1s,1s,3",
            Mech::Heartbeat => "heartbeat 1s/500ms/2",
            Mech::Both => "keepalive + heartbeat",
            Mech::UserTimeout => "user timeout 3s, request unacked",
            Mech::ConnectTimeout => "connect timeout 1s",
            Mech::PerIpCap => "max conns per IP 5",
            Mech::FrameTimeout => "frame timeout 1s",
        }
    }
    fn keepalive(self) -> bool {
        matches!(self, Mech::Keepalive | Mech::Both)
    }
    fn heartbeat(self) -> bool {
        matches!(self, Mech::Heartbeat | Mech::Both)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// What a mechanism should do about a scenario: see it within a bound, or not at all.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Within(Duration, &'static str),
    Never(&'static str),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const FRAME_TIMEOUT: Duration = Duration::from_secs(1);
const KA_BOUND: Duration = Duration::from_secs(4);
const HB_BOUND: Duration = Duration::from_millis(2500);

fn expect(sc: Scenario, m: Mech) -> Expect {
    use Expect::{Never, Within};
    match (sc, m) {
        (Scenario::Backlog, _) => Within(CONNECT_TIMEOUT, "connect timeout: SYNs dropped"),
        (Scenario::Flood, _) => Within(Duration::ZERO, "at once: RST after accept"),
        (Scenario::Slowloris, _) => Within(FRAME_TIMEOUT, "frame timeout"),
        (Scenario::HalfClosed, _) => Within(Duration::ZERO, "at once: EOF"),
        (Scenario::Reboot, Mech::UserTimeout) => Within(Duration::ZERO, "at once: RST"),
        (Scenario::Reboot, Mech::Keepalive) => Within(
            KEEPALIVE.time,
            "keepalive time: the first probe draws the RST",
        ),
        (Scenario::Reboot, _) => {
            Within(PING.interval, "heartbeat interval: the ping draws the RST")
        }
        (Scenario::Hung, Mech::Keepalive) => Never("the kernel answers the probes"),
        (Scenario::Hung, Mech::UserTimeout) => Never("the kernel acknowledges the data"),
        (Scenario::Hung, _) => Within(HB_BOUND, "interval × misses + timeout"),
        (_, Mech::Keepalive) => Within(KA_BOUND, "time + interval × probes"),
        (_, Mech::UserTimeout) => Within(USER_TIMEOUT, "user timeout"),
        (_, _) => Within(HB_BOUND, "interval × misses + timeout"),
    }
}

/// One case's result.
struct Row {
    side: Side,
    scenario: Scenario,
    mech: Mech,
    expect: Expect,
    detected: Option<Duration>,
    /// What happened to requests the fault caught, in the client's words.
    in_flight: String,
    /// Why the case failed, if it did.
    failure: Option<String>,
}

fn socket_options(m: Mech) -> SocketOptions {
    let mut s = SocketOptions::default();
    if m.keepalive() {
        s.keepalive = Some(KEEPALIVE);
    }
    if m == Mech::UserTimeout {
        s.user_timeout = Some(USER_TIMEOUT);
    }
    s
}

/// Starts the far end (`keepwire serve` or the python peer) listening on the far address.
fn start_far_server(link: &Link, sc: Scenario) -> (u32, SocketAddr) {
    let far = SocketAddr::from((link.far, 7000));
    let addr = far.to_string();
    let cmd = if sc.python_peer() {
        link.command(
            "python3",
            &["-c", PEER_PY, "server", &link.far.to_string(), "7000"],
        )
    } else {
        link.command(BIN, &["serve", "--listen", &addr, "--framing", FRAMING])
    };
    let (pid, _stdin, stdout) = link.spawn(cmd);
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("far server's first line");
    assert!(
        first.starts_with("ready") || first.starts_with("listening on"),
        "far server said {first:?}"
    );
    (pid, far)
}

/// Puts the scenario's fault on the link; `pid` is the far process.
fn inject(link: &Link, sc: Scenario, pid: u32) {
    match sc {
        Scenario::Cable => link.pull_cable(),
        Scenario::Silent => link.blackhole(),
        Scenario::Reboot => {
            // Crash with every segment it sends dropped, then come back: the far kernel
            // no longer knows the connection and answers the next segment with a RST.
            link.mute();
            signal(pid, "KILL");
            wait_state(pid, |st| matches!(st, None | Some('Z')));
            link.unmute();
        }
        Scenario::Hung => {
            signal(pid, "STOP");
            wait_state(pid, |st| st == Some('T'));
        }
        Scenario::HalfClosed => signal(pid, "USR1"),
        Scenario::Backlog | Scenario::Flood | Scenario::Slowloris => {}
    }
}

/// The process's state letter (`/proc/PID/stat`), `None` once it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Waits (at most 5 s) until the process's state satisfies `done`: a signal is delivered
/// asynchronously, and a request written before a SIGSTOP lands would still be answered.
fn wait_state(pid: u32, done: impl Fn(Option<char>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(proc_state(pid)) {
        assert!(
            Instant::now() < deadline,
            "process {pid} never reached its state"
        );
        thread::park_timeout(Duration::from_millis(5));
    }
}

/// Polls `seen` every 10 ms until it holds or `window` has passed since `t0`.
async fn detect(t0: Instant, window: Duration, mut seen: impl FnMut() -> bool) -> Option<Duration> {
    loop {
        if seen() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > window {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn window(e: Expect) -> Duration {
    match e {
        Expect::Within(b, _) => b + SLACK,
        Expect::Never(_) => NEVER_WINDOW,
    }
}

/// A failed request in the client's words: its kind, and whether it may have been sent.
fn describe(e: &ClientError) -> String {
    let delivery = if e.is_not_sent() {
        "not sent"
    } else {
        "may have been sent"
    };
    format!("{:?}, {delivery}", e.kind()).to_lowercase()
}

#[path = "faults/cases.rs"]
mod cases;

#[test]
fn every_fault_is_detected_within_its_bound() {
    if !netns::tools_ready() {
        return;
    }
    let started = Instant::now();
    let mut handles = Vec::new();
    for sc in Scenario::ALL {
        for m in [
            Mech::Keepalive,
            Mech::Heartbeat,
            Mech::Both,
            Mech::UserTimeout,
        ] {
            handles.push(cases::spawn(Side::Client, sc, m));
            if m != Mech::UserTimeout {
                handles.push(cases::spawn(Side::Server, sc, m));
            }
        }
    }
    handles.push(cases::spawn(
        Side::Client,
        Scenario::Backlog,
        Mech::ConnectTimeout,
    ));
    handles.push(cases::spawn(Side::Server, Scenario::Flood, Mech::PerIpCap));
    handles.push(cases::spawn(
        Side::Server,
        Scenario::Slowloris,
        Mech::FrameTimeout,
    ));
    let rows: Vec<Row> = handles.into_iter().map(cases::joined).collect();
    let wall = started.elapsed();
    let table = cases::table(&rows, wall);
    println!("{table}");
    if let Ok(path) = std::env::var("KEEPWIRE_FAULTS_TABLE") {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let path = std::path::Path::new(root).join(path);
        std::fs::write(&path, &table).expect("writing the table");
        println!("wrote {}", path.display());
    }
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.failure.as_ref().map(|f| {
                format!(
                    "{:?} / {} / {}: {f}",
                    r.side,
                    r.scenario.label(),
                    r.mech.label()
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
