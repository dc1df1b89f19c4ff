//! The store when its storage fails, on real mounts made by the test (we run as root here and
//! in CI, where file mode bits do not stop root, so the honest way to make storage unwritable
//! or small is the kernel's: a read-only bind mount, a tmpfs of a few MiB). A failing `mount`
//! fails the test loudly; nothing is skipped.
//! - An unwritable database file, or state directory, is refused at open with
//!   `StoreError::Unwritable` naming the path and the reason; `gasdtu run` exits 1 saying so.
//! - A size cap larger than the file system is clamped (reported by a `store_cap_clamped`
//!   event); a store on a 4 MiB tmpfs keeps committing by evicting its oldest data instead of
//!   failing with "disk full", makes room when something else fills the disk, and grows its
//!   cap again when the space comes back.
//! - A store that fails seal and ack is not a broken uplink: the forwarder keeps its one
//!   session to a real mosquitto (counted by a TCP relay in front of it), backs off, reports
//!   `store_error`, and delivers everything once the store works again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gasdtu::config::StoreConfig;
use gasdtu::model::{Quality, Sample, SampleBatch, Value};
use gasdtu::store::{ClockStamp, Store, StoreError, StoreEvent, MIN_TRUSTED_UNIX_MS};
use gasdtu::time::from_unix_ms;

const T0: i64 = MIN_TRUSTED_UNIX_MS + 30 * 86_400_000;

/// A mount made by this test, unmounted (lazily if busy) when dropped.
struct Mount(PathBuf);

impl Mount {
    fn run(args: &[&str]) {
        let out = Command::new("mount")
            .args(args)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "mount {args:?} failed (these tests need root and mount privileges): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Bind `path` (a file or directory) onto itself, read-only.
    fn read_only(path: &Path) -> Mount {
        let p = path.to_str().expect("utf-8 temp path");
        Mount::run(&["--bind", p, p]);
        let m = Mount(path.to_path_buf());
        Mount::run(&["-o", "remount,bind,ro", p]);
        m
    }

    /// A tmpfs of `size` (e.g. "4m") on `dir`.
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        let d = dir.to_str().expect("utf-8 temp path");
        Mount::run(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", d]);
        Mount(dir.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn batch(device: &str, t: i64, points: usize) -> SampleBatch {
    SampleBatch {
        device: device.into(),
        bus: "bus1".into(),
        slot: from_unix_ms(t),
        samples: (0..points)
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

fn expect_unwritable(r: Result<(Store, Vec<StoreEvent>), StoreError>, want: &Path) -> String {
    match r {
        Err(e @ StoreError::Unwritable { .. }) => {
            let StoreError::Unwritable { path, .. } = &e else {
                unreachable!()
            };
            assert_eq!(path, want, "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&want.display().to_string()), "{msg}");
            assert!(msg.contains("Read-only file system"), "says why: {msg}");
            msg
        }
        Err(e) => panic!("expected Unwritable, got {e:?}"),
        Ok(_) => panic!("an unwritable store was opened"),
    }
}

#[test]
fn a_read_only_database_file_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        store.commit(&[batch("a", T0, 5)], &[], &stamp(T0)).unwrap();
    }
    let db = dir.path().join("gasdtu.db");
    let _ro = Mount::read_only(&db);
    let msg = expect_unwritable(Store::open(dir.path(), &StoreConfig::default()), &db);
    assert!(msg.contains("cannot be opened for writing"), "{msg}");
    // Read-only access for `gasdtu queue`/`export` still works.
    let ro = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.stats().unwrap().pending_readings, 5);
}

#[test]
fn a_read_only_state_directory_is_refused_at_open() {
    // With a database in it, and without (a fresh install on a read-only mount).
    for existing in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        if existing {
            let (store, _) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
            store.commit(&[batch("a", T0, 5)], &[], &stamp(T0)).unwrap();
        }
        let _ro = Mount::read_only(dir.path());
        let msg = expect_unwritable(Store::open(dir.path(), &StoreConfig::default()), dir.path());
        assert!(msg.contains("cannot create files"), "{msg}");
    }
}

#[test]
fn gasdtu_run_exits_1_naming_an_unwritable_store() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"ftest\"\nstate_dir = \"{}\"\n\n[buses.lan1]\nkind = \"tcp\"\n\
             host = \"127.0.0.1\"\nport = {}\ntimeout = \"300ms\"\n\n[devices.pt1]\nbus = \"lan1\"\n\
             unit = 1\npoll = \"1s\"\nprofile = \"pt-float\"\n",
            state.display(),
            common::free_port()
        ),
    )
    .unwrap();
    let _ro = Mount::read_only(&state);
    let mut child = Command::new(common::gasdtu())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn gasdtu run");
    let status = common::wait_exit(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("gasdtu run output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "must refuse to start: {stderr}"
    );
    assert!(
        stderr.contains("not writable") && stderr.contains(&state.display().to_string()),
        "names the store and says why: {stderr}"
    );
    assert!(stderr.contains("Read-only file system"), "{stderr}");
}

/// Write a file until the file system is full (ENOSPC). Returns its size.
fn fill_disk(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0x5au8; 4096];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filler: {e}"),
        }
    }
    let _ = f.sync_all();
    n
}

