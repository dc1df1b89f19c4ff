//! The connection options shared by the commissioning commands (`read`, `write`, `scan`):
//! which bus (serial RTU, Modbus TCP, RTU over TCP, or a bus of the config by name), its line
//! settings, the per-transaction timeout, retries and turnaround, and the route: through the
//! running daemon when it owns that bus (its status socket, `gateway::bus_proxy`), else a
//! link of our own (`BusClient`). One bus keeps one owner: a CLI that opened a bus the daemon
//! polls would interleave its frames with the poller's on TCP and fail to open a serial port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{BusConfig, Parity, SerialSettings, Transport};
use crate::gateway::bus_proxy::{BusInfo, BusTarget, ProxyClient, ProxyError};
use crate::modbus::bus::RawOp;
use crate::modbus::link::{Link, TxError};
use crate::model::Table;

use super::Global;

/// At most one transport (or a bus of the config by name); none is an error reported by
/// `to_bus_config` unless the command names a configured device instead.
#[derive(Debug, Clone, clap::Args)]
#[group(required = false, multiple = false)]
pub struct TransportArgs {
    /// Serial port of an RS-485 adapter (Modbus RTU), e.g. /dev/ttyUSB0.
    #[arg(long, value_name = "PATH")]
    pub serial: Option<String>,
    /// Modbus TCP device or gateway.
    #[arg(long, value_name = "HOST:PORT")]
    pub tcp: Option<String>,
    /// RTU framing over a TCP socket (serial device server in transparent mode).
    #[arg(long = "rtu-over-tcp", value_name = "HOST:PORT")]
    pub rtu_over_tcp: Option<String>,
    /// A bus of the configuration (--config) by name: through the daemon when it runs and owns
    /// it, otherwise opened with the bus's settings from the file.
    #[arg(long = "bus", value_name = "NAME")]
    pub bus: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ParityArg {
    None,
    Even,
    Odd,
}

/// How to reach the bus. Serial line settings are ignored for the TCP transports.
#[derive(Debug, Clone, clap::Args)]
pub struct BusArgs {
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Serial baud rate.
    #[arg(long, default_value_t = 9600, value_name = "BAUD")]
    pub baud: u32,
    /// Serial parity.
    #[arg(long, value_enum, default_value_t = ParityArg::Even)]
    pub parity: ParityArg,
    /// Serial data bits.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(7..=8))]
    pub data_bits: u8,
    /// Serial stop bits.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub stop_bits: u8,
    /// Response timeout per attempt, e.g. 1s, 250ms [default: 1s; scan: 200ms].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Extra attempts after a timeout, CRC or framing error (never after an exception).
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Silence kept between transactions (RS-485 turnaround).
    #[arg(long, value_name = "DURATION", default_value = "5ms", value_parser = humantime::parse_duration)]
    pub turnaround: Duration,
    /// The daemon's status socket: when the daemon runs and owns this bus, the transactions go
    /// through its bus task (with the bus's own timeout, retries and turnaround).
    /// [default: `[gateway] socket` of the config, else the first socket found of
    /// /run/gasdtu/gasdtu.sock, $XDG_RUNTIME_DIR/gasdtu.sock, <state_dir>/gasdtu.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Open the bus here even if the running daemon owns it. On Modbus TCP and RTU over TCP
    /// our frames then interleave with the daemon's polling; a serial port it holds will not
    /// open.
    #[arg(long)]
    pub direct: bool,
}

/// Bus options that do not name a bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadBusArgs {
    /// A `HOST:PORT` that does not parse.
    #[error("{option} {value:?}: expected HOST:PORT with a port from 1 to 65535")]
    Endpoint { option: &'static str, value: String },
    /// No transport at all.
    #[error(
        "no bus named: give --serial PATH, --tcp HOST:PORT, --rtu-over-tcp HOST:PORT or --bus NAME"
    )]
    Missing,
}

