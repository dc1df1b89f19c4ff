//! NCMD/DCMD decoding: good commands by name and alias, every refusal by case, hostile
//! nesting, and proptest over random and mutated bytes (fixed seed, bounded cases).

use proptest::prelude::*;
use prost::Message;

use super::proto::{metric, Metric, Payload};
use super::tests::model;
use super::*;
use crate::model::Value;

/// Recognises the expected refusal.
type Check = fn(&CommandError) -> bool;

fn cmd(metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(1),
        metrics,
        ..Payload::default()
    }
    .encode_to_vec()
}

fn named(name: &str, dt: Option<SpType>, v: Option<metric::Value>) -> Metric {
    Metric {
        name: Some(name.into()),
        datatype: dt.map(SpType::code),
        value: v,
        ..Metric::default()
    }
}

#[test]
fn ncmd_rebirth_by_name_or_alias_and_refusals() {
    let m = model();
    let alias = m.node_metric("Node Control/Rebirth").unwrap().alias;
    let yes = Some(metric::Value::BooleanValue(true));
    let ok = [
        cmd(vec![named(
            "Node Control/Rebirth",
            Some(SpType::Boolean),
            yes.clone(),
        )]),
        cmd(vec![Metric {
            alias: Some(alias),
            value: yes.clone(),
            ..Metric::default()
        }]),
    ];
    for b in ok {
        assert_eq!(decode_ncmd(&m, &b), Ok(vec![NodeCommand::Rebirth]));
    }
    let bad: Vec<(Vec<u8>, Check)> = vec![
        (
            cmd(vec![named(
                "Node Control/Rebirth",
                None,
                Some(metric::Value::BooleanValue(false)),
            )]),
            |e| *e == CommandError::RebirthFalse,
        ),
        (cmd(vec![named("Node Control/Rebirth", None, None)]), |e| {
            matches!(e, CommandError::NoValue(_))
        }),
        (
            cmd(vec![named(
                "Node Control/Rebirth",
                Some(SpType::Int32),
                yes.clone(),
            )]),
            |e| matches!(e, CommandError::DataType { .. }),
        ),
        (
            cmd(vec![named(
                "Node Control/Rebirth",
                None,
                Some(metric::Value::IntValue(1)),
            )]),
            |e| matches!(e, CommandError::Value { .. }),
        ),
        (
            cmd(vec![named("Node Control/Reboot", None, yes.clone())]),
            |e| matches!(e, CommandError::UnknownMetric(_)),
        ),
        (cmd(vec![named("Buffer/Depth", None, yes.clone())]), |e| {
            matches!(e, CommandError::NotWritable(_))
        }),
        (
            cmd(vec![Metric {
                name: Some("Node Control/Rebirth".into()),
                alias: Some(alias + 1),
                value: yes.clone(),
                ..Metric::default()
            }]),
            |e| matches!(e, CommandError::NameAliasMismatch { .. }),
        ),
        (
            cmd(vec![Metric {
                value: yes.clone(),
                ..Metric::default()
            }]),
            |e| *e == CommandError::Unnamed,
        ),
        (cmd(vec![]), |e| *e == CommandError::NoMetrics),
        (
            cmd(vec![named("Node Control/Rebirth", None, yes.clone()); 2]),
            |e| matches!(e, CommandError::Repeated(_)),
        ),
        (cmd(vec![named("x", None, None); 17]), |e| {
            *e == CommandError::TooManyMetrics(17)
        }),
        (vec![0u8; 5000], |e| *e == CommandError::TooLarge(5000)),
        (vec![0x12, 0xff, 0xff, 0xff, 0xff, 0x0f], |e| {
            matches!(e, CommandError::Protobuf(_))
        }),
        (vec![0x0a], |e| matches!(e, CommandError::Protobuf(_))),
    ];
    for (i, (b, is)) in bad.iter().enumerate() {
        match decode_ncmd(&m, b) {
            Err(e) => assert!(is(&e), "case {i}: {e:?}"),
            Ok(c) => panic!("case {i}: accepted {c:?}"),
        }
    }
}

