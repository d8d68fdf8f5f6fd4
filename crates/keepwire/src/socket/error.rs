//! The errors of [`socket`](super): a duration, a keepalive setting or a socket option that
//! is refused. Each names what was found and what was expected; where a value's own parser
//! refused it, that error is the `source()` and `{:#}` appends it to the one line.

use std::fmt;
use std::time::Duration;

use super::{MAX_KEEPALIVE_PROBES, MAX_KEEPALIVE_SECS, MAX_USER_TIMEOUT, humantime_fmt};

/// A duration [`parse_duration`](super::parse_duration) refused.
///
/// ```
/// use keepwire::socket::parse_duration;
/// let e = parse_duration("fast").unwrap_err();
/// assert!(e.is_not_a_duration());
/// assert_eq!(e.input(), "fast");
/// assert_eq!(
///     e.to_string(),
///     "\"fast\" is not a duration (expected number at 0); \
///      expected a number with a unit, e.g. 250ms, 30s, 2m, 1h"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    kind: DurationErrorKind,
}

/// What [`DurationError`] found; see [`DurationError::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationErrorKind {
    /// The text is neither a whole number of seconds nor a number with a unit.
    NotADuration {
        /// Where the humantime syntax broke, in the parser's words (`unknown time unit "x"`).
        /// It is part of the message rather than a `source()`: it explains the text, it is not
        /// an underlying failure.
        reason: String,
    },
    /// The duration is longer than [`MAX_DURATION`](super::MAX_DURATION).
    TooLong,
}

impl DurationError {
    pub(super) fn new(input: &str, kind: DurationErrorKind) -> Self {
        DurationError {
            input: input.to_string(),
            kind,
        }
    }

    /// The text that was refused (trimmed).
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with it.
    pub fn kind(&self) -> &DurationErrorKind {
        &self.kind
    }

    /// The text is not a duration at all.
    pub fn is_not_a_duration(&self) -> bool {
        matches!(self.kind, DurationErrorKind::NotADuration { .. })
    }

    /// The text is a duration longer than [`MAX_DURATION`](super::MAX_DURATION).
    pub fn is_too_long(&self) -> bool {
        self.kind == DurationErrorKind::TooLong
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.input;
        match &self.kind {
            DurationErrorKind::NotADuration { reason } => write!(
                f,
                "{s:?} is not a duration ({reason}); expected a number with a unit, e.g. 250ms, 30s, 2m, 1h"
            ),
            DurationErrorKind::TooLong => {
                write!(
                    f,
                    "{s:?} is too long: the largest accepted duration is 365d"
                )
            }
        }
    }
}

impl std::error::Error for DurationError {}

/// A `TIME,INTERVAL,PROBES` keepalive that does not parse, or values the kernel refuses.
///
/// `Display` is one line; with `{:#}` it is followed by its cause (a bad duration), for a
/// report on one line:
///
/// ```
/// use keepwire::socket::{Keepalive, KeepaliveField};
/// let e = "30s,fast,3".parse::<Keepalive>().unwrap_err();
/// assert_eq!(e.field(), Some(KeepaliveField::Interval));
/// assert_eq!(e.to_string(), "tcp keepalive \"30s,fast,3\": INTERVAL");
/// assert!(format!("{e:#}").ends_with(": \"fast\" is not a duration (expected number at 0); \
///     expected a number with a unit, e.g. 250ms, 30s, 2m, 1h"));
/// let e = "32768s,5s,3".parse::<Keepalive>().unwrap_err();
/// assert!(e.is_out_of_range());
/// assert_eq!(
///     e.to_string(),
///     "tcp keepalive \"32768s,5s,3\": TIME 9h 6m 8s is out of range: \
///      the kernel accepts 1s to 9h 6m 7s"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepaliveError {
    /// The text parsed; `None` from [`Keepalive::validate`](super::Keepalive::validate).
    input: Option<String>,
    kind: KeepaliveErrorKind,
}

/// What [`KeepaliveError`] found; see [`KeepaliveError::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeepaliveErrorKind {
    /// Not three comma-separated parts.
    Shape,
    /// PROBES is not a whole number from 1 to [`MAX_KEEPALIVE_PROBES`].
    BadProbes {
        /// The text given for PROBES.
        found: String,
    },
    /// TIME or INTERVAL is not an accepted duration; the reason is the `source()`.
    BadDuration {
        /// Which of the two.
        field: KeepaliveField,
        /// Why the duration was refused.
        source: DurationError,
    },
    /// TIME or INTERVAL is below one second, which the kernel cannot express: it counts
    /// whole seconds.
    BelowOneSecond {
        /// Which of the two.
        field: KeepaliveField,
        /// The duration given.
        found: Duration,
    },
    /// TIME or INTERVAL is outside 1 s to [`MAX_KEEPALIVE_SECS`].
    DurationOutOfRange {
        /// Which of the two.
        field: KeepaliveField,
        /// The duration given.
        found: Duration,
    },
    /// PROBES is outside 1 to [`MAX_KEEPALIVE_PROBES`].
    ProbesOutOfRange {
        /// The number given.
        found: u32,
    },
}

