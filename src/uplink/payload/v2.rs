//! Format 2 of `data` messages (`uplink.format = 2`, pure core): the writer of the compact,
//! versioned layout of docs/mqtt.md ("Data messages, format 2"), in JSON and in CBOR. One base
//! time per message and one ms offset per device read; point names and units once per message
//! in a schema table that every device with the same point list shares; values positional. In
//! CBOR a float reading is a decimal (`decimal::Decimal::of`, the Numbers rule) written as an
//! integer mantissa at the point's exponent (in the schema), and integer slots of a point are
//! delta-coded against its previous read in the same device entry. The reader is
//! `v2_decode`; keep both and the document in step.

use std::sync::Arc;

#[cfg(test)]
use ciborium::Value as Cbor;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
#[cfg(test)]
use serde_json::{Map, Value as Json};

#[cfg(test)]
use super::value_json;
use super::{sorted_reads, value_cbor, CodecError, DeviceGroup, ReadGroup};
use crate::config::Encoding;
use crate::decimal::Decimal;
use crate::model::Value;

/// Largest magnitude of an integer slot's absolute value (mantissa or integer): 2^53, so a
/// delta is at most 2^54 and any consumer can add it in a double or an i64.
pub(super) const MAX_SLOT: i128 = 1 << 53;

/// How the values of one point are written in a CBOR message (the schema's `scale` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `null`: every value as it is (no scaling, no delta).
    Literal,
    /// An integer `e`: float readings as integer mantissas at 10^e, delta-coded; a value that
    /// does not fit (non-finite, -0.0, too many digits) is a literal float.
    Decimal(i32),
    /// `true`: integer readings, delta-coded.
    Integer,
}

/// Devices grouped by their point list (names and units, in order): one schema each, in
/// first-seen order.
struct Schema<'a> {
    points: &'a [(Arc<str>, Option<Arc<str>>)],
    devices: Vec<&'a DeviceGroup>,
}

fn schemas(devices: &[DeviceGroup]) -> Vec<Schema<'_>> {
    let mut out: Vec<Schema<'_>> = Vec::new();
    for g in devices.iter().filter(|g| !g.reads.is_empty()) {
        match out.iter_mut().find(|s| s.points == g.points.as_slice()) {
            Some(s) => s.devices.push(g),
            None => out.push(Schema {
                points: &g.points,
                devices: vec![g],
            }),
        }
    }
    out
}

/// Earliest read time of the message (every offset is from it, so none is negative).
fn base_ms(devices: &[DeviceGroup]) -> i64 {
    devices
        .iter()
        .flat_map(|g| g.reads.iter().map(|r| r.t_ms))
        .min()
        .unwrap_or(0)
}

/// The values of one read in point order (`None`: not read at this time, or bad), and the bad
/// points with their reasons.
fn slots(n: usize, r: &ReadGroup) -> (Vec<Option<&Value>>, Vec<(usize, &str)>) {
    let mut vals = vec![None; n];
    let mut bad = Vec::new();
    for (i, item) in &r.items {
        match item {
            Ok(v) => {
                if let Some(s) = vals.get_mut(*i) {
                    *s = Some(v);
                }
            }
            Err(reason) => bad.push((*i, reason.as_str())),
        }
    }
    (vals, bad)
}

pub(super) fn build(
    encoding: Encoding,
    gateway: &str,
    seq: u64,
    historical: bool,
    devices: &[DeviceGroup],
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    match encoding {
        Encoding::Json => json_write(&mut out, gateway, seq, historical, devices),
        Encoding::Cbor => {
            Decimals::with(|dec| cbor_write(gateway, seq, historical, devices, dec, &mut out))?
        }
    }
    Ok(out)
}

