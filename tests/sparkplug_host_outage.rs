//! Sparkplug B store and forward against an independent host (issue 14, test plan cases 3
//! and 4 of docs/sparkplug.md): the real `gasdtu run` (`protocol = "sparkplug"`), the
//! pymodbus device, a persistent mosquitto and tests/py/sparkplug_host.py (pysparkplug,
//! persistent session so it misses nothing across the broker restart). The broker is stopped
//! while the gateway polls and started again: the new session is born first (NBIRTH seq 0,
//! then the DBIRTHs), the backlog follows as `is_historical` DDATA with the read times, every
//! reading the store holds from the outage is seen, the queue drains, and nothing after the
//! new NBIRTH carries the old session's seq or a live flag on an old reading.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::spb_gw::Rig;
use common::spb_host::{kind, summary};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// (device, metric, read time in ms) of every metric of the DDATA messages in `msgs`, with
/// its historical flag.
fn readings(msgs: &[Value]) -> Vec<(String, String, u64, bool)> {
    msgs.iter()
        .filter(|m| kind(m) == "DDATA")
        .flat_map(|m| {
            let dev = m["device"].as_str().unwrap_or("").to_string();
            m["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |x| {
                    (
                        dev.clone(),
                        x["name"].as_str().unwrap_or("?").to_string(),
                        x["timestamp"].as_u64().unwrap_or(0),
                        x["is_historical"] == true,
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Wait until every reading read before `t_ms` is acknowledged (`gasdtu queue`: the oldest
/// unacknowledged reading is newer, or there is none; live polling keeps adding new ones).
fn drained(rig: &Rig, t_ms: u64) {
    common::wait_for("the backlog to drain", WAIT, || {
        let q = rig.queue();
        q["oldest_pending_read_ms"]
            .as_u64()
            .is_none_or(|o| o > t_ms)
            .then_some(())
    });
}

#[test]
fn after_an_outage_births_come_first_then_the_whole_backlog_as_historical() {
    let mut rig = Rig::new("host-outage", None);
    rig.start();
    let (i, nb) = rig.wait_msg("NBIRTH", 0, WAIT, |m| kind(m) == "NBIRTH");
    rig.wait_msg("DBIRTH of ctl", i, WAIT, |m| {
        kind(m) == "DBIRTH" && m["device"] == "ctl"
    });
    let bd = nb["bd_seq"].as_u64().unwrap();

    // Outage: the gateway keeps polling into its outbox.
    let down_at = gasdtu::time::now_ms() as u64;
    rig.broker.stop();
    let queued = |rig: &Rig| rig.queue()["pending_readings"].as_u64().unwrap_or(0);
    let end = Instant::now() + WAIT;
    // A value change during the outage too (a reading that differs from the birth).
    rig.set_register(2, 0, 99);
    while queued(&rig) < 36 {
        assert!(Instant::now() < end, "no backlog built: {}", rig.queue());
        std::thread::sleep(Duration::from_millis(100));
    }
    let msgs_before = rig.host.messages().len();
    rig.broker.start();
    rig.host.wait_subscribed(2, WAIT);

    let (j, nb2) = rig.wait_msg("the new NBIRTH", msgs_before, WAIT, |m| kind(m) == "NBIRTH");
    assert_eq!(nb2["seq"], 0);
    // Every connect attempt claims a number, the failed ones during the outage included.
    assert_ne!(nb2["bd_seq"], bd, "a new connect, a new bdSeq");
    drained(&rig, gasdtu::time::now_ms() as u64);
    // Read well inside the outage: before the reconnect, so backlog (a reading read just
    // before the connect but stored after it is live, and report by exception may leave
    // it out: the margins keep such edge readings out of the check).
    let reconnect_ts = nb2["timestamp"].as_u64().unwrap();
    let (from, to) = (down_at + 500, reconnect_ts - 500);
    // Every reading the store holds from the outage, seen by device, metric and read time.
    let stored: Vec<(String, String, u64)> = ["meter", "ctl"]
        .iter()
        .flat_map(|d| rig.export(d))
        .map(|r| {
            (
                r["device"].as_str().unwrap().to_string(),
                r["point"].as_str().unwrap().to_string(),
                common::rfc3339_ms(r["read_at"].as_str().unwrap()) as u64,
            )
        })
        .filter(|(_, _, t)| *t > from && *t < to)
        .collect();
    assert!(stored.len() >= 12, "{stored:?}");
    let msgs = rig.wait_msgs("every stored reading", WAIT, |m| {
        let seen: HashSet<(String, String, u64)> = readings(&m[j..])
            .into_iter()
            .map(|(d, n, t, _)| (d, n, t))
            .collect();
        stored.iter().all(|r| seen.contains(r)).then(|| m.to_vec())
    });

    // The new session: NBIRTH, the DBIRTHs, then data; seq from 0 without a gap.
    let s: Vec<Value> = msgs[j..].to_vec();
    let seqs: Vec<u64> = s.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    for w in seqs.windows(2) {
        assert_eq!(
            w[1],
            (w[0] + 1) % 256,
            "seq in the new session:\n{}",
            summary(&s)
        );
    }
    let first_data = s.iter().position(|m| kind(m) == "DDATA").unwrap();
    let born: HashSet<&str> = s[1..first_data]
        .iter()
        .map(|m| {
            assert_eq!(kind(m), "DBIRTH", "births first:\n{}", summary(&s));
            m["device"].as_str().unwrap()
        })
        .collect();
    assert_eq!(born, HashSet::from(["meter", "ctl"]));
    // Backlog readings are historical, with their read times (before the reconnect).
    for (d, n, t, hist) in readings(&s) {
        if t > from && t < to {
            assert!(
                hist,
                "{d}.{n} read at {t} (outage) not historical:\n{}",
                summary(&s)
            );
        }
    }
}

#[test]
fn a_dropped_connection_mid_stream_rederives_in_the_new_session() {
    let mut rig = Rig::new("host-resend", None);
    rig.start();
    let (i, _) = rig.wait_msg("NBIRTH", 0, WAIT, |m| kind(m) == "NBIRTH");
    rig.wait_msg("DBIRTH of ctl", i, WAIT, |m| {
        kind(m) == "DBIRTH" && m["device"] == "ctl"
    });
    // A stream of changes, then the broker goes away in the middle of it.
    for v in 1..=5u16 {
        rig.set_register(2, 0, 1000 + v);
        rig.wait_msg("the change", i, WAIT, |m| {
            kind(m) == "DDATA"
                && common::spb_host::metric(m, "level").is_some_and(|x| x["value"] == 1000 + v)
        });
    }
    rig.set_register(2, 0, 2000);
    common::wait_for("level 2000 stored", WAIT, || {
        rig.export("ctl")
            .iter()
            .any(|r| r["point"] == "level" && r["value"] == 2000)
            .then_some(())
    });
    let down_at = gasdtu::time::now_ms();
    rig.broker.stop();
    let before = rig.host.messages().len();
    rig.set_register(2, 0, 2001);
    rig.broker.start();
    let up_at = gasdtu::time::now_ms();
    let (j, nb2) = rig.wait_msg("the new NBIRTH", before, WAIT, |m| kind(m) == "NBIRTH");
    rig.wait_msg("level 2001 after the reconnect", j, WAIT, |m| {
        kind(m) == "DDATA"
            && common::spb_host::metric(m, "level").is_some_and(|x| x["value"] == 2001)
    });
    drained(&rig, gasdtu::time::now_ms() as u64);
    let msgs = rig.host.messages();
    let s = &msgs[j..];
    // Nothing after the new NBIRTH carries an old seq: 0, 1, 2, ... in arrival order.
    for (k, m) in s.iter().enumerate() {
        assert_eq!(m["seq"].as_u64(), Some(k as u64 % 256), "{}", summary(s));
    }
    // A reading the old session already sent (the host may hold it) and the new one sends
    // again is re-derived from an unacknowledged message: historical.
    let old: HashSet<(String, String, u64)> = readings(&msgs[..j])
        .into_iter()
        .map(|(d, n, t, _)| (d, n, t))
        .collect();
    for (d, n, t, hist) in readings(s) {
        if old.contains(&(d.clone(), n.clone(), t)) {
            assert!(
                hist,
                "{d}.{n} read at {t} re-sent as live:\n{}",
                summary(&msgs)
            );
        }
    }
    // Read before the reconnect, sent in the new session: backlog, historical.
    let new_ts = nb2["timestamp"].as_u64().unwrap();
    for (d, n, t, hist) in readings(s) {
        if t < up_at as u64 {
            assert!(
                hist,
                "{d}.{n} read at {t}, before the reconnect (broker down at {down_at}, up at \
                 {up_at}, new NBIRTH at {new_ts}), sent as live:\n{}",
                summary(s)
            );
        }
    }
    // Level 2000, read and stored before the outage, reached the host in one session or the
    // other.
    assert!(
        msgs.iter().any(|m| kind(m) == "DDATA"
            && common::spb_host::metric(m, "level").is_some_and(|x| x["value"] == 2000)),
        "level 2000 lost:\n{}",
        summary(&msgs)
    );
}
