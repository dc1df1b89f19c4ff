//! Sealing inside the ingest commit (issue 13), with real parts.
//!
//! - Library, real SQLite: the messages an armed ingest commit seals are byte for byte the
//!   ones the forwarder's packer builds from the same look of pending entries for the same
//!   sequence numbers (`encode_messages`, JSON and CBOR, data formats 1 and 2, topics).
//! - Daemon: the real `gasdtu run` polls a `gasdtu simulate` child and forwards over mutual
//!   TLS to a real mosquitto; the forwarder reports messages sealed at ingest, and every
//!   committed reading arrives exactly once, in sequence order with no gap.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gasdtu::config::StoreConfig;
use gasdtu::config::{Encoding, PayloadFormat};
use gasdtu::outbox::{IngestSealer, Outbox};
use gasdtu::store::{ClockStamp, Store};
use gasdtu::uplink::{encode_messages, IngestSeal, Topics};

#[test]
fn ingest_seals_exactly_what_the_forwarder_builds() {
    use {Encoding::*, PayloadFormat::*};
    for (encoding, format) in [(Json, V1), (Cbor, V1), (Json, V2), (Cbor, V2)] {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let mut cfg = uplink_config_plain(encoding, format);
        cfg.max_payload = 600; // several messages per look
        let seal = Arc::new(IngestSeal::new(&cfg, "gw-x"));
        store.set_ingest_sealer(Some(seal.clone()));
        // Readings of three devices and an alarm, committed while the forwarder is busy.
        let batches: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|d| int_readings(d, 0, 12))
            .collect();
        let alarm = (
            gasdtu::outbox::EntryKind::Alarm,
            serde_json::json!({"alarm": "hi", "state": "raised"}),
        );
        let stamp = ClockStamp::now();
        store.commit(&batches, &[alarm], &stamp).unwrap();

        // What the forwarder would build of this look, with the next sequence numbers.
        let live_since = stamp.wall_ms - 1000;
        let look = store.pending(32, live_since).unwrap();
        let packs = encode_messages(&look, "gw-x", cfg.max_payload, (encoding, format));
        assert!(packs.len() >= 3, "{} messages", packs.len());
        let first = store.last_seq().unwrap() + 1;
        let topics = Topics::new(&cfg.topic_root);
        let want: Vec<(u64, String, Vec<u8>)> = packs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let seq = first + i as u64;
                (seq, topics.for_kind(p.kind), p.build("gw-x", seq).unwrap())
            })
            .collect();

        // The forwarder is idle now: an (empty) ingest commit seals that look itself.
        seal.arm(live_since);
        let info = store.commit(&[], &[], &ClockStamp::now()).unwrap();
        assert_eq!(info.presealed, want.len(), "{encoding:?} {format:?}");
        assert_eq!(seal.armed(), None, "disarmed once it sealed");
        let got: Vec<(u64, String, Vec<u8>)> = store
            .take_presealed()
            .unwrap()
            .into_iter()
            .map(|m| (m.seq, m.topic, m.payload))
            .collect();
        assert_eq!(got, want, "{encoding:?} {format:?}");
        assert!(store.pending(32, live_since).unwrap().is_empty());
    }
}

/// The test uplink (`tests/common/uplink.rs`) in plain MQTT with `encoding` and `format`
/// (the library test never connects).
fn uplink_config_plain(encoding: Encoding, format: PayloadFormat) -> gasdtu::config::UplinkConfig {
    gasdtu::config::UplinkConfig {
        encoding,
        format,
        ..uplink::plain_uplink_config(1883, "gw-x")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_delivers_every_reading_once_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _broker) = mutual_tls_broker(dir.path());
    let (_sim, sim_port) = simulate_tcp(&["1:pt-float", "2:evc-dcba"], &[]);
    let state = dir.path().join("state");
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"is-test\"\nstate_dir = \"{}\"\n\n\
             [buses.lan]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {sim_port}\ntimeout = \"500ms\"\n\n\
             [devices.pt1]\nbus = \"lan\"\nunit = 1\npoll = \"1s\"\nprofile = \"pt-float\"\n\n\
             [devices.evc1]\nbus = \"lan\"\nunit = 2\npoll = \"1s\"\nprofile = \"evc-dcba\"\n\n{}",
            state.display(),
            pki.uplink_toml(_broker.port),
        ),
    )
    .unwrap();
    let sub = Subscriber::start(&pki, _broker.port, "gasdtu/is-test/#", "is-sub", true);
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    let socket = dir.path().join("gasdtu.sock");
    let mut daemon = Proc::spawn(
        "gasdtu run",
        Command::new(gasdtu())
            .args(["run", "--poll-now", "--log-level", "warn"])
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let link = |k: &str| -> Option<u64> {
        let out = Command::new(gasdtu())
            .args(["status", "--json", "--socket"])
            .arg(&socket)
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["link"][k].as_u64()
    };
    // Poll cycles go by; the forwarder, idle between them, has the commits seal.
    wait_until(
        "20 messages sealed at ingest",
        Duration::from_secs(60),
        || (link("sealed_at_ingest")? >= 20).then_some(()),
    )
    .await;
    sigterm(&daemon.child);
    let status = wait_exit(&mut daemon.child, Duration::from_secs(15)).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0));

    // Every committed reading (the store's own export), at the subscriber.
    let out = Command::new(gasdtu())
        .args(["export", "--format", "jsonl", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success());
    let committed: BTreeSet<(String, String, i64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            (s("device"), s("point"), rfc3339_ms(&s("read_at")))
        })
        // The evc-dcba halves are `publish = false`: stored, never sent.
        .filter(|(_, p, _)| !(p.ends_with("_int") || p.ends_with("_frac")))
        .collect();
    let got = wait_until(
        "every committed reading at the subscriber",
        Duration::from_secs(15),
        || {
            let r = arrived(&sub);
            committed.iter().all(|k| r.0.contains_key(k)).then_some(r)
        },
    )
    .await;
    let (by_reading, seqs) = got;
    let twice: Vec<_> = by_reading.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "readings delivered more than once: {twice:?}"
    );
    // In sequence order, each once, no gap (no reconnect, no dead letter in this run).
    assert!(seqs.len() >= 20, "{} messages", seqs.len());
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers out of order or with gaps: {seqs:?}"
    );
    assert!(committed.len() >= 40, "{} readings", committed.len());
}

/// Per reading (device, point, read time in ms): how often it arrived; and the sequence
/// numbers of the messages with one, in arrival order.
#[allow(clippy::type_complexity)]
fn arrived(sub: &Subscriber) -> (BTreeMap<(String, String, i64), usize>, Vec<u64>) {
    let mut by = BTreeMap::new();
    let mut seqs = Vec::new();
    for m in sub.snapshot() {
        if m.topic.ends_with("/status") || m.topic.ends_with("/health") {
            continue;
        }
        let v = gasdtu::uplink::decode(&m.payload).expect("every payload decodes");
        seqs.push(v["seq"].as_u64().expect("every message has a seq"));
        if !m.topic.ends_with("/data") {
            continue;
        }
        for key in data_readings(&v) {
            *by.entry(key).or_insert(0) += 1;
        }
    }
    (by, seqs)
}
