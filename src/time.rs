//! Time as gasdtu stores and prints it: UTC milliseconds since the Unix epoch (`i64`, negative
//! before 1970) and RFC 3339 text. This is the one place that converts between `SystemTime`,
//! unix ms and RFC 3339, so every module agrees on pre-1970 times and on times far in the future.
//! Nothing here panics, whatever the value: a persisted time from a corrupt row or a device with
//! a broken clock is printed (years outside 0000-9999 with a sign and more digits), never a
//! crash.
//!
//! It is also the daemon's one clock seam: `now()` / `now_ms()` read the system clock, except
//! while that clock is untrusted (before `MIN_TRUSTED_UNIX_MS`: a gateway without NTP and
//! without a battery-backed clock) and a network correction is installed (the modem's
//! network time, `set_network_correction`): then they read system + correction. The moment the
//! system clock is trusted (NTP set it) the correction is ignored, whatever it says. The
//! decision is the pure `decide`; the only clock read is `SystemTime::now()` in `now`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z in ms. A wall time before this is not trusted: no binary of this
/// project existed then, so a clock showing it was never set (1970 boot) or is badly wrong.
pub const MIN_TRUSTED_UNIX_MS: i64 = 1_767_225_600_000;

/// UTC ms since the epoch: negative before 1970, saturating at the ends of `i64`.
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => millis(d).unwrap_or(i64::MAX),
        Err(e) => millis(e.duration()).map_or(i64::MIN, |ms| -ms),
    }
}

/// `d.as_millis()` as an i64 (`None` past it) without `as_millis`'s u128 division: every
/// reading's time goes through here on its way into the store (3 % of a W1 run's
/// instructions, issue 13).
fn millis(d: Duration) -> Option<i64> {
    i64::try_from(d.as_secs())
        .ok()?
        .checked_mul(1000)?
        .checked_add(i64::from(d.subsec_millis()))
}

/// True if a wall time (ms since the epoch) is plausible enough to stamp data with.
pub fn is_trusted(wall_ms: i64) -> bool {
    wall_ms >= MIN_TRUSTED_UNIX_MS
}

/// A correction of an untrusted system clock from another source (the network's time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Correction {
    /// Source time minus system time, ms.
    pub offset_ms: i64,
    /// Bound of the source's error, ms.
    pub accuracy_ms: u64,
}

/// Where the daemon's wall clock comes from right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// The system clock, trusted (NTP, RTC, an operator).
    System,
    /// The untrusted system clock corrected by the network's time (`offset_ms` added), good
    /// to `accuracy_ms`.
    Network { offset_ms: i64, accuracy_ms: u64 },
    /// The system clock, untrusted, and no correction: data read now is held.
    Untrusted,
}

impl ClockSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockSource::System => "system",
            ClockSource::Network { .. } => "network",
            ClockSource::Untrusted => "untrusted",
        }
    }

    /// `{"source": "system"|"network"|"untrusted"}`, with `offset_ms` and `accuracy_ms` for
    /// the network (status socket and `<root>/health`).
    pub fn json(self) -> serde_json::Value {
        match self {
            ClockSource::Network {
                offset_ms,
                accuracy_ms,
            } => serde_json::json!({
                "source": "network",
                "accuracy_ms": accuracy_ms,
                "offset_ms": offset_ms,
            }),
            other => serde_json::json!({ "source": other.as_str() }),
        }
    }

    /// The small form for `<root>/health`: the source, and the accuracy when it is the network.
    pub fn health_json(self) -> serde_json::Value {
        match self {
            ClockSource::Network { accuracy_ms, .. } => {
                serde_json::json!({"source": "network", "accuracy_ms": accuracy_ms})
            }
            other => serde_json::json!({ "source": other.as_str() }),
        }
    }
}

/// The pure core of the clock seam: the time to use (ms) and its source, for a system clock
/// reading `system_ms` and the installed correction. A trusted system clock always wins; a
/// correction is used only while the system clock is untrusted and only if it yields a trusted
/// time.
pub fn decide(system_ms: i64, correction: Option<Correction>) -> (i64, ClockSource) {
    if is_trusted(system_ms) {
        return (system_ms, ClockSource::System);
    }
    match correction {
        Some(c) => {
            let t = system_ms.saturating_add(c.offset_ms);
            if is_trusted(t) {
                let src = ClockSource::Network {
                    offset_ms: c.offset_ms,
                    accuracy_ms: c.accuracy_ms,
                };
                (t, src)
            } else {
                (system_ms, ClockSource::Untrusted)
            }
        }
        None => (system_ms, ClockSource::Untrusted),
    }
}

