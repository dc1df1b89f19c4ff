//! Config pushes in the daemon (issue 10, part E2): `PushOwner` lives next to the `Gateway` in
//! the run loop (the one owner of `Gateway::apply`). The remote service validates a push (the
//! envelope, the body, the signature policy, the sha256, `gasdtu check`'s loader) and hands a
//! `PushJob` over a channel; the owner installs it (`remote::install::Installer`), applies it
//! with source `mqtt`, reports `pending_confirm` on `<root>/config/state`, and drives the
//! confirm-or-rollback state machine (`remote::confirm::Machine`) from the link status: a
//! PUBACK received after the apply confirms it, the deadline rolls it back (the previous config
//! is applied again and `rolled_back` is queued through the outbox, so it is delivered once the
//! link is back). A redelivery of the version in force is acknowledged and not applied again.
//! The reports that end a push (`applied`, `rolled_back`, `rejected`) are owed by the
//! installer's record until they are in the store (`report_owed`): no kill loses one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value as Json};

use super::Gateway;
use crate::config::{self, Config};
use crate::outbox::ReplyTopic;
use crate::remote::confirm::{Action, Input, Machine, Now};
use crate::remote::install::{
    InstallError, InstallRequest, Installer, Owed, OwedStatus, Recovery, RunningConfig,
};
use crate::remote::request::Push;
use crate::store::Begin;
use crate::uplink::Inbound;

/// A validated push, from the remote service to the owner of the `Gateway`.
pub struct PushJob {
    pub push: Push,
    /// The push's config, loaded with the code of `gasdtu check`.
    pub config: Config,
    /// Acknowledged once the push is installed (or found already in force).
    pub inbound: Inbound,
    /// Who signed it (for the event).
    pub signer: String,
}

/// Owner of the installer and the confirmation state machine.
pub struct PushOwner {
    installer: std::sync::Arc<Installer>,
    config_path: PathBuf,
    machine: Machine,
    epoch: Instant,
    /// The push awaiting confirmation: version, wall ms of its apply.
    pending: Option<(String, i64)>,
    /// Log lines from before logging was set up (`take_notes`).
    notes: Vec<String>,
}

/// The `config/state` body (see docs/remote.md).
pub fn state_json(
    version: &str,
    sha256: &str,
    status: &str,
    applied_at_ms: i64,
    push: Option<(&str, &str)>,
    errors: &[Json],
    reason: Option<&str>,
) -> Json {
    let mut v = json!({
        "version": version,
        "sha256": sha256,
        "status": status,
        "applied_at": crate::time::rfc3339_ms(applied_at_ms),
        "errors": errors,
    });
    if let Some((pv, ps)) = push {
        v["push"] = json!({"version": pv, "sha256": ps});
    }
    if let Some(r) = reason {
        v["reason"] = Json::String(r.to_string());
    }
    v
}

