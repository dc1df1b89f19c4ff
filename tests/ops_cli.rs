//! The ops CLI end to end (issue 10, part E3) with the real parts: the real binary as the
//! daemon (`gasdtu run` with `[uplink]` to a persistent mosquitto over mutual TLS and
//! `[remote]` with a key) and as the ops tool (`gasdtu cmd`, `gasdtu push` with an `[ops]`
//! file signing with the matching private key), a `gasdtu simulate` device behind a Modbus tap
//! that counts write requests on the wire.
//!
//! One daemon serves every case in order: `cmd ping` answers ok (exit 0, one line, `--json`
//! the raw result); a `write` of an allowed valve is ok and reaches the device; a write of a
//! point not in `[remote.writes]` exits 1 printing `refused not_allowed` and never reaches it;
//! a gateway that does not exist times out with exit 2 within its short `--timeout`; one
//! command to a real and an absent gateway prints one line each (exit 2); `--no-wait` only
//! queues (exit 0); `push` of a config that local validation refuses exits 1 with the key path
//! and never publishes; `push` of a valid config prints the gateway's answer for this push with
//! its status (exit 0 only if applied). Without a broker: exit 2 saying so (also for a push,
//! which warns about a `[gateway] id` that is not the target's); a broken `[ops]` file: exit 2
//! naming key, line and column.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::remote::{ops_toml, run_gasdtu, start_daemon, valve_device, GwConfig, Ran};
use common::{mutual_tls_broker, simulate_tcp, wait_until, ModbusTap, Subscriber};
use gasdtu::remote::sign;

const GW: &str = "gw-oc";

fn config_text(
    dir: &Path,
    pki: &common::Pki,
    broker: u16,
    modbus: u16,
    public: &[u8; 32],
) -> String {
    GwConfig {
        gw: GW,
        dir,
        pki,
        broker_port: broker,
        modbus_port: modbus,
        public,
        bus_timeout: "500ms",
        devices: &valve_device("1s", false),
        writes: "\"pcv1.valve\" = {}\n",
    }
    .text()
}

fn args(ops: &Path, rest: &[&str]) -> Vec<String> {
    let mut a = vec!["--ops".to_string(), ops.display().to_string()];
    a.extend(rest.iter().map(|s| s.to_string()));
    a
}

async fn cmd(ops: &Path, rest: &[&str]) -> Ran {
    let mut a = vec!["cmd".to_string()];
    a.extend(args(ops, rest));
    run_gasdtu(a).await
}

