//! In-process tests of the simulator's I/O edges with tokio-modbus as an independent client:
//! Modbus TCP and RTU-over-TCP on 127.0.0.1, and RTU on a socat pseudo-terminal pair.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_modbus::prelude::*;
use tokio_serial::SerialPortBuilderExt;
use tokio_util::sync::CancellationToken;

use super::frame::{check_rtu, rtu_frame, RtuScan};
use super::{FaultRule, Faults, SimDevice, Simulator};
use crate::config::{Parity, SerialSettings};
use crate::model::{ComputedSpec, DataType, PointSpec, Table, Value, WordOrder};

fn pt(name: &str, table: Table, address: u16, data_type: DataType) -> PointSpec {
    PointSpec {
        name: name.into(),
        table,
        address,
        data_type,
        order: WordOrder::Abcd,
        scale: 1.0,
        offset: 0.0,
        unit: None,
        writable: true,
        scale_from: None,
        publish: true,
    }
}

fn device(unit: u8) -> SimDevice {
    let h = Table::HoldingRegister;
    SimDevice::new(
        unit,
        "test",
        vec![
            pt("pressure", h, 0, DataType::F32),
            pt("temperature", h, 2, DataType::F32),
            pt("volume_standard_int", h, 4, DataType::U32),
            pt("volume_standard_frac", h, 6, DataType::F32),
            pt("status", h, 8, DataType::U16),
            pt("valve", Table::Coil, 2, DataType::Bool),
        ],
        vec![ComputedSpec {
            name: "volume_standard".into(),
            terms: vec![
                ("volume_standard_int".into(), 1.0),
                ("volume_standard_frac".into(), 1.0),
            ],
            unit: None,
        }],
    )
    .with_max_registers(16)
}

fn f32_at(regs: &[u16], i: usize) -> f32 {
    f32::from_bits((regs[i] as u32) << 16 | regs[i + 1] as u32)
}

const CLIENT_TIMEOUT: Duration = Duration::from_millis(400);

