//! Overflow-safe deadlines.
//!
//! `Instant + Duration` panics when the sum does not fit, and a duration a person typed
//! (`--idle-timeout 18446744073709551615`) or a config file holds can be that large. Every
//! deadline in keepwire is computed here: a sum that would overflow, or lies further ahead than
//! [`FAR_FUTURE`], becomes `now + FAR_FUTURE`, which is "never" for any connection.

use std::time::{Duration, Instant};

/// The furthest a deadline is set: about 30 years (as tokio's own "far future"). A timer this
/// far out never fires in the life of a process.
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d`, saturating at `now + FAR_FUTURE`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use keepwire::deadline::{after, FAR_FUTURE};
/// let now = Instant::now();
/// assert_eq!(after(now, Duration::from_secs(1)), now + Duration::from_secs(1));
/// assert_eq!(after(now, Duration::MAX), now + FAR_FUTURE);
/// ```
pub fn after(now: Instant, d: Duration) -> Instant {
    let d = d.min(FAR_FUTURE);
    // Even FAR_FUTURE can overflow an Instant near the end of its range; fall back to `now`
    // plus the largest step that fits, halving until one does.
    now.checked_add(d).unwrap_or_else(|| {
        let mut step = d;
        loop {
            step /= 2;
            if let Some(t) = now.checked_add(step) {
                return t;
            }
            if step.is_zero() {
                return now;
            }
        }
    })
}

/// [`after`] for tokio's clock.
#[cfg(any(feature = "server", feature = "client"))]
pub fn after_tokio(now: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(after(now.into_std(), d))
}

/// `tokio::time::Instant::now() + d`, saturating.
#[cfg(any(feature = "server", feature = "client"))]
pub fn tokio_in(d: Duration) -> tokio::time::Instant {
    after_tokio(tokio::time::Instant::now(), d)
}

/// `Instant::now() + d`, saturating.
pub fn std_in(d: Duration) -> Instant {
    after(Instant::now(), d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate() {
        let now = Instant::now();
        for d in [Duration::MAX, Duration::from_secs(u64::MAX), FAR_FUTURE * 2] {
            assert_eq!(after(now, d), now + FAR_FUTURE);
        }
        assert_eq!(after(now, Duration::ZERO), now);
        let t = tokio::time::Instant::now();
        assert_eq!(after_tokio(t, Duration::MAX), t + FAR_FUTURE);
    }
}
