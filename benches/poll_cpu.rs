//! Benchmark: polling CPU per reading over Modbus TCP, 20 devices x 10 points at 1 s, of the
//! real `gasdtu run` binary as a child process (the peer, ThingsBoard IoT Gateway, used
//! 0.26 ms CPU per reading and 66 MiB RSS on the reference machine; the target is 20x less CPU
//! and under 10 MiB RSS). Two daemons run side by side for the same wall-clock window, each
//! against its own `gasdtu simulate` process: one at `--log-level info` (today's consumer logs
//! one line per batch; those lines are counted to prove it polled), one at `--log-level warn`
//! (no per-batch formatting). Both simulators log every request at debug so the readings are
//! also counted on the device side. CPU is utime+stime from /proc/<pid>/stat over the window;
//! RSS is VmHWM/VmRSS from /proc/<pid>/status. Writes bench-results/poll_cpu.txt.
//!
//! Env: GASDTU_BENCH_SECS (measured window, default 60), GASDTU_BENCH_WARMUP_SECS (default 10).

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::*;

const DEVICES: u64 = 20;
const POINTS: u64 = 10;
const PEER_MS_PER_READING: f64 = 0.26;
const PEER_RSS_MIB: f64 = 66.0;
const TARGET_FACTOR: f64 = 20.0;
const TARGET_RSS_MIB: f64 = 10.0;

/// 20 TCP buses (one connection each) to the simulator at `port`, units 1..=20, 1 s polls.
fn config_text(id: &str, state: &Path, profiles: &Path, port: u16) -> String {
    let mut s = format!(
        "[gateway]\nid = \"{id}\"\nstate_dir = \"{}\"\nprofile_dirs = [\"{}\"]\nlog_level = \"info\"\n",
        state.display(),
        profiles.display()
    );
    for i in 1..=DEVICES {
        let _ = write!(
            s,
            "\n[buses.bus{i:02}]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {port}\ntimeout = \"1s\"\nturnaround = \"0s\"\nretries = 1\n\
             \n[devices.dev{i:02}]\nbus = \"bus{i:02}\"\nunit = {i}\npoll = \"1s\"\nprofile = \"bench10\"\n"
        );
    }
    s
}

/// Snapshot of one process.
#[derive(Clone)]
struct Snap {
    ticks: u64,
    ns: u64,
    tids: Vec<u32>,
}

struct Watched {
    proc: Proc,
    start: Option<Snap>,
}

impl Watched {
    fn snap(&self) -> Res<Snap> {
        let (ns, tids) = sched_ns(self.proc.pid())?;
        Ok(Snap {
            ticks: cpu_ticks(self.proc.pid())?,
            ns,
            tids,
        })
    }
}

