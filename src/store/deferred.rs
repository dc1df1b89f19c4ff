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
        let mut fresh = Vec::new();
        // The lookups and tallies in ONE read transaction: one WAL read lock for all of them
        // instead of a lock and unlock (fcntl) around every statement (issue 13). Nothing is
        // written here; ending it is free.
        let rx = Tx::deferred(&inner.conn).map_err(self.sql("begin ack lookup"))?;
        let mut asked: Vec<u64> = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if !inner.deferred.contains(seq) && !asked.contains(&seq) {
                asked.push(seq); // else a duplicate PUBACK
            }
        }
        // The usual burst: consecutive numbers, all still sealed. Two statements for all of
        // them (their count, then their rows' tally) instead of two per message.
        let ids: Vec<i64> = asked.iter().map(|&q| q as i64).collect();
        let mut burst = None;
        if let Some((lo, hi)) = super::sealing::id_run(&ids) {
            let known: i64 = rx
                .prepare_cached("SELECT COUNT(*) FROM message WHERE seq BETWEEN ?1 AND ?2")
                .and_then(|mut st| st.query_row([lo, hi], |r| r.get(0)))
                .map_err(self.sql("ack lookup"))?;
            if known == hi - lo + 1 {
                let t = Tally::of_messages(&rx, lo, hi).map_err(self.sql("ack tally"))?;
                burst = Some(t);
                fresh = std::mem::take(&mut asked);
            }
        }
        if burst.is_none() {
            for seq in asked {
                let known: Option<i64> = rx
                    .prepare_cached("SELECT seq FROM message WHERE seq = ?1")
                    .and_then(|mut st| st.query_row([seq as i64], |r| r.get(0)).optional())
                    .map_err(self.sql("ack lookup"))?;
                if known.is_some() {
                    fresh.push(seq); // else unknown or already acknowledged: a no-op
                }
            }
        }
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
mod tests {
    //! On a real SQLite file: an acknowledgement is visible at once (unacked, counters) and
    //! written with the next write transaction; `seal_many` seals in one transaction and
    //! stops cleanly at a refused build.

    use super::*;
    use crate::model::SampleBatch;
    use crate::outbox::{Outbox, OutboxError, SealRequest};
    use crate::store::{ClockStamp, StoreConfig, MIN_TRUSTED_UNIX_MS};

    const T0: i64 = MIN_TRUSTED_UNIX_MS + 10 * 86_400_000;

    fn batch(read_ms: i64) -> SampleBatch {
        crate::store::tests::int_batch("d", read_ms, 4)
    }

    fn stamp(ms: i64) -> ClockStamp {
        ClockStamp {
            wall_ms: ms,
            mono_ms: 3_600_000 + ms - T0,
            boot_id: "boot".into(),
        }
    }

