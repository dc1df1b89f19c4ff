//! The pure value codec: turns the registers (or bits) a device returned into typed engineering
//! values, and back (the simulator and `gasdtu write` encode with the same rules, so one table
//! of fixtures proves both directions). No I/O; every failure is a `DecodeError` naming why.

use thiserror::Error;

use crate::decimal::{self, Decimal};
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
    /// An INTREAL whose fraction is NaN, negative or not below 1: bad, never a wrong total.
    #[error("INTREAL fraction {0} is outside [0, 1)")]
    Fraction(f32),
    /// A `scale_from` point whose decimals point read something that is not 0..=9.
    #[error("decimals point `{point}` reads {value}: decimals must be a whole number 0 to {MAX_DECIMALS}")]
    Decimals { point: String, value: String },
}

/// Most decimals a `scale_from` point accepts from its device (an i16 has five digits; a
/// reading above 9 is a broken or misread register, never a scale).
pub const MAX_DECIMALS: u8 = 9;

/// Exact powers of ten (every one up to 10^22 is a double).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The number of decimals `k` a scale stands for when it is 10^-k (0.1, 0.01, `decimals = k`),
/// up to 22.
pub fn decimals_of(scale: f64) -> Option<usize> {
    (1..POW10.len()).find(|&k| scale == 1.0 / POW10[k])
}

/// The scale of `k` implied decimals: 10^-k (the nearest double, as TOML reads "0.0001").
pub fn decimal_scale(k: u8) -> f64 {
    1.0 / POW10[(k as usize).min(POW10.len() - 1)]
}

