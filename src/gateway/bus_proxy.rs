//! The bus proxy: how the commissioning CLI (`gasdtu read`, `write`, `scan`) reaches a bus the
//! running daemon owns, so every bus keeps one owner (no second master interleaving frames on
//! Modbus TCP or RTU over TCP, no fight over an exclusively opened serial port). It owns the
//! JSON request form of the status socket, the table of the daemon's buses (`BusProxy`, which
//! the runtime replaces after start and every reload) and the client side (`ProxyClient`).
//! The transactions themselves run in the bus's `BusTask`, between its poll cycles, on its own
//! link with the bus's timeout, retries and turnaround.
//!
//! Protocol (one request line of at most 4096 bytes, one JSON reply line, then close; a line
//! starting with `{` is a JSON request, anything else is a status-socket command):
//!
//! ```text
//! {"op":"buses"}
//!   -> {"ok":true,"buses":[{"name":"rs485","target":{"transport":"rtu","path":"/dev/ttyUSB0",
//!       "canonical":"/dev/ttyUSB0"}},{"name":"lan","target":{"transport":"tcp",
//!       "host":"10.0.0.5","port":502}}]}
//! {"op":"modbus","bus":"lan","unit":3,"fn":"read_holding","address":100,"count":10}
//!   -> {"ok":true,"bus":"lan","values":[...]}            (bits as 0/1)
//! {"op":"modbus","bus":"lan","unit":3,"fn":"write_registers","address":7,"values":[1234]}
//! {"op":"modbus","bus":"lan","unit":3,"fn":"write_coil","address":2,"value":true}
//!   -> {"ok":true,"bus":"lan"}
//! failures -> {"ok":false,"kind":KIND,"error":"human text", ...}
//! ```
//!
//! `fn` is one of read_coils, read_discrete, read_holding, read_input (these need `count`:
//! 1-2000 bits, 1-125 registers), write_coil (`value`), write_registers (`values`, 1-123;
//! function 6 for one register, 16 for several). Failure kinds: from the bus, `timeout`
//! (`timeout_ms`, `attempts`), `exception` (`code`, `meaning`), `crc` and `protocol`
//! (`attempts`, `detail`), `io` (`detail`); from the proxy, `too_long`, `bad_request`,
//! `unknown_bus` (the daemon does not own it), `bus_stopped` (its task ended, e.g. during a
//! reload), `no_answer` (the bus task did not answer within 30 s; a request that had not
//! started is withdrawn, so a write is only ever late when it was already on the wire) and
//! `unsupported` (the daemon runs without a proxy).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;

use crate::config::Transport;
use crate::modbus::bus::{BusRequest, RawOp, RawRequest};
use crate::modbus::link::TxError;
use crate::modbus::{Acquisition, BusPort};
use crate::model::{exception_meaning, Table};

use super::status_socket::{exchange, ExchangeError, LineError, MAX_REQUEST_LINE};
use super::BusPorts;

/// How long the proxy waits for a bus task's answer (one poll cycle plus the transaction).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client waits for the daemon's reply line (the proxy's wait plus a margin).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(35);
/// Longest reply line a client accepts (2000 bits as 0/1 fit many times over).
const MAX_REPLY_LINE: usize = 64 * 1024;

/// What a bus of the daemon is connected to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "snake_case")]
pub enum BusTarget {
    /// Modbus RTU on a serial port; `canonical` is the path with symlinks resolved, as the
    /// daemon sees it (absent when the port does not exist right now).
    Rtu {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        canonical: Option<String>,
    },
    Tcp {
        host: String,
        port: u16,
    },
    RtuOverTcp {
        host: String,
        port: u16,
    },
}

