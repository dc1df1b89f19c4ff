//! Network time as the clock source (issue 11), with the real binary: `gasdtu run` under
//! libfaketime at a stale 2025 wall clock (untrusted: before 2026-01-01; monotonic time left
//! alone), `[modem] mode = "os"` supervising a simulated BG96 on a pty pair (the simulator is not
//! faked: its `AT+CCLK?` tells the real time), a Modbus TCP simulator, and a mosquitto over
//! mutual TLS.
//!
//! - With `set_clock` (the default) and certificates made today (not valid in 2025): the
//!   readings arrive with read times near the real now, so the held rows were re-stamped from
//!   the network time and the broker certificate validated on the corrected clock; status,
//!   `gasdtu status` and `<root>/health` say the clock is "network" with its accuracy, and a
//!   `clock_source` event says so upstream.
//! - The control, `set_clock = false` and certificates valid since 1975 (so the link comes up):
//!   the network time is read but not used, readings committed after it stay held, none reach
//!   the broker, and status and health say "untrusted".

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::remote::{pressure_device, run_daemon_with};
use common::{
    gasdtu, socket_request, wait_for, wait_until, Broker, BrokerTls, Pki, Proc, PtyPair, Subscriber,
};
use gasdtu::time::now_ms;
use gasdtu::uplink::decode;
use serde_json::Value;

const T: Duration = Duration::from_secs(90);

/// libfaketime's preload library (Debian package `libfaketime`, installed by scripts/test).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib").ok().and_then(|dirs| {
        dirs.filter_map(Result::ok)
            .map(|d| d.path().join("faketime/libfaketime.so.1"))
            .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
            .find(|p| p.exists())
    });
    found.expect("libfaketime.so.1 is missing: run scripts/test (it installs faketime)")
}

/// A PKI like `Pki::generate` (same file names) whose certificates are valid from today
/// (00:00 UTC) for a year: a client whose clock says 2025 finds them not valid yet.
fn pki_valid_from_today(dir: &Path) -> Pki {
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
        Issuer, KeyPair, KeyUsagePurpose,
    };
    let (y, m, d, ..) = gasdtu::time::civil(now_ms());
    let (y, m, d) = (y as i32, m as u8, d as u8);
    let dated = |p: &mut CertificateParams| {
        p.not_before = date_time_ymd(y, m, d);
        p.not_after = date_time_ymd(y + 1, m, d.min(28));
    };
    let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "gasdtu test CA (today)");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    dated(&mut ca);
    let ca_key = KeyPair::generate().unwrap();
    write("ca.pem", ca.self_signed(&ca_key).unwrap().pem());
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose, stem: &str| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        dated(&mut p);
        let key = KeyPair::generate().unwrap();
        write(
            &format!("{stem}.pem"),
            p.signed_by(&key, &issuer).unwrap().pem(),
        );
        write(&format!("{stem}.key"), key.serialize_pem());
    };
    leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    leaf(
        Vec::new(),
        "gw-test",
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    );
    Pki {
        dir: dir.to_path_buf(),
    }
}

/// Read times (unix ms) of every reading received in `data` messages.
fn read_times(sub: &Subscriber) -> Vec<i64> {
    sub.snapshot()
        .iter()
        .filter(|m| m.topic.ends_with("/data"))
        .filter_map(|m| decode(&m.payload).ok())
        .flat_map(|d| d["data"].as_array().cloned().unwrap_or_default())
        .flat_map(|dev| dev["reads"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| {
            let t = humantime::parse_rfc3339(r["t"].as_str()?).ok()?;
            Some(gasdtu::time::unix_ms(t))
        })
        .collect()
}

fn last_on(sub: &Subscriber, suffix: &str) -> Option<Value> {
    sub.snapshot()
        .iter()
        .rev()
        .find(|m| m.topic.ends_with(suffix))
        .and_then(|m| serde_json::from_slice(&m.payload).ok())
}

fn events(sub: &Subscriber, name: &str) -> Vec<Value> {
    sub.snapshot()
        .iter()
        .filter(|m| m.topic.ends_with("/event"))
        .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok())
        .filter(|e| e["event"] == name)
        .collect()
}

/// Field order is drop order: processes first, the directory last.
struct Rig {
    socket: PathBuf,
    log: PathBuf,
    sub: Subscriber,
    _daemon: Proc,
    _modem: Proc,
    _pty: PtyPair,
    _sim: Proc,
    _broker: Broker,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The status socket's document (None while the daemon is not answering yet).
    fn status(&self) -> Option<Value> {
        let line = socket_request(&self.socket, b"status\n", Duration::from_secs(5)).ok()?;
        serde_json::from_str(&line).ok()
    }
}

