//! Table-driven tests of the payload codecs: JSON and CBOR round trips (every reading comes
//! back with device, point, value, unit, quality and read time), packing and splitting at the
//! payload limit, NaN and bad quality, the historical flag, alarms/events on their own
//! messages, malformed input, and the payload size per reading for 20 devices x 10 points.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value as Json};

use super::*;
use crate::model::{BadReason, Quality, Sample, SampleBatch, Value};
use crate::outbox::{Entry, EntryBody, EntryKind};

const T0: u64 = 1_740_823_200_000; // 2025-03-01T10:00:00Z

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn good(point: &str, v: Value, unit: Option<&str>, t: u64) -> Sample {
    Sample {
        point: Arc::from(point),
        value: Some(v),
        unit: unit.map(Arc::from),
        quality: Quality::Good,
        read_at: at(t),
    }
}

fn badq(point: &str, r: BadReason, unit: Option<&str>, t: u64) -> Sample {
    Sample {
        point: Arc::from(point),
        value: None,
        unit: unit.map(Arc::from),
        quality: Quality::Bad(r),
        read_at: at(t),
    }
}

fn batch(id: i64, device: &str, samples: Vec<Sample>, historical: bool) -> Entry {
    Entry {
        id,
        kind: EntryKind::Data,
        historical,
        created_ms: T0 as i64,
        body: EntryBody::Batch(SampleBatch {
            device: Arc::from(device),
            bus: Arc::from("b"),
            slot: at(T0),
            samples,
            online: true,
            failed_cycles: 0,
        }),
    }
}

fn json_entry(id: i64, kind: EntryKind, v: Json) -> Entry {
    Entry {
        id,
        kind,
        historical: false,
        created_ms: T0 as i64,
        body: EntryBody::Json(v),
    }
}

/// A device with `n` float points, all read at `t`.
fn device(id: i64, name: &str, n: usize, t: u64) -> Entry {
    let names = [
        "pressure",
        "temperature",
        "flow_standard",
        "flow_measured",
        "volume_standard",
        "volume_measured",
        "battery",
        "status",
        "diff_pressure",
        "volume_error",
    ];
    let samples = (0..n)
        .map(|i| {
            let point = if i < names.len() {
                names[i].to_string()
            } else {
                format!("p{i}")
            };
            let v = match i % 4 {
                0 => Value::Float(101.325 + i as f64 * 0.37),
                1 => Value::Float(f64::from(15.25f32 + i as f32)),
                2 => Value::UInt(123_456 + i as u64),
                _ => Value::Int(-(i as i64)),
            };
            let unit = if i % 4 == 3 { None } else { Some("kPa") };
            good(&point, v, unit, t)
        })
        .collect();
    batch(id, name, samples, false)
}

/// A value as text; floats to 12 significant digits (serde_json's own float parser is not
/// always correctly rounded, which is not what these tests are about).
fn norm(v: &Json) -> String {
    match v {
        Json::Number(n) if n.is_f64() => format!("{:.12e}", n.as_f64().unwrap()),
        other => other.to_string(),
    }
}

/// Flatten a decoded message into (device, point, time, value-or-bad, unit) tuples.
fn flatten(m: &Json) -> BTreeSet<(String, String, String, String, String)> {
    let mut out = BTreeSet::new();
    for d in m["data"].as_array().unwrap() {
        let dev = d["dev"].as_str().unwrap().to_string();
        for r in d["reads"].as_array().unwrap() {
            let t = r["t"].as_str().unwrap().to_string();
            let unit = |p: &str| d["unit"][p].as_str().unwrap_or("-").to_string();
            for (p, v) in r["v"].as_object().unwrap() {
                out.insert((dev.clone(), p.clone(), t.clone(), norm(v), unit(p)));
            }
            if let Some(b) = r.get("bad") {
                for (p, v) in b.as_object().unwrap() {
                    out.insert((
                        dev.clone(),
                        p.clone(),
                        t.clone(),
                        format!("bad {v}"),
                        unit(p),
                    ));
                }
            }
        }
    }
    out
}

