//! Sequence numbers that never repeat, not even when the database is moved aside and replaced.
//!
//! Two records: the high-water mark `seq_hwm` in the database's meta table (updated in the same
//! transaction as each sealed message), and a reservation in the side file
//! `<state_dir>/seq.reserve`. Invariant: every sequence number ever issued is <= the number in
//! the side file. Before `seal` issues a number above the reservation, it writes a new one
//! (`next + BLOCK - 1`) with write-temp, fsync, rename, fsync-directory, so the file is written
//! once per `BLOCK` messages, not per message.
//!
//! Where a database starts: an existing one continues at `seq_hwm + 1` (no gap on a normal
//! restart). A fresh database (first install, or the old one moved aside as corrupt) starts
//! above the side file's reservation. If the side file is gone too, it starts above
//! `max(now, 2026-01-01) in ms * 1000`: every earlier number was issued at a rate below 1000
//! per ms since an earlier such floor, so this is above all of them provided the wall clock is
//! not behind the time the older floor was taken (a sane clock). These numbers stay below
//! 2^53 (exact in JSON/JavaScript) until about the year 2255.

use std::io::Write;
use std::path::Path;

use super::clock::MIN_TRUSTED_UNIX_MS;

/// Sequence numbers reserved per side-file write.
pub const BLOCK: u64 = 1000;

pub const FILE_NAME: &str = "seq.reserve";

const HEADER: &str = "gasdtu sequence reservation v1";

/// The high-water mark a fresh database starts from (the first message gets this + 1).
pub fn fresh_hwm(reserved: Option<u64>, now_ms: i64) -> u64 {
    match reserved {
        Some(r) => r,
        None => (now_ms.max(MIN_TRUSTED_UNIX_MS) as u64).saturating_mul(1000),
    }
}

/// If issuing `next` needs a new reservation, the value to reserve.
pub fn needs_reservation(next: u64, reserved: u64) -> Option<u64> {
    (next > reserved).then(|| next.saturating_add(BLOCK - 1))
}

/// Parse the side file's text. `None` if it does not hold a reservation.
pub fn parse(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    lines.next()?.trim().parse().ok()
}

/// Read the side file: `Ok(None)` if it is missing or unreadable as a reservation.
pub fn read(path: &Path) -> std::io::Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(parse(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

/// Durably replace the side file with `value`.
pub fn write(path: &Path, value: u64) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("reserve.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{HEADER}\n{value}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// fsync a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_start_points() {
        let now = MIN_TRUSTED_UNIX_MS + 5;
        for (reserved, now_ms, want) in [
            (Some(7_000), now, 7_000),
            (None, now, (MIN_TRUSTED_UNIX_MS as u64 + 5) * 1000),
            // A 1970 clock never lowers the floor below 2026.
            (None, 1_000, MIN_TRUSTED_UNIX_MS as u64 * 1000),
        ] {
            assert_eq!(fresh_hwm(reserved, now_ms), want);
        }
    }

    #[test]
    fn reservation_blocks() {
        for (next, reserved, want) in [
            (1, 0, Some(1000)),
            (1000, 1000, None),
            (1001, 1000, Some(2000)),
            (5, 1000, None),
        ] {
            assert_eq!(needs_reservation(next, reserved), want, "{next} {reserved}");
        }
    }

    #[test]
    fn side_file_round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        assert_eq!(read(&p).unwrap(), None);
        write(&p, 123_456).unwrap();
        assert_eq!(read(&p).unwrap(), Some(123_456));
        std::fs::write(&p, b"\xff\x00garbage").unwrap();
        assert_eq!(read(&p).unwrap(), None);
        for t in ["", "123", "gasdtu sequence reservation v1\nx", HEADER] {
            assert_eq!(parse(t), None, "{t:?}");
        }
    }
}
