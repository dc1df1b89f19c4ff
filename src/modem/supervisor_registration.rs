//! The supervisor's registration half (a child module of `supervisor`, sharing the task's
//! state): the URCs that arrive while the task is idle (`on_urc`: `+CEREG` registration
//! reports, boot text meaning the module rebooted, the PDP context's `+QIURC: "pdpdeact"` /
//! `+APP PDP` reports, the time-zone URCs handed to the network half) and what a registration
//! report (URC or `AT+CEREG?` reply) does to the status (`registration`: the state, the cell,
//! the PSM timers granted, the `registered_in_ms` episode, the bound's clock and the
//! `modem_registration` event on every change of the registration state).

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::super::at::{Urc, UrcKind};
use super::super::reply::{self, RegStatus, Registration};
use super::super::socket_cmd::{self, SocketUrc};
use super::super::status::{timer_secs, ModemState, PsmGranted, RegistrationStatus};
use super::ModemSupervisor;

impl ModemSupervisor {
    /// A URC while idle; true when the module rebooted (init again).
    pub(super) async fn on_urc(
        &mut self,
        u: &Urc,
        urcs: &mut broadcast::Receiver<Urc>,
        shutdown: &CancellationToken,
    ) -> bool {
        match u.kind {
            Some(UrcKind::Cereg) => {
                match reply::cereg_urc(&u.line) {
                    Ok(r) => self.registration(&r),
                    Err(e) => debug!("modem: {e}"),
                }
                false
            }
            Some(UrcKind::Boot) if self.boot_pending && self.profile.boot_complete(&u.line) => {
                // The end of the boot text whose start the last init already followed.
                debug!(line = %u.line, "modem boot complete");
                self.boot_pending = false;
                false
            }
            Some(UrcKind::Boot) => {
                info!(line = %u.line, "modem rebooted");
                self.boot_pending = false;
                // Its PDP context is whatever the boot made of it.
                self.set(|s| s.pdp_active = None);
                // Let the rest of the boot text pass before talking to it.
                if self.profile.boot_marker.is_some() && !self.profile.boot_complete(&u.line) {
                    let _ = self.wait_boot(urcs, shutdown).await;
                }
                true
            }
            Some(UrcKind::Qiurc | UrcKind::AppPdp) => {
                match socket_cmd::parse_urc(u) {
                    Some(Ok(SocketUrc::PdpDeactivated)) => {
                        info!(line = %u.line, "modem PDP context deactivated");
                        self.set(|s| {
                            s.attached = Some(false);
                            s.ip = None;
                            s.pdp_active = Some(false);
                        });
                    }
                    Some(Ok(SocketUrc::PdpActivated)) => self.set(|s| s.pdp_active = Some(true)),
                    _ => {}
                }
                false
            }
            Some(UrcKind::TimeZone) => {
                self.on_time_zone(&u.line);
                false
            }
            _ => false,
        }
    }

    /// Registration reported (URC or reply).
    pub(super) fn registration(&mut self, r: &Registration) {
        let now = Instant::now();
        let was = self.last_stat;
        if r.stat.registered() {
            if !was.is_some_and(RegStatus::registered) {
                self.missing_since = now;
                // The cell is known now: sample it at the next poll.
                self.next_signal = now;
            }
            if let Some(since) = self.unregistered_since.take() {
                let took = now.saturating_duration_since(since).as_millis() as u64;
                info!(ms = took, "modem registered");
                self.set(|s| {
                    s.registered_in_ms = Some(took);
                    s.registered_since_ms = Some(crate::time::now_ms());
                });
            }
        } else {
            if was.is_some_and(RegStatus::registered) {
                self.missing_since = now;
            }
            if self.unregistered_since.is_none() {
                self.unregistered_since = Some(now);
                self.set(|s| s.registered_since_ms = None);
            }
        }
        self.last_stat = Some(r.stat);
        let mut reg = RegistrationStatus::from_reply(r);
        let psm = (r.active_time.is_some() || r.periodic_tau.is_some()).then(|| PsmGranted {
            tau_s: timer_secs(r.periodic_tau),
            active_s: timer_secs(r.active_time),
        });
        let state = match r.stat {
            s if s.registered() => ModemState::Registered,
            RegStatus::Denied => ModemState::Denied,
            _ => ModemState::Searching,
        };
        let prev = self.status.borrow().registration.clone();
        // A URC without location keeps the cell we knew while the state is the same.
        if let Some(p) = &prev {
            if p.stat == reg.stat && reg.tac.is_none() {
                reg.tac = p.tac.clone();
                reg.ci = p.ci.clone();
                reg.act = reg.act.or(p.act);
            }
        }
        if prev.as_ref().map(|p| &p.stat) != Some(&reg.stat) {
            info!(stat = %reg.stat, tac = ?reg.tac, ci = ?reg.ci, "modem registration");
            self.event(serde_json::json!({
                "event": "modem_registration",
                "stat": reg.stat,
                "tac": reg.tac,
                "ci": reg.ci,
                "act": reg.act,
                "reject_cause": reg.reject_cause,
            }));
        }
        if !r.stat.registered() {
            self.set(|s| s.ip = None);
        }
        self.set(|s| {
            s.registration = Some(reg);
            if psm.is_some() {
                s.psm = psm;
            }
            if !matches!(s.state, ModemState::Recovering) {
                s.state = state;
            }
        });
    }
}
