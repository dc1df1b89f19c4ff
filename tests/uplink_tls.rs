//! The uplink against a real mosquitto with certificates generated at test time: TLS and
//! mutual TLS connect, a wrong CA and a missing client certificate refused with a clear error,
//! the server-name override, the retained `online` and the last will `offline`, drain order
//! (alarms, events, then data; backlog flagged historical), acks only after PUBACK (proved
//! against a fake broker that withholds them), and a broker stopped and restarted on the same
//! port while entries keep coming: everything arrives and the reconnect is fast. The outbox
//! here is an in-memory implementation of the `Outbox` contract (the SQLite store implements
//! the same trait).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{session_present, wait_until, Broker, BrokerTls, Pki, Subscriber};
use gasdtu::config::{Encoding, UplinkConfig};
use gasdtu::model::{Quality, Sample, SampleBatch, Value};
use gasdtu::outbox::{Entry, EntryBody, EntryKind, Outbox, OutboxError, Sealed};
use gasdtu::uplink::{decode, Forwarder, LinkState, LinkStatus};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

const GW: &str = "gw-test";
const ROOT: &str = "gasdtu/gw-test";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ------------------------------------------------------------------------ in-memory outbox

#[derive(Default)]
struct Inner {
    next_id: i64,
    next_seq: u64,
    entries: Vec<(Entry, bool)>,
    msgs: BTreeMap<u64, (Sealed, Vec<i64>)>,
    acked: Vec<u64>,
}

#[derive(Default)]
struct MemOutbox {
    inner: Mutex<Inner>,
}

impl MemOutbox {
    fn add(&self, kind: EntryKind, created_ms: i64, body: EntryBody) -> i64 {
        let mut g = self.inner.lock().unwrap();
        g.next_id += 1;
        let id = g.next_id;
        g.entries.push((
            Entry {
                id,
                kind,
                historical: false,
                created_ms,
                body,
            },
            false,
        ));
        id
    }

    /// A one-reading batch of device `meter` whose point `n` carries `n`.
    fn add_reading(&self, n: i64, created_ms: i64) -> i64 {
        let t = UNIX_EPOCH + Duration::from_millis(created_ms as u64);
        self.add(
            EntryKind::Data,
            created_ms,
            EntryBody::Batch(SampleBatch {
                device: Arc::from("meter"),
                bus: Arc::from("b"),
                slot: t,
                samples: vec![Sample {
                    point: Arc::from("n"),
                    value: Some(Value::Int(n)),
                    unit: Some(Arc::from("m3")),
                    quality: Quality::Good,
                    read_at: t,
                }],
                online: true,
                failed_cycles: 0,
            }),
        )
    }

    fn remaining(&self) -> usize {
        self.inner.lock().unwrap().entries.len()
    }

    fn acked(&self) -> Vec<u64> {
        self.inner.lock().unwrap().acked.clone()
    }
}

impl Outbox for MemOutbox {
    fn pending(&self, limit: usize, live_since_ms: i64) -> Result<Vec<Entry>, OutboxError> {
        let g = self.inner.lock().unwrap();
        let mut v: Vec<Entry> = g
            .entries
            .iter()
            .filter(|(_, sealed)| !sealed)
            .map(|(e, _)| {
                let mut e = e.clone();
                e.historical = e.kind == EntryKind::Data && e.created_ms < live_since_ms;
                e
            })
            .collect();
        v.sort_by_key(|e| {
            let order = match (e.kind, e.historical) {
                (EntryKind::Data, false) => -e.created_ms,
                _ => e.created_ms,
            };
            (e.kind, e.historical, order, e.id)
        });
        v.truncate(limit);
        Ok(v)
    }

