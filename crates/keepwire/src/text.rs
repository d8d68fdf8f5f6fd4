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

/// An escape sequence that [`unescape`] or [`from_hex`] could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    msg: String,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for TextError {}

/// Reads text with the escapes of [`escape`] back into bytes.
///
/// # Errors
/// An unknown escape, a `\x` without two hex digits, or a trailing `\`.
pub fn unescape(s: &str) -> Result<Vec<u8>, TextError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes().enumerate();
    while let Some((i, b)) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let bad = |what: &str| TextError {
            msg: format!(
                "bad escape at character {i} of {s:?}: {what}; valid escapes are \\n \\r \\t \\\\ \\xNN"
            ),
        };
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
                    _ => return Err(bad("\\x needs two hex digits")),
                }
            }
            Some((_, c)) => return Err(bad(&format!("unknown escape \\{}", c as char))),
            None => return Err(bad("a lone \\ at the end")),
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
        return Err(TextError {
            msg: format!(
                "hex {s:?} has an odd number of digits ({}); each byte needs two",
                digits.len()
            ),
        });
    }
    digits
        .chunks(2)
        .map(|pair| {
            let get = |(i, c): (usize, u8)| {
                hex_val(c).ok_or_else(|| TextError {
                    msg: format!(
                        "hex {s:?}: character {i} ({:?}) is not a hex digit",
                        c as char
                    ),
                })
            };
            match *pair {
                [a, b] => Ok((get(a)? << 4) | get(b)?),
                _ => unreachable!("chunks(2) of an even-length slice"),
            }
        })
        .collect()
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
        assert!(from_hex("abc").unwrap_err().to_string().contains("odd"));
        assert!(
            from_hex("zz")
                .unwrap_err()
                .to_string()
                .contains("not a hex digit")
        );
        assert!(unescape("a\\q").unwrap_err().to_string().contains("\\q"));
        assert!(unescape("a\\x4").is_err());
        assert!(unescape("a\\").is_err());
    }
}
