//! Sealing inside the ingest commit on a real SQLite file: readings and messages in one
//! transaction, a failed seal keeps the readings (and the counters and numbers exact), the
//! bounds, and the hand-over to the forwarder (`take_presealed`, `unacked`).

use std::sync::{Arc, Mutex};

use super::*;
use crate::outbox::{Entry, EntryKind, Outbox, PlannedSeal};
use crate::store::{entry_state, ClockStamp, StoreConfig};

const T0: i64 = crate::store::clock::MIN_TRUSTED_UNIX_MS + 10 * 86_400_000;

fn stamp() -> ClockStamp {
    ClockStamp {
        wall_ms: T0 + 10,
        mono_ms: 3_600_000,
        boot_id: "boot".into(),
    }
}

fn batches(n: usize) -> Vec<crate::model::SampleBatch> {
    (0..n)
        .map(|i| crate::store::tests::int_batch(&format!("d{i}"), T0 + i as i64, 3))
        .collect()
}

/// One message per entry, payload `m<seq>:<ids>`; fails the build of message `fail_at`.
/// `pack` records what the entries were and whether another connection could see them.
#[derive(Default)]
struct Fake {
    armed: Mutex<Option<i64>>,
    handed: Mutex<Vec<Sealed>>,
    fail_at: Option<usize>,
    /// Each entry becomes this many messages (bounds test).
    copies: usize,
    db: Option<std::path::PathBuf>,
    seen: Mutex<Vec<(Vec<i64>, i64)>>,
}

impl IngestSealer for Fake {
    fn armed(&self) -> Option<i64> {
        *self.armed.lock().unwrap()
    }
    fn disarm(&self) {
        *self.armed.lock().unwrap() = None;
    }
    fn pack(&self, entries: &[Entry]) -> Vec<PlannedSeal> {
        let visible = self.db.as_ref().map_or(-1, |p| {
            let c = rusqlite::Connection::open(p).unwrap();
            c.query_row("SELECT COUNT(*) FROM entry", [], |r| r.get(0))
                .unwrap()
        });
        self.seen
            .lock()
            .unwrap()
            .push((entries.iter().map(|e| e.id).collect(), visible));
        let mut out = Vec::new();
        for e in entries {
            for _ in 0..self.copies.max(1) {
                let i = out.len();
                let fail = self.fail_at == Some(i);
                let id = e.id;
                out.push(PlannedSeal {
                    topic: "gw/data".into(),
                    entries: if out.len() % self.copies.max(1) == 0 {
                        vec![id]
                    } else {
                        vec![]
                    },
                    readings: 3,
                    rebuildable: false,
                    build: Box::new(move |seq| {
                        if fail {
                            Err("refused".into())
                        } else {
                            Ok(format!("m{seq}:{id}").into_bytes())
                        }
                    }),
                });
            }
        }
        out
    }
    fn hand_over(&self, sealed: Vec<Sealed>) {
        self.handed.lock().unwrap().extend(sealed);
    }
    fn take(&self) -> Vec<Sealed> {
        std::mem::take(&mut self.handed.lock().unwrap())
    }
}

fn open(dir: &std::path::Path, fake: Fake) -> (Store, Arc<Fake>) {
    let (store, _) = Store::open(dir, &StoreConfig::default()).unwrap();
    let fake = Arc::new(Fake {
        db: Some(store.path().to_path_buf()),
        ..fake
    });
    // Events of the open itself are pending: sealed and acknowledged out of the way.
    clear_pending(&store);
    store.set_ingest_sealer(Some(fake.clone()));
    (store, fake)
}

fn counters_exact(store: &Store) {
    let live = store.stats().unwrap();
    let mut scan = store.stats_scan().unwrap();
    scan.bytes_on_disk = live.bytes_on_disk;
    assert_eq!(live, scan);
}

