//! `keepwire watch --port N [--interval DUR] [--once] [--sockets] [--json]`: the kernel's TCP
//! states on a port, counted per state or listed per socket with its timer.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use keepwire::socket::parse_duration;
use keepwire::tcpstate::{TcpSocket, TcpTimer, port_sockets_now, port_states_now};

use super::Failure;

const EXAMPLES: &str = "\
Examples:
  # Redraw the states of port 7000 every second until ctrl-c
  keepwire watch --port 7000

  # One table, e.g. to count TIME_WAIT sockets after a run of short connections
  keepwire watch --port 7000 --once

  # A row per socket with the kernel's timer: watch keepalive probes or retransmits count
  # up behind a dead link, or TIME_WAIT count down
  keepwire watch --port 7000 --sockets --interval 500ms

  # One JSON object a socket (keys: time, local, remote, state, timer, timer_left_ms,
  # retransmits, probes, send_queue, recv_queue)
  keepwire watch --port 7000 --sockets --json --once

JSON keys with --sockets: time (RFC 3339, when the table was read); local, remote
(\"ADDR:PORT\", \"[V6]:PORT\"; a v4 client of a dual-stack listener is \"[::ffff:A.B.C.D]:PORT\");
state (the kernel's name); timer (null, \"retransmit\" (also a SYN-ACK's), \"keepalive\"
(also the FIN_WAIT2 timeout of an orphan), \"time_wait\", \"zero_window_probe\");
timer_left_ms (0 without a timer or when due; 10 ms resolution); retransmits (of the
unacknowledged head segment, or SYN-ACKs); probes (keepalive or zero-window probes
unanswered); send_queue (bytes not yet acknowledged); recv_queue (bytes not yet read; for
a listener, connections waiting to be accepted). Without --sockets: time, state, count.
";

/// Flags of `keepwire watch`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The port to watch: sockets whose local or remote port is N (server and client sides).
    #[arg(long, value_name = "N")]
    port: u16,
    /// Time between refreshes (default 1s).
    #[arg(long, value_name = "DUR", default_value = "1s")]
    interval: String,
    /// Print one table and exit.
    #[arg(long)]
    once: bool,
    /// A row per socket: addresses, state, the kernel's timer (retransmit, keepalive,
    /// time_wait, zero_window_probe) and its time left, retransmits, probes, queues.
    #[arg(long)]
    sockets: bool,
    /// One JSON object a line: a state and its count, or with --sockets a socket.
    #[arg(long)]
    json: bool,
}

fn read_failed(e: std::io::Error) -> Failure {
    Failure::Runtime(format!(
        "cannot read the kernel's TCP table (/proc/net/tcp): {e}"
    ))
}

/// The table: `STATE COUNT`, one row per state seen, in the kernel's order.
fn table(port: u16) -> Result<String, Failure> {
    let states = port_states_now(port).map_err(read_failed)?;
    let mut out = format!("{:<12} {:>7}\n", "STATE", "COUNT");
    for (state, n) in states.total() {
        out.push_str(&format!("{:<12} {n:>7}\n", state.as_str()));
    }
    Ok(out)
}

/// `STATE COUNT` as JSON lines: `{"time":..,"state":"ESTABLISHED","count":4}`.
fn states_json(port: u16, stamp: &str) -> Result<String, Failure> {
    let states = port_states_now(port).map_err(read_failed)?;
    let mut out = String::new();
    for (state, n) in states.total() {
        let v = serde_json::json!({"time": stamp, "state": state.as_str(), "count": n});
        out.push_str(&format!("{v}\n"));
    }
    Ok(out)
}

/// Seconds with two decimals (the kernel's resolution is 10 ms), `-` without a timer.
fn left(s: &TcpSocket) -> String {
    if s.timer == TcpTimer::None {
        "-".into()
    } else {
        format!("{:.2}s", s.timer_left.as_secs_f64())
    }
}

/// A row per socket.
fn sockets_table(socks: &[TcpSocket]) -> String {
    let w = socks
        .iter()
        .map(|s| {
            s.entry
                .local
                .to_string()
                .len()
                .max(s.entry.remote.to_string().len())
        })
        .max()
        .unwrap_or(0)
        .max(21);
    let mut out = format!(
        "{:<w$} {:<w$} {:<11} {:<17} {:>9} {:>7} {:>6} {:>7} {:>7}\n",
        "LOCAL", "REMOTE", "STATE", "TIMER", "LEFT", "RETRANS", "PROBES", "SEND-Q", "RECV-Q"
    );
    for s in socks {
        out.push_str(&format!(
            "{:<w$} {:<w$} {:<11} {:<17} {:>9} {:>7} {:>6} {:>7} {:>7}\n",
            s.entry.local.to_string(),
            s.entry.remote.to_string(),
            s.entry.state.as_str(),
            s.timer.as_str(),
            left(s),
            s.retransmits,
            s.probes,
            s.send_queue,
            s.recv_queue
        ));
    }
    out
}

