//! [`Spec::from_toml`] and [`Spec::load`]: a partner's field table as a TOML file.
//!
//! ```toml
//! base = "binary"        # start from a built-in table: "ascii", "binary" or "none"
//! mti = "ascii"          # "ascii" (4 digits) or "bcd" (2 bytes); default: the base's
//! bitmap = "binary"      # "hex" (16 characters) or "binary" (8 bytes); default: the base's
//!
//! [field.35]             # track 2: BCD digits behind a one-byte BCD length
//! length = "llvar"       # fixed | lvar | llvar | lllvar | llllvar
//! prefix = "bcd"         # the length prefix: ascii | bcd | binary (default ascii)
//! data = "bcd"           # ascii | bcd | binary
//! max = 37               # units: bytes (ascii, binary), digits (bcd); a fixed field's size
//! pad = "right"          # odd BCD lengths: "left" (default) or "right"
//! pad_digit = "f"        # the pad nibble, a hex digit (default "0")
//!
//! [field.127]
//! remove = true          # the partner has no field 127
//! ```
//!
//! An entry for a field the base defines changes only the keys it gives; a new field needs
//! `length` and `max`. Unknown keys are errors naming their line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::error::{SpecError, SpecErrorKind};
use super::spec::{BitmapEncoding, Data, FieldSpec, Length, MtiEncoding, Pad, Prefix, Spec};

