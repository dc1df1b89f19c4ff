//! Pure poll scheduling: wall-clock aligned slots. A device with a 5 minute interval polls at
//! :00, :05, :10 ... (plus its phase offset), whatever time the daemon started, so readings of
//! many gateways line up and a restart does not shift the grid. No I/O, no clock reads: the
//! current time is an argument.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first slot strictly after `now` on the grid `k * interval + phase` (since the Unix
/// epoch, UTC). An interval of zero is treated as one second.
pub fn next_slot(now: SystemTime, interval: Duration, phase: Duration) -> SystemTime {
    let iv = interval.as_millis().max(1000);
    let ph = phase.as_millis() % iv;
    let t = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    // Slots are ph, ph+iv, ph+2iv ...; find the first one > t.
    let k = if t < ph { 0 } else { (t - ph) / iv + 1 };
    let slot = k * iv + ph;
    UNIX_EPOCH + Duration::from_millis(slot as u64)
}

/// The slot that follows `slot` for a poll that ended at `now`: normally `slot + interval`, but
/// if the poll overran whole slots, the first slot after `now` (missed slots are skipped, not
/// polled in a burst). Returns the next slot and how many slots were skipped.
pub fn after(
    slot: SystemTime,
    now: SystemTime,
    interval: Duration,
    phase: Duration,
) -> (SystemTime, u64) {
    let iv = interval.max(Duration::from_secs(1));
    let plain = slot + iv;
    if plain > now {
        return (plain, 0);
    }
    let next = next_slot(now, iv, phase);
    let skipped = next
        .duration_since(plain)
        .map(|d| (d.as_millis() / iv.as_millis().max(1)) as u64)
        .unwrap_or(0);
    (next, skipped)
}

/// A scheduled `next` slot checked against the wall clock `now`: if it lies more than one
/// interval ahead, the clock went back (a network-corrected clock cleared, NTP stepping back)
/// and waiting for it would stall the device; the first slot after `now` is used instead.
pub fn resync(
    next: SystemTime,
    now: SystemTime,
    interval: Duration,
    phase: Duration,
) -> SystemTime {
    let iv = interval.max(Duration::from_secs(1));
    match next.duration_since(now) {
        Ok(ahead) if ahead > iv => next_slot(now, iv, phase),
        _ => next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }
    const S: u64 = 1000;
    const M: u64 = 60 * S;

    #[test]
    fn slots_align_to_the_wall_clock() {
        // (now ms, interval ms, phase ms, expected slot ms)
        let cases: &[(u64, u64, u64, u64)] = &[
            (0, 5 * M, 0, 5 * M),
            (1, 5 * M, 0, 5 * M),
            (5 * M - 1, 5 * M, 0, 5 * M),
            (5 * M, 5 * M, 0, 10 * M), // strictly after
            (7 * M + 13, 5 * M, 0, 10 * M),
            (7 * M, 5 * M, 30 * S, 10 * M + 30 * S),
            (10 * M + 10 * S, 5 * M, 30 * S, 10 * M + 30 * S),
            (10 * M + 30 * S, 5 * M, 30 * S, 15 * M + 30 * S),
            (10 * S, 5 * M, 30 * S, 30 * S), // before the first phased slot
            (1_700_000_000_123, 10 * S, 0, 1_700_000_010_000),
            (1_700_000_000_123, S, 0, 1_700_000_001_000),
            (1_700_000_000_123, 0, 0, 1_700_000_001_000), // zero interval treated as 1 s
            (
                1_700_000_000_000,
                5 * M,
                7 * M,
                1_700_000_000_000 - 200 * S + 2 * M + 5 * M,
            ), // phase >= interval wraps
        ];
        for &(now, iv, ph, want) in cases {
            let got = next_slot(t(now), Duration::from_millis(iv), Duration::from_millis(ph));
            assert_eq!(got, t(want), "now={now} interval={iv} phase={ph}");
        }
    }

    #[test]
    fn overrun_skips_missed_slots() {
        let iv = Duration::from_secs(60);
        // Poll of the 10:00 slot ended at 10:00:05: next is 10:01, nothing skipped.
        assert_eq!(
            after(t(10 * M), t(10 * M + 5 * S), iv, Duration::ZERO),
            (t(11 * M), 0)
        );
        // Ended at 10:03:20: 10:01, 10:02 and 10:03 are skipped, next is 10:04.
        assert_eq!(
            after(t(10 * M), t(13 * M + 20 * S), iv, Duration::ZERO),
            (t(14 * M), 3)
        );
    }

    #[test]
    fn a_clock_that_went_back_resyncs() {
        let iv = Duration::from_secs(60);
        // (next, now, want)
        let cases = [
            // Due soon or already due: unchanged.
            (t(11 * M), t(10 * M + 5 * S), t(11 * M)),
            (t(11 * M), t(12 * M), t(11 * M)),
            (t(11 * M), t(10 * M), t(11 * M)),
            // A year ahead of the clock: the next slot after now.
            (t(525_600 * M), t(10 * M + 5 * S), t(11 * M)),
        ];
        for (next, now, want) in cases {
            assert_eq!(resync(next, now, iv, Duration::ZERO), want);
        }
    }
}
