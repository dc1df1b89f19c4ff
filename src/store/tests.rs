//! Store tests on real SQLite files in temporary directories: durability shape, pragmas, send
//! order, seal/ack, sequence numbers across a replaced database, corruption handling,
//! migrations, eviction, clock re-stamping, export filters and a concurrent reader.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::model::{BadReason, Quality, Sample, Value};
use crate::outbox::{EntryBody, Outbox, OutboxError};
use crate::time::{from_unix_ms, unix_ms};

/// A trusted time: 2026-01-11.
const T0: i64 = MIN_TRUSTED_UNIX_MS + 10 * 86_400_000;

fn stamp_at(wall_ms: i64) -> ClockStamp {
    // A boot that (truly) began one hour before T0.
    ClockStamp {
        wall_ms,
        mono_ms: wall_ms - (T0 - 3_600_000),
        boot_id: "boot-now".into(),
    }
}

/// A batch of `points` good integer samples (`p0` = 0, `p1` = 1, ... in bar) of `device` on bus
/// `b`, read at `read_ms`: the plain fixture of the store's module tests (deferred acks,
/// sealing, commands).
pub(super) fn int_batch(device: &str, read_ms: i64, points: i64) -> SampleBatch {
    SampleBatch {
        device: device.into(),
        bus: "b".into(),
        slot: from_unix_ms(read_ms),
        samples: (0..points)
            .map(|i| Sample {
                point: format!("p{i}").into(),
                value: Some(Value::Int(i)),
                unit: Some(Arc::from("bar")),
                quality: Quality::Good,
                read_at: from_unix_ms(read_ms),
            })
            .collect(),
        online: true,
        failed_cycles: 0,
    }
}

