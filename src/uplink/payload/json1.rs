//! Format 1 JSON `data` messages written straight from the packed device groups (pure core, no
//! I/O): the bytes `serde_json` gives for the documented object (keys in byte order, as its
//! `Map` sorts them; floats by the `meant` rule), without building a `serde_json::Value` tree
//! first. The packer measures every message it tries (`Packed::worst_len`): each device
//! object is written once per change of its group and kept in the group, `len` adds their
//! lengths and `to_vec` joins them into the message (issue 13: the
//! tree of maps, cloned point names and formatted floats was the largest CPU cost per
//! reading, bench-results/cpu_round7.txt). `payload_tests` pins the bytes to the tree's.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::{sorted_reads, CodecError, DeviceGroup, ReadGroup};
use crate::decimal::meant;
use crate::model::Value;
use crate::time::rfc3339_ms;

/// The message's bytes: the message with no devices, with each device object (written once
/// per change of its group, kept in the group) spliced into its `data` array.
pub(super) fn to_vec(
    gateway: &str,
    seq: u64,
    historical: bool,
    devices: &[DeviceGroup],
) -> Result<Vec<u8>, CodecError> {
    let encode = |e: serde_json::Error| CodecError::Encode(e.to_string());
    let empty = serde_json::to_vec(&Msg::new(gateway, seq, historical, &[])).map_err(encode)?;
    // `Msg` writes `data` first, so the empty message starts with the array's opening.
    let Some(rest) = empty.strip_prefix(DATA_OPEN) else {
        return whole(gateway, seq, historical, devices);
    };
    let mut parts = Vec::with_capacity(devices.len());
    for g in devices {
        match device_json(g) {
            Some(b) => parts.push(b),
            None => return whole(gateway, seq, historical, devices),
        }
    }
    let len = empty.len() + parts.iter().map(|b| b.len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(DATA_OPEN);
    for (i, b) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b);
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// What `Msg` writes before the device objects.
const DATA_OPEN: &[u8] = b"{\"data\":[";

/// The message's bytes written in one pass, ignoring the groups' kept objects: the reference
/// `to_vec` and `len` are pinned to, and the fallback should the splice not apply.
pub(super) fn whole(
    gateway: &str,
    seq: u64,
    historical: bool,
    devices: &[DeviceGroup],
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    serde_json::to_writer(&mut out, &Msg::new(gateway, seq, historical, devices))
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// A group's device object, written once per change of the group.
fn device_json(g: &DeviceGroup) -> Option<&[u8]> {
    g.json.get_or_write(|| serde_json::to_vec(&Device(g)).ok())
}

/// The message's length in bytes (`to_vec(..).len()`), without the bytes: the message with
/// no devices, plus each device object, plus the commas between them.
pub(super) fn len(gateway: &str, seq: u64, historical: bool, devices: &[DeviceGroup]) -> usize {
    let Some(mut total) = count(&Msg::new(gateway, seq, historical, &[])) else {
        return usize::MAX;
    };
    for (i, g) in devices.iter().enumerate() {
        let Some(b) = device_json(g) else {
            return usize::MAX;
        };
        total += b.len() + usize::from(i > 0);
    }
    total
}

/// The length of `v`'s JSON.
fn count(v: &impl Serialize) -> Option<usize> {
    let mut n = Count(0);
    serde_json::to_writer(&mut n, v).ok().map(|()| n.0)
}

/// A writer that only counts.
struct Count(usize);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `{"data": [device], "gw", "hist", "seq"}`.
struct Msg<'a> {
    gateway: &'a str,
    seq: u64,
    historical: bool,
    devices: &'a [DeviceGroup],
}

impl<'a> Msg<'a> {
    fn new(gateway: &'a str, seq: u64, historical: bool, devices: &'a [DeviceGroup]) -> Self {
        Msg {
            gateway,
            seq,
            historical,
            devices,
        }
    }
}

impl Serialize for Msg<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("data", &Seq(self.devices.iter().map(Device)))?;
        m.serialize_entry("gw", self.gateway)?;
        m.serialize_entry("hist", &self.historical)?;
        m.serialize_entry("seq", &self.seq)?;
        m.end()
    }
}

/// A JSON array of the items an iterator yields (it is cloned to serialize).
struct Seq<I>(I);

impl<I> Serialize for Seq<I>
where
    I: Iterator + Clone,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(None)?;
        for x in self.0.clone() {
            q.serialize_element(&x)?;
        }
        q.end()
    }
}

/// `{"dev", "reads": [read], "unit": {point: unit}?}`.
struct Device<'a>(&'a DeviceGroup);

impl Serialize for Device<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let g = self.0;
        let units = by_name(
            g.points
                .iter()
                .filter_map(|(p, u)| u.as_deref().map(|u| (&**p, u))),
        );
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("dev", &*g.device)?;
        m.serialize_entry(
            "reads",
            &Seq(sorted_reads(g).into_iter().map(|r| Read(g, r))),
        )?;
        if !units.is_empty() {
            m.serialize_entry("unit", &Pairs(&units))?;
        }
        m.end()
    }
}

/// `{"bad": {point: reason}?, "t", "v": {point: value}}`.
struct Read<'a>(&'a DeviceGroup, &'a ReadGroup);

impl Serialize for Read<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (g, r) = (self.0, self.1);
        let name = |i: usize| g.points.get(i).map_or("", |(p, _)| &**p);
        let values = by_name(r.items.iter().filter_map(|(i, item)| match item {
            Ok(v) => Some((name(*i), Val(v))),
            Err(_) => None,
        }));
        let bad = by_name(r.items.iter().filter_map(|(i, item)| match item {
            Ok(_) => None,
            Err(why) => Some((name(*i), why.as_str())),
        }));
        let mut m = s.serialize_map(None)?;
        if !bad.is_empty() {
            m.serialize_entry("bad", &Pairs(&bad))?;
        }
        m.serialize_entry("t", &rfc3339_ms(r.t_ms))?;
        m.serialize_entry("v", &Pairs(&values))?;
        m.end()
    }
}

/// Key/value pairs in the order and with the one value per key a `serde_json::Map` (a
/// `BTreeMap`) keeps when they are inserted in this order: sorted by key, the last of equal
/// keys.
fn by_name<'a, V>(pairs: impl Iterator<Item = (&'a str, V)>) -> Vec<(&'a str, V)> {
    let mut v: Vec<(&str, V)> = pairs.collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<(&str, V)> = Vec::with_capacity(v.len());
    for (k, x) in v {
        match out.last_mut() {
            Some(last) if last.0 == k => *last = (k, x),
            _ => out.push((k, x)),
        }
    }
    out
}

/// A JSON object of the pairs, in their order.
struct Pairs<'a, V>(&'a [(&'a str, V)]);

impl<V: Serialize> Serialize for Pairs<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A reading's value as `value_json` writes it.
struct Val<'a>(&'a Value);

impl Serialize for Val<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Float(x) if x.is_nan() => s.serialize_str("NaN"),
            Value::Float(x) if x.is_infinite() => {
                s.serialize_str(if *x > 0.0 { "inf" } else { "-inf" })
            }
            Value::Float(x) => s.serialize_f64(meant(*x)),
            Value::Text(t) => s.serialize_str(t),
        }
    }
}
