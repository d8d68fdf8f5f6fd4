//! ISO 8583 messages: the first input byte picks a table (`Spec::ascii`, `Spec::binary`, or
//! a TOML table with a BCD MTI, BCD fields padded either side and BCD/binary length
//! prefixes); the rest is a message. `Message::decode` never panics; what decodes encodes
//! back to the same bytes (hex bitmaps in upper case: decoding accepts either case), decodes
//! again to the same message, and its text line reads back to it. With the pick byte's top
//! bit set the rest is also read as a TOML table (`Spec::from_toml` never panics).

#![no_main]

use keepwire::protocol::iso8583::{BitmapEncoding, Message, MtiEncoding, Spec};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const MIXED: &str = r#"
base = "binary"
mti = "bcd"
[field.2]
prefix = "bcd"
data = "bcd"
[field.3]
data = "bcd"
[field.35]
prefix = "bcd"
data = "bcd"
pad = "right"
pad_digit = "f"
[field.45]
prefix = "binary"
data = "binary"
[field.48]
length = "llllvar"
max = 9999
[field.62]
length = "lllvar"
prefix = "binary"
data = "binary"
max = 999
[field.63]
length = "lvar"
prefix = "bcd"
data = "bcd"
max = 9
"#;

fn specs() -> &'static [Spec; 3] {
    static SPECS: OnceLock<[Spec; 3]> = OnceLock::new();
    SPECS.get_or_init(|| {
        [
            Spec::ascii(),
            Spec::binary(),
            Spec::from_toml(MIXED).expect("the mixed table loads"),
        ]
    })
}

/// The input with its hex bitmaps upper-cased: what `encode` writes back.
fn canonical(spec: &Spec, wire: &[u8], m: &Message) -> Vec<u8> {
    let mut out = wire.to_vec();
    if spec.bitmap_encoding() == BitmapEncoding::Hex {
        let start = match spec.mti_encoding() {
            MtiEncoding::Bcd => 2,
            _ => 4,
        };
        let len = if m.has_secondary_bitmap() { 32 } else { 16 };
        if let Some(map) = out.get_mut(start..start + len) {
            map.make_ascii_uppercase();
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, wire)) = data.split_first() else {
        return;
    };
    if pick & 0x80 != 0
        && let Ok(text) = std::str::from_utf8(wire)
    {
        let _ = Spec::from_toml(text);
    }
    let spec = &specs()[usize::from(pick & 0x7f) % 3];
    let Ok(m) = Message::decode(spec, wire) else {
        return;
    };
    let again = m.encode(spec).expect("a decoded message encodes");
    assert_eq!(&again[..], &canonical(spec, wire, &m)[..]);
    assert_eq!(Message::decode(spec, &again).as_ref(), Ok(&m));
    let line = m.to_text(spec).to_string();
    let mut back = Message::from_text(spec, &line).expect("the text line reads back");
    back.set_secondary_bitmap(m.has_secondary_bitmap() && !m.fields().any(|(n, _)| n > 64));
    assert_eq!(back, m, "{line}");
    let _ = m.to_text(spec).to_json();
});
