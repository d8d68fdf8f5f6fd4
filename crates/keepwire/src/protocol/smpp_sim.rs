//! An SMSC simulator: one connection's bind state and its answers.
//!
//! | state | PDU from the ESME | answer |
//! |---|---|---|
//! | open | bind_* of an accepted account (or any, with no account list) | bind_*_resp ESME_ROK, bound |
//! | open | bind_* with an unknown system_id | bind_*_resp ESME_RINVSYSID, close |
//! | open | bind_* with a wrong password | bind_*_resp ESME_RINVPASWD, close |
//! | open | any other request | generic_nack ESME_RINVBNDSTS, close (as cloudhopper's simulator) |
//! | bound | bind_* | bind_*_resp ESME_RALYBND |
//! | bound tx, trx | submit_sm | submit_sm_resp ESME_ROK with a new message_id; with receipts and a trx bind, then a deliver_sm receipt |
//! | bound rx | submit_sm | submit_sm_resp ESME_RINVBNDSTS |
//! | bound | unbind | unbind_resp, then wait (bounded by `short_close_wait`) for the ESME to close first |
//! | bound | enquire_link | enquire_link_resp (the pipeline answers these first) |
//! | any | a response (deliver_sm_resp, generic_nack, ...) | nothing |
//! | any | an unknown command_id | generic_nack ESME_RINVCMDID |
//! | any | shorter than the header | generic_nack ESME_RINVCMDLEN, close |
//! | any | a body that does not decode | generic_nack ESME_RINVCMDLEN, close |
//!
//! A delivery receipt is a deliver_sm with esm_class 0x04 (SMPP 3.4 §5.2.12: "SMSC Delivery
//! Receipt"), source and destination swapped from the submit, and the text of the spec's
//! Appendix B example: `id:<message_id> sub:001 dlvrd:001 submit date:YYMMDDhhmm done
//! date:YYMMDDhhmm stat:DELIVRD err:000 text:<first 20 characters>`.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;

use super::smpp::{
    BIND_RECEIVER, BIND_TRANSCEIVER, BIND_TRANSMITTER, DELIVER_SM, ENQUIRE_LINK, GENERIC_NACK,
    Header, RESPONSE, SUBMIT_SM, UNBIND, bare, command_name, decode, encode, status,
};
use super::time::Civil;
use super::{BindMode, SimAnswer, Simulator, SimulatorConfig, TextPdu};

/// One connection of the SMSC simulator.
#[derive(Debug)]
pub(crate) struct SmscSim {
    config: SimulatorConfig,
    bound: Option<BindMode>,
    /// Sequence numbers of the SMSC's own requests (deliver_sm).
    next_seq: u32,
}

impl SmscSim {
    pub(crate) fn new(config: SimulatorConfig) -> Self {
        SmscSim {
            config,
            bound: None,
            next_seq: 1,
        }
    }

    fn bind(&mut self, h: Header, pdu: &TextPdu) -> SimAnswer {
        let resp = |status| {
            Header {
                command_id: h.command_id | RESPONSE,
                command_status: status,
                sequence_number: h.sequence_number,
            }
            .frame(b"keepwire\0")
        };
        if self.bound.is_some() {
            return SimAnswer::send(vec![resp(status::ESME_RALYBND)], false);
        }
        let id = pdu.get("system_id").unwrap_or_default();
        let password = pdu.get("password").unwrap_or_default();
        if let Some(accounts) = &self.config.accounts {
            // Compared in text form: both sides escaped the same way.
            let Some(account) = accounts
                .iter()
                .find(|a| super::value::escape_bytes(a.id.as_bytes()) == id)
            else {
                return SimAnswer::send(vec![resp(status::ESME_RINVSYSID)], true);
            };
            if super::value::escape_bytes(account.secret.as_bytes()) != password {
                return SimAnswer::send(vec![resp(status::ESME_RINVPASWD)], true);
            }
        }
        self.bound = Some(match h.command_id {
            BIND_RECEIVER => BindMode::Receiver,
            BIND_TRANSMITTER => BindMode::Transmitter,
            _ => BindMode::Transceiver,
        });
        SimAnswer::send(vec![resp(status::ESME_ROK)], false)
    }

    fn submit(&mut self, h: Header, pdu: &TextPdu, now: SystemTime) -> SimAnswer {
        let resp = |status, id: &str| {
            let mut body = id.as_bytes().to_vec();
            body.push(0);
            Header {
                command_id: SUBMIT_SM | RESPONSE,
                command_status: status,
                sequence_number: h.sequence_number,
            }
            .frame(&body)
        };
        if self.bound == Some(BindMode::Receiver) {
            return SimAnswer::send(vec![resp(status::ESME_RINVBNDSTS, "")], false);
        }
        let n = self.config.next_message_id.fetch_add(1, Ordering::Relaxed);
        let id = n.to_string();
        let mut frames = vec![resp(status::ESME_ROK, &id)];
        if self.config.receipts && self.bound == Some(BindMode::Transceiver) {
            let seq = self.next_seq;
            self.next_seq = if seq >= 0x7FFE_FFFF { 1 } else { seq + 1 };
            frames.extend(receipt(pdu, &id, seq, now));
        }
        SimAnswer::send(frames, false)
    }
}

