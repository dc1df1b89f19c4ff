//! Payload codecs of the uplink (pure core, no I/O): packs outbox entries into MQTT messages
//! no larger than the payload limit, encodes `data` messages as documented JSON or compact
//! CBOR, and decodes either encoding back into the documented JSON shape (`gasdtu decode`,
//! tests). Alarm, reply and event entries travel as JSON, one per message, on their own topics
//! (a reply's topic comes with its kind: `cmd/res` or the retained `config/state`); one
//! that would exceed the payload limit is cut to fit (`fit_json`: the longest strings
//! shortened at a char boundary and ended with `…`, and `"truncated": true` added).
//! The schemas are specified in docs/mqtt.md; keep the two in step.
//!
//! JSON data message: `{"gw","seq","hist","data":[{"dev","unit":{point: unit},"reads":[{"t":
//! RFC 3339 UTC ms,"v":{point: value},"bad":{point: reason}}]}]}`.
//! CBOR data message: map `{0: gw, 1: seq, 2: hist, 3: base time (epoch ms), 4: [device]}`,
//! device `[name, [points], [units|null], [read]]`, read `[dt ms, [values|null], {index:
//! reason}?]` where `dt` is relative to the previous read of the device (the first to the base).
//!
//! Format 2 (`uplink.format = 2`, `v2`; read back by `v2_decode`): a schema table of point
//! names and units per message, one time offset per device read, decimal mantissas and
//! deltas in CBOR. `Wire` says which encoding and format `encode_messages` writes.

use std::sync::Arc;

use crate::time::unix_ms;
use ciborium::Value as Cbor;
use serde_json::{Map, Value as Json};
use thiserror::Error;

use crate::config::{Encoding, PayloadFormat};
use crate::decimal::meant;
use crate::model::{BadReason, Quality, Sample, SampleBatch, Value};
use crate::outbox::EntryKind;

pub use pack::{encode_messages, encode_messages_hinted};

#[derive(Debug, Error)]
pub enum CodecError {
    /// The bytes are neither a JSON object nor a CBOR message of the documented schema.
    #[error("not a gasdtu payload: {0}")]
    Malformed(String),
    /// Encoding failed (should not happen for well-formed entries).
    #[error("cannot encode payload: {0}")]
    Encode(String),
}

/// One read time of one device inside a message.
#[derive(Debug, Clone, PartialEq)]
struct ReadGroup {
    t_ms: i64,
    /// (point index in the device's order, value or bad reason)
    items: Vec<(usize, Result<Value, String>)>,
}

/// A point's name and unit, shared with the samples.
pub(super) type PointName = (Arc<str>, Option<Arc<str>>);

#[derive(Debug, Clone, PartialEq)]
struct DeviceGroup {
    /// Names shared with the samples (`Arc`): the packer adds every sample of a message
    /// several times while it measures, and a copy of each name each time was a large part
    /// of its cost (issue 13).
    device: Arc<str>,
    /// Point names in first-seen order, with their units. Shared (copy on write) like the
    /// reads: the packer copies a batch's groups into every candidate message it measures,
    /// and copying the vectors (and dropping the copies) was ~8 % of a format-2 run's
    /// instructions (issue 13); a copy is changed only when a later batch of the same device
    /// joins it, and `Arc::make_mut` copies it then.
    points: Arc<Vec<PointName>>,
    reads: Arc<Vec<ReadGroup>>,
    /// Its format-1 JSON object once written (`json1`), shared by the copies of the group and
    /// forgotten by `add_sample`: the packer measures each candidate message whole, and most
    /// of a candidate's groups are unchanged copies of the last one's; the message's bytes are
    /// then these objects joined (issue 13).
    json: Written,
    /// What format 2 CBOR's `kinds_of` needs of the group, per point (`v2::Seen`), found
    /// once and shared by the copies like `json` (issue 13: found again for every candidate
    /// message, it was ~7 % of a format-2 CBOR run's instructions).
    seen: Written<Vec<v2::Seen>>,
}

/// Bytes written once, or not yet, in a cell the copies of a group share: a copy made before
/// the bytes were written finds them written by another (the packer copies a batch's groups
/// into each candidate message). A group that changes gets a cell of its own (`forget`).
/// Never part of a group's equality.
#[derive(Debug, Clone)]
struct Written<T = Vec<u8>>(Arc<std::sync::OnceLock<T>>);

impl<T> Default for Written<T> {
    fn default() -> Self {
        Written(Arc::default())
    }
}

