//! The confirm/rollback state machine of a config push ("commit confirmed"), a pure core: no
//! I/O, no clock. After a push is applied the gateway must deliver a message (a PUBACK for a
//! publish requested after the apply) within the window, or it rolls back. In a process the
//! deadline is monotonic, so a wall-clock jump (NTP setting the clock right after boot) never
//! moves it. Across a restart only the persisted wall-clock `confirm_by_ms` is known: what is
//! left of it is clamped to at least `min(RESUME_GRACE_MS, window)` (a clock set backwards or
//! far forwards can neither roll back at once nor never) and at most the whole window, and
//! the number of starts while pending is bounded: the `MAX_PENDING_STARTS`th start rolls back
//! (a config that crash-loops the daemon is undone without ever reaching the broker).
//! `remote::install` carries the actions out. Details: docs/remote-config.md.

use std::fmt;

/// The start that reaches this count while a push is pending rolls it back.
pub const MAX_PENDING_STARTS: u32 = 3;
/// After a restart a pending push gets at least this long (or its whole window if shorter).
pub const RESUME_GRACE_MS: u64 = 120_000;

/// A moment on both clocks: monotonic ms (this process) and wall-clock unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono_ms: u64,
    pub wall_ms: i64,
}

/// What the machine is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The push was installed and applied at `at`; it must deliver within `window_ms`.
    Applied { at: Now, window_ms: u64 },
    /// A PUBACK arrived for a publish requested at or after `at` (monotonic).
    Delivered { at: Now },
    /// Time passes.
    Tick { now: Now },
    /// The process started while a push was pending (`remote::install::Recovery::Pending`):
    /// `starts` counts this start, `confirm_by_ms` is the persisted wall-clock deadline.
    /// Only a fresh (idle) machine takes it; anywhere else it is ignored.
    Restarted {
        now: Now,
        starts: u32,
        confirm_by_ms: i64,
        window_ms: u64,
    },
}

/// Why a push was rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Nothing was delivered within the window.
    NotDelivered { window_ms: u64 },
    /// The daemon started this many times while the push was pending.
    CrashLoop { starts: u32 },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotDelivered { window_ms } => write!(
                f,
                "no message delivered to the broker within {} s of the apply",
                // Rounded: a window restored after a restart is the persisted deadline minus
                // the recorded apply time, a few ms off the configured one.
                (window_ms + 500) / 1000
            ),
            Reason::CrashLoop { starts } => write!(
                f,
                "the daemon started {starts} times while the push was pending (crash loop)"
            ),
        }
    }
}

/// Where a push stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// No push in flight.
    Idle,
    /// Applied, awaiting a delivery; rolled back at `deadline_mono_ms`.
    Pending {
        since_mono_ms: u64,
        deadline_mono_ms: u64,
        window_ms: u64,
    },
    Confirmed,
    RolledBack(Reason),
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `Installer::confirm`, then report `applied`.
    Confirm,
    /// `Installer::rollback(reason)`, apply the previous config, report `rolled_back`.
    Rollback(Reason),
    /// The state changed (for `config/state` and the log).
    Report(State),
}

/// The machine (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    state: State,
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

impl Machine {
    pub fn new() -> Machine {
        Machine { state: State::Idle }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Feed one input; the actions to carry out, in order.
    pub fn step(&mut self, input: Input) -> Vec<Action> {
        let pending = matches!(self.state, State::Pending { .. });
        match input {
            Input::Applied { at, window_ms } => {
                if pending {
                    // A second push is refused while one is pending (the installer says so);
                    // it never restarts the window.
                    return Vec::new();
                }
                self.enter_pending(at.mono_ms, window_ms, window_ms)
            }
            Input::Restarted {
                now,
                starts,
                confirm_by_ms,
                window_ms,
            } => {
                if self.state != State::Idle {
                    // Only a fresh process resumes a pending push, once.
                    return Vec::new();
                }
                if starts >= MAX_PENDING_STARTS {
                    return self.roll_back(Reason::CrashLoop { starts });
                }
                let left = confirm_by_ms.saturating_sub(now.wall_ms).max(0) as u64;
                let floor = RESUME_GRACE_MS.min(window_ms);
                let left = left.clamp(floor, window_ms.max(floor));
                self.enter_pending(now.mono_ms, left, window_ms)
            }
            Input::Delivered { at } => match self.state {
                State::Pending { since_mono_ms, .. } if at.mono_ms >= since_mono_ms => {
                    self.state = State::Confirmed;
                    vec![Action::Confirm, Action::Report(State::Confirmed)]
                }
                _ => Vec::new(),
            },
            Input::Tick { now } => match self.state {
                State::Pending {
                    deadline_mono_ms,
                    window_ms,
                    ..
                } if now.mono_ms >= deadline_mono_ms => {
                    self.roll_back(Reason::NotDelivered { window_ms })
                }
                _ => Vec::new(),
            },
        }
    }

    fn enter_pending(&mut self, since: u64, left_ms: u64, window_ms: u64) -> Vec<Action> {
        self.state = State::Pending {
            since_mono_ms: since,
            deadline_mono_ms: since.saturating_add(left_ms),
            window_ms,
        };
        vec![Action::Report(self.state.clone())]
    }

    fn roll_back(&mut self, reason: Reason) -> Vec<Action> {
        self.state = State::RolledBack(reason.clone());
        vec![Action::Rollback(reason), Action::Report(self.state.clone())]
    }

    /// The monotonic deadline while pending (for the caller's timer).
    pub fn deadline_mono_ms(&self) -> Option<u64> {
        match self.state {
            State::Pending {
                deadline_mono_ms, ..
            } => Some(deadline_mono_ms),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "confirm_tests.rs"]
mod tests;