/// `(id, status, msg_seq)` of the entry rows from `from_id` on, by id (what the rows say,
/// not the counters).
pub(super) fn entry_rows(store: &Store, from_id: i64) -> Vec<(i64, i64, Option<i64>)> {
    let g = store.lock();
    let mut st = g
        .conn
        .prepare("SELECT id, status, msg_seq FROM entry WHERE id >= ?1 ORDER BY id")
        .unwrap();
    st.query_map([from_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn batch(device: &str, read_ms: i64, points: usize) -> SampleBatch {
    let samples = (0..points)
        .map(|i| {
            let (value, quality) = if i == 3 {
                (None, Quality::Bad(BadReason::Timeout))
            } else {
                (
                    Some(Value::Float(i as f64 * 1.25 + read_ms as f64 / 1e6)),
                    Quality::Good,
                )
            };
            Sample {
                point: format!("p{i}").into(),
                value,
                unit: (i % 2 == 0).then(|| Arc::from("m3/h")),
                quality,
                read_at: from_unix_ms(read_ms + (i as i64 % 3)),
            }
        })
        .collect();
    SampleBatch {
        device: device.into(),
        bus: "bus1".into(),
        slot: from_unix_ms(read_ms - read_ms % 1000),
        samples,
        online: true,
        failed_cycles: 0,
    }
}

fn open(dir: &Path) -> (Store, Vec<StoreEvent>) {
    Store::open(dir, &StoreConfig::default()).unwrap()
}

fn all(store: &Store) -> Vec<StoredBatch> {
    let mut v = Vec::new();
    store
        .export(&ExportFilter::default(), &mut |b| {
            v.push(b.clone());
            Ok(())
        })
        .unwrap();
    v
}

fn events_pending(store: &Store, name: &str) -> Vec<serde_json::Value> {
    store
        .pending(10_000, 0)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body {
            EntryBody::Json(j) if j["event"] == name => Some(j),
            _ => None,
        })
        .collect()
}

fn data_ids(store: &Store) -> Vec<i64> {
    store
        .pending(10_000, 0)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EntryKind::Data)
        .map(|e| e.id)
        .collect()
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Store>();
}

#[test]
fn commit_then_reopen_sees_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let batches = vec![
        batch("a", T0, 10),
        batch("b", T0 + 5, 7),
        batch("a", T0 + 1000, 10),
    ];
    {
        let (store, events) = open(dir.path());
        assert!(
            matches!(events[0], StoreEvent::Created { .. }),
            "{events:?}"
        );
        let info = store.commit(&batches, &[], &stamp_at(T0 + 1100)).unwrap();
        assert_eq!(info.entry_ids.len(), 3);
        assert_eq!(info.readings, 27);
    }
    let (store, events) = open(dir.path());
    assert!(events.is_empty(), "{events:?}");
    let got: Vec<SampleBatch> = all(&store).into_iter().map(|b| b.batch).collect();
    assert_eq!(got, batches);
    // And they are pending in the outbox, each decoded identically.
    let pending: Vec<SampleBatch> = store
        .pending(100, 0)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body {
            EntryBody::Batch(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(pending.len(), 3);
    for b in &batches {
        assert!(pending.contains(b));
    }
}

#[test]
fn wal_full_sync_and_foreign_keys_are_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let (mode, sync, fk) = store.pragmas().unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous=FULL");
    assert_eq!(fk, 1);
    // WAL is a property of the file: an independent connection sees it too.
    let other = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let mode: String = other
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let av: i64 = other
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(av, 2, "auto_vacuum=INCREMENTAL");
}

#[test]
fn wal_checkpoint_size_is_4_mb_or_an_eighth_of_the_cap_and_in_force() {
    // The auto-checkpoint size (and the size the WAL is truncated back to) in bytes, whatever
    // the page size: 1000 x 4 KiB at most (a 16 MiB threshold was measured and did not pay,
    // docs/store.md "Flash wear"), an eighth of the cap below that, 64 KiB at least.
    for (cap, page, bytes) in [
        (512u64 << 20, 512u64, 1000 * 4096),
        (1 << 40, 512, 1000 * 4096),
        (1 << 40, 4096, 1000 * 4096),
        (16 << 20, 512, 2 << 20),
        (1 << 20, 4096, 128 << 10),
        (0, 512, 64 << 10),
    ] {
        assert_eq!(wal_pages(cap, page) * page, bytes, "cap {cap}, page {page}");
    }
    // What the open store set follows the cap in force (which the free space may clamp).
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let cap = store.max_bytes();
    let g = store.lock();
    let pages: i64 = g
        .conn
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    let limit: i64 = g
        .conn
        .query_row("PRAGMA journal_size_limit", [], |r| r.get(0))
        .unwrap();
    let (pages, limit) = (pages as u64, limit as u64);
    assert_eq!(pages, wal_pages(cap, NEW_DB_PAGE_SIZE));
    assert_eq!(limit, pages * NEW_DB_PAGE_SIZE);
    assert!(limit <= 1000 * 4096);
}

#[test]
fn pending_send_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    // Drop the store_created event so the order below is only ours.
    let created: Vec<i64> = store.pending(10, 0).unwrap().iter().map(|e| e.id).collect();
    let s = store.seal("t", &created, 0, &mut |_| Ok(vec![])).unwrap();
    store.ack(s.seq).unwrap();

    let old1 = store
        .commit(&[batch("a", T0, 2)], &[], &stamp_at(T0))
        .unwrap()
        .entry_ids[0];
    let old2 = store
        .commit(&[batch("a", T0 + 1000, 2)], &[], &stamp_at(T0 + 1000))
        .unwrap()
        .entry_ids[0];
    let ev = store
        .commit(
            &[],
            &[(EntryKind::Event, serde_json::json!({"event": "x"}))],
            &stamp_at(T0 + 1500),
        )
        .unwrap()
        .entry_ids[0];
    let live1 = store
        .commit(&[batch("a", T0 + 2000, 2)], &[], &stamp_at(T0 + 2000))
        .unwrap()
        .entry_ids[0];
    let live2 = store
        .commit(&[batch("a", T0 + 3000, 2)], &[], &stamp_at(T0 + 3000))
        .unwrap()
        .entry_ids[0];
    let alarm = store
        .commit(
            &[],
            &[(EntryKind::Alarm, serde_json::json!({"alarm": "hi"}))],
            &stamp_at(T0 + 3500),
        )
        .unwrap()
        .entry_ids[0];

    // (limit, live_since, expected (id, historical))
    type Case = (usize, i64, Vec<(i64, bool)>);
    let cases: Vec<Case> = vec![
        (
            10,
            T0 + 2000,
            vec![
                (alarm, false),
                (ev, false),
                (live2, false),
                (live1, false),
                (old1, true),
                (old2, true),
            ],
        ),
        (
            3,
            T0 + 2000,
            vec![(alarm, false), (ev, false), (live2, false)],
        ),
        (
            10,
            0,
            vec![
                (alarm, false),
                (ev, false),
                (live2, false),
                (live1, false),
                (old2, false),
                (old1, false),
            ],
        ),
        (
            10,
            i64::MAX,
            vec![
                (alarm, false),
                (ev, false),
                (old1, true),
                (old2, true),
                (live1, true),
                (live2, true),
            ],
        ),
    ];
    for (limit, since, want) in cases {
        let got: Vec<(i64, bool)> = store
            .pending(limit, since)
            .unwrap()
            .iter()
            .map(|e| (e.id, e.historical))
            .collect();
        assert_eq!(got, want, "limit {limit} since {since}");
    }
    let kinds: Vec<EntryKind> = store
        .pending(2, 0)
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec![EntryKind::Alarm, EntryKind::Event]);
}