/// The daemon at a faked 2025-06-01 clock with `[modem] mode = "os"` on a simulated BG96.
async fn rig(gw: &str, set_clock: bool, fresh_certs: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let pki = if fresh_certs {
        pki_valid_from_today(dir.path())
    } else {
        Pki::generate(dir.path())
    };
    let broker = Broker::new(
        dir.path(),
        &pki,
        &BrokerTls {
            cert: "server",
            require_certificate: true,
            tls_version: None,
        },
        false,
    );
    let (sim, sim_port) = common::simulate_tcp(&["1:pt-float"], &[]);
    let pty = PtyPair::new(dir.path(), "bg96");
    let ctl = dir.path().join("modem.ctl");
    let modem = Proc::spawn(
        "modem simulator",
        Command::new(gasdtu())
            .args(["simulate", "--modem", "bg96", "--modem-port"])
            .arg(&pty.a)
            .arg("--modem-control")
            .arg(&ctl)
            .args(["--modem-register-delay", "1s", "--seed", "7"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for("the modem control socket", Duration::from_secs(10), || {
        ctl.exists().then_some(())
    });
    let sub = Subscriber::start(&pki, broker.port, &format!("gasdtu/{gw}/#"), gw, false);
    sub.wait_subscribed(1, T).await;
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"{gw}\"\nstate_dir = \"{state}\"\n\n\
             [buses.lan]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {sim_port}\ntimeout = \"500ms\"\n\n\
             {dev}{uplink}reconnect_min = \"200ms\"\nreconnect_max = \"1s\"\nencoding = \"json\"\n\n\
             [modem]\nmode = \"os\"\nport = \"{port}\"\nbaud = 115200\nsignal_every = \"10s\"\n\
             set_clock = {set_clock}\n",
            state = dir.path().join("state").display(),
            dev = pressure_device("pcv1", 1, "1s", "f32"),
            uplink = pki.uplink_toml(broker.port),
            port = pty.b.display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    // The wall clock reads 2025-06-01 and runs on; monotonic time is left alone, as a clock
    // restored from disk at boot would.
    let mut faked = Command::new(gasdtu());
    faked
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", "@2025-06-01 00:00:00")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let daemon = run_daemon_with(&config, &log, &mut faked);
    Rig {
        socket: config.with_extension("sock"),
        log,
        sub,
        _daemon: daemon,
        _modem: modem,
        _pty: pty,
        _sim: sim,
        _broker: broker,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_time_releases_held_readings_and_validates_the_broker_certificate() {
    let started = now_ms();
    let r = rig("gw-nettime", true, true).await;
    // Readings arrive: re-stamped from the network time (the faked clock says 2025) over a TLS
    // session whose certificate is not valid in 2025.
    let times = wait_until("readings at the broker", T, || {
        let t = read_times(&r.sub);
        (t.len() >= 5).then_some(t)
    })
    .await;
    let end = now_ms();
    // Within the network time's accuracy (about a second) of when they were read: well inside
    // the test's own run, never 2025.
    for t in &times {
        assert!(
            *t >= started - 10_000 && *t <= end + 10_000,
            "read time {} outside the test's run {}..{}; log:\n{}",
            gasdtu::time::rfc3339_ms(*t),
            gasdtu::time::rfc3339_ms(started),
            gasdtu::time::rfc3339_ms(end),
            r.log()
        );
    }
    // The status socket: the clock is the network's, with its accuracy.
    let st = wait_until("status with the network clock", T, || {
        r.status().filter(|s| s["clock"]["source"] == "network")
    })
    .await;
    eprintln!("clock in status: {}", st["clock"]);
    let acc = st["clock"]["accuracy_ms"].as_u64().expect("accuracy_ms");
    assert!((500..60_000).contains(&acc), "{st}");
    let offset = st["clock"]["offset_ms"].as_i64().expect("offset_ms");
    assert!(
        offset > 86_400_000,
        "a 2025 clock is behind by far more: {st}"
    );
    assert!(st["modem"]["network_time"]["utc_ms"].is_i64(), "{st}");
    // `gasdtu status` says it in words.
    let out = Command::new(gasdtu())
        .arg("status")
        .arg("--socket")
        .arg(&r.socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("clock network time (modem), accuracy ±"),
        "{text}"
    );
    // Health carries the source and its accuracy; the change was an event upstream.
    let h = wait_until("health with the network clock", T, || {
        last_on(&r.sub, "/health").filter(|h| h["clock"]["source"] == "network")
    })
    .await;
    assert!(h["clock"]["accuracy_ms"].is_u64(), "{h}");
    assert!(
        h["clock"].get("offset_ms").is_none(),
        "health stays small: {h}"
    );
    let ev = wait_until("a clock_source event", T, || {
        events(&r.sub, "clock_source").into_iter().next()
    })
    .await;
    assert_eq!(ev["source"], "network", "{ev}");
    assert_eq!(ev["was"], "untrusted", "{ev}");
    assert!(ev["accuracy_ms"].is_u64(), "{ev}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_set_clock_readings_stay_held_and_the_clock_untrusted() {
    let r = rig("gw-noclock", false, false).await;
    // The module's time was read (it is in the status) but not used.
    let st = wait_until("the network time read", T, || {
        r.status()
            .filter(|s| s["modem"]["network_time"]["utc_ms"].is_i64())
    })
    .await;
    assert_eq!(st["clock"]["source"], "untrusted", "{st}");
    let held = st["buffer"]["held_entries"].as_u64().unwrap_or(0);
    // Readings committed after that are held too, while the link is up.
    let st = wait_until("more readings held, the link connected", T, || {
        r.status().filter(|s| {
            s["buffer"]["held_entries"].as_u64().unwrap_or(0) >= held + 3
                && s["link"]["state"] == "connected"
        })
    })
    .await;
    assert_eq!(st["clock"]["source"], "untrusted", "{st}");
    let h = wait_until("health from the gateway", T, || {
        last_on(&r.sub, "/health").filter(|h| h["clock"].is_object())
    })
    .await;
    assert_eq!(h["clock"]["source"], "untrusted", "{h}");
    assert!(
        read_times(&r.sub).is_empty(),
        "held readings reached the broker; log:\n{}",
        r.log()
    );
    assert!(events(&r.sub, "clock_source").is_empty());
}
