//! Reading the store back out: decoding batch rows into `SampleBatch`es (shared with the
//! outbox), the streaming history export behind `gasdtu export`, and the buffer statistics
//! behind `gasdtu queue`/`status`. Export holds the store's lock for its duration; from
//! another process use `Store::open_read_only`, which never blocks the daemon (WAL).

use std::path::Path;
use std::time::SystemTime;

use rusqlite::Connection;

use super::clock::ClockState;
use super::dict::Dict;
use super::{blob, entry_state, Store, StoreError};
use crate::model::{Sample, SampleBatch};
use crate::time::{from_unix_ms, unix_ms};

/// The columns of a data row needed to rebuild its batch.
pub(crate) struct DataRow {
    pub id: i64,
    pub source: i64,
    pub read_ms: i64,
    pub slot_ms: i64,
    pub online: bool,
    pub failed_cycles: u32,
    pub body: Vec<u8>,
}

pub(crate) const DATA_COLS: &str = "id, source, read_ms, slot_ms, online, failed_cycles, body";

impl DataRow {
    /// From a row selected with `DATA_COLS` first.
    pub fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DataRow> {
        Ok(DataRow {
            id: r.get(0)?,
            source: r.get(1)?,
            read_ms: r.get(2)?,
            slot_ms: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            online: r.get::<_, Option<bool>>(4)?.unwrap_or(true),
            failed_cycles: r.get::<_, Option<u32>>(5)?.unwrap_or(0),
            body: r.get(6)?,
        })
    }
}

pub(crate) fn decode_batch(
    conn: &Connection,
    dict: &mut Dict,
    path: &Path,
    row: &DataRow,
) -> Result<SampleBatch, StoreError> {
    let bad = |why: String| StoreError::Decode {
        path: path.to_path_buf(),
        id: row.id,
        why,
    };
    let sql = |source| StoreError::Sqlite {
        what: "dictionary",
        path: path.to_path_buf(),
        source,
    };
    let (device, bus) = dict.source(conn, row.source).map_err(sql)?;
    let mut lookup_err = None;
    let raw = blob::decode(&row.body, &mut |id| match dict.point(conn, id) {
        Ok(p) => p.map(|p| p.kind),
        Err(e) => {
            lookup_err = Some(e);
            None
        }
    });
    if let Some(e) = lookup_err {
        return Err(sql(e));
    }
    let raw = raw.map_err(bad)?;
    let mut samples = Vec::with_capacity(raw.len());
    for s in raw {
        let def = dict
            .point(conn, s.point_id)
            .map_err(sql)?
            .ok_or_else(|| bad(format!("unknown point id {}", s.point_id)))?;
        samples.push(Sample {
            point: def.name,
            value: s.value,
            unit: def.unit,
            quality: s.quality,
            read_at: from_unix_ms(row.read_ms + s.dt_ms),
        });
    }
    Ok(SampleBatch {
        device,
        bus,
        slot: from_unix_ms(row.slot_ms),
        samples,
        online: row.online,
        failed_cycles: row.failed_cycles,
    })
}

/// Which batches `export` yields: read time (of the batch's earliest sample) in
/// `[since, until)`, and of one device if given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportFilter {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    pub device: Option<String>,
}

/// One exported batch with what the store knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBatch {
    pub id: i64,
    pub batch: SampleBatch,
    pub clock: ClockState,
    /// Acknowledged by the broker (history) rather than still in the outbox.
    pub delivered: bool,
}

