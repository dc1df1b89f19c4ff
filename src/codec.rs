//! The pure value codec: turns the registers (or bits) a device returned into typed engineering
//! values, and back (the simulator and `gasdtu write` encode with the same rules, so one table
//! of fixtures proves both directions). No I/O; every failure is a `DecodeError` naming why.

use thiserror::Error;

use crate::model::{DataType, PointSpec, Value, WordOrder};

/// Why registers could not become a value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("expected {expected} registers, got {got}")]
    Short { expected: usize, got: usize },
    #[error("invalid BCD digit in register value 0x{0:04X}")]
    Bcd(u16),
    #[error("bit index {0} is outside a 16-bit register")]
    BitIndex(u8),
}

/// Why a value could not become registers.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EncodeError {
    #[error("value {value} does not fit type {data_type}")]
    OutOfRange { value: String, data_type: DataType },
    #[error("type {data_type} cannot hold a {kind} value")]
    WrongKind {
        kind: &'static str,
        data_type: DataType,
    },
}

/// Arrange raw registers (as on the wire) into the big-endian byte sequence A B C D...
fn to_be_bytes(regs: &[u16], order: WordOrder) -> Vec<u8> {
    let mut words: Vec<u16> = regs.to_vec();
    if order.swaps_words() {
        words.reverse();
    }
    let mut out = Vec::with_capacity(words.len() * 2);
    for w in words {
        let [hi, lo] = w.to_be_bytes();
        if order.swaps_bytes() {
            out.push(lo);
            out.push(hi);
        } else {
            out.push(hi);
            out.push(lo);
        }
    }
    out
}

/// Inverse of `to_be_bytes`: big-endian bytes to registers as they go on the wire.
fn from_be_bytes(bytes: &[u8], order: WordOrder) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let hi = c[0];
            let lo = c.get(1).copied().unwrap_or(0);
            if order.swaps_bytes() {
                u16::from_be_bytes([lo, hi])
            } else {
                u16::from_be_bytes([hi, lo])
            }
        })
        .collect();
    if order.swaps_words() {
        words.reverse();
    }
    words
}

fn bcd_digits(reg: u16) -> Result<u32, DecodeError> {
    let mut v = 0u32;
    for shift in [12, 8, 4, 0] {
        let d = (reg >> shift) & 0xF;
        if d > 9 {
            return Err(DecodeError::Bcd(reg));
        }
        v = v * 10 + d as u32;
    }
    Ok(v)
}

/// Decode the raw value of `data_type` from registers, before scale and offset.
pub fn decode_raw(
    data_type: DataType,
    order: WordOrder,
    regs: &[u16],
) -> Result<Value, DecodeError> {
    let need = data_type.width() as usize;
    if regs.len() < need {
        return Err(DecodeError::Short {
            expected: need,
            got: regs.len(),
        });
    }
    let regs = &regs[..need];
    Ok(match data_type {
        DataType::Bool => Value::Bool(regs[0] != 0),
        DataType::BitOfRegister(b) => {
            if b > 15 {
                return Err(DecodeError::BitIndex(b));
            }
            Value::Bool(regs[0] >> b & 1 == 1)
        }
        DataType::U16 => Value::UInt(u16::from_be_bytes(b2(&to_be_bytes(regs, order))) as u64),
        DataType::I16 => Value::Int(i16::from_be_bytes(b2(&to_be_bytes(regs, order))) as i64),
        DataType::U32 => Value::UInt(u32::from_be_bytes(b4(&to_be_bytes(regs, order))) as u64),
        DataType::I32 => Value::Int(i32::from_be_bytes(b4(&to_be_bytes(regs, order))) as i64),
        DataType::U64 => Value::UInt(u64::from_be_bytes(b8(&to_be_bytes(regs, order)))),
        DataType::I64 => Value::Int(i64::from_be_bytes(b8(&to_be_bytes(regs, order)))),
        DataType::F32 => Value::Float(f32::from_be_bytes(b4(&to_be_bytes(regs, order))) as f64),
        DataType::F64 => Value::Float(f64::from_be_bytes(b8(&to_be_bytes(regs, order)))),
        DataType::Bcd16 => {
            let w = u16::from_be_bytes(b2(&to_be_bytes(regs, order)));
            Value::UInt(bcd_digits(w)? as u64)
        }
        DataType::Bcd32 => {
            let b = to_be_bytes(regs, order);
            let hi = u16::from_be_bytes([b[0], b[1]]);
            let lo = u16::from_be_bytes([b[2], b[3]]);
            Value::UInt(bcd_digits(hi)? as u64 * 10_000 + bcd_digits(lo)? as u64)
        }
        DataType::String(n) => {
            let b = to_be_bytes(regs, order);
            let b = &b[..(n as usize).min(b.len())];
            let s: String = b
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| if c.is_ascii() { c as char } else { '?' })
                .collect();
            Value::Text(s.trim_end().to_string())
        }
    })
}

fn b2(v: &[u8]) -> [u8; 2] {
    [v[0], v[1]]
}
fn b4(v: &[u8]) -> [u8; 4] {
    [v[0], v[1], v[2], v[3]]
}
fn b8(v: &[u8]) -> [u8; 8] {
    [v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]
}

