//! CMPP 3.0 and 2.0: PDUs, their text form, the CONNECT session with MD5 authenticators and
//! ACTIVE_TEST heartbeats. One module; [`Version`] picks the field widths.
//!
//! Every message starts with a 12-byte header, all integers big-endian. The framing
//! `len:be:4:incl` takes off Total_Length, so a frame starts at Command_Id:
//!
//! ```text
//!  wire offset 0       4            8             12
//!  +-------------------+------------+-------------+-------------
//!  | Total_Length      | Command_Id | Sequence_Id | body ...
//!  | (counts itself)   |            |             |
//!  +-------------------+------------+-------------+-------------
//!                      ^ the frame starts here (frame offset 0 = wire offset 4)
//! ```
//!
//! A response's Command_Id is the request's `| 0x80000000` and carries its Sequence_Id.
//! There is no status in the header; results live in the response bodies.
//!
//! CONNECT (the same in both versions; Total_Length 39):
//!
//! ```text
//!  Source_Addr 6 | AuthenticatorSource 16 | Version 1 | Timestamp 4
//!  AuthenticatorSource = MD5(Source_Addr + 9 x 0x00 + secret + "MMDDHHMMSS")
//!  Timestamp           = the same MMDDHHMMSS as an integer (0102030405 -> 0x0614dc45)
//! ```
//!
//! [`Protocol::login`] takes the timestamp from `now` in UTC (the ISMG recomputes the
//! authenticator from the Timestamp field it receives, so the zone only shows in logs).
//!
//! CONNECT_RESP: Status (3.0: 4 bytes; 2.0: 1 byte), AuthenticatorISMG 16, Version 1, where
//! AuthenticatorISMG = MD5(Status in its wire width + AuthenticatorSource + secret). Status: 0
//! ok, 1 bad structure, 2 illegal source address, 3 authentication failed, 4 version too high.
//!
//! Where the versions differ (3.0 / 2.0): terminal ids 32 / 21 bytes; the
//! `*_terminal_type` bytes exist only in 3.0; SUBMIT and DELIVER end with LinkID 20 (3.0) or
//! Reserve 8 (2.0); Result in SUBMIT_RESP and DELIVER_RESP is 4 / 1 bytes; the status report
//! inside a DELIVER is 71 / 60 bytes (its Dest_terminal_Id 32 / 21).
//!
//! INPUT (frame, hex) -> DECODED (text form, CMPP 3.0):
//!
//! ```text
//! 00000001 00000001 393031323334 1c39df8b9c01798a8f35c3c785cf91ce 30 0614dc45
//!   -> connect seq=1 source_addr=901234
//!      authenticator_source=1c39df8b9c01798a8f35c3c785cf91ce timestamp=102030405
//! 00000008 00000005
//!   -> active_test seq=5
//! 80000004 00000002 110c414003e90007 00000000
//!   -> submit_resp seq=2 msg_id=1228428541564616711 result=0
//! ```
//!
//! Text form: `seq`, then the body's fields in wire order (lower-case spec names:
//! `dest_terminal_id`, `msg_fmt`, `msg_content`, `link_id`), each left out when it has its
//! default (0, empty; `version` 0x30 / 0x20, `pk_total` and `pk_number` 1, `fee_type` 01).
//! Octet strings print without their NUL padding. `dest_terminal_id` repeats once per
//! destination (DestUsr_tl follows from it). `msg_content` is text with escapes, or
//! characters when `msg_fmt=8` (UCS-2); Msg_Length follows from it. A DELIVER with
//! `registered_delivery=1` whose Msg_Content is a report prints the report's fields
//! (`report_msg_id`, `report_stat`, `report_submit_time`, `report_done_time`,
//! `report_dest_terminal_id`, `report_smsc_sequence`) in place of `msg_content`. Commands
//! the template does not model print as their id in hex with the raw `body=` in hex.
//!
//! The ISMG's authenticator: a CONNECT_RESP with status 0 whose AuthenticatorISMG is not the
//! MD5 above is refused ([`LoginError::is_bad_authenticator`]); one of 16 zero bytes is
//! accepted as "the ISMG did not authenticate itself" (the spec calls the field empty on
//! failure, and keepwire's simulator, accepting every login, does not know the secret).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use md5::{Digest, Md5};