#[test]
fn seal_unacked_ack() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let info = store
        .commit(
            &[batch("a", T0, 10), batch("b", T0, 10)],
            &[(EntryKind::Event, serde_json::json!({"event": "e"}))],
            &stamp_at(T0 + 10),
        )
        .unwrap();
    let (a, b, e) = (info.entry_ids[0], info.entry_ids[1], info.entry_ids[2]);

    let mut seen = Vec::new();
    let m1 = store
        .seal("root/data", &[a], 10, &mut |seq| {
            seen.push(seq);
            Ok(format!("seq {seq}").into_bytes())
        })
        .unwrap();
    assert_eq!(seen, vec![m1.seq]);
    assert_eq!(m1.payload, format!("seq {}", m1.seq).into_bytes());

    // A failing builder consumes no sequence number and binds nothing.
    let err = store
        .seal("root/data", &[b], 10, &mut |_| Err("too big".into()))
        .unwrap_err();
    assert!(
        matches!(err, OutboxError::Build(ref m) if m == "too big"),
        "{err}"
    );
    let m2 = store
        .seal("root/data", &[b, e], 10, &mut |s| Ok(vec![s as u8]))
        .unwrap();
    assert_eq!(m2.seq, m1.seq + 1);

    // Sealed entries are no longer pending, and cannot be sealed twice.
    assert!(store
        .pending(100, 0)
        .unwrap()
        .iter()
        .all(|x| ![a, b, e].contains(&x.id)));
    match store.seal("t", &[a, 999_999], 0, &mut |_| Ok(vec![])) {
        Err(OutboxError::NotPending(ids)) => assert_eq!(ids, vec![a, 999_999]),
        other => panic!("{other:?}"),
    }
    let unacked: Vec<u64> = store.unacked().unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(unacked, vec![m1.seq, m2.seq]);
    // Byte-identical after a reopen.
    drop(store);
    let (store, _) = open(dir.path());
    assert_eq!(store.unacked().unwrap(), vec![m1.clone(), m2.clone()]);

    store.ack(m1.seq).unwrap();
    store.ack(m1.seq).unwrap(); // a duplicate PUBACK is harmless
    assert_eq!(store.unacked().unwrap(), vec![m2.clone()]);
    store.ack(m2.seq).unwrap();
    assert!(store.unacked().unwrap().is_empty());
    // Data stays as history, marked delivered; the event is gone.
    let hist = all(&store);
    assert_eq!(hist.len(), 2);
    assert!(hist.iter().all(|h| h.delivered));
    assert!(events_pending(&store, "e").is_empty());
    let st = store.stats().unwrap();
    assert_eq!(
        (st.pending_readings, st.history_readings, st.sealed_messages),
        (0, 20, 0)
    );
    assert!(st.last_ack_ms.is_some());
    assert_eq!(st.seq_hwm, m2.seq);
}

fn seal_some(store: &Store, n: usize) -> u64 {
    let mut last = 0;
    for i in 0..n {
        let id = store
            .commit(
                &[batch("a", T0 + i as i64, 1)],
                &[],
                &stamp_at(T0 + i as i64),
            )
            .unwrap()
            .entry_ids[0];
        last = store.seal("t", &[id], 1, &mut |_| Ok(vec![])).unwrap().seq;
    }
    last
}

#[test]
fn sequence_never_repeats_across_replacement() {
    // (what happens to the state directory between runs)
    type Damage = fn(&Path);
    let cases: Vec<(&str, Damage)> = vec![
        ("nothing (plain restart)", |_| {}),
        ("database replaced by garbage", |d| {
            std::fs::write(d.join(DB_FILE), vec![0x5a; 10_000]).unwrap()
        }),
        ("database deleted", |d| {
            std::fs::remove_file(d.join(DB_FILE)).unwrap()
        }),
        ("database and reservation deleted", |d| {
            std::fs::remove_file(d.join(DB_FILE)).unwrap();
            std::fs::remove_file(d.join(seq::FILE_NAME)).unwrap();
            // The clock floor is in ms: let the wall clock move past the last floor's ms.
            std::thread::sleep(Duration::from_millis(2));
        }),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let (store, _) = open(dir.path());
            seal_some(&store, 5)
        };
        damage(dir.path());
        let (store, _) = open(dir.path());
        let after = seal_some(&store, 1);
        assert!(after > before, "{what}: {after} <= {before}");
        if what.starts_with("nothing") {
            assert_eq!(after, before + 1, "no gap on a plain restart");
        }
    }
}

#[test]
fn reservation_is_written_once_per_block() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let first = seal_some(&store, 1);
    let seq::Reserve::Value(r1) = seq::read(&dir.path().join(seq::FILE_NAME)) else {
        panic!("no reservation")
    };
    assert!(r1 >= first && r1 < first + seq::BLOCK, "{r1} {first}");
    seal_some(&store, 10);
    assert_eq!(
        seq::read(&dir.path().join(seq::FILE_NAME)),
        seq::Reserve::Value(r1)
    );
}

