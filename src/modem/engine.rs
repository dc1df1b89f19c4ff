//! The AT engine: the ONE task that owns the modem's serial port (`AtEngine::run`), and the
//! cloneable `AtHandle` every other part of the daemon talks AT through. Commands wait in three
//! bounded queues, one per `at_class::Priority`: socket commands (whoever sends them; the
//! bridge's traffic) go first, then the field tools' (`AtHandle::with_priority`), then the
//! supervisor's; within a queue, in arrival order. One command is on the wire at a time, so a
//! long command already sent still holds the port until its deadline, but a queued one never
//! delays a socket command that arrives after it. Each gets the deadline of the core's
//! timeout table (`timeouts::timeout_for`). The engine also tracks whether a module socket is
//! open (`AtHandle::socket_open`): a successful open-class command sets it, any close-class
//! command, a boot URC or a port reopen clears it (the bridge serves one socket at a time).
//! URCs are broadcast whenever they arrive, including between a command's lines and its final
//! result. The engine carries the field quirks: a module idle longer than `wake_after` is
//! woken with a bare `AT` first; a safe command answered only by a bare CRLF (the module
//! slept) is retried once after `timeouts::SLEEP_RETRY`; nothing at all before the deadline is `AtError::Silent` (hang
//! suspected: the supervisor's reset ladder decides). A port that fails or vanishes (USB
//! modules re-enumerate) is reopened with backoff, and every reopen bumps `port_opens`.
//! It never interprets replies (that is the supervisor's, with the pure `reply` parsers) and
//! never retries a command that may have side effects.

use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::at::{AtParser, Event, Exchange, Final, Partial, Request, Urc, UrcKind};
use super::at_class::{self, AtClass, Priority, SocketOp};
use super::timeouts::{safe_to_retry, timeout_for, SLEEP_RETRY};

/// Requests waiting for the port, per priority (callers wait for a slot beyond this).
pub const QUEUE: usize = 32;
/// URCs kept for a slow subscriber before it lags.
pub const URC_BUFFER: usize = 64;
/// Longest command text accepted: a hex socket send of 512 bytes (`AT+NSOSD=<s>,512,<1024
/// hex digits>`, BC95/SIM7020) must fit; modules take lines up to about 2 KiB.
pub const MAX_COMMAND: usize = 2048;
/// Reopen backoff bounds.
const REOPEN_MIN: Duration = Duration::from_millis(100);
const REOPEN_MAX: Duration = Duration::from_secs(5);

/// Why a command got no usable reply.
#[derive(Debug, Error)]
pub enum AtError {
    /// The deadline passed after part of a reply (or a bare CRLF) arrived.
    #[error("{cmd}: no final result within {after:?}")]
    Timeout { cmd: String, after: Duration },
    /// Not one byte arrived for the command before its deadline: the module may hang.
    #[error("{cmd}: the module sent nothing at all (hang suspected)")]
    Silent { cmd: String },
    /// `+CME ERROR: <code>` (and `+CMS ERROR`).
    #[error("{cmd}: +CME ERROR {code}")]
    Cme { cmd: String, code: u16 },
    /// Plain `ERROR`.
    #[error("{cmd}: ERROR")]
    Error { cmd: String },
    /// `SEND FAIL` after a prompt send.
    #[error("{cmd}: SEND FAIL")]
    SendFail { cmd: String },
    /// A payload send was answered with a success but no `"> "` prompt: nothing was sent.
    #[error("{cmd}: answered without the \"> \" prompt; the payload was not sent")]
    NoPrompt { cmd: String },
    /// The command is not something to write to a module.
    #[error("{cmd:?}: {why}")]
    Invalid { cmd: String, why: &'static str },
    /// The serial port cannot be opened, read or written.
    #[error("modem port {port}: {source}")]
    Port {
        port: String,
        #[source]
        source: std::io::Error,
    },
    /// The engine stopped.
    #[error("the AT engine has stopped")]
    Closed,
}

impl AtError {
    /// Whether the module did not answer at all or in part (the ladder's "unresponsive").
    pub fn unresponsive(&self) -> bool {
        matches!(
            self,
            AtError::Timeout { .. } | AtError::Silent { .. } | AtError::Port { .. }
        )
    }
}

struct Job {
    cmd: String,
    class: AtClass,
    payload: Option<Bytes>,
    reply: oneshot::Sender<Result<Exchange, AtError>>,
}

/// The way to the engine: cloneable, cheap.
#[derive(Clone)]
pub struct AtHandle {
    /// One queue per priority, indexed by `Priority as usize`.
    tx: [mpsc::Sender<Job>; 3],
    /// The priority of this handle's non-socket commands.
    caller: Priority,
    urcs: broadcast::Sender<Urc>,
    opens: watch::Receiver<u64>,
    silences: watch::Receiver<u64>,
    socket_open: watch::Receiver<bool>,
}

impl AtHandle {
    /// The same engine, with `caller`'s priority for commands that are not socket commands
    /// (handles start at `Priority::Supervisor`).
    pub fn with_priority(&self, caller: Priority) -> AtHandle {
        AtHandle {
            caller,
            ..self.clone()
        }
    }

