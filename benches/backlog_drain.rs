//! Benchmark: backlog drain. How many readings per second the real `gasdtu run` delivers to a
//! local mosquitto from a backlog of one million readings (a long outage of the standard
//! workload: 20 devices x 10 points, one batch per device and second). The backlog is built
//! once WITHOUT a broker through the library (`Store::open` + `commit` of whole poll cycles
//! with trusted times, ten cycles per transaction), the database is copied into one state
//! directory per scenario, and the daemon (no devices, only the `[uplink]`) drains it while a
//! rumqttc subscriber records every message. The clock stops when the store reports no
//! unacknowledged reading (read-only `Store::stats()`, i.e. what `gasdtu queue` prints).
//! Scenarios: JSON and CBOR at the default `max_payload` 1024, JSON and CBOR at 16384, plain
//! TCP (`tls = false`), and JSON 1024 over TLS for comparison. Reports readings/s, messages/s,
//! payload bytes, the daemon's CPU, peak RSS and disk bytes written, and checks that the
//! subscriber saw every reading (by (device, point, time), duplicates by sequence number).
//! Writes bench-results/backlog_drain.txt.
//!
//! Env: GASDTU_BENCH_READINGS (backlog size, default 1000000, a multiple of 200),
//! GASDTU_BENCH_MAX_SECS (per-scenario time limit, default 180: past it the rate measured so far
//! is reported and the full drain time extrapolated, said so in the report),
//! GASDTU_BENCH_SCENARIOS (comma list of json1k,cbor1k,json16k,cbor16k,tls1k; default all).

mod support;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gasdtu::config::StoreConfig;
use gasdtu::model::{Quality, Sample, SampleBatch, Value};
use gasdtu::store::{ClockStamp, Store};
use gasdtu::time::from_unix_ms;

use support::*;

const DEVICES: usize = 20;
const CYCLES_PER_COMMIT: usize = 10;

/// The bench10 points of the workload benchmark (name, unit).
const POINTS: [(&str, Option<&str>); 10] = [
    ("flow_standard", Some("Sm3/h")),
    ("flow_measured", Some("m3/h")),
    ("pressure", Some("kPa")),
    ("temperature", Some("degC")),
    ("volume_standard", Some("Sm3")),
    ("volume_measured", Some("m3")),
    ("battery", Some("%")),
    ("status", None),
    ("status_low_battery", None),
    ("status_tamper", None),
];

struct Names {
    devices: Vec<Arc<str>>,
    points: Vec<(Arc<str>, Option<Arc<str>>)>,
    bus: Arc<str>,
}

fn names() -> Names {
    Names {
        devices: (1..=DEVICES)
            .map(|d| Arc::from(format!("dev{d:02}")))
            .collect(),
        points: POINTS
            .iter()
            .map(|(p, u)| (Arc::from(*p), u.map(Arc::from)))
            .collect(),
        bus: "bus".into(),
    }
}

