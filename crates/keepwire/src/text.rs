//! Bytes as text and back: the escapes used by spec strings, the CLI and logs.
//!
//! Printable ASCII stands for itself; `\n`, `\r`, `\t` and `\\` are the usual escapes and any
//! other byte is `\xNN`. Hex is lowercase pairs.
//!
//! ```
//! use keepwire::text::{escape, unescape};
//! assert_eq!(escape(b"ok\r\n\x00"), "ok\\r\\n\\x00");
//! assert_eq!(unescape("ok\\r\\n\\x00").unwrap(), b"ok\r\n\x00");
//! ```

use std::fmt::{self, Write};

/// Writes `bytes` with escapes: printable ASCII as is, `\n \r \t \\`, else `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    // Writing to a String cannot fail.
    let _ = write_escaped(&mut s, bytes);
    s
}

/// [`escape`] into any `fmt::Write`.
///
/// # Errors
/// Only those of the writer.
pub fn write_escaped(w: &mut impl Write, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        match b {
            b'\n' => w.write_str("\\n")?,
            b'\r' => w.write_str("\\r")?,
            b'\t' => w.write_str("\\t")?,
            b'\\' => w.write_str("\\\\")?,
            0x20..=0x7e => w.write_char(b as char)?,
            _ => write!(w, "\\x{b:02x}")?,
        }
    }
    Ok(())
}

/// Text that [`unescape`], [`from_hex`] or [`parse_payload`] could not read as bytes.
///
/// `Display` is one lowercase line naming the text, where in it the problem is, and what was
/// expected:
///
/// ```
/// use keepwire::text::from_hex;
/// let e = from_hex("0g").unwrap_err();
/// assert!(e.is_hex());
/// assert_eq!(e.position(), Some(1));
/// assert_eq!(e.to_string(), r#"hex "0g": character 1 ('g') is not a hex digit"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    input: String,
    kind: TextErrorKind,
}

/// What [`TextError`] found; see [`TextError::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextErrorKind {
    /// A `\` followed by a character that is not one of `n`, `r`, `t`, `\`, `0`, `x`.
    UnknownEscape {
        /// Byte index of the `\` in the text.
        pos: usize,
        /// The character after it.
        found: char,
    },
    /// A `\x` not followed by two hex digits.
    ShortHexEscape {
        /// Byte index of the `\` in the text.
        pos: usize,
    },
    /// A `\` at the very end of the text.
    LoneBackslash {
        /// Byte index of the `\` in the text.
        pos: usize,
    },
    /// Hex with an odd number of digits (separators not counted).
    OddHexDigits {
        /// How many digits there are.
        digits: usize,
    },
    /// A character in hex that is neither a hex digit nor a separator (space, `:`, tab).
    NotHexDigit {
        /// Byte index of the character in the text.
        pos: usize,
        /// The character.
        found: char,
    },
    /// A payload without the `hex:` or `text:` prefix.
    NoPayloadPrefix,
}

impl TextError {
    fn new(input: &str, kind: TextErrorKind) -> Self {
        TextError {
            input: input.to_string(),
            kind,
        }
    }

    /// The text that could not be read.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with it.
    pub fn kind(&self) -> &TextErrorKind {
        &self.kind
    }

    /// Byte index of the offending character in [`input`](Self::input), where there is one.
    pub fn position(&self) -> Option<usize> {
        match self.kind {
            TextErrorKind::UnknownEscape { pos, .. }
            | TextErrorKind::ShortHexEscape { pos }
            | TextErrorKind::LoneBackslash { pos }
            | TextErrorKind::NotHexDigit { pos, .. } => Some(pos),
            TextErrorKind::OddHexDigits { .. } | TextErrorKind::NoPayloadPrefix => None,
        }
    }

    /// A bad `\` escape in text (from [`unescape`] or a `text:` payload).
    pub fn is_escape(&self) -> bool {
        matches!(
            self.kind,
            TextErrorKind::UnknownEscape { .. }
                | TextErrorKind::ShortHexEscape { .. }
                | TextErrorKind::LoneBackslash { .. }
        )
    }

    /// Bad hex (from [`from_hex`] or a `hex:` payload).
    pub fn is_hex(&self) -> bool {
        matches!(
            self.kind,
            TextErrorKind::OddHexDigits { .. } | TextErrorKind::NotHexDigit { .. }
        )
    }

