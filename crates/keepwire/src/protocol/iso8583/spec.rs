//! [`Spec`]: the field table of an ISO 8583 link, and the two built-in tables.
//!
//! For each field 2..=128 a [`FieldSpec`] says how its length is carried ([`Length`]: fixed,
//! or a prefix of 1 to 4 decimal digits written as ASCII, BCD or a binary integer) and how its
//! data is ([`Data`]: ASCII characters, packed BCD digits, or raw bytes), plus the maximum
//! (the size of a fixed field). The MTI ([`MtiEncoding`]) and the bitmaps
//! ([`BitmapEncoding`]) have encodings of their own. Field 1 is the secondary bitmap; it is
//! derived from the fields present and follows the bitmap encoding.

use super::error::SpecError;

/// The largest field number (fields 129..=192 and tertiary bitmaps are not modelled).
pub const MAX_FIELD: u8 = 128;

/// How a field's data bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Data {
    /// Characters, one byte each, carried as they are (`"000123"` is `30 30 30 31 32 33`).
    /// Lengths count bytes.
    Ascii,
    /// Packed BCD: two decimal digits a byte (`"000123"` is `00 01 23`). Lengths count
    /// digits; an odd count is padded with one nibble, on the side [`Pad`] says.
    Bcd(Pad),
    /// Raw bytes (PIN blocks, MACs, ICC data). Lengths count bytes.
    Binary,
}

/// Where the pad nibble of an odd-length BCD value goes, and its value (0..=15; pyiso8583's
/// `left_pad`/`right_pad`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pad {
    /// Before the first digit: `"123"` is `01 23` with pad 0.
    Left(u8),
    /// After the last digit: `"123"` is `12 3f` with pad 0xf.
    Right(u8),
}

impl Default for Pad {
    /// `Left(0)`: the value right-aligned behind a zero nibble.
    fn default() -> Self {
        Pad::Left(0)
    }
}

/// How a variable field's length prefix is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Prefix {
    /// Decimal digits in ASCII, one byte a digit: LLVAR 35 is `"35"`.
    Ascii,
    /// Packed BCD digits, left padded to whole bytes: LLVAR 35 is `35`, LLLVAR 104 is `01 04`.
    Bcd,
    /// An unsigned big-endian integer: 1 byte for L and LL, 2 bytes for LLL and LLLL.
    Binary,
}

/// Whether a field has a fixed size or a length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Length {
    /// Always [`FieldSpec::max`] units long; no prefix.
    Fixed,
    /// A prefix of `digits` decimal digits (1 = LVAR, 2 = LLVAR, 3 = LLLVAR, 4 = LLLLVAR)
    /// before the data.
    Var {
        /// 1..=4: how many decimal digits the length has.
        digits: u8,
        /// How the prefix is written.
        prefix: Prefix,
    },
}

/// One field of the table: its length, its data and its maximum.
///
/// ```
/// use keepwire::protocol::iso8583::{Data, FieldSpec, Length, Prefix, Spec};
/// let spec = Spec::ascii();
/// let pan = spec.field(2).unwrap();
/// assert_eq!(pan.length, Length::Var { digits: 2, prefix: Prefix::Ascii });
/// assert_eq!((pan.data, pan.max), (Data::Ascii, 19));
/// assert_eq!(FieldSpec::fixed(Data::Ascii, 6), *spec.field(3).unwrap());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct FieldSpec {
    /// Fixed, or the length prefix.
    pub length: Length,
    /// How the data is written.
    pub data: Data,
    /// A fixed field's size, or a variable field's largest: bytes for ASCII and binary data,
    /// digits for BCD.
    pub max: u16,
}

impl FieldSpec {
    /// A fixed field of `size` units.
    pub const fn fixed(data: Data, size: u16) -> Self {
        FieldSpec {
            length: Length::Fixed,
            data,
            max: size,
        }
    }

    /// A variable field with a `digits`-digit prefix (2 = LLVAR, 3 = LLLVAR) of at most
    /// `max` units. [`Spec::set_field`] checks that the prefix can express `max`.
    pub const fn var(digits: u8, prefix: Prefix, data: Data, max: u16) -> Self {
        FieldSpec {
            length: Length::Var { digits, prefix },
            data,
            max,
        }
    }

