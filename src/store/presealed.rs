//! Sealing inside the ingest commit (issue 13, docs/store.md "Flash wear"): while the
//! forwarder waits connected and idle it arms its `IngestSealer` (installed here with
//! `Store::set_ingest_sealer`); an ingest commit that finds it armed takes one look of pending
//! entries (`Outbox::pending`'s own query, inside the transaction, so this commit's rows are
//! in it), lets the sealer pack them exactly as the forwarder would, and seals them in a
//! SAVEPOINT of the same transaction: one fsync per poll cycle for readings, alarms, deferred
//! acknowledgements and the seal. Any failure (a build the client would refuse, SQLite)
//! rolls back the savepoint only: the readings commit, the entries stay pending and the
//! forwarder seals them its own way. Bounds: no seal at ingest when the look is full (a
//! backlog: the forwarder's business) or packs into more than `MAX_MESSAGES` messages. The
//! sealed messages are handed over after the commit (`IngestSealer::hand_over`) and the
//! sealer disarmed; the forwarder takes them with `Outbox::take_presealed`.

use std::sync::Arc;

use rusqlite::Transaction;

use super::counters::Next;
use super::dict::Dict;
use super::Store;
use crate::outbox::{IngestSealer, OutboxError, SealRequest, Sealed};

/// Pending entries looked at per ingest seal; the forwarder's `FETCH` is this constant. A look
/// that comes back full is a backlog and left to the forwarder.
pub const LOOK: usize = 32;
/// Most messages sealed by one ingest commit.
pub const MAX_MESSAGES: usize = 32;

/// Why an ingest commit sealed nothing (logged at debug; the forwarder seals instead).
#[derive(Debug)]
enum Declined {
    Nothing,
    Backlog,
    TooMany(usize),
    Failed(OutboxError),
}

impl Store {
    /// Install (or with `None` remove) the forwarder's sealer for sealing at ingest. A new
    /// forwarder replaces the old one's; what the old one was handed is in `unacked()`.
    pub fn set_ingest_sealer(&self, sealer: Option<Arc<dyn IngestSealer>>) {
        let mut g = self.lock();
        if let Some(old) = g.sealer.take() {
            old.disarm();
        }
        g.sealer = sealer;
    }

    /// Seal, in a savepoint of `tx`, what the armed `sealer` packs of one look of pending
    /// entries. Returns the messages sealed (empty when not armed, declined or failed, in
    /// which case nothing of it stays in `tx` or `next`).
    pub(super) fn preseal(
        &self,
        tx: &mut Transaction<'_>,
        dict: &mut Dict,
        hwm: u64,
        reserved: &mut u64,
        sealer: &dyn IngestSealer,
        next: &mut Next,
    ) -> Vec<Sealed> {
        let Some(live_since) = sealer.armed() else {
            return Vec::new();
        };
        let before = next.clone();
        let sp = match tx.savepoint() {
            Ok(sp) => sp,
            Err(e) => {
                tracing::warn!(error = %e, "cannot seal at ingest: savepoint");
                return Vec::new();
            }
        };
        let r = (|| -> Result<Vec<Sealed>, Declined> {
            let entries = self
                .pending_in(&sp, dict, LOOK, live_since)
                .map_err(|e| Declined::Failed(e.into()))?;
            if entries.is_empty() {
                return Err(Declined::Nothing);
            }
            if entries.len() >= LOOK {
                return Err(Declined::Backlog);
            }
            let plan = sealer.pack(&entries);
            if plan.len() > MAX_MESSAGES {
                return Err(Declined::TooMany(plan.len()));
            }
            let mut out = Vec::with_capacity(plan.len());
            let mut hwm = hwm;
            for p in plan {
                let req = SealRequest {
                    topic: &p.topic,
                    entries: &p.entries,
                    readings: p.readings,
                    rebuildable: p.rebuildable,
                };
                let m = self
                    .seal_message(&sp, dict, hwm, reserved, &req, p.build, next)
                    .map_err(Declined::Failed)?
                    .map_err(|why| Declined::Failed(OutboxError::Build(why)))?;
                hwm = m.seq;
                out.push(m);
            }
            Ok(out)
        })();
        let r = r.and_then(|out| {
            sp.commit()
                .map(|()| out)
                .map_err(|e| Declined::Failed(self.sql("release seal savepoint")(e).into()))
        });
        match r {
            Ok(out) => out,
            Err(why) => {
                // The savepoint rolled back (dropped): the readings stand, nothing sealed.
                *next = before;
                match why {
                    Declined::Nothing => {}
                    Declined::Backlog => tracing::debug!("backlog pending: not sealed at ingest"),
                    Declined::TooMany(n) => {
                        tracing::debug!(messages = n, "too many messages to seal at ingest")
                    }
                    Declined::Failed(e) => {
                        tracing::debug!(error = %e, "not sealed at ingest; the forwarder seals")
                    }
                }
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
#[path = "presealed_tests.rs"]
mod tests;
