//! The Modbus master link of one bus: opens the transport (serial RTU, Modbus TCP, RTU over
//! TCP) through tokio-modbus, and runs single transactions with the bus's response timeout,
//! retries and inter-frame turnaround. It classifies every failure honestly (timeout, CRC,
//! exception, protocol, I/O) by tapping the bytes that came back, reopens a vanished port with
//! backoff, and never panics on what the line delivers. It owns no schedule: callers (the bus
//! task, the commissioning CLI) decide what to read and when.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use std::borrow::Cow;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Request, Response, Slave};

use crate::modbus::gather;
use crate::modbus::reply::{self, Answer, Expect};

use crate::config::{BusConfig, Parity, SerialSettings, Transport};
use crate::model::{exception_meaning, BadReason, Table};

/// Why one transaction (after its retries) failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    /// Nothing (or nothing usable) came back within the timeout, on every attempt.
    #[error("timeout after {timeout:?} ({})", attempts_str(*.attempts))]
    Timeout { timeout: Duration, attempts: u32 },
    /// A reply came back with a bad CRC, on the last attempt.
    #[error("CRC error in reply ({}): {detail}", attempts_str(*.attempts))]
    Crc { attempts: u32, detail: String },
    /// The device answered with a valid Modbus exception (1-6, 8, 0x0A, 0x0B; see
    /// `reply::valid_exception`). Never retried: the device is alive. Any other code is a
    /// `Protocol` error.
    #[error("exception {code} ({})", meaning(.code))]
    Exception { code: u8 },
    /// A reply that does not answer the request exactly (wrong unit, transaction id, function,
    /// byte count or length, write echo, an invalid exception code, garbage, a byte flood), on
    /// the last attempt.
    #[error("invalid reply ({}): {detail}", attempts_str(*.attempts))]
    Protocol { attempts: u32, detail: String },
    /// The transport cannot be used (port missing, connection refused, I/O error).
    #[error("{0}")]
    Io(String),
}

impl TxError {
    /// The sample quality reason this failure gives the points it covered.
    pub fn bad_reason(&self) -> BadReason {
        match self {
            TxError::Timeout { .. } => BadReason::Timeout,
            TxError::Crc { .. } => BadReason::Crc,
            TxError::Exception { code } => BadReason::Exception {
                code: *code,
                meaning: exception_meaning(*code).to_string(),
            },
            TxError::Protocol { detail, .. } => BadReason::Protocol(detail.clone()),
            TxError::Io(s) => BadReason::Io(s.clone()),
        }
    }

    /// True when the device gave a VALID answer: only a valid Modbus exception among the
    /// failures. Garbage, a wrong unit, transaction id or function, a lying byte count, an
    /// invalid exception code or a CRC error on every attempt is no sign of a working device:
    /// a device with nothing but these for `offline_after` cycles goes offline.
    pub fn device_answered(&self) -> bool {
        matches!(self, TxError::Exception { .. })
    }
}

fn attempts_str(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_string()
    } else {
        format!("{n} attempts")
    }
}

fn meaning(code: &u8) -> &'static str {
    exception_meaning(*code)
}

/// Outcome of one attempt, before retry policy.
#[derive(Debug)]
enum Attempt {
    Timeout,
    Crc(String),
    Protocol(String),
    Io(String),
}

/// How the link frames its transactions (what stray bytes can mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// RTU frames with CRC (serial, RTU over TCP).
    Rtu,
    /// Modbus TCP (MBAP header, no CRC).
    Mbap,
}

/// What a timed-out attempt's stray bytes say about the line. Pure; tested below.
/// `unit` is the unit the request went to; `rx` the bytes received during the attempt (the
/// tap keeps at most `TAP_MAX`, so a flood shows as its first bytes).
fn classify_stray(framing: Framing, unit: u8, rx: &[u8]) -> Attempt {
    if rx.is_empty() {
        return Attempt::Timeout;
    }
    let hex = hex_prefix(rx, 16);
    if framing == Framing::Mbap {
        // tokio-modbus waits for as many bytes as the MBAP length field claims (at most
        // 65 541): bytes that never made a frame are garbage, not silence.
        return Attempt::Protocol(format!("bytes that never made an MBAP frame: {hex}"));
    }
    if rx[0] == unit && rx.len() >= 5 {
        // Expected frame length from the function code, as the reply claims it.
        let func = rx[1];
        let len = match func {
            0x01..=0x04 => Some(3 + rx[2] as usize + 2),
            0x05 | 0x06 | 0x0F | 0x10 => Some(8),
            f if f & 0x80 != 0 => Some(5),
            _ => None,
        };
        if let Some(len) = len {
            if rx.len() >= len {
                let crc = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS).checksum(&rx[..len - 2]);
                let got = u16::from_le_bytes([rx[len - 2], rx[len - 1]]);
                if crc != got {
                    return Attempt::Crc(format!(
                        "expected CRC 0x{crc:04X}, got 0x{got:04X} in {hex}"
                    ));
                }
            } else {
                return Attempt::Protocol(format!(
                    "incomplete reply: {} of {len} bytes ({hex})",
                    rx.len()
                ));
            }
        }
    }
    Attempt::Protocol(format!("unexpected bytes on the line: {hex}"))
}