fn simulator(bin: &Path, port: u16, profiles: &Path, replies: Arc<AtomicU64>) -> Res<Proc> {
    let mut cmd = Command::new(bin);
    cmd.arg("simulate")
        .arg("--tcp")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--profile-dir")
        .arg(profiles)
        .arg("--seed")
        .arg("1")
        .arg("--log-level")
        .arg("warn,gasdtu::sim::server=debug");
    for u in 1..=DEVICES {
        cmd.arg("--device").arg(format!("{u}:bench10"));
    }
    let mut p = Proc::spawn(
        &format!("simulator :{port}"),
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )?;
    // A normal reply to a holding-register read starts with function 3.
    p.on_stderr_lines(move |l| {
        if l.contains(": request unit=") && l.contains("reply=[3, 28,") {
            replies.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    Ok(p)
}

fn daemon(bin: &Path, config: &Path, level: &str) -> Res<Proc> {
    Proc::spawn(
        &format!("gasdtu run ({level})"),
        Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--log-level")
            .arg(level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    main_with("poll_cpu", run);
}

fn run() -> Res<()> {
    let secs = env_u64("GASDTU_BENCH_SECS", 60)?.max(1);
    let warmup = env_u64("GASDTU_BENCH_WARMUP_SECS", 10)?;
    let bin = gasdtu()?;
    let (tck, tck_src) = clk_tck();
    let machine_line = machine();
    let started = utc_now();

    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).map_err(|e| format!("mkdir {profiles:?}: {e}"))?;
    std::fs::write(profiles.join("bench10.toml"), PROFILE)
        .map_err(|e| format!("write profile: {e}"))?;

    let (port_i, port_w) = (free_port()?, free_port()?);
    let cfg_i = dir.path().join("info.toml");
    let cfg_w = dir.path().join("warn.toml");
    for (path, id, port) in [
        (&cfg_i, "bench-info", port_i),
        (&cfg_w, "bench-warn", port_w),
    ] {
        std::fs::write(path, config_text(id, dir.path(), &profiles, port))
            .map_err(|e| format!("write {path:?}: {e}"))?;
        check_config(&bin, path)?;
    }

    // Counters fed by the reader threads.
    let replies_i = Arc::new(AtomicU64::new(0));
    let replies_w = Arc::new(AtomicU64::new(0));
    let good_batches = Arc::new(AtomicU64::new(0));
    let other_batches = Arc::new(AtomicU64::new(0));
    let other_lines_i: Arc<Mutex<Vec<String>>> = Arc::default();
    let lines_w: Arc<Mutex<Vec<String>>> = Arc::default();

    let mut sim_i = Watched {
        proc: simulator(&bin, port_i, &profiles, replies_i.clone())?,
        start: None,
    };
    let mut sim_w = Watched {
        proc: simulator(&bin, port_w, &profiles, replies_w.clone())?,
        start: None,
    };
    wait_port(port_i, Duration::from_secs(10))?;
    wait_port(port_w, Duration::from_secs(10))?;

    let mut run_i = Watched {
        // Every batch line (INFO shows only a device's changes since issue 13 round 7).
        proc: daemon(&bin, &cfg_i, "info,gasdtu::batch=debug")?,
        start: None,
    };
    {
        let (g, o, ol) = (
            good_batches.clone(),
            other_batches.clone(),
            other_lines_i.clone(),
        );
        run_i.proc.on_stderr_lines(move |l| {
            if l.contains(": batch ") {
                if l.contains(" good=10 ") && l.contains(" bad=0 ") {
                    g.fetch_add(1, Ordering::Relaxed);
                } else {
                    o.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut v) = ol.lock() {
                        v.push(l.to_string());
                    }
                }
            } else if l.contains("WARN") || l.contains("ERROR") {
                if let Ok(mut v) = ol.lock() {
                    v.push(l.to_string());
                }
            }
        })?;
    }
    let mut run_w = Watched {
        proc: daemon(&bin, &cfg_w, "warn")?,
        start: None,
    };
    {
        let lw = lines_w.clone();
        run_w.proc.on_stderr_lines(move |l| {
            if let Ok(mut v) = lw.lock() {
                v.push(l.to_string());
            }
        })?;
    }

    // Warm-up: both daemons must have polled every device twice, then the rest of the time.
    let t_warm = Instant::now();
    wait_for(
        "the info daemon's first two good cycles (40 batches with good=10)",
        Duration::from_secs(warmup + 15),
        || (good_batches.load(Ordering::Relaxed) >= 2 * DEVICES).then_some(()),
    )?;
    wait_for(
        "the warn daemon's first two cycles (40 replies from its simulator)",
        Duration::from_secs(warmup + 15),
        || (replies_w.load(Ordering::Relaxed) >= 2 * DEVICES).then_some(()),
    )?;
    if let Some(rest) = Duration::from_secs(warmup).checked_sub(t_warm.elapsed()) {
        std::thread::sleep(rest);
    }
    // Start the window half way between two polls (they run on whole wall-clock seconds) so
    // the window holds exactly `secs` cycles.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("clock before 1970: {e}"))?;
    let to_half = Duration::from_millis((1500 - u64::from(now.subsec_millis())) % 1000);
    std::thread::sleep(to_half);

    for w in [&mut sim_i, &mut sim_w, &mut run_i, &mut run_w] {
        w.proc.alive()?;
        w.start = Some(w.snap()?);
    }
    let t0 = Instant::now();
    let (g0, o0) = (
        good_batches.load(Ordering::Relaxed),
        other_batches.load(Ordering::Relaxed),
    );
    let (ri0, rw0) = (
        replies_i.load(Ordering::Relaxed),
        replies_w.load(Ordering::Relaxed),
    );
    let end = t0 + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1)),
        );
        for w in [&mut sim_i, &mut sim_w, &mut run_i, &mut run_w] {
            w.proc.alive()?;
        }
    }
    let mut ends = Vec::new();
    for w in [&sim_i, &sim_w, &run_i, &run_w] {
        ends.push(w.snap()?);
    }
    let window = t0.elapsed().as_secs_f64();
    // Let the lines of the last cycle inside the window reach the reader threads.
    std::thread::sleep(Duration::from_millis(300));
    let good = good_batches.load(Ordering::Relaxed) - g0;
    let other = other_batches.load(Ordering::Relaxed) - o0;
    let rep_i = replies_i.load(Ordering::Relaxed) - ri0;
    let rep_w = replies_w.load(Ordering::Relaxed) - rw0;

    let mut mem = Vec::new();
    for w in [&sim_i, &sim_w, &run_i, &run_w] {
        let pid = w.proc.pid();
        mem.push((
            status_kib(pid, "VmHWM")?,
            status_kib(pid, "VmRSS")?,
            threads(pid)?,
        ));
    }
    // (exact ms from schedstat, ms from ticks, thread set unchanged)
    let cpu_of = |i: usize, w: &Watched| -> (f64, f64, bool) {
        let e = &ends[i];
        let s = w.start.clone().unwrap_or_else(|| e.clone());
        (
            e.ns.saturating_sub(s.ns) as f64 / 1e6,
            e.ticks.saturating_sub(s.ticks) as f64 * 1000.0 / tck as f64,
            s.tids == e.tids,
        )
    };
    let cpu = [
        cpu_of(0, &sim_i),
        cpu_of(1, &sim_w),
        cpu_of(2, &run_i),
        cpu_of(3, &run_w),
    ];
    drop((run_i, run_w, sim_i, sim_w));

    let nominal = DEVICES * POINTS * secs;
    let readings_i = good * POINTS;
    let readings_w = rep_w * POINTS;
    let tick_ms = 1000.0 / tck as f64;

    let mut r = String::new();
    let _ = writeln!(
        r,
        "gasdtu benchmark: poll_cpu (polling CPU per reading over Modbus TCP)"
    );
    let _ = writeln!(r, "date: {started}");
    let _ = writeln!(r, "{machine_line}");
    let _ = writeln!(
        r,
        "binary: {} (cargo bench profile = release: opt-level s, LTO, 1 codegen unit)",
        bin.display()
    );
    let _ = writeln!(
        r,
        "setup: {DEVICES} devices x {POINTS} points (profile bench10: one 14-register read each), poll 1s, \
         {DEVICES} Modbus TCP buses = {DEVICES} connections to 127.0.0.1; each daemon has its own simulator process"
    );
    let _ = writeln!(
        r,
        "window: {window:.2} s measured after {warmup} s warm-up, starting between two polls; \
         CPU = on-CPU time summed over the process's threads from /proc/<pid>/task/*/schedstat (ns), \
         cross-checked with utime+stime from /proc/<pid>/stat ({tck} ticks/s, {tck_src}, resolution {tick_ms:.0} ms)"
    );
    let _ = writeln!(
        r,
        "nominal readings in the window: {DEVICES} x {POINTS} x {secs} = {nominal}"
    );
    let _ = writeln!(r);
    let row = |r: &mut String,
               name: &str,
               cpu: (f64, f64, bool),
               readings: u64,
               hwm: u64,
               rss: u64,
               thr: u64| {
        let (ms, tick_ms, same) = cpu;
        let per = if readings > 0 {
            ms / readings as f64
        } else {
            f64::NAN
        };
        let _ =
            writeln!(
            r,
            "{name}\n    CPU {ms:.1} ms (stat ticks: {tick_ms:.0} ms{}) = {:.3} % of one core; \
             readings {readings} ({:.1}/s); {per:.5} ms CPU per reading\n    \
             peak RSS (VmHWM) {:.2} MiB, RSS at end {:.2} MiB, threads {thr}",
            if same { "" } else { "; thread set changed, schedstat misses exited threads" },
            ms / 10.0 / window,
            readings as f64 / window,
            mib(hwm),
            mib(rss),
        );
        per
    };
    let per_i = row(
        &mut r,
        "gasdtu run --log-level info",
        cpu[2],
        readings_i,
        mem[2].0,
        mem[2].1,
        mem[2].2,
    );
    let per_w = row(
        &mut r,
        "gasdtu run --log-level warn",
        cpu[3],
        readings_w,
        mem[3].0,
        mem[3].1,
        mem[3].2,
    );
    row(
        &mut r,
        "simulator for the info daemon",
        cpu[0],
        rep_i * POINTS,
        mem[0].0,
        mem[0].1,
        mem[0].2,
    );
    row(
        &mut r,
        "simulator for the warn daemon",
        cpu[1],
        rep_w * POINTS,
        mem[1].0,
        mem[1].1,
        mem[1].2,
    );
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "readings counted: info daemon {good} batch lines with good=10 bad=0 ({other} other batch lines) \
         -> {readings_i} readings; its simulator answered {rep_i} reads. warn daemon: no batch lines at \
         warn level, so its readings are its simulator's {rep_w} good replies x {POINTS}."
    );
    let _ = writeln!(
        r,
        "simulators log every request at debug (that is how replies are counted), so their CPU includes that logging; it is not the daemon's cost."
    );
    let peer_per = PEER_MS_PER_READING;
    let target = peer_per / TARGET_FACTOR;
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "peer (ThingsBoard IoT Gateway, same machine): {peer_per} ms CPU/reading, {PEER_RSS_MIB} MiB RSS; \
         target: {target:.4} ms/reading ({TARGET_FACTOR}x less) and < {TARGET_RSS_MIB} MiB"
    );
    for (name, per, hwm) in [("info", per_i, mem[2].0), ("warn", per_w, mem[3].0)] {
        let _ = writeln!(
            r,
            "gasdtu ({name}): {per:.5} ms/reading = {:.1}x less CPU than the peer ({}); peak RSS {:.2} MiB = {:.1}x less than the peer ({})",
            peer_per / per,
            if per <= target { "meets the 20x target" } else { "MISSES the 20x target" },
            mib(hwm),
            PEER_RSS_MIB / mib(hwm),
            if mib(hwm) < TARGET_RSS_MIB { "under 10 MiB" } else { "NOT under 10 MiB" },
        );
    }
    let lw = lines_w.lock().map(|v| v.clone()).unwrap_or_default();
    let oi = other_lines_i.lock().map(|v| v.clone()).unwrap_or_default();
    if !lw.is_empty() || !oi.is_empty() {
        let _ = writeln!(r, "\nunexpected log lines (first 5 of each daemon):");
        for l in oi.iter().take(5).chain(lw.iter().take(5)) {
            let _ = writeln!(r, "  {l}");
        }
    }
    publish("poll_cpu", &r)?;

    // Honest failure: a daemon that did not poll (or polled badly) makes the numbers void.
    let floor = nominal * 9 / 10;
    if readings_i < floor || readings_w < floor || other > 0 {
        return Err(format!(
            "the daemons did not poll as configured: info {readings_i}, warn {readings_w} readings \
             (expected about {nominal}), {other} batches with bad points"
        ));
    }
    Ok(())
}
