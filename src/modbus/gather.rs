//! Reply gathering: when one pass of the daemon's runtime sends requests on two or more buses
//! at once (the poll instant of many Modbus TCP devices), the runtime thread, about to park,
//! sleeps for a short window once so the replies that arrive meanwhile are handled in one
//! wake-up instead of one each, the way a network card moderates its interrupts. It owns the
//! process-wide count of transactions in flight and the window, which adapts from burst to
//! burst: longer after a burst whose replies were not all in when the window ended, shorter
//! after one whose replies all were, always between `FLOOR` and `CAP`. A transaction is never
//! delayed by more than `CAP`, nothing is dropped, and timeouts still run on the runtime's
//! timers. The controller (`Window`) is pure; `on_park` is the runtime's park hook
//! (installed by `main` for the daemon only), `Transaction` the link's guard. It never touches a
//! transport itself.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::Duration;

/// The longest the runtime waits for a burst's replies, in microseconds. A reply later than this
/// wakes the runtime on its own, as without gathering.
pub const CAP_US: u32 = 3_000;
/// The shortest window, in microseconds.
pub const FLOOR_US: u32 = 100;
/// The window of the first burst, in microseconds.
pub const START_US: u32 = 1_000;

/// The gathering window: grows by a quarter (plus 50 µs) after a burst with replies still
/// missing when it ended, shrinks by a thirty-second after a burst whose replies were all in,
/// so it settles just past the burst's last reply and misses a reply about one burst in eight
/// (each miss costs the wake-up gathering saves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    us: u32,
}

impl Default for Window {
    fn default() -> Self {
        Window { us: START_US }
    }
}

impl Window {
    pub fn micros(self) -> u32 {
        self.us
    }

    /// The window after a burst that ended with `missing` replies still in flight.
    pub fn after(self, missing: u32) -> Window {
        let us = if missing > 0 {
            self.us.saturating_add(self.us / 4 + 50).min(CAP_US)
        } else {
            self.us.saturating_sub(self.us / 32).max(FLOOR_US)
        };
        Window { us }
    }
}

/// Transactions in flight on every bus of the process.
static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);
/// Transactions started since the runtime last parked.
static STARTED: AtomicU32 = AtomicU32::new(0);
/// The current window, in microseconds.
static WINDOW_US: AtomicU32 = AtomicU32::new(START_US);
/// Set after a gathering sleep, until the next park judges the burst.
static JUDGING: AtomicBool = AtomicBool::new(false);

/// The current window, in microseconds (status, tests).
pub fn window_micros() -> u32 {
    WINDOW_US.load(Relaxed)
}

/// One transaction in flight, from its request to its reply, timeout or failure: a guard, so a
/// cancelled transaction (shutdown) still leaves the count.
pub struct Transaction(());

impl Transaction {
    pub fn start() -> Transaction {
        IN_FLIGHT.fetch_add(1, Relaxed);
        STARTED.fetch_add(1, Relaxed);
        Transaction(())
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Relaxed);
    }
}

/// What the park hook does, given the counts it reads; pure, for the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Park {
    /// Nothing to gather: park at once.
    Now,
    /// A burst went out in the last pass: sleep this long first.
    Gather(Duration),
}

/// The decision at a park: `started` transactions began in the pass that ends here,
/// `in_flight` are outstanding, and `judging` says the pass followed a gathering sleep. Returns
/// the decision and the window for the next burst.
pub fn decide(window: Window, started: u32, in_flight: u32, judging: bool) -> (Park, Window) {
    // The pass after a sleep: replies of the burst still missing (requests of this pass,
    // a device's next block, are not the burst's) make the window longer, none shorter.
    let window = if judging {
        window.after(in_flight.saturating_sub(started))
    } else {
        window
    };
    if started >= 2 && in_flight >= 2 {
        (
            Park::Gather(Duration::from_micros(u64::from(window.micros()))),
            window,
        )
    } else {
        (Park::Now, window)
    }
}

/// The runtime's park hook: sleeps one window after a pass that sent a burst of requests.
/// Runs on the runtime thread only, so the relaxed loads and stores see a consistent state.
pub fn on_park() {
    let started = STARTED.swap(0, Relaxed);
    let judging = JUDGING.swap(false, Relaxed);
    if started == 0 && !judging {
        return;
    }
    let window = Window {
        us: WINDOW_US.load(Relaxed),
    };
    let (park, next) = decide(window, started, IN_FLIGHT.load(Relaxed), judging);
    WINDOW_US.store(next.micros(), Relaxed);
    if let Park::Gather(d) = park {
        std::thread::sleep(d);
        JUDGING.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Park {
        Park::Gather(Duration::from_micros(n))
    }

    #[test]
    fn decisions_at_a_park() {
        let w = Window::default();
        // (started, in flight, judging) -> park, next window
        let table: &[(u32, u32, bool, Park, u32)] = &[
            // one transaction at a time (a serial bus, a lone device): no gathering
            (1, 1, false, Park::Now, 1_000),
            (0, 0, false, Park::Now, 1_000),
            // twenty requests sent in one pass: gather with the current window
            (20, 20, false, us(1_000), 1_000),
            // a burst whose replies all came back before the pass parked: nothing to wait for
            (20, 0, false, Park::Now, 1_000),
            // after a sleep, every reply in: shorter, and nothing new went out
            (0, 0, true, Park::Now, 969),
            // after a sleep, 3 replies still missing: longer
            (0, 3, true, Park::Now, 1_300),
            // after a sleep, every reply in and 20 next-block requests sent: a new burst,
            // gathered with the shortened window
            (20, 20, true, us(969), 969),
            // after a sleep, 2 missing besides the 20 new: longer, and gather
            (20, 22, true, us(1_300), 1_300),
        ];
        for &(started, in_flight, judging, park, next) in table {
            let (p, n) = decide(w, started, in_flight, judging);
            assert_eq!(
                (p, n.micros()),
                (park, next),
                "started {started}, in flight {in_flight}, judging {judging}"
            );
        }
    }

    #[test]
    fn the_window_stays_between_floor_and_cap() {
        let mut w = Window::default();
        for _ in 0..100 {
            w = w.after(1);
        }
        assert_eq!(w.micros(), CAP_US);
        for _ in 0..400 {
            w = w.after(0);
        }
        assert_eq!(w.micros(), FLOOR_US);
        // from the floor it can grow again
        assert!(w.after(5).micros() > FLOOR_US);
    }

    #[test]
    fn the_window_settles_near_the_last_reply() {
        // Replies of every burst are all in 1.4 ms after the requests: the window ends up
        // oscillating just around it, never far above.
        let last_reply_us = 1_400;
        let mut w = Window::default();
        let mut seen = Vec::new();
        let mut misses = 0;
        for _ in 0..200 {
            let missing = u32::from(w.micros() < last_reply_us);
            misses += missing;
            w = w.after(missing);
            seen.push(w.micros());
        }
        let tail = &seen[100..];
        assert!(
            tail.iter().all(|&u| (1_300..=1_850).contains(&u)),
            "{tail:?}"
        );
        // Mostly long enough: a miss in fewer than one burst in five.
        assert!(misses < 40, "{misses} misses in 200 bursts");
    }
}
