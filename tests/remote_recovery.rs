//! Recovery of config pushes and the clock rule of remote writes, end to end (issue 10) with the
//! real parts: the real binary (`gasdtu run`) with `[uplink]` to a persistent mosquitto over
//! mutual TLS and `[remote]` with a key, `gasdtu simulate` devices, an ops publisher and a
//! subscriber on `<root>/#`.
//!
//! - A pending push whose config no longer loads at start (its client certificate and key were
//!   provisioned under a tmpfs-like directory that a power cut empties) is rolled back: the
//!   daemon comes up on the previous config and reports `rolled_back` naming the load failure
//!   on the retained `config/state` and in an event.
//! - A crash loop while a push is pending (simulated: kill -9 right after each start has found
//!   the pending push) is undone by the third start, which reports `rolled_back` with the
//!   crash-loop reason; the old device set is polled again.
//! - A local edit + SIGHUP while a push is pending takes over: the push is reported
//!   `rolled_back` naming the local edit, version `local`, and the edited config runs (its
//!   device set is polled); nothing is rolled back over the edit at the deadline.
//! - Requests over their size bound are answered: a 9 KiB command gets `too_large` under the
//!   id it claims; a 300 KiB push gets `rejected` / `too_large` with the version it claims and
//!   the `request_sha256` of its bytes (how `gasdtu push` recognises its own refusal).
//! - With an untrusted wall clock (the daemon under libfaketime at a stale 2025 time, as a
//!   gateway whose saved clock was restored at boot before NTP answered) a signed, allowed
//!   write is refused with `clock_untrusted` and nothing is written on the wire, while a
//!   `read` still answers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::remote::{
    cmd_body, pressure_device, run_daemon, run_daemon_with, sha_hex, valve_device, GwConfig,
    RemoteGw,
};
use common::{
    mutual_tls_broker, simulate_tcp, wait_exit, wait_until, Broker, ModbusTap, Pki, Proc,
    Publisher, Subscriber,
};
use gasdtu::time::{now_ms, rfc3339_ms};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// A gateway on the simulator's `pcvN` pressure devices, its uplink through `pki` to `port`.
fn pressure_config(
    gw: &RemoteGw,
    dir: &Path,
    pki: &Pki,
    port: u16,
    sim_port: u16,
    devices: &[&str],
) -> String {
    let devs: String = devices
        .iter()
        .map(|d| {
            let unit = d.trim_start_matches("pcv").parse().unwrap();
            pressure_device(d, unit, "1s", "f32")
        })
        .collect();
    GwConfig {
        gw: gw.id,
        dir,
        pki,
        broker_port: port,
        modbus_port: sim_port,
        public: &gw.public,
        bus_timeout: "500ms",
        devices: &devs,
        writes: "",
    }
    .text()
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// SIGKILL (a power cut) and reap.
fn kill9(daemon: &mut Proc) {
    daemon.child.kill().unwrap();
    wait_exit(&mut daemon.child, Duration::from_secs(10)).expect("killed");
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Read times (RFC 3339) of device `dev` in the `data` messages seen so far.
fn read_times(gw: &RemoteGw, sub: &Subscriber, dev: &str) -> Vec<String> {
    gw.seen(sub)
        .into_iter()
        .filter(|(t, _, _)| t == "data")
        .flat_map(|(_, v, _)| v["data"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["dev"] == dev)
        .flat_map(|d| d["reads"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["t"].as_str().map(str::to_string))
        .collect()
}

/// The common start: broker, simulator with units 1 and 2, v0 (`pcv1`, the live broker) in
/// force, the daemon polling and answering pings.
struct Rig {
    dir: tempfile::TempDir,
    pki: Pki,
    broker: Broker,
    _sim: Proc,
    sim_port: u16,
    gw: RemoteGw,
    config: PathBuf,
    log: PathBuf,
    v0: String,
    sub: Subscriber,
    ops: Publisher,
    daemon: Proc,
}

async fn rig(id: &'static str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    let (sim, sim_port) = simulate_tcp(&["1:pt-float", "2:pt-float"], &[]);
    let gw = RemoteGw::new(id, WAIT);
    let config = dir.path().join("gasdtu.toml");
    let v0 = pressure_config(&gw, dir.path(), &pki, broker.port, sim_port, &["pcv1"]);
    std::fs::write(&config, &v0).unwrap();
    let log = dir.path().join("daemon.log");
    let sub = Subscriber::start(
        &pki,
        broker.port,
        &format!("{}/#", gw.root),
        &format!("{id}-sub"),
        false,
    );
    sub.wait_subscribed(1, WAIT).await;
    let daemon = run_daemon(&config, &log);
    let ops = Publisher::start(&pki, broker.port, &format!("{id}-ops"));
    wait_until("data from pcv1", WAIT, || {
        (gw.data_from(&sub, "pcv1") > 0).then_some(())
    })
    .await;
    gw.first_ping(&ops, &sub, "ping", &log).await;
    Rig {
        dir,
        pki,
        broker,
        _sim: sim,
        sim_port,
        gw,
        config,
        log,
        v0,
        sub,
        ops,
        daemon,
    }
}

impl Rig {
    /// Push `text` as `version` (a 10 min window: only a restart decides) and wait until it is
    /// installed and awaits confirmation.
    async fn push_pending(&self, version: &str, text: &str) {
        self.ops
            .publish(
                &self.gw.topic("config/set"),
                self.gw.push(version, text, "10m"),
                false,
            )
            .await;
        let pending = self.dir.path().join("state/config/pending.json");
        wait_until(&format!("{version} installed, pending"), WAIT, || {
            (std::fs::read_to_string(&self.config).ok()? == text && pending.exists()).then_some(())
        })
        .await;
    }

    /// The retained `config/state`, as a subscriber that comes later gets it.
    async fn retained_state(&self) -> Value {
        let late = Subscriber::start(
            &self.pki,
            self.broker.port,
            &self.gw.topic("config/state"),
            &format!("{}-late", self.gw.id),
            false,
        );
        let got = wait_until("the retained config/state", WAIT, || {
            late.snapshot().into_iter().find(|m| m.retain)
        })
        .await;
        serde_json::from_slice(&got.payload).unwrap()
    }
}

/// A pushed config that cannot load at start any more is rolled back to the previous one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_push_that_no_longer_loads_at_start_is_rolled_back() {
    let mut r = rig("gw-unload").await;
    // The push moves the gateway to a new broker (not reachable yet: the push stays pending)
    // with a CA and client certificate that a provisioning agent put under a runtime
    // directory, the kind a power cut empties.
    let run = r.dir.path().join("run-gasdtu");
    std::fs::create_dir(&run).unwrap();
    for f in ["ca.pem", "client.pem", "client.key"] {
        std::fs::copy(r.pki.path(f), run.join(f)).unwrap();
    }
    let new_pki = Pki { dir: run.clone() };
    let v1 = pressure_config(
        &r.gw,
        r.dir.path(),
        &new_pki,
        dead_port(),
        r.sim_port,
        &["pcv1", "pcv2"],
    );
    r.push_pending("v1", &v1).await;

    // Power cut: the daemon dies, the runtime directory is gone at the next boot.
    kill9(&mut r.daemon);
    std::fs::remove_dir_all(&run).unwrap();
    assert_eq!(std::fs::read_to_string(&r.config).unwrap(), v1);

    let _daemon = run_daemon(&r.config, &r.log);
    let (state, _) = r.gw.state(&r.sub, "v1", "rolled_back", &r.log).await;
    let reason = state["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("failed to load at start")
            && reason.contains(&format!("cannot read {}", run.display())),
        "the reason names the load failure: {state}\nlog:\n{}",
        log_text(&r.log)
    );
    assert_eq!(state["push"]["sha256"], sha_hex(&v1), "{state}");
    assert_eq!(
        state["sha256"],
        sha_hex(&r.v0),
        "the previous config runs: {state}"
    );
    assert_eq!(
        std::fs::read_to_string(&r.config).unwrap(),
        r.v0,
        "the previous config is back in the file"
    );
    assert!(!r.dir.path().join("state/config/pending.json").exists());
    // The event of the audit trail.
    wait_until("the rolled_back event", WAIT, || {
        r.gw.seen(&r.sub).into_iter().find(|(t, v, _)| {
            t == "event"
                && v["event"] == "config_push"
                && v["status"] == "rolled_back"
                && v["version"] == "v1"
                && v["reason"]
                    .as_str()
                    .is_some_and(|m| m.contains("failed to load"))
        })
    })
    .await;
    // It runs on the previous config: reachable on the old broker, polling pcv1.
    let since = rfc3339_ms(now_ms());
    wait_until("fresh data from pcv1", WAIT, || {
        read_times(&r.gw, &r.sub, "pcv1")
            .iter()
            .any(|t| *t > since)
            .then_some(())
    })
    .await;
    let got = r.retained_state().await;
    assert_eq!(got["status"], "rolled_back", "{got}");
    assert_eq!(got["push"]["version"], "v1", "{got}");
}

/// The third start while a push is pending rolls it back by itself (a crash loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_while_a_push_is_pending_rolls_back_on_the_third_start() {
    let mut r = rig("gw-loop").await;
    // v2 polls pcv2 instead of pcv1 through a broker that is not reachable: pending.
    let v2 = pressure_config(
        &r.gw,
        r.dir.path(),
        &r.pki,
        dead_port(),
        r.sim_port,
        &["pcv2"],
    );
    r.push_pending("v2", &v2).await;
    kill9(&mut r.daemon);

    // Starts 1 and 2 find the push pending and die right after (the crash loop).
    for n in 1..=2 {
        let mut d = run_daemon(&r.config, &r.log);
        let marker = format!("config push v2 still awaits confirmation ({n} starts while pending)");
        wait_until(&format!("start {n} finds v2 pending"), WAIT, || {
            log_text(&r.log).contains(&marker).then_some(())
        })
        .await;
        kill9(&mut d);
        assert_eq!(std::fs::read_to_string(&r.config).unwrap(), v2);
    }

    // The third start rolls back before loading the config.
    let since = rfc3339_ms(now_ms());
    let _daemon = run_daemon(&r.config, &r.log);
    let (rb, _) = r.gw.state(&r.sub, "v2", "rolled_back", &r.log).await;
    assert!(
        rb["reason"]
            .as_str()
            .is_some_and(|m| m.contains("started 3 times") && m.contains("crash loop")),
        "{rb}"
    );
    assert_ne!(rb["version"], "v2", "{rb}");
    assert_eq!(std::fs::read_to_string(&r.config).unwrap(), r.v0);
    assert!(!r.dir.path().join("state/config/pending.json").exists());
    wait_until("the rolled_back event", WAIT, || {
        r.gw.seen(&r.sub).into_iter().find(|(t, v, _)| {
            t == "event"
                && v["event"] == "config_push"
                && v["status"] == "rolled_back"
                && v["version"] == "v2"
                && v["reason"]
                    .as_str()
                    .is_some_and(|m| m.contains("crash loop"))
        })
    })
    .await;
    let got = r.retained_state().await;
    assert_eq!(got["status"], "rolled_back", "{got}");
    assert_eq!(got["push"]["version"], "v2", "{got}");
    // The old device set is polled again.
    wait_until("pcv1 read after the third start", WAIT, || {
        read_times(&r.gw, &r.sub, "pcv1")
            .iter()
            .any(|t| *t > since)
            .then_some(())
    })
    .await;
}

/// libfaketime's preload library (Debian package `libfaketime`, installed by scripts/test).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib").ok().and_then(|dirs| {
        dirs.filter_map(Result::ok)
            .map(|d| d.path().join("faketime/libfaketime.so.1"))
            .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
            .find(|p| p.exists())
    });
    found.expect("libfaketime.so.1 is missing: run scripts/test (it installs faketime)")
}

