//! Byte tables for the codec, the TOML loader and the text form; hostile input; a property
//! round trip over the built-in tables and a mixed one.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::protocol::{PduError, PduErrorKind};

/// A table with every encoding the built-ins do not use: BCD MTI, BCD fields padded on
/// either side, BCD and binary length prefixes, an LLLLVAR.
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

fn mixed() -> Spec {
    Spec::from_toml(MIXED).unwrap()
}

fn msg(mti: &str, fields: &[(u8, &[u8])]) -> Message {
    let mut m = Message::new(mti).unwrap();
    for (n, v) in fields {
        m.set(*n, Bytes::copy_from_slice(v)).unwrap();
    }
    m
}

/// (spec, message, wire bytes): encode gives the bytes, decode gives the message.
fn table() -> Vec<(Spec, Message, Vec<u8>)> {
    let mut hex_case = b"0800".to_vec();
    hex_case.extend_from_slice(b"8220000000000000" as &[u8]);
    hex_case.extend_from_slice(b"04000000000000000101120000000001301");
    let mut bin52 = b"0200".to_vec();
    bin52.extend_from_slice(&[0x70, 0, 0, 0, 0, 0, 0x10, 0]);
    bin52.extend_from_slice(b"164111111111111111000000000000001000");
    bin52.extend_from_slice(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    let mut bin128 = b"0210".to_vec();
    bin128.extend_from_slice(&[0x80, 0, 0, 0, 0x02, 0, 0, 0]);
    bin128.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    bin128.extend_from_slice(b"00");
    bin128.extend_from_slice(&[0xff; 8]);
    let mut mixed_wire = vec![0x02, 0x00];
    mixed_wire.extend_from_slice(&[0xe0, 0, 0, 0, 0x20, 0, 0, 0]);
    mixed_wire.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x02]); // field 127 (ascii LLLVAR)
    mixed_wire.extend_from_slice(&[0x15, 0x00, 0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11]);
    mixed_wire.extend_from_slice(&[0x00, 0x00, 0x00]); // field 3: 6 BCD digits
    mixed_wire.extend_from_slice(&[0x05, 0x12, 0x34, 0x5f]); // field 35: 5 digits, pad f
    mixed_wire.extend_from_slice(b"003abc"); // field 127
    vec![
        (
            Spec::ascii(),
            msg("0800", &[(7, b"0101120000"), (11, b"000001"), (70, b"301")]),
            hex_case,
        ),
        (
            Spec::binary(),
            msg(
                "0200",
                &[
                    (2, b"4111111111111111"),
                    (3, b"000000"),
                    (4, b"000000001000"),
                    (52, &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]),
                ],
            ),
            bin52,
        ),
        (
            Spec::binary(),
            msg("0210", &[(39, b"00"), (128, &[0xff; 8])]),
            bin128,
        ),
        (
            mixed(),
            msg(
                "0200",
                &[
                    (2, b"041111111111111"),
                    (3, b"000000"),
                    (35, b"12345"),
                    (127, b"abc"),
                ],
            ),
            mixed_wire,
        ),
    ]
}

#[test]
fn table_encodes_and_decodes() {
    for (spec, m, wire) in table() {
        assert_eq!(&m.encode(&spec).unwrap()[..], &wire[..], "{m:?}");
        assert_eq!(Message::decode(&spec, &wire).unwrap(), m);
    }
}

#[test]
fn every_truncation_is_an_error() {
    for (spec, _, wire) in table() {
        for cut in 0..wire.len() {
            let e = Message::decode(&spec, wire.get(..cut).unwrap()).unwrap_err();
            assert!(e.is_too_short() || e.is_malformed(), "cut {cut}: {e}");
            assert!(e.to_string().contains(" at offset "), "{e}");
        }
    }
}

#[test]
fn pyiso8583_reference_bytes() {
    // protocols-reference §3.2: pyiso8583 default_ascii of 0800 {7, 11, 70}.
    let m = Message::from_text(&Spec::ascii(), "0800 7=0101120000 11=000001 70=301").unwrap();
    let wire = m.encode(&Spec::ascii()).unwrap();
    assert_eq!(
        &wire[..],
        b"0800 8220000000000000 0400000000000000 0101120000 000001 301"
            .iter()
            .copied()
            .filter(|&b| b != b' ')
            .collect::<Vec<_>>()
    );
}

