//! `gasdtu scan`: find which unit ids answer on a bus. Probes each unit of a range with one
//! short read (holding register 0 by default; `--address` in decimal, hex or as a Modicon
//! number with `--modicon`); a normal reply or a Modbus exception both mean a device is there,
//! a garbled reply hints at wrong line settings, a gateway's "no target" exception (0x0A,
//! 0x0B) means nothing is there. Prints one readable line per unit that answered (or sent
//! something unreadable, named in a few words, never a dump of bytes or internal
//! structures), then a summary and advice that fits the bus kind: line settings for serial
//! and RTU over TCP, framing and unit id for Modbus TCP. A TCP connection the device closes
//! during a probe is counted and reopened; only a bus that cannot be opened stops the scan.
//! Shows an indicatif progress bar on stderr when stderr is a terminal. When the running
//! daemon owns the bus, each probe is one request to its bus task. Exit 0 if any unit
//! answered, 1 if none, 2 on bad arguments.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::modbus::link::TxError;
use crate::model::Table;

use super::busargs::{BusArgs, BusClient, BusKind};
use super::values::{emit, show_raw, TableArg};
use super::Global;

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status: 0 if any unit answered, 1 if none, 2 bad arguments.")]
pub struct ScanArgs {
    #[command(flatten)]
    pub bus: BusArgs,
    /// First unit id to probe.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=255))]
    pub from: u8,
    /// Last unit id to probe.
    #[arg(long, default_value_t = 247, value_parser = clap::value_parser!(u8).range(1..=255))]
    pub to: u8,
    /// Table of the probe read [default: holding; with --modicon the number's first digit].
    #[arg(long, value_enum)]
    pub table: Option<TableArg>,
    /// Address of the probe read: 0-based, decimal or hex; a register number with --modicon.
    #[arg(long, default_value = "0", value_name = "N")]
    pub address: String,
    /// Read --address as a Modicon register number (40001 = holding address 0).
    #[arg(long)]
    pub modicon: bool,
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// A normal reply: the value read.
    Value(Vec<u16>),
    /// A Modbus exception: the device is there, it just refuses this read.
    Exception(String),
    /// A gateway's exception 0x0A / 0x0B: no device behind it at this unit id.
    NoTarget(u8),
    /// Something answered but the reply was broken (CRC, framing): in a few words.
    Garbled(String),
    /// The connection broke during the probe (some TCP devices close it for a unit id they
    /// do not serve); reopened for the next probe.
    Dropped(String),
    /// No answer.
    Silent,
}

impl Probe {
    pub fn answered(&self) -> bool {
        matches!(self, Probe::Value(_) | Probe::Exception(_))
    }
}