fn hex_prefix(b: &[u8], max: usize) -> String {
    let mut s: String = b
        .iter()
        .take(max)
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ");
    if b.len() > max {
        s.push_str(&format!(" … ({} bytes)", b.len()));
    }
    s
}

/// Most bytes the tap keeps per attempt (a flood costs no more memory than this).
const TAP_MAX: usize = 1024;

/// Records the bytes read from the transport during the current attempt (the first
/// `TAP_MAX`).
#[derive(Default)]
struct TapLog {
    rx: Mutex<Vec<u8>>,
}

impl TapLog {
    fn take(&self) -> Vec<u8> {
        match self.rx.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

/// A transport wrapper that keeps a copy of what it reads (bounded), so a timed-out
/// transaction can still say whether the device sent garbage, a bad CRC, or nothing.
struct Tap<T> {
    inner: T,
    log: Arc<TapLog>,
}

impl<T> std::fmt::Debug for Tap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tap<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            if let Ok(mut g) = self.log.rx.lock() {
                let room = TAP_MAX.saturating_sub(g.len());
                g.extend_from_slice(&new[..new.len().min(room)]);
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tap<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct Conn {
    ctx: Context,
    tap: Arc<TapLog>,
    framing: Framing,
}

/// Reopen backoff bounds for a transport that cannot be opened.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Waits before the second and third try of a serial open that failed (see `settled`).
const SERIAL_SETTLE: [Duration; 2] = [Duration::from_millis(20), Duration::from_millis(100)];

/// Counters a link keeps about its own traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub transactions: u64,
    pub attempts: u64,
    pub failures: u64,
    /// Attempts whose reply was refused as a protocol error (not an exact answer to the
    /// request: see `reply::check_reply`, or garbage that never made a frame).
    pub protocol_errors: u64,
    pub opens: u64,
    pub open_failures: u64,
}

/// A Modbus master on one bus. Opens lazily; reopens after failures with backoff.
pub struct Link {
    bus: BusConfig,
    conn: Option<Conn>,
    /// When the last transaction ended (for the turnaround delay).
    last_end: Option<Instant>,
    /// No open attempt before this instant (backoff after a failed open).
    next_open: Option<Instant>,
    backoff: Duration,
    last_open_error: Option<String>,
    pub stats: LinkStats,
}

impl Link {
    pub fn new(bus: BusConfig) -> Link {
        Link {
            bus,
            conn: None,
            last_end: None,
            next_open: None,
            backoff: BACKOFF_MIN,
            last_open_error: None,
            stats: LinkStats::default(),
        }
    }

    pub fn bus(&self) -> &BusConfig {
        &self.bus
    }

    /// True when the transport is open.
    pub fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    /// Where this link goes, for messages ("/dev/ttyUSB0", "10.0.0.5:502").
    pub fn target(&self) -> String {
        match &self.bus.transport {
            Transport::Rtu(s) => s.port.clone(),
            Transport::Tcp { host, port } | Transport::RtuOverTcp { host, port } => {
                format!("{host}:{port}")
            }
        }
    }

    async fn open(&mut self) -> Result<(), TxError> {
        if self.conn.is_some() {
            return Ok(());
        }
        if let Some(t) = self.next_open {
            if Instant::now() < t {
                let wait = t.saturating_duration_since(Instant::now());
                return Err(TxError::Io(format!(
                    "{} unavailable ({}); next attempt in {:.1}s",
                    self.target(),
                    self.last_open_error.as_deref().unwrap_or("not open"),
                    wait.as_secs_f64()
                )));
            }
        }
        self.stats.opens += 1;
        let tap = Arc::new(TapLog::default());
        let res = match &self.bus.transport {
            Transport::Rtu(s) => settled(&SERIAL_SETTLE, || open_serial(s))
                .await
                .map(|port| {
                    tokio_modbus::client::rtu::attach_slave(
                        Tap {
                            inner: port,
                            log: tap.clone(),
                        },
                        Slave(1),
                    )
                }),
            Transport::Tcp { host, port } => {
                connect_tcp(host, *port, self.bus.timeout).await.map(|s| {
                    tokio_modbus::client::tcp::attach_slave(
                        Tap {
                            inner: s,
                            log: tap.clone(),
                        },
                        Slave(1),
                    )
                })
            }
            Transport::RtuOverTcp { host, port } => {
                connect_tcp(host, *port, self.bus.timeout).await.map(|s| {
                    tokio_modbus::client::rtu::attach_slave(
                        Tap {
                            inner: s,
                            log: tap.clone(),
                        },
                        Slave(1),
                    )
                })
            }
        };
        match res {
            Ok(ctx) => {
                if self.last_open_error.take().is_some() {
                    tracing::info!(bus = %self.bus.name, target = %self.target(), "bus transport is back");
                }
                let framing = match self.bus.transport {
                    Transport::Tcp { .. } => Framing::Mbap,
                    _ => Framing::Rtu,
                };
                self.conn = Some(Conn { ctx, tap, framing });
                self.next_open = None;
                self.backoff = BACKOFF_MIN;
                Ok(())
            }
            Err(e) => {
                self.stats.open_failures += 1;
                let msg = format!("cannot open {}: {e}", self.target());
                if self.last_open_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(bus = %self.bus.name, "{msg}; retrying with backoff");
                }
                self.last_open_error = Some(msg.clone());
                // Jitter so that several gateways (or buses) do not retry in lockstep.
                let jitter =
                    Duration::from_millis(fastrand::u64(0..=self.backoff.as_millis() as u64 / 4));
                self.next_open = Some(Instant::now() + self.backoff + jitter);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                Err(TxError::Io(msg))
            }
        }
    }

    /// Close the transport (it is reopened by the next transaction). Used after any failure
    /// so stale bytes of a late reply can never be taken for the next answer.
    pub fn close(&mut self) {
        self.conn = None;
    }

    async fn turnaround(&mut self) {
        if let Some(end) = self.last_end {
            let due = end + self.bus.turnaround;
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
    }

    /// Read `count` registers (or bits, as 0/1) from `table` of `unit`.
    pub async fn read(
        &mut self,
        unit: u8,
        table: Table,
        start: u16,
        count: u16,
    ) -> Result<Vec<u16>, TxError> {
        self.transact(
            unit,
            Op::Read {
                table,
                start,
                count,
            },
        )
        .await
    }

    /// Write holding registers (function 6 for one, 16 for several).
    pub async fn write_registers(
        &mut self,
        unit: u8,
        start: u16,
        values: &[u16],
    ) -> Result<(), TxError> {
        self.transact(
            unit,
            Op::WriteRegs {
                start,
                values: values.to_vec(),
            },
        )
        .await
        .map(|_| ())
    }

    /// Write one coil (function 5).
    pub async fn write_coil(&mut self, unit: u8, addr: u16, value: bool) -> Result<(), TxError> {
        self.transact(unit, Op::WriteCoil { addr, value })
            .await
            .map(|_| ())
    }

    async fn transact(&mut self, unit: u8, op: Op) -> Result<Vec<u16>, TxError> {
        self.stats.transactions += 1;
        let attempts_max = self.bus.retries + 1;
        let mut last = Attempt::Timeout;
        for attempt in 1..=attempts_max {
            if let Err(e) = self.open().await {
                self.stats.failures += 1;
                return Err(e);
            }
            self.turnaround().await;
            self.stats.attempts += 1;
            let timeout = self.bus.timeout;
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            conn.tap.take();
            conn.ctx.set_slave(Slave(unit));
            let fut = run_op(&mut conn.ctx, &op);
            let in_flight = gather::Transaction::start();
            let res = tokio::time::timeout(timeout, fut).await;
            drop(in_flight);
            self.last_end = Some(Instant::now());
            let stray = conn.tap.take();
            let outcome = match res {
                // tokio-modbus checked the header (unit, TCP transaction id) and function
                // code; the reply check decides the rest.
                Ok(Ok(pdu)) => match reply::check_reply(unit, &expect_of(&op), unit, &pdu) {
                    Ok(Answer::Data(v)) => return Ok(v),
                    Ok(Answer::Exception(code)) => {
                        self.stats.failures += 1;
                        return Err(TxError::Exception { code });
                    }
                    Err(e) => Attempt::Protocol(e.to_string()),
                },
                Ok(Err(tokio_modbus::Error::Transport(e))) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        Attempt::Protocol(e.to_string())
                    } else {
                        Attempt::Io(format!("i/o error on {}: {e}", self.target()))
                    }
                }
                Ok(Err(tokio_modbus::Error::Protocol(p))) => Attempt::Protocol(protocol_detail(&p)),
                Err(_elapsed) => classify_stray(conn.framing, unit, &stray),
            };
            if matches!(outcome, Attempt::Protocol(_)) {
                self.stats.protocol_errors += 1;
            }
            tracing::debug!(bus = %self.bus.name, unit, attempt, ?outcome, "transaction attempt failed");
            // Never reuse a transport after a failure: a late reply must not answer the next
            // request. Reopening costs well under a millisecond.
            self.conn = None;
            let io_fail = matches!(outcome, Attempt::Io(_));
            last = outcome;
            if io_fail {
                // The port itself failed (unplugged adapter, broken socket): reopen once now,
                // then the backoff takes over.
                self.next_open = None;
            }
        }
        self.stats.failures += 1;
        Err(match last {
            Attempt::Timeout => TxError::Timeout {
                timeout: self.bus.timeout,
                attempts: attempts_max,
            },
            Attempt::Crc(detail) => TxError::Crc {
                attempts: attempts_max,
                detail,
            },
            Attempt::Protocol(detail) => TxError::Protocol {
                attempts: attempts_max,
                detail,
            },
            Attempt::Io(s) => TxError::Io(s),
        })
    }
}

