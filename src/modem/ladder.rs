//! The modem reset ladder (pure state machine): given what went wrong (the module stopped
//! answering, registration or attach missing for longer than the bound) it says which rung
//! to take next — radio off/on (`AT+CFUN=0` / `AT+CFUN=1`), the profile's module reset
//! command, a power cycle (GPIO or command) — with a growing gap between steps and the per-day
//! caps (a step over its cap waits for its 24-hour window to free up, and says so). A success
//! (the module answers and registers) puts it back on the bottom rung. The caller takes the
//! clock (`Instant`s passed in), carries out the step and records each one as an event. No
//! I/O, no clock reads.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The window the per-day caps count in.
pub const DAY: Duration = Duration::from_secs(86_400);

/// A rung, bottom to top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `AT+CFUN=0` then `AT+CFUN=1`.
    RadioCycle,
    /// The profile's reset command, then its boot marker.
    ModuleReset,
    /// Power off for `off_for`, then on (GPIO line or command).
    PowerCycle,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::RadioCycle => "radio_cycle",
            Step::ModuleReset => "module_reset",
            Step::PowerCycle => "power_cycle",
        }
    }
}

/// What went wrong (or right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A command timed out or got no byte at all (the radio cycle needs a module that
    /// answers, so this starts at the module reset).
    Unresponsive,
    /// Not registered for longer than `register_within`.
    RegistrationLost,
    /// Attach (CGATT / PDP) failed or missing for longer than the bound.
    AttachFailed,
}

impl Input {
    pub fn as_str(self) -> &'static str {
        match self {
            Input::Unresponsive => "unresponsive",
            Input::RegistrationLost => "registration_lost",
            Input::AttachFailed => "attach_failed",
        }
    }
}

/// EMM reject causes (3GPP TS 24.301 annex A) that no reset can cure: illegal UE (3), illegal
/// ME (6), EPS services not allowed (7), EPS and non-EPS services not allowed (8). The
/// subscription or the SIM must change; climbing would only burn the day's resets.
pub fn permanent_reject(cause: u16) -> bool {
    matches!(cause, 3 | 6 | 7 | 8)
}

/// The ladder's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// A power cycle is possible (`[modem.power]` configured).
    pub power: bool,
    /// Radio cycles + module resets per `DAY`.
    pub max_resets_per_day: u32,
    pub max_power_cycles_per_day: u32,
    /// Gap before the second step of a climb; doubles per further step, up to `max_gap`.
    pub min_gap: Duration,
    pub max_gap: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            power: false,
            max_resets_per_day: 24,
            max_power_cycles_per_day: 6,
            min_gap: Duration::from_secs(30),
            max_gap: Duration::from_secs(1800),
        }
    }
}

/// What the caller should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Take this step now (the ladder has counted it).
    Take(Step),
    /// The next step is `step`, not before `until`: the gap after the previous step.
    Backoff { step: Step, until: Instant },
    /// The next step is over its per-day cap; it frees up at `until`.
    Capped { step: Step, until: Instant },
}

/// The ladder.
#[derive(Debug, Clone)]
pub struct Ladder {
    policy: Policy,
    /// The last step of the current climb (None: at the bottom).
    last: Option<(Step, Instant)>,
    /// Steps taken in this climb (for the gap).
    climb: u32,
    resets: VecDeque<Instant>,
    power_cycles: VecDeque<Instant>,
}

