//! The systemd contract of `gasdtu run`, from the outside: the real binary polls `gasdtu simulate`
//! over Modbus TCP with `NOTIFY_SOCKET` pointing at a datagram socket this test owns and
//! `WATCHDOG_USEC`/`WATCHDOG_PID` set as systemd sets them. It must send READY=1, STATUS= lines
//! with live numbers, WATCHDOG=1 at half the timeout while it makes progress (also while every
//! device is dead: a silent meter is not a hung daemon), RELOADING=1 + READY=1 on SIGHUP (a bad
//! file refused, the daemon alive), STOPPING=1 on SIGTERM; and it must keep pinging while the
//! store fails (its database write-locked by another process): polling goes on, batches are
//! held in memory and STATUS says the store is failing (a hung commit stops the pings: unit
//! test in gateway::systemd).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// WATCHDOG_USEC the test sets: pings are expected every second.
const WATCHDOG: Duration = Duration::from_secs(2);

struct Daemon {
    proc: Proc,
    log: Lines,
    notes: Notes,
    config: PathBuf,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

fn config_text(port: u16, state: &Path) -> String {
    format!(
        r#"[gateway]
id = "svc"
state_dir = "{state}"

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {port}
timeout = "300ms"
retries = 0

[devices.pt1]
bus = "lan"
unit = 1
poll = "1s"
profile = "pt-float"
offline_after = 1

[devices.evc1]
bus = "lan"
unit = 2
poll = "1s"
profile = "evc-dcba"
offline_after = 1
"#,
        state = state.display()
    )
}

/// Start `gasdtu run` as systemd would: NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (the pid
/// is only known once the process exists, so a shell exports its own pid and execs the daemon).
fn start_daemon(port: u16) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(&config, config_text(port, &state)).unwrap();
    let notify = dir.path().join("notify.sock");
    let notes = Notes::listen(&notify);
    let mut proc = Proc::spawn(
        "gasdtu run",
        Command::new("sh")
            .arg("-c")
            .arg(r#"WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@""#)
            .arg(gasdtu())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--poll-now")
            .arg("--socket")
            .arg(dir.path().join("gasdtu.sock"))
            .env("NOTIFY_SOCKET", &notify)
            .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let log = Lines::collect(proc.child.stderr.take().unwrap());
    Daemon {
        proc,
        log,
        notes,
        config,
        state,
        _dir: dir,
    }
}

/// No gap between consecutive pings (and the window's ends) reaches the watchdog timeout.
fn assert_pinged_throughout(d: &Daemon, from: Instant, to: Instant, why: &str) {
    let pings = d.notes.pings_between(from, to);
    let mut edges = vec![from];
    edges.extend(&pings);
    edges.push(to);
    let worst = edges.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        worst < WATCHDOG,
        "{why}: a {worst:?} gap without WATCHDOG=1 (timeout {WATCHDOG:?}); {} pings; log:\n{}",
        pings.len(),
        d.log.snapshot().join("\n")
    );
}

#[test]
fn run_notifies_ready_status_watchdog_reload_and_stopping() {
    let (mut sim, port) = simulate_tcp(&["1:pt-float", "2:evc-dcba"], &[]);
    let mut d = start_daemon(port);
    let t0 = Instant::now();
    let (ready_at, _) = d
        .notes
        .wait("READY=1", t0, Duration::from_secs(15), |m| m == "READY=1");
    d.notes.wait(
        "a STATUS line naming both devices",
        t0,
        Duration::from_secs(15),
        |m| m.starts_with("STATUS=polling 2 devices"),
    );
    // Steady pings at about half the timeout while polling goes well (4 of them: ~4 s).
    let now = d
        .notes
        .wait_pings("while healthy", ready_at, 4, Duration::from_secs(20));
    assert_pinged_throughout(&d, ready_at, now, "healthy polling");

    // Every device goes silent (the simulator is frozen): the bus task times out and reports
    // them offline. That is progress, not a hang: pings go on and STATUS says so.
    signal(sim.child.id(), "STOP");
    let frozen = Instant::now();
    let (offline_at, _) = d.notes.wait(
        "a STATUS line with both devices offline",
        frozen,
        Duration::from_secs(10),
        |m| m.starts_with("STATUS=polling 2 devices, all offline"),
    );
    let now = d.notes.wait_pings(
        "with every device dead",
        offline_at,
        2,
        Duration::from_secs(10),
    );
    assert_pinged_throughout(&d, frozen, now, "dead devices");
    signal(sim.child.id(), "CONT");
    let thawed = Instant::now();
    d.notes.wait(
        "STATUS back to all online",
        thawed,
        Duration::from_secs(10),
        |m| m.starts_with("STATUS=polling 2 devices") && !m.contains("offline"),
    );

    // SIGHUP with a broken file: RELOADING=1, refused, READY=1 again, still running and pinging.
    let good = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, good.replace("unit = 2", "unit = 0")).unwrap();
    let hup = Instant::now();
    signal(d.proc.child.id(), "HUP");
    d.notes
        .wait("RELOADING=1", hup, Duration::from_secs(5), |m| {
            m == "RELOADING=1"
        });
    d.notes.wait(
        "READY=1 after the reload",
        hup,
        Duration::from_secs(5),
        |m| m == "READY=1",
    );
    // Two pings after the reload: the daemon kept working with the old config.
    let now = d
        .notes
        .wait_pings("after the refused reload", hup, 2, Duration::from_secs(10));
    assert!(
        d.proc.child.try_wait().unwrap().is_none(),
        "a bad file on SIGHUP must not stop the daemon; log:\n{}",
        d.log.snapshot().join("\n")
    );
    assert_pinged_throughout(&d, hup, now, "after a refused reload");
    std::fs::write(&d.config, good).unwrap();

