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
use crate::pipeline::Consumer;
use crate::status::DeviceBoard;
use crate::store::Store;
use crate::uplink::{Forwarder, LinkState, LinkStatus};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Poll every device once right away instead of waiting for its first aligned slot.
    #[arg(long)]
    pub poll_now: bool,
    /// Unix socket where `gasdtu status` reaches the daemon.
    #[arg(long, default_value = crate::status::DEFAULT_SOCKET)]
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
    let cfg = loaded.config;

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

    let acq_stop = CancellationToken::new();
    let fwd_stop = CancellationToken::new();
    let (acq, rx) = crate::acq::start(&cfg, &acq_stop, args.poll_now);
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
    let consumer = Consumer::new(rx, store.clone(), wake.clone(), board.clone())
        .with_startup_event(serde_json::json!({
            "event": "started",
            "version": env!("CARGO_PKG_VERSION"),
            "devices": acq.devices,
        }));
    let consumer = tokio::spawn(consumer.run());

    let (link_tx, link_rx) = watch::channel(LinkStatus::default());
    let forwarder = match cfg.uplink.clone() {
        Some(up) => {
            let fwd = Forwarder::new(up, &cfg.gateway.id, store.clone(), wake.clone(), link_tx);
            Some(tokio::spawn(fwd.run(fwd_stop.clone())))
        }
        None => {
            tracing::warn!("no [uplink] section: readings are buffered in the store only");
            None
        }
    };

    let started_ms = crate::status::unix_ms(std::time::SystemTime::now());
    let provider = {
        let board = board.clone();
        let store = store.clone();
        let link_rx = link_rx.clone();
        let has_uplink = cfg.uplink.is_some();
        let id = cfg.gateway.id.clone();
        let config_path = global.config.display().to_string();
        Arc::new(move || {
            let buffer = match store.stats() {
                Ok(s) => serde_json::to_value(&s).unwrap_or_default(),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            };
            serde_json::json!({
                "gateway": {"id": id, "started_ms": started_ms, "config": config_path},
                "devices": board.snapshot(),
                "buffer": buffer,
                "link": if has_uplink { link_json(&link_rx.borrow()) } else { serde_json::json!({"state": "no uplink configured"}) },
            })
        })
    };
    match crate::status::StatusServer::bind(&args.socket, provider).await {
        Ok(server) => {
            tokio::spawn(server.run(fwd_stop.clone()));
        }
        // The daemon keeps polling without it: losing `gasdtu status` must not lose data.
        Err(e) => tracing::error!("status socket unavailable: {e}"),
    }

    wait_for_signal().await;
    tracing::info!("shutdown requested: stopping the pollers");
    acq_stop.cancel();
    for t in acq.tasks {
        let _ = t.await;
    }
    // Every batch read so far is committed before we go on.
    match consumer.await {
        Ok(r) => tracing::info!(
            batches = r.batches,
            readings = r.readings,
            commits = r.commits,
            commit_errors = r.commit_errors,
            "store consumer finished"
        ),
        Err(e) => tracing::error!("store consumer failed: {e}"),
    }
    if let Some(fwd) = forwarder {
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
        fwd_stop.cancel();
        let _ = fwd.await;
    } else {
        fwd_stop.cancel();
    }
    tracing::info!("gasdtu stopped");
    Ok(0)
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