use super::error::{LoginError, LoginErrorKind, PduError, PduErrorKind};
use super::schema::{Field, Kind, Schema, decode_body, encode_body, f};
use super::time::Civil;
use super::value::{bad, parse_number};
use super::{
    Account, BindMode, PartnerAuth, Protocol, Simulator, SimulatorConfig, Template, TextPdu, be32,
};
use crate::frame::FramingSpec;
use crate::liveness::{Beat, Heartbeat};
use crate::text::{from_hex, to_hex};

/// CMPP_CONNECT.
pub const CONNECT: u32 = 0x0000_0001;
/// CMPP_TERMINATE.
pub const TERMINATE: u32 = 0x0000_0002;
/// CMPP_SUBMIT.
pub const SUBMIT: u32 = 0x0000_0004;
/// CMPP_DELIVER.
pub const DELIVER: u32 = 0x0000_0005;
/// CMPP_ACTIVE_TEST, the heartbeat ping.
pub const ACTIVE_TEST: u32 = 0x0000_0008;
/// The bit that makes a Command_Id a response's.
pub const RESPONSE: u32 = 0x8000_0000;
/// The header after Total_Length: Command_Id, Sequence_Id.
pub const HEADER: usize = 8;
/// Sequence_Ids of the heartbeats this template sends: `PING_BASE | (n & 0xffff)` for the
/// n-th ping. Requests of keepwire's clients count up from 1 and stay below it.
pub const PING_BASE: u32 = 0x7FFF_0000;

/// CMPP 3.0 or 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// CMPP 2.0 (Version byte 0x20).
    V2,
    /// CMPP 3.0 (Version byte 0x30).
    V3,
}

impl Version {
    /// The Version byte of CONNECT: 0x30 or 0x20.
    pub fn byte(self) -> u8 {
        match self {
            Version::V2 => 0x20,
            Version::V3 => 0x30,
        }
    }

    /// The width of Status and Result: 4 bytes in 3.0, 1 in 2.0.
    pub fn status_width(self) -> usize {
        match self {
            Version::V2 => 1,
            Version::V3 => 4,
        }
    }

    fn commands(self) -> &'static [(u32, &'static str, Schema)] {
        match self {
            Version::V2 => V2_COMMANDS,
            Version::V3 => V3_COMMANDS,
        }
    }
}

/// The name of a CONNECT_RESP Status (CMPP 3.0 §7.4.2).
///
/// ```
/// assert_eq!(keepwire::protocol::cmpp::connect_status_name(3), "authentication failed");
/// ```
pub fn connect_status_name(status: u32) -> &'static str {
    match status {
        0 => "ok",
        1 => "bad message structure",
        2 => "illegal source address",
        3 => "authentication failed",
        4 => "version too high",
        _ => "other error",
    }
}

const fn req(fields: &'static [Field]) -> Schema {
    Schema {
        fields,
        optional_body: false,
    }
}

const NONE: &[Field] = &[];
const CONNECT_BODY: &[Field] = &[
    f("source_addr", Kind::Octets(6)),
    f("authenticator_source", Kind::Hex(16)),
    f("version", Kind::U8).def("48"),
    f("timestamp", Kind::U32),
];
const CONNECT_BODY_V2: &[Field] = &[
    f("source_addr", Kind::Octets(6)),
    f("authenticator_source", Kind::Hex(16)),
    f("version", Kind::U8).def("32"),
    f("timestamp", Kind::U32),
];
const CONNECT_RESP_V3: &[Field] = &[
    f("status", Kind::U32).always(),
    f("authenticator_ismg", Kind::Hex(16)),
    f("version", Kind::U8).def("48"),
];
const CONNECT_RESP_V2: &[Field] = &[
    f("status", Kind::U8).always(),
    f("authenticator_ismg", Kind::Hex(16)),
    f("version", Kind::U8).def("32"),
];
const ACTIVE_TEST_RESP: Schema = Schema {
    fields: &[f("reserved", Kind::U8)],
    optional_body: true,
};
const RESULT_V3: &[Field] = &[f("msg_id", Kind::U64), f("result", Kind::U32).always()];
const RESULT_V2: &[Field] = &[f("msg_id", Kind::U64), f("result", Kind::U8).always()];

