//! Benchmark: the standard workload end to end. 20 Modbus TCP devices x 10 points (profile
//! bench10, one 14-register read each) polled every second by the real `gasdtu run`, committed
//! to its SQLite store and forwarded to a local mosquitto (plain TCP, `tls = false`). Two
//! daemons run side by side for the same window, one with `encoding = "json"`, one with
//! `"cbor"`, each against its own `gasdtu simulate` process, both with default uplink settings
//! (max_payload 1024, inflight 8, reconnect 1 s .. 5 s). A rumqttc subscriber (persistent
//! session on a persistent broker) records every message with its arrival time.
//!
//! Measured over the window, per daemon: CPU per reading (schedstat of the daemon only), peak
//! RSS (VmHWM), payload bytes per reading (subscriber side), read-to-broker latency (arrival at
//! the subscriber minus the reading's read time in the payload; same machine, same clock),
//! disk bytes written per reading (/proc/<pid>/io write_bytes). Then the broker is stopped
//! for GASDTU_BENCH_OUTAGE_SECS (5) and started again on the same port, three times: reconnect time = from
//! the broker accepting again to the first `online` status and the first data message of each
//! daemon at the subscriber. Finally both daemons are stopped (SIGTERM), their stores
//! exported with `gasdtu export`, and every reading the store marks delivered must be in the
//! subscriber's set: nothing lost across the outage. Writes bench-results/uplink_workload.txt.
//!
//! Env: GASDTU_BENCH_SECS (window, default 60), GASDTU_BENCH_WARMUP_SECS (default 10),
//! GASDTU_BENCH_OUTAGE_SECS (default 5), GASDTU_BENCH_OUTAGES (how many outages, default 3), GASDTU_BENCH_DUMP (path prefix: write every received
//! reading as `device point read_ms arrival_ms` to <prefix>.json / <prefix>.cbor).

mod support;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

const DEVICES: u64 = 20;
const POINTS: u64 = 10;
const PEER_MS_PER_READING: f64 = 0.26;
const PEER_RSS_MIB: f64 = 66.0;
const PEER_BYTES_PER_READING: f64 = 20.0;
const PEER_LATENCY_MS: f64 = 267.0;
const PEER_RECONNECT_S: f64 = 15.0;

fn config_text(
    id: &str,
    state: &Path,
    profiles: &Path,
    sim: u16,
    broker: u16,
    enc: &str,
) -> String {
    let mut s = format!(
        "[gateway]\nid = \"{id}\"\nstate_dir = \"{}\"\nprofile_dirs = [\"{}\"]\nlog_level = \"warn\"\n\n\
         [uplink]\nhost = \"127.0.0.1\"\nport = {broker}\ntls = false\nencoding = \"{enc}\"\n",
        state.display(),
        profiles.display()
    );
    for i in 1..=DEVICES {
        let _ = write!(
            s,
            "\n[buses.bus{i:02}]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {sim}\ntimeout = \"1s\"\nturnaround = \"0s\"\nretries = 1\n\
             \n[devices.dev{i:02}]\nbus = \"bus{i:02}\"\nunit = {i}\npoll = \"1s\"\nprofile = \"bench10\"\n"
        );
    }
    s
}

fn simulator(bin: &Path, port: u16, profiles: &Path) -> Res<Proc> {
    let mut cmd = Command::new(bin);
    cmd.arg("simulate")
        .arg("--tcp")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--profile-dir")
        .arg(profiles)
        .arg("--seed")
        .arg("1")
        .arg("--log-level")
        .arg("warn");
    for u in 1..=DEVICES {
        cmd.arg("--device").arg(format!("{u}:bench10"));
    }
    Proc::spawn(
        &format!("simulator :{port}"),
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
}

/// One daemon under test.
struct Gw {
    enc: &'static str,
    id: String,
    state: PathBuf,
    daemon: Proc,
    _sim: Proc,
    log: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Copy, Default)]
