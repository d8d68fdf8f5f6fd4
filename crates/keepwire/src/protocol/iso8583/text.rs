//! The text form of a [`Message`]: `0200 2=4111111111111111 3=000000 11=000123`.
//!
//! The MTI, then `N=value` for each field in number order. ASCII and BCD values print with
//! the escapes of the other templates (printable ASCII as itself, `\\`, `\n`, `\r`, `\t`, any
//! other byte, the space included, as `\xNN`); binary fields as `hex:` and lowercase hex.
//! Any value may be given as `hex:..` on input.

use std::collections::BTreeMap;

use super::codec::{check_value, field_spec};
use super::message::{Message, check_mti};
use super::spec::{Data, Spec};
use crate::protocol::TextPdu;
use crate::protocol::error::{PduError, PduErrorKind};
use crate::protocol::value::{escape_bytes, unescape_bytes};
use crate::text::to_hex;

impl Message {
    /// The message as a [`TextPdu`]: the MTI as the command, fields by number.
    ///
    /// ```
    /// use keepwire::protocol::iso8583::{Message, Spec};
    /// let spec = Spec::binary();
    /// let m = Message::from_text(&spec, "0200 3=000000 4=000000001000 52=hex:0123456789abcdef")
    ///     .unwrap();
    /// let text = m.to_text(&spec);
    /// assert_eq!(text.to_string(), "0200 3=000000 4=000000001000 52=hex:0123456789abcdef");
    /// assert_eq!(
    ///     text.to_json(),
    ///     r#"{"command":"0200","3":"000000","4":"000000001000","52":"hex:0123456789abcdef"}"#
    /// );
    /// ```
    pub fn to_text(&self, spec: &Spec) -> TextPdu {
        let fields = self
            .fields
            .iter()
            .map(|(n, v)| {
                let binary = spec.field(*n).is_some_and(|f| f.data == Data::Binary);
                let value = if binary {
                    format!("hex:{}", to_hex(v))
                } else {
                    escape_bytes(v)
                };
                (n.to_string(), value)
            })
            .collect();
        TextPdu {
            command: self.mti().to_owned(),
            fields,
        }
    }

    /// A message from its text line, each value checked against `spec`.
    ///
    /// # Errors
    /// [`PduError`] naming the token: a line that does not parse
    /// ([`is_syntax`](PduError::is_syntax)), an MTI that is not four digits or a value that
    /// does not fit its field ([`is_bad_value`](PduError::is_bad_value)), a field number the
    /// spec does not define or given twice ([`is_unknown_field`](PduError::is_unknown_field)).
    ///
    /// ```
    /// use keepwire::protocol::iso8583::{Message, Spec};
    /// let spec = Spec::ascii();
    /// let m = Message::from_text(&spec, "0800 7=0101120000 11=000001 70=301").unwrap();
    /// assert_eq!(m.get_str(70), Some("301"));
    /// let err = Message::from_text(&spec, "0800 11=1").unwrap_err();
    /// assert_eq!(err.to_string(), "0800: token 11=1: 1 bytes; the field is fixed at 6");
    /// ```
    pub fn from_text(spec: &Spec, line: &str) -> Result<Message, PduError> {
        let pdu: TextPdu = line.parse()?;
        Message::from_text_pdu(spec, &pdu)
    }

    /// A message from a parsed [`TextPdu`]; see [`from_text`](Message::from_text).
    ///
    /// # Errors
    /// As [`from_text`](Message::from_text).
    pub fn from_text_pdu(spec: &Spec, pdu: &TextPdu) -> Result<Message, PduError> {
        let mti = check_mti(pdu.command.as_bytes()).ok_or_else(|| {
            PduError::new(
                PduErrorKind::BadValue,
                format!(
                    "iso 8583 line starts with {:?}; expected the mti, 4 digits (0200, 0800)",
                    pdu.command
                ),
            )
        })?;
        let mti_text = pdu.command.as_str();
        let mut fields = BTreeMap::new();
        for (name, value) in &pdu.fields {
            let token = || format!("{mti_text}: token {name}={value}");
            let n = name
                .parse::<u8>()
                .ok()
                .filter(|_| name.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    PduError::new(
                        PduErrorKind::UnknownField,
                        format!("{}: {name:?} is not a field number (2 to 128)", token()),
                    )
                })?;
            super::message::check_number(n)
                .map_err(|e| PduError::new(e.kind(), format!("{}: {e}", token())))?;
            let f = field_spec(spec, mti_text, n)?;
            let bytes = unescape_bytes(name, value)?;
            check_value(f, &bytes).map_err(|why| {
                PduError::new(PduErrorKind::BadValue, format!("{}: {why}", token()))
            })?;
            if fields.insert(n, bytes::Bytes::from(bytes)).is_some() {
                return Err(PduError::new(
                    PduErrorKind::UnknownField,
                    format!("{}: field {n} given twice", token()),
                ));
            }
        }
        Ok(Message {
            mti,
            fields,
            secondary: false,
        })
    }
}
