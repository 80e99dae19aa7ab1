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
    /// A window of this length that ends now and slides with time (no reset instant).
    ///
    /// Counted as the *sliding window counter* that Cloudflare, Kong and Envoy use: two
    /// epoch-aligned buckets of the window's length, the current one counted whole and the
    /// previous one weighted by how much of it the sliding window still covers. Exact when
    /// the previous bucket's traffic was even, and never more than the previous bucket's
    /// total away otherwise; two counters per limit, one round trip, whatever the length.
    Rolling(Duration),
}

impl Window {
    /// Start (seconds since the epoch) and end instant of the window containing `now`.
    pub fn bounds(self, now: SystemTime) -> (u64, SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let (start, end) = match self {
            Window::Minute => aligned(secs, 60),
            Window::Hour => aligned(secs, 3600),
            Window::Day => aligned(secs, 86_400),
            Window::Fixed(length) | Window::Rolling(length) => {
                aligned(secs, length.as_secs().max(1))
            }
            Window::Month => month_bounds(secs),
        };
        (start, UNIX_EPOCH + Duration::from_secs(end))
    }

    /// For a rolling window: the start of the previous bucket and the weight of its count
    /// now, in millionths (the share of the previous bucket the sliding window still
    /// covers). `None` for every other window.
    pub fn previous_bucket(self, now: SystemTime) -> Option<(u64, u64)> {
        let Window::Rolling(length) = self else {
            return None;
        };
        // Buckets are whole seconds, as `bounds` aligns them.
        let length_secs = length.as_secs().max(1);
        let length_ms = length_secs.saturating_mul(1000);
        let now_ms = u64::try_from(
            now.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        let (start, _) = aligned(now_ms / 1000, length_secs);
        let elapsed_ms = now_ms.saturating_sub(start * 1000).min(length_ms);
        let weight = (length_ms - elapsed_ms).saturating_mul(WEIGHT_ONE) / length_ms;
        Some((start.saturating_sub(length_secs), weight))
    }

    /// How long a bucket must be kept after its own end: a rolling window still reads it
    /// for one more length.
    pub fn retention(self) -> Duration {
        match self {
            Window::Rolling(length) => length,
            _ => Duration::ZERO,
        }
    }
}

/// A weight of one, in the millionths [`Window::previous_bucket`] answers in.
pub const WEIGHT_ONE: u64 = 1_000_000;

/// The previous bucket's contribution to a rolling window: `count × weight`, rounded up so
/// that the window never reads as emptier than it is.
pub fn weighted(count: u64, weight: u64) -> u64 {
    let product = u128::from(count) * u128::from(weight);
    u64::try_from(product.div_ceil(u128::from(WEIGHT_ONE))).unwrap_or(u64::MAX)
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
    fn a_rolling_window_weighs_the_previous_bucket_by_what_it_still_covers() {
        let w = Window::Rolling(Duration::from_secs(100));
        assert_eq!(w.bounds(at(1_050)), (1_000, at(1_100)));
        // 50 s into the bucket: the sliding window [950, 1050) covers half of [900, 1000).
        assert_eq!(w.previous_bucket(at(1_050)), Some((900, 500_000)));
        assert_eq!(w.previous_bucket(at(1_000)), Some((900, 1_000_000)));
        assert_eq!(
            w.previous_bucket(UNIX_EPOCH + Duration::from_millis(1_099_990)),
            Some((900, 100))
        );
        assert_eq!(weighted(10, 500_000), 5);
        assert_eq!(weighted(3, 500_000), 2); // 1.5 rounds up
        assert_eq!(weighted(7, 0), 0);
        assert_eq!(
            Window::Fixed(Duration::from_secs(100)).previous_bucket(at(1_050)),
            None
        );
        assert_eq!(w.retention(), Duration::from_secs(100));
    }

    #[test]
    fn fixed_windows_align_to_the_epoch() {
        let w = Window::Fixed(Duration::from_secs(300));
        assert_eq!(w.bounds(at(1_000)), (900, at(1_200)));
    }
}