#[test]
fn dcmd_writes_writable_points_only() {
    let m = model();
    let fc1 = m.device("fc1").unwrap();
    let sp_alias = fc1.by_name("setpoint").unwrap().alias;
    let b = cmd(vec![
        Metric {
            alias: Some(sp_alias),
            value: Some(metric::Value::IntValue(450)),
            ..Metric::default()
        },
        named(
            "valve",
            Some(SpType::Boolean),
            Some(metric::Value::BooleanValue(true)),
        ),
    ]);
    assert_eq!(
        decode_dcmd(&m, "fc1", &b),
        Ok(vec![
            WriteRequest {
                device: "fc1".into(),
                point: "setpoint".into(),
                value: Value::UInt(450)
            },
            WriteRequest {
                device: "fc1".into(),
                point: "valve".into(),
                value: Value::Bool(true)
            },
        ])
    );
    let one = |name: &str, v: metric::Value| cmd(vec![named(name, None, Some(v))]);
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        (
            "fc1",
            one("pressure", metric::Value::FloatValue(1.0)),
            |e| matches!(e, CommandError::NotWritable(_)),
        ),
        (
            "fc1",
            one("Alarms/p_high", metric::Value::BooleanValue(false)),
            |e| matches!(e, CommandError::NotWritable(_)),
        ),
        ("fc1", one("total", metric::Value::DoubleValue(1.0)), |e| {
            matches!(e, CommandError::NotWritable(_))
        }),
        ("fc1", one("local", metric::Value::IntValue(1)), |e| {
            matches!(e, CommandError::UnknownMetric(_))
        }),
        (
            "fc1",
            one("setpoint", metric::Value::IntValue(70_000)),
            |e| matches!(e, CommandError::Value { .. }),
        ),
        (
            "fc1",
            one("setpoint", metric::Value::StringValue("1".into())),
            |e| matches!(e, CommandError::Value { .. }),
        ),
        (
            "fc1",
            cmd(vec![Metric {
                alias: Some(1),
                value: Some(metric::Value::IntValue(1)),
                ..Metric::default()
            }]),
            |e| matches!(e, CommandError::UnknownMetric(_)),
        ),
        ("fc9", one("setpoint", metric::Value::IntValue(1)), |e| {
            matches!(e, CommandError::UnknownDevice(_))
        }),
        (
            "fc1",
            cmd(vec![Metric {
                name: Some("setpoint".into()),
                is_null: Some(true),
                value: Some(metric::Value::IntValue(1)),
                ..Metric::default()
            }]),
            |e| matches!(e, CommandError::NoValue(_)),
        ),
    ];
    for (i, (dev, b, is)) in cases.iter().enumerate() {
        match decode_dcmd(&m, dev, b) {
            Err(e) => assert!(is(&e), "case {i}: {e:?}"),
            Ok(w) => panic!("case {i}: accepted {w:?}"),
        }
    }
    // Long hostile names are cut and escaped in the error.
    let long = format!("\u{1b}[2J{}", "x".repeat(500));
    let e = decode_dcmd(&m, "fc1", &one(&long, metric::Value::IntValue(1)))
        .unwrap_err()
        .to_string();
    assert!(e.len() < 120 && !e.contains('\u{1b}'), "{e}");
}

#[test]
fn deeply_nested_bytes_are_refused_not_overflowed() {
    // Metric -> template_value -> metrics -> template_value ... beyond prost's nesting limit.
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..300 {
        let mut tmpl = vec![0x12];
        push_len(&mut tmpl, inner.len());
        tmpl.extend(&inner);
        let mut m = vec![0x92, 0x01];
        push_len(&mut m, tmpl.len());
        m.extend(tmpl);
        inner = m;
        if inner.len() > 3000 {
            break;
        }
    }
    let mut p = vec![0x12];
    push_len(&mut p, inner.len());
    p.extend(inner);
    assert!(p.len() <= 4096, "{}", p.len());
    assert!(matches!(
        decode_ncmd(&model(), &p),
        Err(CommandError::Protobuf(_))
    ));
}

fn push_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(14), ..ProptestConfig::default() })]

    #[test]
    fn hostile_command_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let m = model();
        let _ = decode_ncmd(&m, &bytes);
        let _ = decode_dcmd(&m, "fc1", &bytes);
    }

    #[test]
    fn mutated_commands_never_panic(flip in 0usize..64, to in any::<u8>()) {
        let m = model();
        let mut b = cmd(vec![named("setpoint", Some(SpType::UInt16), Some(metric::Value::IntValue(450)))]);
        let i = flip % b.len();
        b[i] = to;
        let _ = decode_dcmd(&m, "fc1", &b);
    }
}
