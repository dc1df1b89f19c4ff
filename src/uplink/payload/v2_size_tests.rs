//! Format 2 of `data` messages, sizes on whole workloads (deterministic byte counts, not
//! timing): the peer benchmark's W1 (the bars of issue 13: JSON <= 15, CBOR <= 6 payload
//! bytes per reading, asserted) and a 5-minute station's bytes per day, live and as backlog,
//! in both formats and encodings (quoted in docs/mqtt.md and bench-results/payload_format2.txt).

use super::tests::{batch, flatten, good, T0, WIRES};
use super::*;
use crate::model::Value;
use crate::outbox::{Entry, EntryBody};

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
/// The peer benchmark's W1 map and values (bench/workload.py): device `devNN`, f0..f3 f32,
/// t0/t1 u32 totalizers, i0..i3 int16 x 0.1, read times a few ms apart within a cycle.
fn w1_cycle(k: u64) -> Vec<Entry> {
    (1..=20u64)
        .map(|dev| {
            let t = T0 + k * 1000 + dev * 2;
            let base = (dev * 10_000 + k) as f32;
            let mut s = vec![
                good("f0", f32v(base + 0.5), None, t),
                good("f1", f32v(-(base + 0.25)), None, t),
                good("f2", f32v(base + 0.75), None, t),
                good("f3", f32v(base / 8.0 + 1000.0), None, t),
                good(
                    "t0",
                    Value::UInt(3_000_000_000 + dev * 100_000 + k),
                    None,
                    t,
                ),
                good("t1", Value::UInt(dev * 100_000 + 3 * k), None, t),
            ];
            for j in 0..4u64 {
                let raw = ((dev * 1000 + j * 250 + k) % 20_000) as i64 - 10_000;
                let v =
                    crate::decimal::affine(crate::decimal::Decimal::from_int(raw.into()), 0.1, 0.0)
                        .unwrap_or(f64::NAN);
                s.push(good(&format!("i{j}"), Value::Float(v), None, t));
            }
            let mut e = batch(dev as i64, &format!("dev{dev:02}"), s, false);
            e.id = (k * 20 + dev) as i64;
            e
        })
        .collect()
}

/// Payload bytes of `cycles` packed one cycle at a time (W1: the consumer commits a cycle, the
/// forwarder seals it) into `max` byte messages, with a realistic sequence number.
fn bytes_of(cycles: &[Vec<Entry>], wire: Wire, max: usize) -> (usize, usize) {
    let mut bytes = 0;
    let mut msgs = 0;
    for (k, c) in cycles.iter().enumerate() {
        for m in encode_messages(c, "bench", max, wire) {
            let b = m.build("bench", 1_764_000_000_000_000 + k as u64).unwrap();
            assert!(b.len() <= max);
            bytes += b.len();
            msgs += 1;
        }
    }
    (bytes, msgs)
}

#[test]
fn w1_bytes_per_reading_meet_the_bars() {
    let cycles: Vec<Vec<Entry>> = (0..60).map(w1_cycle).collect();
    let readings = (60 * 200) as f64;
    let mut per = Vec::new();
    for wire in WIRES {
        let (b, m) = bytes_of(&cycles, wire, 1024);
        let r = b as f64 / readings;
        println!(
            "W1 {:?} format {:?}: {m} messages, {b} B, {r:.2} B/reading",
            wire.encoding, wire.format
        );
        per.push(r);
    }
    assert!(per[2] <= 15.0, "JSON v2 {:.2} B/reading", per[2]);
    assert!(per[3] <= 6.0, "CBOR v2 {:.2} B/reading", per[3]);
    // And the readings are all there.
    for wire in [V2_JSON, V2_CBOR] {
        for c in cycles.iter().take(3) {
            let msgs = encode_messages(c, "bench", 1024, wire);
            let mut got = std::collections::BTreeSet::new();
            for m in &msgs {
                got.extend(flatten(&decode(&m.build("bench", 1).unwrap()).unwrap()));
            }
            let mut want = std::collections::BTreeSet::new();
            for m in encode_messages(c, "bench", 64 * 1024, Encoding::Json) {
                want.extend(flatten(&decode(&m.build("bench", 1).unwrap()).unwrap()));
            }
            assert_eq!(got, want, "{wire:?}");
        }
    }
}

