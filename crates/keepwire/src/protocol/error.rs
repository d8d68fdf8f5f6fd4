//! [`PduError`] and [`LoginError`]: a PDU or text line that does not convert, and a login
//! the partner refused or answered wrongly.

use std::fmt;

/// A PDU that does not decode, or a text line that does not encode.
///
/// `Display` is one lowercase line naming the command, the wire offset (counting the 4-byte
/// length field, as the specification's tables do) and the field:
///
/// ```
/// use keepwire::protocol::Template;
/// let smpp = Template::Smpp.protocol();
/// // submit_sm whose body stops inside service_type.
/// let frame = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x01CMT";
/// let err = smpp.decode_text(frame).unwrap_err();
/// assert!(err.is_malformed());
/// assert_eq!(
///     err.to_string(),
///     "submit_sm at offset 16: service_type: c-string not terminated within 3 bytes (at most 6)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PduError {
    /// One lowercase line naming the field and its offset, or the text token.
    pub message: String,
    kind: PduErrorKind,
}

/// Which kind of [`PduError`]; see [`PduError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PduErrorKind {
    /// A frame shorter than the protocol's header (after the length field).
    TooShort,
    /// A field that does not decode: a C-string without its NUL, a length past the end,
    /// trailing bytes.
    Malformed,
    /// A text line that does not parse: no command, a token without `=`, a bad escape.
    Syntax,
    /// A command name the template does not know.
    UnknownCommand,
    /// A field name the command does not have, or a field given twice.
    UnknownField,
    /// A field value that does not fit: a number out of range, a string too long.
    BadValue,
}

impl PduError {
    pub(crate) fn new(kind: PduErrorKind, message: impl Into<String>) -> Self {
        PduError {
            message: message.into(),
            kind,
        }
    }

    /// Which kind of error this is.
    pub fn kind(&self) -> PduErrorKind {
        self.kind
    }

    /// A frame shorter than the header.
    pub fn is_too_short(&self) -> bool {
        self.kind == PduErrorKind::TooShort
    }

    /// A field of a frame that does not decode.
    pub fn is_malformed(&self) -> bool {
        self.kind == PduErrorKind::Malformed
    }

    /// A text line that does not parse.
    pub fn is_syntax(&self) -> bool {
        self.kind == PduErrorKind::Syntax
    }

    /// A command name the template does not know.
    pub fn is_unknown_command(&self) -> bool {
        self.kind == PduErrorKind::UnknownCommand
    }

    /// A field name the command does not have (or given twice).
    pub fn is_unknown_field(&self) -> bool {
        self.kind == PduErrorKind::UnknownField
    }

    /// A field value that does not fit its field.
    pub fn is_bad_value(&self) -> bool {
        self.kind == PduErrorKind::BadValue
    }
}

impl fmt::Display for PduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PduError {}

/// The partner refused a login, or answered it wrongly.
///
/// ```
/// use keepwire::protocol::{Account, BindMode, Template};
/// use std::time::SystemTime;
/// let smpp = Template::Smpp.protocol();
/// let account: Account = "test:secret".parse().unwrap();
/// let login = smpp.login(&account, BindMode::Transceiver, 1, SystemTime::now());
/// // bind_transceiver_resp, status 0x0e, seq 1, no body.
/// let resp = b"\x80\x00\x00\x09\x00\x00\x00\x0e\x00\x00\x00\x01";
/// let err = smpp.check_login(&account, &login, resp).unwrap_err();
/// assert!(err.is_refused());
/// assert_eq!(err.status(), Some(0x0e));
/// assert_eq!(err.to_string(), "bind refused: status 0x0000000e (ESME_RINVPASWD)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginError {
    /// One lowercase line naming the partner's status (`bind refused: ESME_RINVPASWD (0x0e)`).
    pub message: String,
    kind: LoginErrorKind,
}

/// Which kind of [`LoginError`]; see [`LoginError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginErrorKind {
    /// The partner answered with a non-zero status.
    Refused {
        /// The status it sent.
        status: u32,
    },
    /// CMPP: status 0, but AuthenticatorISMG is not MD5(Status + AuthenticatorSource + secret):
    /// the partner does not know our secret.
    BadAuthenticator,
    /// The answer is not the login's response (another command, another sequence number,
    /// or it does not decode).
    NotAResponse,
    /// The account does not fit the protocol's fields (too long an id or secret).
    BadAccount,
}

impl LoginError {
    pub(crate) fn new(kind: LoginErrorKind, message: impl Into<String>) -> Self {
        LoginError {
            message: message.into(),
            kind,
        }
    }

    /// Which kind of error this is.
    pub fn kind(&self) -> LoginErrorKind {
        self.kind
    }

    /// The partner refused the login with a status.
    pub fn is_refused(&self) -> bool {
        matches!(self.kind, LoginErrorKind::Refused { .. })
    }

    /// CMPP: the ISMG's authenticator is wrong.
    pub fn is_bad_authenticator(&self) -> bool {
        self.kind == LoginErrorKind::BadAuthenticator
    }

    /// The answer was not the login's response.
    pub fn is_not_a_response(&self) -> bool {
        self.kind == LoginErrorKind::NotAResponse
    }

    /// The account does not fit the protocol.
    pub fn is_bad_account(&self) -> bool {
        self.kind == LoginErrorKind::BadAccount
    }

    /// The partner's status, when it refused.
    pub fn status(&self) -> Option<u32> {
        match self.kind {
            LoginErrorKind::Refused { status } => Some(status),
            _ => None,
        }
    }
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoginError {}
