//! Lying devices (issue 9, items 5 and 6), end to end: the real link and bus tasks
//! (`gasdtu::modbus::link::Link`, `gasdtu::modbus::start`) and the real gateway runtime
//! (`gasdtu::gateway::Gateway`, real SQLite store) against the in-process simulator, over Modbus
//! TCP on loopback and RTU over socat pty pairs. One unit on the bus lies in one way (a short
//! byte count with a consistent header, another transaction id, another unit id, another
//! function code, a byte flood, exception 255) while healthy units share the bus.
//!
//! Per lying mode and transport: the lie is refused whole as a protocol error on every attempt
//! (the link counts them), its points are bad (never good), the healthy units on the same bus
//! report exact values in the same cycles, and the liar goes offline after exactly
//! `offline_after` cycles. Through the runtime: the `offline` alarm is raised for every liar,
//! and not for a device answering with a valid exception. Every wait is on a condition with a
//! deadline.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use gasdtu::config::{
    BusConfig, Config, DeviceConfig, GatewayConfig, Parity, SerialSettings, Transport,
};
use gasdtu::modbus::link::{Link, TxError};
use gasdtu::model::{
    BadReason, DataType, PointSpec, Quality, SampleBatch, Table, Value, WordOrder,
};
use gasdtu::sim::{FaultRule, Faults, SimDevice, Simulator};
use tokio_util::sync::CancellationToken;

const BAUD: u32 = 38_400;
const BUS: &str = "field";
const OFFLINE_AFTER: u32 = 3;
/// The liar's unit; healthy units 1 ("a", polled before it) and 3 ("z", after it).
const LIAR: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Tcp,
    Rtu,
}

/// Six holding registers r0..r5 at 0..5: one block of 6 (the issue's "5 of 6" case).
fn points() -> Vec<PointSpec> {
    (0..6)
        .map(|i| PointSpec {
            name: format!("r{i}"),
            table: Table::HoldingRegister,
            address: i,
            data_type: DataType::U16,
            order: WordOrder::Abcd,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            writable: false,
            scale_from: None,
            publish: true,
        })
        .collect()
}

fn device(name: &str, unit: u8) -> DeviceConfig {
    DeviceConfig {
        name: name.into(),
        bus: BUS.into(),
        unit,
        poll: Duration::from_secs(1),
        phase: Duration::ZERO,
        max_registers: 125,
        max_gap: 10,
        offline_after: OFFLINE_AFTER,
        enabled: true,
        profile: None,
        points: points(),
        computed: vec![],
        report: Duration::from_secs(1),
        deadbands: Default::default(),
        report_last: Default::default(),
    }
}

fn devices() -> Vec<DeviceConfig> {
    vec![device("a", 1), device("liar", LIAR), device("z", 3)]
}

/// The value unit `unit` holds in register `i`.
fn held(unit: u8, i: usize) -> u64 {
    unit as u64 * 100 + i as u64
}

/// Units 1-3 holding `held`, unit 2 lying with `fault` (dice seeded).
fn simulator(fault: &str) -> Simulator {
    let sim = Simulator::new(
        (1..=3)
            .map(|u| SimDevice::new(u, format!("u{u}"), points(), vec![]))
            .collect(),
        Faults::new(
            vec![FaultRule::parse(&format!("{LIAR}:{fault}")).unwrap()],
            Some(9),
        ),
    );
    for u in 1..=3u8 {
        for i in 0..6 {
            sim.set(u, &format!("r{i}"), Value::UInt(held(u, i)))
                .unwrap();
        }
    }
    sim
}

/// The simulator served on a fresh transport, and the bus that reaches it. Holds the pty pair
/// and its directory for RTU.
struct Line {
    bus: BusConfig,
    _pty: Option<(PtyPair, tempfile::TempDir)>,
}