struct Snap {
    ns: u64,
    ticks: u64,
    write_bytes: u64,
    wchar: u64,
}

fn snap(pid: u32) -> Res<Snap> {
    let (ns, _) = sched_ns(pid)?;
    let (write_bytes, wchar) = proc_io(pid)?;
    Ok(Snap {
        ns,
        ticks: cpu_ticks(pid)?,
        write_bytes,
        wchar,
    })
}

/// Readings exported from a stopped daemon's store: (reading, delivered).
fn export(bin: &Path, state: &Path, out: &Path) -> Res<Vec<(Reading, bool)>> {
    let st = Command::new(bin)
        .arg("export")
        .arg("--state-dir")
        .arg(state)
        .arg("--format")
        .arg("jsonl")
        .arg("-o")
        .arg(out)
        .status()
        .map_err(|e| format!("gasdtu export: {e}"))?;
    if !st.success() {
        return Err(format!("gasdtu export --state-dir {state:?} failed: {st}"));
    }
    let text = std::fs::read_to_string(out).map_err(|e| format!("read {out:?}: {e}"))?;
    let mut v = Vec::new();
    for line in text.lines() {
        let j: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("export line {line:?}: {e}"))?;
        let t = humantime::parse_rfc3339(j["read_at"].as_str().unwrap_or(""))
            .map_err(|e| format!("export line {line:?}: read_at: {e}"))?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        v.push((
            Reading {
                device: j["device"].as_str().unwrap_or("").to_string(),
                point: j["point"].as_str().unwrap_or("").to_string(),
                t_ms: t,
            },
            j["delivered"].as_bool().unwrap_or(false),
        ));
    }
    Ok(v)
}

/// Everything measured for one daemon.
struct Result1 {
    enc: &'static str,
    cpu_ms: f64,
    cpu_ticks_ms: f64,
    win_readings: u64,
    hwm_kib: u64,
    rss_kib: u64,
    threads: u64,
    disk: u64,
    wchar: u64,
    win_msgs: u64,
    win_bytes: u64,
    win_msg_readings: u64,
    lat: Vec<i64>,
    /// Per outage: ms from the broker's restart to `online` / the first data message.
    online_after_ms: Vec<Option<i64>>,
    data_after_ms: Vec<Option<i64>>,
    outage_readings: u64,
    exported: u64,
    delivered: u64,
    undelivered: u64,
    lost: u64,
    lost_examples: Vec<Reading>,
    dup_msgs: u64,
    log: Vec<String>,
}

fn main() {
    main_with("uplink_workload", run);
}

