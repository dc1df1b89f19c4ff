//! The durable store: one SQLite database `<state_dir>/gasdtu.db` (WAL, synchronous=FULL)
//! holding the readings history and the outbox, with the sequence-number reservation beside
//! it. It owns opening (integrity check, moving a corrupt file aside, migrations), commits of
//! sample batches, the `Outbox` the forwarder drains, the size/age bounds, clock re-stamping,
//! statistics and export. Schema and decisions: docs/store.md.
//!
//! Layout: `schema` (migration steps), `blob` (pure: the compact sample encoding), `clock`
//! (trust floor and re-stamp math), `seq` (the side-file reservation and where numbering
//! starts), `wal` (pure: committed transactions a damaged WAL would lose), `dict` (device and
//! point dictionaries), `access` (store files this user cannot write; root in the service's
//! directory), `sealing` (the `Outbox` impl; `sealed_entries`: the entries of one sealed
//! message, for the Sparkplug forwarder), `limits` (eviction), `space` (the size
//! cap clamped to the file system, the full-disk ballast), `counters` (O(1) statistics),
//! `export` (history read-out and the statistics type), `commands` (remote commands exactly
//! once, replies, history resend), `sqlite_heap` (SQLite's allocations from the Rust global
//! allocator, for the static builds).
//!
//! Thread-safety: `Store` is `Send + Sync`; one `std::sync::Mutex` guards the connection (every
//! method is one short synchronous transaction, so async callers use `spawn_blocking`; a
//! tokio mutex would buy nothing since nothing awaits while it is held). The live statistics
//! sit behind a second small mutex, taken after the connection's (never before), so `stats()`
//! never waits behind a commit. Other processes
//! (`gasdtu export`, `gasdtu queue`) open their own read-only connection; WAL lets them read
//! while the daemon writes.

pub mod access;
mod alarm_state;
mod blob;
mod blob_fast;
pub mod clock;
mod commands;
mod counters;
mod deferred;
mod dict;
mod export;
mod frozen;
mod ingest;
mod limits;
pub mod presealed;
mod schema;
mod sealed_entries;
mod sealing;
pub mod seq;
pub mod space;
pub mod sparkplug_meta;
pub mod sqlite_heap;
#[cfg(test)]
mod tests;
mod tx;
mod wal;

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use thiserror::Error;

pub use crate::alarm::AlarmWrites;
use crate::config::StoreConfig;
use crate::model::SampleBatch;
use crate::outbox::EntryKind;

pub use crate::outbox::ReplyTopic;
pub use clock::{ClockStamp, ClockState, MIN_TRUSTED_UNIX_MS};
pub use commands::{
    Begin, Resent, COMMAND_ID_MAX, COMMAND_JSON_MAX, COMMAND_ROWS_MAX, RESEND_RANGE_MAX_MS,
};
pub use export::{ExportFilter, StoreStats, StoredBatch};
pub use limits::Eviction;
pub use sparkplug_meta::BdSeqClaim;

use crate::time::rfc3339_ms;
use dict::Dict;

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "gasdtu.db";

/// Row status values of `entry.status`.
pub(crate) mod entry_state {
    pub const PENDING: i64 = 0;
    pub const SEALED: i64 = 1;
    pub const DELIVERED: i64 = 2;
    pub const HELD: i64 = 3;
}

