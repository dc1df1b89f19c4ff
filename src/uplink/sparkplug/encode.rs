//! Sparkplug B payload encoders of an edge node: NBIRTH (bdSeq, `Node Control/Rebirth`, the
//! node's metrics), NDEATH (bdSeq only: the MQTT will), NDATA, DBIRTH (every metric of a device
//! with name, alias, datatype, properties and current value), DDATA by exception (alias only,
//! the changed values with their read time, `is_historical` for backlog) and DDEATH; the seq
//! counter (0..=255, wrapping, reset by NBIRTH), the bdSeq step, and the report-by-exception
//! filter. Pure: bytes in memory, time comes in as arguments.

use std::collections::HashMap;

use prost::Message;

use super::metrics::{
    to_proto, DeviceModel, MetricDef, MetricKind, NodeModel, SpType, ValueError, BD_SEQ,
    BUFFER_DEPTH, LINK_RECONNECTS, LINK_TRANSPORT, REBIRTH,
};
use super::modem::ModemFigures;
use super::proto::{metric, property_value, Metric, Payload, PropertySet, PropertyValue};
use crate::model::Value;

/// Sparkplug quality codes (the `Quality` property, Int32): bad and good.
pub const QUALITY_BAD: u32 = 0;
pub const QUALITY_GOOD: u32 = 192;

/// The message sequence number: 0..=255, +1 per message of the node and its devices, wrapping
/// to 0 after 255; NBIRTH starts it again at 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seq(u8);

impl Seq {
    pub fn new() -> Seq {
        Seq(0)
    }

    /// The number for the next message.
    pub fn take(&mut self) -> u64 {
        let s = self.0;
        self.0 = self.0.wrapping_add(1);
        u64::from(s)
    }

    pub fn reset(&mut self) {
        self.0 = 0;
    }
}

/// The bdSeq of the next MQTT connect: 0 the first time, then the persisted previous one + 1,
/// wrapping after 255.
pub fn next_bd_seq(previous: Option<u8>) -> u8 {
    previous.map_or(0, |p| p.wrapping_add(1))
}

/// The node's own figures, as the NBIRTH and NDATA carry them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeState {
    /// How the broker is reached: "tcp", "modem-ppp", "modem-socket" ...
    pub transport: String,
    /// MQTT reconnects since start.
    pub reconnects: u64,
    /// Outbox entries waiting to be sent.
    pub buffer_depth: u64,
    /// The modem's figures (`Modem/...`), when the node has one.
    pub modem: Option<ModemFigures>,
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("device {device:?} has no metric {name:?}")]
    UnknownMetric { device: String, name: String },
    #[error("metric {name:?}: {why}")]
    Value { name: String, why: ValueError },
    #[error(
        "metric {name:?} is an alarm and takes an alarm update (or a point and takes a value)"
    )]
    Kind { name: String },
}

/// What changed for one metric of a device.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A point reading: `None` (with `good = false`) when the read failed.
    Point { value: Option<Value>, good: bool },
    /// An alarm's state: the limit crossed and the message while active.
    Alarm {
        active: bool,
        limit: Option<f64>,
        message: Option<String>,
    },
}

/// One metric's new state, stamped with the time it was read (UTC ms).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricUpdate {
    pub name: String,
    pub at_ms: u64,
    pub update: Update,
}

fn prop(t: SpType, v: Option<property_value::Value>) -> PropertyValue {
    PropertyValue {
        r#type: Some(t.code()),
        is_null: if v.is_none() { Some(true) } else { None },
        value: v,
    }
}

fn props(entries: Vec<(&str, PropertyValue)>) -> Option<PropertySet> {
    if entries.is_empty() {
        return None;
    }
    let (keys, values) = entries.into_iter().map(|(k, v)| (k.to_string(), v)).unzip();
    Some(PropertySet { keys, values })
}

fn quality_prop(good: bool) -> (&'static str, PropertyValue) {
    let q = if good { QUALITY_GOOD } else { QUALITY_BAD };
    (
        "Quality",
        prop(SpType::Int32, Some(property_value::Value::IntValue(q))),
    )
}

fn alarm_props(
    def: &MetricDef,
    active: bool,
    limit: Option<f64>,
    message: Option<&str>,
) -> Vec<(&'static str, PropertyValue)> {
    let severity = match &def.kind {
        MetricKind::Alarm { severity, .. } => *severity,
        _ => "",
    };
    vec![
        (
            "active",
            prop(
                SpType::Boolean,
                Some(property_value::Value::BooleanValue(active)),
            ),
        ),
        (
            "severity",
            prop(
                SpType::String,
                Some(property_value::Value::StringValue(severity.to_string())),
            ),
        ),
        (
            "limit",
            prop(
                SpType::Double,
                limit.map(property_value::Value::DoubleValue),
            ),
        ),
        (
            "message",
            prop(
                SpType::String,
                message.map(|m| property_value::Value::StringValue(m.to_string())),
            ),
        ),
    ]
}

