//! The simulated module's socket commands per model and what happens to its sockets when the
//! network speaks: BC95 NSOCR / NSOCO / NSOSD / NSORF / NSOCL with +NSONMI and +NSOCLI (hex),
//! BG96 QIACT / QIOPEN (+QIOPEN URC) / QISEND ("> " prompt, raw bytes) / QIRD / QICLOSE with
//! +QIURC recv (buffer or push mode) and closed, SIM7020 CSOC / CSOCON / CSOSEND / CSOCL with
//! +CSONMI and +CSOERR (hex); the BC66 (`sockets_bc66`) and SIM7080 (`sockets_sim7080`)
//! handlers share the slots, connections and network side here. Only 127.0.0.1 / localhost may
//! be reached; per-send size limits and socket counts are the model's; a socket holds at most
//! `TX_BUFFER_MAX` bytes the link has not carried yet (beyond: BC95 "+CME ERROR:159", BG96 and
//! BC66 "SEND FAIL", SIM7020 and SIM7080 ERROR). Pure: TCP is requested through `Out`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::at::{self, Arg, Cmd, Op};
use super::core::{
    After, Final, Modem, NetEvent, Out, Pending, Piece, Reg, Reply, RX_BUFFER_MAX, TX_BUFFER_MAX,
};
use super::model::Model;

/// Raw bytes the module waits for after a "> " prompt (BG96 AT+QISEND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawInput {
    pub slot: usize,
    pub want: usize,
    pub got: Vec<u8>,
    /// The LF of a CRLF-terminated AT+QISEND line may follow its CR: not data.
    pub skip_lf: bool,
}

/// A socket slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sock {
    pub conn: u64,
    pub state: SockState,
    pub port: u16,
    /// BG96 push mode (access mode 1): data goes out in the URC.
    pub push: bool,
    /// BC95 receive control: 0 = no +NSONMI.
    pub notify: bool,
    pub rx: VecDeque<u8>,
    pub sent: u64,
    /// Sent by the host, not yet carried by the link.
    pub unsent: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SockState {
    /// Created, not connected (BC95 NSOCR, SIM7020 CSOC).
    Created,
    Connecting,
    Open,
    /// Closed by the peer or the network; the host still has to close it.
    Closed,
}

/// What became of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    Ok,
    NotOpen,
    /// The socket's transmit buffer is full (the link is slower than the host).
    Busy,
}

/// Whether a socket may connect to `host`: this machine must never contact the outside.
pub fn local_host(host: &str) -> bool {
    host == "127.0.0.1" || host.eq_ignore_ascii_case("localhost")
}

impl Modem {
    /// A socket command of this model, or `None` when `cmd` is not one.
    pub(super) fn socket_command(&mut self, cmd: &Cmd, now: Instant) -> Option<Reply> {
        let Op::Set(args) = &cmd.op else {
            return match (self.model, cmd.name.as_str(), &cmd.op) {
                (Model::Sim7080, "+CNACT", Op::Read) => Some(self.cnact_read()),
                (Model::Bg96, "+QIACT", Op::Read) => Some(if self.pdp {
                    Reply::lines([format!(
                        "+QIACT: 1,1,1,\"{}\"",
                        super::commands::PDP_ADDRESS
                    )])
                } else {
                    Reply::ok()
                }),
                _ => None,
            };
        };
        let r = match (self.model, cmd.name.as_str()) {
            (Model::Bc95, "+NSOCR") => self.nsocr(args),
            (Model::Bc95, "+NSOCO") => self.nsoco(args),
            (Model::Bc95, "+NSOSD") => self.nsosd(args),
            (Model::Bc95, "+NSORF") => self.nsorf(args),
            (Model::Bc95, "+NSOCL") | (Model::Sim7020, "+CSOCL") => self.close_cmd(args, false),
            (Model::Bg96, "+QIACT") => self.qiact(args),
            (Model::Bg96, "+QIDEACT") => at::num(args, 0, 1, 1).map(|_| {
                self.pdp = false;
                self.network_close_all(now);
                Reply::ok()
            }),
            (Model::Bg96 | Model::Bc66, "+QIOPEN") => self.qiopen(args),
            (Model::Bg96, "+QISEND") => self.qisend(args),
            (Model::Bc66, "+QISEND") if args.len() >= 3 => self.qisend_inline(args),
            (Model::Bc66, "+QISEND") => self.qisend(args),
            (Model::Bc66, "+QICFG") => self.qicfg(args),
            (Model::Bc66, "+QIRD") => self.qird_bc66(args),
            (Model::Bc66, "+QICLOSE") => self.qiclose_bc66(args),
            (Model::Sim7080, "+CNACT") => self.cnact(args, now),
            (Model::Sim7080, "+CAOPEN") => self.caopen(args),
            (Model::Sim7080, "+CASEND") => self.casend(args),
            (Model::Sim7080, "+CARECV") => self.carecv(args),
            (Model::Sim7080, "+CACLOSE") => self.close_cmd(args, false),
            (Model::Bg96, "+QIRD") => self.qird(args),
            (Model::Bg96, "+QICLOSE") => self.close_cmd(args, true),
            (Model::Sim7020, "+CSOC") => self.csoc(args),
            (Model::Sim7020, "+CSOCON") => self.csocon(args),
            (Model::Sim7020, "+CSOSEND") => self.csosend(args),
            _ => return None,
        };
        Some(r.unwrap_or_else(Reply::from))
    }

