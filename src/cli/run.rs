//! `gasdtu run`: the daemon verb. Loads and validates the config (refusing to start on errors,
//! with every error printed), starts the gateway runtime (`crate::gateway`), tells systemd it
//! is ready, and turns signals into runtime calls: SIGHUP re-reads the file with the code of
//! `gasdtu check` and hands a valid, changed config to `Gateway::apply`; SIGTERM/SIGINT stop
//! it. The signal handlers are installed once, before anything slow, so none is ever lost.
//! First of all it tightens the umask to 027, so nothing it creates is world-readable.

use super::Global;
use crate::config;
use crate::gateway::push::{self, PushOwner};
use crate::gateway::systemd::{try_reload, Notifier, Reload, SignalAsk, Signals};
use crate::gateway::{Gateway, Options};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Poll every device once right away instead of waiting for its first aligned slot.
    #[arg(long)]
    pub poll_now: bool,
    /// Unix socket where `gasdtu status` reaches the daemon.
    #[arg(long, default_value = crate::gateway::status_socket::DEFAULT_SOCKET)]
    pub socket: std::path::PathBuf,
}

/// Bits every file gasdtu creates loses: nothing for others, no write for the group.
pub const UMASK: u32 = 0o027;

/// Tighten the process umask to at least `UMASK` (a stricter one is kept) and return the
/// previous one: the state directory, the database, the socket and every other file the
/// daemon creates are then not world-readable whatever umask it was started with.
pub fn tighten_umask() -> u32 {
    // SAFETY: umask(2) cannot fail; it is called before any other thread creates files.
    let old = unsafe { libc::umask(0o777) } as u32;
    // SAFETY: as above.
    unsafe { libc::umask((old | UMASK) as libc::mode_t) };
    old
}

pub async fn run(args: RunArgs, global: &Global) -> anyhow::Result<u8> {
    tighten_umask();
    // Config pushes: finish what a crash left (a pending push continues its window, a crash
    // loop or an unloadable pending config rolls back) before the config is loaded.
    let mut owner = push_owner(&global.config);
    let mut reports = owner.as_mut().map(|o| o.recover()).unwrap_or_default();
    let mut first = config::load_file(&global.config);
    if let (Err(e), Some(o)) = (&first, owner.as_mut()) {
        if let Some(report) = o.rollback_unloadable(&e.to_string()) {
            reports.push(report);
            first = config::load_file(&global.config);
        }
    }
    let loaded = match first {
        Ok(l) => l,
        Err(e) => {
            super::init_logging(global.log_level.as_deref().unwrap_or("info"));
            for n in owner
                .as_mut()
                .map(PushOwner::take_notes)
                .unwrap_or_default()
            {
                tracing::warn!("{n}");
            }
            eprintln!("gasdtu run: refusing to start: {e}");
            // Every error is printed (at most config::MAX_ERRORS and a count), escaped.
            print_errors(&e, |m| eprintln!("error: {m}"));
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
    for n in owner
        .as_mut()
        .map(PushOwner::take_notes)
        .unwrap_or_default()
    {
        tracing::warn!("{n}");
    }
    for w in &loaded.warnings {
        tracing::warn!("config: {w}");
    }
    // Before anything slow: SIGHUP's default action would kill the daemon, and a SIGTERM
    // during start-up or a reload must be seen.
    let mut signals = Signals::install()?;
    let notifier = Notifier::from_env();
    let (push_tx, mut push_rx) = tokio::sync::mpsc::channel(4);
    let mut owner = owner.unwrap_or_else(|| PushOwner::new(&global.config, &loaded.config));
    let opts = Options {
        config_path: Some(global.config.clone()),
        poll_now: args.poll_now,
        socket: Some(args.socket.clone()),
        notifier: notifier.clone(),
        pushes: Some(push_tx),
        ..Options::default()
    };
    let mut gw = match Gateway::start(loaded.config, opts).await {
        Ok(gw) => gw,
        Err(e) => {
            eprintln!("gasdtu run: {e}");
            tracing::error!("refusing to start: {e}");
            return Ok(1);
        }
    };
    tracing::info!(config = %global.config.display(), "ready");
    notifier.ready();

    for body in reports {
        let mut ev = serde_json::json!({"event": "config_push", "status": body["status"],
            "reason": body["reason"], "at_start": true});
        // The push the report is about and the version in force, when the report names them.
        for (k, v) in [
            ("version", &body["push"]["version"]),
            ("sha256", &body["push"]["sha256"]),
            ("running_version", &body["version"]),
        ] {
            if v.as_str().is_some_and(|s| !s.is_empty()) {
                ev[k] = v.clone();
            }
        }
        push::queue(&gw, body, ev).await;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut link = gw.link();
    loop {
        let pending = owner.is_pending();
        tokio::select! {
            ask = signals.next() => if ask != SignalAsk::Reload { break },
            Some(job) = push_rx.recv() => {
                owner.handle(job, &mut gw).await;
                continue;
            }
            // A pending push is confirmed as soon as a PUBACK is seen, not at the next tick.
            Ok(()) = link.changed(), if pending => {
                owner.tick(&mut gw).await;
                continue;
            }
            _ = tick.tick() => {
                owner.tick(&mut gw).await;
                continue;
            }
        }
        notifier.reloading();
        // A push pending confirmation ends when the file was edited on site: the local edit
        // takes over (reported), whether or not it then loads.
        owner.local_edit(&gw, "SIGHUP").await;
        match try_reload(&global.config, gw.config()) {
            Reload::Refused(e) => {
                tracing::error!("reload refused, the running config stays in force: {e}");
                print_errors(&e, |m| tracing::error!("reload: {m}"));
            }
            Reload::Unchanged => tracing::info!("reload: config unchanged"),
            Reload::Apply(l) => {
                for w in &l.warnings {
                    tracing::warn!("config: {w}");
                }
                // `apply` logs what it changed and what waits for a restart.
                gw.apply(l.config, "file").await;
            }
        }
        notifier.ready();
    }

    let report = gw.shutdown().await;
    Ok(if report.consumer.uncommitted_batches > 0 {
        1
    } else {
        0
    })
}

/// The push owner for the config at `path`, found before the config is validated: the state
/// directory is read from the raw TOML (`gateway.state_dir`, else the default), so a pending
/// push whose config does not load can still be rolled back. None when the file is unreadable.
fn push_owner(path: &std::path::Path) -> Option<PushOwner> {
    let text = config::read_bounded(path, config::MAX_CONFIG_BYTES).ok()?;
    let text = String::from_utf8(text).ok()?;
    let raw: toml::Table = toml::from_str(&text).ok()?;
    let state_dir = raw
        .get("gateway")
        .and_then(|g| g.get("state_dir"))
        .and_then(|s| s.as_str())
        .unwrap_or(config::DEFAULT_STATE_DIR);
    let keep = raw
        .get("remote")
        .and_then(|r| r.get("keep_configs"))
        .and_then(|k| k.as_integer())
        .and_then(|k| usize::try_from(k).ok())
        .filter(|k| (1..=config::MAX_KEEP_CONFIGS as usize).contains(k))
        .unwrap_or(5);
    Some(PushOwner::with_state_dir(
        path,
        std::path::Path::new(state_dir),
        keep,
    ))
}

fn print_errors(e: &config::LoadError, mut out: impl FnMut(&str)) {
    if let config::LoadError::Invalid { errors, .. } = e {
        for err in errors {
            out(&err.to_string());
        }
    }
}
