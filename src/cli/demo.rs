//! `gasdtu demo`: the whole daemon on an embedded default. It starts simulated meters on
//! loopback (a Modbus TCP network and an RS-485 line behind a serial device server, one meter
//! dead on purpose) and the embedded MQTT broker (`sim::broker`), loads the embedded
//! configs/demo.toml through the ordinary validator, and runs the SAME gateway runtime as
//! `gasdtu run` (store in a fresh temporary state directory, alarms, poll-fast/report-slow,
//! forwarder), with a live view of what is committed and delivered. `--duration` stops it by
//! itself with a one-line summary that counts readings and alarms.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Global;
use crate::config::{self, Config, Transport};
use crate::gateway::consumer::CommitHook;
use crate::gateway::systemd::Signals;
use crate::gateway::{Gateway, Options};
use crate::model::{Quality, SampleBatch};
use crate::sim::broker::Broker;
use crate::sim::{FaultRule, Faults, SimDevice, Simulator};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    super::init_logging(global.log_level.as_deref().unwrap_or("error"));
    let tcp = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo's Modbus TCP simulator on 127.0.0.1")?;
    let rtu = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo's RTU-over-TCP simulator on 127.0.0.1")?;
    let broker = Broker::bind("127.0.0.1:0")
        .await
        .context("binding the demo's MQTT broker on 127.0.0.1")?;
    let state_dir = std::env::temp_dir().join(format!("gasdtu-demo-{}", std::process::id()));
    let text = DEMO_CONFIG
        .replace("@TCP_PORT@", &tcp.local_addr()?.port().to_string())
        .replace("@RTU_PORT@", &rtu.local_addr()?.port().to_string())
        .replace("@MQTT_PORT@", &broker.local_addr()?.port().to_string())
        .replace("@STATE_DIR@", &state_dir.display().to_string());
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

    // Deliveries as the broker sees them: readings carried by data messages.
    let delivered = Arc::new(AtomicU64::new(0));
    {
        let mut feed = broker.published();
        let delivered = delivered.clone();
        tokio::spawn(async move {
            while let Ok(p) = feed.recv().await {
                if p.topic.ends_with("/data") {
                    delivered.fetch_add(readings_in(&p.payload), Ordering::Relaxed);
                }
            }
        });
    }

    // Alarms as the broker sees them (an operator's view of the same run).
    let alarm_counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    {
        let mut feed = broker.published();
        let counts = alarm_counts.clone();
        tokio::spawn(async move {
            while let Ok(p) = feed.recv().await {
                if !p.topic.ends_with("/alarm") {
                    continue;
                }
                let Ok(v) = crate::uplink::decode(&p.payload) else {
                    continue;
                };
                for a in alarm_objects(&v) {
                    match a["state"].as_str() {
                        Some("raised") => counts.0.fetch_add(1, Ordering::Relaxed),
                        Some("cleared") => counts.1.fetch_add(1, Ordering::Relaxed),
                        _ => 0,
                    };
                }
            }
        });
    }
    tokio::spawn(broker.run(shutdown.clone()));

    // The runtime of `gasdtu run`, on the embedded config. Committed batches reach the view:
    // what is shown is what was committed.
    let (view_tx, mut view_rx) = tokio::sync::mpsc::channel::<SampleBatch>(1024);
    let observer: CommitHook = Arc::new(move |b: &SampleBatch| {
        let _ = view_tx.try_send(b.clone());
    });
    let opts = Options {
        poll_now: true,
        socket: None,
        notifier: crate::gateway::systemd::Notifier::disabled(),
        observers: vec![observer],
        ..Options::default()
    };
    let mut signals = Signals::install()?;
    let gw = Gateway::start(cfg, opts)
        .await
        .context("starting the demo's gateway runtime")?;
    let (devices, buses) = gw.polling();
    let rules = gw.config().alarms.len();
    let live = !args.plain && std::io::stdout().is_terminal();
    println!(
        "gasdtu demo: {} devices on {} buses, {} reads per cycle, {} alarm rules; simulated meters on 127.0.0.1{}",
        devices,
        buses,
        gw.reads_per_cycle(),
        rules,
        match args.duration {
            Some(d) => format!("; stopping after {}", humantime::format_duration(d)),
            None => "; Ctrl-C to stop".into(),
        }
    );
    let started = Instant::now();
    let stop = CancellationToken::new();
    let sig = stop.clone();
    let duration = args.duration;
    tokio::spawn(async move {
        match duration {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = signals.stop() => {}
                }
            }
            None => signals.stop().await,
        }
        sig.cancel();
    });

    let mut totals = Totals::default();
    let mut latest: BTreeMap<String, SampleBatch> = BTreeMap::new();
    let mut redraw = tokio::time::interval(Duration::from_millis(500));
    let mut dirty = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            b = view_rx.recv() => {
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
                draw(&latest, &totals, delivered.load(Ordering::Relaxed), started.elapsed());
                dirty = false;
            }
        }
    }
    let store = gw.store().clone();
    let report = gw.shutdown().await;
    while let Ok(b) = view_rx.try_recv() {
        count(&mut totals, &b);
    }
    // The runtime's shutdown gave the forwarder its grace to deliver what was committed last.
    shutdown.cancel();
    let buffered = store.stats().map(|s| s.pending_readings).unwrap_or(0);
    drop(store);
    let _ = std::fs::remove_dir_all(&state_dir);
    if live {
        draw(
            &latest,
            &totals,
            delivered.load(Ordering::Relaxed),
            started.elapsed(),
        );
    }
    let offline: Vec<&str> = latest
        .values()
        .filter(|b| !b.online)
        .map(|b| &*b.device)
        .collect();
    println!(
        "demo summary: {:.1}s, {} devices, {} batches, {} readings polled ({} good, {} bad), {} committed, {} delivered to the broker, {} still buffered, alarms: {} raised, {} cleared (broker), {} transitions committed, offline: {}",
        started.elapsed().as_secs_f64(),
        devices,
        totals.batches,
        totals.readings,
        totals.good,
        totals.bad,
        report.consumer.readings,
        delivered.load(Ordering::Relaxed),
        buffered,
        alarm_counts.0.load(Ordering::Relaxed),
        alarm_counts.1.load(Ordering::Relaxed),
        report.consumer.alarm_transitions,
        if offline.is_empty() { "none".to_string() } else { offline.join(", ") },
    );
    Ok(0)
}