const SUBMIT_V3: &[Field] = &[
    f("msg_id", Kind::U64),
    f("pk_total", Kind::U8).def("1"),
    f("pk_number", Kind::U8).def("1"),
    f("registered_delivery", Kind::U8),
    f("msg_level", Kind::U8),
    f("service_id", Kind::Octets(10)),
    f("fee_usertype", Kind::U8),
    f("fee_terminal_id", Kind::Octets(32)),
    f("fee_terminal_type", Kind::U8),
    f("tp_pid", Kind::U8),
    f("tp_udhi", Kind::U8),
    f("msg_fmt", Kind::Coding),
    f("msg_src", Kind::Octets(6)),
    f("fee_type", Kind::Octets(2)).def("01"),
    f("fee_code", Kind::Octets(6)),
    f("valid_time", Kind::Octets(17)),
    f("at_time", Kind::Octets(17)),
    f("src_id", Kind::Octets(21)),
    f("dest_usr_tl", Kind::Count),
    f("dest_terminal_id", Kind::Repeat(32)),
    f("dest_terminal_type", Kind::U8),
    f("msg_content", Kind::Msg),
    f("link_id", Kind::Octets(20)),
];
const SUBMIT_V2: &[Field] = &[
    f("msg_id", Kind::U64),
    f("pk_total", Kind::U8).def("1"),
    f("pk_number", Kind::U8).def("1"),
    f("registered_delivery", Kind::U8),
    f("msg_level", Kind::U8),
    f("service_id", Kind::Octets(10)),
    f("fee_usertype", Kind::U8),
    f("fee_terminal_id", Kind::Octets(21)),
    f("tp_pid", Kind::U8),
    f("tp_udhi", Kind::U8),
    f("msg_fmt", Kind::Coding),
    f("msg_src", Kind::Octets(6)),
    f("fee_type", Kind::Octets(2)).def("01"),
    f("fee_code", Kind::Octets(6)),
    f("valid_time", Kind::Octets(17)),
    f("at_time", Kind::Octets(17)),
    f("src_id", Kind::Octets(21)),
    f("dest_usr_tl", Kind::Count),
    f("dest_terminal_id", Kind::Repeat(21)),
    f("msg_content", Kind::Msg),
    f("reserve", Kind::Octets(8)),
];
const REPORT_V3: &[Field] = &[
    f("report_msg_id", Kind::U64),
    f("report_stat", Kind::Octets(7)),
    f("report_submit_time", Kind::Octets(10)),
    f("report_done_time", Kind::Octets(10)),
    f("report_dest_terminal_id", Kind::Octets(32)),
    f("report_smsc_sequence", Kind::U32),
];
const REPORT_V2: &[Field] = &[
    f("report_msg_id", Kind::U64),
    f("report_stat", Kind::Octets(7)),
    f("report_submit_time", Kind::Octets(10)),
    f("report_done_time", Kind::Octets(10)),
    f("report_dest_terminal_id", Kind::Octets(21)),
    f("report_smsc_sequence", Kind::U32),
];
const DELIVER_V3: &[Field] = &[
    f("msg_id", Kind::U64),
    f("dest_id", Kind::Octets(21)),
    f("service_id", Kind::Octets(10)),
    f("tp_pid", Kind::U8),
    f("tp_udhi", Kind::U8),
    f("msg_fmt", Kind::Coding),
    f("src_terminal_id", Kind::Octets(32)),
    f("src_terminal_type", Kind::U8),
    f("registered_delivery", Kind::Registered),
    f("msg_content", Kind::Content(REPORT_V3)),
    f("link_id", Kind::Octets(20)),
];
const DELIVER_V2: &[Field] = &[
    f("msg_id", Kind::U64),
    f("dest_id", Kind::Octets(21)),
    f("service_id", Kind::Octets(10)),
    f("tp_pid", Kind::U8),
    f("tp_udhi", Kind::U8),
    f("msg_fmt", Kind::Coding),
    f("src_terminal_id", Kind::Octets(21)),
    f("registered_delivery", Kind::Registered),
    f("msg_content", Kind::Content(REPORT_V2)),
    f("reserved", Kind::Octets(8)),
];

