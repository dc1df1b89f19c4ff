//! The reader of format 2 `data` messages (pure core): JSON (`"v": 2`) and CBOR (key 5, the
//! schema table) turned into the documented JSON data form of format 1, so `gasdtu decode`
//! prints both formats alike (devices in schema order). Every shape error is a
//! `CodecError::Malformed` naming what was wrong; no input panics (integer slots are added
//! with checked arithmetic, indexes are bounds-checked).

use ciborium::Value as Cbor;
use serde_json::{json, Map, Value as Json};

use super::decode::cbor_value_json;
use super::{float_json, CodecError};
use crate::decimal::Decimal;
use crate::time::rfc3339_ms;

fn bad(what: &str) -> CodecError {
    CodecError::Malformed(format!("format 2 data message: {what}"))
}

/// One device entry being rebuilt in the format 1 shape.
struct Out<'a> {
    names: &'a [String],
    units: &'a [Option<String>],
    reads: Vec<Json>,
}

impl Out<'_> {
    fn read(&mut self, t: i64, values: Map<String, Json>, bad: Map<String, Json>) {
        let mut o = Map::new();
        o.insert("t".into(), Json::from(rfc3339_ms(t)));
        o.insert("v".into(), Json::Object(values));
        if !bad.is_empty() {
            o.insert("bad".into(), Json::Object(bad));
        }
        self.reads.push(Json::Object(o));
    }

    fn finish(self, name: &str) -> Json {
        let mut dev = Map::new();
        dev.insert("dev".into(), Json::from(name));
        let unit: Map<String, Json> = self
            .names
            .iter()
            .zip(self.units)
            .filter_map(|(n, u)| u.as_ref().map(|u| (n.clone(), Json::from(u.as_str()))))
            .collect();
        if !unit.is_empty() {
            dev.insert("unit".into(), Json::Object(unit));
        }
        dev.insert("reads".into(), Json::Array(self.reads));
        Json::Object(dev)
    }
}

fn add_time(base: i64, dt: Option<i64>) -> Result<i64, CodecError> {
    let dt = dt.ok_or_else(|| bad("read offset is not an integer"))?;
    base.checked_add(dt)
        .ok_or_else(|| bad("read time out of range"))
}

