//! `gasdtu run` in Sparkplug mode (issue 14) on a real mosquitto (mutual TLS), polling
//! `gasdtu simulate` over Modbus TCP, watched by a plain MQTT subscriber that decodes every
//! Sparkplug payload with the schema: NBIRTH (seq 0, bdSeq from the store) then the DBIRTH
//! then DDATA whose aliases resolve through the birth and whose seq follow on; NCMD Rebirth
//! births again with the same bdSeq; a DCMD write to an allow-listed point reaches the device
//! (its read-back shows in a later DDATA) and a DCMD to a point outside `[remote.writes]` is
//! refused (`not_allowed` on `cmd/res`, under the DCMD's `spb:` id); after a broker outage the
//! new births come first, then the readings polled meanwhile as `is_historical` DDATA with
//! their read times; SIGTERM publishes NDEATH with the bdSeq of the NBIRTH; the next start
//! claims bdSeq + 1 and its DBIRTH carries the newest stored readings. Every wait has a
//! deadline.

mod common;

use std::path::Path;
use std::time::Duration;

use common::remote::{start_daemon, valve_device};
use common::{mutual_tls_broker, simulate_tcp, wait_until, Msg, Publisher, Subscriber};
use gasdtu::uplink::sparkplug::proto::{metric, Metric, Payload};
use prost::Message;

const WAIT: Duration = Duration::from_secs(30);

fn config(dir: &Path, pki: &common::Pki, broker: u16, modbus: u16) -> String {
    format!(
        "[gateway]\nid = \"gw-sp\"\nstate_dir = \"{state}\"\n\n[buses.lan]\nkind = \"tcp\"\n\
         host = \"127.0.0.1\"\nport = {modbus}\ntimeout = \"500ms\"\n\n{dev}{uplink}\
         reconnect_min = \"200ms\"\nreconnect_max = \"1s\"\nmax_payload = 16384\n\
         protocol = \"sparkplug\"\n\n[uplink.sparkplug]\ngroup_id = \"gas\"\n\n\
         [remote]\nallow_unsigned = true\n\n[remote.writes]\n\
         \"pcv1.setpoint\" = {{ min = 1, max = 100 }}\n",
        state = dir.join("state").display(),
        dev = valve_device("1s", true),
        uplink = pki.uplink_toml(broker),
    )
}

/// One decoded Sparkplug message.
#[derive(Debug, Clone)]
struct Sp {
    kind: String,
    device: Option<String>,
    payload: Payload,
}

fn sparkplug(msgs: &[Msg]) -> Vec<Sp> {
    msgs.iter()
        .filter_map(|m| {
            let levels: Vec<&str> = m.topic.split('/').collect();
            if levels.first() != Some(&"spBv1.0") || levels.len() < 4 {
                return None;
            }
            Some(Sp {
                kind: levels[2].to_string(),
                device: levels.get(4).map(|d| d.to_string()),
                payload: Payload::decode(&m.payload[..]).expect("a Sparkplug B payload"),
            })
        })
        .collect()
}

fn bd_seq(p: &Payload) -> Option<u64> {
    p.metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("bdSeq"))
        .and_then(|m| match m.value {
            Some(metric::Value::LongValue(v)) => Some(v),
            _ => None,
        })
}

fn named<'a>(p: &'a Payload, name: &str) -> &'a Metric {
    p.metrics
        .iter()
        .find(|m| m.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no metric {name} in {p:?}"))
}