fn corrupt_middle(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    assert!(n > 20 * 4096, "want a multi-page database, got {n} bytes");
    for b in &mut bytes[n / 3..n / 3 + 8 * 4096] {
        *b = 0xa5;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn corrupt_database_is_moved_aside_and_reported() {
    type Damage = fn(&Path);
    let cases: Vec<(&str, Damage)> = vec![
        ("garbage file", |p| {
            std::fs::write(p, b"this is not a database at all".repeat(300)).unwrap()
        }),
        ("middle pages overwritten", corrupt_middle),
        ("truncated to half", |p| {
            let len = std::fs::metadata(p).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = open(dir.path());
            for i in 0..40 {
                let bs: Vec<SampleBatch> = (0..20)
                    .map(|d| batch(&format!("dev{d}"), T0 + i * 1000, 10))
                    .collect();
                store.commit(&bs, &[], &stamp_at(T0 + i * 1000)).unwrap();
            }
        }
        let db = dir.path().join(DB_FILE);
        damage(&db);
        let damaged = std::fs::read(&db).unwrap();
        let (store, events) = open(dir.path());
        let moved = match &events[..] {
            [StoreEvent::Replaced {
                moved_to, reason, ..
            }, ..] => {
                assert!(!reason.is_empty());
                moved_to.clone()
            }
            other => panic!("{what}: {other:?}"),
        };
        // Never deleted: the moved file holds exactly the damaged bytes.
        assert!(moved[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("gasdtu.db.corrupt-"));
        assert_eq!(std::fs::read(&moved[0]).unwrap(), damaged, "{what}");
        // The fresh database works and tells upstream.
        assert!(all(&store).is_empty());
        let ev = events_pending(&store, "store_replaced");
        assert_eq!(ev.len(), 1, "{what}");
        assert_eq!(ev[0]["moved_to"][0], moved[0].display().to_string());
        store
            .commit(&[batch("a", T0, 3)], &[], &stamp_at(T0))
            .unwrap();
        assert_eq!(all(&store).len(), 1);
    }
}

#[test]
fn migrations_from_empty_and_from_previous_version() {
    // From an empty (zero-byte) file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
    let (store, events) = open(dir.path());
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, StoreEvent::Replaced { .. })),
        "{events:?}"
    );
    let v: i64 = store
        .lock()
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema::VERSION);
    drop(store);

    // From version N-1 with data in it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let mut c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        schema::migrate_to(&mut c, schema::VERSION - 1).unwrap();
        c.execute("INSERT INTO source (device, bus) VALUES ('old', 'b')", [])
            .unwrap();
        c.execute(
            "INSERT INTO point (source, name, unit, kind) VALUES (1, 'flow', 'm3/h', 4)",
            [],
        )
        .unwrap();
        let body = blob::encode(&[blob::RawSample {
            point_id: 1,
            value: Some(Value::Float(2.5)),
            dt_ms: 0,
            quality: Quality::Good,
        }]);
        c.execute(
            "INSERT INTO entry (kind, status, created_ms, read_ms, source, slot_ms, online, \
             failed_cycles, readings, clock, body) VALUES (2, 0, ?1, ?1, 1, ?1, 1, 0, 1, 0, ?2)",
            rusqlite::params![T0, body],
        )
        .unwrap();
        c.execute("INSERT INTO meta (key, value) VALUES ('seq_hwm', 77)", [])
            .unwrap();
    }
    let (store, events) = open(dir.path());
    assert!(
        events.contains(&StoreEvent::Migrated {
            from: schema::VERSION - 1,
            to: schema::VERSION
        }),
        "{events:?}"
    );
    let idx: i64 = store
        .lock()
        .conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'entry_read'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(idx, 1);
    let rows = all(&store);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].batch.samples[0].value, Some(Value::Float(2.5)));
    assert_eq!(&*rows[0].batch.device, "old");
    assert_eq!(seal_some(&store, 1), 78);

    // A newer schema than ours is left alone.
    drop(store);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    match Store::open(dir.path(), &StoreConfig::default()) {
        Err(StoreError::TooNew { found: 99, .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a newer schema"),
    }
    assert!(path.exists());
}

#[test]
fn size_cap_evicts_oldest_data_first_counts_and_reports_keeps_alarms() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 256 * 1024;
    let cfg = StoreConfig {
        max_bytes: cap,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(dir.path(), &cfg).unwrap();
    let alarm = store
        .commit(
            &[],
            &[(
                EntryKind::Alarm,
                serde_json::json!({"alarm": "pressure_high"}),
            )],
            &stamp_at(T0),
        )
        .unwrap()
        .entry_ids[0];
    // 50 delivered batches of history, and one sealed-but-unacked message.
    let mut t = T0;
    let mut delivered_readings = 0;
    for _ in 0..50 {
        let id = store
            .commit(&[batch("h", t, 10)], &[], &stamp_at(t))
            .unwrap()
            .entry_ids[0];
        let m = store.seal("t", &[id], 10, &mut |_| Ok(vec![1])).unwrap();
        store.ack(m.seq).unwrap();
        delivered_readings += 10;
        t += 1000;
    }
    let sealed_id = store
        .commit(&[batch("s", t, 10)], &[], &stamp_at(t))
        .unwrap()
        .entry_ids[0];
    let sealed = store
        .seal("t", &[sealed_id], 10, &mut |_| Ok(vec![2; 100]))
        .unwrap();

    let mut history_evicted = 0;
    let mut loss_events = 0;
    let mut dropped = 0;
    let mut max_dropped_read = i64::MIN;
    let mut peak = 0;
    for round in 0..120 {
        for _ in 0..10 {
            t += 1000;
            let bs: Vec<SampleBatch> = (0..5).map(|d| batch(&format!("d{d}"), t, 10)).collect();
            store.commit(&bs, &[], &stamp_at(t)).unwrap();
        }
        let ev = store.enforce_limits(from_unix_ms(t)).unwrap();
        peak = peak.max(ev.bytes_after);
        assert!(
            ev.bytes_after <= cap,
            "round {round}: {} > {cap}",
            ev.bytes_after
        );
        if ev.dropped_unsent > 0 {
            // Delivered history goes before any unsent reading.
            assert_eq!(
                history_evicted + ev.expired_history,
                delivered_readings,
                "round {round}"
            );
            let (lo, hi) = ev.dropped_range.unwrap();
            assert!(lo >= max_dropped_read, "oldest first");
            max_dropped_read = hi;
            loss_events += 1;
            assert!(ev.event_id.is_some());
        }
        history_evicted += ev.expired_history;
        dropped += ev.dropped_unsent;
    }
    assert!(dropped > 0, "the cap was never reached");
    // Remaining unsent data is all newer than everything dropped.
    let remaining: Vec<StoredBatch> = all(&store);
    assert!(remaining
        .iter()
        .filter(|b| &*b.batch.device != "s")
        .all(|b| unix_ms(b.batch.samples[0].read_at) >= max_dropped_read));
    // The alarm and the sealed message's entry survive.
    let pending = store.pending(100_000, 0).unwrap();
    assert_eq!(pending[0].id, alarm);
    assert_eq!(store.unacked().unwrap(), vec![sealed]);
    assert!(remaining.iter().any(|b| b.id == sealed_id));
    // Counted and reported: one data_loss event per enforcement that dropped.
    let st = store.stats().unwrap();
    assert_eq!(st.dropped_unsent, dropped);
    assert_eq!(st.dropped_expired, history_evicted);
    let losses = events_pending(&store, "data_loss");
    assert_eq!(losses.len(), loss_events);
    let reported: u64 = losses.iter().map(|e| e["readings"].as_u64().unwrap()).sum();
    assert_eq!(reported, dropped);
    assert!(losses[0]["from"].as_str().unwrap().starts_with("2026-"));
    eprintln!(
        "cap {cap}, peak on disk {peak}, dropped {dropped}, history evicted {history_evicted}"
    );
}

#[test]
fn age_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_age: Duration::from_secs(86_400),
        history: Duration::from_secs(3600),
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(dir.path(), &cfg).unwrap();
    let now = T0 + 10 * 86_400_000;
    let h = 3_600_000;
    let commit = |read: i64| {
        store
            .commit(&[batch("a", read, 10)], &[], &stamp_at(read))
            .unwrap()
            .entry_ids[0]
    };
    let deliver = |id: i64| {
        let m = store.seal("t", &[id], 10, &mut |_| Ok(vec![])).unwrap();
        store.ack(m.seq).unwrap();
    };
    let unsent_old = commit(now - 48 * h);
    let unsent_recent = commit(now - 2 * h);
    let hist_old = commit(now - 2 * h);
    deliver(hist_old);
    let hist_recent = commit(now - h / 2);
    deliver(hist_recent);
    let sealed_old = commit(now - 49 * h);
    store
        .seal("t", &[sealed_old], 10, &mut |_| Ok(vec![]))
        .unwrap();

    let ev = store.enforce_limits(from_unix_ms(now)).unwrap();
    assert_eq!((ev.dropped_unsent, ev.expired_history), (10, 10));
    let left: Vec<i64> = all(&store).iter().map(|b| b.id).collect();
    assert_eq!(left, vec![sealed_old, unsent_recent, hist_recent]);
    assert!(!left.contains(&unsent_old) && !left.contains(&hist_old));
    let loss = events_pending(&store, "data_loss");
    assert_eq!(loss.len(), 1);
    assert_eq!(loss[0]["reason"], "max_age");
    assert_eq!(loss[0]["readings"], 10);
    // Nothing more to do: no second event.
    let ev = store.enforce_limits(from_unix_ms(now)).unwrap();
    assert_eq!(
        ev,
        Eviction {
            bytes_before: ev.bytes_before,
            bytes_after: ev.bytes_after,
            max_bytes: ev.max_bytes,
            ..Eviction::default()
        }
    );
}

