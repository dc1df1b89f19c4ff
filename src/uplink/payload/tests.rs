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
use crate::time::rfc3339_ms;

/// Every encoding in both formats.
pub(super) const WIRES: [Wire; 4] = [
    Wire {
        encoding: Encoding::Json,
        format: PayloadFormat::V1,
    },
    Wire {
        encoding: Encoding::Cbor,
        format: PayloadFormat::V1,
    },
    Wire {
        encoding: Encoding::Json,
        format: PayloadFormat::V2,
    },
    Wire {
        encoding: Encoding::Cbor,
        format: PayloadFormat::V2,
    },
];

pub(super) const T0: u64 = 1_740_823_200_000; // 2025-03-01T10:00:00Z

pub(super) fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub(super) fn good(point: &str, v: Value, unit: Option<&str>, t: u64) -> Sample {
    Sample {
        point: Arc::from(point),
        value: Some(v),
        unit: unit.map(Arc::from),
        quality: Quality::Good,
        read_at: at(t),
    }
}

pub(super) fn badq(point: &str, r: BadReason, unit: Option<&str>, t: u64) -> Sample {
    Sample {
        point: Arc::from(point),
        value: None,
        unit: unit.map(Arc::from),
        quality: Quality::Bad(r),
        read_at: at(t),
    }
}

