//! Benchmark (deterministic byte counts, no timing): Sparkplug B bytes per reading on the peer
//! benchmark's W1 (20 devices x 10 points: 4 f32, 2 u32 totalizers, 4 i16 x 0.1; the map and
//! values of src/uplink/payload/v2_size_tests.rs, 60 cycles), to set next to the JSON/CBOR
//! figures of bench-results/payload_format2.txt. One DDATA per device and cycle (Sparkplug
//! addresses data per device), every value changed (W1's values move every cycle), by alias,
//! each metric with its read time. Also the one-time births and a variant without per-metric
//! timestamps (what they cost). Appends to bench-results/sparkplug_bytes.txt.
//!
//! Run: `cargo bench --bench sparkplug_bytes`.

use std::fmt::Write as _;

use gasdtu::model::Value;
use gasdtu::uplink::sparkplug::{
    build, dbirth, ddata, nbirth, EdgeNode, Exceptions, MessageType, MetricUpdate, NodeState, Seq,
    Update,
};

const T0: u64 = 1_740_823_200_000; // 2025-03-01T10:00:00Z, as the format 2 size tests

fn config() -> String {
    let mut c = String::from(
        "[gateway]\nid = \"bench\"\nstate_dir = \"/tmp/x\"\nprofile_dirs = []\n[buses.b]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = 1502\n",
    );
    for dev in 1..=20 {
        let _ = write!(c, "[devices.dev{dev:02}]\nbus = \"b\"\nunit = {dev}\n");
        for (j, a) in [0, 2, 4, 6].iter().enumerate() {
            let _ = writeln!(
                c,
                "points.f{j} = {{ table = \"holding\", address = {a}, type = \"f32\" }}"
            );
        }
        for (j, a) in [8, 10].iter().enumerate() {
            let _ = writeln!(
                c,
                "points.t{j} = {{ table = \"holding\", address = {a}, type = \"u32\" }}"
            );
        }
        for j in 0..4 {
            let _ = writeln!(
                c,
                "points.i{j} = {{ table = \"holding\", address = {}, type = \"i16\", scale = 0.1 }}",
                12 + j
            );
        }
    }
    c
}

fn point(name: String, at_ms: u64, v: Value) -> MetricUpdate {
    MetricUpdate {
        name,
        at_ms,
        update: Update::Point {
            value: Some(v),
            good: true,
        },
    }
}

/// W1's values for device `dev` in cycle `k` (as v2_size_tests::w1_cycle).
fn w1(dev: u64, k: u64) -> Vec<MetricUpdate> {
    let t = T0 + k * 1000 + dev * 2;
    let base = (dev * 10_000 + k) as f32;
    let f = |x: f32| Value::Float(f64::from(x));
    let mut s = vec![
        point("f0".into(), t, f(base + 0.5)),
        point("f1".into(), t, f(-(base + 0.25))),
        point("f2".into(), t, f(base + 0.75)),
        point("f3".into(), t, f(base / 8.0 + 1000.0)),
        point(
            "t0".into(),
            t,
            Value::UInt(3_000_000_000 + dev * 100_000 + k),
        ),
        point("t1".into(), t, Value::UInt(dev * 100_000 + 3 * k)),
    ];
    for j in 0..4u64 {
        let raw = ((dev * 1000 + j * 250 + k) % 20_000) as i64 - 10_000;
        let v = gasdtu::decimal::affine(gasdtu::decimal::Decimal::from_int(raw.into()), 0.1, 0.0)
            .unwrap_or(f64::NAN);
        s.push(point(format!("i{j}"), t, Value::Float(v)));
    }
    s
}

fn main() {
    let cfg = match gasdtu::config::parse_str(&config(), "w1.toml", std::path::Path::new("/")) {
        Ok(l) => l.config,
        Err(e) => panic!("{e:?}"),
    };
    let model = build(&cfg).expect("model");
    let node = EdgeNode::new("bench", "bench").expect("ids");
    let mut seq = Seq::new();
    let state = NodeState {
        transport: "tcp".into(),
        reconnects: 0,
        buffer_depth: 0,
        modem: None,
    };
    let nb = nbirth(&model, 0, &state, T0, &mut seq).expect("nbirth");
    let mut birth_bytes = 0;
    let mut birth_topic = 0;
    let mut ex = Exceptions::new();
    for dev in &model.devices {
        let d: u64 = dev.device[3..].parse().expect("devNN");
        let cur = w1(d, 0);
        let b = dbirth(dev, &cur, T0, &mut seq).expect("dbirth");
        birth_bytes += b.len();
        birth_topic += node
            .device_topic(MessageType::DBirth, &dev.device)
            .expect("topic")
            .len();
        ex.born(&dev.device, &cur);
    }
    let (mut bytes, mut topic, mut msgs, mut readings, mut bytes_no_ts, mut max_msg) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    for k in 1..=60u64 {
        for dev in &model.devices {
            let d: u64 = dev.device[3..].parse().expect("devNN");
            let changed = ex.changed(&dev.device, w1(d, k));
            readings += changed.len();
            let b = ddata(dev, &changed, false, T0 + k * 1000 + 500, &mut seq).expect("ddata");
            bytes += b.len();
            max_msg = max_msg.max(b.len());
            topic += node
                .device_topic(MessageType::DData, &dev.device)
                .expect("topic")
                .len();
            msgs += 1;
            // The same without per-metric timestamps (the payload's own timestamp only).
            let mut bare = changed.clone();
            for (u, _) in &mut bare {
                u.at_ms = 0;
            }
            let b2 = ddata(dev, &bare, false, T0 + k * 1000 + 500, &mut seq).expect("ddata");
            // at_ms = 0 still writes a 2-byte timestamp field per metric: subtract it.
            bytes_no_ts += b2.len() - 2 * changed.len();
        }
    }
    let r = readings as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Sparkplug B bytes per reading, W1 (issue 14), deterministic counts"
    );
    let _ = writeln!(
        out,
        "# cargo bench --bench sparkplug_bytes; date: {}",
        gasdtu::time::rfc3339_ms(gasdtu::time::now_ms())
    );
    let _ = writeln!(out, "# W1 map and values of src/uplink/payload/v2_size_tests.rs: 20 devices x 10 points, 60 cycles; one DDATA per device and cycle, all values changed, by alias, metric timestamps = read times");
    let _ = writeln!(out, "W1 Sparkplug DDATA: {msgs} messages, {readings} readings, {bytes} B payload, {:.2} B/reading (+topic {:.2}), largest message {max_msg} B", bytes as f64 / r, (bytes + topic) as f64 / r);
    let _ = writeln!(out, "W1 Sparkplug DDATA without per-metric timestamps: {:.2} B/reading (what the read-time stamps cost: {:.2} B/reading)", bytes_no_ts as f64 / r, (bytes - bytes_no_ts) as f64 / r);
    let _ = writeln!(
        out,
        "births once per connect: NBIRTH {} B, 20 DBIRTH {birth_bytes} B (+topics {birth_topic} B)",
        nb.len()
    );
    let _ = writeln!(out, "# for comparison (bench-results/payload_format2.txt): JSON v1 21.14, CBOR v1 11.86, JSON v2 11.66, CBOR v2 5.72 B/reading");
    print!("{out}");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results/sparkplug_bytes.txt");
    let mut all = std::fs::read_to_string(&path).unwrap_or_default();
    all.push_str(&out);
    all.push('\n');
    std::fs::write(&path, all).expect("write bench-results/sparkplug_bytes.txt");
}