#[test]
fn untrusted_batches_are_held_then_restamped() {
    // A boot whose clock started at 1970 (base 0); the true boot time is B.
    let b = T0 - 3_600_000;
    let untrusted = |mono: i64, boot: &str| ClockStamp {
        wall_ms: mono,
        mono_ms: mono,
        boot_id: boot.into(),
    };
    let trusted = |mono: i64, boot: &str| ClockStamp {
        wall_ms: b + mono,
        mono_ms: mono,
        boot_id: boot.into(),
    };

    struct Case {
        what: &'static str,
        /// (read time on the untrusted clock, stamp) for held commits
        held: Vec<(i64, ClockStamp)>,
        /// the trusted commit that releases them
        release: ClockStamp,
        /// expected (read time, clock state) of the released batches, in commit order
        want: Vec<(i64, ClockState)>,
        event: Option<&'static str>,
    }
    let cases = vec![
        Case {
            what: "same boot: exact",
            held: vec![
                (60_000, untrusted(60_050, "b1")),
                (120_000, untrusted(120_020, "b1")),
            ],
            release: trusted(180_000, "b1"),
            want: vec![
                (b + 60_000, ClockState::Restamped),
                (b + 120_000, ClockState::Restamped),
            ],
            event: None,
        },
        Case {
            what: "earlier boot that never got the time: estimated as ending when this boot began",
            held: vec![
                (10_000, untrusted(10_000, "b0")),
                (500_000, untrusted(500_000, "b0")),
            ],
            release: trusted(30_000, "b1"),
            want: vec![
                (b - 490_000, ClockState::Estimated),
                (b, ClockState::Estimated),
            ],
            event: Some("clock_estimated"),
        },
    ];
    for c in cases {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        for (read, st) in &c.held {
            let info = store.commit(&[batch("a", *read, 4)], &[], st).unwrap();
            assert_eq!(info.held, 1, "{}", c.what);
        }
        assert!(
            data_ids(&store).is_empty(),
            "{}: held rows must not be pending",
            c.what
        );
        assert_eq!(store.stats().unwrap().held_entries, c.held.len() as u64);
        let info = store.commit(&[], &[], &c.release).unwrap();
        assert_eq!(info.released, c.held.len(), "{}", c.what);
        let got: Vec<(i64, ClockState)> = all(&store)
            .iter()
            .map(|s| (unix_ms(s.batch.samples[0].read_at), s.clock))
            .collect();
        assert_eq!(got, c.want, "{}", c.what);
        assert_eq!(data_ids(&store).len(), c.held.len());
        // Nothing pending carries an untrusted time.
        for e in store.pending(100, 0).unwrap() {
            if let EntryBody::Batch(bt) = e.body {
                assert!(
                    bt.samples
                        .iter()
                        .all(|s| clock::is_trusted(unix_ms(s.read_at))),
                    "{}",
                    c.what
                );
                assert!(clock::is_trusted(unix_ms(bt.slot)));
            }
        }
        match c.event {
            Some(name) => {
                let ev = events_pending(&store, name);
                assert_eq!(ev.len(), 1, "{}", c.what);
                assert_eq!(ev[0]["readings"], 8);
                assert_eq!(ev[0]["boot_id"], "b0");
            }
            None => assert!(events_pending(&store, "clock_estimated").is_empty()),
        }
    }

    // Read before NTP set the clock, committed after: converted with this boot's last
    // untrusted base.
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store
        .commit(&[batch("a", 1_000, 2)], &[], &untrusted(1_000, "b1"))
        .unwrap();
    store
        .commit(&[batch("a", 2_000, 2)], &[], &trusted(2_010, "b1"))
        .unwrap();
    let got: Vec<i64> = all(&store)
        .iter()
        .map(|s| unix_ms(s.batch.samples[0].read_at))
        .collect();
    assert_eq!(got, vec![b + 1_000, b + 2_000]);
}

