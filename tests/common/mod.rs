//! Shared harness for the integration tests: child processes that die with the test, free
//! loopback ports, pseudo-terminal pairs made by socat, the pinned pymodbus interpreter, and
//! waiting on conditions with deadlines (never bare sleeps).
#![allow(dead_code)]

/// Running the binary as a command-line user does: exit code, stdout, stderr, a deadline.
pub mod cli;
/// The uplink tests' forwarder harness: an in-memory outbox, a running forwarder.
pub mod forwarder;
/// The NB-IoT module simulator (`gasdtu simulate --modem`) on a pty pair.
pub mod modem;
/// The modem tests' start-and-wait fixture: simulator, engine, supervisor, daemon, waits.
pub mod modem_sim;
/// The simulator with a test speaking AT to it raw through the pty's other end.
pub mod modem_term;
/// MQTT: test PKI, mosquitto, subscriber, publisher.
pub mod mqtt;
/// The remote-operations harness (issue 10): daemon, ops CLI, signed requests, answers.
pub mod remote;
/// The Sparkplug end-to-end rig: broker, pymodbus device, host, `gasdtu run` in Sparkplug mode.
pub mod spb_gw;
/// The independent Sparkplug host (tests/py/sparkplug_host.py) as a child process.
pub mod spb_host;
/// The systemd unit's text and entries (the package tests).
pub mod unit_file;
/// Uplink fixtures: the `UplinkConfig` of a gateway under test, batches of readings.
pub mod uplink;
/// The wire tests' gateway: config (pressure transmitter + volume corrector) and daemon.
pub mod wire;

#[allow(unused_imports)]
pub use cli::{gasdtu_run, run_program, Run};
#[allow(unused_imports)]
pub use mqtt::*;
#[allow(unused_imports)] // each test crate uses what it needs
pub use uplink::{data_readings, int_readings, readings, rfc3339_ms, uplink_config};

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }

    /// Wait until a line of stdout contains `needle` (stdout must be piped).
    pub fn wait_stdout_line(&mut self, needle: &str, deadline: Duration) -> String {
        let out = self
            .child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("{}: stdout not piped", self.name));
        let (tx, rx) = std::sync::mpsc::channel();
        let needle = needle.to_string();
        std::thread::spawn(move || {
            let mut found = false;
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if !found && line.contains(&needle) {
                    found = true;
                    let _ = tx.send(line);
                }
            }
        });
        rx.recv_timeout(deadline).unwrap_or_else(|_| {
            panic!(
                "{}: no line containing the marker within {deadline:?}",
                self.name
            )
        })
    }
}

/// Poll `f` until it returns Some, or panic with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Wait until something accepts connections on 127.0.0.1:port.
pub fn wait_port(port: u16, deadline: Duration) {
    wait_for(&format!("127.0.0.1:{port} to accept"), deadline, || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with pymodbus that scripts/test prepared; fails loudly when it is missing.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("GASDTU_PYTHON") {
        return PathBuf::from(p);
    }
    let p = repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test (it creates the venv with pymodbus)",
        p.display()
    );
    p
}

/// Binary under test.
pub fn gasdtu() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gasdtu"))
}

/// A pseudo-terminal pair made by socat: two linked paths; bytes written to one come out of
/// the other. `unplug` stops socat and makes both paths vanish (like an unplugged USB
/// adapter); dropping the pair kills socat and removes the links too.
pub struct PtyPair {
    pub a: PathBuf,
    pub b: PathBuf,
    _socat: Proc,
}

impl PtyPair {
    pub fn new(dir: &Path, tag: &str) -> PtyPair {
        let a = dir.join(format!("{tag}-a"));
        let b = dir.join(format!("{tag}-b"));
        PtyPair::at(a, b)
    }

    /// Create (or re-create) the pair at exactly these paths.
    pub fn at(a: PathBuf, b: PathBuf) -> PtyPair {
        let socat = Proc::spawn(
            "socat",
            Command::new("socat")
                .arg(format!("pty,raw,echo=0,link={}", a.display()))
                .arg(format!("pty,raw,echo=0,link={}", b.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_for("socat pty links", Duration::from_secs(10), || {
            (a.exists() && b.exists()).then_some(())
        });
        PtyPair {
            a,
            b,
            _socat: socat,
        }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        // The Proc guard kills socat with SIGKILL, which leaves the symlinks dangling: remove
        // them so no later test can reach a recycled /dev/pts/N through a stale path.
        let _ = std::fs::remove_file(&self.a);
        let _ = std::fs::remove_file(&self.b);
    }
}

impl PtyPair {
    /// Take the pair away like an unplugged USB adapter: socat is stopped with SIGTERM so it
    /// removes its links (a SIGKILL, as on drop, leaves dangling links behind that could later
    /// point at a pty another test allocates), and any link still left is removed. Returns
    /// once both paths are gone.
    pub fn unplug(mut self) {
        sigterm(&self._socat.child);
        let _ = wait_exit(&mut self._socat.child, Duration::from_secs(5));
        let (a, b) = (self.a.clone(), self.b.clone());
        for p in [&a, &b] {
            // A link that socat could not remove is removed here: the path must vanish.
            let _ = std::fs::remove_file(p);
        }
        wait_for("pty links to vanish", Duration::from_secs(5), || {
            (a.symlink_metadata().is_err() && b.symlink_metadata().is_err()).then_some(())
        });
    }
}

/// `gasdtu simulate --tcp 127.0.0.1:PORT --seed 1 --device ... --fault ...` on a fresh port,
/// accepting connections when this returns.
pub fn simulate_tcp(devices: &[&str], faults: &[&str]) -> (Proc, u16) {
    let mut args = vec!["--seed", "1"];
    for d in devices {
        args.extend(["--device", d]);
    }
    for f in faults {
        args.extend(["--fault", f]);
    }
    simulate_tcp_args(&args)
}

/// `gasdtu simulate --tcp 127.0.0.1:PORT <args>` on a fresh port, accepting connections when
/// this returns.
pub fn simulate_tcp_args(args: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let p = Proc::spawn(
        "gasdtu simulate",
        Command::new(gasdtu())
            .args(["simulate", "--tcp"])
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_port(port, Duration::from_secs(20));
    (p, port)
}

/// Every datagram received on the test's notify socket, with its arrival time.
#[derive(Clone)]
pub struct Notes {
    msgs: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Notes {
    pub fn listen(path: &Path) -> Notes {
        let sock = UnixDatagram::bind(path).unwrap();
        let notes = Notes {
            msgs: Arc::default(),
        };
        let sink = notes.msgs.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let now = Instant::now();
                let mut m = sink.lock().unwrap();
                // One datagram may carry several assignments, one per line.
                for line in text.lines().filter(|l| !l.is_empty()) {
                    m.push((now, line.to_string()));
                }
            }
        });
        notes
    }

    /// How many times `msg` came, whole.
    pub fn count(&self, msg: &str) -> usize {
        self.all().iter().filter(|(_, m)| m == msg).count()
    }

    pub fn all(&self) -> Vec<(Instant, String)> {
        self.msgs.lock().unwrap().clone()
    }

    pub fn since(&self, t: Instant) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|(at, _)| *at >= t)
            .map(|(_, m)| m)
            .collect()
    }

