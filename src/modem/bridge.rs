//! Socket mode (issue 11): the module's AT sockets offered to the MQTT client as an HTTP
//! CONNECT proxy on loopback. UART-only NB-IoT modules (BC95/BC28, BC66/BC660K, SIM7020, and
//! SIM7080 used without its PPP) have
//! no PPP: gasdtu opens the TCP connection with their socket commands and moves the bytes
//! itself. The forwarder reaches the broker through this proxy (`Forwarder::with_proxy`), so TLS
//! runs end to end from gasdtu to the broker under the broker's real name (SNI, certificate
//! verification): the module only ever carries ciphertext and holds no credentials.
//!
//! `SocketBridge::run` accepts one connection at a time (MQTT uses one): it reads the request
//! head (bounded), resolves the target (an IP literal, `localhost`, or the configured
//! `[modem] hosts`: module DNS is not used), opens the module socket in the profile's dialect
//! (`socket_cmd`), answers `200`, then pumps bytes: TCP -> module in sends chunked to the
//! module's per-command maximum; module -> TCP from the data URCs (pushed data, or "data
//! waiting" followed by reads until the module's buffer is empty). A close URC, a lost PDP
//! context, an AT failure or the TCP side closing ends the connection and closes the module
//! socket. It never talks AT except through the `AtHandle` (the engine owns the port).
//! Its `LinkMeter` (`meter`) tells the forwarder's session figures when each tunnel opened and
//! how many bytes crossed the module socket each way (counters restart per connection).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::at::Urc;
use super::engine::{AtError, AtHandle};
use super::profile::{self, Profile, SocketDialect};
use super::socket_cmd::{self, SendStep, SocketError, SocketUrc};
use super::status::ModemStatus;
use crate::uplink::LinkMeter;

/// Longest CONNECT request head read.
pub const MAX_HEAD: usize = 4096;
/// Time allowed for the request head to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for `+QIOPEN: <id>,<result>` after `AT+QIOPEN` (the module's own bound).
const QIOPEN_WAIT: Duration = Duration::from_secs(150);
/// Reads of one "data waiting" burst (each at most the profile's `max_read`).
const MAX_READS_PER_BURST: usize = 64;
/// The connect id used for `QI*` sockets (and the SIM7080's `CA*` cid).
const QI_ID: u8 = 0;
/// Longest wait for `+APP PDP: 0,ACTIVE` after `AT+CNACT=0,1`'s OK (SIM7080).
const CNACT_WAIT: Duration = Duration::from_secs(30);