impl BusTarget {
    /// The target of a bus's transport (the serial path resolved now).
    pub fn of(t: &Transport) -> BusTarget {
        match t {
            Transport::Rtu(s) => BusTarget::Rtu {
                path: s.port.clone(),
                canonical: std::fs::canonicalize(&s.port)
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned()),
            },
            Transport::Tcp { host, port } => BusTarget::Tcp {
                host: host.clone(),
                port: *port,
            },
            Transport::RtuOverTcp { host, port } => BusTarget::RtuOverTcp {
                host: host.clone(),
                port: *port,
            },
        }
    }

    /// "/dev/ttyUSB0", "Modbus TCP 10.0.0.5:502", "RTU over TCP 10.0.0.9:4001".
    pub fn describe(&self) -> String {
        match self {
            BusTarget::Rtu { path, .. } => format!("RTU on {path}"),
            BusTarget::Tcp { host, port } => format!("Modbus TCP {host}:{port}"),
            BusTarget::RtuOverTcp { host, port } => format!("RTU over TCP {host}:{port}"),
        }
    }
}

/// One bus of the running daemon, as the `buses` request lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusInfo {
    pub name: String,
    pub target: BusTarget,
}

/// The daemon's side: bus name -> request entrance of its task. Cheap to clone (shared); the
/// runtime builds it `over` the bus table it replaces at every apply.
#[derive(Clone)]
pub struct BusProxy {
    buses: BusPorts,
    reply_timeout: Duration,
}

impl Default for BusProxy {
    fn default() -> Self {
        BusProxy::new()
    }
}

/// A JSON request line.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Buses,
    Modbus(ModbusRequest),
}

#[derive(Debug, Deserialize)]
struct ModbusRequest {
    bus: String,
    unit: u8,
    #[serde(rename = "fn")]
    function: Function,
    address: u16,
    #[serde(default)]
    count: Option<u16>,
    #[serde(default)]
    value: Option<bool>,
    #[serde(default)]
    values: Option<Vec<u16>>,
}

/// The `fn` of a modbus request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Function {
    ReadCoils,
    ReadDiscrete,
    ReadHolding,
    ReadInput,
    WriteCoil,
    WriteRegisters,
}

impl ModbusRequest {
    fn op(&self) -> Result<RawOp, String> {
        let read = |table: Table, name: &str| match self.count {
            Some(count) => Ok(RawOp::Read {
                table,
                address: self.address,
                count,
            }),
            None => Err(format!("{name} needs `count`")),
        };
        match self.function {
            Function::ReadCoils => read(Table::Coil, "read_coils"),
            Function::ReadDiscrete => read(Table::DiscreteInput, "read_discrete"),
            Function::ReadHolding => read(Table::HoldingRegister, "read_holding"),
            Function::ReadInput => read(Table::InputRegister, "read_input"),
            Function::WriteCoil => match self.value {
                Some(value) => Ok(RawOp::WriteCoil {
                    address: self.address,
                    value,
                }),
                None => Err("write_coil needs `value` (true or false)".into()),
            },
            Function::WriteRegisters => match &self.values {
                Some(values) => Ok(RawOp::WriteRegisters {
                    address: self.address,
                    values: values.clone(),
                }),
                None => Err("write_registers needs `values` (a list of registers)".into()),
            },
        }
    }
}

fn refusal(kind: &str, error: impl std::fmt::Display) -> serde_json::Value {
    json!({"ok": false, "kind": kind, "error": error.to_string()})
}

/// The reply line for a request line that is longer than the socket accepts.
pub fn too_long_reply() -> serde_json::Value {
    refusal(
        "too_long",
        format!("request line longer than {MAX_REQUEST_LINE} bytes refused"),
    )
}

/// The reply line for a JSON request to a daemon that has no bus proxy.
pub fn unsupported_reply() -> serde_json::Value {
    refusal(
        "unsupported",
        "this daemon does not pass bus requests on (no bus proxy)",
    )
}

