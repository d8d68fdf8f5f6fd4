//! Server connection policies, limits, PROXY protocol and bad input, over real loopback sockets.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use keepwire::server::{Mode, ServerConfig};
use keepwire::tcpstate::TcpState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn cfg(framing: &str) -> ServerConfig {
    ServerConfig::new(spec(framing))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_mode_answers_pipelined_requests_in_order() {
    let mut srv = echo_server(cfg("len:ascii:4")).await;
    let mut c = Client::connect(srv.addr, "len:ascii:4").await;
    // Three requests in one write.
    c.send_raw(b"0001a0002bb0003ccc").await.unwrap();
    for want in [&b"a"[..], b"bb", b"ccc"] {
        assert_eq!(c.recv().await.as_deref(), Some(want));
    }
    // And more on the same connection later.
    c.send(b"later").await;
    assert_eq!(c.recv().await.as_deref(), Some(&b"later"[..]));
    let r = srv.seen.recv().await.unwrap();
    assert_eq!(r.peer, c.stream.local_addr().unwrap());
    assert_eq!(r.local, srv.addr);
    assert_eq!(srv.stats.snapshot().accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_leaves_time_wait_on_the_client() {
    let mut c = cfg("len:be:2");
    c.mode = Mode::Short;
    let srv = echo_server(c).await;
    // This test's connections, by both addresses: other tests and processes may hold
    // sockets on the same port numbers (an ephemeral port is reused across tests).
    let mut ours = Vec::new();
    for i in 0..5u8 {
        let mut c = Client::connect(srv.addr, "len:be:2").await;
        ours.push(c.stream.local_addr().unwrap());
        c.send(&[i]).await;
        assert_eq!(c.recv().await.as_deref(), Some(&[i][..]));
        // The server waits for our FIN: we close first.
        drop(c);
    }
    eventually("client-side TIME_WAIT for each connection", || {
        let st = keepwire::tcpstate::sockets().unwrap();
        ours.iter().all(|client| {
            st.iter().any(|e| {
                e.local == *client && e.remote == srv.addr && e.state == TcpState::TimeWait
            })
        })
    })
    .await;
    let server_side: Vec<_> = keepwire::tcpstate::sockets()
        .unwrap()
        .into_iter()
        .filter(|e| e.local == srv.addr && ours.contains(&e.remote))
        .collect();
    assert!(
        server_side.iter().all(|e| e.state != TcpState::TimeWait),
        "server side holds TIME_WAIT: {server_side:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_ignores_a_second_request_and_closes_after_fin() {
    let mut c = cfg("len:be:2");
    c.mode = Mode::Short;
    c.short_close_wait = Duration::from_millis(300);
    let srv = echo_server(c).await;
    let mut c = Client::connect(srv.addr, "len:be:2").await;
    c.send_raw(b"\x00\x01a\x00\x01b").await.unwrap();
    assert_eq!(c.recv().await.as_deref(), Some(&b"a"[..]));
    // No FIN from us: the server gives up waiting after short_close_wait and closes.
    let took = c.closed_within(SOON).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mode_with_eof_framing_reads_until_half_close() {
    let mut c = cfg("eof");
    c.mode = Mode::Short;
    let srv = echo_server(c).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"whole request ").await.unwrap();
    s.write_all(b"in two writes").await.unwrap();
    s.shutdown().await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(SOON, s.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, b"whole request in two writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_closes_first_then_restarts_on_the_same_port_at_once() {
    let mut c = cfg("len:be:2");
    c.mode = Mode::Short;
    c.short_server_closes_first = true;
    let srv = echo_server(c.clone()).await;
    let addr = srv.addr;
    let mut ours = Vec::new();
    for i in 0..20u8 {
        let mut cl = Client::connect(addr, "len:be:2").await;
        ours.push(cl.stream.local_addr().unwrap());
        cl.send(&[i]).await;
        assert_eq!(cl.recv().await.as_deref(), Some(&[i][..]));
        cl.closed_within(SOON).await;
    }
    // Server-side TIME_WAIT of this test's connections only, by both addresses: an earlier
    // test's client socket may have had `addr`'s port number.
    let server_time_wait = || {
        keepwire::tcpstate::sockets()
            .unwrap()
            .iter()
            .filter(|e| {
                e.local == addr && ours.contains(&e.remote) && e.state == TcpState::TimeWait
            })
            .count()
    };
    eventually("server-side TIME_WAIT", || server_time_wait() == 20).await;
    srv.stop.cancel();
    srv.task.await.unwrap();
    // The 2MSL problem must not block a restart: bind the same port while TIME_WAIT remains.
    assert!(server_time_wait() > 0);
    let srv2 = start(c, &addr.to_string(), None).await;
    assert_eq!(srv2.addr, addr);
    let mut cl = Client::connect(addr, "len:be:2").await;
    cl.send(b"again").await;
    assert_eq!(cl.recv().await.as_deref(), Some(&b"again"[..]));
}

async fn connect_from(src: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(format!("{src}:0").parse().unwrap())?;
    s.connect(to).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_cap_counts_each_client_address() {
    let mut c = cfg("len:be:2");
    c.max_conns_per_ip = Some(2);
    let srv = echo_server(c).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut cl = Client::from_stream(
            connect_from("127.0.0.1", srv.addr).await.unwrap(),
            "len:be:2",
        );
        cl.send(b"ok").await;
        assert_eq!(cl.recv().await.as_deref(), Some(&b"ok"[..]));
        held.push(cl);
    }
    // A third from 127.0.0.1 is cut at once.
    // (The reset may come before connect() even reports success on loopback.)
    if let Ok(third) = connect_from("127.0.0.1", srv.addr).await {
        Client::from_stream(third, "len:be:2")
            .closed_within(SOON)
            .await;
    }
    // 127.0.0.2 has its own allowance.
    let mut other = Client::from_stream(
        connect_from("127.0.0.2", srv.addr).await.unwrap(),
        "len:be:2",
    );
    other.send(b"hi").await;
    assert_eq!(other.recv().await.as_deref(), Some(&b"hi"[..]));
    assert_eq!(srv.stats.snapshot().rejected_per_ip, 1);
    // Closing one frees its slot.
    drop(held.pop());
    let mut again = None;
    for _ in 0..100 {
        let Ok(s) = connect_from("127.0.0.1", srv.addr).await else {
            continue;
        };
        let mut cl = Client::from_stream(s, "len:be:2");
        if cl.send_raw(b"\x00\x01x").await.is_ok() && cl.recv().await.is_some() {
            again = Some(cl);
            break;
        }
        // Retry pacing of a bounded loop: the slot is released when the server has seen
        // the close, which nothing outside the server signals.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        again.is_some(),
        "slot of a closed connection was not released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_cap_rejects_excess_connections() {
    let mut c = cfg("len:be:2");
    c.max_conns = 3;
    let srv = echo_server(c).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut cl = Client::connect(srv.addr, "len:be:2").await;
        cl.send(b"ok").await;
        assert!(cl.recv().await.is_some());
        held.push(cl);
    }
    for _ in 0..5 {
        // The reset may come before connect() even reports success on loopback.
        if let Ok(s) = TcpStream::connect(srv.addr).await {
            Client::from_stream(s, "len:be:2").closed_within(SOON).await;
        }
    }
    eventually("five rejections counted", || {
        srv.stats.snapshot().rejected_max_conns == 5
    })
    .await;
    // The held ones still work.
    held[0].send(b"still").await;
    assert_eq!(held[0].recv().await.as_deref(), Some(&b"still"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_that_connection() {
    let srv = echo_server(cfg("len:ascii:4")).await;
    let mut good = Client::connect(srv.addr, "len:ascii:4").await;
    for bad in [&b"00x5hello"[..], b"-001a", b"9999"] {
        let mut c = Client::connect(srv.addr, "len:ascii:4").await;
        c.send_raw(bad).await.unwrap();
        if bad == b"9999" {
            // A valid header whose body never comes: not malformed; still open.
            c.send(b"").await;
            continue;
        }
        c.closed_within(SOON).await;
    }
    let mut bcd = echo_server(cfg("len:bcd:2")).await;
    let mut c = Client::connect(bcd.addr, "len:bcd:2").await;
    c.send_raw(b"\x00\x1a").await.unwrap();
    c.closed_within(SOON).await;
    eventually("bcd error counted", || {
        bcd.stats.snapshot().errors_malformed == 1
    })
    .await;
    assert!(bcd.seen.try_recv().is_err(), "handler saw a bad frame");

    eventually("ascii errors counted", || {
        srv.stats.snapshot().errors_malformed == 2
    })
    .await;
    good.send(b"alive").await;
    assert_eq!(good.recv().await.as_deref(), Some(&b"alive"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_length_is_cut_at_the_header() {
    let srv = echo_server(cfg("len:be:4:max=1024")).await;
    let mut c = Client::connect(srv.addr, "len:be:4").await;
    // Claims 1 GiB; only the header is sent.
    c.send_raw(&[0x40, 0, 0, 0]).await.unwrap();
    c.closed_within(SOON).await;
    eventually("too_long counted", || {
        srv.stats.snapshot().errors_too_long == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_set_the_peer_and_garbage_is_rejected() {
    let mut c = cfg("len:be:2");
    c.proxy_protocol = true;
    c.max_conns_per_ip = Some(1);
    let mut srv = echo_server(c).await;

    // v1: the handler sees the address from the header.
    let mut a = Client::connect(srv.addr, "len:be:2").await;
    a.send_raw(b"PROXY TCP4 198.51.100.7 203.0.113.9 40312 7000\r\n")
        .await
        .unwrap();
    a.send(b"v1").await;
    assert_eq!(a.recv().await.as_deref(), Some(&b"v1"[..]));
    let req = srv.seen.recv().await.unwrap();
    assert_eq!(
        req.peer,
        "198.51.100.7:40312".parse::<SocketAddr>().unwrap()
    );

    // v2 in the same write as the first frame.
    let mut hdr = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (
            "[2001:db8::7]:5555".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:7000".parse::<SocketAddr>().unwrap(),
        ),
    )
    .build()
    .unwrap();
    hdr.extend_from_slice(b"\x00\x02v2");
    let mut b = Client::connect(srv.addr, "len:be:2").await;
    b.send_raw(&hdr).await.unwrap();
    assert_eq!(b.recv().await.as_deref(), Some(&b"v2"[..]));
    let req = srv.seen.recv().await.unwrap();
    assert_eq!(
        req.peer,
        "[2001:db8::7]:5555".parse::<SocketAddr>().unwrap()
    );

    // The per-IP limit applies to the address in the header: a second 198.51.100.7 is cut.
    let mut dup = Client::connect(srv.addr, "len:be:2").await;
    dup.send_raw(b"PROXY TCP4 198.51.100.7 203.0.113.9 40313 7000\r\n\x00\x01x")
        .await
        .unwrap();
    dup.closed_within(SOON).await;

    // No header, or a broken one: closed, nothing reaches the handler.
    for garbage in [
        &b"\x00\x05hello"[..],
        b"PROXY TCP4 nonsense\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x99\x11\x00\x00",
    ] {
        let mut g = Client::connect(srv.addr, "len:be:2").await;
        g.send_raw(garbage).await.unwrap();
        g.closed_within(SOON).await;
    }
    eventually("rejections counted", || {
        let s = srv.stats.snapshot();
        s.rejected_proxy == 3 && s.rejected_per_ip == 1
    })
    .await;
    assert!(srv.seen.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_must_arrive_in_time() {
    let mut c = cfg("len:be:2");
    c.proxy_protocol = true;
    c.handshake_timeout = Duration::from_millis(200);
    let srv = echo_server(c).await;
    let mut g = Client::connect(srv.addr, "len:be:2").await;
    g.send_raw(b"PROXY TCP4 1.2.").await.unwrap();
    let took = g.closed_within(SOON).await;
    assert!(took >= Duration::from_millis(150), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_only_from_trusted_sources() {
    let mut c = cfg("len:be:2");
    c.proxy_protocol = true;
    c.proxy_from = vec!["127.0.0.2/32".parse().unwrap()];
    let mut srv = echo_server(c).await;
    let header = b"PROXY TCP4 198.51.100.7 203.0.113.9 40312 7000\r\n\x00\x02hi";
    // From the balancer's address: the header is honoured.
    let mut lb = Client::from_stream(
        connect_from("127.0.0.2", srv.addr).await.unwrap(),
        "len:be:2",
    );
    lb.send_raw(header).await.unwrap();
    assert_eq!(lb.recv().await.as_deref(), Some(&b"hi"[..]));
    assert_eq!(
        srv.seen.recv().await.unwrap().peer.ip().to_string(),
        "198.51.100.7"
    );
    // From anywhere else the same header is refused: a direct client cannot claim an address.
    if let Ok(s) = connect_from("127.0.0.1", srv.addr).await {
        let mut direct = Client::from_stream(s, "len:be:2");
        let _ = direct.send_raw(header).await;
        direct.closed_within(SOON).await;
    }
    eventually("untrusted source rejected", || {
        srv.stats.snapshot().rejected_proxy == 1
    })
    .await;
    assert!(srv.seen.try_recv().is_err());
}

/// A handler answering with several frames and a close ([`Answer`]): the frames go out in
/// order, the connection closes after them, and a request pipelined behind the closing one
/// never reaches the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_with_several_frames_and_a_close() {
    use keepwire::server::{Answer, Request, Server, service_fn};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let server = Server::bind("127.0.0.1:0", cfg("len:ascii:4"))
        .await
        .unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let task = tokio::spawn(server.serve(service_fn(move |req: Request| {
        seen.fetch_add(1, Ordering::SeqCst);
        let answer = match &req.frame[..] {
            b"bye" => Answer::one("ok").with("receipt").then_close(),
            b"none" => Answer::none(),
            other => Answer::one(bytes::Bytes::copy_from_slice(other)),
        };
        async move { Ok::<_, std::convert::Infallible>(answer) }
    })));

    let mut c = Client::connect(addr, "len:ascii:4").await;
    c.send_raw(b"0004none0001a0003bye0005after").await.unwrap();
    for want in [&b"a"[..], b"ok", b"receipt"] {
        assert_eq!(c.recv().await.as_deref(), Some(want));
    }
    // The server closes (a FIN, not a reset) within its linger.
    assert_eq!(c.recv().await, None);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "\"after\" must not reach the handler"
    );
    drop(c);
    stop.cancel();
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.force_closed, 0);
}

/// [`Answer::then_await_close`]: the server writes the answer and waits for the client to
/// close first, so the TIME_WAIT socket ends up on the client (an SMPP `unbind_resp`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_awaiting_the_peers_close_leaves_time_wait_on_the_client() {
    use keepwire::server::{Answer, Request, Server, service_fn};

    let server = Server::bind("127.0.0.1:0", cfg("len:ascii:4"))
        .await
        .unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    let task = tokio::spawn(server.serve(service_fn(|req: Request| async move {
        let a = if &req.frame[..] == b"unbind" {
            Answer::one("unbind_resp").then_await_close()
        } else {
            Answer::one(req.frame)
        };
        Ok::<_, std::convert::Infallible>(a)
    })));

    let mut c = Client::connect(addr, "len:ascii:4").await;
    let ours = c.stream.local_addr().unwrap();
    // A frame after the unbind is dropped, not answered.
    c.send_raw(b"0006unbind0005after").await.unwrap();
    assert_eq!(c.recv().await.as_deref(), Some(&b"unbind_resp"[..]));
    // The server does not close first: nothing more arrives while we wait a little.
    let quiet = tokio::time::timeout(Duration::from_millis(300), c.recv()).await;
    assert!(
        quiet.is_err(),
        "the server closed first or answered: {quiet:?}"
    );
    drop(c);
    eventually("client-side TIME_WAIT", || {
        keepwire::tcpstate::sockets()
            .unwrap()
            .iter()
            .any(|e| e.local == ours && e.remote == addr && e.state == TcpState::TimeWait)
    })
    .await;
    stop.cancel();
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.force_closed, 0);
}