pub(super) fn batch(id: i64, device: &str, samples: Vec<Sample>, historical: bool) -> Entry {
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
pub(super) fn device(id: i64, name: &str, n: usize, t: u64) -> Entry {
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

/// A value as text, exactly: JSON and CBOR must decode to the same number, digit for digit
/// (serde_json reads numbers with `float_roundtrip`).
pub(super) fn norm(v: &Json) -> String {
    v.to_string()
}

/// Flatten a decoded message into (device, point, time, value-or-bad, unit) tuples.
pub(super) fn flatten(m: &Json) -> BTreeSet<(String, String, String, String, String)> {
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
pub(super) fn expected(entries: &[Entry]) -> BTreeSet<(String, String, String, String, String)> {
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

pub(super) fn all_readings(
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
        for wire in WIRES {
            let enc = wire.encoding;
            let msgs = encode_messages(&entries, "gw-1", 64 * 1024, wire);
            assert_eq!(msgs.len(), 1, "{name} {enc:?}: one message");
            let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
            assert_eq!(msgs[0].entries, ids, "{name} {wire:?}");
            let want = expected(&entries);
            let n = entries
                .iter()
                .map(|e| match &e.body {
                    EntryBody::Batch(b) => b.samples.len() as u64,
                    _ => 0,
                })
                .sum::<u64>();
            assert_eq!(msgs[0].readings, n, "{name} {wire:?}");
            assert_eq!(all_readings(&msgs, enc), want, "{name} {wire:?}");
        }
        // Both encodings decode to the identical document; format 2 to the same readings
        // (devices grouped by schema, so compared as sets).
        let j = encode_messages(&entries, "gw-1", 64 * 1024, Encoding::Json);
        let c = encode_messages(&entries, "gw-1", 64 * 1024, Encoding::Cbor);
        let v1 = decode(&j[0].build("gw-1", 9).unwrap()).unwrap();
        assert_eq!(
            v1,
            decode(&c[0].build("gw-1", 9).unwrap()).unwrap(),
            "{name}"
        );
        for wire in &WIRES[2..] {
            let m = encode_messages(&entries, "gw-1", 64 * 1024, *wire);
            let v2 = decode(&m[0].build("gw-1", 9).unwrap()).unwrap();
            assert_eq!(flatten(&v2), flatten(&v1), "{name} {wire:?}");
        }
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

/// Replies (issue 10) travel like events: one per message, JSON, `gw` and `seq` added (a
/// `gw`/`seq` in the body never overrides the envelope's), on the reply's own topic; only the
/// config state is retained.
#[test]
fn replies_are_one_json_message_each_on_their_topic() {
    use crate::outbox::ReplyTopic::{CmdRes, ConfigState};
    let res = json!({"id": "ops-42", "op": "write", "status": "ok", "gw": "spoof", "seq": 1});
    let state = json!({"version": "v1", "status": "applied"});
    let entries = vec![
        json_entry(1, EntryKind::Reply(CmdRes), res),
        json_entry(2, EntryKind::Reply(ConfigState), state),
        device(3, "pt1", 2, 0),
    ];
    let msgs = encode_messages(&entries, "gw-1", 1024, Encoding::Cbor);
    let kinds: Vec<(EntryKind, Vec<i64>)> =
        msgs.iter().map(|m| (m.kind, m.entries.clone())).collect();
    assert_eq!(
        kinds,
        vec![
            (EntryKind::Reply(CmdRes), vec![1]),
            (EntryKind::Reply(ConfigState), vec![2]),
            (EntryKind::Data, vec![3]),
        ]
    );
    let r: Json = serde_json::from_slice(&msgs[0].build("gw-1", 9).unwrap()).unwrap();
    assert_eq!(
        r,
        json!({"gw": "gw-1", "seq": 9, "id": "ops-42", "op": "write", "status": "ok"})
    );
    let c: Json = serde_json::from_slice(&msgs[1].build("gw-1", 10).unwrap()).unwrap();
    assert_eq!(
        c,
        json!({"gw": "gw-1", "seq": 10, "version": "v1", "status": "applied"})
    );
    let topics = super::super::Topics::new("gasdtu/gw-1");
    let table = [
        (EntryKind::Reply(CmdRes), "gasdtu/gw-1/cmd/res", false),
        (
            EntryKind::Reply(ConfigState),
            "gasdtu/gw-1/config/state",
            true,
        ),
        (EntryKind::Alarm, "gasdtu/gw-1/alarm", false),
        (EntryKind::Event, "gasdtu/gw-1/event", false),
        (EntryKind::Data, "gasdtu/gw-1/data", false),
    ];
    for (kind, topic, retain) in table {
        assert_eq!(
            (topics.for_kind(kind).as_str(), kind.retain()),
            (topic, retain)
        );
    }
    // Priority order (the derived Ord) and the stored codes (0/1/2 unchanged, replies 3).
    let mut sorted = [
        EntryKind::Data,
        EntryKind::Event,
        EntryKind::Reply(ConfigState),
        EntryKind::Reply(CmdRes),
        EntryKind::Alarm,
    ];
    sorted.sort();
    assert_eq!(
        sorted.iter().map(|k| k.code()).collect::<Vec<_>>(),
        vec![0, 3, 3, 1, 2]
    );
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

/// Issue 9 item 1: an alarm/event whose message would exceed the payload limit is cut to fit
/// with a visible marker; one that fits is untouched. (input, limit, what must hold)
#[test]
fn oversized_alarms_and_events_are_cut_to_fit() {
    let alarm = |msg: String| {
        json!({"alarm": "p_high", "dev": "pt1", "point": "pressure", "state": "raised",
               "value": 900.0, "message": msg})
    };
    let cases: Vec<(&str, Json, usize)> = vec![
        (
            "9.6 kB template output",
            alarm("pressure high ".repeat(700)),
            1024,
        ),
        ("multi-byte text", alarm("压力过高".repeat(1000)), 512),
        (
            "control characters (6 bytes each on the wire)",
            alarm("\u{1}".repeat(5000)),
            1024,
        ),
        (
            "event with a long path",
            json!({"event": "store_replaced", "path": "/x".repeat(3000),
            "reason": "r".repeat(3000)}),
            700,
        ),
        ("non-object body", json!("y".repeat(4000)), 300),
    ];
    for (name, v, limit) in cases {
        let msgs = encode_messages(
            &[json_entry(7, EntryKind::Alarm, v.clone())],
            "gw-1",
            limit,
            Encoding::Json,
        );
        assert_eq!(msgs.len(), 1, "{name}");
        let bytes = msgs[0].build("gw-1", u64::MAX).unwrap();
        assert!(bytes.len() <= limit, "{name}: {} > {limit}", bytes.len());
        let d = decode(&bytes).unwrap();
        assert_eq!(d["truncated"], true, "{name}");
        assert_eq!(d["seq"], u64::MAX, "{name}");
        // The kept text is a prefix of the original, ended by the marker.
        let (orig, cut) = match v.get("message") {
            Some(m) => (m.as_str().unwrap(), d["message"].as_str().unwrap()),
            None if v.is_string() => (v.as_str().unwrap(), d["body"].as_str().unwrap()),
            None => (v["reason"].as_str().unwrap(), d["reason"].as_str().unwrap()),
        };
        let kept = cut.strip_suffix('…').expect("marker");
        assert!(orig.starts_with(kept), "{name}");
        assert!(kept.len() >= 16, "{name}: cut too far ({})", kept.len());
        if v.get("message").is_some() {
            for k in ["alarm", "dev", "point", "state", "value"] {
                assert_eq!(d[k], v[k], "{name}: {k} kept");
            }
        }
    }
    // Fits: byte-identical to what it was, no marker.
    let small = alarm("pt1 pressure 900 kPa above 700".into());
    let m = encode_messages(
        &[json_entry(1, EntryKind::Alarm, small.clone())],
        "g",
        1024,
        Encoding::Json,
    );
    let d = decode(&m[0].build("g", 1).unwrap()).unwrap();
    assert!(d.get("truncated").is_none());
    assert_eq!(d["message"], small["message"]);
    // Cannot fit however cut (a huge key): returned cut anyway, the forwarder decides.
    let mut o = Map::new();
    o.insert("k".repeat(5000), Json::from("v".repeat(100)));
    let cut = fit_json(&Json::Object(o), "g", 1024);
    assert_eq!(cut["truncated"], true);
}

/// A single reading can be larger than `max_payload` (it gets its own message) but never
/// larger than the packet the client accepts: names are bounded to 64 bytes by `check`, text
/// values by the register count (125 registers, 250 bytes), reasons are short.
#[test]
fn a_worst_case_single_reading_fits_the_client_packet() {
    let name = "n".repeat(64);
    let e = batch(
        1,
        &name,
        vec![
            good(
                &name,
                Value::Text("\u{1}".repeat(250)),
                Some(&"u".repeat(64)),
                T0,
            ),
            badq(
                &"m".repeat(64),
                BadReason::Io("e".repeat(200)),
                Some(&"u".repeat(64)),
                T0,
            ),
        ],
        false,
    );
    for enc in [Encoding::Json, Encoding::Cbor] {
        let msgs = encode_messages(std::slice::from_ref(&e), &"g".repeat(64), 256, enc);
        for m in &msgs {
            let bytes = m.build(&"g".repeat(64), u64::MAX).unwrap();
            let topic = format!("{}/data", "t".repeat(200));
            assert!(
                crate::uplink::publish_packet_len(&topic, bytes.len())
                    <= crate::uplink::max_packet(256),
                "{enc:?}: {}",
                bytes.len()
            );
        }
    }
}

#[test]
fn publish_packet_len_matches_rumqttc() {
    use rumqttc::{Packet, Publish, QoS};
    for (topic, n) in [
        ("a", 0),
        ("gasdtu/gw-1/alarm", 100),
        ("t", 16_370),
        ("x/y", 20_000),
    ] {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, vec![0u8; n]);
        p.pkid = 1;
        let mut buf = bytes::BytesMut::new();
        let written = Packet::Publish(p).write(&mut buf, usize::MAX).unwrap();
        assert_eq!(
            crate::uplink::publish_packet_len(topic, n),
            written,
            "{topic} {n}"
        );
        assert_eq!(buf.len(), written);
    }
}

/// Property tests of `decode` (what `gasdtu decode` runs on captured bytes): it never panics on
/// arbitrary bytes or on mutations of valid payloads, and encode → decode gives back every
/// reading. Fixed seed, bounded cases: deterministic and well under 10 s in debug.
mod props {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestRunner};

    fn runner(cases: u32, seed: u64) -> TestRunner {
        TestRunner::new(Config {
            cases,
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            max_shrink_iters: 2000,
            ..Config::default()
        })
    }

    /// Names as `check` allows them: `[A-Za-z0-9_-]{1,64}` (short here, for speed).
    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(b"abcXYZ019_-".to_vec()), 1..10)
            .prop_map(|v| String::from_utf8(v).unwrap_or_default())
    }

    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(any::<char>(), 0..12).prop_map(|v| v.into_iter().collect())
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<u64>().prop_map(Value::UInt),
            any::<f64>().prop_map(Value::Float),
            any::<f32>().prop_map(|x| Value::Float(f64::from(x))),
            text().prop_map(Value::Text),
        ]
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            name(),
            prop::option::of(value()),
            prop::option::of(text()),
            // Read times from 1970 to 2100, in a few distinct instants per batch.
            0u64..4_102_444_800_000,
            prop::option::of(text()),
        )
            .prop_map(|(p, v, unit, t, bad)| match (v, bad) {
                (Some(v), None) => good(&p, v, unit.as_deref(), t),
                (_, b) => badq(&p, BadReason::Io(b.unwrap_or_default()), unit.as_deref(), t),
            })
    }

    fn entries() -> impl Strategy<Value = Vec<Entry>> {
        prop::collection::vec(
            (name(), prop::collection::vec(sample(), 1..8), any::<bool>()),
            1..5,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (dev, s, hist))| batch(i as i64 + 1, &dev, s, hist))
                .collect()
        })
    }

    /// Expected readings, the way the packer sees them: a point repeated at the same time in
    /// one batch is kept once per (device, point, time, unit) tuple, so compare sets.
    #[test]
    fn encode_then_decode_round_trips() {
        runner(400, 0x9a5d_0001)
            .run(
                &(
                    entries(),
                    prop::sample::select(WIRES.to_vec()),
                    128usize..2048,
                ),
                |(entries, wire, limit)| {
                    let msgs = encode_messages(&entries, "gw-1", limit, wire);
                    prop_assert_eq!(all_readings(&msgs, wire.encoding), expected(&entries));
                    for m in &msgs {
                        let worst = m.build("gw-1", u64::MAX).unwrap().len();
                        prop_assert!(worst <= limit || m.readings == 1, "{} > {}", worst, limit);
                    }
                    let n: u64 = msgs.iter().map(|m| m.readings).sum();
                    let want: usize = entries
                        .iter()
                        .map(|e| match &e.body {
                            EntryBody::Batch(b) => b.samples.len(),
                            _ => 0,
                        })
                        .sum();
                    prop_assert_eq!(n, want as u64);
                    Ok(())
                },
            )
            .unwrap();
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes() {
        runner(2000, 0x9a5d_0002)
            .run(&prop::collection::vec(any::<u8>(), 0..256), |bytes| {
                let _ = decode(&bytes);
                Ok(())
            })
            .unwrap();
    }

    /// Structured CBOR of the documented shape with hostile scalars (any i64 time and delta,
    /// any index, values of every CBOR type): byte mutations rarely produce these.
    #[test]
    fn decode_never_panics_on_schema_shaped_cbor() {
        let int = prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), -3i64..3,];
        let scalar = prop_oneof![
            int.clone().prop_map(|i| Cbor::Integer(i.into())),
            any::<u64>().prop_map(|u| Cbor::Integer(u.into())),
            any::<f64>().prop_map(Cbor::Float),
            any::<bool>().prop_map(Cbor::Bool),
            Just(Cbor::Null),
            text().prop_map(Cbor::Text),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(Cbor::Bytes),
        ];
        let read = (
            int.clone(),
            prop::collection::vec(scalar.clone(), 0..4),
            prop::option::of(prop::collection::vec((int.clone(), scalar.clone()), 0..3)),
        )
            .prop_map(|(dt, vals, bad)| {
                let mut r = vec![Cbor::Integer(dt.into()), Cbor::Array(vals)];
                if let Some(b) = bad {
                    r.push(Cbor::Map(
                        b.into_iter()
                            .map(|(i, v)| (Cbor::Integer(i.into()), v))
                            .collect(),
                    ));
                }
                Cbor::Array(r)
            });
        // Mostly well-typed where the decoder checks types first, so that the cases reach
        // the arithmetic and the indexing behind those checks.
        let txt = prop_oneof![9 => text().prop_map(Cbor::Text), 1 => scalar.clone()];
        let device = (
            txt.clone(),
            prop::collection::vec(txt.clone(), 0..4),
            prop::collection::vec(prop_oneof![3 => txt.clone(), 1 => Just(Cbor::Null)], 0..4),
            prop::collection::vec(read, 0..4),
        )
            .prop_map(|(n, names, units, reads)| {
                Cbor::Array(vec![
                    n,
                    Cbor::Array(names),
                    Cbor::Array(units),
                    Cbor::Array(reads),
                ])
            });
        let msg = (
            txt,
            prop_oneof![9 => any::<u64>().prop_map(|u| Cbor::Integer(u.into())), 1 => scalar.clone()],
            prop_oneof![9 => any::<bool>().prop_map(Cbor::Bool), 1 => scalar],
            int,
            prop::collection::vec(device, 0..3),
        )
            .prop_map(|(gw, seq, hist, base, devs)| {
                let k = |i: i64| Cbor::Integer(i.into());
                Cbor::Map(vec![
                    (k(0), gw),
                    (k(1), seq),
                    (k(2), hist),
                    (k(3), k(base)),
                    (k(4), Cbor::Array(devs)),
                ])
            });
        runner(2000, 0x9a5d_0004)
            .run(&msg, |m| {
                let mut bytes = Vec::new();
                ciborium::into_writer(&m, &mut bytes)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let _ = decode(&bytes);
                Ok(())
            })
            .unwrap();
    }

    /// Valid payloads with a few bytes replaced, inserted, removed, or cut short.
    #[test]
    fn decode_never_panics_on_mutated_payloads() {
        let mutation =
            prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), 0u8..4), 1..6);
        runner(2000, 0x9a5d_0003)
            .run(
                &(entries(), prop::sample::select(WIRES.to_vec()), mutation),
                |(entries, wire, muts)| {
                    let msgs = encode_messages(&entries, "gw-1", 4096, wire);
                    let Some(m) = msgs.first() else { return Ok(()) };
                    let mut bytes = m
                        .build("gw-1", 42)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    for (b, at, op) in muts {
                        if bytes.is_empty() {
                            break;
                        }
                        let i = at.index(bytes.len());
                        match op {
                            0 => bytes[i] = b,
                            1 => bytes.insert(i, b),
                            2 => {
                                bytes.remove(i);
                            }
                            _ => bytes.truncate(i),
                        }
                    }
                    let _ = decode(&bytes);
                    Ok(())
                },
            )
            .unwrap();
    }
}