/// The command-table id of a push: `config:` and 56 hex digits of SHA-256 over version and
/// sha256 (within the table's 64-character bound whatever the version's length).
pub fn push_id(version: &str, sha256_hex: &str) -> String {
    let h = crate::remote::sign::sha256(format!("{version}\n{sha256_hex}").as_bytes());
    format!("config:{}", &hex(&h)[..56])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl PushOwner {
    /// The installer for `config_path` with the state directory and history length of `cfg`.
    pub fn new(config_path: &Path, cfg: &Config) -> PushOwner {
        let keep = cfg.remote.as_ref().map(|r| r.keep_configs).unwrap_or(5);
        PushOwner::with_state_dir(config_path, &cfg.gateway.state_dir, keep)
    }

    pub fn with_state_dir(config_path: &Path, state_dir: &Path, keep: usize) -> PushOwner {
        PushOwner {
            installer: std::sync::Arc::new(Installer::new(config_path, state_dir, keep)),
            config_path: config_path.to_path_buf(),
            machine: Machine::new(),
            epoch: Instant::now(),
            pending: None,
            notes: Vec::new(),
        }
    }

    fn now(&self) -> Now {
        Now {
            mono_ms: self.epoch.elapsed().as_millis() as u64,
            wall_ms: crate::time::now_ms(),
        }
    }

    /// At start, before the config is loaded: finish what a crash left (a crash loop is
    /// rolled back here already). What it found is kept for the log (`take_notes`); the
    /// `config/state` report it owes is queued by `report_owed` once the store is open.
    pub fn recover(&mut self) {
        match self.installer.recover() {
            Ok(Recovery::Clean) => {}
            Ok(Recovery::Pending(p)) => {
                self.notes.push(format!(
                    "config push {} still awaits confirmation ({} starts while pending)",
                    p.version, p.restarts
                ));
                let now = self.now();
                let acts = self.machine.step(Input::Restarted {
                    now,
                    starts: p.restarts,
                    confirm_by_ms: p.confirm_by_ms,
                    window_ms: p.window_ms,
                });
                self.pending = Some((p.version.clone(), p.applied_at_ms));
                for a in acts {
                    if let Action::Rollback(reason) = a {
                        match self.installer.rollback(&reason.to_string()) {
                            Ok(_) => self.pending = None,
                            Err(e) => self.notes.push(format!("rollback at start failed: {e}")),
                        }
                    }
                }
            }
            Ok(Recovery::Interrupted { version }) => self.notes.push(format!(
                "config push {version} was interrupted before it took effect"
            )),
            Ok(Recovery::LocalEdit { dropped_version }) => self.notes.push(format!(
                "config push {dropped_version} dropped: the config file was edited locally"
            )),
            Ok(Recovery::RolledBack(rb)) => self.notes.push(format!(
                "an interrupted rollback of config push {} was completed",
                rb.dropped_version
            )),
            Err(e) => self.notes.push(format!(
                "config push records unreadable, carrying on with the config file in force: {e}"
            )),
        }
    }

    /// A pending push whose config failed to load at start: roll back to the previous one.
    /// True when a rollback happened (load the file again); its `rolled_back` report is owed
    /// like every other (`report_owed`).
    pub fn rollback_unloadable(&mut self, why: &str) -> bool {
        if self.pending.is_none() {
            return false;
        }
        match self
            .installer
            .rollback(&format!("the pushed config failed to load at start: {why}"))
        {
            Ok(rb) => {
                self.notes.push(format!(
                    "config push {} did not load at start and was rolled back to {}: {why}",
                    rb.dropped_version, rb.version
                ));
                self.pending = None;
                self.machine = Machine::new();
                true
            }
            Err(e) => {
                self.notes
                    .push(format!("rollback of an unloadable push failed: {e}"));
                false
            }
        }
    }

    /// Queue the `config/state` report (and its `config_push` event) that the running record
    /// still owes, if any, then clear it (`Installer::settle`). Called after every
    /// confirmation, rollback and local edit, and at start for what a crash left unreported.
    pub async fn report_owed(&self, gw: &Gateway, at_start: bool) {
        let inst = self.installer.clone();
        let owed = match tokio::task::spawn_blocking(move || inst.owed()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::error!("cannot read the config record's owed report: {e}");
                return;
            }
            Err(e) => {
                tracing::error!("config record task failed: {e}");
                return;
            }
        };
        let Some((body, mut ev, o)) = owed_report(&owed) else {
            return;
        };
        if at_start {
            ev["at_start"] = Json::Bool(true);
        }
        if !queue(gw, body, ev).await {
            return;
        }
        let inst = self.installer.clone();
        match tokio::task::spawn_blocking(move || inst.settle(&o)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(
                    "cannot clear the config record's owed report (it may be sent again): {e}"
                )
            }
            Err(e) => tracing::error!("config record task failed: {e}"),
        }
    }

    /// What `recover` and `rollback_unloadable` found, for the log (they run before logging
    /// is set up: the caller logs these once it is).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Carry out one validated push.
    pub async fn handle(&mut self, job: PushJob, gw: &mut Gateway) {
        let PushJob {
            push,
            config,
            inbound,
            signer,
        } = job;
        let sha = hex(&push.sha256);
        // A QoS 1 redelivery (also one arriving after a rollback, or in a later process) is
        // acknowledged and never applied twice: the store's command table remembers the push
        // (id from version and sha256) until its expiry has long passed.
        let id = push_id(&push.version, &sha);
        let begin = {
            let (store, id, exp) = (gw.store().clone(), id.clone(), push.expires_ms);
            tokio::task::spawn_blocking(move || {
                store.command_begin(&id, "config/set", exp, crate::time::now_ms())
            })
            .await
        };
        match begin {
            Ok(Ok(Begin::New)) => {
                // Claimed for good before anything happens: a redelivery (its PUBACK lost with
                // a moved uplink, or a kill at any later point) is recognised before it is
                // validated again and never handled twice. A kill inside the install is
                // reported by the installer's recovery at start (`rejected`: interrupted, or
                // the pending push resumed).
                settle(
                    gw,
                    &id,
                    json!({"status": "accepted", "version": push.version}),
                )
                .await;
            }
            Ok(Ok(Begin::Running | Begin::Done(_))) => {
                tracing::info!(version = %push.version, "config push already handled (redelivery)");
                inbound.ack();
                return;
            }
            Ok(Ok(Begin::Interrupted)) => {
                // Begun by a process that died. If the install got through, the installer's
                // recovery at start took over (and reports its own state): settle the row and
                // acknowledge. If it did not, nothing happened yet: install it now.
                let inst = self.installer.clone();
                let in_force = tokio::task::spawn_blocking(move || {
                    let pending = inst.pending().ok().flatten().map(|p| (p.version, p.sha256));
                    pending.or_else(|| inst.running().ok().flatten().map(|r| (r.version, r.sha256)))
                })
                .await
                .ok()
                .flatten();
                if in_force.as_ref() == Some(&(push.version.clone(), sha.clone())) {
                    tracing::info!(version = %push.version,
                        "config push redelivered after a restart: installed before it, not applied again");
                    settle(
                        gw,
                        &id,
                        json!({"status": "installed", "version": push.version}),
                    )
                    .await;
                    inbound.ack();
                    return;
                }
                // (Only a row begun by an older version, which settled after the install.)
                tracing::warn!(version = %push.version,
                    "config push interrupted by a restart before it was installed: installing it now");
                settle(
                    gw,
                    &id,
                    json!({"status": "accepted", "version": push.version}),
                )
                .await;
            }
            Ok(Err(e)) => {
                tracing::error!("cannot record the config push: {e}; left for redelivery");
                return;
            }
            Err(e) => {
                tracing::error!("store task failed: {e}; the push is left for redelivery");
                return;
            }
        }
        let window = push
            .confirm_within
            .or_else(|| config.remote.as_ref().map(|r| r.confirm_within))
            .unwrap_or(std::time::Duration::from_secs(600));
        let window_ms = window.as_millis() as u64;
        let req = InstallRequest {
            version: push.version.clone(),
            config: push.config.clone(),
            profiles: push.profiles.clone(),
        };
        let applied_at = crate::time::now_ms();
        let installer = self.installer.clone();
        let res = tokio::task::spawn_blocking(move || {
            installer.install(&req, applied_at + window_ms as i64)
        })
        .await;
        let installed = match res {
            Ok(Ok(i)) => i,
            Ok(Err(e)) => {
                let msg = e.to_string();
                tracing::error!(version = %push.version, "config push refused: {msg}");
                let body = json!({"status": "rejected",
                    "push": {"version": push.version, "sha256": sha},
                    "errors": [{"message": msg}]});
                let ev = json!({"event": "config_push", "status": "rejected", "version": push.version,
                    "sha256": sha, "signer": signer, "reason": msg});
                queue(gw, body, ev).await;
                inbound.ack();
                return;
            }
            Err(e) => {
                tracing::error!("install task failed: {e}; the push is left for redelivery");
                return;
            }
        };
        inbound.ack();
        let applied = gw.apply(config, "mqtt").await;
        tracing::info!(version = %installed.version, ?applied, "config push applied, awaiting confirmation");
        let now = self.now();
        self.machine = Machine::new();
        self.machine.step(Input::Applied { at: now, window_ms });
        self.pending = Some((installed.version.clone(), now.wall_ms));
        let body = state_json(
            &installed.version,
            &installed.sha256,
            "pending_confirm",
            now.wall_ms,
            Some((&installed.version, &installed.sha256)),
            &[],
            None,
        );
        let ev = json!({"event": "config_push", "status": "pending_confirm",
            "version": installed.version, "sha256": installed.sha256,
            "previous_version": installed.previous_version, "signer": signer,
            "confirm_within_s": window.as_secs()});
        queue(gw, body, ev).await;
    }

    /// The config file was edited locally while a push is pending (seen at SIGHUP, or when a
    /// rollback finds it): the person on site takes over. The pending push ends (no automatic
    /// rollback any more) and is reported `rolled_back` with the reason; the running config
    /// stays what it is until the reload of the edit (which may itself be refused). True when a
    /// pending push was ended.
    pub async fn local_edit(&mut self, gw: &Gateway, seen_at: &str) -> bool {
        let Some((version, _)) = self.pending.clone() else {
            return false;
        };
        let why = format!(
            "the config file {} was edited locally while the push was pending ({seen_at}): the local edit takes over from the push",
            self.config_path.display()
        );
        let inst = self.installer.clone();
        let w = why.clone();
        let taken = tokio::task::spawn_blocking(move || inst.take_local_edit(&w)).await;
        match taken {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return false,
            Ok(Err(e)) => {
                tracing::error!("cannot hand the pending push over to the local edit: {e}");
                return false;
            }
            Err(e) => {
                tracing::error!("install task failed: {e}");
                return false;
            }
        }
        self.pending = None;
        self.machine = Machine::new();
        tracing::warn!(%version, "{why}");
        self.report_owed(gw, false).await;
        true
    }

    /// A push awaits confirmation.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Called every second or so: confirm on a PUBACK after the apply, roll back at the deadline.
    pub async fn tick(&mut self, gw: &mut Gateway) {
        let Some((version, applied_ms)) = self.pending.clone() else {
            return;
        };
        let now = self.now();
        let acked = gw
            .link()
            .borrow()
            .last_ack_ms
            .is_some_and(|t| t > applied_ms);
        let input = if acked {
            Input::Delivered { at: now }
        } else {
            Input::Tick { now }
        };
        for a in self.machine.step(input) {
            match a {
                Action::Confirm => {
                    let inst = self.installer.clone();
                    match tokio::task::spawn_blocking(move || inst.confirm()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!("confirming the push failed: {e}"),
                        Err(e) => tracing::error!("confirm task failed: {e}"),
                    }
                    self.pending = None;
                    tracing::info!(%version, "config push confirmed");
                    self.report_owed(gw, false).await;
                }
                Action::Rollback(reason) => {
                    let why = reason.to_string();
                    tracing::error!(%version, "config push rolled back: {why}");
                    let inst = self.installer.clone();
                    let w = why.clone();
                    match tokio::task::spawn_blocking(move || inst.rollback(&w)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(InstallError::LocalEdit { .. })) => {
                            // Edited on site without a SIGHUP: the edit takes over (it is
                            // loaded at the next SIGHUP or restart).
                            self.local_edit(gw, "found at the confirmation deadline")
                                .await;
                            continue;
                        }
                        Ok(Err(e)) => {
                            tracing::error!("rollback failed: {e}");
                            continue;
                        }
                        Err(e) => {
                            tracing::error!("rollback task failed: {e}");
                            continue;
                        }
                    };
                    self.pending = None;
                    match config::load_file(&self.config_path) {
                        Ok(l) => {
                            gw.apply(l.config, "rollback").await;
                        }
                        Err(e) => tracing::error!("the previous config does not load: {e}"),
                    }
                    self.report_owed(gw, false).await;
                }
                Action::Report(_) => {}
            }
        }
    }
}