/// A 5-minute station: 6 devices, 50 points, values that barely change (two volume
/// correctors of one profile, two pressure transmitters, a flow computer, a cabinet RTU).
fn station_cycle(k: u64) -> Vec<Entry> {
    let t = T0 + k * 300_000;
    let wiggle = |x: f64, step: f64| x + ((k * 7919) % 5) as f64 * step - 2.0 * step;
    let dec = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
    let mut out = Vec::new();
    let mut id = (k * 10) as i64;
    let mut push = |dev: &str, s: Vec<Sample>| {
        id += 1;
        out.push(batch(id, dev, s, false));
    };
    for (n, dev) in ["evc1", "evc2"].iter().enumerate() {
        let n = n as u64;
        push(
            dev,
            vec![
                good(
                    "volume_standard",
                    Value::UInt(8_123_456 + n * 1_000_000 + k * 3),
                    Some("m3"),
                    t,
                ),
                good(
                    "volume_measured",
                    Value::UInt(1_523_456 + n * 200_000 + k),
                    Some("m3"),
                    t,
                ),
                good("volume_error", Value::UInt(12 + n), Some("m3"), t),
                good(
                    "flow_standard",
                    f32v(wiggle(38.5, 0.1) as f32),
                    Some("m3/h"),
                    t,
                ),
                good(
                    "flow_measured",
                    f32v(wiggle(9.2, 0.02) as f32),
                    Some("m3/h"),
                    t,
                ),
                good(
                    "pressure",
                    f32v(wiggle(4.215, 0.001) as f32),
                    Some("bar"),
                    t,
                ),
                good(
                    "temperature",
                    f32v(wiggle(12.4, 0.1) as f32),
                    Some("degC"),
                    t,
                ),
                good(
                    "conversion_factor",
                    f32v(wiggle(4.1875, 0.0001) as f32),
                    None,
                    t,
                ),
                good("battery", Value::UInt(87), Some("%"), t),
                good("status", Value::UInt(0), None, t),
                good("alarm_word", Value::UInt(0), None, t),
                good("day_volume", Value::UInt(224 + k * 3), Some("m3"), t),
            ],
        );
    }
    for (n, dev) in ["pt_inlet", "pt_outlet"].iter().enumerate() {
        let p = if n == 0 { 16.42 } else { 4.21 };
        push(
            dev,
            vec![
                good(
                    "pressure",
                    Value::Float(dec(wiggle(p, 0.01), 2)),
                    Some("bar"),
                    t + 40,
                ),
                good(
                    "temperature",
                    Value::Float(dec(wiggle(11.8, 0.1), 1)),
                    Some("degC"),
                    t + 40,
                ),
                good("status", Value::UInt(0), None, t + 40),
            ],
        );
    }
    push(
        "fc1",
        vec![
            good(
                "volume_standard",
                Value::Float(18_234_567.25 + k as f64 * 6.5),
                Some("m3"),
                t + 90,
            ),
            good(
                "energy",
                Value::Float(201_345.5 + k as f64 * 0.75),
                Some("MWh"),
                t + 90,
            ),
            good(
                "mass",
                Value::Float(13_567_890.0 + k as f64 * 5.0),
                Some("kg"),
                t + 90,
            ),
            good(
                "flow_standard",
                f32v(wiggle(77.0, 0.1) as f32),
                Some("m3/h"),
                t + 90,
            ),
            good(
                "pressure",
                f32v(wiggle(16.4, 0.01) as f32),
                Some("bar"),
                t + 90,
            ),
            good(
                "temperature",
                f32v(wiggle(11.9, 0.1) as f32),
                Some("degC"),
                t + 90,
            ),
            good(
                "density",
                f32v(wiggle(0.7412, 0.0001) as f32),
                Some("kg/m3"),
                t + 90,
            ),
            good(
                "calorific_value",
                f32v(wiggle(39.82, 0.01) as f32),
                Some("MJ/m3"),
                t + 90,
            ),
            good("co2", f32v(1.12), Some("mol%"), t + 90),
            good("n2", f32v(0.85), Some("mol%"), t + 90),
            good(
                "compressibility",
                f32v(wiggle(0.9712, 0.0001) as f32),
                None,
                t + 90,
            ),
            good(
                "wobbe_index",
                f32v(wiggle(50.1, 0.01) as f32),
                Some("MJ/m3"),
                t + 90,
            ),
            good("status", Value::UInt(0), None, t + 90),
            good("alarm_word", Value::UInt(0), None, t + 90),
        ],
    );
    push(
        "rtu",
        vec![
            good(
                "gas_ppm",
                Value::UInt(if k % 37 == 0 { 3 } else { 0 }),
                Some("ppm"),
                t + 120,
            ),
            good("door_open", Value::Bool(false), None, t + 120),
            good("mains_ok", Value::Bool(true), None, t + 120),
            good(
                "cabinet_temp",
                Value::Float(dec(wiggle(18.5, 0.1), 1)),
                Some("degC"),
                t + 120,
            ),
            good(
                "battery_voltage",
                Value::Float(dec(wiggle(13.62, 0.01), 2)),
                Some("V"),
                t + 120,
            ),
            good("valve_position", Value::UInt(100), Some("%"), t + 120),
        ],
    );
    out
}