    /// The prefix's size on the wire in bytes (0 for a fixed field).
    pub fn prefix_width(&self) -> usize {
        match self.length {
            Length::Fixed => 0,
            Length::Var { digits, prefix } => prefix_width(digits, prefix),
        }
    }

    /// The data's size on the wire, in bytes, for a value of `units` (digits for BCD).
    pub fn wire_len(&self, units: usize) -> usize {
        match self.data {
            Data::Bcd(_) => units.div_ceil(2),
            Data::Ascii | Data::Binary => units,
        }
    }

    /// Whether the table entry is coherent: a prefix of 1..=4 digits that can express `max`.
    pub(crate) fn check(&self, n: u8) -> Result<(), SpecError> {
        let Length::Var { digits, prefix } = self.length else {
            return Ok(());
        };
        if !(1..=4).contains(&digits) {
            return Err(SpecError::bad_field(
                n,
                format!("a length prefix has 1 to 4 digits, not {digits}"),
            ));
        }
        let largest = prefix_largest(digits, prefix);
        if u32::from(self.max) > largest {
            return Err(SpecError::bad_field(
                n,
                format!(
                    "max {} does not fit a {}-digit {} length prefix (at most {largest})",
                    self.max,
                    digits,
                    prefix_name(prefix)
                ),
            ));
        }
        Ok(())
    }
}

pub(crate) fn prefix_name(p: Prefix) -> &'static str {
    match p {
        Prefix::Ascii => "ascii",
        Prefix::Bcd => "bcd",
        Prefix::Binary => "binary",
    }
}

/// Bytes of a `digits`-digit prefix: ASCII one a digit, BCD two digits a byte, binary 1 byte
/// up to LL and 2 bytes beyond (pyiso8583's `len_type` table).
pub(crate) fn prefix_width(digits: u8, prefix: Prefix) -> usize {
    let digits = usize::from(digits);
    match prefix {
        Prefix::Ascii => digits,
        Prefix::Bcd => digits.div_ceil(2),
        Prefix::Binary if digits <= 2 => 1,
        Prefix::Binary => 2,
    }
}

/// The largest value a prefix holds.
pub(crate) fn prefix_largest(digits: u8, prefix: Prefix) -> u32 {
    match prefix {
        Prefix::Binary if digits <= 2 => 255,
        Prefix::Binary => 65_535,
        Prefix::Ascii | Prefix::Bcd => 10u32.pow(u32::from(digits.min(4))) - 1,
    }
}

/// How the message type indicator is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum MtiEncoding {
    /// Four ASCII digits: `"0200"`.
    #[default]
    Ascii,
    /// Two bytes of packed BCD: `02 00`.
    Bcd,
}

/// How the primary and secondary bitmaps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum BitmapEncoding {
    /// 16 hex characters each, upper case on output, either case on input.
    #[default]
    Hex,
    /// 8 raw bytes each.
    Binary,
}

/// An ISO 8583 field table: the MTI and bitmap encodings and a [`FieldSpec`] per field.
///
/// Built in: [`Spec::ascii`] and [`Spec::binary`] (pyiso8583 4.0.1's `default_ascii` and
/// `default`); a partner's table from TOML with [`Spec::from_toml`] or [`Spec::load`] (the
/// format is in the module doc of [`iso8583`](super)).
///
/// ```
/// use keepwire::protocol::iso8583::{BitmapEncoding, Data, Spec};
/// let ascii = Spec::ascii();
/// let binary = Spec::binary();
/// assert_eq!(ascii.bitmap_encoding(), BitmapEncoding::Hex);
/// assert_eq!(binary.bitmap_encoding(), BitmapEncoding::Binary);
/// // They differ only in the binary fields: PIN block, ICC data, MACs.
/// assert_eq!(binary.field(52).unwrap().data, Data::Binary);
/// assert_eq!(ascii.field(52).unwrap().max, 16);
/// assert_eq!(ascii.field(11), binary.field(11));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    mti: MtiEncoding,
    bitmap: BitmapEncoding,
    /// Indexed by field number; entries 0 and 1 stay `None`.
    fields: Vec<Option<FieldSpec>>,
}

