//! The AT engine's fairness and the field tool's safety against the real module simulator on a
//! pty pair: a socket command queued after a supervisor's long command is served first (the
//! engine's priority queues) and the engine tracks the module socket it opens and closes; and,
//! through the real daemon, `gasdtu modem at AT+CFUN=0` is refused without `--force` (and
//! logged as forced with it), while `gasdtu status` shows the eDRX the network granted beside
//! the one requested; and the supervisor holds a link-disturbing setter back while a module
//! socket is open (shown as `deferred`), runs it when the socket closes, and takes the
//! network time from the `+CTZE` URC. Every wait is on a condition with a deadline.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use common::modem::{ModemSim, SimArgs};
use common::remote::run_daemon;
use common::{gasdtu, wait_for, Proc};
use gasdtu::config::{ModemConfig, ModemMode};
use gasdtu::modem::{
    socket_cmd, AtEngine, AtError, AtHandle, EngineOptions, Exchange, ModemStatus, ModemSupervisor,
    Priority, SupervisorOptions,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn start_sim(dir: &Path, model: &str) -> ModemSim {
    ModemSim::start(
        dir,
        model,
        SimArgs {
            seed: Some(7),
            ..SimArgs::default()
        },
    )
}

/// The engine alone on the simulator's port (no wake-up `AT`s: the command count is exact).
fn engine_only(port: &Path) -> (AtHandle, CancellationToken) {
    let stop = CancellationToken::new();
    let (engine, at) = AtEngine::new(
        port.display().to_string(),
        115_200,
        EngineOptions {
            wake_after: Duration::from_secs(3600),
            timeout_scale: 0.5,
        },
    );
    tokio::spawn(engine.run(stop.clone()));
    (at, stop)
}

/// Commands the simulator received so far (its `stats`).
fn sim_commands(sim: &ModemSim) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&sim.control("stats")).expect("stats json");
    v["commands"].as_u64().expect("stats.commands")
}

type Call = Pin<Box<dyn Future<Output = Result<Exchange, AtError>> + Send>>;

/// `cmd` through `at`, polled once so its job is in the engine's queue now (the queue has
/// room), recording its name in `done` when its reply comes.
async fn queued(at: &AtHandle, cmd: &str, done: &Arc<Mutex<Vec<String>>>) -> Call {
    let (at, cmd, done) = (at.clone(), cmd.to_string(), done.clone());
    let mut f: Call = Box::pin(async move {
        let r = at.call(&cmd).await;
        done.lock().unwrap().push(cmd);
        r
    });
    std::future::poll_fn(|cx| {
        assert!(
            f.as_mut().poll(cx).is_pending(),
            "answered while the port is busy"
        );
        Poll::Ready(())
    })
    .await;
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_command_is_served_before_a_long_command_queued_ahead_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bc95");
    let (at, stop) = engine_only(&sim.port);
    let field = at.with_priority(Priority::Field);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let x = at.call("AT+CGATT?").await;
        if x.is_ok_and(|x| x.lines.iter().any(|l| l.contains(":1"))) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never attached");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut socket_open = at.socket_open();
    assert!(!*socket_open.borrow());

    // The wire busy: an attach that completes only when registration comes back in 3 s.
    assert_eq!(sim.control("deregister 3"), "ok");
    let before = sim_commands(&sim);
    let done = Arc::new(Mutex::new(Vec::new()));
    let attach = queued(&field, "AT+CGATT=1", &done).await;
    let on_wire = sim.ctl.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("AT+CGATT=1 on the wire", Duration::from_secs(10), || {
            (sim_commands_at(&on_wire) > before).then_some(())
        })
    })
    .await
    .expect("wait");
    // Queued behind it, in this order: the supervisor's long operator selection and a query,
    // then the bridge's socket open.
    let cops = queued(&at, "AT+COPS=0", &done).await;
    let csq = queued(&at, "AT+CSQ", &done).await;
    let open = queued(&at, &socket_cmd::nso_create(0), &done).await;
    let (a, c, q, o) = tokio::join!(attach, cops, csq, open);
    a.expect("attach");
    c.expect("COPS");
    q.expect("CSQ");
    let x = o.expect("socket created");
    let id = socket_cmd::nso_created(&x).expect("socket id");
    assert_eq!(
        *done.lock().unwrap(),
        [
            "AT+CGATT=1".to_string(),
            socket_cmd::nso_create(0),
            "AT+COPS=0".to_string(),
            "AT+CSQ".to_string()
        ],
        "the socket command first, then the supervisor's in their order"
    );
    // The engine saw the socket open, and sees it close.
    tokio::time::timeout(Duration::from_secs(5), socket_open.wait_for(|o| *o))
        .await
        .expect("socket_open within 5 s")
        .expect("engine alive");
    at.call(&socket_cmd::nso_close(id)).await.expect("close");
    tokio::time::timeout(Duration::from_secs(5), socket_open.wait_for(|o| !*o))
        .await
        .expect("socket closed within 5 s")
        .expect("engine alive");
    stop.cancel();
}

