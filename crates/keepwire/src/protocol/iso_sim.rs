//! An acquirer simulator (`keepwire serve --protocol iso8583`): one connection's state and its
//! answers, and the `--respond FIELD=VALUE:CODE` rules that choose a response code.
//!
//! | message from the partner | answer |
//! |---|---|
//! | a request or advice (third MTI digit 0, 2 or 4: 0100, 0200, 0220, 0400, 0420, 0421, ...) outside class 8 | the response MTI (0110, 0210, 0230, 0410, 0430), the echoed fields, field 39 = the first matching rule's code or 00; on approval of an authorization or financial request (01xx, 02xx) field 38, a six-digit authorization id |
//! | 0800 / 70 = 001, sign-on | 0810, 39 = 00; signed on |
//! | 0800 / 70 = 002, sign-off | 0810, 39 = 00; then the partner is expected to close (as after a logout) |
//! | 0800 / 70 = 301, echo test | 0810, 39 = 00 (the pipeline answers these first, as heartbeats) |
//! | any other 08x0 (cutover 201, key change 161, ...) | its response, 39 = 00 |
//! | a response (third MTI digit odd) | nothing |
//! | a frame that is no message of the table | nothing; the connection closes |
//!
//! Echoed fields: 2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49 and 70 when the request has them
//! (the ISO 8583:1987 fields a response carries back in jPOS and pyiso8583 examples;
//! network-management responses echo 7, 11 and 70); 38 and 39 are the acquirer's own. Track data, PINs and
//! MACs are never echoed. `--delay` (the server's reply delay) holds every answer.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::iso_template::{
    APPROVED, Iso8583, NETWORK_CODE, SIGN_OFF, SIGN_ON, is_response_mti, mti_of, set,
};
use super::iso8583::Message;
use super::{SimAnswer, Simulator, SimulatorConfig};

/// Field 38, the authorization id response.
const AUTH_ID: u8 = 38;

/// A `--respond FIELD=VALUE:CODE` rule: a request whose field `FIELD` is `VALUE` (as the text
/// form prints it) is answered with field 39 = `CODE`.
///
/// ```
/// use keepwire::protocol::RespondRule;
/// let r: RespondRule = "4=000000009999:51".parse().unwrap();
/// assert_eq!((r.field(), r.value(), r.code()), (4, "000000009999", "51"));
/// assert_eq!(r.to_string(), "4=000000009999:51");
/// let e = "4=000000009999".parse::<RespondRule>().unwrap_err();
/// assert!(e.is_missing_code());
/// assert_eq!(
///     e.to_string(),
///     "response rule \"4=000000009999\": no ':CODE' at the end; expected FIELD=VALUE:CODE, \
///      e.g. 4=000000009999:51"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespondRule {
    field: u8,
    value: String,
    code: String,
}

impl RespondRule {
    /// The field number the rule looks at (2 ..= 128).
    pub fn field(&self) -> u8 {
        self.field
    }

    /// The value that field must have, in text form.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The response code (field 39) it answers with: two letters or digits.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Checks that the value can be field `field` under `spec`, as the text form prints it: a
    /// rule such as `4=9999:51` (field 4 is fixed at 12 digits) or `4=:51` would never match
    /// and so silently approve what it was meant to decline.
    ///
    /// # Errors
    /// [`RespondRuleError::is_bad_value`], saying why.
    ///
    /// ```
    /// use keepwire::protocol::RespondRule;
    /// use keepwire::protocol::iso8583::Spec;
    /// let ok: RespondRule = "4=000000009999:51".parse().unwrap();
    /// assert!(ok.check(&Spec::ascii()).is_ok());
    /// let short: RespondRule = "4=9999:51".parse().unwrap();
    /// let e = short.check(&Spec::ascii()).unwrap_err();
    /// assert!(e.is_bad_value());
    /// assert_eq!(
    ///     e.to_string(),
    ///     "response rule \"4=9999:51\": token 4=9999: 4 bytes; the field is fixed at 12, so \
    ///      the rule would never match; expected FIELD=VALUE:CODE, e.g. 4=000000009999:51"
    /// );
    /// ```
    pub fn check(&self, spec: &super::iso8583::Spec) -> Result<(), RespondRuleError> {
        let bad = |why: String| {
            RespondRuleError::new(&self.to_string(), RespondRuleErrorKind::BadValue(why))
        };
        let line = format!("0200 {}={}", self.field, self.value);
        let m = Message::from_text(spec, &line).map_err(|e| {
            let why = e.to_string();
            bad(why
                .strip_prefix("0200: ")
                .map_or(why.clone(), str::to_owned))
        })?;
        let printed = m.to_text(spec);
        match printed.get(&self.field.to_string()) {
            Some(v) if v == self.value => Ok(()),
            v => Err(bad(format!(
                "field {} prints as {:?}, not {:?}",
                self.field,
                v.unwrap_or_default(),
                self.value
            ))),
        }
    }

