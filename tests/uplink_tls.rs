//! The uplink's TLS against a real mosquitto with certificates generated at test time: TLS and
//! mutual TLS connect, the TLS session the broker issued resumed on a reconnect, a CA file
//! renewed in place, a wrong CA and a missing client certificate refused with a clear error,
//! the server-name override, the retained `online` and the last will `offline`. The outbox
//! here is the in-memory `Outbox` of `common::forwarder` (the SQLite store implements the same
//! trait); drain order, acks only after PUBACK and broker restarts: tests/uplink_drain.rs.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::forwarder::*;
use common::{session_present, wait_until, Broker, BrokerTls, Pki, Subscriber};
use gasdtu::uplink::LinkState;

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
