//! store_failure: what the gateway runtime does when its store cannot commit. In-process
//! (`gasdtu::gateway::Gateway`, the composition `gasdtu run` uses) against the project's
//! Modbus TCP simulator on loopback: 6 devices x 10 points (the `bench10` profile), one TCP
//! bus each, polled every second, no uplink, the state dir on a 16 MiB tmpfs the benchmark
//! mounts (root only; unmounted on every path).
//!
//! Phases of each scenario: (a) 10 s normal; (b) 30 s of store failure; (c) the failure ends,
//! measure the time to the first committed batch (the commit observer's timestamps) and to
//! the `data_loss` event (reason `store_unavailable`) in the store, run 10 s more, shut down.
//! Scenarios: `disk full` (a filler file grows until ENOSPC, so SQLite commits fail with
//! "database or disk is full"; the filler is deleted to recover) and `database locked` (another
//! connection holds `BEGIN EXCLUSIVE`; rolled back to recover). `memory_readings` = 1000 (100
//! batches, ~17 s of this site) so the memory bound drops batches inside phase (b).
//!
//! Writes bench-results/store_failure.txt. Env: GASDTU_BENCH_FAIL_SECS (phase b, default 30).

mod support;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gasdtu::gateway::consumer::CommitHook;
use gasdtu::gateway::{Gateway, Options, ShutdownReport};
use gasdtu::model::SampleBatch;
use gasdtu::outbox::{EntryBody, EntryKind, Outbox};
use gasdtu::sim::{Faults, SimDevice, Simulator};
use gasdtu::store::Store;
use tokio_util::sync::CancellationToken;

use support::*;

const DEVICES: u8 = 6;
const POINTS: u64 = 10;
const TMPFS: &str = "16m";
const MEMORY_READINGS: usize = 1000;
const NORMAL_SECS: u64 = 10;
const AFTER_SECS: u64 = 10;
/// systemd's TimeoutStopSec in systemd/gasdtu.service.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Log capture: every line the runtime logs, with the instant it was written.

type LogLines = Arc<Mutex<Vec<(Instant, String)>>>;

fn logs() -> &'static LogLines {
    static LOGS: OnceLock<LogLines> = OnceLock::new();
    LOGS.get_or_init(Arc::default)
}

struct LineSink(Vec<u8>);

impl std::io::Write for LineSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineSink {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0).trim_end().to_string();
        if !text.is_empty() {
            if let Ok(mut v) = logs().lock() {
                v.push((Instant::now(), text));
            }
        }
    }
}

fn install_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(|| LineSink(Vec::new()))
        .try_init();
}

fn lines_between(a: Instant, b: Instant) -> Vec<(Instant, String)> {
    logs()
        .lock()
        .map(|v| {
            v.iter()
                .filter(|(t, _)| *t >= a && *t <= b)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The tmpfs: mounted by the benchmark, unmounted when dropped (on every path).

struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path) -> Res<Tmpfs> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount(8): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a {TMPFS} tmpfs on {} ({}: {}): this benchmark must run as root \
                 (or with CAP_SYS_ADMIN) to give the store a small filesystem it can fill",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Bytes available to an unprivileged writer (`stat -f`).
    fn free(&self) -> Res<u64> {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(&self.path)
            .output()
            .map_err(|e| format!("stat -f: {e}"))?;
        let s = String::from_utf8_lossy(&out.stdout);
        let mut it = s.split_whitespace().map(|v| v.parse::<u64>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(a), Some(b)) => Ok(a * b),
            _ => Err(format!("stat -f: unreadable `{s}`")),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            // Busy (something still holds a file): detach it lazily rather than leave it.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
            eprintln!(
                "store_failure: {} was busy at unmount; detached lazily (umount -l)",
                self.path.display()
            );
        }
    }
}

/// Append to `path` until the filesystem refuses (ENOSPC), in shrinking chunks; bytes written.
fn fill(path: &Path) -> Res<u64> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("open filler {path:?}: {e}"))?;
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 512, 1] {
        let buf = vec![0xA5u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => return Err(format!("filler {path:?}: {e}")),
            }
        }
    }
    // ENOSPC may come at close time for data still in flight: ignore it, the disk is full.
    let _ = f.sync_all();
    Ok(written)
}

// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    DiskFull,
    Locked,
    /// Disk full, and the gateway is shut down while it still is (no phase c).
    DiskFullAtShutdown,
}

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Failure::DiskFull => "disk full (filler file until ENOSPC)",
            Failure::Locked => "database locked (BEGIN EXCLUSIVE from another connection)",
            Failure::DiskFullAtShutdown => {
                "disk full at shutdown (filler until ENOSPC, Gateway::shutdown while still full)"
            }
        }
    }

    fn recovers(self) -> bool {
        self != Failure::DiskFullAtShutdown
    }
}

fn config_text(port: u16, state: &Path, profiles: &Path) -> String {
    let mut s = format!(
        "[gateway]\nid = \"store-failure\"\nstate_dir = \"{}\"\nprofile_dirs = [\"{}\"]\n",
        state.display(),
        profiles.display()
    );
    for i in 1..=DEVICES {
        let _ = write!(
            s,
            "\n[buses.bus{i}]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {port}\ntimeout = \"1s\"\nturnaround = \"0s\"\nretries = 0\n\
             \n[devices.dev{i}]\nbus = \"bus{i}\"\nunit = {i}\npoll = \"1s\"\nprofile = \"bench10\"\n"
        );
    }
    s
}

fn load(text: &str) -> Res<gasdtu::config::Config> {
    gasdtu::config::parse_str(text, "store_failure.toml", Path::new("/"))
        .map(|l| l.config)
        .map_err(|e| format!("benchmark config invalid: {e:?}"))
}

/// Committed batches with the instant the observer saw them.
type Commits = Arc<Mutex<Vec<(Instant, u64)>>>;

fn commits_between(c: &Commits, a: Instant, b: Instant) -> (u64, u64) {
    c.lock()
        .map(|v| {
            v.iter()
                .filter(|(t, _)| *t >= a && *t < b)
                .fold((0, 0), |(n, r), (_, k)| (n + 1, r + k))
        })
        .unwrap_or((0, 0))
}

fn first_commit_after(c: &Commits, a: Instant) -> Option<Instant> {
    c.lock()
        .ok()
        .and_then(|v| v.iter().map(|(t, _)| *t).find(|t| *t >= a))
}

fn loss_events(store: &Store) -> Vec<serde_json::Value> {
    store
        .pending(100_000, 0)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.kind == EntryKind::Event)
        .filter_map(|e| match e.body {
            EntryBody::Json(v) => Some(v),
            EntryBody::Batch(_) => None,
        })
        .filter(|e| e["event"] == "data_loss" && e["reason"] == "store_unavailable")
        .collect()
}

struct Outcome {
    kind: Failure,
    fail_secs: u64,
    filled: u64,
    topped_up: u64,
    free_before: u64,
    /// Sim requests per device: total, and during the failure.
    requests_total: Vec<u64>,
    requests_fail: Vec<u64>,
    /// Batches committed during the failure window (should be 0).
    commits_in_failure: (u64, u64),
    first_error_after: Option<Duration>,
    first_drop_after: Option<Duration>,
    recover: Option<Duration>,
    loss_seen: Option<Duration>,
    losses: Vec<serde_json::Value>,
    report: ShutdownReport,
    shutdown_took: Duration,
    shutdown_in_time: bool,
    warn_lines: Vec<(Duration, String)>,
}

fn scenario(kind: Failure, profiles: &Path, fail_secs: u64) -> Res<Outcome> {
    let mnt = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let fs = Tmpfs::mount(mnt.path())?;
    let state = fs.path.join("state");
    std::fs::create_dir_all(&state).map_err(|e| format!("mkdir {state:?}: {e}"))?;
    // Everything holding the store (runtime, gateway, store handle, lock) lives in `inner` and
    // is gone before `fs` unmounts.
    inner(kind, &fs, &state, profiles, fail_secs)
}

