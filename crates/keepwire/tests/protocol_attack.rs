//! Hostile review of the protocol templates on real sockets: each test failed on the code it
//! was written against, or covers a scenario no other test did.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use keepwire::client::{ClientBuilder, SessionHook};
use keepwire::protocol::drive::{ClientSession, SimulatorService, server_config};
use keepwire::protocol::{Account, BindMode, Protocol, SimulatorConfig, Template};
use keepwire::server::Server;
use keepwire::tcpstate::TcpState;

const BOUND: Duration = Duration::from_secs(10);
const TEMPLATES: [Template; 3] = [Template::Smpp, Template::Cmpp3, Template::Cmpp2];

fn account() -> Account {
    Account {
        id: "901234".into(),
        secret: "s3cret".into(),
    }
}

/// A simulator of `t` on `listen` with `receipts`, accepting `accounts` (all when `None`).
async fn simulator_on(
    listen: &str,
    t: Template,
    accounts: Option<Vec<Account>>,
    receipts: bool,
) -> (SocketAddr, tokio_util::sync::CancellationToken) {
    let p = t.protocol();
    let cfg = server_config(&*p);
    let server = Server::bind(listen, cfg).await.unwrap();
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

fn builder(p: &dyn Protocol, addr: SocketAddr, s: &ClientSession) -> ClientBuilder {
    ClientBuilder::new(p.framing(), [addr.to_string()])
        .heartbeat_frames(Some(p.heartbeat()))
        .request_timeout(BOUND)
        .session(Some(Arc::new(s.clone()) as Arc<dyn SessionHook>))
}

/// Waits (bounded) until `addr`'s TIME_WAIT sockets on the client side reach `n`; returns
/// (server side, client side). Sides are told by the full address: a client socket of
/// another test may hold `addr`'s port number on another loopback address.
async fn time_wait(addr: SocketAddr, n: usize) -> (usize, usize) {
    let deadline = Instant::now() + BOUND;
    loop {
        let all = keepwire::tcpstate::sockets().unwrap();
        let tw = all.iter().filter(|e| e.state == TcpState::TimeWait);
        let counts = (
            tw.clone().filter(|e| e.local == addr).count(),
            tw.filter(|e| e.remote == addr).count(),
        );
        if counts.1 >= n || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Known defect 2: the simulators closed the connection themselves after answering a logout
/// (unbind / TERMINATE), so every short link left its TIME_WAIT socket on the simulator.
/// Now the simulator waits for the client's FIN: the client holds TIME_WAIT.
#[tokio::test]
async fn a_logout_answer_leaves_time_wait_on_the_client_not_the_simulator() {
    const LINKS: usize = 5;
    // A loopback address of its own per template: no other test's sockets share it.
    for (t, listen) in TEMPLATES
        .into_iter()
        .zip(["127.77.0.1:0", "127.77.0.2:0", "127.77.0.3:0"])
    {
        let p = t.protocol();
        let (addr, stop) = simulator_on(listen, t, Some(vec![account()]), false).await;
        let s = ClientSession::new(Arc::clone(&p), account(), BindMode::Transceiver);
        let short = builder(&*p, addr, &s).build_short();
        let started = Instant::now();
        for _ in 0..LINKS {
            let seq = s.next_sequence();
            let frame = p
                .encode_text(keepwire::bench::protocol::submit_line(&*p), seq)
                .unwrap();
            let reply = short.request(frame).await.unwrap();
            assert_eq!(p.sequence(&reply), Some(seq), "{t}");
        }
        // Neither side waits out the other's bound (short_close_wait 5 s, login_timeout 5 s).
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{t}: {:?}",
            started.elapsed()
        );
        let (server, client) = time_wait(addr, LINKS).await;
        assert_eq!(
            (server, client),
            (0, LINKS),
            "{t}: TIME_WAIT (server, client)"
        );
        stop.cancel();
    }
}

/// One SMPP PDU: command id, status, sequence, body.
fn pdu(id: u32, status: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(16 + body.len()).unwrap();
    let mut v = len.to_be_bytes().to_vec();
    for x in [id, status, seq] {
        v.extend(x.to_be_bytes());
    }
    v.extend(body);
    v
}

/// Reads one PDU: (command id, sequence).
async fn read_pdu(s: &mut tokio::net::TcpStream) -> Option<(u32, u32)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 16];
    s.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes(head[..4].try_into().ok()?) as usize;
    let mut body = vec![0u8; len.checked_sub(16)?.min(65536)];
    s.read_exact(&mut body).await.ok()?;
    let id = u32::from_be_bytes(head[4..8].try_into().ok()?);
    let seq = u32::from_be_bytes(head[12..16].try_into().ok()?);
    Some((id, seq))
}