#[test]
fn export_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    for i in 0..10 {
        let t = T0 + i * 60_000;
        store
            .commit(
                &[batch("fc1", t, 3), batch("pt2", t + 10, 3)],
                &[],
                &stamp_at(t + 20),
            )
            .unwrap();
    }
    let at = |m: i64| Some(from_unix_ms(T0 + m * 60_000));
    // (since, until, device, want batch count)
    let cases = vec![
        (None, None, None, 20),
        (None, None, Some("fc1"), 10),
        (None, None, Some("nope"), 0),
        (at(5), None, None, 10),
        (None, at(5), None, 10),
        (at(2), at(4), Some("pt2"), 2),
        (at(9), at(9), None, 0),
    ];
    for (since, until, device, want) in cases {
        let f = ExportFilter {
            since,
            until,
            device: device.map(String::from),
        };
        let mut got = Vec::new();
        let n = store
            .export(&f, &mut |b| {
                got.push(b.batch.clone());
                Ok(())
            })
            .unwrap();
        assert_eq!(n as usize, want, "{f:?}");
        assert_eq!(got.len(), want);
        assert!(got
            .windows(2)
            .all(|w| w[0].samples[0].read_at <= w[1].samples[0].read_at));
        if let Some(d) = device {
            assert!(got.iter().all(|b| &*b.device == d));
        }
    }
    // A failing sink stops the export with its error.
    let err = store
        .export(&ExportFilter::default(), &mut |_| {
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Sink(_)), "{err}");
}

#[test]
fn a_reader_in_another_connection_reads_while_the_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let store = Arc::new(store);
    store
        .commit(&[batch("a", T0, 10)], &[], &stamp_at(T0))
        .unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 1..200 {
                let t = T0 + i * 1000;
                store
                    .commit(&[batch("a", t, 10)], &[], &stamp_at(t))
                    .unwrap();
            }
        })
    };
    let reader = Store::open_read_only(dir.path()).unwrap();
    let mut last = 0;
    let mut reads = 0;
    loop {
        let done = writer.is_finished();
        let n = reader
            .export(&ExportFilter::default(), &mut |_| Ok(()))
            .unwrap();
        assert!(n >= last, "a reader never sees a commit disappear");
        last = n;
        reads += 1;
        if done {
            break;
        }
    }
    writer.join().unwrap();
    assert_eq!(last, 200, "after {reads} reads");
    assert_eq!(reader.stats().unwrap().pending_readings, 2000);
    // The read-only store refuses to write.
    assert!(reader
        .commit(&[batch("a", T0, 1)], &[], &stamp_at(T0))
        .is_err());
    assert!(matches!(
        Store::open_read_only(&dir.path().join("nowhere")),
        Err(StoreError::Missing { .. })
    ));
}

