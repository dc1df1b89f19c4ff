//! `gasdtu demo`: the whole pipeline on an embedded default. It starts simulated meters on
//! loopback (a Modbus TCP network and an RS-485 line behind a serial device server, one meter
//! dead on purpose) and an embedded MQTT broker, loads the embedded configs/demo.toml through
//! the ordinary validator, and runs the real acquisition engine, SQLite store (in a fresh
//! temporary state directory) and forwarder, with a live view of what is polled, buffered and
//! delivered. `--duration` stops it by itself with a one-line summary.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Global;
use crate::config::{self, Config, Transport};
use crate::gateway::consumer::Consumer;
use crate::gateway::status_socket::DeviceBoard;
use crate::model::{Quality, SampleBatch};
use crate::sim::broker::Broker;
use crate::sim::{FaultRule, Faults, SimDevice, Simulator};
use crate::store::Store;
use crate::uplink::{Forwarder, LinkStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

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
    tokio::spawn(broker.run(shutdown.clone()));

    let store_cfg = cfg.store.clone();
    let dir = state_dir.clone();
    let (store, _events) = tokio::task::spawn_blocking(move || Store::open(&dir, &store_cfg))
        .await?
        .context("opening the demo's store")?;
    let store = Arc::new(store);
    let acq_stop = CancellationToken::new();
    let (acq, rx) = crate::modbus::start(&cfg, &acq_stop, true);
    // Batches reach the view through the consumer: what is shown is what was committed.
    let (view_tx, mut view_rx) = tokio::sync::mpsc::channel::<SampleBatch>(1024);
    let (tap_tx, tap_rx) =
        tokio::sync::mpsc::channel::<SampleBatch>(crate::modbus::CHANNEL_BATCHES);
    tokio::spawn(async move {
        let mut rx = rx;
        while let Some(b) = rx.recv().await {
            let _ = view_tx.try_send(b.clone());
            if tap_tx.send(b).await.is_err() {
                break;
            }
        }
    });
    let wake = Arc::new(Notify::new());
    let consumer = tokio::spawn(
        Consumer::new(tap_rx, store.clone(), wake.clone(), DeviceBoard::default()).run(),
    );
    let (link_tx, _link_rx) = watch::channel(LinkStatus::default());
    let fwd_stop = CancellationToken::new();
    let uplink = cfg
        .uplink
        .clone()
        .context("the embedded demo config has an [uplink] section")?;
    let forwarder = tokio::spawn(
        Forwarder::new(
            uplink,
            &cfg.gateway.id,
            store.clone(),
            wake.clone(),
            link_tx,
        )
        .run(fwd_stop.clone()),
    );
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
    // `stop` ends the view; the simulators and the broker (on `shutdown`) outlive the drain.
    let stop = CancellationToken::new();
    let sig = stop.clone();
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
    acq_stop.cancel();
    for t in acq.tasks {
        let _ = t.await;
    }
    // The consumer ends once the last batch passed the splitter, which hands every batch to
    // the view first: after it, the view channel holds all that is left.
    let committed = consumer.await.map(|r| r.readings).unwrap_or(0);
    while let Ok(b) = view_rx.try_recv() {
        count(&mut totals, &b);
    }
    // Let the forwarder deliver what was committed last (a few seconds at most).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline && delivered.load(Ordering::Relaxed) < committed {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fwd_stop.cancel();
    let _ = forwarder.await;
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
        "demo summary: {:.1}s, {} devices, {} batches, {} readings polled ({} good, {} bad), {} committed, {} delivered to the broker, {} still buffered, offline: {}",
        started.elapsed().as_secs_f64(),
        acq.devices,
        totals.batches,
        totals.readings,
        totals.good,
        totals.bad,
        committed,
        delivered.load(Ordering::Relaxed),
        buffered,
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
