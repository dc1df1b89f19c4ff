//! The uplink tests' forwarder harness: an in-memory implementation of the `Outbox` contract
//! (the SQLite store implements the same trait), a running `Forwarder` with its link-state
//! history, the uplink of gateway `gw-test`, and readers of what a subscriber received.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gasdtu::config::UplinkConfig;
use gasdtu::model::{Quality, Sample, SampleBatch, Value};
use gasdtu::outbox::{Entry, EntryBody, EntryKind, Outbox, OutboxError, Sealed};
use gasdtu::uplink::{decode, Forwarder, LinkState, LinkStatus};
use serde_json::Value as Json;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::{wait_until, BrokerTls, Pki, Subscriber};

pub const GW: &str = "gw-test";
pub const ROOT: &str = "gasdtu/gw-test";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ------------------------------------------------------------------------ in-memory outbox

#[derive(Default)]
pub struct Inner {
    pub next_id: i64,
    pub next_seq: u64,
    pub entries: Vec<(Entry, bool)>,
    pub msgs: BTreeMap<u64, (Sealed, Vec<i64>)>,
    pub acked: Vec<u64>,
}

#[derive(Default)]
pub struct MemOutbox {
    pub inner: Mutex<Inner>,
}

impl MemOutbox {
    pub fn add(&self, kind: EntryKind, created_ms: i64, body: EntryBody) -> i64 {
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
    pub fn add_reading(&self, n: i64, created_ms: i64) -> i64 {
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

    pub fn remaining(&self) -> usize {
        self.inner.lock().unwrap().entries.len()
    }

    pub fn acked(&self) -> Vec<u64> {
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

pub fn uplink(pki: &Pki, port: u16) -> UplinkConfig {
    UplinkConfig {
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(2),
        ..super::uplink_config(pki, port, GW)
    }
}

pub fn server_only() -> BrokerTls {
    BrokerTls {
        cert: "server",
        require_certificate: false,
        tls_version: None,
    }
}

/// A running forwarder with its status history.
pub struct Running {
    pub wake: Arc<Notify>,
    pub status: watch::Receiver<LinkStatus>,
    pub history: Arc<Mutex<Vec<LinkState>>>,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn start(cfg: UplinkConfig, outbox: Arc<MemOutbox>) -> Running {
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

    pub fn state(&self) -> LinkState {
        self.status.borrow().state.clone()
    }

    pub fn ever_connected(&self) -> bool {
        self.history.lock().unwrap().contains(&LinkState::Connected)
    }

    pub async fn wait_connected(&self, deadline: Duration) {
        wait_until("forwarder connected", deadline, || {
            (self.state() == LinkState::Connected).then_some(())
        })
        .await;
    }

    pub async fn wait_down(&self, deadline: Duration) -> String {
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
pub fn decoded(sub: &Subscriber) -> Vec<(String, Json)> {
    sub.snapshot()
        .into_iter()
        .filter(|m| !m.topic.ends_with("/status") && !m.topic.ends_with("/health"))
        .map(|m| (m.topic.clone(), decode(&m.payload).unwrap()))
        .collect()
}

/// Values of point `n` in data messages, first copy of each seq only.
pub fn readings(msgs: &[(String, Json)]) -> (Vec<i64>, usize) {
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

pub fn status_msgs(sub: &Subscriber) -> Vec<(String, bool)> {
    sub.snapshot()
        .into_iter()
        .filter(|m| m.topic == format!("{ROOT}/status"))
        .map(|m| (String::from_utf8_lossy(&m.payload).to_string(), m.retain))
        .collect()
}

pub const T: Duration = Duration::from_secs(15);
