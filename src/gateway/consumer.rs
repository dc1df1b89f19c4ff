//! The daemon's data path between acquisition and the uplink: the `Consumer` drains the sample
//! channel, routes each batch through the `Reporter` (poll fast, report slow: raw batches of
//! such devices become history only, their aggregates go upstream), commits everything it
//! holds in ONE store transaction (a reading is durable before anything else sees it), updates
//! the device board, wakes the forwarder, runs the interlocks of committed raises, and enforces
//! the store's size and age bounds periodically. It never waits on the uplink.
//!
//! It never stops draining the channel either, so acquisition never blocks on the store: while
//! a commit runs or the store fails (disk full, database locked or unwritable), batches are
//! received and held in memory up to `memory_readings`; beyond that the OLDEST are dropped,
//! counted, and reported as ONE `data_loss` event committed with the first group that succeeds.
//! After the channel closed (shutdown), it keeps retrying what it holds until `give_up` is
//! cancelled, then reports how many batches it could not commit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::gateway::alarms::AlarmService;
use crate::gateway::batch_log::BatchLog;
use crate::gateway::interlocks::{self, Interlocks};
use crate::gateway::status_socket::DeviceBoard;
use crate::gateway::BusPorts;
use crate::modbus::NextPolls;
use crate::model::SampleBatch;
use crate::outbox::EntryKind;
use crate::report::Reporter;
use crate::store::{ClockStamp, Store};

/// Batches committed together at most (one poll cycle of a large site).
const MAX_GROUP: usize = 256;
/// Readings held in memory while the store fails, before the oldest batches are dropped (and
/// counted). About 100 bytes a reading: 5 MB at most; 4 minutes of the 200-readings-a-second
/// benchmark site, days of a 5-minute station.
pub const MEMORY_READINGS: usize = 50_000;
/// How long the first batch after an idle moment waits for the rest of its poll cycle before
/// the group is committed (flash wear: one commit per cycle; docs/store.md "Flash wear").
const GATHER: Duration = Duration::from_millis(50);
/// How often the size and age bounds are enforced.
const LIMITS_EVERY: Duration = Duration::from_secs(60);
/// After a failed commit, the bounds are enforced at most this often (eviction may make room
/// on a full disk).
const LIMITS_AFTER_FAILURE_EVERY: Duration = Duration::from_secs(5);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What the consumer did, for the shutdown log and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConsumerReport {
    pub batches: u64,
    pub readings: u64,
    pub commits: u64,
    pub commit_errors: u64,
    /// Alarm transitions committed with the batches.
    pub alarm_transitions: u64,
    /// Batches (and their readings) dropped from memory, oldest first, because the store kept
    /// failing and memory is bounded.
    pub dropped_batches: u64,
    pub dropped_readings: u64,
    /// `data_loss` events committed for those drops.
    pub loss_events: u64,
    /// Held when `give_up` came during shutdown: read, never committed.
    pub uncommitted_batches: u64,
    pub uncommitted_readings: u64,
}

/// Called for every batch once it is committed.
pub type CommitHook = Arc<dyn Fn(&SampleBatch) + Send + Sync>;

/// The long-lived task between the sample channel and the store.
pub struct Consumer {
    rx: mpsc::Receiver<SampleBatch>,
    store: Arc<Store>,
    wake: Arc<Notify>,
    board: DeviceBoard,
    /// Called for every batch once it is committed (the watchdog's progress tick, the demo's
    /// live view).
    on_commit: Vec<CommitHook>,
    /// Events to commit with the first group (e.g. "started").
    startup_events: Vec<serde_json::Value>,
    reporter: Option<Arc<Mutex<Reporter>>>,
    /// Alarm rules evaluated on every group before its commit (same transaction).
    alarms: Option<AlarmService>,
    /// The interlock table (rebuilt by a reload) and the bus tasks' request channels.
    interlocks: Option<(Arc<Mutex<Interlocks>>, BusPorts)>,
    give_up: CancellationToken,
    batch_log: BatchLog,
    memory_readings: usize,
    /// The watchdog's board: a bus beats when its batch is received (polling is alive), and
    /// every commit attempt is bracketed (a hung commit stops the pings, a failing one not).
    progress: Option<super::progress::Progress>,
    /// When the bus tasks poll next (`gather` ends early once none will send soon).
    next_polls: Option<Arc<NextPolls>>,
}

