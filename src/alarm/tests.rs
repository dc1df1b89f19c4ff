//! Engine tests with controlled time: every rule kind through its edges on real
//! `SampleBatch`es (read times are the clock), the JSON of the transitions, bad quality, and
//! a restart from the persisted rows.

use std::time::{Duration, UNIX_EPOCH};

use super::engine::AlarmEngine;
use super::rule::{AlarmRule, Level, RuleKind, Severity};
use crate::model::{BadReason, Quality, Sample, SampleBatch, Value};

const T0: u64 = 1_800_000_000; // 2027-01-15, a trusted time

fn rule(id: &str, point: Option<&str>, kind: RuleKind) -> AlarmRule {
    AlarmRule {
        id: id.into(),
        devices: vec!["pt1".into()],
        point: point.map(Into::into),
        kind,
        on_delay: Duration::ZERO,
        off_delay: Duration::ZERO,
        severity: Severity::Major,
        message: None,
        latched: false,
        action: None,
    }
}

/// A batch of pt1 at T0 + `t` seconds: `v` None = bad (timeout).
fn batch(t: u64, point: &str, v: Option<f64>, online: bool) -> SampleBatch {
    let at = UNIX_EPOCH + Duration::from_secs(T0 + t);
    SampleBatch {
        device: "pt1".into(),
        bus: "lan".into(),
        slot: at,
        samples: vec![Sample {
            point: point.into(),
            value: v.map(Value::Float),
            unit: Some("kPa".into()),
            quality: match v {
                Some(_) => Quality::Good,
                None => Quality::Bad(BadReason::Timeout),
            },
            read_at: at,
        }],
        online,
        failed_cycles: if online { 0 } else { 3 },
    }
}

/// Feed (t seconds, value) and compare the transitions as "state:level" strings.
fn script(engine: &mut AlarmEngine, point: &str, steps: &[(u64, Option<f64>, &[&str])]) {
    for (i, (t, v, want)) in steps.iter().enumerate() {
        let out = engine.evaluate(&[batch(*t, point, *v, true)]);
        let got: Vec<String> = out
            .iter()
            .map(|j| {
                format!(
                    "{}:{}",
                    j["state"].as_str().unwrap(),
                    j["level"].as_str().unwrap_or(j["kind"].as_str().unwrap())
                )
            })
            .collect();
        assert_eq!(got, *want, "step {i} t={t} v={v:?}: {out:?}");
    }
}

fn limits() -> RuleKind {
    RuleKind::Limit {
        levels: vec![
            (Level::HighHigh, 800.0),
            (Level::High, 700.0),
            (Level::Low, 200.0),
            (Level::LowLow, 100.0),
        ],
        deadband: 20.0,
    }
}

#[test]
fn limit_levels_with_deadband_and_bad_quality() {
    let mut e = AlarmEngine::new(vec![rule("p", Some("pressure"), limits())], 1);
    script(
        &mut e,
        "pressure",
        &[
            (0, Some(400.0), &[]),
            (1, Some(701.0), &["raised:h"]),
            (2, Some(690.0), &[]), // inside the deadband
            (3, Some(850.0), &["raised:hh"]),
            (4, None, &[]), // bad quality: nothing
            (5, Some(790.0), &[]),
            (6, Some(779.0), &["cleared:hh"]),
            (7, Some(679.0), &["cleared:h"]),
            (8, Some(150.0), &["raised:l"]),
            (9, Some(50.0), &["raised:ll"]),
            (10, None, &[]),
            (11, Some(400.0), &["cleared:l", "cleared:ll"]),
        ],
    );
}

#[test]
fn transition_json_carries_the_documented_fields() {
    let mut r = rule("p_high", Some("pressure"), limits());
    r.message = Some("{device} {point} = {value} {unit} > {limit}".into());
    r.severity = Severity::Critical;
    let mut e = AlarmEngine::new(vec![r], 41);
    let up = e.evaluate(&[batch(10, "pressure", Some(900.0), true)]);
    assert_eq!(up.len(), 2, "h and hh: {up:?}");
    let hh = &up[0];
    assert_eq!(hh["alarm"], "p_high");
    assert_eq!(hh["dev"], "pt1");
    assert_eq!(hh["point"], "pressure");
    assert_eq!(hh["level"], "hh");
    assert_eq!(hh["severity"], "critical");
    assert_eq!(hh["state"], "raised");
    assert_eq!(hh["value"], 900.0);
    assert_eq!(hh["limit"], 800.0);
    assert_eq!(hh["unit"], "kPa");
    assert_eq!(hh["occurrence"], 41);
    assert_eq!(hh["raised_at"], "2027-01-15T08:00:10.000Z");
    assert_eq!(hh["message"], "pt1 pressure = 900 kPa > 800");
    assert_eq!(up[1]["occurrence"], 42);
    let down = e.evaluate(&[batch(20, "pressure", Some(400.0), true)]);
    let hh_clear = down.iter().find(|j| j["level"] == "hh").unwrap();
    assert_eq!(hh_clear["state"], "cleared");
    assert_eq!(hh_clear["occurrence"], 41, "pairs with its raise");
    assert_eq!(hh_clear["raised_at"], "2027-01-15T08:00:10.000Z");
    assert_eq!(hh_clear["cleared_at"], "2027-01-15T08:00:20.000Z");
    assert_eq!(hh_clear["value"], 400.0);
}

