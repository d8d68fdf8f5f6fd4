//! Driving a [`Protocol`] with the server and the clients: the glue between a template's
//! pure functions and the one pipeline every connection runs.
//!
//! | piece | for | what it does |
//! |---|---|---|
//! | [`server_config`] | server | the template's framing and heartbeat (answered by the pipeline; pings to idle clients when the config asks) |
//! | [`SimulatorService`] | server | a `tower::Service<Request>` answering each frame with the template's [`Simulator`]; cloned per connection, each clone a fresh simulator (logged out) |
//! | [`SequenceKey`] | mux client | the correlation key ([`Protocol::response_key`]): the sequence number of a response (ISO 8583: response MTI, STAN, terminal id); requests from the partner have none, so they go to the unsolicited stream |
//! | [`ClientSession`] | clients | the login (SMPP bind, CMPP CONNECT) on every connection and its answer checked, the logout (unbind, TERMINATE) on a graceful close, the answers owed to the partner's requests (deliver_sm_resp), and the sequence numbers of the link |
//!
//! ```
//! # #[cfg(all(feature = "server", feature = "client"))]
//! # fn demo(p: std::sync::Arc<dyn keepwire::protocol::Protocol>) {
//! use keepwire::protocol::{SimulatorConfig, drive};
//! let config = drive::server_config(&*p);
//! let service = drive::SimulatorService::new(p.clone(), SimulatorConfig::default());
//! # let _ = (config, service);
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

#[cfg(feature = "client")]
use bytes::Bytes;

use super::Protocol;
#[cfg(feature = "client")]
use super::{Account, BindMode};
#[cfg(feature = "server")]
use super::{Simulator, SimulatorConfig};

/// A server configuration for `protocol`: its framing and its heartbeat PDUs (answered by the
/// connection itself, never reaching the handler). Pings to idle clients are off; set
/// `liveness.ping` to send them.
///
/// # Examples
/// See the module doc.
#[cfg(feature = "server")]
pub fn server_config(protocol: &dyn Protocol) -> crate::server::ServerConfig {
    let mut config = crate::server::ServerConfig::new(protocol.framing());
    config.heartbeat = Some(protocol.heartbeat());
    config
}

/// A partner simulator as a server handler: each connection gets its own [`Simulator`] state
/// (cloning the service makes a fresh one, and the server clones it per connection).
///
/// # Examples
/// See the module doc.
#[cfg(feature = "server")]
#[derive(Debug)]
pub struct SimulatorService {
    protocol: Arc<dyn Protocol>,
    config: SimulatorConfig,
    /// Locked only by its own connection (each has its clone): a `Mutex` makes the service
    /// `Sync`, which the server's spawned connection futures need.
    state: std::sync::Mutex<Box<dyn Simulator>>,
}

#[cfg(feature = "server")]
impl SimulatorService {
    /// A simulator of `protocol` behaving as `config` says.
    pub fn new(protocol: Arc<dyn Protocol>, config: SimulatorConfig) -> Self {
        let state = std::sync::Mutex::new(protocol.simulator(&config));
        SimulatorService {
            protocol,
            config,
            state,
        }
    }
}

#[cfg(feature = "server")]
impl Clone for SimulatorService {
    /// A fresh simulator (not logged in) sharing the configuration and the message ids.
    fn clone(&self) -> Self {
        SimulatorService::new(Arc::clone(&self.protocol), self.config.clone())
    }
}

#[cfg(feature = "server")]
impl tower::Service<crate::server::Request> for SimulatorService {
    type Response = crate::server::Answer;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<crate::server::Answer, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: crate::server::Request) -> Self::Future {
        let now = SystemTime::now();
        let sim = match self.state.get_mut() {
            Ok(state) => state.answer(&req.frame, now),
            Err(poisoned) => poisoned.into_inner().answer(&req.frame, now),
        };
        std::future::ready(Ok(sim_answer(sim)))
    }
}

/// A simulator's answer as the server's: its frames, then the close it asks for.
#[cfg(feature = "server")]
pub(crate) fn sim_answer(sim: super::SimAnswer) -> crate::server::Answer {
    let answer = crate::server::Answer::many(sim.frames);
    match sim.close {
        super::SimClose::No => answer,
        super::SimClose::Now => answer.then_close(),
        super::SimClose::AfterPeer => answer.then_await_close(),
    }
}

/// The mux clients' key: the template's [`Protocol::response_key`] (SMPP, CMPP: the sequence
/// number of a response; ISO 8583: the response MTI, field 11 and field 41). The partner's own
/// requests (deliver_sm, DELIVER, an 0800) carry numbers of the partner's series, so they have
/// no key and go to the unsolicited stream instead of answering a request with the same
/// number.
///
/// # Examples
/// `ClientBuilder::connect_mux(SequenceKey::new(protocol))`.
#[cfg(feature = "client")]
#[derive(Debug, Clone)]
pub struct SequenceKey(Arc<dyn Protocol>);

#[cfg(feature = "client")]
impl SequenceKey {
    /// The key of `protocol`'s responses.
    pub fn new(protocol: Arc<dyn Protocol>) -> Self {
        SequenceKey(protocol)
    }

    /// The key a request with sequence number `seq` is answered under.
    pub fn of_sequence(seq: u32) -> crate::client::Key {
        crate::client::Key::from(seq)
    }
}