#[derive(Debug, Error)]
pub enum StoreError {
    /// A file-system operation on the state directory failed (create, rename, side file).
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// SQLite failed (I/O error, corruption at run time, anything not classified below):
    /// retry later.
    #[error("database {}: {what}: {source}", path.display())]
    Sqlite {
        what: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The file system is full (SQLITE_FULL): nothing was written. Make room
    /// (`enforce_limits` evicts down to the clamped cap) and retry.
    #[error("database {}: {what}: the file system is full: {source}", path.display())]
    Full {
        what: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The database became read-only while running (SQLITE_READONLY, e.g. the file system was
    /// remounted read-only after I/O errors): retry slowly and alert; only an operator fixes it.
    #[error("database {}: {what}: the database is read-only now: {source}", path.display())]
    ReadOnly {
        what: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// Another connection held the lock past the busy timeout (e.g. a long `gasdtu export`
    /// of another process checkpointing): retry soon.
    #[error("database {}: {what}: locked by another connection past the busy timeout: {source}", path.display())]
    Busy {
        what: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// At open: the database or its directory cannot be written by this process (SQLite
    /// would silently open a write-protected file read-only). Refused at start.
    #[error("store {} is not writable: {why}; gasdtu must write its store (fix the permissions or the mount, or set gateway.state_dir to a writable directory)", path.display())]
    Unwritable { path: PathBuf, why: String },
    /// The database was written by a newer gasdtu (schema version above ours): left alone.
    #[error("database {}: schema version {found} is newer than this gasdtu understands ({known}); not touching it", path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// A database that cannot be read because it does not exist (read-only open).
    /// Store files this process may not write (e.g. left root-owned by a run as root).
    #[error("store files not writable by {user}: {files}; SQLite would open the database read-only and every commit would fail. Fix: {fix}")]
    NotWritableByUs {
        files: String,
        user: String,
        fix: String,
    },
    /// Root about to create store files in a directory another user (the service) owns.
    #[error("refusing to open the store as root in {}, which belongs to {owner}: the files root creates there would be unwritable for the service afterwards. Run as that user (runuser -u {run_as} -- gasdtu run ...), or pass --allow-root-store if root should own this store", dir.display())]
    RootInForeignDir {
        dir: PathBuf,
        owner: String,
        run_as: String,
    },
    #[error("database {} does not exist (is the state directory right?)", path.display())]
    Missing { path: PathBuf },
    /// A stored row could not be decoded.
    #[error("database {}: entry {id} is unreadable: {why}", path.display())]
    Decode { path: PathBuf, id: i64, why: String },
    /// A sealed message stored without its payload cannot be rebuilt from its entries.
    #[error("database {}: message {seq} cannot be rebuilt: {why}", path.display())]
    Unbuildable {
        path: PathBuf,
        seq: u64,
        why: String,
    },
    /// No sequence number may be issued (see `seq`).
    #[error(transparent)]
    Sequence(#[from] seq::SeqError),
    /// The export sink failed (e.g. the output file could not be written).
    #[error("export output: {0}")]
    Sink(std::io::Error),
    /// A remote command's input is out of bounds (id or op too long, result or event JSON
    /// above `COMMAND_JSON_MAX`, a resend range that is reversed or too long): nothing was
    /// written. Not retryable with the same input; answer the request with an error instead.
    #[error("{what}: {why}")]
    OutOfBounds { what: &'static str, why: String },
    /// `command_finish` for an id that is not running in this process (unknown, already done,
    /// or begun by an earlier process): nothing was written. A caller bug.
    #[error("command {id:?}: {why}")]
    CommandState { id: String, why: String },
}

/// A SQLite failure as the variant that says how to react to it.
pub(crate) fn classify(what: &'static str, path: &Path, source: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full { what, path, source },
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { what, path, source },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Busy { what, path, source }
        }
        _ => StoreError::Sqlite { what, path, source },
    }
}

/// What `Store::open` found and did; each is also queued upstream as an `event` entry
/// (except `Migrated`, which is only logged).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreEvent {
    /// No database existed: a new one was created.
    Created { path: PathBuf },
    /// The database failed its integrity check (or is not a database) and was moved aside.
    Replaced {
        path: PathBuf,
        moved_to: Vec<PathBuf>,
        reason: String,
    },
    /// The schema was upgraded.
    Migrated { from: i64, to: i64 },
    /// A fresh database starts numbering at the clock floor (see `seq`): no reservation file,
    /// or the floor is above the reservation.
    SeqFromClock { hwm: u64, reserved: Option<u64> },
    /// The sequence reservation file or the database's `seq_hwm` was missing, unreadable, out
    /// of range or behind the database; numbering continues at `next` ("never below anything
    /// ever published") and the side file was rewritten.
    SeqRepaired {
        source: &'static str,
        problem: &'static str,
        found: String,
        next: u64,
    },
    /// A corrupt database was moved aside: what it held that had not been delivered, counted
    /// as far as the moved-aside file could be read (`readings: None`: not readable at all).
    LostWithDatabase {
        moved_to: PathBuf,
        readings: Option<u64>,
        /// Unsent alarms and events.
        entries: Option<u64>,
        /// Every row was read (false: counted up to the first unreadable page).
        complete: bool,
        detail: Option<String>,
    },
    /// The WAL held committed transactions after a damaged frame: SQLite discards them when
    /// it opens the database (quick_check still passes). A copy of the WAL is kept.
    WalDiscarded {
        frames: u64,
        commits: u64,
        /// Commits SQLite keeps.
        kept_commits: u64,
        header_damaged: bool,
        copy: Option<PathBuf>,
    },
    /// The configured size cap is more than the state directory's file system can hold: the
    /// store applies `effective` instead (see `space`; recomputed at every `enforce_limits`).
    CapClamped {
        configured: u64,
        effective: u64,
        /// Free bytes on the file system at open.
        free: u64,
    },
}

impl StoreEvent {
    /// The documented JSON form of the event (the envelope adds gateway id and sequence).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            StoreEvent::Created { path } => {
                json!({"event": "store_created", "path": path.display().to_string()})
            }
            StoreEvent::Replaced {
                path,
                moved_to,
                reason,
            } => json!({
                "event": "store_replaced",
                "path": path.display().to_string(),
                "moved_to": moved_to.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "reason": reason,
            }),
            StoreEvent::Migrated { from, to } => {
                json!({"event": "store_migrated", "from": from, "to": to})
            }
            StoreEvent::SeqFromClock { hwm, reserved } => json!({
                "event": "sequence_restarted",
                "after": hwm,
                "reservation": reserved,
                "reason": match reserved {
                    None => "fresh database, no usable sequence reservation file: numbering restarts at the clock floor",
                    Some(_) => "fresh database: the clock floor is above the sequence reservation",
                },
            }),
            StoreEvent::SeqRepaired {
                source,
                problem,
                found,
                next,
            } => json!({
                "event": "sequence_repaired",
                "source": source,
                "problem": problem,
                "found": found,
                "next": next,
                "reason": format!("{source} {problem}: found {found}, starting at {next}"),
            }),
            StoreEvent::LostWithDatabase {
                moved_to,
                readings,
                entries,
                complete,
                detail,
            } => json!({
                "event": "data_loss",
                "reason": "database_corrupt",
                "readings": readings,
                "entries": entries,
                "complete": complete,
                "moved_to": moved_to.display().to_string(),
                "detail": detail,
            }),
            StoreEvent::WalDiscarded {
                frames,
                commits,
                kept_commits,
                header_damaged,
                copy,
            } => json!({
                "event": "data_loss",
                "reason": "wal_corrupt",
                "readings": null,
                "commits": commits,
                "frames": frames,
                "kept_commits": kept_commits,
                "header_damaged": header_damaged,
                "wal_copy": copy.as_ref().map(|p| p.display().to_string()),
            }),
            StoreEvent::CapClamped {
                configured,
                effective,
                free,
            } => json!({
                "event": "store_cap_clamped",
                "configured": configured,
                "effective": effective,
                "free": free,
            }),
        }
    }
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitInfo {
    /// Entry ids, batches first (in the order given), then the extra entries.
    pub entry_ids: Vec<i64>,
    pub readings: u64,
    /// Batches stored held back because their read time is not trusted yet.
    pub held: usize,
    /// Earlier held batches released (re-stamped) by this commit's trusted clock.
    pub released: usize,
    /// Messages sealed inside this commit for an armed forwarder (`presealed`).
    pub presealed: usize,
    /// The commit's batches were all that was pending: an ingest seal would look at them as
    /// built in memory (`presealed::Fresh`), not read back.
    pub fresh_look: bool,
}

pub struct Store {
    inner: Mutex<Inner>,
    /// Live statistics (see `counters`): replaced after each committed mutation, read by
    /// `stats()` without the connection's lock. Lock order: `inner` before `counters`.
    counters: Mutex<StoreStats>,
    /// False for a read-only store (another process writes): `stats()` scans instead.
    live: bool,
    /// The database's page size (`NEW_DB_PAGE_SIZE` for databases this version creates; older
    /// ones keep theirs, usually 4096).
    page_size: u64,
    /// The size cap in force: `cfg.max_bytes` clamped to the file system (`space`).
    cap: AtomicU64,
    path: PathBuf,
    reserve_path: PathBuf,
    cfg: StoreConfig,
    /// This opening's generation (see `commands`): a `running` command row of another
    /// generation was interrupted by the end of an earlier process.
    generation: i64,
    /// Acknowledgements the forwarder noted without waiting (`Outbox::note_acks`), recorded
    /// as `ack_many` by the store's next use of its connection (`deferred::Noted`). Its own
    /// lock, never held across SQLite: lock order `inner` before `noted`.
    noted: Mutex<deferred::Noted>,
}

struct Inner {
    conn: Connection,
    dict: Dict,
    /// Highest sequence number issued (mirrors meta.seq_hwm).
    seq_hwm: u64,
    /// Reservation in the side file (0 when unknown).
    reserved: u64,
    /// Base of the untrusted clock last seen in this boot (boot id, base).
    untrusted_base: Option<(Arc<str>, i64)>,
    /// Held rows may exist (checked at open, set when holding).
    held_rows: bool,
    /// WAL auto-checkpoint pages in force (follows the size cap).
    wal_pages: u64,
    /// Acknowledgements not written yet (see `deferred`).
    deferred: deferred::Deferred,
    /// The forwarder's sealer for sealing inside the ingest commit (`presealed`).
    sealer: Option<Arc<dyn crate::outbox::IngestSealer>>,
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Open (or create) the store in `state_dir`. See the module doc and docs/store.md.
    pub fn open(
        state_dir: &Path,
        cfg: &StoreConfig,
    ) -> Result<(Store, Vec<StoreEvent>), StoreError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(state_dir)
            .map_err(|source| StoreError::Io {
                what: "cannot create the state directory",
                path: state_dir.to_path_buf(),
                source,
            })?;
        let path = state_dir.join(DB_FILE);
        let reserve_path = state_dir.join(seq::FILE_NAME);
        let mut events = Vec::new();
        // WAL needs `-wal` and `-shm` beside the database: the directory must be writable.
        probe_dir_writable(state_dir)?;
        // A root-owned database (a run by hand as root) would open read-only: say whose it is.
        access::check_files_writable(state_dir)?;
        let cap = match space::fs_space(state_dir) {
            Ok(sp) => {
                let own = db_and_wal_bytes(&path) + space::ballast_bytes(state_dir);
                let cap = space::effective_cap(cfg.max_bytes, own, sp);
                if cap < cfg.max_bytes {
                    // Returned as an event: the caller logs it and sends it upstream.
                    events.push(StoreEvent::CapClamped {
                        configured: cfg.max_bytes,
                        effective: cap,
                        free: sp.avail,
                    });
                }
                cap
            }
            Err(e) => {
                tracing::warn!(dir = %state_dir.display(), error = %e,
                    "cannot measure the state directory's file system; the configured size cap stands");
                cfg.max_bytes
            }
        };

        if let Err(e) = space::ensure_ballast(state_dir) {
            tracing::warn!(dir = %state_dir.display(), error = %e,
                "cannot write the store's ballast file (room to evict on a full disk)");
        }

        let existed = path.exists();
        // Before anything opens the database: SQLite's WAL recovery would silently drop
        // committed transactions behind a damaged frame. (Reported once: the integrity
        // check's connection, the last one to close, checkpoints and removes the WAL.)
        if existed {
            events.extend(check_wal(&path));
        }
        // seq_hwm of a database moved aside now (a source for the sequence numbers).
        let mut prior_hwm = None;
        if existed {
            if let Some(reason) = check_integrity(&path)? {
                let moved_to = move_aside(&path)?;
                tracing::error!(path = %path.display(), ?moved_to, %reason,
                    "database failed its integrity check: moved aside, starting a fresh one");
                let lost = moved_to.first().map(|m| (m.clone(), salvage(m)));
                events.push(StoreEvent::Replaced {
                    path: path.clone(),
                    moved_to,
                    reason,
                });
                if let Some((moved, sv)) = lost {
                    tracing::error!(moved = %moved.display(), readings = ?sv.readings,
                        entries = ?sv.entries, complete = sv.complete,
                        "undelivered data left in the moved-aside database");
                    prior_hwm = sv.seq_hwm;
                    events.push(StoreEvent::LostWithDatabase {
                        moved_to: moved,
                        readings: sv.readings,
                        entries: sv.entries,
                        complete: sv.complete,
                        detail: sv.detail,
                    });
                }
            }
        }
        let fresh = !path.exists();
        if fresh && !existed {
            events.push(StoreEvent::Created { path: path.clone() });
        }
        // State files are 0600: SQLite gives -wal and -shm the database file's mode, so
        // create it (or fix an existing one) before SQLite opens it.
        if fresh {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
                .map_err(|source| StoreError::Io {
                    what: "cannot create the database file",
                    path: path.clone(),
                    source,
                })?;
        }
        for suffix in ["", "-wal", "-shm"] {
            restrict_mode(&sibling(&path, suffix));
        }
        restrict_mode(&reserve_path);
        restrict_mode(&state_dir.join(space::BALLAST_FILE));

        let sql = |what: &'static str| {
            let path = path.clone();
            move |source| classify(what, &path, source)
        };
        let mut conn = Connection::open(&path).map_err(sql("cannot open"))?;
        // SQLite silently opens a file it may not write read-only; then every commit would
        // fail at run time. Refuse now, saying why.
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(sql("cannot open"))?
        {
            let why = match std::fs::OpenOptions::new().write(true).open(&path) {
                Err(e) => format!("the database file cannot be opened for writing: {e}"),
                Ok(_) => "SQLite opened the database file read-only".to_string(),
            };
            return Err(StoreError::Unwritable { path, why });
        }
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql("busy_timeout"))?;
        if fresh {
            // Must precede the first table; lets a lowered size cap shrink the file.
            conn.execute_batch(&format!(
                "PRAGMA page_size = {NEW_DB_PAGE_SIZE}; PRAGMA auto_vacuum = INCREMENTAL"
            ))
            .map_err(sql("auto_vacuum"))?;
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql("journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Sqlite {
                what: "journal_mode",
                path: path.clone(),
                source: rusqlite::Error::InvalidParameterName(format!(
                    "WAL refused, journal mode is {mode}"
                )),
            });
        }
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sql("page_size"))?;
        let page_size = (page_size.max(512)) as u64;
        let wal_pages = wal_pages(cap, page_size);
        conn.execute_batch(&format!(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA wal_autocheckpoint = {wal_pages}; PRAGMA journal_size_limit = {};",
            wal_pages * page_size
        ))
        .map_err(sql("pragmas"))?;

        // At most 512 KiB of page cache for this connection (SQLite's default is 2 MiB, which a
        // long-running daemon fills and keeps resident): the pages a cycle touches (the tails
        // of entry/message and the index roots) fit many times over, and the OS page cache
        // backs the rest (bench-results/cpu_profile.txt).
        conn.execute_batch("PRAGMA cache_size = -512")
            .map_err(sql("cache_size"))?;
        tune_statements(&conn).map_err(sql("statement cache"))?;
        let found = schema::user_version(&conn).map_err(sql("user_version"))?;
        if found > schema::VERSION {
            return Err(StoreError::TooNew {
                path,
                found,
                known: schema::VERSION,
            });
        }
        schema::migrate_to(&mut conn, schema::VERSION).map_err(sql("migration"))?;
        if found != 0 && found < schema::VERSION {
            tracing::info!(from = found, to = schema::VERSION, "store schema migrated");
            events.push(StoreEvent::Migrated {
                from: found,
                to: schema::VERSION,
            });
        }

        // Undelivered readings of a moved-aside database count as dropped.
        for e in &events {
            if let StoreEvent::LostWithDatabase {
                readings: Some(n), ..
            } = e
            {
                add_meta(&conn, "dropped_unsent", *n as i64).map_err(sql("dropped_unsent"))?;
            }
        }

        // Sequence numbers: never below anything ever published (see `seq`).
        let reserve = seq::read(&reserve_path);
        let db_hwm = get_meta(&conn, "seq_hwm").map_err(sql("read seq_hwm"))?;
        let db_max_message: Option<i64> = conn
            .query_row("SELECT MAX(seq) FROM message", [], |r| r.get(0))
            .map_err(sql("highest sealed message"))?;
        let start = seq::start(&seq::Sources {
            db_hwm,
            db_max_message,
            reserve: reserve.clone(),
            prior_hwm,
            now_ms: crate::time::now_ms(),
        });
        let hwm = start.hwm;
        for f in &start.findings {
            tracing::warn!(source = f.source, problem = f.problem.as_str(), found = %f.found,
                next = hwm + 1, "sequence numbering repaired");
            events.push(StoreEvent::SeqRepaired {
                source: f.source,
                problem: f.problem.as_str(),
                found: f.found.clone(),
                next: hwm + 1,
            });
        }
        if db_hwm.is_none() && start.from_clock && start.findings.is_empty() {
            events.push(StoreEvent::SeqFromClock {
                hwm,
                reserved: match reserve {
                    seq::Reserve::Value(v) => Some(v),
                    _ => None,
                },
            });
        }
        if db_hwm != Some(hwm as i64) {
            set_meta(&conn, "seq_hwm", hwm as i64).map_err(sql("write seq_hwm"))?;
        }
        let reserved = match start.reserved {
            Some(r) => r,
            None => {
                let r = (hwm + seq::BLOCK).min(seq::MAX_SEQ);
                match seq::write(&reserve_path, r) {
                    Ok(()) => r,
                    Err(e) => {
                        // Not fatal: acquisition goes on; `seal` retries the write (and fails
                        // with this error) before it issues any number.
                        tracing::warn!(path = %reserve_path.display(), error = %e,
                            "cannot write the sequence reservation; sealing will retry");
                        0
                    }
                }
            }
        };

        let held_rows: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM entry WHERE status = 3)",
                [],
                |r| r.get(0),
            )
            .map_err(sql("held rows"))?;

        // The one full scan: from here on every mutation keeps the statistics up to date.
        let counters = counters::scan(&conn, hwm).map_err(sql("statistics"))?;

        let store = Store {
            inner: Mutex::new(Inner {
                conn,
                dict: Dict::default(),
                seq_hwm: hwm,
                reserved,
                untrusted_base: None,
                held_rows,
                wal_pages,
                deferred: Default::default(),
                sealer: None,
            }),
            counters: Mutex::new(counters),
            live: true,
            page_size,
            cap: AtomicU64::new(cap),
            path,
            reserve_path,
            cfg: cfg.clone(),
            generation: commands::new_generation(),
            noted: Default::default(),
        };
        // Tell upstream (through the outbox) what happened to the store.
        let upstream: Vec<(EntryKind, serde_json::Value)> = events
            .iter()
            .filter(|e| !matches!(e, StoreEvent::Migrated { .. }))
            .map(|e| (EntryKind::Event, e.to_json()))
            .collect();
        if !upstream.is_empty() {
            store.commit(&[], &upstream, &ClockStamp::now())?;
        }
        Ok((store, events))
    }

    /// Open an existing store read-only (for `gasdtu export`/`queue` while the daemon runs).
    pub fn open_read_only(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::Missing { path });
        }
        let sql = |what: &'static str| {
            let path = path.clone();
            move |source| StoreError::Sqlite {
                what,
                path: path.clone(),
                source,
            }
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql("cannot open read-only"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql("busy_timeout"))?;
        let found = schema::user_version(&conn).map_err(sql("user_version"))?;
        if found > schema::VERSION {
            return Err(StoreError::TooNew {
                path,
                found,
                known: schema::VERSION,
            });
        }
        let hwm = if found == 0 {
            0
        } else {
            get_meta(&conn, "seq_hwm")
                .map_err(sql("read seq_hwm"))?
                .unwrap_or(0) as u64
        };
        Ok(Store {
            inner: Mutex::new(Inner {
                conn,
                dict: Dict::default(),
                seq_hwm: hwm,
                reserved: 0,
                untrusted_base: None,
                held_rows: false,
                wal_pages: 0,
                deferred: Default::default(),
                sealer: None,
            }),
            counters: Mutex::new(StoreStats::default()),
            live: false,
            page_size: 4096,
            cap: AtomicU64::new(StoreConfig::default().max_bytes),
            reserve_path: state_dir.join(seq::FILE_NAME),
            path,
            cfg: StoreConfig::default(),
            generation: commands::new_generation(),
            noted: Default::default(),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size cap in force: the configured `max_bytes` clamped to what the file system can
    /// hold (as of open or the last `enforce_limits`).
    pub fn max_bytes(&self) -> u64 {
        self.cap.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic inside a method drops its transaction (rolled back), so the connection is
        // consistent even if the mutex was poisoned.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The statistics as of the last committed mutation, as the start of the next ones.
    /// Call with the connection's lock held (so nothing else mutates meanwhile).
    fn next_stats(&self) -> counters::Next {
        counters::Next::new(
            self.counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Publish statistics computed by a transaction that committed.
    fn publish_stats(&self, next: counters::Next) {
        *self.counters.lock().unwrap_or_else(|e| e.into_inner()) = next.s;
    }

    fn sql(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| classify(what, &self.path, source)
    }

    /// In ONE transaction: store `batches` (history, and pending in the outbox unless their
    /// read time is not trusted yet) and the `extra` alarm/event entries; release (re-stamp)
    /// held batches if `stamp` is trusted. `stamp` is the clocks at this moment
    /// (`ClockStamp::now()`). Nothing sees the batches before this returns Ok.
    pub fn commit(
        &self,
        batches: &[SampleBatch],
        extra: &[(EntryKind, serde_json::Value)],
        stamp: &ClockStamp,
    ) -> Result<CommitInfo, StoreError> {
        self.commit_all(&[], batches, extra, &AlarmWrites::default(), stamp)
    }

    /// `commit`, plus `history`: raw batches of devices that report slower than they poll (or
    /// by exception), stored as delivered history (status, export, alarms) and never sent;
    /// what goes upstream for them is in `batches` (aggregates). Entry ids: `batches`, then
    /// `history`, then `extra`. A history batch read before the clock was trusted is held like
    /// any other and, once re-stamped, sent as polled (documented edge).
    pub fn commit_routed(
        &self,
        history: &[SampleBatch],
        batches: &[SampleBatch],
        extra: &[(EntryKind, serde_json::Value)],
        stamp: &ClockStamp,
    ) -> Result<CommitInfo, StoreError> {
        self.commit_all(history, batches, extra, &AlarmWrites::default(), stamp)
    }

    /// `commit` plus the alarm state rows that changed with these batches (issue 4): the
    /// batches, their alarm transitions (`extra`) and the new alarm states are ONE
    /// transaction, so a restart neither repeats a raise nor forgets a clear.
    pub fn commit_with_alarms(
        &self,
        batches: &[SampleBatch],
        extra: &[(EntryKind, serde_json::Value)],
        alarms: &AlarmWrites,
        stamp: &ClockStamp,
    ) -> Result<CommitInfo, StoreError> {
        self.commit_all(&[], batches, extra, alarms, stamp)
    }

    /// Everything one consumer group commits, in ONE transaction: history-only batches, batches
    /// for the outbox, alarm transitions and events (`extra`) and the alarm state rows.
    pub fn commit_all(
        &self,
        history: &[SampleBatch],
        batches: &[SampleBatch],
        extra: &[(EntryKind, serde_json::Value)],
        alarms: &AlarmWrites,
        stamp: &ClockStamp,
    ) -> Result<CommitInfo, StoreError> {
        let mut g = self.lock();
        // PUBACKs noted since the last cycle ride on this trip to the blocking pool.
        self.absorb_noted_in(&mut g);
        let r = self.commit_locked(&mut g, history, batches, extra, alarms, stamp);
        if r.is_err() {
            // Dictionary rows inserted by the failed transaction are gone.
            g.dict.clear();
        }
        r
    }

    /// Cheap durability probe for tests and `status`: the pragmas in force on this connection.
    pub fn pragmas(&self) -> Result<(String, i64, i64), StoreError> {
        let g = self.lock();
        let mode: String = g
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(self.sql("journal_mode"))?;
        let sync: i64 = g
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(self.sql("synchronous"))?;
        let fk: i64 = g
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .map_err(self.sql("foreign_keys"))?;
        Ok((mode, sync, fk))
    }
}

/// Mode of every file the store creates (database, -wal/-shm through SQLite, side file,
/// ballast, moved-aside copies): owner only.
pub const FILE_MODE: u32 = 0o600;

/// Mode of the state directory when the store creates it.
pub const DIR_MODE: u32 = 0o700;

/// `<path><suffix>` (e.g. the database's `-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.to_path_buf().into_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

/// Set an existing file's mode to `FILE_MODE` (missing files are skipped; a failure, e.g. a
/// file owned by another user, is only logged).
fn restrict_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o777 != FILE_MODE => {
            if let Err(e) =
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot restrict the file's mode to 0600");
            }
        }
        _ => {}
    }
}

/// Size of a database file plus its WAL (0 for missing files).
fn db_and_wal_bytes(path: &Path) -> u64 {
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.to_path_buf().into_os_string();
    wal.push("-wal");
    len(path) + len(Path::new(&wal))
}

/// Page size of a new database: 512 bytes (SQLite's smallest), so that a commit's WAL frames
/// (page + 24 bytes) carry little besides what changed and pack densely into the 4 KiB pages
/// the flash is written in (docs/store.md, "Flash wear": measured against 1 KiB and 4 KiB).
pub const NEW_DB_PAGE_SIZE: u64 = 512;

/// Prepared statements stay prepared across cycles (bench-results/cpu_profile.txt: 6.6 % of
/// the daemon's CPU went to re-preparing them).
/// - Room for every constant statement of a cycle (rusqlite keeps 16 by default; the write,
///   seal, ack, pending, counter and meta statements of one cycle are more than that).
/// - The query planner stability guarantee: without it SQLite ≥ 3.47 marks a bound `LIMIT ?`
///   (and a few other bindings) as "re-prepare when rebound", so `pending`'s statements were
///   compiled again at every call (their room differs per call). No statement here depends on
///   a bound value for its plan (no STAT4 statistics, no `LIKE ?`, no partial index matched
///   against a bound value), so the plans are the same.
pub(crate) const STATEMENT_CACHE: usize = 64;

fn tune_statements(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// WAL pages before an automatic checkpoint: 4,096,000 bytes of pages (SQLite's default of
/// 1000 pages at 4 KiB) unless the size cap is small, then an eighth of the cap (at least
/// 64 KiB).
fn wal_pages(max_bytes: u64, page_size: u64) -> u64 {
    (max_bytes / 8).clamp(16 * 4096, 1000 * 4096) / page_size.max(512)
}

fn insert_json(
    tx: &Connection,
    kind: EntryKind,
    json: &serde_json::Value,
    created_ms: i64,
) -> rusqlite::Result<i64> {
    let reply_topic = match kind {
        EntryKind::Reply(t) => Some(t.code()),
        _ => None,
    };
    tx.prepare_cached(
        "INSERT INTO entry (kind, status, created_ms, read_ms, readings, clock, body, reply_topic) \
         VALUES (?1, 0, ?2, ?2, 0, 0, ?3, ?4)",
    )?
    .execute(rusqlite::params![
        kind.code(),
        created_ms,
        json.to_string().into_bytes(),
        reply_topic
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Release held rows with a trusted stamp: this boot's exactly, earlier boots' by estimate
/// (plus one event per estimated boot). Returns the number of rows released.
fn release_held(
    tx: &Connection,
    stamp: &ClockStamp,
    next: &mut counters::Next,
) -> rusqlite::Result<usize> {
    let base = stamp.base();
    let (count, lo, hi): (i64, Option<i64>, Option<i64>) = tx.query_row(
        "SELECT COUNT(*), MIN(read_ms + (?1 - clock_base)), MAX(read_ms + (?1 - clock_base)) \
         FROM entry WHERE status = 3 AND boot_id = ?2",
        rusqlite::params![base, &*stamp.boot_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    next.release(count as u64, lo, hi);
    let mut n = tx.execute(
        "UPDATE entry SET status = 0, clock = 2, read_ms = read_ms + (?1 - clock_base), \
         slot_ms = slot_ms + (?1 - clock_base), created_ms = created_ms + (?1 - clock_base), \
         boot_id = NULL, clock_base = NULL WHERE status = 3 AND boot_id = ?2",
        rusqlite::params![base, &*stamp.boot_id],
    )?;
    let orphans: Vec<(String, i64)> = tx
        .prepare(
            "SELECT boot_id, MAX(created_ms - clock_base) FROM entry WHERE status = 3 \
             GROUP BY boot_id ORDER BY MAX(id) DESC",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let monos: Vec<i64> = orphans.iter().map(|o| o.1).collect();
    let bases = clock::estimate_orphan_bases(base, &monos);
    for ((boot, _), est) in orphans.iter().zip(bases) {
        let (readings, from, to, count): (i64, i64, i64, i64) = tx.query_row(
            "SELECT SUM(readings), MIN(read_ms + (?1 - clock_base)), MAX(read_ms + (?1 - clock_base)), \
             COUNT(*) FROM entry WHERE status = 3 AND boot_id = ?2",
            rusqlite::params![est, boot],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        next.release(count as u64, Some(from), Some(to));
        n += tx.execute(
            "UPDATE entry SET status = 0, clock = 3, read_ms = read_ms + (?1 - clock_base), \
             slot_ms = slot_ms + (?1 - clock_base), created_ms = created_ms + (?1 - clock_base), \
             boot_id = NULL, clock_base = NULL WHERE status = 3 AND boot_id = ?2",
            rusqlite::params![est, boot],
        )?;
        let ev = serde_json::json!({
            "event": "clock_estimated",
            "boot_id": boot,
            "readings": readings,
            "from": rfc3339_ms(from),
            "to": rfc3339_ms(to),
            "reason": "read in an earlier boot before the clock was set; times are an upper-bound estimate (the boot is assumed to have ended when the next one began)",
        });
        insert_json(tx, EntryKind::Event, &ev, stamp.wall_ms)?;
        next.insert_json();
    }
    Ok(n)
}

pub(crate) fn get_meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub(crate) fn set_meta(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(rusqlite::params![key, value])?;
    Ok(())
}

pub(crate) fn add_meta(conn: &Connection, key: &str, delta: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
    )?
    .execute(rusqlite::params![key, delta])?;
    Ok(())
}

/// Create (and remove) a file in the state directory to prove this process may create files
/// there (`-wal`, `-shm`, the sequence side file). Works for root too: a read-only mount
/// refuses root as well.
fn probe_dir_writable(dir: &Path) -> Result<(), StoreError> {
    let probe = dir.join(".gasdtu-write-probe");
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&probe)
        .and_then(|f| {
            drop(f);
            std::fs::remove_file(&probe)
        });
    r.map_err(|e| StoreError::Unwritable {
        path: dir.to_path_buf(),
        why: format!("cannot create files in the state directory (WAL needs -wal and -shm beside the database): {e}"),
    })
}

/// `Ok(Some(reason))` if the file at `path` is corrupt or not a database; `Err` if it could
/// not be checked for another reason (locked, permissions): then it is left alone.
fn check_integrity(path: &Path) -> Result<Option<String>, StoreError> {
    use rusqlite::ErrorCode;
    let classify = |e: rusqlite::Error| -> Result<Option<String>, StoreError> {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Ok(Some(e.to_string())),
            _ => Err(StoreError::Sqlite {
                what: "integrity check",
                path: path.to_path_buf(),
                source: e,
            }),
        }
    };
    let conn = match Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(c) => c,
        Err(e) => return classify(e),
    };
    if let Err(e) = conn.busy_timeout(BUSY_TIMEOUT) {
        return classify(e);
    }
    let rows: rusqlite::Result<Vec<String>> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    match rows {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(None),
        Ok(rows) => Ok(Some(format!(
            "quick_check: {}",
            rows.into_iter().take(5).collect::<Vec<_>>().join("; ")
        ))),
        Err(e) => classify(e),
    }
}

/// Move the database and its -wal/-shm to `<name>.corrupt-<UTC time>[-n]<suffix>`.
fn move_aside(path: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let stamp = crate::time::file_stamp(crate::time::now_ms());
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| DB_FILE.to_string());
    let mut target = format!("{name}.corrupt-{stamp}");
    let mut n = 1;
    while dir.join(&target).exists() {
        target = format!("{name}.corrupt-{stamp}-{n}");
        n += 1;
    }
    let mut moved = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let from = dir.join(format!("{name}{suffix}"));
        if from.exists() {
            let to = dir.join(format!("{target}{suffix}"));
            std::fs::rename(&from, &to).map_err(|source| StoreError::Io {
                what: "cannot move the corrupt database aside",
                path: from.clone(),
                source,
            })?;
            restrict_mode(&to);
            moved.push(to);
        }
    }
    seq::sync_dir(dir).map_err(|source| StoreError::Io {
        what: "cannot sync the state directory",
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(moved)
}

/// Longest `salvage` may take on a damaged file before it is interrupted.
const SALVAGE_DEADLINE: Duration = Duration::from_secs(5);

/// What a moved-aside database still tells.
#[derive(Debug, Default)]
struct Salvage {
    readings: Option<u64>,
    entries: Option<u64>,
    complete: bool,
    detail: Option<String>,
    seq_hwm: Option<i64>,
}

/// Count what a moved-aside database held that was not delivered (pending, sealed and held
/// rows), as far as it can be read: read-only (the database file and its WAL are never
/// written; SQLite may rebuild the copy's -shm index), then ignoring its WAL if that fails.
/// Every error is caught; a watchdog thread interrupts SQLite after `SALVAGE_DEADLINE`, so a
/// damaged (or huge) file cannot hang `open`: what was counted until then is reported.
fn salvage(db: &Path) -> Salvage {
    let uri = |immutable: bool| {
        let mut u = String::from("file:");
        for c in db.to_string_lossy().chars() {
            match c {
                '%' => u.push_str("%25"),
                '?' => u.push_str("%3f"),
                '#' => u.push_str("%23"),
                c => u.push(c),
            }
        }
        u.push_str(if immutable {
            "?immutable=1"
        } else {
            "?mode=ro"
        });
        u
    };
    let mut last = Salvage {
        detail: Some("not opened".into()),
        ..Salvage::default()
    };
    for immutable in [false, true] {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match Connection::open_with_flags(uri(immutable), flags) {
            Ok(c) => c,
            Err(e) => {
                last.detail = Some(format!("cannot open: {e}"));
                continue;
            }
        };
        let handle = conn.get_interrupt_handle();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                wait.recv_timeout(SALVAGE_DEADLINE)
            {
                handle.interrupt();
            }
        });
        let mut sv = salvage_count(&conn);
        drop(done);
        let _ = watchdog.join();
        if sv.readings.is_some() {
            if immutable {
                let why = last.detail.take().unwrap_or_default();
                sv.detail = Some(match sv.detail {
                    Some(d) => format!("{d}; counted without its WAL ({why})"),
                    None => format!("counted without its WAL ({why})"),
                });
            }
            return sv;
        }
        last = sv;
    }
    last
}

fn salvage_count(conn: &Connection) -> Salvage {
    let mut sv = Salvage {
        seq_hwm: get_meta(conn, "seq_hwm").ok().flatten(),
        ..Salvage::default()
    };
    let mut stmt = match conn.prepare("SELECT kind, readings FROM entry WHERE status IN (0, 1, 3)")
    {
        Ok(s) => s,
        Err(e) => {
            sv.detail = Some(format!("unreadable: {e}"));
            return sv;
        }
    };
    let mut rows = match stmt.query([]) {
        Ok(r) => r,
        Err(e) => {
            sv.detail = Some(format!("unreadable: {e}"));
            return sv;
        }
    };
    let (mut readings, mut entries) = (0u64, 0u64);
    sv.complete = true;
    loop {
        match rows.next() {
            Ok(Some(r)) => {
                let kind: i64 = r.get(0).unwrap_or(-1);
                let n: i64 = r.get(1).unwrap_or(0);
                if kind == 2 {
                    readings = readings.saturating_add(n.max(0) as u64);
                } else {
                    entries += 1;
                }
            }
            Ok(None) => break,
            Err(e) => {
                sv.complete = false;
                sv.detail = Some(format!("counted up to an unreadable row: {e}"));
                break;
            }
        }
    }
    sv.readings = Some(readings);
    sv.entries = Some(entries);
    sv
}

/// Page size from a database file's header (`None` if unreadable).
fn db_page_size(path: &Path) -> Option<u32> {
    use std::io::Read;
    let mut h = [0u8; 18];
    std::fs::File::open(path).ok()?.read_exact(&mut h).ok()?;
    match u16::from_be_bytes([h[16], h[17]]) {
        1 => Some(65536),
        p => Some(u32::from(p)),
    }
}

/// Largest damaged WAL copied aside as evidence (a WAL is normally at most the 4 MiB
/// `journal_size_limit`; a copy must not fill the disk).
const WAL_COPY_MAX: u64 = 64 * 1024 * 1024;

/// Scan the database's WAL (before SQLite opens it, see `wal`): if committed transactions
/// would be discarded, keep a copy of the WAL and return the event.
fn check_wal(path: &Path) -> Option<StoreEvent> {
    let wal_path = sibling(path, "-wal");
    let f = std::fs::File::open(&wal_path).ok()?;
    let scan = match wal::scan(&mut std::io::BufReader::new(f), db_page_size(path)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = %wal_path.display(), error = %e, "cannot scan the WAL");
            return None;
        }
    };
    if !scan.loses_commits() {
        return None;
    }
    let stamp = crate::time::file_stamp(crate::time::now_ms());
    let copy = sibling(path, &format!("-wal.corrupt-{stamp}"));
    let wal_len = std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);
    let copy = if wal_len > WAL_COPY_MAX {
        tracing::warn!(path = %wal_path.display(), bytes = wal_len,
            "the damaged WAL is too large to keep a copy of");
        None
    } else {
        match std::fs::copy(&wal_path, &copy) {
            Ok(_) => {
                restrict_mode(&copy);
                Some(copy)
            }
            Err(e) => {
                tracing::warn!(path = %copy.display(), error = %e, "cannot keep a copy of the damaged WAL");
                let _ = std::fs::remove_file(&copy);
                None
            }
        }
    };
    tracing::error!(wal = %wal_path.display(), frames = scan.lost_frames,
        commits = scan.lost_commits, kept = scan.commits, ?copy,
        "the WAL is damaged: SQLite will discard committed transactions after the damaged frame");
    Some(StoreEvent::WalDiscarded {
        frames: scan.lost_frames,
        commits: scan.lost_commits,
        kept_commits: scan.commits,
        header_damaged: !scan.header_ok,
        copy,
    })
}