/// Whether a freshly measured correction should replace the installed one: when there is none,
/// when the two disagree beyond their accuracies (the system clock was stepped, or drifted), or
/// when the new one is more accurate. Otherwise the installed one stays, so time does not
/// jitter by the source's resolution at every reading.
pub fn should_replace(installed: Option<Correction>, new: Correction) -> bool {
    match installed {
        None => true,
        Some(old) => {
            let apart = old.offset_ms.abs_diff(new.offset_ms);
            apart > old.accuracy_ms.saturating_add(new.accuracy_ms)
                || new.accuracy_ms < old.accuracy_ms
        }
    }
}

/// `u64::MAX` in `ACCURACY`: no correction installed.
const NONE: u64 = u64::MAX;
static OFFSET: AtomicI64 = AtomicI64::new(0);
static ACCURACY: AtomicU64 = AtomicU64::new(NONE);

/// Install (or replace) the process-wide network correction of an untrusted system clock.
pub fn set_network_correction(offset_ms: i64, accuracy_ms: u64) {
    OFFSET.store(offset_ms, Ordering::Release);
    ACCURACY.store(accuracy_ms.min(NONE - 1), Ordering::Release);
}

/// Remove the network correction: an untrusted system clock stays untrusted.
pub fn clear_network_correction() {
    ACCURACY.store(NONE, Ordering::Release);
}

/// The installed network correction, if any (whether it is in use depends on the system clock).
pub fn network_correction() -> Option<Correction> {
    let accuracy_ms = ACCURACY.load(Ordering::Acquire);
    (accuracy_ms != NONE).then(|| Correction {
        offset_ms: OFFSET.load(Ordering::Acquire),
        accuracy_ms,
    })
}

/// The system clock as unix ms, uncorrected (for measuring a correction).
pub fn system_now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// The daemon's wall-clock time: the system clock, or the corrected one (see the module doc).
pub fn now() -> SystemTime {
    let sys = SystemTime::now();
    match decide(unix_ms(sys), network_correction()).1 {
        ClockSource::Network { offset_ms, .. } => {
            let d = Duration::from_millis(offset_ms.unsigned_abs());
            let t = if offset_ms >= 0 {
                sys.checked_add(d)
            } else {
                sys.checked_sub(d)
            };
            t.unwrap_or(sys)
        }
        ClockSource::System | ClockSource::Untrusted => sys,
    }
}

/// The daemon's wall-clock time as unix ms (see `now`).
pub fn now_ms() -> i64 {
    unix_ms(now())
}

