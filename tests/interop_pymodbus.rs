//! Interoperability: gasdtu's master, planner and decoder against pymodbus, an independent
//! Modbus implementation, over Modbus TCP and over RTU on a pseudo-terminal pair. Also the
//! shared-bus contract: a dead slave costs only its own timeout.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use gasdtu::config::{
    BusConfig, Config, DeviceConfig, GatewayConfig, Parity, SerialSettings, Transport,
};
use gasdtu::model::{
    BadReason, DataType, PointSpec, Quality, SampleBatch, Table, Value, WordOrder,
};
use tokio_util::sync::CancellationToken;

fn pt(name: &str, table: Table, address: u16, data_type: DataType, order: WordOrder) -> PointSpec {
    PointSpec {
        name: name.into(),
        table,
        address,
        data_type,
        order,
        scale: 1.0,
        offset: 0.0,
        unit: None,
        writable: false,
        scale_from: None,
        publish: true,
    }
}

fn device(name: &str, bus: &str, unit: u8, points: Vec<PointSpec>) -> DeviceConfig {
    DeviceConfig {
        name: name.into(),
        bus: bus.into(),
        unit,
        poll: Duration::from_secs(3600),
        phase: Duration::ZERO,
        max_registers: 125,
        max_gap: 10,
        offline_after: 1,
        enabled: true,
        profile: None,
        points,
        computed: vec![],
        report: Duration::from_secs(3600),
        deadbands: Default::default(),
        report_last: Default::default(),
    }
}

fn unit1_points() -> Vec<PointSpec> {
    use DataType::*;
    use Table::*;
    use WordOrder::*;
    vec![
        pt("pressure", HoldingRegister, 0, F32, Abcd),
        pt("temperature", HoldingRegister, 2, F32, Cdab),
        pt("big", HoldingRegister, 4, U32, Abcd),
        pt("neg", HoldingRegister, 6, I16, Abcd),
        pt("bcd", HoldingRegister, 7, Bcd16, Abcd),
        pt("double", HoldingRegister, 8, F64, Dcba),
        pt("intreal", HoldingRegister, 12, IntReal, Dcba),
        PointSpec {
            scale: gasdtu::modbus::registers::decimal_scale(4),
            ..pt("bcd48", HoldingRegister, 16, Bcd48, Abcd)
        },
        // Not mapped in the device: its own block, which gets exception 2.
        pt("missing", HoldingRegister, 40, U16, Abcd),
        pt("ir0", InputRegister, 0, U16, Abcd),
        pt("ir3", InputRegister, 3, U16, Abcd),
        pt("coil0", Coil, 0, Bool, Abcd),
        pt("coil1", Coil, 1, Bool, Abcd),
        pt("coil7", Coil, 7, Bool, Abcd),
    ]
}

fn config(bus: BusConfig, devices: Vec<DeviceConfig>) -> Config {
    Config {
        gateway: GatewayConfig {
            id: "test".into(),
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

/// Run acquisition until `n` batches arrived; returns them by device name with the arrival
/// time of each, and the start time.
#[allow(clippy::type_complexity)]
fn collect(cfg: Config, n: usize) -> (HashMap<String, (SampleBatch, Instant)>, Instant) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let t0 = Instant::now();
        let (_acq, mut rx) = gasdtu::modbus::start(&cfg, &shutdown, true);
        let mut out = HashMap::new();
        while out.len() < n {
            let b = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("batches within 20 s")
                .expect("channel open");
            out.insert(b.device.to_string(), (b, Instant::now()));
        }
        shutdown.cancel();
        (out, t0)
    })
}

fn value(b: &SampleBatch, point: &str) -> Value {
    let s = b
        .samples
        .iter()
        .find(|s| &*s.point == point)
        .unwrap_or_else(|| panic!("no sample {point}"));
    assert_eq!(s.quality, Quality::Good, "{point}");
    s.value.clone().unwrap()
}

fn assert_unit1(b: &SampleBatch) {
    let f = |p| value(b, p).as_f64().unwrap();
    assert!(
        (f("pressure") - 101.325).abs() < 1e-4,
        "pressure {}",
        f("pressure")
    );
    assert_eq!(f("temperature"), 15.5);
    assert_eq!(value(b, "big"), Value::UInt(3_000_000_000));
    assert_eq!(value(b, "neg"), Value::Int(-1234));
    assert_eq!(value(b, "bcd"), Value::UInt(1234));
    assert_eq!(value(b, "double"), Value::Float(123456.789));
    // INTREAL (each half fully reversed) and 12-digit BCD with 4 implied decimals, written by
    // an independent implementation: the decimals the device means, exactly.
    assert_eq!(value(b, "intreal"), Value::Float(987_654.32));
    assert_eq!(value(b, "bcd48"), Value::Float(9876.5432));
    assert_eq!(value(b, "ir0"), Value::UInt(42));
    assert_eq!(value(b, "ir3"), Value::UInt(45));
    assert_eq!(value(b, "coil0"), Value::Bool(true));
    assert_eq!(value(b, "coil1"), Value::Bool(false));
    assert_eq!(value(b, "coil7"), Value::Bool(true));
    // The exception spoils its own block and nothing else.
    let missing = b.samples.iter().find(|s| &*s.point == "missing").unwrap();
    match &missing.quality {
        Quality::Bad(BadReason::Exception { code: 2, meaning }) => {
            assert_eq!(meaning, "illegal data address")
        }
        q => panic!("missing point should be exception 2, got {q:?}"),
    }
    assert!(b.online);
}

