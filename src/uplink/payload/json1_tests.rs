//! `json1` writes the very bytes the documented object gives through `serde_json::Value` (the
//! encoder before issue 13's round 7, kept here as the reference): every wire fixture of the
//! payload tests, backlog and live, bad readings, units, text and non-finite values.

use serde_json::{json, Map, Value as Json};

use super::tests::{badq, batch, device, good, T0};
use super::*;
use crate::model::BadReason;
use crate::time::rfc3339_ms;

fn tree(gateway: &str, seq: u64, historical: bool, devices: &[DeviceGroup]) -> Json {
    let data: Vec<Json> = devices
        .iter()
        .map(|g| {
            let mut dev = Map::new();
            dev.insert("dev".into(), Json::from(&*g.device));
            let units: Map<String, Json> = g
                .points
                .iter()
                .filter_map(|(p, u)| u.as_ref().map(|u| (p.to_string(), Json::from(&**u))))
                .collect();
            if !units.is_empty() {
                dev.insert("unit".into(), Json::Object(units));
            }
            let reads: Vec<Json> = sorted_reads(g)
                .into_iter()
                .map(|r| {
                    let mut v = Map::new();
                    let mut bad = Map::new();
                    for (i, item) in &r.items {
                        let name = g.points[*i].0.to_string();
                        match item {
                            Ok(x) => {
                                v.insert(name, value_json(x));
                            }
                            Err(reason) => {
                                bad.insert(name, Json::from(reason.as_str()));
                            }
                        }
                    }
                    let mut o = Map::new();
                    o.insert("t".into(), Json::from(rfc3339_ms(r.t_ms)));
                    o.insert("v".into(), Json::Object(v));
                    if !bad.is_empty() {
                        o.insert("bad".into(), Json::Object(bad));
                    }
                    Json::Object(o)
                })
                .collect();
            dev.insert("reads".into(), Json::Array(reads));
            Json::Object(dev)
        })
        .collect();
    json!({"gw": gateway, "seq": seq, "hist": historical, "data": data})
}

fn groups(entries: &[crate::outbox::Entry]) -> Vec<(bool, Vec<DeviceGroup>)> {
    let mut out = Vec::new();
    for limit in [1usize << 20, 600, 200] {
        for p in encode_messages(entries, "gw-1", limit, Encoding::Json) {
            if let Body::Data {
                historical,
                devices,
            } = p.body
            {
                out.push((historical, devices));
            }
        }
    }
    out
}

#[test]
fn the_direct_writer_gives_the_bytes_of_the_value_tree() {
    let odd = |point: &str, value: Value| good(point, value, None, T0 + 7);
    let mut entries = Vec::new();
    for (i, d) in ["dev-a", "dev-b", "dév \"q\""].iter().enumerate() {
        entries.push(device(i as i64 + 1, d, 12, T0 + i as u64 * 1000));
    }
    entries.push(batch(
        10,
        "dev-a",
        vec![
            badq("pressure", BadReason::Timeout, Some("kPa"), T0 + 1500),
            odd("zeta", Value::Float(f64::NAN)),
            odd("alpha", Value::Float(f64::NEG_INFINITY)),
            odd("Beta", Value::Float(f64::from(4.2f32))),
            odd("mid", Value::Float(-0.0)),
            odd("int", Value::Int(-7)),
            odd("uint", Value::UInt(u64::MAX)),
            odd("on", Value::Bool(true)),
            odd("txt", Value::Text("a\u{1}b\n".into())),
        ],
        false,
    ));
    let mut hist = device(11, "dev-h", 5, T0 - 60_000);
    hist.historical = true;
    entries.push(hist);
    let all = groups(&entries);
    assert!(all.len() > 5, "{}", all.len());
    for (historical, devices) in all {
        for seq in [0, 42, u64::MAX] {
            let want = serde_json::to_vec(&tree("gw-1", seq, historical, &devices)).unwrap();
            let got = json1::to_vec("gw-1", seq, historical, &devices).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want)
            );
            assert_eq!(json1::len("gw-1", seq, historical, &devices), want.len());
        }
    }
}

