//! Integrity of the store under hostile state files (issue 9, items 2, 4 and 7): sequence
//! numbers that never repeat, go backwards or reach 2^53 whatever `seq.reserve` and the
//! database hold; undelivered readings of a moved-aside database counted in a `data_loss`
//! event; committed transactions that SQLite discards behind garbage in the WAL detected and
//! reported (a real child process killed with SIGKILL, then garbage written into its WAL); and
//! the modes of the files the store creates. Real SQLite files in temporary directories.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gasdtu::config::StoreConfig;
use gasdtu::model::{Quality, Sample, SampleBatch, Value};
use gasdtu::outbox::{EntryBody, Outbox};
use gasdtu::store::seq::{self, MAX_SEQ};
use gasdtu::store::{ClockStamp, Store, StoreEvent, DB_FILE, MIN_TRUSTED_UNIX_MS};
use gasdtu::time::from_unix_ms;

const T0: i64 = MIN_TRUSTED_UNIX_MS + 30 * 86_400_000;
const POINTS: usize = 10;

fn batch(device: &str, t: i64) -> SampleBatch {
    SampleBatch {
        device: device.into(),
        bus: "bus1".into(),
        slot: from_unix_ms(t),
        samples: (0..POINTS)
            .map(|i| Sample {
                point: format!("p{i}").into(),
                value: Some(Value::Float(i as f64 + t as f64 / 1e3)),
                unit: Some(Arc::from("m3/h")),
                quality: Quality::Good,
                read_at: from_unix_ms(t),
            })
            .collect(),
        online: true,
        failed_cycles: 0,
    }
}

fn stamp(t: i64) -> ClockStamp {
    ClockStamp {
        wall_ms: t,
        mono_ms: 1_000,
        boot_id: "test".into(),
    }
}

fn open(dir: &Path) -> (Store, Vec<StoreEvent>) {
    Store::open(dir, &StoreConfig::default())
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Commit and seal `n` one-batch messages; their sequence numbers.
fn seal_some(store: &Store, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let id = store
                .commit(&[batch("m", T0 + i as i64)], &[], &stamp(T0 + i as i64))
                .unwrap()
                .entry_ids[0];
            store
                .seal("t", &[id], POINTS as u64, &mut |_| Ok(vec![]))
                .unwrap()
                .seq
        })
        .collect()
}

fn events_pending(store: &Store, name: &str) -> Vec<serde_json::Value> {
    store
        .pending(100_000, 0)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body {
            EntryBody::Json(j) if j["event"] == name => Some(j),
            _ => None,
        })
        .collect()
}

fn reserve_file(dir: &Path) -> std::path::PathBuf {
    dir.join(seq::FILE_NAME)
}

fn write_reserve(dir: &Path, value: &str) {
    std::fs::write(
        reserve_file(dir),
        format!("gasdtu sequence reservation v1\n{value}\n"),
    )
    .unwrap();
}

// ---------------------------------------------------------------- item 2: sequence numbers

/// Damage to the state directory, given the highest number issued so far.
type Damage = Box<dyn Fn(&Path, u64)>;

/// (source, problem) of the expected `sequence_repaired` event.
type Want = Option<(&'static str, &'static str)>;

