//! ISO 8583 links over real sockets on loopback: the template's correlation (response MTI +
//! STAN + terminal id) on a mux link answered out of order, a STAN reused after a timeout,
//! sign-on and sign-off, the acquirer simulator's response codes, heartbeats from both sides
//! with no storm, and malformed messages costing only their own connection.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use common::{Client, SOON, raw_server, read_frame};
use keepwire::client::{ClientBuilder, ClientErrorKind, MuxClient, SessionHook};
use keepwire::frame::FrameCodec;
use keepwire::liveness::{Beat, PingConfig};
use keepwire::protocol::drive::{SequenceKey, SimulatorService, server_config};
use keepwire::protocol::{Iso8583, Iso8583Session, Protocol, SimulatorConfig, Template};
use keepwire::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const FRAMING: &str = "len:ascii:4";

fn iso() -> Arc<dyn Protocol> {
    Template::Iso8583.protocol()
}

/// The acquirer simulator of `p` on 127.0.0.1:0; `ping` pings idle links.
async fn simulator(
    p: Arc<dyn Protocol>,
    ping: Option<PingConfig>,
) -> (SocketAddr, CancellationToken) {
    let mut cfg = server_config(&*p);
    cfg.liveness.ping = ping;
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_token();
    let sim = SimulatorConfig {
        accounts: None,
        receipts: false,
        next_message_id: Arc::new(AtomicU64::new(1)),
    };
    tokio::spawn(server.serve(SimulatorService::new(p, sim)));
    (addr, stop)
}

fn builder(p: &Arc<dyn Protocol>, addr: SocketAddr, session: &Iso8583Session) -> ClientBuilder {
    ClientBuilder::new(p.framing(), [addr.to_string()])
        .heartbeat_frames(Some(p.heartbeat()))
        .request_timeout(SOON)
        .connect_timeout(SOON)
        .login_timeout(SOON)
        .session(Some(Arc::new(session.clone()) as Arc<dyn SessionHook>))
}

async fn mux(p: &Arc<dyn Protocol>, addr: SocketAddr, session: &Iso8583Session) -> MuxClient {
    builder(p, addr, session)
        .connect_mux(SequenceKey::new(Arc::clone(p)))
        .await
        .unwrap()
}

/// Field `n` of a frame in text form.
fn field(p: &dyn Protocol, frame: &[u8], n: &str) -> Option<String> {
    p.decode_text(frame).unwrap().get(n).map(ToOwned::to_owned)
}

async fn write_frame(s: &mut TcpStream, codec: &FrameCodec, frame: &[u8]) -> bool {
    let mut out = BytesMut::new();
    codec.encode_to(frame, &mut out).unwrap();
    s.write_all(&out).await.is_ok()
}

// ---------------------------------------------------------------- correlation

/// 1 000 sales in flight at once on one link, with distinct STANs and amounts; a raw acquirer
/// reads all of them and answers in a shuffled order. Every caller gets the response with
/// its own amount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_on_one_mux_link_are_matched_in_any_order() {
    const N: usize = 1000;
    let p = iso();
    let answering = Arc::clone(&p);
    let addr = raw_server(move |mut s| {
        let p = Arc::clone(&answering);
        async move {
            let mut codec = FrameCodec::new(p.framing());
            let mut buf = BytesMut::new();
            let mut sim = p.simulator(&SimulatorConfig::default());
            let mut pending = Vec::new();
            while pending.len() < N {
                let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await else {
                    return;
                };
                pending.push(f);
            }
            // A fixed shuffle (an LCG walk), so a failure reproduces.
            let mut x = 12345usize;
            while !pending.is_empty() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let req = pending.swap_remove((x >> 8) % pending.len());
                for f in sim.answer(&req, SystemTime::now()).frames {
                    if !write_frame(&mut s, &codec, &f).await {
                        return;
                    }
                }
            }
            let mut rest = [0u8; 64];
            let _ = s.read(&mut rest).await;
        }
    })
    .await;
    let session = Iso8583Session::new(Arc::clone(&p), false);
    let link = mux(&p, addr, &session).await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 1..=N {
        let (link, p, s) = (link.clone(), Arc::clone(&p), session.clone());
        calls.spawn(async move {
            let line = format!("0200 3=000000 4={i:012} 41=TERM0001");
            let frame = p.encode_text(&line, s.next_sequence()).unwrap();
            let stan = field(&*p, &frame, "11").unwrap();
            let reply = link.request(frame).await.unwrap();
            (i, stan, reply)
        });
    }
    let mut stans = std::collections::HashSet::new();
    while let Some(r) = calls.join_next().await {
        let (i, stan, reply) = r.unwrap();
        let text = p.decode_text(&reply).unwrap();
        assert_eq!(text.command, "0210", "{text}");
        assert_eq!(text.get("4"), Some(format!("{i:012}").as_str()), "{text}");
        assert_eq!(text.get("11"), Some(stan.as_str()), "{text}");
        assert!(stans.insert(stan), "STANs are distinct");
    }
    assert_eq!(stans.len(), N);
    let st = link.stats();
    assert_eq!((st.unsolicited, st.late_replies), (0, 0), "{st:?}");
    link.close().await;
}