impl Spec {
    /// A table with no fields, the MTI and bitmaps given.
    pub fn empty(mti: MtiEncoding, bitmap: BitmapEncoding) -> Self {
        Spec {
            mti,
            bitmap,
            fields: vec![None; usize::from(MAX_FIELD) + 1],
        }
    }

    /// ISO 8583:1987 with the bitmaps as 16 hex characters and every field in ASCII
    /// (binary fields 52, 64, 65, 96, 128 as hex text of twice their size, 55 LLLVAR up to
    /// 510): byte for byte pyiso8583's `default_ascii`.
    pub fn ascii() -> Self {
        builtin(BitmapEncoding::Hex)
    }

    /// ISO 8583:1987 with 8-byte binary bitmaps, and fields 52, 64, 65, 96, 128 (8 bytes)
    /// and 55 (LLLVAR up to 255 bytes) binary: byte for byte pyiso8583's `default`.
    pub fn binary() -> Self {
        builtin(BitmapEncoding::Binary)
    }

    /// A built-in table by name: `ascii` or `binary`.
    pub fn builtin(name: &str) -> Option<Self> {
        match name {
            "ascii" => Some(Spec::ascii()),
            "binary" => Some(Spec::binary()),
            _ => None,
        }
    }

    /// How the MTI is written.
    pub fn mti_encoding(&self) -> MtiEncoding {
        self.mti
    }

    /// How the bitmaps are written.
    pub fn bitmap_encoding(&self) -> BitmapEncoding {
        self.bitmap
    }

    /// Sets how the MTI is written.
    pub fn set_mti_encoding(&mut self, mti: MtiEncoding) {
        self.mti = mti;
    }

    /// Sets how the bitmaps are written.
    pub fn set_bitmap_encoding(&mut self, bitmap: BitmapEncoding) {
        self.bitmap = bitmap;
    }

    /// Field `n`'s entry, `None` when the table does not define it (and for 0, 1, > 128).
    pub fn field(&self, n: u8) -> Option<&FieldSpec> {
        self.fields.get(usize::from(n)).and_then(Option::as_ref)
    }

    /// Defines field `n` (2..=128), or with `None` removes it.
    ///
    /// # Errors
    /// A field number outside 2..=128, or a prefix that cannot express `max`.
    ///
    /// ```
    /// use keepwire::protocol::iso8583::{Data, FieldSpec, Pad, Prefix, Spec};
    /// let mut spec = Spec::binary();
    /// // Track 2 as BCD digits behind a one-byte BCD length.
    /// let track2 = FieldSpec::var(2, Prefix::Bcd, Data::Bcd(Pad::Right(0xf)), 37);
    /// spec.set_field(35, Some(track2)).unwrap();
    /// assert!(spec.set_field(1, Some(track2)).is_err());
    /// let too_big = FieldSpec::var(2, Prefix::Ascii, Data::Ascii, 100);
    /// assert_eq!(
    ///     spec.set_field(36, Some(too_big)).unwrap_err().to_string(),
    ///     "iso 8583 spec: field 36: max 100 does not fit a 2-digit ascii length prefix (at most 99)"
    /// );
    /// ```
    pub fn set_field(&mut self, n: u8, field: Option<FieldSpec>) -> Result<(), SpecError> {
        if !(2..=MAX_FIELD).contains(&n) {
            return Err(SpecError::bad_field(
                n,
                "field numbers run from 2 to 128 (field 1 is the secondary bitmap)",
            ));
        }
        if let Some(f) = &field {
            f.check(n)?;
        }
        if let Some(slot) = self.fields.get_mut(usize::from(n)) {
            *slot = field;
        }
        Ok(())
    }

    /// The defined fields, in number order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &FieldSpec)> + '_ {
        (2..=MAX_FIELD).filter_map(|n| self.field(n).map(|f| (n, f)))
    }
}

