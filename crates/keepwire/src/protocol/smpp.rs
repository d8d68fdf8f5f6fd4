//! SMPP 3.4: PDUs, their text form, the bind session and enquire_link heartbeats.
//!
//! Every PDU starts with a 16-byte header, all integers big-endian. The framing
//! `len:be:4:incl` takes off command_length, so a frame starts at command_id:
//!
//! ```text
//!  wire offset 0        4           8                12               16
//!  +--------------------+-----------+----------------+----------------+--------------
//!  | command_length     | command_id| command_status | sequence_number| body ...
//!  | (counts itself)    |           | (0 in requests)|                |
//!  +--------------------+-----------+----------------+----------------+--------------
//!                       ^ the frame starts here (frame offset 0 = wire offset 4)
//! ```
//!
//! A response's command_id is the request's with the top bit set (submit_sm 0x00000004,
//! submit_sm_resp 0x80000004) and carries the request's sequence_number. Bodies are tables of
//! fields (SMPP 3.4 §4): `C n` is a NUL-terminated string of at most n bytes *with* the NUL;
//! `short_message` is `sm_length` bytes with no terminator; optional TLVs (tag 2, length 2,
//! value) follow the mandatory fields.
//!
//! INPUT (frame, hex) -> DECODED (text form):
//!
//! ```text
//! 00000002 00000000 00000001 7465737400 73656372657400 00 34 00 00 00
//!   -> bind_transmitter seq=1 system_id=test password=secret
//! 00000015 00000000 00000007
//!   -> enquire_link seq=7
//! 80000004 00000000 00000002 313200
//!   -> submit_sm_resp seq=2 status=ESME_ROK message_id=12
//! 80000000 00000003 00000005
//!   -> generic_nack seq=5 status=ESME_RINVCMDID
//! 00000103 00000000 00000009 0102
//!   -> 0x00000103 seq=9 body=0102        (a command this template does not model)
//! ```
//!
//! Text form: `seq` first, then `status` (always in responses, in requests only when not
//! 0; a name from [`status`] or a number), then the body's fields in wire order, each left
//! out when it has its default (0, empty; `interface_version` 0x34). `short_message` is text
//! with escapes, or characters when `data_coding=8` (UCS-2); `sm_length` follows from it.
//! TLVs print as `tlv.0xTTTT=value` in wire order. Commands the template does not model
//! print as their id in hex with the raw `body=` in hex, and encode back the same way.
//!
//! Decode errors name the wire offset (counting command_length, as the specification's
//! tables do): `submit_sm at offset 37: destination_addr: c-string not terminated within 21
//! bytes (at most 21)`.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::error::{LoginError, LoginErrorKind, PduError, PduErrorKind};
use super::schema::{Field, Kind, Schema, decode_body, encode_body, f};
use super::value::{bad, parse_number};
use super::{
    Account, BindMode, PartnerAuth, Protocol, Simulator, SimulatorConfig, Template, TextPdu, be32,
};
use crate::frame::FramingSpec;
use crate::liveness::{Beat, Heartbeat};
use crate::text::{from_hex, to_hex};

/// bind_receiver.
pub const BIND_RECEIVER: u32 = 0x0000_0001;
/// bind_transmitter.
pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
/// submit_sm.
pub const SUBMIT_SM: u32 = 0x0000_0004;
/// deliver_sm.
pub const DELIVER_SM: u32 = 0x0000_0005;
/// unbind.
pub const UNBIND: u32 = 0x0000_0006;
/// bind_transceiver.
pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
/// enquire_link, the heartbeat ping.
pub const ENQUIRE_LINK: u32 = 0x0000_0015;
/// generic_nack (a response with no request of its own).
pub const GENERIC_NACK: u32 = 0x8000_0000;
/// The bit that makes a command id a response's.
pub const RESPONSE: u32 = 0x8000_0000;
/// The header after command_length: command_id, command_status, sequence_number.
pub const HEADER: usize = 12;
/// The largest sequence_number SMPP allows (3.4 §5.1.4: 0x00000001 - 0x7FFFFFFF).
pub const MAX_SEQUENCE: u32 = 0x7FFF_FFFF;
/// Sequence numbers of the heartbeats this template sends: `PING_BASE | (n & 0xffff)` for
/// the n-th ping. Requests of keepwire's clients count up from 1 and stay below it.
pub const PING_BASE: u32 = 0x7FFF_0000;