fn run() -> Res<()> {
    let secs = env_u64("GASDTU_BENCH_SECS", 60)?.max(5);
    let warmup = env_u64("GASDTU_BENCH_WARMUP_SECS", 10)?;
    let outage = env_u64("GASDTU_BENCH_OUTAGE_SECS", 5)?.max(1);
    let outages = env_u64("GASDTU_BENCH_OUTAGES", 3)?.max(1);
    require_mosquitto()?;
    let bin = gasdtu()?;
    let (tck, _) = clk_tck();
    let machine_line = machine();
    let started = utc_now();

    let tmp = std::env::var("CARGO_TARGET_TMPDIR").unwrap_or_else(|_| "target".into());
    let base = tempfile::Builder::new()
        .prefix("uplink-workload")
        .tempdir_in(&tmp)
        .map_err(|e| format!("temp dir in {tmp}: {e}"))?;
    let dir = base.path();
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).map_err(|e| format!("mkdir {profiles:?}: {e}"))?;
    std::fs::write(profiles.join("bench10.toml"), PROFILE)
        .map_err(|e| format!("write profile: {e}"))?;

    let mut broker = Mosquitto::new(dir, true, None)?;
    let sub = Subscriber::start(broker.port, "gasdtu/#", "bench-workload-sub", true)?;
    sub.wait_subscribed(1, Duration::from_secs(10))?;

    let mut gws = Vec::new();
    for enc in ["json", "cbor"] {
        let id = format!("wl-{enc}");
        let state = dir.join(&id);
        let sim_port = free_port()?;
        let cfg = dir.join(format!("{id}.toml"));
        std::fs::write(
            &cfg,
            config_text(&id, &state, &profiles, sim_port, broker.port, enc),
        )
        .map_err(|e| format!("write {cfg:?}: {e}"))?;
        check_config(&bin, &cfg)?;
        let sim = simulator(&bin, sim_port, &profiles)?;
        wait_port(sim_port, Duration::from_secs(10))?;
        let mut daemon = Proc::spawn(
            &format!("gasdtu run ({enc})"),
            Command::new(&bin)
                .arg("run")
                .arg("--config")
                .arg(&cfg)
                .arg("--socket")
                .arg(dir.join(format!("{id}.sock")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )?;
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = log.clone();
        daemon.on_stderr_lines(move |line| {
            if let Ok(mut v) = l.lock() {
                v.push(line.to_string());
            }
        })?;
        gws.push(Gw {
            enc,
            id,
            state,
            daemon,
            _sim: sim,
            log,
        });
    }

    // Warm-up: data from both daemons at the subscriber, then the rest of the warm-up.
    let t_warm = Instant::now();
    for g in &gws {
        let topic = format!("gasdtu/{}/data", g.id);
        wait_for(
            &format!("the first data message of {}", g.id),
            Duration::from_secs(warmup + 20),
            || {
                sub.snapshot()
                    .iter()
                    .any(|m| m.topic == topic)
                    .then_some(())
            },
        )?;
    }
    if let Some(rest) = Duration::from_secs(warmup).checked_sub(t_warm.elapsed()) {
        std::thread::sleep(rest);
    }
    // Start half way between two polls (they run on whole wall-clock seconds).
    std::thread::sleep(Duration::from_millis(
        ((1500 - now_ms() % 1000) % 1000) as u64,
    ));

    for g in gws.iter_mut() {
        g.daemon.alive()?;
    }
    let s0: Vec<Snap> = gws
        .iter()
        .map(|g| snap(g.daemon.pid()))
        .collect::<Res<_>>()?;
    let t0_ms = now_ms();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1)),
        );
        for g in gws.iter_mut() {
            g.daemon.alive()?;
        }
        broker.alive()?;
    }
    let s1: Vec<Snap> = gws
        .iter()
        .map(|g| snap(g.daemon.pid()))
        .collect::<Res<_>>()?;
    let t1_ms = now_ms();

    // Outages: stop the broker, wait, start it again on the same port; measure the first
    // `online` and the first data message of each daemon after each restart.
    let mut outage_spans = Vec::new();
    let mut online_after = vec![Vec::new(); gws.len()];
    let mut data_after = vec![Vec::new(); gws.len()];
    for k in 0..outages {
        if k > 0 {
            // Catch up between outages.
            std::thread::sleep(Duration::from_secs(8));
        }
        let t_stop_ms = now_ms();
        broker.stop()?;
        std::thread::sleep(Duration::from_secs(outage));
        // From the moment the broker process is started (an upper bound by mosquitto's own
        // start-up, a few ms): taken before, so a daemon that connects while `start` still
        // polls the port is not missed.
        let t_restart_ms = now_ms();
        broker.start()?;
        outage_spans.push((t_stop_ms, t_restart_ms));
        for (i, g) in gws.iter().enumerate() {
            let status = format!("gasdtu/{}/status", g.id);
            let data = format!("gasdtu/{}/data", g.id);
            let first = |topic: &str, need_online: bool| {
                wait_for(
                    &format!("{topic} after the broker restart"),
                    Duration::from_secs(60),
                    || {
                        sub.snapshot()
                            .iter()
                            .filter(|m| m.recv_ms >= t_restart_ms && m.topic == topic)
                            .find(|m| !need_online || m.payload == b"online")
                            .map(|m| m.recv_ms - t_restart_ms)
                    },
                )
            };
            online_after[i].push(first(&status, true).ok());
            data_after[i].push(first(&data, false).ok());
        }
    }
    // Catch up, then stop the daemons cleanly (they flush what is pending for up to 5 s).
    std::thread::sleep(Duration::from_secs(10));
    let mut mem = Vec::new();
    for g in &gws {
        let pid = g.daemon.pid();
        mem.push((
            status_kib(pid, "VmHWM")?,
            status_kib(pid, "VmRSS")?,
            threads(pid)?,
        ));
    }
    for g in gws.iter_mut() {
        g.daemon.alive()?;
        sigterm(g.daemon.pid())?;
    }
    for g in gws.iter_mut() {
        wait_exit(&mut g.daemon, Duration::from_secs(20))?;
    }
    // Nothing new at the subscriber for 2 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = sub.len();
    let mut quiet = Instant::now();
    while Instant::now() < deadline && quiet.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(200));
        if sub.len() != seen {
            seen = sub.len();
            quiet = Instant::now();
        }
    }
    let msgs = sub.snapshot();
    drop(sub);
    broker.stop()?;

    let mut results = Vec::new();
    for (i, g) in gws.iter().enumerate() {
        let data = format!("gasdtu/{}/data", g.id);
        // First arrival of each reading; messages deduplicated by seq.
        let mut seqs = HashSet::new();
        let mut first_rx: HashMap<Reading, i64> = HashMap::new();
        let (mut win_msgs, mut win_bytes, mut win_msg_readings, mut dups) =
            (0u64, 0u64, 0u64, 0u64);
        for m in msgs.iter().filter(|m| m.topic == data) {
            let d = decode_data(&m.payload)?;
            if d.gw != g.id {
                return Err(format!("message on {data} from gateway {:?}", d.gw));
            }
            if !seqs.insert(d.seq) {
                dups += 1;
                continue;
            }
            if m.recv_ms >= t0_ms && m.recv_ms < t1_ms {
                win_msgs += 1;
                win_bytes += m.payload.len() as u64;
                win_msg_readings += d.readings.len() as u64;
            }
            for r in d.readings {
                first_rx.entry(r).or_insert(m.recv_ms);
            }
        }
        let mut lat: Vec<i64> = first_rx
            .iter()
            .filter(|(r, _)| r.t_ms >= t0_ms && r.t_ms < t1_ms)
            .map(|(r, rx)| rx - r.t_ms)
            .collect();
        if let Ok(path) = std::env::var("GASDTU_BENCH_DUMP") {
            let mut text = String::new();
            for (r, rx) in &first_rx {
                let _ = writeln!(text, "{} {} {} {rx}", r.device, r.point, r.t_ms);
            }
            let path = format!("{path}.{}", g.enc);
            std::fs::write(&path, text).map_err(|e| format!("write {path}: {e}"))?;
        }
        lat.sort_unstable();
        let win_readings = lat.len() as u64;
        let outage_readings = first_rx
            .keys()
            .filter(|r| {
                outage_spans
                    .iter()
                    .any(|(a, b)| r.t_ms >= *a && r.t_ms < *b)
            })
            .count() as u64;
        let exported = export(&bin, &g.state, &dir.join(format!("{}.jsonl", g.id)))?;
        let delivered = exported.iter().filter(|(_, d)| *d).count() as u64;
        let lost: Vec<Reading> = exported
            .iter()
            .filter(|(r, d)| *d && !first_rx.contains_key(r))
            .map(|(r, _)| r.clone())
            .collect();
        let (a, b) = (s0[i], s1[i]);
        results.push(Result1 {
            enc: g.enc,
            cpu_ms: b.ns.saturating_sub(a.ns) as f64 / 1e6,
            cpu_ticks_ms: b.ticks.saturating_sub(a.ticks) as f64 * 1000.0 / tck as f64,
            win_readings,
            hwm_kib: mem[i].0,
            rss_kib: mem[i].1,
            threads: mem[i].2,
            disk: b.write_bytes.saturating_sub(a.write_bytes),
            wchar: b.wchar.saturating_sub(a.wchar),
            win_msgs,
            win_bytes,
            win_msg_readings,
            lat,
            online_after_ms: online_after[i].clone(),
            data_after_ms: data_after[i].clone(),
            outage_readings,
            exported: exported.len() as u64,
            delivered,
            undelivered: exported.len() as u64 - delivered,
            lost: lost.len() as u64,
            lost_examples: lost.into_iter().take(5).collect(),
            dup_msgs: dups,
            log: g.log.lock().map(|v| v.clone()).unwrap_or_default(),
        });
    }
    drop(gws);

    let window = (t1_ms - t0_ms) as f64 / 1000.0;
    let nominal = DEVICES * POINTS * secs;
    let mut r = String::new();
    let _ = writeln!(r, "gasdtu benchmark: uplink_workload (standard workload end to end: poll, store, forward to mosquitto)");
    let _ = writeln!(r, "date: {started}");
    let _ = writeln!(r, "{machine_line}");
    let _ = writeln!(
        r,
        "binary: {} (cargo bench profile = release: opt-level s, LTO, 1 codegen unit)",
        bin.display()
    );
    let _ = writeln!(
        r,
        "setup: {DEVICES} Modbus TCP devices x {POINTS} points (bench10, one 14-register read each), poll 1s, each daemon against its own `gasdtu simulate`; \
         store in a state dir under target/tmp (disk); [uplink] to mosquitto 2.0 on 127.0.0.1, PLAIN TCP (tls = false), QoS 1, defaults \
         (max_payload 1024, inflight 8, reconnect_min 1s, reconnect_max 5s); the JSON and the CBOR daemon run side by side for the same window"
    );
    let _ = writeln!(
        r,
        "window: {window:.2} s after {warmup} s warm-up ({nominal} readings nominal per daemon); CPU = the daemon's threads' on-CPU time (schedstat), utime+stime in brackets; \
         latency = subscriber arrival time minus the reading's read time in the payload (first arrival; same machine, same clock); \
         payload bytes = data payloads that arrived in the window / readings they carried; disk = /proc/<pid>/io write_bytes delta"
    );
    let _ = writeln!(r);
    for x in &results {
        let per = x.cpu_ms / x.win_readings.max(1) as f64;
        let pct = |p| {
            percentile(&x.lat, p)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            r,
            "{} daemon (encoding = \"{}\")",
            x.enc.to_uppercase(),
            x.enc
        );
        let _ = writeln!(
            r,
            "    readings read in the window and delivered: {} ({:.1}/s)\n    \
             CPU {:.1} ms (utime+stime {:.0} ms) = {:.3} % of one core = {per:.5} ms CPU per reading\n    \
             peak RSS (VmHWM) {:.2} MiB, RSS at end {:.2} MiB, threads {}\n    \
             payload: {} data messages, {} bytes, {} readings = {:.1} B/reading, {:.0} B/message, {:.1} readings/message\n    \
             read-to-broker latency (ms): p50 {}, p90 {}, p99 {}, max {}\n    \
             disk: write_bytes {:.1} KiB = {:.1} B/reading (wchar {:.1} B/reading)\n    \
             reconnect after each of {outages} broker restarts ({outage} s outages): `online` after {}; first data message after {}",
            x.win_readings,
            x.win_readings as f64 / window,
            x.cpu_ms,
            x.cpu_ticks_ms,
            x.cpu_ms / 10.0 / window,
            x.hwm_kib as f64 / 1024.0,
            x.rss_kib as f64 / 1024.0,
            x.threads,
            x.win_msgs,
            x.win_bytes,
            x.win_msg_readings,
            x.win_bytes as f64 / x.win_msg_readings.max(1) as f64,
            x.win_bytes as f64 / x.win_msgs.max(1) as f64,
            x.win_msg_readings as f64 / x.win_msgs.max(1) as f64,
            pct(50.0),
            pct(90.0),
            pct(99.0),
            x.lat.last().map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            x.disk as f64 / 1024.0,
            x.disk as f64 / x.win_readings.max(1) as f64,
            x.wchar as f64 / x.win_readings.max(1) as f64,
            secs_list(&x.online_after_ms),
            secs_list(&x.data_after_ms),
        );
        let _ = writeln!(
            r,
            "    no loss: the store exported {} readings, {} marked delivered, {} still buffered at exit; delivered but never received: {}; \
             readings read during the outages that arrived: {}; duplicate messages (same seq) dropped: {}",
            x.exported, x.delivered, x.undelivered, x.lost, x.outage_readings, x.dup_msgs
        );
        for l in &x.lost_examples {
            let _ = writeln!(r, "      lost: {l:?}");
        }
        let warn: Vec<&String> = x
            .log
            .iter()
            .filter(|l| !l.contains("uplink down"))
            .take(5)
            .collect();
        let downs = x.log.iter().filter(|l| l.contains("uplink down")).count();
        let _ = writeln!(r, "    daemon log: {downs} `uplink down` warnings (expected during the outage), {} other lines", x.log.len() - downs);
        for l in warn {
            let _ = writeln!(r, "      {l}");
        }
        let _ = writeln!(r);
    }
    let _ = writeln!(r, "peer (ThingsBoard IoT Gateway, same machine): {PEER_MS_PER_READING} ms CPU/reading, {PEER_RSS_MIB} MiB RSS, ~{PEER_BYTES_PER_READING} B/reading, {PEER_LATENCY_MS} ms median latency, {PEER_RECONNECT_S} s to reconnect");
    for x in &results {
        let per = x.cpu_ms / x.win_readings.max(1) as f64;
        let p50 = percentile(&x.lat, 50.0).unwrap_or(0) as f64;
        let _ = writeln!(
            r,
            "gasdtu {}: {:.1}x less CPU per reading, {:.1}x less RSS, {:.2}x the peer's bytes per reading, {:.1}x lower median latency, reconnect {}",
            x.enc.to_uppercase(),
            PEER_MS_PER_READING / per,
            PEER_RSS_MIB / (x.hwm_kib as f64 / 1024.0),
            (x.win_bytes as f64 / x.win_msg_readings.max(1) as f64) / PEER_BYTES_PER_READING,
            PEER_LATENCY_MS / p50.max(1.0),
            worst(&x.data_after_ms).map(|v| format!("at worst {:.1} s = {:.1}x faster", v as f64 / 1000.0, PEER_RECONNECT_S * 1000.0 / (v.max(1) as f64))).unwrap_or_else(|| "NEVER".into()),
        );
    }
    publish("uplink_workload", &r)?;

    for x in &results {
        if x.lost > 0 {
            return Err(format!(
                "{}: {} delivered readings never reached the subscriber",
                x.enc, x.lost
            ));
        }
        if x.win_readings < nominal * 9 / 10 {
            return Err(format!(
                "{}: only {} readings of the window were delivered (expected about {nominal})",
                x.enc, x.win_readings
            ));
        }
        if worst(&x.online_after_ms).is_none() || worst(&x.data_after_ms).is_none() {
            return Err(format!(
                "{}: did not reconnect within 60 s of the broker's restart",
                x.enc
            ));
        }
    }
    Ok(())
}

/// "1.10 s, 3.25 s, NEVER (60 s)".
fn secs_list(v: &[Option<i64>]) -> String {
    v.iter()
        .map(|x| {
            x.map(|ms| format!("{:.2} s", ms as f64 / 1000.0))
                .unwrap_or_else(|| "NEVER (60 s)".into())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The largest value, or None if any is missing.
fn worst(v: &[Option<i64>]) -> Option<i64> {
    v.iter().try_fold(0i64, |m, x| x.map(|x| m.max(x)))
}
