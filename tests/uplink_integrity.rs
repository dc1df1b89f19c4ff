//! Integrity of the uplink under hostile input (issue 9, items 1 and 3), end to end with the
//! real parts: a real SQLite store (`Store`), the real `Forwarder`, a real mosquitto over TLS
//! and a rumqttc subscriber.
//!
//! - An alarm whose message is 9.6 kB, an event that cannot be cut to any acceptable size and
//!   a sealed message larger than the client accepts are followed by alarms and data that ARE
//!   received: the first is cut with a marker, the others are set aside as dead letters with
//!   an event naming their seq, and the link never reconnects.
//! - The retained `<root>/health` message carries `last_seq` equal to the highest seq of the
//!   data received, so a consumer can see a loss at the tail; with the real `gasdtu run`
//!   binary too (health at connect and at a clean shutdown, buffer depth included, and
//!   `gasdtu status` shows `last_seq` and `dead_letters`).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{
    gasdtu, int_readings, mutual_tls_broker, sigterm, simulate_tcp, wait_exit, wait_until, Broker,
    BrokerTls, Pki, Proc, Subscriber,
};
use gasdtu::config::{StoreConfig, UplinkConfig};
use gasdtu::outbox::{EntryKind, Outbox};
use gasdtu::store::{ClockStamp, Store};
use gasdtu::uplink::{decode, Forwarder, LinkState, LinkStatus};
use serde_json::{json, Value as Json};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

const GW: &str = "gw-int";
const ROOT: &str = "gasdtu/gw-int";

fn uplink(pki: &Pki, port: u16) -> UplinkConfig {
    common::uplink_config(pki, port, GW)
}

fn broker(dir: &std::path::Path) -> (Pki, Broker) {
    let pki = Pki::generate(dir);
    let b = Broker::new(
        dir,
        &pki,
        &BrokerTls {
            cert: "server",
            require_certificate: false,
            tls_version: None,
        },
        false,
    );
    (pki, b)
}

fn alarm(n: u64, message: &str) -> (EntryKind, Json) {
    (
        EntryKind::Alarm,
        json!({"alarm": format!("a{n}"), "dev": "pt1", "point": "pressure", "kind": "limit",
               "state": "raised", "value": 900.0, "message": message}),
    )
}

