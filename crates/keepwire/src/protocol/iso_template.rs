//! The ISO 8583 template: a field table ([`Spec`]) turned into a [`Protocol`], so the server,
//! the clients and the CLI drive bank links as they drive SMPP and CMPP.
//!
//! | piece | ISO 8583 |
//! |---|---|
//! | framing | `len:ascii:4` (jPOS `ASCIIChannel`: 4 ASCII digits, not counting themselves); `--framing len:be:2` or `len:bcd:2` for other links |
//! | heartbeat | 0800 with field 70 = 301 (echo test), answered by 0810 with 39 = 00 and the request's fields mirrored (7, 11, 41, 70 among them, so the key matches) ([`NetworkEcho`]) |
//! | correlation | the response MTI (the request's + 10: 0200 → 0210, 0421 → 0430), field 11 (STAN) and field 41 (terminal id) when present |
//! | session | sign-on 0800 / 70 = 001 and sign-off 0800 / 70 = 002, when asked (`--sign-on`) |
//! | numbering | a request without field 11 gets the STAN of its sequence number: 000001 .. 999999, then 000001 again (unless the table has no field 11) |
//! | partner's requests | a network-management request (08x0) gets its response with 39 = 00; others go to the caller |
//!
//! A response is the request MTI with its third digit ("function": 0 request, 2 advice, 4
//! notification) plus one and the repeat bit of its fourth digit ("origin": 1 acquirer
//! repeat, 3 issuer repeat) cleared, as jPOS `ISOMsg.setResponseMTI` does. Frames are the
//! message without its length header: the MTI, the bitmaps, the fields.
//!
//! ```
//! use keepwire::protocol::{Protocol, Template};
//! let iso = Template::Iso8583.protocol();
//! assert_eq!(iso.framing().to_string(), "len:ascii:4");
//! // No field 11: the sequence number 7 becomes STAN 000007.
//! let req = iso.encode_text("0200 3=000000 4=000000001000 41=TERM0001", 7).unwrap();
//! assert_eq!(iso.sequence(&req), Some(7));
//! let resp = iso.encode_text("0210 3=000000 4=000000001000 11=000007 39=00 41=TERM0001", 0).unwrap();
//! assert!(iso.is_response(&resp));
//! assert_eq!(iso.response_key(&resp), iso.request_key(&req));
//! assert_eq!(&iso.request_key(&req).unwrap()[..], b"0210000007TERM0001");
//! ```

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::error::{LoginError, LoginErrorKind, PduError};
use super::iso8583::{Message, MtiEncoding, Spec};
use super::time::Civil;
use super::{
    Account, BindMode, PartnerAuth, Protocol, Simulator, SimulatorConfig, Template, TextPdu,
};
use crate::frame::{DEFAULT_MAX, FramingSpec, LengthEncoding, LengthSpec};
use crate::liveness::{Beat, Heartbeat};

/// Field 11, the system trace audit number.
pub(crate) const STAN: u8 = 11;
/// Field 7, transmission date and time (MMDDhhmmss).
pub(crate) const TRANSMISSION_TIME: u8 = 7;
/// Field 39, the response code.
pub(crate) const RESPONSE_CODE: u8 = 39;
/// Field 41, the card acceptor terminal id.
pub(crate) const TERMINAL: u8 = 41;
/// Field 70, the network management information code.
pub(crate) const NETWORK_CODE: u8 = 70;
/// Field 70 of a sign-on (ISO 8583:1987 network management codes as jPOS and eqto/iso8583
/// use them: 001 sign-on, 002 sign-off, 201 cutover, 301 echo test).
pub(crate) const SIGN_ON: &[u8] = b"001";
/// Field 70 of a sign-off.
pub(crate) const SIGN_OFF: &[u8] = b"002";
/// Field 70 of an echo test, the heartbeat.
pub(crate) const ECHO_TEST: &[u8] = b"301";
/// Field 39 "approved / completed successfully".
pub(crate) const APPROVED: &[u8] = b"00";
/// The largest STAN: field 11 is six decimal digits.
const MAX_STAN: u32 = Iso8583::MAX_STAN;
/// See [`Iso8583::PING_STAN_BASE`].
const PING_STAN_BASE: u32 = Iso8583::PING_STAN_BASE;