/// The tester's attacks on `seq.reserve` and the database, each followed by a restart and more
/// sealing. Invariant: every number issued after the damage is above every number issued
/// before, all are below 2^53, an event says what was found, and the side file vouches for
/// the new numbers again.
#[test]
fn sequence_numbers_survive_every_damaged_reservation() {
    let garbage_db = |d: &Path| std::fs::write(d.join(DB_FILE), vec![0x5a; 10_000]).unwrap();
    // (what, damage(dir, highest issued), expected (source, problem) in the event)
    let cases: Vec<(&str, Damage, Want)> = vec![
        (
            "u64::MAX beside a fresh database",
            Box::new(move |d: &Path, _: u64| {
                write_reserve(d, &u64::MAX.to_string());
                std::fs::remove_file(d.join(DB_FILE)).unwrap();
            }),
            Some(("seq.reserve", "out of range")),
        ),
        (
            "i64::MAX beside the database",
            Box::new(|d: &Path, _: u64| write_reserve(d, &i64::MAX.to_string())),
            Some(("seq.reserve", "out of range")),
        ),
        (
            "2^53 - 1 beside a garbage database",
            Box::new(move |d: &Path, _: u64| {
                write_reserve(d, &MAX_SEQ.to_string());
                garbage_db(d);
            }),
            Some(("seq.reserve", "out of range")),
        ),
        (
            "unreadable bytes",
            Box::new(|d: &Path, _: u64| std::fs::write(reserve_file(d), b"\x00\xffjunk").unwrap()),
            Some(("seq.reserve", "unreadable")),
        ),
        (
            "a huge file",
            Box::new(|d: &Path, _: u64| {
                std::fs::write(reserve_file(d), vec![b'9'; 1 << 20]).unwrap()
            }),
            Some(("seq.reserve", "unreadable")),
        ),
        (
            "stale copy behind the database",
            Box::new(|d: &Path, top: u64| write_reserve(d, &(top - 3).to_string())),
            Some(("seq.reserve", "behind database")),
        ),
        (
            "stale 1000 plus a corrupt database (was: restarts at 1001)",
            Box::new(move |d: &Path, _: u64| {
                write_reserve(d, "1000");
                garbage_db(d);
            }),
            None,
        ),
        (
            "stale copy plus a corrupt database",
            Box::new(move |d: &Path, top: u64| {
                write_reserve(d, &(top - 3).to_string());
                garbage_db(d);
            }),
            None,
        ),
        (
            "deleted beside the database",
            Box::new(|d: &Path, _: u64| std::fs::remove_file(reserve_file(d)).unwrap()),
            Some(("seq.reserve", "missing")),
        ),
    ];
    for (what, damage, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut before = seal_some(&open(d).0, 5);
        damage(d, *before.iter().max().unwrap());
        // Twice: the tester saw duplicates after the second replacement.
        for round in 0..2 {
            let (store, events) = open(d);
            let repaired: Vec<(String, String, u64)> = events
                .iter()
                .filter_map(|e| match e {
                    StoreEvent::SeqRepaired {
                        source,
                        problem,
                        next,
                        ..
                    } => Some((source.to_string(), problem.to_string(), *next)),
                    _ => None,
                })
                .collect();
            let after = seal_some(&store, 20);
            let max_before = *before.iter().max().unwrap();
            assert!(
                after[0] > max_before,
                "{what} (round {round}): {} after {max_before}",
                after[0]
            );
            assert!(after.windows(2).all(|w| w[1] == w[0] + 1), "{what}");
            assert!(*after.last().unwrap() < 1 << 53, "{what}: {after:?}");
            if round == 0 {
                match want {
                    Some((source, problem)) => {
                        assert_eq!(
                            repaired,
                            vec![(source.to_string(), problem.to_string(), after[0])],
                            "{what}"
                        );
                        let ev = events_pending(&store, "sequence_repaired");
                        assert_eq!(ev.len(), 1, "{what}");
                        let reason = ev[0]["reason"].as_str().unwrap();
                        assert!(
                            reason.starts_with(&format!("{source} {problem}: found "))
                                && reason.ends_with(&format!(", starting at {}", after[0])),
                            "{what}: {reason}"
                        );
                    }
                    None => assert!(repaired.is_empty(), "{what}: {repaired:?}"),
                }
            } else {
                assert!(repaired.is_empty(), "{what}: repaired twice: {repaired:?}");
            }
            // The side file vouches for everything issued.
            match seq::read(&reserve_file(d)) {
                seq::Reserve::Value(r) => {
                    assert!(r >= *after.last().unwrap() && r <= MAX_SEQ, "{what}: {r}")
                }
                other => panic!("{what}: side file after repair: {other:?}"),
            }
            before.extend(after);
            drop(store);
            // Second round: the database is replaced once more.
            std::fs::remove_file(d.join(DB_FILE)).unwrap();
        }
    }
}

/// A side file that cannot be rewritten (a directory in its place): the store opens, says
/// so, and refuses to seal (a clear error, nothing issued) until the file can be written;
/// then numbering resumes above everything issued.
#[test]
fn an_unwritable_reservation_stops_sealing_not_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let before = seal_some(&open(d).0, 3);
    std::fs::remove_file(reserve_file(d)).unwrap();
    std::fs::create_dir(reserve_file(d)).unwrap();
    let (store, events) = open(d);
    assert!(
        events.iter().any(|e| matches!(e,
            StoreEvent::SeqRepaired { source: "seq.reserve", problem: "unreadable", found, .. }
                if found.contains("Is a directory"))),
        "{events:?}"
    );
    let id = store
        .commit(&[batch("m", T0)], &[], &stamp(T0))
        .unwrap()
        .entry_ids[0];
    let err = store
        .seal("t", &[id], POINTS as u64, &mut |_| Ok(vec![]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot write the sequence reservation") && err.contains("seq.reserve"),
        "{err}"
    );
    assert_eq!(
        store.unacked().unwrap().len(),
        before.len(),
        "nothing sealed"
    );
    std::fs::remove_dir(reserve_file(d)).unwrap();
    let s = store
        .seal("t", &[id], POINTS as u64, &mut |_| Ok(vec![]))
        .unwrap()
        .seq;
    assert!(s > *before.iter().max().unwrap() && s < 1 << 53, "{s}");
}

