//! The subject of a peer's certificate, as an RFC 4514 string (`CN=atm-17,O=Acquirer,C=DE`).
//!
//! A small bounds-checked DER walk over the parts of X.509 (RFC 5280 §4.1) it needs:
//!
//! ```text
//! Certificate  ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
//! TBSCertificate ::= SEQUENCE {
//!     version      [0] EXPLICIT Version DEFAULT v1,   -- tag 0xa0, optional
//!     serialNumber     INTEGER,                       -- 0x02
//!     signature        AlgorithmIdentifier,           -- 0x30
//!     issuer           Name,                          -- 0x30
//!     validity         Validity,                      -- 0x30
//!     subject          Name, ... }                    -- 0x30  <- this one
//! Name ::= SEQUENCE OF SET OF SEQUENCE { type OBJECT IDENTIFIER, value ANY }
//! ```
//!
//! RFC 4514 §2.1: "the output consists of the string encodings of each
//! RelativeDistinguishedName in the RDNSequence (according to Section 2.2), starting with
//! the last element of the sequence and moving backwards toward the first." The
//! certificate was verified by rustls before this runs; the walk still trusts no length.

use std::fmt::Write as _;

/// The longest subject string built; the rest is cut (a subject is a name, not a payload).
const MAX_SUBJECT: usize = 1024;

/// One DER element: its tag and contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits say how many length bytes follow (at most 4 here).
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    let (body, after) = rest.split_at_checked(len)?;
    Some((tag, body, after))
}

/// The element with `tag` at the start of `input`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match element(input)? {
        (t, body, after) if t == tag => Some((body, after)),
        _ => None,
    }
}

/// The subject `Name` of a DER certificate, as RFC 4514 text; `None` when the DER does not
/// have the expected shape.
pub(crate) fn subject(cert: &[u8]) -> Option<String> {
    let (cert, _) = expect(cert, 0x30)?;
    let (tbs, _) = expect(cert, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    let (_serial, rest) = expect(rest, 0x02)?;
    let (_sig, rest) = expect(rest, 0x30)?;
    let (_issuer, rest) = expect(rest, 0x30)?;
    let (_validity, rest) = expect(rest, 0x30)?;
    let (name, _) = expect(rest, 0x30)?;
    format_name(name)
}

/// RDNs printed last first, joined by `,`; attributes of one RDN joined by `+`.
fn format_name(mut name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (set, after) = expect(name, 0x31)?;
        name = after;
        let mut attrs = Vec::new();
        let mut set = set;
        while !set.is_empty() {
            let (atv, after) = expect(set, 0x30)?;
            set = after;
            let (oid, value) = expect(atv, 0x06)?;
            let (vtag, value, _) = element(value)?;
            attrs.push(format!("{}={}", oid_name(oid), value_text(vtag, value)));
        }
        rdns.push(attrs.join("+"));
    }
    rdns.reverse();
    let mut s = rdns.join(",");
    if s.len() > MAX_SUBJECT {
        let mut cut = MAX_SUBJECT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    Some(s)
}

/// RFC 4514 §3 short names for the usual attribute types, else the dotted OID.
fn oid_name(oid: &[u8]) -> String {
    let known = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return dotted(oid),
    };
    known.to_owned()
}

/// An OID's dotted-decimal form (X.690 §8.19): the first byte is 40 * a + b, then base-128
/// groups with the high bit set on all but the last byte.
fn dotted(oid: &[u8]) -> String {
    let mut out = String::new();
    let mut arc: u64 = 0;
    let mut first = true;
    for &b in oid {
        arc = arc.saturating_mul(128).saturating_add(u64::from(b & 0x7f));
        if b & 0x80 != 0 {
            continue;
        }
        if first {
            let (a, rest) = if arc < 80 {
                (arc / 40, arc % 40)
            } else {
                (2, arc - 80)
            };
            let _ = write!(out, "{a}.{rest}");
            first = false;
        } else {
            let _ = write!(out, ".{arc}");
        }
        arc = 0;
    }
    out
}

/// A string attribute value with RFC 4514 §2.4 escapes; other types as `#` and hex.
fn value_text(tag: u8, value: &[u8]) -> String {
    // UTF8String, PrintableString, TeletexString, IA5String.
    let text = matches!(tag, 0x0c | 0x13 | 0x14 | 0x16)
        .then(|| std::str::from_utf8(value).ok())
        .flatten();
    let Some(text) = text else {
        return format!("#{}", crate::text::to_hex(value));
    };
    let mut out = String::with_capacity(text.len());
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        if c == '\0' {
            out.push_str("\\00");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(dn: rcgen::DistinguishedName) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = dn;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subject_is_printed_last_rdn_first() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Acquirer, Inc");
        dn.push(rcgen::DnType::CommonName, "atm-17");
        assert_eq!(
            subject(&cert_with(dn)).as_deref(),
            Some("CN=atm-17,O=Acquirer\\, Inc,C=DE")
        );
    }

    #[test]
    fn truncated_or_garbage_der_is_none_at_every_length() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "x");
        let der = cert_with(dn);
        assert!(subject(&der).is_some());
        for cut in 0..der.len() {
            // The outer length no longer fits: never a panic, never a read past the end.
            assert_eq!(subject(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
    }

    #[test]
    fn unknown_oids_print_dotted() {
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
        assert_eq!(oid_name(&[0x55, 0x04, 0x03]), "CN");
    }
}