    /// Whether `pdu` (a request in text form) matches.
    fn matches(&self, pdu: &super::TextPdu) -> bool {
        let name = self.field.to_string();
        pdu.fields
            .iter()
            .any(|(n, v)| *n == name && *v == self.value)
    }
}

impl fmt::Display for RespondRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}:{}", self.field, self.value, self.code)
    }
}

/// Why a `--respond` rule did not parse; `Display` says what was seen and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RespondRuleError {
    input: String,
    kind: RespondRuleErrorKind,
}

/// What was wrong with a rule; see [`RespondRuleError::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RespondRuleErrorKind {
    /// No `:CODE` at the end.
    MissingCode,
    /// No `=` between the field and the value.
    MissingEquals,
    /// The field is not a number from 2 to 128.
    BadField(String),
    /// The code is not two ASCII letters or digits.
    BadCode(String),
    /// The value can never be the field's under the field table (wrong size, not digits in a
    /// BCD field, not how the text form prints it): the rule would never match.
    BadValue(String),
}

impl RespondRuleError {
    fn new(input: &str, kind: RespondRuleErrorKind) -> Self {
        RespondRuleError {
            input: input.to_owned(),
            kind,
        }
    }

    /// What was wrong.
    pub fn kind(&self) -> &RespondRuleErrorKind {
        &self.kind
    }

    /// No `:CODE` at the end.
    pub fn is_missing_code(&self) -> bool {
        self.kind == RespondRuleErrorKind::MissingCode
    }

    /// No `=` after the field number.
    pub fn is_missing_equals(&self) -> bool {
        self.kind == RespondRuleErrorKind::MissingEquals
    }

    /// The field number is not 2 ..= 128.
    pub fn is_bad_field(&self) -> bool {
        matches!(self.kind, RespondRuleErrorKind::BadField(_))
    }

    /// The code is not two letters or digits.
    pub fn is_bad_code(&self) -> bool {
        matches!(self.kind, RespondRuleErrorKind::BadCode(_))
    }

    /// The value does not fit the field, so the rule would never match
    /// ([`RespondRule::check`]).
    pub fn is_bad_value(&self) -> bool {
        matches!(self.kind, RespondRuleErrorKind::BadValue(_))
    }
}

impl fmt::Display for RespondRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response rule {:?}: ", self.input)?;
        match &self.kind {
            RespondRuleErrorKind::MissingCode => f.write_str("no ':CODE' at the end"),
            RespondRuleErrorKind::MissingEquals => f.write_str("no '=' after the field number"),
            RespondRuleErrorKind::BadField(n) => {
                write!(f, "field {n:?} is not a number from 2 to 128")
            }
            RespondRuleErrorKind::BadCode(c) => {
                write!(f, "response code {c:?} is not two letters or digits")
            }
            RespondRuleErrorKind::BadValue(why) => {
                write!(f, "{why}, so the rule would never match")
            }
        }?;
        f.write_str("; expected FIELD=VALUE:CODE, e.g. 4=000000009999:51")
    }
}

impl std::error::Error for RespondRuleError {}

impl FromStr for RespondRule {
    type Err = RespondRuleError;

    /// `FIELD=VALUE:CODE`, split at the first `=` and the last `:`.
    fn from_str(s: &str) -> Result<Self, RespondRuleError> {
        let err = |kind| RespondRuleError::new(s, kind);
        let (rest, code) = s
            .rsplit_once(':')
            .ok_or_else(|| err(RespondRuleErrorKind::MissingCode))?;
        let (field, value) = rest
            .split_once('=')
            .ok_or_else(|| err(RespondRuleErrorKind::MissingEquals))?;
        let n = field
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|n| (2..=128).contains(n))
            .ok_or_else(|| err(RespondRuleErrorKind::BadField(field.to_owned())))?;
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err(RespondRuleErrorKind::BadCode(code.to_owned())));
        }
        Ok(RespondRule {
            field: n,
            value: value.to_owned(),
            code: code.to_owned(),
        })
    }
}

