//! The modem tests' shared start-and-wait fixture around the module simulator (`modem.rs`):
//! a simulator with the tests' seed, the AT engine alone on its port, the engine plus the
//! supervisor on it (`start`, `supervised`) with short test periods, waits on the status watch
//! with a deadline (`wait_status`, `ready`, `two_samples`), the simulator's `stats` counters,
//! and `gasdtu run` with a `[modem]` on the simulator (`Daemon`) read through `gasdtu status`.
//! Used by tests/modem_supervision.rs and tests/modem_engine.rs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gasdtu::config::{ModemConfig, ModemMode};
use gasdtu::modem::status::ModemState;
use gasdtu::modem::{
    AtEngine, AtHandle, EngineOptions, ModemStatus, ModemSupervisor, SupervisorOptions,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::modem::{ModemSim, SimArgs};
use super::remote::run_daemon;
use super::{gasdtu, socket_request, wait_for, Proc};

/// The simulator of `model` (seed 7) with `faults`.
pub fn start_sim(dir: &Path, model: &str, faults: &[&str]) -> ModemSim {
    ModemSim::start(
        dir,
        model,
        SimArgs {
            seed: Some(7),
            faults,
            ..SimArgs::default()
        },
    )
}

/// A counter of the simulator's `stats` (`commands`, `reboots`, `bytes_out`, ...).
pub fn sim_stat(sim: &ModemSim, name: &str) -> Option<u64> {
    ctl_stat(&sim.ctl, name)
}

/// `sim_stat` through the control socket's path (for a blocking thread).
pub fn ctl_stat(ctl: &Path, name: &str) -> Option<u64> {
    let reply = socket_request(ctl, b"stats\n", Duration::from_secs(5)).ok()?;
    serde_json::from_str::<serde_json::Value>(reply.trim())
        .ok()
        .and_then(|v| v[name].as_u64())
}

/// The engine alone on a simulator port.
pub fn engine_only(port: &Path, wake_after: Duration) -> (AtHandle, CancellationToken) {
    let stop = CancellationToken::new();
    let (engine, at) = AtEngine::new(
        port.display().to_string(),
        115_200,
        EngineOptions {
            wake_after,
            timeout_scale: 0.5,
        },
    );
    tokio::spawn(engine.run(stop.clone()));
    (at, stop)
}

/// The engine and the supervisor running; both stop when this is dropped.
pub struct Running {
    pub at: AtHandle,
    pub status: watch::Receiver<ModemStatus>,
    pub events: mpsc::Receiver<serde_json::Value>,
    pub stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The engine and the supervisor on `cfg.port`, with test periods (poll every 2 s, 300 ms
/// while down, boot within 4 s, ladder gaps 0.3..2 s).
pub fn start(cfg: ModemConfig) -> Running {
    let stop = CancellationToken::new();
    let (engine, at) = AtEngine::new(
        cfg.port.clone(),
        cfg.baud,
        EngineOptions {
            wake_after: Duration::from_secs(20),
            timeout_scale: 0.5,
        },
    );
    let (tx, status) = watch::channel(ModemStatus::default());
    let (ev_tx, events) = mpsc::channel(64);
    let sup = ModemSupervisor::new(
        cfg,
        at.clone(),
        SupervisorOptions {
            poll_every: Duration::from_secs(2),
            poll_fast: Duration::from_millis(300),
            boot_timeout: Duration::from_secs(4),
            min_gap: Duration::from_millis(300),
            max_gap: Duration::from_secs(2),
        },
        Arc::new(tx),
        Some(ev_tx),
    );
    tokio::spawn(engine.run(stop.clone()));
    tokio::spawn(sup.run(stop.clone()));
    Running {
        at,
        status,
        events,
        stop,
    }
}

/// `[modem]` in `mode` on `port`: 115200 baud, a signal sample every 2 s, registration bound
/// 600 s (no ladder step unless a test shortens it).
pub fn config(port: &Path, mode: ModemMode) -> ModemConfig {
    let mut c = ModemConfig::new(mode, port.display().to_string());
    c.baud = 115_200;
    c.signal_every = Duration::from_secs(2);
    c.register_within = Duration::from_secs(600);
    c
}

/// The status once `pred` holds; panics with the status after `deadline`.
pub async fn wait_status(
    rx: &mut watch::Receiver<ModemStatus>,
    what: &str,
    deadline: Duration,
    pred: impl FnMut(&ModemStatus) -> bool,
) -> ModemStatus {
    let got = match tokio::time::timeout(deadline, rx.wait_for(pred)).await {
        Ok(Ok(s)) => Some(s.clone()),
        Ok(Err(_)) => panic!("status channel closed waiting for {what}"),
        Err(_) => None,
    };
    match got {
        Some(s) => s,
        None => panic!(
            "timed out after {deadline:?} waiting for {what}; status: {}",
            serde_json::to_string_pretty(&*rx.borrow()).unwrap_or_default()
        ),
    }
}

/// `model` detected, registered, attached and its signal sampled (30 s at most).
pub async fn ready(r: &mut Running, model: &str) -> ModemStatus {
    wait_status(
        &mut r.status,
        &format!("{model}: detected, registered, attached, signal sampled"),
        Duration::from_secs(30),
        |s| {
            s.model.as_deref() == Some(model)
                && s.link_up
                && s.state == ModemState::Registered
                && s.signal.is_some_and(|g| g.rsrp_dbm.is_some())
        },
    )
    .await
}

/// The supervisor (os mode) on `sim`'s port (`config`, then `tweak`), once `model` is ready.
pub async fn supervised(
    sim: &ModemSim,
    model: &str,
    tweak: impl FnOnce(&mut ModemConfig),
) -> (Running, ModemStatus) {
    let mut cfg = config(&sim.port, ModemMode::Os);
    tweak(&mut cfg);
    let mut r = start(cfg);
    let s = ready(&mut r, model).await;
    (r, s)
}

/// Two more signal samples (about two poll periods: time for a spurious init to show).
pub async fn two_samples(r: &mut Running) {
    for _ in 0..2 {
        let at = r.status.borrow().sampled_at_ms;
        wait_status(
            &mut r.status,
            "the next signal sample",
            Duration::from_secs(30),
            |s| s.link_up && s.sampled_at_ms > at,
        )
        .await;
    }
}

/// A gateway config with `[modem]` in `mode` on `sim` (last section: a test may append keys).
pub fn gateway_toml(dir: &Path, sim: &ModemSim, mode: &str) -> String {
    format!(
        "[gateway]\nid = \"modem-gw\"\nstate_dir = \"{}\"\n\n[modem]\nmode = \"{mode}\"\nport = \"{}\"\nbaud = 115200\nsignal_every = \"10s\"\n",
        dir.join("state").display(),
        sim.port.display()
    )
}

/// `gasdtu run` with a config in `dir`: its status socket and log.
pub struct Daemon {
    _proc: Proc,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, config_text: &str) -> Daemon {
        let config = dir.join("gasdtu.toml");
        std::fs::write(&config, config_text).expect("write the config");
        let log = dir.join("daemon.log");
        Daemon {
            _proc: run_daemon(&config, &log),
            socket: config.with_extension("sock"),
            log,
        }
    }

    /// `gasdtu status --json`, when it answers with JSON.
    pub fn status(&self) -> Option<serde_json::Value> {
        let out = Command::new(gasdtu())
            .args(["status", "--json", "--socket"])
            .arg(&self.socket)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits (60 s at most) until `gasdtu status` shows `model` up with a signal sample.
    pub fn wait_modem_ready(&self, model: &str) -> serde_json::Value {
        wait_for(
            "gasdtu status to show the modem registered with a signal sample",
            Duration::from_secs(60),
            || {
                self.status().filter(|v| {
                    let m = &v["modem"];
                    m["model"] == model
                        && m["link_up"] == true
                        && m["signal"]["rsrp_dbm"].is_number()
                })
            },
        )
    }

    /// `gasdtu modem at <args>`: exit code, stdout, stderr.
    pub fn modem_at(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(gasdtu())
            .args(["modem", "at"])
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("gasdtu modem at");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