pub(crate) const V3_COMMANDS: &[(u32, &str, Schema)] = &[
    (CONNECT, "connect", req(CONNECT_BODY)),
    (CONNECT | RESPONSE, "connect_resp", req(CONNECT_RESP_V3)),
    (TERMINATE, "terminate", req(NONE)),
    (TERMINATE | RESPONSE, "terminate_resp", req(NONE)),
    (SUBMIT, "submit", req(SUBMIT_V3)),
    (SUBMIT | RESPONSE, "submit_resp", req(RESULT_V3)),
    (DELIVER, "deliver", req(DELIVER_V3)),
    (DELIVER | RESPONSE, "deliver_resp", req(RESULT_V3)),
    (ACTIVE_TEST, "active_test", req(NONE)),
    (ACTIVE_TEST | RESPONSE, "active_test_resp", ACTIVE_TEST_RESP),
];
pub(crate) const V2_COMMANDS: &[(u32, &str, Schema)] = &[
    (CONNECT, "connect", req(CONNECT_BODY_V2)),
    (CONNECT | RESPONSE, "connect_resp", req(CONNECT_RESP_V2)),
    (TERMINATE, "terminate", req(NONE)),
    (TERMINATE | RESPONSE, "terminate_resp", req(NONE)),
    (SUBMIT, "submit", req(SUBMIT_V2)),
    (SUBMIT | RESPONSE, "submit_resp", req(RESULT_V2)),
    (DELIVER, "deliver", req(DELIVER_V2)),
    (DELIVER | RESPONSE, "deliver_resp", req(RESULT_V2)),
    (ACTIVE_TEST, "active_test", req(NONE)),
    (ACTIVE_TEST | RESPONSE, "active_test_resp", ACTIVE_TEST_RESP),
];

/// The name of a Command_Id this template models (`submit`), `None` for the others.
///
/// ```
/// use keepwire::protocol::cmpp;
/// assert_eq!(cmpp::command_name(0x80000008), Some("active_test_resp"));
/// assert_eq!(cmpp::command_name(0x00000006), None);
/// ```
pub fn command_name(id: u32) -> Option<&'static str> {
    V3_COMMANDS.iter().find(|c| c.0 == id).map(|c| c.1)
}

/// Command_Id and Sequence_Id of a frame (Total_Length already taken off).
///
/// # Errors
/// A frame shorter than 8 bytes.
pub fn header(frame: &[u8]) -> Result<(u32, u32), PduError> {
    match (be32(frame, 0), be32(frame, 4)) {
        (Some(id), Some(seq)) => Ok((id, seq)),
        _ => Err(PduError::new(
            PduErrorKind::TooShort,
            format!(
                "cmpp message of {} bytes after Total_Length; the header needs 8 \
                 (Command_Id, Sequence_Id)",
                frame.len()
            ),
        )),
    }
}

