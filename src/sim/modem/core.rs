//! The simulated module's state machine: bytes from the serial line in, bytes to the line and
//! socket requests out, time passed in by the caller. It owns line assembly (bounded), echo,
//! the final-result framing, power (on, hung, powered down), reboots with boot text, deferred
//! final results (AT+CGATT=1 while searching, AT+NSOCO until the TCP connection answers), the
//! fault dice, the sleep quirk, timers and the counters behind `stats`. Pure: no I/O, no clock
//! reads; the runner (`port`) performs the `Out` requests and feeds back `NetEvent`s. The
//! registration machine lives in `registration`, the command handlers in `commands` (generic
//! and signal) and `sockets` (per-model socket commands).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::at::{self, Cmd};
use super::fault::{ModemFault, ModemFaults, Roll};
use super::model::{BootCause, Model};
pub(super) use super::reply::{After, Final, Pending, Piece, Reply};
use super::signal::Signal;
pub(super) use super::sockets::{RawInput, Sock, SockState};

/// Longest command line accepted; a longer one is answered with ERROR.
pub const MAX_LINE: usize = 2048;
/// Bytes held while a command's final result is deferred; more are dropped.
const MAX_HELD: usize = 4096;
/// Received bytes a socket buffers for the host; more are dropped.
pub const RX_BUFFER_MAX: usize = 64 * 1024;
/// Bytes a socket holds that the link has not carried yet; a send beyond is refused (busy).
pub const TX_BUFFER_MAX: usize = 8 * 1024;
/// From power applied (or a reset) to the first boot line.
const BOOT_DELAY: Duration = Duration::from_millis(300);

/// What the module asks its runner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Write these bytes to the serial line, `delay` after whatever was queued before them.
    Serial { bytes: Vec<u8>, delay: Duration },
    /// Open TCP connection `conn` to 127.0.0.1:`port` (the only host a socket may reach).
    Connect { conn: u64, port: u16 },
    /// Send these bytes on connection `conn` (paced by the runner's link).
    Send { conn: u64, bytes: Vec<u8> },
    /// Close connection `conn`: `graceful` flushes what was sent first, otherwise it is cut.
    Close { conn: u64, graceful: bool },
    /// Forget serial output not yet written (power removed, or the module hung).
    Discard,
}

/// What the runner reports about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    Connected {
        conn: u64,
        ok: bool,
    },
    /// `n` bytes the module sent have left it (written to the peer).
    Sent {
        conn: u64,
        n: usize,
    },
    Data {
        conn: u64,
        bytes: Vec<u8>,
    },
    Closed {
        conn: u64,
    },
}

/// How the simulated module is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub model: Model,
    /// From power-on / CFUN=1 to registered.
    pub register_delay: Duration,
    pub faults: Vec<ModemFault>,
    pub seed: Option<u64>,
}

/// Counters and state for the control socket's `stats`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub model: String,
    pub state: String,
    pub commands: u64,
    /// Bytes received on the serial line, also while hung or powered down.
    pub bytes_in: u64,
    /// Bytes written to the serial line (boot text included).
    pub bytes_out: u64,
    pub power_cycles: u64,
    pub reboots: u64,
    pub sockets_opened: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub bytes_dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Power {
    On,
    /// Answers nothing until a power cycle.
    Hung,
    /// Powered down by command (AT+QPOWD): nothing until a power cycle.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reg {
    RadioOff,
    Searching {
        until: Instant,
    },
    Registered,
    Lost {
        until: Instant,
    },
    /// Registration denied by the network with this EMM reject cause.
    Denied {
        cause: u8,
    },
    /// Radio on but not searching (no SIM).
    Idle,
}

/// The simulated module.
pub struct Modem {
    pub(super) model: Model,
    pub(super) register_delay: Duration,
    pub(super) faults: ModemFaults,
    pub(super) power: Power,
    pub(super) echo: bool,
    pub(super) cereg_n: u8,
    /// `AT+CTZR` level: 1 `+CTZV`, 2 `+CTZE` at registration.
    pub(super) ctzr: u8,
    pub(super) reg: Reg,
    pub(super) attached: bool,
    pub(super) pdp: bool,
    /// BC66 `AT+QICFG="dataformat",<send>,<recv>`: hex (true) or text; text after every boot.
    pub(super) hex_format: (bool, bool),
    /// A SIM is inserted.
    pub(super) sim: bool,
    pub(super) psm: (u8, String, String),
    pub(super) edrx: (u8, String),
    pub(super) signal: Signal,
    pub(super) socks: Vec<Option<Sock>>,
    pub(super) next_conn: u64,
    line: Vec<u8>,
    overflow: bool,
    pub(super) raw: Option<RawInput>,
    pub(super) pending: Option<(Pending, Instant)>,
    held: Vec<u8>,
    last_activity: Instant,
    next_urc: Option<Instant>,
    /// What the command being handled asks to happen after its reply.
    pub(super) after: Vec<After>,
    pub(super) stats: Stats,
    out: Vec<Out>,
    /// The wall clock (UTC ms) behind AT+CCLK; replaceable in tests.
    pub wall_ms: fn() -> i64,
}