fn inner(kind: Failure, fs: &Tmpfs, state: &Path, profiles: &Path, fail_secs: u64) -> Res<Outcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let stop = CancellationToken::new();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("bind the simulator: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("simulator address: {e}"))?
        .port();
    let cfg = load(&config_text(port, state, profiles))?;
    let sim = Simulator::new(
        cfg.devices
            .iter()
            .map(|d| {
                SimDevice::new(d.unit, d.name.clone(), d.points.clone(), d.computed.clone())
                    .with_seed(u64::from(d.unit))
            })
            .collect(),
        Faults::new(vec![], Some(1)),
    );
    {
        let (s, t) = (sim.clone(), stop.clone());
        rt.spawn(async move { s.serve_tcp(listener, t).await });
    }
    let requests = || -> Vec<u64> {
        (1..=DEVICES)
            .map(|u| sim.with_device(u, |d| d.requests()).unwrap_or(0))
            .collect()
    };

    let commits: Commits = Arc::default();
    let hook: CommitHook = {
        let c = commits.clone();
        Arc::new(move |b: &SampleBatch| {
            if let Ok(mut v) = c.lock() {
                v.push((Instant::now(), b.samples.len() as u64));
            }
        })
    };
    let opts = Options {
        poll_now: true,
        observers: vec![hook],
        notifier: gasdtu::gateway::systemd::Notifier::disabled(),
        memory_readings: MEMORY_READINGS,
        ..Options::default()
    };
    let t_start = Instant::now();
    let gw = rt
        .block_on(Gateway::start(cfg, opts))
        .map_err(|e| format!("Gateway::start: {e}"))?;
    let store = gw.store().clone();
    let result = phases(
        kind, fs, state, fail_secs, &commits, &requests, &store, t_start,
    );
    // Shut down on every path (the store must be closed before the unmount).
    let t_stop = Instant::now();
    let report = rt.block_on(async { tokio::time::timeout(STOP_TIMEOUT, gw.shutdown()).await });
    let shutdown_took = t_stop.elapsed();
    let (mut o, lock) = result?;
    drop(lock);
    let report = report.map_err(|_| {
        format!(
            "Gateway::shutdown did not return within {STOP_TIMEOUT:?} (systemd would SIGKILL it)"
        )
    })?;
    o.requests_total = requests();
    o.losses = loss_events(&store);
    o.shutdown_took = shutdown_took;
    o.shutdown_in_time = shutdown_took < STOP_TIMEOUT;
    o.report = report;
    let t_end = Instant::now();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for (t, l) in lines_between(t_start, t_end) {
        if !(l.contains(" WARN ") || l.contains(" ERROR ")) {
            continue;
        }
        // Keep the first occurrence of each message (timestamps and counters stripped).
        let key: String = l
            .split_once(' ')
            .map(|x| x.1)
            .unwrap_or(&l)
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect();
        let n = seen.entry(key).or_insert(0);
        *n += 1;
        if *n == 1 {
            o.warn_lines.push((t.duration_since(t_start), l));
        }
    }
    drop(store);
    stop.cancel();
    drop(rt);
    Ok(o)
}