    pub(super) fn slot_arg(&self, args: &[Arg], i: usize) -> Result<usize, at::BadArg> {
        at::num(args, i, 0, self.socks.len() as i64 - 1).map(|s| s as usize)
    }

    fn free_slot(&self) -> Option<usize> {
        self.socks.iter().position(Option::is_none)
    }

    fn state(&self, slot: usize) -> Option<SockState> {
        self.socks.get(slot)?.as_ref().map(|s| s.state)
    }

    pub(super) fn is_open(&self, slot: usize) -> bool {
        self.state(slot) == Some(SockState::Open)
    }

    pub(super) fn new_sock(&mut self, slot: usize, push: bool, notify: bool) {
        self.socks[slot] = Some(Sock {
            conn: 0,
            state: SockState::Created,
            port: 0,
            push,
            notify,
            rx: Default::default(),
            sent: 0,
            unsent: 0,
        });
    }

    /// Ask the runner for the TCP connection behind `slot`.
    pub(super) fn connect(&mut self, slot: usize, port: u16) -> u64 {
        let conn = self.next_conn;
        self.next_conn += 1;
        if let Some(s) = self.socks[slot].as_mut() {
            s.conn = conn;
            s.port = port;
            s.state = SockState::Connecting;
        }
        self.stats.sockets_opened += 1;
        self.request(Out::Connect { conn, port });
        conn
    }

    pub(super) fn send(&mut self, slot: usize, bytes: Vec<u8>) -> Sent {
        let Some(s) = self.socks[slot].as_mut() else {
            return Sent::NotOpen;
        };
        if s.state != SockState::Open {
            return Sent::NotOpen;
        }
        if s.unsent + bytes.len() > TX_BUFFER_MAX {
            return Sent::Busy;
        }
        s.sent += bytes.len() as u64;
        s.unsent += bytes.len();
        let conn = s.conn;
        self.stats.bytes_up += bytes.len() as u64;
        self.request(Out::Send { conn, bytes });
        Sent::Ok
    }

