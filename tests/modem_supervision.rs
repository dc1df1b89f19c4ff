//! The AT engine and the modem supervisor against the real module simulator
//! (`gasdtu simulate --modem <model>`) on a pty pair: detection of each simulated model,
//! registration, signal sampling, URCs inside replies, and a hang recovered by the reset ladder
//! climbing to a power cycle (a command that writes `power-cycle` to the simulator's control
//! socket), and the init sequence run once per start, reboot and port reopen. The start-and-
//! wait fixture is tests/common/modem_sim.rs. Every wait is on the status watch (or an event)
//! with a deadline.

mod common;

use std::path::Path;
use std::time::Duration;

use common::modem_sim::{
    config, engine_only, gateway_toml, ready, sim_stat, start, start_sim, supervised, two_samples,
    wait_status, Daemon,
};
use common::PtyPair;
use gasdtu::config::{ModemMode, PowerConfig, PowerSwitch, PsmRequest};
use gasdtu::modem::status::{ModemState, PsmGranted};
use gasdtu::modem::{AtEngine, EngineOptions, ModemStatus, UrcKind};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bg96_detection_registration_signal_and_urcs_inside_replies() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A "+CEREG" URC inside every reply, and more at random moments.
    let sim = start_sim(dir.path(), "bg96", &["urc:1s"]);
    let mut r = start(config(&sim.port, ModemMode::Os));
    let mut urcs = r.at.urcs();
    let s = ready(&mut r, "bg96").await;
    let reg = s.registration.expect("registration");
    assert!(matches!(reg.stat.as_str(), "home" | "roaming"), "{reg:?}");
    assert!(reg.tac.is_some() && reg.ci.is_some(), "{reg:?}");
    let sig = s.signal.expect("signal");
    assert!(sig.rsrp_dbm.is_some() && sig.sinr_db.is_some(), "{sig:?}");
    assert!(s.sampled_at_ms.is_some());
    // Commands keep getting their own replies while URCs interleave.
    for _ in 0..5 {
        let x = r.at.call("AT+QCSQ").await.expect("AT+QCSQ");
        assert!(x.lines.iter().all(|l| l.starts_with("+QCSQ:")), "{x:?}");
    }
    let urc = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(u) = urcs.recv().await {
                if u.kind == Some(UrcKind::Cereg) {
                    return u;
                }
            }
        }
    })
    .await
    .expect("a +CEREG URC within 10 s");
    assert!(urc.line.starts_with("+CEREG:"));
    // The registration event was emitted.
    let ev = tokio::time::timeout(Duration::from_secs(5), r.events.recv())
        .await
        .expect("an event")
        .expect("event channel open");
    assert_eq!(ev["event"], "modem_registration", "{ev}");
    // A payload send answered without the prompt sent nothing, and says so.
    let e =
        r.at.call_with_payload("AT", bytes::Bytes::from_static(b"x"))
            .await
            .expect_err("no prompt");
    assert!(matches!(e, gasdtu::modem::AtError::NoPrompt { .. }), "{e}");
    // A CME error is an error, not a hang.
    let e = r.at.call("AT+NOSUCH").await.expect_err("unknown command");
    assert!(!e.unresponsive(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bc95_no_space_replies_and_echo_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bc95", &[]);
    let (mut r, _) = supervised(&sim, "bc95", |cfg| {
        cfg.apn = Some("iot.test".into());
        cfg.psm = Some(PsmRequest {
            tau: Duration::from_secs(3600),
            active: Duration::from_secs(30),
        });
        cfg.edrx = Some(Duration::from_millis(81_920));
    })
    .await;
    // The timers the network granted (CEREG level 5), the eDRX cycle set, the network time.
    let s = wait_status(
        &mut r.status,
        "PSM timers and eDRX granted",
        Duration::from_secs(10),
        |s| s.psm.is_some() && s.edrx.is_some_and(|e| e.granted_s.is_some()),
    )
    .await;
    assert_eq!(
        s.psm,
        Some(PsmGranted {
            tau_s: Some(3600),
            active_s: Some(30)
        })
    );
    let edrx = s.edrx.expect("eDRX read back (CEDRXRDP)");
    assert_eq!(
        (edrx.requested_s, edrx.granted_s, edrx.paging_window_s),
        (Some(81.92), Some(81.92), Some(10.24))
    );
    assert_eq!(s.psm_requested, s.psm);
    let t = s.network_time.expect("network time from CCLK");
    assert!(t.offset_ms.abs() < 5_000, "{t:?}");
    assert!(s.last_error.is_none(), "{:?}", s.last_error);
    let sig = s.signal.expect("signal");
    // From NUESTATS: tenths of dBm, ECL and the decimal cell id.
    assert!(
        sig.rsrp_dbm.is_some() && sig.ecl.is_some() && sig.cell_id.is_some(),
        "{sig:?}"
    );
    let x = r.at.call("AT+CEREG?").await.expect("AT+CEREG?");
    assert!(x.lines[0].starts_with("+CEREG:"), "{x:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim7020_detection_and_ceng_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "sim7020", &[]);
    let (_r, s) = supervised(&sim, "sim7020", |_| {}).await;
    let sig = s.signal.expect("signal");
    assert!(sig.rsrp_dbm.is_some() && sig.earfcn.is_some(), "{sig:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_climbs_the_ladder_to_a_power_cycle_and_the_module_answers_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bg96", &[]);
    let (mut r, _) = supervised(&sim, "bg96", |cfg| {
        cfg.power = Some(PowerConfig {
            switch: PowerSwitch::Command(sim.power_cycle_command()),
            off_for: Duration::from_millis(100),
            max_power_cycles_per_day: 6,
        });
    })
    .await;
    assert_eq!(sim.control("hang"), "ok");
    let s = wait_status(
        &mut r.status,
        "a power cycle",
        Duration::from_secs(60),
        |s| {
            s.ladder
                .last
                .as_ref()
                .is_some_and(|l| l.step == gasdtu::modem::ladder::Step::PowerCycle)
        },
    )
    .await;
    assert_eq!(s.ladder.power_cycles_today, 1, "{s:?}");
    let s = wait_status(
        &mut r.status,
        "registered again after the power cycle",
        Duration::from_secs(30),
        |s| s.link_up && s.state == ModemState::Registered && s.ladder.step.is_none(),
    )
    .await;
    let last = s.ladder.last.expect("last step");
    assert_eq!(last.outcome, "ok", "{last:?}");
    let stats: serde_json::Value = serde_json::from_str(&sim.control("stats")).expect("stats JSON");
    assert_eq!(stats["power_cycles"], 1, "{stats}");
    // The module answers again.
    r.at.call("AT").await.expect("AT after the power cycle");
    // Events: the steps in order (registration events in between are skipped).
    let mut steps = Vec::new();
    while let Ok(ev) = r.events.try_recv() {
        if ev["event"] == "modem_reset" {
            assert_eq!(ev["reason"], "unresponsive", "{ev}");
            steps.push(ev["step"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(steps, ["module_reset", "power_cycle"]);
}

#[test]
fn the_daemon_supervises_the_modem_and_status_shows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bc95", &[]);
    let daemon = Daemon::start(dir.path(), &gateway_toml(dir.path(), &sim, "socket"));
    let v = daemon.wait_modem_ready("bc95");
    let m = &v["modem"];
    assert_eq!(m["mode"], "socket", "{m}");
    assert_eq!(m["state"], "registered", "{m}");
    assert!(
        m["registration"]["stat"] == "home" || m["registration"]["stat"] == "roaming",
        "{m}"
    );
    assert_eq!(m["ladder"]["resets_today"], 0, "{m}");
    // One init at daemon start, still one a signal sample later (the port's first open and
    // the boot text waiting in it are no reboots).
    let sampled = m["sampled_at_ms"].as_i64();
    let later = common::wait_for("the next signal sample", Duration::from_secs(30), || {
        daemon
            .status()
            .filter(|v| v["modem"]["sampled_at_ms"].as_i64() > sampled)
    });
    assert_eq!(later["modem"]["inits"], 1, "{}", later["modem"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_signal_appear_in_health() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pki, mut broker) = common::mutual_tls_broker(dir.path());
    // The broker comes up only once the modem is registered, so the health message sent
    // right after the connect carries the registration.
    broker.stop();
    let sim = start_sim(dir.path(), "bg96", &[]);
    let text = format!(
        "{}\n{}",
        gateway_toml(dir.path(), &sim, "os"),
        pki.uplink_toml(broker.port)
    );
    let daemon = Daemon::start(dir.path(), &text);
    daemon.wait_modem_ready("bg96");
    broker.start();
    let sub = common::Subscriber::start(
        &pki,
        broker.port,
        "gasdtu/modem-gw/health",
        "t-health",
        false,
    );
    sub.wait_subscribed(1, Duration::from_secs(20)).await;
    let health = common::wait_until(
        "a health message with the modem registered",
        Duration::from_secs(60),
        || {
            sub.snapshot().iter().rev().find_map(|m| {
                let v: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
                (v["modem"]["registration"] == "home" || v["modem"]["registration"] == "roaming")
                    .then_some(v)
            })
        },
    )
    .await;
    let m = &health["modem"];
    assert!(m["rsrp"].is_number() && m["sinr"].is_number(), "{m}");
    assert!(m["cell"].is_string(), "{m}");
    assert_eq!(m["link_up"], true, "{m}");
}

/// The simulator's `sleep` quirk: after 1 s without a command, the first one is answered by
/// a bare CRLF only.
const SLEEPY: &str = "sleep:1s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sleep_a_safe_command_is_retried_and_an_unsafe_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bc95", &[SLEEPY]);
    let (at, stop) = engine_only(&sim.port, Duration::from_secs(3600));
    // The port opened "idle": the first command may meet a sleeping module too.
    at.call("AT").await.expect("AT");
    // Idle past the module's sleep timer (the precondition, not a wait for a result).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let x = at
        .call("AT+CSQ")
        .await
        .expect("AT+CSQ retried after the bare CRLF");
    assert!(x.lines[0].starts_with("+CSQ:"), "{x:?}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let e = at
        .call("AT+CFUN=1")
        .await
        .expect_err("an unsafe command is not repeated blindly");
    assert!(matches!(e, gasdtu::modem::AtError::Timeout { .. }), "{e}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_idle_past_wake_after_is_woken_before_the_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bc95", &[SLEEPY]);
    let (at, stop) = engine_only(&sim.port, Duration::from_millis(500));
    at.call("AT").await.expect("AT");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    at.call("AT+CFUN=1")
        .await
        .expect("the wake-up AT took the bare CRLF, the command its OK");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_lost_past_the_bound_cycles_the_radio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "sim7020", &[]);
    let (mut r, _) = supervised(&sim, "sim7020", |cfg| {
        cfg.register_within = Duration::from_secs(2);
    })
    .await;
    assert_eq!(sim.control("deregister 600"), "ok");
    let s = wait_status(
        &mut r.status,
        "a radio cycle, then registered again",
        Duration::from_secs(30),
        |s| {
            s.link_up
                && s.ladder.last.as_ref().is_some_and(|l| {
                    l.step == gasdtu::modem::ladder::Step::RadioCycle && l.outcome == "ok"
                })
        },
    )
    .await;
    assert_eq!(s.ladder.resets_today, 1, "{s:?}");
    let mut seen = Vec::new();
    while let Ok(ev) = r.events.try_recv() {
        seen.push(ev);
    }
    let reset = seen
        .iter()
        .find(|e| e["event"] == "modem_reset")
        .expect("a modem_reset event");
    assert_eq!(reset["step"], "radio_cycle");
    assert_eq!(reset["reason"], "registration_lost");
    assert!(
        seen.iter()
            .any(|e| e["event"] == "modem_registration" && e["stat"] == "searching"),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_port_is_reopened_and_the_module_set_up_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path(), "bc95", &[]);
    let (mut r, _) = supervised(&sim, "bc95", |_| {}).await;
    let mut opens = r.at.port_opens();
    let before = *opens.borrow_and_update();
    let inits = r.status.borrow().inits;
    let pty = sim.pty.take().expect("the pty pair");
    let (a, b) = (pty.a.clone(), pty.b.clone());
    pty.unplug();
    // Plugged in again at the same paths (a USB adapter re-enumerating).
    sim.pty = Some(PtyPair::at(a, b));
    tokio::time::timeout(Duration::from_secs(30), opens.wait_for(|n| *n > before))
        .await
        .expect("the engine reopens the port within 30 s")
        .expect("engine running");
    r.at.call("AT").await.expect("AT on the reopened port");
    ready(&mut r, "bc95").await;
    // Set up again exactly once for the reopen.
    wait_status(
        &mut r.status,
        "the init after the reopen",
        Duration::from_secs(30),
        |s| s.inits == inits + 1,
    )
    .await;
    two_samples(&mut r).await;
    assert_eq!(r.status.borrow().inits, inits + 1);
}

/// The daemon starts with the module long powered on: its boot text waits in the port and the
/// port's first open bumps the open counter. Neither is a reboot: the init sequence runs once
/// (the simulator's `AT` count says so too); a real reboot runs it exactly once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_runs_once_at_start_and_once_per_reboot() {
    for model in ["bg96", "bc95"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = start_sim(dir.path(), model, &[]);
        // The boot text is in the port before the supervisor starts (the module ran first).
        common::wait_for("the simulator's boot text", Duration::from_secs(10), || {
            sim_stat(&sim, "bytes_out").filter(|n| *n > 0)
        });
        let (mut r, s) = supervised(&sim, model, |_| {}).await;
        assert_eq!(s.inits, 1, "{model}: {s:?}");
        two_samples(&mut r).await;
        assert_eq!(
            r.status.borrow().inits,
            1,
            "{model}: init ran again without a reboot"
        );
        assert_eq!(sim.control("reboot"), "ok");
        wait_status(
            &mut r.status,
            "the init after the reboot",
            Duration::from_secs(30),
            |s| s.inits == 2,
        )
        .await;
        ready(&mut r, model).await;
        two_samples(&mut r).await;
        assert_eq!(r.status.borrow().inits, 2, "{model}: one reboot, one init");
        assert_eq!(sim_stat(&sim, "reboots"), Some(1), "{model}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_send_carries_raw_bytes_through_the_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bg96", &[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback listener");
    let port = listener.local_addr().expect("local addr").port();
    let (r, _) = supervised(&sim, "bg96", |_| {}).await;
    let mut urcs = r.at.urcs();
    r.at.call("AT+QIACT=1").await.expect("AT+QIACT=1");
    r.at.call(&format!("AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",{port},0,1"))
        .await
        .expect("AT+QIOPEN");
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
        .await
        .expect("the module connects within 20 s")
        .expect("accept");
    let opened = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(u) = urcs.recv().await {
                if u.kind == Some(UrcKind::Qiopen) {
                    return u.line;
                }
            }
        }
    })
    .await
    .expect("+QIOPEN within 20 s");
    assert_eq!(opened, "+QIOPEN: 0,0");
    let payload = bytes::Bytes::from_static(b"\r\nOK\r\n> raw");
    let x =
        r.at.call_with_payload(&format!("AT+QISEND=0,{}", payload.len()), payload.clone())
            .await
            .expect("QISEND");
    assert_eq!(x.result, gasdtu::modem::Final::SendOk);
    let mut got = vec![0u8; payload.len()];
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_exact(&mut conn, &mut got),
    )
    .await
    .expect("the bytes arrive within 20 s")
    .expect("read");
    assert_eq!(got, payload.as_ref());
}

fn parse(text: &str) -> gasdtu::config::Config {
    match gasdtu::config::parse_str(text, "test.toml", Path::new("/")) {
        Ok(l) => l.config,
        Err(e) => panic!("config: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_restarts_the_modem_tasks_and_events_reach_the_store() {
    use gasdtu::gateway::{Gateway, Options};
    use gasdtu::outbox::{EntryBody, EntryKind, Outbox};
    let dir = tempfile::tempdir().expect("tempdir");
    let bc95 = start_sim(dir.path(), "bc95", &[]);
    let sim7020 = start_sim(dir.path(), "sim7020", &[]);
    let opts = Options {
        notifier: gasdtu::gateway::systemd::Notifier::disabled(),
        ..Options::default()
    };
    let mut gw = Gateway::start(parse(&gateway_toml(dir.path(), &bc95, "os")), opts)
        .await
        .expect("gateway starts");
    let mut status = gw.modem();
    let model = |m: &'static str| move |s: &ModemStatus| s.model.as_deref() == Some(m) && s.link_up;
    wait_status(
        &mut status,
        "bc95 up",
        Duration::from_secs(30),
        model("bc95"),
    )
    .await;
    // A changed [modem] restarts the engine and the supervisor on the new port.
    let applied = gw
        .apply(parse(&gateway_toml(dir.path(), &sim7020, "os")), "file")
        .await;
    assert!(matches!(applied, gasdtu::gateway::Applied::Changed { .. }));
    wait_status(
        &mut status,
        "sim7020 up",
        Duration::from_secs(30),
        model("sim7020"),
    )
    .await;
    // The registration events went through the runtime's event path into the outbox.
    let events = common::wait_for(
        "modem_registration events in the store",
        Duration::from_secs(10),
        || {
            let evs: Vec<serde_json::Value> = gw
                .store()
                .pending(10_000, 0)
                .ok()?
                .into_iter()
                .filter(|e| e.kind == EntryKind::Event)
                .filter_map(|e| match e.body {
                    EntryBody::Json(v) => Some(v),
                    EntryBody::Batch(_) => None,
                })
                .filter(|v| v["event"] == "modem_registration")
                .collect();
            (evs.len() >= 2).then_some(evs)
        },
    );
    assert!(events.iter().all(|e| e["stat"].is_string()), "{events:?}");
    // Without [modem]: the tasks stop, the port is free, and the link is the OS's.
    let none = format!(
        "[gateway]\nid = \"modem-gw\"\nstate_dir = \"{}\"\n",
        dir.path().join("state").display()
    );
    gw.apply(parse(&none), "file").await;
    assert!(gw.modem().borrow().link_up);
    let (engine, at) = AtEngine::new(
        sim7020.port.display().to_string(),
        115_200,
        EngineOptions::default(),
    );
    let stop = CancellationToken::new();
    tokio::spawn(engine.run(stop.clone()));
    at.call("AT")
        .await
        .expect("the port is free for another owner");
    stop.cancel();
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_denial_does_not_climb_and_a_temporary_one_cycles_the_radio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "sim7020", &[]);
    let (mut r, _) = supervised(&sim, "sim7020", |cfg| {
        cfg.register_within = Duration::from_secs(2);
    })
    .await;
    // EMM cause 7 (EPS services not allowed): no reset can cure it.
    assert_eq!(sim.control("deny 7"), "ok");
    let s = wait_status(
        &mut r.status,
        "denied, cause 7",
        Duration::from_secs(10),
        |s| {
            s.state == ModemState::Denied
                && s.registration.as_ref().and_then(|g| g.reject_cause) == Some(7)
        },
    )
    .await;
    assert!(!s.link_up);
    // Absence of a step can only be seen after the bound passed: twice register_within.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = r.status.borrow().clone();
    assert!(s.ladder.last.is_none(), "{:?}", s.ladder);
    assert_eq!(s.ladder.resets_today, 0);
    // Cause 15 (no suitable cells in the tracking area) is worth a radio cycle.
    assert_eq!(sim.control("deny 15"), "ok");
    let s = wait_status(
        &mut r.status,
        "a radio cycle for the temporary denial, then registered",
        Duration::from_secs(30),
        |s| {
            s.link_up
                && s.ladder.last.as_ref().is_some_and(|l| {
                    l.step == gasdtu::modem::ladder::Step::RadioCycle
                        && l.reason == "registration_lost"
                })
        },
    )
    .await;
    assert_eq!(s.ladder.resets_today, 1, "{:?}", s.ladder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_sim_shows_and_does_not_climb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(dir.path(), "bc95", &[]);
    let (mut r, s) = supervised(&sim, "bc95", |cfg| {
        cfg.register_within = Duration::from_secs(2);
    })
    .await;
    assert_eq!(s.sim.as_deref(), Some("ready"));
    assert_eq!(sim.control("sim absent"), "ok");
    wait_status(&mut r.status, "SIM absent", Duration::from_secs(10), |s| {
        s.sim.as_deref() == Some("absent") && !s.link_up
    })
    .await;
    // Absence of a step can only be seen after the bound passed: twice register_within.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = r.status.borrow().clone();
    assert!(s.ladder.last.is_none(), "{:?}", s.ladder);
    assert_eq!(
        gasdtu::modem::status::status_phrase(&s),
        "modem: SIM absent"
    );
    assert_eq!(sim.control("sim present"), "ok");
    wait_status(
        &mut r.status,
        "SIM back, registered",
        Duration::from_secs(20),
        |s| s.sim.as_deref() == Some("ready") && s.link_up,
    )
    .await;
}