/// The STAN of the `seq`-th request of a link: 1 ..= [`MAX_STAN`], then 1 again; `None` for 0
/// (no number).
fn stan_of(seq: u32) -> Option<u32> {
    let n = seq.checked_sub(1)?;
    Some(n % MAX_STAN + 1)
}

/// The ISO 8583 template over a field table. See the module doc of
/// [`protocol`](super) and [`Iso8583::new`].
#[derive(Debug, Clone)]
pub struct Iso8583 {
    spec: Arc<Spec>,
    rules: Arc<[super::RespondRule]>,
}

impl Iso8583 {
    /// The largest STAN: field 11 is six decimal digits.
    pub const MAX_STAN: u32 = 999_999;

    /// The STANs of this template's own heartbeat pings: `PING_STAN_BASE + n % 100000` for
    /// the n-th ping, apart from the STANs a link's requests start with (000001, ...): hosts
    /// that refuse a STAN seen twice within a while see distinct ones.
    pub const PING_STAN_BASE: u32 = 900_000;

    /// Checks that `spec` takes the values the template writes itself: where the table
    /// defines field 7 (ten digits), 11 (STAN, six digits), 38 (six digits), 39 (two
    /// characters) or 70 (three digits), an 0810 echo-test answer with them must encode.
    /// Fields the table leaves out are dropped, as the template does (a table without 70 has
    /// no echo test: run its links with heartbeats off). A table that fails would have the
    /// link ping empty frames.
    ///
    /// # Errors
    /// [`PduError::is_bad_value`], naming the field and what it takes.
    ///
    /// ```
    /// use keepwire::protocol::Iso8583;
    /// use keepwire::protocol::iso8583::Spec;
    /// assert!(Iso8583::check_spec(&Spec::ascii()).is_ok());
    /// let wide_stan = Spec::from_toml("[field.11]\nmax = 12\n").unwrap();
    /// let e = Iso8583::check_spec(&wide_stan).unwrap_err();
    /// assert_eq!(e.to_string(), "0810: field 11: 6 bytes; the field is fixed at 12");
    /// ```
    pub fn check_spec(spec: &Spec) -> Result<(), PduError> {
        let iso = Iso8583::new(spec.clone());
        let mut m = Message::new("0810")?;
        m.set(TRANSMISSION_TIME, &b"0101000000"[..])?;
        m.set(STAN, &b"000001"[..])?;
        m.set(38, &b"000001"[..])?;
        m.set(RESPONSE_CODE, APPROVED)?;
        m.set(NETWORK_CODE, ECHO_TEST)?;
        iso.build(&m).map(|_| ())
    }

    /// The template over `spec` (the built-in `ascii` or `binary` table, or a partner's from a
    /// TOML file), framed `len:ascii:4`. Check a partner's table with
    /// [`check_spec`](Iso8583::check_spec) first: the template's own messages must fit it.
    ///
    /// ```
    /// use keepwire::protocol::{Iso8583, Protocol, Template};
    /// let iso = Iso8583::ascii();
    /// assert_eq!(iso.template(), Template::Iso8583);
    /// ```
    pub fn new(spec: Spec) -> Self {
        Iso8583 {
            spec: Arc::new(spec),
            rules: Arc::from(Vec::new()),
        }
    }

    /// The template over the built-in ASCII table (bitmap as 16 hex characters).
    pub fn ascii() -> Self {
        Iso8583::new(Spec::ascii())
    }

    /// The simulator's response-code rules (`--respond 4=000000009999:51`): the first rule
    /// whose field and value a request carries sets its response's field 39.
    #[must_use]
    pub fn with_rules(mut self, rules: Vec<super::RespondRule>) -> Self {
        self.rules = Arc::from(rules);
        self
    }

    /// The field table.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The simulator's rules.
    pub fn rules(&self) -> &[super::RespondRule] {
        &self.rules
    }

    /// The STAN of the `seq`-th request: 1 ..= 999999, then 1 again; `None` for 0 (no
    /// number).
    ///
    /// ```
    /// use keepwire::protocol::Iso8583;
    /// assert_eq!(Iso8583::stan(1), Some(1));
    /// assert_eq!(Iso8583::stan(999_999), Some(999_999));
    /// assert_eq!(Iso8583::stan(1_000_001), Some(2));
    /// assert_eq!(Iso8583::stan(0), None);
    /// ```
    pub fn stan(seq: u32) -> Option<u32> {
        stan_of(seq)
    }

