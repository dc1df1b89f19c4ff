//! Time as gasdtu stores and prints it: UTC milliseconds since the Unix epoch (`i64`, negative
//! before 1970) and RFC 3339 text. This is the one place that converts between `SystemTime`,
//! unix ms and RFC 3339, so every module agrees on pre-1970 times and on times far in the future.
//! Nothing here panics, whatever the value: a persisted time from a corrupt row or a device with
//! a broken clock is printed (years outside 0000-9999 with a sign and more digits), never a
//! crash. Pure: no I/O, the only clock read is in `now_ms`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z in ms. A wall time before this is not trusted: no binary of this
/// project existed then, so a clock showing it was never set (1970 boot) or is badly wrong.
pub const MIN_TRUSTED_UNIX_MS: i64 = 1_767_225_600_000;

/// UTC ms since the epoch: negative before 1970, saturating at the ends of `i64`.
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The current wall-clock time as unix ms.
pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// The inverse of `unix_ms`. Values the platform's `SystemTime` cannot hold saturate at the
/// epoch ± the largest representable span instead of panicking.
pub fn from_unix_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    let t = if ms >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(UNIX_EPOCH)
}

/// Civil UTC date and time of `ms`: (year, month, day, hour, minute, second, millisecond).
/// Proleptic Gregorian calendar, valid for every `i64` (H. Hinnant's days-from-civil inverse).
pub fn civil(ms: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    // Shift to an era that starts on 0000-03-01; i128 keeps i64::MIN/MAX from overflowing.
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i128::from(m <= 2);
    let y = i64::try_from(y).unwrap_or(if y < 0 { i64::MIN } else { i64::MAX });
    (y, m, d, sod / 3600, sod % 3600 / 60, sod % 60, milli)
}

fn year(y: i64) -> String {
    if (0..=9999).contains(&y) {
        format!("{y:04}")
    } else {
        // RFC 3339 has no room for these; ISO 8601's expanded form keeps them readable.
        format!("{y:+05}")
    }
}

/// RFC 3339 UTC with milliseconds: `2025-03-01T10:00:00.120Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let (y, mo, d, h, mi, s, milli) = civil(ms);
    format!(
        "{}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z",
        year(y)
    )
}

/// RFC 3339 UTC to the second: `2025-03-01T10:00:00Z`.
pub fn rfc3339_s(ms: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(ms);
    format!("{}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z", year(y))
}

/// `SystemTime` as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms_of(t: SystemTime) -> String {
    rfc3339_ms(unix_ms(t))
}

/// A file-name friendly UTC stamp to the second: `20250301T100000Z`.
pub fn file_stamp(ms: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(ms);
    format!("{}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z", year(y))
}

/// `HH:MM:SS` (UTC) of `ms`, for live views.
pub fn hms(ms: i64) -> String {
    let (_, _, _, h, mi, s, _) = civil(ms);
    format!("{h:02}:{mi:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_table() {
        let cases: &[(i64, &str)] = &[
            (0, "1970-01-01T00:00:00.000Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-1000, "1969-12-31T23:59:59.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_740_823_200_120, "2025-03-01T10:00:00.120Z"),
            (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
            (253_402_300_800_000, "+10000-01-01T00:00:00.000Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
            (-62_167_219_200_001, "-0001-12-31T23:59:59.999Z"),
            (-2_208_988_800_000, "1900-01-01T00:00:00.000Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(rfc3339_ms(*ms), *want, "ms {ms}");
        }
    }

    #[test]
    fn extremes_never_panic() {
        for ms in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, -86_400_001] {
            let s = rfc3339_ms(ms);
            assert!(s.ends_with('Z'), "{s}");
            let _ = rfc3339_s(ms);
            let _ = file_stamp(ms);
            let _ = from_unix_ms(ms);
        }
    }

    #[test]
    fn unix_ms_round_trips_before_and_after_1970() {
        for ms in [-86_400_000_123, -1, 0, 1, 1_740_823_200_120] {
            assert_eq!(unix_ms(from_unix_ms(ms)), ms);
        }
    }

    #[test]
    fn agrees_with_humantime_where_humantime_works() {
        for ms in [0i64, 1_740_823_200_120, 4_102_444_799_999] {
            let h = humantime::format_rfc3339_millis(from_unix_ms(ms)).to_string();
            assert_eq!(rfc3339_ms(ms), h);
        }
    }

    #[test]
    fn short_forms() {
        assert_eq!(rfc3339_s(1_740_823_200_120), "2025-03-01T10:00:00Z");
        assert_eq!(file_stamp(1_740_823_200_120), "20250301T100000Z");
        assert_eq!(hms(1_740_823_201_120), "10:00:01");
    }
}