/// command_status values (SMPP 3.4 §5.1.3), named as the specification spells them.
pub mod status {
    /// No error.
    pub const ESME_ROK: u32 = 0x00;
    /// Message length is invalid.
    pub const ESME_RINVMSGLEN: u32 = 0x01;
    /// Command length is invalid.
    pub const ESME_RINVCMDLEN: u32 = 0x02;
    /// Invalid command id.
    pub const ESME_RINVCMDID: u32 = 0x03;
    /// Incorrect bind status for the given command.
    pub const ESME_RINVBNDSTS: u32 = 0x04;
    /// ESME already in bound state.
    pub const ESME_RALYBND: u32 = 0x05;
    /// System error.
    pub const ESME_RSYSERR: u32 = 0x08;
    /// Invalid source address.
    pub const ESME_RINVSRCADR: u32 = 0x0A;
    /// Invalid destination address.
    pub const ESME_RINVDSTADR: u32 = 0x0B;
    /// Message id is invalid.
    pub const ESME_RINVMSGID: u32 = 0x0C;
    /// Bind failed.
    pub const ESME_RBINDFAIL: u32 = 0x0D;
    /// Invalid password.
    pub const ESME_RINVPASWD: u32 = 0x0E;
    /// Invalid system id.
    pub const ESME_RINVSYSID: u32 = 0x0F;
    /// Message queue full.
    pub const ESME_RMSGQFUL: u32 = 0x14;
    /// Throttling error.
    pub const ESME_RTHROTTLED: u32 = 0x58;

    pub(crate) const NAMES: &[(&str, u32)] = &[
        ("ESME_ROK", ESME_ROK),
        ("ESME_RINVMSGLEN", ESME_RINVMSGLEN),
        ("ESME_RINVCMDLEN", ESME_RINVCMDLEN),
        ("ESME_RINVCMDID", ESME_RINVCMDID),
        ("ESME_RINVBNDSTS", ESME_RINVBNDSTS),
        ("ESME_RALYBND", ESME_RALYBND),
        ("ESME_RINVPRTFLG", 0x06),
        ("ESME_RINVREGDLVFLG", 0x07),
        ("ESME_RSYSERR", ESME_RSYSERR),
        ("ESME_RINVSRCADR", ESME_RINVSRCADR),
        ("ESME_RINVDSTADR", ESME_RINVDSTADR),
        ("ESME_RINVMSGID", ESME_RINVMSGID),
        ("ESME_RBINDFAIL", ESME_RBINDFAIL),
        ("ESME_RINVPASWD", ESME_RINVPASWD),
        ("ESME_RINVSYSID", ESME_RINVSYSID),
        ("ESME_RCANCELFAIL", 0x11),
        ("ESME_RREPLACEFAIL", 0x13),
        ("ESME_RMSGQFUL", ESME_RMSGQFUL),
        ("ESME_RINVSERTYP", 0x15),
        ("ESME_RINVNUMDESTS", 0x33),
        ("ESME_RINVDLNAME", 0x34),
        ("ESME_RINVDESTFLAG", 0x40),
        ("ESME_RINVSUBREP", 0x42),
        ("ESME_RINVESMCLASS", 0x43),
        ("ESME_RCNTSUBDL", 0x44),
        ("ESME_RSUBMITFAIL", 0x45),
        ("ESME_RINVSRCTON", 0x48),
        ("ESME_RINVSRCNPI", 0x49),
        ("ESME_RINVDSTTON", 0x50),
        ("ESME_RINVDSTNPI", 0x51),
        ("ESME_RINVSYSTYP", 0x53),
        ("ESME_RINVREPFLAG", 0x54),
        ("ESME_RINVNUMMSGS", 0x55),
        ("ESME_RTHROTTLED", ESME_RTHROTTLED),
        ("ESME_RINVSCHED", 0x61),
        ("ESME_RINVEXPIRY", 0x62),
        ("ESME_RINVDFTMSGID", 0x63),
        ("ESME_RX_T_APPN", 0x64),
        ("ESME_RX_P_APPN", 0x65),
        ("ESME_RX_R_APPN", 0x66),
        ("ESME_RQUERYFAIL", 0x67),
        ("ESME_RINVOPTPARSTREAM", 0xC0),
        ("ESME_ROPTPARNOTALLWD", 0xC1),
        ("ESME_RINVPARLEN", 0xC2),
        ("ESME_RMISSINGOPTPARAM", 0xC3),
        ("ESME_RINVOPTPARAMVAL", 0xC4),
        ("ESME_RDELIVERYFAILURE", 0xFE),
        ("ESME_RUNKNOWNERR", 0xFF),
    ];

