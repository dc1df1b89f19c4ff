//! Clock trust for gateways without a battery-backed clock (they boot in 1970 until NTP or the
//! modem sets the time). Owns the trust floor, the `ClockStamp` the caller captures at commit
//! time (wall clock, monotonic time since boot, boot id), and the pure re-stamp arithmetic.
//! Only `ClockStamp::now` reads the system: the boot id from /proc once per process, the
//! monotonic time from `clock_gettime(CLOCK_BOOTTIME)` at every commit. Its wall clock is `crate::time::now`, so a
//! network-corrected clock (the modem's network time while NTP is unreachable) counts as
//! trusted, and the rows held before it are re-stamped from it like from NTP.
//!
//! Every untrusted row remembers its clock's *base*: wall time minus monotonic time at commit,
//! i.e. when that (wrong) clock believes the machine booted. A time `t` taken with that clock
//! corresponds to the monotonic instant `t - base`. Once a trusted stamp arrives in the same
//! boot, the true base is known and `t + (trusted_base - base)` is the true time (exact up to
//! clock drift). Rows of an earlier boot that never saw a trusted time cannot be placed
//! exactly; they are *estimated* as having ended right before the next boot began (an upper
//! bound: the real times are earlier by the unknown downtime), chained boot by boot.

use std::sync::{Arc, OnceLock};

/// `is_trusted`: true if a wall time (ms since the epoch) is plausible enough to send.
pub use crate::time::{is_trusted, MIN_TRUSTED_UNIX_MS};

/// How a stored batch's read time was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockState {
    /// Read with a trusted wall clock.
    Trusted = 0,
    /// Read with an untrusted clock; held back from the outbox until re-stamped.
    Held = 1,
    /// Re-stamped exactly from monotonic time once a trusted time arrived in the same boot.
    Restamped = 2,
    /// From an earlier boot that never got a trusted time: an upper-bound estimate (see the
    /// module doc). Reported upstream by an event naming the boot and the time range.
    Estimated = 3,
}

impl ClockState {
    pub fn from_code(c: i64) -> ClockState {
        match c {
            0 => ClockState::Trusted,
            1 => ClockState::Held,
            2 => ClockState::Restamped,
            _ => ClockState::Estimated,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClockState::Trusted => "trusted",
            ClockState::Held => "untrusted",
            ClockState::Restamped => "restamped",
            ClockState::Estimated => "estimated",
        }
    }
}

/// The clocks at the moment of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockStamp {
    /// Wall clock, ms since the epoch (may be 1970-ish).
    pub wall_ms: i64,
    /// Monotonic time since boot (CLOCK_BOOTTIME as /proc/uptime shows it), ms.
    pub mono_ms: i64,
    /// /proc/sys/kernel/random/boot_id: which boot `mono_ms` counts from.
    pub boot_id: Arc<str>,
}

impl ClockStamp {
    /// Read the clocks now. Falls back to a process-unique boot id and zero monotonic time if
    /// /proc is unreadable (then untrusted rows can only be estimated, never lost).
    pub fn now() -> ClockStamp {
        static BOOT: OnceLock<Arc<str>> = OnceLock::new();
        let boot_id = BOOT
            .get_or_init(|| {
                std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| format!("no-boot-id-pid-{}", std::process::id()))
                    .into()
            })
            .clone();
        let mono_ms = boottime_ms().unwrap_or(0);
        ClockStamp {
            wall_ms: crate::time::now_ms(),
            mono_ms,
            boot_id,
        }
    }

    /// When this clock believes the machine booted.
    pub fn base(&self) -> i64 {
        self.wall_ms - self.mono_ms
    }

    pub fn trusted(&self) -> bool {
        is_trusted(self.wall_ms)
    }
}

/// Time since boot, suspend included (CLOCK_BOOTTIME: the clock /proc/uptime prints), in ms.
/// One vDSO call where /proc/uptime cost an open, a stat, two reads and a close per commit
/// (bench-results/cpu_profile.txt). None if the kernel refuses it (then 0 is used, as for an
/// unreadable /proc/uptime before).
// `time_t` and `c_long` are 32-bit on some ARM targets: the conversions are not useless there.
#[allow(clippy::useless_conversion)]
pub fn boottime_ms() -> Option<i64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return None;
    }
    i64::from(ts.tv_sec)
        .checked_mul(1000)?
        .checked_add(i64::from(ts.tv_nsec) / 1_000_000)
}

/// `/proc/uptime` ("12345.67 890.12") to ms: the tests' reference for `boottime_ms`.
#[cfg(test)]
pub fn parse_uptime_ms(s: &str) -> Option<i64> {
    let first = s.split_whitespace().next()?;
    let (secs, frac) = first.split_once('.').unwrap_or((first, "0"));
    let secs: i64 = secs.parse().ok()?;
    let frac_ms: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 100,
        2 => frac.parse::<i64>().ok()? * 10,
        _ => frac[..3].parse().ok()?,
    };
    Some(secs * 1000 + frac_ms)
}