/// Raw count x 10^-k, divided rather than multiplied: the quotient is the double nearest to
/// the decimal number the meter shows (-8998 x 10^-1 is -899.8, not -899.8000000000001).
fn shift_decimals(x: f64, k: usize) -> f64 {
    x / POW10[k.min(POW10.len() - 1)]
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

/// `to_be_bytes` of the first `N / 2` registers into an array: the numeric types, decoded for
/// every point of every poll, without the two vectors (issue 13: they were a quarter of the
/// bus task's instructions). Missing registers read as zero; callers check the width first.
fn be<const N: usize>(regs: &[u16], order: WordOrder) -> [u8; N] {
    let n = N / 2;
    let mut out = [0u8; N];
    for (k, pair) in out.chunks_exact_mut(2).enumerate() {
        let at = if order.swaps_words() { n - 1 - k } else { k };
        let [hi, lo] = regs.get(at).copied().unwrap_or(0).to_be_bytes();
        pair.copy_from_slice(&if order.swaps_bytes() {
            [lo, hi]
        } else {
            [hi, lo]
        });
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
        DataType::U16 => Value::UInt(u16::from_be_bytes(be(regs, order)) as u64),
        DataType::I16 => Value::Int(i16::from_be_bytes(be(regs, order)) as i64),
        DataType::U32 => Value::UInt(u32::from_be_bytes(be(regs, order)) as u64),
        DataType::I32 => Value::Int(i32::from_be_bytes(be(regs, order)) as i64),
        DataType::U64 => Value::UInt(u64::from_be_bytes(be(regs, order))),
        DataType::I64 => Value::Int(i64::from_be_bytes(be(regs, order))),
        DataType::F32 => Value::Float(f32::from_be_bytes(be(regs, order)) as f64),
        DataType::F64 => Value::Float(f64::from_be_bytes(be(regs, order))),
        // A bad digit is reported with the register as it came off the wire (what mbpoll or
        // the meter's manual shows), not the byte-swapped word it was read as.
        DataType::Bcd16 => {
            let w = u16::from_be_bytes(be(regs, order));
            Value::UInt(bcd_digits(w).map_err(|_| DecodeError::Bcd(regs[0]))? as u64)
        }
        DataType::Bcd32 => {
            let b = to_be_bytes(regs, order);
            let hi = u16::from_be_bytes([b[0], b[1]]);
            let lo = u16::from_be_bytes([b[2], b[3]]);
            let (hi_wire, lo_wire) = if order.swaps_words() {
                (regs[1], regs[0])
            } else {
                (regs[0], regs[1])
            };
            let hi = bcd_digits(hi).map_err(|_| DecodeError::Bcd(hi_wire))?;
            let lo = bcd_digits(lo).map_err(|_| DecodeError::Bcd(lo_wire))?;
            Value::UInt(hi as u64 * 10_000 + lo as u64)
        }
        DataType::Bcd48 => {
            let b = to_be_bytes(regs, order);
            let mut v = 0u64;
            for k in 0..3 {
                let w = u16::from_be_bytes([b[2 * k], b[2 * k + 1]]);
                let wire = if order.swaps_words() {
                    regs[2 - k]
                } else {
                    regs[k]
                };
                v = v * 10_000 + bcd_digits(w).map_err(|_| DecodeError::Bcd(wire))? as u64;
            }
            Value::UInt(v)
        }
        DataType::IntReal => {
            let int = u32::from_be_bytes(be(&regs[..2], order));
            let frac = f32::from_be_bytes(be(&regs[2..], order));
            Value::Float(int_real(int, frac)?)
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

/// One f64 from an INTREAL's halves: the integer part plus the fraction at the decimal digits
/// its f32 carries (the shortest decimal that reads back as the same f32), so 987654 + 0.32f32
/// is 987654.32, not 987654.3199999928. Exact whenever the sum fits a double's 15-17 digits.
fn int_real(int: u32, frac: f32) -> Result<f64, DecodeError> {
    // NaN is in no range.
    if !(0.0..1.0).contains(&frac) {
        return Err(DecodeError::Fraction(frac));
    }
    // f32's Display is the shortest round-trip form and never uses an exponent: "0", "0.25".
    let digits = frac.to_string();
    let text = match digits.strip_prefix("0.") {
        Some(d) => format!("{int}.{d}"),
        None => int.to_string(),
    };
    text.parse::<f64>().map_err(|_| DecodeError::Fraction(frac))
}

/// Apply scale and offset. Identity scaling keeps integers exact; anything else is a float,
/// computed on the decimals the raw value, the scale and the offset stand for and rounded once
/// (`crate::decimal`): an i16 of -8998 at scale 0.1 is -899.8, not -899.8000000000001.
pub fn scale(value: Value, scale: f64, offset: f64) -> Value {
    if scale == 1.0 && offset == 0.0 {
        return value;
    }
    let raw = match &value {
        Value::Int(i) => Some(Decimal::from_int(i128::from(*i))),
        Value::UInt(u) => Some(Decimal::from_int(i128::from(*u))),
        Value::Float(x) => Decimal::of(*x),
        Value::Bool(_) | Value::Text(_) => return value,
    };
    match value.as_f64() {
        Some(x) => Value::Float(
            raw.and_then(|r| decimal::affine(r, scale, offset))
                .unwrap_or(x * scale + offset),
        ),
        None => value,
    }
}

/// Finish a `scale_from` point: its raw value (from `decode_raw`) x 10^-decimals, then its own
/// scale and offset. `decimals` is the decoded value of the point named `decimals_point`; a
/// reading that is not a whole number 0..=MAX_DECIMALS makes the value bad, never wrong.
pub fn apply_decimals(
    raw: Value,
    decimals_point: &str,
    decimals: &Value,
    scale_by: f64,
    offset: f64,
) -> Result<Value, DecodeError> {
    let k = match decimals {
        Value::Int(i) => u8::try_from(*i).ok(),
        Value::UInt(u) => u8::try_from(*u).ok(),
        Value::Float(x) if x.fract() == 0.0 && (0.0..=255.0).contains(x) => Some(*x as u8),
        _ => None,
    }
    .filter(|k| *k <= MAX_DECIMALS)
    .ok_or_else(|| DecodeError::Decimals {
        point: decimals_point.to_string(),
        value: decimals.to_string(),
    })?;
    let shifted = match raw.as_f64() {
        Some(x) if k > 0 && !matches!(raw, Value::Bool(_) | Value::Text(_)) => {
            Value::Float(shift_decimals(x, k as usize))
        }
        _ => raw,
    };
    Ok(scale(shifted, scale_by, offset))
}

/// Decode a point from the registers starting at its own address.
pub fn decode_point(point: &PointSpec, regs: &[u16]) -> Result<Value, DecodeError> {
    let raw = decode_raw(point.data_type, point.order, regs)?;
    Ok(scale(raw, point.scale, point.offset))
}

/// Encode an engineering value into the registers of `data_type` (scale and offset are
/// undone first). Bits ignore scale and offset and accept only 0/1 (or a bool): `Bool`
/// encodes to one register (or coil) holding 0 or 1, `BitOfRegister(n)` to a register holding
/// only bit n, so writing one bit of a live register is the caller's read-modify-write.
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
    // A decimal scale (10^-k) is undone by multiplying with the exact 10^k.
    let unscaled = |x: f64| match decimals_of(scale) {
        Some(k) => (x - offset) * POW10[k],
        None => (x - offset) / scale,
    };
    // Integer view of the raw value, rounding floats (a scaled integer register).
    let int = || -> Result<i128, EncodeError> {
        match value {
            // A bool is the engineering value 0 or 1: scaled like any number (it used to be
            // written raw, so `true` to a 0.01-scaled register read back as 0.01).
            Value::Bool(b) if scale == 1.0 && offset == 0.0 => Ok(*b as i128),
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
            other => {
                let x = other.as_f64().unwrap_or(f64::NAN);
                let raw = unscaled(x);
                // A finite value that unscales to NaN or infinity (a zero or tiny scale) has no
                // register form: refuse it rather than write NaN.
                if x.is_finite() && !raw.is_finite() {
                    Err(out_of_range())
                } else {
                    Ok(raw)
                }
            }
        }
    };
    let bytes: Vec<u8> = match data_type {
        DataType::Bool | DataType::BitOfRegister(_) => {
            // Bits are never scaled (decoding leaves them alone too): only 0 and 1 are bits.
            let v: u16 = match value {
                Value::Bool(b) => u16::from(*b),
                Value::Int(0) | Value::UInt(0) => 0,
                Value::Int(1) | Value::UInt(1) => 1,
                Value::Float(x) if *x == 0.0 => 0,
                Value::Float(x) if *x == 1.0 => 1,
                Value::Text(_) => {
                    return Err(EncodeError::WrongKind {
                        kind: "text",
                        data_type,
                    })
                }
                _ => return Err(out_of_range()),
            };
            match data_type {
                DataType::BitOfRegister(b) if b < 16 => return Ok(vec![v << b]),
                DataType::BitOfRegister(_) => return Err(out_of_range()),
                _ => return Ok(vec![v]),
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
        DataType::F32 => {
            let x = float()?;
            let narrowed = x as f32;
            // A finite value beyond f32's range would silently become infinity.
            if x.is_finite() && !narrowed.is_finite() {
                return Err(out_of_range());
            }
            narrowed.to_be_bytes().to_vec()
        }
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
        DataType::Bcd48 => {
            let v = int()?;
            if !(0..=999_999_999_999).contains(&v) {
                return Err(out_of_range());
            }
            let v = v as u64;
            let mut b = Vec::with_capacity(6);
            for part in [v / 100_000_000, v / 10_000 % 10_000, v % 10_000] {
                b.extend_from_slice(&to_bcd(part as u32).to_be_bytes());
            }
            b
        }
        DataType::IntReal => {
            let x = float()?;
            if !(0.0..4_294_967_296.0).contains(&x) {
                return Err(out_of_range());
            }
            let mut int = x.floor();
            let mut frac = (x - int) as f32;
            // 0.99999999 becomes 1.0f32: carry it into the integer part.
            if frac >= 1.0 {
                int += 1.0;
                frac = 0.0;
            }
            if int >= 4_294_967_296.0 {
                return Err(out_of_range());
            }
            let mut b = (int as u32).to_be_bytes().to_vec();
            let regs_int = from_be_bytes(&b, order);
            b.clear();
            b.extend_from_slice(&frac.to_be_bytes());
            let mut regs = regs_int;
            regs.extend(from_be_bytes(&b, order));
            return Ok(regs);
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

#[cfg(test)]
#[path = "registers_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "registers_props.rs"]
mod props;