/// The same tuples computed from the entries (the expectation).
fn expected(entries: &[Entry]) -> BTreeSet<(String, String, String, String, String)> {
    let mut out = BTreeSet::new();
    for e in entries {
        let EntryBody::Batch(b) = &e.body else {
            continue;
        };
        for s in &b.samples {
            let v = match (&s.quality, &s.value) {
                (Quality::Good, Some(v)) => norm(&value_json(v)),
                (Quality::Bad(r), _) => format!("bad {}", Json::from(reason_text(r))),
                _ => unreachable!(),
            };
            out.insert((
                b.device.to_string(),
                s.point.to_string(),
                rfc3339_ms(unix_ms(s.read_at)),
                v,
                s.unit.as_deref().unwrap_or("-").to_string(),
            ));
        }
    }
    out
}

fn all_readings(
    msgs: &[Packed],
    enc: Encoding,
) -> BTreeSet<(String, String, String, String, String)> {
    let mut out = BTreeSet::new();
    for (i, m) in msgs.iter().enumerate() {
        if m.kind != EntryKind::Data {
            continue;
        }
        let bytes = m.build("gw-1", i as u64 + 1).unwrap();
        if enc == Encoding::Cbor {
            assert_ne!(bytes[0], b'{', "CBOR payload must not look like JSON");
        }
        let d = decode(&bytes).unwrap();
        assert_eq!(d["gw"], "gw-1");
        assert_eq!(d["seq"], i as u64 + 1);
        out.extend(flatten(&d));
    }
    out
}

