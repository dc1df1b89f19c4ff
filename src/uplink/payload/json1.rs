//! Format 1 JSON `data` messages written straight from the packed device groups (pure core, no
//! I/O): the bytes `serde_json` gives for the documented object (keys in byte order, as its
//! `Map` sorts them; floats by the `meant` rule), without building a `serde_json::Value` tree
//! first. The packer measures every message it tries (`Packed::worst_len`): each device
//! object is written once per change of its group and kept in the group, `len` adds their
//! lengths and `to_vec` joins them into the message (issue 13: the
//! tree of maps, cloned point names and formatted floats was the largest CPU cost per
//! reading, bench-results/cpu_round7.txt). The device objects are written straight to bytes
//! (`device_bytes`: names sorted and escaped once per object, numbers through `zmij` as
//! `serde_json` formats them), not through serde's `Serializer`; the `Serialize` structs
//! remain for `whole`, the reference the direct writer is pinned to. `payload_tests` pins the
//! bytes to the tree's.

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
    g.json.get_or_write(|| device_bytes(g)).map(Vec::as_slice)
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

/// A writer that only counts (also `v2::len`'s).
pub(super) struct Count(pub(super) usize);

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

/// A group's device object written straight to bytes: the very bytes `serde_json` writes for
/// `Device` (pinned in json1_tests), without its `Serializer`. The point names are sorted and
/// written as keys once per object (`Names`), each read's items sorted by those ranks in one
/// scratch vector the object's reads share. A read naming a point the group does not have
/// (the packer never makes one) is left to `Device`; `None` only where it fails (it cannot).
pub(super) fn device_bytes(g: &DeviceGroup) -> Option<Vec<u8>> {
    let n = g.points.len();
    if g.reads.iter().any(|r| r.items.iter().any(|(i, _)| *i >= n)) {
        return serde_json::to_vec(&Device(g)).ok();
    }
    let names = Names::of(g);
    let items: usize = g.reads.iter().map(|r| r.items.len()).sum();
    let mut out = Vec::with_capacity(
        32 + g.device.len() + names.keys.len() + g.reads.len() * 48 + items * 24,
    );
    out.extend_from_slice(b"{\"dev\":");
    write_str(&mut out, &g.device);
    out.extend_from_slice(b",\"reads\":[");
    let mut scratch = Vec::new();
    let mut day = Day::default();
    let mut read = |k: usize, r: &ReadGroup| {
        if k > 0 {
            out.push(b',');
        }
        write_read(&mut out, &names, r, &mut scratch, &mut day);
    };
    if g.reads.is_sorted_by_key(|r| r.t_ms) {
        g.reads.iter().enumerate().for_each(|(k, r)| read(k, r));
    } else {
        sorted_reads(g)
            .into_iter()
            .enumerate()
            .for_each(|(k, r)| read(k, r));
    }
    out.push(b']');
    if g.points.iter().any(|(_, u)| u.is_some()) {
        out.extend_from_slice(b",\"unit\":{");
        let mut first = true;
        for (k, &i) in names.order.iter().enumerate() {
            let Some(unit) = &g.points[i].1 else {
                continue;
            };
            // The last of equal names wins, as in a `Map`.
            let rank = names.at[i].rank;
            let later = names.order[k + 1..]
                .iter()
                .take_while(|&&j| names.at[j].rank == rank)
                .any(|&j| g.points[j].1.is_some());
            if later {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(names.key(i));
            write_str(&mut out, unit);
        }
        out.push(b'}');
    }
    out.push(b'}');
    Some(out)
}

/// The reference `device_bytes` is pinned to: `Device` through `serde_json`.
#[cfg(test)]
pub(super) fn device_reference(g: &DeviceGroup) -> Option<Vec<u8>> {
    serde_json::to_vec(&Device(g)).ok()
}

/// A group's point names in the order of an object's keys, each written once as a key.
struct Names {
    /// Per point index: its rank in byte order of the names (equal names share one) and where
    /// its key (`"name":`) is in `keys`.
    at: Vec<Key>,
    keys: Vec<u8>,
    /// The point indices sorted by name, equal names by index.
    order: Vec<usize>,
}

#[derive(Clone, Copy, Default)]
struct Key {
    rank: usize,
    start: usize,
    end: usize,
}

impl Names {
    fn of(g: &DeviceGroup) -> Names {
        let p = &g.points;
        let mut order: Vec<usize> = (0..p.len()).collect();
        // Points are mostly in name order already; a stable sort keeps equal names by index.
        if !p.is_sorted_by(|a, b| a.0 <= b.0) {
            order.sort_by(|&a, &b| p[a].0.cmp(&p[b].0));
        }
        let mut at = vec![Key::default(); p.len()];
        let mut keys = Vec::with_capacity(p.iter().map(|(n, _)| n.len() + 3).sum());
        let mut last: Option<(&str, Key)> = None;
        for &i in &order {
            let name = &*p[i].0;
            let key = match last {
                Some((prev, key)) if prev == name => key,
                _ => {
                    let start = keys.len();
                    write_str(&mut keys, name);
                    keys.push(b':');
                    Key {
                        rank: last.map_or(0, |(_, k)| k.rank + 1),
                        start,
                        end: keys.len(),
                    }
                }
            };
            at[i] = key;
            last = Some((name, key));
        }
        Names { at, keys, order }
    }

    /// Point `i`'s key, `"name":`.
    fn key(&self, i: usize) -> &[u8] {
        let k = self.at[i];
        &self.keys[k.start..k.end]
    }
}

/// One read, `{"bad": {point: reason}?, "t", "v": {point: value}}`. `scratch` gets the read's
/// (name rank, item position) pairs in key order.
fn write_read(
    out: &mut Vec<u8>,
    names: &Names,
    r: &ReadGroup,
    scratch: &mut Vec<(usize, usize)>,
    day: &mut Day,
) {
    scratch.clear();
    scratch.extend(
        r.items
            .iter()
            .enumerate()
            .map(|(pos, (i, _))| (names.at[*i].rank, pos)),
    );
    if !scratch.is_sorted() {
        scratch.sort_unstable();
    }
    out.push(b'{');
    if r.items.iter().any(|(_, item)| item.is_err()) {
        out.extend_from_slice(b"\"bad\":");
        write_pairs(out, names, &r.items, scratch, false);
        out.push(b',');
    }
    out.extend_from_slice(b"\"t\":");
    day.write(out, r.t_ms);
    out.extend_from_slice(b",\"v\":");
    write_pairs(out, names, &r.items, scratch, true);
    out.push(b'}');
}

/// The values (`ok`) or the bad reasons of a read's items as an object, in the key order of
/// `sorted` (from `write_read`), the last of equal names winning as in a `Map`.
fn write_pairs(
    out: &mut Vec<u8>,
    names: &Names,
    items: &[(usize, Result<Value, String>)],
    sorted: &[(usize, usize)],
    ok: bool,
) {
    out.push(b'{');
    let mut first = true;
    for (k, &(rank, pos)) in sorted.iter().enumerate() {
        let (i, item) = &items[pos];
        if item.is_ok() != ok {
            continue;
        }
        let later = sorted[k + 1..]
            .iter()
            .take_while(|&&(r, _)| r == rank)
            .any(|&(_, q)| items[q].1.is_ok() == ok);
        if later {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(names.key(*i));
        match item {
            Ok(v) => write_value(out, v),
            Err(why) => write_str(out, why),
        }
    }
    out.push(b'}');
}

/// A reading's value as `Val` serializes it.
pub(super) fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => write_i64(out, *i),
        Value::UInt(u) => write_u64(out, *u),
        Value::Float(x) if x.is_nan() => out.extend_from_slice(b"\"NaN\""),
        Value::Float(x) if x.is_infinite() => {
            out.extend_from_slice(if *x > 0.0 { b"\"inf\"" } else { b"\"-inf\"" })
        }
        Value::Float(x) => FLOATS.with(|f| f.borrow_mut().write(out, *x)),
        Value::Text(t) => write_str(out, t),
    }
}