    fn seal(
        &self,
        topic: &str,
        entries: &[i64],
        readings: u64,
        build: &mut dyn FnMut(u64) -> Result<Vec<u8>, String>,
    ) -> Result<Sealed, OutboxError> {
        let mut g = self.inner.lock().unwrap();
        let bad: Vec<i64> = entries
            .iter()
            .copied()
            .filter(|id| !g.entries.iter().any(|(e, s)| e.id == *id && !s))
            .collect();
        if !bad.is_empty() {
            return Err(OutboxError::NotPending(bad));
        }
        g.next_seq += 1;
        let seq = g.next_seq;
        let payload = build(seq).map_err(OutboxError::Build)?;
        for (e, s) in g.entries.iter_mut() {
            if entries.contains(&e.id) {
                *s = true;
            }
        }
        let m = Sealed {
            seq,
            topic: topic.to_string(),
            payload,
            readings,
            retain: false,
        };
        g.msgs.insert(seq, (m.clone(), entries.to_vec()));
        Ok(m)
    }

    fn unacked(&self) -> Result<Vec<Sealed>, OutboxError> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .msgs
            .values()
            .map(|(m, _)| m.clone())
            .collect())
    }

    fn ack(&self, seq: u64) -> Result<(), OutboxError> {
        let mut g = self.inner.lock().unwrap();
        if let Some((_, ids)) = g.msgs.remove(&seq) {
            g.entries.retain(|(e, _)| !ids.contains(&e.id));
        }
        g.acked.push(seq);
        Ok(())
    }
}

// ------------------------------------------------------------------------------- harness

fn uplink(pki: &Pki, port: u16) -> UplinkConfig {
    UplinkConfig {
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(2),
        ..common::uplink_config(pki, port, GW)
    }
}

fn server_only() -> BrokerTls {
    BrokerTls {
        cert: "server",
        require_certificate: false,
        tls_version: None,
    }
}

/// A running forwarder with its status history.
struct Running {
    wake: Arc<Notify>,
    status: watch::Receiver<LinkStatus>,
    history: Arc<Mutex<Vec<LinkState>>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(cfg: UplinkConfig, outbox: Arc<MemOutbox>) -> Running {
        let wake = Arc::new(Notify::new());
        let (tx, rx) = watch::channel(LinkStatus::default());
        let history = Arc::new(Mutex::new(Vec::new()));
        let (h, mut r) = (history.clone(), rx.clone());
        tokio::spawn(async move {
            while r.changed().await.is_ok() {
                let s = r.borrow_and_update().state.clone();
                let mut h = h.lock().unwrap();
                if h.last() != Some(&s) {
                    h.push(s);
                }
            }
        });
        let shutdown = CancellationToken::new();
        let f = Forwarder::new(cfg, GW, outbox.clone(), wake.clone(), tx);
        let task = tokio::spawn(f.run(shutdown.clone()));
        Running {
            wake,
            status: rx,
            history,
            shutdown,
            task,
        }
    }

    fn state(&self) -> LinkState {
        self.status.borrow().state.clone()
    }

    fn ever_connected(&self) -> bool {
        self.history.lock().unwrap().contains(&LinkState::Connected)
    }

    async fn wait_connected(&self, deadline: Duration) {
        wait_until("forwarder connected", deadline, || {
            (self.state() == LinkState::Connected).then_some(())
        })
        .await;
    }

    async fn wait_down(&self, deadline: Duration) -> String {
        wait_until("forwarder down with an error", deadline, || {
            match self.state() {
                LinkState::Down { last_error, .. } => Some(last_error),
                _ => None,
            }
        })
        .await
    }
}

/// Decoded data/alarm/event messages (topic, document), in arrival order.
fn decoded(sub: &Subscriber) -> Vec<(String, Json)> {
    sub.snapshot()
        .into_iter()
        .filter(|m| !m.topic.ends_with("/status") && !m.topic.ends_with("/health"))
        .map(|m| (m.topic.clone(), decode(&m.payload).unwrap()))
        .collect()
}

