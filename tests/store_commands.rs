//! The store side of remote commands (issue 10, part B) with real parts: real SQLite files, a
//! real child process killed with SIGKILL, the real `Forwarder` and a real mosquitto over TLS.
//!
//! - A command begun by a process that is killed -9 before it finishes is `Interrupted` for
//!   the next process (never `New`, so never executed twice); a finished one stays `Done`.
//! - Replies reach the broker on `<root>/cmd/res` (not retained) and `<root>/config/state`
//!   (retained: a subscriber that comes later still gets it), with `gw` and `seq`.
//! - `resend_history` makes delivered readings of one device in a range pending again; they
//!   are sealed as `hist: true` with new sequence numbers; other devices, other times and
//!   readings beyond `max_readings` are left alone; rows holding `publish = false` points
//!   (history only) are never resent.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, Broker, BrokerTls, Pki, Proc, Subscriber};
use gasdtu::config::{Encoding, StoreConfig, UplinkConfig};
use gasdtu::model::{Quality, Sample, SampleBatch, Value};
use gasdtu::outbox::{EntryBody, EntryKind, Outbox};
use gasdtu::store::{Begin, ClockStamp, ReplyTopic, Store, MIN_TRUSTED_UNIX_MS};
use gasdtu::time::from_unix_ms;
use gasdtu::uplink::{encode_messages, Forwarder, LinkStatus};
use serde_json::{json, Value as Json};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

const GW: &str = "gw-cmd";
const ROOT: &str = "gasdtu/gw-cmd";
/// Where the child process finds its store (set only for the child).
const CHILD_DIR: &str = "GASDTU_TEST_COMMAND_CHILD_DIR";
const T0: i64 = MIN_TRUSTED_UNIX_MS + 10 * 86_400_000;

