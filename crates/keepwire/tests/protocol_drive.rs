//! Protocol templates driven by the server and the clients (`protocol::drive`): the
//! simulator service on a real server, clients that log in through their session hook,
//! heartbeats both ways with no storm (PDUs counted on the wire by a relay), a pipelined
//! burst on one mux connection, malformed PDUs and requests before login.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use common::Client;
use keepwire::client::{ClientBuilder, MuxClient, SessionHook};
use keepwire::liveness::PingConfig;
use keepwire::protocol::drive::{ClientSession, SequenceKey, SimulatorService, server_config};
use keepwire::protocol::{Account, BindMode, Protocol, SimulatorConfig, Template};
use keepwire::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BOUND: Duration = Duration::from_secs(10);

fn account(id: &str, secret: &str) -> Account {
    Account {
        id: id.into(),
        secret: secret.into(),
    }
}

/// A simulator of `t` on 127.0.0.1:0; `accounts` limits the logins; `ping` pings idle
/// clients.
async fn simulator(
    t: Template,
    accounts: Option<Vec<Account>>,
    receipts: bool,
    ping: Option<PingConfig>,
) -> (SocketAddr, tokio_util::sync::CancellationToken) {
    let p = t.protocol();
    let mut cfg = server_config(&*p);
    cfg.liveness.ping = ping;
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    let sim = SimulatorConfig {
        accounts,
        receipts,
        next_message_id: Arc::new(AtomicU64::new(1)),
    };
    tokio::spawn(server.serve(SimulatorService::new(p, sim)));
    (addr, stop)
}

fn session(t: Template, a: Account) -> ClientSession {
    ClientSession::new(t.protocol(), a, BindMode::Transceiver)
}

fn builder(p: &dyn Protocol, addr: SocketAddr, s: &ClientSession) -> ClientBuilder {
    ClientBuilder::new(p.framing(), [addr.to_string()])
        .heartbeat_frames(Some(p.heartbeat()))
        .request_timeout(BOUND)
        .session(Some(Arc::new(s.clone()) as Arc<dyn SessionHook>))
}

fn submit_line(t: Template) -> &'static str {
    keepwire::bench::protocol::submit_line(&*t.protocol())
}

const TEMPLATES: [Template; 3] = [Template::Smpp, Template::Cmpp3, Template::Cmpp2];

#[tokio::test]
async fn every_template_logs_in_submits_and_matches_by_sequence() {
    for t in TEMPLATES {
        let p = t.protocol();
        let (addr, stop) = simulator(t, Some(vec![account("901234", "s3cret")]), false, None).await;
        let s = session(t, account("901234", "s3cret"));
        let mux = builder(&*p, addr, &s)
            .connect_mux(SequenceKey::new(Arc::clone(&p)))
            .await
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        let seq = s.next_sequence();
        let frame = p.encode_text(submit_line(t), seq).unwrap();
        let reply = mux.request(frame).await.unwrap();
        assert!(p.is_response(&reply), "{t}");
        assert_eq!(p.sequence(&reply), Some(seq), "{t}");
        let text = p.decode_text(&reply).unwrap().to_string();
        assert!(text.contains("_resp"), "{t}: {text}");
        mux.close().await;
        stop.cancel();
    }
}

#[tokio::test]
async fn a_wrong_secret_is_a_login_error_naming_the_status() {
    for t in TEMPLATES {
        let p = t.protocol();
        let (addr, stop) = simulator(t, Some(vec![account("901234", "right")]), false, None).await;
        let s = session(t, account("901234", "wrong"));
        let e = builder(&*p, addr, &s)
            .connect_mux(SequenceKey::new(Arc::clone(&p)))
            .await
            .unwrap_err();
        assert!(e.is_login(), "{t}: {e}");
        assert!(e.is_not_sent(), "{t}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains("status") || msg.contains("ESME_"),
            "{t}: the partner's status is named: {msg}"
        );
        // A short client is refused the same way, every time it connects.
        let short = builder(&*p, addr, &s).build_short();
        let frame = p.encode_text(submit_line(t), s.next_sequence()).unwrap();
        assert!(short.request(frame).await.unwrap_err().is_login(), "{t}");
        stop.cancel();
    }
}

