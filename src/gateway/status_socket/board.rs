//! The device board: the latest state of every device (last poll, quality, online) and its
//! read success over the last 24 h (`read_window`), updated by the sample consumer as batches
//! pass by and read by `gasdtu status`, the STATUS= line and `<root>/health`. No I/O.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::gateway::read_window::{self, ReadWindow};
use crate::model::{Quality, SampleBatch};
use crate::time::unix_ms;

/// Latest known state of one device.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviceState {
    pub bus: String,
    pub online: bool,
    pub failed_cycles: u32,
    /// Last poll slot (UTC ms).
    pub last_poll_ms: i64,
    /// Last time any point of the device was read good (UTC ms).
    pub last_good_ms: Option<i64>,
    pub good: usize,
    pub bad: usize,
    /// First bad reason of the last cycle, if any.
    pub last_error: Option<String>,
    pub cycles: u64,
}

/// Device states, updated by the sample consumer.
#[derive(Default, Clone)]
pub struct DeviceBoard {
    inner: Arc<Mutex<BTreeMap<String, DeviceState>>>,
    /// Read success over the last 24 h per device (`<root>/health`).
    windows: Arc<Mutex<BTreeMap<String, ReadWindow>>>,
}

impl DeviceBoard {
    /// Forget every device not in `keep` (a reload removed or disabled it): it must not stay
    /// "offline" in `status` and the STATUS= line forever.
    pub fn retain<'a>(&self, keep: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = keep.into_iter().collect();
        match self.inner.lock() {
            Ok(mut g) => g.retain(|name, _| keep.contains(name.as_str())),
            Err(p) => p
                .into_inner()
                .retain(|name, _| keep.contains(name.as_str())),
        }
        match self.windows.lock() {
            Ok(mut g) => g.retain(|name, _| keep.contains(name.as_str())),
            Err(p) => p
                .into_inner()
                .retain(|name, _| keep.contains(name.as_str())),
        }
    }

    /// Read success over the last 24 h (`read_window::summary`).
    pub fn read_summary(&self, now_ms: i64) -> serde_json::Value {
        match self.windows.lock() {
            Ok(g) => read_window::summary(&g, now_ms),
            Err(p) => read_window::summary(&p.into_inner(), now_ms),
        }
    }

    pub fn observe(&self, b: &SampleBatch) {
        let good = b.samples.iter().filter(|s| s.quality.is_good()).count();
        let last_good = b
            .samples
            .iter()
            .filter(|s| s.quality.is_good())
            .map(|s| unix_ms(s.read_at))
            .max();
        let err = b.samples.iter().find_map(|s| match &s.quality {
            Quality::Bad(r) => Some(format!("{}: {r}", s.point)),
            Quality::Good => None,
        });
        let mut m = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let e = m
            .entry(b.device.to_string())
            .or_insert_with(|| DeviceState {
                bus: b.bus.to_string(),
                online: b.online,
                failed_cycles: 0,
                last_poll_ms: 0,
                last_good_ms: None,
                good: 0,
                bad: 0,
                last_error: None,
                cycles: 0,
            });
        e.online = b.online;
        e.failed_cycles = b.failed_cycles;
        e.last_poll_ms = unix_ms(b.slot);
        if last_good.is_some() {
            e.last_good_ms = last_good;
        }
        e.good = good;
        e.bad = b.samples.len() - good;
        e.last_error = err;
        e.cycles += 1;
        drop(m);
        let total = b.samples.len() as u64;
        let mut w = match self.windows.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        w.entry(b.device.to_string())
            .or_default()
            .add(unix_ms(b.slot), good as u64, total);
    }

    pub fn snapshot(&self) -> BTreeMap<String, DeviceState> {
        match self.inner.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}
