//! The supervisor's network half (a child module of `supervisor`, sharing the task's state):
//! the network time (`AT+CCLK?` polls and the `+CTZE`/`+CTZV` URCs that `AT+CTZR=2` turns on,
//! both feeding the status and, with `set_clock`, `crate::time`'s correction), the clock-source
//! events, the eDRX the network granted (`AT+CEDRXRDP`; the module's request set again when it
//! no longer matches `[modem] edrx`), and the deferral of link-disturbing
//! setters while a module socket is open on a live link (`at_class::defer`): a held command
//! shows in `ModemStatus::deferred` and runs when the socket closes.

use tokio::time::Instant;
use tracing::{debug, info};

use super::super::at_class::{self, AtClass, Disturb};
use super::super::reply;
use super::super::status::{EdrxStatus, NetworkTime};
use super::super::timers::{cedrxs_command, decode_edrx, encode_edrx};
use super::ModemSupervisor;

/// Profiles whose modules take `AT+CTZR=2` (time-zone reports with the network's time).
/// Not sim7080: its family (SIM7070/SIM7080/SIM7090) reports network time through SIMCom's
/// own `AT+CLTS=1` (`*PSUTTZ`, `+CTZV`, `DST:` URCs), and no `AT+CTZR` was found for it; it
/// keeps the `AT+CCLK?` polls only.
const CTZR: &[&str] = &["bc95", "bc66", "bg96", "sim7020"];

/// Whether the module of profile `id` is told to report `+CTZE` (pure).
pub(super) fn ctzr_supported(id: &str) -> bool {
    CTZR.contains(&id)
}

impl ModemSupervisor {
    /// Whether `cmd` is held back now (socket open on a live link): then it is added to
    /// `deferred` (once) and true is returned.
    pub(super) fn hold(&self, cmd: &str) -> bool {
        let class = at_class::classify(cmd);
        let open = *self.socket_open.borrow();
        let link_up = self.status.borrow().link_up;
        if !at_class::defer(class, open, link_up) {
            return false;
        }
        let known = self.status.borrow().deferred.iter().any(|c| c == cmd);
        if !known {
            info!(
                cmd,
                class = class.as_str(),
                "modem: deferred until the socket closes"
            );
            let cmd = cmd.to_string();
            self.set(|s| s.deferred.push(cmd));
        }
        true
    }

    /// The socket opened or closed: the status says so; on close, what was deferred runs.
    pub(super) async fn socket_changed(&mut self) {
        let open = *self.socket_open.borrow_and_update();
        self.set(|s| {
            s.socket_open = open;
            // A socket opened: its PDP context is up.
            if open {
                s.pdp_active = Some(true);
            }
        });
        if open {
            return;
        }
        let held = self.status.borrow().deferred.clone();
        if held.is_empty() {
            return;
        }
        self.set(|s| s.deferred.clear());
        info!(
            count = held.len(),
            "modem socket closed: running the deferred commands"
        );
        for cmd in &held {
            self.soft(cmd).await;
        }
        let power_saving = AtClass::Disturbing(Disturb::PowerSaving);
        if held.iter().any(|c| at_class::classify(c) == power_saving) {
            self.read_edrx().await;
        }
    }

