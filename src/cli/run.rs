//! `gasdtu run`: the daemon. Loads and validates the config (refusing to start on errors, with
//! every error printed), starts one bus task per bus and consumes the sample channel. Until the
//! store lands (issue 3) the consumer logs each batch; SIGINT/SIGTERM stop it cleanly.

use tokio_util::sync::CancellationToken;

use super::Global;
use crate::config;
use crate::model::{Quality, SampleBatch};

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
    let shutdown = CancellationToken::new();
    let (acq, mut rx) = crate::acq::start(&cfg, &shutdown, args.poll_now);
    tracing::info!(
        gateway = %cfg.gateway.id,
        config = %global.config.display(),
        buses = acq.tasks.len(),
        devices = acq.devices,
        reads_per_cycle = acq.reads_per_cycle,
        "gasdtu running"
    );
    let board = crate::status::DeviceBoard::default();
    let started_ms = crate::status::unix_ms(std::time::SystemTime::now());
    let provider = {
        let board = board.clone();
        let id = cfg.gateway.id.clone();
        let config_path = global.config.display().to_string();
        std::sync::Arc::new(move || {
            serde_json::json!({
                "gateway": {"id": id, "started_ms": started_ms, "config": config_path},
                "devices": board.snapshot(),
            })
        })
    };
    match crate::status::StatusServer::bind(&args.socket, provider).await {
        Ok(server) => {
            tokio::spawn(server.run(shutdown.clone()));
        }
        // The daemon keeps polling without it: losing `gasdtu status` must not lose data.
        Err(e) => tracing::error!("status socket unavailable: {e}"),
    }
    let sig = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        sig.cancel();
    });
    loop {
        tokio::select! {
            b = rx.recv() => match b {
                Some(b) => {
                    board.observe(&b);
                    log_batch(&b);
                }
                None => break,
            },
            _ = shutdown.cancelled() => break,
        }
    }
    // Drain what the bus tasks already read before they stopped.
    for t in acq.tasks {
        let _ = t.await;
    }
    while let Ok(b) = rx.try_recv() {
        log_batch(&b);
    }
    tracing::info!("gasdtu stopped");
    Ok(0)
}

fn log_batch(b: &SampleBatch) {
    let good = b.samples.iter().filter(|s| s.quality.is_good()).count();
    let bad = b.samples.len() - good;
    let first_bad = b.samples.iter().find_map(|s| match &s.quality {
        Quality::Bad(r) => Some(format!("{}: {r}", s.point)),
        Quality::Good => None,
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
    for s in &b.samples {
        if let Some(v) = &s.value {
            tracing::debug!(device = %b.device, point = %s.point, value = %v, unit = s.unit.as_deref().unwrap_or(""), "sample");
        }
    }
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
