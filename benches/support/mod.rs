//! Shared harness of the process-level benchmarks (poll_cpu, serial_cycle): child processes
//! killed on every path (a Drop guard), loopback ports, socat pty pairs, readings of
//! /proc/<pid>/{stat,status} (CPU ticks, RSS), the machine's description, and writing the
//! report to bench-results/<name>.txt. Errors are strings: a benchmark that cannot run says
//! why and exits non-zero after its guards have cleaned up.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, String>;

/// A child process killed (SIGKILL) and reaped when dropped, on every path.
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
    pub fn spawn(name: &str, cmd: &mut Command) -> Res<Proc> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        Ok(Proc {
            child,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Err if the process has exited.
    pub fn alive(&mut self) -> Res<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) if st.success() => Err(format!(
                "{} exited early with status 0: it stops cleanly only on SIGINT/SIGTERM, so \
                 something outside the benchmark signalled it",
                self.name
            )),
            Ok(Some(st)) => Err(format!("{} exited early: {st}", self.name)),
            Err(e) => Err(format!("{}: cannot query its status: {e}", self.name)),
        }
    }

    /// Hand every line of the child's stderr (which must be piped), with ANSI colour codes
    /// removed, to `f` on a reader thread.
    pub fn on_stderr_lines(&mut self, mut f: impl FnMut(&str) + Send + 'static) -> Res<()> {
        let err = self
            .child
            .stderr
            .take()
            .ok_or_else(|| format!("{}: stderr not piped", self.name))?;
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                f(&strip_ansi(&line));
            }
        });
        Ok(())
    }
}

/// Remove ANSI escape sequences (tracing colours its output even when it is not a terminal).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Poll `f` until it returns Some, or fail with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Res<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > end {
            return Err(format!("timed out after {deadline:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> Res<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot bind an ephemeral loopback port: {e}"))
}

/// Wait until something accepts connections on 127.0.0.1:port.
pub fn wait_port(port: u16, deadline: Duration) -> Res<()> {
    wait_for(&format!("127.0.0.1:{port} to accept"), deadline, || {
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    })
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The gasdtu binary cargo built for this benchmark (bench profile = release settings).
pub fn gasdtu() -> Res<PathBuf> {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_gasdtu"));
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: run the benchmark through `cargo bench`",
            p.display()
        ))
    }
}

/// Fail loudly when socat (used for pty pairs) is not installed.
pub fn require_socat() -> Res<()> {
    match Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`socat -V` failed ({s}); install socat (apt-get install socat)")),
        Err(e) => Err(format!(
            "socat is required for the pty pair but cannot be run: {e}; install socat (apt-get install socat)"
        )),
    }
}

/// A pseudo-terminal pair made by socat; dropping it kills socat.
pub struct PtyPair {
    pub a: PathBuf,
    pub b: PathBuf,
    _socat: Proc,
}

impl PtyPair {
    pub fn new(dir: &Path, tag: &str) -> Res<PtyPair> {
        require_socat()?;
        let a = dir.join(format!("{tag}-a"));
        let b = dir.join(format!("{tag}-b"));
        let socat = Proc::spawn(
            "socat",
            Command::new("socat")
                .arg(format!("pty,raw,echo=0,link={}", a.display()))
                .arg(format!("pty,raw,echo=0,link={}", b.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        wait_for("socat pty links", Duration::from_secs(10), || {
            (a.exists() && b.exists()).then_some(())
        })?;
        Ok(PtyPair {
            a,
            b,
            _socat: socat,
        })
    }
}

/// Clock ticks per second for /proc/<pid>/stat (`getconf CLK_TCK`; 100 if that fails, the
/// value on every Linux architecture gasdtu targets).
pub fn clk_tck() -> (u64, &'static str) {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    match out
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&t| t > 0)
    {
        Some(t) => (t, "getconf CLK_TCK"),
        None => (100, "assumed (getconf CLK_TCK failed)"),
    }
}

/// utime + stime of `pid` (all its threads, living and exited), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Res<u64> {
    let path = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // The command name (field 2) may hold spaces: fields after the last ')' start at 3.
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{path}: no ')' in `{s}`"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 14 is utime, 15 stime (1-based); rest[0] is field 3.
    let get = |i: usize| -> Res<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{path}: field {} unreadable", i + 3))
    };
    Ok(get(11)? + get(12)?)
}

/// On-CPU time of `pid` in nanoseconds, summed over its living threads from
/// /proc/<pid>/task/*/schedstat (the scheduler's exact run time, unlike the clock-tick
/// resolution of /proc/<pid>/stat), and the thread ids it was summed over. Threads that have
/// exited are missing here: compare the id lists of two snapshots.
pub fn sched_ns(pid: u32) -> Res<(u64, Vec<u32>)> {
    let dir = format!("/proc/{pid}/task");
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {dir}: {e}"))?;
    let mut total = 0u64;
    let mut tids = Vec::new();
    for e in rd.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let path = format!("{dir}/{tid}/schedstat");
        // A thread may exit between the listing and the read: skip it.
        let Ok(s) = std::fs::read_to_string(&path) else {
            continue;
        };
        let ns: u64 = s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{path}: unreadable `{s}`"))?;
        total += ns;
        tids.push(tid);
    }
    tids.sort_unstable();
    Ok((total, tids))
}

/// A `kB` value (VmRSS, VmHWM ...) from /proc/<pid>/status, in KiB.
pub fn status_kib(pid: u32, key: &str) -> Res<u64> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    s.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix(':'))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .ok_or_else(|| format!("{path}: no {key}"))
}

/// Threads of `pid` right now.
pub fn threads(pid: u32) -> Res<u64> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    s.lines()
        .find_map(|l| {
            l.strip_prefix("Threads:")
                .and_then(|r| r.trim().parse().ok())
        })
        .ok_or_else(|| format!("{path}: no Threads"))
}

/// A few lines describing the machine the numbers come from.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let mut model = String::from("?");
    if let Ok(mut f) = std::fs::File::open("/proc/cpuinfo") {
        let mut s = String::new();
        if f.read_to_string(&mut s).is_ok() {
            if let Some(m) = s
                .lines()
                .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
            {
                model = m.1.trim().to_string();
            }
        }
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    format!(
        "machine: {cpus} CPUs available, CPU model \"{model}\", Linux {kernel}, load average at start {load}"
    )
}

/// UTC time now as `YYYY-MM-DD HH:MM:SSZ` (no date crate: civil-from-days).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An env var as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> Res<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}=`{v}` is not a whole number")),
        Err(_) => Ok(default),
    }
}

/// Write the report to bench-results/<name>.txt (overwriting) and print it.
pub fn publish(name: &str, text: &str) -> Res<()> {
    let dir = repo_root().join("bench-results");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.txt"));
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    print!("{text}");
    println!("(written to {})", path.display());
    Ok(())
}

/// Run a benchmark body; on error print it and exit 1 (the body's guards have been dropped
/// by then, so no child outlives the benchmark).
pub fn main_with(name: &str, body: impl FnOnce() -> Res<()>) {
    if let Err(e) = body() {
        eprintln!("benchmark {name} FAILED: {e}");
        std::process::exit(1);
    }
}