#[test]
fn on_and_off_delays_suppress_chatter() {
    let mut r = rule("p", Some("pressure"), limits());
    r.on_delay = Duration::from_secs(30);
    r.off_delay = Duration::from_secs(20);
    let mut e = AlarmEngine::new(vec![r], 1);
    script(
        &mut e,
        "pressure",
        &[
            // chatter around the limit, every 10 s: never 30 s in a row
            (0, Some(710.0), &[]),
            (10, Some(720.0), &[]),
            (20, Some(650.0), &[]),
            (30, Some(710.0), &[]),
            (40, Some(650.0), &[]),
            // now it holds
            (50, Some(710.0), &[]),
            (60, Some(710.0), &[]),
            (70, Some(710.0), &[]),
            (80, Some(710.0), &["raised:h"]),
            // flapping back under for 10 s does not clear
            (90, Some(600.0), &[]),
            (100, Some(710.0), &[]),
            (110, Some(600.0), &[]),
            (120, Some(600.0), &[]),
            (130, Some(600.0), &["cleared:h"]),
        ],
    );
}

#[test]
fn rate_of_change_over_a_window() {
    let kind = RuleKind::Rate {
        change: -50.0,
        window: Duration::from_secs(60),
        deadband: 10.0,
    };
    let mut e = AlarmEngine::new(vec![rule("line_break", Some("pressure"), kind)], 1);
    script(
        &mut e,
        "pressure",
        &[
            (0, Some(400.0), &[]),
            (10, Some(399.0), &[]), // half a window not reached yet: no judgement
            (30, Some(398.0), &[]),
            (40, Some(380.0), &[]),              // -20 in 40 s = -30/min
            (60, Some(340.0), &["raised:rate"]), // -60 over the full window
            (61, Some(339.0), &[]),
            (90, None, &[]),                       // bad quality: no judgement
            (100, Some(320.0), &[]),               // window 40..100: -60 per min, still raised
            (130, Some(318.0), &["cleared:rate"]), // window 70..130 holds 100, 130: -4/min
            (131, Some(318.0), &[]),
        ],
    );
}

#[test]
fn status_bit_stuck_and_offline() {
    let mut e = AlarmEngine::new(
        vec![
            rule(
                "tamper",
                Some("status_tamper"),
                RuleKind::Bit { active: true },
            ),
            {
                let mut r = rule("comm", None, RuleKind::Offline);
                r.severity = Severity::Critical;
                r
            },
        ],
        1,
    );
    script(
        &mut e,
        "status_tamper",
        &[
            (0, Some(0.0), &[]),
            (1, Some(1.0), &["raised:bit"]),
            (2, None, &[]),
            (3, Some(0.0), &["cleared:bit"]),
        ],
    );
    // Offline: bad samples with online=false raise comm, not the bit alarm.
    let out = e.evaluate(&[batch(10, "status_tamper", None, false)]);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["alarm"], "comm");
    assert_eq!(out[0]["state"], "raised");
    assert_eq!(out[0]["value"], 3.0, "failed cycles");
    assert!(e
        .evaluate(&[batch(11, "status_tamper", None, false)])
        .is_empty());
    let out = e.evaluate(&[batch(12, "status_tamper", Some(0.0), true)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["state"], "cleared");

    let kind = RuleKind::Stuck {
        after: Duration::from_secs(60),
        tolerance: 0.0,
    };
    let mut e = AlarmEngine::new(vec![rule("frozen", Some("pressure"), kind)], 1);
    script(
        &mut e,
        "pressure",
        &[
            (0, Some(400.0), &[]),
            (30, Some(400.0), &[]),
            (59, Some(400.0), &[]),
            (60, Some(400.0), &["raised:stuck"]),
            (70, None, &[]),
            (80, Some(400.0), &[]),
            (90, Some(401.0), &["cleared:stuck"]),
            (120, Some(401.0), &[]),
            (150, Some(401.0), &["raised:stuck"]),
        ],
    );
}

