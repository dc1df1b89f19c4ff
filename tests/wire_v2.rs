//! Issue 13, format 2 of `data` messages with real parts: the real `gasdtu run` binary (twice,
//! `format = 2` with JSON and with CBOR) polls a `gasdtu simulate` child (an int16 x 0.1
//! pressure transmitter and a volume corrector with f32 and u32 + f32 totals); a real
//! mosquitto carries the messages to a subscriber. Every published message is format 2
//! (`"v":2` / CBOR key 5), the real `gasdtu decode` recognises it as such, and every reading
//! it decodes equals the one in the store (`gasdtu export`): same device, point, read time
//! and value, digit for digit.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::wire::{config, daemon};
use common::*;

/// (device, point, read time) → value as JSON text.
type Readings = BTreeMap<(String, String, String), String>;

/// The real `gasdtu decode --pretty FILE`: (what stderr says it recognised, the JSON).
fn decode_cli(dir: &Path, payload: &[u8]) -> (String, serde_json::Value) {
    let file = dir.join("capture.bin");
    std::fs::write(&file, payload).unwrap();
    let out = Command::new(gasdtu())
        .args(["decode", "--pretty"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "decode: {err}");
    (err, serde_json::from_slice(&out.stdout).unwrap())
}

fn readings_of(decoded: &serde_json::Value, into: &mut Readings) {
    for d in decoded["data"].as_array().unwrap() {
        let dev = d["dev"].as_str().unwrap();
        for r in d["reads"].as_array().unwrap() {
            let t = r["t"].as_str().unwrap();
            for (p, v) in r["v"].as_object().unwrap() {
                into.insert((dev.into(), p.clone(), t.into()), v.to_string());
            }
        }
    }
}

/// Good readings of the store, from `gasdtu export --format jsonl`.
fn exported(config: &Path) -> Readings {
    let out = Command::new(gasdtu())
        .args(["export", "--format", "jsonl", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m = Readings::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        if j["value"].is_null() {
            continue;
        }
        m.insert(
            (
                j["device"].as_str().unwrap().into(),
                j["point"].as_str().unwrap().into(),
                j["read_at"].as_str().unwrap().into(),
            ),
            j["value"].to_string(),
        );
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_2_json_and_cbor_carry_exactly_what_the_store_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    let sim_port = free_port();
    let _sim = Proc::spawn(
        "gasdtu simulate",
        Command::new(gasdtu())
            .args(["simulate", "--tcp", &format!("127.0.0.1:{sim_port}")])
            .args(["--device", "1:pt-int16", "--device", "2:evc-dcba"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_port(sim_port, Duration::from_secs(10));
    let sub = Subscriber::start(&pki, broker.port, "gasdtu/#", "wire-v2-sub", false);
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    let uplink = pki.uplink_toml(broker.port);
    let gws = [("v2-json", "json"), ("v2-cbor", "cbor")];
    let mut daemons = Vec::new();
    let mut configs = Vec::new();
    for (id, enc) in gws {
        let cfg = config(dir.path(), id, sim_port, &uplink, enc, 2);
        daemons.push(daemon(&cfg, &dir.path().join(format!("{id}.sock"))));
        configs.push(cfg);
    }

    for ((id, enc), cfg) in gws.iter().zip(&configs) {
        // Until three data messages with readings of both devices were published.
        let msgs = wait_until(
            &format!("{id}: 3 messages, both devices"),
            Duration::from_secs(40),
            || {
                let msgs: Vec<Vec<u8>> = sub
                    .snapshot()
                    .into_iter()
                    .filter(|m| m.topic == format!("gasdtu/{id}/data"))
                    .map(|m| m.payload)
                    .collect();
                let mut r = Readings::new();
                for p in &msgs {
                    if let Ok(d) = gasdtu::uplink::decode(p) {
                        readings_of(&d, &mut r);
                    }
                }
                let has = |dev: &str| r.keys().any(|k| k.0 == dev);
                (msgs.len() >= 3 && has("pt1") && has("evc1")).then_some(msgs)
            },
        )
        .await;
        let mut published = Readings::new();
        for p in &msgs {
            if *enc == "json" {
                let text = String::from_utf8_lossy(p);
                assert!(text.contains("\"v\":2"), "{text}");
            } else {
                assert_ne!(p.first(), Some(&b'{'), "CBOR payload");
            }
            let (said, d) = decode_cli(dir.path(), p);
            assert!(said.contains("format 2"), "{id}: {said}");
            readings_of(&d, &mut published);
        }
        // The store has at least what was published (later polls too): every published
        // reading is the stored one.
        let stored = exported(cfg);
        eprintln!(
            "{id}: {} messages, {} readings, {} B",
            msgs.len(),
            published.len(),
            msgs.iter().map(Vec::len).sum::<usize>()
        );
        assert!(published.len() >= 6, "{id}: {published:?}");
        for (k, v) in &published {
            assert_eq!(stored.get(k), Some(v), "{id}: {k:?} published as {v}");
        }
        // Scaled and f32 readings went through the decimal slots (CBOR) or plain JSON alike.
        assert!(
            published.values().any(|v| v.contains('.')),
            "{id}: no decimal value in {published:?}"
        );
    }
    drop(daemons);
}