/// Writes are refused while the gateway's clock is not trusted; reads still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_while_the_clock_is_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    let (_sim, sim_port) = simulate_tcp(&["1:pt-float"], &[]);
    let tap = ModbusTap::start(sim_port);
    let gw = RemoteGw::new("gw-clock", WAIT);
    let text = GwConfig {
        gw: gw.id,
        dir: dir.path(),
        pki: &pki,
        broker_port: broker.port,
        modbus_port: tap.port,
        public: &gw.public,
        bus_timeout: "500ms",
        devices: &valve_device("1s", false),
        writes: "\"pcv1.valve\" = {}\n",
    }
    .text();
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("daemon.log");
    let sub = Subscriber::start(
        &pki,
        broker.port,
        &format!("{}/#", gw.root),
        "gw-clock-sub",
        false,
    );
    sub.wait_subscribed(1, WAIT).await;
    // The wall clock reads 2025-06-01 and runs on (before MIN_TRUSTED_UNIX_MS); monotonic
    // time is left alone, as a clock restored from disk at boot would.
    let mut faked = Command::new(common::gasdtu());
    faked
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", "@2025-06-01 00:00:00")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let _daemon = run_daemon_with(&config, &log, &mut faked);
    let ops = Publisher::start(&pki, broker.port, "gw-clock-ops");
    let pong = gw.first_ping(&ops, &sub, "ping", &log).await;
    assert_eq!(pong["status"], "ok", "{pong}");
    assert!(
        pong["at"]
            .as_str()
            .is_some_and(|t| t.starts_with("2025-06")),
        "the daemon runs on the faked clock: {pong}"
    );

    let exp = now_ms() + 60_000;
    let w = cmd_body(
        "w-clock",
        gw.id,
        exp,
        "write",
        json!({"point": "pcv1.valve", "value": true}),
    );
    let res = gw.ask(&ops, &sub, "w-clock", gw.signed_cmd(&w)).await;
    assert_eq!(res["error"]["code"], "clock_untrusted", "{res}");
    assert_eq!(res["status"], "refused", "{res}");

    let rd = cmd_body(
        "r-clock",
        gw.id,
        exp,
        "read",
        json!({"points": ["pcv1.valve", "pcv1.pressure"]}),
    );
    let res = gw.ask(&ops, &sub, "r-clock", gw.signed_cmd(&rd)).await;
    assert_eq!(res["status"], "ok", "{res}");
    let values = &res["result"]["values"];
    assert_eq!(values[0]["point"], "pcv1.valve", "{res}");
    assert_eq!(values[0]["quality"], "good", "{res}");
    assert_eq!(values[1]["quality"], "good", "{res}");
    // Requests run in order: the write was refused before the read ran, and nothing wrote.
    assert_eq!(tap.writes(), 0, "no write reached the device");
}

