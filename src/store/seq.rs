//! Sequence numbers that never repeat, never go backwards and stay below 2^53, not even when
//! the database is moved aside and replaced or the side file is damaged.
//!
//! Two records: the high-water mark `seq_hwm` in the database's meta table (updated in the same
//! transaction as each sealed message), and a reservation in the side file
//! `<state_dir>/seq.reserve`. Invariant: every sequence number ever issued is <= the number in
//! the side file. Before `seal` issues a number above the reservation, it writes a new one
//! (`next + BLOCK - 1`) with write-temp, fsync, rename, fsync-directory, so the file is written
//! once per `BLOCK` messages, not per message.
//!
//! Where numbering starts is decided by the pure `start` from every source there is: the
//! database's `seq_hwm` and highest sealed message, the side file, the `seq_hwm` of a database
//! just moved aside (if readable) and the clock floor `clamp(now, 2026, 2200) in ms * 1000`.
//! An existing database continues at `seq_hwm + 1` (no gap on a normal restart); a fresh one
//! (or any case where the side file or `seq_hwm` cannot be trusted) starts above the maximum
//! of every trustworthy source including the clock floor. A value above `SANE_MAX_SEQ` (the
//! clock floor of 2200-01-01) can never have been issued by gasdtu and is garbage, not
//! history. `next_seq` refuses to issue anything above `MAX_SEQ` = 2^53 - 1 (exact in JSON).
//! Reading the side file never fails: missing, unreadable (bounded to `MAX_FILE_BYTES`) and
//! garbage are findings that `start` turns into events. Decisions: docs/store.md.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use thiserror::Error;

use super::clock::MIN_TRUSTED_UNIX_MS;

/// Sequence numbers reserved per side-file write.
pub const BLOCK: u64 = 1000;

pub const FILE_NAME: &str = "seq.reserve";

/// The largest sequence number ever issued: 2^53 - 1, the largest integer every JSON consumer
/// (IEEE double) holds exactly.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// 2200-01-01T00:00:00Z: the clock floor never goes above this (a clock beyond it is broken).
pub const SANE_MAX_UNIX_MS: i64 = 7_258_118_400_000;

/// The largest number gasdtu can have issued: the clock floor of 2200. Anything above it in the
/// side file or `seq_hwm` is garbage; it leaves 1.7e15 numbers of headroom below `MAX_SEQ`.
pub const SANE_MAX_SEQ: u64 = SANE_MAX_UNIX_MS as u64 * 1000;

// The sanity bound leaves headroom below the hard bound.
const _: () = assert!(SANE_MAX_SEQ < MAX_SEQ);

/// At most this many bytes of the side file are read (it holds ~50).
pub const MAX_FILE_BYTES: u64 = 256;

/// Mode of the side file and its temp file.
pub const FILE_MODE: u32 = 0o600;

const HEADER: &str = "gasdtu sequence reservation v1";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SeqError {
    /// The next number would not be exact in JSON: refuse rather than wrap or lose precision.
    #[error("sequence numbers exhausted: the last issued is {hwm}, the next would exceed {MAX_SEQ} (2^53 - 1, the largest exact in JSON); nothing is sealed (repair seq_hwm and seq.reserve)")]
    Exhausted { hwm: u64 },
}

/// The number after `hwm`, if it may be issued.
pub fn next_seq(hwm: u64) -> Result<u64, SeqError> {
    match hwm.checked_add(1) {
        Some(n) if n <= MAX_SEQ => Ok(n),
        _ => Err(SeqError::Exhausted { hwm }),
    }
}

/// The clock floor: `clamp(now, 2026-01-01, 2200-01-01)` in ms × 1000. Every number issued
/// earlier descends from an earlier floor plus fewer than 1000 messages per elapsed ms.
pub fn clock_floor(now_ms: i64) -> u64 {
    now_ms.clamp(MIN_TRUSTED_UNIX_MS, SANE_MAX_UNIX_MS) as u64 * 1000
}

/// If issuing `next` needs a new reservation, the value to reserve (never above `MAX_SEQ`).
pub fn needs_reservation(next: u64, reserved: u64) -> Option<u64> {
    (next > reserved).then(|| next.saturating_add(BLOCK - 1).min(MAX_SEQ))
}

/// What the side file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserve {
    Missing,
    /// Present but not a reservation (or not readable): what was found and why.
    Unreadable(String),
    Value(u64),
}