impl Modem {
    /// A module that was just powered on: boot text queued, searching for the network.
    pub fn new(settings: Settings, now: Instant) -> Modem {
        let faults = ModemFaults::new(settings.faults, settings.seed);
        let mut m = Modem {
            model: settings.model,
            register_delay: settings.register_delay,
            faults,
            power: Power::On,
            echo: settings.model.echo_default(),
            cereg_n: 0,
            ctzr: 0,
            reg: Reg::RadioOff,
            attached: false,
            pdp: false,
            hex_format: (false, false),
            sim: true,
            psm: (0, "00100110".into(), "00000011".into()),
            edrx: (0, super::commands::EDRX_DEFAULT.into()),
            signal: Signal::default(),
            socks: vec![None; settings.model.max_sockets()],
            next_conn: 1,
            line: Vec::new(),
            overflow: false,
            raw: None,
            pending: None,
            held: Vec::new(),
            last_activity: now,
            next_urc: None,
            after: Vec::new(),
            stats: Stats {
                model: settings.model.to_string(),
                ..Stats::default()
            },
            out: Vec::new(),
            wall_ms: crate::time::now_ms,
        };
        m.boot(now, BootCause::PowerOn);
        m
    }

    /// The requests produced since the last call, in order.
    pub fn take_out(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.out)
    }

    pub fn model(&self) -> Model {
        self.model
    }

    /// Counters and the current state.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.state = self.state_name().into();
        s
    }

    fn state_name(&self) -> &'static str {
        match (self.power, self.reg) {
            (Power::Hung, _) => "hung",
            (Power::Off, _) => "powered-down",
            (Power::On, Reg::RadioOff) => "radio-off",
            (Power::On, Reg::Searching { .. }) => "searching",
            (Power::On, Reg::Registered) => "registered",
            (Power::On, Reg::Lost { .. }) => "deregistered",
            (Power::On, Reg::Denied { .. }) => "denied",
            (Power::On, Reg::Idle) => "no-sim",
        }
    }

    pub(super) fn alive(&self) -> bool {
        self.power == Power::On
    }

    // ----- output ---------------------------------------------------------------------

    pub(super) fn write(&mut self, bytes: Vec<u8>, delay: Duration) {
        if !bytes.is_empty() {
            self.out.push(Out::Serial { bytes, delay });
        }
    }

    pub(super) fn request(&mut self, o: Out) {
        self.out.push(o);
    }

    pub(super) fn framed(s: &str) -> Vec<u8> {
        format!("\r\n{s}\r\n").into_bytes()
    }

    /// An unsolicited line, now (dropped while hung or powered down).
    pub(super) fn urc(&mut self, s: &str, now: Instant) {
        if self.alive() {
            self.write(Self::framed(s), Duration::ZERO);
            self.last_activity = now;
        }
    }

    /// An unsolicited line followed by raw bytes (BG96 push-mode data).
    pub(super) fn urc_raw(&mut self, s: &str, raw: &[u8], now: Instant) {
        if self.alive() {
            let mut b = Self::framed(s);
            b.extend_from_slice(raw);
            self.write(b, Duration::ZERO);
            self.last_activity = now;
        }
    }

    fn final_bytes(&self, fin: &Final) -> Vec<u8> {
        match fin {
            Final::Ok => Self::framed("OK"),
            Final::Error => Self::framed("ERROR"),
            Final::Cme(n) => Self::framed(&self.model.cme(*n)),
            Final::Nothing | Final::Deferred(..) => Vec::new(),
        }
    }

    // ----- power --------------------------------------------------------------------------

    /// Power applied or reset: state back to defaults, boot text, registration again.
    fn boot(&mut self, now: Instant, cause: BootCause) {
        self.drop_all_sockets();
        self.power = Power::On;
        self.echo = self.model.echo_default();
        self.cereg_n = 0;
        self.ctzr = 0;
        self.attached = false;
        self.pdp = false;
        self.hex_format = (false, false);
        self.line.clear();
        self.overflow = false;
        self.raw = None;
        self.pending = None;
        self.held.clear();
        self.after.clear();
        let sim = self.sim;
        let text: Vec<u8> = self
            .model
            .boot_text(cause)
            .iter()
            .map(|l| match *l {
                "+CPIN: READY" if !sim => "+CPIN: NOT INSERTED",
                other => other,
            })
            .flat_map(Self::framed)
            .collect();
        self.write(text, BOOT_DELAY);
        self.last_activity = now + BOOT_DELAY;
        self.reg = Reg::RadioOff;
        self.start_search(now, BOOT_DELAY);
        self.schedule_urc(now);
    }

    /// Remove the power and apply it again.
    pub fn power_cycle(&mut self, now: Instant) {
        self.stats.power_cycles += 1;
        self.request(Out::Discard);
        self.boot(now, BootCause::PowerOn);
    }

    /// The module's own reset.
    pub fn reboot(&mut self, now: Instant) {
        if !self.alive() {
            return;
        }
        self.stats.reboots += 1;
        self.boot(now, BootCause::Command);
    }

    /// Stop answering anything until a power cycle.
    pub fn hang(&mut self) {
        self.request(Out::Discard);
        self.power = Power::Hung;
    }

    /// The network closes every connected socket (close URCs follow).
    pub fn close_sockets(&mut self, now: Instant) {
        if self.alive() {
            self.network_close_all(now);
        }
    }

    /// Add a fault rule at runtime.
    pub fn add_fault(&mut self, rule: ModemFault, now: Instant) {
        self.faults.push(rule);
        self.schedule_urc(now);
    }

    /// Remove every fault rule.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
        self.next_urc = None;
    }

    /// Replace the radio conditions.
    pub fn set_signal(&mut self, rsrp: i32, sinr: i32, ecl: u8) {
        self.signal.rsrp = rsrp;
        self.signal.sinr = sinr;
        self.signal.ecl = ecl;
    }

    /// Every socket gone without a word (reboot, power cycle).
    fn drop_all_sockets(&mut self) {
        for slot in 0..self.socks.len() {
            if let Some(s) = self.socks[slot].take() {
                if matches!(s.state, SockState::Connecting | SockState::Open) {
                    self.request(Out::Close {
                        conn: s.conn,
                        graceful: false,
                    });
                }
            }
        }
    }

    // ----- timers -------------------------------------------------------------------------

    fn schedule_urc(&mut self, now: Instant) {
        self.next_urc = self
            .faults
            .urc_every()
            .map(|(mean, _)| now + self.faults.jitter(mean));
    }

    /// The next moment `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let reg = match self.reg {
            Reg::Searching { until } | Reg::Lost { until } => Some(until),
            _ => None,
        };
        [reg, self.pending.map(|(_, t)| t), self.next_urc]
            .into_iter()
            .flatten()
            .min()
    }

    /// Let time pass up to `now`.
    pub fn tick(&mut self, now: Instant) {
        if !self.alive() {
            return;
        }
        match self.reg {
            Reg::Searching { until } if now >= until => self.registration_done(now),
            Reg::Lost { until } if now >= until => self.registration_done(now),
            _ => {}
        }
        if let Some((_, t)) = self.pending {
            if now >= t {
                self.resolve(Final::Error, now);
            }
        }
        if self.next_urc.is_some_and(|t| now >= t) {
            let p = self.faults.urc_every().map(|(_, p)| p).unwrap_or(0.0);
            if self.faults.chance(p) {
                let line = self.random_urc();
                self.urc(&line, now);
            }
            self.schedule_urc(now);
        }
    }

    /// The unsolicited line the urc quirk inserts: the registration state, at the URC level
    /// in force (at least 1).
    fn random_urc(&self) -> String {
        let n = self.cereg_n.max(1);
        self.model.info("+CEREG", &self.cereg_body(n))
    }

    // ----- input --------------------------------------------------------------------------

    /// Bytes from the serial line.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) {
        self.stats.bytes_in += bytes.len() as u64;
        self.input(bytes, now);
    }

    fn input(&mut self, bytes: &[u8], now: Instant) {
        if !self.alive() {
            return;
        }
        let mut i = 0;
        while i < bytes.len() {
            if self.pending.is_some() {
                let room = MAX_HELD.saturating_sub(self.held.len());
                let rest = &bytes[i..];
                self.held.extend_from_slice(&rest[..rest.len().min(room)]);
                return;
            }
            let b = bytes[i];
            i += 1;
            if let Some(raw) = &mut self.raw {
                if raw.skip_lf {
                    raw.skip_lf = false;
                    if b == b'\n' {
                        continue;
                    }
                }
                raw.got.push(b);
                if raw.got.len() >= raw.want {
                    if let Some(raw) = self.raw.take() {
                        self.raw_complete(raw, now);
                    }
                }
                continue;
            }
            match b {
                b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    let overflow = std::mem::replace(&mut self.overflow, false);
                    self.command(&line, overflow, now);
                    if let Some(raw) = &mut self.raw {
                        raw.skip_lf = true;
                    }
                    if !self.alive() {
                        return;
                    }
                }
                b'\n' if self.line.is_empty() => {}
                _ => {
                    if self.line.len() < MAX_LINE {
                        self.line.push(b);
                    } else {
                        self.overflow = true;
                    }
                }
            }
        }
    }

    /// One complete command line.
    fn command(&mut self, line: &[u8], overflow: bool, now: Instant) {
        if line.iter().all(|b| b.is_ascii_whitespace()) && !overflow {
            return;
        }
        self.stats.commands += 1;
        if let Some(idle) = self.faults.sleep_after() {
            let idle_for = now.saturating_duration_since(self.last_activity);
            self.last_activity = now;
            if idle_for >= idle && self.faults.sleep_loses() {
                self.write(b"\r\n".to_vec(), Duration::ZERO);
                return;
            }
        }
        self.last_activity = now;
        let text = String::from_utf8_lossy(line).into_owned();
        let mut roll = self.faults.roll();
        if text.trim().eq_ignore_ascii_case("AT") {
            // A module never fails a bare AT; it may still be slow, hang or reboot.
            roll.cme = None;
        }
        if roll.hang {
            self.hang();
            return;
        }
        if self.echo {
            let mut e = line.to_vec();
            e.push(b'\r');
            self.write(e, Duration::ZERO);
        }
        let reply = if overflow {
            Reply::error()
        } else if let Some(n) = roll.cme {
            Reply::fin(Final::Cme(n))
        } else {
            match at::parse(&text) {
                Ok(cmd) => self.handle(&cmd, now),
                Err(_) => Reply::error(),
            }
        };
        self.send_reply(reply, &roll, now);
        self.after_reply(&roll, now);
    }

    fn handle(&mut self, cmd: &Cmd, now: Instant) -> Reply {
        if let Some(r) = self.socket_command(cmd, now) {
            return r;
        }
        self.generic_command(cmd, now)
    }

    fn send_reply(&mut self, reply: Reply, roll: &Roll, now: Instant) {
        let mut bytes = Vec::new();
        let n_lines = reply.pieces.len();
        // Where the urc quirk puts its line: after any information line, never next to raw
        // data (it would split it) and never after a "> " prompt (no final result follows).
        let has_raw = reply.pieces.iter().any(|p| matches!(p, Piece::Raw(_)));
        let urc_at = match (roll.urc, &reply.fin) {
            (false, _) | (true, Final::Nothing) => None,
            _ if n_lines == 0 || has_raw => Some(n_lines),
            _ => Some(1 + self.faults.pick(n_lines)),
        };
        for (i, p) in reply.pieces.iter().enumerate() {
            if urc_at == Some(i) {
                bytes.extend(Self::framed(&self.random_urc()));
            }
            match p {
                Piece::Line(l) => bytes.extend(Self::framed(l)),
                Piece::Raw(r) => bytes.extend_from_slice(r),
            }
        }
        if urc_at == Some(n_lines) {
            bytes.extend(Self::framed(&self.random_urc()));
        }
        bytes.extend(self.final_bytes(&reply.fin));
        if let Final::Deferred(p, within) = reply.fin {
            self.pending = Some((p, now + within));
        }
        self.write(bytes, roll.slow.unwrap_or_default());
    }

    fn after_reply(&mut self, roll: &Roll, now: Instant) {
        for a in std::mem::take(&mut self.after) {
            match a {
                After::Urc(u) => self.urc(&u, now),
                After::Reboot => self.reboot(now),
                After::PowerOff => {
                    self.drop_all_sockets();
                    self.power = Power::Off;
                }
            }
        }
        if roll.netclose {
            let open: Vec<usize> = (0..self.socks.len())
                .filter(|&i| {
                    self.socks[i]
                        .as_ref()
                        .is_some_and(|s| s.state == SockState::Open)
                })
                .collect();
            if !open.is_empty() {
                let slot = open[self.faults.pick(open.len())];
                self.network_close(slot, now);
            }
        }
        if let Some(d) = roll.deregister {
            self.lose_registration(d, now);
        }
        if roll.reboot {
            self.reboot(now);
        }
    }

    /// The deferred final result is known.
    pub(super) fn resolve(&mut self, fin: Final, now: Instant) {
        if self.pending.take().is_none() {
            return;
        }
        let b = self.final_bytes(&fin);
        self.write(b, Duration::ZERO);
        self.last_activity = now;
        let held = std::mem::take(&mut self.held);
        self.input(&held, now);
    }

    pub(super) fn pending_connect(&self) -> Option<u64> {
        match self.pending {
            Some((Pending::Connect { conn }, _)) => Some(conn),
            _ => None,
        }
    }
}
