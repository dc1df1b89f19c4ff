//! Shared harness of the process-level benchmarks (poll_cpu, serial_cycle): child processes
//! killed on every path (a Drop guard), loopback ports, socat pty pairs, readings of
//! /proc/<pid>/{stat,status} (CPU ticks, RSS), the machine's description, and writing the
//! report to bench-results/<name>.txt; submodules: `tls` (mutual TLS: PKI, rustls client
//! config), `ops` (an ops platform's MQTT client for the remote-operations benchmark) and
//! `stats` (latency percentiles of `Duration` samples). Errors are strings: a benchmark that
//! cannot run says why and exits non-zero after its guards have cleaned up.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod ops;
pub mod stats;
pub mod tls;

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
    let per = thread_sched_ns(pid)?;
    Ok((per.values().sum(), per.into_keys().collect()))
}

/// On-CPU ns of each living thread of `pid` (/proc/<pid>/task/*/schedstat), by thread id.
pub fn thread_sched_ns(pid: u32) -> Res<std::collections::BTreeMap<u32, u64>> {
    let dir = format!("/proc/{pid}/task");
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {dir}: {e}"))?;
    let mut out = std::collections::BTreeMap::new();
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
        out.insert(tid, ns);
    }
    Ok(out)
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

// ---------------------------------------------------------------------------------------
// MQTT side of the uplink benchmarks (backlog_drain, uplink_workload): a mosquitto broker on
// loopback ports, a rumqttc subscriber that records what arrives, decoding of payloads into
// readings, and /proc/<pid>/io.

/// Send SIGTERM to a child (through kill(1): no libc dependency).
pub fn sigterm(pid: u32) -> Res<()> {
    let st = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("cannot run kill -TERM {pid}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("kill -TERM {pid} failed: {st}"))
    }
}

/// Wait for a child to exit; Err if it still runs after `deadline`.
pub fn wait_exit(p: &mut Proc, deadline: Duration) -> Res<std::process::ExitStatus> {
    let name = p.name.clone();
    wait_for(&format!("{name} to exit"), deadline, || {
        p.child.try_wait().ok().flatten()
    })
}

/// Fail loudly when mosquitto is not installed.
pub fn require_mosquitto() -> Res<()> {
    match Command::new("mosquitto")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        // `mosquitto -h` exits 3 after printing its usage; any exit means it ran.
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "mosquitto is required but cannot be run: {e}; install it (apt-get install mosquitto)"
        )),
    }
}

/// TLS listener material for `Mosquitto` (PEM paths).
#[derive(Clone, Debug)]
pub struct BrokerTls {
    pub port: u16,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// mosquitto with a plain listener on 127.0.0.1:`port` (and optionally a TLS one), killed
/// when dropped. With `persistence`, subscriptions and queued QoS 1 messages of persistent
/// sessions survive `stop()` + `start()`. Per-client queues are unlimited so that a
/// subscriber slower than the publisher loses nothing (mosquitto drops beyond 1000 by default).
/// `user root`: started as root, mosquitto would switch to the `mosquitto` user and then fail
/// to write its persistence file into our root-owned temp dir ("Error: Permission denied"),
/// silently losing persistent sessions across a restart; as a normal user the line is ignored.
pub struct Mosquitto {
    pub port: u16,
    pub tls: Option<BrokerTls>,
    conf: PathBuf,
    proc: Option<Proc>,
}

impl Mosquitto {
    pub fn new(dir: &Path, persistence: bool, tls: Option<BrokerTls>) -> Res<Mosquitto> {
        Mosquitto::with_client_auth(dir, persistence, tls, false, "")
    }

    /// As `new`; with `require_certificate` the TLS listener accepts only clients that present
    /// a certificate signed by `tls.ca` (mutual TLS, as a production broker for gateways).
    /// `extra` is appended to the generated mosquitto.conf (global options, one per line).
    pub fn with_client_auth(
        dir: &Path,
        persistence: bool,
        tls: Option<BrokerTls>,
        require_certificate: bool,
        extra: &str,
    ) -> Res<Mosquitto> {
        require_mosquitto()?;
        let port = free_port()?;
        let mut conf = format!(
            "per_listener_settings false\nallow_anonymous true\nmax_queued_messages 0\nuser root\n\
             log_dest stderr\nlog_type error\nlog_type warning\nlistener {port} 127.0.0.1\n"
        );
        if let Some(t) = &tls {
            conf.push_str(&format!(
                "listener {} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
                t.port,
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            ));
            if require_certificate {
                conf.push_str("require_certificate true\n");
            }
        }
        if persistence {
            let p = dir.join(format!("mosq-{port}"));
            std::fs::create_dir_all(&p).map_err(|e| format!("mkdir {p:?}: {e}"))?;
            conf.push_str(&format!(
                "persistence true\npersistence_location {}/\n",
                p.display()
            ));
        } else {
            conf.push_str("persistence false\n");
        }
        conf.push_str(extra);
        if !extra.is_empty() && !extra.ends_with('\n') {
            conf.push('\n');
        }
        let path = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(&path, conf).map_err(|e| format!("write {path:?}: {e}"))?;
        let mut m = Mosquitto {
            port,
            tls,
            conf: path,
            proc: None,
        };
        m.start()?;
        Ok(m)
    }

