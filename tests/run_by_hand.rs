//! `gasdtu run` started by hand next to the service, the real binary each time: as root in the
//! service's state directory it refuses to create the store unless told to
//! (`--allow-root-store`); the root-owned database such a run leaves is refused to the service
//! user with the file, its owner and the `chown` that fixes it, and after that chown it
//! starts. A config with `commissioned = false` idles (no bus opened: nothing connects to the
//! device), `check`/`status` say so, and a reload that commissions it starts polling. A normal
//! user without a writable /run/gasdtu gets a status socket in $XDG_RUNTIME_DIR, said in the
//! log, where `gasdtu status` finds it. Relative `state_dir` resolves against the config's
//! directory throughout (the tests run elsewhere). These tests switch users: they need root.

mod common;

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const NOBODY: u32 = 65534;

fn assert_root() {
    assert_eq!(
        std::fs::metadata("/proc/self").map(|m| m.uid()).ok(),
        Some(0),
        "these tests run gasdtu as another user: run the suite as root, as CI does"
    );
}

/// A scratch site: a directory every user may enter, a config naming a relative state dir
/// (`state`, owned by `owner`) and one Modbus TCP device at `port`.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Site {
    fn new(owner: u32, port: u16, commissioned: bool) -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::chown(&state, Some(owner), Some(owner)).unwrap();
        let config = dir.path().join("gasdtu.toml");
        std::fs::write(&config, site_toml(port, commissioned)).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        Site { dir, config }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn run(&self, uid: Option<u32>, extra: &[&str]) -> Command {
        let mut c = Command::new(gasdtu());
        c.arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--poll-now")
            .args(extra)
            // Not the site's directory: a relative state_dir must not follow the cwd.
            .current_dir("/")
            .env("NO_COLOR", "1")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("NOTIFY_SOCKET");
        if let Some(u) = uid {
            c.uid(u).gid(u);
        }
        c
    }
}

fn site_toml(port: u16, commissioned: bool) -> String {
    format!(
        r#"[gateway]
id = "byhand"
commissioned = {commissioned}
state_dir = "state"
profile_dirs = []

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {port}
timeout = "300ms"

[devices.pt1]
bus = "lan"
unit = 1
poll = "1s"

[devices.pt1.points.pressure]
table = "holding"
address = 0
type = "u16"
"#
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Start `cmd`, wait for its `ready` log line, stop it with SIGTERM; returns the log.
fn start_and_stop(cmd: &mut Command) -> Vec<String> {
    let mut p = Proc::spawn(
        "gasdtu run",
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()),
    );
    let log = Lines::collect(p.child.stderr.take().unwrap());
    log.wait_line("the ready line", Duration::from_secs(20), |l| {
        l.contains("ready")
    });
    sigterm(&p.child);
    let st = wait_exit(&mut p.child, Duration::from_secs(20)).expect("exits after SIGTERM");
    assert!(st.success(), "{st:?}\n{}", log.snapshot().join("\n"));
    log.snapshot()
}

#[test]
fn root_is_refused_in_the_services_state_dir_and_the_service_is_told_how_to_fix_root_files() {
    assert_root();
    let device = TcpListener::bind("127.0.0.1:0").unwrap();
    let site = Site::new(NOBODY, device.local_addr().unwrap().port(), true);
    let db = site.state().join("gasdtu.db");
    let sock = |name: &str| site.dir.path().join(name).display().to_string();

    // Root, by hand, in the directory the service (here: nobody) owns: refused, nothing made.
    let out = site
        .run(None, &["--socket", &sock("root.sock")])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("refusing to open the store as root")
            && t.contains(&site.state().display().to_string())
            && t.contains("--allow-root-store")
            && t.contains("runuser -u nobody"),
        "{t}"
    );
    assert!(!db.exists(), "the refused run created {}", db.display());

    // Told to: it runs, and leaves a root-owned database behind.
    start_and_stop(&mut site.run(
        None,
        &["--allow-root-store", "--socket", &sock("root.sock")],
    ));
    assert_eq!(std::fs::metadata(&db).unwrap().uid(), 0);

    // The service user cannot write it: refused at start with the file, owner and the fix.
    let out = site
        .run(Some(NOBODY), &["--socket", &sock("svc.sock")])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&db.display().to_string()) && t.contains("owner root (0)"),
        "{t}"
    );
    let fix = t
        .split("Fix: ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .unwrap_or_else(|| panic!("no `Fix: ` in {t}"));
    assert!(fix.starts_with("chown nobody:"), "{fix}");

    // The fix it printed, as root would type it: then the service starts on its store.
    let args: Vec<&str> = fix.split_whitespace().collect();
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{fix}");
    start_and_stop(&mut site.run(Some(NOBODY), &["--socket", &sock("svc.sock")]));
    assert_eq!(std::fs::metadata(&db).unwrap().uid(), NOBODY);
}