/// A group keeps its written object only until it changes: a message grown sample by sample
/// (new device, new point, another read time, a unit change, a repeated point), measured and
/// written after every step and through clones, always gives what one pass over it writes.
#[test]
fn a_group_written_once_is_written_again_after_it_changes() {
    let samples = [
        ("dev-a", good("p", Value::Float(1.25), Some("kPa"), T0)),
        ("dev-b", good("p", Value::Float(2.5), Some("kPa"), T0)),
        ("dev-a", good("t", Value::Float(21.0), Some("°C"), T0)),
        (
            "dev-a",
            good("p", Value::Float(1.5), Some("kPa"), T0 + 1000),
        ),
        (
            "dev-a",
            good("p", Value::Float(1.75), Some("bar"), T0 + 1000),
        ),
        ("dev-b", badq("q", BadReason::Timeout, None, T0)),
        ("dev-a", good("p", Value::Float(12345.678), Some("kPa"), T0)),
        ("dev-c", good("on", Value::Bool(true), None, T0 + 5)),
    ];
    let mut m = Packed::data(false, Wire::from(Encoding::Json));
    for (device, s) in &samples {
        let before = m.clone();
        m.add_sample(&Arc::from(*device), s);
        for (what, p) in [("grown", &m), ("clone", &m.clone()), ("before", &before)] {
            let Body::Data { devices, .. } = &p.body else {
                unreachable!()
            };
            for _ in 0..2 {
                let want = json1::whole("gw-1", u64::MAX, false, devices).unwrap();
                assert_eq!(
                    json1::len("gw-1", u64::MAX, false, devices),
                    want.len(),
                    "{what}"
                );
                assert_eq!(
                    json1::to_vec("gw-1", u64::MAX, false, devices).unwrap(),
                    want,
                    "{what}"
                );
            }
        }
    }
}

/// A device group as the packer would hold it, or could: points by index with their units,
/// reads as (time, [(point index, value or bad reason)]).
type Items = Vec<(usize, Result<Value, String>)>;

fn group(device: &str, points: &[(&str, Option<&str>)], reads: Vec<(i64, Items)>) -> DeviceGroup {
    DeviceGroup {
        device: Arc::from(device),
        points: Arc::new(
            points
                .iter()
                .map(|(p, u)| (Arc::from(*p), u.map(Arc::from)))
                .collect(),
        ),
        reads: Arc::new(
            reads
                .into_iter()
                .map(|(t_ms, items)| ReadGroup { t_ms, items })
                .collect(),
        ),
        json: Written::default(),
        seen: Written::default(),
    }
}

/// `device_bytes` gives `Device`'s serde bytes, and a message of the group the tree's.
fn assert_same(what: &str, g: &DeviceGroup) {
    let want = json1::device_reference(g).unwrap();
    let got = json1::device_bytes(g).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "{what}"
    );
    let in_range = g
        .reads
        .iter()
        .all(|r| r.items.iter().all(|(i, _)| *i < g.points.len()));
    if in_range {
        let devices = std::slice::from_ref(g);
        let tree = serde_json::to_vec(&tree("gw", 3, false, devices)).unwrap();
        assert_eq!(
            json1::to_vec("gw", 3, false, devices).unwrap(),
            tree,
            "{what}"
        );
        assert_eq!(json1::len("gw", 3, false, devices), tree.len(), "{what}");
    }
}

fn ok(i: usize, v: Value) -> (usize, Result<Value, String>) {
    (i, Ok(v))
}

fn bad(i: usize, why: &str) -> (usize, Result<Value, String>) {
    (i, Err(why.to_string()))
}

const T: i64 = T0 as i64;

