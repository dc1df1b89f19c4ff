//! The independent Sparkplug host (tests/py/sparkplug_host.py) checked on its own, before it
//! judges the wired gateway: on a real mosquitto (mutual TLS), payloads made by gasdtu's
//! Sparkplug encoders are published by a plain MQTT publisher and the host must report every
//! field (types, seq, bdSeq, DDATA aliases resolved through the DBIRTH, datatypes, values,
//! historical flags, properties, the NDEATH timestamp pysparkplug 0.6.1 drops, a
//! sign-extended Int16 pysparkplug refuses). The other way, the NCMD, DCMD and STATE the
//! host sends are read back by a subscriber and decoded by gasdtu's command decoder; a
//! malformed command gets an error ack and the host keeps working.

mod common;

use std::time::Duration;

use common::spb_host::{kind, metric, SpbHost};
use common::{mutual_tls_broker, wait_until, Publisher, Subscriber};
use gasdtu::model::Value;
use gasdtu::uplink::sparkplug::{
    build, dbirth, ddata, decode_dcmd, decode_ncmd, nbirth, ndeath, EdgeNode, Exceptions,
    MessageType, MetricUpdate, NodeCommand, NodeState, Seq, Update,
};
use serde_json::{json, Value as Json};

const CONFIG: &str = r#"
[gateway]
id = "gw-1"
state_dir = "STATE"
profile_dirs = []
[buses.b]
kind = "tcp"
host = "127.0.0.1"
port = 1
[devices.fc1]
bus = "b"
unit = 1
points.pressure = { table = "input", address = 0, type = "f32", unit = "bar" }
points.count = { table = "input", address = 3, type = "i16" }
points.setpoint = { table = "holding", address = 0, type = "u16", writable = true }
points.valve = { table = "coil", address = 0, type = "bit", writable = true }
"#;

