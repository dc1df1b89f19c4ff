//! MQTT inbound (issue 10, part C) end to end with the real parts: the real `Forwarder` with
//! an inbox over a real SQLite `Store`, a real mosquitto over TLS, and an ops publisher.
//!
//! - A request published while the forwarder is stopped (after a first session made the
//!   persistent subscription) arrives when it reconnects.
//! - An inbound not acknowledged is redelivered after a reconnect, an acknowledged one is
//!   not; an ack from a session that is gone does nothing in the next one.
//! - Within one forwarder run, across a broker restart: the unacknowledged request comes
//!   back in the next session, and an ack from the ended session does nothing there.
//! - Requests refused while the inbox was full are offered again in a new session, which the
//!   forwarder starts once the inbox is empty.
//! - Requests over their bound are acknowledged, counted and dropped, and the next request
//!   arrives; a packet over the client's incoming limit ends the session once, the broker's
//!   session is purged once, and the link does not loop.
//! - A retained request is delivered like any other (flag set), again on every subscribe.
//! - The data path is unaffected: readings are delivered while commands flow.
//! - Without an inbox nothing changes: no subscription, the session stays clean.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    int_readings, session_present, wait_until, Broker, BrokerTls, Pki, Publisher, Subscriber,
};
use gasdtu::config::{StoreConfig, UplinkConfig};
use gasdtu::store::{ClockStamp, Store};
use gasdtu::uplink::{decode, Forwarder, Inbound, InboundKind, LinkState, LinkStatus};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

const GW: &str = "gw-in";
const ROOT: &str = "gasdtu/gw-in";
const CLIENT_ID: &str = "gasdtu-gw-in";

fn cmd_req() -> String {
    format!("{ROOT}/cmd/req")
}

fn config_set() -> String {
    format!("{ROOT}/config/set")
}

fn uplink(pki: &Pki, port: u16) -> UplinkConfig {
    common::uplink_config(pki, port, GW)
}

struct Setup {
    _dir: tempfile::TempDir,
    pki: Pki,
    broker: Broker,
    store: Arc<Store>,
    ops: Publisher,
}

async fn setup() -> Setup {
    setup_with(false).await
}

/// With `persistent`, the broker keeps sessions and queued messages across its restarts.
async fn setup_with(persistent: bool) -> Setup {
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
        persistent,
    );
    let (store, _) = Store::open(&dir.path().join("state"), &StoreConfig::default()).unwrap();
    let ops = Publisher::start(&pki, broker.port, "ops-tool");
    Setup {
        _dir: dir,
        pki,
        broker,
        store: Arc::new(store),
        ops,
    }
}

/// One forwarder run (a "gateway" session history: stopping it ends its sessions).
struct Gw {
    status: watch::Receiver<LinkStatus>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    rx: Option<mpsc::Receiver<Inbound>>,
}

fn start(s: &Setup, inbox: Option<usize>) -> Gw {
    let wake = Arc::new(Notify::new());
    let (tx, status) = watch::channel(LinkStatus::default());
    let shutdown = CancellationToken::new();
    let mut f = Forwarder::new(
        uplink(&s.pki, s.broker.port),
        GW,
        s.store.clone(),
        wake.clone(),
        tx,
    );
    let mut rx = None;
    if let Some(cap) = inbox {
        let (itx, irx) = mpsc::channel(cap);
        f = f.with_inbox(itx);
        rx = Some(irx);
    }
    let task = tokio::spawn(f.run(shutdown.clone()));
    Gw {
        status,
        wake,
        shutdown,
        task,
        rx,
    }
}

impl Gw {
    fn st(&self) -> LinkStatus {
        self.status.borrow().clone()
    }

    /// Wait until connected and (with an inbox) subscribed.
    async fn ready(&self) {
        let inbox = self.rx.is_some();
        let status = self.status.clone();
        wait_until("connected and subscribed", Duration::from_secs(15), || {
            let st = status.borrow();
            (st.state == LinkState::Connected && (st.inbound_subscribed || !inbox)).then_some(())
        })
        .await;
    }

    async fn recv(&mut self) -> Inbound {
        let rx = self.rx.as_mut().expect("an inbox");
        tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("an inbound within 15 s")
            .expect("the inbox open")
    }