/// A finite float as written: `serde_json`'s bytes for `meant(x)` (its `write_f64`, at most
/// 24 bytes), or `null` where `meant` is not finite.
#[derive(Clone, Copy)]
struct Formatted {
    len: u8,
    bytes: [u8; 24],
}

/// Formatted floats, each formatted once: the packer writes every format-2 message several
/// times while it measures, and `meant` with the formatting was a seventh of a format-2 JSON
/// run's instructions (issue 13). Keyed by the float's bits; a pure cache (the bytes are a
/// function of the bits).
#[derive(Default)]
struct Floats(std::collections::HashMap<u64, Formatted, foldhash::fast::RandomState>);

/// Entries a thread's `Floats` keeps before it starts afresh (a W1 poll cycle has 200 floats:
/// the builds of one pack find theirs, and the cache stays ~16 KiB).
const FLOATS_KEPT: usize = 512;

thread_local! {
    static FLOATS: std::cell::RefCell<Floats> = std::cell::RefCell::default();
}

impl Floats {
    fn write(&mut self, out: &mut Vec<u8>, x: f64) {
        let key = x.to_bits();
        if let Some(f) = self.0.get(&key) {
            out.extend_from_slice(&f.bytes[..usize::from(f.len)]);
            return;
        }
        let m = meant(x);
        let start = out.len();
        if m.is_finite() {
            // What `serde_json` writes for a finite f64 (its `write_f64`).
            out.extend_from_slice(zmij::Buffer::new().format_finite(m).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
        let written = &out[start..];
        if written.len() <= 24 {
            if self.0.len() >= FLOATS_KEPT {
                self.0.clear();
            }
            let mut bytes = [0u8; 24];
            bytes[..written.len()].copy_from_slice(written);
            let len = written.len() as u8;
            self.0.insert(key, Formatted { len, bytes });
        }
    }
}

/// `i` in decimal, as `serde_json` writes an i64.
pub(super) fn write_i64(out: &mut Vec<u8>, i: i64) {
    if i < 0 {
        out.push(b'-');
    }
    write_u64(out, i.unsigned_abs());
}

/// `u` in decimal.
pub(super) fn write_u64(out: &mut Vec<u8>, u: u64) {
    let mut b = [0u8; 20];
    let mut at = b.len();
    let mut u = u;
    loop {
        at -= 1;
        b[at] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    out.extend_from_slice(&b[at..]);
}

/// `s` as a JSON string, escaped as `serde_json` escapes it (`format_escaped_str`): `\"`,
/// `\\`, `\b \t \n \f \r`, other control characters `\u00xx`, everything else verbatim.
pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.push(b'"');
    if b.iter().all(|&c| escape(c) == 0) {
        out.extend_from_slice(b);
    } else {
        let mut run = 0;
        for (k, &c) in b.iter().enumerate() {
            let e = escape(c);
            if e == 0 {
                continue;
            }
            out.extend_from_slice(&b[run..k]);
            run = k + 1;
            if e == b'u' {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 0xf)]);
            } else {
                out.push(b'\\');
                out.push(e);
            }
        }
        out.extend_from_slice(&b[run..]);
    }
    out.push(b'"');
}