#[test]
fn an_armed_commit_seals_its_readings_in_the_same_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fake) = open(dir.path(), Fake::default());
    // Not armed: nothing sealed, nothing packed.
    let first = store.commit(&batches(2), &[], &stamp()).unwrap();
    assert_eq!(first.presealed, 0);
    assert!(fake.seen.lock().unwrap().is_empty());

    let s0 = store.last_seq().unwrap();
    fake.armed.lock().unwrap().replace(T0);
    let alarm = (EntryKind::Alarm, serde_json::json!({"alarm": "hi"}));
    let info = store.commit(&batches(3), &[alarm], &stamp()).unwrap();
    assert_eq!(info.presealed, 6, "2 earlier + 3 batches + 1 alarm");
    let (ids, visible) = fake.seen.lock().unwrap()[0].clone();
    // The look ran inside the commit: it saw this commit's rows, no other connection did.
    assert_eq!(
        visible, 2,
        "only the first commit's rows were visible elsewhere"
    );
    assert_eq!(ids.len(), 6);
    assert_eq!(ids[0], info.entry_ids[3], "the alarm first (send order)");
    assert_eq!(fake.armed(), None, "one shot: disarmed after sealing");

    // The hand-over is what is stored, in seq order; nothing is pending any more.
    let handed = store.take_presealed().unwrap();
    let seqs: Vec<u64> = handed.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (s0 + 1..=s0 + 6).collect::<Vec<_>>());
    assert_eq!(
        handed[0].payload,
        format!("m{}:{}", s0 + 1, ids[0]).into_bytes()
    );
    assert_eq!(store.unacked().unwrap(), handed);
    assert!(store.pending(100, 0).unwrap().is_empty());
    assert_eq!(store.last_seq().unwrap(), s0 + 6);
    counters_exact(&store);

    // Disarmed: the next commit leaves its readings pending for the forwarder.
    let later = store.commit(&batches(1), &[], &stamp()).unwrap();
    assert_eq!(later.presealed, 0);
    assert_eq!(store.pending(100, 0).unwrap().len(), 1);
    // Acknowledged like any message; the next seal continues the numbers.
    store.ack_many(&seqs).unwrap();
    let m = store
        .seal("gw/data", &[later.entry_ids[0]], 3, &mut |s| {
            Ok(vec![s as u8])
        })
        .unwrap();
    assert_eq!(m.seq, s0 + 7);
    counters_exact(&store);
}

#[test]
fn a_failed_seal_keeps_the_readings_and_consumes_no_number() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fake) = open(
        dir.path(),
        Fake {
            fail_at: Some(1),
            ..Fake::default()
        },
    );
    let s0 = store.last_seq().unwrap();
    fake.armed.lock().unwrap().replace(T0);
    let info = store.commit(&batches(3), &[], &stamp()).unwrap();
    assert!(info.fresh_look, "sealed as written, then refused");
    assert_eq!(info.presealed, 0);
    assert_eq!(info.readings, 9, "the readings committed");
    // Every row written pending with the ids it was packed with, live newest first.
    let pending: Vec<i64> = store
        .pending(100, 0)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let mut want = info.entry_ids.clone();
    want.reverse();
    assert_eq!(pending, want, "all still pending");
    // Still armed after a failure (nothing was handed over).
    assert_eq!(fake.armed(), Some(T0));
    assert!(
        store.unacked().unwrap().is_empty(),
        "the first seal rolled back too"
    );
    assert!(store.take_presealed().unwrap().is_empty());
    assert_eq!(store.last_seq().unwrap(), s0);
    counters_exact(&store);
    // The forwarder's own path takes them with the first number.
    let m = store
        .seal("gw/data", &[info.entry_ids[0]], 3, &mut |s| {
            Ok(vec![s as u8])
        })
        .unwrap();
    assert_eq!(m.seq, s0 + 1);
}