/// A bus failure as JSON (kind, human text and the details that rebuild it).
fn tx_error_json(e: &TxError) -> serde_json::Value {
    let mut v = match e {
        TxError::Timeout { timeout, attempts } => json!({
            "kind": "timeout",
            "timeout_ms": timeout.as_millis() as u64,
            "attempts": attempts,
        }),
        TxError::Crc { attempts, detail } => json!({
            "kind": "crc", "attempts": attempts, "detail": detail,
        }),
        TxError::Exception { code } => json!({
            "kind": "exception", "code": code, "meaning": exception_meaning(*code),
        }),
        TxError::Protocol { attempts, detail } => json!({
            "kind": "protocol", "attempts": attempts, "detail": detail,
        }),
        TxError::Io(detail) => json!({"kind": "io", "detail": detail}),
    };
    v["ok"] = false.into();
    v["error"] = e.to_string().into();
    v
}

/// Rebuild a bus failure from its JSON; `None` when the kind is not a bus failure.
fn tx_error_from_json(v: &serde_json::Value) -> Option<TxError> {
    let attempts = || {
        v["attempts"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1)
    };
    let detail = || v["detail"].as_str().unwrap_or_default().to_string();
    Some(match v["kind"].as_str()? {
        "timeout" => TxError::Timeout {
            timeout: Duration::from_millis(v["timeout_ms"].as_u64().unwrap_or(0)),
            attempts: attempts(),
        },
        "crc" => TxError::Crc {
            attempts: attempts(),
            detail: detail(),
        },
        "exception" => TxError::Exception {
            code: v["code"].as_u64().and_then(|c| u8::try_from(c).ok())?,
        },
        "protocol" => TxError::Protocol {
            attempts: attempts(),
            detail: detail(),
        },
        "io" => TxError::Io(detail()),
        _ => return None,
    })
}

impl BusProxy {
    /// An empty table: every bus request is answered `unknown_bus` until `set`.
    pub fn new() -> BusProxy {
        BusProxy::over(Arc::new(Mutex::new(HashMap::new())))
    }

    /// A proxy over a bus table its owner keeps current (the runtime's `BusPorts`).
    pub fn over(buses: BusPorts) -> BusProxy {
        BusProxy {
            buses,
            reply_timeout: REPLY_TIMEOUT,
        }
    }

    /// Wait at most `t` for a bus task's answer (tests; the daemon keeps `REPLY_TIMEOUT`).
    pub fn with_reply_timeout(mut self, t: Duration) -> Self {
        self.reply_timeout = t;
        self
    }

    /// Replace the table with the buses of `acq` (a proxy built with `new`).
    pub fn set(&self, acq: &Acquisition) {
        let table = acq.ports.clone();
        match self.buses.lock() {
            Ok(mut g) => *g = table,
            Err(p) => *p.into_inner() = table,
        }
    }

