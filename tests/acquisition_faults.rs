//! Acquisition under faults, end to end: the real bus tasks (`gasdtu::modbus::start`) and link
//! (`gasdtu::modbus::link::Link`) against the in-process simulator (`gasdtu::sim::Simulator`) over
//! socat pty pairs, Modbus TCP and RTU over TCP, with injected CRC errors, exceptions, garbage,
//! a wrong unit id, slow and dead slaves, and a serial port that vanishes and returns. Values
//! are pinned in the simulator so every good sample is checked against what the device holds.
//! Every wait is on a condition with a deadline; each test has its own ports and pty paths.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use gasdtu::config::{
    BusConfig, Config, DeviceConfig, GatewayConfig, Parity, SerialSettings, Transport,
};
use gasdtu::modbus::link::{Link, TxError};
use gasdtu::model::{
    BadReason, DataType, PointSpec, Quality, Sample, SampleBatch, Table, Value, WordOrder,
};
use gasdtu::sim::{FaultRule, Faults, SimDevice, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const BAUD: u32 = 38_400;
/// Bus names: `rtu_bus` makes RS485, `tcp_bus` makes LAN.
const RS485: &str = "rs485";
const LAN: &str = "lan";
const POLL: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn hr(name: &str, address: u16, data_type: DataType) -> PointSpec {
    PointSpec {
        name: name.into(),
        table: Table::HoldingRegister,
        address,
        data_type,
        order: WordOrder::Abcd,
        scale: 1.0,
        offset: 0.0,
        unit: None,
        writable: false,
        scale_from: None,
        publish: true,
    }
}

fn u16_point(name: &str, address: u16) -> PointSpec {
    hr(name, address, DataType::U16)
}

fn serial(path: &Path) -> SerialSettings {
    SerialSettings {
        port: path.to_string_lossy().into_owned(),
        baud: BAUD,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
    }
}

fn rtu_bus(path: &Path, timeout: Duration, retries: u32) -> BusConfig {
    BusConfig {
        name: RS485.into(),
        transport: Transport::Rtu(serial(path)),
        timeout,
        turnaround: ms(5),
        retries,
    }
}

fn tcp_bus(port: u16, rtu_framing: bool, timeout: Duration, retries: u32) -> BusConfig {
    let host = "127.0.0.1".to_string();
    BusConfig {
        name: LAN.into(),
        transport: if rtu_framing {
            Transport::RtuOverTcp { host, port }
        } else {
            Transport::Tcp { host, port }
        },
        timeout,
        turnaround: Duration::ZERO,
        retries,
    }
}

fn device(name: &str, bus: &str, unit: u8, points: Vec<PointSpec>) -> DeviceConfig {
    DeviceConfig {
        name: name.into(),
        bus: bus.into(),
        unit,
        poll: POLL,
        phase: Duration::ZERO,
        max_registers: 125,
        max_gap: 10,
        offline_after: 3,
        enabled: true,
        profile: None,
        points,
        computed: vec![],
        report: POLL,
        deadbands: Default::default(),
        report_last: Default::default(),
    }
}

fn config(bus: BusConfig, devices: Vec<DeviceConfig>) -> Config {
    Config {
        gateway: GatewayConfig {
            id: "ftest".into(),
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

fn faults(specs: &[&str], seed: u64) -> Faults {
    Faults::new(
        specs.iter().map(|s| FaultRule::parse(s).unwrap()).collect(),
        Some(seed),
    )
}

/// A simulator serving each device's points under its unit id, with these pins.
fn simulator(devices: &[&DeviceConfig], pins: &[(u8, &str, Value)], faults: Faults) -> Simulator {
    let sim = Simulator::new(
        devices
            .iter()
            .map(|d| SimDevice::new(d.unit, &d.name, d.points.clone(), vec![]))
            .collect(),
        faults,
    );
    for (unit, point, v) in pins {
        sim.set(*unit, point, v.clone()).unwrap();
    }
    sim
}

/// Serve `sim` on the serial line `path` (with the line's timing) until `stop`.
fn serve_serial(sim: &Simulator, path: &Path, stop: &CancellationToken) -> JoinHandle<()> {
    let (sim, settings, stop) = (sim.clone(), serial(path), stop.clone());
    tokio::spawn(async move { sim.serve_serial(settings, true, stop).await })
}

/// Serve `sim` over TCP (MBAP, or RTU framing) on a fresh loopback port until `stop`.
async fn serve_tcp(sim: &Simulator, rtu_framing: bool, stop: &CancellationToken) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sim, stop) = (sim.clone(), stop.clone());
    tokio::spawn(async move {
        if rtu_framing {
            sim.serve_rtu_over_tcp(listener, stop).await
        } else {
            sim.serve_tcp(listener, stop).await
        }
    });
    port
}

/// A TCP proxy on a fresh loopback port in front of `upstream`, one upstream connection per
/// client connection. The counter is the number of connections on which the upstream (the
/// simulator) has sent anything: it is counted even when the client has already gone, so a
/// test can know that a late reply was really sent. Runs until `stop`.
async fn reply_counting_proxy(upstream: u16, stop: &CancellationToken) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let replied = Arc::new(AtomicUsize::new(0));
    let (counter, stop) = (replied.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let client = tokio::select! {
                _ = stop.cancelled() => return,
                c = listener.accept() => c.unwrap().0,
            };
            let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                .await
                .unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let stop_in = stop.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                loop {
                    let n = tokio::select! {
                        _ = stop_in.cancelled() => return,
                        n = cr.read(&mut buf) => n,
                    };
                    match n {
                        // The client closed: keep the upstream open to see a late reply.
                        Ok(0) | Err(_) => return stop_in.cancelled().await,
                        Ok(n) => {
                            let _ = sw.write_all(&buf[..n]).await;
                        }
                    }
                }
            });
            let (stop_out, counter) = (stop.clone(), counter.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let mut counted = false;
                loop {
                    let n = tokio::select! {
                        _ = stop_out.cancelled() => return,
                        n = sr.read(&mut buf) => n,
                    };
                    match n {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if !counted {
                                counted = true;
                                counter.fetch_add(1, Ordering::SeqCst);
                            }
                            let _ = cw.write_all(&buf[..n]).await;
                        }
                    }
                }
            });
        }
    });
    (port, replied)
}