struct Running {
    status: watch::Receiver<LinkStatus>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(cfg: UplinkConfig, store: Arc<Store>, health_gap: Duration, size_check: bool) -> Running {
    let wake = Arc::new(Notify::new());
    let (tx, rx) = watch::channel(LinkStatus::default());
    let shutdown = CancellationToken::new();
    let mut f = Forwarder::new(cfg, GW, store, wake, tx)
        .with_health_timing(Duration::from_secs(300), health_gap);
    if !size_check {
        f = f.without_size_check();
    }
    let task = tokio::spawn(f.run(shutdown.clone()));
    Running {
        status: rx,
        shutdown,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// (topic suffix, decoded document, retained) of everything but `status`.
fn received(sub: &Subscriber) -> Vec<(String, Json, bool)> {
    received_under(sub, ROOT)
}

fn received_under(sub: &Subscriber, root: &str) -> Vec<(String, Json, bool)> {
    sub.snapshot()
        .into_iter()
        .filter(|m| !m.topic.ends_with("/status"))
        .map(|m| {
            let suffix = m.topic.trim_start_matches(root).to_string();
            let doc = decode(&m.payload)
                .unwrap_or_else(|e| panic!("undecodable message on {}: {e}", m.topic));
            (suffix, doc, m.retain)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_refused_messages_never_block_the_queue() {
    let st = hostile_queue(true).await;
    assert_eq!(st.reconnects, 0, "{:?}", st.last_error);
}

/// The last line of defence: with the forwarder's own size check off, the refused publishes
/// reach rumqttc, whose event loop fails with "outgoing packet too large"; the publish it was
/// writing is set aside and the next session goes on. Each refusal costs one session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_the_event_loop_refuses_is_set_aside_too() {
    let st = hostile_queue(false).await;
    println!("event loop path: {} reconnects", st.reconnects);
    assert_eq!(st.reconnects, 2, "{:?}", st.last_error);
    assert!(
        st.last_error
            .as_deref()
            .unwrap_or("")
            .contains("greater than"),
        "{:?}",
        st.last_error
    );
}

/// A queue with a sealed message too large for the client, an alarm with a 9.6 kB message
/// and an event no cutting can shorten, followed by alarms and data: everything but the two
/// dead letters arrives. Returns the final link status.
async fn hostile_queue(size_check: bool) -> LinkStatus {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = broker(dir.path());
    let sub = Subscriber::start(&pki, broker.port, &format!("{ROOT}/#"), "int-sub", false);
    sub.wait_subscribed(1, Duration::from_secs(10)).await;

    let state = dir.path().join("state");
    let (store, _) = Store::open(&state, &StoreConfig::default()).unwrap();
    let store = Arc::new(store);
    let stamp = ClockStamp::now();

    // 1. A message sealed before (an older config with a larger limit): 9.6 kB, more than
    //    the client's 5120-byte packet limit. Without dead letters it is resent forever.
    let old = store
        .commit(&[], &[alarm(0, "sealed too large")], &stamp)
        .unwrap();
    let big = store
        .seal(&format!("{ROOT}/alarm"), &old.entry_ids, 0, &mut |seq| {
            Ok(
                serde_json::to_vec(&json!({"gw": GW, "seq": seq, "message": "m".repeat(9600)}))
                    .unwrap(),
            )
        })
        .unwrap();
    // 2. An alarm whose template produced 9.6 kB (cut to fit, with a marker), 3. an event no
    //    cutting can make acceptable (a 6 kB key), then alarms and data that must arrive.
    let mut huge_key = serde_json::Map::new();
    huge_key.insert("k".repeat(6000), json!("v"));
    huge_key.insert("event".into(), json!("hostile"));
    let mut extra = vec![
        alarm(1, &"pressure high ".repeat(700)),
        (EntryKind::Event, Json::Object(huge_key)),
    ];
    extra.extend((2..=4).map(|n| alarm(n, "pt1 pressure 900 kPa above 700")));
    store
        .commit(
            &[int_readings("d1", 0, 10), int_readings("d2", 10, 10)],
            &extra,
            &stamp,
        )
        .unwrap();

    let run = start(
        uplink(&pki, broker.port),
        store.clone(),
        Duration::from_secs(60),
        size_check,
    );

    let msgs = wait_until(
        "alarms, data and two dead_letter events",
        Duration::from_secs(20),
        || {
            let m = received(&sub);
            let alarms: BTreeSet<String> = m
                .iter()
                .filter(|(t, _, _)| t == "/alarm")
                .filter_map(|(_, d, _)| d["alarm"].as_str().map(str::to_string))
                .collect();
            let values: usize = m
                .iter()
                .filter(|(t, _, _)| t == "/data")
                .flat_map(|(_, d, _)| d["data"].as_array().cloned().unwrap_or_default())
                .flat_map(|dev| dev["reads"].as_array().cloned().unwrap_or_default())
                .map(|r| r["v"].as_object().map_or(0, |v| v.len()))
                .sum();
            let dead = m
                .iter()
                .filter(|(t, d, _)| t == "/event" && d["event"] == "dead_letter")
                .count();
            (alarms.len() == 4 && values == 20 && dead == 2).then_some(m)
        },
    )
    .await;

    // The 9.6 kB alarm arrived cut, marked, within the payload limit.
    let cut = sub
        .snapshot()
        .into_iter()
        .find(|m| m.topic.ends_with("/alarm") && decode(&m.payload).unwrap()["alarm"] == "a1")
        .expect("the oversized alarm arrives");
    assert!(cut.payload.len() <= 1024, "{} bytes", cut.payload.len());
    let doc = decode(&cut.payload).unwrap();
    assert_eq!(doc["truncated"], true);
    assert!(doc["message"].as_str().unwrap().ends_with('…'));

    // Two dead letters, each named by an event: the sealed one keeps its seq; the event
    // that could not be built got one. Neither seq was ever delivered as a message.
    let dead: Vec<&Json> = msgs
        .iter()
        .filter(|(t, d, _)| t == "/event" && d["event"] == "dead_letter")
        .map(|(_, d, _)| d)
        .collect();
    let dead_seqs: BTreeSet<u64> = dead
        .iter()
        .map(|d| d["dead_seq"].as_u64().unwrap())
        .collect();
    assert!(dead_seqs.contains(&big.seq), "{dead:?}");
    assert_eq!(dead_seqs.len(), 2);
    for d in &dead {
        assert!(d["reason"].as_str().unwrap().contains("5120"), "{d}");
        assert!(d["bytes"].as_u64().unwrap() > 5000, "{d}");
    }
    let delivered: BTreeSet<u64> = msgs
        .iter()
        .filter(|(t, _, _)| t != "/health")
        .map(|(_, d, _)| d["seq"].as_u64().unwrap())
        .collect();
    assert!(delivered.is_disjoint(&dead_seqs));
    assert!(!msgs.iter().any(|(_, d, _)| d["event"] == "hostile"));

    // The queue drained, the link never went down, status counts the dead letters.
    wait_until("outbox drained", Duration::from_secs(10), || {
        let s = store.stats().unwrap();
        (s.pending_entries == 0 && s.sealed_messages == 0).then_some(())
    })
    .await;
    assert_eq!(store.dead_letter_count().unwrap(), 2);
    let st = wait_until("connected", Duration::from_secs(10), || {
        let st = run.status.borrow().clone();
        (st.state == LinkState::Connected).then_some(st)
    })
    .await;
    assert_eq!(st.dead_letters, 2);
    assert!(st.last_dead_letter.is_some());
    run.stop().await;
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_health_carries_the_last_seq_of_the_data_received() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = broker(dir.path());
    let sub = Subscriber::start(&pki, broker.port, &format!("{ROOT}/#"), "health-sub", false);
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    let (store, _) = Store::open(&dir.path().join("state"), &StoreConfig::default()).unwrap();
    let store = Arc::new(store);
    let run = start(
        uplink(&pki, broker.port),
        store.clone(),
        Duration::from_millis(300),
        true,
    );
    // Health right after connect, before any data.
    wait_until("health after connect", Duration::from_secs(10), || {
        received(&sub).into_iter().find(|(t, _, _)| t == "/health")
    })
    .await;

    for round in 0..3 {
        store
            .commit(
                &[int_readings("d1", round * 100, 60)],
                &[],
                &ClockStamp::now(),
            )
            .unwrap();
    }
    let (max_data, health) = wait_until(
        "a health message with last_seq = the highest data seq",
        Duration::from_secs(15),
        || {
            let m = received(&sub);
            let max_data = m
                .iter()
                .filter(|(t, _, _)| t == "/data")
                .filter_map(|(_, d, _)| d["seq"].as_u64())
                .max()?;
            let values: usize = m
                .iter()
                .filter(|(t, _, _)| t == "/data")
                .flat_map(|(_, d, _)| d["data"].as_array().cloned().unwrap_or_default())
                .flat_map(|dev| dev["reads"].as_array().cloned().unwrap_or_default())
                .map(|r| r["v"].as_object().map_or(0, |v| v.len()))
                .sum();
            if values < 180 {
                return None;
            }
            let h = m
                .iter()
                .rev()
                .find(|(t, _, _)| t == "/health")
                .map(|(_, d, _)| d.clone())?;
            (h["last_seq"].as_u64() == Some(max_data)).then_some((max_data, h))
        },
    )
    .await;
    assert_eq!(health["gw"], GW);
    assert_eq!(health["dead_letters"], 0);
    assert!(
        health.get("seq").is_none(),
        "health consumes no seq: {health}"
    );
    assert_eq!(store.last_seq().unwrap(), max_data);

    // Retained: a consumer that connects later gets it at once.
    let late = Subscriber::start(&pki, broker.port, &format!("{ROOT}/health"), "late", false);
    let got = wait_until("retained health", Duration::from_secs(10), || {
        late.snapshot().into_iter().find(|m| m.retain)
    })
    .await;
    assert_eq!(decode(&got.payload).unwrap()["last_seq"], max_data);
    assert_eq!(run.status.borrow().last_seq, max_data);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_publishes_health_with_the_last_seq_it_sent() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    let (_sim, sim_port) = simulate_tcp(&["1:pt-float"], &[]);
    let root = "gasdtu/ih-test";
    let sub = Subscriber::start(&pki, broker.port, &format!("{root}/#"), "ih-sub", false);
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    let config = dir.path().join("gasdtu.toml");
    let socket = dir.path().join("gasdtu.sock");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"ih-test\"\nstate_dir = \"{}\"\n\n[buses.lan]\nkind = \"tcp\"\n\
             host = \"127.0.0.1\"\nport = {sim_port}\ntimeout = \"500ms\"\n\n[devices.pt1]\n\
             bus = \"lan\"\nunit = 1\npoll = \"1s\"\nprofile = \"pt-float\"\n\n{}",
            dir.path().join("state").display(),
            pki.uplink_toml(broker.port)
        ),
    )
    .unwrap();
    let mut daemon = Proc::spawn(
        "gasdtu run",
        Command::new(gasdtu())
            .args(["run", "--poll-now", "--log-level", "warn", "--config"])
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let seqs = |sub: &Subscriber| -> Vec<u64> {
        received_under(sub, root)
            .iter()
            .filter(|(t, _, _)| t != "/health")
            .filter_map(|(_, d, _)| d["seq"].as_u64())
            .collect()
    };
    // Health at connect (before or with the first data), then data flows.
    let first = wait_until("health after connect", Duration::from_secs(20), || {
        received_under(&sub, root)
            .into_iter()
            .find(|(t, _, _)| t == "/health")
            .map(|(_, d, _)| d)
    })
    .await;
    assert!(
        first["buffer"].is_object(),
        "buffer depth in health: {first}"
    );
    wait_until("three data messages", Duration::from_secs(20), || {
        (received_under(&sub, root)
            .iter()
            .filter(|(t, _, _)| t == "/data")
            .count()
            >= 3)
            .then_some(())
    })
    .await;
    // `gasdtu status` shows the new link fields.
    let out = Command::new(gasdtu())
        .args(["status", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let status: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["link"]["dead_letters"], 0, "{status}");
    assert!(status["link"]["last_seq"].as_u64().is_some(), "{status}");

    // A clean shutdown publishes the final health: its last_seq is the last message sent.
    sigterm(&daemon.child);
    assert!(
        wait_exit(&mut daemon.child, Duration::from_secs(20)).is_some(),
        "daemon did not exit"
    );
    let late = Subscriber::start(
        &pki,
        broker.port,
        &format!("{root}/health"),
        "ih-late",
        false,
    );
    let health = wait_until("retained health", Duration::from_secs(10), || {
        late.snapshot()
            .into_iter()
            .find(|m| m.retain)
            .map(|m| decode(&m.payload).unwrap())
    })
    .await;
    let last_seq = health["last_seq"].as_u64().unwrap();
    assert_eq!(health["buffer"]["unacked"], 0, "{health}");
    let max = wait_until(
        "every message up to last_seq",
        Duration::from_secs(10),
        || {
            let m = seqs(&sub).into_iter().max()?;
            (m >= last_seq).then_some(m)
        },
    )
    .await;
    assert_eq!(max, last_seq, "{health}");
    // And no gap below it: the consumer's rule finds nothing missing.
    let got: BTreeSet<u64> = seqs(&sub).into_iter().collect();
    let lo = *got.iter().next().unwrap();
    let missing: Vec<u64> = (lo..=last_seq).filter(|s| !got.contains(s)).collect();
    assert!(missing.is_empty(), "missing {missing:?}");
}
