//! PDU bodies as tables of fields, and the one walker that decodes and encodes them.
//!
//! Every SMPP and CMPP body is a sequence of a few field kinds: big-endian integers,
//! NUL-terminated strings with a maximum size, fixed-width octet strings padded with NULs, a
//! message with a one-byte length before it, a count and that many fixed-width entries, and
//! (SMPP) optional TLVs. A command is a table of them ([`Field`]); [`decode_body`] turns the
//! bytes into `field=value` text pairs and [`encode_body`] the pairs back into bytes, both in
//! table order. Fields whose value equals the table's default are left out of the text, and
//! take that default when encoding, so `encode(decode(b)) == b` for every body that decodes.

use std::collections::HashMap;

use super::error::{PduError, PduErrorKind};
use super::value::{bad, escape_bytes, escape_ucs2, parse_number, unescape_bytes, unescape_ucs2};
use crate::text::{from_hex, to_hex};

/// The data coding that makes a message body UCS-2 (SMPP data_coding, CMPP Msg_Fmt).
pub(crate) const UCS2: u64 = 8;

/// How one field is laid out on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// One byte.
    U8,
    /// Four bytes, big-endian.
    U32,
    /// Eight bytes, big-endian.
    U64,
    /// One byte, the message body's coding: 8 makes the following body UCS-2.
    Coding,
    /// One byte, CMPP Registered_Delivery: 1 makes a DELIVER body a status report.
    Registered,
    /// NUL-terminated, at most this many bytes with the NUL (SMPP `C n`).
    CStr(usize),
    /// Exactly this many bytes, right-padded with NULs; the text drops trailing NULs.
    Octets(usize),
    /// Exactly this many bytes, as lowercase hex (authenticators).
    Hex(usize),
    /// One byte counting the entries of the next field, which is a `Repeat`; not in the text.
    Count,
    /// Entries of this width (octet strings), as many as the `Count` before says; the text
    /// repeats the field once per entry.
    Repeat(usize),
    /// One length byte, then that many bytes of message (UCS-2 after a `Coding` of 8).
    Msg,
    /// A `Msg` that is a status report laid out by this table when the `Registered` before
    /// it is 1 and its length is the table's size (CMPP DELIVER).
    Content(&'static [Field]),
    /// The rest of the body: SMPP TLVs, tag 2 bytes, length 2 bytes, value; text
    /// `tlv.0xTTTT=value`.
    Tlvs,
}

/// One field of a body table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// The value (in text form) a missing field takes, and that the text leaves out.
    pub(crate) default: &'static str,
    /// Print the field even when it has its default value.
    pub(crate) always: bool,
}

/// A field with the empty default (0 for numbers).
pub(crate) const fn f(name: &'static str, kind: Kind) -> Field {
    let default = match kind {
        Kind::U8 | Kind::U32 | Kind::U64 | Kind::Coding | Kind::Registered | Kind::Count => "0",
        _ => "",
    };
    Field {
        name,
        kind,
        default,
        always: false,
    }
}

impl Field {
    /// This default instead.
    pub(crate) const fn def(mut self, default: &'static str) -> Self {
        self.default = default;
        self
    }

    /// Always printed.
    pub(crate) const fn always(mut self) -> Self {
        self.always = true;
        self
    }
}

/// A command's body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schema {
    pub(crate) fields: &'static [Field],
    /// The body may be absent altogether (SMPP responses carrying an error status; CMPP
    /// ACTIVE_TEST_RESP from peers that omit its reserved byte).
    pub(crate) optional_body: bool,
}

/// The walk's memory of earlier fields.
#[derive(Debug, Default)]
struct State {
    ucs2: bool,
    registered: u64,
    count: usize,
}

/// Bounds-checked reads over a body, with errors naming the command, wire offset and field.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The wire offset of `buf[0]`.
    base: usize,
    command: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self, field: &str, what: &str) -> PduError {
        let off = self.base.saturating_add(self.pos);
        PduError::new(
            PduErrorKind::Malformed,
            format!("{} at offset {off}: {field}: {what}", self.command),
        )
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], PduError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.err(
                field,
                &format!("needs {n} bytes, {} left", self.remaining()),
            )),
        }
    }

    fn uint(&mut self, n: usize, field: &str) -> Result<u64, PduError> {
        let bytes = self.take(n, field)?;
        Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn cstr(&mut self, max: usize, field: &str) -> Result<&'a [u8], PduError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let window = rest.get(..max).unwrap_or(rest);
        match window.iter().position(|&b| b == 0) {
            Some(n) => {
                let s = rest.get(..n).unwrap_or_default();
                self.pos += n + 1;
                Ok(s)
            }
            None => Err(self.err(
                field,
                &format!(
                    "c-string not terminated within {} bytes (at most {max})",
                    window.len()
                ),
            )),
        }
    }
}