#[tokio::test]
async fn short_clients_log_in_submit_and_log_out_per_request() {
    for t in TEMPLATES {
        let p = t.protocol();
        let (addr, stop) = simulator(t, None, false, None).await;
        let s = session(t, account("901234", "any"));
        let short = builder(&*p, addr, &s).build_short();
        for _ in 0..3 {
            let seq = s.next_sequence();
            let frame = p.encode_text(submit_line(t), seq).unwrap();
            let reply = short.request(frame).await.unwrap();
            assert_eq!(p.sequence(&reply), Some(seq), "{t}");
        }
        assert_eq!(short.stats().connects, 3, "{t}: a connection per request");
        stop.cancel();
    }
}

#[tokio::test]
async fn a_pipelined_burst_of_1000_submits_on_one_mux_connection_all_matched() {
    let t = Template::Smpp;
    let p = t.protocol();
    let (addr, stop) = simulator(t, None, true, None).await;
    let s = session(t, account("burst", "x"));
    let mux = builder(&*p, addr, &s)
        .connect_mux(SequenceKey::new(Arc::clone(&p)))
        .await
        .unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let seq = s.next_sequence();
        let frame = p.encode_text(submit_line(t), seq).unwrap();
        let mux = mux.clone();
        calls.spawn(async move { (seq, mux.request(frame).await) });
    }
    let mut ok = 0;
    while let Some(r) = calls.join_next().await {
        let (seq, reply) = r.unwrap();
        let reply = reply.unwrap_or_else(|e| panic!("seq {seq}: {e}"));
        assert_eq!(p.sequence(&reply), Some(seq));
        assert!(p.decode_text(&reply).unwrap().command == "submit_sm_resp");
        ok += 1;
    }
    assert_eq!(ok, 1000);
    assert_eq!(mux.stats().connects, 1);
    // With receipts on, each response was followed by a deliver_sm: no request's reply (it
    // has no key), so the unsolicited stream counts it, and the session answered it.
    common::eventually("1000 receipts", || mux.stats().unsolicited >= 1000).await;
    mux.close().await;
    stop.cancel();
}

/// A relay between a client and a server that counts the PDUs (len:be:4:incl frames) going
/// each way whose command id is `ping` or `pong`.
struct Counts {
    client_pings: AtomicUsize,
    server_pings: AtomicUsize,
    pongs: AtomicUsize,
}

