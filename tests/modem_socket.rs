//! Socket mode end to end (issue 11): readings committed to a real SQLite store reach a real
//! mosquitto over TLS through a simulated UART-only module (`gasdtu simulate --modem <model>` on
//! a pty pair, its sockets paced at NB-IoT rates with a 0.5 s RTT): the forwarder connects to
//! the modem bridge (an HTTP CONNECT proxy on loopback), the bridge drives the module's AT
//! socket commands through the AT engine, and TLS runs end to end under the broker's name. Run
//! for the BG96 dialect (QI*, raw bytes after a prompt, pushed data), the BC95 dialect (NSO*,
//! hex, "data waiting" + NSORF reads), the BC66 dialect (QI* in hex data format, inline hex
//! sends, hex QIRD reads) and the SIM7080 dialect (CA*, bare ">" prompt, binary inside
//! +CARECV); for the last two also a network close of the module socket mid-session, after
//! which the bridge opens a new one and every reading arrives, and a registration loss that
//! takes the PDP context with it (`+APP PDP: 0,DEACTIVE`, `+QIURC: "pdpdeact"`): the status
//! shows the context down then up again and every reading arrives. The forwarder's link gate
//! follows the supervisor.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::modem::{ModemSim, SimArgs};
use common::{wait_until, Broker, BrokerTls, Pki, Subscriber};
use gasdtu::config::{Encoding, ModemConfig, ModemMode, StoreConfig, UplinkConfig};
use gasdtu::model::Value;
use gasdtu::modem::{
    link_gate, AtEngine, EngineOptions, ModemStatus, ModemSupervisor, SocketBridge,
    SupervisorOptions,
};
use gasdtu::store::{ClockStamp, Store};
use gasdtu::uplink::{decode, Forwarder, LinkState, LinkStatus};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

const ROOT: &str = "gasdtu/gw-nb";
const T: Duration = Duration::from_secs(60);

fn uplink(pki: &Pki, port: u16) -> UplinkConfig {
    UplinkConfig {
        keepalive: Duration::from_secs(240),
        connect_timeout: Duration::from_secs(60),
        reconnect_min: Duration::from_millis(500),
        reconnect_max: Duration::from_secs(2),
        encoding: Encoding::Cbor,
        format: Default::default(),
        ack_timeout: Duration::from_secs(60),
        ..common::uplink_config(pki, port, "gw-nb")
    }
}

fn readings_delivered(sub: &Subscriber) -> usize {
    sub.snapshot()
        .iter()
        .filter(|m| m.topic.ends_with("/data"))
        .filter_map(|m| decode(&m.payload).ok())
        .flat_map(|d| d["data"].as_array().cloned().unwrap_or_default())
        .flat_map(|dev| dev["reads"].as_array().cloned().unwrap_or_default())
        .map(|r| r["v"].as_object().map_or(0, |v| v.len()))
        .sum()
}

/// Distinct readings delivered (device, read): redeliveries after a reconnect count once.
fn distinct_readings(sub: &Subscriber) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for d in sub
        .snapshot()
        .iter()
        .filter(|m| m.topic.ends_with("/data"))
        .filter_map(|m| decode(&m.payload).ok())
    {
        for dev in d["data"].as_array().cloned().unwrap_or_default() {
            for r in dev["reads"].as_array().cloned().unwrap_or_default() {
                for (k, v) in r["v"].as_object().cloned().unwrap_or_default() {
                    seen.insert(format!("{}|{}|{k}|{v}", dev["dev"], r["t"]));
                }
            }
        }
    }
    seen.len()
}

async fn through_the_module(model: &str) {
    session(model, Disruption::None).await
}

/// What happens to the module socket while a second batch is under way.
#[derive(Clone, Copy, PartialEq)]
enum Disruption {
    None,
    /// The network closes the module socket.
    NetClose,
    /// Registration lost for a few seconds: the module reports its PDP context deactivated.
    PdpLoss,
}