/// One STAN, two terminals: field 41 is part of the key, so each gets its own response; an
/// answer with the right STAN but the wrong MTI answers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_id_and_the_response_mti_are_part_of_the_key() {
    let p = iso();
    let answering = Arc::clone(&p);
    let addr = raw_server(move |mut s| {
        let p = Arc::clone(&answering);
        async move {
            let mut codec = FrameCodec::new(p.framing());
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            while got.len() < 2 {
                let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await else {
                    return;
                };
                got.push(f);
            }
            // First a 0110 carrying the STAN and terminal of the first 0200: no match.
            let stray = p
                .encode_text(&format!("0110 11=000077 39=00 41={}", "TERM0001"), 0)
                .unwrap();
            let _ = write_frame(&mut s, &codec, &stray).await;
            let mut sim = p.simulator(&SimulatorConfig::default());
            for req in got.iter().rev() {
                for f in sim.answer(req, SystemTime::now()).frames {
                    let _ = write_frame(&mut s, &codec, &f).await;
                }
            }
            let mut rest = [0u8; 64];
            let _ = s.read(&mut rest).await;
        }
    })
    .await;
    let session = Iso8583Session::new(Arc::clone(&p), false);
    let link = mux(&p, addr, &session).await;
    let mut unsolicited = link.unsolicited().unwrap();
    let one = p
        .encode_text("0200 4=000000000001 11=000077 41=TERM0001", 0)
        .unwrap();
    let two = p
        .encode_text("0200 4=000000000002 11=000077 41=TERM0002", 0)
        .unwrap();
    let (a, b) = tokio::join!(link.request(one), link.request(two));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(field(&*p, &a, "4").as_deref(), Some("000000000001"));
    assert_eq!(field(&*p, &b, "4").as_deref(), Some("000000000002"));
    let stray = tokio::time::timeout(SOON, unsolicited.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(stray.starts_with(b"0110"), "{stray:?}");
    link.close().await;
}

