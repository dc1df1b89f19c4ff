//! `AlarmService`: the pure alarm engine (crate::alarm) bound to the store, so that a group of
//! batches, their alarm transitions (outbox entries of kind `Alarm`) and the new alarm states
//! are ONE transaction. Semantics and message format: docs/alarms.md, docs/mqtt.md.
//!
//! Thread-safety: the engine sits behind a `std::sync::Mutex` held across evaluate + commit
//! (both synchronous, on a blocking thread), so an acknowledgement from the status socket and
//! the consumer's commits are serialized, and the in-memory state only moves when the commit
//! succeeded (the engine is cloned, evaluated, committed, then swapped in).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::alarm::{AckError, ActiveAlarm, AlarmEngine, AlarmRule};
use crate::model::SampleBatch;
use crate::outbox::EntryKind;
use crate::store::{ClockStamp, CommitInfo, Store, StoreError};

/// Why an operation of the alarm service failed.
#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    /// The acknowledgement names no active, unacknowledged occurrence.
    #[error(transparent)]
    Ack(#[from] AckError),
    /// The store refused the transaction (nothing changed, in memory either).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The alarm engine bound to the store. Cheap to clone (shared).
#[derive(Clone)]
pub struct AlarmService {
    engine: Arc<Mutex<AlarmEngine>>,
    store: Arc<Store>,
    /// (rule id, device) of every `raised` transition committed since the last `take_raised`
    /// (what interlocks act on, after the commit).
    raised: Arc<Mutex<Vec<(String, String)>>>,
}

/// Longest client-sent note kept with an acknowledgement, in characters.
pub const MAX_ACK_NOTE: usize = 64;

impl AlarmService {
    /// Build the engine for `rules` and restore its persisted state from `store`.
    pub fn open(rules: Vec<AlarmRule>, store: Arc<Store>) -> Result<AlarmService, StoreError> {
        let (rows, next) = store.alarm_state()?;
        let now = crate::time::now_ms().max(1) as u64;
        let mut engine = AlarmEngine::new(rules, now);
        engine.restore(rows, next);
        Ok(AlarmService {
            engine: Arc::new(Mutex::new(engine)),
            store,
            raised: Arc::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, AlarmEngine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Evaluate `batches` and commit them with `extra` entries, their alarm transitions and
    /// the alarm states in one transaction (blocking: call from `spawn_blocking`). Returns
    /// the commit info and the number of alarm transitions committed.
    pub fn commit(
        &self,
        batches: &[SampleBatch],
        extra: &[(EntryKind, serde_json::Value)],
        stamp: &ClockStamp,
    ) -> Result<(CommitInfo, usize), StoreError> {
        self.commit_routed(batches, &[], batches, extra, stamp)
    }

    /// `commit` for a group routed by the reporter: the rules judge the `raw` batches (every
    /// poll, at full rate), the store gets `history` (raw batches kept but not sent) and
    /// `outbox` (batches and reports sent upstream), all in one transaction.
    pub fn commit_routed(
        &self,
        raw: &[SampleBatch],
        history: &[SampleBatch],
        outbox: &[SampleBatch],
        extra: &[(EntryKind, serde_json::Value)],
        stamp: &ClockStamp,
    ) -> Result<(CommitInfo, usize), StoreError> {
        let mut g = self.lock();
        let mut next = g.clone();
        let transitions = next.evaluate(raw);
        let writes = next.take_writes();
        let n = transitions.len();
        // Alarms first in the transaction's entries: they also sort first in the outbox.
        let mut all: Vec<(EntryKind, serde_json::Value)> = transitions
            .into_iter()
            .map(|t| (EntryKind::Alarm, t))
            .collect();
        all.extend_from_slice(extra);
        for t in all.iter().filter(|(k, _)| *k == EntryKind::Alarm) {
            tracing::warn!(alarm = %t.1, "alarm transition");
        }
        let info = self
            .store
            .commit_all(history, outbox, &all, &writes, stamp)?;
        *g = next;
        let raised: Vec<(String, String)> = all
            .iter()
            .filter(|(k, t)| *k == EntryKind::Alarm && t["state"] == "raised")
            .filter_map(|(_, t)| {
                Some((
                    t["alarm"].as_str()?.to_string(),
                    t["dev"].as_str()?.to_string(),
                ))
            })
            .collect();
        if !raised.is_empty() {
            self.raised
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(raised);
        }
        Ok((info, n))
    }

    /// The (rule id, device) of every raise committed since the last call.
    pub fn take_raised(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.raised.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Acknowledge an active occurrence (persisted with its `acked` transition; a latched
    /// alarm already back to normal also clears). Blocking.
    pub fn acknowledge(&self, occurrence: u64, by: &str) -> Result<usize, AlarmError> {
        let mut g = self.lock();
        let mut next = g.clone();
        let now = crate::time::now_ms();
        let out = next.acknowledge(occurrence, by, now)?;
        let writes = next.take_writes();
        let entries: Vec<_> = out.into_iter().map(|j| (EntryKind::Alarm, j)).collect();
        self.store
            .commit_with_alarms(&[], &entries, &writes, &ClockStamp::now())?;
        *g = next;
        Ok(entries.len())
    }

    /// New rules (config reload): the engine is rebuilt and its state reloaded from the store
    /// (every commit persisted it, so only rate windows start over). Blocking.
    pub fn reconfigure(&self, rules: Vec<AlarmRule>) -> Result<(), StoreError> {
        let mut g = self.lock();
        let (rows, next) = self.store.alarm_state()?;
        let now = crate::time::now_ms().max(1) as u64;
        let mut engine = AlarmEngine::new(rules, now);
        engine.restore(rows, next);
        *g = engine;
        Ok(())
    }

    /// Handle a status-socket request line `ack <occurrence> [note]` from `who` (the socket
    /// peer as the kernel reports it, e.g. "uid 1000 (alice)"): the JSON reply. The
    /// acknowledgement is recorded as `who`; a name the client sends is only kept as a note
    /// after it (escaped, at most `MAX_ACK_NOTE` characters), never trusted as the identity.
    pub fn ack_request(&self, line: &str, who: &str) -> serde_json::Value {
        let mut it = line.split_whitespace();
        let _ = it.next();
        let occ = it.next().and_then(|s| s.parse::<u64>().ok());
        let by = match it.next().filter(|n| *n != "local") {
            Some(note) => {
                let note: String = note.chars().take(MAX_ACK_NOTE).collect();
                format!("{who}, says \"{}\"", crate::config::escape(&note))
            }
            None => who.to_string(),
        };
        let by = by.as_str();
        match occ {
            None => serde_json::json!({"error": "usage: ack <occurrence> [note]"}),
            Some(o) => match self.acknowledge(o, by) {
                Ok(n) => serde_json::json!({"acked": o, "by": by, "transitions": n}),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            },
        }
    }

    /// Active alarms (for `gasdtu status`).
    pub fn active(&self) -> Vec<ActiveAlarm> {
        self.lock().active()
    }
}