/// One of the three parts of a [`Keepalive`](super::Keepalive), spelled as in `TIME,INTERVAL,PROBES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeepaliveField {
    /// Idle time before the first probe.
    Time,
    /// Time between probes.
    Interval,
    /// Unanswered probes before the reset.
    Probes,
}

impl fmt::Display for KeepaliveField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeepaliveField::Time => "TIME",
            KeepaliveField::Interval => "INTERVAL",
            KeepaliveField::Probes => "PROBES",
        })
    }
}

impl KeepaliveError {
    pub(super) fn new(kind: KeepaliveErrorKind) -> Self {
        KeepaliveError { input: None, kind }
    }

    /// The same error, about the text `input`.
    pub(super) fn in_text(self, input: &str) -> Self {
        KeepaliveError {
            input: Some(input.to_string()),
            ..self
        }
    }

    /// The text that was parsed, or `None` when the error comes from [`Keepalive::validate`](super::Keepalive::validate).
    pub fn input(&self) -> Option<&str> {
        self.input.as_deref()
    }

    /// What was wrong.
    pub fn kind(&self) -> &KeepaliveErrorKind {
        &self.kind
    }

    /// The part at fault, or `None` when the text is not three parts.
    pub fn field(&self) -> Option<KeepaliveField> {
        match self.kind {
            KeepaliveErrorKind::Shape => None,
            KeepaliveErrorKind::BadProbes { .. } | KeepaliveErrorKind::ProbesOutOfRange { .. } => {
                Some(KeepaliveField::Probes)
            }
            KeepaliveErrorKind::BadDuration { field, .. }
            | KeepaliveErrorKind::BelowOneSecond { field, .. }
            | KeepaliveErrorKind::DurationOutOfRange { field, .. } => Some(field),
        }
    }

    /// The text is not of the form `TIME,INTERVAL,PROBES`, or a part does not parse.
    pub fn is_syntax(&self) -> bool {
        matches!(
            self.kind,
            KeepaliveErrorKind::Shape
                | KeepaliveErrorKind::BadProbes { .. }
                | KeepaliveErrorKind::BadDuration { .. }
        )
    }

    /// The values parse but the kernel would refuse them (or round them to nothing).
    pub fn is_out_of_range(&self) -> bool {
        matches!(
            self.kind,
            KeepaliveErrorKind::BelowOneSecond { .. }
                | KeepaliveErrorKind::DurationOutOfRange { .. }
                | KeepaliveErrorKind::ProbesOutOfRange { .. }
        )
    }
}

impl fmt::Display for KeepaliveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.input {
            write!(f, "tcp keepalive {s:?}: ")?;
        }
        match &self.kind {
            KeepaliveErrorKind::Shape => {
                f.write_str("expected TIME,INTERVAL,PROBES, e.g. 30s,5s,3, or off")
            }
            KeepaliveErrorKind::BadProbes { found } => write!(
                f,
                "PROBES {found:?} is not a whole number from 1 to {MAX_KEEPALIVE_PROBES}"
            ),
            KeepaliveErrorKind::BadDuration { field, source } => {
                write!(f, "{field}")?;
                if f.alternate() {
                    write!(f, ": {source:#}")?;
                }
                Ok(())
            }
            KeepaliveErrorKind::BelowOneSecond { field, found } => write!(
                f,
                "{field} {} is below 1s: the kernel counts whole seconds",
                humantime_fmt(*found)
            ),
            KeepaliveErrorKind::DurationOutOfRange { field, found } => write!(
                f,
                "{field} {} is out of range: the kernel accepts 1s to {}",
                humantime_fmt(*found),
                humantime_fmt(std::time::Duration::from_secs(MAX_KEEPALIVE_SECS))
            ),
            KeepaliveErrorKind::ProbesOutOfRange { found } => write!(
                f,
                "PROBES {found} is out of range: expected 1 to {MAX_KEEPALIVE_PROBES}"
            ),
        }
    }
}