#[test]
fn a_backlog_or_too_many_messages_are_left_to_the_forwarder() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fake) = open(dir.path(), Fake::default());
    // A backlog: a full look (LOOK entries) is not sealed at ingest.
    store.commit(&batches(LOOK - 1), &[], &stamp()).unwrap();
    fake.armed.lock().unwrap().replace(T0);
    let info = store.commit(&batches(1), &[], &stamp()).unwrap();
    assert_eq!(info.presealed, 0);
    assert_eq!(store.pending(1000, 0).unwrap().len(), LOOK);

    // More than MAX_MESSAGES messages from one look: not sealed at ingest.
    let dir = tempfile::tempdir().unwrap();
    let (store, fake) = open(
        dir.path(),
        Fake {
            copies: MAX_MESSAGES / 4 + 1,
            ..Fake::default()
        },
    );
    fake.armed.lock().unwrap().replace(T0);
    assert_eq!(
        store.commit(&batches(4), &[], &stamp()).unwrap().presealed,
        0
    );
    // At the cap it is sealed.
    let dir = tempfile::tempdir().unwrap();
    let (store, fake) = open(
        dir.path(),
        Fake {
            copies: MAX_MESSAGES / 4,
            ..Fake::default()
        },
    );
    fake.armed.lock().unwrap().replace(T0);
    let info = store.commit(&batches(4), &[], &stamp()).unwrap();
    assert_eq!(info.presealed, MAX_MESSAGES);
    counters_exact(&store);
}

#[test]
fn unacked_takes_the_hand_over_so_nothing_is_sent_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fake) = open(dir.path(), Fake::default());
    fake.armed.lock().unwrap().replace(T0);
    store.commit(&batches(2), &[], &stamp()).unwrap();
    fake.armed.lock().unwrap().replace(T0);
    // A new session reads everything sealed; the hand-over is emptied and disarmed with it.
    assert_eq!(store.unacked().unwrap().len(), 2);
    assert!(store.take_presealed().unwrap().is_empty());
    assert_eq!(fake.armed(), None);
    // Replacing the sealer disarms the old one.
    fake.armed.lock().unwrap().replace(T0);
    store.set_ingest_sealer(None);
    assert_eq!(fake.armed(), None);
    assert_eq!(
        store.commit(&batches(1), &[], &stamp()).unwrap().presealed,
        0
    );
}

/// Always armed (live since `live_since`); records each look and seals nothing, so the
/// look's entries stay pending and can be read back.
struct Recorder {
    live_since: Mutex<i64>,
    looks: Mutex<Vec<Vec<Entry>>>,
}

impl IngestSealer for Recorder {
    fn armed(&self) -> Option<i64> {
        Some(*self.live_since.lock().unwrap())
    }
    fn disarm(&self) {}
    fn pack(&self, entries: &[Entry]) -> Vec<PlannedSeal> {
        self.looks.lock().unwrap().push(entries.to_vec());
        Vec::new()
    }
    fn hand_over(&self, _: Vec<Sealed>) {}
    fn take(&self) -> Vec<Sealed> {
        Vec::new()
    }
}

/// A store with nothing pending and a `Recorder` installed, live since 0.
fn recording(dir: &std::path::Path) -> (Store, Arc<Recorder>) {
    let (store, _) = Store::open(dir, &StoreConfig::default()).unwrap();
    clear_pending(&store);
    let rec = Arc::new(Recorder {
        live_since: Mutex::new(0),
        looks: Mutex::default(),
    });
    store.set_ingest_sealer(Some(rec.clone()));
    (store, rec)
}

/// Seal and acknowledge everything pending, the acknowledgement written (the next commit's
/// batches are then all that is pending, and the rows are gone).
fn clear_pending(store: &Store) {
    let ids: Vec<i64> = store
        .pending(100, 0)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    if !ids.is_empty() {
        let m = store
            .seal("gw/x", &ids, 0, &mut |_| Ok(b"x".to_vec()))
            .unwrap();
        store.ack(m.seq).unwrap();
        store.flush_acks().unwrap();
    }
}