#[test]
fn the_device_writer_gives_the_serde_bytes_table() {
    let f = |x: f64| Value::Float(x);
    let cases: Vec<(&str, DeviceGroup)> = vec![
        ("no reads", group("d", &[], vec![])),
        (
            "read with no items",
            group("d", &[("p", None)], vec![(T, vec![])]),
        ),
        (
            "several points, units, bad",
            group(
                "dev-a",
                &[
                    ("pressure", Some("kPa")),
                    ("temp", Some("°C")),
                    ("flow", None),
                    ("Zed", Some("m3/h")),
                ],
                vec![
                    (
                        T,
                        vec![
                            ok(0, f(101.325)),
                            ok(1, f(21.5)),
                            bad(2, "timeout"),
                            ok(3, f(0.5)),
                        ],
                    ),
                    (
                        T + 1000,
                        vec![bad(0, "crc"), bad(1, "range"), ok(2, f(3.0))],
                    ),
                    (T + 2000, vec![bad(3, "timeout")]),
                ],
            ),
        ),
        (
            "points out of name order",
            group(
                "d",
                &[
                    ("z", None),
                    ("b", Some("u")),
                    ("a", None),
                    ("B", None),
                    ("", None),
                ],
                vec![(
                    T,
                    vec![
                        ok(0, f(1.0)),
                        ok(4, f(2.0)),
                        ok(1, f(3.0)),
                        ok(3, f(4.0)),
                        ok(2, f(5.0)),
                    ],
                )],
            ),
        ),
        (
            "duplicate point names, the last wins",
            group(
                "d",
                &[
                    ("p", Some("kPa")),
                    ("a", None),
                    ("p", Some("bar")),
                    ("p", None),
                    ("a", Some("x")),
                    ("q", Some("1")),
                    ("q", None),
                ],
                vec![
                    (
                        T,
                        vec![
                            ok(2, f(2.0)),
                            ok(0, f(1.0)),
                            bad(3, "first"),
                            ok(1, Value::Int(1)),
                            bad(0, "second"),
                            ok(4, Value::Int(2)),
                            ok(3, f(3.0)),
                            ok(5, Value::Bool(false)),
                            bad(6, "q bad"),
                        ],
                    ),
                    (T + 5, vec![ok(0, f(1.0)), ok(0, f(2.0)), ok(0, f(3.0))]),
                    (T + 6, vec![bad(2, "x"), bad(2, "y"), ok(2, f(1.0))]),
                ],
            ),
        ),
        (
            "unsorted and equal read times",
            group(
                "d",
                &[("p", None), ("q", None)],
                vec![
                    (T + 3000, vec![ok(0, f(3.0))]),
                    (T, vec![ok(0, f(0.0))]),
                    (T + 1000, vec![ok(0, f(1.0))]),
                    (T, vec![ok(1, f(10.0))]),
                    (T - 1, vec![ok(1, f(-1.0))]),
                ],
            ),
        ),
        (
            "read times across days, years and the epoch",
            group(
                "d",
                &[("p", None)],
                [
                    T,
                    T + 86_399_999,
                    T + 86_400_000,
                    T + 86_400_001,
                    T + 3_600_000,
                    -1,
                    0,
                    1,
                    -86_400_000,
                    -86_400_001,
                    951_782_400_000,
                    253_402_300_799_999,
                    253_402_300_800_000,
                    253_402_300_800_123,
                    -62_167_219_200_001,
                    -62_167_219_200_000,
                    i64::MIN,
                    i64::MIN + 1,
                    i64::MAX,
                    i64::MAX - 1,
                ]
                .into_iter()
                .map(|t| (t, vec![ok(0, f(1.0))]))
                .collect(),
            ),
        ),
        (
            "strings needing escapes",
            group(
                "dév \"q\" \\ \u{1}",
                &[
                    ("a\"b", Some("\\")),
                    ("tab\there", Some("new\nline")),
                    ("ctl\u{0}\u{1f}\u{7f}", Some("\u{8}\u{c}\r")),
                    ("€ 😀 é", Some("°C")),
                    ("/slash", Some("</script>")),
                ],
                vec![(
                    T,
                    vec![
                        ok(0, Value::Text("say \"hi\"".into())),
                        ok(1, Value::Text("back\\slash\n\r\t\u{8}\u{c}".into())),
                        ok(2, Value::Text("\u{0}\u{1}\u{1f}\u{7f}\u{80}".into())),
                        ok(3, Value::Text("ünïcødé ✓ 😀".into())),
                        bad(4, "bad \"reason\"\n"),
                        ok(4, Value::Text(String::new())),
                    ],
                )],
            ),
        ),
        (
            "every kind of value",
            group(
                "d",
                &[
                    ("b0", None),
                    ("b1", None),
                    ("i0", None),
                    ("i1", None),
                    ("i2", None),
                    ("i3", None),
                    ("u0", None),
                    ("u1", None),
                    ("t", None),
                    ("nan", None),
                    ("inf", None),
                    ("ninf", None),
                ],
                vec![(
                    T,
                    vec![
                        ok(0, Value::Bool(false)),
                        ok(1, Value::Bool(true)),
                        ok(2, Value::Int(i64::MIN)),
                        ok(3, Value::Int(i64::MAX)),
                        ok(4, Value::Int(0)),
                        ok(5, Value::Int(-1)),
                        ok(6, Value::UInt(0)),
                        ok(7, Value::UInt(u64::MAX)),
                        ok(8, Value::Text("text".into())),
                        ok(9, f(f64::NAN)),
                        ok(10, f(f64::INFINITY)),
                        ok(11, f(f64::NEG_INFINITY)),
                    ],
                )],
            ),
        ),
        (
            "a read naming a point the group does not have",
            group(
                "d",
                &[("p", Some("u"))],
                vec![(T, vec![ok(0, f(1.0)), ok(7, f(2.0)), bad(9, "x")])],
            ),
        ),
    ];
    for (what, g) in &cases {
        assert_same(what, g);
    }
}

