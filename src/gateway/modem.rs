//! The modem's place in the runtime: `ModemRuntime::start` spawns one generation of the AT
//! engine (the only owner of the modem's port) and the supervisor for a `[modem]` config, plus
//! the small task that records the supervisor's events (`modem_reset`, `modem_registration`)
//! through the runtime's event path; `stop` ends all three (a changed `[modem]` restarts
//! them). The status watch outlives generations, so `gasdtu status`, `<root>/health` and the
//! uplink keep one receiver. Never talks AT itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ModemConfig;
use crate::modem::{AtEngine, EngineOptions, ModemStatus, ModemSupervisor, SupervisorOptions};
use crate::store::Store;

/// Events waiting to be recorded before the supervisor's are dropped (with a warning).
const EVENT_QUEUE: usize = 64;
/// How long the engine and the supervisor get to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One running generation of the modem tasks.
pub struct ModemRuntime {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
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
        let sup = ModemSupervisor::new(
            cfg.clone(),
            at,
            SupervisorOptions::default(),
            status,
            Some(ev_tx),
        );
        tracing::info!(mode = cfg.mode.as_str(), port = %cfg.port, "modem supervision starting");
        let events = tokio::spawn(async move {
            // Ends when the supervisor (the only sender) is gone.
            while let Some(ev) = ev_rx.recv().await {
                super::record_event(&store, &wake, ev).await;
            }
        });
        let tasks = vec![
            tokio::spawn(engine.run(stop.clone())),
            tokio::spawn(sup.run(stop.clone())),
            events,
        ];
        ModemRuntime { stop, tasks }
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
