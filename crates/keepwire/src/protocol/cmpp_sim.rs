//! An ISMG simulator: one connection's login state and its answers.
//!
//! | state | message from the SP | answer |
//! |---|---|---|
//! | not logged in | CONNECT, Version above ours | CONNECT_RESP Status 4 (version too high), close |
//! | not logged in | CONNECT from a Source_Addr not in the account list | CONNECT_RESP Status 2 (illegal source address), close |
//! | not logged in | CONNECT whose AuthenticatorSource is wrong | CONNECT_RESP Status 3 (authentication failed), close |
//! | not logged in | CONNECT accepted | CONNECT_RESP Status 0, AuthenticatorISMG = MD5(Status + AuthenticatorSource + secret); 16 zero bytes when every login is accepted (no secret known) |
//! | not logged in | any other request | TERMINATE, close (CMPP has no "not logged in" status) |
//! | logged in | CONNECT | CONNECT_RESP Status 5 (other error) |
//! | logged in | SUBMIT | SUBMIT_RESP Result 0 with a new Msg_Id; with receipts, then a DELIVER status report |
//! | logged in | SUBMIT that does not decode | SUBMIT_RESP Result 1 (bad structure), close |
//! | logged in | DELIVER (ISMG to SP only) | DELIVER_RESP Result 2 (bad command word) |
//! | any | ACTIVE_TEST | ACTIVE_TEST_RESP (the pipeline answers these first) |
//! | any | TERMINATE | TERMINATE_RESP, then wait (bounded by `short_close_wait`) for the SP to close first |
//! | any | a response (DELIVER_RESP, ...) | nothing |
//! | any | an unknown Command_Id, or shorter than the header | nothing, close (CMPP has no negative acknowledgement) |
//!
//! Msg_Ids follow the CMPP layout (month, day, hour, minute, second, 22-bit gateway, 16-bit
//! sequence) with the simulator's counter in the gateway and sequence bits, so they are
//! unique for 2^38 messages within one second.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;

use super::cmpp::{
    ACTIVE_TEST, CONNECT, DELIVER, RESPONSE, SUBMIT, TERMINATE, Version, authenticator_ismg,
    authenticator_source, decode, encode, frame, header, source_addr,
};
use super::time::Civil;
use super::{SimAnswer, Simulator, SimulatorConfig, TextPdu};

/// One connection of the ISMG simulator.
#[derive(Debug)]
pub(crate) struct IsmgSim {
    version: Version,
    config: SimulatorConfig,
    logged_in: bool,
    /// Sequence_Ids of the ISMG's own requests (DELIVER, TERMINATE).
    next_seq: u32,
}

/// A Msg_Id (CMPP 3.0 §7.4.5 layout) for counter value `n` at `now`.
pub(crate) fn msg_id(n: u64, now: SystemTime) -> u64 {
    let c = Civil::utc(now);
    (u64::from(c.month) << 60)
        | (u64::from(c.day) << 55)
        | (u64::from(c.hour) << 50)
        | (u64::from(c.minute) << 44)
        | (u64::from(c.second) << 38)
        | (((n >> 16) & 0x3F_FFFF) << 16)
        | (n & 0xFFFF)
}

/// Status or Result in its wire width: 4 bytes in 3.0, 1 in 2.0.
fn status_body(version: Version, status: u32) -> Vec<u8> {
    match version {
        Version::V3 => status.to_be_bytes().to_vec(),
        Version::V2 => vec![u8::try_from(status).unwrap_or(u8::MAX)],
    }
}

impl IsmgSim {
    pub(crate) fn new(version: Version, config: SimulatorConfig) -> Self {
        IsmgSim {
            version,
            config,
            logged_in: false,
            next_seq: 1,
        }
    }

