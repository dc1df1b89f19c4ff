//! Remote commands in the store (issue 10, docs/store.md "Commands"): the `command` table that
//! makes every command id execute at most once, reply entries (`EntryKind::Reply`, sent after
//! alarms and before events and data), their purge bound, and the history resend. Each public
//! method is ONE transaction under the store's lock, so a command's state, its reply and its
//! audit event are committed together or not at all.
//!
//! Exactly once: `command_begin` inserts the id as `running` with this opening's generation
//! (random per `Store::open`, see `new_generation`) before the caller executes anything;
//! `command_finish` makes it `done` with its result. A later `command_begin` of the same id
//! returns the stored result (`Done`), says it is still executing (`Running`, same
//! generation), or, for a `running` row of another generation, that an earlier process ended
//! between begin and finish (`Interrupted`: the effect may or may not have happened; it is
//! never executed again). Everything from outside is bounded: ids, ops, result and event
//! JSON (`COMMAND_JSON_MAX`), the table (`COMMAND_ROWS_MAX`, purged with the store's bounds),
//! resend ranges (`RESEND_RANGE_MAX_MS`) and counts (`max_readings`). The resend itself
//! (never of local rows) is `resend`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value as Json;

use super::{insert_json, Store, StoreError};
use crate::outbox::{EntryKind, ReplyTopic};

mod resend;
#[cfg(test)]
use resend::RESEND_ROWS;
pub use resend::{Resent, RESEND_RANGE_MAX_MS};

/// Largest result, reply body or event JSON accepted (serialized bytes).
pub const COMMAND_JSON_MAX: usize = 16 * 1024;
/// Command rows kept at most; beyond it the oldest received go first (`purge_commands`).
pub const COMMAND_ROWS_MAX: i64 = 10_000;
/// Longest command id and op (bytes; the wire allows 64 characters of ASCII for an id).
pub const COMMAND_ID_MAX: usize = 64;
pub const COMMAND_OP_MAX: usize = 32;
/// A command row is purged once its expiry passed more than this long ago.
pub const PURGE_AFTER_MS: i64 = 86_400_000;
/// A row written by `command_reject` has no expiry of its own: it is kept as if it expired
/// this long after it was refused (longer than any request may live: 7 days).
pub const REJECT_KEEP_MS: i64 = 8 * 86_400_000;

/// What `command_begin` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// A new id: now `running` in this process. Execute it, then `command_finish`.
    New,
    /// This process is executing it right now (a redelivery raced the first delivery): do
    /// nothing; the first one answers.
    Running,
    /// Finished before: this is its stored result (reply it again; never execute again).
    Done(Json),
    /// Begun by an earlier process that ended before finishing (kill -9, power cut): the
    /// effect may or may not have happened. Never executed again: answer it with
    /// `command_reject` (e.g. `unknown_outcome` / `interrupted`).
    Interrupted,
}

/// A generation for this opening of the store: random (the per-process keys of the standard
/// library's `RandomState`, seeded by the OS) mixed with the time, the process id and a
/// counter, so it differs from every earlier opening, also after the clock went back.
pub(crate) fn new_generation() -> i64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish() as i64
}

pub(super) fn bounded_text(what: &'static str, s: &str, max: usize) -> Result<(), StoreError> {
    if s.is_empty() {
        return Err(StoreError::OutOfBounds {
            what,
            why: "empty".into(),
        });
    }
    if s.len() > max {
        return Err(StoreError::OutOfBounds {
            what,
            why: format!("{} bytes, at most {max} accepted", s.len()),
        });
    }
    Ok(())
}

/// `v` serialized, refused above `COMMAND_JSON_MAX` bytes.
fn bounded_json(what: &'static str, v: &Json) -> Result<String, StoreError> {
    let s = v.to_string();
    if s.len() > COMMAND_JSON_MAX {
        return Err(StoreError::OutOfBounds {
            what,
            why: format!(
                "{} bytes of JSON, at most {COMMAND_JSON_MAX} accepted (nothing was written; \
                 answer with a shorter result, e.g. a `too_large` error)",
                s.len()
            ),
        });
    }
    Ok(s)
}

/// Delete command rows (in `tx`) whose expiry passed more than `PURGE_AFTER_MS` before
/// `now_ms`, then the oldest received beyond `COMMAND_ROWS_MAX`. Rows running in this
/// `generation` are never deleted (their finish would find nothing). Returns the rows deleted.
pub(crate) fn purge_in(tx: &Connection, now_ms: i64, generation: i64) -> rusqlite::Result<u64> {
    let keep_running = "NOT (state = 'running' AND generation = ?2)";
    let expired = tx
        .prepare_cached(&format!(
            "DELETE FROM command WHERE expires_ms < ?1 AND {keep_running}"
        ))?
        .execute(rusqlite::params![
            now_ms.saturating_sub(PURGE_AFTER_MS),
            generation
        ])?;
    let count: i64 = tx.query_row("SELECT COUNT(*) FROM command", [], |r| r.get(0))?;
    let over = count - COMMAND_ROWS_MAX;
    let capped = if over > 0 {
        tx.prepare_cached(&format!(
            "DELETE FROM command WHERE id IN (SELECT id FROM command WHERE {keep_running} \
             ORDER BY received_ms, id LIMIT ?1)"
        ))?
        .execute(rusqlite::params![over, generation])?
    } else {
        0
    };
    Ok((expired + capped) as u64)
}

