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
//! resend ranges (`RESEND_RANGE_MAX_MS`) and counts (`max_readings`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value as Json;

use super::{entry_state, insert_json, Store, StoreError};
use crate::outbox::{EntryKind, ReplyTopic};
use crate::time::unix_ms;

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
/// Longest time range of one `resend_history`.
pub const RESEND_RANGE_MAX_MS: i64 = 31 * 86_400_000;
/// Longest device name `resend_history` looks up (bytes).
pub const DEVICE_NAME_MAX: usize = 256;
/// `created_ms` of a resent entry: before any uplink session, so it is always sent as
/// backlog (`hist: true`), ahead of the rest of the backlog, oldest read first.
pub const RESENT_CREATED_MS: i64 = -1;

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

/// What `resend_history` made pending again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resent {
    /// The device has rows in the store (false: unknown device, nothing done).
    pub device_known: bool,
    /// Entries (batches) and readings made pending again.
    pub entries: u64,
    pub readings: u64,
    /// Read times of the first and last reading resent.
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// More delivered readings matched than `max_readings`: the later ones were left (ask
    /// again from just after `last_ms`).
    pub more: bool,
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

fn bounded_text(what: &'static str, s: &str, max: usize) -> Result<(), StoreError> {
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
        let now = unix_ms(SystemTime::now());
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
        let now = unix_ms(SystemTime::now());
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
        let now = unix_ms(SystemTime::now());
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

    /// Delivered history of `device` read in [from_ms, to_ms] becomes pending again (sent as
    /// backlog, `hist: true`, new sequence numbers), at most `max_readings` readings, oldest
    /// read first, whole batches only; one transaction. Rows still pending or sealed are
    /// already on their way and left alone. Refused (`OutOfBounds`) for a reversed range or
    /// one longer than `RESEND_RANGE_MAX_MS`.
    pub fn resend_history(
        &self,
        device: &str,
        from_ms: i64,
        to_ms: i64,
        max_readings: u64,
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

    /// A stored result as JSON (it was written by this code, so a failure is corruption).
    fn stored_result(&self, id: &str, text: &str) -> Result<Json, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError::Decode {
            path: self.path.clone(),
            id: 0,
            why: format!("command {id:?}: the stored result is not JSON: {e}"),
        })
    }
}

/// Delivered data rows of device `?3` read in [`?1`, `?2`] with readings, oldest read first
/// (a range of the `entry_read` index).
pub(crate) const RESEND_ROWS: &str = "SELECT id, readings, read_ms FROM entry \
     WHERE kind = 2 AND read_ms BETWEEN ?1 AND ?2 AND status = ?4 AND readings > 0 \
     AND source IN (SELECT id FROM source WHERE device = ?3) ORDER BY read_ms, id";
