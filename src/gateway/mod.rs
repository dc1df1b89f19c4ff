//! The gateway runtime: the one composition of the daemon. `Gateway::start` builds it from a
//! validated `Config` (store, alarm service, reporter, interlocks, bus tasks, consumer,
//! forwarder, status socket, watchdog); `Gateway::apply` is the only way to change the running
//! configuration (SIGHUP after a local edit now, MQTT pushes later); `Gateway::shutdown` stops
//! it in order (pollers, then the consumer commits what was read, then the forwarder gets a
//! moment to deliver it). `gasdtu run` and `gasdtu demo` are thin callers of this module.
//!
//! Sub-modules: `consumer` (sample channel -> store), `alarms` (the alarm engine bound to the
//! store), `interlocks` (alarm actions through the bus tasks), `systemd` (notify, watchdog,
//! signals, STATUS line), `status_socket` (device board and the unix socket of `gasdtu
//! status`), `bus_proxy` (the commissioning verbs' Modbus requests through the bus task that
//! owns the bus), `remote` (commands over MQTT when `[remote]` is configured), `modem` (the AT
//! engine and modem supervisor when `[modem]` is configured; `Gateway::modem` is their status). Never does Modbus or MQTT itself and never touches SQLite on an async worker
//! thread: every store call is a blocking task or an O(1) counter read.

pub mod alarms;
#[cfg(test)]
mod alarms_tests;
mod batch_log;
pub mod bus_proxy;
pub mod consumer;
pub mod interlocks;
pub mod modem;
pub mod modem_proxy;
pub mod progress;
pub mod push;
pub mod read_window;
pub mod remote;
pub mod status_socket;
pub mod systemd;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::modbus::{Acquisition, NextPolls};
use crate::model::SampleBatch;
use crate::outbox::EntryKind;
use crate::report::Reporter;
use crate::store::{ClockStamp, Store, StoreError};
use crate::uplink::{Forwarder, LinkState, LinkStatus};
use alarms::AlarmService;
use bus_proxy::BusProxy;
use consumer::{CommitHook, Consumer, ConsumerReport};
use interlocks::Interlocks;
use progress::Progress;
use status_socket::{DeviceBoard, StatusServer};
use systemd::{status_line, LinkFacts, Notifier, StatusFacts, Watchdog};

/// How long a clean shutdown waits for a connected uplink to drain what is pending.
const FLUSH_GRACE: Duration = Duration::from_secs(5);
/// How long a bus task may take to finish its transaction when asked to stop.
const BUS_STOP_GRACE: Duration = Duration::from_secs(10);
/// After the pollers stopped, how long the consumer keeps retrying a failing store before it
/// gives up and reports what it could not commit (systemd's TimeoutStopSec is 30 s).
pub const COMMIT_GIVE_UP: Duration = Duration::from_secs(8);
/// Requests the forwarder may hand to the remote service before it leaves them unacknowledged
/// (and renews the session to get them again). Above mosquitto's default in-flight window (20
/// QoS 1 messages towards a client), so a platform replaying a queue of offline commands does
/// not force renewals (benches/remote_ops.rs: 100 queued commands cost 6 renewals at 16).
/// Memory: commands are at most 8 KiB each (256 KiB for a full inbox); a flood of pushes
/// (256 KiB each) could hold 8 MiB, which only a client allowed to publish on `config/set` can
/// cause.
const REMOTE_INBOX: usize = 32;

/// Bus name -> the running bus task's request entrance, shared by the interlocks and the bus
/// proxy and replaced by every apply (a reload restarts the bus tasks).
pub type BusPorts = Arc<Mutex<HashMap<String, crate::modbus::BusPort>>>;

/// How the runtime is embedded: what differs between `run`, `demo` and tests.
pub struct Options {
    /// Where the config came from (shown by `gasdtu status`).
    pub config_path: Option<PathBuf>,
    /// Poll every device once right away instead of waiting for its first aligned slot.
    pub poll_now: bool,
    /// The unix socket of `gasdtu status` (None: no socket).
    pub socket: Option<PathBuf>,
    /// The service manager (a no-op outside systemd).
    pub notifier: Notifier,
    /// Called for every committed batch (the demo's live view).
    pub observers: Vec<CommitHook>,
    /// Readings held in memory while the store fails.
    pub memory_readings: usize,
    /// Where validated config pushes go (the run loop's `push::PushOwner`); None: pushes are
    /// refused (the demo).
    pub pushes: Option<mpsc::Sender<push::PushJob>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            config_path: None,
            poll_now: false,
            socket: None,
            notifier: Notifier::from_env(),
            observers: Vec::new(),
            memory_readings: consumer::MEMORY_READINGS,
            pushes: None,
        }
    }
}