/// One connection of the acquirer simulator.
#[derive(Debug)]
pub(crate) struct AcquirerSim {
    iso: Iso8583,
    config: SimulatorConfig,
    signed_on: bool,
}

impl AcquirerSim {
    pub(crate) fn new(iso: Iso8583, config: SimulatorConfig) -> Self {
        AcquirerSim {
            iso,
            config,
            signed_on: false,
        }
    }

    /// Field 39 for `req`: the first matching rule's code, else 00.
    fn code_for(&self, frame: &[u8]) -> Vec<u8> {
        if self.iso.rules().is_empty() {
            return APPROVED.to_vec();
        }
        let Ok(pdu) = super::Protocol::decode_text(&self.iso, frame) else {
            return APPROVED.to_vec();
        };
        self.iso
            .rules()
            .iter()
            .find(|r| r.matches(&pdu))
            .map_or_else(|| APPROVED.to_vec(), |r| r.code().as_bytes().to_vec())
    }

    fn network(&mut self, req: &Message) -> SimAnswer {
        let code = req.get(NETWORK_CODE).unwrap_or_default();
        let resp = self
            .iso
            .response_to(req, APPROVED)
            .and_then(|m| self.iso.build(&m).ok());
        let Some(resp) = resp else {
            return SimAnswer::default();
        };
        if code == SIGN_ON {
            self.signed_on = true;
        }
        if code == SIGN_OFF {
            self.signed_on = false;
            return SimAnswer::logout(resp);
        }
        SimAnswer::send(vec![resp], false)
    }
}