/// Buffer statistics (`gasdtu queue`, `gasdtu status`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StoreStats {
    /// Sealed messages waiting for their PUBACK.
    pub sealed_messages: u64,
    /// Entries not yet in a message (alarms, events, data).
    pub pending_entries: u64,
    /// Data entries held back until the clock is trusted.
    pub held_entries: u64,
    /// Readings not yet acknowledged (pending, sealed or held).
    pub pending_readings: u64,
    /// Delivered readings kept as history.
    pub history_readings: u64,
    /// Read time of the oldest unacknowledged reading with a trusted time.
    pub oldest_pending_read_ms: Option<i64>,
    /// Oldest and newest read time in the store (history included).
    pub oldest_read_ms: Option<i64>,
    pub newest_read_ms: Option<i64>,
    /// Main file + WAL.
    pub bytes_on_disk: u64,
    pub seq_hwm: u64,
    /// Unsent readings evicted (size cap or max age): lost, and reported upstream.
    pub dropped_unsent: u64,
    /// Delivered readings evicted from the history (age or size).
    pub dropped_expired: u64,
    pub last_ack_ms: Option<i64>,
}

impl Store {
    /// Stream the stored batches matching `filter` to `sink`, oldest read time first. Returns
    /// the number of batches given to the sink. On the daemon's own store, deferred
    /// acknowledgements are written first (so `delivered` is exact).
    pub fn export(
        &self,
        filter: &ExportFilter,
        sink: &mut dyn FnMut(&StoredBatch) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        let mut g = self.lock();
        if self.live {
            // Delivered means acknowledged: write deferred acknowledgements first.
            self.write_deferred(&mut g)?;
        }
        let super::Inner { conn, dict, .. } = &mut *g;
        let since = filter.since.map(unix_ms).unwrap_or(i64::MIN);
        let until = filter.until.map(unix_ms).unwrap_or(i64::MAX);
        let mut sql = format!(
            "SELECT {DATA_COLS}, clock, status FROM entry \
             WHERE kind = 2 AND read_ms >= ?1 AND read_ms < ?2"
        );
        if let Some(d) = &filter.device {
            let ids = Dict::sources_of(conn, d).map_err(self.sql("export sources"))?;
            if ids.is_empty() {
                return Ok(0);
            }
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            sql.push_str(&format!(" AND source IN ({})", list.join(",")));
        }
        sql.push_str(" ORDER BY read_ms, id");
        let mut stmt = conn.prepare(&sql).map_err(self.sql("export query"))?;
        let mut rows = stmt
            .query(rusqlite::params![since, until])
            .map_err(self.sql("export query"))?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(self.sql("export row"))? {
            let row = DataRow::from_row(r).map_err(self.sql("export row"))?;
            let clock = ClockState::from_code(r.get(7).map_err(self.sql("export row"))?);
            let st: i64 = r.get(8).map_err(self.sql("export row"))?;
            let batch = decode_batch(conn, dict, &self.path, &row)?;
            sink(&StoredBatch {
                id: row.id,
                batch,
                clock,
                delivered: st == entry_state::DELIVERED,
            })
            .map_err(StoreError::Sink)?;
            n += 1;
        }
        Ok(n)
    }

    /// Buffer statistics, O(1): kept up to date by every mutation (see `counters`), read
    /// without the connection's lock and without any SQLite call. A read-only store (another
    /// process writes) scans instead (`stats_scan`).
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        if !self.live {
            return self.stats_scan();
        }
        let mut s = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        s.bytes_on_disk = self.bytes_on_disk();
        Ok(s)
    }

    /// Buffer statistics by a full scan of the entry table (read-only stores; the oracle the
    /// live counters are tested against). Holds the connection's lock for the scan.
    pub fn stats_scan(&self) -> Result<StoreStats, StoreError> {
        let g = self.lock();
        let mut s = super::counters::scan(&g.conn, g.seq_hwm).map_err(self.sql("stats"))?;
        let d = &g.deferred;
        if !d.is_empty() {
            // Acknowledged, rows not written yet (see `deferred`): counted as acknowledged.
            let mut next = super::counters::Next::new(s);
            super::deferred::account(&g.conn, &d.seqs, d.last_ms, &d.seqs, &mut next)
                .map_err(self.sql("stats"))?;
            s = next.s;
        }
        s.bytes_on_disk = self.bytes_on_disk();
        Ok(s)
    }

    /// Size of the database file plus its WAL.
    pub fn bytes_on_disk(&self) -> u64 {
        super::db_and_wal_bytes(&self.path)
    }
}
