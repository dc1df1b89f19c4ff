//! The supervisor's recovery half (a child module of `supervisor`, so it shares the task's
//! state): asking the reset ladder (`climb`), carrying out a step (`take`: radio cycle, the
//! profile's reset command, a power cycle) and waiting for the module's boot marker
//! (`wait_boot`), or dropping the boot text an init already follows (`stale_boot_text`).
//! Each step taken or capped becomes a `modem_reset` event and shows in `ModemStatus::ladder`.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::super::at::{Urc, UrcKind};
use super::super::engine::AtError;
use super::super::ladder::{Decision, Input, Step};
use super::super::reply;
use super::super::status::{LastStep, ModemState};
use super::{ModemSupervisor, Stopped, Trouble};

impl ModemSupervisor {
    /// Ask the ladder and take its step; true when a step was taken (init again).
    pub(super) async fn climb(
        &mut self,
        input: Input,
        urcs: &mut broadcast::Receiver<Urc>,
        shutdown: &CancellationToken,
    ) -> Result<bool, Stopped> {
        let now = Instant::now();
        if self.hold_until.is_some_and(|t| now < t) {
            return Ok(false);
        }
        let decision = self.ladder.on(input, now.into_std());
        let step = match decision {
            Decision::Take(step) => step,
            Decision::Backoff { until, .. } => {
                self.hold_until = Some(Instant::from_std(until));
                return Ok(false);
            }
            Decision::Capped { step, until } => {
                self.hold_until = Some(Instant::from_std(until));
                let wait_ms = until.saturating_duration_since(now.into_std()).as_millis() as i64;
                let until_ms = crate::time::now_ms() + wait_ms;
                warn!(
                    step = step.as_str(),
                    "modem reset step over its daily cap: waiting"
                );
                self.event(serde_json::json!({
                    "event": "modem_reset",
                    "step": step.as_str(),
                    "reason": input.as_str(),
                    "outcome": "capped",
                    "until_ms": until_ms,
                }));
                self.set(|s| {
                    s.ladder.last = Some(LastStep {
                        step,
                        reason: input.as_str().into(),
                        at_ms: crate::time::now_ms(),
                        outcome: format!("capped until {until_ms}"),
                    })
                });
                return Ok(false);
            }
        };
        self.hold_until = None;
        let (resets, cycles) = self.ladder.counts(now.into_std());
        warn!(
            step = step.as_str(),
            reason = input.as_str(),
            "modem reset ladder"
        );
        self.event(serde_json::json!({
            "event": "modem_reset",
            "step": step.as_str(),
            "reason": input.as_str(),
            "resets_today": resets,
            "power_cycles_today": cycles,
        }));
        let at_ms = crate::time::now_ms();
        self.set(|s| {
            s.state = ModemState::Recovering;
            s.ladder.step = Some(step);
            s.ladder.resets_today = resets;
            s.ladder.power_cycles_today = cycles;
            s.ladder.last = Some(LastStep {
                step,
                reason: input.as_str().into(),
                at_ms,
                outcome: "in progress".into(),
            });
        });
        let outcome = self.take(step, urcs, shutdown).await;
        let text = match &outcome {
            Ok(()) => "ok".to_string(),
            Err(Trouble::At(e)) => format!("failed: {e}"),
            Err(Trouble::Power(e)) => format!("failed: {e}"),
            Err(Trouble::Shutdown) => return Err(Stopped),
        };
        if outcome.is_err() {
            warn!(step = step.as_str(), "modem reset step: {text}");
        }
        self.set(|s| {
            if let Some(l) = &mut s.ladder.last {
                l.outcome = text;
            }
            s.state = ModemState::Starting;
            s.attached = None;
            s.ip = None;
            s.pdp_active = None;
        });
        // Registration gets its full bound again after every step; the module starts over.
        self.missing_since = Instant::now();
        self.unregistered_since = Some(Instant::now());
        self.set(|s| s.registered_since_ms = None);
        self.last_stat = None;
        self.unanswered = 0;
        Ok(true)
    }

    async fn take(
        &mut self,
        step: Step,
        urcs: &mut broadcast::Receiver<Urc>,
        shutdown: &CancellationToken,
    ) -> Result<(), Trouble> {
        match step {
            Step::RadioCycle => {
                self.at.call("AT+CFUN=0").await?;
                self.at.call("AT+CFUN=1").await?;
                Ok(())
            }
            Step::ModuleReset => {
                // A hung module ignores it; the boot marker decides.
                if let Err(e) = self.at.call(self.profile.reset).await {
                    debug!("modem reset command: {e}");
                }
                self.wait_boot(urcs, shutdown).await
            }
            Step::PowerCycle => {
                let Some(power) = self.cfg.power.clone() else {
                    return Ok(());
                };
                if let Err(e) = super::super::power::power_cycle(&power).await {
                    let text = e.to_string();
                    self.set(|s| s.last_error = Some(text));
                    return Err(Trouble::Power(e));
                }
                self.wait_boot(urcs, shutdown).await
            }
        }
    }

    /// Drops the boot lines already received (init follows them) and handles the other URCs
    /// queued with them as usual.
    pub(super) async fn stale_boot_text(
        &mut self,
        urcs: &mut broadcast::Receiver<Urc>,
        shutdown: &CancellationToken,
    ) {
        loop {
            match urcs.try_recv() {
                Ok(u) if u.kind == Some(UrcKind::Boot) => {
                    debug!(line = %u.line, "modem boot text from before init");
                    // The model may not be known yet: any model's marker ends the text.
                    self.boot_pending = !super::super::profile::PROFILES
                        .iter()
                        .any(|p| p.boot_complete(&u.line));
                }
                Ok(u) => {
                    self.on_urc(&u, urcs, shutdown).await;
                }
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    debug!(lost = n, "modem URCs from before init lost");
                }
                Err(_) => return,
            }
        }
    }

    /// Wait for the profile's boot marker (or, without one, for `AT` to be answered).
    pub(super) async fn wait_boot(
        &mut self,
        urcs: &mut broadcast::Receiver<Urc>,
        shutdown: &CancellationToken,
    ) -> Result<(), Trouble> {
        let deadline = Instant::now() + self.opts.boot_timeout;
        let Some(marker) = self.profile.boot_marker else {
            while Instant::now() < deadline {
                if self.at.call("AT").await.is_ok() {
                    return Ok(());
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(Trouble::Shutdown),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            return Err(Trouble::At(AtError::Silent { cmd: "AT".into() }));
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Err(Trouble::Shutdown),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Trouble::At(AtError::Timeout {
                        cmd: format!("boot marker {marker:?}"),
                        after: self.opts.boot_timeout,
                    }));
                }
                u = urcs.recv() => match u {
                    Ok(u) if self.profile.boot_complete(&u.line) => return Ok(()),
                    Ok(u) => {
                        if u.kind == Some(UrcKind::Cereg) {
                            if let Ok(r) = reply::cereg_urc(&u.line) { self.registration(&r) }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Err(Trouble::At(AtError::Closed)),
                },
            }
        }
    }
}