enum Op {
    Read {
        table: Table,
        start: u16,
        count: u16,
    },
    WriteRegs {
        start: u16,
        values: Vec<u16>,
    },
    WriteCoil {
        addr: u16,
        value: bool,
    },
}

/// What `op` asks for, for the reply check.
fn expect_of(op: &Op) -> Expect {
    match op {
        Op::Read { table, count, .. } => Expect::Read {
            table: *table,
            count: *count,
        },
        Op::WriteRegs { start, values } => match values.as_slice() {
            [v] => Expect::WriteRegister {
                address: *start,
                value: *v,
            },
            _ => Expect::WriteRegisters {
                address: *start,
                count: values.len().min(u16::MAX as usize) as u16,
            },
        },
        Op::WriteCoil { addr, value } => Expect::WriteCoil {
            address: *addr,
            value: *value,
        },
    }
}

/// Run `op` through tokio-modbus's raw `call` (never its typed readers: they `debug_assert!`
/// the reply's count, a panic on a lying device in a debug build, and hand a short reply on
/// in a release build) and return the reply as PDU bytes, for `reply::check_reply`.
async fn run_op(ctx: &mut Context, op: &Op) -> Result<Vec<u8>, tokio_modbus::Error> {
    let req = match op {
        Op::Read {
            table,
            start,
            count,
        } => match table {
            Table::Coil => Request::ReadCoils(*start, *count),
            Table::DiscreteInput => Request::ReadDiscreteInputs(*start, *count),
            Table::InputRegister => Request::ReadInputRegisters(*start, *count),
            Table::HoldingRegister => Request::ReadHoldingRegisters(*start, *count),
        },
        Op::WriteRegs { start, values } => match values.as_slice() {
            [v] => Request::WriteSingleRegister(*start, *v),
            _ => Request::WriteMultipleRegisters(*start, Cow::Borrowed(values.as_slice())),
        },
        Op::WriteCoil { addr, value } => Request::WriteSingleCoil(*addr, *value),
    };
    let function = req.function_code().value();
    let res = ctx.call(req).await?;
    Ok(reply_pdu(function, res))
}

