//! The real binary with a simulated NB-IoT module (issue 11): `gasdtu run` with `[modem] mode
//! = "socket"` on one end of a pty pair (`gasdtu simulate --modem bc95` on the other, sockets
//! paced at NB-IoT rates), Modbus devices from `gasdtu simulate`, and a mosquitto over mutual
//! TLS that is reached only through the module's AT sockets.
//!
//! - Readings arrive at the broker through the module; `<root>/health` carries the modem's
//!   registration and signal.
//! - `gasdtu modem info | signal | at` answer through the daemon's status socket (the port keeps
//!   one owner).
//! - A module hang (nothing at all on the serial line) is recovered by the reset ladder, up to
//!   the power cycle (a command writing `power-cycle` to the simulator's control socket); every
//!   reading committed meanwhile arrives afterwards (nothing lost), and the steps are events.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::modem::{ModemSim, SimArgs};
use common::remote::{pressure_device, run_daemon};
use common::{gasdtu, mutual_tls_broker, simulate_tcp, wait_until, Proc, Subscriber};
use gasdtu::uplink::decode;
use serde_json::Value;

const GW: &str = "gw-nb";
const T: Duration = Duration::from_secs(90);
/// A hang is noticed within seconds, but the ladder's first rungs each take their command
/// timeouts (CFUN 15 s, the reset command and its boot wait) before the power cycle.
const LADDER: Duration = Duration::from_secs(240);