    /// A frame decoded; `None` when it is no message of the table.
    pub(crate) fn message(&self, frame: &[u8]) -> Option<Message> {
        Message::decode(&self.spec, frame).ok()
    }

    /// The MTI of a frame without decoding the rest (four ASCII digits or two BCD bytes, as
    /// the table says); `None` when the frame does not start with one.
    pub(crate) fn peek_mti(&self, frame: &[u8]) -> Option<[u8; 4]> {
        let mti: [u8; 4] = match self.spec.mti_encoding() {
            MtiEncoding::Bcd => {
                let [a, b] = <[u8; 2]>::try_from(frame.get(..2)?).ok()?;
                [a >> 4, a & 0xf, b >> 4, b & 0xf].map(|d| d.wrapping_add(b'0'))
            }
            _ => <[u8; 4]>::try_from(frame.get(..4)?).ok()?,
        };
        mti.iter().all(u8::is_ascii_digit).then_some(mti)
    }

    /// `m` encoded, leaving out the fields the table does not have (a partner's table may
    /// lack field 7 or 39; the message is still sent).
    pub(crate) fn build(&self, m: &Message) -> Result<Bytes, PduError> {
        let mut out = m.clone();
        for (n, _) in m.fields() {
            if self.spec.field(n).is_none() {
                out.remove(n);
            }
        }
        out.encode(&self.spec)
    }

    /// A network-management request 0800 with field 70 = `code`, STAN `stan`, field 7 at
    /// `now`.
    pub(crate) fn network(&self, code: &[u8], stan: u32, now: SystemTime) -> Bytes {
        let Some(mut m) = message_of(*b"0800") else {
            return Bytes::new();
        };
        set(&mut m, TRANSMISSION_TIME, Civil::utc(now).mmddhhmmss());
        set(&mut m, STAN, format!("{stan:06}"));
        set(&mut m, NETWORK_CODE, code.to_vec());
        self.build(&m).unwrap_or_default()
    }

    /// The response to `req` with field 39 = `code`: the response MTI, the fields of
    /// [`ECHOED`] that `req` carries, field 39. `None` when `req` is itself a response.
    pub(crate) fn response_to(&self, req: &Message, code: &[u8]) -> Option<Message> {
        let mut m = message_of(response_mti(mti_of(req))?)?;
        for n in ECHOED {
            if let Some(v) = req.get(n) {
                set(&mut m, n, v.to_vec());
            }
        }
        set(&mut m, RESPONSE_CODE, code.to_vec());
        Some(m)
    }
}

/// An empty message of `mti`; `None` unless it is four digits.
pub(crate) fn message_of(mti: [u8; 4]) -> Option<Message> {
    Message::new(std::str::from_utf8(&mti).ok()?).ok()
}

/// Sets field `n`; the numbers used here are all in 2..=128, so this cannot fail.
pub(crate) fn set(m: &mut Message, n: u8, value: impl Into<Bytes>) {
    let _ = m.set(n, value);
}

/// A decoded message's MTI as four ASCII digits.
pub(crate) fn mti_of(m: &Message) -> [u8; 4] {
    <[u8; 4]>::try_from(m.mti().as_bytes()).unwrap_or(*b"0000")
}

/// The fields a response echoes from its request: those of the ISO 8583:1987 table a
/// response carries back (2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70); 38 and 39 are
/// the responder's own. Track data, PINs and MACs (35, 52, 64, ...) are never echoed.
pub(crate) const ECHOED: [u8; 13] = [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70];

/// Whether an MTI is a response (third digit odd: 1 request response, 3 advice response, 5
/// notification acknowledgement).
pub(crate) fn is_response_mti(mti: [u8; 4]) -> bool {
    mti[2] % 2 == 1
}

/// The response MTI of a request MTI: third digit + 1, repeat bit of the fourth cleared
/// (0200 → 0210, 0420 and 0421 → 0430, 0800 → 0810). `None` for a response or non-digits.
///
/// ```
/// # // Tested through the public key: the response MTI leads it.
/// use keepwire::protocol::Template;
/// let iso = Template::Iso8583.protocol();
/// let repeat = iso.encode_text("0421 11=000009", 0).unwrap();
/// assert!(iso.request_key(&repeat).unwrap().starts_with(b"0430"));
/// ```
pub(crate) fn response_mti(mti: [u8; 4]) -> Option<[u8; 4]> {
    if !mti.iter().all(u8::is_ascii_digit) || is_response_mti(mti) {
        return None;
    }
    let [a, b, c, d] = mti;
    // c is an even digit, so c + 1 is a digit; clearing bit 0 of an ASCII digit keeps it one.
    Some([a, b, c + 1, d & !1])
}