#[test]
fn latched_alarm_needs_ack_and_ack_is_persisted() {
    let mut r = rule(
        "p",
        Some("pressure"),
        RuleKind::Limit {
            levels: vec![(Level::High, 700.0)],
            deadband: 0.0,
        },
    );
    r.latched = true;
    let mut e = AlarmEngine::new(vec![r], 5);
    script(
        &mut e,
        "pressure",
        &[(0, Some(800.0), &["raised:h"]), (1, Some(100.0), &[])],
    );
    let active = e.active();
    assert_eq!(active.len(), 1);
    assert!(active[0].returned && !active[0].acked);
    let _ = e.take_writes();
    assert!(e.acknowledge(99, "op", 0).is_err(), "unknown occurrence");
    let out = e.acknowledge(5, "operator", 1_800_000_100_000).unwrap();
    let states: Vec<_> = out.iter().map(|j| j["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["acked", "cleared"]);
    assert_eq!(out[0]["acked_by"], "operator");
    assert_eq!(out[0]["occurrence"], 5);
    let w = e.take_writes();
    assert_eq!(
        w.states,
        vec![("p/pt1/h".to_string(), None)],
        "cleared: row deleted"
    );
    assert!(e.active().is_empty());
}

#[test]
fn restart_from_persisted_rows_neither_reraises_nor_forgets_a_clear() {
    let mk = || {
        let mut r = rule("p", Some("pressure"), limits());
        r.off_delay = Duration::from_secs(20);
        AlarmEngine::new(vec![r], 1)
    };
    let mut rows: std::collections::BTreeMap<String, String> = Default::default();
    let mut occ = None;
    let mut persist = |e: &mut AlarmEngine| {
        let w = e.take_writes();
        for (k, v) in w.states {
            match v {
                Some(v) => rows.insert(k, v),
                None => rows.remove(&k),
            };
        }
        if w.next_occurrence.is_some() {
            occ = w.next_occurrence;
        }
        (rows.clone(), occ)
    };
    let mut e = mk();
    script(&mut e, "pressure", &[(0, Some(750.0), &["raised:h"])]);
    let (saved, o) = persist(&mut e);
    // restart 1: still high, no second raise; the clear starts its off delay
    let mut e = mk();
    e.restore(saved.into_iter().collect(), o);
    assert_eq!(e.active().len(), 1);
    script(
        &mut e,
        "pressure",
        &[(10, Some(760.0), &[]), (20, Some(400.0), &[])],
    );
    let (saved, o) = persist(&mut e);
    // restart 2 mid off-delay: the clear still arrives on time, with the same occurrence
    let mut e = mk();
    e.restore(saved.into_iter().collect(), o);
    let out = e.evaluate(&[batch(40, "pressure", Some(400.0), true)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["state"], "cleared");
    assert_eq!(out[0]["occurrence"], 1);
    let (saved, o) = persist(&mut e);
    assert!(saved.is_empty());
    // restart 3: the clear is not forgotten, and a new raise gets a new occurrence
    let mut e = mk();
    e.restore(saved.into_iter().collect(), o);
    assert!(e
        .evaluate(&[batch(50, "pressure", Some(400.0), true)])
        .is_empty());
    let out = e.evaluate(&[batch(60, "pressure", Some(750.0), true)]);
    assert_eq!(out[0]["occurrence"], 2);
}

#[test]
fn rows_of_removed_rules_are_dropped() {
    let mut e = AlarmEngine::new(vec![rule("p", Some("pressure"), limits())], 1);
    e.restore(
        vec![("gone/pt1/h".into(), "{\"occurrence\":3}".into())],
        Some(4),
    );
    assert!(e.active().is_empty());
    let w = e.take_writes();
    assert_eq!(w.states, vec![("gone/pt1/h".to_string(), None)]);
}

#[test]
fn an_unset_clock_still_alarms_and_flags_the_times() {
    let mut e = AlarmEngine::new(vec![rule("p", Some("pressure"), limits())], 1);
    let mut b = batch(0, "pressure", Some(750.0), true);
    let t = UNIX_EPOCH + Duration::from_secs(3600); // 1970: the clock is not set
    b.samples[0].read_at = t;
    b.slot = t;
    let out = e.evaluate(&[b]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["clock"], "untrusted");
    let ok = AlarmEngine::new(vec![rule("p", Some("pressure"), limits())], 1).evaluate(&[batch(
        0,
        "pressure",
        Some(750.0),
        true,
    )]);
    assert!(ok[0].get("clock").is_none());
}
