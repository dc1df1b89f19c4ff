//! One `[buses.<name>]` entry: its kind (RTU, TCP, RTU over TCP), the keys that kind allows
//! with their defaults and ranges, into a `BusConfig`. Pure.

use std::ops::Range;
use std::time::Duration;

use super::diag::Diags;
use super::doc::{Field, Section};
use super::load::BAUD_RATES;
use super::points;
use super::{BusConfig, Parity, SerialSettings, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Rtu,
    Tcp,
    RtuOverTcp,
}

const RTU_ONLY: &[&str] = &["baud", "parity", "data_bits", "stop_bits"];
const TCP_ONLY: &[&str] = &["host"];
const ALL_BUS_KEYS: &[&str] = &[
    "kind",
    "port",
    "baud",
    "parity",
    "data_bits",
    "stop_bits",
    "timeout",
    "turnaround",
    "retries",
    "host",
];

/// One `[buses.<name>]` entry. `serial_port` receives an RTU bus's port even when other keys
/// are invalid, so that a port used twice is reported in the same pass.
pub(crate) fn parse_bus(
    d: &mut Diags<'_>,
    name: &str,
    mut sec: Section<'_, '_>,
    serial_port: &mut Option<(String, Range<usize>)>,
) -> Option<(BusConfig, Kind)> {
    points::check_name(d, &sec.path, sec.span.clone(), name);
    let f = sec.string(d, "kind");
    let kind = match sec.required(d, "kind", "rtu, tcp or rtu_over_tcp", f) {
        Field::Value(s, sp) => match s.as_str() {
            "rtu" => Some(Kind::Rtu),
            "tcp" => Some(Kind::Tcp),
            "rtu_over_tcp" => Some(Kind::RtuOverTcp),
            _ => {
                d.error(
                    &sec.key_path("kind"),
                    Some(sp),
                    format!("unknown bus kind {s:?}: use rtu, tcp or rtu_over_tcp"),
                );
                None
            }
        },
        _ => None,
    };
    let Some(kind) = kind else {
        // Without a kind the other keys cannot be judged; only flag keys no bus has.
        sec.skip(ALL_BUS_KEYS);
        sec.finish(d, |_| None);
        return None;
    };
    let rtu = kind == Kind::Rtu;
    let (timeout_default, turnaround_default) = match kind {
        Kind::Rtu | Kind::RtuOverTcp => (Duration::from_secs(1), Duration::from_millis(50)),
        Kind::Tcp => (Duration::from_secs(3), Duration::ZERO),
    };
    let timeout = sec
        .duration(
            d,
            "timeout",
            Duration::from_millis(10),
            Duration::from_secs(60),
        )
        .or(if kind == Kind::RtuOverTcp {
            Duration::from_secs(3)
        } else {
            timeout_default
        });
    let turnaround = sec
        .duration(d, "turnaround", Duration::ZERO, Duration::from_secs(10))
        .or(turnaround_default);
    let retries = sec.int(d, "retries", 0, 10).or(1);
    let transport = if rtu {
        let f = sec.string(d, "port");
        let port = match sec.required(d, "port", "serial device, e.g. /dev/ttyUSB0", f) {
            Field::Value(s, sp) if s.trim().is_empty() => {
                d.error(&sec.key_path("port"), Some(sp), "must not be empty");
                None
            }
            Field::Value(s, sp) => {
                *serial_port = Some((s.clone(), sp));
                Some(s)
            }
            _ => None,
        };
        let baud = match sec.int(d, "baud", 1, 10_000_000) {
            Field::Value(b, sp) if !BAUD_RATES.contains(&(b as u32)) => {
                let rates: Vec<String> = BAUD_RATES.iter().map(|r| r.to_string()).collect();
                d.error(
                    &sec.key_path("baud"),
                    Some(sp),
                    format!(
                        "{b} is not a standard rate: use one of {}",
                        rates.join(", ")
                    ),
                );
                None
            }
            f => f.or(9600).map(|b| b as u32),
        };
        let parity = match sec.string(d, "parity") {
            Field::Value(s, sp) => match s.as_str() {
                "none" => Some(Parity::None),
                "even" => Some(Parity::Even),
                "odd" => Some(Parity::Odd),
                _ => {
                    d.error(
                        &sec.key_path("parity"),
                        Some(sp),
                        format!("unknown parity {s:?}: use none, even or odd"),
                    );
                    None
                }
            },
            f => f.or(String::new()).map(|_| Parity::Even),
        };
        let data_bits = match sec.int(d, "data_bits", 0, 255) {
            Field::Value(b, sp) if b != 7 && b != 8 => {
                d.error(
                    &sec.key_path("data_bits"),
                    Some(sp),
                    format!("{b} data bits: use 7 or 8"),
                );
                None
            }
            f => f.or(8).map(|b| b as u8),
        };
        let stop_bits = match sec.int(d, "stop_bits", 0, 255) {
            Field::Value(b, sp) if b != 1 && b != 2 => {
                d.error(
                    &sec.key_path("stop_bits"),
                    Some(sp),
                    format!("{b} stop bits: use 1 or 2"),
                );
                None
            }
            f => f.or(1).map(|b| b as u8),
        };
        (|| {
            Some(Transport::Rtu(SerialSettings {
                port: port?,
                baud: baud?,
                parity: parity?,
                data_bits: data_bits?,
                stop_bits: stop_bits?,
            }))
        })()
    } else {
        let f = sec.string(d, "host");
        let host = match sec.required(d, "host", "IP address or host name", f) {
            Field::Value(s, sp) if s.trim().is_empty() || s.contains(char::is_whitespace) => {
                d.error(
                    &sec.key_path("host"),
                    Some(sp),
                    format!("invalid host {s:?}"),
                );
                None
            }
            f => f.or(String::new()),
        };
        let port = sec.int(d, "port", 1, 65535).or(502).map(|p| p as u16);
        match (host, port) {
            (Some(host), Some(port)) if kind == Kind::Tcp => Some(Transport::Tcp { host, port }),
            (Some(host), Some(port)) => Some(Transport::RtuOverTcp { host, port }),
            _ => None,
        }
    };
    let kind_name = match kind {
        Kind::Rtu => "rtu",
        Kind::Tcp => "tcp",
        Kind::RtuOverTcp => "rtu_over_tcp",
    };
    sec.finish(d, |k| {
        if RTU_ONLY.contains(&k) && !rtu {
            Some(format!(
                "`{k}` applies only to kind = \"rtu\", this bus is {kind_name:?}"
            ))
        } else if TCP_ONLY.contains(&k) && rtu {
            Some(format!(
                "`{k}` applies only to kind = \"tcp\" or \"rtu_over_tcp\", this bus is \"rtu\""
            ))
        } else {
            None
        }
    });
    Some((
        BusConfig {
            name: name.to_string(),
            transport: transport?,
            timeout: timeout?,
            turnaround: turnaround?,
            retries: retries? as u32,
        },
        kind,
    ))
}
