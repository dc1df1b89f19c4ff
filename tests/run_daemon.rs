//! `gasdtu run` as the service manager runs it: the real binary against `gasdtu simulate`
//! child processes over Modbus TCP. It starts, logs a `batch` line with good samples for every
//! device, and exits 0 within a few seconds of SIGTERM; an invalid config makes it refuse to
//! start with exit 1 and every error printed, a missing one with exit 2.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// Remove ANSI colour sequences (ESC [ ... letter) from a log line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `key=` in a tracing fmt line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Is this a `batch` log line of `device` with good samples and no bad ones?
fn good_batch(line: &str, device: &str) -> bool {
    let l = plain(line);
    l.contains(" batch")
        && field(&l, "device") == Some(device)
        && field(&l, "bad") == Some("0")
        && field(&l, "good").and_then(|g| g.parse::<u32>().ok()) > Some(0)
        && field(&l, "online") == Some("true")
}

fn run_with(config: &Path) -> Output {
    Command::new(gasdtu())
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--poll-now")
        .env("NO_COLOR", "1")
        .output()
        .expect("run gasdtu")
}

#[test]
fn run_polls_simulated_devices_logs_batches_and_stops_on_sigterm() {
    let (_sim1, p1) = simulate_tcp(&["1:pt-float", "2:evc-dcba"], &[]);
    let (_sim2, p2) = simulate_tcp(&["1:mvt-dpspt"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(
        &config,
        format!(
            r#"[gateway]
id = "ftest"
state_dir = "{state}"

[buses.lan1]
kind = "tcp"
host = "127.0.0.1"
port = {p1}
timeout = "300ms"

[buses.lan2]
kind = "tcp"
host = "127.0.0.1"
port = {p2}
timeout = "300ms"

[devices.pt1]
bus = "lan1"
unit = 1
poll = "1s"
profile = "pt-float"

[devices.evc1]
bus = "lan1"
unit = 2
poll = "1s"
profile = "evc-dcba"

[devices.mvt1]
bus = "lan2"
unit = 1
poll = "1s"
profile = "mvt-dpspt"
"#,
            state = dir.path().display()
        ),
    )
    .unwrap();

    let socket = dir.path().join("run/gasdtu.sock");
    let mut run = Proc::spawn(
        "gasdtu run",
        Command::new(gasdtu())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--poll-now")
            .arg("--socket")
            .arg(&socket)
            // Every batch, not only the changes (INFO): the test counts them.
            .args(["--log-level", "info,gasdtu::batch=debug"])
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let log = Lines::collect(run.child.stderr.take().unwrap());
    for device in ["pt1", "evc1", "mvt1"] {
        log.wait_line(
            &format!("a good batch line of {device}"),
            Duration::from_secs(15),
            |l| good_batch(l, device),
        );
    }
    // Still polling on its 1 s schedule: a second good batch of a device arrives.
    log.wait_line("more batches", Duration::from_secs(5), |_| {
        log.snapshot()
            .iter()
            .filter(|l| good_batch(l, "mvt1"))
            .count()
            >= 2
    });
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "the daemon keeps running"
    );

    // `gasdtu status` reaches the running daemon over its socket.
    let status = Command::new(gasdtu())
        .args(["status", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["gateway"]["id"], "ftest");
    for device in ["pt1", "evc1", "mvt1"] {
        assert_eq!(v["devices"][device]["online"], true, "{v}");
        assert_eq!(v["devices"][device]["bad"], 0, "{v}");
        assert!(
            v["devices"][device]["last_good_ms"].as_i64().unwrap() > 1_700_000_000_000,
            "{v}"
        );
    }
    let table = Command::new(gasdtu())
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("mvt1") && l.contains("online")),
        "{text}"
    );

    sigterm(&run.child);
    let status = wait_exit(&mut run.child, Duration::from_secs(5))
        .expect("gasdtu run exits within 5 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", log.snapshot().join("\n"));
    log.wait_line("the stop line", Duration::from_secs(2), |l| {
        plain(l).contains("gasdtu stopped")
    });
    let all = log.snapshot().join("\n");
    assert!(!all.contains("panicked"), "{all}");
    assert!(!socket.exists(), "the status socket is removed on shutdown");
    // With the daemon gone, `gasdtu status` says so and exits 2.
    let gone = Command::new(gasdtu())
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("is `gasdtu run` running?"));
}

#[test]
fn run_refuses_an_invalid_config_with_every_error_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        r#"[gateway]
id = "ftest"
colour = "blue"

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
retries = 99

[devices.m1]
bus = "nowhere"
unit = 1
profile = "pt-float"
"#,
    )
    .unwrap();
    let out = run_with(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in ["gateway.colour", "buses.lan.retries", "devices.m1.bus"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("error") && l.contains(needle)),
            "no error naming {needle}:\n{stderr}"
        );
    }
    assert!(!stderr.contains(" batch"), "it must not start polling");
}

#[test]
fn run_with_a_missing_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let out = run_with(&missing);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nope.toml"), "names the file: {stderr}");
}
