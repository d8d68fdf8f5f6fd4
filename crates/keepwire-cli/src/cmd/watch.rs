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

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let interval =
        parse_duration(&args.interval).map_err(|e| Failure::Usage(format!("--interval: {e}")))?;
    if interval.is_zero() {
        return Err(Failure::Usage("--interval must be more than 0".into()));
    }
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
        std::thread::sleep(interval.min(Duration::from_secs(3600)));
    }
}