/// Running acquisition and the log of every batch it sent, in arrival order.
struct Acq {
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    rx: mpsc::Receiver<SampleBatch>,
    log: Vec<SampleBatch>,
}

impl Drop for Acq {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Acq {
    fn start(cfg: &Config, poll_now: bool) -> Acq {
        let shutdown = CancellationToken::new();
        let (acq, rx) = gasdtu::modbus::start(cfg, &shutdown, poll_now);
        assert_eq!(acq.tasks.len(), 1, "one bus, one task");
        Acq {
            shutdown,
            tasks: acq.tasks,
            rx,
            log: Vec::new(),
        }
    }

    /// Receive batches until `done(log)` holds; panics (showing the log) after `deadline`.
    async fn until(
        &mut self,
        what: &str,
        deadline: Duration,
        mut done: impl FnMut(&[SampleBatch]) -> bool,
    ) {
        let end = tokio::time::Instant::now() + deadline;
        while !done(&self.log) {
            match tokio::time::timeout_at(end, self.rx.recv()).await {
                Ok(Some(b)) => self.log.push(b),
                Ok(None) => panic!("acquisition stopped while waiting for {what}"),
                Err(_) => panic!(
                    "timed out after {deadline:?} waiting for {what}; batches:\n{}",
                    summary(&self.log)
                ),
            }
        }
    }

    /// The batches of one device, in order.
    fn of(&self, device: &str) -> Vec<&SampleBatch> {
        of(&self.log, device)
    }

    /// True while every bus task is alive (a panic would end it).
    fn running(&self) -> bool {
        self.tasks.iter().all(|t| !t.is_finished())
    }

    /// Stop and wait until the bus tasks ended (and so released their ports).
    async fn stop(mut self) {
        self.shutdown.cancel();
        for t in std::mem::take(&mut self.tasks) {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("bus task stops within 10 s")
                .expect("bus task did not panic");
        }
    }
}

fn of<'a>(log: &'a [SampleBatch], device: &str) -> Vec<&'a SampleBatch> {
    log.iter().filter(|b| &*b.device == device).collect()
}

fn count(log: &[SampleBatch], device: &str) -> usize {
    of(log, device).len()
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
                "  {} online={} failed={} slot={:?}: {}",
                b.device,
                b.online,
                b.failed_cycles,
                b.slot,
                q.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn sample<'a>(b: &'a SampleBatch, point: &str) -> &'a Sample {
    b.samples
        .iter()
        .find(|s| &*s.point == point)
        .unwrap_or_else(|| panic!("{}: no sample {point}", b.device))
}

/// The value of a point that must be good.
fn good(b: &SampleBatch, point: &str) -> Value {
    let s = sample(b, point);
    assert_eq!(s.quality, Quality::Good, "{}.{point}", b.device);
    s.value.clone().expect("a good sample has a value")
}

/// The reason of a point that must be bad.
fn bad(b: &SampleBatch, point: &str) -> BadReason {
    let s = sample(b, point);
    assert!(
        s.value.is_none(),
        "{}.{point}: bad sample with a value",
        b.device
    );
    match &s.quality {
        Quality::Bad(r) => r.clone(),
        Quality::Good => panic!("{}.{point} should be bad, got {:?}", b.device, s.value),
    }
}

fn all_good(b: &SampleBatch) -> bool {
    b.samples.iter().all(|s| s.quality.is_good())
}

/// A batch polled for a slot after `t` (so its requests left after `t`).
fn after(b: &SampleBatch, t: SystemTime) -> bool {
    b.slot > t
}