    /// The name of a command_status (`ESME_RINVPASWD`), `None` for values without one.
    ///
    /// ```
    /// use keepwire::protocol::smpp::status;
    /// assert_eq!(status::name(0x0e), Some("ESME_RINVPASWD"));
    /// assert_eq!(status::name(0x1234), None);
    /// ```
    pub fn name(value: u32) -> Option<&'static str> {
        NAMES.iter().find(|(_, v)| *v == value).map(|(n, _)| *n)
    }

    /// The value of a name, case-insensitive.
    pub fn by_name(name: &str) -> Option<u32> {
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

const BIND: &[Field] = &[
    f("system_id", Kind::CStr(16)),
    f("password", Kind::CStr(9)),
    f("system_type", Kind::CStr(13)),
    f("interface_version", Kind::U8).def("52"),
    f("addr_ton", Kind::U8),
    f("addr_npi", Kind::U8),
    f("address_range", Kind::CStr(41)),
    f("tlvs", Kind::Tlvs),
];

const BIND_RESP: &[Field] = &[f("system_id", Kind::CStr(16)), f("tlvs", Kind::Tlvs)];

/// submit_sm and deliver_sm (SMPP 3.4 §4.4.1, §4.6.1).
const SM: &[Field] = &[
    f("service_type", Kind::CStr(6)),
    f("source_addr_ton", Kind::U8),
    f("source_addr_npi", Kind::U8),
    f("source_addr", Kind::CStr(21)),
    f("dest_addr_ton", Kind::U8),
    f("dest_addr_npi", Kind::U8),
    f("destination_addr", Kind::CStr(21)),
    f("esm_class", Kind::U8),
    f("protocol_id", Kind::U8),
    f("priority_flag", Kind::U8),
    f("schedule_delivery_time", Kind::CStr(17)),
    f("validity_period", Kind::CStr(17)),
    f("registered_delivery", Kind::U8),
    f("replace_if_present_flag", Kind::U8),
    f("data_coding", Kind::Coding),
    f("sm_default_msg_id", Kind::U8),
    f("short_message", Kind::Msg),
    f("tlvs", Kind::Tlvs),
];

const SM_RESP: &[Field] = &[f("message_id", Kind::CStr(65)), f("tlvs", Kind::Tlvs)];
const EMPTY: &[Field] = &[f("tlvs", Kind::Tlvs)];

const fn req(fields: &'static [Field]) -> Schema {
    Schema {
        fields,
        optional_body: false,
    }
}

const fn resp(fields: &'static [Field]) -> Schema {
    Schema {
        fields,
        optional_body: true,
    }
}

/// The commands this template models: id, name, body.
pub(crate) const COMMANDS: &[(u32, &str, Schema)] = &[
    (BIND_RECEIVER, "bind_receiver", req(BIND)),
    (
        BIND_RECEIVER | RESPONSE,
        "bind_receiver_resp",
        resp(BIND_RESP),
    ),
    (BIND_TRANSMITTER, "bind_transmitter", req(BIND)),
    (
        BIND_TRANSMITTER | RESPONSE,
        "bind_transmitter_resp",
        resp(BIND_RESP),
    ),
    (BIND_TRANSCEIVER, "bind_transceiver", req(BIND)),
    (
        BIND_TRANSCEIVER | RESPONSE,
        "bind_transceiver_resp",
        resp(BIND_RESP),
    ),
    (SUBMIT_SM, "submit_sm", req(SM)),
    (SUBMIT_SM | RESPONSE, "submit_sm_resp", resp(SM_RESP)),
    (DELIVER_SM, "deliver_sm", req(SM)),
    (DELIVER_SM | RESPONSE, "deliver_sm_resp", resp(SM_RESP)),
    (UNBIND, "unbind", req(EMPTY)),
    (UNBIND | RESPONSE, "unbind_resp", req(EMPTY)),
    (ENQUIRE_LINK, "enquire_link", req(EMPTY)),
    (ENQUIRE_LINK | RESPONSE, "enquire_link_resp", req(EMPTY)),
    (GENERIC_NACK, "generic_nack", req(EMPTY)),
];

/// The name of a command id this template models (`submit_sm`), `None` for the others.
///
/// ```
/// use keepwire::protocol::smpp;
/// assert_eq!(smpp::command_name(0x80000015), Some("enquire_link_resp"));
/// assert_eq!(smpp::command_name(0x00000103), None);
/// ```
pub fn command_name(id: u32) -> Option<&'static str> {
    COMMANDS.iter().find(|c| c.0 == id).map(|c| c.1)
}