fn decode_err(spec: &Spec, wire: &[u8]) -> PduError {
    Message::decode(spec, wire).unwrap_err()
}

#[test]
fn hostile_input_names_field_and_offset() {
    let a = Spec::ascii();
    let cases: Vec<(&Spec, Vec<u8>, PduErrorKind, &str)> = vec![
        (
            &a,
            b"".to_vec(),
            PduErrorKind::TooShort,
            "iso 8583 message at offset 0: mti: needs 4 bytes, 0 left in the message",
        ),
        (
            &a,
            b"02x0".to_vec(),
            PduErrorKind::Malformed,
            "iso 8583 message at offset 0: mti 02x0 is not 4 decimal digits",
        ),
        (
            &a,
            b"02004000".to_vec(),
            PduErrorKind::TooShort,
            "0200 at offset 4: primary bitmap: needs 16 bytes, 4 left in the message",
        ),
        (
            &a,
            b"0200400000000000000G".to_vec(),
            PduErrorKind::Malformed,
            "0200 at offset 4: primary bitmap 400000000000000G is not 16 hex digits",
        ),
        (
            &a,
            b"020040000000000000001x4111".to_vec(),
            PduErrorKind::Malformed,
            "0200 at offset 20: field 2: length prefix 1x is not 2 ascii digits",
        ),
        (
            &a,
            b"0200400000000000000020411111111111111111111".to_vec(),
            PduErrorKind::Malformed,
            "0200 at offset 20: field 2: length 20 above the field's maximum 19",
        ),
        (
            &a,
            b"0200400000000000000019411".to_vec(),
            PduErrorKind::Malformed,
            "0200 at offset 22: field 2: needs 19 bytes, 3 left in the message",
        ),
        (
            &a,
            b"0200200000000000000000000000".to_vec(),
            PduErrorKind::Malformed,
            "0200 at offset 26: 2 bytes after the last field; expected the message to end",
        ),
        (
            &a,
            b"02008000000000000000".to_vec(),
            PduErrorKind::TooShort,
            "0200 at offset 20: secondary bitmap: needs 16 bytes, 0 left in the message",
        ),
    ];
    for (spec, wire, kind, text) in cases {
        let e = decode_err(spec, &wire);
        assert_eq!(e.kind(), kind, "{e}");
        assert_eq!(e.to_string(), text);
    }
}

#[test]
fn bitmap_bit_for_an_undefined_field() {
    let spec = Spec::from_toml("base = \"ascii\"\n[field.3]\nremove = true\n").unwrap();
    let e = decode_err(&spec, b"02002000000000000000000000");
    assert!(e.is_unknown_field(), "{e}");
    assert_eq!(
        e.to_string(),
        "0200 at offset 20: bitmap sets field 3, which the spec does not define"
    );
    let mut m = Message::new("0200").unwrap();
    m.set(3, "000000").unwrap();
    let e = m.encode(&spec).unwrap_err();
    assert!(e.is_unknown_field());
    assert_eq!(e.to_string(), "0200: field 3 is not in the spec");
}

