//! The compact on-disk form of one batch's samples (pure: no I/O). A batch row stores its
//! samples as one CBOR array; each sample is `[point_id, value, dt_ms]` for a good sample and
//! `[point_id, null, dt_ms, reason_code, detail?]` for a bad one. `point_id` refers to the
//! point dictionary (device, name, unit, value kind), so names and units are written once per
//! point, not once per reading; `dt_ms` is the sample's read time minus the batch's read time
//! (the earliest sample), so it is almost always a one-byte zero. Floats are written in the
//! shortest CBOR width that holds them exactly (ciborium does this).

use std::sync::Arc;

use ciborium::value::Value as Cbor;

use crate::model::{BadReason, Quality, Value};

/// The kind of a point's value, part of the dictionary key, so that `Int(5)` and `UInt(5)`
/// come back as they went in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// Bad sample: no value.
    None = 0,
    Bool = 1,
    Int = 2,
    UInt = 3,
    Float = 4,
    Text = 5,
}

impl ValueKind {
    pub fn of(v: Option<&Value>) -> ValueKind {
        match v {
            None => ValueKind::None,
            Some(Value::Bool(_)) => ValueKind::Bool,
            Some(Value::Int(_)) => ValueKind::Int,
            Some(Value::UInt(_)) => ValueKind::UInt,
            Some(Value::Float(_)) => ValueKind::Float,
            Some(Value::Text(_)) => ValueKind::Text,
        }
    }

    pub fn from_code(c: i64) -> Option<ValueKind> {
        Some(match c {
            0 => ValueKind::None,
            1 => ValueKind::Bool,
            2 => ValueKind::Int,
            3 => ValueKind::UInt,
            4 => ValueKind::Float,
            5 => ValueKind::Text,
            _ => return None,
        })
    }
}

/// One sample as the blob holds it (the point already resolved to its dictionary id).
#[derive(Debug, Clone, PartialEq)]
pub struct RawSample {
    pub point_id: i64,
    pub value: Option<Value>,
    pub dt_ms: i64,
    pub quality: Quality,
}

/// What a point id means (the dictionary row), used when decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct PointDef {
    pub name: Arc<str>,
    pub unit: Option<Arc<str>>,
    pub kind: ValueKind,
}

fn reason_code(r: &BadReason) -> (u8, Option<Cbor>) {
    match r {
        BadReason::Timeout => (0, None),
        BadReason::Crc => (1, None),
        BadReason::Exception { code, meaning } => (
            2,
            Some(Cbor::Array(vec![
                Cbor::Integer((*code).into()),
                Cbor::Text(meaning.clone()),
            ])),
        ),
        BadReason::Decode(s) => (3, Some(Cbor::Text(s.clone()))),
        BadReason::Io(s) => (4, Some(Cbor::Text(s.clone()))),
        BadReason::Protocol(s) => (5, Some(Cbor::Text(s.clone()))),
        BadReason::Input(s) => (6, Some(Cbor::Text(s.clone()))),
    }
}

fn reason_from(code: i64, detail: Option<&Cbor>) -> Result<BadReason, String> {
    let text = || -> Result<String, String> {
        match detail {
            Some(Cbor::Text(s)) => Ok(s.clone()),
            other => Err(format!("reason {code}: detail is not text: {other:?}")),
        }
    };
    Ok(match code {
        0 => BadReason::Timeout,
        1 => BadReason::Crc,
        2 => match detail {
            Some(Cbor::Array(a)) if a.len() == 2 => {
                let c = int(&a[0]).and_then(|c| u8::try_from(c).ok());
                match (c, &a[1]) {
                    (Some(code), Cbor::Text(m)) => BadReason::Exception {
                        code,
                        meaning: m.clone(),
                    },
                    _ => return Err("exception reason malformed".into()),
                }
            }
            _ => return Err("exception reason malformed".into()),
        },
        3 => BadReason::Decode(text()?),
        4 => BadReason::Io(text()?),
        5 => BadReason::Protocol(text()?),
        6 => BadReason::Input(text()?),
        c => return Err(format!("unknown bad-reason code {c}")),
    })
}

fn int(v: &Cbor) -> Option<i64> {
    match v {
        Cbor::Integer(i) => i64::try_from(i128::from(*i)).ok(),
        _ => None,
    }
}

fn value_to_cbor(v: &Option<Value>) -> Cbor {
    match v {
        None => Cbor::Null,
        Some(Value::Bool(b)) => Cbor::Bool(*b),
        Some(Value::Int(i)) => Cbor::Integer((*i).into()),
        Some(Value::UInt(u)) => Cbor::Integer((*u).into()),
        Some(Value::Float(x)) => Cbor::Float(*x),
        Some(Value::Text(s)) => Cbor::Text(s.clone()),
    }
}

fn value_from_cbor(v: &Cbor, kind: ValueKind) -> Result<Option<Value>, String> {
    Ok(match (kind, v) {
        (_, Cbor::Null) => None,
        (ValueKind::Bool, Cbor::Bool(b)) => Some(Value::Bool(*b)),
        (ValueKind::Int, Cbor::Integer(i)) => Some(Value::Int(
            i64::try_from(i128::from(*i)).map_err(|_| "int out of range")?,
        )),
        (ValueKind::UInt, Cbor::Integer(i)) => Some(Value::UInt(
            u64::try_from(i128::from(*i)).map_err(|_| "uint out of range")?,
        )),
        (ValueKind::Float, Cbor::Float(x)) => Some(Value::Float(*x)),
        (ValueKind::Text, Cbor::Text(s)) => Some(Value::Text(s.clone())),
        (k, v) => return Err(format!("value {v:?} does not match point kind {k:?}")),
    })
}