/// Batches dropped from memory and not yet reported.
#[derive(Debug, Default, Clone)]
struct Loss {
    batches: u64,
    readings: u64,
    /// Slot range (unix ms) of the dropped batches.
    range: Option<(i64, i64)>,
    /// The store error that made the drop necessary.
    error: String,
}

impl Loss {
    fn add(&mut self, b: &SampleBatch, error: &str) {
        self.batches += 1;
        self.readings += b.samples.len() as u64;
        let t = crate::time::unix_ms(b.slot);
        self.range = Some(match self.range {
            Some((lo, hi)) => (lo.min(t), hi.max(t)),
            None => (t, t),
        });
        if self.error.is_empty() {
            self.error = error.to_string();
        }
    }

    fn merge(&mut self, o: Loss) {
        self.batches += o.batches;
        self.readings += o.readings;
        self.range = match (self.range, o.range) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
        if self.error.is_empty() {
            self.error = o.error;
        }
    }

    fn event(&self) -> serde_json::Value {
        serde_json::json!({
            "event": "data_loss",
            "reason": "store_unavailable",
            "batches": self.batches,
            "readings": self.readings,
            "from": self.range.map(|r| crate::time::rfc3339_ms(r.0)),
            "to": self.range.map(|r| crate::time::rfc3339_ms(r.1)),
            "error": self.error,
        })
    }
}

/// A batch as routed for the store: the raw batch (history only for devices that report
/// slower than they poll) and what it contributes upstream.
struct Item {
    raw: SampleBatch,
    history_only: bool,
    report: Option<SampleBatch>,
    /// A batch reported as polled that carries `publish = false` points: (published part for
    /// the outbox, local part kept as history only). `raw` still feeds the alarms whole.
    local_split: Option<(SampleBatch, SampleBatch)>,
}

impl Consumer {
    pub fn new(
        rx: mpsc::Receiver<SampleBatch>,
        store: Arc<Store>,
        wake: Arc<Notify>,
        board: DeviceBoard,
    ) -> Consumer {
        Consumer {
            rx,
            store,
            wake,
            board,
            on_commit: Vec::new(),
            startup_events: Vec::new(),
            reporter: None,
            alarms: None,
            interlocks: None,
            give_up: CancellationToken::new(),
            batch_log: BatchLog::default(),
            memory_readings: MEMORY_READINGS,
            progress: None,
            next_polls: None,
        }
    }

    /// Evaluate alarm rules on every group: the transitions and the alarm states are
    /// committed in the same transaction as the batches.
    pub fn with_alarms(mut self, alarms: AlarmService) -> Self {
        self.alarms = Some(alarms);
        self
    }

    /// Call `f` for every batch once it is committed (several hooks may be added).
    pub fn on_commit(mut self, f: CommitHook) -> Self {
        self.on_commit.push(f);
        self
    }

    /// Run the interlocks of committed raises (the table is shared so a reload rebuilds it).
    pub fn with_interlocks(mut self, table: Arc<Mutex<Interlocks>>, ports: BusPorts) -> Self {
        self.interlocks = Some((table, ports));
        self
    }

    /// Report to the watchdog's progress board (see the field).
    pub fn with_progress(mut self, p: super::progress::Progress) -> Self {
        self.progress = Some(p);
        self
    }

    /// Once the channel closed, stop retrying a failing store when `token` is cancelled.
    pub fn give_up_on(mut self, token: CancellationToken) -> Self {
        self.give_up = token;
        self
    }

    /// Readings held in memory while the store fails (default `MEMORY_READINGS`).
    /// End a cycle's gathering window as soon as every bus task has sent its cycle (see
    /// `gather`); without it the window is always waited out.
    pub fn with_next_polls(mut self, polls: Arc<NextPolls>) -> Self {
        self.next_polls = Some(polls);
        self
    }

    pub fn with_memory_bound(mut self, readings: usize) -> Self {
        self.memory_readings = readings.max(1);
        self
    }

    /// Poll fast, report slow: route batches through `reporter` (shared so a reload can
    /// replace it).
    pub fn with_reporter(mut self, reporter: Arc<Mutex<Reporter>>) -> Self {
        self.reporter = Some(reporter);
        self
    }

    fn route(&self, b: SampleBatch) -> Item {
        let Some(r) = &self.reporter else {
            return Item {
                raw: b,
                history_only: false,
                report: None,
                local_split: None,
            };
        };
        let mut r = match r.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match r.split(b) {
            Ok((raw, report)) => Item {
                raw,
                history_only: true,
                report,
                local_split: None,
            },
            // Reported as polled: no copy, no reporter state (unless points stay local).
            Err(raw) => Item {
                local_split: r.strip_local(&raw),
                raw,
                history_only: false,
                report: None,
            },
        }
    }

