//! The AT engine's fairness and the field tool's safety against the real module simulator on a
//! pty pair: a socket command queued after a supervisor's long command is served first (the
//! engine's priority queues) and the engine tracks the module socket it opens and closes; and,
//! through the real daemon, `gasdtu modem at AT+CFUN=0` is refused without `--force` (and
//! logged as forced with it), while `gasdtu status` shows the eDRX the network granted beside
//! the one requested; and the supervisor holds a link-disturbing setter back while a module
//! socket is open (shown as `deferred`), runs it when the socket closes, and takes the
//! network time from the `+CTZE` URC. The start-and-wait fixture is tests/common/modem_sim.rs.
//! Every wait is on a condition with a deadline.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use common::modem::ModemSim;
use common::modem_sim::{
    config, ctl_stat, engine_only, gateway_toml, sim_stat, start, start_sim, wait_status, Daemon,
    Running,
};
use common::wait_for;
use gasdtu::config::ModemMode;
use gasdtu::modem::{socket_cmd, AtError, AtHandle, Exchange, Priority};

/// Commands the simulator received so far (its `stats`).
fn commands(sim: &ModemSim) -> u64 {
    sim_stat(sim, "commands").expect("stats.commands")
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
    let sim = start_sim(dir.path(), "bc95", &[]);
    // No wake-up `AT`s: the command count is exact.
    let (at, stop) = engine_only(&sim.port, Duration::from_secs(3600));
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
    let before = commands(&sim);
    let done = Arc::new(Mutex::new(Vec::new()));
    let attach = queued(&field, "AT+CGATT=1", &done).await;
    let on_wire = sim.ctl.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("AT+CGATT=1 on the wire", Duration::from_secs(10), || {
            (ctl_stat(&on_wire, "commands") > Some(before)).then_some(())
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

#[test]
fn modem_at_refuses_link_breaking_commands_without_force_and_status_shows_granted_edrx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bg96", &[]);
    let daemon = Daemon::start(
        dir.path(),
        &format!(
            "{}edrx = \"300s\"\n",
            gateway_toml(dir.path(), &sim, "socket")
        ),
    );
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
    let before = commands(&sim);

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
    assert!(commands(&sim) > before);
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

/// The engine and the supervisor on the simulator's port in socket mode, with `[modem] edrx`
/// 300 s (the module's 327.68 s cycle) and a signal sample (with CCLK and CEDRXRDP) every
/// `every`.
fn edrx_supervised(sim: &ModemSim, every: Duration) -> Running {
    let mut cfg = config(&sim.port, ModemMode::Socket);
    cfg.signal_every = every;
    cfg.edrx = Some(Duration::from_secs(300));
    start(cfg)
}

/// How long a status wait may take.
const WAIT: Duration = Duration::from_secs(30);

const REQUESTED: &str = "AT+CEDRXS=1,5,\"1010\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_disturbing_setter_waits_for_the_socket_to_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bc95", &[]);
    let r = edrx_supervised(&sim, Duration::from_secs(2));
    let (at, mut status, stop) = (r.at.clone(), r.status.clone(), r.stop.clone());
    wait_status(&mut status, "link up with eDRX granted", WAIT, |s| {
        s.link_up && s.edrx.is_some_and(|e| e.granted_s == Some(81.92))
    })
    .await;
    // The bridge's part, by hand: a module socket opens.
    let x = at
        .call(&socket_cmd::nso_create(0))
        .await
        .expect("socket created");
    let id = socket_cmd::nso_created(&x).expect("socket id");
    wait_status(&mut status, "socket_open", WAIT, |s| s.socket_open).await;
    // Someone changes the module's eDRX request: the supervisor wants ours back, but a
    // CEDRXS set is held while the socket is open.
    at.call("AT+CEDRXS=1,5,\"0010\"")
        .await
        .expect("forced eDRX change");
    let s = wait_status(&mut status, "the re-set deferred", WAIT, |s| {
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
    wait_status(&mut status, "another sample (and eDRX read)", WAIT, |n| {
        n.sampled_at_ms > sampled
    })
    .await;
    assert_eq!(status.borrow().deferred, [REQUESTED]);
    // The socket closes: the held command runs, the module asks for ours again.
    at.call(&socket_cmd::nso_close(id)).await.expect("close");
    let s = wait_status(&mut status, "deferred run after close", WAIT, |s| {
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
    let sim = start_sim(dir.path(), "bg96", &[]);
    // CCLK only at init: a later network time reading can only be the URC's.
    let r = edrx_supervised(&sim, Duration::from_secs(600));
    let (mut status, stop) = (r.status.clone(), r.stop.clone());
    let s = wait_status(&mut status, "link up with the CCLK time", WAIT, |s| {
        s.link_up && s.network_time.is_some()
    })
    .await;
    assert_eq!(s.network_time.map(|t| t.source), Some("cclk"));
    // Registration comes back in 1 s: the module reports +CTZE (AT+CTZR=2 at init).
    assert_eq!(sim.control("deregister 1"), "ok");
    let s = wait_status(&mut status, "a +CTZE network time", WAIT, |s| {
        s.network_time.is_some_and(|t| t.source == "ctze")
    })
    .await;
    let t = s.network_time.expect("network time");
    assert_eq!(t.accuracy_ms, 1000);
    assert!(t.offset_ms.abs() < 5_000, "{t:?}");
    stop.cancel();
}
