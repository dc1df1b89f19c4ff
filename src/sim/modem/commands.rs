//! The simulated module's non-socket commands: the generic 3GPP set (AT, ATE0/1, ATI, CGMM,
//! CGMR, CGSN, CIMI, CPIN, CFUN, CEREG, CGATT, COPS, CSQ, CESQ, CCLK, CPSMS, CEDRXS, CGPADDR,
//! CMEE, CGDCONT) and each model's own signal, band and reset commands (BC95 NUESTATS / NBAND /
//! NRB, BC66 QRST, BG96 QCSQ / QENG / QPOWD / CFUN=1,1, SIM7020 CENG / CRESET, SIM7080
//! CFUN=1,1; BC66 and SIM7080 report signal through the generic CESQ / CSQ). Pure: replies are text,
//! side effects are changes to `Modem` and `After` entries.

use std::time::{Duration, Instant};

use super::at::{self, Cmd, Op};
use super::core::{After, Final, Modem, Pending, Piece, Reg, Reply};
use super::model::Model;

pub const IMEI: &str = "867723030000011";
pub const IMSI: &str = "460001234567890";
pub const PDP_ADDRESS: &str = "10.1.2.3";
/// The time zone AT+CCLK reports, in quarter hours (UTC+8).
pub const CCLK_ZONE: i64 = 32;

/// Names whose test form (`AT+X=?`) answers OK.
const KNOWN: &[&str] = &[
    "+CMEE",
    "+CGMM",
    "+CGMR",
    "+CGSN",
    "+CIMI",
    "+CPIN",
    "+CFUN",
    "+CEREG",
    "+CGATT",
    "+COPS",
    "+CSQ",
    "+CESQ",
    "+CCLK",
    "+CPSMS",
    "+CEDRXS",
    "+CGPADDR",
    "+CGDCONT",
    "+CTZR",
    "+CEDRXRDP",
];

/// The longest eDRX cycle the simulated network grants ("0101", 81.92 s), and the paging
/// time window it gives with it ("0011", 10.24 s).
pub const EDRX_GRANT_MAX: &str = "0101";
pub const EDRX_PTW: &str = "0011";
/// The module's eDRX request before any `AT+CEDRXS` set (and after mode 3): "0101".
pub const EDRX_DEFAULT: &str = "0101";

/// `+CCLK` body for a UTC time in ms: `"yy/MM/dd,hh:mm:ss+zz"`, local time (UTC + zz*15 min).
pub fn cclk(utc_ms: i64) -> String {
    let local = utc_ms + CCLK_ZONE * 15 * 60 * 1000;
    let (y, mo, d, h, mi, s, _) = crate::time::civil(local);
    format!(
        "\"{:02}/{mo:02}/{d:02},{h:02}:{mi:02}:{s:02}{:+03}\"",
        y.rem_euclid(100),
        CCLK_ZONE
    )
}

impl Modem {
    pub(super) fn generic_command(&mut self, cmd: &Cmd, now: Instant) -> Reply {
        match self.try_generic(cmd, now) {
            Ok(r) => r,
            Err(at::BadArg) => Reply::bad(),
        }
    }