/// The PDU bytes of what tokio-modbus decoded (lossless for every reply it can return: a bit
/// read keeps all the bits of its byte count, a register read all its words).
fn reply_pdu(function: u8, res: Result<Response, ExceptionCode>) -> Vec<u8> {
    fn packed(f: u8, bits: &[bool]) -> Vec<u8> {
        let mut bytes = vec![0u8; bits.len().div_ceil(8)];
        for (i, b) in bits.iter().enumerate() {
            if *b {
                bytes[i / 8] |= 1 << (i % 8);
            }
        }
        let mut out = vec![f, bytes.len().min(255) as u8];
        out.extend(bytes);
        out
    }
    fn words(f: u8, w: &[u16]) -> Vec<u8> {
        let mut out = vec![f, (w.len() * 2).min(255) as u8];
        out.extend(w.iter().flat_map(|x| x.to_be_bytes()));
        out
    }
    fn echo(f: u8, a: u16, b: u16) -> Vec<u8> {
        let mut out = vec![f];
        out.extend(a.to_be_bytes());
        out.extend(b.to_be_bytes());
        out
    }
    match res {
        Err(code) => vec![function | 0x80, u8::from(code)],
        Ok(r) => match r {
            Response::ReadCoils(b) => packed(0x01, &b),
            Response::ReadDiscreteInputs(b) => packed(0x02, &b),
            Response::ReadHoldingRegisters(w) => words(0x03, &w),
            Response::ReadInputRegisters(w) => words(0x04, &w),
            Response::WriteSingleCoil(a, v) => echo(0x05, a, if v { 0xFF00 } else { 0 }),
            Response::WriteSingleRegister(a, v) => echo(0x06, a, v),
            Response::WriteMultipleRegisters(a, n) => echo(0x10, a, n),
            other => vec![other.function_code().value()],
        },
    }
}

