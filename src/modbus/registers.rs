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
        // A bad digit is reported with the register as it came off the wire (what mbpoll or
        // the meter's manual shows), not the byte-swapped word it was read as.
        DataType::Bcd16 => {
            let w = u16::from_be_bytes(b2(&to_be_bytes(regs, order)));
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
    let unscaled = |x: f64| (x - offset) / scale;
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
mod tests {
    //! Fixtures are written as the registers appear on the wire, in hex, one row per case.
    //! Every row that decodes to a value the encoder can reproduce is also round-tripped.

    use super::*;
    use crate::model::{DataType as T, WordOrder as O};

    /// "4049 0FDB" -> [0x4049, 0x0FDB]
    fn regs(hex: &str) -> Vec<u16> {
        hex.split_whitespace()
            .map(|w| u16::from_str_radix(w, 16).unwrap())
            .collect()
    }

    fn hex(regs: &[u16]) -> String {
        regs.iter()
            .map(|r| format!("{r:04X}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[derive(Debug)]
    enum Want {
        V(Value),
        NaN,
        Err(DecodeError),
    }
    use Want::*;

    const RT: bool = true; // encode(decoded) must give the same registers back
    const NO: bool = false;

    fn u(v: u64) -> Want {
        V(Value::UInt(v))
    }
    fn i(v: i64) -> Want {
        V(Value::Int(v))
    }
    fn f(v: f64) -> Want {
        V(Value::Float(v))
    }
    fn b(v: bool) -> Want {
        V(Value::Bool(v))
    }
    fn s(v: &str) -> Want {
        V(Value::Text(v.to_string()))
    }

    #[rustfmt::skip]
    fn decode_rows() -> Vec<(T, O, &'static str, Want, bool)> {
        let pi32 = std::f32::consts::PI as f64;
        let pi64 = std::f64::consts::PI;
        vec![
            // Bits: a bit-table value is 0 or 1; bit n of a register counts from the LSB.
            (T::Bool, O::Abcd, "0001", b(true), RT),
            (T::Bool, O::Abcd, "0000", b(false), RT),
            (T::BitOfRegister(0), O::Abcd, "0001", b(true), RT),
            (T::BitOfRegister(0), O::Abcd, "FFFE", b(false), NO),
            (T::BitOfRegister(15), O::Abcd, "8000", b(true), RT),
            (T::BitOfRegister(15), O::Abcd, "7FFF", b(false), NO),
            (T::BitOfRegister(7), O::Abcd, "0080", b(true), RT),
            (T::BitOfRegister(16), O::Abcd, "FFFF", Err(DecodeError::BitIndex(16)), NO),
            // u16 / i16: word order is moot for one register, byte swap is not.
            (T::U16, O::Abcd, "1234", u(0x1234), RT),
            (T::U16, O::Cdab, "1234", u(0x1234), RT),
            (T::U16, O::Badc, "3412", u(0x1234), RT),
            (T::U16, O::Dcba, "3412", u(0x1234), RT),
            (T::U16, O::Abcd, "FFFF", u(65535), RT),
            (T::I16, O::Abcd, "FFFE", i(-2), RT),
            (T::I16, O::Cdab, "FFFE", i(-2), RT),
            (T::I16, O::Badc, "FEFF", i(-2), RT),
            (T::I16, O::Dcba, "FEFF", i(-2), RT),
            (T::I16, O::Abcd, "8000", i(-32768), RT),
            (T::I16, O::Badc, "0080", i(-32768), RT),
            (T::I16, O::Abcd, "7FFF", i(32767), RT),
            // u32 123456789 = 0x075BCD15 in the four orders.
            (T::U32, O::Abcd, "075B CD15", u(123_456_789), RT),
            (T::U32, O::Cdab, "CD15 075B", u(123_456_789), RT),
            (T::U32, O::Badc, "5B07 15CD", u(123_456_789), RT),
            (T::U32, O::Dcba, "15CD 5B07", u(123_456_789), RT),
            // u32 above 2^31 stays positive.
            (T::U32, O::Abcd, "DEAD BEEF", u(3_735_928_559), RT),
            (T::U32, O::Cdab, "BEEF DEAD", u(3_735_928_559), RT),
            (T::U32, O::Badc, "ADDE EFBE", u(3_735_928_559), RT),
            (T::U32, O::Dcba, "EFBE ADDE", u(3_735_928_559), RT),
            (T::U32, O::Abcd, "8000 0000", u(2_147_483_648), RT),
            (T::U32, O::Abcd, "FFFF FFFF", u(4_294_967_295), RT),
            // i32 -123456789 = 0xF8A432EB.
            (T::I32, O::Abcd, "F8A4 32EB", i(-123_456_789), RT),
            (T::I32, O::Cdab, "32EB F8A4", i(-123_456_789), RT),
            (T::I32, O::Badc, "A4F8 EB32", i(-123_456_789), RT),
            (T::I32, O::Dcba, "EB32 A4F8", i(-123_456_789), RT),
            (T::I32, O::Abcd, "8000 0000", i(i32::MIN as i64), RT),
            (T::I32, O::Cdab, "FFFF 7FFF", i(i32::MAX as i64), RT),
            // u64 0x0123456789ABCDEF and extremes.
            (T::U64, O::Abcd, "0123 4567 89AB CDEF", u(0x0123_4567_89AB_CDEF), RT),
            (T::U64, O::Cdab, "CDEF 89AB 4567 0123", u(0x0123_4567_89AB_CDEF), RT),
            (T::U64, O::Badc, "2301 6745 AB89 EFCD", u(0x0123_4567_89AB_CDEF), RT),
            (T::U64, O::Dcba, "EFCD AB89 6745 2301", u(0x0123_4567_89AB_CDEF), RT),
            (T::U64, O::Abcd, "FFFF FFFF FFFF FFFF", u(u64::MAX), RT),
            (T::U64, O::Abcd, "8000 0000 0000 0000", u(1 << 63), RT),
            (T::U64, O::Dcba, "0000 0000 0000 0000", u(0), RT),
            // i64 extremes and a small negative.
            (T::I64, O::Abcd, "8000 0000 0000 0000", i(i64::MIN), RT),
            (T::I64, O::Cdab, "0000 0000 0000 8000", i(i64::MIN), RT),
            (T::I64, O::Badc, "0080 0000 0000 0000", i(i64::MIN), RT),
            (T::I64, O::Dcba, "0000 0000 0000 0080", i(i64::MIN), RT),
            (T::I64, O::Abcd, "7FFF FFFF FFFF FFFF", i(i64::MAX), RT),
            (T::I64, O::Dcba, "FFFF FFFF FFFF FF7F", i(i64::MAX), RT),
            (T::I64, O::Abcd, "FFFF FFFF FFFF FFFE", i(-2), RT),
            (T::I64, O::Cdab, "FFFE FFFF FFFF FFFF", i(-2), RT),
            (T::I64, O::Badc, "FFFF FFFF FFFF FEFF", i(-2), RT),
            (T::I64, O::Dcba, "FEFF FFFF FFFF FFFF", i(-2), RT),
            // f32 pi = 0x40490FDB, -1.5 = 0xBFC00000, NaN, infinities.
            (T::F32, O::Abcd, "4049 0FDB", f(pi32), RT),
            (T::F32, O::Cdab, "0FDB 4049", f(pi32), RT),
            (T::F32, O::Badc, "4940 DB0F", f(pi32), RT),
            (T::F32, O::Dcba, "DB0F 4940", f(pi32), RT),
            (T::F32, O::Abcd, "BFC0 0000", f(-1.5), RT),
            (T::F32, O::Cdab, "0000 BFC0", f(-1.5), RT),
            (T::F32, O::Abcd, "0000 0000", f(0.0), RT),
            (T::F32, O::Abcd, "7FC0 0000", NaN, RT),
            (T::F32, O::Cdab, "0000 7FC0", NaN, RT),
            (T::F32, O::Dcba, "0000 C07F", NaN, RT),
            (T::F32, O::Abcd, "7F80 0000", f(f64::INFINITY), RT),
            (T::F32, O::Abcd, "FF80 0000", f(f64::NEG_INFINITY), RT),
            (T::F32, O::Badc, "80FF 0000", f(f64::NEG_INFINITY), RT),
            // f64 pi = 0x400921FB54442D18, NaN, infinity.
            (T::F64, O::Abcd, "4009 21FB 5444 2D18", f(pi64), RT),
            (T::F64, O::Cdab, "2D18 5444 21FB 4009", f(pi64), RT),
            (T::F64, O::Badc, "0940 FB21 4454 182D", f(pi64), RT),
            (T::F64, O::Dcba, "182D 4454 FB21 0940", f(pi64), RT),
            (T::F64, O::Abcd, "C059 0000 0000 0000", f(-100.0), RT),
            (T::F64, O::Abcd, "7FF8 0000 0000 0000", NaN, RT),
            (T::F64, O::Abcd, "7FF0 0000 0000 0000", f(f64::INFINITY), RT),
            (T::F64, O::Cdab, "0000 0000 0000 FFF0", f(f64::NEG_INFINITY), RT),
            // BCD: digits per nibble; a bad digit names the register as on the wire.
            (T::Bcd16, O::Abcd, "1234", u(1234), RT),
            (T::Bcd16, O::Badc, "3412", u(1234), RT),
            (T::Bcd16, O::Abcd, "9999", u(9999), RT),
            (T::Bcd16, O::Abcd, "0000", u(0), RT),
            (T::Bcd16, O::Abcd, "12A4", Err(DecodeError::Bcd(0x12A4)), NO),
            (T::Bcd16, O::Badc, "A412", Err(DecodeError::Bcd(0xA412)), NO),
            (T::Bcd16, O::Abcd, "F000", Err(DecodeError::Bcd(0xF000)), NO),
            (T::Bcd32, O::Abcd, "1234 5678", u(12_345_678), RT),
            (T::Bcd32, O::Cdab, "5678 1234", u(12_345_678), RT),
            (T::Bcd32, O::Badc, "3412 7856", u(12_345_678), RT),
            (T::Bcd32, O::Dcba, "7856 3412", u(12_345_678), RT),
            (T::Bcd32, O::Abcd, "9999 9999", u(99_999_999), RT),
            (T::Bcd32, O::Abcd, "0000 0042", u(42), RT),
            (T::Bcd32, O::Abcd, "1234 56F8", Err(DecodeError::Bcd(0x56F8)), NO),
            (T::Bcd32, O::Abcd, "1B34 5678", Err(DecodeError::Bcd(0x1B34)), NO),
            (T::Bcd32, O::Cdab, "56F8 1234", Err(DecodeError::Bcd(0x56F8)), NO),
            (T::Bcd32, O::Dcba, "7856 341C", Err(DecodeError::Bcd(0x341C)), NO),
            // Strings: two ASCII bytes per register, NUL or space padded.
            (T::String(8), O::Abcd, "4741 5344 5455 0000", s("GASDTU"), RT),
            (T::String(8), O::Abcd, "4741 5344 5455 2020", s("GASDTU"), NO),
            (T::String(8), O::Abcd, "4741 5344 5400 5858", s("GASDT"), NO),
            (T::String(8), O::Badc, "4147 4453 5554 0000", s("GASDTU"), RT),
            (T::String(6), O::Cdab, "5455 5344 4741", s("GASDTU"), RT),
            (T::String(5), O::Abcd, "4142 4344 4500", s("ABCDE"), RT),
            (T::String(5), O::Abcd, "4142 4344 4546", s("ABCDE"), NO),
            (T::String(4), O::Abcd, "0000 0000", s(""), RT),
            // Short input is an error, never a panic.
            (T::U16, O::Abcd, "", Err(DecodeError::Short { expected: 1, got: 0 }), NO),
            (T::U32, O::Abcd, "1234", Err(DecodeError::Short { expected: 2, got: 1 }), NO),
            (T::F32, O::Cdab, "1234", Err(DecodeError::Short { expected: 2, got: 1 }), NO),
            (T::F64, O::Abcd, "0000 0000 0000", Err(DecodeError::Short { expected: 4, got: 3 }), NO),
            (T::I64, O::Dcba, "0000", Err(DecodeError::Short { expected: 4, got: 1 }), NO),
            (T::Bcd32, O::Abcd, "1234", Err(DecodeError::Short { expected: 2, got: 1 }), NO),
            (T::String(8), O::Abcd, "4741 5344 5455", Err(DecodeError::Short { expected: 4, got: 3 }), NO),
            (T::Bool, O::Abcd, "", Err(DecodeError::Short { expected: 1, got: 0 }), NO),
        ]
    }

    #[test]
    fn decode_table() {
        let mut failures = Vec::new();
        for (n, (t, o, raw, want, _)) in decode_rows().into_iter().enumerate() {
            let got = decode_raw(t, o, &regs(raw));
            let ok = match (&want, &got) {
                (V(w), Ok(g)) => w == g,
                (NaN, Ok(Value::Float(x))) => x.is_nan(),
                (Err(w), Result::Err(g)) => w == g,
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "row {n}: {t} {o} [{raw}]: want {want:?}, got {got:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn encode_round_trips_every_decodable_row() {
        let mut failures = Vec::new();
        let mut checked = 0;
        for (n, (t, o, raw, _, rt)) in decode_rows().into_iter().enumerate() {
            if !rt {
                continue;
            }
            let value = decode_raw(t, o, &regs(raw)).unwrap();
            match encode(t, o, 1.0, 0.0, &value) {
                Ok(back) if back == regs(raw) => checked += 1,
                other => failures.push(format!(
                    "row {n}: {t} {o} [{raw}] -> {value:?} -> {:?}",
                    other.map(|r| hex(&r))
                )),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(checked > 60, "only {checked} rows round-tripped");
    }

    #[test]
    fn every_type_and_order_is_covered() {
        let rows = decode_rows();
        let multi = [T::U32, T::I32, T::U64, T::I64, T::F32, T::F64, T::Bcd32];
        for t in multi {
            for o in [O::Abcd, O::Cdab, O::Badc, O::Dcba] {
                assert!(
                    rows.iter()
                        .any(|r| r.0 == t && r.1 == o && matches!(r.3, V(_))),
                    "no value row for {t} {o}"
                );
            }
        }
    }

    #[test]
    fn bcd_error_message_names_the_wire_register() {
        let e = decode_raw(T::Bcd32, O::Cdab, &regs("56F8 1234")).unwrap_err();
        assert_eq!(e.to_string(), "invalid BCD digit in register value 0x56F8");
        let e = decode_raw(T::U32, O::Abcd, &regs("1234")).unwrap_err();
        assert_eq!(e.to_string(), "expected 2 registers, got 1");
    }

    fn point(t: T, o: O, scale: f64, offset: f64) -> PointSpec {
        PointSpec {
            name: "p".into(),
            table: crate::model::Table::HoldingRegister,
            address: 0,
            data_type: t,
            order: o,
            scale,
            offset,
            unit: None,
            writable: true,
        }
    }

    #[test]
    fn scale_and_offset() {
        // (type, registers, scale, offset, expected engineering value, encodes back)
        #[rustfmt::skip]
        let rows: Vec<(T, &str, f64, f64, Value)> = vec![
            (T::U16, "04D2", 0.1, -10.0, Value::Float(113.4)),
            (T::I16, "FF9C", 0.01, 0.0, Value::Float(-1.0)),
            (T::I16, "0064", 1.0, 273.15, Value::Float(373.15)),
            (T::U32, "DEAD BEEF", 0.001, 0.0, Value::Float(3_735_928.559)),
            (T::F32, "BFC0 0000", 2.0, 1.0, Value::Float(-2.0)),
            (T::Bcd16, "0250", 0.1, 0.0, Value::Float(25.0)),
            // Identity scaling keeps integers exact (no trip through f64).
            (T::U64, "FFFF FFFF FFFF FFFF", 1.0, 0.0, Value::UInt(u64::MAX)),
            (T::I64, "7FFF FFFF FFFF FFFF", 1.0, 0.0, Value::Int(i64::MAX)),
            (T::U64, "0020 0000 0000 0001", 1.0, 0.0, Value::UInt((1 << 53) + 1)),
            // Bits and text are never scaled.
            (T::BitOfRegister(2), "0004", 10.0, 5.0, Value::Bool(true)),
            (T::String(2), "4F4B", 10.0, 5.0, Value::Text("OK".into())),
        ];
        for (t, raw, sc, off, want) in rows {
            let p = point(t, O::Abcd, sc, off);
            let got = decode_point(&p, &regs(raw)).unwrap();
            match (&want, &got) {
                (Value::Float(w), Value::Float(g)) => {
                    assert!((w - g).abs() < 1e-9, "{t} [{raw}] *{sc}+{off}: {g} != {w}")
                }
                _ => assert_eq!(want, got, "{t} [{raw}] *{sc}+{off}"),
            }
            let back = encode_point(&p, &got).unwrap();
            assert_eq!(hex(&back), raw, "{t} {got:?} *{sc}+{off} encodes back");
        }
    }

    #[test]
    fn encode_rounds_scaled_values_to_the_nearest_count() {
        // 21.37 kPa at 0.01 kPa/count is 2137 counts, even though 21.37/0.01 is 2136.99...
        let r = encode(T::U16, O::Abcd, 0.01, 0.0, &Value::Float(21.37)).unwrap();
        assert_eq!(hex(&r), "0859");
        let r = encode(T::I32, O::Cdab, 0.1, 0.0, &Value::Float(-0.5)).unwrap();
        assert_eq!(hex(&r), "FFFB FFFF");
    }

    #[test]
    fn encode_errors() {
        let oor = |t: T, v: Value| EncodeError::OutOfRange {
            value: v.to_string(),
            data_type: t,
        };
        #[rustfmt::skip]
        let rows: Vec<(T, f64, Value, EncodeError)> = vec![
            (T::U16, 1.0, Value::Int(65536), oor(T::U16, Value::Int(65536))),
            (T::U16, 1.0, Value::Int(-1), oor(T::U16, Value::Int(-1))),
            (T::I16, 1.0, Value::Int(-32769), oor(T::I16, Value::Int(-32769))),
            (T::I16, 1.0, Value::UInt(32768), oor(T::I16, Value::UInt(32768))),
            (T::U32, 1.0, Value::Int(-1), oor(T::U32, Value::Int(-1))),
            (T::U32, 1.0, Value::UInt(1 << 32), oor(T::U32, Value::UInt(1 << 32))),
            (T::I32, 1.0, Value::Int(1 << 31), oor(T::I32, Value::Int(1 << 31))),
            (T::I64, 1.0, Value::UInt(u64::MAX), oor(T::I64, Value::UInt(u64::MAX))),
            (T::U64, 1.0, Value::Int(-1), oor(T::U64, Value::Int(-1))),
            // 700 counts of 0.01 is 70000: does not fit a u16 once the scale is undone.
            (T::U16, 0.01, Value::Float(700.0), oor(T::U16, Value::Float(700.0))),
            (T::U16, 1.0, Value::Float(f64::NAN), oor(T::U16, Value::Float(f64::NAN))),
            (T::I32, 1.0, Value::Float(f64::INFINITY), oor(T::I32, Value::Float(f64::INFINITY))),
            (T::F32, 1.0, Value::Float(1e300), oor(T::F32, Value::Float(1e300))),
            (T::Bcd16, 1.0, Value::Int(10_000), oor(T::Bcd16, Value::Int(10_000))),
            (T::Bcd16, 1.0, Value::Int(-1), oor(T::Bcd16, Value::Int(-1))),
            (T::Bcd32, 1.0, Value::Int(100_000_000), oor(T::Bcd32, Value::Int(100_000_000))),
            // Wrong bit values.
            (T::Bool, 1.0, Value::Int(2), oor(T::Bool, Value::Int(2))),
            (T::Bool, 1.0, Value::Int(-1), oor(T::Bool, Value::Int(-1))),
            (T::Bool, 1.0, Value::Float(0.5), oor(T::Bool, Value::Float(0.5))),
            (T::BitOfRegister(3), 1.0, Value::UInt(2), oor(T::BitOfRegister(3), Value::UInt(2))),
            (T::BitOfRegister(16), 1.0, Value::Bool(true), oor(T::BitOfRegister(16), Value::Bool(true))),
            // Text into numeric, numeric into text, strings that do not fit.
            (T::U16, 1.0, Value::Text("12".into()), EncodeError::WrongKind { kind: "text", data_type: T::U16 }),
            (T::F64, 1.0, Value::Text("1.5".into()), EncodeError::WrongKind { kind: "text", data_type: T::F64 }),
            (T::Bool, 1.0, Value::Text("on".into()), EncodeError::WrongKind { kind: "text", data_type: T::Bool }),
            (T::String(4), 1.0, Value::Int(12), EncodeError::WrongKind { kind: "numeric", data_type: T::String(4) }),
            (T::String(4), 1.0, Value::Text("GASDTU".into()), oor(T::String(4), Value::Text("GASDTU".into()))),
            (T::String(4), 1.0, Value::Text("µbar".into()), oor(T::String(4), Value::Text("µbar".into()))),
        ];
        for (t, sc, v, want) in rows {
            assert_eq!(
                encode(t, O::Abcd, sc, 0.0, &v),
                Result::Err(want),
                "{t} {v:?}"
            );
        }
    }

    #[test]
    fn bits_ignore_scale_when_encoding() {
        for v in [
            Value::Bool(true),
            Value::Int(1),
            Value::UInt(1),
            Value::Float(1.0),
        ] {
            assert_eq!(
                encode(T::Bool, O::Abcd, 10.0, 3.0, &v),
                Ok(vec![1]),
                "{v:?}"
            );
            assert_eq!(
                encode(T::BitOfRegister(15), O::Dcba, 10.0, 3.0, &v),
                Ok(vec![0x8000]),
                "{v:?}"
            );
        }
        assert_eq!(
            encode(T::Bool, O::Abcd, 10.0, 0.0, &Value::Int(0)),
            Ok(vec![0])
        );
    }
}

#[cfg(test)]
#[path = "registers_props.rs"]
mod props;