/// Why one proxied connection failed (answered `502` when the CONNECT was not yet answered).
#[derive(Debug, Error)]
pub enum BridgeError {
    #[error("bad CONNECT request: {0}")]
    BadRequest(String),
    #[error("cannot resolve {0:?}: give its address in [modem] hosts (module DNS is not used)")]
    Unresolved(String),
    #[error("the modem is not ready (model not detected or link down)")]
    NotReady,
    #[error("the module has no socket commands gasdtu can use ({0:?})")]
    Unsupported(SocketDialect),
    #[error("module socket: {0}")]
    At(#[from] AtError),
    #[error("module socket: {0}")]
    Socket(#[from] SocketError),
    #[error("the module refused the connection (result {0})")]
    OpenFailed(u16),
    #[error("no +QIOPEN result within {0:?}")]
    OpenTimeout(Duration),
    #[error("the PDP context did not come up (no +APP PDP: 0,ACTIVE within {0:?})")]
    PdpTimeout(Duration),
    #[error("URCs lost ({0} skipped): the byte stream cannot be trusted")]
    Lagged(u64),
    #[error("the network closed the module socket")]
    ClosedByNetwork,
    #[error("the PDP context was deactivated")]
    PdpLost,
    #[error("the PDP context is down and {cmd} did not bring it up: {source}")]
    PdpActivation {
        cmd: &'static str,
        #[source]
        source: AtError,
    },
    #[error("loopback side: {0}")]
    Io(#[from] std::io::Error),
}

/// Parse the head of an HTTP CONNECT request: `CONNECT host:port HTTP/1.x` (pure).
pub fn parse_connect(head: &[u8]) -> Result<(String, u16), BridgeError> {
    let text =
        std::str::from_utf8(head).map_err(|_| BridgeError::BadRequest("not UTF-8".into()))?;
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some("CONNECT"), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(BridgeError::BadRequest(format!(
            "expected `CONNECT host:port HTTP/1.1`, got {:?}",
            line.chars().take(80).collect::<String>()
        )));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(BridgeError::BadRequest(format!("version {version:?}")));
    }
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| BridgeError::BadRequest(format!("{target:?} has no port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| BridgeError::BadRequest(format!("bad port in {target:?}")))?;
    if host.is_empty() || host.len() > 253 {
        return Err(BridgeError::BadRequest("bad host".into()));
    }
    Ok((host.to_string(), port))
}

/// The address for `host`: an IP literal, `localhost`, or a configured `(name, address)`.
pub fn resolve(host: &str, hosts: &[(String, IpAddr)]) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    hosts
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(host))
        .map(|(_, ip)| *ip)
}

/// The uplink's gate from the supervisor's status: true while `link_up` (registered and
/// attached). The mapping task ends when the supervisor's channel closes (the receiver then
/// reports the sender gone, and the forwarder stops waiting for it).
pub fn link_gate(mut status: watch::Receiver<ModemStatus>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(status.borrow().link_up);
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            let up = status.borrow_and_update().link_up;
            tx.send_if_modified(|v| {
                let changed = *v != up;
                *v = up;
                changed
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// The loopback proxy (see the module doc).
pub struct SocketBridge {
    listener: TcpListener,
    at: AtHandle,
    status: watch::Receiver<ModemStatus>,
    hosts: Vec<(String, IpAddr)>,
    meter: std::sync::Arc<LinkMeter>,
}

impl SocketBridge {
    /// Listen on an ephemeral loopback port (within a tokio runtime).
    pub fn bind(
        at: AtHandle,
        status: watch::Receiver<ModemStatus>,
        hosts: Vec<(String, IpAddr)>,
    ) -> std::io::Result<SocketBridge> {
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        Ok(SocketBridge {
            listener,
            at,
            status,
            hosts,
            meter: LinkMeter::new(),
        })
    }

    /// This bridge's counters (for `Forwarder::with_link_meter`).
    pub fn meter(&self) -> std::sync::Arc<LinkMeter> {
        self.meter.clone()
    }

    /// Where the forwarder connects (`Forwarder::with_proxy`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve connections one after the other until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let (tcp, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("modem bridge: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.serve(tcp) => match r {
                    Ok(()) => tracing::info!("modem bridge: connection closed"),
                    Err(e) => tracing::warn!("modem bridge: {e}"),
                },
            }
        }
    }

    fn profile(&self) -> Option<&'static Profile> {
        let s = self.status.borrow();
        if !s.link_up {
            return None;
        }
        s.model.as_deref().and_then(profile::by_id)
    }

    async fn serve(&self, mut tcp: TcpStream) -> Result<(), BridgeError> {
        self.meter.connection();
        let _ = tcp.set_nodelay(true);
        let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut tcp))
            .await
            .map_err(|_| BridgeError::BadRequest("no request head within 10 s".into()))??;
        let opened = async {
            let (host, port) = parse_connect(&head)?;
            let ip = resolve(&host, &self.hosts).ok_or(BridgeError::Unresolved(host.clone()))?;
            let profile = self.profile().ok_or(BridgeError::NotReady)?;
            let mut urcs = self.at.urcs();
            // After a deactivation URC the context must come back before any open.
            let pdp_down = self.status.borrow().pdp_active == Some(false);
            let id = open(&self.at, profile, ip, port, pdp_down, &mut urcs).await?;
            tracing::info!(%host, %ip, port, socket = id, module = profile.id,
                "modem bridge: module socket open");
            Ok::<_, BridgeError>((profile, id, urcs))
        }
        .await;
        let (profile, id, urcs) = match opened {
            Ok(o) => o,
            Err(e) => {
                let _ = tcp
                    .write_all(format!("HTTP/1.1 502 Bad Gateway\r\n\r\n{e}").as_bytes())
                    .await;
                return Err(e);
            }
        };
        tcp.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        self.meter.opened();
        let r = pump(&self.at, profile, id, tcp, urcs, &self.meter).await;
        if let Some(cmd) = close_cmd(profile, id) {
            let _ = self.at.call(&cmd).await;
        }
        r
    }
}