struct TcpFixture {
    sim: Simulator,
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TcpFixture {
    async fn start(rtu: bool) -> Self {
        let sim = Simulator::new(vec![device(1), device(2)], Faults::new(vec![], Some(7)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let (s, t) = (sim.clone(), shutdown.clone());
        let task = tokio::spawn(async move {
            if rtu {
                s.serve_rtu_over_tcp(listener, t).await
            } else {
                s.serve_tcp(listener, t).await
            }
        });
        TcpFixture {
            sim,
            addr,
            shutdown,
            task,
        }
    }

    async fn client(&self, unit: u8) -> client::Context {
        tcp::connect_slave(self.addr, Slave(unit)).await.unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("server stops on shutdown")
            .unwrap();
    }
}

#[tokio::test]
async fn tcp_reads_live_and_pinned_values() {
    let fx = TcpFixture::start(false).await;
    fx.sim.set(1, "pressure", Value::Float(450.0)).unwrap();
    fx.sim
        .set(1, "volume_standard", Value::Float(987_654.25))
        .unwrap();
    let mut c = fx.client(1).await;
    let r = c.read_holding_registers(0, 10).await.unwrap().unwrap();
    assert_eq!(f32_at(&r, 0), 450.0);
    let temp = f32_at(&r, 2);
    assert!((5.0..15.0).contains(&temp), "temperature {temp}");
    assert_eq!((r[4] as u32) << 16 | r[5] as u32, 987_654);
    assert_eq!(f32_at(&r, 6), 0.25);
    assert_eq!(r[8], 0, "status");
    // unit 2 is live, not pinned: pressure near 400 kPa
    let mut c2 = fx.client(2).await;
    let r2 = c2.read_holding_registers(0, 2).await.unwrap().unwrap();
    let p = f32_at(&r2, 0);
    assert!((397.0..=403.0).contains(&p), "pressure {p}");
    // two connections at once
    let (a, b) = tokio::join!(
        c.read_holding_registers(0, 2),
        c2.read_holding_registers(0, 2)
    );
    assert_eq!(f32_at(&a.unwrap().unwrap(), 0), 450.0);
    assert!(b.unwrap().is_ok());
    fx.stop().await;
}

#[tokio::test]
async fn tcp_exceptions_for_long_reads_and_injected_faults() {
    let fx = TcpFixture::start(false).await;
    let mut c = fx.client(1).await;
    assert_eq!(
        c.read_holding_registers(0, 17).await.unwrap(),
        Err(ExceptionCode::IllegalDataValue)
    );
    assert_eq!(
        c.read_holding_registers(65_530, 10).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    fx.sim.add_fault(FaultRule::parse("1:exception").unwrap());
    assert_eq!(
        c.read_holding_registers(0, 2).await.unwrap(),
        Err(ExceptionCode::ServerDeviceFailure)
    );
    // the fault is for unit 1 only
    let mut c2 = fx.client(2).await;
    assert!(c2.read_holding_registers(0, 2).await.unwrap().is_ok());
    fx.sim.clear_faults();
    fx.sim.add_fault(FaultRule::parse("exception=1:6").unwrap());
    assert_eq!(
        c.read_holding_registers(0, 2).await.unwrap(),
        Err(ExceptionCode::ServerDeviceBusy)
    );
    fx.stop().await;
}

#[tokio::test]
async fn tcp_timeout_slow_and_missing_units() {
    let fx = TcpFixture::start(false).await;
    fx.sim.add_fault(FaultRule::parse("1:timeout").unwrap());
    let mut c = fx.client(1).await;
    let r = tokio::time::timeout(CLIENT_TIMEOUT, c.read_holding_registers(0, 2)).await;
    assert!(r.is_err(), "timeout fault answered: {r:?}");
    // a unit that does not exist: no reply either
    let mut c9 = fx.client(9).await;
    let r = tokio::time::timeout(CLIENT_TIMEOUT, c9.read_holding_registers(0, 2)).await;
    assert!(r.is_err(), "unit 9 answered: {r:?}");
    // slow: the answer comes, late
    fx.sim.clear_faults();
    fx.sim.add_fault(FaultRule::parse("2:slow:300ms").unwrap());
    let mut c2 = fx.client(2).await;
    let t0 = Instant::now();
    assert!(c2.read_holding_registers(0, 2).await.unwrap().is_ok());
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    // crc on TCP: a lying length field, never a good read
    fx.sim.clear_faults();
    fx.sim.add_fault(FaultRule::parse("crc").unwrap());
    let mut c1 = fx.client(1).await;
    let r = tokio::time::timeout(CLIENT_TIMEOUT, c1.read_holding_registers(0, 2)).await;
    assert!(
        !matches!(r, Ok(Ok(Ok(_)))),
        "corrupted reply accepted: {r:?}"
    );
    fx.stop().await;
}

#[tokio::test]
async fn tcp_write_then_read_back() {
    let fx = TcpFixture::start(false).await;
    let mut c = fx.client(1).await;
    let bits = 123.5f32.to_bits();
    c.write_multiple_registers(0, &[(bits >> 16) as u16, bits as u16])
        .await
        .unwrap()
        .unwrap();
    c.write_single_register(100, 7).await.unwrap().unwrap();
    c.write_single_coil(2, true).await.unwrap().unwrap();
    c.write_multiple_coils(10, &[true, false, true])
        .await
        .unwrap()
        .unwrap();
    let r = c.read_holding_registers(0, 2).await.unwrap().unwrap();
    assert_eq!(f32_at(&r, 0), 123.5, "write survives the next refresh");
    assert_eq!(
        c.read_holding_registers(100, 1).await.unwrap().unwrap(),
        vec![7]
    );
    assert_eq!(
        c.read_coils(0, 13).await.unwrap().unwrap(),
        vec![
            false, false, true, false, false, false, false, false, false, false, true, false, true
        ]
    );
    // input registers are separate from holding registers
    assert_eq!(
        c.read_input_registers(100, 1).await.unwrap().unwrap(),
        vec![0]
    );
    fx.stop().await;
}

#[tokio::test]
async fn rtu_over_tcp_reads() {
    let fx = TcpFixture::start(true).await;
    fx.sim.set(2, "pressure", Value::Float(321.0)).unwrap();
    let stream = tokio::net::TcpStream::connect(fx.addr).await.unwrap();
    let mut c = rtu::attach_slave(stream, Slave(2));
    let r = c.read_holding_registers(0, 2).await.unwrap().unwrap();
    assert_eq!(f32_at(&r, 0), 321.0);
    fx.stop().await;
}

/// A socat pseudo-terminal pair, killed on drop.
struct PtyPair {
    child: Child,
    a: PathBuf,
    b: PathBuf,
    _dir: tempfile::TempDir,
}

impl PtyPair {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let child = Command::new("socat")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is needed for the serial tests (apt-get install socat)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(Path::new(&a).exists() && Path::new(&b).exists()) {
            assert!(
                Instant::now() < deadline,
                "socat did not create {a:?} and {b:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        PtyPair {
            child,
            a,
            b,
            _dir: dir,
        }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn settings(port: &Path) -> SerialSettings {
    SerialSettings {
        port: port.display().to_string(),
        baud: 9600,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
    }
}

fn open(path: &Path) -> tokio_serial::SerialStream {
    tokio_serial::new(path.display().to_string(), 9600)
        .open_native_async()
        .unwrap()
}

/// Write one RTU request on `port` and collect `want` bytes of reply (or what came by the
/// deadline).
async fn raw_exchange(port: &mut tokio_serial::SerialStream, frame: &[u8], want: usize) -> Vec<u8> {
    port.write_all(frame).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while got.len() < want {
        match tokio::time::timeout_at(deadline, port.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

#[tokio::test]
async fn serial_rtu_over_a_pty_pair() {
    let pty = PtyPair::start();
    let sim = Simulator::new(vec![device(1), device(2)], Faults::new(vec![], Some(3)));
    sim.set(1, "pressure", Value::Float(450.0)).unwrap();
    let shutdown = CancellationToken::new();
    let server = {
        let (sim, s, t) = (sim.clone(), settings(&pty.b), shutdown.clone());
        tokio::spawn(async move { sim.serve_serial(s, true, t).await })
    };

    // the server opens its end asynchronously: retry the first read until a deadline
    let mut c = rtu::attach_slave(open(&pty.a), Slave(1));
    let deadline = Instant::now() + Duration::from_secs(5);
    let regs = loop {
        match tokio::time::timeout(Duration::from_millis(300), c.read_holding_registers(0, 10))
            .await
        {
            Ok(Ok(Ok(r))) => break r,
            other => {
                assert!(Instant::now() < deadline, "no answer on the pty: {other:?}");
                c = rtu::attach_slave(open(&pty.a), Slave(1));
            }
        }
    };
    assert_eq!(f32_at(&regs, 0), 450.0);

    // line timing: 8 + 25 bytes at 9600 8N1 plus a 3.5-char silence is about 38 ms
    let t0 = Instant::now();
    c.read_holding_registers(0, 10).await.unwrap().unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(37),
        "reply came after {took:?}"
    );

    // shared bus: unit 2 answers on the same line, unit 3 does not exist
    c.set_slave(Slave(2));
    assert!(c.read_holding_registers(0, 2).await.unwrap().is_ok());
    c.set_slave(Slave(3));
    let r = tokio::time::timeout(CLIENT_TIMEOUT, c.read_holding_registers(0, 2)).await;
    assert!(r.is_err(), "unit 3 answered: {r:?}");
    drop(c);

    // CRC fault: the client does not get a good read, and the raw reply has a bad CRC
    sim.add_fault(FaultRule::parse("1:crc").unwrap());
    let mut c = rtu::attach_slave(open(&pty.a), Slave(1));
    let r = tokio::time::timeout(CLIENT_TIMEOUT, c.read_holding_registers(0, 2)).await;
    assert!(
        !matches!(r, Ok(Ok(Ok(_)))),
        "corrupted reply accepted: {r:?}"
    );
    drop(c);
    let mut raw = open(&pty.a);
    // garbage first: the simulator resynchronises and still answers the request after it
    let request = [vec![0xFF, 0x00, 0x13], rtu_frame(1, &[3, 0, 0, 0, 2])].concat();
    let reply = raw_exchange(&mut raw, &request, 9).await;
    assert_eq!(reply.len(), 9, "{reply:02X?}");
    assert_eq!(&reply[..3], &[1, 3, 4]);
    assert!(
        matches!(check_rtu(&reply), RtuScan::Invalid(_)),
        "{reply:02X?}"
    );
    sim.clear_faults();
    let reply = raw_exchange(&mut raw, &rtu_frame(1, &[3, 0, 0, 0, 2]), 9).await;
    assert!(
        matches!(check_rtu(&reply), RtuScan::Frame { .. }),
        "{reply:02X?}"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("serial server stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn serial_port_that_vanishes_is_reopened() {
    let pty = PtyPair::start();
    let sim = Simulator::new(vec![device(1)], Faults::none());
    let shutdown = CancellationToken::new();
    let server = {
        let (sim, s, t) = (sim.clone(), settings(&pty.b), shutdown.clone());
        tokio::spawn(async move { sim.serve_serial(s, false, t).await })
    };
    let (a, b) = (pty.a.clone(), pty.b.clone());
    let read_ok = |path: PathBuf| async move {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let mut raw = open(&path);
            let reply = raw_exchange(&mut raw, &rtu_frame(1, &[3, 0, 0, 0, 2]), 9).await;
            if matches!(check_rtu(&reply), RtuScan::Frame { .. }) {
                return;
            }
            assert!(Instant::now() < deadline, "no answer after reopen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    read_ok(a.clone()).await;
    // the line disappears (socat gone, links removed) and comes back at the same paths
    drop(pty);
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.exists() {
        assert!(Instant::now() < deadline, "socat left {b:?} behind");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = b.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(a.exists() && b.exists()) {
        assert!(Instant::now() < deadline, "socat did not come back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    read_ok(a.clone()).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("serial server stops on shutdown")
        .unwrap();
}
