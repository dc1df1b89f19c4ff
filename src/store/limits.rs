//! The store's bounds: age (`max_age` for all data, `history` for delivered data) and size
//! (`max_bytes` for the main file plus the WAL). Eviction order: delivered history oldest
//! first, then unsent data oldest first; never alarms or events, never entries bound to a
//! sealed (unacknowledged) message. Unsent readings lost this way are counted in meta
//! (`dropped_unsent`, separately from `dropped_expired` for history) and reported upstream by
//! ONE `data_loss` event per enforcement. Freed pages stay on SQLite's freelist and are reused
//! by later commits (no vacuum rewrite, no flash wear); `incremental_vacuum` runs only when the
//! file itself exceeds the cap (e.g. the cap was lowered).

use std::time::SystemTime;

use rusqlite::{Connection, TransactionBehavior};

use super::counters::{Next, Tally};
use super::{add_meta, insert_json, wal_pages, Store, StoreError};
use crate::outbox::EntryKind;
use crate::time::{rfc3339_ms, unix_ms};

/// What one `enforce_limits` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Eviction {
    /// Delivered readings removed from the history (age or space).
    pub expired_history: u64,
    /// Unsent readings removed (lost; reported upstream).
    pub dropped_unsent: u64,
    /// Read-time range (ms) of the dropped unsent readings with a trusted time.
    pub dropped_range: Option<(i64, i64)>,
    /// The queued `data_loss` event, if any.
    pub event_id: Option<i64>,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Still above the cap after evicting every evictable row (alarms, events and sealed
    /// messages fill it).
    pub over_cap: bool,
}

/// Rows deleted per step while shrinking.
const STEP: i64 = 256;

struct Loss {
    readings: i64,
    untrusted: i64,
    range: Option<(i64, i64)>,
}