    pub fn with_startup_event(mut self, event: serde_json::Value) -> Self {
        self.startup_events.push(event);
        self
    }

    /// After a commit: every committed raise whose rule has an action writes its point once
    /// (cooldown per rule and device), through the bus task; the result and the read-back are
    /// committed as an `interlock` event.
    fn run_interlocks(&self) {
        let (Some(alarms), Some((table, ports))) = (&self.alarms, &self.interlocks) else {
            return;
        };
        let raised = alarms.take_raised();
        if raised.is_empty() {
            return;
        }
        let firings = table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decide(raised, Instant::now());
        for f in firings {
            tokio::spawn(interlocks::fire(
                f,
                ports.clone(),
                self.store.clone(),
                self.wake.clone(),
            ));
        }
    }

    /// Receive `b`: route it and hold it, dropping the oldest held batches beyond the bound.
    fn hold(&self, b: SampleBatch, held: &mut Held) {
        if let Some(p) = &self.progress {
            p.tick_poll(&b.bus);
        }
        let item = self.route(b);
        held.readings += item.raw.samples.len();
        held.queue.push_back(item);
        held.shed(self.memory_readings);
    }

    /// Await `fut` while still receiving into `held` (`open` turns false when the channel
    /// closes): acquisition never waits on the store.
    async fn receiving<F: std::future::Future>(
        &mut self,
        fut: F,
        held: &mut Held,
        open: &mut bool,
    ) -> F::Output {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return r,
                b = self.rx.recv(), if *open => match b {
                    Some(b) => self.hold(b, held),
                    None => *open = false,
                },
            }
        }
    }

    /// Receive the rest of a poll cycle: for `GATHER` after its first batch, or until no bus
    /// task can send anything before that window would close (`NextPolls`: each has sent its
    /// cycle and polls next later), whichever comes first. `open` turns false when the
    /// channel closes (then there is nothing more to wait for).
    async fn gather(&mut self, held: &mut Held, open: &mut bool) {
        let until_ms = crate::time::now_ms().saturating_add(GATHER.as_millis() as i64);
        let quiet = |polls: &Option<Arc<NextPolls>>| {
            polls.as_ref().is_some_and(|p| p.quiet_until(until_ms))
        };
        if quiet(&self.next_polls) {
            return;
        }
        let window = tokio::time::sleep(GATHER);
        tokio::pin!(window);
        while *open {
            tokio::select! {
                _ = &mut window => return,
                b = self.rx.recv() => match b {
                    Some(b) => {
                        self.hold(b, held);
                        if quiet(&self.next_polls) {
                            return;
                        }
                    }
                    None => *open = false,
                },
            }
        }
    }

    /// Take everything already waiting on the channel; false once it is closed.
    fn drain_waiting(&mut self, held: &mut Held) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(b) => self.hold(b, held),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Runs until the channel closes (every bus task stopped) and what it holds is committed,
    /// or, after the close, until `give_up`.
    pub async fn run(mut self) -> ConsumerReport {
        let mut report = ConsumerReport::default();
        // Routed at receipt (the reporter's windows advance exactly once per batch); a failed
        // commit keeps the routed items, so a retry never re-aggregates.
        let mut held = Held::default();
        let mut extra: Vec<(EntryKind, serde_json::Value)> = self
            .startup_events
            .drain(..)
            .map(|e| (EntryKind::Event, e))
            .collect();
        let mut last_limits = Instant::now() - LIMITS_EVERY;
        let mut retry_delay = RETRY_MIN;
        let mut failing = false;
        let mut open = true;
        loop {
            let idle = held.queue.is_empty() && extra.is_empty() && held.loss.batches == 0;
            if idle && !open {
                break;
            }
            if idle {
                match self.rx.recv().await {
                    Some(b) => self.hold(b, &mut held),
                    None => {
                        open = false;
                        continue;
                    }
                }
                // The other devices of this poll cycle are a few ms behind: one commit (one
                // fsync) for the cycle instead of one each (flash wear, docs/store.md).
                self.gather(&mut held, &mut open).await;
            }
            if open {
                open = self.drain_waiting(&mut held);
            }
            if !open && self.give_up.is_cancelled() && failing {
                break;
            }
            let n = held.queue.len().min(MAX_GROUP);
            let group: Vec<Item> = held.queue.drain(..n).collect();
            let group_readings: usize = group.iter().map(|it| it.raw.samples.len()).sum();
            held.readings -= group_readings;
            let loss = std::mem::take(&mut held.loss);
            let mut ex = extra.clone();
            if loss.batches > 0 {
                ex.push((EntryKind::Event, loss.event()));
            }
            let store = self.store.clone();
            let alarms = self.alarms.clone();
            if let Some(p) = &self.progress {
                p.commit_began();
            }
            let commit = tokio::task::spawn_blocking(move || {
                commit_group(&store, alarms.as_ref(), group, &ex)
            });
            // Keep receiving while the commit runs: a slow or stuck store never blocks polling.
            let res = self.receiving(commit, &mut held, &mut open).await;
            if let Some(p) = &self.progress {
                p.commit_ended(matches!(res, Ok((_, Ok(_)))));
            }
            match res {
                Ok((group, Ok(transitions))) => {
                    if failing {
                        tracing::warn!(
                            retries = report.commit_errors,
                            "store commits again; held batches are being committed"
                        );
                    }
                    failing = false;
                    extra.clear();
                    if loss.batches > 0 {
                        report.loss_events += 1;
                        tracing::warn!(
                            batches = loss.batches,
                            readings = loss.readings,
                            "data_loss event committed for batches dropped while the store failed"
                        );
                    }
                    report.commits += 1;
                    report.alarm_transitions += transitions as u64;
                    report.batches += group.len() as u64;
                    report.readings += group_readings as u64;
                    for it in &group {
                        let b = &it.raw;
                        self.board.observe(b);
                        self.batch_log.log(b);
                        for f in &self.on_commit {
                            f(b);
                        }
                    }
                    retry_delay = RETRY_MIN;
                    self.wake.notify_one();
                    self.run_interlocks();
                }
                Ok((group, Err(e))) => {
                    report.commit_errors += 1;
                    // A full disk: evict now (one step per call) rather than at the next tick.
                    let disk_full = matches!(e, crate::store::StoreError::Full { .. });
                    let text = e.to_string();
                    if !failing || text != held.last_error {
                        tracing::error!(
                            "store commit failed, {} batches held in memory (bound {} readings) and retried: {text}",
                            group.len() + held.queue.len(),
                            self.memory_readings
                        );
                    }
                    failing = true;
                    held.last_error = text;
                    // Back in front, in order; the memory bound applies to them too.
                    held.readings += group_readings;
                    for it in group.into_iter().rev() {
                        held.queue.push_front(it);
                    }
                    held.loss.merge(loss);
                    // The commit that was running while batches were dropped says why.
                    held.loss.error.clone_from(&held.last_error);
                    held.shed(self.memory_readings);
                    // Eviction may make room on a full disk: at once when the disk is full,
                    // otherwise at most every few seconds while commits fail.
                    if disk_full || last_limits.elapsed() >= LIMITS_AFTER_FAILURE_EVERY {
                        last_limits = Instant::now();
                        self.enforce_limits().await;
                    }
                    // Wait before retrying, still receiving (until shutdown gives up).
                    let give_up = self.give_up.clone();
                    let wait = async {
                        tokio::select! {
                            _ = tokio::time::sleep(retry_delay) => {}
                            _ = give_up.cancelled() => {}
                        }
                    };
                    self.receiving(wait, &mut held, &mut open).await;
                    retry_delay = (retry_delay * 2).min(RETRY_MAX);
                }
                Err(join) => {
                    tracing::error!("store commit task failed: {join}");
                    failing = true;
                }
            }
            if last_limits.elapsed() >= LIMITS_EVERY {
                last_limits = Instant::now();
                self.enforce_limits().await;
            }
        }
        report.dropped_batches = held.dropped_batches;
        report.dropped_readings = held.dropped_readings;
        report.uncommitted_batches = held.queue.len() as u64;
        report.uncommitted_readings = held.readings as u64;
        if report.uncommitted_batches > 0 || held.loss.batches > 0 {
            tracing::error!(
                uncommitted_batches = report.uncommitted_batches,
                uncommitted_readings = report.uncommitted_readings,
                dropped_batches = report.dropped_batches,
                last_error = %held.last_error,
                "the store could not commit {} batches ({} readings) before shutdown: they are lost",
                report.uncommitted_batches,
                report.uncommitted_readings
            );
        }
        report
    }

    async fn enforce_limits(&self) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.enforce_limits(crate::time::now())).await {
            Ok(Ok(ev)) => {
                if ev.dropped_unsent > 0 || ev.expired_history > 0 {
                    tracing::warn!(
                        dropped_unsent = ev.dropped_unsent,
                        expired_history = ev.expired_history,
                        bytes_before = ev.bytes_before,
                        bytes_after = ev.bytes_after,
                        "store bounds enforced"
                    );
                    self.wake.notify_one();
                }
            }
            Ok(Err(e)) => tracing::error!("store bounds could not be enforced: {e}"),
            Err(e) => tracing::error!("store bounds task failed: {e}"),
        }
    }
}