/// Split "host:port", "[v6]:port" into its parts.
fn endpoint(option: &'static str, value: &str) -> Result<(String, u16), BadBusArgs> {
    let bad = || BadBusArgs::Endpoint {
        option,
        value: value.to_string(),
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

impl BusArgs {
    /// The bus these options describe, `default_timeout` applying when `--timeout` is absent.
    pub fn to_bus_config(&self, default_timeout: Duration) -> Result<BusConfig, BadBusArgs> {
        let t = &self.transport;
        let transport = if let Some(port) = &t.serial {
            Transport::Rtu(SerialSettings {
                port: port.clone(),
                baud: self.baud,
                parity: match self.parity {
                    ParityArg::None => Parity::None,
                    ParityArg::Even => Parity::Even,
                    ParityArg::Odd => Parity::Odd,
                },
                data_bits: self.data_bits,
                stop_bits: self.stop_bits,
            })
        } else if let Some(v) = &t.tcp {
            let (host, port) = endpoint("--tcp", v)?;
            Transport::Tcp { host, port }
        } else if let Some(v) = &t.rtu_over_tcp {
            let (host, port) = endpoint("--rtu-over-tcp", v)?;
            Transport::RtuOverTcp { host, port }
        } else {
            // `--bus NAME` is resolved by `BusClient::open` from the config.
            return Err(BadBusArgs::Missing);
        };
        Ok(BusConfig {
            name: "cli".to_string(),
            transport,
            timeout: self.timeout.unwrap_or(default_timeout),
            turnaround: self.turnaround,
            retries: self.retries,
        })
    }
}

/// The three kinds of bus, as far as advice to a person goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// Modbus RTU on a serial line.
    Serial,
    /// Modbus TCP (MBAP framing).
    Tcp,
    /// RTU framing through a serial device server.
    RtuOverTcp,
}

/// Where a commissioning command's transactions go.
pub enum BusClient {
    /// A link of our own: no running daemon owns the bus.
    Direct(Link),
    /// The bus task of the running daemon's bus `bus`, through its status socket.
    Daemon {
        client: ProxyClient,
        bus: String,
        target: BusTarget,
    },
}

/// A transaction's result: the outer error is the daemon's (it refused, or the conversation
/// broke), the inner one the bus's, the same through the daemon as on a link of our own.
pub type Outcome<T> = Result<Result<T, TxError>, ProxyError>;

/// What the command line names.
enum Wanted {
    Name(String),
    Bus(BusConfig),
}

/// The socket's host:port resolved (empty when it does not resolve within 2 s).
async fn resolve(host: &str, port: u16) -> Vec<SocketAddr> {
    match tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::lookup_host((host, port)),
    )
    .await
    {
        Ok(Ok(addrs)) => addrs.collect(),
        _ => Vec::new(),
    }
}

/// True when two serial paths name the same port (symlinks such as /dev/serial/by-id/..
/// resolved on both sides). `daemon_canonical` is the daemon's own resolution.
pub fn same_serial(cli: &str, daemon: &str, daemon_canonical: Option<&str>) -> bool {
    if cli == daemon {
        return true;
    }
    let canon = |p: &str| {
        std::fs::canonicalize(p)
            .ok()
            .map(|c| c.to_string_lossy().into_owned())
    };
    match canon(cli) {
        Some(c) => Some(c.as_str()) == daemon_canonical || Some(&c) == canon(daemon).as_ref(),
        None => false,
    }
}

/// True when two TCP endpoints are the same (same port; same host name, or a common address).
async fn same_endpoint(a: (&str, u16), b: (&str, u16)) -> bool {
    if a.1 != b.1 {
        return false;
    }
    if a.0.eq_ignore_ascii_case(b.0) {
        return true;
    }
    let (ra, rb) = (resolve(a.0, a.1).await, resolve(b.0, b.1).await);
    ra.iter().any(|x| rb.contains(x))
}

