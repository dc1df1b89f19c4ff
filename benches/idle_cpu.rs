//! idle_cpu: CPU and memory of the real daemon (`gasdtu run`, release build) at a realistic
//! 5-minute station: 6 devices with the shipped profiles (evc-dcba, turbine-bcd, mvt-dpspt,
//! pt-float, pt-int16 x2) on two Modbus TCP buses to a `gasdtu simulate` child, polled every
//! 5 minutes. Two daemons run side by side for the same window: one without an uplink, one
//! with an `[uplink]` to a local mosquitto (plain TCP). After each daemon's first poll is
//! committed (its 6 `batch` log lines; `--poll-now`) and, for the uplink daemon, the uplink is
//! connected (`uplink connected` line), plus a settle time, the window measures utime+stime from
//! /proc/<pid>/stat, the threads' on-CPU time from /proc/<pid>/task/*/schedstat, and VmHWM /
//! VmRSS. An idle daemon must be near zero (a bus task once spun at 100 %).
//!
//! Env: GASDTU_BENCH_SECS (measured window, default 60), GASDTU_BENCH_WARMUP_SECS (settle time
//! after the first poll, default 5).

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::*;

/// (unit, device name, shipped profile)
const DEVICES: [(u8, &str, &str); 6] = [
    (1, "evc1", "evc-dcba"),
    (2, "tm1", "turbine-bcd"),
    (3, "mvt1", "mvt-dpspt"),
    (4, "pt_in", "pt-float"),
    (5, "pt_out", "pt-int16"),
    (6, "pt_odor", "pt-int16"),
];

/// Two TCP buses to the simulator (units 1-3 and 4-6), 5-minute polls, optional uplink.
fn config_text(id: &str, state: &Path, port: u16, broker: Option<u16>) -> String {
    let mut s = format!(
        "[gateway]\nid = \"{id}\"\nstate_dir = \"{}\"\nlog_level = \"info\"\n",
        state.display()
    );
    if let Some(b) = broker {
        let _ = write!(
            s,
            "\n[uplink]\nhost = \"127.0.0.1\"\nport = {b}\ntls = false\n"
        );
    }
    for bus in ["line_a", "line_b"] {
        let _ = write!(
            s,
            "\n[buses.{bus}]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {port}\ntimeout = \"1s\"\nturnaround = \"0s\"\nretries = 1\n"
        );
    }
    for (unit, name, profile) in DEVICES {
        let bus = if unit <= 3 { "line_a" } else { "line_b" };
        let _ = write!(
            s,
            "\n[devices.{name}]\nbus = \"{bus}\"\nunit = {unit}\npoll = \"5m\"\nprofile = \"{profile}\"\n"
        );
    }
    s
}

