//! The pure alarm state machine of ONE condition (one rule level on one device): judgements
//! and controlled time in, edges (raised / cleared / acked) out. No I/O, no clock: every time
//! is a device read time (or, for an acknowledgement, the operator's time) passed in by the
//! caller, so table-driven tests drive it through every edge. docs/alarms.md describes it.
//!
//! States: normal (occurrence 0) → active (an occurrence id) → normal again. A condition must
//! hold for `on_delay` to raise and be gone for `off_delay` to clear (measured in read times).
//! A latched condition that is gone stays active ("returned, unacknowledged") until acked.

use serde::{Deserialize, Serialize};

/// What a rule judged from one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    /// The alarm condition holds.
    Alarm,
    /// The condition is clearly gone (outside the deadband).
    Normal,
    /// Inside the deadband: keep the current state (resets a pending delay).
    Hold,
    /// No judgement possible (bad quality, missing point): nothing changes, timers included.
    Unknown,
}

/// A transition reported upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    Raised,
    Cleared,
    Acked,
}

impl Edge {
    pub fn as_str(self) -> &'static str {
        match self {
            Edge::Raised => "raised",
            Edge::Cleared => "cleared",
            Edge::Acked => "acked",
        }
    }
}

/// Delays and latching of a condition, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    pub on_delay_ms: i64,
    pub off_delay_ms: i64,
    pub latched: bool,
}

/// The persisted state of one condition (stored as JSON in `alarm_state`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CondState {
    /// Occurrence id of the active alarm; 0 when normal.
    #[serde(default)]
    pub occurrence: u64,
    #[serde(default)]
    pub acked: bool,
    /// Latched alarm whose condition is gone, waiting for its acknowledgement.
    #[serde(default)]
    pub returned: bool,
    /// When the opposite of the current state began to hold (delay timer), read time ms.
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// Read time of the raise (ms).
    #[serde(default)]
    pub raised_ms: i64,
    /// Value and limit at the raise.
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub limit: Option<f64>,
    #[serde(default)]
    pub unit: Option<String>,
    /// Stuck rules: the last distinct value and the read time it was first seen.
    #[serde(default)]
    pub track: Option<(f64, i64)>,
}

impl CondState {
    pub fn active(&self) -> bool {
        self.occurrence != 0
    }

    /// True when nothing worth persisting is left (normal, no timer, no tracker).
    pub fn is_idle(&self) -> bool {
        *self == CondState::default()
    }
}

/// Advance a condition with one judgement at read time `t_ms`. `next_occurrence` is the
/// gateway-wide occurrence counter (taken and incremented on a raise).
pub fn step(
    s: &mut CondState,
    j: Judge,
    t_ms: i64,
    timing: &Timing,
    next_occurrence: &mut u64,
) -> Option<Edge> {
    if j == Judge::Unknown {
        return None;
    }
    if !s.active() {
        match j {
            Judge::Alarm => {
                let since = *s.since_ms.get_or_insert(t_ms);
                if t_ms - since >= timing.on_delay_ms {
                    s.occurrence = *next_occurrence;
                    *next_occurrence += 1;
                    s.acked = false;
                    s.returned = false;
                    s.since_ms = None;
                    s.raised_ms = t_ms;
                    return Some(Edge::Raised);
                }
            }
            _ => s.since_ms = None,
        }
        return None;
    }
    if s.returned {
        // Latched and gone: only the condition coming back (or an ack) changes anything.
        if j == Judge::Alarm {
            s.returned = false;
            s.since_ms = None;
        }
        return None;
    }
    match j {
        Judge::Normal => {
            let since = *s.since_ms.get_or_insert(t_ms);
            if t_ms - since >= timing.off_delay_ms {
                s.since_ms = None;
                if timing.latched && !s.acked {
                    s.returned = true;
                    return None;
                }
                reset(s);
                return Some(Edge::Cleared);
            }
        }
        _ => s.since_ms = None,
    }
    None
}

/// Acknowledge the active occurrence: `Acked`, followed by `Cleared` when a latched alarm had
/// already returned to normal. Nothing when not active or already acked.
pub fn acknowledge(s: &mut CondState) -> Vec<Edge> {
    if !s.active() || s.acked {
        return Vec::new();
    }
    s.acked = true;
    if s.returned {
        reset(s);
        return vec![Edge::Acked, Edge::Cleared];
    }
    vec![Edge::Acked]
}

