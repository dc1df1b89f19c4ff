//! When acquisition will next send batches: every bus task publishes the wall-clock time of its
//! next poll cycle in a `PollSlot` (a time in the past while it is polling), and the consumer
//! reads the earliest over all live bus tasks (`NextPolls::earliest_ms`) to end a commit's
//! gathering window as soon as no bus can send anything before the window would close: one
//! commit per poll cycle without waiting the window out (issue 13: a timer and its wake-ups
//! fewer per cycle). Plain atomics behind a short mutex; no I/O, no clock of its own. A bus
//! task that is gone drops its slot and no longer counts; a stale or missing value only
//! means the consumer waits out its window, as it did before this existed.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

/// The slots of every running bus task, across config reloads (a new generation of bus tasks
/// registers new slots; the old ones die with their tasks).
#[derive(Debug, Default)]
pub struct NextPolls {
    slots: Mutex<Vec<Weak<AtomicI64>>>,
}

/// One bus task's entry: the unix milliseconds of its next poll cycle.
#[derive(Debug)]
pub struct PollSlot(Arc<AtomicI64>);

/// Before a bus task first says when it polls next: due now (it is polling or about to).
const DUE_NOW: i64 = i64::MIN;
/// A bus task with no device to poll (it only serves requests): never sends a batch.
const NEVER: i64 = i64::MAX;

impl NextPolls {
    pub fn new() -> Arc<NextPolls> {
        Arc::new(NextPolls::default())
    }

    /// A new slot, due now until its bus task says otherwise.
    pub fn slot(&self) -> PollSlot {
        let a = Arc::new(AtomicI64::new(DUE_NOW));
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|w| w.strong_count() > 0);
        slots.push(Arc::downgrade(&a));
        PollSlot(a)
    }

    /// The earliest next poll of every live bus task, in unix milliseconds (`i64::MIN` when
    /// one is polling now; `None` when no bus task runs).
    pub fn earliest_ms(&self) -> Option<i64> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .filter_map(|w| w.upgrade())
            .map(|a| a.load(Ordering::Acquire))
            .min()
    }

    /// Whether no bus task can send a batch before `until_ms` (unix milliseconds): all of
    /// them have finished their cycle and the next one starts later.
    pub fn quiet_until(&self, until_ms: i64) -> bool {
        self.earliest_ms().is_none_or(|t| t > until_ms)
    }
}

impl PollSlot {
    /// The next poll cycle starts at `next` (`None`: never, no device to poll).
    pub fn set(&self, next: Option<SystemTime>) {
        let ms = match next {
            Some(t) => crate::time::unix_ms(t),
            None => NEVER,
        };
        self.0.store(ms, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn earliest_over_live_slots() {
        let polls = NextPolls::new();
        assert_eq!(polls.earliest_ms(), None);
        assert!(polls.quiet_until(i64::MAX - 1));

        let a = polls.slot();
        let b = polls.slot();
        // A new slot is due now: never quiet.
        assert_eq!(polls.earliest_ms(), Some(i64::MIN));
        assert!(!polls.quiet_until(0));

        a.set(Some(at(2_000)));
        b.set(Some(at(1_000)));
        assert_eq!(polls.earliest_ms(), Some(1_000));
        assert!(polls.quiet_until(999));
        assert!(!polls.quiet_until(1_000));

        // A bus task that is gone no longer counts.
        drop(b);
        assert_eq!(polls.earliest_ms(), Some(2_000));
        // One without devices never sends.
        a.set(None);
        assert!(polls.quiet_until(i64::MAX - 1));
        drop(a);
        assert_eq!(polls.earliest_ms(), None);
        // Dead slots are pruned when new ones register.
        let _c = polls.slot();
        assert_eq!(polls.slots.lock().unwrap().len(), 1);
    }
}
