//! [`Message`]: an MTI and fields 2..=128, by number.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::spec::MAX_FIELD;
use crate::protocol::error::{PduError, PduErrorKind};

/// One ISO 8583 message: the MTI and fields 2..=128 by number. Field 1 (the secondary bitmap)
/// is not stored: [`encode`](Message::encode) writes it when a field above 64 is present (or
/// when [`set_secondary_bitmap`](Message::set_secondary_bitmap) asks for it always).
///
/// Values are the field's content as the text form shows it: the characters of an ASCII
/// field, the digits (as ASCII, without the pad nibble) of a BCD field, the raw bytes of a
/// binary field. Their lengths are checked against a [`Spec`](super::Spec) when encoding.
///
/// ```
/// use keepwire::protocol::iso8583::{Message, Spec};
/// let spec = Spec::ascii();
/// let mut m = Message::new("0800").unwrap();
/// m.set(7, "0101120000").unwrap();
/// m.set(11, "000001").unwrap();
/// m.set(70, "301").unwrap();
/// let wire = m.encode(&spec).unwrap();
/// assert_eq!(
///     &wire[..],
///     b"0800822000000000000004000000000000000101120000000001301"
/// );
/// let back = Message::decode(&spec, &wire).unwrap();
/// assert_eq!(back, m);
/// assert_eq!(back.mti(), "0800");
/// assert_eq!(back.get_str(70), Some("301"));
/// assert_eq!(back.get(39), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub(crate) mti: [u8; 4],
    pub(crate) fields: BTreeMap<u8, Bytes>,
    pub(crate) secondary: bool,
}

/// Whether `mti` is four ASCII digits.
pub(crate) fn check_mti(mti: &[u8]) -> Option<[u8; 4]> {
    let m: [u8; 4] = mti.try_into().ok()?;
    m.iter().all(u8::is_ascii_digit).then_some(m)
}

impl Message {
    /// An empty message of type `mti` (four digits, `"0200"`).
    ///
    /// # Errors
    /// [`PduError::is_bad_value`] when `mti` is not four ASCII digits.
    pub fn new(mti: &str) -> Result<Message, PduError> {
        let mti = mti_from(mti)?;
        Ok(Message {
            mti,
            fields: BTreeMap::new(),
            secondary: false,
        })
    }

    /// The message type indicator, four digits (`"0200"`).
    pub fn mti(&self) -> &str {
        // Four ASCII digits by construction.
        std::str::from_utf8(&self.mti).unwrap_or("0000")
    }

    /// Changes the message type (`"0210"`).
    ///
    /// # Errors
    /// [`PduError::is_bad_value`] when `mti` is not four ASCII digits.
    pub fn set_mti(&mut self, mti: &str) -> Result<(), PduError> {
        self.mti = mti_from(mti)?;
        Ok(())
    }

    /// Field `n`'s value, `None` when absent.
    pub fn get(&self, n: u8) -> Option<&[u8]> {
        self.fields.get(&n).map(|b| &b[..])
    }

    /// Field `n`'s value as text, `None` when absent or not UTF-8.
    pub fn get_str(&self, n: u8) -> Option<&str> {
        self.get(n).and_then(|b| std::str::from_utf8(b).ok())
    }

    /// Sets field `n` (2..=128), replacing any value it had. Lengths and digits are checked
    /// against the spec when encoding.
    ///
    /// # Errors
    /// [`PduError::is_unknown_field`] for field numbers outside 2..=128 (field 1, the
    /// secondary bitmap, is derived).
    pub fn set(&mut self, n: u8, value: impl Into<Bytes>) -> Result<(), PduError> {
        check_number(n)?;
        self.fields.insert(n, value.into());
        Ok(())
    }

    /// Removes field `n`, returning its value.
    pub fn remove(&mut self, n: u8) -> Option<Bytes> {
        self.fields.remove(&n)
    }

    /// The fields present, in number order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &[u8])> + '_ {
        self.fields.iter().map(|(n, v)| (*n, &v[..]))
    }

    /// Whether [`encode`](Message::encode) writes a secondary bitmap: a field above 64 is
    /// present, or [`set_secondary_bitmap`](Message::set_secondary_bitmap) asked for one.
    pub fn has_secondary_bitmap(&self) -> bool {
        self.secondary || self.fields.keys().any(|&n| n > 64)
    }

    /// Always write the secondary bitmap, even with no field above 64 (some partners do;
    /// [`decode`](Message::decode) sets this when it reads one that is all zero, so the
    /// message encodes back byte for byte).
    pub fn set_secondary_bitmap(&mut self, always: bool) {
        self.secondary = always;
    }
}

fn mti_from(mti: &str) -> Result<[u8; 4], PduError> {
    check_mti(mti.as_bytes()).ok_or_else(|| {
        PduError::new(
            PduErrorKind::BadValue,
            format!("iso 8583 mti {mti:?}: expected 4 digits (0200, 0800)"),
        )
    })
}

pub(crate) fn check_number(n: u8) -> Result<(), PduError> {
    if n == 1 {
        return Err(PduError::new(
            PduErrorKind::UnknownField,
            "iso 8583 field 1 is the secondary bitmap: derived from the fields present, not set",
        ));
    }
    if !(2..=MAX_FIELD).contains(&n) {
        return Err(PduError::new(
            PduErrorKind::UnknownField,
            format!("iso 8583 field {n}: fields run from 2 to 128"),
        ));
    }
    Ok(())
}