/// The key `mti` + field 11 + field 41 when present.
fn key(mti: [u8; 4], m: &Message) -> Option<Bytes> {
    let stan = m.get(STAN)?;
    let mut k = Vec::with_capacity(4 + stan.len() + 8);
    k.extend_from_slice(&mti);
    k.extend_from_slice(stan);
    if let Some(t) = m.get(TERMINAL) {
        k.extend_from_slice(t);
    }
    Some(Bytes::from(k))
}

/// Field 11 as a number.
fn stan_field(m: &Message) -> Option<u32> {
    let s = std::str::from_utf8(m.get(STAN)?).ok()?;
    s.trim().parse().ok()
}

/// Field 39's meaning for the common codes (wording varies by network).
pub(crate) fn code_meaning(code: &[u8]) -> &'static str {
    match code {
        b"00" => "approved",
        b"05" => "do not honor",
        b"51" => "insufficient funds",
        b"91" => "issuer or switch inoperative",
        b"96" => "system malfunction",
        _ => "see the partner's code table",
    }
}

impl Protocol for Iso8583 {
    fn template(&self) -> Template {
        Template::Iso8583
    }

    fn framing(&self) -> FramingSpec {
        FramingSpec::Length(LengthSpec {
            encoding: LengthEncoding::Ascii,
            width: 4,
            incl: false,
            skip: 0,
            adj: 0,
            max: DEFAULT_MAX,
        })
    }

    fn heartbeat(&self) -> Arc<dyn Heartbeat> {
        Arc::new(NetworkEcho { iso: self.clone() })
    }

    fn sequence(&self, frame: &[u8]) -> Option<u32> {
        stan_field(&self.message(frame)?)
    }

    /// Field 11 set to `seq` as six digits (a `seq` above 999 999 wraps as
    /// [`Iso8583::stan`] numbers); the rest of the message is re-encoded unchanged, so the
    /// request and its response keep matching under the new STAN. `None` for a frame that
    /// does not decode or a table whose field 11 does not take six digits.
    fn with_sequence(&self, frame: &[u8], seq: u32) -> Option<Bytes> {
        let stan = if seq > MAX_STAN { stan_of(seq)? } else { seq };
        let mut m = self.message(frame)?;
        m.set(STAN, format!("{stan:06}")).ok()?;
        m.encode(&self.spec).ok()
    }

    fn with_key(&self, frame: &[u8], key: &[u8]) -> Option<Bytes> {
        let stan = key
            .get(4..10)
            .filter(|s| s.iter().all(u8::is_ascii_digit))?;
        let seq = std::str::from_utf8(stan).ok()?.parse().ok()?;
        let out = self.with_sequence(frame, seq)?;
        let got = if self.is_response(&out) {
            self.response_key(&out)
        } else {
            self.request_key(&out)
        };
        (got.as_deref() == Some(key)).then_some(out)
    }

    fn is_success(&self, response: &[u8]) -> bool {
        self.message(response)
            .is_some_and(|m| m.get(RESPONSE_CODE) == Some(APPROVED))
    }

    fn is_response(&self, frame: &[u8]) -> bool {
        self.peek_mti(frame).is_some_and(is_response_mti)
    }

    /// An 0800 with field 70 = 001 or 002; only 0800s are decoded.
    fn is_session_request(&self, frame: &[u8]) -> bool {
        if self.peek_mti(frame) != Some(*b"0800") {
            return false;
        }
        self.message(frame)
            .is_some_and(|m| matches!(m.get(NETWORK_CODE), Some(SIGN_ON | SIGN_OFF)))
    }

    fn decode_text(&self, frame: &[u8]) -> Result<TextPdu, PduError> {
        Ok(Message::decode(&self.spec, frame)?.to_text(&self.spec))
    }

    /// A text line into a message; a line without field 11 gets the STAN of `seq` (none when
    /// `seq` is 0, so decoded text encodes back byte for byte).
    /// Every ISO 8583 value is a string: `70=301` and `11=000001` alike.
    fn json_number(&self, _name: &str) -> bool {
        false
    }