/// One readable clause for what tokio-modbus refused (its `Display` includes the whole decoded
/// reply and the headers' `Debug`): see `reply::header_mismatch`.
fn protocol_detail(p: &tokio_modbus::ProtocolError) -> String {
    match p {
        tokio_modbus::ProtocolError::HeaderMismatch { message, result } => {
            let (function, exception) = match result {
                Ok(r) => (r.function_code().value(), false),
                Err(e) => (e.function.value(), true),
            };
            reply::header_mismatch(message, function, exception)
        }
        tokio_modbus::ProtocolError::FunctionCodeMismatch { request, result } => {
            let got = match result {
                Ok(r) => r.function_code().value(),
                Err(e) => e.function.value() | 0x80,
            };
            format!(
                "reply has function 0x{got:02X}, request had 0x{:02X}",
                request.value()
            )
        }
    }
}

/// Try `open`, and once more after each wait of `settle` while it fails. This link's own
/// previous descriptor of a serial port can outlive its close for a moment: a process forked
/// anywhere in the daemon holds a copy of every descriptor until it execs (serialport's
/// exclusive `flock` then says the port is busy), and a tty's last close may still be draining
/// output. A transaction must not fail, nor the link back off for seconds, for that. A port
/// that stays busy or missing fails with the last error and how long it was tried.
async fn settled<T>(settle: &[Duration], mut open: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    for wait in settle {
        match open() {
            Ok(t) => return Ok(t),
            Err(e) => tracing::debug!("open failed ({e}); trying again in {wait:?}"),
        }
        tokio::time::sleep(*wait).await;
    }
    open().map_err(|e| {
        if settle.is_empty() {
            return e;
        }
        io::Error::new(
            e.kind(),
            format!(
                "{e} ({} tries over {} ms)",
                settle.len() + 1,
                settle.iter().sum::<Duration>().as_millis()
            ),
        )
    })
}

fn open_serial(s: &SerialSettings) -> io::Result<tokio_serial::SerialStream> {
    use tokio_serial::SerialPort;
    let builder = tokio_serial::new(&s.port, s.baud)
        .data_bits(match s.data_bits {
            7 => tokio_serial::DataBits::Seven,
            _ => tokio_serial::DataBits::Eight,
        })
        .stop_bits(match s.stop_bits {
            2 => tokio_serial::StopBits::Two,
            _ => tokio_serial::StopBits::One,
        })
        .parity(match s.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .flow_control(tokio_serial::FlowControl::None);
    let port = tokio_serial::SerialStream::open(&builder).map_err(io::Error::from)?;
    // Discard whatever a device sent while nobody listened.
    port.clear(tokio_serial::ClearBuffer::Input)
        .map_err(io::Error::from)?;
    Ok(port)
}

async fn connect_tcp(
    host: &str,
    port: u16,
    timeout: Duration,
) -> io::Result<tokio::net::TcpStream> {
    let fut = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(timeout.max(Duration::from_secs(1)), fut).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