/// Make a socat pty pair in `dir` without blocking the runtime.
async fn pty_pair(dir: &Path, tag: &str) -> PtyPair {
    let (dir, tag) = (dir.to_path_buf(), tag.to_string());
    tokio::task::spawn_blocking(move || PtyPair::new(&dir, &tag))
        .await
        .unwrap()
}

// ------------------------------------------------------------------------------------------
// 1. CRC errors

/// Two units answering with a corrupted CRC 30 % of the time (fixed dice): with 3 retries every
/// batch of several cycles is good and exact, and the link did retry (its own counters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crc_errors_are_retried_until_every_batch_is_good() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path(), "crc-retry").await;
    let bus = rtu_bus(&pty.a, ms(150), 3);
    let a = device("a", RS485, 1, vec![u16_point("p", 0), u16_point("t", 1)]);
    let b = device("b", RS485, 2, vec![u16_point("p", 0), u16_point("t", 1)]);
    let pins = [
        (1, "p", Value::UInt(1001)),
        (1, "t", Value::UInt(1002)),
        (2, "p", Value::UInt(2001)),
        (2, "t", Value::UInt(2002)),
    ];
    let sim = simulator(&[&a, &b], &pins, faults(&["crc=0.3"], 11));
    let stop = CancellationToken::new();
    let _serial = serve_serial(&sim, &pty.b, &stop);

    let mut acq = Acq::start(&config(bus.clone(), vec![a, b]), true);
    acq.until("4 cycles of both devices", Duration::from_secs(15), |l| {
        count(l, "a") >= 4 && count(l, "b") >= 4
    })
    .await;
    for batch in &acq.log {
        let unit = if &*batch.device == "a" { 1 } else { 2 };
        assert_eq!(
            good(batch, "p"),
            Value::UInt(unit * 1000 + 1),
            "{}",
            summary(&acq.log)
        );
        assert_eq!(good(batch, "t"), Value::UInt(unit * 1000 + 2));
        assert!(batch.online && batch.failed_cycles == 0);
    }
    acq.stop().await;

    // The same line, the same dice rate, through the link directly: it must have needed extra
    // attempts (so the good batches above were not luck) and still never failed.
    let mut link = Link::new(bus);
    for _ in 0..30 {
        let regs = link
            .read(1, Table::HoldingRegister, 0, 2)
            .await
            .expect("3 retries hide a 30 % CRC error rate");
        assert_eq!(regs, vec![1001, 1002]);
    }
    let st = &link.stats;
    assert_eq!(st.transactions, 30);
    assert_eq!(st.failures, 0);
    assert!(
        st.attempts >= st.transactions + 3,
        "30 % CRC errors must have cost retries: {st:?}"
    );
    stop.cancel();
}

/// Without retries the same fault shows up as `BadReason::Crc` (never as a timeout) on the
/// affected devices only. A CRC error is no valid answer (issue 9, item 6): a cycle of CRC
/// errors counts as failed, a good cycle resets the count, and under a 100 % CRC fault every
/// device goes offline after `offline_after` (3) such cycles, whatever the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crc_errors_without_retries_are_classified_crc_not_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path(), "crc-class").await;
    let bus = rtu_bus(&pty.a, ms(150), 0);
    let devs: Vec<DeviceConfig> = (1..=4)
        .map(|u| device(&format!("d{u}"), RS485, u, vec![u16_point("v", 3)]))
        .collect();
    let pins: Vec<(u8, &str, Value)> = (1..=4u8)
        .map(|u| (u, "v", Value::UInt(100 + u as u64)))
        .collect();
    let sim = simulator(
        &devs.iter().collect::<Vec<_>>(),
        &pins,
        faults(&["crc=0.3"], 5),
    );
    let stop = CancellationToken::new();
    let _serial = serve_serial(&sim, &pty.b, &stop);

    let mut acq = Acq::start(&config(bus, devs), true);
    let is_crc = |b: &SampleBatch| matches!(sample(b, "v").quality, Quality::Bad(BadReason::Crc));
    acq.until(
        "some CRC-bad samples among 8+ batches",
        Duration::from_secs(15),
        |l| l.len() >= 8 && l.iter().filter(|b| is_crc(b)).count() >= 2,
    )
    .await;
    for b in &acq.log {
        let unit = b.device[1..].parse::<u64>().unwrap();
        match &sample(b, "v").quality {
            Quality::Good => assert_eq!(good(b, "v"), Value::UInt(100 + unit)),
            Quality::Bad(r) => assert_eq!(*r, BadReason::Crc, "{}", summary(&acq.log)),
        }
        // A CRC error is no valid answer: the cycle failed; a good one resets the count.
        assert_eq!(b.failed_cycles == 0, all_good(b), "{}", summary(&acq.log));
    }
    assert!(
        acq.log.iter().any(all_good),
        "70 % of the transactions are clean: {}",
        summary(&acq.log)
    );

    // Every reply corrupted from now on.
    sim.set_faults(faults(&["crc"], 5));
    let t = SystemTime::now();
    acq.until(
        "3 cycles of all four devices after the switch",
        Duration::from_secs(15),
        |l| {
            (1..=4).all(|u| {
                of(l, &format!("d{u}"))
                    .iter()
                    .filter(|b| after(b, t))
                    .count()
                    >= 3
            })
        },
    )
    .await;
    for b in acq.log.iter().filter(|b| after(b, t)) {
        assert_eq!(bad(b, "v"), BadReason::Crc, "{}", summary(&acq.log));
    }
    for u in 1..=4 {
        let last = *acq.of(&format!("d{u}")).last().unwrap();
        assert!(
            !last.online && last.failed_cycles >= 3,
            "a device with nothing but bad CRCs is offline:\n{}",
            summary(&acq.log)
        );
    }
    assert!(acq.running());
    stop.cancel();
}

