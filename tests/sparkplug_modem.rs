//! The real binary as a Sparkplug edge node behind a simulated NB-IoT module (issue 14):
//! `gasdtu run` with `[modem] mode = "socket"` (`gasdtu simulate --modem bc95` on a pty), a
//! Modbus device from `gasdtu simulate` and a mosquitto over mutual TLS reached only through
//! the module's sockets. The NBIRTH carries the `Modem/` node metrics with their datatypes,
//! and the supervisor's view (registered: the link is up, or nothing would arrive).

mod common;

use std::time::Duration;

use common::modem::{ModemSim, SimArgs};
use common::remote::{pressure_device, run_daemon};
use common::{mutual_tls_broker, simulate_tcp, wait_until, Subscriber};
use gasdtu::uplink::sparkplug::proto::{metric, Payload};
use gasdtu::uplink::sparkplug::SpType;
use prost::Message;

const T: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbirth_carries_the_modem_health_through_the_module() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, broker) = mutual_tls_broker(dir.path());
    let (_sim, sim_port) = simulate_tcp(&["1:pt-float"], &[]);
    let modem = ModemSim::start(dir.path(), "bc95", SimArgs::default());
    let sub = Subscriber::start(&pki, broker.port, "spBv1.0/#", "spb-modem-sub", false);
    sub.wait_subscribed(1, T).await;
    let config = dir.path().join("gasdtu.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw-nb\"\nstate_dir = \"{state}\"\n\n\
             [buses.lan]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {sim_port}\ntimeout = \"500ms\"\n\n\
             {dev}{uplink}reconnect_min = \"500ms\"\nreconnect_max = \"2s\"\nprotocol = \"sparkplug\"\n\n\
             [uplink.sparkplug]\ngroup_id = \"gas\"\nedge_node_id = \"gw-nb\"\n\n\
             [modem]\nmode = \"socket\"\nport = \"{port}\"\nbaud = 115200\nsignal_every = \"10s\"\n\
             register_within = \"30s\"\n",
            state = dir.path().join("state").display(),
            dev = pressure_device("pcv1", 1, "1s", "f32"),
            uplink = pki.uplink_toml(broker.port),
            port = modem.port.display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let _daemon = run_daemon(&config, &log);
    let birth = wait_until("an NBIRTH through the module", T, || {
        sub.msgs
            .lock()
            .unwrap()
            .iter()
            .find(|m| m.topic == "spBv1.0/gas/NBIRTH/gw-nb")
            .and_then(|m| Payload::decode(&m.payload[..]).ok())
    })
    .await;
    let get = |name: &str| {
        birth
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
            .unwrap_or_else(|| {
                panic!(
                    "no {name} in the NBIRTH; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
    };
    for (name, t) in [
        ("Modem/State", SpType::String),
        ("Modem/Registered", SpType::Boolean),
        ("Modem/RSRP", SpType::Int32),
        ("Modem/RSSI", SpType::Int32),
        ("Modem/SINR", SpType::Int32),
        ("Modem/ECL", SpType::Int32),
        ("Modem/PDP Active", SpType::Boolean),
        ("Modem/Resets Today", SpType::UInt64),
        ("Modem/Inits", SpType::UInt64),
    ] {
        let m = get(name);
        assert_eq!(m.datatype, Some(t.code()), "{name}");
        assert!(m.alias.is_some_and(|a| a != 0), "{name}");
        assert!(m.value.is_some() || m.is_null == Some(true), "{name}");
    }
    // The broker is reached only through the module: it is registered.
    assert_eq!(
        get("Modem/Registered").value,
        Some(metric::Value::BooleanValue(true))
    );
    assert_eq!(
        get("Modem/State").value,
        Some(metric::Value::StringValue("registered".into()))
    );
    assert_eq!(
        get("Link/Transport").value,
        Some(metric::Value::StringValue("modem-socket".into()))
    );
}