/// The first 20 characters of a submit's message, for the receipt's `text:` (SMPP 3.4
/// Appendix B: "text: The first 20 characters of the short message"). Taken from the
/// message's bytes, not its text form (`hello\x20world` is `hello world`); a UCS-2 body
/// (`data_coding=8`) counts characters, and those outside ASCII become `?`, as the receipt
/// itself is in the default alphabet.
fn receipt_text(submit: &TextPdu) -> Vec<u8> {
    const TEXT_CHARS: usize = 20;
    let value = submit.get("short_message").unwrap_or_default();
    let ucs2 = submit
        .get("data_coding")
        .and_then(|v| super::value::parse_number("data_coding", v, 0xff).ok())
        == Some(8);
    if ucs2 {
        let bytes = super::value::unescape_ucs2("short_message", value).unwrap_or_default();
        let units = bytes.chunks_exact(2).map(|p| {
            u16::from_be_bytes([
                p.first().copied().unwrap_or(0),
                p.get(1).copied().unwrap_or(0),
            ])
        });
        return char::decode_utf16(units)
            .take(TEXT_CHARS)
            .map(|c| match c {
                Ok(c) if c.is_ascii() => u8::try_from(u32::from(c)).unwrap_or(b'?'),
                _ => b'?',
            })
            .collect();
    }
    let mut bytes = super::value::unescape_bytes("short_message", value).unwrap_or_default();
    bytes.truncate(TEXT_CHARS);
    bytes
}

/// The deliver_sm receipt for a submit.
fn receipt(submit: &TextPdu, id: &str, seq: u32, now: SystemTime) -> Option<Bytes> {
    let date = Civil::utc(now).yymmddhhmm();
    let mut raw = format!(
        "id:{id} sub:001 dlvrd:001 submit date:{date} done date:{date} stat:DELIVRD err:000 text:"
    )
    .into_bytes();
    raw.extend(receipt_text(submit));
    let body = super::value::escape_bytes(&raw);
    let mut pdu = TextPdu {
        command: "deliver_sm".to_owned(),
        fields: vec![("seq".to_owned(), seq.to_string())],
    };
    for (from, to) in [
        ("dest_addr_ton", "source_addr_ton"),
        ("dest_addr_npi", "source_addr_npi"),
        ("destination_addr", "source_addr"),
        ("source_addr_ton", "dest_addr_ton"),
        ("source_addr_npi", "dest_addr_npi"),
        ("source_addr", "destination_addr"),
    ] {
        if let Some(v) = submit.get(from) {
            pdu.fields.push((to.to_owned(), v.to_owned()));
        }
    }
    pdu.fields.push(("esm_class".to_owned(), "4".to_owned()));
    pdu.fields.push(("short_message".to_owned(), body));
    encode(&pdu, seq).ok()
}

impl Simulator for SmscSim {
    fn answer(&mut self, frame: &[u8], now: SystemTime) -> SimAnswer {
        let Ok(h) = Header::read(frame) else {
            return SimAnswer::send(vec![bare(GENERIC_NACK, status::ESME_RINVCMDLEN, 0)], true);
        };
        let seq = h.sequence_number;
        if h.command_id & RESPONSE != 0 {
            return SimAnswer::default();
        }
        if command_name(h.command_id).is_none() {
            return SimAnswer::send(vec![bare(GENERIC_NACK, status::ESME_RINVCMDID, seq)], false);
        }
        let Ok(pdu) = decode(frame) else {
            return SimAnswer::send(vec![bare(GENERIC_NACK, status::ESME_RINVCMDLEN, seq)], true);
        };
        let is_bind = matches!(
            h.command_id,
            BIND_RECEIVER | BIND_TRANSMITTER | BIND_TRANSCEIVER
        );
        if self.bound.is_none() && !is_bind && h.command_id != ENQUIRE_LINK {
            return SimAnswer::send(vec![bare(GENERIC_NACK, status::ESME_RINVBNDSTS, seq)], true);
        }
        match h.command_id {
            BIND_RECEIVER | BIND_TRANSMITTER | BIND_TRANSCEIVER => self.bind(h, &pdu),
            SUBMIT_SM => self.submit(h, &pdu, now),
            UNBIND => SimAnswer::logout(bare(UNBIND | RESPONSE, 0, seq)),
            ENQUIRE_LINK => SimAnswer::send(vec![bare(ENQUIRE_LINK | RESPONSE, 0, seq)], false),
            // deliver_sm goes from the SMSC to the ESME, not the other way.
            DELIVER_SM => SimAnswer::send(
                vec![
                    Header {
                        command_id: DELIVER_SM | RESPONSE,
                        command_status: status::ESME_RINVBNDSTS,
                        sequence_number: seq,
                    }
                    .frame(&[0]),
                ],
                false,
            ),
            _ => SimAnswer::send(vec![bare(GENERIC_NACK, status::ESME_RINVCMDID, seq)], false),
        }
    }
}