// ------------------------------------------------------------------------------------------
// 2. Exceptions

/// An exception spoils its own block and nothing else: a read longer than the device accepts
/// (exception 3) on one block of `a`, an `exception:2` fault on every read of `b`, while `a`'s
/// other block and device `c` stay good and exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_become_bad_quality_for_their_block_only() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path(), "exc").await;
    let bus = rtu_bus(&pty.a, ms(200), 1);
    // a: block [0] and block [20..=29] (10 registers; the device accepts at most 4).
    let a = device(
        "a",
        RS485,
        1,
        vec![
            u16_point("flow", 0),
            u16_point("lo", 20),
            u16_point("hi", 29),
        ],
    );
    // b: two blocks, both refused with exception 2.
    let b = device("b", RS485, 2, vec![u16_point("x", 0), u16_point("y", 40)]);
    let c = device("c", RS485, 3, vec![hr("total", 0, DataType::U32)]);
    let sim = Simulator::new(
        vec![
            SimDevice::new(1, "a", a.points.clone(), vec![]).with_max_registers(4),
            SimDevice::new(2, "b", b.points.clone(), vec![]),
            SimDevice::new(3, "c", c.points.clone(), vec![]),
        ],
        faults(&["2:exception:2"], 1),
    );
    sim.set(1, "flow", Value::UInt(321)).unwrap();
    sim.set(3, "total", Value::UInt(3_000_000_001)).unwrap();
    let stop = CancellationToken::new();
    let _serial = serve_serial(&sim, &pty.b, &stop);

    let mut acq = Acq::start(&config(bus, vec![a, b, c]), true);
    acq.until("2 cycles of every device", Duration::from_secs(15), |l| {
        ["a", "b", "c"].iter().all(|d| count(l, d) >= 2)
    })
    .await;
    let exc = |code: u8, meaning: &str| BadReason::Exception {
        code,
        meaning: meaning.into(),
    };
    for b in acq.of("a") {
        assert_eq!(good(b, "flow"), Value::UInt(321), "{}", summary(&acq.log));
        assert_eq!(bad(b, "lo"), exc(3, "illegal data value"));
        assert_eq!(bad(b, "hi"), exc(3, "illegal data value"));
        assert!(b.online);
    }
    for b in acq.of("b") {
        // Both blocks were asked (an exception is an answer, not silence) and both refused.
        assert_eq!(bad(b, "x"), exc(2, "illegal data address"));
        assert_eq!(bad(b, "y"), exc(2, "illegal data address"));
        assert!(
            b.online && b.failed_cycles == 0,
            "a refusing device is alive"
        );
    }
    for b in acq.of("c") {
        assert_eq!(good(b, "total"), Value::UInt(3_000_000_001));
    }
    stop.cancel();
}

// ------------------------------------------------------------------------------------------
// 3. Garbage and a wrong unit id

