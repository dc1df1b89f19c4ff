//! Deferred acknowledgements (issue 13, flash wear): `ack_many` does not write. It records the
//! acknowledged sequence numbers in memory (`Deferred`), takes them out of `unacked()` and
//! out of the live counters at once, and the rows are changed (data entries become history,
//! other entries and the message row are deleted, `last_ack_ms` set) inside the next write
//! transaction the store makes anyway: the ingest commit, a seal, an eviction, a dead letter,
//! a resend. At the latest they are written by `settle` once the oldest is `MAX_AGE` old or
//! `MAX_COUNT` are waiting, and when the store is dropped (clean shutdown).
//!
//! Why this is within the contract: an acknowledgement lost by a crash only means the message
//! is resent after the restart, with the same sequence number and the byte-identical payload
//! (its row is still there): at least once, duplicates detectable by seq. Nothing committed is
//! lost, and nothing leaves the outbox without a PUBACK.

use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};

use super::tx::Tx;

use super::counters::{Next, Tally};
use super::{set_meta, Store, StoreError};

/// Oldest a deferred acknowledgement gets before `settle` writes it on its own.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// Deferred acknowledgements that make `ack_many` write at once.
pub const MAX_COUNT: usize = 1000;

/// The ingest commit writes the deferred acknowledgements once this many wait or the oldest
/// is `RIPE_AGE` old (other write transactions write them whenever they run): the rows of
/// several cycles retired together rewrite each of their pages (and the index, message and
/// meta pages) once, not once per cycle (issue 13: ~3 of ~26 WAL frames per cycle on W1,
/// and the retire statements of 9 cycles in 10). A crash meanwhile resends at most these.
pub const RIPE_COUNT: usize = 50;
pub const RIPE_AGE: Duration = Duration::from_secs(30);

/// Acknowledged messages whose rows are not updated yet.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    /// Sequence numbers, in the order the PUBACKs came.
    pub seqs: Vec<u64>,
    /// When the oldest of them was acknowledged.
    pub since: Option<Instant>,
    /// Time of the last acknowledgement (UTC ms), for `meta.last_ack_ms`.
    pub last_ms: i64,
}

impl Deferred {
    pub fn contains(&self, seq: u64) -> bool {
        self.seqs.contains(&seq)
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Worth writing in the ingest commit (`RIPE_COUNT`, `RIPE_AGE`).
    pub fn ripe(&self, now: Instant) -> bool {
        self.seqs.len() >= RIPE_COUNT
            || self
                .since
                .is_some_and(|s| now.duration_since(s) >= RIPE_AGE)
    }

    fn due(&self, now: Instant) -> bool {
        self.seqs.len() >= MAX_COUNT || self.since.is_some_and(|s| now.duration_since(s) >= MAX_AGE)
    }
}

/// Apply the deferred acknowledgements in `tx` (first thing in a write transaction: only
/// removals precede the counters' refresh). The live counters already left them out; the
/// refresh recomputes the oldest pending read time, which still saw their rows. Idempotent:
/// the caller clears `d` only after its transaction committed.
pub(crate) fn apply(tx: &Connection, d: &Deferred, next: &mut Next) -> rusqlite::Result<()> {
    if d.is_empty() {
        return Ok(());
    }
    let seqs: Vec<i64> = d.seqs.iter().map(|&q| q as i64).collect();
    match super::sealing::id_run(&seqs) {
        // A burst of consecutive numbers (the usual case): three statements for all of them.
        Some((lo, hi)) => retire_run(tx, lo, hi)?,
        None => {
            for &seq in &seqs {
                retire(tx, seq)?;
            }
        }
    }
    set_meta(tx, "last_ack_ms", d.last_ms)?;
    next.stale_oldest_pending();
    next.refresh(tx)
}

/// Take sealed message `seq` out of the outbox (in `tx`), as an acknowledgement does: its data
/// entries become history, its other entries and the message row are deleted. Returns the
/// number of message rows deleted (0 for an unknown seq). Shared by acknowledgement and dead
/// letters.
pub(crate) fn retire(tx: &Connection, seq: i64) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "UPDATE entry SET status = 2, msg_seq = NULL WHERE msg_seq = ?1 AND kind = 2",
    )?
    .execute([seq])?;
    tx.prepare_cached("DELETE FROM entry WHERE msg_seq = ?1")?
        .execute([seq])?;
    tx.prepare_cached("DELETE FROM message WHERE seq = ?1")?
        .execute([seq])
}

