//! `gasdtu run`: the daemon. Loads and validates the config (refusing to start on errors, with
//! every error printed), opens the store, starts one bus task per bus, the store consumer, the
//! MQTT forwarder and the status socket. SIGINT/SIGTERM stop it in order: pollers first, then
//! the consumer commits what was read, then the forwarder gets a moment to deliver it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::Global;
use crate::config;
use crate::config::Config;
use crate::gateway::alarms::AlarmService;
use crate::gateway::consumer::Consumer;
use crate::gateway::status_socket::DeviceBoard;
use crate::gateway::systemd::{
    status_line, try_reload, Hangups, LinkFacts, Notifier, Progress, Reload, StatusFacts, Watchdog,
};
use crate::model::SampleBatch;
use crate::outbox::EntryKind;
use crate::report::Reporter;
use crate::store::{ClockStamp, Store};
use crate::uplink::{Forwarder, LinkState, LinkStatus};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Poll every device once right away instead of waiting for its first aligned slot.
    #[arg(long)]
    pub poll_now: bool,
    /// Unix socket where `gasdtu status` reaches the daemon.
    #[arg(long, default_value = crate::gateway::status_socket::DEFAULT_SOCKET)]
    pub socket: std::path::PathBuf,
}

pub async fn run(args: RunArgs, global: &Global) -> anyhow::Result<u8> {
    let loaded = match config::load_file(&global.config) {
        Ok(l) => l,
        Err(e) => {
            super::init_logging(global.log_level.as_deref().unwrap_or("info"));
            eprintln!("gasdtu run: refusing to start: {e}");
            if let config::LoadError::Invalid { errors, .. } = &e {
                for err in errors {
                    eprintln!("error: {err}");
                }
            }
            return Ok(match e {
                config::LoadError::Read { .. } => 2,
                config::LoadError::Invalid { .. } => 1,
            });
        }
    };
    let level = global
        .log_level
        .clone()
        .unwrap_or_else(|| loaded.config.gateway.log_level.clone());
    super::init_logging(&level);
    for w in &loaded.warnings {
        tracing::warn!("config: {w}");
    }
    // Before anything slow: SIGHUP's default action would kill the daemon.
    let notifier = Notifier::from_env();
    let mut hangups = Hangups::install()?;
    let mut cfg = loaded.config;

    // The store first: a reading is committed before anything else sees it.
    let state_dir = cfg.gateway.state_dir.clone();
    let store_cfg = cfg.store.clone();
    let store = match tokio::task::spawn_blocking(move || Store::open(&state_dir, &store_cfg)).await
    {
        Ok(Ok((store, events))) => {
            for e in &events {
                tracing::warn!("store: {}", e.to_json());
            }
            Arc::new(store)
        }
        Ok(Err(e)) => {
            eprintln!("gasdtu run: cannot open the store: {e}");
            return Ok(1);
        }
        Err(e) => anyhow::bail!("store open task failed: {e}"),
    };

    // Alarm rules and their persisted state (active alarms survive a restart).
    let alarm_store = store.clone();
    let rules = cfg.alarms.clone();
    let alarms =
        match tokio::task::spawn_blocking(move || AlarmService::open(rules, alarm_store)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                eprintln!("gasdtu run: cannot load the alarm state: {e}");
                return Ok(1);
            }
            Err(e) => anyhow::bail!("alarm state task failed: {e}"),
        };

    let progress = Progress::for_config(&cfg);
    let (tx, rx) = tokio::sync::mpsc::channel(crate::modbus::CHANNEL_BATCHES);
    let mut acq_stop = CancellationToken::new();
    let mut acq = crate::modbus::start_with(&cfg, &acq_stop, args.poll_now, &tx);
    // Write channels of the bus tasks, for interlocks (replaced when a reload restarts them).
    let writers = Arc::new(std::sync::Mutex::new(acq.writers.clone()));
    tracing::info!(
        gateway = %cfg.gateway.id,
        config = %global.config.display(),
        state = %cfg.gateway.state_dir.display(),
        buses = acq.tasks.len(),
        devices = acq.devices,
        reads_per_cycle = acq.reads_per_cycle,
        uplink = cfg.uplink.as_ref().map(|u| format!("{}:{}", u.host, u.port)).unwrap_or_else(|| "none".into()),
        "gasdtu running"
    );

    let board = DeviceBoard::default();
    let wake = Arc::new(Notify::new());
    let reporter = Arc::new(std::sync::Mutex::new(Reporter::new(&cfg)));
    let consumer = {
        let progress = progress.clone();
        Consumer::new(rx, store.clone(), wake.clone(), board.clone())
            .with_reporter(reporter.clone())
            .with_alarms(alarms.clone())
            .with_interlocks(crate::gateway::consumer::Interlocks::new(
                &cfg,
                writers.clone(),
            ))
            .with_startup_event(serde_json::json!({
                "event": "started",
                "version": env!("CARGO_PKG_VERSION"),
                "devices": acq.devices,
            }))
            // The watchdog's beat: a bus counts as alive only once its batch is committed.
            .on_commit(Arc::new(move |b: &SampleBatch| progress.tick_poll(&b.bus)))
    };
    let consumer = tokio::spawn(consumer.run());

    let (link_tx, link_rx) = watch::channel(LinkStatus::default());
    let link_tx = Arc::new(link_tx);
    let start_forwarder =
        |cfg: &Config| -> Option<(CancellationToken, tokio::task::JoinHandle<()>)> {
            let up = cfg.uplink.clone()?;
            let stop = CancellationToken::new();
            let progress = progress.clone();
            let link_tx = link_tx.clone();
            let (fwd_tx, mut fwd_rx) = watch::channel(LinkStatus::default());
            // Mirror this generation's status into the daemon-wide channel.
            tokio::spawn(async move {
                while fwd_rx.changed().await.is_ok() {
                    let s = fwd_rx.borrow().clone();
                    link_tx.send_replace(s);
                }
            });
            let fwd = Forwarder::new(up, &cfg.gateway.id, store.clone(), wake.clone(), fwd_tx)
                .with_heartbeat(Arc::new(move || progress.tick_uplink()));
            Some((stop.clone(), tokio::spawn(fwd.run(stop))))
        };
    let mut forwarder = start_forwarder(&cfg);
    if forwarder.is_none() {
        tracing::warn!("no [uplink] section: readings are buffered in the store only");
    }

    let status_stop = CancellationToken::new();
    let started_ms = crate::time::unix_ms(std::time::SystemTime::now());
    let has_uplink = Arc::new(std::sync::atomic::AtomicBool::new(cfg.uplink.is_some()));
    let provider = {
        let board = board.clone();
        let store = store.clone();
        let link_rx = link_rx.clone();
        let has_uplink = has_uplink.clone();
        let alarms = alarms.clone();
        let id = cfg.gateway.id.clone();
        let config_path = global.config.display().to_string();
        Arc::new(move || {
            let buffer = match store.stats() {
                Ok(s) => serde_json::to_value(&s).unwrap_or_default(),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            };
            let link = if has_uplink.load(std::sync::atomic::Ordering::Relaxed) {
                link_json(&link_rx.borrow())
            } else {
                serde_json::json!({"state": "no uplink configured"})
            };
            serde_json::json!({
                "gateway": {"id": id, "started_ms": started_ms, "config": config_path},
                "devices": board.snapshot(),
                "alarms": alarms.active(),
                "buffer": buffer,
                "link": link,
            })
        })
    };
    let status_task =
        match crate::gateway::status_socket::StatusServer::bind(&args.socket, provider).await {
            Ok(server) => {
                // `ack <occurrence> [by]`: the internal acknowledge operation (docs/alarms.md).
                let alarms = alarms.clone();
                let server = server.with_handler(Arc::new(move |line: &str| {
                    line.starts_with("ack ").then(|| alarms.ack_request(line))
                }));
                Some(tokio::spawn(server.run(status_stop.clone())))
            }
            // The daemon keeps polling without it: losing `gasdtu status` must not lose data.
            Err(e) => {
                tracing::error!("status socket unavailable: {e}");
                None
            }
        };

    // systemd: the STATUS= line and the watchdog, which pings only while buses and the
    // forwarder make progress; then READY=1 (config loaded, store open, pollers running).
    let devices = Arc::new(std::sync::atomic::AtomicUsize::new(acq.devices));
    let watchdog = {
        let board = board.clone();
        let store = store.clone();
        let link_rx = link_rx.clone();
        let has_uplink = has_uplink.clone();
        let devices = devices.clone();
        Watchdog::new(notifier.clone(), progress.clone()).with_status(move || {
            let mut facts =
                StatusFacts::from_board(&board, devices.load(std::sync::atomic::Ordering::Relaxed));
            facts.backlog = store.stats().ok().map(|s| s.pending_readings);
            if has_uplink.load(std::sync::atomic::Ordering::Relaxed) {
                facts.link = link_facts(&link_rx.borrow());
            }
            status_line(&facts)
        })
    };
    tokio::spawn(watchdog.run(status_stop.clone()));
    notifier.ready();

    loop {
        tokio::select! {
            _ = wait_for_signal() => break,
            Some(()) = hangups.recv() => {
                notifier.reloading();
                match try_reload(&global.config, &cfg) {
                    Reload::Refused(e) => {
                        tracing::error!("reload refused, the running config stays in force: {e}");
                        if let config::LoadError::Invalid { errors, .. } = &e {
                            for err in errors {
                                tracing::error!("reload: {err}");
                            }
                        }
                    }
                    Reload::Unchanged => tracing::info!("reload: config unchanged"),
                    Reload::Apply(l) => {
                        for w in &l.warnings {
                            tracing::warn!("config: {w}");
                        }
                        // New generation of bus tasks into the same consumer: the old ones
                        // finish their transaction and stop first (one owner per port).
                        acq_stop.cancel();
                        for t in acq.tasks.drain(..) {
                            let _ = t.await;
                        }
                        let new = l.config;
                        if new.uplink != cfg.uplink {
                            if let Some((stop, task)) = forwarder.take() {
                                stop.cancel();
                                let _ = task.await;
                            }
                            forwarder = start_forwarder(&new);
                            has_uplink.store(new.uplink.is_some(), std::sync::atomic::Ordering::Relaxed);
                        }
                        if new.alarms != cfg.alarms {
                            let a = alarms.clone();
                            let rules = new.alarms.clone();
                            match tokio::task::spawn_blocking(move || a.reconfigure(rules)).await {
                                Ok(Ok(())) => tracing::info!(rules = new.alarms.len(), "reload: alarm rules applied"),
                                Ok(Err(e)) => tracing::error!("reload: alarm rules not applied: {e}"),
                                Err(e) => tracing::error!("reload: alarm task failed: {e}"),
                            }
                        }
                        if new.store != cfg.store || new.gateway.state_dir != cfg.gateway.state_dir {
                            tracing::warn!("reload: [store] and gateway.state_dir changes take effect at the next restart");
                        }
                        acq_stop = CancellationToken::new();
                        acq = crate::modbus::start_with(&new, &acq_stop, args.poll_now, &tx);
                        match writers.lock() {
                            Ok(mut w) => *w = acq.writers.clone(),
                            Err(p) => *p.into_inner() = acq.writers.clone(),
                        }
                        devices.store(acq.devices, std::sync::atomic::Ordering::Relaxed);
                        progress.reconfigure(&new);
                        // Report windows restart with the new settings (raw readings of the
                        // open window are in the history either way).
                        match reporter.lock() {
                            Ok(mut r) => *r = Reporter::new(&new),
                            Err(p) => *p.into_inner() = Reporter::new(&new),
                        }
                        cfg = new;
                        // Reported upstream like every gateway event.
                        let ev = serde_json::json!({
                            "event": "config_applied",
                            "source": "file",
                            "devices": acq.devices,
                        });
                        let st = store.clone();
                        match tokio::task::spawn_blocking(move || {
                            st.commit(&[], &[(EntryKind::Event, ev)], &ClockStamp::now())
                        })
                        .await
                        {
                            Ok(Ok(_)) => wake.notify_one(),
                            Ok(Err(e)) => tracing::error!("reload: cannot record the config_applied event: {e}"),
                            Err(e) => tracing::error!("reload: event task failed: {e}"),
                        }
                        tracing::info!(devices = acq.devices, buses = acq.tasks.len(), "reload: new config applied");
                    }
                }
                notifier.ready();
            }
        }
    }

    notifier.stopping();
    tracing::info!("shutdown requested: stopping the pollers");
    acq_stop.cancel();
    for t in acq.tasks {
        let _ = t.await;
    }
    drop(tx);
    // Every batch read so far is committed before we go on.
    match consumer.await {
        Ok(r) => tracing::info!(
            batches = r.batches,
            readings = r.readings,
            commits = r.commits,
            commit_errors = r.commit_errors,
            alarm_transitions = r.alarm_transitions,
            "store consumer finished"
        ),
        Err(e) => tracing::error!("store consumer failed: {e}"),
    }
    if let Some((stop, task)) = forwarder {
        // Give a connected uplink a moment to deliver what was just committed.
        let deadline = tokio::time::Instant::now() + FLUSH_GRACE;
        while tokio::time::Instant::now() < deadline
            && matches!(link_rx.borrow().state, LinkState::Connected)
            && store
                .stats()
                .map(|s| s.pending_readings > 0)
                .unwrap_or(false)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.cancel();
        let _ = task.await;
    }
    status_stop.cancel();
    if let Some(t) = status_task {
        // It removes its socket file on the way out.
        let _ = t.await;
    }
    tracing::info!("gasdtu stopped");
    Ok(0)
}

fn link_facts(l: &LinkStatus) -> Option<LinkFacts> {
    match &l.state {
        LinkState::Connected => Some(LinkFacts::Up),
        LinkState::Down { since_ms, .. } => {
            let now = crate::time::unix_ms(std::time::SystemTime::now());
            Some(LinkFacts::Down(Duration::from_millis(
                (now - since_ms).max(0) as u64,
            )))
        }
        LinkState::Connecting => None,
    }
}

/// How long a clean shutdown waits for a connected uplink to drain what is pending.
const FLUSH_GRACE: Duration = Duration::from_secs(5);

fn link_json(l: &LinkStatus) -> serde_json::Value {
    let (state, since, err) = match &l.state {
        LinkState::Connecting => ("connecting", None, None),
        LinkState::Connected => ("connected", None, None),
        LinkState::Down {
            since_ms,
            last_error,
        } => ("down", Some(*since_ms), Some(last_error.clone())),
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
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