/// Random bytes instead of, or in front of, unit 2's replies: never a panic, every sample of b
/// is either exact or bad with a protocol/CRC/timeout reason, a and c (before and after b on
/// the line) are untouched, and b recovers in the first cycle after the garbage stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_line_is_an_error_and_the_next_cycle_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path(), "garbage").await;
    let bus = rtu_bus(&pty.a, ms(150), 0);
    let a = device("a", RS485, 1, vec![u16_point("v", 0)]);
    let b = device("b", RS485, 2, vec![u16_point("v", 0), u16_point("w", 1)]);
    let c = device("c", RS485, 3, vec![u16_point("v", 0)]);
    let pins = [
        (1, "v", Value::UInt(11)),
        (2, "v", Value::UInt(21)),
        (2, "w", Value::UInt(22)),
        (3, "v", Value::UInt(31)),
    ];
    let sim = simulator(&[&a, &b, &c], &pins, faults(&["2:garbage"], 3));
    let stop = CancellationToken::new();
    let _serial = serve_serial(&sim, &pty.b, &stop);

    let mut acq = Acq::start(&config(bus, vec![a, b, c]), true);
    acq.until("4 cycles of b", Duration::from_secs(15), |l| {
        count(l, "b") >= 4 && count(l, "c") >= 4
    })
    .await;
    let log = summary(&acq.log);
    for batch in acq.of("a") {
        assert_eq!(good(batch, "v"), Value::UInt(11), "{log}");
    }
    for batch in acq.of("c") {
        assert_eq!(good(batch, "v"), Value::UInt(31), "{log}");
    }
    let mut bad_seen = 0;
    for batch in acq.of("b") {
        for (point, want) in [("v", 21), ("w", 22)] {
            match &sample(batch, point).quality {
                Quality::Good => assert_eq!(good(batch, point), Value::UInt(want), "{log}"),
                Quality::Bad(BadReason::Protocol(_) | BadReason::Crc | BadReason::Timeout) => {
                    bad_seen += 1
                }
                Quality::Bad(r) => panic!("garbage gave an unexpected reason {r:?}\n{log}"),
            }
        }
    }
    assert!(bad_seen > 0, "garbage must spoil some replies:\n{log}");
    assert!(acq.running(), "the bus task survived the garbage");

    sim.clear_faults();
    let t = SystemTime::now();
    acq.until("b good again", Duration::from_secs(5), |l| {
        of(l, "b").iter().any(|b| after(b, t))
    })
    .await;
    let first = *acq.of("b").iter().find(|b| after(b, t)).unwrap();
    assert_eq!(good(first, "v"), Value::UInt(21), "{}", summary(&acq.log));
    assert_eq!(good(first, "w"), Value::UInt(22));
    stop.cancel();
}

/// A hand-made slave on the pty that answers every request with a well-formed frame from the
/// wrong unit id (then, when told, from the right one), holding 0x1234 in every register.
fn wrong_unit_slave(path: &Path, wrong: Arc<AtomicBool>, requests: Arc<AtomicUsize>) {
    use tokio_serial::SerialPortBuilderExt;
    let mut port = tokio_serial::new(path.to_string_lossy(), BAUD)
        .open_native_async()
        .unwrap();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            let n = match port.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            // Read requests are 8 bytes: unit, 0x03, start, count, CRC.
            while buf.len() >= 8 {
                let req: Vec<u8> = buf.drain(..8).collect();
                requests.fetch_add(1, Ordering::SeqCst);
                let qty = u16::from_be_bytes([req[4], req[5]]) as usize;
                let mut pdu = vec![req[1], (2 * qty) as u8];
                for _ in 0..qty {
                    pdu.extend_from_slice(&[0x12, 0x34]);
                }
                let unit = if wrong.load(Ordering::SeqCst) {
                    req[0].wrapping_add(1)
                } else {
                    req[0]
                };
                let frame = gasdtu::sim::frame::rtu_frame(unit, &pdu);
                if port.write_all(&frame).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// A well-formed reply from another unit id is not an answer: the points are bad with a
/// protocol reason (after the retry), and good again as soon as the right unit answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_from_the_wrong_unit_is_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path(), "wrong-unit").await;
    let bus = rtu_bus(&pty.a, ms(200), 1);
    let wrong = Arc::new(AtomicBool::new(true));
    let requests = Arc::new(AtomicUsize::new(0));
    wrong_unit_slave(&pty.b, wrong.clone(), requests.clone());
    let a = device("a", RS485, 5, vec![u16_point("v", 0), u16_point("w", 1)]);

    let mut acq = Acq::start(&config(bus, vec![a]), true);
    acq.until("a first batch", Duration::from_secs(5), |l| !l.is_empty())
        .await;
    let first = &acq.log[0];
    for p in ["v", "w"] {
        assert!(
            matches!(bad(first, p), BadReason::Protocol(_)),
            "{}",
            summary(&acq.log)
        );
    }
    assert!(
        requests.load(Ordering::SeqCst) >= 2,
        "a protocol error is retried (retries = 1)"
    );
    assert!(acq.running());

    wrong.store(false, Ordering::SeqCst);
    let t = SystemTime::now();
    acq.until("a good batch", Duration::from_secs(5), |l| {
        l.iter().any(|b| after(b, t))
    })
    .await;
    let next = acq.log.iter().find(|b| after(b, t)).unwrap();
    assert_eq!(
        good(next, "v"),
        Value::UInt(0x1234),
        "{}",
        summary(&acq.log)
    );
    assert_eq!(good(next, "w"), Value::UInt(0x1234));
}

// ------------------------------------------------------------------------------------------
// 4. A port that vanishes and returns

/// The serial adapter disappears (socat stopped: both paths gone): batches keep coming, bad
/// with an I/O (or timeout) reason, the bus task keeps running; the adapter comes back at the
/// same path: good, exact samples return by themselves (link backoff 0.5 s .. 30 s, simulator
/// reopen 0.1 s .. 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_port_gives_bad_batches_and_good_ones_return() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path(), "usb").await;
    let (path_a, path_b) = (pty.a.clone(), pty.b.clone());
    let bus = rtu_bus(&path_a, ms(200), 1);
    let a = device("a", RS485, 1, vec![u16_point("v", 0)]);
    let sim = simulator(&[&a], &[(1, "v", Value::UInt(4242))], Faults::none());
    let stop = CancellationToken::new();
    let _serial = serve_serial(&sim, &path_b, &stop);

    let mut acq = Acq::start(&config(bus, vec![a]), true);
    acq.until("a good batch", Duration::from_secs(5), |l| {
        l.iter().any(all_good)
    })
    .await;
    assert_eq!(good(acq.log.last().unwrap(), "v"), Value::UInt(4242));

    tokio::task::spawn_blocking(move || pty.unplug())
        .await
        .unwrap();
    assert!(path_a.symlink_metadata().is_err() && path_b.symlink_metadata().is_err());
    let gone = SystemTime::now();
    let bad_after_unplug =
        |l: &[SampleBatch]| l.iter().filter(|b| after(b, gone) && !all_good(b)).count();
    acq.until(
        "3 bad batches while unplugged",
        Duration::from_secs(10),
        |l| bad_after_unplug(l) >= 3,
    )
    .await;
    for b in acq.log.iter().filter(|b| after(b, gone)) {
        let r = bad(b, "v");
        assert!(
            matches!(r, BadReason::Io(_) | BadReason::Timeout),
            "unplugged port: {r:?}\n{}",
            summary(&acq.log)
        );
    }
    assert!(
        acq.log
            .iter()
            .any(|b| after(b, gone) && matches!(bad(b, "v"), BadReason::Io(_))),
        "a missing port is an I/O error:\n{}",
        summary(&acq.log)
    );
    assert!(acq.running(), "the bus task survives the unplug");

    let (pa, pb) = (path_a.clone(), path_b.clone());
    let _pty = tokio::task::spawn_blocking(move || PtyPair::at(pa, pb))
        .await
        .unwrap();
    let back = SystemTime::now();
    acq.until("good samples after replug", Duration::from_secs(15), |l| {
        l.iter().any(|b| after(b, back) && all_good(b))
    })
    .await;
    let b = acq
        .log
        .iter()
        .find(|b| after(b, back) && all_good(b))
        .unwrap();
    assert_eq!(good(b, "v"), Value::UInt(4242));
    assert!(b.online);
    stop.cancel();
}