    /// `AT+CEDRXRDP` (with `[modem] edrx`): requested and granted eDRX in the status. A module
    /// that refuses it keeps the requested value only.
    pub(super) async fn read_edrx(&mut self) {
        let Some(requested) = self.cfg.edrx else {
            return;
        };
        let requested_ms = Some(requested.as_millis() as u64);
        let dynamic = match self.at.call("AT+CEDRXRDP").await {
            Ok(x) => reply::find_line("CEDRXRDP", "+CEDRXRDP:", &x.lines)
                .and_then(reply::cedrxrdp)
                .map_err(|e| debug!("modem: {e}"))
                .ok()
                .flatten(),
            Err(e) => {
                debug!("modem: {e}");
                None
            }
        };
        let edrx = EdrxStatus::from_dynamic(dynamic, requested_ms);
        self.set(|s| s.edrx = Some(edrx));
        // The module asks for another cycle than ours (a field engineer's command, a firmware
        // that lost it): set ours again (deferred while a socket is open on a live link).
        let ours = encode_edrx(requested.as_millis() as u64)
            .and_then(|bits| decode_edrx("CEDRXS", &bits))
            .ok();
        let theirs = dynamic.and_then(|d| d.requested_ms);
        if theirs.is_some() && ours.is_some() && theirs != ours {
            if let Ok(cmd) = cedrxs_command(Some(requested.as_millis() as u64)) {
                info!(
                    cmd,
                    "modem: the module's eDRX request changed: setting ours again"
                );
                self.soft(&cmd).await;
            }
        }
    }

    /// `AT+CCLK?`: the network time in the status and, with `set_clock`, the correction of an
    /// untrusted system clock (replaced only when the new reading disagrees with it or is more
    /// accurate, see `time::should_replace`).
    pub(super) async fn read_time(&mut self) {
        let sent = Instant::now();
        let Ok(x) = self.at.call("AT+CCLK?").await else {
            return;
        };
        let rtt = sent.elapsed();
        // The offset is against the system clock itself, never the corrected one.
        let system = crate::time::system_now_ms();
        let Some(clock) = reply::find_line("CCLK", "+CCLK:", &x.lines)
            .ok()
            .and_then(|l| reply::cclk(l).ok())
        else {
            return;
        };
        let rtt_ms = u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX);
        self.network_time(NetworkTime::measure(clock.utc_ms, rtt_ms, system));
    }

    /// A `+CTZE` (or `+CTZV`) URC: with the network's time in it, a network time reading
    /// (± 1000 ms); a bare zone report carries no time.
    pub(super) fn on_time_zone(&mut self, line: &str) {
        let system = crate::time::system_now_ms();
        match reply::ctzv(line) {
            Ok(z) => {
                if let Some(utc) = z.utc_ms {
                    self.network_time(NetworkTime::from_urc(utc, system));
                }
            }
            Err(e) => debug!("modem: {e}"),
        }
    }

    /// One network time reading: status, and the clock correction with `set_clock`.
    fn network_time(&mut self, t: NetworkTime) {
        // A module without network time reports its build date or 1970-ish: not a source.
        if !crate::time::is_trusted(t.utc_ms) {
            return;
        }
        self.set(|s| s.network_time = Some(t));
        if self.cfg.set_clock {
            let new = crate::time::Correction {
                offset_ms: t.offset_ms,
                accuracy_ms: t.accuracy_ms,
            };
            if crate::time::should_replace(crate::time::network_correction(), new) {
                crate::time::set_network_correction(new.offset_ms, new.accuracy_ms);
            }
        }
        self.note_clock_source();
    }

    /// One `clock_source` event (and a log line) when the daemon's clock source changed
    /// (untrusted -> network, network -> system, ...); offset updates are not changes.
    pub(super) fn note_clock_source(&mut self) {
        let now = crate::time::clock_source();
        if now.as_str() == self.clock.as_str() {
            return;
        }
        let was = self.clock;
        self.clock = now;
        info!(
            source = now.as_str(),
            was = was.as_str(),
            "clock source changed"
        );
        let mut ev = serde_json::json!({"event": "clock_source", "was": was.as_str()});
        if let (serde_json::Value::Object(m), serde_json::Value::Object(src)) =
            (&mut ev, now.json())
        {
            m.extend(src);
        }
        self.event(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctzr_per_profile() {
        for id in ["bc95", "bc66", "bg96", "sim7020"] {
            assert!(ctzr_supported(id), "{id}");
        }
        for id in ["generic", "sim7080", ""] {
            assert!(!ctzr_supported(id), "{id}");
        }
    }
}