/// Why the runtime could not start (nothing is left running).
#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot open the store: {0}")]
    Store(#[source] StoreError),
    #[error("cannot load the alarm state: {0}")]
    Alarms(#[source] StoreError),
    #[error("{0} task failed: {1}")]
    Task(&'static str, String),
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The new config equals the running one: nothing was touched.
    Unchanged,
    /// The new config runs.
    Changed {
        devices: usize,
        buses: usize,
        /// Settings that take effect only at the next restart.
        restart_needed: Vec<String>,
    },
}

/// What `shutdown` saw.
#[derive(Debug, Clone, Default)]
pub struct ShutdownReport {
    pub consumer: ConsumerReport,
    /// Readings still waiting in the outbox when the forwarder stopped.
    pub pending_readings: u64,
}

/// Numbers the status socket and the STATUS= line read while the runtime changes underneath.
#[derive(Default)]
struct Live {
    devices: AtomicUsize,
    has_uplink: AtomicBool,
    has_modem: AtomicBool,
}

/// The running daemon.
pub struct Gateway {
    cfg: Config,
    poll_now: bool,
    notifier: Notifier,
    store: Arc<Store>,
    alarms: AlarmService,
    reporter: Arc<Mutex<Reporter>>,
    interlocks: Arc<Mutex<Interlocks>>,
    ports: BusPorts,
    tx: mpsc::Sender<SampleBatch>,
    /// When each bus task polls next, across reloads (the consumer's gathering window).
    next_polls: Arc<NextPolls>,
    acq_stop: CancellationToken,
    acq: Acquisition,
    consumer: JoinHandle<ConsumerReport>,
    give_up: CancellationToken,
    forwarder: Option<(CancellationToken, JoinHandle<()>)>,
    link_tx: Arc<watch::Sender<LinkStatus>>,
    link_rx: watch::Receiver<LinkStatus>,
    board: DeviceBoard,
    progress: Progress,
    wake: Arc<Notify>,
    live: Arc<Live>,
    /// `gasdtu read/write/scan` through the bus tasks (over `ports`).
    proxy: BusProxy,
    side_stop: CancellationToken,
    side_tasks: Vec<JoinHandle<()>>,
    /// The running config as the remote service sees it (sent by every apply).
    config_tx: watch::Sender<Arc<Config>>,
    /// Where the config came from (`config/get`).
    config_path: Option<PathBuf>,
    /// Where validated config pushes go (`Options::pushes`).
    pushes: Option<mpsc::Sender<push::PushJob>>,
    /// Remote commands dropped for want of a readable id (kept across forwarder restarts).
    remote_unanswerable: Arc<std::sync::atomic::AtomicU64>,
    /// The modem's status (one channel for the life of the daemon) and, with `[modem]`, the
    /// running engine + supervisor.
    modem_status: Arc<watch::Sender<crate::modem::ModemStatus>>,
    modem: Option<modem::ModemRuntime>,
    /// `gasdtu modem ...` through the status socket (follows the modem generation).
    modem_proxy: modem_proxy::ModemProxy,
}

impl Gateway {
    /// Open the store and start everything for `cfg`. READY=1 is the caller's (after this
    /// returned Ok).
    pub async fn start(cfg: Config, opts: Options) -> Result<Gateway, StartError> {
        // The store first: a reading is committed before anything else sees it.
        let state_dir = cfg.gateway.state_dir.clone();
        let store_cfg = cfg.store.clone();
        let (store, events) =
            tokio::task::spawn_blocking(move || Store::open(&state_dir, &store_cfg))
                .await
                .map_err(|e| StartError::Task("store open", e.to_string()))?
                .map_err(StartError::Store)?;
        for e in &events {
            tracing::warn!("store: {}", e.to_json());
        }
        let store = Arc::new(store);

        // Alarm rules and their persisted state (active alarms survive a restart).
        let (s, rules) = (store.clone(), cfg.alarms.clone());
        let alarms = tokio::task::spawn_blocking(move || AlarmService::open(rules, s))
            .await
            .map_err(|e| StartError::Task("alarm state", e.to_string()))?
            .map_err(StartError::Alarms)?;

        let progress = Progress::for_config(&cfg);
        let (tx, rx) = mpsc::channel(crate::modbus::CHANNEL_BATCHES);
        let acq_stop = CancellationToken::new();
        let next_polls = NextPolls::new();
        let acq = crate::modbus::start_with(&cfg, &acq_stop, opts.poll_now, &tx, &next_polls);
        let ports: BusPorts = Arc::new(Mutex::new(acq.ports.clone()));
        let proxy = BusProxy::over(ports.clone());
        let interlocks = Arc::new(Mutex::new(Interlocks::new(&cfg)));
        tracing::info!(
            gateway = %cfg.gateway.id,
            state = %cfg.gateway.state_dir.display(),
            buses = acq.tasks.len(),
            devices = acq.devices,
            reads_per_cycle = acq.reads_per_cycle,
            uplink = cfg.uplink.as_ref().map(|u| format!("{}:{}", u.host, u.port)).unwrap_or_else(|| "none".into()),
            "gasdtu running"
        );

        let board = DeviceBoard::default();
        let wake = Arc::new(Notify::new());
        let reporter = Arc::new(Mutex::new(Reporter::new(&cfg)));
        let give_up = CancellationToken::new();
        let mut consumer = Consumer::new(rx, store.clone(), wake.clone(), board.clone())
            .with_reporter(reporter.clone())
            .with_alarms(alarms.clone())
            .with_interlocks(interlocks.clone(), ports.clone())
            .with_memory_bound(opts.memory_readings)
            .with_next_polls(next_polls.clone())
            .give_up_on(give_up.clone())
            .with_startup_event(serde_json::json!({
                "event": "started",
                "version": env!("CARGO_PKG_VERSION"),
                "devices": acq.devices,
            }));
        // The watchdog's beats: a bus is alive when its batches reach the consumer; a store
        // commit that never returns stops the pings (one that fails is retried, not a hang).
        consumer = consumer.with_progress(progress.clone());
        for o in opts.observers {
            consumer = consumer.on_commit(o);
        }
        let consumer = tokio::spawn(consumer.run());

        let (link_tx, link_rx) = watch::channel(LinkStatus::default());
        let live = Arc::new(Live {
            devices: AtomicUsize::new(acq.devices),
            has_uplink: AtomicBool::new(cfg.uplink.is_some()),
            has_modem: AtomicBool::new(cfg.modem.is_some()),
        });
        let cfg_for_remote = cfg.clone();
        let modem_status = Arc::new(watch::channel(crate::modem::ModemStatus::default()).0);
        let mut gw = Gateway {
            cfg,
            poll_now: opts.poll_now,
            notifier: opts.notifier,
            store,
            alarms,
            reporter,
            interlocks,
            ports,
            tx,
            next_polls,
            acq_stop,
            acq,
            consumer,
            give_up,
            forwarder: None,
            link_tx: Arc::new(link_tx),
            link_rx,
            board,
            progress,
            wake,
            live,
            proxy,
            side_stop: CancellationToken::new(),
            side_tasks: Vec::new(),
            config_tx: watch::channel(Arc::new(cfg_for_remote)).0,
            config_path: opts.config_path.clone(),
            pushes: opts.pushes.clone(),
            remote_unanswerable: Arc::default(),
            modem_status: modem_status.clone(),
            modem: None,
            modem_proxy: modem_proxy::ModemProxy::new(modem_status.subscribe()),
        };
        // The modem before the forwarder: the uplink may wait for its link.
        gw.modem = gw.start_modem();
        gw.modem_proxy
            .set(gw.modem.as_ref().map(modem::ModemRuntime::at));
        gw.forwarder = gw.start_forwarder();
        if gw.forwarder.is_none() {
            tracing::warn!("no [uplink] section: readings are buffered in the store only");
        }
        if let Some(path) = &opts.socket {
            gw.start_status_socket(path, opts.config_path.as_ref())
                .await;
        }
        gw.start_watchdog();
        Ok(gw)
    }

    /// The running config.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn board(&self) -> &DeviceBoard {
        &self.board
    }

    pub fn alarms(&self) -> &AlarmService {
        &self.alarms
    }

    /// Wake the forwarder (a reply was queued).
    pub fn wake_forwarder(&self) {
        self.wake.notify_one();
    }

    /// The uplink's state as the forwarder reports it.
    pub fn link(&self) -> watch::Receiver<LinkStatus> {
        self.link_rx.clone()
    }

    /// The modem's status (`ModemStatus::link_up`: registered and attached, the uplink's gate).
    /// Without `[modem]` the network is the OS's: `link_up` is always true.
    pub fn modem(&self) -> watch::Receiver<crate::modem::ModemStatus> {
        self.modem_status.subscribe()
    }

    fn start_modem(&self) -> Option<modem::ModemRuntime> {
        let Some(cfg) = self.cfg.modem.as_ref() else {
            self.modem_status.send_replace(crate::modem::ModemStatus {
                link_up: true,
                ..Default::default()
            });
            return None;
        };
        Some(modem::ModemRuntime::start(
            cfg,
            self.modem_status.clone(),
            self.store.clone(),
            self.wake.clone(),
        ))
    }

    /// Enabled devices being polled, and bus tasks running.
    pub fn polling(&self) -> (usize, usize) {
        (self.acq.devices, self.acq.tasks.len())
    }

    /// Reads per cycle of the running plan.
    pub fn reads_per_cycle(&self) -> usize {
        self.acq.reads_per_cycle
    }

    /// Make `new` the running config. The only way to change what runs: a SIGHUP after a
    /// local edit and a pushed config take this path. The caller validated `new` (with the
    /// code of `gasdtu check`); `source` says where it came from (`file`, `mqtt`) in the
    /// `config_applied` event.
    pub async fn apply(&mut self, new: Config, source: &str) -> Applied {
        if new == self.cfg {
            return Applied::Unchanged;
        }
        // A new generation of bus tasks into the same consumer: the old ones finish their
        // transaction and stop first (one owner per port).
        self.stop_buses().await;
        let mut restart_needed = Vec::new();
        if new.store != self.cfg.store || new.gateway.state_dir != self.cfg.gateway.state_dir {
            restart_needed.push("[store] and gateway.state_dir".to_string());
            tracing::warn!(
                "reload: [store] and gateway.state_dir changes take effect at the next restart"
            );
        }
        if new.alarms != self.cfg.alarms {
            let a = self.alarms.clone();
            let rules = new.alarms.clone();
            match tokio::task::spawn_blocking(move || a.reconfigure(rules)).await {
                Ok(Ok(())) => {
                    tracing::info!(rules = new.alarms.len(), "reload: alarm rules applied")
                }
                Ok(Err(e)) => tracing::error!("reload: alarm rules not applied: {e}"),
                Err(e) => tracing::error!("reload: alarm task failed: {e}"),
            }
        }
        lock(&self.interlocks).reconfigure(&new);
        // The forwarder's session kind (persistent with an inbox) follows `[remote]`.
        // Sparkplug: the metric model (devices, points, alarm rules) is the births' content,
        // so a change of it is a new session (new bdSeq, births again).
        let uplink_changed = new.uplink != self.cfg.uplink
            || new.gateway.id != self.cfg.gateway.id
            || new.remote.is_some() != self.cfg.remote.is_some()
            || new.sparkplug != self.cfg.sparkplug
            || (new.sparkplug.is_some()
                && (new.devices != self.cfg.devices || new.alarms != self.cfg.alarms));
        let modem_changed = new.modem != self.cfg.modem;
        self.cfg = new;
        if modem_changed {
            if let Some(m) = self.modem.take() {
                m.stop().await;
            }
            self.modem = self.start_modem();
            self.modem_proxy
                .set(self.modem.as_ref().map(modem::ModemRuntime::at));
            self.live
                .has_modem
                .store(self.cfg.modem.is_some(), Ordering::Relaxed);
        }
        // The remote service checks keys, writes and points against the new config (a new
        // service started below subscribes to this value).
        self.config_tx.send_replace(Arc::new(self.cfg.clone()));
        // A new modem generation has a new bridge and status: the forwarder follows it.
        if uplink_changed || modem_changed {
            if let Some((stop, task)) = self.forwarder.take() {
                stop.cancel();
                let _ = task.await;
            }
            self.forwarder = self.start_forwarder();
            self.live
                .has_uplink
                .store(self.cfg.uplink.is_some(), Ordering::Relaxed);
        }
        self.acq_stop = CancellationToken::new();
        self.acq = crate::modbus::start_with(
            &self.cfg,
            &self.acq_stop,
            self.poll_now,
            &self.tx,
            &self.next_polls,
        );
        // The interlocks and the bus proxy see the new bus tasks from here on.
        *lock(&self.ports) = self.acq.ports.clone();
        self.live.devices.store(self.acq.devices, Ordering::Relaxed);
        self.progress.reconfigure(&self.cfg);
        // Devices removed or disabled leave the board (and `status`, and the STATUS line).
        self.board.retain(
            self.cfg
                .devices
                .iter()
                .filter(|d| d.enabled)
                .map(|d| d.name.as_str()),
        );
        // Report windows restart with the new settings (raw readings of the open window are in
        // the history either way).
        *lock(&self.reporter) = Reporter::new(&self.cfg);
        let ev = serde_json::json!({
            "event": "config_applied",
            "source": source,
            "devices": self.acq.devices,
        });
        record_event(&self.store, &self.wake, ev).await;
        tracing::info!(
            source,
            devices = self.acq.devices,
            buses = self.acq.tasks.len(),
            "new config applied"
        );
        Applied::Changed {
            devices: self.acq.devices,
            buses: self.acq.tasks.len(),
            restart_needed,
        }
    }

    /// Stop in order: pollers, then the consumer commits what was read (giving up on a failing
    /// store after `COMMIT_GIVE_UP`), then a connected uplink gets `FLUSH_GRACE` to deliver it.
    pub async fn shutdown(mut self) -> ShutdownReport {
        self.notifier.stopping();
        tracing::info!("shutdown requested: stopping the pollers");
        self.stop_buses().await;
        lock(&self.ports).clear();
        let Gateway {
            tx,
            consumer,
            give_up,
            forwarder,
            link_rx,
            store,
            side_stop,
            side_tasks,
            modem,
            ..
        } = self;
        drop(tx);
        let timer = {
            let give_up = give_up.clone();
            tokio::spawn(async move {
                tokio::time::sleep(COMMIT_GIVE_UP).await;
                give_up.cancel();
            })
        };
        // Every batch read so far is committed before we go on (or given up on, and counted).
        let consumer = match consumer.await {
            Ok(r) => {
                tracing::info!(
                    batches = r.batches,
                    readings = r.readings,
                    commits = r.commits,
                    commit_errors = r.commit_errors,
                    alarm_transitions = r.alarm_transitions,
                    dropped_batches = r.dropped_batches,
                    uncommitted_batches = r.uncommitted_batches,
                    "store consumer finished"
                );
                r
            }
            Err(e) => {
                tracing::error!("store consumer failed: {e}");
                ConsumerReport::default()
            }
        };
        timer.abort();
        let pending = || store.stats().map(|s| s.pending_readings).unwrap_or(0);
        if let Some((stop, task)) = forwarder {
            // Give a connected uplink a moment to deliver what was just committed.
            let deadline = tokio::time::Instant::now() + FLUSH_GRACE;
            while tokio::time::Instant::now() < deadline
                && matches!(link_rx.borrow().state, LinkState::Connected)
                && pending() > 0
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stop.cancel();
            let _ = task.await;
        }
        // The acknowledgements the store deferred (flash wear): recorded now, so a clean stop
        // resends nothing. (The store also writes them when dropped.)
        if let Err(e) = store.flush_acks() {
            tracing::warn!(error = %e, "cannot record the last acknowledgements; their messages will be sent again");
        }
        if let Some(m) = modem {
            m.stop().await;
        }
        side_stop.cancel();
        for t in side_tasks {
            // The status server removes its socket file on the way out.
            let _ = t.await;
        }
        tracing::info!("gasdtu stopped");
        ShutdownReport {
            consumer,
            pending_readings: pending(),
        }
    }

    async fn stop_buses(&mut self) {
        self.acq_stop.cancel();
        for t in self.acq.tasks.drain(..) {
            let abort = t.abort_handle();
            if tokio::time::timeout(BUS_STOP_GRACE, t).await.is_err() {
                tracing::error!("a bus task did not stop within {BUS_STOP_GRACE:?}: aborted");
                abort.abort();
            }
        }
    }

    fn start_forwarder(&self) -> Option<(CancellationToken, JoinHandle<()>)> {
        // The previous forwarder's sealer goes with it (issue 13: sealing at ingest).
        self.store.set_ingest_sealer(None);
        let up = self.cfg.uplink.clone()?;
        let seal = Arc::new(crate::uplink::IngestSeal::new(&up, &self.cfg.gateway.id));
        self.store.set_ingest_sealer(Some(seal.clone()));
        let stop = CancellationToken::new();
        let progress = self.progress.clone();
        let link_tx = self.link_tx.clone();
        let (fwd_tx, mut fwd_rx) = watch::channel(LinkStatus::default());
        // Mirror this generation's status into the daemon-wide channel.
        tokio::spawn(async move {
            while fwd_rx.changed().await.is_ok() {
                let s = fwd_rx.borrow().clone();
                link_tx.send_replace(s);
            }
        });
        let fwd = Forwarder::new(
            up,
            &self.cfg.gateway.id,
            self.store.clone(),
            self.wake.clone(),
            fwd_tx,
        )
        .with_heartbeat(Arc::new(move || progress.tick_uplink()))
        .with_ingest_seal(seal);
        // With a modem: no attempt while its link is down; in socket mode through its bridge.
        let fwd = match &self.modem {
            Some(m) => {
                let f = fwd.with_link_gate(crate::modem::link_gate(self.modem_status.subscribe()));
                let f = match m.meter() {
                    Some(meter) => f.with_link_meter(meter),
                    None => f,
                };
                match m.proxy() {
                    Some(addr) => f.with_proxy(addr),
                    None => f,
                }
            }
            None => fwd,
        };
        let fwd = match self.sparkplug_link(self.cfg.uplink.as_ref()) {
            Some(link) => fwd.with_sparkplug(link),
            None => fwd,
        };
        let fwd = fwd.with_health_extra({
            // O(1) counters: the buffer depth in `<root>/health`, and the modem's small object.
            let store = self.store.clone();
            let modem_rx = self.modem_status.subscribe();
            let live = self.live.clone();
            let board = self.board.clone();
            Arc::new(move || {
                let mut extra = health_buffer(&store);
                if let serde_json::Value::Object(m) = &mut extra {
                    m.insert(
                        "reads_24h".into(),
                        board.read_summary(crate::time::now_ms()),
                    );
                    // Where the times of this gateway come from (and how good they are).
                    m.insert("clock".into(), crate::time::clock_source().health_json());
                }
                if live.has_modem.load(Ordering::Relaxed) {
                    if let serde_json::Value::Object(m) = &mut extra {
                        m.insert(
                            "modem".into(),
                            crate::modem::health_json(&modem_rx.borrow()),
                        );
                    }
                }
                extra
            })
        });
        // With `[remote]`: the inbox (persistent session) and the service that answers it,
        // stopped together with this forwarder.
        let service = self.cfg.remote.as_ref().map(|_| {
            let (tx, rx) = mpsc::channel(REMOTE_INBOX);
            let svc = remote::RemoteService::new(
                rx,
                remote::RemoteContext {
                    store: self.store.clone(),
                    wake: self.wake.clone(),
                    alarms: self.alarms.clone(),
                    ports: self.ports.clone(),
                    board: self.board.clone(),
                    link: self.link_rx.clone(),
                    config: self.config_tx.subscribe(),
                    config_path: self.config_path.clone(),
                    unanswerable: self.remote_unanswerable.clone(),
                    pushes: self.pushes.clone(),
                },
            );
            (tx, svc)
        });
        let (fwd, svc) = match service {
            Some((tx, svc)) => (fwd.with_inbox(tx), Some(svc)),
            None => (fwd, None),
        };
        let fwd_task = tokio::spawn(fwd.run(stop.clone()));
        let svc_task = svc.map(|s| tokio::spawn(s.run(stop.clone())));
        let both = tokio::spawn(async move {
            let _ = fwd_task.await;
            if let Some(t) = svc_task {
                let _ = t.await;
            }
        });
        Some((stop, both))
    }

    /// With `protocol = "sparkplug"`: the edge node the forwarder speaks as (its bdSeq in the
    /// store). A model the validator accepted always builds; if not, the gasdtu protocol stays.
    fn sparkplug_link(
        &self,
        up: Option<&crate::config::UplinkConfig>,
    ) -> Option<crate::uplink::SparkplugLink> {
        let sp = self.cfg.sparkplug.as_ref()?;
        let up = up?;
        let built = crate::uplink::sparkplug::EdgeNode::new(&sp.group_id, &sp.edge_node_id)
            .map_err(|e| e.to_string())
            .and_then(|edge| {
                crate::uplink::sparkplug::build(&self.cfg)
                    .map(|model| (edge, model))
                    .map_err(|e| e.to_string())
            });
        let (edge, model) = match built {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(
                    "sparkplug: cannot describe this gateway ({e}): speaking the gasdtu protocol"
                );
                return None;
            }
        };
        let transport = match &self.modem {
            Some(m) if m.proxy().is_some() => "modem-socket",
            Some(_) => "modem",
            None if up.tls => "tls",
            None => "tcp",
        };
        let link = crate::uplink::SparkplugLink::with_store(
            edge,
            model,
            sp.primary_host_id.clone(),
            transport.to_string(),
            self.store.clone(),
        );
        if self.cfg.modem.is_none() {
            return Some(link);
        }
        // The `Modem/` node metrics (the model has them with a `[modem]`).
        let modem_rx = self.modem_status.subscribe();
        Some(link.with_modem(Arc::new(move || {
            crate::uplink::sparkplug::ModemFigures::from_status(&modem_rx.borrow())
        })))
    }

    async fn start_status_socket(&mut self, path: &std::path::Path, config: Option<&PathBuf>) {
        let started_ms = crate::time::now_ms();
        let provider = {
            let board = self.board.clone();
            let store = self.store.clone();
            let link_rx = self.link_rx.clone();
            let modem_rx = self.modem_status.subscribe();
            let live = self.live.clone();
            let alarms = self.alarms.clone();
            let id = self.cfg.gateway.id.clone();
            let config_path = config.map(|p| p.display().to_string());
            Arc::new(move || {
                // O(1): counters, no SQLite call on the async worker.
                let buffer = match store.stats() {
                    Ok(s) => serde_json::to_value(&s).unwrap_or_default(),
                    Err(e) => serde_json::json!({"error": e.to_string()}),
                };
                let link = if live.has_uplink.load(Ordering::Relaxed) {
                    link_json(&link_rx.borrow())
                } else {
                    serde_json::json!({"state": "no uplink configured"})
                };
                let modem = if live.has_modem.load(Ordering::Relaxed) {
                    serde_json::to_value(&*modem_rx.borrow()).unwrap_or_default()
                } else {
                    serde_json::Value::Null
                };
                serde_json::json!({
                    "gateway": {"id": id, "started_ms": started_ms, "config": config_path},
                    "devices": board.snapshot(),
                    "alarms": alarms.active(),
                    "buffer": buffer,
                    "link": link,
                    "modem": modem,
                    "clock": crate::time::clock_source().json(),
                })
            })
        };
        match StatusServer::bind(path, provider).await {
            Ok(server) => {
                // `ack <occurrence> [note]`: the internal acknowledge operation (docs/alarms.md),
                // recorded as the connecting user (SO_PEERCRED).
                let alarms = self.alarms.clone();
                let server = server
                    .with_handler(Arc::new(move |line: &str, peer: &status_socket::Peer| {
                        line.starts_with("ack ")
                            .then(|| alarms.ack_request(line, &peer.describe()))
                    }))
                    // `gasdtu read/write/scan` go through the bus task that owns the bus.
                    .with_bus_proxy(self.proxy.clone())
                    .with_modem_proxy(self.modem_proxy.clone());
                self.side_tasks
                    .push(tokio::spawn(server.run(self.side_stop.clone())));
            }
            // The daemon keeps polling without it: losing `gasdtu status` must not lose data.
            Err(e) => tracing::error!("status socket unavailable: {e}"),
        }
    }

    /// The STATUS= line and the watchdog, which pings only while buses and the forwarder
    /// make progress.
    fn start_watchdog(&mut self) {
        let board = self.board.clone();
        let store = self.store.clone();
        let link_rx = self.link_rx.clone();
        let modem_rx = self.modem_status.subscribe();
        let live = self.live.clone();
        let progress = self.progress.clone();
        let watchdog =
            Watchdog::new(self.notifier.clone(), self.progress.clone()).with_status(move || {
                let mut facts =
                    StatusFacts::from_board(&board, live.devices.load(Ordering::Relaxed));
                facts.store_failing = progress.store_failing();
                facts.backlog = store.stats().ok().map(|s| s.pending_readings);
                if live.has_uplink.load(Ordering::Relaxed) {
                    facts.link = link_facts(&link_rx.borrow());
                }
                if live.has_modem.load(Ordering::Relaxed) {
                    facts.modem = Some(crate::modem::status::status_phrase(&modem_rx.borrow()));
                }
                status_line(&facts)
            });
        self.side_tasks
            .push(tokio::spawn(watchdog.run(self.side_stop.clone())));
    }
}