/// Mark the push's command row done (no reply: its answer is `config/state`). A failure is
/// logged: a redelivery would then be reported `rejected` as interrupted, never applied twice.
async fn settle(gw: &Gateway, id: &str, result: Json) {
    let (store, id) = (gw.store().clone(), id.to_string());
    match tokio::task::spawn_blocking(move || store.command_settle(&id, &result)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("cannot record the config push as handled: {e}"),
        Err(e) => tracing::error!("store task failed: {e}"),
    }
}

/// The `config/state` body and `config_push` event of the report `running` owes, with the
/// owed record to settle once queued. None when it owes nothing.
pub fn owed_report(running: &RunningConfig) -> Option<(Json, Json, Owed)> {
    let o = running.owed.clone()?;
    let push = Some((o.push_version.as_str(), o.push_sha256.as_str()));
    let reason = o.reason.as_deref();
    let body = match o.status {
        OwedStatus::Applied => state_json(
            &running.version,
            &running.sha256,
            "applied",
            running.applied_at_ms,
            push,
            &[],
            None,
        ),
        OwedStatus::RolledBack => state_json(
            &running.version,
            &running.sha256,
            "rolled_back",
            running.applied_at_ms,
            push,
            &[],
            reason,
        ),
        OwedStatus::Rejected => state_json(
            &running.version,
            &running.sha256,
            "rejected",
            running.applied_at_ms,
            push,
            &[json!({"message": reason.unwrap_or_default()})],
            None,
        ),
    };
    let mut ev = json!({"event": "config_push", "status": body["status"],
        "version": o.push_version, "running_version": running.version});
    if !o.push_sha256.is_empty() {
        ev["sha256"] = Json::String(o.push_sha256.clone());
    }
    if let Some(r) = reason {
        ev["reason"] = Json::String(r.to_string());
    }
    Some((body, ev, o))
}

