//! The Sparkplug end-to-end rig (issue 14): a persistent mosquitto over mutual TLS, the
//! pymodbus device (tests/py/pymodbus_device.py: fixed, known registers) behind a Modbus tap
//! that counts gasdtu's writes, the independent host (`SpbHost`) subscribed before the
//! gateway starts, and the real `gasdtu run` with `protocol = "sparkplug"` (keepalive 2 s,
//! fast reconnects, 1 s polls (the least)), started, killed -9 and restarted by the test.
//!
//! The gateway `edge1` in group `gas` has two devices: `meter` (unit 1: one point per
//! datatype, values known from the device script) and `ctl` (unit 2: `level`, which the test
//! changes with its own Modbus write, `setpoint` writable and allowed for remote writes,
//! `other` writable but not allowed). `[remote]` accepts unsigned writes (Sparkplug has no
//! signatures).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::remote::run_daemon;
use super::spb_host::{summary, SpbHost};
use super::{gasdtu, gasdtu_run, mutual_tls_broker, python, repo_root, Broker};
use super::{ModbusTap, Pki, Proc};

pub const GROUP: &str = "gas";
pub const EDGE: &str = "edge1";
pub const GW: &str = "gw-spb";

/// What the pymodbus device serves, as the host must see it in the DBIRTHs:
/// (device, point, Sparkplug datatype name, value).
pub fn expected_births() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    use serde_json::json;
    vec![
        ("meter", "pressure", "FLOAT", json!(f64::from(101.325f32))),
        ("meter", "temperature", "FLOAT", json!(15.5)),
        ("meter", "big", "UINT32", json!(3_000_000_000u64)),
        ("meter", "neg", "INT16", json!(-1234)),
        ("meter", "bcd", "UINT16", json!(1234)),
        ("meter", "double", "DOUBLE", json!(123_456.789)),
        ("meter", "ir0", "UINT16", json!(42)),
        ("meter", "coil0", "BOOLEAN", json!(true)),
        ("meter", "coil1", "BOOLEAN", json!(false)),
        ("ctl", "level", "UINT16", json!(7)),
        ("ctl", "setpoint", "UINT16", json!(0)),
        ("ctl", "other", "UINT16", json!(0)),
    ]
}

/// Everything but the gateway process, which the test starts and stops.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub broker: Broker,
    device: Option<Proc>,
    /// The pymodbus device's own port (the test's writes bypass the tap).
    pub device_port: u16,
    pub tap: ModbusTap,
    pub host: SpbHost,
    pub config: PathBuf,
    pub log: PathBuf,
    pub daemon: Option<Proc>,
}

impl Rig {
    /// Broker, device, tap and host (subscribed); the config written with
    /// `primary_host_id` when given. The gateway is not started.
    pub fn new(host_id: &str, primary: Option<&str>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (pki, broker) = mutual_tls_broker(dir.path());
        let device_port = super::free_port();
        let device = start_device(device_port);
        let tap = ModbusTap::start(device_port);
        let host = SpbHost::start(&pki, broker.port, GROUP, host_id);
        let config = dir.path().join("gasdtu.toml");
        let log = dir.path().join("gasdtu.log");
        std::fs::write(
            &config,
            config_text(dir.path(), &pki, broker.port, tap.port, primary),
        )
        .unwrap();
        Rig {
            dir,
            pki,
            broker,
            device: Some(device),
            device_port,
            tap,
            host,
            config,
            log,
            daemon: None,
        }
    }

    /// Kill the pymodbus device (its registers go back to the script's values on restart).
    pub fn stop_device(&mut self) {
        drop(self.device.take());
    }

    /// Start the pymodbus device again on the same port.
    pub fn restart_device(&mut self) {
        assert!(self.device.is_none(), "the device is running");
        self.device = Some(start_device(self.device_port));
    }

    /// Start `gasdtu run` (log appended across restarts).
    pub fn start(&mut self) {
        assert!(self.daemon.is_none(), "the gateway is already running");
        self.daemon = Some(run_daemon(&self.config, &self.log));
    }

    /// SIGKILL the gateway and reap it.
    pub fn kill9(&mut self) {
        let mut p = self.daemon.take().expect("the gateway is running");
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }

