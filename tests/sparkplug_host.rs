//! Sparkplug B end to end against an independent host (issue 14, the test plan of
//! docs/sparkplug.md): the real `gasdtu run` with `protocol = "sparkplug"` polls the pymodbus
//! device and publishes to a real mosquitto, where tests/py/sparkplug_host.py (pysparkplug
//! 0.6.1, subscribed before the gateway starts) decodes every message and sends NCMD, DCMD
//! and STATE. Cases here: births, seq and aliases against the device's values (1), bdSeq
//! across kill -9 (2), NCMD Rebirth (5), DCMD writes (6), primary host STATE gating (7), and
//! a dead device (DDEATH, then DBIRTH when it answers again). The
//! outage and resend cases are in tests/sparkplug_host_outage.rs. Every wait has a deadline.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::spb_gw::{check, expected_births, Rig, EDGE};
use common::spb_host::{kind, metric, summary};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// The model gasdtu builds from the rig's config: the aliases and datatypes the host must see.
fn model(rig: &Rig) -> gasdtu::uplink::sparkplug::NodeModel {
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let cfg = gasdtu::config::parse_str(&text, "gasdtu.toml", rig.dir.path())
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .config;
    gasdtu::uplink::sparkplug::build(&cfg).unwrap()
}

/// Index of the first NBIRTH at or after `from` and the messages up to the next NBIRTH.
fn session(msgs: &[Value], from: usize) -> Option<(usize, Vec<Value>)> {
    let start = msgs.iter().skip(from).position(|m| kind(m) == "NBIRTH")? + from;
    let end = msgs
        .iter()
        .skip(start + 1)
        .position(|m| kind(m) == "NBIRTH")
        .map_or(msgs.len(), |i| i + start + 1);
    Some((start, msgs[start..end].to_vec()))
}

/// Within one session (NBIRTH first): seq 0 on the NBIRTH, +1 mod 256 on every message but
/// NDEATH.
fn assert_seq(s: &[Value]) {
    let seqs: Vec<u64> = s
        .iter()
        .filter(|m| kind(m) != "NDEATH")
        .map(|m| m["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {m}")))
        .collect();
    assert_eq!(seqs.first(), Some(&0), "{}", summary(s));
    for w in seqs.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % 256, "seq gap in:\n{}", summary(s));
    }
}

/// Every DDATA metric of the session resolves, by alias, through this session's DBIRTH of
/// its device, with the DBIRTH's datatype; returns the DBIRTHs by device.
fn assert_aliases(s: &[Value]) -> HashMap<String, Value> {
    let mut births: HashMap<String, Value> = HashMap::new();
    for m in s {
        let dev = m["device"].as_str().unwrap_or("").to_string();
        match kind(m) {
            "DBIRTH" => {
                births.insert(dev, m.clone());
            }
            "DDATA" => {
                let b = births
                    .get(&dev)
                    .unwrap_or_else(|| panic!("DDATA of {dev} before its DBIRTH:\n{}", summary(s)));
                for x in m["metrics"].as_array().unwrap() {
                    let alias = &x["alias"];
                    assert!(alias.is_u64(), "DDATA metric without alias: {m}");
                    let def = b["metrics"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|d| &d["alias"] == alias)
                        .unwrap_or_else(|| panic!("alias {alias} not in the DBIRTH of {dev}: {m}"));
                    assert_eq!(x["name"], def["name"], "{m}");
                    assert_eq!(x["datatype"], def["datatype"], "{m}");
                    assert!(
                        x["timestamp"].is_u64(),
                        "a reading carries its read time: {m}"
                    );
                }
            }
            _ => {}
        }
    }
    births
}

/// `got` is the device's value `want` (floats to their precision).
fn assert_same(dev: &str, point: &str, dt: &str, got: &Value, want: &Value) {
    match (got.as_f64(), want.as_f64()) {
        (Some(a), Some(b)) if dt == "FLOAT" || dt == "DOUBLE" => {
            assert!(
                (a - b).abs() < 1e-6 * b.abs().max(1.0),
                "{dev}.{point}: {a} vs {b}"
            )
        }
        _ => assert_eq!(got, want, "{dev}.{point}"),
    }
}