/// The largest spec file read, bytes: a field table is a few kilobytes.
pub const MAX_SPEC_FILE: u64 = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    base: Option<String>,
    mti: Option<MtiName>,
    bitmap: Option<BitmapName>,
    #[serde(default)]
    field: BTreeMap<String, toml::Spanned<Entry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    length: Option<LengthName>,
    prefix: Option<PrefixName>,
    data: Option<DataName>,
    max: Option<u16>,
    pad: Option<PadSide>,
    pad_digit: Option<String>,
    #[serde(default)]
    remove: bool,
    /// What the field is; documentation only.
    #[allow(dead_code)]
    name: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum MtiName {
    Ascii,
    Bcd,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum BitmapName {
    Hex,
    Binary,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum LengthName {
    Fixed,
    Lvar,
    Llvar,
    Lllvar,
    Llllvar,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum PrefixName {
    Ascii,
    Bcd,
    Binary,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum DataName {
    Ascii,
    Bcd,
    Binary,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum PadSide {
    Left,
    Right,
}

fn line_of(text: &str, at: usize) -> usize {
    let before = text.get(..at).unwrap_or(text);
    before.bytes().filter(|&b| b == b'\n').count() + 1
}

impl Spec {
    /// A field table from TOML (the format is in the module doc of
    /// [`iso8583`](super)).
    ///
    /// # Errors
    /// [`SpecError`] naming the line (TOML syntax, unknown keys, wrong types) or the field
    /// (a max its prefix cannot express, a field number outside 2..=128), or an unknown
    /// `base`.
    ///
    /// ```
    /// use keepwire::protocol::iso8583::{Data, Pad, Spec};
    /// let spec = Spec::from_toml(
    ///     r#"
    /// base = "ascii"
    /// [field.35]
    /// data = "bcd"
    /// pad = "right"
    /// pad_digit = "f"
    /// "#,
    /// )
    /// .unwrap();
    /// assert_eq!(spec.field(35).unwrap().data, Data::Bcd(Pad::Right(0xf)));
    /// assert_eq!(spec.field(35).unwrap().max, 37);
    /// assert_eq!(spec.field(2), Spec::ascii().field(2));
    /// ```
    pub fn from_toml(text: &str) -> Result<Spec, SpecError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            SpecError::new(SpecErrorKind::Syntax, line, e.message().trim())
        })?;
        let mut spec = match file.base.as_deref() {
            None | Some("ascii") => Spec::ascii(),
            Some("binary") => Spec::binary(),
            Some("none") => Spec::empty(MtiEncoding::Ascii, BitmapEncoding::Hex),
            Some(other) => {
                return Err(SpecError::new(
                    SpecErrorKind::UnknownBase,
                    line_of_key(text, "base"),
                    format!(
                        "base {other:?} is not a built-in table; expected ascii, binary or none"
                    ),
                ));
            }
        };
        match file.mti {
            Some(MtiName::Ascii) => spec.set_mti_encoding(MtiEncoding::Ascii),
            Some(MtiName::Bcd) => spec.set_mti_encoding(MtiEncoding::Bcd),
            None => {}
        }
        match file.bitmap {
            Some(BitmapName::Hex) => spec.set_bitmap_encoding(BitmapEncoding::Hex),
            Some(BitmapName::Binary) => spec.set_bitmap_encoding(BitmapEncoding::Binary),
            None => {}
        }
        let mut seen: BTreeMap<u8, &str> = BTreeMap::new();
        for (key, entry) in &file.field {
            let line = line_of(text, entry.span().start);
            let with_line = |e: SpecError| e.at_line(line);
            let n = key
                .parse::<u8>()
                .ok()
                .filter(|n| (2..=super::MAX_FIELD).contains(n))
                .ok_or_else(|| {
                    SpecError::new(
                        SpecErrorKind::BadField,
                        Some(line),
                        format!("[field.{key}]: field numbers run from 2 to 128"),
                    )
                })?;
            // `[field.04]` and `[field.4]` are two TOML keys but one field.
            if let Some(first) = seen.insert(n, key) {
                return Err(SpecError::new(
                    SpecErrorKind::BadField,
                    Some(line),
                    format!("[field.{key}]: field {n} is already given by [field.{first}]"),
                ));
            }
            let field = merge(n, spec.field(n).copied(), entry.get_ref()).map_err(with_line)?;
            spec.set_field(n, field).map_err(with_line)?;
        }
        Ok(spec)
    }

    /// A field table from a TOML file (at most [`MAX_SPEC_FILE`] bytes).
    ///
    /// # Errors
    /// As [`from_toml`](Spec::from_toml), the file's path in the message; an unreadable or
    /// oversized file is [`SpecError::is_io`].
    pub fn load(path: impl AsRef<Path>) -> Result<Spec, SpecError> {
        let path = path.as_ref();
        let text = read_bounded(path).map_err(|e| SpecError::new(SpecErrorKind::Io, None, e))?;
        Spec::from_toml(&text).map_err(|e| e.in_file(path))
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut text = String::new();
    file.take(MAX_SPEC_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_SPEC_FILE {
        return Err(format!("larger than {MAX_SPEC_FILE} bytes"));
    }
    Ok(text)
}

fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(key))
        .map(|i| i + 1)
}

/// A field entry applied over the base's definition of field `n` (`None`: the base has none).
fn merge(n: u8, base: Option<FieldSpec>, e: &Entry) -> Result<Option<FieldSpec>, SpecError> {
    if e.remove {
        return Ok(None);
    }
    let (length, max) = match (base, e.length, e.max) {
        (_, Some(l), Some(max)) => (l, max),
        (Some(b), l, max) => (
            l.unwrap_or_else(|| length_name(b.length)),
            max.unwrap_or(b.max),
        ),
        (None, _, _) => {
            return Err(SpecError::bad_field(
                n,
                "the base table has no such field: give at least length and max",
            ));
        }
    };
    let base_prefix = match base.map(|b| b.length) {
        Some(Length::Var { prefix, .. }) => prefix,
        _ => Prefix::Ascii,
    };
    let prefix = match e.prefix {
        Some(PrefixName::Ascii) => Prefix::Ascii,
        Some(PrefixName::Bcd) => Prefix::Bcd,
        Some(PrefixName::Binary) => Prefix::Binary,
        None => base_prefix,
    };
    let base_pad = match base.map(|b| b.data) {
        Some(Data::Bcd(p)) => p,
        _ => Pad::default(),
    };
    let pad = pad(n, base_pad, e)?;
    let data = match (e.data, base.map(|b| b.data)) {
        (Some(DataName::Ascii), _) => Data::Ascii,
        (Some(DataName::Bcd), _) => Data::Bcd(pad),
        (Some(DataName::Binary), _) => Data::Binary,
        (None, Some(Data::Bcd(_))) => Data::Bcd(pad),
        (None, Some(d)) => d,
        (None, None) => Data::Ascii,
    };
    let length = match length {
        LengthName::Fixed => Length::Fixed,
        LengthName::Lvar => Length::Var { digits: 1, prefix },
        LengthName::Llvar => Length::Var { digits: 2, prefix },
        LengthName::Lllvar => Length::Var { digits: 3, prefix },
        LengthName::Llllvar => Length::Var { digits: 4, prefix },
    };
    Ok(Some(FieldSpec { length, data, max }))
}

fn length_name(l: Length) -> LengthName {
    match l {
        Length::Fixed => LengthName::Fixed,
        Length::Var { digits: 1, .. } => LengthName::Lvar,
        Length::Var { digits: 2, .. } => LengthName::Llvar,
        Length::Var { digits: 3, .. } => LengthName::Lllvar,
        Length::Var { .. } => LengthName::Llllvar,
    }
}

fn pad(n: u8, base: Pad, e: &Entry) -> Result<Pad, SpecError> {
    let (base_left, base_nibble) = match base {
        Pad::Left(d) => (true, d),
        Pad::Right(d) => (false, d),
    };
    let nibble = match &e.pad_digit {
        None => base_nibble,
        Some(s) => match s.as_bytes() {
            [c] => crate::text::hex_val(*c),
            _ => None,
        }
        .ok_or_else(|| SpecError::bad_field(n, format!("pad_digit {s:?} is not one hex digit")))?,
    };
    let left = match e.pad {
        Some(PadSide::Left) => true,
        Some(PadSide::Right) => false,
        None => base_left,
    };
    Ok(if left {
        Pad::Left(nibble)
    } else {
        Pad::Right(nibble)
    })
}