/// Apply scale and offset. Identity scaling keeps integers exact; anything else is a float.
pub fn scale(value: Value, scale: f64, offset: f64) -> Value {
    if scale == 1.0 && offset == 0.0 {
        return value;
    }
    match value.as_f64() {
        Some(x) if !matches!(value, Value::Bool(_)) => Value::Float(x * scale + offset),
        _ => value,
    }
}

/// Decode a point from the registers starting at its own address.
pub fn decode_point(point: &PointSpec, regs: &[u16]) -> Result<Value, DecodeError> {
    let raw = decode_raw(point.data_type, point.order, regs)?;
    Ok(scale(raw, point.scale, point.offset))
}

/// Encode an engineering value into the registers of `data_type` (scale and offset are
/// undone first). Bool points encode to one register holding 0 or 1.
pub fn encode(
    data_type: DataType,
    order: WordOrder,
    scale: f64,
    offset: f64,
    value: &Value,
) -> Result<Vec<u16>, EncodeError> {
    let out_of_range = || EncodeError::OutOfRange {
        value: value.to_string(),
        data_type,
    };
    let unscaled = |x: f64| (x - offset) / scale;
    // Integer view of the raw value, rounding floats (a scaled integer register).
    let int = || -> Result<i128, EncodeError> {
        match value {
            Value::Bool(b) => Ok(*b as i128),
            Value::Int(i) if scale == 1.0 && offset == 0.0 => Ok(*i as i128),
            Value::UInt(u) if scale == 1.0 && offset == 0.0 => Ok(*u as i128),
            Value::Text(_) => Err(EncodeError::WrongKind {
                kind: "text",
                data_type,
            }),
            other => {
                let x = unscaled(other.as_f64().unwrap_or(f64::NAN)).round();
                if x.is_finite() {
                    Ok(x as i128)
                } else {
                    Err(out_of_range())
                }
            }
        }
    };
    let float = || -> Result<f64, EncodeError> {
        match value {
            Value::Text(_) => Err(EncodeError::WrongKind {
                kind: "text",
                data_type,
            }),
            other => Ok(unscaled(other.as_f64().unwrap_or(f64::NAN))),
        }
    };
    let bytes: Vec<u8> = match data_type {
        DataType::Bool | DataType::BitOfRegister(_) => {
            let v = int()?;
            if !(0..=1).contains(&v) {
                return Err(out_of_range());
            }
            match data_type {
                DataType::BitOfRegister(b) if b < 16 => return Ok(vec![(v as u16) << b]),
                DataType::BitOfRegister(_) => return Err(out_of_range()),
                _ => return Ok(vec![v as u16]),
            }
        }
        DataType::U16 => u16::try_from(int()?)
            .map_err(|_| out_of_range())?
            .to_be_bytes()
            .to_vec(),
        DataType::I16 => i16::try_from(int()?)
            .map_err(|_| out_of_range())?
            .to_be_bytes()
            .to_vec(),
        DataType::U32 => u32::try_from(int()?)
            .map_err(|_| out_of_range())?
            .to_be_bytes()
            .to_vec(),
        DataType::I32 => i32::try_from(int()?)
            .map_err(|_| out_of_range())?
            .to_be_bytes()
            .to_vec(),
        DataType::U64 => u64::try_from(int()?)
            .map_err(|_| out_of_range())?
            .to_be_bytes()
            .to_vec(),
        DataType::I64 => i64::try_from(int()?)
            .map_err(|_| out_of_range())?
            .to_be_bytes()
            .to_vec(),
        DataType::F32 => (float()? as f32).to_be_bytes().to_vec(),
        DataType::F64 => float()?.to_be_bytes().to_vec(),
        DataType::Bcd16 => {
            let v = int()?;
            if !(0..=9999).contains(&v) {
                return Err(out_of_range());
            }
            to_bcd(v as u32).to_be_bytes().to_vec()
        }
        DataType::Bcd32 => {
            let v = int()?;
            if !(0..=99_999_999).contains(&v) {
                return Err(out_of_range());
            }
            let v = v as u32;
            let mut b = to_bcd(v / 10_000).to_be_bytes().to_vec();
            b.extend_from_slice(&to_bcd(v % 10_000).to_be_bytes());
            b
        }
        DataType::String(n) => {
            let Value::Text(s) = value else {
                return Err(EncodeError::WrongKind {
                    kind: "numeric",
                    data_type,
                });
            };
            if s.len() > n as usize || !s.is_ascii() {
                return Err(out_of_range());
            }
            let mut b = s.as_bytes().to_vec();
            b.resize(data_type.width() as usize * 2, 0);
            b
        }
    };
    Ok(from_be_bytes(&bytes, order))
}

fn to_bcd(mut v: u32) -> u16 {
    let mut out = 0u16;
    for shift in [0, 4, 8, 12] {
        out |= ((v % 10) as u16) << shift;
        v /= 10;
    }
    out
}

/// Encode a point's engineering value with the point's own type, order and scaling.
pub fn encode_point(point: &PointSpec, value: &Value) -> Result<Vec<u16>, EncodeError> {
    encode(
        point.data_type,
        point.order,
        point.scale,
        point.offset,
        value,
    )
}
