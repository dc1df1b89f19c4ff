//! Table tests of `translate`: outbox entries (data batches, alarm transitions) become this
//! session's publishes with the right topics, seq, aliases and `is_historical` flag; samples
//! without a metric are left out; a live offline batch is one DDEATH; a live batch older than
//! the known state goes as history; backlog of a device dead in this session is parked; the
//! next session of the process births with the last values (`Carry`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;

use super::proto::{metric, Payload};
use super::tests::model;
use super::*;
use crate::model::{Quality, Sample, SampleBatch, Value};
use crate::outbox::{Entry, EntryBody, EntryKind};

/// A session of node `gas/gw-1` on the test model, connected at `now_ms` with the previous
/// bdSeq `prev` and `reconnects` so far; births not yet taken.
fn connect_at(prev: Option<u8>, reconnects: u64, now_ms: u64) -> EdgeSession {
    let (s, _) = EdgeSession::connect(
        EdgeNode::new("gas", "gw-1").unwrap(),
        model(),
        prev,
        NodeState {
            transport: "tcp".into(),
            reconnects,
            buffer_depth: 0,
            modem: None,
        },
        1024,
        now_ms,
    )
    .unwrap();
    s
}

fn session() -> EdgeSession {
    let mut s = connect_at(None, 0, 1000);
    let births = s.births(1000).unwrap();
    assert_eq!(births.len(), 3, "NBIRTH and two DBIRTHs");
    s
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn sample(point: &str, v: Option<Value>, ms: u64) -> Sample {
    Sample {
        point: point.into(),
        quality: if v.is_some() {
            Quality::Good
        } else {
            Quality::Bad(crate::model::BadReason::Timeout)
        },
        value: v,
        unit: None,
        read_at: at(ms),
    }
}

fn data(id: i64, device: &str, online: bool, historical: bool, samples: Vec<Sample>) -> Entry {
    Entry {
        id,
        kind: EntryKind::Data,
        historical,
        created_ms: 0,
        body: EntryBody::Batch(SampleBatch {
            device: Arc::from(device),
            bus: Arc::from("b"),
            slot: at(0),
            samples,
            online,
            failed_cycles: u32::from(!online) * 3,
        }),
    }
}

fn dec(p: &Publish) -> Payload {
    Payload::decode(&p.payload[..]).unwrap()
}

fn alias(device: &str, name: &str) -> u64 {
    model().device(device).unwrap().by_name(name).unwrap().alias
}

#[test]
fn live_data_goes_by_alias_with_read_times_and_the_next_seq() {
    let mut s = session();
    let e = data(
        1,
        "fc1",
        true,
        false,
        vec![
            sample("pressure", Some(Value::Float(4.5)), 5_000),
            // publish = false and a report aggregate: no metric, left out.
            sample("local", Some(Value::Int(7)), 5_000),
            sample("pressure.max", Some(Value::Float(4.9)), 5_000),
        ],
    );
    let t = translate(&mut s, &[e], false, 9_000);
    assert!(t.skipped.is_empty() && !t.parked, "{t:?}");
    assert_eq!(t.publishes.len(), 1);
    assert_eq!(t.publishes[0].topic, "spBv1.0/gas/DDATA/gw-1/fc1");
    let p = dec(&t.publishes[0]);
    assert_eq!(p.seq, Some(3), "after NBIRTH 0 and DBIRTHs 1, 2");
    assert_eq!(p.metrics.len(), 1);
    let m = &p.metrics[0];
    assert_eq!(m.alias, Some(alias("fc1", "pressure")));
    assert_eq!(m.name, None, "DDATA is by alias only");
    assert_eq!(m.timestamp, Some(5_000), "the device's read time");
    assert_eq!(m.is_historical, None);
    assert_eq!(m.value, Some(metric::Value::FloatValue(4.5)));

    // Same value again: report by exception sends nothing (the caller acks at once).
    let again = data(
        2,
        "fc1",
        true,
        false,
        vec![sample("pressure", Some(Value::Float(4.5)), 6_000)],
    );
    let t = translate(&mut s, &[again], false, 9_000);
    assert_eq!(t, Translated::default());
}

#[test]
fn backlog_and_resent_messages_are_historical_and_whole() {
    for (entry_hist, msg_hist) in [(true, false), (false, true)] {
        let mut s = session();
        let live = data(
            1,
            "fc1",
            true,
            false,
            vec![sample("pressure", Some(Value::Float(4.5)), 9_000)],
        );
        assert_eq!(translate(&mut s, &[live], false, 9_500).publishes.len(), 1);
        // The same value as the live state, but backlog: sent anyway, flagged.
        let old = data(
            2,
            "fc1",
            true,
            entry_hist,
            vec![sample("pressure", Some(Value::Float(4.5)), 2_000)],
        );
        let t = translate(&mut s, &[old], msg_hist, 9_600);
        assert_eq!(t.publishes.len(), 1, "{entry_hist} {msg_hist}");
        let p = dec(&t.publishes[0]);
        assert_eq!(p.seq, Some(4));
        assert_eq!(p.metrics[0].is_historical, Some(true));
        assert_eq!(p.metrics[0].timestamp, Some(2_000));
    }
}

#[test]
fn a_live_batch_older_than_the_known_state_goes_as_history() {
    let mut s = session();
    // Newest first, as the outbox hands live data over.
    let newer = data(
        2,
        "fc1",
        true,
        false,
        vec![sample("pressure", Some(Value::Float(5.0)), 8_000)],
    );
    let older = data(
        1,
        "fc1",
        true,
        false,
        vec![sample("pressure", Some(Value::Float(4.0)), 7_000)],
    );
    let t = translate(&mut s, &[newer, older], false, 9_000);
    assert_eq!(t.publishes.len(), 2);
    let second = dec(&t.publishes[1]);
    assert_eq!(second.metrics[0].is_historical, Some(true));
    assert_eq!(
        s.last_read_ms("fc1"),
        Some(8_000),
        "the current value stays"
    );
    // A later live read is by exception against 5.0, not 4.0.
    let same = data(
        3,
        "fc1",
        true,
        false,
        vec![sample("pressure", Some(Value::Float(5.0)), 9_000)],
    );
    assert!(translate(&mut s, &[same], false, 9_500)
        .publishes
        .is_empty());
}

#[test]
fn offline_is_one_ddeath_then_backlog_parks_and_a_good_read_is_a_dbirth() {
    let mut s = session();
    let dead = || {
        data(
            1,
            "fc2",
            false,
            false,
            vec![sample("pressure", None, 3_000)],
        )
    };
    let t = translate(&mut s, &[dead()], false, 3_500);
    assert_eq!(t.publishes.len(), 1);
    assert_eq!(t.publishes[0].topic, "spBv1.0/gas/DDEATH/gw-1/fc2");
    assert_eq!(dec(&t.publishes[0]).seq, Some(3));
    // Still offline: no second DDEATH; an offline batch in the backlog says nothing.
    assert!(translate(&mut s, &[dead()], false, 4_000)
        .publishes
        .is_empty());
    assert!(translate(&mut s, &[dead()], true, 4_000)
        .publishes
        .is_empty());
    // Backlog of the dead device cannot be resolved by the host: parked, not sent.
    let old = data(
        2,
        "fc2",
        true,
        true,
        vec![sample("pressure", Some(Value::Float(1.0)), 1_000)],
    );
    let t = translate(&mut s, &[old], false, 4_000);
    assert!(t.parked && t.publishes.is_empty(), "{t:?}");
    // Back: its DBIRTH carries the reading.
    let back = data(
        3,
        "fc2",
        true,
        false,
        vec![sample("pressure", Some(Value::Float(2.0)), 5_000)],
    );
    let t = translate(&mut s, &[back], false, 5_500);
    assert_eq!(t.publishes.len(), 1);
    assert_eq!(t.publishes[0].topic, "spBv1.0/gas/DBIRTH/gw-1/fc2");
    let p = dec(&t.publishes[0]);
    assert_eq!(p.seq, Some(4));
    let m = p
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("pressure"));
    assert_eq!(
        m.and_then(|m| m.value.clone()),
        Some(metric::Value::DoubleValue(2.0))
    );
}