/// What the consumer holds between the channel and a successful commit.
#[derive(Default)]
struct Held {
    queue: VecDeque<Item>,
    readings: usize,
    loss: Loss,
    last_error: String,
    dropped_batches: u64,
    dropped_readings: u64,
}

impl Held {
    /// Drop the oldest batches (never the newest one) until at most `bound` readings are held,
    /// counting them for the `data_loss` event.
    fn shed(&mut self, bound: usize) {
        while self.readings > bound && self.queue.len() > 1 {
            let Some(old) = self.queue.pop_front() else {
                break;
            };
            self.readings -= old.raw.samples.len();
            let why = if self.last_error.is_empty() {
                "a store commit is taking longer than the memory buffer lasts"
            } else {
                self.last_error.as_str()
            };
            self.loss.add(&old.raw, why);
            self.dropped_batches += 1;
            self.dropped_readings += old.raw.samples.len() as u64;
            if self.dropped_batches == 1 || self.dropped_batches.is_power_of_two() {
                tracing::error!(
                    dropped_batches = self.dropped_batches,
                    held_readings = self.readings,
                    "store unavailable and memory buffer full: oldest batches dropped"
                );
            }
        }
    }
}

/// One transaction for a group: history, outbox entries, events and alarm transitions.
fn commit_group(
    store: &Store,
    alarms: Option<&AlarmService>,
    group: Vec<Item>,
    ex: &[(EntryKind, serde_json::Value)],
) -> (Vec<Item>, Result<usize, crate::store::StoreError>) {
    let stamp = ClockStamp::now();
    // The usual group: every batch goes to the outbox whole and feeds the alarms. The batches
    // are moved to the commit and back into their items, not copied (issue 13: copying every
    // sample of a cycle was ~1 % of the daemon's CPU on W1).
    let plain = |it: &Item| it.local_split.is_none() && !it.history_only && it.report.is_none();
    if group.iter().all(plain) {
        let outbox: Vec<SampleBatch> = group.into_iter().map(|it| it.raw).collect();
        let r = match alarms {
            Some(a) => a
                .commit_routed(&outbox, &[], &outbox, ex, &stamp)
                .map(|(_, n)| n),
            None => store.commit_routed(&[], &outbox, ex, &stamp).map(|_| 0),
        };
        let group = outbox
            .into_iter()
            .map(|raw| Item {
                raw,
                history_only: false,
                report: None,
                local_split: None,
            })
            .collect();
        return (group, r);
    }
    let r = commit_rerouted(store, alarms, &group, ex, &stamp);
    (group, r)
}

