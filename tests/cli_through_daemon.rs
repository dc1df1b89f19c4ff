//! The commissioning CLI through a running daemon, in process: real bus tasks
//! (`gasdtu::modbus::start`) polling the simulator, the real status socket with the bus proxy
//! (`StatusServer::with_bus_proxy`) on a temporary path, and the real `gasdtu read/write/scan`
//! binary as a field engineer runs it. On Modbus TCP a counting relay in front of the
//! simulator proves the CLI never opened a connection of its own while the daemon owned the
//! bus (one connection, ever); `--direct` is the control that shows the relay would see a
//! second master. On serial (socat pty pair) the CLI reaches a port the daemon holds open.
//! Also: a bus the daemon does not own is opened directly, no daemon means a direct open,
//! refusals (unknown bus, oversized line, out-of-range count) are clear. Every wait is on a
//! condition with a deadline.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gasdtu::config::{
    BusConfig, Config, DeviceConfig, GatewayConfig, Parity, SerialSettings, Transport,
};
use gasdtu::gateway::bus_proxy::{BusProxy, ProxyClient, ProxyError};
use gasdtu::gateway::status_socket::StatusServer;
use gasdtu::modbus::bus::RawOp;
use gasdtu::modbus::link::TxError;
use gasdtu::model::{DataType, PointSpec, SampleBatch, Table, Value, WordOrder};
use gasdtu::sim::{FaultRule, Faults, SimDevice, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn point(name: &str, address: u16, writable: bool) -> PointSpec {
    PointSpec {
        name: name.into(),
        table: Table::HoldingRegister,
        address,
        data_type: DataType::U16,
        order: WordOrder::Abcd,
        scale: 1.0,
        offset: 0.0,
        unit: None,
        writable,
        scale_from: None,
        publish: true,
    }
}

fn device(name: &str, bus: &str, unit: u8, points: Vec<PointSpec>) -> DeviceConfig {
    DeviceConfig {
        name: name.into(),
        bus: bus.into(),
        unit,
        poll: Duration::from_secs(1),
        phase: Duration::ZERO,
        max_registers: 125,
        max_gap: 10,
        offline_after: 3,
        enabled: true,
        profile: None,
        points,
        computed: vec![],
        report: Duration::from_secs(1),
        deadbands: Default::default(),
        report_last: Default::default(),
    }
}

fn config(bus: BusConfig, devices: Vec<DeviceConfig>) -> Config {
    Config {
        gateway: GatewayConfig {
            id: "proxytest".into(),
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

/// pt1 (unit 1: pressure 1234 at 0, setpoint 50 at 1, writable) and fm3 (unit 3: flow 77 at 0)
/// on bus `bus`; the simulator also serves unit 2, which answers everything with exception 2.
fn site(bus: &str) -> (Vec<DeviceConfig>, Simulator) {
    let pt1 = device(
        "pt1",
        bus,
        1,
        vec![point("pressure", 0, false), point("setpoint", 1, true)],
    );
    let fm3 = device("fm3", bus, 3, vec![point("flow", 0, false)]);
    let spare = SimDevice::new(2, "spare", vec![point("x", 0, false)], vec![]);
    let sim = Simulator::new(
        vec![
            SimDevice::new(1, "pt1", pt1.points.clone(), vec![]),
            spare,
            SimDevice::new(3, "fm3", fm3.points.clone(), vec![]),
        ],
        Faults::new(
            vec![FaultRule::parse("2:exception:2").expect("fault rule parses")],
            Some(7),
        ),
    );
    sim.set(1, "pressure", Value::UInt(1234)).unwrap();
    sim.set(1, "setpoint", Value::UInt(50)).unwrap();
    sim.set(3, "flow", Value::UInt(77)).unwrap();
    (vec![pt1, fm3], sim)
}

/// Serve `sim` over Modbus TCP on a fresh loopback port until `stop`.
async fn serve_tcp(sim: &Simulator, stop: &CancellationToken) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sim, stop) = (sim.clone(), stop.clone());
    tokio::spawn(async move { sim.serve_tcp(listener, stop).await });
    port
}

/// Connections a relay has seen: open now, most open at once, accepted in all.
#[derive(Default)]
struct Conns {
    open: AtomicUsize,
    max_open: AtomicUsize,
    total: AtomicUsize,
}

/// A TCP relay on a fresh loopback port in front of 127.0.0.1:`to`, counting connections.
async fn counting_relay(to: u16, stop: &CancellationToken) -> (u16, Arc<Conns>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let conns = Arc::new(Conns::default());
    let (c, stop) = (conns.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let (mut client, _) = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            };
            c.total.fetch_add(1, Ordering::SeqCst);
            let now = c.open.fetch_add(1, Ordering::SeqCst) + 1;
            c.max_open.fetch_max(now, Ordering::SeqCst);
            let c = c.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                }
                c.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (port, conns)
}

/// A daemon in this process: bus tasks feeding a batch log, and the status socket with the
/// bus proxy at `socket`.
struct Daemon {
    stop: CancellationToken,
    batches: Arc<Mutex<Vec<SampleBatch>>>,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Daemon {
    async fn start(cfg: &Config, socket: &Path) -> Daemon {
        let stop = CancellationToken::new();
        let (acq, mut rx) = gasdtu::modbus::start(cfg, &stop, true);
        let proxy = BusProxy::new();
        proxy.set(&acq);
        let server = StatusServer::bind(socket, Arc::new(|| serde_json::json!({"devices": {}})))
            .await
            .unwrap()
            .with_bus_proxy(proxy);
        tokio::spawn(server.run(stop.clone()));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let log = batches.clone();
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                log.lock().unwrap().push(b);
            }
        });
        Daemon {
            stop,
            batches,
            socket: socket.to_path_buf(),
        }
    }

    fn count(&self) -> usize {
        self.batches.lock().unwrap().len()
    }

    /// Latest good value of `device.point` the poller reported.
    fn last(&self, device: &str, point: &str) -> Option<Value> {
        let log = self.batches.lock().unwrap();
        log.iter()
            .rev()
            .filter(|b| &*b.device == device)
            .flat_map(|b| b.samples.iter())
            .find(|s| &*s.point == point && s.quality.is_good())
            .and_then(|s| s.value.clone())
    }

    fn sock(&self) -> &str {
        self.socket.to_str().unwrap()
    }
}