/// Correction to add to a time taken with a clock whose base was `untrusted_base`, once the
/// true base of the same boot is known.
pub fn restamp_offset(untrusted_base: i64, trusted_base: i64) -> i64 {
    trusted_base - untrusted_base
}

/// Estimated true bases of earlier boots that never got a trusted time. `anchor` is the true
/// base (start) of the boot that follows the newest of them; `last_mono_newest_first` holds,
/// per orphaned boot from newest to oldest, the largest monotonic time seen in it. Each boot is
/// assumed to have ended right when the next one started (an upper bound), so its base is
/// `anchor - last_mono`, and that base is the anchor of the boot before it.
pub fn estimate_orphan_bases(anchor: i64, last_mono_newest_first: &[i64]) -> Vec<i64> {
    let mut out = Vec::with_capacity(last_mono_newest_first.len());
    let mut a = anchor;
    for &m in last_mono_newest_first {
        a -= m.max(0);
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{from_unix_ms, unix_ms};

    #[test]
    fn trust_floor() {
        for (ms, want) in [
            (0, false),
            (86_400_000, false),
            (MIN_TRUSTED_UNIX_MS - 1, false),
            (MIN_TRUSTED_UNIX_MS, true),
            (1_793_000_000_000, true),
        ] {
            assert_eq!(is_trusted(ms), want, "{ms}");
        }
    }

    #[test]
    fn boottime_agrees_with_proc_uptime() {
        // Read /proc/uptime between two clock readings: it must lie between them (it has
        // centisecond resolution, so allow 10 ms below the first reading).
        let before = boottime_ms().unwrap();
        let text = std::fs::read_to_string("/proc/uptime").unwrap();
        let after = boottime_ms().unwrap();
        let proc_ms = parse_uptime_ms(&text).unwrap();
        assert!(before > 0 && before <= after, "{before} {after}");
        assert!(
            proc_ms + 10 >= before && proc_ms <= after,
            "/proc/uptime {proc_ms} ms outside CLOCK_BOOTTIME [{before}, {after}]"
        );
        let stamp = ClockStamp::now();
        assert!(
            (stamp.mono_ms - proc_ms).abs() < 1000,
            "{} vs {proc_ms}",
            stamp.mono_ms
        );
    }

    #[test]
    fn uptime_parsing() {
        for (s, want) in [
            ("12345.67 890.12\n", Some(12_345_670)),
            ("5.5 1.0", Some(5_500)),
            ("7 1", Some(7_000)),
            ("0.001 0", Some(1)),
            ("", None),
            ("abc 1", None),
        ] {
            assert_eq!(parse_uptime_ms(s), want, "{s:?}");
        }
    }

    #[test]
    fn restamp_math() {
        // (untrusted wall at read, untrusted base, trusted base, want true time)
        let t = MIN_TRUSTED_UNIX_MS + 1_000_000_000;
        let cases = [
            // Booted in 1970 (base 0): read 60 s after boot; boot really began at t.
            (60_000, 0, t, t + 60_000),
            // Clock started at some RTC garbage 1980 value; base says so.
            (315_532_800_000 + 5_000, 315_532_800_000, t, t + 5_000),
            // Already right: offset zero.
            (t + 42, t, t, t + 42),
        ];
        for (read, ub, tb, want) in cases {
            assert_eq!(read + restamp_offset(ub, tb), want, "{read} {ub} {tb}");
        }
    }

    #[test]
    fn orphan_chain() {
        let a = MIN_TRUSTED_UNIX_MS + 10_000_000;
        let cases: [(&[i64], Vec<i64>); 3] = [
            (&[], vec![]),
            // One orphaned boot that lasted 1000 s: it began 1000 s before the current one.
            (&[1_000_000], vec![a - 1_000_000]),
            // Two: the older ended when the newer began.
            (&[1_000_000, 500], vec![a - 1_000_000, a - 1_000_500]),
        ];
        for (monos, want) in cases {
            assert_eq!(estimate_orphan_bases(a, monos), want);
        }
        // A row read at mono 400 000 of the newest orphan lands 600 s before the anchor.
        let base = estimate_orphan_bases(a, &[1_000_000])[0];
        assert_eq!(base + 400_000, a - 600_000);
        assert!(is_trusted(base));
    }

    #[test]
    fn ms_round_trip() {
        for ms in [0, 1, -1, MIN_TRUSTED_UNIX_MS, -86_400_000] {
            assert_eq!(unix_ms(from_unix_ms(ms)), ms);
        }
    }
}