impl std::error::Error for KeepaliveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            KeepaliveErrorKind::BadDuration { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A `TCP_USER_TIMEOUT` outside what the kernel accepts; see [`validate_user_timeout`](super::validate_user_timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserTimeoutError {
    found: Duration,
}

impl UserTimeoutError {
    pub(super) fn new(found: Duration) -> Self {
        UserTimeoutError { found }
    }

    /// The timeout given.
    pub fn found(&self) -> Duration {
        self.found
    }

    /// Below 1 ms, which the kernel would read as 0: "use my default".
    pub fn is_too_short(&self) -> bool {
        self.found < Duration::from_millis(1)
    }

    /// Above [`MAX_USER_TIMEOUT`].
    pub fn is_too_long(&self) -> bool {
        self.found > MAX_USER_TIMEOUT
    }
}

impl fmt::Display for UserTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is out of range: the kernel accepts 1ms to {} (2^31-1 ms)",
            humantime_fmt(self.found),
            humantime_fmt(MAX_USER_TIMEOUT)
        )
    }
}

impl std::error::Error for UserTimeoutError {}

/// A [`SocketOptions`](super::SocketOptions) value the kernel would refuse; the value's own error is the `source()`.
///
/// `Display` names the option; `{:#}` adds the cause, for a report on one line:
///
/// ```
/// use std::time::Duration;
/// use keepwire::socket::SocketOptions;
/// let opts = SocketOptions { user_timeout: Some(Duration::ZERO), ..SocketOptions::default() };
/// let e = opts.validate().unwrap_err();
/// assert!(e.is_user_timeout());
/// assert_eq!(e.to_string(), "tcp user timeout");
/// assert_eq!(
///     format!("{e:#}"),
///     "tcp user timeout: 0s is out of range: the kernel accepts 1ms to 24days 20h 31m 23s 647ms (2^31-1 ms)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketOptionsError {
    /// The keepalive settings are out of range.
    Keepalive(KeepaliveError),
    /// The user timeout is out of range.
    UserTimeout(UserTimeoutError),
}

impl SocketOptionsError {
    /// The keepalive settings are at fault.
    pub fn is_keepalive(&self) -> bool {
        matches!(self, SocketOptionsError::Keepalive(_))
    }

    /// The user timeout is at fault.
    pub fn is_user_timeout(&self) -> bool {
        matches!(self, SocketOptionsError::UserTimeout(_))
    }
}