    /// A payload that names neither `hex:` nor `text:`.
    pub fn is_no_payload_prefix(&self) -> bool {
        self.kind == TextErrorKind::NoPayloadPrefix
    }
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.input;
        let escape = |f: &mut fmt::Formatter<'_>, pos: usize, what: fmt::Arguments<'_>| {
            write!(
                f,
                "bad escape at character {pos} of {s:?}: {what}; valid escapes are \\n \\r \\t \\\\ \\xNN"
            )
        };
        match &self.kind {
            TextErrorKind::UnknownEscape { pos, found } => {
                escape(f, *pos, format_args!("unknown escape \\{found}"))
            }
            TextErrorKind::ShortHexEscape { pos } => {
                escape(f, *pos, format_args!("\\x needs two hex digits"))
            }
            TextErrorKind::LoneBackslash { pos } => {
                escape(f, *pos, format_args!("a lone \\ at the end"))
            }
            TextErrorKind::OddHexDigits { digits } => write!(
                f,
                "hex {s:?} has an odd number of digits ({digits}); each byte needs two"
            ),
            TextErrorKind::NotHexDigit { pos, found } => {
                write!(
                    f,
                    "hex {s:?}: character {pos} ({found:?}) is not a hex digit"
                )
            }
            TextErrorKind::NoPayloadPrefix => {
                write!(f, "payload {s:?}: expected hex:<digits> or text:<text>")
            }
        }
    }
}

impl std::error::Error for TextError {}

/// The character of `s` starting at byte `i`, for error messages; the byte itself if `i` is
/// not on a character boundary.
fn char_at(s: &str, i: usize, byte: u8) -> char {
    s.get(i..)
        .and_then(|rest| rest.chars().next())
        .unwrap_or(char::from(byte))
}

/// Reads text with the escapes of [`escape`] back into bytes.
///
/// # Errors
/// An unknown escape, a `\x` without two hex digits, or a trailing `\`.
pub fn unescape(s: &str) -> Result<Vec<u8>, TextError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes().enumerate();
    while let Some((pos, b)) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some((_, b'n')) => out.push(b'\n'),
            Some((_, b'r')) => out.push(b'\r'),
            Some((_, b't')) => out.push(b'\t'),
            Some((_, b'\\')) => out.push(b'\\'),
            Some((_, b'0')) => out.push(0),
            Some((_, b'x')) => {
                let hi = bytes.next().and_then(|(_, c)| hex_val(c));
                let lo = bytes.next().and_then(|(_, c)| hex_val(c));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                    _ => return Err(TextError::new(s, TextErrorKind::ShortHexEscape { pos })),
                }
            }
            Some((i, c)) => {
                let found = char_at(s, i, c);
                return Err(TextError::new(
                    s,
                    TextErrorKind::UnknownEscape { pos, found },
                ));
            }
            None => return Err(TextError::new(s, TextErrorKind::LoneBackslash { pos })),
        }
    }
    Ok(out)
}

/// Lowercase hex, two characters a byte.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Reads hex (either case; spaces and `:` between bytes are ignored) into bytes.
///
/// # Errors
/// A character that is not a hex digit, or an odd number of digits.
pub fn from_hex(s: &str) -> Result<Vec<u8>, TextError> {
    let digits: Vec<(usize, u8)> = s
        .bytes()
        .enumerate()
        .filter(|(_, c)| !matches!(c, b' ' | b':' | b'\t'))
        .collect();
    if digits.len() % 2 != 0 {
        let digits = digits.len();
        return Err(TextError::new(s, TextErrorKind::OddHexDigits { digits }));
    }
    let value = |(pos, c): (usize, u8)| {
        hex_val(c).ok_or_else(|| {
            let found = char_at(s, pos, c);
            TextError::new(s, TextErrorKind::NotHexDigit { pos, found })
        })
    };
    let mut out = Vec::with_capacity(digits.len() / 2);
    let mut digits = digits.into_iter();
    while let (Some(hi), Some(lo)) = (digits.next(), digits.next()) {
        out.push((value(hi)? << 4) | value(lo)?);
    }
    Ok(out)
}

/// Parses a payload given as `hex:<digits>` (read by [`from_hex`]) or `text:<text>` (read by
/// [`unescape`]) into bytes, as `--reply` and the heartbeat's `ping=`/`pong=` take them.
///
/// ```
/// use keepwire::text::parse_payload;
/// assert_eq!(&parse_payload("hex:0a0b").unwrap()[..], b"\x0a\x0b");
/// assert_eq!(&parse_payload("text:PING\\n").unwrap()[..], b"PING\n");
/// assert!(parse_payload("PING").unwrap_err().is_no_payload_prefix());
/// ```
///
/// # Errors
/// A [`TextError`]: the hex or escape error of the part after the prefix, or
/// [`TextErrorKind::NoPayloadPrefix`].
pub fn parse_payload(s: &str) -> Result<bytes::Bytes, TextError> {
    if let Some(h) = s.strip_prefix("hex:") {
        from_hex(h).map(bytes::Bytes::from)
    } else if let Some(t) = s.strip_prefix("text:") {
        unescape(t).map(bytes::Bytes::from)
    } else {
        Err(TextError::new(s, TextErrorKind::NoPayloadPrefix))
    }
}

pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_roundtrip_all_bytes() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unescape(&escape(&all)).unwrap(), all);
    }

    #[test]
    fn hex_roundtrip_and_errors() {
        assert_eq!(from_hex("00 2A:ff").unwrap(), vec![0, 0x2a, 0xff]);
        assert_eq!(to_hex(&[0, 0x2a, 0xff]), "002aff");
        assert_eq!(from_hex("").unwrap(), Vec::<u8>::new());
    }

    /// Each error names the text, where the problem is and what was expected.
    #[test]
    fn errors_name_found_and_expected() {
        type Case = (Result<Vec<u8>, TextError>, TextErrorKind, &'static str);
        let cases: &[Case] = &[
            (
                from_hex("abc"),
                TextErrorKind::OddHexDigits { digits: 3 },
                r#"hex "abc" has an odd number of digits (3); each byte needs two"#,
            ),
            (
                from_hex("0a zz"),
                TextErrorKind::NotHexDigit { pos: 3, found: 'z' },
                r#"hex "0a zz": character 3 ('z') is not a hex digit"#,
            ),
            (
                from_hex("0é0"),
                TextErrorKind::NotHexDigit {
                    pos: 1, found: 'é'
                },
                r#"hex "0é0": character 1 ('é') is not a hex digit"#,
            ),
            (
                unescape("a\\q"),
                TextErrorKind::UnknownEscape { pos: 1, found: 'q' },
                r#"bad escape at character 1 of "a\\q": unknown escape \q; valid escapes are \n \r \t \\ \xNN"#,
            ),
            (
                unescape("\\é"),
                TextErrorKind::UnknownEscape {
                    pos: 0, found: 'é'
                },
                r#"bad escape at character 0 of "\\é": unknown escape \é; valid escapes are \n \r \t \\ \xNN"#,
            ),
            (
                unescape("ab\\x4"),
                TextErrorKind::ShortHexEscape { pos: 2 },
                r#"bad escape at character 2 of "ab\\x4": \x needs two hex digits; valid escapes are \n \r \t \\ \xNN"#,
            ),
            (
                unescape("a\\"),
                TextErrorKind::LoneBackslash { pos: 1 },
                r#"bad escape at character 1 of "a\\": a lone \ at the end; valid escapes are \n \r \t \\ \xNN"#,
            ),
        ];
        for (got, kind, msg) in cases {
            let e = got.as_ref().unwrap_err();
            assert_eq!(e.kind(), kind, "{msg}");
            assert_eq!(e.to_string(), *msg);
        }
    }

    #[test]
    fn predicates_and_positions() {
        let hex = from_hex("0g").unwrap_err();
        assert!(hex.is_hex() && !hex.is_escape() && !hex.is_no_payload_prefix());
        assert_eq!((hex.input(), hex.position()), ("0g", Some(1)));
        let odd = from_hex("0").unwrap_err();
        assert!(odd.is_hex());
        assert_eq!(odd.position(), None);
        let esc = unescape("\\x").unwrap_err();
        assert!(esc.is_escape() && !esc.is_hex());
        assert_eq!(esc.position(), Some(0));
        let none = parse_payload("PING").unwrap_err();
        assert!(none.is_no_payload_prefix() && !none.is_hex() && !none.is_escape());
        assert_eq!(
            none.to_string(),
            r#"payload "PING": expected hex:<digits> or text:<text>"#
        );
    }

    #[test]
    fn payloads() {
        assert_eq!(&parse_payload("hex:0a 0b").unwrap()[..], b"\x0a\x0b");
        assert_eq!(&parse_payload("text:a\\tb").unwrap()[..], b"a\tb");
        assert_eq!(&parse_payload("text:").unwrap()[..], b"");
        // The error is the one of the part after the prefix.
        let e = parse_payload("hex:0g").unwrap_err();
        assert_eq!((e.input(), e.is_hex()), ("0g", true));
        let e = parse_payload("text:\\q").unwrap_err();
        assert_eq!((e.input(), e.is_escape()), ("\\q", true));
        assert!(parse_payload("HEX:00").unwrap_err().is_no_payload_prefix());
    }
}