/// Phases (a), (b), (c). Returns the outcome so far and the lock connection (kept until the
/// gateway has shut down; None once released).
#[allow(clippy::too_many_arguments)]
fn phases(
    kind: Failure,
    fs: &Tmpfs,
    state: &Path,
    fail_secs: u64,
    commits: &Commits,
    requests: &dyn Fn() -> Vec<u64>,
    store: &Arc<Store>,
    t_start: Instant,
) -> Res<(Outcome, Option<rusqlite::Connection>)> {
    wait_for("a first committed batch", Duration::from_secs(15), || {
        first_commit_after(commits, t_start).map(|_| ())
    })?;
    // (a) normal
    std::thread::sleep(Duration::from_secs(NORMAL_SECS));

    // (b) failure
    let free_before = fs.free()?;
    let filler = fs.path.join("filler.bin");
    let mut filled = 0;
    let mut lock = None;
    let r_b = requests();
    let t_b = Instant::now();
    match kind {
        Failure::DiskFull | Failure::DiskFullAtShutdown => filled = fill(&filler)?,
        Failure::Locked => {
            let c = rusqlite::Connection::open(state.join("gasdtu.db"))
                .map_err(|e| format!("open a second connection: {e}"))?;
            c.busy_timeout(Duration::from_secs(10))
                .map_err(|e| format!("busy_timeout: {e}"))?;
            c.execute_batch("BEGIN EXCLUSIVE")
                .map_err(|e| format!("BEGIN EXCLUSIVE: {e}"))?;
            lock = Some(c);
        }
    }
    let mut topped_up = 0;
    let b_end = t_b + Duration::from_secs(fail_secs);
    while Instant::now() < b_end {
        std::thread::sleep(
            b_end
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500)),
        );
        if kind != Failure::Locked {
            // Whatever SQLite frees (a truncated WAL) is taken again: the disk stays full.
            topped_up += fill(&filler)?;
        }
    }
    let r_b_end = requests();
    let commits_in_failure = commits_between(commits, t_b, Instant::now());

    // (c) recovery
    let t_free = Instant::now();
    let logs_b = lines_between(t_b, t_free);
    let first_error_after = logs_b
        .iter()
        .find(|(_, l)| l.contains("store commit failed"))
        .map(|(t, _)| t.duration_since(t_b));
    let first_drop_after = logs_b
        .iter()
        .find(|(_, l)| l.contains("oldest batches dropped"))
        .map(|(t, _)| t.duration_since(t_b));
    let mut o = Outcome {
        kind,
        fail_secs,
        filled,
        topped_up,
        free_before,
        requests_total: Vec::new(),
        requests_fail: r_b_end.iter().zip(&r_b).map(|(e, s)| e - s).collect(),
        commits_in_failure,
        first_error_after,
        first_drop_after,
        recover: None,
        loss_seen: None,
        losses: Vec::new(),
        report: ShutdownReport::default(),
        shutdown_took: Duration::ZERO,
        shutdown_in_time: false,
        warn_lines: Vec::new(),
    };
    if !kind.recovers() {
        return Ok((o, lock));
    }
    match kind {
        Failure::DiskFull | Failure::DiskFullAtShutdown => {
            std::fs::remove_file(&filler).map_err(|e| format!("delete the filler: {e}"))?
        }
        Failure::Locked => {
            if let Some(c) = lock.take() {
                c.execute_batch("ROLLBACK")
                    .map_err(|e| format!("ROLLBACK: {e}"))?;
            }
        }
    }
    let mut recover = None;
    let mut loss_seen = None;
    let deadline = t_free + Duration::from_secs(40);
    while (recover.is_none() || loss_seen.is_none()) && Instant::now() < deadline {
        if recover.is_none() {
            recover = first_commit_after(commits, t_free).map(|t| t.duration_since(t_free));
        }
        if loss_seen.is_none() && !loss_events(store).is_empty() {
            loss_seen = Some(t_free.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(AFTER_SECS));
    o.recover = recover;
    o.loss_seen = loss_seen;
    Ok((o, lock))
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2} s", d.as_secs_f64()))
        .unwrap_or_else(|| "never (within 40 s)".into())
}

fn describe(r: &mut String, o: &Outcome) {
    let c = &o.report.consumer;
    let polled = c.readings + c.dropped_readings + c.uncommitted_readings;
    let reported: u64 = o.losses.iter().filter_map(|e| e["readings"].as_u64()).sum();
    let req_total: u64 = o.requests_total.iter().sum();
    let _ = writeln!(r, "scenario: {}", o.kind.name());
    if o.kind != Failure::Locked {
        let _ = writeln!(
            r,
            "  free before the fill {:.2} MiB; filler {:.2} MiB until ENOSPC, {} bytes more taken by top-ups every 0.5 s during the failure",
            o.free_before as f64 / 1048576.0,
            o.filled as f64 / 1048576.0,
            o.topped_up
        );
    }
    let _ = writeln!(
        r,
        "  failure window {} s: polling went on: simulator requests per device during it {:?} (1 read per poll, ~1 per second expected); \
         batches committed during it: {} ({} readings)",
        o.fail_secs, o.requests_fail, o.commits_in_failure.0, o.commits_in_failure.1
    );
    let _ = writeln!(
        r,
        "  first `store commit failed` log {} after the failure began; first `oldest batches dropped` {} after",
        secs(o.first_error_after),
        secs(o.first_drop_after)
    );
    if o.kind.recovers() {
        let _ = writeln!(
            r,
            "  after the failure ended: first committed batch {}, data_loss event in the store {}",
            secs(o.recover),
            secs(o.loss_seen)
        );
    } else {
        let _ = writeln!(
            r,
            "  the failure never ended: Gateway::shutdown was called while the disk was still full"
        );
    }
    let _ = writeln!(
        r,
        "  readings polled {polled} (committed {} + dropped {} + uncommitted at shutdown {}); simulator requests {req_total} x {POINTS} = {}",
        c.readings,
        c.dropped_readings,
        c.uncommitted_readings,
        req_total * POINTS
    );
    let _ = writeln!(
        r,
        "  kept (committed) {} readings in {} batches, {} commits; dropped (memory bound {MEMORY_READINGS} readings) {} readings in {} batches",
        c.readings, c.batches, c.commits, c.dropped_readings, c.dropped_batches
    );
    let _ = writeln!(
        r,
        "  reported: {} data_loss event(s) in the store, {} readings (consumer counted {} loss events){}",
        o.losses.len(),
        reported,
        c.loss_events,
        if reported == c.dropped_readings {
            ": every dropped reading is reported".to_string()
        } else if !o.kind.recovers() {
            format!(
                ": {} dropped readings never reported in the store (it never accepted a commit again); \
                 only the shutdown log line counts them",
                c.dropped_readings
            )
        } else {
            format!(
                ": MISMATCH, {} dropped vs {} reported",
                c.dropped_readings, reported
            )
        }
    );
    for e in &o.losses {
        let _ = writeln!(r, "    {e}");
    }
    let _ = writeln!(
        r,
        "  commit errors {}; shutdown took {:.2} s ({} systemd's TimeoutStopSec {} s); uncommitted at shutdown {} batches; pending readings {}",
        c.commit_errors,
        o.shutdown_took.as_secs_f64(),
        if o.shutdown_in_time { "within" } else { "NOT within" },
        STOP_TIMEOUT.as_secs(),
        c.uncommitted_batches,
        o.report.pending_readings
    );
    let _ = writeln!(
        r,
        "  WARN/ERROR log lines (first of each kind, seconds since start):"
    );
    for (t, l) in &o.warn_lines {
        let _ = writeln!(r, "    +{:.1}s {l}", t.as_secs_f64());
    }
}