/// A frame: header then body.
pub(crate) fn frame(id: u32, seq: u32, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// A frame as text; see the module doc.
///
/// # Errors
/// A frame shorter than the header, or a body field that does not decode.
pub fn decode(version: Version, frame: &[u8]) -> Result<TextPdu, PduError> {
    let (id, seq) = header(frame)?;
    let body = frame.get(HEADER..).unwrap_or_default();
    let mut fields = vec![("seq".to_owned(), seq.to_string())];
    let command = match version.commands().iter().find(|c| c.0 == id) {
        Some(&(_, name, schema)) => {
            decode_body(name, schema, body, 4 + HEADER, &mut fields)?;
            name.to_owned()
        }
        None => {
            if !body.is_empty() {
                fields.push(("body".to_owned(), to_hex(body)));
            }
            format!("0x{id:08x}")
        }
    };
    Ok(TextPdu { command, fields })
}

/// A text PDU as a frame; `seq` when it gives none.
///
/// # Errors
/// An unknown command (naming the valid ones), an unknown field, or a value that does not fit.
pub fn encode(version: Version, pdu: &TextPdu, seq: u32) -> Result<Bytes, PduError> {
    let seq = match pdu.get("seq") {
        Some(v) => u32::try_from(parse_number("seq", v, u64::from(u32::MAX))?).unwrap_or(0),
        None => seq,
    };
    let mut body = Vec::new();
    let commands = version.commands();
    let id = match commands.iter().find(|c| c.1 == pdu.command) {
        Some(&(id, name, schema)) => {
            encode_body(name, &["seq"], schema, &pdu.fields, &mut body)?;
            id
        }
        None => raw_command(commands, pdu, &mut body)?,
    };
    Ok(frame(id, seq, &body))
}

fn raw_command(
    commands: &[(u32, &str, Schema)],
    pdu: &TextPdu,
    body: &mut Vec<u8>,
) -> Result<u32, PduError> {
    let id = pdu
        .command
        .strip_prefix("0x")
        .filter(|h| h.len() == 8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| {
            let names: Vec<&str> = commands.iter().map(|c| c.1).collect();
            PduError::new(
                PduErrorKind::UnknownCommand,
                format!(
                    "unknown cmpp command {:?}; expected one of {}, or 0xNNNNNNNN with body=<hex>",
                    pdu.command,
                    names.join(", ")
                ),
            )
        })?;
    for (name, value) in &pdu.fields {
        match name.as_str() {
            "seq" => {}
            "body" => body.extend(from_hex(value).map_err(|e| bad("body", value, &e.to_string()))?),
            _ => {
                return Err(PduError::new(
                    PduErrorKind::UnknownField,
                    format!(
                        "{}: unknown field {name:?}; valid fields: seq, body",
                        pdu.command
                    ),
                ));
            }
        }
    }
    Ok(id)
}

/// AuthenticatorSource = MD5(Source_Addr + 9 zero bytes + secret + timestamp), with
/// Source_Addr as its 6 wire bytes and the timestamp as 10 ASCII digits `MMDDHHMMSS`.
///
/// ```
/// use keepwire::protocol::cmpp::authenticator_source;
/// // python3 -c 'import hashlib; print(hashlib.md5(b"901234" + bytes(9) + b"secret"
/// //   + b"0102030405").hexdigest())'
/// assert_eq!(
///     keepwire::text::to_hex(&authenticator_source(b"901234", b"secret", "0102030405")),
///     "1c39df8b9c01798a8f35c3c785cf91ce"
/// );
/// ```
pub fn authenticator_source(source_addr: &[u8], secret: &[u8], timestamp: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(source_addr);
    h.update([0u8; 9]);
    h.update(secret);
    h.update(timestamp.as_bytes());
    h.finalize().into()
}

/// AuthenticatorISMG = MD5(Status in its wire width + AuthenticatorSource + secret).
///
/// ```
/// use keepwire::protocol::cmpp::{authenticator_ismg, Version};
/// let source = [0x1c, 0x39, 0xdf, 0x8b, 0x9c, 0x01, 0x79, 0x8a,
///               0x8f, 0x35, 0xc3, 0xc7, 0x85, 0xcf, 0x91, 0xce];
/// // python3 -c 'import hashlib; print(hashlib.md5(bytes(4) + bytes.fromhex(
/// //   "1c39df8b9c01798a8f35c3c785cf91ce") + b"secret").hexdigest())'
/// assert_eq!(
///     keepwire::text::to_hex(&authenticator_ismg(Version::V3, 0, &source, b"secret")),
///     "e9ed198350952cc89cfdfb0c747e8438"
/// );
/// assert_eq!(
///     keepwire::text::to_hex(&authenticator_ismg(Version::V2, 0, &source, b"secret")),
///     "9e21b4ca73ef610ad7e2a0c6990e1098"
/// );
/// ```
pub fn authenticator_ismg(version: Version, status: u32, source: &[u8], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    match version {
        Version::V3 => h.update(status.to_be_bytes()),
        Version::V2 => h.update([u8::try_from(status).unwrap_or(u8::MAX)]),
    }
    h.update(source);
    h.update(secret);
    h.finalize().into()
}

/// Source_Addr's 6 wire bytes for an account id (cut or padded with NULs).
pub(crate) fn source_addr(id: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, b) in out.iter_mut().zip(id.bytes()) {
        *o = b;
    }
    out
}