/// Floats through `meant` and `serde_json`'s formatting: whole numbers (`1.0`), exponent
/// forms, signed zero, f32-derived values, non-finite values as strings.
#[test]
fn the_device_writer_formats_floats_as_serde_json() {
    let floats = [
        0.1,
        1.0,
        -1.0,
        0.0,
        -0.0,
        1e21,
        1e20,
        1e22,
        1e-7,
        1e-6,
        1e-5,
        123456789.123,
        12345.678,
        1e15,
        1e16,
        1e15 + 0.5,
        9007199254740993.0,
        f64::from(0.1f32),
        f64::from(4.2f32),
        f64::from(101.325f32),
        f64::from(-899.8f32),
        f64::from(f32::MAX),
        f64::from(f32::MIN_POSITIVE),
        f64::from(1e-45f32),
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        5e-324,
        0.30000000000000004,
        400.20000000000005,
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    for x in floats {
        let g = group("d", &[("v", None)], vec![(T, vec![ok(0, Value::Float(x))])]);
        assert_same(&format!("{x:?}"), &g);
    }
    let want = |x: f64, s: &str| {
        let g = group("d", &[("v", None)], vec![(0, vec![ok(0, Value::Float(x))])]);
        let b = json1::device_bytes(&g).unwrap();
        let body = format!(
            "{{\"dev\":\"d\",\"reads\":[{{\"t\":\"1970-01-01T00:00:00.000Z\",\"v\":{{\"v\":{s}}}}}]}}"
        );
        assert_eq!(String::from_utf8_lossy(&b), body, "{x:?}");
    };
    want(1.0, "1.0");
    want(-0.0, "-0.0");
    want(0.1, "0.1");
    want(1e21, "1e+21");
    want(1e-7, "1e-7");
    want(123456789.123, "123456789.123");
    want(f64::from(0.1f32), "0.1");
    want(f64::NAN, "\"NaN\"");
    want(f64::INFINITY, "\"inf\"");
    want(f64::NEG_INFINITY, "\"-inf\"");
}

/// A deterministic sweep: random doubles (any bits), f32-derived values and integers, and
/// groups of random names (few, so often repeated), units, items and times.
#[test]
fn the_device_writer_gives_the_serde_bytes_sweep() {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut items = Vec::new();
    for k in 0..4000 {
        let r = next();
        let v = match k % 6 {
            0 => Value::Float(f64::from_bits(r)),
            1 => Value::Float(f64::from(f32::from_bits(r as u32))),
            2 => Value::Float((r % 2_000_000) as f64 / 1000.0 - 1000.0),
            3 => Value::Float(f64::from((r % 2_000_000) as f32 / 100.0)),
            4 => Value::Int(r as i64 >> (r % 64)),
            _ => Value::UInt(r >> (r % 64)),
        };
        items.push(ok(k % 4, v));
    }
    let g = group(
        "d",
        &[("a", None), ("b", None), ("c", None), ("d", None)],
        items
            .chunks(4)
            .enumerate()
            .map(|(k, c)| (T + k as i64, c.to_vec()))
            .collect(),
    );
    assert_same("random values", &g);

    let names = ["", "a", "b", "B", "é", "a\"", "aa", "p\n"];
    let units = [None, Some("kPa"), Some("b\\ar"), Some("°C")];
    for round in 0..300 {
        let n = 1 + (next() % 8) as usize;
        let points: Vec<(&str, Option<&str>)> = (0..n)
            .map(|_| {
                (
                    names[(next() % names.len() as u64) as usize],
                    units[(next() % units.len() as u64) as usize],
                )
            })
            .collect();
        let reads = (0..next() % 5)
            .map(|_| {
                let t = T + (next() % 3) as i64 * 43_200_000 + (next() % 5) as i64;
                let items = (0..next() % 10)
                    .map(|_| {
                        let i = (next() % n as u64) as usize;
                        match next() % 4 {
                            0 => bad(i, names[(next() % names.len() as u64) as usize]),
                            1 => ok(i, Value::Int(next() as i64)),
                            _ => ok(i, Value::Float((next() % 100_000) as f64 / 100.0)),
                        }
                    })
                    .collect();
                (t, items)
            })
            .collect();
        assert_same(&format!("round {round}"), &group("d", &points, reads));
    }
}
