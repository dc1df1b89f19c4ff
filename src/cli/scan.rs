//! `gasdtu scan`: find which unit ids answer on a bus. Probes each unit of a range with one
//! short read (holding register 0 by default); a normal reply or a Modbus exception both mean
//! a device is there, a garbled reply hints at wrong line settings. Shows an indicatif
//! progress bar on stderr when stderr is a terminal, prints each responding unit as it is
//! found, then the list and a summary. When the running daemon owns the bus, each probe is
//! one request to its bus task (interleaved with its polling, with the bus's own timeout and
//! retries). Exit 0 if any unit answered, 1 if none, 2 on bad arguments.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::modbus::link::TxError;
use crate::model::Table;

use super::busargs::{BusArgs, BusClient};
use super::read::{emit, show_raw, TableArg};
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
    /// Table of the probe read.
    #[arg(long, value_enum, default_value_t = TableArg::Holding)]
    pub table: TableArg,
    /// Address of the probe read, 0-based.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub address: u16,
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// A normal reply: the value read.
    Value(Vec<u16>),
    /// A Modbus exception: the device is there, it just refuses this read.
    Exception(String),
    /// Something answered but the reply was broken (CRC, framing): wrong baud or parity?
    Garbled(String),
    /// No answer.
    Silent,
}

impl Probe {
    pub fn answered(&self) -> bool {
        matches!(self, Probe::Value(_) | Probe::Exception(_))
    }
}

/// Sort a transaction result into what a scan reports; `Err` is a failure of the bus itself
/// (port missing, connection refused), which ends the scan.
pub fn classify(r: Result<Vec<u16>, TxError>) -> Result<Probe, TxError> {
    match r {
        Ok(v) => Ok(Probe::Value(v)),
        Err(e @ TxError::Exception { .. }) => Ok(Probe::Exception(e.to_string())),
        Err(e @ (TxError::Crc { .. } | TxError::Protocol { .. })) => {
            Ok(Probe::Garbled(e.to_string()))
        }
        Err(TxError::Timeout { .. }) => Ok(Probe::Silent),
        Err(e @ TxError::Io(_)) => Err(e),
    }
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
    let mut link =
        match BusClient::open(&args.bus, global, Duration::from_millis(200), "scan").await {
            Ok(c) => c,
            Err(code) => return Ok(code),
        };
    let table: Table = args.table.into();
    let total = (args.to - args.from) as u64 + 1;
    let started = Instant::now();
    let target = link.target();

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

    let mut answered: Vec<u8> = Vec::new();
    let mut garbled: Vec<u8> = Vec::new();
    for unit in args.from..=args.to {
        bar.set_message(format!("{unit}, {} found", answered.len()));
        let stop = |e: &dyn std::fmt::Display| {
            bar.abandon();
            eprintln!("gasdtu scan: {e} (at unit {unit}); scan stopped");
            Ok(1)
        };
        let probe = match link.read(unit, table, args.address, 1).await {
            Ok(r) => match classify(r) {
                Ok(p) => p,
                Err(e) => return stop(&e),
            },
            Err(e) => return stop(&e),
        };
        let line = match &probe {
            Probe::Value(v) => Some(format!(
                "unit {unit:>3}  answers  {table} {} = {}",
                args.address,
                show_raw(table, v)
            )),
            Probe::Exception(e) => Some(format!("unit {unit:>3}  answers  with {e}")),
            Probe::Garbled(e) => Some(format!("unit {unit:>3}  garbled  {e}")),
            Probe::Silent => None,
        };
        if probe.answered() {
            answered.push(unit);
        } else if matches!(probe, Probe::Garbled(_)) {
            garbled.push(unit);
        }
        if let Some(line) = line {
            bar.suspend(|| emit(&format!("{line}\n")));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let list = |units: &[u8]| {
        units
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut summary = format!(
        "{} of {total} unit ids answered on {target} in {:.1}s",
        answered.len(),
        started.elapsed().as_secs_f64()
    );
    if !answered.is_empty() {
        summary.push_str(&format!(": {}", list(&answered)));
    }
    summary.push('\n');
    if !garbled.is_empty() {
        summary.push_str(&format!(
            "garbled replies from {} (check baud rate, parity and wiring)\n",
            list(&garbled)
        ));
    }
    emit(&summary);
    Ok(if answered.is_empty() { 1 } else { 0 })
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
                    detail: "x".into(),
                }),
                Ok(Probe::Garbled("CRC error in reply (1 attempt): x".into())),
            ),
            (Err(TxError::Io("cannot open /dev/ttyUSB9".into())), Err(())),
        ];
        for (r, want) in rows {
            let got = classify(r.clone()).map_err(|_| ());
            assert_eq!(got, want, "{r:?}");
        }
        assert!(Probe::Exception(String::new()).answered());
        assert!(!Probe::Garbled(String::new()).answered());
        assert!(!Probe::Silent.answered());
    }
}
