//! Benchmark: one poll cycle of an RS-485 bus at 9600 baud 8N1, measured against the theoretical
//! wire time the planner computes (`planner::rtu_wire_time`, the number `gasdtu check` shows).
//! The bus is a socat pty pair; the far end is a `gasdtu simulate --serial` child process that
//! honours the line's timing (a reply is not sent before the request and the reply would have
//! finished on a real wire). The acquisition engine runs in-process (`gasdtu::modbus::start` with
//! poll-at-start and a 1 h interval, so exactly one cycle runs), and the time from start to the
//! last batch of the cycle is measured, N times per scenario. A last scenario adds a unit that
//! does not exist to show what a dead slave costs. Writes bench-results/serial_cycle.txt.
//!
//! Env: GASDTU_BENCH_REPS (cycles per scenario, default 10).

mod support;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gasdtu::config::{Config, Transport};
use gasdtu::modbus::planner;
use gasdtu::model::{BadReason, Quality, SampleBatch};
use support::*;
use tokio_util::sync::CancellationToken;

const BAUD: u32 = 9600;
/// (unit, profile, device name); names sort in polling order.
const DEVICES: [(u8, &str, &str); 3] = [
    (1, "evc-dcba", "a_evc"),
    (2, "pt-float", "c_pt"),
    (3, "turbine-bcd", "d_turbine"),
];
/// The unit nobody simulates, polled between the first and the second live device.
const DEAD: (u8, &str, &str) = (4, "pt-float", "b_dead");

struct Scenario {
    title: &'static str,
    turnaround_ms: u64,
    timeout_ms: u64,
    retries: u32,
    dead: bool,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        title: "3 live devices, turnaround 50ms (the RTU default)",
        turnaround_ms: 50,
        timeout_ms: 200,
        retries: 1,
        dead: false,
    },
    Scenario {
        title: "3 live devices, turnaround 0ms (pure line time)",
        turnaround_ms: 0,
        timeout_ms: 200,
        retries: 1,
        dead: false,
    },
    Scenario {
        title: "3 live devices + 1 dead unit, timeout 200ms, retries 1, turnaround 50ms",
        turnaround_ms: 50,
        timeout_ms: 200,
        retries: 1,
        dead: true,
    },
];

fn config(port: &Path, state: &Path, sc: &Scenario) -> Res<Config> {
    let mut s = format!(
        "[gateway]\nid = \"bench\"\nstate_dir = \"{}\"\nprofile_dirs = []\n\n\
         [buses.line]\nkind = \"rtu\"\nport = \"{}\"\nbaud = {BAUD}\nparity = \"none\"\n\
         data_bits = 8\nstop_bits = 1\ntimeout = \"{}ms\"\nturnaround = \"{}ms\"\nretries = {}\n",
        state.display(),
        port.display(),
        sc.timeout_ms,
        sc.turnaround_ms,
        sc.retries
    );
    let mut devs: Vec<(u8, &str, &str)> = DEVICES.to_vec();
    if sc.dead {
        devs.push(DEAD);
    }
    for (unit, profile, name) in devs {
        let _ = write!(
            s,
            "\n[devices.{name}]\nbus = \"line\"\nunit = {unit}\npoll = \"1h\"\nprofile = \"{profile}\"\noffline_after = 1\n"
        );
    }
    gasdtu::config::parse_str(&s, "serial_cycle benchmark config", state)
        .map(|l| l.config)
        .map_err(|errs| {
            let list: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            format!("the benchmark config is invalid:\n{}\n{s}", list.join("\n"))
        })
}

/// The planner's theoretical wire time of one cycle of the live devices, their reads, bits per
/// character, and the line model this set-up follows (see `line_model`).
fn theoretical(cfg: &Config) -> Res<(Duration, usize, u32, Duration)> {
    let bus = cfg
        .buses
        .first()
        .ok_or_else(|| "config has no bus".to_string())?;
    let Transport::Rtu(serial) = &bus.transport else {
        return Err("the bus is not RTU".into());
    };
    let bpc = serial.bits_per_char();
    let mut total = Duration::ZERO;
    let mut all = Vec::new();
    for d in cfg.devices.iter().filter(|d| d.name != DEAD.2) {
        let blocks = planner::plan(&d.points, d.limits())
            .map_err(|e| format!("cannot plan {}: {e}", d.name))?;
        total += planner::rtu_wire_time(&blocks, serial.baud, bpc, bus.turnaround);
        all.extend(blocks);
    }
    let model = line_model(&all, serial.baud, bpc, bus.turnaround);
    Ok((total, all.len(), bpc, model))
}

