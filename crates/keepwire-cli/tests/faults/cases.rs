//! One case of the fault suite: a fresh link, the far end, the near end in this process (a
//! `Server` or a `LongClient`), the fault, the wait for detection, the requests it caught.

use std::convert::Infallible;
use std::io::Write;
use std::thread::JoinHandle;

use keepwire::client::ClientBuilder;
use keepwire::server::{Request, Server, ServerConfig, service_fn};

use super::*;

/// Runs one case on its own thread, with its own runtime and link.
pub(super) fn spawn(side: Side, sc: Scenario, m: Mech) -> (Side, Scenario, Mech, JoinHandle<Row>) {
    let h = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let link = Link::new();
        let row = rt.block_on(async {
            match (side, sc) {
                (_, Scenario::Backlog) => backlog_case(&link).await,
                (_, Scenario::Flood | Scenario::Slowloris) => abuse_case(&link, sc, m).await,
                (Side::Client, _) => client_case(&link, sc, m).await,
                (Side::Server, _) => server_case(&link, sc, m).await,
            }
        });
        drop(rt);
        drop(link);
        row
    });
    (side, sc, m, h)
}

/// The case's row; a case that panicked becomes a failed row.
pub(super) fn joined((side, scenario, mech, h): (Side, Scenario, Mech, JoinHandle<Row>)) -> Row {
    h.join().unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Row {
            side,
            scenario,
            mech,
            expect: expect(scenario, mech),
            detected: None,
            in_flight: "-".into(),
            failure: Some(format!("the case panicked: {why}")),
        }
    })
}

fn judge(e: Expect, detected: Option<Duration>) -> Option<String> {
    match (e, detected) {
        (Expect::Within(b, _), Some(t)) if t <= b + SLACK => None,
        (Expect::Within(b, _), Some(t)) => {
            Some(format!("detected after {t:?}, over {b:?} + {SLACK:?}"))
        }
        (Expect::Within(b, _), None) => Some(format!("not detected within {b:?} + {SLACK:?}")),
        (Expect::Never(_), None) => None,
        (Expect::Never(why), Some(t)) => Some(format!("detected after {t:?}, yet {why}")),
    }
}

async fn client_case(link: &Link, sc: Scenario, m: Mech) -> Row {
    let (pid, far) = start_far_server(link, sc);
    let mut b = ClientBuilder::new(FRAMING.parse().unwrap(), [far.to_string()])
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(IN_FLIGHT_TIMEOUT)
        .reconnect_backoff(Duration::from_millis(200), Duration::from_secs(1))
        .socket_options(socket_options(m));
    if m.heartbeat() {
        b = b.heartbeat(HEARTBEAT.parse().unwrap());
    }
    let client = b
        .connect_long()
        .await
        .expect("connecting to the far server");
    let warm = client.request(Bytes::from_static(b"hello")).await;
    assert_eq!(
        warm.as_deref().ok(),
        Some(&b"hello"[..]),
        "warm-up: {warm:?}"
    );
    let before = client.stats().disconnects;
    inject(link, sc, pid);
    let t0 = Instant::now();
    let exp = expect(sc, m);
    let (detected, outcome) = if m == Mech::UserTimeout {
        // A request written after the fault: its bytes stay unacknowledged.
        let c2 = client.clone();
        let req = tokio::spawn(async move {
            let r = c2.request(Bytes::from_static(b"in flight")).await;
            (r, Instant::now())
        });
        let d = detect(t0, window(exp), || client.stats().disconnects > before).await;
        let (r, ended) = req.await.expect("request task");
        let at = secs(ended.duration_since(t0));
        (d, r.map_err(|e| (e, at)))
    } else {
        let d = detect(t0, window(exp), || client.stats().disconnects > before).await;
        let r = client
            .request_timeout(Bytes::from_static(b"after"), Duration::from_secs(3))
            .await;
        (d, r.map_err(|e| (e, String::new())))
    };
    let prefix = if m == Mech::UserTimeout {
        "in flight"
    } else {
        "next request"
    };
    let mut failure = judge(exp, detected);
    let caught = match &outcome {
        Ok(_) => {
            failure.get_or_insert_with(|| "a request was answered across the fault".into());
            "answered".to_string()
        }
        Err((e, at)) => {
            // Written after the fault: it must say it may have been sent, never "not sent".
            if m == Mech::UserTimeout && e.is_not_sent() && sc != Scenario::HalfClosed {
                failure.get_or_insert_with(|| format!("the request in flight said not sent: {e}"));
            }
            let at = if at.is_empty() {
                String::new()
            } else {
                format!(" at {at}")
            };
            format!("{}{at}", describe(e))
        }
    };
    client.close().await;
    Row {
        side: Side::Client,
        scenario: sc,
        mech: m,
        expect: exp,
        detected,
        in_flight: format!("{prefix}: {caught}"),
        failure,
    }
}