#[test]
fn round_trips_keep_every_reading() {
    let mixed = vec![
        good("pressure", Value::Float(4.25), Some("bar"), T0),
        good(
            "temperature",
            Value::Float(f64::from(15.3f32)),
            Some("degC"),
            T0,
        ),
        good("valve_open", Value::Bool(true), None, T0 + 40),
        good("counter", Value::UInt(u64::MAX), Some("m3"), T0 + 40),
        good("delta", Value::Int(i64::MIN), None, T0 + 40),
        good("serial", Value::Text("AB-12 \"x\"".into()), None, T0 + 95),
        badq("flow", BadReason::Timeout, Some("m3/h"), T0 + 95),
        badq(
            "alarm_word",
            BadReason::Exception {
                code: 2,
                meaning: "illegal data address".into(),
            },
            None,
            T0 + 95,
        ),
        good("nan", Value::Float(f64::NAN), None, T0),
        good("inf", Value::Float(f64::NEG_INFINITY), None, T0),
    ];
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        ("one device, one time", vec![device(1, "evc1", 10, T0)]),
        (
            "mixed types, times, bad, nan",
            vec![batch(1, "evc1", mixed.clone(), false)],
        ),
        (
            "two cycles of one device",
            vec![device(1, "evc1", 5, T0), device(2, "evc1", 5, T0 + 300_000)],
        ),
        (
            "same time twice for one point",
            vec![device(1, "evc1", 3, T0), device(2, "evc1", 3, T0)],
        ),
        (
            "three devices",
            vec![
                device(1, "a", 4, T0),
                device(2, "b", 4, T0 + 7),
                device(3, "c", 4, T0 - 7),
            ],
        ),
        ("before 1970", vec![device(1, "old", 2, 0)]),
    ];
    for (name, entries) in cases {
        for enc in [Encoding::Json, Encoding::Cbor] {
            let msgs = encode_messages(&entries, "gw-1", 64 * 1024, enc);
            assert_eq!(msgs.len(), 1, "{name} {enc:?}: one message");
            let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
            assert_eq!(msgs[0].entries, ids, "{name} {enc:?}");
            let want = expected(&entries);
            let n = entries
                .iter()
                .map(|e| match &e.body {
                    EntryBody::Batch(b) => b.samples.len() as u64,
                    _ => 0,
                })
                .sum::<u64>();
            assert_eq!(msgs[0].readings, n, "{name} {enc:?}");
            assert_eq!(all_readings(&msgs, enc), want, "{name} {enc:?}");
        }
        // Both encodings decode to the identical document.
        let j = encode_messages(&entries, "gw-1", 64 * 1024, Encoding::Json);
        let c = encode_messages(&entries, "gw-1", 64 * 1024, Encoding::Cbor);
        assert_eq!(
            decode(&j[0].build("gw-1", 9).unwrap()).unwrap(),
            decode(&c[0].build("gw-1", 9).unwrap()).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn json_shape_is_as_documented() {
    let e = batch(
        7,
        "evc1",
        vec![
            good(
                "pressure",
                Value::Float(f64::from(4.2f32)),
                Some("bar"),
                T0 + 120,
            ),
            good("temperature", Value::Float(15.5), Some("degC"), T0 + 120),
            badq("flow", BadReason::Timeout, Some("m3/h"), T0 + 120),
            good("nan", Value::Float(f64::NAN), None, T0 + 120),
        ],
        true,
    );
    let msgs = encode_messages(&[e], "gw-1", 1024, Encoding::Json);
    let bytes = msgs[0].build("gw-1", 42).unwrap();
    let v: Json = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        v,
        json!({"gw": "gw-1", "seq": 42, "hist": true, "data": [{
            "dev": "evc1",
            "unit": {"pressure": "bar", "temperature": "degC", "flow": "m3/h"},
            "reads": [{"t": "2025-03-01T10:00:00.120Z",
                       "v": {"pressure": 4.2, "temperature": 15.5, "nan": "NaN"},
                       "bad": {"flow": "timeout"}}]}]})
    );
    // f32 values are written at f32 precision, not as 4.199999809265137.
    assert!(String::from_utf8_lossy(&bytes).contains("\"pressure\":4.2"));
}

#[test]
fn packing_splits_at_the_limit_and_never_drops() {
    // (case, entries, limit, expected number of messages)
    let big = device(9, "big", 120, T0);
    let cases: Vec<(&str, Vec<Entry>, usize, usize)> = vec![
        (
            "all fit in one",
            vec![device(1, "a", 10, T0), device(2, "b", 10, T0)],
            4096,
            1,
        ),
        ("one batch larger than the limit", vec![big.clone()], 600, 0),
        (
            "batches combined up to the limit",
            (0..20)
                .map(|i| device(i, &format!("d{i:02}"), 10, T0))
                .collect(),
            1024,
            0,
        ),
        (
            "small, big, small",
            vec![device(1, "a", 3, T0), big, device(2, "b", 3, T0)],
            700,
            0,
        ),
    ];
    for (name, entries, limit, n) in cases {
        for enc in [Encoding::Json, Encoding::Cbor] {
            let msgs = encode_messages(&entries, "gw-1", limit, enc);
            if n > 0 {
                assert_eq!(msgs.len(), n, "{name} {enc:?}");
            } else {
                assert!(msgs.len() > 1, "{name} {enc:?}: expected a split");
            }
            for m in &msgs {
                let len = m.build("gw-1", u64::MAX).unwrap().len();
                assert!(len <= limit, "{name} {enc:?}: {len} > {limit}");
            }
            // Every entry is bound to exactly one message, in order.
            let bound: Vec<i64> = msgs.iter().flat_map(|m| m.entries.clone()).collect();
            let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
            assert_eq!(bound, ids, "{name} {enc:?}");
            assert_eq!(
                all_readings(&msgs, enc),
                expected(&entries),
                "{name} {enc:?}"
            );
            let total: u64 = msgs.iter().map(|m| m.readings).sum();
            assert_eq!(total as usize, expected(&entries).len(), "{name} {enc:?}");
        }
    }
}

#[test]
fn a_single_sample_over_the_limit_still_goes() {
    let e = batch(
        1,
        "d",
        vec![good("s", Value::Text("x".repeat(300)), None, T0)],
        false,
    );
    let msgs = encode_messages(&[e], "gw-1", 100, Encoding::Json);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].entries, vec![1]);
    assert_eq!(msgs[0].readings, 1);
}

#[test]
fn historical_and_live_never_share_a_message() {
    let entries = vec![
        device(1, "a", 2, T0 + 600_000),
        device(2, "b", 2, T0 + 600_000),
        batch(3, "a", vec![good("p", Value::Int(1), None, T0)], true),
        batch(
            4,
            "a",
            vec![good("p", Value::Int(2), None, T0 + 1000)],
            true,
        ),
    ];
    for enc in [Encoding::Json, Encoding::Cbor] {
        let msgs = encode_messages(&entries, "gw-1", 4096, enc);
        assert_eq!(msgs.len(), 2, "{enc:?}");
        assert_eq!(msgs[0].entries, vec![1, 2]);
        assert_eq!(msgs[1].entries, vec![3, 4]);
        let hist: Vec<Json> = msgs
            .iter()
            .map(|m| decode(&m.build("g", 1).unwrap()).unwrap()["hist"].clone())
            .collect();
        assert_eq!(hist, vec![json!(false), json!(true)], "{enc:?}");
    }
}

