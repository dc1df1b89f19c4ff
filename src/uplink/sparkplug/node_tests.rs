//! The edge node session: the will and bdSeq of a connect, births in order with seq from 0,
//! DDATA by exception, DDEATH and the DBIRTH of a device that returns, Rebirth and DCMD
//! through `command`, historical backlog, and DDATA split at `max_payload`.

use prost::Message;

use super::proto::{metric, Payload};
use super::tests::model;
use super::*;
use crate::model::Value;

fn session(max: usize) -> (EdgeSession, Publish) {
    EdgeSession::connect(
        EdgeNode::new("gas", "gw-1").unwrap(),
        model(),
        Some(41),
        NodeState {
            transport: "tcp".into(),
            reconnects: 0,
            buffer_depth: 0,
            modem: None,
        },
        max,
        1000,
    )
    .unwrap()
}

fn dec(p: &Publish) -> Payload {
    Payload::decode(&p.payload[..]).unwrap()
}

fn upd(name: &str, at: u64, v: Value) -> MetricUpdate {
    MetricUpdate {
        name: name.into(),
        at_ms: at,
        update: Update::Point {
            value: Some(v),
            good: true,
        },
    }
}

#[test]
fn connect_births_and_data_in_order() {
    let (mut s, will) = session(1024);
    assert_eq!(s.bd_seq(), 42);
    assert_eq!(will.topic, "spBv1.0/gas/NDEATH/gw-1");
    assert_eq!(
        dec(&will).metrics[0].value,
        Some(metric::Value::LongValue(42))
    );
    assert_eq!(
        s.subscriptions(),
        [
            "spBv1.0/gas/NCMD/gw-1".to_string(),
            "spBv1.0/gas/DCMD/gw-1/+".to_string()
        ]
    );
    let births = s.births(2000).unwrap();
    let topics: Vec<&str> = births.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "spBv1.0/gas/NBIRTH/gw-1",
            "spBv1.0/gas/DBIRTH/gw-1/fc1",
            "spBv1.0/gas/DBIRTH/gw-1/fc2"
        ]
    );
    let seqs: Vec<Option<u64>> = births.iter().map(|p| dec(p).seq).collect();
    assert_eq!(seqs, [Some(0), Some(1), Some(2)]);
    assert_eq!(
        dec(&births[0]).metrics[0].value,
        Some(metric::Value::LongValue(42))
    );

    // Live readings: the first DDATA has both, the second only what changed.
    let d = s
        .readings(
            "fc1",
            vec![
                upd("count", 3000, Value::Int(1)),
                upd("setpoint", 3000, Value::UInt(5)),
            ],
            false,
            3100,
        )
        .unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].topic, "spBv1.0/gas/DDATA/gw-1/fc1");
    assert_eq!((dec(&d[0]).seq, dec(&d[0]).metrics.len()), (Some(3), 2));
    let d = s
        .readings(
            "fc1",
            vec![
                upd("count", 4000, Value::Int(1)),
                upd("setpoint", 4000, Value::UInt(6)),
            ],
            false,
            4100,
        )
        .unwrap();
    let p = dec(&d[0]);
    assert_eq!((p.seq, p.metrics.len()), (Some(4), 1));
    assert_eq!(p.metrics[0].value, Some(metric::Value::IntValue(6)));
    // Nothing changed: nothing to publish.
    assert!(s
        .readings("fc1", vec![upd("count", 5000, Value::Int(1))], false, 5100)
        .unwrap()
        .is_empty());
    // Unknown device or metric: a named error, not a panic.
    assert!(matches!(
        s.readings("fc9", vec![], false, 1),
        Err(SessionError::UnknownDevice(_))
    ));
    assert!(matches!(
        s.readings("fc1", vec![upd("nope", 1, Value::Int(1))], false, 1),
        Err(SessionError::Encode(EncodeError::UnknownMetric { .. }))
    ));
}

#[test]
fn a_dead_device_dies_once_and_is_born_again_with_its_values() {
    let (mut s, _) = session(1024);
    s.births(1).unwrap();
    s.readings("fc2", vec![upd("pressure", 2, Value::Float(1.5))], false, 3)
        .unwrap();
    let dd = s.device_offline("fc2", 10).unwrap().unwrap();
    assert_eq!(dd.topic, "spBv1.0/gas/DDEATH/gw-1/fc2");
    assert_eq!(s.device_offline("fc2", 11).unwrap(), None, "one DDEATH");
    // A rebirth while it is offline leaves it out.
    let births = s.births(12).unwrap();
    assert_eq!(births.len(), 2, "NBIRTH + fc1 only");
    // It reads again: DBIRTH (not DDATA) with the new value.
    let back = s
        .readings(
            "fc2",
            vec![upd("pressure", 20, Value::Float(2.5))],
            false,
            21,
        )
        .unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].topic, "spBv1.0/gas/DBIRTH/gw-1/fc2");
    let b = dec(&back[0]);
    assert_eq!(b.metrics[0].name.as_deref(), Some("pressure"));
    assert_eq!(b.metrics[0].value, Some(metric::Value::DoubleValue(2.5)));
    // Then by exception again.
    assert!(s
        .readings(
            "fc2",
            vec![upd("pressure", 30, Value::Float(2.5))],
            false,
            31
        )
        .unwrap()
        .is_empty());
}