fn upd(name: &str, at: u64, v: Value) -> MetricUpdate {
    MetricUpdate {
        name: name.into(),
        at_ms: at,
        update: Update::Point {
            good: true,
            value: Some(v),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_reads_gasdtu_payloads_and_sends_commands_gasdtu_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    let mut host = SpbHost::start(&pki, broker.port, "gas", "host-script");
    let config = gasdtu::config::parse_str(CONFIG, "t.toml", std::path::Path::new("/"))
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .config;
    let model = build(&config).unwrap();
    let fc1 = model.device("fc1").unwrap();
    let node = EdgeNode::new("gas", "gw-1").unwrap();
    let t = |m: MessageType| node.node_topic(m).unwrap();
    let td = |m: MessageType| node.device_topic(m, "fc1").unwrap();
    let state = NodeState {
        transport: "tcp".into(),
        reconnects: 0,
        buffer_depth: 0,
        modem: None,
    };
    let mut seq = Seq::new();
    let born = vec![
        upd(
            "pressure",
            1_700_000_001_000,
            Value::Float(f64::from(4.25f32)),
        ),
        upd("count", 1_700_000_001_000, Value::Int(-5)),
        upd("setpoint", 1_700_000_001_000, Value::UInt(450)),
        upd("valve", 1_700_000_001_000, Value::Bool(true)),
    ];
    let mut ex = Exceptions::new();
    ex.born("fc1", &born);
    let live = ex.changed(
        "fc1",
        vec![upd("setpoint", 1_700_000_061_000, Value::UInt(451))],
    );
    let old = ex.changed("fc1", vec![upd("count", 1_699_999_000_000, Value::Int(7))]);
    let sent = [
        (
            t(MessageType::NBirth),
            nbirth(&model, 7, &state, 1_700_000_000_100, &mut seq).unwrap(),
        ),
        (
            td(MessageType::DBirth),
            dbirth(fc1, &born, 1_700_000_002_000, &mut seq).unwrap(),
        ),
        (
            td(MessageType::DData),
            ddata(fc1, &live, false, 1_700_000_062_000, &mut seq).unwrap(),
        ),
        (
            td(MessageType::DData),
            ddata(fc1, &old, true, 1_700_000_063_000, &mut seq).unwrap(),
        ),
        (t(MessageType::NDeath), ndeath(7, 1_700_000_064_000)),
    ];
    let publisher = Publisher::start(&pki, broker.port, "edge-stand-in");
    for (topic, bytes) in &sent {
        publisher.publish(topic, bytes.clone(), false).await;
    }
    let got = host.wait_msgs("the five messages", Duration::from_secs(15), |m| {
        (m.len() >= 5).then(|| m.to_vec())
    });
    assert_eq!(got.len(), 5, "{got:#?}");
    let kinds: Vec<&str> = got.iter().map(kind).collect();
    assert_eq!(kinds, ["NBIRTH", "DBIRTH", "DDATA", "DDATA", "NDEATH"]);
    for m in &got {
        assert!(m.get("error").is_none(), "{m}");
        assert_eq!(
            (m["group"].as_str(), m["edge"].as_str()),
            (Some("gas"), Some("gw-1"))
        );
    }
    let seqs: Vec<Json> = got.iter().map(|m| m["seq"].clone()).collect();
    assert_eq!(seqs, [json!(0), json!(1), json!(2), json!(3), Json::Null]);
    assert_eq!(got[0]["bd_seq"], 7);
    assert_eq!(got[4]["bd_seq"], 7);
    // pysparkplug 0.6.1 drops the NDEATH timestamp; the host reads it from the protobuf.
    assert_eq!(got[4]["timestamp"], 1_700_000_064_000u64);
    let rebirth = metric(&got[0], "Node Control/Rebirth").unwrap();
    assert_eq!(
        (&rebirth["datatype"], &rebirth["value"], &rebirth["alias"]),
        (
            &json!("BOOLEAN"),
            &json!(false),
            &json!(model.node_metric("Node Control/Rebirth").unwrap().alias)
        )
    );

    // The DBIRTH holds a sign-extended Int16 (-5), which pysparkplug refuses as is: the host
    // hands it the width-masked form and says so.
    let db = &got[1];
    assert_eq!(db["device"], "fc1");
    assert_eq!(
        (&db["decoder"], &db["masked_sign_extended"]),
        (&json!("pysparkplug"), &json!(true)),
        "{db}"
    );
    let want = [
        ("pressure", "FLOAT", json!(4.25)),
        ("count", "INT16", json!(-5)),
        ("setpoint", "UINT16", json!(450)),
        ("valve", "BOOLEAN", json!(true)),
    ];
    for (name, dt, v) in &want {
        let m = metric(db, name).unwrap_or_else(|| panic!("{name} in {db}"));
        assert_eq!(
            (m["datatype"].as_str(), &m["value"]),
            (Some(*dt), v),
            "{name}"
        );
        assert_eq!(m["alias"], fc1.by_name(name).unwrap().alias, "{name}");
        assert_eq!(m["properties"]["Quality"]["value"], 192, "{name}");
    }

    // DDATA by alias only, resolved through the DBIRTH (pysparkplug decodes these).
    let live = &got[2];
    assert_eq!(live["decoder"], "pysparkplug", "{live}");
    let ms = live["metrics"].as_array().unwrap();
    assert_eq!(ms.len(), 1, "{live}");
    assert_eq!(
        (&ms[0]["name"], &ms[0]["datatype"], &ms[0]["value"]),
        (&json!("setpoint"), &json!("UINT16"), &json!(451))
    );
    assert_eq!(ms[0]["alias"], fc1.by_name("setpoint").unwrap().alias);
    assert_eq!(
        (&ms[0]["timestamp"], &ms[0]["is_historical"]),
        (&json!(1_700_000_061_000u64), &json!(false))
    );
    let hist = metric(&got[3], "count").unwrap();
    assert_eq!(
        (&hist["value"], &hist["is_historical"], &hist["timestamp"]),
        (&json!(7), &json!(true), &json!(1_699_999_000_000u64))
    );

    // Commands: what the host sends, read back raw and decoded by gasdtu.
    let sub = Subscriber::start(&pki, broker.port, "spBv1.0/#", "cmd-reader", false);
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    let ack = host.rebirth("gw-1");
    assert_eq!(ack["topic"], "spBv1.0/gas/NCMD/gw-1");
    let alias = fc1.by_name("setpoint").unwrap().alias;
    let dcmd = json!({"cmd": "dcmd", "edge": "gw-1", "device": "fc1",
        "metrics": [{"alias": alias, "datatype": "UInt16", "value": 42}]});
    let d1 = host.command(dcmd.clone());
    let by_name = json!({"cmd": "dcmd", "edge": "gw-1", "device": "fc1",
        "metrics": [{"name": "valve", "datatype": "Boolean", "value": false}]});
    host.command(by_name);
    host.command(json!({"cmd": "raw", "topic": d1["topic"], "hex": d1["hex"]}));
    host.state("scada", true);
    // QoS 1 is at least once: under load a publish can reach the reader twice, so the
    // checks are on the distinct messages in first-seen order.
    let all = wait_until(
        "the host's publishes up to STATE",
        Duration::from_secs(10),
        || {
            let m = sub.snapshot();
            m.iter()
                .any(|x| x.topic.starts_with("spBv1.0/STATE/"))
                .then_some(m)
        },
    )
    .await;
    let mut msgs: Vec<common::Msg> = Vec::new();
    for m in &all {
        if !msgs
            .iter()
            .any(|x| x.topic == m.topic && x.payload == m.payload)
        {
            msgs.push(m.clone());
        }
    }
    assert_eq!(
        msgs.len(),
        4,
        "{:?}",
        all.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
    assert_eq!(msgs[0].topic, "spBv1.0/gas/NCMD/gw-1");
    assert_eq!(
        decode_ncmd(&model, &msgs[0].payload).unwrap(),
        [NodeCommand::Rebirth]
    );
    assert_eq!(msgs[1].topic, "spBv1.0/gas/DCMD/gw-1/fc1");
    let w = decode_dcmd(&model, "fc1", &msgs[1].payload).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].point.as_str(), &w[0].value),
        ("setpoint", &Value::UInt(42))
    );
    let w = decode_dcmd(&model, "fc1", &msgs[2].payload).unwrap();
    assert_eq!(
        (w[0].point.as_str(), &w[0].value),
        ("valve", &Value::Bool(false))
    );
    // `raw` sent the first DCMD's bytes again, after the second DCMD.
    let valve_at = all
        .iter()
        .position(|m| m.payload == msgs[2].payload)
        .unwrap();
    assert!(
        all[valve_at..].iter().any(|m| m.payload == msgs[1].payload),
        "raw resends the same bytes"
    );
    let state = &msgs[3];
    assert_eq!(state.topic, "spBv1.0/STATE/scada");
    // Retained: a subscriber that comes later still gets it.
    let late = Subscriber::start(&pki, broker.port, "spBv1.0/STATE/#", "late", false);
    let kept = wait_until("the retained STATE", Duration::from_secs(10), || {
        late.snapshot().into_iter().next()
    })
    .await;
    assert!(kept.retain && kept.payload == state.payload);
    let st: Json = serde_json::from_slice(&state.payload).unwrap();
    assert_eq!(st["online"], true);
    assert!(st["timestamp"].as_u64().is_some());

    // Bad commands: a clear error ack each, and the host still works.
    for (bad, says) in [
        (
            json!({"cmd": "dcmd", "edge": "gw-1", "device": "fc1", "metrics": []}),
            "1 to 64",
        ),
        (
            json!({"cmd": "dcmd", "edge": "gw-1", "device": "fc1",
            "metrics": [{"alias": 1, "datatype": "Nope", "value": 1}]}),
            "datatype",
        ),
        (json!({"cmd": "fly"}), "unknown command"),
        (
            json!({"cmd": "raw", "topic": "x", "hex": "zz"}),
            "hexadecimal",
        ),
    ] {
        let ack = host.try_command(bad.clone());
        assert_eq!(ack["ok"], false, "{bad}: {ack}");
        assert!(
            ack["error"].as_str().is_some_and(|e| e.contains(says)),
            "{bad}: {ack}"
        );
    }
    host.command(json!({"cmd": "ping"}));
}
