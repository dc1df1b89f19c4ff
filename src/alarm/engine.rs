//! The alarm engine (pure core): expands the rules into conditions (rule × device × level),
//! turns each batch's samples into judgements, advances each condition's state machine
//! (`machine`) and produces the documented JSON of every transition plus the state rows that
//! changed. No I/O and no clock: times are the samples' device read times (acknowledgements
//! carry the caller's time). `AlarmService` (mod.rs) puts it in front of the store.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value as Json};

use super::machine::{self, CondState, Edge, Judge, Timing};
use super::rule::{render, AlarmRule, Level, RuleKind};
use crate::model::{SampleBatch, Value};

/// One condition: a rule (level) on one device.
#[derive(Debug, Clone)]
struct Cond {
    rule: usize,
    device: String,
    level: Option<Level>,
    limit: Option<f64>,
    key: String,
}

/// State rows to persist with the commit that carries the transitions: `(key, Some(json))`
/// upserts, `(key, None)` deletes; the occurrence counter after this evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlarmWrites {
    pub states: Vec<(String, Option<String>)>,
    pub next_occurrence: Option<u64>,
}

impl AlarmWrites {
    pub fn is_empty(&self) -> bool {
        self.states.is_empty() && self.next_occurrence.is_none()
    }
}

/// An active alarm as `gasdtu status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ActiveAlarm {
    pub occurrence: u64,
    pub rule: String,
    pub device: String,
    pub point: Option<String>,
    pub kind: &'static str,
    pub level: Option<&'static str>,
    pub severity: &'static str,
    pub raised_at: String,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub unit: Option<String>,
    pub acked: bool,
    /// Latched and back to normal: waits for its acknowledgement.
    pub returned: bool,
    pub message: String,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("no active alarm has occurrence {0}")]
    Unknown(u64),
    #[error("alarm occurrence {0} is already acknowledged")]
    AlreadyAcked(u64),
}

#[derive(Clone)]
pub struct AlarmEngine {
    rules: Arc<Vec<AlarmRule>>,
    conds: Arc<Vec<Cond>>,
    by_device: Arc<HashMap<String, Vec<usize>>>,
    states: BTreeMap<String, CondState>,
    /// Rate rules: recent (read ms, value) within the window (not persisted).
    history: HashMap<usize, VecDeque<(i64, f64)>>,
    next_occurrence: u64,
    occ_dirty: bool,
    dirty: BTreeSet<String>,
}

impl AlarmEngine {
    /// An engine for `rules` with no state; `first_occurrence` seeds the counter of a fresh
    /// database (the caller uses the wall clock in ms so ids stay unique across a replaced
    /// database).
    pub fn new(rules: Vec<AlarmRule>, first_occurrence: u64) -> AlarmEngine {
        let mut conds = Vec::new();
        for (ri, r) in rules.iter().enumerate() {
            for dev in &r.devices {
                let subs: Vec<(Option<Level>, Option<f64>, &str)> = match &r.kind {
                    RuleKind::Limit { levels, .. } => levels
                        .iter()
                        .map(|(l, x)| (Some(*l), Some(*x), l.key()))
                        .collect(),
                    RuleKind::Rate { change, .. } => vec![(None, Some(*change), "rate")],
                    k => vec![(None, None, k.name())],
                };
                for (level, limit, tag) in subs {
                    conds.push(Cond {
                        rule: ri,
                        device: dev.clone(),
                        level,
                        limit,
                        key: format!("{}/{}/{}", r.id, dev, tag),
                    });
                }
            }
        }
        let mut by_device: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in conds.iter().enumerate() {
            by_device.entry(c.device.clone()).or_default().push(i);
        }
        AlarmEngine {
            rules: Arc::new(rules),
            conds: Arc::new(conds),
            by_device: Arc::new(by_device),
            states: BTreeMap::new(),
            history: HashMap::new(),
            next_occurrence: first_occurrence.max(1),
            occ_dirty: true,
            dirty: BTreeSet::new(),
        }
    }

