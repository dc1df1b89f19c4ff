//! The link-aware uplink (issue 11) with real parts: the real `Forwarder` over a real SQLite
//! `Store`, a real mosquitto over TLS, and small TCP middlemen written here that behave like
//! the network does (a relay that can go silent without a reset, an HTTP CONNECT proxy like
//! the modem's socket bridge).
//!
//! - A silent stall (no RST, nothing comes back) is detected by `ack_timeout` while publishes
//!   await their PUBACK, long before the keepalive; the session is dropped, a new one made,
//!   and every reading arrives.
//! - The link gate: while the modem says the link is not usable, no connection is attempted;
//!   once it is, the forwarder connects.
//! - `session = "on_demand"`: a session opens when there is something to send, lingers, then
//!   ends cleanly (retained `asleep`, state `Asleep`); the next commit opens the next one, and
//!   a command published while asleep arrives in it (persistent session).
//! - Through an HTTP CONNECT proxy the TLS session runs end to end under the broker's name
//!   (the proxy sees only `CONNECT localhost:<port>` and ciphertext).
//! - PUBACKs of one burst reach the outbox in one call once none is outstanding
//!   (`ACK_COALESCE`), and every message is acknowledged.
//! - Sealed at ingest, cycle after cycle: the forwarder takes the messages without a look of
//!   its own when the store says nothing else is pending.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{int_readings, wait_until, Broker, BrokerTls, Pki, Publisher, Subscriber};
use gasdtu::config::{SessionMode, StoreConfig, UplinkConfig};
use gasdtu::outbox::IngestSealer;
use gasdtu::store::{ClockStamp, Store};
use gasdtu::uplink::{decode, Forwarder, Inbound, LinkState, LinkStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

const GW: &str = "gw-link";
const ROOT: &str = "gasdtu/gw-link";
const T: Duration = Duration::from_secs(20);

fn uplink(pki: &Pki, port: u16) -> UplinkConfig {
    UplinkConfig {
        // Far beyond every wait here: only `ack_timeout` can notice a stall.
        keepalive: Duration::from_secs(240),
        linger: Duration::from_secs(1),
        ack_timeout: Duration::from_secs(5),
        ..common::uplink_config(pki, port, GW)
    }
}

/// A TCP relay to `upstream` that counts connections and can go silent: `freeze()` makes every
/// connection open at that moment stop moving bytes in both directions without closing (what a
/// lost radio bearer looks like); later connections work.
struct Relay {
    port: u16,
    accepted: Arc<AtomicUsize>,
    frozen_below: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(upstream: u16) -> Relay {
        Relay::start_paced(upstream, None).await
    }

    /// `start`, the broker's bytes handed on one TLS record at a time, `pace` apart (each
    /// MQTT packet the broker writes is a record of its own: PUBACKs arrive one by one, as
    /// over a slow radio link).
    async fn start_paced(upstream: u16, pace: Option<Duration>) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let frozen_below = Arc::new(AtomicUsize::new(0));
        let (acc, frz) = (accepted.clone(), frozen_below.clone());
        tokio::spawn(async move {
            while let Ok((down, _)) = l.accept().await {
                let n = acc.fetch_add(1, Ordering::SeqCst) + 1;
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(pump(dr, uw, n, frz.clone()));
                match pace {
                    Some(p) => tokio::spawn(pace_records(ur, dw, p)),
                    None => tokio::spawn(pump(ur, dw, n, frz.clone())),
                };
            }
        });
        Relay {
            port,
            accepted,
            frozen_below,
        }
    }

    fn freeze(&self) {
        self.frozen_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    conn: usize,
    frozen_below: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if conn <= frozen_below.load(Ordering::SeqCst) {
            // Silent: hold the connection open, move nothing, never close.
            std::future::pending::<()>().await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Copy TLS records from `r` to `w` one at a time, sleeping `pace` before each.
async fn pace_records(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    pace: Duration,
) {
    let mut head = [0u8; 5];
    let mut body = vec![0u8; 1 << 15];
    loop {
        if r.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
        if len > body.len() || r.read_exact(&mut body[..len]).await.is_err() {
            return;
        }
        tokio::time::sleep(pace).await;
        if w.write_all(&head).await.is_err() || w.write_all(&body[..len]).await.is_err() {
            return;
        }
    }
}

/// A minimal HTTP CONNECT proxy (what the modem's socket bridge is to the MQTT client): reads
/// the request head (bounded), records the target, connects to it on loopback, answers 200 and
/// relays bytes.
struct ConnectProxy {
    addr: std::net::SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    async fn start() -> ConnectProxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let t = targets.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = l.accept().await {
                let t = t.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
                        if down.read_exact(&mut b).await.is_err() {
                            return;
                        }
                        head.push(b[0]);
                    }
                    let text = String::from_utf8_lossy(&head).to_string();
                    let target = text
                        .lines()
                        .next()
                        .and_then(|l| l.strip_prefix("CONNECT "))
                        .and_then(|l| l.split(' ').next())
                        .unwrap_or_default()
                        .to_string();
                    t.lock().unwrap().push(target.clone());
                    let port: u16 = target
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    let Ok(mut up) = TcpStream::connect(("127.0.0.1", port)).await else {
                        let _ = down.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    if down
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
            }
        });
        ConnectProxy { addr, targets }
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    pki: Pki,
    broker: Broker,
    store: Arc<Store>,
}

fn rig() -> Rig {
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
    let (store, _) = Store::open(&dir.path().join("state"), &StoreConfig::default()).unwrap();
    Rig {
        _dir: dir,
        pki,
        broker,
        store: Arc::new(store),
    }
}

struct Running {
    status: watch::Receiver<LinkStatus>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    inbox: Option<mpsc::Receiver<Inbound>>,
}

impl Running {
    fn start(
        r: &Rig,
        cfg: UplinkConfig,
        setup: impl FnOnce(Forwarder<Store>) -> Forwarder<Store>,
    ) -> Running {
        let wake = Arc::new(Notify::new());
        let (tx, status) = watch::channel(LinkStatus::default());
        let shutdown = CancellationToken::new();
        let f = setup(Forwarder::new(cfg, GW, r.store.clone(), wake.clone(), tx));
        let task = tokio::spawn(f.run(shutdown.clone()));
        Running {
            status,
            wake,
            shutdown,
            task,
            inbox: None,
        }
    }

    async fn wait(&self, what: &str, f: impl Fn(&LinkStatus) -> bool) -> LinkStatus {
        let status = self.status.clone();
        wait_until(what, T, || {
            let st = status.borrow().clone();
            f(&st).then_some(st)
        })
        .await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("forwarder stops")
            .unwrap();
    }
}

/// Readings (device, point) that reached the subscriber.
fn delivered(sub: &Subscriber) -> std::collections::BTreeSet<(String, String)> {
    sub.snapshot()
        .iter()
        .filter(|m| m.topic.ends_with("/data"))
        .filter_map(|m| decode(&m.payload).ok())
        .flat_map(|d| d["data"].as_array().cloned().unwrap_or_default())
        .flat_map(|dev| {
            let name = dev["dev"].as_str().unwrap_or_default().to_string();
            dev["reads"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .flat_map(move |r| {
                    let name = name.clone();
                    r["v"]
                        .as_object()
                        .map(|o| o.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |k| (name.clone(), k))
                })
        })
        .collect()
}

fn subscriber(r: &Rig, id: &str) -> Subscriber {
    Subscriber::start(&r.pki, r.broker.port, &format!("{ROOT}/#"), id, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stall_is_detected_by_the_ack_timeout_and_nothing_is_lost() {
    let r = rig();
    let sub = subscriber(&r, "stall-sub");
    sub.wait_subscribed(1, T).await;
    let relay = Relay::start(r.broker.port).await;
    let run = Running::start(&r, uplink(&r.pki, relay.port), |f| f);
    let stamp = ClockStamp::now();
    r.store
        .commit(&[int_readings("d1", 0, 3)], &[], &stamp)
        .unwrap();
    run.wake.notify_one();
    run.wait("the first readings acknowledged", |st| st.acked >= 1)
        .await;
    // The bearer dies without a reset: the relay moves nothing any more, keeps the socket.
    relay.freeze();
    r.store
        .commit(&[int_readings("d2", 0, 3)], &[], &stamp)
        .unwrap();
    run.wake.notify_one();
    let st = run
        .wait("the stall noticed", |st| {
            st.last_error
                .as_deref()
                .is_some_and(|e| e.contains("link stalled"))
        })
        .await;
    assert!(
        st.last_error.as_deref().unwrap().contains("5s"),
        "{:?}",
        st.last_error
    );
    // A new session through the relay (new connections are not frozen) delivers the rest.
    run.wait("reconnected", |st| {
        st.reconnects >= 1 && st.state == LinkState::Connected
    })
    .await;
    assert!(relay.accepted() >= 2);
    wait_until("every reading delivered and acknowledged", T, || {
        let stats = r.store.stats().ok()?;
        (delivered(&sub).len() == 6 && stats.pending_entries == 0 && stats.sealed_messages == 0)
            .then_some(())
    })
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_is_attempted_while_the_modem_link_is_down() {
    let r = rig();
    let relay = Relay::start(r.broker.port).await;
    let (gate_tx, gate_rx) = watch::channel(false);
    let run = Running::start(&r, uplink(&r.pki, relay.port), |f| {
        f.with_link_gate(gate_rx)
    });
    let st = run
        .wait("waiting for the modem", |st| {
            matches!(&st.state, LinkState::Down { last_error, .. } if last_error.contains("waiting for the modem"))
        })
        .await;
    // The gate is looked at before any attempt: nothing reached the network.
    assert_eq!(relay.accepted(), 0, "{st:?}");
    gate_tx.send(true).unwrap();
    run.wait("connected once the link is usable", |st| {
        st.state == LinkState::Connected
    })
    .await;
    assert_eq!(relay.accepted(), 1);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_sessions_open_for_data_linger_and_sleep() {
    let r = rig();
    let sub = subscriber(&r, "od-sub");
    sub.wait_subscribed(1, T).await;
    let ops = Publisher::start(&r.pki, r.broker.port, "od-ops");
    let relay = Relay::start(r.broker.port).await;
    let mut cfg = uplink(&r.pki, relay.port);
    cfg.session = SessionMode::OnDemand;
    let (itx, irx) = mpsc::channel(8);
    let mut run = Running::start(&r, cfg, |f| f.with_inbox(itx));
    run.inbox = Some(irx);
    // Nothing to send at start: the first session only subscribes (persistent), lingers,
    // and ends.
    run.wait("asleep after the first session", |st| {
        matches!(st.state, LinkState::Asleep { .. })
    })
    .await;
    let sessions = relay.accepted();
    wait_until("retained asleep", T, || {
        sub.snapshot()
            .iter()
            .any(|m| m.topic == format!("{ROOT}/status") && m.payload == b"asleep")
            .then_some(())
    })
    .await;
    // A command published while asleep waits at the broker (persistent session)...
    ops.publish(&format!("{ROOT}/cmd/req"), "while asleep", false)
        .await;
    // ...and a commit opens the next session, which delivers the data and the command.
    let stamp = ClockStamp::now();
    r.store
        .commit(&[int_readings("d1", 0, 2)], &[], &stamp)
        .unwrap();
    run.wake.notify_one();
    let inb = tokio::time::timeout(T, run.inbox.as_mut().unwrap().recv())
        .await
        .expect("the command arrives in the next session")
        .expect("inbox open");
    assert_eq!(&inb.payload[..], b"while asleep");
    inb.ack();
    wait_until("the readings delivered", T, || {
        (delivered(&sub).len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        relay.accepted(),
        sessions + 1,
        "one new session for the data"
    );
    let st = run
        .wait("asleep again after the linger", |st| {
            matches!(st.state, LinkState::Asleep { .. }) && st.inbound_acked >= 1
        })
        .await;
    assert!(st.acked >= 1, "{st:?}");
    // The session figures: status, and the health published at the second session's connect
    // carries the first session's length.
    let f = &st.session;
    assert!(f.connect_ms.is_some() && f.total_ms.is_some(), "{st:?}");
    // os mode: no tunnel to time; TLS 1.3 measured by the handshake hook (TCP included).
    assert!(f.open_ms.is_none() && f.tls_ms.is_some(), "{f:?}");
    assert_eq!(f.bytes, gasdtu::uplink::ByteCount::Payload);
    assert!(f.bytes_down.is_none(), "{f:?}");
    // The data session: its readings went out in this session (health and status too).
    assert!(
        f.messages >= 1 && f.bytes_up >= f.payload_up && f.payload_up > 0,
        "{f:?}"
    );
    let phases = [f.tls_ms, f.mqtt_ms, f.drain_ms].map(|p| p.unwrap_or(0));
    assert!(f.drain_ms.is_some(), "{f:?}");
    assert_eq!(
        f.tls_ms.unwrap_or(0) + f.mqtt_ms.unwrap_or(0),
        f.connect_ms.unwrap_or(0),
        "{f:?}"
    );
    assert!(
        phases.iter().sum::<u64>() <= f.total_ms.unwrap_or(0),
        "{f:?}"
    );
    let healths = || -> Vec<serde_json::Value> {
        sub.snapshot()
            .iter()
            .filter(|m| m.topic == format!("{ROOT}/health"))
            .filter_map(|m| serde_json::from_slice(&m.payload).ok())
            .collect()
    };
    // One health message per on_demand session (at its end, not one more at each connect).
    let h = wait_until("one health per session", T, || {
        let h = healths();
        (h.len() == relay.accepted()).then_some(h)
    })
    .await;
    assert!(
        h.iter().any(|h| h["session"]["connect_ms"].is_u64()
            && h["session"]["bytes"] == "payload"
            && h["session"]["messages"].as_u64().is_some_and(|n| n >= 1)
            && h["session"]["total_ms"]
                .as_u64()
                .is_some_and(|ms| ms >= 1000)),
        "{h:?}"
    );
    // Asleep only once everything was acknowledged.
    let stats = r.store.stats().unwrap();
    assert_eq!((stats.pending_entries, stats.sealed_messages), (0, 0));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_http_connect_proxy_tls_runs_end_to_end_under_the_brokers_name() {
    let r = rig();
    let sub = subscriber(&r, "px-sub");
    sub.wait_subscribed(1, T).await;
    let proxy = ConnectProxy::start().await;
    let run = Running::start(&r, uplink(&r.pki, r.broker.port), |f| {
        f.with_proxy(proxy.addr)
    });
    r.store
        .commit(&[int_readings("d1", 0, 2)], &[], &ClockStamp::now())
        .unwrap();
    run.wake.notify_one();
    wait_until("readings delivered through the proxy", T, || {
        (delivered(&sub).len() == 2).then_some(())
    })
    .await;
    // The proxy was asked for the broker by name (so TLS verified `localhost`, the name in
    // the certificate, not the proxy's address).
    let targets = proxy.targets.lock().unwrap().clone();
    assert_eq!(targets, vec![format!("localhost:{}", r.broker.port)]);
    run.stop().await;
}

/// The rig's store, recording the size of every `ack_many` call the forwarder makes and
/// counting its looks (`pending`).
struct CountingAcks {
    store: Arc<Store>,
    calls: Mutex<Vec<usize>>,
    looks: AtomicUsize,
    /// Pass `note_acks` on to the store (else refuse it, as an outbox that cannot does), and
    /// the acknowledgements noted so.
    notes: bool,
    noted: AtomicUsize,
}

impl gasdtu::outbox::Outbox for CountingAcks {
    fn pending(
        &self,
        limit: usize,
        live_since_ms: i64,
    ) -> Result<Vec<gasdtu::outbox::Entry>, gasdtu::outbox::OutboxError> {
        self.looks.fetch_add(1, Ordering::SeqCst);
        self.store.pending(limit, live_since_ms)
    }
    fn take_presealed(&self) -> Result<Vec<gasdtu::outbox::Sealed>, gasdtu::outbox::OutboxError> {
        self.store.take_presealed()
    }
    #[allow(clippy::type_complexity)]
    fn try_take_presealed(
        &self,
    ) -> Option<Result<(Vec<gasdtu::outbox::Sealed>, bool), gasdtu::outbox::OutboxError>> {
        self.store.try_take_presealed()
    }
    fn seal(
        &self,
        topic: &str,
        entries: &[i64],
        readings: u64,
        build: &mut dyn FnMut(u64) -> Result<Vec<u8>, String>,
    ) -> Result<gasdtu::outbox::Sealed, gasdtu::outbox::OutboxError> {
        self.store.seal(topic, entries, readings, build)
    }
    fn unacked(&self) -> Result<Vec<gasdtu::outbox::Sealed>, gasdtu::outbox::OutboxError> {
        self.store.unacked()
    }
    fn ack(&self, seq: u64) -> Result<(), gasdtu::outbox::OutboxError> {
        self.ack_many(&[seq])
    }
    fn ack_many(&self, seqs: &[u64]) -> Result<(), gasdtu::outbox::OutboxError> {
        self.calls.lock().unwrap().push(seqs.len());
        self.store.ack_many(seqs)
    }
    fn note_acks(&self, seqs: &[u64]) -> bool {
        let kept = self.notes && self.store.note_acks(seqs);
        if kept {
            self.noted.fetch_add(seqs.len(), Ordering::SeqCst);
        }
        kept
    }
    fn absorb_noted(&self) -> Result<(), gasdtu::outbox::OutboxError> {
        gasdtu::outbox::Outbox::absorb_noted(&*self.store)
    }
    fn settle(&self) -> Result<(), gasdtu::outbox::OutboxError> {
        gasdtu::outbox::Outbox::settle(&*self.store)
    }
}

/// A rig with twenty-four batches committed (with a payload limit of 256 bytes, which holds
/// one or two of them: over ten messages) and its store behind a `CountingAcks`.
fn burst(notes: bool) -> (Rig, Arc<CountingAcks>) {
    let r = rig();
    let batches: Vec<_> = (0..24)
        .map(|i| int_readings(&format!("d{i}"), 0, 3))
        .collect();
    r.store.commit(&batches, &[], &ClockStamp::now()).unwrap();
    let outbox = Arc::new(CountingAcks {
        store: r.store.clone(),
        calls: Mutex::default(),
        looks: AtomicUsize::new(0),
        notes,
        noted: AtomicUsize::new(0),
    });
    (r, outbox)
}

/// Run a forwarder over `outbox`, connecting to `port`, until the store has every message
/// acknowledged and the link status says every publish was; then stop it. The status then.
async fn drain_burst(r: &Rig, outbox: &Arc<CountingAcks>, port: u16) -> LinkStatus {
    let cfg = UplinkConfig {
        max_payload: 256,
        inflight: 20,
        ..uplink(&r.pki, port)
    };
    let (tx, status) = watch::channel(LinkStatus::default());
    let shutdown = CancellationToken::new();
    let f = Forwarder::new(cfg, GW, outbox.clone(), Arc::new(Notify::new()), tx);
    let task = tokio::spawn(f.run(shutdown.clone()));
    let st = wait_until("every message acknowledged in the store", T, || {
        let stats = r.store.stats().ok()?;
        let st = status.borrow().clone();
        let all = st.published > 0 && st.acked == st.published;
        (stats.pending_entries == 0 && stats.sealed_messages == 0 && all).then_some(st)
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("forwarder stops")
        .unwrap();
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pubacks_of_a_burst_reach_the_outbox_together() {
    let (r, outbox) = burst(false);
    // PUBACKs 15 ms apart: without coalescing, each is its own outbox call.
    let relay = Relay::start_paced(r.broker.port, Some(Duration::from_millis(15))).await;
    let st = drain_burst(&r, &outbox, relay.port).await;
    let calls = outbox.calls.lock().unwrap().clone();
    let acked: usize = calls.iter().sum();
    assert_eq!(
        acked as u64, st.acked,
        "every PUBACK recorded once: {calls:?}"
    );
    assert!(acked >= 10, "{calls:?}");
    assert!(
        calls.len() * 2 <= acked,
        "PUBACKs recorded in bursts, not one call each: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubacks_are_noted_without_a_hand_off_and_recorded_when_the_forwarder_idles() {
    let (r, outbox) = burst(true);
    // No commit follows: the noted PUBACKs are recorded by the forwarder's own store calls
    // (a seal, or `settle` once it idles), without `ack_many`.
    let st = drain_burst(&r, &outbox, r.broker.port).await;
    assert!(st.acked >= 10, "{st:?}");
    assert_eq!(outbox.noted.load(Ordering::SeqCst) as u64, st.acked);
    assert!(
        outbox.calls.lock().unwrap().is_empty(),
        "no PUBACK took a blocking hand-off of its own"
    );
    assert!(gasdtu::outbox::Outbox::unacked(&*r.store)
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sealed_at_ingest_are_taken_without_a_look_of_their_own() {
    let r = rig();
    let outbox = Arc::new(CountingAcks {
        store: r.store.clone(),
        calls: Mutex::default(),
        looks: AtomicUsize::new(0),
        notes: false,
        noted: AtomicUsize::new(0),
    });
    let cfg = uplink(&r.pki, r.broker.port);
    let seal = Arc::new(gasdtu::uplink::IngestSeal::new(&cfg, GW));
    r.store.set_ingest_sealer(Some(seal.clone()));
    let (tx, status) = watch::channel(LinkStatus::default());
    let shutdown = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let f =
        Forwarder::new(cfg, GW, outbox.clone(), wake.clone(), tx).with_ingest_seal(seal.clone());
    let task = tokio::spawn(f.run(shutdown.clone()));
    let stamp = ClockStamp::now();
    let sealed_at_ingest = || status.borrow().sealed_at_ingest;
    let mut looks_before = None;
    for cycle in 0..6u32 {
        // The forwarder arms once it is idle (the previous cycle delivered): wait for it.
        wait_until("the forwarder armed", T, || seal.armed().map(|_| ())).await;
        if cycle == 1 {
            looks_before = Some(outbox.looks.load(Ordering::SeqCst));
        }
        let before = sealed_at_ingest();
        let batch = int_readings(&format!("d{cycle}"), 0, 3);
        let info = r
            .store
            .commit(std::slice::from_ref(&batch), &[], &stamp)
            .unwrap();
        assert!(info.presealed > 0, "cycle {cycle}: sealed at ingest");
        wake.notify_one();
        wait_until("the sealed message taken", T, || {
            (sealed_at_ingest() > before).then_some(())
        })
        .await;
    }
    wait_until("everything acknowledged", T, || {
        let st = r.store.stats().ok()?;
        (st.pending_entries == 0 && st.sealed_messages == 0).then_some(())
    })
    .await;
    let looks = outbox.looks.load(Ordering::SeqCst) - looks_before.unwrap_or(0);
    assert!(
        looks <= 2,
        "five cycles sealed at ingest cost {looks} looks of the forwarder's own"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("forwarder stops")
        .unwrap();
}
