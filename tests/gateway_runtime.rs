//! The gateway runtime (`gasdtu::gateway::Gateway`) in-process, against the project's Modbus TCP
//! simulator on loopback and a real SQLite store in a scratch directory: `apply` rebuilds the
//! interlocks (a changed action writes its NEW value, a new rule fires) and forgets removed
//! devices; a store that cannot commit (database locked by another process) never stops
//! polling, memory stays bounded (oldest dropped), the loss is reported as ONE `data_loss`
//! event once the store works again; shutdown with a failing store ends within its give-up time
//! and says how many batches it could not commit.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::wait_until;
use gasdtu::config::Config;
use gasdtu::gateway::consumer::CommitHook;
use gasdtu::gateway::{Applied, Gateway, Options};
use gasdtu::model::{SampleBatch, Value};
use gasdtu::outbox::{EntryBody, EntryKind, Outbox};
use gasdtu::sim::{Faults, SimDevice, Simulator};
use tokio_util::sync::CancellationToken;

/// The device of these tests: a pressure `p` and a writable valve coil.
const POINTS: &str = r#"points.p = { table = "holding", address = 0, type = "f32", unit = "kPa" }
points.valve = { table = "coil", address = 0, type = "bit", writable = true }"#;

fn config_text(port: u16, state: &Path, devices: &[&str], alarms: &str) -> String {
    let mut t = format!(
        r#"
[gateway]
id = "rt-test"
state_dir = "{}"
profile_dirs = []

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {port}
timeout = "500ms"
retries = 0
"#,
        state.display()
    );
    for (i, d) in devices.iter().enumerate() {
        t.push_str(&format!(
            "\n[devices.{d}]\nbus = \"lan\"\nunit = {}\npoll = \"1s\"\n{POINTS}\n",
            i + 1
        ));
    }
    t.push_str(alarms);
    t
}

fn load(text: &str) -> Config {
    match gasdtu::config::parse_str(text, "test.toml", Path::new("/")) {
        Ok(l) => l.config,
        Err(errs) => panic!("test config invalid: {errs:?}"),
    }
}

fn alarm(rule: &str, h: f64, valve: u8) -> String {
    format!(
        "\n[alarms.{rule}]\ndevice = \"d1\"\npoint = \"p\"\nkind = \"limit\"\nseverity = \"major\"\nh = {h}\naction = {{ point = \"valve\", value = {valve}, cooldown = \"1s\" }}\n"
    )
}

/// A simulator with `units` devices of the test's points, served over Modbus TCP.
async fn simulator(units: u8, stop: &CancellationToken) -> (Simulator, u16) {
    let points = load(&config_text(1, Path::new("/tmp"), &["x"], ""))
        .devices
        .remove(0)
        .points;
    let sim = Simulator::new(
        (1..=units)
            .map(|u| SimDevice::new(u, format!("d{u}"), points.clone(), vec![]))
            .collect(),
        Faults::new(vec![], Some(1)),
    );
    for u in 1..=units {
        sim.set(u, "p", Value::Float(50.0)).unwrap();
        sim.set(u, "valve", Value::Bool(false)).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (s, t) = (sim.clone(), stop.clone());
    tokio::spawn(async move { s.serve_tcp(listener, t).await });
    (sim, port)
}

/// Committed batches per device, counted by an observer.
fn counter() -> (Arc<AtomicU64>, CommitHook) {
    let n = Arc::new(AtomicU64::new(0));
    let c = n.clone();
    (
        n,
        Arc::new(move |_: &SampleBatch| {
            c.fetch_add(1, Ordering::Relaxed);
        }),
    )
}

fn options(observer: CommitHook) -> Options {
    Options {
        poll_now: true,
        observers: vec![observer],
        notifier: gasdtu::gateway::systemd::Notifier::disabled(),
        ..Options::default()
    }
}

/// Pending events in the outbox (no uplink configured: nothing leaves).
fn events(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.store()
        .pending(10_000, 0)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EntryKind::Event)
        .filter_map(|e| match e.body {
            EntryBody::Json(v) => Some(v),
            EntryBody::Batch(_) => None,
        })
        .collect()
}