/// Found by `props::encode_then_decode_round_trips`: one device, the same point with two
/// units (a unit changed by a config reload between two batches of the backlog). JSON keys
/// units by point name, so both readings were reported in one unit. Now each unit gets its
/// own group of the device.
#[test]
fn regression_same_point_two_units_keeps_each_unit() {
    for (u1, u2) in [(None, Some("")), (Some("bar"), Some("kPa"))] {
        let e = batch(
            1,
            "a",
            vec![
                badq("bc1", BadReason::Io(String::new()), u1, 0),
                good("bc1", Value::Int(5), u2, 0),
                good("bc1", Value::Int(6), u1, 1000),
            ],
            false,
        );
        for enc in [Encoding::Json, Encoding::Cbor] {
            let msgs = encode_messages(std::slice::from_ref(&e), "gw-1", 163, enc);
            assert_eq!(
                all_readings(&msgs, enc),
                expected(std::slice::from_ref(&e)),
                "{enc:?} {u1:?} {u2:?}"
            );
        }
    }
}

/// Found by `props::decode_never_panics_on_schema_shaped_cbor` (byte mutations of valid
/// payloads did not reach it in 1000 cases): a CBOR message whose read time deltas overflow
/// i64 (base near the end of the range); `decode` used `+=` and panicked in debug builds
/// (wrapped silently in release). Now a clear error.
#[test]
fn regression_cbor_time_overflow_is_an_error_not_a_panic() {
    let c = |i: i64| Cbor::Integer(i.into());
    let msg = Cbor::Map(vec![
        (c(0), Cbor::Text("g".into())),
        (c(1), c(1)),
        (c(2), Cbor::Bool(false)),
        (c(3), c(i64::MAX)),
        (
            c(4),
            Cbor::Array(vec![Cbor::Array(vec![
                Cbor::Text("d".into()),
                Cbor::Array(vec![Cbor::Text("p".into())]),
                Cbor::Array(vec![Cbor::Null]),
                Cbor::Array(vec![Cbor::Array(vec![c(1), Cbor::Array(vec![c(1)])])]),
            ])]),
        ),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&msg, &mut bytes).unwrap();
    let err = decode(&bytes).unwrap_err().to_string();
    assert!(err.contains("read time out of range"), "{err}");
}