/// One forwarding session through the simulated `model`; with a disruption while a second
/// batch is under way, every reading still arrives.
async fn session(model: &str, disruption: Disruption) {
    let netclose = disruption != Disruption::None;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let broker = Broker::new(
        dir.path(),
        &pki,
        &BrokerTls {
            cert: "server",
            require_certificate: false,
            tls_version: None,
        },
        false,
    );
    let sub = Subscriber::start(&pki, broker.port, &format!("{ROOT}/#"), "nb-sub", false);
    sub.wait_subscribed(1, T).await;
    let sim = ModemSim::start(
        dir.path(),
        model,
        SimArgs {
            rtt: Some("0.5s"),
            seed: Some(11),
            // With the close, also a +CEREG URC inside a third of the replies and now and then.
            faults: if disruption == Disruption::NetClose {
                &["urc=0.3:2s"]
            } else {
                &[]
            },
        },
    );

    let stop = CancellationToken::new();
    let mut mc = ModemConfig::new(ModemMode::Socket, sim.port.display().to_string());
    mc.baud = 115_200;
    mc.signal_every = Duration::from_secs(30);
    let (engine, at) = AtEngine::new(mc.port.clone(), mc.baud, EngineOptions::default());
    let (status_tx, status) = watch::channel(ModemStatus::default());
    // Every PDP state the supervisor published, in order.
    let pdp_seen = Arc::new(std::sync::Mutex::new(Vec::<Option<bool>>::new()));
    {
        let (mut status, seen) = (status.clone(), pdp_seen.clone());
        tokio::spawn(async move {
            while status.changed().await.is_ok() {
                let p = status.borrow_and_update().pdp_active;
                let mut seen = seen.lock().unwrap();
                if seen.last() != Some(&p) {
                    seen.push(p);
                }
            }
        });
    }
    let sup = ModemSupervisor::new(
        mc,
        at.clone(),
        SupervisorOptions::default(),
        Arc::new(status_tx),
        None,
    );
    tokio::spawn(engine.run(stop.clone()));
    tokio::spawn(sup.run(stop.clone()));
    let bridge = SocketBridge::bind(at.clone(), status.clone(), Vec::new()).unwrap();
    let proxy = bridge.local_addr().unwrap();
    let meter = bridge.meter();
    tokio::spawn(bridge.run(stop.clone()));

    let (store, _) = Store::open(&dir.path().join("state"), &StoreConfig::default()).unwrap();
    let store = Arc::new(store);
    let wake = Arc::new(Notify::new());
    let (ltx, link) = watch::channel(LinkStatus::default());
    let fwd = Forwarder::new(
        uplink(&pki, broker.port),
        "gw-nb",
        store.clone(),
        wake.clone(),
        ltx,
    )
    .with_proxy(proxy)
    .with_link_meter(meter)
    .with_link_gate(link_gate(status.clone()));
    let fwd_stop = CancellationToken::new();
    let task = tokio::spawn(fwd.run(fwd_stop.clone()));

    let stamp = ClockStamp::now();
    for i in 0..3 {
        store
            .commit(
                &[common::readings(&format!("meter{i}"), 0, 10, |i| {
                    Value::Float(400.0 + i as f64 / 10.0)
                })],
                &[],
                &stamp,
            )
            .unwrap();
    }
    wake.notify_one();
    wait_until(&format!("{model}: 30 readings at the broker"), T, || {
        (readings_delivered(&sub) == 30).then_some(())
    })
    .await;
    let st = wait_until("acknowledged through the module", T, || {
        let st = link.borrow().clone();
        let s = store.stats().ok()?;
        (st.state == LinkState::Connected && s.pending_entries == 0 && s.sealed_messages == 0)
            .then_some(st)
    })
    .await;
    assert!(st.acked >= 1, "{st:?}");
    if netclose {
        let opened = |sim: &ModemSim| -> u64 {
            let st: serde_json::Value =
                serde_json::from_str(sim.control("stats").trim()).expect("stats JSON");
            st["sockets_opened"].as_u64().unwrap_or(0)
        };
        let before = opened(&sim);
        for i in 3..6 {
            store
                .commit(
                    &[common::readings(&format!("meter{i}"), 0, 10, |i| {
                        Value::Float(500.0 + i as f64 / 10.0)
                    })],
                    &[],
                    &stamp,
                )
                .unwrap();
        }
        wake.notify_one();
        if disruption == Disruption::PdpLoss {
            assert_eq!(sim.control("deregister 3").trim(), "ok");
            wait_until("the supervisor saw the PDP context go", T, || {
                (status.borrow().pdp_active == Some(false)).then_some(())
            })
            .await;
        } else {
            assert_eq!(sim.control("close-sockets").trim(), "ok");
        }
        wait_until(
            &format!("{model}: 60 distinct readings after the close"),
            T,
            || (distinct_readings(&sub) == 60).then_some(()),
        )
        .await;
        wait_until("everything acknowledged after the reconnect", T, || {
            let s = store.stats().ok()?;
            (link.borrow().state == LinkState::Connected
                && s.pending_entries == 0
                && s.sealed_messages == 0)
                .then_some(())
        })
        .await;
        // The bridge really opened a new module socket.
        assert!(
            opened(&sim) > before,
            "no new module socket after the close"
        );
        if disruption == Disruption::PdpLoss {
            // Down, then up again (the bridge re-activated it for the new socket).
            let seen = pdp_seen.lock().unwrap().clone();
            let down = seen.iter().position(|p| *p == Some(false));
            assert!(
                down.is_some_and(|d| seen[d..].contains(&Some(true))),
                "PDP states seen: {seen:?}"
            );
            assert_eq!(status.borrow().pdp_active, Some(true));
        }
    }
    // The module was really in the path: the supervisor saw it registered and detected.
    let s = status.borrow().clone();
    assert_eq!(s.model.as_deref(), Some(model), "{s:?}");
    assert!(s.link_up);
    // The modem's last registration episode was timed.
    assert!(
        s.registered_in_ms.is_some() && s.registered_since_ms.is_some(),
        "{s:?}"
    );
    fwd_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    // The session's figures, from the bridge: every phase, and the module socket's bytes
    // both ways (TLS and MQTT framing over the payload).
    let f = link.borrow().session.clone();
    assert_eq!(f.bytes, gasdtu::uplink::ByteCount::Socket, "{f:?}");
    assert!(f.open_ms.is_some() && f.tls_ms.is_some(), "{f:?}");
    assert!(f.drain_ms.is_some() && f.total_ms.is_some(), "{f:?}");
    let connect = [f.open_ms, f.tls_ms, f.mqtt_ms].map(|p| p.unwrap_or(0));
    assert_eq!(
        connect.iter().sum::<u64>(),
        f.connect_ms.unwrap_or(0),
        "{f:?}"
    );
    assert!(
        f.connect_ms.unwrap_or(0) + f.drain_ms.unwrap_or(0) <= f.total_ms.unwrap_or(0),
        "{f:?}"
    );
    assert!(f.bytes_down.is_some_and(|d| d > 0), "{f:?}");
    assert!(f.payload_up > 0 && f.bytes_up >= f.payload_up, "{f:?}");
    assert!(f.messages >= 1, "{f:?}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_delivers_over_tls_through_a_bg96() {
    through_the_module("bg96").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_delivers_over_tls_through_a_bc95() {
    through_the_module("bc95").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_delivers_over_tls_through_a_bc66() {
    through_the_module("bc66").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_delivers_over_tls_through_a_sim7080() {
    through_the_module("sim7080").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bc66_network_close_mid_session_loses_nothing() {
    session("bc66", Disruption::NetClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim7080_network_close_mid_session_loses_nothing() {
    session("sim7080", Disruption::NetClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim7080_pdp_loss_mid_session_reactivates_and_loses_nothing() {
    session("sim7080", Disruption::PdpLoss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bc66_pdp_loss_mid_session_loses_nothing() {
    session("bc66", Disruption::PdpLoss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bg96_pdp_loss_mid_session_reactivates_and_loses_nothing() {
    session("bg96", Disruption::PdpLoss).await;
}