#[test]
fn alarms_and_events_get_their_own_messages_in_order() {
    let entries = vec![
        json_entry(
            1,
            EntryKind::Alarm,
            json!({"alarm": "p_high", "value": 7.5, "limit": 7.0}),
        ),
        json_entry(2, EntryKind::Event, json!({"event": "restart"})),
        device(3, "a", 2, T0),
        json_entry(4, EntryKind::Event, json!("plain")),
        device(5, "b", 2, T0),
    ];
    let msgs = encode_messages(&entries, "gw-1", 1024, Encoding::Cbor);
    let kinds: Vec<(EntryKind, Vec<i64>)> =
        msgs.iter().map(|m| (m.kind, m.entries.clone())).collect();
    assert_eq!(
        kinds,
        vec![
            (EntryKind::Alarm, vec![1]),
            (EntryKind::Event, vec![2]),
            (EntryKind::Data, vec![3]),
            (EntryKind::Event, vec![4]),
            (EntryKind::Data, vec![5]),
        ]
    );
    // Alarms and events are JSON even when data is CBOR, with gw and seq added.
    let a: Json = serde_json::from_slice(&msgs[0].build("gw-1", 5).unwrap()).unwrap();
    assert_eq!(
        a,
        json!({"gw": "gw-1", "seq": 5, "alarm": "p_high", "value": 7.5, "limit": 7.0})
    );
    let e: Json = serde_json::from_slice(&msgs[3].build("gw-1", 6).unwrap()).unwrap();
    assert_eq!(e, json!({"gw": "gw-1", "seq": 6, "body": "plain"}));
    let topics = super::super::Topics::new("gasdtu/gw-1/");
    assert_eq!(topics.for_kind(EntryKind::Alarm), "gasdtu/gw-1/alarm");
    assert_eq!(topics.for_kind(EntryKind::Event), "gasdtu/gw-1/event");
    assert_eq!(topics.for_kind(EntryKind::Data), "gasdtu/gw-1/data");
}

#[test]
fn malformed_payloads_are_errors() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("bad json", b"{\"gw\":".to_vec()),
        ("cbor not a map", vec![0x83, 1, 2, 3]),
        ("cbor truncated", vec![0xa5, 0x00]),
        ("cbor map without fields", vec![0xa0]),
        ("garbage", vec![0xff, 0xfe, 0x00]),
    ];
    for (name, bytes) in cases {
        assert!(decode(&bytes).is_err(), "{name}");
    }
}

#[test]
fn rfc3339_formatting() {
    let cases = [
        (0, "1970-01-01T00:00:00.000Z"),
        (T0 as i64 + 120, "2025-03-01T10:00:00.120Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
    ];
    for (ms, s) in cases {
        assert_eq!(rfc3339_ms(ms), s);
    }
}

/// The standard workload: 20 devices x 10 points polled once, packed into 1 KiB messages.
/// Prints bytes per reading (quoted in docs/mqtt.md) and guards against regressions.
#[test]
fn payload_bytes_per_reading_20x10() {
    let entries: Vec<Entry> = (0..20)
        .map(|i| device(i, &format!("meter{i:02}"), 10, T0 + i as u64 * 13))
        .collect();
    for (enc, bound) in [(Encoding::Json, 60.0), (Encoding::Cbor, 40.0)] {
        let msgs = encode_messages(&entries, "gw-0001", 1024, enc);
        let bytes: usize = msgs
            .iter()
            .map(|m| m.build("gw-0001", 123_456).unwrap().len())
            .sum();
        let per = bytes as f64 / 200.0;
        println!(
            "{enc:?}: {} messages, {bytes} bytes, {per:.1} B/reading",
            msgs.len()
        );
        assert!(per < bound, "{enc:?}: {per:.1} B/reading");
    }
}