#[test]
fn bcd_nibbles_above_nine() {
    let spec = mixed();
    let bitmap = [0x60, 0, 0, 0, 0, 0, 0, 0];
    // MTI nibble.
    let mut wire = vec![0x0b, 0x00];
    wire.extend_from_slice(&bitmap);
    let e = decode_err(&spec, &wire);
    assert_eq!(
        e.to_string(),
        "iso 8583 message at offset 0: mti \\x0b\\x00 is not 4 decimal digits"
    );
    // Length prefix nibble.
    let mut wire = vec![0x02, 0x00];
    wire.extend_from_slice(&[0x40, 0, 0, 0, 0, 0, 0, 0, 0x1c, 0x11]);
    let e = decode_err(&spec, &wire);
    assert_eq!(
        e.to_string(),
        "0200 at offset 10: field 2: length prefix \\x1c is not 2 bcd digits"
    );
    // Data nibble: field 3's third byte.
    let mut wire = vec![0x02, 0x00];
    wire.extend_from_slice(&[0x20, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x0b]);
    let e = decode_err(&spec, &wire);
    assert!(e.is_malformed());
    assert_eq!(
        e.to_string(),
        "0200 at offset 12: field 3: bcd nibble 0xb is not a digit"
    );
    // Pad nibble other than the spec's (field 35 pads right with f).
    let mut wire = vec![0x02, 0x00];
    wire.extend_from_slice(&[0, 0, 0, 0, 0x20, 0, 0, 0, 0x03, 0x12, 0x30]);
    let e = decode_err(&spec, &wire);
    assert_eq!(
        e.to_string(),
        "0200 at offset 12: field 35: pad nibble 0x0; expected 0xf for an odd length"
    );
}

#[test]
fn bcd_padding_both_sides() {
    let spec = mixed();
    // Field 63: LVAR BCD, left pad 0; 3 digits -> 03 01 23.
    let m = msg("0100", &[(63, b"123")]);
    let wire = m.encode(&spec).unwrap();
    assert_eq!(wire.get(10..).unwrap(), [0x03, 0x01, 0x23]);
    assert_eq!(Message::decode(&spec, &wire).unwrap(), m);
    // Field 35: right pad f.
    let m = msg("0100", &[(35, b"4")]);
    let wire = m.encode(&spec).unwrap();
    assert_eq!(wire.get(10..).unwrap(), [0x01, 0x4f]);
    // Field 62: binary LLLVAR prefix, 2 bytes; 300 bytes.
    let long = vec![0xaa; 300];
    let m = msg("0100", &[(62, &long)]);
    let wire = m.encode(&spec).unwrap();
    assert_eq!(wire.get(10..12).unwrap(), [0x01, 0x2c]);
    assert_eq!(Message::decode(&spec, &wire).unwrap(), m);
}

#[test]
fn encode_refuses_values_that_do_not_fit() {
    let cases: [(Spec, u8, &[u8], &str); 4] = [
        (
            Spec::ascii(),
            4,
            b"1000",
            "0200: field 4: 4 bytes; the field is fixed at 12",
        ),
        (
            Spec::ascii(),
            2,
            b"41111111111111111111",
            "0200: field 2: 20 bytes; the field holds at most 19",
        ),
        (
            mixed(),
            3,
            b"00000a",
            "0200: field 3: 'a' is not a decimal digit; the field is bcd",
        ),
        (
            Spec::binary(),
            52,
            b"1234",
            "0200: field 52: 4 bytes; the field is fixed at 8",
        ),
    ];
    for (spec, n, v, text) in cases {
        let e = msg("0200", &[(n, v)]).encode(&spec).unwrap_err();
        assert!(e.is_bad_value(), "{e}");
        assert_eq!(e.to_string(), text);
    }
}

#[test]
fn secondary_bitmap_all_zero_round_trips() {
    let wire = b"021080000000000000000000000000000000".to_vec();
    let spec = Spec::ascii();
    let m = Message::decode(&spec, &wire).unwrap();
    assert!(m.has_secondary_bitmap());
    assert_eq!(m.fields().count(), 0);
    assert_eq!(&m.encode(&spec).unwrap()[..], &wire[..]);
    let mut plain = m.clone();
    plain.set_secondary_bitmap(false);
    assert_eq!(plain.encode(&spec).unwrap().len(), 20);
}

#[test]
fn lowercase_hex_bitmaps_decode() {
    let spec = Spec::ascii();
    let m = Message::decode(
        &spec,
        b"0800822000000000000004000000000000000101120000000001301",
    )
    .unwrap();
    let lower = Message::decode(
        &spec,
        b"0800822000000000000004000000000000000101120000000001301"
            .to_ascii_lowercase()
            .as_slice(),
    );
    assert_eq!(lower.unwrap(), m);
}