/// pyiso8583 4.0.1 `specs.py`, fields 2..=128 as (number, LL digits (0 = fixed), max); the
/// binary fields are patched in [`builtin`].
const TABLE: [(u8, u8, u16); 127] = [
    (2, 2, 19),
    (3, 0, 6),
    (4, 0, 12),
    (5, 0, 12),
    (6, 0, 12),
    (7, 0, 10),
    (8, 0, 8),
    (9, 0, 8),
    (10, 0, 8),
    (11, 0, 6),
    (12, 0, 6),
    (13, 0, 4),
    (14, 0, 4),
    (15, 0, 4),
    (16, 0, 4),
    (17, 0, 4),
    (18, 0, 4),
    (19, 0, 3),
    (20, 0, 3),
    (21, 0, 3),
    (22, 0, 3),
    (23, 0, 3),
    (24, 0, 3),
    (25, 0, 2),
    (26, 0, 2),
    (27, 0, 1),
    (28, 0, 9),
    (29, 0, 9),
    (30, 0, 9),
    (31, 0, 9),
    (32, 2, 11),
    (33, 2, 11),
    (34, 2, 28),
    (35, 2, 37),
    (36, 3, 104),
    (37, 0, 12),
    (38, 0, 6),
    (39, 0, 2),
    (40, 0, 3),
    (41, 0, 8),
    (42, 0, 15),
    (43, 0, 40),
    (44, 2, 25),
    (45, 2, 76),
    (46, 3, 999),
    (47, 3, 999),
    (48, 3, 999),
    (49, 0, 3),
    (50, 0, 3),
    (51, 0, 3),
    (52, 0, 16),
    (53, 0, 16),
    (54, 3, 240),
    (55, 3, 510),
    (56, 3, 999),
    (57, 3, 999),
    (58, 3, 999),
    (59, 3, 999),
    (60, 3, 999),
    (61, 3, 999),
    (62, 3, 999),
    (63, 3, 999),
    (64, 0, 16),
    (65, 0, 16),
    (66, 0, 1),
    (67, 0, 2),
    (68, 0, 3),
    (69, 0, 3),
    (70, 0, 3),
    (71, 0, 4),
    (72, 0, 4),
    (73, 0, 6),
    (74, 0, 10),
    (75, 0, 10),
    (76, 0, 10),
    (77, 0, 10),
    (78, 0, 10),
    (79, 0, 10),
    (80, 0, 10),
    (81, 0, 10),
    (82, 0, 12),
    (83, 0, 12),
    (84, 0, 12),
    (85, 0, 12),
    (86, 0, 16),
    (87, 0, 16),
    (88, 0, 16),
    (89, 0, 16),
    (90, 0, 42),
    (91, 0, 1),
    (92, 0, 2),
    (93, 0, 5),
    (94, 0, 7),
    (95, 0, 42),
    (96, 0, 16),
    (97, 0, 17),
    (98, 0, 25),
    (99, 2, 11),
    (100, 2, 11),
    (101, 2, 17),
    (102, 2, 28),
    (103, 2, 28),
    (104, 3, 100),
    (105, 3, 999),
    (106, 3, 999),
    (107, 3, 999),
    (108, 3, 999),
    (109, 3, 999),
    (110, 3, 999),
    (111, 3, 999),
    (112, 3, 999),
    (113, 3, 999),
    (114, 3, 999),
    (115, 3, 999),
    (116, 3, 999),
    (117, 3, 999),
    (118, 3, 999),
    (119, 3, 999),
    (120, 3, 999),
    (121, 3, 999),
    (122, 3, 999),
    (123, 3, 999),
    (124, 3, 999),
    (125, 3, 999),
    (126, 3, 999),
    (127, 3, 999),
    (128, 0, 16),
];

/// Fields pyiso8583's `default` carries as raw bytes; `default_ascii` as hex text of twice
/// the size (55: 255 bytes against 510 characters).
const BINARY_FIELDS: [(u8, u16); 6] = [(52, 8), (55, 255), (64, 8), (65, 8), (96, 8), (128, 8)];

fn builtin(bitmap: BitmapEncoding) -> Spec {
    let mut spec = Spec::empty(MtiEncoding::Ascii, bitmap);
    for (n, digits, max) in TABLE {
        let f = if digits == 0 {
            FieldSpec::fixed(Data::Ascii, max)
        } else {
            FieldSpec::var(digits, Prefix::Ascii, Data::Ascii, max)
        };
        if let Some(slot) = spec.fields.get_mut(usize::from(n)) {
            *slot = Some(f);
        }
    }
    if bitmap == BitmapEncoding::Binary {
        for (n, max) in BINARY_FIELDS {
            if let Some(Some(f)) = spec.fields.get_mut(usize::from(n)) {
                f.data = Data::Binary;
                f.max = max;
            }
        }
    }
    spec
}