/// `commit_group` of a group with batches kept as history, reported, or split.
fn commit_rerouted(
    store: &Store,
    alarms: Option<&AlarmService>,
    group: &[Item],
    ex: &[(EntryKind, serde_json::Value)],
    stamp: &ClockStamp,
) -> Result<usize, crate::store::StoreError> {
    let mut history = Vec::new();
    let mut outbox = Vec::with_capacity(group.len());
    for it in group {
        if let Some((published, local)) = &it.local_split {
            history.push(local.clone());
            if !published.samples.is_empty() {
                outbox.push(published.clone());
            }
        } else if it.history_only {
            history.push(it.raw.clone());
        } else {
            outbox.push(it.raw.clone());
        }
        if let Some(o) = &it.report {
            outbox.push(o.clone());
        }
    }
    // The alarm rules judge every raw batch; when nothing was routed to history or reported,
    // that is exactly `outbox` (the usual case: no second copy).
    let rerouted = !history.is_empty() || group.iter().any(|it| it.report.is_some());
    let raw: Vec<SampleBatch> = if rerouted {
        group.iter().map(|it| it.raw.clone()).collect()
    } else {
        Vec::new()
    };
    let raw = if rerouted { &raw[..] } else { &outbox[..] };
    match alarms {
        Some(a) => a
            .commit_routed(raw, &history, &outbox, ex, stamp)
            .map(|(_, n)| n),
        None => store.commit_routed(&history, &outbox, ex, stamp).map(|_| 0),
    }
}