    /// Load persisted state rows and the counter. Rows of conditions that no longer exist
    /// (rule or device removed from the config) are deleted with the next commit.
    pub fn restore(&mut self, rows: Vec<(String, String)>, next_occurrence: Option<u64>) {
        let known: BTreeSet<&str> = self.conds.iter().map(|c| c.key.as_str()).collect();
        for (key, text) in rows {
            match serde_json::from_str::<CondState>(&text) {
                Ok(s) if known.contains(key.as_str()) => {
                    self.states.insert(key, s);
                }
                Ok(_) => {
                    tracing::warn!(key, "alarm state of a rule no longer configured: dropped");
                    self.dirty.insert(key);
                }
                Err(e) => {
                    tracing::error!(key, "unreadable alarm state dropped: {e}");
                    self.dirty.insert(key);
                }
            }
        }
        if let Some(n) = next_occurrence {
            self.next_occurrence = n.max(1);
            self.occ_dirty = false;
        }
    }

    pub fn has_rules(&self) -> bool {
        !self.conds.is_empty()
    }

    /// Evaluate batches in order; returns the alarm entries (JSON bodies) of the transitions.
    pub fn evaluate(&mut self, batches: &[SampleBatch]) -> Vec<Json> {
        let mut out = Vec::new();
        for b in batches {
            let Some(idx) = self.by_device.get(&*b.device).cloned() else {
                continue;
            };
            for ci in idx {
                self.eval_cond(ci, b, &mut out);
            }
        }
        out
    }

