//! `scale_from` points (pure core): the one computation that finishes a point whose decimals
//! live in another point of the same device, shared by the poller (`bus`, per cycle) and the
//! named `gasdtu read` (per run): the raw value x 10^-decimals read at the same time, then the
//! point's own scale and offset (`registers::apply_decimals`). A decimals point without a good
//! value, or a decimals reading that is not a whole number 0..=9 (`registers::MAX_DECIMALS`), makes the value bad, never
//! wrong. Never does I/O, never panics.

use thiserror::Error;

use crate::modbus::registers::{self, DecodeError};
use crate::model::{BadReason, PointSpec, Value};

/// What the decimals point gave at the same time.
#[derive(Debug, Clone, PartialEq)]
pub enum Decimals {
    /// Its (good) value.
    Read(Value),
    /// It is bad this time: why.
    Bad(String),
    /// It has no value (not read).
    Missing,
}

/// Why a `scale_from` point has no value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ScaleFromError {
    /// The decimals point has no good value: "<point>: <why>".
    #[error("{point}: {why}")]
    Input { point: String, why: String },
    /// The decimals reading is not usable (`DecodeError::Decimals`).
    #[error(transparent)]
    Decimals(#[from] DecodeError),
}

impl ScaleFromError {
    /// As the poller marks the sample: a bad decimals point is bad input, an unusable
    /// reading a decode error.
    pub fn bad_reason(&self) -> BadReason {
        match self {
            ScaleFromError::Input { .. } => BadReason::Input(self.to_string()),
            ScaleFromError::Decimals(e) => BadReason::Decode(e.to_string()),
        }
    }
}

/// The engineering value of `point` from its raw value (`registers::decode_raw`) and what its
/// `scale_from` point gave. A point without `scale_from` is only scaled, as `decode_point`
/// does.
pub fn finish(point: &PointSpec, raw: Value, decimals: Decimals) -> Result<Value, ScaleFromError> {
    let Some(from) = point.scale_from.as_deref() else {
        return Ok(registers::scale(raw, point.scale, point.offset));
    };
    let k = match decimals {
        Decimals::Read(k) => k,
        Decimals::Bad(why) => {
            return Err(ScaleFromError::Input {
                point: from.to_string(),
                why,
            })
        }
        Decimals::Missing => {
            return Err(ScaleFromError::Input {
                point: from.to_string(),
                why: "no value".to_string(),
            })
        }
    };
    Ok(registers::apply_decimals(
        raw,
        from,
        &k,
        point.scale,
        point.offset,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataType, Table, WordOrder};

    fn point(scale_from: Option<&str>, scale: f64, offset: f64) -> PointSpec {
        PointSpec {
            name: "pressure".into(),
            table: Table::HoldingRegister,
            address: 4,
            data_type: DataType::I16,
            order: WordOrder::Abcd,
            scale,
            offset,
            unit: None,
            writable: false,
            scale_from: scale_from.map(str::to_string),
            publish: true,
        }
    }

    #[test]
    fn raw_times_ten_to_the_minus_decimals_then_scale_and_offset() {
        let from = Some("pressure_decimals");
        let bad_input = |why: &str| {
            Err(ScaleFromError::Input {
                point: "pressure_decimals".into(),
                why: why.into(),
            })
        };
        let bad_decimals = |value: &str| {
            Err(ScaleFromError::Decimals(DecodeError::Decimals {
                point: "pressure_decimals".into(),
                value: value.into(),
            }))
        };
        #[rustfmt::skip]
        let cases: Vec<(PointSpec, Value, Decimals, Result<Value, ScaleFromError>)> = vec![
            (point(from, 1.0, 0.0), Value::Int(-1234), Decimals::Read(Value::UInt(2)), Ok(Value::Float(-12.34))),
            (point(from, 1.0, 0.0), Value::Int(-1234), Decimals::Read(Value::Int(0)), Ok(Value::Int(-1234))),
            (point(from, 1.0, 0.0), Value::Int(1), Decimals::Read(Value::UInt(9)), Ok(Value::Float(1e-9))),
            (point(from, 1.0, 0.0), Value::Int(15), Decimals::Read(Value::Float(1.0)), Ok(Value::Float(1.5))),
            // A unit conversion after the shift: 12.34 kPa in bar, then an offset.
            (point(from, 0.01, 1.0), Value::Int(1234), Decimals::Read(Value::UInt(2)), Ok(Value::Float(1.1234))),
            (point(from, 1.0, 0.0), Value::Int(5), Decimals::Read(Value::UInt(10)), bad_decimals("10")),
            (point(from, 1.0, 0.0), Value::Int(5), Decimals::Read(Value::Int(-1)), bad_decimals("-1")),
            (point(from, 1.0, 0.0), Value::Int(5), Decimals::Read(Value::Float(1.5)), bad_decimals("1.5")),
            (point(from, 1.0, 0.0), Value::Int(5), Decimals::Bad("timeout".into()), bad_input("timeout")),
            (point(from, 1.0, 0.0), Value::Int(5), Decimals::Missing, bad_input("no value")),
            // Without scale_from: only the point's own scale, whatever the decimals say.
            (point(None, 0.1, 0.0), Value::Int(-8998), Decimals::Missing, Ok(Value::Float(-899.8))),
        ];
        for (p, raw, decimals, want) in cases {
            let what = format!("{raw:?} {decimals:?} x {} + {}", p.scale, p.offset);
            assert_eq!(finish(&p, raw, decimals), want, "{what}");
        }
        // The poller's reasons and the CLI's text.
        let e = ScaleFromError::Input {
            point: "d".into(),
            why: "timeout".into(),
        };
        assert_eq!(e.bad_reason(), BadReason::Input("d: timeout".into()));
        assert_eq!(e.to_string(), "d: timeout");
        let e = bad_decimals("10").unwrap_err();
        assert!(matches!(e.bad_reason(), BadReason::Decode(s) if s == e.to_string()));
    }
}
