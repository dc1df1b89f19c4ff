//! Life under systemd: the `Notifier` (READY=1, STATUS=, STOPPING=1, RELOADING=1, WATCHDOG=1
//! over `NOTIFY_SOCKET`), the `Watchdog` task that pings only while every part watched by the
//! `progress` board makes progress and keeps the STATUS= line current, the pure `status_line`
//! that says what the daemon is doing, the signals (`Signals`, installed once) and the reload
//! check (`try_reload`). Without `NOTIFY_SOCKET` (run by hand) every notification is a no-op,
//! so `gasdtu run` behaves the same outside systemd.

use std::path::Path;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use super::progress::{Health, Part, Progress};
use crate::config::{self, Config, LoadError, Loaded};

/// How often the STATUS= line is recomputed (sent only when its text changes).
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Notifier

/// Sends sd_notify(3) messages to the service manager. Cheap to clone. Failures to send are
/// logged once per kind and never stop the daemon: losing a notification must not lose data.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// Explicit socket (tests); None: `NOTIFY_SOCKET` through the sd-notify crate.
    socket: Option<std::path::PathBuf>,
    /// Never send (`disabled`).
    disabled: bool,
}

impl Notifier {
    /// The notifier of this process. Reads `NOTIFY_SOCKET` at each send, so it is a no-op when
    /// the variable is absent (run from a shell, in tests without a socket).
    pub fn from_env() -> Notifier {
        Notifier {
            socket: None,
            disabled: false,
        }
    }

    /// A notifier that never sends (the demo and in-process tests: not the service).
    pub fn disabled() -> Notifier {
        Notifier {
            socket: None,
            disabled: true,
        }
    }

    /// A notifier that sends to this datagram socket whatever the environment says.
    pub fn to_socket(path: impl Into<std::path::PathBuf>) -> Notifier {
        Notifier {
            socket: Some(path.into()),
            disabled: false,
        }
    }

    /// Is a service manager listening (`NOTIFY_SOCKET` set)?
    pub fn active(&self) -> bool {
        !self.disabled && (self.socket.is_some() || std::env::var_os("NOTIFY_SOCKET").is_some())
    }