    async fn wait_status(&self, what: &str, f: impl Fn(&LinkStatus) -> bool) -> LinkStatus {
        let status = self.status.clone();
        wait_until(what, Duration::from_secs(15), || {
            let st = status.borrow().clone();
            f(&st).then_some(st)
        })
        .await
    }

    /// A round trip on the gateway's own connection: a reading committed now is published
    /// and PUBACKed. The broker reads a connection in order, so every inbound PUBACK sent
    /// before was processed by then (a broker restart cannot lose it).
    async fn barrier(&self, store: &Store) {
        let before = self.st().acked;
        store
            .commit(&[int_readings("barrier", 0, 1)], &[], &ClockStamp::now())
            .unwrap();
        self.wake.notify_one();
        self.wait_status("a data message acknowledged after it", |st| {
            st.acked > before
        })
        .await;
    }

    /// Graceful stop (DISCONNECT: the broker keeps the persistent session). Returns the inbox
    /// receiver so inbounds still held can be inspected.
    async fn stop(mut self) -> Option<mpsc::Receiver<Inbound>> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("forwarder stops within 10 s")
            .unwrap();
        self.rx.take()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_published_while_stopped_arrives_after_the_reconnect() {
    let s = setup().await;
    // The first session creates the persistent subscriptions.
    let gw = start(&s, Some(8));
    gw.ready().await;
    assert_eq!(gw.st().inbound_received, 0);
    gw.stop().await;

    // Offline: ops publish a command and a config push; the broker queues them.
    s.ops.publish(&cmd_req(), "offline command", false).await;
    s.ops.publish(&config_set(), "offline push", false).await;

    let mut gw = start(&s, Some(8));
    let a = gw.recv().await;
    assert_eq!(a.kind, InboundKind::Command);
    assert_eq!(&a.payload[..], b"offline command");
    assert!(!a.retained);
    let b = gw.recv().await;
    assert_eq!(b.kind, InboundKind::ConfigPush);
    assert_eq!(&b.payload[..], b"offline push");
    a.ack();
    b.ack();
    let st = gw
        .wait_status("two PUBACKs sent", |st| st.inbound_acked == 2)
        .await;
    assert_eq!(st.inbound_received, 2);
    assert_eq!((st.inbound_busy, st.inbound_oversized), (0, 0));
    gw.ready().await;

    // Live delivery works too, in the same session.
    s.ops.publish(&cmd_req(), "live", false).await;
    let c = gw.recv().await;
    assert_eq!(&c.payload[..], b"live");
    c.ack();
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_inbound_is_redelivered_and_an_acked_one_is_not() {
    let s = setup().await;
    let mut gw = start(&s, Some(8));
    gw.ready().await;
    s.ops.publish(&cmd_req(), "c1", false).await;
    s.ops.publish(&cmd_req(), "c2", false).await;
    let c1 = gw.recv().await;
    let c2 = gw.recv().await;
    assert_eq!((&c1.payload[..], &c2.payload[..]), (&b"c1"[..], &b"c2"[..]));
    c1.ack();
    gw.wait_status("c1's PUBACK sent", |st| st.inbound_acked == 1)
        .await;
    gw.barrier(&s.store).await;
    // c2 is held, never acknowledged in its session.
    gw.stop().await;

    let mut gw2 = start(&s, Some(8));
    let again = gw2.recv().await;
    assert_eq!(
        &again.payload[..],
        b"c2",
        "the unacknowledged request comes back first"
    );
    assert!(again.duplicate, "a redelivery carries DUP");
    // The ack of the old session does nothing in the new one (its packet ids are not ours).
    c2.ack();
    gw2.ready().await;
    s.ops.publish(&cmd_req(), "c3", false).await;
    let c3 = gw2.recv().await;
    assert_eq!(
        &c3.payload[..],
        b"c3",
        "c1 (acknowledged) is never redelivered"
    );
    c3.ack();
    let st = gw2
        .wait_status("c3's PUBACK sent", |st| st.inbound_acked == 1)
        .await;
    assert_eq!(st.inbound_received, 2);
    // `again` is dropped unacknowledged: the third session gets c2 once more, and only c2
    // (the stale ack above did not acknowledge it; c3 was acknowledged).
    drop(again);
    gw2.stop().await;
    let mut gw3 = start(&s, Some(8));
    let third = gw3.recv().await;
    assert_eq!(&third.payload[..], b"c2");
    third.ack();
    gw3.ready().await;
    s.ops.publish(&cmd_req(), "c4", false).await;
    assert_eq!(&gw3.recv().await.payload[..], b"c4");
    gw3.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_from_an_ended_session_does_nothing_in_the_next() {
    let mut s = setup_with(true).await;
    let mut gw = start(&s, Some(8));
    gw.ready().await;
    s.ops.publish(&cmd_req(), "held", false).await;
    let first = gw.recv().await;
    assert_eq!(&first.payload[..], b"held");

    // The same forwarder reconnects after a broker restart; the broker kept the session
    // with `held` unacknowledged and offers it again (most likely under the same packet id).
    let restart = |s: &mut Setup| {
        s.broker.stop();
        s.broker.start();
    };
    restart(&mut s);
    let second = gw.recv().await;
    assert_eq!(&second.payload[..], b"held");
    assert!(second.duplicate);
    let st = gw
        .wait_status("reconnected and subscribed", |st| {
            st.reconnects == 1 && st.inbound_subscribed
        })
        .await;
    assert_eq!(st.inbound_acked, 0);
    // Stale: the first session is gone. Nothing is sent, in particular not a PUBACK for
    // the redelivery in the new session.
    first.ack();
    drop(second);
    restart(&mut s);
    let third = gw.recv().await;
    assert_eq!(
        &third.payload[..],
        b"held",
        "the stale ack acknowledged nothing"
    );
    gw.wait_status("reconnected twice and subscribed", |st| {
        st.reconnects == 2 && st.inbound_subscribed
    })
    .await;
    assert_eq!(gw.st().inbound_acked, 0);
    // Acknowledged on its own session: gone for good.
    third.ack();
    gw.wait_status("its PUBACK sent", |st| st.inbound_acked == 1)
        .await;
    gw.barrier(&s.store).await;
    restart(&mut s);
    gw.wait_status("reconnected a third time and subscribed", |st| {
        st.reconnects == 3 && st.inbound_subscribed
    })
    .await;
    s.ops.publish(&cmd_req(), "fresh", false).await;
    assert_eq!(&gw.recv().await.payload[..], b"fresh");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_by_a_full_inbox_come_back_in_a_new_session() {
    let s = setup().await;
    let mut gw = start(&s, Some(1));
    gw.ready().await;
    for c in ["f1", "f2", "f3"] {
        s.ops.publish(&cmd_req(), c, false).await;
    }
    // f1 fills the inbox; f2 and f3 are left unacknowledged.
    let st = gw
        .wait_status("two requests refused as busy", |st| st.inbound_busy == 2)
        .await;
    assert_eq!(
        st.reconnects, 0,
        "nothing is renewed while the inbox is full"
    );
    let f1 = gw.recv().await;
    assert_eq!(&f1.payload[..], b"f1");
    f1.ack();
    // The inbox is empty: the forwarder renews the session and the broker offers f2 and f3
    // again (f1 too, if its ack had not left before the renewal: a duplicate, never a loss).
    let mut got = Vec::new();
    while !(got.contains(&"f2".to_string()) && got.contains(&"f3".to_string())) {
        let i = gw.recv().await;
        got.push(String::from_utf8(i.payload.to_vec()).unwrap());
        i.ack();
    }
    gw.ready().await;
    s.ops.publish(&cmd_req(), "f4", false).await;
    while !got.contains(&"f4".to_string()) {
        let i = gw.recv().await;
        got.push(String::from_utf8(i.payload.to_vec()).unwrap());
        i.ack();
    }
    assert!(
        got.iter()
            .all(|g| ["f1", "f2", "f3", "f4"].contains(&g.as_str())),
        "{got:?}"
    );
    // With an inbox of one, a redelivered pair can overflow it again: every renewal
    // follows at least one refusal, so renewals are bounded by the requests, never a loop.
    let st = gw.st();
    assert!(
        st.reconnects >= 1 && st.reconnects <= st.inbound_busy,
        "{} renewals for {} refusals",
        st.reconnects,
        st.inbound_busy
    );
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("request(s) were refused while the inbox was full")),
        "{:?}",
        st.last_error
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_their_bound_are_refused_and_the_next_one_arrives() {
    let s = setup().await;
    let mut gw = start(&s, Some(8));
    gw.ready().await;
    s.ops
        .publish(&cmd_req(), vec![b'x'; 8 * 1024 + 1], false)
        .await;
    s.ops
        .publish(&config_set(), vec![b'y'; 256 * 1024 + 1], false)
        .await;
    // At the bound exactly: delivered.
    s.ops.publish(&cmd_req(), vec![b'z'; 8 * 1024], false).await;
    s.ops
        .publish(&config_set(), vec![b'w'; 256 * 1024], false)
        .await;
    s.ops
        .publish(&format!("{ROOT}/cmd/other"), "stray", false)
        .await;
    // The first oversized request is handed over, marked, so it can be answered too_large;
    // the second arrives while that one is held: acknowledged and dropped unanswered.
    let big = gw.recv().await;
    assert_eq!(
        (big.kind, big.payload.len(), big.oversized),
        (InboundKind::Command, 8 * 1024 + 1, true)
    );
    let a = gw.recv().await;
    assert_eq!(
        (a.kind, a.payload.len(), a.oversized),
        (InboundKind::Command, 8 * 1024, false)
    );
    let b = gw.recv().await;
    assert_eq!(
        (b.kind, b.payload.len(), b.oversized),
        (InboundKind::ConfigPush, 256 * 1024, false)
    );
    big.ack();
    a.ack();
    b.ack();
    let st = gw
        .wait_status(
            "the dropped one and the three delivered acknowledged",
            |st| st.inbound_acked == 4,
        )
        .await;
    assert_eq!(st.inbound_oversized, 2);
    assert_eq!(st.inbound_received, 2);
    // The stray publish is not ours: nothing subscribes to it (not even counted).
    assert_eq!(st.inbound_ignored, 0);
    assert_eq!(st.reconnects, 0, "refusing never costs the session");
    // The slot is free again once the held one is gone: the next oversized one is handed over.
    s.ops
        .publish(&config_set(), vec![b'v'; 256 * 1024 + 7], false)
        .await;
    let next = gw.recv().await;
    assert_eq!(
        (next.kind, next.payload.len(), next.oversized),
        (InboundKind::ConfigPush, 256 * 1024 + 7, true)
    );
    next.ack();
    gw.wait_status("the second oversized one acknowledged", |st| {
        st.inbound_acked == 5
    })
    .await;
    gw.stop().await;

    // Acknowledged: none of them comes back.
    let mut gw = start(&s, Some(8));
    gw.ready().await;
    s.ops.publish(&cmd_req(), "next", false).await;
    let n = gw.recv().await;
    assert_eq!(&n.payload[..], b"next");
    n.ack();
    let st = gw.st();
    assert_eq!((st.inbound_received, st.inbound_oversized), (1, 0));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_over_the_incoming_limit_is_purged_once_and_never_loops() {
    let s = setup().await;
    let mut gw = start(&s, Some(8));
    gw.ready().await;
    s.ops.publish(&cmd_req(), "before", false).await;
    let before = gw.recv().await;
    // 1.5 MiB: rumqttc refuses to read it and ends the session; the broker keeps it for
    // the persistent session (and `before`, unacknowledged).
    s.ops
        .publish(&cmd_req(), vec![b'p'; 1536 * 1024], false)
        .await;
    let st = gw
        .wait_status("the session purged and subscribed again", |st| {
            st.inbound_purges == 1 && st.inbound_subscribed && st.state == LinkState::Connected
        })
        .await;
    assert_eq!(st.inbound_oversized, 1);
    let LinkStatus { last_error, .. } = &st;
    assert!(
        last_error
            .as_deref()
            .is_some_and(|e| e.contains("incoming limit of 1048576 bytes")),
        "{last_error:?}"
    );
    // The old session's ack does nothing; its request went with the purged session.
    before.ack();
    s.ops.publish(&cmd_req(), "after", false).await;
    let after = gw.recv().await;
    assert_eq!(&after.payload[..], b"after");
    after.ack();
    let st = gw.st();
    assert_eq!(
        st.inbound_purges, 1,
        "the purge removed the packet: no second round"
    );
    assert_eq!(
        st.reconnects, 1,
        "one session lost to the packet, never a loop"
    );
    assert_eq!(st.inbound_received, 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_request_is_delivered_like_any_other_on_every_subscribe() {
    let s = setup().await;
    s.ops.publish(&cmd_req(), "retained by mistake", true).await;
    // Each session subscribes again, and the broker sends retained messages on every
    // subscribe: the remote service sees it each time (its id and expiry make it harmless).
    for round in 0..2 {
        let mut gw = start(&s, Some(8));
        let r = gw.recv().await;
        assert_eq!(&r.payload[..], b"retained by mistake", "round {round}");
        assert!(r.retained, "round {round}");
        r.ack();
        gw.wait_status("its PUBACK sent", |st| st.inbound_acked == 1)
            .await;
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_path_flows_while_commands_do() {
    let s = setup().await;
    let sub = Subscriber::start(
        &s.pki,
        s.broker.port,
        &format!("{ROOT}/data"),
        "data-sub",
        false,
    );
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    let mut gw = start(&s, Some(64));
    gw.ready().await;
    let stamp = ClockStamp::now();
    const BATCHES: i64 = 20;
    const COMMANDS: usize = 40;
    let mut got = Vec::new();
    for i in 0..BATCHES {
        s.store
            .commit(&[int_readings(&format!("d{i}"), i * 5, 5)], &[], &stamp)
            .unwrap();
        gw.wake.notify_one();
        for j in 0..COMMANDS / BATCHES as usize {
            s.ops
                .publish(&cmd_req(), format!("cmd {i}.{j}"), false)
                .await;
        }
        // Take and acknowledge whatever arrived (a slow consumer, never a blocked one).
        let rx = gw.rx.as_mut().unwrap();
        while let Ok(inb) = rx.try_recv() {
            got.push(String::from_utf8(inb.payload.to_vec()).unwrap());
            inb.ack();
        }
    }
    while got.len() < COMMANDS {
        let inb = gw.recv().await;
        got.push(String::from_utf8(inb.payload.to_vec()).unwrap());
        inb.ack();
    }
    let want: Vec<String> = (0..BATCHES)
        .flat_map(|i| (0..COMMANDS / BATCHES as usize).map(move |j| format!("cmd {i}.{j}")))
        .collect();
    assert_eq!(got, want, "every command, once, in order");
    assert_eq!(gw.st().inbound_busy, 0);

    let store = s.store.clone();
    wait_until("all readings delivered", Duration::from_secs(20), || {
        let values: usize = sub
            .snapshot()
            .iter()
            .filter_map(|m| decode(&m.payload).ok())
            .flat_map(|d| d["data"].as_array().cloned().unwrap_or_default())
            .flat_map(|dev| dev["reads"].as_array().cloned().unwrap_or_default())
            .map(|r| r["v"].as_object().map_or(0, |v| v.len()))
            .sum();
        let st = store.stats().unwrap();
        (values == (BATCHES * 5) as usize && st.pending_entries == 0 && st.sealed_messages == 0)
            .then_some(())
    })
    .await;
    let st = gw
        .wait_status("every command acknowledged", |st| {
            st.inbound_acked as usize == COMMANDS
        })
        .await;
    assert_eq!(st.reconnects, 0);
    assert_eq!(st.dead_letters, 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_inbox_nothing_subscribes_and_the_session_stays_clean() {
    let s = setup().await;
    let gw = start(&s, None);
    gw.ready().await;
    // Data still flows as before.
    let sub = Subscriber::start(
        &s.pki,
        s.broker.port,
        &format!("{ROOT}/data"),
        "data-sub",
        false,
    );
    sub.wait_subscribed(1, Duration::from_secs(10)).await;
    s.store
        .commit(&[int_readings("d", 0, 3)], &[], &ClockStamp::now())
        .unwrap();
    gw.wake.notify_one();
    wait_until("data delivered", Duration::from_secs(10), || {
        (!sub.snapshot().is_empty()).then_some(())
    })
    .await;
    s.ops.publish(&cmd_req(), "nobody listens", false).await;
    let st = gw.st();
    assert!(!st.inbound_subscribed);
    assert_eq!(
        st.inbound_received + st.inbound_ignored + st.inbound_acked,
        0
    );
    gw.stop().await;
    // Clean session: the broker kept nothing for our client id (no subscription, no queue).
    assert!(!session_present(&s.pki, s.broker.port, CLIENT_ID).await);

    // The contrast: with an inbox the broker keeps the session after a stop.
    let gw = start(&s, Some(2));
    gw.ready().await;
    gw.stop().await;
    assert!(session_present(&s.pki, s.broker.port, CLIENT_ID).await);
}
