//! Table tests of the Sparkplug core: datatype mapping, alias stability, births and data
//! decoded back through the schema field by field, the seq/bdSeq counters, report by
//! exception. Commands are in `command_tests`.

use prost::Message;

use super::metrics::{from_proto, point_type, to_proto, ValueError};
use super::proto::{metric, property_value, Metric, Payload, PropertyValue};
use super::*;
use crate::config::Config;
use crate::model::Value;

const CONFIG: &str = r#"
[gateway]
id = "gw-1"
state_dir = "/tmp/x"
profile_dirs = []
[buses.b]
kind = "tcp"
host = "127.0.0.1"
port = 1502
[devices.fc1]
bus = "b"
unit = 1
points.pressure = { table = "input", address = 0, type = "f32", unit = "bar" }
points.temp = { table = "input", address = 2, type = "i16", scale = 0.1, unit = "degC" }
points.count = { table = "input", address = 3, type = "i16" }
points.volume = { table = "input", address = 4, type = "u32", unit = "m3" }
points.setpoint = { table = "holding", address = 0, type = "u16", writable = true }
points.valve = { table = "coil", address = 0, type = "bit", writable = true }
points.local = { table = "input", address = 6, type = "u16", publish = false }
points.serial = { table = "input", address = 8, type = "string", length = 8 }
computed.total = { terms = { volume = 1.0 }, unit = "m3" }
[devices.fc2]
bus = "b"
unit = 2
points.pressure = { table = "input", address = 0, type = "f64" }
[alarms.p_high]
device = "fc1"
point = "pressure"
kind = "limit"
severity = "major"
h = 5.0
hh = 6.0
"#;

fn cfg(text: &str) -> Config {
    match crate::config::parse_str(text, "t.toml", std::path::Path::new("/")) {
        Ok(l) => l.config,
        Err(e) => panic!("{e:?}"),
    }
}

pub(super) fn model() -> NodeModel {
    build(&cfg(CONFIG)).unwrap()
}

fn point(name: &str) -> crate::model::PointSpec {
    let c = cfg(CONFIG);
    c.devices[0]
        .points
        .iter()
        .find(|p| p.name == name)
        .unwrap()
        .clone()
}

#[test]
fn datatypes_follow_the_point_type_and_scaling() {
    let cases = [
        ("pressure", SpType::Float),
        ("temp", SpType::Double), // i16 x 0.1 is a decimal
        ("count", SpType::Int16),
        ("volume", SpType::UInt32),
        ("setpoint", SpType::UInt16),
        ("valve", SpType::Boolean),
        ("serial", SpType::String),
    ];
    for (name, want) in cases {
        assert_eq!(point_type(&point(name)), want, "{name}");
    }
    let mut p = point("count");
    for (dt, want) in [
        (crate::model::DataType::I32, SpType::Int32),
        (crate::model::DataType::I64, SpType::Int64),
        (crate::model::DataType::U64, SpType::UInt64),
        (crate::model::DataType::Bcd16, SpType::UInt16),
        (crate::model::DataType::Bcd32, SpType::UInt32),
        (crate::model::DataType::Bcd48, SpType::UInt64),
        (crate::model::DataType::F64, SpType::Double),
        (crate::model::DataType::IntReal, SpType::Double),
        (crate::model::DataType::BitOfRegister(3), SpType::Boolean),
    ] {
        p.data_type = dt;
        assert_eq!(point_type(&p), want, "{dt}");
    }
    p.data_type = crate::model::DataType::U16;
    p.scale_from = Some("dec".into());
    assert_eq!(point_type(&p), SpType::Double);
    for t in SpType::ALL {
        assert_eq!(SpType::from_code(t.code()), Some(t));
    }
    assert_eq!(SpType::from_code(0), None);
    assert_eq!(SpType::from_code(13), None);
}