/// A batch of every kind of sample: floats (one not exact in f32), an integer, text, a bad
/// reading with a detail, a unit and none, read times with sub-millisecond parts.
fn varied(device: &str, read_ms: i64) -> crate::model::SampleBatch {
    use crate::model::{BadReason, Quality, Sample, Value};
    use crate::time::from_unix_ms;
    let at = |dt_us: u64| from_unix_ms(read_ms) + std::time::Duration::from_micros(dt_us);
    let s = |p: &str, v: Option<Value>, unit: Option<&str>, q: Quality, dt_us| Sample {
        point: p.into(),
        value: v,
        unit: unit.map(Arc::from),
        quality: q,
        read_at: at(dt_us),
    };
    crate::model::SampleBatch {
        device: device.into(),
        bus: "rtu0".into(),
        slot: from_unix_ms(read_ms - 250) + std::time::Duration::from_micros(700),
        samples: vec![
            s(
                "flow",
                Some(Value::Float(0.1)),
                Some("m3/h"),
                Quality::Good,
                0,
            ),
            s(
                "t",
                Some(Value::Float(f64::from(21.3f32))),
                None,
                Quality::Good,
                1_500,
            ),
            s("n", Some(Value::Int(-7)), None, Quality::Good, 2_999),
            s("u", Some(Value::UInt(u64::MAX)), None, Quality::Good, 10),
            s(
                "state",
                Some(Value::Text("ok \"q\"".into())),
                None,
                Quality::Good,
                0,
            ),
            s(
                "p",
                None,
                Some("bar"),
                Quality::Bad(BadReason::Exception {
                    code: 2,
                    meaning: "illegal data address".into(),
                }),
                40_000,
            ),
            s("alarm", Some(Value::Bool(true)), None, Quality::Good, 0),
        ],
        online: false,
        failed_cycles: 3,
    }
}

#[test]
fn the_look_built_in_memory_is_the_look_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, rec) = recording(dir.path());
    let untrusted = 5_000_000; // ms after the epoch: a clock not set yet
    let stamp_of = |wall_ms: i64, boot: &str| ClockStamp {
        wall_ms,
        mono_ms: 1_000_000,
        boot_id: boot.into(),
    };
    // (what, batches, stamp, live since)
    let cases: Vec<(&str, Vec<crate::model::SampleBatch>, ClockStamp, i64)> = vec![
        (
            "trusted: live, newest first",
            vec![varied("a", T0), varied("b", T0 + 3), varied("c", T0 - 9)],
            stamp_of(T0 + 10, "b1"),
            0,
        ),
        (
            "trusted, the forwarder's session began after the commit: backlog, oldest first",
            vec![varied("a", T0 + 20), varied("b", T0 + 21)],
            stamp_of(T0 + 30, "b1"),
            T0 + 31,
        ),
        (
            "clock not set, read times trusted: created at the read, split live/backlog",
            vec![
                varied("a", T0 + 50),
                varied("b", T0 + 40),
                varied("c", T0 + 60),
                varied("d", T0 + 45),
            ],
            stamp_of(untrusted, "b2"),
            T0 + 45,
        ),
        (
            "restamped with this boot's untrusted base",
            vec![varied("a", untrusted + 100), varied("b", untrusted + 7)],
            stamp_of(T0 + 70, "b2"),
            0,
        ),
        (
            "estimated: no untrusted stamp of this boot known",
            vec![varied("a", untrusted + 100)],
            stamp_of(T0 + 80, "b3"),
            0,
        ),
    ];
    for (what, batches, stamp, live_since) in cases {
        clear_pending(&store);
        *rec.live_since.lock().unwrap() = live_since;
        let info = store.commit(&batches, &[], &stamp).unwrap();
        assert!(info.fresh_look, "{what}: the look is built in memory");
        assert_eq!(info.held, 0, "{what}");
        let look = rec.looks.lock().unwrap().pop().expect(what);
        let back = store.pending(LOOK, live_since).unwrap();
        assert_eq!(look.len(), batches.len(), "{what}");
        assert_eq!(look, back, "{what}");
    }
    // The same look read back (the reference path) gives the same entries.
    clear_pending(&store);
    FORCE_READ_BACK.with(|f| f.set(true));
    let info = store
        .commit(&[varied("a", T0 + 90)], &[], &stamp_of(T0 + 95, "b1"))
        .unwrap();
    FORCE_READ_BACK.with(|f| f.set(false));
    assert!(!info.fresh_look);
    let look = rec.looks.lock().unwrap().pop().unwrap();
    assert_eq!(look, store.pending(LOOK, 0).unwrap());
}