#[test]
fn ack_many_acknowledges_several_messages_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let info = store
        .commit(
            &[batch("a", T0, 5), batch("b", T0, 5), batch("c", T0, 5)],
            &[],
            &stamp_at(T0 + 10),
        )
        .unwrap();
    let seqs: Vec<u64> = info
        .entry_ids
        .iter()
        .map(|id| {
            store
                .seal("t", &[*id], 5, &mut |_| Ok(vec![1]))
                .unwrap()
                .seq
        })
        .collect();
    // Two of three PUBACKs arrived together (one of them twice): one transaction for both.
    store.ack_many(&[seqs[0], seqs[2], seqs[2]]).unwrap();
    let left: Vec<u64> = store.unacked().unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(left, vec![seqs[1]]);
    let st = store.stats().unwrap();
    assert_eq!((st.history_readings, st.pending_readings), (10, 5));
    store.ack_many(&[]).unwrap();
    store.ack_many(&[seqs[1]]).unwrap();
    assert!(store.unacked().unwrap().is_empty());
}

/// The O(1) statistics equal a full scan after every operation of random sequences: commits
/// (pending, history-only, held, alarms and events), re-stamping of held rows (this boot's and
/// an earlier boot's), seal, ack (known, duplicate and unknown seqs), size and age eviction,
/// reopening.
#[test]
fn live_stats_equal_a_full_scan_after_every_operation() {
    let b = T0 - 3_600_000; // true boot time of "boot-now" (see `stamp_at`)
    for seed in 0..6u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            max_bytes: 192 * 1024,
            max_age: Duration::from_secs(6 * 3600),
            history: Duration::from_secs(3600),
        };
        let mut store = Store::open(dir.path(), &cfg).unwrap().0;
        let mut t = T0;
        let mut ops = Vec::new();
        for step in 0..120 {
            t += rng.i64(1_000..120_000);
            let op = rng.u8(0..10);
            ops.push(op);
            match op {
                // Trusted commit: data, history-only, alarm/event; read times a bit in the past.
                0..=2 => {
                    let n = rng.usize(0..4);
                    let bs: Vec<SampleBatch> = (0..n)
                        .map(|d| batch(&format!("d{d}"), t - rng.i64(0..4_000_000), 8))
                        .collect();
                    let hs: Vec<SampleBatch> = (0..rng.usize(0..3))
                        .map(|d| batch(&format!("h{d}"), t - rng.i64(0..600_000), 5))
                        .collect();
                    let extra: Vec<(EntryKind, serde_json::Value)> = match rng.u8(0..4) {
                        0 => vec![(EntryKind::Alarm, serde_json::json!({"alarm": step}))],
                        1 => vec![(EntryKind::Event, serde_json::json!({"event": step}))],
                        _ => vec![],
                    };
                    store.commit_routed(&hs, &bs, &extra, &stamp_at(t)).unwrap();
                }
                // Untrusted clock: this boot (released exactly later) or an earlier boot
                // (released by estimate).
                3 => {
                    let mono = t - b;
                    let boot = if rng.bool() { "boot-now" } else { "boot-old" };
                    let st = ClockStamp {
                        wall_ms: mono,
                        mono_ms: mono,
                        boot_id: boot.into(),
                    };
                    let bs = vec![batch("u", mono - rng.i64(0..10_000), 6)];
                    store.commit(&bs, &[], &st).unwrap();
                }
                4 | 5 => {
                    let pending = store.pending(40, t - 60_000).unwrap();
                    if !pending.is_empty() {
                        let k = rng.usize(1..=pending.len().min(6));
                        let ids: Vec<i64> = pending[..k].iter().map(|e| e.id).collect();
                        store.seal("t", &ids, 0, &mut |_| Ok(vec![7])).unwrap();
                    }
                }
                6 | 7 => {
                    let unacked = store.unacked().unwrap();
                    let mut seqs: Vec<u64> = unacked
                        .iter()
                        .filter(|_| rng.u8(0..3) == 0)
                        .map(|m| m.seq)
                        .collect();
                    if rng.bool() {
                        seqs.push(1); // unknown
                    }
                    if let Some(&s) = seqs.first() {
                        seqs.push(s); // duplicate PUBACK
                    }
                    store.ack_many(&seqs).unwrap();
                }
                8 => {
                    store.enforce_limits(from_unix_ms(t)).unwrap();
                }
                _ => {
                    if rng.u8(0..3) == 0 {
                        drop(store);
                        store = Store::open(dir.path(), &cfg).unwrap().0;
                    } else {
                        store
                            .enforce_limits(from_unix_ms(t + 8 * 3_600_000))
                            .unwrap();
                    }
                }
            }
            let live = store.stats().unwrap();
            let scan = store.stats_scan().unwrap();
            assert_eq!(live, scan, "seed {seed} step {step} ops {ops:?}");
        }
        let s = store.stats().unwrap();
        eprintln!("seed {seed}: {s:?}");
    }
}

