//! Benchmark: what the real daemon writes to flash per reading (issue 13). Runs the release
//! `gasdtu run` as child processes against `gasdtu simulate` devices and a mosquitto on a free
//! loopback port (plain MQTT), and reads `write_bytes` from /proc/<daemon pid>/io: every byte
//! the daemon caused to be sent to the block layer (WAL frames, checkpoints, -shm pages, side
//! files, everything), before any FTL write amplification. Readings delivered are counted by a
//! subscriber (data messages decoded with `gasdtu::uplink::decode`).
//!
//! - W1: 20 Modbus TCP devices x 10 points (4 f32, 2 u32, 4 i16 x 0.1), polled every 1 s, one
//!   daemon per encoding (JSON and CBOR, data formats 1 and 2 (`json2`, `cbor2`), side by side, each with its own simulator): write_bytes
//!   delta over the window / readings delivered in the window.
//! - 5-minute station: 6 devices, 50 points in total (4 x 8 + 2 x 9). Per-cycle bytes are
//!   measured with a 2 s poll (same writes per cycle as a 5-minute poll: every cycle is its own
//!   commits); idle writes with a second daemon of the same station polling every 1 h (no
//!   cycle falls in the window after its first one). Bytes per day = per cycle x 288 + idle per
//!   minute x 1440.
//!
//! Env: GASDTU_BENCH_SECS (W1 window per encoding, default 60), GASDTU_BENCH_WARMUP_SECS
//! (default 15), GASDTU_FLASH_STATION_SECS (station windows, default 60; 0 skips the station),
//! GASDTU_FLASH_LABEL (what this run measures, e.g. "before"). Each run is appended to
//! bench-results/flash_wear.txt (earlier runs are kept: before/after history).

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// W1's device: 4 f32, 2 u32, 4 i16 x 0.1 (16 holding registers, one read).
const W1_PROFILE: &str = r#"
[profile]
id = "w1"
name = "W1 device, 10 points"
follows = "none: the peer benchmark's W1 map (benches/flash_wear.rs)"
description = "4 f32, 2 u32, 4 i16 x 0.1 in 16 holding registers"
default_order = "ABCD"

[points.flow_standard]
table = "holding"
address = 0
type = "f32"
unit = "Sm3/h"

[points.flow_measured]
table = "holding"
address = 2
type = "f32"
unit = "m3/h"

[points.pressure]
table = "holding"
address = 4
type = "f32"
unit = "kPa"

[points.temperature]
table = "holding"
address = 6
type = "f32"
unit = "degC"

[points.volume_standard]
table = "holding"
address = 8
type = "u32"
unit = "Sm3"

[points.volume_measured]
table = "holding"
address = 10
type = "u32"
unit = "m3"

[points.battery]
table = "holding"
address = 12
type = "i16"
scale = 0.1
unit = "%"

[points.ambient]
table = "holding"
address = 13
type = "i16"
scale = 0.1
unit = "degC"

[points.line_temperature]
table = "holding"
address = 14
type = "i16"
scale = 0.1
unit = "degC"

[points.cabinet]
table = "holding"
address = 15
type = "i16"
scale = 0.1
unit = "degC"
"#;

/// The first `n` points of `W1_PROFILE` as profile `id`.
fn station_profile(id: &str, n: usize) -> String {
    let mut parts = W1_PROFILE.split("\n[points.");
    let head = parts
        .next()
        .unwrap_or("")
        .replace("\"w1\"", &format!("\"{id}\""));
    let mut s = head;
    for p in parts.take(n) {
        s.push_str("\n[points.");
        s.push_str(p);
    }
    s
}

struct Device {
    unit: u32,
    profile: &'static str,
    poll: &'static str,
}

