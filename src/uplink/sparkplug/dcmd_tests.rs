//! DCMD -> remote write commands: a table of DCMDs (by name, by alias, unknown metric, alias of
//! another device, wrong datatype, not writable, not in `[remote.writes]`, out of its range,
//! signatures, clock and timestamp, all or nothing) with the stable error code each gets, and
//! the command id's stability and validity.

use prost::Message;

use super::dcmd::{dcmd_commands, dcmd_id, DCMD_MAX_AGE_MS};
use super::proto::{metric, Metric, Payload};
use super::tests::model;
use super::SpType;
use crate::config::{RemoteConfig, RemoteWrite};
use crate::remote::request::{valid_command_id, Command, Op, WriteValue};

/// A trusted gateway time.
const NOW: i64 = crate::time::MIN_TRUSTED_UNIX_MS + 86_400_000;

fn remote() -> RemoteConfig {
    RemoteConfig {
        allow_unsigned: true,
        writes: vec![RemoteWrite {
            device: "fc1".into(),
            point: "setpoint".into(),
            min: Some(0.0),
            max: Some(100.0),
        }],
        ..RemoteConfig::default()
    }
}

fn dcmd(ts: Option<i64>, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: ts.map(|t| t as u64),
        metrics,
        ..Payload::default()
    }
    .encode_to_vec()
}

fn named(name: &str, dt: SpType, v: metric::Value) -> Metric {
    Metric {
        name: Some(name.into()),
        datatype: Some(dt.code()),
        value: Some(v),
        ..Metric::default()
    }
}

fn setpoint(v: u32) -> Metric {
    named("setpoint", SpType::UInt16, metric::Value::IntValue(v))
}

fn write(point: &str, value: WriteValue) -> Op {
    Op::Write {
        device: "fc1".into(),
        point: point.into(),
        value,
    }
}