    // SIGTERM: STOPPING=1, then a clean exit.
    let term = Instant::now();
    sigterm(&d.proc.child);
    d.notes
        .wait("STOPPING=1", term, Duration::from_secs(5), |m| {
            m == "STOPPING=1"
        });
    let status = wait_exit(&mut d.proc.child, Duration::from_secs(10)).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", d.log.snapshot().join("\n"));
    let _ = &mut sim;
}

#[test]
fn a_failing_store_keeps_polling_and_pinging_and_status_says_so() {
    let (_sim, port) = simulate_tcp(&["1:pt-float", "2:evc-dcba"], &[]);
    let d = start_daemon(port);
    let t0 = Instant::now();
    d.notes
        .wait("READY=1", t0, Duration::from_secs(15), |m| m == "READY=1");
    let db = d.state.join("gasdtu.db");
    wait_for("the store's database file", Duration::from_secs(10), || {
        db.exists().then_some(())
    });
    d.notes
        .wait("a first ping", t0, Duration::from_secs(5), |m| {
            m == "WATCHDOG=1"
        });

    // Another process takes the database's write lock and keeps it: every commit of the
    // daemon now fails (busy) after the busy timeout. Polling goes on (batches are held in
    // memory), so this is not a hang: a restart by the watchdog would lose what is held.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let locked = Instant::now();
    d.notes.wait(
        "STATUS saying the store is failing",
        locked,
        Duration::from_secs(20),
        |m| m.starts_with("STATUS=") && m.contains("STORE FAILING"),
    );
    // Past the bus silence bound (2 x 1 s poll + one worst-case cycle + slack), where a
    // "no batch committed" watchdog would have stopped pinging.
    let bound =
        Duration::from_secs(2) + Duration::from_secs(3) + gasdtu::gateway::progress::SILENCE_SLACK;
    let until = locked + bound + WATCHDOG;
    wait_for("the end of the window", bound + WATCHDOG * 2, || {
        (Instant::now() >= until).then_some(())
    });
    assert_pinged_throughout(&d, locked, Instant::now(), "a failing store");
    assert!(
        !d.notes
            .since(locked)
            .iter()
            .any(|m| m.starts_with("STATUS=STALLED")),
        "a failing store is not a stall: {:?}",
        d.notes.since(locked)
    );

    // The lock goes away: commits succeed again and STATUS says so.
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let released = Instant::now();
    d.notes.wait(
        "STATUS without the store failure",
        released,
        Duration::from_secs(20),
        |m| m.starts_with("STATUS=polling 2 devices") && !m.contains("STORE FAILING"),
    );
}
