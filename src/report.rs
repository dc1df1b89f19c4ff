//! Poll fast, report slow (pure core). For each device whose `report` interval is longer than
//! its poll, or that has report-by-exception deadbands, the `Reporter` turns the raw batches
//! (which stay in the store as history and feed the alarms) into what goes upstream:
//!
//! - per report window (aligned to the wall clock like polls: a 5 m report covers :00-:05 ...),
//!   one batch with, per numeric point, its last value (`p`) and the aggregates `p.min`,
//!   `p.max`, `p.mean` and `p.n` (good samples) over the window; totalizers (`volume*`), status
//!   words and bits, non-numeric values and `report_last` points carry their last value only;
//!   a point with no good sample in the window carries the last bad reason;
//! - with a deadband, a point's value (`p`) is sent only when it moved more than the deadband
//!   from the value last sent (report by exception); aggregates are always sent with it.
//!
//! Points with `publish = false` are never sent: the reporter leaves them out of reports and
//! `strip_local` separates them from a batch reported as polled (they stay in the store as
//! history and feed the alarms like any reading).
//!
//! Read times stay device read times: `p` keeps the read time of the last sample, aggregates
//! carry the read time of the last good sample of the window. No I/O, no clock: windows are
//! derived from the batches' slots. A window is reported by its last poll (the one whose next
//! slot falls in the next window), or, if that poll was missed, by the first poll of a later
//! window. Partial windows after a restart cover only the polls seen (the raw readings are in
//! the history either way).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Config, DeviceConfig};
use crate::model::{Quality, Sample, SampleBatch, Value};

/// What one raw batch becomes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Routed {
    /// Goes to the store as history only (not sent).
    pub history: Option<SampleBatch>,
    /// Goes to the outbox.
    pub outbox: Option<SampleBatch>,
}

#[derive(Debug, Clone)]
struct Acc {
    unit: Option<Arc<str>>,
    last: Option<Sample>,
    last_good_at: Option<SystemTime>,
    min: f64,
    max: f64,
    sum: f64,
    n: u64,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            unit: None,
            last: None,
            last_good_at: None,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            n: 0,
        }
    }
}

#[derive(Debug)]
struct DeviceState {
    report: Duration,
    poll: Duration,
    phase: Duration,
    deadbands: BTreeMap<String, f64>,
    last_only: Vec<String>,
    /// Start of the window being accumulated (ms since the epoch).
    window: Option<u64>,
    acc: BTreeMap<Arc<str>, Acc>,
    /// Value last sent per point (for deadbands).
    sent: HashMap<Arc<str>, f64>,
    last_meta: Option<(Arc<str>, bool, u32)>,
}

/// The reporter of every device that does not report each poll as is.
#[derive(Debug, Default)]
pub struct Reporter {
    devices: HashMap<String, DeviceState>,
    /// Per device, the points with `publish = false`.
    local: HashMap<String, HashSet<String>>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn window_of(slot_ms: u64, report: Duration, phase: Duration) -> u64 {
    let r = report.as_millis().max(1) as u64;
    let ph = phase.as_millis() as u64 % r;
    if slot_ms < ph {
        return 0;
    }
    (slot_ms - ph) / r * r + ph
}

/// Points reported as their last value only, whatever the config says.
fn last_only_by_nature(name: &str, v: Option<&Value>) -> bool {
    name.starts_with("volume")
        || name.starts_with("status")
        || matches!(v, Some(Value::Bool(_)) | Some(Value::Text(_)))
}

impl Reporter {
    pub fn new(config: &Config) -> Reporter {
        let mut r = Reporter::default();
        for d in config.devices.iter().filter(|d| d.enabled) {
            r.add(d);
        }
        r
    }

    /// For a batch reported as polled: `(published, local)` when it carries points with
    /// `publish = false` (the local part goes to the store as history only); `None` when every
    /// sample is published. Either part may be empty of samples.
    pub fn strip_local(&self, batch: &SampleBatch) -> Option<(SampleBatch, SampleBatch)> {
        let local = self.local.get(&*batch.device)?;
        if !batch.samples.iter().any(|s| local.contains(&*s.point)) {
            return None;
        }
        let (kept, held): (Vec<Sample>, Vec<Sample>) = batch
            .samples
            .iter()
            .cloned()
            .partition(|s| !local.contains(&*s.point));
        let with = |samples| SampleBatch {
            samples,
            ..batch.clone()
        };
        Some((with(kept), with(held)))
    }