/// The metric of one update; `birth` adds name, datatype and the static properties.
fn metric_of(
    def: &MetricDef,
    u: Option<&MetricUpdate>,
    birth: bool,
    quality_changed: bool,
) -> Result<Metric, EncodeError> {
    let mut m = Metric {
        alias: Some(def.alias),
        timestamp: u.map(|u| u.at_ms),
        ..Metric::default()
    };
    if birth {
        m.name = Some(def.name.clone());
        m.datatype = Some(def.datatype.code());
    }
    let mut ps = Vec::new();
    if birth {
        if let Some(unit) = &def.unit {
            ps.push((
                "engUnit",
                prop(
                    SpType::String,
                    Some(property_value::Value::StringValue(unit.clone())),
                ),
            ));
        }
    }
    let kind_err = || EncodeError::Kind {
        name: def.name.clone(),
    };
    match (&def.kind, u.map(|u| &u.update)) {
        (MetricKind::Alarm { .. }, None) => {
            m.value = Some(metric::Value::BooleanValue(false));
            ps.extend(alarm_props(def, false, None, None));
        }
        (
            MetricKind::Alarm { .. },
            Some(Update::Alarm {
                active,
                limit,
                message,
            }),
        ) => {
            m.value = Some(metric::Value::BooleanValue(*active));
            ps.extend(alarm_props(def, *active, *limit, message.as_deref()));
        }
        (MetricKind::Alarm { .. }, Some(Update::Point { .. })) => return Err(kind_err()),
        (_, Some(Update::Alarm { .. })) => return Err(kind_err()),
        (_, None) => {
            // Not read yet: null, bad quality.
            m.is_null = Some(true);
            ps.push(quality_prop(false));
        }
        (_, Some(Update::Point { value, good })) => {
            match value {
                Some(v) if *good => {
                    m.value = Some(to_proto(def.datatype, v).map_err(|why| EncodeError::Value {
                        name: def.name.clone(),
                        why,
                    })?)
                }
                _ => m.is_null = Some(true),
            }
            if birth || quality_changed || !*good {
                ps.push(quality_prop(*good && value.is_some()));
            }
        }
    }
    m.properties = props(ps);
    Ok(m)
}

fn payload(now_ms: u64, seq: Option<u64>, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(now_ms),
        metrics,
        seq,
        uuid: None,
        body: None,
    }
    .encode_to_vec()
}

fn bd_seq_metric(bd_seq: u8, now_ms: u64) -> Metric {
    Metric {
        name: Some(BD_SEQ.to_string()),
        timestamp: Some(now_ms),
        datatype: Some(SpType::Int64.code()),
        value: Some(metric::Value::LongValue(u64::from(bd_seq))),
        ..Metric::default()
    }
}

/// NDEATH: the will registered at connect; bdSeq only, no seq.
pub fn ndeath(bd_seq: u8, now_ms: u64) -> Vec<u8> {
    payload(now_ms, None, vec![bd_seq_metric(bd_seq, now_ms)])
}

/// A node metric's value; `None`: null (a modem figure not known, or no modem figures).
fn node_value(name: &str, state: &NodeState) -> Option<Value> {
    Some(match name {
        REBIRTH => Value::Bool(false),
        LINK_TRANSPORT => Value::Text(state.transport.clone()),
        LINK_RECONNECTS => Value::UInt(state.reconnects),
        BUFFER_DEPTH => Value::UInt(state.buffer_depth),
        _ => return state.modem.as_ref()?.value(name),
    })
}

fn node_metric(
    def: &MetricDef,
    v: Option<&Value>,
    now_ms: u64,
    birth: bool,
) -> Result<Metric, EncodeError> {
    let value = v
        .map(|v| to_proto(def.datatype, v))
        .transpose()
        .map_err(|why| EncodeError::Value {
            name: def.name.clone(),
            why,
        })?;
    let unit = def.unit.as_ref().filter(|_| birth).map(|u| {
        (
            "engUnit",
            prop(
                SpType::String,
                Some(property_value::Value::StringValue(u.clone())),
            ),
        )
    });
    Ok(Metric {
        name: birth.then(|| def.name.clone()),
        alias: Some(def.alias),
        timestamp: Some(now_ms),
        datatype: birth.then(|| def.datatype.code()),
        is_null: value.is_none().then_some(true),
        value,
        properties: props(unit.into_iter().collect()),
        ..Metric::default()
    })
}

