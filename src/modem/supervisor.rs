//! The modem supervisor: one task (`ModemSupervisor::run`) that talks to the module through the
//! `AtHandle` and keeps `ModemStatus` (on a `watch`) true. After start, every boot URC and every
//! port reopen it runs the init sequence (ATE0, detection ATI/CGMM -> profile, CMEE=1, the
//! highest CEREG URC level the module takes, APN, PSM/eDRX setters when configured); then it
//! tracks registration (URCs and polls), attach and the PDP address, samples the signal with the
//! profile's commands every `signal_every`, reads the network time (CCLK; with `set_clock` it
//! becomes `crate::time`'s correction of an untrusted system clock, and every change of the
//! clock source is a `clock_source` event) and drives the reset
//! ladder when the module stops answering or registration/attach stays missing longer than
//! `register_within`. Every ladder step and every registration change is an event
//! (`modem_reset`, `modem_registration`) sent to the runtime's event path. It never owns the
//! port (the engine does) and never opens sockets (socket mode's data path is not here).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::at::{Exchange, Urc};
use super::engine::{AtError, AtHandle};
use super::ladder::{permanent_reject, Input, Ladder, Policy};
use super::profile::{self, Profile};
use super::reply::{self, RegStatus};
use super::signal::Signal;
use super::status::{ModemState, ModemStatus, PsmGranted, SignalReport};
use super::timeouts;
use super::timers::{cedrxs_command, cpsms_command, Timer};
use crate::config::{ModemConfig, ModemMode};

/// Consecutive unanswered commands before the ladder is asked.
const UNRESPONSIVE_AFTER: u32 = 2;

/// Tunables (tests shorten them).
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// Registration/attach poll period while registered.
    pub poll_every: Duration,
    /// Poll period while not registered or not answering.
    pub poll_fast: Duration,
    /// Longest wait for the boot marker after a reset or power cycle.
    pub boot_timeout: Duration,
    /// Gap before the second ladder step (doubles per step, up to `max_gap`).
    pub min_gap: Duration,
    pub max_gap: Duration,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions {
            poll_every: Duration::from_secs(60),
            poll_fast: Duration::from_secs(10),
            boot_timeout: timeouts::BOOT,
            min_gap: Duration::from_secs(30),
            max_gap: Duration::from_secs(1800),
        }
    }
}

/// Where events go (the gateway records them in the store).
pub type EventTx = mpsc::Sender<serde_json::Value>;

/// The supervisor task.
pub struct ModemSupervisor {
    cfg: ModemConfig,
    at: AtHandle,
    opts: SupervisorOptions,
    status: Arc<watch::Sender<ModemStatus>>,
    events: Option<EventTx>,
    ladder: Ladder,
    profile: &'static Profile,
    /// Since when registration (or attach) has been missing.
    missing_since: Instant,
    /// Since when the module has not been registered (its start, a ladder step, or the
    /// loss): `registered_in_ms` at the next registration.
    unregistered_since: Option<Instant>,
    unanswered: u32,
    /// No ladder step before this (backoff or cap).
    hold_until: Option<Instant>,
    last_stat: Option<RegStatus>,
    next_signal: Instant,
    /// The clock source last reported (an event when it changes).
    clock: crate::time::ClockSource,
    /// The engine's view: a module socket is open (deferral of link-disturbing setters).
    socket_open: watch::Receiver<bool>,
    /// The start of a boot text the last init followed was seen, its end (the profile's boot
    /// marker, e.g. BG96's `APP RDY` after `RDY`) not yet: that end is no new boot.
    boot_pending: bool,
}

/// Why an init or step did not complete.
enum Trouble {
    At(AtError),
    Power(super::power::PowerError),
    Shutdown,
}

/// The supervisor was asked to stop.
struct Stopped;

impl From<AtError> for Trouble {
    fn from(e: AtError) -> Self {
        Trouble::At(e)
    }
}