// ------------------------------------------------- item 4: what a moved-aside database held

/// Overwrite the root page of the index `name` (quick_check fails; the entry table itself
/// stays readable).
fn smash_index(db: &Path, name: &str) {
    let (root, page): (i64, i64) = {
        let c = rusqlite::Connection::open(db).unwrap();
        let root = c
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap();
        let page = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        (root, page)
    };
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(((root - 1) * page) as u64))
        .unwrap();
    f.write_all(&vec![0xa5; page as usize]).unwrap();
}

/// A store with `cycles` poll cycles of 20 batches × 10 readings, of which the first `acked`
/// batches are delivered and the next `sealed` batches sealed but not acknowledged.
/// Returns the undelivered readings.
fn fill(dir: &Path, cycles: i64, sealed: usize, acked: usize) -> u64 {
    let (store, _) = open(dir);
    let mut ids = Vec::new();
    for c in 0..cycles {
        let bs: Vec<SampleBatch> = (0..20)
            .map(|d| batch(&format!("dev{d}"), T0 + c * 1000))
            .collect();
        ids.extend(
            store
                .commit(&bs, &[], &stamp(T0 + c * 1000))
                .unwrap()
                .entry_ids,
        );
    }
    for (i, id) in ids.iter().take(acked + sealed).enumerate() {
        let s = store
            .seal("t", &[*id], POINTS as u64, &mut |_| Ok(vec![]))
            .unwrap();
        if i < acked {
            store.ack(s.seq).unwrap();
        }
    }
    let total = ids.len() as u64 * POINTS as u64 - acked as u64 * POINTS as u64;
    assert_eq!(store.stats().unwrap().pending_readings, total);
    // Checkpoint so the damage below hits the main file.
    drop(store);
    total
}

