//! The file-system edge of config pushes: `Installer` owns the config file at `config_path`,
//! its records under `<state_dir>/config/` (`current.json`: the running version; `pending.json`:
//! a push awaiting confirmation, with what to roll back to; `history/`: the last `keep`
//! previous configs) and the pushed profiles (`<state_dir>/profiles`, a symlink to one profile
//! set `<state_dir>/profiles.d/<set id>/`). Every step is one atomic file-system operation
//! (write a temp file, fsync, rename, fsync the directory; or one unlink), ordered so that a
//! crash between any two steps leaves the old or the new config in force once `recover()` ran
//! at start; `recover()` says which, and finishes or undoes what was interrupted. The rename of
//! the config file is the commit point; the profile link follows it and is put right by
//! `recover()` from `pending.json`. Decisions (confirm, roll back) belong to
//! `remote::confirm`; this module only carries them out. Details: docs/remote-config.md.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sign::hex;
use crate::config::profiles::{MAX_PUSHED_PROFILES, STATE_PROFILES};

/// Mode of the records and history files (a config may hold credentials).
const FILE_MODE: u32 = 0o600;
/// Mode of installed profiles: readable by the group, like the profile directories in /etc,
/// so `gasdtu check` run by a member of the daemon's group finds them.
const PROFILE_MODE: u32 = 0o640;
/// Records are small; anything longer is not one of ours.
const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// At most this many profiles in one installed set (the pushed ones over the current ones).
pub const MAX_PROFILES_IN_SET: usize = 64;
/// The version label recorded for a config that did not come from a push.
pub const LOCAL_VERSION: &str = "local";

/// The steps of an install, a rollback and a confirmation, in order. A `StepHook` is called
/// after each one completed (tests crash the process there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The running config was copied to `history/`.
    HistoryWritten,
    /// The new profile set directory is complete (renamed into `profiles.d/`).
    ProfilesStaged,
    /// `pending.json` names the push and what to roll back to.
    PendingWritten,
    /// The new config's temp file is written and fsynced, not yet renamed.
    ConfigTempWritten,
    /// The new config is in place (the commit point).
    ConfigRenamed,
    /// `<state_dir>/profiles` points at the new set.
    ProfilesSwitched,
    /// `current.json` names the new version (pending confirmation).
    CurrentWritten,
    /// Old history files and unused profile sets removed.
    Cleaned,
    /// `pending.json` records that a rollback began, and why.
    RollbackMarked,
    /// The previous config's temp file is written, not yet renamed.
    RollbackTempWritten,
    /// The previous config is back in place.
    RollbackRenamed,
    /// `<state_dir>/profiles` points at the previous set again.
    RollbackProfilesSwitched,
    /// `current.json` names the previous version, rolled back.
    RollbackCurrentWritten,
    /// `pending.json` is gone: the rollback is complete.
    RollbackPendingRemoved,
    /// `pending.json` is gone: the push is confirmed.
    ConfirmPendingRemoved,
    /// `current.json` says applied.
    ConfirmCurrentWritten,
}

impl Step {
    /// The steps of `install`, in order.
    pub const INSTALL: &'static [Step] = &[
        Step::HistoryWritten,
        Step::ProfilesStaged,
        Step::PendingWritten,
        Step::ConfigTempWritten,
        Step::ConfigRenamed,
        Step::ProfilesSwitched,
        Step::CurrentWritten,
        Step::Cleaned,
    ];
    /// The steps of `rollback`, in order.
    pub const ROLLBACK: &'static [Step] = &[
        Step::RollbackMarked,
        Step::RollbackTempWritten,
        Step::RollbackRenamed,
        Step::RollbackProfilesSwitched,
        Step::RollbackCurrentWritten,
        Step::RollbackPendingRemoved,
    ];
    /// The steps of `confirm`, in order.
    pub const CONFIRM: &'static [Step] =
        &[Step::ConfirmPendingRemoved, Step::ConfirmCurrentWritten];

    /// A stable name (for test helpers selecting a step).
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    /// The step of `name`, if any.
    pub fn parse(name: &str) -> Option<Step> {
        Self::INSTALL
            .iter()
            .chain(Self::ROLLBACK)
            .chain(Self::CONFIRM)
            .copied()
            .find(|s| s.name() == name)
    }
}

/// Called after every step (a test hook; production installers have none).
pub type StepHook = Box<dyn Fn(Step) + Send + Sync>;

/// What to install: the config text, its version label, and the profiles pushed with it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallRequest {
    pub version: String,
    pub config: String,
    /// (profile id, TOML text); they replace installed profiles of the same id.
    pub profiles: Vec<(String, String)>,
}