/// The daemon's bus that `want` names, if it owns one.
async fn pick<'a>(buses: &'a [BusInfo], want: &Wanted) -> Option<&'a BusInfo> {
    for b in buses {
        let hit = match (want, &b.target) {
            (Wanted::Name(n), _) => &b.name == n,
            (Wanted::Bus(cfg), BusTarget::Rtu { path, canonical }) => match &cfg.transport {
                Transport::Rtu(s) => same_serial(&s.port, path, canonical.as_deref()),
                _ => false,
            },
            (
                Wanted::Bus(cfg),
                BusTarget::Tcp { host, port } | BusTarget::RtuOverTcp { host, port },
            ) => match &cfg.transport {
                // Either framing: the endpoint is what one owner must hold.
                Transport::Tcp { host: h, port: p }
                | Transport::RtuOverTcp { host: h, port: p } => {
                    same_endpoint((h, *p), (host, *port)).await
                }
                Transport::Rtu(_) => false,
            },
        };
        if hit {
            return Some(b);
        }
    }
    None
}

/// A word on framing when the command line asked for another one than the daemon speaks.
fn framing_note(want: &Wanted, target: &BusTarget) -> Option<&'static str> {
    let Wanted::Bus(cfg) = want else { return None };
    match (&cfg.transport, target) {
        (Transport::Tcp { .. }, BusTarget::RtuOverTcp { .. }) => {
            Some("the daemon speaks RTU over TCP there, not Modbus TCP")
        }
        (Transport::RtuOverTcp { .. }, BusTarget::Tcp { .. }) => {
            Some("the daemon speaks Modbus TCP there, not RTU over TCP")
        }
        _ => None,
    }
}

/// The bus `name` of the configuration file, for a direct open.
fn bus_from_config(path: &Path, name: &str, args: &BusArgs) -> Result<BusConfig, String> {
    let loaded = crate::config::load_file(path).map_err(|e| format!("--bus {name}: {e}"))?;
    let mut bus = loaded
        .config
        .buses
        .into_iter()
        .find(|b| b.name == name)
        .ok_or_else(|| format!("--bus {name}: no bus `{name}` in {}", path.display()))?;
    if let Some(t) = args.timeout {
        bus.timeout = t;
    }
    Ok(bus)
}

impl BusClient {
    /// Route the command: through the running daemon when it owns the bus the arguments name
    /// (one line on stderr says so), else a link of our own (silently when no daemon answers).
    /// Errors are printed for humans, prefixed `gasdtu {verb}:`; the value is the exit code.
    pub async fn open(
        args: &BusArgs,
        global: &Global,
        default_timeout: Duration,
        verb: &str,
    ) -> Result<BusClient, u8> {
        let want = match &args.transport.bus {
            Some(name) => Wanted::Name(name.clone()),
            None => match args.to_bus_config(default_timeout) {
                Ok(b) => Wanted::Bus(b),
                Err(e) => {
                    eprintln!("gasdtu {verb}: {e}");
                    return Err(2);
                }
            },
        };
        if !args.direct {
            let socket = super::socket::for_client(args.socket.as_deref(), &global.config);
            let client = ProxyClient::new(&socket);
            match client.buses().await {
                Ok(buses) => {
                    if let Some(b) = pick(&buses, &want).await {
                        let note = framing_note(&want, &b.target)
                            .map(|n| format!("; {n}"))
                            .unwrap_or_default();
                        eprintln!(
                            "gasdtu {verb}: through the running daemon (bus {}){note}",
                            b.name
                        );
                        return Ok(BusClient::Daemon {
                            client,
                            bus: b.name.clone(),
                            target: b.target.clone(),
                        });
                    }
                }
                Err(ProxyError::NotRunning { .. }) => {}
                Err(e @ ProxyError::Unsupported { .. }) => {
                    eprintln!("gasdtu {verb}: {e}: opening the bus directly");
                }
                Err(e @ ProxyError::Forbidden { .. }) => {
                    eprintln!(
                        "gasdtu {verb}: {e}; a running daemon may own this bus: run as a member of                          the socket's group, or pass --direct (frames may then interleave with its polling)"
                    );
                    return Err(2);
                }
                Err(e @ (ProxyError::Refused { .. } | ProxyError::Reply { .. })) => {
                    eprintln!("gasdtu {verb}: {e}; pass --direct to open the bus anyway");
                    return Err(1);
                }
            }
        }
        let bus = match want {
            Wanted::Bus(b) => b,
            Wanted::Name(name) => match bus_from_config(&global.config, &name, args) {
                Ok(b) => b,
                Err(msg) => {
                    eprintln!("gasdtu {verb}: {msg}");
                    return Err(2);
                }
            },
        };
        Ok(BusClient::Direct(Link::new(bus)))
    }