thread_local! {
    /// Where `len` writes a JSON message it only measures (kept between calls: no allocation
    /// per measurement once it has grown to a message's size).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The length of `build`'s bytes, never kept: the packer measures every message it tries
/// (issue 13). CBOR is counted as it is written; JSON is written to a scratch buffer the
/// thread keeps.
pub(super) fn len(
    encoding: Encoding,
    gateway: &str,
    seq: u64,
    historical: bool,
    devices: &[DeviceGroup],
) -> Result<usize, CodecError> {
    match encoding {
        Encoding::Json => Ok(SCRATCH.with(|b| {
            let mut b = b.borrow_mut();
            b.clear();
            json_write(&mut b, gateway, seq, historical, devices);
            let n = b.len();
            // A rare huge message leaves no huge buffer behind.
            if b.capacity() > 1 << 20 {
                *b = Vec::new();
            }
            n
        })),
        Encoding::Cbor => {
            let mut n = super::json1::Count(0);
            Decimals::with(|dec| cbor_write(gateway, seq, historical, devices, dec, &mut n))?;
            Ok(n.0)
        }
    }
}

/// The CBOR message `data_cbor` describes, written straight from the device groups: no
/// `ciborium::Value` tree. The packer measures every message it tries by building it, and
/// building and dropping the tree was ~30 % of a format-2 CBOR run's instructions (issue 13,
/// bench-results/cpu_round10.txt). Every item goes through ciborium's serializer exactly as
/// the tree's `Serialize` sends it (definite lengths, the shortest integer heads, floats
/// narrowed only when lossless), so the bytes are the tree's: `data_cbor` is kept as the
/// reference the tests pin them to (`v2_tests`).
fn cbor_write<W: std::io::Write>(
    gateway: &str,
    seq: u64,
    historical: bool,
    devices: &[DeviceGroup],
    dec: &std::cell::RefCell<Decimals>,
    out: W,
) -> Result<(), CodecError> {
    let sch: Vec<(Schema<'_>, Vec<Kind>)> = schemas(devices)
        .into_iter()
        .map(|s| {
            let kinds = kinds_of(&s, &mut dec.borrow_mut());
            (s, kinds)
        })
        .collect();
    let msg = CborMsg {
        gateway,
        seq,
        historical,
        base: base_ms(devices),
        sch: &sch,
        dec,
    };
    ciborium::into_writer(&msg, out).map_err(|e| CodecError::Encode(e.to_string()))
}

/// `{0: gw, 1: seq, 2: hist, 3: base ms, 5: [schema]}`.
struct CborMsg<'a> {
    gateway: &'a str,
    seq: u64,
    historical: bool,
    base: i64,
    sch: &'a [(Schema<'a>, Vec<Kind>)],
    /// The decimals (`kinds_of` filled them in; the slots read them again).
    dec: &'a std::cell::RefCell<Decimals>,
}

impl Serialize for CborMsg<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry(&0u8, self.gateway)?;
        m.serialize_entry(&1u8, &self.seq)?;
        m.serialize_entry(&2u8, &self.historical)?;
        m.serialize_entry(&3u8, &self.base)?;
        m.serialize_entry(
            &5u8,
            &Items(self.sch.len(), || {
                self.sch.iter().map(|(schema, kinds)| CborSchema {
                    schema,
                    kinds,
                    base: self.base,
                    dec: self.dec,
                })
            }),
        )?;
        m.end()
    }
}

/// A definite-length CBOR array of `.0` items, made by `.1` (called once).
struct Items<F>(usize, F);

impl<F, I> Serialize for Items<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(Some(self.0))?;
        for x in (self.1)() {
            q.serialize_element(&x)?;
        }
        q.end()
    }
}

/// `[[names], [units]|null, [scale]|null, [device]]`.
struct CborSchema<'a> {
    schema: &'a Schema<'a>,
    kinds: &'a [Kind],
    base: i64,
    dec: &'a std::cell::RefCell<Decimals>,
}

impl Serialize for CborSchema<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let points = self.schema.points;
        let mut q = s.serialize_seq(Some(4))?;
        q.serialize_element(&Items(points.len(), || points.iter().map(|(p, _)| &**p)))?;
        if points.iter().any(|(_, u)| u.is_some()) {
            q.serialize_element(&Items(points.len(), || {
                points.iter().map(|(_, u)| u.as_deref())
            }))?;
        } else {
            q.serialize_element(&())?;
        }
        if self.kinds.iter().all(|k| *k == Kind::Literal) {
            q.serialize_element(&())?;
        } else {
            q.serialize_element(&Items(self.kinds.len(), || {
                self.kinds.iter().map(|k| KindItem(*k))
            }))?;
        }
        let devices = &self.schema.devices;
        q.serialize_element(&Items(devices.len(), || {
            devices.iter().map(|g| CborDevice {
                g,
                kinds: self.kinds,
                base: self.base,
                dec: self.dec,
            })
        }))?;
        q.end()
    }
}

