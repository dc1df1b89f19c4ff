//! Config install, confirm and rollback on real files (remote::install with remote::confirm):
//! the records, history and pushed profiles an install leaves; confirm, rollback, local edits,
//! refused requests and damaged records; and the crash test: a child process (this test
//! binary, re-run with `GASDTU_TEST_CRASH_AT=<step>`) aborts (a real crash, SIGABRT) after
//! each step of an install, a rollback and a confirmation, then `recover()` in the parent must
//! leave the old or the new config in force byte for byte, the profiles that belong to it
//! (checked through the real config loader), and the right verdict.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use gasdtu::gateway::push::owed_report;
use gasdtu::remote::confirm::{Action, Input, Machine, Now, Reason, MAX_PENDING_STARTS};
use gasdtu::remote::install::{
    sha256_hex, ConfigStatus, InstallError, InstallRequest, Installer, OwedStatus, Recovery,
    Source, Step, INTERRUPTED, LOCAL_EDIT_AT_START,
};

/// A profile `id` (the built-in pt-float, renamed) whose pressure register is at `address`.
fn profile(id: &str, address: u16) -> String {
    let text = gasdtu::config::profiles::builtin()
        .iter()
        .find(|(i, _)| *i == "pt-float")
        .map(|(_, t)| *t)
        .unwrap_or_default();
    text.replace("id = \"pt-float\"", &format!("id = \"{id}\""))
        .replace("address = 2\n", &format!("address = {address}\n"))
}

/// A config on `state` whose device uses profile `meter` (and `extra` when `with_extra`).
fn config(state: &Path, unit: u8, with_extra: bool) -> String {
    let mut s = format!(
        "[gateway]\nid = \"gw-1\"\nstate_dir = \"{}\"\nprofile_dirs = []\n\n[buses.t]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\n\n[devices.m]\nbus = \"t\"\nunit = {unit}\nprofile = \"meter\"\n",
        state.display()
    );
    if with_extra {
        s.push_str("\n[devices.x]\nbus = \"t\"\nunit = 99\nprofile = \"extra\"\n");
    }
    s
}

struct Site {
    /// The temp dir owning `root` (none in the crash child: the parent owns it).
    _dir: Option<tempfile::TempDir>,
    root: PathBuf,
    config: PathBuf,
    state: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        Site::at(Some(dir), root)
    }
    fn at(dir: Option<tempfile::TempDir>, root: PathBuf) -> Site {
        let config = root.join("etc").join("gasdtu.toml");
        let state = root.join("state");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        Site {
            _dir: dir,
            root,
            config,
            state,
        }
    }
    fn installer(&self) -> Installer {
        Installer::new(&self.config, &self.state, 3)
    }
    /// The profile set `<state>/profiles` links to.
    fn link_target(&self) -> Option<String> {
        std::fs::read_link(self.state.join("profiles"))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().to_string()))
    }
    fn read(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap()
    }
    /// The pressure register of device `m` and whether `x` exists, through the real loader.
    fn loaded(&self) -> (u16, bool) {
        let l = gasdtu::config::load_file(&self.config)
            .unwrap_or_else(|e| panic!("the config in force must load: {e}"));
        let m = l.config.devices.iter().find(|d| d.name == "m").unwrap();
        let p = m.points.iter().find(|p| p.name == "pressure").unwrap();
        (p.address, l.config.devices.iter().any(|d| d.name == "x"))
    }
}

