//! The largest DBIRTH each device can send, measured by the real encoder: every metric of the
//! device's model at its widest value (the longest varint of its datatype, strings at their
//! configured length, alarms active with a limit and a message), timestamps at their widest
//! plausible value and seq at 255; and the largest NBIRTH (with a modem, its `Modem/` metrics
//! all known at their widest). The config validator compares them with `[uplink]
//! max_payload` so a gateway never starts with a birth it could not publish. Pure.

use super::encode::{dbirth, nbirth, MetricUpdate, NodeState, Seq, Update};
use super::metrics::{DeviceModel, MetricKind, NodeModel, SpType};
use super::modem::{ModemFigures, MODEM_METRICS};
use crate::config::Config;
use crate::model::{DataType, Value};

/// 9999-12-31T23:59:59.999Z in ms: wider on the wire than any real read time.
const WIDEST_MS: u64 = 253_402_300_799_999;

/// Bytes an alarm's rendered message is counted at (the engine renders a template with the
/// device, point, value, unit and limit; the default templates stay well below this).
pub const ALARM_MESSAGE_BYTES: usize = 256;

/// The widest value of a point metric; `len` is a string point's configured length.
fn widest(t: SpType, len: usize) -> Value {
    match t {
        SpType::Boolean => Value::Bool(true),
        SpType::String => Value::Text("W".repeat(len)),
        SpType::Float | SpType::Double => Value::Float(f64::MIN),
        // Negative small signed integers travel sign-extended: the longest varint.
        SpType::Int8 => Value::Int(i64::from(i8::MIN)),
        SpType::Int16 => Value::Int(i64::from(i16::MIN)),
        SpType::Int32 => Value::Int(i64::from(i32::MIN)),
        SpType::Int64 => Value::Int(i64::MIN),
        SpType::UInt8 => Value::UInt(u64::from(u8::MAX)),
        SpType::UInt16 => Value::UInt(u64::from(u16::MAX)),
        SpType::UInt32 => Value::UInt(u64::from(u32::MAX)),
        SpType::UInt64 => Value::UInt(u64::MAX),
    }
}

/// The size in bytes of the largest DBIRTH of `dev`; `string_len` gives a string point's
/// configured length by metric name.
pub fn dbirth_max_size(dev: &DeviceModel, string_len: impl Fn(&str) -> usize) -> usize {
    let current: Vec<MetricUpdate> = dev
        .metrics
        .iter()
        .map(|def| MetricUpdate {
            name: def.name.clone(),
            at_ms: WIDEST_MS,
            update: match def.kind {
                MetricKind::Alarm { .. } => Update::Alarm {
                    active: true,
                    limit: Some(f64::MIN),
                    message: Some("W".repeat(ALARM_MESSAGE_BYTES)),
                },
                _ => Update::Point {
                    value: Some(widest(def.datatype, string_len(&def.name))),
                    good: true,
                },
            },
        })
        .collect();
    let mut seq = Seq::new();
    for _ in 0..255 {
        seq.take();
    }
    // Every value above fits its datatype by construction; an error would be a model bug,
    // counted as "does not fit" rather than hidden.
    dbirth(dev, &current, WIDEST_MS, &mut seq).map_or(usize::MAX, |b| b.len())
}

/// The longest `Link/Transport` value ("modem-socket") and `Modem/State` ("unresponsive").
const WIDEST_WORD: &str = "modem-socket";

/// The size in bytes of the largest NBIRTH of `model`: counters at their maximum, signal
/// figures at the most negative Int32 (sign-extended: the longest varint), every `Modem/`
/// figure known (a null metric is shorter), bdSeq 255.
pub fn nbirth_max_size(model: &NodeModel) -> usize {
    let has_modem = MODEM_METRICS
        .iter()
        .any(|(name, _, _)| model.node_metric(name).is_some());
    let state = NodeState {
        transport: WIDEST_WORD.to_string(),
        reconnects: u64::MAX,
        buffer_depth: u64::MAX,
        modem: has_modem.then(|| ModemFigures {
            state: WIDEST_WORD.to_string(),
            registered: true,
            rsrp_dbm: Some(i32::MIN),
            rssi_dbm: Some(i32::MIN),
            sinr_db: Some(i32::MIN),
            ecl: Some(i32::MIN),
            pdp_active: Some(true),
            resets_today: u64::MAX,
            inits: u64::MAX,
        }),
    };
    let mut seq = Seq::new();
    nbirth(model, 255, &state, WIDEST_MS, &mut seq).map_or(usize::MAX, |b| b.len())
}

/// One device whose largest DBIRTH exceeds the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversize {
    pub device: String,
    pub size: usize,
}

/// The devices of `model` (built from `cfg`) whose largest DBIRTH exceeds `max_payload`.
pub fn oversize_births(cfg: &Config, model: &NodeModel, max_payload: usize) -> Vec<Oversize> {
    let mut out = Vec::new();
    for dev in &model.devices {
        let spec = cfg.devices.iter().find(|d| d.name == dev.device);
        let string_len = |name: &str| {
            spec.and_then(|d| d.points.iter().find(|p| p.name == name))
                .map_or(0, |p| match p.data_type {
                    DataType::String(n) => usize::from(n),
                    _ => 0,
                })
        };
        let size = dbirth_max_size(dev, string_len);
        if size > max_payload {
            out.push(Oversize {
                device: dev.device.clone(),
                size,
            });
        }
    }
    out
}