impl ModemSupervisor {
    pub fn new(
        cfg: ModemConfig,
        at: AtHandle,
        opts: SupervisorOptions,
        status: Arc<watch::Sender<ModemStatus>>,
        events: Option<EventTx>,
    ) -> ModemSupervisor {
        let policy = Policy {
            power: cfg.power.is_some(),
            max_resets_per_day: cfg.max_resets_per_day,
            max_power_cycles_per_day: cfg.power.as_ref().map_or(0, |p| p.max_power_cycles_per_day),
            min_gap: opts.min_gap,
            max_gap: opts.max_gap,
        };
        let profile = cfg
            .model
            .as_deref()
            .and_then(profile::by_id)
            .unwrap_or(&profile::GENERIC);
        status.send_modify(|s| s.mode = cfg.mode.as_str().to_string());
        if !cfg.set_clock {
            // A correction an earlier generation installed is not wanted any more.
            crate::time::clear_network_correction();
        }
        let now = Instant::now();
        ModemSupervisor {
            cfg,
            opts,
            status,
            events,
            ladder: Ladder::new(policy),
            profile,
            missing_since: now,
            unregistered_since: Some(now),
            unanswered: 0,
            hold_until: None,
            last_stat: None,
            next_signal: now,
            clock: crate::time::clock_source(),
            socket_open: at.socket_open(),
            boot_pending: false,
            at,
        }
    }

    fn set(&self, f: impl FnOnce(&mut ModemStatus)) {
        self.status.send_modify(|s| {
            f(s);
            s.link_up = s
                .registration
                .as_ref()
                .is_some_and(|r| matches!(r.stat.as_str(), "home" | "roaming"))
                && s.attached == Some(true)
                && !matches!(s.state, ModemState::Recovering | ModemState::Unresponsive);
        });
    }