#[test]
fn commands_rebirth_and_write() {
    let (mut s, _) = session(1024);
    s.births(1).unwrap();
    for _ in 0..5 {
        s.readings("fc1", vec![upd("count", 2, Value::Int(7))], false, 3)
            .unwrap();
    }
    let rebirth = Payload {
        timestamp: Some(1),
        metrics: vec![proto::Metric {
            name: Some("Node Control/Rebirth".into()),
            value: Some(metric::Value::BooleanValue(true)),
            ..proto::Metric::default()
        }],
        ..Payload::default()
    }
    .encode_to_vec();
    match s.command("spBv1.0/gas/NCMD/gw-1", &rebirth, 50).unwrap() {
        CommandOutcome::Rebirth(b) => {
            assert_eq!(b.len(), 3);
            assert_eq!(dec(&b[0]).seq, Some(0), "NBIRTH restarts seq");
            let fc1 = dec(&b[1]);
            let count = fc1
                .metrics
                .iter()
                .find(|m| m.name.as_deref() == Some("count"))
                .unwrap();
            assert_eq!(
                count.value,
                Some(metric::Value::IntValue(7)),
                "births carry the last values"
            );
        }
        o => panic!("{o:?}"),
    }
    let write = Payload {
        timestamp: Some(1),
        metrics: vec![proto::Metric {
            name: Some("setpoint".into()),
            value: Some(metric::Value::IntValue(9)),
            ..proto::Metric::default()
        }],
        ..Payload::default()
    }
    .encode_to_vec();
    assert_eq!(
        s.command("spBv1.0/gas/DCMD/gw-1/fc1", &write, 60).unwrap(),
        CommandOutcome::Writes(vec![WriteRequest {
            device: "fc1".into(),
            point: "setpoint".into(),
            value: Value::UInt(9)
        }])
    );
    assert_eq!(
        s.command("spBv1.0/gas/NCMD/gw-2", &rebirth, 1).unwrap(),
        CommandOutcome::Ignored
    );
    assert!(matches!(
        s.command("spBv1.0/gas/DCMD/gw-1/fc1", b"\xff", 1),
        Err(CommandFailure::Command(_))
    ));
    assert!(matches!(
        s.command("spBv1.0/gas/DCMD/gw-1", &write, 1),
        Err(CommandFailure::Topic(_))
    ));
}

#[test]
fn backlog_is_historical_complete_and_leaves_the_live_state() {
    let (mut s, _) = session(1024);
    // Before the births a host could not resolve the aliases: refused.
    assert_eq!(
        s.readings("fc1", vec![upd("count", 10, Value::Int(5))], true, 1),
        Err(SessionError::NotBorn("fc1".into()))
    );
    s.births(1).unwrap();
    s.readings("fc1", vec![upd("count", 100, Value::Int(5))], false, 101)
        .unwrap();
    let h = s
        .readings(
            "fc1",
            vec![
                upd("count", 10, Value::Int(5)),
                upd("count", 20, Value::Int(5)),
            ],
            true,
            102,
        )
        .unwrap();
    let p = dec(&h[0]);
    assert_eq!(
        p.metrics.len(),
        2,
        "history is sent whole, repeats included"
    );
    assert!(p.metrics.iter().all(|m| m.is_historical == Some(true)));
    assert_eq!(
        p.metrics.iter().map(|m| m.timestamp).collect::<Vec<_>>(),
        [Some(10), Some(20)]
    );
    // The live state is untouched: the same live value is still not news.
    assert!(s
        .readings("fc1", vec![upd("count", 200, Value::Int(5))], false, 201)
        .unwrap()
        .is_empty());
}

#[test]
fn ddata_is_split_at_max_payload_and_seq_wraps() {
    let (mut s, _) = session(100);
    let b = s.births(1);
    assert!(
        matches!(b, Err(SessionError::TooLarge { .. })),
        "a DBIRTH cannot be split: {b:?}"
    );
    let (mut s, _) = session(1024);
    s.births(1).unwrap();
    s.max_payload_for_tests(60);
    let text = |n: usize| Value::Text("x".repeat(n));
    let ups = vec![
        upd("count", 2, Value::Int(-3)),
        upd("setpoint", 2, Value::UInt(4)),
        upd("volume", 2, Value::UInt(5)),
        upd("pressure", 2, Value::Float(1.25)),
        upd("serial", 2, text(8)),
    ];
    let out = s.readings("fc1", ups, false, 3).unwrap();
    assert!(out.len() >= 2, "{}", out.len());
    let mut n = 0;
    let mut seqs = Vec::new();
    for p in &out {
        assert!(p.payload.len() <= 60, "{}", p.payload.len());
        let d = dec(p);
        n += d.metrics.len();
        seqs.push(d.seq.unwrap());
    }
    assert_eq!(n, 5, "every metric in exactly one message");
    assert!(
        seqs.windows(2).all(|w| w[1] == (w[0] + 1) % 256),
        "{seqs:?}"
    );
    // One metric alone over the limit: refused by name.
    let e = s
        .readings("fc1", vec![upd("serial", 4, text(100))], false, 5)
        .unwrap_err();
    assert!(
        matches!(&e, SessionError::TooLarge { what, .. } if what.contains("serial")),
        "{e}"
    );
    // seq wraps after 255 over many messages.
    s.max_payload_for_tests(1024);
    let mut last = 0;
    for k in 0..300u64 {
        let p = s
            .readings(
                "fc1",
                vec![upd("count", k, Value::Int((k % 2) as i64 + 10))],
                false,
                k,
            )
            .unwrap();
        let q = dec(&p[0]).seq.unwrap();
        if k > 0 {
            assert_eq!(q, (last + 1) % 256);
        }
        last = q;
    }
}
