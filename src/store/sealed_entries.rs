//! What the Sparkplug forwarder reads back from the store: the entries of one sealed message
//! (`Outbox::entries_of`: one indexed read (`entry_sealed`), data rows rebuilt into their
//! batches, alarm/event/reply rows as their JSON), from which it derives a message's publishes
//! at publish time (the sealed payload stays the gasdtu one: docs/sparkplug.md), and the newest
//! batch of a device (`newest_batch`), the values of the first DBIRTH after a restart.

use super::export::{decode_batch, DataRow, DATA_COLS};
use super::{Store, StoreError};
use crate::model::SampleBatch;
use crate::outbox::{Entry, EntryBody, EntryKind, ReplyTopic};

const SQL: &str = "SELECT id, kind, reply_topic, created_ms, source, read_ms, slot_ms, online, \
     failed_cycles, body FROM entry WHERE msg_seq = ?1 ORDER BY id";

impl Store {
    /// `Outbox::entries_of`: the entries bound to message `seq`, in id order.
    pub(super) fn sealed_entries(&self, seq: u64) -> Result<Vec<Entry>, StoreError> {
        let mut g = self.lock();
        let super::Inner { conn, dict, .. } = &mut *g;
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(Vec::new());
        };
        let mut stmt = conn
            .prepare_cached(SQL)
            .map_err(self.sql("entries of a message"))?;
        type Row = (
            i64,
            i64,
            Option<i64>,
            i64,
            Option<i64>,
            i64,
            Option<i64>,
            Option<bool>,
            Option<u32>,
            Vec<u8>,
        );
        let rows: Vec<Row> = stmt
            .query_map([seq], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })
            .map_err(self.sql("entries of a message"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.sql("entries of a message"))?;
        drop(stmt);
        let mut out = Vec::with_capacity(rows.len());
        for (id, kind, reply, created_ms, source, read_ms, slot_ms, online, failed, body) in rows {
            let decode = |why: String| StoreError::Decode {
                path: self.path.clone(),
                id,
                why,
            };
            let (kind, body) = match kind {
                2 => {
                    let row = DataRow {
                        id,
                        source: source
                            .ok_or_else(|| decode("data entry without a source".into()))?,
                        read_ms,
                        slot_ms: slot_ms.unwrap_or(0),
                        online: online.unwrap_or(true),
                        failed_cycles: failed.unwrap_or(0),
                        body,
                    };
                    let batch = decode_batch(conn, dict, &self.path, &row)?;
                    (EntryKind::Data, EntryBody::Batch(batch))
                }
                0 | 1 | 3 => {
                    let kind = match kind {
                        0 => EntryKind::Alarm,
                        1 => EntryKind::Event,
                        _ => EntryKind::Reply(reply.and_then(ReplyTopic::from_code).ok_or_else(
                            || decode(format!("reply topic code {reply:?} is unknown")),
                        )?),
                    };
                    let json = serde_json::from_slice(&body)
                        .map_err(|e| decode(format!("JSON body: {e}")))?;
                    (kind, EntryBody::Json(json))
                }
                k => return Err(decode(format!("entry kind {k} is unknown"))),
            };
            out.push(Entry {
                id,
                kind,
                historical: false,
                created_ms,
                body,
            });
        }
        Ok(out)
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
