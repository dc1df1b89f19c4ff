//! The Sparkplug metric model of one edge node, built from the running config: the node's own
//! metrics (`bdSeq`, `Node Control/Rebirth`, link and buffer figures), and per device one
//! metric per published point (name = point name, Sparkplug datatype from the point's type
//! and scaling, engineering unit) and one `Alarms/<rule id>` metric per alarm rule that watches
//! the device. Aliases are deterministic and stable: a hash of device and metric name, so
//! adding or removing a point does not renumber the others. Also the two-way conversion
//! between `model::Value` and a metric's protobuf value for a given datatype. Pure.

use std::collections::{BTreeMap, HashSet};

use super::proto::metric;
use super::topic::{validate_id, IdError};
use crate::config::Config;
use crate::model::{DataType, PointSpec, Value};

/// Sparkplug B datatypes (the `datatype` codes of sparkplug_b.proto) this edge node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpType {
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float,
    Double,
    Boolean,
    String,
}

impl SpType {
    pub const ALL: [SpType; 12] = [
        SpType::Int8,
        SpType::Int16,
        SpType::Int32,
        SpType::Int64,
        SpType::UInt8,
        SpType::UInt16,
        SpType::UInt32,
        SpType::UInt64,
        SpType::Float,
        SpType::Double,
        SpType::Boolean,
        SpType::String,
    ];

    /// The `datatype` code on the wire.
    pub fn code(self) -> u32 {
        match self {
            SpType::Int8 => 1,
            SpType::Int16 => 2,
            SpType::Int32 => 3,
            SpType::Int64 => 4,
            SpType::UInt8 => 5,
            SpType::UInt16 => 6,
            SpType::UInt32 => 7,
            SpType::UInt64 => 8,
            SpType::Float => 9,
            SpType::Double => 10,
            SpType::Boolean => 11,
            SpType::String => 12,
        }
    }

    pub fn from_code(code: u32) -> Option<SpType> {
        SpType::ALL.into_iter().find(|t| t.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            SpType::Int8 => "Int8",
            SpType::Int16 => "Int16",
            SpType::Int32 => "Int32",
            SpType::Int64 => "Int64",
            SpType::UInt8 => "UInt8",
            SpType::UInt16 => "UInt16",
            SpType::UInt32 => "UInt32",
            SpType::UInt64 => "UInt64",
            SpType::Float => "Float",
            SpType::Double => "Double",
            SpType::Boolean => "Boolean",
            SpType::String => "String",
        }
    }

    /// Bits of the small integer types carried in `int_value`.
    fn small_int_bits(self) -> Option<(u32, bool)> {
        match self {
            SpType::Int8 => Some((8, true)),
            SpType::Int16 => Some((16, true)),
            SpType::Int32 => Some((32, true)),
            SpType::UInt8 => Some((8, false)),
            SpType::UInt16 => Some((16, false)),
            SpType::UInt32 => Some((32, false)),
            _ => None,
        }
    }
}

/// The Sparkplug datatype of a read point: its register type when the engineering value is
/// the raw value (scale 1, offset 0, no `scale_from`), Double when scaling makes it a decimal.
/// BCD is unsigned, INTREAL a double, bits Boolean, strings String.
pub fn point_type(p: &PointSpec) -> SpType {
    let identity = p.scale == 1.0 && p.offset == 0.0 && p.scale_from.is_none();
    match p.data_type {
        DataType::Bool | DataType::BitOfRegister(_) => SpType::Boolean,
        DataType::String(_) => SpType::String,
        DataType::IntReal | DataType::F64 => SpType::Double,
        _ if !identity => SpType::Double,
        DataType::F32 => SpType::Float,
        DataType::I16 => SpType::Int16,
        DataType::I32 => SpType::Int32,
        DataType::I64 => SpType::Int64,
        DataType::U16 | DataType::Bcd16 => SpType::UInt16,
        DataType::U32 | DataType::Bcd32 => SpType::UInt32,
        DataType::U64 | DataType::Bcd48 => SpType::UInt64,
    }
}

