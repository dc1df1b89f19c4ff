//! Sealing inside the ingest commit on a real SQLite file: readings and messages in one
//! transaction, a failed seal keeps the readings (and the counters and numbers exact), the
//! bounds, and the hand-over to the forwarder (`take_presealed`, `unacked`).

use std::sync::{Arc, Mutex};

use super::*;
use crate::outbox::{Entry, EntryKind, Outbox, PlannedSeal};
use crate::store::{ClockStamp, StoreConfig};

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
    let ids: Vec<i64> = store
        .pending(100, 0)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    if !ids.is_empty() {
        let m = store
            .seal("gw/event", &ids, 0, &mut |_| Ok(b"e".to_vec()))
            .unwrap();
        store.ack(m.seq).unwrap();
    }
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
    assert_eq!(info.presealed, 0);
    assert_eq!(info.readings, 9, "the readings committed");
    assert_eq!(store.pending(100, 0).unwrap().len(), 3, "all still pending");
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
