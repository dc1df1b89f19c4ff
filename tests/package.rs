//! The ingredients of the .deb and the unit, checked fast (no package build here: that is
//! packaging/build-deb and cross/build, run by hand): the systemd unit passes
//! `systemd-analyze verify` and rates below 2.0 in `systemd-analyze security --offline`, and
//! its [Service] section holds the contract's directives; its commands use flags the binary
//! has and the example config passes its ExecStartPre check; the maintainer scripts are valid
//! POSIX sh. The maintainer scripts run in a scratch root: tests/package_scripts.rs; the
//! package's contents, metadata and help: tests/package_contents.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::unit_file::*;
use common::*;

fn systemd_analyze() -> Command {
    // Missing systemd-analyze is an environment error, not a pass: scripts/test installs it.
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "systemd-analyze is needed for the unit checks (apt-get install systemd)"
    );
    Command::new("systemd-analyze")
}

/// A copy of the unit runnable here: the binary at its cargo path, the man page on MANPATH.
fn testable_unit(dir: &Path) -> (PathBuf, PathBuf) {
    let unit = dir.join("gasdtu.service");
    let text = unit_text().replace("/usr/bin/gasdtu", &gasdtu().display().to_string());
    std::fs::write(&unit, text).unwrap();
    let man = dir.join("man");
    std::fs::create_dir_all(man.join("man1")).unwrap();
    std::fs::copy(
        repo_root().join("packaging/gasdtu.1"),
        man.join("man1/gasdtu.1"),
    )
    .unwrap();
    (unit, man)
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (unit, man) = testable_unit(dir.path());
    let out = systemd_analyze()
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", &man)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{err}"
    );
    assert!(
        !err.contains("gasdtu.service"),
        "verify warned about the unit:\n{err}"
    );
}

#[test]
fn unit_security_exposure_is_below_2() {
    let version =
        String::from_utf8(systemd_analyze().arg("--version").output().unwrap().stdout).unwrap();
    let major: u32 = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the systemd version from {version:?}"));
    assert!(
        major >= 252,
        "`systemd-analyze security --offline` needs systemd >= 252, this is {major}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (unit, _) = testable_unit(dir.path());
    let out = systemd_analyze()
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for gasdtu.service"))
        .unwrap_or_else(|| panic!("no overall score in:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score from {line:?}"));
    assert!(score < 2.0, "exposure {score} (aim below 2.0):\n{text}");
    // docs/service.md quotes the score: keep it true.
    let doc = std::fs::read_to_string(repo_root().join("docs/service.md")).unwrap();
    assert!(
        doc.contains(&format!("exposure level {score:.1}")),
        "docs/service.md must quote `exposure level {score:.1}`"
    );
}

#[test]
fn unit_has_the_contract_settings() {
    let text = unit_text();
    // In [Unit]: in [Service] systemd would ignore it (with a warning verify does not fail on).
    assert_eq!(
        unit_values_in(&text, "Unit", "StartLimitIntervalSec"),
        ["0"],
        "[Unit] StartLimitIntervalSec="
    );
    assert_eq!(
        unit_values_in(&text, "Install", "WantedBy"),
        ["multi-user.target"]
    );
    // The uplink needs the network up (lintian and systemd.special(7)): ordered after and
    // pulling in network-online.target.
    let after = unit_values_in(&text, "Unit", "After").join(" ");
    assert!(
        after
            .split_whitespace()
            .any(|u| u == "network-online.target"),
        "After={after}"
    );
    assert_eq!(
        unit_values_in(&text, "Unit", "Wants"),
        ["network-online.target"]
    );
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Restart", "always"),
        ("WatchdogSec", "60"),
        ("User", "gasdtu"),
        ("SupplementaryGroups", "dialout"),
        ("StateDirectory", "gasdtu"),
        ("RuntimeDirectory", "gasdtu"),
        ("ConfigurationDirectory", "gasdtu"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("DevicePolicy", "closed"),
        ("MemoryMax", "64M"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(unit_values(&text, key), [want], "{key}=");
    }
    let devices = unit_values(&text, "DeviceAllow");
    assert!(
        devices
            .iter()
            .all(|d| d.starts_with("char-tty") && d.ends_with(" rw")),
        "serial devices only: {devices:?}"
    );
}

#[test]
fn unit_commands_use_real_flags_and_the_example_config_passes_the_start_check() {
    let text = unit_text();
    let example = repo_root().join("configs/gasdtu.toml");
    // ExecStartPre, with the example config in place of /etc/gasdtu/gasdtu.toml.
    let pre = unit_values(&text, "ExecStartPre");
    assert_eq!(pre.len(), 1);
    let args: Vec<&str> = pre[0].split_whitespace().collect();
    assert_eq!(args[0], "/usr/bin/gasdtu");
    let out = Command::new(gasdtu())
        .args(args[1..].iter().map(|a| {
            if *a == "/etc/gasdtu/gasdtu.toml" {
                example.display().to_string()
            } else {
                a.to_string()
            }
        }))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the example config must pass the unit's start check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // ExecStart: every flag parses (an unreadable config then refuses to start, exit 2).
    let start = unit_values(&text, "ExecStart");
    assert_eq!(start.len(), 1);
    let args: Vec<String> = start[0]
        .split_whitespace()
        .skip(1)
        .map(|a| a.replace("/etc/gasdtu/gasdtu.toml", "/nonexistent/gasdtu.toml"))
        .collect();
    let out = Command::new(gasdtu()).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to start"),
        "the unit's ExecStart arguments must parse: {err}"
    );
}

#[test]
fn maintainer_scripts_are_valid_posix_sh() {
    for name in ["postinst", "prerm", "postrm"] {
        let path = repo_root().join("packaging").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        // dpkg executes the file itself: the interpreter line decides the shell.
        assert!(text.starts_with("#!/bin/sh\n"), "{name}: #!/bin/sh");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert!(mode & 0o111 != 0, "{name} must be executable");
        for sh in ["sh", "dash", "bash"] {
            let Ok(out) = Command::new(sh).arg("-n").arg(&path).output() else {
                assert_ne!(sh, "sh", "no sh?");
                continue;
            };
            assert!(
                out.status.success(),
                "{sh} -n {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
