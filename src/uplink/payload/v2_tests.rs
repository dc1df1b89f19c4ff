//! Format 2 of `data` messages: the documented example with its exact bytes (docs/mqtt.md),
//! v1 and v2 of the same readings decoding to the same values, decimal slots and deltas, and
//! malformed or hostile format 2 input. Sizes on whole workloads: `v2_size_tests`.

use super::tests::{badq, batch, good, T0, WIRES};
use super::*;
use crate::model::{BadReason, Value};
use crate::outbox::Entry;

const V2_JSON: Wire = Wire {
    encoding: Encoding::Json,
    format: PayloadFormat::V2,
};
const V2_CBOR: Wire = Wire {
    encoding: Encoding::Cbor,
    format: PayloadFormat::V2,
};

fn f32v(x: f32) -> Value {
    Value::Float(f64::from(x))
}

/// The readings of the example in docs/mqtt.md (format 1 and format 2 sections).
fn doc_example() -> Vec<Entry> {
    let evc = |id, t: u64, p: f32, temp: f64, flow: Option<f64>, vol: u64| {
        let mut s = vec![
            good("pressure", f32v(p), Some("bar"), t),
            good("temperature", Value::Float(temp), Some("degC"), t),
        ];
        s.push(match flow {
            Some(f) => good("flow", Value::Float(f), Some("m3/h"), t),
            None => badq("flow", BadReason::Timeout, Some("m3/h"), t),
        });
        s.push(good("volume", Value::UInt(vol), Some("m3"), t + 60));
        batch(id, "evc1", s, false)
    };
    vec![
        evc(1, T0 + 120, 4.2, 15.5, None, 1_234_567),
        batch(
            2,
            "pt2",
            vec![good("pressure", f32v(0.35), Some("MPa"), T0 + 40)],
            false,
        ),
        evc(3, T0 + 300_120, 4.3, 15.0, Some(12.5), 1_234_568),
    ]
}