    /// Whether a module socket is open (as far as the commands through this engine tell).
    pub fn socket_open(&self) -> watch::Receiver<bool> {
        self.socket_open.clone()
    }

    /// Send `cmd` (without CR) and wait for its reply; `Ok` only for a success result.
    pub async fn call(&self, cmd: &str) -> Result<Exchange, AtError> {
        self.submit(cmd, None).await
    }

    /// Send `cmd`, wait for the `"> "` prompt, write `data`, and return the exchange that
    /// ends the send (`SEND OK`, or `OK` for modules that answer so).
    pub async fn call_with_payload(&self, cmd: &str, data: Bytes) -> Result<Exchange, AtError> {
        self.submit(cmd, Some(data)).await
    }

    async fn submit(&self, cmd: &str, payload: Option<Bytes>) -> Result<Exchange, AtError> {
        let cmd = cmd.trim_end_matches(['\r', '\n']).to_string();
        if cmd.len() > MAX_COMMAND || cmd.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(AtError::Invalid {
                cmd: cmd.chars().take(64).collect(),
                why: "too long or contains a line break",
            });
        }
        if !cmd.to_ascii_uppercase().starts_with("AT") {
            return Err(AtError::Invalid {
                cmd,
                why: "not an AT command",
            });
        }
        let class = at_class::classify(&cmd);
        let queue = &self.tx[at_class::priority(self.caller, class) as usize];
        let (reply, rx) = oneshot::channel();
        queue
            .send(Job {
                cmd,
                class,
                payload,
                reply,
            })
            .await
            .map_err(|_| AtError::Closed)?;
        rx.await.map_err(|_| AtError::Closed)?
    }

    /// Every URC from now on (a lagging receiver loses the oldest).
    pub fn urcs(&self) -> broadcast::Receiver<Urc> {
        self.urcs.subscribe()
    }

    /// Commands (of any caller) that got nothing at all back: changes on every such one.
    pub fn silences(&self) -> watch::Receiver<u64> {
        self.silences.clone()
    }

    /// How many times the port was (re)opened; changes when it reopens.
    pub fn port_opens(&self) -> watch::Receiver<u64> {
        self.opens.clone()
    }
}

/// Tunables (tests shorten them).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Idle longer than this: wake the module with a bare `AT` before the next command.
    pub wake_after: Duration,
    /// Scale applied to the timeout table (1.0 in the daemon).
    pub timeout_scale: f64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            wake_after: Duration::from_secs(20),
            timeout_scale: 1.0,
        }
    }
}

/// The task that owns the port.
pub struct AtEngine {
    port: String,
    baud: u32,
    opts: EngineOptions,
    rx: [mpsc::Receiver<Job>; 3],
    urcs: broadcast::Sender<Urc>,
    opens: watch::Sender<u64>,
    silences: watch::Sender<u64>,
    socket_open: watch::Sender<bool>,
    parser: AtParser,
    /// When a command last went out: modules sleep on host silence (their URCs do not
    /// count).
    last_write: Instant,
}

enum Stop {
    Shutdown,
    Lost(std::io::Error),
}