/// How `serde_json` escapes byte `c` (its `ESCAPE` table): 0 for not at all, `u` for `\u00xx`,
/// else the letter after the backslash.
fn escape(c: u8) -> u8 {
    match c {
        0x08 => b'b',
        0x09 => b't',
        0x0a => b'n',
        0x0c => b'f',
        0x0d => b'r',
        b'"' => b'"',
        b'\\' => b'\\',
        0..=0x1f => b'u',
        _ => 0,
    }
}

/// Read times as `rfc3339_ms` writes them, that function called once per UTC day of an
/// object's reads: within the day only the time of day changes (`HH:MM:SS.mmmZ`, the last 13
/// bytes in every form `rfc3339_ms` writes), written here by hand.
#[derive(Default)]
struct Day {
    /// The day (ms since the epoch divided by a day's ms, floored) `date` belongs to.
    day: Option<i64>,
    /// Its date part, up to and including the `T`.
    date: String,
}

const MS_PER_DAY: i64 = 86_400_000;
const TIME_OF_DAY_LEN: usize = "HH:MM:SS.mmmZ".len();

impl Day {
    fn write(&mut self, out: &mut Vec<u8>, t_ms: i64) {
        let day = t_ms.div_euclid(MS_PER_DAY);
        if self.day != Some(day) {
            let mut s = rfc3339_ms(t_ms);
            write_str(out, &s);
            let cut = s.len().saturating_sub(TIME_OF_DAY_LEN);
            let date = s.get(..cut).unwrap_or_default();
            // Kept only in the expected form, and only if it needs no escape (it never does).
            if date.ends_with('T') && date.bytes().all(|c| escape(c) == 0) {
                s.truncate(cut);
                self.date = s;
                self.day = Some(day);
            } else {
                self.day = None;
            }
            return;
        }
        // 0 <= ms < 86_400_000: the same `civil` computes from the whole seconds.
        let ms = t_ms.rem_euclid(MS_PER_DAY);
        let mut b = *b"00:00:00.000Z";
        let mut put = |at: usize, v: i64, n: usize| {
            let mut v = v;
            for k in (at..at + n).rev() {
                b[k] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, ms / 3_600_000, 2);
        put(3, ms / 60_000 % 60, 2);
        put(6, ms / 1000 % 60, 2);
        put(9, ms % 1000, 3);
        out.push(b'"');
        out.extend_from_slice(self.date.as_bytes());
        out.extend_from_slice(&b);
        out.push(b'"');
    }
}