/// `retire` for every message numbered `lo..=hi` (the caller acknowledges exactly those).
fn retire_run(tx: &Connection, lo: i64, hi: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE entry SET status = 2, msg_seq = NULL WHERE msg_seq BETWEEN ?1 AND ?2 AND kind = 2",
    )?
    .execute([lo, hi])?;
    tx.prepare_cached("DELETE FROM entry WHERE msg_seq BETWEEN ?1 AND ?2")?
        .execute([lo, hi])?;
    tx.prepare_cached("DELETE FROM message WHERE seq BETWEEN ?1 AND ?2")?
        .execute([lo, hi])?;
    Ok(())
}

/// Which of `asked` (distinct, not deferred yet) are still sealed, in their order: the
/// others are unknown or acknowledged already (a no-op). The usual burst, consecutive numbers
/// all still sealed, costs two statements (their count, then their rows' tally, returned for
/// `Next::ack`) instead of two per message; any other set is looked up one number at a time.
fn still_sealed(c: &Connection, asked: Vec<u64>) -> rusqlite::Result<(Vec<u64>, Option<Tally>)> {
    let ids: Vec<i64> = asked.iter().map(|&q| q as i64).collect();
    if let Some((lo, hi)) = super::sealing::id_run(&ids) {
        let known: i64 = c
            .prepare_cached("SELECT COUNT(*) FROM message WHERE seq BETWEEN ?1 AND ?2")?
            .query_row([lo, hi], |r| r.get(0))?;
        if known == hi - lo + 1 {
            return Ok((asked, Some(Tally::of_messages(c, lo, hi)?)));
        }
    }
    let mut fresh = Vec::with_capacity(asked.len());
    for seq in asked {
        let known: Option<i64> = c
            .prepare_cached("SELECT seq FROM message WHERE seq = ?1")?
            .query_row([seq as i64], |r| r.get(0))
            .optional()?;
        if known.is_some() {
            fresh.push(seq);
        }
    }
    Ok((fresh, None))
}

/// The counters' view of acknowledging `seqs` at `now_ms` (rows unchanged): readings become
/// history, the messages are gone, the oldest pending read time skips every message in
/// `deferred` (which includes `seqs`).
pub(crate) fn account(
    c: &Connection,
    seqs: &[u64],
    now_ms: i64,
    deferred: &[u64],
    next: &mut Next,
) -> rusqlite::Result<()> {
    for &seq in seqs {
        let s = seq as i64;
        let t = Tally::of_message(c, s)?;
        next.ack(&t, 1, now_ms);
    }
    next.refresh_pending_skipping(c, deferred)
}

/// Acknowledgements noted without the connection (`Store::note_acks`), in PUBACK order: the
/// forwarder's task hands them over without a blocking-pool round trip, and the store's next
/// use of its connection (the ingest commit of the next poll cycle, `unacked`, a seal, an
/// eviction, `settle`, `absorb_noted`) records them as `defer_acks` would (issue 13: one thread
/// hand-off and two wake-ups fewer per cycle). Until then they only lag in the counters;
/// `unacked` and every write record them first. Lost in a crash like deferred ones: resent.
pub(crate) type Noted = Vec<u64>;

/// Noted acknowledgements held at most; beyond, `note_acks` refuses (the forwarder then
/// records them itself on a blocking thread).
pub const NOTED_MAX: usize = MAX_COUNT;

impl Store {
    /// `Outbox::note_acks`: keep `seqs` for the next use of the connection. Never touches
    /// SQLite or the connection's lock; false (nothing kept) when `NOTED_MAX` would be passed.
    pub fn note_acks(&self, seqs: &[u64]) -> bool {
        let mut n = self.noted.lock().unwrap_or_else(|p| p.into_inner());
        if n.len() + seqs.len() > NOTED_MAX {
            return false;
        }
        n.extend_from_slice(seqs);
        true
    }