/// The alarm objects of a decoded alarm message (one object, or a list under `alarms`).
fn alarm_objects(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    match v.get("alarms").and_then(|a| a.as_array()) {
        Some(list) => list.iter().collect(),
        None => vec![v],
    }
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
    let s = crate::time::rfc3339_ms_of(t);
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

/// Readings in a data payload (JSON or CBOR), counted from its decoded form.
fn readings_in(payload: &[u8]) -> u64 {
    let Ok(v) = crate::uplink::decode(payload) else {
        return 0;
    };
    let mut n = 0;
    for d in v["data"].as_array().into_iter().flatten() {
        for r in d["reads"].as_array().into_iter().flatten() {
            for key in ["v", "bad"] {
                n += r[key].as_object().map(|o| o.len() as u64).unwrap_or(0);
            }
        }
    }
    n
}

fn draw(latest: &BTreeMap<String, SampleBatch>, t: &Totals, delivered: u64, elapsed: Duration) {
    let mut out = String::new();
    out.push_str("\x1b[H\x1b[2J");
    out.push_str(&format!(
        "gasdtu demo — {:.0}s — {} readings polled ({} good, {} bad), {} delivered to the broker\n\n",
        elapsed.as_secs_f64(),
        t.readings,
        t.good,
        t.bad,
        delivered
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
