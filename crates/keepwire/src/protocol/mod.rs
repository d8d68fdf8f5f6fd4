//! Protocol templates: SMPP 3.4, CMPP 3.0, CMPP 2.0 and ISO 8583 links in one value.
//!
//! A template is data plus small pure functions: the framing, the heartbeat PDUs, the
//! correlation key (a sequence number), the session (login on connect, logout on close, the
//! login's answer checked), the text form of every PDU, and what a partner simulator answers.
//! Every socket and timer stays in the pipeline the server and the clients already share; this
//! module never touches either.
//!
//! Frames are what the framing's codec yields: for SMPP and CMPP (`len:be:4:incl`) the PDU
//! without its 4-byte length field, i.e. starting at the command id. The wire formats, byte
//! by byte, are in the module docs of [`smpp`] and [`cmpp`]. ISO 8583 messages and field
//! tables are in [`iso8583`]; the template over them is [`Iso8583`].
//!
//! ```
//! use keepwire::protocol::Template;
//! let smpp: Template = "smpp".parse().unwrap();
//! let p = smpp.protocol();
//! let frame = p
//!     .encode_text("submit_sm seq=2 source_addr=10086 destination_addr=13800138000 short_message=hello", 1)
//!     .unwrap();
//! assert_eq!(&frame[..12], b"\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x02");
//! let text = p.decode_text(&frame).unwrap();
//! assert_eq!(
//!     text.to_string(),
//!     "submit_sm seq=2 source_addr=10086 destination_addr=13800138000 short_message=hello"
//! );
//! ```
//!
//! # Text form
//!
//! One line: the command name as the specification spells it in lower case (`submit_sm`,
//! `active_test_resp`), then `field=value` pairs in wire order, `seq` first. Fields with
//! their default value (0, empty, or the one the template documents) are left out when
//! printing and take that default when encoding; numbers print in decimal and are read in
//! decimal or `0x` hex. Values are one token each, with these escapes:
//!
//! | in the value | text |
//! |---|---|
//! | printable ASCII `!`..`~` except `\` | itself |
//! | `\`, newline, carriage return, tab | `\\`, `\n`, `\r`, `\t` |
//! | a space, any other byte | `\xNN` (`hello world` is `hello\x20world`) |
//! | in a UCS-2 body (SMPP `data_coding=8`, CMPP `msg_fmt=8`): a character | itself, or `\u{XXXX}` for whitespace and controls |
//! | raw bytes (e.g. a UCS-2 body that is not valid UTF-16) | `hex:` then hex digits |
//!
//! On input, characters outside ASCII stand for their UTF-8 bytes (in a UCS-2 body, their
//! UTF-16), so `short_message=你好 data_coding=8` works as typed. `encode_text(decode_text(f))
//! == f` for every frame that decodes, TLVs included. Commands a template does not model
//! print as `0xNNNNNNNN seq=.. body=<hex>` and encode back from that form: decoding does not
//! fail on them.
//!
//! [`TextPdu::to_json`] renders the same pairs as one JSON object.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::frame::{DEFAULT_MAX, FramingSpec, LengthEncoding, LengthSpec};
use crate::liveness::Heartbeat;

pub mod cmpp;
mod cmpp_sim;
#[cfg(any(feature = "server", feature = "client"))]
pub mod drive;
mod error;
pub mod iso8583;
#[cfg(feature = "client")]
mod iso_session;
mod iso_sim;
mod iso_template;
mod schema;
pub mod smpp;
mod smpp_sim;
#[cfg(test)]
mod tests;
mod text;
mod time;
mod value;

pub use error::{LoginError, LoginErrorKind, PduError, PduErrorKind};
#[cfg(feature = "client")]
pub use iso_session::Iso8583Session;
pub use iso_sim::{RespondRule, RespondRuleError, RespondRuleErrorKind};
pub use iso_template::{Iso8583, NetworkEcho};

