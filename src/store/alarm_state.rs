//! Persistence of the alarm engine's condition states (`alarm_state` table, schema v3) and
//! of the occurrence counter (`meta.alarm_occurrence`): written inside the commit transaction
//! of the batch that changed them, read once at start. The rows are opaque JSON to the store.

use rusqlite::Connection;

use super::{get_meta, set_meta, Store, StoreError};
use crate::alarm::AlarmWrites;

pub(super) fn write(tx: &Connection, w: &AlarmWrites) -> rusqlite::Result<()> {
    for (key, state) in &w.states {
        match state {
            Some(s) => {
                tx.prepare_cached(
                    "INSERT INTO alarm_state (key, state) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET state = excluded.state",
                )?
                .execute(rusqlite::params![key, s])?;
            }
            None => {
                tx.prepare_cached("DELETE FROM alarm_state WHERE key = ?1")?
                    .execute([key])?;
            }
        }
    }
    if let Some(n) = w.next_occurrence {
        set_meta(tx, "alarm_occurrence", n as i64)?;
    }
    Ok(())
}

/// Persisted alarm state rows `(key, json)`, and the next occurrence id if one was stored.
pub type SavedAlarms = (Vec<(String, String)>, Option<u64>);

impl Store {
    /// The persisted alarm states `(key, json)` and the next occurrence id (None on a fresh
    /// database).
    pub fn alarm_state(&self) -> Result<SavedAlarms, StoreError> {
        let g = self.lock();
        let rows = g
            .conn
            .prepare("SELECT key, state FROM alarm_state ORDER BY key")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<(String, String)>>>()
            })
            .map_err(self.sql("read alarm state"))?;
        let next = get_meta(&g.conn, "alarm_occurrence")
            .map_err(self.sql("read alarm occurrence"))?
            .map(|n| n as u64);
        Ok((rows, next))
    }
}
