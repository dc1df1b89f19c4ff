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
    let (sealed, err) = store.seal_many(&reqs, &mut |i, seq| Ok(format!("{i}:{seq}").into_bytes()));
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