/// Which template: `smpp`, `cmpp3`, `cmpp2` or `iso8583` (`FromStr`/`Display` use these
/// names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Template {
    /// SMPP 3.4.
    Smpp,
    /// CMPP 3.0.
    Cmpp3,
    /// CMPP 2.0.
    Cmpp2,
    /// ISO 8583:1987 over `len:ascii:4`, the built-in ASCII field table ([`Iso8583`]).
    Iso8583,
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
    /// Whether and how the connection closes after them.
    pub close: SimClose,
}

impl SimAnswer {
    /// Whether the connection closes after this answer, either way.
    pub fn closes(&self) -> bool {
        self.close != SimClose::No
    }

    /// `frames`, then the simulator closes first when `close`.
    pub(crate) fn send(frames: Vec<Bytes>, close: bool) -> Self {
        let close = if close { SimClose::Now } else { SimClose::No };
        SimAnswer { frames, close }
    }

    /// A logout's answer: the partner closes first.
    pub(crate) fn logout(frame: Bytes) -> Self {
        SimAnswer {
            frames: vec![frame],
            close: SimClose::AfterPeer,
        }
    }
}

/// The big-endian u32 at `at` in a frame, `None` past its end (SMPP and CMPP headers).
pub(crate) fn be32(frame: &[u8], at: usize) -> Option<u32> {
    let b = frame.get(at..at.checked_add(4)?)?;
    let b: [u8; 4] = b.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// The response bit of SMPP's command_id and CMPP's Command_Id.
pub(crate) const RESPONSE_BIT: u32 = 0x8000_0000;

/// Whether a frame starting at its command id is a response (the id's top bit).
pub(crate) fn is_response_id(frame: &[u8]) -> bool {
    be32(frame, 0).is_some_and(|id| id & RESPONSE_BIT != 0)
}

/// Whether and how a simulator's connection closes after an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimClose {
    /// It stays open.
    #[default]
    No,
    /// The simulator closes first: a refused login, a request before login, a PDU that does
    /// not decode.
    Now,
    /// The partner is expected to close first: a logout answered (SMPP `unbind_resp`, CMPP
    /// `TERMINATE_RESP`). The simulator waits (bounded) for the partner's FIN, so the
    /// partner, not the simulator, holds the TIME_WAIT socket of each short link.
    AfterPeer,
}