fn lines(r: &Ran) -> Vec<&str> {
    r.stdout.lines().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_cli_commands_and_pushes_against_a_real_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    let (_sim, sim_port) = simulate_tcp(&["1:pt-float"], &[]);
    let tap = ModbusTap::start(sim_port);
    let (pem, public) = sign::generate().unwrap();
    let key_file = dir.path().join("ops.key");
    std::fs::write(&key_file, &pem).unwrap();
    let config = dir.path().join("gasdtu.toml");
    let text = config_text(dir.path(), &pki, broker.port, tap.port, &public);
    std::fs::write(&config, &text).unwrap();
    let ops = dir.path().join("ops.toml");
    std::fs::write(&ops, ops_toml(&pki, broker.port, &key_file, "20s")).unwrap();
    let log = dir.path().join("daemon.log");
    let _daemon = start_daemon(&config, &log);
    let dump = || std::fs::read_to_string(&log).unwrap_or_default();

    // -- ping: the daemon's subscription exists once its first session is up; retry briefly
    let start = Instant::now();
    let ping = loop {
        let r = cmd(&ops, &["--gateway", GW, "--timeout", "2s", "ping"]).await;
        if r.code == Some(0) {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "no ping answered: {r:?}\nlog:\n{}",
            dump()
        );
    };
    assert_eq!(lines(&ping).len(), 1, "{ping:?}");
    assert!(
        ping.stdout
            .starts_with(&format!("{GW}: ok {{\"pong\":true")),
        "{ping:?}"
    );

    // -- --json prints the raw result
    let r = cmd(
        &ops,
        &["--gateway", GW, "--json", "--id", "oc-json-1", "ping"],
    )
    .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON line");
    assert_eq!(
        (v["id"].as_str(), v["status"].as_str()),
        (Some("oc-json-1"), Some("ok")),
        "{v}"
    );

    // -- an allowed write: ok, exit 0, and it reached the device
    let before = tap.writes();
    let r = cmd(&ops, &["--gateway", GW, "write", "pcv1.valve", "true"]).await;
    assert_eq!(r.code, Some(0), "{r:?}\nlog:\n{}", dump());
    assert!(r.stdout.starts_with(&format!("{GW}: ok ")), "{r:?}");
    assert!(tap.writes() > before, "the write reached the device");

    // -- a point not allowed for remote writes: refused, exit 1, code printed, never written
    let before = tap.writes();
    let r = cmd(&ops, &["--gateway", GW, "write", "pcv1.spare", "true"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(lines(&r).len(), 1, "{r:?}");
    assert!(
        r.stdout.starts_with(&format!("{GW}: refused not_allowed")),
        "{r:?}"
    );
    assert_eq!(
        tap.writes(),
        before,
        "a refused write never reaches the device"
    );

    // -- a gateway that does not exist: exit 2 within its short timeout
    let r = cmd(
        &ops,
        &["--gateway", "gw-nowhere", "--timeout", "1s", "ping"],
    )
    .await;
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stdout.starts_with("gw-nowhere: timeout"), "{r:?}");
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);

    // -- two gateways, one line each, the worst exit status
    let r = cmd(
        &ops,
        &[
            "--gateway",
            GW,
            "--gateway",
            "gw-nowhere",
            "--timeout",
            "3s",
            "ping",
        ],
    )
    .await;
    assert_eq!(r.code, Some(2), "{r:?}");
    let l = lines(&r);
    assert_eq!(l.len(), 2, "{r:?}");
    assert!(l[0].starts_with(&format!("{GW}: ok ")), "{r:?}");
    assert!(l[1].starts_with("gw-nowhere: timeout"), "{r:?}");

    // -- --no-wait: queued for an offline gateway, exit 0
    let r = cmd(
        &ops,
        &[
            "--gateway",
            "gw-offline",
            "--expires",
            "2h",
            "--no-wait",
            "ping",
        ],
    )
    .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.starts_with("gw-offline: queued ops-"), "{r:?}");

    // -- pushes: watch config/set to prove what was (not) published
    let sets = Subscriber::start(
        &pki,
        broker.port,
        &format!("gasdtu/{GW}/config/set"),
        "oc-sets",
        false,
    );
    sets.wait_subscribed(1, Duration::from_secs(20)).await;

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text.replace("unit = 1", "unit = 300")).unwrap();
    let mut a = vec!["push".to_string(), bad.display().to_string()];
    a.extend(args(&ops, &["--gateway", GW, "--version", "bad-1"]));
    let r = run_gasdtu(a).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("devices.pcv1.unit"), "{r:?}");
    assert!(r.stdout.contains("not pushed"), "{r:?}");
    assert!(
        !r.stderr.contains("pushed to gateway"),
        "same id, no warning: {r:?}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, text.replace("poll = \"1s\"", "poll = \"2s\"")).unwrap();
    let mut a = vec!["push".to_string(), good.display().to_string()];
    a.extend(args(
        &ops,
        &["--gateway", GW, "--version", "good-1", "--timeout", "20s"],
    ));
    let r = run_gasdtu(a).await;
    let l = lines(&r);
    assert_eq!(l.len(), 1, "{r:?}\nlog:\n{}", dump());
    assert!(
        !r.stderr.contains("pushed to gateway"),
        "same id, no warning: {r:?}"
    );
    let status = l[0]
        .strip_prefix(&format!("{GW}: "))
        .and_then(|s| s.split([':', ';', ' ']).next())
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(
        ["applied", "rejected", "rolled_back", "pending_confirm"].contains(&status),
        "{r:?}"
    );
    let want = match status {
        "applied" => 0,
        "rejected" | "rolled_back" => 1,
        _ => 2,
    };
    assert_eq!(r.code, Some(want), "{r:?}");

    // Only the good push was ever published: the bad one never left the ops machine.
    let seen = wait_until(
        "the good push on config/set",
        Duration::from_secs(20),
        || {
            let m = sets.snapshot();
            (!m.is_empty()).then_some(m)
        },
    )
    .await;
    assert_eq!(seen.len(), 1, "one push published");
    let env: serde_json::Value = serde_json::from_slice(&seen[0].payload).unwrap();
    let body: serde_json::Value = serde_json::from_str(env["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["version"], "good-1");
    assert!(env["sig"].is_string(), "signed");
}

/// No broker listening: exit 2 with a line saying so, within the timeout; a broken `[ops]` file
/// exits 2 naming the key, line and column, before any connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_and_a_bad_ops_file_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::Pki::generate(dir.path());
    let (pem, _) = sign::generate().unwrap();
    let key_file = dir.path().join("ops.key");
    std::fs::write(&key_file, &pem).unwrap();
    let ops = dir.path().join("ops.toml");
    std::fs::write(&ops, ops_toml(&pki, common::free_port(), &key_file, "2s")).unwrap();
    let r = cmd(&ops, &["--gateway", GW, "ping"]).await;
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        r.stdout
            .starts_with(&format!("{GW}: error cannot reach the broker")),
        "{r:?}"
    );
    assert!(r.took < Duration::from_secs(8), "took {:?}", r.took);

    // A valid config pushed to a gateway whose id it does not set: warned, then no broker.
    let (_, public) = sign::generate().unwrap();
    let config = dir.path().join("other.toml");
    std::fs::write(&config, config_text(dir.path(), &pki, 1883, 502, &public)).unwrap();
    let mut a = vec!["push".to_string(), config.display().to_string()];
    a.extend(args(&ops, &["--gateway", "gw-else"]));
    let r = run_gasdtu(a).await;
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "sets [gateway] id = \"{GW}\", pushed to gateway gw-else"
        )),
        "{r:?}"
    );
    assert!(
        r.stdout
            .starts_with("gw-else: error cannot reach the broker"),
        "{r:?}"
    );

    std::fs::write(&ops, "[ops]\nhost = \"localhost\"\nport = 70000\n").unwrap();
    let r = cmd(&ops, &["--gateway", GW, "ping"]).await;
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        r.stderr
            .contains("ops.toml:3:8: ops.port: must be 1..=65535"),
        "{r:?}"
    );
    assert!(r.stdout.is_empty(), "{r:?}");
}
