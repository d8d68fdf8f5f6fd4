//! Protocol PDUs: the input is a frame (the PDU after its length field) for each template
//! (`smpp`, `cmpp3`, `cmpp2`). `decode_text` never panics; when it decodes, the text line
//! parses back, `encode_text` of it gives the same bytes, and decoding those gives the same
//! text. The simulators' `answer`, `client_answer` and the heartbeat's `classify` never panic
//! on it either. The first input byte picks a command id of a modelled PDU half the time, so
//! the fuzzer reaches the body decoders and not only the header check.

#![no_main]

use keepwire::protocol::{SimulatorConfig, Template, TextPdu};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

/// Command ids the templates model (SMPP and CMPP share the low values).
const IDS: [u32; 12] = [
    0x0000_0001, 0x0000_0002, 0x0000_0004, 0x0000_0005, 0x0000_0009, 0x0000_0008,
    0x8000_0001, 0x8000_0004, 0x8000_0005, 0x8000_0008, 0x8000_0009, 0x8000_0000,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_767_323_045);
    for t in [Template::Smpp, Template::Cmpp3, Template::Cmpp2] {
        let mut frame = Vec::with_capacity(rest.len() + 4);
        if pick & 1 == 1 {
            frame.extend_from_slice(&IDS[usize::from(pick >> 1) % IDS.len()].to_be_bytes());
        }
        frame.extend_from_slice(rest);
        let p = t.protocol();
        if let Ok(text) = p.decode_text(&frame) {
            let line = text.to_string();
            assert_eq!(line.parse::<TextPdu>().as_ref(), Ok(&text), "{line}");
            let again = p.encode_text(&line, 0).expect("decoded text encodes");
            assert_eq!(&again[..], &frame[..], "{line}");
            assert_eq!(p.decode_text(&again).as_ref(), Ok(&text));
            let _ = text.to_json();
        }
        let _ = p.client_answer(&frame);
        let _ = p.heartbeat().classify(&frame);
        let mut sim = p.simulator(&SimulatorConfig {
            receipts: true,
            ..SimulatorConfig::default()
        });
        let _ = sim.answer(&frame, now);
        if let Ok(line) = std::str::from_utf8(rest) {
            let _ = p.encode_text(line, 1);
        }
    }
});
