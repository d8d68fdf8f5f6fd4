//! Field values as text: the escapes that keep a value one whitespace-free token.
//!
//! Bytes (C-strings, octet strings, message bodies, TLV values):
//!
//! | byte | text |
//! |---|---|
//! | printable ASCII `!`..`~` except `\` | itself |
//! | `\` | `\\` |
//! | `\n`, `\r`, `\t` | `\n`, `\r`, `\t` |
//! | space and every other byte | `\xNN` (so `hello world` is `hello\x20world`) |
//!
//! UCS-2 message bodies (SMPP `data_coding=8`, CMPP `msg_fmt=8`) print as characters:
//! printable characters as themselves, `\` as `\\`, whitespace and control characters as
//! `\u{XXXX}`. A UCS-2 body that is not valid UTF-16 (odd length, a lone surrogate) prints as
//! `hex:` and its bytes.
//!
//! On input, any value may be `hex:<lowercase or uppercase hex>` for its raw bytes, and
//! characters outside ASCII stand for their UTF-8 bytes (or, in a UCS-2 body, their UTF-16).
//! A value whose text would start with `hex:` prints its `h` as `\x68`, so the prefix is never
//! ambiguous.

use std::fmt::Write;

use super::error::{PduError, PduErrorKind};
use crate::text::{from_hex, hex_val, to_hex};

/// One unit of an unescaped value: a byte (`\xNN`) or a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Byte(u8),
    Char(char),
}

/// Bytes as a value token.
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x21..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    guard_prefix(s)
}

/// A UCS-2 (UTF-16BE) body as a value token; `hex:` when it is not valid UTF-16.
pub(crate) fn escape_ucs2(bytes: &[u8]) -> String {
    let Some(text) = utf16be(bytes) else {
        return format!("hex:{}", to_hex(bytes));
    };
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' {
            s.push_str("\\\\");
        } else if c.is_control() || c.is_whitespace() {
            let _ = write!(s, "\\u{{{:x}}}", u32::from(c));
        } else {
            s.push(c);
        }
    }
    guard_prefix(s)
}

fn guard_prefix(s: String) -> String {
    match s.strip_prefix('h') {
        Some(rest) if rest.starts_with("ex:") => format!("\\x68{rest}"),
        _ => s,
    }
}

fn utf16be(bytes: &[u8]) -> Option<String> {
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units = bytes.chunks_exact(2).map(|c| match c {
        [hi, lo] => u16::from_be_bytes([*hi, *lo]),
        _ => 0,
    });
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

/// A value token into bytes (characters as UTF-8).
pub(crate) fn unescape_bytes(field: &str, value: &str) -> Result<Vec<u8>, PduError> {
    if let Some(h) = value.strip_prefix("hex:") {
        return from_hex(h).map_err(|e| bad(field, value, &e.to_string()));
    }
    let mut out = Vec::with_capacity(value.len());
    for u in units(field, value)? {
        match u {
            Unit::Byte(b) => out.push(b),
            Unit::Char(c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Ok(out)
}

/// A value token into UTF-16BE bytes (`\xNN` is the character U+00NN).
pub(crate) fn unescape_ucs2(field: &str, value: &str) -> Result<Vec<u8>, PduError> {
    if let Some(h) = value.strip_prefix("hex:") {
        return from_hex(h).map_err(|e| bad(field, value, &e.to_string()));
    }
    let mut out = Vec::with_capacity(value.len() * 2);
    for u in units(field, value)? {
        let c = match u {
            Unit::Byte(b) => char::from(b),
            Unit::Char(c) => c,
        };
        let mut buf = [0u16; 2];
        for unit in c.encode_utf16(&mut buf) {
            out.extend_from_slice(&unit.to_be_bytes());
        }
    }
    Ok(out)
}

fn units(field: &str, value: &str) -> Result<Vec<Unit>, PduError> {
    let mut out = Vec::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(Unit::Char(c));
            continue;
        }
        let u = match chars.next() {
            Some('\\') => Unit::Char('\\'),
            Some('n') => Unit::Char('\n'),
            Some('r') => Unit::Char('\r'),
            Some('t') => Unit::Char('\t'),
            Some('0') => Unit::Byte(0),
            Some('x') => {
                let hi = chars.next().and_then(hex_digit);
                let lo = chars.next().and_then(hex_digit);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => Unit::Byte((hi << 4) | lo),
                    _ => return Err(bad(field, value, "\\x needs two hex digits")),
                }
            }
            Some('u') => Unit::Char(unicode_escape(field, value, &mut chars)?),
            Some(c) => {
                return Err(bad(
                    field,
                    value,
                    &format!("unknown escape \\{c}; expected \\\\ \\n \\r \\t \\0 \\xNN \\u{{X}}"),
                ));
            }
            None => return Err(bad(field, value, "lone \\ at the end")),
        };
        out.push(u);
    }
    Ok(out)
}

fn hex_digit(c: char) -> Option<u8> {
    u8::try_from(c).ok().and_then(hex_val)
}

fn unicode_escape(
    field: &str,
    value: &str,
    chars: &mut std::str::Chars<'_>,
) -> Result<char, PduError> {
    let err = || bad(field, value, "\\u needs {hex digits} naming a character");
    if chars.next() != Some('{') {
        return Err(err());
    }
    let mut code: u32 = 0;
    let mut digits = 0;
    for c in chars.by_ref() {
        if c == '}' {
            return if digits == 0 {
                Err(err())
            } else {
                char::from_u32(code).ok_or_else(err)
            };
        }
        let d = hex_digit(c).ok_or_else(err)?;
        digits += 1;
        if digits > 6 {
            return Err(err());
        }
        code = (code << 4) | u32::from(d);
    }
    Err(err())
}

/// A number: decimal, or hex after `0x`.
pub(crate) fn parse_number(field: &str, value: &str, max: u64) -> Result<u64, PduError> {
    let parsed = match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(h) if !h.is_empty() => u64::from_str_radix(h, 16).ok(),
        Some(_) => None,
        None if value.bytes().all(|b| b.is_ascii_digit()) => value.parse::<u64>().ok(),
        None => None,
    };
    match parsed {
        Some(n) if n <= max => Ok(n),
        Some(_) => Err(bad(field, value, &format!("above the largest value {max}"))),
        None => Err(bad(field, value, "not a decimal or 0x-hex number")),
    }
}

