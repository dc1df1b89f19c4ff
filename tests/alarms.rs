//! Edge alarms end to end: the real `gasdtu run` binary polls an in-process simulator whose
//! pressure the test pins (`Simulator::set`), commits to SQLite and forwards over TLS to a real
//! mosquitto; a persistent subscriber sees `<root>/alarm` and `<root>/data` in arrival order.
//!
//! 1. Pressure over its limit: `raised` arrives, then `cleared` with the same occurrence id.
//! 2. Broker stopped: raise, clear and raise again while a backlog of readings builds; broker
//!    back: the three transitions arrive in order and before every backlog (historical) data
//!    message.
//! 3. kill -9 while the alarm is active, restart: no second raise for that occurrence, and
//!    the later clear still arrives, paired with it.
//! 4. Interlock: the first raise writes the writable `valve_close` coil once, reads it back
//!    and reports an `interlock` event; the cooldown keeps later raises from writing again.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use gasdtu::model::Value;
use gasdtu::sim::{Faults, SimDevice, Simulator};
use tokio_util::sync::CancellationToken;

const ROOT: &str = "gasdtu/alarm-test";

struct Site {
    _dir: tempfile::TempDir,
    pki: Pki,
    broker: Broker,
    sim: Simulator,
    config: PathBuf,
    socket: PathBuf,
}

impl Site {
    async fn new(stop: &CancellationToken) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let (pki, broker) = mutual_tls_broker(dir.path());
        let profile = gasdtu::config::profiles::resolve_profile("pt-float", &[]).unwrap();
        let sim = Simulator::new(
            vec![SimDevice::new(1, "pt1", profile.points, profile.computed)],
            Faults::default(),
        );
        sim.set(1, "pressure", Value::Float(400.0)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim_port = listener.local_addr().unwrap().port();
        {
            let (sim, stop) = (sim.clone(), stop.clone());
            tokio::spawn(async move { sim.serve_tcp(listener, stop).await });
        }
        let state = dir.path().join("state");
        let config = dir.path().join("gasdtu.toml");
        std::fs::write(
            &config,
            format!(
                r#"[gateway]
id = "alarm-test"
state_dir = "{state}"

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {sim_port}
timeout = "500ms"

[devices.pt1]
bus = "lan"
unit = 1
poll = "1s"
profile = "pt-float"

# The shut-off valve's close command: a writable coil of the same device.
[devices.pt1.points.valve_close]
table = "coil"
address = 0
type = "bit"
writable = true

[alarms.p_high]
device = "pt1"
point = "pressure"
kind = "limit"
h = 700
deadband = 20
severity = "critical"
message = "{{device}} {{point}} {{value}} {{unit}} above {{limit}}"
# Interlock: close the valve once per raise (cooldown longer than the test).
action = {{ point = "valve_close", value = 1, cooldown = "1h" }}

{uplink}reconnect_min = "1s"
reconnect_max = "2s"
"#,
                state = state.display(),
                uplink = pki.uplink_toml(broker.port),
            ),
        )
        .unwrap();
        let socket = dir.path().join("gasdtu.sock");
        Site {
            _dir: dir,
            pki,
            broker,
            sim,
            config,
            socket,
        }
    }

    fn daemon(&self) -> Proc {
        Proc::spawn(
            "gasdtu run",
            Command::new(gasdtu())
                .args(["run", "--poll-now", "--log-level", "error"])
                .arg("--config")
                .arg(&self.config)
                .arg("--socket")
                .arg(&self.socket)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        )
    }

    fn pressure(&self, v: f64) {
        self.sim.set(1, "pressure", Value::Float(v)).unwrap();
    }