    /// NSOCL / CSOCL / QICLOSE: the host closes a socket (QICLOSE of a free id is OK).
    pub(super) fn close_cmd(&mut self, args: &[Arg], free_ok: bool) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(args, 0)?;
        match self.socks[slot].take() {
            Some(s) => {
                if matches!(s.state, SockState::Connecting | SockState::Open) {
                    self.request(Out::Close {
                        conn: s.conn,
                        graceful: true,
                    });
                }
                Ok(Reply::ok())
            }
            None if free_ok => Ok(Reply::ok()),
            None => Ok(Reply::error()),
        }
    }

    // ----- BC95 -------------------------------------------------------------------------

    fn nsocr(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        if !at::text(a, 0)?.eq_ignore_ascii_case("STREAM") {
            return Err(at::BadArg);
        }
        at::num(a, 1, 6, 6)?;
        at::num(a, 2, 0, 65535)?;
        let notify = if a.len() > 3 {
            at::num(a, 3, 0, 1)? == 1
        } else {
            true
        };
        let Some(slot) = self.free_slot() else {
            return Ok(Reply::error());
        };
        self.new_sock(slot, false, notify);
        Ok(Reply::lines([slot.to_string()]))
    }

    fn nsoco(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        let host = at::text(a, 1)?;
        let port = at::num(a, 2, 1, 65535)? as u16;
        if self.state(slot) != Some(SockState::Created) || !local_host(host) || !self.attached {
            return Ok(Reply::error());
        }
        let conn = self.connect(slot, port);
        Ok(Reply::fin(Final::Deferred(
            Pending::Connect { conn },
            Duration::from_secs(60),
        )))
    }

    fn nsosd(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        let len = at::num(a, 1, 1, self.model.max_send() as i64)? as usize;
        let data = at::hex_decode(at::text(a, 2)?)?;
        if data.len() != len {
            return Err(at::BadArg);
        }
        Ok(match self.send(slot, data) {
            Sent::Ok => Reply::lines([format!("{slot},{len}")]),
            Sent::NotOpen => Reply::error(),
            Sent::Busy => Reply::fin(Final::Cme(159)),
        })
    }

    fn nsorf(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        let max = at::num(a, 1, 1, 65535)? as usize;
        let chunk = self.model.max_chunk();
        let Some(s) = self.socks[slot].as_mut() else {
            return Ok(Reply::error());
        };
        if s.rx.is_empty() {
            return Ok(Reply::ok());
        }
        let n = max.min(chunk).min(s.rx.len());
        let data: Vec<u8> = s.rx.drain(..n).collect();
        Ok(Reply::lines([format!(
            "{slot},127.0.0.1,{},{n},{},{}",
            s.port,
            at::hex_encode(&data),
            s.rx.len()
        )]))
    }

    // ----- BG96 -------------------------------------------------------------------------

    fn qiact(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        at::num(a, 0, 1, 1)?;
        Ok(if self.pdp {
            Reply::ok()
        } else if self.registered() {
            self.attached = true;
            self.pdp = true;
            Reply::ok()
        } else if self.reg == Reg::RadioOff {
            Reply::fin(Final::Cme(30))
        } else {
            Reply::fin(Final::Deferred(
                Pending::Attach { pdp: true },
                Duration::from_secs(150),
            ))
        })
    }

    fn qiopen(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        at::num(a, 0, 1, 1)?;
        let slot = self.slot_arg(a, 1)?;
        if !at::text(a, 2)?.eq_ignore_ascii_case("TCP") {
            return Err(at::BadArg);
        }
        let host = at::text(a, 3)?;
        let port = at::num(a, 4, 1, 65535)? as u16;
        if a.len() > 5 {
            at::num(a, 5, 0, 65535)?;
        }
        let push = if a.len() > 6 {
            at::num(a, 6, 0, 1)? == 1
        } else {
            false
        };
        if self.socks[slot].is_some() {
            return Ok(Reply::fin(Final::Cme(563)));
        }
        // BG96: after QIACT; BC66: the context comes with the attach.
        let ready = match self.model {
            Model::Bc66 => self.attached,
            _ => self.pdp,
        };
        if !local_host(host) || !ready {
            self.after.push(After::Urc(format!("+QIOPEN: {slot},566")));
            return Ok(Reply::ok());
        }
        self.new_sock(slot, push, true);
        self.connect(slot, port);
        Ok(Reply::ok())
    }

    fn qisend(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        let len = at::num(a, 1, 0, 65535)? as usize;
        let Some(s) = self.socks[slot].as_ref() else {
            return Ok(Reply::error());
        };
        if len == 0 {
            return Ok(Reply::lines([format!("+QISEND: {0},{0},0", s.sent)]));
        }
        if len > self.model.max_send() || s.state != SockState::Open {
            return Ok(Reply::error());
        }
        self.raw = Some(RawInput {
            slot,
            want: len,
            got: Vec::with_capacity(len),
            skip_lf: false,
        });
        Ok(Reply {
            pieces: vec![Piece::Raw(b"\r\n> ".to_vec())],
            fin: Final::Nothing,
        })
    }

    /// The bytes after a QISEND prompt have all arrived.
    pub(super) fn raw_complete(&mut self, raw: RawInput, _now: Instant) {
        let ok = self.send(raw.slot, raw.got) == Sent::Ok;
        let line = match (self.model, ok) {
            (Model::Sim7080, true) => "OK",
            (Model::Sim7080, false) => "ERROR",
            (_, true) => "SEND OK",
            (_, false) => "SEND FAIL",
        };
        self.write(Self::framed(line), Duration::ZERO);
    }

    fn qird(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        let max = if a.len() > 1 {
            at::num(a, 1, 1, self.model.max_chunk() as i64)? as usize
        } else {
            self.model.max_chunk()
        };
        let Some(s) = self.socks[slot].as_mut() else {
            return Ok(Reply::error());
        };
        if s.push {
            return Ok(Reply::error());
        }
        let n = max.min(s.rx.len());
        let mut data: Vec<u8> = s.rx.drain(..n).collect();
        let mut pieces = vec![Piece::Line(format!("+QIRD: {n}"))];
        if n > 0 {
            data.extend_from_slice(b"\r\n");
            pieces.push(Piece::Raw(data));
        }
        Ok(Reply {
            pieces,
            fin: Final::Ok,
        })
    }

    // ----- SIM7020 ----------------------------------------------------------------------

    fn csoc(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        at::num(a, 0, 1, 1)?;
        at::num(a, 1, 1, 1)?;
        at::num(a, 2, 1, 1)?;
        let Some(slot) = self.free_slot() else {
            return Ok(Reply::error());
        };
        self.new_sock(slot, true, true);
        Ok(Reply::lines([self.model.info("+CSOC", &slot.to_string())]))
    }

    fn csocon(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        let port = at::num(a, 1, 1, 65535)? as u16;
        let host = at::text(a, 2)?;
        if self.state(slot) != Some(SockState::Created) || !local_host(host) || !self.attached {
            return Ok(Reply::error());
        }
        let conn = self.connect(slot, port);
        Ok(Reply::fin(Final::Deferred(
            Pending::Connect { conn },
            Duration::from_secs(60),
        )))
    }

    fn csosend(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        let count = at::num(a, 1, 2, 2 * self.model.max_send() as i64)? as usize;
        let hex = at::text(a, 2)?;
        if hex.len() != count {
            return Err(at::BadArg);
        }
        let data = at::hex_decode(hex)?;
        Ok(match self.send(slot, data) {
            Sent::Ok => Reply::ok(),
            Sent::NotOpen | Sent::Busy => Reply::error(),
        })
    }

    // ----- the network's side -------------------------------------------------------------

    fn slot_of(&self, conn: u64) -> Option<usize> {
        self.socks
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.conn == conn))
    }

    fn close_urc(&self, slot: usize) -> String {
        match self.model {
            Model::Bc95 => format!("+NSOCLI: {slot}"),
            Model::Bg96 | Model::Bc66 => format!("+QIURC: \"closed\",{slot}"),
            Model::Sim7020 => format!("+CSOERR: {slot},4"),
            Model::Sim7080 => format!("+CASTATE: {slot},0"),
        }
    }

    /// The network (or the peer) ends the connection behind `slot`.
    pub(super) fn network_close(&mut self, slot: usize, now: Instant) {
        let Some(s) = self.socks[slot].as_mut() else {
            return;
        };
        let was = s.state;
        let conn = s.conn;
        match was {
            SockState::Open => {
                s.state = SockState::Closed;
                self.request(Out::Close {
                    conn,
                    graceful: false,
                });
                let u = self.close_urc(slot);
                self.urc(&u, now);
            }
            SockState::Connecting => {
                self.request(Out::Close {
                    conn,
                    graceful: false,
                });
                self.connect_failed(slot, conn, now);
            }
            SockState::Created | SockState::Closed => {}
        }
    }

    /// Every connected socket closed by the network (registration lost, radio off, detach).
    pub(super) fn network_close_all(&mut self, now: Instant) {
        for slot in 0..self.socks.len() {
            self.network_close(slot, now);
        }
    }

    fn connect_failed(&mut self, slot: usize, conn: u64, now: Instant) {
        if matches!(self.model, Model::Bg96 | Model::Bc66) {
            self.socks[slot] = None;
            self.urc(&format!("+QIOPEN: {slot},566"), now);
        } else if self.model == Model::Sim7080 {
            self.socks[slot] = None;
            if self.pending_connect() == Some(conn) {
                self.write(Self::framed(&format!("+CAOPEN: {slot},1")), Duration::ZERO);
                self.resolve(Final::Ok, now);
            }
        } else {
            if let Some(s) = self.socks[slot].as_mut() {
                s.state = SockState::Created;
            }
            if self.pending_connect() == Some(conn) {
                self.resolve(Final::Error, now);
            }
        }
    }

    /// What the runner reports about a connection.
    pub fn on_net(&mut self, ev: NetEvent, now: Instant) {
        if !self.alive() {
            return;
        }
        let conn = match &ev {
            NetEvent::Connected { conn, .. }
            | NetEvent::Sent { conn, .. }
            | NetEvent::Data { conn, .. }
            | NetEvent::Closed { conn } => *conn,
        };
        let Some(slot) = self.slot_of(conn) else {
            return;
        };
        let Some(state) = self.state(slot) else {
            return;
        };
        match ev {
            NetEvent::Connected { ok: true, .. } if state == SockState::Connecting => {
                if let Some(s) = self.socks[slot].as_mut() {
                    s.state = SockState::Open;
                }
                if matches!(self.model, Model::Bg96 | Model::Bc66) {
                    self.urc(&format!("+QIOPEN: {slot},0"), now);
                } else if self.pending_connect() == Some(conn) {
                    if self.model == Model::Sim7080 {
                        let line = Self::framed(&format!("+CAOPEN: {slot},0"));
                        self.write(line, Duration::ZERO);
                    }
                    self.resolve(Final::Ok, now);
                }
            }
            NetEvent::Connected { ok: false, .. } if state == SockState::Connecting => {
                self.connect_failed(slot, conn, now)
            }
            NetEvent::Sent { n, .. } => {
                if let Some(s) = self.socks[slot].as_mut() {
                    s.unsent = s.unsent.saturating_sub(n);
                }
            }
            NetEvent::Data { bytes, .. } if state == SockState::Open => {
                self.received(slot, bytes, now)
            }
            NetEvent::Closed { .. } => {
                if let Some(s) = self.socks[slot].as_mut() {
                    if s.state == SockState::Open {
                        // The peer is gone; nothing to cut any more.
                        s.state = SockState::Closed;
                        let u = self.close_urc(slot);
                        self.urc(&u, now);
                    } else if s.state == SockState::Connecting {
                        self.connect_failed(slot, conn, now);
                    }
                }
            }
            _ => {}
        }
    }

    fn received(&mut self, slot: usize, bytes: Vec<u8>, now: Instant) {
        self.stats.bytes_down += bytes.len() as u64;
        let model = self.model;
        let chunk = match model {
            Model::Bg96 => model.max_send(),
            _ => model.max_chunk(),
        };
        let Some(s) = self.socks[slot].as_mut() else {
            return;
        };
        let pushed =
            model == Model::Sim7020 || (matches!(model, Model::Bg96 | Model::Bc66) && s.push);
        if pushed {
            for part in bytes.chunks(chunk) {
                if model == Model::Sim7020 {
                    let hex = at::hex_encode(part);
                    self.urc(&format!("+CSONMI: {slot},{},{hex}", hex.len()), now);
                } else if model == Model::Bc66 {
                    let line = self.bc66_push_urc(slot, part);
                    self.urc(&line, now);
                } else {
                    let line = format!("+QIURC: \"recv\",{slot},{}", part.len());
                    self.urc_raw(&line, part, now);
                }
            }
            return;
        }
        let was_empty = s.rx.is_empty();
        let room = RX_BUFFER_MAX.saturating_sub(s.rx.len());
        let keep = bytes.len().min(room);
        s.rx.extend(&bytes[..keep]);
        let notify = s.notify;
        self.stats.bytes_dropped += (bytes.len() - keep) as u64;
        if model == Model::Bc95 {
            if notify {
                for part in bytes[..keep].chunks(chunk) {
                    self.urc(&format!("+NSONMI:{slot},{}", part.len()), now);
                }
            }
        } else if was_empty && keep > 0 {
            let line = match model {
                Model::Sim7080 => format!("+CADATAIND: {slot}"),
                _ => format!("+QIURC: \"recv\",{slot}"),
            };
            self.urc(&line, now);
        }
    }
}