impl Loss {
    fn add(&mut self, readings: i64, untrusted: i64, lo: Option<i64>, hi: Option<i64>) {
        self.readings += readings;
        self.untrusted += untrusted;
        if let (Some(lo), Some(hi)) = (lo, hi) {
            self.range = Some(match self.range {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
        }
    }
}

/// Readings and trusted read-time range of the rows selected by `filter`, then delete them
/// (and account for them in `next`).
fn take(
    tx: &Connection,
    filter: &str,
    params: &[&dyn rusqlite::ToSql],
    next: &mut Next,
) -> rusqlite::Result<(i64, i64, Option<i64>, Option<i64>)> {
    let t = Tally::of(tx, &format!("id IN ({filter})"), params)?;
    next.delete(&t);
    let stats: (i64, i64, Option<i64>, Option<i64>) = tx.query_row(
        &format!(
            "SELECT COALESCE(SUM(readings), 0), \
                    COALESCE(SUM(CASE WHEN status = 3 THEN readings END), 0), \
                    MIN(CASE WHEN status != 3 THEN read_ms END), \
                    MAX(CASE WHEN status != 3 THEN read_ms END) \
             FROM entry WHERE id IN ({filter})"
        ),
        params,
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    tx.execute(&format!("DELETE FROM entry WHERE id IN ({filter})"), params)?;
    Ok(stats)
}

fn used_bytes(tx: &Connection) -> rusqlite::Result<u64> {
    let (pages, free, size): (i64, i64, i64) = tx.query_row(
        "SELECT (SELECT page_count FROM pragma_page_count), \
                (SELECT freelist_count FROM pragma_freelist_count), \
                (SELECT page_size FROM pragma_page_size)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(((pages - free).max(0) * size) as u64)
}

impl Store {
    /// Apply the age and size bounds as of `now`. Call it periodically (e.g. every minute)
    /// and after large commits; it is cheap when nothing is over.
    pub fn enforce_limits(&self, now: SystemTime) -> Result<Eviction, StoreError> {
        let mut ev = Eviction {
            bytes_before: self.bytes_on_disk(),
            ..Eviction::default()
        };
        let cap = self.cfg.max_bytes;
        // The WAL is checkpointed at `wal_pages` and truncated back to that size, but one
        // transaction can overshoot before the checkpoint: reserve twice that for it.
        let wal_reserve = 2 * wal_pages(cap) * 4096;
        let budget = cap.saturating_sub(wal_reserve).max(64 * 1024);
        let now_ms = unix_ms(now);
        let hist_cut = now_ms - self.cfg.history.min(self.cfg.max_age).as_millis() as i64;
        let age_cut = now_ms - self.cfg.max_age.as_millis() as i64;

        let mut g = self.lock();
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin eviction"))?;
        let mut next = self.next_stats();
        let mut history = 0i64;
        let mut lost = Loss {
            readings: 0,
            untrusted: 0,
            range: None,
        };
        let mut reasons = Vec::new();

        // Age: delivered history past `history`, unsent data past `max_age` (held rows have no
        // trustworthy time yet and are left to the size bound).
        let (n, ..) = take(
            &tx,
            "SELECT id FROM entry WHERE kind = 2 AND status = 2 AND read_ms < ?1",
            &[&hist_cut],
            &mut next,
        )
        .map_err(self.sql("age eviction"))?;
        history += n;
        let (n, u, lo, hi) = take(
            &tx,
            "SELECT id FROM entry WHERE kind = 2 AND status = 0 AND read_ms < ?1",
            &[&age_cut],
            &mut next,
        )
        .map_err(self.sql("age eviction"))?;
        if n > 0 {
            reasons.push("max_age");
        }
        lost.add(n, u, lo, hi);

        // Size.
        // Evict from 90 % of the budget down to 80 %: freed pages are reused, so the file's
        // high-water mark stays near 90 % plus what is committed between two calls.
        let mut used = used_bytes(&tx).map_err(self.sql("size"))?;
        if used > budget / 10 * 9 {
            let target = budget / 10 * 8;
            let classes = [
                (
                    "SELECT id FROM entry WHERE kind = 2 AND status = 2 ORDER BY id LIMIT ?1",
                    true,
                ),
                (
                    "SELECT id FROM entry WHERE kind = 2 AND status IN (0, 3) ORDER BY id LIMIT ?1",
                    false,
                ),
            ];
            for (filter, is_history) in classes {
                while used > target {
                    let (n, u, lo, hi) = take(&tx, filter, &[&STEP], &mut next)
                        .map_err(self.sql("size eviction"))?;
                    if n == 0 {
                        // Batches without samples count 0 readings: check rows, not readings.
                        let left: bool = tx
                            .query_row(&format!("SELECT EXISTS ({filter})"), [STEP], |r| r.get(0))
                            .map_err(self.sql("size eviction"))?;
                        if !left {
                            break;
                        }
                    }
                    if is_history {
                        history += n;
                    } else {
                        if !reasons.contains(&"max_bytes") {
                            reasons.push("max_bytes");
                        }
                        lost.add(n, u, lo, hi);
                    }
                    used = used_bytes(&tx).map_err(self.sql("size"))?;
                }
            }
            ev.over_cap = used > budget;
        }

        if history > 0 {
            add_meta(&tx, "dropped_expired", history).map_err(self.sql("meta"))?;
            next.s.dropped_expired += history as u64;
        }
        if lost.readings > 0 {
            add_meta(&tx, "dropped_unsent", lost.readings).map_err(self.sql("meta"))?;
            next.s.dropped_unsent += lost.readings as u64;
            let total = super::get_meta(&tx, "dropped_unsent")
                .map_err(self.sql("meta"))?
                .unwrap_or(0);
            let event = serde_json::json!({
                "event": "data_loss",
                "readings": lost.readings,
                "untrusted_readings": lost.untrusted,
                "from": lost.range.map(|r| rfc3339_ms(r.0)),
                "to": lost.range.map(|r| rfc3339_ms(r.1)),
                "reason": reasons.join(","),
                "dropped_total": total,
            });
            ev.event_id = Some(
                insert_json(&tx, EntryKind::Event, &event, now_ms)
                    .map_err(self.sql("loss event"))?,
            );
            next.insert_json();
            tracing::warn!(readings = lost.readings, reason = %reasons.join(","),
                "store bound reached: oldest unsent readings evicted");
        }
        next.refresh(&tx).map_err(self.sql("eviction statistics"))?;
        tx.commit().map_err(self.sql("commit eviction"))?;
        self.publish_stats(next);
        ev.expired_history = history as u64;
        ev.dropped_unsent = lost.readings as u64;
        ev.dropped_range = lost.range;

        let file_len = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if history > 0 || lost.readings > 0 || file_len > budget {
            // Shrink the file only if its high-water mark exceeds the budget (more was
            // committed between two calls than the 10 % headroom, or the cap was lowered);
            // otherwise the free pages are simply reused. Then give the WAL space back.
            if file_len > budget {
                g.conn
                    .execute_batch("PRAGMA incremental_vacuum")
                    .map_err(self.sql("incremental_vacuum"))?;
            }
            // Busy readers make this a partial checkpoint; that is fine.
            let _ = g
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        drop(g);
        ev.bytes_after = self.bytes_on_disk();
        Ok(ev)
    }
}