fn modem_cli(socket: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(gasdtu())
        .arg("modem")
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// (device, read time) of every reading received, from `data` messages.
fn reads(sub: &Subscriber) -> BTreeSet<(String, String)> {
    sub.snapshot()
        .iter()
        .filter(|m| m.topic.ends_with("/data"))
        .filter_map(|m| decode(&m.payload).ok())
        .flat_map(|d| d["data"].as_array().cloned().unwrap_or_default())
        .flat_map(|dev| {
            let name = dev["dev"].as_str().unwrap_or_default().to_string();
            dev["reads"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |r| Some((name.clone(), r["t"].as_str()?.to_string())))
        })
        .collect()
}

fn health(sub: &Subscriber) -> Option<Value> {
    sub.snapshot()
        .iter()
        .rev()
        .find(|m| m.topic.ends_with("/health"))
        .and_then(|m| serde_json::from_slice(&m.payload).ok())
}

struct Rig {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    sub: Subscriber,
    _daemon: Proc,
    modem: ModemSim,
    _sim: Proc,
    _broker: common::Broker,
    log: PathBuf,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    let (sim, sim_port) = simulate_tcp(&["1:pt-float"], &[]);
    let modem = ModemSim::start(
        dir.path(),
        "bc95",
        SimArgs {
            rtt: Some("0.5s"),
            ..SimArgs::default()
        },
    );
    let sub = Subscriber::start(
        &pki,
        broker.port,
        &format!("gasdtu/{GW}/#"),
        "nb-sub",
        false,
    );
    sub.wait_subscribed(1, T).await;
    let config = dir.path().join("gasdtu.toml");
    let power = modem.power_cycle_toml();
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"{GW}\"\nstate_dir = \"{state}\"\n\n\
             [buses.lan]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {sim_port}\ntimeout = \"500ms\"\n\n\
             {dev}{uplink}reconnect_min = \"500ms\"\nreconnect_max = \"2s\"\nencoding = \"json\"\n\n\
             [modem]\nmode = \"socket\"\nport = \"{port}\"\nbaud = 115200\nsignal_every = \"10s\"\n\
             register_within = \"30s\"\nladder_gap = \"2s\"\n\n\
             [modem.power]\ncommand = {power}\noff_for = \"1s\"\n",
            state = dir.path().join("state").display(),
            dev = pressure_device("pcv1", 1, "1s", "f32"),
            uplink = pki.uplink_toml(broker.port),
            port = modem.port.display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let daemon = run_daemon(&config, &log);
    Rig {
        _dir: dir,
        socket: config.with_extension("sock"),
        sub,
        _daemon: daemon,
        modem,
        _sim: sim,
        _broker: broker,
        log,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_through_the_daemon_field_tools_and_a_hang_recovered_without_loss() {
    let r = rig().await;
    let log = || std::fs::read_to_string(&r.log).unwrap_or_default();
    // Data through the module, and the modem in the health message.
    let end = std::time::Instant::now() + T;
    while reads(&r.sub).len() < 3 {
        assert!(
            std::time::Instant::now() < end,
            "no readings through the module within {T:?}; log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = wait_until("health with the modem registered", T, || {
        health(&r.sub).filter(|h| h["modem"]["link_up"] == true)
    })
    .await;
    assert_eq!(h["modem"]["registration"], "home", "{h}");
    assert!(h["modem"]["rsrp"].is_number(), "{h}");
    assert!(h["modem"]["registered_in_ms"].is_u64(), "{h}");
    // The session figures come from the bridge: socket bytes both ways.
    assert_eq!(h["session"]["bytes"], "socket", "{h}");
    assert!(h["session"]["open_ms"].is_u64(), "{h}");
    assert!(
        h["session"]["bytes_down"].as_u64().is_some_and(|d| d > 0),
        "{h}"
    );
    // Read success over 24 h: the healthy simulator reads every point.
    assert_eq!(h["reads_24h"]["all"], serde_json::json!(1.0), "{h}");
    assert_eq!(h["reads_24h"]["below_99"], serde_json::json!({}), "{h}");

    // Field tools through the daemon.
    let (code, out) = modem_cli(&r.socket, &["info"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("model bc95"), "{out}");
    assert!(out.contains("registration home"), "{out}");
    let st = Command::new(gasdtu())
        .arg("status")
        .arg("--socket")
        .arg(&r.socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("\nmodem:\n  model bc95"),
        "gasdtu status shows the modem: {text}"
    );
    assert!(
        text.contains("  last session") && text.contains("kB down (socket)"),
        "gasdtu status shows the session figures: {text}"
    );
    let (code, out) = modem_cli(&r.socket, &["signal"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("RSRP -"), "{out}");
    let (code, out) = modem_cli(&r.socket, &["at", "AT+CGMR"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Revision") || out.contains("BC95"), "{out}");
    assert!(out.trim_end().ends_with("Ok"), "{out}");

    // The module hangs: nothing at all on the line until it is power-cycled.
    let before = reads(&r.sub).len();
    assert_eq!(r.modem.control("hang"), "ok");
    let hung_at = std::time::Instant::now();
    // Readings keep being committed meanwhile; once the ladder got the module back, all of
    // them arrive (the device polls every second, so the set keeps growing; every read time
    // between before and after the hang must be there).
    wait_until("the ladder's power cycle in the log", LADDER, || {
        log().contains("power_cycle").then_some(())
    })
    .await;
    let recovered_at = gasdtu::time::now_ms() / 1000;
    // Every reading polled before, during and after the hang arrives: consecutive 1 s polls
    // with no hole (the backlog drains after the power cycle), up to after the recovery.
    let secs = |sub: &Subscriber| -> Vec<i64> {
        reads(sub)
            .into_iter()
            .filter(|(d, _)| d == "pcv1")
            .filter_map(|(_, t)| gasdtu::remote::request::parse_rfc3339(&t))
            .map(|ms| ms / 1000)
            .collect()
    };
    let gaps = |s: &[i64]| -> Vec<(i64, i64)> {
        s.windows(2)
            .filter(|w| w[1] - w[0] > 2)
            .map(|w| (w[0], w[1]))
            .collect()
    };
    let end = std::time::Instant::now() + T;
    loop {
        let s = secs(&r.sub);
        if gaps(&s).is_empty() && s.last().is_some_and(|l| *l > recovered_at) {
            assert!(s.len() > before, "{} readings", s.len());
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "readings missing between {:?} ({} received, hung for {:?})\nlog:\n{}",
            gaps(&s),
            s.len(),
            hung_at.elapsed(),
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The steps are events.
    let events: Vec<Value> = r
        .sub
        .snapshot()
        .iter()
        .filter(|m| m.topic.ends_with("/event"))
        .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok())
        .filter(|e| e["event"] == "modem_reset")
        .collect();
    assert!(!events.is_empty(), "no modem_reset event; log:\n{}", log());
}