fn command(name: &str, datatype: u32, value: metric::Value) -> Vec<u8> {
    Payload {
        timestamp: Some(gasdtu::time::now_ms() as u64),
        metrics: vec![Metric {
            name: Some(name.into()),
            datatype: Some(datatype),
            value: Some(value),
            ..Metric::default()
        }],
        seq: None,
        uuid: None,
        body: None,
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_data_rebirth_dcmd_and_ndeath_on_a_real_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, mut broker) = mutual_tls_broker(dir.path());
    // Persistent: it misses nothing while the broker restarts.
    let sub = Subscriber::start(&pki, broker.port, "#", "spb-watch", true);
    sub.wait_subscribed(1, WAIT).await;
    let (_sim, modbus) = simulate_tcp(&["1:pt-float"], &[]);
    let path = dir.path().join("gasdtu.toml");
    std::fs::write(&path, config(dir.path(), &pki, broker.port, modbus)).unwrap();
    let log = dir.path().join("run.log");
    let mut gw = start_daemon(&path, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    // 1. NBIRTH, DBIRTH, then DDATA by alias, seq following on.
    let sps = wait_until("NBIRTH, DBIRTH and a DDATA with the pressure", WAIT, || {
        let s = sparkplug(&sub.snapshot());
        let has_ddata = s.iter().any(|m| m.kind == "DDATA");
        (has_ddata && s.len() >= 3).then_some(s)
    })
    .await;
    assert_eq!(sps[0].kind, "NBIRTH", "{sps:?}");
    assert_eq!(sps[0].payload.seq, Some(0));
    assert_eq!(bd_seq(&sps[0].payload), Some(0), "a fresh store claims 0");
    assert_eq!(
        (sps[1].kind.as_str(), sps[1].device.as_deref()),
        ("DBIRTH", Some("pcv1"))
    );
    assert_eq!(sps[1].payload.seq, Some(1));
    let birth = sps[1].payload.clone();
    for name in ["pressure", "setpoint", "valve", "spare"] {
        let m = named(&birth, name);
        assert!(m.alias.is_some() && m.datatype.is_some(), "{m:?}");
    }
    assert_eq!(named(&birth, "setpoint").datatype, Some(6), "UInt16");
    for (i, m) in sps.iter().enumerate().skip(2) {
        if m.kind != "DDATA" {
            continue;
        }
        assert_eq!(m.payload.seq, Some(i as u64), "seq +1 per message: {sps:?}");
        for x in &m.payload.metrics {
            assert!(x.name.is_none(), "DDATA by alias only");
            let alias = x.alias.expect("alias");
            assert!(
                birth.metrics.iter().any(|b| b.alias == Some(alias)),
                "alias {alias} resolves through the DBIRTH"
            );
            assert!(x.timestamp.is_some_and(|t| t > 1_700_000_000_000));
        }
    }

    // 2. NCMD Rebirth: NBIRTH seq 0 with the same bdSeq, then the DBIRTH again.
    let ops = Publisher::start(&pki, broker.port, "spb-ops");
    let before = sparkplug(&sub.snapshot()).len();
    ops.publish(
        "spBv1.0/gas/NCMD/gw-sp",
        command(
            "Node Control/Rebirth",
            11,
            metric::Value::BooleanValue(true),
        ),
        false,
    )
    .await;
    let again = wait_until("the births again after Rebirth", WAIT, || {
        let s = sparkplug(&sub.snapshot());
        let rest = s[before..].to_vec();
        let n = rest.iter().position(|m| m.kind == "NBIRTH")?;
        (rest.len() > n + 1).then(|| rest[n..].to_vec())
    })
    .await;
    assert_eq!(again[0].payload.seq, Some(0));
    assert_eq!(
        bd_seq(&again[0].payload),
        Some(0),
        "same connect, same bdSeq"
    );
    assert_eq!(again[1].kind, "DBIRTH");
    assert_eq!(again[1].payload.seq, Some(1));

    // 3. DCMD: the allow-listed setpoint is written and read back; the valve is refused.
    ops.publish(
        "spBv1.0/gas/DCMD/gw-sp/pcv1",
        command("setpoint", 6, metric::Value::IntValue(42)),
        false,
    )
    .await;
    let setpoint = named(&birth, "setpoint").alias;
    wait_until("a DDATA with setpoint 42", WAIT, || {
        sparkplug(&sub.snapshot()).iter().find(|m| {
            m.kind == "DDATA"
                && m.payload
                    .metrics
                    .iter()
                    .any(|x| x.alias == setpoint && x.value == Some(metric::Value::IntValue(42)))
        })?;
        Some(())
    })
    .await;
    ops.publish(
        "spBv1.0/gas/DCMD/gw-sp/pcv1",
        command("valve", 11, metric::Value::BooleanValue(true)),
        false,
    )
    .await;
    let refused = wait_until("the refusal of the valve write on cmd/res", WAIT, || {
        sub.snapshot().iter().find_map(|m| {
            if m.topic != "gasdtu/gw-sp/cmd/res" {
                return None;
            }
            let v: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
            (v["error"]["code"] == "not_allowed").then_some(v)
        })
    })
    .await;
    assert!(
        refused["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("spb:")),
        "{refused}"
    );

    // 4. An outage: readings polled meanwhile come after the new births, as history, whole.
    broker.stop();
    wait_until("three polls buffered during the outage", WAIT, || {
        let out = std::process::Command::new(common::gasdtu())
            .args(["queue", "--json", "--config"])
            .arg(&path)
            .output()
            .ok()?;
        let q: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        // pcv1 has four points per poll.
        (q["pending_readings"].as_u64()? >= 12).then_some(())
    })
    .await;
    let down_at = gasdtu::time::now_ms() as u64;
    let seen = sparkplug(&sub.snapshot()).len();
    broker.start();
    let pressure = named(&birth, "pressure").alias;
    let after = wait_until("the new births, then historical DDATA", WAIT, || {
        let s = sparkplug(&sub.snapshot());
        let rest = s[seen..].to_vec();
        let n = rest.iter().position(|m| m.kind == "NBIRTH")?;
        let hist = rest[n..]
            .iter()
            .filter(|m| {
                m.kind == "DDATA"
                    && m.payload
                        .metrics
                        .iter()
                        .any(|x| x.alias == pressure && x.is_historical == Some(true))
            })
            .count();
        (hist >= 3).then(|| rest[n..].to_vec())
    })
    .await;
    let bd = bd_seq(&after[0].payload).expect("bdSeq");
    assert!(bd >= 1, "a new connect claims a new bdSeq");
    assert_eq!(after[1].kind, "DBIRTH", "births first: {after:?}");
    for m in after.iter().filter(|m| m.kind == "DDATA") {
        for x in m
            .payload
            .metrics
            .iter()
            .filter(|x| x.is_historical == Some(true))
        {
            assert!(
                x.timestamp.is_some_and(|t| t <= down_at),
                "history carries its read time: {x:?}"
            );
        }
    }

    // 5. SIGTERM: NDEATH with the bdSeq of this session's NBIRTH before DISCONNECT.
    let before = sparkplug(&sub.snapshot()).len();
    common::sigterm(&gw.child);
    common::wait_exit(&mut gw.child, WAIT).expect("exits after SIGTERM");
    let death = wait_until("NDEATH", WAIT, || {
        sparkplug(&sub.snapshot())[before..]
            .iter()
            .find(|m| m.kind == "NDEATH")
            .cloned()
    })
    .await;
    assert_eq!(bd_seq(&death.payload), Some(bd), "{}", logs());
    assert_eq!(death.payload.seq, None);

    // 6. The next start claims the next bdSeq.
    let seen = sparkplug(&sub.snapshot()).len();
    let _gw = start_daemon(&path, &dir.path().join("run2.log"));
    let births = wait_until("the second run's NBIRTH and DBIRTH", WAIT, || {
        let s = sparkplug(&sub.snapshot())[seen..].to_vec();
        let n = s.iter().position(|m| m.kind == "NBIRTH")?;
        (s.len() > n + 1).then(|| s[n..n + 2].to_vec())
    })
    .await;
    let nb = &births[0];
    assert_eq!(bd_seq(&nb.payload), Some(bd + 1));
    assert_eq!(nb.payload.seq, Some(0));
    // The first DBIRTH of a process carries the newest stored reading, not nulls.
    assert_eq!(births[1].kind, "DBIRTH");
    let p = named(&births[1].payload, "pressure");
    assert!(
        p.value.is_some()
            && p.timestamp
                .is_some_and(|t| t <= gasdtu::time::now_ms() as u64),
        "{p:?}"
    );
    assert_eq!(
        named(&births[1].payload, "setpoint").value,
        Some(metric::Value::IntValue(42)),
        "the value written by the DCMD, read back and stored"
    );
}
