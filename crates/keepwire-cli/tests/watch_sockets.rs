//! `keepwire watch --sockets`: a row per socket with the kernel's timer, against sockets
//! this test opens on loopback and, as root, behind a cable it pulls in a namespace.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;

mod common;
use common::{run_expect, wait_until};

#[path = "faults/netns.rs"]
mod netns;

/// `watch --port P --sockets --json --once`, as JSON objects.
fn sockets(port: u16) -> Vec<Value> {
    let out = run_expect(
        &[
            "watch",
            "--port",
            &port.to_string(),
            "--sockets",
            "--json",
            "--once",
        ],
        b"",
        0,
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The row whose local and remote addresses are these.
fn row(port: u16, local: SocketAddr, remote: SocketAddr) -> Option<Value> {
    sockets(port).into_iter().find(|v| {
        v["local"] == local.to_string().as_str() && v["remote"] == remote.to_string().as_str()
    })
}

#[test]
fn every_key_is_there_and_the_table_has_its_columns() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let v = row(port, l.local_addr().unwrap(), "0.0.0.0:0".parse().unwrap()).unwrap();
    for key in [
        "time",
        "local",
        "remote",
        "state",
        "timer",
        "timer_left_ms",
        "retransmits",
        "probes",
        "send_queue",
        "recv_queue",
    ] {
        assert!(v.get(key).is_some(), "{key} missing from {v}");
    }
    assert_eq!(v["state"], "LISTEN");
    assert_eq!(v["timer"], Value::Null);
    let out = run_expect(
        &["watch", "--port", &port.to_string(), "--sockets", "--once"],
        b"",
        0,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "LOCAL", "REMOTE", "STATE", "TIMER", "LEFT", "RETRANS", "PROBES", "SEND-Q", "RECV-Q"
        ]
    );
    assert!(text.lines().any(|l| l.contains("LISTEN")), "{text}");
}

#[test]
fn time_wait_counts_down() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    let (me, peer) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    drop(c); // the client closes first: the TIME_WAIT socket is its own
    drop(s);
    let mut first = None;
    wait_until("the client's socket to reach TIME_WAIT", || {
        first = row(port, me, peer).filter(|v| v["state"] == "TIME_WAIT");
        first.is_some()
    });
    let first = first.unwrap();
    assert_eq!(first["timer"], "time_wait", "{first}");
    let left = first["timer_left_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 60_000, "{first}");
    wait_until("the TIME_WAIT timer to count down", || {
        let v = row(port, me, peer).unwrap();
        v["timer_left_ms"].as_u64().unwrap() < left
    });
}

#[test]
fn a_keepalive_socket_shows_its_timer() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let _s = l.accept().unwrap();
    socket2::SockRef::from(&c)
        .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(Duration::from_secs(30)))
        .unwrap();
    let v = row(port, c.local_addr().unwrap(), l.local_addr().unwrap()).unwrap();
    assert_eq!(
        (&v["state"], &v["timer"]),
        (&"ESTABLISHED".into(), &"keepalive".into()),
        "{v}"
    );
    let left = v["timer_left_ms"].as_u64().unwrap();
    assert!(left > 20_000 && left <= 30_000, "{v}");
    assert_eq!(v["probes"], 0, "{v}");
}

/// As root: a `keepwire serve` in a namespace, a client here with keepalive 1s,1s,9; the
/// cable is pulled and `watch` shows the probes count up; then data written shows the
/// retransmit timer and its retransmits count up.
#[test]
fn a_pulled_cable_shows_probes_then_retransmits() {
    if !netns::tools_ready() {
        return;
    }
    let link = netns::Link::new();
    let far = SocketAddr::from((link.far, 7000));
    let cmd = link.command(
        env!("CARGO_BIN_EXE_keepwire"),
        &["serve", "--listen", &far.to_string(), "--framing", "line"],
    );
    let (_pid, _stdin, stdout) = link.spawn(cmd);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.starts_with("listening on"), "{first}");
    let mut c = TcpStream::connect_timeout(&far, Duration::from_secs(5)).unwrap();
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(1))
        .with_interval(Duration::from_secs(1))
        .with_retries(9);
    socket2::SockRef::from(&c).set_tcp_keepalive(&ka).unwrap();
    let me = c.local_addr().unwrap();
    link.pull_cable();
    wait_until("keepalive probes to count up to 2", || {
        row(7000, me, far)
            .is_some_and(|v| v["timer"] == "keepalive" && v["probes"].as_u64() >= Some(2))
    });
    c.write_all(b"unacknowledged\n").unwrap();
    wait_until("retransmits to count up to 2", || {
        row(7000, me, far).is_some_and(|v| {
            v["timer"] == "retransmit"
                && v["retransmits"].as_u64() >= Some(2)
                && v["send_queue"].as_u64() == Some(15)
        })
    });
}