    fn status(&self) -> Option<serde_json::Value> {
        let out = Command::new(gasdtu())
            .args(["status", "--json", "--socket"])
            .arg(&self.socket)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Occurrence ids of the active alarms, once the daemon answers.
    fn active(&self) -> Option<Vec<u64>> {
        let v = self.status()?;
        Some(
            v["alarms"]
                .as_array()?
                .iter()
                .filter_map(|a| a["occurrence"].as_u64())
                .collect(),
        )
    }
}

/// Every message from the daemon as (topic suffix, JSON), in arrival order.
fn messages(sub: &Subscriber) -> Vec<(String, serde_json::Value)> {
    sub.snapshot()
        .into_iter()
        .filter_map(|m| {
            let kind = m.topic.strip_prefix(&format!("{ROOT}/"))?.to_string();
            let v = serde_json::from_slice(&m.payload).ok()?;
            Some((kind, v))
        })
        .collect()
}

/// Alarm transitions (state, occurrence, seq), deduplicated by seq (a resend after a
/// crash repeats a seq with identical bytes), in arrival order.
fn alarms(sub: &Subscriber) -> Vec<(String, u64, u64)> {
    let mut seen = std::collections::BTreeSet::new();
    messages(sub)
        .into_iter()
        .filter(|(k, _)| k == "alarm")
        .filter_map(|(_, v)| {
            let seq = v["seq"].as_u64()?;
            seen.insert(seq).then(|| {
                (
                    v["state"].as_str().unwrap_or("").to_string(),
                    v["occurrence"].as_u64().unwrap_or(0),
                    seq,
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_reach_the_broker_first_in_order_and_survive_a_crash() {
    let stop = CancellationToken::new();
    let mut site = Site::new(&stop).await;
    let sub = Subscriber::start(
        &site.pki,
        site.broker.port,
        &format!("{ROOT}/#"),
        "alarm-sub",
        true,
    );
    sub.wait_subscribed(1, Duration::from_secs(15)).await;
    let mut daemon = site.daemon();
    wait_until("live data at the broker", Duration::from_secs(20), || {
        messages(&sub)
            .iter()
            .any(|(k, _)| k == "data")
            .then_some(())
    })
    .await;
    assert!(alarms(&sub).is_empty(), "400 kPa is normal");

    // 1. Over the limit, then back.
    site.pressure(900.0);
    let raised = wait_until("the raise at the broker", Duration::from_secs(15), || {
        messages(&sub)
            .into_iter()
            .find(|(k, v)| k == "alarm" && v["state"] == "raised")
            .map(|(_, v)| v)
    })
    .await;
    assert_eq!(raised["gw"], "alarm-test");
    assert_eq!(raised["alarm"], "p_high");
    assert_eq!(raised["dev"], "pt1");
    assert_eq!(raised["point"], "pressure");
    assert_eq!(raised["level"], "h");
    assert_eq!(raised["severity"], "critical");
    assert_eq!(raised["value"], 900.0);
    assert_eq!(raised["limit"], 700.0);
    assert_eq!(raised["unit"], "kPa");
    assert_eq!(raised["message"], "pt1 pressure 900 kPa above 700");
    let occ1 = raised["occurrence"].as_u64().unwrap();
    assert!(humantime::parse_rfc3339(raised["raised_at"].as_str().unwrap()).is_ok());
    // The interlock closed the valve once, read it back and reported it as an event.
    let interlock = wait_until("the interlock event", Duration::from_secs(15), || {
        messages(&sub)
            .into_iter()
            .find(|(k, v)| k == "event" && v["event"] == "interlock")
            .map(|(_, v)| v)
    })
    .await;
    assert_eq!(interlock["result"], "ok", "{interlock}");
    assert_eq!(interlock["alarm"], "p_high");
    assert_eq!(interlock["point"], "valve_close");
    assert_eq!(interlock["readback"], true, "{interlock}");
    let coil = site
        .sim
        .with_device(1, |d| d.read_raw(gasdtu::model::Table::Coil, 0, 1))
        .unwrap();
    assert_eq!(coil, vec![1], "the simulator's valve coil was written");
    let active = wait_until("status lists the alarm", Duration::from_secs(10), || {
        site.active()
    })
    .await;
    assert_eq!(active, vec![occ1]);
    site.pressure(400.0);
    let cleared = wait_until("the clear at the broker", Duration::from_secs(15), || {
        messages(&sub)
            .into_iter()
            .find(|(k, v)| k == "alarm" && v["state"] == "cleared")
            .map(|(_, v)| v)
    })
    .await;
    assert_eq!(
        cleared["occurrence"], occ1,
        "the clear pairs with its raise"
    );
    assert_eq!(cleared["raised_at"], raised["raised_at"]);
    assert!(cleared["cleared_at"].as_str().unwrap() > raised["raised_at"].as_str().unwrap());
    assert_eq!(alarms(&sub).len(), 2);

    // 2. Broker down: raise, clear, raise while a backlog builds.
    site.broker.stop();
    let mark = sub.snapshot().len();
    site.pressure(900.0);
    let occ2 = wait_until(
        "a second occurrence (status)",
        Duration::from_secs(15),
        || site.active()?.first().copied(),
    )
    .await;
    site.pressure(400.0);
    wait_until("the clear (status)", Duration::from_secs(15), || {
        site.active()?.is_empty().then_some(())
    })
    .await;
    site.pressure(900.0);
    let occ3 = wait_until(
        "a third occurrence (status)",
        Duration::from_secs(15),
        || site.active()?.first().copied(),
    )
    .await;
    assert!(occ1 < occ2 && occ2 < occ3, "{occ1} {occ2} {occ3}");
    // Some more backlog behind the alarms.
    wait_until("a backlog of readings", Duration::from_secs(20), || {
        let v = site.status()?;
        (v["buffer"]["pending_readings"].as_u64()? >= 10).then_some(())
    })
    .await;
    site.broker.start();
    sub.wait_subscribed(2, Duration::from_secs(20)).await;
    let after = wait_until(
        "the outage's alarms and backlog",
        Duration::from_secs(30),
        || {
            let all = sub.snapshot();
            let tail: Vec<(String, serde_json::Value)> = all[mark..]
                .iter()
                .filter_map(|m| {
                    let k = m.topic.strip_prefix(&format!("{ROOT}/"))?.to_string();
                    Some((k, serde_json::from_slice(&m.payload).ok()?))
                })
                .collect();
            let n_alarms = tail.iter().filter(|(k, _)| k == "alarm").count();
            let hist = tail.iter().any(|(k, v)| k == "data" && v["hist"] == true);
            (n_alarms >= 3 && hist).then_some(tail)
        },
    )
    .await;
    let order: Vec<(String, u64)> = after
        .iter()
        .filter(|(k, _)| k == "alarm")
        .map(|(_, v)| {
            (
                v["state"].as_str().unwrap().to_string(),
                v["occurrence"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            ("raised".to_string(), occ2),
            ("cleared".to_string(), occ2),
            ("raised".to_string(), occ3)
        ],
        "alarms in order"
    );
    let last_alarm = after.iter().rposition(|(k, _)| k == "alarm").unwrap();
    let first_hist = after
        .iter()
        .position(|(k, v)| k == "data" && v["hist"] == true)
        .unwrap();
    assert!(
        last_alarm < first_hist,
        "every alarm before the backlog: alarm #{last_alarm}, first historical data #{first_hist}"
    );
    let seqs: Vec<u64> = after
        .iter()
        .filter(|(k, _)| k == "alarm")
        .map(|(_, v)| v["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "alarm seqs ascend: {seqs:?}"
    );

    // 3. kill -9 with occ3 active, restart: no duplicate raise, the clear still arrives.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    drop(daemon);
    let _daemon = site.daemon();
    wait_until(
        "the restarted daemon lists occurrence 3",
        Duration::from_secs(20),
        || (site.active()? == vec![occ3]).then_some(()),
    )
    .await;
    // Several polls at 900 kPa after the restart.
    let polls_before = messages(&sub).iter().filter(|(k, _)| k == "data").count();
    wait_until(
        "new data after the restart",
        Duration::from_secs(20),
        || {
            (messages(&sub).iter().filter(|(k, _)| k == "data").count() >= polls_before + 3)
                .then_some(())
        },
    )
    .await;
    site.pressure(400.0);
    wait_until("the clear of occurrence 3", Duration::from_secs(20), || {
        alarms(&sub)
            .iter()
            .any(|(s, o, _)| s == "cleared" && *o == occ3)
            .then_some(())
    })
    .await;
    let all = alarms(&sub);
    let raises3 = all
        .iter()
        .filter(|(s, o, _)| s == "raised" && *o == occ3)
        .count();
    assert_eq!(raises3, 1, "no duplicate raise after kill -9: {all:?}");
    let raises = all.iter().filter(|(s, _, _)| s == "raised").count();
    assert_eq!(raises, 3, "exactly three raises in the whole run: {all:?}");
    stop.cancel();
}
