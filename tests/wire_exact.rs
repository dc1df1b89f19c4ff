//! Issue 12, "wrong on the wire", with real parts: the real `gasdtu run` binary (twice: JSON
//! and CBOR) polls a `gasdtu simulate` child whose evc-dcba unit holds totals above 2^24 and
//! near a million as u32 + f32 fraction registers (byte-reversed), and whose pt-int16 unit holds
//! 0.1-scaled int16 registers; a real mosquitto carries the messages to a subscriber. The
//! published bytes carry the exact decimals (16777217.25, 987654.32, -899.8, 150.2), the CBOR
//! messages decode to the same digits through the real `gasdtu decode`, and `gasdtu export`
//! of the store shows them too. `decode` also names the retained `online` status.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::wire::{config, daemon};
use common::*;

/// (device, point, value as published)
const EXPECT: [(&str, &str, &str); 4] = [
    ("evc1", "volume_standard", "16777217.25"),
    ("evc1", "volume_measured", "987654.32"),
    ("pt1", "pressure", "-899.8"),
    ("pt1", "temperature", "150.2"),
];

/// `gasdtu decode FILE` of `payload`: stdout.
fn decode_cli(dir: &Path, payload: &[u8]) -> String {
    let file = dir.join("capture.bin");
    std::fs::write(&file, payload).unwrap();
    let out = Command::new(gasdtu())
        .arg("decode")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "decode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The decoded value of (device, point) in a data message, as JSON text.
fn value_text(decoded: &serde_json::Value, dev: &str, point: &str) -> Option<String> {
    decoded["data"].as_array()?.iter().find_map(|d| {
        if d["dev"] != dev {
            return None;
        }
        d["reads"]
            .as_array()?
            .iter()
            .find_map(|r| r["v"].get(point).map(|v| v.to_string()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_and_scaled_values_are_exact_on_the_wire_and_through_decode() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    let sim_port = free_port();
    let _sim = Proc::spawn(
        "gasdtu simulate",
        Command::new(gasdtu())
            .args(["simulate", "--tcp", &format!("127.0.0.1:{sim_port}")])
            .args(["--device", "1:pt-int16", "--device", "2:evc-dcba"])
            .args(["--set", "1:pressure=-899.8", "--set", "1:temperature=150.2"])
            .args(["--set", "2:volume_standard=16777217.25"])
            .args(["--set", "2:volume_measured=987654.32"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_port(sim_port, Duration::from_secs(10));
    let sub = Subscriber::start(&pki, broker.port, "gasdtu/#", "wire-sub", false);
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    let uplink = pki.uplink_toml(broker.port);
    let json_cfg = config(dir.path(), "wire-json", sim_port, &uplink, "json", 1);
    let cbor_cfg = config(dir.path(), "wire-cbor", sim_port, &uplink, "cbor", 1);
    let _json_daemon = daemon(&json_cfg, &dir.path().join("json.sock"));
    let _cbor_daemon = daemon(&cbor_cfg, &dir.path().join("cbor.sock"));

    // Until both gateways published a reading of every expected point.
    let complete = |gw: &str| {
        let msgs: Vec<Vec<u8>> = sub
            .snapshot()
            .into_iter()
            .filter(|m| m.topic == format!("gasdtu/{gw}/data"))
            .map(|m| m.payload)
            .collect();
        let all = EXPECT.iter().all(|(dev, point, _)| {
            msgs.iter().any(|p| {
                gasdtu::uplink::decode(p)
                    .ok()
                    .and_then(|d| value_text(&d, dev, point))
                    .is_some()
            })
        });
        all.then_some(msgs)
    };
    let json_msgs = wait_until("JSON data of both devices", Duration::from_secs(30), || {
        complete("wire-json")
    })
    .await;
    let cbor_msgs = wait_until("CBOR data of both devices", Duration::from_secs(30), || {
        complete("wire-cbor")
    })
    .await;

    // JSON: the bytes themselves carry the decimals; every message that has the point has it
    // exactly (the simulator holds the values pinned).
    for (dev, point, text) in EXPECT {
        let mut seen = 0;
        for p in &json_msgs {
            let d = gasdtu::uplink::decode(p).unwrap();
            if let Some(v) = value_text(&d, dev, point) {
                assert_eq!(v, text, "{dev}.{point} in {}", String::from_utf8_lossy(p));
                assert!(String::from_utf8_lossy(p).contains(&format!("\"{point}\":{text}")));
                seen += 1;
            }
        }
        assert!(seen > 0, "{dev}.{point}");
    }
    // CBOR: through the real `gasdtu decode`, the same digits.
    for p in &cbor_msgs {
        assert_ne!(p.first(), Some(&b'{'), "CBOR payload");
        let out = decode_cli(dir.path(), p);
        let d: serde_json::Value = serde_json::from_str(&out).unwrap();
        for (dev, point, text) in EXPECT {
            if let Some(v) = value_text(&d, dev, point) {
                assert_eq!(v, text, "{dev}.{point} decoded from CBOR: {out}");
            }
        }
    }
    // The retained status is recognised too.
    let online = sub
        .snapshot()
        .into_iter()
        .find(|m| m.topic == "gasdtu/wire-cbor/status")
        .expect("retained status");
    let out = decode_cli(dir.path(), &online.payload);
    assert_eq!(out.trim(), r#"{"status":"online"}"#);

    // The store keeps the same doubles (`gasdtu export`, JSON lines, read-only beside the
    // running daemon).
    let out = Command::new(gasdtu())
        .args(["export", "--format", "jsonl", "--config"])
        .arg(&json_cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for (dev, point, value) in EXPECT {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("\"{dev}\"")) && l.contains(&format!("\"{point}\"")))
            .unwrap_or_else(|| panic!("{dev}.{point} exported: {text}"));
        assert!(line.contains(&format!(":{value}")), "{line}");
    }
}

/// `gasdtu decode` on what is no gasdtu payload: exit 1, naming the input and what it saw; a
/// capture larger than any payload is refused before decoding.
#[test]
fn decode_cli_names_what_it_saw() {
    let dir = tempfile::tempdir().unwrap();
    // (file contents, what stderr must say)
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"hello\n".to_vec(),
            "text \"hello\" is neither JSON nor a status word",
        ),
        (
            b"{\"temp\": 21.5}".to_vec(),
            "JSON object with keys [temp] is none of gasdtu's messages",
        ),
        (
            vec![0xff, 0x00],
            "binary payload starting ff 00 is not CBOR",
        ),
        (vec![b' '; (16 << 20) + 1], "more than 16777216 bytes"),
    ];
    for (i, (bytes, want)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("capture{i}.bin"));
        std::fs::write(&file, &bytes).unwrap();
        let out = Command::new(gasdtu())
            .arg("decode")
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{want}: {err}");
        assert!(
            err.contains(want) && err.contains(&format!("capture{i}.bin")),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
}