/// How the partner of an accepted login proved who it is.
///
/// CMPP's CONNECT_RESP carries AuthenticatorISMG = MD5(Status + AuthenticatorSource +
/// secret): an ISMG that knows the account's secret proves it. A wrong non-zero value is a
/// login error ([`LoginError::is_bad_authenticator`]); sixteen zero bytes, which some
/// gateways and test simulators send (keepwire's own when it accepts every login, as it
/// knows no secret), are accepted as [`Missing`](PartnerAuth::Missing) so the caller can
/// warn: the link works, but nothing shows that the partner is the ISMG meant.
///
/// ```
/// use keepwire::protocol::{BindMode, PartnerAuth, SimulatorConfig, Template};
/// let p = Template::Cmpp3.protocol();
/// let account = "901234:s3cret".parse().unwrap();
/// let now = std::time::SystemTime::now();
/// let login = p.login(&account, BindMode::default(), 1, now);
/// // A simulator that accepts every login knows no secret: it cannot authenticate itself.
/// let answer = p.simulator(&SimulatorConfig::default()).answer(&login, now);
/// assert_eq!(p.check_login(&account, &login, &answer.frames[0]).unwrap(), PartnerAuth::Missing);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartnerAuth {
    /// The partner proved it knows the account's secret (CMPP AuthenticatorISMG matched).
    Verified,
    /// The protocol has no such proof (SMPP).
    NotInProtocol,
    /// The protocol has one and the partner left it out (CMPP AuthenticatorISMG all zero).
    Missing,
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
    /// `frame` with its sequence number replaced by `seq` (a gateway keeping several
    /// clients' numbers apart on one link); `None` where the template cannot rewrite it or
    /// the frame is too short. The default is `None`.
    fn with_sequence(&self, frame: &[u8], seq: u32) -> Option<Bytes> {
        let _ = (frame, seq);
        None
    }
    /// `frame` rewritten so that its correlation key ([`request_key`](Protocol::request_key)
    /// of a request, [`response_key`](Protocol::response_key) of a response) is `key`; `None`
    /// where no rewrite gives that key. By default a 4-byte key is a big-endian sequence
    /// number for [`with_sequence`](Protocol::with_sequence). ISO 8583: the key's STAN (the
    /// 6 digits after its MTI) goes into field 11, when the MTI and terminal id already fit.
    fn with_key(&self, frame: &[u8], key: &[u8]) -> Option<Bytes> {
        let seq = u32::from_be_bytes(<[u8; 4]>::try_from(key).ok()?);
        self.with_sequence(frame, seq)
    }
    /// Whether a frame is a login or logout request (SMPP `bind_*` and `unbind`, CMPP
    /// CONNECT and TERMINATE, ISO 8583 an 0800 sign-on or sign-off): what a gateway that owns
    /// the partner session answers itself. Read from the header, without decoding the rest.
    /// The default is false.
    fn is_session_request(&self, frame: &[u8]) -> bool {
        let _ = frame;
        false
    }
    /// Whether a response reports success: SMPP command_status 0; CMPP a Status or Result of
    /// 0 (responses without one, such as ACTIVE_TEST_RESP, succeed); ISO 8583 field 39 =
    /// 00 (a response without field 39 does not). A bench counts the rest as errors. The
    /// default is true.
    ///
    /// ```
    /// use keepwire::protocol::Template;
    /// let iso = Template::Iso8583.protocol();
    /// let approved = iso.encode_text("0210 11=000001 39=00", 0).unwrap();
    /// let declined = iso.encode_text("0210 11=000001 39=51", 0).unwrap();
    /// assert!(iso.is_success(&approved));
    /// assert!(!iso.is_success(&declined));
    /// ```
    fn is_success(&self, response: &[u8]) -> bool {
        let _ = response;
        true
    }
    /// Whether a frame is a response (SMPP and CMPP: the command id's top bit).
    fn is_response(&self, frame: &[u8]) -> bool;
    /// A frame as text. Errors name the field and its offset.
    fn decode_text(&self, frame: &[u8]) -> Result<TextPdu, PduError>;
    /// Whether field `name` of this template's text form is a number, printed as a JSON
    /// number by [`TextPdu::to_json_with`] when its value is plain digits. The default, true,
    /// is the SMPP and CMPP convention ([`TextPdu::to_json`]); ISO 8583 fields are all
    /// strings (`"70":"301"`), so a field's JSON type never depends on its value.
    ///
    /// ```
    /// use keepwire::protocol::Template;
    /// let iso = Template::Iso8583.protocol();
    /// let frame = iso.encode_text("0800 11=000001 70=301", 0).unwrap();
    /// let json = iso.decode_text(&frame).unwrap().to_json_with(|f| iso.json_number(f));
    /// assert_eq!(json, r#"{"command":"0800","11":"000001","70":"301"}"#);
    /// ```
    fn json_number(&self, name: &str) -> bool {
        let _ = name;
        true
    }
    /// A text line into a frame; `seq` is used when the line gives none; fields left out take
    /// defaults.
    fn encode_text(&self, line: &str, seq: u32) -> Result<Bytes, PduError>;
    /// The login PDU (SMPP bind_*, CMPP CONNECT with its authenticator) with sequence `seq`.
    fn login(&self, account: &Account, bind: BindMode, seq: u32, now: SystemTime) -> Bytes;
    /// Whether `account` fits the login PDU's fields (SMPP system_id at most 15 bytes,
    /// password 8; CMPP Source_Addr 6). [`login`](Protocol::login) cuts what does not fit, so
    /// call this first to refuse such an account with a message.
    ///
    /// # Errors
    /// [`LoginError::is_bad_account`], naming the field (never the secret).
    fn check_account(&self, account: &Account) -> Result<(), LoginError> {
        let _ = account;
        Ok(())
    }
    /// Checks the partner's answer to `login`: status 0, and for CMPP the ISMG authenticator.
    /// Accepted, it says whether the partner authenticated itself ([`PartnerAuth`]).
    ///
    /// # Errors
    /// [`LoginError`]: refused with the partner's status named, a wrong AuthenticatorISMG, or
    /// an answer that is not the login's response.
    fn check_login(
        &self,
        account: &Account,
        login: &[u8],
        response: &[u8],
    ) -> Result<PartnerAuth, LoginError>;
    /// The logout PDU (SMPP unbind, CMPP TERMINATE) with sequence `seq`.
    fn logout(&self, seq: u32) -> Bytes;
    /// What a client owes the partner for a frame the partner sent unasked (deliver_sm →
    /// deliver_sm_resp, DELIVER → DELIVER_RESP, unbind → unbind_resp), `None` for responses.
    fn client_answer(&self, frame: &[u8]) -> Option<Bytes>;
    /// A new connection's simulator state.
    fn simulator(&self, config: &SimulatorConfig) -> Box<dyn Simulator>;
    /// The correlation key of a frame that answers a request of ours; the request has the
    /// same [`request_key`](Protocol::request_key). `None` for frames that answer nothing
    /// (the partner's own requests), which then go to the unsolicited stream.
    ///
    /// By default the [`sequence`](Protocol::sequence) number of a
    /// [response](Protocol::is_response), big-endian (SMPP, CMPP). ISO 8583: the response
    /// MTI, field 11 and field 41 when present ([`Iso8583`]).
    ///
    /// ```
    /// use keepwire::protocol::Template;
    /// let smpp = Template::Smpp.protocol();
    /// let submit = smpp.encode_text("submit_sm short_message=hi", 7).unwrap();
    /// let resp = smpp.encode_text("submit_sm_resp message_id=1", 7).unwrap();
    /// assert_eq!(smpp.request_key(&submit).unwrap(), &7u32.to_be_bytes()[..]);
    /// assert_eq!(smpp.response_key(&resp), smpp.request_key(&submit));
    /// assert_eq!(smpp.response_key(&submit), None);
    /// ```
    fn response_key(&self, frame: &[u8]) -> Option<Bytes> {
        if !self.is_response(frame) {
            return None;
        }
        self.request_key(frame)
    }
    /// The key a request of ours is answered under (see
    /// [`response_key`](Protocol::response_key)); by default its sequence number,
    /// big-endian. `None` when the frame has none.
    fn request_key(&self, frame: &[u8]) -> Option<Bytes> {
        self.sequence(frame)
            .map(|seq| Bytes::copy_from_slice(&seq.to_be_bytes()))
    }
}