impl Store {
    /// One transaction. A new id -> row `running` (this process's generation) -> `New`.
    /// Existing: done -> `Done(stored result)`; running in this process -> `Running`;
    /// running from an earlier process (killed mid-command) -> `Interrupted` (the effect may
    /// or may not have happened: never re-executed).
    pub fn command_begin(
        &self,
        id: &str,
        op: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<Begin, StoreError> {
        bounded_text("command id", id, COMMAND_ID_MAX)?;
        bounded_text("command op", op, COMMAND_OP_MAX)?;
        let mut g = self.lock();
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin command"))?;
        let found: Option<(String, i64, Option<String>)> = tx
            .prepare_cached("SELECT state, generation, result FROM command WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(self.sql("command lookup"))?;
        let begin = match found {
            None => {
                tx.prepare_cached(
                    "INSERT INTO command (id, op, state, generation, received_ms, expires_ms) \
                     VALUES (?1, ?2, 'running', ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        id,
                        op,
                        self.generation,
                        now_ms,
                        expires_ms
                    ])
                })
                .map_err(self.sql("insert command"))?;
                Begin::New
            }
            Some((state, _, Some(result))) if state == "done" => {
                Begin::Done(self.stored_result(id, &result)?)
            }
            Some((state, generation, _)) if state == "running" && generation == self.generation => {
                Begin::Running
            }
            Some(_) => Begin::Interrupted,
        };
        tx.commit().map_err(self.sql("commit command begin"))?;
        Ok(begin)
    }

    /// One transaction: the row becomes done with `result`, a Reply entry (cmd/res) carries
    /// `result`, an Event entry (`event: "command"`) records `event` (audit trail). Refused
    /// (`CommandState`) unless `id` is running in this process; refused (`OutOfBounds`) when
    /// `result` or `event` is larger than `COMMAND_JSON_MAX`: then nothing changed, and the
    /// caller answers with `command_reject` and a short error result instead.
    pub fn command_finish(&self, id: &str, result: &Json, event: &Json) -> Result<(), StoreError> {
        let result_text = bounded_json("command result", result)?;
        bounded_json("command event", event)?;
        let now = crate::time::now_ms();
        let mut g = self.lock();
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin command finish"))?;
        let n = tx
            .prepare_cached(
                "UPDATE command SET state = 'done', finished_ms = ?2, result = ?3 \
                 WHERE id = ?1 AND state = 'running' AND generation = ?4",
            )
            .and_then(|mut s| s.execute(rusqlite::params![id, now, result_text, self.generation]))
            .map_err(self.sql("finish command"))?;
        if n == 0 {
            let state: Option<String> = tx
                .query_row("SELECT state FROM command WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(self.sql("command lookup"))?;
            return Err(StoreError::CommandState {
                id: id.to_string(),
                why: match state {
                    None => "not begun (no command_begin)".into(),
                    Some(s) if s == "done" => "already finished".into(),
                    Some(_) => {
                        "begun by an earlier process (interrupted); answer it with command_reject"
                            .into()
                    }
                },
            });
        }
        let mut next = self.next_stats();
        insert_json(&tx, EntryKind::Reply(ReplyTopic::CmdRes), result, now)
            .map_err(self.sql("insert reply"))?;
        insert_json(&tx, EntryKind::Event, event, now).map_err(self.sql("insert event"))?;
        next.insert_json();
        next.insert_json();
        tx.commit().map_err(self.sql("commit command finish"))?;
        self.publish_stats(next);
        Ok(())
    }

    /// A request answered on another topic (a config push: `config/state`) is settled: its
    /// row becomes done with `result`, nothing is sent, so a redelivery is recognised and
    /// never handled again. Settles a row begun by this process or an earlier one (a push
    /// interrupted by a restart was dealt with by the installer's recovery at start).
    /// `CommandState` when the id was never begun or is already done.
    pub fn command_settle(&self, id: &str, result: &Json) -> Result<(), StoreError> {
        let result_text = bounded_json("command result", result)?;
        let now = crate::time::now_ms();
        let g = self.lock();
        let n = g
            .conn
            .prepare_cached(
                "UPDATE command SET state = 'done', finished_ms = ?2, result = ?3 \
                 WHERE id = ?1 AND state = 'running'",
            )
            .and_then(|mut s| s.execute(rusqlite::params![id, now, result_text]))
            .map_err(self.sql("settle command"))?;
        if n == 0 {
            return Err(StoreError::CommandState {
                id: id.to_string(),
                why: "not running (never begun, or already done)".into(),
            });
        }
        Ok(())
    }

    /// Whether `id` is done (finished, rejected or settled): read only, for a redelivery check
    /// before costly validation.
    pub fn command_done(&self, id: &str) -> Result<bool, StoreError> {
        bounded_text("command id", id, COMMAND_ID_MAX)?;
        let g = self.lock();
        g.conn
            .prepare_cached("SELECT 1 FROM command WHERE id = ?1 AND state = 'done'")
            .and_then(|mut s| s.query_row([id], |_| Ok(())).optional())
            .map(|r| r.is_some())
            .map_err(self.sql("command lookup"))
    }

    /// A reply with no execution (refused, expired, interrupted, malformed with a readable
    /// id): row done (if `id`), reply and event, one transaction; a redelivery returns the
    /// same result. An id that is already done keeps its stored result, and that stored
    /// result is what is replied (a command's outcome never changes); the event is recorded
    /// all the same. A new row is kept `REJECT_KEEP_MS` (it has no expiry of its own).
    pub fn command_reject(
        &self,
        id: Option<&str>,
        result: &Json,
        event: &Json,
    ) -> Result<(), StoreError> {
        let result_text = bounded_json("command result", result)?;
        bounded_json("command event", event)?;
        if let Some(id) = id {
            bounded_text("command id", id, COMMAND_ID_MAX)?;
        }
        let op = result
            .get("op")
            .and_then(Json::as_str)
            .filter(|op| !op.is_empty() && op.len() <= COMMAND_OP_MAX)
            .unwrap_or("?");
        let now = crate::time::now_ms();
        let mut g = self.lock();
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin command reject"))?;
        let mut reply = None;
        if let Some(id) = id {
            let found: Option<(String, Option<String>)> = tx
                .query_row(
                    "SELECT state, result FROM command WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(self.sql("command lookup"))?;
            match found {
                None => {
                    tx.prepare_cached(
                        "INSERT INTO command (id, op, state, generation, received_ms, \
                         expires_ms, finished_ms, result) \
                         VALUES (?1, ?2, 'done', ?3, ?4, ?5, ?4, ?6)",
                    )
                    .and_then(|mut s| {
                        s.execute(rusqlite::params![
                            id,
                            op,
                            self.generation,
                            now,
                            now.saturating_add(REJECT_KEEP_MS),
                            result_text
                        ])
                    })
                    .map_err(self.sql("insert command"))?;
                }
                Some((state, Some(stored))) if state == "done" => {
                    reply = Some(self.stored_result(id, &stored)?);
                }
                Some(_) => {
                    tx.execute(
                        "UPDATE command SET state = 'done', finished_ms = ?2, result = ?3 \
                         WHERE id = ?1",
                        rusqlite::params![id, now, result_text],
                    )
                    .map_err(self.sql("reject command"))?;
                }
            }
        }
        let mut next = self.next_stats();
        insert_json(
            &tx,
            EntryKind::Reply(ReplyTopic::CmdRes),
            reply.as_ref().unwrap_or(result),
            now,
        )
        .map_err(self.sql("insert reply"))?;
        insert_json(&tx, EntryKind::Event, event, now).map_err(self.sql("insert event"))?;
        next.insert_json();
        next.insert_json();
        tx.commit().map_err(self.sql("commit command reject"))?;
        self.publish_stats(next);
        Ok(())
    }

    /// Queue a reply on another topic (config/state, retained), with an optional event, in
    /// one transaction. `body` and `event` are bounded by `COMMAND_JSON_MAX`.
    pub fn queue_reply(
        &self,
        topic: ReplyTopic,
        body: &Json,
        event: Option<&Json>,
    ) -> Result<(), StoreError> {
        bounded_json("reply", body)?;
        if let Some(e) = event {
            bounded_json("reply event", e)?;
        }
        let now = crate::time::now_ms();
        let mut g = self.lock();
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin reply"))?;
        let mut next = self.next_stats();
        insert_json(&tx, EntryKind::Reply(topic), body, now).map_err(self.sql("insert reply"))?;
        next.insert_json();
        if let Some(e) = event {
            insert_json(&tx, EntryKind::Event, e, now).map_err(self.sql("insert event"))?;
            next.insert_json();
        }
        tx.commit().map_err(self.sql("commit reply"))?;
        self.publish_stats(next);
        Ok(())
    }

    /// Rows whose expiry passed more than a day ago, and beyond 10,000 rows (oldest first),
    /// in one transaction; `enforce_limits` does the same inside its own. Returns the rows
    /// deleted. (A redelivery of a purged id would be refused as expired by its expiry.)
    pub fn purge_commands(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin command purge"))?;
        let n = purge_in(&tx, now_ms, self.generation).map_err(self.sql("command purge"))?;
        tx.commit().map_err(self.sql("commit command purge"))?;
        Ok(n)
    }

    /// A stored result as JSON (it was written by this code, so a failure is corruption).
    fn stored_result(&self, id: &str, text: &str) -> Result<Json, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError::Decode {
            path: self.path.clone(),
            id: 0,
            why: format!("command {id:?}: the stored result is not JSON: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    //! On real SQLite files: exactly once per id (within a process and across a reopen),
    //! rejects, reply send order and topics, the retain flag through seal/unacked/reopen,
    //! bounds, purge, the query plans, and live counters equal to a full scan throughout.

    use serde_json::json;

    use super::*;
    use crate::config::StoreConfig;
    use crate::model::SampleBatch;
    use crate::outbox::{EntryBody, Outbox, OutboxError};
    use crate::store::{ClockStamp, MIN_TRUSTED_UNIX_MS};
    use crate::time::from_unix_ms;

    const T0: i64 = MIN_TRUSTED_UNIX_MS + 10 * 86_400_000;

    fn open(dir: &std::path::Path) -> Store {
        Store::open(dir, &StoreConfig::default()).unwrap().0
    }

    fn batch(device: &str, read_ms: i64) -> SampleBatch {
        crate::store::tests::int_batch(device, read_ms, 3)
    }

    fn stamp(wall_ms: i64) -> ClockStamp {
        ClockStamp {
            wall_ms,
            mono_ms: 3_600_000,
            boot_id: "boot".into(),
        }
    }

    fn assert_counters_exact(store: &Store) {
        let live = store.stats().unwrap();
        let mut scan = store.stats_scan().unwrap();
        scan.bytes_on_disk = live.bytes_on_disk;
        assert_eq!(live, scan, "live counters differ from a full scan");
    }

    /// Every pending entry (kind, JSON body or None for data), in send order.
    fn pending(store: &Store) -> Vec<(EntryKind, Option<Json>)> {
        store
            .pending(10_000, 0)
            .unwrap()
            .into_iter()
            .map(|e| match e.body {
                EntryBody::Json(j) => (e.kind, Some(j)),
                EntryBody::Batch(_) => (e.kind, None),
            })
            .collect()
    }

    /// Seal each pending entry into its own message and acknowledge it.
    fn drain(store: &Store) {
        for e in store.pending(10_000, 0).unwrap() {
            let m = store
                .seal("t", &[e.id], 0, &mut |_| Ok(b"x".to_vec()))
                .unwrap();
            store.ack(m.seq).unwrap();
        }
    }

    fn result(id: &str, status: &str) -> Json {
        json!({"id": id, "op": "write", "status": status, "result": {"value": true}})
    }

    #[test]
    fn a_command_id_executes_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        drain(&store);
        let (now, exp) = (T0, T0 + 60_000);
        assert_eq!(
            store.command_begin("ops-1", "write", exp, now).unwrap(),
            Begin::New
        );
        // A redelivery while it executes: no second execution.
        assert_eq!(
            store.command_begin("ops-1", "write", exp, now).unwrap(),
            Begin::Running
        );
        let res = result("ops-1", "ok");
        let ev = json!({"event": "command", "id": "ops-1", "status": "ok"});
        store.command_finish("ops-1", &res, &ev).unwrap();
        // Later redeliveries: the stored result, never New again.
        for _ in 0..3 {
            assert_eq!(
                store.command_begin("ops-1", "write", exp, now).unwrap(),
                Begin::Done(res.clone())
            );
        }
        // Finishing twice or finishing what was never begun is a caller bug, refused.
        for id in ["ops-1", "never-begun"] {
            assert!(
                matches!(
                    store.command_finish(id, &res, &ev),
                    Err(StoreError::CommandState { .. })
                ),
                "{id}"
            );
        }
        // One reply and one audit event, once.
        assert_eq!(
            pending(&store),
            vec![
                (EntryKind::Reply(ReplyTopic::CmdRes), Some(res.clone())),
                (EntryKind::Event, Some(ev)),
            ]
        );
        assert_counters_exact(&store);
        // Still done after a reopen.
        drop(store);
        let store = open(dir.path());
        assert_eq!(
            store.command_begin("ops-1", "write", exp, now).unwrap(),
            Begin::Done(res)
        );
    }

    /// The store is dropped between begin and finish: what a process that ended there leaves
    /// on disk (the begin committed, nothing else), since the store writes nothing when it
    /// is dropped. tests/store_commands.rs does it with a real kill -9 of a child process.
    #[test]
    fn running_from_an_earlier_opening_is_interrupted_and_never_new() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        assert_eq!(
            store.command_begin("c-9", "write", T0 + 1, T0).unwrap(),
            Begin::New
        );
        drop(store);
        let store = open(dir.path());
        assert_eq!(
            store.command_begin("c-9", "write", T0 + 1, T0).unwrap(),
            Begin::Interrupted
        );
        assert!(matches!(
            store.command_finish("c-9", &result("c-9", "ok"), &json!({})),
            Err(StoreError::CommandState { .. })
        ));
        // Answered as unknown outcome: from then on that is its result.
        let unknown = result("c-9", "unknown_outcome");
        store
            .command_reject(Some("c-9"), &unknown, &json!({"event": "command"}))
            .unwrap();
        assert_eq!(
            store.command_begin("c-9", "write", T0 + 1, T0).unwrap(),
            Begin::Done(unknown)
        );
    }

    #[test]
    fn rejects_are_remembered_and_never_change_an_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        drain(&store);
        let expired = json!({"id": "e-1", "op": "ping", "status": "expired"});
        let ev = json!({"event": "command", "id": "e-1"});
        store.command_reject(Some("e-1"), &expired, &ev).unwrap();
        assert_eq!(
            store.command_begin("e-1", "ping", T0, T0).unwrap(),
            Begin::Done(expired.clone())
        );
        // No id (unreadable): reply and event only, no row.
        let bad = json!({"id": null, "status": "error"});
        store.command_reject(None, &bad, &ev).unwrap();
        // An id that already ran keeps its result; that result is replied again.
        let ok = result("w-1", "ok");
        assert_eq!(
            store.command_begin("w-1", "write", T0, T0).unwrap(),
            Begin::New
        );
        store.command_finish("w-1", &ok, &ev).unwrap();
        store
            .command_reject(Some("w-1"), &result("w-1", "expired"), &ev)
            .unwrap();
        assert_eq!(
            store.command_begin("w-1", "write", T0, T0).unwrap(),
            Begin::Done(ok.clone())
        );
        let replies: Vec<Json> = pending(&store)
            .into_iter()
            .filter(|(k, _)| *k == EntryKind::Reply(ReplyTopic::CmdRes))
            .filter_map(|(_, j)| j)
            .collect();
        assert_eq!(replies, vec![expired, bad, ok.clone(), ok]);
        // Rejecting a command that is running here (e.g. refused after begin) finishes it.
        assert_eq!(
            store.command_begin("r-1", "write", T0, T0).unwrap(),
            Begin::New
        );
        let refused = result("r-1", "refused");
        store.command_reject(Some("r-1"), &refused, &ev).unwrap();
        assert_eq!(
            store.command_begin("r-1", "write", T0, T0).unwrap(),
            Begin::Done(refused)
        );
        assert_counters_exact(&store);
    }

    #[test]
    fn replies_send_after_alarms_and_before_events_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        drain(&store);
        // Data and an event first, then an alarm, then the reply (committed last).
        store
            .commit(
                &[batch("d", T0)],
                &[(EntryKind::Event, json!({"event": "e"}))],
                &stamp(T0),
            )
            .unwrap();
        store
            .commit(
                &[],
                &[(EntryKind::Alarm, json!({"alarm": "a"}))],
                &stamp(T0 + 1),
            )
            .unwrap();
        store
            .queue_reply(
                ReplyTopic::ConfigState,
                &json!({"status": "applied"}),
                Some(&json!({"event": "config_applied"})),
            )
            .unwrap();
        store.command_begin("c1", "ping", T0, T0).unwrap();
        store
            .command_finish("c1", &json!({"id": "c1"}), &json!({"event": "command"}))
            .unwrap();
        let kinds: Vec<EntryKind> = pending(&store).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            vec![
                EntryKind::Alarm,
                EntryKind::Reply(ReplyTopic::ConfigState),
                EntryKind::Reply(ReplyTopic::CmdRes),
                EntryKind::Event,
                EntryKind::Event,
                EntryKind::Event,
                EntryKind::Data,
            ]
        );
        // `limit` is respected across the per-kind queries.
        let first2: Vec<EntryKind> = store
            .pending(2, 0)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            first2,
            vec![EntryKind::Alarm, EntryKind::Reply(ReplyTopic::ConfigState)]
        );
    }

    #[test]
    fn the_retain_flag_travels_with_the_reply_into_unacked_and_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        drain(&store);
        store
            .queue_reply(ReplyTopic::ConfigState, &json!({"status": "applied"}), None)
            .unwrap();
        store
            .queue_reply(ReplyTopic::CmdRes, &json!({"id": "x"}), None)
            .unwrap();
        store
            .commit(
                &[],
                &[(EntryKind::Event, json!({"event": "e"}))],
                &stamp(T0),
            )
            .unwrap();
        let mut sealed = Vec::new();
        for e in store.pending(100, 0).unwrap() {
            let m = store
                .seal("topic", &[e.id], 0, &mut |_| Ok(b"p".to_vec()))
                .unwrap();
            sealed.push((e.kind, m.seq, m.retain));
        }
        let retained: Vec<bool> = sealed.iter().map(|s| s.2).collect();
        assert_eq!(retained, vec![true, false, false], "{sealed:?}");
        let from_store = |store: &Store| -> Vec<(u64, bool)> {
            store
                .unacked()
                .unwrap()
                .into_iter()
                .map(|m| (m.seq, m.retain))
                .collect()
        };
        let want: Vec<(u64, bool)> = sealed.iter().map(|s| (s.1, s.2)).collect();
        assert_eq!(from_store(&store), want);
        drop(store);
        let store = open(dir.path());
        assert_eq!(
            from_store(&store),
            want,
            "resent after a restart: still retained"
        );
        store.ack_many(&[want[0].0, want[1].0, want[2].0]).unwrap();
        assert_counters_exact(&store);
    }

    #[test]
    fn live_counters_stay_exact_through_replies_resend_and_acks() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        assert_counters_exact(&store);
        store
            .commit(
                &[batch("d", T0), batch("d", T0 + 1000)],
                &[],
                &stamp(T0 + 2000),
            )
            .unwrap();
        store.command_begin("a", "read", T0, T0).unwrap();
        assert_counters_exact(&store);
        store
            .command_finish("a", &json!({"id": "a"}), &json!({"event": "command"}))
            .unwrap();
        store.command_reject(None, &json!({}), &json!({})).unwrap();
        store
            .queue_reply(ReplyTopic::ConfigState, &json!({}), None)
            .unwrap();
        assert_counters_exact(&store);
        // Export (`gasdtu export`) and a read-only store's statistics (`gasdtu queue` from
        // another process) see the replies as pending entries and nothing else.
        let mut batches = 0;
        store
            .export(&crate::store::ExportFilter::default(), &mut |_| {
                batches += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(batches, 2);
        let ro = Store::open_read_only(dir.path()).unwrap();
        let mut ro_stats = ro.stats().unwrap();
        ro_stats.bytes_on_disk = 0;
        let mut live = store.stats().unwrap();
        live.bytes_on_disk = 0;
        assert_eq!(ro_stats, live);
        let json_rows = pending(&store).iter().filter(|(_, j)| j.is_some()).count() as u64;
        assert_eq!(
            live.pending_entries,
            2 + json_rows,
            "batches + alarms/replies/events"
        );
        drop(ro);
        drain(&store);
        assert_counters_exact(&store);
        let r = store.resend_history("d", T0, T0 + 1000, 100, &[]).unwrap();
        assert_eq!((r.entries, r.readings), (2, 6));
        assert_counters_exact(&store);
        drain(&store);
        assert_counters_exact(&store);
        assert_eq!(store.stats().unwrap().pending_entries, 0);
        assert_eq!(store.stats().unwrap().history_readings, 6);
    }

    #[test]
    fn oversized_and_malformed_inputs_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        drain(&store);
        let big = json!({"id": "b", "result": "x".repeat(COMMAND_JSON_MAX)});
        let ok = json!({"id": "b"});
        let cases: Vec<(&str, Result<(), StoreError>)> = vec![
            (
                "empty id",
                store.command_begin("", "ping", T0, T0).map(drop),
            ),
            (
                "long id",
                store
                    .command_begin(&"i".repeat(65), "ping", T0, T0)
                    .map(drop),
            ),
            (
                "long op",
                store.command_begin("i", &"o".repeat(33), T0, T0).map(drop),
            ),
            (
                "reject big result",
                store.command_reject(Some("b"), &big, &ok),
            ),
            (
                "reject big event",
                store.command_reject(Some("b"), &ok, &big),
            ),
            (
                "reject long id",
                store.command_reject(Some(&"i".repeat(65)), &ok, &ok),
            ),
            (
                "reply big",
                store.queue_reply(ReplyTopic::CmdRes, &big, None),
            ),
            (
                "reply big event",
                store.queue_reply(ReplyTopic::CmdRes, &ok, Some(&big)),
            ),
            (
                "resend reversed",
                store.resend_history("d", T0, T0 - 1, 10, &[]).map(drop),
            ),
            (
                "resend 31 days + 1 ms",
                store
                    .resend_history("d", T0, T0 + RESEND_RANGE_MAX_MS + 1, 10, &[])
                    .map(drop),
            ),
            (
                "resend long device",
                store
                    .resend_history(&"d".repeat(257), T0, T0, 10, &[])
                    .map(drop),
            ),
        ];
        for (what, r) in cases {
            match r {
                Err(StoreError::OutOfBounds { what: w, why }) => {
                    assert!(!why.is_empty(), "{what}: {w}")
                }
                other => panic!("{what}: expected OutOfBounds, got {other:?}"),
            }
        }
        // A result just above the bound at finish: refused, the command stays running here
        // (the caller answers it with a short error through command_reject).
        assert_eq!(
            store.command_begin("b", "read", T0, T0).unwrap(),
            Begin::New
        );
        let e = store
            .command_finish("b", &big, &ok)
            .expect_err("16 KiB + refused");
        assert!(e.to_string().contains("16384"), "{e}");
        assert_eq!(
            store.command_begin("b", "read", T0, T0).unwrap(),
            Begin::Running
        );
        // Exactly at the bound: accepted.
        let pad = COMMAND_JSON_MAX - json!({"r": ""}).to_string().len();
        let exact = json!({"r": "y".repeat(pad)});
        assert_eq!(exact.to_string().len(), COMMAND_JSON_MAX);
        store.command_finish("b", &exact, &ok).unwrap();
        // 31 days exactly is accepted.
        store
            .resend_history("d", T0, T0 + RESEND_RANGE_MAX_MS, 10, &[])
            .unwrap();
        // Only the one finish wrote anything.
        assert_eq!(pending(&store).len(), 2);
    }

    #[test]
    fn purge_drops_long_expired_rows_and_caps_the_table_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let day = PURGE_AFTER_MS;
        // Expired 1 day + 1 ms ago, done: purged. Expired exactly a day ago: kept.
        // Running in this process and long expired: kept (its finish must find it).
        for (id, exp) in [("old", T0 - day - 1), ("edge", T0 - day), ("live", T0 + 1)] {
            store.command_begin(id, "ping", exp, T0 - 2 * day).unwrap();
            store
                .command_finish(id, &json!({"id": id}), &json!({}))
                .unwrap();
        }
        store
            .command_begin("busy", "write", T0 - 5 * day, T0 - 6 * day)
            .unwrap();
        assert_eq!(store.purge_commands(T0).unwrap(), 1);
        assert!(matches!(
            store.command_begin("old", "ping", T0 + 1, T0).unwrap(),
            Begin::New
        ));
        for id in ["edge", "live"] {
            assert!(matches!(
                store.command_begin(id, "ping", T0, T0).unwrap(),
                Begin::Done(_)
            ));
        }
        assert_eq!(
            store.command_begin("busy", "write", T0, T0).unwrap(),
            Begin::Running
        );
        // An earlier process's running row is purged by its expiry like any other.
        drop(store);
        let store = open(dir.path());
        assert_eq!(
            store.purge_commands(T0).unwrap(),
            1,
            "busy, now interrupted"
        );

        // The cap: COMMAND_ROWS_MAX + 5 unexpired rows, the oldest received go.
        {
            let mut g = store.lock();
            let tx = g.conn.transaction().unwrap();
            tx.execute("DELETE FROM command", []).unwrap();
            let mut st = tx
                .prepare(
                    "INSERT INTO command (id, op, state, generation, received_ms, expires_ms, \
                     finished_ms, result) VALUES (?1, 'ping', 'done', 1, ?2, ?3, ?2, '{}')",
                )
                .unwrap();
            for i in 0..COMMAND_ROWS_MAX + 5 {
                st.execute(rusqlite::params![format!("c{i}"), T0 + i, T0 + day])
                    .unwrap();
            }
            drop(st);
            tx.commit().unwrap();
        }
        // Through the store's bound enforcement.
        let ev = store.enforce_limits(from_unix_ms(T0)).unwrap();
        assert_eq!(ev.purged_commands, 5);
        let g = store.lock();
        let (n, oldest): (i64, String) = g
            .conn
            .query_row(
                "SELECT COUNT(*), (SELECT id FROM command ORDER BY received_ms LIMIT 1) \
                 FROM command",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, oldest.as_str()), (COMMAND_ROWS_MAX, "c5"));
    }

    /// The outbox and resend queries read their index in order: no full scan, no sort.
    #[test]
    fn pending_and_resend_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let g = store.lock();
        let plan = |sql: &str, n: usize| -> String {
            let params: Vec<i64> = (0..n as i64).collect();
            let mut st = g
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows: Vec<String> = st
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            rows.join("; ")
        };
        let p = plan(crate::store::sealing::PENDING_JSON, 2);
        assert!(p.contains("USING INDEX entry_pending (kind=?"), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");
        // What a priority expression would cost (why `pending` runs one query per kind).
        let p = plan(
            "SELECT id FROM entry WHERE status = 0 AND kind IN (0, 1, 3) ORDER BY \
             CASE kind WHEN 0 THEN 0 WHEN 3 THEN 1 ELSE 2 END, created_ms, id LIMIT ?1",
            1,
        );
        assert!(p.contains("TEMP B-TREE"), "{p}");
        let p = plan(RESEND_ROWS, 4);
        assert!(
            p.contains("USING INDEX entry_read (read_ms>? AND read_ms<?)"),
            "{p}"
        );
        assert!(!p.contains("TEMP B-TREE"), "{p}");
        let p = plan(
            "DELETE FROM command WHERE expires_ms < ?1 AND NOT (state = 'running' AND generation = ?2)",
            2,
        );
        assert!(p.contains("INDEX"), "{p}");
    }

    mod props {
        //! The exactly-once rule against a model, over random sequences of begin, finish,
        //! reject and reopen (a new process) on a few ids: `New` at most once per id, ever.
        use proptest::prelude::*;
        use proptest::test_runner::{Config as ProptestConfig, RngSeed};

        use super::*;

        #[derive(Debug, Clone)]
        enum Step {
            Begin(u8),
            Finish(u8),
            Reject(u8),
            Reopen,
        }

        #[derive(Debug, Clone, PartialEq)]
        enum Model {
            Absent,
            Running { here: bool },
            Done(Json),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => (0u8..3).prop_map(Step::Begin),
                3 => (0u8..3).prop_map(Step::Finish),
                2 => (0u8..3).prop_map(Step::Reject),
                1 => Just(Step::Reopen),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 24,
                rng_seed: RngSeed::Fixed(0x00C0_FFEE),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn begin_is_new_at_most_once_per_id(steps in proptest::collection::vec(step(), 1..24)) {
                let dir = tempfile::tempdir().unwrap();
                let mut store = open(dir.path());
                drain(&store);
                let mut model = vec![Model::Absent; 3];
                let mut news = [0u32; 3];
                let mut replies = 0usize;
                for (k, s) in steps.iter().enumerate() {
                    match s {
                        Step::Begin(i) => {
                            let id = format!("id{i}");
                            let got = store.command_begin(&id, "write", T0, T0).unwrap();
                            let m = &mut model[*i as usize];
                            let want = match m.clone() {
                                Model::Absent => {
                                    *m = Model::Running { here: true };
                                    news[*i as usize] += 1;
                                    Begin::New
                                }
                                Model::Running { here: true } => Begin::Running,
                                Model::Running { here: false } => Begin::Interrupted,
                                Model::Done(r) => Begin::Done(r),
                            };
                            prop_assert_eq!(got, want);
                        }
                        Step::Finish(i) => {
                            let id = format!("id{i}");
                            let res = json!({"id": id, "step": k});
                            let got = store.command_finish(&id, &res, &json!({}));
                            let m = &mut model[*i as usize];
                            if *m == (Model::Running { here: true }) {
                                prop_assert!(got.is_ok(), "{:?}", got);
                                *m = Model::Done(res);
                                replies += 1;
                            } else {
                                let refused = matches!(got, Err(StoreError::CommandState { .. }));
                                prop_assert!(refused, "{:?}", got);
                            }
                        }
                        Step::Reject(i) => {
                            let id = format!("id{i}");
                            let res = json!({"id": id, "step": k, "status": "refused"});
                            store.command_reject(Some(&id), &res, &json!({})).unwrap();
                            let m = &mut model[*i as usize];
                            if !matches!(m, Model::Done(_)) {
                                *m = Model::Done(res);
                            }
                            replies += 1;
                        }
                        Step::Reopen => {
                            drop(store);
                            store = open(dir.path());
                            for m in model.iter_mut() {
                                if let Model::Running { here } = m {
                                    *here = false;
                                }
                            }
                        }
                    }
                }
                prop_assert!(news.iter().all(|n| *n <= 1), "{:?}", news);
                let got_replies = pending(&store)
                    .iter()
                    .filter(|(k, _)| *k == EntryKind::Reply(ReplyTopic::CmdRes))
                    .count();
                prop_assert_eq!(got_replies, replies);
                assert_counters_exact(&store);
            }
        }
    }

    #[test]
    fn generations_differ() {
        let g: std::collections::HashSet<i64> = (0..1000).map(|_| new_generation()).collect();
        assert_eq!(g.len(), 1000);
    }

    #[test]
    fn the_sealed_reply_keeps_its_topic_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        drain(&store);
        store
            .queue_reply(ReplyTopic::ConfigState, &json!({"version": "v1"}), None)
            .unwrap();
        drop(store);
        let store = open(dir.path());
        let e = store.pending(10, 0).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, EntryKind::Reply(ReplyTopic::ConfigState));
        assert_eq!(e[0].body, EntryBody::Json(json!({"version": "v1"})));
        assert!(!e[0].historical);
        // An unknown reply topic code (a newer version wrote it) is a decode error, not a panic.
        store
            .lock()
            .conn
            .execute("UPDATE entry SET reply_topic = 9 WHERE id = ?1", [e[0].id])
            .unwrap();
        match store.pending(10, 0) {
            Err(OutboxError::Store(why)) => assert!(why.contains("reply topic"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