impl AtEngine {
    /// An engine for `port` at `baud`, and the handle to it.
    pub fn new(port: impl Into<String>, baud: u32, opts: EngineOptions) -> (AtEngine, AtHandle) {
        let (tx0, rx0) = mpsc::channel(QUEUE);
        let (tx1, rx1) = mpsc::channel(QUEUE);
        let (tx2, rx2) = mpsc::channel(QUEUE);
        let (urcs, _) = broadcast::channel(URC_BUFFER);
        let (opens, opens_rx) = watch::channel(0);
        let (silences, silences_rx) = watch::channel(0);
        let (socket_open, socket_open_rx) = watch::channel(false);
        let engine = AtEngine {
            port: port.into(),
            baud,
            opts,
            rx: [rx0, rx1, rx2],
            urcs: urcs.clone(),
            opens,
            silences,
            socket_open,
            parser: AtParser::new(),
            last_write: Instant::now(),
        };
        let handle = AtHandle {
            tx: [tx0, tx1, tx2],
            caller: Priority::Supervisor,
            urcs,
            opens: opens_rx,
            silences: silences_rx,
            socket_open: socket_open_rx,
        };
        (engine, handle)
    }

    fn port_error(&self, source: std::io::Error) -> AtError {
        AtError::Port {
            port: self.port.clone(),
            source,
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = REOPEN_MIN;
        let mut reported = false;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            match tokio_serial::new(&self.port, self.baud).open_native_async() {
                Ok(stream) => {
                    info!(port = %self.port, baud = self.baud, "modem port open");
                    backoff = REOPEN_MIN;
                    reported = false;
                    self.parser = AtParser::new();
                    // A freshly opened port: the module may be asleep.
                    self.last_write = Instant::now()
                        .checked_sub(self.opts.wake_after)
                        .unwrap_or_else(Instant::now);
                    self.opens.send_modify(|n| *n += 1);
                    // The module may have restarted while the port was away.
                    self.socket_open
                        .send_if_modified(|o| std::mem::replace(o, false));
                    match self.serve(stream, &shutdown).await {
                        Stop::Shutdown => break,
                        Stop::Lost(e) => {
                            warn!(port = %self.port, "modem port lost: {e}; reopening")
                        }
                    }
                }
                Err(e) => {
                    if !reported {
                        warn!(port = %self.port, "cannot open the modem port: {e}; retrying");
                        reported = true;
                    }
                    // Callers get the error now rather than waiting for a port that may
                    // never come back.
                    let until = Instant::now() + backoff;
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep_until(until) => break,
                            job = next_job(&mut self.rx) => match job {
                                Some(job) => {
                                    let err = std::io::Error::other(e.to_string());
                                    let _ = job.reply.send(Err(self.port_error(err)));
                                }
                                None => return,
                            },
                        }
                    }
                    backoff = (backoff * 2).min(REOPEN_MAX);
                    continue;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(REOPEN_MAX);
        }
    }