fn command_by_name(name: &str) -> Option<(u32, &'static str, Schema)> {
    COMMANDS.iter().find(|c| c.1 == name).copied()
}

/// The three header fields after command_length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// command_id.
    pub command_id: u32,
    /// command_status.
    pub command_status: u32,
    /// sequence_number.
    pub sequence_number: u32,
}

impl Header {
    /// Reads the header of a frame (command_length already taken off).
    ///
    /// # Errors
    /// A frame shorter than 12 bytes.
    pub fn read(frame: &[u8]) -> Result<Header, PduError> {
        match (be32(frame, 0), be32(frame, 4), be32(frame, 8)) {
            (Some(command_id), Some(command_status), Some(sequence_number)) => Ok(Header {
                command_id,
                command_status,
                sequence_number,
            }),
            _ => Err(PduError::new(
                PduErrorKind::TooShort,
                format!(
                    "smpp pdu of {} bytes after command_length; the header needs 12 \
                     (command_id, command_status, sequence_number)",
                    frame.len()
                ),
            )),
        }
    }

    /// The header as a frame with `body` after it.
    pub fn frame(self, body: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(&self.command_id.to_be_bytes());
        out.extend_from_slice(&self.command_status.to_be_bytes());
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(body);
        Bytes::from(out)
    }
}

/// A header-only PDU.
pub(crate) fn bare(command_id: u32, command_status: u32, sequence_number: u32) -> Bytes {
    Header {
        command_id,
        command_status,
        sequence_number,
    }
    .frame(&[])
}

fn status_text(s: u32) -> String {
    status::name(s).map_or_else(|| format!("0x{s:08x}"), str::to_owned)
}

/// A frame as text; see the module doc.
///
/// # Errors
/// A frame shorter than the header, or a body field that does not decode.
pub fn decode(frame: &[u8]) -> Result<TextPdu, PduError> {
    let h = Header::read(frame)?;
    let body = frame.get(HEADER..).unwrap_or_default();
    let mut fields = vec![("seq".to_owned(), h.sequence_number.to_string())];
    if h.command_id & RESPONSE != 0 || h.command_status != 0 {
        fields.push(("status".to_owned(), status_text(h.command_status)));
    }
    let command = match COMMANDS.iter().find(|c| c.0 == h.command_id) {
        Some(&(_, name, schema)) => {
            decode_body(name, schema, body, 4 + HEADER, &mut fields)?;
            name.to_owned()
        }
        None => {
            if !body.is_empty() {
                fields.push(("body".to_owned(), to_hex(body)));
            }
            format!("0x{:08x}", h.command_id)
        }
    };
    Ok(TextPdu { command, fields })
}

/// A text PDU as a frame; `seq` when it gives none.
///
/// # Errors
/// An unknown command (naming the valid ones), an unknown field, or a value that does not fit.
pub fn encode(pdu: &TextPdu, seq: u32) -> Result<Bytes, PduError> {
    let seq = match pdu.get("seq") {
        Some(v) => u32::try_from(parse_number("seq", v, u64::from(u32::MAX))?).unwrap_or(0),
        None => seq,
    };
    let status = match pdu.get("status") {
        Some(v) => match status::by_name(v) {
            Some(s) => s,
            None => u32::try_from(parse_number("status", v, u64::from(u32::MAX))?).unwrap_or(0),
        },
        None => 0,
    };
    let mut body = Vec::new();
    let command_id = match command_by_name(&pdu.command) {
        Some((id, name, schema)) => {
            encode_body(name, &["seq", "status"], schema, &pdu.fields, &mut body)?;
            id
        }
        None => raw_command(pdu, &mut body)?,
    };
    Ok(Header {
        command_id,
        command_status: status,
        sequence_number: seq,
    }
    .frame(&body))
}