/// Why a value cannot be carried as a metric of some datatype.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("{value} does not fit {}", want.name())]
    OutOfRange { value: String, want: SpType },
    #[error("a {got} value cannot be a {} metric", want.name())]
    Type { got: &'static str, want: SpType },
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::Int(_) | Value::UInt(_) => "integer",
        Value::Float(_) => "float",
        Value::Text(_) => "text",
    }
}

/// An integral view of a value (whole floats count), for the integer datatypes.
fn as_i128(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        Value::Bool(b) => Some(i128::from(*b)),
        Value::Float(x) if x.fract() == 0.0 && x.abs() < 1.9e19 => Some(*x as i128),
        _ => None,
    }
}

/// A model value as the protobuf value of a metric of type `t`. Signed small integers travel
/// in `int_value` as their 32-bit two's complement (sign-extended: -1 as Int16 is 0xFFFFFFFF,
/// as the Tahu reference and Ignition write it); Int64 in `long_value` as 64-bit two's complement.
pub fn to_proto(t: SpType, v: &Value) -> Result<metric::Value, ValueError> {
    let range = |lo: i128, hi: i128| -> Result<i128, ValueError> {
        match as_i128(v) {
            Some(i) if (lo..=hi).contains(&i) => Ok(i),
            Some(_) => Err(ValueError::OutOfRange {
                value: v.to_string(),
                want: t,
            }),
            None => Err(ValueError::Type {
                got: kind_name(v),
                want: t,
            }),
        }
    };
    Ok(match t {
        SpType::Boolean => match v {
            Value::Bool(b) => metric::Value::BooleanValue(*b),
            _ => metric::Value::BooleanValue(range(0, 1)? == 1),
        },
        SpType::String => match v {
            Value::Text(s) => metric::Value::StringValue(s.clone()),
            _ => {
                return Err(ValueError::Type {
                    got: kind_name(v),
                    want: t,
                })
            }
        },
        SpType::Float | SpType::Double => {
            let x = match v {
                Value::Float(x) => *x,
                Value::Bool(_) | Value::Text(_) => {
                    return Err(ValueError::Type {
                        got: kind_name(v),
                        want: t,
                    })
                }
                other => other.as_f64().unwrap_or(f64::NAN),
            };
            if t == SpType::Float {
                metric::Value::FloatValue(x as f32)
            } else {
                metric::Value::DoubleValue(x)
            }
        }
        SpType::Int64 => {
            metric::Value::LongValue(range(i64::MIN.into(), i64::MAX.into())? as i64 as u64)
        }
        SpType::UInt64 => metric::Value::LongValue(range(0, u64::MAX.into())? as u64),
        small => {
            let (bits, signed) = small.small_int_bits().unwrap_or((32, false));
            let i = if signed {
                range(-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)?
            } else {
                range(0, (1i128 << bits) - 1)?
            };
            metric::Value::IntValue(i as i32 as u32)
        }
    })
}

/// A protobuf value of a metric of type `t` as a model value; the value field must be the one
/// the datatype travels in. Small signed integers accept both the sign-extended and the
/// width-masked two's complement (implementations differ).
pub fn from_proto(t: SpType, v: &metric::Value) -> Result<Value, ValueError> {
    let wrong = || ValueError::Type {
        got: proto_kind(v),
        want: t,
    };
    Ok(match (t, v) {
        (SpType::Boolean, metric::Value::BooleanValue(b)) => Value::Bool(*b),
        (SpType::String, metric::Value::StringValue(s)) => Value::Text(s.clone()),
        (SpType::Float, metric::Value::FloatValue(x)) => Value::Float(f64::from(*x)),
        (SpType::Double, metric::Value::DoubleValue(x)) => Value::Float(*x),
        (SpType::Int64, metric::Value::LongValue(u)) => Value::Int(*u as i64),
        (SpType::UInt64, metric::Value::LongValue(u)) => Value::UInt(*u),
        (small, metric::Value::IntValue(u)) => {
            let (bits, signed) = small.small_int_bits().ok_or_else(wrong)?;
            let u = u64::from(*u);
            if !signed {
                if bits < 32 && u >> bits != 0 {
                    return Err(ValueError::OutOfRange {
                        value: u.to_string(),
                        want: t,
                    });
                }
                Value::UInt(u)
            } else {
                let sign_extended = i64::from(u as u32 as i32);
                let half = 1i64 << (bits - 1);
                let i = if (-half..half).contains(&sign_extended) {
                    sign_extended
                } else if u < (1u64 << bits) {
                    // Width-masked form: 0xFFFF is -1 for Int16.
                    (u as i64) - if u as i64 >= half { 2 * half } else { 0 }
                } else {
                    return Err(ValueError::OutOfRange {
                        value: u.to_string(),
                        want: t,
                    });
                };
                Value::Int(i)
            }
        }
        _ => return Err(wrong()),
    })
}