#[test]
fn a_store_on_a_small_file_system_clamps_its_cap_keeps_committing_and_recovers() {
    const MIB: u64 = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("flash");
    std::fs::create_dir(&mnt).unwrap();
    let _fs = Mount::tmpfs(&mnt, "4m");
    let state = mnt.join("state");
    let cfg = StoreConfig::default(); // 512 MiB: far more than the 4 MiB file system
    let (store, events) = Store::open(&state, &cfg).unwrap();

    // The clamp is reported at open.
    let (configured, effective) = events
        .iter()
        .find_map(|e| match e {
            StoreEvent::CapClamped {
                configured,
                effective,
                ..
            } => Some((*configured, *effective)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no CapClamped event: {events:?}"));
    assert_eq!(configured, 512 * MIB);
    // 4 MiB minus the 10 % floor (0.4 MiB), give or take what the fresh store holds.
    assert!(
        (3 * MIB..4 * MIB).contains(&effective),
        "effective cap {effective}"
    );
    assert_eq!(store.max_bytes(), effective);
    let json = events
        .iter()
        .find(|e| matches!(e, StoreEvent::CapClamped { .. }))
        .unwrap()
        .to_json();
    assert_eq!(json["event"], "store_cap_clamped");

    // Phase 1: commit poll cycles (20 devices x 10 points) with the bounds enforced every 5
    // commits. Without the clamp the store fills the disk and commits fail with "disk full".
    let mut t = T0;
    let commit_cycle = |store: &Store, t: i64| {
        let bs: Vec<SampleBatch> = (0..20).map(|d| batch(&format!("m{d}"), t, 10)).collect();
        store.commit(&bs, &[], &stamp(t))
    };
    let mut dropped = 0;
    let mut losses = 0;
    let mut commits_after_first_loss = 0;
    let mut i = 0;
    while commits_after_first_loss < 300 {
        i += 1;
        t += 1000;
        if let Err(e) = commit_cycle(&store, t) {
            panic!("commit {i} failed although the cap is clamped: {e}");
        }
        if dropped > 0 {
            commits_after_first_loss += 1;
        }
        if i % 5 == 0 {
            let ev = store.enforce_limits(from_unix_ms(t)).unwrap();
            assert!(
                ev.bytes_after <= ev.max_bytes,
                "commit {i}: {} on disk > cap {}",
                ev.bytes_after,
                ev.max_bytes
            );
            if ev.dropped_unsent > 0 {
                assert!(ev.event_id.is_some(), "a loss is reported as data_loss");
                losses += 1;
            }
            dropped += ev.dropped_unsent;
        }
        assert!(i < 20_000, "the clamp was never reached");
    }
    let st = store.stats().unwrap();
    assert_eq!(st.dropped_unsent, dropped);
    assert!(losses > 0);
    eprintln!(
        "phase 1: {i} commits, cap {effective}, {dropped} readings evicted in {losses} enforcements, {} on disk",
        st.bytes_on_disk
    );

    // Phase 2: something else fills the disk. Commits that fail with `Full` are followed by
    // `enforce_limits` (what the consumer does), which lowers the cap and evicts; every cycle
    // is committed in the end.
    let filler = mnt.join("filler");
    let ballast = state.join("gasdtu.ballast");
    assert!(ballast.exists(), "the ballast is written at open");
    let filled = fill_disk(&filler);
    let mut full = 0;
    let mut low_cap = u64::MAX;
    let mut met_full = false;
    // A backlog's worth per commit (20 cycles): with 512-byte pages, single cycles fit in the
    // space the WAL and phase 1's evictions already hold, and never meet the full disk.
    let commit_cycles = |store: &Store, t: i64| {
        let bs: Vec<SampleBatch> = (0..400)
            .map(|k| batch(&format!("m{}", k % 20), t + (k / 20) as i64 * 50, 10))
            .collect();
        store.commit(&bs, &[], &stamp(t))
    };
    for _ in 0..200 {
        t += 1000;
        let mut tries = 0;
        loop {
            match commit_cycles(&store, t) {
                Ok(_) => break,
                Err(StoreError::Full { .. }) => {
                    full += 1;
                    tries += 1;
                    assert!(tries <= 10, "no room made after {tries} evictions");
                    let ev = store
                        .enforce_limits(from_unix_ms(t))
                        .expect("eviction must work on a full disk");
                    low_cap = low_cap.min(ev.max_bytes);
                    met_full |= ev.disk_full;
                }
                Err(e) => panic!("commit on a full disk: {e:?}"),
            }
        }
        let ev = store.enforce_limits(from_unix_ms(t)).unwrap();
        low_cap = low_cap.min(ev.max_bytes);
        met_full |= ev.disk_full;
    }
    assert!(
        low_cap < effective,
        "the cap follows the free space: {low_cap} vs {effective}"
    );
    assert!(met_full, "the full disk was never met");
    eprintln!(
        "phase 2: filler {filled} B, {full} commits hit a full disk, cap went down to {low_cap}"
    );

    // Phase 3: the space comes back: the cap grows again and commits go on.
    std::fs::remove_file(&filler).unwrap();
    let ev = store.enforce_limits(from_unix_ms(t)).unwrap();
    assert!(
        ev.max_bytes > low_cap && ev.max_bytes >= effective - effective / 8,
        "cap {} after the space came back (was {low_cap}, at open {effective})",
        ev.max_bytes
    );
    assert!(ballast.exists(), "the ballast is written again");
    for _ in 0..100 {
        t += 1000;
        commit_cycle(&store, t).unwrap();
    }
    let after = store.stats().unwrap();
    assert!(after.pending_readings > 0);
    assert_eq!(after, store.stats_scan().unwrap());
}

// ------------------------------------------------------------------ forwarder vs. store errors

use std::sync::atomic::{AtomicUsize, Ordering};

use gasdtu::config::UplinkConfig;
use gasdtu::outbox::{Entry, Outbox, OutboxError, Sealed};
use gasdtu::uplink::{Forwarder, LinkState, LinkStatus};

/// The real store, whose `seal` and `ack_many` fail the first N times with a store error.
struct FlakyStore {
    store: Store,
    seal_failures: AtomicUsize,
    ack_failures: AtomicUsize,
    seal_calls: AtomicUsize,
    sealed: AtomicUsize,
    /// When each injected failure happened.
    failed_at: std::sync::Mutex<Vec<std::time::Instant>>,
}

fn fail(left: &AtomicUsize) -> Result<(), OutboxError> {
    let took = left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    match took {
        Ok(_) => Err(OutboxError::Store(
            "database /x/gasdtu.db: commit seal: disk I/O error (injected)".into(),
        )),
        Err(_) => Ok(()),
    }
}

impl Outbox for FlakyStore {
    fn pending(&self, limit: usize, live_since_ms: i64) -> Result<Vec<Entry>, OutboxError> {
        self.store.pending(limit, live_since_ms)
    }
    fn seal(
        &self,
        topic: &str,
        entries: &[i64],
        readings: u64,
        build: &mut dyn FnMut(u64) -> Result<Vec<u8>, String>,
    ) -> Result<Sealed, OutboxError> {
        self.seal_calls.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = fail(&self.seal_failures) {
            self.failed_at
                .lock()
                .unwrap()
                .push(std::time::Instant::now());
            return Err(e);
        }
        let m = self.store.seal(topic, entries, readings, build)?;
        self.sealed.fetch_add(1, Ordering::SeqCst);
        Ok(m)
    }
    fn unacked(&self) -> Result<Vec<Sealed>, OutboxError> {
        self.store.unacked()
    }
    fn ack(&self, seq: u64) -> Result<(), OutboxError> {
        self.ack_many(&[seq])
    }
    fn ack_many(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        if let Err(e) = fail(&self.ack_failures) {
            self.failed_at
                .lock()
                .unwrap()
                .push(std::time::Instant::now());
            return Err(e);
        }
        self.store.ack_many(seqs)
    }
}

/// A TCP relay in front of the broker that counts the connections it accepted.
async fn relay(to: u16) -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut b) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    });
    (port, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_keeps_the_uplink_session_and_delivers_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::Pki::generate(dir.path());
    let tls = common::BrokerTls {
        cert: "server",
        require_certificate: false,
        tls_version: None,
    };
    let broker = common::Broker::new(dir.path(), &pki, &tls, false);
    let root = "gasdtu/gw-flaky";
    let sub = common::Subscriber::start(&pki, broker.port, &format!("{root}/#"), "sub-f", false);
    sub.wait_subscribed(1, Duration::from_secs(15)).await;
    let (port, connections) = relay(broker.port).await;

    let (store, _) = Store::open(&dir.path().join("state"), &StoreConfig::default()).unwrap();
    let now = gasdtu::time::unix_ms(std::time::SystemTime::now());
    for i in 0..5 {
        store
            .commit(&[batch("m1", now - 5000 + i, 4)], &[], &stamp(now))
            .unwrap();
    }
    let outbox = Arc::new(FlakyStore {
        store,
        seal_failures: AtomicUsize::new(3),
        ack_failures: AtomicUsize::new(2),
        seal_calls: AtomicUsize::new(0),
        sealed: AtomicUsize::new(0),
        failed_at: std::sync::Mutex::new(Vec::new()),
    });
    let cfg = UplinkConfig {
        host: "127.0.0.1".into(),
        server_name: Some("localhost".into()),
        keepalive: Duration::from_secs(5),
        max_payload: 256,
        ..common::uplink_config(&pki, port, "gw-flaky")
    };
    let (tx, mut rx) = tokio::sync::watch::channel(LinkStatus::default());
    let seen = Arc::new(std::sync::Mutex::new(Vec::<LinkStatus>::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let st = rx.borrow_and_update().clone();
            s2.lock().unwrap().push(st);
        }
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let fwd = Forwarder::new(
        cfg,
        "gw-flaky",
        outbox.clone(),
        Arc::new(tokio::sync::Notify::new()),
        tx,
    );
    let task = tokio::spawn(fwd.run(shutdown.clone()));

    // Everything ends up acknowledged in the store (backoff 1 + 2 + 4 s for the seals, then
    // 1 + 2 s for the acks).
    common::wait_until("outbox drained", Duration::from_secs(40), || {
        let s = outbox.store.stats().ok()?;
        (s.pending_readings == 0 && s.sealed_messages == 0 && s.history_readings == 20)
            .then_some(())
    })
    .await;
    // ... and at the subscriber.
    common::wait_until(
        "20 readings at the subscriber",
        Duration::from_secs(15),
        || {
            let n: usize = sub
                .snapshot()
                .iter()
                .filter(|m| m.topic.ends_with("/data"))
                .filter_map(|m| gasdtu::uplink::decode(&m.payload).ok())
                .map(|d| {
                    d["data"]
                        .as_array()
                        .map(|devs| {
                            devs.iter()
                                .map(|dv| dv["reads"].as_array().map_or(0, |r| r.len()))
                                .sum::<usize>()
                        })
                        .unwrap_or(0)
                })
                .sum();
            (n >= 5).then_some(())
        },
    )
    .await;

    let history = seen.lock().unwrap().clone();
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "a store error must not reconnect the uplink"
    );
    assert!(
        history
            .iter()
            .all(|s| !matches!(s.state, LinkState::Down { .. })),
        "the link was reported down: {history:?}"
    );
    assert!(
        history.iter().any(|s| s.store_error.is_some()),
        "the store error is reported"
    );
    let last = history.last().unwrap();
    assert_eq!(last.store_error, None, "cleared once the store works");
    assert_eq!(last.reconnects, 0);
    // Backed off, not hammered: each injected failure cost exactly one call, and the
    // retries came at least the 1 s backoff apart.
    assert_eq!(
        outbox.seal_calls.load(Ordering::SeqCst),
        outbox.sealed.load(Ordering::SeqCst) + 3
    );
    let at = outbox.failed_at.lock().unwrap().clone();
    assert_eq!(at.len(), 5, "3 seal and 2 ack failures");
    assert!(
        at[2] - at[1] >= Duration::from_millis(1900),
        "doubled: {:?}",
        at[2] - at[1]
    );
    for w in at.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(950),
            "retried after {:?}",
            w[1] - w[0]
        );
    }
    shutdown.cancel();
    task.await.unwrap();
}

#[test]
fn gasdtu_check_warns_when_the_cap_exceeds_the_file_system_and_still_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("flash");
    std::fs::create_dir(&mnt).unwrap();
    let _fs = Mount::tmpfs(&mnt, "4m");
    let config = dir.path().join("gasdtu.toml");
    let write = |max: &str| {
        std::fs::write(
            &config,
            format!(
                "[gateway]\nid = \"ftest\"\nstate_dir = \"{}\"\n\n[store]\nmax_bytes = \"{max}\"\n\n\
                 [buses.lan1]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = 1502\n\n\
                 [devices.pt1]\nbus = \"lan1\"\nunit = 1\nprofile = \"pt-float\"\n",
                mnt.join("state").display()
            ),
        )
        .unwrap();
        Command::new(common::gasdtu())
            .arg("check")
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run gasdtu check")
    };
    let out = write("512MiB");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("warning:")
            && l.contains("store.max_bytes")
            && l.contains(&mnt.display().to_string())),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 warning"));
    // A cap that fits: no such warning.
    let out = write("2MiB");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("store.max_bytes"), "{stderr}");
}
