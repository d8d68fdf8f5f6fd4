//! `keepwire watch --once` against sockets this test opens.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};

mod common;
use common::{run_expect, wait_until};

fn watch_once(port: u16) -> BTreeMap<String, usize> {
    let out = run_expect(&["watch", "--port", &port.to_string(), "--once"], b"", 0);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["STATE", "COUNT"]);
    lines
        .map(|l| {
            let (s, n) = l.split_once(' ').unwrap();
            (s.to_string(), n.trim().parse().unwrap())
        })
        .collect()
}

#[test]
fn counts_each_state_on_both_sides() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // Old sockets may still sit in TIME_WAIT on this port (it may have been some earlier
    // connection's ephemeral port): count from a baseline.
    let base = watch_once(port);
    assert_eq!(base.get("LISTEN"), Some(&1), "{base:?}");
    let n = |t: &BTreeMap<String, usize>, s: &str| t.get(s).copied().unwrap_or(0);
    let base_tw = n(&base, "TIME_WAIT");
    assert_eq!(n(&base, "ESTABLISHED"), 0, "{base:?}");

    // Two open connections: each is ESTABLISHED on the client and on the server side.
    let c1 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s1, _) = l.accept().unwrap();
    let c2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s2, _) = l.accept().unwrap();
    let t = watch_once(port);
    assert_eq!(t["ESTABLISHED"], 4, "{t:?}");

    // The client closes c1 first: the client side goes to FIN_WAIT2, the server side to
    // CLOSE_WAIT (a half-closed peer); then the server closes: TIME_WAIT on the client.
    drop(c1);
    // (FIN_WAIT1 until the peer's ACK is processed: wait for both sides to settle.)
    let t = wait_for(port, |t| {
        t.get("CLOSE_WAIT") == Some(&1) && t.get("FIN_WAIT2") == Some(&1)
    });
    assert_eq!(t["ESTABLISHED"], 2, "{t:?}");
    drop(s1);
    let t = wait_for(port, |t| n(t, "TIME_WAIT") > base_tw);
    assert_eq!(t["ESTABLISHED"], 2, "{t:?}");
    drop((c2, s2));
}

/// Polls `watch --once` (bounded) until `cond` holds on its table; returns that table.
fn wait_for(port: u16, cond: impl Fn(&BTreeMap<String, usize>) -> bool) -> BTreeMap<String, usize> {
    let mut last = BTreeMap::new();
    wait_until("the socket states to be reached", || {
        last = watch_once(port);
        cond(&last)
    });
    last
}

#[test]
fn bad_usage_exits_two() {
    run_expect(&["watch", "--port", "80", "--interval", "soon"], b"", 2);
}