    fn encode_text(&self, line: &str, seq: u32) -> Result<Bytes, PduError> {
        let mut m = Message::from_text(&self.spec, line)?;
        // A partner table without field 11 has no STAN to number.
        if m.get(STAN).is_none() && self.spec.field(STAN).is_some() {
            if let Some(stan) = stan_of(seq) {
                m.set(STAN, format!("{stan:06}"))?;
            }
        }
        m.encode(&self.spec)
    }

    /// The sign-on: 0800 with field 70 = 001, field 7 at `now`, the STAN of `seq`. The account
    /// is not part of an ISO 8583 sign-on.
    fn login(&self, _account: &Account, _bind: BindMode, seq: u32, now: SystemTime) -> Bytes {
        self.network(SIGN_ON, stan_of(seq).unwrap_or(1), now)
    }

    fn check_login(
        &self,
        _account: &Account,
        login: &[u8],
        response: &[u8],
    ) -> Result<PartnerAuth, LoginError> {
        let not = |why: String| LoginError::new(LoginErrorKind::NotAResponse, why);
        let m = Message::decode(&self.spec, response)
            .map_err(|e| not(format!("sign-on answer does not decode: {e}")))?;
        let answers = match (self.request_key(login), self.response_key(response)) {
            (Some(asked), Some(answered)) => asked == answered,
            _ => false,
        };
        if !answers {
            return Err(not(format!(
                "sign-on answered by mti {} stan {:?}; expected 0810 with the sign-on's stan",
                m.mti(),
                m.get(STAN).map(String::from_utf8_lossy)
            )));
        }
        match m.get(RESPONSE_CODE) {
            Some(APPROVED) => Ok(PartnerAuth::NotInProtocol),
            code => {
                let code = code.unwrap_or_default();
                let status = std::str::from_utf8(code)
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(u32::MAX);
                Err(LoginError::new(
                    LoginErrorKind::Refused { status },
                    format!(
                        "sign-on refused: field 39 = {:?} ({}); expected 00",
                        String::from_utf8_lossy(code),
                        code_meaning(code)
                    ),
                ))
            }
        }
    }

    /// The sign-off: 0800 with field 70 = 002.
    fn logout(&self, seq: u32) -> Bytes {
        self.network(SIGN_OFF, stan_of(seq).unwrap_or(1), SystemTime::now())
    }

    /// A network-management request from the partner (0800 sign-on, cutover, key change;
    /// 0820) gets its response with field 39 = 00 and the echoed fields (7, 11, 41, 70 ..)
    /// mirrored; anything
    /// else is the caller's.
    fn client_answer(&self, frame: &[u8]) -> Option<Bytes> {
        if self.peek_mti(frame)?.get(1) != Some(&b'8') {
            return None;
        }
        let m = self.message(frame)?;
        let resp = self.response_to(&m, APPROVED)?;
        self.build(&resp).ok()
    }

    fn simulator(&self, config: &SimulatorConfig) -> Box<dyn Simulator> {
        Box::new(super::iso_sim::AcquirerSim::new(
            self.clone(),
            config.clone(),
        ))
    }

    /// The response's MTI, field 11, field 41 when present.
    fn response_key(&self, frame: &[u8]) -> Option<Bytes> {
        if !is_response_mti(self.peek_mti(frame)?) {
            return None;
        }
        let m = self.message(frame)?;
        key(mti_of(&m), &m)
    }

    /// The response MTI the request expects (its own + 10), field 11, field 41 when present.
    fn request_key(&self, frame: &[u8]) -> Option<Bytes> {
        let mti = response_mti(self.peek_mti(frame)?)?;
        key(mti, &self.message(frame)?)
    }
}

