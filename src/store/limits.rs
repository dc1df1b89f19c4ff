//! The store's bounds: age (`max_age` for all data, `history` for delivered data) and size
//! (`max_bytes` for the main file plus the WAL). Eviction order: delivered history oldest
//! first, then unsent data oldest first; never alarms or events, never entries bound to a
//! sealed (unacknowledged) message. Unsent readings lost this way are counted in meta
//! (`dropped_unsent`, separately from `dropped_expired` for history) and reported upstream by
//! ONE `data_loss` event per enforcement. Freed pages stay on SQLite's freelist and are reused
//! by later commits (no vacuum rewrite, no flash wear); `incremental_vacuum` runs only when the
//! file itself exceeds the cap (e.g. the cap was lowered). The same transaction purges old
//! remote command rows (`commands::purge_in`: expired more than a day ago, 10,000 at most).

use std::sync::atomic::Ordering;
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
    /// The cap applied: `max_bytes` clamped to what the file system holds (`space`).
    pub max_bytes: u64,
    /// The file system was full: the ballast was given up and one small step evicted.
    pub disk_full: bool,
    /// Remote command rows purged (expired more than a day ago, or beyond the row cap).
    pub purged_commands: u64,
}

/// Rows deleted per step while shrinking.
const STEP: i64 = 256;
/// Rows deleted by the one step of an eviction on a full disk.
const EMERGENCY_STEP: i64 = 64;

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
    /// Recompute the size cap from the file system (see `space`); logs when it moves.
    fn clamp_cap(&self, store_bytes: u64) -> u64 {
        let configured = self.cfg.max_bytes;
        let dir = self.dir();
        let cap = match super::space::fs_space(dir) {
            Ok(sp) => super::space::effective_cap(configured, store_bytes, sp),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e,
                    "cannot measure the store's file system; keeping the last size cap");
                return self.max_bytes();
            }
        };
        let old = self.cap.swap(cap, Ordering::Relaxed);
        // Log moves of more than 1/16 (free space drifts with every commit of others).
        if old.abs_diff(cap) > old / 16 {
            if cap < configured {
                tracing::warn!(
                    configured,
                    effective = cap,
                    was = old,
                    "store size cap clamped to what the file system can hold"
                );
            } else {
                tracing::info!(
                    configured,
                    was = old,
                    "store size cap back to the configured value"
                );
            }
        }
        cap
    }

    /// Apply the age and size bounds as of `now`. Call it periodically (e.g. every minute),
    /// after large commits, and at once when a commit failed with `StoreError::Full`; it is
    /// cheap when nothing is over. On a disk filled to the last byte by something else the
    /// eviction itself cannot commit: then the ballast (see `space`) is deleted to give it
    /// room, and written again by a later call once the space is back.
    pub fn enforce_limits(&self, now: SystemTime) -> Result<Eviction, StoreError> {
        let dir = self.dir().to_path_buf();
        let ev = match self.enforce_once(now, false) {
            Err(StoreError::Full { .. }) => {
                if let Ok(freed) = super::space::release_ballast(&dir) {
                    if freed > 0 {
                        tracing::warn!(freed, dir = %dir.display(),
                            "disk full: ballast deleted to make room for evicting the oldest data");
                    }
                }
                // One small eviction step: a transaction that fits in what the WAL and the
                // ballast left; the next `Full` takes the next step.
                let mut ev = self.enforce_once(now, true)?;
                ev.disk_full = true;
                ev
            }
            r => r?,
        };
        if !ev.over_cap {
            match super::space::ensure_ballast(&dir) {
                Ok(true) => tracing::info!(dir = %dir.display(), "store ballast written again"),
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "store ballast not written"),
            }
        }
        Ok(ev)
    }

    fn dir(&self) -> &std::path::Path {
        self.path.parent().unwrap_or(std::path::Path::new("."))
    }

    /// One enforcement in one transaction; `emergency` (disk full) evicts at most one small
    /// step and skips the file shrink.
    fn enforce_once(&self, now: SystemTime, emergency: bool) -> Result<Eviction, StoreError> {
        let mut ev = Eviction {
            bytes_before: self.bytes_on_disk(),
            ..Eviction::default()
        };
        let cap = self.clamp_cap(ev.bytes_before + super::space::ballast_bytes(self.dir()));
        ev.max_bytes = cap;
        // The WAL is checkpointed at `wal_pages` and truncated back to that size, but one
        // transaction can overshoot before the checkpoint: reserve twice that for it.
        // A WAL frame is a page plus a 24-byte header (the file has a 32-byte header).
        let wal_reserve = 2 * wal_pages(cap, self.page_size) * (self.page_size + 24) + 32;
        let budget = cap.saturating_sub(wal_reserve).max(64 * 1024);
        let now_ms = unix_ms(now);
        let hist_cut = now_ms - self.cfg.history.min(self.cfg.max_age).as_millis() as i64;
        let age_cut = now_ms - self.cfg.max_age.as_millis() as i64;

        let mut g = self.lock();
        let pages = wal_pages(cap, self.page_size);
        if pages != g.wal_pages {
            // Keep the WAL inside the (new) cap.
            g.conn
                .execute_batch(&format!(
                    "PRAGMA wal_autocheckpoint = {pages}; PRAGMA journal_size_limit = {};",
                    pages * self.page_size
                ))
                .map_err(self.sql("wal pragmas"))?;
            g.wal_pages = pages;
        }
        let inner = &mut *g;
        self.absorb_noted_in(inner);
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin eviction"))?;
        let mut next = self.next_stats();
        // Deferred acknowledgements first: an acknowledged message is history, not unsent.
        super::deferred::apply(&tx, &inner.deferred, &mut next)
            .map_err(self.sql("deferred acks"))?;
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
            let step = if emergency { EMERGENCY_STEP } else { STEP };
            let mut steps_left = if emergency { 1 } else { usize::MAX };
            for (filter, is_history) in classes {
                while used > target && steps_left > 0 {
                    let (n, u, lo, hi) = take(&tx, filter, &[&step], &mut next)
                        .map_err(self.sql("size eviction"))?;
                    if n == 0 {
                        // Batches without samples count 0 readings: check rows, not readings.
                        let left: bool = tx
                            .query_row(&format!("SELECT EXISTS ({filter})"), [step], |r| r.get(0))
                            .map_err(self.sql("size eviction"))?;
                        if !left {
                            break;
                        }
                    }
                    steps_left -= 1;
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

        // Remote command rows: a few at most per call (see `commands::purge_in`).
        ev.purged_commands = super::commands::purge_in(&tx, now_ms, self.generation)
            .map_err(self.sql("command purge"))?;

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
        inner.deferred = Default::default();
        ev.expired_history = history as u64;
        ev.dropped_unsent = lost.readings as u64;
        ev.dropped_range = lost.range;

        let file_len = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if history > 0 || lost.readings > 0 || file_len > budget {
            // Shrink the file only if its high-water mark exceeds the budget (more was
            // committed between two calls than the 10 % headroom, or the cap was lowered);
            // otherwise the free pages are simply reused. Then give the WAL space back.
            if file_len > budget && !emergency {
                // On a full disk this can fail (it writes moved pages to the WAL); the rows
                // are evicted all the same and their pages reused, so it is not an error.
                if let Err(e) = g.conn.execute_batch("PRAGMA incremental_vacuum") {
                    tracing::warn!(error = %e, "store file could not be shrunk (freed pages are reused)");
                }
            }
            // Copy the WAL into the database so the next commits restart it from its
            // beginning. PASSIVE, not TRUNCATE: the WAL file keeps its blocks (up to
            // `journal_size_limit`), so an eviction on a full disk still has room to write.
            // Busy readers make this a partial checkpoint; that is fine.
            let _ = g
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        drop(g);
        ev.bytes_after = self.bytes_on_disk();
        Ok(ev)
    }
}