    fn table(&self) -> HashMap<String, BusPort> {
        match self.buses.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The buses the daemon owns now, by name.
    pub fn buses(&self) -> Vec<BusInfo> {
        let mut v: Vec<BusInfo> = self
            .table()
            .into_iter()
            .map(|(name, port)| BusInfo {
                name,
                target: BusTarget::of(&port.transport),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Answer one JSON request line (at most `MAX_REQUEST_LINE` bytes, already read).
    pub async fn handle_line(&self, line: &str) -> serde_json::Value {
        let req: Request = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(e) => return refusal("bad_request", format!("bad JSON request: {e}")),
        };
        match req {
            Request::Buses => json!({"ok": true, "buses": self.buses()}),
            Request::Modbus(m) => self.modbus(m).await,
        }
    }

    async fn modbus(&self, m: ModbusRequest) -> serde_json::Value {
        let op = match m.op() {
            Ok(op) => op,
            Err(msg) => return refusal("bad_request", msg),
        };
        let (req, rx) = match RawRequest::new(m.unit, op) {
            Ok(r) => r,
            Err(e) => return refusal("bad_request", e),
        };
        let table = self.table();
        let Some(port) = table.get(&m.bus) else {
            let mut names: Vec<&str> = table.keys().map(String::as_str).collect();
            names.sort_unstable();
            let has = if names.is_empty() {
                "it owns no bus".to_string()
            } else {
                format!("it owns {}", names.join(", "))
            };
            return refusal(
                "unknown_bus",
                format!(
                    "the running daemon owns no bus `{}` ({has})",
                    // Client-sent: shown escaped and bounded.
                    crate::config::escape(&m.bus.chars().take(64).collect::<String>())
                ),
            );
        };
        let stopped = || {
            refusal(
                "bus_stopped",
                format!(
                    "the task of bus `{}` has stopped (daemon reloading or shutting down); try again",
                    m.bus
                ),
            )
        };
        let tx = port.tx.clone();
        let answer = tokio::time::timeout(self.reply_timeout, async move {
            tx.send(BusRequest::Raw(req)).await.ok()?;
            rx.await.ok()
        })
        .await;
        match answer {
            Ok(Some(Ok(values))) => {
                if m.function.is_read() {
                    json!({"ok": true, "bus": m.bus, "values": values})
                } else {
                    json!({"ok": true, "bus": m.bus})
                }
            }
            Ok(Some(Err(e))) => {
                let mut v = tx_error_json(&e);
                v["bus"] = m.bus.into();
                v
            }
            Ok(None) => stopped(),
            Err(_) => refusal(
                "no_answer",
                format!(
                    "the task of bus `{}` did not answer within {} s (a long poll cycle or slow devices?); \
                     a request that had not started was withdrawn",
                    m.bus,
                    self.reply_timeout.as_secs_f64()
                ),
            ),
        }
    }
}

impl Function {
    fn is_read(self) -> bool {
        matches!(
            self,
            Function::ReadCoils
                | Function::ReadDiscrete
                | Function::ReadHolding
                | Function::ReadInput
        )
    }

    fn of(op: &RawOp) -> Function {
        match op {
            RawOp::Read { table, .. } => match table {
                Table::Coil => Function::ReadCoils,
                Table::DiscreteInput => Function::ReadDiscrete,
                Table::HoldingRegister => Function::ReadHolding,
                Table::InputRegister => Function::ReadInput,
            },
            RawOp::WriteCoil { .. } => Function::WriteCoil,
            RawOp::WriteRegisters { .. } => Function::WriteRegisters,
        }
    }
}

/// The request line for `op` on `unit` of bus `bus`.
fn request_json(bus: &str, unit: u8, op: &RawOp) -> serde_json::Value {
    let mut v = json!({"op": "modbus", "bus": bus, "unit": unit, "fn": Function::of(op)});
    match op {
        RawOp::Read { address, count, .. } => {
            v["address"] = (*address).into();
            v["count"] = (*count).into();
        }
        RawOp::WriteCoil { address, value } => {
            v["address"] = (*address).into();
            v["value"] = (*value).into();
        }
        RawOp::WriteRegisters { address, values } => {
            v["address"] = (*address).into();
            v["values"] = values.clone().into();
        }
    }
    v
}

/// Why a request through the daemon did not get a bus answer. One variant per reaction of
/// the CLI: open the bus itself (`NotRunning`, `Unsupported`), stop with advice
/// (`Forbidden`), report the daemon's refusal (`Refused`) or a broken conversation (`Reply`).
#[derive(Debug, Error)]
pub enum ProxyError {
    /// Nobody answers on the socket (no file, or a stale one left by a crash).
    #[error("no daemon answers on {path}: {source}")]
    NotRunning {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A daemon may be there, but this user may not talk to it.
    #[error("cannot talk to the daemon at {path}: {source}")]
    Forbidden {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The daemon answers but takes no bus requests (older version, or no proxy wired).
    #[error("the daemon at {path} does not take bus requests")]
    Unsupported { path: PathBuf },
    /// The daemon refused the request (`kind` as in the protocol: unknown_bus, bad_request,
    /// bus_stopped, no_answer, too_long).
    #[error("the daemon at {path} refused: {message}")]
    Refused {
        path: PathBuf,
        kind: String,
        message: String,
    },
    /// The conversation broke (closed early, not JSON, no reply in time).
    #[error("the daemon at {path} gave no valid answer: {why}")]
    Reply { path: PathBuf, why: String },
}

/// The client side: sends requests to the daemon's socket, one connection per request.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    socket: PathBuf,
}

impl ProxyClient {
    pub fn new(socket: &Path) -> ProxyClient {
        ProxyClient {
            socket: socket.to_path_buf(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Send one request and read the reply as JSON, with `ok` checked: a refusal is an error.
    async fn call(&self, req: &serde_json::Value) -> Result<serde_json::Value, ProxyError> {
        let path = || self.socket.clone();
        let v = exchange(
            &self.socket,
            &req.to_string(),
            MAX_REPLY_LINE,
            CLIENT_TIMEOUT,
        )
        .await
        .map_err(|e| match e {
            ExchangeError::Connect(source)
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                ProxyError::Forbidden {
                    path: path(),
                    source,
                }
            }
            ExchangeError::Connect(source) => ProxyError::NotRunning {
                path: path(),
                source,
            },
            ExchangeError::Read(LineError::TooLong { max }) => ProxyError::Reply {
                path: path(),
                why: format!("reply longer than {max} bytes"),
            },
            other => ProxyError::Reply {
                path: path(),
                why: other.to_string(),
            },
        })?;
        match v.get("ok").and_then(serde_json::Value::as_bool) {
            Some(_) => Ok(v),
            // A daemon that predates the JSON form answers `{"error": "unknown request ..."}`.
            None => Err(ProxyError::Unsupported { path: path() }),
        }
    }

    fn refused(&self, v: &serde_json::Value) -> ProxyError {
        let kind = v["kind"].as_str().unwrap_or("unknown").to_string();
        if kind == "unsupported" {
            return ProxyError::Unsupported {
                path: self.socket.clone(),
            };
        }
        ProxyError::Refused {
            path: self.socket.clone(),
            kind,
            message: v["error"].as_str().unwrap_or("no reason given").to_string(),
        }
    }

    /// The buses the daemon owns.
    pub async fn buses(&self) -> Result<Vec<BusInfo>, ProxyError> {
        let v = self.call(&json!({"op": "buses"})).await?;
        if v["ok"] != true {
            return Err(self.refused(&v));
        }
        serde_json::from_value(v["buses"].clone()).map_err(|e| ProxyError::Reply {
            path: self.socket.clone(),
            why: format!("bad bus list: {e}"),
        })
    }

    /// Run `op` on `unit` of the daemon's bus `bus`. The outer error is the proxy's, the inner
    /// one the bus's (timeout, exception, CRC ... exactly as a direct link reports it).
    pub async fn transact(
        &self,
        bus: &str,
        unit: u8,
        op: &RawOp,
    ) -> Result<Result<Vec<u16>, TxError>, ProxyError> {
        let v = self.call(&request_json(bus, unit, op)).await?;
        if v["ok"] == true {
            if !op.is_write() {
                return serde_json::from_value(v["values"].clone())
                    .map(Ok)
                    .map_err(|e| ProxyError::Reply {
                        path: self.socket.clone(),
                        why: format!("bad values: {e}"),
                    });
            }
            return Ok(Ok(Vec::new()));
        }
        match tx_error_from_json(&v) {
            Some(e) => Ok(Err(e)),
            None => Err(self.refused(&v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_failures_survive_the_socket() {
        let t = Duration::from_millis(250);
        let all = [
            TxError::Timeout {
                timeout: t,
                attempts: 3,
            },
            TxError::Crc {
                attempts: 1,
                detail: "expected CRC 0x1234".into(),
            },
            TxError::Exception { code: 2 },
            TxError::Protocol {
                attempts: 2,
                detail: "garbage".into(),
            },
            TxError::Io("cannot open /dev/ttyUSB0".into()),
        ];
        for e in all {
            let v = tx_error_json(&e);
            assert_eq!(v["ok"], false);
            assert_eq!(v["error"], e.to_string());
            let text = v.to_string();
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(tx_error_from_json(&back), Some(e));
        }
        assert_eq!(
            tx_error_json(&TxError::Exception { code: 2 })["meaning"],
            "illegal data address"
        );
        assert_eq!(tx_error_from_json(&json!({"kind": "unknown_bus"})), None);
    }

    #[test]
    fn requests_round_trip_and_are_checked() {
        let ops = [
            RawOp::Read {
                table: Table::InputRegister,
                address: 10,
                count: 4,
            },
            RawOp::Read {
                table: Table::Coil,
                address: 0,
                count: 2000,
            },
            RawOp::WriteCoil {
                address: 3,
                value: true,
            },
            RawOp::WriteRegisters {
                address: 7,
                values: vec![1, 2, 3],
            },
        ];
        for op in ops {
            let line = request_json("lan", 3, &op).to_string();
            let Ok(Request::Modbus(m)) = serde_json::from_str::<Request>(&line) else {
                panic!("{line} does not parse back");
            };
            assert_eq!((m.bus.as_str(), m.unit), ("lan", 3));
            assert_eq!(m.op(), Ok(op));
        }
        // (request line, fragment of the refusal)
        let bad: &[(&str, &str)] = &[
            (
                r#"{"op":"modbus","bus":"b","unit":1,"fn":"read_holding","address":0}"#,
                "needs `count`",
            ),
            (
                r#"{"op":"modbus","bus":"b","unit":1,"fn":"write_coil","address":0}"#,
                "needs `value`",
            ),
            (
                r#"{"op":"modbus","bus":"b","unit":1,"fn":"write_registers","address":0}"#,
                "needs `values`",
            ),
            (
                r#"{"op":"modbus","bus":"b","unit":1,"fn":"read_holding","address":0,"count":126}"#,
                "count 126 out of range",
            ),
            (
                r#"{"op":"modbus","bus":"b","unit":1,"fn":"read_coils","address":0,"count":2001}"#,
                "count 2001 out of range",
            ),
            (
                r#"{"op":"modbus","bus":"b","unit":1,"fn":"read_input","address":65535,"count":2}"#,
                "runs past address 65535",
            ),
            (
                r#"{"op":"modbus","bus":"b","unit":0,"fn":"read_input","address":0,"count":1}"#,
                "broadcast",
            ),
            (
                r#"{"op":"modbus","bus":"b","unit":256,"fn":"read_input","address":0,"count":1}"#,
                "bad JSON request",
            ),
            (
                r#"{"op":"modbus","bus":"b","unit":1,"fn":"read_everything","address":0}"#,
                "unknown variant",
            ),
            (r#"{"op":"reboot"}"#, "unknown variant"),
            (r#"{"op":"modbus""#, "bad JSON request"),
        ];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let proxy = BusProxy::new();
        for (line, want) in bad {
            let v = rt.block_on(proxy.handle_line(line));
            assert_eq!(v["ok"], false, "{line}");
            assert_eq!(v["kind"], "bad_request", "{line}: {v}");
            let e = v["error"].as_str().unwrap();
            assert!(e.contains(want), "{line}: {e}");
        }
        let v = rt.block_on(proxy.handle_line(
            r#"{"op":"modbus","bus":"b","unit":1,"fn":"read_input","address":0,"count":1}"#,
        ));
        assert_eq!(v["kind"], "unknown_bus");
        assert_eq!(
            v["error"],
            "the running daemon owns no bus `b` (it owns no bus)"
        );
    }

    #[test]
    fn targets_describe_their_bus() {
        let info = BusInfo {
            name: "lan".into(),
            target: BusTarget::Tcp {
                host: "10.0.0.5".into(),
                port: 502,
            },
        };
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(
            v,
            json!({"name": "lan", "target": {"transport": "tcp", "host": "10.0.0.5", "port": 502}})
        );
        assert_eq!(serde_json::from_value::<BusInfo>(v).unwrap(), info);
        assert_eq!(info.target.describe(), "Modbus TCP 10.0.0.5:502");
        let missing = BusTarget::Rtu {
            path: "/dev/gasdtu-no-such-port".into(),
            canonical: None,
        };
        assert_eq!(
            serde_json::to_value(&missing).unwrap(),
            json!({"transport": "rtu", "path": "/dev/gasdtu-no-such-port"})
        );
    }
}
