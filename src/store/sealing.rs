//! `crate::outbox::Outbox` for `Store`: pending entries in send order, sealing a message with
//! the next sequence number (reserving a new block in the side file first when needed),
//! unacknowledged messages for resending, and acknowledgement. Each method is one short
//! transaction under the store's lock.

use std::time::SystemTime;

use rusqlite::TransactionBehavior;

use super::counters::Tally;
use super::export::{decode_batch, DataRow, DATA_COLS};
use super::{entry_state, seq, set_meta, Store, StoreError};
use crate::outbox::{Entry, EntryBody, EntryKind, Outbox, OutboxError, Sealed};
use crate::time::unix_ms;

impl From<StoreError> for OutboxError {
    fn from(e: StoreError) -> Self {
        OutboxError::Store(e.to_string())
    }
}

impl Outbox for Store {
    fn pending(&self, limit: usize, live_since_ms: i64) -> Result<Vec<Entry>, OutboxError> {
        let mut g = self.lock();
        let super::Inner { conn, dict, .. } = &mut *g;
        let mut out = Vec::with_capacity(limit.min(1024));
        let limit_i = limit as i64;

        // Alarms then events, oldest first.
        {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, kind, created_ms, body FROM entry \
                     WHERE status = 0 AND kind < 2 ORDER BY kind, created_ms, id LIMIT ?1",
                )
                .map_err(self.sql("pending alarms/events"))?;
            let rows = stmt
                .query_map([limit_i], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                })
                .map_err(self.sql("pending alarms/events"))?;
            for row in rows {
                let (id, kind, created_ms, body) =
                    row.map_err(self.sql("pending alarms/events"))?;
                let json = serde_json::from_slice(&body).map_err(|e| StoreError::Decode {
                    path: self.path.clone(),
                    id,
                    why: format!("JSON body: {e}"),
                })?;
                out.push(Entry {
                    id,
                    kind: if kind == 0 {
                        EntryKind::Alarm
                    } else {
                        EntryKind::Event
                    },
                    historical: false,
                    created_ms,
                    body: EntryBody::Json(json),
                });
            }
        }

        // Live data newest first, then the backlog oldest first.
        let queries = [
            (
                "live data",
                format!(
                    "SELECT {DATA_COLS}, created_ms FROM entry WHERE status = 0 AND kind = 2 \
                     AND created_ms >= ?2 ORDER BY created_ms DESC, id DESC LIMIT ?1"
                ),
                false,
            ),
            (
                "backlog",
                format!(
                    "SELECT {DATA_COLS}, created_ms FROM entry WHERE status = 0 AND kind = 2 \
                     AND created_ms < ?2 ORDER BY created_ms, id LIMIT ?1"
                ),
                true,
            ),
        ];
        for (what, sql, historical) in queries {
            let room = limit.saturating_sub(out.len());
            if room == 0 {
                break;
            }
            let mut stmt = conn.prepare_cached(&sql).map_err(self.sql(what))?;
            let rows: Vec<(DataRow, i64)> = stmt
                .query_map(rusqlite::params![room as i64, live_since_ms], |r| {
                    Ok((DataRow::from_row(r)?, r.get(7)?))
                })
                .map_err(self.sql(what))?
                .collect::<rusqlite::Result<_>>()
                .map_err(self.sql(what))?;
            for (row, created_ms) in rows {
                let batch = decode_batch(conn, dict, &self.path, &row)?;
                out.push(Entry {
                    id: row.id,
                    kind: EntryKind::Data,
                    historical,
                    created_ms,
                    body: EntryBody::Batch(batch),
                });
            }
        }
        Ok(out)
    }

    fn seal(
        &self,
        topic: &str,
        entries: &[i64],
        readings: u64,
        build: &mut dyn FnMut(u64) -> Result<Vec<u8>, String>,
    ) -> Result<Sealed, OutboxError> {
        let mut g = self.lock();
        let inner = &mut *g;
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin seal"))?;
        {
            let mut st = tx
                .prepare_cached("SELECT status FROM entry WHERE id = ?1")
                .map_err(self.sql("seal check"))?;
            let mut not_pending = Vec::new();
            for id in entries {
                let s: Option<i64> = st
                    .query_row([id], |r| r.get(0))
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })
                    .map_err(self.sql("seal check"))?;
                if s != Some(entry_state::PENDING) {
                    not_pending.push(*id);
                }
            }
            if !not_pending.is_empty() {
                return Err(OutboxError::NotPending(not_pending));
            }
        }
        let seq = seq::next_seq(inner.seq_hwm).map_err(StoreError::from)?;
        if let Some(r) = seq::needs_reservation(seq, inner.reserved) {
            seq::write(&self.reserve_path, r).map_err(|source| StoreError::Io {
                what: "cannot write the sequence reservation",
                path: self.reserve_path.clone(),
                source,
            })?;
            inner.reserved = r;
        }
        let payload = build(seq).map_err(OutboxError::Build)?;
        tx.prepare_cached(
            "INSERT INTO message (seq, topic, payload, readings, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            s.execute(rusqlite::params![
                seq as i64,
                topic,
                &payload,
                readings as i64,
                unix_ms(SystemTime::now())
            ])
        })
        .map_err(self.sql("insert message"))?;
        {
            let mut up = tx
                .prepare_cached("UPDATE entry SET status = ?3, msg_seq = ?1 WHERE id = ?2")
                .map_err(self.sql("bind entries"))?;
            for id in entries {
                up.execute(rusqlite::params![seq as i64, id, entry_state::SEALED])
                    .map_err(self.sql("bind entries"))?;
            }
        }
        set_meta(&tx, "seq_hwm", seq as i64).map_err(self.sql("seq_hwm"))?;
        let mut next = self.next_stats();
        next.seal(entries.len() as u64, seq);
        tx.commit().map_err(self.sql("commit seal"))?;
        self.publish_stats(next);
        inner.seq_hwm = seq;
        Ok(Sealed {
            seq,
            topic: topic.to_string(),
            payload,
            readings,
        })
    }

    fn unacked(&self) -> Result<Vec<Sealed>, OutboxError> {
        let g = self.lock();
        let mut stmt = g
            .conn
            .prepare_cached("SELECT seq, topic, payload, readings FROM message ORDER BY seq")
            .map_err(self.sql("unacked"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Sealed {
                    seq: r.get::<_, i64>(0)? as u64,
                    topic: r.get(1)?,
                    payload: r.get(2)?,
                    readings: r.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(self.sql("unacked"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sql("unacked"))?;
        Ok(rows)
    }

    fn ack(&self, seq: u64) -> Result<(), OutboxError> {
        self.ack_many(&[seq])
    }

    fn ack_many(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut g = self.lock();
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin ack"))?;
        let mut n = 0;
        let mut next = self.next_stats();
        let now = unix_ms(SystemTime::now());
        for &seq in seqs {
            let s = seq as i64;
            let t = Tally::of(&tx, "msg_seq = ?1", &[&s]).map_err(self.sql("ack tally"))?;
            tx.execute(
                "UPDATE entry SET status = 2, msg_seq = NULL WHERE msg_seq = ?1 AND kind = 2",
                [s],
            )
            .map_err(self.sql("ack data"))?;
            tx.execute("DELETE FROM entry WHERE msg_seq = ?1", [s])
                .map_err(self.sql("ack entries"))?;
            let m = tx
                .execute("DELETE FROM message WHERE seq = ?1", [s])
                .map_err(self.sql("ack message"))?;
            next.ack(&t, m as u64, now);
            n += m;
        }
        if n > 0 {
            set_meta(&tx, "last_ack_ms", now).map_err(self.sql("last_ack_ms"))?;
        }
        next.refresh(&tx).map_err(self.sql("ack statistics"))?;
        tx.commit().map_err(self.sql("commit ack"))?;
        self.publish_stats(next);
        Ok(())
    }
}
