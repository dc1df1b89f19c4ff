//! The daemon's life from the outside, with the real binary against `gasdtu simulate`: a
//! SIGTERM that arrives while a reload is in progress is not lost (the signal handlers exist
//! once for the whole life of the process); an idle daemon (devices polled every 5 minutes)
//! uses almost no CPU; a daemon whose database another process holds locked stops on SIGTERM
//! within systemd's stop timeout and says how many batches it could not commit; `gasdtu read`
//! goes through the daemon that owns the bus. In-process: a bus task whose request channel closed
//! does not spin.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn config_text(port: u16, state: &Path, poll: &str, timeout: &str) -> String {
    format!(
        r#"[gateway]
id = "life"
state_dir = "{state}"

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {port}
timeout = "{timeout}"
retries = 0

[devices.pt1]
bus = "lan"
unit = 1
poll = "{poll}"
profile = "pt-float"
"#,
        state = state.display()
    )
}

struct Daemon {
    proc: Proc,
    log: Lines,
    notes: Notes,
    config: std::path::PathBuf,
    state: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start(text: impl Fn(&Path) -> String) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(&config, text(&state)).unwrap();
    let notify = dir.path().join("notify.sock");
    let notes = Notes::listen(&notify);
    let mut proc = Proc::spawn(
        "gasdtu run",
        Command::new(gasdtu())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--poll-now")
            .arg("--socket")
            .arg(dir.path().join("gasdtu.sock"))
            .env("NOTIFY_SOCKET", &notify)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let log = Lines::collect(proc.child.stderr.take().unwrap());
    let d = Daemon {
        proc,
        log,
        notes,
        config,
        state,
        _dir: dir,
    };
    wait_for("READY=1", Duration::from_secs(15), || {
        (d.notes.count("READY=1") >= 1).then_some(())
    });
    d
}

/// utime + stime of a process, from /proc/<pid>/stat (clock ticks of 10 ms).
fn cpu_ticks(stat: &str) -> u64 {
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_sigterm_during_a_reload_is_not_lost() {
    // Every answer takes 2 s: stopping the old bus task during the reload waits for it, so the
    // reload is still in progress when the SIGTERM comes.
    let (_sim, port) = simulate_tcp(&["1:pt-float"], &["1:slow:2s"]);
    let d = start(|s| config_text(port, s, "1s", "5s"));
    d.wait_first_batch();
    // A changed file, so the reload really applies (and stops the bus task).
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, text.replace("poll = \"1s\"", "poll = \"2s\"")).unwrap();
    let mut proc = d.proc;
    signal(proc.child.id(), "HUP");
    wait_for("RELOADING=1", Duration::from_secs(10), || {
        (d.notes.count("RELOADING=1") >= 1).then_some(())
    });
    // READY=1 after the reload has not come yet: the SIGTERM lands in the middle of it.
    assert_eq!(
        d.notes.count("READY=1"),
        1,
        "the reload ended too early for this test"
    );
    sigterm(&proc.child);
    let status = wait_exit(&mut proc.child, Duration::from_secs(25)).unwrap_or_else(|| {
        panic!(
            "still running 25 s after a SIGTERM sent during a reload; log:\n{}",
            d.log.snapshot().join("\n")
        )
    });
    assert_eq!(status.code(), Some(0), "{}", d.log.snapshot().join("\n"));
    assert!(d.notes.count("STOPPING=1") >= 1);
}

#[test]
fn an_idle_daemon_uses_almost_no_cpu() {
    let (_sim, port) = simulate_tcp(&["1:pt-float"], &[]);
    let d = start(|s| config_text(port, s, "5m", "1s"));
    d.wait_first_batch();
    let stat = format!("/proc/{}/stat", d.proc.child.id());
    let t0 = cpu_ticks(&std::fs::read_to_string(&stat).unwrap());
    let window = Instant::now();
    // Measure 5 s of idleness: this wait is the measurement window, not a synchronization.
    while window.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            d.proc_alive(),
            "the daemon died: {}",
            d.log.snapshot().join("\n")
        );
    }
    let used = cpu_ticks(&std::fs::read_to_string(&stat).unwrap()) - t0;
    // A spinning task would use ~500 ticks; a status line every 5 s costs well under one.
    assert!(
        used <= 25,
        "an idle daemon used {used} ticks (10 ms) of CPU in 5 s"
    );
}

impl Daemon {
    /// Wait for the `batch` log line of pt1: its first poll was committed.
    fn wait_first_batch(&self) {
        self.log
            .wait_line("a first committed batch", Duration::from_secs(20), |l| {
                l.contains(" batch") && l.contains("device=pt1")
            });
    }

    fn proc_alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.proc.child.id())).exists()
    }
}

#[test]
fn a_locked_store_does_not_keep_the_daemon_from_stopping() {
    let (_sim, port) = simulate_tcp(&["1:pt-float"], &[]);
    let d = start(|s| config_text(port, s, "1s", "1s"));
    let db = d.state.join("gasdtu.db");
    d.wait_first_batch();
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    d.log
        .wait_line("a failed commit", Duration::from_secs(20), |l| {
            l.contains("store commit failed")
        });
    let mut proc = d.proc;
    sigterm(&proc.child);
    let status = wait_exit(&mut proc.child, Duration::from_secs(28)).unwrap_or_else(|| {
        panic!(
            "still running 28 s after SIGTERM with a locked store (systemd kills at 30 s); log:\n{}",
            d.log.snapshot().join("\n")
        )
    });
    let log = d.log.snapshot().join("\n");
    assert!(
        log.contains("could not commit"),
        "the log says what was lost:\n{log}"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "data lost at shutdown: exit 1\n{log}"
    );
    drop(lock);
}

#[test]
fn gasdtu_read_goes_through_the_running_daemon_that_owns_the_bus() {
    let (_sim, port) = simulate_tcp(&["1:pt-float"], &[]);
    let d = start(|s| config_text(port, s, "1s", "1s"));
    let sock = d.config.parent().unwrap().join("gasdtu.sock");
    let out = Command::new(gasdtu())
        .arg("read")
        .arg("--tcp")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--socket")
        .arg(&sock)
        .args(["--unit", "1", "--address", "0", "--count", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("through the running daemon (bus lan)"),
        "the daemon owns the bus, so the read goes through it: {stderr}"
    );
    assert!(d.proc_alive());
}

/// CPU time of the calling thread, from /proc/thread-self/stat.
fn thread_ticks() -> u64 {
    cpu_ticks(&std::fs::read_to_string("/proc/thread-self/stat").unwrap())
}

#[test]
fn a_bus_task_whose_request_channel_closed_does_not_spin() {
    use gasdtu::config::parse_str;
    use gasdtu::modbus::bus::BusTask;
    use tokio_util::sync::CancellationToken;

    // One thread runs everything: its CPU time is the bus task's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = parse_str(
            &config_text(1, Path::new("/tmp"), "5m", "1s"),
            "t.toml",
            Path::new("/"),
        )
        .unwrap()
        .config;
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let (wtx, wrx) = tokio::sync::mpsc::channel(1);
        drop(wtx); // every sender gone: `recv` returns None at once from now on
        let task = BusTask::new(cfg.buses[0].clone(), cfg.devices.clone(), tx).with_requests(wrx);
        let stop = CancellationToken::new();
        let handle = tokio::spawn(task.run(stop.clone()));
        let t0 = thread_ticks();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let used = thread_ticks() - t0;
        stop.cancel();
        let _ = handle.await;
        assert!(
            used <= 20,
            "a bus task with a closed request channel used {used} ticks (10 ms) in 2 s"
        );
    });
}