/// The gist of a link error detail: the words before the first ": " or " (" (the rest holds
/// bytes in hex or the internals of a frame), at most 80 characters.
pub fn gist(detail: &str) -> String {
    let end = [detail.find(": "), detail.find(" (")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(detail.len());
    let head = detail[..end].trim();
    let mut out: String = head.chars().take(80).collect();
    if head.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// True for the link's messages about a transport that cannot be opened at all (as opposed
/// to one that broke during a transaction).
fn is_open_failure(msg: &str) -> bool {
    msg.starts_with("cannot open ") || msg.contains(" unavailable (")
}

/// Sort a transaction result into what a scan reports; `Err` is a failure of the bus itself
/// (port missing, connection refused), which ends the scan.
pub fn classify(r: Result<Vec<u16>, TxError>) -> Result<Probe, TxError> {
    match r {
        Ok(v) => Ok(Probe::Value(v)),
        Err(TxError::Exception {
            code: code @ (0x0A | 0x0B),
        }) => Ok(Probe::NoTarget(code)),
        Err(e @ TxError::Exception { .. }) => Ok(Probe::Exception(e.to_string())),
        Err(TxError::Crc { .. }) => Ok(Probe::Garbled("CRC error in reply".into())),
        Err(TxError::Protocol { detail, .. }) => {
            Ok(Probe::Garbled(format!("invalid reply: {}", gist(&detail))))
        }
        Err(TxError::Timeout { .. }) => Ok(Probe::Silent),
        Err(TxError::Io(msg)) if is_open_failure(&msg) => Err(TxError::Io(msg)),
        Err(TxError::Io(msg)) => Ok(Probe::Dropped(gist(&msg))),
    }
}

/// The line printed for a probe, if it gets one.
pub fn line(unit: u8, table: Table, address: u16, probe: &Probe) -> Option<String> {
    match probe {
        Probe::Value(v) => Some(format!(
            "unit {unit:>3}  answers  {table} {address} = {}",
            show_raw(table, v)
        )),
        Probe::Exception(e) => Some(format!("unit {unit:>3}  answers  with {e}")),
        Probe::Garbled(e) => Some(format!("unit {unit:>3}  garbled  {e}")),
        Probe::NoTarget(_) | Probe::Dropped(_) | Probe::Silent => None,
    }
}

/// Lists of unit ids stay readable: runs of 4 or more consecutive ids collapse ("1 2 3",
/// "5-247").
pub fn list(units: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let mut j = i;
        while j + 1 < units.len() && units[j + 1] as u16 == units[j] as u16 + 1 {
            j += 1;
        }
        if j - i >= 3 {
            parts.push(format!("{}-{}", units[i], units[j]));
        } else {
            parts.extend(units[i..=j].iter().map(|u| u.to_string()));
        }
        i = j + 1;
    }
    parts.join(" ")
}

/// From this many probed ids up, all of them answering on Modbus TCP means a device that
/// ignores the unit id (a site with that many devices behind one gateway and no gap is rare).
const EVERY_ID_MIN: usize = 10;

/// The summary and advice after a scan (pure): how many answered, which, and what to check,
/// in the terms of the bus kind.
pub fn summary(kind: BusKind, target: &str, probes: &[(u8, Probe)], secs: f64) -> String {
    let pick = |f: &dyn Fn(&Probe) -> bool| -> Vec<u8> {
        probes
            .iter()
            .filter(|(_, p)| f(p))
            .map(|(u, _)| *u)
            .collect()
    };
    let answered = pick(&|p| p.answered());
    let garbled = pick(&|p| matches!(p, Probe::Garbled(_)));
    let no_target = pick(&|p| matches!(p, Probe::NoTarget(_)));
    let dropped = pick(&|p| matches!(p, Probe::Dropped(_)));
    let total = probes.len();
    let mut out = format!(
        "{} of {total} unit ids answered on {target} in {secs:.1}s",
        answered.len()
    );
    if !answered.is_empty() {
        out.push_str(&format!(": {}", list(&answered)));
    }
    out.push('\n');
    if !no_target.is_empty() {
        out.push_str(&format!(
            "the gateway reported no device (exception 10/11) at {}\n",
            list(&no_target)
        ));
    }
    if !dropped.is_empty() {
        out.push_str(&format!(
            "the connection was closed during the probe of {} (reopened for the next unit)\n",
            list(&dropped)
        ));
    }
    if !garbled.is_empty() {
        let advice = match kind {
            BusKind::Serial | BusKind::RtuOverTcp => "check baud rate, parity and wiring",
            BusKind::Tcp => {
                "the device does not answer in Modbus TCP framing there: a serial device \
                 server in transparent mode needs --rtu-over-tcp, and a reply from another \
                 unit id comes from a device that ignores the unit id"
            }
        };
        out.push_str(&format!(
            "garbled replies from {} ({advice})\n",
            list(&garbled)
        ));
    }
    if answered.is_empty() && garbled.is_empty() {
        out.push_str(match kind {
            BusKind::Serial => {
                "nothing answered: check baud rate, parity, the A/B wiring and termination, \
                 and that the unit ids are in --from/--to\n"
            }
            BusKind::RtuOverTcp => {
                "nothing answered through the device server: check its serial settings (baud \
                 rate, parity), that it is in transparent (raw TCP) mode, and the RS-485 \
                 wiring behind it\n"
            }
            BusKind::Tcp => {
                "nothing answered although the connection opened: the device may refuse or \
                 ignore a read of this register (try another --table/--address from its \
                 manual), or sit behind a gateway whose serial line is silent\n"
            }
        });
    } else if kind == BusKind::Tcp && total >= EVERY_ID_MIN && answered.len() == total {
        out.push_str(
            "every unit id answered: this Modbus TCP device ignores the unit id (use the one \
             its manual gives, often 1 or 255)\n",
        );
    }
    out
}

pub async fn run(args: ScanArgs, global: &Global) -> anyhow::Result<u8> {
    super::init_logging(global.log_level.as_deref().unwrap_or("error"));
    if args.from > args.to {
        eprintln!(
            "gasdtu scan: --from {} is above --to {}",
            args.from, args.to
        );
        return Ok(2);
    }
    let at = match super::address::resolve(
        &args.address,
        args.modicon,
        args.table.map(Table::from),
        Table::HoldingRegister,
    ) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("gasdtu scan: {msg}");
            return Ok(2);
        }
    };
    if args.bus.transport.bus.is_none() {
        if let Err(e) = args.bus.to_bus_config(Duration::from_millis(200)) {
            eprintln!("gasdtu scan: {e}");
            return Ok(2);
        }
    }
    if let Some(note) = &at.note {
        eprintln!("gasdtu scan: probing {note}");
    }
    let mut link =
        match BusClient::open(&args.bus, global, Duration::from_millis(200), "scan").await {
            Ok(c) => c,
            Err(code) => return Ok(code),
        };
    let (table, address) = (at.table, at.address);
    let total = (args.to - args.from) as u64 + 1;
    let started = Instant::now();
    let target = link.target();
    let kind = link.kind();

    let bar = ProgressBar::with_draw_target(
        Some(total),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} unit {msg} ({eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }

    let mut probes: Vec<(u8, Probe)> = Vec::new();
    for unit in args.from..=args.to {
        let found = probes.iter().filter(|(_, p)| p.answered()).count();
        bar.set_message(format!("{unit}, {found} found"));
        let stop = |e: &dyn std::fmt::Display| {
            bar.abandon();
            eprintln!("gasdtu scan: {e} (at unit {unit}); scan stopped");
            Ok(1)
        };
        let probe = match link.read(unit, table, address, 1).await {
            Ok(r) => match classify(r) {
                Ok(p) => p,
                Err(e) => return stop(&e),
            },
            Err(e) => return stop(&e),
        };
        if let Some(line) = line(unit, table, address, &probe) {
            bar.suspend(|| emit(&format!("{line}\n")));
        }
        probes.push((unit, probe));
        bar.inc(1);
    }
    bar.finish_and_clear();
    emit(&summary(
        kind,
        &target,
        &probes,
        started.elapsed().as_secs_f64(),
    ));
    Ok(if probes.iter().any(|(_, p)| p.answered()) {
        0
    } else {
        1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_results() {
        let t = Duration::from_millis(200);
        // (what the link returned, what the scan makes of it; Err = the scan stops)
        type Row = (Result<Vec<u16>, TxError>, Result<Probe, ()>);
        let rows: Vec<Row> = vec![
            (Ok(vec![7]), Ok(Probe::Value(vec![7]))),
            (
                Err(TxError::Exception { code: 2 }),
                Ok(Probe::Exception(
                    "exception 2 (illegal data address)".into(),
                )),
            ),
            (Err(TxError::Exception { code: 11 }), Ok(Probe::NoTarget(11))),
            (
                Err(TxError::Timeout {
                    timeout: t,
                    attempts: 1,
                }),
                Ok(Probe::Silent),
            ),
            (
                Err(TxError::Crc {
                    attempts: 1,
                    detail: "expected CRC 0x1234, got 0x4321 in 01 03 02 00 2A".into(),
                }),
                Ok(Probe::Garbled("CRC error in reply".into())),
            ),
            (
                Err(TxError::Protocol {
                    attempts: 1,
                    detail: "reply header does not match the request: expected/request = \
                             Header { transaction_id: 1, unit_id: 2 }"
                        .into(),
                }),
                Ok(Probe::Garbled(
                    "invalid reply: reply header does not match the request".into(),
                )),
            ),
            (
                Err(TxError::Protocol {
                    attempts: 1,
                    detail: "bytes that never made an MBAP frame: 3D 86 B0".into(),
                }),
                Ok(Probe::Garbled(
                    "invalid reply: bytes that never made an MBAP frame".into(),
                )),
            ),
            (
                Err(TxError::Io(
                    "i/o error on 127.0.0.1:502: failed to fill whole buffer".into(),
                )),
                Ok(Probe::Dropped("i/o error on 127.0.0.1:502".into())),
            ),
            (Err(TxError::Io("cannot open /dev/ttyUSB9".into())), Err(())),
            (
                Err(TxError::Io(
                    "10.0.0.5:502 unavailable (cannot open 10.0.0.5:502: refused); next attempt in 0.5s"
                        .into(),
                )),
                Err(()),
            ),
        ];
        for (r, want) in rows {
            let got = classify(r.clone()).map_err(|_| ());
            assert_eq!(got, want, "{r:?}");
        }
        assert!(Probe::Exception(String::new()).answered());
        assert!(!Probe::Garbled(String::new()).answered());
        assert!(!Probe::NoTarget(11).answered());
        assert!(!Probe::Silent.answered());
    }

    #[test]
    fn unit_lists_collapse_runs() {
        assert_eq!(list(&[]), "");
        assert_eq!(list(&[1, 2]), "1 2");
        assert_eq!(list(&[1, 2, 3]), "1 2 3");
        assert_eq!(list(&[1, 2, 3, 4]), "1-4");
        assert_eq!(list(&[1, 3, 4, 5, 6, 9, 10, 11, 255]), "1 3-6 9 10 11 255");
    }

    #[test]
    fn summaries_give_advice_that_fits_the_bus() {
        let v = || Probe::Value(vec![0]);
        let g = || Probe::Garbled("CRC error in reply".into());
        // (kind, probes, expected lines after the first)
        #[rustfmt::skip]
        type Row<'a> = (BusKind, Vec<(u8, Probe)>, Vec<&'a str>);
        let rows: Vec<Row> = vec![
            (BusKind::Serial, vec![(1, v()), (2, g())],
                vec!["garbled replies from 2 (check baud rate, parity and wiring)"]),
            (BusKind::Tcp, vec![(1, v()), (2, g())],
                vec!["garbled replies from 2 (the device does not answer in Modbus TCP framing there: a serial device server in transparent mode needs --rtu-over-tcp, and a reply from another unit id comes from a device that ignores the unit id)"]),
            (BusKind::Tcp, vec![(1, v()), (2, v()), (3, v())], vec![]),
            (BusKind::Tcp, (1..=10).map(|u| (u, v())).collect(),
                vec!["every unit id answered: this Modbus TCP device ignores the unit id (use the one its manual gives, often 1 or 255)"]),
            (BusKind::Tcp, vec![(1, Probe::NoTarget(11)), (2, Probe::NoTarget(11)), (3, Probe::Dropped("x".into()))],
                vec!["the gateway reported no device (exception 10/11) at 1 2",
                     "the connection was closed during the probe of 3 (reopened for the next unit)",
                     "nothing answered although the connection opened: the device may refuse or ignore a read of this register (try another --table/--address from its manual), or sit behind a gateway whose serial line is silent"]),
            (BusKind::Serial, vec![(1, Probe::Silent)],
                vec!["nothing answered: check baud rate, parity, the A/B wiring and termination, and that the unit ids are in --from/--to"]),
            (BusKind::RtuOverTcp, vec![(1, Probe::Silent)],
                vec!["nothing answered through the device server: check its serial settings (baud rate, parity), that it is in transparent (raw TCP) mode, and the RS-485 wiring behind it"]),
        ];
        for (kind, probes, want) in rows {
            let s = summary(kind, "t", &probes, 1.3);
            let lines: Vec<&str> = s.lines().collect();
            assert!(
                lines[0].starts_with(&format!(
                    "{} of {} unit ids answered on t in 1.3s",
                    probes.iter().filter(|(_, p)| p.answered()).count(),
                    probes.len()
                )),
                "{s}"
            );
            assert_eq!(lines[1..], want[..], "{kind:?}");
            // No advice about line settings on Modbus TCP.
            if kind == BusKind::Tcp {
                assert!(!s.contains("baud") && !s.contains("parity"), "{s}");
            }
        }
    }
}