    fn own_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = if seq >= 0x7FFE_FFFF { 1 } else { seq + 1 };
        seq
    }

    fn status_body(&self, status: u32) -> Vec<u8> {
        status_body(self.version, status)
    }

    fn connect(&mut self, seq: u32, body: &[u8]) -> SimAnswer {
        let version = self.version;
        let resp = |status: u32, ismg: [u8; 16]| {
            let mut b = status_body(version, status);
            b.extend_from_slice(&ismg);
            b.push(version.byte());
            frame(CONNECT | RESPONSE, seq, &b)
        };
        if self.logged_in {
            return SimAnswer::send(vec![resp(5, [0; 16])], false);
        }
        let (Some(addr), Some(auth), Some(&version), Some(ts)) = (
            body.get(..6),
            body.get(6..22),
            body.get(22),
            super::be32(body, 23),
        ) else {
            return SimAnswer::send(vec![resp(1, [0; 16])], true);
        };
        if version > self.version.byte() {
            return SimAnswer::send(vec![resp(4, [0; 16])], true);
        }
        let Some(accounts) = &self.config.accounts else {
            self.logged_in = true;
            return SimAnswer::send(vec![resp(0, [0; 16])], false);
        };
        let Some(account) = accounts
            .iter()
            .find(|a| source_addr(&a.id) == addr && a.id.len() <= 6)
        else {
            return SimAnswer::send(vec![resp(2, [0; 16])], true);
        };
        let secret = account.secret.as_bytes();
        let ts = format!("{ts:010}");
        if authenticator_source(addr, secret, &ts) != auth {
            return SimAnswer::send(vec![resp(3, [0; 16])], true);
        }
        self.logged_in = true;
        let ismg = authenticator_ismg(self.version, 0, auth, secret);
        SimAnswer::send(vec![resp(0, ismg)], false)
    }

    fn submit(&mut self, seq: u32, frame_in: &[u8], now: SystemTime) -> SimAnswer {
        let resp = |id: u64, result: u32| {
            let mut b = id.to_be_bytes().to_vec();
            b.extend(self.status_body(result));
            frame(SUBMIT | RESPONSE, seq, &b)
        };
        let Ok(pdu) = decode(self.version, frame_in) else {
            return SimAnswer::send(vec![resp(0, 1)], true);
        };
        let n = self.config.next_message_id.fetch_add(1, Ordering::Relaxed);
        let id = msg_id(n, now);
        let mut frames = vec![resp(id, 0)];
        if self.config.receipts {
            let own = self.own_seq();
            frames.extend(report(self.version, &pdu, id, n, own, now));
        }
        SimAnswer::send(frames, false)
    }
}

/// The DELIVER status report for a SUBMIT.
fn report(
    version: Version,
    submit: &TextPdu,
    id: u64,
    n: u64,
    seq: u32,
    now: SystemTime,
) -> Option<Bytes> {
    let date = Civil::utc(now).yymmddhhmm();
    let dest = submit.get("dest_terminal_id").unwrap_or_default();
    let mut fields = vec![("msg_id".to_owned(), id.to_string())];
    if let Some(src) = submit.get("src_id") {
        fields.push(("dest_id".to_owned(), src.to_owned()));
    }
    if let Some(service) = submit.get("service_id") {
        fields.push(("service_id".to_owned(), service.to_owned()));
    }
    fields.extend(
        [
            ("src_terminal_id", dest.to_owned()),
            ("registered_delivery", "1".to_owned()),
            ("report_msg_id", id.to_string()),
            ("report_stat", "DELIVRD".to_owned()),
            ("report_submit_time", date.clone()),
            ("report_done_time", date),
            ("report_dest_terminal_id", dest.to_owned()),
            ("report_smsc_sequence", (n & 0xFFFF_FFFF).to_string()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let pdu = TextPdu {
        command: "deliver".to_owned(),
        fields,
    };
    encode(version, &pdu, seq).ok()
}

impl Simulator for IsmgSim {
    fn answer(&mut self, frame_in: &[u8], now: SystemTime) -> SimAnswer {
        let Ok((id, seq)) = header(frame_in) else {
            return SimAnswer::send(Vec::new(), true);
        };
        if id & RESPONSE != 0 {
            return SimAnswer::default();
        }
        let body = frame_in.get(super::cmpp::HEADER..).unwrap_or_default();
        match id {
            CONNECT => self.connect(seq, body),
            TERMINATE => SimAnswer::logout(frame(TERMINATE | RESPONSE, seq, &[])),
            ACTIVE_TEST => SimAnswer::send(vec![frame(ACTIVE_TEST | RESPONSE, seq, &[0])], false),
            SUBMIT | DELIVER if !self.logged_in => {
                let own = self.own_seq();
                SimAnswer::send(vec![frame(TERMINATE, own, &[])], true)
            }
            SUBMIT => self.submit(seq, frame_in, now),
            DELIVER => {
                let mut b = body.get(..8).unwrap_or(&[0; 8]).to_vec();
                b.resize(8, 0);
                b.extend(self.status_body(2));
                SimAnswer::send(vec![frame(DELIVER | RESPONSE, seq, &b)], false)
            }
            _ => SimAnswer::send(Vec::new(), true),
        }
    }
}