/// A request times out; the caller reuses its STAN at once. The acquirer's late answer to
/// the first must never be taken as the second's: the second is refused (not sent) until the
/// late answer came, then gets its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stan_reused_after_a_timeout_never_gets_the_other_requests_reply() {
    let p = iso();
    let answering = Arc::clone(&p);
    let addr = raw_server(move |mut s| {
        let p = Arc::clone(&answering);
        async move {
            let mut codec = FrameCodec::new(p.framing());
            let mut buf = BytesMut::new();
            let mut sim = p.simulator(&SimulatorConfig::default());
            let Some(first) = read_frame(&mut s, &mut codec, &mut buf).await else {
                return;
            };
            // Hold the first answer until the next request came, or 700 ms (inside the
            // key's 1 s tombstone window), then send it, late.
            let next = tokio::time::timeout(
                Duration::from_millis(700),
                read_frame(&mut s, &mut codec, &mut buf),
            )
            .await;
            for f in sim.answer(&first, SystemTime::now()).frames {
                let _ = write_frame(&mut s, &codec, &f).await;
            }
            let mut next = match next {
                Ok(Some(f)) => Some(f),
                Ok(None) => return,
                Err(_) => read_frame(&mut s, &mut codec, &mut buf).await,
            };
            while let Some(req) = next {
                for f in sim.answer(&req, SystemTime::now()).frames {
                    let _ = write_frame(&mut s, &codec, &f).await;
                }
                next = read_frame(&mut s, &mut codec, &mut buf).await;
            }
        }
    })
    .await;
    let session = Iso8583Session::new(Arc::clone(&p), false);
    let link = mux(&p, addr, &session).await;
    let mut unsolicited = link.unsolicited().unwrap();
    let first = p.encode_text("0200 4=000000000001 11=000042", 0).unwrap();
    let e = link
        .request_timeout(first, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(e.is_timeout() && e.may_have_been_sent(), "{e}");
    let retry = async {
        let mut refusals = 0;
        loop {
            let second = p.encode_text("0200 4=000000000002 11=000042", 0).unwrap();
            match link.request(second).await {
                Ok(r) => return (r, refusals),
                Err(e) => {
                    assert_eq!(e.kind(), ClientErrorKind::Key, "{e}");
                    assert!(e.is_not_sent(), "{e}");
                    refusals += 1;
                    let late = unsolicited.recv().await.unwrap();
                    assert_eq!(field(&*p, &late, "4").as_deref(), Some("000000000001"));
                }
            }
        }
    };
    let (reply, refusals) = tokio::time::timeout(SOON, retry).await.unwrap();
    assert_eq!(
        field(&*p, &reply, "4").as_deref(),
        Some("000000000002"),
        "the retry took the other request's reply"
    );
    assert!(refusals <= 1, "{refusals}");
    assert_eq!(link.stats().late_replies, 1);
    link.close().await;
}

// ---------------------------------------------------------------- session

/// With sign-on, the first message on the link is 0800 / 70=001 and the last before the FIN
/// is 0800 / 70=002; requests go between them. A refused sign-on (39=91) is a login error
/// naming the code, and nothing else is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_on_first_sign_off_last_and_a_refusal_names_field_39() {
    let p = iso();
    let (tx, mut seen) = tokio::sync::mpsc::channel::<Bytes>(64);
    let answering = Arc::clone(&p);
    let addr = raw_server(move |mut s| {
        let (p, tx) = (Arc::clone(&answering), tx.clone());
        async move {
            let mut codec = FrameCodec::new(p.framing());
            let mut buf = BytesMut::new();
            let mut sim = p.simulator(&SimulatorConfig::default());
            while let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await {
                let _ = tx.send(f.clone()).await;
                for r in sim.answer(&f, SystemTime::now()).frames {
                    let _ = write_frame(&mut s, &codec, &r).await;
                }
            }
            let _ = tx.send(Bytes::from_static(b"EOF")).await;
        }
    })
    .await;
    let session = Iso8583Session::new(Arc::clone(&p), true);
    let link = mux(&p, addr, &session).await;
    let sale = p
        .encode_text("0200 4=000000001000", session.next_sequence())
        .unwrap();
    let reply = link.request(sale).await.unwrap();
    assert_eq!(field(&*p, &reply, "39").as_deref(), Some("00"));
    link.close().await;
    let mut order = Vec::new();
    while let Some(f) = tokio::time::timeout(SOON, seen.recv()).await.unwrap() {
        if &f[..] == b"EOF" {
            break;
        }
        let t = p.decode_text(&f).unwrap();
        order.push(format!("{} {}", t.command, t.get("70").unwrap_or("-")));
    }
    assert_eq!(order, ["0800 001", "0200 -", "0800 002"]);

    // A partner that refuses the sign-on.
    let refusing = Arc::clone(&p);
    let addr = raw_server(move |mut s| {
        let p = Arc::clone(&refusing);
        async move {
            let mut codec = FrameCodec::new(p.framing());
            let mut buf = BytesMut::new();
            let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await else {
                return;
            };
            let stan = field(&*p, &f, "11").unwrap();
            let no = p
                .encode_text(&format!("0810 11={stan} 39=91 70=001"), 0)
                .unwrap();
            let _ = write_frame(&mut s, &codec, &no).await;
            let mut rest = [0u8; 64];
            let _ = s.read(&mut rest).await;
        }
    })
    .await;
    let e = builder(&p, addr, &session)
        .connect_mux(SequenceKey::new(Arc::clone(&p)))
        .await
        .unwrap_err();
    assert!(e.is_login() && e.is_not_sent(), "{e}");
    assert!(e.to_string().contains("\"91\""), "{e}");
}

