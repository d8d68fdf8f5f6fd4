//! `keepwire watch --port N [--interval DUR] [--once]`: the kernel's TCP states on a port.

use std::io::{IsTerminal, Write};

use keepwire::socket::parse_duration;
use keepwire::tcpstate::port_states_now;

use super::Failure;

const EXAMPLES: &str = "\
Examples:
  # Redraw the states of port 7000 every second until ctrl-c
  keepwire watch --port 7000

  # One table, e.g. to count TIME_WAIT sockets after a run of short connections
  keepwire watch --port 7000 --once

  # A line of states every 5 seconds into a log
  keepwire watch --port 7000 --interval 5s >> states.log
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
}

/// The table: `STATE COUNT`, one row per state seen, in the kernel's order.
fn table(port: u16) -> Result<String, Failure> {
    let states = port_states_now(port).map_err(|e| {
        Failure::Runtime(format!(
            "cannot read the kernel's TCP table (/proc/net/tcp): {e}"
        ))
    })?;
    let mut out = format!("{:<12} {:>7}\n", "STATE", "COUNT");
    for (state, n) in states.total() {
        out.push_str(&format!("{:<12} {n:>7}\n", state.as_str()));
    }
    Ok(out)
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let interval =
        parse_duration(&args.interval).map_err(|e| Failure::Usage(format!("--interval: {e}")))?;
    if interval.is_zero() {
        return Err(Failure::Usage("--interval must be more than 0".into()));
    }
    let mut stdout = std::io::stdout();
    if args.once {
        let _ = stdout.write_all(table(args.port)?.as_bytes());
        return Ok(());
    }
    let tty = stdout.is_terminal();
    loop {
        let t = table(args.port)?;
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let frame = if tty {
            // Clear the screen and redraw in place.
            format!(
                "\x1b[2J\x1b[H{stamp}  port {}  (every {}; ctrl-c to stop)\n\n{t}",
                args.port,
                humantime::format_duration(interval)
            )
        } else {
            format!("{stamp}  port {}\n{t}\n", args.port)
        };
        if stdout
            .write_all(frame.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(()); // stdout closed (e.g. piped into head)
        }
        std::thread::sleep(interval);
    }
}
