//! The maintainer scripts *run* in a scratch root (their absolute paths redirected into it,
//! stub `systemctl`, `deb-systemd-*`, `useradd`, `dpkg-statoverride`, ... on PATH recording
//! every call, the real `gasdtu check` on the config): user and directories, enable, start
//! only after a passing check, stop on remove, data kept on remove and deleted on purge; the
//! config created once from the shipped example (no conffile) and then left alone; purge
//! handing what stays in /etc/gasdtu to root before the user and group go; the shipped
//! example inert (`check`/`status` say it is not commissioned). The unit and the scripts'
//! syntax: tests/package.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::unit_file::*;
use common::*;

// ------------------------------------------- maintainer scripts, run in a scratch root

/// Absolute paths of the maintainer scripts that are redirected into the scratch root.
const REDIRECTED: [&str; 6] = [
    "/etc/gasdtu",
    "/usr/share/gasdtu",
    "/var/lib/gasdtu",
    "/run/gasdtu",
    "/run/systemd/system",
    "/usr/bin/gasdtu",
];
/// Absolute paths left alone: output redirection and an argument to the (stub) useradd.
const UNTOUCHED: [&str; 2] = ["/dev/null", "/usr/sbin/nologin"];

/// A stub command: appends `name args...` to `$CALLS`, then runs `body` (sh).
fn stub(bin: &Path, name: &str, body: &str) {
    let path = bin.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"{name} $*\" >> \"$CALLS\"\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// The real `name` from PATH, for the scratch PATH.
fn real(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

/// A scratch root for the maintainer scripts: a file tree standing in for /, a PATH holding
/// only stubs (and rm, rmdir, grep, mkdir), a user/group/stat-override database the stubs keep,
/// the real gasdtu binary as /usr/bin/gasdtu and the example config as the installed one.
struct Root {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
    db: PathBuf,
    calls: PathBuf,
}

struct Ran {
    code: Option<i32>,
    stderr: String,
    calls: Vec<String>,
}

impl Ran {
    /// The index of the first call starting with `prefix`.
    fn find(&self, prefix: &str) -> Option<usize> {
        self.calls.iter().position(|c| c.starts_with(prefix))
    }
    fn called(&self, prefix: &str) -> bool {
        self.find(prefix).is_some()
    }
}

impl Root {
    /// `systemd`: /run/systemd/system exists (booted with systemd); `deb_helpers`: the
    /// deb-systemd-helper/-invoke stubs exist (init-system-helpers installed).
    fn new(systemd: bool, deb_helpers: bool) -> Root {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let bin = dir.path().join("bin");
        let db = dir.path().join("db");
        for d in [&bin, &db] {
            std::fs::create_dir_all(d).unwrap();
        }
        for d in ["etc", "usr/bin", "usr/share/gasdtu", "var/lib", "run"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        if systemd {
            std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
        }
        std::os::unix::fs::symlink(gasdtu(), root.join("usr/bin/gasdtu")).unwrap();
        // The package ships the example here; postinst creates /etc/gasdtu/gasdtu.toml from it.
        std::fs::copy(
            repo_root().join("configs/gasdtu.toml"),
            root.join("usr/share/gasdtu/gasdtu.toml"),
        )
        .unwrap();
        // The host's users and groups the scripts may look up: dialout exists on Debian.
        std::fs::write(db.join("group"), "root:x:0:\ndialout:x:20:\n").unwrap();
        std::fs::write(db.join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(db.join("statoverride"), "").unwrap();
        // find, chown and chgrp are real: purge's ownership hand-over is checked on real files.
        for tool in [
            "rm", "rmdir", "grep", "mkdir", "cp", "cut", "find", "chown", "chgrp",
        ] {
            std::os::unix::fs::symlink(real(tool), bin.join(tool)).unwrap();
        }
        stub(&bin, "getent", r#"grep "^$2:" "$DB/$1" || exit 2"#);
        stub(
            &bin,
            "groupadd",
            r#"for a; do n=$a; done; echo "$n:x:999:" >> "$DB/group""#,
        );
        stub(
            &bin,
            "useradd",
            r#"for a; do n=$a; done; echo "$n:x:999:999::/nonexistent:/usr/sbin/nologin" >> "$DB/passwd""#,
        );
        for name in ["usermod", "userdel", "groupdel", "systemctl"] {
            stub(&bin, name, "");
        }
        stub(
            &bin,
            "dpkg-statoverride",
            r#"case "$1" in
--list) grep -qx "$2" "$DB/statoverride" ;;
--update) for a; do n=$a; done; echo "$n" >> "$DB/statoverride" ;;
esac"#,
        );
        // `install -d ... DIR`: the directory is made; `install ... SRC DEST`: the file is
        // copied (owner and mode are in the call log).
        stub(
            &bin,
            "install",
            r#"d=; src=; for a; do src=$n; n=$a; [ "$a" = -d ] && d=1; done
if [ -n "$d" ]; then mkdir -p "$n"; else cp "$src" "$n"; fi"#,
        );
        // `runuser -u USER -- CMD...`: runs CMD (as the test's user).
        stub(
            &bin,
            "runuser",
            r#"while [ "$1" != "--" ]; do shift; done; shift; exec "$@""#,
        );
        if deb_helpers {
            // Nothing enabled before: `was-enabled` answers no.
            stub(
                &bin,
                "deb-systemd-helper",
                r#"[ "$1 $2" = "--quiet was-enabled" ] && exit 1; exit 0"#,
            );
            stub(&bin, "deb-systemd-invoke", "");
        }
        let calls = dir.path().join("calls.log");
        Root {
            _dir: dir,
            root,
            bin,
            db,
            calls,
        }
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// A root-relative spelling of a path inside the scratch root, for the call log.
    fn unroot(&self, line: &str) -> String {
        line.replace(&self.root.display().to_string(), "")
    }

    /// The script with its absolute paths redirected into the root. Fails on an absolute
    /// path it does not know, so a new one can never reach the real system from this test.
    fn script(&self, name: &str) -> PathBuf {
        let mut text = std::fs::read_to_string(repo_root().join("packaging").join(name)).unwrap();
        let body: String = text
            .lines()
            .skip(1)
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for (i, _) in body.match_indices('/') {
            let before = body[..i].chars().next_back().unwrap_or(' ');
            if !matches!(before, ' ' | '=' | '"' | '\'' | '>') {
                continue;
            }
            let path: String = body[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | ';'))
                .collect();
            assert!(
                REDIRECTED
                    .iter()
                    .chain(UNTOUCHED.iter())
                    .any(|p| path.starts_with(p)),
                "{name} uses {path}, which this test does not redirect into its scratch root"
            );
        }
        for p in REDIRECTED {
            text = text.replace(p, &self.path(p).display().to_string());
        }
        let out = self.root.parent().unwrap().join(name);
        std::fs::write(&out, text).unwrap();
        out
    }

    /// Run a maintainer script as dpkg would (`sh script args`), with only the stubs on PATH.
    fn run(&self, name: &str, args: &[&str]) -> Ran {
        let _ = std::fs::remove_file(&self.calls);
        let out = Command::new(real("sh"))
            .arg(self.script(name))
            .args(args)
            .env_clear()
            .env("PATH", &self.bin)
            .env("CALLS", &self.calls)
            .env("DB", &self.db)
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .map(|l| self.unroot(l))
            .collect();
        Ran {
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            calls,
        }
    }

    fn break_config(&self) {
        std::fs::write(self.path("/etc/gasdtu/gasdtu.toml"), "[gateway\n").unwrap();
    }
}

const CHECK: &str =
    "runuser -u gasdtu -- /usr/bin/gasdtu check --quiet --config /etc/gasdtu/gasdtu.toml";

#[test]
fn postinst_fresh_install_creates_the_user_and_starts_after_a_passing_check() {
    let r = Root::new(true, true);
    let ran = r.run("postinst", &["configure", ""]);
    assert_eq!(ran.code, Some(0), "{}\n{:#?}", ran.stderr, ran.calls);
    let calls = &ran.calls;
    for want in [
        "groupadd --system gasdtu",
        "useradd --system --gid gasdtu --home-dir /var/lib/gasdtu --no-create-home --shell /usr/sbin/nologin --comment gasdtu DTU daemon gasdtu",
        "usermod --append --groups dialout gasdtu",
        "install -d -o root -g gasdtu -m 0750 /etc/gasdtu",
        "install -o root -g gasdtu -m 0640 /usr/share/gasdtu/gasdtu.toml /etc/gasdtu/gasdtu.toml",
        "install -d -o gasdtu -g gasdtu -m 0750 /var/lib/gasdtu",
        "deb-systemd-helper enable gasdtu.service",
        "systemctl daemon-reload",
    ] {
        assert!(calls.iter().any(|c| c == want), "no `{want}` in {calls:#?}");
    }
    assert!(r.path("/var/lib/gasdtu").is_dir());
    // The check ran (as the service user, on the file the unit reads), then the start.
    let check = ran
        .find(CHECK)
        .unwrap_or_else(|| panic!("no check in {calls:#?}"));
    let start = ran
        .find("deb-systemd-invoke start gasdtu.service")
        .unwrap_or_else(|| panic!("no start in {calls:#?}"));
    assert!(check < start, "start before the check: {calls:#?}");
    assert!(!ran.called("deb-systemd-invoke restart"), "{calls:#?}");
    let unit_conf = unit_values(&unit_text(), "ExecStart")[0]
        .split_whitespace()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .unwrap()
        .to_string();
    assert!(
        CHECK.ends_with(&format!("--config {unit_conf}")),
        "postinst checks a config the unit does not read ({unit_conf})"
    );

    // The config is the shipped example, and the engineer is told it idles until commissioned.
    assert_eq!(
        std::fs::read(r.path("/etc/gasdtu/gasdtu.toml")).unwrap(),
        std::fs::read(repo_root().join("configs/gasdtu.toml")).unwrap()
    );
    assert!(
        ran.stderr.contains("commissioned = true")
            && ran.stderr.contains("systemctl reload gasdtu"),
        "{}",
        ran.stderr
    );

    // Reconfigured later (same version): the user exists, nothing is re-added or re-created.
    let again = r.run("postinst", &["configure", "0.1.0"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    for not in [
        "groupadd",
        "useradd",
        "dpkg-statoverride",
        "install -o root",
    ] {
        assert!(!again.called(not), "`{not}` again: {:#?}", again.calls);
    }
}

#[test]
fn the_installed_config_is_created_once_and_then_is_the_engineers_file() {
    let r = Root::new(true, true);
    assert_eq!(r.run("postinst", &["configure", ""]).code, Some(0));
    let conf = r.path("/etc/gasdtu/gasdtu.toml");
    let edited = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("commissioned = false", "commissioned = true");
    std::fs::write(&conf, &edited).unwrap();
    // An upgrade that ships a changed example: the engineer's file stays as it is, no prompt
    // (it is not a conffile), and the service restarts with it.
    std::fs::write(
        r.path("/usr/share/gasdtu/gasdtu.toml"),
        "# a newer example\n[gateway]\nid = \"x\"\ncommissioned = false\n",
    )
    .unwrap();
    let ran = r.run("postinst", &["configure", "0.1.0"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    assert!(!ran.stderr.contains("created"), "{}", ran.stderr);
    assert!(
        ran.called("deb-systemd-invoke restart gasdtu.service"),
        "{:#?}",
        ran.calls
    );
    // Deleted by the engineer: the next configure brings the example back.
    std::fs::remove_file(&conf).unwrap();
    let ran = r.run("postinst", &["configure", "0.1.0"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(std::fs::read_to_string(&conf)
        .unwrap()
        .starts_with("# a newer example"));
}

/// `gasdtu check` of the shipped example passes (postinst and ExecStartPre start the service)
/// and says it is not commissioned; `gasdtu status` says the same.
#[test]
fn the_shipped_example_is_inert_and_check_and_status_say_so() {
    let example = repo_root().join("configs/gasdtu.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    assert!(
        text.contains("\ncommissioned = false\n"),
        "the example must not be commissioned"
    );
    let out = Command::new(gasdtu())
        .args(["check", "--quiet", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("NOT COMMISSIONED"), "{stdout}");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(gasdtu())
        .args(["status", "--config"])
        .arg(&example)
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("NOT COMMISSIONED"), "{stdout}");
}

#[test]
fn postinst_upgrade_restarts_only_with_a_config_that_passes_the_check() {
    let r = Root::new(true, true);
    assert_eq!(r.run("postinst", &["configure", ""]).code, Some(0));
    let ran = r.run("postinst", &["configure", "0.0.9"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.called("deb-systemd-invoke restart gasdtu.service"),
        "{:#?}",
        ran.calls
    );
    assert!(!ran.called("deb-systemd-invoke start"), "{:#?}", ran.calls);

    // A config that fails `gasdtu check`: enabled, neither started nor restarted, told why.
    r.break_config();
    let ran = r.run("postinst", &["configure", "0.0.9"]);
    assert_eq!(
        ran.code,
        Some(0),
        "a bad config must not fail the install: {}",
        ran.stderr
    );
    assert!(ran.called(CHECK), "{:#?}", ran.calls);
    assert!(
        ran.called("deb-systemd-helper enable gasdtu.service"),
        "{:#?}",
        ran.calls
    );
    assert!(!ran.called("deb-systemd-invoke"), "{:#?}", ran.calls);
    assert!(
        ran.stderr.contains("does not pass 'gasdtu check'")
            && ran.stderr.contains("systemctl restart gasdtu"),
        "what to do: {}",
        ran.stderr
    );
}

#[test]
fn postinst_without_deb_helpers_uses_systemctl_and_without_systemd_starts_nothing() {
    let r = Root::new(true, false);
    let ran = r.run("postinst", &["configure", ""]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.called("systemctl enable gasdtu.service"),
        "{:#?}",
        ran.calls
    );
    let check = ran.find(CHECK).unwrap();
    let start = ran.find("systemctl start gasdtu.service").unwrap();
    assert!(check < start, "{:#?}", ran.calls);

    // A chroot or a container without systemd: enabled, but no daemon-reload, check or start.
    let r = Root::new(false, true);
    let ran = r.run("postinst", &["configure", ""]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.called("deb-systemd-helper enable gasdtu.service"),
        "{:#?}",
        ran.calls
    );
    for not in ["systemctl", "deb-systemd-invoke", "runuser"] {
        assert!(
            !ran.called(not),
            "`{not}` without systemd: {:#?}",
            ran.calls
        );
    }
}

#[test]
fn maintainer_scripts_stop_on_errors_and_refuse_unknown_actions() {
    // set -e: a failing step (here the user cannot be created) fails the install, and the
    // service is not started.
    let r = Root::new(true, true);
    stub(&r.bin, "groupadd", "exit 1");
    let ran = r.run("postinst", &["configure", ""]);
    assert_ne!(
        ran.code,
        Some(0),
        "postinst went on after a failure: {:#?}",
        ran.calls
    );
    assert!(!ran.called("useradd"), "{:#?}", ran.calls);
    assert!(!ran.called("deb-systemd-invoke"), "{:#?}", ran.calls);

    let r = Root::new(true, true);
    for name in ["postinst", "prerm", "postrm"] {
        let ran = r.run(name, &["bogus-action"]);
        assert_eq!(ran.code, Some(1), "{name} bogus-action: {}", ran.stderr);
        assert!(
            ran.stderr.contains("unknown argument"),
            "{name}: {}",
            ran.stderr
        );
        assert!(
            ran.calls.is_empty(),
            "{name} bogus-action did {:#?}",
            ran.calls
        );
    }
}

#[test]
fn prerm_stops_the_service_on_remove_only() {
    let r = Root::new(true, true);
    let ran = r.run("prerm", &["remove"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.calls, ["deb-systemd-invoke stop gasdtu.service"]);
    // Upgrade: it keeps running, postinst restarts it.
    let ran = r.run("prerm", &["upgrade", "0.2.0"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.calls.is_empty(), "{:#?}", ran.calls);
    let r = Root::new(true, false);
    let ran = r.run("prerm", &["remove"]);
    assert_eq!(ran.calls, ["systemctl stop gasdtu.service"]);
}

#[test]
fn postrm_keeps_data_and_config_on_remove_and_deletes_them_on_purge() {
    let r = Root::new(true, true);
    assert_eq!(r.run("postinst", &["configure", ""]).code, Some(0));
    let buffer = r.path("/var/lib/gasdtu/gasdtu.db");
    std::fs::write(&buffer, "unsent readings").unwrap();
    std::fs::create_dir_all(r.path("/run/gasdtu")).unwrap();
    let own_profile = r.path("/etc/gasdtu/profiles/site-meter.toml");
    std::fs::write(&own_profile, "# the operator's own profile\n").unwrap();

    let ran = r.run("postrm", &["remove"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(buffer.is_file(), "remove deleted the buffer");
    assert!(
        r.path("/etc/gasdtu/gasdtu.toml").is_file(),
        "remove deleted the config"
    );
    assert!(
        ran.called("deb-systemd-helper mask gasdtu.service"),
        "{:#?}",
        ran.calls
    );
    assert!(
        !ran.called("userdel"),
        "remove keeps the user: {:#?}",
        ran.calls
    );

    // An install upgraded from a package that shipped the config as a conffile has the
    // ownership overrides of those days: purge removes them.
    std::fs::write(
        r.db.join("statoverride"),
        format!(
            "{}\n{}\n",
            r.path("/etc/gasdtu").display(),
            r.path("/etc/gasdtu/gasdtu.toml").display()
        ),
    )
    .unwrap();
    // Purge: the buffer, the runtime dir, the config, the overrides and the user go; the
    // operator's own profile and so /etc/gasdtu stay.
    let ran = r.run("postrm", &["purge"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(!r.path("/var/lib/gasdtu").exists(), "purge kept the buffer");
    assert!(!r.path("/run/gasdtu").exists(), "purge kept /run/gasdtu");
    assert!(
        !r.path("/etc/gasdtu/gasdtu.toml").exists(),
        "purge kept the config"
    );
    assert!(
        own_profile.is_file(),
        "purge deleted the operator's profile"
    );
    for want in [
        "deb-systemd-helper purge gasdtu.service",
        "dpkg-statoverride --remove /etc/gasdtu/gasdtu.toml",
        "dpkg-statoverride --remove /etc/gasdtu",
        "userdel gasdtu",
        "groupdel gasdtu",
    ] {
        assert!(
            ran.calls.iter().any(|c| c == want),
            "no `{want}` in {:#?}",
            ran.calls
        );
    }
    // With the profile gone too, /etc/gasdtu is removed.
    std::fs::remove_file(&own_profile).unwrap();
    let ran = r.run("postrm", &["purge"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        !r.path("/etc/gasdtu").exists(),
        "purge kept an empty /etc/gasdtu"
    );
}

/// Purge leaves nothing owned by the gasdtu uid or gid it frees: the next system user or group
/// created would get that number, and with it the operator's client key.
#[test]
fn purge_hands_files_left_in_etc_gasdtu_to_root_before_deleting_the_user() {
    use std::os::unix::fs::MetadataExt;
    // Real files with real owners: chown needs root (the suite runs as root, as CI does).
    assert!(
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false),
        "this test chowns files to the stub gasdtu uid/gid: run the suite as root"
    );
    let r = Root::new(true, true);
    assert_eq!(r.run("postinst", &["configure", ""]).code, Some(0));
    // The stub useradd/groupadd gave gasdtu uid 999 and gid 999 (see Root::new).
    let etc = r.path("/etc/gasdtu");
    let key = r.path("/etc/gasdtu/client.key");
    let profile = r.path("/etc/gasdtu/profiles/site.toml");
    let other = r.path("/etc/gasdtu/alice.notes");
    for f in [&key, &profile, &other] {
        std::fs::write(f, "secret\n").unwrap();
    }
    let own = |p: &Path, u: u32, g: u32| std::os::unix::fs::chown(p, Some(u), Some(g)).unwrap();
    own(&etc, 0, 999);
    own(&key, 0, 999); // the operator's key, readable by the service's group
    own(&profile, 999, 999);
    own(&other, 1234, 999); // someone else's file: only the group changes
    let ran = r.run("postrm", &["purge"]);
    assert_eq!(ran.code, Some(0), "{}\n{:#?}", ran.stderr, ran.calls);
    for (p, u, g) in [
        (&etc, 0, 0),
        (&key, 0, 0),
        (&profile, 0, 0),
        (&other, 1234, 0),
    ] {
        let m = std::fs::symlink_metadata(p).unwrap();
        assert_eq!((m.uid(), m.gid()), (u, g), "{}", p.display());
    }
    assert!(key.is_file(), "purge deleted the operator's key");
    // Before the user and group are deleted (the numbers are looked up by name).
    let userdel = ran.find("userdel gasdtu").unwrap();
    let groupdel = ran.find("groupdel gasdtu").unwrap();
    let lookup = ran.find("getent group gasdtu").unwrap();
    assert!(lookup < userdel && lookup < groupdel, "{:#?}", ran.calls);
}