/// Parse the side file's bytes: the reservation, or why it is not one.
pub fn parse(bytes: &[u8]) -> Result<u64, String> {
    let excerpt = || {
        let t = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
        format!("{t:?}{}", if bytes.len() > 40 { "..." } else { "" })
    };
    let text = std::str::from_utf8(bytes).map_err(|_| format!("not text: {}", excerpt()))?;
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("no reservation header: {}", excerpt()));
    }
    let v = lines.next().unwrap_or("").trim();
    v.parse::<u64>()
        .map_err(|e| format!("reservation {v:?} is not a number ({e})"))
}

/// Read the side file (at most `MAX_FILE_BYTES`). Never fails: problems are findings.
pub fn read(path: &Path) -> Reserve {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Reserve::Missing,
        Err(e) => return Reserve::Unreadable(format!("cannot open: {e}")),
    };
    let mut buf = Vec::new();
    if let Err(e) = f.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf) {
        return Reserve::Unreadable(format!("cannot read: {e}"));
    }
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Reserve::Unreadable(format!("longer than {MAX_FILE_BYTES} bytes"));
    }
    match parse(&buf) {
        Ok(v) => Reserve::Value(v),
        Err(why) => Reserve::Unreadable(why),
    }
}

/// Durably replace the side file with `value` (mode `FILE_MODE`).
pub fn write(path: &Path, value: u64) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("reserve.tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        // A temp file left by an older version may have another mode.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(FILE_MODE))?;
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

/// Everything known at open about numbers issued before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// `meta.seq_hwm` of the database being opened; `None` for a fresh database.
    pub db_hwm: Option<i64>,
    /// The highest `message.seq` in that database.
    pub db_max_message: Option<i64>,
    /// The side file.
    pub reserve: Reserve,
    /// `seq_hwm` of a database moved aside at this open, if it could be read.
    pub prior_hwm: Option<i64>,
    pub now_ms: i64,
}

/// What was wrong with a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The side file is missing beside an existing database.
    Missing,
    Unreadable,
    /// Above `SANE_MAX_SEQ` (or negative): never issued by gasdtu.
    OutOfRange,
    /// The side file is below the database's high-water mark (a stale copy).
    Behind,
}

impl Problem {
    pub fn as_str(&self) -> &'static str {
        match self {
            Problem::Missing => "missing",
            Problem::Unreadable => "unreadable",
            Problem::OutOfRange => "out of range",
            Problem::Behind => "behind database",
        }
    }
}

/// One finding of `start`, reported as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `seq.reserve` or `seq_hwm`.
    pub source: &'static str,
    pub problem: Problem,
    /// What was found (the value, or why it is unreadable).
    pub found: String,
}

/// Where numbering starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The high-water mark to continue from (the next number is `hwm + 1`).
    pub hwm: u64,
    /// The side file's value when it can stay as it is; `None`: rewrite it above `hwm` now.
    pub reserved: Option<u64>,
    /// A fresh database starts from the clock floor (above every other source).
    pub from_clock: bool,
    pub findings: Vec<Finding>,
}

fn in_range(v: i64) -> Option<u64> {
    u64::try_from(v).ok().filter(|v| *v <= SANE_MAX_SEQ)
}