#[test]
fn alarms_become_their_rule_metric_with_properties() {
    let mut s = session();
    let raised = Entry {
        id: 7,
        kind: EntryKind::Alarm,
        historical: false,
        created_ms: 0,
        body: EntryBody::Json(serde_json::json!({
            "alarm": "p_high", "dev": "fc1", "point": "pressure", "kind": "limit",
            "severity": "major", "state": "raised", "value": 5.5, "limit": 5.0,
            "t": "2026-01-01T00:00:01.000Z", "message": "fc1 pressure 5.5 beyond h limit 5",
        })),
    };
    let t = translate(&mut s, &[raised], false, 9_000);
    assert!(t.skipped.is_empty(), "{t:?}");
    assert_eq!(t.publishes.len(), 1);
    assert_eq!(t.publishes[0].topic, "spBv1.0/gas/DDATA/gw-1/fc1");
    let m = &dec(&t.publishes[0]).metrics[0];
    assert_eq!(m.alias, Some(alias("fc1", "Alarms/p_high")));
    assert_eq!(m.value, Some(metric::Value::BooleanValue(true)));
    assert_eq!(m.timestamp, Some(1_767_225_601_000));
    let props = m.properties.as_ref().unwrap();
    let limit = props.keys.iter().position(|k| k == "limit").unwrap();
    assert_eq!(
        props.values[limit].value,
        Some(super::proto::property_value::Value::DoubleValue(5.0))
    );
    // An event in a data message (never sealed so) and an unknown device: skipped, named.
    let odd = Entry {
        id: 8,
        kind: EntryKind::Event,
        historical: false,
        created_ms: 0,
        body: EntryBody::Json(serde_json::json!({"event": "restart"})),
    };
    let ghost = data(9, "gone", true, false, vec![]);
    let t = translate(&mut s, &[odd, ghost], false, 9_000);
    assert_eq!(t.skipped.len(), 2, "{t:?}");
    assert!(t.skipped[1].contains("entry 9") && t.skipped[1].contains("gone"));
}

