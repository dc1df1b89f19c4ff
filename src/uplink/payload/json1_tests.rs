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