impl<T> Written<T> {
    /// The value, written by `write` the first time (`None`: it failed, and nothing is kept).
    fn get_or_write(&self, write: impl FnOnce() -> Option<T>) -> Option<&T> {
        if self.0.get().is_none() {
            let _ = self.0.set(write()?);
        }
        self.0.get()
    }

    fn forget(&mut self) {
        match Arc::get_mut(&mut self.0) {
            Some(cell) => drop(cell.take()),
            None => self.0 = Arc::default(),
        }
    }
}

impl<T> PartialEq for Written<T> {
    fn eq(&self, _: &Written<T>) -> bool {
        true
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    Data {
        historical: bool,
        devices: Vec<DeviceGroup>,
    },
    Json(Json),
}

/// One message ready to be sealed: which entries it completes, how many readings it carries,
/// and a body that becomes bytes once the sequence number is known (`build`).
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    pub kind: EntryKind,
    /// Entries this message completes: acknowledging it deletes them. An entry split over
    /// several messages is bound to the last of them (earlier parts carry no entry).
    pub entries: Vec<i64>,
    pub readings: u64,
    /// Packing exactly `entries` again with no size limit gives this very message (every
    /// entry whole in it, nothing cut): its payload is a pure function of its entries, so the
    /// store may keep the recipe instead of the bytes (store::frozen). Set by the packer.
    pub rebuildable: bool,
    encoding: Encoding,
    format: PayloadFormat,
    body: Body,
}

/// How `data` messages are written: the encoding and the layout version (`uplink.encoding`,
/// `uplink.format`). An `Encoding` alone means format 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wire {
    pub encoding: Encoding,
    pub format: PayloadFormat,
}

impl From<Encoding> for Wire {
    fn from(encoding: Encoding) -> Wire {
        Wire {
            encoding,
            format: PayloadFormat::V1,
        }
    }
}

impl From<(Encoding, PayloadFormat)> for Wire {
    fn from((encoding, format): (Encoding, PayloadFormat)) -> Wire {
        Wire { encoding, format }
    }
}

impl Packed {
    fn data(historical: bool, wire: Wire) -> Packed {
        Packed {
            kind: EntryKind::Data,
            entries: Vec::new(),
            readings: 0,
            rebuildable: false,
            encoding: wire.encoding,
            format: wire.format,
            body: Body::Data {
                historical,
                devices: Vec::new(),
            },
        }
    }

    fn historical(&self) -> Option<bool> {
        match &self.body {
            Body::Data { historical, .. } => Some(*historical),
            Body::Json(_) => None,
        }
    }

