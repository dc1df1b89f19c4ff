//! `gasdtu simulate --modem <model>` end to end: the real binary on a pty pair made by socat,
//! AT spoken from the test through the other pty end as raw bytes. Per model (BC66 and SIM7080:
//! the socket round trip only): a transcript
//! (ATI, registration within a deadline, the model's signal command, BC95's missing spaces),
//! a socket round trip through the module to a local TCP echo server (bytes intact, the
//! model's data URC formats, the peer's close URC, and pacing: a 2 KB transfer takes at least
//! its downlink serialization time plus the RTT — a lower bound only), hang and power cycle
//! through the control socket, the sleep quirk (a bare CRLF), URCs inside replies, network-closed
//! sockets, runtime faults, and the serial line vanishing and coming back.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{gasdtu, socket_request, wait_for, Proc, PtyPair};

const DEADLINE: Duration = Duration::from_secs(20);
const RTT: Duration = Duration::from_millis(500);

/// The host's end of the modem's serial line: everything read is kept; `until` consumes it.
struct Term {
    w: File,
    buf: Arc<Mutex<Vec<u8>>>,
    pos: usize,
}

impl Term {
    fn open(path: &std::path::Path) -> Term {
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

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("write to the pty");
    }

    /// Unread bytes up to and including the first of `needles` that appears; consumed.
    fn until_any(&mut self, needles: &[&[u8]]) -> Vec<u8> {
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

    fn until(&mut self, needle: &str) -> String {
        String::from_utf8_lossy(&self.until_any(&[needle.as_bytes()])).into_owned()
    }

    /// Whether `needle` arrives within `within` (consumed up to it if so).
    fn arrives(&mut self, needle: &str, within: Duration) -> bool {
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
    fn take(&mut self, n: usize) -> Vec<u8> {
        let pos = self.pos;
        let out = wait_for(&format!("{n} raw bytes"), DEADLINE, || {
            let b = self.buf.lock().unwrap();
            (b.len() >= pos + n).then(|| b[pos..pos + n].to_vec())
        });
        self.pos += n;
        out
    }

    /// Everything received and not yet consumed.
    fn unread(&self) -> Vec<u8> {
        self.buf.lock().unwrap()[self.pos..].to_vec()
    }

    /// Send one command line; the reply up to its final result.
    fn cmd(&mut self, line: &str) -> String {
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
struct Sim {
    term: Term,
    control: PathBuf,
    _proc: Proc,
    pty: Option<PtyPair>,
    _dir: tempfile::TempDir,
}

fn start(model: &str, extra: &[&str]) -> Sim {
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
    fn control(&self, line: &str) -> String {
        socket_request(&self.control, format!("{line}\n").as_bytes(), DEADLINE)
            .unwrap_or_else(|e| panic!("control `{line}`: {e}"))
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::from_str(self.control("stats").trim()).expect("stats is JSON")
    }

    /// Send `line`; its reply must be exactly `want` (for replies that do not end in OK).
    fn send_expect(&mut self, line: &str, want: &str) {
        self.term.send(format!("{line}\r").as_bytes());
        assert_eq!(self.term.until(want), want, "{line}");
    }

    /// Poll AT+CEREG? until the module reports registered (home).
    fn wait_registered(&mut self, reply: &str) {
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

fn boot_end(model: &str) -> &'static str {
    match model {
        "bc95" => "Neul \r\n\r\nOK\r\n",
        "bg96" => "APP RDY\r\n",
        _ => "+CPIN: READY\r\n",
    }
}

#[test]
fn bg96_transcript() {
    let mut s = start("bg96", &[]);
    s.term.until(boot_end("bg96"));
    assert_eq!(s.term.cmd("AT"), "AT\r\r\nOK\r\n", "echo on by default");
    assert_eq!(
        s.term.cmd("ATI"),
        "ATI\r\r\nQuectel\r\n\r\nBG96\r\n\r\nRevision: BG96MAR02A07M1G\r\n\r\nOK\r\n"
    );
    assert_eq!(s.term.cmd("ATE0"), "ATE0\r\r\nOK\r\n");
    s.wait_registered("+CEREG: 0,1\r\n");
    let q = s.term.cmd("AT+QCSQ");
    assert_eq!(q, "\r\n+QCSQ: \"NBIoT\",-73,-85,150,-11\r\n\r\nOK\r\n");
    assert_eq!(s.control("signal -110 -2 2").trim(), "ok");
    let q = s.term.cmd("AT+QENG=\"servingcell\"");
    assert!(
        q.starts_with("\r\n+QENG: \"servingcell\",\"NOCONN\",\"CAT-NB\",\"FDD\",460,00,")
            && q.contains(",-110,-11,-98,-2,-\r\n"),
        "{q}"
    );
    assert_eq!(s.term.cmd("AT+CEREG=9"), "\r\n+CME ERROR: 50\r\n");
    assert_eq!(s.term.cmd("AT+WHAT"), "\r\nERROR\r\n");
}

#[test]
fn bc95_transcript_has_no_spaces() {
    let mut s = start("bc95", &[]);
    let boot = s.term.until(boot_end("bc95"));
    assert!(boot.contains("REBOOT_CAUSE_SECURITY_RESET_PIN"), "{boot:?}");
    assert_eq!(s.term.cmd("AT"), "\r\nOK\r\n", "echo off by default");
    assert_eq!(
        s.term.cmd("ATI"),
        "\r\nQuectel\r\n\r\nBC95-B8\r\n\r\nRevision:BC95HBR01A01\r\n\r\nOK\r\n"
    );
    s.wait_registered("+CEREG:0,1\r\n");
    assert_eq!(s.term.cmd("AT+CSQ"), "\r\n+CSQ:20,99\r\n\r\nOK\r\n");
    assert_eq!(s.term.cmd("AT+CGATT?"), "\r\n+CGATT:1\r\n\r\nOK\r\n");
    assert_eq!(s.term.cmd("AT+CEREG=9"), "\r\n+CME ERROR:50\r\n");
    let n = s.term.cmd("AT+NUESTATS");
    assert!(
        n.starts_with("\r\nSignal power:-850\r\n") && n.contains("\r\nECL:0\r\n"),
        "{n}"
    );
    // Registration loss from the control socket: "+CEREG:2" then back to 1.
    assert_eq!(s.term.cmd("AT+CEREG=1"), "\r\nOK\r\n");
    assert_eq!(s.control("deregister 1").trim(), "ok");
    s.term.until("\r\n+CEREG:2\r\n");
    s.term.until("\r\n+CEREG:1\r\n");
}

#[test]
fn sim7020_transcript() {
    let mut s = start("sim7020", &[]);
    s.term.until(boot_end("sim7020"));
    assert_eq!(s.term.cmd("ATI"), "ATI\r\r\nSIM7020E R1752\r\n\r\nOK\r\n");
    assert_eq!(
        s.term.cmd("AT+CGMM"),
        "AT+CGMM\r\r\nSIMCOM_SIM7020E\r\n\r\nOK\r\n"
    );
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    assert_eq!(
        s.term.cmd("AT+CENG?"),
        "\r\n+CENG: 3569,0,98,\"01A2D001\",-85,-11,-73,10,8,\"5504\",0,23\r\n\r\nOK\r\n"
    );
}

/// A TCP echo server on loopback for one connection: echoes `total` bytes, then closes.
fn echo_server(total: usize) -> u16 {
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

/// 2 KB that include CR, LF and every other byte value.
fn payload() -> Vec<u8> {
    (0..2048u32).map(|i| (i * 7 % 256) as u8).collect()
}

/// The least time 2 KB can take through the module and back: all of it serialized on the
/// 8 kbit/s downlink, plus one RTT of propagation.
fn lower_bound(n: usize) -> Duration {
    Duration::from_secs_f64(n as f64 * 8.0 / 8000.0) + RTT
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn bg96_socket_round_trip_push_mode() {
    let mut s = start("bg96", &[]);
    s.term.until(boot_end("bg96"));
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    assert_eq!(s.term.cmd("AT+QIACT=1"), "\r\nOK\r\n");
    let data = payload();
    let port = echo_server(data.len());
    assert_eq!(
        s.term
            .cmd(&format!("AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",{port},0,1")),
        "\r\nOK\r\n"
    );
    s.term.until("\r\n+QIOPEN: 0,0\r\n");
    // Over the per-send limit: ERROR.
    assert_eq!(s.term.cmd("AT+QISEND=0,1461"), "\r\nERROR\r\n");
    let t0 = Instant::now();
    for part in data.chunks(1460) {
        s.term
            .send(format!("AT+QISEND=0,{}\r", part.len()).as_bytes());
        s.term.until("\r\n> ");
        s.term.send(part);
        s.term.until("\r\nSEND OK\r\n");
    }
    let mut got = Vec::new();
    while got.len() < data.len() {
        s.term.until("+QIURC: \"recv\",0,");
        let n: usize = s.term.until("\r\n").trim().parse().expect("a length");
        got.extend(s.term.take(n));
    }
    let took = t0.elapsed();
    assert_eq!(got, data, "bytes arrive intact");
    assert!(
        took >= lower_bound(data.len()),
        "2 KB round trip in {took:?}, below the link's {:?}",
        lower_bound(data.len())
    );
    eprintln!("bg96: 2 KB echoed in {took:?}");
    s.term.until("\r\n+QIURC: \"closed\",0\r\n");
    assert_eq!(s.term.cmd("AT+QICLOSE=0"), "\r\nOK\r\n");
    let st = s.stats();
    assert_eq!(st["sockets_opened"], 1);
    assert_eq!(st["bytes_up"], 2048);
    assert_eq!(st["bytes_down"], 2048);
}

#[test]
fn bg96_buffer_mode_and_refused_host() {
    let mut s = start("bg96", &[]);
    s.term.until(boot_end("bg96"));
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    s.term.cmd("AT+QIACT=1");
    assert_eq!(
        s.term.cmd("AT+QIOPEN=1,1,\"TCP\",\"10.0.0.1\",80,0,0"),
        "\r\nOK\r\n"
    );
    s.term.until("\r\n+QIOPEN: 1,566\r\n");
    let port = echo_server(5);
    s.term
        .cmd(&format!("AT+QIOPEN=1,2,\"TCP\",\"127.0.0.1\",{port},0,0"));
    s.term.until("\r\n+QIOPEN: 2,0\r\n");
    s.term.send(b"AT+QISEND=2,5\r");
    s.term.until("\r\n> ");
    s.term.send(b"he\r\no");
    s.term.until("\r\nSEND OK\r\n");
    s.term.until("\r\n+QIURC: \"recv\",2\r\n");
    assert_eq!(
        s.term.cmd("AT+QIRD=2,1500"),
        "\r\n+QIRD: 5\r\nhe\r\no\r\n\r\nOK\r\n"
    );
}

#[test]
fn bc95_socket_round_trip_hex() {
    let mut s = start("bc95", &[]);
    s.term.until(boot_end("bc95"));
    s.wait_registered("+CEREG:0,1\r\n");
    let data = payload();
    let port = echo_server(data.len());
    assert_eq!(s.term.cmd("AT+NSOCR=STREAM,6,0,1"), "\r\n0\r\n\r\nOK\r\n");
    assert_eq!(
        s.term.cmd(&format!("AT+NSOCO=0,127.0.0.1,{port}")),
        "\r\nOK\r\n"
    );
    let too_big = format!("AT+NSOSD=0,513,{}", "00".repeat(513));
    assert_eq!(s.term.cmd(&too_big), "\r\n+CME ERROR:50\r\n");
    let t0 = Instant::now();
    for part in data.chunks(512) {
        let r = s
            .term
            .cmd(&format!("AT+NSOSD=0,{},{}", part.len(), hex(part)));
        assert_eq!(r, format!("\r\n0,{}\r\n\r\nOK\r\n", part.len()));
    }
    let mut got = Vec::new();
    while got.len() < data.len() {
        s.term.until("+NSONMI:0,");
        s.term.until("\r\n");
        loop {
            let r = s.term.cmd("AT+NSORF=0,512");
            if r == "\r\nOK\r\n" {
                break;
            }
            // "0,127.0.0.1,<port>,<len>,<hex>,<remaining>"
            let line = r
                .trim_start()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 6, "{line}");
            assert_eq!((f[0], f[1]), ("0", "127.0.0.1"));
            assert_eq!(f[2], port.to_string());
            let bytes = unhex(f[4]);
            assert_eq!(bytes.len(), f[3].parse::<usize>().unwrap());
            got.extend(bytes);
            if f[5] == "0" {
                break;
            }
        }
    }
    let took = t0.elapsed();
    assert_eq!(got, data);
    assert!(took >= lower_bound(data.len()), "{took:?}");
    eprintln!("bc95: 2 KB echoed in {took:?}");
    s.term.until("\r\n+NSOCLI: 0\r\n");
    assert_eq!(s.term.cmd("AT+NSOCL=0"), "\r\nOK\r\n");
}

#[test]
fn sim7020_socket_round_trip_hex() {
    let mut s = start("sim7020", &[]);
    s.term.until(boot_end("sim7020"));
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    let data = payload();
    let port = echo_server(data.len());
    assert_eq!(s.term.cmd("AT+CSOC=1,1,1"), "\r\n+CSOC: 0\r\n\r\nOK\r\n");
    assert_eq!(
        s.term.cmd(&format!("AT+CSOCON=0,{port},\"127.0.0.1\"")),
        "\r\nOK\r\n"
    );
    let t0 = Instant::now();
    for part in data.chunks(512) {
        let h = hex(part);
        assert_eq!(
            s.term.cmd(&format!("AT+CSOSEND=0,{},{h}", h.len())),
            "\r\nOK\r\n"
        );
    }
    let mut got = Vec::new();
    while got.len() < data.len() {
        s.term.until("\r\n+CSONMI: 0,");
        let line = s.term.until("\r\n");
        let (count, h) = line.trim().split_once(',').expect("count,hex");
        assert_eq!(count.parse::<usize>().unwrap(), h.len());
        got.extend(unhex(h));
    }
    let took = t0.elapsed();
    assert_eq!(got, data);
    assert!(took >= lower_bound(data.len()), "{took:?}");
    eprintln!("sim7020: 2 KB echoed in {took:?}");
    s.term.until("\r\n+CSOERR: 0,4\r\n");
    assert_eq!(s.term.cmd("AT+CSOCL=0"), "\r\nOK\r\n");
}

#[test]
fn bc66_socket_round_trip_hex_data_format() {
    let mut s = start("bc66", &[]);
    s.term.until(boot_end("bc66"));
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    let data = payload();
    let port = echo_server(data.len());
    assert_eq!(s.term.cmd("AT+QICFG=\"dataformat\",1,1"), "\r\nOK\r\n");
    s.term
        .cmd(&format!("AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",{port},0,0"));
    s.term.until("\r\n+QIOPEN: 0,0\r\n");
    let t0 = Instant::now();
    for part in data.chunks(512) {
        let r = s
            .term
            .cmd(&format!("AT+QISEND=0,{},{}", part.len(), hex(part)));
        assert_eq!(r, "\r\nOK\r\n");
        s.term.until("\r\nSEND OK\r\n");
    }
    s.term.until("\r\n+QIURC: \"recv\",0\r\n");
    let mut got = Vec::new();
    let end = Instant::now() + DEADLINE;
    while got.len() < data.len() {
        assert!(
            Instant::now() < end,
            "{} of {} bytes",
            got.len(),
            data.len()
        );
        let r = s.term.cmd("AT+QIRD=0,512");
        let line = r
            .lines()
            .find(|l| l.starts_with("+QIRD: "))
            .unwrap_or_else(|| panic!("{r:?}"));
        let body = &line["+QIRD: ".len()..];
        let (n, h) = body.split_once(',').unwrap_or((body, ""));
        let bytes = unhex(h);
        assert_eq!(bytes.len(), n.parse::<usize>().unwrap(), "{line}");
        assert!(bytes.len() <= 512);
        if bytes.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
        got.extend(bytes);
    }
    let took = t0.elapsed();
    assert_eq!(got, data);
    assert!(took >= lower_bound(data.len()), "{took:?}");
    eprintln!("bc66: 2 KB echoed in {took:?}");
    s.term.until("\r\n+QIURC: \"closed\",0\r\n");
    s.send_expect("AT+QICLOSE=0", "\r\nCLOSE OK\r\n");
}

#[test]
fn sim7080_ca_socket_round_trip_binary_in_the_line() {
    let mut s = start("sim7080", &[]);
    s.term.until(boot_end("sim7080"));
    s.term.cmd("ATE0");
    s.wait_registered("+CEREG: 0,1\r\n");
    // 2 KB that start with what would end a reply if it were read as lines.
    let mut data = b"\r\nOK\r\n".to_vec();
    data.extend(&payload()[6..]);
    let port = echo_server(data.len());
    assert_eq!(s.term.cmd("AT+CNACT=0,1"), "\r\nOK\r\n");
    s.term.until("\r\n+APP PDP: 0,ACTIVE\r\n");
    assert_eq!(
        s.term
            .cmd(&format!("AT+CAOPEN=0,0,\"TCP\",\"127.0.0.1\",{port}")),
        "\r\n+CAOPEN: 0,0\r\n\r\nOK\r\n"
    );
    let t0 = Instant::now();
    for part in data.chunks(1460) {
        s.term
            .send(format!("AT+CASEND=0,{}\r", part.len()).as_bytes());
        s.term.until("\r\n>");
        s.term.send(part);
        s.term.until("\r\nOK\r\n");
    }
    s.term.until("\r\n+CADATAIND: 0\r\n");
    let mut got = Vec::new();
    let end = Instant::now() + DEADLINE;
    while got.len() < data.len() {
        assert!(
            Instant::now() < end,
            "{} of {} bytes",
            got.len(),
            data.len()
        );
        s.term.send(b"AT+CARECV=0,1460\r");
        s.term.until("+CARECV: ");
        let head = String::from_utf8_lossy(&s.term.until_any(&[b",", b"\r\n"])).into_owned();
        let n: usize = head.trim_end_matches([',', '\r', '\n']).parse().unwrap();
        assert!(n <= 1460);
        if head.ends_with(',') {
            got.extend(s.term.take(n));
        } else {
            assert_eq!(n, 0);
            std::thread::sleep(Duration::from_millis(50));
        }
        s.term.until("\r\nOK\r\n");
    }
    let took = t0.elapsed();
    assert_eq!(got, data, "bytes arrive intact");
    assert!(took >= lower_bound(data.len()), "{took:?}");
    eprintln!("sim7080: 2 KB echoed in {took:?}");
    s.term.until("\r\n+CASTATE: 0,0\r\n");
    assert_eq!(s.term.cmd("AT+CACLOSE=0"), "\r\nOK\r\n");
}

#[test]
fn hang_until_power_cycle() {
    let mut s = start("bg96", &[]);
    s.term.until(boot_end("bg96"));
    assert_eq!(s.term.cmd("AT"), "AT\r\r\nOK\r\n");
    assert_eq!(s.control("hang").trim(), "ok");
    let before = s.stats()["bytes_in"].as_u64().unwrap();
    s.term.send(b"AT\r");
    wait_for("the hung module to take the bytes", DEADLINE, || {
        (s.stats()["bytes_in"].as_u64().unwrap() >= before + 3).then_some(())
    });
    assert_eq!(s.stats()["state"], "hung");
    assert_eq!(s.control("power-cycle").trim(), "ok");
    let boot = s.term.until(boot_end("bg96"));
    assert!(
        boot.starts_with("\r\nRDY\r\n"),
        "a hung module said something before its boot text: {boot:?}"
    );
    assert_eq!(s.term.cmd("AT"), "AT\r\r\nOK\r\n");
    let st = s.stats();
    assert_eq!(st["power_cycles"], 1);
    assert_ne!(st["state"], "hung");
    // And a reboot through the control socket: boot text again.
    assert_eq!(s.control("reboot").trim(), "ok");
    s.term.until(boot_end("bg96"));
    assert!(s.control("bogus").starts_with("error:"));
}

#[test]
fn sleep_quirk_answers_a_bare_crlf() {
    let mut s = start("bc95", &["--modem-fault", "sleep:1s"]);
    s.term.until(boot_end("bc95"));
    // The quirk needs the module idle for its sleep timer: that wait is the condition itself.
    std::thread::sleep(Duration::from_millis(1200));
    s.term.send(b"AT\rAT\r");
    let r = s.term.until("\r\nOK\r\n");
    assert_eq!(r, "\r\n\r\nOK\r\n", "first reply lost, the retry answered");
    assert!(s.term.unread().is_empty());
}

#[test]
fn urcs_inside_replies_and_network_closed_sockets() {
    let mut s = start("bc95", &["--modem-fault", "urc=1:1h"]);
    s.term.until(boot_end("bc95"));
    s.wait_registered("+CEREG:0,1\r\n");
    let n = s.term.cmd("AT+NUESTATS");
    let urc = n.find("\r\n+CEREG:1\r\n").expect("a URC inside the reply");
    assert!(
        urc > n.find("Signal power:").unwrap() && n.ends_with("\r\nOK\r\n"),
        "{n}"
    );
    // The network closes the socket: +NSOCLI, and sending fails.
    let port = echo_server(1 << 20);
    assert!(s.term.cmd("AT+NSOCR=STREAM,6,0,1").contains("\r\n0\r\n"));
    assert!(s
        .term
        .cmd(&format!("AT+NSOCO=0,127.0.0.1,{port}"))
        .ends_with("\r\nOK\r\n"));
    assert_eq!(s.control("close-sockets").trim(), "ok");
    s.term.until("\r\n+NSOCLI: 0\r\n");
    assert!(s.term.cmd("AT+NSOSD=0,1,41").ends_with("\r\nERROR\r\n"));
    // Faults at runtime.
    assert_eq!(s.control("fault clear").trim(), "ok");
    assert_eq!(s.control("fault cme:159").trim(), "ok");
    assert_eq!(s.term.cmd("AT+CSQ"), "\r\n+CME ERROR:159\r\n");
}

#[test]
fn survives_its_serial_line_vanishing() {
    let mut s = start("bg96", &[]);
    s.term.until(boot_end("bg96"));
    assert_eq!(s.term.cmd("ATE0"), "ATE0\r\r\nOK\r\n");
    s.wait_registered("+CEREG: 0,1\r\n");
    let pty = s.pty.take().expect("the pty pair");
    let (a, b) = (pty.a.clone(), pty.b.clone());
    pty.unplug();
    // The module lives on without its line: the control socket still answers.
    assert_eq!(s.control("signal -100 3 1").trim(), "ok");
    let st = s.stats();
    assert_eq!(st["power_cycles"], 0);
    // The line comes back at the same path: the simulator reopens it, state kept (echo off).
    s.pty = Some(PtyPair::at(a, b.clone()));
    s.term = Term::open(&b);
    let end = Instant::now() + DEADLINE;
    loop {
        s.term.send(b"AT\r");
        if s.term.arrives("\r\nOK\r\n", Duration::from_millis(500)) {
            break;
        }
        assert!(
            Instant::now() < end,
            "the simulator did not reopen its line"
        );
    }
    assert_eq!(
        s.term.cmd("AT+QCSQ"),
        "\r\n+QCSQ: \"NBIoT\",-88,-100,115,-11\r\n\r\nOK\r\n"
    );
}