    fn event(&self, ev: serde_json::Value) {
        if let Some(tx) = &self.events {
            if tx.try_send(ev).is_err() {
                warn!("modem event dropped: the event queue is full or closed");
            }
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut urcs = self.at.urcs();
        let mut opens = self.at.port_opens();
        let mut silences = self.at.silences();
        let mut socket_open = self.at.socket_open();
        let mut need_init = true;
        // Polls happen on their period (or when the signal is due), not on every URC.
        let mut next_poll = Instant::now();
        loop {
            if need_init {
                match self.init(&mut urcs, &mut opens, &shutdown).await {
                    Ok(()) => {
                        need_init = false;
                        self.unanswered = 0;
                        next_poll = Instant::now() + self.poll_period();
                    }
                    Err(Trouble::Shutdown) => return,
                    Err(Trouble::At(e)) => {
                        self.note_error(&e);
                        if e.unresponsive() {
                            self.unanswered += 1;
                        }
                    }
                    Err(Trouble::Power(e)) => {
                        let text = e.to_string();
                        self.set(|s| s.last_error = Some(text));
                    }
                }
            } else if Instant::now() >= next_poll.min(self.next_signal) {
                match self.poll().await {
                    Ok(()) => self.unanswered = 0,
                    Err(e) => {
                        self.note_error(&e);
                        if e.unresponsive() {
                            self.unanswered += 1;
                        }
                    }
                }
                next_poll = Instant::now() + self.poll_period();
            }
            let input = if self.unanswered >= UNRESPONSIVE_AFTER {
                self.set(|s| s.state = ModemState::Unresponsive);
                Some(Input::Unresponsive)
            } else if !need_init {
                self.bound_passed()
            } else {
                None
            };
            if let Some(input) = input {
                match self.climb(input, &mut urcs, &shutdown).await {
                    Err(Stopped) => return,
                    Ok(true) => {
                        need_init = true;
                        continue;
                    }
                    Ok(false) => {}
                }
            }
            let wake = if need_init {
                Instant::now() + self.opts.poll_fast
            } else {
                next_poll.min(self.next_signal).max(Instant::now())
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(wake) => {}
                changed = silences.changed() => {
                    if changed.is_err() { return; }
                    debug!("a modem command got no answer at all: polling now");
                    next_poll = Instant::now();
                }
                changed = socket_open.changed() => {
                    if changed.is_err() { return; }
                    socket_open.borrow_and_update();
                    self.socket_changed().await;
                }
                changed = opens.changed() => {
                    if changed.is_err() { return; }
                    debug!("modem port reopened: init again");
                    need_init = true;
                }
                urc = urcs.recv() => match urc {
                    Ok(u) => {
                        if self.on_urc(&u, &mut urcs, &shutdown).await {
                            need_init = true;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(lost = n, "modem URCs lost (slow supervisor): polling");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// Slow while the link is up, fast while it is not.
    fn poll_period(&self) -> Duration {
        // While commands go unanswered, look again soon: a hang must reach the ladder fast.
        if self.status.borrow().link_up && self.unanswered == 0 {
            self.opts.poll_every
        } else {
            self.opts.poll_fast
        }
    }

    fn note_error(&self, e: &AtError) {
        debug!("modem: {e}");
        let text = e.to_string();
        self.set(|s| s.last_error = Some(text));
    }

    /// ATE0, detection, CMEE, CEREG level, APN, PSM/eDRX; then one poll.
    ///
    /// Once the module answers the first `AT`, what happened before it is behind this init:
    /// the port open that caused it (or the first one) is marked seen, and the boot text that
    /// arrived before that answer (buffered in the port since power-on, or the rest of the
    /// text that triggered this init) is dropped rather than taken for another reboot. Only a
    /// reopen or boot text after that answer inits again.
    async fn init(
        &mut self,
        urcs: &mut broadcast::Receiver<Urc>,
        opens: &mut watch::Receiver<u64>,
        shutdown: &CancellationToken,
    ) -> Result<(), Trouble> {
        if shutdown.is_cancelled() {
            return Err(Trouble::Shutdown);
        }
        // Init sends every setter again: nothing deferred from before is still wanted.
        self.set(|s| {
            s.state = ModemState::Starting;
            s.deferred.clear();
        });
        let mut answered = self.at.call("AT").await;
        if matches!(&answered, Err(e) if e.unresponsive()) {
            answered = self.at.call("AT").await;
        }
        answered?;
        opens.borrow_and_update();
        self.stale_boot_text(urcs, shutdown).await;
        self.set(|s| s.inits += 1);
        self.at.call("ATE0").await?;
        let (profile, text) = self.detect().await?;
        if self.profile.id != profile.id {
            info!(model = profile.id, text = %text, "modem detected");
        }
        self.profile = profile;
        self.set(|s| {
            s.model = Some(profile.id.to_string());
            s.model_text = Some(text);
        });
        let _ = self.soft("AT+CMEE=1").await;
        self.read_sim().await?;
        for n in (2..=5).rev() {
            if self.soft(&format!("AT+CEREG={n}")).await {
                break;
            }
        }
        if network::ctzr_supported(profile.id) {
            // +CTZE with the network's time at every registration (a clock source).
            self.soft("AT+CTZR=2").await;
        }
        if let Some(apn) = self.cfg.apn.clone() {
            self.soft(&format!("AT+CGDCONT=1,\"IP\",\"{apn}\"")).await;
        }
        if let Some(psm) = self.cfg.psm {
            let request = (
                Timer::Seconds(psm.tau.as_secs()),
                Timer::Seconds(psm.active.as_secs()),
            );
            if let Ok(cmd) = cpsms_command(Some(request)) {
                if self.soft(&cmd).await {
                    self.set(|s| {
                        s.psm_requested = Some(PsmGranted {
                            tau_s: Some(psm.tau.as_secs()),
                            active_s: Some(psm.active.as_secs()),
                        })
                    });
                }
            }
        }
        if let Some(edrx) = self.cfg.edrx {
            if let Ok(cmd) = cedrxs_command(Some(edrx.as_millis() as u64)) {
                if self.soft(&cmd).await {
                    self.read_edrx().await;
                }
            }
        }
        self.next_signal = Instant::now();
        self.poll().await?;
        Ok(())
    }

    /// The SIM state (`AT+CPIN?`): ready, absent (CME error 10), or locked.
    async fn read_sim(&mut self) -> Result<(), AtError> {
        let sim = match self.at.call("AT+CPIN?").await {
            Ok(x) => match reply::find_line("CPIN", "+CPIN:", &x.lines).map(reply::cpin) {
                Ok(Ok(reply::SimState::Ready)) => "ready".to_string(),
                Ok(Ok(reply::SimState::Locked(what))) => what,
                _ => return Ok(()),
            },
            Err(AtError::Cme { code: 10, .. }) => "absent".to_string(),
            Err(e) if e.unresponsive() => return Err(e),
            Err(e) => {
                self.note_error(&e);
                return Ok(());
            }
        };
        let changed = self.status.borrow().sim.as_deref() != Some(sim.as_str());
        if changed {
            info!(sim = %sim, "modem SIM");
            self.set(|s| s.sim = Some(sim));
        }
        Ok(())
    }

    /// A setter whose failure is noted, not fatal; true when it succeeded or is deferred
    /// (a link-disturbing setter while a socket is open on a live link: `network::hold`).
    async fn soft(&self, cmd: &str) -> bool {
        if self.hold(cmd) {
            return true;
        }
        match self.at.call(cmd).await {
            Ok(_) => true,
            Err(e) => {
                self.note_error(&e);
                false
            }
        }
    }

    async fn detect(&self) -> Result<(&'static Profile, String), AtError> {
        let ati = match self.at.call("ATI").await {
            Ok(x) => x,
            Err(e) if e.unresponsive() => return Err(e),
            Err(e) => {
                // Some modules refuse ATI; CGMM and the configured model still tell.
                self.note_error(&e);
                Exchange {
                    command: "ATI".into(),
                    lines: Vec::new(),
                    data: None,
                    result: super::at::Final::Error,
                    truncated: false,
                }
            }
        };
        let first = ati.lines.first().cloned().unwrap_or_default();
        let text = ati.lines.join(" ");
        if let Some(p) = self.cfg.model.as_deref().and_then(profile::by_id) {
            return Ok((p, text));
        }
        let p = profile::detect(&ati.lines);
        if p.id != profile::GENERIC.id {
            return Ok((p, first_model_line(&ati.lines).unwrap_or(first)));
        }
        let cgmm = self
            .at
            .call("AT+CGMM")
            .await
            .map(|x| x.lines)
            .unwrap_or_default();
        let all: Vec<String> = ati.lines.iter().chain(cgmm.iter()).cloned().collect();
        Ok((profile::detect(&all), cgmm.first().cloned().unwrap_or(text)))
    }

    /// Registration, attach, address; the signal and the time when due.
    async fn poll(&mut self) -> Result<(), AtError> {
        let x = self.at.call("AT+CEREG?").await?;
        // A registration URC in flight with the query is a +CEREG line too: the core picks.
        match reply::cereg_reply_lines(&x.lines) {
            Ok(r) => self.registration(&r),
            Err(e) => debug!("modem: {e}"),
        }
        let registered = self.last_stat.is_some_and(RegStatus::registered);
        if !registered {
            // A SIM taken out or put back shows while the module is not registered.
            self.read_sim().await?;
        }
        let attached = match self.at.call("AT+CGATT?").await {
            Ok(x) => reply::find_line("CGATT", "+CGATT:", &x.lines)
                .ok()
                .and_then(|l| reply::cgatt(l).ok()),
            Err(e) if e.unresponsive() => return Err(e),
            Err(e) => {
                self.note_error(&e);
                None
            }
        };
        self.set(|s| s.attached = attached);
        if registered && attached == Some(true) {
            let have_ip = self.status.borrow().ip.is_some();
            if !have_ip {
                if let Ok(x) = self.at.call("AT+CGPADDR").await {
                    let ip = x
                        .lines
                        .iter()
                        .filter_map(|l| reply::cgpaddr(l).ok())
                        .find_map(|(_, a)| a);
                    self.set(|s| s.ip = ip.map(|a| a.to_string()));
                }
            }
            self.ladder.success();
            self.missing_since = Instant::now();
            self.hold_until = None;
            self.set(|s| s.ladder.step = None);
        } else if registered && attached == Some(false) && self.cfg.mode == ModemMode::Socket {
            // UART-only modules: attach is ours to ask for.
            self.soft("AT+CGATT=1").await;
        }
        if Instant::now() >= self.next_signal {
            self.next_signal = Instant::now() + self.cfg.signal_every;
            self.sample_signal().await?;
            self.read_time().await;
            self.read_edrx().await;
        }
        // NTP may have set the system clock meanwhile: noticed at the latest one poll later.
        self.note_clock_source();
        self.update_ladder_counts();
        Ok(())
    }

    async fn sample_signal(&mut self) -> Result<(), AtError> {
        let (merged, errors) = sample_signal(&self.at, self.profile).await?;
        for e in errors {
            debug!("modem signal: {e}");
        }
        if let Some(s) = merged {
            let now = crate::time::now_ms();
            self.set(|st| {
                st.signal = Some(SignalReport::from(s));
                st.sampled_at_ms = Some(now);
            });
        }
        Ok(())
    }

    fn update_ladder_counts(&mut self) {
        let (r, p) = self.ladder.counts(Instant::now().into_std());
        self.set(|s| {
            s.ladder.resets_today = r;
            s.ladder.power_cycles_today = p;
        });
    }

    /// Registration or attach missing longer than the bound.
    fn bound_passed(&self) -> Option<Input> {
        if self.missing_since.elapsed() < self.cfg.register_within {
            return None;
        }
        let s = self.status.borrow();
        let registered = self.last_stat.is_some_and(RegStatus::registered);
        let reject = s.registration.as_ref().and_then(|r| r.reject_cause);
        let sim_missing = s.sim.as_deref().is_some_and(|x| x != "ready");
        if self.last_stat == Some(RegStatus::Denied) && reject.is_some_and(permanent_reject) {
            // No reset brings back a SIM the network refuses: the status says why.
            None
        } else if sim_missing && !registered {
            // Nor one that is absent or locked.
            None
        } else if !registered {
            Some(Input::RegistrationLost)
        } else if s.attached == Some(false) {
            Some(Input::AttachFailed)
        } else {
            None
        }
    }
}

#[path = "supervisor_recovery.rs"]
mod recovery;

#[path = "supervisor_network.rs"]
mod network;

#[path = "supervisor_registration.rs"]
mod registration;

/// The model line of an ATI reply: the line a profile matched, else the first.
fn first_model_line(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .find(|l| profile::detect(std::slice::from_ref(*l)).id != profile::GENERIC.id)
        .cloned()
}

/// Run the profile's signal commands now and merge what they give (the supervisor's schedule
/// and `gasdtu modem signal`); the messages of commands that failed or did not parse come
/// back beside it. A module that does not answer at all ends the sample (`Err`).
pub async fn sample_signal(
    at: &AtHandle,
    profile: &Profile,
) -> Result<(Option<Signal>, Vec<String>), AtError> {
    let mut merged: Option<Signal> = None;
    let mut errors = Vec::new();
    for cmd in profile.signal {
        match at.call(cmd.command()).await {
            Ok(x) => match cmd.parse(&x.lines) {
                Ok(s) => merged = Some(merged.map_or(s, |m| m.merge(s))),
                Err(e) => errors.push(e.to_string()),
            },
            Err(e) if e.unresponsive() => return Err(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Ok((merged, errors))
}
