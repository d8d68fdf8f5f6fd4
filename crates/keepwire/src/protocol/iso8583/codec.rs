//! [`Message::decode`] and [`Message::encode`]: the wire format under a [`Spec`].
//!
//! Every read goes through [`Reader`], which checks bounds and names the MTI, the offset and
//! the field in its errors; nothing is allocated from a length the peer sent before the bytes
//! it announces are known to be there.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::message::{Message, check_mti};
use super::spec::{BitmapEncoding, Data, FieldSpec, Length, MAX_FIELD, MtiEncoding, Pad, Prefix};
use super::spec::{Spec, prefix_largest, prefix_width};
use crate::protocol::error::{PduError, PduErrorKind};
use crate::protocol::value::escape_bytes;
use crate::text::hex_val;

/// A bounds-checked cursor over one message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The MTI once read, for messages (`"0200 at offset 20: ..."`).
    what: String,
}

impl<'a> Reader<'a> {
    fn err(&self, kind: PduErrorKind, at: usize, why: impl std::fmt::Display) -> PduError {
        PduError::new(kind, format!("{} at offset {at}: {why}", self.what))
    }

    /// The next `n` bytes; `part` names them in the error.
    fn take(&mut self, n: usize, kind: PduErrorKind, part: &str) -> Result<&'a [u8], PduError> {
        let left = self.buf.len().saturating_sub(self.pos);
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e).map(|s| (s, e))) {
            Some((s, e)) => {
                self.pos = e;
                Ok(s)
            }
            None => Err(self.err(
                kind,
                self.pos,
                format!("{part}: needs {n} bytes, {left} left in the message"),
            )),
        }
    }
}

impl Message {
    /// Decodes one message (without its length framing) under `spec`.
    ///
    /// # Errors
    /// [`PduError`] naming the MTI, the byte offset and the field: a message shorter than its
    /// MTI and bitmaps ([`is_too_short`](PduError::is_too_short)); a bitmap bit for a field
    /// the spec does not define ([`is_unknown_field`](PduError::is_unknown_field)); a
    /// length prefix that is not digits, above the field's maximum or beyond the message, a
    /// BCD nibble above 9, bytes after the last field ([`is_malformed`](PduError::is_malformed)).
    ///
    /// ```
    /// use keepwire::protocol::iso8583::{Message, Spec};
    /// let spec = Spec::ascii();
    /// let m = Message::decode(&spec, b"08002000000000000000000042").unwrap();
    /// assert_eq!(m.get_str(3), Some("000042"));
    /// // Field 2 (LLVAR) announces 19 digits; 4 follow.
    /// let err = Message::decode(&spec, b"0200400000000000000019411").unwrap_err();
    /// assert!(err.is_malformed());
    /// assert_eq!(
    ///     err.to_string(),
    ///     "0200 at offset 22: field 2: needs 19 bytes, 3 left in the message"
    /// );
    /// ```
    pub fn decode(spec: &Spec, buf: &[u8]) -> Result<Message, PduError> {
        let mut r = Reader {
            buf,
            pos: 0,
            what: "iso 8583 message".to_owned(),
        };
        let mti = read_mti(&mut r, spec.mti_encoding())?;
        r.what = String::from_utf8_lossy(&mti).into_owned();
        let primary = read_bitmap(&mut r, spec.bitmap_encoding(), "primary bitmap")?;
        let secondary = if bit(&primary, 1) {
            Some(read_bitmap(
                &mut r,
                spec.bitmap_encoding(),
                "secondary bitmap",
            )?)
        } else {
            None
        };
        let mut fields = BTreeMap::new();
        for n in 2..=MAX_FIELD {
            let set = match n {
                2..=64 => bit(&primary, n),
                _ => secondary.as_ref().is_some_and(|s| bit(s, n - 64)),
            };
            if !set {
                continue;
            }
            let Some(f) = spec.field(n) else {
                let at = r.pos;
                return Err(r.err(
                    PduErrorKind::UnknownField,
                    at,
                    format!("bitmap sets field {n}, which the spec does not define"),
                ));
            };
            fields.insert(n, read_field(&mut r, n, f)?);
        }
        if r.pos < buf.len() {
            let at = r.pos;
            let extra = buf.len() - at;
            return Err(r.err(
                PduErrorKind::Malformed,
                at,
                format!("{extra} bytes after the last field; expected the message to end"),
            ));
        }
        let empty_secondary = secondary.is_some() && !fields.keys().any(|&n| n > 64);
        Ok(Message {
            mti,
            fields,
            secondary: empty_secondary,
        })
    }