    fn add(&mut self, d: &DeviceConfig) {
        let local: HashSet<String> = d
            .points
            .iter()
            .filter(|p| !p.publish)
            .map(|p| p.name.clone())
            .collect();
        if !local.is_empty() {
            self.local.insert(d.name.clone(), local);
        }
        if d.reports_every_poll() {
            return;
        }
        self.devices.insert(
            d.name.clone(),
            DeviceState {
                report: d.report.max(d.poll),
                poll: d.poll,
                phase: d.phase,
                deadbands: d.deadbands.clone(),
                last_only: d.report_last.iter().cloned().collect(),
                window: None,
                acc: BTreeMap::new(),
                sent: HashMap::new(),
                last_meta: None,
            },
        );
    }

    /// True when no device needs the reporter (everything goes upstream as polled).
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Route one raw batch.
    pub fn route(&mut self, batch: SampleBatch) -> Routed {
        match self.split(batch) {
            Ok((raw, report)) => Routed {
                history: Some(raw),
                outbox: report,
            },
            Err(batch) => Routed {
                history: None,
                outbox: Some(batch),
            },
        }
    }

    /// `Err(batch)` (handed back untouched) for a device reported as polled; otherwise the raw
    /// batch, to keep as history, and the window's report if this batch closed one.
    pub fn split(
        &mut self,
        batch: SampleBatch,
    ) -> Result<(SampleBatch, Option<SampleBatch>), SampleBatch> {
        let Some(st) = self.devices.get_mut(&*batch.device) else {
            return Err(batch);
        };
        let slot = ms(batch.slot);
        let w = window_of(slot, st.report, st.phase);
        let mut out = None;
        // A batch of a later window closes the previous one (its last poll was missed).
        if let Some(cur) = st.window {
            if w != cur && !st.acc.is_empty() {
                out = flush(st, &batch.device, cur);
            }
        }
        st.window = Some(w);
        st.last_meta = Some((batch.bus.clone(), batch.online, batch.failed_cycles));
        let local = self.local.get(&*batch.device);
        for s in &batch.samples {
            if local.is_some_and(|l| l.contains(&*s.point)) {
                continue;
            }
            let a = st.acc.entry(s.point.clone()).or_insert_with(Acc::new);
            a.unit = s.unit.clone();
            if s.quality.is_good() {
                if let Some(x) = s.value.as_ref().and_then(Value::as_f64) {
                    a.min = a.min.min(x);
                    a.max = a.max.max(x);
                    a.sum += x;
                    a.n += 1;
                }
                a.last_good_at = Some(s.read_at);
                a.last = Some(s.clone());
            } else if a.n == 0 && a.last_good_at.is_none() {
                a.last = Some(s.clone());
            }
        }
        // This poll is the window's last if the next one falls in the next window.
        let window_end = w + st.report.as_millis() as u64;
        if slot + st.poll.as_millis() as u64 >= window_end {
            if let Some(o) = flush(st, &batch.device, w) {
                out = Some(o);
            }
        }
        Ok((batch, out))
    }
}

fn flush(st: &mut DeviceState, device: &Arc<str>, window: u64) -> Option<SampleBatch> {
    let acc = std::mem::take(&mut st.acc);
    let aggregate = st.report > st.poll;
    let mut samples = Vec::new();
    for (point, a) in acc {
        let Some(last) = a.last else { continue };
        let last_only = !aggregate
            || st.last_only.iter().any(|p| **p == *point)
            || last_only_by_nature(&point, last.value.as_ref());
        // Report by exception on the point's value.
        let send_value = match (
            st.deadbands.get(&*point),
            last.value.as_ref().and_then(Value::as_f64),
        ) {
            (Some(db), Some(x)) if last.quality.is_good() => match st.sent.get(&point) {
                Some(prev) if (x - prev).abs() <= *db => false,
                _ => {
                    st.sent.insert(point.clone(), x);
                    true
                }
            },
            _ => true,
        };
        if send_value {
            samples.push(last.clone());
        }
        if last_only || a.n == 0 {
            continue;
        }
        let at = a.last_good_at.unwrap_or(last.read_at);
        let mk = |suffix: &str, v: Value| Sample {
            point: Arc::from(format!("{point}.{suffix}")),
            value: Some(v),
            unit: if suffix == "n" { None } else { a.unit.clone() },
            quality: Quality::Good,
            read_at: at,
        };
        samples.push(mk("min", Value::Float(a.min)));
        samples.push(mk("max", Value::Float(a.max)));
        samples.push(mk("mean", Value::Float(a.sum / a.n as f64)));
        samples.push(mk("n", Value::UInt(a.n)));
    }
    let (bus, online, failed_cycles) = st.last_meta.clone()?;
    if samples.is_empty() {
        return None;
    }
    Some(SampleBatch {
        device: device.clone(),
        bus,
        slot: UNIX_EPOCH + Duration::from_millis(window),
        samples,
        online,
        failed_cycles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BadReason;

    fn dev(poll: u64, report: u64, deadbands: &[(&str, f64)]) -> DeviceConfig {
        DeviceConfig {
            name: "pt".into(),
            bus: "lan".into(),
            unit: 1,
            poll: Duration::from_secs(poll),
            phase: Duration::ZERO,
            max_registers: 125,
            max_gap: 10,
            offline_after: 3,
            enabled: true,
            profile: None,
            points: vec![],
            computed: vec![],
            report: Duration::from_secs(report),
            deadbands: deadbands.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            report_last: Default::default(),
        }
    }

    fn reporter(d: DeviceConfig) -> Reporter {
        let mut r = Reporter::default();
        r.add(&d);
        r
    }

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    /// A batch at second `s` with (point, value or None for bad).
    fn batch(s: u64, pts: &[(&str, Option<f64>)]) -> SampleBatch {
        SampleBatch {
            device: "pt".into(),
            bus: "lan".into(),
            slot: t(s),
            samples: pts
                .iter()
                .map(|(p, v)| Sample {
                    point: Arc::from(*p),
                    value: v.map(Value::Float),
                    unit: Some("kPa".into()),
                    quality: match v {
                        Some(_) => Quality::Good,
                        None => Quality::Bad(BadReason::Timeout),
                    },
                    read_at: t(s) + Duration::from_millis(20),
                })
                .collect(),
            online: true,
            failed_cycles: 0,
        }
    }

    /// A device whose point `h` is `publish = false` and `p` is published.
    fn with_local(mut d: DeviceConfig) -> DeviceConfig {
        let spec = |name: &str, publish| crate::model::PointSpec {
            name: name.into(),
            table: crate::model::Table::HoldingRegister,
            address: 0,
            data_type: crate::model::DataType::U16,
            order: Default::default(),
            scale: 1.0,
            offset: 0.0,
            unit: None,
            writable: false,
            scale_from: None,
            publish,
        };
        d.points = vec![spec("p", true), spec("h", false)];
        d
    }

    #[test]
    fn local_points_are_split_off_a_batch_reported_as_polled() {
        let r = reporter(with_local(dev(10, 10, &[])));
        let b = batch(0, &[("p", Some(1.0)), ("h", Some(2.0))]);
        let (published, local) = r.strip_local(&b).unwrap();
        assert_eq!(values(&published), [("p".to_string(), Some(1.0))]);
        assert_eq!(values(&local), [("h".to_string(), Some(2.0))]);
        assert_eq!((published.slot, local.slot), (b.slot, b.slot));
        // Nothing to split: no local point in the batch, or no local point on the device.
        assert!(r.strip_local(&batch(0, &[("p", Some(1.0))])).is_none());
        let plain = reporter(dev(10, 10, &[]));
        assert!(plain.strip_local(&b).is_none());
        // Reported as polled: the reporter hands it back untouched.
        let mut r = r;
        assert!(r.split(b).is_err());
    }

    #[test]
    fn local_points_never_reach_a_report() {
        let mut r = reporter(with_local(dev(10, 30, &[])));
        let mut reports = Vec::new();
        for s in [0, 10, 20] {
            let (raw, report) = r
                .split(batch(s, &[("p", Some(s as f64)), ("h", Some(5.0))]))
                .unwrap();
            // The raw batch (history, alarms) keeps every point.
            assert_eq!(raw.samples.len(), 2);
            reports.extend(report);
        }
        assert_eq!(reports.len(), 1);
        let names: Vec<String> = values(&reports[0]).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["p", "p.min", "p.max", "p.mean", "p.n"]);
    }

    fn values(b: &SampleBatch) -> Vec<(String, Option<f64>)> {
        b.samples
            .iter()
            .map(|s| {
                (
                    s.point.to_string(),
                    s.value.as_ref().and_then(Value::as_f64),
                )
            })
            .collect()
    }

    #[test]
    fn devices_reporting_every_poll_pass_through() {
        let mut r = reporter(dev(10, 10, &[]));
        assert!(r.is_empty());
        let b = batch(0, &[("pressure", Some(1.0))]);
        assert_eq!(
            r.route(b.clone()),
            Routed {
                history: None,
                outbox: Some(b)
            }
        );
    }

    #[test]
    fn aggregates_over_the_report_window() {
        // Poll 10 s, report 60 s (1_800_000_000 is a multiple of 60: windows start at t(0)).
        let mut r = reporter(dev(10, 60, &[]));
        let mut sent = Vec::new();
        for (i, p) in [400.0, 402.0, 398.0, 401.0, 399.0, 403.0, 410.0]
            .iter()
            .enumerate()
        {
            let out = r.route(batch(
                i as u64 * 10,
                &[
                    ("pressure", Some(*p)),
                    ("volume_standard", Some(1000.0 + i as f64)),
                ],
            ));
            assert!(out.history.is_some(), "raw batches are kept as history");
            if let Some(o) = out.outbox {
                sent.push((i, o));
            }
        }
        // Only the 6th poll (t=50 s, the window's last) reports.
        assert_eq!(sent.len(), 1);
        let (i, o) = &sent[0];
        assert_eq!(*i, 5);
        assert_eq!(o.slot, t(0));
        let v = values(o);
        let get = |k: &str| v.iter().find(|(p, _)| p == k).and_then(|(_, x)| *x);
        assert_eq!(get("pressure"), Some(403.0), "last value");
        assert_eq!(get("pressure.min"), Some(398.0));
        assert_eq!(get("pressure.max"), Some(403.0));
        assert_eq!(
            get("pressure.mean"),
            Some((400.0 + 402.0 + 398.0 + 401.0 + 399.0 + 403.0) / 6.0)
        );
        assert_eq!(get("pressure.n"), Some(6.0));
        // Totalizers report their last value only.
        assert_eq!(get("volume_standard"), Some(1005.0));
        assert_eq!(get("volume_standard.min"), None);
        // Read times are device read times: the last sample's.
        assert_eq!(o.samples[0].read_at, t(50) + Duration::from_millis(20));
    }

    #[test]
    fn a_missed_last_poll_is_reported_by_the_next_window() {
        let mut r = reporter(dev(10, 60, &[]));
        assert!(r
            .route(batch(0, &[("pressure", Some(1.0))]))
            .outbox
            .is_none());
        assert!(r
            .route(batch(10, &[("pressure", Some(3.0))]))
            .outbox
            .is_none());
        // Polls at 20..50 s missed; the next batch (60 s) belongs to the next window.
        let out = r
            .route(batch(60, &[("pressure", Some(9.0))]))
            .outbox
            .expect("previous window reported");
        assert_eq!(out.slot, t(0));
        let v = values(&out);
        assert!(v.contains(&("pressure".into(), Some(3.0))));
        assert!(v.contains(&("pressure.n".into(), Some(2.0))));
    }

    #[test]
    fn bad_quality_is_reported_when_nothing_good_was_read() {
        let mut r = reporter(dev(30, 60, &[]));
        r.route(batch(0, &[("pressure", None), ("temperature", Some(5.0))]));
        let o = r
            .route(batch(30, &[("pressure", None), ("temperature", None)]))
            .outbox
            .unwrap();
        let p = o.samples.iter().find(|s| &*s.point == "pressure").unwrap();
        assert_eq!(p.quality, Quality::Bad(BadReason::Timeout));
        assert!(
            o.samples.iter().all(|s| &*s.point != "pressure.n"),
            "no aggregates without good samples"
        );
        // The temperature's last good value stands, with its aggregates over the good samples.
        let tv = values(&o);
        assert!(tv.contains(&("temperature".into(), Some(5.0))));
        assert!(tv.contains(&("temperature.n".into(), Some(1.0))));
    }

    #[test]
    fn report_by_exception_sends_only_moves_beyond_the_deadband() {
        // Report every poll, deadband 0.5 on pressure.
        let mut r = reporter(dev(10, 10, &[("pressure", 0.5)]));
        let cases: &[(f64, bool)] = &[
            (400.0, true),  // first value always goes
            (400.3, false), // within the deadband of 400.0
            (400.5, false), // exactly the deadband: not beyond
            (400.6, true),  // beyond: sent, new reference 400.6
            (400.2, false),
            (399.9, true),
        ];
        for (i, (p, expect)) in cases.iter().enumerate() {
            let out = r.route(batch(
                i as u64 * 10,
                &[("pressure", Some(*p)), ("temperature", Some(5.0))],
            ));
            let o = out
                .outbox
                .expect("temperature has no deadband: a batch every poll");
            let sent = o.samples.iter().any(|s| &*s.point == "pressure");
            assert_eq!(sent, *expect, "case {i}: pressure {p}");
        }
    }

    #[test]
    fn windows_align_to_the_wall_clock_with_phase() {
        let cases: &[(u64, u64, u64, u64)] = &[
            (0, 300, 0, 0),
            (299_999, 300, 0, 0),
            (300_000, 300, 0, 300_000),
            (310_000, 300, 10, 310_000),
            (309_999, 300, 10, 10_000),
        ];
        for &(slot, report_s, phase_s, want) in cases {
            assert_eq!(
                window_of(
                    slot,
                    Duration::from_secs(report_s),
                    Duration::from_secs(phase_s)
                ),
                want,
                "slot {slot}"
            );
        }
    }

    /// The standard workload (20 devices x 10 points, polled every second) for three minutes:
    /// payload bytes upstream when every poll is reported, against a 60 s report with
    /// aggregates, in both encodings. The numbers are quoted in docs/mqtt.md.
    #[test]
    fn wire_savings_for_the_standard_workload() {
        use crate::config::Encoding;
        use crate::outbox::{Entry, EntryBody, EntryKind};
        let names = [
            "pressure",
            "temperature",
            "flow_measured",
            "flow_standard",
            "volume_measured",
            "volume_standard",
            "diff_pressure",
            "battery",
            "conversion_factor",
            "status",
        ];
        const SECS: u64 = 180;
        let bytes_for = |report: u64, encoding: Encoding| -> (u64, u64) {
            let mut r = Reporter::default();
            for d in 0..20 {
                let mut c = dev(1, report, &[]);
                c.name = format!("dev{d:02}");
                r.add(&c);
            }
            let (mut bytes, mut readings) = (0u64, 0u64);
            let mut id = 0;
            for sec in 0..SECS {
                let mut entries = Vec::new();
                for d in 0..20 {
                    let mut b = batch(sec, &[]);
                    b.device = Arc::from(format!("dev{d:02}"));
                    b.samples = names
                        .iter()
                        .enumerate()
                        .map(|(i, n)| Sample {
                            point: Arc::from(*n),
                            value: Some(Value::Float(400.0 + i as f64 + (sec as f64 * 0.37).sin())),
                            unit: Some("kPa".into()),
                            quality: Quality::Good,
                            read_at: t(sec) + Duration::from_millis(15),
                        })
                        .collect();
                    let routed = if report > 1 {
                        r.route(b).outbox
                    } else {
                        Some(b)
                    };
                    if let Some(o) = routed {
                        id += 1;
                        entries.push(Entry {
                            id,
                            kind: EntryKind::Data,
                            historical: false,
                            created_ms: 0,
                            body: EntryBody::Batch(o),
                        });
                    }
                }
                for p in crate::uplink::encode_messages(&entries, "gw-standard-01", 1024, encoding)
                {
                    bytes += p
                        .build("gw-standard-01", 1_800_000_000_000_000)
                        .unwrap()
                        .len() as u64;
                    readings += p.readings;
                }
            }
            (bytes, readings)
        };
        let mut lines = Vec::new();
        for enc in [Encoding::Json, Encoding::Cbor] {
            let (every, _) = bytes_for(1, enc);
            let (slow, sent) = bytes_for(60, enc);
            lines.push(format!(
                "{enc:?}: every poll {every} B in {SECS} s ({:.1} B/reading polled); report 60 s {slow} B ({sent} values and aggregates sent): {:.1}x less",
                every as f64 / (200 * SECS) as f64,
                every as f64 / slow as f64
            ));
            assert!(every > 10 * slow, "{enc:?}: {every} vs {slow}");
        }
        eprintln!("{}", lines.join("\n"));
    }
}
