//! Sparkplug B core against an independent implementation, and the not-wired refusal.
//!
//! Golden NDEATH, NBIRTH, DBIRTH, DDATA (live and historical) and DDEATH built by our encoders
//! from a real config are decoded by pysparkplug (PyPI; its own protobuf descriptor under
//! Google's protobuf runtime, tests/py/sparkplug_decode.py), and every field it reads is
//! checked: topic parts, timestamps, seq, names, aliases (DDATA resolved through the DBIRTH as
//! a host does), datatypes, values, flags and properties. Then the real binary: `check`
//! accepts a Sparkplug config with the not-wired warning, `run` refuses it, and a running
//! daemon refuses a SIGHUP reload into it and keeps running.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use gasdtu::model::Value;
use gasdtu::uplink::sparkplug::{
    build, dbirth, ddata, ddeath, nbirth, ndeath, EdgeNode, Exceptions, MessageType, MetricUpdate,
    NodeState, Seq, Update,
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
points.temp = { table = "input", address = 2, type = "i16", scale = 0.1, unit = "degC" }
points.count = { table = "input", address = 3, type = "i16" }
points.volume = { table = "input", address = 4, type = "u32", unit = "m3" }
points.total = { table = "input", address = 6, type = "u64" }
points.setpoint = { table = "holding", address = 0, type = "u16", writable = true }
points.valve = { table = "coil", address = 0, type = "bit", writable = true }
points.serial = { table = "input", address = 8, type = "string", length = 8 }
[alarms.p_high]
device = "fc1"
point = "pressure"
kind = "limit"
severity = "major"
h = 5.0
"#;

fn config() -> gasdtu::config::Config {
    match gasdtu::config::parse_str(CONFIG, "t.toml", std::path::Path::new("/")) {
        Ok(l) => l.config,
        Err(e) => panic!("{e:?}"),
    }
}

fn upd(name: &str, at: u64, v: Option<Value>) -> MetricUpdate {
    MetricUpdate {
        name: name.into(),
        at_ms: at,
        update: Update::Point {
            good: v.is_some(),
            value: v,
        },
    }
}

/// Runs the independent decoder over (topic, bytes) messages.
fn decode(messages: &[(String, Vec<u8>)]) -> Vec<Json> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let req = json!({"messages": messages.iter().map(|(t, b)| json!({"topic": t, "hex": hex(b)})).collect::<Vec<_>>()});
    let script = common::repo_root().join("tests/py/sparkplug_decode.py");
    let mut child = Command::new(common::python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python decoder");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "decoder failed (is pysparkplug installed? scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    v["messages"].as_array().unwrap().clone()
}

fn metric<'a>(msg: &'a Json, name: &str) -> &'a Json {
    msg["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {msg:#}"))
}