/// Queue a `config/state` report with its event (through the outbox). True once it is in the
/// store.
pub async fn queue(gw: &Gateway, body: Json, ev: Json) -> bool {
    let store = gw.store().clone();
    match tokio::task::spawn_blocking(move || {
        store.queue_reply(ReplyTopic::ConfigState, &body, Some(&ev))
    })
    .await
    {
        Ok(Ok(())) => {
            gw.wake_forwarder();
            true
        }
        Ok(Err(e)) => {
            tracing::error!("cannot queue a config/state report: {e}");
            false
        }
        Err(e) => {
            tracing::error!("config/state task failed: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_ids_fit_the_command_table_and_tell_pushes_apart() {
        let long = "v".repeat(64);
        let sha = "ab".repeat(32);
        for (version, sha) in [("v1", sha.as_str()), (long.as_str(), sha.as_str())] {
            let id = push_id(version, sha);
            assert!(id.len() <= crate::store::COMMAND_ID_MAX, "{id}");
            assert_eq!(id, push_id(version, sha), "deterministic");
        }
        assert_ne!(push_id("v1", &sha), push_id("v2", &sha));
        assert_ne!(push_id("v1", &sha), push_id("v1", &"cd".repeat(32)));
    }

    #[test]
    fn owed_reports_name_the_push_and_the_config_in_force() {
        use crate::remote::install::{ConfigStatus, Source};
        let running = |owed: Option<Owed>| RunningConfig {
            version: "v1".into(),
            sha256: "aa".into(),
            applied_at_ms: 0,
            source: Source::Rollback,
            status: ConfigStatus::RolledBack,
            reason: None,
            profiles: None,
            owed,
        };
        assert!(owed_report(&running(None)).is_none());
        let cases = [
            (OwedStatus::Applied, None, "applied"),
            (OwedStatus::RolledBack, Some("no broker"), "rolled_back"),
            (OwedStatus::Rejected, Some("interrupted"), "rejected"),
        ];
        for (status, reason, name) in cases {
            let o = Owed {
                status,
                push_version: "v2".into(),
                push_sha256: "bb".into(),
                reason: reason.map(String::from),
            };
            let (body, ev, back) = owed_report(&running(Some(o.clone()))).unwrap();
            assert_eq!(back, o, "{name}: the owed record to settle");
            assert_eq!(
                (&body["status"], &body["version"], &body["sha256"]),
                (&json!(name), &json!("v1"), &json!("aa")),
                "{name}"
            );
            assert_eq!(
                body["push"],
                json!({"version": "v2", "sha256": "bb"}),
                "{name}"
            );
            assert_eq!(
                (&ev["event"], &ev["status"], &ev["version"], &ev["sha256"]),
                (
                    &json!("config_push"),
                    &json!(name),
                    &json!("v2"),
                    &json!("bb")
                )
            );
            assert_eq!(ev["running_version"], "v1");
            match status {
                OwedStatus::Applied => assert!(body["reason"].is_null() && ev["reason"].is_null()),
                OwedStatus::RolledBack => assert_eq!(body["reason"], "no broker"),
                OwedStatus::Rejected => assert_eq!(body["errors"][0]["message"], "interrupted"),
            }
        }
    }

    #[test]
    fn state_json_carries_version_sha_status_and_the_push() {
        let v = state_json(
            "v1",
            "aa",
            "rolled_back",
            0,
            Some(("v2", "bb")),
            &[],
            Some("why"),
        );
        assert_eq!(v["version"], "v1");
        assert_eq!(v["sha256"], "aa");
        assert_eq!(v["status"], "rolled_back");
        assert_eq!(v["push"]["version"], "v2");
        assert_eq!(v["push"]["sha256"], "bb");
        assert_eq!(v["reason"], "why");
        assert_eq!(v["applied_at"], "1970-01-01T00:00:00.000Z");
    }
}
