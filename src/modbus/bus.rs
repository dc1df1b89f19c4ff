//! The bus task: the one owner of a bus. It holds the bus's `Link`, the request plans of the
//! devices on it and their wall-clock schedules, and serializes every transaction on the bus.
//! A device without a valid answer on a block (silence, garbage, a lying reply, CRC errors)
//! costs its own timeout and retries once per cycle (its remaining blocks are skipped), a valid
//! exception spoils only its block, and the other devices still report in the same cycle. It
//! turns replies into samples (decoder, computed points), tracks online/offline per device
//! (offline after `offline_after` cycles without a single valid answer: data or a valid
//! exception) and sends one `SampleBatch` per device and cycle into the acquisition channel.
//! Between poll cycles it serves bus requests through the same link, so the bus keeps one
//! owner: point writes of the interlocks (`WriteRequest`, read back) and raw transactions of
//! the commissioning CLI passed on by the daemon (`RawRequest`). It never touches storage or
//! the uplink.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{BusConfig, DeviceConfig};
use crate::modbus::link::{Link, TxError};
use crate::modbus::planner::{self, Block};
use crate::modbus::registers;
use crate::modbus::schedule;
use crate::model::{BadReason, Quality, Sample, SampleBatch, Table, Value};

/// Poll state of one device on the bus.
struct DevicePoller {
    cfg: DeviceConfig,
    name: Arc<str>,
    blocks: Vec<Block>,
    names: Vec<Arc<str>>,
    units: Vec<Option<Arc<str>>>,
    computed_names: Vec<Arc<str>>,
    computed_units: Vec<Option<Arc<str>>>,
    /// Per point: the index of the point holding its decimals (`scale_from`).
    scale_from: Vec<Option<usize>>,
    /// `poll_once`'s per-point results, empty between cycles (kept for its capacity).
    values: Vec<Option<(Result<Value, BadReason>, SystemTime)>>,
    next: SystemTime,
    failed_cycles: u32,
    online: bool,
}

impl DevicePoller {
    fn new(cfg: DeviceConfig, now: SystemTime) -> Result<DevicePoller, planner::PlanError> {
        let blocks = planner::plan(&cfg.points, cfg.limits())?;
        Ok(DevicePoller {
            name: Arc::from(cfg.name.as_str()),
            names: cfg
                .points
                .iter()
                .map(|p| Arc::from(p.name.as_str()))
                .collect(),
            units: cfg
                .points
                .iter()
                .map(|p| p.unit.as_deref().map(Arc::from))
                .collect(),
            computed_names: cfg
                .computed
                .iter()
                .map(|c| Arc::from(c.name.as_str()))
                .collect(),
            computed_units: cfg
                .computed
                .iter()
                .map(|c| c.unit.as_deref().map(Arc::from))
                .collect(),
            scale_from: cfg
                .points
                .iter()
                .map(|p| {
                    let from = p.scale_from.as_deref()?;
                    cfg.points.iter().position(|o| o.name == from)
                })
                .collect(),
            values: Vec::new(),
            next: schedule::next_slot(now, cfg.poll, cfg.phase),
            blocks,
            cfg,
            failed_cycles: 0,
            // Unknown until the first cycle; assume online so the first failure is reported
            // as a transition.
            online: true,
        })
    }
}

/// The long-lived task that owns one bus.
pub struct BusTask {
    bus: BusConfig,
    /// `bus.name`, shared by every batch of this bus (no allocation per batch).
    bus_name: Arc<str>,
    link: Link,
    devices: Vec<DevicePoller>,
    tx: mpsc::Sender<SampleBatch>,
    /// Poll immediately at start instead of waiting for the first aligned slot.
    poll_at_start: bool,
    /// Requests served between poll cycles (interlock writes, raw CLI transactions). Dropped
    /// once every sender is gone (its `recv` would return `None` at once, forever, and spin
    /// the task).
    requests: Option<mpsc::Receiver<BusRequest>>,
    /// Where this task says when its next poll cycle starts (`NextPolls`: the consumer ends
    /// its gathering window once every bus has sent its cycle).
    next_poll: Option<super::PollSlot>,
}

/// A write to a writable point of a device on this bus, answered with the read-back value.
#[derive(Debug)]
pub struct WriteRequest {
    pub device: String,
    pub point: String,
    pub value: Value,
    pub reply: tokio::sync::oneshot::Sender<Result<Value, String>>,
}