/// ISO 8583 heartbeats: the echo test. Ping: 0800 with field 7 (now), field 11 (a STAN
/// from [`Iso8583::PING_STAN_BASE`]) and field 70 = 301; pong: 0810 mirroring the fields a
/// response echoes (7, 11, 41, 70 among them, so it answers under the ping's key), with
/// 39 = 00.
///
/// | frame | beat |
/// |---|---|
/// | 0800, field 70 = 301 (any STAN: the partner's pings too) | ping, answered by the pipeline |
/// | 0810, field 70 = 301 | pong, never answered |
/// | anything else | data |
///
/// The pong is the one the pipeline takes against the oldest ping outstanding, whatever its
/// STAN (a partner that does not mirror field 11 still proves it is alive). A client refuses
/// to send an 0800 / 301 as a request: it is the link's heartbeat.
///
/// ```
/// use keepwire::liveness::{Beat, Heartbeat};
/// use keepwire::protocol::{Iso8583, NetworkEcho};
/// let hb = NetworkEcho::new(Iso8583::ascii());
/// let ping = hb.ping(1);
/// assert_eq!(hb.classify(&ping), Some(Beat::Ping));
/// let pong = hb.pong(&ping);
/// assert_eq!(hb.classify(&pong), Some(Beat::Pong));
/// assert!(pong.starts_with(b"0810"));
/// ```
#[derive(Debug, Clone)]
pub struct NetworkEcho {
    iso: Iso8583,
}

impl NetworkEcho {
    /// The echo test of `iso`'s field table.
    pub fn new(iso: Iso8583) -> Self {
        NetworkEcho { iso }
    }
}

impl Heartbeat for NetworkEcho {
    fn classify(&self, frame: &[u8]) -> Option<Beat> {
        // Every data frame passes here: decode only network-management messages.
        let mti = self.iso.peek_mti(frame)?;
        if !matches!(&mti, b"0800" | b"0810") {
            return None;
        }
        let m = self.iso.message(frame)?;
        if m.get(NETWORK_CODE) != Some(ECHO_TEST) {
            return None;
        }
        match &mti {
            b"0800" => Some(Beat::Ping),
            b"0810" => Some(Beat::Pong),
            _ => None,
        }
    }

    fn ping(&self, seq: u32) -> Bytes {
        let stan = PING_STAN_BASE + seq % (MAX_STAN + 1 - PING_STAN_BASE);
        self.iso.network(ECHO_TEST, stan, SystemTime::now())
    }