#[test]
fn the_model_has_published_points_computed_and_alarms() {
    let m = model();
    let fc1 = m.device("fc1").unwrap();
    let names: Vec<&str> = fc1.metrics.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Alarms/p_high",
            "count",
            "pressure",
            "serial",
            "setpoint",
            "temp",
            "total",
            "valve",
            "volume"
        ]
    );
    let alarm = fc1.by_name("Alarms/p_high").unwrap();
    assert_eq!(alarm.datatype, SpType::Boolean);
    match &alarm.kind {
        MetricKind::Alarm {
            severity, limits, ..
        } => {
            assert_eq!(*severity, "major");
            assert!(limits.contains(&("h", 5.0)) && limits.contains(&("hh", 6.0)));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(
        fc1.by_name("pressure").unwrap().unit.as_deref(),
        Some("bar")
    );
    assert_eq!(fc1.by_name("total").unwrap().kind, MetricKind::Computed);
    assert!(
        fc1.by_name("local").is_none(),
        "publish = false stays local"
    );
    let node: Vec<&str> = m.node.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        node,
        [
            "Buffer/Depth",
            "Link/Reconnects",
            "Link/Transport",
            "Node Control/Rebirth"
        ]
    );
}

#[test]
fn aliases_are_unique_deterministic_and_survive_config_edits() {
    let a = model();
    let b = model();
    assert_eq!(a, b);
    let mut all: Vec<u64> = a.node.iter().map(|d| d.alias).collect();
    for d in &a.devices {
        all.extend(d.metrics.iter().map(|m| m.alias));
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "aliases unique across the node");
    assert!(all.iter().all(|&x| x > 0 && x < 1 << 31));
    // The same point on two devices has two aliases.
    assert_ne!(
        a.device("fc1").unwrap().by_name("pressure").unwrap().alias,
        a.device("fc2").unwrap().by_name("pressure").unwrap().alias
    );
    // Adding a point and removing another keeps every other alias.
    let edited = CONFIG
        .replace(
            "points.count = { table = \"input\", address = 3, type = \"i16\" }\n",
            "points.flow = { table = \"input\", address = 3, type = \"i16\" }\n",
        )
        .replace("[devices.fc2]", "[devices.fc0]\nbus = \"b\"\nunit = 3\npoints.x = { table = \"input\", address = 0, type = \"u16\" }\n[devices.fc2]");
    let c = build(&cfg(&edited)).unwrap();
    for dev in &a.devices {
        for m in &dev.metrics {
            if m.name == "count" {
                continue;
            }
            assert_eq!(
                c.device(&dev.device)
                    .unwrap()
                    .by_name(&m.name)
                    .unwrap()
                    .alias,
                m.alias,
                "{}/{}",
                dev.device,
                m.name
            );
        }
    }
    // Pinned: a changed hash would renumber every deployed gateway's tags.
    assert_eq!(a.node_metric("Node Control/Rebirth").unwrap().alias, {
        let h = "\0Node Control/Rebirth"
            .bytes()
            .fold(0x811c_9dc5u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
        u64::from(h & 0x7fff_ffff)
    });
}

#[test]
fn values_convert_both_ways_per_datatype() {
    // (type, value, wire value, value read back)
    let cases: Vec<(SpType, Value, metric::Value, Value)> = vec![
        (
            SpType::Boolean,
            Value::Bool(true),
            metric::Value::BooleanValue(true),
            Value::Bool(true),
        ),
        (
            SpType::Int8,
            Value::Int(-1),
            metric::Value::IntValue(0xffff_ffff),
            Value::Int(-1),
        ),
        (
            SpType::Int16,
            Value::Int(-87),
            metric::Value::IntValue(0xffff_ffa9),
            Value::Int(-87),
        ),
        (
            SpType::Int16,
            Value::Int(32767),
            metric::Value::IntValue(32767),
            Value::Int(32767),
        ),
        (
            SpType::Int32,
            Value::Int(i32::MIN.into()),
            metric::Value::IntValue(0x8000_0000),
            Value::Int(i32::MIN.into()),
        ),
        (
            SpType::Int64,
            Value::Int(-2),
            metric::Value::LongValue(u64::MAX - 1),
            Value::Int(-2),
        ),
        (
            SpType::UInt8,
            Value::UInt(255),
            metric::Value::IntValue(255),
            Value::UInt(255),
        ),
        (
            SpType::UInt16,
            Value::UInt(65535),
            metric::Value::IntValue(65535),
            Value::UInt(65535),
        ),
        (
            SpType::UInt32,
            Value::UInt(u32::MAX.into()),
            metric::Value::IntValue(u32::MAX),
            Value::UInt(u32::MAX.into()),
        ),
        (
            SpType::UInt64,
            Value::UInt(u64::MAX),
            metric::Value::LongValue(u64::MAX),
            Value::UInt(u64::MAX),
        ),
        (
            SpType::Float,
            Value::Float(f64::from(4.2f32)),
            metric::Value::FloatValue(4.2),
            Value::Float(f64::from(4.2f32)),
        ),
        (
            SpType::Double,
            Value::Float(-899.8),
            metric::Value::DoubleValue(-899.8),
            Value::Float(-899.8),
        ),
        (
            SpType::Double,
            Value::Int(7),
            metric::Value::DoubleValue(7.0),
            Value::Float(7.0),
        ),
        (
            SpType::String,
            Value::Text("AB12".into()),
            metric::Value::StringValue("AB12".into()),
            Value::Text("AB12".into()),
        ),
        (
            SpType::UInt16,
            Value::Float(12.0),
            metric::Value::IntValue(12),
            Value::UInt(12),
        ),
    ];
    for (t, v, wire, back) in cases {
        assert_eq!(to_proto(t, &v).unwrap(), wire, "{t:?} {v:?}");
        assert_eq!(from_proto(t, &wire).unwrap(), back, "{t:?} {wire:?}");
    }
    // The width-masked form of other implementations reads back too.
    assert_eq!(
        from_proto(SpType::Int16, &metric::Value::IntValue(0xffa9)).unwrap(),
        Value::Int(-87)
    );
    // Refusals.
    let bad: Vec<(SpType, Value)> = vec![
        (SpType::Int16, Value::Int(40000)),
        (SpType::UInt16, Value::Int(-1)),
        (SpType::UInt32, Value::Float(1.5)),
        (SpType::Boolean, Value::Int(2)),
        (SpType::String, Value::Int(2)),
        (SpType::Double, Value::Text("x".into())),
        (SpType::UInt64, Value::Int(-1)),
    ];
    for (t, v) in bad {
        assert!(to_proto(t, &v).is_err(), "{t:?} {v:?}");
    }
    assert!(matches!(
        from_proto(SpType::UInt8, &metric::Value::IntValue(256)),
        Err(ValueError::OutOfRange { .. })
    ));
    assert!(matches!(
        from_proto(SpType::Int16, &metric::Value::IntValue(0x0001_0000)),
        Err(ValueError::OutOfRange { .. })
    ));
    assert!(matches!(
        from_proto(SpType::Double, &metric::Value::FloatValue(1.0)),
        Err(ValueError::Type { .. })
    ));
}

#[test]
fn seq_wraps_and_bd_seq_steps() {
    let mut s = Seq::new();
    let got: Vec<u64> = (0..258).map(|_| s.take()).collect();
    assert_eq!(&got[..3], &[0, 1, 2]);
    assert_eq!(&got[254..], &[254, 255, 0, 1]);
    let cases = [(None, 0), (Some(0), 1), (Some(41), 42), (Some(255), 0)];
    for (prev, want) in cases {
        assert_eq!(next_bd_seq(prev), want, "{prev:?}");
    }
    // NBIRTH starts the sequence again.
    let m = model();
    let mut s = Seq::new();
    for _ in 0..7 {
        s.take();
    }
    let p = Payload::decode(&nbirth(&m, 3, &state(), 1, &mut s).unwrap()[..]).unwrap();
    assert_eq!(p.seq, Some(0));
    assert_eq!(s.take(), 1);
}

fn state() -> NodeState {
    NodeState {
        transport: "tcp".into(),
        reconnects: 2,
        buffer_depth: 17,
        modem: None,
    }
}

fn prop_of<'p>(m: &'p Metric, key: &str) -> Option<&'p PropertyValue> {
    let ps = m.properties.as_ref()?;
    let i = ps.keys.iter().position(|k| k == key)?;
    ps.values.get(i)
}