/// Where a running config came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Push,
    Local,
    Rollback,
}

/// The status `config/state` reports for the running config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigStatus {
    Applied,
    PendingConfirm,
    RolledBack,
}

/// The running config as `current.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningConfig {
    pub version: String,
    /// Lowercase hex SHA-256 of the config file's bytes.
    pub sha256: String,
    pub applied_at_ms: i64,
    pub source: Source,
    pub status: ConfigStatus,
    /// Why it was rolled back to, for `rolled_back`.
    #[serde(default)]
    pub reason: Option<String>,
    /// The profile set in force (`None`: no pushed profiles).
    #[serde(default)]
    pub profiles: Option<String>,
    /// The `config/state` report this record's state change still owes (see `Owed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owed: Option<Owed>,
}

/// The outcome an owed report gives (`config/state`'s `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwedStatus {
    Applied,
    RolledBack,
    Rejected,
}

/// A `config/state` report that a confirmation, a rollback or a recovery still owes. It is
/// written into `current.json` in the same atomic write as the state change it reports and
/// cleared by `settle` once the report is queued, so a kill between the change and the queue
/// (or a kill at start before the store is open) loses no report: the next start finds it
/// (`owed`) and queues it. At least once: a kill between the queue and `settle` reports twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owed {
    pub status: OwedStatus,
    /// The push the report is about (its sha256 is empty when not known).
    pub push_version: String,
    pub push_sha256: String,
    /// Why: a rollback's reason, a refusal's message.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Owed {
    /// The report `status` about push `version`/`sha256`, with its reason.
    pub fn new(status: OwedStatus, version: &str, sha256: &str, reason: Option<&str>) -> Owed {
        Owed {
            status,
            push_version: version.to_string(),
            push_sha256: sha256.to_string(),
            reason: reason.map(str::to_string),
        }
    }
}

/// A push that awaits confirmation, as a restart finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInfo {
    pub version: String,
    pub sha256: String,
    pub applied_at_ms: i64,
    /// Wall-clock deadline given at install.
    pub confirm_by_ms: i64,
    /// `confirm_by_ms - applied_at_ms`: the whole window.
    pub window_ms: u64,
    /// Process starts seen while pending, this one included.
    pub restarts: u32,
    pub previous_version: String,
}

/// The outcome of `install`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub version: String,
    pub sha256: String,
    pub previous_version: String,
    pub previous_sha256: String,
    /// The previous config's copy under `history/`.
    pub history: PathBuf,
    pub profiles: Option<String>,
}

/// The outcome of a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    /// The version back in force.
    pub version: String,
    pub sha256: String,
    /// The push that was undone.
    pub dropped_version: String,
    pub reason: String,
}

/// What `recover()` found at start, and did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing pending; the config file is the running one (a config edited while the daemon
    /// was stopped is recorded as `local`).
    Clean,
    /// A push awaits confirmation and is in force (an install interrupted after its commit
    /// point was finished): continue the window (`remote::confirm::Machine::resume`).
    Pending(PendingInfo),
    /// An install died before the new config was in place: the old one stands, the pending
    /// record is dropped. Report the push as failed.
    Interrupted { version: String },
    /// The config file is neither the push nor the previous one: a local edit happened while
    /// the push was pending. The local edit wins; the pending record is dropped.
    LocalEdit { dropped_version: String },
    /// A rollback was interrupted; it has been completed.
    RolledBack(RolledBack),
}

/// Failures of the installer, one variant per reaction.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The request itself is unusable (version label, profile names or counts): refuse it.
    #[error("invalid install request: {0}")]
    Invalid(String),
    /// Another push awaits confirmation: refuse this one until it is confirmed or rolled back.
    #[error("push {version:?} is still pending confirmation")]
    AlreadyPending { version: String },
    /// `confirm`/`rollback` without a pending push.
    #[error("no push is pending confirmation")]
    NotPending,
    /// The config file changed under a pending push (a local edit): run `recover()`.
    #[error("{path}: the config file is neither the pending push nor the previous config (edited locally)")]
    LocalEdit { path: PathBuf },
    /// `<state_dir>/profiles` is a directory not managed by gasdtu: pushed profiles cannot be
    /// installed without mixing.
    #[error("{path} is a plain directory, not managed by gasdtu: move its profiles to a profile_dirs entry to accept pushed profiles")]
    ProfilesUnmanaged { path: PathBuf },
    /// A record or history file is unreadable or not what it should be: the state directory
    /// needs attention; the config in force is unchanged.
    #[error("{path}: {why}")]
    Corrupt { path: PathBuf, why: String },
    /// The file system refused an operation; what was done so far is consistent (`recover()`).
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io { what, path, source }
}

