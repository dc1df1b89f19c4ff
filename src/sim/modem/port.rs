//! The modem simulator's runner: one task owns the serial line (a real port or one end of a pty
//! pair) and the `Modem` state machine, feeds it received bytes, timer ticks, socket events and
//! control commands, and carries out what it asks: serial writes (in order, each after its
//! delay; the line is not read while a delayed reply is outstanding, like a busy module),
//! paced TCP connections (`link::NetSocket`, 127.0.0.1 only) and their closing. A port that
//! fails or vanishes is reopened with backoff; the module's state survives it.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::control::{self, ControlRequest, ControlServer};
use super::core::{Modem, NetEvent, Out, Settings};
use super::link::{LinkSpec, NetSocket, Uplink};

const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Socket events waiting for the module; a full queue holds the sockets back (backpressure
/// down to TCP), so a host that stops reading cannot make the simulator grow.
const EVENT_QUEUE: usize = 256;
/// Longest the loop sleeps without a reason (keeps timers honest after clock jumps).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Everything the runner needs.
#[derive(Debug, Clone)]
pub struct ModemSimConfig {
    pub settings: Settings,
    pub port: String,
    pub baud: u32,
    pub link: LinkSpec,
    pub control: Option<PathBuf>,
}

/// A TCP connection behind a module socket, as the runner holds it.
struct Conn {
    uplink: Option<mpsc::UnboundedSender<Uplink>>,
    cut: CancellationToken,
}

/// The simulated module task.
pub struct ModemServer {
    cfg: ModemSimConfig,
    shutdown: CancellationToken,
    control: Option<ControlServer>,
    control_rx: mpsc::Receiver<ControlRequest>,
}

enum Stop {
    Shutdown,
    Lost(String),
}

impl ModemServer {
    /// Set up the module; binds the control socket now so its errors reach the caller.
    pub fn new(cfg: ModemSimConfig, shutdown: CancellationToken) -> std::io::Result<ModemServer> {
        let (tx, control_rx) = mpsc::channel(16);
        let control = match &cfg.control {
            Some(path) => Some(ControlServer::bind(path.clone(), tx, shutdown.clone())?),
            None => None,
        };
        Ok(ModemServer {
            cfg,
            shutdown,
            control,
            control_rx,
        })
    }

    fn open(&self) -> Result<SerialStream, tokio_serial::Error> {
        tokio_serial::new(&self.cfg.port, self.cfg.baud).open_native_async()
    }

    pub async fn run(mut self) {
        if let Some(c) = self.control.take() {
            tokio::spawn(c.run());
        }
        let mut modem = Modem::new(self.cfg.settings.clone(), Instant::now().into_std());
        let (ev_tx, mut ev_rx) = mpsc::channel(EVENT_QUEUE);
        let mut conns: HashMap<u64, Conn> = HashMap::new();
        let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        let port = self.cfg.port.clone();
        let mut backoff = Duration::from_millis(100);
        let mut reported = false;
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            match self.open() {
                Ok(stream) => {
                    info!(port = %port, model = %modem.model(), "simulated modem on serial port");
                    backoff = Duration::from_millis(100);
                    reported = false;
                    let stop = self
                        .serve(
                            stream, &mut modem, &mut conns, &mut queue, &ev_tx, &mut ev_rx,
                        )
                        .await;
                    match stop {
                        Stop::Shutdown => break,
                        Stop::Lost(why) => {
                            warn!(port = %port, "modem serial port lost: {why}; reopening")
                        }
                    }
                }
                Err(e) if !reported => {
                    warn!(port = %port, "cannot open modem serial port: {e}; retrying with backoff");
                    reported = true;
                }
                Err(e) => debug!(port = %port, "cannot open modem serial port: {e}"),
            }
            // Without a line the module still lives: control commands, socket events and
            // timers go on; what it prints meanwhile is lost, like on a UART with nothing
            // attached.
            let wake = Instant::now() + backoff;
            loop {
                for o in modem.take_out() {
                    self.perform(o, &mut conns, &mut queue, &ev_tx);
                }
                queue.clear();
                let timer = modem.next_deadline().map(Instant::from_std).unwrap_or(wake);
                tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(wake) => break,
                    Some(ev) = ev_rx.recv() => modem.on_net(ev, Instant::now().into_std()),
                    Some((cmd, reply)) = self.control_rx.recv() => {
                        info!(?cmd, "modem control");
                        let _ = reply.send(control::apply(&mut modem, cmd, Instant::now().into_std()));
                    }
                    _ = tokio::time::sleep_until(timer.min(wake)) => modem.tick(Instant::now().into_std()),
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        for c in conns.values() {
            c.cut.cancel();
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &mut self,
        mut stream: SerialStream,
        modem: &mut Modem,
        conns: &mut HashMap<u64, Conn>,
        queue: &mut VecDeque<(Instant, Vec<u8>)>,
        ev_tx: &mpsc::Sender<NetEvent>,
        ev_rx: &mut mpsc::Receiver<NetEvent>,
    ) -> Stop {
        let mut buf = [0u8; 1024];
        loop {
            // Carry out what the module asked for.
            for o in modem.take_out() {
                self.perform(o, conns, queue, ev_tx);
            }
            // Write everything that is due, in order.
            while let Some((at, _)) = queue.front() {
                if *at > Instant::now() {
                    break;
                }
                if let Some((_, bytes)) = queue.pop_front() {
                    if let Err(e) = stream.write_all(&bytes).await {
                        return Stop::Lost(e.to_string());
                    }
                    modem.stats.bytes_out += bytes.len() as u64;
                }
            }
            let now = Instant::now();
            let timer = modem
                .next_deadline()
                .map(Instant::from_std)
                .unwrap_or(now + IDLE_TICK)
                .min(now + IDLE_TICK);
            let write_at = queue.front().map(|(at, _)| *at);
            let idle = queue.is_empty();
            tokio::select! {
                _ = self.shutdown.cancelled() => return Stop::Shutdown,
                r = stream.read(&mut buf), if idle => match r {
                    Ok(0) => return Stop::Lost("end of file".into()),
                    Ok(n) => modem.feed(&buf[..n], Instant::now().into_std()),
                    Err(e) => return Stop::Lost(e.to_string()),
                },
                Some(ev) = ev_rx.recv() => modem.on_net(ev, Instant::now().into_std()),
                Some((cmd, reply)) = self.control_rx.recv() => {
                    info!(?cmd, "modem control");
                    let text = control::apply(modem, cmd, Instant::now().into_std());
                    let _ = reply.send(text);
                }
                _ = tokio::time::sleep_until(write_at.unwrap_or(now)), if write_at.is_some() => {}
                _ = tokio::time::sleep_until(timer) => modem.tick(Instant::now().into_std()),
            }
        }
    }

    fn perform(
        &self,
        o: Out,
        conns: &mut HashMap<u64, Conn>,
        queue: &mut VecDeque<(Instant, Vec<u8>)>,
        ev_tx: &mpsc::Sender<NetEvent>,
    ) {
        match o {
            Out::Serial { bytes, delay } => {
                let after = queue.back().map_or(Instant::now(), |(at, _)| *at);
                let at = after.max(Instant::now()) + delay;
                queue.push_back((at, bytes));
            }
            Out::Discard => queue.clear(),
            Out::Connect { conn, port } => {
                let (tx, rx) = mpsc::unbounded_channel();
                let cut = self.shutdown.child_token();
                conns.insert(
                    conn,
                    Conn {
                        uplink: Some(tx),
                        cut: cut.clone(),
                    },
                );
                let sock = NetSocket {
                    conn,
                    port,
                    link: self.cfg.link,
                    uplink: rx,
                    events: ev_tx.clone(),
                    cut,
                };
                tokio::spawn(sock.run());
            }
            Out::Send { conn, bytes } => {
                if let Some(tx) = conns.get(&conn).and_then(|c| c.uplink.as_ref()) {
                    let _ = tx.send(Uplink {
                        at: Instant::now(),
                        bytes,
                    });
                }
            }
            Out::Close { conn, graceful } => {
                if let Some(mut c) = conns.remove(&conn) {
                    if graceful {
                        // Dropping the sender lets the task flush and half-close; it ends
                        // when the peer closes, or at the cut below after a grace period.
                        c.uplink.take();
                        let cut = c.cut.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            cut.cancel();
                        });
                    } else {
                        c.cut.cancel();
                    }
                }
            }
        }
    }
}
