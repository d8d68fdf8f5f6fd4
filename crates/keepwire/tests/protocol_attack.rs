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
use keepwire::tcpstate::{TcpState, port_states_now};

const BOUND: Duration = Duration::from_secs(10);
const TEMPLATES: [Template; 3] = [Template::Smpp, Template::Cmpp3, Template::Cmpp2];

fn account() -> Account {
    Account {
        id: "901234".into(),
        secret: "s3cret".into(),
    }
}

/// A simulator of `t` on 127.0.0.1:0 with `receipts`, accepting `accounts` (all when `None`).
async fn simulator(
    t: Template,
    accounts: Option<Vec<Account>>,
    receipts: bool,
) -> (SocketAddr, tokio_util::sync::CancellationToken) {
    let p = t.protocol();
    let cfg = server_config(&*p);
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

fn builder(p: &dyn Protocol, addr: SocketAddr, s: &ClientSession) -> ClientBuilder {
    ClientBuilder::new(p.framing(), [addr.to_string()])
        .heartbeat_frames(Some(p.heartbeat()))
        .request_timeout(BOUND)
        .session(Some(Arc::new(s.clone()) as Arc<dyn SessionHook>))
}

/// Waits (bounded) until `port`'s TIME_WAIT sockets on the client side reach `n`; returns
/// (server side, client side).
async fn time_wait(port: u16, n: usize) -> (usize, usize) {
    let deadline = Instant::now() + BOUND;
    loop {
        let states = port_states_now(port).unwrap();
        let counts = (
            states.local_count(TcpState::TimeWait),
            states.remote_count(TcpState::TimeWait),
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
    for t in TEMPLATES {
        let p = t.protocol();
        let (addr, stop) = simulator(t, Some(vec![account()]), false).await;
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
        let (server, client) = time_wait(addr.port(), LINKS).await;
        assert_eq!(
            (server, client),
            (0, LINKS),
            "{t}: TIME_WAIT (server, client)"
        );
        stop.cancel();
    }
}