    /// Message rows as another connection sees them (what a crash would leave).
    fn on_disk(dir: &std::path::Path) -> Vec<u64> {
        let c = rusqlite::Connection::open(dir.join(crate::store::DB_FILE)).unwrap();
        let mut st = c.prepare("SELECT seq FROM message ORDER BY seq").unwrap();
        st.query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|s| s.unwrap() as u64)
            .collect()
    }

    #[test]
    fn acks_are_visible_at_once_and_written_with_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let info = store
            .commit(&[batch(T0), batch(T0 + 1000)], &[], &stamp(T0 + 1100))
            .unwrap();
        let reqs = [
            SealRequest {
                topic: "r/data",
                entries: &info.entry_ids[..1],
                readings: 4,
                rebuildable: false,
            },
            SealRequest {
                topic: "r/data",
                entries: &info.entry_ids[1..],
                readings: 4,
                rebuildable: false,
            },
        ];
        let (sealed, err) =
            store.seal_many(&reqs, &mut |i, seq| Ok(format!("{i}:{seq}").into_bytes()));
        assert!(err.is_none(), "{err:?}");
        assert_eq!(sealed.len(), 2);
        assert_eq!(sealed[1].seq, sealed[0].seq + 1);
        let (a, b) = (sealed[0].seq, sealed[1].seq);
        assert_eq!(on_disk(dir.path()), vec![a, b], "both sealed, committed");

        store.ack_many(&[a]).unwrap();
        // At once: not resent, not counted as unacknowledged or unsent.
        let un: Vec<u64> = store.unacked().unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(un, vec![b]);
        let st = store.stats().unwrap();
        assert_eq!(
            (st.sealed_messages, st.pending_readings, st.history_readings),
            (1, 4, 4)
        );
        assert!(st.last_ack_ms.is_some());
        // Not written yet: a crash now resends `a` with its seq and payload.
        assert_eq!(on_disk(dir.path()), vec![a, b]);
        store.ack_many(&[a, a]).unwrap();

        // The next ingest commit carries it once ripe (`RIPE_AGE` old or `RIPE_COUNT` of
        // them), not before.
        let info2 = store
            .commit(&[batch(T0 + 2000)], &[], &stamp(T0 + 2100))
            .unwrap();
        assert_eq!(on_disk(dir.path()), vec![a, b], "one young ack: not yet");
        {
            let mut g = store.lock();
            g.deferred.since = Instant::now().checked_sub(RIPE_AGE);
        }
        store
            .commit(&[batch(T0 + 2500)], &[], &stamp(T0 + 2600))
            .unwrap();
        assert_eq!(on_disk(dir.path()), vec![b]);
        let live = store.stats().unwrap();
        let mut scan = store.stats_scan().unwrap();
        scan.bytes_on_disk = live.bytes_on_disk;
        assert_eq!(live, scan);

        // A seal carries the next one; a clean drop writes the last ones.
        store.ack_many(&[b]).unwrap();
        let id = info2.entry_ids[0];
        let m = store
            .seal("r/data", &[id], 4, &mut |_| Ok(b"c".to_vec()))
            .unwrap();
        assert_eq!(on_disk(dir.path()), vec![m.seq]);
        store.ack(m.seq).unwrap();
        assert_eq!(on_disk(dir.path()), vec![m.seq]);
        drop(store);
        assert!(on_disk(dir.path()).is_empty());
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        assert!(store.unacked().unwrap().is_empty());
        assert_eq!(store.stats().unwrap().history_readings, 12);
    }

    /// `n` batches committed one by one, each sealed into a message of its own: their seqs.
    fn one_message_each(store: &Store, n: i64) -> Vec<u64> {
        (0..n)
            .map(|i| {
                let info = store
                    .commit(&[batch(T0 + i)], &[], &stamp(T0 + 100 + i))
                    .unwrap();
                store
                    .seal("r/data", &info.entry_ids, 4, &mut |_| Ok(b"x".to_vec()))
                    .unwrap()
                    .seq
            })
            .collect()
    }

    #[test]
    fn noted_acks_are_recorded_by_the_next_use_of_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let seqs = one_message_each(&store, 3);
        let before = store.stats().unwrap();
        assert_eq!(before.sealed_messages, 3);

        // Noted: nothing recorded yet, only kept (the counters lag).
        assert!(store.note_acks(&seqs[..2]));
        assert_eq!(store.noted_len(), 2);
        assert_eq!(store.stats().unwrap().sealed_messages, 3);
        assert_eq!(store.lock().deferred.seqs, Vec::<u64>::new());

        // The next ingest commit records them (as `ack_many`: deferred, counted at once).
        store
            .commit(&[batch(T0 + 10)], &[], &stamp(T0 + 110))
            .unwrap();
        assert_eq!(store.noted_len(), 0);
        assert_eq!(store.lock().deferred.seqs, seqs[..2].to_vec());
        let st = store.stats().unwrap();
        assert_eq!((st.sealed_messages, st.history_readings), (1, 8));
        let mut scan = store.stats_scan().unwrap();
        scan.bytes_on_disk = st.bytes_on_disk;
        assert_eq!(st, scan);

        // `unacked` records noted ones first: an acknowledged message is never resent. A
        // repeated or unknown seq is a no-op, as with `ack_many`.
        assert!(store.note_acks(&[seqs[2], seqs[0], 999_999]));
        let un: Vec<u64> = store.unacked().unwrap().iter().map(|m| m.seq).collect();
        assert!(un.is_empty(), "{un:?}");
        assert_eq!(store.lock().deferred.seqs, seqs);
        assert_eq!(store.stats().unwrap().sealed_messages, 0);

        // Bounded: beyond `NOTED_MAX` the caller records them itself.
        assert!(!store.note_acks(&vec![1; NOTED_MAX + 1]));
        assert_eq!(store.noted_len(), 0, "nothing of a refused call is kept");

        // A clean drop writes what is noted too.
        let info = store
            .commit(&[batch(T0 + 20)], &[], &stamp(T0 + 120))
            .unwrap();
        let m = store
            .seal("r/data", &info.entry_ids, 4, &mut |_| Ok(b"y".to_vec()))
            .unwrap();
        assert!(store.note_acks(&[m.seq]));
        drop(store);
        assert!(on_disk(dir.path()).is_empty());
    }

    /// A burst of consecutive PUBACKs is looked up and tallied in one go: the counters end
    /// exactly where acknowledging the messages one at a time puts them, including the
    /// oldest pending read time when the burst held it; a burst with a number that is not
    /// (or no longer) sealed falls back to one lookup per message and counts only the known.
    #[test]
    fn a_burst_of_acks_counts_as_the_same_acks_one_at_a_time() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, _) = Store::open(da.path(), &StoreConfig::default()).unwrap();
        let (b, _) = Store::open(db.path(), &StoreConfig::default()).unwrap();
        let (sa, sb) = (one_message_each(&a, 6), one_message_each(&b, 6));
        let view = |s: &Store| {
            let st = s.stats().unwrap();
            let mut scan = s.stats_scan().unwrap();
            scan.bytes_on_disk = st.bytes_on_disk;
            assert_eq!(st, scan, "live counters against a scan");
            (
                st.sealed_messages,
                st.pending_readings,
                st.history_readings,
                st.oldest_pending_read_ms,
            )
        };
        // The oldest four at once (the oldest pending reading among them) against one by one.
        assert!(a.note_acks(&sa[..4]));
        a.absorb_noted_now();
        for &q in &sb[..4] {
            b.ack_many(&[q]).unwrap();
        }
        assert_eq!(view(&a), view(&b));
        assert_eq!(view(&a), (2, 8, 16, Some(T0 + 4)));
        // A run with a member acknowledged already and one never sealed: only the new one.
        a.ack_many(&[sa[3], sa[4]]).unwrap();
        b.ack_many(&[sb[4]]).unwrap();
        assert_eq!(view(&a), view(&b));
        a.ack_many(&[sa[5], sa[5] + 1]).unwrap();
        b.ack_many(&[sb[5]]).unwrap();
        assert_eq!(view(&a), view(&b));
        assert_eq!(view(&a), (0, 0, 24, None));
        assert_eq!(a.lock().deferred.seqs, sa);
    }

    #[test]
    fn the_ingest_commit_writes_acks_once_enough_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let seqs = one_message_each(&store, RIPE_COUNT as i64);
        // Acknowledged one short of the count: commits leave them deferred.
        store.ack_many(&seqs[..RIPE_COUNT - 1]).unwrap();
        store
            .commit(&[batch(T0 + 500)], &[], &stamp(T0 + 600))
            .unwrap();
        assert_eq!(
            on_disk(dir.path()).len(),
            RIPE_COUNT,
            "not ripe: none written"
        );
        // The last one makes them ripe: the next commit writes all of them.
        store.ack_many(&seqs[RIPE_COUNT - 1..]).unwrap();
        store
            .commit(&[batch(T0 + 700)], &[], &stamp(T0 + 800))
            .unwrap();
        assert!(on_disk(dir.path()).is_empty());
        let live = store.stats().unwrap();
        let mut scan = store.stats_scan().unwrap();
        scan.bytes_on_disk = live.bytes_on_disk;
        assert_eq!(live, scan);
    }

    #[test]
    fn settle_writes_after_the_bound_and_flush_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let info = store.commit(&[batch(T0)], &[], &stamp(T0 + 100)).unwrap();
        let m = store
            .seal("r/data", &info.entry_ids, 4, &mut |_| Ok(b"x".to_vec()))
            .unwrap();
        store.ack(m.seq).unwrap();
        store.settle().unwrap();
        assert_eq!(on_disk(dir.path()), vec![m.seq], "young: still deferred");
        {
            let mut g = store.lock();
            g.deferred.since = Instant::now().checked_sub(MAX_AGE);
        }
        store.settle().unwrap();
        assert!(on_disk(dir.path()).is_empty(), "old: written");
    }

    #[test]
    fn seal_many_stops_at_a_refused_build_and_keeps_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let info = store
            .commit(
                &[batch(T0), batch(T0 + 1), batch(T0 + 2)],
                &[],
                &stamp(T0 + 100),
            )
            .unwrap();
        let ids = &info.entry_ids;
        let reqs: Vec<SealRequest<'_>> = ids
            .iter()
            .map(|id| SealRequest {
                topic: "r/data",
                entries: std::slice::from_ref(id),
                readings: 4,
                rebuildable: false,
            })
            .collect();
        let hwm = store.last_seq().unwrap();
        let (sealed, err) = store.seal_many(&reqs, &mut |i, _| {
            if i == 1 {
                Err("too large".into())
            } else {
                Ok(vec![b'p'; 3])
            }
        });
        assert!(
            matches!(err, Some(OutboxError::Build(ref w)) if w == "too large"),
            "{err:?}"
        );
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].seq, hwm + 1);
        assert_eq!(
            store.last_seq().unwrap(),
            hwm + 1,
            "the refused one consumed no number"
        );
        // The refused and the untried entries are still pending.
        let pending: Vec<i64> = store
            .pending(10, 0)
            .unwrap()
            .iter()
            .filter(|e| e.kind == crate::outbox::EntryKind::Data)
            .map(|e| e.id)
            .collect();
        assert_eq!(pending.len(), 2);
        assert!(pending.contains(&ids[1]) && pending.contains(&ids[2]));
        // A request with an entry no longer pending stops there too.
        let (sealed, err) = store.seal_many(&reqs[..1], &mut |_, _| Ok(vec![1]));
        assert!(sealed.is_empty());
        assert!(matches!(err, Some(OutboxError::NotPending(_))), "{err:?}");
    }

    #[test]
    fn a_database_with_4k_pages_keeps_them_and_drains() {
        // A database created by an earlier version (4 KiB pages) is opened as is: its page
        // size stays, and it commits, seals, acknowledges and drains like a new one.
        let dir = tempfile::tempdir().unwrap();
        {
            let c = rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
            c.execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; VACUUM;")
                .unwrap();
        }
        let page_size = |dir: &std::path::Path| -> i64 {
            let c = rusqlite::Connection::open(dir.join(crate::store::DB_FILE)).unwrap();
            c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
        };
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let info = store.commit(&[batch(T0)], &[], &stamp(T0 + 100)).unwrap();
        let m = store
            .seal("r/data", &info.entry_ids, 4, &mut |_| Ok(b"x".to_vec()))
            .unwrap();
        store.ack(m.seq).unwrap();
        drop(store);
        assert_eq!(page_size(dir.path()), 4096);
        assert!(on_disk(dir.path()).is_empty());
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        assert_eq!(store.stats().unwrap().history_readings, 4);
        assert!(store.unacked().unwrap().is_empty());

        // A new one gets the small pages.
        let fresh = tempfile::tempdir().unwrap();
        drop(Store::open(fresh.path(), &StoreConfig::default()).unwrap());
        assert_eq!(
            page_size(fresh.path()),
            crate::store::NEW_DB_PAGE_SIZE as i64
        );
    }

    #[test]
    fn a_burst_of_consecutive_acks_retires_exactly_its_messages() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let alarm = (
            crate::outbox::EntryKind::Alarm,
            serde_json::json!({"alarm": "hi"}),
        );
        let info = store
            .commit(
                &[batch(T0), batch(T0 + 1), batch(T0 + 2), batch(T0 + 3)],
                &[alarm],
                &stamp(T0 + 100),
            )
            .unwrap();
        let ids = &info.entry_ids;
        // Five messages: the alarm in the third.
        let order = [ids[0], ids[1], ids[4], ids[2], ids[3]];
        let reqs: Vec<SealRequest<'_>> = order
            .iter()
            .map(|id| SealRequest {
                topic: "r/x",
                entries: std::slice::from_ref(id),
                readings: 4,
                rebuildable: false,
            })
            .collect();
        let (sealed, err) = store.seal_many(&reqs, &mut |i, _| Ok(vec![i as u8]));
        assert!(err.is_none(), "{err:?}");
        let s: Vec<u64> = sealed.iter().map(|m| m.seq).collect();
        // The first three, acknowledged out of order, are one run.
        store.ack_many(&[s[1], s[0], s[2]]).unwrap();
        store.flush_acks().unwrap();
        store
            .commit(&[batch(T0 + 4)], &[], &stamp(T0 + 200))
            .unwrap();
        assert_eq!(on_disk(dir.path()), vec![s[3], s[4]]);
        let after = crate::store::tests::entry_rows(&store, ids[0]);
        assert_eq!(after[0], (ids[0], 2, None));
        assert_eq!(after[1], (ids[1], 2, None));
        assert_eq!(after[2], (ids[2], 1, Some(s[3] as i64)));
        assert_eq!(after[3], (ids[3], 1, Some(s[4] as i64)));
        let alarms: i64 = store
            .lock()
            .conn
            .query_row(
                "SELECT COUNT(*) FROM entry WHERE kind != 2 AND id >= ?1",
                [ids[0]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(alarms, 0, "the alarm row left with its message: {after:?}");
        let live = store.stats().unwrap();
        let mut scan = store.stats_scan().unwrap();
        scan.bytes_on_disk = live.bytes_on_disk;
        assert_eq!(live, scan);
        // Not a run: the last one alone, then its neighbour.
        store.ack_many(&[s[4]]).unwrap();
        store.flush_acks().unwrap();
        assert_eq!(on_disk(dir.path()), vec![s[3]]);
        store.ack_many(&[s[3]]).unwrap();
        store.flush_acks().unwrap();
        assert!(on_disk(dir.path()).is_empty());
        assert_eq!(store.stats().unwrap().history_readings, 16);
    }
}