/// Decodes `body` (wire offset `base`) by `schema` into `out`.
///
/// # Errors
/// A field that does not fit, or bytes left after the last field.
pub(crate) fn decode_body(
    command: &str,
    schema: Schema,
    body: &[u8],
    base: usize,
    out: &mut Vec<(String, String)>,
) -> Result<(), PduError> {
    if body.is_empty() && schema.optional_body {
        return Ok(());
    }
    let mut r = Reader {
        buf: body,
        pos: 0,
        base,
        command,
    };
    let mut st = State::default();
    for (i, field) in schema.fields.iter().enumerate() {
        let force = field.always || (i == 0 && schema.optional_body);
        decode_field(&mut r, &mut st, field, force, out)?;
    }
    if r.remaining() > 0 {
        let n = r.remaining();
        return Err(r.err("end", &format!("{n} bytes after the last field")));
    }
    Ok(())
}

fn push(out: &mut Vec<(String, String)>, field: &Field, text: String, force: bool) {
    if force || text != field.default {
        out.push((field.name.to_owned(), text));
    }
}

fn decode_field(
    r: &mut Reader<'_>,
    st: &mut State,
    field: &Field,
    force: bool,
    out: &mut Vec<(String, String)>,
) -> Result<(), PduError> {
    let name = field.name;
    let text = match field.kind {
        Kind::U8 => r.uint(1, name)?.to_string(),
        Kind::U32 => r.uint(4, name)?.to_string(),
        Kind::U64 => r.uint(8, name)?.to_string(),
        Kind::Coding => {
            let v = r.uint(1, name)?;
            st.ucs2 = v == UCS2;
            v.to_string()
        }
        Kind::Registered => {
            let v = r.uint(1, name)?;
            st.registered = v;
            v.to_string()
        }
        Kind::CStr(max) => escape_bytes(r.cstr(max, name)?),
        Kind::Octets(n) => escape_bytes(trim_nuls(r.take(n, name)?)),
        Kind::Hex(n) => to_hex(r.take(n, name)?),
        Kind::Count => {
            st.count = usize::try_from(r.uint(1, name)?).unwrap_or(0);
            return Ok(());
        }
        Kind::Repeat(w) => {
            for _ in 0..st.count {
                let entry = escape_bytes(trim_nuls(r.take(w, name)?));
                out.push((name.to_owned(), entry));
            }
            return Ok(());
        }
        Kind::Msg => message_text(r, st, name)?,
        Kind::Content(report) => return decode_content(r, st, field, report, out),
        Kind::Tlvs => return decode_tlvs(r, out),
    };
    push(out, field, text, force);
    Ok(())
}

fn message_text(r: &mut Reader<'_>, st: &State, name: &str) -> Result<String, PduError> {
    let len = usize::from(r.take(1, name)?.first().copied().unwrap_or(0));
    let body = r.take(len, name)?;
    Ok(if st.ucs2 {
        escape_ucs2(body)
    } else {
        escape_bytes(body)
    })
}

fn decode_content(
    r: &mut Reader<'_>,
    st: &mut State,
    field: &Field,
    report: &'static [Field],
    out: &mut Vec<(String, String)>,
) -> Result<(), PduError> {
    let len_at = r.pos;
    let len = usize::from(r.take(1, field.name)?.first().copied().unwrap_or(0));
    if st.registered == 1 && len == fixed_size(report) {
        let body = r.take(len, field.name)?;
        let mut sub = Reader {
            buf: body,
            pos: 0,
            base: r.base.saturating_add(len_at).saturating_add(1),
            command: r.command,
        };
        let mut sub_state = State::default();
        for f in report {
            decode_field(&mut sub, &mut sub_state, f, false, out)?;
        }
        return Ok(());
    }
    r.pos = len_at;
    let text = message_text(r, st, field.name)?;
    // Registered 1 without a report-sized body: print it even empty, or the encoder would
    // build a report in its place.
    push(out, field, text, st.registered == 1);
    Ok(())
}

fn decode_tlvs(r: &mut Reader<'_>, out: &mut Vec<(String, String)>) -> Result<(), PduError> {
    while r.remaining() > 0 {
        let tag = r.uint(2, "tlv tag")?;
        let name = format!("tlv.0x{tag:04x}");
        let len = r.uint(2, &name)?;
        let value = r.take(usize::try_from(len).unwrap_or(usize::MAX), &name)?;
        out.push((name, escape_bytes(value)));
    }
    Ok(())
}

