//! What a validated configuration asks of its buses: per bus, how many reads one poll cycle
//! needs and, for serial (RTU) buses, the theoretical wire time of that cycle at the bus's
//! baud rate compared with the shortest poll interval on the bus. Used for `gasdtu check`'s
//! report and for the load warnings. Pure.

use std::time::Duration;

use crate::modbus::planner;

use super::load::Loaded;
use super::{Config, Transport};

/// How one poll cycle of a bus compares with its shortest poll interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Wire time is at most half the shortest poll.
    Ok,
    /// Wire time is above half the shortest poll: retries or a dead slave will overrun.
    Tight,
    /// Wire time alone exceeds the shortest poll: cycles will overrun.
    Overrun,
    /// Not a serial bus (or serial side unknown), or nothing to poll.
    NotApplicable,
}

/// One bus's load.
#[derive(Debug, Clone, PartialEq)]
pub struct BusTiming {
    pub bus: String,
    /// Enabled devices on the bus.
    pub devices: usize,
    /// Read transactions per full cycle (every enabled device once).
    pub reads: usize,
    /// Read and computed points of the enabled devices.
    pub points: usize,
    /// Baud rate, for RTU buses.
    pub baud: Option<u32>,
    /// Theoretical wire time of one full cycle, for RTU buses.
    pub wire_time: Option<Duration>,
    /// Shortest poll interval of the enabled devices.
    pub shortest_poll: Option<Duration>,
    pub verdict: Verdict,
}

impl BusTiming {
    /// The warning this bus deserves, if any.
    pub fn warning(&self) -> Option<String> {
        let (wire, poll, baud) = (self.wire_time?, self.shortest_poll?, self.baud?);
        match self.verdict {
            Verdict::Overrun => Some(format!(
                "one poll cycle needs {} of wire time at {baud} baud ({} reads), longer than the shortest poll interval {}: cycles will overrun (raise the baud rate, lengthen poll or split the bus)",
                fmt_ms(wire),
                self.reads,
                humantime::format_duration(poll)
            )),
            Verdict::Tight => Some(format!(
                "one poll cycle needs {} of wire time at {baud} baud ({} reads), more than half the shortest poll interval {}: tight, one slow or dead device will overrun it",
                fmt_ms(wire),
                self.reads,
                humantime::format_duration(poll)
            )),
            _ => None,
        }
    }

    /// The info line of `gasdtu check`.
    pub fn line(&self) -> String {
        let poll = match self.shortest_poll {
            Some(p) => humantime::format_duration(p).to_string(),
            None => "-".to_string(),
        };
        let verdict = match self.verdict {
            Verdict::Ok => "ok",
            Verdict::Tight => "tight",
            Verdict::Overrun => "OVERRUN",
            Verdict::NotApplicable => "n/a",
        };
        match (self.wire_time, self.baud) {
            (Some(w), Some(b)) => format!(
                "bus {}: {} device{}, {} reads/cycle, wire time {} at {b} baud, shortest poll {poll}: {verdict}",
                self.bus,
                self.devices,
                plural(self.devices),
                self.reads,
                fmt_ms(w)
            ),
            _ => format!(
                "bus {}: {} device{}, {} reads/cycle, shortest poll {poll} (no serial wire time: network bus)",
                self.bus, self.devices, plural(self.devices), self.reads
            ),
        }
    }
}

/// "s" unless exactly one ("1 device", "2 devices").
fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn fmt_ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// Compute the load of every bus (in config order).
pub fn bus_timing(config: &Config) -> Vec<BusTiming> {
    config
        .buses
        .iter()
        .map(|bus| {
            let devs: Vec<_> = config
                .devices
                .iter()
                .filter(|d| d.enabled && d.bus == bus.name)
                .collect();
            let mut reads = 0usize;
            let mut points = 0usize;
            let mut wire = Duration::ZERO;
            for dev in &devs {
                points += dev.points.len() + dev.computed.len();
                // A validated device always plans; skip defensively if not.
                let Ok(blocks) = planner::plan(&dev.points, dev.limits()) else {
                    continue;
                };
                reads += blocks.len();
                if let Transport::Rtu(s) = &bus.transport {
                    wire +=
                        planner::rtu_wire_time(&blocks, s.baud, s.bits_per_char(), bus.turnaround);
                }
            }
            let shortest_poll = devs.iter().map(|d| d.poll).min();
            let (baud, wire_time) = match &bus.transport {
                Transport::Rtu(s) => (Some(s.baud), Some(wire)),
                _ => (None, None),
            };
            let verdict = match (wire_time, shortest_poll) {
                (Some(w), Some(p)) if w > p => Verdict::Overrun,
                (Some(w), Some(p)) if w * 2 > p => Verdict::Tight,
                (Some(_), Some(_)) => Verdict::Ok,
                _ => Verdict::NotApplicable,
            };
            BusTiming {
                bus: bus.name.clone(),
                devices: devs.len(),
                reads,
                points,
                baud,
                wire_time,
                shortest_poll,
                verdict,
            }
        })
        .collect()
}

/// Totals of a configuration, for the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub buses: usize,
    /// Enabled devices.
    pub devices: usize,
    pub disabled_devices: usize,
    /// Read and computed points of enabled devices.
    pub points: usize,
    /// Read transactions per cycle of every enabled device.
    pub reads: usize,
}

pub fn summary(config: &Config) -> Summary {
    let timing = bus_timing(config);
    Summary {
        buses: config.buses.len(),
        devices: config.devices.iter().filter(|d| d.enabled).count(),
        disabled_devices: config.devices.iter().filter(|d| !d.enabled).count(),
        points: timing.iter().map(|t| t.points).sum(),
        reads: timing.iter().map(|t| t.reads).sum(),
    }
}

/// The info lines `gasdtu check` prints for a valid configuration: one per bus, e.g.
/// `bus rs485a: 3 devices, 11 reads/cycle, wire time 412 ms at 9600 baud, shortest poll 5m: ok`.
pub fn check_report(loaded: &Loaded) -> Vec<String> {
    bus_timing(&loaded.config)
        .iter()
        .map(BusTiming::line)
        .collect()
}