/// A JSON object per socket, one a line.
fn sockets_json(socks: &[TcpSocket], stamp: &str) -> String {
    let mut out = String::new();
    for s in socks {
        let v = serde_json::json!({
            "time": stamp,
            "local": s.entry.local.to_string(),
            "remote": s.entry.remote.to_string(),
            "state": s.entry.state.as_str(),
            "timer": (s.timer != TcpTimer::None).then(|| s.timer.as_str()),
            "timer_left_ms": u64::try_from(s.timer_left.as_millis()).unwrap_or(u64::MAX),
            "retransmits": s.retransmits,
            "probes": s.probes,
            "send_queue": s.send_queue,
            "recv_queue": s.recv_queue,
        });
        out.push_str(&format!("{v}\n"));
    }
    out
}

/// One refresh's output, as the flags ask.
fn render(args: &Args, stamp: &str) -> Result<String, Failure> {
    match (args.sockets, args.json) {
        (false, false) => table(args.port),
        (false, true) => states_json(args.port, stamp),
        (true, json) => {
            let socks = port_sockets_now(args.port).map_err(read_failed)?;
            Ok(if json {
                sockets_json(&socks, stamp)
            } else {
                sockets_table(&socks)
            })
        }
    }
}

/// The kernel's timers tick in `USER_HZ` (10 ms): a shorter interval only redraws the same
/// table in a busy loop.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Flags clap cannot check: port 0 is no socket's port but every listener's remote port, so
/// it would list every listener on the machine; an interval below the kernel's resolution.
fn check(args: &Args, interval: Duration) -> Result<(), Failure> {
    if args.port == 0 {
        return Err(Failure::Usage(
            "--port 0: port 0 is every listener's remote port, not a connection's; give the \
             port a server listens on or a client connects to (1..65535)"
                .into(),
        ));
    }
    if interval < MIN_INTERVAL {
        return Err(Failure::Usage(format!(
            "--interval {}: below 10ms, the resolution of the kernel's timers; use 10ms or more",
            args.interval.trim()
        )));
    }
    Ok(())
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let interval =
        parse_duration(&args.interval).map_err(|e| Failure::Usage(format!("--interval: {e}")))?;
    check(&args, interval)?;
    let mut stdout = std::io::stdout();
    let stamp = || humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    if args.once {
        let _ = stdout.write_all(render(&args, &stamp())?.as_bytes());
        return Ok(());
    }
    let tty = stdout.is_terminal() && !args.json;
    loop {
        let now = stamp();
        let t = render(&args, &now)?;
        let frame = if args.json {
            t
        } else if tty {
            // Clear the screen and redraw in place.
            format!(
                "\x1b[2J\x1b[H{now}  port {}  (every {}; ctrl-c to stop)\n\n{t}",
                args.port,
                humantime::format_duration(interval)
            )
        } else {
            format!("{now}  port {}\n{t}\n", args.port)
        };
        if stdout
            .write_all(frame.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(()); // stdout closed (e.g. piped into head)
        }
        if reader_gone_within(interval.min(Duration::from_secs(3600))) {
            return Ok(());
        }
    }
}

/// Waits `interval`, returning early (true) when stdout's reader has gone away. A refresh
/// with nothing to print (`--json`, no socket on the port) writes nothing, so a write error
/// alone never told a `watch ... --json | head -1` that `head` had exited: it polled /proc
/// forever. poll(2) reports `POLLERR` on a pipe without readers (`POLLHUP` on a hung-up
/// terminal) even when no event is asked for, and nothing for files and live pipes.
fn reader_gone_within(interval: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
    let timeout = Timespec::try_from(interval).ok();
    let started = std::time::Instant::now();
    let gone = match poll(&mut fds, timeout.as_ref()) {
        Ok(_) => fds.first().is_some_and(|f| {
            f.revents()
                .intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL)
        }),
        Err(_) => false,
    };
    if !gone {
        // poll failed or returned early for another reason: sleep out the interval.
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    }
    gone
}
