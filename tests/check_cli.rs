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
    assert!(stdout.contains("bus lan: 1 device,"), "{stdout}");
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

/// Run `gasdtu check` on `config`, failing the test (and killing the process) if it does not
/// finish within `deadline`.
fn check_within(config: &Path, deadline: std::time::Duration) -> Output {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gasdtu"))
        .arg("--config")
        .arg(config)
        .arg("check")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gasdtu");
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "gasdtu check {} did not finish within {deadline:?}",
                config.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Issue 9 item 8: a FIFO made `check` hang, /dev/zero grew memory without end. Both (and a
/// directory, and a file over the 1 MiB limit) are refused at once with exit 2 and a reason.
#[test]
fn non_regular_and_oversized_files_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; 1024 * 1024 + 1]).unwrap();
    let cases: Vec<(&Path, &str)> = vec![
        (
            &fifo,
            "a FIFO (named pipe), not a regular file: refused without reading",
        ),
        (
            Path::new("/dev/zero"),
            "a character device, not a regular file",
        ),
        (dir.path(), "a directory, not a regular file"),
        (&big, "larger than 1048576 bytes"),
    ];
    for (path, want) in cases {
        let out = check_within(path, std::time::Duration::from_secs(10));
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
        assert!(stderr.contains(want), "{}: {stderr}", path.display());
    }
}

/// Issue 9 item 8: 10 MB of unknown keys printed 700 000 lines. Now: at most 100 errors, one
/// line counting the rest, and the true total in the summary.
#[test]
fn error_output_is_capped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gasdtu.toml");
    let mut doc = String::from("[gateway]\nid = \"g\"\n");
    for i in 0..50_000 {
        doc.push_str(&format!("k{i} = 1\n"));
    }
    assert!(doc.len() < 1024 * 1024);
    std::fs::write(&path, doc).unwrap();
    let out = check_within(&path, std::time::Duration::from_secs(30));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 101, "{}", &stderr[..stderr.len().min(2000)]);
    assert!(
        lines[100].ends_with("49900 more errors not shown (only the first 100 are listed)"),
        "{}",
        lines[100]
    );
    assert!(
        stdout.trim_end().ends_with("gasdtu.toml: 50000 errors"),
        "{stdout}"
    );
}

/// Issue 9 item 8: control characters in keys reached the terminal raw; invalid UTF-8 had no
/// position; a negative size had no line:col. Item 1: a 1 MB user name passed `check` (900 kB here: the file limit is 1 MiB).
#[test]
fn hostile_values_get_placed_escaped_errors() {
    let dir = tempfile::tempdir().unwrap();
    // (file bytes, expected stderr fragment)
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            b"[gateway]\nid = \"g\"\n\"k\\u001b]0;pwned\\u0007\\u0000\" = 1\n".to_vec(),
            "gasdtu.toml:3:1: gateway.k\\x1b]0;pwned\\x07\\0: unknown key `k\\x1b]0;pwned\\x07\\0`"
                .into(),
        ),
        (
            b"[gateway]\nid = \"g\"\n# caf\xe9\n".to_vec(),
            "gasdtu.toml:3:6: not valid UTF-8: byte 0xe9".into(),
        ),
        (
            b"[gateway]\nid = \"g\"\n[store]\nmax_bytes = -5\n".to_vec(),
            "gasdtu.toml:4:13: store.max_bytes: -5 is out of range".into(),
        ),
        (
            format!(
                "[gateway]\nid = \"g\"\n[uplink]\nhost = \"h\"\ntls = false\nallow_plaintext_credentials = true\nusername = \"{}\"\n",
                "u".repeat(900_000)
            )
            .into_bytes(),
            "gasdtu.toml:7:12: uplink.username: 900000 bytes long: at most 256 bytes".into(),
        ),
        (
            b"[gateway]\nid = \"g\"\n[uplink]\nhost = \"h\"\ntls = false\nusername = \"u\"\npassword = \"p\"\n".to_vec(),
            "gasdtu.toml:6:12: uplink.username: tls = false would send the user name and password in clear text".into(),
        ),
    ];
    for (bytes, want) in cases {
        let path = dir.path().join("gasdtu.toml");
        std::fs::write(&path, &bytes).unwrap();
        let out = check_within(&path, std::time::Duration::from_secs(10));
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{want}: {stderr}");
        assert!(stderr.contains(&want), "want {want:?} in:\n{stderr}");
        let all = format!("{stdout}{stderr}");
        assert!(
            !all.chars().any(|c| c.is_control() && c != '\n'),
            "raw control character in {all:?}"
        );
    }
}