/// One poll cycle at `t` (UTC ms): values shaped like the simulator's (f32 flows, pressure and
/// temperature, growing u32 totals, battery, status word and bits).
fn cycle(n: &Names, t: i64) -> Vec<SampleBatch> {
    let s = t / 1000;
    n.devices
        .iter()
        .enumerate()
        .map(|(d, dev)| {
            let read = from_unix_ms(t + 3 + d as i64);
            let di = d as i64;
            SampleBatch {
                device: dev.clone(),
                bus: n.bus.clone(),
                slot: from_unix_ms(t),
                online: true,
                failed_cycles: 0,
                samples: n
                    .points
                    .iter()
                    .enumerate()
                    .map(|(i, (p, u))| {
                        let f = |base: f64, span: i64| {
                            Value::Float(f64::from(
                                (base + ((s * 7 + di * 13 + i as i64) % span) as f64 / 37.0) as f32,
                            ))
                        };
                        let value = match i {
                            0 => f(120.0, 900),
                            1 => f(30.0, 500),
                            2 => f(400.0, 200),
                            3 => f(10.0, 300),
                            4 => Value::UInt(1_000_000 + (s - 1_700_000_000) as u64 / 3 + d as u64),
                            5 => Value::UInt(800_000 + (s - 1_700_000_000) as u64 / 4 + d as u64),
                            6 => Value::UInt(87),
                            7 => Value::UInt(0),
                            _ => Value::Bool(false),
                        };
                        Sample {
                            point: p.clone(),
                            value: Some(value),
                            unit: u.clone(),
                            quality: Quality::Good,
                            read_at: read,
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Fill a store in `dir` with `readings` readings ending a minute ago; returns the time taken.
fn fill(dir: &Path, readings: u64) -> Res<Duration> {
    let n = names();
    let cycles = (readings / (DEVICES * POINTS.len()) as u64) as i64;
    let t_end = now_ms() / 1000 * 1000 - 60_000;
    let t0 = t_end - cycles * 1000;
    let start = Instant::now();
    let (store, _) = Store::open(dir, &StoreConfig::default())
        .map_err(|e| format!("open the backlog store: {e}"))?;
    let mut c = 0;
    while c < cycles {
        let mut group = Vec::new();
        let mut last = t0;
        for k in c..(c + CYCLES_PER_COMMIT as i64).min(cycles) {
            last = t0 + k * 1000;
            group.extend(cycle(&n, last));
        }
        let stamp = ClockStamp {
            wall_ms: last + 500,
            mono_ms: last + 500 - t0 + 10_000,
            boot_id: "bench-fill".into(),
        };
        store
            .commit(&group, &[], &stamp)
            .map_err(|e| format!("commit into the backlog store: {e}"))?;
        c += CYCLES_PER_COMMIT as i64;
    }
    let stats = store.stats().map_err(|e| format!("stats: {e}"))?;
    if stats.pending_readings != readings {
        return Err(format!(
            "the backlog holds {} pending readings, expected {readings}",
            stats.pending_readings
        ));
    }
    drop(store); // closes: checkpoints the WAL into the main file
    Ok(start.elapsed())
}

fn copy_store(from: &Path, to: &Path) -> Res<()> {
    std::fs::create_dir_all(to).map_err(|e| format!("mkdir {to:?}: {e}"))?;
    for f in std::fs::read_dir(from).map_err(|e| format!("list {from:?}: {e}"))? {
        let f = f.map_err(|e| format!("list {from:?}: {e}"))?;
        let dst = to.join(f.file_name());
        std::fs::copy(f.path(), &dst).map_err(|e| format!("copy to {dst:?}: {e}"))?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Scenario {
    key: &'static str,
    encoding: &'static str,
    max_payload: usize,
    tls: bool,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        key: "json1k",
        encoding: "json",
        max_payload: 1024,
        tls: false,
    },
    Scenario {
        key: "cbor1k",
        encoding: "cbor",
        max_payload: 1024,
        tls: false,
    },
    Scenario {
        key: "json16k",
        encoding: "json",
        max_payload: 16384,
        tls: false,
    },
    Scenario {
        key: "cbor16k",
        encoding: "cbor",
        max_payload: 16384,
        tls: false,
    },
    Scenario {
        key: "tls1k",
        encoding: "json",
        max_payload: 1024,
        tls: true,
    },
];

struct Outcome {
    sc: Scenario,
    readings: u64,
    complete: bool,
    /// Daemon start to "no unacknowledged reading" (or to the time limit).
    secs: f64,
    /// Readings acknowledged (store's history) when the clock stopped.
    acked: u64,
    /// Subscriber side.
    msgs: u64,
    payload_bytes: u64,
    rx_readings: u64,
    unique_readings: u64,
    dup_msgs: u64,
    first_to_last_s: f64,
    not_hist: u64,
    cpu_ms: f64,
    cpu_ticks_ms: f64,
    hwm_kib: u64,
    disk_write: u64,
    wchar: u64,
}

fn config(s: &Scenario, state: &Path, port: u16, ca: Option<&Path>) -> String {
    let mut c = format!(
        "[gateway]\nid = \"drain-{}\"\nstate_dir = \"{}\"\nlog_level = \"warn\"\n\n[uplink]\n\
         host = \"127.0.0.1\"\nport = {port}\nencoding = \"{}\"\nmax_payload = {}\n",
        s.key,
        state.display(),
        s.encoding,
        s.max_payload
    );
    match ca {
        Some(ca) => {
            let _ = writeln!(c, "tls = true\nca_file = \"{}\"", ca.display());
        }
        None => c.push_str("tls = false\n"),
    }
    c
}

#[allow(clippy::too_many_arguments)]
fn drain(
    bin: &Path,
    base: &Path,
    template: &Path,
    sc: Scenario,
    readings: u64,
    max_secs: u64,
    tck: u64,
    pki: &(PathBuf, PathBuf, PathBuf),
) -> Res<Outcome> {
    let dir = base.join(sc.key);
    let state = dir.join("state");
    copy_store(template, &state)?;
    let tls = if sc.tls {
        Some(BrokerTls {
            port: free_port()?,
            ca: pki.0.clone(),
            cert: pki.1.clone(),
            key: pki.2.clone(),
        })
    } else {
        None
    };
    let mut broker = Mosquitto::new(&dir, false, tls.clone())?;
    let sub = Subscriber::start(broker.port, "gasdtu/#", &format!("sub-{}", sc.key), false)?;
    sub.wait_subscribed(1, Duration::from_secs(10))?;
    let (port, ca) = match &tls {
        Some(t) => (t.port, Some(pki.0.as_path())),
        None => (broker.port, None),
    };
    let cfg = dir.join("gasdtu.toml");
    std::fs::write(&cfg, config(&sc, &state, port, ca))
        .map_err(|e| format!("write {cfg:?}: {e}"))?;
    check_config(bin, &cfg)?;

    let t0 = Instant::now();
    let mut daemon = Proc::spawn(
        &format!("gasdtu run ({})", sc.key),
        Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .arg("--socket")
            .arg(dir.join("gasdtu.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )?;
    let pid = daemon.pid();
    let end = t0 + Duration::from_secs(max_secs);
    let mut last_print = Instant::now();
    let (complete, acked) = loop {
        std::thread::sleep(Duration::from_millis(1000));
        daemon.alive()?;
        broker.alive()?;
        let stats = Store::open_read_only(&state)
            .and_then(|s| s.stats())
            .map_err(|e| format!("read-only stats of {state:?}: {e}"))?;
        if stats.pending_readings == 0 && stats.sealed_messages == 0 {
            break (true, stats.history_readings);
        }
        if Instant::now() >= end {
            break (false, stats.history_readings);
        }
        if last_print.elapsed() >= Duration::from_secs(15) {
            last_print = Instant::now();
            eprintln!(
                "  {}: {:.0} s, {} readings acknowledged, {} pending",
                sc.key,
                t0.elapsed().as_secs_f64(),
                stats.history_readings,
                stats.pending_readings
            );
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    let (ns, _) = sched_ns(pid)?;
    let ticks = cpu_ticks(pid)?;
    let hwm = status_kib(pid, "VmHWM")?;
    let (wb, wc) = proc_io(pid)?;
    sigterm(pid)?;
    wait_exit(&mut daemon, Duration::from_secs(15))?;
    // Let the last messages reach the subscriber: until nothing new arrives for 2 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = sub.len();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && quiet_since.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(200));
        let now = sub.len();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
    let msgs = sub.snapshot();
    drop(sub);
    broker.stop()?;

    let mut seen_seq = HashSet::new();
    let mut unique = HashSet::new();
    let (mut n, mut bytes, mut rx, mut dups, mut not_hist) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for m in msgs.iter().filter(|m| m.topic.ends_with("/data")) {
        let d = decode_data(&m.payload)?;
        if !seen_seq.insert(d.seq) {
            dups += 1;
            continue;
        }
        n += 1;
        bytes += m.payload.len() as u64;
        rx += d.readings.len() as u64;
        if !d.hist {
            not_hist += 1;
        }
        first = first.min(m.recv_ms);
        last = last.max(m.recv_ms);
        unique.extend(d.readings);
    }
    Ok(Outcome {
        sc,
        readings,
        complete,
        secs,
        acked,
        msgs: n,
        payload_bytes: bytes,
        rx_readings: rx,
        unique_readings: unique.len() as u64,
        dup_msgs: dups,
        first_to_last_s: (last - first).max(0) as f64 / 1000.0,
        not_hist,
        cpu_ms: ns as f64 / 1e6,
        cpu_ticks_ms: ticks as f64 * 1000.0 / tck as f64,
        hwm_kib: hwm,
        disk_write: wb,
        wchar: wc,
    })
}

fn main() {
    main_with("backlog_drain", run);
}

fn run() -> Res<()> {
    let readings = env_u64("GASDTU_BENCH_READINGS", 1_000_000)?;
    let per_cycle = (DEVICES * POINTS.len()) as u64;
    if readings == 0 || readings % per_cycle != 0 {
        return Err(format!(
            "GASDTU_BENCH_READINGS={readings} must be a positive multiple of {per_cycle}"
        ));
    }
    let max_secs = env_u64("GASDTU_BENCH_MAX_SECS", 180)?;
    let wanted: Vec<String> = std::env::var("GASDTU_BENCH_SCENARIOS")
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_else(|_| SCENARIOS.iter().map(|s| s.key.to_string()).collect());
    let scenarios: Vec<Scenario> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| wanted.iter().any(|w| w == s.key))
        .collect();
    if scenarios.is_empty() {
        return Err(format!(
            "GASDTU_BENCH_SCENARIOS selects nothing: {wanted:?}"
        ));
    }
    require_mosquitto()?;
    let bin = gasdtu()?;
    let (tck, _) = clk_tck();
    let machine_line = machine();
    let started = utc_now();

    // On disk (cargo's target tmp dir), not tmpfs: disk bytes written must be real.
    let tmp = std::env::var("CARGO_TARGET_TMPDIR").unwrap_or_else(|_| "target".into());
    let base = tempfile::Builder::new()
        .prefix("backlog-drain")
        .tempdir_in(&tmp)
        .map_err(|e| format!("temp dir in {tmp}: {e}"))?;
    let pki = make_pki(base.path())?;
    let template = base.path().join("template");
    eprintln!("filling a backlog of {readings} readings...");
    let fill_time = fill(&template, readings)?;
    let db_bytes = std::fs::metadata(template.join(gasdtu::store::DB_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!("filled in {:.1} s", fill_time.as_secs_f64());

    let mut outcomes = Vec::new();
    for sc in scenarios {
        eprintln!("draining: {}", sc.key);
        let o = drain(
            &bin,
            base.path(),
            &template,
            sc,
            readings,
            max_secs,
            tck,
            &pki,
        )?;
        eprintln!("  {}: {} readings in {:.1} s", sc.key, o.acked, o.secs);
        // Free the disk before the next copy.
        let _ = std::fs::remove_dir_all(base.path().join(sc.key));
        outcomes.push(o);
    }

    let mut r = String::new();
    let _ = writeln!(r, "gasdtu benchmark: backlog_drain (readings per second delivered from a backlog to a local mosquitto)");
    let _ = writeln!(r, "date: {started}");
    let _ = writeln!(r, "{machine_line}");
    let _ = writeln!(
        r,
        "binary: {} (cargo bench profile = release: opt-level s, LTO, 1 codegen unit)",
        bin.display()
    );
    let _ = writeln!(
        r,
        "backlog: {readings} readings = {} poll cycles of {DEVICES} devices x {} points (bench10 names and units, f32 floats, u32 totals), \
         one entry per device and cycle, built through the library in {:.1} s ({} cycles per commit); database {:.1} MiB, copied for each scenario",
        readings / per_cycle,
        POINTS.len(),
        fill_time.as_secs_f64(),
        CYCLES_PER_COMMIT,
        db_bytes as f64 / 1048576.0
    );
    let _ = writeln!(
        r,
        "daemon: the real `gasdtu run`, no devices, [uplink] to mosquitto 2.0 on 127.0.0.1 (plain TCP, tls = false, unless the scenario says TLS), \
         QoS 1, inflight 8 (default), on a state directory under target/tmp (disk, not tmpfs). \
         Timed from the daemon's start (includes opening the store with quick_check) until the store (read-only stats every 1 s) has no \
         unacknowledged reading. CPU = the daemon's threads' on-CPU time (schedstat, living threads; utime+stime incl. exited threads in brackets); \
         disk = /proc/<pid>/io write_bytes of the daemon (its SQLite seals and acks)."
    );
    let _ = writeln!(r, "subscriber: rumqttc, QoS 1, same broker (plain listener), records every message; readings counted by decoding each payload with gasdtu::uplink::decode.");
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "{:<26} {:>9} {:>10} {:>8} {:>9} {:>9} {:>8} {:>10} {:>10} {:>9} {:>9}",
        "scenario",
        "time s",
        "readings/s",
        "msgs/s",
        "rd/msg",
        "B/msg",
        "B/rd",
        "CPU s",
        "ms CPU/krd",
        "peak RSS",
        "disk B/rd"
    );
    let mut notes = Vec::new();
    for o in &outcomes {
        let label = format!(
            "{} {} max_payload {}",
            if o.sc.tls { "TLS" } else { "TCP" },
            o.sc.encoding.to_uppercase(),
            o.sc.max_payload
        );
        let rate = o.acked as f64 / o.secs;
        let _ = writeln!(
            r,
            "{:<26} {:>9} {:>10.0} {:>8.1} {:>9.1} {:>9.0} {:>8.1} {:>10.2} {:>10.1} {:>8.1}M {:>9.1}",
            label,
            if o.complete { format!("{:.1}", o.secs) } else { format!("~{:.0}*", o.readings as f64 / rate) },
            rate,
            o.msgs as f64 / o.secs,
            o.rx_readings as f64 / o.msgs.max(1) as f64,
            o.payload_bytes as f64 / o.msgs.max(1) as f64,
            o.payload_bytes as f64 / o.rx_readings.max(1) as f64,
            o.cpu_ms / 1000.0,
            o.cpu_ms / (o.acked.max(1) as f64 / 1000.0),
            o.hwm_kib as f64 / 1024.0,
            o.disk_write as f64 / o.acked.max(1) as f64,
        );
        let mut note = format!(
            "{label}: {} of {} readings acknowledged in {:.1} s; subscriber: {} data messages ({} duplicates by seq dropped), {} readings, {} distinct (device, point, time), \
             {} payload bytes, first to last message {:.1} s; {} messages not marked historical; CPU {:.2} s (utime+stime {:.2} s); \
             disk write_bytes {:.1} MiB, wchar {:.1} MiB",
            o.acked,
            o.readings,
            o.secs,
            o.msgs,
            o.dup_msgs,
            o.rx_readings,
            o.unique_readings,
            o.payload_bytes,
            o.first_to_last_s,
            o.not_hist,
            o.cpu_ms / 1000.0,
            o.cpu_ticks_ms / 1000.0,
            o.disk_write as f64 / 1048576.0,
            o.wchar as f64 / 1048576.0,
        );
        if !o.complete {
            let _ = write!(
                note,
                "\n    * NOT DRAINED: stopped at the {max_secs} s limit; the full time is EXTRAPOLATED from the rate measured on the first {} readings",
                o.acked
            );
        }
        if o.complete && o.unique_readings != o.readings {
            let _ = write!(
                note,
                "\n    !! the subscriber saw {} distinct readings, expected {}",
                o.unique_readings, o.readings
            );
        }
        notes.push(note);
    }
    let _ = writeln!(r, "\nrd/msg, B/msg, B/rd: subscriber side (payload bytes only, no MQTT/TCP overhead); ms CPU/krd = daemon CPU ms per 1000 readings; disk B/rd = daemon write_bytes per reading delivered.");
    let _ = writeln!(r, "\ndetails:");
    for n in notes {
        let _ = writeln!(r, "  {n}");
    }
    publish("backlog_drain", &r)?;
    for o in &outcomes {
        if o.complete && o.unique_readings != o.readings {
            return Err(format!(
                "{}: the subscriber saw {} distinct readings, the backlog had {}",
                o.sc.key, o.unique_readings, o.readings
            ));
        }
    }
    Ok(())
}