/// Where `now()` takes its time from at this moment.
pub fn clock_source() -> ClockSource {
    decide(system_now_ms(), network_correction()).1
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
    if !(0..=9999).contains(&y) {
        return format!(
            "{}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z",
            year(y)
        );
    }
    // Every JSON data read carries one: digits by hand, not through `format!` (issue 13).
    let mut b = [0u8; 24];
    let mut put = |at: usize, v: u32, n: usize| {
        let mut v = v;
        for i in (0..n).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y as u32, 4);
    put(5, mo, 2);
    put(8, d, 2);
    put(11, h, 2);
    put(14, mi, 2);
    put(17, s, 2);
    put(20, milli, 3);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        b[at] = c;
    }
    b.iter().map(|&c| c as char).collect()
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
        // The hand-written digits agree with `format!` over years 0..=9999.
        let mut ms = -62_167_219_200_000i64;
        while ms < 253_402_300_800_000 {
            let (y, mo, d, h, mi, s, milli) = civil(ms);
            let want = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z");
            assert_eq!(rfc3339_ms(ms), want, "ms {ms}");
            ms += 7_777_777_777;
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
    fn millis_is_as_millis_where_it_fits_an_i64() {
        let edge = i64::MAX as u64 / 1000;
        let cases = [
            Duration::ZERO,
            Duration::from_nanos(999_999),
            Duration::from_nanos(1_000_000),
            Duration::new(1_740_823_200, 120_999_999),
            Duration::new(edge, 807_999_999),
            Duration::new(edge, 808_000_000),
            Duration::new(edge + 1, 0),
            Duration::new(u64::MAX, 999_999_999),
        ];
        for d in cases {
            assert_eq!(millis(d), i64::try_from(d.as_millis()).ok(), "{d:?}");
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
    fn the_clock_seam_decides() {
        let t = MIN_TRUSTED_UNIX_MS;
        let c = |offset_ms, accuracy_ms| {
            Some(Correction {
                offset_ms,
                accuracy_ms,
            })
        };
        let net = |offset_ms, accuracy_ms| ClockSource::Network {
            offset_ms,
            accuracy_ms,
        };
        // (system ms, correction, want time, want source)
        let cases = [
            // A trusted system clock wins, correction or not.
            (t, None, t, ClockSource::System),
            (t + 5, c(1_000, 700), t + 5, ClockSource::System),
            // Untrusted without a correction: the system clock, untrusted.
            (0, None, 0, ClockSource::Untrusted),
            (t - 1, None, t - 1, ClockSource::Untrusted),
            // Booted in 1970, the network says it is t + 10 s.
            (
                60_000,
                c(t + 10_000 - 60_000, 1_200),
                t + 10_000,
                net(t - 50_000, 1_200),
            ),
            // A stale 2025 clock a year behind.
            (
                t - 31_536_000_000,
                c(31_536_000_000, 900),
                t,
                net(31_536_000_000, 900),
            ),
            // A correction that still leaves the time untrusted is not used.
            (0, c(1_000, 700), 0, ClockSource::Untrusted),
            // Overflow saturates instead of panicking.
            (i64::MIN, c(i64::MIN, 1), i64::MIN, ClockSource::Untrusted),
            (t - 1, c(i64::MAX, 1), i64::MAX, net(i64::MAX, 1)),
        ];
        for (sys, corr, want_t, want_src) in cases {
            assert_eq!(decide(sys, corr), (want_t, want_src), "{sys} {corr:?}");
        }
    }

    #[test]
    fn corrections_replace_only_when_they_disagree_or_improve() {
        let c = |offset_ms, accuracy_ms| Correction {
            offset_ms,
            accuracy_ms,
        };
        // (installed, new, replace?)
        let cases = [
            (None, c(5_000, 1_000), true),
            // Within both accuracies and not better: keep (no jitter).
            (Some(c(5_000, 600)), c(5_400, 700), false),
            (Some(c(5_000, 600)), c(6_300, 700), false),
            // Apart by more than both accuracies: the system clock moved.
            (Some(c(5_000, 600)), c(6_301, 700), true),
            (Some(c(5_000, 600)), c(-90_000, 700), true),
            // More accurate.
            (Some(c(5_000, 600)), c(5_100, 550), true),
        ];
        for (old, new, want) in cases {
            assert_eq!(should_replace(old, new), want, "{old:?} {new:?}");
        }
    }

    #[test]
    fn source_json() {
        let n = ClockSource::Network {
            offset_ms: -3,
            accuracy_ms: 800,
        };
        assert_eq!(
            n.json(),
            serde_json::json!({"source": "network", "accuracy_ms": 800, "offset_ms": -3})
        );
        assert_eq!(
            ClockSource::Untrusted.json(),
            serde_json::json!({"source": "untrusted"})
        );
        assert_eq!(ClockSource::System.as_str(), "system");
        assert_eq!(
            n.health_json(),
            serde_json::json!({"source": "network", "accuracy_ms": 800})
        );
    }

    #[test]
    fn a_trusted_system_clock_ignores_the_correction() {
        // The test machine's clock is trusted: an installed correction changes nothing (this
        // is also why installing one here cannot disturb other tests of this process).
        let before = SystemTime::now();
        set_network_correction(86_400_000, 1_000);
        let got = now();
        let src = clock_source();
        clear_network_correction();
        if is_trusted(unix_ms(before)) {
            assert_eq!(src, ClockSource::System);
            assert!(got >= before && unix_ms(got) - unix_ms(before) < 86_400_000);
        }
        assert_eq!(network_correction(), None);
    }

    #[test]
    fn short_forms() {
        assert_eq!(rfc3339_s(1_740_823_200_120), "2025-03-01T10:00:00Z");
        assert_eq!(file_stamp(1_740_823_200_120), "20250301T100000Z");
        assert_eq!(hms(1_740_823_201_120), "10:00:01");
    }
}