#[test]
fn a_config_not_commissioned_idles_until_a_reload_commissions_it() {
    assert_root();
    let device = TcpListener::bind("127.0.0.1:0").unwrap();
    device.set_nonblocking(true).unwrap();
    let site = Site::new(0, device.local_addr().unwrap().port(), false);
    let socket = site.dir.path().join("s.sock");

    // `check` passes (the package starts the service) and says it idles.
    let out = Command::new(gasdtu())
        .args(["check", "--quiet", "--config"])
        .arg(&site.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("NOT COMMISSIONED"), "{}", text(&out));

    let mut p = Proc::spawn(
        "gasdtu run",
        site.run(None, &["--socket", socket.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let log = Lines::collect(p.child.stderr.take().unwrap());
    log.wait_line("the idle line", Duration::from_secs(20), |l| {
        l.contains("NOT COMMISSIONED")
    });
    // `status` says so too (the idle daemon has no socket: exit 3).
    let out = Command::new(gasdtu())
        .args(["status", "--config"])
        .arg(&site.config)
        .arg("--socket")
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("NOT COMMISSIONED"), "{}", text(&out));
    // --poll-now would have connected at once: an idle daemon opened no bus, made no store.
    assert!(
        matches!(device.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the idle daemon connected to the device"
    );
    assert!(!site.state().join("gasdtu.db").exists());

    // Commissioned and reloaded: it starts and polls the device.
    std::fs::write(
        &site.config,
        site_toml(device.local_addr().unwrap().port(), true),
    )
    .unwrap();
    signal(p.child.id(), "HUP");
    log.wait_line("commissioned, starting", Duration::from_secs(20), |l| {
        l.contains("commissioned, starting")
    });
    wait_for(
        "a connection to the device",
        Duration::from_secs(20),
        || device.accept().ok(),
    );
    assert!(site.state().join("gasdtu.db").is_file());
    sigterm(&p.child);
    wait_exit(&mut p.child, Duration::from_secs(20)).expect("exits after SIGTERM");
}

#[test]
fn a_normal_user_without_run_gasdtu_gets_a_socket_in_xdg_runtime_dir_that_status_finds() {
    assert_root();
    let device = TcpListener::bind("127.0.0.1:0").unwrap();
    let site = Site::new(NOBODY, device.local_addr().unwrap().port(), true);
    let xdg = site.dir.path().join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    std::os::unix::fs::chown(&xdg, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();

    let mut cmd = site.run(Some(NOBODY), &[]);
    cmd.env("XDG_RUNTIME_DIR", &xdg);
    let mut p = Proc::spawn(
        "gasdtu run",
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()),
    );
    let log = Lines::collect(p.child.stderr.take().unwrap());
    log.wait_line("ready", Duration::from_secs(20), |l| l.contains("ready"));
    let socket = xdg.join("gasdtu.sock");
    let said: Vec<String> = log
        .snapshot()
        .into_iter()
        .filter(|l| l.contains("status socket in $XDG_RUNTIME_DIR"))
        .collect();
    assert_eq!(said.len(), 1, "{:#?}", log.snapshot());
    assert!(
        said[0].contains(&socket.display().to_string()),
        "{}",
        said[0]
    );
    wait_for("the socket", Duration::from_secs(10), || {
        socket.exists().then_some(())
    });

    // The same user's `gasdtu status`, with no --socket, finds it through the same rule.
    let out = Command::new(gasdtu())
        .args(["status", "--json", "--config"])
        .arg(&site.config)
        .env("XDG_RUNTIME_DIR", &xdg)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["gateway"]["id"], "byhand");
    // And the relative state_dir was the config's `state`, not `/state` under the cwd `/`.
    assert!(site.state().join("gasdtu.db").is_file());
    assert!(!Path::new("/state").exists());
    sigterm(&p.child);
    wait_exit(&mut p.child, Duration::from_secs(20)).expect("exits after SIGTERM");
}
