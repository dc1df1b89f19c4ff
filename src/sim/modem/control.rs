//! Runtime control of the simulated module over a unix socket (`--modem-control PATH`): one
//! command line per connection, one reply line back, then the connection is closed. Commands:
//! `hang`, `power-cycle`, `reboot`, `deregister <secs>`, `close-sockets`,
//! `signal <rsrp dBm> <sinr dB> <ecl>`, `deny <EMM cause>` (registration refused, stat 3),
//! `register` (registered at once), `sim present|absent`, `fault <SPEC>` (add a `--modem-fault` rule),
//! `fault clear`, `stats` (one JSON line). `ControlCmd::parse` and
//! `apply` are pure; `ControlServer` is the I/O edge that hands each command to the runner.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::core::Modem;
use super::fault::ModemFault;
use super::signal::{RSRP_RANGE, SINR_RANGE};

/// Longest control line read.
const MAX_CONTROL_LINE: usize = 256;
/// Longest deregistration a command may ask for.
const MAX_DEREGISTER: Duration = Duration::from_secs(3600);
/// A client gets this long to send its line.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A control command.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlCmd {
    Hang,
    PowerCycle,
    Reboot,
    Deregister(Duration),
    CloseSockets,
    Signal { rsrp: i32, sinr: i32, ecl: u8 },
    Deny(u8),
    Register,
    Sim(bool),
    AddFault(ModemFault),
    ClearFaults,
    Stats,
}

impl ControlCmd {
    pub fn parse(line: &str) -> Result<ControlCmd, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize, what: &str| -> Result<f64, String> {
            words
                .get(i)
                .and_then(|w| w.parse::<f64>().ok())
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("`{}`: {what} is missing or not a number", line.trim()))
        };
        let cmd = match words.first().copied() {
            Some("hang") => ControlCmd::Hang,
            Some("power-cycle") => ControlCmd::PowerCycle,
            Some("reboot") => ControlCmd::Reboot,
            Some("close-sockets") => ControlCmd::CloseSockets,
            Some("stats") => ControlCmd::Stats,
            Some("register") => ControlCmd::Register,
            Some("sim") => match words.get(1).copied() {
                Some("present") => ControlCmd::Sim(true),
                Some("absent") => ControlCmd::Sim(false),
                _ => return Err("sim: give `present` or `absent`".into()),
            },
            Some("deny") => {
                let c = num(1, "the reject cause")?;
                if !(0.0..=255.0).contains(&c) || c.fract() != 0.0 {
                    return Err("deny: the reject cause must be 0..=255".into());
                }
                ControlCmd::Deny(c as u8)
            }
            Some("fault") => match words.get(1).copied() {
                Some("clear") => ControlCmd::ClearFaults,
                Some(spec) => ControlCmd::AddFault(ModemFault::parse(spec).map_err(|e| e.to_string())?),
                None => return Err("fault: give a SPEC (as --modem-fault) or `clear`".into()),
            },
            Some("deregister") => {
                let s = num(1, "the seconds")?;
                let d = Duration::try_from_secs_f64(s)
                    .ok()
                    .filter(|d| *d <= MAX_DEREGISTER)
                    .ok_or_else(|| format!("deregister {s}: seconds must be 0..=3600"))?;
                ControlCmd::Deregister(d)
            }
            Some("signal") => {
                let (rsrp, sinr, ecl) = (num(1, "rsrp")?, num(2, "sinr")?, num(3, "ecl")?);
                let (rsrp, sinr) = (rsrp.round() as i32, sinr.round() as i32);
                if !RSRP_RANGE.contains(&rsrp) || !SINR_RANGE.contains(&sinr) {
                    return Err(format!(
                        "signal: rsrp must be {RSRP_RANGE:?} dBm and sinr {SINR_RANGE:?} dB"
                    ));
                }
                if !(0.0..=2.0).contains(&ecl) || ecl.fract() != 0.0 {
                    return Err("signal: ecl must be 0, 1 or 2".into());
                }
                ControlCmd::Signal {
                    rsrp,
                    sinr,
                    ecl: ecl as u8,
                }
            }
            _ => {
                return Err(format!(
                    "unknown command `{}` (expected hang, power-cycle, reboot, deregister SECS, close-sockets, signal RSRP SINR ECL, deny CAUSE, register, sim present|absent, fault SPEC, fault clear or stats)",
                    line.trim()
                ))
            }
        };
        if words.len() > expected_words(&cmd) {
            return Err(format!("`{}`: too many arguments", line.trim()));
        }
        Ok(cmd)
    }
}

fn expected_words(c: &ControlCmd) -> usize {
    match c {
        ControlCmd::Deregister(_) => 2,
        ControlCmd::Signal { .. } => 4,
        ControlCmd::AddFault(_)
        | ControlCmd::ClearFaults
        | ControlCmd::Deny(_)
        | ControlCmd::Sim(_) => 2,
        _ => 1,
    }
}

