//! [`SpecError`]: a field table that does not load.
//!
//! Messages that do not decode or encode are [`PduError`](crate::protocol::PduError)s: their
//! `Display` names the MTI, the byte offset and the field number.

use std::fmt;

/// A field table that does not load: a TOML file that does not parse, an entry that makes no
/// sense, a file that does not read. `Display` is one lowercase line naming the line or the
/// field:
///
/// ```
/// use keepwire::protocol::iso8583::Spec;
/// let err = Spec::from_toml("base = \"ascii\"\n[field.35]\nlength = \"llvar\"\nmax = 120\n")
///     .unwrap_err();
/// assert!(err.is_bad_field());
/// assert_eq!(err.field(), Some(35));
/// assert_eq!(
///     err.to_string(),
///     "iso 8583 spec: line 2: field 35: max 120 does not fit a 2-digit ascii length prefix (at most 99)"
/// );
/// let err = Spec::from_toml("base = \"ascii\"\n[field.35]\nlenght = \"llvar\"\n").unwrap_err();
/// assert!(err.is_syntax());
/// assert!(err.to_string().starts_with("iso 8583 spec: line 3"), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpecError {
    kind: SpecErrorKind,
    field: Option<u8>,
    line: Option<usize>,
    message: String,
}

/// Which kind of [`SpecError`]; see [`SpecError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecErrorKind {
    /// The TOML does not parse, has an unknown key or a value of the wrong type.
    Syntax,
    /// A field entry that makes no sense: a number outside 2..=128, a max its prefix cannot
    /// express, a pad nibble above 15.
    BadField,
    /// A `base` that is not a built-in table.
    UnknownBase,
    /// The file does not read.
    Io,
}

impl SpecError {
    pub(crate) fn bad_field(n: u8, why: impl fmt::Display) -> Self {
        SpecError {
            kind: SpecErrorKind::BadField,
            field: Some(n),
            line: None,
            message: format!("iso 8583 spec: field {n}: {why}"),
        }
    }

    pub(crate) fn new(kind: SpecErrorKind, line: Option<usize>, why: impl fmt::Display) -> Self {
        let message = match line {
            Some(l) => format!("iso 8583 spec: line {l}: {why}"),
            None => format!("iso 8583 spec: {why}"),
        };
        SpecError {
            kind,
            field: None,
            line,
            message,
        }
    }

    /// The same error, said of TOML line `line` (1-based).
    pub(crate) fn at_line(mut self, line: usize) -> Self {
        if self.line.is_none() {
            let rest = self
                .message
                .strip_prefix("iso 8583 spec: ")
                .unwrap_or(&self.message);
            self.message = format!("iso 8583 spec: line {line}: {rest}");
            self.line = Some(line);
        }
        self
    }

    /// The same error, said of the file at `path`.
    pub(crate) fn in_file(mut self, path: &std::path::Path) -> Self {
        let rest = self
            .message
            .strip_prefix("iso 8583 spec: ")
            .unwrap_or(&self.message);
        self.message = format!("iso 8583 spec {}: {rest}", path.display());
        self
    }

    /// Which kind of error this is.
    pub fn kind(&self) -> SpecErrorKind {
        self.kind
    }

    /// The field number the error is about, when it is about one.
    pub fn field(&self) -> Option<u8> {
        self.field
    }

    /// The TOML line (1-based) the error is about, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The TOML does not parse or has an unknown key.
    pub fn is_syntax(&self) -> bool {
        self.kind == SpecErrorKind::Syntax
    }

    /// A field entry that makes no sense.
    pub fn is_bad_field(&self) -> bool {
        self.kind == SpecErrorKind::BadField
    }

    /// A `base` that is not a built-in table.
    pub fn is_unknown_base(&self) -> bool {
        self.kind == SpecErrorKind::UnknownBase
    }

    /// The file does not read.
    pub fn is_io(&self) -> bool {
        self.kind == SpecErrorKind::Io
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}