    /// Encodes the message under `spec`: MTI, bitmaps, then each field in number order.
    ///
    /// # Errors
    /// [`PduError`] naming the MTI and the field: a field the spec does not define
    /// ([`is_unknown_field`](PduError::is_unknown_field)); a value of the wrong size for a
    /// fixed field, longer than a variable field's maximum, or with non-digits in a BCD field
    /// ([`is_bad_value`](PduError::is_bad_value)).
    ///
    /// ```
    /// use keepwire::protocol::iso8583::{Message, Spec};
    /// let mut m = Message::new("0200").unwrap();
    /// m.set(4, "1000").unwrap();
    /// let err = m.encode(&Spec::ascii()).unwrap_err();
    /// assert!(err.is_bad_value());
    /// assert_eq!(err.to_string(), "0200: field 4: 4 bytes; the field is fixed at 12");
    /// ```
    pub fn encode(&self, spec: &Spec) -> Result<Bytes, PduError> {
        let mut out = BytesMut::new();
        let mut checked = Vec::with_capacity(self.fields.len());
        for (&n, value) in &self.fields {
            let f = field_spec(spec, self.mti(), n)?;
            check_value(f, value).map_err(|why| {
                PduError::new(
                    PduErrorKind::BadValue,
                    format!("{}: field {n}: {why}", self.mti()),
                )
            })?;
            checked.push((n, f, value));
        }
        match spec.mti_encoding() {
            MtiEncoding::Ascii => out.put_slice(&self.mti),
            MtiEncoding::Bcd => put_bcd(&mut out, &self.mti, Pad::default()),
        }
        let mut primary = [0u8; 8];
        let mut secondary = [0u8; 8];
        for &(n, _, _) in &checked {
            match n {
                2..=64 => set_bit(&mut primary, n),
                _ => set_bit(&mut secondary, n - 64),
            }
        }
        let with_secondary = self.has_secondary_bitmap();
        if with_secondary {
            set_bit(&mut primary, 1);
        }
        put_bitmap(&mut out, spec.bitmap_encoding(), &primary);
        if with_secondary {
            put_bitmap(&mut out, spec.bitmap_encoding(), &secondary);
        }
        for (_, f, value) in checked {
            put_field(&mut out, f, value);
        }
        Ok(out.freeze())
    }
}

pub(crate) fn field_spec<'s>(spec: &'s Spec, mti: &str, n: u8) -> Result<&'s FieldSpec, PduError> {
    spec.field(n).ok_or_else(|| {
        PduError::new(
            PduErrorKind::UnknownField,
            format!("{mti}: field {n} is not in the spec"),
        )
    })
}

/// Whether `value` fits field `f`: BCD digits only, the fixed size or at most the max.
pub(crate) fn check_value(f: &FieldSpec, value: &[u8]) -> Result<(), String> {
    if let Data::Bcd(_) = f.data
        && let Some(bad) = value.iter().find(|b| !b.is_ascii_digit())
    {
        return Err(format!(
            "{:?} is not a decimal digit; the field is bcd",
            char::from(*bad)
        ));
    }
    let unit = match f.data {
        Data::Bcd(_) => "digits",
        Data::Ascii | Data::Binary => "bytes",
    };
    let len = value.len();
    let max = usize::from(f.max);
    match f.length {
        Length::Fixed if len != max => Err(format!("{len} {unit}; the field is fixed at {max}")),
        Length::Var { digits, prefix }
            if len > max
                || u32::try_from(len).map_or(true, |l| l > prefix_largest(digits, prefix)) =>
        {
            Err(format!("{len} {unit}; the field holds at most {max}"))
        }
        _ => Ok(()),
    }
}