/// CMPP's heartbeat: ACTIVE_TEST / ACTIVE_TEST_RESP (with its reserved byte).
///
/// ```
/// use keepwire::liveness::{Beat, Heartbeat};
/// use keepwire::protocol::cmpp::ActiveTest;
/// let ping = ActiveTest.ping(3);
/// assert_eq!(ActiveTest.classify(&ping), Some(Beat::Ping));
/// let pong = ActiveTest.pong(&ping);
/// assert_eq!(&pong[..], b"\x80\x00\x00\x08\x7f\xff\x00\x03\x00");
/// assert_eq!(ActiveTest.classify(&pong), Some(Beat::Pong));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ActiveTest;

impl Heartbeat for ActiveTest {
    fn classify(&self, frame: &[u8]) -> Option<Beat> {
        match header(frame).ok()?.0 {
            ACTIVE_TEST => Some(Beat::Ping),
            id if id == ACTIVE_TEST | RESPONSE => Some(Beat::Pong),
            _ => None,
        }
    }

    fn ping(&self, seq: u32) -> Bytes {
        frame(ACTIVE_TEST, PING_BASE | (seq & 0xFFFF), &[])
    }

    fn pong(&self, ping: &[u8]) -> Bytes {
        frame(ACTIVE_TEST | RESPONSE, be32(ping, 4).unwrap_or(0), &[0])
    }
}

/// The CMPP template, 3.0 or 2.0.
#[derive(Debug, Clone, Copy)]
pub struct Cmpp {
    version: Version,
}

impl Cmpp {
    /// The template for this version.
    pub fn new(version: Version) -> Self {
        Cmpp { version }
    }

    /// Its version.
    pub fn version(&self) -> Version {
        self.version
    }
}

impl Protocol for Cmpp {
    fn template(&self) -> Template {
        match self.version {
            Version::V2 => Template::Cmpp2,
            Version::V3 => Template::Cmpp3,
        }
    }

    fn framing(&self) -> FramingSpec {
        super::length_framing()
    }

    fn heartbeat(&self) -> Arc<dyn Heartbeat> {
        Arc::new(ActiveTest)
    }

    fn sequence(&self, frame: &[u8]) -> Option<u32> {
        be32(frame, 4)
    }

    fn is_session_request(&self, frame: &[u8]) -> bool {
        matches!(super::be32(frame, 0), Some(CONNECT | TERMINATE))
    }

    fn with_sequence(&self, frame: &[u8], seq: u32) -> Option<Bytes> {
        super::put_be32(frame, 4, seq)
    }

    fn is_response(&self, frame: &[u8]) -> bool {
        super::is_response_id(frame)
    }

    fn is_success(&self, response: &[u8]) -> bool {
        self.decode_text(response).is_ok_and(|t| {
            t.fields
                .iter()
                .filter(|(n, _)| n == "status" || n == "result")
                .all(|(_, v)| v == "0")
        })
    }

    fn decode_text(&self, frame: &[u8]) -> Result<TextPdu, PduError> {
        decode(self.version, frame)
    }

    fn encode_text(&self, line: &str, seq: u32) -> Result<Bytes, PduError> {
        encode(self.version, &line.parse()?, seq)
    }

    fn login(&self, account: &Account, _bind: BindMode, seq: u32, now: SystemTime) -> Bytes {
        let ts = Civil::utc(now).mmddhhmmss();
        let addr = source_addr(&account.id);
        let auth = authenticator_source(&addr, account.secret.as_bytes(), &ts);
        let mut body = Vec::with_capacity(27);
        body.extend_from_slice(&addr);
        body.extend_from_slice(&auth);
        body.push(self.version.byte());
        body.extend_from_slice(&ts.parse::<u32>().unwrap_or(0).to_be_bytes());
        frame(CONNECT, seq, &body)
    }

