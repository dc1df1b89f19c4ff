//! Fixtures of the uplink tests: the `UplinkConfig` of a gateway under test (each file
//! overrides what it exercises with struct update syntax) and batches of readings to commit.

use std::time::Duration;

use gasdtu::config::{Encoding, SessionMode, UplinkConfig};
use gasdtu::model::{Quality, Sample, SampleBatch, Value};

use super::Pki;

/// The uplink of gateway `gw` to a plain MQTT broker on `127.0.0.1:port` (no TLS): client id
/// `gasdtu-<gw>`, topic root `gasdtu/<gw>`, JSON, one long-lived session, timers short enough
/// for tests (reconnect 200-400 ms, connect 10 s, keepalive and PUBACK timeout 30 s).
pub fn plain_uplink_config(port: u16, gw: &str) -> UplinkConfig {
    UplinkConfig {
        host: "127.0.0.1".into(),
        port,
        tls: false,
        ca_file: None,
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

/// `plain_uplink_config` to a mosquitto on `localhost:port` over TLS with `pki`'s CA (no
/// client certificate).
pub fn uplink_config(pki: &Pki, port: u16, gw: &str) -> UplinkConfig {
    UplinkConfig {
        host: "localhost".into(),
        tls: true,
        ca_file: Some(pki.path("ca.pem")),
        ..plain_uplink_config(port, gw)
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

/// Milliseconds since the epoch of an RFC 3339 time stamp (a data message's read time).
pub fn rfc3339_ms(rfc3339: &str) -> i64 {
    let t = humantime::parse_rfc3339(rfc3339).unwrap_or_else(|e| panic!("bad time {rfc3339}: {e}"));
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Every reading of a decoded data message (format 1, as `gasdtu::uplink::decode` gives it):
/// (device, point, read time in ms), the good (`v`) and the bad (`bad`) ones.
pub fn data_readings(v: &serde_json::Value) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for d in v["data"].as_array().expect("a data message has data") {
        let dev = d["dev"]
            .as_str()
            .expect("every device read names its device");
        for read in d["reads"].as_array().expect("every device has reads") {
            let t = rfc3339_ms(read["t"].as_str().expect("every read has a time"));
            for key in ["v", "bad"] {
                if let Some(obj) = read[key].as_object() {
                    out.extend(obj.keys().map(|p| (dev.to_string(), p.clone(), t)));
                }
            }
        }
    }
    out
}