/// A local edit + SIGHUP while a push is pending: the person on site takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_edit_while_a_push_is_pending_takes_over() {
    let r = rig("gw-edit").await;
    // v1 moves the uplink to a dead broker: it stays pending (10 min window).
    let v1 = pressure_config(
        &r.gw,
        r.dir.path(),
        &r.pki,
        dead_port(),
        r.sim_port,
        &["pcv1"],
    );
    r.push_pending("v1", &v1).await;
    // On site: the engineer writes a config for the old broker polling pcv2, and reloads.
    let local = pressure_config(
        &r.gw,
        r.dir.path(),
        &r.pki,
        r.broker.port,
        r.sim_port,
        &["pcv2"],
    );
    std::fs::write(&r.config, &local).unwrap();
    common::signal(r.daemon.child.id(), "HUP");
    let (state, _) = r.gw.state(&r.sub, "v1", "rolled_back", &r.log).await;
    assert_eq!(state["version"], "local", "{state}");
    assert_eq!(state["sha256"], sha_hex(&local), "{state}");
    assert_eq!(state["push"]["sha256"], sha_hex(&v1), "{state}");
    assert!(
        state["reason"]
            .as_str()
            .is_some_and(|m| m.contains("edited locally") && m.contains("SIGHUP")),
        "{state}"
    );
    // The edit runs (pcv2 polled, through the old broker), the file is the edit, and
    // nothing is pending any more.
    wait_until("pcv2 data after the reload", WAIT, || {
        (r.gw.data_from(&r.sub, "pcv2") > 0).then_some(())
    })
    .await;
    assert_eq!(std::fs::read_to_string(&r.config).unwrap(), local);
    assert!(!r.dir.path().join("state/config/pending.json").exists());
    assert_eq!(r.gw.push_events(&r.sub, "v1", "rolled_back"), 1);
}