fn main() {
    main_with("store_failure", run);
}

fn run() -> Res<()> {
    let fail_secs = env_u64("GASDTU_BENCH_FAIL_SECS", 30)?.max(1);
    install_logging();
    let machine_line = machine();
    let started = utc_now();
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).map_err(|e| format!("mkdir {profiles:?}: {e}"))?;
    std::fs::write(profiles.join("bench10.toml"), PROFILE)
        .map_err(|e| format!("write profile: {e}"))?;

    let mut outcomes = Vec::new();
    for kind in [
        Failure::DiskFull,
        Failure::Locked,
        Failure::DiskFullAtShutdown,
    ] {
        eprintln!("store_failure: scenario {} ...", kind.name());
        // The shutdown scenario only needs the failure to have begun (and drops to happen).
        let secs = if kind.recovers() { fail_secs } else { 20 };
        outcomes.push(scenario(kind, &profiles, secs)?);
    }

    let mut r = String::new();
    let _ = writeln!(
        r,
        "gasdtu benchmark: store_failure (the runtime while its store cannot commit)"
    );
    let _ = writeln!(r, "date: {started}");
    let _ = writeln!(r, "{machine_line}");
    let _ = writeln!(
        r,
        "setup: in-process gasdtu::gateway::Gateway (poll_now, no uplink, store defaults: max_bytes 512 MiB), \
         {DEVICES} devices x {POINTS} points (bench10), one Modbus TCP bus each to an in-process simulator, poll 1s \
         ({} readings/s); state dir on a {TMPFS} tmpfs mounted by the benchmark; memory_readings = {MEMORY_READINGS} \
         (~{:.0} s of this site, so drops happen inside the failure window; the default is 50 000)",
        u64::from(DEVICES) * POINTS,
        MEMORY_READINGS as f64 / (f64::from(DEVICES) * POINTS as f64)
    );
    let _ = writeln!(
        r,
        "phases: (a) {NORMAL_SECS} s normal, (b) {fail_secs} s failure, (c) failure removed, wait for the first commit and the \
         data_loss event, {AFTER_SECS} s more, Gateway::shutdown (give-up {} s, systemd TimeoutStopSec {} s); \
         the third scenario has a 20 s failure and no phase (c): it shuts down while the disk is full",
        gasdtu::gateway::COMMIT_GIVE_UP.as_secs(),
        STOP_TIMEOUT.as_secs()
    );
    for o in &outcomes {
        let _ = writeln!(r);
        describe(&mut r, o);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = writeln!(
        r,
        "\nload average at end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    publish("store_failure", &r)
}