/// A point's `scale` entry: `null`, its exponent, or `true`.
struct KindItem(Kind);

impl Serialize for KindItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Kind::Literal => s.serialize_unit(),
            Kind::Decimal(e) => s.serialize_i32(e),
            Kind::Integer => s.serialize_bool(true),
        }
    }
}

/// `[name, dt, v…, {index: reason}?, dt, v…]`.
struct CborDevice<'a> {
    g: &'a DeviceGroup,
    kinds: &'a [Kind],
    base: i64,
    dec: &'a std::cell::RefCell<Decimals>,
}

impl Serialize for CborDevice<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.kinds.len();
        let reads = sorted_reads(self.g);
        let len = 1 + reads
            .iter()
            .map(|r| 1 + n + usize::from(r.items.iter().any(|(_, it)| it.is_err())))
            .sum::<usize>();
        let mut dec = self.dec.borrow_mut();
        let mut prev = vec![0i128; n];
        let mut q = s.serialize_seq(Some(len))?;
        q.serialize_element(&*self.g.device)?;
        for r in reads {
            q.serialize_element(&r.t_ms.saturating_sub(self.base))?;
            let (vals, bad) = slots(n, r);
            for ((v, kind), prev) in vals.into_iter().zip(self.kinds).zip(&mut prev) {
                match v.map(|v| (v, slot_delta(v, *kind, prev, &mut dec))) {
                    None => q.serialize_element(&())?,
                    Some((_, Some(delta))) => q.serialize_element(&delta)?,
                    Some((v, None)) => q.serialize_element(&value_cbor(v))?,
                }
            }
            if !bad.is_empty() {
                q.serialize_element(&BadMap(&bad))?;
            }
        }
        q.end()
    }
}

/// `{index: reason}` of one read's bad points.
struct BadMap<'a>(&'a [(usize, &'a str)]);

impl Serialize for BadMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (i, why) in self.0 {
            m.serialize_entry(&(*i as u64), why)?;
        }
        m.end()
    }
}

/// The JSON message `data_json` describes, written straight to bytes: no `serde_json::Value`
/// tree (building, serializing and dropping it was about half of a format-2 JSON run's
/// instructions, issue 13). Keys in byte order as `serde_json`'s `Map` sorts them, values and
/// strings through json1's writers (pinned to `serde_json`'s bytes there); `data_json` stays
/// as the reference the tests pin these bytes to (`v2_tests`).
fn json_write(
    out: &mut Vec<u8>,
    gateway: &str,
    seq: u64,
    historical: bool,
    devices: &[DeviceGroup],
) {
    use super::json1::{write_i64, write_str, write_u64};
    let base = base_ms(devices);
    out.extend_from_slice(b"{\"gw\":");
    write_str(out, gateway);
    out.extend_from_slice(if historical {
        b",\"hist\":true,\"sch\":["
    } else {
        b",\"hist\":false,\"sch\":["
    });
    let mut scratch: Vec<(&str, &str)> = Vec::new();
    for (k, s) in schemas(devices).into_iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"dev\":[");
        for (j, g) in s.devices.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            json_device(out, g, s.points, base, &mut scratch);
        }
        out.extend_from_slice(b"],\"pts\":");
        json_strings(out, s.points.iter().map(|(p, _)| Some(&**p)));
        if s.points.iter().any(|(_, u)| u.is_some()) {
            out.extend_from_slice(b",\"unit\":");
            json_strings(out, s.points.iter().map(|(_, u)| u.as_deref()));
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"seq\":");
    write_u64(out, seq);
    out.extend_from_slice(b",\"t\":");
    write_i64(out, base);
    out.extend_from_slice(b",\"v\":2}");
}

