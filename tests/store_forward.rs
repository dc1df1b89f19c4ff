//! Store-and-forward with real parts: the real `gasdtu run` binary polls a `gasdtu simulate`
//! child, commits to SQLite and forwards over TLS to a real mosquitto started by the test with
//! certificates generated at test time; a persistent subscriber collects what arrives.
//!
//! - Broker outage: mosquitto is stopped while polling goes on and started again on the same
//!   port: the daemon reconnects within seconds (retries every 0.5-1 s in the first 30 s of an
//!   outage, then backoff up to 5 s) and every reading
//!   committed meanwhile arrives, marked historical.
//! - Crash test: the daemon is killed with SIGKILL at random moments `KILLS` times (10, or
//!   GASDTU_CRASH_KILLS, e.g. 100 for the long run) and
//!   restarted; afterwards every reading that was committed (the store's own export) has been
//!   delivered at least once, duplicates carry the same sequence number with byte-identical
//!   payloads (so a consumer can drop them), and `PRAGMA integrity_check` is ok after every
//!   kill.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const KILLS: usize = 10;

/// `KILLS`, or GASDTU_CRASH_KILLS when set (the 100-kill run of issue 13).
fn kills() -> usize {
    std::env::var("GASDTU_CRASH_KILLS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(KILLS)
}

/// (device, point, read time in ms)
type Key = (String, String, i64);

struct Site {
    dir: tempfile::TempDir,
    pki: Pki,
    broker: Broker,
    _sim: Proc,
    config: PathBuf,
    state: PathBuf,
    socket: PathBuf,
}

impl Site {
    fn new() -> Site {
        Site::with_pt1("")
    }

    /// `pt1_extra`: more keys for the pt1 device (e.g. its `report` interval).
    fn with_pt1(pt1_extra: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let (pki, broker) = mutual_tls_broker(dir.path());
        let sim_port = free_port();
        let sim = Proc::spawn(
            "gasdtu simulate",
            Command::new(gasdtu())
                .args(["simulate", "--tcp", &format!("127.0.0.1:{sim_port}")])
                .args([
                    "--device",
                    "1:pt-float",
                    "--device",
                    "2:evc-dcba",
                    "--seed",
                    "3",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_port(sim_port, Duration::from_secs(10));
        let state = dir.path().join("state");
        let config = dir.path().join("gasdtu.toml");
        std::fs::write(
            &config,
            format!(
                r#"[gateway]
id = "sf-test"
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
{pt1_extra}

[devices.evc1]
bus = "lan"
unit = 2
poll = "1s"
profile = "evc-dcba"

{uplink}"#,
                state = state.display(),
                pt1_extra = pt1_extra,
                uplink = pki.uplink_toml(broker.port),
            ),
        )
        .unwrap();
        let socket = dir.path().join("gasdtu.sock");
        Site {
            dir,
            pki,
            broker,
            _sim: sim,
            config,
            state,
            socket,
        }
    }

    fn daemon(&self) -> Proc {
        Proc::spawn(
            "gasdtu run",
            Command::new(gasdtu())
                .args(["run", "--poll-now", "--log-level", "warn"])
                .arg("--config")
                .arg(&self.config)
                .arg("--socket")
                .arg(&self.socket)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        )
    }

    /// The daemon's status document, once it answers.
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

    fn pending_readings(&self) -> Option<u64> {
        self.status()?["buffer"]["pending_readings"].as_u64()
    }

    /// Every reading in the store (history and unsent), from the field engineer's export.
    fn exported(&self) -> BTreeSet<Key> {
        let out = Command::new(gasdtu())
            .args(["export", "--format", "jsonl", "--state-dir"])
            .arg(&self.state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "export: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["clock"], "trusted", "{l}");
                (
                    v["device"].as_str().unwrap().to_string(),
                    v["point"].as_str().unwrap().to_string(),
                    rfc3339_ms(v["read_at"].as_str().unwrap()),
                )
            })
            // The evc-dcba profile's integer/fraction halves are `publish = false`: stored
            // (so exported), never sent.
            .filter(|(_, p, _)| !(p.ends_with("_int") || p.ends_with("_frac")))
            .collect()
    }

    fn integrity(&self) -> String {
        let conn = rusqlite::Connection::open_with_flags(
            self.state.join("gasdtu.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .unwrap()
    }
}

/// Readings carried by the data messages the subscriber saw, the sequence numbers of all
/// messages with their payloads, and how many data messages were historical.
struct Received {
    readings: BTreeSet<Key>,
    by_seq: BTreeMap<u64, Vec<Vec<u8>>>,
    historical: usize,
}

fn received(sub: &Subscriber) -> Received {
    let mut r = Received {
        readings: BTreeSet::new(),
        by_seq: BTreeMap::new(),
        historical: 0,
    };
    for m in sub.snapshot() {
        // `status` and the retained `health` carry no sequence number.
        if m.topic.ends_with("/status") || m.topic.ends_with("/health") {
            continue;
        }
        let v = gasdtu::uplink::decode(&m.payload).expect("every payload decodes");
        let seq = v["seq"].as_u64().expect("every message has a seq");
        assert_eq!(v["gw"], "sf-test");
        r.by_seq.entry(seq).or_default().push(m.payload.clone());
        if !m.topic.ends_with("/data") {
            continue;
        }
        if v["hist"] == true {
            r.historical += 1;
        }
        for key in data_readings(&v) {
            r.readings.insert(key);
        }
    }
    r
}

fn assert_all_delivered(committed: &BTreeSet<Key>, got: &Received) {
    let missing: Vec<&Key> = committed.difference(&got.readings).collect();
    assert!(
        missing.is_empty(),
        "{} of {} committed readings never arrived, e.g. {:?}",
        missing.len(),
        committed.len(),
        &missing[..missing.len().min(5)]
    );
    // Duplicates are resends of the same sealed message: same seq, same bytes.
    for (seq, payloads) in &got.by_seq {
        assert!(
            payloads.windows(2).all(|w| w[0] == w[1]),
            "seq {seq} was used for different payloads"
        );
    }
}

fn wait_drained(site: &Site, deadline: Duration) {
    wait_for("the outbox to drain", deadline, || {
        (site.pending_readings()? == 0).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_loses_nothing_and_reconnects_within_seconds() {
    let mut site = Site::new();
    let sub = Subscriber::start(
        &site.pki,
        site.broker.port,
        "gasdtu/sf-test/#",
        "sf-sub-1",
        true,
    );
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    let mut daemon = site.daemon();
    let data_msgs = || {
        sub.snapshot()
            .iter()
            .filter(|m| m.topic.ends_with("/data"))
            .count()
    };
    wait_until("live data at the broker", Duration::from_secs(20), || {
        (data_msgs() >= 2).then_some(())
    })
    .await;
    let online = sub
        .snapshot()
        .iter()
        .any(|m| m.topic == "gasdtu/sf-test/status" && m.payload == b"online");
    assert!(online, "retained `online` after connect");

    // Outage: polling goes on, readings pile up in the store.
    site.broker.stop();
    wait_until(
        "a backlog of at least 60 readings",
        Duration::from_secs(30),
        || (site.pending_readings()? >= 60).then_some(()),
    )
    .await;
    let before = data_msgs();
    site.broker.start();
    let back = Instant::now();
    sub.wait_subscribed(2, Duration::from_secs(15)).await;
    wait_until(
        "data after the broker's return",
        Duration::from_secs(15),
        || (data_msgs() > before).then_some(()),
    )
    .await;
    // Printed, not asserted: the retry cadence (every 0.5-1 s early in an outage) is asserted
    // as behaviour in uplink_tls; here the 15 s deadline above only catches a link that never
    // comes back.
    let reconnect = back.elapsed();
    wait_drained(&site, Duration::from_secs(30));

    sigterm(&daemon.child);
    let status = wait_exit(&mut daemon.child, Duration::from_secs(15)).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
    let committed = site.exported();
    // A clean stop drains what it committed while connected; wait for the broker to pass
    // the last messages on.
    let got = wait_until(
        "every committed reading at the subscriber",
        Duration::from_secs(15),
        || {
            let got = received(&sub);
            committed.is_subset(&got.readings).then_some(got)
        },
    )
    .await;
    assert_all_delivered(&committed, &got);
    assert!(
        got.historical > 0,
        "the backlog drained after the outage is marked historical"
    );
    // (The backlog wait above is 60 published readings; the export adds the polls around it.)
    assert!(
        committed.len() >= 80,
        "enough readings to mean something: {}",
        committed.len()
    );
    assert_eq!(site.integrity(), "ok");
    eprintln!(
        "outage test: {} readings committed and delivered, reconnect {reconnect:?}, {} historical messages",
        committed.len(),
        got.historical
    );
    let _keep = &site.dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_committed_reading() {
    let site = Site::new();
    let sub = Subscriber::start(
        &site.pki,
        site.broker.port,
        "gasdtu/sf-test/#",
        "sf-sub-2",
        true,
    );
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    let mut rng = fastrand::Rng::with_seed(0x6a5d7);
    let kills = kills();
    for i in 0..kills {
        let mut daemon = site.daemon();
        // Let it poll, commit and publish for a random moment, then pull the plug.
        let alive = Duration::from_millis(rng.u64(700..3500));
        tokio::time::sleep(alive).await;
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        assert_eq!(site.integrity(), "ok", "after kill {i}");
    }
    // A last run drains everything committed before the kills.
    let mut daemon = site.daemon();
    wait_until(
        "the daemon's status socket",
        Duration::from_secs(15),
        || site.status(),
    )
    .await;
    wait_drained(&site, Duration::from_secs(60));
    sigterm(&daemon.child);
    wait_exit(&mut daemon.child, Duration::from_secs(15)).expect("exits on SIGTERM");
    let committed = site.exported();
    let got = wait_until(
        "every committed reading at the subscriber",
        Duration::from_secs(15),
        || {
            let got = received(&sub);
            committed.is_subset(&got.readings).then_some(got)
        },
    )
    .await;
    assert_all_delivered(&committed, &got);
    assert_eq!(site.integrity(), "ok");
    let dup = got.by_seq.values().map(|p| p.len() - 1).sum::<usize>();
    eprintln!(
        "crash test: {kills} kills, {} readings committed and delivered, {} messages, {dup} duplicates dropped by seq",
        committed.len(),
        got.by_seq.len()
    );
    assert!(
        committed.len() >= 50,
        "the runs committed readings: {}",
        committed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_fast_report_slow_sends_aggregates_and_keeps_raw_history() {
    // pt1 polls every second and reports every 4 s; evc1 reports every poll.
    let site = Site::with_pt1("report = \"4s\"");
    let sub = Subscriber::start(
        &site.pki,
        site.broker.port,
        "gasdtu/sf-test/#",
        "sf-sub-3",
        true,
    );
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    let mut daemon = site.daemon();
    // Wait for three pt1 reports.
    let pt1_reports = |sub: &Subscriber| -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for m in sub.snapshot().iter().filter(|m| m.topic.ends_with("/data")) {
            let v = gasdtu::uplink::decode(&m.payload).unwrap();
            for d in v["data"].as_array().unwrap() {
                if d["dev"] == "pt1" {
                    for r in d["reads"].as_array().unwrap() {
                        out.push(r.clone());
                    }
                }
            }
        }
        out
    };
    wait_until("three pt1 reports", Duration::from_secs(30), || {
        let reads = pt1_reports(&sub);
        let n = reads
            .iter()
            .filter(|r| r["v"].get("pressure.n").is_some())
            .count();
        (n >= 3).then_some(())
    })
    .await;
    sigterm(&daemon.child);
    wait_exit(&mut daemon.child, Duration::from_secs(15)).expect("exits on SIGTERM");

    let reads = pt1_reports(&sub);
    let aggregates: Vec<&serde_json::Value> = reads
        .iter()
        .filter(|r| r["v"].get("pressure.n").is_some())
        .collect();
    for a in &aggregates {
        let v = &a["v"];
        let (min, max, mean) = (
            v["pressure.min"].as_f64().unwrap(),
            v["pressure.max"].as_f64().unwrap(),
            v["pressure.mean"].as_f64().unwrap(),
        );
        assert!(min <= mean && mean <= max, "{a}");
        let n = v["pressure.n"].as_u64().unwrap();
        assert!((1..=4).contains(&n), "at most 4 polls in a 4 s window: {a}");
    }
    // pt1's raw readings are all in the store's history, yet far fewer pt1 readings went
    // upstream than were polled; evc1 (every poll) is unaffected.
    let exported = site.exported();
    let raw_pt1 = exported
        .iter()
        .filter(|(d, p, _)| d == "pt1" && p == "pressure")
        .count();
    let sent_pt1_values = reads
        .iter()
        .filter(|r| r["v"].get("pressure").is_some())
        .count();
    assert!(raw_pt1 >= 8, "raw pt1 pressure readings kept: {raw_pt1}");
    assert!(
        sent_pt1_values * 2 < raw_pt1,
        "{sent_pt1_values} pt1 pressure values sent for {raw_pt1} polled"
    );
    let got = received(&sub);
    let evc_committed: BTreeSet<Key> = exported
        .iter()
        .filter(|(d, _, _)| d == "evc1")
        .cloned()
        .collect();
    let evc_missing = evc_committed.difference(&got.readings).count();
    assert_eq!(evc_missing, 0, "every evc1 reading still goes upstream");
}
