//! `gasdtu demo`: the whole pipeline on an embedded default. It starts simulated meters on
//! loopback (a Modbus TCP network and an RS-485 line behind a serial device server, one meter
//! dead on purpose), loads the embedded configs/demo.toml through the ordinary validator, runs
//! the real acquisition engine and shows a live view of what is polled. `--duration` stops it
//! by itself with a one-line summary.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Global;
use crate::config::{self, Config, Transport};
use crate::model::{Quality, SampleBatch};
use crate::sim::{FaultRule, Faults, SimDevice, Simulator};

const DEMO_CONFIG: &str = include_str!("../../configs/demo.toml");

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop by itself after this long (e.g. 30s, 5m); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Print one line per batch instead of redrawing a table (default when stdout is not a
    /// terminal).
    #[arg(long)]
    pub plain: bool,
}

#[derive(Default)]
struct Totals {
    readings: u64,
    good: u64,
    bad: u64,
    batches: u64,
}

pub async fn run(args: DemoArgs, global: &Global) -> anyhow::Result<u8> {
    super::init_logging(global.log_level.as_deref().unwrap_or("warn"));
    let tcp = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo's Modbus TCP simulator on 127.0.0.1")?;
    let rtu = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo's RTU-over-TCP simulator on 127.0.0.1")?;
    let text = DEMO_CONFIG
        .replace("@TCP_PORT@", &tcp.local_addr()?.port().to_string())
        .replace("@RTU_PORT@", &rtu.local_addr()?.port().to_string());
    let loaded = config::parse_str(&text, "demo.toml (embedded)", &std::env::temp_dir()).map_err(
        |errs| {
            let list: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!("the embedded demo config is invalid:\n{}", list.join("\n"))
        },
    )?;
    let cfg = loaded.config;

    let shutdown = CancellationToken::new();
    // One simulator per bus, serving exactly the devices the config polls on it.
    for (bus, listener) in [("plant_lan", tcp), ("rs485_via_gateway", rtu)] {
        let sim = simulator_for(&cfg, bus);
        let is_rtu = cfg
            .buses
            .iter()
            .any(|b| b.name == bus && matches!(b.transport, Transport::RtuOverTcp { .. }));
        let token = shutdown.clone();
        tokio::spawn(async move {
            if is_rtu {
                sim.serve_rtu_over_tcp(listener, token).await
            } else {
                sim.serve_tcp(listener, token).await
            }
        });
    }

    let (acq, mut rx) = crate::acq::start(&cfg, &shutdown, true);
    let live = !args.plain && std::io::stdout().is_terminal();
    println!(
        "gasdtu demo: {} devices on {} buses, {} reads per cycle; simulated meters on 127.0.0.1{}",
        acq.devices,
        acq.tasks.len(),
        acq.reads_per_cycle,
        match args.duration {
            Some(d) => format!("; stopping after {}", humantime::format_duration(d)),
            None => "; Ctrl-C to stop".into(),
        }
    );
    let started = Instant::now();
    let sig = shutdown.clone();
    let duration = args.duration;
    tokio::spawn(async move {
        match duration {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = super::run::wait_for_signal() => {}
                }
            }
            None => super::run::wait_for_signal().await,
        }
        sig.cancel();
    });

    let mut totals = Totals::default();
    let mut latest: BTreeMap<String, SampleBatch> = BTreeMap::new();
    let mut redraw = tokio::time::interval(Duration::from_millis(500));
    let mut dirty = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            b = rx.recv() => {
                let Some(b) = b else { break };
                count(&mut totals, &b);
                if live {
                    dirty = true;
                } else {
                    print_line(&b);
                }
                latest.insert(b.device.to_string(), b);
            }
            _ = redraw.tick(), if live && dirty => {
                draw(&latest, &totals, started.elapsed());
                dirty = false;
            }
        }
    }
    for t in acq.tasks {
        let _ = t.await;
    }
    while let Ok(b) = rx.try_recv() {
        count(&mut totals, &b);
    }
    if live {
        draw(&latest, &totals, started.elapsed());
    }
    let offline: Vec<&str> = latest
        .values()
        .filter(|b| !b.online)
        .map(|b| &*b.device)
        .collect();
    println!(
        "demo summary: {:.1}s, {} devices, {} batches, {} readings polled ({} good, {} bad), offline: {}; delivered: 0 (buffer and uplink arrive with the store-and-forward issue)",
        started.elapsed().as_secs_f64(),
        acq.devices,
        totals.batches,
        totals.readings,
        totals.good,
        totals.bad,
        if offline.is_empty() { "none".to_string() } else { offline.join(", ") },
    );
    Ok(0)
}