#[test]
fn an_independent_decoder_reads_every_field() {
    let model = build(&config()).unwrap();
    let fc1 = model.device("fc1").unwrap();
    let node = EdgeNode::new("gas", "gw-1").unwrap();
    let t = |m: MessageType| node.node_topic(m).unwrap();
    let td = |m: MessageType| node.device_topic(m, "fc1").unwrap();
    let state = NodeState {
        transport: "tcp".into(),
        reconnects: 3,
        buffer_depth: 12,
        modem: None,
    };
    let mut seq = Seq::new();
    let birth_state = vec![
        upd(
            "pressure",
            1_700_000_001_000,
            Some(Value::Float(f64::from(4.2f32))),
        ),
        upd("temp", 1_700_000_001_000, Some(Value::Float(-12.5))),
        upd("count", 1_700_000_001_000, Some(Value::Int(42))),
        upd(
            "volume",
            1_700_000_001_000,
            Some(Value::UInt(4_000_000_000)),
        ),
        upd("total", 1_700_000_001_000, Some(Value::UInt(u64::MAX))),
        upd("setpoint", 1_700_000_001_000, Some(Value::UInt(450))),
        upd("valve", 1_700_000_001_000, Some(Value::Bool(true))),
        upd("serial", 1_700_000_001_000, None),
        MetricUpdate {
            name: "Alarms/p_high".into(),
            at_ms: 1_700_000_000_500,
            update: Update::Alarm {
                active: true,
                limit: Some(5.0),
                message: Some("pressure above 5 bar".into()),
            },
        },
    ];
    let mut ex = Exceptions::new();
    ex.born("fc1", &birth_state);
    let live = ex.changed(
        "fc1",
        vec![
            upd(
                "pressure",
                1_700_000_061_000,
                Some(Value::Float(f64::from(4.5f32))),
            ),
            upd("count", 1_700_000_061_000, Some(Value::Int(42))),
            upd(
                "serial",
                1_700_000_061_000,
                Some(Value::Text("AB-1234".into())),
            ),
        ],
    );
    let backlog = ex.changed(
        "fc1",
        vec![upd(
            "volume",
            1_699_999_000_000,
            Some(Value::UInt(3_999_999_000)),
        )],
    );
    let messages = vec![
        (t(MessageType::NDeath), ndeath(7, 1_700_000_000_000)),
        (
            t(MessageType::NBirth),
            nbirth(&model, 7, &state, 1_700_000_000_100, &mut seq).unwrap(),
        ),
        (
            td(MessageType::DBirth),
            dbirth(fc1, &birth_state, 1_700_000_002_000, &mut seq).unwrap(),
        ),
        (
            td(MessageType::DData),
            ddata(fc1, &live, false, 1_700_000_062_000, &mut seq).unwrap(),
        ),
        (
            td(MessageType::DData),
            ddata(fc1, &backlog, true, 1_700_000_063_000, &mut seq).unwrap(),
        ),
        (td(MessageType::DDeath), ddeath(1_700_000_064_000, &mut seq)),
    ];
    let got = decode(&messages);
    assert_eq!(got.len(), 6);
    for (g, (topic, _)) in got.iter().zip(&messages) {
        assert!(g.get("error").is_none(), "{topic}: {g:#}");
        assert_eq!(g["group_id"], "gas", "{topic}");
        assert_eq!(g["edge_node_id"], "gw-1", "{topic}");
    }

    // NDEATH: bdSeq only, no seq.
    let d = &got[0];
    assert_eq!(d["message_type"], "NDEATH");
    assert_eq!(
        (d["timestamp"].as_u64(), d["seq"].is_null()),
        (Some(1_700_000_000_000), true)
    );
    assert_eq!(d["metrics"].as_array().unwrap().len(), 1);
    let bd = metric(d, "bdSeq");
    assert_eq!(
        (bd["datatype"].as_str(), bd["value"].as_u64()),
        (Some("INT64"), Some(7))
    );

    // NBIRTH: seq 0, bdSeq, node metrics with aliases.
    let b = &got[1];
    assert_eq!(b["message_type"], "NBIRTH");
    assert_eq!(b["device_id"], Json::Null);
    assert_eq!(
        (b["timestamp"].as_u64(), b["seq"].as_u64()),
        (Some(1_700_000_000_100), Some(0))
    );
    let want_node = [
        ("bdSeq", "INT64", json!(7)),
        ("Node Control/Rebirth", "BOOLEAN", json!(false)),
        ("Link/Transport", "STRING", json!("tcp")),
        ("Link/Reconnects", "UINT64", json!(3)),
        ("Buffer/Depth", "UINT64", json!(12)),
    ];
    assert_eq!(b["metrics"].as_array().unwrap().len(), want_node.len());
    for (name, dt, v) in want_node {
        let m = metric(b, name);
        assert_eq!(
            (m["datatype"].as_str(), &m["value"]),
            (Some(dt), &v),
            "{name}"
        );
        assert_eq!(m["timestamp"].as_u64(), Some(1_700_000_000_100), "{name}");
        if name != "bdSeq" {
            assert_eq!(
                m["alias"].as_u64(),
                Some(model.node_metric(name).unwrap().alias),
                "{name}"
            );
        }
    }

    // DBIRTH: every metric, name + alias + datatype + value + properties.
    let db = &got[2];
    assert_eq!(
        (db["message_type"].as_str(), db["device_id"].as_str()),
        (Some("DBIRTH"), Some("fc1"))
    );
    assert_eq!(db["seq"].as_u64(), Some(1));
    assert_eq!(db["metrics"].as_array().unwrap().len(), fc1.metrics.len());
    // (name, datatype, value, engUnit)
    let want_dev = [
        ("pressure", "FLOAT", json!(f64::from(4.2f32)), Some("bar")),
        ("temp", "DOUBLE", json!(-12.5), Some("degC")),
        ("count", "INT16", json!(42), None),
        ("volume", "UINT32", json!(4_000_000_000u64), Some("m3")),
        ("total", "UINT64", json!(u64::MAX), None),
        ("setpoint", "UINT16", json!(450), None),
        ("valve", "BOOLEAN", json!(true), None),
    ];
    for (name, dt, v, unit) in want_dev {
        let m = metric(db, name);
        assert_eq!(
            (m["datatype"].as_str(), &m["value"]),
            (Some(dt), &v),
            "{name}"
        );
        assert_eq!(
            m["alias"].as_u64(),
            Some(fc1.by_name(name).unwrap().alias),
            "{name}"
        );
        assert_eq!(m["timestamp"].as_u64(), Some(1_700_000_001_000), "{name}");
        assert_eq!(m["is_null"], false, "{name}");
        assert_eq!(
            m["properties"]["Quality"],
            json!({"type": 3, "is_null": false, "value": 192}),
            "{name}"
        );
        match unit {
            Some(u) => assert_eq!(
                m["properties"]["engUnit"],
                json!({"type": 12, "is_null": false, "value": u}),
                "{name}"
            ),
            None => assert!(m["properties"].get("engUnit").is_none(), "{name}"),
        }
    }
    let serial = metric(db, "serial");
    assert_eq!(
        (serial["datatype"].as_str(), serial["is_null"].as_bool()),
        (Some("STRING"), Some(true))
    );
    assert_eq!(serial["properties"]["Quality"]["value"], 0);
    let alarm = metric(db, "Alarms/p_high");
    assert_eq!(
        (alarm["datatype"].as_str(), &alarm["value"]),
        (Some("BOOLEAN"), &json!(true))
    );
    assert_eq!(alarm["timestamp"].as_u64(), Some(1_700_000_000_500));
    assert_eq!(
        alarm["properties"],
        json!({
            "active": {"type": 11, "is_null": false, "value": true},
            "severity": {"type": 12, "is_null": false, "value": "major"},
            "limit": {"type": 10, "is_null": false, "value": 5.0},
            "message": {"type": 12, "is_null": false, "value": "pressure above 5 bar"},
        })
    );

    // DDATA by exception: only what changed, by alias, resolved through the DBIRTH.
    let dd = &got[3];
    assert_eq!(
        (dd["message_type"].as_str(), dd["seq"].as_u64()),
        (Some("DDATA"), Some(2))
    );
    assert_eq!(dd["timestamp"].as_u64(), Some(1_700_000_062_000));
    let names: Vec<&str> = dd["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pressure", "serial"], "count did not change");
    let p = metric(dd, "pressure");
    assert_eq!(
        (p["datatype"].as_str(), &p["value"]),
        (Some("FLOAT"), &json!(f64::from(4.5f32)))
    );
    assert_eq!(
        (
            p["wire_datatype"].is_null(),
            p["timestamp"].as_u64(),
            p["is_historical"].as_bool()
        ),
        (true, Some(1_700_000_061_000), Some(false))
    );
    assert_eq!(
        p["properties"],
        json!({}),
        "quality unchanged: no properties"
    );
    let s = metric(dd, "serial");
    assert_eq!(
        (s["value"].as_str(), s["is_null"].as_bool()),
        (Some("AB-1234"), Some(false))
    );
    assert_eq!(
        s["properties"]["Quality"]["value"], 192,
        "quality back to good is said"
    );
    let h = &got[4];
    assert_eq!(h["seq"].as_u64(), Some(3));
    let v = metric(h, "volume");
    assert_eq!(
        (
            v["value"].as_u64(),
            v["is_historical"].as_bool(),
            v["timestamp"].as_u64()
        ),
        (Some(3_999_999_000), Some(true), Some(1_699_999_000_000))
    );

    // DDEATH.
    let dth = &got[5];
    assert_eq!(
        (
            dth["message_type"].as_str(),
            dth["device_id"].as_str(),
            dth["seq"].as_u64()
        ),
        (Some("DDEATH"), Some("fc1"), Some(4))
    );
}