#[test]
fn seal_refuses_to_issue_2_pow_53() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.lock().seq_hwm = seq::MAX_SEQ - 1;
    assert_eq!(seal_some(&store, 1), seq::MAX_SEQ);
    assert_eq!(
        seq::read(&dir.path().join(seq::FILE_NAME)),
        seq::Reserve::Value(seq::MAX_SEQ),
        "the reservation never exceeds MAX_SEQ either"
    );
    let id = store
        .commit(&[batch("a", T0, 2)], &[], &stamp_at(T0))
        .unwrap()
        .entry_ids[0];
    match store.seal("t", &[id], 2, &mut |_| Ok(vec![])) {
        Err(OutboxError::Store(m)) => assert!(m.contains("exhausted") && m.contains("2^53"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Nothing consumed, nothing bound, nothing wrapped.
    assert_eq!(store.lock().seq_hwm, seq::MAX_SEQ);
    assert_eq!(data_ids(&store), vec![id]);
    assert_eq!(store.unacked().unwrap().len(), 1);
}

#[test]
fn seq_hwm_out_of_range_in_the_database_is_repaired() {
    for bad in [i64::MAX, -1, (1i64 << 53) - 1, seq::SANE_MAX_SEQ as i64 + 1] {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let (store, _) = open(dir.path());
            seal_some(&store, 3)
        };
        Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .execute("UPDATE meta SET value = ?1 WHERE key = 'seq_hwm'", [bad])
            .unwrap();
        let (store, events) = open(dir.path());
        let next = match &events[..] {
            [StoreEvent::SeqRepaired {
                source: "seq_hwm",
                problem: "out of range",
                found,
                next,
            }] if *found == bad.to_string() => *next,
            other => panic!("{bad}: {other:?}"),
        };
        let after = seal_some(&store, 2);
        assert_eq!(after, next + 1, "{bad}");
        assert!(next > before && after < 1 << 53, "{bad}: {before} {after}");
        assert_eq!(events_pending(&store, "sequence_repaired").len(), 1);
    }
}

/// The outbox queries stay prepared from one call to the next: their `LIMIT ?1` changes with
/// the room left, and without the query planner stability guarantee SQLite re-prepares a
/// statement whenever a rebound LIMIT changes (bench-results/cpu_profile.txt).
#[test]
fn pending_statements_are_not_reprepared() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    for i in 0..3 {
        store
            .commit(
                &[batch("a", T0 + i * 1000, 2)],
                &[(EntryKind::Event, serde_json::json!({"event": "x"}))],
                &stamp_at(T0 + i * 1000),
            )
            .unwrap();
    }
    for limit in [100, 3, 7, 2, 50, 1] {
        assert!(!store.pending(limit, T0 + 1500).unwrap().is_empty());
    }
    // Acknowledged messages are tallied by `msg_seq = ?1`: also re-prepared at every new
    // seq without the guarantee (5 times in these 6 acks).
    for i in 0..6 {
        let ids = store
            .commit(
                &[batch("b", T0 + 10_000 + i * 1000, 2)],
                &[],
                &stamp_at(T0 + 10_000 + i * 1000),
            )
            .unwrap()
            .entry_ids;
        let s = store.seal("t", &ids, 2, &mut |_| Ok(vec![])).unwrap();
        store.ack(s.seq).unwrap();
        store.flush_acks().unwrap();
    }
    let g = store.lock();
    let st = g.conn.prepare_cached(sealing::PENDING_JSON).unwrap();
    assert_eq!(
        st.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "the pending statement was compiled again"
    );
    drop(st);
    let tally = g.conn.prepare_cached(counters::MESSAGE_TALLY).unwrap();
    assert_eq!(
        tally.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "the ack tally was compiled again"
    );
    assert!(
        tally.get_status(rusqlite::StatementStatus::Run) >= 6,
        "the tally statement checked is the one the acks ran"
    );
    drop(tally);
    assert!(g
        .conn
        .db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG)
        .unwrap());
}

#[test]
fn the_tally_of_one_message_is_the_grouped_tally_of_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    // A message of two batches and an event, a message of one batch, an unknown seq.
    let ev = (EntryKind::Event, serde_json::json!({"event": "door"}));
    let ids = store
        .commit(
            &[batch("a", T0 + 5, 4), batch("b", T0 - 70, 2)],
            &[ev],
            &stamp_at(T0 + 10),
        )
        .unwrap()
        .entry_ids;
    let m1 = store.seal("t", &ids, 6, &mut |_| Ok(vec![1])).unwrap();
    let more = store
        .commit(&[batch("c", T0 + 20, 3)], &[], &stamp_at(T0 + 30))
        .unwrap()
        .entry_ids;
    let m2 = store.seal("t", &more, 3, &mut |_| Ok(vec![2])).unwrap();
    let g = store.lock();
    for seq in [m1.seq as i64, m2.seq as i64, 999] {
        let grouped = counters::Tally::of(&g.conn, "msg_seq = ?1", &[&seq]).unwrap();
        let one = counters::Tally::of_message(&g.conn, seq).unwrap();
        assert_eq!(format!("{grouped:?}"), format!("{one:?}"), "message {seq}");
    }
    let one = counters::Tally::of_message(&g.conn, m1.seq as i64).unwrap();
    assert_eq!(one.entries[1], 3);
    assert_eq!(one.readings[1], 6);
    assert_eq!(one.min_read[1], Some(T0 - 70));
    assert_eq!(one.max_read[1], Some(T0 + 5));
}
