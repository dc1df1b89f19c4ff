//! What the Sparkplug forwarder reads back from the store: the entries of one sealed message
//! (`Outbox::entries_of`: one indexed read (`entry_sealed`), data rows rebuilt into their
//! batches, alarm/event/reply rows as their JSON), from which it derives a message's publishes
//! at publish time (the sealed payload stays the gasdtu one: docs/sparkplug.md), and the newest
//! batch of a device (`newest_batch`), the values of the first DBIRTH after a restart.

use std::path::Path;

use super::dict::Dict;
use super::export::{decode_batch, DataRow, DATA_COLS};
use super::{Store, StoreError};
use crate::model::SampleBatch;
use crate::outbox::{Entry, EntryBody, EntryKind, ReplyTopic};

/// The `entry` columns `EntryRow::from_row` reads, in its order.
pub(super) const ENTRY_COLS: &str = "id, kind, reply_topic, created_ms, source, read_ms, slot_ms, \
     online, failed_cycles, body";

/// One `entry` row selected as `ENTRY_COLS`, its body not decoded yet: what `entries_of` and
/// the frozen-payload rebuild (`frozen::load_entries`) both turn into an outbox `Entry`.
pub(super) struct EntryRow {
    kind: i64,
    reply: Option<i64>,
    created_ms: i64,
    source: Option<i64>,
    data: DataRow,
}

impl EntryRow {
    pub(super) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EntryRow> {
        Ok(EntryRow {
            kind: r.get(1)?,
            reply: r.get(2)?,
            created_ms: r.get(3)?,
            source: r.get(4)?,
            data: DataRow {
                id: r.get(0)?,
                source: 0,
                read_ms: r.get(5)?,
                slot_ms: r.get::<_, Option<i64>>(6)?.unwrap_or(0),
                online: r.get::<_, Option<bool>>(7)?.unwrap_or(true),
                failed_cycles: r.get::<_, Option<u32>>(8)?.unwrap_or(0),
                body: r.get(9)?,
            },
        })
    }

    /// The outbox entry: a data row as its batch, an alarm, event or reply as its JSON.
    pub(super) fn decode(
        self,
        conn: &rusqlite::Connection,
        dict: &mut Dict,
        path: &Path,
        historical: bool,
    ) -> Result<Entry, StoreError> {
        let EntryRow {
            kind,
            reply,
            created_ms,
            source,
            mut data,
        } = self;
        let id = data.id;
        let decode = |why: String| StoreError::Decode {
            path: path.to_path_buf(),
            id,
            why,
        };
        let (kind, body) = match kind {
            2 => {
                data.source = source.ok_or_else(|| decode("data entry without a source".into()))?;
                let batch = decode_batch(conn, dict, path, &data)?;
                (EntryKind::Data, EntryBody::Batch(batch))
            }
            0 | 1 | 3 => json_entry(kind, reply, &data.body).map_err(decode)?,
            k => return Err(decode(format!("entry kind {k} is unknown"))),
        };
        Ok(Entry {
            id,
            kind,
            historical,
            created_ms,
            body,
        })
    }
}

/// The kind and body of an alarm (0), event (1) or reply (3) entry row: its JSON body, and for
/// a reply the topic its code names. `Err` says why the row does not decode.
pub(super) fn json_entry(
    kind: i64,
    reply: Option<i64>,
    body: &[u8],
) -> Result<(EntryKind, EntryBody), String> {
    let kind = match kind {
        0 => EntryKind::Alarm,
        1 => EntryKind::Event,
        _ => EntryKind::Reply(
            reply
                .and_then(ReplyTopic::from_code)
                .ok_or_else(|| format!("reply topic code {reply:?} is unknown"))?,
        ),
    };
    let json = serde_json::from_slice(body).map_err(|e| format!("JSON body: {e}"))?;
    Ok((kind, EntryBody::Json(json)))
}

impl Store {
    /// `Outbox::entries_of`: the entries bound to message `seq`, in id order.
    pub(super) fn sealed_entries(&self, seq: u64) -> Result<Vec<Entry>, StoreError> {
        let mut g = self.lock();
        let super::Inner { conn, dict, .. } = &mut *g;
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(Vec::new());
        };
        let sql = format!("SELECT {ENTRY_COLS} FROM entry WHERE msg_seq = ?1 ORDER BY id");
        let mut stmt = conn
            .prepare_cached(&sql)
            .map_err(self.sql("entries of a message"))?;
        let rows: Vec<EntryRow> = stmt
            .query_map([seq], EntryRow::from_row)
            .map_err(self.sql("entries of a message"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.sql("entries of a message"))?;
        drop(stmt);
        rows.into_iter()
            .map(|row| row.decode(conn, dict, &self.path, false))
            .collect()
    }
}

impl Store {
    /// The most recently read data batch of `device` still in the history, if any (read only;
    /// once per device at the forwarder's first Sparkplug session).
    pub fn newest_batch(&self, device: &str) -> Result<Option<SampleBatch>, StoreError> {
        let mut g = self.lock();
        let super::Inner { conn, dict, .. } = &mut *g;
        let sql = format!(
            "SELECT {DATA_COLS} FROM entry WHERE kind = 2 AND source IN \
             (SELECT id FROM source WHERE device = ?1) ORDER BY read_ms DESC LIMIT 1"
        );
        let mut stmt = conn
            .prepare_cached(&sql)
            .map_err(self.sql("newest batch of a device"))?;
        let row = stmt
            .query_map([device], DataRow::from_row)
            .map_err(self.sql("newest batch of a device"))?
            .next()
            .transpose()
            .map_err(self.sql("newest batch of a device"))?;
        drop(stmt);
        match row {
            Some(r) => Ok(Some(decode_batch(conn, dict, &self.path, &r)?)),
            None => Ok(None),
        }
    }
}
