//! The simulated SIMCom SIM7080's `CA*` socket commands: `AT+CNACT=<pdp>,<0|1>` (OK then the
//! `+APP PDP: <pdp>,ACTIVE|DEACTIVE` URC; ERROR when already active), `AT+CNACT?`,
//! `AT+CAOPEN=<cid>,<pdp>,"TCP","<host>",<port>` (waits for the connection, then
//! `+CAOPEN: <cid>,<result>` and OK; result 0 connected, 1 failed, 4 cid in use),
//! `AT+CASEND=<cid>,<len>` (a bare `>` prompt, then exactly `len` raw bytes, then OK or ERROR),
//! `AT+CARECV=<cid>,<len>` (`+CARECV: <n>,<n raw bytes>` inside one line, `+CARECV: 0` when
//! empty), `AT+CACLOSE=<cid>`. Data waiting is announced by `+CADATAIND: <cid>` when the buffer
//! stops being empty; a closed connection by `+CASTATE: <cid>,0`. Shared socket machinery is
//! in `sockets`.

use std::time::{Duration, Instant};

use super::at::{self, Arg};
use super::commands::PDP_ADDRESS;
use super::core::{After, Final, Modem, Pending, Piece, Reply};
use super::sockets::{local_host, RawInput};

/// `AT+CAOPEN`'s own bound for the connection.
const CAOPEN_WAIT: Duration = Duration::from_secs(150);

impl Modem {
    pub(super) fn cnact(&mut self, a: &[Arg], now: Instant) -> Result<Reply, at::BadArg> {
        let idx = at::num(a, 0, 0, 3)?;
        let on = at::num(a, 1, 0, 1)? == 1;
        if on && self.pdp {
            return Ok(Reply::error());
        }
        if on && self.registered() {
            self.attached = true;
            self.pdp = true;
            self.after
                .push(After::Urc(format!("+APP PDP: {idx},ACTIVE")));
        } else {
            if !on {
                self.pdp = false;
                self.network_close_all(now);
            }
            self.after
                .push(After::Urc(format!("+APP PDP: {idx},DEACTIVE")));
        }
        Ok(Reply::ok())
    }

    pub(super) fn cnact_read(&self) -> Reply {
        let (state, addr) = if self.pdp {
            (1, PDP_ADDRESS)
        } else {
            (0, "0.0.0.0")
        };
        Reply::lines([format!("+CNACT: 0,{state},\"{addr}\"")])
    }

    pub(super) fn caopen(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        at::num(a, 1, 0, 3)?;
        if !at::text(a, 2)?.eq_ignore_ascii_case("TCP") {
            return Err(at::BadArg);
        }
        let host = at::text(a, 3)?;
        let port = at::num(a, 4, 1, 65535)? as u16;
        let refused = |code: u8| Reply::lines([format!("+CAOPEN: {slot},{code}")]);
        if self.socks[slot].is_some() {
            return Ok(refused(4));
        }
        if !local_host(host) || !self.pdp {
            return Ok(refused(1));
        }
        self.new_sock(slot, false, true);
        let conn = self.connect(slot, port);
        Ok(Reply::fin(Final::Deferred(
            Pending::Connect { conn },
            CAOPEN_WAIT,
        )))
    }

    pub(super) fn casend(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        let len = at::num(a, 1, 1, self.model.max_send() as i64)? as usize;
        if a.len() > 2 {
            at::num(a, 2, 0, 65535)?;
        }
        if !self.is_open(slot) {
            return Ok(Reply::error());
        }
        self.raw = Some(RawInput {
            slot,
            want: len,
            got: Vec::with_capacity(len),
            skip_lf: false,
        });
        Ok(Reply {
            pieces: vec![Piece::Raw(b"\r\n>".to_vec())],
            fin: Final::Nothing,
        })
    }

    pub(super) fn carecv(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        let max = at::num(a, 1, 1, self.model.max_chunk() as i64)? as usize;
        let Some(s) = self.socks[slot].as_mut() else {
            return Ok(Reply::error());
        };
        let n = max.min(s.rx.len());
        if n == 0 {
            return Ok(Reply::lines(["+CARECV: 0"]));
        }
        let mut bytes = format!("\r\n+CARECV: {n},").into_bytes();
        bytes.extend(s.rx.drain(..n));
        bytes.extend_from_slice(b"\r\n");
        Ok(Reply {
            pieces: vec![Piece::Raw(bytes)],
            fin: Final::Ok,
        })
    }
}
