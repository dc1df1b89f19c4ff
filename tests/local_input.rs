//! Issue 9, item 7 (local input to the running daemon): the real binary, a real unix socket,
//! real files. A 64 MiB request line without a newline is refused after a bounded read and
//! the daemon's memory stays flat; `ack` is recorded as the connecting uid (SO_PEERCRED), a
//! client-sent name only as an escaped note; `gasdtu run` tightens its umask so the state
//! directory, the database and the socket are not world-accessible; a non-socket at the
//! socket path is left alone and reported.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use gasdtu::model::Value;
use gasdtu::sim::{Faults, SimDevice, Simulator};
use tokio_util::sync::CancellationToken;

/// A config with one Modbus TCP device at `port` (or none) and an alarm above 700.
fn write_config(dir: &Path, sim_port: Option<u16>) -> (PathBuf, PathBuf) {
    let state = dir.join("state");
    let mut text = format!(
        "[gateway]\nid = \"local-input\"\nstate_dir = \"{}\"\nprofile_dirs = []\n",
        state.display()
    );
    if let Some(port) = sim_port {
        text.push_str(&format!(
            r#"
[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {port}
timeout = "500ms"

[devices.pt1]
bus = "lan"
unit = 1
poll = "1s"
profile = "pt-float"

[alarms.p_high]
device = "pt1"
point = "pressure"
kind = "limit"
h = 700
severity = "critical"
message = "high"
"#
        ));
    }
    let config = dir.join("gasdtu.toml");
    std::fs::write(&config, text).unwrap();
    (config, state)
}

/// `gasdtu run` started with umask 000, so that every mode it gets comes from the daemon.
fn daemon(config: &Path, socket: &Path) -> Proc {
    let mut cmd = Command::new(gasdtu());
    cmd.args(["run", "--poll-now", "--log-level", "error"])
        .arg("--config")
        .arg(config)
        .arg("--socket")
        .arg(socket)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: umask(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    Proc::spawn("gasdtu run", &mut cmd)
}

fn status_of(socket: &Path) -> Option<serde_json::Value> {
    let reply = socket_request(socket, b"status\n", Duration::from_secs(5)).ok()?;
    serde_json::from_str(reply.trim()).ok()
}

#[test]
fn a_64_mib_line_is_refused_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(dir.path(), None);
    let socket = dir.path().join("run/gasdtu.sock");
    let d = daemon(&config, &socket);
    let pid = d.child.id();
    wait_for("the daemon answers status", Duration::from_secs(20), || {
        status_of(&socket)
    });
    let rss_before = proc_status_kib(pid, "VmRSS").unwrap();

    let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The reply is read while we still send, so a reset at close cannot destroy it.
    let mut reader = s.try_clone().unwrap();
    let replies = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    let chunk = vec![b'x'; 1024 * 1024];
    let mut sent = 0usize;
    let mut refused = None;
    while sent < 64 * 1024 * 1024 {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let reply = replies.join().unwrap();
    let refused = refused.expect("the daemon stops reading and closes the connection");
    assert!(
        sent < 8 * 1024 * 1024,
        "the daemon read {sent} bytes of one line before closing ({refused})"
    );
    let v: serde_json::Value =
        serde_json::from_str(reply.trim()).unwrap_or_else(|e| panic!("reply {reply:?}: {e}"));
    assert_eq!(v["kind"], "too_long", "{v}");
    assert_eq!(v["error"], "request line longer than 4096 bytes refused");

    // Still running, still answering, memory flat.
    assert!(status_of(&socket).is_some());
    let rss_after = proc_status_kib(pid, "VmRSS").unwrap();
    let peak = proc_status_kib(pid, "VmHWM").unwrap();
    eprintln!("VmRSS {rss_before} KiB -> {rss_after} KiB, peak {peak} KiB, sent {sent} bytes");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB (MemoryMax=64M)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_is_recorded_as_the_peer_uid_and_modes_are_private() {
    let stop = CancellationToken::new();
    let profile = gasdtu::config::profiles::resolve_profile("pt-float", &[]).unwrap();
    let sim = Simulator::new(
        vec![SimDevice::new(1, "pt1", profile.points, profile.computed)],
        Faults::default(),
    );
    sim.set(1, "pressure", Value::Float(900.0)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_port = listener.local_addr().unwrap().port();
    {
        let (sim, stop) = (sim.clone(), stop.clone());
        tokio::spawn(async move { sim.serve_tcp(listener, stop).await });
    }
    let dir = tempfile::tempdir().unwrap();
    let (config, state) = write_config(dir.path(), Some(sim_port));
    let socket = dir.path().join("run/gasdtu.sock");
    let _d = daemon(&config, &socket);
    let occ = wait_until("an active alarm", Duration::from_secs(30), || {
        status_of(&socket)?["alarms"].as_array()?.first()?["occurrence"].as_u64()
    })
    .await;

    // The client claims to be someone else, with a terminal escape in the name.
    let reply = socket_request(
        &socket,
        format!("ack {occ} admin\x1b[2J\n").as_bytes(),
        Duration::from_secs(10),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(reply.trim()).unwrap();
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let by = v["by"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(by.starts_with(&format!("uid {uid}")), "{by}");
    assert!(by.ends_with(", says \"admin\\x1b[2J\""), "{by}");
    assert!(!by.contains('\x1b'), "{by:?}");
    assert_eq!(v["acked"], occ);

    // Modes: the daemon ran with umask 000, yet nothing it created is world-accessible.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o660, "socket");
    assert_eq!(mode(socket.parent().unwrap()), 0o750, "socket directory");
    // The store creates its state directory owner-only (docs/store.md).
    assert_eq!(mode(&state), 0o700, "state directory");
    for entry in std::fs::read_dir(&state).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(
            mode(&p) & 0o007,
            0,
            "{} is accessible to others: {:o}",
            p.display(),
            mode(&p)
        );
    }
    stop.cancel();
}

#[test]
fn a_file_at_the_socket_path_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(dir.path(), None);
    let socket = dir.path().join("gasdtu.sock");
    std::fs::write(&socket, "not a socket").unwrap();
    let mut d = daemon(&config, &socket);
    let stderr = Lines::collect(d.child.stderr.take().unwrap());
    let line = stderr.wait_line("the status socket error", Duration::from_secs(20), |l| {
        l.contains("status socket unavailable")
    });
    assert!(line.contains("is a regular file, not a socket"), "{line}");
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not a socket");
    // The daemon keeps running without its socket.
    assert!(d.child.try_wait().unwrap().is_none());
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_err());
}