fn valve(sim: &Simulator) -> Option<bool> {
    sim.with_device(1, |d| {
        d.values_at(std::time::SystemTime::now())
            .into_iter()
            .find(|(n, _)| n == "valve")
            .map(|(_, v)| v)
    })
    .ok()
    .flatten()
    .and_then(|v| match v {
        Value::Bool(b) => Some(b),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_rebuilds_interlocks_changed_action_writes_the_new_value_and_new_rules_fire() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (sim, port) = simulator(1, &stop).await;
    // Rule r1 would OPEN the valve (1); p = 50 stays below h = 100: nothing fires yet.
    let a = load(&config_text(
        port,
        dir.path(),
        &["d1"],
        &alarm("r1", 100.0, 1),
    ));
    let (n, obs) = counter();
    let mut gw = Gateway::start(a, options(obs)).await.unwrap();
    wait_until("a first committed batch", Duration::from_secs(10), || {
        (n.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await;

    // The same rule now CLOSES the valve (0); the valve is open in the field.
    sim.set(1, "valve", Value::Bool(true)).unwrap();
    sim.with_device(1, |d| d.unset("valve")).unwrap();
    let b = load(&config_text(
        port,
        dir.path(),
        &["d1"],
        &alarm("r1", 100.0, 0),
    ));
    assert!(matches!(gw.apply(b, "file").await, Applied::Changed { .. }));
    sim.set(1, "p", Value::Float(150.0)).unwrap();
    let ev = wait_until("the interlock event of r1", Duration::from_secs(15), || {
        events(&gw)
            .into_iter()
            .find(|e| e["event"] == "interlock" && e["alarm"] == "r1")
    })
    .await;
    assert_eq!(ev["value"], 0.0, "the changed action's value: {ev}");
    assert_eq!(ev["result"], "ok", "{ev}");
    assert_eq!(
        valve(&sim),
        Some(false),
        "the valve was closed by the new action"
    );

    // A rule that did not exist at start fires on its first raise.
    sim.set(1, "p", Value::Float(50.0)).unwrap();
    let c = load(&config_text(
        port,
        dir.path(),
        &["d1"],
        &(alarm("r1", 100.0, 0) + &alarm("r2", 120.0, 1)),
    ));
    gw.apply(c, "file").await;
    sim.set(1, "p", Value::Float(150.0)).unwrap();
    let ev = wait_until("the interlock event of r2", Duration::from_secs(15), || {
        events(&gw)
            .into_iter()
            .find(|e| e["event"] == "interlock" && e["alarm"] == "r2")
    })
    .await;
    assert_eq!(ev["value"], 1.0, "{ev}");
    assert_eq!(ev["result"], "ok", "{ev}");
    let applied = events(&gw)
        .iter()
        .filter(|e| e["event"] == "config_applied" && e["source"] == "file")
        .count();
    assert_eq!(applied, 2, "each apply is reported as an event");
    gw.shutdown().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_forgets_removed_and_disabled_devices_and_polls_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (_sim, port) = simulator(3, &stop).await;
    let a = load(&config_text(port, dir.path(), &["d1", "d2"], ""));
    let (n, obs) = counter();
    let mut gw = Gateway::start(a, options(obs)).await.unwrap();
    wait_until("d1 and d2 on the board", Duration::from_secs(10), || {
        let s = gw.board().snapshot();
        (s.contains_key("d1") && s.contains_key("d2")).then_some(())
    })
    .await;
    // d2 removed, d3 added (unit 3 is the third device of the text: rename keeps units).
    let mut text = config_text(port, dir.path(), &["d1", "d2", "d3"], "");
    text = text.replace(
        "[devices.d2]\nbus = \"lan\"\nunit = 2\npoll = \"1s\"\n",
        "[devices.d2]\nbus = \"lan\"\nunit = 2\npoll = \"1s\"\nenabled = false\n",
    );
    let before = n.load(Ordering::Relaxed);
    gw.apply(load(&text), "file").await;
    assert_eq!(gw.polling().0, 2, "d1 and d3 polled");
    wait_until("d3 on the board", Duration::from_secs(10), || {
        gw.board().snapshot().contains_key("d3").then_some(())
    })
    .await;
    let board = gw.board().snapshot();
    assert!(
        !board.contains_key("d2"),
        "a disabled device leaves the board: {board:?}"
    );
    assert!(n.load(Ordering::Relaxed) > before);
    // And a removed one too.
    gw.apply(load(&config_text(port, dir.path(), &["d1"], "")), "file")
        .await;
    let board = gw.board().snapshot();
    assert_eq!(board.keys().collect::<Vec<_>>(), vec!["d1"], "{board:?}");
    gw.shutdown().await;
    stop.cancel();
}

/// Hold SQLite's write lock on the gateway's database from another connection (as another
/// process would) until dropped.
fn lock_database(state: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(state.join("gasdtu.db")).unwrap();
    c.execute_batch("BEGIN EXCLUSIVE").unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_commit_never_stops_polling_and_reports_the_loss_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (_sim, port) = simulator(2, &stop).await;
    let cfg = load(&config_text(port, dir.path(), &["d1", "d2"], ""));
    let (n, obs) = counter();
    let mut opts = options(obs);
    // 2 points a batch: at most 5 batches held in memory.
    opts.memory_readings = 10;
    let gw = Gateway::start(cfg, opts).await.unwrap();
    wait_until("a first committed batch", Duration::from_secs(10), || {
        (n.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await;
    let lock = lock_database(dir.path());
    let committed_before = n.load(Ordering::Relaxed);
    // Polling goes on: the simulator keeps being asked (its request counter rises) while
    // nothing can be committed. 2 devices a second: 20 batches is 4x the memory bound.
    let served = |sim: &Simulator| sim.with_device(1, |d| d.requests()).unwrap_or(0);
    let r0 = served(&_sim);
    // Two requests a poll (the register and the coil): 10 polls of d1, 20 batches in all.
    wait_until(
        "10 more polls of d1 while the store is locked",
        Duration::from_secs(30),
        || (served(&_sim) >= r0 + 20).then_some(()),
    )
    .await;
    assert_eq!(
        n.load(Ordering::Relaxed),
        committed_before,
        "nothing can be committed while the database is locked"
    );
    drop(lock);
    let loss = wait_until("the data_loss event", Duration::from_secs(30), || {
        events(&gw)
            .into_iter()
            .find(|e| e["event"] == "data_loss" && e["reason"] == "store_unavailable")
    })
    .await;
    let lost = loss["batches"].as_u64().unwrap();
    assert!(
        lost >= 5,
        "more than the bound was polled, the excess dropped: {loss}"
    );
    assert_eq!(loss["readings"].as_u64().unwrap(), lost * 2, "{loss}");
    assert!(loss["error"].as_str().unwrap().contains("lock"), "{loss}");
    // The newest batches were kept and committed after the recovery.
    wait_until("commits again", Duration::from_secs(10), || {
        (n.load(Ordering::Relaxed) > committed_before).then_some(())
    })
    .await;
    let report = gw.shutdown().await;
    assert!(report.consumer.dropped_batches >= lost);
    assert_eq!(report.consumer.loss_events, 1, "{:?}", report.consumer);
    assert_eq!(report.consumer.uncommitted_batches, 0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_failing_store_gives_up_in_time_and_counts_what_it_could_not_commit() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (_sim, port) = simulator(1, &stop).await;
    let cfg = load(&config_text(port, dir.path(), &["d1"], ""));
    let (n, obs) = counter();
    let gw = Gateway::start(cfg, options(obs)).await.unwrap();
    wait_until("a first committed batch", Duration::from_secs(10), || {
        (n.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await;
    let _lock = lock_database(dir.path());
    let served = |sim: &Simulator| sim.with_device(1, |d| d.requests()).unwrap_or(0);
    let r0 = served(&_sim);
    wait_until("2 polls held in memory", Duration::from_secs(20), || {
        (served(&_sim) >= r0 + 4).then_some(())
    })
    .await;
    let t = std::time::Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(25), gw.shutdown())
        .await
        .expect("shutdown must end within systemd's stop timeout even with a locked store");
    assert!(
        report.consumer.uncommitted_batches >= 1,
        "what could not be committed is counted: {:?}",
        report.consumer
    );
    assert!(t.elapsed() >= gasdtu::gateway::COMMIT_GIVE_UP / 2);
    stop.cancel();
}
