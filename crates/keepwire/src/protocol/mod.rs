//! Protocol templates: SMPP 3.4, CMPP 3.0 and CMPP 2.0 links in one value.
//!
//! A template is data plus small pure functions: the framing, the heartbeat PDUs, the
//! correlation key (a sequence number), the session (login on connect, logout on close, the
//! login's answer checked), the text form of every PDU, and what a partner simulator answers.
//! Every socket and timer stays in the pipeline the server and the clients already share; this
//! module never touches either.
//!
//! Frames are what the framing's codec yields: for SMPP and CMPP (`len:be:4:incl`) the PDU
//! without its 4-byte length field, i.e. starting at the command id.
//!
//! INTERFACE NOTE (removed when the implementations land): this file fixes the interface
//! between the template implementations (`smpp`, `cmpp`, text form) and the code that drives
//! them (server simulator glue, client login, CLI). Implementations fill it in.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::frame::FramingSpec;
use crate::liveness::Heartbeat;

/// Driving a template with the server and the clients (the simulator service, the client
/// session, the mux key).
#[cfg(any(feature = "server", feature = "client"))]
pub mod drive;

/// Which template: `smpp`, `cmpp3` or `cmpp2` (`FromStr`/`Display` use these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Template {
    /// SMPP 3.4.
    Smpp,
    /// CMPP 3.0.
    Cmpp3,
    /// CMPP 2.0.
    Cmpp2,
}

/// An account to log in with: `ID:SECRET` (SMPP system_id and password; CMPP Source_Addr and
/// shared secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// SMPP `system_id`, CMPP `Source_Addr`.
    pub id: String,
    /// SMPP `password`, CMPP shared secret.
    pub secret: String,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a secret.
        f.debug_struct("Account")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// SMPP's bind kinds (`--bind trx|tx|rx`); CMPP has one login and ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// bind_transceiver: send and receive on one link.
    #[default]
    Transceiver,
    /// bind_transmitter: send only.
    Transmitter,
    /// bind_receiver: receive only.
    Receiver,
}

/// A PDU in text form, structured: the command name, then `field=value` pairs in wire order.
/// Rendered as one text line (`submit_sm seq=2 source_addr=10086 short_message=hello`) or as
/// one JSON object; parsed back from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextPdu {
    /// The command name as the specification spells it in lower case (`submit_sm`,
    /// `active_test_resp`).
    pub command: String,
    /// `field=value` pairs, in wire order; `seq` first.
    pub fields: Vec<(String, String)>,
}

/// What a simulator answers to one frame: frames to send in order, then maybe a close.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimAnswer {
    /// Frames to send, in order (a response, then perhaps a delivery report).
    pub frames: Vec<Bytes>,
    /// Close the connection after them (a refused login, a logout answered, a request
    /// before login).
    pub close: bool,
}

/// How a partner simulator behaves.
#[derive(Debug, Clone, Default)]
pub struct SimulatorConfig {
    /// Accepted accounts; `None` accepts every login.
    pub accounts: Option<Vec<Account>>,
    /// Send a delivery report for each submit.
    pub receipts: bool,
    /// Message ids, unique across the simulator's connections.
    pub next_message_id: Arc<std::sync::atomic::AtomicU64>,
}

/// One connection's side of a partner simulator (SMSC, ISMG): its state (logged in or not)
/// lives here, one value per connection.
pub trait Simulator: Send + fmt::Debug {
    /// The answer to one data frame (heartbeats never get here: the pipeline answers them).
    fn answer(&mut self, frame: &[u8], now: SystemTime) -> SimAnswer;
}

/// A protocol template. See the module doc.
pub trait Protocol: Send + Sync + fmt::Debug + 'static {
    /// Which template this is.
    fn template(&self) -> Template;
    /// The framing (`len:be:4:incl` for SMPP and CMPP).
    fn framing(&self) -> FramingSpec;
    /// Heartbeat PDUs (SMPP enquire_link / _resp, CMPP ACTIVE_TEST / _RESP).
    fn heartbeat(&self) -> Arc<dyn Heartbeat>;
    /// The sequence number of a frame, `None` when it is too short to have one.
    fn sequence(&self, frame: &[u8]) -> Option<u32>;
    /// Whether a frame is a response (SMPP and CMPP: the command id's top bit).
    fn is_response(&self, frame: &[u8]) -> bool;
    /// A frame as text. Errors name the field and its offset.
    fn decode_text(&self, frame: &[u8]) -> Result<TextPdu, PduError>;
    /// A text line into a frame; `seq` is used when the line gives none; fields left out take
    /// defaults.
    fn encode_text(&self, line: &str, seq: u32) -> Result<Bytes, PduError>;
    /// The login PDU (SMPP bind_*, CMPP CONNECT with its authenticator) with sequence `seq`.
    fn login(&self, account: &Account, bind: BindMode, seq: u32, now: SystemTime) -> Bytes;
    /// Checks the partner's answer to `login`: status 0, and for CMPP the ISMG authenticator.
    fn check_login(
        &self,
        account: &Account,
        login: &[u8],
        response: &[u8],
    ) -> Result<(), LoginError>;
    /// The logout PDU (SMPP unbind, CMPP TERMINATE) with sequence `seq`.
    fn logout(&self, seq: u32) -> Bytes;
    /// What a client owes the partner for a frame the partner sent unasked (deliver_sm →
    /// deliver_sm_resp, DELIVER → DELIVER_RESP, unbind → unbind_resp), `None` for responses.
    fn client_answer(&self, frame: &[u8]) -> Option<Bytes>;
    /// A new connection's simulator state.
    fn simulator(&self, config: &SimulatorConfig) -> Box<dyn Simulator>;
}

/// A PDU that does not decode, or a text line that does not encode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PduError {
    /// One lowercase line naming the field and its offset, or the text token.
    pub message: String,
}

/// The partner refused a login, or answered it wrongly.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginError {
    /// One lowercase line naming the partner's status (`bind refused: ESME_RINVPASWD (0x0e)`).
    pub message: String,
}

impl fmt::Display for PduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PduError {}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoginError {}
