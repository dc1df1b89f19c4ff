//! The simulated module's registration machine: searching after power-on or AT+CFUN=1,
//! registered (and attached) after the configured delay, lost for a while, denied with an EMM
//! reject cause, no SIM (each: the PDP context's loss reported first, BG96's and BC66's
//! "pdpdeact", SIM7080's "+APP PDP: 0,DEACTIVE", then the sockets closed), radio off; the
//! "+CEREG" body for each URC level 0..5 in the model's spelling. Pure: part of `Modem`.

use std::time::{Duration, Instant};

use super::core::{Final, Modem, Pending, Reg};
use super::model::Model;

impl Modem {
    pub(super) fn registered(&self) -> bool {
        self.alive() && self.reg == Reg::Registered
    }

    pub(super) fn stat(&self) -> u8 {
        match self.reg {
            Reg::RadioOff | Reg::Idle => 0,
            Reg::Searching { .. } | Reg::Lost { .. } => 2,
            Reg::Registered => 1,
            Reg::Denied { .. } => 3,
        }
    }

    /// `<stat>[,"<tac>","<ci>",9[,<cause_type>,<reject_cause>][,,,"<active>","<tau>"]]` for
    /// URC level `n`: the location when registered or denied, the cause (type 0, EMM) when
    /// denied and n >= 3, the PSM timers when registered and n >= 4.
    pub(super) fn cereg_body(&self, n: u8) -> String {
        let mut s = self.stat().to_string();
        if n < 2 || !matches!(self.reg, Reg::Registered | Reg::Denied { .. }) {
            return s;
        }
        s += &format!(
            ",\"{:04X}\",\"{:08X}\",9",
            self.signal.tac, self.signal.cell_id
        );
        match self.reg {
            Reg::Denied { cause } if n >= 3 => s += &format!(",0,{cause}"),
            Reg::Registered if n >= 4 => s += &format!(",,,\"{}\",\"{}\"", self.psm.2, self.psm.1),
            _ => {}
        }
        s
    }

    pub(super) fn cereg_urc(&mut self, now: Instant) {
        if self.cereg_n >= 1 {
            let body = self.cereg_body(self.cereg_n);
            let line = self.model.info("+CEREG", &body);
            self.urc(&line, now);
        }
    }

    pub(super) fn start_search(&mut self, now: Instant, after: Duration) {
        self.reg = if self.sim {
            Reg::Searching {
                until: now + after + self.register_delay,
            }
        } else {
            Reg::Idle
        };
        self.cereg_urc(now);
    }

    /// Take the SIM out (registration lost, "+CPIN?" answers CME error 10) or put it back
    /// (searching again).
    pub fn set_sim(&mut self, present: bool, now: Instant) {
        if present == self.sim {
            return;
        }
        self.sim = present;
        if !self.alive() || self.reg == Reg::RadioOff {
            return;
        }
        if present {
            self.start_search(now, Duration::ZERO);
        } else {
            self.reg = Reg::Idle;
            let was_attached = self.attached;
            self.attached = false;
            self.cereg_urc(now);
            self.pdp_lost(was_attached, now);
            self.network_close_all(now);
            self.pdp = false;
        }
    }

    pub(super) fn registration_done(&mut self, now: Instant) {
        self.reg = Reg::Registered;
        self.attached = true;
        self.cereg_urc(now);
        self.time_zone_urc(now);
        if let Some((Pending::Attach { pdp }, _)) = self.pending {
            if pdp {
                self.pdp = true;
            }
            self.resolve(Final::Ok, now);
        }
    }

    /// The network's time-zone report at registration, per `AT+CTZR`: `+CTZV: <tz>` (1) or
    /// `+CTZE: "<tz>",<dst>,"<local time>"` (2), the zone of `commands::CCLK_ZONE`.
    pub(super) fn time_zone_urc(&mut self, now: Instant) {
        let zone = super::commands::CCLK_ZONE;
        let line = match self.ctzr {
            1 => self.model.info("+CTZV", &format!("{zone:+03}")),
            2 => {
                let local = (self.wall_ms)() + zone * 15 * 60 * 1000;
                let (y, mo, d, h, mi, s, _) = crate::time::civil(local);
                let body =
                    format!("\"{zone:+03}\",0,\"{y:04}/{mo:02}/{d:02},{h:02}:{mi:02}:{s:02}\"");
                self.model.info("+CTZE", &body)
            }
            _ => return,
        };
        self.urc(&line, now);
    }

    /// Registration lost for `d`: "+CEREG: 2", PDP context and sockets gone.
    pub fn lose_registration(&mut self, d: Duration, now: Instant) {
        if !self.alive() {
            return;
        }
        self.reg = Reg::Lost { until: now + d };
        let was_attached = self.attached;
        self.attached = false;
        self.cereg_urc(now);
        self.pdp_lost(was_attached, now);
        self.network_close_all(now);
        self.pdp = false;
    }

    /// The PDP context went with the registration: its loss is reported before its sockets'
    /// (it is what closed them): BG96 after QIACT, BC66 whenever it was attached (its context
    /// comes with the attach), SIM7080 after CNACT.
    fn pdp_lost(&mut self, was_attached: bool, now: Instant) {
        match self.model {
            Model::Bg96 if self.pdp => self.urc("+QIURC: \"pdpdeact\",1", now),
            Model::Bc66 if was_attached => self.urc("+QIURC: \"pdpdeact\",1", now),
            Model::Sim7080 if self.pdp => self.urc("+APP PDP: 0,DEACTIVE", now),
            _ => {}
        }
    }

    /// The network refuses registration with EMM `cause` until `register_now`, a radio off/on
    /// or a power cycle: "+CEREG: 3", PDP context and sockets gone.
    pub fn deny(&mut self, cause: u8, now: Instant) {
        if !self.alive() {
            return;
        }
        self.reg = Reg::Denied { cause };
        let was_attached = self.attached;
        self.attached = false;
        self.cereg_urc(now);
        self.pdp_lost(was_attached, now);
        self.network_close_all(now);
        self.pdp = false;
    }

    /// Registered now (ends a search, a loss or a denial).
    pub fn register_now(&mut self, now: Instant) {
        if self.alive() && self.sim && !matches!(self.reg, Reg::Registered | Reg::RadioOff) {
            self.registration_done(now);
        }
    }

    /// Radio off (AT+CFUN=0).
    pub(super) fn radio_off(&mut self, now: Instant) {
        self.reg = Reg::RadioOff;
        self.attached = false;
        self.pdp = false;
        self.cereg_urc(now);
        self.network_close_all(now);
    }
}