    fn try_generic(&mut self, cmd: &Cmd, now: Instant) -> Result<Reply, at::BadArg> {
        let m = self.model;
        let info = |name: &str, body: &str| Reply::lines([m.info(name, body)]);
        let name = cmd.name.as_str();
        if let Some(r) = self.model_command(cmd)? {
            return Ok(r);
        }
        Ok(match (name, &cmd.op) {
            ("", Op::Exec) | ("Z", Op::Exec) | ("&W", Op::Exec) => Reply::ok(),
            ("E0", Op::Exec) => {
                self.echo = false;
                Reply::ok()
            }
            ("E1", Op::Exec) => {
                self.echo = true;
                Reply::ok()
            }
            ("I", Op::Exec) => Reply::lines(m.ati().iter().copied()),
            (n, Op::Test) if KNOWN.contains(&n) => Reply::ok(),
            ("+CMEE", Op::Set(a)) => {
                at::num(a, 0, 0, 2)?;
                Reply::ok()
            }
            ("+CMEE", Op::Read) => info("+CMEE", "1"),
            ("+CGMM", Op::Exec) => Reply::lines([m.cgmm()]),
            ("+CGMR", Op::Exec) => Reply::lines([m.cgmr()]),
            ("+CGSN", Op::Exec) => Reply::lines([IMEI]),
            ("+CGSN", Op::Set(a)) => match at::num(a, 0, 0, 3)? {
                1 => info("+CGSN", IMEI),
                _ => Reply::bad(),
            },
            ("+CIMI", Op::Exec) | ("+CPIN", Op::Read) if !self.sim => Reply::fin(Final::Cme(10)),
            ("+CIMI", Op::Exec) => Reply::lines([IMSI]),
            ("+CPIN", Op::Read) => info("+CPIN", "READY"),
            ("+CFUN", Op::Read) => {
                let on = u8::from(self.reg != Reg::RadioOff);
                info("+CFUN", &on.to_string())
            }
            ("+CFUN", Op::Set(a)) => {
                let fun = at::num(a, 0, 0, 1)?;
                let reset = if a.len() > 1 { at::num(a, 1, 0, 1)? } else { 0 };
                if reset == 1 {
                    if !matches!(m, Model::Bg96 | Model::Sim7080) {
                        return Ok(Reply::bad());
                    }
                    self.after.push(After::Reboot);
                } else if fun == 0 {
                    if self.reg != Reg::RadioOff {
                        self.radio_off(now);
                    }
                } else if self.reg == Reg::RadioOff {
                    self.start_search(now, Duration::ZERO);
                }
                Reply::ok()
            }
            ("+CEREG", Op::Set(a)) => {
                self.cereg_n = at::num(a, 0, 0, 5)? as u8;
                Reply::ok()
            }
            ("+CEREG", Op::Read) => {
                let n = self.cereg_n;
                info("+CEREG", &format!("{n},{}", self.cereg_body(n)))
            }
            ("+CGATT", Op::Read) => info("+CGATT", if self.attached { "1" } else { "0" }),
            ("+CGATT", Op::Set(a)) => match at::num(a, 0, 0, 1)? {
                0 => {
                    self.attached = false;
                    self.pdp = false;
                    self.network_close_all(now);
                    Reply::ok()
                }
                _ if self.registered() => {
                    self.attached = true;
                    Reply::ok()
                }
                _ if self.reg == Reg::RadioOff => Reply::fin(Final::Cme(30)),
                _ => Reply::fin(Final::Deferred(
                    Pending::Attach { pdp: false },
                    Duration::from_secs(85),
                )),
            },
            ("+COPS", Op::Read) => {
                if self.registered() {
                    info("+COPS", "0,2,\"46000\",9")
                } else {
                    info("+COPS", "0")
                }
            }
            ("+COPS", Op::Set(a)) => {
                at::num(a, 0, 0, 4)?;
                Reply::ok()
            }
            ("+CSQ", Op::Exec) => info("+CSQ", &self.signal.csq(self.registered())),
            ("+CESQ", Op::Exec) => info("+CESQ", &self.signal.cesq(self.registered())),
            ("+CCLK", Op::Read) => info("+CCLK", &cclk((self.wall_ms)())),
            ("+CPSMS", Op::Read) => {
                let (mode, t3412, t3324) = &self.psm;
                info("+CPSMS", &format!("{mode},,,\"{t3412}\",\"{t3324}\""))
            }
            ("+CPSMS", Op::Set(a)) => {
                let mode = at::num(a, 0, 0, 2)? as u8;
                let t3412 = if a.len() > 3 {
                    at::bits(a, 3, 8)?
                } else {
                    self.psm.1.clone()
                };
                let t3324 = if a.len() > 4 {
                    at::bits(a, 4, 8)?
                } else {
                    self.psm.2.clone()
                };
                self.psm = (mode, t3412, t3324);
                Reply::ok()
            }
            // 27.007 7.40: one line per access technology with eDRX enabled; with eDRX off
            // none, just OK (as u-blox and Quectel modules answer).
            ("+CEDRXS", Op::Read) if self.edrx.0 == 0 => Reply::ok(),
            ("+CEDRXS", Op::Read) => info("+CEDRXS", &format!("5,\"{}\"", self.edrx.1)),
            ("+CEDRXRDP", Op::Exec) => {
                let (mode, requested) = &self.edrx;
                if *mode == 0 || !self.registered() {
                    info("+CEDRXRDP", "0")
                } else {
                    // Four-bit strings compare as their values.
                    let granted = requested.as_str().min(EDRX_GRANT_MAX);
                    info(
                        "+CEDRXRDP",
                        &format!("5,\"{requested}\",\"{granted}\",\"{EDRX_PTW}\""),
                    )
                }
            }
            ("+CTZR", Op::Set(a)) => {
                self.ctzr = at::num(a, 0, 0, 2)? as u8;
                Reply::ok()
            }
            ("+CTZR", Op::Read) => info("+CTZR", &self.ctzr.to_string()),
            ("+CEDRXS", Op::Set(a)) => {
                let mode = at::num(a, 0, 0, 3)? as u8;
                if a.len() > 1 {
                    at::num(a, 1, 5, 5)?;
                }
                let bits = if a.len() > 2 {
                    at::bits(a, 2, 4)?
                } else {
                    self.edrx.1.clone()
                };
                // Mode 3: off, and the parameters back to the module's default.
                self.edrx = if mode == 3 {
                    (0, EDRX_DEFAULT.into())
                } else {
                    (mode, bits)
                };
                Reply::ok()
            }
            ("+CGPADDR", Op::Exec) | ("+CGPADDR", Op::Set(_)) => {
                if self.attached {
                    info("+CGPADDR", &format!("0,\"{PDP_ADDRESS}\""))
                } else {
                    Reply::ok()
                }
            }
            ("+CGDCONT", Op::Set(a)) => {
                at::num(a, 0, 0, 15)?;
                Reply::ok()
            }
            ("+CGDCONT", Op::Read) => info("+CGDCONT", "0,\"IP\",\"cmnbiot\""),
            _ => Reply::error(),
        })
    }