/// `0xNNNNNNNN seq=.. status=.. body=<hex>`: a command the template does not model.
fn raw_command(pdu: &TextPdu, body: &mut Vec<u8>) -> Result<u32, PduError> {
    let id = pdu
        .command
        .strip_prefix("0x")
        .filter(|h| h.len() == 8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| {
            let names: Vec<&str> = COMMANDS.iter().map(|c| c.1).collect();
            PduError::new(
                PduErrorKind::UnknownCommand,
                format!(
                    "unknown smpp command {:?}; expected one of {}, or 0xNNNNNNNN with body=<hex>",
                    pdu.command,
                    names.join(", ")
                ),
            )
        })?;
    for (name, value) in &pdu.fields {
        match name.as_str() {
            "seq" | "status" => {}
            "body" => body.extend(from_hex(value).map_err(|e| bad("body", value, &e.to_string()))?),
            _ => {
                return Err(PduError::new(
                    PduErrorKind::UnknownField,
                    format!(
                        "{}: unknown field {name:?}; valid fields: seq, status, body",
                        pdu.command
                    ),
                ));
            }
        }
    }
    Ok(id)
}

/// SMPP 3.4's heartbeat: enquire_link / enquire_link_resp.
///
/// ```
/// use keepwire::liveness::{Beat, Heartbeat};
/// use keepwire::protocol::smpp::{EnquireLink, PING_BASE};
/// let ping = EnquireLink.ping(1);
/// assert_eq!(EnquireLink.classify(&ping), Some(Beat::Ping));
/// assert_eq!(&ping[8..], &(PING_BASE | 1).to_be_bytes());
/// let pong = EnquireLink.pong(&ping);
/// assert_eq!(EnquireLink.classify(&pong), Some(Beat::Pong));
/// assert_eq!(&pong[8..], &ping[8..]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct EnquireLink;

impl Heartbeat for EnquireLink {
    fn classify(&self, frame: &[u8]) -> Option<Beat> {
        let h = Header::read(frame).ok()?;
        match h.command_id {
            ENQUIRE_LINK => Some(Beat::Ping),
            id if id == ENQUIRE_LINK | RESPONSE => Some(Beat::Pong),
            _ => None,
        }
    }

    fn ping(&self, seq: u32) -> Bytes {
        bare(ENQUIRE_LINK, 0, PING_BASE | (seq & 0xFFFF))
    }

    fn pong(&self, ping: &[u8]) -> Bytes {
        let seq = be32(ping, 8).unwrap_or(0);
        bare(ENQUIRE_LINK | RESPONSE, 0, seq)
    }
}

/// The SMPP 3.4 template.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smpp;

/// `s` cut to fit a C-string of `max` bytes, without NULs.
fn cstr_fit(out: &mut Vec<u8>, s: &str, max: usize) {
    let bytes: Vec<u8> = s.bytes().filter(|&b| b != 0).collect();
    let keep = bytes.len().min(max.saturating_sub(1));
    out.extend_from_slice(bytes.get(..keep).unwrap_or_default());
    out.push(0);
}

pub(crate) fn bind_id(bind: BindMode) -> u32 {
    match bind {
        BindMode::Transceiver => BIND_TRANSCEIVER,
        BindMode::Transmitter => BIND_TRANSMITTER,
        BindMode::Receiver => BIND_RECEIVER,
    }
}

impl Protocol for Smpp {
    fn template(&self) -> Template {
        Template::Smpp
    }

    fn framing(&self) -> FramingSpec {
        super::length_framing()
    }

    fn heartbeat(&self) -> Arc<dyn Heartbeat> {
        Arc::new(EnquireLink)
    }

    fn sequence(&self, frame: &[u8]) -> Option<u32> {
        be32(frame, 8)
    }

    fn is_session_request(&self, frame: &[u8]) -> bool {
        matches!(
            super::be32(frame, 0),
            Some(BIND_RECEIVER | BIND_TRANSMITTER | BIND_TRANSCEIVER | UNBIND)
        )
    }

    fn with_sequence(&self, frame: &[u8], seq: u32) -> Option<Bytes> {
        super::put_be32(frame, 8, seq)
    }

