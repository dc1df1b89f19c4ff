//! `AlarmService` on a real SQLite store: transitions and states are committed in the batch's
//! transaction (an injected failure rolls back batch, alarm entry and state together, and the
//! in-memory engine does not move), state survives a reopen (no second raise, the clear pairs
//! with the raise), alarm entries go first in the outbox and survive the size cap.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::alarms::AlarmService;
use crate::alarm::rule::{AlarmRule, Level, RuleKind, Severity};
use crate::config::StoreConfig;
use crate::model::{Quality, Sample, SampleBatch, Value};
use crate::outbox::{EntryBody, EntryKind, Outbox};
use crate::store::{ClockStamp, Store, MIN_TRUSTED_UNIX_MS};

const T0: i64 = MIN_TRUSTED_UNIX_MS + 10 * 86_400_000;

fn stamp(wall_ms: i64) -> ClockStamp {
    ClockStamp {
        wall_ms,
        mono_ms: wall_ms - (T0 - 3_600_000),
        boot_id: "boot".into(),
    }
}

fn rules() -> Vec<AlarmRule> {
    vec![AlarmRule {
        id: "p_high".into(),
        devices: vec!["pt1".into()],
        point: Some("pressure".into()),
        kind: RuleKind::Limit {
            levels: vec![(Level::High, 700.0)],
            deadband: 10.0,
        },
        on_delay: Duration::ZERO,
        off_delay: Duration::ZERO,
        severity: Severity::Critical,
        message: None,
        latched: false,
        action: None,
    }]
}

fn batch(ms: i64, v: f64) -> SampleBatch {
    let at = UNIX_EPOCH + Duration::from_millis(ms as u64);
    SampleBatch {
        device: "pt1".into(),
        bus: "lan".into(),
        slot: at,
        samples: vec![Sample {
            point: "pressure".into(),
            value: Some(Value::Float(v)),
            unit: Some("kPa".into()),
            quality: Quality::Good,
            read_at: at,
        }],
        online: true,
        failed_cycles: 0,
    }
}

fn alarms_pending(store: &Store) -> Vec<serde_json::Value> {
    store
        .pending(10_000, 0)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EntryKind::Alarm)
        .map(|e| match e.body {
            EntryBody::Json(j) => j,
            other => panic!("alarm entry with a batch body: {other:?}"),
        })
        .collect()
}

fn count(store_dir: &std::path::Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(store_dir.join("gasdtu.db")).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn transitions_and_state_are_one_transaction_with_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let store = Arc::new(store);
    let svc = AlarmService::open(rules(), store.clone()).unwrap();
    svc.commit(&[batch(T0, 400.0)], &[], &stamp(T0)).unwrap();

    // Make the alarm_state write fail inside the commit transaction.
    let c = rusqlite::Connection::open(dir.path().join("gasdtu.db")).unwrap();
    c.execute_batch(
        "CREATE TRIGGER fail BEFORE INSERT ON alarm_state BEGIN SELECT RAISE(ABORT, 'injected'); END;",
    )
    .unwrap();
    let data_before = count(dir.path(), "SELECT COUNT(*) FROM entry WHERE kind = 2");
    let r = svc.commit(&[batch(T0 + 1000, 900.0)], &[], &stamp(T0 + 1000));
    assert!(r.is_err(), "the injected failure must fail the commit");
    assert_eq!(
        count(dir.path(), "SELECT COUNT(*) FROM entry WHERE kind = 2"),
        data_before
    );
    assert_eq!(
        count(dir.path(), "SELECT COUNT(*) FROM entry WHERE kind = 0"),
        0
    );
    assert_eq!(count(dir.path(), "SELECT COUNT(*) FROM alarm_state"), 0);
    assert!(svc.active().is_empty(), "memory did not move either");

    // The retry (as the consumer does) raises exactly once.
    c.execute_batch("DROP TRIGGER fail").unwrap();
    let (info, n) = svc
        .commit(&[batch(T0 + 1000, 900.0)], &[], &stamp(T0 + 1000))
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(info.entry_ids.len(), 2, "batch + alarm in the same commit");
    let a = alarms_pending(&store);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["state"], "raised");
    assert_eq!(count(dir.path(), "SELECT COUNT(*) FROM alarm_state"), 1);
    // Alarms are first in the send order.
    let first = store.pending(1, 0).unwrap();
    assert_eq!(first[0].kind, EntryKind::Alarm);
}