    /// The payload of this message as gateway `gateway` with sequence number `seq`.
    pub fn build(&self, gateway: &str, seq: u64) -> Result<Vec<u8>, CodecError> {
        if let Some((historical, devices)) = self.v2_data() {
            return v2::build(self.encoding, gateway, seq, historical, devices);
        }
        match (&self.body, self.encoding) {
            (Body::Json(v), _) => {
                let mut obj = Map::new();
                obj.insert("gw".into(), Json::from(gateway));
                obj.insert("seq".into(), Json::from(seq));
                match v {
                    Json::Object(m) => {
                        for (k, v) in m {
                            if k != "gw" && k != "seq" {
                                obj.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    other => {
                        obj.insert("body".into(), other.clone());
                    }
                }
                serde_json::to_vec(&Json::Object(obj))
                    .map_err(|e| CodecError::Encode(e.to_string()))
            }
            (
                Body::Data {
                    historical,
                    devices,
                },
                Encoding::Json,
            ) => json1::to_vec(gateway, seq, *historical, devices),
            (
                Body::Data {
                    historical,
                    devices,
                },
                Encoding::Cbor,
            ) => {
                let mut out = Vec::new();
                ciborium::into_writer(&data_cbor(gateway, seq, *historical, devices), &mut out)
                    .map_err(|e| CodecError::Encode(e.to_string()))?;
                Ok(out)
            }
        }
    }

    /// A format 1 JSON data message's kind (historical or live) and device groups.
    fn json1_data(&self) -> Option<(bool, &[DeviceGroup])> {
        match (&self.body, self.encoding, self.format) {
            (
                Body::Data {
                    historical,
                    devices,
                },
                Encoding::Json,
                PayloadFormat::V1,
            ) => Some((*historical, devices)),
            _ => None,
        }
    }

    /// A format-2 data message's kind (historical) and device groups.
    fn v2_data(&self) -> Option<(bool, &[DeviceGroup])> {
        match (&self.body, self.format) {
            (
                Body::Data {
                    historical,
                    devices,
                },
                PayloadFormat::V2,
            ) => Some((*historical, devices)),
            _ => None,
        }
    }

    /// Size with the largest possible sequence number (what the packer measures).
    fn worst_len(&self, gateway: &str) -> usize {
        if let Some((historical, devices)) = self.json1_data() {
            return json1::len(gateway, u64::MAX, historical, devices);
        }
        if let Some((historical, devices)) = self.v2_data() {
            return v2::len(self.encoding, gateway, u64::MAX, historical, devices)
                .unwrap_or(usize::MAX);
        }
        self.build(gateway, u64::MAX)
            .map(|b| b.len())
            .unwrap_or(usize::MAX)
    }

    fn is_empty(&self) -> bool {
        match &self.body {
            Body::Data { devices, .. } => devices.iter().all(|d| d.reads.is_empty()),
            Body::Json(_) => false,
        }
    }

    fn add_sample(&mut self, device: &Arc<str>, s: &Sample) {
        self.add_sample_in(device, s, 1);
    }

    /// `add_sample`, a new group or read made with room for `room` points (the batch's size:
    /// growing them one push at a time was 1.7 % of W1's instructions, issue 13).
    fn add_sample_in(&mut self, device: &Arc<str>, s: &Sample, room: usize) {
        let Body::Data { devices, .. } = &mut self.body else {
            return;
        };
        // JSON keys values and units by point name: a point whose unit changed (a config
        // reload between two batches of the backlog) starts another group of the device, so
        // each reading keeps its own unit. A point name is in a group at most once (it is
        // added only to a group that does not have it), so one scan of the group's points
        // decides: same unit, it is there; another unit, try the next group; absent, add it.
        // Names are mostly the same `Arc` (the store's dictionary): pointers are compared first.
        let mut slot = None;
        for (gi, g) in devices.iter().enumerate() {
            if !same_name(&g.device, device) {
                continue;
            }
            match g.points.iter().position(|(p, _)| same_name(p, &s.point)) {
                Some(pi) if same_unit(&g.points[pi].1, &s.unit) => {
                    slot = Some((gi, Some(pi)));
                    break;
                }
                Some(_) => continue,
                None => {
                    slot = Some((gi, None));
                    break;
                }
            }
        }
        let (gi, pi) = match slot {
            Some(found) => found,
            None => {
                devices.push(DeviceGroup {
                    device: device.clone(),
                    points: Arc::new(Vec::with_capacity(room)),
                    reads: Arc::default(),
                    json: Written::default(),
                    seen: Written::default(),
                });
                (devices.len() - 1, None)
            }
        };
        let g = &mut devices[gi];
        g.json.forget();
        g.seen.forget();
        let pi = pi.unwrap_or_else(|| {
            Arc::make_mut(&mut g.points).push((s.point.clone(), s.unit.clone()));
            g.points.len() - 1
        });
        let t_ms = unix_ms(s.read_at);
        let item = match (&s.quality, &s.value) {
            (Quality::Good, Some(v)) => Ok(v.clone()),
            (Quality::Good, None) => Err("decode: no value".to_string()),
            (Quality::Bad(r), _) => Err(reason_text(r)),
        };
        // A point appears once per read group: a repeat starts a new group at the same time.
        let ri = g
            .reads
            .iter()
            .rposition(|r| r.t_ms == t_ms && r.items.iter().all(|(i, _)| *i != pi));
        let reads = Arc::make_mut(&mut g.reads);
        match ri {
            Some(ri) => reads[ri].items.push((pi, item)),
            None => {
                let mut items = Vec::with_capacity(room);
                items.push((pi, item));
                reads.push(ReadGroup { t_ms, items });
            }
        }
        self.readings += 1;
    }

    fn add_batch(&mut self, b: &SampleBatch) {
        for s in &b.samples {
            self.add_sample_in(&b.device, s, b.samples.len());
        }
    }

    /// `add_batch` for a batch whose groups in a message without its device are `alone`
    /// (`groups_alone`): where the message has no group of the device, that is exactly what
    /// `add_batch` would make, so the groups are copied, with their written JSON (the packer
    /// tries a batch in several candidate messages; issue 13).
    fn add_batch_alone(&mut self, b: &SampleBatch, alone: &[DeviceGroup]) {
        let Body::Data { devices, .. } = &mut self.body else {
            return;
        };
        if devices.iter().any(|g| same_name(&g.device, &b.device)) {
            return self.add_batch(b);
        }
        devices.extend(alone.iter().cloned());
        self.readings += b.samples.len() as u64;
    }
}

/// The device groups `b` makes in a message that has none of its device (one, or more when
/// a point's unit changes within the batch).
fn groups_alone(b: &SampleBatch, wire: Wire) -> Vec<DeviceGroup> {
    let mut m = Packed::data(false, wire);
    m.add_batch(b);
    match m.body {
        Body::Data { devices, .. } => devices,
        Body::Json(_) => Vec::new(),
    }
}

/// Two names are equal: the same allocation, or the same text.
fn same_name(a: &Arc<str>, b: &Arc<str>) -> bool {
    // Names of one message differ mostly in their last character (dev01, dev02 …): checked
    // before the whole text, which costs a `memcmp` call (issue 13: ~35 per reading on W1,
    // from `add_sample`'s scan of the message's devices).
    Arc::ptr_eq(a, b)
        || (a.len() == b.len() && a.as_bytes().last() == b.as_bytes().last() && a == b)
}

fn same_unit(a: &Option<Arc<str>>, b: &Option<Arc<str>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_name(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Shortest a string is cut to by `fit_json` (bytes, before the `…`).
const TRUNCATE_FLOOR: usize = 16;

/// An alarm/event body whose message (with the largest sequence number) fits `max_payload`:
/// unchanged when it fits; else the longest string values are cut at a char boundary and end
/// in `…`, longest first, until it fits, and `"truncated": true` is added at the top level (a
/// non-object body is wrapped as `{"body": …}` first, as the envelope would). If cutting every
/// string down to `TRUNCATE_FLOOR` bytes is not enough, the cut body is returned anyway (the
/// forwarder sets a message the client refuses aside as a dead letter).
pub fn fit_json(v: &Json, gateway: &str, max_payload: usize) -> Json {
    let len = |v: &Json| {
        Packed {
            kind: EntryKind::Event,
            entries: Vec::new(),
            readings: 0,
            rebuildable: false,
            encoding: Encoding::Json,
            format: PayloadFormat::V1,
            body: Body::Json(v.clone()),
        }
        .worst_len(gateway)
    };
    let size = len(v);
    if size <= max_payload {
        return v.clone();
    }
    let mut obj = match v {
        Json::Object(m) => m.clone(),
        other => {
            let mut m = Map::new();
            m.insert("body".into(), other.clone());
            m
        }
    };
    obj.insert("truncated".into(), Json::Bool(true));
    let mut cur = Json::Object(obj);
    // Each round shortens the longest string by at least 1 byte (by half after a few rounds:
    // escaped text can be longer on the wire than in memory), so this ends.
    for round in 0..4096 {
        let size = len(&cur);
        if size <= max_payload {
            break;
        }
        let Some(s) = longest_string(&mut cur) else {
            break;
        };
        // Cut the text without an earlier ellipsis (so marks do not pile up).
        let marked = s.ends_with('…');
        let base = s.strip_suffix('…').unwrap_or(s.as_str());
        if base.len() <= TRUNCATE_FLOOR {
            break;
        }
        let excess = size - max_payload;
        let mark = if marked { 0 } else { '…'.len_utf8() };
        let mut keep = base.len().saturating_sub(excess + mark);
        if round >= 8 {
            keep = keep.min(base.len() / 2);
        }
        keep = keep.clamp(TRUNCATE_FLOOR, base.len() - 1);
        while !base.is_char_boundary(keep) {
            keep -= 1;
        }
        *s = format!("{}…", &base[..keep]);
    }
    cur
}

/// The longest string value anywhere in `v` (object keys excluded).
fn longest_string(v: &mut Json) -> Option<&mut String> {
    match v {
        Json::String(s) => Some(s),
        Json::Array(a) => a
            .iter_mut()
            .filter_map(longest_string)
            .max_by_key(|s| s.len()),
        Json::Object(m) => m
            .values_mut()
            .filter_map(longest_string)
            .max_by_key(|s| s.len()),
        _ => None,
    }
}

/// `BadReason` as sent: the reason word first (`timeout`, `crc`, `exception`, `decode`, `io`,
/// `protocol`, `input`), then `: detail` where there is one.
pub fn reason_text(r: &BadReason) -> String {
    match r {
        BadReason::Timeout => "timeout".into(),
        BadReason::Crc => "crc".into(),
        BadReason::Exception { code, meaning } => format!("exception: {code} {meaning}"),
        BadReason::Decode(s) => format!("decode: {s}"),
        BadReason::Io(s) => format!("io: {s}"),
        BadReason::Protocol(s) => format!("protocol: {s}"),
        BadReason::Input(s) => format!("input: {s}"),
    }
}

/// A float as JSON: the decimal it stands for (`decimal::meant`: a value that came from an f32
/// register is written at f32 precision, 4.2 and not 4.199999809265137; everything else,
/// computed totals and scaled values included, exactly, in its shortest form), non-finite
/// values as the strings "NaN", "inf", "-inf".
fn float_json(x: f64) -> Json {
    if x.is_nan() {
        return Json::from("NaN");
    }
    if x.is_infinite() {
        return Json::from(if x > 0.0 { "inf" } else { "-inf" });
    }
    serde_json::Number::from_f64(meant(x))
        .map(Json::Number)
        .unwrap_or(Json::Null)
}

#[cfg(test)]
fn value_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(x) => float_json(*x),
        Value::Text(s) => Json::from(s.as_str()),
    }
}

fn value_cbor(v: &Value) -> Cbor {
    match v {
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Int(i) => Cbor::Integer((*i).into()),
        Value::UInt(u) => Cbor::Integer((*u).into()),
        // The double itself: ciborium narrows it to a half or single only when that is
        // lossless, so every CBOR reader reads exactly the stored double, and an f32 reading
        // keeps costing 5 bytes. Readers apply `decimal::meant` as the JSON writer does.
        Value::Float(x) => Cbor::Float(*x),
        Value::Text(s) => Cbor::Text(s.clone()),
    }
}

fn sorted_reads(g: &DeviceGroup) -> Vec<&ReadGroup> {
    let mut reads: Vec<&ReadGroup> = g.reads.iter().collect();
    reads.sort_by_key(|r| r.t_ms);
    reads
}

fn cbor_int(i: i64) -> Cbor {
    Cbor::Integer(i.into())
}

fn data_cbor(gateway: &str, seq: u64, historical: bool, devices: &[DeviceGroup]) -> Cbor {
    let base = devices
        .iter()
        .flat_map(|g| g.reads.iter().map(|r| r.t_ms))
        .min()
        .unwrap_or(0);
    let devs: Vec<Cbor> = devices
        .iter()
        .map(|g| {
            let names = g
                .points
                .iter()
                .map(|(p, _)| Cbor::Text(p.to_string()))
                .collect();
            let units = g
                .points
                .iter()
                .map(|(_, u)| u.as_deref().map_or(Cbor::Null, |u| Cbor::Text(u.into())))
                .collect();
            let mut prev = base;
            let reads = sorted_reads(g)
                .into_iter()
                .map(|r| {
                    let mut values = vec![Cbor::Null; g.points.len()];
                    let mut bad = Vec::new();
                    for (i, item) in &r.items {
                        match item {
                            Ok(v) => values[*i] = value_cbor(v),
                            Err(reason) => {
                                bad.push((cbor_int(*i as i64), Cbor::Text(reason.clone())))
                            }
                        }
                    }
                    let mut read = vec![cbor_int(r.t_ms - prev), Cbor::Array(values)];
                    prev = r.t_ms;
                    if !bad.is_empty() {
                        read.push(Cbor::Map(bad));
                    }
                    Cbor::Array(read)
                })
                .collect();
            Cbor::Array(vec![
                Cbor::Text(g.device.to_string()),
                Cbor::Array(names),
                Cbor::Array(units),
                Cbor::Array(reads),
            ])
        })
        .collect();
    Cbor::Map(vec![
        (cbor_int(0), Cbor::Text(gateway.to_string())),
        (cbor_int(1), Cbor::Integer(seq.into())),
        (cbor_int(2), Cbor::Bool(historical)),
        (cbor_int(3), cbor_int(base)),
        (cbor_int(4), Cbor::Array(devs)),
    ])
}

mod decode;
mod json1;
mod pack;
mod v2;
mod v2_decode;
pub use decode::{decode, decode_kind, PayloadKind};

#[cfg(test)]
mod json1_tests;
#[cfg(test)]
mod pack_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod v2_size_tests;
#[cfg(test)]
mod v2_tests;
#[cfg(test)]
mod wire_tests;
