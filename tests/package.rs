//! The ingredients of the .deb and the unit, checked fast (no package build here: that is
//! packaging/build-deb and cross/build, run by hand): the systemd unit passes
//! `systemd-analyze verify` and rates below 2.0 in `systemd-analyze security --offline`; its
//! commands use flags the binary has and the example config passes its ExecStartPre check; the
//! maintainer scripts are valid POSIX sh; every asset in `[package.metadata.deb]` exists; every
//! subcommand and option has help text and the man page names every subcommand.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn unit_text() -> String {
    std::fs::read_to_string(repo_root().join("systemd/gasdtu.service")).unwrap()
}

/// Values of `key=` lines in the unit, in order.
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

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
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Restart", "always"),
        ("StartLimitIntervalSec", "0"),
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
    // The maintainer scripts check the same file the unit reads.
    let postinst = std::fs::read_to_string(repo_root().join("packaging/postinst")).unwrap();
    assert!(postinst.contains("CONF=/etc/gasdtu/gasdtu.toml"));
    assert!(start[0].contains("--config /etc/gasdtu/gasdtu.toml"));
}

#[test]
fn maintainer_scripts_are_valid_posix_sh() {
    for name in ["postinst", "prerm", "postrm"] {
        let path = repo_root().join("packaging").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{name}: #!/bin/sh");
        assert!(text.contains("\nset -e\n"), "{name}: set -e");
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
    let postinst = std::fs::read_to_string(repo_root().join("packaging/postinst")).unwrap();
    // Start only after a passing check; enable always; the user in dialout.
    let check = postinst
        .find("if config_ok; then")
        .expect("start guarded by check");
    let start = postinst.find("invoke start").unwrap();
    assert!(check < start);
    assert!(postinst.contains("usermod --append --groups dialout gasdtu"));
    let postrm = std::fs::read_to_string(repo_root().join("packaging/postrm")).unwrap();
    let remove = postrm.find("\nremove)").unwrap();
    let purge = postrm.find("\npurge)").unwrap();
    let rm = postrm.find("rm -rf /var/lib/gasdtu").unwrap();
    assert!(
        remove < purge && rm > purge,
        "data is deleted on purge only"
    );
    assert!(
        !postrm[remove..purge].contains("/var/lib/gasdtu"),
        "remove keeps the data"
    );
}

#[test]
fn deb_metadata_lists_assets_that_exist() {
    let root = repo_root();
    let cargo: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let deb = &cargo["package"]["metadata"]["deb"];
    assert_eq!(
        deb["depends"].as_str(),
        Some("$auto"),
        "libc only, found by cargo-deb"
    );
    assert_eq!(deb["maintainer-scripts"].as_str(), Some("packaging/"));
    let mut dests = Vec::new();
    for a in deb["assets"].as_array().unwrap() {
        let a = a.as_array().unwrap();
        let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
        dests.push(dest.to_string());
        if src == "target/release/gasdtu" {
            continue; // built by packaging/build-deb
        }
        let matches = if let Some((dir, pat)) = src.rsplit_once("/*") {
            std::fs::read_dir(root.join(dir))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(pat)
                })
                .count()
        } else {
            usize::from(root.join(src).is_file())
        };
        assert!(matches > 0, "asset {src} matches no file");
    }
    for want in [
        "usr/bin/",
        "usr/lib/systemd/system/",
        "etc/gasdtu/",
        "usr/share/gasdtu/profiles/",
        "usr/share/man/man1/",
    ] {
        assert!(dests.iter().any(|d| d == want), "no asset goes to {want}");
    }
    let conf: Vec<_> = deb["conf-files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(conf, ["/etc/gasdtu/gasdtu.toml"]);
}

/// Subcommand names from `gasdtu --help`.
fn subcommands() -> Vec<String> {
    let out = Command::new(gasdtu()).arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn help_is_complete_and_the_man_page_names_every_command() {
    let cmds = subcommands();
    assert!(cmds.len() >= 8, "{cmds:?}");
    let man = std::fs::read_to_string(repo_root().join("packaging/gasdtu.1")).unwrap();
    for c in &cmds {
        assert!(man.contains(&format!(".B {c}\n")), "man page lacks `{c}`");
        let out = Command::new(gasdtu()).arg(c).arg("-h").output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        // Short help: one line per option, `  -x, --flag <V>  description`.
        let undocumented: Vec<_> = text
            .lines()
            .skip_while(|l| !l.starts_with("Options:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter(|l| {
                let l = l.trim_start();
                // Flag and value name, then at least two spaces, then words.
                match l.split_once("  ") {
                    Some((_, rest)) => {
                        let d = rest.trim();
                        d.is_empty() || d.starts_with('[')
                    }
                    None => true,
                }
            })
            .collect();
        assert!(
            undocumented.is_empty(),
            "`gasdtu {c} -h`: options without help: {undocumented:?}"
        );
    }
}