#[test]
fn ndeath_and_nbirth_carry_bd_seq_and_the_node_metrics() {
    let m = model();
    let d = Payload::decode(&ndeath(9, 1_700_000_000_000)[..]).unwrap();
    assert_eq!(d.seq, None, "NDEATH has no seq");
    assert_eq!(d.metrics.len(), 1);
    assert_eq!(d.metrics[0].name.as_deref(), Some("bdSeq"));
    assert_eq!(d.metrics[0].datatype, Some(SpType::Int64.code()));
    assert_eq!(d.metrics[0].value, Some(metric::Value::LongValue(9)));

    let mut s = Seq::new();
    let b =
        Payload::decode(&nbirth(&m, 9, &state(), 1_700_000_000_123, &mut s).unwrap()[..]).unwrap();
    assert_eq!(b.timestamp, Some(1_700_000_000_123));
    let want: [(&str, SpType, metric::Value); 5] = [
        ("bdSeq", SpType::Int64, metric::Value::LongValue(9)),
        ("Buffer/Depth", SpType::UInt64, metric::Value::LongValue(17)),
        (
            "Link/Reconnects",
            SpType::UInt64,
            metric::Value::LongValue(2),
        ),
        (
            "Link/Transport",
            SpType::String,
            metric::Value::StringValue("tcp".into()),
        ),
        (
            "Node Control/Rebirth",
            SpType::Boolean,
            metric::Value::BooleanValue(false),
        ),
    ];
    assert_eq!(b.metrics.len(), want.len());
    for (got, (name, t, v)) in b.metrics.iter().zip(want) {
        assert_eq!(got.name.as_deref(), Some(name));
        assert_eq!(got.datatype, Some(t.code()), "{name}");
        assert_eq!(got.value.as_ref(), Some(&v), "{name}");
        if name != "bdSeq" {
            assert_eq!(got.alias, Some(m.node_metric(name).unwrap().alias));
        }
    }
    // NDATA only for what changed.
    let mut after = state();
    assert_eq!(ndata(&m, &state(), &after, 5, &mut s).unwrap(), None);
    after.buffer_depth = 3;
    let p = Payload::decode(&ndata(&m, &state(), &after, 5, &mut s).unwrap().unwrap()[..]).unwrap();
    assert_eq!(p.seq, Some(1));
    assert_eq!(p.metrics.len(), 1);
    assert_eq!(p.metrics[0].name, None);
    assert_eq!(
        p.metrics[0].alias,
        Some(m.node_metric("Buffer/Depth").unwrap().alias)
    );
    assert_eq!(p.metrics[0].value, Some(metric::Value::LongValue(3)));
}

