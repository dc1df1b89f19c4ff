//! The connection options shared by the commissioning commands (`read`, `write`, `scan`):
//! which transport (serial RTU, Modbus TCP, RTU over TCP), its line settings, and the
//! per-transaction timeout, retries and turnaround. Owns only their parsing and their
//! conversion into a `config::BusConfig` for `acq::link::Link`; no I/O.

use std::time::Duration;

use crate::config::{BusConfig, Parity, SerialSettings, Transport};

/// Exactly one transport.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
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
}

/// A `HOST:PORT` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} {value:?}: expected HOST:PORT with a port from 1 to 65535")]
pub struct BadEndpoint {
    pub option: &'static str,
    pub value: String,
}

/// Split "host:port", "[v6]:port" into its parts.
fn endpoint(option: &'static str, value: &str) -> Result<(String, u16), BadEndpoint> {
    let bad = || BadEndpoint {
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
    pub fn to_bus_config(&self, default_timeout: Duration) -> Result<BusConfig, BadEndpoint> {
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
            // clap's required group makes this unreachable; report it as a bad endpoint anyway.
            return Err(BadEndpoint {
                option: "--serial/--tcp/--rtu-over-tcp",
                value: String::new(),
            });
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
            (&[], "required arguments were not provided"),
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
}
