//! Shared harness for the integration tests: child processes that die with the test, free
//! loopback ports, pseudo-terminal pairs made by socat, the pinned pymodbus interpreter, and
//! waiting on conditions with deadlines (never bare sleeps).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