#[test]
fn state_survives_reopen_no_second_raise_and_the_clear_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let occ = {
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let store = Arc::new(store);
        let svc = AlarmService::open(rules(), store.clone()).unwrap();
        svc.commit(&[batch(T0, 900.0)], &[], &stamp(T0)).unwrap();
        let a = alarms_pending(&store);
        assert_eq!(a.len(), 1);
        a[0]["occurrence"].as_u64().unwrap()
    };
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let store = Arc::new(store);
    let svc = AlarmService::open(rules(), store.clone()).unwrap();
    let active = svc.active();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].occurrence, occ);
    let (_, n) = svc
        .commit(&[batch(T0 + 1000, 910.0)], &[], &stamp(T0 + 1000))
        .unwrap();
    assert_eq!(n, 0, "no duplicate raise after the restart");
    let (_, n) = svc
        .commit(&[batch(T0 + 2000, 100.0)], &[], &stamp(T0 + 2000))
        .unwrap();
    assert_eq!(n, 1);
    let a = alarms_pending(&store);
    assert_eq!(a.len(), 2);
    assert_eq!(a[1]["state"], "cleared");
    assert_eq!(a[1]["occurrence"], occ);
    // A new raise after another reopen gets a new occurrence (the counter persisted).
    drop(svc);
    let svc = AlarmService::open(rules(), store.clone()).unwrap();
    svc.commit(&[batch(T0 + 3000, 900.0)], &[], &stamp(T0 + 3000))
        .unwrap();
    let a = alarms_pending(&store);
    assert_eq!(a[2]["occurrence"], occ + 1);
    // Acknowledge is persisted with its transition.
    assert_eq!(svc.acknowledge(occ + 1, "alice").unwrap(), 1);
    assert!(svc.acknowledge(occ + 1, "alice").is_err());
    let svc = AlarmService::open(rules(), store.clone()).unwrap();
    assert!(svc.active()[0].acked, "ack survives a reopen");
    assert_eq!(alarms_pending(&store)[3]["state"], "acked");
}

#[test]
fn alarm_entries_survive_the_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_bytes: 256 * 1024,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(dir.path(), &cfg).unwrap();
    let store = Arc::new(store);
    let svc = AlarmService::open(rules(), store.clone()).unwrap();
    svc.commit(&[batch(T0, 900.0)], &[], &stamp(T0)).unwrap();
    let mut t = T0;
    let mut evicted = 0;
    for round in 0..60 {
        let group: Vec<_> = (0..50)
            .map(|i| {
                t += 10;
                let mut b = batch(t, 900.0);
                for k in 0..20 {
                    b.samples.push(Sample {
                        point: format!("x{k}").into(),
                        value: Some(Value::Float((round * 1000 + i * 20 + k) as f64 * 0.37)),
                        unit: None,
                        quality: Quality::Good,
                        read_at: b.slot,
                    });
                }
                b
            })
            .collect();
        svc.commit(&group, &[], &stamp(t)).unwrap();
        let ev = store
            .enforce_limits(UNIX_EPOCH + Duration::from_millis(t as u64))
            .unwrap();
        evicted += ev.dropped_unsent;
    }
    assert!(evicted > 0, "the cap must have evicted unsent data");
    let a = alarms_pending(&store);
    assert_eq!(a.len(), 1, "the alarm is never evicted");
    assert_eq!(a[0]["state"], "raised");
    assert_eq!(count(dir.path(), "SELECT COUNT(*) FROM alarm_state"), 1);
}