/// One device entry, `[name, dt, v…, {bad}?, dt, v…]`; `scratch` holds a read's bad points.
fn json_device<'a>(
    out: &mut Vec<u8>,
    g: &'a DeviceGroup,
    points: &'a [super::PointName],
    base: i64,
    scratch: &mut Vec<(&'a str, &'a str)>,
) {
    use super::json1::{write_i64, write_str, write_value};
    out.push(b'[');
    write_str(out, &g.device);
    for r in sorted_reads(g) {
        out.push(b',');
        write_i64(out, r.t_ms.saturating_sub(base));
        let (vals, bad) = slots(points.len(), r);
        for v in vals {
            out.push(b',');
            match v {
                Some(v) => write_value(out, v),
                None => out.extend_from_slice(b"null"),
            }
        }
        if bad.is_empty() {
            continue;
        }
        // As a `Map` collects them: by name, the last of equal names winning.
        scratch.clear();
        scratch.extend(bad.iter().map(|&(i, why)| (&*points[i].0, why)));
        scratch.sort_by(|a, b| a.0.cmp(b.0));
        out.extend_from_slice(b",{");
        let mut first = true;
        for (m, &(name, why)) in scratch.iter().enumerate() {
            if scratch.get(m + 1).is_some_and(|next| next.0 == name) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(out, name);
            out.push(b':');
            write_str(out, why);
        }
        out.push(b'}');
    }
    out.push(b']');
}

