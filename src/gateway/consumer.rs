//! The daemon's data path between acquisition and the uplink: the `Consumer` drains the sample
//! channel, routes each batch through the `Reporter` (poll fast, report slow: raw batches of
//! such devices become history only, their aggregates go upstream), commits everything it
//! holds in ONE store transaction (a reading is durable before anything else sees it), updates
//! the device board, wakes the forwarder, and enforces the store's size and age bounds
//! periodically. It never waits on the uplink; a failing store
//! keeps the uncommitted batches in memory (bounded) and retries, counting what it must drop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, Notify};

use crate::gateway::alarms::AlarmService;
use crate::model::SampleBatch;
use std::collections::HashMap;

use crate::gateway::status_socket::DeviceBoard;
use crate::modbus::bus::WriteRequest;
use crate::model::Value;
use crate::outbox::EntryKind;
use crate::report::Reporter;
use crate::store::{ClockStamp, Store};

/// Batches committed together at most (one poll cycle of a large site).
const MAX_GROUP: usize = 256;
/// Batches kept in memory while the store fails, before the oldest are dropped (and counted).
const MAX_BACKLOG: usize = 20_000;
/// How often the size and age bounds are enforced.
const LIMITS_EVERY: Duration = Duration::from_secs(60);

/// What the consumer did, for the shutdown log and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConsumerReport {
    pub batches: u64,
    pub readings: u64,
    pub commits: u64,
    pub commit_errors: u64,
    /// Alarm transitions committed with the batches.
    pub alarm_transitions: u64,
    /// Batches dropped because the store kept failing and memory is bounded.
    pub dropped_batches: u64,
}

/// Called for every batch once it is committed.
pub type CommitHook = Arc<dyn Fn(&SampleBatch) + Send + Sync>;

/// The long-lived task between the sample channel and the store.
pub struct Consumer {
    rx: mpsc::Receiver<SampleBatch>,
    store: Arc<Store>,
    wake: Arc<Notify>,
    board: DeviceBoard,
    /// Called for every batch once it is committed (the service watchdog's progress tick).
    on_commit: Option<CommitHook>,
    /// Events to commit with the first group (e.g. "started").
    startup_events: Vec<serde_json::Value>,
    reporter: Option<Arc<Mutex<Reporter>>>,
    /// Alarm rules evaluated on every group before its commit (same transaction).
    alarms: Option<AlarmService>,
    interlocks: Option<Interlocks>,
}

/// Interlocks (opt-in alarm actions): what to write on which raise, through which bus.
pub struct Interlocks {
    /// rule id -> action
    pub actions: HashMap<String, crate::alarm::rule::Action>,
    /// device -> bus name
    pub device_bus: HashMap<String, String>,
    /// bus name -> the bus task's write channel (replaced on reload)
    pub writers: Arc<Mutex<HashMap<String, mpsc::Sender<WriteRequest>>>>,
    /// (rule, device) -> when it last acted (cooldown)
    last: HashMap<(String, String), Instant>,
}

impl Interlocks {
    pub fn new(
        config: &crate::config::Config,
        writers: Arc<Mutex<HashMap<String, mpsc::Sender<WriteRequest>>>>,
    ) -> Interlocks {
        Interlocks {
            actions: config
                .alarms
                .iter()
                .filter_map(|r| Some((r.id.clone(), r.action.clone()?)))
                .collect(),
            device_bus: config
                .devices
                .iter()
                .map(|d| (d.name.clone(), d.bus.clone()))
                .collect(),
            writers,
            last: HashMap::new(),
        }
    }
}