    /// The model's own commands; `None` when `cmd` is not one of them.
    fn model_command(&mut self, cmd: &Cmd) -> Result<Option<Reply>, at::BadArg> {
        let reg = self.registered();
        let name = cmd.name.as_str();
        Ok(Some(match (self.model, name, &cmd.op) {
            (Model::Bc95, "+NUESTATS", Op::Exec) => Reply::lines(self.signal.nuestats(reg)),
            (Model::Bc95, "+NBAND", Op::Read) => Reply::lines([self.model.info("+NBAND", "8")]),
            (Model::Bc95, "+NRB", Op::Exec) => {
                self.after.push(After::Reboot);
                Reply {
                    pieces: vec![Piece::Line("REBOOTING".into())],
                    fin: Final::Nothing,
                }
            }
            (Model::Bg96, "+QCSQ", Op::Exec) => Reply::lines([self.signal.qcsq(reg)]),
            (Model::Bg96, "+QENG", Op::Set(a)) => {
                if !at::text(a, 0)?.eq_ignore_ascii_case("servingcell") {
                    return Ok(Some(Reply::bad()));
                }
                Reply::lines([self.signal.qeng(reg)])
            }
            (Model::Bg96, "+QPOWD", _) => {
                self.after.push(After::Urc("POWERED DOWN".into()));
                self.after.push(After::PowerOff);
                Reply::ok()
            }
            (Model::Sim7020, "+CENG", Op::Read) => {
                if reg {
                    Reply::lines([self.signal.ceng()])
                } else {
                    Reply::ok()
                }
            }
            (Model::Bc66, "+QRST", Op::Set(a)) => {
                at::num(a, 0, 1, 1)?;
                self.after.push(After::Reboot);
                Reply::ok()
            }
            (Model::Sim7020, "+CRESET", Op::Exec) => {
                self.after.push(After::Reboot);
                Reply::ok()
            }
            _ => return Ok(None),
        }))
    }
}
