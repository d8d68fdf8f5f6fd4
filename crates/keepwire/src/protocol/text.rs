//! [`TextPdu`] as one line and as one JSON object.
//!
//! The line is the command name, then ` field=value` pairs: values never hold whitespace
//! (see the escapes in the module doc of [`protocol`](super)), so splitting at whitespace and
//! then at the first `=` of each token reads it back.

use std::fmt;
use std::str::FromStr;

use super::TextPdu;
use super::error::{PduError, PduErrorKind};

impl fmt::Display for TextPdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.command)?;
        for (name, value) in &self.fields {
            write!(f, " {name}={value}")?;
        }
        Ok(())
    }
}

impl FromStr for TextPdu {
    type Err = PduError;

    /// Reads a line: `command field=value ...`.
    ///
    /// # Errors
    /// An empty line, a command name holding `=`, or a token without `=`.
    fn from_str(line: &str) -> Result<Self, PduError> {
        let mut tokens = line.split_whitespace();
        let Some(command) = tokens.next() else {
            return Err(PduError::new(
                PduErrorKind::Syntax,
                "empty pdu line; expected a command name then field=value pairs",
            ));
        };
        if command.contains('=') {
            return Err(PduError::new(
                PduErrorKind::Syntax,
                format!("pdu line starts with {command:?}; expected a command name first"),
            ));
        }
        let mut fields = Vec::new();
        for token in tokens {
            let Some((name, value)) = token.split_once('=') else {
                return Err(PduError::new(
                    PduErrorKind::Syntax,
                    format!("{command}: token {token:?} has no '='; expected field=value"),
                ));
            };
            if name.is_empty() {
                return Err(PduError::new(
                    PduErrorKind::Syntax,
                    format!("{command}: token {token:?} has no field name before '='"),
                ));
            }
            fields.push((name.to_owned(), value.to_owned()));
        }
        Ok(TextPdu {
            command: command.to_owned(),
            fields,
        })
    }
}

impl TextPdu {
    /// The value of field `name` (the first, if it repeats).
    ///
    /// ```
    /// use keepwire::protocol::TextPdu;
    /// let pdu: TextPdu = "submit_sm seq=2 short_message=hi".parse().unwrap();
    /// assert_eq!(pdu.get("short_message"), Some("hi"));
    /// assert_eq!(pdu.get("data_coding"), None);
    /// ```
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The PDU as one JSON object: `"command"`, then each field. Values are the text form's
    /// (escapes included) as JSON strings, except numbers of plain decimal digits, which are
    /// JSON numbers; a field that repeats (CMPP `dest_terminal_id`, a TLV tag given twice)
    /// is one array under its first position. This is
    /// [`to_json_with`](TextPdu::to_json_with) with every field numeric, the SMPP and CMPP
    /// convention; a template whose fields are all strings (ISO 8583) uses
    /// [`Protocol::json_number`](super::Protocol::json_number) instead.
    ///
    /// ```
    /// use keepwire::protocol::TextPdu;
    /// let pdu: TextPdu = "submit seq=7 dest_terminal_id=1 dest_terminal_id=2 msg_content=a\"b"
    ///     .parse()
    ///     .unwrap();
    /// assert_eq!(
    ///     pdu.to_json(),
    ///     r#"{"command":"submit","seq":7,"dest_terminal_id":[1,2],"msg_content":"a\"b"}"#
    /// );
    /// ```
    pub fn to_json(&self) -> String {
        self.to_json_with(|_| true)
    }

    /// The PDU as one JSON object, as [`to_json`](TextPdu::to_json), but a value is a JSON
    /// number only when `numeric` says its field is one (and the value is plain decimal
    /// digits); every other value is a JSON string, so a field's JSON type never depends on
    /// its value.
    ///
    /// ```
    /// use keepwire::protocol::TextPdu;
    /// let pdu: TextPdu = "0800 11=000001 70=301".parse().unwrap();
    /// assert_eq!(pdu.to_json_with(|_| false), r#"{"command":"0800","11":"000001","70":"301"}"#);
    /// ```
    pub fn to_json_with(&self, numeric: impl Fn(&str) -> bool) -> String {
        let mut s = String::from("{\"command\":");
        json_string(&mut s, &self.command);
        for (i, (name, _)) in self.fields.iter().enumerate() {
            let earlier = self.fields.get(..i).unwrap_or_default();
            if earlier.iter().any(|(n, _)| n == name) || name == "command" {
                continue;
            }
            s.push(',');
            json_string(&mut s, name);
            s.push(':');
            let number = numeric(name);
            let all: Vec<&str> = self
                .fields
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            match all.as_slice() {
                [one] => json_value(&mut s, one, number),
                many => {
                    s.push('[');
                    for (j, v) in many.iter().enumerate() {
                        if j > 0 {
                            s.push(',');
                        }
                        json_value(&mut s, v, number);
                    }
                    s.push(']');
                }
            }
        }
        s.push('}');
        s
    }
}

fn json_value(s: &mut String, v: &str, numeric: bool) {
    let plain_number = numeric
        && !v.is_empty()
        && v.len() <= 15
        && v.bytes().all(|b| b.is_ascii_digit())
        && (v == "0" || !v.starts_with('0'));
    if plain_number {
        s.push_str(v);
    } else {
        json_string(s, v);
    }
}

fn json_string(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                s.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trip() {
        let line = "submit_sm seq=2 source_addr=10086 short_message=a\\x20b tlv.0x0424=x";
        let pdu: TextPdu = line.parse().unwrap();
        assert_eq!(pdu.command, "submit_sm");
        assert_eq!(pdu.fields.len(), 4);
        assert_eq!(pdu.to_string(), line);
        assert_eq!(pdu.get("source_addr"), Some("10086"));
    }

    #[test]
    fn bad_lines() {
        assert!("".parse::<TextPdu>().unwrap_err().is_syntax());
        assert!("  ".parse::<TextPdu>().unwrap_err().is_syntax());
        assert!("seq=1".parse::<TextPdu>().unwrap_err().is_syntax());
        let e = "submit_sm seq".parse::<TextPdu>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "submit_sm: token \"seq\" has no '='; expected field=value"
        );
        assert!("submit_sm =1".parse::<TextPdu>().is_err());
    }

    #[test]
    fn json_escapes_and_numbers() {
        let pdu = TextPdu {
            command: "x".into(),
            fields: vec![
                ("a".into(), "007".into()),
                ("b".into(), "\u{1}\"\\".into()),
                ("c".into(), "0".into()),
                ("d".into(), "99999999999999999999".into()),
            ],
        };
        assert_eq!(
            pdu.to_json(),
            r#"{"command":"x","a":"007","b":"\u0001\"\\","c":0,"d":"99999999999999999999"}"#
        );
    }
}
