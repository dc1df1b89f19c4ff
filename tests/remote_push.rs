//! Config pushes end to end (issue 10, part E2) with the real parts: the real binary
//! (`gasdtu run`) with `[uplink]` to a persistent mosquitto over mutual TLS and `[remote]` with a
//! key made by `remote::sign::generate`, a `gasdtu simulate` device, an ops publisher and a
//! subscriber. One daemon serves the cases in order: a good push (a second device) is applied,
//! polled and confirmed (`config/state` `applied`, retained, with version and sha256); the same
//! push again (a QoS 1 redelivery) is not applied twice; a bad push is refused with key paths
//! and line:col and the file is unchanged; a push that points the uplink at a dead port rolls
//! back within its 5 s `confirm_within` and reports `rolled_back` once reconnected; a push
//! killed (SIGKILL) while pending keeps its config in force and is confirmed after the restart.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::remote::{pressure_device, run_daemon as start_daemon, sha_hex, GwConfig, RemoteGw};
use common::{mutual_tls_broker, simulate_tcp, wait_until, Publisher, Subscriber};
use serde_json::Value;

const GW: &str = "gw-push";
const WAIT: Duration = Duration::from_secs(30);

/// The config: `devices` named `pcvN` on the simulator, the uplink to `broker_port`.
fn config_text(
    dir: &Path,
    pki: &common::Pki,
    broker_port: u16,
    modbus_port: u16,
    public: &[u8; 32],
    devices: &[&str],
    pressure_type: &str,
) -> String {
    let devs: String = devices
        .iter()
        .enumerate()
        .map(|(i, d)| pressure_device(d, i as u32 + 1, "1s", pressure_type))
        .collect();
    GwConfig {
        gw: GW,
        dir,
        pki,
        broker_port,
        modbus_port,
        public,
        bus_timeout: "500ms",
        devices: &devs,
        writes: "",
    }
    .text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_pushes_apply_confirm_refuse_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    let (_sim, sim_port) = simulate_tcp(&["1:pt-float", "2:pt-float", "3:pt-float"], &[]);
    let gw = RemoteGw::new(GW, WAIT);
    let cfg = |devices: &[&str], ty: &str, port: u16| {
        config_text(dir.path(), &pki, port, sim_port, &gw.public, devices, ty)
    };

    let config = dir.path().join("gasdtu.toml");
    let v0 = cfg(&["pcv1"], "f32", broker.port);
    std::fs::write(&config, &v0).unwrap();
    let log = dir.path().join("daemon.log");
    let sub = Subscriber::start(
        &pki,
        broker.port,
        &format!("{}/#", gw.root),
        "push-sub",
        false,
    );
    sub.wait_subscribed(1, WAIT).await;
    let mut daemon = start_daemon(&config, &log);
    let ops = Publisher::start(&pki, broker.port, "push-ops");
    let set = gw.topic("config/set");
    wait_until("data from pcv1", WAIT, || {
        (gw.data_from(&sub, "pcv1") > 0).then_some(())
    })
    .await;
    // Both request subscriptions are granted together: a ping answered proves config/set is
    // subscribed too (a push published before that would be lost on a first session).
    gw.first_ping(&ops, &sub, "ping", &log).await;

    // -- a good push: a second device; applied, polled, confirmed, retained
    let v1 = cfg(&["pcv1", "pcv2"], "f32", broker.port);
    let p1 = gw.push("v1", &v1, "30s");
    ops.publish(&set, p1.clone(), false).await;
    gw.state(&sub, "v1", "pending_confirm", &log).await;
    let (applied, _) = gw.state(&sub, "v1", "applied", &log).await;
    assert_eq!(applied["version"], "v1", "{applied}");
    assert_eq!(applied["sha256"], sha_hex(&v1), "{applied}");
    wait_until("data from pcv2", WAIT, || {
        (gw.data_from(&sub, "pcv2") > 0).then_some(())
    })
    .await;
    assert_eq!(std::fs::read_to_string(&config).unwrap(), v1);
    // A fresh subscriber gets the retained state.
    let late = Subscriber::start(
        &pki,
        broker.port,
        &gw.topic("config/state"),
        "push-late",
        false,
    );
    let got = wait_until("retained config/state", WAIT, || {
        late.snapshot().into_iter().find(|m| m.retain)
    })
    .await;
    let got: Value = serde_json::from_slice(&got.payload).unwrap();
    assert_eq!(got["status"], "applied", "{got}");
    assert_eq!(got["version"], "v1", "{got}");

    // -- the same push again (a QoS 1 redelivery): not applied twice
    ops.publish(&set, p1, false).await;
    wait_until("the redelivery recognised", WAIT, || {
        std::fs::read_to_string(&log)
            .ok()?
            .contains("already handled (redelivery)")
            .then_some(())
    })
    .await;

    // -- a bad push: refused with key paths and line:col, nothing changes
    let bad = cfg(&["pcv1", "pcv2", "pcv3"], "f99", broker.port);
    ops.publish(&set, gw.push("bad1", &bad, "30s"), false).await;
    let (rej, _) = gw.state(&sub, "bad1", "rejected", &log).await;
    let errors = rej["errors"].as_array().expect("errors");
    assert!(errors.len() >= 3, "every error listed: {rej}");
    for e in errors {
        assert!(
            e["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("points.pressure.type")),
            "{e}"
        );
        assert!(
            e["line"].as_u64().is_some() && e["col"].as_u64().is_some(),
            "{e}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        v1,
        "a bad push changes nothing"
    );
    // -- a push that would make the gateway idle at its next start (unreachable): refused
    let idle = cfg(&["pcv1", "pcv2", "pcv3"], "f32", broker.port).replacen(
        "[gateway]\n",
        "[gateway]\ncommissioned = false\n",
        1,
    );
    assert!(idle.contains("commissioned = false"));
    ops.publish(&set, gw.push("idle1", &idle, "30s"), false)
        .await;
    let (rej, _) = gw.state(&sub, "idle1", "rejected", &log).await;
    assert!(
        rej["errors"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["path"] == "gateway.commissioned")),
        "{rej}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), v1);
    // The redelivery of v1 (handled before bad1, one request at a time) was not applied again.
    assert_eq!(
        gw.push_events(&sub, "v1", "pending_confirm"),
        1,
        "v1 applied once"
    );
    assert_eq!(gw.states(&sub, "v1", "pending_confirm").len(), 1);

    // -- a push that points the uplink at a dead port rolls back within its 5 s window
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let v2 = cfg(&["pcv1"], "f32", dead_port);
    let t0 = std::time::Instant::now();
    let p2 = gw.push("v2", &v2, "5s");
    ops.publish(&set, p2.clone(), false).await;
    let (rb, _) = gw.state(&sub, "v2", "rolled_back", &log).await;
    assert!(
        t0.elapsed() < Duration::from_secs(25),
        "rolled back in {:?}",
        t0.elapsed()
    );
    assert_eq!(rb["version"], "v1", "v1 is back in force: {rb}");
    assert!(
        rb["reason"].as_str().is_some_and(|r| r.contains("5 s")),
        "{rb}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), v1);
    // The same push once more (a redelivery after the rollback): never applied again.
    ops.publish(&set, p2, false).await;
    wait_until("the second redelivery recognised", WAIT, || {
        let log = std::fs::read_to_string(&log).ok()?;
        (log.matches("already handled (redelivery)").count() >= 2).then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        v1,
        "v2 not applied again"
    );
    assert_eq!(
        gw.push_events(&sub, "v2", "pending_confirm"),
        1,
        "v2 applied once"
    );

    // -- kill -9 while a push is surely pending (its uplink is dead, nothing can confirm it):
    // its config stays in force, and after the restart the same window goes on and rolls it
    // back at its deadline.
    let v4 = cfg(&["pcv1", "pcv2"], "f32", dead_port);
    let t4 = std::time::Instant::now();
    ops.publish(&set, gw.push("v4", &v4, "8s"), false).await;
    wait_until("v4 installed", WAIT, || {
        (std::fs::read_to_string(&config).ok()? == v4).then_some(())
    })
    .await;
    let pending = dir.path().join("state/config/pending.json");
    assert!(pending.exists(), "v4 awaits confirmation");
    let pid = daemon.child.id().to_string();
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    common::wait_exit(&mut daemon.child, Duration::from_secs(10)).expect("killed");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        v4,
        "the new config in force"
    );
    assert!(
        pending.exists(),
        "the pending confirmation survives the kill"
    );
    daemon = start_daemon(&config, &log);
    let (rb4, _) = gw.state(&sub, "v4", "rolled_back", &log).await;
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("config push v4 still awaits confirmation"),
        "the restart found the pending push"
    );
    assert_eq!(rb4["version"], "v1", "{rb4}");
    assert!(
        rb4["reason"].as_str().is_some_and(|r| r.contains("8 s")),
        "{rb4}"
    );
    assert!(
        t4.elapsed() < Duration::from_secs(25),
        "the window went on: {:?}",
        t4.elapsed()
    );
    assert!(
        std::fs::read_to_string(&config).unwrap() == v1,
        "v1 back in the file; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(!pending.exists());

    // -- kill -9 right after a good push is installed (before or after its confirmation):
    // its config stays in force and is confirmed after the restart.
    let v3 = cfg(&["pcv1", "pcv3"], "f32", broker.port);
    ops.publish(&set, gw.push("v3", &v3, "60s"), false).await;
    let installed = wait_until("v3 installed", WAIT, || {
        (std::fs::read_to_string(&config).ok()? == v3).then_some(())
    });
    installed.await;
    let pid = daemon.child.id().to_string();
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    common::wait_exit(&mut daemon.child, Duration::from_secs(10)).expect("killed");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        v3,
        "the new config in force"
    );
    let _daemon = start_daemon(&config, &log);
    let (ok, _) = gw.state(&sub, "v3", "applied", &log).await;
    assert_eq!(ok["version"], "v3", "{ok}");
    wait_until("data from pcv3", WAIT, || {
        (gw.data_from(&sub, "pcv3") > 0).then_some(())
    })
    .await;
}
