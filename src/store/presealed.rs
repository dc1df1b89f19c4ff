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
//!
//! The look without reading back (`Look::Fresh`): when the commit's own batches will be all
//! that is pending (the live counter says nothing else is, and the commit adds no alarm or
//! event and released no held row), the entries are built from the batches in memory exactly
//! as `pending_in` would decode them from their rows (read times shifted by the row's clock
//! offset and cut to the millisecond, names and values as stored), in its order: live newest
//! first, then backlog oldest first, with the ids the rows will get. The messages are sealed
//! before the rows are written, and `ingest` writes each row already bound to its message.
//! Reading back and decoding was 7 % of W1's instructions, binding the rows by UPDATE most of
//! the rest of the seal's SQL (bench-results/cpu_round11.txt). A counter that were ever wrong
//! would only leave older entries to the forwarder's own seal, never lose one.

use std::sync::Arc;

use super::counters::Next;
use super::dict::Dict;
use super::sealing::Known;
use super::Store;
use crate::model::{Sample, SampleBatch};
use crate::outbox::{Entry, EntryBody, EntryKind, IngestSealer, OutboxError, SealRequest, Sealed};
use crate::time::{from_unix_ms, unix_ms};

/// Pending entries looked at per ingest seal; the forwarder's `FETCH` is this constant. A look
/// that comes back full is a backlog and left to the forwarder.
pub const LOOK: usize = 32;
/// Most messages sealed by one ingest commit.
pub const MAX_MESSAGES: usize = 32;

/// Where the ingest seal's look comes from.
pub(super) enum Look<'a> {
    /// The pending entries read back inside the transaction (`pending_in`).
    ReadBack,
    /// The commit's own batches, not written yet (`ingest`).
    Fresh(Fresh<'a>),
}

/// What an ingest seal sealed: each message with the entries it binds.
#[derive(Default)]
pub(super) struct Presealed {
    pub bound: Vec<(Sealed, Vec<i64>)>,
}

/// Why an ingest commit sealed nothing (logged at debug; the forwarder seals instead).
#[derive(Debug)]
enum Declined {
    Nothing,
    Backlog,
    TooMany(usize),
    Failed(OutboxError),
}

#[cfg(test)]
thread_local! {
    /// Tests: make this thread's commits read their look back (the reference `Fresh` is
    /// compared with).
    pub(super) static FORCE_READ_BACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread's commits must read the look back (tests only).
pub(super) fn read_back_forced() -> bool {
    #[cfg(test)]
    return FORCE_READ_BACK.with(|f| f.get());
    #[cfg(not(test))]
    false
}

/// One pending data row the ingest commit just inserted: its id and creation time, which of
/// the commit's batches it holds, and the clock offset added to its read times.
#[derive(Debug, Clone, Copy)]
pub(super) struct FreshRow {
    pub id: i64,
    pub created_ms: i64,
    pub batch: usize,
    pub offset_ms: i64,
}

/// The ingest commit's pending rows, when they are everything pending (see the module doc).
pub(super) struct Fresh<'a> {
    pub batches: &'a [SampleBatch],
    pub rows: &'a [FreshRow],
}

impl Fresh<'_> {
    /// `pending_in`'s look (limit above `rows.len()`): live rows (created at or after
    /// `live_since_ms`) newest first, then the backlog oldest first.
    pub(super) fn entries(&self, live_since_ms: i64) -> Vec<Entry> {
        let key = |r: &&FreshRow| (r.created_ms, r.id);
        let (mut live, mut backlog): (Vec<&FreshRow>, Vec<&FreshRow>) = self
            .rows
            .iter()
            .partition(|r| r.created_ms >= live_since_ms);
        live.sort_by_key(|r| std::cmp::Reverse(key(r)));
        backlog.sort_by_key(key);
        let mut out = Vec::with_capacity(self.rows.len());
        for (rows, historical) in [(live, false), (backlog, true)] {
            for r in rows {
                let Some(b) = self.batches.get(r.batch) else {
                    continue;
                };
                out.push(Entry {
                    id: r.id,
                    kind: EntryKind::Data,
                    historical,
                    created_ms: r.created_ms,
                    body: EntryBody::Batch(as_stored(b, r.offset_ms)),
                });
            }
        }
        out
    }
}

