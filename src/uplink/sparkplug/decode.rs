//! The edge node's command decoder: NCMD (`Node Control/Rebirth` = true) and DCMD (a write to a
//! writable point, the metric named or aliased as in the DBIRTH) from untrusted bytes. Bounded
//! (payload size, metric count, prost's nesting limit), every malformation a named error, no
//! panic on any input. The writes it returns still go through the command path's allow-list,
//! range checks and read-back; this only says what was asked. Pure.

use prost::Message;

use super::metrics::{
    from_proto, DeviceModel, MetricDef, MetricKind, NodeModel, SpType, ValueError, REBIRTH,
};
use super::proto::{metric, Metric, Payload};
use crate::model::Value;

/// Largest NCMD/DCMD payload accepted, in bytes.
pub const MAX_COMMAND_BYTES: usize = 4096;
/// Most metrics in one NCMD/DCMD.
pub const MAX_COMMAND_METRICS: usize = 16;
/// Longest metric name echoed in an error.
const MAX_ECHO: usize = 64;

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("payload of {0} bytes: at most {MAX_COMMAND_BYTES}")]
    TooLarge(usize),
    #[error("not a Sparkplug B payload: {0}")]
    Protobuf(String),
    #[error("{0} metrics: at most {MAX_COMMAND_METRICS}")]
    TooManyMetrics(usize),
    #[error("no metrics")]
    NoMetrics,
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    #[error("a metric with neither name nor alias")]
    Unnamed,
    #[error("unknown metric {0}")]
    UnknownMetric(String),
    #[error("metric name {name:?} and alias {alias} name different metrics")]
    NameAliasMismatch { name: String, alias: u64 },
    #[error("metric {0:?} cannot be written")]
    NotWritable(String),
    #[error("metric {0:?} carries no value")]
    NoValue(String),
    #[error("metric {name:?}: datatype {got} given, the metric is {}", want.name())]
    DataType {
        name: String,
        got: u32,
        want: SpType,
    },
    #[error("metric {name:?}: {why}")]
    Value { name: String, why: ValueError },
    #[error("Node Control/Rebirth = false asks for nothing")]
    RebirthFalse,
    #[error("metric {0:?} twice in one command")]
    Repeated(String),
}

/// What an NCMD asks of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCommand {
    /// Publish NBIRTH and every DBIRTH again.
    Rebirth,
}

/// A write a DCMD asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRequest {
    pub device: String,
    pub point: String,
    pub value: Value,
}

fn echo(s: &str) -> String {
    let mut e: String = s.chars().take(MAX_ECHO).collect();
    if e.len() < s.len() {
        e.push('…');
    }
    format!("{:?}", crate::config::escape(&e))
}

/// Size bound, protobuf decode and metric count.
fn payload(bytes: &[u8]) -> Result<Payload, CommandError> {
    if bytes.len() > MAX_COMMAND_BYTES {
        return Err(CommandError::TooLarge(bytes.len()));
    }
    let p = Payload::decode(bytes).map_err(|e| CommandError::Protobuf(e.to_string()))?;
    if p.metrics.len() > MAX_COMMAND_METRICS {
        return Err(CommandError::TooManyMetrics(p.metrics.len()));
    }
    if p.metrics.is_empty() {
        return Err(CommandError::NoMetrics);
    }
    Ok(p)
}

/// The definition a command metric refers to, by name and/or alias (both must agree).
fn resolve<'m>(
    m: &Metric,
    by_name: impl Fn(&str) -> Option<&'m MetricDef>,
    by_alias: impl Fn(u64) -> Option<&'m MetricDef>,
) -> Result<&'m MetricDef, CommandError> {
    match (&m.name, m.alias) {
        (None, None) => Err(CommandError::Unnamed),
        (Some(n), None) => by_name(n).ok_or_else(|| CommandError::UnknownMetric(echo(n))),
        (None, Some(a)) => {
            by_alias(a).ok_or_else(|| CommandError::UnknownMetric(format!("alias {a}")))
        }
        (Some(n), Some(a)) => {
            let d = by_name(n).ok_or_else(|| CommandError::UnknownMetric(echo(n)))?;
            if d.alias != a {
                return Err(CommandError::NameAliasMismatch {
                    name: crate::config::escape(n).chars().take(MAX_ECHO).collect(),
                    alias: a,
                });
            }
            Ok(d)
        }
    }
}

/// The value of a command metric, checked against the metric's datatype.
fn value_of(def: &MetricDef, m: &Metric) -> Result<Value, CommandError> {
    if let Some(got) = m.datatype {
        if got != def.datatype.code() {
            return Err(CommandError::DataType {
                name: def.name.clone(),
                got,
                want: def.datatype,
            });
        }
    }
    let v: &metric::Value = match (&m.value, m.is_null) {
        (Some(v), None | Some(false)) => v,
        _ => return Err(CommandError::NoValue(def.name.clone())),
    };
    from_proto(def.datatype, v).map_err(|why| CommandError::Value {
        name: def.name.clone(),
        why,
    })
}

/// An NCMD to this node: only `Node Control/Rebirth` = true is understood.
pub fn decode_ncmd(model: &NodeModel, bytes: &[u8]) -> Result<Vec<NodeCommand>, CommandError> {
    let p = payload(bytes)?;
    let mut out = Vec::new();
    for m in &p.metrics {
        let def = resolve(
            m,
            |n| model.node_metric(n),
            |a| model.node.iter().find(|d| d.alias == a),
        )?;
        if def.name != REBIRTH {
            return Err(CommandError::NotWritable(def.name.clone()));
        }
        match value_of(def, m)? {
            Value::Bool(true) => {}
            _ => return Err(CommandError::RebirthFalse),
        }
        if !out.is_empty() {
            return Err(CommandError::Repeated(def.name.clone()));
        }
        out.push(NodeCommand::Rebirth);
    }
    Ok(out)
}

/// A DCMD to `device`: one write per metric, each to a writable point, value typed as the
/// point's metric.
pub fn decode_dcmd(
    model: &NodeModel,
    device: &str,
    bytes: &[u8],
) -> Result<Vec<WriteRequest>, CommandError> {
    let dev: &DeviceModel = model
        .device(device)
        .ok_or_else(|| CommandError::UnknownDevice(echo(device)))?;
    let p = payload(bytes)?;
    let mut out: Vec<WriteRequest> = Vec::new();
    for m in &p.metrics {
        let def = resolve(m, |n| dev.by_name(n), |a| dev.by_alias(a))?;
        if def.kind != (MetricKind::Point { writable: true }) {
            return Err(CommandError::NotWritable(def.name.clone()));
        }
        let value = value_of(def, m)?;
        if out.iter().any(|w| w.point == def.name) {
            return Err(CommandError::Repeated(def.name.clone()));
        }
        out.push(WriteRequest {
            device: dev.device.clone(),
            point: def.name.clone(),
            value,
        });
    }
    Ok(out)
}