/// A partner that sends its own network-management request (a cutover) to an idle client
/// gets the 0810 from the client's session at once, with 39 = 00 and its STAN mirrored; the
/// request also reaches the caller as a message from the partner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partners_own_0800_is_answered_by_the_client_session() {
    let p = iso();
    let (tx, mut answered) = tokio::sync::mpsc::channel::<Bytes>(4);
    let partner = Arc::clone(&p);
    let addr = raw_server(move |mut s| {
        let (p, tx) = (Arc::clone(&partner), tx.clone());
        async move {
            let mut codec = FrameCodec::new(p.framing());
            let mut buf = BytesMut::new();
            let cutover = p.encode_text("0800 11=000555 70=201", 0).unwrap();
            if !write_frame(&mut s, &codec, &cutover).await {
                return;
            }
            if let Some(f) = read_frame(&mut s, &mut codec, &mut buf).await {
                let _ = tx.send(f).await;
            }
            let mut rest = [0u8; 64];
            let _ = s.read(&mut rest).await;
        }
    })
    .await;
    let session = Iso8583Session::new(Arc::clone(&p), false);
    let link = mux(&p, addr, &session).await;
    let mut unsolicited = link.unsolicited().unwrap();
    let answer = tokio::time::timeout(SOON, answered.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        p.decode_text(&answer).unwrap().to_string(),
        "0810 11=000555 39=00 70=201"
    );
    let seen = tokio::time::timeout(SOON, unsolicited.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(seen.starts_with(b"0800"), "{seen:?}");
    link.close().await;
}

/// The acquirer simulator's `--respond` rules: the declined amount gets 51, others 00 with an
/// authorization id; a partner-initiated 0800 from the simulator side is answered by the
/// client session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_declines_by_rule_and_approves_the_rest() {
    let rules = vec!["4=000000009999:51".parse().unwrap()];
    let p: Arc<dyn Protocol> = Arc::new(Iso8583::ascii().with_rules(rules));
    let (addr, stop) = simulator(Arc::clone(&p), None).await;
    let session = Iso8583Session::new(Arc::clone(&p), false);
    let link = mux(&p, addr, &session).await;
    for (amount, code, auth) in [("000000009999", "51", false), ("000000001000", "00", true)] {
        let req = p
            .encode_text(
                &format!("0200 4={amount} 41=TERM0001"),
                session.next_sequence(),
            )
            .unwrap();
        let reply = link.request(req).await.unwrap();
        assert_eq!(field(&*p, &reply, "39").as_deref(), Some(code));
        assert_eq!(field(&*p, &reply, "38").is_some(), auth);
        assert_eq!(field(&*p, &reply, "41").as_deref(), Some("TERM0001"));
    }
    // A network-management request gets its 0810 from the simulator.
    let cutover = p
        .encode_text("0800 70=201", session.next_sequence())
        .unwrap();
    let reply = link.request(cutover).await.unwrap();
    assert!(reply.starts_with(b"0810"));
    link.close().await;
    stop.cancel();
}

// ---------------------------------------------------------------- heartbeats

struct Counts {
    pings: [AtomicUsize; 2],
    pongs: [AtomicUsize; 2],
}

/// A relay between a client and `to` that counts echo tests each way (0: client to server).
async fn counting_relay(to: SocketAddr, counts: Arc<Counts>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((c, _)) = l.accept().await else { return };
        let s = TcpStream::connect(to).await.unwrap();
        let (cr, cw) = c.into_split();
        let (sr, sw) = s.into_split();
        let up = pump(cr, sw, Arc::clone(&counts), 0);
        let down = pump(sr, cw, counts, 1);
        tokio::join!(up, down);
    });
    addr
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    counts: Arc<Counts>,
    dir: usize,
) {
    let p = iso();
    let hb = p.heartbeat();
    let mut codec = FrameCodec::new(p.framing());
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some(f)) = tokio_util::codec::Decoder::decode(&mut codec, &mut buf) {
            match hb.classify(&f) {
                Some(Beat::Ping) => counts.pings[dir].fetch_add(1, Ordering::Relaxed),
                Some(Beat::Pong) => counts.pongs[dir].fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
        if w.write_all(&chunk[..n]).await.is_err() {
            return;
        }
    }
}