/// One raw Modbus transaction, as the commissioning CLI asks for it (`gasdtu read`, `write`,
/// `scan` through the running daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawOp {
    /// Read `count` registers (or bits, as 0/1) of `table` (functions 1 to 4).
    Read {
        table: Table,
        address: u16,
        count: u16,
    },
    /// Write one coil (function 5).
    WriteCoil { address: u16, value: bool },
    /// Write holding registers (function 6 for one, 16 for several).
    WriteRegisters { address: u16, values: Vec<u16> },
}

/// Most registers one write (function 16) may carry.
pub const MAX_WRITE_REGISTERS: usize = 123;

/// Why a raw transaction cannot be put on the wire (outside the Modbus limits).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RawOpError {
    #[error("unit {0} cannot be asked (1-255; 0 is a broadcast, which nobody answers)")]
    Unit(u8),
    #[error("count {count} out of range for the {table} table (1 to {max} per read)")]
    Count { table: Table, count: u16, max: u16 },
    #[error("{n} registers in one write out of range (1 to {MAX_WRITE_REGISTERS})")]
    WriteLength { n: usize },
    #[error("address {address} with {n} items runs past address 65535")]
    PastEnd { address: u16, n: usize },
}

impl RawOp {
    /// Check the op against the protocol limits (125 registers / 2000 bits per read, 123
    /// registers per write, no wrap past 65535).
    pub fn check(&self) -> Result<(), RawOpError> {
        let (address, n) = match self {
            RawOp::Read {
                table,
                address,
                count,
            } => {
                if *count == 0 || *count > table.max_read() {
                    return Err(RawOpError::Count {
                        table: *table,
                        count: *count,
                        max: table.max_read(),
                    });
                }
                (*address, *count as usize)
            }
            RawOp::WriteCoil { address, .. } => (*address, 1),
            RawOp::WriteRegisters { address, values } => {
                if values.is_empty() || values.len() > MAX_WRITE_REGISTERS {
                    return Err(RawOpError::WriteLength { n: values.len() });
                }
                (*address, values.len())
            }
        };
        if address as usize + n > 65536 {
            return Err(RawOpError::PastEnd { address, n });
        }
        Ok(())
    }

    /// True for the ops that change the device.
    pub fn is_write(&self) -> bool {
        !matches!(self, RawOp::Read { .. })
    }
}

/// What a raw transaction returns: the registers (or bits as 0/1) read, empty for a write.
pub type RawReply = Result<Vec<u16>, TxError>;

/// A raw transaction for a unit on this bus, checked against the Modbus limits when built.
#[derive(Debug)]
pub struct RawRequest {
    unit: u8,
    op: RawOp,
    reply: oneshot::Sender<RawReply>,
}

impl RawRequest {
    /// A checked request and the receiver its answer arrives on. Dropping the receiver before
    /// the bus task reaches the request cancels it (it is then never put on the wire).
    pub fn new(
        unit: u8,
        op: RawOp,
    ) -> Result<(RawRequest, oneshot::Receiver<RawReply>), RawOpError> {
        if unit == 0 {
            return Err(RawOpError::Unit(unit));
        }
        op.check()?;
        let (reply, rx) = oneshot::channel();
        Ok((RawRequest { unit, op, reply }, rx))
    }

    pub fn unit(&self) -> u8 {
        self.unit
    }

    pub fn op(&self) -> &RawOp {
        &self.op
    }
}

/// Anything a bus task serves between poll cycles.
#[derive(Debug)]
pub enum BusRequest {
    /// A point write of an interlock, read back.
    WritePoint(WriteRequest),
    /// A raw transaction of the commissioning CLI.
    Raw(RawRequest),
}

impl BusTask {
    /// Build the task for `bus` and the enabled devices on it. Devices whose points cannot be
    /// planned are left out with an error log (the config check refuses them anyway).
    pub fn new(
        bus: BusConfig,
        devices: Vec<DeviceConfig>,
        tx: mpsc::Sender<SampleBatch>,
    ) -> BusTask {
        let now = crate::time::now();
        let mut pollers = Vec::new();
        for d in devices
            .into_iter()
            .filter(|d| d.enabled && d.bus == bus.name)
        {
            let name = d.name.clone();
            match DevicePoller::new(d, now) {
                Ok(p) => pollers.push(p),
                Err(e) => {
                    tracing::error!(device = %name, "cannot plan reads, device left out: {e}")
                }
            }
        }
        BusTask {
            link: Link::new(bus.clone()),
            bus_name: Arc::from(bus.name.as_str()),
            bus,
            devices: pollers,
            tx,
            poll_at_start: false,
            requests: None,
            next_poll: None,
        }
    }