#[test]
fn births_then_data_with_seq_aliases_and_datatypes_of_the_device() {
    let mut rig = Rig::new("host-order", None);
    check(&rig.config);
    let model = model(&rig);
    rig.start();
    let births = rig.wait_msgs("NBIRTH and two DBIRTHs", WAIT, |m| {
        let n = m.iter().filter(|x| kind(x) == "DBIRTH").count();
        (n >= 2).then(|| m.to_vec())
    });
    assert_eq!(kind(&births[0]), "NBIRTH", "{}", summary(&births));
    assert_eq!(births[0]["edge"], EDGE);
    let bd = births[0]["bd_seq"].as_u64().expect("NBIRTH carries bdSeq");
    for name in ["Node Control/Rebirth", "Link/Reconnects", "Buffer/Depth"] {
        let m = metric(&births[0], name).unwrap_or_else(|| panic!("{name} in NBIRTH"));
        assert_eq!(m["alias"], model.node_metric(name).unwrap().alias, "{name}");
    }
    assert_eq!(
        metric(&births[0], "Node Control/Rebirth").unwrap()["value"],
        false
    );

    // Every point in its DBIRTH with the model's alias and datatype; its value is the
    // device's, or null with Quality 0 when the gateway had not read it yet at the birth.
    let dbirth = |dev: &str| {
        births
            .iter()
            .find(|m| kind(m) == "DBIRTH" && m["device"] == dev)
            .unwrap_or_else(|| panic!("DBIRTH of {dev}:\n{}", summary(&births)))
    };
    for (dev, point, dt, want) in expected_births() {
        let b = dbirth(dev);
        let m = metric(b, point).unwrap_or_else(|| panic!("{dev}.{point} in {b}"));
        let def = model.device(dev).unwrap().by_name(point).unwrap();
        assert_eq!(m["alias"], def.alias, "{dev}.{point}");
        assert_eq!(m["datatype"], dt, "{dev}.{point}");
        assert_eq!(
            m["datatype_code"],
            u64::from(def.datatype.code()),
            "{dev}.{point}"
        );
        let quality = &m["properties"]["Quality"]["value"];
        if m["value"].is_null() {
            assert_eq!(quality, 0, "{dev}.{point}: no value yet is bad quality");
        } else {
            assert_same(dev, point, dt, &m["value"], &want);
            assert_eq!(quality, 192, "{dev}.{point}");
        }
    }
    // Every point's value as the device serves it, in the DBIRTH or the DDATA after it.
    let latest = rig.wait_msgs("every point's device value", WAIT, |msgs| {
        let mut last: HashMap<(String, String), Value> = HashMap::new();
        for m in msgs
            .iter()
            .filter(|m| matches!(kind(m), "DBIRTH" | "DDATA"))
        {
            for x in m["metrics"].as_array().unwrap() {
                if !x["value"].is_null() {
                    let key = (
                        m["device"].as_str().unwrap().to_string(),
                        x["name"].as_str().unwrap_or("?").to_string(),
                    );
                    last.insert(key, x.clone());
                }
            }
        }
        expected_births()
            .iter()
            .all(|(d, p, _, _)| last.contains_key(&(d.to_string(), p.to_string())))
            .then_some(last)
    });
    for (dev, point, dt, want) in expected_births() {
        let m = &latest[&(dev.to_string(), point.to_string())];
        assert_same(dev, point, dt, &m["value"], &want);
        assert_eq!(m["datatype"], dt, "{dev}.{point}");
    }
    assert_eq!(
        metric(dbirth("meter"), "pressure").unwrap()["properties"]["engUnit"]["value"],
        "kPa"
    );
    assert_eq!(
        dbirth("meter")["metrics"].as_array().unwrap().len(),
        model.device("meter").unwrap().metrics.len()
    );

    // A change on the device: DDATA by alias with the new value, live.
    rig.set_register(2, 0, 55);
    let (_, dd) = rig.wait_msg("DDATA of level = 55", 0, WAIT, |m| {
        kind(m) == "DDATA" && metric(m, "level").is_some_and(|x| x["value"] == 55)
    });
    let level = metric(&dd, "level").unwrap();
    assert_eq!(level["is_historical"], false, "{dd}");
    assert!(level.get("name").is_some());

    let msgs = rig.host.messages();
    let (start, s) = session(&msgs, 0).unwrap();
    assert_eq!(start, 0, "nothing before the NBIRTH:\n{}", summary(&msgs));
    assert_eq!(s[0]["bd_seq"], bd);
    assert_seq(&s);
    let first_data = s.iter().position(|m| kind(m) == "DDATA").unwrap();
    assert!(
        s[1..first_data].iter().all(|m| kind(m) == "DBIRTH"),
        "NBIRTH, the DBIRTHs, then data:\n{}",
        summary(&s)
    );
    assert_aliases(&s);
    for m in &s {
        assert!(m.get("error").is_none(), "{m}");
    }
}

