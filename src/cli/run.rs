//! `gasdtu run`: the daemon verb. Loads and validates the config (refusing to start on errors,
//! with every error printed), starts the gateway runtime (`crate::gateway`), tells systemd it
//! is ready, and turns signals into runtime calls: SIGHUP re-reads the file with the code of
//! `gasdtu check` and hands a valid, changed config to `Gateway::apply`; SIGTERM/SIGINT stop
//! it. The signal handlers are installed once, before anything slow, so none is ever lost.
//! First of all it tightens the umask to 027, so nothing it creates is world-readable, and
//! refuses root in a state directory another user owns (`--allow-root-store`). A config
//! with `[gateway] commissioned = false` (the shipped example) makes it idle: nothing is
//! opened or polled, the watchdog is fed, and a reload that commissions the file starts it.

use super::Global;
use crate::config;
use crate::gateway::push::PushOwner;
use crate::gateway::systemd::{try_reload, Notifier, Reload, SignalAsk, Signals};
use crate::gateway::{Gateway, Options};
use crate::store::access;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Poll every device once right away instead of waiting for its first aligned slot.
    #[arg(long)]
    pub poll_now: bool,
    /// Unix socket where `gasdtu status` reaches the daemon [default: `[gateway] socket`, else
    /// /run/gasdtu/gasdtu.sock, else $XDG_RUNTIME_DIR/gasdtu.sock or <state_dir>/gasdtu.sock].
    #[arg(long)]
    pub socket: Option<std::path::PathBuf>,
    /// As root, open the store even in a state directory that another user (the service's
    /// `gasdtu`) owns; the files root creates there are then root's.
    #[arg(long)]
    pub allow_root_store: bool,
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
    // Root in the service's state directory: refused before anything is written there (the
    // push recovery below writes too).
    let raw = super::socket::raw_gateway(&global.config);
    if let Some(r) = &raw {
        if let Err(e) = access::check_root_in_foreign_dir(&r.state_dir, args.allow_root_store) {
            eprintln!("gasdtu run: {e}");
            return Ok(1);
        }
    }
    // Config pushes: finish what a crash left (a pending push continues its window, a crash
    // loop or an unloadable pending config rolls back) before the config is loaded.
    let mut owner = push_owner(&global.config, raw.as_ref());
    if let Some(o) = owner.as_mut() {
        o.recover();
    }
    let mut first = config::load_file(&global.config);
    if let (Err(e), Some(o)) = (&first, owner.as_mut()) {
        if o.rollback_unloadable(&e.to_string()) {
            first = config::load_file(&global.config);
        }
    }
    let mut loaded = match first {
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
    if !loaded.config.gateway.commissioned {
        match idle(&global.config, &mut signals, &notifier).await {
            Some(l) => loaded = l,
            None => return Ok(0),
        }
    }
    let state_dir = &loaded.config.gateway.state_dir;
    if let Err(e) = access::check_root_in_foreign_dir(state_dir, args.allow_root_store) {
        eprintln!("gasdtu run: {e}");
        tracing::error!("refusing to start: {e}");
        return Ok(1);
    }
    let (socket, source) =
        super::socket::for_daemon(args.socket.as_deref(), &loaded.config.gateway);
    if let super::socket::Source::Fallback(what) = source {
        tracing::info!(socket = %socket.display(),
            "status socket in {what}: {} is missing or not writable for this user",
            crate::gateway::status_socket::DEFAULT_SOCKET);
    }
    let (push_tx, mut push_rx) = tokio::sync::mpsc::channel(4);
    let mut owner = owner.unwrap_or_else(|| PushOwner::new(&global.config, &loaded.config));
    let opts = Options {
        config_path: Some(global.config.clone()),
        poll_now: args.poll_now,
        socket: Some(socket),
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

    // What the recovery (or an earlier process killed before it could) still has to report.
    owner.report_owed(&gw, true).await;
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
            // Only while a push awaits confirmation: an idle daemon has no 1 s wake-up.
            _ = tick.tick(), if pending => {
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
            // A running gateway is not idled by a reload: that takes a restart.
            Reload::Apply(l) if !l.config.gateway.commissioned => {
                tracing::error!("reload refused, the running config stays in force: {} sets [gateway] commissioned = false; restart the service to idle it", global.config.display());
            }
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

/// The message of an idle daemon (journal, STATUS= and `gasdtu status`).
pub fn not_commissioned(path: &std::path::Path) -> String {
    format!(
        "NOT COMMISSIONED: {} has [gateway] commissioned = false; polling nothing, sending \
         nothing. Edit it, set commissioned = true, check it (gasdtu check), then reload \
         (systemctl reload gasdtu)",
        path.display()
    )
}

/// Not commissioned: poll nothing, open nothing (the buses stay free for `gasdtu read` and
/// `scan`), keep systemd's watchdog fed, and wait for a reload that commissions the config
/// (returned) or a stop (None). A reload that fails to load, or is still not commissioned,
/// keeps idling.
async fn idle(
    path: &std::path::Path,
    signals: &mut Signals,
    notifier: &Notifier,
) -> Option<config::Loaded> {
    let msg = not_commissioned(path);
    tracing::warn!("{msg}");
    notifier.ready();
    notifier.status(&msg);
    // Never zero: tokio's interval panics on a zero period.
    let every = notifier
        .watchdog_enabled()
        .map(|d| (d / 2).max(std::time::Duration::from_millis(100)))
        .unwrap_or(std::time::Duration::from_secs(3600));
    let mut ping = tokio::time::interval(every);
    loop {
        tokio::select! {
            ask = signals.next() => if ask != SignalAsk::Reload {
                notifier.stopping();
                return None;
            },
            _ = ping.tick() => { notifier.watchdog(); continue; }
        }
        notifier.reloading();
        match config::load_file(path) {
            Ok(l) if l.config.gateway.commissioned => {
                tracing::info!("reload: commissioned, starting");
                return Some(l);
            }
            Ok(_) => tracing::warn!("reload: still not commissioned; idling"),
            Err(e) => {
                tracing::error!("reload refused, still idling: {e}");
                print_errors(&e, |m| tracing::error!("reload: {m}"));
            }
        }
        notifier.ready();
        notifier.status(&msg);
    }
}

/// The push owner for the config at `path`, found before the config is validated: the state
/// directory is read from the raw TOML (`gateway.state_dir` resolved against the config's
/// directory, else the default), so a pending push whose config does not load can still be
/// rolled back. None when the file is unreadable.
fn push_owner(path: &std::path::Path, gw: Option<&super::socket::RawGateway>) -> Option<PushOwner> {
    let state_dir = gw?.state_dir.clone();
    let text = config::read_bounded(path, config::MAX_CONFIG_BYTES).ok()?;
    let text = String::from_utf8(text).ok()?;
    let raw: toml::Table = toml::from_str(&text).ok()?;
    let keep = raw
        .get("remote")
        .and_then(|r| r.get("keep_configs"))
        .and_then(|k| k.as_integer())
        .and_then(|k| usize::try_from(k).ok())
        .filter(|k| (1..=config::MAX_KEEP_CONFIGS as usize).contains(k))
        .unwrap_or(5);
    Some(PushOwner::with_state_dir(path, &state_dir, keep))
}

fn print_errors(e: &config::LoadError, mut out: impl FnMut(&str)) {
    if let config::LoadError::Invalid { errors, .. } = e {
        for err in errors {
            out(&err.to_string());
        }
    }
}
