//! `gasdtu check` as a field engineer runs it: the real binary on a valid file (exit 0), an
//! invalid one (exit 1, every error named with its key path and position) and a missing file
//! (exit 2).

use std::path::Path;
use std::process::{Command, Output};

fn check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gasdtu"))
        .arg("--config")
        .arg(config)
        .arg("check")
        .output()
        .expect("run gasdtu")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_example_config_exits_0_with_report_and_summary() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/gasdtu.toml");
    let out = check(&path);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("error:"), "{stderr}");
    assert!(
        stdout.contains("bus rs485a: 3 devices,")
            && stdout.contains("at 9600 baud, shortest poll 1m: ok"),
        "{stdout}"
    );
    assert!(stdout.contains("bus lan: 1 devices,"), "{stdout}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.ends_with("gasdtu.toml: valid, 2 buses, 4 devices, 38 points, 6 reads per cycle"),
        "{summary}"
    );
}

#[test]
fn invalid_config_exits_1_and_names_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gasdtu.toml");
    std::fs::write(
        &path,
        r#"[gateway]
id = "station-01"
colour = "blue"

[buses.rs485a]
kind = "rtu"
port = "/dev/ttyUSB0"
baud = 9601

[devices.evc1]
bus = "rs485b"
unit = 1
profile = "evc-dcba"

[devices.pt1]
bus = "rs485a"
unit = 2
[devices.pt1.points.pressure]
table = "input"
address = 0
type = "f32"
writable = true
"#,
    )
    .unwrap();
    let out = check(&path);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let all = format!("{stdout}{stderr}");
    for want in [
        "gasdtu.toml:3:1: gateway.colour: unknown key `colour`",
        "gasdtu.toml:8:8: buses.rs485a.baud: 9601 is not a standard rate",
        "gasdtu.toml:11:7: devices.evc1.bus: no bus named `rs485b`",
        "gasdtu.toml:22:12: devices.pt1.points.pressure.writable: input points are read-only",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error: ")).count(),
        4,
        "{stderr}"
    );
    assert!(
        stdout.trim_end().ends_with("gasdtu.toml: 4 errors"),
        "{stdout}"
    );
}

#[test]
fn syntax_error_exits_1_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gasdtu.toml");
    std::fs::write(&path, "[gateway]\nid = \"x\"\n[buses.a\nkind = \"rtu\"\n").unwrap();
    let out = check(&path);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gasdtu.toml:3:9: TOML syntax error"),
        "{stderr}"
    );
}

#[test]
fn missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let out = check(&path);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot read") && stderr.contains("nope.toml"),
        "{stderr}"
    );
}