fn loss_event(events: &[StoreEvent]) -> (Option<u64>, bool, String) {
    events
        .iter()
        .find_map(|e| match e {
            StoreEvent::LostWithDatabase {
                readings,
                complete,
                moved_to,
                ..
            } => Some((*readings, *complete, moved_to.display().to_string())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no LostWithDatabase in {events:?}"))
}

#[test]
fn a_moved_aside_database_reports_its_undelivered_readings() {
    // Index damaged: every row is still readable, the count is exact.
    let dir = tempfile::tempdir().unwrap();
    let total = fill(dir.path(), 30, 50, 100);
    assert_eq!(total, (600 - 100) * POINTS as u64);
    smash_index(&dir.path().join(DB_FILE), "entry_read");
    let (store, events) = open(dir.path());
    let (readings, complete, moved) = loss_event(&events);
    assert_eq!((readings, complete), (Some(total), true));
    let ev = events_pending(&store, "data_loss");
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["reason"], "database_corrupt");
    assert_eq!(ev[0]["readings"], total);
    assert_eq!(ev[0]["moved_to"], moved);
    assert!(moved.contains("gasdtu.db.corrupt-"), "{moved}");
    assert_eq!(
        store.stats().unwrap().dropped_unsent,
        total,
        "counted as dropped"
    );
    println!(
        "moved aside, index page damaged: {readings:?} of {total} readings, complete {complete}"
    );
    drop(store);

    // Table pages damaged: counted as far as readable, never more than there was.
    let dir = tempfile::tempdir().unwrap();
    let total = fill(dir.path(), 40, 0, 0);
    let db = dir.path().join(DB_FILE);
    let mut bytes = std::fs::read(&db).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 2..n / 2 + 4 * 4096] {
        *b = 0xa5;
    }
    std::fs::write(&db, bytes).unwrap();
    let (_store, events) = open(dir.path());
    let (readings, complete, _) = loss_event(&events);
    let r = readings.expect("the file opens, its first pages are intact");
    assert!(r <= total, "{r} > {total}");
    assert!(
        !complete || r < total,
        "claims a complete count of {r}/{total}"
    );
    println!(
        "moved aside, 16 KiB of table pages damaged: {r} of {total} readings, complete {complete}"
    );

    // Not a database at all: readings unknown, said so.
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 2, 0, 0);
    std::fs::write(dir.path().join(DB_FILE), b"not a database".repeat(500)).unwrap();
    let (store, events) = open(dir.path());
    assert_eq!(loss_event(&events).0, None);
    let ev = events_pending(&store, "data_loss");
    assert_eq!(ev[0]["readings"], serde_json::Value::Null);
    assert!(
        ev[0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("unreadable"),
        "{ev:?}"
    );
}

// ------------------------------------------------------- item 4: garbage in the WAL

const CHILD_ENV: &str = "GASDTU_STORE_INTEGRITY_CHILD";

/// Not a test on its own: the child process of the WAL tests. With `CHILD_ENV=<dir>:<n>:<mode>`
/// it opens the store in `<dir>`, commits `n` batches (one transaction each), prints
/// `committed <n>` and then waits to be killed (`idle`) or keeps committing (`busy`).
#[test]
fn wal_child_writer() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = arg.rsplitn(3, ':');
    let mode = parts.next().unwrap().to_string();
    let n: i64 = parts.next().unwrap().parse().unwrap();
    let dir = parts.next().unwrap().to_string();
    // Busy: a small cap means a small WAL auto-checkpoint (64 KiB, an eighth of the cap), so
    // the WAL restarts often and frames of older generations stay behind its head.
    let cfg = StoreConfig {
        max_bytes: if mode == "busy" {
            512 << 10
        } else {
            StoreConfig::default().max_bytes
        },
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(Path::new(&dir), &cfg).unwrap();
    let mut i = 0;
    while i < n {
        store
            .commit(&[batch("w", T0 + i * 1000)], &[], &stamp(T0 + i * 1000))
            .unwrap();
        i += 1;
    }
    println!("committed {n}");
    std::io::stdout().flush().unwrap();
    loop {
        if mode == "busy" {
            store
                .commit(&[batch("w", T0 + i * 1000)], &[], &stamp(T0 + i * 1000))
                .unwrap();
            i += 1;
        } else {
            std::thread::park();
        }
    }
}

/// Run the child writer in `dir`, wait for its `n` commits, SIGKILL it.
fn commit_then_kill(dir: &Path, n: usize, mode: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut p = common::Proc::spawn(
        "wal child",
        Command::new(exe)
            .args([
                "--exact",
                "wal_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{}:{n}:{mode}", dir.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    p.wait_stdout_line(&format!("committed {n}"), Duration::from_secs(60));
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

fn wal_of(dir: &Path) -> std::path::PathBuf {
    dir.join(format!("{DB_FILE}-wal"))
}

fn batches_of(store: &Store) -> usize {
    let mut n = 0;
    store
        .export(&Default::default(), &mut |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
    n
}

fn wal_loss(events: &[StoreEvent]) -> Option<(u64, u64, u64)> {
    events.iter().find_map(|e| match e {
        StoreEvent::WalDiscarded {
            frames,
            commits,
            kept_commits,
            ..
        } => Some((*frames, *commits, *kept_commits)),
        _ => None,
    })
}

#[test]
fn garbage_in_the_wal_of_a_killed_writer_is_reported_as_data_loss() {
    const N: usize = 120;
    let dir = tempfile::tempdir().unwrap();
    commit_then_kill(dir.path(), N, "idle");
    let wal = wal_of(dir.path());
    let len = std::fs::metadata(&wal).unwrap().len();
    assert!(len > 100 * 1024, "the WAL holds the commits: {len} bytes");
    // Garbage into the middle of the WAL (the tester's attack).
    let mut bytes = std::fs::read(&wal).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b = 0xa5;
    }
    std::fs::write(&wal, &bytes).unwrap();

    // The first open after the damage reports it, and the process dies right after (before
    // any checkpoint): the next open must not report the same frames again.
    commit_then_kill(dir.path(), 0, "idle");
    let (store, events) = open(dir.path());
    assert_eq!(wal_loss(&events), None, "reported twice: {events:?}");
    // SQLite really dropped them (quick_check passed: no move aside).
    assert!(!events
        .iter()
        .any(|e| matches!(e, StoreEvent::Replaced { .. })));
    let have = batches_of(&store);
    assert!(have < N, "SQLite kept {have} of {N}");
    let ev = events_pending(&store, "data_loss");
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["reason"], "wal_corrupt");
    let commits = ev[0]["commits"].as_u64().unwrap();
    let frames = ev[0]["frames"].as_u64().unwrap();
    let kept = ev[0]["kept_commits"].as_u64().unwrap();
    // Every commit after the break is a batch's: the count matches what SQLite dropped (one
    // less if the garbage hit the header of the broken commit frame itself).
    let gone = (N - have) as u64;
    assert!(
        (gone.saturating_sub(1)..=gone).contains(&commits),
        "{commits} commits reported, {gone} batches gone"
    );
    assert!(kept + commits >= N as u64, "{kept} kept + {commits} lost");
    assert!(frames >= commits);
    let copy = ev[0]["wal_copy"]
        .as_str()
        .expect("a copy of the WAL is kept");
    assert_eq!(
        std::fs::read(copy).unwrap(),
        bytes,
        "the copy is the damaged WAL"
    );
    assert_eq!(mode(Path::new(copy)), 0o600);
    println!("wal garbage: {frames} frames, {commits} commits lost, {kept} kept, {have}/{N} batches left");
}

#[test]
fn a_clean_kill_9_reports_no_wal_loss() {
    const N: usize = 60;
    // Killed while idle: everything committed is there, nothing reported.
    let dir = tempfile::tempdir().unwrap();
    commit_then_kill(dir.path(), N, "idle");
    assert!(std::fs::metadata(wal_of(dir.path())).unwrap().len() > 0);
    let (store, events) = open(dir.path());
    assert_eq!(wal_loss(&events), None, "{events:?}");
    assert_eq!(batches_of(&store), N);
    assert!(events_pending(&store, "data_loss").is_empty());
    drop(store);

    // Killed while committing (at an arbitrary instant, possibly mid-transaction), ten times
    // in a row on the same store: never a false alarm, never fewer batches than acknowledged
    // commits. The busy writer's small WAL restarts every ~20 commits, so frames of older
    // generations lie behind the head of the WAL (normal, and counted here to prove it).
    let dir = tempfile::tempdir().unwrap();
    let mut acked = 0;
    let mut old_generation_frames = 0;
    for round in 0..10 {
        commit_then_kill(dir.path(), 40, "busy");
        acked += 40;
        old_generation_frames += other_salt_frames(&std::fs::read(wal_of(dir.path())).unwrap());
        let (store, events) = open(dir.path());
        assert_eq!(wal_loss(&events), None, "round {round}: {events:?}");
        let have = batches_of(&store);
        assert!(have >= acked, "round {round}: {have} < {acked}");
        acked = have;
    }
    assert!(old_generation_frames > 0, "the WAL never restarted");
    println!("clean kills: {acked} batches kept, {old_generation_frames} old-generation WAL frames seen, no false alarm");
}

/// Complete frames of a WAL whose salts differ from its header's (older generations).
fn other_salt_frames(wal: &[u8]) -> usize {
    if wal.len() < 32 {
        return 0;
    }
    let page = u32::from_be_bytes([wal[8], wal[9], wal[10], wal[11]]) as usize;
    let salts = &wal[16..24];
    wal[32..]
        .chunks_exact(24 + page)
        .filter(|f| &f[8..16] != salts)
        .count()
}

// ------------------------------------------------------------- item 7: file modes

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn state_files_are_owner_only() {
    // SAFETY: umask(2) cannot fail; a permissive mask proves the store sets its own modes.
    unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("state");
    {
        let (store, _) = open(&d);
        seal_some(&store, 3);
        assert_eq!(mode(&d) & 0o077, 0, "state directory");
        let mut files = vec![
            d.join(DB_FILE),
            d.join(format!("{DB_FILE}-wal")),
            d.join(format!("{DB_FILE}-shm")),
            reserve_file(&d),
        ];
        let ballast = d.join(gasdtu::store::space::BALLAST_FILE);
        if ballast.exists() {
            files.push(ballast);
        }
        for f in &files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
    }
    // Files left with a permissive mode by an older gasdtu are restricted at open.
    for f in [d.join(DB_FILE), reserve_file(&d)] {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    drop(open(&d));
    assert_eq!(mode(&d.join(DB_FILE)), 0o600);
    assert_eq!(mode(&reserve_file(&d)), 0o600);

    // Moved-aside files too.
    std::fs::write(d.join(DB_FILE), b"garbage".repeat(1000)).unwrap();
    std::fs::set_permissions(d.join(DB_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_store, events) = open(&d);
    let moved = events
        .iter()
        .find_map(|e| match e {
            StoreEvent::Replaced { moved_to, .. } => Some(moved_to.clone()),
            _ => None,
        })
        .unwrap();
    for m in moved {
        assert_eq!(mode(&m), 0o600, "{}", m.display());
    }
}