/// Values of point `n` in data messages, first copy of each seq only.
fn readings(msgs: &[(String, Json)]) -> (Vec<i64>, usize) {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut dups = 0;
    for (t, d) in msgs {
        if !t.ends_with("/data") {
            continue;
        }
        if !seen.insert(d["seq"].as_u64().unwrap()) {
            dups += 1;
            continue;
        }
        for dev in d["data"].as_array().unwrap() {
            for r in dev["reads"].as_array().unwrap() {
                if let Some(n) = r["v"]["n"].as_i64() {
                    out.push(n);
                }
            }
        }
    }
    (out, dups)
}

fn status_msgs(sub: &Subscriber) -> Vec<(String, bool)> {
    sub.snapshot()
        .into_iter()
        .filter(|m| m.topic == format!("{ROOT}/status"))
        .map(|m| (String::from_utf8_lossy(&m.payload).to_string(), m.retain))
        .collect()
}

const T: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connect_delivers_and_acks_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let broker = Broker::new(dir.path(), &pki, &server_only(), false);
    let sub = Subscriber::start(&pki, broker.port, &format!("{ROOT}/#"), "sub-1", false);
    sub.wait_subscribed(1, T).await;

    let outbox = Arc::new(MemOutbox::default());
    for n in 0..30 {
        outbox.add_reading(n, now_ms() + n);
    }
    let run = Running::start(uplink(&pki, broker.port), outbox.clone());
    run.wait_connected(T).await;
    wait_until("outbox drained", T, || {
        (outbox.remaining() == 0).then_some(())
    })
    .await;
    let mut got = wait_until("all readings at the subscriber", T, || {
        let (r, _) = readings(&decoded(&sub));
        (r.len() >= 30).then_some(r)
    })
    .await;
    got.sort();
    assert_eq!(got, (0..30).collect::<Vec<_>>());
    // Every message carries the gateway id and a distinct sequence number.
    let msgs = decoded(&sub);
    let seqs: BTreeSet<u64> = msgs
        .iter()
        .map(|(_, d)| d["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), msgs.len());
    assert!(msgs.iter().all(|(_, d)| d["gw"] == GW));
    assert_eq!(outbox.acked().len(), msgs.len());
    let st = run.status.borrow().clone();
    assert_eq!(st.acked as usize, msgs.len());
    assert!(st.last_ack_ms.is_some());
    // `online` was published retained: a new subscriber gets it from the broker's store.
    let late = Subscriber::start(
        &pki,
        broker.port,
        &format!("{ROOT}/status"),
        "sub-late",
        false,
    );
    wait_until("retained online", T, || {
        status_msgs(&late)
            .contains(&("online".to_string(), true))
            .then_some(())
    })
    .await;
    run.shutdown.cancel();
    run.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_resumes_the_tls_session_the_broker_issued() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let broker = Broker::new(dir.path(), &pki, &server_only(), false);
    let outbox = Arc::new(MemOutbox::default());
    let run = Running::start(uplink(&pki, broker.port), outbox.clone());
    run.wait_connected(T).await;
    assert_eq!(
        run.status.borrow().tls_resumptions,
        0,
        "nothing to resume yet"
    );
    // Another client taking over the gateway's client id makes mosquitto close the
    // gateway's connection: the forwarder reconnects to the same broker process, which
    // still accepts the tickets it issued.
    session_present(&pki, broker.port, &format!("gasdtu-{GW}")).await;
    let st = wait_until("reconnected with a stored TLS session", T, || {
        let st = run.status.borrow().clone();
        (st.state == LinkState::Connected && st.reconnects >= 1 && st.tls_resumptions >= 1)
            .then_some(st)
    })
    .await;
    assert!(st.tls_resumptions <= st.reconnects, "{st:?}");
    // And the broker accepted it: the certificate was verified once, at the first connect
    // only (a full handshake verifies it, a resumed one does not).
    assert_eq!(st.tls_full_handshakes, 1, "{st:?}");
    // And data still flows over the resumed session.
    outbox.add_reading(1, now_ms());
    run.wake.notify_one();
    wait_until("the reading acknowledged", T, || {
        (outbox.remaining() == 0).then_some(())
    })
    .await;
    run.shutdown.cancel();
    run.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_connects_and_a_client_without_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    for version in [None, Some("tlsv1.2")] {
        let tls = BrokerTls {
            cert: "server",
            require_certificate: true,
            tls_version: version,
        };
        let broker = Broker::new(dir.path(), &pki, &tls, false);

        // Without a client certificate: refused, with an error that says why.
        let outbox = Arc::new(MemOutbox::default());
        outbox.add_reading(1, now_ms());
        let run = Running::start(uplink(&pki, broker.port), outbox.clone());
        let err = run.wait_down(T).await;
        println!("no client certificate ({version:?}): {err}");
        assert!(
            err.contains("127.0.0.1") || err.contains("localhost"),
            "error names the broker: {err}"
        );
        assert!(
            err.contains("CertificateRequired"),
            "{version:?}: error should explain the refusal: {err}"
        );
        assert!(!run.ever_connected(), "{version:?}: must never connect");
        assert!(outbox.acked().is_empty());
        run.task.abort();

        // With the client certificate: connects and delivers.
        let mut cfg = uplink(&pki, broker.port);
        cfg.client_cert = Some(pki.path("client.pem"));
        cfg.client_key = Some(pki.path("client.key"));
        let run = Running::start(cfg, outbox.clone());
        run.wait_connected(T).await;
        wait_until("drained over mutual TLS", T, || {
            (outbox.remaining() == 0).then_some(())
        })
        .await;
        run.shutdown.cancel();
        run.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_renewed_in_place_is_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let broker = Broker::new(dir.path(), &pki, &server_only(), false);
    let outbox = Arc::new(MemOutbox::default());
    outbox.add_reading(1, now_ms());
    // The gateway's CA file is stale (another CA): refused, retrying with the kept config.
    let ca = dir.path().join("gateway-ca.pem");
    std::fs::copy(pki.path("other-ca.pem"), &ca).unwrap();
    let mut cfg = uplink(&pki, broker.port);
    cfg.ca_file = Some(ca.clone());
    let run = Running::start(cfg, outbox.clone());
    let err = run.wait_down(T).await;
    assert!(err.contains("UnknownIssuer"), "{err}");
    // Provisioning renews the file in place: the next attempt uses it.
    std::fs::copy(pki.path("ca.pem"), &ca).unwrap();
    run.wait_connected(T).await;
    wait_until("the reading delivered", T, || {
        (outbox.remaining() == 0).then_some(())
    })
    .await;
    run.shutdown.cancel();
    run.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_is_refused_with_a_certificate_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let broker = Broker::new(dir.path(), &pki, &server_only(), false);
    let outbox = Arc::new(MemOutbox::default());
    outbox.add_reading(1, now_ms());
    let mut cfg = uplink(&pki, broker.port);
    cfg.ca_file = Some(pki.path("other-ca.pem"));
    let run = Running::start(cfg, outbox.clone());
    let err = run.wait_down(T).await;
    println!("wrong CA: {err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    // It keeps retrying, and never connects.
    let reconnecting = wait_until("a second attempt", T, || {
        let h = run.history.lock().unwrap();
        (h.iter().filter(|s| **s == LinkState::Connecting).count() >= 2).then_some(())
    });
    reconnecting.await;
    assert!(!run.ever_connected());
    assert_eq!(outbox.remaining(), 1);
    run.task.abort();

    // A CA file that is not PEM: the error names the file.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let mut cfg = uplink(&pki, broker.port);
    cfg.ca_file = Some(junk.clone());
    let run = Running::start(cfg, outbox.clone());
    let err = run.wait_down(T).await;
    assert!(err.contains(&junk.display().to_string()), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");
    run.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_override_verifies_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let tls = BrokerTls {
        cert: "named",
        require_certificate: false,
        tls_version: None,
    };
    let broker = Broker::new(dir.path(), &pki, &tls, false);
    let outbox = Arc::new(MemOutbox::default());
    outbox.add_reading(1, now_ms());

    // Connecting to 127.0.0.1 with a certificate for broker.example only: refused ...
    let mut cfg = uplink(&pki, broker.port);
    cfg.host = "127.0.0.1".into();
    let run = Running::start(cfg.clone(), outbox.clone());
    let err = run.wait_down(T).await;
    assert!(err.contains("certificate"), "{err}");
    assert!(!run.ever_connected());
    run.task.abort();

    // ... unless told which name to verify.
    cfg.server_name = Some("broker.example".into());
    let run = Running::start(cfg.clone(), outbox.clone());
    run.wait_connected(T).await;
    wait_until("drained", T, || (outbox.remaining() == 0).then_some(())).await;
    run.shutdown.cancel();
    run.task.await.unwrap();

    // The override still checks the name: a wrong one is refused.
    cfg.server_name = Some("other.example".into());
    let run = Running::start(cfg, outbox.clone());
    let err = run.wait_down(T).await;
    assert!(err.contains("certificate"), "{err}");
    assert!(!run.ever_connected());
    run.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_offline_is_retained_when_the_connection_dies() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let broker = Broker::new(dir.path(), &pki, &server_only(), false);
    let sub = Subscriber::start(&pki, broker.port, &format!("{ROOT}/status"), "sub-s", false);
    sub.wait_subscribed(1, T).await;
    let run = Running::start(uplink(&pki, broker.port), Arc::new(MemOutbox::default()));
    run.wait_connected(T).await;
    wait_until("online", T, || {
        status_msgs(&sub)
            .iter()
            .any(|(p, _)| p == "online")
            .then_some(())
    })
    .await;
    // Abrupt end: no DISCONNECT, the socket just closes.
    run.task.abort();
    let _ = run.task.await;
    wait_until("last will offline", T, || {
        status_msgs(&sub)
            .iter()
            .any(|(p, _)| p == "offline")
            .then_some(())
    })
    .await;
    let late = Subscriber::start(&pki, broker.port, &format!("{ROOT}/status"), "sub-l", false);
    wait_until("retained offline", T, || {
        (status_msgs(&late) == vec![("offline".to_string(), true)]).then_some(())
    })
    .await;

    // A graceful shutdown also leaves `offline` retained (published before DISCONNECT).
    let run = Running::start(uplink(&pki, broker.port), Arc::new(MemOutbox::default()));
    run.wait_connected(T).await;
    let n = status_msgs(&sub).len();
    run.shutdown.cancel();
    run.task.await.unwrap();
    wait_until("offline after graceful shutdown", T, || {
        let s = status_msgs(&sub);
        (s.len() > n && s.last().map(|x| x.0.as_str()) == Some("offline")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_and_events_go_first_and_backlog_is_historical() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let broker = Broker::new(dir.path(), &pki, &server_only(), false);
    let sub = Subscriber::start(&pki, broker.port, &format!("{ROOT}/#"), "sub-o", false);
    sub.wait_subscribed(1, T).await;
    let outbox = Arc::new(MemOutbox::default());
    let old = now_ms() - 3_600_000;
    for n in 0..10 {
        outbox.add_reading(n, old + n * 1000);
    }
    outbox.add(
        EntryKind::Event,
        old,
        EntryBody::Json(json!({"event": "restart"})),
    );
    outbox.add(
        EntryKind::Alarm,
        old + 5,
        EntryBody::Json(json!({"alarm": "pressure_high", "value": 7.5})),
    );
    let mut cfg = uplink(&pki, broker.port);
    cfg.inflight = 1; // strictly one at a time: arrival order is send order
    let run = Running::start(cfg, outbox.clone());
    run.wait_connected(T).await;
    let msgs = wait_until("all messages", T, || {
        let m = decoded(&sub);
        (readings(&m).0.len() >= 10 && m.len() >= 3).then_some(m)
    })
    .await;
    assert_eq!(msgs[0].0, format!("{ROOT}/alarm"));
    assert_eq!(msgs[0].1["alarm"], "pressure_high");
    assert_eq!(msgs[1].0, format!("{ROOT}/event"));
    assert_eq!(msgs[1].1["event"], "restart");
    for (t, d) in &msgs[2..] {
        assert_eq!(t, &format!("{ROOT}/data"));
        assert_eq!(d["hist"], true, "backlog must be flagged historical: {d}");
    }
    // Backlog goes oldest first.
    assert_eq!(readings(&msgs).0, (0..10).collect::<Vec<_>>());

    // Data polled during the session is live.
    outbox.add_reading(100, now_ms() + 1000);
    run.wake.notify_one();
    let live = wait_until("live reading", T, || {
        decoded(&sub)
            .into_iter()
            .find(|(_, d)| d["data"][0]["reads"][0]["v"]["n"] == 100)
    })
    .await;
    assert_eq!(live.1["hist"], false);
    run.shutdown.cancel();
    run.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing_and_reconnects_fast() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let mut broker = Broker::new(dir.path(), &pki, &server_only(), true);
    let sub = Subscriber::start(&pki, broker.port, &format!("{ROOT}/data"), "sub-r", true);
    sub.wait_subscribed(1, T).await;
    let outbox = Arc::new(MemOutbox::default());
    let run = Running::start(uplink(&pki, broker.port), outbox.clone());
    run.wait_connected(T).await;

    // A producer adds one reading every 50 ms, like a poller that never stops.
    let stop = CancellationToken::new();
    let produced = Arc::new(Mutex::new(0i64));
    let producer = {
        let (o, w, s, p) = (
            outbox.clone(),
            run.wake.clone(),
            stop.clone(),
            produced.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !s.is_cancelled() {
                o.add_reading(n, now_ms());
                w.notify_one();
                n += 1;
                *p.lock().unwrap() = n;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    wait_until("some acked", T, || {
        (outbox.acked().len() >= 5).then_some(())
    })
    .await;
    let stopped_at = run.history.lock().unwrap().len();
    broker.stop();
    let down_at = *produced.lock().unwrap();
    run.wait_down(T).await;
    // Stay down until the forwarder went down 5 times (the lost session, then 4 failed
    // attempts: it retries every reconnect_min, 0.5-1 s jittered, in the first 30 s of an
    // outage, so ~3 s) and the producer has piled up 40 readings behind the outage.
    let failed = || {
        run.history.lock().unwrap()[stopped_at..]
            .iter()
            .filter(|s| matches!(s, LinkState::Down { .. }))
            .count()
    };
    wait_until(
        "down 5 times and 40 readings produced while down",
        T,
        || (failed() >= 5 && *produced.lock().unwrap() > down_at + 40).then_some(()),
    )
    .await;
    // Behaviour, not speed: every retry followed the previous failure after about
    // reconnect_min (1 s); 3 s leaves room for a loaded machine and still fails a doubling
    // backoff (its 4th wait is 4-8 s).
    let downs: Vec<i64> = run.history.lock().unwrap()[stopped_at..]
        .iter()
        .filter_map(|s| match s {
            LinkState::Down { since_ms, .. } => Some(*since_ms),
            _ => None,
        })
        .collect();
    let gaps: Vec<i64> = downs.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g < 3000),
        "retries must stay at reconnect_min early in an outage; ms between failures: {gaps:?}"
    );
    assert!(outbox.remaining() > 0, "readings buffered while down");
    broker.start();
    let back = Instant::now();
    // The next attempt is at most reconnect_min away; T only catches a hang.
    run.wait_connected(T).await;
    let took = back.elapsed();
    assert!(run.status.borrow().reconnects >= 1);

    // Live flow resumed: a reading produced after the reconnect reaches the subscriber.
    let after = *produced.lock().unwrap();
    wait_until(
        "a reading produced after the reconnect delivered",
        T,
        || {
            readings(&decoded(&sub))
                .0
                .into_iter()
                .any(|n| n >= after)
                .then_some(())
        },
    )
    .await;
    stop.cancel();
    producer.await.unwrap();
    let total = *produced.lock().unwrap();
    // Drained and delivered; on timeout say exactly what is missing and what the link did.
    let end = Instant::now() + T;
    let (mut got, dups) = loop {
        let (r, d) = readings(&decoded(&sub));
        if outbox.remaining() == 0 && r.len() as i64 >= total {
            break (r, d);
        }
        if Instant::now() > end {
            let have: BTreeSet<i64> = r.into_iter().collect();
            let missing: Vec<i64> = (0..total).filter(|n| !have.contains(n)).collect();
            panic!(
                "after restart: outbox holds {}, missing at the subscriber {:?}, status {:?}, history {:?}",
                outbox.remaining(),
                missing,
                run.status.borrow().clone(),
                run.history.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    got.sort();
    got.dedup();
    assert_eq!(
        got,
        (0..total).collect::<Vec<_>>(),
        "none missing (dups dropped: {dups})"
    );
    println!("restart: {total} readings, reconnect {took:?}, {dups} duplicate messages dropped");
    run.shutdown.cancel();
    run.task.await.unwrap();
}

// ----------------------------------------------------------------- fake broker: no PUBACK

/// Read one MQTT packet: (first byte, body).
async fn read_packet(s: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    let first = s.read_u8().await.ok()?;
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let b = s.read_u8().await.ok()?;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.ok()?;
    Some((first, body))
}

/// (packet id, topic, payload) of a QoS 1 PUBLISH body.
fn publish_parts(body: &[u8]) -> (u16, String, Vec<u8>) {
    let tl = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let topic = String::from_utf8(body[2..2 + tl].to_vec()).unwrap();
    let pkid = u16::from_be_bytes([body[2 + tl], body[3 + tl]]);
    (pkid, topic, body[4 + tl..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_acked_without_puback_and_unacked_is_resent_identically() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let outbox = Arc::new(MemOutbox::default());
    for n in 0..3 {
        outbox.add_reading(n, now_ms());
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let mut cfg = uplink(&pki, port);
    cfg.tls = false;
    cfg.host = "127.0.0.1".into();
    // One reading per message: three messages.
    let one = outbox.pending(1, 0).unwrap();
    let len = gasdtu::uplink::encode_messages(&one, GW, 4096, Encoding::Json)[0]
        .build(GW, u64::MAX)
        .unwrap()
        .len();
    cfg.max_payload = len + 10;
    // `online`, the retained health and the three data messages all in flight at once.
    cfg.inflight = 5;
    let run = Running::start(cfg, outbox.clone());

    // Session 1: accept CONNECT, CONNACK, collect publishes, never PUBACK.
    let (mut s, _) = listener.accept().await.unwrap();
    let (first, _) = read_packet(&mut s).await.unwrap();
    assert_eq!(first >> 4, 1, "CONNECT first");
    s.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
    let mut first_session = Vec::new();
    while first_session.len() < 4 {
        let (h, body) = tokio::time::timeout(T, read_packet(&mut s))
            .await
            .unwrap()
            .unwrap();
        if h >> 4 == 3 {
            assert_eq!((h >> 1) & 3, 1, "QoS 1");
            let p = publish_parts(&body);
            // The retained health carries no seq and is not an outbox message.
            if !p.1.ends_with("/health") {
                first_session.push(p);
            }
        }
    }
    assert_eq!(first_session[0].1, format!("{ROOT}/status"));
    assert_eq!(first_session[0].2, b"online");
    let data: Vec<_> = first_session[1..].to_vec();
    assert!(data.iter().all(|(_, t, _)| *t == format!("{ROOT}/data")));
    assert!(outbox.acked().is_empty(), "acked without PUBACK");

    // PUBACK only the second data message: exactly its seq is acked. Once the forwarder has
    // handled this PUBACK it has also handled everything its connection did before (all three
    // publishes were on the wire before the PUBACK could arrive), so a wrong ack of the other
    // two (on send, on a timer shorter than this exchange) would show here.
    let (pkid, _, payload) = &data[1];
    let seq = decode(payload).unwrap()["seq"].as_u64().unwrap();
    s.write_all(&[0x40, 0x02, (pkid >> 8) as u8, *pkid as u8])
        .await
        .unwrap();
    wait_until("the PUBACKed message acked", T, || {
        outbox.acked().contains(&seq).then_some(())
    })
    .await;
    assert_eq!(
        outbox.acked(),
        vec![seq],
        "only the PUBACKed message may be acked"
    );
    assert_eq!(outbox.remaining(), 2);

    // Drop the connection: the other two are resent, byte for byte, in a fresh session.
    drop(s);
    let (mut s, _) = tokio::time::timeout(T, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let _ = read_packet(&mut s).await.unwrap();
    s.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
    let mut resent = Vec::new();
    while resent.len() < 3 {
        let (h, body) = tokio::time::timeout(T, read_packet(&mut s))
            .await
            .unwrap()
            .unwrap();
        if h >> 4 == 3 {
            let p = publish_parts(&body);
            if !p.1.ends_with("/health") {
                resent.push(p);
            }
        }
    }
    assert_eq!(resent[0].2, b"online");
    let want: Vec<Vec<u8>> = [&data[0], &data[2]].iter().map(|d| d.2.clone()).collect();
    let got: Vec<Vec<u8>> = resent[1..].iter().map(|d| d.2.clone()).collect();
    assert_eq!(
        got, want,
        "unacked messages resent identically, in seq order"
    );
    for (pkid, _, _) in &resent[1..] {
        s.write_all(&[0x40, 0x02, (pkid >> 8) as u8, *pkid as u8])
            .await
            .unwrap();
    }
    wait_until("all acked", T, || (outbox.remaining() == 0).then_some(())).await;
    assert_eq!(outbox.acked().len(), 3);
    run.task.abort();
}

// ------------------------------------------------------------------------- gasdtu decode

#[test]
fn decode_cli_turns_captured_payloads_into_json() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let o = MemOutbox::default();
    let t = 1_740_823_200_120;
    o.add_reading(42, t);
    o.add(
        EntryKind::Event,
        t,
        EntryBody::Json(json!({"event": "restart"})),
    );
    let entries = o.pending(10, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for enc in [Encoding::Json, Encoding::Cbor] {
        for p in gasdtu::uplink::encode_messages(&entries, GW, 1024, enc) {
            let bytes = p.build(GW, 7).unwrap();
            let file = dir.path().join("msg.bin");
            std::fs::write(&file, &bytes).unwrap();
            let want = decode(&bytes).unwrap();
            // From a file, and from stdin with --pretty.
            let out = Command::new(common::gasdtu())
                .args(["decode", file.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got: Json = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(got, want);
            let mut child = Command::new(common::gasdtu())
                .args(["decode", "-", "--pretty"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&bytes).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            assert!(String::from_utf8_lossy(&out.stdout).contains("\n  \"gw\": \"gw-test\""));
            let got: Json = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(got, want);
        }
    }
    let d = decode(
        &gasdtu::uplink::encode_messages(&entries[1..], GW, 1024, Encoding::Cbor)[0]
            .build(GW, 7)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        d,
        json!({"gw": GW, "seq": 7, "hist": false, "data": [{"dev": "meter", "unit": {"n": "m3"},
            "reads": [{"t": "2025-03-01T10:00:00.120Z", "v": {"n": 42}}]}]})
    );
    // Garbage: exit 1 with a message naming the input.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, [0xff, 0x00]).unwrap();
    let out = Command::new(common::gasdtu())
        .args(["decode", junk.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("junk.bin") && err.contains("CBOR"), "{err}");
}
