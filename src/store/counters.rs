//! O(1) buffer statistics. `Store::stats()` is called by the watchdog and the status socket
//! every few seconds; scanning the entry table for it took 86 ms at 32 MiB and seconds at the
//! 512 MiB default on ARM, under the connection mutex. Instead the store computes the numbers
//! once at open (`scan`, one pass) and every mutation (commit, seal, ack, eviction, re-stamp)
//! computes the next values inside its own transaction and publishes them only after the
//! transaction committed, into a separate small mutex that `stats()` reads without touching
//! SQLite.
//!
//! Counts are plain arithmetic on what the mutation did. The three read-time extremes are not:
//! removing the row that held the minimum needs the next one. That is found with the
//! `entry_read (read_ms) WHERE kind = 2` index, walking *from the old minimum* upwards (every
//! remaining candidate is at or above it), so the walk only passes rows that lie between the
//! old and the new minimum and are not candidates: amortised, about the rows the mutation
//! itself touched (e.g. a backlog drained oldest first passes the rows it just acknowledged).
//! `scan` stays for read-only stores (`gasdtu queue` in another process) and as the test
//! oracle.

use rusqlite::{Connection, OptionalExtension};

use super::get_meta;
use super::StoreStats;

/// The full scan (open, read-only stores, tests). `bytes_on_disk` is left at 0.
pub(crate) fn scan(c: &Connection, seq_hwm: u64) -> rusqlite::Result<StoreStats> {
    let mut s = StoreStats {
        sealed_messages: c.query_row("SELECT COUNT(*) FROM message", [], |r| r.get::<_, i64>(0))?
            as u64,
        ..StoreStats::default()
    };
    let (pe, he, pr, hr, op): (i64, i64, i64, i64, Option<i64>) = c.query_row(
        "SELECT \
           COALESCE(SUM(status = 0), 0), \
           COALESCE(SUM(status = 3), 0), \
           COALESCE(SUM(CASE WHEN kind = 2 AND status IN (0, 1, 3) THEN readings END), 0), \
           COALESCE(SUM(CASE WHEN status = 2 THEN readings END), 0), \
           MIN(CASE WHEN kind = 2 AND status IN (0, 1) THEN read_ms END) \
         FROM entry",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    s.pending_entries = pe as u64;
    s.held_entries = he as u64;
    s.pending_readings = pr as u64;
    s.history_readings = hr as u64;
    s.oldest_pending_read_ms = op;
    let (lo, hi): (Option<i64>, Option<i64>) = c.query_row(
        "SELECT MIN(read_ms), MAX(read_ms) FROM entry WHERE kind = 2 AND status != 3",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    s.oldest_read_ms = lo;
    s.newest_read_ms = hi;
    s.seq_hwm = get_meta(c, "seq_hwm")?.unwrap_or(seq_hwm as i64) as u64;
    s.dropped_unsent = get_meta(c, "dropped_unsent")?.unwrap_or(0) as u64;
    s.dropped_expired = get_meta(c, "dropped_expired")?.unwrap_or(0) as u64;
    s.last_ack_ms = get_meta(c, "last_ack_ms")?;
    Ok(s)
}

/// `Tally::of_messages`'s statement (messages `?1..=?2`; one message is `?1 = ?2`).
pub(crate) const MESSAGE_TALLY: &str = "SELECT COUNT(*), COALESCE(SUM(readings), 0), \
     MIN(CASE WHEN kind = 2 THEN read_ms END), MAX(CASE WHEN kind = 2 THEN read_ms END) \
     FROM entry WHERE msg_seq BETWEEN ?1 AND ?2 AND status = 1";

/// What a set of rows holds, per status (0 pending, 1 sealed, 2 delivered, 3 held).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub entries: [u64; 4],
    /// Readings (only data rows carry readings; alarm/event rows have 0).
    pub readings: [u64; 4],
    /// Smallest and largest read time of the data rows.
    pub min_read: [Option<i64>; 4],
    pub max_read: [Option<i64>; 4],
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Tally {
    /// Tally the rows `WHERE <filter>` (call before deleting or updating them).
    pub fn of(
        tx: &Connection,
        filter: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> rusqlite::Result<Tally> {
        let mut t = Tally::default();
        let mut st = tx.prepare_cached(&format!(
            "SELECT status, COUNT(*), COALESCE(SUM(readings), 0), \
                    MIN(CASE WHEN kind = 2 THEN read_ms END), \
                    MAX(CASE WHEN kind = 2 THEN read_ms END) \
             FROM entry WHERE {filter} GROUP BY status"
        ))?;
        let mut rows = st.query(params)?;
        while let Some(r) = rows.next()? {
            let status: i64 = r.get(0)?;
            let Some(i) = usize::try_from(status).ok().filter(|i| *i < 4) else {
                continue;
            };
            t.entries[i] += r.get::<_, i64>(1)?.max(0) as u64;
            t.readings[i] += r.get::<_, i64>(2)?.max(0) as u64;
            t.min_read[i] = min_opt(t.min_read[i], r.get(3)?);
            t.max_read[i] = max_opt(t.max_read[i], r.get(4)?);
        }
        Ok(t)
    }

    /// `of("msg_seq = seq")` for an acknowledgement: the rows bound to a sealed message are
    /// all sealed (status 1) until it is retired, so one aggregate row answers it without
    /// the `GROUP BY` sorter (the sorter was most of the cost of every PUBACK, issue 13).
    pub fn of_message(tx: &Connection, seq: i64) -> rusqlite::Result<Tally> {
        Tally::of_messages(tx, seq, seq)
    }

    /// `of_message` summed over the messages numbered `lo..=hi` (one statement for a burst
    /// of PUBACKs instead of one per message, issue 13). Sums and extremes of the rows bound
    /// to them, as if each message's tally had been added.
    pub fn of_messages(tx: &Connection, lo: i64, hi: i64) -> rusqlite::Result<Tally> {
        let mut t = Tally::default();
        tx.prepare_cached(MESSAGE_TALLY)?.query_row([lo, hi], |r| {
            t.entries[1] = r.get::<_, i64>(0)?.max(0) as u64;
            t.readings[1] = r.get::<_, i64>(1)?.max(0) as u64;
            t.min_read[1] = r.get(2)?;
            t.max_read[1] = r.get(3)?;
            Ok(())
        })?;
        Ok(t)
    }

    fn min_of(&self, statuses: &[usize]) -> Option<i64> {
        statuses
            .iter()
            .fold(None, |m, &i| min_opt(m, self.min_read[i]))
    }

    fn max_of(&self, statuses: &[usize]) -> Option<i64> {
        statuses
            .iter()
            .fold(None, |m, &i| max_opt(m, self.max_read[i]))
    }
}

/// Which extremes a removal may have taken away (to be found again by `refresh`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stale {
    oldest_pending: bool,
    oldest: bool,
    newest: bool,
}

/// The next statistics being computed by one transaction.
#[derive(Debug, Clone)]
pub(crate) struct Next {
    pub s: StoreStats,
    stale: Stale,
    /// The extremes before the first removal (where `refresh` walks from).
    from: (Option<i64>, Option<i64>, Option<i64>),
}

impl Next {
    pub fn new(s: StoreStats) -> Next {
        let from = (s.oldest_pending_read_ms, s.oldest_read_ms, s.newest_read_ms);
        Next {
            s,
            stale: Stale::default(),
            from,
        }
    }

    /// A data row was inserted with `status` (0, 2 or 3).
    pub fn insert_data(&mut self, status: i64, readings: u64, read_ms: i64) {
        let s = &mut self.s;
        match status {
            0 => {
                s.pending_entries += 1;
                s.pending_readings += readings;
                s.oldest_pending_read_ms = min_opt(s.oldest_pending_read_ms, Some(read_ms));
            }
            2 => s.history_readings += readings,
            _ => {
                s.held_entries += 1;
                s.pending_readings += readings;
                return; // held rows are in no read-time range
            }
        }
        s.oldest_read_ms = min_opt(s.oldest_read_ms, Some(read_ms));
        s.newest_read_ms = max_opt(s.newest_read_ms, Some(read_ms));
    }

    /// An alarm or event entry was inserted (pending).
    pub fn insert_json(&mut self) {
        self.s.pending_entries += 1;
    }

    /// Held rows were released (status 3 → 0) with these re-stamped read times.
    pub fn release(&mut self, entries: u64, min_read: Option<i64>, max_read: Option<i64>) {
        let s = &mut self.s;
        s.held_entries = s.held_entries.saturating_sub(entries);
        s.pending_entries += entries;
        s.oldest_pending_read_ms = min_opt(s.oldest_pending_read_ms, min_read);
        s.oldest_read_ms = min_opt(s.oldest_read_ms, min_read);
        s.newest_read_ms = max_opt(s.newest_read_ms, max_read);
    }

    /// Delivered data rows became pending again (`resend_history`): `entries` rows holding
    /// `readings` readings, the earliest read at `min_read`. They were in the read-time range
    /// already, so only the pending extreme moves.
    pub fn resend(&mut self, entries: u64, readings: u64, min_read: Option<i64>) {
        let s = &mut self.s;
        s.history_readings = s.history_readings.saturating_sub(readings);
        s.pending_entries += entries;
        s.pending_readings += readings;
        s.oldest_pending_read_ms = min_opt(s.oldest_pending_read_ms, min_read);
    }

    /// `entries` pending entries were sealed into message `seq`.
    pub fn seal(&mut self, entries: u64, seq: u64) {
        self.s.pending_entries = self.s.pending_entries.saturating_sub(entries);
        self.s.sealed_messages += 1;
        self.s.seq_hwm = seq;
    }

    /// The rows tallied in `t` were deleted.
    pub fn delete(&mut self, t: &Tally) {
        let s = &mut self.s;
        s.pending_entries = s.pending_entries.saturating_sub(t.entries[0]);
        s.held_entries = s.held_entries.saturating_sub(t.entries[3]);
        s.pending_readings = s
            .pending_readings
            .saturating_sub(t.readings[0] + t.readings[1] + t.readings[3]);
        s.history_readings = s.history_readings.saturating_sub(t.readings[2]);
        self.stale_if(
            t.min_of(&[0, 1]),
            t.min_of(&[0, 1, 2]),
            t.max_of(&[0, 1, 2]),
        );
    }

    /// The sealed rows tallied in `t` were acknowledged: data rows became history, the others
    /// (alarms, events) were deleted; `messages` message rows were deleted.
    pub fn ack(&mut self, t: &Tally, messages: u64, now_ms: i64) {
        let s = &mut self.s;
        s.pending_readings = s.pending_readings.saturating_sub(t.readings[1]);
        s.history_readings += t.readings[1];
        s.sealed_messages = s.sealed_messages.saturating_sub(messages);
        if messages > 0 {
            s.last_ack_ms = Some(now_ms);
        }
        // Sealed and delivered rows are both in the whole range: only the unacked one moves.
        self.stale_if(t.min_read[1], None, None);
    }

    /// The oldest pending read time must be recomputed (deferred acknowledgements written).
    pub fn stale_oldest_pending(&mut self) {
        self.stale.oldest_pending = true;
    }

    /// Recompute the oldest pending read time if it went stale, not counting the rows of the
    /// messages in `skip` (acknowledged, rows not written yet: see `deferred`). Only this
    /// value: the caller removed nothing else.
    pub fn refresh_pending_skipping(
        &mut self,
        c: &Connection,
        skip: &[u64],
    ) -> rusqlite::Result<()> {
        if !std::mem::take(&mut self.stale.oldest_pending) {
            return Ok(());
        }
        let Some(from) = self.from.0 else {
            self.s.oldest_pending_read_ms = None;
            return Ok(());
        };
        let mut st = c.prepare_cached(
            "SELECT read_ms, msg_seq FROM entry INDEXED BY entry_read \
             WHERE kind = 2 AND read_ms >= ?1 AND status IN (0, 1) ORDER BY read_ms",
        )?;
        let mut rows = st.query([from])?;
        let mut found = None;
        while let Some(r) = rows.next()? {
            let seq: Option<i64> = r.get(1)?;
            if seq.is_some_and(|q| skip.contains(&(q as u64))) {
                continue;
            }
            found = Some(r.get(0)?);
            break;
        }
        self.s.oldest_pending_read_ms = found;
        Ok(())
    }

    fn stale_if(&mut self, pending_min: Option<i64>, min: Option<i64>, max: Option<i64>) {
        let s = &self.s;
        let hit = |removed: Option<i64>, cur: Option<i64>| matches!((removed, cur), (Some(r), Some(c)) if r == c);
        self.stale.oldest_pending |= hit(pending_min, s.oldest_pending_read_ms);
        self.stale.oldest |= hit(min, s.oldest_read_ms);
        self.stale.newest |= hit(max, s.newest_read_ms);
    }

    /// Find the extremes a removal took away (inside the transaction, after the removals).
    /// Only removals may precede this in a transaction that calls it (no inserts below the
    /// old minimum), which holds for ack and eviction.
    pub fn refresh(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        let one = |sql: &str, from: Option<i64>| -> rusqlite::Result<Option<i64>> {
            match from {
                None => Ok(None),
                Some(f) => tx
                    .prepare_cached(sql)?
                    .query_row([f], |r| r.get(0))
                    .optional(),
            }
        };
        if self.stale.oldest_pending {
            self.s.oldest_pending_read_ms = one(
                "SELECT read_ms FROM entry INDEXED BY entry_read \
                 WHERE kind = 2 AND read_ms >= ?1 AND status IN (0, 1) \
                 ORDER BY read_ms LIMIT 1",
                self.from.0,
            )?;
        }
        if self.stale.oldest {
            self.s.oldest_read_ms = one(
                "SELECT read_ms FROM entry INDEXED BY entry_read \
                 WHERE kind = 2 AND read_ms >= ?1 AND status != 3 \
                 ORDER BY read_ms LIMIT 1",
                self.from.1,
            )?;
        }
        if self.stale.newest {
            self.s.newest_read_ms = one(
                "SELECT read_ms FROM entry INDEXED BY entry_read \
                 WHERE kind = 2 AND read_ms <= ?1 AND status != 3 \
                 ORDER BY read_ms DESC LIMIT 1",
                self.from.2,
            )?;
        }
        self.stale = Stale::default();
        self.from = (
            self.s.oldest_pending_read_ms,
            self.s.oldest_read_ms,
            self.s.newest_read_ms,
        );
        Ok(())
    }
}