async fn counting_relay(upstream: SocketAddr, ping: u32, counts: Arc<Counts>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((down, _)) = l.accept().await {
            let up = TcpStream::connect(upstream).await.unwrap();
            let (dr, dw) = down.into_split();
            let (ur, uw) = up.into_split();
            let c = Arc::clone(&counts);
            tokio::spawn(pump(dr, uw, ping, c, true));
            tokio::spawn(pump(ur, dw, ping, Arc::clone(&counts), false));
        }
    });
    addr
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    ping: u32,
    counts: Arc<Counts>,
    from_client: bool,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                let _ = w.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 8 {
            let len = u32::from_be_bytes(buf[0..4].try_into().unwrap()) as usize;
            if len < 8 || buf.len() < len {
                break;
            }
            let id = u32::from_be_bytes(buf[4..8].try_into().unwrap());
            if id == ping {
                let c = if from_client {
                    &counts.client_pings
                } else {
                    &counts.server_pings
                };
                c.fetch_add(1, Ordering::Relaxed);
            } else if id == ping | 0x8000_0000 {
                counts.pongs.fetch_add(1, Ordering::Relaxed);
            }
            buf.drain(..len);
        }
        if w.write_all(&chunk[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn heartbeats_both_ways_are_answered_once_with_no_storm() {
    for (t, ping_id) in [(Template::Smpp, 0x15u32), (Template::Cmpp3, 0x08)] {
        let p = t.protocol();
        let every = PingConfig {
            interval: Duration::from_millis(150),
            timeout: Duration::from_secs(2),
            misses: 3,
        };
        let (addr, stop) = simulator(t, None, false, Some(every)).await;
        let counts = Arc::new(Counts {
            client_pings: AtomicUsize::new(0),
            server_pings: AtomicUsize::new(0),
            pongs: AtomicUsize::new(0),
        });
        let relay = counting_relay(addr, ping_id, Arc::clone(&counts)).await;
        let s = session(t, account("901234", "x"));
        let mux: MuxClient = builder(&*p, relay, &s)
            .ping(Some(every))
            .connect_mux(SequenceKey::new(Arc::clone(&p)))
            .await
            .unwrap();
        // Idle for a bounded window: both sides ping about every 150 ms.
        let window = Duration::from_millis(1500);
        tokio::time::sleep(window).await;
        let (c, sv, pongs) = (
            counts.client_pings.load(Ordering::Relaxed),
            counts.server_pings.load(Ordering::Relaxed),
            counts.pongs.load(Ordering::Relaxed),
        );
        // Each side pings at most once per interval (10 in 1.5 s), and every ping gets at
        // most one pong: a storm would show hundreds.
        assert!(c + sv >= 2, "{t}: some pings went out: {c} + {sv}");
        assert!(
            c <= 11 && sv <= 11,
            "{t}: no storm: {c} client, {sv} server pings"
        );
        assert!(pongs <= c + sv, "{t}: {pongs} pongs for {} pings", c + sv);
        assert!(
            pongs + 2 >= c + sv,
            "{t}: pings answered: {pongs} of {}",
            c + sv
        );
        assert!(mux.is_connected(), "{t}: the link stayed up");
        mux.close().await;
        stop.cancel();
    }
}

/// A raw SMPP client: `bind_transceiver` by hand with the template's login PDU.
async fn raw_bound(addr: SocketAddr) -> Client {
    let p = Template::Smpp.protocol();
    let mut c = Client::connect(addr, "len:be:4:incl").await;
    let login = p.login(
        &account("raw", "x"),
        BindMode::Transceiver,
        1,
        std::time::SystemTime::now(),
    );
    c.send(&login).await;
    let resp = c.recv().await.expect("bind answered");
    p.check_login(&account("raw", "x"), &login, &resp).unwrap();
    c
}

/// SMPP header fields of a frame without its length: (command_id, command_status, seq).
fn header(f: &[u8]) -> (u32, u32, u32) {
    let word = |i: usize| u32::from_be_bytes(f[i..i + 4].try_into().unwrap());
    (word(0), word(4), word(8))
}

#[tokio::test]
async fn a_request_before_login_is_refused_then_closed() {
    let (addr, stop) = simulator(Template::Smpp, None, false, None).await;
    let p = Template::Smpp.protocol();
    let mut c = Client::connect(addr, "len:be:4:incl").await;
    c.send(&p.encode_text(submit_line(Template::Smpp), 7).unwrap())
        .await;
    let f = c.recv().await.expect("an answer before the close");
    let (_, status, seq) = header(&f);
    assert_eq!((status, seq), (0x04, 7), "ESME_RINVBNDSTS for seq 7");
    c.closed_within(BOUND).await;
    // CMPP too: a SUBMIT before CONNECT is refused and closed.
    let (addr, stop2) = simulator(Template::Cmpp3, None, false, None).await;
    let p = Template::Cmpp3.protocol();
    let mut c = Client::connect(addr, "len:be:4:incl").await;
    c.send(&p.encode_text(submit_line(Template::Cmpp3), 9).unwrap())
        .await;
    // The ISMG answers with an error response or a TERMINATE, then closes.
    if let Some(f) = c.recv().await {
        let pdu = p.decode_text(&f).unwrap();
        assert!(p.is_response(&f) || pdu.command == "terminate", "{pdu:?}");
    }
    c.closed_within(BOUND).await;
    stop.cancel();
    stop2.cancel();
}

#[tokio::test]
async fn malformed_pdus_are_answered_or_closed_never_a_panic() {
    let (addr, stop) = simulator(Template::Smpp, None, false, None).await;
    // An unknown command id: generic_nack ESME_RINVCMDID, the link stays up.
    let mut c = raw_bound(addr).await;
    c.send(b"\x00\x00\x01\x99\x00\x00\x00\x00\x00\x00\x00\x05")
        .await;
    let (id, status, seq) = header(&c.recv().await.expect("generic_nack"));
    assert_eq!((id, status, seq), (0x8000_0000, 0x03, 5));
    // A truncated C-string (submit_sm whose service_type never ends): a nack, then closed.
    c.send(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x06CMT")
        .await;
    let (id, status, _) = header(&c.recv().await.expect("an answer to the bad submit"));
    assert!(id & 0x8000_0000 != 0 && status != 0, "{id:#x} {status:#x}");
    c.closed_within(BOUND).await;
    // A length shorter than the header (8 < 16): answered and closed, or closed.
    let mut c = raw_bound(addr).await;
    c.send_raw(b"\x00\x00\x00\x08\x00\x00\x00\x04")
        .await
        .unwrap();
    if let Some(f) = c.recv().await {
        assert!(f.len() >= 4 && f[0] & 0x80 != 0, "a response: {f:?}");
    }
    c.closed_within(BOUND).await;
    // The server is still there: a new client binds.
    raw_bound(addr).await;
    stop.cancel();
}