/// Starts the far client (`keepwire send` reading stdin, or the python peer) against
/// `addr`, and waits for its first reply; returns its pid and the stdin to hold open.
fn start_far_client(
    link: &Link,
    sc: Scenario,
    addr: SocketAddr,
) -> (u32, std::process::ChildStdin) {
    let (cmd, line) = if sc.python_peer() {
        let (host, port) = (addr.ip().to_string(), addr.port().to_string());
        (
            link.command("python3", &["-c", PEER_PY, "client", &host, &port]),
            "ready",
        )
    } else {
        let to = addr.to_string();
        let args = [
            "send",
            "--to",
            &to,
            "--framing",
            FRAMING,
            "--mode",
            "long",
            "-",
        ];
        (link.command(BIN, &args), "hello")
    };
    let (pid, mut stdin, stdout) = link.spawn(cmd);
    if !sc.python_peer() {
        stdin
            .write_all(b"hello\n")
            .expect("writing to keepwire send");
    }
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("far client's first line");
    assert_eq!(first.trim_end(), line, "far client's first line");
    (pid, stdin)
}

async fn server_case(link: &Link, sc: Scenario, m: Mech) -> Row {
    let mut cfg = ServerConfig::new(FRAMING.parse().unwrap());
    cfg.socket = socket_options(m);
    if m.heartbeat() {
        cfg.liveness.ping = Some(PING);
    }
    let server = Server::bind(SocketAddr::from((link.near, 0)), cfg)
        .await
        .expect("bind");
    let (addr, stats, token) = (server.local_addr(), server.stats(), server.shutdown_token());
    let echo = service_fn(|r: Request| async move { Ok::<_, Infallible>(Some(r.frame)) });
    let served = tokio::spawn(server.serve(echo));
    let (pid, _stdin) = start_far_client(link, sc, addr);
    let before = stats.snapshot().closed;
    inject(link, sc, pid);
    let t0 = Instant::now();
    let exp = expect(sc, m);
    let detected = detect(t0, window(exp), || stats.snapshot().closed > before).await;
    token.cancel();
    let _ = served.await;
    Row {
        side: Side::Server,
        scenario: sc,
        mech: m,
        expect: exp,
        detected,
        in_flight: "-".into(),
        failure: judge(exp, detected),
    }
}

/// A far listener that never accepts, its backlog filled: a new connect gets no SYN-ACK, so
/// the client's connect times out and the request is not sent.
async fn backlog_case(link: &Link) -> Row {
    let (host, far) = (link.far.to_string(), SocketAddr::from((link.far, 7000)));
    let (_pid, _stdin, stdout) =
        link.spawn(link.command("python3", &["-c", PEER_PY, "stuck", &host, "7000"]));
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("far peer's first line");
    // The accept queue holds backlog + 1; once full, the kernel drops new SYNs.
    let mut held = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&far, CONNECT_TIMEOUT) {
            held.push(s);
        }
    }
    let t0 = Instant::now();
    let r = ClientBuilder::new(FRAMING.parse().unwrap(), [far.to_string()])
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_long()
        .await;
    let took = t0.elapsed();
    let exp = expect(Scenario::Backlog, Mech::ConnectTimeout);
    let (detected, caught, mut failure) = match &r {
        Ok(_) => (
            None,
            "connected".to_string(),
            Some("connected past a full backlog".to_string()),
        ),
        Err(e) => (Some(took), format!("first request: {}", describe(e)), None),
    };
    if let Err(e) = &r {
        if !(e.is_connect() && e.is_not_sent()) {
            failure.get_or_insert_with(|| format!("expected connect, not sent: {e}"));
        }
    }
    Row {
        side: Side::Client,
        scenario: Scenario::Backlog,
        mech: Mech::ConnectTimeout,
        expect: exp,
        detected,
        in_flight: caught,
        failure: failure.or_else(|| judge(exp, detected)),
    }
}

