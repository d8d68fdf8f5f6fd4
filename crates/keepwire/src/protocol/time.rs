//! Calendar fields of a `SystemTime` in UTC, for CMPP timestamps, Msg_Ids and receipt dates.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
}

impl Civil {
    /// `now` in UTC (times before 1970 count as 1970-01-01).
    pub(crate) fn utc(now: SystemTime) -> Civil {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        // rem < 86 400, so these fit.
        let rem = u32::try_from(rem).unwrap_or(0);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    /// `MMDDHHMMSS` (CMPP CONNECT Timestamp), 10 digits.
    pub(crate) fn mmddhhmmss(&self) -> String {
        format!(
            "{:02}{:02}{:02}{:02}{:02}",
            self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `YYMMDDhhmm` (receipt dates), 10 digits.
    pub(crate) fn yymmddhhmm(&self) -> String {
        format!(
            "{:02}{:02}{:02}{:02}{:02}",
            self.year.rem_euclid(100),
            self.month,
            self.day,
            self.hour,
            self.minute
        )
    }
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html>).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if m <= 2 { y + 1 } else { y };
    (
        year,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_dates() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        // date -u -d @0, @951782400 (2000-02-29), @1796040000 (2026-11-30 12:00:00)
        assert_eq!(Civil::utc(t(0)).yymmddhhmm(), "7001010000");
        let leap = Civil::utc(t(951_782_400));
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        let c = Civil::utc(t(1_796_040_000 + 3 * 60 + 7));
        assert_eq!((c.year, c.month, c.day, c.hour), (2026, 11, 30, 12));
        assert_eq!(c.mmddhhmmss(), "1130120307");
        assert_eq!(c.yymmddhhmm(), "2611301203");
    }
}