/// The rule "never below anything ever published": decide where numbering starts.
pub fn start(s: &Sources) -> Start {
    let floor = clock_floor(s.now_ms);
    let mut findings = Vec::new();
    let reserve_source = "seq.reserve";
    // The side file's value if it can be trusted (present, readable, in range).
    let reserve = match &s.reserve {
        Reserve::Value(v) if *v <= SANE_MAX_SEQ => Some(*v),
        Reserve::Value(v) => {
            findings.push(Finding {
                source: reserve_source,
                problem: Problem::OutOfRange,
                found: v.to_string(),
            });
            None
        }
        Reserve::Unreadable(why) => {
            findings.push(Finding {
                source: reserve_source,
                problem: Problem::Unreadable,
                found: why.clone(),
            });
            None
        }
        Reserve::Missing => None,
    };
    let reserve_damaged = !findings.is_empty();
    let prior = s.prior_hwm.and_then(in_range).unwrap_or(0);
    let msg = s.db_max_message.and_then(in_range).unwrap_or(0);
    let db = s.db_hwm.map(|h| (h, in_range(h)));
    let (hwm, reserved, from_clock) = match db {
        // A fresh database: above everything, the clock floor included.
        None => {
            let best = reserve.unwrap_or(0).max(prior);
            let hwm = best.max(floor);
            let keep = reserve.filter(|r| *r >= hwm);
            (hwm, keep, floor > best)
        }
        Some((_, Some(h))) => {
            let h = h.max(msg);
            match (&s.reserve, reserve) {
                (_, Some(r)) if r >= h => (h, Some(r), false),
                (_, Some(r)) => {
                    findings.push(Finding {
                        source: reserve_source,
                        problem: Problem::Behind,
                        found: r.to_string(),
                    });
                    (h, None, false)
                }
                (Reserve::Missing, None) => {
                    findings.push(Finding {
                        source: reserve_source,
                        problem: Problem::Missing,
                        found: "no file".into(),
                    });
                    (h, None, false)
                }
                // Damaged side file: it cannot vouch for anything, the clock floor can.
                _ => (h.max(prior).max(floor), None, false),
            }
        }
        Some((raw, None)) => {
            findings.push(Finding {
                source: "seq_hwm",
                problem: Problem::OutOfRange,
                found: raw.to_string(),
            });
            let hwm = reserve.unwrap_or(0).max(msg).max(prior).max(floor);
            (hwm, None, false)
        }
    };
    debug_assert!(!reserve_damaged || reserved.is_none());
    Start {
        hwm,
        reserved,
        from_clock,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_seq_stops_below_2_pow_53() {
        for (hwm, want) in [
            (0, Ok(1)),
            (MAX_SEQ - 1, Ok(MAX_SEQ)),
            (MAX_SEQ, Err(SeqError::Exhausted { hwm: MAX_SEQ })),
            (u64::MAX, Err(SeqError::Exhausted { hwm: u64::MAX })),
            (
                i64::MAX as u64,
                Err(SeqError::Exhausted {
                    hwm: i64::MAX as u64,
                }),
            ),
        ] {
            assert_eq!(next_seq(hwm), want, "{hwm}");
        }
    }

    #[test]
    fn clock_floor_is_clamped() {
        let m = MIN_TRUSTED_UNIX_MS as u64;
        for (now, want) in [
            (MIN_TRUSTED_UNIX_MS + 5, (m + 5) * 1000),
            // A 1970 clock never lowers the floor below 2026.
            (1_000, m * 1000),
            (i64::MIN, m * 1000),
            // A clock beyond 2200 never lifts it above SANE_MAX_SEQ.
            (i64::MAX, SANE_MAX_SEQ),
        ] {
            assert_eq!(clock_floor(now), want, "{now}");
        }
    }

    #[test]
    fn reservation_blocks() {
        for (next, reserved, want) in [
            (1, 0, Some(1000)),
            (1000, 1000, None),
            (1001, 1000, Some(2000)),
            (5, 1000, None),
            (MAX_SEQ - 3, 0, Some(MAX_SEQ)),
            (u64::MAX, 0, Some(MAX_SEQ)),
        ] {
            assert_eq!(needs_reservation(next, reserved), want, "{next} {reserved}");
        }
    }

    #[test]
    fn side_file_round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        assert_eq!(read(&p), Reserve::Missing);
        write(&p, 123_456).unwrap();
        assert_eq!(read(&p), Reserve::Value(123_456));
        std::fs::write(&p, b"\xff\x00garbage").unwrap();
        assert!(matches!(read(&p), Reserve::Unreadable(w) if w.starts_with("not text")));
        std::fs::write(&p, vec![b'1'; 10_000]).unwrap();
        assert!(matches!(read(&p), Reserve::Unreadable(w) if w.contains("longer than")));
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert!(matches!(
            read(&dir.path().join("d")),
            Reserve::Unreadable(_)
        ));
        for t in ["", "123", "gasdtu sequence reservation v1\nx", HEADER] {
            assert!(parse(t.as_bytes()).is_err(), "{t:?}");
        }
        let max = format!("{HEADER}\n{}\n", u64::MAX);
        assert_eq!(parse(max.as_bytes()), Ok(u64::MAX));
        let over = format!("{HEADER}\n18446744073709551616\n");
        assert!(parse(over.as_bytes()).is_err());
    }

    const NOW: i64 = MIN_TRUSTED_UNIX_MS + 100 * 86_400_000;

    fn src(db: Option<i64>, reserve: Reserve) -> Sources {
        Sources {
            db_hwm: db,
            db_max_message: None,
            reserve,
            prior_hwm: None,
            now_ms: NOW,
        }
    }

    fn problems(s: &Start) -> Vec<(&'static str, Problem)> {
        s.findings
            .iter()
            .map(|f| (f.source, f.problem.clone()))
            .collect()
    }

    #[test]
    fn start_table() {
        use Problem::*;
        use Reserve::{Missing as NoFile, Unreadable as Bad, Value as R};
        let floor = clock_floor(NOW);
        let h = floor - 10_000_000; // an existing database, numbered from an older floor
        let bad = || Bad("garbage".into());
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Sources, u64, Option<u64>, Vec<(&str, Problem)>)> = vec![
            // Plain restart: continue at hwm + 1, the reservation stays.
            (
                "restart",
                src(Some(h as i64), R(h + 500)),
                h,
                Some(h + 500),
                vec![],
            ),
            (
                "restart at reservation",
                src(Some(h as i64), R(h)),
                h,
                Some(h),
                vec![],
            ),
            // Stale copy of the side file: the database vouches, repair the file.
            (
                "behind",
                src(Some(h as i64), R(h - 1)),
                h,
                None,
                vec![("seq.reserve", Behind)],
            ),
            (
                "missing beside a database",
                src(Some(h as i64), NoFile),
                h,
                None,
                vec![("seq.reserve", Missing)],
            ),
            // Damaged side file: the clock floor is the lower bound.
            (
                "garbage",
                src(Some(h as i64), bad()),
                floor,
                None,
                vec![("seq.reserve", Unreadable)],
            ),
            (
                "u64::MAX",
                src(Some(h as i64), R(u64::MAX)),
                floor,
                None,
                vec![("seq.reserve", OutOfRange)],
            ),
            (
                "i64::MAX",
                src(Some(h as i64), R(i64::MAX as u64)),
                floor,
                None,
                vec![("seq.reserve", OutOfRange)],
            ),
            (
                "2^53",
                src(Some(h as i64), R(1 << 53)),
                floor,
                None,
                vec![("seq.reserve", OutOfRange)],
            ),
            (
                "just above sane",
                src(Some(h as i64), R(SANE_MAX_SEQ + 1)),
                floor,
                None,
                vec![("seq.reserve", OutOfRange)],
            ),
            // A database ahead of the clock (clock set back) keeps its own numbering.
            (
                "garbage, database ahead of the clock",
                src(Some((floor + 7) as i64), bad()),
                floor + 7,
                None,
                vec![("seq.reserve", Unreadable)],
            ),
            // Fresh database: above the reservation and the clock floor.
            ("fresh, no file", src(None, NoFile), floor, None, vec![]),
            (
                "fresh, reservation ahead of the clock",
                src(None, R(floor + 42)),
                floor + 42,
                Some(floor + 42),
                vec![],
            ),
            (
                "fresh, stale small reservation",
                src(None, R(1000)),
                floor,
                None,
                vec![],
            ),
            (
                "fresh, u64::MAX",
                src(None, R(u64::MAX)),
                floor,
                None,
                vec![("seq.reserve", OutOfRange)],
            ),
            (
                "fresh, garbage",
                src(None, bad()),
                floor,
                None,
                vec![("seq.reserve", Unreadable)],
            ),
            // seq_hwm itself out of range: garbage, restart above every other source.
            (
                "seq_hwm i64::MAX",
                src(Some(i64::MAX), R(h)),
                floor,
                None,
                vec![("seq_hwm", OutOfRange)],
            ),
            (
                "seq_hwm negative (u64::MAX stored)",
                src(Some(-1), R(h)),
                floor,
                None,
                vec![("seq_hwm", OutOfRange)],
            ),
            (
                "both out of range",
                src(Some(i64::MAX), R(u64::MAX)),
                floor,
                None,
                vec![("seq.reserve", OutOfRange), ("seq_hwm", OutOfRange)],
            ),
        ];
        for (what, s, hwm, reserved, want) in cases {
            let st = start(&s);
            assert_eq!((st.hwm, st.reserved), (hwm, reserved), "{what}");
            assert_eq!(problems(&st), want, "{what}");
            assert!(st.hwm <= SANE_MAX_SEQ, "{what}");
        }
    }

    #[test]
    fn start_takes_every_trustworthy_source() {
        let floor = clock_floor(NOW);
        // The moved-aside database's hwm is above the (stale) reservation and the clock.
        let mut s = src(None, Reserve::Value(floor - 5));
        s.prior_hwm = Some((floor + 900) as i64);
        let st = start(&s);
        assert_eq!((st.hwm, st.from_clock), (floor + 900, false));
        // A sealed message above a (tampered) seq_hwm.
        let mut s = src(Some((floor - 50) as i64), Reserve::Value(floor + 10));
        s.db_max_message = Some((floor + 3) as i64);
        assert_eq!(start(&s).hwm, floor + 3);
        // An untrusted clock (1970): the reservation is what protects a fresh database.
        let mut s = src(None, Reserve::Value(clock_floor(0) + 77));
        s.now_ms = 0;
        assert_eq!(start(&s).hwm, clock_floor(0) + 77);
        // A fresh database from the clock says so.
        assert!(start(&src(None, Reserve::Missing)).from_clock);
        assert!(start(&src(None, Reserve::Value(1000))).from_clock);
    }
}