fn config_text(
    id: &str,
    state: &Path,
    profiles: &Path,
    sim: u16,
    broker: u16,
    enc: &str,
    devs: &[Device],
) -> String {
    // "json2" / "cbor2": the encoding with data format 2 (docs/mqtt.md).
    let (enc, format) = match enc.strip_suffix('2') {
        Some(e) => (e, 2),
        None => (enc, 1),
    };
    let mut s = format!(
        "[gateway]\nid = \"{id}\"\nstate_dir = \"{}\"\nprofile_dirs = [\"{}\"]\nlog_level = \"warn\"\n\n\
         [uplink]\nhost = \"127.0.0.1\"\nport = {broker}\ntls = false\nencoding = \"{enc}\"\nformat = {format}\n",
        state.display(),
        profiles.display()
    );
    for d in devs {
        let i = d.unit;
        let _ = write!(
            s,
            "\n[buses.bus{i:02}]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {sim}\ntimeout = \"1s\"\nturnaround = \"0s\"\nretries = 1\n\
             \n[devices.dev{i:02}]\nbus = \"bus{i:02}\"\nunit = {i}\npoll = \"{}\"\nprofile = \"{}\"\n",
            d.poll, d.profile
        );
    }
    s
}

/// One daemon under test with its own simulator.
struct Gw {
    label: String,
    id: String,
    daemon: Proc,
    _sim: Proc,
    points: u64,
    poll_s: u64,
}