/// Carry out `cmd` on the module; the reply line ("ok" or the stats JSON).
pub fn apply(modem: &mut Modem, cmd: ControlCmd, now: Instant) -> String {
    match cmd {
        ControlCmd::Hang => modem.hang(),
        ControlCmd::PowerCycle => modem.power_cycle(now),
        ControlCmd::Reboot => modem.reboot(now),
        ControlCmd::Deregister(d) => modem.lose_registration(d, now),
        ControlCmd::CloseSockets => modem.close_sockets(now),
        ControlCmd::Signal { rsrp, sinr, ecl } => modem.set_signal(rsrp, sinr, ecl),
        ControlCmd::AddFault(rule) => modem.add_fault(rule, now),
        ControlCmd::Deny(cause) => modem.deny(cause, now),
        ControlCmd::Register => modem.register_now(now),
        ControlCmd::Sim(present) => modem.set_sim(present, now),
        ControlCmd::ClearFaults => modem.clear_faults(),
        ControlCmd::Stats => {
            return serde_json::to_string(&modem.stats()).unwrap_or_else(|e| format!("error: {e}"))
        }
    }
    "ok".into()
}

/// A control command on its way to the runner, with the way back for the reply.
pub type ControlRequest = (ControlCmd, oneshot::Sender<String>);

/// The control socket's listener task.
pub struct ControlServer {
    pub path: PathBuf,
    pub listener: UnixListener,
    pub requests: mpsc::Sender<ControlRequest>,
    pub shutdown: CancellationToken,
}

impl ControlServer {
    /// Bind `path`, replacing a stale socket file left by a crashed run.
    pub fn bind(
        path: PathBuf,
        requests: mpsc::Sender<ControlRequest>,
        shutdown: CancellationToken,
    ) -> std::io::Result<ControlServer> {
        if std::os::unix::net::UnixStream::connect(&path).is_err() {
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                use std::os::unix::fs::FileTypeExt;
                if meta.file_type().is_socket() {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let listener = UnixListener::bind(&path)?;
        Ok(ControlServer {
            path,
            listener,
            requests,
            shutdown,
        })
    }

    pub async fn run(self) {
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => {
                    let requests = self.requests.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_client(stream, requests).await {
                            debug!("modem control client: {e}");
                        }
                    });
                }
                Err(e) => {
                    warn!(path = %self.path.display(), "modem control socket accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_client(
    stream: UnixStream,
    requests: mpsc::Sender<ControlRequest>,
) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut limited = BufReader::new(tokio::io::AsyncReadExt::take(rd, MAX_CONTROL_LINE as u64));
    tokio::time::timeout(CLIENT_TIMEOUT, limited.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no command line"))??;
    let reply = match ControlCmd::parse(&line) {
        Ok(cmd) => {
            let (tx, rx) = oneshot::channel();
            if requests.send((cmd, tx)).await.is_err() {
                "error: the simulator is stopping".to_string()
            } else {
                rx.await
                    .unwrap_or_else(|_| "error: the simulator is stopping".into())
            }
        }
        Err(e) => format!("error: {e}"),
    };
    wr.write_all(format!("{reply}\n").as_bytes()).await?;
    wr.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let ok = [
            ("hang", ControlCmd::Hang),
            ("power-cycle\n", ControlCmd::PowerCycle),
            (" reboot ", ControlCmd::Reboot),
            ("close-sockets", ControlCmd::CloseSockets),
            ("stats", ControlCmd::Stats),
            ("fault clear", ControlCmd::ClearFaults),
            ("deny 15", ControlCmd::Deny(15)),
            ("register", ControlCmd::Register),
            ("sim absent", ControlCmd::Sim(false)),
            ("sim present", ControlCmd::Sim(true)),
            (
                "fault cme=0.5:4",
                ControlCmd::AddFault(ModemFault::parse("cme=0.5:4").unwrap()),
            ),
            (
                "deregister 2.5",
                ControlCmd::Deregister(Duration::from_millis(2500)),
            ),
            (
                "signal -103 -3 2",
                ControlCmd::Signal {
                    rsrp: -103,
                    sinr: -3,
                    ecl: 2,
                },
            ),
        ];
        for (line, cmd) in ok {
            assert_eq!(ControlCmd::parse(line), Ok(cmd), "{line}");
        }
        for bad in [
            "",
            "boom",
            "hang now",
            "deregister",
            "deregister -1",
            "deregister 9999",
            "deregister nan",
            "signal -103 5",
            "signal -30 5 0",
            "signal -100 5 3",
            "signal -100 5 1.5",
            "fault",
            "fault boom",
            "fault hang extra",
            "deny",
            "deny 256",
            "register now",
            "sim",
            "sim maybe",
        ] {
            assert!(ControlCmd::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