#[test]
fn message_accessors() {
    let mut m = Message::new("0200").unwrap();
    assert!(Message::new("200").unwrap_err().is_bad_value());
    assert!(Message::new("02a0").is_err());
    assert!(m.set(1, "x").unwrap_err().is_unknown_field());
    assert!(m.set(0, "x").unwrap_err().is_unknown_field());
    assert!(m.set(129, "x").unwrap_err().is_unknown_field());
    m.set(11, "000123").unwrap();
    m.set(52, vec![0xff, 0xfe]).unwrap();
    assert_eq!(m.get(11), Some(&b"000123"[..]));
    assert_eq!(m.get_str(52), None);
    m.set_mti("0210").unwrap();
    assert!(m.set_mti("02100").is_err());
    assert_eq!(m.mti(), "0210");
    assert_eq!(m.remove(11).as_deref(), Some(&b"000123"[..]));
    assert_eq!(m.fields().map(|(n, _)| n).collect::<Vec<_>>(), [52]);
}

#[test]
fn builtin_tables() {
    let a = Spec::ascii();
    let b = Spec::binary();
    assert_eq!(a.fields().count(), 127);
    assert_eq!(b.fields().count(), 127);
    let differ: Vec<u8> = a
        .fields()
        .filter(|(n, f)| b.field(*n) != Some(f))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(differ, [52, 55, 64, 65, 96, 128]);
    assert_eq!(
        *b.field(55).unwrap(),
        FieldSpec::var(3, Prefix::Ascii, Data::Binary, 255)
    );
    assert_eq!(
        *a.field(55).unwrap(),
        FieldSpec::var(3, Prefix::Ascii, Data::Ascii, 510)
    );
    assert_eq!(Spec::builtin("binary"), Some(b));
    assert_eq!(Spec::builtin("ebcdic"), None);
    assert_eq!(a.field(1), None);
    assert_eq!(a.field(129), None);
}