fn proto_kind(v: &metric::Value) -> &'static str {
    match v {
        metric::Value::IntValue(_) => "int_value",
        metric::Value::LongValue(_) => "long_value",
        metric::Value::FloatValue(_) => "float_value",
        metric::Value::DoubleValue(_) => "double_value",
        metric::Value::BooleanValue(_) => "boolean_value",
        metric::Value::StringValue(_) => "string_value",
        metric::Value::BytesValue(_) => "bytes_value",
        metric::Value::DatasetValue(_) => "dataset_value",
        metric::Value::TemplateValue(_) => "template_value",
        metric::Value::ExtensionValue(_) => "extension_value",
    }
}

/// What a metric stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricKind {
    /// A read point of the device; `writable`: DCMD may target it.
    Point { writable: bool },
    /// A computed point (read-only).
    Computed,
    /// An alarm rule watching the device: value = active.
    Alarm {
        rule: String,
        severity: &'static str,
        /// The configured limits of a limit rule, "hh"/"h"/"l"/"ll" -> value.
        limits: Vec<(&'static str, f64)>,
    },
    /// One of the node's own metrics.
    Node,
}

/// One metric of the node or of a device, as the births describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDef {
    pub name: String,
    pub alias: u64,
    pub datatype: SpType,
    /// Engineering unit (`engUnit` property).
    pub unit: Option<String>,
    pub kind: MetricKind,
}

/// The metrics of one device, sorted by name.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceModel {
    pub device: String,
    pub metrics: Vec<MetricDef>,
}

impl DeviceModel {
    pub fn by_name(&self, name: &str) -> Option<&MetricDef> {
        self.metrics
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.metrics[i])
    }

    pub fn by_alias(&self, alias: u64) -> Option<&MetricDef> {
        self.metrics.iter().find(|m| m.alias == alias)
    }
}

/// Names of the node's own metrics.
pub const BD_SEQ: &str = "bdSeq";
pub const REBIRTH: &str = "Node Control/Rebirth";
pub const LINK_TRANSPORT: &str = "Link/Transport";
pub const LINK_RECONNECTS: &str = "Link/Reconnects";
pub const BUFFER_DEPTH: &str = "Buffer/Depth";
/// Prefix of the alarm metrics of a device.
pub const ALARMS_PREFIX: &str = "Alarms/";

/// The whole model of one edge node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeModel {
    /// The node's metrics other than `bdSeq` (which has no alias), sorted by name.
    pub node: Vec<MetricDef>,
    /// Enabled devices, sorted by name.
    pub devices: Vec<DeviceModel>,
}

impl NodeModel {
    pub fn device(&self, name: &str) -> Option<&DeviceModel> {
        self.devices
            .binary_search_by(|d| d.device.as_str().cmp(name))
            .ok()
            .map(|i| &self.devices[i])
    }

    pub fn node_metric(&self, name: &str) -> Option<&MetricDef> {
        self.node.iter().find(|m| m.name == name)
    }
}

/// Why the config cannot be described as Sparkplug metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("device {device:?} cannot be a Sparkplug device id: {why}")]
    DeviceId { device: String, why: IdError },
    #[error("device {device:?}: two metrics named {name:?}")]
    Duplicate { device: String, name: String },
}