/// Commit a gateway event on a blocking thread and wake the forwarder; a failure is logged
/// (an event that cannot be stored must not stop what reported it).
pub(crate) async fn record_event(store: &Arc<Store>, wake: &Notify, ev: serde_json::Value) {
    let st = store.clone();
    let what = ev["event"].as_str().unwrap_or("event").to_string();
    match tokio::task::spawn_blocking(move || {
        st.commit(&[], &[(EntryKind::Event, ev)], &ClockStamp::now())
    })
    .await
    {
        Ok(Ok(_)) => wake.notify_one(),
        Ok(Err(e)) => tracing::error!("cannot record the {what} event: {e}"),
        Err(e) => tracing::error!("{what} event task failed: {e}"),
    }
}

/// The buffer depth object of `<root>/health` (O(1) counters).
fn health_buffer(store: &Store) -> serde_json::Value {
    match store.stats() {
        Ok(b) => serde_json::json!({"buffer": {
            "unacked": b.sealed_messages,
            "pending_entries": b.pending_entries,
            "pending_readings": b.pending_readings,
            "held_entries": b.held_entries,
            "oldest_pending_read_ms": b.oldest_pending_read_ms,
            "dropped_unsent": b.dropped_unsent,
        }}),
        Err(e) => serde_json::json!({"buffer": {"error": e.to_string()}}),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn link_facts(l: &LinkStatus) -> Option<LinkFacts> {
    match &l.state {
        LinkState::Connected => Some(LinkFacts::Up),
        LinkState::Down { since_ms, .. } => Some(LinkFacts::Down(Duration::from_millis(
            (crate::time::now_ms() - since_ms).max(0) as u64,
        ))),
        LinkState::Asleep { since_ms } => Some(LinkFacts::Asleep(Duration::from_millis(
            (crate::time::now_ms() - since_ms).max(0) as u64,
        ))),
        LinkState::Connecting => None,
    }
}

fn link_json(l: &LinkStatus) -> serde_json::Value {
    let (state, since, err) = match &l.state {
        LinkState::Connecting => ("connecting", None, None),
        LinkState::Connected => ("connected", None, None),
        LinkState::Down {
            since_ms,
            last_error,
        } => ("down", Some(*since_ms), Some(last_error.clone())),
        LinkState::Asleep { since_ms } => ("asleep", Some(*since_ms), None),
    };
    serde_json::json!({
        "state": state,
        "down_since_ms": since,
        "error": err,
        "last_error": l.last_error,
        "last_publish_ms": l.last_publish_ms,
        "last_ack_ms": l.last_ack_ms,
        "published": l.published,
        "acked": l.acked,
        "reconnects": l.reconnects,
        "tls_resumptions": l.tls_resumptions,
        "tls_full_handshakes": l.tls_full_handshakes,
        "sealed_at_ingest": l.sealed_at_ingest,
        "session": l.session.to_json(),
        "store_error": l.store_error,
        "last_seq": l.last_seq,
        "dead_letters": l.dead_letters,
        "last_dead_letter": l.last_dead_letter,
        "last_health_ms": l.last_health_ms,
        "inbound_subscribed": l.inbound_subscribed,
        "inbound_received": l.inbound_received,
        "inbound_acked": l.inbound_acked,
        "inbound_oversized": l.inbound_oversized,
        "inbound_busy": l.inbound_busy,
        "inbound_ignored": l.inbound_ignored,
        "inbound_purges": l.inbound_purges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_json_shows_the_inbound_counters() {
        let l = LinkStatus {
            inbound_subscribed: true,
            inbound_received: 5,
            inbound_acked: 4,
            inbound_oversized: 3,
            inbound_busy: 2,
            inbound_ignored: 1,
            inbound_purges: 6,
            ..LinkStatus::default()
        };
        let j = link_json(&l);
        for (k, v) in [
            ("inbound_subscribed", serde_json::json!(true)),
            ("inbound_received", serde_json::json!(5)),
            ("inbound_acked", serde_json::json!(4)),
            ("inbound_oversized", serde_json::json!(3)),
            ("inbound_busy", serde_json::json!(2)),
            ("inbound_ignored", serde_json::json!(1)),
            ("inbound_purges", serde_json::json!(6)),
        ] {
            assert_eq!(j[k], v, "{k} in {j}");
        }
    }
}