fn upd(name: &str, at: u64, value: Option<Value>, good: bool) -> MetricUpdate {
    MetricUpdate {
        name: name.into(),
        at_ms: at,
        update: Update::Point { value, good },
    }
}

#[test]
fn dbirth_describes_every_metric_and_ddata_sends_aliases() {
    let m = model();
    let fc1 = m.device("fc1").unwrap();
    let current = vec![
        upd(
            "pressure",
            1000,
            Some(Value::Float(f64::from(4.2f32))),
            true,
        ),
        upd("count", 1000, Some(Value::Int(-5)), true),
        upd("volume", 1000, None, false),
        MetricUpdate {
            name: "Alarms/p_high".into(),
            at_ms: 900,
            update: Update::Alarm {
                active: true,
                limit: Some(5.0),
                message: Some("pressure high".into()),
            },
        },
    ];
    let mut s = Seq::new();
    s.take();
    let b = Payload::decode(&dbirth(fc1, &current, 2000, &mut s).unwrap()[..]).unwrap();
    assert_eq!(b.seq, Some(1));
    assert_eq!(b.metrics.len(), fc1.metrics.len());
    for (got, def) in b.metrics.iter().zip(&fc1.metrics) {
        assert_eq!(got.name.as_deref(), Some(def.name.as_str()));
        assert_eq!(got.alias, Some(def.alias));
        assert_eq!(got.datatype, Some(def.datatype.code()));
    }
    let by = |n: &str| {
        b.metrics
            .iter()
            .find(|x| x.name.as_deref() == Some(n))
            .unwrap()
    };
    let p = by("pressure");
    assert_eq!(p.value, Some(metric::Value::FloatValue(4.2)));
    assert_eq!(p.timestamp, Some(1000));
    assert_eq!(
        prop_of(p, "engUnit").unwrap().value,
        Some(property_value::Value::StringValue("bar".into()))
    );
    assert_eq!(
        prop_of(p, "Quality").unwrap().value,
        Some(property_value::Value::IntValue(192))
    );
    assert_eq!(
        by("count").value,
        Some(metric::Value::IntValue((-5i32) as u32))
    );
    let v = by("volume");
    assert_eq!((v.is_null, &v.value), (Some(true), &None));
    assert_eq!(
        prop_of(v, "Quality").unwrap().value,
        Some(property_value::Value::IntValue(0))
    );
    let unread = by("setpoint");
    assert_eq!((unread.is_null, unread.timestamp), (Some(true), None));
    let a = by("Alarms/p_high");
    assert_eq!(a.value, Some(metric::Value::BooleanValue(true)));
    for (k, want) in [
        ("active", Some(property_value::Value::BooleanValue(true))),
        (
            "severity",
            Some(property_value::Value::StringValue("major".into())),
        ),
        ("limit", Some(property_value::Value::DoubleValue(5.0))),
        (
            "message",
            Some(property_value::Value::StringValue("pressure high".into())),
        ),
    ] {
        assert_eq!(prop_of(a, k).unwrap().value, want, "{k}");
    }

    // Report by exception after the birth: unchanged values are dropped.
    let mut ex = Exceptions::new();
    ex.born("fc1", &current);
    let next = vec![
        upd(
            "pressure",
            3000,
            Some(Value::Float(f64::from(4.2f32))),
            true,
        ),
        upd("count", 3000, Some(Value::Int(-6)), true),
        upd("volume", 3000, Some(Value::UInt(123_456)), true),
    ];
    let changed = ex.changed("fc1", next);
    let names: Vec<(&str, bool)> = changed.iter().map(|(u, q)| (u.name.as_str(), *q)).collect();
    assert_eq!(names, [("count", false), ("volume", true)]);
    let d = Payload::decode(&ddata(fc1, &changed, true, 4000, &mut s).unwrap()[..]).unwrap();
    assert_eq!((d.seq, d.timestamp), (Some(2), Some(4000)));
    assert_eq!(d.metrics.len(), 2);
    let c = &d.metrics[0];
    assert_eq!(c.name, None, "data goes by alias");
    assert_eq!(c.datatype, None);
    assert_eq!(c.alias, Some(fc1.by_name("count").unwrap().alias));
    assert_eq!(c.timestamp, Some(3000));
    assert_eq!(c.is_historical, Some(true));
    assert_eq!(c.properties, None, "quality unchanged: no properties");
    let vol = &d.metrics[1];
    assert_eq!(vol.value, Some(metric::Value::IntValue(123_456)));
    assert_eq!(
        prop_of(vol, "Quality").unwrap().value,
        Some(property_value::Value::IntValue(192))
    );
    // The same again: nothing left to send.
    assert!(ex
        .changed("fc1", vec![upd("count", 5000, Some(Value::Int(-6)), true)])
        .is_empty());
    // Errors name the metric.
    assert!(matches!(
        ddata(
            fc1,
            &[(upd("nope", 1, None, false), true)],
            false,
            1,
            &mut s
        ),
        Err(EncodeError::UnknownMetric { .. })
    ));
    assert!(matches!(
        ddata(
            fc1,
            &[(upd("count", 1, Some(Value::Int(99_999)), true), true)],
            false,
            1,
            &mut s
        ),
        Err(EncodeError::Value { .. })
    ));
    let dd = Payload::decode(&ddeath(7, &mut s)[..]).unwrap();
    assert!(dd.metrics.is_empty() && dd.seq.is_some());
}