/// `frame` with the 4 bytes at `offset` replaced by `seq`, big-endian; `None` when the frame
/// is shorter.
pub(crate) fn put_be32(frame: &[u8], offset: usize, seq: u32) -> Option<Bytes> {
    let end = offset.checked_add(4)?;
    if frame.len() < end {
        return None;
    }
    let mut out = bytes::BytesMut::from(frame);
    out.get_mut(offset..end)?
        .copy_from_slice(&seq.to_be_bytes());
    Some(out.freeze())
}

/// `len:be:4:incl`: SMPP's command_length and CMPP's Total_Length count themselves.
pub(crate) fn length_framing() -> FramingSpec {
    FramingSpec::Length(LengthSpec {
        encoding: LengthEncoding::BigEndian,
        width: 4,
        incl: true,
        skip: 0,
        adj: 0,
        max: DEFAULT_MAX,
    })
}

impl Template {
    /// Every template, in the order the CLI lists them.
    pub const ALL: [Template; 4] = [
        Template::Smpp,
        Template::Cmpp3,
        Template::Cmpp2,
        Template::Iso8583,
    ];

    /// The template's implementation.
    ///
    /// ```
    /// use keepwire::protocol::Template;
    /// let p = Template::Cmpp3.protocol();
    /// assert_eq!(p.template(), Template::Cmpp3);
    /// assert_eq!(p.framing().to_string(), "len:be:4:incl");
    /// ```
    pub fn protocol(self) -> Arc<dyn Protocol> {
        match self {
            Template::Smpp => Arc::new(smpp::Smpp),
            Template::Cmpp3 => Arc::new(cmpp::Cmpp::new(cmpp::Version::V3)),
            Template::Cmpp2 => Arc::new(cmpp::Cmpp::new(cmpp::Version::V2)),
            Template::Iso8583 => Arc::new(Iso8583::ascii()),
        }
    }