/// How long an interlock write (with its read-back) may take before it is reported failed.
const INTERLOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// A batch as routed for the store: the raw batch (history only for devices that report
/// slower than they poll) and what it contributes upstream.
struct Item {
    raw: SampleBatch,
    history_only: bool,
    report: Option<SampleBatch>,
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
            on_commit: None,
            startup_events: Vec::new(),
            reporter: None,
            alarms: None,
            interlocks: None,
        }
    }

    /// Evaluate alarm rules on every group: the transitions and the alarm states are
    /// committed in the same transaction as the batches.
    pub fn with_alarms(mut self, alarms: AlarmService) -> Self {
        self.alarms = Some(alarms);
        self
    }

    pub fn on_commit(mut self, f: CommitHook) -> Self {
        self.on_commit = Some(f);
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
            },
            // Reported as polled: no copy, no reporter state.
            Err(raw) => Item {
                raw,
                history_only: false,
                report: None,
            },
        }
    }

    /// Run alarm actions (interlocks) after the raise that triggers them is committed.
    pub fn with_interlocks(mut self, i: Interlocks) -> Self {
        self.interlocks = Some(i);
        self
    }

    /// After a commit: every committed raise whose rule has an action writes its point once
    /// (cooldown per rule and device), through the bus task; the result and the read-back are
    /// committed as an `interlock` event.
    fn run_interlocks(&mut self) {
        let (Some(alarms), Some(il)) = (&self.alarms, &mut self.interlocks) else {
            return;
        };
        for (rule, device) in alarms.take_raised() {
            let Some(action) = il.actions.get(&rule).cloned() else {
                continue;
            };
            let key = (rule.clone(), device.clone());
            if let Some(t) = il.last.get(&key) {
                if t.elapsed() < action.cooldown {
                    tracing::warn!(rule, device, "interlock in cooldown: not written again");
                    continue;
                }
            }
            il.last.insert(key, Instant::now());
            let writer = il.device_bus.get(&device).and_then(|b| {
                il.writers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(b)
                    .cloned()
            });
            let (store, wake) = (self.store.clone(), self.wake.clone());
            tokio::spawn(async move {
                let value = Value::Float(action.value);
                let result: Result<Value, String> = match writer {
                    None => Err(format!("no bus task for device `{device}`")),
                    Some(w) => {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        let req = WriteRequest {
                            device: device.clone(),
                            point: action.point.clone(),
                            value: value.clone(),
                            reply: tx,
                        };
                        if w.send(req).await.is_err() {
                            Err("the bus task stopped".into())
                        } else {
                            match tokio::time::timeout(INTERLOCK_TIMEOUT, rx).await {
                                Ok(Ok(r)) => r,
                                Ok(Err(_)) => Err("the bus task dropped the request".into()),
                                Err(_) => Err(format!("no result within {INTERLOCK_TIMEOUT:?}")),
                            }
                        }
                    }
                };
                let ev = match &result {
                    Ok(rb) => serde_json::json!({
                        "event": "interlock", "alarm": rule, "dev": device, "point": action.point,
                        "value": action.value, "result": "ok", "readback": rb,
                    }),
                    Err(e) => serde_json::json!({
                        "event": "interlock", "alarm": rule, "dev": device, "point": action.point,
                        "value": action.value, "result": "failed", "error": e,
                    }),
                };
                tracing::warn!(interlock = %ev, "interlock");
                let r = tokio::task::spawn_blocking(move || {
                    store.commit(&[], &[(EntryKind::Event, ev)], &ClockStamp::now())
                })
                .await;
                match r {
                    Ok(Ok(_)) => wake.notify_one(),
                    Ok(Err(e)) => tracing::error!("cannot record the interlock event: {e}"),
                    Err(e) => tracing::error!("interlock event task failed: {e}"),
                }
            });
        }
    }

    pub fn with_startup_event(mut self, event: serde_json::Value) -> Self {
        self.startup_events.push(event);
        self
    }

    /// Runs until the channel closes (every bus task stopped), committing what is left.
    pub async fn run(mut self) -> ConsumerReport {
        let mut report = ConsumerReport::default();
        // Routed at receipt (the reporter's windows advance exactly once per batch); a failed
        // commit keeps the routed items, so a retry never re-aggregates.
        let mut queue: Vec<Item> = Vec::new();
        let mut extra: Vec<(EntryKind, serde_json::Value)> = self
            .startup_events
            .drain(..)
            .map(|e| (EntryKind::Event, e))
            .collect();
        let mut last_limits = Instant::now() - LIMITS_EVERY;
        let mut retry_delay = Duration::from_millis(200);
        let mut open = true;
        while open || !queue.is_empty() || !extra.is_empty() {
            if queue.is_empty() && extra.is_empty() {
                match self.rx.recv().await {
                    Some(b) => queue.push(self.route(b)),
                    None => {
                        open = false;
                        continue;
                    }
                }
            }
            // Take everything already waiting: one transaction for all of it.
            while queue.len() < MAX_GROUP {
                match self.rx.try_recv() {
                    Ok(b) => queue.push(self.route(b)),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let group: Vec<Item> = queue.drain(..queue.len().min(MAX_GROUP)).collect();
            let store = self.store.clone();
            let alarms = self.alarms.clone();
            let ex = std::mem::take(&mut extra);
            let res = tokio::task::spawn_blocking(move || {
                let mut history = Vec::new();
                let mut outbox = Vec::with_capacity(group.len());
                for it in &group {
                    if it.history_only {
                        history.push(it.raw.clone());
                    } else {
                        outbox.push(it.raw.clone());
                    }
                    if let Some(o) = &it.report {
                        outbox.push(o.clone());
                    }
                }
                // The alarm rules judge every raw batch; when nothing was routed to history or
                // reported, that is exactly `outbox` (the usual case: no second copy).
                let rerouted = !history.is_empty() || group.iter().any(|it| it.report.is_some());
                let raw: Vec<SampleBatch> = if rerouted {
                    group.iter().map(|it| it.raw.clone()).collect()
                } else {
                    Vec::new()
                };
                let raw = if rerouted { &raw[..] } else { &outbox[..] };
                let stamp = ClockStamp::now();
                let r = match &alarms {
                    Some(a) => a.commit_routed(raw, &history, &outbox, &ex, &stamp),
                    None => store
                        .commit_routed(&history, &outbox, &ex, &stamp)
                        .map(|i| (i, 0)),
                };
                (group, ex, r)
            })
            .await;
            match res {
                Ok((group, _, Ok((_info, transitions)))) => {
                    report.commits += 1;
                    report.alarm_transitions += transitions as u64;
                    report.batches += group.len() as u64;
                    report.readings += group
                        .iter()
                        .map(|it| it.raw.samples.len() as u64)
                        .sum::<u64>();
                    for it in &group {
                        let b = &it.raw;
                        self.board.observe(b);
                        log_batch(b);
                        if let Some(f) = &self.on_commit {
                            f(b);
                        }
                    }
                    retry_delay = Duration::from_millis(200);
                    self.wake.notify_one();
                    self.run_interlocks();
                }
                Ok((group, ex, Err(e))) => {
                    report.commit_errors += 1;
                    tracing::error!(
                        "store commit failed, {} batches kept in memory and retried: {e}",
                        group.len()
                    );
                    // Put them back in front, keep memory bounded (oldest dropped, counted).
                    let mut back = group;
                    back.append(&mut queue);
                    queue = back;
                    extra = ex;
                    if queue.len() > MAX_BACKLOG {
                        let n = queue.len() - MAX_BACKLOG;
                        queue.drain(..n);
                        report.dropped_batches += n as u64;
                        extra.push((
                            EntryKind::Event,
                            serde_json::json!({
                                "event": "data_loss",
                                "reason": "store unavailable, memory buffer full",
                                "batches": n,
                            }),
                        ));
                        tracing::error!(
                            "store unavailable: dropped {n} oldest batches from memory"
                        );
                    }
                    tokio::time::sleep(retry_delay).await;
                    retry_delay = (retry_delay * 2).min(Duration::from_secs(10));
                }
                Err(join) => {
                    tracing::error!("store commit task failed: {join}");
                }
            }
            if last_limits.elapsed() >= LIMITS_EVERY {
                last_limits = Instant::now();
                let store = self.store.clone();
                match tokio::task::spawn_blocking(move || store.enforce_limits(SystemTime::now()))
                    .await
                {
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
        report
    }
}

fn log_batch(b: &SampleBatch) {
    let good = b.samples.iter().filter(|s| s.quality.is_good()).count();
    let bad = b.samples.len() - good;
    let first_bad = b.samples.iter().find_map(|s| match &s.quality {
        crate::model::Quality::Bad(r) => Some(format!("{}: {r}", s.point)),
        crate::model::Quality::Good => None,
    });
    tracing::info!(
        device = %b.device,
        bus = %b.bus,
        good,
        bad,
        online = b.online,
        first_bad = first_bad.as_deref().unwrap_or(""),
        "batch"
    );
}