    fn check_account(&self, account: &Account) -> Result<(), LoginError> {
        if account.id.len() > 6 {
            return Err(LoginError::new(
                LoginErrorKind::BadAccount,
                format!(
                    "cmpp Source_Addr {:?} has {} bytes; at most 6 (the SP_Id)",
                    account.id,
                    account.id.len()
                ),
            ));
        }
        Ok(())
    }

    fn check_login(
        &self,
        account: &Account,
        login: &[u8],
        response: &[u8],
    ) -> Result<PartnerAuth, LoginError> {
        check_connect(self.version, account, login, response)
    }

    fn logout(&self, seq: u32) -> Bytes {
        frame(TERMINATE, seq, &[])
    }

    fn client_answer(&self, frame_in: &[u8]) -> Option<Bytes> {
        let (id, seq) = header(frame_in).ok()?;
        match id {
            DELIVER => {
                let msg_id = frame_in.get(HEADER..HEADER + 8).unwrap_or(&[0; 8]);
                let mut body = msg_id.to_vec();
                body.resize(8 + self.version.status_width(), 0);
                Some(frame(DELIVER | RESPONSE, seq, &body))
            }
            TERMINATE => Some(frame(TERMINATE | RESPONSE, seq, &[])),
            ACTIVE_TEST => Some(frame(ACTIVE_TEST | RESPONSE, seq, &[0])),
            _ => None,
        }
    }

    fn simulator(&self, config: &SimulatorConfig) -> Box<dyn Simulator> {
        Box::new(super::cmpp_sim::IsmgSim::new(self.version, config.clone()))
    }
}

fn check_connect(
    version: Version,
    account: &Account,
    login: &[u8],
    response: &[u8],
) -> Result<PartnerAuth, LoginError> {
    let not = |why: String| LoginError::new(LoginErrorKind::NotAResponse, why);
    let (_, login_seq) = header(login).map_err(|e| not(format!("login message: {e}")))?;
    let (id, seq) =
        header(response).map_err(|e| not(format!("connect answer: {e}; expected connect_resp")))?;
    if id != CONNECT | RESPONSE {
        let got = command_name(id).map_or_else(|| format!("0x{id:08x}"), str::to_owned);
        return Err(not(format!(
            "connect answered with {got}; expected connect_resp"
        )));
    }
    if seq != login_seq {
        return Err(not(format!(
            "connect answered with Sequence_Id {seq}; expected {login_seq}"
        )));
    }
    let width = version.status_width();
    let body = response.get(HEADER..).unwrap_or_default();
    let status_bytes = body.get(..width);
    let ismg = body.get(width..width + 16);
    let (Some(status_bytes), Some(ismg)) = (status_bytes, ismg) else {
        return Err(not(format!(
            "connect_resp body of {} bytes; expected {} (Status {width}, AuthenticatorISMG 16, \
             Version 1)",
            body.len(),
            width + 17
        )));
    };
    let status = status_bytes
        .iter()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    if status != 0 {
        return Err(LoginError::new(
            LoginErrorKind::Refused { status },
            format!(
                "connect refused: status {status} ({})",
                connect_status_name(status)
            ),
        ));
    }
    let source = login.get(HEADER + 6..HEADER + 22).unwrap_or_default();
    let want = authenticator_ismg(version, 0, source, account.secret.as_bytes());
    if ismg.iter().all(|&b| b == 0) {
        // Not a wrong proof but none: accepted, and said so, for the caller to warn.
        return Ok(PartnerAuth::Missing);
    }
    if ismg != want {
        return Err(LoginError::new(
            LoginErrorKind::BadAuthenticator,
            format!(
                "connect_resp AuthenticatorISMG {} is not MD5(Status + AuthenticatorSource + \
                 secret) = {}: the ISMG does not know this account's secret",
                to_hex(ismg),
                to_hex(&want)
            ),
        ));
    }
    Ok(PartnerAuth::Verified)
}
