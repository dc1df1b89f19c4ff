//! Fixtures of the uplink tests: the `UplinkConfig` of a gateway under test (each file
//! overrides what it exercises with struct update syntax) and batches of readings to commit.

use std::time::Duration;

use gasdtu::config::{Encoding, SessionMode, UplinkConfig};
use gasdtu::model::{Quality, Sample, SampleBatch, Value};

use super::Pki;

/// The uplink of gateway `gw` to a mosquitto on `localhost:port` over TLS with `pki`'s CA
/// (no client certificate): client id `gasdtu-<gw>`, topic root `gasdtu/<gw>`, JSON, one
/// long-lived session, timers short enough for tests (reconnect 200-400 ms, connect 10 s,
/// keepalive and PUBACK timeout 30 s).
pub fn uplink_config(pki: &Pki, port: u16, gw: &str) -> UplinkConfig {
    UplinkConfig {
        host: "localhost".into(),
        port,
        tls: true,
        ca_file: Some(pki.path("ca.pem")),
        client_cert: None,
        client_key: None,
        server_name: None,
        username: None,
        password: None,
        client_id: format!("gasdtu-{gw}"),
        topic_root: format!("gasdtu/{gw}"),
        keepalive: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
        reconnect_min: Duration::from_millis(200),
        reconnect_max: Duration::from_millis(400),
        max_payload: 1024,
        rate_limit: None,
        encoding: Encoding::Json,
        format: Default::default(),
        inflight: 4,
        session: SessionMode::Always,
        linger: Duration::from_secs(20),
        check_in: Duration::from_secs(3600),
        ack_timeout: Duration::from_secs(30),
    }
}

/// A batch of `n` good integer readings `p<first>..` = `first..` of `device` on `bus1`, read now.
pub fn int_readings(device: &str, first: i64, n: i64) -> SampleBatch {
    readings(device, first, n, Value::Int)
}

/// A batch of `n` good readings `p<first>..` of `device` on `bus1`, read now, point `p<i>`
/// having the value `value(i)`.
pub fn readings(device: &str, first: i64, n: i64, value: impl Fn(i64) -> Value) -> SampleBatch {
    let now = std::time::SystemTime::now();
    SampleBatch {
        device: device.into(),
        bus: "bus1".into(),
        slot: now,
        samples: (first..first + n)
            .map(|i| Sample {
                point: format!("p{i}").into(),
                value: Some(value(i)),
                unit: None,
                quality: Quality::Good,
                read_at: now,
            })
            .collect(),
        online: true,
        failed_cycles: 0,
    }
}