/// `stats.commands` through a control socket path (for a blocking thread).
fn sim_commands_at(ctl: &Path) -> u64 {
    let reply = common::socket_request(ctl, b"stats\n", Duration::from_secs(5)).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(reply.trim())
        .ok()
        .and_then(|v| v["commands"].as_u64())
        .unwrap_or(0)
}

/// `gasdtu run` in socket mode with eDRX requested; its status socket and log.
struct Daemon {
    _proc: Proc,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, sim: &ModemSim) -> Daemon {
        let config = dir.join("gasdtu.toml");
        let text = format!(
            "[gateway]\nid = \"engine-gw\"\nstate_dir = \"{}\"\n\n[modem]\nmode = \"socket\"\nport = \"{}\"\nbaud = 115200\nsignal_every = \"10s\"\nedrx = \"300s\"\n",
            dir.join("state").display(),
            sim.port.display()
        );
        std::fs::write(&config, text).expect("write the config");
        let log = dir.join("daemon.log");
        Daemon {
            _proc: run_daemon(&config, &log),
            socket: config.with_extension("sock"),
            log,
        }
    }

    fn status(&self) -> Option<serde_json::Value> {
        let out = Command::new(gasdtu())
            .args(["status", "--json", "--socket"])
            .arg(&self.socket)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    fn modem_at(&self, args: &[&str]) -> (i32, String, String) {
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

#[test]
fn modem_at_refuses_link_breaking_commands_without_force_and_status_shows_granted_edrx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bg96");
    let daemon = Daemon::start(dir.path(), &sim);
    // Requested 300 s -> the module's 327.68 s cycle; the simulated network grants at most
    // 81.92 s with a 10.24 s paging window.
    let m = wait_for(
        "status to show the modem up with granted eDRX",
        Duration::from_secs(60),
        || {
            daemon.status().and_then(|v| {
                let m = v["modem"].clone();
                (m["link_up"] == true && m["edrx"]["granted_s"].is_number()).then_some(m)
            })
        },
    );
    assert_eq!(m["edrx"]["requested_s"], 327.68, "{m}");
    assert_eq!(m["edrx"]["granted_s"], 81.92, "{m}");
    assert_eq!(m["edrx"]["paging_window_s"], 10.24, "{m}");
    assert_eq!(m["deferred"], serde_json::json!([]), "{m}");
    let before = sim_commands(&sim);

    let (code, out, err) = daemon.modem_at(&["AT+CFUN=0"]);
    assert_eq!(code, 1, "refused: {out} {err}");
    assert!(
        err.contains("AT+CFUN=0") && err.contains("--force"),
        "{err}"
    );
    // The module never saw it: the radio is still on and the link up.
    let (code, out, _) = daemon.modem_at(&["AT+CFUN?"]);
    assert_eq!(code, 0);
    assert!(out.contains("+CFUN: 1"), "{out}");
    assert!(sim_commands(&sim) > before);
    assert_eq!(daemon.status().expect("status")["modem"]["link_up"], true);

    // With --force it goes to the module (radio on again: harmless here), logged as forced.
    let (code, out, err) = daemon.modem_at(&["--force", "AT+CFUN=1"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("Ok"), "{out}");
    let line = wait_for("the forced audit line", Duration::from_secs(10), || {
        std::fs::read_to_string(&daemon.log).ok().and_then(|t| {
            t.lines()
                .find(|l| l.contains("AT+CFUN=1") && l.contains("forced=true"))
                .map(str::to_string)
        })
    });
    assert!(line.contains("uid "), "{line}");
    let refused = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    assert!(
        refused.lines().any(|l| l.contains("AT+CFUN=0")
            && l.contains("forced=false")
            && l.contains("refused")),
        "{refused}"
    );
}

/// The engine and the supervisor on the simulator's port, with `[modem] edrx` 300 s (the
/// module's 327.68 s cycle) and a signal sample (with CCLK and CEDRXRDP) every `every`.
fn supervised(
    sim: &ModemSim,
    every: Duration,
) -> (AtHandle, watch::Receiver<ModemStatus>, CancellationToken) {
    let mut cfg = ModemConfig::new(ModemMode::Socket, sim.port.display().to_string());
    cfg.baud = 115_200;
    cfg.signal_every = every;
    cfg.register_within = Duration::from_secs(600);
    cfg.edrx = Some(Duration::from_secs(300));
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
        None,
    );
    tokio::spawn(engine.run(stop.clone()));
    tokio::spawn(sup.run(stop.clone()));
    (at, status, stop)
}

async fn wait_status(
    rx: &mut watch::Receiver<ModemStatus>,
    what: &str,
    pred: impl FnMut(&ModemStatus) -> bool,
) -> ModemStatus {
    let got = match tokio::time::timeout(Duration::from_secs(30), rx.wait_for(pred)).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    got.unwrap_or_else(|| {
        panic!(
            "timed out waiting for {what}; status: {}",
            serde_json::to_string_pretty(&*rx.borrow()).unwrap_or_default()
        )
    })
}

const REQUESTED: &str = "AT+CEDRXS=1,5,\"1010\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_disturbing_setter_waits_for_the_socket_to_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bc95");
    let (at, mut status, stop) = supervised(&sim, Duration::from_secs(2));
    wait_status(&mut status, "link up with eDRX granted", |s| {
        s.link_up && s.edrx.is_some_and(|e| e.granted_s == Some(81.92))
    })
    .await;
    // The bridge's part, by hand: a module socket opens.
    let x = at
        .call(&socket_cmd::nso_create(0))
        .await
        .expect("socket created");
    let id = socket_cmd::nso_created(&x).expect("socket id");
    wait_status(&mut status, "socket_open", |s| s.socket_open).await;
    // Someone changes the module's eDRX request: the supervisor wants ours back, but a
    // CEDRXS set is held while the socket is open.
    at.call("AT+CEDRXS=1,5,\"0010\"")
        .await
        .expect("forced eDRX change");
    let s = wait_status(&mut status, "the re-set deferred", |s| {
        !s.deferred.is_empty()
    })
    .await;
    assert_eq!(s.deferred, [REQUESTED], "{s:?}");
    assert_eq!(s.edrx.and_then(|e| e.requested_s), Some(20.48), "{s:?}");
    // Socket traffic goes on meanwhile.
    let read = at.call(&socket_cmd::nso_read(id, 64)).await;
    assert!(
        !matches!(read, Err(AtError::Silent { .. } | AtError::Timeout { .. })),
        "{read:?}"
    );
    // Still held a sample later (the module's request still differs; listed once).
    let sampled = s.sampled_at_ms;
    wait_status(&mut status, "another sample (and eDRX read)", |n| {
        n.sampled_at_ms > sampled
    })
    .await;
    assert_eq!(status.borrow().deferred, [REQUESTED]);
    // The socket closes: the held command runs, the module asks for ours again.
    at.call(&socket_cmd::nso_close(id)).await.expect("close");
    let s = wait_status(&mut status, "deferred run after close", |s| {
        !s.socket_open
            && s.deferred.is_empty()
            && s.edrx.is_some_and(|e| e.requested_s == Some(327.68))
    })
    .await;
    assert_eq!(s.edrx.and_then(|e| e.granted_s), Some(81.92), "{s:?}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ctze_urc_is_a_network_time_reading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bg96");
    // CCLK only at init: a later network time reading can only be the URC's.
    let (_at, mut status, stop) = supervised(&sim, Duration::from_secs(600));
    let s = wait_status(&mut status, "link up with the CCLK time", |s| {
        s.link_up && s.network_time.is_some()
    })
    .await;
    assert_eq!(s.network_time.map(|t| t.source), Some("cclk"));
    // Registration comes back in 1 s: the module reports +CTZE (AT+CTZR=2 at init).
    assert_eq!(sim.control("deregister 1"), "ok");
    let s = wait_status(&mut status, "a +CTZE network time", |s| {
        s.network_time.is_some_and(|t| t.source == "ctze")
    })
    .await;
    let t = s.network_time.expect("network time");
    assert_eq!(t.accuracy_ms, 1000);
    assert!(t.offset_ms.abs() < 5_000, "{t:?}");
    stop.cancel();
}