/// Both sides ping an idle link every 150 ms: each ping gets one 0810 from the other side,
/// pongs are never answered, and the counts stay near one a side per interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_from_both_sides_are_answered_once_with_no_storm() {
    let p = iso();
    let every = PingConfig {
        interval: Duration::from_millis(150),
        timeout: Duration::from_secs(2),
        misses: 3,
    };
    let (addr, stop) = simulator(Arc::clone(&p), Some(every)).await;
    let counts = Arc::new(Counts {
        pings: [AtomicUsize::new(0), AtomicUsize::new(0)],
        pongs: [AtomicUsize::new(0), AtomicUsize::new(0)],
    });
    let relay = counting_relay(addr, Arc::clone(&counts)).await;
    let session = Iso8583Session::new(Arc::clone(&p), false);
    let link = builder(&p, relay, &session)
        .ping(Some(every))
        .connect_mux(SequenceKey::new(Arc::clone(&p)))
        .await
        .unwrap();
    let load = |a: &[AtomicUsize; 2]| (a[0].load(Ordering::Relaxed), a[1].load(Ordering::Relaxed));
    // Wait (bounded) until both sides have pinged, then watch a fixed window.
    common::eventually("both sides ping", || {
        let (c, s) = load(&counts.pings);
        c >= 1 && s >= 1
    })
    .await;
    let (c0, s0) = load(&counts.pings);
    let window = Duration::from_millis(1500);
    tokio::time::sleep(window).await;
    let (c, s) = load(&counts.pings);
    let (client_pongs, server_pongs) = load(&counts.pongs);
    // One ping a side per 150 ms is 10 in the window; a storm would show hundreds.
    assert!(
        c - c0 <= 12 && s - s0 <= 12,
        "no storm: {c} client, {s} server pings"
    );
    // Every ping is answered once by the other side (the last may be in flight).
    assert!(
        server_pongs <= c && server_pongs + 2 >= c,
        "{server_pongs} pongs, {c} pings"
    );
    assert!(
        client_pongs <= s && client_pongs + 2 >= s,
        "{client_pongs} pongs, {s} pings"
    );
    let st = link.stats();
    assert!(st.pongs_received >= 1 && st.pings_answered >= 1, "{st:?}");
    assert!(link.is_connected());
    // Requests still flow between the heartbeats.
    let req = p
        .encode_text("0200 4=000000000100", session.next_sequence())
        .unwrap();
    assert!(link.request(req).await.unwrap().starts_with(b"0210"));
    link.close().await;
    stop.cancel();
}

// ---------------------------------------------------------------- hostile peers

/// Messages that do not decode (a bad bitmap, a field past the end, a length header beyond
/// the bytes sent, bytes that are no MTI) cost their sender its connection; the simulator
/// keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_cost_the_peer_its_connection_never_the_simulator() {
    let p = iso();
    let (addr, stop) = simulator(Arc::clone(&p), None).await;
    let good_frame = p.encode_text("0200 4=000000000100 11=000001", 0).unwrap();
    let mut bystander = Client::connect(addr, FRAMING).await;
    for bad in [
        &b"0200ZZZZZZZZZZZZZZZZ"[..],
        b"02007000000000000000",
        b"0200300000000000000000000",
        b"\xff\xff\xff\xff",
        b"0200",
    ] {
        let mut c = Client::connect(addr, FRAMING).await;
        c.send(bad).await;
        c.closed_within(SOON).await;
        bystander.send(&good_frame).await;
        let reply = bystander.recv().await.expect("the bystander is answered");
        assert!(reply.starts_with(b"0210"), "{bad:?}");
    }
    // A length header promising more than ever comes, then EOF.
    let mut c = Client::connect(addr, FRAMING).await;
    c.send_raw(b"0100020012").await.unwrap();
    c.stream.shutdown().await.unwrap();
    c.closed_within(SOON).await;
    // A length header that is not digits.
    let mut c = Client::connect(addr, FRAMING).await;
    c.send_raw(b"00x9020000").await.unwrap();
    c.closed_within(SOON).await;
    bystander.send(&good_frame).await;
    assert!(bystander.recv().await.unwrap().starts_with(b"0210"));
    stop.cancel();
}