/// The wire size of a table of fixed-width fields (0 if one is variable).
pub(crate) fn fixed_size(fields: &[Field]) -> usize {
    fields
        .iter()
        .map(|f| match f.kind {
            Kind::U8 | Kind::Coding | Kind::Registered => 1,
            Kind::U32 => 4,
            Kind::U64 => 8,
            Kind::Octets(n) | Kind::Hex(n) => n,
            _ => 0,
        })
        .sum()
}

fn trim_nuls(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
    b.get(..end).unwrap_or(b)
}

/// The values of a text line, checked against a table.
struct Values<'a> {
    map: HashMap<&'a str, Vec<&'a str>>,
    tlvs: Vec<(&'a str, &'a str)>,
}

impl<'a> Values<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.map.get(name).and_then(|v| v.first().copied())
    }

    fn all(&self, name: &str) -> &[&'a str] {
        self.map.get(name).map(Vec::as_slice).unwrap_or_default()
    }
}

/// The field names a table accepts, for error messages.
fn valid_names(header: &[&str], schema: Schema) -> Vec<String> {
    let mut names: Vec<String> = header.iter().map(|s| (*s).to_owned()).collect();
    for f in schema.fields {
        match f.kind {
            Kind::Count => {}
            Kind::Tlvs => names.push("tlv.0xTTTT".to_owned()),
            Kind::Content(report) => {
                names.push(f.name.to_owned());
                names.extend(report.iter().map(|r| r.name.to_owned()));
            }
            _ => names.push(f.name.to_owned()),
        }
    }
    names
}

fn check_names<'a>(
    command: &str,
    header: &[&str],
    schema: Schema,
    fields: &'a [(String, String)],
) -> Result<Values<'a>, PduError> {
    let valid = valid_names(header, schema);
    let has_tlvs = schema.fields.iter().any(|f| matches!(f.kind, Kind::Tlvs));
    let repeats = |n: &str| {
        schema
            .fields
            .iter()
            .any(|f| f.name == n && matches!(f.kind, Kind::Repeat(_)))
    };
    let mut values = Values {
        map: HashMap::new(),
        tlvs: Vec::new(),
    };
    let mut seen_header: Vec<&str> = Vec::new();
    for (name, value) in fields {
        if header.contains(&name.as_str()) {
            if seen_header.contains(&name.as_str()) {
                return Err(PduError::new(
                    PduErrorKind::UnknownField,
                    format!("{command}: field {name} given twice"),
                ));
            }
            seen_header.push(name);
            continue;
        }
        if has_tlvs && name.starts_with("tlv.") {
            values.tlvs.push((name, value));
            continue;
        }
        if !valid.iter().any(|v| v == name) {
            return Err(PduError::new(
                PduErrorKind::UnknownField,
                format!(
                    "{command}: unknown field {name:?}; valid fields: {}",
                    valid.join(", ")
                ),
            ));
        }
        let entry = values.map.entry(name).or_default();
        if !entry.is_empty() && !repeats(name) {
            return Err(PduError::new(
                PduErrorKind::UnknownField,
                format!("{command}: field {name} given twice"),
            ));
        }
        entry.push(value);
    }
    Ok(values)
}

/// Encodes the body of `command` by `schema` from text pairs (header names in `header` are
/// skipped) into `out`.
///
/// # Errors
/// An unknown or repeated field (naming the valid ones), or a value that does not fit.
pub(crate) fn encode_body(
    command: &str,
    header: &[&str],
    schema: Schema,
    fields: &[(String, String)],
    out: &mut Vec<u8>,
) -> Result<(), PduError> {
    let values = check_names(command, header, schema, fields)?;
    if schema.optional_body && values.map.is_empty() && values.tlvs.is_empty() {
        return Ok(());
    }
    let mut st = State::default();
    for (i, field) in schema.fields.iter().enumerate() {
        let next = schema.fields.get(i + 1);
        encode_field(&values, &mut st, field, next, out)?;
    }
    Ok(())
}

fn encode_field(
    values: &Values<'_>,
    st: &mut State,
    field: &Field,
    next: Option<&Field>,
    out: &mut Vec<u8>,
) -> Result<(), PduError> {
    let name = field.name;
    let value = values.get(name).unwrap_or(field.default);
    match field.kind {
        Kind::U8 => out.push(number_u8(name, value)?),
        Kind::Coding => {
            let v = number_u8(name, value)?;
            st.ucs2 = u64::from(v) == UCS2;
            out.push(v);
        }
        Kind::Registered => {
            let v = number_u8(name, value)?;
            st.registered = u64::from(v);
            out.push(v);
        }
        Kind::U32 => {
            let v = parse_number(name, value, u64::from(u32::MAX))?;
            out.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_be_bytes());
        }
        Kind::U64 => out.extend_from_slice(&parse_number(name, value, u64::MAX)?.to_be_bytes()),
        Kind::CStr(max) => encode_cstr(name, value, max, out)?,
        Kind::Octets(n) => encode_octets(name, value, n, out)?,
        Kind::Hex(n) => encode_hex(name, value, n, out)?,
        Kind::Count => {
            let entries = next.map_or(0, |n| values.all(n.name).len());
            let count = u8::try_from(entries)
                .map_err(|_| bad(name, &entries.to_string(), "more than 255 entries"))?;
            out.push(count);
        }
        Kind::Repeat(w) => {
            for v in values.all(name) {
                encode_octets(name, v, w, out)?;
            }
        }
        Kind::Msg => encode_msg(name, value, st.ucs2, out)?,
        Kind::Content(report) => encode_content(values, st, field, report, out)?,
        Kind::Tlvs => encode_tlvs(values, out)?,
    }
    Ok(())
}