fn bit(map: &[u8; 8], n: u8) -> bool {
    let i = usize::from(n - 1);
    map.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

fn set_bit(map: &mut [u8; 8], n: u8) {
    let i = usize::from(n - 1);
    if let Some(b) = map.get_mut(i / 8) {
        *b |= 0x80 >> (i % 8);
    }
}

fn read_mti(r: &mut Reader<'_>, enc: MtiEncoding) -> Result<[u8; 4], PduError> {
    let at = r.pos;
    let (raw, text) = match enc {
        MtiEncoding::Ascii => {
            let raw = r.take(4, PduErrorKind::TooShort, "mti")?;
            (raw, raw.to_vec())
        }
        MtiEncoding::Bcd => {
            let raw = r.take(2, PduErrorKind::TooShort, "mti")?;
            (raw, unpack_nibbles(raw))
        }
    };
    check_mti(&text).ok_or_else(|| {
        r.err(
            PduErrorKind::Malformed,
            at,
            format!("mti {} is not 4 decimal digits", escape_bytes(raw)),
        )
    })
}

fn read_bitmap(r: &mut Reader<'_>, enc: BitmapEncoding, part: &str) -> Result<[u8; 8], PduError> {
    let at = r.pos;
    match enc {
        BitmapEncoding::Binary => {
            let raw = r.take(8, PduErrorKind::TooShort, part)?;
            let mut map = [0u8; 8];
            map.copy_from_slice(raw);
            Ok(map)
        }
        BitmapEncoding::Hex => {
            let raw = r.take(16, PduErrorKind::TooShort, part)?;
            let mut map = [0u8; 8];
            for (i, pair) in raw.chunks_exact(2).enumerate() {
                let [hi, lo] = [pair.first(), pair.get(1)].map(|c| c.copied().and_then(hex_val));
                match (hi, lo, map.get_mut(i)) {
                    (Some(hi), Some(lo), Some(b)) => *b = (hi << 4) | lo,
                    _ => {
                        return Err(r.err(
                            PduErrorKind::Malformed,
                            at,
                            format!("{part} {} is not 16 hex digits", escape_bytes(raw)),
                        ));
                    }
                }
            }
            Ok(map)
        }
    }
}

/// The field's value, after its prefix (if any) and data are read.
fn read_field(r: &mut Reader<'_>, n: u8, f: &FieldSpec) -> Result<Bytes, PduError> {
    let at = r.pos;
    let units = match f.length {
        Length::Fixed => usize::from(f.max),
        Length::Var { digits, prefix } => {
            let raw = r.take(
                prefix_width(digits, prefix),
                PduErrorKind::Malformed,
                &format!("field {n}: length prefix"),
            )?;
            let len = prefix_value(raw, prefix).ok_or_else(|| {
                r.err(
                    PduErrorKind::Malformed,
                    at,
                    format!(
                        "field {n}: length prefix {} is not {digits} {} digits",
                        escape_bytes(raw),
                        super::spec::prefix_name(prefix)
                    ),
                )
            })?;
            if len > usize::from(f.max) {
                return Err(r.err(
                    PduErrorKind::Malformed,
                    at,
                    format!(
                        "field {n}: length {len} above the field's maximum {}",
                        f.max
                    ),
                ));
            }
            len
        }
    };
    let data_at = r.pos;
    let raw = r.take(
        f.wire_len(units),
        PduErrorKind::Malformed,
        &format!("field {n}"),
    )?;
    match f.data {
        Data::Ascii | Data::Binary => Ok(Bytes::copy_from_slice(raw)),
        Data::Bcd(pad) => unpack_bcd(raw, units, pad)
            .map(Bytes::from)
            .map_err(|(i, why)| {
                r.err(
                    PduErrorKind::Malformed,
                    data_at.saturating_add(i),
                    format!("field {n}: {why}"),
                )
            }),
    }
}

/// A length prefix's value; `None` when a digit is not one.
fn prefix_value(raw: &[u8], prefix: Prefix) -> Option<usize> {
    match prefix {
        Prefix::Ascii => raw.iter().try_fold(0usize, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + usize::from(c - b'0'))
        }),
        Prefix::Bcd => unpack_nibbles(raw).iter().try_fold(0usize, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + usize::from(c - b'0'))
        }),
        Prefix::Binary => Some(raw.iter().fold(0usize, |acc, &b| acc << 8 | usize::from(b))),
    }
}