impl Simulator for AcquirerSim {
    fn answer(&mut self, frame: &[u8], _now: SystemTime) -> SimAnswer {
        let Some(req) = self.iso.message(frame) else {
            return SimAnswer::send(Vec::new(), true);
        };
        let mti = mti_of(&req);
        if is_response_mti(mti) {
            return SimAnswer::default();
        }
        if mti[1] == b'8' {
            return self.network(&req);
        }
        let code = self.code_for(frame);
        let Some(mut resp) = self.iso.response_to(&req, &code) else {
            return SimAnswer::default();
        };
        if code == APPROVED && matches!(mti[1], b'1' | b'2') {
            let n = self.config.next_message_id.fetch_add(1, Ordering::Relaxed);
            set(&mut resp, AUTH_ID, format!("{:06}", n % 1_000_000));
        }
        // A response that does not encode (a partner table whose echoed field the request
        // filled wrongly) closes the link rather than answering with a malformed message.
        match self.iso.build(&resp) {
            Ok(f) => SimAnswer::send(vec![f], false),
            Err(_) => SimAnswer::send(Vec::new(), true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Protocol, SimClose};

    fn sim(rules: &[&str]) -> (Iso8583, AcquirerSim) {
        let rules = rules.iter().map(|r| r.parse().unwrap()).collect();
        let iso = Iso8583::ascii().with_rules(rules);
        let s = AcquirerSim::new(iso.clone(), SimulatorConfig::default());
        (iso, s)
    }

    fn ask(iso: &Iso8583, s: &mut AcquirerSim, line: &str) -> SimAnswer {
        s.answer(&iso.encode_text(line, 0).unwrap(), SystemTime::now())
    }

    fn text(iso: &Iso8583, a: &SimAnswer) -> String {
        assert_eq!(a.frames.len(), 1, "{a:?}");
        iso.decode_text(&a.frames[0]).unwrap().to_string()
    }

    #[test]
    fn a_sale_is_approved_with_its_fields_echoed() {
        let (iso, mut s) = sim(&[]);
        let a = ask(
            &iso,
            &mut s,
            "0200 2=4111111111111111 3=000000 4=000000001000 11=000123 41=TERM0001",
        );
        assert_eq!(
            text(&iso, &a),
            "0210 2=4111111111111111 3=000000 4=000000001000 11=000123 38=000000 39=00 \
             41=TERM0001"
        );
        assert!(!a.closes());
    }

    #[test]
    fn every_request_class_gets_its_response_mti() {
        let (iso, mut s) = sim(&[]);
        for (req, resp) in [
            ("0100", "0110"),
            ("0220", "0230"),
            ("0400", "0410"),
            ("0420", "0430"),
            ("0421", "0430"),
            ("0800", "0810"),
        ] {
            let a = ask(&iso, &mut s, &format!("{req} 11=000001 70=201"));
            assert!(text(&iso, &a).starts_with(resp), "{req}");
        }
        assert!(ask(&iso, &mut s, "0210 11=000001").frames.is_empty());
    }

    #[test]
    fn rules_choose_the_response_code_first_match_wins() {
        let (iso, mut s) = sim(&["4=000000009999:51", "41=TERM0002:05", "4=000000009999:91"]);
        let a = ask(&iso, &mut s, "0200 4=000000009999 11=000001");
        assert_eq!(text(&iso, &a), "0210 4=000000009999 11=000001 39=51");
        let a = ask(&iso, &mut s, "0100 4=000000000001 11=000002 41=TERM0002");
        assert!(text(&iso, &a).contains(" 39=05 "), "{}", text(&iso, &a));
        let a = ask(&iso, &mut s, "0200 4=000000000001 11=000003");
        assert!(text(&iso, &a).ends_with(" 39=00"), "{}", text(&iso, &a));
    }

    #[test]
    fn sign_on_and_sign_off() {
        let (iso, mut s) = sim(&[]);
        let a = ask(&iso, &mut s, "0800 7=1201001500 11=000001 70=001");
        assert_eq!(text(&iso, &a), "0810 7=1201001500 11=000001 39=00 70=001");
        assert!(s.signed_on);
        let a = ask(&iso, &mut s, "0800 11=000002 70=002");
        assert_eq!(a.close, SimClose::AfterPeer);
        assert!(!s.signed_on);
    }

    #[test]
    fn garbage_closes_without_an_answer() {
        let (_, mut s) = sim(&[]);
        for f in [
            &b""[..],
            b"0200",
            b"0200ZZZZZZZZZZZZZZZZ",
            b"\xff\xff\xff\xff",
        ] {
            let a = s.answer(f, SystemTime::now());
            assert!(a.frames.is_empty() && a.close == SimClose::Now, "{f:?}");
        }
    }

    #[test]
    fn bad_rules_name_the_part() {
        for (rule, check) in [
            (
                "4=1",
                RespondRuleError::is_missing_code as fn(&RespondRuleError) -> bool,
            ),
            ("4:51", RespondRuleError::is_missing_equals),
            ("1=x:51", RespondRuleError::is_bad_field),
            ("129=x:51", RespondRuleError::is_bad_field),
            ("amount=x:51", RespondRuleError::is_bad_field),
            ("4=x:5", RespondRuleError::is_bad_code),
            ("4=x:5!", RespondRuleError::is_bad_code),
        ] {
            let e = rule.parse::<RespondRule>().unwrap_err();
            assert!(check(&e), "{rule}: {e}");
            assert!(e.to_string().contains("expected FIELD=VALUE:CODE"), "{e}");
        }
        // Values that can never be the field's are refused against the table.
        let spec = crate::protocol::iso8583::Spec::ascii();
        for rule in [
            "4=:51",
            "4=9999:51",
            "3=12345:05",
            "2=hex:41:05",
            "48=a\\x:05",
        ] {
            let r: RespondRule = rule.parse().unwrap();
            let Err(e) = r.check(&spec) else {
                panic!("{rule} passed")
            };
            assert!(e.is_bad_value(), "{rule}: {e}");
            assert!(e.to_string().contains("never match"), "{e}");
        }
        for rule in ["4=000000009999:51", "41=TERM0002:05", "48=a\\x20b:05"] {
            let r: RespondRule = rule.parse().unwrap();
            assert_eq!(r.check(&spec), Ok(()), "{rule}");
        }
        // A value may hold ':' and '='.
        let r: RespondRule = "48=a:b=c:96".parse().unwrap();
        assert_eq!((r.value(), r.code()), ("a:b=c", "96"));
    }
}