fn pymodbus(args: &[&str]) -> Proc {
    let mut p = Proc::spawn(
        "pymodbus",
        Command::new(python())
            .arg(repo_root().join("tests/py/pymodbus_device.py"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    p.wait_stdout_line("ready", Duration::from_secs(30));
    p
}

#[test]
fn reads_and_decodes_a_pymodbus_device_over_tcp() {
    let port = free_port();
    let _py = pymodbus(&["--tcp", &port.to_string()]);
    wait_port(port, Duration::from_secs(10));
    let bus = BusConfig {
        name: "lan".into(),
        transport: Transport::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        timeout: Duration::from_secs(2),
        turnaround: Duration::ZERO,
        retries: 1,
    };
    let cfg = config(
        bus,
        vec![
            device("meter1", "lan", 1, unit1_points()),
            device(
                "meter2",
                "lan",
                2,
                vec![pt(
                    "r0",
                    Table::HoldingRegister,
                    0,
                    DataType::U16,
                    WordOrder::Abcd,
                )],
            ),
        ],
    );
    let got: HashMap<_, _> = collect(cfg, 2)
        .0
        .into_iter()
        .map(|(d, (b, _))| (d, b))
        .collect();
    assert_unit1(&got["meter1"]);
    assert_eq!(value(&got["meter2"], "r0"), Value::UInt(7));
}

#[test]
fn shared_rtu_bus_with_a_dead_slave_still_reports_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::new(dir.path(), "rs485");
    let _py = pymodbus(&["--serial", pty.b.to_str().unwrap(), "--baud", "9600"]);
    let timeout = Duration::from_millis(300);
    let bus = BusConfig {
        name: "rs485".into(),
        transport: Transport::Rtu(SerialSettings {
            port: pty.a.to_string_lossy().into(),
            baud: 9600,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
        }),
        timeout,
        turnaround: Duration::from_millis(5),
        retries: 1,
    };
    let r0 = || {
        vec![pt(
            "r0",
            Table::HoldingRegister,
            0,
            DataType::U16,
            WordOrder::Abcd,
        )]
    };
    let mut dead_points = unit1_points();
    dead_points.truncate(3);
    let cfg = config(
        bus,
        vec![
            device("a_meter1", "rs485", 1, unit1_points()),
            // Unit 9 does not exist on this bus: three blocks, but only the first may cost a
            // timeout (with its retry); the rest are skipped this cycle.
            device("b_dead", "rs485", 9, {
                let mut p = dead_points;
                p.push(pt(
                    "far",
                    Table::InputRegister,
                    0,
                    DataType::U16,
                    WordOrder::Abcd,
                ));
                p.push(pt("coil", Table::Coil, 0, DataType::Bool, WordOrder::Abcd));
                p
            }),
            device("c_meter2", "rs485", 2, r0()),
        ],
    );
    let (arrived, t0) = collect(cfg, 3);
    // What the dead unit cost: from the batch before it (or the start) to its own batch.
    let at = |d: &str| arrived[d].1;
    let before = arrived
        .values()
        .map(|(_, t)| *t)
        .filter(|t| *t < at("b_dead"))
        .max()
        .unwrap_or(t0);
    let took = at("b_dead") - before;
    let got: HashMap<_, _> = arrived.into_iter().map(|(d, (b, _))| (d, b)).collect();
    assert_unit1(&got["a_meter1"]);
    assert_eq!(value(&got["c_meter2"], "r0"), Value::UInt(7));
    let dead = &got["b_dead"];
    assert!(
        !dead.online,
        "offline_after = 1: one silent cycle marks it offline: {:?}",
        dead.samples
    );
    assert_eq!(dead.failed_cycles, 1);
    for s in &dead.samples {
        assert_eq!(s.quality, Quality::Bad(BadReason::Timeout), "{}", s.point);
    }
    // The dead unit cost one timeout per attempt (2 attempts) and nothing more: not one per
    // block (3 blocks x 2 attempts = 6 timeouts). The bound is what that bug would cost at
    // least, measured from the batch before the dead unit's (so port opening and start-up are
    // not in it): 1.2 s of slack over the 0.6 s the dead unit should cost.
    assert!(
        took < timeout * 6,
        "the dead unit cost {took:?}; a dead slave must cost only its own timeout and retry"
    );
    assert!(
        took >= timeout * 2,
        "the dead unit was given its timeout and retry ({took:?})"
    );
}