/// A JSON format 2 message (`"v": 2`) in the format 1 shape.
pub(super) fn json_v2(m: &Map<String, Json>) -> Result<Json, CodecError> {
    let gw = m
        .get("gw")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("no `gw` text"))?;
    let seq = m
        .get("seq")
        .and_then(Json::as_u64)
        .ok_or_else(|| bad("no `seq` unsigned integer"))?;
    let hist = m
        .get("hist")
        .and_then(Json::as_bool)
        .ok_or_else(|| bad("no `hist` boolean"))?;
    let base = m
        .get("t")
        .and_then(Json::as_i64)
        .ok_or_else(|| bad("no `t` (base time, ms) integer"))?;
    let Some(Json::Array(sch)) = m.get("sch") else {
        return Err(bad("no `sch` array"));
    };
    let mut data = Vec::new();
    for s in sch {
        let Json::Object(s) = s else {
            return Err(bad("schema is not an object"));
        };
        let names: Vec<String> = match s.get("pts") {
            Some(Json::Array(a)) => a
                .iter()
                .map(|n| n.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("point name is not text"))?,
            _ => return Err(bad("schema without a `pts` array")),
        };
        let units: Vec<Option<String>> = match s.get("unit") {
            None => vec![None; names.len()],
            Some(Json::Array(a)) if a.len() == names.len() => a
                .iter()
                .map(|u| match u {
                    Json::Null => Ok(None),
                    Json::String(u) => Ok(Some(u.clone())),
                    _ => Err(bad("unit is neither text nor null")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("`unit` is not an array as long as `pts`")),
        };
        let Some(Json::Array(devs)) = s.get("dev") else {
            return Err(bad("schema without a `dev` array"));
        };
        for d in devs {
            let Some((Json::String(name), rest)) = d.as_array().and_then(|a| a.split_first())
            else {
                return Err(bad("device entry is not [name, …]"));
            };
            let mut out = Out {
                names: &names,
                units: &units,
                reads: Vec::new(),
            };
            let mut it = rest.iter().peekable();
            while let Some(dt) = it.next() {
                let t = add_time(base, dt.as_i64())?;
                let mut values = Map::new();
                for n in &names {
                    match it.next() {
                        Some(Json::Null) => {}
                        Some(Json::Object(_) | Json::Array(_)) | None => {
                            return Err(bad("a read has fewer values than points"))
                        }
                        Some(v) => {
                            values.insert(n.clone(), v.clone());
                        }
                    }
                }
                let mut bads = Map::new();
                if let Some(Json::Object(b)) = it.peek() {
                    for (k, why) in b {
                        if !names.contains(k) || !why.is_string() {
                            return Err(bad("bad entry is not point name → reason text"));
                        }
                        bads.insert(k.clone(), why.clone());
                    }
                    it.next();
                }
                out.read(t, values, bads);
            }
            data.push(out.finish(name));
        }
    }
    Ok(json!({"gw": gw, "seq": seq, "hist": hist, "data": data}))
}

/// How a CBOR schema writes the values of one point (`v2::Kind`).
#[derive(Clone, Copy)]
enum Kind {
    Literal,
    Decimal(i32),
    Integer,
}

fn int(v: &Cbor) -> Option<i128> {
    match v {
        Cbor::Integer(i) => Some(i128::from(*i)),
        _ => None,
    }
}

fn text(v: &Cbor) -> Option<&str> {
    match v {
        Cbor::Text(s) => Some(s),
        _ => None,
    }
}

/// One value slot: integer slots of decimal and integer points are deltas to `prev`.
fn slot(v: &Cbor, kind: Kind, prev: &mut i128) -> Result<Json, CodecError> {
    let delta = match (kind, v) {
        (Kind::Decimal(_) | Kind::Integer, Cbor::Integer(i)) => i128::from(*i),
        _ => return cbor_value_json(v),
    };
    *prev = prev
        .checked_add(delta)
        .ok_or_else(|| bad("delta out of range"))?;
    match kind {
        Kind::Decimal(e) => Ok(float_json(
            Decimal {
                mantissa: *prev,
                exponent: e,
            }
            .to_f64(),
        )),
        _ => cbor_value_json(&Cbor::Integer(
            ciborium::value::Integer::try_from(*prev)
                .map_err(|_| bad("integer value out of range"))?,
        )),
    }
}

/// A CBOR format 2 message (key 5) in the format 1 shape; `get` looks up a top-level key.
pub(super) fn cbor_v2(
    gw: &str,
    seq: u64,
    hist: bool,
    base: i64,
    schemas: &Cbor,
) -> Result<Json, CodecError> {
    let Cbor::Array(schemas) = schemas else {
        return Err(bad("schemas (5) not an array"));
    };
    let mut data = Vec::new();
    for s in schemas {
        let Some([names, units, scale, devs]) = (match s {
            Cbor::Array(a) => a.get(..4).filter(|_| a.len() == 4),
            _ => None,
        }) else {
            return Err(bad("schema is not [names, units, scale, devices]"));
        };
        let names: Vec<String> = match names {
            Cbor::Array(a) => a
                .iter()
                .map(|n| text(n).map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("point name is not text"))?,
            _ => return Err(bad("point names not an array")),
        };
        let n = names.len();
        let units: Vec<Option<String>> = match units {
            Cbor::Null => vec![None; n],
            Cbor::Array(a) if a.len() == n => a
                .iter()
                .map(|u| match u {
                    Cbor::Null => Ok(None),
                    Cbor::Text(u) => Ok(Some(u.clone())),
                    _ => Err(bad("unit is neither text nor null")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad("units are neither null nor one per point")),
        };
        let kinds: Vec<Kind> = match scale {
            Cbor::Null => vec![Kind::Literal; n],
            Cbor::Array(a) if a.len() == n => a
                .iter()
                .map(|k| match k {
                    Cbor::Null => Ok(Kind::Literal),
                    Cbor::Bool(true) => Ok(Kind::Integer),
                    Cbor::Integer(e) => i32::try_from(i128::from(*e))
                        .ok()
                        .filter(|e| e.abs() <= 400)
                        .map(Kind::Decimal)
                        .ok_or_else(|| bad("decimal exponent out of range")),
                    _ => Err(bad("scale is not null, true or an exponent")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad("scale is neither null nor one per point")),
        };
        let Cbor::Array(devs) = devs else {
            return Err(bad("devices not an array"));
        };
        for d in devs {
            let Some((name, rest)) = (match d {
                Cbor::Array(a) => a.split_first(),
                _ => None,
            }) else {
                return Err(bad("device entry is not [name, …]"));
            };
            let name = text(name).ok_or_else(|| bad("device name is not text"))?;
            let mut out = Out {
                names: &names,
                units: &units,
                reads: Vec::new(),
            };
            let mut prev = vec![0i128; n];
            let mut it = rest.iter().peekable();
            while let Some(dt) = it.next() {
                let dt = int(dt).and_then(|d| i64::try_from(d).ok());
                let t = add_time(base, dt)?;
                let mut values = Map::new();
                for i in 0..n {
                    match it.next() {
                        Some(Cbor::Null) => {}
                        Some(Cbor::Map(_)) | None => {
                            return Err(bad("a read has fewer values than points"))
                        }
                        Some(v) => {
                            values.insert(names[i].clone(), slot(v, kinds[i], &mut prev[i])?);
                        }
                    }
                }
                let mut bads = Map::new();
                if let Some(Cbor::Map(b)) = it.peek() {
                    for (k, why) in b {
                        let i = int(k)
                            .and_then(|i| usize::try_from(i).ok())
                            .filter(|i| *i < n)
                            .ok_or_else(|| bad("bad index out of range"))?;
                        let why = text(why).ok_or_else(|| bad("bad reason is not text"))?;
                        bads.insert(names[i].clone(), Json::from(why));
                    }
                    it.next();
                }
                out.read(t, values, bads);
            }
            data.push(out.finish(name));
        }
    }
    Ok(json!({"gw": gw, "seq": seq, "hist": hist, "data": data}))
}