/// The batch `decode_batch` gives back from its row: slot and read times moved by the row's
/// clock offset and cut to the millisecond (the blob's resolution).
fn as_stored(b: &SampleBatch, offset_ms: i64) -> SampleBatch {
    let at = |t| from_unix_ms(unix_ms(t) + offset_ms);
    SampleBatch {
        device: b.device.clone(),
        bus: b.bus.clone(),
        slot: at(b.slot),
        samples: b
            .samples
            .iter()
            .map(|s| Sample {
                point: s.point.clone(),
                value: s.value.clone(),
                unit: s.unit.clone(),
                quality: s.quality.clone(),
                read_at: at(s.read_at),
            })
            .collect(),
        online: b.online,
        failed_cycles: b.failed_cycles,
    }
}

impl super::Inner {
    /// Disarm the installed sealer and take what the ingest commits handed it over (under
    /// the store's lock, so no ingest seal is under way afterwards).
    #[inline]
    pub(super) fn take_handed_over(&self) -> Vec<Sealed> {
        match &self.sealer {
            Some(s) => {
                s.disarm();
                s.take()
            }
            None => Vec::new(),
        }
    }
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
    /// entries. Returns the messages sealed with the entries each binds (empty when not
    /// armed, declined or failed, in which case nothing of it stays in `tx` or `next`). With
    /// `Look::Fresh` the rows are not written yet: the messages are, and the caller writes
    /// the rows bound to them and counts the seals (`ingest`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn preseal(
        &self,
        tx: &mut super::tx::Tx<'_>,
        dict: &mut Dict,
        hwm: u64,
        reserved: &mut u64,
        sealer: &dyn IngestSealer,
        look: Look<'_>,
        next: &mut Next,
    ) -> Presealed {
        let Some(live_since) = sealer.armed() else {
            return Presealed::default();
        };
        let rows_later = matches!(look, Look::Fresh(_));
        let before = next.clone();
        let sp = match tx.savepoint() {
            Ok(sp) => sp,
            Err(e) => {
                tracing::warn!(error = %e, "cannot seal at ingest: savepoint");
                return Presealed::default();
            }
        };
        let r = (|| -> Result<Vec<(Sealed, Vec<i64>)>, Declined> {
            let entries = match &look {
                Look::Fresh(f) => f.entries(live_since),
                Look::ReadBack => self
                    .pending_in(&sp, dict, LOOK, live_since)
                    .map_err(|e| Declined::Failed(e.into()))?,
            };
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
                // The look holds every entry of the plan: no query per entry for the retain flag.
                let known = Known {
                    retain: Some(
                        entries
                            .iter()
                            .any(|e| p.entries.contains(&e.id) && e.kind.retain()),
                    ),
                    rows_later,
                };
                let m = self
                    .seal_message(&sp, dict, hwm, reserved, &req, known, p.build, next)
                    .map_err(Declined::Failed)?
                    .map_err(|why| Declined::Failed(OutboxError::Build(why)))?;
                hwm = m.seq;
                out.push((m, p.entries));
            }
            if !out.is_empty() {
                self.set_hwm(&sp, hwm).map_err(Declined::Failed)?;
            }
            Ok(out)
        })();
        let r = r.and_then(|out| {
            sp.release()
                .map(|()| out)
                .map_err(|e| Declined::Failed(self.sql("release seal savepoint")(e).into()))
        });
        match r {
            Ok(bound) => Presealed { bound },
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
                Presealed::default()
            }
        }
    }
}

#[cfg(test)]
#[path = "presealed_tests.rs"]
mod tests;