    /// Serve jobs on an open port until it fails or shutdown.
    async fn serve(&mut self, mut stream: SerialStream, shutdown: &CancellationToken) -> Stop {
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Stop::Shutdown,
                r = stream.read(&mut buf) => match r {
                    Ok(0) => return Stop::Lost(std::io::Error::other("end of file")),
                    Ok(n) => {
                        let events = self.parser.feed(&buf[..n]);
                        self.dispatch(events);
                    }
                    Err(e) => return Stop::Lost(e),
                },
                job = next_job(&mut self.rx) => {
                    let Some(job) = job else { return Stop::Shutdown };
                    let (result, stop) = self.run_job(&mut stream, &job, shutdown).await;
                    self.track_socket(job.class, result.is_ok());
                    // Any caller's command that got no byte at all (the socket bridge's too)
                    // tells the supervisor at once: a hang is not left to its next poll.
                    if matches!(result, Err(AtError::Silent { .. })) {
                        self.silences.send_modify(|n| *n += 1);
                    }
                    let _ = job.reply.send(result);
                    if let Some(stop) = stop {
                        return stop;
                    }
                }
            }
        }
    }

    /// A successful open marks a module socket open; any close (answered or not) marks none.
    fn track_socket(&self, class: AtClass, ok: bool) {
        let now = match class {
            AtClass::Socket(SocketOp::Open) if ok => true,
            AtClass::Socket(SocketOp::Close) => false,
            _ => return,
        };
        self.socket_open
            .send_if_modified(|o| std::mem::replace(o, now) != now);
    }

    /// URCs go out; anything else outside a command is noted.
    fn dispatch(&mut self, events: Vec<Event>) -> Option<Exchange> {
        let mut done = None;
        for ev in events {
            match ev {
                Event::Urc(u) => {
                    debug!(line = %u.line, "modem URC");
                    if u.kind == Some(UrcKind::Boot) {
                        // A restarted module has no sockets.
                        self.socket_open
                            .send_if_modified(|o| std::mem::replace(o, false));
                    }
                    let _ = self.urcs.send(u);
                }
                Event::Exchange(x) => done = Some(x),
                Event::Empty => {}
                Event::Error(e) => warn!(port = %self.port, "modem stream: {e}"),
            }
        }
        done
    }

    async fn run_job(
        &mut self,
        stream: &mut SerialStream,
        job: &Job,
        shutdown: &CancellationToken,
    ) -> (Result<Exchange, AtError>, Option<Stop>) {
        if self.last_write.elapsed() >= self.opts.wake_after && job.cmd != "AT" {
            // Wake a module that may have slept: its first reply may be a bare CRLF.
            match self
                .exchange(stream, Request::new("AT"), None, shutdown)
                .await
            {
                Ok(_) => {}
                Err(o @ Outcome::Stop(_)) => return self.failed("AT", Duration::ZERO, o),
                Err(Outcome::Partial(p)) => debug!(
                    blank = p.blank_only,
                    silent = p.silent,
                    "wake-up AT got no OK"
                ),
            }
        }
        let request = if job.payload.is_some() {
            Request::with_prompt(job.cmd.clone())
        } else {
            Request::new(job.cmd.clone())
        };
        let deadline = self.scaled(timeout_for(&job.cmd));
        let mut first = self
            .exchange(stream, request.clone(), Some(deadline), shutdown)
            .await;
        if let Err(Outcome::Partial(p)) = &first {
            if p.blank_only && safe_to_retry(&job.cmd) {
                debug!(cmd = %job.cmd, "bare CRLF only (module slept): retrying once");
                first = self
                    .exchange(stream, request, Some(deadline), shutdown)
                    .await;
            }
        }
        let x = match first {
            Ok(x) => x,
            Err(o) => return self.failed(&job.cmd, deadline, o),
        };
        let x = match (&job.payload, x.result) {
            (Some(data), Final::Prompt) => {
                if let Err(e) = self.write(stream, data).await {
                    let copy = std::io::Error::new(e.kind(), e.to_string());
                    return (Err(self.port_error(copy)), Some(Stop::Lost(e)));
                }
                match self
                    .exchange_after_write(stream, Request::payload(), deadline, shutdown)
                    .await
                {
                    Ok(x) => x,
                    Err(o) => return self.failed(&job.cmd, deadline, o),
                }
            }
            (Some(_), r) if r.is_success() => {
                return (
                    Err(AtError::NoPrompt {
                        cmd: job.cmd.clone(),
                    }),
                    None,
                )
            }
            _ => x,
        };
        (result_of(&job.cmd, x), None)
    }

    fn failed(
        &self,
        cmd: &str,
        after: Duration,
        o: Outcome,
    ) -> (Result<Exchange, AtError>, Option<Stop>) {
        match o {
            Outcome::Stop(Stop::Lost(e)) => {
                let copy = std::io::Error::new(e.kind(), e.to_string());
                (Err(self.port_error(copy)), Some(Stop::Lost(e)))
            }
            Outcome::Stop(Stop::Shutdown) => (Err(AtError::Closed), Some(Stop::Shutdown)),
            Outcome::Partial(p) if p.silent => (
                Err(AtError::Silent {
                    cmd: cmd.to_string(),
                }),
                None,
            ),
            Outcome::Partial(_) => (
                Err(AtError::Timeout {
                    cmd: cmd.to_string(),
                    after,
                }),
                None,
            ),
        }
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.opts.timeout_scale.clamp(0.001, 1000.0))
    }

    async fn write(&mut self, stream: &mut SerialStream, bytes: &[u8]) -> std::io::Result<()> {
        stream.write_all(bytes).await?;
        stream.flush().await?;
        self.last_write = Instant::now();
        Ok(())
    }

    /// Write `request` and wait for its exchange. `deadline` None: the wake-up's short wait.
    async fn exchange(
        &mut self,
        stream: &mut SerialStream,
        request: Request,
        deadline: Option<Duration>,
        shutdown: &CancellationToken,
    ) -> Result<Exchange, Outcome> {
        let text = format!("{}\r", request.text);
        let wait = deadline.unwrap_or_else(|| self.scaled(timeout_for("AT")));
        if let Some(p) = self.parser.begin(request) {
            debug!(cmd = %p.command, "abandoned command replaced");
        }
        if let Err(e) = self.write(stream, text.as_bytes()).await {
            return Err(Outcome::Stop(Stop::Lost(e)));
        }
        self.wait_exchange(stream, wait, shutdown).await
    }

    async fn exchange_after_write(
        &mut self,
        stream: &mut SerialStream,
        request: Request,
        wait: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Exchange, Outcome> {
        self.parser.begin(request);
        self.wait_exchange(stream, wait, shutdown).await
    }

    /// Read until the command in flight completes, its deadline passes, or only a bare CRLF
    /// arrived and `SLEEP_RETRY` passed without more.
    async fn wait_exchange(
        &mut self,
        stream: &mut SerialStream,
        wait: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Exchange, Outcome> {
        let started = Instant::now();
        let deadline = started + wait;
        let mut blank_at: Option<Instant> = None;
        let mut other = false;
        let mut buf = [0u8; 512];
        loop {
            let mut until = deadline;
            if let (Some(b), false) = (blank_at, other) {
                until = until.min(b + self.scaled(SLEEP_RETRY));
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Err(Outcome::Stop(Stop::Shutdown)),
                _ = tokio::time::sleep_until(until) => {
                    let p = self.parser.abort().unwrap_or(Partial {
                        command: String::new(),
                        lines: Vec::new(),
                        blank_only: false,
                        silent: true,
                    });
                    return Err(Outcome::Partial(p));
                }
                r = stream.read(&mut buf) => match r {
                    Ok(0) => return Err(Outcome::Stop(Stop::Lost(std::io::Error::other("end of file")))),
                    Ok(n) => {
                        let events = self.parser.feed(&buf[..n]);
                        // Any text after the bare CRLF (echo, a line, even a URC) ends the
                        // short after-sleep wait; the full deadline then applies, and the
                        // parser still tells a blank-only partial at the end.
                        if events.iter().any(|e| matches!(e, Event::Empty)) {
                            blank_at = blank_at.or(Some(Instant::now()));
                        }
                        if blank_at.is_some() && buf[..n].iter().any(|b| !matches!(b, b'\r' | b'\n')) {
                            other = true;
                        }
                        if let Some(x) = self.dispatch(events) {
                            return Ok(x);
                        }
                    }
                    Err(e) => return Err(Outcome::Stop(Stop::Lost(e))),
                },
            }
        }
    }
}

/// The next job, highest priority first (socket, field, supervisor); `None` once every
/// handle is gone.
async fn next_job(rx: &mut [mpsc::Receiver<Job>; 3]) -> Option<Job> {
    let [supervisor, field, socket] = rx;
    tokio::select! {
        biased;
        Some(j) = socket.recv() => Some(j),
        Some(j) = field.recv() => Some(j),
        Some(j) = supervisor.recv() => Some(j),
        else => None,
    }
}

enum Outcome {
    Stop(Stop),
    /// The deadline (or the short after-sleep wait) passed: what arrived of the command.
    Partial(Partial),
}

fn result_of(cmd: &str, x: Exchange) -> Result<Exchange, AtError> {
    let cmd = cmd.to_string();
    match x.result {
        Final::Ok | Final::SendOk | Final::Prompt => Ok(x),
        Final::Error => Err(AtError::Error { cmd }),
        Final::CmeError(code) | Final::CmsError(code) => Err(AtError::Cme { cmd, code }),
        Final::SendFail => Err(AtError::SendFail { cmd }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_map_to_errors() {
        let x = |result| Exchange {
            command: "AT+X".into(),
            lines: vec![],
            data: None,
            result,
            truncated: false,
        };
        assert!(result_of("AT+X", x(Final::Ok)).is_ok());
        assert!(result_of("AT+X", x(Final::SendOk)).is_ok());
        assert!(matches!(
            result_of("AT+X", x(Final::CmeError(10))),
            Err(AtError::Cme { code: 10, .. })
        ));
        assert!(matches!(
            result_of("AT+X", x(Final::Error)),
            Err(AtError::Error { .. })
        ));
        assert!(matches!(
            result_of("AT+X", x(Final::SendFail)),
            Err(AtError::SendFail { .. })
        ));
    }
}
