//! `crate::outbox::Outbox` for `Store`: pending entries in send order, sealing a message with
//! the next sequence number (reserving a new block in the side file first when needed),
//! unacknowledged messages for resending, acknowledgement, and dead letters (a message the
//! MQTT client refuses is set aside in the `dead_letter` table with its sequence number, and a
//! `dead_letter` event is committed in the same transaction). Each method is one short
//! transaction under the store's lock.

use super::tx::Tx;

use super::counters::Tally;
use super::export::{decode_batch, DataRow, DATA_COLS};
use super::{add_meta, deferred, entry_state, frozen, get_meta, seq, set_meta, Store, StoreError};
use crate::outbox::{
    DeadLetter, Entry, EntryBody, EntryKind, Outbox, OutboxError, ReplyTopic, SealRequest, Sealed,
    DEAD_LETTER_REASON_MAX,
};

/// Stored kind codes of the JSON entries in send order: alarms (0), replies (3), events (1).
const PRIORITY: [i64; 3] = [0, 3, 1];

/// Pending JSON entries of one kind (`?2`), oldest first (see `pending`).
pub(crate) const PENDING_JSON: &str = "SELECT id, kind, reply_topic, created_ms, body FROM entry \
     WHERE status = 0 AND kind = ?2 ORDER BY created_ms, id LIMIT ?1";

/// Dead letters kept in the `dead_letter` table (newest first); older ones are deleted, the
/// total stays counted in `meta.dead_letters`.
pub const KEPT_DEAD_LETTERS: i64 = 100;

impl From<StoreError> for OutboxError {
    fn from(e: StoreError) -> Self {
        OutboxError::Store(e.to_string())
    }
}

impl Outbox for Store {
    fn pending(&self, limit: usize, live_since_ms: i64) -> Result<Vec<Entry>, OutboxError> {
        let mut g = self.lock();
        let super::Inner { conn, dict, .. } = &mut *g;
        Ok(self.pending_in(conn, dict, limit, live_since_ms)?)
    }

    fn take_presealed(&self) -> Result<Vec<Sealed>, OutboxError> {
        Ok(self.lock().take_handed_over())
    }

    fn try_take_presealed(&self) -> Option<Result<(Vec<Sealed>, bool), OutboxError>> {
        let g = match self.inner.try_lock() {
            Ok(g) => g,
            // Busy (or poisoned): the blocking path takes them.
            Err(_) => return None,
        };
        let sealed = g.take_handed_over();
        let drained = self.live
            && self
                .counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pending_entries
                == 0;
        Some(Ok((sealed, drained)))
    }