fn start_gw(
    bin: &Path,
    dir: &Path,
    profiles: &Path,
    broker: u16,
    label: &str,
    enc: &str,
    devs: &[Device],
) -> Res<Gw> {
    let id = format!("fw-{label}");
    let state = dir.join(&id);
    let sim_port = free_port()?;
    let cfg = dir.join(format!("{id}.toml"));
    std::fs::write(
        &cfg,
        config_text(&id, &state, profiles, sim_port, broker, enc, devs),
    )
    .map_err(|e| format!("write {cfg:?}: {e}"))?;
    check_config(bin, &cfg)?;
    let mut cmd = Command::new(bin);
    cmd.arg("simulate")
        .arg("--tcp")
        .arg(format!("127.0.0.1:{sim_port}"))
        .arg("--profile-dir")
        .arg(profiles)
        .arg("--seed")
        .arg("1")
        .arg("--log-level")
        .arg("warn");
    for d in devs {
        cmd.arg("--device").arg(format!("{}:{}", d.unit, d.profile));
    }
    let sim = Proc::spawn(
        &format!("simulator :{sim_port}"),
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )?;
    wait_port(sim_port, Duration::from_secs(10))?;
    let daemon = Proc::spawn(
        &format!("gasdtu run ({label})"),
        Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .arg("--socket")
            .arg(dir.join(format!("{id}.sock")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )?;
    let points = devs
        .iter()
        .map(|d| match d.profile {
            "st8" => 8,
            "st9" => 9,
            _ => 10,
        })
        .sum();
    let poll_s = devs
        .first()
        .map(|d| {
            humantime::parse_duration(d.poll)
                .map(|p| p.as_secs())
                .unwrap_or(1)
        })
        .unwrap_or(1);
    Ok(Gw {
        label: label.to_string(),
        id,
        daemon,
        _sim: sim,
        points,
        poll_s,
    })
}

/// Readings (and data messages) of `gw` that arrived at the subscriber in [from, to).
fn delivered(sub: &Subscriber, gw: &str, from: i64, to: i64) -> (u64, u64) {
    let topic = format!("gasdtu/{gw}/data");
    let mut readings = 0;
    let mut msgs = 0;
    for m in sub.snapshot() {
        if m.topic != topic || m.recv_ms < from || m.recv_ms >= to {
            continue;
        }
        if let Ok(d) = decode_data(&m.payload) {
            readings += d.readings.len() as u64;
            msgs += 1;
        }
    }
    (readings, msgs)
}

fn wait_first_data(sub: &Subscriber, gws: &[Gw], deadline: Duration) -> Res<()> {
    for g in gws {
        let topic = format!("gasdtu/{}/data", g.id);
        wait_for(
            &format!("the first data message of {}", g.id),
            deadline,
            || {
                sub.snapshot()
                    .iter()
                    .any(|m| m.topic == topic)
                    .then_some(())
            },
        )?;
    }
    Ok(())
}

/// Sleep `secs`, checking every second that the daemons and the broker still run.
fn window(gws: &mut [Gw], broker: &mut Mosquitto, secs: u64) -> Res<()> {
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
    Ok(())
}

fn wb(g: &Gw) -> Res<u64> {
    Ok(proc_io(g.daemon.pid())?.0)
}

fn main() {
    main_with("flash_wear", run);
}

fn run() -> Res<()> {
    let secs = env_u64("GASDTU_BENCH_SECS", 60)?.max(5);
    let warmup = env_u64("GASDTU_BENCH_WARMUP_SECS", 15)?;
    let station_secs = env_u64("GASDTU_FLASH_STATION_SECS", 60)?;
    let label = std::env::var("GASDTU_FLASH_LABEL").unwrap_or_else(|_| "unlabelled".into());
    require_mosquitto()?;
    let bin = gasdtu()?;
    let machine_line = machine();
    let started = utc_now();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();

    let tmp = std::env::var("CARGO_TARGET_TMPDIR").unwrap_or_else(|_| "target".into());
    let base = tempfile::Builder::new()
        .prefix("flash-wear")
        .tempdir_in(&tmp)
        .map_err(|e| format!("temp dir in {tmp}: {e}"))?;
    let dir = base.path();
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).map_err(|e| format!("mkdir {profiles:?}: {e}"))?;
    for (name, text) in [
        ("w1", W1_PROFILE.to_string()),
        ("st8", station_profile("st8", 8)),
        ("st9", station_profile("st9", 9)),
    ] {
        std::fs::write(profiles.join(format!("{name}.toml")), text)
            .map_err(|e| format!("write profile {name}: {e}"))?;
    }
    let mut broker = Mosquitto::new(dir, false, None)?;
    let sub = Subscriber::start(broker.port, "gasdtu/+/data", "flash-wear-sub", false)?;
    sub.wait_subscribed(1, Duration::from_secs(10))?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "== run \"{label}\" at commit {commit}, started {started}"
    );
    let _ = writeln!(out, "{machine_line}");

    // W1, JSON and CBOR side by side.
    let w1: Vec<Device> = (1..=20)
        .map(|unit| Device {
            unit,
            profile: "w1",
            poll: "1s",
        })
        .collect();
    let mut gws = vec![
        start_gw(&bin, dir, &profiles, broker.port, "w1-json", "json", &w1)?,
        start_gw(&bin, dir, &profiles, broker.port, "w1-cbor", "cbor", &w1)?,
        start_gw(&bin, dir, &profiles, broker.port, "w1-json2", "json2", &w1)?,
        start_gw(&bin, dir, &profiles, broker.port, "w1-cbor2", "cbor2", &w1)?,
    ];
    wait_first_data(&sub, &gws, Duration::from_secs(warmup + 30))?;
    std::thread::sleep(Duration::from_secs(warmup));
    // Start half way between two polls (they run on whole wall-clock seconds).
    std::thread::sleep(Duration::from_millis(
        ((1500 - now_ms() % 1000) % 1000) as u64,
    ));
    let b0: Vec<u64> = gws.iter().map(wb).collect::<Res<_>>()?;
    let t0 = now_ms();
    window(&mut gws, &mut broker, secs)?;
    let b1: Vec<u64> = gws.iter().map(wb).collect::<Res<_>>()?;
    let t1 = now_ms();
    let _ = writeln!(
        out,
        "W1: 20 TCP devices x 10 points (4 f32, 2 u32, 4 i16 x 0.1), poll 1 s, plain MQTT to mosquitto on loopback, window {:.1} s after {warmup} s warm-up",
        (t1 - t0) as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "{:<10} {:>12} {:>10} {:>9} {:>14} {:>12}",
        "daemon", "write_bytes", "readings", "messages", "disk B/reading", "KiB/cycle"
    );
    for (i, g) in gws.iter().enumerate() {
        let bytes = b1[i].saturating_sub(b0[i]);
        let (r, m) = delivered(&sub, &g.id, t0, t1);
        let per = bytes as f64 / r.max(1) as f64;
        let cycles = (t1 - t0) as f64 / 1000.0 / g.poll_s as f64;
        let _ = writeln!(
            out,
            "{:<10} {:>12} {:>10} {:>9} {:>14.1} {:>12.1}",
            g.label,
            bytes,
            r,
            m,
            per,
            bytes as f64 / cycles / 1024.0
        );
    }
    drop(gws);

    if station_secs > 0 {
        // The station: 4 devices x 8 points + 2 x 9 = 50 points.
        let devs = |poll: &'static str| -> Vec<Device> {
            (1..=6)
                .map(|unit| Device {
                    unit,
                    profile: if unit <= 4 { "st8" } else { "st9" },
                    poll,
                })
                .collect()
        };
        let mut gws = Vec::new();
        for enc in ["json", "cbor", "json2", "cbor2"] {
            gws.push(start_gw(
                &bin,
                dir,
                &profiles,
                broker.port,
                &format!("st-{enc}"),
                enc,
                &devs("2s"),
            )?);
            gws.push(start_gw(
                &bin,
                dir,
                &profiles,
                broker.port,
                &format!("idle-{enc}"),
                enc,
                &devs("1h"),
            )?);
        }
        // The idle daemons' first cycle comes at their next whole hour slot at the latest: wait
        // for the cycling ones' data, then for everyone's writes to settle.
        let cycling: Vec<&Gw> = gws.iter().filter(|g| g.poll_s == 2).collect();
        for g in cycling {
            let topic = format!("gasdtu/{}/data", g.id);
            wait_for(
                &format!("the first data message of {}", g.id),
                Duration::from_secs(warmup + 30),
                || {
                    sub.snapshot()
                        .iter()
                        .any(|m| m.topic == topic)
                        .then_some(())
                },
            )?;
        }
        std::thread::sleep(Duration::from_secs(warmup));
        let b0: Vec<u64> = gws.iter().map(wb).collect::<Res<_>>()?;
        let t0 = now_ms();
        window(&mut gws, &mut broker, station_secs)?;
        let b1: Vec<u64> = gws.iter().map(wb).collect::<Res<_>>()?;
        let t1 = now_ms();
        let mins = (t1 - t0) as f64 / 60_000.0;
        let _ = writeln!(
            out,
            "station: 6 devices, 50 points (4 x 8 + 2 x 9 of the W1 map); per cycle measured with poll 2 s, idle with poll 1 h, window {:.1} s each",
            (t1 - t0) as f64 / 1000.0
        );
        for enc in ["json", "cbor", "json2", "cbor2"] {
            let ci = gws
                .iter()
                .position(|g| g.label == format!("st-{enc}"))
                .unwrap_or(0);
            let ii = gws
                .iter()
                .position(|g| g.label == format!("idle-{enc}"))
                .unwrap_or(0);
            let (r, _) = delivered(&sub, &gws[ci].id, t0, t1);
            let (ri, _) = delivered(&sub, &gws[ii].id, t0, t1);
            let cbytes = b1[ci].saturating_sub(b0[ci]) as f64;
            let ibytes = b1[ii].saturating_sub(b0[ii]) as f64;
            let cycles = r as f64 / gws[ci].points as f64;
            let per_cycle = cbytes / cycles.max(1.0);
            let idle_min = ibytes / mins;
            let day = per_cycle * 288.0 + idle_min * 1440.0;
            let _ = writeln!(
                out,
                "  {enc}: {per_cycle:.0} B per cycle ({:.1} B/reading, {r} readings in {cycles:.1} cycles), idle {idle_min:.0} B/min ({ri} readings in the idle window), per day {:.2} MiB = {:.0} B/cycle x 288 + {:.0} B/min x 1440",
                per_cycle / gws[ci].points as f64,
                day / 1048576.0,
                per_cycle,
                idle_min
            );
        }
    }

    let path = repo_root().join("bench-results").join("flash_wear.txt");
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        String::from(
            "flash_wear: bytes the real daemon writes to disk (/proc/<pid>/io write_bytes: WAL, checkpoints, -shm, side files) per reading delivered.\n\
             Runs are appended, oldest first (before/after history). Run: GASDTU_FLASH_LABEL=... cargo bench --bench flash_wear\n\n",
        )
    });
    text.push_str(&out);
    text.push('\n');
    std::fs::write(&path, &text).map_err(|e| format!("write {path:?}: {e}"))?;
    print!("{out}");
    println!("(appended to {})", path.display());
    Ok(())
}