/// Old state: config A (unit 1) confirmed with profile `meter` at address 2 pushed.
fn old_state(site: &Site) -> String {
    let a = config(&site.state, 1, false);
    std::fs::write(&site.config, "# first local config\n").unwrap();
    std::fs::set_permissions(&site.config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let i = site.installer();
    assert_eq!(i.recover().unwrap(), Recovery::Clean);
    i.install(&push("v1", &a, &[("meter", profile("meter", 2))]), i64::MAX)
        .unwrap();
    i.confirm().unwrap();
    let owed = i
        .owed()
        .unwrap()
        .and_then(|c| c.owed)
        .expect("applied owed");
    assert!(i.settle(&owed).unwrap());
    a
}

/// The report the running record owes: (status, push version, push sha256, reason).
fn owed(site: &Site) -> Option<(OwedStatus, String, String, Option<String>)> {
    site.installer()
        .owed()
        .unwrap()
        .and_then(|c| c.owed)
        .map(|o| (o.status, o.push_version, o.push_sha256, o.reason))
}

/// Settle what is owed; then nothing is owed, also after another start.
fn settle_all(site: &Site) {
    let i = site.installer();
    if let Some(o) = i.owed().unwrap().and_then(|c| c.owed) {
        assert!(i.settle(&o).unwrap());
        assert!(!i.settle(&o).unwrap(), "settled once");
    }
    assert_eq!(owed(site), None);
    let _ = site.installer().recover().unwrap();
    assert_eq!(owed(site), None, "a start after the report owes nothing");
}

fn push(version: &str, config: &str, profiles: &[(&str, String)]) -> InstallRequest {
    InstallRequest {
        version: version.to_string(),
        config: config.to_string(),
        profiles: profiles
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
    }
}

/// The new push: config B (unit 2, device x) with `meter` at address 40 and a new `extra`.
fn new_push(site: &Site) -> InstallRequest {
    push(
        "v2",
        &config(&site.state, 2, true),
        &[
            ("meter", profile("meter", 40)),
            ("extra", profile("extra", 7)),
        ],
    )
}

// ---- the crash test ----

const ENV_STEP: &str = "GASDTU_TEST_CRASH_AT";
const ENV_OP: &str = "GASDTU_TEST_CRASH_OP";
const ENV_ROOT: &str = "GASDTU_TEST_CRASH_ROOT";

/// Not a test of its own: the entry point of the crash test's child process. Without the
/// environment of `crash_at` it returns at once.
#[test]
fn crash_child_entry() {
    let (Ok(step), Ok(op), Ok(root)) = (
        std::env::var(ENV_STEP),
        std::env::var(ENV_OP),
        std::env::var(ENV_ROOT),
    ) else {
        return;
    };
    let step = Step::parse(&step).expect("a step name");
    let site = Site::at(None, PathBuf::from(root));
    let i = site.installer().with_hook(Box::new(move |s| {
        if s == step {
            std::process::abort();
        }
    }));
    match op.as_str() {
        "install" => {
            i.install(&new_push(&site), i64::MAX).unwrap();
        }
        "install-profiles-only" => {
            let same = site.read();
            i.install(
                &push("v2", &same, &[("meter", profile("meter", 40))]),
                i64::MAX,
            )
            .unwrap();
        }
        "rollback" => {
            i.rollback("test rollback").unwrap();
        }
        "confirm" => i.confirm().unwrap(),
        _ => panic!("unknown op"),
    }
    // Reaching here means the step was never taken: the parent fails on the exit status.
}

/// Run `op` in a child that aborts after `step`; the child must die of SIGABRT.
fn crash_at(site: &Site, op: &str, step: Step) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_STEP, step.name())
        .env(ENV_OP, op)
        .env(ENV_ROOT, &site.root)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{op} at {step:?}: the child must crash there: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Old or new, never a mix: the config's bytes, the loader's view of its profiles, the
/// running record and the profile link agree.
fn assert_consistent(site: &Site, old: &str, new: &str) -> bool {
    let text = site.read();
    let is_new = text == new;
    assert!(
        is_new || text == old,
        "config is neither old nor new:\n{text}"
    );
    let (address, has_x) = site.loaded();
    if is_new {
        assert_eq!((address, has_x), (40, true), "new config with old profiles");
    } else {
        assert_eq!((address, has_x), (2, false), "old config with new profiles");
        assert!(!site.state.join("profiles/extra.toml").exists());
    }
    let running = site
        .installer()
        .running()
        .unwrap()
        .expect("a running record");
    assert_eq!(running.sha256, sha256_hex(text.as_bytes()));
    assert_eq!(running.profiles, site.link_target());
    is_new
}