/// Another program holds the port (an engineer's terminal, or a forked process's copy of the
/// link's own descriptor): serialport's exclusive `flock` fails. The link tries the open three
/// times over 120 ms before it says so (a copy that lives a moment costs no transaction), then
/// names the port, the reason and the tries; once the holder lets go, reads are good again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_another_descriptor_holds_is_tried_three_times_then_named_busy() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pty = pty_pair(dir.path(), "held").await;
    let a = device("a", RS485, 1, vec![u16_point("v", 0)]);
    let sim = simulator(&[&a], &[(1, "v", Value::UInt(4242))], Faults::none());
    let stop = CancellationToken::new();
    let _serial = serve_serial(&sim, &pty.b, &stop);

    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&pty.a)
        .unwrap();
    // SAFETY: flock on a descriptor this test owns.
    let locked = unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(locked, 0, "the holder takes the port's lock");

    let mut link = Link::new(rtu_bus(&pty.a, ms(300), 0));
    let t0 = std::time::Instant::now();
    match link.read(1, Table::HoldingRegister, 0, 1).await {
        Err(TxError::Io(m)) => {
            let want = format!(
                "cannot open {}: Unable to acquire exclusive lock on serial port (3 tries over 120 ms)",
                pty.a.display()
            );
            assert_eq!(m, want);
        }
        other => panic!("a held port gave {other:?}"),
    }
    assert!(t0.elapsed() >= ms(120), "both settle waits were taken");
    assert_eq!((link.stats.opens, link.stats.open_failures), (1, 1));

    drop(holder);
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match link.read(1, Table::HoldingRegister, 0, 1).await {
            Ok(v) => {
                assert_eq!(v, vec![4242]);
                break;
            }
            Err(e) => assert!(
                tokio::time::Instant::now() < end,
                "no good read 10 s after the holder let go: {e}"
            ),
        }
        tokio::time::sleep(ms(50)).await;
    }
    stop.cancel();
}

// ------------------------------------------------------------------------------------------
// 5. RTU over TCP

