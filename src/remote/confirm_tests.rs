//! Table-driven tests of the confirm/rollback machine: confirmation by a delivery after the
//! apply, rollback at the monotonic deadline whatever the wall clock does, resumption after a
//! restart with a clamped window, the crash-loop bound, and inputs out of sequence; plus a
//! seeded property: at most one decision per push, never before its deadline.

use super::*;

const MIN: u64 = 60_000;
const WALL: i64 = 1_796_000_000_000; // 2026-11-29

fn at(mono_ms: u64, wall_ms: i64) -> Now {
    Now { mono_ms, wall_ms }
}

fn applied(mono: u64, window: u64) -> Input {
    Input::Applied {
        at: at(mono, WALL + mono as i64),
        window_ms: window,
    }
}
fn tick(mono: u64, wall: i64) -> Input {
    Input::Tick {
        now: at(mono, wall),
    }
}
fn delivered(mono: u64) -> Input {
    Input::Delivered {
        at: at(mono, WALL + mono as i64),
    }
}
fn restarted(mono: u64, wall: i64, starts: u32, confirm_by_ms: i64, window: u64) -> Input {
    Input::Restarted {
        now: at(mono, wall),
        starts,
        confirm_by_ms,
        window_ms: window,
    }
}

fn pending(since: u64, deadline: u64, window: u64) -> State {
    State::Pending {
        since_mono_ms: since,
        deadline_mono_ms: deadline,
        window_ms: window,
    }
}

fn rollback_not_delivered(window: u64) -> Vec<Action> {
    let r = Reason::NotDelivered { window_ms: window };
    vec![
        Action::Rollback(r.clone()),
        Action::Report(State::RolledBack(r)),
    ]
}

fn confirm() -> Vec<Action> {
    vec![Action::Confirm, Action::Report(State::Confirmed)]
}