/// A finished run of the binary.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `gasdtu args` (stdin /dev/null) off the runtime's threads; killed after 60 s.
async fn gasdtu_cli(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(gasdtu())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gasdtu");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gasdtu {args:?} did not exit within 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Send raw bytes on the socket, end the request side, and read the reply line.
async fn raw_exchange(socket: &Path, bytes: &[u8]) -> serde_json::Value {
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("reply within 10 s")
        .unwrap();
    serde_json::from_str(out.trim_end()).unwrap_or_else(|e| panic!("{out:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_goes_through_the_daemon_on_its_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (devices, sim) = site("lan");
    let sim_port = serve_tcp(&sim, &stop).await;
    let (relay, conns) = counting_relay(sim_port, &stop).await;
    let bus = BusConfig {
        name: "lan".into(),
        transport: Transport::Tcp {
            host: "127.0.0.1".into(),
            port: relay,
        },
        timeout: Duration::from_millis(300),
        turnaround: Duration::ZERO,
        retries: 0,
    };
    let d = Daemon::start(&config(bus, devices), &dir.path().join("gasdtu.sock")).await;
    wait_until(
        "first polls of pt1 and fm3",
        Duration::from_secs(10),
        || (d.last("pt1", "pressure").is_some() && d.last("fm3", "flow").is_some()).then_some(()),
    )
    .await;
    let polled_before = d.count();
    let tcp = format!("127.0.0.1:{relay}");

    // A read: the simulator's values, through the daemon.
    let r = gasdtu_cli(&[
        "read",
        "--tcp",
        &tcp,
        "--socket",
        d.sock(),
        "--unit",
        "1",
        "--address",
        "0",
        "--count",
        "2",
        "--json",
    ])
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stderr.trim(),
        "gasdtu read: through the running daemon (bus lan)"
    );
    let lines = json_lines(&r.stdout);
    assert_eq!(lines.len(), 2, "{r:?}");
    assert_eq!(lines[0]["value"], 1234);
    assert_eq!(lines[1]["value"], 50);

    // The same endpoint by another name, and the bus by its config name.
    for target in [
        vec!["--tcp".to_string(), format!("localhost:{relay}")],
        vec!["--rtu-over-tcp".to_string(), tcp.clone()],
        vec!["--bus".to_string(), "lan".to_string()],
    ] {
        let mut args = vec!["read"];
        args.extend(target.iter().map(String::as_str));
        args.extend(["--socket", d.sock(), "--unit", "3", "--address", "0"]);
        let r = gasdtu_cli(&args).await;
        assert_eq!(r.code, 0, "{target:?}: {r:?}");
        assert!(
            r.stderr
                .starts_with("gasdtu read: through the running daemon (bus lan)"),
            "{target:?}: {r:?}"
        );
        assert!(r.stdout.contains("0  004D  77"), "{target:?}: {r:?}");
    }

    // A write reaches the device, is read back by the CLI, and the poller sees it.
    let r = gasdtu_cli(&[
        "write",
        "--yes",
        "--tcp",
        &tcp,
        "--socket",
        d.sock(),
        "--unit",
        "1",
        "--address",
        "1",
        "--value",
        "321",
    ])
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("written; read back: 321 (raw 0141)"),
        "{r:?}"
    );
    assert_eq!(
        r.stderr.trim(),
        "gasdtu write: through the running daemon (bus lan)"
    );
    wait_until(
        "the poller to read the written setpoint",
        Duration::from_secs(10),
        || (d.last("pt1", "setpoint") == Some(Value::UInt(321))).then_some(()),
    )
    .await;
    // A bit of a register: read-modify-write, all through the daemon.
    let r = gasdtu_cli(&[
        "write",
        "--yes",
        "--tcp",
        &tcp,
        "--socket",
        d.sock(),
        "--unit",
        "1",
        "--address",
        "1",
        "--type",
        "bit",
        "--bit",
        "15",
        "--value",
        "on",
    ])
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("register 0141 -> 8141"), "{r:?}");
    assert!(r.stdout.contains("read back: 1 (raw 8141)"), "{r:?}");

    // A scan: units 1 and 3 answer, 2 with an exception; one request per unit.
    let r = gasdtu_cli(&[
        "scan",
        "--tcp",
        &tcp,
        "--socket",
        d.sock(),
        "--from",
        "1",
        "--to",
        "3",
    ])
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("unit   2  answers  with exception 2 (illegal data address)"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains(&format!(
            "3 of 3 unit ids answered on bus lan (Modbus TCP {tcp}) of the running daemon in"
        )),
        "{r:?}"
    );
    assert!(r.stdout.contains("s: 1 2 3\n"), "{r:?}");

    // One master on the bus the whole time: the daemon's own connection, never a second.
    assert_eq!(conns.total.load(Ordering::SeqCst), 1, "connections ever");
    assert_eq!(
        conns.max_open.load(Ordering::SeqCst),
        1,
        "connections at once"
    );
    // And the poller kept polling meanwhile.
    assert!(d.count() > polled_before, "polling went on");

    // Control: --direct opens a second connection beside the daemon's (the relay sees it).
    let r = gasdtu_cli(&[
        "read",
        "--direct",
        "--tcp",
        &tcp,
        "--socket",
        d.sock(),
        "--unit",
        "1",
        "--address",
        "0",
    ])
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
    assert_eq!(conns.total.load(Ordering::SeqCst), 2);
    assert_eq!(conns.max_open.load(Ordering::SeqCst), 2);

    // Bus failures come back classified, as a direct link reports them.
    let client = ProxyClient::new(&d.socket);
    let read0 = RawOp::Read {
        table: Table::HoldingRegister,
        address: 0,
        count: 1,
    };
    match client.transact("lan", 2, &read0).await {
        Ok(Err(TxError::Exception { code: 2 })) => {}
        other => panic!("exception expected: {other:?}"),
    }
    match client.transact("lan", 9, &read0).await {
        Ok(Err(TxError::Timeout { attempts: 1, .. })) => {}
        other => panic!("timeout expected: {other:?}"),
    }
    let r = gasdtu_cli(&[
        "read",
        "--tcp",
        &tcp,
        "--socket",
        d.sock(),
        "--unit",
        "9",
        "--address",
        "0",
    ])
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("gasdtu read: unit 9: timeout after 300ms (1 attempt), reading holding 0"),
        "{r:?}"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_buses_the_daemon_does_not_own() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (devices, sim) = site("lan");
    let port = serve_tcp(&sim, &stop).await;
    let bus = BusConfig {
        name: "lan".into(),
        transport: Transport::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        timeout: Duration::from_millis(300),
        turnaround: Duration::ZERO,
        retries: 0,
    };
    let d = Daemon::start(&config(bus, devices), &dir.path().join("gasdtu.sock")).await;
    let client = ProxyClient::new(&d.socket);
    let buses = client.buses().await.unwrap();
    assert_eq!(buses.len(), 1);
    assert_eq!(buses[0].name, "lan");

    // Another device the daemon does not poll: the CLI opens it itself, silently.
    let (_, other) = site("x");
    other.set(1, "pressure", Value::UInt(999)).unwrap();
    let other_port = serve_tcp(&other, &stop).await;
    let r = gasdtu_cli(&[
        "read",
        "--tcp",
        &format!("127.0.0.1:{other_port}"),
        "--socket",
        d.sock(),
        "--address",
        "0",
    ])
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
    assert!(r.stdout.contains("03E7  999"), "{r:?}");

    // No daemon on the socket: a direct open, nothing extra said.
    let r = gasdtu_cli(&[
        "read",
        "--tcp",
        &format!("127.0.0.1:{port}"),
        "--socket",
        dir.path().join("nobody.sock").to_str().unwrap(),
        "--address",
        "0",
    ])
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
    assert!(r.stdout.contains("04D2  1234"), "{r:?}");

    // A bus name neither the daemon nor the config knows.
    let r = gasdtu_cli(&[
        "read",
        "--bus",
        "nope",
        "--socket",
        d.sock(),
        "--config",
        dir.path().join("missing.toml").to_str().unwrap(),
        "--address",
        "0",
    ])
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.starts_with("gasdtu read: --bus nope: cannot read"),
        "{r:?}"
    );

    // A request for a bus the daemon does not own is refused, naming what it owns.
    let read0 = RawOp::Read {
        table: Table::HoldingRegister,
        address: 0,
        count: 1,
    };
    match client.transact("nope", 1, &read0).await {
        Err(ProxyError::Refused { kind, message, .. }) => {
            assert_eq!(kind, "unknown_bus");
            assert_eq!(
                message,
                "the running daemon owns no bus `nope` (it owns lan)"
            );
        }
        other => panic!("refusal expected: {other:?}"),
    }

    // Oversized lines, out-of-range counts and broken JSON are refused with a reason.
    let mut long = br#"{"op":"buses","pad":""#.to_vec();
    long.extend(std::iter::repeat_n(b'x', 5000));
    long.extend(b"\"}\n");
    // (bytes sent, kind, fragment of the error)
    let rows: Vec<(Vec<u8>, &str, &str)> = vec![
        (long, "too_long", "longer than 4096 bytes"),
        (
            br#"{"op":"modbus","bus":"lan","unit":1,"fn":"read_holding","address":0,"count":126}"#
                .to_vec(),
            "bad_request",
            "count 126 out of range for the holding table (1 to 125 per read)",
        ),
        (
            br#"{"op":"modbus","bus":"lan","unit":1,"fn":"write_registers","address":0,"values":[]}"#
                .to_vec(),
            "bad_request",
            "0 registers in one write out of range (1 to 123)",
        ),
        (b"{\"op\":\n".to_vec(), "bad_request", "bad JSON request"),
    ];
    for (bytes, kind, want) in rows {
        let v = raw_exchange(&d.socket, &bytes).await;
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["kind"], kind, "{v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{v}");
    }
    // The server still answers afterwards.
    assert_eq!(client.buses().await.unwrap().len(), 1);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serial_port_the_daemon_holds_is_reached_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let pty = PtyPair::new(dir.path(), "rs485");
    let (devices, sim) = site("rs485");
    let serial = |path: &Path| SerialSettings {
        port: path.to_string_lossy().into_owned(),
        baud: 38_400,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
    };
    {
        let (sim, settings, stop) = (sim.clone(), serial(&pty.b), stop.clone());
        tokio::spawn(async move { sim.serve_serial(settings, true, stop).await });
    }
    let bus = BusConfig {
        name: "rs485".into(),
        transport: Transport::Rtu(serial(&pty.a)),
        timeout: Duration::from_millis(300),
        turnaround: Duration::from_millis(5),
        retries: 1,
    };
    let d = Daemon::start(&config(bus, devices), &dir.path().join("gasdtu.sock")).await;
    wait_until("first poll of pt1", Duration::from_secs(10), || {
        d.last("pt1", "pressure").map(|_| ())
    })
    .await;
    // The CLI names the pty by its real path; the daemon holds it through a symlink.
    let real = std::fs::canonicalize(&pty.a).unwrap();
    let r = gasdtu_cli(&[
        "read",
        "--serial",
        real.to_str().unwrap(),
        "--socket",
        d.sock(),
        "--unit",
        "3",
        "--address",
        "0",
    ])
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stderr.trim(),
        "gasdtu read: through the running daemon (bus rs485)"
    );
    assert!(r.stdout.contains("004D  77"), "{r:?}");
    // Control: opening it ourselves fails, the daemon holds the port exclusively.
    let r = gasdtu_cli(&[
        "read",
        "--direct",
        "--serial",
        real.to_str().unwrap(),
        "--socket",
        d.sock(),
        "--unit",
        "3",
        "--address",
        "0",
    ])
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot open"), "{r:?}");
    stop.cancel();
}