async fn read_head(tcp: &mut TcpStream) -> Result<Vec<u8>, BridgeError> {
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(BridgeError::BadRequest(format!(
                "request head over {MAX_HEAD} bytes"
            )));
        }
        if tcp.read(&mut b).await? == 0 {
            return Err(BridgeError::BadRequest(
                "closed before the head ended".into(),
            ));
        }
        head.push(b[0]);
    }
    Ok(head)
}

/// Open a module socket to `ip:port` in the profile's dialect; returns its id.
async fn open(
    at: &AtHandle,
    p: &Profile,
    ip: IpAddr,
    port: u16,
    pdp_down: bool,
    urcs: &mut broadcast::Receiver<Urc>,
) -> Result<u8, BridgeError> {
    match p.socket {
        SocketDialect::NsoHex => {
            let x = at.call(&socket_cmd::nso_create(0)).await?;
            let id = socket_cmd::nso_created(&x)?;
            if let Err(e) = at.call(&socket_cmd::nso_connect(id, ip, port)).await {
                let _ = at.call(&socket_cmd::nso_close(id)).await;
                return Err(e.into());
            }
            Ok(id)
        }
        SocketDialect::Qi | SocketDialect::QiHex => {
            // Sockets need the PDP context active (QIACT); an already active context answers
            // ERROR, which is fine: QIOPEN says whether it worked. Not after the module said
            // the context is gone: then the activation must work.
            if let Some(act) = p.pdp_activation {
                if pdp_down && p.socket == SocketDialect::Qi {
                    // The module keeps a deactivated context's state until QIDEACT.
                    let _ = at.call(socket_cmd::QI_DEACT).await;
                }
                match at.call(act).await {
                    Err(e) if pdp_down => {
                        return Err(BridgeError::PdpActivation {
                            cmd: act,
                            source: e,
                        })
                    }
                    Err(e) => tracing::debug!("modem bridge: {act}: {e} (already active?)"),
                    Ok(_) => {}
                }
            }
            // A socket left from an earlier run would make QIOPEN fail: close it first.
            let _ = at.call(&socket_cmd::qi_close(QI_ID)).await;
            // BC66: hex data format before every open (a reboot resets it to text); buffer
            // access mode (`+QIURC: "recv",<id>` then hex `AT+QIRD`).
            let push = p.socket == SocketDialect::Qi;
            if !push {
                at.call(socket_cmd::QI_HEX_FORMAT).await?;
            }
            at.call(&socket_cmd::qi_open(QI_ID, ip, port, push)).await?;
            wait_urc(
                urcs,
                QIOPEN_WAIT,
                BridgeError::OpenTimeout(QIOPEN_WAIT),
                |u| match u {
                    SocketUrc::Opened { id, result } if id == QI_ID => Some(if result == 0 {
                        Ok(id)
                    } else {
                        Err(BridgeError::OpenFailed(result))
                    }),
                    _ => None,
                },
            )
            .await
        }
        SocketDialect::Ca => {
            // `AT+CNACT=0,1` answers OK then `+APP PDP: 0,ACTIVE`; ERROR when it is already
            // active (CAOPEN then says whether the network is there).
            if let Some(act) = p.pdp_activation {
                match at.call(act).await {
                    Ok(_) => {
                        wait_urc(
                            urcs,
                            CNACT_WAIT,
                            BridgeError::PdpTimeout(CNACT_WAIT),
                            |u| match u {
                                SocketUrc::PdpActivated => Some(Ok(())),
                                SocketUrc::PdpDeactivated => Some(Err(BridgeError::PdpLost)),
                                _ => None,
                            },
                        )
                        .await?
                    }
                    Err(e) if pdp_down => {
                        return Err(BridgeError::PdpActivation {
                            cmd: act,
                            source: e,
                        })
                    }
                    Err(e) => tracing::debug!("modem bridge: {act}: {e} (already active?)"),
                }
            }
            let _ = at.call(&socket_cmd::ca_close(QI_ID)).await;
            let x = at.call(&socket_cmd::ca_open(QI_ID, ip, port)).await?;
            match socket_cmd::ca_opened(&x)? {
                (id, 0) if id == QI_ID => Ok(id),
                (_, result) => Err(BridgeError::OpenFailed(result)),
            }
        }
        SocketDialect::CsoHex => {
            let x = at.call(socket_cmd::CSO_CREATE).await?;
            let id = socket_cmd::cso_created(&x)?;
            if let Err(e) = at.call(&socket_cmd::cso_connect(id, ip, port)).await {
                let _ = at.call(&socket_cmd::cso_close(id)).await;
                return Err(e.into());
            }
            Ok(id)
        }
        // `check` refuses socket mode for `generic` by name; this catches `model = "auto"`
        // finding a module without socket commands.
        SocketDialect::None => Err(BridgeError::Unsupported(SocketDialect::None)),
    }
}

