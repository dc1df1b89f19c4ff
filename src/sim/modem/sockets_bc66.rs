//! The simulated Quectel BC66/BC660K's socket commands: `AT+QICFG="dataformat",<send>,<recv>`
//! (hex or text, text again after every boot), `AT+QIOPEN` (as the BG96 but the context comes
//! with the attach: no QIACT), inline sends `AT+QISEND=<id>,<len>,<data>` answered `OK` then
//! `SEND OK` (or `SEND FAIL` when the socket's transmit buffer is full), reads
//! `AT+QIRD=<id>,<len>` answered `+QIRD: <n>,<data>` (`+QIRD: 0` when empty), `AT+QICLOSE`
//! answered `CLOSE OK`. Data is hex only in hex data format; in text format it is carried as is
//! (a host that forgot the data format sees garbage, as on the module). Buffer access mode
//! announces data with `+QIURC: "recv",<id>`; push mode carries it in
//! `+QIURC: "recv",<id>,<n>,<data>`. The shared socket machinery is in `sockets`.

use super::at::{self, Arg};
use super::core::{After, Final, Modem, Piece, Reply};
use super::sockets::Sent;

impl Modem {
    pub(super) fn qicfg(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        if !at::text(a, 0)?.eq_ignore_ascii_case("dataformat") {
            return Ok(Reply::bad());
        }
        let send = at::num(a, 1, 0, 1)? == 1;
        let recv = at::num(a, 2, 0, 1)? == 1;
        self.hex_format = (send, recv);
        Ok(Reply::ok())
    }

    /// `AT+QISEND=<id>,<len>,<data>`: OK (command taken) then SEND OK / SEND FAIL.
    pub(super) fn qisend_inline(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        let len = at::num(a, 1, 1, self.model.max_send() as i64)? as usize;
        let text = at::text(a, 2)?;
        let data = if self.hex_format.0 {
            at::hex_decode(text)?
        } else {
            text.as_bytes().to_vec()
        };
        if data.len() != len {
            return Err(at::BadArg);
        }
        Ok(match self.send(slot, data) {
            Sent::Ok => {
                self.after.push(After::Urc("SEND OK".into()));
                Reply::ok()
            }
            Sent::Busy => {
                self.after.push(After::Urc("SEND FAIL".into()));
                Reply::ok()
            }
            Sent::NotOpen => Reply::error(),
        })
    }

    /// `AT+QIRD=<id>,<len>` in buffer access mode.
    pub(super) fn qird_bc66(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        let slot = self.slot_arg(a, 0)?;
        let max = at::num(a, 1, 1, self.model.max_chunk() as i64)? as usize;
        let hex = self.hex_format.1;
        let Some(s) = self.socks[slot].as_mut() else {
            return Ok(Reply::error());
        };
        if s.push {
            return Ok(Reply::error());
        }
        let n = max.min(s.rx.len());
        if n == 0 {
            return Ok(Reply::lines(["+QIRD: 0"]));
        }
        let data: Vec<u8> = s.rx.drain(..n).collect();
        Ok(Reply::lines([format!(
            "+QIRD: {n},{}",
            carried(&data, hex)
        )]))
    }

    /// `AT+QICLOSE=<id>`: `CLOSE OK` (also for a free id).
    pub(super) fn qiclose_bc66(&mut self, a: &[Arg]) -> Result<Reply, at::BadArg> {
        self.close_cmd(a, true)?;
        Ok(Reply {
            pieces: vec![Piece::Line("CLOSE OK".into())],
            fin: Final::Nothing,
        })
    }

    /// Push-mode data URC text.
    pub(super) fn bc66_push_urc(&self, slot: usize, part: &[u8]) -> String {
        format!(
            "+QIURC: \"recv\",{slot},{},{}",
            part.len(),
            carried(part, self.hex_format.1)
        )
    }
}

/// Data as the module carries it on the UART: hex, or the bytes as they are.
fn carried(data: &[u8], hex: bool) -> String {
    if hex {
        at::hex_encode(data)
    } else {
        String::from_utf8_lossy(data).into_owned()
    }
}