/// Oversized requests are answered under what they claim, never executed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_answered_too_large() {
    let r = rig("gw-big").await;
    // A command with a 9 KiB argument (the bound is 8 KiB for the whole payload).
    let body = cmd_body(
        "big-1",
        r.gw.id,
        gasdtu::time::now_ms() + 60_000,
        "ack",
        json!({"alarm": "x", "note": "n".repeat(9 * 1024)}),
    );
    r.ops
        .publish(&r.gw.topic("cmd/req"), r.gw.signed_cmd(&body), false)
        .await;
    let res = r.gw.result(&r.sub, "big-1").await;
    assert_eq!(res["status"], "refused", "{res}");
    assert_eq!(res["error"]["code"], "too_large", "{res}");
    // A 300 KiB push (the bound is 256 KiB).
    let mut big = r.v0.clone();
    big.push_str(&format!("\n# {}\n", "z".repeat(300 * 1024)));
    let payload = r.gw.push("huge-1", &big, "10m");
    assert!(payload.len() > 256 * 1024);
    let request_sha = gasdtu::remote::sign::hex(&gasdtu::remote::sign::sha256(&payload));
    r.ops
        .publish(&r.gw.topic("config/set"), payload, false)
        .await;
    let (state, _) = r.gw.state(&r.sub, "huge-1", "rejected", &r.log).await;
    assert_eq!(state["errors"][0]["code"], "too_large", "{state}");
    assert_eq!(state["request_sha256"], request_sha, "{state}");
    // Nothing changed, and the gateway still answers.
    assert_eq!(std::fs::read_to_string(&r.config).unwrap(), r.v0);
    r.gw.first_ping(&r.ops, &r.sub, "ping-after", &r.log).await;
}