/// Wait (bounded) for the socket URC `pick` decides on; other URCs are skipped.
async fn wait_urc<T>(
    urcs: &mut broadcast::Receiver<Urc>,
    within: Duration,
    timeout: BridgeError,
    mut pick: impl FnMut(SocketUrc) -> Option<Result<T, BridgeError>>,
) -> Result<T, BridgeError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let u = match tokio::time::timeout_at(deadline, urcs.recv()).await {
            Err(_) => return Err(timeout),
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => return Err(BridgeError::Lagged(n)),
            Ok(Err(broadcast::error::RecvError::Closed)) => return Err(AtError::Closed.into()),
            Ok(Ok(u)) => u,
        };
        if let Some(Ok(su)) = socket_cmd::parse_urc(&u) {
            if let Some(r) = pick(su) {
                return r;
            }
        }
    }
}

fn close_cmd(p: &Profile, id: u8) -> Option<String> {
    match p.socket {
        SocketDialect::NsoHex => Some(socket_cmd::nso_close(id)),
        SocketDialect::Qi | SocketDialect::QiHex => Some(socket_cmd::qi_close(id)),
        SocketDialect::CsoHex => Some(socket_cmd::cso_close(id)),
        SocketDialect::Ca => Some(socket_cmd::ca_close(id)),
        SocketDialect::None => None,
    }
}

/// Read what the module holds for socket `id` after a "data waiting" URC.
async fn read_waiting(at: &AtHandle, p: &Profile, id: u8) -> Result<Vec<u8>, BridgeError> {
    let mut out = Vec::new();
    for _ in 0..MAX_READS_PER_BURST {
        let got = match p.socket {
            SocketDialect::NsoHex => {
                let x = at.call(&socket_cmd::nso_read(id, p.max_read)).await?;
                socket_cmd::nso_read_reply(&x)?
            }
            SocketDialect::Qi => {
                let x = at.call(&socket_cmd::qi_read(id, p.max_read)).await?;
                socket_cmd::qi_read_reply(&x)?
            }
            SocketDialect::QiHex => {
                let x = at.call(&socket_cmd::qi_read(id, p.max_read)).await?;
                socket_cmd::qi_hex_read_reply(&x)?
            }
            SocketDialect::Ca => {
                let x = at.call(&socket_cmd::ca_read(id, p.max_read)).await?;
                socket_cmd::ca_read_reply(&x)?
            }
            d => return Err(BridgeError::Unsupported(d)),
        };
        let empty = got.data.is_empty();
        out.extend_from_slice(&got.data);
        if empty || got.remaining == Some(0) {
            break;
        }
    }
    Ok(out)
}