#[test]
fn negative_small_integers_are_sign_extended_on_the_wire() {
    // pysparkplug 0.6.1 refuses sign-extended Int16 (its issue 26), so this reads the wire
    // value through its protobuf descriptor only: -5 as Int16 is int_value 0xFFFFFFFB, as the
    // Tahu reference implementation and Ignition write it.
    let model = build(&config()).unwrap();
    let fc1 = model.device("fc1").unwrap();
    let mut seq = Seq::new();
    let b = dbirth(fc1, &[upd("count", 1, Some(Value::Int(-5)))], 2, &mut seq).unwrap();
    let script = "import sys; from pysparkplug import _protobuf as pb; \
         p = pb.Payload.FromString(bytes.fromhex(sys.argv[1])); \
         m = [m for m in p.metrics if m.name == 'count'][0]; \
         print(m.datatype, m.WhichOneof('value'), m.int_value)";
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let out = Command::new(common::python())
        .args(["-c", script, &hex])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2 int_value 4294967291"
    );
}

#[test]
fn check_accepts_a_sparkplug_config_without_a_protocol_warning() {
    let dir = tempfile::tempdir().unwrap();
    let text = CONFIG.replace("STATE", &dir.path().join("state").display().to_string())
        + "[uplink]\nhost = \"127.0.0.1\"\nport = 1\ntls = false\nprotocol = \"sparkplug\"\n[uplink.sparkplug]\ngroup_id = \"gas\"\n";
    let path = dir.path().join("gasdtu.toml");
    std::fs::write(&path, text).unwrap();
    let check = Command::new(common::gasdtu())
        .arg("--config")
        .arg(&path)
        .arg("check")
        .env("NOTIFY_SOCKET", "")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(check.status.code(), Some(0), "{all}");
    assert!(!all.contains("uplink.protocol"), "{all}");
}