    /// Wait until the host's messages so far satisfy `pred`; fails at once, with the
    /// gateway's log, when the gateway exited, and at `deadline` with the messages and log.
    pub fn wait_msgs<T>(
        &mut self,
        what: &str,
        deadline: Duration,
        mut pred: impl FnMut(&[Value]) -> Option<T>,
    ) -> T {
        let end = std::time::Instant::now() + deadline;
        loop {
            let msgs = self.host.messages();
            if let Some(t) = pred(&msgs) {
                return t;
            }
            let exited = match self.daemon.as_mut() {
                Some(p) => p.child.try_wait().ok().flatten(),
                None => None,
            };
            if exited.is_some() || std::time::Instant::now() > end {
                let log = self.log_text();
                // The poll batches drown everything else: leave them out.
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .filter(|l| !l.contains("gateway::consumer"))
                    .take(40)
                    .collect();
                panic!(
                    "waiting for {what}: {}; {} messages:\n{}\ngateway log (last 40 lines but poll batches, newest first):\n{}",
                    match exited {
                        Some(st) => format!("the gateway exited ({st})"),
                        None => format!("timed out after {deadline:?}"),
                    },
                    msgs.len(),
                    summary(&msgs),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first message at index `from` or later that satisfies `pred` (see `wait_msgs`).
    pub fn wait_msg(
        &mut self,
        what: &str,
        from: usize,
        deadline: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (usize, Value) {
        self.wait_msgs(what, deadline, |msgs| {
            msgs.iter()
                .enumerate()
                .skip(from)
                .find(|(_, m)| pred(m))
                .map(|(i, m)| (i, m.clone()))
        })
    }

    /// The gateway's log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `gasdtu queue --json` of the gateway's store.
    pub fn queue(&self) -> Value {
        let cfg = self.config.to_str().unwrap();
        let r = gasdtu_run(&["queue", "--config", cfg, "--json"]);
        assert_eq!(r.code, 0, "gasdtu queue: {}", r.stderr);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("queue --json: {e}: {}", r.stdout))
    }

    /// Every stored reading of `device` (`gasdtu export --format jsonl`).
    pub fn export(&self, device: &str) -> Vec<Value> {
        self.try_export(device)
            .unwrap_or_else(|e| panic!("gasdtu export: {e}"))
    }

    /// `export`, or the error when there is no store yet.
    pub fn try_export(&self, device: &str) -> Result<Vec<Value>, String> {
        let cfg = self.config.to_str().unwrap();
        let r = gasdtu_run(&[
            "export", "--config", cfg, "--format", "jsonl", "--device", device,
        ]);
        if r.code != 0 {
            return Err(r.stderr);
        }
        Ok(r.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("export line {l}: {e}")))
            .collect())
    }

    /// Write holding register `addr` of `unit` on the device directly (Modbus function 6,
    /// not through the tap: the tap counts gasdtu's writes only).
    pub fn set_register(&self, unit: u8, addr: u16, value: u16) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.device_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let [ah, al] = addr.to_be_bytes();
        let [vh, vl] = value.to_be_bytes();
        s.write_all(&[0, 1, 0, 0, 0, 6, unit, 6, ah, al, vh, vl])
            .unwrap();
        let mut reply = [0u8; 12];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(reply[7], 6, "the device refused the write: {reply:?}");
    }

    /// Wait until the gateway process has exited or is running (for restarts): true when
    /// it is alive after `d`.
    pub fn alive_for(&mut self, d: Duration) -> bool {
        let p = self.daemon.as_mut().expect("the gateway is running");
        super::wait_exit(&mut p.child, d).is_none()
    }
}

/// tests/py/pymodbus_device.py on 127.0.0.1:`port`, serving when this returns.
fn start_device(port: u16) -> Proc {
    let mut device = Proc::spawn(
        "pymodbus device",
        Command::new(python())
            .arg(repo_root().join("tests/py/pymodbus_device.py"))
            .args(["--tcp", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    device.wait_stdout_line("ready", Duration::from_secs(30));
    device
}

/// The gateway's config (see the module paragraph).
pub fn config_text(
    dir: &std::path::Path,
    pki: &Pki,
    broker: u16,
    modbus: u16,
    primary: Option<&str>,
) -> String {
    let primary = primary
        .map(|p| format!("primary_host_id = \"{p}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[gateway]
id = "{GW}"
state_dir = "{state}"

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {modbus}
timeout = "1s"

[devices.meter]
bus = "lan"
unit = 1
poll = "1s"
offline_after = 1
points.pressure = {{ table = "holding", address = 0, type = "f32", unit = "kPa" }}
points.temperature = {{ table = "holding", address = 2, type = "f32", order = "CDAB" }}
points.big = {{ table = "holding", address = 4, type = "u32" }}
points.neg = {{ table = "holding", address = 6, type = "i16" }}
points.bcd = {{ table = "holding", address = 7, type = "bcd16" }}
points.double = {{ table = "holding", address = 8, type = "f64", order = "DCBA" }}
points.ir0 = {{ table = "input", address = 0, type = "u16" }}
points.coil0 = {{ table = "coil", address = 0, type = "bit" }}
points.coil1 = {{ table = "coil", address = 1, type = "bit" }}

[devices.ctl]
bus = "lan"
unit = 2
poll = "1s"
offline_after = 1
points.level = {{ table = "holding", address = 0, type = "u16" }}
points.setpoint = {{ table = "holding", address = 1, type = "u16", writable = true }}
points.other = {{ table = "holding", address = 2, type = "u16", writable = true }}

{uplink}keepalive = "2s"
reconnect_min = "200ms"
reconnect_max = "1s"
max_payload = 16384
protocol = "sparkplug"

[uplink.sparkplug]
group_id = "{GROUP}"
edge_node_id = "{EDGE}"
{primary}
[remote]
allow_unsigned = true

[remote.writes]
"ctl.setpoint" = {{ min = 0, max = 1000 }}
"#,
        state = dir.join("state").display(),
        uplink = pki.uplink_toml(broker),
    )
}

/// `gasdtu check` on the rig's config must pass (run before the gateway, so a config
/// mistake fails here with the checker's words).
pub fn check(config: &std::path::Path) {
    let r = super::run_program(
        &gasdtu(),
        &["check", "--config", config.to_str().unwrap()],
        None,
    );
    assert_eq!(r.code, 0, "gasdtu check: {}{}", r.stdout, r.stderr);
}
