//! The forwarder's delivery against a real mosquitto over TLS (certificates generated at test
//! time): drain order (alarms, events, then data; backlog flagged historical), a broker
//! stopped and restarted on the same port while entries keep coming (everything arrives and
//! the reconnect is fast), acks only after PUBACK (proved against a fake broker that withholds
//! them; what was unacked is resent identically), and `gasdtu decode` of captured payloads.
//! The outbox here is the in-memory `Outbox` of `common::forwarder` (the SQLite store
//! implements the same trait); TLS itself: tests/uplink_tls.rs.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::forwarder::*;
use common::{wait_until, Broker, Pki, Subscriber};
use gasdtu::config::Encoding;
use gasdtu::outbox::{EntryBody, EntryKind, Outbox};
use gasdtu::uplink::{decode, LinkState};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

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