    fn is_response(&self, frame: &[u8]) -> bool {
        super::is_response_id(frame)
    }

    fn is_success(&self, response: &[u8]) -> bool {
        be32(response, 4) == Some(0)
    }

    fn decode_text(&self, frame: &[u8]) -> Result<TextPdu, PduError> {
        decode(frame)
    }

    fn encode_text(&self, line: &str, seq: u32) -> Result<Bytes, PduError> {
        encode(&line.parse()?, seq)
    }

    fn login(&self, account: &Account, bind: BindMode, seq: u32, _now: SystemTime) -> Bytes {
        let mut body = Vec::with_capacity(64);
        cstr_fit(&mut body, &account.id, 16);
        cstr_fit(&mut body, &account.secret, 9);
        body.extend_from_slice(&[0, 0x34, 0, 0, 0]);
        Header {
            command_id: bind_id(bind),
            command_status: 0,
            sequence_number: seq,
        }
        .frame(&body)
    }

    fn check_account(&self, account: &Account) -> Result<(), LoginError> {
        if account.id.len() > 15 || account.id.contains('\0') {
            return Err(LoginError::new(
                LoginErrorKind::BadAccount,
                format!(
                    "smpp system_id {:?} has {} bytes; at most 15",
                    account.id,
                    account.id.len()
                ),
            ));
        }
        if account.secret.len() > 8 || account.secret.contains('\0') {
            return Err(LoginError::new(
                LoginErrorKind::BadAccount,
                format!(
                    "smpp password of account {:?} has {} bytes; at most 8",
                    account.id,
                    account.secret.len()
                ),
            ));
        }
        Ok(())
    }

    fn check_login(
        &self,
        _account: &Account,
        login: &[u8],
        response: &[u8],
    ) -> Result<PartnerAuth, LoginError> {
        check_bind(login, response).map(|()| PartnerAuth::NotInProtocol)
    }

    fn logout(&self, seq: u32) -> Bytes {
        bare(UNBIND, 0, seq)
    }

    fn client_answer(&self, frame: &[u8]) -> Option<Bytes> {
        let h = Header::read(frame).ok()?;
        let seq = h.sequence_number;
        match h.command_id {
            id if id & RESPONSE != 0 => None,
            DELIVER_SM => Some(
                Header {
                    command_id: DELIVER_SM | RESPONSE,
                    command_status: 0,
                    sequence_number: seq,
                }
                .frame(&[0]),
            ),
            UNBIND | ENQUIRE_LINK => Some(bare(h.command_id | RESPONSE, 0, seq)),
            // alert_notification and outbind have no response.
            0x0000_0102 | 0x0000_000B => None,
            _ => Some(bare(GENERIC_NACK, status::ESME_RINVCMDID, seq)),
        }
    }

    fn simulator(&self, config: &SimulatorConfig) -> Box<dyn Simulator> {
        Box::new(super::smpp_sim::SmscSim::new(config.clone()))
    }
}

fn check_bind(login: &[u8], response: &[u8]) -> Result<(), LoginError> {
    let not = |why: String| LoginError::new(LoginErrorKind::NotAResponse, why);
    let req = Header::read(login).map_err(|e| not(format!("login pdu: {e}")))?;
    let want = req.command_id | RESPONSE;
    let want_name = command_name(want).unwrap_or("bind_resp");
    let h = Header::read(response)
        .map_err(|e| not(format!("bind answer: {e}; expected {want_name}")))?;
    if h.command_id != want && h.command_id != GENERIC_NACK {
        let got = command_name(h.command_id)
            .map_or_else(|| format!("0x{:08x}", h.command_id), str::to_owned);
        return Err(not(format!(
            "bind answered with {got}; expected {want_name}"
        )));
    }
    if h.sequence_number != req.sequence_number {
        return Err(not(format!(
            "bind answered with sequence_number {}; expected {}",
            h.sequence_number, req.sequence_number
        )));
    }
    if h.command_status != 0 || h.command_id == GENERIC_NACK {
        return Err(LoginError::new(
            LoginErrorKind::Refused {
                status: h.command_status,
            },
            format!(
                "bind refused: status 0x{:08x} ({})",
                h.command_status,
                status::name(h.command_status).unwrap_or("unknown status")
            ),
        ));
    }
    Ok(())
}