    /// The name `FromStr` reads: `smpp`, `cmpp3`, `cmpp2`, `iso8583`.
    pub fn name(self) -> &'static str {
        match self {
            Template::Smpp => "smpp",
            Template::Cmpp3 => "cmpp3",
            Template::Cmpp2 => "cmpp2",
            Template::Iso8583 => "iso8583",
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name, account or bind mode that does not parse; `Display` says what would be valid.
///
/// ```
/// use keepwire::protocol::{Account, Template};
/// let e = "cmpp4".parse::<Template>().unwrap_err();
/// assert_eq!(e.to_string(), "unknown protocol \"cmpp4\"; expected smpp, cmpp3, cmpp2 or iso8583");
/// let e = "901234".parse::<Account>().unwrap_err();
/// assert_eq!(e.to_string(), "account has no ':'; expected ID:SECRET");
/// // The secret is never printed.
/// let e = ":hunter2".parse::<Account>().unwrap_err();
/// assert!(!e.to_string().contains("hunter2"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

impl FromStr for Template {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Template::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| ParseError {
                message: format!("unknown protocol {s:?}; expected smpp, cmpp3, cmpp2 or iso8583"),
            })
    }
}

impl FromStr for Account {
    type Err = ParseError;

    /// `ID:SECRET`, split at the first `:` (a secret may hold more). The id must not be empty.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.split_once(':') {
            Some(("", _)) => Err(ParseError {
                message: "account has an empty id; expected ID:SECRET".to_owned(),
            }),
            Some((id, secret)) => Ok(Account {
                id: id.to_owned(),
                secret: secret.to_owned(),
            }),
            // Not printed: the text may be a secret typed alone.
            None => Err(ParseError {
                message: "account has no ':'; expected ID:SECRET".to_owned(),
            }),
        }
    }
}

impl BindMode {
    /// The name `FromStr` reads: `trx`, `tx`, `rx`.
    pub fn name(self) -> &'static str {
        match self {
            BindMode::Transceiver => "trx",
            BindMode::Transmitter => "tx",
            BindMode::Receiver => "rx",
        }
    }
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BindMode {
    type Err = ParseError;

    /// `trx`, `tx` or `rx`.
    ///
    /// ```
    /// use keepwire::protocol::BindMode;
    /// assert_eq!("tx".parse::<BindMode>().unwrap(), BindMode::Transmitter);
    /// assert!("txrx".parse::<BindMode>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, ParseError> {
        [
            BindMode::Transceiver,
            BindMode::Transmitter,
            BindMode::Receiver,
        ]
        .into_iter()
        .find(|b| b.name() == s)
        .ok_or_else(|| ParseError {
            message: format!("unknown bind mode {s:?}; expected trx, tx or rx"),
        })
    }
}