    /// Wait for a message after `t` satisfying `pred`; returns its arrival time and text.
    pub fn wait(
        &self,
        what: &str,
        t: Instant,
        deadline: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> (Instant, String) {
        wait_for(what, deadline, || {
            self.all().into_iter().find(|(at, m)| *at >= t && pred(m))
        })
    }

    /// Wait until `n` WATCHDOG=1 arrived after `from`; returns the arrival of the n-th.
    pub fn wait_pings(&self, what: &str, from: Instant, n: usize, deadline: Duration) -> Instant {
        wait_for(&format!("{n} WATCHDOG=1 pings {what}"), deadline, || {
            self.pings_between(from, Instant::now())
                .get(n.saturating_sub(1))
                .copied()
        })
    }

    pub fn pings_between(&self, from: Instant, to: Instant) -> Vec<Instant> {
        self.all()
            .into_iter()
            .filter(|(at, m)| *at >= from && *at <= to && m == "WATCHDOG=1")
            .map(|(at, _)| at)
            .collect()
    }
}

/// Send signal `sig` (a name such as HUP, STOP) to process `pid` through kill(1).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Send SIGTERM to a child process (through kill(1): no libc dependency).
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {} failed", child.id());
}

/// Wait for a child to exit; None if it is still running after `deadline`.
pub fn wait_exit(child: &mut Child, deadline: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + deadline;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of a piped child stream, collected by a background thread as they arrive.
#[derive(Clone, Default)]
pub struct Lines {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Lines {
    /// Start collecting from `stream` (e.g. `child.stderr.take().unwrap()`).
    pub fn collect(stream: impl std::io::Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().unwrap().push(line);
            }
        });
        lines
    }

    /// Every line so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait until some line satisfies `pred`; returns it.
    pub fn wait_line(&self, what: &str, deadline: Duration, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + deadline;
        loop {
            if let Some(l) = self.snapshot().into_iter().find(|l| pred(l)) {
                return l;
            }
            if Instant::now() > end {
                panic!(
                    "timed out after {deadline:?} waiting for {what}; lines so far:\n{}",
                    self.snapshot().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Async variant of `wait_for` for tokio tests.
pub async fn wait_until<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A value in KiB from /proc/PID/status (`VmRSS`, `VmHWM` ...), if the process is there.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One request line to a daemon's status socket and the raw reply (std only, with a deadline).
pub fn socket_request(path: &Path, line: &[u8], deadline: Duration) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(deadline))?;
    s.set_write_timeout(Some(deadline))?;
    s.write_all(line)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Modbus on the wire (issue 10, remote commands): a TCP tap between the daemon and a
// simulator that counts the write requests passing through it.

/// A Modbus TCP relay on a fresh loopback port to `127.0.0.1:upstream` that counts the
/// write requests (functions 5, 6, 15 and 16) the client sends through it. Its threads end
/// when either side closes.
pub struct ModbusTap {
    pub port: u16,
    writes: Arc<std::sync::atomic::AtomicU64>,
}

impl ModbusTap {
    pub fn start(upstream: u16) -> ModbusTap {
        use std::io::{Read, Write};
        use std::net::TcpStream;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let writes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let w = writes.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
                let w = w.clone();
                std::thread::spawn(move || loop {
                    // One MBAP frame: 7 header bytes (length at 4..6 counts unit + PDU).
                    let mut head = [0u8; 7];
                    if client.read_exact(&mut head).is_err() {
                        let _ = server.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    let len = u16::from_be_bytes([head[4], head[5]]) as usize;
                    let mut pdu = vec![0u8; len.saturating_sub(1)];
                    if client.read_exact(&mut pdu).is_err() {
                        let _ = server.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    if matches!(pdu.first(), Some(5 | 6 | 15 | 16)) {
                        w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    if server.write_all(&head).is_err() || server.write_all(&pdu).is_err() {
                        return;
                    }
                });
            }
        });
        ModbusTap { port, writes }
    }

    /// Write requests seen so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::SeqCst)
    }
}