#[test]
fn table() {
    let w = 10 * MIN;
    // (name, inputs with the actions each must produce, final state)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Vec<(Input, Vec<Action>)>, State)> = vec![
        (
            "delivery after apply confirms",
            vec![
                (
                    applied(1000, w),
                    vec![Action::Report(pending(1000, 1000 + w, w))],
                ),
                (tick(2000, WALL), vec![]),
                (delivered(5000), confirm()),
                (tick(1000 + w, WALL), vec![]),
            ],
            State::Confirmed,
        ),
        (
            "a delivery from before the apply does not confirm",
            vec![
                (
                    applied(1000, w),
                    vec![Action::Report(pending(1000, 1000 + w, w))],
                ),
                (delivered(999), vec![]),
            ],
            pending(1000, 1000 + w, w),
        ),
        (
            "a delivery at the apply's instant confirms",
            vec![
                (
                    applied(1000, w),
                    vec![Action::Report(pending(1000, 1000 + w, w))],
                ),
                (delivered(1000), confirm()),
            ],
            State::Confirmed,
        ),
        (
            "no delivery: rollback exactly at the deadline, not a tick before",
            vec![
                (applied(0, w), vec![Action::Report(pending(0, w, w))]),
                (tick(w - 1, WALL), vec![]),
                (tick(w, WALL), rollback_not_delivered(w)),
                (tick(w + 1, WALL), vec![]),
                (delivered(w + 2), vec![]),
            ],
            State::RolledBack(Reason::NotDelivered { window_ms: w }),
        ),
        (
            "wall clock jumps a year forward in process: no early rollback",
            vec![
                (applied(0, w), vec![Action::Report(pending(0, w, w))]),
                (tick(1000, WALL + 365 * 24 * 60 * MIN as i64), vec![]),
                (delivered(2000), confirm()),
            ],
            State::Confirmed,
        ),
        (
            "wall clock set back to 1970 in process: rollback still on time",
            vec![
                (applied(0, w), vec![Action::Report(pending(0, w, w))]),
                (tick(w, 0), rollback_not_delivered(w)),
            ],
            State::RolledBack(Reason::NotDelivered { window_ms: w }),
        ),
        (
            "restart halfway: the rest of the window",
            vec![(
                restarted(50, WALL, 1, WALL + 5 * MIN as i64, w),
                vec![Action::Report(pending(50, 50 + 5 * MIN, w))],
            )],
            pending(50, 50 + 5 * MIN, w),
        ),
        (
            "restart with the clock far ahead (deadline long past): the grace, not at once",
            vec![
                (
                    restarted(0, WALL + 1000 * MIN as i64, 1, WALL, w),
                    vec![Action::Report(pending(0, RESUME_GRACE_MS, w))],
                ),
                (tick(RESUME_GRACE_MS - 1, WALL), vec![]),
                (tick(RESUME_GRACE_MS, WALL), rollback_not_delivered(w)),
            ],
            State::RolledBack(Reason::NotDelivered { window_ms: w }),
        ),
        (
            "restart with the clock at 1970 (never set): at most the whole window, not never",
            vec![
                (
                    restarted(0, 0, 1, WALL, w),
                    vec![Action::Report(pending(0, w, w))],
                ),
                (tick(w, 0), rollback_not_delivered(w)),
            ],
            State::RolledBack(Reason::NotDelivered { window_ms: w }),
        ),
        (
            "a window shorter than the grace is not lengthened by a restart",
            vec![(
                restarted(0, WALL + 10 * MIN as i64, 1, WALL, 30_000),
                vec![Action::Report(pending(0, 30_000, 30_000))],
            )],
            pending(0, 30_000, 30_000),
        ),
        (
            "restart then delivery confirms",
            vec![
                (
                    restarted(10, WALL, 2, WALL + 3 * MIN as i64, w),
                    vec![Action::Report(pending(10, 10 + 3 * MIN, w))],
                ),
                (delivered(20), confirm()),
            ],
            State::Confirmed,
        ),
        (
            "the third start while pending rolls back (crash loop)",
            vec![(
                restarted(0, WALL, MAX_PENDING_STARTS, WALL + 9 * MIN as i64, w),
                vec![
                    Action::Rollback(Reason::CrashLoop {
                        starts: MAX_PENDING_STARTS,
                    }),
                    Action::Report(State::RolledBack(Reason::CrashLoop {
                        starts: MAX_PENDING_STARTS,
                    })),
                ],
            )],
            State::RolledBack(Reason::CrashLoop {
                starts: MAX_PENDING_STARTS,
            }),
        ),
        (
            "a second apply while pending does not restart the window",
            vec![
                (applied(0, w), vec![Action::Report(pending(0, w, w))]),
                (applied(5 * MIN, w), vec![]),
                (tick(w, WALL), rollback_not_delivered(w)),
            ],
            State::RolledBack(Reason::NotDelivered { window_ms: w }),
        ),
        (
            "idle: deliveries and ticks do nothing",
            vec![(delivered(5), vec![]), (tick(u64::MAX, i64::MAX), vec![])],
            State::Idle,
        ),
        (
            "after a rollback a new push starts a new window",
            vec![
                (applied(0, w), vec![Action::Report(pending(0, w, w))]),
                (tick(w, WALL), rollback_not_delivered(w)),
                (
                    applied(w + 1, w),
                    vec![Action::Report(pending(w + 1, 2 * w + 1, w))],
                ),
                (delivered(w + 2), confirm()),
            ],
            State::Confirmed,
        ),
        (
            "extreme values saturate, never panic",
            vec![
                (
                    applied(u64::MAX - 1, u64::MAX),
                    vec![Action::Report(pending(u64::MAX - 1, u64::MAX, u64::MAX))],
                ),
                (tick(u64::MAX, i64::MIN), rollback_not_delivered(u64::MAX)),
            ],
            State::RolledBack(Reason::NotDelivered {
                window_ms: u64::MAX,
            }),
        ),
        (
            "a restart with extreme clocks saturates",
            vec![(
                restarted(0, i64::MIN, 1, i64::MAX, u64::MAX),
                vec![Action::Report(pending(0, i64::MAX as u64, u64::MAX))],
            )],
            pending(0, i64::MAX as u64, u64::MAX),
        ),
        (
            // Found by the property below: a second crash-loop rollback for one push.
            "regression: only a fresh machine resumes (a second Restarted is ignored)",
            vec![
                (
                    restarted(0, 0, MAX_PENDING_STARTS, 0, 0),
                    vec![
                        Action::Rollback(Reason::CrashLoop {
                            starts: MAX_PENDING_STARTS,
                        }),
                        Action::Report(State::RolledBack(Reason::CrashLoop {
                            starts: MAX_PENDING_STARTS,
                        })),
                    ],
                ),
                (restarted(0, 0, MAX_PENDING_STARTS, 0, 0), vec![]),
                (restarted(0, 0, 1, 0, w), vec![]),
            ],
            State::RolledBack(Reason::CrashLoop {
                starts: MAX_PENDING_STARTS,
            }),
        ),
    ];
    for (name, steps, end) in cases {
        let mut m = Machine::new();
        for (i, (input, want)) in steps.into_iter().enumerate() {
            let got = m.step(input.clone());
            assert_eq!(got, want, "{name}: step {i} ({input:?})");
        }
        assert_eq!(m.state(), &end, "{name}: final state");
    }
}