/// NBIRTH: seq starts again at 0; bdSeq of this connect, then every node metric with name,
/// alias, datatype and value.
pub fn nbirth(
    model: &NodeModel,
    bd_seq: u8,
    state: &NodeState,
    now_ms: u64,
    seq: &mut Seq,
) -> Result<Vec<u8>, EncodeError> {
    seq.reset();
    let mut metrics = vec![bd_seq_metric(bd_seq, now_ms)];
    for def in &model.node {
        metrics.push(node_metric(
            def,
            node_value(&def.name, state).as_ref(),
            now_ms,
            true,
        )?);
    }
    Ok(payload(now_ms, Some(seq.take()), metrics))
}

/// NDATA: the node metrics whose value differs between `before` and `after` (alias only).
/// `None` when nothing changed.
pub fn ndata(
    model: &NodeModel,
    before: &NodeState,
    after: &NodeState,
    now_ms: u64,
    seq: &mut Seq,
) -> Result<Option<Vec<u8>>, EncodeError> {
    let mut metrics = Vec::new();
    for def in &model.node {
        let v = node_value(&def.name, after);
        if v != node_value(&def.name, before) {
            metrics.push(node_metric(def, v.as_ref(), now_ms, false)?);
        }
    }
    if metrics.is_empty() {
        return Ok(None);
    }
    Ok(Some(payload(now_ms, Some(seq.take()), metrics)))
}

/// DBIRTH: every metric of the device, with its latest state from `current` (by name; a
/// point not read yet is null with bad quality, an alarm without state inactive).
pub fn dbirth(
    dev: &DeviceModel,
    current: &[MetricUpdate],
    now_ms: u64,
    seq: &mut Seq,
) -> Result<Vec<u8>, EncodeError> {
    let by_name: HashMap<&str, &MetricUpdate> =
        current.iter().map(|u| (u.name.as_str(), u)).collect();
    for u in current {
        if dev.by_name(&u.name).is_none() {
            return Err(EncodeError::UnknownMetric {
                device: dev.device.clone(),
                name: u.name.clone(),
            });
        }
    }
    let metrics = dev
        .metrics
        .iter()
        .map(|def| metric_of(def, by_name.get(def.name.as_str()).copied(), true, true))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(payload(now_ms, Some(seq.take()), metrics))
}

/// DDATA: the given updates (already filtered by exception, see `Exceptions`) by alias, each
/// with its read time; `historical` marks backlog sent after an outage. `quality_changed`
/// tells, per update, whether the Quality property must be repeated.
pub fn ddata(
    dev: &DeviceModel,
    updates: &[(MetricUpdate, bool)],
    historical: bool,
    now_ms: u64,
    seq: &mut Seq,
) -> Result<Vec<u8>, EncodeError> {
    let mut metrics = Vec::with_capacity(updates.len());
    for (u, quality_changed) in updates {
        let def = dev
            .by_name(&u.name)
            .ok_or_else(|| EncodeError::UnknownMetric {
                device: dev.device.clone(),
                name: u.name.clone(),
            })?;
        let mut m = metric_of(def, Some(u), false, *quality_changed)?;
        if historical {
            m.is_historical = Some(true);
        }
        metrics.push(m);
    }
    Ok(payload(now_ms, Some(seq.take()), metrics))
}

/// DDEATH: the device went offline (or is removed); timestamp and seq only.
pub fn ddeath(now_ms: u64, seq: &mut Seq) -> Vec<u8> {
    payload(now_ms, Some(seq.take()), Vec::new())
}

/// Report by exception: remembers what was last sent per device and metric, and keeps only
/// the updates that differ (value, quality or alarm state). A birth resets the device.
#[derive(Debug, Default)]
pub struct Exceptions {
    last: HashMap<String, HashMap<String, Update>>,
}

impl Exceptions {
    pub fn new() -> Exceptions {
        Exceptions::default()
    }

    /// After a DBIRTH: `current` is what the birth carried.
    pub fn born(&mut self, device: &str, current: &[MetricUpdate]) {
        let m = current
            .iter()
            .map(|u| (u.name.clone(), u.update.clone()))
            .collect();
        self.last.insert(device.to_string(), m);
    }

    /// After a DDEATH (or before a rebirth): forget the device.
    pub fn died(&mut self, device: &str) {
        self.last.remove(device);
    }

    /// The updates that changed since last sent, each with whether its quality changed; the
    /// kept ones become the new "last sent".
    pub fn changed(
        &mut self,
        device: &str,
        updates: Vec<MetricUpdate>,
    ) -> Vec<(MetricUpdate, bool)> {
        let last = self.last.entry(device.to_string()).or_default();
        let mut out = Vec::new();
        for u in updates {
            let prev = last.get(&u.name);
            if prev == Some(&u.update) {
                continue;
            }
            let quality_changed = match (prev, &u.update) {
                (Some(Update::Point { good: a, .. }), Update::Point { good: b, .. }) => a != b,
                _ => true,
            };
            last.insert(u.name.clone(), u.update.clone());
            out.push((u, quality_changed));
        }
        out
    }
}
