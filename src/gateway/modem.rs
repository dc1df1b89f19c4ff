//! The modem's place in the runtime: `ModemRuntime::start` spawns one generation of the AT
//! engine (the only owner of the modem's port) and the supervisor for a `[modem]` config, plus
//! the small task that records the supervisor's events (`modem_reset`, `modem_registration`,
//! `clock_source`)
//! through the runtime's event path; `stop` ends all three (a changed `[modem]` restarts
//! them). The status watch outlives generations, so `gasdtu status`, `<root>/health` and the
//! uplink keep one receiver. Never talks AT itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use std::net::SocketAddr;

use crate::config::{ModemConfig, ModemMode};
use crate::modem::{
    AtEngine, AtHandle, EngineOptions, ModemStatus, ModemSupervisor, SocketBridge,
    SupervisorOptions,
};
use crate::store::Store;
use crate::uplink::LinkMeter;

/// Events waiting to be recorded before the supervisor's are dropped (with a warning).
const EVENT_QUEUE: usize = 64;
/// How long the engine and the supervisor get to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One running generation of the modem tasks.
pub struct ModemRuntime {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// The way to the engine (field tools through the status socket).
    at: AtHandle,
    /// Socket mode: the loopback HTTP CONNECT proxy the forwarder goes through.
    proxy: Option<SocketAddr>,
    /// Socket mode: the bridge's counters (session figures: open time, socket bytes).
    meter: Option<Arc<LinkMeter>>,
}

impl ModemRuntime {
    pub fn start(
        cfg: &ModemConfig,
        status: Arc<watch::Sender<ModemStatus>>,
        store: Arc<Store>,
        wake: Arc<Notify>,
    ) -> ModemRuntime {
        let stop = CancellationToken::new();
        let (engine, at) = AtEngine::new(cfg.port.clone(), cfg.baud, EngineOptions::default());
        let (ev_tx, mut ev_rx) = mpsc::channel::<serde_json::Value>(EVENT_QUEUE);
        status.send_replace(ModemStatus::default());
        let status_rx = status.subscribe();
        let sup = ModemSupervisor::new(
            cfg.clone(),
            at.clone(),
            SupervisorOptions {
                min_gap: cfg.ladder_gap,
                ..SupervisorOptions::default()
            },
            status,
            Some(ev_tx),
        );
        let mut tasks = Vec::new();
        let mut proxy = None;
        let mut meter = None;
        if cfg.mode == ModemMode::Socket {
            match SocketBridge::bind(at.clone(), status_rx, cfg.hosts.clone()) {
                Ok(b) => {
                    proxy = b.local_addr().ok();
                    meter = Some(b.meter());
                    tasks.push(tokio::spawn(b.run(stop.clone())));
                }
                // Without the bridge the uplink cannot connect: it says so in its own error.
                Err(e) => tracing::error!("modem socket bridge: cannot listen on loopback: {e}"),
            }
        }
        tracing::info!(mode = cfg.mode.as_str(), port = %cfg.port, "modem supervision starting");
        let events = tokio::spawn(async move {
            // Ends when the supervisor (the only sender) is gone.
            while let Some(ev) = ev_rx.recv().await {
                super::record_event(&store, &wake, ev).await;
            }
        });
        tasks.push(tokio::spawn(engine.run(stop.clone())));
        tasks.push(tokio::spawn(sup.run(stop.clone())));
        tasks.push(events);
        ModemRuntime {
            stop,
            tasks,
            at,
            proxy,
            meter,
        }
    }

    /// The AT engine of this generation.
    pub fn at(&self) -> AtHandle {
        self.at.clone()
    }

    /// Socket mode: the bridge's loopback address (for `Forwarder::with_proxy`).
    pub fn proxy(&self) -> Option<SocketAddr> {
        self.proxy
    }

    /// Socket mode: the bridge's counters (for `Forwarder::with_link_meter`).
    pub fn meter(&self) -> Option<Arc<LinkMeter>> {
        self.meter.clone()
    }

    /// Stop the engine (closing the port), the supervisor, and record what it left.
    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(STOP_GRACE, t).await.is_err() {
                tracing::error!("a modem task did not stop within {STOP_GRACE:?}: aborted");
                abort.abort();
            }
        }
    }
}