#[test]
fn dcmds_map_onto_remote_writes_or_one_refusal() {
    let m = model();
    let fc1 = m.device("fc1").unwrap();
    let sp_alias = fc1.by_name("setpoint").unwrap().alias;
    let valve_alias = fc1.by_name("valve").unwrap().alias;
    let keyed = RemoteConfig {
        keys: vec![[7; 32]],
        ..remote()
    };
    let signed_only = RemoteConfig {
        allow_unsigned: false,
        ..remote()
    };
    let with_valve = RemoteConfig {
        writes: vec![
            remote().writes[0].clone(),
            RemoteWrite {
                device: "fc1".into(),
                point: "valve".into(),
                min: None,
                max: None,
            },
        ],
        ..remote()
    };
    let base = remote();
    let ts = Some(NOW - 1_000);
    // (what, remote, device, bytes, now, Ok(ops) | Err(code))
    type Case<'a> = (
        &'a str,
        Option<&'a RemoteConfig>,
        &'a str,
        Vec<u8>,
        i64,
        Result<Vec<Op>, &'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "by name",
            Some(&base),
            "fc1",
            dcmd(ts, vec![setpoint(42)]),
            NOW,
            Ok(vec![write("setpoint", WriteValue::Number(42.0))]),
        ),
        (
            "by alias, no datatype",
            Some(&base),
            "fc1",
            dcmd(
                ts,
                vec![Metric {
                    alias: Some(sp_alias),
                    value: Some(metric::Value::IntValue(100)),
                    ..Metric::default()
                }],
            ),
            NOW,
            Ok(vec![write("setpoint", WriteValue::Number(100.0))]),
        ),
        (
            "two writes, bit by alias",
            Some(&with_valve),
            "fc1",
            dcmd(
                ts,
                vec![
                    setpoint(0),
                    Metric {
                        alias: Some(valve_alias),
                        value: Some(metric::Value::BooleanValue(true)),
                        ..Metric::default()
                    },
                ],
            ),
            NOW,
            Ok(vec![
                write("setpoint", WriteValue::Number(0.0)),
                write("valve", WriteValue::Bool(true)),
            ]),
        ),
        (
            "unknown metric",
            Some(&base),
            "fc1",
            dcmd(
                ts,
                vec![named("nope", SpType::UInt16, metric::Value::IntValue(1))],
            ),
            NOW,
            Err("not_found"),
        ),
        (
            "alias of another device",
            Some(&base),
            "fc2",
            dcmd(
                ts,
                vec![Metric {
                    alias: Some(sp_alias),
                    value: Some(metric::Value::IntValue(1)),
                    ..Metric::default()
                }],
            ),
            NOW,
            Err("not_found"),
        ),
        (
            "unknown device",
            Some(&base),
            "fc9",
            dcmd(ts, vec![setpoint(1)]),
            NOW,
            Err("not_found"),
        ),
        (
            "wrong datatype",
            Some(&base),
            "fc1",
            dcmd(
                ts,
                vec![named(
                    "setpoint",
                    SpType::Boolean,
                    metric::Value::BooleanValue(true),
                )],
            ),
            NOW,
            Err("out_of_range"),
        ),
        (
            "value wider than the point's type",
            Some(&base),
            "fc1",
            dcmd(ts, vec![setpoint(70_000)]),
            NOW,
            Err("out_of_range"),
        ),
        (
            "point not writable",
            Some(&base),
            "fc1",
            dcmd(
                ts,
                vec![named(
                    "pressure",
                    SpType::Float,
                    metric::Value::FloatValue(1.0),
                )],
            ),
            NOW,
            Err("not_allowed"),
        ),
        (
            "writable but not in [remote.writes]",
            Some(&base),
            "fc1",
            dcmd(
                ts,
                vec![named(
                    "valve",
                    SpType::Boolean,
                    metric::Value::BooleanValue(true),
                )],
            ),
            NOW,
            Err("not_allowed"),
        ),
        (
            "outside [remote.writes] min/max",
            Some(&base),
            "fc1",
            dcmd(ts, vec![setpoint(101)]),
            NOW,
            Err("out_of_range"),
        ),
        (
            "all or nothing",
            Some(&base),
            "fc1",
            dcmd(
                ts,
                vec![
                    setpoint(5),
                    named("valve", SpType::Boolean, metric::Value::BooleanValue(true)),
                ],
            ),
            NOW,
            Err("not_allowed"),
        ),
        (
            "no [remote]",
            None,
            "fc1",
            dcmd(ts, vec![setpoint(1)]),
            NOW,
            Err("not_allowed"),
        ),
        (
            "keys configured: DCMD cannot be signed",
            Some(&keyed),
            "fc1",
            dcmd(ts, vec![setpoint(1)]),
            NOW,
            Err("unsigned"),
        ),
        (
            "allow_unsigned off",
            Some(&signed_only),
            "fc1",
            dcmd(ts, vec![setpoint(1)]),
            NOW,
            Err("unsigned"),
        ),
        (
            "no timestamp",
            Some(&base),
            "fc1",
            dcmd(None, vec![setpoint(1)]),
            NOW,
            Err("bad_request"),
        ),
        (
            "stale",
            Some(&base),
            "fc1",
            dcmd(Some(NOW - DCMD_MAX_AGE_MS - 1), vec![setpoint(1)]),
            NOW,
            Err("expired"),
        ),
        (
            "ahead of the clock",
            Some(&base),
            "fc1",
            dcmd(Some(NOW + 3_600_000), vec![setpoint(1)]),
            NOW,
            Err("bad_request"),
        ),
        (
            "clock not set",
            Some(&base),
            "fc1",
            dcmd(Some(1_000), vec![setpoint(1)]),
            5_000,
            Err("clock_untrusted"),
        ),
        (
            "not protobuf",
            Some(&base),
            "fc1",
            vec![0xff, 0xff, 0xff],
            NOW,
            Err("bad_request"),
        ),
        (
            "too large",
            Some(&base),
            "fc1",
            vec![0; 5000],
            NOW,
            Err("too_large"),
        ),
    ];
    for (what, cfg, device, bytes, now, want) in cases {
        let id = dcmd_id(device, &bytes);
        let got = dcmd_commands(&m, cfg, device, &bytes, now);
        match (got, want) {
            (Ok(cmds), Ok(ops)) => {
                let want: Vec<Command> = ops
                    .into_iter()
                    .enumerate()
                    .map(|(i, op)| Command {
                        id: format!("{id}:{i}"),
                        expires_ms: NOW - 1_000 + DCMD_MAX_AGE_MS,
                        op,
                    })
                    .collect();
                assert_eq!(cmds, want, "{what}");
            }
            (Err(r), Err(code)) => {
                assert_eq!(r.error.code(), code, "{what}: {}", r.error);
                assert_eq!(r.id.as_deref(), Some(id.as_str()), "{what}");
            }
            (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn the_id_is_stable_per_device_and_bytes_and_valid() {
    let a = dcmd(Some(NOW), vec![setpoint(1)]);
    let b = dcmd(Some(NOW + 1), vec![setpoint(1)]);
    assert_eq!(dcmd_id("fc1", &a), dcmd_id("fc1", &a.clone()));
    assert_ne!(dcmd_id("fc1", &a), dcmd_id("fc1", &b));
    assert_ne!(dcmd_id("fc1", &a), dcmd_id("fc2", &a));
    // The device/bytes boundary is part of the hash.
    assert_ne!(dcmd_id("fc1", b"x"), dcmd_id("fc1x", b""));
    let cmds = dcmd_commands(&model(), Some(&remote()), "fc1", &a, NOW).unwrap();
    assert!(valid_command_id(&cmds[0].id), "{}", cmds[0].id);
    assert_eq!(cmds[0].id, format!("{}:0", dcmd_id("fc1", &a)));
    // A redelivery is the same command (the store answers it, never runs it twice).
    let again = dcmd_commands(&model(), Some(&remote()), "fc1", &a, NOW + 10).unwrap();
    assert_eq!(again[0].id, cmds[0].id);
    // The longest id fits the command id bound.
    assert!(format!("{}:15", dcmd_id("d", b"")).len() <= 64);
}