pub(crate) fn bad(field: &str, value: &str, why: &str) -> PduError {
    PduError::new(
        PduErrorKind::BadValue,
        format!("field {field}: value {value:?}: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_stay_one_token() {
        let all: Vec<u8> = (0..=255).collect();
        let s = escape_bytes(&all);
        assert!(!s.contains(char::is_whitespace));
        assert_eq!(unescape_bytes("f", &s).unwrap(), all);
        assert_eq!(escape_bytes(b"hello world"), "hello\\x20world");
        assert_eq!(escape_bytes(b"hex:00"), "\\x68ex:00");
        assert_eq!(unescape_bytes("f", "\\x68ex:00").unwrap(), b"hex:00");
        assert_eq!(unescape_bytes("f", "hex:0aFF").unwrap(), b"\x0a\xff");
    }

    #[test]
    fn ucs2_prints_as_text() {
        let body = [0x4f, 0x60, 0x59, 0x7d, 0x00, 0x20, 0x00, 0x41];
        let s = escape_ucs2(&body);
        assert_eq!(s, "你好\\u{20}A");
        assert_eq!(unescape_ucs2("m", &s).unwrap(), body);
        assert_eq!(escape_ucs2(&[0xd8, 0x00]), "hex:d800");
        assert_eq!(escape_ucs2(&[0x00]), "hex:00");
        assert_eq!(unescape_ucs2("m", "hex:d800").unwrap(), [0xd8, 0x00]);
    }

    #[test]
    fn bad_escapes_name_the_field() {
        let e = unescape_bytes("short_message", "a\\q").unwrap_err();
        assert!(e.is_bad_value());
        assert!(e.to_string().starts_with("field short_message: "), "{e}");
        assert!(unescape_bytes("f", "\\x1").is_err());
        assert!(unescape_bytes("f", "\\").is_err());
        assert!(unescape_ucs2("f", "\\u{110000}").is_err());
        assert!(unescape_ucs2("f", "\\u{}").is_err());
        assert!(unescape_ucs2("f", "\\u{1234567}").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("n", "52", 255).unwrap(), 52);
        assert_eq!(parse_number("n", "0x34", 255).unwrap(), 52);
        assert!(parse_number("n", "256", 255).is_err());
        assert!(parse_number("n", "-1", 255).is_err());
        assert!(parse_number("n", "0x", 255).is_err());
        assert!(parse_number("n", "", 255).is_err());
    }
}