/// What the station costs per day on the air, live (one cycle per message, every 5 minutes)
/// and as backlog (a day of cycles drained at once, packed into full messages).
#[test]
fn station_bytes_per_day() {
    let day: Vec<Vec<Entry>> = (0..288).map(station_cycle).collect();
    assert_eq!(
        day[0]
            .iter()
            .map(|e| match &e.body {
                EntryBody::Batch(b) => b.samples.len(),
                _ => 0,
            })
            .sum::<usize>(),
        50
    );
    let mut live = Vec::new();
    for wire in WIRES {
        let (b, m) = bytes_of(&day, wire, 1024);
        let backlog: Vec<Entry> = day
            .iter()
            .flatten()
            .cloned()
            .map(|mut e| {
                e.historical = true;
                e
            })
            .collect();
        let (bb, bm) = bytes_of(&[backlog], wire, 1024);
        println!(
            "station {:?} format {:?}: live {m} messages {b} B/day ({:.1} B/reading), \
             backlog {bm} messages {bb} B/day ({:.1} B/reading)",
            wire.encoding,
            wire.format,
            b as f64 / (288.0 * 50.0),
            bb as f64 / (288.0 * 50.0)
        );
        live.push((b, bb));
    }
    // Format 2 never costs more than format 1, live or as backlog.
    assert!(live[2].0 < live[0].0 && live[3].0 < live[1].0, "{live:?}");
    assert!(live[2].1 < live[0].1 && live[3].1 < live[1].1, "{live:?}");
    if let Ok(dir) = std::env::var("GASDTU_DUMP_STATION") {
        // For measuring a preset-dictionary compressor outside the crate (docs/mqtt.md).
        for (k, c) in day.iter().enumerate().take(288) {
            for (i, m) in encode_messages(c, "bench", 1024, V2_CBOR)
                .iter()
                .enumerate()
            {
                let b = m.build("bench", k as u64).unwrap();
                let _ = std::fs::write(format!("{dir}/live-{k:03}-{i}.cbor"), b);
            }
        }
    }
}

/// Why the daemon on benches/flash_wear.rs's W1 sends one JSON format 1 message per device
/// and cycle (20 a cycle) and one CBOR message per four devices: the byte limit, not the
/// packer. A device read with that bench's point names and units is 546 JSON bytes (two do
/// not fit in 1024 with the header) and 276 CBOR bytes (four fit). Format 2 (names once per
/// message) carries several devices in JSON too.
#[test]
fn w1_bench_device_per_message_is_the_byte_limit() {
    const POINTS: [(&str, &str); 10] = [
        ("flow_standard", "Sm3/h"),
        ("flow_measured", "m3/h"),
        ("pressure", "kPa"),
        ("temperature", "degC"),
        ("volume_standard", "Sm3"),
        ("volume_measured", "m3"),
        ("battery", "%"),
        ("ambient", "degC"),
        ("line_temperature", "degC"),
        ("cabinet", "degC"),
    ];
    let cycle: Vec<Entry> = (1..=20u64)
        .map(|dev| {
            let t = T0 + dev * 2;
            let s = POINTS
                .iter()
                .enumerate()
                .map(|(i, (p, u))| {
                    let v = match i {
                        0..=3 => f32v(1234.567 + dev as f32 + i as f32 * 0.125),
                        4 | 5 => Value::UInt(3_000_000 + dev * 1000),
                        _ => Value::Float(f64::from(200 + i as i32) / 10.0),
                    };
                    good(p, v, Some(u), t)
                })
                .collect();
            let mut e = batch(dev as i64, &format!("dev{dev:02}"), s, false);
            e.id = dev as i64;
            e
        })
        .collect();
    // Bytes of the first `n` devices in one message, with a small (real) sequence number.
    let size = |n: usize, wire: Wire| {
        let m = encode_messages(&cycle[..n], "fw-w1-json", 64 * 1024, wire);
        assert_eq!(m.len(), 1);
        m[0].build("fw-w1-json", 1200).unwrap().len()
    };
    let mut got = Vec::new();
    for wire in WIRES {
        let msgs = encode_messages(&cycle, "fw-w1-json", 1024, wire);
        let per: Vec<usize> = msgs.iter().map(|m| m.entries.len()).collect();
        println!(
            "{wire:?}: one device {} B, {} messages {per:?}",
            size(1, wire),
            msgs.len()
        );
        got.push((size(1, wire), msgs.len()));
    }
    assert_eq!(got, vec![(546, 20), (276, 5), (392, 3), (258, 2)]);
    // JSON format 1: two devices do not fit even with a 4-digit sequence number, so no
    // packer change can put more than one W1 device in a 1024-byte message.
    assert!(size(2, WIRES[0]) > 1024, "{}", size(2, WIRES[0]));
    // CBOR format 1: a fifth device would not fit either.
    assert!(size(5, WIRES[1]) > 1024, "{}", size(5, WIRES[1]));
}