/// What this set-up should take with zero software overhead: the simulator replies when
/// request + reply + one 3.5-char silence would have passed on the wire, and the master
/// starts the next request `turnaround` after the reply (the simulator's post-reply silence
/// runs inside it, or is waited out when the turnaround is shorter); no turnaround before
/// the first read. `rtu_wire_time` instead charges two silences and one turnaround per read.
fn line_model(
    blocks: &[planner::Block],
    baud: u32,
    bits_per_char: u32,
    turnaround: Duration,
) -> Duration {
    let char_s = bits_per_char as f64 / baud as f64;
    let silence_s = 3.5 * char_s;
    let mut t = 0.0;
    for (i, b) in blocks.iter().enumerate() {
        let (req, resp) = planner::rtu_frame_bytes(b);
        if i > 0 {
            t += turnaround.as_secs_f64().max(silence_s);
        }
        t += (req + resp) as f64 * char_s + silence_s;
    }
    Duration::from_secs_f64(t)
}

/// One cycle: time from `acq::start` to each device's batch.
struct Cycle {
    last: Duration,
    per_device: Vec<(String, Duration)>,
}

fn one_cycle(rt: &tokio::runtime::Runtime, cfg: &Config) -> Res<Cycle> {
    let n = cfg.devices.iter().filter(|d| d.enabled).count();
    let batches: Res<Vec<(SampleBatch, Duration)>> = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let t0 = Instant::now();
        let (acq, mut rx) = gasdtu::modbus::start(cfg, &shutdown, true);
        let mut got = Vec::new();
        let mut err = None;
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(b)) => got.push((b, t0.elapsed())),
                Ok(None) => {
                    err = Some("the sample channel closed before the cycle ended".to_string());
                    break;
                }
                Err(_) => {
                    err = Some(format!(
                        "no batch within 30 s ({} of {n} arrived)",
                        got.len()
                    ));
                    break;
                }
            }
        }
        shutdown.cancel();
        // The port is opened exclusively: the bus task must be gone before the next cycle.
        for t in acq.tasks {
            let _ = t.await;
        }
        match err {
            Some(e) => Err(e),
            None => Ok(got),
        }
    });
    let batches = batches?;
    for (b, _) in &batches {
        let dead = &*b.device == DEAD.2;
        for s in &b.samples {
            let ok = if dead {
                // Its computed points (none for pt-float) would say Input; reads say Timeout.
                matches!(s.quality, Quality::Bad(BadReason::Timeout))
            } else {
                s.quality == Quality::Good
            };
            if !ok {
                return Err(format!(
                    "device {} point {}: unexpected quality {:?}",
                    b.device, s.point, s.quality
                ));
            }
        }
    }
    Ok(Cycle {
        last: batches.iter().map(|(_, t)| *t).max().unwrap_or_default(),
        per_device: batches
            .iter()
            .map(|(b, t)| (b.device.to_string(), *t))
            .collect(),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        Duration::ZERO
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn main() {
    main_with("serial_cycle", run);
}

fn run() -> Res<()> {
    let reps = env_u64("GASDTU_BENCH_REPS", 10)?.max(1) as usize;
    require_socat()?;
    let bin = gasdtu()?;
    let machine_line = machine();
    let started = utc_now();
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let pty = PtyPair::new(dir.path(), "line")?;

    let mut sim_cmd = Command::new(&bin);
    sim_cmd
        .arg("simulate")
        .arg("--serial")
        .arg(&pty.b)
        .arg("--baud")
        .arg(BAUD.to_string())
        .arg("--parity")
        .arg("none")
        .arg("--seed")
        .arg("1")
        .arg("--log-level")
        .arg("info");
    for (unit, profile, _) in DEVICES {
        sim_cmd.arg("--device").arg(format!("{unit}:{profile}"));
    }
    let mut sim = Proc::spawn(
        "gasdtu simulate --serial",
        sim_cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )?;
    // Ready when the simulator says it opened the port.
    let stderr = sim
        .child
        .stderr
        .take()
        .ok_or_else(|| "simulator stderr not piped".to_string())?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent && strip_ansi(&line).contains("simulator serial port open") {
                sent = true;
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(15))
        .map_err(|_| "the simulator did not open its serial port within 15 s".to_string())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;

    let mut r = String::new();
    let _ = writeln!(
        r,
        "gasdtu benchmark: serial_cycle (one poll cycle on RS-485 at {BAUD} baud 8N1 vs theoretical wire time)"
    );
    let _ = writeln!(r, "date: {started}");
    let _ = writeln!(r, "{machine_line}");
    let _ = writeln!(
        r,
        "line: socat pty pair; far end `gasdtu simulate --serial --baud {BAUD} --parity none` (line timing honoured), \
         units 1 evc-dcba, 2 pt-float, 3 turbine-bcd; master: gasdtu::modbus in-process (release build)"
    );
    let _ = writeln!(
        r,
        "measured: wall time from acq::start to the last batch of the one cycle (includes opening the port), {reps} cycles per scenario"
    );
    let _ = writeln!(
        r,
        "theoretical: sum over devices of planner::rtu_wire_time(plan, {BAUD}, bits/char, turnaround): \
         every character, two 3.5-char silences and one turnaround per read; no device processing time"
    );

    // Warm-up: one cycle that must succeed (also proves the simulator answers).
    let base_cfg = config(&pty.a, dir.path(), &SCENARIOS[0])?;
    one_cycle(&rt, &base_cfg).map_err(|e| format!("warm-up cycle failed: {e}"))?;

    let mut medians = Vec::new();
    for sc in &SCENARIOS {
        sim.alive()?;
        let cfg = config(&pty.a, dir.path(), sc)?;
        let (theo, reads, bpc, model) = theoretical(&cfg)?;
        let mut totals = Vec::new();
        let mut last_cycle = None;
        for _ in 0..reps {
            let c = one_cycle(&rt, &cfg)?;
            totals.push(c.last);
            last_cycle = Some(c);
        }
        let (min, max) = (
            totals.iter().min().copied().unwrap_or_default(),
            totals.iter().max().copied().unwrap_or_default(),
        );
        let med = median(&mut totals);
        medians.push(med);
        let _ = writeln!(r, "\n[{}]", sc.title);
        let _ = writeln!(
            r,
            "  reads per cycle (live devices): {reads}; bits per char: {bpc}; timeout {} ms, retries {}",
            sc.timeout_ms, sc.retries
        );
        let _ = writeln!(
            r,
            "  measured cycle: min {:.1} ms, median {:.1} ms, max {:.1} ms",
            ms(min),
            ms(med),
            ms(max)
        );
        let overhead = (ms(med) - ms(theo)) / ms(theo) * 100.0;
        if sc.dead {
            let expected_dead = (sc.retries as u64 + 1) * (sc.timeout_ms + sc.turnaround_ms);
            let _ = writeln!(
                r,
                "  theoretical, live devices only: {:.1} ms; dead unit expected to add (retries+1) x (timeout + turnaround) = {expected_dead} ms",
                ms(theo)
            );
        } else {
            let _ = writeln!(
                r,
                "  theoretical: {:.1} ms; overhead of the median over it: {overhead:+.1} % ({:+.1} ms)",
                ms(theo),
                ms(med) - ms(theo)
            );
            let _ = writeln!(
                r,
                "  line model of this set-up (one silence per read, no turnaround before the first): {:.1} ms; \
                 median over it: {:+.1} % ({:+.1} ms, {:+.2} ms per read)",
                ms(model),
                (ms(med) - ms(model)) / ms(model) * 100.0,
                ms(med) - ms(model),
                (ms(med) - ms(model)) / reads as f64
            );
        }
        if let Some(c) = last_cycle {
            let parts: Vec<String> = c
                .per_device
                .iter()
                .map(|(n, t)| format!("{n} {:.1}", ms(*t)))
                .collect();
            let _ = writeln!(
                r,
                "  last cycle, batch arrival per device (ms): {}",
                parts.join(", ")
            );
        }
    }
    let dead_cost = ms(medians[2]) - ms(medians[0]);
    let sc = &SCENARIOS[2];
    let _ = writeln!(
        r,
        "\ndead unit cost: median with it - median without it (same turnaround) = {dead_cost:.1} ms \
         = {:.2} x timeout ({} ms); the live devices still reported in the same cycle",
        dead_cost / sc.timeout_ms as f64,
        sc.timeout_ms
    );
    sim.alive()?;
    drop(sim);
    drop(pty);
    publish("serial_cycle", &r)
}