    /// Poll every device once right away, then follow the aligned schedule (used by the demo
    /// and the commissioning views so nobody waits five minutes for a first reading).
    pub fn poll_at_start(mut self, yes: bool) -> Self {
        self.poll_at_start = yes;
        self
    }

    /// Serve requests from `rx` between poll cycles, through this task's link with the bus's
    /// timeout, retries and turnaround: interlock writes and the commissioning CLI's raw
    /// transactions (through the daemon). The bus keeps one owner.
    pub fn with_requests(mut self, rx: mpsc::Receiver<BusRequest>) -> Self {
        self.requests = Some(rx);
        self
    }

    /// Say in `slot` when the next poll cycle starts (set after every cycle, before sleeping).
    pub fn with_next_poll(mut self, slot: super::PollSlot) -> Self {
        self.next_poll = Some(slot);
        self
    }

    async fn serve(&mut self, req: BusRequest) {
        match req {
            BusRequest::WritePoint(w) => self.serve_write(w).await,
            BusRequest::Raw(r) => self.serve_raw(r).await,
        }
    }

    /// Run one raw transaction, unless its requester already gave up (a write it no longer
    /// waits for must not reach the device).
    async fn serve_raw(&mut self, req: RawRequest) {
        let RawRequest { unit, op, reply } = req;
        if reply.is_closed() {
            tracing::info!(bus = %self.bus.name, unit, ?op, "raw request dropped: its requester gave up waiting");
            return;
        }
        if op.is_write() {
            // Writes to field devices from outside the config leave a trace in the journal.
            tracing::info!(bus = %self.bus.name, unit, ?op, "raw write requested through the status socket");
        }
        let res = match &op {
            RawOp::Read {
                table,
                address,
                count,
            } => self.link.read(unit, *table, *address, *count).await,
            RawOp::WriteCoil { address, value } => self
                .link
                .write_coil(unit, *address, *value)
                .await
                .map(|()| Vec::new()),
            RawOp::WriteRegisters { address, values } => self
                .link
                .write_registers(unit, *address, values)
                .await
                .map(|()| Vec::new()),
        };
        if let Err(e) = &res {
            tracing::debug!(bus = %self.bus.name, unit, ?op, "raw request failed: {e}");
        }
        let _ = reply.send(res);
    }

    /// Write `req.value` to a writable point and read it back.
    async fn serve_write(&mut self, req: WriteRequest) {
        let res = self.write_point(&req.device, &req.point, &req.value).await;
        let _ = req.reply.send(res);
    }

