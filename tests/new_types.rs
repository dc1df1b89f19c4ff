//! The types of issue 12 end to end with real parts: `gasdtu simulate` serves an INTREAL
//! corrector (evc-dcba), a 12-digit BCD flow computer (turbine-bcd48) and a pressure
//! transmitter whose decimals live in another register (pt-int16, `scale_from`); `gasdtu run`
//! polls them and publishes over TLS to a real mosquitto. The published values are the exact
//! decimal values the instruments show, the `publish = false` points never leave the gateway
//! but are in the local store (`gasdtu export`), and `gasdtu read --type bcd48/intreal` prints
//! the same values. A decimals register that reads out of range makes the pressure bad, and
//! a decimals register in a later read block than its value (a profile from `profile_dirs`)
//! still scales the value of the same cycle.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Every (device, point) -> last JSON value published in data messages, and every point name
/// seen (values and bad ones).
fn published(sub: &Subscriber) -> (BTreeMap<(String, String), serde_json::Value>, Vec<String>) {
    let mut values = BTreeMap::new();
    let mut names = Vec::new();
    for m in sub.snapshot() {
        if !m.topic.ends_with("/data") {
            continue;
        }
        let v = gasdtu::uplink::decode(&m.payload).expect("every payload decodes");
        for d in v["data"].as_array().into_iter().flatten() {
            let dev = d["dev"].as_str().unwrap_or_default().to_string();
            for read in d["reads"].as_array().into_iter().flatten() {
                for key in ["v", "bad"] {
                    for (p, x) in read[key].as_object().into_iter().flatten() {
                        names.push(p.clone());
                        if key == "v" {
                            values.insert((dev.clone(), p.clone()), x.clone());
                        } else {
                            values.insert((dev.clone(), p.clone()), serde_json::json!({"bad": x}));
                        }
                    }
                }
            }
        }
    }
    (values, names)
}

fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(gasdtu()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_types_are_published_exactly_and_local_points_stay_local() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    // A transmitter whose decimals register sits far behind the value: two reads per poll,
    // the decimals in the second.
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("pt-far.toml"),
        r#"[profile]
id = "pt-far"
name = "pressure transmitter, decimals far away"
follows = "test fixture"
description = "i16 pressure at 0, its decimals at 100"
default_order = "ABCD"

[points.pressure]
table = "holding"
address = 0
type = "i16"
scale_from = "pressure_decimals"
unit = "kPa"

[points.pressure_decimals]
table = "holding"
address = 100
type = "u16"
publish = false
"#,
    )
    .unwrap();
    let sim_port = free_port();
    let ep = format!("127.0.0.1:{sim_port}");
    #[rustfmt::skip]
    let _sim = Proc::spawn(
        "gasdtu simulate",
        Command::new(gasdtu())
            .args(["simulate", "--tcp", &ep, "--seed", "5"])
            .args(["--device", "1:evc-dcba", "--device", "2:turbine-bcd48", "--device", "3:pt-int16"])
            // Above 2^24 with a fraction: an f32 would lose it.
            .args(["--set", "1:volume_standard=16777217.25"])
            .args(["--set", "2:volume_standard=9876.5432"])
            .args(["--set", "3:pressure=-899.8"])
            // The second transmitter's decimals register is broken.
            .args(["--device", "4:pt-int16", "--set", "4:pressure_decimals=12"])
            .arg("--profile-dir")
            .arg(&profiles)
            .args(["--device", "5:pt-far", "--set", "5:pressure_decimals=2", "--set", "5:pressure=150.2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_port(sim_port, Duration::from_secs(10));

    // The commissioning view of the same registers.
    let (code, out, err) = run_cli(&[
        "read",
        "--tcp",
        &ep,
        "--unit",
        "2",
        "--address",
        "0",
        "--type",
        "bcd48",
        "--scale",
        "0.0001",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let l: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(l["text"], "9876.5432", "{out}");
    assert_eq!(l["hex"], "0000 9876 5432", "{out}");
    let (code, out, err) = run_cli(&[
        "read",
        "--tcp",
        &ep,
        "--unit",
        "1",
        "--address",
        "0",
        "--type",
        "intreal",
        "--order",
        "DCBA",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let l: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(l["value"], serde_json::json!(16_777_217.25), "{out}");
    assert_eq!(l["hex"], "0100 0001 0000 803E", "{out}");

    let state = dir.path().join("state");
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(
        &config,
        format!(
            r#"[gateway]
id = "types-test"
state_dir = "{state}"
profile_dirs = ["{profiles}"]

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {sim_port}
timeout = "500ms"

[devices.evc1]
bus = "lan"
unit = 1
poll = "1s"
profile = "evc-dcba"

[devices.tb1]
bus = "lan"
unit = 2
poll = "1s"
profile = "turbine-bcd48"

[devices.pt1]
bus = "lan"
unit = 3
poll = "1s"
profile = "pt-int16"

[devices.pt2]
bus = "lan"
unit = 4
poll = "1s"
profile = "pt-int16"

[devices.far1]
bus = "lan"
unit = 5
poll = "1s"
profile = "pt-far"

{uplink}"#,
            state = state.display(),
            profiles = profiles.display(),
            uplink = pki.uplink_toml(broker.port),
        ),
    )
    .unwrap();
    let sub = Subscriber::start(&pki, broker.port, "gasdtu/#", "types-sub", false);
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    let mut daemon = Proc::spawn(
        "gasdtu run",
        Command::new(gasdtu())
            .args(["run", "--poll-now", "--log-level", "warn", "--config"])
            .arg(&config)
            .arg("--socket")
            .arg(dir.path().join("gasdtu.sock"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let want = [
        ("evc1", "volume_standard"),
        ("tb1", "volume_standard"),
        ("pt1", "pressure"),
        ("pt2", "pressure"),
        ("far1", "pressure"),
    ];
    let values = wait_until(
        "every new-type point published",
        Duration::from_secs(30),
        || {
            let (v, _) = published(&sub);
            want.iter()
                .all(|(d, p)| v.contains_key(&(d.to_string(), p.to_string())))
                .then_some(v)
        },
    )
    .await;
    let get = |d: &str, p: &str| values[&(d.to_string(), p.to_string())].clone();
    // Exact decimal values on the wire, as the instruments show them.
    assert_eq!(get("evc1", "volume_standard").to_string(), "16777217.25");
    assert_eq!(get("tb1", "volume_standard").to_string(), "9876.5432");
    assert_eq!(get("pt1", "pressure").to_string(), "-899.8");
    assert_eq!(get("far1", "pressure").to_string(), "150.2");
    // A decimals register reading 12 makes the value bad, never wrong.
    let bad = get("pt2", "pressure");
    assert!(
        bad["bad"]
            .as_str()
            .is_some_and(|b| b.contains("pressure_decimals") && b.contains("12")),
        "{bad}"
    );
    // `publish = false` points never leave the gateway.
    let (_, names) = published(&sub);
    for local in [
        "volume_standard_int",
        "volume_standard_frac",
        "pressure_decimals",
    ] {
        assert!(
            !names
                .iter()
                .any(|n| n == local || n.starts_with(&format!("{local}."))),
            "{local} was published"
        );
    }
    sigterm(&daemon.child);
    assert!(wait_exit(&mut daemon.child, Duration::from_secs(10)).is_some());

    // ... but they are read and stored: the local export has them.
    let (code, out, err) = run_cli(&[
        "export",
        "--format",
        "jsonl",
        "--state-dir",
        &state.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let points: Vec<(String, String, serde_json::Value)> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["device"].as_str().unwrap_or_default().to_string(),
                v["point"].as_str().unwrap_or_default().to_string(),
                v["value"].clone(),
            )
        })
        .collect();
    for (dev, local) in [
        ("evc1", "volume_standard_int"),
        ("evc1", "volume_standard_frac"),
        ("pt1", "pressure_decimals"),
    ] {
        assert!(
            points.iter().any(|(d, p, _)| d == dev && p == local),
            "{dev}.{local} not in the export"
        );
    }
    assert!(points
        .iter()
        .any(|(d, p, v)| d == "pt1" && p == "pressure_decimals" && *v == serde_json::json!(1)));
}