    /// How many acknowledgements are noted and not recorded yet.
    #[cfg(test)]
    pub(crate) fn noted_len(&self) -> usize {
        self.noted.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Record the noted acknowledgements (`defer_acks` of them) under the connection's lock,
    /// before anything that reads or writes what they change. Never fails the caller: if the
    /// lookup fails they stay noted, and meanwhile they are at worst resent (at least once).
    pub(super) fn absorb_noted_in(&self, inner: &mut super::Inner) {
        let seqs = {
            let mut n = self.noted.lock().unwrap_or_else(|p| p.into_inner());
            if n.is_empty() {
                return;
            }
            std::mem::take(&mut *n)
        };
        if let Err(e) = self.defer_locked(inner, &seqs) {
            tracing::debug!(error = %e, "noted acknowledgements not recorded yet");
            let mut n = self.noted.lock().unwrap_or_else(|p| p.into_inner());
            let later = std::mem::replace(&mut *n, seqs);
            n.extend(later);
        }
    }

    /// `Outbox::absorb_noted`: record the noted acknowledgements now.
    pub(crate) fn absorb_noted_now(&self) {
        let mut g = self.lock();
        self.absorb_noted_in(&mut g);
    }

    /// `Outbox::ack_many`: record `seqs` as acknowledged (see the module doc); writes only
    /// when the bound is reached.
    pub(crate) fn defer_acks(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut g = self.lock();
        self.absorb_noted_in(&mut g);
        self.defer_locked(&mut g, seqs)
    }

    fn defer_locked(&self, inner: &mut super::Inner, seqs: &[u64]) -> Result<(), StoreError> {
        let mut next = self.next_stats();
        let now = crate::time::now_ms();
        // The lookups and tallies in ONE read transaction: one WAL read lock for all of them
        // instead of a lock and unlock (fcntl) around every statement (issue 13). Nothing is
        // written here; ending it is free.
        let rx = Tx::deferred(&inner.conn).map_err(self.sql("begin ack lookup"))?;
        let asked: Vec<u64> = seqs
            .iter()
            .enumerate()
            .filter(|&(i, q)| !inner.deferred.contains(*q) && !seqs[..i].contains(q))
            .map(|(_, &q)| q)
            .collect(); // the rest are duplicate PUBACKs
        let (fresh, burst) = still_sealed(&rx, asked).map_err(self.sql("ack lookup"))?;
        let mut all = Vec::new();
        if !fresh.is_empty() {
            all = inner.deferred.seqs.clone();
            all.extend_from_slice(&fresh);
            match &burst {
                Some(t) => {
                    next.ack(t, fresh.len() as u64, now);
                    next.refresh_pending_skipping(&rx, &all)
                }
                None => account(&rx, &fresh, now, &all, &mut next),
            }
            .map_err(self.sql("ack tally"))?;
        }
        rx.commit().map_err(self.sql("end ack lookup"))?;
        if !fresh.is_empty() {
            inner.deferred.seqs = all;
            inner.deferred.since.get_or_insert_with(Instant::now);
            inner.deferred.last_ms = now;
            self.publish_stats(next);
        }
        if inner.deferred.due(Instant::now()) {
            self.write_deferred(inner)?;
        }
        Ok(())
    }

    /// Write the deferred acknowledgements now if the oldest is `MAX_AGE` old (or too many
    /// wait). Cheap when there is nothing to do (no SQLite call).
    pub fn settle(&self) -> Result<(), StoreError> {
        let mut g = self.lock();
        self.absorb_noted_in(&mut g);
        if g.deferred.due(Instant::now()) {
            self.write_deferred(&mut g)?;
        }
        Ok(())
    }

    /// Write every deferred acknowledgement now, in one transaction (clean shutdown, tests,
    /// `stats_scan`).
    pub fn flush_acks(&self) -> Result<(), StoreError> {
        let mut g = self.lock();
        self.write_deferred(&mut g)
    }

    pub(super) fn write_deferred(&self, inner: &mut super::Inner) -> Result<(), StoreError> {
        self.absorb_noted_in(inner);
        if inner.deferred.is_empty() {
            return Ok(());
        }
        let tx = Tx::immediate(&inner.conn).map_err(self.sql("begin ack"))?;
        let mut next = self.next_stats();
        apply(&tx, &inner.deferred, &mut next).map_err(self.sql("ack"))?;
        tx.commit().map_err(self.sql("commit ack"))?;
        self.publish_stats(next);
        inner.deferred = Deferred::default();
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let mut g = self.lock();
        if let Err(e) = self.write_deferred(&mut g) {
            // The messages are resent after the restart (same seq, same payload).
            tracing::warn!(error = %e, "cannot record the last acknowledgements; their messages will be sent again");
        }
    }
}

#[cfg(test)]
#[path = "deferred_tests.rs"]
mod tests;