fn simulator_for(cfg: &Config, bus: &str) -> Simulator {
    let mut devices = Vec::new();
    let mut faults = Vec::new();
    for d in cfg.devices.iter().filter(|d| d.bus == bus) {
        let mut sim = SimDevice::new(d.unit, d.name.clone(), d.points.clone(), d.computed.clone())
            .with_max_registers(d.max_registers);
        if d.name.ends_with("_dead") {
            if let Ok(rule) = FaultRule::parse(&format!("{}:dead", d.unit)) {
                faults.push(rule);
            }
            sim = sim.with_seed(7);
        }
        devices.push(sim);
    }
    Simulator::new(devices, Faults::new(faults, None))
}

fn count(t: &mut Totals, b: &SampleBatch) {
    t.batches += 1;
    for s in &b.samples {
        t.readings += 1;
        if s.quality.is_good() {
            t.good += 1;
        } else {
            t.bad += 1;
        }
    }
}

fn hms(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_millis(t).to_string();
    // 2026-11-24T19:17:35.001Z -> 19:17:35.001Z
    s.split_once('T').map(|(_, r)| r.to_string()).unwrap_or(s)
}

fn print_line(b: &SampleBatch) {
    let good = b.samples.iter().filter(|s| s.quality.is_good()).count();
    let mut parts = Vec::new();
    for s in b.samples.iter().take(4) {
        match (&s.value, &s.quality) {
            (Some(v), Quality::Good) => parts.push(format!(
                "{}={}{}",
                s.point,
                short(&v.to_string()),
                s.unit
                    .as_deref()
                    .map(|u| format!(" {u}"))
                    .unwrap_or_default()
            )),
            (_, Quality::Bad(r)) => parts.push(format!("{}=BAD({r})", s.point)),
            _ => {}
        }
    }
    println!(
        "{} {:<14} {:<8} {}/{} good  {}",
        hms(b.slot),
        b.device,
        if b.online { "online" } else { "OFFLINE" },
        good,
        b.samples.len(),
        parts.join("  ")
    );
}

fn short(v: &str) -> String {
    match v.parse::<f64>() {
        Ok(x) if v.contains('.') => format!("{x:.3}"),
        _ => v.to_string(),
    }
}

fn draw(latest: &BTreeMap<String, SampleBatch>, t: &Totals, elapsed: Duration) {
    let mut out = String::new();
    out.push_str("\x1b[H\x1b[2J");
    out.push_str(&format!(
        "gasdtu demo — {:.0}s — {} readings polled ({} good, {} bad)\n\n",
        elapsed.as_secs_f64(),
        t.readings,
        t.good,
        t.bad
    ));
    out.push_str(&format!(
        "{:<14} {:<8} {:<22} {:>16} {:<6} {:<14} {}\n",
        "DEVICE", "STATE", "POINT", "VALUE", "UNIT", "READ AT (UTC)", "QUALITY"
    ));
    for b in latest.values() {
        if !b.samples.iter().any(|s| s.quality.is_good()) {
            // A silent device: one line, not one per point.
            let why = b.samples.iter().find_map(|s| match &s.quality {
                Quality::Bad(r) => Some(r.to_string()),
                Quality::Good => None,
            });
            out.push_str(&format!(
                "{:<14} {:<8} {:<22} {:>16} {:<6} {:<14} BAD: {}\n",
                b.device,
                if b.online { "online" } else { "OFFLINE" },
                format!("(all {} points)", b.samples.len()),
                "-",
                "",
                hms(b.slot),
                why.unwrap_or_default()
            ));
            continue;
        }
        for s in &b.samples {
            if s.point.ends_with("_int")
                || s.point.ends_with("_frac")
                || s.point.ends_with("_hi")
                || s.point.ends_with("_lo")
                || (s.point.starts_with("status_") && s.quality.is_good())
            {
                continue; // components and quiet status bits: the canonical points say it
            }
            let (value, quality) = match (&s.value, &s.quality) {
                (Some(v), Quality::Good) => (short(&v.to_string()), "good".to_string()),
                (_, Quality::Bad(r)) => ("-".to_string(), format!("BAD: {r}")),
                _ => ("-".into(), "?".into()),
            };
            out.push_str(&format!(
                "{:<14} {:<8} {:<22} {:>16} {:<6} {:<14} {}\n",
                b.device,
                if b.online { "online" } else { "OFFLINE" },
                s.point,
                value,
                s.unit.as_deref().unwrap_or(""),
                hms(s.read_at),
                quality
            ));
        }
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}