fn simulator(bin: &Path, port: u16) -> Res<Proc> {
    let mut cmd = Command::new(bin);
    cmd.arg("simulate")
        .arg("--tcp")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--seed")
        .arg("1")
        .arg("--log-level")
        .arg("warn");
    for (unit, _, profile) in DEVICES {
        cmd.arg("--device").arg(format!("{unit}:{profile}"));
    }
    Proc::spawn(
        &format!("simulator :{port}"),
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

struct Daemon {
    label: &'static str,
    proc: Proc,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Daemon {
    fn start(label: &'static str, bin: &Path, config: &Path, socket: &Path) -> Res<Daemon> {
        let mut proc = Proc::spawn(
            &format!("gasdtu run ({label})"),
            Command::new(bin)
                .arg("run")
                .arg("--poll-now")
                .arg("--socket")
                .arg(socket)
                .arg("--config")
                .arg(config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )?;
        let log: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let l = log.clone();
        proc.on_stderr_lines(move |line| {
            if let Ok(mut v) = l.lock() {
                v.push((Instant::now(), line.to_string()));
            }
        })?;
        Ok(Daemon { label, proc, log })
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.log.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Devices whose batch was committed (one `batch` line each).
    fn batches(&self) -> usize {
        self.lines()
            .iter()
            .filter(|(_, l)| l.contains(": batch "))
            .count()
    }

    fn has(&self, needle: &str) -> bool {
        self.lines().iter().any(|(_, l)| l.contains(needle))
    }
}

struct Measured {
    label: &'static str,
    ticks: u64,
    ns: u64,
    /// Threads that exited during the window (their CPU is missing from `ns`).
    exited: usize,
    hwm_kib: u64,
    rss_kib: u64,
    threads: u64,
    batches_in_window: usize,
    max_tick_second: u64,
    warn_lines: Vec<String>,
}

/// CPU ns in the window: threads alive at both ends (their delta) plus threads born in it
/// (all of theirs); threads that exited in the window are missing (their count is returned).
fn window_ns(start: &BTreeMap<u32, u64>, end: &BTreeMap<u32, u64>) -> (u64, usize) {
    let mut ns = 0;
    for (tid, e) in end {
        ns += e.saturating_sub(start.get(tid).copied().unwrap_or(0));
    }
    let exited = start.keys().filter(|t| !end.contains_key(t)).count();
    (ns, exited)
}

fn main() {
    main_with("idle_cpu", run);
}

fn run() -> Res<()> {
    let secs = env_u64("GASDTU_BENCH_SECS", 60)?.max(1);
    let settle = env_u64("GASDTU_BENCH_WARMUP_SECS", 5)?;
    let bin = gasdtu()?;
    let (tck, tck_src) = clk_tck();
    let machine_line = machine();
    let started = utc_now();

    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let broker = match Mosquitto::new(dir.path(), false, None) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("idle_cpu: no uplink variant: {e}");
            None
        }
    };

    let mut variants: Vec<(&'static str, Option<u16>)> = vec![("no uplink", None)];
    if let Some(b) = &broker {
        variants.push(("uplink to mosquitto", Some(b.port)));
    }

    let mut sims = Vec::new();
    let mut daemons = Vec::new();
    for (i, (label, broker_port)) in variants.iter().enumerate() {
        let port = free_port()?;
        sims.push(simulator(&bin, port)?);
        wait_port(port, Duration::from_secs(10))?;
        let state = dir.path().join(format!("state{i}"));
        std::fs::create_dir_all(&state).map_err(|e| format!("mkdir {state:?}: {e}"))?;
        let cfg = dir.path().join(format!("station{i}.toml"));
        std::fs::write(
            &cfg,
            config_text(&format!("idle-{i}"), &state, port, *broker_port),
        )
        .map_err(|e| format!("write {cfg:?}: {e}"))?;
        check_config(&bin, &cfg)?;
        let socket = dir.path().join(format!("status{i}.sock"));
        daemons.push(Daemon::start(label, &bin, &cfg, &socket)?);
    }

    // The first poll of every device committed (and, with an uplink, the link up).
    for d in &mut daemons {
        let n = DEVICES.len();
        wait_for(
            &format!("{}: the first poll of {n} devices committed", d.label),
            Duration::from_secs(30),
            || (d.batches() >= n).then_some(()),
        )?;
        d.proc.alive()?;
    }
    if broker.is_some() {
        let d = &daemons[1];
        wait_for(
            "the uplink daemon's `uplink connected` line",
            Duration::from_secs(30),
            || d.has("uplink connected").then_some(()),
        )?;
    }
    std::thread::sleep(Duration::from_secs(settle));
    // Polls run on 5-minute wall-clock boundaries: when one would fall inside the window, start
    // after it (and the settle time), so the window measures the daemon between polls.
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("clock before 1970: {e}"))?
        .as_secs();
    let to_boundary = 300 - now_s % 300;
    if to_boundary <= secs + 2 {
        std::thread::sleep(Duration::from_secs(to_boundary + settle));
    }
    let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // The window: per-second tick samples to catch a burst, totals at the ends.
    let mut starts = Vec::new();
    for d in &mut daemons {
        d.proc.alive()?;
        let pid = d.proc.pid();
        starts.push((cpu_ticks(pid)?, thread_sched_ns(pid)?, d.batches()));
    }
    let mut last: Vec<u64> = starts.iter().map(|s| s.0).collect();
    let mut max_sec = vec![0u64; daemons.len()];
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1)),
        );
        for (i, d) in daemons.iter_mut().enumerate() {
            d.proc.alive()?;
            let t = cpu_ticks(d.proc.pid())?;
            max_sec[i] = max_sec[i].max(t - last[i]);
            last[i] = t;
        }
    }
    let window = t0.elapsed().as_secs_f64();
    let mut results = Vec::new();
    for (i, d) in daemons.iter().enumerate() {
        let pid = d.proc.pid();
        let ticks = cpu_ticks(pid)?;
        let (t_start, ns_start, b_start) = &starts[i];
        let (ns, exited) = window_ns(ns_start, &thread_sched_ns(pid)?);
        results.push(Measured {
            label: d.label,
            ticks: ticks - t_start,
            ns,
            exited,
            hwm_kib: status_kib(pid, "VmHWM")?,
            rss_kib: status_kib(pid, "VmRSS")?,
            threads: threads(pid)?,
            batches_in_window: d.batches() - b_start,
            max_tick_second: max_sec[i],
            warn_lines: d
                .lines()
                .into_iter()
                .filter(|(t, l)| *t >= t0 && (l.contains("WARN") || l.contains("ERROR")))
                .map(|(_, l)| l)
                .take(5)
                .collect(),
        });
    }
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    drop(daemons);
    drop(sims);
    drop(broker);

    let tick_ms = 1000.0 / tck as f64;
    let mut r = String::new();
    let _ = writeln!(
        r,
        "gasdtu benchmark: idle_cpu (the daemon between polls at a 5-minute station)"
    );
    let _ = writeln!(r, "date: {started}");
    let _ = writeln!(r, "{machine_line}");
    let _ = writeln!(
        r,
        "load average (1/5/15 min) at window start: {}; at window end: {}",
        load_start
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_end
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        r,
        "binary: {} (cargo bench profile = release: opt-level s, LTO, 1 codegen unit)",
        bin.display()
    );
    let _ = writeln!(
        r,
        "setup: `gasdtu run --poll-now`, 6 devices with the shipped profiles ({}) on 2 Modbus TCP buses \
         (units 1-3, 4-6) to a `gasdtu simulate` child, poll 5m (aligned to the wall clock), log level info, \
         state on disk; the uplink daemon publishes to mosquitto on 127.0.0.1 (plain TCP, default keepalive)",
        DEVICES
            .iter()
            .map(|d| d.2)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        r,
        "window: {window:.1} s, starting {settle} s after the first poll of all 6 devices was committed \
         (and the uplink connected), moved past a 5-minute boundary when one would fall inside it; CPU = utime+stime from /proc/<pid>/stat ({tck} ticks/s, {tck_src}, \
         resolution {tick_ms:.0} ms) and the threads' on-CPU time from /proc/<pid>/task/*/schedstat; \
         memory = VmHWM (peak RSS) and VmRSS from /proc/<pid>/status"
    );
    let _ = writeln!(r);
    let mut spinning = Vec::new();
    for m in &results {
        let cpu_s = m.ticks as f64 / tck as f64;
        let per60 = cpu_s * 60.0 / window;
        let exact_ms = m.ns as f64 / 1e6;
        let _ = writeln!(
            r,
            "gasdtu run, {}\n    CPU {cpu_s:.2} s in {window:.1} s = {per60:.3} CPU s per 60 s = {:.3} % of one core \
             (schedstat: {exact_ms:.1} ms = {:.4} %{}); busiest second: {} ticks\n    \
             peak RSS (VmHWM) {:.2} MiB, RSS at end {:.2} MiB, threads {}; batches committed in the window: {}",
            m.label,
            cpu_s * 100.0 / window,
            exact_ms / 10.0 / window,
            if m.exited == 0 {
                String::new()
            } else {
                format!("; {} threads exited in the window, their CPU not counted", m.exited)
            },
            m.max_tick_second,
            m.hwm_kib as f64 / 1024.0,
            m.rss_kib as f64 / 1024.0,
            m.threads,
            m.batches_in_window,
        );
        if m.warn_lines.is_empty() {
            let _ = writeln!(r, "    no WARN or ERROR line in the window");
        }
        for l in &m.warn_lines {
            let _ = writeln!(r, "    log: {l}");
        }
        // A spinning task would burn ~100 ticks a second; 1 % of a core is already a bug here.
        if cpu_s * 100.0 / window > 1.0 {
            spinning.push(m.label);
        }
    }
    if broker_missing(&results) {
        let _ = writeln!(
            r,
            "\nuplink variant skipped: mosquitto could not be started (see stderr)"
        );
    }
    let _ = writeln!(
        r,
        "\nverdict: {}",
        if spinning.is_empty() {
            "near zero: no task spins between polls".to_string()
        } else {
            format!(
                "NOT idle ({}): over 1 % of a core between polls",
                spinning.join(", ")
            )
        }
    );
    // A verdict, not an assertion: benchmarks never fail on a speed (docs/benchmarks.md).
    publish("idle_cpu", &r)
}

fn broker_missing(results: &[Measured]) -> bool {
    results.len() < 2
}