    /// Start (again, on the same ports) and wait until it accepts connections.
    pub fn start(&mut self) -> Res<()> {
        if self.proc.is_some() {
            return Err("mosquitto already running".into());
        }
        let p = Proc::spawn(
            "mosquitto",
            Command::new("mosquitto")
                .arg("-c")
                .arg(&self.conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        )?;
        self.proc = Some(p);
        wait_port(self.port, Duration::from_secs(10))?;
        if let Some(t) = &self.tls {
            wait_port(t.port, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Stop with SIGTERM (mosquitto saves its persistence file) and wait for the exit.
    pub fn stop(&mut self) -> Res<()> {
        if let Some(mut p) = self.proc.take() {
            sigterm(p.pid())?;
            wait_exit(&mut p, Duration::from_secs(10))?;
        }
        Ok(())
    }

    pub fn alive(&mut self) -> Res<()> {
        match self.proc.as_mut() {
            Some(p) => p.alive(),
            None => Err("mosquitto is not running".into()),
        }
    }
}

/// A test PKI made with rcgen in `dir`: `ca.pem`, `server.pem`/`server.key` for 127.0.0.1 and
/// localhost.
pub fn make_pki(dir: &Path) -> Res<(PathBuf, PathBuf, PathBuf)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let e = |x: rcgen::Error| format!("rcgen: {x}");
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.distinguished_name
        .push(DnType::CommonName, "gasdtu bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(e)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf =
        CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).map_err(e)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().map_err(e)?;
    let cert = leaf.signed_by(&key, &issuer).map_err(e)?;
    let (a, b, c) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    for (p, text) in [
        (&a, ca_cert.pem()),
        (&b, cert.pem()),
        (&c, key.serialize_pem()),
    ] {
        std::fs::write(p, text).map_err(|e| format!("write {p:?}: {e}"))?;
    }
    Ok((a, b, c))
}

/// One message the subscriber received, with the wall-clock time (UTC ms) it arrived.
#[derive(Clone, Debug)]
pub struct RxMsg {
    pub recv_ms: i64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// A rumqttc subscriber (plain TCP, QoS 1) on its own thread and runtime, recording every
/// message on `filter`. It reconnects by itself (every 50 ms after a failure); with
/// `persistent` its session stays on the broker (clean_session = false) so that messages
/// published while it reconnects are queued for it. Stopped and joined when dropped.
pub struct Subscriber {
    pub msgs: std::sync::Arc<std::sync::Mutex<Vec<RxMsg>>>,
    /// SUBACKs received (one per (re)connection).
    pub subscribed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// UTC ms of every CONNACK.
    pub connacks: std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Subscriber {
    pub fn start(port: u16, filter: &str, id: &str, persistent: bool) -> Res<Subscriber> {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("subscriber runtime: {e}"))?;
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_session(!persistent);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_inflight(100);
        let msgs: Arc<Mutex<Vec<RxMsg>>> = Arc::default();
        let subscribed = Arc::new(AtomicU64::new(0));
        let connacks: Arc<Mutex<Vec<i64>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s, c, st, filter) = (
            msgs.clone(),
            subscribed.clone(),
            connacks.clone(),
            stop.clone(),
            filter.to_string(),
        );
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let (client, mut el) = AsyncClient::new(o, 100);
                while !st.load(Ordering::SeqCst) {
                    let ev = match tokio::time::timeout(Duration::from_millis(200), el.poll()).await
                    {
                        Ok(ev) => ev,
                        Err(_) => continue,
                    };
                    match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            if let Ok(mut v) = c.lock() {
                                v.push(now_ms());
                            }
                            let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            s.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let rx = RxMsg {
                                recv_ms: now_ms(),
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            };
                            if let Ok(mut v) = m.lock() {
                                v.push(rx);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            });
        });
        Ok(Subscriber {
            msgs,
            subscribed,
            connacks,
            stop,
            thread: Some(thread),
        })
    }

    pub fn wait_subscribed(&self, n: u64, deadline: Duration) -> Res<()> {
        wait_for("the subscriber's SUBACK", deadline, || {
            (self.subscribed.load(std::sync::atomic::Ordering::SeqCst) >= n).then_some(())
        })
    }

    pub fn len(&self) -> usize {
        self.msgs.lock().map(|v| v.len()).unwrap_or(0)
    }

    pub fn snapshot(&self) -> Vec<RxMsg> {
        self.msgs.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// One reading of a decoded data message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reading {
    pub device: String,
    pub point: String,
    pub t_ms: i64,
}

/// A decoded data message: sequence number, historical flag, readings.
pub struct DataMsg {
    pub gw: String,
    pub seq: u64,
    pub hist: bool,
    pub readings: Vec<Reading>,
}

fn parse_ms(s: &str) -> Res<i64> {
    humantime::parse_rfc3339(s)
        .map_err(|e| format!("time {s:?}: {e}"))
        .map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        })
}

/// Decode a data payload (JSON or CBOR) with `gasdtu::uplink::decode` and list its readings
/// (good and bad points alike).
pub fn decode_data(payload: &[u8]) -> Res<DataMsg> {
    let j = gasdtu::uplink::decode(payload).map_err(|e| e.to_string())?;
    let gw = j["gw"].as_str().unwrap_or("").to_string();
    let seq = j["seq"]
        .as_u64()
        .ok_or_else(|| format!("payload without seq: {j}"))?;
    let hist = j["hist"].as_bool().unwrap_or(false);
    let mut readings = Vec::new();
    for d in j["data"].as_array().map(|v| v.as_slice()).unwrap_or(&[]) {
        let dev = d["dev"].as_str().unwrap_or("").to_string();
        for r in d["reads"].as_array().map(|v| v.as_slice()).unwrap_or(&[]) {
            let t = parse_ms(r["t"].as_str().unwrap_or(""))?;
            for key in ["v", "bad"] {
                if let Some(m) = r[key].as_object() {
                    for p in m.keys() {
                        readings.push(Reading {
                            device: dev.clone(),
                            point: p.clone(),
                            t_ms: t,
                        });
                    }
                }
            }
        }
    }
    Ok(DataMsg {
        gw,
        seq,
        hist,
        readings,
    })
}

/// `write_bytes` and `wchar` of /proc/<pid>/io.
pub fn proc_io(pid: u32) -> Res<(u64, u64)> {
    let path = format!("/proc/{pid}/io");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let field = |name: &str| -> Res<u64> {
        s.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .ok_or_else(|| format!("{path}: no {name}"))
    };
    Ok((field("write_bytes:")?, field("wchar:")?))
}

/// Percentile (0..=100) of a sorted slice (nearest rank).
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The 10-point benchmark device (one 14-register read per poll: floats, 32-bit totals,
/// battery, status word and two of its bits, the shape of a small volume corrector), shared
/// by poll_cpu, uplink_workload and backlog_drain so their figures compare.
pub const PROFILE: &str = r#"
[profile]
id = "bench10"
name = "Benchmark device, 10 points"
follows = "none: a synthetic map for the poll_cpu benchmark (gasdtu benches/poll_cpu.rs)"
description = "Flows, pressure, temperature, two 32-bit totals, battery, status and two status bits in 14 holding registers"
default_order = "ABCD"

[points.flow_standard]
table = "holding"
address = 0
type = "f32"
unit = "Sm3/h"

[points.flow_measured]
table = "holding"
address = 2
type = "f32"
unit = "m3/h"

[points.pressure]
table = "holding"
address = 4
type = "f32"
unit = "kPa"

[points.temperature]
table = "holding"
address = 6
type = "f32"
unit = "degC"

[points.volume_standard]
table = "holding"
address = 8
type = "u32"
unit = "Sm3"

[points.volume_measured]
table = "holding"
address = 10
type = "u32"
unit = "m3"

[points.battery]
table = "holding"
address = 12
type = "u16"
unit = "%"

[points.status]
table = "holding"
address = 13
type = "u16"

[points.status_low_battery]
table = "holding"
address = 13
type = "bit"
bit = 0

[points.status_tamper]
table = "holding"
address = 13
type = "bit"
bit = 1
"#;

/// `gasdtu check --config path`: a benchmark config the validator refuses is an error.
pub fn check_config(bin: &Path, path: &Path) -> Res<()> {
    let out = Command::new(bin)
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .map_err(|e| format!("gasdtu check: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gasdtu check refused the benchmark config ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}