impl Ladder {
    pub fn new(policy: Policy) -> Ladder {
        Ladder {
            policy,
            last: None,
            climb: 0,
            resets: VecDeque::new(),
            power_cycles: VecDeque::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The module answers and is registered: back to the bottom rung (the day counts stay).
    pub fn success(&mut self) {
        self.last = None;
        self.climb = 0;
    }

    /// The last step of the current climb.
    pub fn last_step(&self) -> Option<Step> {
        self.last.map(|(s, _)| s)
    }

    /// Radio cycles + module resets in the last 24 h, and power cycles.
    pub fn counts(&mut self, now: Instant) -> (u32, u32) {
        self.expire(now);
        (self.resets.len() as u32, self.power_cycles.len() as u32)
    }

    fn expire(&mut self, now: Instant) {
        for q in [&mut self.resets, &mut self.power_cycles] {
            while q
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= DAY)
            {
                q.pop_front();
            }
        }
    }

    fn top(&self) -> Step {
        if self.policy.power {
            Step::PowerCycle
        } else {
            Step::ModuleReset
        }
    }

    /// The rung the next step would be on for `input`.
    pub fn next_step(&self, input: Input) -> Step {
        let above = match self.last {
            None => Step::RadioCycle,
            Some((Step::RadioCycle, _)) => Step::ModuleReset,
            Some((Step::ModuleReset, _)) | Some((Step::PowerCycle, _)) => Step::PowerCycle,
        };
        let floor = match input {
            Input::Unresponsive => Step::ModuleReset,
            Input::RegistrationLost | Input::AttachFailed => Step::RadioCycle,
        };
        above.max(floor).min(self.top())
    }

    /// The gap that must pass after the previous step of this climb.
    fn gap(&self) -> Duration {
        let doublings = self.climb.saturating_sub(1).min(20);
        self.policy
            .min_gap
            .saturating_mul(1u32 << doublings)
            .min(self.policy.max_gap)
    }

    /// Something went wrong: what to do about it at `now`.
    pub fn on(&mut self, input: Input, now: Instant) -> Decision {
        self.expire(now);
        let step = self.next_step(input);
        if let Some((_, at)) = self.last {
            let until = at + self.gap();
            if now < until {
                return Decision::Backoff { step, until };
            }
        }
        let (queue, cap) = match step {
            Step::PowerCycle => (&mut self.power_cycles, self.policy.max_power_cycles_per_day),
            _ => (&mut self.resets, self.policy.max_resets_per_day),
        };
        if queue.len() as u32 >= cap {
            let until = queue.front().map_or(now, |t| *t + DAY);
            return Decision::Capped { step, until };
        }
        queue.push_back(now);
        self.last = Some((step, now));
        self.climb += 1;
        Decision::Take(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(power: bool) -> Policy {
        Policy {
            power,
            max_resets_per_day: 3,
            max_power_cycles_per_day: 2,
            min_gap: Duration::from_secs(10),
            max_gap: Duration::from_secs(40),
        }
    }

    /// (seconds after start, input or success, expected decision as text)
    fn run(p: Policy, script: &[(u64, Option<Input>, &str)]) {
        let t0 = Instant::now();
        let mut l = Ladder::new(p);
        for (i, (at, input, want)) in script.iter().enumerate() {
            let now = t0 + Duration::from_secs(*at);
            let got = match input {
                None => {
                    l.success();
                    "success".to_string()
                }
                Some(input) => match l.on(*input, now) {
                    Decision::Take(s) => format!("take {}", s.as_str()),
                    Decision::Backoff { step, until } => {
                        format!("backoff {} {}", step.as_str(), (until - t0).as_secs())
                    }
                    Decision::Capped { step, until } => {
                        format!("capped {} {}", step.as_str(), (until - t0).as_secs())
                    }
                },
            };
            assert_eq!(got, *want, "step {i} at {at} s");
        }
    }

    use Input::*;

    #[test]
    fn climbs_with_growing_gaps_and_returns_to_the_bottom() {
        run(
            policy(true),
            &[
                (0, Some(RegistrationLost), "take radio_cycle"),
                (5, Some(RegistrationLost), "backoff module_reset 10"),
                (10, Some(RegistrationLost), "take module_reset"),
                // second gap: 20 s
                (20, Some(RegistrationLost), "backoff power_cycle 30"),
                (30, Some(AttachFailed), "take power_cycle"),
                // the top repeats, gap 40 s (capped by max_gap)
                (60, Some(RegistrationLost), "backoff power_cycle 70"),
                (70, Some(RegistrationLost), "take power_cycle"),
                (200, None, "success"),
                (201, Some(RegistrationLost), "take radio_cycle"),
            ],
        );
    }

    #[test]
    fn unresponsive_starts_at_the_module_reset() {
        run(
            policy(true),
            &[
                (0, Some(Unresponsive), "take module_reset"),
                (10, Some(Unresponsive), "take power_cycle"),
            ],
        );
        // Without a power switch the module reset is the top rung.
        run(
            policy(false),
            &[
                (0, Some(Unresponsive), "take module_reset"),
                (10, Some(Unresponsive), "take module_reset"),
                (30, Some(RegistrationLost), "take module_reset"),
                (1000, None, "success"),
                (1001, Some(RegistrationLost), "capped radio_cycle 86400"),
            ],
        );
    }

    #[test]
    fn caps_count_in_a_sliding_day() {
        let day = DAY.as_secs();
        run(
            policy(true),
            &[
                (0, Some(Unresponsive), "take module_reset"),
                (10, Some(Unresponsive), "take power_cycle"),
                (100, None, "success"),
                (110, Some(Unresponsive), "take module_reset"),
                (120, Some(Unresponsive), "take power_cycle"),
                (130, None, "success"),
                (140, Some(Unresponsive), "take module_reset"),
                (150, Some(Unresponsive), "capped power_cycle 86410"),
                (day + 9, Some(Unresponsive), "capped power_cycle 86410"),
                (day + 10, Some(Unresponsive), "take power_cycle"),
                (day + 20, None, "success"),
                // resets: 110 and 140 still in the window, 0 expired: room for one more
                (day + 30, Some(RegistrationLost), "take radio_cycle"),
                (
                    day + 40,
                    Some(RegistrationLost),
                    "capped module_reset 86510",
                ),
            ],
        );
    }

    #[test]
    fn permanent_rejects() {
        for (cause, permanent) in [
            (3, true),
            (6, true),
            (7, true),
            (8, true),
            (11, false),
            (15, false),
            (22, false),
        ] {
            assert_eq!(permanent_reject(cause), permanent, "{cause}");
        }
    }

    #[test]
    fn counts_expire() {
        let t0 = Instant::now();
        let mut l = Ladder::new(policy(true));
        assert_eq!(l.on(Unresponsive, t0), Decision::Take(Step::ModuleReset));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(l.on(Unresponsive, t1), Decision::Take(Step::PowerCycle));
        assert_eq!(l.counts(t1), (1, 1));
        assert_eq!(l.last_step(), Some(Step::PowerCycle));
        assert_eq!(l.counts(t0 + DAY), (0, 1));
        assert_eq!(l.counts(t1 + DAY), (0, 0));
    }
}
