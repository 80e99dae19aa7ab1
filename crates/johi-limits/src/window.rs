//! Windows: calendar-aligned periods in UTC, or a fixed length aligned to the epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The period a counter covers.
///
/// Calendar windows start on the minute, hour, day (00:00 UTC) or first of the month, so
/// "1,000,000 tokens per month" resets when a finance person expects it to. A `Fixed` window
/// of any length is aligned to the Unix epoch (every replica agrees on its start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The current UTC minute.
    Minute,
    /// The current UTC hour.
    Hour,
    /// The current UTC day.
    Day,
    /// The current UTC calendar month.
    Month,
    /// A window of this length, aligned to the epoch.
    Fixed(Duration),
}

impl Window {
    /// Start (seconds since the epoch) and end instant of the window containing `now`.
    pub fn bounds(self, now: SystemTime) -> (u64, SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let (start, end) = match self {
            Window::Minute => aligned(secs, 60),
            Window::Hour => aligned(secs, 3600),
            Window::Day => aligned(secs, 86_400),
            Window::Fixed(length) => aligned(secs, length.as_secs().max(1)),
            Window::Month => month_bounds(secs),
        };
        (start, UNIX_EPOCH + Duration::from_secs(end))
    }
}

fn aligned(secs: u64, length: u64) -> (u64, u64) {
    let start = secs - secs % length;
    (start, start + length)
}

/// Start and end (epoch seconds) of the UTC calendar month containing `secs`.
fn month_bounds(secs: u64) -> (u64, u64) {
    let days = (secs / 86_400) as i64;
    let (year, month, _) = civil_from_days(days);
    let start = days_from_civil(year, month, 1);
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let end = days_from_civil(next_year, next_month, 1);
    (start as u64 * 86_400, end as u64 * 86_400)
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Howard Hinnant's `days_from_civil`: (year, month, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn calendar_windows_align_to_utc() {
        // 2026-11-21T20:33:20Z
        let now = at(1_795_293_200);
        assert_eq!(
            Window::Minute.bounds(now),
            (1_795_293_180, at(1_795_293_240))
        );
        assert_eq!(Window::Hour.bounds(now), (1_795_291_200, at(1_795_294_800)));
        assert_eq!(Window::Day.bounds(now), (1_795_219_200, at(1_795_305_600)));
        // November 2026: 2026-11-01T00:00Z .. 2026-12-01T00:00Z
        assert_eq!(
            Window::Month.bounds(now),
            (1_793_491_200, at(1_796_083_200))
        );
    }

    #[test]
    fn month_bounds_cross_years_and_leap_days() {
        // 2024-02-29T12:00Z is in February 2024 (29 days).
        let (start, end) = Window::Month.bounds(at(1_709_208_000));
        assert_eq!(start, 1_706_745_600); // 2024-02-01
        assert_eq!(end, at(1_709_251_200)); // 2024-03-01
                                            // 2026-12-31T23:59:59Z → December 2026, ends 2027-01-01.
        let (start, end) = Window::Month.bounds(at(1_798_761_599));
        assert_eq!(start, 1_796_083_200);
        assert_eq!(end, at(1_798_761_600));
        // The last second of a month is in it; the next second is not.
        assert_eq!(Window::Month.bounds(at(1_798_761_600)).0, 1_798_761_600);
    }

    #[test]
    fn fixed_windows_align_to_the_epoch() {
        let w = Window::Fixed(Duration::from_secs(300));
        assert_eq!(w.bounds(at(1_000)), (900, at(1_200)));
    }
}