async fn serve(sim: &Simulator, wire: Wire, stop: &CancellationToken) -> Line {
    let timeout = Duration::from_millis(300);
    match wire {
        Wire::Tcp => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (sim, stop) = (sim.clone(), stop.clone());
            tokio::spawn(async move { sim.serve_tcp(listener, stop).await });
            Line {
                bus: BusConfig {
                    name: BUS.into(),
                    transport: Transport::Tcp {
                        host: "127.0.0.1".into(),
                        port,
                    },
                    timeout,
                    turnaround: Duration::ZERO,
                    retries: 1,
                },
                _pty: None,
            }
        }
        Wire::Rtu => {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().to_path_buf();
            let pty = tokio::task::spawn_blocking(move || PtyPair::new(&d, "liar"))
                .await
                .unwrap();
            let settings = |p: &Path| SerialSettings {
                port: p.to_string_lossy().into_owned(),
                baud: BAUD,
                parity: Parity::None,
                data_bits: 8,
                stop_bits: 1,
            };
            let (s, st, ss) = (sim.clone(), settings(&pty.b), stop.clone());
            // No line timing: a flood is written at once, not over seconds of wire time.
            tokio::spawn(async move { s.serve_serial(st, false, ss).await });
            Line {
                bus: BusConfig {
                    name: BUS.into(),
                    transport: Transport::Rtu(settings(&pty.a)),
                    timeout,
                    turnaround: Duration::from_millis(5),
                    retries: 1,
                },
                _pty: Some((pty, dir)),
            }
        }
    }
}

fn config(bus: BusConfig, devices: Vec<DeviceConfig>) -> Config {
    Config {
        gateway: GatewayConfig {
            id: "liars".into(),
            state_dir: std::env::temp_dir(),
            profile_dirs: vec![],
            log_level: "info".into(),
            commissioned: true,
            socket: None,
        },
        buses: vec![bus],
        devices,
        store: Default::default(),
        uplink: None,
        alarms: Vec::new(),
        remote: None,
        modem: None,
        sparkplug: None,
    }
}