/// Each nibble as an ASCII hex digit (upper case), for digit checks and messages.
fn unpack_nibbles(raw: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digit = |n: u8| HEX.get(usize::from(n & 0xf)).copied().unwrap_or(b'?');
    raw.iter()
        .flat_map(|&b| [digit(b >> 4), digit(b)])
        .collect()
}

/// `units` BCD digits from `raw`; the pad nibble of an odd count must be the spec's. Errors
/// carry the byte index in `raw`.
fn unpack_bcd(raw: &[u8], units: usize, pad: Pad) -> Result<Vec<u8>, (usize, String)> {
    let mut nibbles: Vec<(usize, u8)> = raw
        .iter()
        .enumerate()
        .flat_map(|(i, &b)| [(i, b >> 4), (i, b & 0xf)])
        .collect();
    if units % 2 == 1 {
        let (expected, got) = match pad {
            Pad::Left(p) => (p, nibbles.first().copied()),
            Pad::Right(p) => (p, nibbles.last().copied()),
        };
        if let Some((i, nib)) = got {
            if nib != expected {
                return Err((
                    i,
                    format!("pad nibble 0x{nib:x}; expected 0x{expected:x} for an odd length"),
                ));
            }
        }
        match pad {
            Pad::Left(_) => drop(nibbles.drain(..1.min(nibbles.len()))),
            Pad::Right(_) => drop(nibbles.pop()),
        }
    }
    nibbles
        .into_iter()
        .map(|(i, nib)| {
            if nib > 9 {
                Err((i, format!("bcd nibble 0x{nib:x} is not a digit")))
            } else {
                Ok(b'0' + nib)
            }
        })
        .collect()
}

/// ASCII digits packed two a byte; an odd count gets `pad`'s nibble on its side.
fn put_bcd(out: &mut BytesMut, digits: &[u8], pad: Pad) {
    let mut nibbles: Vec<u8> = Vec::with_capacity(digits.len() + 1);
    let value = |d: &u8| d.wrapping_sub(b'0') & 0xf;
    if digits.len() % 2 == 1
        && let Pad::Left(p) = pad
    {
        nibbles.push(p & 0xf);
    }
    nibbles.extend(digits.iter().map(value));
    if nibbles.len() % 2 == 1 {
        let p = match pad {
            Pad::Left(p) | Pad::Right(p) => p,
        };
        nibbles.push(p & 0xf);
    }
    for pair in nibbles.chunks(2) {
        let hi = pair.first().copied().unwrap_or(0);
        let lo = pair.get(1).copied().unwrap_or(0);
        out.put_u8((hi << 4) | lo);
    }
}

fn put_bitmap(out: &mut BytesMut, enc: BitmapEncoding, map: &[u8; 8]) {
    match enc {
        BitmapEncoding::Binary => out.put_slice(map),
        BitmapEncoding::Hex => {
            out.put_slice(crate::text::to_hex(map).to_ascii_uppercase().as_bytes())
        }
    }
}

/// Writes a field [`check_value`] accepted: its prefix, then its data.
fn put_field(out: &mut BytesMut, f: &FieldSpec, value: &[u8]) {
    if let Length::Var { digits, prefix } = f.length {
        let len = value.len();
        let width = prefix_width(digits, prefix);
        match prefix {
            Prefix::Ascii => out.put_slice(format!("{len:0width$}").as_bytes()),
            Prefix::Bcd => {
                let text = format!("{len:0w$}", w = width * 2);
                put_bcd(out, text.as_bytes(), Pad::default());
            }
            Prefix::Binary => {
                let be = u64::try_from(len).unwrap_or(u64::MAX).to_be_bytes();
                out.put_slice(be.get(8usize.saturating_sub(width)..).unwrap_or(&[]));
            }
        }
    }
    match f.data {
        Data::Ascii | Data::Binary => out.put_slice(value),
        Data::Bcd(pad) => put_bcd(out, value, pad),
    }
}