    /// Where the transactions go, for messages ("10.0.0.5:502", "bus lan (Modbus TCP
    /// 10.0.0.5:502) of the running daemon").
    pub fn target(&self) -> String {
        match self {
            BusClient::Direct(link) => link.target(),
            BusClient::Daemon { bus, target, .. } => {
                format!("bus {bus} ({}) of the running daemon", target.describe())
            }
        }
    }

    /// The kind of bus the transactions go over (for advice that fits it).
    pub fn kind(&self) -> BusKind {
        match self {
            BusClient::Direct(link) => match link.bus().transport {
                Transport::Rtu(_) => BusKind::Serial,
                Transport::Tcp { .. } => BusKind::Tcp,
                Transport::RtuOverTcp { .. } => BusKind::RtuOverTcp,
            },
            BusClient::Daemon { target, .. } => match target {
                BusTarget::Rtu { .. } => BusKind::Serial,
                BusTarget::Tcp { .. } => BusKind::Tcp,
                BusTarget::RtuOverTcp { .. } => BusKind::RtuOverTcp,
            },
        }
    }

    async fn transact(&mut self, unit: u8, op: RawOp) -> Outcome<Vec<u16>> {
        match self {
            BusClient::Direct(link) => Ok(match op {
                RawOp::Read {
                    table,
                    address,
                    count,
                } => link.read(unit, table, address, count).await,
                RawOp::WriteCoil { address, value } => link
                    .write_coil(unit, address, value)
                    .await
                    .map(|()| Vec::new()),
                RawOp::WriteRegisters { address, values } => link
                    .write_registers(unit, address, &values)
                    .await
                    .map(|()| Vec::new()),
            }),
            BusClient::Daemon { client, bus, .. } => client.transact(bus, unit, &op).await,
        }
    }

    /// Read `count` registers (or bits, as 0/1) from `table` of `unit`.
    pub async fn read(
        &mut self,
        unit: u8,
        table: Table,
        address: u16,
        count: u16,
    ) -> Outcome<Vec<u16>> {
        self.transact(
            unit,
            RawOp::Read {
                table,
                address,
                count,
            },
        )
        .await
    }

    /// Write holding registers (function 6 for one, 16 for several).
    pub async fn write_registers(&mut self, unit: u8, address: u16, values: &[u16]) -> Outcome<()> {
        let op = RawOp::WriteRegisters {
            address,
            values: values.to_vec(),
        };
        Ok(self.transact(unit, op).await?.map(|_| ()))
    }