fn summary(log: &[SampleBatch]) -> String {
    log.iter()
        .map(|b| {
            let q: Vec<String> = b
                .samples
                .iter()
                .map(|s| match &s.quality {
                    Quality::Good => format!("{}={:?}", s.point, s.value),
                    Quality::Bad(r) => format!("{}: {r}", s.point),
                })
                .collect();
            format!(
                "  {} online={} failed={}: {}",
                b.device,
                b.online,
                b.failed_cycles,
                q.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The link on its own: one read of the liar is refused as a protocol error on both attempts
/// (counted), with `detail` in its message; the healthy units read exactly, before and after.
async fn link_refuses(bus: &BusConfig, detail: &str) {
    let mut link = Link::new(bus.clone());
    let exact = |u: u8| (0..6).map(|i| held(u, i) as u16).collect::<Vec<u16>>();
    assert_eq!(
        link.read(1, Table::HoldingRegister, 0, 6).await,
        Ok(exact(1))
    );
    let before = link.stats.clone();
    match link.read(LIAR, Table::HoldingRegister, 0, 6).await {
        Err(TxError::Protocol {
            attempts,
            detail: d,
        }) => {
            assert_eq!(attempts, 2, "{d}");
            assert!(
                d.contains(detail),
                "protocol error `{d}` should say `{detail}`"
            );
        }
        other => panic!("the liar's reply was taken as {other:?}"),
    }
    assert_eq!(
        link.stats.protocol_errors - before.protocol_errors,
        2,
        "both attempts counted as protocol errors: {:?}",
        link.stats
    );
    assert_eq!(
        link.read(3, Table::HoldingRegister, 0, 6).await,
        Ok(exact(3)),
        "the unit after the liar is not disturbed"
    );
}

/// The bus task: `OFFLINE_AFTER` cycles of the liar are all bad (protocol errors), failed
/// cycles count 1, 2, 3 and the liar is offline at the third; units a and z are good, exact
/// and online in every cycle.
async fn goes_offline(bus: &BusConfig, detail: &str) {
    let shutdown = CancellationToken::new();
    let (acq, mut rx) = gasdtu::modbus::start(&config(bus.clone(), devices()), &shutdown, true);
    let mut log: Vec<SampleBatch> = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(15);
    let liars = |l: &[SampleBatch]| l.iter().filter(|b| &*b.device == "liar").count();
    while liars(&log) < OFFLINE_AFTER as usize
        || log.iter().filter(|b| &*b.device == "z").count() < OFFLINE_AFTER as usize
    {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some(b)) => log.push(b),
            Ok(None) => panic!("acquisition stopped:\n{}", summary(&log)),
            Err(_) => panic!("timed out; batches:\n{}", summary(&log)),
        }
    }
    let text = summary(&log);
    let mut n = 0;
    for b in log.iter().filter(|b| &*b.device == "liar") {
        n += 1;
        for s in &b.samples {
            assert!(s.value.is_none(), "a lying reply gave a value:\n{text}");
            match &s.quality {
                Quality::Bad(BadReason::Protocol(d)) => {
                    assert!(d.contains(detail), "`{d}` should say `{detail}`")
                }
                q => panic!("{}: {q:?}, want a protocol error:\n{text}", s.point),
            }
        }
        assert_eq!(b.failed_cycles, n, "{text}");
        assert_eq!(b.online, n < OFFLINE_AFTER, "cycle {n}:\n{text}");
    }
    for b in log.iter().filter(|b| &*b.device != "liar") {
        let unit = if &*b.device == "a" { 1 } else { 3 };
        for (i, s) in b.samples.iter().enumerate() {
            assert_eq!(s.quality, Quality::Good, "{}:\n{text}", b.device);
            assert_eq!(s.value, Some(Value::UInt(held(unit, i))), "{text}");
        }
        assert!(b.online && b.failed_cycles == 0, "{text}");
    }
    shutdown.cancel();
    for t in acq.tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("bus task stops")
            .expect("bus task did not panic");
    }
}

async fn lying(wire: Wire, fault: &str, detail: &str) {
    let stop = CancellationToken::new();
    let sim = simulator(fault);
    let line = serve(&sim, wire, &stop).await;
    link_refuses(&line.bus, detail).await;
    goes_offline(&line.bus, detail).await;
    stop.cancel();
}

const SHORT: &str = "byte count 10 does not cover the 6 requested (needs 12)";
/// One clause naming what differs, never tokio-modbus's header dump (the transaction id of
/// the reply is one more than the request's).
const WRONG_TID: &str = "reply for unit 2 function 3 has transaction id ";
const WRONG_UNIT: &str = "reply for function 3 has unit 3, expected 2";
const FUNCTION: &str = "reply has function 0x04, request had 0x03";
const EXC255: &str = "exception code 255 (0xFF) is not a Modbus exception code";

// ------------------------------------------------------------------------------------------
// Item 5: a reply that does not match the request exactly is refused whole.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_byte_count_over_tcp_is_refused_whole() {
    lying(Wire::Tcp, "short", SHORT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_byte_count_over_rtu_is_refused_whole() {
    lying(Wire::Rtu, "short", SHORT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_transaction_id_over_tcp_is_refused() {
    lying(Wire::Tcp, "wrong-tid", WRONG_TID).await;
}

/// An MBAP length field that counts two bytes after the data (tokio-modbus refuses what it
/// cannot decode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_bytes_inside_an_mbap_frame_are_refused() {
    lying(Wire::Tcp, "trailing", "undecoded response data").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_unit_over_tcp_is_refused() {
    lying(Wire::Tcp, "wrong-unit", WRONG_UNIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_unit_over_rtu_is_refused() {
    lying(Wire::Rtu, "wrong-unit", WRONG_UNIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_function_over_tcp_is_refused() {
    lying(Wire::Tcp, "wrong-function", FUNCTION).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_function_over_rtu_is_refused() {
    lying(Wire::Rtu, "wrong-function", FUNCTION).await;
}

// ------------------------------------------------------------------------------------------
// Item 6: garbage is no answer; the liar goes offline, the others keep reporting.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exception_255_over_tcp_is_no_answer() {
    lying(Wire::Tcp, "exception:255", EXC255).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exception_255_over_rtu_is_no_answer() {
    lying(Wire::Rtu, "exception:255", EXC255).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_flood_over_tcp_is_no_answer_and_starves_nobody() {
    lying(Wire::Tcp, "flood:65536", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_flood_over_rtu_is_no_answer_and_starves_nobody() {
    lying(Wire::Rtu, "flood:2048", "").await;
}

// ------------------------------------------------------------------------------------------
// Item 6 through the runtime: the offline alarm fires for every liar, not for a device that
// answers with a valid exception.

/// Each lying mode on its own unit of one Modbus TCP bus, a healthy unit and a unit refusing
/// every read with the valid exception 2, polled by the real runtime (real SQLite store) with
/// an `offline` rule on every device: after `offline_after` (2) cycles every liar has a
/// committed `raised` transition of the rule, while the healthy and the refusing device have
/// none and their batches stay online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_alarm_fires_for_every_liar_and_not_for_a_valid_exception() {
    use gasdtu::gateway::{Gateway, Options};
    use gasdtu::outbox::{EntryBody, EntryKind, Outbox};
    use std::sync::{Arc, Mutex};

    let liars = [
        (2u8, "short"),
        (3, "wrong-tid"),
        (4, "wrong-unit"),
        (5, "wrong-function"),
        (6, "flood:65536"),
        (7, "exception:255"),
        (8, "trailing"),
    ];
    let refusing = 9u8;
    let stop = CancellationToken::new();
    let mut rules: Vec<FaultRule> = liars
        .iter()
        .map(|(u, f)| FaultRule::parse(&format!("{u}:{f}")).unwrap())
        .collect();
    rules.push(FaultRule::parse(&format!("{refusing}:exception:2")).unwrap());
    let sim = Simulator::new(
        (1..=refusing)
            .map(|u| SimDevice::new(u, format!("u{u}"), points(), vec![]))
            .collect(),
        Faults::new(rules, Some(4)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    {
        let (s, t) = (sim.clone(), stop.clone());
        tokio::spawn(async move { s.serve_tcp(listener, t).await });
    }
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        r#"
[gateway]
id = "liars"
state_dir = "{}"
profile_dirs = []

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {port}
timeout = "300ms"
retries = 1

[alarms.comm]
device = "*"
kind = "offline"
severity = "major"
"#,
        dir.path().join("state").display()
    );
    for u in 1..=refusing {
        text.push_str(&format!(
            "\n[devices.d{u}]\nbus = \"lan\"\nunit = {u}\npoll = \"1s\"\noffline_after = 2\n\
             points.r0 = {{ table = \"holding\", address = 0, type = \"u16\" }}\n\
             points.r5 = {{ table = \"holding\", address = 5, type = \"u16\" }}\n"
        ));
    }
    let cfg = match gasdtu::config::parse_str(&text, "liars.toml", Path::new("/")) {
        Ok(l) => l.config,
        Err(errs) => panic!("test config invalid: {errs:?}"),
    };
    let seen: Arc<Mutex<Vec<SampleBatch>>> = Arc::default();
    let log = seen.clone();
    let gw = Gateway::start(
        cfg,
        Options {
            poll_now: true,
            observers: vec![Arc::new(move |b: &SampleBatch| {
                log.lock().unwrap().push(b.clone())
            })],
            notifier: gasdtu::gateway::systemd::Notifier::disabled(),
            ..Options::default()
        },
    )
    .await
    .unwrap();

    let raised = |gw: &Gateway| -> Vec<String> {
        gw.store()
            .pending(10_000, 0)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EntryKind::Alarm)
            .filter_map(|e| match e.body {
                EntryBody::Json(v) if v["alarm"] == "comm" && v["state"] == "raised" => {
                    v["dev"].as_str().map(str::to_string)
                }
                _ => None,
            })
            .collect()
    };
    let want: Vec<String> = liars.iter().map(|(u, _)| format!("d{u}")).collect();
    wait_until(
        "an offline alarm for every liar",
        Duration::from_secs(20),
        || {
            let r = raised(&gw);
            want.iter().all(|d| r.contains(d)).then_some(())
        },
    )
    .await;
    // Two more committed cycles of the healthy and the refusing device after the raises.
    let n0 = seen.lock().unwrap().len();
    wait_until("two more cycles", Duration::from_secs(10), || {
        let l = seen.lock().unwrap();
        let later = |d: &str| l[n0..].iter().filter(|b| &*b.device == d).count();
        (later("d1") >= 2 && later(&format!("d{refusing}")) >= 2).then_some(())
    })
    .await;
    let r = raised(&gw);
    let log = seen.lock().unwrap().clone();
    let text = summary(&log);
    for d in ["d1".to_string(), format!("d{refusing}")] {
        assert!(!r.contains(&d), "{d} raised an offline alarm:\n{text}");
        for b in log.iter().filter(|b| *b.device == *d) {
            assert!(b.online && b.failed_cycles == 0, "{text}");
        }
    }
    for b in log.iter().filter(|b| &*b.device == "d1") {
        assert!(b.samples.iter().all(|s| s.quality.is_good()), "{text}");
    }
    for d in &want {
        let last = log.iter().rev().find(|b| &*b.device == d.as_str()).unwrap();
        assert!(!last.online, "{d} still online:\n{text}");
        assert!(
            last.samples.iter().all(|s| s.value.is_none()),
            "{d} reported a value:\n{text}"
        );
    }
    gw.shutdown().await;
    stop.cancel();
}