#[cfg(feature = "client")]
impl crate::client::Correlate for SequenceKey {
    /// [`Protocol::response_key`]: SMPP and CMPP the sequence number of a response, ISO
    /// 8583 the response MTI, STAN and terminal id.
    fn key(&self, frame: &[u8]) -> Option<crate::client::Key> {
        self.0.response_key(frame).map(crate::client::Key)
    }

    fn request_key(&self, frame: &[u8]) -> Option<crate::client::Key> {
        self.0.request_key(frame).map(crate::client::Key)
    }

    /// The frame with the sequence number `key` (4 bytes, big-endian), through
    /// [`Protocol::with_sequence`].
    fn rekey(&self, frame: &[u8], key: &crate::client::Key) -> Option<Bytes> {
        self.0.with_key(frame, &key.0)
    }

    /// The frame with sequence number `n` (1..=0x7fffffff, wrapping) through
    /// [`Protocol::with_sequence`], keyed as a request: ISO 8583's key keeps its MTI and
    /// terminal id, only the STAN changes.
    fn renumber(&self, frame: &[u8], n: u64) -> Option<(Bytes, crate::client::Key)> {
        let seq = u32::try_from(n % 0x7fff_ffff + 1).ok()?;
        let frame = self.0.with_sequence(frame, seq)?;
        let key = self.0.request_key(&frame).map(crate::client::Key)?;
        Some((frame, key))
    }
}

/// The sequence numbers of a link: 1, 2, 3, ... up to 0x7fffffff, then 1 again (SMPP 3.4
/// §3.2: sequence_number "0x00000001 to 0x7FFFFFFF"; CMPP takes any u32, the same series
/// does). Shared by the clones of a [`ClientSession`], so the login, the requests and the
/// logout never share a number.
#[derive(Debug, Default)]
pub struct Sequence(AtomicU32);

impl Sequence {
    /// The next number.
    ///
    /// ```
    /// let s = keepwire::protocol::drive::Sequence::default();
    /// assert_eq!((s.next(), s.next()), (1, 2));
    /// ```
    pub fn next(&self) -> u32 {
        let prev = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(if n >= 0x7fff_ffff { 1 } else { n + 1 })
            })
            .unwrap_or(0);
        if prev >= 0x7fff_ffff { 1 } else { prev + 1 }
    }
}

/// A client session of `protocol` with `account`: login on every connection, its answer
/// checked, logout on graceful close, the partner's requests answered. Hand it to
/// [`ClientBuilder::session`](crate::client::ClientBuilder::session); number requests with
/// [`next_sequence`](Self::next_sequence).
#[cfg(feature = "client")]
#[derive(Debug, Clone)]
pub struct ClientSession {
    protocol: Arc<dyn Protocol>,
    account: Account,
    bind: BindMode,
    seq: Arc<Sequence>,
    /// Logins the partner accepted without authenticating itself
    /// ([`PartnerAuth::Missing`](super::PartnerAuth::Missing)).
    unauthenticated: Arc<std::sync::atomic::AtomicU64>,
}

#[cfg(feature = "client")]
impl ClientSession {
    /// A session of `protocol`, logging in as `account` (SMPP: as `bind`).
    pub fn new(protocol: Arc<dyn Protocol>, account: Account, bind: BindMode) -> Self {
        ClientSession {
            protocol,
            account,
            bind,
            seq: Arc::new(Sequence::default()),
            unauthenticated: Arc::default(),
        }
    }

    /// The next sequence number of this link (shared with the login and logout).
    pub fn next_sequence(&self) -> u32 {
        self.seq.next()
    }

    /// How many logins of this session (and its clones) the partner accepted without
    /// authenticating itself (CMPP: an all-zero AuthenticatorISMG, see
    /// [`PartnerAuth`](super::PartnerAuth)). A caller warns its user when this is not 0.
    pub fn unauthenticated_logins(&self) -> u64 {
        self.unauthenticated.load(Ordering::Relaxed)
    }

    /// The template.
    pub fn protocol(&self) -> &Arc<dyn Protocol> {
        &self.protocol
    }
}

#[cfg(feature = "client")]
impl crate::client::SessionHook for ClientSession {
    fn login(&self) -> Option<Bytes> {
        let seq = self.seq.next();
        Some(
            self.protocol
                .login(&self.account, self.bind, seq, SystemTime::now()),
        )
    }

    fn is_answer(&self, request: &[u8], frame: &[u8]) -> bool {
        is_answer(&*self.protocol, request, frame)
    }

    fn check_login(&self, login: &[u8], answer: &[u8]) -> Result<(), crate::client::LoginRefused> {
        let auth = self
            .protocol
            .check_login(&self.account, login, answer)
            .map_err(|e| crate::client::LoginRefused::new(e.to_string()))?;
        if auth == super::PartnerAuth::Missing {
            self.unauthenticated.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("the partner accepted the login without authenticating itself");
        }
        Ok(())
    }

    fn logout(&self) -> Option<Bytes> {
        Some(self.protocol.logout(self.seq.next()))
    }

    fn answer(&self, frame: &[u8]) -> Option<Bytes> {
        self.protocol.client_answer(frame)
    }
}

/// Whether `frame` is the partner's answer to our `request`: their correlation keys agree
/// ([`Protocol::response_key`], [`Protocol::request_key`]).
#[cfg(feature = "client")]
pub(crate) fn is_answer(protocol: &dyn Protocol, request: &[u8], frame: &[u8]) -> bool {
    match (protocol.request_key(request), protocol.response_key(frame)) {
        (Some(asked), Some(answered)) => asked == answered,
        _ => false,
    }
}