    fn eval_cond(&mut self, ci: usize, b: &SampleBatch, out: &mut Vec<Json>) {
        let conds = self.conds.clone();
        let rules = self.rules.clone();
        let c = &conds[ci];
        let r = &rules[c.rule];
        let timing = Timing {
            on_delay_ms: r.on_delay.as_millis() as i64,
            off_delay_ms: r.off_delay.as_millis() as i64,
            latched: r.latched,
        };
        let mut s = self.states.get(&c.key).cloned().unwrap_or_default();
        let before = s.clone();
        let (judge, t_ms, value, unit) = match &r.kind {
            RuleKind::Offline => {
                let t = b
                    .samples
                    .iter()
                    .map(|x| ms(x.read_at))
                    .max()
                    .unwrap_or_else(|| ms(b.slot));
                let j = if b.online {
                    Judge::Normal
                } else {
                    Judge::Alarm
                };
                (j, t, Some(b.failed_cycles as f64), None)
            }
            kind => {
                let point = r.point.as_deref().unwrap_or("");
                let sample = b.samples.iter().find(|x| &*x.point == point);
                let (t, v, unit) = match sample {
                    Some(x) if x.quality.is_good() => (
                        ms(x.read_at),
                        x.value.as_ref().and_then(numeric),
                        x.unit.as_deref().map(str::to_string),
                    ),
                    // Bad quality or missing: no judgement (the offline rule covers comms).
                    _ => return,
                };
                let Some(v) = v else { return };
                let j = match kind {
                    RuleKind::Limit { deadband, .. } => {
                        let lvl = c.level.unwrap_or(Level::High);
                        machine::judge_limit(v, c.limit.unwrap_or(0.0), *deadband, lvl.is_high())
                    }
                    RuleKind::Rate {
                        change,
                        window,
                        deadband,
                    } => {
                        let w = window.as_millis() as i64;
                        let h = self.history.entry(ci).or_default();
                        h.push_back((t, v));
                        while h.front().is_some_and(|(t0, _)| *t0 < t - w) {
                            h.pop_front();
                        }
                        match h.front() {
                            Some(&(t0, v0)) if t - t0 > 0 && 2 * (t - t0) >= w => {
                                let per_window = (v - v0) * w as f64 / (t - t0) as f64;
                                if *change < 0.0 {
                                    machine::judge_limit(per_window, *change, *deadband, false)
                                } else {
                                    machine::judge_limit(per_window, *change, *deadband, true)
                                }
                            }
                            _ => Judge::Unknown,
                        }
                    }
                    RuleKind::Bit { active } => {
                        if (v != 0.0) == *active {
                            Judge::Alarm
                        } else {
                            Judge::Normal
                        }
                    }
                    RuleKind::Stuck { after, tolerance } => match s.track {
                        Some((last, since)) if (v - last).abs() <= *tolerance => {
                            if t - since >= after.as_millis() as i64 {
                                Judge::Alarm
                            } else {
                                Judge::Normal
                            }
                        }
                        _ => {
                            s.track = Some((v, t));
                            Judge::Normal
                        }
                    },
                    RuleKind::Offline => Judge::Unknown,
                };
                (j, t, Some(v), unit)
            }
        };
        let edge = machine::step(&mut s, judge, t_ms, &timing, &mut self.next_occurrence);
        if let Some(e) = edge {
            if e == Edge::Raised {
                self.occ_dirty = true;
                s.value = value;
                s.limit = c.limit;
                s.unit = unit.clone();
            }
            let base = if e == Edge::Raised { &s } else { &before };
            out.push(self.entry(c, e, base, t_ms, value, unit.or(base.unit.clone()), None));
        }
        if s != before {
            self.dirty.insert(c.key.clone());
            if s.is_idle() {
                self.states.remove(&c.key);
            } else {
                self.states.insert(c.key.clone(), s);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        c: &Cond,
        edge: Edge,
        s: &CondState,
        t_ms: i64,
        value: Option<f64>,
        unit: Option<String>,
        acked_by: Option<&str>,
    ) -> Json {
        let r = &self.rules[c.rule];
        let msg = self.message(c, edge, value, unit.as_deref());
        let mut j = json!({
            "alarm": r.id,
            "dev": c.device,
            "point": r.point,
            "kind": r.kind.name(),
            "severity": r.severity.as_str(),
            "state": edge.as_str(),
            "occurrence": s.occurrence,
            "value": value.map(crate::decimal::meant),
            "limit": c.limit,
            "unit": unit,
            "raised_at": rfc3339(s.raised_ms),
            "t": rfc3339(t_ms),
            "message": msg,
        });
        if let Some(l) = c.level {
            j["level"] = json!(l.key());
        }
        if edge == Edge::Cleared {
            j["cleared_at"] = json!(rfc3339(t_ms));
        }
        if let Some(by) = acked_by {
            j["acked_by"] = json!(by);
        }
        if r.latched {
            j["latched"] = json!(true);
        }
        // A gateway whose clock is not set yet (no RTC, no NTP) still alarms: the times
        // are flagged instead of being held back like readings.
        if s.raised_ms < crate::time::MIN_TRUSTED_UNIX_MS || t_ms < crate::time::MIN_TRUSTED_UNIX_MS
        {
            j["clock"] = json!("untrusted");
        }
        j
    }

    fn message(&self, c: &Cond, edge: Edge, value: Option<f64>, unit: Option<&str>) -> String {
        let r = &self.rules[c.rule];
        let fmt = |x: Option<f64>| x.map(super::rule::num_text).unwrap_or_default();
        let default = match (&r.kind, c.level) {
            (RuleKind::Offline, _) => "{device} offline".to_string(),
            (RuleKind::Limit { .. }, _) => {
                "{device} {point} {value} {unit} beyond {level} limit {limit}".into()
            }
            (RuleKind::Rate { .. }, _) => {
                "{device} {point} changing faster than {limit} {unit} per window".into()
            }
            (RuleKind::Bit { .. }, _) => "{device} {point} set".into(),
            (RuleKind::Stuck { .. }, _) => "{device} {point} stuck at {value} {unit}".into(),
        };
        let t = r.message.clone().unwrap_or(default);
        render(
            &t,
            &[
                ("rule", r.id.clone()),
                ("device", c.device.clone()),
                ("point", r.point.clone().unwrap_or_default()),
                ("value", fmt(value)),
                ("limit", fmt(c.limit)),
                ("unit", unit.unwrap_or("").to_string()),
                ("level", c.level.map(|l| l.key()).unwrap_or("").to_string()),
                ("state", edge.as_str().to_string()),
            ],
        )
        .trim()
        .to_string()
    }

    /// Acknowledge occurrence `occurrence` on behalf of `by` at `now_ms`: the transitions
    /// (acked, and cleared for a latched alarm already back to normal).
    pub fn acknowledge(
        &mut self,
        occurrence: u64,
        by: &str,
        now_ms: i64,
    ) -> Result<Vec<Json>, AckError> {
        let conds = self.conds.clone();
        let Some(c) = conds.iter().find(|c| {
            self.states
                .get(&c.key)
                .is_some_and(|s| s.occurrence == occurrence && occurrence != 0)
        }) else {
            return Err(AckError::Unknown(occurrence));
        };
        let mut s = self.states.get(&c.key).cloned().unwrap_or_default();
        let before = s.clone();
        let edges = machine::acknowledge(&mut s);
        if edges.is_empty() {
            return Err(AckError::AlreadyAcked(occurrence));
        }
        let out = edges
            .iter()
            .map(|e| {
                self.entry(
                    c,
                    *e,
                    &before,
                    now_ms,
                    before.value,
                    before.unit.clone(),
                    Some(by),
                )
            })
            .collect();
        self.dirty.insert(c.key.clone());
        if s.is_idle() {
            self.states.remove(&c.key);
        } else {
            self.states.insert(c.key.clone(), s);
        }
        Ok(out)
    }

    /// State rows changed since the last call (to commit with the transitions).
    pub fn take_writes(&mut self) -> AlarmWrites {
        let states = std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|k| {
                let v = self
                    .states
                    .get(&k)
                    .map(|s| serde_json::to_string(s).unwrap_or_default());
                (k, v)
            })
            .collect();
        let next_occurrence = if std::mem::take(&mut self.occ_dirty) {
            Some(self.next_occurrence)
        } else {
            None
        };
        AlarmWrites {
            states,
            next_occurrence,
        }
    }

    /// Active alarms, most severe first, then by raise time.
    pub fn active(&self) -> Vec<ActiveAlarm> {
        let mut v: Vec<ActiveAlarm> = self
            .conds
            .iter()
            .filter_map(|c| {
                let s = self.states.get(&c.key).filter(|s| s.active())?;
                let r = &self.rules[c.rule];
                Some(ActiveAlarm {
                    occurrence: s.occurrence,
                    rule: r.id.clone(),
                    device: c.device.clone(),
                    point: r.point.clone(),
                    kind: r.kind.name(),
                    level: c.level.map(|l| l.key()),
                    severity: r.severity.as_str(),
                    raised_at: rfc3339(s.raised_ms),
                    value: s.value,
                    limit: s.limit,
                    unit: s.unit.clone(),
                    acked: s.acked,
                    returned: s.returned,
                    message: self.message(c, Edge::Raised, s.value, s.unit.as_deref()),
                })
            })
            .collect();
        v.sort_by(|a, b| {
            (self.sev_rank(a), &a.raised_at, a.occurrence).cmp(&(
                self.sev_rank(b),
                &b.raised_at,
                b.occurrence,
            ))
        });
        v
    }

    fn sev_rank(&self, a: &ActiveAlarm) -> u8 {
        match a.severity {
            "critical" => 0,
            "major" => 1,
            "minor" => 2,
            _ => 3,
        }
    }
}

fn numeric(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

fn ms(t: std::time::SystemTime) -> i64 {
    crate::time::unix_ms(t)
}

fn rfc3339(ms: i64) -> String {
    crate::time::rfc3339_ms(ms)
}