/// FNV-1a, 32 bits, over `scope`, a 0 byte and `name`: the alias hash (stable across Rust
/// versions and platforms, unlike std's hasher).
fn fnv1a(scope: &str, name: &str) -> u32 {
    let bytes = scope
        .bytes()
        .chain(std::iter::once(0u8))
        .chain(name.bytes());
    bytes.fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The alias of `name` in `scope` ("" for the node, else the device): a 31-bit hash, never 0,
/// moved to the next free value on the (rare) collision; `taken` holds the aliases given so far.
fn alias_for(scope: &str, name: &str, taken: &mut HashSet<u64>) -> u64 {
    let mut a = u64::from(fnv1a(scope, name) & 0x7fff_ffff);
    loop {
        if a == 0 {
            a = 1;
        }
        if taken.insert(a) {
            return a;
        }
        a = (a + 1) & 0x7fff_ffff;
    }
}

/// Builds the node's model from the config: every enabled device, its published points,
/// computed points and alarm rules. Aliases are handed out node metrics first, then devices
/// in name order, metrics in name order, so collisions resolve the same way every time.
pub fn build(cfg: &Config) -> Result<NodeModel, ModelError> {
    let mut taken = HashSet::new();
    let mut node: Vec<MetricDef> = [
        (BUFFER_DEPTH, SpType::UInt64),
        (LINK_RECONNECTS, SpType::UInt64),
        (LINK_TRANSPORT, SpType::String),
        (REBIRTH, SpType::Boolean),
    ]
    .into_iter()
    .map(|(name, t)| (name, t, None))
    .chain(
        cfg.modem
            .is_some()
            .then_some(super::modem::MODEM_METRICS)
            .into_iter()
            .flatten(),
    )
    .map(|(name, t, unit)| MetricDef {
        name: name.to_string(),
        alias: alias_for("", name, &mut taken),
        datatype: t,
        unit: unit.map(str::to_string),
        kind: MetricKind::Node,
    })
    .collect();
    node.sort_by(|a, b| a.name.cmp(&b.name));
    let mut devices = Vec::new();
    let mut sorted: Vec<_> = cfg.devices.iter().filter(|d| d.enabled).collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for dev in sorted {
        validate_id(&dev.name).map_err(|why| ModelError::DeviceId {
            device: dev.name.clone(),
            why,
        })?;
        let mut defs: BTreeMap<String, (SpType, Option<String>, MetricKind)> = BTreeMap::new();
        let mut add = |name: String, v: (SpType, Option<String>, MetricKind)| {
            if defs.insert(name.clone(), v).is_some() {
                return Err(ModelError::Duplicate {
                    device: dev.name.clone(),
                    name,
                });
            }
            Ok(())
        };
        for p in dev.points.iter().filter(|p| p.publish) {
            add(
                p.name.clone(),
                (
                    point_type(p),
                    p.unit.clone(),
                    MetricKind::Point {
                        writable: p.writable,
                    },
                ),
            )?;
        }
        for c in &dev.computed {
            add(
                c.name.clone(),
                (SpType::Double, c.unit.clone(), MetricKind::Computed),
            )?;
        }
        for rule in cfg.alarms.iter().filter(|r| r.devices.contains(&dev.name)) {
            let limits = match &rule.kind {
                crate::alarm::RuleKind::Limit { levels, .. } => {
                    levels.iter().map(|(l, x)| (l.key(), *x)).collect()
                }
                _ => Vec::new(),
            };
            add(
                format!("{ALARMS_PREFIX}{}", rule.id),
                (
                    SpType::Boolean,
                    None,
                    MetricKind::Alarm {
                        rule: rule.id.clone(),
                        severity: rule.severity.as_str(),
                        limits,
                    },
                ),
            )?;
        }
        let metrics = defs
            .into_iter()
            .map(|(name, (datatype, unit, kind))| MetricDef {
                alias: alias_for(&dev.name, &name, &mut taken),
                name,
                datatype,
                unit,
                kind,
            })
            .collect();
        devices.push(DeviceModel {
            device: dev.name.clone(),
            metrics,
        });
    }
    Ok(NodeModel { node, devices })
}