#[test]
fn toml_errors_name_line_or_field() {
    let cases: [(&str, &str); 9] = [
        (
            "base = \"ascii\"\n[field.35]\nlength = \"llvar\"\nmax = 120\n",
            "iso 8583 spec: line 2: field 35: max 120 does not fit a 2-digit ascii length prefix (at most 99)",
        ),
        (
            "base = \"ebcdic\"\n",
            "iso 8583 spec: line 1: base \"ebcdic\" is not a built-in table; expected ascii, binary or none",
        ),
        (
            "[field.1]\nlength = \"fixed\"\nmax = 8\n",
            "iso 8583 spec: line 1: [field.1]: field numbers run from 2 to 128",
        ),
        (
            "[field.abc]\nmax = 8\n",
            "iso 8583 spec: line 1: [field.abc]: field numbers run from 2 to 128",
        ),
        (
            "base = \"none\"\n[field.2]\ndata = \"bcd\"\n",
            "iso 8583 spec: line 2: field 2: the base table has no such field: give at least length and max",
        ),
        (
            "[field.2]\npad_digit = \"g\"\n",
            "iso 8583 spec: line 1: field 2: pad_digit \"g\" is not one hex digit",
        ),
        (
            "[field.2]\nlength = \"llvar\"\nprefix = \"binary\"\nmax = 256\n",
            "iso 8583 spec: line 1: field 2: max 256 does not fit a 2-digit binary length prefix (at most 255)",
        ),
        // TOML sees two keys; both are field 4, and the later one silently won.
        (
            "[field.04]\nmax = 1\n[field.4]\nmax = 2\n",
            "iso 8583 spec: line 3: [field.4]: field 4 is already given by [field.04]",
        ),
        (
            "[field.2]\nlength = \"lvar\"\nprefix = \"bcd\"\nmax = 10\n",
            "iso 8583 spec: line 1: field 2: max 10 does not fit a 1-digit bcd length prefix (at most 9)",
        ),
    ];
    for (text, want) in cases {
        let e = Spec::from_toml(text).unwrap_err();
        assert_eq!(e.to_string(), want);
        assert!(e.line().is_some());
    }
    for text in [
        "base = \"ascii\"\n\n[field.2]\nlenght = \"llvar\"\n",
        "[field.2]\nlength = \"llllllvar\"\n",
        "[field.2]\nmax = -1\n",
        "mti = \"ebcdic\"\n",
        "[field.2\n",
    ] {
        let e = Spec::from_toml(text).unwrap_err();
        assert!(e.is_syntax(), "{e}");
        assert!(e.to_string().starts_with("iso 8583 spec: line "), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    let e = Spec::from_toml("base = \"ascii\"\n\n[field.2]\nlenght = \"llvar\"\n").unwrap_err();
    assert_eq!(e.line(), Some(4), "{e}");
}

#[test]
fn toml_inherits_and_overrides() {
    let spec = mixed();
    assert_eq!(spec.mti_encoding(), MtiEncoding::Bcd);
    assert_eq!(spec.bitmap_encoding(), BitmapEncoding::Binary);
    assert_eq!(
        *spec.field(2).unwrap(),
        FieldSpec::var(2, Prefix::Bcd, Data::Bcd(Pad::Left(0)), 19)
    );
    assert_eq!(
        *spec.field(3).unwrap(),
        FieldSpec::fixed(Data::Bcd(Pad::Left(0)), 6)
    );
    assert_eq!(spec.field(4), Spec::binary().field(4));
    let none = Spec::from_toml(
        "base = \"none\"\nbitmap = \"binary\"\n[field.3]\nlength = \"fixed\"\nmax = 6\n",
    )
    .unwrap();
    assert_eq!(none.fields().map(|(n, _)| n).collect::<Vec<_>>(), [3]);
    let removed = Spec::from_toml("[field.127]\nremove = true\n").unwrap();
    assert_eq!(removed.field(127), None);
    assert_eq!(Spec::from_toml("").unwrap(), Spec::ascii());
}

#[test]
fn load_reads_files_and_names_them() {
    let dir = std::env::temp_dir().join(format!("keepwire-iso8583-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, MIXED).unwrap();
    assert_eq!(Spec::load(&good).unwrap(), mixed());
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[field.2]\nmax = \"x\"\n").unwrap();
    let e = Spec::load(&bad).unwrap_err();
    assert!(e.is_syntax());
    assert!(
        e.to_string()
            .starts_with(&format!("iso 8583 spec {}: line 2", bad.display())),
        "{e}"
    );
    let e = Spec::load(dir.join("missing.toml")).unwrap_err();
    assert!(e.is_io(), "{e}");
    let big = dir.join("big.toml");
    std::fs::write(
        &big,
        vec![b'#'; usize::try_from(MAX_SPEC_FILE).unwrap() + 1],
    )
    .unwrap();
    assert!(Spec::load(&big).unwrap_err().is_io());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn text_form_round_trips_and_names_tokens() {
    let spec = Spec::binary();
    let shop = format!("A\\x20SHOP\\x20IN\\x20TOWN{}", "\\x20".repeat(26));
    let line = format!(
        "0200 2=4111111111111111 3=000000 4=000000001000 11=000123 41=TERM0001 43={shop} 52=hex:0011223344556677"
    );
    let line = line.as_str();
    let m = Message::from_text(&spec, line).unwrap();
    assert_eq!(m.get(43).unwrap().len(), 40);
    assert_eq!(m.to_text(&spec).to_string(), line);
    let cases: [(&str, PduErrorKind, &str); 7] = [
        (
            "200 3=000000",
            PduErrorKind::BadValue,
            "iso 8583 line starts with \"200\"; expected the mti, 4 digits (0200, 0800)",
        ),
        (
            "0200 x=1",
            PduErrorKind::UnknownField,
            "0200: token x=1: \"x\" is not a field number (2 to 128)",
        ),
        (
            "0200 1=00",
            PduErrorKind::UnknownField,
            "0200: token 1=00: iso 8583 field 1 is the secondary bitmap: derived from the fields present, not set",
        ),
        (
            "0200 3=000000 3=000001",
            PduErrorKind::UnknownField,
            "0200: token 3=000001: field 3 given twice",
        ),
        (
            "0200 52=hex:zz",
            PduErrorKind::BadValue,
            "field 52: value \"hex:zz\": ",
        ),
        (
            "0200 +3=000000",
            PduErrorKind::UnknownField,
            "0200: token +3=000000: \"+3\" is not a field number (2 to 128)",
        ),
        (
            "0200 3",
            PduErrorKind::Syntax,
            "0200: token \"3\" has no '='; expected field=value",
        ),
    ];
    for (line, kind, text) in cases {
        let e = Message::from_text(&spec, line).unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.to_string().starts_with(text), "{e}");
    }
    let removed = Spec::from_toml("[field.5]\nremove = true\n").unwrap();
    let e = Message::from_text(&removed, "0200 5=000000000001").unwrap_err();
    assert_eq!(e.to_string(), "0200: field 5 is not in the spec");
}

/// A value for field `f` from arbitrary seed bytes: the fixed size or a length up to max,
/// digits for BCD.
fn value_for(f: &FieldSpec, seed: &[u8]) -> Vec<u8> {
    let max = usize::from(f.max);
    let len = match f.length {
        Length::Fixed => max,
        Length::Var { .. } => seed.first().map_or(0, |&b| usize::from(b) * 7 % (max + 1)),
    };
    (0..len)
        .map(|i| {
            let b = seed.get(i % seed.len().max(1)).copied().unwrap_or(0) ^ (i as u8);
            match f.data {
                Data::Bcd(_) => b'0' + b % 10,
                _ => b,
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn encode_decode_round_trip(
        which in 0usize..3,
        mti in 0u16..10_000,
        picks in proptest::collection::vec((2u8..=128, proptest::collection::vec(any::<u8>(), 1..8)), 0..12),
    ) {
        let spec = vec![Spec::ascii(), Spec::binary(), mixed()].swap_remove(which);
        let mut m = Message::new(&format!("{mti:04}")).unwrap();
        for (n, seed) in &picks {
            if let Some(f) = spec.field(*n) {
                m.set(*n, value_for(f, seed)).unwrap();
            }
        }
        let wire = m.encode(&spec).unwrap();
        let back = Message::decode(&spec, &wire).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(&back.encode(&spec).unwrap(), &wire);
        let line = m.to_text(&spec).to_string();
        prop_assert_eq!(Message::from_text(&spec, &line).unwrap(), m);
    }

    #[test]
    fn arbitrary_bytes_never_panic(which in 0usize..3, wire in proptest::collection::vec(any::<u8>(), 0..200)) {
        let spec = vec![Spec::ascii(), Spec::binary(), mixed()].swap_remove(which);
        if let Ok(m) = Message::decode(&spec, &wire) {
            let again = m.encode(&spec).unwrap();
            prop_assert_eq!(Message::decode(&spec, &again).unwrap(), m);
        }
    }

    #[test]
    fn arbitrary_toml_never_panics(text in "\\PC{0,200}") {
        let _ = Spec::from_toml(&text);
    }
}

#[test]
fn docs_toml_example_loads() {
    let page = include_str!("../../../../../docs/protocols.md");
    let section = page
        .split("### Partner tables in TOML")
        .nth(1)
        .expect("docs/protocols.md has the TOML section");
    let toml = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a toml block");
    let spec = Spec::from_toml(toml).unwrap();
    assert_eq!(
        *spec.field(2).unwrap(),
        FieldSpec::var(2, Prefix::Bcd, Data::Bcd(Pad::Left(0)), 19)
    );
    assert_eq!(
        *spec.field(35).unwrap(),
        FieldSpec::var(2, Prefix::Bcd, Data::Bcd(Pad::Right(0xf)), 37)
    );
    assert_eq!(spec.field(127), None);
    let m = Message::from_text(&spec, "0200 2=4111111111111111 35=4111111111111111").unwrap();
    let wire = m.encode(&spec).unwrap();
    assert_eq!(wire.get(12..14).unwrap(), [0x16, 0x41]);
    assert_eq!(Message::decode(&spec, &wire).unwrap(), m);
}