    fn dead_letter(&self, seq: u64, reason: &str) -> Result<Option<DeadLetter>, OutboxError> {
        let mut g = self.lock();
        let inner = &mut *g;
        self.absorb_noted_in(inner);
        let tx = Tx::immediate(&inner.conn).map_err(self.sql("begin dead letter"))?;
        let mut next = self.next_stats();
        deferred::apply(&tx, &inner.deferred, &mut next).map_err(self.sql("deferred acks"))?;
        type Row = (String, Vec<u8>, i64, Option<i64>, Option<String>);
        let found: Option<Row> = tx
            .query_row(
                "SELECT topic, payload, readings, recipe, gw FROM message WHERE seq = ?1",
                [seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(self.sql("dead letter lookup"))?;
        let Some((topic, stored, readings, recipe, gw)) = found else {
            return Ok(None);
        };
        // Rebuilt before its entries leave (a frozen payload is kept as bytes here).
        let recipe = recipe.map(|c| (c, gw));
        let payload = frozen::payload_of(&tx, &mut inner.dict, &self.path, seq, stored, recipe)
            .map_err(|e| tracing::warn!(seq, error = %e, "dead letter kept without payload"))
            .ok();
        let d = DeadLetter {
            seq,
            topic,
            bytes: payload.as_ref().map_or(0, |p| p.len() as u64),
            reason: bounded_reason(reason),
        };
        let p = payload.as_deref();
        self.set_aside(&tx, &d, readings.max(0) as u64, p, &mut next)?;
        tx.commit().map_err(self.sql("commit dead letter"))?;
        self.publish_stats(next);
        inner.deferred = Default::default();
        Ok(Some(d))
    }

    fn dead_letter_entries(
        &self,
        topic: &str,
        entries: &[i64],
        readings: u64,
        bytes: u64,
        reason: &str,
    ) -> Result<DeadLetter, OutboxError> {
        let mut g = self.lock();
        let inner = &mut *g;
        self.absorb_noted_in(inner);
        let tx = Tx::immediate(&inner.conn).map_err(self.sql("begin dead letter"))?;
        let mut next = self.next_stats();
        deferred::apply(&tx, &inner.deferred, &mut next).map_err(self.sql("deferred acks"))?;
        self.check_pending(&tx, entries)?;
        let seq = self.reserve_next(inner.seq_hwm, &mut inner.reserved)?;
        // Bound to a placeholder message first, so the entries leave exactly as a sealed
        // message's do (the same counters, the same history rule).
        self.insert_message(&tx, seq, topic, (&[], None), readings, entries, &mut next)?;
        self.set_hwm(&tx, seq)?;
        let d = DeadLetter {
            seq,
            topic: topic.to_string(),
            bytes,
            reason: bounded_reason(reason),
        };
        self.set_aside(&tx, &d, readings, None, &mut next)?;
        tx.commit().map_err(self.sql("commit dead letter"))?;
        self.publish_stats(next);
        inner.deferred = Default::default();
        inner.seq_hwm = seq;
        Ok(d)
    }

    fn dead_letter_count(&self) -> Result<u64, OutboxError> {
        let g = self.lock();
        let n = get_meta(&g.conn, "dead_letters")
            .map_err(self.sql("dead letter count"))?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    fn last_seq(&self) -> Result<u64, OutboxError> {
        Ok(self.lock().seq_hwm)
    }

    fn seal(
        &self,
        topic: &str,
        entries: &[i64],
        readings: u64,
        build: &mut dyn FnMut(u64) -> Result<Vec<u8>, String>,
    ) -> Result<Sealed, OutboxError> {
        let req = [SealRequest {
            topic,
            entries,
            readings,
            rebuildable: false,
        }];
        let (mut sealed, err) = self.seal_many(&req, &mut |_, seq| build(seq));
        match (sealed.pop(), err) {
            (_, Some(e)) => Err(e),
            (Some(m), None) => Ok(m),
            (None, None) => Err(OutboxError::Store("nothing sealed".into())),
        }
    }

    fn seal_many(
        &self,
        reqs: &[SealRequest<'_>],
        build: &mut dyn FnMut(usize, u64) -> Result<Vec<u8>, String>,
    ) -> (Vec<Sealed>, Option<OutboxError>) {
        let mut g = self.lock();
        let inner = &mut *g;
        self.absorb_noted_in(inner);
        let tx = match Tx::immediate(&inner.conn).map_err(self.sql("begin seal")) {
            Ok(tx) => tx,
            Err(e) => return (Vec::new(), Some(e.into())),
        };
        let mut next = self.next_stats();
        let mut out = Vec::with_capacity(reqs.len());
        let mut hwm = inner.seq_hwm;
        let mut stop = None;
        let r: Result<(), OutboxError> = (|| {
            // Acknowledgements since the last write ride along (one fsync for both).
            deferred::apply(&tx, &inner.deferred, &mut next).map_err(self.sql("deferred acks"))?;
            for (i, q) in reqs.iter().enumerate() {
                if let Err(e) = self.check_pending(&tx, q.entries) {
                    stop = Some(e);
                    break;
                }
                let build = |seq| build(i, seq);
                let (reserved, dict) = (&mut inner.reserved, &mut inner.dict);
                match self.seal_message(
                    &tx,
                    dict,
                    hwm,
                    reserved,
                    q,
                    Known::default(),
                    build,
                    &mut next,
                )? {
                    Ok(m) => {
                        hwm = m.seq;
                        out.push(m);
                    }
                    Err(why) => {
                        stop = Some(OutboxError::Build(why));
                        break;
                    }
                }
            }
            if !out.is_empty() {
                self.set_hwm(&tx, hwm)?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            // Rolled back: nothing sealed, no number consumed.
            return (Vec::new(), Some(e));
        }
        if out.is_empty() && inner.deferred.is_empty() {
            return (out, stop); // nothing written: no commit, no fsync
        }
        if let Err(e) = tx.commit().map_err(self.sql("commit seal")) {
            return (Vec::new(), Some(e.into()));
        }
        self.publish_stats(next);
        inner.deferred = Default::default();
        inner.seq_hwm = hwm;
        (out, stop)
    }

    fn unacked(&self) -> Result<Vec<Sealed>, OutboxError> {
        let (out, broken) = self.unacked_rows()?;
        // A frozen payload that cannot be rebuilt (a damaged row) must not block the outbox:
        // set aside as a dead letter (no payload), reported by its event.
        for (seq, why) in broken {
            tracing::error!(seq, error = %why, "sealed message unbuildable: set aside");
            self.dead_letter(seq, &format!("payload cannot be rebuilt: {why}"))?;
        }
        Ok(out)
    }

    fn entries_of(&self, seq: u64) -> Result<Vec<Entry>, OutboxError> {
        Ok(self.sealed_entries(seq)?)
    }

    fn ack(&self, seq: u64) -> Result<(), OutboxError> {
        self.ack_many(&[seq])
    }

    fn ack_many(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        // Deferred: written with the next write transaction (see `deferred`).
        Ok(self.defer_acks(seqs)?)
    }

    fn note_acks(&self, seqs: &[u64]) -> bool {
        Store::note_acks(self, seqs)
    }

    fn absorb_noted(&self) -> Result<(), OutboxError> {
        self.absorb_noted_now();
        Ok(())
    }

    fn settle(&self) -> Result<(), OutboxError> {
        Ok(Store::settle(self)?)
    }
}

/// A refusal reason as kept and reported: at most `DEAD_LETTER_REASON_MAX` characters.
/// `(lowest, highest)` when `ids` are two or more distinct consecutive numbers in any order
/// (so `BETWEEN` names exactly them).
pub(super) fn id_run(ids: &[i64]) -> Option<(i64, i64)> {
    if ids.len() < 2 {
        return None;
    }
    let lo = *ids.iter().min()?;
    let hi = *ids.iter().max()?;
    if hi.checked_sub(lo)? != ids.len() as i64 - 1 {
        return None;
    }
    // Distinct: a repeat would leave a gap in a span this short.
    let mut seen = vec![false; ids.len()];
    for &id in ids {
        let i = (id - lo) as usize;
        if std::mem::replace(&mut seen[i], true) {
            return None;
        }
    }
    Some((lo, hi))
}

/// What the caller of `seal_message` knows of the message's entries.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Known {
    /// Whether it is published retained (`None`: looked up, `retained`).
    pub retain: Option<bool>,
    /// The entries' rows are written after the message, already bound to it (the ingest
    /// commit's fresh look, `ingest`): no binding, no rebuild check, no counter change here.
    pub rows_later: bool,
}

fn bounded_reason(reason: &str) -> String {
    match reason.char_indices().nth(DEAD_LETTER_REASON_MAX) {
        Some((cut, _)) => format!("{}…", &reason[..cut]),
        None => reason.to_string(),
    }
}

impl Store {
    /// `Outbox::pending` on `conn` (also inside a transaction: the ingest commit's look).
    pub(super) fn pending_in(
        &self,
        conn: &rusqlite::Connection,
        dict: &mut super::dict::Dict,
        limit: usize,
        live_since_ms: i64,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::with_capacity(limit.min(1024));

        // Alarms, then replies, then events, each oldest first. One query per kind: each is
        // a range of the `entry_pending (kind, created_ms)` index read in order, where one
        // query ordered by a priority expression would sort every pending row first.
        for code in PRIORITY {
            let room = limit.saturating_sub(out.len());
            if room == 0 {
                break;
            }
            let mut stmt = conn
                .prepare_cached(PENDING_JSON)
                .map_err(self.sql("pending alarms/replies/events"))?;
            let rows = stmt
                .query_map([room as i64, code], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                    ))
                })
                .map_err(self.sql("pending alarms/replies/events"))?;
            for row in rows {
                let (id, kind, reply, created_ms, body) =
                    row.map_err(self.sql("pending alarms/replies/events"))?;
                let (kind, body) =
                    super::sealed_entries::json_entry(kind, reply, &body).map_err(|why| {
                        StoreError::Decode {
                            path: self.path.clone(),
                            id,
                            why,
                        }
                    })?;
                out.push(Entry {
                    id,
                    kind,
                    historical: false,
                    created_ms,
                    body,
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

    /// Seal one message in `tx`: the number after `hwm` (reserving a new block first when the
    /// reservation is used up), the payload `build` makes for it, its row (retained when one of
    /// its entries asks for it; frozen, without its bytes, when its entries rebuild them:
    /// `frozen`) and its entries bound (unless `known.rows_later`). `Ok(Err(why))`: `build`
    /// refused, nothing written, no number consumed (the caller's `hwm` stays).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn seal_message(
        &self,
        tx: &rusqlite::Connection,
        dict: &mut super::dict::Dict,
        hwm: u64,
        reserved: &mut u64,
        req: &SealRequest<'_>,
        known: Known,
        build: impl FnOnce(u64) -> Result<Vec<u8>, String>,
        next: &mut super::counters::Next,
    ) -> Result<Result<Sealed, String>, OutboxError> {
        let seq = self.reserve_next(hwm, reserved)?;
        let retain = match known.retain {
            Some(r) => r,
            None => self.retained(tx, req.entries)?,
        };
        let payload = match build(seq) {
            Ok(p) => p,
            Err(why) => return Ok(Err(why)),
        };
        let recipe = match (req.rebuildable, known.rows_later) {
            (false, _) => None,
            // Checked against the rows once they are written (debug builds: `ingest`).
            (true, true) => frozen::Recipe::guess(&payload, req.entries),
            (true, false) => frozen::freeze(tx, dict, &self.path, seq, req.entries, &payload),
        };
        let content = (&payload[..], recipe.as_ref());
        if known.rows_later {
            self.insert_message_row(tx, seq, req.topic, content, req.readings)?;
        } else {
            self.insert_message(tx, seq, req.topic, content, req.readings, req.entries, next)?;
        }
        if retain {
            tx.execute("UPDATE message SET retain = 1 WHERE seq = ?1", [seq as i64])
                .map_err(self.sql("retain"))?;
        }
        Ok(Ok(Sealed {
            seq,
            topic: req.topic.to_string(),
            payload,
            readings: req.readings,
            retain,
        }))
    }

    /// Whether a message binding `entries` is published retained: one of them is a reply on
    /// a retained topic (`ReplyTopic::retain`).
    pub(super) fn retained(
        &self,
        tx: &rusqlite::Connection,
        entries: &[i64],
    ) -> Result<bool, OutboxError> {
        let mut st = tx
            .prepare_cached("SELECT kind, reply_topic FROM entry WHERE id = ?1")
            .map_err(self.sql("seal retain"))?;
        for id in entries {
            let (kind, reply): (i64, Option<i64>) = st
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(self.sql("seal retain"))?;
            let code = EntryKind::Reply(ReplyTopic::CmdRes).code();
            if kind == code
                && reply
                    .and_then(ReplyTopic::from_code)
                    .is_some_and(|t| t.retain())
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `NotPending` unless every entry exists and is pending.
    pub(super) fn check_pending(
        &self,
        tx: &rusqlite::Connection,
        entries: &[i64],
    ) -> Result<(), OutboxError> {
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
        if not_pending.is_empty() {
            Ok(())
        } else {
            Err(OutboxError::NotPending(not_pending))
        }
    }

    /// The sequence number after `hwm`, reserving a new block in the side file first when the
    /// reservation is used up.
    pub(super) fn reserve_next(&self, hwm: u64, reserved: &mut u64) -> Result<u64, OutboxError> {
        let seq = seq::next_seq(hwm).map_err(StoreError::from)?;
        if let Some(r) = seq::needs_reservation(seq, *reserved) {
            seq::write(&self.reserve_path, r).map_err(|source| StoreError::Io {
                what: "cannot write the sequence reservation",
                path: self.reserve_path.clone(),
                source,
            })?;
            *reserved = r;
        }
        Ok(seq)
    }

    /// Persist message `seq` and bind `entries` to it (in `tx`; the caller records the
    /// high-water mark, `set_hwm`, once after its last message).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_message(
        &self,
        tx: &rusqlite::Connection,
        seq: u64,
        topic: &str,
        content: (&[u8], Option<&frozen::Recipe>),
        readings: u64,
        entries: &[i64],
        next: &mut super::counters::Next,
    ) -> Result<(), OutboxError> {
        self.insert_message_row(tx, seq, topic, content, readings)?;
        if let Some((lo, hi)) = id_run(entries) {
            // One statement for a run of consecutive ids (a batch group of one poll cycle):
            // the same rows, without a statement per row (issue 13).
            tx.prepare_cached(
                "UPDATE entry SET status = ?3, msg_seq = ?1 WHERE id BETWEEN ?2 AND ?4",
            )
            .and_then(|mut up| {
                up.execute(rusqlite::params![seq as i64, lo, entry_state::SEALED, hi])
            })
            .map_err(self.sql("bind entries"))?;
        } else {
            let mut up = tx
                .prepare_cached("UPDATE entry SET status = ?3, msg_seq = ?1 WHERE id = ?2")
                .map_err(self.sql("bind entries"))?;
            for id in entries {
                up.execute(rusqlite::params![seq as i64, id, entry_state::SEALED])
                    .map_err(self.sql("bind entries"))?;
            }
        }
        next.seal(entries.len() as u64, seq);
        Ok(())
    }

    /// Message `seq`'s row alone (its entries bound by the caller). With a recipe the payload
    /// is not stored (an empty blob): readers rebuild it (`frozen`).
    pub(super) fn insert_message_row(
        &self,
        tx: &rusqlite::Connection,
        seq: u64,
        topic: &str,
        (payload, recipe): (&[u8], Option<&frozen::Recipe>),
        readings: u64,
    ) -> Result<(), OutboxError> {
        tx.prepare_cached(
            "INSERT INTO message (seq, topic, payload, readings, created_ms, recipe, gw) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| {
            s.execute(rusqlite::params![
                seq as i64,
                topic,
                if recipe.is_some() { &[][..] } else { payload },
                readings as i64,
                crate::time::now_ms(),
                recipe.map(frozen::Recipe::code),
                recipe.map(|r| r.gw.as_str()),
            ])
        })
        .map_err(self.sql("insert message"))?;
        Ok(())
    }

    /// Record the highest sequence number sealed in `tx` (once per transaction, after its
    /// last `insert_message`).
    pub(super) fn set_hwm(&self, tx: &rusqlite::Connection, seq: u64) -> Result<(), OutboxError> {
        set_meta(tx, "seq_hwm", seq as i64).map_err(self.sql("seq_hwm"))?;
        Ok(())
    }

    /// Set sealed message `d.seq` aside (in `tx`): its entries leave the outbox the way an
    /// acknowledgement takes them (data rows stay as history, alarm/event rows go), the
    /// message row moves to `dead_letter`, and a `dead_letter` event is committed.
    fn set_aside(
        &self,
        tx: &rusqlite::Connection,
        d: &DeadLetter,
        readings: u64,
        payload: Option<&[u8]>,
        next: &mut super::counters::Next,
    ) -> Result<(), OutboxError> {
        let s = d.seq as i64;
        let now = crate::time::now_ms();
        let t = Tally::of(tx, "msg_seq = ?1", &[&s]).map_err(self.sql("dead letter tally"))?;
        let m = super::deferred::retire(tx, s).map_err(self.sql("dead letter message"))?;
        tx.execute(
            "INSERT OR REPLACE INTO dead_letter \
             (seq, topic, bytes, reason, readings, created_ms, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                s,
                d.topic,
                d.bytes as i64,
                d.reason,
                readings as i64,
                now,
                payload
            ],
        )
        .map_err(self.sql("insert dead letter"))?;
        // Bounded: the newest KEPT_DEAD_LETTERS stay for inspection and a later resend; the
        // total is counted in meta (every one was reported by its event).
        tx.execute(
            "DELETE FROM dead_letter WHERE seq < (SELECT MIN(seq) FROM \
             (SELECT seq FROM dead_letter ORDER BY seq DESC LIMIT ?1))",
            [KEPT_DEAD_LETTERS],
        )
        .map_err(self.sql("bound dead letters"))?;
        add_meta(tx, "dead_letters", 1).map_err(self.sql("meta"))?;
        // Like an acknowledgement for the counters, but nothing was acknowledged.
        next.ack(&t, 0, now);
        next.s.sealed_messages = next.s.sealed_messages.saturating_sub(m as u64);
        next.refresh(tx)
            .map_err(self.sql("dead letter statistics"))?;
        super::insert_json(tx, EntryKind::Event, &d.event_json(), now)
            .map_err(self.sql("dead letter event"))?;
        next.insert_json();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Dead letters on a real SQLite file: a refused sealed message and unbuildable entries
    //! leave the outbox with their seq, an event names them, the counters stay exact.

    use super::*;
    use crate::model::SampleBatch;
    use crate::store::{ClockStamp, StoreConfig};

    const T0: i64 = crate::store::clock::MIN_TRUSTED_UNIX_MS + 10 * 86_400_000;

    #[test]
    fn a_run_of_consecutive_ids_is_bound_with_one_range() {
        type Case<'a> = (&'a [i64], Option<(i64, i64)>);
        let cases: &[Case] = &[
            (&[], None),
            (&[7], None),
            (&[7, 8], Some((7, 8))),
            (&[12, 11, 10, 9], Some((9, 12))),
            (&[3, 5, 4], Some((3, 5))),
            (&[3, 5], None),
            (&[4, 4], None),
            (&[4, 5, 5], None),
            (&[1, 2, 4], None),
            (&[i64::MIN, i64::MAX], None),
        ];
        for (ids, want) in cases {
            assert_eq!(id_run(ids), *want, "{ids:?}");
        }
    }

    fn batch(read_ms: i64) -> SampleBatch {
        crate::store::tests::int_batch("d", read_ms, 3)
    }

    fn stamp() -> ClockStamp {
        ClockStamp {
            wall_ms: T0 + 10,
            mono_ms: 3_600_000,
            boot_id: "boot".into(),
        }
    }

    fn dead_events(store: &Store) -> Vec<serde_json::Value> {
        store
            .pending(1000, 0)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.body {
                EntryBody::Json(j) if j["event"] == "dead_letter" => Some(j),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn refused_messages_are_set_aside_with_their_seq_and_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let info = store
            .commit(
                &[batch(T0), batch(T0 + 1000)],
                &[(EntryKind::Alarm, serde_json::json!({"alarm": "a"}))],
                &stamp(),
            )
            .unwrap();
        let (d1, d2, al) = (info.entry_ids[0], info.entry_ids[1], info.entry_ids[2]);
        let m1 = store
            .seal("r/alarm", &[al], 0, &mut |_| Ok(vec![b'x'; 5000]))
            .unwrap();
        let m2 = store
            .seal("r/data", &[d1], 3, &mut |_| Ok(b"ok".to_vec()))
            .unwrap();

        // A sealed message the client refused.
        let d = store
            .dead_letter(m1.seq, "packet too large")
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.seq, d.bytes, d.topic.as_str()),
            (m1.seq, 5000, "r/alarm")
        );
        assert_eq!(store.dead_letter(m1.seq, "again").unwrap(), None);
        let unacked: Vec<u64> = store.unacked().unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(unacked, vec![m2.seq], "only the refused message left");

        // Entries that could not be built get the next seq.
        let d2l = store
            .dead_letter_entries("r/data", &[d2], 3, 0, &"x".repeat(500))
            .unwrap();
        assert_eq!(d2l.seq, m2.seq + 1);
        assert_eq!(d2l.reason.chars().count(), DEAD_LETTER_REASON_MAX + 1);
        assert!(matches!(
            store.dead_letter_entries("r/data", &[d2], 3, 0, "twice"),
            Err(OutboxError::NotPending(_))
        ));
        assert_eq!(store.last_seq().unwrap(), d2l.seq);
        assert_eq!(store.dead_letter_count().unwrap(), 2);

        let ev = dead_events(&store);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(ev[0]["dead_seq"], m1.seq);
        assert_eq!(ev[0]["bytes"], 5000);
        assert_eq!(ev[0]["reason"], "packet too large");
        assert_eq!(ev[1]["dead_seq"], d2l.seq);
        assert_eq!(ev[1]["topic"], "r/data");

        // Live counters equal a full scan; the next seal continues after the dead letters.
        let live = store.stats().unwrap();
        let mut scan = store.stats_scan().unwrap();
        scan.bytes_on_disk = live.bytes_on_disk;
        assert_eq!(live, scan);
        assert_eq!(live.sealed_messages, 1);
        let m3 = store
            .seal("r/event", &[], 0, &mut |_| Ok(b"e".to_vec()))
            .unwrap();
        assert_eq!(m3.seq, d2l.seq + 1);
        // A reopened store still knows them.
        drop(store);
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        assert_eq!(store.dead_letter_count().unwrap(), 2);
    }

    #[test]
    fn the_dead_letter_table_is_bounded_and_the_total_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let n = KEPT_DEAD_LETTERS as usize + 5;
        let batches: Vec<SampleBatch> = (0..n).map(|i| batch(T0 + i as i64)).collect();
        let info = store.commit(&batches, &[], &stamp()).unwrap();
        let mut seqs = Vec::new();
        for id in &info.entry_ids {
            seqs.push(
                store
                    .dead_letter_entries("r/data", &[*id], 3, 0, "refused")
                    .unwrap()
                    .seq,
            );
        }
        assert_eq!(
            store.dead_letter_count().unwrap(),
            n as u64,
            "total counted"
        );
        let kept: Vec<i64> = {
            let g = store.lock();
            let mut st = g
                .conn
                .prepare("SELECT seq FROM dead_letter ORDER BY seq")
                .unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let want: Vec<i64> = seqs[5..].iter().map(|s| *s as i64).collect();
        assert_eq!(kept, want, "the newest {KEPT_DEAD_LETTERS} are kept");
    }
}