/// A profile set's files: (profile id, TOML bytes), sorted by id.
type ProfileFiles = Vec<(String, Vec<u8>)>;

/// The pending record (`pending.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PendingRecord {
    version: String,
    sha256: String,
    applied_at_ms: i64,
    confirm_by_ms: i64,
    restarts: u32,
    profiles: Option<String>,
    previous: Previous,
    /// Set when a rollback began: its reason.
    rollback: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Previous {
    version: String,
    sha256: String,
    /// File name under `history/`.
    history: String,
    profiles: Option<String>,
}

/// What `<state_dir>/profiles` is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pointer {
    Absent,
    Set(String),
    Unmanaged,
}

impl Pointer {
    fn id(&self) -> Option<String> {
        match self {
            Pointer::Set(id) => Some(id.clone()),
            _ => None,
        }
    }
}

/// The config file, its records and the pushed profiles (see the module doc).
pub struct Installer {
    config_path: PathBuf,
    state_dir: PathBuf,
    keep: usize,
    hook: Option<StepHook>,
}

impl std::fmt::Debug for Installer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installer")
            .field("config_path", &self.config_path)
            .field("state_dir", &self.state_dir)
            .field("keep", &self.keep)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Installer {
    /// `keep`: previous configs kept in `history/` (at least 1).
    pub fn new(config_path: &Path, state_dir: &Path, keep: usize) -> Installer {
        Installer {
            config_path: config_path.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            keep: keep.max(1),
            hook: None,
        }
    }

    /// Call `hook` after every step (tests).
    pub fn with_hook(mut self, hook: StepHook) -> Installer {
        self.hook = Some(hook);
        self
    }

    fn step(&self, s: Step) {
        if let Some(h) = &self.hook {
            h(s);
        }
    }

    fn dir(&self) -> PathBuf {
        self.state_dir.join("config")
    }
    fn history_dir(&self) -> PathBuf {
        self.dir().join("history")
    }
    fn current_path(&self) -> PathBuf {
        self.dir().join("current.json")
    }
    fn pending_path(&self) -> PathBuf {
        self.dir().join("pending.json")
    }
    fn link_path(&self) -> PathBuf {
        self.state_dir.join(STATE_PROFILES)
    }
    fn sets_dir(&self) -> PathBuf {
        self.state_dir.join("profiles.d")
    }

    /// The installed profile sets' directory (tests and diagnostics).
    pub fn profile_set_dir(&self, id: &str) -> PathBuf {
        self.sets_dir().join(id)
    }

    fn ensure_dirs(&self) -> Result<(), InstallError> {
        // Owner-only like the store's own state directory (docs/store.md): the records and
        // history may hold credentials. Only directories created here get the mode.
        use std::os::unix::fs::DirBuilderExt;
        for (d, mode) in [
            (self.state_dir.clone(), 0o700),
            (self.dir(), 0o700),
            (self.history_dir(), 0o700),
            (self.sets_dir(), 0o750),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&d)
                .map_err(io("cannot create", &d))?;
        }
        Ok(())
    }

    /// Install `push` with a wall-clock confirmation deadline: the previous config goes to
    /// `history/`, the push's profiles become a new set, `pending.json` records both, then the
    /// config file and the profile link are replaced. Refused while another push is pending.
    pub fn install(
        &self,
        push: &InstallRequest,
        confirm_by_ms: i64,
    ) -> Result<Installed, InstallError> {
        check_request(push)?;
        self.ensure_dirs()?;
        if let Some(p) = self.read_pending()? {
            return Err(InstallError::AlreadyPending { version: p.version });
        }
        let old_text = self.read_config()?;
        let old_sha = sha256_hex(&old_text);
        let previous_version = match self.read_current()? {
            Some(c) if c.sha256 == old_sha => c.version,
            _ => LOCAL_VERSION.to_string(),
        };
        let pointer = self.pointer()?;
        if !push.profiles.is_empty() && pointer == Pointer::Unmanaged {
            return Err(InstallError::ProfilesUnmanaged {
                path: self.link_path(),
            });
        }
        let new_set = if push.profiles.is_empty() {
            None
        } else {
            Some(self.overlay(&pointer, &push.profiles)?)
        };
        let new_profiles = match &new_set {
            Some((id, _)) => Some(id.clone()),
            None => pointer.id(),
        };

        // 1. The previous config into history.
        let history = self.write_history(&previous_version, &old_text)?;
        self.step(Step::HistoryWritten);
        // 2. The new profile set, complete before anything names it.
        if let Some((id, files)) = &new_set {
            self.stage_set(id, files)?;
        }
        self.step(Step::ProfilesStaged);
        // 3. The intent.
        let now = crate::time::now_ms();
        let sha = sha256_hex(push.config.as_bytes());
        let record = PendingRecord {
            version: push.version.clone(),
            sha256: sha.clone(),
            applied_at_ms: now,
            confirm_by_ms,
            restarts: 0,
            profiles: new_profiles.clone(),
            previous: Previous {
                version: previous_version.clone(),
                sha256: old_sha.clone(),
                history: file_name(&history),
                profiles: pointer.id(),
            },
            rollback: None,
        };
        self.write_pending(&record)?;
        self.step(Step::PendingWritten);
        // 4. The commit point.
        self.replace_config(push.config.as_bytes(), Step::ConfigTempWritten)?;
        self.step(Step::ConfigRenamed);
        // 5. The profiles that go with it.
        self.switch_profiles(&pointer, new_profiles.as_deref())?;
        self.step(Step::ProfilesSwitched);
        // 6. The running record.
        self.write_current(&RunningConfig {
            version: push.version.clone(),
            sha256: sha.clone(),
            applied_at_ms: now,
            source: Source::Push,
            status: ConfigStatus::PendingConfirm,
            reason: None,
            profiles: new_profiles.clone(),
            owed: None,
        })?;
        self.step(Step::CurrentWritten);
        self.clean(Some(&record))?;
        self.step(Step::Cleaned);
        Ok(Installed {
            version: push.version.clone(),
            sha256: sha,
            previous_version,
            previous_sha256: old_sha,
            history,
            profiles: new_profiles,
        })
    }

    /// At start, before the config is loaded: finish or undo whatever an earlier process left
    /// half done and say what is in force (see `Recovery`). A pending push counts this start.
    pub fn recover(&self) -> Result<Recovery, InstallError> {
        self.ensure_dirs()?;
        self.remove_temps();
        let text = self.read_config()?;
        let sha = sha256_hex(&text);
        let pointer = self.pointer()?;
        let now = crate::time::now_ms();
        let Some(mut p) = self.read_pending()? else {
            match self.read_current()? {
                Some(mut c) if c.sha256 == sha => {
                    // Confirmed, but the crash came before current.json said so (and so
                    // before its report was queued).
                    if c.status == ConfigStatus::PendingConfirm {
                        c.status = ConfigStatus::Applied;
                        c.owed = Some(Owed::new(OwedStatus::Applied, &c.version, &c.sha256, None));
                        self.write_current(&c)?;
                    }
                }
                // Edited while stopped: recorded as local, still owing what the old record
                // owed (a report about a push is true whatever came after it).
                other => self.record_local(&sha, now, &pointer, other.and_then(|c| c.owed))?,
            }
            self.clean(None)?;
            return Ok(Recovery::Clean);
        };
        let new_in_place =
            sha == p.sha256 && (p.sha256 != p.previous.sha256 || pointer.id() == p.profiles);
        let old_in_place = sha == p.previous.sha256;
        if let Some(reason) = p.rollback.clone() {
            if new_in_place || old_in_place {
                return self.finish_rollback(&p, &reason).map(Recovery::RolledBack);
            }
        } else if new_in_place {
            // Finish the install's steps after the commit point.
            self.switch_profiles(&pointer, p.profiles.as_deref())?;
            let current = RunningConfig {
                version: p.version.clone(),
                sha256: p.sha256.clone(),
                applied_at_ms: p.applied_at_ms,
                source: Source::Push,
                status: ConfigStatus::PendingConfirm,
                reason: None,
                profiles: p.profiles.clone(),
                owed: None,
            };
            if self.read_current()?.as_ref() != Some(&current) {
                self.write_current(&current)?;
            }
            p.restarts = p.restarts.saturating_add(1);
            self.write_pending(&p)?;
            self.clean(Some(&p))?;
            return Ok(Recovery::Pending(pending_info(&p)));
        } else if old_in_place {
            // Died before the commit point: the old config stands, with its profiles. The
            // refusal is owed before the record that tells it goes.
            self.switch_profiles(&pointer, p.previous.profiles.as_deref())?;
            let owed = Owed::new(
                OwedStatus::Rejected,
                &p.version,
                &p.sha256,
                Some(INTERRUPTED),
            );
            match self.read_current()? {
                Some(mut c) if c.sha256 == sha => {
                    c.owed = Some(owed);
                    self.write_current(&c)?;
                }
                _ => self.record_local(&sha, now, &pointer, Some(owed))?,
            }
            self.remove_pending()?;
            self.clean(None)?;
            return Ok(Recovery::Interrupted { version: p.version });
        }
        // Neither: a local edit. It wins; the profiles stay as they are. Recorded (with the
        // report it owes) before the pending record goes.
        self.record_local(
            &sha,
            now,
            &pointer,
            Some(Owed::new(
                OwedStatus::RolledBack,
                &p.version,
                &p.sha256,
                Some(LOCAL_EDIT_AT_START),
            )),
        )?;
        self.remove_pending()?;
        self.clean(None)?;
        Ok(Recovery::LocalEdit {
            dropped_version: p.version,
        })
    }

    /// The pending push delivered: it becomes the running config for good.
    pub fn confirm(&self) -> Result<(), InstallError> {
        let p = self.read_pending()?.ok_or(InstallError::NotPending)?;
        if p.rollback.is_some() {
            return Err(InstallError::NotPending);
        }
        let sha = sha256_hex(&self.read_config()?);
        if sha != p.sha256 {
            return Err(InstallError::LocalEdit {
                path: self.config_path.clone(),
            });
        }
        self.remove_pending()?;
        self.step(Step::ConfirmPendingRemoved);
        self.write_current(&RunningConfig {
            version: p.version.clone(),
            sha256: p.sha256.clone(),
            applied_at_ms: p.applied_at_ms,
            source: Source::Push,
            status: ConfigStatus::Applied,
            reason: None,
            profiles: p.profiles.clone(),
            owed: Some(Owed::new(OwedStatus::Applied, &p.version, &p.sha256, None)),
        })?;
        self.step(Step::ConfirmCurrentWritten);
        self.clean(None)
    }

    /// Put the previous config and its profiles back (`reason` is recorded and reported).
    pub fn rollback(&self, reason: &str) -> Result<RolledBack, InstallError> {
        let mut p = self.read_pending()?.ok_or(InstallError::NotPending)?;
        let reason = match &p.rollback {
            Some(r) => r.clone(),
            None => {
                // A local edit is not rolled back (and not marked: `take_local_edit` hands
                // the pending push over to it).
                let sha = sha256_hex(&self.read_config()?);
                if sha != p.sha256 && sha != p.previous.sha256 {
                    return Err(InstallError::LocalEdit {
                        path: self.config_path.clone(),
                    });
                }
                p.rollback = Some(reason.to_string());
                self.write_pending(&p)?;
                reason.to_string()
            }
        };
        self.step(Step::RollbackMarked);
        self.finish_rollback(&p, &reason)
    }

    /// While the daemon runs (SIGHUP, or a rollback refused with `LocalEdit`): when a push is
    /// pending and the config file is no longer the pushed one, the local edit takes over, as
    /// `recover()` decides at start: the pending record is dropped, the file is recorded as
    /// `local`, the profiles stay as they are. Returns the dropped push's version, or None
    /// when nothing is pending, a rollback is under way, or the file is still the push.
    pub fn take_local_edit(&self, reason: &str) -> Result<Option<String>, InstallError> {
        let Some(p) = self.read_pending()? else {
            return Ok(None);
        };
        if p.rollback.is_some() {
            return Ok(None);
        }
        let sha = sha256_hex(&self.read_config()?);
        if sha == p.sha256 {
            return Ok(None);
        }
        let pointer = self.pointer()?;
        let owed = Owed::new(OwedStatus::RolledBack, &p.version, &p.sha256, Some(reason));
        self.record_local(&sha, crate::time::now_ms(), &pointer, Some(owed))?;
        self.remove_pending()?;
        self.clean(None)?;
        Ok(Some(p.version))
    }

    /// The running record, when it owes a `config/state` report (see `Owed`).
    pub fn owed(&self) -> Result<Option<RunningConfig>, InstallError> {
        Ok(self.read_current()?.filter(|c| c.owed.is_some()))
    }

    /// `owed`'s report is queued: clear it, unless the record changed since (then it owes
    /// another report, or none). True when it was cleared.
    pub fn settle(&self, owed: &Owed) -> Result<bool, InstallError> {
        match self.read_current()? {
            Some(mut c) if c.owed.as_ref() == Some(owed) => {
                c.owed = None;
                self.write_current(&c)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The running config as recorded, if any.
    pub fn running(&self) -> Result<Option<RunningConfig>, InstallError> {
        self.read_current()
    }

    /// The pending push, if any (without counting a start).
    pub fn pending(&self) -> Result<Option<PendingInfo>, InstallError> {
        Ok(self.read_pending()?.map(|p| pending_info(&p)))
    }

    /// The previous configs kept, oldest first.
    pub fn history(&self) -> Result<Vec<PathBuf>, InstallError> {
        let mut v: Vec<(u64, PathBuf)> = Vec::new();
        let dir = self.history_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("cannot list", &dir)(e)),
        };
        for e in rd {
            let e = e.map_err(io("cannot list", &dir))?;
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(seq) = history_seq(&name) {
                v.push((seq, e.path()));
            }
        }
        v.sort();
        Ok(v.into_iter().map(|(_, p)| p).collect())
    }

    fn finish_rollback(&self, p: &PendingRecord, reason: &str) -> Result<RolledBack, InstallError> {
        let sha = sha256_hex(&self.read_config()?);
        if sha != p.sha256 && sha != p.previous.sha256 {
            return Err(InstallError::LocalEdit {
                path: self.config_path.clone(),
            });
        }
        let hist = self.history_dir().join(&p.previous.history);
        let old = read_bounded(&hist, crate::config::MAX_CONFIG_BYTES)?;
        if sha256_hex(&old) != p.previous.sha256 {
            return Err(InstallError::Corrupt {
                path: hist,
                why: "the previous config's copy does not match its recorded sha256: cannot roll back".into(),
            });
        }
        if sha != p.previous.sha256 {
            self.replace_config(&old, Step::RollbackTempWritten)?;
        }
        self.step(Step::RollbackRenamed);
        let pointer = self.pointer()?;
        self.switch_profiles(&pointer, p.previous.profiles.as_deref())?;
        self.step(Step::RollbackProfilesSwitched);
        self.write_current(&RunningConfig {
            version: p.previous.version.clone(),
            sha256: p.previous.sha256.clone(),
            applied_at_ms: crate::time::now_ms(),
            source: Source::Rollback,
            status: ConfigStatus::RolledBack,
            reason: Some(reason.to_string()),
            profiles: p.previous.profiles.clone(),
            owed: Some(Owed::new(
                OwedStatus::RolledBack,
                &p.version,
                &p.sha256,
                Some(reason),
            )),
        })?;
        self.step(Step::RollbackCurrentWritten);
        self.remove_pending()?;
        self.step(Step::RollbackPendingRemoved);
        self.clean(None)?;
        Ok(RolledBack {
            version: p.previous.version.clone(),
            sha256: p.previous.sha256.clone(),
            dropped_version: p.version.clone(),
            reason: reason.to_string(),
        })
    }

    fn record_local(
        &self,
        sha: &str,
        now: i64,
        pointer: &Pointer,
        owed: Option<Owed>,
    ) -> Result<(), InstallError> {
        self.write_current(&RunningConfig {
            version: LOCAL_VERSION.to_string(),
            sha256: sha.to_string(),
            applied_at_ms: now,
            source: Source::Local,
            status: ConfigStatus::Applied,
            reason: None,
            profiles: pointer.id(),
            owed,
        })
    }

    // ---- files ----

    fn read_config(&self) -> Result<Vec<u8>, InstallError> {
        read_bounded(&self.config_path, crate::config::MAX_CONFIG_BYTES)
    }

    /// Replace the config file atomically, keeping its mode.
    fn replace_config(&self, bytes: &[u8], temp_step: Step) -> Result<(), InstallError> {
        let mode = std::fs::metadata(&self.config_path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o640);
        let tmp = self.config_temp();
        write_file(&tmp, bytes, mode)?;
        self.step(temp_step);
        rename_durably(&tmp, &self.config_path)
    }

    fn config_temp(&self) -> PathBuf {
        let name = self
            .config_path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "config".into());
        self.config_path
            .with_file_name(format!(".{name}.gasdtu-tmp"))
    }

    fn write_record<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), InstallError> {
        let json = serde_json::to_vec_pretty(value).map_err(|e| InstallError::Corrupt {
            path: path.to_path_buf(),
            why: format!("cannot encode: {e}"),
        })?;
        let tmp = path.with_extension("json.tmp");
        write_file(&tmp, &json, FILE_MODE)?;
        rename_durably(&tmp, path)
    }

    fn read_record<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, InstallError> {
        let bytes = match read_bounded(path, MAX_RECORD_BYTES) {
            Ok(b) => b,
            Err(InstallError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| InstallError::Corrupt {
                path: path.to_path_buf(),
                why: format!("not a valid record: {e}"),
            })
    }

    fn read_current(&self) -> Result<Option<RunningConfig>, InstallError> {
        self.read_record(&self.current_path())
    }
    fn write_current(&self, c: &RunningConfig) -> Result<(), InstallError> {
        self.write_record(&self.current_path(), c)
    }
    fn read_pending(&self) -> Result<Option<PendingRecord>, InstallError> {
        self.read_record(&self.pending_path())
    }
    fn write_pending(&self, p: &PendingRecord) -> Result<(), InstallError> {
        self.write_record(&self.pending_path(), p)
    }
    fn remove_pending(&self) -> Result<(), InstallError> {
        let path = self.pending_path();
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("cannot remove", &path)(e)),
        }
    }

    /// Copy the running config to `history/<seq>-<version>.toml`.
    fn write_history(&self, version: &str, text: &[u8]) -> Result<PathBuf, InstallError> {
        let next = self
            .history()?
            .iter()
            .filter_map(|p| history_seq(&file_name(p)))
            .max()
            .map_or(1, |s| s + 1);
        let path = self.history_dir().join(format!("{next:06}-{version}.toml"));
        let tmp = self.history_dir().join(".history.tmp");
        write_file(&tmp, text, FILE_MODE)?;
        rename_durably(&tmp, &path)?;
        Ok(path)
    }

    /// What `<state_dir>/profiles` is.
    fn pointer(&self) -> Result<Pointer, InstallError> {
        let link = self.link_path();
        match std::fs::symlink_metadata(&link) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Pointer::Absent),
            Err(e) => Err(io("cannot inspect", &link)(e)),
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&link).map_err(io("cannot read link", &link))?;
                let id = target
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .filter(|n| valid_set_id(n));
                match id {
                    Some(id) => Ok(Pointer::Set(id)),
                    None => Ok(Pointer::Unmanaged),
                }
            }
            Ok(_) => Ok(Pointer::Unmanaged),
        }
    }

    /// The profiles in force overlaid with the pushed ones: (set id, sorted files).
    fn overlay(
        &self,
        pointer: &Pointer,
        pushed: &[(String, String)],
    ) -> Result<(String, ProfileFiles), InstallError> {
        let mut files: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        if let Pointer::Set(id) = pointer {
            let dir = self.sets_dir().join(id);
            let rd = std::fs::read_dir(&dir).map_err(io("cannot list", &dir))?;
            for e in rd {
                let e = e.map_err(io("cannot list", &dir))?;
                let name = e.file_name().to_string_lossy().to_string();
                let Some(stem) = name.strip_suffix(".toml") else {
                    continue;
                };
                if files.len() >= MAX_PROFILES_IN_SET {
                    return Err(InstallError::Invalid(format!(
                        "more than {MAX_PROFILES_IN_SET} profiles would be installed"
                    )));
                }
                let bytes = read_bounded(&e.path(), crate::config::MAX_CONFIG_BYTES)?;
                files.insert(stem.to_string(), bytes);
            }
        }
        for (name, text) in pushed {
            files.insert(name.clone(), text.as_bytes().to_vec());
        }
        if files.len() > MAX_PROFILES_IN_SET {
            return Err(InstallError::Invalid(format!(
                "{} profiles would be installed: at most {MAX_PROFILES_IN_SET}",
                files.len()
            )));
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for (name, bytes) in &files {
            ctx.update(name.as_bytes());
            ctx.update(&[0]);
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        }
        let id = hex(&ctx.finish().as_ref()[..8]);
        Ok((id, files.into_iter().collect()))
    }

    /// Write a profile set under a temp name, then rename it into `profiles.d/<id>`.
    fn stage_set(&self, id: &str, files: &[(String, Vec<u8>)]) -> Result<(), InstallError> {
        let sets = self.sets_dir();
        let dir = sets.join(id);
        if dir.is_dir() {
            return Ok(()); // complete: only ever created by the rename below
        }
        let tmp = sets.join(format!(".tmp-{id}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io("cannot remove", &tmp))?;
        }
        std::fs::create_dir(&tmp).map_err(io("cannot create", &tmp))?;
        for (name, bytes) in files {
            write_file(&tmp.join(format!("{name}.toml")), bytes, PROFILE_MODE)?;
        }
        sync_dir(&tmp)?;
        rename_durably(&tmp, &dir)
    }

    /// Point `<state_dir>/profiles` at `target` (or remove the link), atomically. An
    /// unmanaged directory there is never touched.
    fn switch_profiles(&self, now: &Pointer, target: Option<&str>) -> Result<(), InstallError> {
        if *now == Pointer::Unmanaged || now.id().as_deref() == target {
            return Ok(());
        }
        let link = self.link_path();
        match target {
            None => {
                std::fs::remove_file(&link).map_err(io("cannot remove", &link))?;
                sync_dir(&self.state_dir)
            }
            Some(id) => {
                let tmp = self.state_dir.join(".profiles.tmp");
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(Path::new("profiles.d").join(id), &tmp)
                    .map_err(io("cannot create link", &tmp))?;
                rename_durably(&tmp, &link)
            }
        }
    }

    /// Temp files an interrupted step left behind.
    fn remove_temps(&self) {
        let _ = std::fs::remove_file(self.config_temp());
        let _ = std::fs::remove_file(self.state_dir.join(".profiles.tmp"));
        let _ = std::fs::remove_file(self.history_dir().join(".history.tmp"));
        let _ = std::fs::remove_file(self.current_path().with_extension("json.tmp"));
        let _ = std::fs::remove_file(self.pending_path().with_extension("json.tmp"));
    }

    /// Trim `history/` to `keep` (never the pending push's previous config) and remove
    /// profile sets nothing refers to.
    fn clean(&self, pending: Option<&PendingRecord>) -> Result<(), InstallError> {
        let pending = match pending {
            Some(p) => Some(p.clone()),
            None => self.read_pending()?,
        };
        let hist = self.history()?;
        let excess = hist.len().saturating_sub(self.keep);
        for path in hist.iter().take(excess) {
            if pending.as_ref().map(|p| p.previous.history.as_str()) == Some(&file_name(path)) {
                continue;
            }
            std::fs::remove_file(path).map_err(io("cannot remove", path))?;
        }
        if excess > 0 {
            sync_dir(&self.history_dir())?;
        }
        let mut keep: Vec<String> = self.pointer()?.id().into_iter().collect();
        if let Some(p) = &pending {
            keep.extend(p.profiles.clone());
            keep.extend(p.previous.profiles.clone());
        }
        let sets = self.sets_dir();
        let rd = std::fs::read_dir(&sets).map_err(io("cannot list", &sets))?;
        let mut removed = false;
        for e in rd {
            let e = e.map_err(io("cannot list", &sets))?;
            let name = e.file_name().to_string_lossy().to_string();
            if keep.contains(&name) {
                continue;
            }
            let path = e.path();
            std::fs::remove_dir_all(&path).map_err(io("cannot remove", &path))?;
            removed = true;
        }
        if removed {
            sync_dir(&sets)?;
        }
        Ok(())
    }
}

/// The reason reported for an install cut short before its commit point.
pub const INTERRUPTED: &str =
    "the install was interrupted (restart); the previous config stays in force";
/// The reason reported for a pending push that a local edit found at start ended.
pub const LOCAL_EDIT_AT_START: &str =
    "the config file was edited locally while the push was pending";

fn pending_info(p: &PendingRecord) -> PendingInfo {
    PendingInfo {
        version: p.version.clone(),
        sha256: p.sha256.clone(),
        applied_at_ms: p.applied_at_ms,
        confirm_by_ms: p.confirm_by_ms,
        window_ms: p.confirm_by_ms.saturating_sub(p.applied_at_ms).max(0) as u64,
        restarts: p.restarts,
        previous_version: p.previous.version.clone(),
    }
}

/// A version label: 1-64 of `[A-Za-z0-9._:+-]` (it becomes part of a file name).
pub fn valid_version(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:+-_".contains(&b))
        && !v.starts_with('.')
}

fn check_request(push: &InstallRequest) -> Result<(), InstallError> {
    if !valid_version(&push.version) || push.version == LOCAL_VERSION {
        return Err(InstallError::Invalid(format!(
            "version label {:?}: use 1 to 64 of A-Z a-z 0-9 . _ : + - (not {LOCAL_VERSION:?})",
            crate::config::escape(&push.version)
        )));
    }
    if push.profiles.len() > MAX_PUSHED_PROFILES {
        return Err(InstallError::Invalid(format!(
            "{} profiles: at most {MAX_PUSHED_PROFILES} per push",
            push.profiles.len()
        )));
    }
    for (name, _) in &push.profiles {
        let ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(InstallError::Invalid(format!(
                "profile name {:?}: use 1 to 64 of A-Z a-z 0-9 _ -",
                crate::config::escape(name)
            )));
        }
    }
    Ok(())
}

fn valid_set_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn history_seq(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".toml")?;
    let (seq, _) = stem.split_once('-')?;
    seq.parse().ok()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&super::sign::sha256(bytes))
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, InstallError> {
    crate::config::read_bounded(path, max).map_err(io("cannot read", path))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io("cannot create", path))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io("cannot set the mode of", path))?;
    f.write_all(bytes).map_err(io("cannot write", path))?;
    f.sync_all().map_err(io("cannot fsync", path))
}

fn rename_durably(from: &Path, to: &Path) -> Result<(), InstallError> {
    std::fs::rename(from, to).map_err(io("cannot rename into", to))?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io("cannot fsync directory", dir))
}