#[test]
fn kill_9_gives_an_ndeath_matching_the_nbirth_and_the_restart_the_next_bd_seq() {
    let mut rig = Rig::new("host-kill", None);
    let mut from = 0;
    let mut bds = Vec::new();
    for round in 0..3 {
        rig.start();
        let (i, nb) = rig.wait_msg(&format!("NBIRTH of run {round}"), from, WAIT, |m| {
            kind(m) == "NBIRTH"
        });
        let bd = nb["bd_seq"].as_u64().expect("bdSeq in NBIRTH");
        // Born completely before the kill, so the NDEATH is the will of this very connect.
        rig.wait_msg("the DBIRTHs", i, WAIT, |m| {
            kind(m) == "DBIRTH" && m["device"] == "meter"
        });
        if round > 0 {
            // A restarted process births with the newest reading its store holds.
            let (_, db) = rig.wait_msg("DBIRTH of meter", i, WAIT, |m| {
                kind(m) == "DBIRTH" && m["device"] == "meter"
            });
            let neg = metric(&db, "neg").unwrap();
            assert_eq!(
                (&neg["value"], &neg["properties"]["Quality"]["value"]),
                (&json!(-1234), &json!(192)),
                "{db}"
            );
            assert!(neg["timestamp"].as_u64() < nb["timestamp"].as_u64(), "{db}");
        }
        // Something stored before the kill, for the next run's births.
        common::wait_for("a stored reading of meter", WAIT, || {
            rig.try_export("meter")
                .is_ok_and(|r| r.iter().any(|x| x["point"] == "neg"))
                .then_some(())
        });
        rig.kill9();
        // keepalive 2 s: the broker fires the will within 1.5 x 2 s of silence.
        let (j, nd) = rig.wait_msg(&format!("NDEATH of run {round}"), i, WAIT, |m| {
            kind(m) == "NDEATH"
        });
        assert_eq!(nd["bd_seq"], bd, "NDEATH matches its NBIRTH");
        assert!(nd["seq"].is_null(), "NDEATH has no seq: {nd}");
        assert_eq!(nd["edge"], EDGE);
        bds.push(bd);
        from = j + 1;
    }
    assert_eq!(
        bds,
        [bds[0], (bds[0] + 1) % 256, (bds[0] + 2) % 256],
        "+1 per restart:\n{}",
        summary(&rig.host.messages())
    );
}