#[test]
fn a_reload_to_sparkplug_starts_the_edge_node_and_the_daemon_keeps_running() {
    use common::{signal, sigterm, wait_exit, Lines, Proc};
    use std::time::Duration;
    // A device that accepts and never answers: the daemon runs, polling it.
    let device = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = device.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "[gateway]\nid = \"sp\"\nstate_dir = \"{}\"\nprofile_dirs = []\n[buses.lan]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {port}\ntimeout = \"300ms\"\n[devices.pt1]\nbus = \"lan\"\nunit = 1\npoll = \"1s\"\npoints.pressure = {{ table = \"holding\", address = 0, type = \"u16\" }}\n",
        dir.path().join("state").display()
    );
    let path = dir.path().join("gasdtu.toml");
    std::fs::write(&path, &base).unwrap();
    let socket = dir.path().join("s.sock");
    let mut p = Proc::spawn(
        "gasdtu run",
        Command::new(common::gasdtu())
            .arg("run")
            .arg("--config")
            .arg(&path)
            .arg("--socket")
            .arg(&socket)
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let log = Lines::collect(p.child.stderr.take().unwrap());
    log.wait_line("the ready line", Duration::from_secs(20), |l| {
        l.contains("ready")
    });
    std::fs::write(
        &path,
        base + "[uplink]\nhost = \"127.0.0.1\"\nport = 1\ntls = false\nprotocol = \"sparkplug\"\n[uplink.sparkplug]\ngroup_id = \"gas\"\n",
    )
    .unwrap();
    signal(p.child.id(), "HUP");
    // Applied: the new forwarder claims a bdSeq before its first CONNECT (the broker is a
    // closed port, so it never gets further).
    log.wait_line("the reload", Duration::from_secs(20), |l| {
        l.contains("new config applied")
    });
    log.wait_line("the bdSeq claim", Duration::from_secs(20), |l| {
        l.contains("sparkplug: connecting with NDEATH as the will")
    });
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "the daemon must keep running:\n{}",
        log.snapshot().join("\n")
    );
    sigterm(&p.child);
    let st = wait_exit(&mut p.child, Duration::from_secs(20)).expect("exits after SIGTERM");
    assert!(st.success(), "{st:?}\n{}", log.snapshot().join("\n"));
    drop(device);
}
