//! The small things of issue 12 with the real binary: `gasdtu status` of a running daemon
//! polling `gasdtu simulate` (the device table's `POINTS GOOD` column as good points of all
//! points, `*_ms` keys shown as times with their age, strings without JSON quotes), and
//! `gasdtu export | head` in a real shell pipeline (a closed pipe says the export stopped
//! early and never reports "(0 batches)"; a complete export counts what it wrote). Every wait
//! is on a condition with a deadline.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use gasdtu::store::{ClockStamp, Store};

/// (exit code, stdout, stderr) of `program args`, killed after 60 s.
fn run(program: &Path, args: &[&str]) -> (i32, String, String) {
    let r = run_program(program, args, None);
    (r.code, r.stdout, r.stderr)
}

#[test]
fn status_shows_good_points_and_times_as_times() {
    let (_sim, port) = simulate_tcp(&["1:pt-float"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(
        &config,
        format!(
            r#"[gateway]
id = "status-test"
state_dir = "{state}"
profile_dirs = []

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {port}
timeout = "500ms"

[devices.pt1]
bus = "lan"
unit = 1
poll = "1s"
profile = "pt-float"
"#,
            state = dir.path().display()
        ),
    )
    .unwrap();
    let socket = dir.path().join("run/gasdtu.sock");
    let _daemon = Proc::spawn(
        "gasdtu run",
        Command::new(gasdtu())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--poll-now")
            .arg("--socket")
            .arg(&socket)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let sock = socket.to_str().unwrap();
    // Wait until the daemon has polled pt1 and committed a reading.
    let text = wait_for("pt1 in the status table", Duration::from_secs(20), || {
        let (code, out, _) = run(&gasdtu(), &["status", "--socket", sock]);
        (code == 0
            && out
                .lines()
                .any(|l| l.starts_with("pt1 ") && l.ends_with(" 2/2"))
            && out.contains("  newest_read_ms "))
        .then_some(out)
    });
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .find(|l| l.starts_with("DEVICE "))
        .expect("a device table");
    assert!(header.ends_with("POINTS GOOD  LAST ERROR"), "{text}");
    let pt1 = lines.iter().find(|l| l.starts_with("pt1 ")).unwrap();
    assert!(pt1.contains(" lan ") && pt1.contains(" online "), "{text}");
    // Strings without JSON quotes; a time that is not there is "-"; times are times.
    assert!(
        lines.contains(&"  state                    no uplink configured"),
        "{text}"
    );
    assert!(lines.contains(&"  last_ack_ms              -"), "{text}");
    let newest = lines
        .iter()
        .find(|l| l.starts_with("  newest_read_ms "))
        .unwrap();
    let shown = newest.trim_start_matches("  newest_read_ms").trim();
    assert!(
        shown.len() > 20
            && shown.as_bytes()[4] == b'-'
            && shown.contains("Z (")
            && shown.ends_with(" ago)"),
        "{newest}"
    );
    assert!(
        !text.contains("1970-"),
        "a duration shown as a time: {text}"
    );
    assert!(!text.contains('"'), "JSON quotes in the text view: {text}");
}

/// A store in `dir` holding `batches` batches of `per` readings each.
fn fill_store(dir: &Path, batches: i64, per: i64) {
    let (store, _) = Store::open(dir, &Default::default()).expect("open the store");
    let all: Vec<_> = (0..batches)
        .map(|b| int_readings("meter", b * per, per))
        .collect();
    let stamp = ClockStamp {
        wall_ms: gasdtu::time::now_ms(),
        mono_ms: 1_000,
        boot_id: "test".into(),
    };
    store.commit(&all, &[], &stamp).expect("commit");
}

#[test]
fn export_into_head_says_it_stopped_early() {
    let dir = tempfile::tempdir().unwrap();
    // 12 000 CSV lines: far more than a pipe holds, so the export is still writing when head
    // has gone.
    fill_store(dir.path(), 120, 100);
    let state = dir.path().display().to_string();
    let pipeline = format!(
        "'{}' export --state-dir '{state}' | head -n 3",
        gasdtu().display()
    );
    let (code, out, err) = run(Path::new("sh"), &["-c", &pipeline]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.starts_with("device,point,value,unit,quality,read_at,clock\nmeter,p0,0,,good,"),
        "{out}"
    );
    assert_eq!(
        err,
        "export stopped early: the reader closed the pipe (as `| head` does)\n"
    );

    // To a file, the whole export is counted.
    let file = dir.path().join("out.csv");
    let (code, _, err) = run(
        &gasdtu(),
        &[
            "export",
            "--state-dir",
            &state,
            "-o",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err,
        format!(
            "exported 12000 readings (120 batches) to {}\n",
            file.display()
        )
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 12_001);
}