/// RTU framing over a TCP socket (a serial device server), end to end through the planner,
/// link, decoder and bus task: every type exact, read times inside the test's window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_over_tcp_end_to_end() {
    let stop = CancellationToken::new();
    let a_points = vec![
        hr("pressure", 0, DataType::F32),
        hr("total", 2, DataType::U32),
        hr("temp", 4, DataType::I16),
        hr("bcd", 5, DataType::Bcd16),
        PointSpec {
            order: WordOrder::Cdab,
            ..hr("energy", 10, DataType::F64)
        },
        PointSpec {
            table: Table::InputRegister,
            ..hr("status", 0, DataType::U16)
        },
        PointSpec {
            table: Table::Coil,
            ..hr("valve", 3, DataType::Bool)
        },
    ];
    let a = device("a", LAN, 1, a_points);
    let b = device("b", LAN, 7, vec![hr("level", 100, DataType::I32)]);
    let pins = [
        (1, "pressure", Value::Float(101.325)),
        (1, "total", Value::UInt(4_000_000_000)),
        (1, "temp", Value::Int(-15)),
        (1, "bcd", Value::UInt(1234)),
        (1, "energy", Value::Float(123_456.789)),
        (1, "status", Value::UInt(0xBEEF)),
        (1, "valve", Value::Bool(true)),
        (7, "level", Value::Int(-70_000)),
    ];
    let sim = simulator(&[&a, &b], &pins, Faults::none());
    let port = serve_tcp(&sim, true, &stop).await;
    let bus = tcp_bus(port, true, ms(300), 1);
    let t0 = SystemTime::now();
    let mut acq = Acq::start(&config(bus, vec![a, b]), true);
    acq.until("2 cycles of both", Duration::from_secs(10), |l| {
        count(l, "a") >= 2 && count(l, "b") >= 2
    })
    .await;
    let t1 = SystemTime::now();
    for batch in acq.of("a") {
        let p = good(batch, "pressure").as_f64().unwrap();
        assert!((p - 101.325).abs() < 1e-4, "pressure {p}");
        assert_eq!(good(batch, "total"), Value::UInt(4_000_000_000));
        assert_eq!(good(batch, "temp"), Value::Int(-15));
        assert_eq!(good(batch, "bcd"), Value::UInt(1234));
        assert_eq!(good(batch, "energy"), Value::Float(123_456.789));
        assert_eq!(good(batch, "status"), Value::UInt(0xBEEF));
        assert_eq!(good(batch, "valve"), Value::Bool(true));
        for s in &batch.samples {
            assert!(s.read_at >= t0 && s.read_at <= t1, "{} read_at", s.point);
        }
        assert_eq!(&*batch.bus, "lan");
    }
    for batch in acq.of("b") {
        assert_eq!(good(batch, "level"), Value::Int(-70_000));
    }
    stop.cancel();
}

// ------------------------------------------------------------------------------------------
// 6. Offline and back

/// A dead unit (poll 1 s, offline_after = 2) is offline after its second silent cycle while the
/// other devices on the bus report good in those same cycles; once it answers again it is
/// back online by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_unit_goes_offline_after_n_cycles_and_comes_back() {
    let stop = CancellationToken::new();
    let mk = |name: &str, unit: u8| DeviceConfig {
        offline_after: 2,
        ..device(
            name,
            LAN,
            unit,
            vec![u16_point("v", 0), u16_point("far", 50)],
        )
    };
    let (a, b, c) = (mk("a", 1), mk("b", 2), mk("c", 3));
    let pins = [
        (1, "v", Value::UInt(1)),
        (2, "v", Value::UInt(2)),
        (3, "v", Value::UInt(3)),
    ];
    let sim = simulator(&[&a, &b, &c], &pins, faults(&["2:dead"], 1));
    let port = serve_tcp(&sim, false, &stop).await;
    let bus = tcp_bus(port, false, ms(200), 1);
    let devs = [a, b, c];
    let mut acq = Acq::start(&config(bus, devs.to_vec()), true);
    acq.until("2 cycles of every device", Duration::from_secs(10), |l| {
        ["a", "b", "c"].iter().all(|d| count(l, d) >= 2)
    })
    .await;
    let log = summary(&acq.log);
    let dead = acq.of("b");
    assert_eq!((dead[0].online, dead[0].failed_cycles), (true, 1), "{log}");
    assert_eq!((dead[1].online, dead[1].failed_cycles), (false, 2), "{log}");
    for d in &dead[..2] {
        assert_eq!(bad(d, "v"), BadReason::Timeout);
        assert_eq!(bad(d, "far"), BadReason::Timeout);
        // The same cycles, the other devices on the bus: good and exact.
        for (other, want) in [("a", 1), ("c", 3)] {
            let same = acq
                .of(other)
                .into_iter()
                .find(|o| o.slot == d.slot)
                .unwrap_or_else(|| panic!("{other} has no batch for slot {:?}\n{log}", d.slot));
            assert_eq!(good(same, "v"), Value::UInt(want), "{log}");
            assert!(same.online);
        }
    }

    sim.clear_faults();
    acq.until("b back online", Duration::from_secs(5), |l| {
        of(l, "b").last().is_some_and(|b| b.online)
    })
    .await;
    let back = *acq.of("b").last().unwrap();
    assert_eq!(back.failed_cycles, 0);
    assert_eq!(good(back, "v"), Value::UInt(2), "{}", summary(&acq.log));
    assert!(acq.running());
    stop.cancel();
}

