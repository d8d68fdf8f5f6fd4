//! TEMPORARY stand-in for the message layer (`protocol::iso8583`) until it is merged: the
//! ASCII table's fields the template needs, nothing more. Removed at the merge.

use std::collections::BTreeMap;

use super::TextPdu;
use super::error::{PduError, PduErrorKind};

/// A field table (stand-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    binary: bool,
}

#[derive(Clone, Copy)]
enum Form {
    Fixed(usize),
    Ll(usize),
}

fn form(n: u8) -> Option<Form> {
    Some(match n {
        2 => Form::Ll(19),
        3 => Form::Fixed(6),
        4 => Form::Fixed(12),
        7 => Form::Fixed(10),
        11 => Form::Fixed(6),
        12 => Form::Fixed(6),
        13 => Form::Fixed(4),
        32 => Form::Ll(11),
        37 => Form::Fixed(12),
        38 => Form::Fixed(6),
        39 => Form::Fixed(2),
        41 => Form::Fixed(8),
        42 => Form::Fixed(15),
        49 => Form::Fixed(3),
        70 => Form::Fixed(3),
        _ => return None,
    })
}

impl Spec {
    /// ASCII bitmap.
    pub fn ascii() -> Self {
        Spec { binary: false }
    }
    /// Binary bitmap.
    pub fn binary() -> Self {
        Spec { binary: true }
    }
    /// Whether the table has field `n`.
    pub fn has(&self, n: u8) -> bool {
        form(n).is_some()
    }
}

/// A message (stand-in).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    mti: [u8; 4],
    fields: BTreeMap<u8, Vec<u8>>,
}

fn bad(why: String) -> PduError {
    PduError::new(PduErrorKind::Malformed, why)
}

impl Message {
    /// A message of this MTI.
    pub fn new(mti: [u8; 4]) -> Self {
        Message {
            mti,
            fields: BTreeMap::new(),
        }
    }
    /// The MTI.
    pub fn mti(&self) -> [u8; 4] {
        self.mti
    }
    /// Sets the MTI.
    pub fn set_mti(&mut self, mti: [u8; 4]) {
        self.mti = mti;
    }
    /// Field n.
    pub fn get(&self, n: u8) -> Option<&[u8]> {
        self.fields.get(&n).map(Vec::as_slice)
    }
    /// Sets field n.
    pub fn set(&mut self, n: u8, v: impl Into<Vec<u8>>) {
        self.fields.insert(n, v.into());
    }
    /// Decodes.
    pub fn decode(spec: &Spec, b: &[u8]) -> Result<Self, PduError> {
        let mti: [u8; 4] = b
            .get(..4)
            .and_then(|m| m.try_into().ok())
            .ok_or_else(|| PduError::new(PduErrorKind::TooShort, "no mti".to_string()))?;
        if !mti.iter().all(u8::is_ascii_digit) {
            return Err(bad("mti not digits".into()));
        }
        let mut at = 4usize;
        let mut bits = Vec::new();
        for word in 0..2 {
            if word == 1 && bits.first() != Some(&1) {
                break;
            }
            let v = if spec.binary {
                let w = b
                    .get(at..at + 8)
                    .ok_or_else(|| bad(format!("offset {at}: bitmap")))?;
                at += 8;
                u64::from_be_bytes(w.try_into().map_err(|_| bad("bitmap".into()))?)
            } else {
                let w = b
                    .get(at..at + 16)
                    .ok_or_else(|| bad(format!("offset {at}: bitmap")))?;
                at += 16;
                let s = std::str::from_utf8(w).map_err(|_| bad("bitmap".into()))?;
                u64::from_str_radix(s, 16).map_err(|_| bad(format!("bitmap {s:?}")))?
            };
            for i in 0..64u8 {
                if v & (1u64 << (63 - i)) != 0 {
                    bits.push(word * 64 + i + 1);
                }
            }
        }
        let mut fields = BTreeMap::new();
        for n in bits.into_iter().filter(|&n| n != 1 && n != 65) {
            let f = form(n).ok_or_else(|| bad(format!("offset {at}: field {n} not in table")))?;
            let len = match f {
                Form::Fixed(l) => l,
                Form::Ll(max) => {
                    let d = b
                        .get(at..at + 2)
                        .ok_or_else(|| bad(format!("field {n}: len")))?;
                    at += 2;
                    let l: usize = std::str::from_utf8(d)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad(format!("field {n}: len")))?;
                    if l > max {
                        return Err(bad(format!("field {n}: too long")));
                    }
                    l
                }
            };
            let v = b
                .get(at..at + len)
                .ok_or_else(|| bad(format!("offset {at}: field {n} truncated")))?;
            at += len;
            fields.insert(n, v.to_vec());
        }
        if at != b.len() {
            return Err(bad(format!("offset {at}: trailing bytes")));
        }
        Ok(Message { mti, fields })
    }
    /// Encodes.
    pub fn encode(&self, spec: &Spec) -> Result<Vec<u8>, PduError> {
        let mut out = self.mti.to_vec();
        let secondary = self.fields.keys().any(|&n| n > 64);
        let mut words = [0u64; 2];
        if secondary {
            words[0] |= 1 << 63;
        }
        for &n in self.fields.keys() {
            let i = u32::from(n - 1);
            words[(i / 64) as usize] |= 1u64 << (63 - (i % 64));
        }
        for (k, w) in words.iter().enumerate() {
            if k == 1 && !secondary {
                break;
            }
            if spec.binary {
                out.extend(w.to_be_bytes());
            } else {
                out.extend(format!("{w:016X}").bytes());
            }
        }
        for (&n, v) in &self.fields {
            match form(n).ok_or_else(|| bad(format!("field {n} not in table")))? {
                Form::Fixed(l) if v.len() != l => {
                    return Err(PduError::new(
                        PduErrorKind::BadValue,
                        format!("field {n}: {} chars, expected {l}", v.len()),
                    ));
                }
                Form::Fixed(_) => {}
                Form::Ll(max) if v.len() > max => {
                    return Err(PduError::new(PduErrorKind::BadValue, format!("field {n}")));
                }
                Form::Ll(_) => out.extend(format!("{:02}", v.len()).bytes()),
            }
            out.extend(v);
        }
        Ok(out)
    }
    /// Text form.
    pub fn to_text(&self) -> TextPdu {
        TextPdu {
            command: String::from_utf8_lossy(&self.mti).into_owned(),
            fields: self
                .fields
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
        }
    }
    /// From the text form.
    pub fn from_text(line: &str) -> Result<Self, PduError> {
        let pdu: TextPdu = line.parse()?;
        let mti: [u8; 4] = pdu
            .command
            .as_bytes()
            .try_into()
            .map_err(|_| PduError::new(PduErrorKind::UnknownCommand, "mti".to_string()))?;
        let mut m = Message::new(mti);
        for (k, v) in pdu.fields {
            let n: u8 = k
                .parse()
                .map_err(|_| PduError::new(PduErrorKind::UnknownField, format!("field {k}")))?;
            m.set(n, v.into_bytes());
        }
        Ok(m)
    }
}