#[test]
fn ncmd_rebirth_sends_all_births_again_and_data_continues() {
    let mut rig = Rig::new("host-rebirth", None);
    rig.start();
    let (i, nb) = rig.wait_msg("NBIRTH", 0, WAIT, |m| kind(m) == "NBIRTH");
    rig.wait_msg("DBIRTH of ctl", i, WAIT, |m| {
        kind(m) == "DBIRTH" && m["device"] == "ctl"
    });
    let before = rig.host.messages().len();
    rig.host.rebirth(EDGE);
    let (j, again) = rig.wait_msg("the NBIRTH of the rebirth", before, WAIT, |m| {
        kind(m) == "NBIRTH"
    });
    assert_eq!(again["seq"], 0);
    assert_eq!(
        again["bd_seq"], nb["bd_seq"],
        "a rebirth is not a new connect"
    );
    rig.set_register(2, 0, 77);
    rig.wait_msg("DDATA after the rebirth", j, WAIT, |m| {
        kind(m) == "DDATA" && metric(m, "level").is_some_and(|x| x["value"] == 77)
    });
    let msgs = rig.host.messages();
    let (_, s) = session(&msgs, j).unwrap();
    assert_seq(&s);
    let births = assert_aliases(&s);
    let mut devs: Vec<&String> = births.keys().collect();
    devs.sort();
    assert_eq!(
        devs,
        ["ctl", "meter"],
        "every DBIRTH again:\n{}",
        summary(&s)
    );
    assert!(
        msgs[before..j].iter().all(|m| kind(m) != "NDEATH"),
        "no death on a rebirth"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcmd_writes_an_allowed_point_once_and_refuses_the_others() {
    let mut rig = Rig::new("host-dcmd", None);
    let model = model(&rig);
    let events = common::Subscriber::start(
        &rig.pki,
        rig.broker.port,
        &format!("gasdtu/{}/#", common::spb_gw::GW),
        "events",
        false,
    );
    events.wait_subscribed(1, WAIT).await;
    rig.start();
    let (i, _) = rig.wait_msg("NBIRTH", 0, WAIT, |m| kind(m) == "NBIRTH");
    rig.wait_msg("DBIRTH of ctl", i, WAIT, |m| {
        kind(m) == "DBIRTH" && m["device"] == "ctl"
    });
    let ctl = model.device("ctl").unwrap();
    let setpoint = ctl.by_name("setpoint").unwrap().alias;
    let writes0 = rig.tap.writes();
    let ack = rig
        .host
        .command(json!({"cmd": "dcmd", "edge": EDGE, "device": "ctl",
        "metrics": [{"alias": setpoint, "datatype": "UInt16", "value": 321}]}));
    // The next DDATA shows the read-back value.
    rig.wait_msg("DDATA of setpoint = 321", i, WAIT, |m| {
        kind(m) == "DDATA" && metric(m, "setpoint").is_some_and(|x| x["value"] == 321)
    });
    assert_eq!(rig.tap.writes(), writes0 + 1, "one write on the bus");
    // The same bytes again (a redelivery): answered from the store, no second write.
    rig.host
        .command(json!({"cmd": "raw", "topic": ack["topic"], "hex": ack["hex"]}));
    // Not in [remote.writes]: refused, never written.
    let other = ctl.by_name("other").unwrap().alias;
    rig.host
        .command(json!({"cmd": "dcmd", "edge": EDGE, "device": "ctl",
        "metrics": [{"alias": other, "datatype": "UInt16", "value": 9}]}));
    let refused = common::wait_until("the not_allowed command event", WAIT, || {
        events.snapshot().into_iter().find_map(|m| {
            let v: Value = serde_json::from_slice(&m.payload).ok()?;
            (v["event"] == "command" && v["error"] == "not_allowed").then_some(v)
        })
    })
    .await;
    assert_eq!(refused["status"], "refused", "{refused}");
    let ok = events.snapshot().into_iter().find_map(|m| {
        let v: Value = serde_json::from_slice(&m.payload).ok()?;
        (v["event"] == "command" && v["status"] == "ok").then_some(v)
    });
    let ok = ok.expect("the write left an audit event");
    assert!(
        ok["id"].as_str().is_some_and(|id| id.starts_with("spb:")),
        "a DCMD's command id: {ok}"
    );
    assert_eq!(ok["op"], "write", "{ok}");
    // The refusal came after the redelivery was handled: still one write in all.
    assert_eq!(rig.tap.writes(), writes0 + 1, "{}", rig.log_text());
}

#[test]
fn with_a_primary_host_no_births_until_its_state_is_online() {
    let mut rig = Rig::new("host-primary", Some("scada"));
    rig.start();
    // Proof of life without births: the gateway polls (the store fills) and stays connected.
    common::wait_for("readings stored while waiting for the host", WAIT, || {
        rig.try_export("ctl")
            .is_ok_and(|r| r.len() >= 6)
            .then_some(())
    });
    assert!(rig.alive_for(Duration::from_secs(2)), "{}", rig.log_text());
    assert!(
        rig.host.messages().iter().all(|m| kind(m) != "NBIRTH"),
        "born before the primary host was online:\n{}",
        summary(&rig.host.messages())
    );
    rig.host.state("scada", true);
    let (i, nb) = rig.wait_msg("NBIRTH once scada is online", 0, WAIT, |m| {
        kind(m) == "NBIRTH"
    });
    rig.wait_msg("DBIRTH of ctl", i, WAIT, |m| {
        kind(m) == "DBIRTH" && m["device"] == "ctl"
    });
    // The primary host goes offline: the session ends with its NDEATH, and no birth comes
    // until the host is back; then a new session (the next bdSeq) is born.
    rig.host.state("scada", false);
    let (j, nd) = rig.wait_msg("NDEATH once scada is offline", i, WAIT, |m| {
        kind(m) == "NDEATH"
    });
    assert_eq!(nd["bd_seq"], nb["bd_seq"], "{nd}");
    assert!(rig.alive_for(Duration::from_secs(2)), "{}", rig.log_text());
    let after = rig.host.messages();
    assert!(
        after[j..].iter().all(|m| kind(m) != "NBIRTH"),
        "born while the primary host is offline:\n{}",
        summary(&after)
    );
    rig.host.state("scada", true);
    let (_, nb2) = rig.wait_msg("NBIRTH once scada is back", j, WAIT, |m| {
        kind(m) == "NBIRTH"
    });
    let bd = nb["bd_seq"].as_u64().unwrap();
    assert!(
        nb2["bd_seq"].as_u64().is_some_and(|b| b != bd),
        "a new session has a new bdSeq: {nb2}"
    );
}

#[test]
fn a_dead_device_gets_its_ddeath_and_a_dbirth_when_it_answers_again() {
    let mut rig = Rig::new("host-ddeath", None);
    rig.start();
    let (i, _) = rig.wait_msg("NBIRTH", 0, WAIT, |m| kind(m) == "NBIRTH");
    rig.wait_msg("a DDATA of meter", i, WAIT, |m| {
        kind(m) == "DDATA" && m["device"] == "meter"
    });
    rig.stop_device();
    let (j, _) = rig.wait_msg("DDEATH of meter", i, WAIT, |m| {
        kind(m) == "DDEATH" && m["device"] == "meter"
    });
    rig.restart_device();
    let (k, db) = rig.wait_msg("DBIRTH of meter when it is back", j, WAIT, |m| {
        kind(m) == "DBIRTH" && m["device"] == "meter"
    });
    // Born again with what it reads now (or without a value yet, then DDATA).
    assert!(metric(&db, "neg").is_some(), "{db}");
    rig.wait_msgs("meter's values after its rebirth", WAIT, |msgs| {
        msgs[k..]
            .iter()
            .filter(|m| matches!(kind(m), "DBIRTH" | "DDATA") && m["device"] == "meter")
            .any(|m| metric(m, "neg").is_some_and(|x| x["value"] == -1234))
            .then_some(())
    });
    let msgs = rig.host.messages();
    assert_eq!(
        msgs.iter().filter(|m| kind(m) == "NBIRTH").count(),
        1,
        "a dead device is not a node rebirth:\n{}",
        summary(&msgs)
    );
    let (_, s) = session(&msgs, 0).unwrap();
    assert_seq(&s);
    assert_aliases(&s);
}