impl fmt::Display for SocketOptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketOptionsError::Keepalive(e) => {
                f.write_str("tcp keepalive")?;
                if f.alternate() {
                    write!(f, ": {e:#}")?;
                }
            }
            SocketOptionsError::UserTimeout(e) => {
                f.write_str("tcp user timeout")?;
                if f.alternate() {
                    write!(f, ": {e:#}")?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for SocketOptionsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SocketOptionsError::Keepalive(e) => Some(e),
            SocketOptionsError::UserTimeout(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::socket::{Keepalive, SocketOptions, parse_duration, validate_user_timeout};

    #[test]
    fn duration_errors_name_found_and_expected() {
        for text in ["fast", "5x", "", "-1s"] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.is_not_a_duration() && !e.is_too_long(), "{text:?}");
            assert_eq!(e.input(), text);
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{text:?} is not a duration (")),
                "{msg}"
            );
            assert!(msg.ends_with("expected a number with a unit, e.g. 250ms, 30s, 2m, 1h"));
        }
        assert!(
            parse_duration("5x")
                .unwrap_err()
                .to_string()
                .contains("\"x\"")
        );
        for text in ["366d", "31536001", "18446744073709551615"] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.is_too_long() && !e.is_not_a_duration(), "{text:?}");
            assert_eq!(e.kind(), &DurationErrorKind::TooLong);
            assert_eq!(
                e.to_string(),
                format!("{text:?} is too long: the largest accepted duration is 365d")
            );
        }
    }

    /// Each refusal: its kind, the field at fault, the predicates and the one line shown.
    #[test]
    fn keepalive_errors_name_found_and_expected() {
        use KeepaliveField::{Interval, Probes, Time};
        let cases: &[(&str, Option<KeepaliveField>, bool, &str)] = &[
            (
                "60s,10s",
                None,
                true,
                "expected TIME,INTERVAL,PROBES, e.g. 30s,5s,3, or off",
            ),
            (
                "60s,10s,0",
                Some(Probes),
                true,
                "PROBES \"0\" is not a whole number from 1 to 127",
            ),
            (
                "60s,10s,x",
                Some(Probes),
                true,
                "PROBES \"x\" is not a whole number from 1 to 127",
            ),
            ("fast,10s,3", Some(Time), true, "TIME"),
            (
                "500ms,10s,3",
                Some(Time),
                false,
                "TIME 500ms is below 1s: the kernel counts whole seconds",
            ),
            (
                "5s,0s,3",
                Some(Interval),
                false,
                "INTERVAL 0s is below 1s: the kernel counts whole seconds",
            ),
            (
                "32768s,5s,3",
                Some(Time),
                false,
                "TIME 9h 6m 8s is out of range: the kernel accepts 1s to 9h 6m 7s",
            ),
            (
                "30s,10h,3",
                Some(Interval),
                false,
                "INTERVAL 10h is out of range: the kernel accepts 1s to 9h 6m 7s",
            ),
        ];
        for &(text, field, syntax, msg) in cases {
            let e = text.parse::<Keepalive>().unwrap_err();
            assert_eq!(e.input(), Some(text));
            assert_eq!(e.field(), field, "{text}");
            assert_eq!(
                (e.is_syntax(), e.is_out_of_range()),
                (syntax, !syntax),
                "{text}"
            );
            assert_eq!(e.to_string(), format!("tcp keepalive {text:?}: {msg}"));
        }
    }

    #[test]
    fn keepalive_bad_duration_is_the_source() {
        use std::error::Error;
        let e = "30s,366d,3".parse::<Keepalive>().unwrap_err();
        let KeepaliveErrorKind::BadDuration { field, source } = e.kind() else {
            panic!("{e:?}");
        };
        assert_eq!(*field, KeepaliveField::Interval);
        assert!(source.is_too_long());
        let cause = e.source().map(|c| c.to_string());
        assert_eq!(cause, Some(source.to_string()));
        // `Display` does not repeat the cause; `{:#}` appends it.
        assert_eq!(e.to_string(), "tcp keepalive \"30s,366d,3\": INTERVAL");
        assert_eq!(format!("{e:#}"), format!("{e}: {source}"));
        // Errors that wrap nothing have no source.
        assert!("1,2".parse::<Keepalive>().unwrap_err().source().is_none());
    }

    #[test]
    fn keepalive_validate() {
        let mut k = Keepalive {
            time: Duration::from_secs(1),
            interval: Duration::from_secs(MAX_KEEPALIVE_SECS),
            probes: MAX_KEEPALIVE_PROBES,
        };
        assert_eq!(k.validate(), Ok(()));
        k.probes = 0;
        let e = k.validate().unwrap_err();
        assert_eq!(e.kind(), &KeepaliveErrorKind::ProbesOutOfRange { found: 0 });
        assert_eq!(e.input(), None);
        assert_eq!(e.to_string(), "PROBES 0 is out of range: expected 1 to 127");
        k.probes = 3;
        k.time = Duration::from_millis(999);
        assert_eq!(
            k.validate().unwrap_err().to_string(),
            "TIME 999ms is out of range: the kernel accepts 1s to 9h 6m 7s"
        );
    }

    #[test]
    fn user_timeout_limits() {
        assert!(validate_user_timeout(Duration::from_millis(1)).is_ok());
        assert!(validate_user_timeout(MAX_USER_TIMEOUT).is_ok());
        let long = validate_user_timeout(MAX_USER_TIMEOUT + Duration::from_millis(1)).unwrap_err();
        assert!(long.is_too_long() && !long.is_too_short());
        assert_eq!(long.found(), MAX_USER_TIMEOUT + Duration::from_millis(1));
        let short = validate_user_timeout(Duration::from_nanos(1)).unwrap_err();
        assert!(short.is_too_short() && !short.is_too_long());
        assert_eq!(
            short.to_string(),
            "1ns is out of range: the kernel accepts 1ms to 24days 20h 31m 23s 647ms (2^31-1 ms)"
        );
    }

    #[test]
    fn socket_options_errors_wrap_the_option_error() {
        use std::error::Error;
        assert_eq!(SocketOptions::default().validate(), Ok(()));
        let bad_keepalive = SocketOptions {
            keepalive: Some(Keepalive {
                time: Duration::from_secs(5),
                interval: Duration::from_secs(5),
                probes: 200,
            }),
            ..SocketOptions::default()
        };
        let e = bad_keepalive.validate().unwrap_err();
        assert!(e.is_keepalive() && !e.is_user_timeout());
        assert_eq!(e.to_string(), "tcp keepalive");
        assert_eq!(
            format!("{e:#}"),
            "tcp keepalive: PROBES 200 is out of range: expected 1 to 127"
        );
        assert_eq!(
            e.source().map(|c| c.to_string()).as_deref(),
            Some("PROBES 200 is out of range: expected 1 to 127")
        );
        let bad_timeout = SocketOptions {
            user_timeout: Some(Duration::ZERO),
            ..SocketOptions::default()
        };
        let e = bad_timeout.validate().unwrap_err();
        assert!(e.is_user_timeout() && !e.is_keepalive());
        assert!(e.source().is_some());
    }
}