#[test]
fn an_older_pending_entry_an_event_or_a_release_makes_the_look_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, rec) = recording(dir.path());
    // Something older pending: it must be in the look.
    let first = store.commit(&batches(1), &[], &stamp()).unwrap();
    assert!(first.fresh_look);
    let second = store.commit(&batches(2), &[], &stamp()).unwrap();
    assert!(!second.fresh_look, "an older entry pending");
    let look = rec.looks.lock().unwrap().pop().unwrap();
    assert_eq!(look.len(), 3);
    assert!(look.iter().any(|e| e.id == first.entry_ids[0]));
    // An event in the same commit.
    clear_pending(&store);
    let ev = (EntryKind::Event, serde_json::json!({"event": "x"}));
    let info = store.commit(&batches(1), &[ev], &stamp()).unwrap();
    assert!(!info.fresh_look, "an event in the commit");
    assert_eq!(rec.looks.lock().unwrap().pop().unwrap().len(), 2);
    // Held rows released by this commit's trusted clock.
    clear_pending(&store);
    let unset = ClockStamp {
        wall_ms: 5_000_000,
        mono_ms: 1_000,
        boot_id: "boot".into(),
    };
    let held = crate::store::tests::int_batch("h", 5_000_000, 2);
    assert_eq!(store.commit(&[held], &[], &unset).unwrap().held, 1);
    let info = store.commit(&batches(1), &[], &stamp()).unwrap();
    assert_eq!(info.released, 1);
    assert!(!info.fresh_look, "held rows released");
    assert_eq!(rec.looks.lock().unwrap().pop().unwrap().len(), 2);
}

#[test]
fn rows_are_written_once_already_bound_when_they_are_all_that_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fake) = open(dir.path(), Fake::default());
    let s0 = store.last_seq().unwrap();
    fake.armed.lock().unwrap().replace(T0);
    // Three batches for the outbox and one history-only batch in the same commit.
    let history = [crate::store::tests::int_batch("slow", T0 - 500, 2)];
    let info = store
        .commit_routed(&history, &batches(3), &[], &stamp())
        .unwrap();
    assert!(info.fresh_look);
    assert_eq!(info.presealed, 3);
    // The ids are consecutive, in the order given, after the largest before.
    let ids = &info.entry_ids;
    assert_eq!(ids.len(), 4);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    let (looked, _) = fake.seen.lock().unwrap()[0].clone();
    assert_eq!(looked, vec![ids[2], ids[1], ids[0]], "live, newest first");
    // Each row bound to its message as written; the history row delivered, unbound.
    let handed = store.take_presealed().unwrap();
    let rows = crate::store::tests::entry_rows(&store, ids[0]);
    let seq_of = |id: i64| {
        handed
            .iter()
            .find(|m| m.payload.ends_with(format!(":{id}").as_bytes()))
            .map(|m| m.seq as i64)
    };
    assert_eq!(
        rows,
        vec![
            (ids[0], entry_state::SEALED, seq_of(ids[0])),
            (ids[1], entry_state::SEALED, seq_of(ids[1])),
            (ids[2], entry_state::SEALED, seq_of(ids[2])),
            (ids[3], entry_state::DELIVERED, None),
        ]
    );
    assert!(rows.iter().take(3).all(|r| r.2.is_some()));
    assert_eq!(store.unacked().unwrap(), handed);
    assert_eq!(store.last_seq().unwrap(), s0 + 3);
    assert!(store.pending(100, 0).unwrap().is_empty());
    counters_exact(&store);
    // Acknowledged: the readings become history like any sealed row's.
    store
        .ack_many(&handed.iter().map(|m| m.seq).collect::<Vec<_>>())
        .unwrap();
    store.flush_acks().unwrap();
    counters_exact(&store);
    let s = store.stats().unwrap();
    assert_eq!((s.sealed_messages, s.pending_readings), (0, 0));
    assert_eq!(s.history_readings, 3 * 3 + 2);
}
