//! The history resend of a remote `resend` command (docs/store.md "Commands"): delivered data
//! rows of one device in a time range become pending again, sent as backlog with new sequence
//! numbers. Only what was published may go out again: a row holding a point that is local
//! (`publish = false` in the running config) is history only and never resent (the local half
//! of a split poll, the raw polls of a slower-reporting device with local points). Bounded
//! like every command input: the device name, the range (`RESEND_RANGE_MAX_MS`) and the
//! count (`max_readings`).

use std::collections::HashMap;

use rusqlite::{Connection, TransactionBehavior};

use super::bounded_text;
use crate::store::blob::{self, ValueKind};
use crate::store::{entry_state, Store, StoreError};

/// Longest time range of one `resend_history`.
pub const RESEND_RANGE_MAX_MS: i64 = 31 * 86_400_000;
/// Longest device name `resend_history` looks up (bytes).
pub const DEVICE_NAME_MAX: usize = 256;
/// `created_ms` of a resent entry: before any uplink session, so it is always sent as
/// backlog (`hist: true`), ahead of the rest of the backlog, oldest read first.
pub const RESENT_CREATED_MS: i64 = -1;

/// What `resend_history` made pending again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resent {
    /// The device has rows in the store (false: unknown device, nothing done).
    pub device_known: bool,
    /// Entries (batches) and readings made pending again (local rows never count).
    pub entries: u64,
    pub readings: u64,
    /// Read times of the first and last reading resent.
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// More delivered readings matched than `max_readings`: the later ones were left (ask
    /// again from just after `last_ms`).
    pub more: bool,
}

/// Delivered data rows of device `?3` read in [`?1`, `?2`] with readings, oldest read first
/// (a range of the `entry_read` index).
pub(crate) const RESEND_ROWS: &str = "SELECT id, readings, read_ms, body FROM entry \
     WHERE kind = 2 AND read_ms BETWEEN ?1 AND ?2 AND status = ?4 AND readings > 0 \
     AND source IN (SELECT id FROM source WHERE device = ?3) ORDER BY read_ms, id";

/// The points of `device` (any bus) by id: their value kind and whether their name is in
/// `local`.
fn device_points(
    conn: &Connection,
    device: &str,
    local: &[&str],
) -> rusqlite::Result<HashMap<i64, (ValueKind, bool)>> {
    let mut st = conn.prepare_cached(
        "SELECT id, name, kind FROM point \
         WHERE source IN (SELECT id FROM source WHERE device = ?1)",
    )?;
    let mut rows = st.query([device])?;
    let mut out = HashMap::new();
    while let Some(row) = rows.next()? {
        let (id, name, kind): (i64, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        if let Some(kind) = ValueKind::from_code(kind) {
            out.insert(id, (kind, local.contains(&name.as_str())));
        }
    }
    Ok(out)
}

impl Store {
    /// Delivered history of `device` read in [from_ms, to_ms] becomes pending again (sent as
    /// backlog, `hist: true`, new sequence numbers), at most `max_readings` readings, oldest
    /// read first, whole batches only; one transaction. Rows still pending or sealed are
    /// already on their way and left alone. A row holding any point named in `local` (the
    /// device's `publish = false` points) was never sent and never is: it is skipped and not
    /// counted. Refused (`OutOfBounds`) for a reversed range or one longer than
    /// `RESEND_RANGE_MAX_MS`.
    pub fn resend_history(
        &self,
        device: &str,
        from_ms: i64,
        to_ms: i64,
        max_readings: u64,
        local: &[&str],
    ) -> Result<Resent, StoreError> {
        bounded_text("resend device", device, DEVICE_NAME_MAX)?;
        if to_ms < from_ms {
            return Err(StoreError::OutOfBounds {
                what: "resend range",
                why: format!("ends ({to_ms} ms) before it starts ({from_ms} ms)"),
            });
        }
        if to_ms.saturating_sub(from_ms) > RESEND_RANGE_MAX_MS {
            return Err(StoreError::OutOfBounds {
                what: "resend range",
                why: format!(
                    "{} ms long, at most 31 days ({RESEND_RANGE_MAX_MS} ms) per request",
                    to_ms.saturating_sub(from_ms)
                ),
            });
        }
        let mut g = self.lock();
        // Acknowledged rows are history: write deferred acknowledgements first.
        self.write_deferred(&mut g)?;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin resend"))?;
        let mut r = Resent {
            device_known: tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM source WHERE device = ?1)",
                    [device],
                    |r| r.get(0),
                )
                .map_err(self.sql("resend device"))?,
            ..Resent::default()
        };
        if !r.device_known || max_readings == 0 {
            return Ok(r);
        }
        // Only a device with local points pays for decoding its rows.
        let points = if local.is_empty() {
            None
        } else {
            Some(device_points(&tx, device, local).map_err(self.sql("resend points"))?)
        };
        let mut ids = Vec::new();
        {
            let mut st = tx
                .prepare_cached(RESEND_ROWS)
                .map_err(self.sql("resend rows"))?;
            let mut rows = st
                .query(rusqlite::params![
                    from_ms,
                    to_ms,
                    device,
                    entry_state::DELIVERED
                ])
                .map_err(self.sql("resend rows"))?;
            while let Some(row) = rows.next().map_err(self.sql("resend rows"))? {
                let (id, readings, read_ms): (i64, i64, i64) = (
                    row.get(0).map_err(self.sql("resend rows"))?,
                    row.get(1).map_err(self.sql("resend rows"))?,
                    row.get(2).map_err(self.sql("resend rows"))?,
                );
                if let Some(points) = &points {
                    let body: Vec<u8> = row.get(3).map_err(self.sql("resend rows"))?;
                    let samples = blob::decode(&body, &mut |p| points.get(&p).map(|k| k.0))
                        .map_err(|why| StoreError::Decode {
                            path: self.path.clone(),
                            id,
                            why,
                        })?;
                    if samples
                        .iter()
                        .any(|s| points.get(&s.point_id).is_some_and(|k| k.1))
                    {
                        continue;
                    }
                }
                let readings = readings.max(0) as u64;
                if r.readings + readings > max_readings {
                    r.more = true;
                    break;
                }
                r.readings += readings;
                r.entries += 1;
                r.first_ms.get_or_insert(read_ms);
                r.last_ms = Some(read_ms);
                ids.push(id);
            }
        }
        {
            let mut up = tx
                .prepare_cached("UPDATE entry SET status = ?2, created_ms = ?3 WHERE id = ?1")
                .map_err(self.sql("resend"))?;
            for id in &ids {
                up.execute(rusqlite::params![
                    id,
                    entry_state::PENDING,
                    RESENT_CREATED_MS
                ])
                .map_err(self.sql("resend"))?;
            }
        }
        let mut next = self.next_stats();
        next.resend(r.entries, r.readings, r.first_ms);
        tx.commit().map_err(self.sql("commit resend"))?;
        self.publish_stats(next);
        Ok(r)
    }
}