    async fn write_point(
        &mut self,
        device: &str,
        point: &str,
        value: &Value,
    ) -> Result<Value, String> {
        let d = self
            .devices
            .iter()
            .find(|d| &*d.name == device)
            .ok_or_else(|| format!("no device `{device}` on bus `{}`", self.bus.name))?;
        let p = d
            .cfg
            .points
            .iter()
            .find(|p| p.name == point)
            .ok_or_else(|| format!("device `{device}` has no point `{point}`"))?
            .clone();
        if !p.writable {
            return Err(format!("point `{point}` of `{device}` is not writable"));
        }
        let unit = d.cfg.unit;
        match p.table {
            crate::model::Table::Coil => {
                let on = value.as_f64().map(|x| x != 0.0).unwrap_or(false);
                self.link
                    .write_coil(unit, p.address, on)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            crate::model::Table::HoldingRegister => {
                let regs = registers::encode_point(&p, value).map_err(|e| e.to_string())?;
                self.link
                    .write_registers(unit, p.address, &regs)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            t => return Err(format!("table {t} cannot be written")),
        }
        let regs = self
            .link
            .read(unit, p.table, p.address, p.width())
            .await
            .map_err(|e| format!("written, but the read-back failed: {e}"))?;
        registers::decode_point(&p, &regs)
            .map_err(|e| format!("written, but the read-back cannot be decoded: {e}"))
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Total read transactions one cycle of every device costs.
    pub fn reads_per_cycle(&self) -> usize {
        self.devices.iter().map(|d| d.blocks.len()).sum()
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(
            bus = %self.bus.name,
            target = %self.link.target(),
            devices = self.devices.len(),
            reads_per_cycle = self.reads_per_cycle(),
            "bus task started"
        );
        let mut requests = self.requests.take();
        if self.poll_at_start {
            let now = crate::time::now();
            for i in 0..self.devices.len() {
                if shutdown.is_cancelled() {
                    return;
                }
                if !self.poll_device(i, now).await {
                    return;
                }
            }
        }
        // After a request was served, devices that are due poll before the next request: a
        // stream of CLI requests (a scan) cannot starve the schedule, nor the reverse.
        let mut just_served = false;
        loop {
            // A clock that went back (a network correction cleared, NTP stepping back) must
            // not leave a device waiting for a slot far ahead.
            let now = crate::time::now();
            for d in &mut self.devices {
                d.next = schedule::resync(d.next, now, d.cfg.poll, d.cfg.phase);
            }
            // No device (all left out at planning): no schedule, requests are still served.
            let next = self.devices.iter().map(|d| d.next).min();
            if let Some(slot) = &self.next_poll {
                // After this cycle's batches were sent: the consumer need not wait for more.
                slot.set(next);
            }
            let wait = next.map(|next| {
                next.duration_since(crate::time::now())
                    .unwrap_or(Duration::ZERO)
            });
            let take_requests = !(just_served && wait == Some(Duration::ZERO));
            let mut req = None;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sleep_or_pending(wait) => {}
                r = recv_or_pending(&mut requests), if take_requests => match r {
                    Some(r) => req = Some(r),
                    // Every sender is gone: stop listening instead of spinning on `None`.
                    None => requests = None,
                },
            }
            if let Some(r) = req {
                self.serve(r).await;
                just_served = true;
                continue;
            }
            just_served = false;
            // Poll every device that is due, in name order, one transaction at a time.
            let now = crate::time::now();
            for i in 0..self.devices.len() {
                if shutdown.is_cancelled() {
                    break;
                }
                let slot = self.devices[i].next;
                if slot > now {
                    continue;
                }
                if !self.poll_device(i, slot).await {
                    return;
                }
                let d = &mut self.devices[i];
                let (next, skipped) =
                    schedule::after(slot, crate::time::now(), d.cfg.poll, d.cfg.phase);
                if skipped > 0 {
                    tracing::warn!(
                        bus = %self.bus.name, device = %d.name, skipped,
                        "poll overran its interval; missed slots skipped (bus too slow for the schedule?)"
                    );
                }
                d.next = next;
            }
        }
        tracing::info!(bus = %self.bus.name, "bus task stopped");
    }

    /// Poll device `i` for `slot`; false if the sample channel is closed (shutdown).
    async fn poll_device(&mut self, i: usize, slot: SystemTime) -> bool {
        let batch = poll_once(&mut self.link, &mut self.devices[i], slot, &self.bus_name).await;
        self.tx.send(batch).await.is_ok()
    }
}

async fn recv_or_pending<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_or_pending(wait: Option<Duration>) {
    match wait {
        Some(w) => tokio::time::sleep(w).await,
        None => std::future::pending().await,
    }
}

async fn poll_once(
    link: &mut Link,
    d: &mut DevicePoller,
    slot: SystemTime,
    bus_name: &Arc<str>,
) -> SampleBatch {
    let bus: &str = bus_name;
    let n = d.cfg.points.len();
    // The device's own vector, kept between cycles (a fresh one was a cold allocation per
    // device and cycle: ~2 % of the daemon's CPU samples on W1, issue 13).
    let mut values = std::mem::take(&mut d.values);
    values.clear();
    values.resize(n, None);
    let mut answered = false;
    let mut silent: Option<TxError> = None;
    for b in &d.blocks {
        let res = match &silent {
            // No valid answer from the device on a block this cycle (silence, garbage, a lying
            // reply, CRC errors, after every retry): do not spend another timeout on it.
            Some(e) => Err(e.clone()),
            None => link.read(d.cfg.unit, b.table, b.start, b.count).await,
        };
        let read_at = crate::time::now();
        match res {
            Ok(regs) => {
                answered = true;
                for &pi in &b.points {
                    let p = &d.cfg.points[pi];
                    let off = b.offset_of(p);
                    let v = match regs.get(off..) {
                        // Raw for now: the decimals may come in a later block.
                        Some(r) if p.scale_from.is_some() => {
                            registers::decode_raw(p.data_type, p.order, r)
                                .map_err(|e| BadReason::Decode(e.to_string()))
                        }
                        Some(r) => registers::decode_point(p, r)
                            .map_err(|e| BadReason::Decode(e.to_string())),
                        None => Err(BadReason::Protocol(format!(
                            "reply had {} registers, point needs offset {off}",
                            regs.len()
                        ))),
                    };
                    values[pi] = Some((v, read_at));
                }
            }
            Err(e) => {
                if e.device_answered() {
                    answered = true;
                } else if silent.is_none() {
                    silent = Some(e.clone());
                }
                let reason = e.bad_reason();
                for &pi in &b.points {
                    values[pi] = Some((Err(reason.clone()), read_at));
                }
            }
        }
    }

    apply_scale_from(d, &mut values);

    let mut samples = Vec::with_capacity(n + d.cfg.computed.len());
    let mut by_name: HashMap<&str, (Option<f64>, Option<&BadReason>, SystemTime)> = HashMap::new();
    for (pi, v) in values.drain(..).enumerate() {
        let (res, read_at) = match v {
            Some((r, t)) => (r, t),
            None => (Err(BadReason::Protocol("point not planned".into())), slot),
        };
        let sample = match res {
            Ok(val) => Sample {
                point: d.names[pi].clone(),
                value: Some(val),
                unit: d.units[pi].clone(),
                quality: Quality::Good,
                read_at,
            },
            Err(r) => Sample {
                point: d.names[pi].clone(),
                value: None,
                unit: d.units[pi].clone(),
                quality: Quality::Bad(r),
                read_at,
            },
        };
        samples.push(sample);
    }
    d.values = values;
    // Only computed points look inputs up by name (no map for a device without them).
    for s in samples.iter().filter(|_| !d.cfg.computed.is_empty()) {
        let bad = match &s.quality {
            Quality::Good => None,
            Quality::Bad(r) => Some(r),
        };
        by_name.insert(
            &s.point,
            (s.value.as_ref().and_then(Value::as_f64), bad, s.read_at),
        );
    }
    let mut computed = Vec::with_capacity(d.cfg.computed.len());
    for (ci, c) in d.cfg.computed.iter().enumerate() {
        let mut terms = Vec::with_capacity(c.terms.len());
        let mut bad: Option<String> = None;
        let mut read_at = slot;
        for (term, factor) in &c.terms {
            match by_name.get(term.as_str()) {
                Some((Some(x), None, t)) => {
                    terms.push((*x, *factor));
                    read_at = read_at.max(*t);
                }
                Some((_, Some(r), _)) => {
                    bad.get_or_insert_with(|| format!("{term}: {r}"));
                }
                _ => {
                    bad.get_or_insert_with(|| format!("{term}: no value"));
                }
            }
        }
        computed.push(Sample {
            point: d.computed_names[ci].clone(),
            // Summed on the decimals the inputs stand for (an f32 fraction of 0.32f32 is
            // 0.32), rounded once: 987654 + 0.32 is 987654.32 (`crate::decimal`).
            value: if bad.is_none() {
                Some(Value::Float(crate::decimal::weighted_sum(&terms)))
            } else {
                None
            },
            unit: d.computed_units[ci].clone(),
            quality: match bad {
                None => Quality::Good,
                Some(b) => Quality::Bad(BadReason::Input(b)),
            },
            read_at,
        });
    }
    samples.extend(computed);

    if answered {
        if !d.online {
            tracing::info!(bus, device = %d.name, "device back online");
        }
        d.failed_cycles = 0;
        d.online = true;
    } else {
        d.failed_cycles = d.failed_cycles.saturating_add(1);
        if d.online && d.failed_cycles >= d.cfg.offline_after {
            d.online = false;
            let why = samples
                .iter()
                .find_map(|s| match &s.quality {
                    Quality::Bad(r) => Some(r.to_string()),
                    Quality::Good => None,
                })
                .unwrap_or_default();
            tracing::warn!(bus, device = %d.name, cycles = d.failed_cycles, "device offline: {why}");
        }
    }
    SampleBatch {
        device: d.name.clone(),
        bus: bus_name.clone(),
        slot,
        samples,
        online: d.online,
        failed_cycles: d.failed_cycles,
    }
}

/// The `scale_from` points of one cycle: raw value x 10^-decimals (read in the same cycle),
/// then their scale and offset (`scale_from::finish`). A bad decimals point or reading makes
/// the value bad.
fn apply_scale_from(
    d: &DevicePoller,
    values: &mut [Option<(Result<Value, BadReason>, SystemTime)>],
) {
    use crate::modbus::scale_from::{self, Decimals};
    for (pi, from) in d.scale_from.iter().enumerate() {
        let p = &d.cfg.points[pi];
        if p.scale_from.is_none() {
            continue;
        }
        let decimals = match from.and_then(|i| values[i].as_ref()) {
            Some((Ok(v), _)) => Decimals::Read(v.clone()),
            Some((Err(r), _)) => Decimals::Bad(r.to_string()),
            None => Decimals::Missing,
        };
        if let Some((res, _)) = values[pi].as_mut() {
            if let Ok(raw) = res {
                *res = scale_from::finish(p, raw.clone(), decimals).map_err(|e| e.bad_reason());
            }
        }
    }
}