/// The server against a flood from one IP (the per-IP cap resets all but 5) or a slowloris
/// (the frame timeout cuts it).
async fn abuse_case(link: &Link, sc: Scenario, m: Mech) -> Row {
    let mut cfg = ServerConfig::new(FRAMING.parse().unwrap());
    cfg.max_conns_per_ip = Some(5);
    cfg.liveness.frame_timeout = Some(FRAME_TIMEOUT);
    let server = Server::bind(SocketAddr::from((link.near, 0)), cfg)
        .await
        .expect("bind");
    let (addr, stats, token) = (server.local_addr(), server.stats(), server.shutdown_token());
    let echo = service_fn(|r: Request| async move { Ok::<_, Infallible>(Some(r.frame)) });
    let served = tokio::spawn(server.serve(echo));
    let mode = if sc == Scenario::Flood {
        "flood"
    } else {
        "slow"
    };
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    let (_pid, _stdin, _stdout) =
        link.spawn(link.command("python3", &["-c", PEER_PY, mode, &host, &port]));
    // The clock starts at the first connection accepted (python takes a while to start).
    let exp = expect(sc, m);
    let start = Instant::now();
    detect(start, Duration::from_secs(10), || {
        stats.snapshot().accepted >= 1
    })
    .await;
    let t0 = Instant::now();
    let detected = detect(t0, window(exp), || {
        let s = stats.snapshot();
        match sc {
            Scenario::Flood => s.rejected_per_ip >= 45,
            _ => s.frame_timeouts >= 1,
        }
    })
    .await;
    let s = stats.snapshot();
    token.cancel();
    let _ = served.await;
    Row {
        side: Side::Server,
        scenario: sc,
        mech: m,
        expect: exp,
        detected,
        in_flight: format!(
            "{} accepted, {} reset by the cap, {} closed ({} by the frame timeout)",
            s.accepted, s.rejected_per_ip, s.closed, s.frame_timeouts
        ),
        failure: judge(exp, detected),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The markdown page: settings, then a row per case.
pub(super) fn table(rows: &[Row], wall: Duration) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let day = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut out = format!(
        "# Faults: how each way a link dies is detected, and how fast\n\n\
         Written by the fault suite (`crates/keepwire-cli/tests/faults.rs`) on {day}, Linux \
         {}, in {:.0} s of wall time for all {} cases run at once:\n\n\
         ```sh\nKEEPWIRE_FAULTS_TABLE=docs/faults.md cargo test -p keepwire-cli --test faults\n```\n\n\
         Do not edit it by hand; run that (as root) instead. Each case makes its own network \
         namespace joined to the test's by a veth pair (198.18.0.0/15), runs the far end there \
         (`keepwire serve`, `keepwire send`, or a python peer that crashes without a FIN or \
         half-closes on cue) and the near end in the test (the library's `Server`, or a \
         `LongClient`), puts the fault on the link and times the near end until it drops the \
         connection. Settings: TCP keepalive 1s,1s,3; heartbeats every 1 s of silence, 500 ms \
         to answer, 2 misses; `TCP_USER_TIMEOUT` 3 s. A case passes when it is detected within \
         its bound plus {} (or, where the mechanism cannot see the fault, not within {}), and \
         every request the fault caught ended with an error saying whether it may have been \
         sent. \"next request\" is one made after the detection (or after the window); \"in \
         flight\" one written after the fault, unacknowledged.\n\n\
         | side | scenario | mechanism | bound | measured | requests caught |\n\
         |---|---|---|---|---|---|\n",
        kernel.trim(),
        wall.as_secs_f64(),
        rows.len(),
        secs(SLACK),
        secs(NEVER_WINDOW),
    );
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by_key(|r| r.side == Side::Server); // stable: client rows first
    for r in sorted {
        let bound = match r.expect {
            Expect::Within(b, why) => format!("{} ({why})", secs(b)),
            Expect::Never(why) => format!("none: {why}"),
        };
        let measured = match (r.detected, &r.failure) {
            (Some(t), None) => secs(t),
            (None, None) => format!("not detected in {}", secs(NEVER_WINDOW)),
            (Some(t), Some(f)) => format!("{} **FAILED: {f}**", secs(t)),
            (None, Some(f)) => format!("**FAILED: {f}**"),
        };
        let side = match r.side {
            Side::Server => "server",
            Side::Client => "long client",
        };
        out.push_str(&format!(
            "| {side} | {} | {} | {bound} | {measured} | {} |\n",
            r.scenario.label(),
            r.mech.label(),
            r.in_flight
        ));
    }
    out
}