#[test]
fn the_next_session_births_with_the_last_values_and_without_dead_devices() {
    let mut s = session();
    let live = data(
        1,
        "fc1",
        true,
        false,
        vec![sample("pressure", Some(Value::Float(4.5)), 5_000)],
    );
    translate(&mut s, &[live], false, 5_500);
    let dead = data(2, "fc2", false, false, vec![]);
    translate(&mut s, &[dead], false, 5_500);
    let mut next = connect_at(Some(0), 1, 6_000);
    next.resume(s.carry());
    let births = next.births(6_000).unwrap();
    let topics: Vec<&str> = births.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(
        topics,
        ["spBv1.0/gas/NBIRTH/gw-1", "spBv1.0/gas/DBIRTH/gw-1/fc1"],
        "fc2 is still offline: no DBIRTH until it reads"
    );
    let p = dec(&births[1]);
    let m = p
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("pressure"))
        .unwrap();
    assert_eq!(m.value, Some(metric::Value::FloatValue(4.5)));
    assert_eq!(m.timestamp, Some(5_000), "with its read time");
    // Without the carry the birth has no value.
    let mut fresh = connect_at(Some(1), 1, 6_000);
    let b = fresh.births(6_000).unwrap();
    let p = dec(&b[1]);
    let m = p
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("pressure"))
        .unwrap();
    assert_eq!(m.value, None);
}