    /// READY=1: config loaded, store open, pollers running. Also after a reload.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready], "READY=1");
    }

    /// STATUS=<text>: one line saying what the daemon is doing (see `status_line`).
    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(text)], "STATUS=");
    }

    /// STOPPING=1: shutdown has begun (SIGTERM); systemd waits up to TimeoutStopSec.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping], "STOPPING=1");
    }

    /// RELOADING=1: a SIGHUP reload has begun; follow it with `ready()` whatever its outcome.
    pub fn reloading(&self) {
        self.send(&[NotifyState::Reloading], "RELOADING=1");
    }

    /// WATCHDOG=1: one keep-alive ping. `Watchdog` sends these; call it directly only in tests.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog], "WATCHDOG=1");
    }

    /// The watchdog timeout systemd asked for (`WATCHDOG_USEC`, for this process per
    /// `WATCHDOG_PID`), or None when the watchdog is off.
    pub fn watchdog_enabled(&self) -> Option<Duration> {
        if self.disabled {
            return None;
        }
        let mut usec = 0u64;
        if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
            Some(Duration::from_micros(usec))
        } else {
            None
        }
    }

    fn send(&self, state: &[NotifyState], what: &str) {
        if self.disabled {
            return;
        }
        let sent = match &self.socket {
            None => sd_notify::notify(false, state),
            Some(path) => {
                let msg: String = state.iter().map(|s| format!("{s}\n")).collect();
                std::os::unix::net::UnixDatagram::unbound()
                    .and_then(|sock| sock.send_to(msg.as_bytes(), path))
                    .map(|_| ())
            }
        };
        if let Err(e) = sent {
            let socket = match &self.socket {
                Some(p) => p.display().to_string(),
                None => std::env::var("NOTIFY_SOCKET").unwrap_or_default(),
            };
            tracing::warn!(socket = %socket, "cannot notify the service manager ({what}): {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watchdog

type StatusFn = Box<dyn Fn() -> String + Send + Sync>;

/// The task that keeps systemd informed: every `min(WatchdogSec/2, STATUS_EVERY)` it checks
/// `Progress` and sends WATCHDOG=1 only when every watched part is within its bound, and sends
/// STATUS= when the text changed. A stall is logged once when it starts and once when it ends;
/// while it lasts STATUS says which part is stalled, and systemd restarts the service when
/// WatchdogSec passes without a ping.
pub struct Watchdog {
    notifier: Notifier,
    progress: Progress,
    timeout: Option<Duration>,
    status: Option<StatusFn>,
}

impl Watchdog {
    /// Uses the watchdog timeout systemd set for this process (none: status updates only).
    pub fn new(notifier: Notifier, progress: Progress) -> Watchdog {
        let timeout = notifier.watchdog_enabled();
        Watchdog {
            notifier,
            progress,
            timeout,
            status: None,
        }
    }

    /// Where the STATUS= text comes from (typically `status_line` over live numbers).
    pub fn with_status(mut self, f: impl Fn() -> String + Send + Sync + 'static) -> Watchdog {
        self.status = Some(Box::new(f));
        self
    }

    /// Override the watchdog timeout (tests; None turns pings off).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Watchdog {
        self.timeout = timeout;
        self
    }

    /// The watchdog timeout in force, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let period = match self.timeout {
            Some(t) => (t / 2).clamp(Duration::from_millis(10), STATUS_EVERY),
            None => STATUS_EVERY,
        };
        if let Some(t) = self.timeout {
            tracing::info!(timeout = ?t, ping_every = ?period, "systemd watchdog enabled");
        }
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Nobody to tell (run by hand, no NOTIFY_SOCKET): the STATUS text (live counters, a
        // store stat, two file sizes) is not built at all; stalls are still logged.
        let status = self.status.as_ref().filter(|_| self.notifier.active());
        let mut last_status = String::new();
        let mut stalled = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let health = self.progress.health();
            let mut text = status.map(|f| f()).unwrap_or_default();
            match &health {
                Health::Ok => {
                    if stalled {
                        tracing::warn!("progress resumed; watchdog pings resume");
                        stalled = false;
                    }
                    if self.timeout.is_some() {
                        self.notifier.watchdog();
                    }
                }
                Health::Stalled { part, silent_for } => {
                    if !stalled {
                        tracing::error!(
                            part = %part,
                            silent_for = ?silent_for,
                            "{part} made no progress for {}: watchdog pings stop{}",
                            human_duration(*silent_for),
                            if self.timeout.is_some() { ", systemd will restart the service" } else { "" }
                        );
                        stalled = true;
                    }
                    text = stalled_line(part, *silent_for, &text);
                }
            }
            if status.is_some() && text != last_status {
                self.notifier.status(&text);
                last_status = text;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// STATUS= text

/// State of the uplink as the STATUS line shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFacts {
    Up,
    /// Not connected (yet, or any more) for this long.
    Down(Duration),
    /// `session = "on_demand"`: between sessions by design for this long.
    Asleep(Duration),
}

/// The numbers the STATUS line is made of. `None` leaves a part out (no store yet, no uplink).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusFacts {
    /// Enabled devices being polled.
    pub devices: usize,
    /// Of those, currently offline.
    pub offline: usize,
    /// Readings waiting in the outbox.
    pub backlog: Option<u64>,
    /// The store cannot commit: read batches are held in memory.
    pub store_failing: bool,
    pub link: Option<LinkFacts>,
    /// With `[modem]`: `modem::status::status_phrase` (e.g. "modem registered, RSRP -85 dBm").
    pub modem: Option<String>,
}

impl StatusFacts {
    /// Devices and offline count from the status board (`devices` = enabled devices; a device
    /// not yet polled counts as online).
    pub fn from_board(
        board: &crate::gateway::status_socket::DeviceBoard,
        devices: usize,
    ) -> StatusFacts {
        let offline = board.snapshot().values().filter(|d| !d.online).count();
        StatusFacts {
            devices,
            offline: offline.min(devices),
            backlog: None,
            store_failing: false,
            link: None,
            modem: None,
        }
    }
}

/// "polling 12 devices, 3 offline, backlog 1.2k readings, link down 4m".
pub fn status_line(f: &StatusFacts) -> String {
    let mut parts = Vec::new();
    parts.push(match f.devices {
        0 => "no devices enabled".to_string(),
        1 => "polling 1 device".to_string(),
        n => format!("polling {n} devices"),
    });
    if f.offline > 0 {
        parts.push(if f.offline == f.devices && f.devices > 1 {
            "all offline".to_string()
        } else {
            format!("{} offline", f.offline)
        });
    }
    if f.store_failing {
        parts.push("STORE FAILING, readings held in memory".to_string());
    }
    if let Some(n) = f.backlog {
        parts.push(match n {
            0 => "backlog empty".to_string(),
            1 => "backlog 1 reading".to_string(),
            n => format!("backlog {} readings", compact_count(n)),
        });
    }
    match f.link {
        Some(LinkFacts::Up) => parts.push("link up".to_string()),
        Some(LinkFacts::Down(d)) => parts.push(format!("link down {}", human_duration(d))),
        Some(LinkFacts::Asleep(d)) => parts.push(format!("link asleep {}", human_duration(d))),
        None => {}
    }
    if let Some(m) = &f.modem {
        parts.push(m.clone());
    }
    parts.join(", ")
}

/// The STATUS line while a part is stalled.
pub fn stalled_line(part: &Part, silent_for: Duration, usual: &str) -> String {
    let head = format!("STALLED: {part} silent for {}", human_duration(silent_for));
    if usual.is_empty() {
        head
    } else {
        format!("{head}; {usual}")
    }
}

/// 999, 1.2k, 12k, 120k, 1.2M.
pub fn compact_count(n: u64) -> String {
    fn one(n: u64, unit: u64, suffix: &str) -> String {
        let tenths = (n * 10 + unit / 2) / unit;
        if tenths < 100 {
            format!("{}.{}{suffix}", tenths / 10, tenths % 10)
        } else {
            format!("{}{suffix}", (n + unit / 2) / unit)
        }
    }
    match n {
        0..=999 => n.to_string(),
        1_000..=999_499 => one(n, 1_000, "k"),
        1_000_000..=999_499_999 => one(n, 1_000_000, "M"),
        _ if n < 1_000_000 => one(n, 1_000_000, "M"),
        _ => one(n, 1_000_000_000, "G"),
    }
}

/// Coarse human duration: 45s, 4m, 2h13m, 3d4h.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => match (s / 3600, (s % 3600) / 60) {
            (h, 0) => format!("{h}h"),
            (h, m) => format!("{h}h{m}m"),
        },
        _ => match (s / 86_400, (s % 86_400) / 3600) {
            (d, 0) => format!("{d}d"),
            (d, h) => format!("{d}d{h}h"),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// SIGHUP reload

/// What a signal asks the daemon to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalAsk {
    /// SIGTERM or SIGINT: stop.
    Stop,
    /// SIGHUP: reload the config file.
    Reload,
}

/// SIGTERM, SIGINT and SIGHUP, installed ONCE for the life of the process, so a signal that
/// arrives while the daemon is busy (a SIGTERM during a reload) is kept and seen next, never
/// lost. Install it before READY=1: until a handler is installed, SIGHUP's default action
/// terminates the process, and `systemctl reload` would kill the daemon.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Install the handlers (needs a tokio runtime).
    pub fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// The next signal. A stop wins over a reload delivered at the same time; several pending
    /// SIGHUPs coalesce into one reload.
    pub async fn next(&mut self) -> SignalAsk {
        #[cfg(unix)]
        {
            tokio::select! {
                biased;
                Some(()) = self.term.recv() => SignalAsk::Stop,
                Some(()) = self.int.recv() => SignalAsk::Stop,
                Some(()) = self.hup.recv() => SignalAsk::Reload,
                else => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            SignalAsk::Stop
        }
    }

    /// Resolves at the next SIGTERM or SIGINT (SIGHUPs are ignored: for `demo`).
    pub async fn stop(&mut self) {
        while self.next().await != SignalAsk::Stop {}
    }
}

/// What a reload request came to.
#[derive(Debug)]
pub enum Reload {
    /// The file validates to the config already running: nothing to do.
    Unchanged,
    /// A valid, different config: apply it (warnings to log).
    Apply(Box<Loaded>),
    /// The file is unreadable or invalid: keep running the old config, log every error.
    Refused(LoadError),
}

/// Read and validate `path` with the same loader as `gasdtu check`, and compare it with the
/// running config. Never touches the running state: the caller applies or logs.
pub fn try_reload(path: &Path, running: &Config) -> Reload {
    match config::load_file(path) {
        Err(e) => Reload::Refused(e),
        Ok(l) if &l.config == running => Reload::Unchanged,
        Ok(l) => Reload::Apply(Box::new(l)),
    }
}

/// Did systemd connect our stderr to the journal? `JOURNAL_STREAM` is "<dev>:<inode>" of the
/// stream systemd set up; it only counts when it is still our stderr (not inherited by a child
/// whose stderr was redirected).
pub fn journal_stream_is(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.split_once(':') else {
        return false;
    };
    matches!((d.parse::<u64>(), i.parse::<u64>()), (Ok(d), Ok(i)) if d == dev && i == ino)
}

/// Is stderr the journal stream systemd gave this service?
pub fn stderr_is_journal() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let Some(js) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some(js) = js.to_str() else {
            return false;
        };
        let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
            return false;
        };
        let Ok(meta) = std::fs::File::from(fd).metadata() else {
            return false;
        };
        journal_stream_is(js, meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        false
    }
}

#[cfg(test)]
#[path = "systemd_tests.rs"]
mod tests;