    fn pong(&self, ping: &[u8]) -> Bytes {
        // The response every other request gets (the echoed fields, 41 among them), so the
        // pong answers under the ping's key (response MTI, STAN, terminal id).
        let resp = self
            .iso
            .message(ping)
            .and_then(|req| self.iso.response_to(&req, APPROVED));
        let Some(mut resp) = resp.or_else(|| message_of(*b"0810")) else {
            return Bytes::new();
        };
        set(&mut resp, RESPONSE_CODE, APPROVED.to_vec());
        set(&mut resp, NETWORK_CODE, ECHO_TEST.to_vec());
        self.iso.build(&resp).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_mtis() {
        for (req, resp) in [
            (b"0100", Some(b"0110")),
            (b"0200", Some(b"0210")),
            (b"0220", Some(b"0230")),
            (b"0400", Some(b"0410")),
            (b"0420", Some(b"0430")),
            (b"0421", Some(b"0430")),
            (b"0800", Some(b"0810")),
            (b"0210", None),
            (b"0x00", None),
        ] {
            assert_eq!(response_mti(*req), resp.copied(), "{req:?}");
        }
    }

    #[test]
    fn stans_wrap_after_999999() {
        assert_eq!(stan_of(999_999), Some(999_999));
        assert_eq!(stan_of(1_000_000), Some(1));
        assert_eq!(stan_of(u32::MAX), Some((u32::MAX - 1) % MAX_STAN + 1));
        let hb = NetworkEcho::new(Iso8583::ascii());
        for seq in [0, 1, 99_999, 100_000, u32::MAX] {
            let ping = hb.ping(seq);
            let s = stan_field(&Message::decode(&Spec::ascii(), &ping).unwrap()).unwrap();
            assert!((PING_STAN_BASE..=MAX_STAN).contains(&s), "{seq}: {s}");
        }
    }

    #[test]
    fn the_pong_mirrors_the_partners_ping() {
        let iso = Iso8583::ascii();
        let hb = NetworkEcho::new(iso.clone());
        let ping = iso
            .encode_text("0800 7=1201001500 11=000005 70=301", 0)
            .unwrap();
        assert_eq!(hb.classify(&ping), Some(Beat::Ping));
        let pong = hb.pong(&ping);
        assert_eq!(hb.classify(&pong), Some(Beat::Pong));
        assert_eq!(
            iso.decode_text(&pong).unwrap().to_string(),
            "0810 7=1201001500 11=000005 39=00 70=301"
        );
        for other in [
            "0800 11=000001 70=001",
            "0810 11=000001 70=001",
            "0200 11=000001",
        ] {
            let f = iso.encode_text(other, 0).unwrap();
            assert_eq!(hb.classify(&f), None, "{other}");
        }
    }

    /// An echo test carrying a terminal id (or an acquirer id) was answered by the heartbeat
    /// pipeline with 7 and 11 only: its key lacked field 41, so a sender matching on the
    /// key (`send --heartbeat off "0800 70=301 41=.."`) waited out its timeout.
    #[test]
    fn the_pong_answers_under_the_pings_key() {
        let iso = Iso8583::ascii();
        let hb = NetworkEcho::new(iso.clone());
        let ping = iso
            .encode_text("0800 7=1201001500 11=000005 32=12345 41=TERM0001 70=301", 0)
            .unwrap();
        let pong = hb.pong(&ping);
        assert_eq!(hb.classify(&pong), Some(Beat::Pong));
        assert_eq!(iso.response_key(&pong), iso.request_key(&ping));
        assert_eq!(
            iso.decode_text(&pong).unwrap().to_string(),
            "0810 7=1201001500 11=000005 32=12345 39=00 41=TERM0001 70=301"
        );
    }

    /// A partner table whose field 7 or 11 is wider than the template writes made every ping
    /// an empty frame (`0000` on the wire). Such tables are refused up front, naming the
    /// field; a table that leaves a field out is not (captures of links without one decode).
    #[test]
    fn a_table_that_cannot_carry_the_echo_test_is_refused() {
        for (toml, want) in [
            (
                "[field.7]\nmax = 12\n",
                "0810: field 7: 10 bytes; the field is fixed at 12",
            ),
            (
                "[field.11]\nmax = 12\n",
                "0810: field 11: 6 bytes; the field is fixed at 12",
            ),
            (
                "[field.70]\nmax = 4\n",
                "0810: field 70: 3 bytes; the field is fixed at 4",
            ),
        ] {
            let spec = Spec::from_toml(toml).unwrap();
            let e = Iso8583::check_spec(&spec).unwrap_err();
            assert_eq!(e.to_string(), want);
        }
        // Leaving a field out is fine: the template drops what the table has not.
        for toml in ["[field.7]\nremove = true\n", "[field.70]\nremove = true\n"] {
            let spec = Spec::from_toml(toml).unwrap();
            assert_eq!(Iso8583::check_spec(&spec), Ok(()), "{toml}");
            let ping = NetworkEcho::new(Iso8583::new(spec)).ping(1);
            assert!(ping.starts_with(b"0800"), "{toml}");
        }
        assert_eq!(Iso8583::check_spec(&Spec::binary()), Ok(()));
    }

    /// A partner table without field 11 refused every line ("field 11 is not in the spec"):
    /// the STAN numbering added a field the table cannot carry.
    #[test]
    fn a_table_without_field_11_encodes_without_a_stan() {
        let spec = Spec::from_toml("[field.11]\nremove = true\n").unwrap();
        let iso = Iso8583::new(spec);
        let f = iso.encode_text("0200 3=000000", 5).unwrap();
        assert_eq!(iso.decode_text(&f).unwrap().to_string(), "0200 3=000000");
        assert_eq!(iso.request_key(&f), None);
    }

    #[test]
    fn keys_need_the_response_mti_and_stan() {
        let iso = Iso8583::ascii();
        let req = iso.encode_text("0200 4=000000001000", 3).unwrap();
        let wrong_mti = iso.encode_text("0110 11=000003", 0).unwrap();
        let right = iso.encode_text("0210 11=000003 39=00", 0).unwrap();
        assert_ne!(iso.response_key(&wrong_mti), iso.request_key(&req));
        assert_eq!(iso.response_key(&right), iso.request_key(&req));
        assert_eq!(iso.response_key(&req), None, "a request answers nothing");
        let no_stan = iso.encode_text("0200 4=000000001000", 0).unwrap();
        assert_eq!(iso.request_key(&no_stan), None);
        assert_eq!(iso.response_key(b"garbage"), None);
    }

    /// A gateway rewrites colliding STANs of two terminals: field 11 changes, nothing else,
    /// the simulator's answer to the rewritten request carries its key, and the original
    /// key written back into that answer matches the original request.
    #[test]
    fn with_sequence_rewrites_the_stan_and_keys_follow() {
        let iso = Iso8583::ascii();
        let req = iso
            .encode_text("0200 4=000000001000 11=000007 41=TERM0001", 0)
            .unwrap();
        let up = iso.with_sequence(&req, 42).unwrap();
        assert_eq!(iso.sequence(&up), Some(42));
        assert_eq!(up.len(), req.len());
        let differ = req.iter().zip(up.iter()).filter(|(a, b)| a != b).count();
        assert!(differ <= 6, "{differ} bytes differ");
        assert_eq!(&iso.request_key(&up).unwrap()[..], b"0210000042TERM0001");
        let mut sim = iso.simulator(&SimulatorConfig::default());
        let answer = sim.answer(&up, SystemTime::now());
        let resp = answer.frames.first().cloned().unwrap();
        assert_eq!(iso.response_key(&resp), iso.request_key(&up));
        // Back to the client's own STAN, through the key as the proxy holds it.
        let own = iso.request_key(&req).unwrap();
        let down = iso.with_key(&resp, &own).unwrap();
        assert_eq!(iso.response_key(&down), Some(own.clone()));
        assert_eq!(iso.with_key(&up, &own).unwrap(), req);
        // Wraps like the STANs encode_text assigns; no STAN is zero-padded past six digits.
        let wrapped = iso.with_sequence(&req, Iso8583::MAX_STAN + 1).unwrap();
        assert_eq!(iso.sequence(&wrapped), Some(1));
        // A key of another terminal or MTI, a 4-byte key, garbage: no rewrite.
        assert_eq!(iso.with_key(&req, b"0210000042TERM0002"), None);
        assert_eq!(iso.with_key(&req, b"0410000042TERM0001"), None);
        assert_eq!(iso.with_key(&req, &7u32.to_be_bytes()), None);
        assert_eq!(iso.with_sequence(b"0200zz", 1), None);
    }

    #[test]
    fn sign_on_refused_names_field_39() {
        let iso = Iso8583::ascii();
        let a: Account = "x:y".parse().unwrap();
        let now = SystemTime::now();
        let login = iso.login(&a, BindMode::default(), 4, now);
        let ok = iso.client_answer(&login).unwrap();
        assert_eq!(
            iso.check_login(&a, &login, &ok).unwrap(),
            PartnerAuth::NotInProtocol
        );
        let m = Message::decode(&Spec::ascii(), &login).unwrap();
        let mut no = iso.response_to(&m, b"91").unwrap();
        no.set(STAN, "000004").unwrap();
        let no = iso.build(&no).unwrap();
        let e = iso.check_login(&a, &login, &no).unwrap_err();
        assert!(e.is_refused());
        assert_eq!(e.status(), Some(91));
        assert_eq!(
            e.to_string(),
            "sign-on refused: field 39 = \"91\" (issuer or switch inoperative); expected 00"
        );
        let other = iso.encode_text("0810 11=000005 39=00", 0).unwrap();
        assert!(
            iso.check_login(&a, &login, &other)
                .unwrap_err()
                .is_not_a_response()
        );
    }

    #[test]
    fn only_network_management_is_answered_by_a_client() {
        let iso = Iso8583::ascii();
        let cutover = iso.encode_text("0800 11=000077 70=201", 0).unwrap();
        let a = iso
            .decode_text(&iso.client_answer(&cutover).unwrap())
            .unwrap();
        assert_eq!(a.to_string(), "0810 11=000077 39=00 70=201");
        let sale = iso.encode_text("0200 11=000077", 0).unwrap();
        assert_eq!(iso.client_answer(&sale), None);
        assert_eq!(iso.client_answer(&a.to_string().into_bytes()), None);
    }

    #[test]
    fn hostile_frames_never_panic() {
        let iso = Iso8583::ascii();
        let hb = iso.heartbeat();
        for f in [
            &b""[..],
            b"08",
            b"0800",
            b"0800\xff\xff",
            b"\x00\x08",
            b"08000000000000000000",
        ] {
            let _ = iso.decode_text(f);
            let _ = iso.response_key(f);
            let _ = iso.request_key(f);
            let _ = iso.client_answer(f);
            let _ = hb.classify(f);
            let _ = hb.pong(f);
        }
    }
}
