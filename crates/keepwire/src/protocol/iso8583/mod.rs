//! ISO 8583 (1987) messages and field tables.
//!
//! A message is an MTI, a primary bitmap, a secondary bitmap when any field above 64 is
//! present (bit 1 of the primary says so), then each present field in number order:
//!
//! ```text
//! +------+----------------+------------------+---------+---------+-----
//! | MTI  | primary bitmap | secondary bitmap | field a | field b | ...
//! |      | bits 1..=64    | bits 65..=128    |         |         |
//! +------+----------------+------------------+---------+---------+-----
//!                           only when bit 1 is set
//! ```
//!
//! Bit 1 is the most significant bit of the bitmap's first byte. A field is fixed, or a
//! length prefix then its data; a [`Spec`] says which, per field, and how each part is
//! written ([`Data`], [`Prefix`], [`MtiEncoding`], [`BitmapEncoding`]). Framing (a 4-digit
//! ASCII or 2-byte binary length before each message) is not part of ISO 8583: it is the
//! connection's framing (`len:ascii:4`, `len:be:2`), and [`Message::decode`] takes what the
//! framing yields.
//!
//! INPUT -> DECODED, with [`Spec::ascii`] (pyiso8583's `default_ascii`) and [`Spec::binary`]
//! (pyiso8583's `default`):
//!
//! ```text
//! ascii   "0800" "8220000000000000" "0400000000000000" "0101120000" "000001" "301"
//!         -> 0800 7=0101120000 11=000001 70=301          (secondary bitmap for field 70)
//! ascii   "0200" "4000000000000000" "16" "4111111111111111"
//!         -> 0200 2=4111111111111111                     (field 2: LLVAR, 2 ASCII digits)
//! binary  "0200" 70 00 00 00 00 00 10 00 "16" "4111111111111111" "000000" "000000001000"
//!         01 23 45 67 89 ab cd ef
//!         -> 0200 2=4111111111111111 3=000000 4=000000001000 52=hex:0123456789abcdef
//! ```
//!
//! A BCD field counts digits and packs two a byte, padding an odd count with one nibble on
//! the side its [`Pad`] says: `Data::Bcd(Pad::Left(0))` with 3 digits `"123"` is `01 23`;
//! `Pad::Right(0xf)` gives `12 3f`. A BCD length prefix of 2 digits is one byte (`37` for
//! 37), of 3 or 4 digits two bytes (`01 04`); a binary prefix is one byte up to LL and two
//! bytes beyond, big-endian.
//!
//! # Field tables in TOML
//!
//! A partner's table is usually a built-in one with some fields changed:
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
//! name = "track 2 data"  # documentation only
//!
//! [field.127]
//! remove = true          # the partner has no field 127
//! ```
//!
//! An entry for a field the base defines changes only the keys it gives; a new field needs
//! `length` and `max`. See [`Spec::from_toml`].
//!
//! # Text form
//!
//! The MTI, then `N=value` per field in number order:
//! `0200 2=4111111111111111 3=000000 4=000000001000 11=000123 41=TERM0001`. ASCII and BCD
//! values print with the escapes of the other templates (a space is `\x20`); binary fields as
//! `hex:` then lowercase hex. [`Message::to_text`] gives a [`TextPdu`](super::TextPdu)
//! (`to_string`, `to_json`); [`Message::from_text`] reads a line back.
//!
//! # Bounds
//!
//! Decoding never panics and allocates at most the input's size: every length is checked
//! against the field's maximum and against the bytes left before anything is copied. A
//! bitmap bit for a field the spec does not define, a length prefix with non-digits, BCD
//! nibbles above 9, a pad nibble other than the spec's, and bytes after the last field are
//! errors naming the MTI, the byte offset and the field.
//!
//! Not modelled: the message header some links put before the MTI, fields 129..=192 and the
//! tertiary bitmap (in the built-in tables field 65 is an ordinary 8-byte field), and BCD
//! values holding the hex digits `A`..`F` (use `binary` data for those).

mod codec;
mod error;
mod message;
mod spec;
mod spec_toml;
#[cfg(test)]
mod tests;
mod text;

pub use error::{SpecError, SpecErrorKind};
pub use message::Message;
pub use spec::{
    BitmapEncoding, Data, FieldSpec, Length, MAX_FIELD, MtiEncoding, Pad, Prefix, Spec,
};
pub use spec_toml::MAX_SPEC_FILE;