fn reset(s: &mut CondState) {
    let track = s.track.take();
    *s = CondState {
        track,
        ..CondState::default()
    };
}

/// Limit judgement with hysteresis: a high limit is violated above `limit` and clear below
/// `limit - deadband`; a low limit the mirror image.
pub fn judge_limit(v: f64, limit: f64, deadband: f64, high: bool) -> Judge {
    if high {
        if v > limit {
            Judge::Alarm
        } else if v < limit - deadband {
            Judge::Normal
        } else {
            Judge::Hold
        }
    } else if v < limit {
        Judge::Alarm
    } else if v > limit + deadband {
        Judge::Normal
    } else {
        Judge::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Judge::*;

    /// (time s, judgement, expected edge)
    type Script = &'static [(i64, Judge, Option<Edge>)];

    fn run(timing: Timing, script: Script) -> CondState {
        let mut s = CondState::default();
        let mut occ = 100;
        for (i, (t, j, want)) in script.iter().enumerate() {
            let got = step(&mut s, *j, t * 1000, &timing, &mut occ);
            assert_eq!(got, *want, "step {i} at t={t}s with {j:?}: state {s:?}");
        }
        s
    }

    const PLAIN: Timing = Timing {
        on_delay_ms: 0,
        off_delay_ms: 0,
        latched: false,
    };
    const DELAYED: Timing = Timing {
        on_delay_ms: 10_000,
        off_delay_ms: 5_000,
        latched: false,
    };
    const LATCHED: Timing = Timing {
        on_delay_ms: 0,
        off_delay_ms: 0,
        latched: true,
    };

    #[test]
    fn table_of_edges() {
        let cases: &[(&str, Timing, Script)] = &[
            (
                "raise and clear at once",
                PLAIN,
                &[
                    (0, Normal, None),
                    (1, Alarm, Some(Edge::Raised)),
                    (2, Alarm, None),
                    (3, Normal, Some(Edge::Cleared)),
                ],
            ),
            (
                "deadband holds both ways",
                PLAIN,
                &[
                    (0, Hold, None),
                    (1, Alarm, Some(Edge::Raised)),
                    (2, Hold, None),
                    (3, Hold, None),
                    (4, Normal, Some(Edge::Cleared)),
                    (5, Hold, None),
                ],
            ),
            (
                "on delay: must hold 10 s",
                DELAYED,
                &[
                    (0, Alarm, None),
                    (5, Alarm, None),
                    (9, Alarm, None),
                    (10, Alarm, Some(Edge::Raised)),
                ],
            ),
            (
                "on delay restarts after a normal reading (chatter never raises)",
                DELAYED,
                &[
                    (0, Alarm, None),
                    (6, Normal, None),
                    (8, Alarm, None),
                    (14, Hold, None),
                    (16, Alarm, None),
                    (25, Alarm, None),
                    (26, Alarm, Some(Edge::Raised)),
                ],
            ),
            (
                "off delay: gone 5 s to clear; flapping back resets it",
                DELAYED,
                &[
                    (0, Alarm, None),
                    (10, Alarm, Some(Edge::Raised)),
                    (11, Normal, None),
                    (14, Alarm, None),
                    (15, Normal, None),
                    (19, Normal, None),
                    (20, Normal, Some(Edge::Cleared)),
                ],
            ),
            (
                "bad quality neither raises nor clears nor moves timers",
                DELAYED,
                &[
                    (0, Unknown, None),
                    (1, Alarm, None),
                    (30, Unknown, None),
                    (31, Alarm, Some(Edge::Raised)),
                    (40, Unknown, None),
                    (41, Normal, None),
                    (45, Unknown, None),
                    (46, Normal, Some(Edge::Cleared)),
                ],
            ),
            (
                "latched: stays active when gone, comes back without a new raise",
                LATCHED,
                &[
                    (0, Alarm, Some(Edge::Raised)),
                    (1, Normal, None),
                    (2, Normal, None),
                    (3, Alarm, None),
                    (4, Alarm, None),
                ],
            ),
        ];
        for (name, timing, script) in cases {
            let mut s = CondState::default();
            let mut occ = 1;
            for (i, (t, j, want)) in script.iter().enumerate() {
                let got = step(&mut s, *j, t * 1000, timing, &mut occ);
                assert_eq!(got, *want, "{name}: step {i} at t={t}s with {j:?}: {s:?}");
            }
        }
    }

    #[test]
    fn occurrences_are_new_per_raise_and_pair_raise_with_clear() {
        let mut s = CondState::default();
        let mut occ = 7;
        assert_eq!(step(&mut s, Alarm, 0, &PLAIN, &mut occ), Some(Edge::Raised));
        assert_eq!(s.occurrence, 7);
        assert_eq!(
            step(&mut s, Normal, 1, &PLAIN, &mut occ),
            Some(Edge::Cleared)
        );
        assert_eq!(s.occurrence, 0);
        assert_eq!(step(&mut s, Alarm, 2, &PLAIN, &mut occ), Some(Edge::Raised));
        assert_eq!(s.occurrence, 8);
        assert_eq!(occ, 9);
    }

    #[test]
    fn latched_clears_only_after_ack() {
        let s = run(
            LATCHED,
            &[(0, Alarm, Some(Edge::Raised)), (1, Normal, None)],
        );
        assert!(s.active() && s.returned);
        let mut s2 = s.clone();
        assert_eq!(acknowledge(&mut s2), vec![Edge::Acked, Edge::Cleared]);
        assert!(!s2.active());
        // Acked while the condition still holds: clears normally afterwards.
        let mut s = run(LATCHED, &[(0, Alarm, Some(Edge::Raised))]);
        assert_eq!(acknowledge(&mut s), vec![Edge::Acked]);
        assert_eq!(
            acknowledge(&mut s),
            Vec::<Edge>::new(),
            "second ack is a no-op"
        );
        let mut occ = 1;
        assert_eq!(
            step(&mut s, Normal, 5000, &LATCHED, &mut occ),
            Some(Edge::Cleared)
        );
        // Non-latched ack of a normal condition: nothing.
        let mut idle = CondState::default();
        assert!(acknowledge(&mut idle).is_empty());
    }

    #[test]
    fn restart_from_persisted_state_neither_reraises_nor_forgets_a_clear() {
        // Raise, persist (JSON round trip = what the store keeps), "restart", continue.
        let mut s = CondState::default();
        let mut occ = 1;
        assert_eq!(step(&mut s, Alarm, 0, &DELAYED, &mut occ), None);
        assert_eq!(
            step(&mut s, Alarm, 10_000, &DELAYED, &mut occ),
            Some(Edge::Raised)
        );
        let saved = serde_json::to_string(&s).unwrap();
        let mut back: CondState = serde_json::from_str(&saved).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            step(&mut back, Alarm, 12_000, &DELAYED, &mut occ),
            None,
            "no second raise"
        );
        // Off-delay timer running at the crash survives too.
        assert_eq!(step(&mut back, Normal, 13_000, &DELAYED, &mut occ), None);
        let mut back2: CondState =
            serde_json::from_str(&serde_json::to_string(&back).unwrap()).unwrap();
        assert_eq!(
            step(&mut back2, Normal, 18_000, &DELAYED, &mut occ),
            Some(Edge::Cleared)
        );
        // A clear persisted is not forgotten: the state is idle, nothing re-raises on Normal.
        let mut back3: CondState =
            serde_json::from_str(&serde_json::to_string(&back2).unwrap()).unwrap();
        assert!(back3.is_idle());
        assert_eq!(step(&mut back3, Normal, 19_000, &DELAYED, &mut occ), None);
    }

    #[test]
    fn limit_judgement_with_deadband() {
        let cases = [
            (7.1, 7.0, 0.5, true, Alarm),
            (7.0, 7.0, 0.5, true, Hold),
            (6.6, 7.0, 0.5, true, Hold),
            (6.4, 7.0, 0.5, true, Normal),
            (1.9, 2.0, 0.5, false, Alarm),
            (2.4, 2.0, 0.5, false, Hold),
            (2.6, 2.0, 0.5, false, Normal),
            (7.0, 7.0, 0.0, true, Hold),
            (6.99, 7.0, 0.0, true, Normal),
        ];
        for (v, lim, db, high, want) in cases {
            assert_eq!(
                judge_limit(v, lim, db, high),
                want,
                "{v} vs {lim}±{db} high={high}"
            );
        }
    }
}