/// Encode samples into the blob.
pub fn encode(samples: &[RawSample]) -> Vec<u8> {
    let arr = samples
        .iter()
        .map(|s| {
            let mut a = vec![
                Cbor::Integer(s.point_id.into()),
                value_to_cbor(&s.value),
                Cbor::Integer(s.dt_ms.into()),
            ];
            if let Quality::Bad(r) = &s.quality {
                let (code, detail) = reason_code(r);
                a.push(Cbor::Integer(code.into()));
                if let Some(d) = detail {
                    a.push(d);
                }
            }
            Cbor::Array(a)
        })
        .collect();
    let mut out = Vec::with_capacity(samples.len() * 10);
    // Writing into a Vec cannot fail.
    let _ = ciborium::into_writer(&Cbor::Array(arr), &mut out);
    out
}

/// Decode a blob; `kind_of` resolves a point id to its value kind.
pub fn decode(
    blob: &[u8],
    kind_of: &mut dyn FnMut(i64) -> Option<ValueKind>,
) -> Result<Vec<RawSample>, String> {
    let v: Cbor = ciborium::from_reader(blob).map_err(|e| format!("not CBOR: {e}"))?;
    let Cbor::Array(items) = v else {
        return Err("blob is not an array".into());
    };
    items
        .iter()
        .map(|item| {
            let Cbor::Array(a) = item else {
                return Err("sample is not an array".to_string());
            };
            if a.len() < 3 {
                return Err(format!("sample has {} fields, want at least 3", a.len()));
            }
            let point_id = int(&a[0]).ok_or("point id is not an integer")?;
            let kind = kind_of(point_id).ok_or_else(|| format!("unknown point id {point_id}"))?;
            let value = value_from_cbor(&a[1], kind)?;
            let dt_ms = int(&a[2]).ok_or("dt is not an integer")?;
            let quality = match a.get(3) {
                None => Quality::Good,
                Some(c) => Quality::Bad(reason_from(
                    int(c).ok_or("reason code is not an integer")?,
                    a.get(4),
                )?),
            };
            Ok(RawSample {
                point_id,
                value,
                dt_ms,
                quality,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(point_id: i64, value: Option<Value>, dt_ms: i64, quality: Quality) -> RawSample {
        RawSample {
            point_id,
            value,
            dt_ms,
            quality,
        }
    }

    #[test]
    fn round_trips_every_value_and_reason() {
        let cases: Vec<(RawSample, ValueKind)> = vec![
            (
                s(1, Some(Value::Bool(true)), 0, Quality::Good),
                ValueKind::Bool,
            ),
            (s(2, Some(Value::Int(-5)), 3, Quality::Good), ValueKind::Int),
            (
                s(3, Some(Value::UInt(u64::MAX)), 0, Quality::Good),
                ValueKind::UInt,
            ),
            (
                s(4, Some(Value::Float(123.456)), 0, Quality::Good),
                ValueKind::Float,
            ),
            (
                s(5, Some(Value::Float(1.5)), 0, Quality::Good),
                ValueKind::Float,
            ),
            (
                s(6, Some(Value::Text("GAS-01".into())), 0, Quality::Good),
                ValueKind::Text,
            ),
            (
                s(7, None, 9, Quality::Bad(BadReason::Timeout)),
                ValueKind::None,
            ),
            (s(8, None, 0, Quality::Bad(BadReason::Crc)), ValueKind::None),
            (
                s(
                    9,
                    None,
                    0,
                    Quality::Bad(BadReason::Exception {
                        code: 2,
                        meaning: "illegal data address".into(),
                    }),
                ),
                ValueKind::None,
            ),
            (
                s(10, None, 0, Quality::Bad(BadReason::Decode("bcd".into()))),
                ValueKind::None,
            ),
            (
                s(11, None, 0, Quality::Bad(BadReason::Io("gone".into()))),
                ValueKind::None,
            ),
            (
                s(12, None, 0, Quality::Bad(BadReason::Protocol("fc".into()))),
                ValueKind::None,
            ),
            (
                s(13, None, 0, Quality::Bad(BadReason::Input("x".into()))),
                ValueKind::None,
            ),
        ];
        let samples: Vec<RawSample> = cases.iter().map(|(s, _)| s.clone()).collect();
        let blob = encode(&samples);
        let back = decode(&blob, &mut |id| cases.get(id as usize - 1).map(|c| c.1)).unwrap();
        assert_eq!(back, samples);
    }

    #[test]
    fn a_good_float_sample_is_small() {
        // 10 good samples of f32-representable floats: array header + 10 x (1 + 1 + 5 + 1).
        let samples: Vec<RawSample> = (1..=10)
            .map(|i| s(i, Some(Value::Float(i as f64 * 0.5)), 0, Quality::Good))
            .collect();
        let blob = encode(&samples);
        assert!(blob.len() <= 1 + 10 * 8, "{} bytes", blob.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[b"", b"\xff\xff", b"\x01", b"\x81\x01", b"\x81\x83\x01\x02"];
        for c in cases {
            assert!(decode(c, &mut |_| Some(ValueKind::Float)).is_err(), "{c:?}");
        }
        // Kind mismatch: a text where the dictionary says float.
        let blob = encode(&[s(1, Some(Value::Text("x".into())), 0, Quality::Good)]);
        assert!(decode(&blob, &mut |_| Some(ValueKind::Float)).is_err());
        assert!(decode(&blob, &mut |_| None).is_err());
    }
}