/// Run as a child process by `a_command_interrupted_by_kill_9_is_never_executed_again`: it
/// finishes one command, begins another, says so on stdout and waits to be killed.
#[test]
#[ignore = "helper: the kill -9 test runs it in a child process"]
fn child_begins_a_command_and_waits_to_be_killed() {
    let dir = std::env::var_os(CHILD_DIR).expect("run by the kill -9 test only");
    let (store, _) = Store::open(std::path::Path::new(&dir), &StoreConfig::default()).unwrap();
    assert_eq!(
        store.command_begin("k-done", "ping", T0 + 1, T0).unwrap(),
        Begin::New
    );
    store
        .command_finish(
            "k-done",
            &json!({"id": "k-done", "status": "ok"}),
            &json!({}),
        )
        .unwrap();
    assert_eq!(
        store.command_begin("k-mid", "write", T0 + 1, T0).unwrap(),
        Begin::New
    );
    println!("CHILD-BEGUN");
    // The parent kills us long before this ends; bounded so an orphan cannot linger.
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_command_interrupted_by_kill_9_is_never_executed_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Proc::spawn(
        "test child",
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_begins_a_command_and_waits_to_be_killed",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    child.wait_stdout_line("CHILD-BEGUN", Duration::from_secs(30));
    // SIGKILL between begin and finish: no destructor, no clean close.
    child.child.kill().unwrap();
    let status = child.child.wait().unwrap();
    assert!(!status.success(), "{status:?}");

    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    for _ in 0..2 {
        assert_eq!(
            store.command_begin("k-mid", "write", T0 + 1, T0).unwrap(),
            Begin::Interrupted
        );
    }
    assert_eq!(
        store.command_begin("k-done", "ping", T0 + 1, T0).unwrap(),
        Begin::Done(json!({"id": "k-done", "status": "ok"}))
    );
    assert_eq!(
        store.command_begin("k-new", "ping", T0 + 1, T0).unwrap(),
        Begin::New
    );
    // A request answered on another topic (a config push) is settled, also when an earlier
    // process began it: done, no reply queued, its redelivery recognised.
    let replies = |s: &Store| s.pending(1000, 0).unwrap().len();
    let before = replies(&store);
    assert!(!store.command_done("k-mid").unwrap());
    store
        .command_settle("k-mid", &json!({"status": "installed"}))
        .unwrap();
    assert!(store.command_done("k-mid").unwrap());
    assert_eq!(replies(&store), before, "settling sends nothing");
    assert_eq!(
        store.command_begin("k-mid", "write", T0 + 1, T0).unwrap(),
        Begin::Done(json!({"status": "installed"}))
    );
    assert!(
        store.command_settle("k-mid", &json!({})).is_err(),
        "only once"
    );
    assert!(store.command_settle("never", &json!({})).is_err());
    assert!(!store.command_done("never").unwrap());
}

fn uplink(pki: &Pki, port: u16) -> UplinkConfig {
    common::uplink_config(pki, port, GW)
}

/// (topic below the root, JSON, retained) of the replies a subscriber saw.
fn replies(sub: &Subscriber) -> Vec<(String, Json, bool)> {
    sub.snapshot()
        .into_iter()
        .filter_map(|m| {
            let suffix = m.topic.strip_prefix(&format!("{ROOT}/"))?.to_string();
            (suffix == "cmd/res" || suffix == "config/state").then(|| {
                let doc = serde_json::from_slice(&m.payload)
                    .unwrap_or_else(|e| panic!("reply on {} is not JSON: {e}", m.topic));
                (suffix, doc, m.retain)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_state_is_published_retained_and_cmd_res_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let broker = Broker::new(
        dir.path(),
        &pki,
        &BrokerTls {
            cert: "server",
            require_certificate: false,
            tls_version: None,
        },
        false,
    );
    let live = Subscriber::start(&pki, broker.port, &format!("{ROOT}/#"), "cmd-live", false);
    live.wait_subscribed(1, Duration::from_secs(10)).await;

    let (store, _) = Store::open(&dir.path().join("state"), &StoreConfig::default()).unwrap();
    let store = Arc::new(store);
    let state = json!({"version": "v1", "status": "applied"});
    store
        .queue_reply(ReplyTopic::ConfigState, &state, None)
        .unwrap();
    assert_eq!(
        store.command_begin("c-1", "ping", T0, T0).unwrap(),
        Begin::New
    );
    let res = json!({"id": "c-1", "op": "ping", "status": "ok"});
    store
        .command_finish("c-1", &res, &json!({"event": "command", "id": "c-1"}))
        .unwrap();

    let wake = Arc::new(Notify::new());
    let (tx, _rx) = watch::channel(LinkStatus::default());
    let shutdown = CancellationToken::new();
    let f = Forwarder::new(
        uplink(&pki, broker.port),
        GW,
        store.clone(),
        wake.clone(),
        tx,
    );
    let task = tokio::spawn(f.run(shutdown.clone()));

    // Both arrive at the live subscriber, with gw and seq, config/state first (older).
    let got = wait_until("both replies", Duration::from_secs(20), || {
        let r = replies(&live);
        (r.len() == 2).then_some(r)
    })
    .await;
    assert_eq!(got[0].0, "config/state");
    assert_eq!(got[1].0, "cmd/res");
    for (_, doc, _) in &got {
        assert_eq!(doc["gw"], GW);
        assert!(doc["seq"].as_u64().is_some(), "{doc}");
    }
    assert_eq!(got[0].1["version"], "v1");
    assert_eq!(got[1].1["id"], "c-1");
    wait_until("replies acknowledged", Duration::from_secs(20), || {
        let s = store.stats().ok()?;
        (s.sealed_messages == 0 && s.pending_entries == 0).then_some(())
    })
    .await;

    // A subscriber that comes later gets config/state from the broker's retained store, and
    // no cmd/res: a marker reply queued after it subscribed is the first cmd/res it sees.
    let late = Subscriber::start(&pki, broker.port, &format!("{ROOT}/#"), "cmd-late", false);
    late.wait_subscribed(1, Duration::from_secs(10)).await;
    store
        .queue_reply(ReplyTopic::CmdRes, &json!({"id": "marker"}), None)
        .unwrap();
    wake.notify_one();
    let seen = wait_until("the marker reply", Duration::from_secs(20), || {
        let r = replies(&late);
        r.iter()
            .any(|(t, d, _)| t == "cmd/res" && d["id"] == "marker")
            .then_some(r)
    })
    .await;
    let before_marker: Vec<_> = seen
        .iter()
        .take_while(|(_, d, _)| d["id"] != "marker")
        .collect();
    assert_eq!(before_marker.len(), 1, "{seen:?}");
    let (topic, doc, retained) = before_marker[0];
    assert_eq!((topic.as_str(), *retained), ("config/state", true));
    assert_eq!(doc["version"], "v1");
    assert!(
        seen.iter().all(|(t, _, r)| t != "cmd/res" || !r),
        "cmd/res must never be retained: {seen:?}"
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

fn batch(device: &str, read_ms: i64, points: i64) -> SampleBatch {
    SampleBatch {
        device: device.into(),
        bus: "bus1".into(),
        slot: from_unix_ms(read_ms),
        samples: (0..points)
            .map(|i| Sample {
                point: format!("p{i}").into(),
                value: Some(Value::Int(read_ms / 1000 + i)),
                unit: None,
                quality: Quality::Good,
                read_at: from_unix_ms(read_ms),
            })
            .collect(),
        online: true,
        failed_cycles: 0,
    }
}

/// Seal everything pending as the forwarder would (JSON, one message per packed group) and
/// acknowledge it; returns (seq, payload) of each message.
fn deliver(store: &Store, live_since_ms: i64) -> Vec<(u64, Json)> {
    let mut out = Vec::new();
    loop {
        let entries = store.pending(1000, live_since_ms).unwrap();
        if entries.is_empty() {
            return out;
        }
        for p in encode_messages(&entries, GW, 64 * 1024, Encoding::Json) {
            let m = store
                .seal("t", &p.entries, p.readings, &mut |seq| {
                    p.build(GW, seq).map_err(|e| e.to_string())
                })
                .unwrap();
            store.ack(m.seq).unwrap();
            out.push((m.seq, serde_json::from_slice(&m.payload).unwrap()));
        }
    }
}

/// (device, read time ms) of every reading in data messages.
fn reads(msgs: &[(u64, Json)]) -> Vec<(String, i64, bool)> {
    let mut v = Vec::new();
    for (_, m) in msgs {
        let Some(data) = m["data"].as_array() else {
            continue;
        };
        for d in data {
            for r in d["reads"].as_array().unwrap() {
                let t = humantime::parse_rfc3339(r["t"].as_str().unwrap()).unwrap();
                let ms = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
                for _ in r["v"].as_object().unwrap() {
                    v.push((
                        d["dev"].as_str().unwrap().to_string(),
                        ms,
                        m["hist"].as_bool().unwrap(),
                    ));
                }
            }
        }
    }
    v
}

#[test]
fn resend_history_sends_one_device_range_again_as_history_with_new_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let stamp = ClockStamp::now();
    // Two devices, a reading batch (3 points) every minute for 10 minutes.
    let minute = 60_000;
    let batches: Vec<SampleBatch> = (0..10)
        .flat_map(|i| {
            [
                batch("pt1", T0 + i * minute, 3),
                batch("pt2", T0 + i * minute, 3),
            ]
        })
        .collect();
    store.commit(&batches, &[], &stamp).unwrap();
    let first = deliver(&store, 0);
    let first_max_seq = first.iter().map(|m| m.0).max().unwrap();
    assert_eq!(reads(&first).len(), 60);
    let history_before = store.stats().unwrap().history_readings;

    // pt1, minutes 2..=5: 4 batches, 12 readings.
    let r = store
        .resend_history("pt1", T0 + 2 * minute, T0 + 5 * minute, 1000, &[])
        .unwrap();
    assert_eq!((r.entries, r.readings, r.more), (4, 12, false));
    assert_eq!(
        (r.first_ms, r.last_ms),
        (Some(T0 + 2 * minute), Some(T0 + 5 * minute))
    );
    // Pending as backlog even for a session that began before the data was first committed.
    let pending = store.pending(100, 0).unwrap();
    assert_eq!(pending.len(), 4);
    assert!(pending
        .iter()
        .all(|e| e.kind == EntryKind::Data && e.historical));
    assert!(pending
        .iter()
        .all(|e| matches!(&e.body, EntryBody::Batch(b) if &*b.device == "pt1")));
    let again = deliver(&store, 0);
    assert!(
        again.iter().all(|m| m.0 > first_max_seq),
        "new sequence numbers"
    );
    let got = reads(&again);
    let want: Vec<(String, i64, bool)> = (2..=5)
        .flat_map(|i| std::iter::repeat_n(("pt1".to_string(), T0 + i * minute, true), 3))
        .collect();
    assert_eq!(got, want, "pt1 in range only, all hist: true");
    assert_eq!(store.stats().unwrap().history_readings, history_before);

    // Bounds: max_readings cuts at whole batches and says there is more.
    let r = store
        .resend_history("pt2", T0, T0 + 9 * minute, 7, &[])
        .unwrap();
    assert_eq!((r.entries, r.readings, r.more), (2, 6, true));
    assert_eq!(r.last_ms, Some(T0 + minute));
    assert_eq!(reads(&deliver(&store, 0)).len(), 6);
    // Unknown device, empty range, nothing delivered in range.
    let r = store
        .resend_history("nope", T0, T0 + minute, 100, &[])
        .unwrap();
    assert!(!r.device_known && r.entries == 0);
    let r = store
        .resend_history("pt1", T0 + 20 * minute, T0 + 30 * minute, 100, &[])
        .unwrap();
    assert!(r.device_known && r.entries == 0 && !r.more);
    // Rows still pending are not doubled.
    store
        .commit(&[batch("pt1", T0 + 11 * minute, 3)], &[], &stamp)
        .unwrap();
    let r = store
        .resend_history("pt1", T0 + 11 * minute, T0 + 11 * minute, 100, &[])
        .unwrap();
    assert_eq!(r.entries, 0);
    // Live counters equal a full scan.
    let live = store.stats().unwrap();
    let mut scan = store.stats_scan().unwrap();
    scan.bytes_on_disk = live.bytes_on_disk;
    assert_eq!(live, scan);
}

/// Point names of every reading in data messages.
fn read_points(msgs: &[(u64, Json)]) -> Vec<String> {
    let mut v = Vec::new();
    for (_, m) in msgs {
        for d in m["data"].as_array().into_iter().flatten() {
            for r in d["reads"].as_array().unwrap() {
                v.extend(r["v"].as_object().unwrap().keys().cloned());
            }
        }
    }
    v
}

/// `batch` with the point names given.
fn named(device: &str, read_ms: i64, points: &[&str]) -> SampleBatch {
    let mut b = batch(device, read_ms, points.len() as i64);
    for (s, p) in b.samples.iter_mut().zip(points) {
        s.point = (*p).into();
    }
    b
}

#[test]
fn resend_history_never_sends_rows_of_local_points() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let stamp = ClockStamp::now();
    let minute = 60_000;
    // "evc" is reported as polled: each poll is a published row (outbox) and a row of its
    // local point `dec` (history only). "slow" reports slower than it polls: its raw polls
    // (local point included) are history, its reports (published points only) are sent.
    let mut history = Vec::new();
    let mut outbox = Vec::new();
    for i in 0..6 {
        let t = T0 + i * minute;
        outbox.push(named("evc", t, &["p0", "p1"]));
        history.push(named("evc", t, &["dec"]));
        history.push(named("slow", t, &["p0", "dec"]));
        if i % 3 == 2 {
            outbox.push(named("slow", t, &["p0"]));
        }
    }
    store.commit_routed(&history, &outbox, &[], &stamp).unwrap();
    let first = deliver(&store, 0);
    assert!(!read_points(&first).contains(&"dec".to_string()));
    assert_eq!(read_points(&first).len(), 6 * 2 + 2);

    // Only the published rows come back, and only they are counted.
    let r = store
        .resend_history("evc", T0, T0 + 5 * minute, 12, &["dec"])
        .unwrap();
    assert_eq!((r.entries, r.readings, r.more), (6, 12, false));
    assert_eq!((r.first_ms, r.last_ms), (Some(T0), Some(T0 + 5 * minute)));
    let again = deliver(&store, 0);
    let points = read_points(&again);
    assert_eq!(points.len(), 12, "{points:?}");
    assert!(points.iter().all(|p| p == "p0" || p == "p1"), "{points:?}");

    // A raw poll holding a local point is history only too: only the reports go again.
    let r = store
        .resend_history("slow", T0, T0 + 5 * minute, 100, &["dec"])
        .unwrap();
    assert_eq!((r.entries, r.readings), (2, 2));
    let again = deliver(&store, 0);
    assert_eq!(read_points(&again), ["p0", "p0"]);
    assert!(reads(&again)
        .iter()
        .all(|(d, _, hist)| d == "slow" && *hist));

    // Nothing was lost from the history: export still has every row.
    let live = store.stats().unwrap();
    let mut scan = store.stats_scan().unwrap();
    scan.bytes_on_disk = live.bytes_on_disk;
    assert_eq!(live, scan);
    assert_eq!(live.history_readings, 6 * 3 + 6 * 2 + 2);
}