/// Move bytes both ways until one side ends.
async fn pump(
    at: &AtHandle,
    p: &'static Profile,
    id: u8,
    tcp: TcpStream,
    mut urcs: broadcast::Receiver<Urc>,
    meter: &LinkMeter,
) -> Result<(), BridgeError> {
    let (mut rd, mut wr) = tcp.into_split();
    let down = async {
        loop {
            let u = match urcs.recv().await {
                Ok(u) => u,
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(BridgeError::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return Err(AtError::Closed.into()),
            };
            match socket_cmd::parse_urc(&u) {
                Some(Ok(SocketUrc::Data { id: i, data })) if i == id => {
                    meter.down(data.len());
                    wr.write_all(&data).await?
                }
                Some(Ok(SocketUrc::DataWaiting { id: i, .. })) if i == id => {
                    let data = read_waiting(at, p, id).await?;
                    meter.down(data.len());
                    wr.write_all(&data).await?;
                }
                Some(Ok(SocketUrc::Closed { id: i })) if i == id => {
                    return Err(BridgeError::ClosedByNetwork)
                }
                Some(Ok(SocketUrc::Failed { id: i, code })) if i == id => {
                    return Err(BridgeError::OpenFailed(code))
                }
                Some(Ok(SocketUrc::PdpDeactivated)) => return Err(BridgeError::PdpLost),
                Some(Err(e)) => tracing::warn!("modem bridge: socket URC {:?}: {e}", u.line),
                _ if u.kind == Some(super::at::UrcKind::Boot) => {
                    return Err(BridgeError::ClosedByNetwork)
                }
                _ => {}
            }
        }
    };
    let up = async {
        let mut buf = vec![0u8; p.max_send.clamp(1, 1460) * 2];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), BridgeError>(());
            }
            for step in socket_cmd::send_steps(p, id, &buf[..n])? {
                match step {
                    SendStep::Inline(cmd) => at.call(&cmd).await?,
                    SendStep::Prompt { command, payload } => {
                        at.call_with_payload(&command, Bytes::copy_from_slice(payload))
                            .await?
                    }
                };
            }
            // Counted once the module took all of it.
            meter.up(n);
        }
    };
    tokio::select! {
        r = down => r,
        r = up => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_heads_are_parsed_and_bounded() {
        let ok: &[(&str, (&str, u16))] = &[
            (
                "CONNECT broker.example.net:8883 HTTP/1.1\r\nHost: x\r\n\r\n",
                ("broker.example.net", 8883),
            ),
            (
                "CONNECT 127.0.0.1:1883 HTTP/1.0\r\n\r\n",
                ("127.0.0.1", 1883),
            ),
            ("CONNECT [::1]:8883 HTTP/1.1\r\n\r\n", ("::1", 8883)),
        ];
        for (head, (h, p)) in ok {
            let (host, port) = parse_connect(head.as_bytes()).unwrap();
            assert_eq!((host.as_str(), port), (*h, *p), "{head}");
        }
        for bad in [
            "GET / HTTP/1.1\r\n\r\n",
            "CONNECT host HTTP/1.1\r\n\r\n",
            "CONNECT host:0 HTTP/1.1\r\n\r\n",
            "CONNECT host:99999 HTTP/1.1\r\n\r\n",
            "CONNECT :8883 HTTP/1.1\r\n\r\n",
            "CONNECT host:8883 SPDY/3\r\n\r\n",
            "",
        ] {
            assert!(parse_connect(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_connect(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn every_socket_dialect_has_its_close_command() {
        let close = |id: &str| close_cmd(profile::by_id(id).expect("profile"), 0);
        assert_eq!(close("bc95").as_deref(), Some("AT+NSOCL=0"));
        assert_eq!(close("bc66").as_deref(), Some("AT+QICLOSE=0"));
        assert_eq!(close("bg96").as_deref(), Some("AT+QICLOSE=0"));
        assert_eq!(close("sim7020").as_deref(), Some("AT+CSOCL=0"));
        assert_eq!(close("sim7080").as_deref(), Some("AT+CACLOSE=0"));
        assert_eq!(close("generic"), None);
    }

    #[test]
    fn targets_resolve_from_literals_localhost_and_the_configured_hosts() {
        let hosts = vec![(
            "broker.example.net".to_string(),
            "203.0.113.7".parse().unwrap(),
        )];
        assert_eq!(
            resolve("10.1.2.3", &hosts),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            resolve("LOCALHOST", &hosts),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            resolve("Broker.Example.NET", &hosts),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(resolve("other.example.net", &hosts), None);
    }
}