#[test]
fn reasons_read_as_sentences() {
    assert_eq!(
        Reason::NotDelivered { window_ms: 600_000 }.to_string(),
        "no message delivered to the broker within 600 s of the apply"
    );
    assert_eq!(
        Reason::CrashLoop { starts: 3 }.to_string(),
        "the daemon started 3 times while the push was pending (crash loop)"
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    fn input() -> impl Strategy<Value = Input> {
        let now = (0u64..100_000, -10i64..100_000).prop_map(|(m, w)| at(m, w));
        prop_oneof![
            (now.clone(), 0u64..50_000)
                .prop_map(|(at, window_ms)| Input::Applied { at, window_ms }),
            now.clone().prop_map(|at| Input::Delivered { at }),
            now.clone().prop_map(|now| Input::Tick { now }),
            (now, 1u32..5, -10i64..100_000, 0u64..50_000).prop_map(|(now, starts, c, w)| {
                Input::Restarted {
                    now,
                    starts,
                    confirm_by_ms: c,
                    window_ms: w,
                }
            }),
        ]
    }

    /// Whatever the order of inputs: each push (Applied/Restarted that entered Pending) ends
    /// in at most one decision; a confirmation only follows a delivery at or after the
    /// window's start; a not-delivered rollback only at or after the deadline.
    #[test]
    fn one_decision_per_window_never_early() {
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 400,
                failure_persistence: None,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &[10; 32]),
        );
        runner
            .run(&proptest::collection::vec(input(), 0..40), |inputs| {
                let mut m = Machine::new();
                let mut decided = false;
                for input in inputs {
                    let before = m.state().clone();
                    let actions = m.step(input.clone());
                    if matches!(m.state(), State::Pending { .. })
                        && !matches!(before, State::Pending { .. })
                    {
                        decided = false;
                    }
                    let decisions = actions
                        .iter()
                        .filter(|a| matches!(a, Action::Confirm | Action::Rollback(_)))
                        .count();
                    prop_assert!(decisions <= 1);
                    if decisions == 1 {
                        prop_assert!(!decided, "two decisions for one window");
                        decided = true;
                    }
                    match (&before, &input, actions.first()) {
                        (
                            State::Pending { since_mono_ms, .. },
                            Input::Delivered { at },
                            Some(Action::Confirm),
                        ) => prop_assert!(at.mono_ms >= *since_mono_ms),
                        (
                            State::Pending {
                                deadline_mono_ms, ..
                            },
                            Input::Tick { now },
                            Some(Action::Rollback(_)),
                        ) => prop_assert!(now.mono_ms >= *deadline_mono_ms),
                        (_, _, Some(Action::Confirm)) => {
                            prop_assert!(false, "confirm without a delivery while pending")
                        }
                        _ => {}
                    }
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
