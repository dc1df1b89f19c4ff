//! The module simulator with the test holding the host's end of its serial line raw
//! (`Term`: every byte read kept, `until`/`take`/`cmd` consume it): `start` opens that end
//! before `gasdtu simulate --modem <model>` (seed 1, RTT 0.5 s) so no boot text is lost, and
//! `Sim` adds the control socket (`control`, `stats`) and the waits the AT transcripts use;
//! `echo_server` is the loopback TCP peer of the module's sockets. Used by tests/modem_sim.rs
//! and tests/modem_sim_sockets.rs (the code under test is not in the loop: AT is spoken from
//! the test itself; `modem_sim.rs` beside this file is the fixture for engine/supervisor tests).

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{gasdtu, socket_request, wait_for, Proc, PtyPair};

/// How long any wait on the simulator may take.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// The simulated network's round trip that `start` sets (`--modem-rtt 0.5s`).
pub const RTT: Duration = Duration::from_millis(500);

/// The host's end of the modem's serial line: everything read is kept; `until` consumes it.
pub struct Term {
    w: File,
    buf: Arc<Mutex<Vec<u8>>>,
    pos: usize,
}

impl Term {
    pub fn open(path: &std::path::Path) -> Term {
        let f = File::options()
            .read(true)
            .write(true)
            .open(path)
            .expect("open the pty end");
        let mut r = f.try_clone().expect("clone the pty end");
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Term { w: f, buf, pos: 0 }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("write to the pty");
    }

    /// Unread bytes up to and including the first of `needles` that appears; consumed.
    pub fn until_any(&mut self, needles: &[&[u8]]) -> Vec<u8> {
        let what = needles
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect::<Vec<_>>()
            .join(" or ");
        let pos = self.pos;
        let (end, snapshot) = wait_for(&what, DEADLINE, || {
            let b = self.buf.lock().unwrap();
            let rest = &b[pos..];
            needles
                .iter()
                .filter_map(|n| find(rest, n).map(|i| i + n.len()))
                .min()
                .map(|end| (end, rest[..end].to_vec()))
        });
        self.pos += end;
        snapshot
    }

    pub fn until(&mut self, needle: &str) -> String {
        String::from_utf8_lossy(&self.until_any(&[needle.as_bytes()])).into_owned()
    }

    /// Whether `needle` arrives within `within` (consumed up to it if so).
    pub fn arrives(&mut self, needle: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        loop {
            {
                let b = self.buf.lock().unwrap();
                if let Some(i) = find(&b[self.pos..], needle.as_bytes()) {
                    self.pos += i + needle.len();
                    return true;
                }
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Exactly `n` more bytes.
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        let pos = self.pos;
        let out = wait_for(&format!("{n} raw bytes"), DEADLINE, || {
            let b = self.buf.lock().unwrap();
            (b.len() >= pos + n).then(|| b[pos..pos + n].to_vec())
        });
        self.pos += n;
        out
    }

    /// Everything received and not yet consumed.
    pub fn unread(&self) -> Vec<u8> {
        self.buf.lock().unwrap()[self.pos..].to_vec()
    }

    /// Send one command line; the reply up to its final result.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r").as_bytes());
        let r = self.until_any(&[b"\r\nOK\r\n", b"\r\nERROR\r\n", b"ERROR:"]);
        let mut s = String::from_utf8_lossy(&r).into_owned();
        if s.ends_with("ERROR:") {
            s += &self.until("\r\n");
        }
        s
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The simulator on a fresh pty pair, the test holding the other end.
pub struct Sim {
    pub term: Term,
    control: PathBuf,
    _proc: Proc,
    pub pty: Option<PtyPair>,
    _dir: tempfile::TempDir,
}

pub fn start(model: &str, extra: &[&str]) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::new(dir.path(), "modem");
    // Open the host end first so the boot text is not lost.
    let term = Term::open(&pty.b);
    let control = dir.path().join("modem.ctl");
    let mut cmd = Command::new(gasdtu());
    cmd.args(["simulate", "--seed", "1", "--modem", model, "--modem-port"])
        .arg(&pty.a)
        .arg("--modem-control")
        .arg(&control)
        .args(["--modem-rtt", "0.5s"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let proc = Proc::spawn("gasdtu simulate --modem", &mut cmd);
    wait_for("the control socket", DEADLINE, || {
        control.exists().then_some(())
    });
    Sim {
        term,
        control,
        _proc: proc,
        pty: Some(pty),
        _dir: dir,
    }
}

impl Sim {
    pub fn control(&self, line: &str) -> String {
        socket_request(&self.control, format!("{line}\n").as_bytes(), DEADLINE)
            .unwrap_or_else(|e| panic!("control `{line}`: {e}"))
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(self.control("stats").trim()).expect("stats is JSON")
    }

    /// Send `line`; its reply must be exactly `want` (for replies that do not end in OK).
    pub fn send_expect(&mut self, line: &str, want: &str) {
        self.term.send(format!("{line}\r").as_bytes());
        assert_eq!(self.term.until(want), want, "{line}");
    }

    /// Poll AT+CEREG? until the module reports registered (home).
    pub fn wait_registered(&mut self, reply: &str) {
        let end = Instant::now() + DEADLINE;
        loop {
            let r = self.term.cmd("AT+CEREG?");
            if r.contains(reply) {
                return;
            }
            assert!(Instant::now() < end, "not registered in time: {r:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn boot_end(model: &str) -> &'static str {
    match model {
        "bc95" => "Neul \r\n\r\nOK\r\n",
        "bg96" => "APP RDY\r\n",
        _ => "+CPIN: READY\r\n",
    }
}

/// A TCP echo server on loopback for one connection: echoes `total` bytes, then closes.
pub fn echo_server(total: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut c, _)) = l.accept() else { return };
        let mut seen = 0;
        let mut buf = [0u8; 4096];
        while seen < total {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    seen += n;
                    if c.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    port
}