/// A raw SMPP partner on 127.0.0.1:0: each connection runs `script` on the socket.
async fn raw_partner<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(script(s));
        }
    });
    addr
}

fn smpp_session() -> (Arc<dyn Protocol>, ClientSession) {
    let p = Template::Smpp.protocol();
    let s = ClientSession::new(Arc::clone(&p), account(), BindMode::Transceiver);
    (p, s)
}

/// A partner that never answers the login: the connect fails within `login_timeout`, as a
/// login error or timeout, not a hang.
#[tokio::test]
async fn a_login_never_answered_fails_within_login_timeout() {
    let addr = raw_partner(|mut s| async move { while read_pdu(&mut s).await.is_some() {} }).await;
    let (p, s) = smpp_session();
    let started = Instant::now();
    let r = tokio::time::timeout(
        BOUND,
        builder(&*p, addr, &s)
            .login_timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_millis(300))
            .connect_mux(keepwire::protocol::drive::SequenceKey::new(Arc::clone(&p))),
    )
    .await
    .expect("connect_mux hung past the login timeout");
    assert!(r.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A login answered by generic_nack (same sequence number) is refused at once, naming its
/// status.
#[tokio::test]
async fn a_login_answered_by_generic_nack_is_refused_naming_it() {
    use tokio::io::AsyncWriteExt;
    let addr = raw_partner(|mut s| async move {
        while let Some((_, seq)) = read_pdu(&mut s).await {
            let _ = s.write_all(&pdu(0x8000_0000, 0x0000_0003, seq, b"")).await;
        }
    })
    .await;
    let (p, s) = smpp_session();
    let started = Instant::now();
    let Err(e) = builder(&*p, addr, &s)
        .login_timeout(Duration::from_secs(3))
        .connect_mux(keepwire::protocol::drive::SequenceKey::new(Arc::clone(&p)))
        .await
    else {
        panic!("a generic_nack is no bind_resp");
    };
    assert!(e.to_string().contains("ESME_RINVCMDID"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// The partner sends a deliver_sm carrying the sequence number of our outstanding submit,
/// then floods deliver_sm while we wait: neither is taken as the response, each gets its
/// deliver_sm_resp, and the real submit_sm_resp still matches.
#[tokio::test]
async fn a_deliver_sm_with_our_sequence_and_a_flood_are_not_our_response() {
    use tokio::io::AsyncWriteExt;
    const FLOOD: u32 = 5_000;
    let (answers_tx, mut answers) = tokio::sync::mpsc::channel::<u32>(16);
    let addr = raw_partner(move |mut s| {
        let answers_tx = answers_tx.clone();
        async move {
            let mut resps = 0u32;
            while let Some((id, seq)) = read_pdu(&mut s).await {
                match id {
                    0x09 => {
                        let _ = s.write_all(&pdu(0x8000_0009, 0, seq, b"x\0")).await;
                    }
                    0x04 => {
                        let mut out = pdu(0x05, 0, seq, &[0; 17]);
                        for i in 0..FLOOD {
                            out.extend(pdu(0x05, 0, 0x7FFF_0000 + i, &[0; 17]));
                        }
                        let _ = s.write_all(&out).await;
                    }
                    0x8000_0005 => {
                        resps += 1;
                        if resps == FLOOD + 1 {
                            let _ = s.write_all(&pdu(0x8000_0004, 0, 2, b"42\0")).await;
                            let _ = answers_tx.send(resps).await;
                        }
                    }
                    0x06 => {
                        let _ = s.write_all(&pdu(0x8000_0006, 0, seq, b"")).await;
                    }
                    _ => {}
                }
            }
        }
    })
    .await;
    let (p, s) = smpp_session();
    let mux = builder(&*p, addr, &s)
        .connect_mux(keepwire::protocol::drive::SequenceKey::new(Arc::clone(&p)))
        .await
        .unwrap();
    let seq = s.next_sequence();
    assert_eq!(seq, 2);
    let frame = p.encode_text("submit_sm short_message=hi", seq).unwrap();
    let reply = tokio::time::timeout(BOUND, mux.request(frame))
        .await
        .expect("the submit's response never matched")
        .unwrap();
    assert_eq!(
        p.decode_text(&reply).unwrap().to_string(),
        "submit_sm_resp seq=2 status=ESME_ROK message_id=42"
    );
    assert_eq!(
        tokio::time::timeout(BOUND, answers.recv()).await.unwrap(),
        Some(FLOOD + 1)
    );
    let stats = mux.stats();
    assert_eq!(stats.unsolicited, u64::from(FLOOD + 1));
    mux.close().await;
}

/// Raw length headers the simulators must refuse by closing (shorter than the length
/// field, an empty PDU, over the maximum, 0xFFFFFFFF), never a panic; the server lives on.
#[tokio::test]
async fn absurd_command_lengths_close_the_link_and_the_server_lives_on() {
    for t in [Template::Smpp, Template::Cmpp3] {
        let (addr, stop) = simulator_on("127.0.0.1:0", t, None, false).await;
        for head in [
            &b"\x00\x00\x00\x00"[..],
            b"\x00\x00\x00\x03",
            b"\x00\x00\x00\x04",
            b"\x00\x00\x00\x08\x00\x00\x00\x04",
            b"\x7f\xff\xff\xff\x00\x00\x00\x04",
            b"\xff\xff\xff\xff\x00\x00\x00\x04",
        ] {
            let mut c = common::Client::connect(addr, "len:be:4:incl").await;
            c.send_raw(head).await.unwrap();
            // Whatever it answers first (a generic_nack), it closes.
            c.closed_within(BOUND).await;
        }
        // Still serving: a login split into one-byte segments at every offset is answered.
        let p = t.protocol();
        let login = p.login(
            &account(),
            BindMode::Transceiver,
            7,
            std::time::SystemTime::now(),
        );
        let mut wire = u32::try_from(login.len() + 4)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        wire.extend_from_slice(&login);
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = common::Client::from_stream(stream, "len:be:4:incl");
        for b in &wire {
            c.send_raw(std::slice::from_ref(b)).await.unwrap();
            tokio::task::yield_now().await;
        }
        let answer = c.recv().await.expect("the login's answer");
        assert_eq!(p.sequence(&answer), Some(7), "{t}");
        assert!(p.check_login(&account(), &login, &answer).is_ok(), "{t}");
        // Sequence numbers at the edges are echoed, the heartbeat range included.
        for seq in [0, 0x7FFF_0001, 0x7FFF_FFFF, 0xFFFF_FFFF] {
            let submit = p
                .encode_text(keepwire::bench::protocol::submit_line(&*p), seq)
                .unwrap();
            c.send(&submit).await;
            let resp = c.recv().await.expect("a response");
            assert!(p.is_response(&resp), "{t}");
            assert_eq!(p.sequence(&resp), Some(seq), "{t}");
        }
        stop.cancel();
    }
}