// ------------------------------------------------------------------------------------------
// 7. Slow replies

/// A reply slower than the timeout is a timeout for that device only (the others report good
/// in the same cycle), and the late reply never answers a later request: over RTU-over-TCP
/// (no transaction ids) a changed value must be read fresh in the next cycle, not the stale
/// late reply. A reply that is slow but within the timeout is good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reply_times_out_that_device_only_and_never_answers_a_later_request() {
    let stop = CancellationToken::new();
    let a = device("a", LAN, 1, vec![u16_point("v", 0)]);
    let b = device("b", LAN, 2, vec![u16_point("v", 0)]);
    let c = device("c", LAN, 3, vec![u16_point("v", 0)]);
    let pins = [
        (1, "v", Value::UInt(10)),
        (2, "v", Value::UInt(111)),
        (3, "v", Value::UInt(30)),
    ];
    let sim = simulator(&[&a, &b, &c], &pins, faults(&["2:slow:500ms"], 1));
    let port = serve_tcp(&sim, true, &stop).await;
    let bus = tcp_bus(port, true, ms(200), 0);
    let devs = [a, b, c];
    // Aligned polls only (no poll at start): b's request goes out right after the second's
    // boundary, leaving most of a second to change the simulator before the next cycle.
    let mut acq = Acq::start(&config(bus, devs.to_vec()), false);
    acq.until("a first cycle of b", Duration::from_secs(5), |l| {
        count(l, "b") >= 1
    })
    .await;
    // Change b before its next cycle: no fault, a new value. The late replies (111) are still
    // on their way; they must not be read as the answer to the next request.
    sim.clear_faults();
    sim.set(2, "v", Value::UInt(222)).unwrap();
    acq.until(
        "the next cycle of every device",
        Duration::from_secs(5),
        |l| ["a", "b", "c"].iter().all(|d| count(l, d) >= 2),
    )
    .await;
    let log = summary(&acq.log);
    let slow = acq.of("b")[0];
    assert_eq!(bad(slow, "v"), BadReason::Timeout, "{log}");
    for (other, want) in [("a", 10), ("c", 30)] {
        let same = acq
            .of(other)
            .into_iter()
            .find(|o| o.slot == slow.slot)
            .unwrap();
        assert_eq!(
            good(same, "v"),
            Value::UInt(want),
            "{other} in b's slow cycle\n{log}"
        );
    }
    assert_eq!(
        good(acq.of("b")[1], "v"),
        Value::UInt(222),
        "stale late reply?\n{log}"
    );

    // Slow but within the timeout: good.
    sim.set_faults(faults(&["2:slow:60ms"], 1));
    let t = SystemTime::now();
    acq.until(
        "a cycle of b with a 60 ms delay",
        Duration::from_secs(5),
        |l| of(l, "b").iter().any(|b| after(b, t)),
    )
    .await;
    let b = *acq.of("b").iter().find(|b| after(b, t)).unwrap();
    assert_eq!(good(b, "v"), Value::UInt(222), "{}", summary(&acq.log));
    stop.cancel();
}

/// The link on its own: a slow reply costs exactly the configured attempts, and what comes
/// back afterwards belongs to the request that was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_drops_late_replies_between_requests() {
    let stop = CancellationToken::new();
    let pts = vec![u16_point("v", 0), u16_point("w", 1)];
    let sim = Simulator::new(
        vec![SimDevice::new(1, "a", pts, vec![])],
        faults(&["1:slow:300ms"], 1),
    );
    sim.set(1, "v", Value::UInt(7)).unwrap();
    sim.set(1, "w", Value::UInt(8)).unwrap();
    let sim_port = serve_tcp(&sim, true, &stop).await;
    let (port, replied) = reply_counting_proxy(sim_port, &stop).await;
    let mut link = Link::new(tcp_bus(port, true, ms(100), 1));
    let err = link
        .read(1, Table::HoldingRegister, 0, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TxError::Timeout { attempts: 2, .. }),
        "{err:?}"
    );
    assert_eq!(link.stats.attempts, 2);
    sim.clear_faults();
    // Same function, another length and start: a stale reply (one register, value 7) would
    // be taken for this one if the link kept the transport. Wait until the simulator has sent
    // both late replies (one per attempt, each on its own connection), so they are on the
    // wire before the next request.
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while replied.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < end,
            "the simulator sent {} of the 2 late replies within 5 s",
            replied.load(Ordering::SeqCst)
        );
        tokio::time::sleep(ms(5)).await;
    }
    assert_eq!(
        link.read(1, Table::HoldingRegister, 1, 1).await.unwrap(),
        vec![8]
    );
    assert_eq!(
        link.read(1, Table::HoldingRegister, 0, 2).await.unwrap(),
        vec![7, 8]
    );
    stop.cancel();
}