/// `[s, …]`, `None` as `null`.
fn json_strings<'s>(out: &mut Vec<u8>, items: impl Iterator<Item = Option<&'s str>>) {
    out.push(b'[');
    for (j, item) in items.enumerate() {
        if j > 0 {
            out.push(b',');
        }
        match item {
            Some(t) => super::json1::write_str(out, t),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b']');
}

/// `{"v":2,"gw","seq","hist","t": base ms,"sch":[{"pts":[…],"unit":[…]?,"dev":[[name, dt,
/// v…, {bad}?, dt, v…]]}]}` as a value tree: the reference `json_write`'s bytes are pinned to.
#[cfg(test)]
pub(super) fn data_json(
    gateway: &str,
    seq: u64,
    historical: bool,
    devices: &[DeviceGroup],
) -> Json {
    let base = base_ms(devices);
    let sch: Vec<Json> = schemas(devices)
        .into_iter()
        .map(|s| {
            let n = s.points.len();
            let mut o = Map::new();
            o.insert(
                "pts".into(),
                s.points.iter().map(|(p, _)| Json::from(&**p)).collect(),
            );
            if s.points.iter().any(|(_, u)| u.is_some()) {
                o.insert(
                    "unit".into(),
                    s.points
                        .iter()
                        .map(|(_, u)| u.as_deref().map_or(Json::Null, Json::from))
                        .collect(),
                );
            }
            let devs: Vec<Json> = s
                .devices
                .iter()
                .map(|g| {
                    let mut a = vec![Json::from(&*g.device)];
                    for r in sorted_reads(g) {
                        a.push(Json::from(r.t_ms.saturating_sub(base)));
                        let (vals, bad) = slots(n, r);
                        a.extend(vals.into_iter().map(|v| v.map_or(Json::Null, value_json)));
                        if !bad.is_empty() {
                            let m: Map<String, Json> = bad
                                .into_iter()
                                .map(|(i, why)| (s.points[i].0.to_string(), Json::from(why)))
                                .collect();
                            a.push(Json::Object(m));
                        }
                    }
                    Json::Array(a)
                })
                .collect();
            o.insert("dev".into(), Json::Array(devs));
            Json::Object(o)
        })
        .collect();
    let mut m = Map::new();
    m.insert("v".into(), Json::from(2));
    m.insert("gw".into(), Json::from(gateway));
    m.insert("seq".into(), Json::from(seq));
    m.insert("hist".into(), Json::Bool(historical));
    m.insert("t".into(), Json::from(base));
    m.insert("sch".into(), Json::Array(sch));
    Json::Object(m)
}

/// The decimal `x` stands for (`d`, its `Decimal::of`) as a mantissa at 10^`e` (`None`: does
/// not fit a slot).
fn scaled(x: f64, d: Option<Decimal>, e: i32) -> Option<i128> {
    if x == 0.0 && x.is_sign_negative() {
        return None;
    }
    let d = d?;
    let shift = u32::try_from(d.exponent.checked_sub(e)?).ok()?;
    let m = d.mantissa.checked_mul(10i128.checked_pow(shift)?)?;
    (m.abs() <= MAX_SLOT).then_some(m)
}

/// `Decimal::of` of floats, each computed once: the schema's exponent and the value's slot
/// both need it, and the packer builds each message several times while it measures (it was
/// a sixth of a format-2 CBOR seal's instructions, issue 13). Keyed by the float's bits.
#[derive(Default)]
struct Decimals(std::collections::HashMap<u64, Option<Decimal>, foldhash::fast::RandomState>);

/// Entries a thread's `Decimals` keeps before it starts afresh: a W1 poll cycle has 200
/// floats, so the builds of one pack (and the seal's final build) find theirs, and the cache
/// stays a few tens of KiB.
const DECIMALS_KEPT: usize = 512;

thread_local! {
    /// The decimals of this thread's recent builds (a pure cache: `Decimal::of` is a function
    /// of the float's bits, so a hit gives what computing it again gives).
    static DECIMALS: std::cell::RefCell<Decimals> = std::cell::RefCell::default();
}

impl Decimals {
    fn of(&mut self, x: f64) -> Option<Decimal> {
        if self.0.len() >= DECIMALS_KEPT && !self.0.contains_key(&x.to_bits()) {
            self.0.clear();
        }
        *self.0.entry(x.to_bits()).or_insert_with(|| Decimal::of(x))
    }

    /// `f` with this thread's cache.
    fn with<R>(f: impl FnOnce(&std::cell::RefCell<Decimals>) -> R) -> R {
        DECIMALS.with(|d| f(d))
    }
}

/// What the values of one point in one device group are (`kinds_of` merges a schema's).
#[derive(Debug, Clone, Default)]
pub(super) struct Seen {
    floats: usize,
    ints: usize,
    others: usize,
    /// The smallest exponent of the non-zero floats' decimals.
    exp: Option<i32>,
}

impl Seen {
    fn add(&mut self, v: &Value, dec: &mut Decimals) {
        match v {
            Value::Float(x) => {
                self.floats += 1;
                if let Some(d) = dec.of(*x).filter(|d| d.mantissa != 0) {
                    self.exp = Some(self.exp.map_or(d.exponent, |e| e.min(d.exponent)));
                }
            }
            Value::Int(v) if i128::from(*v).abs() <= MAX_SLOT => self.ints += 1,
            Value::UInt(v) if i128::from(*v) <= MAX_SLOT => self.ints += 1,
            _ => self.others += 1,
        }
    }

    fn merge(&mut self, o: &Seen) {
        self.floats += o.floats;
        self.ints += o.ints;
        self.others += o.others;
        self.exp = match (self.exp, o.exp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn kind(&self) -> Kind {
        match (self.floats, self.ints, self.others) {
            (f, 0, 0) if f > 0 => Kind::Decimal(self.exp.unwrap_or(0)),
            (0, i, 0) if i > 0 => Kind::Integer,
            _ => Kind::Literal,
        }
    }
}

/// One pass over `items` (of a group, or of a whole schema) into one `Seen` per point.
fn seen_of<'v>(
    n: usize,
    items: impl Iterator<Item = &'v (usize, Result<Value, String>)>,
    dec: &mut Decimals,
) -> Vec<Seen> {
    let mut seen = vec![Seen::default(); n];
    for (j, item) in items {
        if let (Ok(v), Some(p)) = (item, seen.get_mut(*j)) {
            p.add(v, dec);
        }
    }
    seen
}

/// The kind of each point of a schema, from every value it has in the message: each device
/// group's `Seen` (found once per group and kept in it, shared by its copies), merged.
fn kinds_of(s: &Schema<'_>, dec: &mut Decimals) -> Vec<Kind> {
    let n = s.points.len();
    let mut all = vec![Seen::default(); n];
    for g in &s.devices {
        let items = || g.reads.iter().flat_map(|r| r.items.iter());
        match g.seen.get_or_write(|| Some(seen_of(n, items(), dec))) {
            Some(seen) if seen.len() == n => all.iter_mut().zip(seen).for_each(|(a, b)| a.merge(b)),
            // (Cannot happen: the group's points are the schema's.)
            _ => all
                .iter_mut()
                .zip(seen_of(n, items(), dec))
                .for_each(|(a, b)| a.merge(&b)),
        }
    }
    all.iter().map(Seen::kind).collect()
}

/// `kinds_of` in one pass over the schema's values, nothing kept: the reference.
#[cfg(test)]
fn kinds_reference(s: &Schema<'_>, dec: &mut Decimals) -> Vec<Kind> {
    let items = s
        .devices
        .iter()
        .flat_map(|g| g.reads.iter().flat_map(|r| r.items.iter()));
    seen_of(s.points.len(), items, dec)
        .iter()
        .map(Seen::kind)
        .collect()
}

#[cfg(test)]
fn kind_cbor(k: Kind) -> Cbor {
    match k {
        Kind::Literal => Cbor::Null,
        Kind::Decimal(e) => Cbor::Integer(e.into()),
        Kind::Integer => Cbor::Bool(true),
    }
}

/// The delta an integer slot holds for `v` (and `prev` becomes `v`'s integer), or `None`: the
/// kind does not scale `v`, or `v` does not fit a slot, and it is written as it is. Slots are
/// at most `MAX_SLOT` in magnitude, so a delta always fits an i64.
fn slot_delta(v: &Value, kind: Kind, prev: &mut i128, dec: &mut Decimals) -> Option<i64> {
    let abs = match (kind, v) {
        (Kind::Decimal(e), Value::Float(x)) => scaled(*x, dec.of(*x), e),
        (Kind::Integer, Value::Int(i)) => Some(i128::from(*i)),
        (Kind::Integer, Value::UInt(u)) => Some(i128::from(*u)),
        _ => None,
    }?;
    let delta = i64::try_from(abs - *prev).ok()?;
    *prev = abs;
    Some(delta)
}

/// One value in its slot as a tree item (the reference writer).
#[cfg(test)]
fn slot_cbor(v: &Value, kind: Kind, prev: &mut i128, dec: &mut Decimals) -> Cbor {
    match slot_delta(v, kind, prev, dec) {
        Some(delta) => Cbor::Integer(delta.into()),
        None => value_cbor(v),
    }
}

/// `{0: gw, 1: seq, 2: hist, 3: base ms, 5: [schema]}`, schema `[[names], [units]|null,
/// [scale]|null, [device]]`, device `[name, dt, v…, {index: reason}?, dt, v…]`, as a value tree:
/// the reference `cbor_write`'s bytes are pinned to.
#[cfg(test)]
pub(super) fn data_cbor(
    gateway: &str,
    seq: u64,
    historical: bool,
    devices: &[DeviceGroup],
) -> Cbor {
    let base = base_ms(devices);
    let mut dec = Decimals::default();
    let sch: Vec<Cbor> = schemas(devices)
        .into_iter()
        .map(|s| {
            let n = s.points.len();
            let kinds = kinds_reference(&s, &mut dec);
            let names = s
                .points
                .iter()
                .map(|(p, _)| Cbor::Text(p.to_string()))
                .collect();
            let units = if s.points.iter().any(|(_, u)| u.is_some()) {
                Cbor::Array(
                    s.points
                        .iter()
                        .map(|(_, u)| u.as_deref().map_or(Cbor::Null, |u| Cbor::Text(u.into())))
                        .collect(),
                )
            } else {
                Cbor::Null
            };
            let scale = if kinds.iter().all(|k| *k == Kind::Literal) {
                Cbor::Null
            } else {
                Cbor::Array(kinds.iter().map(|k| kind_cbor(*k)).collect())
            };
            let devs = s
                .devices
                .iter()
                .map(|g| {
                    let mut prev = vec![0i128; n];
                    let mut a = vec![Cbor::Text(g.device.to_string())];
                    for r in sorted_reads(g) {
                        a.push(Cbor::Integer(r.t_ms.saturating_sub(base).into()));
                        let (vals, bad) = slots(n, r);
                        for (i, v) in vals.into_iter().enumerate() {
                            a.push(match v {
                                Some(v) => slot_cbor(v, kinds[i], &mut prev[i], &mut dec),
                                None => Cbor::Null,
                            });
                        }
                        if !bad.is_empty() {
                            a.push(Cbor::Map(
                                bad.into_iter()
                                    .map(|(i, why)| {
                                        (Cbor::Integer(i.into()), Cbor::Text(why.to_string()))
                                    })
                                    .collect(),
                            ));
                        }
                    }
                    Cbor::Array(a)
                })
                .collect();
            Cbor::Array(vec![Cbor::Array(names), units, scale, Cbor::Array(devs)])
        })
        .collect();
    Cbor::Map(vec![
        (Cbor::Integer(0.into()), Cbor::Text(gateway.to_string())),
        (Cbor::Integer(1.into()), Cbor::Integer(seq.into())),
        (Cbor::Integer(2.into()), Cbor::Bool(historical)),
        (Cbor::Integer(3.into()), Cbor::Integer(base.into())),
        (Cbor::Integer(5.into()), Cbor::Array(sch)),
    ])
}