fn one(entries: &[Entry], wire: impl Into<Wire>) -> Vec<u8> {
    let m = encode_messages(entries, "gw-1", 64 * 1024, wire);
    assert_eq!(m.len(), 1);
    m[0].build("gw-1", 42).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn documented_example_bytes() {
    let e = doc_example();
    let j = one(&e, V2_JSON);
    let text = String::from_utf8(j.clone()).unwrap();
    println!("JSON v2 ({} B): {text}", j.len());
    assert_eq!(
        text,
        concat!(
            r#"{"gw":"gw-1","hist":false,"sch":["#,
            r#"{"dev":[["evc1",80,4.2,15.5,null,null,{"flow":"timeout"},140,null,null,null,1234567,"#,
            r#"300080,4.3,15.0,12.5,null,300140,null,null,null,1234568]],"#,
            r#""pts":["pressure","temperature","flow","volume"],"unit":["bar","degC","m3/h","m3"]},"#,
            r#"{"dev":[["pt2",0,0.35]],"pts":["pressure"],"unit":["MPa"]}],"#,
            r#""seq":42,"t":1740823200040,"v":2}"#
        )
    );
    assert_eq!(j.len(), 352);
    let c = one(&e, V2_CBOR);
    println!("CBOR v2 ({} B): {}", c.len(), hex(&c));
    assert_eq!(c.len(), 163);
    assert_eq!(
        hex(&c),
        concat!(
            "a5006467772d3101182a02f4031b00000195512601280582",
            "84846870726573737572656b74656d706572617475726564666c6f7766766f6c756d65",
            "84636261726464656743646d332f68626d33",
            "84202020f5",
            "81966465766331",
            "1850182a189bf6f6a1026774696d656f7574",
            "188cf6f6f61a0012d687",
            "1a000494300124187df6",
            "1a0004946cf6f6f601",
            "848168707265737375726581634d5061812181836370743200",
            "1823"
        )
    );
    let v1j = one(&e, Encoding::Json);
    let v1c = one(&e, Encoding::Cbor);
    println!("v1: JSON {} B, CBOR {} B", v1j.len(), v1c.len());
    // The format 1 figures of the same example in docs/mqtt.md.
    assert_eq!((v1j.len(), v1c.len()), (544, 179));
    // The same document from all four.
    let want = decode(&v1j).unwrap();
    assert_eq!(decode(&v1c).unwrap(), want);
    assert_eq!(decode(&j).unwrap(), want);
    assert_eq!(decode(&c).unwrap(), want);
    assert_eq!(decode_kind(&j).unwrap().0, PayloadKind::DataJsonV2);
    assert_eq!(decode_kind(&c).unwrap().0, PayloadKind::DataCborV2);
    assert_eq!(decode_kind(&v1c).unwrap().0, PayloadKind::DataCbor);
}

/// A table of readings of every kind, each decoded from v1 and v2 (JSON and CBOR) to the same
/// values: f32 at f32 precision, scaled decimals, totals, extremes, -0.0, non-finite, text,
/// booleans, bad readings, several cycles (deltas) and a point whose type changes.
#[test]
fn v1_and_v2_decode_to_the_same_values() {
    let t = T0;
    let cases: Vec<(&str, Vec<Value>)> = vec![
        (
            "f32",
            vec![f32v(4.2), f32v(-10001.25), f32v(2250.125), f32v(1e-7)],
        ),
        (
            "f32 extremes",
            vec![f32v(f32::MAX), f32v(f32::MIN_POSITIVE), f32v(0.0)],
        ),
        (
            "scaled",
            vec![
                Value::Float(-899.8),
                Value::Float(150.2),
                Value::Float(-0.05),
            ],
        ),
        (
            "totals",
            vec![Value::Float(987_654.32), Value::Float(16_777_217.25)],
        ),
        (
            "zeros",
            vec![Value::Float(0.0), Value::Float(-0.0), Value::Float(0.0)],
        ),
        (
            "non-finite",
            vec![
                Value::Float(f64::NAN),
                Value::Float(f64::INFINITY),
                Value::Float(1.5),
            ],
        ),
        (
            "doubles",
            vec![
                Value::Float(0.1 + 0.2),
                Value::Float(1e300),
                Value::Float(5e-324),
            ],
        ),
        (
            "ints",
            vec![
                Value::UInt(3_000_100_001),
                Value::UInt(3_000_100_002),
                Value::Int(-5),
            ],
        ),
        (
            "big ints",
            vec![Value::UInt(u64::MAX), Value::Int(i64::MIN), Value::UInt(1)],
        ),
        (
            "mixed",
            vec![
                Value::UInt(5),
                Value::Float(5.0),
                Value::Bool(true),
                Value::Text("x".into()),
            ],
        ),
    ];
    for (name, values) in cases {
        // One point, one read per value, 1 s apart: several cycles in one message.
        let entries: Vec<Entry> = values
            .iter()
            .enumerate()
            .map(|(k, v)| {
                let s = vec![
                    good("p", v.clone(), Some("bar"), t + k as u64 * 1000),
                    badq("q", BadReason::Crc, None, t + k as u64 * 1000),
                    good("r", Value::UInt(k as u64 * 7), None, t + k as u64 * 1000),
                ];
                batch(k as i64 + 1, "dev", s, true)
            })
            .collect();
        let v1 = decode(&one(&entries, Encoding::Json)).unwrap();
        for wire in WIRES {
            let got = decode(&one(&entries, wire)).unwrap();
            assert_eq!(got, v1, "{name} {wire:?}");
        }
    }
}

/// Scaled and f32 readings become integer mantissas at the point's exponent: -899.8 is -8998
/// at 10^-1, 3 bytes (a double: 9).
#[test]
fn decimal_slots_are_short() {
    let e = vec![batch(
        1,
        "d",
        vec![good("i0", Value::Float(-899.8), None, T0)],
        false,
    )];
    let c = one(&e, V2_CBOR);
    // ... [["i0"], null, [-1 (0x20)], [["d", 0, -8998 (39 23 25)]]]
    assert!(
        hex(&c).ends_with(
            "84 81 62 69 30 f6 81 20 81 83 61 64 00 39 23 25"
                .replace(' ', "")
                .as_str()
        ),
        "{}",
        hex(&c)
    );
    let v1 = one(&e, Encoding::Cbor);
    assert_eq!(v1.len() - c.len(), 6, "v1 {} B, v2 {} B", v1.len(), c.len());
}

/// Several cycles of a device in one message (backlog): values that barely change cost one
/// byte each (a delta of 0 or a small step).
#[test]
fn deltas_pay_on_multi_cycle_messages() {
    let entries: Vec<Entry> = (0..10u64)
        .map(|k| {
            let s = vec![
                good(
                    "pressure",
                    f32v([4.2, 4.201][k as usize % 2]),
                    Some("bar"),
                    T0 + k * 300_000,
                ),
                good(
                    "volume",
                    Value::UInt(1_234_567 + k),
                    Some("m3"),
                    T0 + k * 300_000,
                ),
                good(
                    "temperature",
                    Value::Float(15.5),
                    Some("degC"),
                    T0 + k * 300_000,
                ),
            ];
            batch(k as i64 + 1, "evc1", s, true)
        })
        .collect();
    let c = one(&entries, V2_CBOR);
    let first = one(&entries[..1], V2_CBOR);
    let v1 = one(&entries, Encoding::Cbor);
    println!(
        "10 cycles x 3 points: v1 CBOR {} B, v2 CBOR {} B (one cycle: {} B)",
        v1.len(),
        c.len(),
        first.len()
    );
    // Each further read: its offset (5 B: 300000 * k ms) and three one-byte deltas; 2 B more
    // for the longer device array and the first pressure at 10^-3 (4200, not 42).
    assert_eq!(c.len() - first.len(), 9 * 8 + 2, "v2 {} B", c.len());
    assert!(c.len() < v1.len(), "v1 {} B, v2 {} B", v1.len(), c.len());
    assert_eq!(
        decode(&c).unwrap(),
        decode(&one(&entries, Encoding::Json)).unwrap()
    );
}

#[test]
fn malformed_format_2_is_an_error() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("json no sch array", br#"{"v":2,"gw":"g","seq":1,"hist":false,"t":0,"sch":1}"#.to_vec()),
        ("json short read", br#"{"v":2,"gw":"g","seq":1,"hist":false,"t":0,"sch":[{"pts":["a","b"],"dev":[["d",0,1]]}]}"#.to_vec()),
        ("json bad name", br#"{"v":2,"gw":"g","seq":1,"hist":false,"t":0,"sch":[{"pts":["a"],"dev":[["d",0,null,{"zz":"crc"}]]}]}"#.to_vec()),
        ("json time overflow", br#"{"v":2,"gw":"g","seq":1,"hist":false,"t":9223372036854775807,"sch":[{"pts":["a"],"dev":[["d",1,1]]}]}"#.to_vec()),
        ("json unit length", br#"{"v":2,"gw":"g","seq":1,"hist":false,"t":0,"sch":[{"pts":["a"],"unit":[],"dev":[]}]}"#.to_vec()),
    ];
    for (name, b) in cases {
        assert!(decode(&b).is_err(), "{name}");
    }
    // CBOR: a delta that overflows, a schema of the wrong length, a bad index out of range.
    let msg = |schemas: ciborium::Value| {
        use ciborium::Value as C;
        let m = C::Map(vec![
            (C::Integer(0.into()), C::Text("g".into())),
            (C::Integer(1.into()), C::Integer(1.into())),
            (C::Integer(2.into()), C::Bool(false)),
            (C::Integer(3.into()), C::Integer(0.into())),
            (C::Integer(5.into()), schemas),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&m, &mut out).unwrap();
        out
    };
    use ciborium::Value as C;
    let names = C::Array(vec![C::Text("a".into())]);
    let big = C::Integer(ciborium::value::Integer::from(u64::MAX));
    let cases = vec![
        (
            "delta overflow",
            C::Array(vec![C::Array(vec![
                names.clone(),
                C::Null,
                C::Array(vec![C::Bool(true)]),
                C::Array(vec![C::Array(vec![
                    C::Text("d".into()),
                    C::Integer(0.into()),
                    big.clone(),
                    C::Integer(0.into()),
                    big,
                ])]),
            ])]),
        ),
        (
            "schema of 3",
            C::Array(vec![C::Array(vec![names.clone(), C::Null, C::Null])]),
        ),
        (
            "bad index",
            C::Array(vec![C::Array(vec![
                names.clone(),
                C::Null,
                C::Null,
                C::Array(vec![C::Array(vec![
                    C::Text("d".into()),
                    C::Integer(0.into()),
                    C::Null,
                    C::Map(vec![(C::Integer(1.into()), C::Text("crc".into()))]),
                ])]),
            ])]),
        ),
        (
            "exponent",
            C::Array(vec![C::Array(vec![
                names,
                C::Null,
                C::Array(vec![C::Integer(100_000.into())]),
                C::Array(vec![]),
            ])]),
        ),
    ];
    for (name, s) in cases {
        assert!(decode(&msg(s)).is_err(), "{name}");
    }
}

/// Hostile format 2 CBOR of the documented shape (any scale, any integers at the extremes,
/// wrong counts, maps in odd places): an error or a document, never a panic.
#[test]
fn decode_never_panics_on_schema_shaped_format_2() {
    use ciborium::value::Integer;
    use ciborium::Value as C;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    let scalar = prop_oneof![
        Just(C::Null),
        any::<i64>().prop_map(|i| C::Integer(i.into())),
        any::<u64>().prop_map(|u| C::Integer(u.into())),
        Just(C::Integer(Integer::try_from(-(1i128 << 64)).unwrap())),
        any::<f64>().prop_map(C::Float),
        any::<bool>().prop_map(C::Bool),
        "[a-c]{0,3}".prop_map(C::Text),
        (0u64..4, "[a-c]{0,3}").prop_map(|(i, t)| C::Map(vec![(C::Integer(i.into()), C::Text(t))])),
    ];
    let scale = prop_oneof![
        Just(C::Null),
        Just(C::Bool(true)),
        (-500i64..500).prop_map(|e| C::Integer(e.into())),
    ];
    let schema = (
        1usize..4,
        prop::collection::vec(scale, 0..4),
        prop::collection::vec(prop::collection::vec(scalar, 0..14), 0..3),
        any::<bool>(),
    )
        .prop_map(|(n, scale, devs, units)| {
            let names = (0..n).map(|i| C::Text(format!("p{i}"))).collect();
            let units = if units {
                C::Array((0..n).map(|_| C::Text("u".into())).collect())
            } else {
                C::Null
            };
            let devs = devs
                .into_iter()
                .map(|mut d| {
                    d.insert(0, C::Text("d".into()));
                    C::Array(d)
                })
                .collect();
            C::Array(vec![
                C::Array(names),
                units,
                C::Array(scale),
                C::Array(devs),
            ])
        });
    let msg = (prop::collection::vec(schema, 0..3), any::<i64>()).prop_map(|(s, base)| {
        C::Map(vec![
            (C::Integer(0.into()), C::Text("g".into())),
            (C::Integer(1.into()), C::Integer(1.into())),
            (C::Integer(2.into()), C::Bool(false)),
            (C::Integer(3.into()), C::Integer(base.into())),
            (C::Integer(5.into()), C::Array(s)),
        ])
    });
    TestRunner::new(Config {
        cases: 3000,
        rng_seed: RngSeed::Fixed(0x9a5d_0013),
        failure_persistence: None,
        ..Config::default()
    })
    .run(&msg, |m| {
        let mut bytes = Vec::new();
        ciborium::into_writer(&m, &mut bytes).unwrap();
        let _ = decode(&bytes);
        Ok(())
    })
    .unwrap();
}

/// The CBOR writer (`v2::cbor_write`, no value tree, with the thread's decimals cache warm
/// from the cases before) gives the value tree's bytes (`v2::data_cbor`, a fresh cache) and
/// `v2::len` counts them, for any message: decimal-looking floats (slots at the point's exponent,
/// deltas), arbitrary doubles (literals, narrowed floats), integers at the slot bound and
/// beyond it, text, bad readings, several read times, units that differ between devices
/// (schemas shared or not), at packing limits that split batches. The same for the JSON
/// writer (`v2::json_write` against `v2::data_json` through serde_json).
#[test]
fn cbor_writer_gives_the_value_trees_bytes() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    let value = prop_oneof![
        (-2_000_000i64..2_000_000, 0u32..5)
            .prop_map(|(m, d)| Value::Float(m as f64 / 10f64.powi(d as i32))),
        any::<f64>().prop_map(Value::Float),
        any::<f32>().prop_map(|x| Value::Float(f64::from(x))),
        Just(Value::Float(-0.0)),
        (-(1i64 << 54)..(1i64 << 54)).prop_map(Value::Int),
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        any::<bool>().prop_map(Value::Bool),
        "[a-z]{0,4}".prop_map(Value::Text),
    ];
    let sample = (
        prop::sample::select(vec!["p", "q", "r"]),
        prop::option::of(value),
        prop::sample::select(vec![None, Some("bar"), Some("kPa")]),
        0u64..3,
    )
        .prop_map(|(p, v, unit, k)| match v {
            Some(v) => good(p, v, unit, T0 + k * 1000),
            None => badq(p, BadReason::Timeout, unit, T0 + k * 1000),
        });
    let entries = prop::collection::vec(
        (
            prop::sample::select(vec!["d1", "d2", "d3"]),
            prop::collection::vec(sample, 1..8),
        ),
        1..6,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (dev, s))| batch(i as i64 + 1, dev, s, false))
            .collect::<Vec<Entry>>()
    });
    TestRunner::new(Config {
        cases: 1500,
        rng_seed: RngSeed::Fixed(0x9a5d_0014),
        failure_persistence: None,
        ..Config::default()
    })
    .run(&(entries, 96usize..4096), |(entries, limit)| {
        for m in encode_messages(&entries, "gw-1", limit, V2_CBOR) {
            let Body::Data {
                historical,
                devices,
            } = &m.body
            else {
                continue;
            };
            for seq in [0, 7, u64::MAX] {
                let mut want = Vec::new();
                ciborium::into_writer(&v2::data_cbor("gw-1", seq, *historical, devices), &mut want)
                    .unwrap();
                prop_assert_eq!(hex(&m.build("gw-1", seq).unwrap()), hex(&want));
                // What the packer measures is what the writer writes, JSON as CBOR.
                let counted = v2::len(Encoding::Cbor, "gw-1", seq, *historical, devices);
                prop_assert_eq!(counted.unwrap(), want.len());
                let json = v2::build(Encoding::Json, "gw-1", seq, *historical, devices).unwrap();
                let counted = v2::len(Encoding::Json, "gw-1", seq, *historical, devices);
                prop_assert_eq!(counted.unwrap(), json.len());
                // The JSON writer (no value tree) gives the tree's bytes through serde_json.
                let tree = v2::data_json("gw-1", seq, *historical, devices);
                let want = serde_json::to_vec(&tree).unwrap();
                prop_assert_eq!(
                    String::from_utf8_lossy(&json),
                    String::from_utf8_lossy(&want)
                );
            }
        }
        Ok(())
    })
    .unwrap();
}