fn number_u8(name: &str, value: &str) -> Result<u8, PduError> {
    let v = parse_number(name, value, u64::from(u8::MAX))?;
    u8::try_from(v).map_err(|_| bad(name, value, "above 255"))
}

fn encode_cstr(name: &str, value: &str, max: usize, out: &mut Vec<u8>) -> Result<(), PduError> {
    let bytes = unescape_bytes(name, value)?;
    if bytes.contains(&0) {
        return Err(bad(name, value, "a c-string cannot hold a NUL byte"));
    }
    if bytes.len() >= max {
        let why = format!(
            "{} bytes, at most {} (c-string of {max} with its NUL)",
            bytes.len(),
            max.saturating_sub(1)
        );
        return Err(bad(name, value, &why));
    }
    out.extend_from_slice(&bytes);
    out.push(0);
    Ok(())
}

fn encode_octets(name: &str, value: &str, n: usize, out: &mut Vec<u8>) -> Result<(), PduError> {
    let bytes = unescape_bytes(name, value)?;
    if bytes.len() > n {
        let why = format!("{} bytes, at most {n}", bytes.len());
        return Err(bad(name, value, &why));
    }
    out.extend_from_slice(&bytes);
    out.resize(out.len() + (n - bytes.len()), 0);
    Ok(())
}

fn encode_hex(name: &str, value: &str, n: usize, out: &mut Vec<u8>) -> Result<(), PduError> {
    if value.is_empty() {
        out.resize(out.len() + n, 0);
        return Ok(());
    }
    let bytes = from_hex(value).map_err(|e| bad(name, value, &e.to_string()))?;
    if bytes.len() != n {
        let why = format!("{} bytes of hex, expected {n}", bytes.len());
        return Err(bad(name, value, &why));
    }
    out.extend_from_slice(&bytes);
    Ok(())
}

fn encode_msg(name: &str, value: &str, ucs2: bool, out: &mut Vec<u8>) -> Result<(), PduError> {
    let bytes = if ucs2 {
        unescape_ucs2(name, value)?
    } else {
        unescape_bytes(name, value)?
    };
    let len = u8::try_from(bytes.len())
        .map_err(|_| bad(name, value, &format!("{} bytes, at most 255", bytes.len())))?;
    out.push(len);
    out.extend_from_slice(&bytes);
    Ok(())
}

fn encode_content(
    values: &Values<'_>,
    st: &mut State,
    field: &Field,
    report: &'static [Field],
    out: &mut Vec<u8>,
) -> Result<(), PduError> {
    let any_report = report.iter().any(|f| values.get(f.name).is_some());
    let content = values.get(field.name);
    if st.registered == 1 && (any_report || content.is_none()) {
        if content.is_some() {
            let why = "give either the message or the report fields, not both";
            return Err(bad(field.name, content.unwrap_or_default(), why));
        }
        let mut body = Vec::with_capacity(fixed_size(report));
        let mut sub = State::default();
        for f in report {
            encode_field(values, &mut sub, f, None, &mut body)?;
        }
        out.push(u8::try_from(body.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&body);
        return Ok(());
    }
    if any_report {
        let why = "report fields need registered_delivery=1";
        return Err(bad(field.name, content.unwrap_or_default(), why));
    }
    encode_msg(field.name, content.unwrap_or(field.default), st.ucs2, out)
}

fn encode_tlvs(values: &Values<'_>, out: &mut Vec<u8>) -> Result<(), PduError> {
    for (name, value) in &values.tlvs {
        let tag = name
            .strip_prefix("tlv.0x")
            .filter(|h| h.len() == 4)
            .and_then(|h| u16::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad(name, value, "a tlv is named tlv.0xTTTT, 4 hex digits"))?;
        let bytes = unescape_bytes(name, value)?;
        let len = u16::try_from(bytes.len())
            .map_err(|_| bad(name, value, "a tlv value is at most 65535 bytes"))?;
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    Ok(())
}