    /// Write one coil (function 5).
    pub async fn write_coil(&mut self, unit: u8, address: u16, value: bool) -> Outcome<()> {
        let op = RawOp::WriteCoil { address, value };
        Ok(self.transact(unit, op).await?.map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        bus: BusArgs,
    }

    fn parse(args: &[&str]) -> Result<BusConfig, String> {
        let cmd = Cmd::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cmd.bus
            .to_bus_config(Duration::from_secs(1))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn bus_args_become_a_bus_config() {
        let b = parse(&[
            "--serial",
            "/dev/ttyUSB0",
            "--baud",
            "19200",
            "--parity",
            "none",
        ])
        .unwrap();
        assert_eq!(
            b.transport,
            Transport::Rtu(SerialSettings {
                port: "/dev/ttyUSB0".into(),
                baud: 19200,
                parity: Parity::None,
                data_bits: 8,
                stop_bits: 1,
            })
        );
        assert_eq!(b.timeout, Duration::from_secs(1));
        assert_eq!(b.retries, 0);

        let b = parse(&[
            "--tcp",
            "10.0.0.5:502",
            "--timeout",
            "250ms",
            "--retries",
            "2",
        ])
        .unwrap();
        assert_eq!(
            b.transport,
            Transport::Tcp {
                host: "10.0.0.5".into(),
                port: 502
            }
        );
        assert_eq!(b.timeout, Duration::from_millis(250));
        assert_eq!(b.retries, 2);

        let b = parse(&["--rtu-over-tcp", "[::1]:4001"]).unwrap();
        assert_eq!(
            b.transport,
            Transport::RtuOverTcp {
                host: "::1".into(),
                port: 4001
            }
        );
    }

    #[test]
    fn bad_bus_args_are_refused() {
        // (arguments, expected error text fragment)
        let rows: &[(&[&str], &str)] = &[
            (&[], "no bus named: give --serial PATH"),
            (&["--serial", "/dev/x", "--tcp", "h:1"], "cannot be used"),
            (&["--tcp", "host"], "expected HOST:PORT"),
            (&["--tcp", "host:0"], "expected HOST:PORT"),
            (&["--tcp", ":502"], "expected HOST:PORT"),
            (&["--rtu-over-tcp", "h:99999"], "expected HOST:PORT"),
            (&["--serial", "/dev/x", "--data-bits", "9"], "invalid value"),
            (&["--serial", "/dev/x", "--parity", "mark"], "invalid value"),
            (
                &["--serial", "/dev/x", "--timeout", "soon"],
                "invalid value",
            ),
        ];
        for (args, want) in rows {
            let e = parse(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn bus_by_name_socket_and_direct() {
        let cmd = Cmd::try_parse_from(["t", "--bus", "rs485", "--direct"]).unwrap();
        assert_eq!(cmd.bus.transport.bus.as_deref(), Some("rs485"));
        assert!(cmd.bus.direct);
        assert_eq!(cmd.bus.socket, None);
        let e = Cmd::try_parse_from(["t", "--bus", "a", "--tcp", "h:1"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot be used"), "{e}");
        let cmd = Cmd::try_parse_from(["t", "--tcp", "h:1", "--socket", "/tmp/x.sock"]).unwrap();
        assert_eq!(cmd.bus.socket, Some(PathBuf::from("/tmp/x.sock")));
        assert!(!cmd.bus.direct);
    }

    #[test]
    fn serial_paths_match_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let port = dir.path().join("ttyUSB0");
        std::fs::write(&port, b"").unwrap();
        let by_id = dir.path().join("usb-FTDI_RS485-if00");
        std::os::unix::fs::symlink(&port, &by_id).unwrap();
        let other = dir.path().join("ttyUSB1");
        std::fs::write(&other, b"").unwrap();
        let canon = std::fs::canonicalize(&port).unwrap();
        let (port, by_id, other, canon) = (
            port.to_str().unwrap(),
            by_id.to_str().unwrap(),
            other.to_str().unwrap(),
            canon.to_str().unwrap(),
        );
        // (what the CLI names, what the daemon holds, its canonical path, same port?)
        let rows: &[(&str, &str, Option<&str>, bool)] = &[
            (port, port, Some(canon), true),
            (by_id, port, Some(canon), true),
            (port, by_id, Some(canon), true),
            // The daemon could not resolve its path (another mount namespace): resolve here.
            (by_id, port, None, true),
            (other, port, Some(canon), false),
            ("/dev/gasdtu-missing", port, Some(canon), false),
            ("/dev/gasdtu-missing", "/dev/gasdtu-missing", None, true),
        ];
        for (cli, daemon, canonical, want) in rows {
            assert_eq!(
                same_serial(cli, daemon, *canonical),
                *want,
                "{cli} vs {daemon} ({canonical:?})"
            );
        }
    }

    #[tokio::test]
    async fn tcp_endpoints_match_by_address() {
        assert!(same_endpoint(("127.0.0.1", 502), ("127.0.0.1", 502)).await);
        assert!(same_endpoint(("LOCALHOST", 502), ("localhost", 502)).await);
        assert!(!same_endpoint(("127.0.0.1", 502), ("127.0.0.1", 503)).await);
        assert!(!same_endpoint(("127.0.0.1", 502), ("127.0.0.2", 502)).await);
        // localhost resolves to 127.0.0.1 (and maybe ::1): one common address is enough.
        assert!(same_endpoint(("localhost", 502), ("127.0.0.1", 502)).await);
    }
}