#[test]
fn a_crash_after_any_install_step_leaves_old_or_new_never_a_mix() {
    for &step in Step::INSTALL {
        let site = Site::new();
        let old = old_state(&site);
        let new = new_push(&site).config;
        crash_at(&site, "install", step);
        let verdict = site.installer().recover().unwrap();
        let is_new = assert_consistent(&site, &old, &new);
        let committed = Step::INSTALL.iter().position(|s| *s == step).unwrap()
            >= Step::INSTALL
                .iter()
                .position(|s| *s == Step::ConfigRenamed)
                .unwrap();
        assert_eq!(is_new, committed, "{step:?}");
        match verdict {
            Recovery::Pending(p) if committed => {
                assert_eq!((p.version.as_str(), p.restarts), ("v2", 1), "{step:?}");
                assert_eq!(p.previous_version, "v1");
                let r = site.installer().running().unwrap().unwrap();
                assert_eq!(r.status, ConfigStatus::PendingConfirm);
                assert_eq!(
                    owed(&site),
                    None,
                    "{step:?}: still pending, nothing to report"
                );
            }
            // Before the intent was recorded nothing happened (a stray history copy at
            // most): the push was not acknowledged, the broker delivers it again.
            Recovery::Clean if step == Step::HistoryWritten || step == Step::ProfilesStaged => {
                assert_eq!(site.installer().pending().unwrap(), None);
                let r = site.installer().running().unwrap().unwrap();
                assert_eq!(
                    (r.version.as_str(), r.status),
                    ("v1", ConfigStatus::Applied)
                );
                assert_eq!(owed(&site), None, "{step:?}");
            }
            Recovery::Interrupted { version } if !committed => {
                assert_eq!(version, "v2");
                assert_eq!(site.installer().pending().unwrap(), None);
                let r = site.installer().running().unwrap().unwrap();
                assert_eq!(
                    (r.version.as_str(), r.status),
                    ("v1", ConfigStatus::Applied)
                );
                // The refusal is owed, with the push's sha256, until it is queued.
                assert_eq!(
                    owed(&site),
                    Some((
                        OwedStatus::Rejected,
                        "v2".into(),
                        sha256_hex(new.as_bytes()),
                        Some(INTERRUPTED.into())
                    )),
                    "{step:?}"
                );
                let (body, _, _) = owed_report(&r).unwrap();
                assert_eq!(
                    (&body["status"], &body["push"]["version"], &body["version"]),
                    (&"rejected".into(), &"v2".into(), &"v1".into())
                );
                settle_all(&site);
            }
            other => panic!("{step:?}: wrong verdict {other:?}"),
        }
        // Whatever happened, the gateway can go on: a rollback of a pending push, or a new
        // install of an interrupted one, both work and stay consistent.
        if committed {
            let rb = site.installer().rollback("after crash").unwrap();
            assert_eq!(rb.version, "v1");
            assert!(!assert_consistent(&site, &old, &new));
        } else {
            site.installer()
                .install(&new_push(&site), i64::MAX)
                .unwrap();
            assert!(assert_consistent(&site, &old, &new));
        }
        // No temp files or unused profile sets left behind.
        let sets: Vec<_> = std::fs::read_dir(site.state.join("profiles.d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(sets.len() <= 2, "{step:?}: {sets:?}");
        assert!(!site
            .config
            .with_file_name(".gasdtu.toml.gasdtu-tmp")
            .exists());
    }
}

/// A push whose config is byte-identical to the running one and only changes a profile: the
/// profile link alone tells old from new, and still never mixes with the verdict.
#[test]
fn a_crash_during_a_profiles_only_push_is_told_apart_by_the_link() {
    for &step in Step::INSTALL {
        let site = Site::new();
        let old = old_state(&site);
        crash_at(&site, "install-profiles-only", step);
        let verdict = site.installer().recover().unwrap();
        assert_eq!(site.read(), old, "{step:?}");
        let (address, _) = site.loaded();
        let running = site.installer().running().unwrap().unwrap();
        match verdict {
            Recovery::Pending(p) => {
                assert_eq!(address, 40, "{step:?}");
                assert_eq!((p.version.as_str(), running.version.as_str()), ("v2", "v2"));
            }
            Recovery::Interrupted { .. } | Recovery::Clean => {
                assert_eq!(address, 2, "{step:?}");
                assert_eq!(running.version, "v1", "{step:?}");
            }
            other => panic!("{step:?}: {other:?}"),
        }
        assert_eq!(running.profiles.as_deref(), site.link_target().as_deref());
    }
}

#[test]
fn a_crash_after_any_rollback_step_completes_the_rollback() {
    for &step in Step::ROLLBACK {
        let site = Site::new();
        let old = old_state(&site);
        let new = new_push(&site).config;
        site.installer()
            .install(&new_push(&site), i64::MAX)
            .unwrap();
        crash_at(&site, "rollback", step);
        let verdict = site.installer().recover().unwrap();
        assert!(!assert_consistent(&site, &old, &new), "{step:?}: old again");
        match verdict {
            Recovery::RolledBack(rb) if step != Step::RollbackPendingRemoved => {
                assert_eq!(rb.version, "v1");
                assert_eq!(rb.dropped_version, "v2");
                assert_eq!(rb.reason, "test rollback");
            }
            Recovery::Clean if step == Step::RollbackPendingRemoved => {}
            other => panic!("{step:?}: wrong verdict {other:?}"),
        }
        // Wherever the crash came, the rolled_back report is owed until it is queued.
        assert_eq!(
            owed(&site),
            Some((
                OwedStatus::RolledBack,
                "v2".into(),
                sha256_hex(new.as_bytes()),
                Some("test rollback".into())
            )),
            "{step:?}"
        );
        let r = site.installer().running().unwrap().unwrap();
        assert_eq!(
            (r.version.as_str(), r.status, r.source, r.reason.as_deref()),
            (
                "v1",
                ConfigStatus::RolledBack,
                Source::Rollback,
                Some("test rollback")
            ),
            "{step:?}"
        );
        assert_eq!(site.installer().pending().unwrap(), None);
    }
}

#[test]
fn a_crash_after_any_confirm_step_keeps_the_new_config() {
    for &step in Step::CONFIRM {
        let site = Site::new();
        let old = old_state(&site);
        let new = new_push(&site).config;
        site.installer()
            .install(&new_push(&site), i64::MAX)
            .unwrap();
        crash_at(&site, "confirm", step);
        assert_eq!(site.installer().recover().unwrap(), Recovery::Clean);
        assert!(assert_consistent(&site, &old, &new));
        let r = site.installer().running().unwrap().unwrap();
        assert_eq!(
            (r.version.as_str(), r.status),
            ("v2", ConfigStatus::Applied)
        );
        assert_eq!(site.installer().pending().unwrap(), None);
        // The crash came before the `applied` report was queued: it is owed, also when the
        // pending record was gone and current.json still said pending_confirm.
        assert_eq!(
            owed(&site),
            Some((
                OwedStatus::Applied,
                "v2".into(),
                sha256_hex(new.as_bytes()),
                None
            )),
            "{step:?}"
        );
        let (body, ev, _) = owed_report(&r).unwrap();
        assert_eq!(
            (&body["status"], &body["push"]["version"], &body["version"]),
            (&"applied".into(), &"v2".into(), &"v2".into())
        );
        assert_eq!(
            (&ev["event"], &ev["status"]),
            (&"config_push".into(), &"applied".into())
        );
        // A second start before the report went out still owes it.
        assert_eq!(site.installer().recover().unwrap(), Recovery::Clean);
        assert!(owed(&site).is_some(), "{step:?}");
        settle_all(&site);
    }
}

// ---- behaviour on real files ----

#[test]
fn install_keeps_history_records_pending_and_confirm_makes_it_applied() {
    let site = Site::new();
    let old = old_state(&site);
    let i = site.installer();
    let p = new_push(&site);
    let done = i.install(&p, 1_800_000_000_000).unwrap();
    assert_eq!(done.previous_version, "v1");
    assert_eq!(done.sha256, sha256_hex(p.config.as_bytes()));
    assert_eq!(std::fs::read_to_string(&done.history).unwrap(), old);
    assert_eq!(site.read(), p.config);
    // The config file keeps its mode; the records are private.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&site.config), 0o640);
    assert_eq!(mode(&site.state.join("config/pending.json")), 0o600);
    assert_eq!(mode(&done.history), 0o600);
    assert_eq!(mode(&site.state.join("profiles/extra.toml")), 0o640);
    let pending = i.pending().unwrap().unwrap();
    assert_eq!(pending.confirm_by_ms, 1_800_000_000_000);
    assert_eq!(pending.restarts, 0);
    assert!(matches!(
        i.install(&new_push(&site), i64::MAX),
        Err(InstallError::AlreadyPending { version }) if version == "v2"
    ));
    i.confirm().unwrap();
    let r = i.running().unwrap().unwrap();
    assert_eq!(
        (r.version.as_str(), r.status, r.source),
        ("v2", ConfigStatus::Applied, Source::Push)
    );
    assert!(matches!(i.confirm(), Err(InstallError::NotPending)));
    assert!(matches!(i.rollback("x"), Err(InstallError::NotPending)));
    assert_eq!(site.loaded(), (40, true));
}

#[test]
fn history_keeps_the_last_n_with_their_version_labels() {
    let site = Site::new();
    old_state(&site);
    let i = site.installer(); // keep 3
    for n in 2..=6 {
        let c = config(&site.state, n, false);
        i.install(&push(&format!("v{n}"), &c, &[]), i64::MAX)
            .unwrap();
        i.confirm().unwrap();
    }
    let names: Vec<String> = i
        .history()
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        ["000004-v3.toml", "000005-v4.toml", "000006-v5.toml"]
    );
    // A push without profiles keeps the profiles in force.
    assert_eq!(site.loaded(), (2, false));
}

#[test]
fn rollback_restores_config_and_profiles_and_records_the_reason() {
    let site = Site::new();
    let old = old_state(&site);
    let i = site.installer();
    i.install(&new_push(&site), i64::MAX).unwrap();
    assert_eq!(site.loaded(), (40, true));
    let rb = i.rollback("no broker").unwrap();
    assert_eq!(
        (rb.version.as_str(), rb.dropped_version.as_str()),
        ("v1", "v2")
    );
    assert_eq!(site.read(), old);
    assert_eq!(site.loaded(), (2, false));
    let r = i.running().unwrap().unwrap();
    assert_eq!(r.reason.as_deref(), Some("no broker"));
    assert_eq!(r.status, ConfigStatus::RolledBack);
    // Unused profile sets are gone: only the one in force is left.
    assert_eq!(
        std::fs::read_dir(site.state.join("profiles.d"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn the_first_pushed_profiles_are_removed_by_a_rollback() {
    let site = Site::new();
    // A gateway whose `meter` profile comes from its own profile_dirs, none pushed yet.
    let etc = site.root.join("etc");
    std::fs::write(etc.join("meter.toml"), profile("meter", 3)).unwrap();
    let local = config(&site.state, 1, false).replace(
        "profile_dirs = []",
        &format!("profile_dirs = [\"{}\"]", etc.display()),
    );
    std::fs::write(&site.config, &local).unwrap();
    let i = site.installer();
    assert_eq!(i.recover().unwrap(), Recovery::Clean);
    assert_eq!(site.loaded(), (3, false));
    let pushed = push("v1", &local, &[("meter", profile("meter", 40))]);
    i.install(&pushed, i64::MAX).unwrap();
    assert_eq!(site.loaded(), (40, false));
    i.rollback("test").unwrap();
    assert_eq!(site.read(), local);
    assert_eq!(site.link_target(), None);
    assert!(!site.state.join("profiles").exists());
    assert_eq!(site.loaded(), (3, false));
    assert_eq!(
        std::fs::read_dir(site.state.join("profiles.d"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_local_edit_while_pending_wins_and_is_reported() {
    let site = Site::new();
    old_state(&site);
    let i = site.installer();
    i.install(&new_push(&site), i64::MAX).unwrap();
    let local = config(&site.state, 7, true);
    std::fs::write(&site.config, &local).unwrap();
    assert!(matches!(i.confirm(), Err(InstallError::LocalEdit { .. })));
    assert!(matches!(
        i.rollback("x"),
        Err(InstallError::LocalEdit { .. })
    ));
    assert_eq!(
        i.recover().unwrap(),
        Recovery::LocalEdit {
            dropped_version: "v2".into()
        }
    );
    assert_eq!(site.read(), local);
    assert_eq!(i.pending().unwrap(), None);
    let r = i.running().unwrap().unwrap();
    assert_eq!((r.version.as_str(), r.source), ("local", Source::Local));
    assert_eq!(r.sha256, sha256_hex(local.as_bytes()));
    let (body, _, _) = owed_report(&r).unwrap();
    assert_eq!(
        (&body["status"], &body["push"]["version"], &body["version"]),
        (&"rolled_back".into(), &"v2".into(), &"local".into())
    );
    assert_eq!(body["reason"], LOCAL_EDIT_AT_START);
    settle_all(&site);
    // Nothing pending now, and an edit between runs is recorded as local too.
    std::fs::write(&site.config, config(&site.state, 8, false)).unwrap();
    assert_eq!(i.recover().unwrap(), Recovery::Clean);
    assert_eq!(
        i.running().unwrap().unwrap().sha256,
        sha256_hex(config(&site.state, 8, false).as_bytes())
    );
}

#[test]
fn a_local_edit_while_running_takes_over_from_the_pending_push() {
    let site = Site::new();
    old_state(&site);
    let i = site.installer();
    i.install(&new_push(&site), i64::MAX).unwrap();
    // The file is still the push: nothing to take over (a SIGHUP without an edit).
    assert_eq!(i.take_local_edit("edited").unwrap(), None);
    assert!(i.pending().unwrap().is_some());
    let local = config(&site.state, 7, true);
    std::fs::write(&site.config, &local).unwrap();
    // The deadline's rollback refuses to overwrite the edit and leaves no rollback mark...
    assert!(matches!(
        i.rollback("deadline"),
        Err(InstallError::LocalEdit { .. })
    ));
    // ...so the edit can take over: pending dropped, the file recorded as local, untouched.
    assert_eq!(i.take_local_edit("edited").unwrap(), Some("v2".to_string()));
    assert_eq!(i.pending().unwrap(), None);
    assert_eq!(site.read(), local);
    let r = i.running().unwrap().unwrap();
    assert_eq!((r.version.as_str(), r.source), ("local", Source::Local));
    assert_eq!(r.sha256, sha256_hex(local.as_bytes()));
    assert_eq!(
        owed(&site).map(|o| (o.0, o.1, o.3)),
        Some((OwedStatus::RolledBack, "v2".into(), Some("edited".into())))
    );
    assert_eq!(i.take_local_edit("edited").unwrap(), None, "only once");
    assert_eq!(i.recover().unwrap(), Recovery::Clean);
    settle_all(&site);
}

#[test]
fn a_crash_looping_config_rolls_back_on_the_third_start() {
    let site = Site::new();
    let old = old_state(&site);
    site.installer()
        .install(&new_push(&site), i64::MAX)
        .unwrap();
    for start in 1..=MAX_PENDING_STARTS {
        // A fresh process: recover, then resume the machine.
        let i = site.installer();
        let Recovery::Pending(p) = i.recover().unwrap() else {
            panic!("start {start}: still pending")
        };
        assert_eq!(p.restarts, start);
        let mut m = Machine::new();
        let now = Now {
            mono_ms: 0,
            wall_ms: gasdtu::time::now_ms(),
        };
        let actions = m.step(Input::Restarted {
            now,
            starts: p.restarts,
            confirm_by_ms: p.confirm_by_ms,
            window_ms: p.window_ms,
        });
        match actions.first() {
            Some(Action::Rollback(reason)) => {
                assert_eq!(start, MAX_PENDING_STARTS);
                assert_eq!(reason, &Reason::CrashLoop { starts: start });
                i.rollback(&reason.to_string()).unwrap();
            }
            _ => assert!(start < MAX_PENDING_STARTS, "start {start}: {actions:?}"),
        }
    }
    assert_eq!(site.read(), old);
    assert_eq!(site.installer().recover().unwrap(), Recovery::Clean);
    let r = site.installer().running().unwrap().unwrap();
    assert!(r.reason.unwrap().contains("crash loop"));
}

#[test]
fn bad_requests_are_refused_and_nothing_changes() {
    let site = Site::new();
    let old = old_state(&site);
    let i = site.installer();
    let many: Vec<(String, String)> = (0..33).map(|n| (format!("p{n}"), String::new())).collect();
    let cases = [
        push("", &old, &[]),
        push("local", &old, &[]),
        push("../x", &old, &[]),
        push(&"v".repeat(65), &old, &[]),
        push("v9", &old, &[("../meter", String::new())]),
        InstallRequest {
            version: "v9".into(),
            config: old.clone(),
            profiles: many,
        },
    ];
    for req in cases {
        let e = i.install(&req, i64::MAX).unwrap_err();
        assert!(matches!(e, InstallError::Invalid(_)), "{req:?}: {e}");
    }
    assert_eq!(site.read(), old);
    assert_eq!(i.pending().unwrap(), None);
    assert_eq!(i.history().unwrap().len(), 1);
}

#[test]
fn an_unmanaged_profiles_directory_refuses_pushed_profiles_only() {
    let site = Site::new();
    std::fs::write(&site.config, "# local\n").unwrap();
    std::fs::create_dir(site.state.join("profiles")).unwrap();
    std::fs::write(site.state.join("profiles/meter.toml"), profile("meter", 5)).unwrap();
    let i = site.installer();
    let e = i.install(&new_push(&site), i64::MAX).unwrap_err();
    assert!(
        matches!(&e, InstallError::ProfilesUnmanaged { path } if path.ends_with("profiles")),
        "{e}"
    );
    assert_eq!(site.read(), "# local\n");
    // Without profiles it installs, and rolls back, leaving the directory alone.
    i.install(&push("v1", &config(&site.state, 1, false), &[]), i64::MAX)
        .unwrap();
    assert_eq!(site.loaded(), (5, false));
    i.rollback("test").unwrap();
    assert_eq!(site.read(), "# local\n");
    assert!(site.state.join("profiles/meter.toml").is_file());
}

#[test]
fn damaged_records_and_history_are_named_and_change_nothing() {
    let site = Site::new();
    old_state(&site);
    let i = site.installer();
    let done = i.install(&new_push(&site), i64::MAX).unwrap();
    let new = site.read();
    // A history copy that no longer matches its sha256: no rollback to it.
    std::fs::write(&done.history, "# tampered\n").unwrap();
    let e = i.rollback("x").unwrap_err();
    assert!(
        matches!(&e, InstallError::Corrupt { path, .. } if *path == done.history),
        "{e}"
    );
    assert_eq!(site.read(), new);
    // A pending record that is not JSON.
    std::fs::write(site.state.join("config/pending.json"), "{oops").unwrap();
    let e = i.recover().unwrap_err();
    assert!(e.to_string().contains("pending.json"), "{e}");
    assert_eq!(site.read(), new);
    // An oversized record is refused, not read into memory.
    std::fs::write(
        site.state.join("config/pending.json"),
        vec![b' '; 70 * 1024],
    )
    .unwrap();
    assert!(i.recover().is_err());
}

#[test]
fn check_sees_pushed_profiles_first() {
    let site = Site::new();
    old_state(&site);
    site.installer()
        .install(&new_push(&site), i64::MAX)
        .unwrap();
    // `extra` exists only among the pushed profiles; the real binary finds it.
    let out = Command::new(env!("CARGO_BIN_EXE_gasdtu"))
        .arg("--config")
        .arg(&site.config)
        .arg("check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(site.state.join("profiles")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gasdtu"))
        .arg("--config")
        .arg(&site.config)
        .arg("check")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown profile \"extra\"")
            || String::from_utf8_lossy(&out.stdout).contains("unknown profile \"extra\"")
    );
}
